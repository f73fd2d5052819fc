//! The DnCNN commands: `nnlab train dncnn`, `nnlab eval dncnn`, `nnlab denoise`,
//! `nnlab average` and `nnlab grow dncnn`.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use clap::{Args, ValueEnum};

use super::{backend, checks, command_line, finite_loss, hms, model_file, BackendKind, RunArgs};
use crate::data::images::{self, ColorMode, DenoiseSet, Image, Part, DEFAULT_MAX_PIXELS};
use crate::data::patches::{Noise, NoiseLevel, PatchSampler, DEFAULT_CLIP_MIX};
use crate::models::dncnn::{self, DnCnn, DnCnnConfig};
use crate::{metrics, Backend, Error, Result};

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Mode {
    /// fixed sigma = 10 (the lecture's model)
    S10,
    /// fixed sigma = 15
    S15,
    /// fixed sigma = 25
    S25,
    /// fixed sigma = 50
    S50,
    /// sigma uniform in [0, 55] per patch (DnCNN-B)
    Blind,
}

impl Mode {
    pub fn level(self) -> NoiseLevel {
        match self {
            Mode::S10 => NoiseLevel::Fixed(10.0),
            Mode::S15 => NoiseLevel::Fixed(15.0),
            Mode::S25 => NoiseLevel::Fixed(25.0),
            Mode::S50 => NoiseLevel::Fixed(50.0),
            Mode::Blind => NoiseLevel::Uniform { lo: 0.0, hi: 55.0 },
        }
    }
    pub fn name(self) -> &'static str {
        match self {
            Mode::S10 => "s10",
            Mode::S15 => "s15",
            Mode::S25 => "s25",
            Mode::S50 => "s50",
            Mode::Blind => "blind",
        }
    }
}

#[derive(Args, Clone, Debug)]
pub struct TrainArgs {
    /// noise level of the training patches
    #[arg(long, value_enum, default_value_t = Mode::Blind)]
    pub mode: Mode,
    /// 1 = gray (Train400), 3 = colour (CBSD432)
    #[arg(long, default_value_t = 1)]
    pub channels: usize,
    /// conv layers (the paper: 17, 20 for DnCNN-B)
    #[arg(long, default_value_t = 17)]
    pub depth: usize,
    /// hidden channels (the paper: 64)
    #[arg(long, default_value_t = 64)]
    pub width: usize,
    #[arg(long, default_value_t = 40)]
    pub patch: usize,
    #[arg(long, default_value_t = 128)]
    pub batch: usize,
    /// optimizer steps in total (lr x0.1 at 60%, x0.01 at 85%)
    #[arg(long, default_value_t = 10_000)]
    pub steps: u64,
    /// Adam learning rate at the start
    #[arg(long, default_value_t = 1e-3)]
    pub lr: f32,
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// final weights (model state only); default www/models/dncnn_<mode>_<gray|color>.safetensors
    #[arg(long)]
    pub out: Option<PathBuf>,
    #[command(flatten)]
    pub run: RunArgs,
    /// checkpoint file (weights + Adam state + step), written every --checkpoint-every steps
    #[arg(long)]
    pub checkpoint: Option<PathBuf>,
    #[arg(long, default_value_t = 200)]
    pub checkpoint_every: u64,
    /// also write the model's weights (no optimizer state) to DIR/step_<N>.safetensors every
    /// --snapshot-every steps, to average later with `nnlab average` (stochastic weight averaging)
    #[arg(long)]
    pub snapshots: Option<PathBuf>,
    #[arg(long, default_value_t = 100)]
    pub snapshot_every: u64,
    /// continue from --checkpoint (its model shape, mode, seed, patch and batch are used)
    #[arg(long)]
    pub resume: bool,
    /// stop after this step (checkpoint written) without finishing: train in time slices with
    /// the learning-rate schedule of the full --steps, continue later with --resume
    #[arg(long)]
    pub stop_at: Option<u64>,
    /// seconds between progress lines
    #[arg(long, default_value_t = 10.0)]
    pub print_every: f64,
    /// fine-tune: start from these weights (their shape wins over --depth/--width/--channels)
    /// with a fresh optimizer, instead of a random initialisation
    #[arg(long)]
    pub init: Option<PathBuf>,
    /// fraction of the patches whose noisy version is clipped to [0, 255] and rounded to 8 bits,
    /// as a saved photo is; the others keep the paper's unclipped noise
    #[arg(long, default_value_t = DEFAULT_CLIP_MIX)]
    pub clip_mix: f32,
    /// fraction of the clean patches compressed toward black or white (a log-uniform gain in
    /// [1/25, 1/2], half toward each end, rounded to 8 bits) before the noise, so that dark and
    /// bright regions, where clipping biases the noise, are common in training (0: off)
    #[arg(long, default_value_t = 0.0)]
    pub tone_mix: f32,
    /// train on every image of the set; by default every 10th image (in name order) is held
    /// out as the validation part (`--set Train400-val` / `CBSD432-val` in `nnlab eval dncnn`)
    #[arg(long)]
    pub all_images: bool,
    /// PSNR on the validation part every N steps and at the end (0: never): sigma 25 and 50, the
    /// paper's unclipped noise and 8-bit clipped noise, noise seed 0 as `nnlab eval dncnn`
    #[arg(long, default_value_t = 500)]
    pub val_every: u64,
    #[command(flatten)]
    pub bn: RecalibrateArgs,
}

/// BatchNorm recalibration (`DnCnn::recalibrate_batchnorm`), shared by `train dncnn` (applied
/// to the final weights) and `average` (to the averaged ones).
#[derive(Args, Clone, Debug)]
pub struct RecalibrateArgs {
    /// recompute the BatchNorm running statistics as exact averages over N batches of training
    /// patches (same patch size, batch, noise mode, clip and tone mix as the training; the
    /// validation part left out), in training mode with no weight changed
    #[arg(long, value_name = "N")]
    pub recalibrate_bn: Option<usize>,
    /// seed of the recalibration's patch draws
    #[arg(long, default_value_t = 1)]
    pub bn_seed: u64,
}

