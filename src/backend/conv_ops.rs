//! The seven conv ops of `Backend` (conv2d with its ReLU form and both gradients, and
//! conv_transpose2d with both gradients) built from three kernels on one `ConvGeom`. Each op's
//! geometry and gradient-shape checks live here once; a backend supplies only the kernels.
//!
//! A transposed conv is the backward-input of the conv it is the transpose of (`ConvGeom::
//! transposed` describes that conv), so its forward is that conv's backward-input, its
//! backward-input that conv's forward, and its weight gradient that conv's weight gradient with
//! the roles of input and output gradient swapped.

use super::{Conv2dParams, ConvGeom, ConvTranspose2dParams};
use crate::tensor::Tensor;
use crate::Result;

/// The three kernels of a conv geometry; `op` names the public op in error messages.
pub trait ConvKernels {
    /// y = conv(x, w) (+ b per output channel) of `g`, then max(0, .) when `relu`: g.y_shape().
    fn conv_forward(
        &self,
        g: &ConvGeom,
        x: &Tensor,
        w: &Tensor,
        b: Option<&Tensor>,
        relu: bool,
        op: &str,
    ) -> Result<Tensor>;
    /// The conv's transpose applied to gy (+ b per input channel): g.x_shape().
    fn conv_backward_input(
        &self,
        g: &ConvGeom,
        gy: &Tensor,
        w: &Tensor,
        b: Option<&Tensor>,
        op: &str,
    ) -> Result<Tensor>;
    /// The weight gradient from the conv's input x and its output gradient gy: g.weight_shape().
    fn conv_backward_weight(
        &self,
        g: &ConvGeom,
        x: &Tensor,
        gy: &Tensor,
        op: &str,
    ) -> Result<Tensor>;
}

pub fn conv2d<B: ConvKernels + ?Sized>(
    be: &B,
    x: &Tensor,
    w: &Tensor,
    b: Option<&Tensor>,
    p: Conv2dParams,
) -> Result<Tensor> {
    conv2d_then(be, (x, w, b), p, false)
}

/// relu(conv2d(x, w, b)) as one op (the backends apply the ReLU as they store each value).
pub fn conv2d_relu<B: ConvKernels + ?Sized>(
    be: &B,
    x: &Tensor,
    w: &Tensor,
    b: Option<&Tensor>,
    p: Conv2dParams,
) -> Result<Tensor> {
    conv2d_then(be, (x, w, b), p, true)
}

fn conv2d_then<B: ConvKernels + ?Sized>(
    be: &B,
    (x, w, b): (&Tensor, &Tensor, Option<&Tensor>),
    p: Conv2dParams,
    relu: bool,
) -> Result<Tensor> {
    let g = ConvGeom::conv2d(x.shape(), w.shape(), b.map(|t| t.shape()), p)?;
    be.conv_forward(&g, x, w, b, relu, "conv2d")
}

pub fn conv2d_backward_input<B: ConvKernels + ?Sized>(
    be: &B,
    gy: &Tensor,
    w: &Tensor,
    x_shape: &[usize],
    p: Conv2dParams,
) -> Result<Tensor> {
    let op = "conv2d_backward_input";
    let g = ConvGeom::conv2d(x_shape, w.shape(), None, p)?;
    ConvGeom::check_output_grad(gy.shape(), g.y_shape(), op)?;
    be.conv_backward_input(&g, gy, w, None, op)
}

pub fn conv2d_backward_weight<B: ConvKernels + ?Sized>(
    be: &B,
    x: &Tensor,
    gy: &Tensor,
    w_shape: &[usize],
    p: Conv2dParams,
) -> Result<Tensor> {
    let op = "conv2d_backward_weight";
    let g = ConvGeom::conv2d(x.shape(), w_shape, None, p)?;
    ConvGeom::check_output_grad(gy.shape(), g.y_shape(), op)?;
    be.conv_backward_weight(&g, x, gy, op)
}

pub fn conv_transpose2d<B: ConvKernels + ?Sized>(
    be: &B,
    x: &Tensor,
    w: &Tensor,
    b: Option<&Tensor>,
    p: ConvTranspose2dParams,
) -> Result<Tensor> {
    let g = ConvGeom::transposed(x.shape(), w.shape(), b.map(|t| t.shape()), p)?;
    be.conv_backward_input(&g, x, w, b, "conv_transpose2d")
}

pub fn conv_transpose2d_backward_input<B: ConvKernels + ?Sized>(
    be: &B,
    gy: &Tensor,
    w: &Tensor,
    x_shape: &[usize],
    p: ConvTranspose2dParams,
) -> Result<Tensor> {
    let op = "conv_transpose2d_backward_input";
    let g = ConvGeom::transposed(x_shape, w.shape(), None, p)?;
    ConvGeom::check_output_grad(gy.shape(), g.x_shape(), op)?;
    be.conv_forward(&g, gy, w, None, false, op)
}

pub fn conv_transpose2d_backward_weight<B: ConvKernels + ?Sized>(
    be: &B,
    x: &Tensor,
    gy: &Tensor,
    w_shape: &[usize],
    p: ConvTranspose2dParams,
) -> Result<Tensor> {
    let op = "conv_transpose2d_backward_weight";
    let g = ConvGeom::transposed(x.shape(), w_shape, None, p)?;
    ConvGeom::check_output_grad(gy.shape(), g.x_shape(), op)?;
    // in the direct conv, gy is the input and x the output gradient
    be.conv_backward_weight(&g, gy, x, op)
}
