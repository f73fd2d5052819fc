//! The scatter half of a conv (conv_transpose2d's forward, a strided conv2d's input gradient)
//! as a direct gather by output stride phase, vectorised over the output channels (AVX-512).
//!
//! In the direct-conv view of `ConvGeom` (gy: N x Cout x Ho x Wo in, gx: N x Cin x H x W out),
//!   gx[c, i, j] = sum over (o, ky), (p, kx) with i = o sh - ph + ky dh, j = p sw - pw + kx dw
//!                 of gy[o, p] . w[., c, ky, kx].
//! Output row i reaches only the taps ky with ky dh = (i + ph) mod sh + m sh, each reading
//! source row o = (i + ph) div sh - m: the rows of one phase r = (i + ph) mod sh share one tap
//! list, and a tap is a fixed shift of the source. So each output pixel is a plain dot product
//! of (its phase's taps x Cout) source values with the matching weights, no col2im, no zero
//! multiplied (unlike im2col's GEMM, whose columns also hold the wide layout's junk).
//!
//! The source is copied once per sample into (rows, Cout, columns) order with a zero border,
//! so a run of output pixels of one phase row reads consecutive source floats; the weights are
//! packed per phase as (tap, Cout, Cin rounded up to 16). A tile is MR pixels x NV vectors of
//! 16 output channels held in registers over all taps and source channels: per step NV weight
//! loads and MR broadcasts feed MR x NV FMAs. The tile's pixels land pixel-major in a
//! per-sample buffer, transposed into gx's planes at the end (plus the bias, if any).
//! Where every phase has a 2x2 kernel (4x4 at stride 2: the DCGAN's), `deconv_winograd.rs`
//! computes the same gather with Winograd F(2x2, 2x2) instead (9 products per 4 outputs).
//! The im2col + GEMM + col2im path measured 51-71 GFLOP/s on the DCGAN's 128->64 4x4 stride-2
//! convT at one thread, its GEMM alone ~125 (perf: packing, col2im, junk columns ~30%).

#[cfg(target_arch = "x86_64")]
use super::avx512;
use super::conv::copy_short;
use super::simd::{self, tier, Tier};
use super::{build_vec, with_scratch};
use crate::backend::ConvGeom;
use std::mem::MaybeUninit;

/// Output channels per vector.
const V: usize = 16;

/// True where `scatter` serves g: an AVX-512 CPU and enough output channels (gx's Cin) that
/// the vectors over them are mostly full (Cin rounded up to 16 wastes at most a fifth).
pub(super) fn applies(g: &ConvGeom) -> bool {
    cfg!(target_arch = "x86_64")
        && tier() == Tier::Avx512
        && g.cin >= V
        && g.cin.next_multiple_of(V) * 4 <= g.cin * 5
        && g.cout >= 4
}

/// One axis's stride phases: output index i = first + a s (a < count) reads source index
/// q0 + a - m for each tap (k, m) of the phase.
pub(super) struct Phase {
    pub(super) first: usize,
    pub(super) count: usize,
    pub(super) q0: usize,
    pub(super) taps: Vec<(usize, usize)>,
}

/// The phases of one axis (out: output length, src: source length) and the zero border the
/// source needs before and after so that every tap's read stays inside it.
fn axis(
    out: usize,
    src: usize,
    k: usize,
    s: usize,
    p: usize,
    d: usize,
) -> (Vec<Phase>, usize, usize) {
    let (mut lo, mut hi) = (0isize, src as isize - 1);
    let phases: Vec<Phase> = (0..s)
        .map(|r| {
            let first = (r + s - p % s) % s;
            let count = if first < out {
                (out - 1 - first) / s + 1
            } else {
                0
            };
            let q0 = (first + p) / s;
            let taps: Vec<(usize, usize)> = (0..k)
                .filter(|kk| (kk * d) % s == r)
                .map(|kk| (kk, (kk * d - r) / s))
                .collect();
            if count > 0 && !taps.is_empty() {
                let mmax = taps.iter().map(|t| t.1).max().unwrap_or(0) as isize;
                let mmin = taps.iter().map(|t| t.1).min().unwrap_or(0) as isize;
                lo = lo.min(q0 as isize - mmax);
                hi = hi.max((q0 + count - 1) as isize - mmin);
            }
            Phase {
                first,
                count,
                q0,
                taps,
            }
        })
        .collect();
    (phases, (-lo) as usize, (hi - (src as isize - 1)) as usize)
}

