//! DnCNN's inference form (BatchNorm folded into the conv weights, ReLU fused with its conv,
//! `DnCnn::denoise_tensor`) equals the model run through the graph in evaluation mode, with
//! BatchNorm statistics and affine parameters far from the identity; and the folded conv
//! alone equals conv + BatchNorm.

use nnlab::autodiff::Graph;
use nnlab::backend::{read_blocking, Conv2dParams};
use nnlab::cpu::CpuBackend;
use nnlab::models::dncnn::{fold_batchnorm, DnCnn, DnCnnConfig};
use nnlab::nn::{BatchNorm2d, Conv2d, Module};
use nnlab::{rng, Backend, Tensor};

/// Give a BatchNorm random gamma, beta, running mean and running variance.
fn randomize(b: &dyn Backend, bn: &BatchNorm2d, seed: u64) {
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

fn graph_eval(b: &dyn Backend, model: &DnCnn, x: &Tensor) -> Vec<f32> {
    let mut g = Graph::new(b);
    g.set_training(false);
    g.set_grad_enabled(false);
    let xv = g.constant(x.clone());
    let y = model.forward(&mut g, xv).unwrap();
    read_blocking(b, g.value(y).unwrap()).unwrap()
}

fn assert_within(name: &str, got: &[f32], want: &[f32], tol: f32) {
    assert_eq!(got.len(), want.len());
    let scale = want.iter().fold(1.0f32, |m, v| m.max(v.abs()));
    let worst = got
        .iter()
        .zip(want)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0f32, f32::max);
    assert!(
        worst <= tol * scale,
        "{name}: max |diff| {worst} (scale {scale})"
    );
}

#[test]
fn folded_inference_equals_the_unfused_model() {
    let b = CpuBackend::new();
    for (channels, n, h, w) in [(1, 1, 33, 29), (3, 2, 17, 20)] {
        let config = DnCnnConfig {
            channels,
            depth: 5,
            width: 16,
        };
        let model = DnCnn::new(&b, config, 7).unwrap();
        for (i, (_, bn)) in model.middle.iter().enumerate() {
            randomize(&b, bn, 100 + 10 * i as u64);
        }
        let x = b
            .upload(
                &[n, channels, h, w],
                &rng::uniform_vec(n * channels * h * w, 0.0, 1.0, 3),
            )
            .unwrap();
        let want = graph_eval(&b, &model, &x);
        let got = read_blocking(&b, &model.denoise_tensor(&b, &x).unwrap()).unwrap();
        assert_within(&format!("DnCNN c{channels} n{n}"), &got, &want, 1e-5);
    }
}

#[test]
fn folded_conv_equals_conv_then_batchnorm() {
    let b = CpuBackend::new();
    let p = Conv2dParams::new(1, 1, 1);
    for with_bias in [false, true] {
        let conv = Conv2d::new(&b, "c", 5, 6, 3, p, with_bias, 4).unwrap();
        let bn = BatchNorm2d::new(&b, "bn", 6).unwrap();
        randomize(&b, &bn, 9);
        let x = b
            .upload(&[2, 5, 9, 11], &rng::uniform_vec(2 * 5 * 99, -1.0, 1.0, 5))
            .unwrap();
        let mut g = Graph::new(&b);
        g.set_training(false);
        let xv = g.constant(x.clone());
        let y = conv.forward(&mut g, xv).unwrap();
        let y = bn.forward(&mut g, y).unwrap();
        let want = read_blocking(&b, g.value(y).unwrap()).unwrap();
        let (wf, bf) = fold_batchnorm(&b, &conv, &bn).unwrap();
        let got = read_blocking(&b, &b.conv2d(&x, &wf, Some(&bf), p).unwrap()).unwrap();
        assert_within(&format!("conv+bn bias={with_bias}"), &got, &want, 1e-5);
        // and the fused ReLU is max(0, .) of the same values
        let got = read_blocking(&b, &b.conv2d_relu(&x, &wf, Some(&bf), p).unwrap()).unwrap();
        let relu: Vec<f32> = want.iter().map(|v| v.max(0.0)).collect();
        assert_within(&format!("conv+bn+relu bias={with_bias}"), &got, &relu, 1e-5);
    }
}
