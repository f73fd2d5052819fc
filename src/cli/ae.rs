//! `nnlab train ae` and `nnlab eval ae`: autoencoders on MNIST and PCA beside them.
//!
//! Training digits are MNIST training digits 10000..60000 (the first 10,000 are the page's);
//! held-out figures are on the official test digits.

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Instant;

use clap::{Args, ValueEnum};

use super::{checks, finite_loss, hms, metadata, mnist_train, RunArgs};
use crate::autodiff::Graph;
use crate::backend::Backend;
use crate::data::mnist::{Mnist, Split, PAGE_DIGITS};
use crate::error::{Error, Result};
use crate::models::autoencoder::{
    self, codes, jacobian_norm, reconstruction_mse, AeArch, AeConfig, AeCost, AeKind, Autoencoder,
    NoiseKind, PIXELS,
};
use crate::models::pca;
use crate::nn::{Adam, Module, Optimizer};
use pollster::block_on;

/// Held-out digits used for the progress lines and the eval table.
const HELD_OUT: usize = 2_000;

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum KindArg {
    Plain,
    Sparse,
    Contractive,
    Denoising,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum ArchArg {
    Dense,
    Conv,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum NoiseArg {
    Gaussian,
    Masking,
}

impl KindArg {
    fn kind(self) -> AeKind {
        match self {
            KindArg::Plain => AeKind::Plain,
            KindArg::Sparse => AeKind::Sparse,
            KindArg::Contractive => AeKind::Contractive,
            KindArg::Denoising => AeKind::Denoising,
        }
    }
}

fn arch(a: ArchArg) -> AeArch {
    match a {
        ArchArg::Dense => AeArch::Dense,
        ArchArg::Conv => AeArch::Conv,
    }
}

fn noise(n: NoiseArg) -> NoiseKind {
    match n {
        NoiseArg::Gaussian => NoiseKind::Gaussian,
        NoiseArg::Masking => NoiseKind::Masking,
    }
}

/// Settings shared by `train ae` and `eval ae`.
#[derive(Args, Clone, Debug)]
pub struct CommonArgs {
    #[arg(long, value_enum, default_value_t = ArchArg::Dense)]
    pub arch: ArchArg,
    /// weight of the sparse penalty lambda * ||phi(x)||_1
    #[arg(long, default_value_t = 1e-3)]
    pub lambda_sparse: f32,
    /// weight of the contractive penalty lambda * ||J||_F^2
    #[arg(long, default_value_t = 0.1)]
    pub lambda_contractive: f32,
    /// corruption of the denoising autoencoder
    #[arg(long, value_enum, default_value_t = NoiseArg::Gaussian)]
    pub noise: NoiseArg,
    /// noise std (gaussian) or fraction of pixels zeroed (masking)
    #[arg(long, default_value_t = 0.3)]
    pub level: f32,
    #[arg(long, default_value_t = 2000)]
    pub steps: usize,
    #[arg(long, default_value_t = 128)]
    pub batch: usize,
    /// Adam learning rate (cosine decay to 0 over the run)
    #[arg(long, default_value_t = 1e-3)]
    pub lr: f32,
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    #[command(flatten)]
    pub run: RunArgs,
}

impl CommonArgs {
    fn cost(&self, kind: AeKind) -> AeCost {
        let lambda = match kind {
            AeKind::Sparse => self.lambda_sparse,
            AeKind::Contractive => self.lambda_contractive,
            _ => 0.0,
        };
        AeCost {
            kind,
            lambda,
            noise: noise(self.noise),
            level: self.level,
        }
    }
    fn validate(&self) -> Result<()> {
        if self.steps == 0 || self.batch == 0 || !(self.lr > 0.0 && self.lr.is_finite()) {
            return Err(Error::Invalid(format!(
                "need steps >= 1, batch >= 1, lr > 0 (got {}, {}, {})",
                self.steps, self.batch, self.lr
            )));
        }
        self.cost(AeKind::Sparse).validate()?;
        self.cost(AeKind::Contractive).validate()?;
        self.cost(AeKind::Denoising).validate()?;
        // a batch of digits, its corrupted copy and its reconstruction
        checks::check_memory(
            &format!("--batch {}", self.batch),
            checks::f32_bytes(&[self.batch, 3 * PIXELS]),
        )
    }
}

#[derive(Args, Clone, Debug)]
pub struct TrainArgs {
    #[arg(long, value_enum, default_value_t = KindArg::Plain)]
    pub kind: KindArg,
    /// code size (2..64; 2 gives the 2-D manifold)
    #[arg(long, default_value_t = 2)]
    pub k: usize,
    #[command(flatten)]
    pub common: CommonArgs,
    /// weights file written at the end
    #[arg(long, default_value = "www/models/ae_plain_k2.safetensors")]
    pub out: PathBuf,
}

#[derive(Args, Clone, Debug)]
pub struct EvalArgs {
    /// code sizes, comma-separated
    #[arg(long, value_delimiter = ',', default_value = "2,8,32")]
    pub k: Vec<usize>,
    #[command(flatten)]
    pub common: CommonArgs,
}

/// Train digits (10000..60000) and held-out test digits as host arrays.
fn load(a: &CommonArgs) -> Result<(Mnist, Mnist)> {
    let dir = a.run.data_dir()?;
    let train = mnist_train(&dir)?;
    checks::check_batch(a.batch, train.len(), "training digits (MNIST 10000..60000)")?;
    let test = Mnist::load(&dir, Split::Test)?;
    Ok((train, test.slice(0..HELD_OUT.min(test.len()))?))
}

/// Train `model` on `train` with `cost` for `a.steps` Adam steps; prints progress when `verbose`.
pub fn train_model(
    b: &dyn Backend,
    model: &Autoencoder,
    cost: &AeCost,
    train: &Mnist,
    test: &Mnist,
    a: &CommonArgs,
    verbose: bool,
) -> Result<f64> {
    let mut opt = Adam::new(a.lr, 0.9, 0.999);
    let start = Instant::now();
    let mut last = Instant::now();
    let (mut sum, mut cnt) = (0.0f64, 0usize);
    for step in 0..a.steps {
        opt.set_lr(
            a.lr * 0.5 * (1.0 + (std::f32::consts::PI * step as f32 / a.steps as f32).cos()),
        );
        let idx: Vec<usize> = (0..a.batch)
            .map(|i| {
                crate::rng::random_u32(a.seed.wrapping_add(step as u64 * 7919), i as u32) as usize
                    % train.len()
            })
            .collect();
        let (xs, _) = train.gather(&idx)?;
        let x = b.upload(&[a.batch, PIXELS], &xs)?;
        let noisy = match cost.kind {
            AeKind::Denoising => Some(b.upload(
                &[a.batch, PIXELS],
                &autoencoder::corrupt(&xs, cost.noise, cost.level, a.seed ^ (step as u64) << 20),
            )?),
            _ => None,
        };
        let mut g = Graph::new(b);
        let (total, _) = model.cost(&mut g, &x, noisy.as_ref(), cost)?;
        g.backward(total)?;
        opt.step(&g, &model.params())?;
        sum += finite_loss(b, g.value(total)?, step)? as f64;
        cnt += 1;
        if verbose && (last.elapsed().as_secs_f64() >= 10.0 || step + 1 == a.steps) {
            let el = start.elapsed().as_secs_f64();
            let mse = block_on(reconstruction_mse(b, model, &test.images, None))?;
            println!(
                "step {}/{}  cost {:.4}  held-out MSE {:.4}  {:.1} steps/s  elapsed {}  ETA {}",
                step + 1,
                a.steps,
                sum / cnt as f64,
                mse,
                (step + 1) as f64 / el,
                hms(el),
                hms(el / (step + 1) as f64 * (a.steps - step - 1) as f64)
            );
            (sum, cnt) = (0.0, 0);
            last = Instant::now();
        }
    }
    Ok(start.elapsed().as_secs_f64())
}

/// `nnlab train ae`.
pub fn train(a: TrainArgs) -> Result<()> {
    a.common.validate()?;
    let config = AeConfig {
        arch: arch(a.common.arch),
        k: a.k,
    };
    config.validate()?;
    crate::files::check_writable(&a.out)?;
    let b = a.common.run.backend()?;
    let b: &dyn Backend = b.as_ref();
    let (train, test) = load(&a.common)?;
    let cost = a.common.cost(a.kind.kind());
    let model = Autoencoder::new(b, config, a.common.seed)?;
    println!(
        "training a {:?} {:?} autoencoder, k = {}, on {} ({} digits, batch {}, {} steps, Adam lr {} cosine, seed {}; cost {:?})",
        cost.kind,
        config.arch,
        config.k,
        b.info().describe(),
        train.len(),
        a.common.batch,
        a.common.steps,
        a.common.lr,
        a.common.seed,
        cost
    );
    let secs = train_model(b, &model, &cost, &train, &test, &a.common, true)?;
    let mse = block_on(reconstruction_mse(b, &model, &test.images, None))?;
    let mut meta = metadata(b, &format!("nnlab {:?} autoencoder", cost.kind));
    meta.insert(
        "data".to_string(),
        format!("MNIST training digits {PAGE_DIGITS}..60000"),
    );
    meta.insert("heldout_mse".to_string(), format!("{mse:.5}"));
    meta.insert("train_seconds".to_string(), format!("{secs:.0}"));
    crate::weights::save_file(b, &model.params(), &a.out, Some(meta))?;
    println!(
        "trained in {}; held-out MSE {mse:.4}; weights written to {}",
        hms(secs),
        a.out.display()
    );
    Ok(())
}

/// `nnlab eval ae`: for each k, PCA and each kind after the same training budget.
pub fn eval(a: EvalArgs) -> Result<()> {
    a.common.validate()?;
    if a.k.is_empty() {
        return Err(Error::Invalid("need at least one --k".into()));
    }
    let b = a.common.run.backend()?;
    let b: &dyn Backend = b.as_ref();
    let (train, test) = load(&a.common)?;
    let noisy_test = autoencoder::corrupt(&test.images, noise(a.common.noise), a.common.level, 99);
    // PCA on the same training digits (a 20,000-digit subset keeps it quick; the covariance
    // of 784 dims is well estimated by then)
    let pca_rows = train.len().min(20_000);
    println!(
        "held-out MSE per pixel on {} test digits; every autoencoder: {:?}, {} Adam steps of {} digits, lr {}, seed {}; PCA fitted on {pca_rows} training digits",
        test.len(),
        arch(a.common.arch),
        a.common.steps,
        a.common.batch,
        a.common.lr,
        a.common.seed
    );
    println!("| k | PCA | plain | sparse | contractive | denoising | sparse: codes < 0.05 / mean code | contractive: Jacobian norm / plain's | noisy input: denoising / plain |");
    println!("|---|---|---|---|---|---|---|---|---|");
    for &k in &a.k {
        let config = AeConfig {
            arch: arch(a.common.arch),
            k,
        };
        config.validate()?;
        let p = block_on(pca::fit(
            b,
            &train.images[..pca_rows * PIXELS],
            pca_rows,
            PIXELS,
            k,
            a.common.seed,
        ))?;
        let rec = p.reconstruct(&p.project(&test.images));
        let pca_mse = rec
            .iter()
            .zip(&test.images)
            .map(|(r, c)| ((r - c) as f64).powi(2))
            .sum::<f64>()
            / test.images.len() as f64;
        let mut mse = HashMap::new();
        let mut models = HashMap::new();
        for kind in [
            AeKind::Plain,
            AeKind::Sparse,
            AeKind::Contractive,
            AeKind::Denoising,
        ] {
            let model = Autoencoder::new(b, config, a.common.seed)?;
            let secs = train_model(
                b,
                &model,
                &a.common.cost(kind),
                &train,
                &test,
                &a.common,
                false,
            )?;
            let m = block_on(reconstruction_mse(b, &model, &test.images, None))?;
            eprintln!(
                "  k = {k}: {kind:?} trained in {}, held-out MSE {m:.4}",
                hms(secs)
            );
            mse.insert(kind, m);
            models.insert(kind, model);
        }
        let sparse_codes = block_on(codes(b, &models[&AeKind::Sparse], &test.images))?;
        let near_zero =
            sparse_codes.iter().filter(|c| **c < 0.05).count() as f64 / sparse_codes.len() as f64;
        let mean_code =
            sparse_codes.iter().map(|c| *c as f64).sum::<f64>() / sparse_codes.len() as f64;
        let plain_codes = block_on(codes(b, &models[&AeKind::Plain], &test.images))?;
        let plain_near_zero =
            plain_codes.iter().filter(|c| **c < 0.05).count() as f64 / plain_codes.len() as f64;
        let jac_digits = &test.images[..200 * PIXELS];
        let j_ratio = block_on(jacobian_norm(b, &models[&AeKind::Contractive], jac_digits))?
            / block_on(jacobian_norm(b, &models[&AeKind::Plain], jac_digits))?;
        let den_noisy = block_on(reconstruction_mse(
            b,
            &models[&AeKind::Denoising],
            &test.images,
            Some(&noisy_test),
        ))?;
        let plain_noisy = block_on(reconstruction_mse(
            b,
            &models[&AeKind::Plain],
            &test.images,
            Some(&noisy_test),
        ))?;
        println!(
            "| {k} | {pca_mse:.4} | {:.4} | {:.4} | {:.4} | {:.4} | {:.0}% (plain {:.0}%) / {mean_code:.3} | {j_ratio:.3} | {den_noisy:.4} / {plain_noisy:.4} |",
            mse[&AeKind::Plain],
            mse[&AeKind::Sparse],
            mse[&AeKind::Contractive],
            mse[&AeKind::Denoising],
            100.0 * near_zero,
            100.0 * plain_near_zero
        );
    }
    Ok(())
}
