//! The wasm32 GEMM: packed panels and a 4x8 register tile in simd128.
//!
//! `c = a * b (+ c)` for strided matrices, BLIS-style: the k axis is cut in blocks of at most
//! `KC`, the columns of b in blocks of at most `NC`; each (kc x nc) block of b is packed into
//! `NR`-wide column panels and each (mc x kc) block of a into `MR`-row panels (zero-padded at
//! the edges), so the microkernel reads both with unit stride whatever the caller's layout
//! (transposed operands cost one packing pass, nothing in the kernel).
//!
//! The microkernel holds an MR x NR tile of c in 8 v128 registers (4 rows x 2 vectors of 4)
//! and, per k, loads 2 vectors of b and splats one value of a per row. V8 maps wasm locals to
//! the 16 xmm registers of x86-64; tiles of 4x16 and 8x8 (16 accumulators) spill, and in
//! V8's CPU time (Node 20) on this machine's Xeon 4x8 ran ahead of 6x8, 4x16 and 8x8 (2026-12-06, a busy
//! machine: differences of 10-40%, noisy). With relaxed SIMD (the `relaxed-simd` target
//! feature, the page's second build) the multiply-add is one fused `f32x4.relaxed_madd`;
//! without it, a multiply and an add.
//!
//! The stride-1 convs (`conv::forward_taps`) use the same tile as an implicit GEMM,
//! [`sgemm_rows_at`]: B's rows are runs of the padded input read in place at each (channel,
//! tap) offset, the whole k (Cin x taps) in one pass per tile, so nothing of B is packed and
//! c is written once (in V8 on this machine's Xeon ~37 GFLOP/s for a 64->64 3x3 layer in
//! CPU time, about the 128-bit FMA peak, against ~31 for the per-tap GEMMs it replaced).
//!
//! A scalar twin (`sgemm_reference`) is the test's reference (tests/wasm.rs).

use core::arch::wasm32::*;
use std::cell::RefCell;

/// Rows of the register tile.
pub const MR: usize = 4;
/// Columns of the register tile (NV vectors of 4 lanes).
pub const NR: usize = 8;
const NV: usize = NR / 4;
/// Most k per packed block (a kc x NR panel of b is 8 KiB at 256: it stays in L1).
const KC: usize = 256;
/// Most rows of a per packed block (MC x KC of a: 128 KiB, in L2).
const MC: usize = 128;
/// Most columns of b per packed block (KC x NC: 1 MiB, in L2/L3).
const NC: usize = 1024;

/// A matrix view: (values, row stride, column stride).
pub type View<'a> = (&'a [f32], usize, usize);
pub type ViewMut<'a> = (&'a mut [f32], usize, usize);

thread_local! {
    /// Packing buffers, reused across calls (no allocation per GEMM in steady state).
    static PACK: RefCell<(Vec<f32>, Vec<f32>)> = const { RefCell::new((Vec::new(), Vec::new())) };
}

/// `c (m x n) = a (m x k) * b (k x n)`, plus the old c when `acc`; k > 0. Every index
/// (m-1, n-1, k-1) along the given strides must be inside the slices (checked).
pub fn sgemm(m: usize, n: usize, k: usize, a: View, b: View, c: ViewMut, acc: bool) {
    if m == 0 || n == 0 {
        return;
    }
    let last = |r: usize, cc: usize, rs: usize, cs: usize| (r - 1) * rs + (cc - 1) * cs;
    assert!(c.0.len() > last(m, n, c.1, c.2), "gemm_wasm: c too small");
    // SAFETY: c's bounds were checked and it is borrowed mutably
    unsafe { sgemm_raw(m, n, k, a, b, (c.0.as_mut_ptr(), c.1, c.2), acc) }
}

