//! Both backends implement `Backend` the same way: each op forwards to the function of the same
//! name in the backend's op-family module (conv, elementwise, reduce, batchnorm, optim, random).
//! This macro writes that forwarding once. The invoking module must have those six modules in
//! scope and the backend type must have inherent `info`, `upload`, `read_tensor` and `read_tensors` methods.
//! A backend that implements a default trait method its own way (the CPU's `conv2d_relu`) passes
//! that method in braces after the type.

#[macro_export]
#[doc(hidden)]
macro_rules! impl_backend_by_op_families {
    ($ty:ty $(, { $($own:item)* })?) => {
        impl $crate::backend::Backend for $ty {
            $($($own)*)?
            fn info(&self) -> $crate::backend::BackendInfo {
                <$ty>::info(self)
            }
            fn upload(&self, shape: &[usize], data: &[f32]) -> $crate::Result<$crate::Tensor> {
                <$ty>::upload(self, shape, data)
            }
            fn zeros(&self, shape: &[usize]) -> $crate::Result<$crate::Tensor> {
                elementwise::fill(self, shape, 0.0)
            }
            fn read<'a>(
                &'a self,
                t: &'a $crate::Tensor,
            ) -> $crate::backend::LocalBoxFuture<'a, $crate::Result<Vec<f32>>> {
                <$ty>::read_tensor(self, t)
            }
            fn read_many<'a>(
                &'a self,
                ts: &'a [&'a $crate::Tensor],
            ) -> $crate::backend::LocalBoxFuture<'a, $crate::Result<Vec<Vec<f32>>>> {
                <$ty>::read_tensors(self, ts)
            }
            fn assign(&self, dst: &$crate::Tensor, src: &$crate::Tensor) -> $crate::Result<()> {
                elementwise::assign(self, dst, src)
            }
            fn fill(&self, shape: &[usize], value: f32) -> $crate::Result<$crate::Tensor> {
                elementwise::fill(self, shape, value)
            }
            fn conv2d(
                &self,
                x: &$crate::Tensor,
                w: &$crate::Tensor,
                b: Option<&$crate::Tensor>,
                p: $crate::backend::Conv2dParams,
            ) -> $crate::Result<$crate::Tensor> {
                conv::conv2d(self, x, w, b, p)
            }
            fn conv2d_backward_input(
                &self,
                gy: &$crate::Tensor,
                w: &$crate::Tensor,
                x_shape: &[usize],
                p: $crate::backend::Conv2dParams,
            ) -> $crate::Result<$crate::Tensor> {
                conv::conv2d_backward_input(self, gy, w, x_shape, p)
            }
            fn conv2d_backward_weight(
                &self,
                x: &$crate::Tensor,
                gy: &$crate::Tensor,
                w_shape: &[usize],
                p: $crate::backend::Conv2dParams,
            ) -> $crate::Result<$crate::Tensor> {
                conv::conv2d_backward_weight(self, x, gy, w_shape, p)
            }
            fn conv_transpose2d(
                &self,
                x: &$crate::Tensor,
                w: &$crate::Tensor,
                b: Option<&$crate::Tensor>,
                p: $crate::backend::ConvTranspose2dParams,
            ) -> $crate::Result<$crate::Tensor> {
                conv::conv_transpose2d(self, x, w, b, p)
            }
            fn conv_transpose2d_backward_input(
                &self,
                gy: &$crate::Tensor,
                w: &$crate::Tensor,
                x_shape: &[usize],
                p: $crate::backend::ConvTranspose2dParams,
            ) -> $crate::Result<$crate::Tensor> {
                conv::conv_transpose2d_backward_input(self, gy, w, x_shape, p)
            }
            fn conv_transpose2d_backward_weight(
                &self,
                x: &$crate::Tensor,
                gy: &$crate::Tensor,
                w_shape: &[usize],
                p: $crate::backend::ConvTranspose2dParams,
            ) -> $crate::Result<$crate::Tensor> {
                conv::conv_transpose2d_backward_weight(self, x, gy, w_shape, p)
            }
            fn bias_add(
                &self,
                x: &$crate::Tensor,
                b: &$crate::Tensor,
            ) -> $crate::Result<$crate::Tensor> {
                elementwise::bias_add(self, x, b)
            }
            fn bias_grad(&self, gy: &$crate::Tensor) -> $crate::Result<$crate::Tensor> {
                reduce::bias_grad(self, gy)
            }
            fn matmul(
                &self,
                a: &$crate::Tensor,
                b: &$crate::Tensor,
                trans_a: bool,
                trans_b: bool,
            ) -> $crate::Result<$crate::Tensor> {
                conv::matmul(self, a, b, trans_a, trans_b)
            }
            fn binary(
                &self,
                op: $crate::backend::BinaryOp,
                a: &$crate::Tensor,
                b: &$crate::Tensor,
            ) -> $crate::Result<$crate::Tensor> {
                elementwise::binary(self, op, a, b)
            }
            fn affine(&self, x: &$crate::Tensor, a: f32, b: f32) -> $crate::Result<$crate::Tensor> {
                elementwise::affine(self, x, a, b)
            }
            fn unary(
                &self,
                op: $crate::backend::UnaryOp,
                x: &$crate::Tensor,
            ) -> $crate::Result<$crate::Tensor> {
                elementwise::unary(self, op, x)
            }
            fn unary_backward(
                &self,
                op: $crate::backend::UnaryOp,
                x: &$crate::Tensor,
                gy: &$crate::Tensor,
            ) -> $crate::Result<$crate::Tensor> {
                elementwise::unary_backward(self, op, x, gy)
            }
            fn clamp(
                &self,
                x: &$crate::Tensor,
                lo: f32,
                hi: f32,
            ) -> $crate::Result<$crate::Tensor> {
                elementwise::clamp(self, x, lo, hi)
            }
            fn sum(&self, x: &$crate::Tensor) -> $crate::Result<$crate::Tensor> {
                reduce::sum(self, x)
            }
            fn mean(&self, x: &$crate::Tensor) -> $crate::Result<$crate::Tensor> {
                reduce::mean(self, x)
            }
            fn softmax(&self, x: &$crate::Tensor) -> $crate::Result<$crate::Tensor> {
                reduce::softmax(self, x)
            }
            fn loss(
                &self,
                kind: $crate::backend::LossKind,
                pred: &$crate::Tensor,
                target: &$crate::Tensor,
            ) -> $crate::Result<$crate::Tensor> {
                reduce::loss(self, kind, pred, target)
            }
            fn loss_backward(
                &self,
                kind: $crate::backend::LossKind,
                pred: &$crate::Tensor,
                target: &$crate::Tensor,
                gloss: &$crate::Tensor,
            ) -> $crate::Result<$crate::Tensor> {
                reduce::loss_backward(self, kind, pred, target, gloss)
            }
            fn batchnorm2d_train(
                &self,
                x: &$crate::Tensor,
                gamma: &$crate::Tensor,
                beta: &$crate::Tensor,
                running_mean: &$crate::Tensor,
                running_var: &$crate::Tensor,
                momentum: f32,
                eps: f32,
            ) -> $crate::Result<($crate::Tensor, $crate::Tensor, $crate::Tensor)> {
                batchnorm::train(
                    self,
                    x,
                    gamma,
                    beta,
                    running_mean,
                    running_var,
                    momentum,
                    eps,
                )
            }
            fn batchnorm2d_eval(
                &self,
                x: &$crate::Tensor,
                gamma: &$crate::Tensor,
                beta: &$crate::Tensor,
                running_mean: &$crate::Tensor,
                running_var: &$crate::Tensor,
                eps: f32,
            ) -> $crate::Result<$crate::Tensor> {
                batchnorm::eval(self, x, gamma, beta, running_mean, running_var, eps)
            }
            fn batchnorm2d_backward(
                &self,
                x: &$crate::Tensor,
                gy: &$crate::Tensor,
                gamma: &$crate::Tensor,
                mean: &$crate::Tensor,
                invstd: &$crate::Tensor,
            ) -> $crate::Result<($crate::Tensor, $crate::Tensor, $crate::Tensor)> {
                batchnorm::backward(self, x, gy, gamma, mean, invstd)
            }
            fn sgd_step(
                &self,
                p: &$crate::Tensor,
                g: &$crate::Tensor,
                velocity: &$crate::Tensor,
                hp: $crate::backend::SgdParams,
            ) -> $crate::Result<()> {
                optim::sgd_step(self, p, g, velocity, hp)
            }
            fn adam_step(
                &self,
                p: &$crate::Tensor,
                g: &$crate::Tensor,
                m: &$crate::Tensor,
                v: &$crate::Tensor,
                hp: $crate::backend::AdamParams,
            ) -> $crate::Result<()> {
                optim::adam_step(self, p, g, m, v, hp)
            }
            fn random(
                &self,
                shape: &[usize],
                dist: $crate::backend::Distribution,
                seed: u64,
            ) -> $crate::Result<$crate::Tensor> {
                random::random(self, shape, dist, seed)
            }
        }
    };
}
