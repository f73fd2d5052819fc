//! Autoencoders and PCA: penalties vs finite differences, the contractive closed form vs the
//! Jacobian from the tape, short training runs lower each cost, PCA's components.

use nnlab::autodiff::Graph;
use nnlab::backend::{read_blocking, Backend};
use nnlab::cpu::CpuBackend;
use nnlab::data::mnist::{Mnist, Split};
use nnlab::models::autoencoder::{
    corrupt, AeArch, AeConfig, AeCost, AeKind, Autoencoder, NoiseKind, PIXELS,
};
use nnlab::models::pca;
use nnlab::nn::{Adam, Module, Optimizer};
use nnlab::{rng, Tensor};

#[path = "common/models.rs"]
mod models_common;

use models_common::mnist_dir;

fn cost_value(
    b: &CpuBackend,
    model: &Autoencoder,
    x: &Tensor,
    noisy: Option<&Tensor>,
    cost: &AeCost,
) -> f64 {
    let mut g = Graph::new(b);
    g.set_grad_enabled(false);
    let (total, _) = model.cost(&mut g, x, noisy, cost).unwrap();
    read_blocking(b, g.value(total).unwrap()).unwrap()[0] as f64
}

/// d cost / d parameter from the tape vs central differences, on a few coordinates of each
/// parameter the penalty touches (the code layer) and of the first encoder layer.
fn check_gradients(arch: AeArch, cost: AeCost) {
    let b = CpuBackend::new();
    let model = Autoencoder::new(&b, AeConfig { arch, k: 3 }, 7).unwrap();
    let n = 3;
    let xs = rng::uniform_vec(n * PIXELS, 0.0, 1.0, 5);
    let x = b.upload(&[n, PIXELS], &xs).unwrap();
    let noisy = b
        .upload(&[n, PIXELS], &corrupt(&xs, cost.noise, cost.level, 3))
        .unwrap();
    let mut g = Graph::new(&b);
    let (total, _) = model.cost(&mut g, &x, Some(&noisy), &cost).unwrap();
    g.backward(total).unwrap();
    let mut worst = 0.0f64;
    for p in model.params() {
        if !(p.name().starts_with("code") || p.name() == "enc.0.weight") {
            continue;
        }
        let grad = read_blocking(
            &b,
            &g.param_grad(p).expect("every parameter gets a gradient"),
        )
        .unwrap();
        let vals = read_blocking(&b, p.value()).unwrap();
        let mut coords: Vec<usize> = (0..grad.len()).collect();
        coords.sort_by(|&i, &j| grad[j].abs().total_cmp(&grad[i].abs()));
        coords.truncate(4);
        coords.extend((0..4).map(|k| rng::random_u32(11, k) as usize % grad.len()));
        for &i in &coords {
            // small enough not to cross the encoder's ReLU kinks often, large enough that the
            // f32 cost's rounding (~5e-8) stays ~5e-5 of the quotient
            let h = 1e-3f32;
            let at = |v: f32| {
                let mut w = vals.clone();
                w[i] = v;
                b.assign(p.value(), &b.upload(p.shape(), &w).unwrap())
                    .unwrap();
                cost_value(&b, &model, &x, Some(&noisy), &cost)
            };
            let fd = (at(vals[i] + h) - at(vals[i] - h)) / (2.0 * h as f64);
            b.assign(p.value(), &b.upload(p.shape(), &vals).unwrap())
                .unwrap();
            let err = (fd - grad[i] as f64).abs();
            worst = worst.max(err);
            assert!(
                err <= 2e-4 + 0.03 * fd.abs(),
                "{:?} {}[{i}]: tape {} vs finite differences {fd}",
                cost.kind,
                p.name(),
                grad[i]
            );
        }
    }
    println!(
        "{:?} {arch:?}: gradient vs finite differences, max abs error {worst:.2e}",
        cost.kind
    );
}

#[test]
fn each_cost_gradient_matches_finite_differences() {
    let base = AeCost {
        kind: AeKind::Plain,
        lambda: 0.0,
        noise: NoiseKind::Gaussian,
        level: 0.3,
    };
    check_gradients(AeArch::Dense, base);
    check_gradients(
        AeArch::Dense,
        AeCost {
            kind: AeKind::Sparse,
            lambda: 0.05,
            ..base
        },
    );
    check_gradients(
        AeArch::Dense,
        AeCost {
            kind: AeKind::Contractive,
            lambda: 0.5,
            ..base
        },
    );
    check_gradients(
        AeArch::Dense,
        AeCost {
            kind: AeKind::Denoising,
            ..base
        },
    );
    check_gradients(
        AeArch::Conv,
        AeCost {
            kind: AeKind::Contractive,
            lambda: 0.5,
            ..base
        },
    );
}

