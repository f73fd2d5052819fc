//! The GAN's training options (issue 20's recipe, issue 19's D options): D's loss with the
//! minibatch-dispersion feature, label smoothing, the smoothness term and FGSM real digits vs
//! finite differences on D's parameters; the dispersion feature vs finite differences on its
//! input; spectral normalisation (its gradient through sigma vs finite differences, sigma vs the
//! largest singular value); the EMA update; the class histogram.

use nnlab::autodiff::Graph;
use nnlab::backend::read_blocking;
use nnlab::cpu::CpuBackend;
use nnlab::models::gan::{
    self, minibatch_dispersion, Discriminator, GanArch, GanLoss, Generator, Latent, PIXELS,
};
use nnlab::models::gan_metrics::{class_histogram, class_share_range};
use nnlab::models::gan_tricks::{self, DPoints, Perturbation, Tricks};
use nnlab::nn::Module;
use nnlab::rng;

#[path = "common/models.rs"]
mod models_common;

use models_common::{probe, probe_param, small_gan};

/// Which coordinate `probe` draws besides the largest gradients.
const PROBE_SEED: u64 = 11;

/// D's loss with `tricks` for fixed real digits, fakes and perturbed points (data to the tape:
/// FGSM's x~, the smoothness term's x + r and its target D(x), built once at the start).
#[allow(clippy::too_many_arguments)]
fn d_objective(
    b: &CpuBackend,
    disc: &Discriminator,
    loss: GanLoss,
    tricks: &Tricks,
    x: &[f32],
    fake: &[f32],
    points: &DPoints,
    n: usize,
) -> f64 {
    let mut g = Graph::new(b);
    let xt = b.upload(&[n, PIXELS], x).unwrap();
    let ft = b.upload(&[n, PIXELS], fake).unwrap();
    let (l, _, _) =
        gan_tricks::d_loss_at(&mut g, disc, loss, tricks, &xt, ft, Some(points), 5).unwrap();
    read_blocking(b, g.value(l).unwrap()).unwrap()[0] as f64
}

fn check(arch: GanArch, loss: GanLoss, mbstd: bool, tricks: Tricks) {
    check_d(arch, loss, mbstd, false, tricks)
}

/// `check` with or without spectral norm (`sn`: u and v are constants of the tape, so the
/// finite differences of the loss at fixed u, v are what the tape's gradient must match).
fn check_d(arch: GanArch, loss: GanLoss, mbstd: bool, sn: bool, tricks: Tricks) {
    let b = CpuBackend::new();
    let disc = Discriminator::with_options(&b, small_gan(arch), 5, mbstd, sn).unwrap();
    assert_eq!(disc.has_sn(), sn);
    let n = 4;
    let x = rng::uniform_vec(n * PIXELS, -1.0, 1.0, 1);
    let fake = rng::uniform_vec(n * PIXELS, -1.0, 1.0, 2);
    let mut g = Graph::new(&b);
    let xt = b.upload(&[n, PIXELS], &x).unwrap();
    let ft = b.upload(&[n, PIXELS], &fake).unwrap();
    let points = gan_tricks::d_points(&b, &disc, loss, &tricks, &xt, None, 5).unwrap();
    // the training path (points built inside from this tape's D(x)) gives the same loss
    let (l, _, _) = gan_tricks::d_loss_with(&mut g, &disc, loss, &tricks, &xt, ft, 5).unwrap();
    let direct = read_blocking(&b, g.value(l).unwrap()).unwrap()[0] as f64;
    let fixed = d_objective(&b, &disc, loss, &tricks, &x, &fake, &points, n);
    assert!((direct - fixed).abs() < 1e-5, "{direct} vs {fixed}");
    g.backward(l).unwrap();
    let mut worst = 0.0f64;
    let ps = disc.params();
    // first layer, output layer and (with the feature) the dispersion weight
    let mut probed = vec![ps[0], ps[ps.len() - 2]];
    if mbstd {
        probed.push(ps[ps.len() - 1]);
    }
    for p in probed {
        let grad = read_blocking(&b, &g.param_grad(p).unwrap()).unwrap();
        let objective = || d_objective(&b, &disc, loss, &tricks, &x, &fake, &points, n);
        let name = format!(
            "{arch:?} {loss:?} mbstd {mbstd} sn {sn} {tricks:?}: {}",
            p.name()
        );
        worst = worst.max(probe_param(
            &b, &name, p, &grad, 1e-3, PROBE_SEED, &objective,
        ));
    }
    println!("{arch:?} {loss:?} mbstd {mbstd} sn {sn} {tricks:?}: max abs error {worst:.2e}");
}

