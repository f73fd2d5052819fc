//! Convolutions and matmul on the CPU: im2col in cache-sized blocks of output pixels, each
//! multiplied at once (GEMM), the (sample, block) items spread over the threads.
//!
//! Three kernels do all the work of conv2d and conv_transpose2d:
//!   forward          y_n   = W (Cout x Cin k k) * cols(x_n)          (cols: Cin k k x Ho Wo)
//!   backward-input   gx_n  = col2im(W^T * gy_n), or at stride 1 the forward conv of gy with
//!                    the flipped, transposed weight (no col2im, blocked like forward)
//!   backward-weight  gW    = sum_n gy_n * cols(x_n)^T
//! A transposed conv is the backward of a direct conv whose weight is its own weight read as
//! (O = Cin_t, I = Cout_t): its forward is `backward_input`, its backward-input is `forward`,
//! and its backward-weight is `backward_weight` with x and gy swapped. The kernels take the
//! sizes of both sides explicitly, so output_padding (extra rows no window reaches) just works.

use super::{
    build_vec, conv_strided, deconv, host, new_tensor, par_chunks, par_for, par_map, sgemm,
    sgemm_ptr, simd, threads, with_scratch, CpuBackend,
};
#[cfg(target_arch = "x86_64")]
use super::{conv_winograd, gemm_small};
#[cfg(target_arch = "wasm32")]
use super::{gemm_wasm, winograd_wasm};
use crate::backend::conv_ops::ConvKernels;
use crate::backend::*;
use crate::tensor::Tensor;
use crate::Result;

/// Floats of one im2col block (taps x pixels): small enough to stay in a core's L2 cache
/// between being written and being read by the GEMM.
const BLOCK_FLOATS: usize = 96 * 1024;

/// Columns (samples x pixels) wanted per GEMM of the col2im path of `backward_input`.
const COL2IM_COLUMNS: usize = 384;

/// Columns wanted per GEMM when `forward` / `backward_weight` put several small samples side
/// by side (a GAN's 7x7 and 14x14 maps), and the floats their im2col block may take (in L2).
const GROUP_COLUMNS: usize = 512;
const GROUP_FLOATS: usize = 256 * 1024;

/// Samples per work item of `forward` / `backward_weight`: several when a sample's columns are
/// few (one GEMM per 49-pixel sample runs far below speed), else 1 (blocks within a sample).
fn samples_per_item(g: &ConvGeom) -> usize {
    let pix = wide_layout(g).1.max(1);
    let fit = (GROUP_FLOATS / g.taps().max(1)) / pix;
    if fit < 2 || g.n < 2 {
        return 1;
    }
    // enough items that every thread gets work
    fit.min(GROUP_COLUMNS.div_ceil(pix))
        .min(g.n.div_ceil(threads()))
        .max(1)
}

/// Output pixels per work item of `forward` / `backward_weight`: a multiple of 16 (one AVX-512
/// vector), at most the sample's pixels.
fn block_pixels(g: &ConvGeom) -> usize {
    let pb = (BLOCK_FLOATS / g.taps().max(1)).max(16) / 16 * 16;
    pb.min(g.pixels()).max(1)
}

/// max(v, 0), NaN to 0 as `f32::max` does, written as a compare so that it vectorizes (in
/// wasm `f32::max` is a call to `fmaxf` per value).
#[inline(always)]
fn relu0(v: f32) -> f32 {
    if v > 0.0 {
        v
    } else {
        0.0
    }
}

/// Output positions o in [lo, hi) along one axis whose input index o*stride + off is inside [0, size).
#[inline(always)]
fn valid_range(off: isize, size: usize, out: usize, stride: usize) -> (usize, usize) {
    let s = stride as isize;
    let lo = if off >= 0 { 0 } else { (-off + s - 1) / s };
    let room = size as isize - off;
    let hi = if room <= 0 { 0 } else { (room + s - 1) / s };
    let lo = (lo as usize).min(out);
    let hi = (hi as usize).clamp(lo, out);
    (lo, hi)
}

/// Columns p0..p1 of cols(x) for one sample x (Cin, H, W): a (taps, p1 - p0) block, row r at
/// cols[r * ld..] (ld >= p1 - p0: several samples' blocks can sit side by side); entries that
/// fall on padding are 0. Each (tap, output row) is one contiguous copy at stride 1.
fn im2col_block(g: &ConvGeom, x: &[f32], p0: usize, p1: usize, cols: &mut [f32], ld: usize) {
    simd::wide!(im2col_block_body(g, x, p0, p1, cols, ld))
}

#[inline(always)]
fn im2col_block_body(g: &ConvGeom, x: &[f32], p0: usize, p1: usize, cols: &mut [f32], ld: usize) {
    let nb = p1 - p0;
    let (wo, sw, sh, plane) = (g.wo, g.sw, g.sh, g.h * g.w);
    let mut row = 0;
    for c in 0..g.cin {
        let xc = &x[c * plane..(c + 1) * plane];
        for ky in 0..g.kh {
            let offy = (ky * g.dh) as isize - g.ph as isize;
            for kx in 0..g.kw {
                let offx = (kx * g.dw) as isize - g.pw as isize;
                let (xlo, xhi) = valid_range(offx, g.w, wo, sw);
                let dst = &mut cols[row * ld..row * ld + nb];
                let mut p = p0;
                while p < p1 {
                    let (oy, ox0) = (p / wo, p % wo);
                    let ox1 = wo.min(ox0 + (p1 - p));
                    let seg = &mut dst[p - p0..p - p0 + (ox1 - ox0)];
                    let iy = (oy * sh) as isize + offy;
                    if iy < 0 || iy >= g.h as isize {
                        seg.fill(0.0);
                    } else {
                        let lo = xlo.clamp(ox0, ox1);
                        let hi = xhi.clamp(lo, ox1);
                        seg[..lo - ox0].fill(0.0);
                        seg[hi - ox0..].fill(0.0);
                        // input index of output column ox is base + ox * sw
                        let base = iy * g.w as isize + offx;
                        if sw == 1 {
                            let s = (base + lo as isize) as usize;
                            copy_short(&mut seg[lo - ox0..hi - ox0], &xc[s..s + (hi - lo)]);
                        } else {
                            for ox in lo..hi {
                                seg[ox - ox0] = xc[(base + (ox * sw) as isize) as usize];
                            }
                        }
                    }
                    p += ox1 - ox0;
                }
                row += 1;
            }
        }
    }
}