/// gx (N, Cin, H, W) from gy (N, Cout, Ho, Wo) and w (Cout, Cin, kh, kw), plus bias[c] on
/// every pixel of channel c when given. Call only where `applies(g)`.
pub(super) fn scatter(g: &ConvGeom, gy: &[f32], w: &[f32], bias: Option<&[f32]>) -> Vec<f32> {
    let (ci, co) = (g.cout, g.cin);
    let co16 = co.next_multiple_of(V);
    let (py, pt, pb) = axis(g.h, g.ho, g.kh, g.sh, g.ph, g.dh);
    let (px, pl, pr) = axis(g.w, g.wo, g.kw, g.sw, g.pw, g.dw);
    #[cfg(target_arch = "x86_64")]
    if super::deconv_winograd::pays(g, &py, &px) {
        return super::deconv_winograd::scatter(g, &py, &px, gy, w, bias);
    }
    let (hp, wp) = (pt + g.ho + pb, pl + g.wo + pr);
    // weights of phase (ry, rx) from wofs[ry * sw + rx]: (tap, Cout, co16), taps row-major
    let mut wofs = Vec::with_capacity(py.len() * px.len());
    let mut packed = Vec::new();
    for fy in &py {
        for fx in &px {
            wofs.push(packed.len());
            for &(ky, _) in &fy.taps {
                for &(kx, _) in &fx.taps {
                    for c in 0..ci {
                        let row = packed.len();
                        packed.resize(row + co16, 0.0);
                        for (o, v) in packed[row..row + co].iter_mut().enumerate() {
                            *v = w[((c * co + o) * g.kh + ky) * g.kw + kx];
                        }
                    }
                }
            }
        }
    }
    // per phase, the source shift of each tap's reads, in floats
    let offs: Vec<Vec<isize>> = py
        .iter()
        .flat_map(|phy| {
            px.iter().map(move |phx| {
                phy.taps
                    .iter()
                    .flat_map(|&(_, my)| {
                        phx.taps
                            .iter()
                            .map(move |&(_, mx)| -((my * ci * wp + mx) as isize))
                    })
                    .collect()
            })
        })
        .collect();
    let (src_len, out_len) = (hp * ci * wp, g.h * g.w * co16);
    let xps = g.x_per_sample();
    // no zero fill of gx: every value is written once (`to_planes`)
    build_vec(g.n * xps, xps, |start, out| {
        with_scratch(src_len + out_len, |buf| {
            let (xt, yt) = buf.split_at_mut(src_len);
            // the border of xt stays 0 for every sample of this call (only interiors change)
            xt.fill(0.0);
            for (j, gxn) in out.chunks_mut(xps).enumerate() {
                let n = start / xps + j;
                // the sample's source as (rows, Cout, columns) inside the zero border
                let gyn = &gy[n * g.y_per_sample()..][..g.y_per_sample()];
                source_rows(gyn, xt, ci, (g.ho, g.wo), (pt, pl), wp);
                for (fy, phy) in py.iter().enumerate() {
                    for (fx, phx) in px.iter().enumerate() {
                        if phy.count == 0 || phx.count == 0 {
                            continue;
                        }
                        let f = fy * px.len() + fx;
                        let at = ((phy.q0 + pt) * ci) * wp + pl + phx.q0;
                        let out0 = (phy.first * g.w + phx.first) * co16;
                        let grid = Grid {
                            rows: phy.count,
                            cols: phx.count,
                            src_row: ci * wp,
                            out_row: g.sh * g.w * co16,
                            out_col: g.sw * co16,
                        };
                        let w = &packed[wofs[f]..];
                        phase_tiles(xt, at, &offs[f], ci, wp, w, co16, &mut yt[out0..], grid);
                    }
                }
                to_planes(yt, co16, gxn, co, bias, false);
            }
        })
    })
}

/// One sample's source gyn (Cout, ho, wo) into xt as (rows, Cout, columns of wp): row o of
/// channel c at xt[((o + pt) Cout + c) wp + pl ..]. The border around is left as it is (0).
fn source_rows(
    gyn: &[f32],
    xt: &mut [f32],
    ci: usize,
    (ho, wo): (usize, usize),
    (pt, pl): (usize, usize),
    wp: usize,
) {
    let row = ci * wp;
    simd::wide!({
        for o in 0..ho {
            let dst = &mut xt[(o + pt) * row..][..row];
            for c in 0..ci {
                copy_short(
                    &mut dst[c * wp + pl..][..wo],
                    &gyn[(c * ho + o) * wo..][..wo],
                );
            }
        }
    })
}

