//! The f64 reference that conv2d.rs's direct loop and conv_transpose2d.rs's definition share:
//! random inputs, the sums over a case's (x index, w index, y index) products, the bias of each
//! output channel, and the comparison against them.

use crate::common::*;

/// x, w, gy and the bias of one reference check (their lengths in that order), uniform in
/// [-1, 1) from seeds `seed` to `seed + 3`.
pub fn inputs([x, w, gy, bias]: [usize; 4], seed: u64) -> [Vec<f32>; 4] {
    [
        rnd(x, seed),
        rnd(w, seed + 1),
        rnd(gy, seed + 2),
        rnd(bias, seed + 3),
    ]
}

/// The sums in f64 over every product `each_product` visits: (y = sum x w without bias,
/// gx = sum gy w, gw = sum gy x).
pub fn reference_sums(
    each_product: impl FnOnce(&mut dyn FnMut(usize, usize, usize)),
    x: &[f32],
    w: &[f32],
    gy: &[f32],
) -> (Vec<f64>, Vec<f64>, Vec<f64>) {
    let (mut y, mut gx, mut gw) = (
        vec![0.0f64; gy.len()],
        vec![0.0f64; x.len()],
        vec![0.0f64; w.len()],
    );
    each_product(&mut |xi, wi, yi| {
        y[yi] += x[xi] as f64 * w[wi] as f64;
        gx[xi] += gy[yi] as f64 * w[wi] as f64;
        gw[wi] += gy[yi] as f64 * x[xi] as f64;
    });
    (y, gx, gw)
}

/// y (N, C, `plane` pixels) plus the bias of its channel, C = bias.len().
pub fn with_channel_bias(y: &[f64], bias: &[f32], plane: usize) -> Vec<f64> {
    y.iter()
        .enumerate()
        .map(|(i, v)| v + bias[(i / plane) % bias.len()] as f64)
        .collect()
}

/// Every element within 1e-5 of the largest |value| (at least 1).
pub fn close_f64(name: &str, got: &[f32], want: &[f64]) {
    assert_eq!(got.len(), want.len(), "{name}: length");
    let scale = want.iter().fold(1.0f64, |m, v| m.max(v.abs()));
    let worst = got
        .iter()
        .zip(want)
        .map(|(g, w)| (*g as f64 - w).abs())
        .fold(0.0f64, f64::max);
    assert!(
        worst <= 1e-5 * scale,
        "{name}: max |error| {worst} (largest value {scale})"
    );
}