/// Rows and columns of each stride phase of `im2col_sample`'s padded copy of a sample.
fn phase_dims(g: &ConvGeom) -> (usize, usize) {
    let hp = (g.ph + g.h).max((g.ho - 1) * g.sh + (g.kh - 1) * g.dh + 1);
    let wp = (g.pw + g.w).max((g.wo - 1) * g.sw + (g.kw - 1) * g.dw + 1);
    (hp.div_ceil(g.sh), wp.div_ceil(g.sw))
}

/// Floats of one stride phase of `im2col_sample`'s padded copy: its rows, plus room for the
/// largest tap column offset (the wide windows read that far past the last row).
fn phase_len(g: &ConvGeom) -> usize {
    let (r, c) = phase_dims(g);
    r * c + (g.kw - 1) * g.dw / g.sw
}

/// Floats of `im2col_sample`'s padded copy.
fn phase_floats(g: &ConvGeom) -> usize {
    g.cin * g.sh * g.sw * phase_len(g)
}

/// (row width, columns per sample) of the wide layout of `im2col_sample` and `col2im`: output
/// rows are as wide as a padded phase row (cw >= Wo); columns Wo..cw of each row are junk.
fn wide_layout(g: &ConvGeom) -> (usize, usize) {
    let cw = phase_dims(g).1;
    (cw, g.ho * cw)
}

/// All columns of cols(x) for one small sample x (Cin, H, W), row r at cols[r * ld..], in the
/// wide layout (`wide_layout`: output pixel (oy, ox) at column oy * cw + ox, ox < Wo; the other
/// columns hold junk, finite values of x or 0). x is first copied into `pad` zero-padded and
/// split in its stride phases (phase (py, px) holds the padded pixels (sh i + py, sw j + px)),
/// so each tap's columns are one contiguous run of a phase: a single copy, no bounds check or
/// division per pixel.
fn im2col_sample(g: &ConvGeom, x: &[f32], cols: &mut [f32], ld: usize, pad: &mut [f32]) {
    let c = phase_dims(g).1;
    let (sh, sw) = (g.sh, g.sw);
    let phase = phase_len(g);
    let pad = &mut pad[..g.cin * sh * sw * phase];
    pad.fill(0.0);
    for ci in 0..g.cin {
        let planes = &mut pad[ci * sh * sw * phase..][..sh * sw * phase];
        for iy in 0..g.h {
            let y = iy + g.ph;
            let (py, row) = (y % sh, y / sh);
            let src = &x[(ci * g.h + iy) * g.w..][..g.w];
            if sw == 1 {
                copy_short(&mut planes[py * phase + row * c + g.pw..][..g.w], src);
            } else if sw == 2 {
                // even input columns go to phase pw % 2, odd ones to the other (de-interleave)
                let (p0, p1) = planes[py * 2 * phase..][..2 * phase].split_at_mut(phase);
                let (a, b) = if g.pw.is_multiple_of(2) {
                    (p0, p1)
                } else {
                    (p1, p0)
                };
                let a = &mut a[row * c + g.pw / 2..][..g.w.div_ceil(2)];
                let b = &mut b[row * c + g.pw.div_ceil(2)..][..g.w / 2];
                for ((pair, ea), eb) in src.chunks_exact(2).zip(a.iter_mut()).zip(b.iter_mut()) {
                    *ea = pair[0];
                    *eb = pair[1];
                }
                if g.w % 2 == 1 {
                    a[g.w / 2] = src[g.w - 1];
                }
            } else {
                // padded column xx = ix + pw lies in phase xx % sw at xx / sw (counted, no division)
                let (mut px, mut col) = (g.pw % sw, g.pw / sw);
                for &v in src {
                    planes[(py * sw + px) * phase + row * c + col] = v;
                    px += 1;
                    if px == sw {
                        px = 0;
                        col += 1;
                    }
                }
            }
        }
    }
    let len = g.ho * c;
    let mut tap = 0;
    for ci in 0..g.cin {
        for ky in 0..g.kh {
            let (py, r0) = ((ky * g.dh) % sh, (ky * g.dh) / sh);
            for kx in 0..g.kw {
                let (px, c0) = ((kx * g.dw) % sw, (kx * g.dw) / sw);
                let plane = &pad[((ci * sh + py) * sw + px) * phase..][..phase];
                copy_short(&mut cols[tap * ld..][..len], &plane[r0 * c + c0..][..len]);
                tap += 1;
            }
        }
    }
}

/// One output plane (Ho x Wo) into the wide layout (Ho rows of cw), 0 in the junk columns.
fn wide_rows(g: &ConvGeom, src: &[f32], dst: &mut [f32]) {
    let cw = wide_layout(g).0;
    for (s, d) in src.chunks_exact(g.wo).zip(dst.chunks_exact_mut(cw)) {
        let (real, junk) = d.split_at_mut(g.wo);
        copy_short(real, s);
        junk.fill(0.0);
    }
}

/// dst = src (same length) for the short runs of im2col (an image row, a tap's window), inline,
/// where `copy_from_slice` calls memcpy for each run: 16 floats at a time, the tail as one
/// more 16-, 8- or 4-float copy that overlaps what is already copied.
#[inline(always)]
pub(super) fn copy_short(dst: &mut [f32], src: &[f32]) {
    let n = dst.len().min(src.len());
    let (dst, src) = (&mut dst[..n], &src[..n]);
    #[inline(always)]
    fn block<const K: usize>(dst: &mut [f32], src: &[f32], at: usize) {
        let s: &[f32; K] = src[at..at + K].try_into().unwrap();
        let d: &mut [f32; K] = (&mut dst[at..at + K]).try_into().unwrap();
        *d = *s;
    }
    if n >= 16 {
        let mut at = 0;
        while at + 16 <= n {
            block::<16>(dst, src, at);
            at += 16;
        }
        if at < n {
            block::<16>(dst, src, n - 16);
        }
    } else if n >= 8 {
        block::<8>(dst, src, 0);
        block::<8>(dst, src, n - 8);
    } else if n >= 4 {
        block::<4>(dst, src, 0);
        block::<4>(dst, src, n - 4);
    } else {
        for (d, s) in dst.iter_mut().zip(src) {
            *d = *s;
        }
    }
}

