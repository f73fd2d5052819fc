//! GANs: each loss's gradient and G's gradient through D vs finite differences, a short
//! training run moves D's accuracy away from chance, seeded sampling repeats, and the quality
//! metrics on known cases.

use nnlab::autodiff::Graph;
use nnlab::backend::{read_blocking, Backend};
use nnlab::cpu::CpuBackend;
use nnlab::data::mnist::{Mnist, Split};
use nnlab::models::gan::{
    self, d_loss, g_loss, Discriminator, GanArch, GanConfig, GanLoss, Generator, Latent, PIXELS,
};
use nnlab::models::gan_metrics::{classifier_score, frechet_distance};
use nnlab::nn::{Adam, Module};
use nnlab::rng;

#[path = "common/models.rs"]
mod models_common;

use models_common::{mnist_dir, probe, probe_param, small_gan};

/// Which coordinate `probe` draws besides the largest gradients.
const PROBE_SEED: u64 = 7;

const LOSSES: [GanLoss; 3] = [
    GanLoss::CrossEntropy,
    GanLoss::Minimax,
    GanLoss::LeastSquares,
];

/// D loss (or G loss) for fixed real images and z, in training mode as in a step.
fn losses(
    b: &CpuBackend,
    gen: &Generator,
    disc: &Discriminator,
    loss: GanLoss,
    x: &[f32],
    z: &[f32],
    n: usize,
) -> (f64, f64) {
    let mut g = Graph::new(b);
    g.set_grad_enabled(false);
    let xv = g.constant(b.upload(&[n, PIXELS], x).unwrap());
    let zv = g.constant(b.upload(&[n, gen.config.latent], z).unwrap());
    let f = gen.forward(&mut g, zv).unwrap();
    let ro = disc.forward(&mut g, xv).unwrap();
    let fo = disc.forward(&mut g, f).unwrap();
    let dl = d_loss(&mut g, loss, ro, fo).unwrap();
    let gl = g_loss(&mut g, loss, fo).unwrap();
    let v = |t| read_blocking(b, g.value(t).unwrap()).unwrap()[0] as f64;
    (v(dl), v(gl))
}

fn check(arch: GanArch, loss: GanLoss) {
    check_config(small_gan(arch), loss, false)
}

