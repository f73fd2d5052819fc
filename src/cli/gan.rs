//! `nnlab train gan` and `nnlab eval gan`.
//!
//! Trained on MNIST training digits 10000..60000 (the page's 10,000 are left out); scored by
//! the shipped classifier (www/models/classifier.safetensors) against real test digits.

use std::path::{Path, PathBuf};
use std::time::Instant;

use clap::{Args, ValueEnum};

use super::{checks, hms, metadata, mnist_train, model_file, RunArgs};
use crate::autodiff::Graph;
use crate::backend::{read_blocking, Backend};
use crate::data::images::{self, Image};
use crate::data::mnist::{Mnist, Split};
use crate::error::{Error, Result};
use crate::models::gan::{
    self, Discriminator, GanArch, GanConfig, GanLoss, Generator, Latent, StepOutput, WeightInit,
    PIXELS,
};
use crate::models::gan_langevin;
use crate::models::gan_metrics::{
    class_histogram, class_share_range, classifier_score, frechet_distance,
};
use crate::models::gan_rejection;
use crate::models::gan_tricks::{self as gan_tricks, Perturbation, Tricks};
use crate::models::Classifier;
use crate::nn::{Adam, Module, Optimizer};

/// Fixed seed of the latent vectors of the sample grid (the same z every time).
const GRID_SEED: u64 = 4242;

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum ArchArg {
    Dense,
    Dcgan,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum LossArg {
    /// cross-entropy, non-saturating G loss
    Ce,
    /// cross-entropy, minimax G loss log(1 - D(G(z)))
    Minimax,
    /// least squares (the lecture's quadratic V)
    Ls,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum WeightInitArg {
    /// Kaiming normal weights, zero biases, BatchNorm gamma 1 (the layers' default)
    Kaiming,
    /// DCGAN's: weights N(0, 0.02), zero biases, BatchNorm gamma N(1, 0.02)
    Dcgan,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum LatentArg {
    Normal,
    Uniform,
}

fn loss(l: LossArg) -> GanLoss {
    match l {
        LossArg::Ce => GanLoss::CrossEntropy,
        LossArg::Minimax => GanLoss::Minimax,
        LossArg::Ls => GanLoss::LeastSquares,
    }
}

fn latent(l: LatentArg) -> Latent {
    match l {
        LatentArg::Normal => Latent::Normal,
        LatentArg::Uniform => Latent::Uniform,
    }
}

#[derive(Args, Clone, Debug)]
pub struct TrainArgs {
    #[arg(long, value_enum, default_value_t = ArchArg::Dcgan)]
    pub arch: ArchArg,
    #[arg(long, value_enum, default_value_t = LossArg::Ce)]
    pub loss: LossArg,
    /// latent size d
    #[arg(long, default_value_t = 100)]
    pub latent: usize,
    #[arg(long, value_enum, default_value_t = LatentArg::Normal)]
    pub latent_dist: LatentArg,
    /// DCGAN base width (G: 2w, w channels; D: w, 2w)
    #[arg(long, default_value_t = 64)]
    pub width: usize,
    #[arg(long, default_value_t = 3000)]
    pub steps: usize,
    #[arg(long, default_value_t = 64)]
    pub batch: usize,
    /// Adam learning rate (DCGAN: 2e-4, beta1 0.5); G's when --lr-d is given
    #[arg(long, default_value_t = 2e-4)]
    pub lr: f32,
    /// D's learning rate (two time-scale update rule); default: --lr
    #[arg(long)]
    pub lr_d: Option<f32>,
    /// decay both learning rates linearly over the run to this fraction of their start at the
    /// last step (0: to zero; 1: constant)
    #[arg(long, default_value_t = 1.0)]
    pub lr_decay_to: f32,
    /// D's target for real digits (0.9: one-sided label smoothing)
    #[arg(long, default_value_t = 1.0)]
    pub real_label: f32,
    /// add the minibatch-dispersion feature to D's logit (lets D see samples that look alike)
    #[arg(long)]
    pub mbstd: bool,
    /// DCGAN: an extra stride-1 transposed conv (2w -> 2w, 3x3) + BatchNorm/ReLU at 7x7 in G
    /// (TensorFlow's DCGAN tutorial shape; with --init the G file says)
    #[arg(long)]
    pub extra_conv: bool,
    /// dropout rate after each of D's LeakyReLUs (TensorFlow's DCGAN tutorial: 0.3), kept in
    /// D's file; with --init the D file's rate unless given (0: off)
    #[arg(long)]
    pub dropout: Option<f32>,
    /// spectral normalisation of D's conv and dense weights (W / sigma(W), one power-iteration
    /// step per training step)
    #[arg(long)]
    pub sn: bool,
    /// DCGAN: give D a residual block at 7x7 (two 3x3 convs 2w -> 2w, h + conv(LeakyReLU(conv(h)))),
    /// added to an --init D without one as the identity (its second conv starts at zero); kept
    /// in D's file, which --init then follows
    #[arg(long)]
    pub d_block: bool,
    /// train only D, against the fixed G of --init drawn in inference mode (as `eval gan` draws
    /// it): the D that `eval gan --discriminator` uses for rejection sampling; only D is saved
    /// (as <stem of --out>_d.safetensors)
    #[arg(long)]
    pub d_only: bool,
    /// keep an exponential moving average of G's weights with this decay (e.g. 0.999) and save
    /// it as <stem>_ema.safetensors (BatchNorm statistics recomputed for it); 0 = off
    #[arg(long, default_value_t = 0.0)]
    pub ema: f32,
    /// weight of the D smoothness term D(x) = D(x + r), r adversarial (VAT-like, sign); 0 = off
    #[arg(long, default_value_t = 0.0)]
    pub smooth: f32,
    /// L-inf budget of the smoothness perturbation r (pixel scale [0, 1])
    #[arg(long, default_value_t = 0.1)]
    pub smooth_eps: f32,
    /// alpha of D's real term alpha C(x) + (1 - alpha) C(x~), x~ FGSM real digits; 1 = off
    #[arg(long, default_value_t = 1.0)]
    pub fgsm_alpha: f32,
    /// FGSM budget of x~ (pixel scale [0, 1])
    #[arg(long, default_value_t = 0.1)]
    pub fgsm_eps: f32,
    #[arg(long, default_value_t = 0.5)]
    pub beta1: f32,
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// how a new G's and D's weights start (not used with --init)
    #[arg(long, value_enum, default_value_t = WeightInitArg::Kaiming)]
    pub weight_init: WeightInitArg,
    /// generator weights; the discriminator goes beside it as <stem>_d.safetensors
    #[arg(long, default_value = "www/models/gan_dcgan_g.safetensors")]
    pub out: PathBuf,
    /// write the 8x8 sample grid (fixed z) as an image (.png or .jpg) at the end
    #[arg(long)]
    pub grid: Option<PathBuf>,
    #[command(flatten)]
    pub run: RunArgs,
    /// continue from a generator file (and its <stem>_d.safetensors discriminator) with fresh
    /// Adam state; its architecture and sizes win over --arch/--latent/--width
    #[arg(long)]
    pub init: Option<PathBuf>,
}

#[derive(Args, Clone, Debug)]
pub struct EvalArgs {
    /// generator weights files, comma-separated
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "www/models/gan_dcgan_g.safetensors"
    )]
    pub model: Vec<PathBuf>,
    /// the classifier that scores the digits
    #[arg(long, default_value = "www/models/classifier.safetensors")]
    pub classifier: PathBuf,
    /// generated digits per model (and real held-out digits for the ceiling)
    #[arg(long, default_value_t = 5000)]
    pub samples: usize,
    #[arg(long, value_enum, default_value_t = LatentArg::Normal)]
    pub latent_dist: LatentArg,
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// the real digits the Frechet distance and the ceiling row use
    #[arg(long, value_enum, default_value_t = ReferenceArg::Test)]
    pub reference: ReferenceArg,
    /// write the 8x8 sample grid (the fixed z of `train gan --grid`) of the first model as an
    /// image (.png or .jpg)
    #[arg(long)]
    pub grid: Option<PathBuf>,
    /// discriminator rejection sampling (Azadi et al. 2019) with this D weights file (the one
    /// trained with the models): each model gets a row more per --drs-gamma, of samples kept
    /// with a probability that grows with D's logit
    #[arg(long)]
    pub discriminator: Option<PathBuf>,
    /// rejection sampling's gamma, comma-separated (0: close to the exact rule exp(logit - max);
    /// larger keeps fewer samples, negative more)
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "0",
        allow_negative_numbers = true
    )]
    pub drs_gamma: Vec<f32>,
    /// the truncation trick (Brock et al. 2018): latent values beyond +-T are redrawn, for every
    /// row of every model (smaller T: more typical digits, less variety; at least 0.25)
    #[arg(long, value_name = "T")]
    pub truncation: Option<f32>,
    /// rejection sampling draws a pool of this many times --samples candidates
    #[arg(long, default_value_t = 10)]
    pub drs_pool: usize,
    /// discriminator driven latent sampling (Che et al. 2020) with the --discriminator D: each
    /// model gets a row more per value, of the same latent draws moved by this many Langevin
    /// steps towards codes D finds real (normal latents only)
    #[arg(long, value_delimiter = ',')]
    pub langevin: Vec<usize>,
    /// the Langevin step size (see --langevin)
    #[arg(long, default_value_t = 0.01)]
    pub langevin_eps: f32,
    #[command(flatten)]
    pub run: RunArgs,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum ReferenceArg {
    /// MNIST test digits (even-indexed: reference; odd-indexed: ceiling row)
    Test,
    /// MNIST training digits 0..10000, which `train gan` leaves out (to choose a recipe
    /// without looking at the test digits): 0..5000 reference, 5000..10000 ceiling row
    HeldoutTrain,
}

