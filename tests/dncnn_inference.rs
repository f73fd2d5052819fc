//! DnCNN's fused inference form (`DnCnnFused`, `DnCnn::denoise_tensor`: BatchNorm folded into
//! the conv weights, bias and ReLU in the conv kernel's epilogue, one launch per layer,
//! activations alternating between two buffers) equals the model run through the graph in
//! evaluation mode and the unfused layer by layer form (`DnCnn::inference_layer`), with
//! BatchNorm statistics and affine parameters far from the identity, on the CPU and on the GPU;
//! the folded conv alone equals conv + BatchNorm; `conv2d_fused` refuses a bad output tensor.

use nnlab::autodiff::Graph;
use nnlab::backend::{read_blocking, Conv2dParams, FusedConv2d};
use nnlab::cpu::CpuBackend;
use nnlab::gpu::{GpuBackend, GpuOptions};
use nnlab::models::dncnn::{fold_batchnorm, DnCnn, DnCnnConfig};
use nnlab::models::dncnn_fused::{DnCnnFused, PingPong};
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

fn gpu() -> GpuBackend {
    std::env::set_var("XDG_RUNTIME_DIR", "/tmp");
    GpuBackend::new_blocking(GpuOptions::default()).unwrap_or_else(|e| {
        panic!("no GPU adapter (install mesa-vulkan-drivers + libvulkan1 for lavapipe): {e}")
    })
}

fn max_abs(got: &[f32], want: &[f32]) -> f32 {
    assert_eq!(got.len(), want.len());
    got.iter()
        .zip(want)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0f32, f32::max)
}

/// The fused model (a plan made once, two buffers) vs the graph in eval mode and vs the unfused
/// layers, within 1e-5 max abs; the hidden layers' outputs alternate between two storages.
fn fused_equals_unfused(b: &dyn Backend) {
    for (channels, n, h, w) in [(1, 1, 33, 29), (3, 2, 17, 20)] {
        let config = DnCnnConfig {
            channels,
            depth: 5,
            width: 16,
        };
        let model = DnCnn::new(b, config, 7).unwrap();
        for (i, (_, bn)) in model.middle.iter().enumerate() {
            randomize(b, bn, 100 + 10 * i as u64);
        }
        let data = rng::uniform_vec(n * channels * h * w, 0.0, 1.0, 3);
        let plan = DnCnnFused::new(b, &model).unwrap();
        let mut bufs = PingPong::default();
        // the same image and its transpose (a rotated crop: same element count) through one
        // pair of buffers
        for shape in [[n, channels, h, w], [n, channels, w, h]] {
            let x = b.upload(&shape, &data).unwrap();
            let graph = graph_eval(b, &model, &x);
            let (mut fused, mut unfused) = (x.clone(), x.clone());
            let mut outs: Vec<Tensor> = vec![];
            for k in 0..config.depth {
                fused = plan.layer(b, k, &x, &fused, &mut bufs).unwrap();
                unfused = model.inference_layer(b, k, &x, &unfused).unwrap();
                let (f, u) = (
                    read_blocking(b, &fused).unwrap(),
                    read_blocking(b, &unfused).unwrap(),
                );
                let d = max_abs(&f, &u);
                assert!(
                    d <= 1e-5,
                    "c{channels} {shape:?} layer {k}: fused vs unfused max abs {d}"
                );
                outs.push(fused.clone());
            }
            for k in 2..config.depth - 1 {
                assert!(
                    outs[k].same_storage(&outs[k - 2]),
                    "layer {k} reuses layer {}'s buffer",
                    k - 2
                );
                assert!(!outs[k].same_storage(&outs[k - 1]));
            }
            let got = read_blocking(b, &fused).unwrap();
            let d = max_abs(&got, &graph);
            assert!(
                d <= 1e-5,
                "c{channels} {shape:?}: fused vs graph max abs {d}"
            );
            let whole = read_blocking(b, &model.denoise_tensor(b, &x).unwrap()).unwrap();
            assert_eq!(whole, got, "denoise_tensor is the fused plan");
        }
    }
}

#[test]
fn fused_inference_equals_the_unfused_model_on_the_cpu() {
    fused_equals_unfused(&CpuBackend::new());
}

#[test]
fn fused_inference_equals_the_unfused_model_on_the_gpu() {
    fused_equals_unfused(&gpu());
}

fn refusals(b: &dyn Backend) {
    let p = Conv2dParams::new(1, 1, 1);
    let x = b
        .upload(&[1, 2, 5, 5], &rng::uniform_vec(50, -1.0, 1.0, 1))
        .unwrap();
    let w = b
        .upload(&[3, 2, 3, 3], &rng::uniform_vec(54, -1.0, 1.0, 2))
        .unwrap();
    let c = FusedConv2d::new(w, None, p, true);
    let bad = b.zeros(&[1, 3, 5, 4]).unwrap();
    let e = b.conv2d_fused(&x, &c, Some(&bad)).unwrap_err().to_string();
    assert!(
        e.contains("conv2d_fused: the output must have shape [1, 3, 5, 5]"),
        "{e}"
    );
    let c = FusedConv2d::new(b.zeros(&[2, 2, 3, 3]).unwrap(), None, p, false);
    let e = b.conv2d_fused(&x, &c, Some(&x)).unwrap_err().to_string();
    assert!(
        e.contains("conv2d_fused: the output and the input must be different tensors"),
        "{e}"
    );
    // and a good call into an existing tensor overwrites it with relu(conv2d)
    let c = FusedConv2d::new(
        b.upload(&[3, 2, 3, 3], &rng::uniform_vec(54, -1.0, 1.0, 2))
            .unwrap(),
        None,
        p,
        true,
    );
    let out = b.upload(&[1, 3, 5, 5], &[7.0; 75]).unwrap();
    let got = b.conv2d_fused(&x, &c, Some(&out)).unwrap();
    assert!(got.same_storage(&out));
    let want = read_blocking(b, &b.conv2d_relu(&x, &c.weight, None, p).unwrap()).unwrap();
    assert_eq!(read_blocking(b, &out).unwrap(), want);
}

#[test]
fn conv2d_fused_refuses_a_bad_output_on_both_backends() {
    refusals(&CpuBackend::new());
    refusals(&gpu());
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
