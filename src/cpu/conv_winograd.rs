//! The native 3x3 stride-1 conv (forward, and so the input gradient, which is the flipped
//! weight's forward, and the weight gradient) as Winograd F(4x4, 3x3) on AVX-512: each 4x4
//! block of output pixels ("tile") comes from a 6x6 patch of the padded input, and a channel
//! pair's 144 multiplies per tile become 36 (4x fewer; F(2x2, 3x3), which this replaced, has
//! 2.25x fewer). Per call the weight is transformed once, U = G g G^T (36 matrices Cin x Cout);
//! each work item (a sample, or a band of tile rows of a large image) copies its input rows
//! channel-last with a zero border, and runs 6 tiles at a time: their patches transformed
//! (V = B^T d B, vectors over the channels), the 36 GEMMs M = V U on `avx512::gemm_tile`, and
//! each tile's A^T M A written pixel-major, then transposed into y's planes with the bias and
//! ReLU. The weight gradient sums dU = V^T (A dY A^T) per point over the tiles, then
//! gw = G^T dU G. The transforms are in `winograd_transforms.rs`.
//!
//! The sums differ from the direct conv's by float rounding only, a few times more of it than
//! F(2x2, 3x3) had (factors up to 8 in the transforms: up to 3.7e-6 of the largest value
//! against 7.7e-7 in `tests/ops` winograd_3x3_cases). As on wasm (`winograd_wasm.rs`, the same
//! F(4x4, 3x3) in simd128), that rounding depends on a pixel's place in its tile.

use super::avx512;
use super::conv::SharedOut;
use super::deconv_winograd::gemm_points;
use super::simd::{tier, Tier};
use super::winograd_transforms::{
    grad_tile, grad_weights, input_tile, output_tile, weight_transform,
};
use super::{par_for, with_scratch};
use crate::backend::ConvGeom;

/// Floats per vector.
const V: usize = 16;

/// Output pixels per tile side (F(M x M, 3x3)) and transform points per tile.
const M: usize = 4;
const POINTS: usize = (M + 2) * (M + 2);

/// Tiles per GEMM (one `avx512::gemm_tile` of 6 rows).
const ROWS: usize = 6;

/// Output pixels per work item at most (a band of whole tile rows): its input rows,
/// channel-last, and its pixel-major outputs stay in L2.
const ITEM_PIXELS: usize = 2048;

/// True where `forward` serves g: an AVX-512 CPU, a 3x3 kernel at stride 1 and dilation 1,
/// at least 16 input channels (the GEMMs' depth) and enough output channels that the vectors
/// over them are mostly full.
pub(super) fn applies(g: &ConvGeom) -> bool {
    tier() == Tier::Avx512
        && (g.kh, g.kw, g.sh, g.sw, g.dh, g.dw) == (3, 3, 1, 1, 1, 1)
        && g.cin >= V
        && g.cout >= V
        && g.cout.next_multiple_of(V) * 4 <= g.cout * 5
}

/// The tile grid of g's output (th x tw tiles of M x M pixels) cut into `bands` work items
/// of `band` tile rows each (the last may be shorter), about ITEM_PIXELS output pixels per
/// item and the rows spread evenly: (th, tw, band, bands). `forward` and `backward_weight`
/// cut alike.
fn tile_bands(g: &ConvGeom) -> (usize, usize, usize, usize) {
    let (th, tw) = (g.ho.div_ceil(M), g.wo.div_ceil(M));
    let band = (ITEM_PIXELS / (M * M) / tw).clamp(1, th);
    let band = th.div_ceil(th.div_ceil(band));
    (th, tw, band, th.div_ceil(band))
}

