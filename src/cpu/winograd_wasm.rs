//! The wasm32 3x3 stride-1 conv as Winograd F(4x4, 3x3) (Lavin & Gray 2016): each 4x4 block of
//! output pixels ("tile") comes from a 6x6 patch of the input, and a channel pair's 144
//! multiplies per tile become 36, 2.25 per pixel instead of 9: 4x fewer multiply-adds in the
//! GEMMs, which are nearly all of a DnCNN's time (F(2x2, 3x3), which this replaced, had 2.25x
//! fewer). Per layer the weight is transformed once, U = G g G^T (in f64, stored f32; 36
//! matrices Cout x Cin, packed for `gemm_wasm::sgemm_rows_at`); per block of tiles (in L2) each
//! input channel's patches are transformed, V = B^T d B (36 matrices Cin x tiles), the 36 GEMMs
//! M = U V run on the same 4x8 register tile as the direct convs, and each output tile is
//! A^T M A, plus bias, then ReLU, written straight into y. The matrices are those of the native
//! `winograd_transforms.rs` (points 0, +-1, +-2 and infinity).
//!
//! The sums differ from the direct conv's by float rounding only (factors up to 8 in the
//! transforms: tests/wasm.rs checks against a direct sum in f64). That rounding depends on
//! where a pixel falls in its 4x4 tile, i.e. on its offset mod 4 from the crop's corner, and,
//! unlike F(2x2, 3x3)'s, on input pixels up to 3 away on one side (a tile's first output row
//! is summed from patch rows 0..=4, its last from rows 1..=5, where each needs 3): so a tiled
//! denoise gets the same pixels from every tile plan only when the crops keep those offsets and
//! the halo covers that reach too (`tiling::plan_aligned`, `tiling::rounding_radius`, used by
//! the page).
//!
//! Natively, an AVX-512 CPU runs the same transforms in `conv_winograd.rs`; other CPUs keep
//! the direct convs.

use core::arch::wasm32::*;

use super::conv::SharedOut;
use super::winograd_g::g6;
use super::{gemm_wasm, par_for, with_scratch};
use crate::backend::ConvGeom;

/// Output pixels per tile side (F(M x M, 3x3)), input pixels per patch side, and transform
/// points per tile.
const M: usize = 4;
const P: usize = M + 2;
const POINTS: usize = P * P;

/// Tiles per block at most: V and M (36 x channels x tiles floats each) of a 64-channel layer
/// take 504 KiB apiece at 56 (F(2x2, 3x3)'s 16 x 64 x 128: 512 KiB), in L2 with the packed
/// weight.
const BLOCK_TILES: usize = 56;

/// True where [`forward`] serves g: a 3x3 kernel at stride 1 and dilation 1, any padding, and
/// at least 16 input channels (as the direct convs' implicit GEMM: fewer leave the transforms'
/// cost above the multiplies saved).
pub fn applies(g: &ConvGeom) -> bool {
    g.kh == 3 && g.kw == 3 && g.sh == 1 && g.sw == 1 && g.dh == 1 && g.dw == 1 && g.cin >= 16
}

/// U = G g G^T of every (co, ci) 3x3 kernel of w (Cout, Cin, 3, 3), taken in f64 and stored
/// f32, as 36 matrices (Cout x Cin), matrix 6i + j holding U[i][j], each packed in
/// `gemm_wasm::pack_panels`' MR-row panels.
fn transform_weight(cout: usize, cin: usize, w: &[f32]) -> Vec<Vec<f32>> {
    let mut u = vec![0.0f32; POINTS * cout * cin];
    for (k, g) in w.chunks_exact(9).enumerate().take(cout * cin) {
        // G applied to each column x of g (rows ky), then G to each row of the result
        let cols: [[f64; P]; 3] =
            [0, 1, 2].map(|x| g6([g[x] as f64, g[3 + x] as f64, g[6 + x] as f64]));
        for i in 0..P {
            let row = g6([cols[0][i], cols[1][i], cols[2][i]]);
            for (j, v) in row.into_iter().enumerate() {
                u[(P * i + j) * cout * cin + k] = v as f32;
            }
        }
    }
    u.chunks_exact(cout * cin)
        .map(|m| gemm_wasm::pack_panels(cout, cin, (m, cin, 1)))
        .collect()
}