#[test]
fn spectrally_normalised_d_matches_finite_differences() {
    for arch in [GanArch::Dense, GanArch::Dcgan] {
        for loss in [GanLoss::CrossEntropy, GanLoss::LeastSquares] {
            check_d(arch, loss, false, true, Tricks::default());
        }
        check_d(
            arch,
            GanLoss::CrossEntropy,
            true,
            true,
            Tricks {
                real_label: 0.9,
                ..Default::default()
            },
        );
    }
}

/// The largest singular value of a (rows, cols) matrix on the host: power iteration on W^T W
/// in f64 to convergence.
fn top_singular_value(w: &[f32], rows: usize, cols: usize) -> f64 {
    let mut v = vec![1.0f64; cols];
    let mut sigma = 0.0;
    for _ in 0..2000 {
        let wv: Vec<f64> = (0..rows)
            .map(|r| (0..cols).map(|c| w[r * cols + c] as f64 * v[c]).sum())
            .collect();
        let wtwv: Vec<f64> = (0..cols)
            .map(|c| (0..rows).map(|r| w[r * cols + c] as f64 * wv[r]).sum())
            .collect();
        let n = wtwv.iter().map(|x| x * x).sum::<f64>().sqrt();
        v = wtwv.iter().map(|x| x / n).collect();
        sigma = n.sqrt();
    }
    sigma
}

#[test]
fn spectral_norm_estimates_the_largest_singular_value_and_persists_its_vectors() {
    let b = CpuBackend::new();
    let disc = Discriminator::with_options(&b, small_gan(GanArch::Dcgan), 5, false, true).unwrap();
    // u, v of the three weights are saved with D (buffers) under <layer>.sn_u / .sn_v
    let names: Vec<&str> = disc.buffers().iter().map(|p| p.name()).collect();
    assert_eq!(
        names,
        ["d.0.sn_u", "d.0.sn_v", "d.1.sn_u", "d.1.sn_v", "d.2.sn_u", "d.2.sn_v"]
    );
    disc.restart_power_iteration(&b, 200).unwrap();
    let sigmas = disc.spectral_norms(&b).unwrap().unwrap();
    for (k, p) in disc
        .params()
        .iter()
        .filter(|p| p.name().ends_with("weight"))
        .enumerate()
    {
        let s = p.shape();
        let (rows, cols) = (s[0], s[1..].iter().product());
        let want = top_singular_value(&read_blocking(&b, p.value()).unwrap(), rows, cols);
        let got = sigmas[k] as f64;
        assert!(
            (got - want).abs() <= 1e-3 * want,
            "{}: sigma {got} vs largest singular value {want}",
            p.name()
        );
    }
    // one training step runs one power-iteration step (u moves with the weights), stays finite
    let gen = Generator::new(&b, small_gan(GanArch::Dcgan), 1).unwrap();
    let (mut og, mut od) = (
        nnlab::nn::Adam::new(1e-2, 0.5, 0.999),
        nnlab::nn::Adam::new(1e-2, 0.5, 0.999),
    );
    let u0 = read_blocking(&b, disc.buffers()[2].value()).unwrap();
    let x = b
        .upload(&[4, PIXELS], &rng::uniform_vec(4 * PIXELS, -1.0, 1.0, 7))
        .unwrap();
    let z = b
        .upload(&[4, 8], &gan::sample_z(4, 8, Latent::Normal, 3))
        .unwrap();
    for _ in 0..2 {
        let out = gan::train_step(
            &b,
            &gen,
            &disc,
            &mut og,
            &mut od,
            GanLoss::CrossEntropy,
            &x,
            &z,
        )
        .unwrap();
        assert!(read_blocking(&b, &out.d_loss).unwrap()[0].is_finite());
    }
    assert_ne!(read_blocking(&b, disc.buffers()[2].value()).unwrap(), u0);
    // a D file with the vectors says so
    let path = std::env::temp_dir().join(format!("nnlab_sn_d_{}.safetensors", std::process::id()));
    nnlab::weights::save_file(&b, &disc.state(), &path, None).unwrap();
    let ts = nnlab::weights::from_bytes(&nnlab::weights::read_file(&path).unwrap()).unwrap();
    std::fs::remove_file(&path).unwrap();
    assert_eq!(
        gan::d_parts_from_tensors(&ts),
        gan::DParts {
            mbstd: false,
            sn: true,
            block: false
        }
    );
}

