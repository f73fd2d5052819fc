//! Semi-supervised training (VAT) and the gradient-ascent attack (issue 19), on synthetic
//! digits and a tiny classifier:
//! - `l2_normalize_rows` (a composition through BatchNorm's evaluation rule) gives each row the
//!   asked L2 norm and keeps a zero row at zero, on the CPU and on the GPU;
//! - the entropy composition equals -sum p log p and its gradient equals central finite
//!   differences;
//! - VAT's r raises KL(F(x) || F(x + r)) far above random noise of the same L2 norm;
//! - the semi-supervised cost is CE + lambda * consistency + w * entropy in value, its gradient
//!   is linear in the entropy weight w, and one step runs the same on the GPU as on the CPU;
//! - gradient ascent moves each image by exactly its L2 budget and raises the loss more than
//!   random noise of that norm;
//! - a balanced labelled subset holds k digits of each class, drawn by seed;
//! - the validation log's most frequent mistakes are counted and ordered as stated.

use nnlab::autodiff::Graph;
use nnlab::backend::{read_blocking, Backend};
use nnlab::cpu::CpuBackend;
use nnlab::data::mnist::{one_hot, CLASSES, PIXELS, SIDE};
use nnlab::gpu::{GpuBackend, GpuOptions};
use nnlab::models::attack::{self, Attack};
use nnlab::models::semi::{self, PerturbNorm, SemiConfig, Unlabelled};
use nnlab::models::{Classifier, ClassifierConfig};
use nnlab::nn::{cross_entropy, Module};
use nnlab::{rng, Tensor};

const TINY: ClassifierConfig = ClassifierConfig {
    c1: 4,
    c2: 6,
    c3: 6,
    hidden: 16,
};

/// `n` blurry synthetic "digits": a random stroke pattern in [0, 1].
fn digits(n: usize, seed: u64) -> Vec<f32> {
    let mut v = rng::uniform_vec(n * PIXELS, 0.0, 1.0, seed);
    for x in &mut v {
        *x = if *x > 0.7 { *x } else { 0.0 };
    }
    v
}

fn read(b: &dyn Backend, t: &Tensor) -> Vec<f32> {
    read_blocking(b, t).unwrap()
}

fn row_norms(v: &[f32], k: usize) -> Vec<f64> {
    v.chunks(k)
        .map(|r| {
            r.iter()
                .map(|&x| (x as f64) * (x as f64))
                .sum::<f64>()
                .sqrt()
        })
        .collect()
}

fn gpu() -> GpuBackend {
    GpuBackend::new_blocking(GpuOptions::default()).unwrap_or_else(|e| {
        panic!("these tests need a GPU adapter (natively: Vulkan, e.g. mesa-vulkan-drivers for lavapipe): {e}")
    })
}

#[test]
fn l2_normalize_rows_cpu_and_gpu() {
    let cpu = CpuBackend::new();
    let g = gpu();
    let mut data = rng::normal_vec(5 * 37, 0.0, 3.0, 7);
    data[2 * 37..3 * 37].fill(0.0); // a zero row stays zero
    data[4 * 37] = 1e-12; // a tiny row still gets norm 1.5
    for i in 1..37 {
        data[4 * 37 + i] = 0.0;
    }
    for b in [&cpu as &dyn Backend, &g] {
        let t = b.upload(&[5, 1, 37, 1], &data).unwrap();
        let y = read(b, &attack::l2_normalize_rows(b, &t, 1.5).unwrap());
        let norms = row_norms(&y, 37);
        println!("{}: row norms {norms:?}", b.info().describe());
        for (i, n) in norms.iter().enumerate() {
            let want = if i == 2 { 0.0 } else { 1.5 };
            assert!((n - want).abs() < 1e-5, "row {i}: norm {n}, want {want}");
        }
        // the direction is kept: y = 1.5 x / ||x||
        let xn = row_norms(&data, 37);
        for i in 0..37 {
            let want = 1.5 * data[i] as f64 / xn[0];
            assert!((y[i] as f64 - want).abs() < 1e-5);
        }
    }
}

