//! `Backend` for the CPU: each method forwards to its op family's function.

use super::{batchnorm, conv, elementwise, optim, random, reduce, CpuBackend};

crate::impl_backend_by_op_families!(CpuBackend);
