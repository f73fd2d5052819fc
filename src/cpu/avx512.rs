//! AVX-512 register tiles shared by the CPU's hand-written kernels: `tile` (a block of output
//! pixels x 16-channel vectors over the taps of a conv: `deconv.rs`, and through it
//! `conv_strided.rs`; `gemm_small.rs`), `gemm_tile` (rows x 16-float vectors over a plain
//! sum: the per-point GEMMs of `conv_winograd.rs` and `deconv_winograd.rs`; `gemm_small.rs`),
//! and 16 x 16 transposes between channel-last and planar layouts.

use std::arch::x86_64::*;

/// R rows x MR pixels x NV vectors of 16 output channels: acc[r][m][v] = sum over taps t
/// and source channels c of x[r ldr + offs[t] + c ldx + m] * w[(t ci + c) ldw + 16 v ..],
/// stored at out[r ldor + m ldoc + 16 v ..].
///
/// # Safety
/// AVX-512F; every address read or written lies in its allocation.
#[target_feature(enable = "avx512f")]
#[allow(clippy::too_many_arguments)]
unsafe fn tile<const MR: usize, const R: usize, const NV: usize>(
    x: *const f32,
    ldr: usize,
    offs: &[isize],
    (ci, ldx): (usize, usize),
    w: *const f32,
    ldw: usize,
    out: *mut f32,
    (ldor, ldoc): (usize, usize),
) {
    let mut acc = [[[_mm512_setzero_ps(); NV]; MR]; R];
    let mut wp = w;
    for &o in offs {
        let mut xp = x.offset(o);
        for _ in 0..ci {
            let mut wv = [_mm512_setzero_ps(); NV];
            for (v, r) in wv.iter_mut().enumerate() {
                *r = _mm512_loadu_ps(wp.add(16 * v));
            }
            for (r, ar) in acc.iter_mut().enumerate() {
                for (m, am) in ar.iter_mut().enumerate() {
                    let b = _mm512_set1_ps(*xp.add(r * ldr + m));
                    for (a, wr) in am.iter_mut().zip(&wv) {
                        *a = _mm512_fmadd_ps(b, *wr, *a);
                    }
                }
            }
            xp = xp.add(ldx);
            wp = wp.add(ldw);
        }
    }
    for (r, ar) in acc.iter().enumerate() {
        for (m, am) in ar.iter().enumerate() {
            for (v, a) in am.iter().enumerate() {
                _mm512_storeu_ps(out.add(r * ldor + m * ldoc + 16 * v), *a);
            }
        }
    }
}

/// dst[i ldd + j] = src[j lds + i] + bias[i] (then max(0, .) with `relu`) for i < rows (at most 16), j < 16: a 16 x 16
/// block transposed in registers (pairs of rows interleaved, then pairs of pairs, then
/// 128-bit lanes twice).
///
/// # Safety
/// AVX-512F; src holds 16 rows of 16 floats at lds, dst `rows` rows of 16 at ldd.
#[target_feature(enable = "avx512f")]
pub(crate) unsafe fn transpose16(
    src: *const f32,
    lds: usize,
    dst: *mut f32,
    ldd: usize,
    rows: usize,
    bias: &[f32; 16],
    relu: bool,
) {
    let mut r = [_mm512_setzero_ps(); 16];
    for (i, v) in r.iter_mut().enumerate() {
        *v = _mm512_loadu_ps(src.add(i * lds));
    }
    let mut t = [_mm512_setzero_ps(); 16];
    for i in 0..8 {
        t[2 * i] = _mm512_unpacklo_ps(r[2 * i], r[2 * i + 1]);
        t[2 * i + 1] = _mm512_unpackhi_ps(r[2 * i], r[2 * i + 1]);
    }
    for q in 0..4 {
        let b = 4 * q;
        r[b] = _mm512_shuffle_ps::<0x44>(t[b], t[b + 2]);
        r[b + 1] = _mm512_shuffle_ps::<0xEE>(t[b], t[b + 2]);
        r[b + 2] = _mm512_shuffle_ps::<0x44>(t[b + 1], t[b + 3]);
        r[b + 3] = _mm512_shuffle_ps::<0xEE>(t[b + 1], t[b + 3]);
    }
    for h in 0..2 {
        let b = 8 * h;
        for j in 0..4 {
            t[b + j] = _mm512_shuffle_f32x4::<0x88>(r[b + j], r[b + 4 + j]);
            t[b + 4 + j] = _mm512_shuffle_f32x4::<0xDD>(r[b + j], r[b + 4 + j]);
        }
    }
    for j in 0..8 {
        r[j] = _mm512_shuffle_f32x4::<0x88>(t[j], t[8 + j]);
        r[8 + j] = _mm512_shuffle_f32x4::<0xDD>(t[j], t[8 + j]);
    }
    for (i, v) in r.iter().enumerate().take(rows) {
        let mut o = _mm512_add_ps(*v, _mm512_set1_ps(bias[i]));
        if relu {
            o = _mm512_max_ps(o, _mm512_setzero_ps());
        }
        _mm512_storeu_ps(dst.add(i * ldd), o);
    }
}

