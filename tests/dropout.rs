//! Dropout (`nnlab::nn::dropout`, composed of `random`, `affine`, `Sign` and `mul`), on every
//! backend: the identity in evaluation mode and at rate 0; in training mode every element is 0
//! or x / (1 - p), about 1 - p of them kept, the same seed the same mask; the gradient is the
//! mask times the output gradient (against central differences of the forward at a fixed seed);
//! the GPU draws the CPU's mask exactly; bad rates are errors. And a discriminator with dropout:
//! its D file keeps the rate in the metadata, evaluation mode is deterministic, training mode
//! draws a fresh mask at every forward.

#[macro_use]
#[path = "common/mod.rs"]
mod common;

use common::HostIo;
use nnlab::autodiff::Graph;
use nnlab::backend::Backend;
use nnlab::models::gan::{self, Discriminator, GanArch, GanConfig, PIXELS};
use nnlab::nn::{dropout, Dropout, Module};
use nnlab::rng;

/// dropout(x) in a graph in training (or evaluation) mode, and the gradient of sum(w * y).
fn run(
    b: &dyn Backend,
    x: &[f32],
    w: &[f32],
    p: f32,
    seed: u64,
    training: bool,
) -> (Vec<f32>, Vec<f32>) {
    let mut g = Graph::new(b);
    g.set_training(training);
    let xv = g.input(b.t(&[x.len()], x));
    let y = dropout(&mut g, xv, p, seed).unwrap();
    let wv = g.constant(b.t(&[w.len()], w));
    let yw = g.mul(y, wv).unwrap();
    let l = g.sum(yw).unwrap();
    let yv = b.v(g.value(y).unwrap());
    g.backward(l).unwrap();
    (yv, b.v(&g.grad(xv).unwrap()))
}

backend_test! {
    /// Values, keep rate, determinism and gradient of inverted dropout.
    fn dropout_keeps_one_minus_p_scaled_and_its_gradient_is_the_mask(b) {
        let n = 20_000;
        let x = rng::uniform_vec(n, 0.5, 2.0, 3); // nonzero, so a kept element is visible
        let w = rng::uniform_vec(n, -1.0, 1.0, 4);
        // evaluation mode and rate 0: the identity
        assert_eq!(run(b, &x, &w, 0.3, 9, false).0, x);
        assert_eq!(run(b, &x, &w, 0.0, 9, true).0, x);
        for p in [0.3f32, 0.5, 0.9] {
            let (y, gx) = run(b, &x, &w, p, 9, true);
            let scale = 1.0 / (1.0 - p);
            let mut kept = 0;
            for i in 0..n {
                if y[i] == 0.0 {
                    assert_eq!(gx[i], 0.0, "p {p}: dropped element {i} has a gradient");
                } else {
                    kept += 1;
                    assert!((y[i] - x[i] * scale).abs() <= 1e-6 * y[i].abs(), "p {p}: y[{i}] = {} for x {}", y[i], x[i]);
                    assert!((gx[i] - w[i] * scale).abs() <= 1e-6 * (1.0 + gx[i].abs()), "p {p}: gradient {i}");
                }
            }
            // binomial: 1 - p within 5 standard deviations
            let sd = (p * (1.0 - p) / n as f32).sqrt();
            let frac = kept as f32 / n as f32;
            assert!((frac - (1.0 - p)).abs() < 5.0 * sd, "p {p}: kept {frac}");
            // the same seed the same mask, another seed another
            assert_eq!(run(b, &x, &w, p, 9, true).0, y);
            assert_ne!(run(b, &x, &w, p, 10, true).0, y);
        }
        // bad rates
        let mut g = Graph::new(b);
        let xv = g.input(b.t(&[2], &[1.0, 2.0]));
        for p in [1.0f32, -0.1, f32::NAN] {
            assert!(dropout(&mut g, xv, p, 1).is_err(), "rate {p} accepted");
            assert!(Dropout::new(p, 1).is_err(), "rate {p} accepted by the layer");
        }
    }
}

