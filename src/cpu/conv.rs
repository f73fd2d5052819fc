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
use crate::tensor::Tensor;
use crate::Result;

/// Samples per thread chunk, and whether the GEMMs inside should use all threads
/// (when the batch is too small to keep every thread busy).
fn chunking(g: &ConvGeom) -> (usize, bool) {
    let t = threads();
    if g.n >= t {
        (g.n.div_ceil(t), false)
    } else {
        (g.n, true)
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
fn for_each_window(g: &ConvGeom, mut visit: impl FnMut(usize, usize, (usize, usize), isize)) {
    for c in 0..g.cin {
        for ky in 0..g.kh {
            let offy = (ky * g.dh) as isize - g.ph as isize;
            let (ylo, yhi) = valid_range(offy, g.h, g.ho, g.sh);
            for kx in 0..g.kw {
                let offx = (kx * g.dw) as isize - g.pw as isize;
                let xr = valid_range(offx, g.w, g.wo, g.sw);
                let row = (c * g.kh + ky) * g.kw + kx;
                for oy in 0..g.ho {
                    if oy < ylo || oy >= yhi {
                        visit(row, oy, (0, 0), 0);
                        continue;
                    }
                    let iy = (oy * g.sh) as isize + offy;
                    // input index of output column ox is base + ox * sw
                    let base = (c * g.h * g.w) as isize + iy * g.w as isize + offx;
                    visit(row, oy, xr, base);
                }
            }
        }
    }
}

/// cols (Cin k k, Ho Wo) of one sample x (Cin, H, W); entries that fall on padding are 0.
fn im2col(g: &ConvGeom, x: &[f32], cols: &mut [f32]) {
    let (wo, pix, s) = (g.wo, g.pixels(), g.sw);
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
fn col2im(g: &ConvGeom, cols: &[f32], gx: &mut [f32]) {
    let (wo, pix, s) = (g.wo, g.pixels(), g.sw);
    for_each_window(g, |row, oy, (lo, hi), base| {
        let src = &cols[row * pix + oy * wo..row * pix + oy * wo + wo];
        for ox in lo..hi {
            gx[(base + (ox * s) as isize) as usize] += src[ox];
        }
    });
}

/// y (N, Cout, Ho, Wo) = conv(x, w) + bias.
fn forward(g: &ConvGeom, x: &[f32], w: &[f32], bias: Option<&[f32]>) -> Vec<f32> {
    let mut y = vec![0.0f32; g.n * g.y_per_sample()];
    let (per, par) = chunking(g);
    let (ckk, pix) = (g.taps(), g.pixels());
    par_chunks(&mut y, per * g.y_per_sample(), |chunk, ys| {
        let mut cols = if g.is_pointwise() {
            Vec::new()
        } else {
            vec![0.0f32; ckk * pix]
        };
        for (j, yn) in ys.chunks_mut(g.y_per_sample()).enumerate() {
            let i = chunk * per + j;
            let xn = &x[i * g.x_per_sample()..(i + 1) * g.x_per_sample()];
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
fn backward_input(g: &ConvGeom, gy: &[f32], w: &[f32]) -> Vec<f32> {
    let mut gx = vec![0.0f32; g.n * g.x_per_sample()];
    let (per, par) = chunking(g);
    let (ckk, pix) = (g.taps(), g.pixels());
    par_chunks(&mut gx, per * g.x_per_sample(), |chunk, gxs| {
        let mut cols = if g.is_pointwise() {
            Vec::new()
        } else {
            vec![0.0f32; ckk * pix]
        };
        for (j, gxn) in gxs.chunks_mut(g.x_per_sample()).enumerate() {
            let i = chunk * per + j;
            let gyn = &gy[i * g.y_per_sample()..(i + 1) * g.y_per_sample()];
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
fn backward_weight(g: &ConvGeom, x: &[f32], gy: &[f32]) -> Vec<f32> {
    let (per, par) = chunking(g);
    let (ckk, pix) = (g.taps(), g.pixels());
    let wlen = g.cout * ckk;
    let partials = par_map(g.n.div_ceil(per), |chunk| {
        let mut acc = vec![0.0f32; wlen];
        let mut cols = if g.is_pointwise() {
            Vec::new()
        } else {
            vec![0.0f32; ckk * pix]
        };
        for i in chunk * per..((chunk + 1) * per).min(g.n) {
            let xn = &x[i * g.x_per_sample()..(i + 1) * g.x_per_sample()];
            let gyn = &gy[i * g.y_per_sample()..(i + 1) * g.y_per_sample()];
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

pub fn conv2d(
    _be: &CpuBackend,
    x: &Tensor,
    w: &Tensor,
    b: Option<&Tensor>,
    p: Conv2dParams,
) -> Result<Tensor> {
    let g = ConvGeom::conv2d(x.shape(), w.shape(), b.map(|b| b.shape()), p)?;
    let (xh, wh) = (host(x, "conv2d")?, host(w, "conv2d")?);
    let bh = b.map(|b| host(b, "conv2d")).transpose()?;
    let bd = bh.as_ref().map(|h| h.read()).transpose()?;
    let y = forward(
        &g,
        &xh.read()?,
        &wh.read()?,
        bd.as_deref().map(|v| v.as_slice()),
    );
    Ok(new_tensor(&g.y_shape(), y))
}

pub fn conv2d_backward_input(
    _be: &CpuBackend,
    gy: &Tensor,
    w: &Tensor,
    x_shape: &[usize],
    p: Conv2dParams,
) -> Result<Tensor> {
    let op = "conv2d_backward_input";
    let g = ConvGeom::conv2d(x_shape, w.shape(), None, p)?;
    ConvGeom::check_output_grad(gy.shape(), g.y_shape(), op)?;
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
    let g = ConvGeom::conv2d(x.shape(), w_shape, None, p)?;
    ConvGeom::check_output_grad(gy.shape(), g.y_shape(), op)?;
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
    let g = ConvGeom::transposed(x.shape(), w.shape(), b.map(|b| b.shape()), p)?;
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
    Ok(new_tensor(&g.x_shape(), y))
}

pub fn conv_transpose2d_backward_input(
    _be: &CpuBackend,
    gy: &Tensor,
    w: &Tensor,
    x_shape: &[usize],
    p: ConvTranspose2dParams,
) -> Result<Tensor> {
    let op = "conv_transpose2d_backward_input";
    let g = ConvGeom::transposed(x_shape, w.shape(), None, p)?;
    ConvGeom::check_output_grad(gy.shape(), g.x_shape(), op)?;
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
    let g = ConvGeom::transposed(x.shape(), w_shape, None, p)?;
    ConvGeom::check_output_grad(gy.shape(), g.x_shape(), op)?;
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