impl RecalibrateArgs {
    fn check(&self) -> Result<()> {
        match self.recalibrate_bn {
            Some(0) => Err(Error::Invalid(
                "--recalibrate-bn needs at least 1 batch".into(),
            )),
            Some(n) if n > 100_000 => Err(Error::Invalid(format!(
                "--recalibrate-bn {n}: at most 100000 batches"
            ))),
            _ => Ok(()),
        }
    }
}

/// Recompute `model`'s BatchNorm statistics over `batches` batches of `batch` patches drawn
/// from `sampler` with `noise` (seed `seed`, draws 0..batches), and say so.
fn recalibrate_bn(
    b: &dyn Backend,
    model: &DnCnn,
    sampler: &PatchSampler,
    noise: Noise,
    batch: usize,
    batches: usize,
    seed: u64,
) -> Result<String> {
    let t = Instant::now();
    let shape = [batch, model.config.channels, sampler.patch, sampler.patch];
    model.recalibrate_batchnorm(b, batches, |k| {
        b.upload(&shape, &sampler.batch(batch, noise, seed, k as u64).noisy)
    })?;
    let line = format!(
        "{batches} batches of {batch} patches of {p}x{p}, seed {seed}, {:.0}% clipped, {:.0}% toned",
        noise.clipped * 100.0,
        noise.toned * 100.0,
        p = sampler.patch
    );
    println!(
        "BatchNorm statistics recomputed over {line} in {}",
        hms(t.elapsed().as_secs_f64())
    );
    Ok(line)
}

#[derive(Args, Clone, Debug)]
pub struct EvalArgs {
    /// weights written by `nnlab train dncnn` (shape read from the file)
    #[arg(long)]
    pub model: PathBuf,
    /// test sets, comma-separated: Set12, BSD68, CBSD68
    #[arg(long, value_delimiter = ',', default_value = "Set12")]
    pub set: Vec<String>,
    /// noise levels (0-255 scale), comma-separated
    #[arg(long, value_delimiter = ',', default_value = "15,25,50")]
    pub sigma: Vec<f32>,
    /// seed of the test noise (fixed, so results repeat)
    #[arg(long, default_value_t = 0)]
    pub noise_seed: u64,
    /// evaluate on the first N images only
    #[arg(long)]
    pub limit: Option<usize>,
    /// also print one line per image
    #[arg(long)]
    pub per_image: bool,
    /// clip the noisy input to [0, 255] and round it to 8 bits, as a saved photo is (the paper's
    /// protocol, the default, leaves the noise unclipped)
    #[arg(long)]
    pub clip: bool,
    /// geometric self-ensemble: average the model's outputs on the 8 flips/rotations of the
    /// image (8 times slower, usually a little higher PSNR)
    #[arg(long)]
    pub self_ensemble: bool,
    /// also print the mean output bias on issue 23's synthetic dark image (a 4-40 level ramp,
    /// 8-bit clipped noise at sigma 50, noise seeds 1-3; the bar is +-1 level)
    #[arg(long)]
    pub dark_bias: bool,
    #[command(flatten)]
    pub run: RunArgs,
}

#[derive(Args, Clone, Debug)]
pub struct DenoiseArgs {
    /// input image (PNG, JPEG or GIF)
    pub input: PathBuf,
    /// output image, .png or .jpg (the format follows the extension)
    pub output: PathBuf,
    /// a weights file, or a shipped model: blind (gray), s10 (gray, sigma 10), color (blind,
    /// colour); default: color for a colour image, blind for a gray one
    #[arg(long)]
    pub model: Option<String>,
    /// add white Gaussian noise of this sigma (0-255 scale) first, and report PSNR/SSIM
    #[arg(long)]
    pub add_noise: Option<f32>,
    /// clip the added noise: the noisy image clamped to [0, 255] and rounded to 8 bits, as a
    /// saved photo would be (as the page does)
    #[arg(long)]
    pub clip: bool,
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// also write the noisy input here (with --add-noise)
    #[arg(long)]
    pub noisy_out: Option<PathBuf>,
    /// output tile side (default: from the backend's buffer limit)
    #[arg(long)]
    pub tile: Option<usize>,
    /// geometric self-ensemble: average the model's outputs on the 8 flips/rotations of the
    /// image (8 times slower, usually a little higher PSNR)
    #[arg(long)]
    pub self_ensemble: bool,
    #[arg(long, value_enum, default_value_t = BackendKind::Cpu)]
    pub backend: BackendKind,
}

fn parse_mode(s: &str) -> Result<Mode> {
    Mode::from_str(s, true)
        .map_err(|_| Error::Weights(format!("checkpoint names an unknown mode '{s}'")))
}

