//! The transforms of Winograd F(4x4, 3x3) (Lavin & Gray 2016) for `conv_winograd.rs`: each
//! 4x4 block of output pixels from a 6x6 patch of the padded input, 36 products per channel
//! pair where the direct conv has 144. With the points 0, +-1, +-2 and infinity:
//!
//! B^T = [[4, 0, -5, 0, 1, 0], [0, -4, -4, 1, 1, 0], [0, 4, -4, -1, 1, 0],
//!        [0, -2, -1, 2, 1, 0], [0, 2, -1, -2, 1, 0], [0, 4, 0, -5, 0, 1]]
//! G   = [[1/4, 0, 0], [-1/6, -1/6, -1/6], [-1/6, 1/6, -1/6],
//!        [1/24, 1/12, 1/6], [1/24, -1/12, 1/6], [0, 0, 1]]
//! A^T = [[1, 1, 1, 1, 1, 0], [0, 1, -1, 2, -2, 0], [0, 1, 1, 4, 4, 0], [0, 1, -1, 8, -8, 1]]
//!
//! and y = A^T ((G g G^T) * (B^T d B)) A for one channel pair. The factors up to 8 cost some
//! rounding against F(2x2, 3x3), whose transforms hold 1/2 and 1 only; G (`winograd_g.rs`, shared
//! with the wasm convs) is taken in f64 so the weights add none of their own.

use super::winograd_g::g6;
use std::arch::x86_64::*;

/// Floats per vector.
const V: usize = 16;

/// U = G g G^T of every (ci, co) 3x3 kernel of w (Cout, Cin, 3, 3): (point t = 6 i + j, input
/// channel, output channel), zero past ci and co.
pub(super) fn weight_transform(
    w: &[f32],
    ci: usize,
    co: usize,
    (ci16, co16): (usize, usize),
) -> Vec<f32> {
    let mut u = vec![0.0f32; 36 * ci16 * co16];
    for o in 0..co {
        for c in 0..ci {
            let g = &w[(o * ci + c) * 9..][..9];
            // G applied to each column x of g (rows ky), then G to each row of the result
            let cols: [[f64; 6]; 3] =
                std::array::from_fn(|x| g6([g[x] as f64, g[3 + x] as f64, g[6 + x] as f64]));
            for i in 0..6 {
                let row = g6([cols[0][i], cols[1][i], cols[2][i]]);
                for (j, v) in row.into_iter().enumerate() {
                    u[((6 * i + j) * ci16 + c) * co16 + o] = v as f32;
                }
            }
        }
    }
    u
}

/// B^T d along one axis.
#[inline(always)]
unsafe fn bt(d: [__m512; 6]) -> [__m512; 6] {
    let (two, four, five) = (
        _mm512_set1_ps(2.0),
        _mm512_set1_ps(4.0),
        _mm512_set1_ps(5.0),
    );
    // d4 - 4 d2 and d3 - 4 d1 give rows 1 and 2; d4 - d2 and 2 (d3 - d1) rows 3 and 4
    let p = _mm512_fnmadd_ps(four, d[2], d[4]);
    let q = _mm512_fnmadd_ps(four, d[1], d[3]);
    let r = _mm512_sub_ps(d[4], d[2]);
    let s = _mm512_mul_ps(two, _mm512_sub_ps(d[3], d[1]));
    [
        _mm512_fmadd_ps(four, d[0], _mm512_fnmadd_ps(five, d[2], d[4])),
        _mm512_add_ps(p, q),
        _mm512_sub_ps(p, q),
        _mm512_add_ps(r, s),
        _mm512_sub_ps(r, s),
        _mm512_fmadd_ps(four, d[1], _mm512_fnmadd_ps(five, d[3], d[5])),
    ]
}

