//! MNIST reader, classifier and attacks (CPU backend):
//! - the IDX reader's header checks and its errors on truncated / corrupt files (synthetic bytes);
//! - the tape's gradient w.r.t. the input equals central finite differences;
//! - FGSM flips most predictions of a briefly trained classifier at eps 0.25 (real MNIST; the
//!   test says loudly that it skipped when the data folder is absent);
//! - the adversarial-training loss is alpha C(x) + (1 - alpha) C(x~), in value and gradients.

use std::io::Write;

use nnlab::autodiff::Graph;
use nnlab::backend::read_blocking;
use nnlab::cpu::CpuBackend;
use nnlab::data::mnist::{one_hot, translate, Mnist, Split, CLASSES, PIXELS, SIDE};
use nnlab::models::attack::{self, AdvMethod, AdvTraining, Attack};
use nnlab::models::classifier::train_step;
use nnlab::models::{Classifier, ClassifierConfig};
use nnlab::nn::{cross_entropy, Adam, Module};
use nnlab::{rng, Error, Tensor};

#[path = "common/models.rs"]
mod models_common;

use models_common::mnist_dir;

const TINY: ClassifierConfig = ClassifierConfig {
    c1: 2,
    c2: 3,
    c3: 3,
    hidden: 8,
};

// ---------------------------------------------------------------- synthetic IDX files

fn idx_images(count: u32, rows: u32, cols: u32, pixels: &[u8]) -> Vec<u8> {
    let mut v = Vec::new();
    for x in [2051u32, count, rows, cols] {
        v.extend_from_slice(&x.to_be_bytes());
    }
    v.extend_from_slice(pixels);
    v
}

fn idx_labels(labels: &[u8]) -> Vec<u8> {
    let mut v = Vec::new();
    for x in [2049u32, labels.len() as u32] {
        v.extend_from_slice(&x.to_be_bytes());
    }
    v.extend_from_slice(labels);
    v
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(bytes).unwrap();
    e.finish().unwrap()
}

fn expect_io_err(r: nnlab::Result<Mnist>, needle: &str) {
    match r {
        Err(Error::Io(m)) => assert!(m.contains(needle), "error '{m}' should mention '{needle}'"),
        Err(e) => panic!("expected an I/O error mentioning '{needle}', got {e}"),
        Ok(_) => panic!("expected an error mentioning '{needle}', got Ok"),
    }
}

#[test]
fn idx_reader_parses_and_checks_headers() {
    let pixels: Vec<u8> = (0..2 * PIXELS).map(|i| (i % 256) as u8).collect();
    let images = idx_images(2, 28, 28, &pixels);
    let labels = idx_labels(&[3, 9]);

    let m = Mnist::from_idx(&images, &labels).unwrap();
    assert_eq!(m.len(), 2);
    assert_eq!(m.labels, vec![3, 9]);
    assert_eq!(m.images.len(), 2 * PIXELS);
    assert_eq!(m.image(0)[255], 1.0);
    assert_eq!(m.image(0)[0], 0.0);
    assert!((m.image(1)[1] - ((PIXELS + 1) % 256) as f32 / 255.0).abs() < 1e-7);
    // gzipped input gives the same set
    assert_eq!(Mnist::from_idx(&gzip(&images), &gzip(&labels)).unwrap(), m);

    // wrong magic: the files swapped
    expect_io_err(Mnist::from_idx(&labels, &images), "magic");
    // truncated pixel data, truncated header, truncated label data
    expect_io_err(
        Mnist::from_idx(&images[..images.len() - 1], &labels),
        "truncated",
    );
    expect_io_err(Mnist::from_idx(&images[..10], &labels), "truncated");
    expect_io_err(Mnist::from_idx(&images, &labels[..9]), "truncated");
    // a gzip stream cut in the middle
    let gz = gzip(&images);
    expect_io_err(Mnist::from_idx(&gz[..gz.len() / 2], &labels), "gzip");
    // trailing garbage, count mismatch, not 28x28, label out of range, empty set
    let mut long = images.clone();
    long.push(0);
    expect_io_err(Mnist::from_idx(&long, &labels), "unexpected data");
    expect_io_err(
        Mnist::from_idx(&images, &idx_labels(&[1, 2, 3])),
        "2 images but 3 labels",
    );
    expect_io_err(
        Mnist::from_idx(&idx_images(2, 27, 28, &pixels[..2 * 27 * 28]), &labels),
        "27x28",
    );
    expect_io_err(Mnist::from_idx(&images, &idx_labels(&[1, 10])), "label 10");
    expect_io_err(
        Mnist::from_idx(&idx_images(0, 28, 28, &[]), &idx_labels(&[])),
        "empty",
    );
    // a huge count in the header is a truncation error, not an allocation
    expect_io_err(
        Mnist::from_idx(&idx_images(u32::MAX, 28, 28, &pixels), &labels),
        "truncated",
    );

    // a missing folder names the paths and the override
    expect_io_err(
        Mnist::load(std::path::Path::new("/nonexistent/nnlab"), Split::Test),
        "NNLAB_DATA",
    );
    // slices and gathers check their ranges
    assert!(m.slice(1..3).is_err());
    assert!(m.gather(&[0, 2]).is_err());
}