/// y (N, Cout, Ho, Wo) = conv(x, w) + bias, then max(0, .) with `relu`. Call only where
/// `applies(g)`.
pub(super) fn forward(
    g: &ConvGeom,
    x: &[f32],
    w: &[f32],
    bias: Option<&[f32]>,
    relu: bool,
) -> Vec<f32> {
    let (ci, co) = (g.cin, g.cout);
    let (ci16, co16) = (ci.next_multiple_of(V), co.next_multiple_of(V));
    let u = weight_transform(w, ci, co, (ci16, co16));
    let (th, tw, band, bands) = tile_bands(g);
    // a band's padded input rows (M per tile row + 2) of ws pixels, channel-last
    let ws = M * tw + 2;
    let slen = (M * band + 2) * ws * ci16;
    let tlen = (M * band + 2) * g.w * ci16;
    let ylen = M * band * g.wo * co16;
    let (vlen, mlen) = (POINTS * ROWS * ci16, POINTS * ROWS * co16);
    let (xps, yps, plane) = (g.x_per_sample(), g.y_per_sample(), g.ho * g.wo);
    assert!(x.len() >= g.n * xps && w.len() >= co * ci * 9);
    assert!(bias.is_none_or(|b| b.len() >= co));
    let total = g.n * yps;
    let mut y: Vec<f32> = Vec::with_capacity(total);
    let out = SharedOut(y.as_mut_ptr());
    par_for(g.n * bands, |item| {
        let (n, bi) = (item / bands, item % bands);
        let (a0, a1) = (bi * band, ((bi + 1) * band).min(th));
        // output rows M a0 .. r1 of sample n; input (padded) rows M a0 .. M a1 + 2
        let (r0, r1) = (M * a0, (M * a1).min(g.ho));
        with_scratch(slen + tlen + vlen + mlen + ylen, |buf| {
            let (src, rest) = buf.split_at_mut(slen);
            let (tmp, rest) = rest.split_at_mut(tlen);
            let (vb, rest) = rest.split_at_mut(vlen);
            let (mb, yt) = rest.split_at_mut(mlen);
            input_band(g, &x[n * xps..][..xps], (a0, a1), (ws, ci16), src, tmp);
            let tiles = (a1 - a0) * tw;
            let mut at = [usize::MAX; M * M];
            for t0 in (0..tiles).step_by(ROWS) {
                let nr = (tiles - t0).min(ROWS);
                let (vplane, mplane) = (nr * ci16, nr * co16);
                for j in 0..nr {
                    let (a, b) = ((t0 + j) / tw, (t0 + j) % tw);
                    let d = &src[(M * a * ws + M * b) * ci16..];
                    assert!(
                        d.len() >= ((M + 1) * ws + M + 2) * ci16
                            && vb.len() >= (POINTS - 1) * vplane + (j + 1) * ci16
                    );
                    // SAFETY: AVX-512F (`applies`); d holds M + 2 rows of M + 2 pixels of
                    // ci16 floats at ws ci16, vb POINTS planes of vplane with row j inside
                    // (checked)
                    unsafe {
                        input_tile(
                            d.as_ptr(),
                            ws * ci16,
                            ci16,
                            vb.as_mut_ptr().add(j * ci16),
                            vplane,
                        )
                    };
                }
                gemm_points(POINTS, vb, &u, mb, (nr, ci16, co16));
                for j in 0..nr {
                    let (a, b) = ((t0 + j) / tw, (t0 + j) % tw);
                    for (e, at) in at.iter_mut().enumerate() {
                        let (i, k) = (M * (a0 + a) + e / M, M * b + e % M);
                        *at = if i < g.ho && k < g.wo {
                            ((i - r0) * g.wo + k) * co16
                        } else {
                            usize::MAX
                        };
                    }
                    assert!(at.iter().all(|&o| o == usize::MAX || o + co16 <= yt.len()));
                    assert!(mb.len() >= (POINTS - 1) * mplane + (j + 1) * co16);
                    // SAFETY: AVX-512F; mb holds POINTS planes of mplane with row j inside,
                    // every output offset used lies in yt (checked above)
                    unsafe {
                        output_tile(
                            mb.as_ptr().add(j * co16),
                            mplane,
                            co16,
                            yt.as_mut_ptr(),
                            &at,
                        )
                    };
                }
            }
            // rows r0..r1 of every channel plane of sample n: this item's alone
            let npix = (r1 - r0) * g.wo;
            assert!(yt.len() >= npix * co16 && n * yps + (co - 1) * plane + r1 * g.wo <= total);
            // SAFETY: AVX-512F; yt holds npix rows of co16 floats, y (capacity total) the co
            // planes' rows r0..r1 at plane apart, written by no other item; bias holds co
            unsafe {
                avx512::transpose(
                    yt.as_ptr(),
                    co16,
                    (npix, co),
                    true,
                    out.at(n * yps + r0 * g.wo),
                    plane,
                    bias,
                    relu,
                )
            };
        })
    });
    // SAFETY: the items together wrote every value of y: rows 0..Ho of each sample's planes
    unsafe { y.set_len(total) };
    y
}