/// gx (Cin, H, W) = the columns of one sample scattered back to their input pixels and summed
/// (the mirror of `im2col_sample`, the same wide layout, whose junk columns must be 0 here).
/// Pixel column p of row r is cols[r * ld + off + p] (several samples side by side). Each
/// tap's columns are added into `pad`, the padded sample split in its stride phases, as one
/// contiguous run (no bounds check, no strided scatter per pixel); the phases are then copied
/// back into gx without the padding.
fn col2im(g: &ConvGeom, cols: &[f32], ld: usize, off: usize, gx: &mut [f32], pad: &mut [f32]) {
    let c = phase_dims(g).1;
    let (sh, sw) = (g.sh, g.sw);
    let phase = phase_len(g);
    let pad = &mut pad[..g.cin * sh * sw * phase];
    pad.fill(0.0);
    let len = g.ho * c;
    simd::wide!({
        let mut tap = 0;
        for ci in 0..g.cin {
            for ky in 0..g.kh {
                let (py, r0) = ((ky * g.dh) % sh, (ky * g.dh) / sh);
                for kx in 0..g.kw {
                    let (px, c0) = ((kx * g.dw) % sw, (kx * g.dw) / sw);
                    let plane = &mut pad[((ci * sh + py) * sw + px) * phase..][..phase];
                    let src = &cols[tap * ld + off..][..len];
                    for (d, s) in plane[r0 * c + c0..][..len].iter_mut().zip(src) {
                        *d += *s;
                    }
                    tap += 1;
                }
            }
        }
    });
    for ci in 0..g.cin {
        let planes = &pad[ci * sh * sw * phase..][..sh * sw * phase];
        for iy in 0..g.h {
            let y = iy + g.ph;
            let (py, row) = (y % sh, y / sh);
            let dst = &mut gx[(ci * g.h + iy) * g.w..][..g.w];
            if sw == 1 {
                copy_short(dst, &planes[py * phase + row * c + g.pw..][..g.w]);
            } else if sw == 2 {
                // interleave the two phases back (the mirror of im2col_sample's split)
                let (p0, p1) = planes[py * 2 * phase..][..2 * phase].split_at(phase);
                let (a, b) = if g.pw.is_multiple_of(2) {
                    (p0, p1)
                } else {
                    (p1, p0)
                };
                let a = &a[row * c + g.pw / 2..][..g.w.div_ceil(2)];
                let b = &b[row * c + g.pw.div_ceil(2)..][..g.w / 2];
                for ((pair, &ea), &eb) in dst.chunks_exact_mut(2).zip(a).zip(b) {
                    pair[0] = ea;
                    pair[1] = eb;
                }
                if g.w % 2 == 1 {
                    dst[g.w - 1] = a[g.w / 2];
                }
            } else {
                let (mut px, mut col) = (g.pw % sw, g.pw / sw);
                for d in dst.iter_mut() {
                    *d = planes[(py * sw + px) * phase + row * c + col];
                    px += 1;
                    if px == sw {
                        px = 0;
                        col += 1;
                    }
                }
            }
        }
    }
}

/// A raw output pointer shared by work items that write disjoint parts of one buffer.
#[derive(Clone, Copy)]
pub(super) struct SharedOut(pub(super) *mut f32);
// SAFETY: each work item writes a range no other item touches (see the callers).
unsafe impl Send for SharedOut {}
unsafe impl Sync for SharedOut {}

impl SharedOut {
    /// The pointer `offset` floats further (a method, so closures capture the whole Sync value).
    pub(super) fn at(self, offset: usize) -> *mut f32 {
        self.0.wrapping_add(offset)
    }
}

/// y (N, Cout, Ho, Wo) = conv(x, w) + bias. Work items are (sample, block of output pixels),
/// spread over the threads, so a batch of one uses every core too; each item writes its im2col
/// block into the thread's scratch (in cache) and multiplies it at once.
/// With `relu`, each block of y goes through max(0, .) right after its GEMM, while in cache.
fn forward(g: &ConvGeom, x: &[f32], w: &[f32], bias: Option<&[f32]>, relu: bool) -> Vec<f32> {
    if conv_strided::applies(g) {
        return conv_strided::forward(g, x, w, bias, relu);
    }
    // AVX-512: the 3x3 convs as Winograd F(4x4, 3x3), 4x fewer multiply-adds
    #[cfg(target_arch = "x86_64")]
    if conv_winograd::applies(g) {
        return conv_winograd::forward(g, x, w, bias, relu);
    }
    let spi = samples_per_item(g);
    if spi > 1 && !g.is_pointwise() {
        return forward_grouped(g, x, w, bias, relu, spi);
    }
    // wasm: the 3x3 convs as Winograd F(4x4, 3x3), 4x fewer multiply-adds
    #[cfg(target_arch = "wasm32")]
    if winograd_wasm::applies(g) {
        return winograd_wasm::forward(g, x, w, bias, relu);
    }
    if taps_apply(g) {
        return forward_taps(g, x, w, bias, relu);
    }
    let mut y = vec![0.0f32; g.n * g.y_per_sample()];
    let (ckk, pix) = (g.taps(), g.pixels());
    let pb = block_pixels(g);
    let blocks = pix.div_ceil(pb);
    let out = SharedOut(y.as_mut_ptr());
    par_for(g.n * blocks, |item| {
        let (i, b) = (item / blocks, item % blocks);
        let (p0, p1) = (b * pb, ((b + 1) * pb).min(pix));
        let nb = p1 - p0;
        let xn = &x[i * g.x_per_sample()..(i + 1) * g.x_per_sample()];
        // item (i, b) alone writes columns p0..p1 of every channel row of sample i
        let yn = out.at(i * g.y_per_sample() + p0);
        if let Some(b) = bias {
            for (co, v) in b.iter().enumerate() {
                // SAFETY: row co of this item's block lies inside y (co < cout, p0 + nb <= pix)
                unsafe { std::slice::from_raw_parts_mut(yn.add(co * pix), nb) }.fill(*v);
            }
        }
        let c = (yn, pix, 1);
        let acc = bias.is_some();
        // SAFETY: c spans rows 0..cout, columns 0..nb of this item's block, inside y and
        // touched by no other item.
        if g.is_pointwise() {
            unsafe {
                sgemm_ptr(
                    g.cout,
                    nb,
                    ckk,
                    (w, ckk, 1),
                    (&xn[p0..], pix, 1),
                    c,
                    acc,
                    false,
                )
            };
        } else {
            with_scratch(ckk * nb, |cols| {
                im2col_block(g, xn, p0, p1, cols, nb);
                unsafe { sgemm_ptr(g.cout, nb, ckk, (w, ckk, 1), (cols, nb, 1), c, acc, false) };
            });
        }
        if relu {
            for co in 0..g.cout {
                // SAFETY: as for the bias rows above
                let row = unsafe { std::slice::from_raw_parts_mut(yn.add(co * pix), nb) };
                row.iter_mut().for_each(|v| *v = relu0(*v));
            }
        }
    });
    y
}

