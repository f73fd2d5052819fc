//! `Backend` for the GPU: each method forwards to its op family's launcher.

use super::{batchnorm, conv, elementwise, optim, random, reduce, GpuBackend};

crate::impl_backend_by_op_families!(GpuBackend);