/// The padded input rows M a0 .. M a1 + 2 of one sample xn (Cin, H, W) into src,
/// channel-last (rows of ws pixels of ci16 floats, image pixel (r, c) at padded (r + ph - M a0,
/// c + pw)), zeros around; tmp is scratch of (M (a1 - a0) + 2) W ci16 floats.
fn input_band(
    g: &ConvGeom,
    xn: &[f32],
    (a0, a1): (usize, usize),
    (ws, ci16): (usize, usize),
    src: &mut [f32],
    tmp: &mut [f32],
) {
    src.fill(0.0);
    // the image rows this band reads: padded rows M a0 .. M a1 + 2 are image rows M a0 - ph ..,
    // clipped to the image
    let lo = (M * a0).saturating_sub(g.ph);
    let hi = (M * a1 + 2).saturating_sub(g.ph).min(g.h);
    if lo < hi {
        let rows = hi - lo;
        channel_last(&xn[lo * g.w..], g.h * g.w, g.cin, rows * g.w, ci16, tmp);
        for r in lo..hi {
            let at = ((r + g.ph - M * a0) * ws + g.pw) * ci16;
            let len = g.w * ci16;
            src[at..at + len].copy_from_slice(&tmp[(r - lo) * len..][..len]);
        }
    }
}

/// rows (ci rows of `cols` floats at lds) transposed into tmp: cols pixels of ci16 floats
/// (the channels from ci on set to 0).
fn channel_last(x: &[f32], lds: usize, ci: usize, cols: usize, ci16: usize, tmp: &mut [f32]) {
    assert!(x.len() >= (ci - 1) * lds + cols && tmp.len() >= cols * ci16);
    // SAFETY: AVX-512F (`applies`); x holds ci rows of cols floats at lds, tmp cols rows of
    // ci16 floats (checked above)
    unsafe {
        avx512::transpose(
            x.as_ptr(),
            lds,
            (ci, cols),
            false,
            tmp.as_mut_ptr(),
            ci16,
            None,
            false,
        )
    };
    if ci16 > ci {
        for p in tmp[..cols * ci16].chunks_exact_mut(ci16) {
            p[ci..].fill(0.0);
        }
    }
}

/// Tiles per step of `backward_weight`: their transforms ((M + 2)^2 points each side) stay in
/// L2.
const GRAD_TILES: usize = 64;