/// [`sgemm`] writing through a raw pointer (the CPU backend's `sgemm_ptr`: callers whose work
/// items fill disjoint parts of one output).
///
/// # Safety
/// `c` must be valid for reads and writes at every (i * rs + j * cs), i < m, j < n, and not
/// be accessed by anything else during the call.
pub unsafe fn sgemm_raw(
    m: usize,
    n: usize,
    k: usize,
    a: View,
    b: View,
    c: (*mut f32, usize, usize),
    acc: bool,
) {
    if m == 0 || n == 0 {
        return;
    }
    let last = |r: usize, cc: usize, rs: usize, cs: usize| (r - 1) * rs + (cc - 1) * cs;
    assert!(k > 0, "gemm_wasm: k = 0");
    assert!(a.0.len() > last(m, k, a.1, a.2), "gemm_wasm: a too small");
    assert!(b.0.len() > last(k, n, b.1, b.2), "gemm_wasm: b too small");
    PACK.with(|p| {
        // a re-entrant call (none exists) would find the buffers borrowed: use fresh ones
        match p.try_borrow_mut() {
            Ok(mut bufs) => {
                let (pa, pb) = &mut *bufs;
                unsafe { blocked(m, n, k, a, b, c, acc, pa, pb) }
            }
            Err(_) => unsafe { blocked(m, n, k, a, b, c, acc, &mut Vec::new(), &mut Vec::new()) },
        }
    });
}

/// The a operand of [`sgemm_rows_at`]: a (m x k) in MR-row panels, k-major, zero rows past
/// m (packed once per call of a conv layer, not once per block of its output).
pub fn pack_panels(m: usize, k: usize, a: View) -> Vec<f32> {
    let mut out = vec![0.0f32; m.div_ceil(MR) * MR * k];
    if m > 0 && k > 0 {
        let last = (m - 1) * a.1 + (k - 1) * a.2;
        assert!(a.0.len() > last, "gemm_wasm: a too small");
        pack_a(a, 0, m, 0, k, &mut out);
    }
    out
}

/// `c (m x n) = a (m x k) * B` with k = `offs.len()`, a packed by [`pack_panels`], and row p
/// of B the n values from `b[offs[p]]` on, read in place: the implicit GEMM of a stride-1
/// conv, whose row (ci, tap) of im2col is a run of the padded input at that tap's offset.
/// One pass over the whole k per register tile writes c once; the per-tap GEMMs it replaces
/// packed B and read, added and stored all of c once per tap.
pub fn sgemm_rows_at(m: usize, n: usize, pa: &[f32], b: &[f32], offs: &[u32], c: ViewMut) {
    let k = offs.len();
    if m == 0 || n == 0 {
        return;
    }
    assert!(k > 0, "gemm_wasm: k = 0");
    assert!(
        pa.len() >= m.div_ceil(MR) * MR * k,
        "gemm_wasm: packed a too small"
    );
    let reach = offs.iter().map(|&o| o as usize).max().unwrap_or(0) + n;
    assert!(
        b.len() >= reach,
        "gemm_wasm: b too small for its row offsets"
    );
    let (cv, rs, cs) = c;
    assert!(
        cv.len() > (m - 1) * rs + (n - 1) * cs,
        "gemm_wasm: c too small"
    );
    let (cp, bp) = (cv.as_mut_ptr(), b.as_ptr());
    // the last columns read a zero-padded copy of their panel (row p at p * NR), so that no
    // read passes b's end; full strips read b in place at offs[p] + j0
    let (mut tail, mut tail_offs) = (Vec::new(), Vec::new());
    for j0 in (0..n).step_by(NR) {
        let cols = NR.min(n - j0);
        if cols < NR {
            tail.resize(k * NR, 0.0f32);
            tail_offs.extend((0..k as u32).map(|p| p * NR as u32));
            for (p, row) in tail.chunks_exact_mut(NR).enumerate() {
                let s = offs[p] as usize + j0;
                row[..cols].copy_from_slice(&b[s..s + cols]);
            }
        }
        let (base, op) = if cols == NR {
            (bp.wrapping_add(j0), offs.as_ptr())
        } else {
            (tail.as_ptr(), tail_offs.as_ptr())
        };
        for i0 in (0..m).step_by(MR) {
            let ap = pa[i0 * k..].as_ptr();
            let (rows, at) = (MR.min(m - i0), i0 * rs + j0 * cs);
            // SAFETY: the asserts above: offs[p] + j0 + NR <= b.len() on full strips, the
            // tail panel holds k*NR values, pa holds this panel's k*MR, c holds the tile.
            unsafe {
                let brow = |p: usize| base.add(*op.add(p) as usize);
                tile_rows(k, ap, brow, cp.add(at), rs, cs, rows, cols, false);
            }
        }
    }
}