/// V = B^T d B of one tile, vectors over the channels: d is the tile's 6 x 6 padded input
/// pixels (rows `row` floats apart, pixels ci16 apart), point t = 6 i + j goes to v + t plane.
///
/// # Safety
/// AVX-512F; d holds the 6 x 6 pixels, v the 36 planes' ci16 floats.
#[target_feature(enable = "avx512f")]
#[allow(clippy::needless_range_loop)] // i is a row of six arrays at once
pub(super) unsafe fn input_tile(d: *const f32, row: usize, ci16: usize, v: *mut f32, plane: usize) {
    for c in (0..ci16).step_by(V) {
        let ld = |r: usize, x: usize| _mm512_loadu_ps(d.add(r * row + x * ci16 + c));
        // columns first: t[x] = B^T (column x)
        let t: [[__m512; 6]; 6] = std::array::from_fn(|x| bt(std::array::from_fn(|r| ld(r, x))));
        for i in 0..6 {
            let r = bt(std::array::from_fn(|x| t[x][i]));
            for (j, rv) in r.iter().enumerate() {
                _mm512_storeu_ps(v.add((6 * i + j) * plane + c), *rv);
            }
        }
    }
}

/// A^T m along one axis.
#[inline(always)]
unsafe fn at4(m: [__m512; 6]) -> [__m512; 4] {
    let (two, four, eight) = (
        _mm512_set1_ps(2.0),
        _mm512_set1_ps(4.0),
        _mm512_set1_ps(8.0),
    );
    let (s12, d12) = (_mm512_add_ps(m[1], m[2]), _mm512_sub_ps(m[1], m[2]));
    let (s34, d34) = (_mm512_add_ps(m[3], m[4]), _mm512_sub_ps(m[3], m[4]));
    [
        _mm512_add_ps(_mm512_add_ps(m[0], s12), s34),
        _mm512_fmadd_ps(two, d34, d12),
        _mm512_fmadd_ps(four, s34, s12),
        _mm512_add_ps(_mm512_fmadd_ps(eight, d34, d12), m[5]),
    ]
}

/// Y = A^T M A of one tile, vectors over the output channels: M's 36 points at m + t plane,
/// the 4 x 4 results stored at out + at[4 i + j] (usize::MAX: outside the output, dropped).
///
/// # Safety
/// AVX-512F; m holds the 36 planes' co16 floats, out co16 floats at each used offset.
#[target_feature(enable = "avx512f")]
#[allow(clippy::needless_range_loop)] // i is a row of six arrays at once
pub(super) unsafe fn output_tile(
    m: *const f32,
    plane: usize,
    co16: usize,
    out: *mut f32,
    at: &[usize; 16],
) {
    for o in (0..co16).step_by(V) {
        let ld = |t: usize| _mm512_loadu_ps(m.add(t * plane + o));
        // columns of M (point 6 i + j: i the row) first: z[j] = A^T (column j)
        let z: [[__m512; 4]; 6] =
            std::array::from_fn(|j| at4(std::array::from_fn(|i| ld(6 * i + j))));
        for i in 0..4 {
            let y = at4(std::array::from_fn(|j| z[j][i]));
            for (j, yv) in y.iter().enumerate() {
                let p = at[4 * i + j];
                if p != usize::MAX {
                    _mm512_storeu_ps(out.add(p + o), *yv);
                }
            }
        }
    }
}

/// dM = A dY A^T of one tile, vectors over the output channels: e is gy's 4 x 4 block (rows
/// `row` floats apart, pixels co16 apart), point t = 6 i + j goes to m + t plane.
///
/// # Safety
/// AVX-512F; e holds the 4 x 4 pixels, m the 36 planes' co16 floats.
#[target_feature(enable = "avx512f")]
#[allow(clippy::needless_range_loop)] // i is a row of four arrays at once
pub(super) unsafe fn grad_tile(e: *const f32, row: usize, co16: usize, m: *mut f32, plane: usize) {
    // A y along one axis: (y0, y0 + y1 + y2 + y3, y0 - y1 + y2 - y3, y0 + 2 y1 + 4 y2 + 8 y3,
    // y0 - 2 y1 + 4 y2 - 8 y3, y3)
    let a = |y: [__m512; 4]| {
        let (two, four, eight) = (
            _mm512_set1_ps(2.0),
            _mm512_set1_ps(4.0),
            _mm512_set1_ps(8.0),
        );
        let (ev, od) = (_mm512_add_ps(y[0], y[2]), _mm512_add_ps(y[1], y[3]));
        let ev2 = _mm512_fmadd_ps(four, y[2], y[0]);
        let od2 = _mm512_fmadd_ps(eight, y[3], _mm512_mul_ps(two, y[1]));
        [
            y[0],
            _mm512_add_ps(ev, od),
            _mm512_sub_ps(ev, od),
            _mm512_add_ps(ev2, od2),
            _mm512_sub_ps(ev2, od2),
            y[3],
        ]
    };
    for o in (0..co16).step_by(V) {
        let ld = |r: usize, x: usize| _mm512_loadu_ps(e.add(r * row + x * co16 + o));
        // columns first: p[j] = A (column j)
        let p: [[__m512; 6]; 4] = std::array::from_fn(|j| a(std::array::from_fn(|r| ld(r, j))));
        for i in 0..6 {
            let r = a(std::array::from_fn(|j| p[j][i]));
            for (j, rv) in r.iter().enumerate() {
                _mm512_storeu_ps(m.add((6 * i + j) * plane + o), *rv);
            }
        }
    }
}