/// Columns wanted per GEMM of `forward_taps` / `backward_weight_taps` (output rows of a sample
/// in the padded-row layout).
const TAP_COLUMNS: usize = 1024;

/// The columns of `forward_taps` in wasm: its implicit GEMM writes c once (c is not re-read
/// per tap), so its blocks can be larger: fewer input rows copied twice (a block of r rows
/// copies r + kh - 1), while a block's padded rows still fit in L2.
#[cfg(target_arch = "wasm32")]
const TAP_COLUMNS_FORWARD: usize = 4096;
#[cfg(not(target_arch = "wasm32"))]
const TAP_COLUMNS_FORWARD: usize = TAP_COLUMNS;

/// True where `forward_taps` / `backward_weight_taps` serve g: stride 1, a kernel of more than
/// one tap, and enough input channels that one tap's GEMM (depth Cin) runs at speed.
fn taps_apply(g: &ConvGeom) -> bool {
    g.sh == 1 && g.sw == 1 && g.kh * g.kw > 1 && g.cin >= 16
}

/// The padded-row layout of `forward_taps` and `backward_weight_taps` for blocks of output
/// rows of about `columns` columns: (rows per block, blocks, row width cw = W + 2 pw, columns
/// per GEMM, floats per channel plane). A block of nr output rows reads nr + (kh - 1) dh padded
/// input rows of cw; output pixel (r, ox) is column r cw + ox (columns ox >= Wo are junk), and tap
/// (ky, kx) reads the plane from ky dh cw + kx dw on: one run of the columns, no im2col.
/// The columns are a multiple of 16 (so the GEMM reads them in place, unpacked), the plane
/// has room for the last tap's run.
fn tap_layout(g: &ConvGeom, columns: usize) -> (usize, usize, usize, usize, usize) {
    let cw = g.w + 2 * g.pw;
    let blocks = g.ho.div_ceil((columns / cw).max(1));
    let rows = g.ho.div_ceil(blocks);
    let ncol = (rows * cw).next_multiple_of(16);
    let plane = (rows + (g.kh - 1) * g.dh) * cw + (g.kw - 1) * g.dw;
    let plane = (plane + ncol - rows * cw).next_multiple_of(16);
    (rows, g.ho.div_ceil(rows), cw, ncol, plane)
}

/// Where tap t = (ky, kx) starts reading in a plane of `tap_layout`'s padded rows of width cw.
fn tap_offset(g: &ConvGeom, cw: usize, t: usize) -> usize {
    (t / g.kw) * g.dh * cw + (t % g.kw) * g.dw
}

/// Input rows oy0 - ph .. of one sample x (Cin, H, W) in `tap_layout`'s padded rows: plane
/// ci of `pad` holds its rows with pw zeros either side, zero rows past the image, zeros to
/// the end of the plane.
fn pad_rows(g: &ConvGeom, x: &[f32], oy0: usize, cw: usize, plane: usize, pad: &mut [f32]) {
    simd::wide!({
        for (ci, p) in pad.chunks_exact_mut(plane).enumerate().take(g.cin) {
            let xc = &x[ci * g.h * g.w..][..g.h * g.w];
            let rows = p.len() / cw;
            for (r, row) in p.chunks_exact_mut(cw).enumerate() {
                let iy = (oy0 + r) as isize - g.ph as isize;
                if iy < 0 || iy >= g.h as isize {
                    row.iter_mut().for_each(|v| *v = 0.0);
                    continue;
                }
                let (l, rest) = row.split_at_mut(g.pw);
                let (mid, rt) = rest.split_at_mut(g.w);
                l.iter_mut().for_each(|v| *v = 0.0);
                copy_short(mid, &xc[iy as usize * g.w..][..g.w]);
                rt.iter_mut().for_each(|v| *v = 0.0);
            }
            p[rows * cw..].iter_mut().for_each(|v| *v = 0.0);
        }
    })
}