/// D's and G's gradients vs finite differences for cfg; `d_block`: D with the residual block,
/// its second conv given random weights (added, it starts at zero, which no gradient would
/// pass through to the first).
fn check_config(cfg: GanConfig, loss: GanLoss, d_block: bool) {
    let (b, arch) = (CpuBackend::new(), cfg.arch);
    // BatchNorm in training mode normalises with batch statistics, which finite differences
    // see too; the running-stat update does not change the loss of the next call
    let gen = Generator::new(&b, cfg, 3).unwrap();
    let mut disc = Discriminator::new(&b, cfg, 5).unwrap();
    if d_block {
        disc.add_block(&b, 6).unwrap();
        let r2 = (disc.params().into_iter())
            .find(|p| p.name() == "d.r2.weight")
            .unwrap();
        let v = rng::normal_vec(r2.value().numel(), 0.0, 0.1, 8);
        b.assign(r2.value(), &b.upload(r2.shape(), &v).unwrap())
            .unwrap();
    }
    let n = 4;
    let x = rng::uniform_vec(n * PIXELS, -1.0, 1.0, 1);
    let z = gan::sample_z(n, cfg.latent, Latent::Normal, 2);
    let (h, mut worst) = (1e-3f32, 0.0f64);
    for which in ["D", "G"] {
        let mut g = Graph::new(&b);
        let xv = g.constant(b.upload(&[n, PIXELS], &x).unwrap());
        let zv = g.input(b.upload(&[n, cfg.latent], &z).unwrap());
        let f = gen.forward(&mut g, zv).unwrap();
        let ro = disc.forward(&mut g, xv).unwrap();
        let fo = disc.forward(&mut g, f).unwrap();
        let objective = if which == "D" {
            d_loss(&mut g, loss, ro, fo).unwrap()
        } else {
            g_loss(&mut g, loss, fo).unwrap()
        };
        g.backward(objective).unwrap();
        let value = |zz: &[f32]| {
            let (d, gl) = losses(&b, &gen, &disc, loss, &x, zz, n);
            if which == "D" {
                d
            } else {
                gl
            }
        };
        // D's loss on D's first and last layers; G's loss through D on G's first layer and z
        let params = if which == "D" {
            // and the residual block's weights when D has it
            let mut ps = vec![disc.params()[0], *disc.params().last().unwrap()];
            ps.extend(
                disc.params()
                    .into_iter()
                    .filter(|p| p.name() == "d.r1.weight" || p.name() == "d.r2.weight"),
            );
            ps
        } else {
            // and the extra stride-1 convs' weights when G has them
            let mut ps = vec![gen.params()[0]];
            ps.extend(
                gen.params()
                    .into_iter()
                    .filter(|p| p.name() == "g.m.weight" || p.name() == "g.m2.weight"),
            );
            ps
        };
        for p in params {
            let grad = read_blocking(&b, &g.param_grad(p).unwrap()).unwrap();
            let name = format!("{arch:?} {loss:?} {which} loss, {}", p.name());
            let objective = || value(&z);
            worst = worst.max(probe_param(&b, &name, p, &grad, h, PROBE_SEED, &objective));
        }
        // z through a D with the block: its gradient is checked through G's first layer (whose
        // gradient comes through the block) rather than on z itself, where the tape and
        // central differences were measured 2e-3 to 4e-3 apart at small gradients both with
        // and without the block (h 1e-2; kinks of G's ReLUs after BatchNorm over 4 samples and
        // of D's LeakyReLUs), over this probe's slack once the block adds kinks
        if which == "G" && !d_block {
            let gz = read_blocking(&b, &g.grad(zv).unwrap()).unwrap();
            assert!(
                gz.iter().any(|v| v.abs() > 1e-4),
                "{arch:?} {loss:?}: no gradient reaches z through D"
            );
            let set = |i: usize, v: f32| {
                let mut zz = z.clone();
                zz[i] = v;
                value(&zz)
            };
            worst = worst.max(probe(
                &format!("{arch:?} {loss:?} G loss, z"),
                &gz,
                &z,
                h,
                PROBE_SEED,
                &set,
            ));
        }
    }
    println!("{arch:?} {loss:?}: D and G losses' gradients vs finite differences, max abs error {worst:.2e}");
}

#[test]
fn loss_gradients_and_g_through_d_match_finite_differences() {
    for loss in LOSSES {
        check(GanArch::Dense, loss);
        check(GanArch::Dcgan, loss);
    }
}

/// A DCGAN G with the extra stride-1 transposed convs (7x7, and 14x14 too): gradients vs
/// finite differences (their weights among the probed), and its file says which it has (an
/// old file without `g.m.*` has neither).
#[test]
fn extra_conv_generator_matches_finite_differences_and_its_file_says_so() {
    let mut cfg = small_gan(GanArch::Dcgan);
    cfg.extra_conv = true;
    check_config(cfg, GanLoss::CrossEntropy, false);
    cfg.extra_conv_14 = true;
    check_config(cfg, GanLoss::CrossEntropy, false);
    let b = CpuBackend::new();
    for (extra, extra14) in [(false, false), (true, false), (true, true)] {
        cfg.extra_conv = extra;
        cfg.extra_conv_14 = extra14;
        let gen = Generator::new(&b, cfg, 1).unwrap();
        assert_eq!(
            gen.batchnorms().len(),
            2 + extra as usize + extra14 as usize
        );
        let ts: Vec<_> = gen
            .state()
            .iter()
            .map(|p| nnlab::weights::NamedTensor {
                name: p.name().to_string(),
                shape: p.shape().to_vec(),
                data: read_blocking(&b, p.value()).unwrap(),
            })
            .collect();
        assert_eq!(gan::config_from_tensors(&ts).unwrap(), cfg);
        let z = gan::sample_z(3, cfg.latent, Latent::Normal, 4);
        let out = read_blocking(&b, &gan::generate(&b, &gen, &z).unwrap()).unwrap();
        assert_eq!(out.len(), 3 * PIXELS);
        assert!(out.iter().all(|v| (0.0..=1.0).contains(v)));
    }
    let dense = GanConfig {
        arch: GanArch::Dense,
        latent: 8,
        width: 4,
        extra_conv: true,
        extra_conv_14: false,
    };
    assert!(Generator::new(&b, dense, 1).is_err());
    let dense14 = GanConfig {
        extra_conv: false,
        extra_conv_14: true,
        ..dense
    };
    assert!(Generator::new(&b, dense14, 1).is_err());
}

