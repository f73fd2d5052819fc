//! G of Winograd F(4x4, 3x3) (Lavin & Gray 2016), shared by the native (`conv_winograd.rs`) and
//! the wasm (`winograd_wasm.rs`) 3x3 convs, which both take U = G g G^T in f64 (its sixths are
//! not exact in f32) and store it f32:
//!
//! G = [[1/4, 0, 0], [-1/6, -1/6, -1/6], [-1/6, 1/6, -1/6], [1/24, 1/12, 1/6],
//!      [1/24, -1/12, 1/6], [0, 0, 1]].

/// G h of one 3-tap kernel column or row.
pub(super) fn g6(h: [f64; 3]) -> [f64; 6] {
    let (a, b, c) = (h[0], h[1], h[2]);
    [
        a / 4.0,
        -(a + b + c) / 6.0,
        -(a - b + c) / 6.0,
        a / 24.0 + b / 12.0 + c / 6.0,
        a / 24.0 - b / 12.0 + c / 6.0,
        c,
    ]
}
