//! Convolutions and matmul on the CPU: im2col + GEMM per sample, the batch split over threads.
//!
//! Three kernels do all the work of conv2d and conv_transpose2d:
//!   forward          y_n   = W (Cout x Cin k k) * cols(x_n)          (cols: Cin k k x Ho Wo)
//!   backward-input   gx_n  = col2im(W^T * gy_n)
//!   backward-weight  gW    = sum_n gy_n * cols(x_n)^T
//! A transposed conv is the backward of a direct conv whose weight is its own weight read as
//! (O = Cin_t, I = Cout_t): its forward is `backward_input`, its backward-input is `forward`,
//! and its backward-weight is `backward_weight` with x and gy swapped. The kernels take the
//! sizes of both sides explicitly, so output_padding (extra rows no window reaches) just works.

use super::{host, new_tensor, par_chunks, par_map, sgemm, threads, CpuBackend};
use crate::backend::*;
use crate::tensor::{dims4, Tensor};
use crate::{Error, Result};

/// One direct conv: input (N, cin, h, w) -> output (N, cout, ho, wo), square kernel k.
#[derive(Clone, Copy, Debug)]
struct Geom {
    n: usize,
    cin: usize,
    h: usize,
    w: usize,
    cout: usize,
    k: usize,
    ho: usize,
    wo: usize,
    stride: usize,
    pad: usize,
    dil: usize,
}

impl Geom {
    fn in_len(&self) -> usize {
        self.cin * self.h * self.w
    }
    fn out_len(&self) -> usize {
        self.cout * self.ho * self.wo
    }
    fn ckk(&self) -> usize {
        self.cin * self.k * self.k
    }
    fn pixels(&self) -> usize {
        self.ho * self.wo
    }
    /// A 1x1, stride-1, unpadded conv: cols(x) is x itself.
    fn is_pointwise(&self) -> bool {
        self.k == 1 && self.stride == 1 && self.pad == 0 && self.ho == self.h && self.wo == self.w
    }
    /// Samples per thread chunk, and whether the GEMMs inside should use all threads
    /// (when the batch is too small to keep every thread busy).
    fn chunking(&self) -> (usize, bool) {
        let t = threads();
        if self.n >= t {
            (self.n.div_ceil(t), false)
        } else {
            (self.n, true)
        }
    }
}

/// Output positions o in [lo, hi) along one axis whose input index o*stride + off is inside [0, size).
fn valid_range(off: isize, size: usize, out: usize, stride: usize) -> (usize, usize) {
    let s = stride as isize;
    let lo = if off >= 0 { 0 } else { (-off + s - 1) / s };
    let room = size as isize - off;
    let hi = if room <= 0 { 0 } else { (room + s - 1) / s };
    let lo = (lo as usize).min(out);
    let hi = (hi as usize).clamp(lo, out);
    (lo, hi)
}

/// Visit every (row of cols, output row oy, valid ox range, input index of ox = 0) of one sample;
/// output rows whose window row falls on padding get an empty range. Shared by im2col and
/// col2im so both use the same index arithmetic.
fn for_each_window(g: &Geom, mut visit: impl FnMut(usize, usize, (usize, usize), isize)) {
    let (s, d, p) = (g.stride as isize, g.dil as isize, g.pad as isize);
    for c in 0..g.cin {
        for ky in 0..g.k {
            let offy = ky as isize * d - p;
            let (ylo, yhi) = valid_range(offy, g.h, g.ho, g.stride);
            for kx in 0..g.k {
                let offx = kx as isize * d - p;
                let xr = valid_range(offx, g.w, g.wo, g.stride);
                let row = (c * g.k + ky) * g.k + kx;
                for oy in 0..g.ho {
                    if oy < ylo || oy >= yhi {
                        visit(row, oy, (0, 0), 0);
                        continue;
                    }
                    let iy = oy as isize * s + offy;
                    // input index of output column ox is base + ox * stride
                    let base = (c * g.h * g.w) as isize + iy * g.w as isize + offx;
                    visit(row, oy, xr, base);
                }
            }
        }
    }
}