/// `nnlab train dncnn`.
pub fn train(mut a: TrainArgs) -> Result<()> {
    let b = a.run.backend()?;
    let b: &dyn Backend = b.as_ref();
    // on resume, the checkpoint's shape and data settings win (only --steps/--lr/--out may change)
    let resume_bytes = match (&a.checkpoint, a.resume) {
        (Some(p), true) if p.exists() => Some(crate::weights::read_file(p)?),
        (Some(p), true) => {
            println!(
                "no checkpoint at {} yet: starting from scratch",
                p.display()
            );
            None
        }
        (None, true) => return Err(Error::Invalid("--resume needs --checkpoint PATH".into())),
        _ => None,
    };
    if let (Some(bytes), Some(ck)) = (&resume_bytes, &a.checkpoint) {
        let mut read = || -> Result<()> {
            let meta = crate::weights::metadata(bytes)?;
            let get = |k: &str| {
                meta.get(k).cloned().ok_or_else(|| {
                    Error::Weights(format!(
                        "not a training checkpoint: it has no '{k}' entry (a checkpoint is written by --checkpoint)"
                    ))
                })
            };
            let num = |k: &str| -> Result<u64> {
                get(k)?
                    .parse()
                    .map_err(|_| Error::Weights(format!("checkpoint entry '{k}' is not a number")))
            };
            a.channels = num("channels")? as usize;
            a.depth = num("depth")? as usize;
            a.width = num("width")? as usize;
            a.patch = num("patch")? as usize;
            a.batch = num("batch")? as usize;
            a.seed = num("seed")?;
            a.mode = parse_mode(&get("mode")?)?;
            // checkpoints written before these settings existed used unclipped noise on every image
            a.clip_mix = match meta.get("clip_mix") {
                Some(v) => v.parse().map_err(|_| {
                    Error::Weights("checkpoint entry 'clip_mix' is not a number".into())
                })?,
                None => 0.0,
            };
            a.tone_mix = match meta.get("tone_mix") {
                Some(v) => v.parse().map_err(|_| {
                    Error::Weights("checkpoint entry 'tone_mix' is not a number".into())
                })?,
                None => 0.0,
            };
            a.all_images = meta.get("images").is_none_or(|v| v == "all");
            Ok(())
        };
        read().map_err(|e| crate::weights::in_file(ck, e))?;
    }
    let init_bytes = match (&a.init, &resume_bytes) {
        (Some(_), Some(_)) => {
            return Err(Error::Invalid(
                "--init and --resume exclude each other: a checkpoint already holds weights".into(),
            ))
        }
        (Some(p), None) => Some(crate::weights::read_file(p)?),
        _ => None,
    };
    if let (Some(bytes), Some(p)) = (&init_bytes, &a.init) {
        let c = dncnn::config_from_tensors(&crate::weights::from_bytes(bytes)?)
            .map_err(|e| crate::weights::in_file(p, e))?;
        (a.channels, a.depth, a.width) = (c.channels, c.depth, c.width);
    }
    let config = DnCnnConfig {
        channels: a.channels,
        depth: a.depth,
        width: a.width,
    };
    config.validate()?;
    if a.batch == 0
        || a.patch < 3
        || a.steps == 0
        || !(a.lr > 0.0 && a.lr.is_finite())
        || a.checkpoint_every == 0
        || a.snapshot_every == 0
        || !(0.0..=1.0).contains(&a.clip_mix)
        || !(0.0..=1.0).contains(&a.tone_mix)
    {
        return Err(Error::Invalid(format!(
            "need batch >= 1, patch >= 3, steps >= 1, lr > 0, checkpoint-every >= 1, snapshot-every >= 1, clip-mix in [0, 1], tone-mix in [0, 1] (got {}, {}, {}, {}, {}, {}, {}, {})",
            a.batch, a.patch, a.steps, a.lr, a.checkpoint_every, a.snapshot_every, a.clip_mix, a.tone_mix
        )));
    }
    a.bn.check()?;
    match (a.stop_at, &a.checkpoint) {
        (Some(0), _) => {
            return Err(Error::Invalid(
                "--stop-at must be at least 1 (the step to stop after, its checkpoint written)"
                    .into(),
            ))
        }
        (Some(_), None) => {
            return Err(Error::Invalid(
                "--stop-at needs --checkpoint PATH: the run continues from it with --resume".into(),
            ))
        }
        _ => {}
    }
    // one step holds the noisy and clean patches and at least one activation per layer
    checks::check_memory(
        &format!("--batch {} with --patch {}", a.batch, a.patch),
        checks::f32_bytes(&[
            a.batch,
            a.patch,
            a.patch,
            2 * a.channels + a.depth * a.width,
        ]),
    )?;
    let out = a.out.clone().unwrap_or_else(|| {
        PathBuf::from(format!(
            "www/models/dncnn_{}_{}.safetensors",
            a.mode.name(),
            if a.channels == 1 { "gray" } else { "color" }
        ))
    });
    // every file this run writes can be written, found before the training rather than after
    crate::files::check_writable(&out)?;
    if let Some(ck) = &a.checkpoint {
        crate::files::check_writable(ck)?;
    }
    if let Some(dir) = &a.snapshots {
        crate::files::check_writable(&dir.join("step_0.safetensors"))?;
    }
    let mode = ColorMode::from_channels(a.channels)?;
    let set = if a.channels == 1 {
        DenoiseSet::Train400
    } else {
        DenoiseSet::Cbsd432
    };
    let dir = a.run.data_dir()?;
    let t0 = Instant::now();
    let part = if a.all_images { Part::All } else { Part::Train };
    let imgs: Vec<Image> = images::load_part(&dir, set, mode, part)?
        .into_iter()
        .map(|(_, im)| im)
        .collect();
    let sampler = PatchSampler::new(imgs, a.patch)?;
    let val: Vec<(String, Image)> = if a.all_images {
        Vec::new()
    } else {
        images::load_part(&dir, set, mode, Part::Val)?
    };
    println!(
        "loaded {} {} images ({}) from {} in {:.1}s",
        sampler.len(),
        set.folder(),
        if a.all_images {
            "all: no validation part held out".to_string()
        } else {
            format!("{} held out for validation", val.len())
        },
        images::set_dir(&dir, set).display(),
        t0.elapsed().as_secs_f64()
    );

    let model = match &init_bytes {
        Some(bytes) => {
            println!(
                "fine-tuning from {}",
                a.init
                    .as_ref()
                    .map(|p| p.display().to_string())
                    .unwrap_or_default()
            );
            DnCnn::from_weights(b, bytes).map_err(|e| {
                crate::weights::in_file(a.init.as_deref().unwrap_or(Path::new("")), e)
            })?
        }
        None => DnCnn::new(b, config, a.seed)?,
    };
    let mut opt = dncnn::adam(a.lr);
    let mut step = 0u64;
    if let Some(bytes) = &resume_bytes {
        let ck = a.checkpoint.as_deref().unwrap_or(Path::new(""));
        let (s, _) = dncnn::restore_checkpoint(b, &model, &mut opt, bytes)
            .map_err(|e| crate::weights::in_file(ck, e))?;
        step = s;
        println!(
            "resumed from {} at step {step}",
            a.checkpoint
                .as_ref()
                .map(|p| p.display().to_string())
                .unwrap_or_default()
        );
    }
    let noise = Noise {
        level: a.mode.level(),
        clipped: a.clip_mix,
        toned: a.tone_mix,
    };
    println!(
        "training DnCNN ({} ch, depth {}, width {}, {} parameters) mode {} ({:.0}% of patches with 8-bit clipped noise, {:.0}% toned toward black or white) on {}: patch {}, batch {}, steps {}, Adam lr {} (x0.1 at 60%, x0.01 at 85%), seed {}",
        a.channels,
        a.depth,
        a.width,
        config.parameter_count(),
        a.mode.name(),
        a.clip_mix * 100.0,
        a.tone_mix * 100.0,
        b.info().describe(),
        a.patch,
        a.batch,
        a.steps,
        a.lr,
        a.seed
    );
    let mut meta = HashMap::new();
    meta.insert("mode".to_string(), a.mode.name().to_string());
    meta.insert("patch".to_string(), a.patch.to_string());
    meta.insert("batch".to_string(), a.batch.to_string());
    meta.insert("seed".to_string(), a.seed.to_string());
    meta.insert("lr0".to_string(), a.lr.to_string());
    meta.insert("steps".to_string(), a.steps.to_string());
    meta.insert("data".to_string(), set.folder().to_string());
    meta.insert("clip_mix".to_string(), a.clip_mix.to_string());
    meta.insert("tone_mix".to_string(), a.tone_mix.to_string());
    meta.insert(
        "images".to_string(),
        (if a.all_images { "all" } else { "train-part" }).to_string(),
    );
    meta.insert("backend".to_string(), b.info().describe());
    if let Some(p) = &a.init {
        meta.insert("init".to_string(), p.display().to_string());
    }

    let shape = [a.batch, a.channels, a.patch, a.patch];
    let start = Instant::now();
    let start_step = step;
    let mut last_print = Instant::now();
    let (mut loss_sum, mut loss_n) = (0.0f64, 0usize);
    let mut last_loss = f64::NAN;
    let end = a.stop_at.map_or(a.steps, |s| s.min(a.steps));
    while step < end {
        opt.lr = dncnn::lr_at(a.lr, step, a.steps);
        let batch = sampler.batch(a.batch, noise, a.seed, step);
        let noisy = b.upload(&shape, &batch.noisy)?;
        let clean = b.upload(&shape, &batch.clean)?;
        let loss = dncnn::train_step(b, &model, &mut opt, &noisy, &clean)?;
        let l = finite_loss(b, &loss, step)?;
        loss_sum += l as f64;
        loss_n += 1;
        step += 1;
        if last_print.elapsed().as_secs_f64() >= a.print_every || step == end {
            let el = start.elapsed().as_secs_f64();
            let done = step - start_step;
            let rate = (done * a.batch as u64) as f64 / el;
            last_loss = loss_sum / loss_n as f64;
            // loss is the MSE of the residual in [0,1] units; the PSNR of that MSE is also shown
            println!(
                "step {step}/{}  loss {:.3e} ({:.2} dB)  lr {:.1e}  {:.1} patches/s  elapsed {}  ETA {}",
                a.steps,
                last_loss,
                metrics::psnr_from_mse(last_loss),
                opt.lr,
                rate,
                hms(el),
                hms(el / done as f64 * (a.steps - step) as f64)
            );
            (loss_sum, loss_n) = (0.0, 0);
            last_print = Instant::now();
        }
        if !val.is_empty() && a.val_every > 0 && (step.is_multiple_of(a.val_every) || step == end) {
            let line = validate(b, &model, &val, a.mode)?;
            println!("val step {step}: {line}");
            meta.insert("val".to_string(), format!("step {step}: {line}"));
        }
        if let Some(ck) = &a.checkpoint {
            if step.is_multiple_of(a.checkpoint_every) || step == end {
                let bytes = pollster::block_on(dncnn::checkpoint_bytes(
                    b,
                    &model,
                    &opt,
                    step,
                    meta.clone(),
                ))?;
                crate::files::write_atomic(ck, &bytes)?;
            }
        }
        if let Some(dir) = &a.snapshots {
            if step.is_multiple_of(a.snapshot_every) {
                let mut smeta = meta.clone();
                smeta.insert("step".to_string(), step.to_string());
                let bytes = pollster::block_on(model.to_weights(b, smeta))?;
                crate::files::write_atomic(&dir.join(format!("step_{step}.safetensors")), &bytes)?;
            }
        }
    }
    if step < a.steps {
        println!(
            "stopped at step {step} of {} (--stop-at); checkpoint {}; continue with --resume",
            a.steps,
            a.checkpoint.as_deref().unwrap_or(Path::new("")).display()
        );
        return Ok(());
    }
    let mut wmeta = meta.clone();
    if let Some(n) = a.bn.recalibrate_bn {
        // after the last checkpoint: it keeps the trained statistics, so resuming is unchanged
        let line = recalibrate_bn(b, &model, &sampler, noise, a.batch, n, a.bn.bn_seed)?;
        wmeta.insert("bn_recalibrated".to_string(), line);
        wmeta.remove("val");
    }
    wmeta.insert("command".to_string(), command_line());
    wmeta.insert(
        "train_seconds_this_run".to_string(),
        format!("{:.0}", start.elapsed().as_secs_f64()),
    );
    // a run that resumes at its last step trains nothing and has no loss to report
    if last_loss.is_finite() {
        wmeta.insert("final_loss".to_string(), format!("{last_loss:.4e}"));
    }
    let bytes = pollster::block_on(model.to_weights(b, wmeta))?;
    crate::files::write_atomic(&out, &bytes)?;
    println!(
        "trained to step {step} in {} ; weights written to {}",
        hms(start.elapsed().as_secs_f64()),
        out.display()
    );
    Ok(())
}