#[test]
fn translate_moves_digits_and_fills_zeros() {
    let img: Vec<f32> = (0..PIXELS).map(|i| i as f32).collect();
    assert_eq!(translate(&img, 0, 0), img);
    let r = translate(&img, 2, -1); // right 2, up 1
    assert_eq!(r[5 * SIDE + 7], img[6 * SIDE + 5]);
    assert_eq!(r[3 * SIDE], 0.0); // column 0 came from outside
    assert_eq!(r[27 * SIDE + 10], 0.0); // the last row came from outside
    assert!(translate(&img, SIDE as i32, 0).iter().all(|&v| v == 0.0));
}

// ---------------------------------------------------------------- gradients

/// Sum over the batch of the cross-entropy (what `input_gradient` differentiates).
fn total_loss(b: &CpuBackend, model: &Classifier, x: &[f32], t: &Tensor, n: usize) -> f64 {
    let mut g = Graph::new(b);
    g.set_grad_enabled(false);
    let xv = g.constant(b.upload(&[n, 1, SIDE, SIDE], x).unwrap());
    let tv = g.constant(t.clone());
    let l = cross_entropy(&mut g, model, xv, tv).unwrap();
    read_blocking(b, g.value(l).unwrap()).unwrap()[0] as f64 * n as f64
}

#[test]
fn input_gradient_matches_finite_differences() {
    let b = CpuBackend::new();
    let model = Classifier::new(&b, TINY, 3).unwrap();
    let n = 2;
    let x = rng::uniform_vec(n * PIXELS, 0.1, 0.9, 11);
    let t = b.upload(&[n, CLASSES], &one_hot(&[4, 7])).unwrap();
    let xt = b.upload(&[n, 1, SIDE, SIDE], &x).unwrap();
    let (grad, _) = attack::input_gradient(&b, &model, &xt, &t).unwrap();
    let grad = read_blocking(&b, &grad).unwrap();
    let gmax = grad.iter().fold(0.0f32, |m, g| m.max(g.abs()));
    assert!(
        gmax > 1e-3,
        "input gradient is (nearly) zero: max |g| = {gmax}"
    );

    // per coordinate: the 16 largest |g| and 16 pseudo-random ones. The forward is f32, so the
    // loss carries ~5e-7 of rounding; with h = 1e-3 that is ~3e-4 in the difference quotient.
    let h = 1e-3f64;
    let mut coords: Vec<usize> = (0..grad.len()).collect();
    coords.sort_by(|&i, &j| grad[j].abs().total_cmp(&grad[i].abs()));
    coords.truncate(16);
    coords.extend((0..16).map(|k| rng::random_u32(5, k) as usize % grad.len()));
    let mut max_err = 0.0f64;
    for &i in &coords {
        let mut xp = x.clone();
        let mut xm = x.clone();
        xp[i] += h as f32;
        xm[i] -= h as f32;
        let fd =
            (total_loss(&b, &model, &xp, &t, n) - total_loss(&b, &model, &xm, &t, n)) / (2.0 * h);
        let err = (fd - grad[i] as f64).abs();
        max_err = max_err.max(err);
        assert!(
            err <= 1e-3 + 0.02 * fd.abs(),
            "pixel {i}: tape {} vs finite differences {fd}",
            grad[i]
        );
    }
    // along a random +-1 direction over all pixels: d/ds L(x + s d) = <g, d>. Moving every pixel
    // crosses ReLU kinks of units near zero, so the step is smaller here (h = 1e-3 gave -0.95 for
    // a true -1.054, converging as h shrinks); the f32 rounding is then ~3e-3 of the quotient.
    let h = 1e-4f64;
    let d: Vec<f32> = (0..x.len())
        .map(|i| {
            if rng::random_u32(9, i as u32) & 1 == 0 {
                1.0
            } else {
                -1.0
            }
        })
        .collect();
    let shift = |s: f64| {
        x.iter()
            .zip(&d)
            .map(|(&a, &e)| a + (s as f32) * e)
            .collect::<Vec<f32>>()
    };
    let fd = (total_loss(&b, &model, &shift(h), &t, n) - total_loss(&b, &model, &shift(-h), &t, n))
        / (2.0 * h);
    let dot: f64 = grad
        .iter()
        .zip(&d)
        .map(|(&g, &e)| g as f64 * e as f64)
        .sum();
    println!("input gradient vs finite differences: max abs error {max_err:.2e} over {} pixels (max |g| {gmax:.3e}); directional {dot:.5} vs {fd:.5}", coords.len());
    assert!(
        (fd - dot).abs() <= 1e-2 + 0.01 * dot.abs(),
        "directional derivative: tape {dot} vs finite differences {fd}"
    );
}