/// Split `len` in the fewest blocks of at most `most`, of near-equal size (so k = 576 is two
/// blocks of 288, not 256 + 256 + 64).
fn block_size(len: usize, most: usize, align: usize) -> usize {
    let blocks = len.div_ceil(most);
    len.div_ceil(blocks).div_ceil(align) * align
}

#[allow(clippy::too_many_arguments)]
unsafe fn blocked(
    m: usize,
    n: usize,
    k: usize,
    a: View,
    b: View,
    c: (*mut f32, usize, usize),
    acc: bool,
    pa: &mut Vec<f32>,
    pb: &mut Vec<f32>,
) {
    let (cs, crs, ccs) = c;
    let kc_max = block_size(k, KC, 1);
    let mc_max = block_size(m, MC, MR);
    let nc_max = block_size(n, NC, NR);
    pa.resize(mc_max.div_ceil(MR) * MR * kc_max, 0.0);
    pb.resize(nc_max.div_ceil(NR) * NR * kc_max, 0.0);
    let mut jc = 0;
    while jc < n {
        let nc = nc_max.min(n - jc);
        let mut pc = 0;
        while pc < k {
            let kc = kc_max.min(k - pc);
            pack_b(b, pc, kc, jc, nc, pb);
            // the first k block overwrites c unless the caller accumulates
            let add = acc || pc > 0;
            let mut ic = 0;
            while ic < m {
                let mc = mc_max.min(m - ic);
                pack_a(a, ic, mc, pc, kc, pa);
                for jr in (0..nc).step_by(NR) {
                    let bp = &pb[jr * kc..(jr + NR) * kc];
                    for ir in (0..mc).step_by(MR) {
                        let ap = &pa[ir * kc..(ir + MR) * kc];
                        let (rows, cols) = (MR.min(mc - ir), NR.min(nc - jr));
                        let off = (ic + ir) * crs + (jc + jr) * ccs;
                        let (ap, bp) = (ap.as_ptr(), bp.as_ptr());
                        // SAFETY: the tile's elements are in c (the caller's contract); ap and
                        // bp hold kc*MR and kc*NR values (the panels' slices above).
                        unsafe {
                            let brow = |p: usize| bp.add(p * NR);
                            tile_rows(kc, ap, brow, cs.add(off), crs, ccs, rows, cols, add)
                        };
                    }
                }
                ic += mc;
            }
            pc += kc;
        }
        jc += nc;
    }
}

/// Pack rows ic..ic+mc, columns pc..pc+kc of a into MR-row panels: panel i holds, for each p,
/// the MR values a[ic + i*MR + r, pc + p] (zero past the last row).
fn pack_a(a: View, ic: usize, mc: usize, pc: usize, kc: usize, out: &mut [f32]) {
    let (av, rs, cs) = a;
    for (pi, panel) in out[..mc.div_ceil(MR) * MR * kc]
        .chunks_exact_mut(MR * kc)
        .enumerate()
    {
        let r0 = ic + pi * MR;
        let rows = MR.min(ic + mc - r0);
        if cs == 1 && rows == MR {
            // rows of a are contiguous: read MR rows side by side
            let base = r0 * rs + pc;
            for (p, dst) in panel.chunks_exact_mut(MR).enumerate() {
                for (r, d) in dst.iter_mut().enumerate() {
                    *d = av[base + r * rs + p];
                }
            }
        } else {
            for (p, dst) in panel.chunks_exact_mut(MR).enumerate() {
                for (r, d) in dst.iter_mut().enumerate() {
                    *d = if r < rows {
                        av[(r0 + r) * rs + (pc + p) * cs]
                    } else {
                        0.0
                    };
                }
            }
        }
    }
}