/// The pixel-major yt (pixels, co16) into gxn's planes (co, pixels), plus bias[c] on plane c,
/// then max(0, .) with `relu`: 16 x 16 blocks transposed in registers, the last pixels (fewer
/// than 16) one by one. Writes every value of gxn.
pub(super) fn to_planes(
    yt: &[f32],
    co16: usize,
    gxn: &mut [MaybeUninit<f32>],
    co: usize,
    bias: Option<&[f32]>,
    relu: bool,
) {
    let hw = gxn.len() / co;
    assert!(yt.len() >= hw * co16 && co16 >= co.next_multiple_of(V) && gxn.len() == co * hw);
    #[cfg(target_arch = "x86_64")]
    // SAFETY: AVX-512F (`applies`); yt holds hw rows of co16 floats (co rounded up to 16),
    // gxn co planes of hw; bias, when given, co values
    unsafe {
        avx512::transpose(
            yt.as_ptr(),
            co16,
            (hw, co),
            true,
            gxn.as_mut_ptr() as *mut f32,
            hw,
            bias,
            relu,
        )
    };
    #[cfg(not(target_arch = "x86_64"))]
    let _ = (yt, gxn, bias, relu);
}

/// The output pixels of one phase: rows x cols, pixel (r, b) reading the source from
/// x[at + r src_row + b + offs[t] + c wp] for tap t and source channel c, and written to
/// out[r out_row + b out_col + o] for every output channel o < co16.
#[derive(Clone, Copy)]
pub(super) struct Grid {
    pub(super) rows: usize,
    pub(super) cols: usize,
    pub(super) src_row: usize,
    pub(super) out_row: usize,
    pub(super) out_col: usize,
}

/// Every tile of one phase (`Grid`), weights w[(t ci + c) co16 + o]: tiles of two phase rows
/// x up to 7 pixels x 2 vectors (28 accumulators; 4 vectors x 7 pixels would need more than
/// the 32 registers), the last odd row alone.
#[allow(clippy::too_many_arguments)]
pub(super) fn phase_tiles(
    x: &[f32],
    at: usize,
    offs: &[isize],
    ci: usize,
    wp: usize,
    w: &[f32],
    co16: usize,
    out: &mut [f32],
    grid: Grid,
) {
    let Grid {
        rows,
        cols,
        src_row,
        out_row,
        out_col,
    } = grid;
    if rows == 0 || cols == 0 {
        return;
    }
    // bounds of every read and write, checked once (the kernel reads through raw pointers)
    if !offs.is_empty() {
        let lo = offs.iter().map(|&o| at as isize + o).min().unwrap_or(0);
        let hi = offs.iter().map(|&o| at as isize + o).max().unwrap_or(0) as usize;
        assert!(lo >= 0 && hi + (rows - 1) * src_row + (ci - 1) * wp + cols <= x.len());
        assert!(w.len() >= offs.len() * ci * co16);
    }
    assert!(out.len() >= (rows - 1) * out_row + (cols - 1) * out_col + co16);
    let nv = co16 / V;
    #[cfg(target_arch = "x86_64")]
    {
        let mut r = 0;
        while r < rows {
            let rr = (rows - r).min(2);
            let mut b = 0;
            while b < cols {
                let mr = (cols - b).min(if nv >= 2 { 7 } else { 8 });
                let mut v = 0;
                while v < nv {
                    let nvt = (nv - v).min(2);
                    // SAFETY: AVX-512F is present (`applies`); the reads and writes lie inside
                    // the slices (checked above).
                    unsafe {
                        avx512::tile_dispatch(
                            (mr, rr, nvt),
                            x.as_ptr().wrapping_add(at + r * src_row + b),
                            src_row,
                            offs,
                            (ci, wp),
                            w.as_ptr().wrapping_add(v * V),
                            co16,
                            out.as_mut_ptr()
                                .wrapping_add(r * out_row + b * out_col + v * V),
                            (out_row, out_col),
                        )
                    };
                    v += nvt;
                }
                b += mr;
            }
            r += rr;
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        let _ = (
            x, at, offs, ci, wp, w, co16, out, nv, src_row, out_row, out_col,
        );
        unreachable!("deconv::scatter runs only where applies() (x86-64 with AVX-512)");
    }
}

#[cfg(all(test, target_arch = "x86_64"))]
mod tests {
    #[test]
    fn transpose16_matches_the_definition() {
        if !std::arch::is_x86_feature_detected!("avx512f") {
            return;
        }
        let (lds, ldd) = (19, 21);
        let src: Vec<f32> = (0..16 * lds).map(|i| i as f32).collect();
        let bias: [f32; 16] = std::array::from_fn(|i| 1000.0 * i as f32);
        for rows in [16, 5] {
            let mut dst = vec![-1.0f32; 16 * ldd];
            // SAFETY: AVX-512F checked above; the slices hold every row
            unsafe {
                super::avx512::transpose16(
                    src.as_ptr(),
                    lds,
                    dst.as_mut_ptr(),
                    ldd,
                    rows,
                    &bias,
                    false,
                )
            };
            for i in 0..16 {
                for j in 0..16 {
                    let want = if i < rows {
                        src[j * lds + i] + bias[i]
                    } else {
                        -1.0
                    };
                    assert_eq!(dst[i * ldd + j], want, "({i}, {j}) rows {rows}");
                }
            }
        }
    }
}