/// `nnlab average`: the element-wise mean of weights files (snapshots of one run) in one file.
#[derive(Args, Clone, Debug)]
pub struct AverageArgs {
    /// the averaged weights
    #[arg(long)]
    pub out: PathBuf,
    /// weights files or checkpoints of one model (a checkpoint's optimizer state is left out)
    #[arg(required = true)]
    pub inputs: Vec<PathBuf>,
    /// (DnCNN weights) with --recalibrate-bn: the training settings are read from the last
    /// input's metadata (mode, patch, batch, clip_mix and tone_mix, 0 when absent)
    #[command(flatten)]
    pub bn: RecalibrateArgs,
    #[command(flatten)]
    pub run: RunArgs,
}

/// `nnlab average`: metadata from the last input, with the list of inputs added.
pub fn average(a: AverageArgs) -> Result<()> {
    a.bn.check()?;
    crate::files::check_writable(&a.out)?;
    let files = a
        .inputs
        .iter()
        .map(|p| crate::weights::read_file(p))
        .collect::<Result<Vec<_>>>()?;
    let refs: Vec<&[u8]> = files.iter().map(|f| f.as_slice()).collect();
    let tensors = crate::weights::average(&refs).map_err(|e| match e {
        Error::Weights(m) => {
            let list: Vec<String> = (a.inputs.iter().enumerate())
                .map(|(i, p)| format!("{} = {}", i + 1, p.display()))
                .collect();
            Error::Weights(format!("{m} (files: {})", list.join(", ")))
        }
        other => other,
    })?;
    let mut meta: HashMap<String, String> = crate::weights::metadata(refs[refs.len() - 1])?
        .into_iter()
        .filter(|(k, _)| !crate::weights::is_optimizer_state(k))
        .collect();
    let names: Vec<String> = a
        .inputs
        .iter()
        .map(|p| {
            p.file_name()
                .unwrap_or_default()
                .to_string_lossy()
                .into_owned()
        })
        .collect();
    meta.insert(
        "averaged".to_string(),
        format!("mean of {} files: {}", names.len(), names.join(" ")),
    );
    let mut bytes = crate::weights::to_bytes(&tensors, Some(meta.clone()))?;
    if let Some(n) = a.bn.recalibrate_bn {
        bytes = recalibrated(&a, &bytes, &mut meta, n)?;
    }
    crate::files::write_atomic(&a.out, &bytes)?;
    println!(
        "averaged {} files ({} tensors) into {}",
        names.len(),
        tensors.len(),
        a.out.display()
    );
    Ok(())
}