/// 8x8 grid image (with 2-pixel gaps) of 64 digits in [0, 1].
pub fn grid_image(digits: &[f32]) -> Result<Image> {
    let (cells, side, gap) = (8usize, 28usize, 2usize);
    let w = cells * side + (cells - 1) * gap;
    let mut data = vec![1.0f32; w * w];
    for (k, d) in digits.chunks(PIXELS).take(cells * cells).enumerate() {
        let (r, c) = (k / cells, k % cells);
        for y in 0..side {
            for x in 0..side {
                data[(r * (side + gap) + y) * w + c * (side + gap) + x] =
                    d[y * side + x].clamp(0.0, 1.0);
            }
        }
    }
    Image::new(1, w, w, data)
}

/// Where the EMA generator of `g_path` goes: <stem>_ema.safetensors beside it.
pub fn ema_path(g_path: &Path) -> PathBuf {
    let stem = g_path.file_stem().and_then(|s| s.to_str()).unwrap_or("gan");
    g_path.with_file_name(format!("{stem}_ema.safetensors"))
}

fn tricks(a: &TrainArgs) -> Result<Tricks> {
    let t = Tricks {
        real_label: a.real_label,
        smooth: (a.smooth > 0.0).then_some(Perturbation {
            weight: a.smooth,
            eps: a.smooth_eps,
        }),
        fgsm: (a.fgsm_alpha < 1.0).then_some(Perturbation {
            weight: a.fgsm_alpha,
            eps: a.fgsm_eps,
        }),
    };
    t.validate()?;
    if !(a.ema == 0.0 || (0.0..1.0).contains(&a.ema)) {
        return Err(Error::Invalid(format!(
            "--ema must be in [0, 1), got {}",
            a.ema
        )));
    }
    let lr_d = a.lr_d.unwrap_or(a.lr);
    if !(lr_d > 0.0 && lr_d.is_finite()) {
        return Err(Error::Invalid(format!("--lr-d must be > 0, got {lr_d}")));
    }
    if !(0.0..=1.0).contains(&a.lr_decay_to) {
        return Err(Error::Invalid(format!(
            "--lr-decay-to must be in [0, 1], got {}",
            a.lr_decay_to
        )));
    }
    Ok(t)
}

