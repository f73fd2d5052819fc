//! Both backends implement `Backend` the same way: each op forwards to the function of the same
//! name in the backend's op-family module (conv, elementwise, reduce, batchnorm, optim, random).
//! This macro writes that forwarding once. The invoking module must have those six modules in
//! scope and the backend type must have inherent `info`, `upload`, `read_tensor` and `read_tensors` methods.
//! A backend that implements a default trait method its own way passes that method in braces
//! after the type.
//!
//! Each op is one line, `fn NAME(ARGS) -> RET = FAMILY::FUNCTION;`, which becomes
//! `fn NAME(&self, ARGS) -> RET { FAMILY::FUNCTION(self, ARG NAMES) }` (the `@forward` arm).

#[macro_export]
#[doc(hidden)]
macro_rules! impl_backend_by_op_families {
    (@forward $(fn $name:ident($($arg:ident: $argty:ty),*) -> $ret:ty = $target:path;)*) => {
        $(
            fn $name(&self, $($arg: $argty),*) -> $ret {
                $target(self, $($arg),*)
            }
        )*
    };
    ($ty:ty $(, { $($own:item)* })?) => {
        // A block so that the signatures below can name the crate's types briefly; the impl
        // itself applies crate-wide as usual.
        const _: () = {
            use $crate::backend::{
                AdamParams, Backend, BackendInfo, BinaryOp, Conv2dParams, ConvTranspose2dParams,
                Distribution, FusedConv2d, LocalBoxFuture, LossKind, SgdParams, UnaryOp,
            };
            use $crate::{Result, Tensor};

            impl Backend for $ty {
                $($($own)*)?
                fn info(&self) -> BackendInfo {
                    <$ty>::info(self)
                }
                fn upload(&self, shape: &[usize], data: &[f32]) -> Result<Tensor> {
                    <$ty>::upload(self, shape, data)
                }
                fn zeros(&self, shape: &[usize]) -> Result<Tensor> {
                    elementwise::fill(self, shape, 0.0)
                }
                fn read<'a>(&'a self, t: &'a Tensor) -> LocalBoxFuture<'a, Result<Vec<f32>>> {
                    <$ty>::read_tensor(self, t)
                }
                fn read_many<'a>(
                    &'a self,
                    ts: &'a [&'a Tensor],
                ) -> LocalBoxFuture<'a, Result<Vec<Vec<f32>>>> {
                    <$ty>::read_tensors(self, ts)
                }
                $crate::impl_backend_by_op_families! { @forward
                    fn assign(dst: &Tensor, src: &Tensor) -> Result<()> = elementwise::assign;
                    fn fill(shape: &[usize], value: f32) -> Result<Tensor> = elementwise::fill;

                    fn conv2d(x: &Tensor, w: &Tensor, b: Option<&Tensor>, p: Conv2dParams)
                        -> Result<Tensor> = conv::conv2d;
                    fn conv2d_relu(x: &Tensor, w: &Tensor, b: Option<&Tensor>, p: Conv2dParams)
                        -> Result<Tensor> = conv::conv2d_relu;
                    fn conv2d_fused(x: &Tensor, c: &FusedConv2d, out: Option<&Tensor>)
                        -> Result<Tensor> = conv::conv2d_fused;
                    fn conv2d_backward_input(gy: &Tensor, w: &Tensor, x_shape: &[usize], p: Conv2dParams)
                        -> Result<Tensor> = conv::conv2d_backward_input;
                    fn conv2d_backward_weight(x: &Tensor, gy: &Tensor, w_shape: &[usize], p: Conv2dParams)
                        -> Result<Tensor> = conv::conv2d_backward_weight;
                    fn conv_transpose2d(x: &Tensor, w: &Tensor, b: Option<&Tensor>, p: ConvTranspose2dParams)
                        -> Result<Tensor> = conv::conv_transpose2d;
                    fn conv_transpose2d_backward_input(
                        gy: &Tensor, w: &Tensor, x_shape: &[usize], p: ConvTranspose2dParams
                    ) -> Result<Tensor> = conv::conv_transpose2d_backward_input;
                    fn conv_transpose2d_backward_weight(
                        x: &Tensor, gy: &Tensor, w_shape: &[usize], p: ConvTranspose2dParams
                    ) -> Result<Tensor> = conv::conv_transpose2d_backward_weight;
                    fn matmul(a: &Tensor, b: &Tensor, trans_a: bool, trans_b: bool)
                        -> Result<Tensor> = conv::matmul;

                    fn bias_add(x: &Tensor, b: &Tensor) -> Result<Tensor> = elementwise::bias_add;
                    fn bias_grad(gy: &Tensor) -> Result<Tensor> = reduce::bias_grad;
                    fn binary(op: BinaryOp, a: &Tensor, b: &Tensor) -> Result<Tensor> = elementwise::binary;
                    fn affine(x: &Tensor, a: f32, b: f32) -> Result<Tensor> = elementwise::affine;
                    fn unary(op: UnaryOp, x: &Tensor) -> Result<Tensor> = elementwise::unary;
                    fn unary_backward(op: UnaryOp, x: &Tensor, gy: &Tensor)
                        -> Result<Tensor> = elementwise::unary_backward;
                    fn clamp(x: &Tensor, lo: f32, hi: f32) -> Result<Tensor> = elementwise::clamp;

                    fn sum(x: &Tensor) -> Result<Tensor> = reduce::sum;
                    fn mean(x: &Tensor) -> Result<Tensor> = reduce::mean;
                    fn softmax(x: &Tensor) -> Result<Tensor> = reduce::softmax;
                    fn loss(kind: LossKind, pred: &Tensor, target: &Tensor) -> Result<Tensor> = reduce::loss;
                    fn loss_backward(kind: LossKind, pred: &Tensor, target: &Tensor, gloss: &Tensor)
                        -> Result<Tensor> = reduce::loss_backward;

                    fn batchnorm2d_train(
                        x: &Tensor, gamma: &Tensor, beta: &Tensor,
                        running_mean: &Tensor, running_var: &Tensor, momentum: f32, eps: f32
                    ) -> Result<(Tensor, Tensor, Tensor)> = batchnorm::train;
                    fn batchnorm2d_eval(
                        x: &Tensor, gamma: &Tensor, beta: &Tensor,
                        running_mean: &Tensor, running_var: &Tensor, eps: f32
                    ) -> Result<Tensor> = batchnorm::eval;
                    fn batchnorm2d_backward(x: &Tensor, gy: &Tensor, gamma: &Tensor, mean: &Tensor, invstd: &Tensor)
                        -> Result<(Tensor, Tensor, Tensor)> = batchnorm::backward;

                    fn sgd_step(p: &Tensor, g: &Tensor, velocity: &Tensor, hp: SgdParams)
                        -> Result<()> = optim::sgd_step;
                    fn adam_step(p: &Tensor, g: &Tensor, m: &Tensor, v: &Tensor, hp: AdamParams)
                        -> Result<()> = optim::adam_step;
                    fn random(shape: &[usize], dist: Distribution, seed: u64)
                        -> Result<Tensor> = random::random;
                }
            }
        };
    };
}