/// dst[j ldd + i] = src[i lds + j] (+ bias[j], then max(0, .) with `relu`) for i < rows,
/// j < cols: src (rows x cols) transposed into dst (cols x rows), by 16 x 16 blocks in
/// registers (`transpose16`) and the rest one value at a time. With `padded`, each row of src
/// holds cols rounded up to 16 readable floats, so a last partial block of columns is still
/// transposed in registers (the values past cols are read and dropped).
///
/// # Safety
/// AVX-512F; src holds rows rows at lds (each cols, or cols rounded up to 16 with `padded`,
/// floats), dst cols rows of rows floats at ldd, no other thread writes those; bias, when
/// given, holds cols values.
#[allow(clippy::too_many_arguments)]
pub(crate) unsafe fn transpose(
    src: *const f32,
    lds: usize,
    (rows, cols): (usize, usize),
    padded: bool,
    dst: *mut f32,
    ldd: usize,
    bias: Option<&[f32]>,
    relu: bool,
) {
    let (rf, cf) = (rows / 16 * 16, if padded { cols } else { cols / 16 * 16 });
    let mut b = [0.0f32; 16];
    for j0 in (0..cf).step_by(16) {
        let nc = (cols - j0).min(16);
        if let Some(bias) = bias {
            b[..nc].copy_from_slice(&bias[j0..j0 + nc]);
        }
        for i0 in (0..rf).step_by(16) {
            transpose16(
                src.add(i0 * lds + j0),
                lds,
                dst.add(j0 * ldd + i0),
                ldd,
                nc,
                &b,
                relu,
            );
        }
    }
    let one = |i: usize, j: usize| {
        let v = *src.add(i * lds + j) + bias.map_or(0.0, |b| b[j]);
        *dst.add(j * ldd + i) = if relu { v.max(0.0) } else { v };
    };
    // what the blocks left: the last rows % 16 rows of src, and (unpadded) its last columns
    for i in 0..rows {
        let from = if i < rf { cf } else { 0 };
        for j in from..cols {
            one(i, j);
        }
    }
}