fn d_path(g_path: &Path) -> PathBuf {
    let stem = g_path.file_stem().and_then(|s| s.to_str()).unwrap_or("gan");
    let stem = stem.strip_suffix("_g").unwrap_or(stem);
    g_path.with_file_name(format!("{stem}_d.safetensors"))
}

/// D's dropout rate from a discriminator file's metadata (0 when it has none).
fn d_dropout(bytes: &[u8]) -> Result<f32> {
    gan::dropout_from_metadata(&crate::weights::metadata(bytes)?)
}

/// `nnlab train gan`.
pub fn train(a: TrainArgs) -> Result<()> {
    if a.steps == 0
        || a.batch == 0
        || !(a.lr > 0.0 && a.lr.is_finite())
        || !(0.0..1.0).contains(&a.beta1)
    {
        return Err(Error::Invalid(format!(
            "need steps >= 1, batch >= 1, lr > 0, beta1 in [0, 1) (got {}, {}, {}, {})",
            a.steps, a.batch, a.lr, a.beta1
        )));
    }
    let tricks = tricks(&a)?;
    if a.d_only && (a.init.is_none() || a.ema > 0.0) {
        return Err(Error::Invalid(
            "--d-only trains D against a trained G: it needs --init (G and its D) and no --ema"
                .into(),
        ));
    }
    let config = match &a.init {
        Some(p) => {
            let bytes = crate::weights::read_file(p)?;
            gan::config_from_tensors(&crate::weights::from_bytes(&bytes)?)
                .map_err(|e| crate::weights::in_file(p, e))?
        }
        None => GanConfig {
            arch: if a.arch == ArchArg::Dense {
                GanArch::Dense
            } else {
                GanArch::Dcgan
            },
            latent: a.latent,
            width: a.width,
            extra_conv: a.extra_conv,
            extra_conv_14: false,
        },
    };
    config.validate()?;
    // one step holds a batch of real digits, of latent vectors and of generated digits
    checks::check_memory(
        &format!("--batch {}", a.batch),
        checks::f32_bytes(&[a.batch, 2 * PIXELS + config.latent]),
    )?;
    // what this run writes can be written, found before the training rather than after
    if !a.d_only {
        crate::files::check_writable(&a.out)?;
    }
    crate::files::check_writable(&d_path(&a.out))?;
    if a.ema > 0.0 {
        crate::files::check_writable(&ema_path(&a.out))?;
    }
    if let Some(p) = &a.grid {
        images::OutputFormat::from_path(p)?;
        crate::files::check_writable(p)?;
    }
    let b = a.run.backend()?;
    let b: &dyn Backend = b.as_ref();
    let train = mnist_train(&a.run.data_dir()?)?;
    checks::check_batch(a.batch, train.len(), "training digits (MNIST 10000..60000)")?;
    let pool: Vec<usize> = (0..train.len()).collect();
    let weight_init = match a.weight_init {
        WeightInitArg::Kaiming => WeightInit::Kaiming,
        WeightInitArg::Dcgan => WeightInit::Dcgan,
    };
    let gen = Generator::with_init(b, config, a.seed, weight_init)?;
    // an --init D file says D's parts (minibatch dispersion, spectral norm, the residual
    // block) and its dropout rate; --sn adds spectral norm to a D file without it, and
    // --d-block the block after its weights are loaded (as the identity)
    let d_file = match &a.init {
        Some(p) => {
            let bytes = crate::weights::read_file(&d_path(p))?;
            let ts = crate::weights::from_bytes(&bytes)
                .map_err(|e| crate::weights::in_file(&d_path(p), e))?;
            Some((p, gan::d_parts_from_tensors(&ts), bytes))
        }
        None => None,
    };
    let file = d_file.as_ref().map(|(_, parts, _)| *parts);
    let parts = match file {
        Some(f) => gan::DParts {
            sn: a.sn || f.sn,
            ..f
        },
        None => gan::DParts {
            mbstd: a.mbstd,
            sn: a.sn,
            block: a.d_block,
        },
    };
    let (mbstd, sn) = (parts.mbstd, parts.sn);
    let mut disc = Discriminator::with_parts(b, config, a.seed + 100, parts, weight_init)?;
    let dropout = match (a.dropout, &d_file) {
        (Some(p), _) => p,
        (None, Some((p, _, bytes))) => {
            d_dropout(bytes).map_err(|e| crate::weights::in_file(&d_path(p), e))?
        }
        (None, None) => 0.0,
    };
    disc.set_dropout(dropout, a.seed.wrapping_mul(104_729).wrapping_add(17))?;
    if let Some(p) = &a.init {
        crate::weights::load_file(b, &gen.state(), p)?;
        let file = file.unwrap_or_default();
        if sn && !file.sn {
            // the file's weights, then vectors of their own (power iteration from scratch)
            crate::weights::load_file(b, &disc.params(), &d_path(p))?;
            disc.restart_power_iteration(b, 50)?;
        } else {
            crate::weights::load_file(b, &disc.state(), &d_path(p))?;
        }
        if a.d_block && !file.block {
            disc.add_block(b, a.seed + 300)?;
            println!("D given the residual block (as the identity)");
        }
        println!(
            "continuing from {} and {}",
            p.display(),
            d_path(p).display()
        );
    }
    let lr_d = a.lr_d.unwrap_or(a.lr);
    let (mut opt_g, mut opt_d) = (
        Adam::new(a.lr, a.beta1, 0.999),
        Adam::new(lr_d, a.beta1, 0.999),
    );
    let ema = if a.ema > 0.0 {
        Some(gan_tricks::ema_copy(b, &gen)?)
    } else {
        None
    };
    let l = loss(a.loss);
    println!(
        "options: weight init {:?}, D lr {lr_d}, lr decay to {}x, real label {}, minibatch dispersion {mbstd}, spectral norm {sn}, D dropout {dropout}, D block {}, EMA {}, D smoothness {:?}, FGSM real {:?}",
        a.weight_init, a.lr_decay_to, tricks.real_label, disc.has_block(), a.ema, tricks.smooth, tricks.fgsm
    );
    println!(
        "training {}a {:?} GAN ({:?} loss, latent {} {:?}, width {}, extra stride-1 convs in G at 7x7 / 14x14 {:?}) on {}: {} digits, batch {}, {} steps, Adam lr {} beta1 {}, seed {}",
        if a.d_only { "only D (G fixed) of " } else { "" },
        config.arch,
        l,
        config.latent,
        a.latent_dist,
        config.width,
        (config.extra_conv, config.extra_conv_14),
        b.info().describe(),
        train.len(),
        a.batch,
        a.steps,
        a.lr,
        a.beta1,
        a.seed
    );
    let start = Instant::now();
    let mut last = Instant::now();
    let (mut dsum, mut gsum, mut asum, mut cnt) = (0.0f64, 0.0f64, 0.0f64, 0usize);
    for step in 0..a.steps {
        if a.lr_decay_to < 1.0 {
            opt_g.set_lr(gan_tricks::decayed_lr(a.lr, a.lr_decay_to, step, a.steps));
            opt_d.set_lr(gan_tricks::decayed_lr(lr_d, a.lr_decay_to, step, a.steps));
        }
        let (x, z) = gan::training_batch(
            b,
            &train,
            &pool,
            a.batch,
            config.latent,
            latent(a.latent_dist),
            a.seed,
            step as u64,
        )?;
        let seed = a.seed.wrapping_mul(7_919).wrapping_add(step as u64);
        let out = if a.d_only {
            let d = gan::train_d(
                b,
                &gen,
                gan::GSamples::Inference,
                &disc,
                &mut opt_d,
                l,
                &tricks,
                &x,
                &z,
                seed,
            )?;
            StepOutput {
                d_loss: d.d_loss,
                g_loss: b.fill(&[1], 0.0)?,
                real_out: d.real_out,
                fake_out: d.fake_out,
            }
        } else {
            gan::train_step_with(
                b, &gen, &disc, &mut opt_g, &mut opt_d, l, &tricks, &x, &z, seed,
            )?
        };
        if let Some(e) = &ema {
            gan_tricks::ema_update(b, e, &gen, a.ema)?;
        }
        let s = read_stats(b, l, &out)?;
        if !(s.d_loss.is_finite() && s.g_loss.is_finite()) {
            return Err(Error::Invalid(format!(
                "training diverged at step {step} (D loss {}, G loss {}); try a lower --lr",
                s.d_loss, s.g_loss
            )));
        }
        dsum += s.d_loss as f64;
        gsum += s.g_loss as f64;
        asum += s.d_accuracy as f64;
        cnt += 1;
        if last.elapsed().as_secs_f64() >= 15.0 || step + 1 == a.steps {
            let el = start.elapsed().as_secs_f64();
            let g_loss = if a.d_only {
                "(G fixed)".to_string()
            } else {
                format!("{:.3}", gsum / cnt as f64)
            };
            println!(
                "step {}/{}  D loss {:.3}  G loss {g_loss}  D accuracy {:.1}%  {:.2} steps/s  elapsed {}  ETA {}",
                step + 1,
                a.steps,
                dsum / cnt as f64,
                100.0 * asum / cnt as f64,
                (step + 1) as f64 / el,
                hms(el),
                hms(el / (step + 1) as f64 * (a.steps - step - 1) as f64)
            );
            (dsum, gsum, asum, cnt) = (0.0, 0.0, 0.0, 0);
            last = Instant::now();
        }
    }
    let secs = start.elapsed().as_secs_f64();
    if let Some(sigmas) = disc.spectral_norms(b)? {
        println!("spectral norms of D's raw weights (u^T W v): {sigmas:?}");
    }
    let mut meta = metadata(b, &format!("nnlab {:?} GAN generator", config.arch));
    meta.insert("loss".to_string(), format!("{l:?}"));
    meta.insert("latent_dist".to_string(), format!("{:?}", a.latent_dist));
    meta.insert("train_seconds".to_string(), format!("{secs:.0}"));
    meta.insert("steps".to_string(), a.steps.to_string());
    if !a.d_only {
        crate::weights::save_file(b, &gen.state(), &a.out, Some(meta.clone()))?;
    }
    let mut d_meta = meta.clone();
    if dropout > 0.0 {
        d_meta.insert(gan::DROPOUT_KEY.to_string(), dropout.to_string());
    }
    crate::weights::save_file(b, &disc.state(), &d_path(&a.out), Some(d_meta))?;
    if let Some(e) = &ema {
        gan_tricks::recalibrate_batchnorm(b, e, latent(a.latent_dist), 128, 50, a.seed ^ 0xe3a)?;
        meta.insert("ema_decay".to_string(), a.ema.to_string());
        crate::weights::save_file(b, &e.state(), &ema_path(&a.out), Some(meta))?;
        println!("EMA generator -> {}", ema_path(&a.out).display());
    }
    if let Some(p) = &a.grid {
        let z = gan::sample_z(64, config.latent, latent(a.latent_dist), GRID_SEED);
        let shown = ema.as_ref().unwrap_or(&gen);
        let digits = read_blocking(b, &gan::generate(b, shown, &z)?)?;
        crate::finite::check_output("the generator", &digits)?;
        images::save_image(p, &grid_image(&digits)?)?;
    }
    if a.d_only {
        println!(
            "trained D in {}; discriminator -> {}",
            hms(secs),
            d_path(&a.out).display()
        );
    } else {
        println!(
            "trained in {}; generator -> {}, discriminator -> {}",
            hms(secs),
            a.out.display(),
            d_path(&a.out).display()
        );
    }
    Ok(())
}