/// The averaged DnCNN `bytes` with BatchNorm statistics recomputed on patches drawn as its
/// training drew them (settings from `meta`, the last input's metadata).
/// How a weights file's training drew its patches, from its metadata (written by `nnlab train
/// dncnn`): patch size, batch size and noise (clip and tone mix 0 when absent, as files written
/// before them were trained). `option` and `whose` name what asks and which file, for errors.
fn training_draw(
    meta: &HashMap<String, String>,
    option: &str,
    whose: &str,
) -> Result<(usize, usize, Noise)> {
    let get = |k: &str| {
        meta.get(k).cloned().ok_or_else(|| {
            Error::Weights(format!(
                "{option}: {whose}'s metadata has no '{k}' entry (weights written by `nnlab train dncnn` have it)"
            ))
        })
    };
    let num = |k: &str| -> Result<f64> {
        get(k)?
            .parse()
            .map_err(|_| Error::Weights(format!("{whose}'s metadata entry '{k}' is not a number")))
    };
    let mode = parse_mode(&get("mode")?)?;
    let (patch, batch) = (num("patch")? as usize, num("batch")? as usize);
    let noise = Noise {
        level: mode.level(),
        // files written before these settings existed were trained without them (as --resume)
        clipped: meta.get("clip_mix").map_or(Ok(0.0), |_| num("clip_mix"))? as f32,
        toned: meta.get("tone_mix").map_or(Ok(0.0), |_| num("tone_mix"))? as f32,
    };
    if patch < 3
        || batch == 0
        || !(0.0..=1.0).contains(&noise.clipped)
        || !(0.0..=1.0).contains(&noise.toned)
    {
        return Err(Error::Weights(format!(
            "{whose}'s metadata: patch {patch}, batch {batch}, clip_mix {}, tone_mix {} out of range",
            noise.clipped, noise.toned
        )));
    }
    Ok((patch, batch, noise))
}

/// The training part of the set a `channels`-channel DnCNN trains on, as a patch sampler.
fn train_sampler(
    run: &RunArgs,
    channels: usize,
    patch: usize,
) -> Result<(PatchSampler, DenoiseSet)> {
    let (set, mode_c) = if channels == 1 {
        (DenoiseSet::Train400, ColorMode::Gray)
    } else {
        (DenoiseSet::Cbsd432, ColorMode::Rgb)
    };
    let imgs: Vec<Image> = images::load_part(&run.data_dir()?, set, mode_c, Part::Train)?
        .into_iter()
        .map(|(_, im)| im)
        .collect();
    Ok((PatchSampler::new(imgs, patch)?, set))
}