/// cols (Cin k k, Ho Wo) of one sample x (Cin, H, W); entries that fall on padding are 0.
fn im2col(g: &Geom, x: &[f32], cols: &mut [f32]) {
    let (wo, pix, s) = (g.wo, g.pixels(), g.stride);
    for_each_window(g, |row, oy, (lo, hi), base| {
        let dst = &mut cols[row * pix + oy * wo..row * pix + oy * wo + wo];
        dst[..lo].fill(0.0);
        dst[hi..].fill(0.0);
        if lo >= hi {
            return;
        }
        if s == 1 {
            let start = (base + lo as isize) as usize;
            dst[lo..hi].copy_from_slice(&x[start..start + (hi - lo)]);
        } else {
            for ox in lo..hi {
                dst[ox] = x[(base + (ox * s) as isize) as usize];
            }
        }
    });
}

/// gx (Cin, H, W) += the columns of one sample scattered back to their input pixels.
fn col2im(g: &Geom, cols: &[f32], gx: &mut [f32]) {
    let (wo, pix, s) = (g.wo, g.pixels(), g.stride);
    for_each_window(g, |row, oy, (lo, hi), base| {
        let src = &cols[row * pix + oy * wo..row * pix + oy * wo + wo];
        for ox in lo..hi {
            gx[(base + (ox * s) as isize) as usize] += src[ox];
        }
    });
}

/// y (N, Cout, Ho, Wo) = conv(x, w) + bias.
fn forward(g: &Geom, x: &[f32], w: &[f32], bias: Option<&[f32]>) -> Vec<f32> {
    let mut y = vec![0.0f32; g.n * g.out_len()];
    let (per, par) = g.chunking();
    let (ckk, pix) = (g.ckk(), g.pixels());
    par_chunks(&mut y, per * g.out_len(), |chunk, ys| {
        let mut cols = if g.is_pointwise() {
            Vec::new()
        } else {
            vec![0.0f32; ckk * pix]
        };
        for (j, yn) in ys.chunks_mut(g.out_len()).enumerate() {
            let i = chunk * per + j;
            let xn = &x[i * g.in_len()..(i + 1) * g.in_len()];
            let src: &[f32] = if g.is_pointwise() {
                xn
            } else {
                im2col(g, xn, &mut cols);
                &cols
            };
            if let Some(b) = bias {
                for (co, row) in yn.chunks_mut(pix).enumerate() {
                    row.fill(b[co]);
                }
            }
            sgemm(
                g.cout,
                pix,
                ckk,
                (w, ckk, 1),
                (src, pix, 1),
                (yn, pix, 1),
                bias.is_some(),
                par,
            );
        }
    });
    y
}

/// gx (N, Cin, H, W) from gy (N, Cout, Ho, Wo).
fn backward_input(g: &Geom, gy: &[f32], w: &[f32]) -> Vec<f32> {
    let mut gx = vec![0.0f32; g.n * g.in_len()];
    let (per, par) = g.chunking();
    let (ckk, pix) = (g.ckk(), g.pixels());
    par_chunks(&mut gx, per * g.in_len(), |chunk, gxs| {
        let mut cols = if g.is_pointwise() {
            Vec::new()
        } else {
            vec![0.0f32; ckk * pix]
        };
        for (j, gxn) in gxs.chunks_mut(g.in_len()).enumerate() {
            let i = chunk * per + j;
            let gyn = &gy[i * g.out_len()..(i + 1) * g.out_len()];
            // W^T: element (r, co) of the (Cin k k, Cout) matrix is w[co * ckk + r]
            if g.is_pointwise() {
                sgemm(
                    ckk,
                    pix,
                    g.cout,
                    (w, 1, ckk),
                    (gyn, pix, 1),
                    (gxn, pix, 1),
                    false,
                    par,
                );
            } else {
                sgemm(
                    ckk,
                    pix,
                    g.cout,
                    (w, 1, ckk),
                    (gyn, pix, 1),
                    (&mut cols, pix, 1),
                    false,
                    par,
                );
                col2im(g, &cols, gxn);
            }
        }
    });
    gx
}

