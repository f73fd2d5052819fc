//! C (m x n) = op(A) op(B) for a matrix A of few rows (a dense layer's batch: m <= 128) or a
//! short sum (its weight gradient, k = the batch), on AVX-512 (the module is compiled on
//! x86-64 only). The `gemm` crate packs both operands for every such call, and with B read
//! transposed (x W^T, the layer's forward) its packing took 28% of the GAN's 64x100 .
//! (6272x100)^T (perf), which ran at 0.59x PyTorch. Here A^T (k x m, small) is packed once
//! per call into the calling thread's scratch; B is taken in blocks of 32 columns, each copied
//! into a k x 32 block that stays in L1 while every row tile of C is summed over it: tiles of
//! 2 x 7 rows x 32 columns in registers (`avx512::tile_dispatch`), stored straight into C.
//! B read transposed has its own tiling (`matmul_bt`).

use super::simd::{tier, Tier};
use super::{par_for, threads, with_scratch};

/// Columns of B per block.
const NB: usize = 32;

/// True where `matmul` serves (m, n, k): a dense layer's shapes, one of m and k short (a batch
/// of <= 128 as C's rows, or as the sum of a weight gradient) and the other up to 1024 (A^T
/// and a block of B then stay in L2 without blocking k). The dense GAN's 256-784 layers ran
/// ~5% faster per step here than on the `gemm` crate, whose packing of the weight for every
/// call took 22% of that step (1 thread, perf).
pub(super) fn applies(m: usize, n: usize, k: usize) -> bool {
    let (short, long) = (8..=128, 8..=1024);
    tier() == Tier::Avx512
        && n >= NB
        && ((short.contains(&m) && long.contains(&k)) || (long.contains(&m) && short.contains(&k)))
}

/// C = op(A) op(B): a stored (m, k), or (k, m) when `trans_a`; b stored (k, n), or (n, k)
/// when `trans_b`. Call only where `applies(m, n, k)`.
pub(super) fn matmul(
    (m, n, k): (usize, usize, usize),
    a: &[f32],
    trans_a: bool,
    b: &[f32],
    trans_b: bool,
) -> Vec<f32> {
    assert!(a.len() >= m * k && b.len() >= k * n);
    if trans_b {
        return matmul_bt((m, n, k), a, trans_a, b);
    }
    if trans_a {
        return matmul_at((m, n, k), a, b);
    }
    // A^T (k, m), in this thread's scratch (the workers use their own)
    with_scratch(k * m, |t| {
        // SAFETY: AVX-512F (`applies`); a holds m rows of k floats (asserted above), t k rows
        // of m
        unsafe {
            super::avx512::transpose(a.as_ptr(), k, (m, k), false, t.as_mut_ptr(), m, None, false)
        };
        matmul_at((m, n, k), t, b)
    })
}

/// `matmul` with A^T (k, m) at hand: the tiles broadcast A's entries of one k for consecutive
/// rows of C.
fn matmul_at((m, n, k): (usize, usize, usize), at: &[f32], b: &[f32]) -> Vec<f32> {
    // every element is written below (tiles or tail copies): no zero fill first
    let mut c: Vec<f32> = Vec::with_capacity(m * n);
    let out = super::conv::SharedOut(c.as_mut_ptr());
    let blocks = n.div_ceil(NB);
    // runs of blocks, a few per thread (one block is only ~2 m k NB FLOPs)
    let runs = (threads() * 4).min(blocks).max(1);
    par_for(runs, |run| {
        with_scratch(k * NB + m * NB, |buf| {
            let (bt, tail) = buf.split_at_mut(k * NB);
            for blk in run * blocks / runs..(run + 1) * blocks / runs {
                let n0 = blk * NB;
                let nb = NB.min(n - n0);
                block_of_b(b, n, n0, nb, bt);
                if nb == NB {
                    // SAFETY: block blk alone writes columns n0..n0 + NB of every row of C
                    unsafe { row_tiles(at, m, k, bt, out.at(n0), n) };
                } else {
                    // SAFETY: tail holds m rows of NB, this thread's own scratch
                    unsafe { row_tiles(at, m, k, bt, tail.as_mut_ptr(), NB) };
                    for i in 0..m {
                        // SAFETY: as above, columns n0..n0 + nb of row i
                        let dst = unsafe { std::slice::from_raw_parts_mut(out.at(i * n + n0), nb) };
                        dst.copy_from_slice(&tail[i * NB..i * NB + nb]);
                    }
                }
            }
        })
    });
    // SAFETY: the blocks wrote all m x n values; capacity is m n
    unsafe { c.set_len(m * n) };
    c
}

/// Rows of B (columns of C) per block of `matmul_bt`: 8 tiles of 6.
const NBT: usize = 48;