fn recalibrated(
    a: &AverageArgs,
    bytes: &[u8],
    meta: &mut HashMap<String, String>,
    batches: usize,
) -> Result<Vec<u8>> {
    let (patch, batch, noise) = training_draw(meta, "--recalibrate-bn", "the last input")?;
    let b = a.run.backend()?;
    let b: &dyn Backend = b.as_ref();
    let model = DnCnn::from_weights(b, bytes)?;
    let c = model.config.channels;
    checks::check_memory(
        &format!("--recalibrate-bn with batch {batch} and patch {patch}"),
        checks::f32_bytes(&[
            batch,
            patch,
            patch,
            2 * c + model.config.depth * model.config.width,
        ]),
    )?;
    let (sampler, set) = train_sampler(&a.run, c, patch)?;
    let line = recalibrate_bn(b, &model, &sampler, noise, batch, batches, a.bn.bn_seed)?;
    // a validation line measured with the old statistics no longer describes these weights
    meta.remove("val");
    meta.insert(
        "bn_recalibrated".to_string(),
        format!("{line}, train part of {}", set.folder()),
    );
    pollster::block_on(model.to_weights(b, meta.clone()))
}

/// `nnlab grow dncnn`: a trained DnCNN grown deeper and wider (Net2Net), same function.
#[derive(Args, Clone, Debug)]
pub struct GrowArgs {
    /// the trained weights to grow (written by `nnlab train dncnn`; its metadata says how its
    /// training drew patches, which the new layers' statistics are measured on)
    #[arg(long)]
    pub model: PathBuf,
    /// conv layers of the grown model (>= the model's)
    #[arg(long)]
    pub depth: usize,
    /// hidden channels of the grown model (>= the model's)
    #[arg(long)]
    pub width: usize,
    /// the grown weights
    #[arg(long)]
    pub out: PathBuf,
    /// seed of the channels copied and of the noise
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// noise on the added channels' incoming weights, as a fraction of that layer's weight std,
    /// so copies of one channel train apart (0: the grown model computes exactly the same)
    #[arg(long, default_value_t = 0.01)]
    pub noise: f32,
    /// batches of training patches over which the new layers' BatchNorm statistics (those of
    /// their input) are measured
    #[arg(long, default_value_t = 20)]
    pub stats_batches: usize,
    #[command(flatten)]
    pub run: RunArgs,
}

/// `nnlab grow dncnn`.
pub fn grow(a: GrowArgs) -> Result<()> {
    use crate::models::dncnn_grow::{self, GrowPlan};
    checks::check_stats_batches(a.stats_batches)?;
    crate::files::check_writable(&a.out)?;
    let t0 = Instant::now();
    let b = a.run.backend()?;
    let b: &dyn Backend = b.as_ref();
    let path = model_file(&a.model)?;
    let bytes = crate::weights::read_file(&path)?;
    let model = DnCnn::from_weights(b, &bytes).map_err(|e| crate::weights::in_file(&path, e))?;
    let old = model.config;
    let plan = GrowPlan {
        depth: a.depth,
        width: a.width,
        seed: a.seed,
        noise: a.noise,
    };
    // the shape is checked before any data is read
    if a.depth < old.depth || a.width < old.width {
        return Err(Error::Invalid(format!(
            "{}: the model is depth {} width {}; grow can only make it deeper or wider (asked for depth {} width {})",
            path.display(),
            old.depth,
            old.width,
            a.depth,
            a.width
        )));
    }
    DnCnnConfig {
        channels: old.channels,
        depth: a.depth,
        width: a.width,
    }
    .validate()?;
    let meta_in = crate::weights::metadata(&bytes)?;
    let stats = if a.depth > old.depth {
        let (patch, batch, noise) = training_draw(&meta_in, "grow", &path.display().to_string())?;
        let (sampler, _) = train_sampler(&a.run, old.channels, patch)?;
        let shape = [batch, old.channels, patch, patch];
        let seed = a.seed;
        pollster::block_on(dncnn_grow::hidden_stats(b, &model, a.stats_batches, |k| {
            b.upload(&shape, &sampler.batch(batch, noise, seed, k as u64).noisy)
        }))?
    } else {
        Vec::new()
    };
    let grown = pollster::block_on(dncnn_grow::grow(b, &model, &stats, plan))?;
    // the training settings stay (so `average --recalibrate-bn` and the model card read them);
    // what described the old weights goes
    let mut meta: HashMap<String, String> = meta_in
        .into_iter()
        .filter(|(k, _)| {
            !crate::weights::is_optimizer_state(k)
                && !matches!(
                    k.as_str(),
                    "val"
                        | "step"
                        | "averaged"
                        | "bn_recalibrated"
                        | "command"
                        | "final_loss"
                        | "train_seconds_this_run"
                )
        })
        .collect();
    meta.insert(
        "grown_from".to_string(),
        format!(
            "{} (depth {} width {}), seed {}, noise {}, {} stats batches",
            path.file_name().unwrap_or_default().to_string_lossy(),
            old.depth,
            old.width,
            a.seed,
            a.noise,
            a.stats_batches
        ),
    );
    meta.insert("command".to_string(), command_line());
    let out = pollster::block_on(grown.to_weights(b, meta))?;
    crate::files::write_atomic(&a.out, &out)?;
    println!(
        "grew {} from depth {} width {} ({} parameters) to depth {} width {} ({} parameters) in {}; written to {}",
        path.display(),
        old.depth,
        old.width,
        old.parameter_count(),
        a.depth,
        a.width,
        grown.config.parameter_count(),
        hms(t0.elapsed().as_secs_f64()),
        a.out.display()
    );
    Ok(())
}

/// Load a DnCNN weights file (shape from the file).
/// A path under www/models/ or a bare file name that is not here is looked for where the
/// shipped models are (see `cli::model_file`).
pub fn load_model(b: &dyn Backend, path: &Path) -> Result<DnCnn> {
    let path = model_file(path)?;
    let bytes = crate::weights::read_file(&path)?;
    DnCnn::from_weights(b, &bytes).map_err(|e| crate::weights::in_file(&path, e))
}

