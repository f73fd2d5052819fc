//! `Backend` for the GPU: each method forwards to its op family's launcher.

use super::{batchnorm, conv, elementwise, optim, random, reduce, GpuBackend};
use crate::backend::*;
use crate::tensor::Tensor;
use crate::Result;

impl Backend for GpuBackend {
    fn info(&self) -> BackendInfo {
        GpuBackend::info(self)
    }
    fn upload(&self, shape: &[usize], data: &[f32]) -> Result<Tensor> {
        GpuBackend::upload(self, shape, data)
    }
    fn zeros(&self, shape: &[usize]) -> Result<Tensor> {
        elementwise::fill(self, shape, 0.0)
    }
    fn read<'a>(&'a self, t: &'a Tensor) -> LocalBoxFuture<'a, Result<Vec<f32>>> {
        Box::pin(async move {
            let b = t.gpu_buffer("read")?;
            self.read_buffer(&b, t.numel()).await
        })
    }
    fn assign(&self, dst: &Tensor, src: &Tensor) -> Result<()> {
        elementwise::assign(self, dst, src)
    }
    fn fill(&self, shape: &[usize], value: f32) -> Result<Tensor> {
        elementwise::fill(self, shape, value)
    }
    fn conv2d(&self, x: &Tensor, w: &Tensor, b: Option<&Tensor>, p: Conv2dParams) -> Result<Tensor> {
        conv::conv2d(self, x, w, b, p)
    }
    fn conv2d_backward_input(&self, gy: &Tensor, w: &Tensor, x_shape: &[usize], p: Conv2dParams) -> Result<Tensor> {
        conv::conv2d_backward_input(self, gy, w, x_shape, p)
    }
    fn conv2d_backward_weight(&self, x: &Tensor, gy: &Tensor, w_shape: &[usize], p: Conv2dParams) -> Result<Tensor> {
        conv::conv2d_backward_weight(self, x, gy, w_shape, p)
    }
    fn conv_transpose2d(&self, x: &Tensor, w: &Tensor, b: Option<&Tensor>, p: ConvTranspose2dParams) -> Result<Tensor> {
        conv::conv_transpose2d(self, x, w, b, p)
    }
    fn conv_transpose2d_backward_input(&self, gy: &Tensor, w: &Tensor, x_shape: &[usize], p: ConvTranspose2dParams) -> Result<Tensor> {
        conv::conv_transpose2d_backward_input(self, gy, w, x_shape, p)
    }
    fn conv_transpose2d_backward_weight(&self, x: &Tensor, gy: &Tensor, w_shape: &[usize], p: ConvTranspose2dParams) -> Result<Tensor> {
        conv::conv_transpose2d_backward_weight(self, x, gy, w_shape, p)
    }
    fn bias_add(&self, x: &Tensor, b: &Tensor) -> Result<Tensor> {
        elementwise::bias_add(self, x, b)
    }
    fn bias_grad(&self, gy: &Tensor) -> Result<Tensor> {
        reduce::bias_grad(self, gy)
    }
    fn matmul(&self, a: &Tensor, b: &Tensor, trans_a: bool, trans_b: bool) -> Result<Tensor> {
        conv::matmul(self, a, b, trans_a, trans_b)
    }
    fn binary(&self, op: BinaryOp, a: &Tensor, b: &Tensor) -> Result<Tensor> {
        elementwise::binary(self, op, a, b)
    }
    fn affine(&self, x: &Tensor, a: f32, b: f32) -> Result<Tensor> {
        elementwise::affine(self, x, a, b)
    }
    fn unary(&self, op: UnaryOp, x: &Tensor) -> Result<Tensor> {
        elementwise::unary(self, op, x)
    }
    fn unary_backward(&self, op: UnaryOp, x: &Tensor, gy: &Tensor) -> Result<Tensor> {
        elementwise::unary_backward(self, op, x, gy)
    }
    fn clamp(&self, x: &Tensor, lo: f32, hi: f32) -> Result<Tensor> {
        elementwise::clamp(self, x, lo, hi)
    }
    fn sum(&self, x: &Tensor) -> Result<Tensor> {
        reduce::sum(self, x)
    }
    fn mean(&self, x: &Tensor) -> Result<Tensor> {
        reduce::mean(self, x)
    }
    fn softmax(&self, x: &Tensor) -> Result<Tensor> {
        reduce::softmax(self, x)
    }
    fn loss(&self, kind: LossKind, pred: &Tensor, target: &Tensor) -> Result<Tensor> {
        reduce::loss(self, kind, pred, target)
    }
    fn loss_backward(&self, kind: LossKind, pred: &Tensor, target: &Tensor, gloss: &Tensor) -> Result<Tensor> {
        reduce::loss_backward(self, kind, pred, target, gloss)
    }
    fn batchnorm2d_train(
        &self,
        x: &Tensor,
        gamma: &Tensor,
        beta: &Tensor,
        running_mean: &Tensor,
        running_var: &Tensor,
        momentum: f32,
        eps: f32,
    ) -> Result<(Tensor, Tensor, Tensor)> {
        batchnorm::train(self, x, gamma, beta, running_mean, running_var, momentum, eps)
    }
    fn batchnorm2d_eval(&self, x: &Tensor, gamma: &Tensor, beta: &Tensor, running_mean: &Tensor, running_var: &Tensor, eps: f32) -> Result<Tensor> {
        batchnorm::eval(self, x, gamma, beta, running_mean, running_var, eps)
    }
    fn batchnorm2d_backward(&self, x: &Tensor, gy: &Tensor, gamma: &Tensor, mean: &Tensor, invstd: &Tensor) -> Result<(Tensor, Tensor, Tensor)> {
        batchnorm::backward(self, x, gy, gamma, mean, invstd)
    }
    fn sgd_step(&self, p: &Tensor, g: &Tensor, velocity: &Tensor, hp: SgdParams) -> Result<()> {
        optim::sgd_step(self, p, g, velocity, hp)
    }
    fn adam_step(&self, p: &Tensor, g: &Tensor, m: &Tensor, v: &Tensor, hp: AdamParams) -> Result<()> {
        optim::adam_step(self, p, g, m, v, hp)
    }
    fn random(&self, shape: &[usize], dist: Distribution, seed: u64) -> Result<Tensor> {
        random::random(self, shape, dist, seed)
    }
}