/// D's residual block: gradients vs finite differences (its two weights probed, for each loss);
/// added to a D it leaves every logit as it was (the second conv starts at zero), its file
/// says it has it; refused twice, on a dense D and with spectral norm.
#[test]
fn d_residual_block_matches_finite_differences_and_starts_as_the_identity() {
    for loss in LOSSES {
        check_config(small_gan(GanArch::Dcgan), loss, true);
    }
    let b = CpuBackend::new();
    let cfg = small_gan(GanArch::Dcgan);
    let mut disc = Discriminator::new(&b, cfg, 5).unwrap();
    let n = 5;
    let x = b
        .upload(&[n, PIXELS], &rng::uniform_vec(n * PIXELS, -1.0, 1.0, 3))
        .unwrap();
    let logits = |d: &Discriminator| {
        let mut g = Graph::new(&b);
        g.set_grad_enabled(false);
        let xv = g.constant(x.clone());
        let o = d.forward(&mut g, xv).unwrap();
        read_blocking(&b, g.value(o).unwrap()).unwrap()
    };
    let before = logits(&disc);
    let names = |d: &Discriminator| -> Vec<nnlab::weights::NamedTensor> {
        (d.state().iter())
            .map(|p| nnlab::weights::NamedTensor {
                name: p.name().to_string(),
                shape: p.shape().to_vec(),
                data: read_blocking(&b, p.value()).unwrap(),
            })
            .collect()
    };
    assert!(!gan::d_parts_from_tensors(&names(&disc)).block);
    disc.add_block(&b, 9).unwrap();
    assert!(disc.has_block());
    assert_eq!(logits(&disc), before, "the added block changed D's logits");
    assert!(gan::d_parts_from_tensors(&names(&disc)).block);
    assert_eq!(disc.params().len(), 6 + 4);
    assert!(disc.add_block(&b, 9).is_err(), "a second block");
    let mut dense = Discriminator::new(&b, small_gan(GanArch::Dense), 5).unwrap();
    assert!(dense.add_block(&b, 9).is_err(), "a dense D");
    let mut sn = Discriminator::with_options(&b, cfg, 5, false, true).unwrap();
    assert!(sn.add_block(&b, 9).is_err(), "spectral norm");
}

#[test]
fn sampling_with_a_seed_repeats() {
    let b = CpuBackend::new();
    let gen = Generator::new(&b, small_gan(GanArch::Dcgan), 9).unwrap();
    let z1 = gan::sample_z(5, 8, Latent::Uniform, 77);
    let z2 = gan::sample_z(5, 8, Latent::Uniform, 77);
    assert_eq!(z1, z2);
    assert!(z1.iter().all(|v| (-1.0..=1.0).contains(v)));
    let a = read_blocking(&b, &gan::generate(&b, &gen, &z1).unwrap()).unwrap();
    let c = read_blocking(&b, &gan::generate(&b, &gen, &z2).unwrap()).unwrap();
    assert_eq!(a, c);
    assert!(a.iter().all(|v| (0.0..=1.0).contains(v)));
    assert_ne!(
        gan::sample_z(5, 8, Latent::Normal, 78),
        gan::sample_z(5, 8, Latent::Normal, 77)
    );
}

