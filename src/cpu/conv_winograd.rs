//! The native 3x3 stride-1 conv (forward, and so the input gradient, which is the flipped
//! weight's forward) as Winograd F(2x2, 3x3) on AVX-512: each 2x2 block of output pixels
//! ("tile") comes from a 4x4 patch of the padded input, and a channel pair's 36 multiplies per
//! tile become 16 (2.25x fewer). Per call the weight is transformed once, U = G g G^T (16
//! matrices Cin x Cout); each work item (a sample, or a band of tile rows of a large image)
//! copies its input rows channel-last with a zero border, and runs 6 tiles at a time: their
//! patches transformed (V = B^T d B, vectors over the channels), the 16 GEMMs M = V U on
//! `avx512::gemm_tile` (V and M in L1), and each tile's A^T M A written pixel-major, then
//! transposed into y's planes with the bias and ReLU.
//!
//! The sums differ from the direct conv's by float rounding only (the transforms hold 1/2, 1
//! and -1). As on wasm (`winograd_wasm.rs`), that rounding depends on a pixel's place in its
//! 2x2 tile.

use super::avx512;
use super::conv::SharedOut;
use super::deconv_winograd::gemm_points;
use super::simd::{self, tier, Tier};
use super::{par_for, with_scratch};
use crate::backend::ConvGeom;
use std::arch::x86_64::*;

/// Floats per vector.
const V: usize = 16;

/// Tiles per GEMM (one `avx512::gemm_tile` of 6 rows): their 16 transforms stay in L1.
const ROWS: usize = 6;

/// Tiles per work item at most (a band of whole tile rows): its input rows, channel-last, and
/// its pixel-major outputs stay in L2.
const ITEM_TILES: usize = 512;

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