/// `forward` at stride 1 without im2col: each work item (sample, block of output rows) copies
/// its input rows once, padded (`tap_layout`), and sums one GEMM per tap, W[:, :, ky, kx]
/// (Cout x Cin) times the padded rows read from that tap's offset (Cin x columns). The im2col
/// block this replaces was Cin kh kw x columns, written and then packed by the GEMM for every
/// block (a quarter of a DnCNN training step); the padded rows are kh kw times smaller and
/// read in place. In wasm the taps are one implicit GEMM (`gemm_wasm::sgemm_rows_at`, the
/// weight packed once per call) instead of kh kw GEMMs accumulating into c.
fn forward_taps(g: &ConvGeom, x: &[f32], w: &[f32], bias: Option<&[f32]>, relu: bool) -> Vec<f32> {
    let (rows, blocks, cw, ncol, plane) = tap_layout(g, TAP_COLUMNS_FORWARD);
    let (ckk, kk, pix) = (g.taps(), g.kh * g.kw, g.pixels());
    let n = g.n * g.y_per_sample();
    let mut y = Vec::with_capacity(n);
    let out = SharedOut(y.as_mut_ptr());
    // wasm: one implicit GEMM over all (ci, tap) rows, the weight packed once per layer
    #[cfg(target_arch = "wasm32")]
    let (wp, offs) = (
        gemm_wasm::pack_panels(g.cout, ckk, (w, ckk, 1)),
        (0..ckk)
            .map(|r| ((r / kk) * plane + tap_offset(g, cw, r % kk)) as u32)
            .collect::<Vec<u32>>(),
    );
    par_for(g.n * blocks, |item| {
        let (i, b) = (item / blocks, item % blocks);
        let oy0 = b * rows;
        let nr = rows.min(g.ho - oy0);
        let xn = &x[i * g.x_per_sample()..][..g.x_per_sample()];
        with_scratch(g.cin * plane + g.cout * ncol, |buf| {
            let (pad, c) = buf.split_at_mut(g.cin * plane);
            pad_rows(g, xn, oy0, cw, plane, pad);
            #[cfg(target_arch = "wasm32")]
            gemm_wasm::sgemm_rows_at(g.cout, ncol, &wp, pad, &offs, (&mut *c, ncol, 1));
            #[cfg(not(target_arch = "wasm32"))]
            for t in 0..kk {
                sgemm(
                    g.cout,
                    ncol,
                    g.cin,
                    (&w[t..], ckk, kk),
                    (&pad[tap_offset(g, cw, t)..], plane, 1),
                    (&mut *c, ncol, 1),
                    t > 0,
                    false,
                );
            }
            simd::wide!({
                for co in 0..g.cout {
                    let bv = bias.map_or(0.0, |b| b[co]);
                    // SAFETY: item (i, b) alone writes rows oy0..oy0 + nr of sample i
                    // (the unsafe is redundant only inside wide!'s AVX copies)
                    #[allow(unused_unsafe)]
                    let dst = unsafe {
                        std::slice::from_raw_parts_mut(
                            out.at(i * g.y_per_sample() + co * pix + oy0 * g.wo)
                                .cast::<std::mem::MaybeUninit<f32>>(),
                            nr * g.wo,
                        )
                    };
                    for (r, drow) in dst.chunks_exact_mut(g.wo).enumerate() {
                        let src = &c[co * ncol + r * cw..][..g.wo];
                        for (d, &v) in drow.iter_mut().zip(src) {
                            let v = v + bv;
                            d.write(if relu { relu0(v) } else { v });
                        }
                    }
                }
            });
        });
    });
    // SAFETY: the items wrote every (sample, channel, row) of y
    unsafe { y.set_len(n) };
    y
}

/// `forward` for small samples: each item takes `spi` whole samples, their im2col blocks side
/// by side in one GEMM into scratch, then each sample's rows are copied out (with bias and ReLU).
fn forward_grouped(
    g: &ConvGeom,
    x: &[f32],
    w: &[f32],
    bias: Option<&[f32]>,
    relu: bool,
    spi: usize,
) -> Vec<f32> {
    let (ckk, pix, cout) = (g.taps(), g.pixels(), g.cout);
    let (xps, yps) = (g.x_per_sample(), g.y_per_sample());
    let (cw, pw) = wide_layout(g);
    build_vec(g.n * yps, spi * yps, |start, out| {
        let first = start / yps;
        let ns = out.len() / yps;
        let ncol = ns * pw;
        with_scratch(ckk * ncol + cout * ncol + phase_floats(g), |buf| {
            let (cols, rest) = buf.split_at_mut(ckk * ncol);
            let (c, pad) = rest.split_at_mut(cout * ncol);
            for j in 0..ns {
                let xn = &x[(first + j) * xps..][..xps];
                im2col_sample(g, xn, &mut cols[j * pw..], ncol, pad);
            }
            sgemm(
                cout,
                ncol,
                ckk,
                (w, ckk, 1),
                (cols, ncol, 1),
                (c, ncol, 1),
                false,
                false,
            );
            for (j, yn) in out.chunks_mut(yps).enumerate() {
                for (co, plane) in yn.chunks_mut(pix).enumerate() {
                    let b = bias.map_or(0.0, |b| b[co]);
                    for (oy, row) in plane.chunks_mut(g.wo).enumerate() {
                        let src = &c[co * ncol + j * pw + oy * cw..][..g.wo];
                        for (o, &v) in row.iter_mut().zip(src) {
                            let v = v + b;
                            o.write(if relu { relu0(v) } else { v });
                        }
                    }
                }
            }
        })
    })
}

/// For a stride-1 conv, the conv whose forward is this conv's backward-input: gx = conv(gy, w')
/// with w' the weight transposed (cin <-> cout) and flipped, padding d (k - 1) - p. None when
/// the sizes do not line up that way (stride > 1, padding beyond the dilated kernel, or extra
/// rows from a transposed conv's output_padding).
fn backward_input_as_forward(g: &ConvGeom) -> Option<ConvGeom> {
    if g.sh != 1 || g.sw != 1 || g.ph > g.dh * (g.kh - 1) || g.pw > g.dw * (g.kw - 1) {
        return None;
    }
    let (ph, pw) = (g.dh * (g.kh - 1) - g.ph, g.dw * (g.kw - 1) - g.pw);
    let ok = g.ho + 2 * ph == g.h + g.dh * (g.kh - 1) && g.wo + 2 * pw == g.w + g.dw * (g.kw - 1);
    ok.then_some(ConvGeom {
        n: g.n,
        cin: g.cout,
        h: g.ho,
        w: g.wo,
        cout: g.cin,
        ho: g.h,
        wo: g.w,
        ph,
        pw,
        ..*g
    })
}

/// w' (Cin, Cout, kh, kw) of `backward_input_as_forward`: w'[ci][co][ky][kx] = w[co][ci][kh-1-ky][kw-1-kx].
fn flipped_weight(g: &ConvGeom, w: &[f32]) -> Vec<f32> {
    let (kh, kw) = (g.kh, g.kw);
    let mut out = vec![0.0f32; w.len()];
    for co in 0..g.cout {
        for ci in 0..g.cin {
            let src = &w[(co * g.cin + ci) * kh * kw..][..kh * kw];
            let dst = &mut out[(ci * g.cout + co) * kh * kw..][..kh * kw];
            for (t, v) in src.iter().enumerate() {
                dst[kh * kw - 1 - t] = *v;
            }
        }
    }
    out
}