#[test]
fn short_training_moves_d_away_from_chance() {
    let dir = mnist_dir();
    let train = Mnist::load(&dir, Split::Train)
        .unwrap()
        .slice(10_000..15_000)
        .unwrap();
    let b = CpuBackend::new();
    for loss in [GanLoss::CrossEntropy, GanLoss::LeastSquares] {
        let cfg = GanConfig {
            arch: GanArch::Dense,
            latent: 16,
            width: 8,
            extra_conv: false,
            extra_conv_14: false,
        };
        let gen = Generator::new(&b, cfg, 1).unwrap();
        let disc = Discriminator::new(&b, cfg, 2).unwrap();
        let (mut og, mut od) = (Adam::new(2e-4, 0.5, 0.999), Adam::new(2e-4, 0.5, 0.999));
        let batch = 32;
        let mut acc = Vec::new();
        for step in 0..30 {
            let idx: Vec<usize> = (0..batch)
                .map(|i| rng::random_u32(step, i as u32) as usize % train.len())
                .collect();
            let (xs, _) = train.gather(&idx).unwrap();
            let x = b
                .upload(&[batch, PIXELS], &gan::to_tanh_range(&xs))
                .unwrap();
            let z = b
                .upload(
                    &[batch, 16],
                    &gan::sample_z(batch, 16, Latent::Normal, 100 + step),
                )
                .unwrap();
            let out = gan::train_step(&b, &gen, &disc, &mut og, &mut od, loss, &x, &z).unwrap();
            let r = read_blocking(&b, &out.real_out).unwrap();
            let f = read_blocking(&b, &out.fake_out).unwrap();
            let d = read_blocking(&b, &out.d_loss).unwrap()[0];
            let gl = read_blocking(&b, &out.g_loss).unwrap()[0];
            assert!(d.is_finite() && gl.is_finite());
            acc.push(gan::StepOutput::stats(loss, d, gl, &r, &f).d_accuracy);
        }
        let late: f32 = acc[20..].iter().sum::<f32>() / 10.0;
        println!(
            "{loss:?}: D accuracy first step {:.2}, mean of steps 20..30 {late:.2}",
            acc[0]
        );
        assert!(
            late > 0.65,
            "{loss:?}: D accuracy stayed near chance ({late})"
        );
    }
}

#[test]
fn quality_metrics_on_known_cases() {
    // ten confident, evenly used classes score 10; one class scores 1
    let mut even = vec![0.0f32; 100 * 10];
    let mut one = vec![0.0f32; 100 * 10];
    for i in 0..100 {
        even[i * 10 + i % 10] = 1.0;
        one[i * 10 + 3] = 1.0;
    }
    assert!((classifier_score(&even, 10).unwrap() - 10.0).abs() < 1e-6);
    assert!((classifier_score(&one, 10).unwrap() - 1.0).abs() < 1e-6);
    // identical sets: distance 0; a shifted copy: |shift|^2
    let dim = 6;
    let a = rng::normal_vec(2000 * dim, 0.0, 1.0, 3);
    assert!(frechet_distance(&a, &a, dim).unwrap() < 1e-6);
    let shifted: Vec<f32> = a.iter().map(|v| v + 0.5).collect();
    let d = frechet_distance(&a, &shifted, dim).unwrap();
    assert!((d - 0.25 * dim as f64).abs() < 1e-4, "shifted copy: {d}");
    // scaled copy: per dimension (s - 1)^2 var with var ~ 1
    let scaled: Vec<f32> = a.iter().map(|v| v * 2.0).collect();
    let d = frechet_distance(&a, &scaled, dim).unwrap();
    assert!((d - dim as f64).abs() < 0.6, "scaled copy: {d}");
}