/// PSNR and SSIM of one image at one sigma under the paper protocol: clean in [0, 1] (from 8
/// bits), noise of sigma / 255 with `seed`, no clipping of the noisy input (with `clip`: the
/// noisy input clipped to [0, 1] and rounded to 8 bits, as a saved photo), output clamped and
/// rounded to 8 bits as a saved image would be, PSNR on the 0-255 scale.
pub fn eval_image(
    b: &dyn Backend,
    model: &DnCnn,
    clean: &Image,
    sigma: f32,
    seed: u64,
    clip: bool,
    ensemble: bool,
) -> Result<(f64, f64, f64)> {
    let noisy = if clip {
        images::add_awgn8(&clean.data, sigma, seed, 0)
    } else {
        images::add_awgn(&clean.data, sigma, seed, 0)
    };
    let noisy = clean.with_data(noisy)?;
    let den = dncnn::denoise_image(b, model, &noisy, ensemble)?;
    let out = images::quantize8(&den.data);
    let (c, h, w) = (clean.channels, clean.height, clean.width);
    let psnr_noisy = metrics::psnr(&clean.data, &noisy.data)?;
    Ok((
        psnr_noisy,
        metrics::psnr(&clean.data, &out)?,
        metrics::ssim(&clean.data, &out, c, h, w)?,
    ))
}

/// How a set is noised and denoised for [`set_psnr`].
#[derive(Clone, Copy, Debug)]
pub struct Protocol {
    pub sigma: f32,
    pub clip: bool,
    pub noise_seed: u64,
    pub ensemble: bool,
}

/// Mean (noisy PSNR, denoised PSNR, SSIM) over `imgs`. Image i gets its own fixed noise stream
/// from (noise seed, i, sigma): `nnlab eval dncnn` and the trainer's validation lines agree.
pub fn set_psnr(
    b: &dyn Backend,
    model: &DnCnn,
    imgs: &[(String, Image)],
    p: Protocol,
    per_image: bool,
) -> Result<(f64, f64, f64)> {
    let (mut pn, mut pd, mut ss) = (0.0, 0.0, 0.0);
    for (i, (fname, img)) in imgs.iter().enumerate() {
        let seed = p
            .noise_seed
            .wrapping_mul(1_000_003)
            .wrapping_add(i as u64 * 1000 + p.sigma.round() as u64);
        let (a1, a2, a3) = eval_image(b, model, img, p.sigma, seed, p.clip, p.ensemble)?;
        if per_image {
            println!(
                "  {fname:<14} sigma {:>4}: noisy {a1:.2} dB -> {a2:.2} dB, SSIM {a3:.4}",
                p.sigma
            );
        }
        pn += a1;
        pd += a2;
        ss += a3;
    }
    let n = imgs.len().max(1) as f64;
    Ok((pn / n, pd / n, ss / n))
}

/// The trainer's validation line: PSNR on the held-out part at the mode's sigma (25 and 50 when
/// blind), unclipped and 8-bit clipped, noise seed 0.
fn validate(b: &dyn Backend, model: &DnCnn, val: &[(String, Image)], mode: Mode) -> Result<String> {
    let sigmas: Vec<f32> = match mode.level() {
        NoiseLevel::Fixed(s) => vec![s],
        NoiseLevel::Uniform { .. } => vec![25.0, 50.0],
    };
    let mut parts = Vec::new();
    for sigma in sigmas {
        let mut row = Vec::new();
        for clip in [false, true] {
            let proto = Protocol {
                sigma,
                clip,
                noise_seed: 0,
                ensemble: false,
            };
            row.push(set_psnr(b, model, val, proto, false)?.1);
        }
        parts.push(format!(
            "sigma {sigma} {:.3} dB (clipped {:.3})",
            row[0], row[1]
        ));
    }
    // a blind model is also held to issue 23's dark-image bar (a synthetic image, no test set)
    if mode == Mode::Blind {
        parts.push(format!(
            "dark bias {:+.2} levels",
            dncnn::dark_bias(b, model)?.0
        ));
    }
    Ok(parts.join(", "))
}

/// `nnlab eval dncnn`.
pub fn eval(a: EvalArgs) -> Result<()> {
    if a.sigma.is_empty() || a.set.is_empty() {
        return Err(Error::Invalid(
            "need at least one --set and one --sigma".into(),
        ));
    }
    for &s in &a.sigma {
        checks::check_sigma("--sigma", s)?;
    }
    checks::check_limit(a.limit)?;
    let b = a.run.backend()?;
    let b: &dyn Backend = b.as_ref();
    let model = load_model(b, &a.model)?;
    let dir = a.run.data_dir()?;
    let cfg = model.config;
    println!(
        "model {} (DnCNN {} ch, depth {}, width {}) on {}, noise seed {}, {}{}",
        a.model.display(),
        cfg.channels,
        cfg.depth,
        cfg.width,
        b.info().describe(),
        a.noise_seed,
        if a.clip {
            "noisy input clipped and rounded to 8 bits (--clip)"
        } else {
            "unclipped noise (the paper's protocol)"
        },
        if a.self_ensemble {
            ", x8 self-ensemble"
        } else {
            ""
        }
    );
    println!(
        "{:<12} {:>5}  {:>6}  {:>11}  {:>10}  {:>6}",
        "set", "sigma", "images", "noisy PSNR", "PSNR (dB)", "SSIM"
    );
    for name in &a.set {
        let (set, part) = images::parse_set_part(name)?;
        let mode = ColorMode::from_channels(cfg.channels)?;
        if set.mode() != mode {
            println!(
                "note: {} is a {:?} set, read as {:?} for this {}-channel model",
                set.folder(),
                set.mode(),
                mode,
                cfg.channels
            );
        }
        let mut imgs = images::load_part(&dir, set, mode, part)?;
        if let Some(n) = a.limit {
            imgs.truncate(n);
        }
        let label = match part {
            Part::Val => format!("{}-val", set.folder()),
            _ => set.folder().to_string(),
        };
        for &sigma in &a.sigma {
            let proto = Protocol {
                sigma,
                clip: a.clip,
                noise_seed: a.noise_seed,
                ensemble: a.self_ensemble,
            };
            let (pn, p, s) = set_psnr(b, &model, &imgs, proto, a.per_image)?;
            // three decimals: a bar such as BM3D's 28.57 needs the third to be decided
            println!(
                "{:<12} {:>5}  {:>6}  {:>11.3}  {:>10.3}  {:>6.4}",
                label,
                sigma,
                imgs.len(),
                pn,
                p,
                s
            );
        }
    }
    if a.dark_bias {
        let (bias, per) = dncnn::dark_bias(b, &model)?;
        println!(
            "dark image (4-40 levels), sigma 50 clipped: mean output bias {bias:+.2} levels (seeds 1-3: {:+.2} / {:+.2} / {:+.2})",
            per[0], per[1], per[2]
        );
    }
    Ok(())
}