/// gx (N, Cin, H, W) from gy (N, Cout, Ho, Wo), plus bias[c] on channel c when given (a
/// transposed conv's bias).
fn backward_input(g: &ConvGeom, gy: &[f32], w: &[f32], bias: Option<&[f32]>) -> Vec<f32> {
    if let Some(g2) = backward_input_as_forward(g) {
        if !g.is_pointwise() {
            return forward(&g2, gy, &flipped_weight(g, w), bias, false);
        }
    }
    if deconv::applies(g) {
        return deconv::scatter(g, gy, w, bias);
    }
    let mut gx = backward_input_col2im(g, gy, w);
    if let Some(b) = bias {
        for (i, plane) in gx.chunks_mut(g.h * g.w).enumerate() {
            let v = b[i % g.cin];
            plane.iter_mut().for_each(|e| *e += v);
        }
    }
    gx
}

/// `backward_input` by W^T gy and col2im, several small samples per GEMM.
fn backward_input_col2im(g: &ConvGeom, gy: &[f32], w: &[f32]) -> Vec<f32> {
    let mut gx = vec![0.0f32; g.n * g.x_per_sample()];
    let (ckk, pix, cout) = (g.taps(), g.pixels(), g.cout);
    // Samples per GEMM: small images (a GAN's 7x7) are multiplied several at once, so the GEMM
    // has enough columns to run at speed; chunks of samples are spread over the threads.
    let pw = wide_layout(g).1;
    let per = (COL2IM_COLUMNS / pw).clamp(1, g.n.div_ceil(threads()).max(1));
    let par = g.n.div_ceil(per) < threads();
    par_chunks(&mut gx, per * g.x_per_sample(), |chunk, gxs| {
        let first = chunk * per;
        let ns = gxs.len() / g.x_per_sample();
        let ncol = if g.is_pointwise() { pix } else { ns * pw };
        // out (Cin k k, cols) = W^T gy; element (r, co) of W^T is w[co * ckk + r]
        let wt_times = |cols: usize, gy: &[f32], out: &mut [f32]| {
            sgemm(
                ckk,
                cols,
                cout,
                (w, 1, ckk),
                (gy, cols, 1),
                (out, cols, 1),
                false,
                par,
            )
        };
        if g.is_pointwise() {
            // 1x1, stride 1, no padding: the columns are gx itself, one sample at a time
            for (j, gxn) in gxs.chunks_mut(g.x_per_sample()).enumerate() {
                let gyn = &gy[(first + j) * g.y_per_sample()..][..g.y_per_sample()];
                wt_times(pix, gyn, gxn);
            }
            return;
        }
        with_scratch(cout * ncol + ckk * ncol + phase_floats(g), |buf| {
            let (gyt, rest) = buf.split_at_mut(cout * ncol);
            let (cols, pad) = rest.split_at_mut(ckk * ncol);
            // gy of the chunk's samples side by side in the wide layout: (Cout, ns * pw)
            for j in 0..ns {
                for co in 0..cout {
                    let src = &gy[(first + j) * g.y_per_sample() + co * pix..][..pix];
                    wide_rows(g, src, &mut gyt[co * ncol + j * pw..][..pw]);
                }
            }
            wt_times(ncol, gyt, cols);
            for (j, gxn) in gxs.chunks_mut(g.x_per_sample()).enumerate() {
                col2im(g, cols, ncol, j * pw, gxn, pad);
            }
        });
    });
    gx
}

/// A weight gradient of `wlen` floats summed over `items` work items: the items are cut into
/// one contiguous run per thread, `add_run(acc, items)` sums a run into its own partial
/// gradient (zeroed), and the partials are added at the end, in run order.
pub(super) fn sum_over_item_runs(
    items: usize,
    wlen: usize,
    add_run: impl Fn(&mut [f32], std::ops::Range<usize>) + Sync + Send,
) -> Vec<f32> {
    let runs = threads().min(items).max(1);
    let partials = par_map(runs, |run| {
        let mut acc = vec![0.0f32; wlen];
        add_run(&mut acc, run * items / runs..(run + 1) * items / runs);
        acc
    });
    let mut it = partials.into_iter();
    let mut gw = it.next().unwrap_or_else(|| vec![0.0; wlen]);
    for p in it {
        gw.iter_mut().zip(&p).for_each(|(a, b)| *a += b);
    }
    gw
}

/// gw (Cout, Cin, kh, kw) = sum over the batch and the pixel blocks of gy_block * cols_block^T.
/// The (sample, block) items are cut into one contiguous run per thread, each summed into its
/// own partial weight gradient; the partials are added at the end.
fn backward_weight(g: &ConvGeom, x: &[f32], gy: &[f32]) -> Vec<f32> {
    // AVX-512: the 3x3 convs' weight gradient by the same Winograd transform
    #[cfg(target_arch = "x86_64")]
    if conv_winograd::applies(g) {
        return conv_winograd::backward_weight(g, x, gy);
    }
    let spi = samples_per_item(g);
    if spi > 1 && !g.is_pointwise() {
        return backward_weight_grouped(g, x, gy, spi);
    }
    if taps_apply(g) {
        return backward_weight_taps(g, x, gy);
    }
    let (ckk, pix) = (g.taps(), g.pixels());
    let wlen = g.cout * ckk;
    // larger blocks than forward: each GEMM call reads and writes the whole (small) gw
    let pb = (block_pixels(g) * 2).min(pix);
    let blocks = pix.div_ceil(pb);
    sum_over_item_runs(g.n * blocks, wlen, |acc, run| {
        for item in run {
            let (i, b) = (item / blocks, item % blocks);
            let (p0, p1) = (b * pb, ((b + 1) * pb).min(pix));
            let nb = p1 - p0;
            let xn = &x[i * g.x_per_sample()..(i + 1) * g.x_per_sample()];
            let gyn = &gy[i * g.y_per_sample() + p0..(i + 1) * g.y_per_sample()];
            // cols^T: element (pixel, r) is cols[r * nb + pixel]
            if g.is_pointwise() {
                let src = &xn[p0..];
                sgemm(
                    g.cout,
                    ckk,
                    nb,
                    (gyn, pix, 1),
                    (src, 1, pix),
                    (&mut *acc, ckk, 1),
                    true,
                    false,
                );
            } else {
                with_scratch(ckk * nb, |cols| {
                    im2col_block(g, xn, p0, p1, cols, nb);
                    sgemm(
                        g.cout,
                        ckk,
                        nb,
                        (gyn, pix, 1),
                        (cols, 1, nb),
                        (&mut *acc, ckk, 1),
                        true,
                        false,
                    );
                });
            }
        }
    })
}

