//! `Backend` for the CPU: each method forwards to its op family's function; the fused
//! BatchNorm + ReLU ops, which the trait defines as compositions, have kernels of their own.

use super::{batchnorm, conv, elementwise, optim, random, reduce, CpuBackend};
use crate::backend::batchnorm2d_relu_backward_shapes;

crate::impl_backend_by_op_families!(CpuBackend, {
    fn batchnorm2d_relu_train(
        &self,
        x: &Tensor,
        gamma: &Tensor,
        beta: &Tensor,
        running_mean: &Tensor,
        running_var: &Tensor,
        momentum: f32,
        eps: f32,
    ) -> Result<(Tensor, Tensor, Tensor)> {
        let params = [gamma, beta, running_mean, running_var];
        batchnorm::train_then(x, params, momentum, eps, true)
    }
    fn batchnorm2d_relu_backward(
        &self,
        x: &Tensor,
        y: &Tensor,
        gy: &Tensor,
        gamma: &Tensor,
        beta: &Tensor,
        mean: &Tensor,
        invstd: &Tensor,
    ) -> Result<(Tensor, Tensor, Tensor)> {
        let op = "batchnorm2d_relu_backward";
        let shape = batchnorm2d_relu_backward_shapes(x, y, gy, [gamma, beta, mean, invstd])?;
        batchnorm::backward_masked(op, shape, [x, gy], [gamma, mean, invstd], Some(beta))
    }
});