/// gw (Cout, Cin, k, k) = sum over the batch of gy_n * cols(x_n)^T.
fn backward_weight(g: &Geom, x: &[f32], gy: &[f32]) -> Vec<f32> {
    let (per, par) = g.chunking();
    let (ckk, pix) = (g.ckk(), g.pixels());
    let wlen = g.cout * ckk;
    let partials = par_map(g.n.div_ceil(per), |chunk| {
        let mut acc = vec![0.0f32; wlen];
        let mut cols = if g.is_pointwise() {
            Vec::new()
        } else {
            vec![0.0f32; ckk * pix]
        };
        for i in chunk * per..((chunk + 1) * per).min(g.n) {
            let xn = &x[i * g.in_len()..(i + 1) * g.in_len()];
            let gyn = &gy[i * g.out_len()..(i + 1) * g.out_len()];
            let src: &[f32] = if g.is_pointwise() {
                xn
            } else {
                im2col(g, xn, &mut cols);
                &cols
            };
            // cols^T: element (pixel, r) is src[r * pix + pixel]
            sgemm(
                g.cout,
                ckk,
                pix,
                (gyn, pix, 1),
                (src, 1, pix),
                (&mut acc, ckk, 1),
                true,
                par,
            );
        }
        acc
    });
    let mut it = partials.into_iter();
    let mut gw = it.next().unwrap_or_else(|| vec![0.0; wlen]);
    for p in it {
        gw.iter_mut().zip(&p).for_each(|(a, b)| *a += b);
    }
    gw
}

fn conv_geom(s: [usize; 8], p: Conv2dParams) -> Geom {
    let [n, cin, h, w, cout, k, ho, wo] = s;
    Geom {
        n,
        cin,
        h,
        w,
        cout,
        k,
        ho,
        wo,
        stride: p.stride,
        pad: p.padding,
        dil: p.dilation,
    }
}

/// The direct conv that a transposed conv (sizes from `conv_transpose2d_shapes`) is the backward of:
/// its input is the transposed conv's output and vice versa.
fn transpose_geom(s: [usize; 8], p: ConvTranspose2dParams) -> Geom {
    let [n, cin_t, h, w, cout_t, k, ho, wo] = s;
    Geom {
        n,
        cin: cout_t,
        h: ho,
        w: wo,
        cout: cin_t,
        k,
        ho: h,
        wo: w,
        stride: p.stride,
        pad: p.padding,
        dil: p.dilation,
    }
}

fn expect_shape(t: &[usize], want: [usize; 4], op: &str, what: &str) -> Result<()> {
    dims4(t, what)?;
    if t != want {
        return Err(Error::Shape(format!(
            "{op}: {what} must have shape {want:?}, got {t:?}"
        )));
    }
    Ok(())
}

pub fn conv2d(
    _be: &CpuBackend,
    x: &Tensor,
    w: &Tensor,
    b: Option<&Tensor>,
    p: Conv2dParams,
) -> Result<Tensor> {
    let s = conv2d_shapes(x.shape(), w.shape(), b.map(|b| b.shape()), p)?;
    let g = conv_geom(s, p);
    let (xh, wh) = (host(x, "conv2d")?, host(w, "conv2d")?);
    let bh = b.map(|b| host(b, "conv2d")).transpose()?;
    let bd = bh.as_ref().map(|h| h.read()).transpose()?;
    let y = forward(
        &g,
        &xh.read()?,
        &wh.read()?,
        bd.as_deref().map(|v| v.as_slice()),
    );
    Ok(new_tensor(&[g.n, g.cout, g.ho, g.wo], y))
}

pub fn conv2d_backward_input(
    _be: &CpuBackend,
    gy: &Tensor,
    w: &Tensor,
    x_shape: &[usize],
    p: Conv2dParams,
) -> Result<Tensor> {
    let op = "conv2d_backward_input";
    let s = conv2d_shapes(x_shape, w.shape(), None, p)?;
    let g = conv_geom(s, p);
    expect_shape(gy.shape(), [g.n, g.cout, g.ho, g.wo], op, "output gradient")?;
    let (gyh, wh) = (host(gy, op)?, host(w, op)?);
    let gx = backward_input(&g, &gyh.read()?, &wh.read()?);
    Ok(new_tensor(x_shape, gx))
}