#[test]
fn entropy_matches_definition_and_finite_differences() {
    let b = CpuBackend::new();
    let (n, k) = (3, 10);
    let z = rng::normal_vec(n * k, 0.0, 2.0, 11);
    let entropy_of = |z: &[f32]| -> f64 {
        let mut g = Graph::new(&b);
        let zv = g.constant(b.upload(&[n, k], z).unwrap());
        let h = semi::entropy(&mut g, zv).unwrap();
        read(&b, g.value(h).unwrap())[0] as f64
    };
    // -sum p log p, row mean, in f64
    let direct: f64 = z
        .chunks(k)
        .map(|r| {
            let m = r.iter().cloned().fold(f32::MIN, f32::max) as f64;
            let e: Vec<f64> = r.iter().map(|&v| (v as f64 - m).exp()).collect();
            let s: f64 = e.iter().sum();
            -e.iter().map(|&v| (v / s) * (v / s).ln()).sum::<f64>()
        })
        .sum::<f64>()
        / n as f64;
    let h = entropy_of(&z);
    assert!((h - direct).abs() < 1e-5, "entropy {h} vs {direct}");
    let mut g = Graph::new(&b);
    let zv = g.input(b.upload(&[n, k], &z).unwrap());
    let hv = semi::entropy(&mut g, zv).unwrap();
    g.backward(hv).unwrap();
    let grad = read(&b, &g.grad(zv).unwrap());
    let mut worst = 0.0f64;
    for i in 0..n * k {
        let step = 1e-2f32;
        let mut zp = z.clone();
        zp[i] += step;
        let mut zm = z.clone();
        zm[i] -= step;
        let fd = (entropy_of(&zp) - entropy_of(&zm)) / (2.0 * step as f64);
        worst = worst.max((fd - grad[i] as f64).abs());
    }
    println!("entropy gradient vs finite differences: max abs error {worst:.2e}");
    assert!(worst < 1e-3, "entropy gradient off by {worst}");
}

/// A tiny classifier and a batch of synthetic digits on `b`.
fn setup(b: &dyn Backend, n: usize) -> (Classifier, Tensor) {
    let model = Classifier::new(b, TINY, 5).unwrap();
    let x = b.upload(&[n, 1, SIDE, SIDE], &digits(n, 3)).unwrap();
    (model, x)
}

#[test]
fn vat_direction_beats_noise_of_the_same_norm() {
    let b = CpuBackend::new();
    let n = 16;
    let (model, x) = setup(&b, n);
    let cfg = SemiConfig {
        eps: 1.0,
        ..SemiConfig::default()
    };
    let p = semi::predict(&b, &model, &x).unwrap();
    let r_adv = semi::adversarial_direction(&b, &model, &x, &p, &cfg, 9).unwrap();
    let norms = row_norms(&read(&b, &r_adv), PIXELS);
    assert!(norms.iter().all(|&v| (v - 1.0).abs() < 1e-4), "{norms:?}");
    let kl_adv = read(&b, &semi::divergence(&b, &model, &x, &r_adv).unwrap())[0];
    let mut kl_noise = 0.0f32;
    for s in 0..5 {
        let r = semi::noise(&b, x.shape(), &cfg, 100 + s).unwrap();
        let nn = row_norms(&read(&b, &r), PIXELS);
        assert!(nn.iter().all(|&v| (v - 1.0).abs() < 1e-4));
        kl_noise = kl_noise.max(read(&b, &semi::divergence(&b, &model, &x, &r).unwrap())[0]);
    }
    println!("KL(F(x) || F(x + r)): VAT r {kl_adv:.3e}, largest of 5 noise draws {kl_noise:.3e}");
    assert!(
        kl_adv > 0.0 && kl_adv > 5.0 * kl_noise,
        "VAT {kl_adv} vs noise {kl_noise}"
    );
    // sign norm: r = eps sign(g), every pixel moved by eps
    let cfg_sign = SemiConfig {
        norm: PerturbNorm::Sign,
        eps: 0.05,
        ..cfg
    };
    let r = read(
        &b,
        &semi::adversarial_direction(&b, &model, &x, &p, &cfg_sign, 9).unwrap(),
    );
    assert!(r.iter().all(|&v| v.abs() == 0.05 || v == 0.0));
    let kl_sign = read(
        &b,
        &semi::divergence(&b, &model, &x, &b.upload(x.shape(), &r).unwrap()).unwrap(),
    )[0];
    let r_noise = semi::noise(&b, x.shape(), &cfg_sign, 4).unwrap();
    let kl_sign_noise = read(&b, &semi::divergence(&b, &model, &x, &r_noise).unwrap())[0];
    println!("sign: VAT {kl_sign:.3e}, noise {kl_sign_noise:.3e}");
    assert!(kl_sign > 5.0 * kl_sign_noise);
}