/// Pack rows pc..pc+kc, columns jc..jc+nc of b into NR-column panels: panel j holds, for each
/// p, the NR values b[pc + p, jc + j*NR + q] (zero past the last column).
fn pack_b(b: View, pc: usize, kc: usize, jc: usize, nc: usize, out: &mut [f32]) {
    let (bv, rs, cs) = b;
    for (pj, panel) in out[..nc.div_ceil(NR) * NR * kc]
        .chunks_exact_mut(NR * kc)
        .enumerate()
    {
        let c0 = jc + pj * NR;
        let cols = NR.min(jc + nc - c0);
        if cs == 1 && cols == NR {
            for (p, dst) in panel.chunks_exact_mut(NR).enumerate() {
                let s = (pc + p) * rs + c0;
                dst.copy_from_slice(&bv[s..s + NR]);
            }
        } else if rs == 1 && cols == NR {
            // b transposed (columns contiguous): walk each column down k
            for q in 0..NR {
                let col = &bv[(c0 + q) * cs + pc..(c0 + q) * cs + pc + kc];
                for (p, v) in col.iter().enumerate() {
                    panel[p * NR + q] = *v;
                }
            }
        } else {
            for (p, dst) in panel.chunks_exact_mut(NR).enumerate() {
                for (q, d) in dst.iter_mut().enumerate() {
                    *d = if q < cols {
                        bv[(pc + p) * rs + (c0 + q) * cs]
                    } else {
                        0.0
                    };
                }
            }
        }
    }
}

/// acc + a * b, fused where the build has relaxed SIMD.
#[inline(always)]
fn madd(a: v128, b: v128, acc: v128) -> v128 {
    #[cfg(target_feature = "relaxed-simd")]
    {
        f32x4_relaxed_madd(a, b, acc)
    }
    #[cfg(not(target_feature = "relaxed-simd"))]
    {
        f32x4_add(f32x4_mul(a, b), acc)
    }
}

/// One MR x NR tile of c (rows x cols of it valid) += or = ap (kc x MR) * B, where row p of
/// B's NR columns starts at `brow(p)` (a packed panel, or a row of the caller's matrix read
/// in place). The accumulators are indexed plainly (no iterators) so that LLVM keeps all
/// MR x NV of them in registers.
///
/// SAFETY: c + (rows-1)*rs + (cols-1)*cs is a valid f32 of the caller's c; ap holds kc*MR
/// values and brow(p) NR values for every p < kc.
#[allow(clippy::too_many_arguments, clippy::needless_range_loop)]
#[inline(always)]
unsafe fn tile_rows(
    kc: usize,
    ap: *const f32,
    brow: impl Fn(usize) -> *const f32,
    c: *mut f32,
    rs: usize,
    cs: usize,
    rows: usize,
    cols: usize,
    add: bool,
) {
    let z = f32x4_splat(0.0);
    let mut t = [[z; NV]; MR];
    let mut pa = ap;
    for p in 0..kc {
        let pb = brow(p) as *const v128;
        let mut b = [z; NV];
        for q in 0..NV {
            b[q] = v128_load(pb.add(q));
        }
        for r in 0..MR {
            let av = v128_load32_splat(pa.add(r) as *const u32);
            for q in 0..NV {
                t[r][q] = madd(av, b[q], t[r][q]);
            }
        }
        pa = pa.add(MR);
    }
    if rows == MR && cols == NR && cs == 1 {
        for (r, row) in t.iter().enumerate() {
            let p = c.add(r * rs) as *mut v128;
            for (q, v) in row.iter().enumerate() {
                let v = if add {
                    f32x4_add(*v, v128_load(p.add(q)))
                } else {
                    *v
                };
                v128_store(p.add(q), v);
            }
        }
    } else {
        let mut buf = [0.0f32; MR * NR];
        for (r, row) in t.iter().enumerate() {
            for (q, v) in row.iter().enumerate() {
                v128_store(buf.as_mut_ptr().add(r * NR + 4 * q) as *mut v128, *v);
            }
        }
        for r in 0..rows {
            for q in 0..cols {
                let p = c.add(r * rs + q * cs);
                *p = if add {
                    *p + buf[r * NR + q]
                } else {
                    buf[r * NR + q]
                };
            }
        }
    }
}

/// The scalar reference of `sgemm` (f64 sums), for the tests.
pub fn sgemm_reference(m: usize, n: usize, k: usize, a: View, b: View, c: ViewMut, acc: bool) {
    let (cv, crs, ccs) = c;
    for i in 0..m {
        for j in 0..n {
            let mut s = 0.0f64;
            for p in 0..k {
                s += a.0[i * a.1 + p * a.2] as f64 * b.0[p * b.1 + j * b.2] as f64;
            }
            let d = &mut cv[i * crs + j * ccs];
            *d = if acc {
                (*d as f64 + s) as f32
            } else {
                s as f32
            };
        }
    }
}