// ---------------------------------------------------------------- adversarial loss

#[test]
fn adversarial_loss_composes() {
    let b = CpuBackend::new();
    let model = Classifier::new(&b, TINY, 4).unwrap();
    let n = 3;
    let x = b
        .upload(
            &[n, 1, SIDE, SIDE],
            &rng::uniform_vec(n * PIXELS, 0.0, 1.0, 21),
        )
        .unwrap();
    let t = b.upload(&[n, CLASSES], &one_hot(&[0, 5, 9])).unwrap();
    let eps = 0.2;
    let alpha = 0.3;
    let x_adv = attack::fgsm(&b, &model, &x, &t, eps).unwrap();

    // each term alone: value and parameter gradients
    let term = |xi: &Tensor| {
        let mut g = Graph::new(&b);
        let xv = g.constant(xi.clone());
        let tv = g.constant(t.clone());
        let l = cross_entropy(&mut g, &model, xv, tv).unwrap();
        g.backward(l).unwrap();
        let v = read_blocking(&b, g.value(l).unwrap()).unwrap()[0];
        let grads: Vec<Vec<f32>> = model
            .params()
            .iter()
            .map(|p| read_blocking(&b, &g.param_grad(p).unwrap()).unwrap())
            .collect();
        (v, grads)
    };
    let (c_clean, g_clean) = term(&x);
    let (c_adv, g_adv) = term(&x_adv);
    assert!(
        c_adv > c_clean,
        "FGSM should raise the loss: {c_clean} -> {c_adv}"
    );

    // adversarial_training_loss on a graph of its own (returned too, for the gradients)
    let adv_loss = |alpha: f32, method: AdvMethod| {
        let mut g = Graph::new(&b);
        let cfg = AdvTraining { eps, alpha, method };
        attack::adversarial_training_loss(&mut g, &model, &x, &t, &cfg).map(|l| (g, l))
    };
    let value = |g: &Graph, l| read_blocking(&b, g.value(l).unwrap()).unwrap()[0];
    let (mut g, l) = adv_loss(alpha, AdvMethod::Fgsm).unwrap();
    g.backward(l).unwrap();
    let v = value(&g, l);
    let want = alpha * c_clean + (1.0 - alpha) * c_adv;
    assert!(
        (v - want).abs() <= 1e-5 * want.abs().max(1.0),
        "loss {v} vs alpha C(x) + (1-alpha) C(x~) = {want}"
    );
    let mut max_err = 0.0f32;
    for (k, p) in model.params().iter().enumerate() {
        let got = read_blocking(&b, &g.param_grad(p).unwrap()).unwrap();
        for (i, &gv) in got.iter().enumerate() {
            let w = alpha * g_clean[k][i] + (1.0 - alpha) * g_adv[k][i];
            let err = (gv - w).abs();
            max_err = max_err.max(err);
            assert!(
                err <= 1e-5 + 1e-4 * w.abs(),
                "{} [{i}]: {gv} vs {w}",
                p.name()
            );
        }
    }
    println!("adversarial loss: value {v} (want {want}), max abs gradient error {max_err:.2e}");

    // RS-FGSM examples stay in the eps ball and in [0, 1], and the random start is seeded
    let xh = read_blocking(&b, &x).unwrap();
    let rs = |seed| {
        read_blocking(
            &b,
            &attack::fgsm_random_start(&b, &model, &x, &t, eps, seed).unwrap(),
        )
        .unwrap()
    };
    let (r1, r2) = (rs(1), rs(2));
    assert_eq!(r1, rs(1));
    assert_ne!(r1, r2);
    for (&p, &q) in r1.iter().zip(&xh) {
        assert!(
            (0.0..=1.0).contains(&p) && (p - q).abs() <= eps + 1e-6,
            "RS-FGSM: pixel {q} -> {p}"
        );
    }
    let (g, l) = adv_loss(alpha, AdvMethod::RandomStart(1)).unwrap();
    let xr = b.upload(&[n, 1, SIDE, SIDE], &r1).unwrap();
    let want_rs = alpha * c_clean + (1.0 - alpha) * term(&xr).0;
    let v = value(&g, l);
    assert!(
        (v - want_rs).abs() <= 1e-5 * want_rs.abs().max(1.0),
        "RS loss {v} vs {want_rs}"
    );

    // alpha = 1 is the clean loss; alpha outside [0, 1] is refused
    let (g, l) = adv_loss(1.0, AdvMethod::Fgsm).unwrap();
    assert!((value(&g, l) - c_clean).abs() < 1e-6);
    assert!(matches!(
        adv_loss(1.5, AdvMethod::Fgsm),
        Err(Error::Invalid(_))
    ));
}

