//! The wasm32 3x3 stride-1 conv as Winograd F(2x2, 3x3) (Lavin & Gray 2016): each 2x2 block of
//! output pixels ("tile") comes from a 4x4 patch of the input, and a channel's 9 multiplies per
//! output pixel become 16 per tile, 4 per pixel: 2.25x fewer multiply-adds in the GEMMs, which
//! are nearly all of a DnCNN's time. Per layer the weight is transformed once, U = G g G^T
//! (16 matrices Cout x Cin, packed for `gemm_wasm::sgemm_rows_at`); per block of tiles (in L2)
//! each input channel's patches are transformed, V = B^T d B (16 matrices Cin x tiles), the 16
//! GEMMs M = U V run on the same 4x8 register tile as the direct convs, and each output
//! tile is A^T M A, plus bias, then ReLU, written straight into y.
//!
//! The sums differ from the direct conv's by float rounding only (the transforms hold 1/2,
//! 1 and -1: a few ulps; tests/wasm.rs checks against a direct sum in f64). That rounding
//! depends on where a pixel falls in its 2x2 tile, i.e. on the parity of its offset from the
//! crop's corner, so a tiled denoise gets the same pixels from every tile plan only when the
//! crops keep that parity (`tiling::plan_aligned`, used by the page).
//!
//! Natively, an AVX-512 CPU runs the same transforms in `conv_winograd.rs`; other CPUs keep
//! the direct convs.

use core::arch::wasm32::*;

use super::conv::SharedOut;
use super::{gemm_wasm, par_for, with_scratch};
use crate::backend::ConvGeom;

/// Tiles per block: V and M (16 x channels x tiles floats each) of a 64-channel layer take
/// 512 KiB apiece at 128, in L2 with the packed weight.
const BLOCK_TILES: usize = 128;

/// True where [`forward`] serves g: a 3x3 kernel at stride 1 and dilation 1, any padding, and
/// at least 16 input channels (as the direct convs' implicit GEMM: fewer leave the transforms'
/// cost above the multiplies saved).
pub fn applies(g: &ConvGeom) -> bool {
    g.kh == 3 && g.kw == 3 && g.sh == 1 && g.sw == 1 && g.dh == 1 && g.dw == 1 && g.cin >= 16
}