/// `tile::<mr, r, nv>` for r, nv in 1..=2 and mr in 1..=8 (mr <= 7 at nv 2).
///
/// # Safety
/// As `tile`.
#[allow(clippy::too_many_arguments)]
pub(crate) unsafe fn tile_dispatch(
    (mr, r, nv): (usize, usize, usize),
    x: *const f32,
    ldr: usize,
    offs: &[isize],
    c: (usize, usize),
    w: *const f32,
    ldw: usize,
    out: *mut f32,
    ldo: (usize, usize),
) {
    macro_rules! go {
        ($r:literal, $nv:literal; $($m:literal),*) => {
            match mr {
                $($m => tile::<$m, $r, $nv>(x, ldr, offs, c, w, ldw, out, ldo),)*
                _ => unreachable!(),
            }
        };
    }
    match (r, nv) {
        (1, 1) => go!(1, 1; 1, 2, 3, 4, 5, 6, 7, 8),
        (2, 1) => go!(2, 1; 1, 2, 3, 4, 5, 6, 7, 8),
        (1, 2) => go!(1, 2; 1, 2, 3, 4, 5, 6, 7),
        (2, 2) => go!(2, 2; 1, 2, 3, 4, 5, 6, 7),
        _ => unreachable!(),
    }
}

/// NR x NV accumulators over k: acc[j][v] = sum over kk < k of b[j ldj + kk ldk] *
/// at[kk lda + 16 v ..], stored at out[j ldo + 16 v ..]; with ACC they are added to what out
/// holds (C += B A, B read at any strides: the Winograd weight gradient sums over tiles so),
/// without it they replace it (rows of C^T = B A^T with ldk 1: the Winograd per-point GEMMs and
/// `gemm_small`). ACC is a const so that each use compiles to its own loop.
///
/// # Safety
/// AVX-512F; every address read or written lies in its allocation.
#[target_feature(enable = "avx512f")]
#[allow(clippy::too_many_arguments)]
unsafe fn gemm_tile<const NR: usize, const NV: usize, const ACC: bool>(
    b: *const f32,
    (ldj, ldk): (usize, usize),
    at: *const f32,
    lda: usize,
    k: usize,
    out: *mut f32,
    ldo: usize,
) {
    let mut acc = [[_mm512_setzero_ps(); NV]; NR];
    if ACC {
        for (j, aj) in acc.iter_mut().enumerate() {
            for (v, a) in aj.iter_mut().enumerate() {
                *a = _mm512_loadu_ps(out.add(j * ldo + 16 * v));
            }
        }
    }
    let (mut ap, mut bp) = (at, b);
    for _ in 0..k {
        let mut av = [_mm512_setzero_ps(); NV];
        for (v, r) in av.iter_mut().enumerate() {
            *r = _mm512_loadu_ps(ap.add(16 * v));
        }
        for (j, aj) in acc.iter_mut().enumerate() {
            let bb = _mm512_set1_ps(*bp.add(j * ldj));
            for (a, r) in aj.iter_mut().zip(&av) {
                *a = _mm512_fmadd_ps(bb, *r, *a);
            }
        }
        ap = ap.add(lda);
        bp = bp.add(ldk);
    }
    for (j, aj) in acc.iter().enumerate() {
        for (v, a) in aj.iter().enumerate() {
            _mm512_storeu_ps(out.add(j * ldo + 16 * v), *a);
        }
    }
}

/// `gemm_tile::<nr, nv, ACC>` for nr in 1..=6, nv in 1..=4.
///
/// # Safety
/// As `gemm_tile`.
#[allow(clippy::too_many_arguments)]
pub(crate) unsafe fn gemm_tile_dispatch<const ACC: bool>(
    (nr, nv): (usize, usize),
    b: *const f32,
    ld: (usize, usize),
    at: *const f32,
    lda: usize,
    k: usize,
    out: *mut f32,
    ldo: usize,
) {
    macro_rules! go {
        ($nv:literal; $($r:literal),*) => {
            match nr {
                $($r => gemm_tile::<$r, $nv, ACC>(b, ld, at, lda, k, out, ldo),)*
                _ => unreachable!(),
            }
        };
    }
    match nv {
        1 => go!(1; 1, 2, 3, 4, 5, 6),
        2 => go!(2; 1, 2, 3, 4, 5, 6),
        3 => go!(3; 1, 2, 3, 4, 5, 6),
        4 => go!(4; 1, 2, 3, 4, 5, 6),
        _ => unreachable!(),
    }
}