/// `backward_weight` at stride 1 without im2col (the mirror of `forward_taps`): per item, the
/// padded input rows and gy's rows transposed to (columns, Cout) in the same padded-row layout
/// (0 in the junk columns), and per tap gW[:, :, ky, kx] (Cout x Cin, kept column-major in a
/// sum laid out (Cin, tap, Cout)) += gy's rows (Cout x columns, read column-major from the
/// transpose) times the padded rows read from that tap's offset, transposed. In that
/// orientation the GEMM reads both operands in place: with gy's rows as they lie (row-major)
/// it packed them again for every tap (8% of a DnCNN training step). The items are cut into
/// one contiguous run per thread, each summed into its own partial gradient; the partials are
/// added at the end, then transposed to (Cout, Cin, kh, kw).
fn backward_weight_taps(g: &ConvGeom, x: &[f32], gy: &[f32]) -> Vec<f32> {
    let (rows, blocks, cw, ncol, plane) = tap_layout(g, TAP_COLUMNS);
    let (ckk, kk) = (g.taps(), g.kh * g.kw);
    let gwt = sum_over_item_runs(g.n * blocks, g.cout * ckk, |acc, run| {
        with_scratch(g.cin * plane + g.cout * ncol, |buf| {
            let (pad, gyt) = buf.split_at_mut(g.cin * plane);
            for item in run {
                let (i, b) = (item / blocks, item % blocks);
                let oy0 = b * rows;
                let nr = rows.min(g.ho - oy0);
                pad_rows(
                    g,
                    &x[i * g.x_per_sample()..][..g.x_per_sample()],
                    oy0,
                    cw,
                    plane,
                    pad,
                );
                let gyn = &gy[i * g.y_per_sample()..][..g.y_per_sample()];
                rows_transposed(g, gyn, (oy0, nr, cw), gyt);
                for t in 0..kk {
                    // acc's tap t (Cout x Cin, column-major, columns kk Cout apart) +=
                    // gyt^T (Cout x ncol) pad_t^T
                    sgemm(
                        g.cout,
                        g.cin,
                        ncol,
                        (&*gyt, 1, g.cout),
                        (&pad[tap_offset(g, cw, t)..], 1, plane),
                        (&mut acc[t * g.cout..], 1, kk * g.cout),
                        true,
                        false,
                    );
                }
            }
        });
    });
    transposed(&gwt, ckk, g.cout)
}

/// src (rows x cols, row-major) transposed into a new (cols x rows): the weight gradients
/// summed as (Cin kh kw, Cout), the layout their GEMMs read in place, to (Cout, Cin, kh, kw).
fn transposed(src: &[f32], rows: usize, cols: usize) -> Vec<f32> {
    assert_eq!(src.len(), rows * cols);
    let mut dst = vec![0.0f32; rows * cols];
    #[cfg(target_arch = "x86_64")]
    if simd::tier() == simd::Tier::Avx512 {
        // SAFETY: AVX-512F (tier); src holds rows rows of cols floats, dst cols rows of rows
        unsafe {
            super::avx512::transpose(
                src.as_ptr(),
                cols,
                (rows, cols),
                false,
                dst.as_mut_ptr(),
                rows,
                None,
                false,
            )
        };
        return dst;
    }
    for (r, row) in src.chunks_exact(cols).enumerate() {
        for (c, v) in row.iter().enumerate() {
            dst[c * rows + r] = *v;
        }
    }
    dst
}

/// Output rows oy0 .. oy0 + nr of gyn (Cout, Ho, Wo) transposed into gyt (ncol, Cout): row r's
/// pixel ox at gyt row r cw + ox; the junk rows (ox >= Wo, and past nr cw) 0. On AVX-512 the
/// rows are transposed at once (16 x 16 blocks over all nr Wo pixels, so a 7-pixel row is not
/// left to the scalar remainder) into the end of gyt, then moved to their places front to back.
fn rows_transposed(
    g: &ConvGeom,
    gyn: &[f32],
    (oy0, nr, cw): (usize, usize, usize),
    gyt: &mut [f32],
) {
    let (co, wo) = (g.cout, g.wo);
    let run = nr * wo;
    assert!(gyn.len() >= (co - 1) * g.pixels() + (oy0 * wo + run) && gyt.len() >= nr * cw * co);
    #[cfg(target_arch = "x86_64")]
    if simd::tier() == simd::Tier::Avx512 {
        // the compact (run, co) block at the end: row r's source, from s0 + r wo co, lies at or
        // after its destination r cw co and after everything written before it (s0 >= nr
        // (cw - wo) co), so each move and junk fill reads nothing not yet moved
        let s0 = gyt.len() - run * co;
        // SAFETY: AVX-512F (tier); gyn holds co rows of `run` floats at stride Ho Wo from oy0
        // Wo (asserted), gyt[s0..] run rows of co floats
        unsafe {
            super::avx512::transpose(
                gyn.as_ptr().add(oy0 * wo),
                g.pixels(),
                (co, run),
                false,
                gyt.as_mut_ptr().add(s0),
                co,
                None,
                false,
            )
        };
        for r in 0..nr {
            gyt.copy_within(s0 + r * wo * co..s0 + (r + 1) * wo * co, r * cw * co);
            gyt[r * cw * co + wo * co..(r + 1) * cw * co].fill(0.0);
        }
        gyt[nr * cw * co..].fill(0.0);
        return;
    }
    for r in 0..nr {
        let src = &gyn[(oy0 + r) * wo..];
        let dst = &mut gyt[r * cw * co..][..cw * co];
        for (ox, d) in dst.chunks_exact_mut(co).take(wo).enumerate() {
            for (c, v) in d.iter_mut().enumerate() {
                *v = src[c * g.pixels() + ox];
            }
        }
        dst[wo * co..].fill(0.0);
    }
    gyt[nr * cw * co..].fill(0.0);
}