/// The tile grid of g's output (th x tw tiles of 2x2 pixels) cut into `bands` work items of
/// `band` tile rows each (the last may be shorter), about ITEM_TILES tiles per item and the
/// rows spread evenly: (th, tw, band, bands). `forward` and `backward_weight` cut alike.
fn tile_bands(g: &ConvGeom) -> (usize, usize, usize, usize) {
    let (th, tw) = (g.ho.div_ceil(2), g.wo.div_ceil(2));
    let band = (ITEM_TILES / tw).clamp(1, th);
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
    // a band's padded input rows (2 per tile row + 2) of ws pixels, channel-last
    let ws = 2 * tw + 2;
    let slen = (2 * band + 2) * ws * ci16;
    let tlen = (2 * band + 2) * g.w * ci16;
    let ylen = 2 * band * g.wo * co16;
    let (vlen, mlen) = (16 * ROWS * ci16, 16 * ROWS * co16);
    let (xps, yps, plane) = (g.x_per_sample(), g.y_per_sample(), g.ho * g.wo);
    assert!(x.len() >= g.n * xps && w.len() >= co * ci * 9);
    assert!(bias.is_none_or(|b| b.len() >= co));
    let total = g.n * yps;
    let mut y: Vec<f32> = Vec::with_capacity(total);
    let out = SharedOut(y.as_mut_ptr());
    par_for(g.n * bands, |item| {
        let (n, bi) = (item / bands, item % bands);
        let (a0, a1) = (bi * band, ((bi + 1) * band).min(th));
        // output rows 2 a0 .. r1 of sample n; input (padded) rows 2 a0 .. 2 a1 + 2
        let (r0, r1) = (2 * a0, (2 * a1).min(g.ho));
        with_scratch(slen + tlen + vlen + mlen + ylen, |buf| {
            let (src, rest) = buf.split_at_mut(slen);
            let (tmp, rest) = rest.split_at_mut(tlen);
            let (vb, rest) = rest.split_at_mut(vlen);
            let (mb, yt) = rest.split_at_mut(mlen);
            input_band(g, &x[n * xps..][..xps], (a0, a1), (ws, ci16), src, tmp);
            let tiles = (a1 - a0) * tw;
            for t0 in (0..tiles).step_by(ROWS) {
                let nr = (tiles - t0).min(ROWS);
                let (vplane, mplane) = (nr * ci16, nr * co16);
                for j in 0..nr {
                    let (a, b) = ((t0 + j) / tw, (t0 + j) % tw);
                    let d = &src[(2 * a * ws + 2 * b) * ci16..];
                    assert!(
                        d.len() >= (3 * ws + 4) * ci16 && vb.len() >= 15 * vplane + (j + 1) * ci16
                    );
                    // SAFETY: AVX-512F (`applies`); d holds 4 rows of 4 pixels of ci16
                    // floats at ws ci16, vb 16 planes of vplane with row j inside (checked)
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
                gemm_points(16, vb, &u, mb, (nr, ci16, co16));
                for j in 0..nr {
                    let (a, b) = ((t0 + j) / tw, (t0 + j) % tw);
                    let mut at = [usize::MAX; 4];
                    for (e, at) in at.iter_mut().enumerate() {
                        let (i, k) = (2 * (a0 + a) + e / 2, 2 * b + e % 2);
                        if i < g.ho && k < g.wo {
                            *at = ((i - r0) * g.wo + k) * co16;
                        }
                    }
                    assert!(at.iter().all(|&o| o == usize::MAX || o + co16 <= yt.len()));
                    assert!(mb.len() >= 15 * mplane + (j + 1) * co16);
                    // SAFETY: AVX-512F; mb holds 16 planes of mplane with row j inside, every
                    // output offset used lies in yt (checked above)
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

/// The padded input rows 2 a0 .. 2 a1 + 2 of one sample xn (Cin, H, W) into src, channel-last
/// (rows of ws pixels of ci16 floats, image pixel (r, c) at padded (r + ph - 2 a0, c + pw)),
/// zeros around; tmp is scratch of (2 (a1 - a0) + 2) W ci16 floats.
fn input_band(
    g: &ConvGeom,
    xn: &[f32],
    (a0, a1): (usize, usize),
    (ws, ci16): (usize, usize),
    src: &mut [f32],
    tmp: &mut [f32],
) {
    src.fill(0.0);
    // the image rows this band reads: padded rows 2 a0 .. 2 a1 + 2 are image rows 2 a0 - ph ..,
    // clipped to the image
    let lo = (2 * a0).saturating_sub(g.ph);
    let hi = (2 * a1 + 2).saturating_sub(g.ph).min(g.h);
    if lo < hi {
        let rows = hi - lo;
        channel_last(&xn[lo * g.w..], g.h * g.w, g.cin, rows * g.w, ci16, tmp);
        for r in lo..hi {
            let at = ((r + g.ph - 2 * a0) * ws + g.pw) * ci16;
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

/// U = G g G^T of every (ci, co) 3x3 kernel of w (Cout, Cin, 3, 3): (point t = 4 i + j, input
/// channel, output channel), zero past ci and co. G = [[1, 0, 0], [1/2, 1/2, 1/2], [1/2, -1/2,
/// 1/2], [0, 0, 1]].
fn weight_transform(w: &[f32], ci: usize, co: usize, (ci16, co16): (usize, usize)) -> Vec<f32> {
    let mut u = vec![0.0f32; 16 * ci16 * co16];
    let g3 = |a: f32, b: f32, c: f32| [a, 0.5 * (a + b + c), 0.5 * (a - b + c), c];
    simd::wide!({
        for o in 0..co {
            for c in 0..ci {
                let g = &w[(o * ci + c) * 9..][..9];
                let cols: [[f32; 4]; 3] = [0, 1, 2].map(|x| g3(g[x], g[3 + x], g[6 + x]));
                for i in 0..4 {
                    let row = g3(cols[0][i], cols[1][i], cols[2][i]);
                    for (j, v) in row.into_iter().enumerate() {
                        u[((4 * i + j) * ci16 + c) * co16 + o] = v;
                    }
                }
            }
        }
    });
    u
}

/// Tiles per step of `backward_weight`: their transforms (16 points each side) stay in L2.
const GRAD_TILES: usize = 64;

/// gw (Cout, Cin, 3, 3) = the weight gradient of `forward`'s conv, summed over the batch, by
/// the same transform: per tile, dU[t] += V[t]^T dM[t] with V = B^T d B of the input patch and
/// dM = A dY A^T of gy's 2x2 block (16 products per channel pair and tile, 36 direct), then
/// gw = G^T dU G. Call only where `applies(g)`.
pub(super) fn backward_weight(g: &ConvGeom, x: &[f32], gy: &[f32]) -> Vec<f32> {
    let (ci, co) = (g.cin, g.cout);
    let (ci16, co16) = (ci.next_multiple_of(V), co.next_multiple_of(V));
    let (th, tw, band, bands) = tile_bands(g);
    let ws = 2 * tw + 2;
    let slen = (2 * band + 2) * ws * ci16;
    let tlen = (2 * band + 2) * g.w.max(g.wo) * ci16.max(co16);
    let glen = 2 * band * 2 * tw * co16;
    let (vlen, mlen) = (16 * GRAD_TILES * ci16, 16 * GRAD_TILES * co16);
    let (xps, yps, plane) = (g.x_per_sample(), g.y_per_sample(), g.ho * g.wo);
    assert!(x.len() >= g.n * xps && gy.len() >= g.n * yps);
    let ulen = 16 * ci16 * co16;
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
                // gy's rows 2 a0 .. r1 channel-last in gs (rows of 2 tw pixels), zeros past
                // Ho and Wo
                let (r0, r1) = (2 * a0, (2 * a1).min(g.ho));
                gs.fill(0.0);
                let gyn = &gy[n * yps..][..yps];
                channel_last(&gyn[r0 * g.wo..], plane, co, (r1 - r0) * g.wo, co16, tmp);
                for r in 0..r1 - r0 {
                    let len = g.wo * co16;
                    gs[r * 2 * tw * co16..][..len].copy_from_slice(&tmp[r * len..][..len]);
                }
                let tiles = (a1 - a0) * tw;
                for t0 in (0..tiles).step_by(GRAD_TILES) {
                    let nr = (tiles - t0).min(GRAD_TILES);
                    let (vplane, mplane) = (nr * ci16, nr * co16);
                    for j in 0..nr {
                        let (a, b) = ((t0 + j) / tw, (t0 + j) % tw);
                        let d = &src[(2 * a * ws + 2 * b) * ci16..];
                        let e = &gs[(2 * a * 2 * tw + 2 * b) * co16..];
                        assert!(
                            d.len() >= (3 * ws + 4) * ci16
                                && vb.len() >= 15 * vplane + (j + 1) * ci16
                        );
                        assert!(
                            e.len() >= (2 * tw + 2) * co16
                                && mb.len() >= 15 * mplane + (j + 1) * co16
                        );
                        // SAFETY: AVX-512F (`applies`); d holds 4 rows of 4 pixels of ci16
                        // floats at ws ci16, e 2 rows of 2 pixels of co16 at 2 tw co16, vb and
                        // mb 16 planes with row j inside (checked above)
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
                                2 * tw * co16,
                                co16,
                                mb.as_mut_ptr().add(j * co16),
                                mplane,
                            );
                        }
                    }
                    for t in 0..16 {
                        let (v, m) = (&vb[t * vplane..][..vplane], &mb[t * mplane..][..mplane]);
                        let du = &mut acc[t * ci16 * co16..][..ci16 * co16];
                        let mut c = 0;
                        while c < ci16 {
                            let nc = (ci16 - c).min(6);
                            let mut o = 0;
                            while o < co16 / V {
                                let nv = (co16 / V - o).min(4);
                                // SAFETY: AVX-512F; v holds nr rows of ci16 (columns c..c + nc
                                // read), m nr rows of co16, du ci16 rows of co16 (rows c..c + nc,
                                // columns o V..(o + nv) V written)
                                unsafe {
                                    avx512::gemm_tile_dispatch::<true>(
                                        (nc, nv),
                                        v.as_ptr().add(c),
                                        (1, ci16),
                                        m.as_ptr().add(o * V),
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
    // gw = G^T dU G per (o, c); G^T = [[1, 1/2, 1/2, 0], [0, 1/2, -1/2, 0], [0, 1/2, 1/2, 1]]
    let gt = |v: [f32; 4]| {
        [
            v[0] + 0.5 * (v[1] + v[2]),
            0.5 * (v[1] - v[2]),
            0.5 * (v[1] + v[2]) + v[3],
        ]
    };
    let mut gw = vec![0.0f32; co * ci * 9];
    for o in 0..co {
        for c in 0..ci {
            let d = |t: usize| du[(t * ci16 + c) * co16 + o];
            // columns j of G^T D, then each row of that times G
            let cols: [[f32; 3]; 4] =
                std::array::from_fn(|j| gt([d(j), d(4 + j), d(8 + j), d(12 + j)]));
            for ky in 0..3 {
                let row = gt([cols[0][ky], cols[1][ky], cols[2][ky], cols[3][ky]]);
                gw[(o * ci + c) * 9 + ky * 3..][..3].copy_from_slice(&row);
            }
        }
    }
    gw
}

/// dM = A dY A^T of one tile, vectors over the output channels: e is gy's 2 x 2 block (rows
/// `row` floats apart, pixels co16 apart), point t = 4 i + j goes to m + t plane.
/// A = [[1, 0], [1, 1], [1, -1], [0, -1]].
///
/// # Safety
/// AVX-512F; e holds the 2 x 2 pixels, m the 16 planes' co16 floats.
#[target_feature(enable = "avx512f")]
#[allow(clippy::needless_range_loop)] // i is a row of two arrays at once
unsafe fn grad_tile(e: *const f32, row: usize, co16: usize, m: *mut f32, plane: usize) {
    let a = |y0: __m512, y1: __m512| {
        [
            y0,
            _mm512_add_ps(y0, y1),
            _mm512_sub_ps(y0, y1),
            _mm512_sub_ps(_mm512_setzero_ps(), y1),
        ]
    };
    for o in (0..co16).step_by(V) {
        let ld = |r: usize, x: usize| _mm512_loadu_ps(e.add(r * row + x * co16 + o));
        // columns first: p[j] = A (column j)
        let p: [[__m512; 4]; 2] = std::array::from_fn(|j| a(ld(0, j), ld(1, j)));
        for i in 0..4 {
            let r = a(p[0][i], p[1][i]);
            for (j, rv) in r.iter().enumerate() {
                _mm512_storeu_ps(m.add((4 * i + j) * plane + o), *rv);
            }
        }
    }
}

/// B^T d along one axis: (d0 - d2, d1 + d2, d2 - d1, d1 - d3).
#[inline(always)]
unsafe fn bt(d: [__m512; 4]) -> [__m512; 4] {
    [
        _mm512_sub_ps(d[0], d[2]),
        _mm512_add_ps(d[1], d[2]),
        _mm512_sub_ps(d[2], d[1]),
        _mm512_sub_ps(d[1], d[3]),
    ]
}

/// V = B^T d B of one tile, vectors over the channels: d is the tile's 4 x 4 padded input
/// pixels (rows `row` floats apart, pixels ci16 apart), point t = 4 i + j goes to v + t plane.
///
/// # Safety
/// AVX-512F; d holds the 4 x 4 pixels, v the 16 planes' ci16 floats.
#[target_feature(enable = "avx512f")]
#[allow(clippy::needless_range_loop)] // i is a row of four arrays at once
unsafe fn input_tile(d: *const f32, row: usize, ci16: usize, v: *mut f32, plane: usize) {
    for c in (0..ci16).step_by(V) {
        let ld = |r: usize, x: usize| _mm512_loadu_ps(d.add(r * row + x * ci16 + c));
        // columns first: t[x] = B^T (column x)
        let t: [[__m512; 4]; 4] =
            std::array::from_fn(|x| bt([ld(0, x), ld(1, x), ld(2, x), ld(3, x)]));
        for i in 0..4 {
            let r = bt([t[0][i], t[1][i], t[2][i], t[3][i]]);
            for (j, rv) in r.iter().enumerate() {
                _mm512_storeu_ps(v.add((4 * i + j) * plane + c), *rv);
            }
        }
    }
}

/// A^T m along one axis: (m0 + m1 + m2, m1 - m2 - m3).
#[inline(always)]
unsafe fn at2(m: [__m512; 4]) -> [__m512; 2] {
    [
        _mm512_add_ps(_mm512_add_ps(m[0], m[1]), m[2]),
        _mm512_sub_ps(_mm512_sub_ps(m[1], m[2]), m[3]),
    ]
}

/// Y = A^T M A of one tile, vectors over the output channels: M's 16 points at m + t plane,
/// the 2 x 2 results stored at out + at[2 i + j] (usize::MAX: outside the output, dropped).
///
/// # Safety
/// AVX-512F; m holds the 16 planes' co16 floats, out co16 floats at each used offset.
#[target_feature(enable = "avx512f")]
#[allow(clippy::needless_range_loop)] // i is a row of four arrays at once
unsafe fn output_tile(m: *const f32, plane: usize, co16: usize, out: *mut f32, at: &[usize; 4]) {
    for o in (0..co16).step_by(V) {
        let ld = |t: usize| _mm512_loadu_ps(m.add(t * plane + o));
        // rows of M (point 4 i + j: i the row) first: z[j] = A^T (column j)
        let z: [[__m512; 2]; 4] =
            std::array::from_fn(|j| at2([ld(j), ld(4 + j), ld(8 + j), ld(12 + j)]));
        for i in 0..2 {
            let y = at2([z[0][i], z[1][i], z[2][i], z[3][i]]);
            for (j, yv) in y.iter().enumerate() {
                let p = at[2 * i + j];
                if p != usize::MAX {
                    _mm512_storeu_ps(out.add(p + o), *yv);
                }
            }
        }
    }
}