#[test]
fn semi_loss_is_ce_plus_lambda_consistency_and_gpu_matches_cpu() {
    let cpu = CpuBackend::new();
    let g = gpu();
    let mut results = Vec::new();
    for b in [&cpu as &dyn Backend, &g] {
        let (model, x_u) = setup(b, 8);
        let x_l = b.upload(&[4, 1, SIDE, SIDE], &digits(4, 21)).unwrap();
        let t_l = b.upload(&[4, CLASSES], &one_hot(&[1, 7, 3, 0])).unwrap();
        let cfg = SemiConfig {
            lambda: 0.7,
            entropy: true,
            ..SemiConfig::default()
        };
        let mut gr = Graph::new(b);
        let l = semi::semi_loss(&mut gr, &model, &x_l, &t_l, Some(&x_u), &cfg, 3).unwrap();
        let v = |v| read(b, gr.value(v).unwrap())[0];
        let (total, ce, cons, ent) = (
            v(l.total),
            v(l.labelled),
            v(l.consistency.unwrap()),
            v(l.entropy.unwrap()),
        );
        assert!((total - (ce + 0.7 * cons + ent)).abs() < 1e-5 * (1.0 + total.abs()));
        // the entropy weight scales the entropy term alone, in the value and in the gradient:
        // grad(w = 0.25) = grad(w = 0) + 0.25 (grad(w = 1) - grad(w = 0)), the same r (seed 3)
        let weighted = |w: f32| {
            let c = SemiConfig {
                entropy_weight: w,
                ..cfg
            };
            let mut gw = Graph::new(b);
            let l = semi::semi_loss(&mut gw, &model, &x_l, &t_l, Some(&x_u), &c, 3).unwrap();
            let total = read(b, gw.value(l.total).unwrap())[0];
            gw.backward(l.total).unwrap();
            let grads: Vec<f32> = model
                .params()
                .iter()
                .flat_map(|p| read(b, &gw.param_grad(p).unwrap()))
                .collect();
            (total, grads)
        };
        let ((t0, g0), (tq, gq), (t1, g1)) = (weighted(0.0), weighted(0.25), weighted(1.0));
        assert!((t1 - total).abs() < 1e-5 * (1.0 + total.abs()));
        assert!((t0 - (ce + 0.7 * cons)).abs() < 1e-5 * (1.0 + total.abs()));
        assert!((tq - (ce + 0.7 * cons + 0.25 * ent)).abs() < 1e-5 * (1.0 + total.abs()));
        let scale = g1.iter().fold(0.0f32, |m, v| m.max(v.abs()));
        let worst = g0
            .iter()
            .zip(&gq)
            .zip(&g1)
            .map(|((a, q), c)| (q - (a + 0.25 * (c - a))).abs())
            .fold(0.0f32, f32::max);
        assert!(
            g0 != g1 && worst < 1e-4 * (1.0 + scale),
            "entropy weight: gradient off its linear blend by {worst}"
        );
        assert!(SemiConfig {
            entropy_weight: -1.0,
            ..cfg
        }
        .validate()
        .is_err());
        // the labelled term is the plain cross-entropy
        let mut g2 = Graph::new(b);
        let xv = g2.constant(x_l.clone());
        let tv = g2.constant(t_l.clone());
        let c = cross_entropy(&mut g2, &model, xv, tv).unwrap();
        assert!((read(b, g2.value(c).unwrap())[0] - ce).abs() < 1e-6);
        gr.backward(l.total).unwrap();
        let grads: Vec<f32> = model
            .params()
            .iter()
            .flat_map(|p| read(b, &gr.param_grad(p).unwrap()))
            .collect();
        // noise consistency and labels only run too
        for u in [Unlabelled::Noise, Unlabelled::None] {
            let c = SemiConfig {
                unlabelled: u,
                ..cfg
            };
            let mut g3 = Graph::new(b);
            let l = semi::semi_loss(&mut g3, &model, &x_l, &t_l, Some(&x_u), &c, 3).unwrap();
            assert_eq!(l.consistency.is_some(), u != Unlabelled::None);
            g3.backward(l.total).unwrap();
        }
        results.push((vec![total, ce, cons, ent], grads));
    }
    let (c, gp) = (&results[0], &results[1]);
    let diff = |a: &[f32], b: &[f32]| {
        a.iter()
            .zip(b)
            .map(|(x, y)| (x - y).abs() / (1.0 + x.abs()))
            .fold(0.0f32, f32::max)
    };
    let (dv, dg) = (diff(&c.0, &gp.0), diff(&c.1, &gp.1));
    println!("GPU vs CPU: cost parts {dv:.2e}, parameter gradients {dg:.2e}");
    assert!(dv < 1e-4 && dg < 1e-3, "values {dv}, gradients {dg}");
}