/// The closed form sum_j (c_j (1 - c_j))^2 sum_i W_ji^2 equals ||dc/dh||_F^2 built row by row
/// from the tape (one backward pass per code unit) and by finite differences.
#[test]
fn contractive_closed_form_is_the_code_layer_jacobian_norm() {
    let b = CpuBackend::new();
    let model = Autoencoder::new(
        &b,
        AeConfig {
            arch: AeArch::Dense,
            k: 4,
        },
        3,
    )
    .unwrap();
    let (n, hidden) = (2, 256);
    let hs = rng::uniform_vec(n * hidden, 0.0, 1.0, 9);
    let h = b.upload(&[n, hidden], &hs).unwrap();

    let mut g = Graph::new(&b);
    let hv = g.constant(h.clone());
    let c = model.code_from_trunk(&mut g, hv).unwrap();
    let closed = model.contractive_penalty_sum(&mut g, c).unwrap();
    let closed = read_blocking(&b, g.value(closed).unwrap()).unwrap()[0] as f64;

    let mut tape = 0.0f64;
    for j in 0..4 {
        let mut g = Graph::new(&b);
        let hv = g.input(h.clone());
        let c = model.code_from_trunk(&mut g, hv).unwrap();
        let mask: Vec<f32> = (0..n * 4)
            .map(|i| if i % 4 == j { 1.0 } else { 0.0 })
            .collect();
        let m = g.constant(b.upload(&[n, 4], &mask).unwrap());
        let picked = g.mul(c, m).unwrap();
        let s = g.sum(picked).unwrap();
        g.backward(s).unwrap();
        tape += read_blocking(&b, &g.grad(hv).unwrap())
            .unwrap()
            .iter()
            .map(|v| (*v as f64).powi(2))
            .sum::<f64>();
    }
    // finite differences of the codes for every input coordinate of the first row
    let codes = |hh: &[f32]| {
        let mut g = Graph::new(&b);
        g.set_grad_enabled(false);
        let hv = g.constant(b.upload(&[n, hidden], hh).unwrap());
        let c = model.code_from_trunk(&mut g, hv).unwrap();
        read_blocking(&b, g.value(c).unwrap()).unwrap()
    };
    let mut fd_row0 = 0.0f64;
    let eps = 1e-2f32;
    for i in 0..hidden {
        let (mut p, mut m) = (hs.clone(), hs.clone());
        p[i] += eps;
        m[i] -= eps;
        let (cp, cm) = (codes(&p), codes(&m));
        fd_row0 += (0..4)
            .map(|j| ((cp[j] - cm[j]) as f64 / (2.0 * eps as f64)).powi(2))
            .sum::<f64>();
    }
    // the closed form of row 0 alone, from a one-row batch
    let mut g = Graph::new(&b);
    let hv = g.constant(b.upload(&[1, hidden], &hs[..hidden]).unwrap());
    let c = model.code_from_trunk(&mut g, hv).unwrap();
    let row0 = model.contractive_penalty_sum(&mut g, c).unwrap();
    let row0 = read_blocking(&b, g.value(row0).unwrap()).unwrap()[0] as f64;
    println!("contractive: closed form {closed:.6e}, tape {tape:.6e}; row 0: closed {row0:.6e}, finite differences {fd_row0:.6e}");
    assert!(
        (closed - tape).abs() <= 1e-4 * tape,
        "closed form {closed} vs tape {tape}"
    );
    assert!(
        (row0 - fd_row0).abs() <= 1e-3 * fd_row0,
        "closed form {row0} vs finite differences {fd_row0}"
    );
}

fn mnist() -> (Mnist, Mnist) {
    let dir = mnist_dir();
    let train = Mnist::load(&dir, Split::Train)
        .unwrap()
        .slice(10_000..20_000)
        .unwrap();
    let test = Mnist::load(&dir, Split::Test)
        .unwrap()
        .slice(0..500)
        .unwrap();
    (train, test)
}

#[test]
fn short_training_lowers_each_cost() {
    let (train, _) = mnist();
    let b = CpuBackend::new();
    let (batch, steps) = (64, 60);
    for (arch, kind) in [
        (AeArch::Dense, AeKind::Plain),
        (AeArch::Dense, AeKind::Sparse),
        (AeArch::Dense, AeKind::Contractive),
        (AeArch::Dense, AeKind::Denoising),
        (AeArch::Conv, AeKind::Plain),
    ] {
        let cost = AeCost {
            kind,
            lambda: if kind == AeKind::Sparse { 1e-3 } else { 0.1 },
            noise: NoiseKind::Masking,
            level: 0.25,
        };
        let model = Autoencoder::new(&b, AeConfig { arch, k: 8 }, 1).unwrap();
        let mut opt = Adam::new(2e-3, 0.9, 0.999);
        // the same fixed batch before and after, so the comparison is not batch noise
        let idx: Vec<usize> = (0..batch).collect();
        let (fixed, _) = train.gather(&idx).unwrap();
        let fx = b.upload(&[batch, PIXELS], &fixed).unwrap();
        let fnoisy = b
            .upload(
                &[batch, PIXELS],
                &corrupt(&fixed, cost.noise, cost.level, 1),
            )
            .unwrap();
        let before = cost_value(&b, &model, &fx, Some(&fnoisy), &cost);
        for s in 0..steps {
            let idx: Vec<usize> = (0..batch)
                .map(|i| rng::random_u32(s as u64, i as u32) as usize % train.len())
                .collect();
            let (xs, _) = train.gather(&idx).unwrap();
            let x = b.upload(&[batch, PIXELS], &xs).unwrap();
            let noisy = b
                .upload(
                    &[batch, PIXELS],
                    &corrupt(&xs, cost.noise, cost.level, s as u64 + 10),
                )
                .unwrap();
            let mut g = Graph::new(&b);
            let (total, _) = model.cost(&mut g, &x, Some(&noisy), &cost).unwrap();
            g.backward(total).unwrap();
            opt.step(&g, &model.params()).unwrap();
        }
        let after = cost_value(&b, &model, &fx, Some(&fnoisy), &cost);
        println!("{arch:?} {kind:?}: cost {before:.4} -> {after:.4} after {steps} steps");
        assert!(
            after < 0.8 * before,
            "{arch:?} {kind:?}: cost {before} -> {after}"
        );
    }
}