/// The blocks of tiles: (tile rows, tile columns) of the output, and per block `ty` tile rows
/// of `tx` tiles (`txp` = tx rounded up to 4 in V's layout), `ncol` columns of V and M.
struct Blocks {
    th: usize,
    tw: usize,
    ty: usize,
    tx: usize,
    txp: usize,
    ncol: usize,
}

impl Blocks {
    fn new(g: &ConvGeom) -> Blocks {
        let (th, tw) = (g.ho.div_ceil(M), g.wo.div_ceil(M));
        let tx = tw.div_ceil(tw.div_ceil(BLOCK_TILES));
        let txp = tx.next_multiple_of(4);
        let ty = (BLOCK_TILES / txp).clamp(1, th);
        let ty = th.div_ceil(th.div_ceil(ty));
        let ncol = (ty * txp).next_multiple_of(gemm_wasm::NR);
        Blocks {
            th,
            tw,
            ty,
            tx,
            txp,
            ncol,
        }
    }

    /// (row blocks, column blocks).
    fn count(&self) -> (usize, usize) {
        (self.th.div_ceil(self.ty), self.tw.div_ceil(self.tx))
    }
}

/// The 4x4 transpose of rows a, b, c, d: lane p of each into vector p.
#[inline(always)]
fn transpose4([a, b, c, d]: [v128; 4]) -> [v128; 4] {
    let t0 = i32x4_shuffle::<0, 4, 1, 5>(a, b);
    let t1 = i32x4_shuffle::<2, 6, 3, 7>(a, b);
    let t2 = i32x4_shuffle::<0, 4, 1, 5>(c, d);
    let t3 = i32x4_shuffle::<2, 6, 3, 7>(c, d);
    [
        i64x2_shuffle::<0, 2>(t0, t2),
        i64x2_shuffle::<1, 3>(t0, t2),
        i64x2_shuffle::<0, 2>(t1, t3),
        i64x2_shuffle::<1, 3>(t1, t3),
    ]
}

/// ph[p][j] = row[s + 4j + p] for p < 4, j < rlen (zero outside the row; all zero without a
/// row): the row's columns in 4 phases, so that tile column c's patch columns 0..6 are
/// ph[0..4][c] and ph[0..2][c + 1].
fn deinterleave4(row: Option<&[f32]>, s: isize, ph: [&mut [f32]; 4]) {
    let [p0, p1, p2, p3] = ph;
    let n = p0.len();
    assert!(p1.len() == n && p2.len() == n && p3.len() == n);
    let Some(row) = row else {
        for p in [p0, p1, p2, p3] {
            p.fill(0.0);
        }
        return;
    };
    let len = row.len() as isize;
    let at = |i: isize| {
        if i >= 0 && i < len {
            row[i as usize]
        } else {
            0.0
        }
    };
    let mut j = 0;
    while j < n {
        let i = s + 4 * j as isize;
        if j + 4 <= n && i >= 0 && i + 16 <= len {
            // SAFETY: row[i..i + 16] is inside the row, each phase holds j + 4 values
            unsafe {
                let q = row.as_ptr().add(i as usize) as *const v128;
                // lane p of the 4 vectors into phase p
                let t = transpose4([
                    v128_load(q),
                    v128_load(q.add(1)),
                    v128_load(q.add(2)),
                    v128_load(q.add(3)),
                ]);
                for (p, tp) in [&mut *p0, &mut *p1, &mut *p2, &mut *p3].into_iter().zip(t) {
                    v128_store(p.as_mut_ptr().add(j) as *mut v128, tp);
                }
            }
            j += 4;
        } else {
            p0[j] = at(i);
            p1[j] = at(i + 1);
            p2[j] = at(i + 2);
            p3[j] = at(i + 3);
            j += 1;
        }
    }
}