#[test]
fn gradient_ascent_moves_by_its_l2_budget_and_raises_the_loss() {
    let b = CpuBackend::new();
    let n = 8;
    let model = Classifier::new(&b, TINY, 2).unwrap();
    // mid-grey digits, so a 0.5 step never leaves [0, 1] (no clipping)
    let xs: Vec<f32> = rng::uniform_vec(n * PIXELS, 0.45, 0.55, 4);
    let x = b.upload(&[n, 1, SIDE, SIDE], &xs).unwrap();
    let labels: Vec<u8> = (0..n as u8).collect();
    let t = b.upload(&[n, CLASSES], &one_hot(&labels)).unwrap();
    let l2 = 0.4f32;
    let xa = attack::gradient_ascent_l2(&b, &model, &x, &t, l2).unwrap();
    let xa_h = read(&b, &xa);
    let d: Vec<f32> = xa_h.iter().zip(&xs).map(|(a, b)| a - b).collect();
    for (i, nrm) in row_norms(&d, PIXELS).iter().enumerate() {
        assert!(
            (nrm - l2 as f64).abs() < 1e-4,
            "image {i}: ||x~ - x|| = {nrm}"
        );
    }
    let loss = |x: &Tensor| read(&b, &attack::input_gradient(&b, &model, x, &t).unwrap().1)[0];
    let (clean, adv) = (loss(&x), loss(&xa));
    let cfg = SemiConfig {
        eps: l2,
        ..SemiConfig::default()
    };
    let r = semi::noise(&b, x.shape(), &cfg, 8).unwrap();
    let noisy = loss(&b.binary(nnlab::backend::BinaryOp::Add, &x, &r).unwrap());
    println!("loss: clean {clean:.5}, random L2 noise {noisy:.5}, gradient ascent {adv:.5}");
    assert!(adv > clean && adv - clean > 3.0 * (noisy - clean).abs());
    // through the Attack interface the budget is eps * 28 (the norm of an FGSM step)
    let at = Attack::gradient_l2(l2 / SIDE as f32);
    at.validate().unwrap();
    let xb = read(&b, &attack::perturb(&b, &model, &x, &labels, &at).unwrap());
    let diff = xb
        .iter()
        .zip(&xa_h)
        .map(|(p, q)| (p - q).abs())
        .fold(0.0, f32::max);
    assert!(diff < 1e-6, "perturb vs gradient_ascent_l2: {diff}");
}