/// The page runs a step as two worker calls on a slow adapter (D's half, then G's, the state
/// kept in the worker between them): the same weights, running statistics and losses as one
/// step, to the bit, for both architectures and a loss of each kind.
#[test]
fn a_step_in_two_halves_equals_one_step() {
    let b = CpuBackend::new();
    let tricks = nnlab::models::gan_tricks::Tricks {
        real_label: 0.9,
        ..Default::default()
    };
    for arch in [GanArch::Dense, GanArch::Dcgan] {
        for loss in [GanLoss::CrossEntropy, GanLoss::LeastSquares] {
            let cfg = small_gan(arch);
            let make = || {
                let gen = Generator::new(&b, cfg, 1).unwrap();
                let disc = Discriminator::new(&b, cfg, 2).unwrap();
                let opts = (Adam::new(2e-4, 0.5, 0.999), Adam::new(2e-4, 0.5, 0.999));
                (gen, disc, opts)
            };
            let (g1, d1, (mut og1, mut od1)) = make();
            let (g2, d2, (mut og2, mut od2)) = make();
            let n = 6;
            for step in 0..3u64 {
                let x = rng::uniform_vec(n * PIXELS, -1.0, 1.0, 50 + step);
                let x = b.upload(&[n, PIXELS], &x).unwrap();
                let z = gan::sample_z(n, cfg.latent, Latent::Normal, 60 + step);
                let z = b.upload(&[n, cfg.latent], &z).unwrap();
                let one = gan::train_step_with(
                    &b, &g1, &d1, &mut og1, &mut od1, loss, &tricks, &x, &z, step,
                )
                .unwrap();
                let d = gan::train_d(
                    &b,
                    &g2,
                    gan::GSamples::Training,
                    &d2,
                    &mut od2,
                    loss,
                    &tricks,
                    &x,
                    &z,
                    step,
                )
                .unwrap();
                // the page reads D's half back before G's half starts
                let d_loss = read_blocking(&b, &d.d_loss).unwrap();
                let g_loss = gan::train_g_half(&b, &g2, &d2, &mut og2, loss, &z).unwrap();
                assert_eq!(read_blocking(&b, &one.d_loss).unwrap(), d_loss);
                assert_eq!(
                    read_blocking(&b, &one.g_loss).unwrap(),
                    read_blocking(&b, &g_loss).unwrap()
                );
                assert_eq!(
                    read_blocking(&b, &one.fake_out).unwrap(),
                    read_blocking(&b, &d.fake_out).unwrap()
                );
            }
            let weights = |m: &dyn Module| -> Vec<Vec<f32>> {
                m.state()
                    .iter()
                    .map(|p| read_blocking(&b, p.value()).unwrap())
                    .collect()
            };
            assert_eq!(weights(&g1), weights(&g2), "{arch:?} {loss:?}: G");
            assert_eq!(weights(&d1), weights(&d2), "{arch:?} {loss:?}: D");
        }
    }
}

/// Latent rows depend only on their index: any cut into chunks gives the same samples.
#[test]
fn latent_rows_do_not_depend_on_the_chunking() {
    for latent in [Latent::Normal, Latent::Uniform] {
        let all = gan::sample_z(50, 7, latent, 9);
        let mut cut = gan::sample_z_rows(0, 13, 7, latent, 9);
        cut.extend(gan::sample_z_rows(13, 30, 7, latent, 9));
        cut.extend(gan::sample_z_rows(43, 7, 7, latent, 9));
        assert_eq!(all, cut);
    }
}