fn read_stats(b: &dyn Backend, l: GanLoss, out: &StepOutput) -> Result<gan::StepStats> {
    let d = read_blocking(b, &out.d_loss)?[0];
    let g = read_blocking(b, &out.g_loss)?[0];
    Ok(StepOutput::stats(
        l,
        d,
        g,
        &read_blocking(b, &out.real_out)?,
        &read_blocking(b, &out.fake_out)?,
    ))
}

/// Classifier probabilities and penultimate features of digits (n, 784) in [0, 1].
pub fn classify(b: &dyn Backend, clf: &Classifier, digits: &[f32]) -> Result<(Vec<f32>, Vec<f32>)> {
    let (mut probs, mut feats) = (Vec::new(), Vec::new());
    for chunk in digits.chunks(500 * PIXELS) {
        let n = chunk.len() / PIXELS;
        let mut g = Graph::new(b);
        g.set_grad_enabled(false);
        let x = g.constant(b.upload(&[n, 1, 28, 28], chunk)?);
        let f = clf.features(&mut g, x)?;
        feats.extend(read_blocking(b, g.value(f)?)?);
        probs.extend(read_blocking(
            b,
            &clf.probabilities_tensor(b, g.value(x)?)?,
        )?);
    }
    Ok((probs, feats))
}