#[test]
fn d_loss_with_options_matches_finite_differences() {
    let smooth = Perturbation {
        weight: 2.0,
        eps: 0.1,
    };
    let fgsm = Perturbation {
        weight: 0.5,
        eps: 0.1,
    };
    for arch in [GanArch::Dense, GanArch::Dcgan] {
        for loss in [GanLoss::CrossEntropy, GanLoss::LeastSquares] {
            check(arch, loss, true, Tricks::default());
            check(
                arch,
                loss,
                false,
                Tricks {
                    real_label: 0.9,
                    ..Default::default()
                },
            );
            check(
                arch,
                loss,
                false,
                Tricks {
                    smooth: Some(smooth),
                    ..Default::default()
                },
            );
            check(
                arch,
                loss,
                true,
                Tricks {
                    real_label: 0.9,
                    smooth: Some(smooth),
                    fgsm: Some(fgsm),
                },
            );
        }
    }
}

#[test]
fn perturbed_points_move_d_more_than_random_ones_of_the_same_size() {
    let b = CpuBackend::new();
    let disc = Discriminator::new(&b, small_gan(GanArch::Dcgan), 5).unwrap();
    let n = 16;
    let x = b
        .upload(&[n, PIXELS], &rng::uniform_vec(n * PIXELS, -1.0, 1.0, 4))
        .unwrap();
    let eps = 0.05;
    let tricks = Tricks {
        real_label: 1.0,
        smooth: Some(Perturbation { weight: 1.0, eps }),
        fgsm: Some(Perturbation { weight: 0.5, eps }),
    };
    let pts = gan_tricks::d_points(&b, &disc, GanLoss::CrossEntropy, &tricks, &x, None, 9).unwrap();
    let xv = read_blocking(&b, &x).unwrap();
    // a random sign perturbation of the same L-inf size (in G's [-1, 1] range: 2 eps)
    let noise = rng::uniform_vec(n * PIXELS, -1.0, 1.0, 10);
    let rand: Vec<f32> = xv
        .iter()
        .zip(&noise)
        .map(|(v, r)| (v + 2.0 * eps * r.signum()).clamp(-1.0, 1.0))
        .collect();
    let rand = b.upload(&[n, PIXELS], &rand).unwrap();
    let (xr, _) = pts.smooth.as_ref().unwrap();
    for p in [xr, pts.adv.as_ref().unwrap()] {
        let pv = read_blocking(&b, p).unwrap();
        let linf = pv
            .iter()
            .zip(&xv)
            .map(|(a, c)| (a - c).abs())
            .fold(0.0f32, f32::max);
        assert!(linf <= 2.0 * eps + 1e-6, "perturbation {linf} over budget");
    }
    let div = |p: &nnlab::tensor::Tensor| {
        let t = gan_tricks::smoothness_divergence(&b, &disc, GanLoss::CrossEntropy, &x, p).unwrap();
        read_blocking(&b, &t).unwrap()[0]
    };
    let (adv, random) = (div(xr), div(&rand));
    assert!(
        adv > random,
        "adversarial r moves D less than random noise: {adv} vs {random}"
    );
}