/// The truncation trick: every value ends within the threshold, values already inside are
/// kept, the redrawn ones follow the truncated distribution (a normal truncated to +-1 has
/// standard deviation 0.540), chunks agree with the whole, and bad thresholds are refused.
#[test]
fn truncation_redraws_values_beyond_the_threshold() {
    let (n, d, seed) = (400, 25, 5);
    let z = gan::sample_z(n, d, Latent::Normal, seed);
    let mut t = z.clone();
    gan::truncate_z(&mut t, 0, d, Latent::Normal, seed, 1.0).unwrap();
    assert!(t.iter().all(|v| v.abs() <= 1.0));
    let inside = z.iter().zip(&t).filter(|(a, _)| a.abs() <= 1.0);
    assert!(inside.clone().all(|(a, b)| a == b));
    assert!(
        inside.count() < z.len() * 3 / 4,
        "about 32% must be redrawn"
    );
    let var = t.iter().map(|v| (*v as f64).powi(2)).sum::<f64>() / t.len() as f64;
    assert!((var.sqrt() - 0.540).abs() < 0.01, "std {}", var.sqrt());
    // rows 0..150 and 150..400 truncated apart give the whole set's values
    let (mut a, mut b) = (z[..150 * d].to_vec(), z[150 * d..].to_vec());
    gan::truncate_z(&mut a, 0, d, Latent::Normal, seed, 1.0).unwrap();
    gan::truncate_z(&mut b, 150, d, Latent::Normal, seed, 1.0).unwrap();
    a.extend(b);
    assert_eq!(a, t);
    let mut u = gan::sample_z(n, d, Latent::Uniform, seed);
    gan::truncate_z(&mut u, 0, d, Latent::Uniform, seed, 0.5).unwrap();
    assert!(u.iter().all(|v| v.abs() <= 0.5));
    for bad in [0.1, 0.0, -1.0, f32::NAN, f32::INFINITY] {
        let e = gan::truncate_z(&mut t, 0, d, Latent::Normal, seed, bad).unwrap_err();
        assert!(e.to_string().contains("truncation threshold"), "{e}");
    }
}

/// G's output for z in training mode (batch statistics), as a step draws it.
fn generate_training_mode(b: &CpuBackend, gen: &Generator, z: &[f32]) -> Vec<f32> {
    let mut g = Graph::new(b);
    g.set_grad_enabled(false);
    let zv = g.constant(
        b.upload(&[z.len() / gen.config.latent, gen.config.latent], z)
            .unwrap(),
    );
    let f = gen.forward(&mut g, zv).unwrap();
    read_blocking(b, g.value(f).unwrap()).unwrap()
}