/// Load a generator (shape from the file).
/// A path under www/models/ that is not here is looked for where the shipped models are.
pub fn load_generator(b: &dyn Backend, path: &Path) -> Result<Generator> {
    let path = model_file(path)?;
    generator_from_bytes(b, &path, &crate::weights::read_file(&path)?)
}

/// The generator in `bytes`, the contents of the file `path` (named in errors).
fn generator_from_bytes(b: &dyn Backend, path: &Path, bytes: &[u8]) -> Result<Generator> {
    let load = || -> Result<Generator> {
        let config = gan::config_from_tensors(&crate::weights::from_bytes(bytes)?)?;
        let gen = Generator::new(b, config, 0)?;
        crate::weights::load_params(b, &gen.state(), bytes)?;
        Ok(gen)
    };
    load().map_err(|e| crate::weights::in_file(path, e))
}

/// Load a discriminator for generators of `config` (minibatch dispersion and spectral norm as
/// its file has them; inference only, so no dropout).
fn load_discriminator(b: &dyn Backend, config: GanConfig, path: &Path) -> Result<Discriminator> {
    let path = model_file(path)?;
    let bytes = crate::weights::read_file(&path)?;
    let load = || -> Result<Discriminator> {
        let parts = gan::d_parts_from_tensors(&crate::weights::from_bytes(&bytes)?);
        let disc = Discriminator::with_parts(b, config, 0, parts, WeightInit::Kaiming)?;
        crate::weights::load_params(b, &disc.state(), &bytes)?;
        Ok(disc)
    };
    load().map_err(|e| crate::weights::in_file(&path, e))
}