#[test]
fn pca_components_are_orthonormal_with_decreasing_variance() {
    let (train, test) = mnist();
    let n = 3000;
    let k = 16;
    let p = pollster::block_on(pca::fit(
        &CpuBackend::new(),
        &train.images[..n * PIXELS],
        n,
        PIXELS,
        k,
        1,
    ))
    .unwrap();
    for a in 0..k {
        for c in 0..k {
            let dot: f32 = (0..PIXELS)
                .map(|i| p.components[a * PIXELS + i] * p.components[c * PIXELS + i])
                .sum();
            let want = if a == c { 1.0 } else { 0.0 };
            assert!((dot - want).abs() < 1e-4, "components {a}, {c}: dot {dot}");
        }
    }
    assert!(
        p.variances.windows(2).all(|w| w[0] >= w[1]),
        "variances not decreasing: {:?}",
        p.variances
    );
    let ratio = p.explained_variance_ratio();
    assert!(
        ratio.iter().sum::<f64>() < 1.0 && ratio[0] > 0.05,
        "explained variance {ratio:?}"
    );
    // the k leading components are the best rank-k projection: compare with a worse basis (the
    // same number of components from a PCA of k+8, skipping the first) on held-out digits
    let err = |q: &pca::Pca, codes: Vec<f32>| -> f64 {
        q.reconstruct(&codes)
            .iter()
            .zip(&test.images)
            .map(|(r, c)| ((r - c) as f64).powi(2))
            .sum::<f64>()
    };
    let best = err(&p, p.project(&test.images));
    let p2 = pollster::block_on(pca::fit(
        &CpuBackend::new(),
        &train.images[..n * PIXELS],
        n,
        PIXELS,
        4,
        1,
    ))
    .unwrap();
    let fewer = err(&p2, p2.project(&test.images));
    println!("PCA: explained variance of 16 components {:.3}; held-out squared error k=16 {best:.1} vs k=4 {fewer:.1}", ratio.iter().sum::<f64>());
    assert!(best < fewer);
    // the first four components agree with the k=4 fit (up to sign)
    for a in 0..4 {
        let dot: f32 = (0..PIXELS)
            .map(|i| p.components[a * PIXELS + i] * p2.components[a * PIXELS + i])
            .sum();
        assert!(
            dot.abs() > 0.999,
            "component {a} differs between k=16 and k=4: |dot| {}",
            dot.abs()
        );
    }
}

#[test]
fn pca_recovers_a_known_covariance() {
    // data along two known orthogonal directions with variances 9 and 1, plus tiny noise
    let (n, d) = (4000, 10);
    let u: Vec<f32> = (0..d)
        .map(|i| if i < 5 { 1.0 / 5f32.sqrt() } else { 0.0 })
        .collect();
    let v: Vec<f32> = (0..d)
        .map(|i| if i >= 5 { 1.0 / 5f32.sqrt() } else { 0.0 })
        .collect();
    let a = rng::normal_vec(n, 0.0, 3.0, 1);
    let c = rng::normal_vec(n, 0.0, 1.0, 2);
    let e = rng::normal_vec(n * d, 0.0, 0.01, 3);
    let data: Vec<f32> = (0..n)
        .flat_map(|r| (0..d).map(move |i| (r, i)))
        .map(|(r, i)| a[r] * u[i] + c[r] * v[i] + e[r * d + i] + 0.5)
        .collect();
    let p = pollster::block_on(pca::fit(&CpuBackend::new(), &data, n, d, 2, 4)).unwrap();
    let dot = |comp: usize, w: &[f32]| {
        (0..d)
            .map(|i| p.components[comp * d + i] * w[i])
            .sum::<f32>()
            .abs()
    };
    println!(
        "known covariance: variances {:?}, |<c0,u>| {}, |<c1,v>| {}",
        p.variances,
        dot(0, &u),
        dot(1, &v)
    );
    assert!(dot(0, &u) > 0.999 && dot(1, &v) > 0.999);
    assert!((p.variances[0] - 9.0).abs() < 0.6 && (p.variances[1] - 1.0).abs() < 0.1);
}
