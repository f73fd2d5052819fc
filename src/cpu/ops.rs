//! `Backend` for the CPU: each method forwards to its op family's function; `conv2d_relu`
//! replaces the trait's conv-then-ReLU with the fused kernel (ReLU on each block while in cache).

use super::{batchnorm, conv, elementwise, optim, random, reduce, CpuBackend};

crate::impl_backend_by_op_families!(CpuBackend, {
    fn conv2d_relu(
        &self,
        x: &crate::Tensor,
        w: &crate::Tensor,
        b: Option<&crate::Tensor>,
        p: crate::backend::Conv2dParams,
    ) -> crate::Result<crate::Tensor> {
        conv::conv2d_relu(self, x, w, b, p)
    }
});