/// Deepening G (`grow gan`), the 7x7 block and then the 14x14 one: each inserted block is the
/// identity in evaluation mode (same samples up to rounding), and nearly so in training mode,
/// where its BatchNorm uses the batch's statistics instead of the measured ones; a dense G, one
/// that already has both blocks and statistics of another width are refused.
#[test]
fn deepened_generator_draws_the_same_samples() {
    use nnlab::models::gan_grow::{block_stats, deepen, next_block, GrowBlock};
    use nnlab::models::grow_identity::ChannelStats;
    let b = CpuBackend::new();
    let cfg = small_gan(GanArch::Dcgan);
    let gen = Generator::new(&b, cfg, 3).unwrap();
    // running statistics of a G's own batches, not the fresh 0 / 1
    nnlab::models::gan_tricks::recalibrate_batchnorm(&b, &gen, Latent::Normal, 64, 4, 5).unwrap();
    let z = gan::sample_z(256, cfg.latent, Latent::Normal, 11);
    let max_diff = |a: &[f32], c: &[f32]| {
        a.iter()
            .zip(c)
            .map(|(x, y)| (x - y).abs())
            .fold(0f32, f32::max)
    };
    // the 7x7 block first (2w channels), then the 14x14 one (w channels)
    let grow = |gen: &Generator, at: GrowBlock, channels: usize| -> (Generator, ChannelStats) {
        assert_eq!(next_block(gen).unwrap(), at);
        let stats = pollster::block_on(block_stats(&b, gen, 8, 64, Latent::Normal, 1)).unwrap();
        assert_eq!((stats.mean.len(), stats.var.len()), (channels, channels));
        assert!(stats.mean.iter().all(|m| *m > 0.0) && stats.var.iter().all(|v| *v > 0.0));
        let grown = deepen(&b, gen, &stats).unwrap();
        assert_eq!(grown.batchnorms().len(), gen.batchnorms().len() + 1);
        let (before, after) = (
            read_blocking(&b, &gan::generate(&b, gen, &z).unwrap()).unwrap(),
            read_blocking(&b, &gan::generate(&b, &grown, &z).unwrap()).unwrap(),
        );
        let d = max_diff(&before, &after);
        assert!(d < 1e-5, "{at:?}: {d}");
        let (tb, ta) = (
            generate_training_mode(&b, gen, &z),
            generate_training_mode(&b, &grown, &z),
        );
        let mean_diff =
            tb.iter().zip(&ta).map(|(x, y)| (x - y).abs()).sum::<f32>() / tb.len() as f32;
        let spread = tb.iter().map(|x| x.abs()).sum::<f32>() / tb.len() as f32;
        println!("{at:?}, training mode: mean |change| {mean_diff:.2e} against mean |output| {spread:.2e}");
        assert!(mean_diff < 0.05 * spread, "{at:?}: {mean_diff} vs {spread}");
        (grown, stats)
    };
    let (grown, stats) = grow(&gen, GrowBlock::At7, 2 * cfg.width);
    assert!(grown.config.extra_conv && !grown.config.extra_conv_14);
    let (grown2, _) = grow(&grown, GrowBlock::At14, cfg.width);
    assert!(grown2.config.extra_conv && grown2.config.extra_conv_14);
    // refusals
    let refusal = |g: &Generator, s: &ChannelStats| match deepen(&b, g, s) {
        Err(e) => e.to_string(),
        Ok(_) => panic!("deepened"),
    };
    let e = refusal(&grown2, &stats);
    assert!(e.contains("already has both"), "{e}");
    let dense = Generator::new(&b, small_gan(GanArch::Dense), 3).unwrap();
    let e = refusal(&dense, &stats);
    assert!(e.contains("only a DCGAN"), "{e}");
    let three = ChannelStats {
        mean: vec![0.5; 3],
        var: vec![1.0; 3],
    };
    let e = refusal(&gen, &three);
    assert!(e.contains("3 channels"), "{e}");
    // the 7x7 block's statistics do not fit the 14x14 block
    let e = refusal(&grown, &stats);
    assert!(e.contains("channels"), "{e}");
    assert!(pollster::block_on(block_stats(&b, &dense, 1, 4, Latent::Normal, 1)).is_err());
    assert!(pollster::block_on(block_stats(&b, &grown2, 1, 4, Latent::Normal, 1)).is_err());
}