/// `backward_weight` for small samples: items of `spi` whole samples, their gy rows and im2col
/// blocks side by side, so each GEMM sums over spi * pixels columns at once. As in
/// `backward_weight_taps`, gy is transposed to (columns, Cout) and the sum kept as (taps, Cout)
/// so that the GEMM reads both operands in place (with gy row-major it packed the im2col block,
/// taps x columns, for every item), then transposed to (Cout, taps) at the end.
fn backward_weight_grouped(g: &ConvGeom, x: &[f32], gy: &[f32], spi: usize) -> Vec<f32> {
    let (ckk, cout) = (g.taps(), g.cout);
    let (xps, yps) = (g.x_per_sample(), g.y_per_sample());
    let (cw, pw) = wide_layout(g);
    let wlen = cout * ckk;
    let gwt = sum_over_item_runs(g.n.div_ceil(spi), wlen, |acc, run| {
        for item in run {
            let first = item * spi;
            let ns = spi.min(g.n - first);
            let ncol = ns * pw;
            with_scratch(ckk * ncol + cout * ncol + phase_floats(g), |buf| {
                let (cols, rest) = buf.split_at_mut(ckk * ncol);
                let (gyt, pad) = rest.split_at_mut(cout * ncol);
                for j in 0..ns {
                    let xn = &x[(first + j) * xps..][..xps];
                    im2col_sample(g, xn, &mut cols[j * pw..], ncol, pad);
                    // gy in the wide layout, pixel-major, 0 in the junk columns (they
                    // multiply junk)
                    let gyn = &gy[(first + j) * yps..][..yps];
                    rows_transposed(
                        g,
                        gyn,
                        (0, g.ho, cw),
                        &mut gyt[j * pw * cout..][..pw * cout],
                    );
                }
                // acc (Cout x taps, column-major) += gyt^T (Cout x ncol) cols^T (ncol x taps)
                sgemm(
                    cout,
                    ckk,
                    ncol,
                    (&*gyt, 1, cout),
                    (&*cols, 1, ncol),
                    (&mut *acc, 1, cout),
                    true,
                    false,
                );
            });
        }
    });
    transposed(&gwt, ckk, cout)
}

pub use crate::backend::conv_ops::{
    conv2d, conv2d_backward_input, conv2d_backward_weight, conv2d_relu, conv_transpose2d,
    conv_transpose2d_backward_input, conv_transpose2d_backward_weight,
};

impl ConvKernels for CpuBackend {
    /// The ReLU is applied to each output block while it is in cache.
    fn conv_forward(
        &self,
        g: &ConvGeom,
        x: &Tensor,
        w: &Tensor,
        b: Option<&Tensor>,
        relu: bool,
        op: &str,
    ) -> Result<Tensor> {
        Ok(new_tensor(
            &g.y_shape(),
            forward_values(g, x, w, b, relu, op)?,
        ))
    }
    fn conv_backward_input(
        &self,
        g: &ConvGeom,
        gy: &Tensor,
        w: &Tensor,
        b: Option<&Tensor>,
        op: &str,
    ) -> Result<Tensor> {
        let (gyh, wh) = (host(gy, op)?, host(w, op)?);
        let bh = b.map(|b| host(b, op)).transpose()?;
        let bd = bh.as_ref().map(|h| h.read()).transpose()?;
        let gx = backward_input(
            g,
            &gyh.read()?,
            &wh.read()?,
            bd.as_deref().map(|v| v.as_slice()),
        );
        Ok(new_tensor(&g.x_shape(), gx))
    }
    fn conv_backward_weight(
        &self,
        g: &ConvGeom,
        x: &Tensor,
        gy: &Tensor,
        op: &str,
    ) -> Result<Tensor> {
        let (xh, gyh) = (host(x, op)?, host(gy, op)?);
        let gw = backward_weight(g, &xh.read()?, &gyh.read()?);
        Ok(new_tensor(&g.weight_shape(), gw))
    }
}

/// The fused inference conv: as `conv2d_relu` (or `conv2d`), written into `out` when given.
/// With `c.f16` it is the twin of the GPU's f16 kernels: the weight rounded to f16 (once, kept
/// in `c.packed`) and, with `c.f16_out`, every output value; sums and the bias in f32.
pub fn conv2d_fused(
    _be: &CpuBackend,
    x: &Tensor,
    c: &FusedConv2d,
    out: Option<&Tensor>,
) -> Result<Tensor> {
    let op = "conv2d_fused";
    let g = ConvGeom::conv2d_fused(x, c, out)?;
    let weight = if c.f16 {
        if c.packed.get().is_none() {
            let w = host(&c.weight, op)?
                .read()?
                .iter()
                .map(|&v| round_f16(v))
                .collect();
            let _ = c.packed.set(new_tensor(c.weight.shape(), w));
        }
        c.packed.get().expect("set above")
    } else {
        &c.weight
    };
    let mut y = forward_values(&g, x, weight, c.bias.as_ref(), c.relu, op)?;
    if c.f16 && c.f16_out {
        y.iter_mut().for_each(|v| *v = round_f16(*v));
    }
    let Some(out) = out else {
        return Ok(new_tensor(&g.y_shape(), y));
    };
    // out takes the new values' storage (no copy; its old buffer is freed, and the next
    // layer's allocation reuses it)
    *host(out, op)?.write()? = y;
    Ok(out.clone())
}

/// The f16 nearest to `v` (ties to even), as f32.
fn round_f16(v: f32) -> f32 {
    half::f16::from_f32(v).to_f32()
}

/// The values of conv(x, w) + b (then ReLU) of `g`.
fn forward_values(
    g: &ConvGeom,
    x: &Tensor,
    w: &Tensor,
    b: Option<&Tensor>,
    relu: bool,
    op: &str,
) -> Result<Vec<f32>> {
    let (xh, wh) = (host(x, op)?, host(w, op)?);
    let bh = b.map(|b| host(b, op)).transpose()?;
    let bd = bh.as_ref().map(|h| h.read()).transpose()?;
    let y = forward(
        g,
        &xh.read()?,
        &wh.read()?,
        bd.as_deref().map(|v| v.as_slice()),
        relu,
    );
    Ok(y)
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
    #[cfg(target_arch = "x86_64")]
    if gemm_small::applies(m, n, k) {
        let c = gemm_small::matmul((m, n, k), &ad, trans_a, &bd, trans_b);
        return Ok(new_tensor(&[m, n], c));
    }
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