#[test]
fn balanced_subset_draws_k_per_class_by_seed() {
    let labels: Vec<u8> = (0..1000).map(|i| ((i * 7) % 10) as u8).collect();
    let a = semi::balanced_subset(&labels, 3, 1).unwrap();
    let b = semi::balanced_subset(&labels, 3, 2).unwrap();
    assert_eq!(a.len(), 30);
    for c in 0..10u8 {
        assert_eq!(a.iter().filter(|&&i| labels[i] == c).count(), 3);
    }
    assert_eq!(a, semi::balanced_subset(&labels, 3, 1).unwrap());
    assert_ne!(a, b);
    assert!(semi::balanced_subset(&labels, 101, 1).is_err());
}

/// The CLI refuses bad semi-supervised settings with a clear message before loading anything.
#[test]
fn cli_refuses_bad_semi_settings() {
    let run = |args: &[&str]| {
        let o = std::process::Command::new(env!("CARGO_BIN_EXE_nnlab"))
            .args(args)
            .env("NNLAB_DATA", "/nonexistent-nnlab-data")
            .env("RUST_BACKTRACE", "0")
            .output()
            .expect("run nnlab");
        let err = String::from_utf8_lossy(&o.stderr).to_string();
        assert!(!o.status.success(), "{args:?} should fail");
        assert!(!err.contains("panicked"), "{args:?}: {err}");
        err
    };
    let t = [
        "train",
        "classifier",
        "--out",
        "/tmp/nnlab-semi-never.safetensors",
    ];
    let with = |extra: &[&'static str]| -> Vec<&'static str> {
        t.iter().copied().chain(extra.iter().copied()).collect()
    };
    assert!(run(&with(&["--labels", "15"])).contains("multiple of 10"));
    assert!(run(&with(&["--unlabelled", "adversarial"])).contains("need --labels"));
    assert!(run(&with(&["--labels", "100", "--adversarial"])).contains("cannot be combined"));
    assert!(run(&with(&["--labels", "100", "--norm", "sign", "--eps", "2"])).contains("<= 1"));
    assert!(run(&with(&["--labels", "100", "--channels", "8,8"])).contains("four widths"));
    assert!(run(&with(&["--labels", "100", "--lambda=-1"])).contains("lambda"));
    assert!(run(&with(&["--labels", "100", "--labelled-shift", "9"])).contains("at most 8"));
    assert!(run(&with(&["--labels", "100", "--entropy-ramp", "0.5"])).contains("needs --entropy"));
    assert!(run(&with(&[
        "--labels",
        "100",
        "--entropy",
        "--entropy-ramp",
        "1.5"
    ]))
    .contains("[0, 1]"));
    assert!(run(&["eval", "semi", "--labels", "100,7"]).contains("multiple of 10"));
    assert!(run(&["eval", "semi", "--steps", "0"]).contains("--steps"));
}

#[test]
fn top_mistakes_counts_off_diagonal_pairs_most_frequent_first() {
    let labels = [9u8, 9, 9, 4, 3, 3, 1, 2, 7];
    let predicted = [4usize, 4, 7, 9, 8, 8, 1, 2, 12];
    let m = semi::top_mistakes(&labels, &predicted, 3);
    let got: Vec<(usize, usize, usize)> =
        m.iter().map(|m| (m.truth, m.predicted, m.count)).collect();
    // 3->8 and 9->4 twice (tie: the lower true class first), then 4->9 before 9->7; correct
    // predictions and out-of-range classes are not mistakes
    assert_eq!(got, vec![(3, 8, 2), (9, 4, 2), (4, 9, 1)]);
    assert!(semi::top_mistakes(&[1, 2], &[1, 2], 5).is_empty());
}