/// The file of a shipped model name (blind, s10, color) under www/models/, else the name as a path.
/// Found by [`load_model`] from any folder (see `cli::model_file`).
pub fn shipped_model_path(name: &str) -> PathBuf {
    match name {
        "blind" => PathBuf::from("www/models/dncnn_blind_gray.safetensors"),
        "s10" => PathBuf::from("www/models/dncnn_s10_gray.safetensors"),
        "color" => PathBuf::from("www/models/dncnn_blind_color.safetensors"),
        other => PathBuf::from(other),
    }
}

/// The shipped model names `--model` takes besides a path.
pub const SHIPPED_NAMES: &str = "blind, s10, color";

/// True when the three planes of an RGB image are equal (a gray image stored as colour).
pub fn is_gray(img: &Image) -> bool {
    let p = img.pixels();
    img.channels == 1 || (img.data[..p] == img.data[p..2 * p] && img.data[..p] == img.data[2 * p..])
}

/// `nnlab denoise in out`.
pub fn denoise(a: DenoiseArgs) -> Result<()> {
    // everything that can be refused is, before the model runs
    if let Some(s) = a.add_noise {
        checks::check_sigma("--add-noise", s)?;
    }
    if a.tile == Some(0) {
        return Err(Error::Invalid("--tile must be >= 1".into()));
    }
    images::OutputFormat::from_path(&a.output)?;
    crate::files::check_writable(&a.output)?;
    if let Some(p) = &a.noisy_out {
        images::OutputFormat::from_path(p)?;
        crate::files::check_writable(p)?;
    }
    let b = backend(a.backend)?;
    let b: &dyn Backend = b.as_ref();
    let name = match a.model.as_deref() {
        Some(m) => m.to_string(),
        None => {
            let rgb = images::load_file(&a.input, ColorMode::Rgb, DEFAULT_MAX_PIXELS)?;
            if is_gray(&rgb) {
                "blind".into()
            } else {
                "color".into()
            }
        }
    };
    let path = model_file(&shipped_model_path(&name)).map_err(|e| match e {
        // neither a file nor a shipped name
        Error::Io(_) if !SHIPPED_NAMES.split(", ").any(|n| n == name) => Error::Io(format!(
            "--model {name}: no such weights file, and not a shipped model name ({SHIPPED_NAMES})"
        )),
        other => other,
    })?;
    let model = load_model(b, &path)?;
    let mode = ColorMode::from_channels(model.config.channels)?;
    let clean = images::load_file(&a.input, mode, DEFAULT_MAX_PIXELS)?;
    let input = match a.add_noise {
        Some(s) if a.clip => clean.with_data(images::add_awgn8(&clean.data, s, a.seed, 0))?,
        Some(s) => clean.with_data(images::add_awgn(&clean.data, s, a.seed, 0))?,
        None => clean.clone(),
    };
    if let (Some(p), Some(_)) = (&a.noisy_out, a.add_noise) {
        images::save_image(p, &input)?;
    }
    let core = match a.tile {
        Some(t) => t,
        None => dncnn::tile_core(b, &model.config)?,
    };
    let t0 = Instant::now();
    let data = dncnn::denoise_tiled(b, &model, &input, core, a.self_ensemble, |_, _| {})?;
    let secs = t0.elapsed().as_secs_f64();
    let out = input.with_data(data)?;
    images::save_image(&a.output, &out)?;
    println!(
        "denoised {} ({}x{}, {} ch) with {}{} in {:.2}s ({:.2} MP/s) -> {}",
        a.input.display(),
        clean.width,
        clean.height,
        clean.channels,
        path.display(),
        if a.self_ensemble {
            " (x8 self-ensemble)"
        } else {
            ""
        },
        secs,
        clean.pixels() as f64 / 1e6 / secs,
        a.output.display()
    );
    if let Some(s) = a.add_noise {
        let q = images::quantize8(&out.data);
        let (c, h, w) = (clean.channels, clean.height, clean.width);
        let ssim = |x: &[f32]| {
            metrics::ssim(&clean.data, x, c, h, w)
                .map(|v| format!("{v:.4}"))
                .unwrap_or_else(|_| "n/a".into())
        };
        println!(
            "sigma {s}: noisy PSNR {:.2} dB (SSIM {}), denoised PSNR {:.2} dB (SSIM {})",
            metrics::psnr(&clean.data, &input.data)?,
            ssim(&input.data),
            metrics::psnr(&clean.data, &q)?,
            ssim(&q)
        );
    }
    Ok(())
}