/// y (N, Cout, Ho, Wo) = conv(x, w) + bias, then ReLU when `relu`, for a g that [`applies`].
pub fn forward(g: &ConvGeom, x: &[f32], w: &[f32], bias: Option<&[f32]>, relu: bool) -> Vec<f32> {
    assert!(applies(g), "winograd: not a 3x3 stride-1 conv");
    let (cin, cout) = (g.cin, g.cout);
    let u = transform_weight(cout, cin, w);
    let bl = Blocks::new(g);
    let (rblocks, cblocks) = bl.count();
    let ncol = bl.ncol;
    let offs: Vec<u32> = (0..cin).map(|c| (c * ncol) as u32).collect();
    // V's and M's 36 matrices a line further apart than their size: at a multiple of 4 KiB,
    // the 36 streams of a transform would share one set of the L1 cache
    let (vs, ms) = (cin * ncol + 16, cout * ncol + 16);
    // per channel: the block's input rows in 4 phases (columns mod 4), rows of txp + 4
    let (in_rows, rlen) = (M * bl.ty + 2, bl.txp + 4);
    let n = g.n * g.y_per_sample();
    let mut y = Vec::with_capacity(n);
    let out = SharedOut(y.as_mut_ptr());
    par_for(g.n * rblocks * cblocks, |item| {
        let (i, rb, cb) = (
            item / (rblocks * cblocks),
            item / cblocks % rblocks,
            item % cblocks,
        );
        let (ty0, tx0) = (rb * bl.ty, cb * bl.tx);
        let (nty, ntx) = (bl.ty.min(bl.th - ty0), bl.tx.min(bl.tw - tx0));
        let xn = &x[i * g.x_per_sample()..][..g.x_per_sample()];
        let scratch = POINTS * (vs + ms) + 4 * in_rows * rlen;
        with_scratch(scratch, |buf| {
            let (v, rest) = buf.split_at_mut(POINTS * vs);
            let (m, rows) = rest.split_at_mut(POINTS * ms);
            // the columns past the block's tiles: zeros (their outputs are never read)
            for mat in v.chunks_exact_mut(vs) {
                for col in mat[..cin * ncol].chunks_exact_mut(ncol) {
                    col[nty * bl.txp..].fill(0.0);
                }
            }
            for ci in 0..cin {
                let plane = &xn[ci * g.h * g.w..][..g.h * g.w];
                for r in 0..M * nty + 2 {
                    let iy = (M * ty0 + r) as isize - g.ph as isize;
                    let row =
                        (iy >= 0 && iy < g.h as isize).then(|| &plane[iy as usize * g.w..][..g.w]);
                    let s = (M * tx0) as isize - g.pw as isize;
                    let (a, rest) = rows.split_at_mut(in_rows * rlen);
                    let (b, rest) = rest.split_at_mut(in_rows * rlen);
                    let (c, d) = rest.split_at_mut(in_rows * rlen);
                    let at = r * rlen..(r + 1) * rlen;
                    deinterleave4(
                        row,
                        s,
                        [
                            &mut a[at.clone()],
                            &mut b[at.clone()],
                            &mut c[at.clone()],
                            &mut d[at],
                        ],
                    );
                }
                // SAFETY: phase p (in_rows rlen floats apart in rows) holds rows 4r..4r+6 of
                // rlen = txp + 4 values, read at c + 1 + 4 <= txp + 1; V's matrix xi holds cin
                // rows of ncol >= nty txp columns.
                unsafe {
                    input_tiles(
                        rows,
                        in_rows * rlen,
                        rlen,
                        nty,
                        bl.txp,
                        v[ci * ncol..].as_mut_ptr(),
                        vs,
                    )
                };
            }
            for (xi, up) in u.iter().enumerate() {
                gemm_wasm::sgemm_rows_at(
                    cout,
                    ncol,
                    up,
                    &v[xi * vs..][..cin * ncol],
                    &offs,
                    (&mut m[xi * ms..][..cout * ncol], ncol, 1),
                );
            }
            for co in 0..cout {
                let bv = bias.map_or(0.0, |b| b[co]);
                let yc = out.at(i * g.y_per_sample() + co * g.ho * g.wo);
                for r in 0..nty {
                    let oy = M * (ty0 + r);
                    // SAFETY: this item alone writes output rows oy .. oy + 4 (those < ho),
                    // columns 4 tx0 .. 4 (tx0 + ntx) (< wo) of channel co; M holds 36
                    // matrices of cout x ncol (ms apart), r txp + c + 4 <= nty txp <= ncol.
                    unsafe {
                        output_tiles(
                            m[co * ncol + r * bl.txp..].as_ptr(),
                            ms,
                            bl.txp,
                            bv,
                            relu,
                            yc.add(oy * g.wo),
                            g.wo,
                            M * tx0,
                            (M * (tx0 + ntx)).min(g.wo),
                            (g.ho - oy).min(M),
                        )
                    };
                }
            }
        });
    });
    // SAFETY: the items wrote every tile of every (sample, channel): all of y
    unsafe { y.set_len(n) };
    y
}