#[test]
fn minibatch_dispersion_matches_its_definition_and_finite_differences() {
    let b = CpuBackend::new();
    let (n, f) = (5, 7);
    let h = rng::uniform_vec(n * f, -2.0, 2.0, 3);
    let value = |hh: &[f32]| -> (f64, Vec<f32>) {
        let mut g = Graph::new(&b);
        let hv = g.input(b.upload(&[n, f], hh).unwrap());
        let s = minibatch_dispersion(&mut g, hv).unwrap();
        let out = read_blocking(&b, g.value(s).unwrap()).unwrap();
        (out.iter().map(|&v| v as f64).sum(), out)
    };
    // host definition: mean over features of the mean absolute deviation over the batch
    let mut expect = 0.0f64;
    for j in 0..f {
        let m: f64 = (0..n).map(|i| h[i * f + j] as f64).sum::<f64>() / n as f64;
        expect += (0..n).map(|i| (h[i * f + j] as f64 - m).abs()).sum::<f64>() / n as f64;
    }
    expect /= f as f64;
    let (_, out) = value(&h);
    assert_eq!(out.len(), n);
    for v in out {
        assert!((v as f64 - expect).abs() < 1e-5, "{v} vs {expect}");
    }
    let mut g = Graph::new(&b);
    let hv = g.input(b.upload(&[n, f], &h).unwrap());
    let s = minibatch_dispersion(&mut g, hv).unwrap();
    let total = g.sum(s).unwrap();
    g.backward(total).unwrap();
    let grad = read_blocking(&b, &g.grad(hv).unwrap()).unwrap();
    let set = |i: usize, v: f32| {
        let mut hh = h.clone();
        hh[i] = v;
        value(&hh).0
    };
    probe("dispersion wrt h", &grad, &h, 1e-3, PROBE_SEED, &set);
}

#[test]
fn ema_update_averages_and_recalibration_moves_batchnorm_statistics() {
    let b = CpuBackend::new();
    let cfg = small_gan(GanArch::Dcgan);
    let gen = Generator::new(&b, cfg, 1).unwrap();
    let ema = gan_tricks::ema_copy(&b, &gen).unwrap();
    let other = Generator::new(&b, cfg, 2).unwrap();
    let before = read_blocking(&b, ema.params()[0].value()).unwrap();
    let target = read_blocking(&b, other.params()[0].value()).unwrap();
    gan_tricks::ema_update(&b, &ema, &other, 0.75).unwrap();
    let after = read_blocking(&b, ema.params()[0].value()).unwrap();
    for ((a, x), y) in after.iter().zip(&before).zip(&target) {
        assert!((a - (0.75 * x + 0.25 * y)).abs() < 1e-6);
    }
    assert!(gan_tricks::ema_update(&b, &ema, &other, 1.0).is_err());
    let rm = ema.buffers()[0];
    let zeros = read_blocking(&b, rm.value()).unwrap();
    gan_tricks::recalibrate_batchnorm(&b, &ema, Latent::Normal, 16, 5, 3).unwrap();
    assert_ne!(read_blocking(&b, rm.value()).unwrap(), zeros);
    let out = read_blocking(
        &b,
        &gan::generate(&b, &ema, &gan::sample_z(3, 8, Latent::Normal, 1)).unwrap(),
    )
    .unwrap();
    assert!(out.iter().all(|v| v.is_finite()));
}

#[test]
fn class_histogram_counts_argmax_labels() {
    let mut probs = vec![0.0f32; 4 * 10];
    for (row, k) in [3usize, 3, 7, 0].iter().enumerate() {
        probs[row * 10 + k] = 0.9;
        probs[row * 10 + (k + 1) % 10] = 0.1;
    }
    let h = class_histogram(&probs, 10).unwrap();
    assert_eq!(h, vec![1, 0, 0, 2, 0, 0, 0, 1, 0, 0]);
    assert_eq!(class_share_range(&h), (0.0, 50.0));
    assert!(class_histogram(&probs[..15], 10).is_err());
    let bad = Tricks {
        real_label: 1.5,
        ..Default::default()
    };
    assert!(bad.validate().is_err());
}

/// Mean and standard deviation of a parameter's values.
fn mean_std(b: &CpuBackend, p: &nnlab::autodiff::Param) -> (f64, f64) {
    let v = read_blocking(b, p.value()).unwrap();
    let n = v.len() as f64;
    let mean = v.iter().map(|x| *x as f64).sum::<f64>() / n;
    let var = v.iter().map(|x| (*x as f64 - mean).powi(2)).sum::<f64>() / n;
    (mean, var.sqrt())
}