pub fn conv2d_backward_weight(
    _be: &CpuBackend,
    x: &Tensor,
    gy: &Tensor,
    w_shape: &[usize],
    p: Conv2dParams,
) -> Result<Tensor> {
    let op = "conv2d_backward_weight";
    let s = conv2d_shapes(x.shape(), w_shape, None, p)?;
    let g = conv_geom(s, p);
    expect_shape(gy.shape(), [g.n, g.cout, g.ho, g.wo], op, "output gradient")?;
    let (xh, gyh) = (host(x, op)?, host(gy, op)?);
    let gw = backward_weight(&g, &xh.read()?, &gyh.read()?);
    Ok(new_tensor(w_shape, gw))
}

pub fn conv_transpose2d(
    _be: &CpuBackend,
    x: &Tensor,
    w: &Tensor,
    b: Option<&Tensor>,
    p: ConvTranspose2dParams,
) -> Result<Tensor> {
    let op = "conv_transpose2d";
    let s = conv_transpose2d_shapes(x.shape(), w.shape(), b.map(|b| b.shape()), p)?;
    let g = transpose_geom(s, p);
    let (xh, wh) = (host(x, op)?, host(w, op)?);
    let mut y = backward_input(&g, &xh.read()?, &wh.read()?);
    if let Some(b) = b {
        let bh = host(b, op)?;
        let bd = bh.read()?;
        for (i, plane) in y.chunks_mut(g.h * g.w).enumerate() {
            let v = bd[i % g.cin];
            plane.iter_mut().for_each(|e| *e += v);
        }
    }
    Ok(new_tensor(&[g.n, g.cin, g.h, g.w], y))
}

pub fn conv_transpose2d_backward_input(
    _be: &CpuBackend,
    gy: &Tensor,
    w: &Tensor,
    x_shape: &[usize],
    p: ConvTranspose2dParams,
) -> Result<Tensor> {
    let op = "conv_transpose2d_backward_input";
    let s = conv_transpose2d_shapes(x_shape, w.shape(), None, p)?;
    let g = transpose_geom(s, p);
    expect_shape(gy.shape(), [g.n, g.cin, g.h, g.w], op, "output gradient")?;
    let (gyh, wh) = (host(gy, op)?, host(w, op)?);
    let gx = forward(&g, &gyh.read()?, &wh.read()?, None);
    Ok(new_tensor(x_shape, gx))
}

pub fn conv_transpose2d_backward_weight(
    _be: &CpuBackend,
    x: &Tensor,
    gy: &Tensor,
    w_shape: &[usize],
    p: ConvTranspose2dParams,
) -> Result<Tensor> {
    let op = "conv_transpose2d_backward_weight";
    let s = conv_transpose2d_shapes(x.shape(), w_shape, None, p)?;
    let g = transpose_geom(s, p);
    expect_shape(gy.shape(), [g.n, g.cin, g.h, g.w], op, "output gradient")?;
    let (xh, gyh) = (host(x, op)?, host(gy, op)?);
    // in the direct conv, gy is the input and x the output gradient
    let gw = backward_weight(&g, &gyh.read()?, &xh.read()?);
    Ok(new_tensor(w_shape, gw))
}

pub fn matmul(
    _be: &CpuBackend,
    a: &Tensor,
    b: &Tensor,
    trans_a: bool,
    trans_b: bool,
) -> Result<Tensor> {
    let [m, k, n] = matmul_shapes(a.shape(), b.shape(), trans_a, trans_b)?;
    let (ah, bh) = (host(a, "matmul")?, host(b, "matmul")?);
    let (ad, bd) = (ah.read()?, bh.read()?);
    // a stored (M, K) row-major, or (K, M) when transposed; likewise b
    let sa = if trans_a { (1, m) } else { (k, 1) };
    let sb = if trans_b { (1, k) } else { (n, 1) };
    let mut c = vec![0.0f32; m * n];
    sgemm(
        m,
        n,
        k,
        (&ad, sa.0, sa.1),
        (&bd, sb.0, sb.1),
        (&mut c, n, 1),
        false,
        true,
    );
    Ok(new_tensor(&[m, n], c))
}
