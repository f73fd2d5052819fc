//! `deconv::scatter` by Winograd F(2x2, 2x2) where every stride phase of the output has a 2x2
//! kernel: a 4x4 kernel at stride 2 and dilation 1 (the DCGAN generator's transposed convs,
//! the discriminator's input gradients), any padding and output_padding.
//!
//! In one phase (`deconv::Phase`), output a of an axis reads the source at q0 + a - m for its
//! two taps m = 1 and m = 0: with D[u] = src[q0 - 1 + u], out[a] = D[a] g0 + D[a + 1] g1 (g0
//! the weight of the tap m = 1), a 2-tap correlation. F(2, 2) gives two outputs from three
//! inputs with three products, and only additions around them (no rounding beyond the
//! direct sum's):
//!   m0 = (d0 - d1) g0,  m1 = d1 (g0 + g1),  m2 = (d2 - d1) g1;  y0 = m0 + m1,  y1 = m1 + m2.
//! In 2-D (both axes) a 2x2 block of a phase's outputs takes 9 products where the direct
//! gather takes 16: per (phase, transform point) one GEMM (tiles x Cin) . (Cin x Cout) over
//! the source channels, on `avx512::gemm_tile`. A phase of 7 x 7 outputs (the DCGAN's 7 -> 14)
//! is 4 x 4 tiles, so 144 products per channel pair where the direct gather has 196.
//!
//! The source is copied once per sample channel-last with a zero border (the transforms are
//! then vectors over the channels), the weights are transformed once per call. Samples go in
//! groups (up to 4 per task) so that each transformed weight block is read once per group.

use super::avx512;
use super::deconv::{to_planes, Phase};
use super::simd;
use super::{build_vec, threads, with_scratch};
use crate::backend::ConvGeom;
use std::arch::x86_64::*;

/// Floats per vector.
const V: usize = 16;

/// Samples per group: the source, channel-last, and the pixel-major outputs of a group, with
/// one phase's U, stay in L2.
const GROUP: usize = 4;

/// Tiles per GEMM: one `avx512::gemm_tile` of 6 rows; their 9 transforms stay in L1.
const ROWS: usize = 6;

/// Per phase of one axis, the kernel indices of its taps m = 1 and m = 0 (in that order),
/// when every phase that has outputs has exactly those two taps; phases without outputs get
/// [0, 0] (never read).
fn two_taps(ph: &[Phase]) -> Option<Vec<[usize; 2]>> {
    ph.iter()
        .map(|p| {
            if p.count == 0 {
                return Some([0, 0]);
            }
            let k1 = p.taps.iter().find(|t| t.1 == 1)?.0;
            let k0 = p.taps.iter().find(|t| t.1 == 0)?.0;
            (p.taps.len() == 2).then_some([k1, k0])
        })
        .collect()
}

/// True where `scatter` should serve g (already `deconv::applies`) with these phases: every
/// phase has the taps m = 0 and m = 1, at least 16 source channels (the GEMMs' depth; below
/// it the transforms cost more than they save), and the padded 2x2 tiles multiply at most
/// 4/5 of what the direct gather does (a phase of 3 outputs per axis saves nothing).
pub(super) fn pays(g: &ConvGeom, py: &[Phase], px: &[Phase]) -> bool {
    if g.cout < V || two_taps(py).is_none() || two_taps(px).is_none() {
        return false;
    }
    let (mut direct, mut wino) = (0, 0);
    for fy in py {
        for fx in px {
            direct += 4 * fy.count * fx.count;
            wino += 9 * fy.count.div_ceil(2) * fx.count.div_ceil(2);
        }
    }
    direct > 0 && wino * 5 <= direct * 4
}

/// The zero border (before, after) a source axis of length `src` needs so that every tile of
/// every phase reads inside it: D[u] for u in 0..=2 tiles, at src index q0 - 1 + u.
fn border(ph: &[Phase], src: usize) -> (usize, usize) {
    let (mut lo, mut hi) = (0isize, src as isize - 1);
    for p in ph.iter().filter(|p| p.count > 0) {
        lo = lo.min(p.q0 as isize - 1);
        hi = hi.max((p.q0 + 2 * p.count.div_ceil(2)) as isize - 1);
    }
    ((-lo) as usize, (hi - (src as isize - 1)) as usize)
}