#[test]
fn pgd_starts_at_random_stays_in_the_ball_and_restarts_only_add_errors() {
    let b = CpuBackend::new();
    let model = Classifier::new(&b, TINY, 6).unwrap();
    let n = 16;
    let xs = rng::uniform_vec(n * PIXELS, 0.0, 1.0, 31);
    let x = b.upload(&[n, 1, SIDE, SIDE], &xs).unwrap();
    let labels: Vec<u8> = (0..n as u8).map(|i| i % 10).collect();
    let t = b.upload(&[n, CLASSES], &one_hot(&labels)).unwrap();
    let eps = 0.3;
    let walk = |seed| {
        read_blocking(
            &b,
            &attack::iterative(&b, &model, &x, &t, eps, 5, 0.1, false, seed).unwrap(),
        )
        .unwrap()
    };
    let (p1, p2, plain) = (walk(Some(1)), walk(Some(2)), walk(None));
    assert_eq!(p1, walk(Some(1)), "the random start is seeded");
    assert_ne!(p1, p2);
    assert_ne!(p1, plain);
    for (&p, &q) in p1.iter().zip(&xs) {
        assert!(
            (0.0..=1.0).contains(&p) && (p - q).abs() <= eps + 1e-6,
            "PGD: pixel {q} -> {p}"
        );
    }
    // PGD training with alpha 0 is C(x~) of the PGD example alone
    let mut g = Graph::new(&b);
    let cfg = AdvTraining {
        eps,
        alpha: 0.0,
        method: AdvMethod::Pgd {
            steps: 5,
            step_size: 0.1,
            seed: 1,
        },
    };
    let l = attack::adversarial_training_loss(&mut g, &model, &x, &t, &cfg).unwrap();
    let xp = b.upload(&[n, 1, SIDE, SIDE], &p1).unwrap();
    let mut h = Graph::new(&b);
    let (xv, tv) = (h.constant(xp), h.constant(t.clone()));
    let want = cross_entropy(&mut h, &model, xv, tv).unwrap();
    let (got, want) = (
        read_blocking(&b, g.value(l).unwrap()).unwrap()[0],
        read_blocking(&b, h.value(want).unwrap()).unwrap()[0],
    );
    assert!(
        (got - want).abs() <= 1e-5 * want.abs().max(1.0),
        "{got} vs {want}"
    );
    // the worst of several restarts: never fewer errors than the first restart alone
    let eval = |restarts| {
        attack::evaluate(
            &b,
            &model,
            &xs,
            &labels,
            8,
            Some(&Attack::pgd(0.05, 3, restarts, 7)),
            |_| {},
        )
        .unwrap()
    };
    let (one, four) = (eval(1), eval(4));
    assert_eq!(one.n, n);
    assert!(
        four.correct <= one.correct,
        "{} > {}",
        four.correct,
        one.correct
    );
    assert!(matches!(
        attack::perturb(&b, &model, &x, &labels, &Attack::pgd(0.1, 3, 0, 1)),
        Err(Error::Invalid(_))
    ));
}