#[test]
fn dcgan_weight_init_draws_weights_from_n_0_002_and_gammas_from_n_1_002() {
    let b = CpuBackend::new();
    let cfg = gan::GanConfig {
        arch: GanArch::Dcgan,
        latent: 16,
        width: 8,
        extra_conv: false,
        extra_conv_14: false,
    };
    let gen = Generator::with_init(&b, cfg, 1, gan::WeightInit::Dcgan).unwrap();
    let disc = Discriminator::with_init(&b, cfg, 2, true, false, gan::WeightInit::Dcgan).unwrap();
    let kaiming = Generator::with_init(&b, cfg, 1, gan::WeightInit::Kaiming).unwrap();
    let mut seen = 0;
    for p in gen.params().into_iter().chain(disc.params()) {
        let (mean, std) = mean_std(&b, p);
        let name = p.name().to_string();
        // g.1 and g.3 are G's BatchNorms
        let bn = name.starts_with("g.1.") || name.starts_with("g.3.");
        if name.ends_with(".bias") {
            assert_eq!((mean, std), (0.0, 0.0), "{name}: biases start at zero");
        } else if bn {
            assert!(
                (mean - 1.0).abs() < 0.01 && std > 0.005 && std < 0.04,
                "{name}: {mean} {std}"
            );
        } else if p.value().numel() >= 64 {
            assert!(
                mean.abs() < 0.01 && (std - 0.02).abs() < 0.005,
                "{name}: {mean} {std}"
            );
        }
        seen += 1;
    }
    assert!(seen >= 13, "G's and D's parameters: {seen}");
    // the default stays Kaiming: G's last transposed conv (fan_in 16) has std sqrt(2 / 16)
    let last = kaiming
        .params()
        .into_iter()
        .find(|p| p.name() == "g.4.weight")
        .unwrap();
    assert!((mean_std(&b, last).1 - 0.354).abs() < 0.1);
    // and a DCGAN-initialised G makes finite digits in [0, 1]
    let z = gan::sample_z(4, 16, Latent::Normal, 3);
    let x = read_blocking(&b, &gan::generate(&b, &gen, &z).unwrap()).unwrap();
    assert!(x.iter().all(|v| v.is_finite() && (0.0..=1.0).contains(v)));
}

#[test]
fn decayed_lr_falls_linearly_from_the_start_to_the_end_factor() {
    let lr = 2e-4f32;
    assert_eq!(gan_tricks::decayed_lr(lr, 0.0, 0, 3000), lr);
    assert_eq!(gan_tricks::decayed_lr(lr, 0.0, 2999, 3000), 0.0);
    assert!((gan_tricks::decayed_lr(lr, 0.1, 2999, 3000) - 2e-5).abs() < 1e-9);
    // halfway (step 1 of 3): the mean of the two ends
    assert!((gan_tricks::decayed_lr(lr, 0.5, 1, 3) - 1.5e-4).abs() < 1e-9);
    // constant with factor 1, and for a one-step run
    assert_eq!(gan_tricks::decayed_lr(lr, 1.0, 1234, 3000), lr);
    assert_eq!(gan_tricks::decayed_lr(lr, 0.0, 0, 1), lr);
}

#[test]
fn ema_decay_warms_up_to_the_given_decay() {
    // the first update copies G almost entirely (0.1), later ones approach the decay
    assert!((gan_tricks::ema_decay_at(0.999, 0) - 0.1).abs() < 1e-7);
    assert!((gan_tricks::ema_decay_at(0.999, 90) - 0.91).abs() < 1e-6);
    assert_eq!(gan_tricks::ema_decay_at(0.999, 100_000), 0.999);
    // never above the given decay
    assert_eq!(gan_tricks::ema_decay_at(0.05, 0), 0.05);
    for t in [0, 10, 1000, 9000] {
        let d = gan_tricks::ema_decay_at(0.999, t);
        assert!(d > 0.0 && d <= 0.999 && d <= gan_tricks::ema_decay_at(0.999, t + 1));
    }
}