/// How `eval gan` draws latent vectors: the distribution and the truncation threshold, if any.
#[derive(Clone, Copy)]
struct ZDraw {
    dist: Latent,
    truncation: Option<f32>,
}

impl ZDraw {
    /// `n` latent vectors of size `d` seeded by `seed`, truncated when asked.
    fn z(&self, n: usize, d: usize, seed: u64) -> Result<Vec<f32>> {
        let mut z = gan::sample_z(n, d, self.dist, seed);
        if let Some(t) = self.truncation {
            gan::truncate_z(&mut z, 0, d, self.dist, seed, t)?;
        }
        Ok(z)
    }
}

/// `n` digits of `gen`, from latent seed `seed`, in chunks of 500.
fn generate_digits(
    b: &dyn Backend,
    gen: &Generator,
    n: usize,
    draw: ZDraw,
    seed: u64,
) -> Result<Vec<f32>> {
    generate_moved_digits(b, gen, n, draw, seed, |z, _| Ok(z))
}

/// `generate_digits` with each chunk's latent vectors passed through `move_z(z, chunk_seed)`
/// before G runs: the same draws, so rows made with and without a move are paired.
fn generate_moved_digits(
    b: &dyn Backend,
    gen: &Generator,
    n: usize,
    draw: ZDraw,
    seed: u64,
    move_z: impl Fn(Vec<f32>, u64) -> Result<Vec<f32>>,
) -> Result<Vec<f32>> {
    let mut digits = Vec::with_capacity(n * PIXELS);
    for start in (0..n).step_by(500) {
        let m = (start + 500).min(n) - start;
        let chunk_seed = seed.wrapping_mul(7).wrapping_add(start as u64);
        let z = move_z(draw.z(m, gen.config.latent, chunk_seed)?, chunk_seed)?;
        digits.extend(read_blocking(b, &gan::generate(b, gen, &z)?)?);
    }
    Ok(digits)
}

/// Discriminator rejection sampling: the first `n` digits kept from a pool of `pool` samples
/// of `gen` (see `gan_rejection`), and how many of the pool were kept.
#[allow(clippy::too_many_arguments)]
fn drs_digits(
    b: &dyn Backend,
    gen: &Generator,
    disc: &Discriminator,
    n: usize,
    pool: usize,
    gamma: f32,
    draw: ZDraw,
    seed: u64,
) -> Result<(Vec<f32>, usize)> {
    let digits = generate_digits(b, gen, pool, draw, seed ^ 0x5eed_d125)?;
    let mut logits = Vec::with_capacity(pool);
    for chunk in digits.chunks(500 * PIXELS) {
        logits.extend(read_blocking(b, &gan::discriminate(b, disc, chunk)?)?);
    }
    gan_rejection::keep_digits(&digits, PIXELS, &logits, gamma, seed, n).map_err(|e| match e {
        Error::Invalid(m) => Error::Invalid(format!("{m} or raise --drs-pool")),
        e => e,
    })
}

/// `n` digits of `gen` from the latent draws of `generate_digits`, each moved by `steps`
/// Langevin steps on D's energy first (see `gan_langevin`).
#[allow(clippy::too_many_arguments)]
fn langevin_digits(
    b: &dyn Backend,
    gen: &Generator,
    disc: &Discriminator,
    n: usize,
    steps: usize,
    eps: f32,
    draw: ZDraw,
    seed: u64,
) -> Result<Vec<f32>> {
    let d = gen.config.latent;
    generate_moved_digits(b, gen, n, draw, seed, |z, chunk_seed| {
        let z = b.upload(&[z.len() / d, d], &z)?;
        let z = gan_langevin::langevin(b, gen, disc, &z, steps, eps, chunk_seed ^ 0x1a9e)?;
        let z = read_blocking(b, &z)?;
        crate::finite::check_output("latent Langevin", &z)?;
        Ok(z)
    })
}