/// gw (Cout, Cin, 3, 3) = the weight gradient of `forward`'s conv, summed over the batch, by
/// the same transform: per tile, dU[t] += V[t]^T dM[t] with V = B^T d B of the input patch and
/// dM = A dY A^T of gy's M x M block ((M + 2)^2 products per channel pair and tile, 9 M^2
/// direct), then gw = G^T dU G. Call only where `applies(g)`.
pub(super) fn backward_weight(g: &ConvGeom, x: &[f32], gy: &[f32]) -> Vec<f32> {
    let (ci, co) = (g.cin, g.cout);
    let (ci16, co16) = (ci.next_multiple_of(V), co.next_multiple_of(V));
    let (th, tw, band, bands) = tile_bands(g);
    let ws = M * tw + 2;
    let slen = (M * band + 2) * ws * ci16;
    let tlen = (M * band + 2) * g.w.max(g.wo) * ci16.max(co16);
    let glen = M * band * M * tw * co16;
    let (vlen, mlen) = (POINTS * GRAD_TILES * ci16, POINTS * GRAD_TILES * co16);
    let (xps, yps, plane) = (g.x_per_sample(), g.y_per_sample(), g.ho * g.wo);
    assert!(x.len() >= g.n * xps && gy.len() >= g.n * yps);
    let ulen = POINTS * ci16 * co16;
    let du = super::conv::sum_over_item_runs(g.n * bands, ulen, |acc, run| {
        with_scratch(slen + tlen + glen + vlen + mlen, |buf| {
            let (src, rest) = buf.split_at_mut(slen);
            let (tmp, rest) = rest.split_at_mut(tlen);
            let (gs, rest) = rest.split_at_mut(glen);
            let (vb, mb) = rest.split_at_mut(vlen);
            for item in run {
                let (n, bi) = (item / bands, item % bands);
                let (a0, a1) = (bi * band, ((bi + 1) * band).min(th));
                input_band(g, &x[n * xps..][..xps], (a0, a1), (ws, ci16), src, tmp);
                // gy's rows M a0 .. r1 channel-last in gs (rows of M tw pixels), zeros past
                // Ho and Wo
                let (r0, r1) = (M * a0, (M * a1).min(g.ho));
                gs.fill(0.0);
                let gyn = &gy[n * yps..][..yps];
                channel_last(&gyn[r0 * g.wo..], plane, co, (r1 - r0) * g.wo, co16, tmp);
                for r in 0..r1 - r0 {
                    let len = g.wo * co16;
                    gs[r * M * tw * co16..][..len].copy_from_slice(&tmp[r * len..][..len]);
                }
                let tiles = (a1 - a0) * tw;
                for t0 in (0..tiles).step_by(GRAD_TILES) {
                    let nr = (tiles - t0).min(GRAD_TILES);
                    let (vplane, mplane) = (nr * ci16, nr * co16);
                    for j in 0..nr {
                        let (a, b) = ((t0 + j) / tw, (t0 + j) % tw);
                        let d = &src[(M * a * ws + M * b) * ci16..];
                        let e = &gs[(M * a * M * tw + M * b) * co16..];
                        assert!(
                            d.len() >= ((M + 1) * ws + M + 2) * ci16
                                && vb.len() >= (POINTS - 1) * vplane + (j + 1) * ci16
                        );
                        assert!(
                            e.len() >= ((M - 1) * M * tw + M) * co16
                                && mb.len() >= (POINTS - 1) * mplane + (j + 1) * co16
                        );
                        // SAFETY: AVX-512F (`applies`); d holds M + 2 rows of M + 2 pixels of
                        // ci16 floats at ws ci16, e M rows of M pixels of co16 at M tw co16, vb
                        // and mb POINTS planes with row j inside (checked above)
                        unsafe {
                            input_tile(
                                d.as_ptr(),
                                ws * ci16,
                                ci16,
                                vb.as_mut_ptr().add(j * ci16),
                                vplane,
                            );
                            grad_tile(
                                e.as_ptr(),
                                M * tw * co16,
                                co16,
                                mb.as_mut_ptr().add(j * co16),
                                mplane,
                            );
                        }
                    }
                    for t in 0..POINTS {
                        let (v, mt) = (&vb[t * vplane..][..vplane], &mb[t * mplane..][..mplane]);
                        let du = &mut acc[t * ci16 * co16..][..ci16 * co16];
                        let mut c = 0;
                        while c < ci16 {
                            let nc = (ci16 - c).min(6);
                            let mut o = 0;
                            while o < co16 / V {
                                let nv = (co16 / V - o).min(4);
                                // SAFETY: AVX-512F; v holds nr rows of ci16 (columns c..c + nc
                                // read), mt nr rows of co16, du ci16 rows of co16 (rows c..c +
                                // nc, columns o V..(o + nv) V written)
                                unsafe {
                                    avx512::gemm_tile_dispatch::<true>(
                                        (nc, nv),
                                        v.as_ptr().add(c),
                                        (1, ci16),
                                        mt.as_ptr().add(o * V),
                                        co16,
                                        nr,
                                        du.as_mut_ptr().add(c * co16 + o * V),
                                        co16,
                                    )
                                };
                                o += nv;
                            }
                            c += nc;
                        }
                    }
                }
            }
        })
    });
    grad_weights(&du, ci, co, (ci16, co16))
}