/// gx (N, Cin, H, W) from gy (N, Cout, Ho, Wo) and w (Cout, Cin, kh, kw), plus bias[c] on
/// every pixel of channel c when given. Call only where `deconv::applies(g)` and
/// `pays(g, py, px)`, with py, px the phases of `deconv::axis`.
pub(super) fn scatter(
    g: &ConvGeom,
    py: &[Phase],
    px: &[Phase],
    gy: &[f32],
    w: &[f32],
    bias: Option<&[f32]>,
) -> Vec<f32> {
    let (ci, co) = (g.cout, g.cin);
    let (ci16, co16) = (ci.next_multiple_of(V), co.next_multiple_of(V));
    let (ky, kx) = (two_taps(py).unwrap(), two_taps(px).unwrap());
    let ((bt, bb), (bl, br)) = (border(py, g.ho), border(px, g.wo));
    let (hs, ws) = (bt + g.ho + bb, bl + g.wo + br);
    let nph = py.len() * px.len();
    let ulen = 9 * ci16 * co16;
    let u = build_vec(nph * ulen, ulen, |start, out| {
        for (j, uf) in out.chunks_mut(ulen).enumerate() {
            let f = start / ulen + j;
            weight_transform(g, w, (ky[f / px.len()], kx[f % px.len()]), (ci16, co16), uf);
        }
    });
    let tiles: Vec<(usize, usize)> = py
        .iter()
        .flat_map(|fy| {
            px.iter()
                .map(|fx| (fy.count.div_ceil(2), fx.count.div_ceil(2)))
        })
        .collect();
    let group = g.n.div_ceil(threads()).clamp(1, GROUP);
    let (xps, yps) = (g.x_per_sample(), g.y_per_sample());
    let (slen, tlen, ylen) = (hs * ws * ci16, g.ho * g.wo * ci16, g.h * g.w * co16);
    let (vlen, mlen) = (9 * ROWS * ci16, 9 * ROWS * co16);
    // build_vec hands one task a whole group, or (one thread) every sample at once
    build_vec(g.n * xps, group * xps, |start, all| {
        with_scratch(group * slen + tlen + vlen + mlen + group * ylen, |buf| {
            let (src, rest) = buf.split_at_mut(group * slen);
            let (tmp, rest) = rest.split_at_mut(tlen);
            let (vb, rest) = rest.split_at_mut(vlen);
            let (mb, yt) = rest.split_at_mut(mlen);
            // borders and padded channels stay 0 for the whole call (only interiors change)
            src.fill(0.0);
            tmp.fill(0.0);
            for (gi, out) in all.chunks_mut(group * xps).enumerate() {
                let first = start / xps + gi * group;
                let count = out.len() / xps;
                for s in 0..count {
                    let gyn = &gy[(first + s) * yps..][..yps];
                    source_channel_last(g, ci, ci16, gyn, tmp);
                    let dst = &mut src[s * slen..][..slen];
                    let row = g.wo * ci16;
                    for y in 0..g.ho {
                        dst[((y + bt) * ws + bl) * ci16..][..row]
                            .copy_from_slice(&tmp[y * row..][..row]);
                    }
                }
                // phase by phase (its U stays in L2 over the group), ROWS tiles at a time (their
                // V and M stay in L1)
                for (fy, phy) in py.iter().enumerate() {
                    for (fx, phx) in px.iter().enumerate() {
                        if phy.count == 0 || phx.count == 0 {
                            continue;
                        }
                        let f = fy * px.len() + fx;
                        let (ty, tx) = tiles[f];
                        let uf = &u[f * ulen..][..ulen];
                        let rows = count * ty * tx;
                        let tile_at = |row: usize| (row / (ty * tx), row / tx % ty, row % tx);
                        for r0 in (0..rows).step_by(ROWS) {
                            let nr = (rows - r0).min(ROWS);
                            let (vplane, mplane) = (nr * ci16, nr * co16);
                            // V = B^T D B of each tile
                            for j in 0..nr {
                                let (s, a, b) = tile_at(r0 + j);
                                let (r, c) = (phy.q0 + bt + 2 * a - 1, phx.q0 + bl + 2 * b - 1);
                                let d = &src[s * slen + (r * ws + c) * ci16..];
                                assert!(d.len() >= (2 * ws + 3) * ci16);
                                assert!(vb.len() >= 8 * vplane + (j + 1) * ci16);
                                // SAFETY: AVX-512F (`deconv::applies`); d holds 3 rows of 3
                                // pixels of ci16 floats at ws ci16, vb 9 planes of vplane
                                // with row j inside (checked above)
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
                            // M = V . U per transform point
                            gemm_points(9, vb, uf, mb, (nr, ci16, co16));
                            // Y = A^T M A into the samples' pixel-major outputs
                            for j in 0..nr {
                                let (s, a, b) = tile_at(r0 + j);
                                let ys = &mut yt[s * ylen..][..ylen];
                                let mut at = [usize::MAX; 4];
                                for (e, at) in at.iter_mut().enumerate() {
                                    let (i, k) = (2 * a + e / 2, 2 * b + e % 2);
                                    if i < phy.count && k < phx.count {
                                        let (iy, ix) = (phy.first + i * g.sh, phx.first + k * g.sw);
                                        *at = (iy * g.w + ix) * co16;
                                    }
                                }
                                assert!(at
                                    .iter()
                                    .all(|&o| o == usize::MAX || o + co16 <= ys.len()));
                                assert!(mb.len() >= 8 * mplane + (j + 1) * co16);
                                // SAFETY: AVX-512F; mb holds 9 planes of mplane with row j
                                // inside, and every output offset used lies in ys (checked
                                // above)
                                unsafe {
                                    output_tile(
                                        mb.as_ptr().add(j * co16),
                                        mplane,
                                        co16,
                                        ys.as_mut_ptr(),
                                        &at,
                                    )
                                };
                            }
                        }
                    }
                }
                for (s, gxn) in out.chunks_mut(xps).enumerate() {
                    to_planes(&yt[s * ylen..][..ylen], co16, gxn, co, bias, false);
                }
            }
        })
    })
}

/// One phase's U = G g G^T into uf: (transform point t = 3 xi + nu, source channel, output
/// channel), rows and columns past ci and co zero; (ky, kx): the kernel indices of the taps
/// m = 1 and m = 0 of each axis. G = [[1, 0], [1, 1], [0, 1]].
fn weight_transform(
    g: &ConvGeom,
    w: &[f32],
    (ky, kx): ([usize; 2], [usize; 2]),
    (ci16, co16): (usize, usize),
    uf: &mut [std::mem::MaybeUninit<f32>],
) {
    let (ci, co, kk) = (g.cout, g.cin, g.kh * g.kw);
    uf.fill(std::mem::MaybeUninit::new(0.0));
    // SAFETY: every value was just written (0.0)
    let uf = unsafe { &mut *(uf as *mut [std::mem::MaybeUninit<f32>] as *mut [f32]) };
    let mut taps = vec![0.0f32; 4 * co];
    simd::wide!({
        for c in 0..ci {
            // the four taps' weights of source channel c, each over the output channels
            for (e, tp) in taps.chunks_exact_mut(co).enumerate() {
                let k = ky[e / 2] * g.kw + kx[e % 2];
                for (o, v) in tp.iter_mut().enumerate() {
                    *v = w[(c * co + o) * kk + k];
                }
            }
            let (g00, rest) = taps.split_at(co);
            let (g01, rest) = rest.split_at(co);
            let (g10, g11) = rest.split_at(co);
            // G g G^T with G's rows (1, 0), (1, 1), (0, 1): point (xi, nu) is
            // a[xi](b[nu](g)), each a sum of one or two taps' rows, written row by row
            for xi in 0..3 {
                for nu in 0..3 {
                    let row = &mut uf[((xi * 3 + nu) * ci16 + c) * co16..][..co];
                    // (tap rows of the sum, each from (g00, g01, g10, g11))
                    let ys: &[usize] = [&[0usize][..], &[0, 1], &[1]][xi];
                    let xs: &[usize] = [&[0usize][..], &[0, 1], &[1]][nu];
                    row.fill(0.0);
                    for &y in ys {
                        for &x in xs {
                            let src = [g00, g01, g10, g11][2 * y + x];
                            for (v, s) in row.iter_mut().zip(src) {
                                *v += *s;
                            }
                        }
                    }
                }
            }
        }
    })
}

/// One sample's gy (ci, ho, wo) channel-last into tmp (ho wo pixels of ci16 floats; the
/// channels from ci on are left as they are: 0).
fn source_channel_last(g: &ConvGeom, ci: usize, ci16: usize, gyn: &[f32], tmp: &mut [f32]) {
    let hw = g.ho * g.wo;
    assert!(gyn.len() >= ci * hw && tmp.len() >= hw * ci16);
    // SAFETY: AVX-512F (`deconv::applies`); gyn holds ci rows of hw floats, tmp hw rows of
    // ci16 floats (checked above)
    unsafe {
        avx512::transpose(
            gyn.as_ptr(),
            hw,
            (ci, hw),
            false,
            tmp.as_mut_ptr(),
            ci16,
            None,
            false,
        )
    };
}

/// M_t = V_t . U_t at each of `points` transform points: V holds a (rows x ci16) plane per
/// point, U a (ci16 x co16) one, M a (rows x co16) one, one after another (the Winograd step
/// between the input and the output transforms, forward and transposed alike).
pub(super) fn gemm_points(
    points: usize,
    v: &[f32],
    u: &[f32],
    m: &mut [f32],
    (rows, ci16, co16): (usize, usize, usize),
) {
    let (vplane, uplane, mplane) = (rows * ci16, ci16 * co16, rows * co16);
    for t in 0..points {
        gemm(
            &v[t * vplane..][..vplane],
            &u[t * uplane..][..uplane],
            &mut m[t * mplane..][..mplane],
            (rows, ci16, co16),
        );
    }
}

/// m (rows x co16) = v (rows x ci16) . u (ci16 x co16), by `avx512::gemm_tile` tiles of up to
/// 6 rows x 4 vectors.
pub(super) fn gemm(v: &[f32], u: &[f32], m: &mut [f32], (rows, k, n): (usize, usize, usize)) {
    assert!(v.len() >= rows * k && u.len() >= k * n && m.len() >= rows * n && n % V == 0);
    let nv = n / V;
    let mut r = 0;
    while r < rows {
        let nr = (rows - r).min(6);
        let mut j = 0;
        while j < nv {
            let nvt = (nv - j).min(4);
            // SAFETY: AVX-512F; rows r..r + nr of v and m and columns j V..(j + nvt) V of u
            // and m lie inside the slices (checked above)
            unsafe {
                avx512::gemm_tile_dispatch::<false>(
                    (nr, nvt),
                    v.as_ptr().add(r * k),
                    (k, 1),
                    u.as_ptr().add(j * V),
                    n,
                    k,
                    m.as_mut_ptr().add(r * n + j * V),
                    n,
                )
            };
            j += nvt;
        }
        r += nr;
    }
}

/// V = B^T D B of one tile, vectors over the channels: d is the tile's 3 x 3 source pixels
/// (rows `row` floats apart, pixels ci16 apart), the 9 results go to v + t plane (t = 3 xi +
/// nu) for each transform point. B^T = [[1, -1, 0], [0, 1, 0], [0, -1, 1]].
///
/// # Safety
/// AVX-512F; d holds the 3 x 3 pixels, v the 9 planes' ci16 floats.
#[target_feature(enable = "avx512f")]
#[allow(clippy::needless_range_loop)] // x is a column of three arrays at once
unsafe fn input_tile(d: *const f32, row: usize, ci16: usize, v: *mut f32, plane: usize) {
    for c in (0..ci16).step_by(V) {
        let ld = |u: usize, x: usize| _mm512_loadu_ps(d.add(u * row + x * ci16 + c));
        let mut t = [[_mm512_setzero_ps(); 3]; 3];
        for x in 0..3 {
            let (a, b, e) = (ld(0, x), ld(1, x), ld(2, x));
            t[0][x] = _mm512_sub_ps(a, b);
            t[1][x] = b;
            t[2][x] = _mm512_sub_ps(e, b);
        }
        for (xi, tr) in t.iter().enumerate() {
            let o = [
                _mm512_sub_ps(tr[0], tr[1]),
                tr[1],
                _mm512_sub_ps(tr[2], tr[1]),
            ];
            for (nu, ov) in o.iter().enumerate() {
                _mm512_storeu_ps(v.add((xi * 3 + nu) * plane + c), *ov);
            }
        }
    }
}

/// Y = A^T M A of one tile, vectors over the output channels: M's 9 points at m + t plane,
/// the 2 x 2 results stored at out + at[2 a + b] (usize::MAX: outside the output, dropped).
/// A^T = [[1, 1, 0], [0, 1, 1]].
///
/// # Safety
/// AVX-512F; m holds the 9 planes' co16 floats, out co16 floats at each used offset.
#[target_feature(enable = "avx512f")]
#[allow(clippy::needless_range_loop)] // nu is a column of two arrays at once
unsafe fn output_tile(m: *const f32, plane: usize, co16: usize, out: *mut f32, at: &[usize; 4]) {
    for o in (0..co16).step_by(V) {
        let ld = |t: usize| _mm512_loadu_ps(m.add(t * plane + o));
        let mut z = [[_mm512_setzero_ps(); 3]; 2];
        for nu in 0..3 {
            let (a, b, e) = (ld(nu), ld(3 + nu), ld(6 + nu));
            z[0][nu] = _mm512_add_ps(a, b);
            z[1][nu] = _mm512_add_ps(b, e);
        }
        for (a, zr) in z.iter().enumerate() {
            let y = [_mm512_add_ps(zr[0], zr[1]), _mm512_add_ps(zr[1], zr[2])];
            for (b, yv) in y.iter().enumerate() {
                let p = at[2 * a + b];
                if p != usize::MAX {
                    _mm512_storeu_ps(out.add(p + o), *yv);
                }
            }
        }
    }
}