/// `nnlab eval gan`.
pub fn eval(a: EvalArgs) -> Result<()> {
    if a.samples < 10 {
        return Err(Error::Invalid(format!(
            "--samples must be at least 10, got {}",
            a.samples
        )));
    }
    let draw = ZDraw {
        dist: latent(a.latent_dist),
        truncation: a.truncation,
    };
    if let Some(t) = a.truncation {
        // before anything is loaded
        gan::check_truncation(t).map_err(|e| match e {
            Error::Invalid(m) => Error::Invalid(format!("--truncation: {m}")),
            e => e,
        })?;
    }
    if !a.langevin.is_empty() {
        if a.discriminator.is_none() {
            return Err(Error::Invalid(
                "--langevin needs --discriminator (the D whose logit moves the latents)".into(),
            ));
        }
        if draw.dist != Latent::Normal {
            return Err(Error::Invalid(
                "--langevin: the energy assumes normal latents; use --latent-dist normal".into(),
            ));
        }
        for &s in &a.langevin {
            gan_langevin::check_settings(s, a.langevin_eps).map_err(|e| match e {
                Error::Invalid(m) => Error::Invalid(format!("--langevin: {m}")),
                e => e,
            })?;
        }
    }
    let b = a.run.backend()?;
    let b: &dyn Backend = b.as_ref();
    let clf = Classifier::new(b, Default::default(), 0)?;
    crate::weights::load_file(b, &clf.params(), &model_file(&a.classifier)?)?;
    // every generator file is checked before the long part
    let gens = (a.model.iter())
        .map(|p| Ok((p, load_generator(b, p)?)))
        .collect::<Result<Vec<_>>>()?;
    // and the discriminator for rejection sampling, built for each generator's shape
    let discs = (gens.iter())
        .map(|(_, g)| match &a.discriminator {
            Some(dp) => load_discriminator(b, g.config, dp).map(Some),
            None => Ok(None),
        })
        .collect::<Result<Vec<_>>>()?;
    if a.discriminator.is_some() {
        checks::check_memory(
            &format!("--drs-pool {}", a.drs_pool),
            checks::f32_bytes(&[a.samples, a.drs_pool, PIXELS]),
        )?;
    }
    if let (Some(p), Some((_, gen))) = (&a.grid, gens.first()) {
        images::OutputFormat::from_path(p)?;
        let z = draw.z(64, gen.config.latent, GRID_SEED)?;
        let digits = read_blocking(b, &gan::generate(b, gen, &z)?)?;
        crate::finite::check_output("the generator", &digits)?;
        images::save_image(p, &grid_image(&digits)?)?;
        println!("sample grid -> {}", p.display());
    }
    let dir = a.run.data_dir()?;
    let test = match a.reference {
        ReferenceArg::Test => Mnist::load(&dir, Split::Test)?,
        ReferenceArg::HeldoutTrain => {
            Mnist::load(&dir, Split::Train)?.slice(0..super::PAGE_DIGITS)?
        }
    };
    let n = a.samples.min(test.len() / 2);
    // Two disjoint sets of real digits from the same writers: the reference and the ceiling row.
    // The test set's first and last 5,000 come from different writers, so it is split by index
    // parity; the training set is the other way round (even- and odd-indexed training digits
    // differ: their Frechet distance is 270, the first vs the second 5,000 give 12), so the
    // held-out training digits are split into halves.
    let index = |i: usize, half: usize| match a.reference {
        ReferenceArg::Test => 2 * i + half,
        ReferenceArg::HeldoutTrain => i + half * (test.len() / 2),
    };
    let pick = |half: usize| -> Vec<f32> {
        (0..n)
            .flat_map(|i| test.image(index(i, half)).to_vec())
            .collect()
    };
    let (_, ref_feats) = classify(b, &clf, &pick(0))?;
    let (real_probs, real_feats) = classify(b, &clf, &pick(1))?;
    let dim = ref_feats.len() / n;
    println!("{n} digits per row; Frechet distance on the classifier's {dim} penultimate features against {n} real digits ({})", match a.reference {
        ReferenceArg::Test => "test digits: even-indexed reference, odd-indexed ceiling",
        ReferenceArg::HeldoutTrain => "held-out training digits: 0..5000 reference, 5000..10000 ceiling",
    });
    if let Some(t) = draw.truncation {
        println!("generated rows: latent values truncated to +-{t} (the truncation trick)");
    }
    println!("| model | classifier score (max 10) | Frechet distance | smallest class % | largest class % |\n|---|---:|---:|---:|---:|");
    let row = |name: &str, probs: &[f32], feats: &[f32]| -> Result<Vec<usize>> {
        let h = class_histogram(probs, 10)?;
        let (lo, hi) = class_share_range(&h);
        println!(
            "| {name} | {:.2} | {:.2} | {lo:.1} | {hi:.1} |",
            classifier_score(probs, 10)?,
            frechet_distance(feats, &ref_feats, dim)?
        );
        Ok(h)
    };
    let mut hists = vec![(
        "real digits (ceiling)".to_string(),
        row("real digits (ceiling)", &real_probs, &real_feats)?,
    )];
    let mut discs = discs.into_iter();
    for (path, gen) in gens {
        let digits = generate_digits(b, &gen, n, draw, a.seed)?;
        crate::finite::check_output(&format!("the generator {}", path.display()), &digits)?;
        let (p, f) = classify(b, &clf, &digits)?;
        let name = path.display().to_string();
        let h = row(&name, &p, &f)?;
        hists.push((name, h));
        let Some(disc) = discs.next().flatten() else {
            continue;
        };
        for &steps in &a.langevin {
            let eps = a.langevin_eps;
            let digits = langevin_digits(b, &gen, &disc, n, steps, eps, draw, a.seed)?;
            crate::finite::check_output("the generator after latent Langevin", &digits)?;
            let (p, f) = classify(b, &clf, &digits)?;
            let name = format!(
                "{} + latent Langevin on D, {steps} steps of {eps}",
                path.display()
            );
            let h = row(&name, &p, &f)?;
            hists.push((name, h));
        }
        let pool = n.saturating_mul(a.drs_pool);
        for &gamma in &a.drs_gamma {
            let (digits, kept) = drs_digits(b, &gen, &disc, n, pool, gamma, draw, a.seed)?;
            let (p, f) = classify(b, &clf, &digits)?;
            let name = format!(
                "{} + rejection by D, gamma {gamma} (kept {kept} of {pool})",
                path.display()
            );
            let h = row(&name, &p, &f)?;
            hists.push((name, h));
        }
    }
    println!("\nclass histograms (the classifier's label of each digit):");
    for (name, h) in hists {
        let n = h.iter().sum::<usize>().max(1) as f64;
        println!("\n{name}\n| class | count | % |\n|---:|---:|---:|");
        for (k, c) in h.iter().enumerate() {
            println!("| {k} | {c} | {:.1} |", 100.0 * *c as f64 / n);
        }
    }
    Ok(())
}