/// U = G g G^T of every (co, ci) 3x3 kernel of w (Cout, Cin, 3, 3), as 16 matrices (Cout x Cin),
/// matrix 4i + j holding U[i][j], each packed in `gemm_wasm::pack_panels`' MR-row panels.
/// G = [[1, 0, 0], [1/2, 1/2, 1/2], [1/2, -1/2, 1/2], [0, 0, 1]].
fn transform_weight(cout: usize, cin: usize, w: &[f32]) -> Vec<Vec<f32>> {
    let mut u = vec![0.0f32; 16 * cout * cin];
    let g3 = |a: f32, b: f32, c: f32| [a, 0.5 * (a + b + c), 0.5 * (a - b + c), c];
    for (k, g) in w.chunks_exact(9).enumerate().take(cout * cin) {
        // rows of G g (4 x 3), then each row times G^T
        let cols: [[f32; 4]; 3] = [0, 1, 2].map(|x| g3(g[x], g[3 + x], g[6 + x]));
        for i in 0..4 {
            let row = g3(cols[0][i], cols[1][i], cols[2][i]);
            for (j, v) in row.into_iter().enumerate() {
                u[(4 * i + j) * cout * cin + k] = v;
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
        let (th, tw) = (g.ho.div_ceil(2), g.wo.div_ceil(2));
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

/// e[j] = row[s + 2j], o[j] = row[s + 2j + 1] for j < e.len() (zero outside the row; all zero
/// without a row).
fn deinterleave(row: Option<&[f32]>, s: isize, e: &mut [f32], o: &mut [f32]) {
    let Some(row) = row else {
        e.fill(0.0);
        o.fill(0.0);
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
    let n = e.len();
    let mut j = 0;
    while j < n {
        let i = s + 2 * j as isize;
        if j + 4 <= n && i >= 0 && i + 8 <= len {
            // SAFETY: row[i..i + 8] is inside the row, e and o hold j + 4 values
            unsafe {
                let p = row.as_ptr().add(i as usize) as *const v128;
                let (a, b) = (v128_load(p), v128_load(p.add(1)));
                v128_store(
                    e.as_mut_ptr().add(j) as *mut v128,
                    i32x4_shuffle::<0, 2, 4, 6>(a, b),
                );
                v128_store(
                    o.as_mut_ptr().add(j) as *mut v128,
                    i32x4_shuffle::<1, 3, 5, 7>(a, b),
                );
            }
            j += 4;
        } else {
            e[j] = at(i);
            o[j] = at(i + 1);
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
    // V's and M's 16 matrices a line further apart than their size: at a multiple of 4 KiB,
    // the 16 streams of a transform would share one set of the L1 cache
    let (vs, ms) = (cin * ncol + 16, cout * ncol + 16);
    // per channel: the block's input rows deinterleaved, even and odd columns (rows of txp + 4)
    let (in_rows, rlen) = (2 * bl.ty + 2, bl.txp + 4);
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
        let scratch = 16 * (vs + ms) + 2 * in_rows * rlen;
        with_scratch(scratch, |buf| {
            let (v, rest) = buf.split_at_mut(16 * vs);
            let (m, rows) = rest.split_at_mut(16 * ms);
            // the columns past the block's tiles: zeros (their outputs are never read)
            for mat in v.chunks_exact_mut(vs) {
                for col in mat[..cin * ncol].chunks_exact_mut(ncol) {
                    col[nty * bl.txp..].fill(0.0);
                }
            }
            for ci in 0..cin {
                let plane = &xn[ci * g.h * g.w..][..g.h * g.w];
                let (ev, od) = rows.split_at_mut(in_rows * rlen);
                for r in 0..2 * nty + 2 {
                    let iy = (2 * ty0 + r) as isize - g.ph as isize;
                    let row =
                        (iy >= 0 && iy < g.h as isize).then(|| &plane[iy as usize * g.w..][..g.w]);
                    let s = 2 * tx0 as isize - g.pw as isize;
                    deinterleave(
                        row,
                        s,
                        &mut ev[r * rlen..][..rlen],
                        &mut od[r * rlen..][..rlen],
                    );
                }
                // SAFETY: rows 2r..2r+4 of ev/od hold rlen = txp + 4 values, read at c + 1 + 4
                // <= txp + 1; V's matrix xi holds cin rows of ncol >= nty txp columns.
                unsafe { input_tiles(ev, od, rlen, nty, bl.txp, v[ci * ncol..].as_mut_ptr(), vs) };
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
                    let oy = 2 * (ty0 + r);
                    // SAFETY: this item alone writes output rows oy, oy + 1 (< ho), columns
                    // 2 tx0 .. 2 (tx0 + ntx) (< wo) of channel co; M holds 16 matrices of
                    // cout x ncol (ms apart), r txp + c + 4 <= nty txp <= ncol.
                    unsafe {
                        output_tiles(
                            m[co * ncol + r * bl.txp..].as_ptr(),
                            ms,
                            bl.txp,
                            bv,
                            relu,
                            yc.add(oy * g.wo),
                            g.wo,
                            2 * tx0,
                            (2 * (tx0 + ntx)).min(g.wo),
                            oy + 1 < g.ho,
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

/// V = B^T d B of one channel's tiles in a block, 4 tiles per step: tile row r, column c reads
/// input rows 2r..2r+4 (`ev`/`od`: their even and odd columns, rows of `rlen`) at columns
/// c, c + 1, and writes V's matrix 4i + j (`stride` floats apart, from `v`) at column r txp + c.
/// B^T = [[1, 0, -1, 0], [0, 1, 1, 0], [0, -1, 1, 0], [0, 1, 0, -1]].
///
/// SAFETY: ev and od hold 2 nty + 2 rows of rlen >= txp + 5 values; v + 15 stride + nty txp
/// is inside V.
#[allow(clippy::too_many_arguments)]
unsafe fn input_tiles(
    ev: &[f32],
    od: &[f32],
    rlen: usize,
    nty: usize,
    txp: usize,
    v: *mut f32,
    stride: usize,
) {
    let bt = |d: [v128; 4]| {
        [
            f32x4_sub(d[0], d[2]),
            f32x4_add(d[1], d[2]),
            f32x4_sub(d[2], d[1]),
            f32x4_sub(d[1], d[3]),
        ]
    };
    for r in 0..nty {
        for c in (0..txp).step_by(4) {
            // the 4 columns of each patch row k: even c, odd c, even c + 1, odd c + 1
            let col = |k: usize, odd: bool, next: usize| {
                let src = if odd { od } else { ev };
                v128_load(src.as_ptr().add((2 * r + k) * rlen + c + next) as *const v128)
            };
            let cols = [(false, 0), (true, 0), (false, 1), (true, 1)]
                .map(|(odd, nx)| bt([0, 1, 2, 3].map(|k| col(k, odd, nx))));
            // cols[j][i]: row-transformed column j; now the column transform per row i
            for i in 0..4 {
                let vi = bt([cols[0][i], cols[1][i], cols[2][i], cols[3][i]]);
                for (j, val) in vi.into_iter().enumerate() {
                    v128_store(v.add((4 * i + j) * stride + r * txp + c) as *mut v128, val);
                }
            }
        }
    }
}

/// One tile row of one output channel: y = A^T M A (+ bias, ReLU) for the tiles whose output
/// columns fall in x0..x1, 4 tiles per step, M's matrix 4i + j at `m` + (4i + j) stride.
/// A^T = [[1, 1, 1, 0], [0, 1, -1, -1]]. The second output row is written when `second`.
///
/// SAFETY: m + 15 stride + txp is inside M; y's rows 0 and 1 (when `second`), columns
/// x0..x1, are this caller's to write.
#[allow(clippy::too_many_arguments)]
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
    second: bool,
) {
    let at = |a: [v128; 4]| {
        [
            f32x4_add(f32x4_add(a[0], a[1]), a[2]),
            f32x4_sub(f32x4_sub(a[1], a[2]), a[3]),
        ]
    };
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
        let xa = x0 + 2 * c;
        if xa >= x1 {
            break;
        }
        let ld = |xi: usize| v128_load(m.add(xi * stride + c) as *const v128);
        let s: [[v128; 2]; 4] = [0, 1, 2, 3].map(|j| at([0, 1, 2, 3].map(|i| ld(4 * i + j))));
        // s[j][a]: row a of A^T M at column j; then the columns
        for (a, yrow) in [(0, y), (1, y.add(wo))] {
            if a == 1 && !second {
                break;
            }
            let [p0, p1] = at([s[0][a], s[1][a], s[2][a], s[3][a]]).map(fin);
            // pixels 2t, 2t + 1 of 4 tiles side by side
            let lo = i32x4_shuffle::<0, 4, 1, 5>(p0, p1);
            let hi = i32x4_shuffle::<2, 6, 3, 7>(p0, p1);
            if xa + 8 <= x1 {
                v128_store(yrow.add(xa) as *mut v128, lo);
                v128_store(yrow.add(xa + 4) as *mut v128, hi);
            } else {
                let mut buf = [0.0f32; 8];
                v128_store(buf.as_mut_ptr() as *mut v128, lo);
                v128_store(buf.as_mut_ptr().add(4) as *mut v128, hi);
                for (k, val) in buf.iter().enumerate().take(x1 - xa) {
                    *yrow.add(xa + k) = *val;
                }
            }
        }
    }
}