/// The gradient against central differences of the forward at a fixed seed (the mask is then
/// a constant, so the loss is linear in x: the differences are exact up to rounding).
#[test]
fn dropout_gradient_matches_finite_differences() {
    let b = nnlab::cpu::CpuBackend::new();
    let n = 64;
    let x = rng::uniform_vec(n, -1.0, 1.0, 5);
    let w = rng::uniform_vec(n, -1.0, 1.0, 6);
    let (_, gx) = run(&b, &x, &w, 0.3, 2, true);
    let loss = |x: &[f32]| -> f64 {
        let (y, _) = run(&b, x, &w, 0.3, 2, true);
        y.iter().zip(&w).map(|(a, c)| *a as f64 * *c as f64).sum()
    };
    let eps = 0.1f32;
    for i in 0..n {
        let (mut xp, mut xm) = (x.clone(), x.clone());
        xp[i] += eps;
        xm[i] -= eps;
        let num = (loss(&xp) - loss(&xm)) / (2.0 * eps as f64);
        assert!(
            (gx[i] as f64 - num).abs() <= 1e-4 * (1.0 + num.abs()),
            "element {i}: {} vs {num}",
            gx[i]
        );
    }
}

/// The GPU draws exactly the CPU's mask (the same counter-based uniforms, compared to a
/// threshold between two of their grid points).
#[test]
fn gpu_dropout_matches_cpu() {
    let (c, gpu) = (nnlab::cpu::CpuBackend::new(), common::gpu());
    let n = 70_001;
    let x = rng::uniform_vec(n, -1.0, 1.0, 7);
    let w = rng::uniform_vec(n, -1.0, 1.0, 8);
    let (yc, gc) = run(&c, &x, &w, 0.3, 123, true);
    let (yg, gg) = run(&gpu, &x, &w, 0.3, 123, true);
    for i in 0..n {
        assert_eq!(yc[i] == 0.0, yg[i] == 0.0, "mask differs at {i}");
        assert!((yc[i] - yg[i]).abs() <= 1e-6 * (1.0 + yc[i].abs()));
        assert!((gc[i] - gg[i]).abs() <= 1e-6 * (1.0 + gc[i].abs()));
    }
}

/// A DCGAN D with dropout: a fresh mask at every training forward, none in evaluation mode;
/// the rate round-trips through the D file's metadata (an old file without it reads 0).
#[test]
fn discriminator_dropout_draws_fresh_masks_and_its_rate_is_in_the_metadata() {
    let b = nnlab::cpu::CpuBackend::new();
    let config = GanConfig {
        arch: GanArch::Dcgan,
        latent: 8,
        width: 4,
        extra_conv: false,
        extra_conv_14: false,
    };
    let mut d = Discriminator::new(&b, config, 3).unwrap();
    assert_eq!(d.dropout_rate(), 0.0);
    d.set_dropout(0.3, 11).unwrap();
    assert_eq!(d.dropout_rate(), 0.3);
    assert!(d.set_dropout(1.5, 11).is_err());
    let x = rng::uniform_vec(2 * PIXELS, -1.0, 1.0, 1);
    let logits = |training: bool| {
        let mut g = Graph::new(&b);
        g.set_training(training);
        let xv = g.constant(b.t(&[2, PIXELS], &x));
        let o = d.forward(&mut g, xv).unwrap();
        b.v(g.value(o).unwrap())
    };
    assert_eq!(logits(false), logits(false));
    assert_ne!(logits(true), logits(true));
    // the rate in the metadata: absent reads 0, a bad value is an error
    let mut meta = std::collections::HashMap::new();
    assert_eq!(gan::dropout_from_metadata(&meta).unwrap(), 0.0);
    meta.insert(gan::DROPOUT_KEY.to_string(), "0.3".to_string());
    assert_eq!(gan::dropout_from_metadata(&meta).unwrap(), 0.3);
    for bad in ["x", "1", "-0.2"] {
        meta.insert(gan::DROPOUT_KEY.to_string(), bad.to_string());
        assert!(gan::dropout_from_metadata(&meta).is_err(), "{bad} accepted");
    }
}
