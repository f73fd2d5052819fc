//! The one conv geometry both backends use, and every conv shape rule.
//!
//! A `ConvGeom` always describes a *direct* conv2d: x (n, cin, h, w) -> y (n, cout, ho, wo) with
//! weight (cout, cin, kh, kw). A transposed conv is the backward of such a conv (its weight
//! (Cin_t, Cout_t, k, k) read as (cout, cin, k, k) of that conv), so `ConvGeom::transposed`
//! describes it in the same terms: its input is the direct conv's y and its output the direct
//! conv's x. Three kernels (forward, backward-input, backward-weight) then serve all six ops.
//!
//! Every size and hyper-parameter is stored per axis (rows, columns) so that rectangular kernels
//! and per-axis stride/padding/dilation only need the parameter types and the shape rules to
//! grow; today's params (PyTorch's int forms) set both axes alike.

use super::{Conv2dParams, ConvTranspose2dParams};
use crate::tensor::{dims4, non_empty};
use crate::{Error, Result};

/// A direct conv2d in the kernels' terms. `*h` fields are along rows, `*w` along columns:
/// kernel kh x kw, stride (sh, sw), zero padding (ph, pw) on both sides, dilation (dh, dw).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConvGeom {
    pub n: usize,
    pub cin: usize,
    pub h: usize,
    pub w: usize,
    pub cout: usize,
    pub ho: usize,
    pub wo: usize,
    pub kh: usize,
    pub kw: usize,
    pub sh: usize,
    pub sw: usize,
    pub ph: usize,
    pub pw: usize,
    pub dh: usize,
    pub dw: usize,
}

impl ConvGeom {
    /// Validate a conv2d call (x, weight, optional bias shapes) and describe it.
    pub fn conv2d(
        x: &[usize],
        w: &[usize],
        b: Option<&[usize]>,
        p: Conv2dParams,
    ) -> Result<ConvGeom> {
        let [n, cin, h, wd, cout, k, ho, wo] = conv2d_shapes(x, w, b, p)?;
        Ok(ConvGeom::uniform([n, cin, h, wd, cout, k, ho, wo], p))
    }

    /// Validate a conv_transpose2d call and describe it as the direct conv it is the backward
    /// of: that conv maps (N, Cout_t, Ho_t, Wo_t) -> (N, Cin_t, H_t, W_t).
    pub fn transposed(
        x: &[usize],
        w: &[usize],
        b: Option<&[usize]>,
        p: ConvTranspose2dParams,
    ) -> Result<ConvGeom> {
        let [n, cin_t, h, wd, cout_t, k, ho, wo] = conv_transpose2d_shapes(x, w, b, p)?;
        Ok(ConvGeom::uniform(
            [n, cout_t, ho, wo, cin_t, k, h, wd],
            p.as_conv(),
        ))
    }

    /// From (N, Cin, H, W, Cout, k, Ho, Wo) and the same parameters on both axes.
    fn uniform(d: [usize; 8], p: Conv2dParams) -> ConvGeom {
        let [n, cin, h, w, cout, k, ho, wo] = d;
        ConvGeom {
            n,
            cin,
            h,
            w,
            cout,
            ho,
            wo,
            kh: k,
            kw: k,
            sh: p.stride,
            sw: p.stride,
            ph: p.padding,
            pw: p.padding,
            dh: p.dilation,
            dw: p.dilation,
        }
    }

    /// Floats of one sample of x.
    pub fn x_per_sample(&self) -> usize {
        self.cin * self.h * self.w
    }
    /// Floats of one sample of y.
    pub fn y_per_sample(&self) -> usize {
        self.cout * self.ho * self.wo
    }
    /// Taps per output channel: rows of cols(x), columns of the weight matrix (cin kh kw).
    pub fn taps(&self) -> usize {
        self.cin * self.kh * self.kw
    }
    pub fn weight_len(&self) -> usize {
        self.cout * self.taps()
    }
    /// Output pixels per channel (ho wo).
    pub fn pixels(&self) -> usize {
        self.ho * self.wo
    }
    pub fn x_shape(&self) -> [usize; 4] {
        [self.n, self.cin, self.h, self.w]
    }
    pub fn y_shape(&self) -> [usize; 4] {
        [self.n, self.cout, self.ho, self.wo]
    }
    pub fn weight_shape(&self) -> [usize; 4] {
        [self.cout, self.cin, self.kh, self.kw]
    }
    /// Square kernel and the same stride, padding and dilation on both axes.
    pub fn is_isotropic(&self) -> bool {
        self.kh == self.kw && self.sh == self.sw && self.ph == self.pw && self.dh == self.dw
    }
    /// A 1x1, stride-1, unpadded conv: cols(x) is x itself.
    pub fn is_pointwise(&self) -> bool {
        self.kh == 1
            && self.kw == 1
            && self.sh == 1
            && self.sw == 1
            && self.ph == 0
            && self.pw == 0
            && self.ho == self.h
            && self.wo == self.w
    }