/// G^T v of one 6-point column or row.
fn gt3(v: [f64; 6]) -> [f64; 3] {
    let (s12, d12) = (v[1] + v[2], v[1] - v[2]);
    let (s34, d34) = (v[3] + v[4], v[3] - v[4]);
    [
        v[0] / 4.0 - s12 / 6.0 + s34 / 24.0,
        -d12 / 6.0 + d34 / 12.0,
        -s12 / 6.0 + s34 / 6.0 + v[5],
    ]
}

/// gw (Cout, Cin, 3, 3) = G^T dU G per (o, c) of dU (36 points, ci16, co16), in f64.
pub(super) fn grad_weights(
    du: &[f32],
    ci: usize,
    co: usize,
    (ci16, co16): (usize, usize),
) -> Vec<f32> {
    let mut gw = vec![0.0f32; co * ci * 9];
    for o in 0..co {
        for c in 0..ci {
            let d = |t: usize| du[(t * ci16 + c) * co16 + o] as f64;
            // columns j of G^T D, then each row of that times G
            let cols: [[f64; 3]; 6] =
                std::array::from_fn(|j| gt3(std::array::from_fn(|i| d(6 * i + j))));
            for ky in 0..3 {
                let row = gt3(std::array::from_fn(|j| cols[j][ky]));
                for (kx, v) in row.into_iter().enumerate() {
                    gw[(o * ci + c) * 9 + ky * 3 + kx] = v as f32;
                }
            }
        }
    }
    gw
}

#[cfg(test)]
mod tests {
    /// The three matrices compute the 4-output correlation of a 6-sample signal with a 3-tap
    /// kernel exactly (f64, one axis): A^T ((G g) * (B^T d)) = [sum_k d[i + k] g[k]].
    #[test]
    fn one_axis_is_the_correlation() {
        let bt = |d: [f64; 6]| {
            [
                4.0 * d[0] - 5.0 * d[2] + d[4],
                -4.0 * d[1] - 4.0 * d[2] + d[3] + d[4],
                4.0 * d[1] - 4.0 * d[2] - d[3] + d[4],
                -2.0 * d[1] - d[2] + 2.0 * d[3] + d[4],
                2.0 * d[1] - d[2] - 2.0 * d[3] + d[4],
                4.0 * d[1] - 5.0 * d[3] + d[5],
            ]
        };
        let at = |m: [f64; 6]| {
            [
                m[0] + m[1] + m[2] + m[3] + m[4],
                m[1] - m[2] + 2.0 * m[3] - 2.0 * m[4],
                m[1] + m[2] + 4.0 * m[3] + 4.0 * m[4],
                m[1] - m[2] + 8.0 * m[3] - 8.0 * m[4] + m[5],
            ]
        };
        let d = [0.3, -1.2, 2.5, 0.7, -0.4, 1.9];
        let g = [0.8, -0.35, 1.6];
        let (u, v) = (super::g6(g), bt(d));
        let y = at(std::array::from_fn(|t| u[t] * v[t]));
        for (i, yi) in y.iter().enumerate() {
            let want: f64 = (0..3).map(|k| d[i + k] * g[k]).sum();
            assert!((yi - want).abs() < 1e-12, "output {i}: {yi} vs {want}");
        }
    }
}