/// `matmul` with b stored (n, k) (x W^T, a dense layer's forward): B's rows are read in
/// place, each of its entries broadcast against A^T's vectors over the rows of C (A^T padded
/// to m16 rows of zeros), tiles of 6 rows of B x up to 4 vectors; a block of 48 rows of B
/// gives 48 columns of C, transposed into C by 16 x 16 register blocks. (Transposing B into
/// blocks instead cost a fifth of the time: B streams from memory once, C's block is in L1.)
fn matmul_bt((m, n, k): (usize, usize, usize), a: &[f32], trans_a: bool, b: &[f32]) -> Vec<f32> {
    let m16 = m.next_multiple_of(16);
    // A^T padded, in this thread's scratch (the workers use their own)
    with_scratch(k * m16, |at| {
        for (kk, row) in at.chunks_exact_mut(m16).enumerate() {
            for (i, v) in row[..m].iter_mut().enumerate() {
                *v = if trans_a {
                    a[kk * m + i]
                } else {
                    a[i * k + kk]
                };
            }
            row[m..].fill(0.0);
        }
        matmul_bt_padded((m, n, k), at, b)
    })
}

/// `matmul_bt` with A^T padded to m16 = m rounded up to 16 columns at hand.
fn matmul_bt_padded((m, n, k): (usize, usize, usize), at: &[f32], b: &[f32]) -> Vec<f32> {
    let m16 = m.next_multiple_of(16);
    let mut c: Vec<f32> = Vec::with_capacity(m * n);
    let out = super::conv::SharedOut(c.as_mut_ptr());
    let blocks = n.div_ceil(NBT);
    let runs = (threads() * 4).min(blocks).max(1);
    let mv = m16 / 16;
    par_for(runs, |run| {
        with_scratch(NBT * m16, |ct| {
            for blk in run * blocks / runs..(run + 1) * blocks / runs {
                let n0 = blk * NBT;
                let nb = NBT.min(n - n0);
                for j0 in (0..nb).step_by(6) {
                    let nr = (nb - j0).min(6);
                    for v0 in (0..mv).step_by(4) {
                        let nv = (mv - v0).min(4);
                        // SAFETY: AVX-512F (`applies`); reads rows n0 + j0 .. + nr of b
                        // (< n) over k, at's k rows of m16, writes ct's rows j0 .. + nr
                        unsafe {
                            super::avx512::gemm_tile_dispatch::<false>(
                                (nr, nv),
                                b.as_ptr().add((n0 + j0) * k),
                                (k, 1),
                                at.as_ptr().add(16 * v0),
                                m16,
                                k,
                                ct.as_mut_ptr().add(j0 * m16 + 16 * v0),
                                m16,
                            )
                        };
                    }
                }
                // ct (nb, m16) = C^T's block into C's columns n0 .. n0 + nb
                // SAFETY: AVX-512F (`applies`); ct holds nb rows of m16 >= m rounded up to 16
                // floats; C's rows 0 .. m at columns n0 .. n0 + nb belong to block blk alone
                unsafe {
                    super::avx512::transpose(
                        ct.as_ptr(),
                        m16,
                        (nb, m),
                        true,
                        out.at(n0),
                        n,
                        None,
                        false,
                    )
                };
            }
        })
    });
    // SAFETY: the blocks wrote all m x n values; capacity is m n
    unsafe { c.set_len(m * n) };
    c
}

/// Columns n0..n0 + nb (nb <= NB) of B (k x n, row-major) into bt (k, NB), 0 past nb.
fn block_of_b(b: &[f32], n: usize, n0: usize, nb: usize, bt: &mut [f32]) {
    // (short copies inline: a memcpy call per 32-float row was 4% of a dense GAN step)
    super::simd::wide!({
        for (kk, row) in bt.chunks_exact_mut(NB).enumerate() {
            super::conv::copy_short(&mut row[..nb], &b[kk * n + n0..][..nb]);
            row[nb..].iter_mut().for_each(|v| *v = 0.0);
        }
    });
}

/// out[i ldc + j] = sum over kk of at[kk m + i] bt[kk NB + j], for i < m, j < NB: tiles of
/// 2 x 7 rows, the rest in smaller ones.
///
/// # Safety
/// out is valid for writes at every (i ldc + j), i < m, j < NB, and no other thread uses them.
unsafe fn row_tiles(at: &[f32], m: usize, k: usize, bt: &[f32], out: *mut f32, ldc: usize) {
    assert!(at.len() >= k * m && bt.len() >= k * NB);
    let mut i = 0;
    while i < m {
        let rest = m - i;
        let (r, mr) = if rest >= 14 {
            (2, 7)
        } else if rest >= 2 {
            (2, rest / 2)
        } else {
            (1, 1)
        };
        // SAFETY: AVX-512F (`applies`); reads at[kk m + i ..+ r mr] and bt's k rows, writes
        // rows i .. i + r mr of out (the caller's contract).
        unsafe {
            super::avx512::tile_dispatch(
                (mr, r, 2),
                at.as_ptr().add(i),
                mr,
                &[0],
                (k, m),
                bt.as_ptr(),
                NB,
                out.wrapping_add(i * ldc),
                (mr * ldc, ldc),
            )
        };
        i += r * mr;
    }
}