    /// Error unless an output gradient has shape `want` (y_shape for a direct conv's backward,
    /// x_shape for a transposed conv's, whose output is the direct conv's input).
    pub fn check_output_grad(gy: &[usize], want: [usize; 4], op: &str) -> Result<()> {
        dims4(gy, &format!("{op} output gradient"))?;
        if gy != want {
            return Err(Error::Shape(format!(
                "{op}: the output gradient must have shape {want:?}, got {gy:?}"
            )));
        }
        Ok(())
    }
}

fn check_params(stride: usize, dilation: usize, op: &str) -> Result<()> {
    if stride == 0 || dilation == 0 {
        return Err(Error::Invalid(format!(
            "{op}: stride and dilation must be >= 1 (got stride {stride}, dilation {dilation})"
        )));
    }
    Ok(())
}

/// Output spatial size of a conv2d along one axis, or an error when the window does not fit.
pub fn conv_out_size(input: usize, k: usize, p: Conv2dParams) -> Result<usize> {
    check_params(p.stride, p.dilation, "conv2d")?;
    let span = p.dilation * (k.max(1) - 1) + 1;
    let padded = input + 2 * p.padding;
    if k == 0 || padded < span {
        return Err(Error::Shape(format!(
            "conv2d: kernel {k} (dilation {}) spans {span} pixels, more than the padded input {padded}",
            p.dilation
        )));
    }
    Ok((padded - span) / p.stride + 1)
}

/// Output spatial size of a conv_transpose2d along one axis.
pub fn conv_transpose_out_size(input: usize, k: usize, p: ConvTranspose2dParams) -> Result<usize> {
    check_params(p.stride, p.dilation, "conv_transpose2d")?;
    if p.output_padding >= p.stride.max(p.dilation) {
        return Err(Error::Invalid(format!(
            "conv_transpose2d: output_padding {} must be smaller than stride {} or dilation {}",
            p.output_padding, p.stride, p.dilation
        )));
    }
    let full = (input.max(1) - 1) * p.stride + p.dilation * (k.max(1) - 1) + p.output_padding + 1;
    if k == 0 || input == 0 || full <= 2 * p.padding {
        return Err(Error::Shape(format!(
            "conv_transpose2d: input {input}, kernel {k}, stride {}, padding {} gives no output pixels",
            p.stride, p.padding
        )));
    }
    Ok(full - 2 * p.padding)
}

/// Validate a conv2d call; returns (N, Cin, H, W, Cout, k, Ho, Wo).
pub fn conv2d_shapes(
    x: &[usize],
    w: &[usize],
    b: Option<&[usize]>,
    p: Conv2dParams,
) -> Result<[usize; 8]> {
    let [n, c, h, wd] = dims4(x, "conv2d input")?;
    let [co, ci, kh, kw] = dims4(w, "conv2d weight (Cout, Cin, k, k)")?;
    non_empty(x, "conv2d input")?;
    non_empty(w, "conv2d weight")?;
    if ci != c {
        return Err(Error::Shape(format!(
            "conv2d: input has {c} channels but the weight {w:?} expects {ci}"
        )));
    }
    if kh != kw {
        return Err(Error::Shape(format!(
            "conv2d: only square kernels are supported, got {kh}x{kw}"
        )));
    }
    if let Some(bs) = b {
        if bs != [co] {
            return Err(Error::Shape(format!(
                "conv2d: bias must have shape [{co}], got {bs:?}"
            )));
        }
    }
    let ho = conv_out_size(h, kh, p)?;
    let wo = conv_out_size(wd, kw, p)?;
    Ok([n, c, h, wd, co, kh, ho, wo])
}

/// Validate a conv_transpose2d call; returns (N, Cin, H, W, Cout, k, Ho, Wo).
pub fn conv_transpose2d_shapes(
    x: &[usize],
    w: &[usize],
    b: Option<&[usize]>,
    p: ConvTranspose2dParams,
) -> Result<[usize; 8]> {
    let [n, c, h, wd] = dims4(x, "conv_transpose2d input")?;
    let [ci, co, kh, kw] = dims4(w, "conv_transpose2d weight (Cin, Cout, k, k)")?;
    non_empty(x, "conv_transpose2d input")?;
    non_empty(w, "conv_transpose2d weight")?;
    if ci != c {
        return Err(Error::Shape(format!(
            "conv_transpose2d: input has {c} channels but the weight {w:?} expects {ci}"
        )));
    }
    if kh != kw {
        return Err(Error::Shape(format!(
            "conv_transpose2d: only square kernels are supported, got {kh}x{kw}"
        )));
    }
    if let Some(bs) = b {
        if bs != [co] {
            return Err(Error::Shape(format!(
                "conv_transpose2d: bias must have shape [{co}], got {bs:?}"
            )));
        }
    }
    let ho = conv_transpose_out_size(h, kh, p)?;
    let wo = conv_transpose_out_size(wd, kw, p)?;
    Ok([n, c, h, wd, co, kh, ho, wo])
}
