//! Helpers shared by the model tests (classifier, autoencoder, gan, gan_recipe, dncnn,
//! dncnn_steps), each including this file as `mod models_common`: the MNIST folder, the small
//! GAN and the tiny DnCNN several tests build, and the finite-difference probe of the GAN tests.
//! (The op tests' helpers are `tests/common/mod.rs`.)

#![allow(dead_code)]

use std::path::PathBuf;

use nnlab::autodiff::Param;
use nnlab::backend::{read_blocking, Backend};
use nnlab::models::dncnn::{DnCnn, DnCnnConfig};
use nnlab::models::gan::{GanArch, GanConfig};
use nnlab::nn::BatchNorm2d;
use nnlab::rng;
use nnlab::Tensor;

/// The MNIST folder; a missing data set fails the test (CI always has ../shared/data).
pub fn mnist_dir() -> PathBuf {
    let dir = nnlab::data::data_dir(std::path::Path::new(env!("CARGO_MANIFEST_DIR")));
    assert!(
        dir.join("mnist").is_dir(),
        "MNIST not found at {}/mnist (set NNLAB_DATA): this test needs the real digits",
        dir.display()
    );
    dir
}

/// A GAN small enough for finite differences: latent 8, width 4.
pub fn small_gan(arch: GanArch) -> GanConfig {
    GanConfig {
        arch,
        latent: 8,
        width: 4,
        extra_conv: false,
        extra_conv_14: false,
    }
}

/// A DnCNN of 1 channel, depth 3, width 4 (seed 1): shapes and refusals, not quality.
pub fn tiny_dncnn(b: &dyn Backend) -> DnCnn {
    let config = DnCnnConfig {
        channels: 1,
        depth: 3,
        width: 4,
    };
    DnCnn::new(b, config, 1).unwrap()
}

/// `probe` on a parameter: its tape gradient `grad` against central differences of `objective`,
/// evaluated with one weight of `p` changed in place (and put back after).
pub fn probe_param(
    b: &dyn Backend,
    name: &str,
    p: &Param,
    grad: &[f32],
    h: f32,
    seed: u64,
    objective: &dyn Fn() -> f64,
) -> f64 {
    let vals = read_blocking(b, p.value()).unwrap();
    let set = |i: usize, v: f32| {
        let mut w = vals.clone();
        w[i] = v;
        b.assign(p.value(), &b.upload(p.shape(), &w).unwrap())
            .unwrap();
        let r = objective();
        b.assign(p.value(), &b.upload(p.shape(), &vals).unwrap())
            .unwrap();
        r
    };
    probe(name, grad, &vals, h, seed, &set)
}

/// Max |tape - central difference| over a few coordinates of `vals`: the three largest
/// gradients and one drawn from `seed`; `f` evaluates the objective with one coordinate changed.
pub fn probe(
    name: &str,
    grad: &[f32],
    vals: &[f32],
    h: f32,
    seed: u64,
    f: &dyn Fn(usize, f32) -> f64,
) -> f64 {
    let mut coords: Vec<usize> = (0..grad.len()).collect();
    coords.sort_by(|&i, &j| grad[j].abs().total_cmp(&grad[i].abs()));
    coords.truncate(3);
    coords.push(rng::random_u32(seed, 0) as usize % grad.len());
    let mut worst = 0.0f64;
    for &i in &coords {
        let fd = (f(i, vals[i] + h) - f(i, vals[i] - h)) / (2.0 * h as f64);
        let err = (fd - grad[i] as f64).abs();
        worst = worst.max(err);
        // The objective is an f32 sum over ~10^5 terms (rounding ~1e-6, i.e. ~5e-4 in the
        // quotient) and the nets have (Leaky)ReLU and |x| kinks that a step may cross: a few %
        // and a small absolute slack. A wrong sign, a missing factor or a blocked path is off by
        // 100%.
        assert!(
            err <= 3e-3 + 0.05 * fd.abs(),
            "{name}[{i}]: tape {} vs finite differences {fd}",
            grad[i]
        );
    }
    worst
}

/// Give a BatchNorm random gamma, beta, running mean and running variance (far from the
/// identity, so folding and growing are tested where they matter).
pub fn randomize_batchnorm(b: &dyn Backend, bn: &BatchNorm2d, seed: u64) {
    let c = bn.weight.shape()[0];
    let set = |t: &Tensor, lo: f32, hi: f32, s: u64| {
        b.assign(t, &b.upload(&[c], &rng::uniform_vec(c, lo, hi, s)).unwrap())
            .unwrap()
    };
    set(bn.weight.value(), 0.5, 2.0, seed);
    set(bn.bias.value(), -0.5, 0.5, seed + 1);
    set(bn.running_mean.value(), -0.3, 0.3, seed + 2);
    set(bn.running_var.value(), 0.2, 3.0, seed + 3);
}