#[test]
fn attacks_reject_bad_input() {
    let b = CpuBackend::new();
    let model = Classifier::new(&b, TINY, 5).unwrap();
    let x = b
        .upload(&[2, 1, SIDE, SIDE], &vec![0.5; 2 * PIXELS])
        .unwrap();
    let t = b.upload(&[2, CLASSES], &one_hot(&[1, 2])).unwrap();
    for eps in [-0.1, f32::NAN, 1.5] {
        assert!(
            matches!(
                attack::fgsm(&b, &model, &x, &t, eps),
                Err(Error::Invalid(_))
            ),
            "eps {eps}"
        );
    }
    assert!(matches!(
        attack::perturb(&b, &model, &x, &[1], &Attack::fgsm(0.1)),
        Err(Error::Shape(_))
    ));
    assert!(matches!(
        attack::perturb(&b, &model, &x, &[1, 2], &Attack::fgsm(0.1).targeted(12)),
        Err(Error::Invalid(_))
    ));
    assert!(matches!(
        attack::perturb(&b, &model, &x, &[1, 2], &Attack::iterative(0.1, 0)),
        Err(Error::Invalid(_))
    ));
    let wrong = b.upload(&[2, 1, 14, 14], &vec![0.5; 2 * 196]).unwrap();
    assert!(matches!(
        attack::fgsm(&b, &model, &wrong, &t, 0.1),
        Err(Error::Shape(_))
    ));
    // eps 0 leaves the images unchanged
    let same = attack::perturb(&b, &model, &x, &[1, 2], &Attack::fgsm(0.0)).unwrap();
    assert_eq!(
        read_blocking(&b, &same).unwrap(),
        read_blocking(&b, &x).unwrap()
    );
}

#[test]
fn classifier_weights_are_named_like_pytorch_and_round_trip() {
    let b = CpuBackend::new();
    let m = Classifier::new(&b, TINY, 6).unwrap();
    let names: Vec<&str> = m.params().iter().map(|p| p.name()).collect();
    assert_eq!(
        names,
        [
            "conv1.weight",
            "conv1.bias",
            "conv2.weight",
            "conv2.bias",
            "conv3.weight",
            "conv3.bias",
            "fc1.weight",
            "fc1.bias",
            "fc2.weight",
            "fc2.bias"
        ]
    );
    assert_eq!(m.fc1.weight.shape(), &[8, 3 * 7 * 7]);
    let bytes = pollster::block_on(nnlab::weights::save_params(&b, &m.params(), None)).unwrap();
    let m2 = Classifier::new(&b, TINY, 7).unwrap();
    nnlab::weights::load_params(&b, &m2.params(), &bytes).unwrap();
    for (p, q) in m.params().iter().zip(m2.params()) {
        assert_eq!(
            read_blocking(&b, p.value()).unwrap(),
            read_blocking(&b, q.value()).unwrap()
        );
    }
    let other = Classifier::new(&b, ClassifierConfig { hidden: 9, ..TINY }, 7).unwrap();
    assert!(matches!(
        nnlab::weights::load_params(&b, &other.params(), &bytes),
        Err(Error::Weights(_))
    ));
}