/// Latent Langevin on D (`gan_langevin`): one step is (1 - eps/2) z + (eps/2) grad_z d(G(z)) +
/// sqrt(eps) xi, with grad_z taken against central finite differences of D's logit of G's
/// sample (both in inference mode) and xi the documented draw; with a D whose logit does not
/// depend on its input, many steps keep z standard normal (the prior's own Langevin chain);
/// bad settings and shapes are refused.
#[test]
fn latent_langevin_steps_along_d_and_keeps_the_prior() {
    use nnlab::models::gan_langevin::langevin;
    let b = CpuBackend::new();
    for arch in [GanArch::Dense, GanArch::Dcgan] {
        let cfg = small_gan(arch);
        let gen = Generator::new(&b, cfg, 3).unwrap();
        let disc = Discriminator::new(&b, cfg, 5).unwrap();
        let (n, d, eps, seed) = (3, cfg.latent, 0.05f32, 9u64);
        let z0 = gan::sample_z(n, d, Latent::Normal, 4);
        let zt = b.upload(&[n, d], &z0).unwrap();
        let z1 = read_blocking(&b, &langevin(&b, &gen, &disc, &zt, 1, eps, seed).unwrap()).unwrap();
        let xi = rng::normal_vec(n * d, 0.0, eps.sqrt(), seed);
        let logits = |z: &[f32]| -> Vec<f64> {
            let x = read_blocking(&b, &gan::generate(&b, &gen, z).unwrap()).unwrap();
            let l = gan::discriminate(&b, &disc, &x).unwrap();
            read_blocking(&b, &l)
                .unwrap()
                .iter()
                .map(|&v| v as f64)
                .collect()
        };
        // G's and D's gradients are checked against finite differences above (z among the
        // probed); this checks the step built from them. The LeakyReLU kinks and f32 logits
        // leave the differences ~1e-2 off the exact gradient, hence the tolerance.
        let h = 1e-3f32;
        let mut worst = 0f64;
        for i in 0..n * d {
            let (mut up, mut down) = (z0.clone(), z0.clone());
            up[i] += h;
            down[i] -= h;
            let row = i / d;
            let fd = (logits(&up)[row] - logits(&down)[row]) / (2.0 * h as f64);
            // the gradient term the step took: (z1 - (1 - eps/2) z0 - xi) / (eps/2)
            let took = (z1[i] as f64 - (1.0 - eps as f64 / 2.0) * z0[i] as f64 - xi[i] as f64)
                / (eps as f64 / 2.0);
            worst = worst.max((took - fd).abs() / (0.02 + 0.02 * fd.abs()));
        }
        assert!(
            worst < 1.0,
            "{arch:?}: gradient term off by {worst} x the tolerance"
        );
        // zero steps: z unchanged
        let same =
            read_blocking(&b, &langevin(&b, &gen, &disc, &zt, 0, eps, seed).unwrap()).unwrap();
        assert_eq!(same, z0);
    }
    // a D blind to its input (every weight 0): the chain is the prior's own, z stays N(0, 1)
    let cfg = small_gan(GanArch::Dense);
    let gen = Generator::new(&b, cfg, 3).unwrap();
    let disc = Discriminator::new(&b, cfg, 5).unwrap();
    for p in disc.params() {
        b.assign(
            p.value(),
            &b.upload(p.shape(), &vec![0.0; p.value().numel()]).unwrap(),
        )
        .unwrap();
    }
    let n = 400;
    let z0 = gan::sample_z(n, cfg.latent, Latent::Normal, 6);
    let zt = b.upload(&[n, cfg.latent], &z0).unwrap();
    let z = read_blocking(&b, &langevin(&b, &gen, &disc, &zt, 100, 0.05, 1).unwrap()).unwrap();
    let mean = z.iter().map(|&v| v as f64).sum::<f64>() / z.len() as f64;
    let var = z.iter().map(|&v| (v as f64 - mean).powi(2)).sum::<f64>() / z.len() as f64;
    println!("after 100 steps on a blind D: mean {mean:.3}, variance {var:.3}");
    assert!(
        mean.abs() < 0.05 && (var - 1.0).abs() < 0.08,
        "{mean} {var}"
    );
    // bad settings and shapes
    let e = |r: nnlab::error::Result<nnlab::tensor::Tensor>| r.unwrap_err().to_string();
    assert!(e(langevin(&b, &gen, &disc, &zt, 1, 0.0, 1)).contains("step size"));
    assert!(e(langevin(&b, &gen, &disc, &zt, 1, f32::NAN, 1)).contains("step size"));
    assert!(e(langevin(&b, &gen, &disc, &zt, 20_000, 0.1, 1)).contains("at most"));
    let wrong = b
        .upload(&[2, cfg.latent + 1], &vec![0.0; 2 * (cfg.latent + 1)])
        .unwrap();
    assert!(e(langevin(&b, &gen, &disc, &wrong, 1, 0.1, 1)).contains("z must be"));
}