/// B^T d along one axis, 4 tiles per vector.
/// B^T = [[4, 0, -5, 0, 1, 0], [0, -4, -4, 1, 1, 0], [0, 4, -4, -1, 1, 0],
///        [0, -2, -1, 2, 1, 0], [0, 2, -1, -2, 1, 0], [0, 4, 0, -5, 0, 1]].
#[inline(always)]
fn bt(d: [v128; P]) -> [v128; P] {
    let (two, four) = (f32x4_splat(2.0), f32x4_splat(4.0));
    // d4 - 4 d2 and d3 - 4 d1 give rows 1 and 2; d4 - d2 and 2 (d3 - d1) rows 3 and 4
    let p = f32x4_sub(d[4], f32x4_mul(four, d[2]));
    let q = f32x4_sub(d[3], f32x4_mul(four, d[1]));
    let r = f32x4_sub(d[4], d[2]);
    let s = f32x4_mul(two, f32x4_sub(d[3], d[1]));
    [
        // 4 d0 - 5 d2 + d4 as 4 d0 + (p - d2); 4 d1 - 5 d3 + d5 as (d5 - d3) - 4 (d3 - d1)
        f32x4_add(f32x4_mul(four, d[0]), f32x4_sub(p, d[2])),
        f32x4_add(p, q),
        f32x4_sub(p, q),
        f32x4_add(r, s),
        f32x4_sub(r, s),
        f32x4_sub(f32x4_sub(d[5], d[3]), f32x4_mul(two, s)),
    ]
}

/// A^T m along one axis, 4 tiles per vector.
/// A^T = [[1, 1, 1, 1, 1, 0], [0, 1, -1, 2, -2, 0], [0, 1, 1, 4, 4, 0], [0, 1, -1, 8, -8, 1]].
#[inline(always)]
fn at4(m: [v128; P]) -> [v128; M] {
    let (two, four, eight) = (f32x4_splat(2.0), f32x4_splat(4.0), f32x4_splat(8.0));
    let (s12, d12) = (f32x4_add(m[1], m[2]), f32x4_sub(m[1], m[2]));
    let (s34, d34) = (f32x4_add(m[3], m[4]), f32x4_sub(m[3], m[4]));
    [
        f32x4_add(f32x4_add(m[0], s12), s34),
        f32x4_add(d12, f32x4_mul(two, d34)),
        f32x4_add(s12, f32x4_mul(four, s34)),
        f32x4_add(f32x4_add(d12, f32x4_mul(eight, d34)), m[5]),
    ]
}

