//! The one conv geometry both backends use, and every conv shape rule.
//!
//! A `ConvGeom` always describes a *direct* conv2d: x (n, cin, h, w) -> y (n, cout, ho, wo) with
//! weight (cout, cin, kh, kw). A transposed conv is the backward of such a conv (its weight
//! (Cin_t, Cout_t, kh, kw) read as (cout, cin, kh, kw) of that conv), so `ConvGeom::transposed`
//! describes it in the same terms: its input is the direct conv's y and its output the direct
//! conv's x. Three kernels (forward, backward-input, backward-weight) then serve all six ops.
//!
//! Every size and hyper-parameter is per axis (rows, columns), as PyTorch's `(h, w)` forms:
//! rectangular kernels, and stride, padding, dilation and output_padding of their own per axis.

use super::{Conv2dParams, ConvTranspose2dParams, FusedConv2d, Hw};
use crate::tensor::{dims4, non_empty, Tensor};
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
        let op = "conv2d";
        let ([n, cin, h, wd], [cout, _, kh, kw]) =
            conv_operands(x, w, b, op, "(Cout, Cin, kh, kw)", false)?;
        let out = conv_out_size(Hw::new(h, wd), Hw::new(kh, kw), p)?;
        let g = ConvGeom::new([n, cin, h, wd, cout, out.h, out.w], Hw::new(kh, kw), p);
        countable(&g.y_shape(), op)?;
        Ok(g)
    }

    /// Validate a conv_transpose2d call and describe it as the direct conv it is the backward
    /// of: that conv maps (N, Cout_t, Ho_t, Wo_t) -> (N, Cin_t, H_t, W_t).
    pub fn transposed(
        x: &[usize],
        w: &[usize],
        b: Option<&[usize]>,
        p: ConvTranspose2dParams,
    ) -> Result<ConvGeom> {
        let op = "conv_transpose2d";
        let ([n, cin_t, h, wd], [_, cout_t, kh, kw]) =
            conv_operands(x, w, b, op, "(Cin, Cout, kh, kw)", true)?;
        let out = conv_transpose_out_size(Hw::new(h, wd), Hw::new(kh, kw), p)?;
        let g = ConvGeom::new(
            [n, cout_t, out.h, out.w, cin_t, h, wd],
            Hw::new(kh, kw),
            p.as_conv(),
        );
        countable(&g.x_shape(), op)?;
        Ok(g)
    }

    /// From (N, Cin, H, W, Cout, Ho, Wo), the kernel size and the per-axis parameters.
    fn new(d: [usize; 7], k: Hw, p: Conv2dParams) -> ConvGeom {
        let [n, cin, h, w, cout, ho, wo] = d;
        ConvGeom {
            n,
            cin,
            h,
            w,
            cout,
            ho,
            wo,
            kh: k.h,
            kw: k.w,
            sh: p.stride.h,
            sw: p.stride.w,
            ph: p.padding.h,
            pw: p.padding.w,
            dh: p.dilation.h,
            dw: p.dilation.w,
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

    /// The geometry of `conv2d_fused`, and an error unless `out` (when given) has the output's
    /// shape and is not x.
    pub fn conv2d_fused(x: &Tensor, c: &FusedConv2d, out: Option<&Tensor>) -> Result<ConvGeom> {
        let op = "conv2d_fused";
        let g = ConvGeom::conv2d(
            x.shape(),
            c.weight.shape(),
            c.bias.as_ref().map(|b| b.shape()),
            c.p,
        )?;
        if let Some(o) = out {
            if o.shape() != g.y_shape() {
                return Err(Error::Shape(format!(
                    "{op}: the output must have shape {:?}, got {:?}",
                    g.y_shape(),
                    o.shape()
                )));
            }
            super::distinct_from_written(op, &[(o, "the output")], &[(x, "the input")])?;
        }
        Ok(g)
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

/// The two spatial axes, named in error messages.
const AXES: [&str; 2] = ["height", "width"];

/// Error unless every stride and dilation is >= 1 (both axes).
fn check_stride_dilation(stride: Hw, dilation: Hw, op: &str) -> Result<()> {
    if stride.h == 0 || stride.w == 0 || dilation.h == 0 || dilation.w == 0 {
        return Err(Error::Invalid(format!(
            "{op}: stride and dilation must be >= 1 on both axes (got stride {stride}, dilation {dilation})"
        )));
    }
    Ok(())
}

/// a * b + c with overflow as an error (the sizes come from the user).
fn mul_add(a: usize, b: usize, c: usize, op: &str) -> Result<usize> {
    a.checked_mul(b)
        .and_then(|v| v.checked_add(c))
        .ok_or_else(|| Error::Invalid(format!("{op}: sizes overflow")))
}

/// Error unless the output's element count fits a usize (a huge padding can ask for more).
fn countable(shape: &[usize], op: &str) -> Result<()> {
    shape
        .iter()
        .try_fold(1usize, |acc, &d| acc.checked_mul(d))
        .map(|_| ())
        .ok_or_else(|| Error::Invalid(format!("{op}: the output {shape:?} is too large")))
}

/// Output length of a conv2d along one axis, or an error when the window does not fit.
fn conv_axis(input: usize, k: usize, s: usize, p: usize, d: usize, axis: usize) -> Result<usize> {
    let op = "conv2d";
    let span = mul_add(d, k.max(1) - 1, 1, op)?;
    let padded = mul_add(p, 2, input, op)?;
    if k == 0 || padded < span {
        return Err(Error::Shape(format!(
            "{op}: along the {} the kernel {k} (dilation {d}) spans {span} pixels, more than the padded input {padded}",
            AXES[axis]
        )));
    }
    Ok((padded - span) / s + 1)
}

/// Output length of a conv_transpose2d along one axis (stride and dilation already checked):
/// (input - 1) s - 2p + d (k - 1) + a + 1, with a (output_padding) < max(s, d) as PyTorch.
fn conv_transpose_axis(
    input: usize,
    k: usize,
    [s, p, a, d]: [usize; 4], // stride, padding, output_padding, dilation,
    axis: usize,
) -> Result<usize> {
    let op = "conv_transpose2d";
    if a >= s.max(d) {
        return Err(Error::Invalid(format!(
            "{op}: output_padding {a} along the {} must be smaller than stride {s} or dilation {d}",
            AXES[axis]
        )));
    }
    let span = mul_add(d, k.max(1) - 1, a + 1, op)?;
    let full = mul_add(input.max(1) - 1, s, span, op)?;
    let pad2 = p.checked_mul(2).unwrap_or(usize::MAX);
    if k == 0 || input == 0 || full <= pad2 {
        return Err(Error::Shape(format!(
            "{op}: along the {} input {input}, kernel {k}, stride {s}, dilation {d}, output_padding {a} and padding {p} give no output pixels",
            AXES[axis]
        )));
    }
    Ok(full - pad2)
}

/// Output spatial size (rows, columns) of a conv2d of an `input`-sized image with a `k` kernel.
pub fn conv_out_size(input: Hw, k: Hw, p: Conv2dParams) -> Result<Hw> {
    check_stride_dilation(p.stride, p.dilation, "conv2d")?;
    Ok(Hw {
        h: conv_axis(input.h, k.h, p.stride.h, p.padding.h, p.dilation.h, 0)?,
        w: conv_axis(input.w, k.w, p.stride.w, p.padding.w, p.dilation.w, 1)?,
    })
}

/// Output spatial size (rows, columns) of a conv_transpose2d.
pub fn conv_transpose_out_size(input: Hw, k: Hw, p: ConvTranspose2dParams) -> Result<Hw> {
    check_stride_dilation(p.stride, p.dilation, "conv_transpose2d")?;
    let at = |hw: fn(Hw) -> usize| {
        [
            hw(p.stride),
            hw(p.padding),
            hw(p.output_padding),
            hw(p.dilation),
        ]
    };
    Ok(Hw {
        h: conv_transpose_axis(input.h, k.h, at(|v| v.h), 0)?,
        w: conv_transpose_axis(input.w, k.w, at(|v| v.w), 1)?,
    })
}

/// The checks both conv kinds share: ranks, non-empty, input channels vs the weight, bias
/// length. `w_in` is the weight dimension that must match the input's channels; returns
/// (N, C, H, W) and the weight's dims.
fn conv_operands(
    x: &[usize],
    w: &[usize],
    b: Option<&[usize]>,
    op: &str,
    w_layout: &str,
    transposed: bool,
) -> Result<([usize; 4], [usize; 4])> {
    let xd = dims4(x, &format!("{op} input"))?;
    let wd = dims4(w, &format!("{op} weight {w_layout}"))?;
    non_empty(x, &format!("{op} input"))?;
    non_empty(w, &format!("{op} weight"))?;
    let (w_in, w_out) = if transposed {
        (wd[0], wd[1])
    } else {
        (wd[1], wd[0])
    };
    if w_in != xd[1] {
        return Err(Error::Shape(format!(
            "{op}: input has {} channels but the weight {w:?} expects {w_in}",
            xd[1]
        )));
    }
    if let Some(bs) = b {
        if bs != [w_out] {
            return Err(Error::Shape(format!(
                "{op}: bias must have shape [{w_out}], got {bs:?}"
            )));
        }
    }
    Ok((xd, wd))
}

/// Validate a conv2d call; returns the output shape (N, Cout, Ho, Wo).
pub fn conv2d_shapes(
    x: &[usize],
    w: &[usize],
    b: Option<&[usize]>,
    p: Conv2dParams,
) -> Result<[usize; 4]> {
    Ok(ConvGeom::conv2d(x, w, b, p)?.y_shape())
}

/// Validate a conv_transpose2d call; returns the output shape (N, Cout, Ho, Wo).
pub fn conv_transpose2d_shapes(
    x: &[usize],
    w: &[usize],
    b: Option<&[usize]>,
    p: ConvTranspose2dParams,
) -> Result<[usize; 4]> {
    Ok(ConvGeom::transposed(x, w, b, p)?.x_shape())
}