// ---------------------------------------------------------------- FGSM on real digits

#[test]
fn fgsm_flips_most_predictions_of_a_trained_classifier() {
    let dir = mnist_dir();
    let b = CpuBackend::new();
    let train = Mnist::load(&dir, Split::Train)
        .unwrap()
        .slice(10_000..30_000)
        .unwrap();
    let test = Mnist::load(&dir, Split::Test)
        .unwrap()
        .slice(0..500)
        .unwrap();
    let model = Classifier::new(
        &b,
        ClassifierConfig {
            c1: 8,
            c2: 16,
            c3: 16,
            hidden: 64,
        },
        1,
    )
    .unwrap();
    let mut opt = Adam::new(2e-3, 0.9, 0.999);
    let (steps, batch) = (300, 64);
    let mut first = 0.0;
    let mut last = 0.0;
    for s in 0..steps {
        let idx: Vec<usize> = (0..batch)
            .map(|k| rng::random_u32(77, (s * batch + k) as u32) as usize % train.len())
            .collect();
        let (xs, ys) = train.gather(&idx).unwrap();
        let x = b.upload(&[batch, 1, SIDE, SIDE], &xs).unwrap();
        let t = b.upload(&[batch, CLASSES], &one_hot(&ys)).unwrap();
        let l =
            read_blocking(&b, &train_step(&b, &model, &mut opt, &x, &t, None).unwrap()).unwrap()[0];
        if s == 0 {
            first = l;
        }
        last = l;
    }
    let clean =
        attack::evaluate(&b, &model, &test.images, &test.labels, 250, None, |_| {}).unwrap();
    let fgsm = attack::evaluate(
        &b,
        &model,
        &test.images,
        &test.labels,
        250,
        Some(&Attack::fgsm(0.25)),
        |_| {},
    )
    .unwrap();
    let iter = attack::evaluate(
        &b,
        &model,
        &test.images,
        &test.labels,
        250,
        Some(&Attack::iterative(0.25, 5)),
        |_| {},
    )
    .unwrap();
    let target = attack::evaluate(
        &b,
        &model,
        &test.images,
        &test.labels,
        250,
        Some(&Attack::iterative(0.25, 5).targeted(3)),
        |_| {},
    )
    .unwrap();
    println!(
        "after {steps} steps (loss {first:.3} -> {last:.3}): clean accuracy {:.1}%; eps 0.25: FGSM {:.1}%, iterative {:.1}%; targeted to 3: {:.1}% hit",
        100.0 * clean.accuracy(),
        100.0 * fgsm.accuracy(),
        100.0 * iter.accuracy(),
        100.0 * target.target_hits as f64 / target.n as f64
    );
    assert!(
        clean.accuracy() >= 0.9,
        "the classifier should learn: clean accuracy {}",
        clean.accuracy()
    );
    assert!(
        fgsm.accuracy() < 0.4,
        "FGSM at eps 0.25 should flip most predictions: accuracy {}",
        fgsm.accuracy()
    );
    assert!(
        iter.accuracy() <= fgsm.accuracy() + 0.02,
        "the iterative attack should be at least as strong: {} vs {}",
        iter.accuracy(),
        fgsm.accuracy()
    );
    assert!(
        target.target_hits as f64 / target.n as f64 > 0.5,
        "targeted attack should reach class 3 on most digits"
    );

    // every adversarial image stays in [0, 1] and within eps of the original
    let x = b
        .upload(&[8, 1, SIDE, SIDE], &test.images[..8 * PIXELS])
        .unwrap();
    for a in [
        Attack::fgsm(0.1),
        Attack::iterative(0.1, 4),
        Attack::iterative(0.1, 4).targeted(7),
    ] {
        let xa = read_blocking(
            &b,
            &attack::perturb(&b, &model, &x, &test.labels[..8], &a).unwrap(),
        )
        .unwrap();
        for (&p, &q) in xa.iter().zip(&test.images[..8 * PIXELS]) {
            assert!(
                (0.0..=1.0).contains(&p) && (p - q).abs() <= 0.1 + 1e-6,
                "{a:?}: pixel {q} -> {p}"
            );
        }
    }
}