/// V = B^T d B of one channel's tiles in a block, 4 tiles per step: tile row r, column c reads
/// input rows 4r..4r+6 at patch columns 0..6 = phases 0..4 at c, phases 0, 1 at c + 1 (phase p
/// at `ph` + p `phase`, rows of `rlen`), and writes V's matrix 6i + j (`stride` floats apart,
/// from `v`) at column r txp + c.
///
/// SAFETY: each of the 4 phases holds 4 nty + 2 rows of rlen >= txp + 1 values; v + 35 stride
/// + nty txp is inside V.
#[allow(clippy::too_many_arguments)]
#[allow(clippy::needless_range_loop)] // i is a row of six arrays at once
unsafe fn input_tiles(
    ph: &[f32],
    phase: usize,
    rlen: usize,
    nty: usize,
    txp: usize,
    v: *mut f32,
    stride: usize,
) {
    let base = ph.as_ptr();
    for r in 0..nty {
        for c in (0..txp).step_by(4) {
            // patch column x: phase x % 4 at tile column c + x / 4
            let col = |k: usize, x: usize| {
                v128_load(base.add((x % 4) * phase + (M * r + k) * rlen + c + x / 4) as *const v128)
            };
            // cols[x][i]: column x transformed down its rows; then the row transform per row i
            let cols: [[v128; P]; P] =
                core::array::from_fn(|x| bt(core::array::from_fn(|k| col(k, x))));
            for i in 0..P {
                let vi = bt(core::array::from_fn(|x| cols[x][i]));
                for (j, val) in vi.into_iter().enumerate() {
                    v128_store(v.add((P * i + j) * stride + r * txp + c) as *mut v128, val);
                }
            }
        }
    }
}

/// One tile row of one output channel: y = A^T M A (+ bias, ReLU) for the tiles whose output
/// columns fall in x0..x1, 4 tiles per step, M's matrix 6i + j at `m` + (6i + j) stride; output
/// rows 0..nrows (<= 4) of the tiles are written.
///
/// SAFETY: m + 35 stride + txp is inside M; y's rows 0..nrows (`wo` apart), columns x0..x1,
/// are this caller's to write.
#[allow(clippy::too_many_arguments)]
#[allow(clippy::needless_range_loop)] // a is a row of six arrays at once
unsafe fn output_tiles(
    m: *const f32,
    stride: usize,
    txp: usize,
    bias: f32,
    relu: bool,
    y: *mut f32,
    wo: usize,
    x0: usize,
    x1: usize,
    nrows: usize,
) {
    let (bv, zero) = (f32x4_splat(bias), f32x4_splat(0.0));
    // max(0, v) as `relu0`: NaN becomes 0
    let fin = |v: v128| {
        let v = f32x4_add(v, bv);
        if relu {
            f32x4_pmax(zero, v)
        } else {
            v
        }
    };
    for c in (0..txp).step_by(4) {
        let xa = x0 + M * c;
        if xa >= x1 {
            break;
        }
        let ld = |xi: usize| v128_load(m.add(xi * stride + c) as *const v128);
        // s[j][a]: row a of A^T M at column j; then the columns
        let s: [[v128; M]; P] =
            core::array::from_fn(|j| at4(core::array::from_fn(|i| ld(P * i + j))));
        for a in 0..nrows {
            let yrow = y.add(a * wo);
            // p[b]: pixel b of 4 tiles; transposed, q[t]: the 4 pixels of tile t
            let p = at4(core::array::from_fn(|j| s[j][a])).map(fin);
            let q = transpose4(p);
            if xa + 16 <= x1 {
                for (t, qt) in q.into_iter().enumerate() {
                    v128_store(yrow.add(xa + 4 * t) as *mut v128, qt);
                }
            } else {
                let mut buf = [0.0f32; 16];
                for (t, qt) in q.into_iter().enumerate() {
                    v128_store(buf.as_mut_ptr().add(4 * t) as *mut v128, qt);
                }
                for (k, val) in buf.iter().enumerate().take(x1 - xa) {
                    *yrow.add(xa + k) = *val;
                }
            }
        }
    }
}