#[derive(Args, Debug)]
pub struct GrowArgs {
    /// the trained DCGAN generator (without both extra blocks: the one at 7x7 is inserted
    /// first, then the one at 14x14); its D file (<stem>_d.safetensors)
    /// is copied beside --out when there is one, so `train gan --init OUT` goes on with both
    #[arg(long)]
    pub model: PathBuf,
    /// the deepened generator
    #[arg(long)]
    pub out: PathBuf,
    /// batches of 256 latent vectors over which the new BatchNorm's statistics are measured
    #[arg(long, default_value_t = 20)]
    pub stats_batches: usize,
    /// the latent distribution G was trained with
    #[arg(long, value_enum, default_value_t = LatentArg::Normal)]
    pub latent_dist: LatentArg,
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    #[command(flatten)]
    pub run: RunArgs,
}

/// `nnlab grow gan`: the next extra stride-1 block inserted as the identity (`models::gan_grow`).
pub fn grow(a: GrowArgs) -> Result<()> {
    use crate::models::gan_grow;
    checks::check_stats_batches(a.stats_batches)?;
    crate::files::check_writable(&a.out)?;
    let b = a.run.backend()?;
    let b: &dyn Backend = b.as_ref();
    let path = model_file(&a.model)?;
    let bytes = crate::weights::read_file(&path)?;
    let gen = generator_from_bytes(b, &path, &bytes)?;
    let at = gan_grow::next_block(&gen).map_err(|e| crate::weights::in_file(&path, e))?;
    let dist = latent(a.latent_dist);
    let stats = pollster::block_on(gan_grow::block_stats(
        b,
        &gen,
        a.stats_batches,
        256,
        dist,
        a.seed,
    ))?;
    let grown = gan_grow::deepen(b, &gen, &stats).map_err(|e| crate::weights::in_file(&path, e))?;
    // the evaluation-mode output is unchanged: shown on the sample grid's z
    let z = gan::sample_z(64, gen.config.latent, dist, GRID_SEED);
    let before = read_blocking(b, &gan::generate(b, &gen, &z)?)?;
    let after = read_blocking(b, &gan::generate(b, &grown, &z)?)?;
    crate::finite::check_output("the deepened generator", &after)?;
    let diff = before
        .iter()
        .zip(&after)
        .map(|(x, y)| (x - y).abs())
        .fold(0f32, f32::max);
    let mut meta = crate::weights::metadata(&bytes)?;
    meta.insert("grown_from".to_string(), path.display().to_string());
    crate::weights::save_file(b, &grown.state(), &a.out, Some(meta))?;
    let count: usize = grown.params().iter().map(|p| p.value().numel()).sum();
    println!(
        "deepened G ({}, {count} parameters) -> {}; largest pixel change on 64 samples {diff:.2e}",
        at.describe(),
        a.out.display()
    );
    let d_in = d_path(&path);
    if d_in.exists() {
        std::fs::copy(&d_in, d_path(&a.out)).map_err(|e| {
            Error::Io(format!(
                "copying {} to {}: {e}",
                d_in.display(),
                d_path(&a.out).display()
            ))
        })?;
        println!("its D copied -> {}", d_path(&a.out).display());
    }
    Ok(())
}
