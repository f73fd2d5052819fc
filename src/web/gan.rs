//! wasm API of the GAN tab: train a dense GAN or a DCGAN on the page digits, load the shipped
//! DCGAN, and the latent-space tools (samples of given z, interpolation, neighbours), the
//! classifier-based quality numbers and D's opinion of digits.
//!
//! Every request is short: training takes at most `MAX_STEPS_PER_CALL` steps per call and the
//! quality numbers are computed in chunks, so the page's JS loops can pause between calls.
//! The models live in `src/models/gan.rs`; this file only keeps state and converts values.
//!
//! The tab trains on the page digits whose index is not a multiple of `HELD_OUT_EVERY`; the
//! Frechet distance compares samples with the held-out ones (multiples of it).

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;

use js_sys::{Float32Array, Object, Uint8Array};
use wasm_bindgen::prelude::*;

use super::{backend, err, invalid, loaded_digits, page_train_indices, set, HELD_OUT_EVERY};
use crate::autodiff::Graph;
use crate::backend::Backend;
use crate::data::mnist::{Mnist, CLASSES, PIXELS, SIDE};
use crate::models::gan::{
    self, Discriminator, GanArch, GanConfig, GanLoss, Generator, Latent, StepOutput, WeightInit,
};
use crate::models::gan_langevin;
use crate::models::gan_metrics::{class_histogram, classifier_score, frechet_distance};
use crate::models::gan_rejection;
use crate::models::gan_tricks::{self, Perturbation, Tricks};
use crate::models::{Classifier, ClassifierConfig};
use crate::nn::{Adam, Module, Optimizer};
use crate::rng;
use crate::tensor::Tensor;

const MAX_STEPS_PER_CALL: usize = 50;
/// Most digits one generate / classify call takes.
const MAX_CHUNK: usize = 500;
/// Half-width of the uniform noise of the local-smoothness tool (the lecture's U(-0.25, 0.25)).
const NEIGHBOUR_NOISE: f32 = 0.25;
/** Seed of the held-out real digits the Frechet distance compares with. */
const REFERENCE_SEED: u64 = 777;
/// BatchNorm statistics of G's moving average (DCGAN): recomputed over this many batches of
/// this size of fresh z (seeded), before the average samples after training steps.
const EMA_BN_BATCH: usize = 64;
const EMA_BN_BATCHES: usize = 8;
const EMA_BN_SEED: u64 = 4_711;

struct Gan {
    gen: Generator,
    disc: Discriminator,
    opt_g: Adam,
    opt_d: Adam,
    loss: GanLoss,
    latent: Latent,
    batch: usize,
    seed: u64,
    step: usize,
    /// label smoothing, D smoothness, FGSM real digits (`gan_set_options`)
    tricks: Tricks,
    /// a step whose D half has run (`gan_train_half`) and whose G half is still to run
    pending: Option<PendingHalf>,
    /// the moving average of G's weights (`gan_set_ema`): what samples and scores come from
    ema: Option<Ema>,
}

/// An exponential moving average of G's weights (`gan_tricks::ema_update`, as `nnlab train
/// gan --ema`), updated after every G step.
struct Ema {
    gen: Generator,
    decay: f32,
    /// G steps averaged so far (the warm-up of `gan_tricks::ema_decay_at`)
    updates: usize,
    /// BatchNorm statistics not yet recomputed for the averaged weights (DCGAN)
    stale: bool,
}

/// What a step's D half leaves for its G half: the batch's z, and D's results, read back.
struct PendingHalf {
    z: Tensor,
    d_loss: f32,
    real_out: Vec<f32>,
    fake_out: Vec<f32>,
}

/// The quality numbers being accumulated chunk by chunk, by the position of each chunk's first
/// sample: chunks scored in other workers may arrive in any order, and the numbers are computed
/// over them in sample order, so they do not depend on how the samples were shared out.
#[derive(Default)]
struct Quality {
    parts: std::collections::BTreeMap<usize, QualityPart>,
}

/// Classifier probabilities and features of a chunk of samples and of as many real digits.
struct QualityPart {
    probs: Vec<f32>,
    fake_feats: Vec<f32>,
    real_feats: Vec<f32>,
}

#[derive(Default)]
struct Tab {
    digits: Option<Rc<Mnist>>,
    classifier: Option<Rc<Classifier>>,
    gan: Option<Rc<RefCell<Gan>>>,
    quality: Quality,
}

thread_local! {
    static TAB: RefCell<Tab> = RefCell::new(Tab::default());
}

fn digits() -> Result<Rc<Mnist>, JsError> {
    loaded_digits(TAB.with(|t| t.borrow().digits.clone()), "gan_load_digits")
}

/// The page digits the GAN tab loaded (for the Autoencoder-vs-GAN panel).
pub(crate) fn page_digits_loaded() -> Result<Rc<Mnist>, JsError> {
    digits()
}

fn current() -> Result<Rc<RefCell<Gan>>, JsError> {
    TAB.with(|t| t.borrow().gan.clone())
        .ok_or_else(|| invalid("no GAN yet: press Reset/Train or load the pretrained DCGAN"))
}

fn parse_loss(s: &str) -> Result<GanLoss, JsError> {
    match s {
        "ce" => Ok(GanLoss::CrossEntropy),
        "minimax" => Ok(GanLoss::Minimax),
        "ls" => Ok(GanLoss::LeastSquares),
        o => Err(invalid(format!(
            "unknown loss {o:?} (expected ce, minimax or ls)"
        ))),
    }
}

fn parse_latent(s: &str) -> Result<Latent, JsError> {
    match s {
        "normal" => Ok(Latent::Normal),
        "uniform" => Ok(Latent::Uniform),
        o => Err(invalid(format!(
            "unknown latent distribution {o:?} (expected normal or uniform)"
        ))),
    }
}

fn arch_name(a: GanArch) -> &'static str {
    match a {
        GanArch::Dense => "dense",
        GanArch::Dcgan => "dcgan",
    }
}

/// Training settings shared by `gan_reset` and `gan_load`.
struct Settings {
    loss: GanLoss,
    latent: Latent,
    lr: f32,
    beta1: f32,
    batch: usize,
    seed: u64,
}

fn settings(
    loss: &str,
    dist: &str,
    lr: f32,
    beta1: f32,
    batch: usize,
    seed: u32,
) -> Result<Settings, JsError> {
    if !(1..=256).contains(&batch) {
        return Err(invalid(format!("batch must be 1..=256, got {batch}")));
    }
    // an absurd learning rate is allowed on purpose: the tab shows what divergence looks like
    if !(lr.is_finite() && lr > 0.0) {
        return Err(invalid(format!(
            "learning rate must be a positive number, got {lr}"
        )));
    }
    if !(beta1.is_finite() && (0.0..1.0).contains(&beta1)) {
        return Err(invalid(format!("beta1 must be in [0, 1), got {beta1}")));
    }
    Ok(Settings {
        loss: parse_loss(loss)?,
        latent: parse_latent(dist)?,
        lr,
        beta1,
        batch,
        seed: seed as u64,
    })
}

fn install(gen: Generator, disc: Discriminator, s: Settings) -> Object {
    let count = |ps: Vec<&crate::autodiff::Param>| {
        ps.iter()
            .map(|p| p.shape().iter().product::<usize>())
            .sum::<usize>()
    };
    let o = Object::new();
    set(&o, "arch", arch_name(gen.config.arch));
    set(&o, "latent", gen.config.latent as u32);
    set(&o, "width", gen.config.width as u32);
    set(&o, "g_parameters", count(gen.params()) as u32);
    set(&o, "d_parameters", count(disc.params()) as u32);
    set(&o, "mbstd", disc.has_mbstd());
    let gan = Gan {
        gen,
        disc,
        opt_g: Adam::new(s.lr, s.beta1, 0.999),
        opt_d: Adam::new(s.lr, s.beta1, 0.999),
        loss: s.loss,
        latent: s.latent,
        batch: s.batch,
        seed: s.seed,
        step: 0,
        tricks: Tricks::default(),
        pending: None,
        ema: None,
    };
    TAB.with(|t| t.borrow_mut().gan = Some(Rc::new(RefCell::new(gan))));
    o
}

/// Load the page's digit set (www/data/mnist_page.bin); resolves to the number of digits.
#[wasm_bindgen]
pub fn gan_load_digits(bytes: &[u8]) -> Result<u32, JsError> {
    let page = super::page_digits(bytes)?;
    let n = page.len() as u32;
    TAB.with(|t| t.borrow_mut().digits = Some(page));
    Ok(n)
}

/// Load the shipped MNIST classifier (safetensors bytes) that scores generated digits.
#[wasm_bindgen]
pub fn gan_load_classifier(bytes: &[u8]) -> Result<(), JsError> {
    let b = backend()?;
    let m = Classifier::new(b.as_ref(), ClassifierConfig::default(), 0).map_err(err)?;
    crate::weights::load_params(b.as_ref(), &m.params(), bytes)
        .map_err(|e| invalid(format!("classifier: {e}")))?;
    TAB.with(|t| t.borrow_mut().classifier = Some(Rc::new(m)));
    Ok(())
}

/// A fresh GAN. `arch`: dense or dcgan; `loss`: ce, minimax or ls; `dist`: normal or uniform;
/// `width`: DCGAN base width. Resolves to `{arch, latent, width, g_parameters, d_parameters}`.
#[wasm_bindgen]
#[allow(clippy::too_many_arguments)]
pub fn gan_reset(
    arch: &str,
    loss: &str,
    latent: usize,
    dist: &str,
    width: usize,
    lr: f32,
    beta1: f32,
    batch: usize,
    seed: u32,
    mbstd: bool,
) -> Result<JsValue, JsError> {
    let s = settings(loss, dist, lr, beta1, batch, seed)?;
    let arch = match arch {
        "dense" => GanArch::Dense,
        "dcgan" => GanArch::Dcgan,
        o => {
            return Err(invalid(format!(
                "unknown architecture {o:?} (expected dense or dcgan)"
            )))
        }
    };
    let config = GanConfig {
        arch,
        latent,
        width,
        extra_conv: false,
        extra_conv_14: false,
    };
    config.validate().map_err(err)?;
    let b = backend()?;
    // a fresh DCGAN starts as Radford et al.'s (N(0, 0.02)): with the layers' Kaiming default
    // D wins within ~100 steps and the tab shows speckle for minutes (issue 20)
    let init = match arch {
        GanArch::Dcgan => WeightInit::Dcgan,
        GanArch::Dense => WeightInit::Kaiming,
    };
    let gen = Generator::with_init(b.as_ref(), config, s.seed, init).map_err(err)?;
    let disc = Discriminator::with_init(b.as_ref(), config, s.seed + 100, mbstd, false, init)
        .map_err(err)?;
    Ok(install(gen, disc, s).into())
}

/// Load a generator (safetensors bytes; its architecture and sizes come from the file) and,
/// when `d_bytes` is non-empty, its discriminator (else D starts fresh). Training continues
/// from them with fresh Adam state. Resolves like `gan_reset` plus `meta` (the G file's
/// metadata strings).
#[wasm_bindgen]
#[allow(clippy::too_many_arguments)]
pub fn gan_load(
    g_bytes: &[u8],
    d_bytes: &[u8],
    loss: &str,
    dist: &str,
    lr: f32,
    beta1: f32,
    batch: usize,
    seed: u32,
) -> Result<JsValue, JsError> {
    let s = settings(loss, dist, lr, beta1, batch, seed)?;
    let b = backend()?;
    let b: &dyn Backend = b.as_ref();
    let config = gan::config_from_tensors(&crate::weights::from_bytes(g_bytes).map_err(err)?)
        .map_err(err)?;
    let gen = Generator::new(b, config, s.seed).map_err(err)?;
    crate::weights::load_params(b, &gen.state(), g_bytes)
        .map_err(|e| invalid(format!("generator: {e}")))?;
    // a D file with the minibatch-dispersion weight gets the feature, one with the residual
    // block the block (the page trains D without spectral norm: a file with its vectors is
    // refused at loading, as before)
    let parts = if d_bytes.is_empty() {
        gan::DParts::default()
    } else {
        let ts = crate::weights::from_bytes(d_bytes)
            .map_err(|e| invalid(format!("discriminator: {e}")))?;
        gan::DParts {
            sn: false,
            ..gan::d_parts_from_tensors(&ts)
        }
    };
    let mut disc = Discriminator::with_parts(b, config, s.seed + 100, parts, WeightInit::Kaiming)
        .map_err(|e| invalid(format!("discriminator: {e}")))?;
    if !d_bytes.is_empty() {
        // a D trained with dropout keeps it (its rate is in the file's metadata)
        let p = crate::weights::metadata(d_bytes)
            .and_then(|m| gan::dropout_from_metadata(&m))
            .map_err(|e| invalid(format!("discriminator: {e}")))?;
        disc.set_dropout(p, s.seed + 200).map_err(err)?;
        crate::weights::load_params(b, &disc.state(), d_bytes).map_err(|e| {
            invalid(format!(
                "discriminator (does it belong to this generator?): {e}"
            ))
        })?;
    }
    let meta = crate::weights::metadata(g_bytes).map_err(err)?;
    let o = install(gen, disc, s);
    let m = Object::new();
    for (k, v) in meta {
        set(&m, &k, v);
    }
    set(&o, "meta", m);
    set(&o, "has_d", !d_bytes.is_empty());
    Ok(o.into())
}

/// Training options of the current GAN (kept until the next reset/load): D's learning rate
/// (two time scales), D's target for real digits (one-sided label smoothing below 1), the D
/// smoothness term (weight, eps; weight 0 = off) and FGSM real digits (alpha, eps; alpha 1 =
/// off). Budgets on the [0, 1] pixel scale.
#[wasm_bindgen]
pub fn gan_set_options(
    lr_d: f32,
    real_label: f32,
    smooth_weight: f32,
    smooth_eps: f32,
    fgsm_alpha: f32,
    fgsm_eps: f32,
) -> Result<(), JsError> {
    if !(lr_d.is_finite() && lr_d > 0.0) {
        return Err(invalid(format!(
            "D's learning rate must be a positive number, got {lr_d}"
        )));
    }
    let t = Tricks {
        real_label,
        smooth: (smooth_weight > 0.0).then_some(Perturbation {
            weight: smooth_weight,
            eps: smooth_eps,
        }),
        fgsm: (fgsm_alpha < 1.0).then_some(Perturbation {
            weight: fgsm_alpha,
            eps: fgsm_eps,
        }),
    };
    t.validate().map_err(err)?;
    let gan = current()?;
    let mut gm = gan
        .try_borrow_mut()
        .map_err(|_| invalid("the GAN is busy"))?;
    gm.opt_d.set_lr(lr_d);
    gm.tricks = t;
    Ok(())
}

/// The batch of the GAN's next step on the page's training digits: x, z and the step's seed.
fn next_batch(b: &dyn Backend, gm: &Gan, page: &Mnist) -> Result<(Tensor, Tensor, u64), JsError> {
    let train = page_train_indices(page.len());
    let (x, z) = gan::training_batch(
        b,
        page,
        &train,
        gm.batch,
        gm.gen.config.latent,
        gm.latent,
        gm.seed,
        gm.step as u64,
    )
    .map_err(err)?;
    Ok((
        x,
        z,
        gm.seed.wrapping_mul(7_919).wrapping_add(gm.step as u64),
    ))
}

/// Queue the D half of the next step (nothing read back).
fn queue_d_half(
    b: &dyn Backend,
    gm: &mut Gan,
    page: &Mnist,
) -> Result<(gan::DHalf, Tensor), JsError> {
    let (x, z, step_seed) = next_batch(b, gm, page)?;
    let Gan {
        gen,
        disc,
        opt_d,
        loss,
        tricks,
        ..
    } = gm;
    let d = gan::train_d(
        b,
        gen,
        gan::GSamples::Training,
        disc,
        opt_d,
        *loss,
        tricks,
        &x,
        &z,
        step_seed,
    )
    .map_err(err)?;
    Ok((d, z))
}

/// Queue the G half of a step on `z` and count the step (nothing read back).
fn queue_g_half(b: &dyn Backend, gm: &mut Gan, z: &Tensor) -> Result<Tensor, JsError> {
    let Gan {
        gen,
        disc,
        opt_g,
        loss,
        ..
    } = gm;
    let g_loss = gan::train_g_half(b, gen, disc, opt_g, *loss, z).map_err(err)?;
    if let Some(e) = &mut gm.ema {
        let decay = gan_tricks::ema_decay_at(e.decay, e.updates);
        gan_tricks::ema_update(b, &e.gen, gen, decay).map_err(err)?;
        e.updates += 1;
        e.stale = true;
    }
    gm.step += 1;
    Ok(g_loss)
}

/// The generator that samples and scores come from: the moving average of G when it is on
/// (its BatchNorm statistics recomputed first where they are stale), else G.
fn sampler<'a>(b: &dyn Backend, gm: &'a mut Gan) -> Result<&'a Generator, JsError> {
    let latent = gm.latent;
    match &mut gm.ema {
        Some(e) => {
            if e.stale {
                gan_tricks::recalibrate_batchnorm(
                    b,
                    &e.gen,
                    latent,
                    EMA_BN_BATCH,
                    EMA_BN_BATCHES,
                    EMA_BN_SEED,
                )
                .map_err(err)?;
                e.stale = false;
            }
            Ok(&e.gen)
        }
        None => Ok(&gm.gen),
    }
}

/// Keep a moving average of G's weights with `decay` (0..1; 0 = off) for samples, scores, the
/// latent tools and Save: the average of a run shows less of the step-to-step wobble of G's
/// samples. Turning it on starts the average at the current G; a new decay keeps the average.
#[wasm_bindgen]
pub fn gan_set_ema(decay: f32) -> Result<(), JsError> {
    if !(decay.is_finite() && (0.0..1.0).contains(&decay)) {
        return Err(invalid(format!(
            "the EMA decay of G must be in [0, 1) (0 = off), got {decay}"
        )));
    }
    let gan = current()?;
    let mut gm = gan
        .try_borrow_mut()
        .map_err(|_| invalid("the GAN is busy"))?;
    if decay == 0.0 {
        gm.ema = None;
    } else if let Some(e) = &mut gm.ema {
        e.decay = decay;
    } else {
        let b = backend()?;
        let gen = gan_tricks::ema_copy(b.as_ref(), &gm.gen).map_err(err)?;
        gm.ema = Some(Ema {
            gen,
            decay,
            updates: 0,
            stale: false,
        });
    }
    Ok(())
}

/// `{step, d_loss, g_loss, d_accuracy, diverged}` of the steps whose values were read back:
/// (D loss, G loss, real logits, fake logits) each, the first of them step `first_step + 1`.
fn steps_result(
    step: usize,
    first_step: usize,
    loss: GanLoss,
    rows: &[(f32, f32, &[f32], &[f32])],
) -> JsValue {
    let (mut dl, mut gl, mut acc) = (Vec::new(), Vec::new(), Vec::new());
    let mut diverged = JsValue::NULL;
    for (k, &(d, g, real, fake)) in rows.iter().enumerate() {
        let s = StepOutput::stats(loss, d, g, real, fake);
        dl.push(s.d_loss);
        gl.push(s.g_loss);
        acc.push(s.d_accuracy);
        if !(d.is_finite() && g.is_finite()) {
            diverged = JsValue::from_str(&format!(
                "training diverged at step {}: D loss {d}, G loss {g}. Press Reset (with a smaller learning rate) to start again.",
                first_step + k + 1
            ));
            break;
        }
    }
    let o = Object::new();
    set(&o, "step", step as u32);
    set(&o, "d_loss", Float32Array::from(&dl[..]));
    set(&o, "g_loss", Float32Array::from(&gl[..]));
    set(&o, "d_accuracy", Float32Array::from(&acc[..]));
    set(&o, "diverged", diverged);
    o.into()
}

/// Take `n` training steps (1..=50); a step begun by `gan_train_half` is finished first, as
/// the first of them. Resolves to `{step, d_loss, g_loss, d_accuracy, diverged}`: the step
/// count, per-step D and G losses and D's batch accuracy (Float32Arrays of the steps taken),
/// and null or a message when a loss became NaN/inf (the steps stop there).
#[wasm_bindgen]
pub async fn gan_train_steps(n: usize) -> Result<JsValue, JsError> {
    super::check_steps(n, MAX_STEPS_PER_CALL)?;
    let page = digits()?;
    let b = backend()?;
    let b: &dyn Backend = b.as_ref();
    let gan = current()?;
    // queue every step with the model borrowed, then read the results without it
    let (pending, pending_g, outputs, loss, first_step) = {
        let mut gm = gan
            .try_borrow_mut()
            .map_err(|_| invalid("training is already running"))?;
        let first_step = gm.step;
        let pending = gm.pending.take();
        let pending_g = match &pending {
            Some(p) => Some(queue_g_half(b, &mut gm, &p.z)?),
            None => None,
        };
        let mut outputs = Vec::with_capacity(n);
        for _ in pending.iter().len()..n {
            let (d, z) = queue_d_half(b, &mut gm, &page)?;
            let g_loss = queue_g_half(b, &mut gm, &z)?;
            outputs.push((d, g_loss));
        }
        (pending, pending_g, outputs, gm.loss, first_step)
    };
    // every step's losses and D outputs in one read-back
    let mut tensors: Vec<&Tensor> = pending_g.iter().collect();
    tensors.extend(
        outputs
            .iter()
            .flat_map(|(d, g)| [&d.d_loss, g, &d.real_out, &d.fake_out]),
    );
    let host = b.read_many(&tensors).await.map_err(err)?;
    let mut rows: Vec<(f32, f32, &[f32], &[f32])> = Vec::with_capacity(n);
    let mut rest = &host[..];
    if let Some(p) = &pending {
        rows.push((p.d_loss, host[0][0], &p.real_out, &p.fake_out));
        rest = &host[1..];
    }
    for v in rest.chunks(4) {
        rows.push((v[0][0], v[1][0], &v[2], &v[3]));
    }
    let step = gan.borrow().step;
    Ok(steps_result(step, first_step, loss, &rows))
}

/// Half a training step, for adapters where one step takes longer than Pause may wait: D's
/// half of the next step (its results kept in the worker), or, when one is pending, G's half,
/// which finishes that step. Resolves like `gan_train_steps` (no step after a D half).
/// `gan_train_steps` finishes a pending step too, so the two can be mixed.
#[wasm_bindgen]
pub async fn gan_train_half() -> Result<JsValue, JsError> {
    let page = digits()?;
    let b = backend()?;
    let b: &dyn Backend = b.as_ref();
    let gan = current()?;
    let busy = || invalid("training is already running");
    enum Queued {
        D(gan::DHalf, Tensor),
        G(PendingHalf, Tensor),
    }
    let (queued, loss, first_step) = {
        let mut gm = gan.try_borrow_mut().map_err(|_| busy())?;
        let first_step = gm.step;
        let queued = match gm.pending.take() {
            Some(p) => {
                let g_loss = queue_g_half(b, &mut gm, &p.z)?;
                Queued::G(p, g_loss)
            }
            None => {
                let (d, z) = queue_d_half(b, &mut gm, &page)?;
                Queued::D(d, z)
            }
        };
        (queued, gm.loss, first_step)
    };
    match queued {
        Queued::D(d, z) => {
            // wait for D's half (its time is this call's) and keep its results for G's half
            let host = b
                .read_many(&[&d.d_loss, &d.real_out, &d.fake_out])
                .await
                .map_err(err)?;
            let [d_loss, real_out, fake_out] = <[Vec<f32>; 3]>::try_from(host)
                .map_err(|_| invalid("gan_train_half: read-back of D's half"))?;
            gan.try_borrow_mut().map_err(|_| busy())?.pending = Some(PendingHalf {
                z,
                d_loss: d_loss[0],
                real_out,
                fake_out,
            });
            Ok(steps_result(first_step, first_step, loss, &[]))
        }
        Queued::G(p, g_loss) => {
            let g = b.read(&g_loss).await.map_err(err)?[0];
            let row = (p.d_loss, g, &p.real_out[..], &p.fake_out[..]);
            Ok(steps_result(first_step + 1, first_step, loss, &[row]))
        }
    }
}

/// `n` latent vectors (n x d, row-major) from the GAN's latent distribution with `seed`.
#[wasm_bindgen]
pub fn gan_sample_z(n: usize, seed: u32) -> Result<Float32Array, JsError> {
    if !(1..=MAX_CHUNK).contains(&n) {
        return Err(invalid(format!(
            "gan_sample_z: n must be 1..={MAX_CHUNK}, got {n}"
        )));
    }
    let gan = current()?;
    let gm = gan.borrow();
    Ok(Float32Array::from(
        &gan::sample_z(n, gm.gen.config.latent, gm.latent, seed as u64)[..],
    ))
}

/// `z` holds 1..=MAX_CHUNK finite latent vectors of `d` values, else `call`'s error.
fn check_latents(call: &str, z: &[f32], d: usize) -> Result<(), JsError> {
    if z.is_empty()
        || !z.len().is_multiple_of(d)
        || z.len() / d > MAX_CHUNK
        || z.iter().any(|v| !v.is_finite())
    {
        return Err(invalid(format!(
            "{call}: expected 1..={MAX_CHUNK} finite latent vectors of {d} values, got {} values",
            z.len()
        )));
    }
    Ok(())
}

/// G(z) for latent vectors z (a multiple of d values, at most 500 rows): digits in [0, 1],
/// 784 values each.
#[wasm_bindgen]
pub async fn gan_generate(z: Vec<f32>) -> Result<Float32Array, JsError> {
    let gan = current()?;
    let b = backend()?;
    let t = {
        let mut gm = gan
            .try_borrow_mut()
            .map_err(|_| invalid("the GAN is busy"))?;
        check_latents("gan_generate", &z, gm.gen.config.latent)?;
        gan::generate(b.as_ref(), sampler(b.as_ref(), &mut gm)?, &z).map_err(err)?
    };
    let out = b.read(&t).await.map_err(err)?;
    crate::finite::check_output("the generator", &out).map_err(err)?;
    Ok(Float32Array::from(&out[..]))
}

/// Latent Langevin on D (Che et al. 2020; `models::gan_langevin`): the latent vectors `z` (a
/// multiple of d values, at most 500 rows, drawn with `gan_sample_z`) each moved by `steps`
/// Langevin steps of size `eps` on |z|^2 / 2 - D(G(z)), G the sampler (its average when one is
/// kept), D the current one; the noise drawn from `seed`. Resolves to the moved z; an error for
/// uniform latents (the energy assumes a normal prior) or a least-squares D (its output is not
/// a logit).
#[wasm_bindgen]
pub async fn gan_langevin(
    z: Vec<f32>,
    steps: usize,
    eps: f32,
    seed: u32,
) -> Result<Float32Array, JsError> {
    gan_langevin::check_settings(steps, eps).map_err(err)?;
    let gan = current()?;
    let b = backend()?;
    let t = {
        let mut gm = gan
            .try_borrow_mut()
            .map_err(|_| invalid("the GAN is busy"))?;
        let d = gm.gen.config.latent;
        check_latents("gan_langevin", &z, d)?;
        if gm.latent != Latent::Normal {
            return Err(invalid(
                "latent Langevin assumes normal latents; this GAN draws uniform ones",
            ));
        }
        if gm.loss == GanLoss::LeastSquares {
            return Err(invalid(
                "latent Langevin needs a cross-entropy D (a least-squares D's output is not a log density ratio)",
            ));
        }
        let zt = b.upload(&[z.len() / d, d], &z).map_err(err)?;
        sampler(b.as_ref(), &mut gm)?;
        let gm = &*gm;
        let gen = gm.ema.as_ref().map_or(&gm.gen, |e| &e.gen);
        gan_langevin::langevin(b.as_ref(), gen, &gm.disc, &zt, steps, eps, seed as u64)
            .map_err(err)?
    };
    let out = b.read(&t).await.map_err(err)?;
    crate::finite::check_output("latent Langevin", &out).map_err(err)?;
    Ok(Float32Array::from(&out[..]))
}

/// Most samples one rejection-sampling pool may hold (20,000 digits are 63 MB in the worker).
const MAX_POOL: usize = 20_000;

/// Discriminator rejection sampling (Azadi et al. 2019; `models::gan_rejection`): `pool`
/// samples of G (its average when one is kept) from latent seed `seed`, D's logit of each, and
/// the first `n` of those kept at `gamma`. Resolves to `{digits, kept, pool}` (digits: n x 784
/// in [0, 1], kept: how many of the pool were kept); an error when fewer than `n` are kept or D
/// is a least-squares one (its output is not a logit).
#[wasm_bindgen]
pub async fn gan_rejection_sample(
    n: usize,
    pool: usize,
    gamma: f32,
    seed: u32,
) -> Result<JsValue, JsError> {
    if n == 0 || pool < n || pool > MAX_POOL {
        return Err(invalid(format!(
            "rejection sampling: need 1 <= n <= pool <= {MAX_POOL}, got n {n}, pool {pool}"
        )));
    }
    let gan = current()?;
    let b = backend()?;
    if gan.borrow().loss == GanLoss::LeastSquares {
        return Err(invalid(
            "rejection sampling needs a cross-entropy D (a least-squares D's output is not a log density ratio)",
        ));
    }
    let (mut digits, mut logits) = (Vec::with_capacity(pool * PIXELS), Vec::with_capacity(pool));
    for start in (0..pool).step_by(MAX_CHUNK) {
        let m = (start + MAX_CHUNK).min(pool) - start;
        let t = {
            let mut gm = gan
                .try_borrow_mut()
                .map_err(|_| invalid("the GAN is busy"))?;
            let z = gan::sample_z(
                m,
                gm.gen.config.latent,
                gm.latent,
                (seed as u64).wrapping_mul(7_919).wrapping_add(start as u64),
            );
            gan::generate(b.as_ref(), sampler(b.as_ref(), &mut gm)?, &z).map_err(err)?
        };
        let x = b.read(&t).await.map_err(err)?;
        crate::finite::check_output("the generator", &x).map_err(err)?;
        let t = gan::discriminate(b.as_ref(), &gan.borrow().disc, &x).map_err(err)?;
        logits.extend(b.read(&t).await.map_err(err)?);
        digits.extend(x);
    }
    let (out, total) =
        gan_rejection::keep_digits(&digits, PIXELS, &logits, gamma, seed as u64, n).map_err(err)?;
    let o = Object::new();
    set(&o, "digits", Float32Array::from(&out[..]));
    set(&o, "kept", total as u32);
    set(&o, "pool", pool as u32);
    Ok(o.into())
}

/// `steps` latent vectors from `a` to `b` (both ends included), linear or spherical.
#[wasm_bindgen]
pub fn gan_interpolate(
    a: Vec<f32>,
    b: Vec<f32>,
    steps: usize,
    spherical: bool,
) -> Result<Float32Array, JsError> {
    if a.len() != b.len() || a.is_empty() || !(2..=64).contains(&steps) {
        return Err(invalid(format!("gan_interpolate: need two latent vectors of the same size and 2..=64 steps (got {}, {}, {steps})", a.len(), b.len())));
    }
    let mut out = Vec::with_capacity(steps * a.len());
    for k in 0..steps {
        let t = k as f32 / (steps - 1) as f32;
        if spherical {
            out.extend(gan::slerp(&a, &b, t));
        } else {
            out.extend(a.iter().zip(&b).map(|(x, y)| (1.0 - t) * x + t * y));
        }
    }
    Ok(Float32Array::from(&out[..]))
}

/// `n` neighbours of `z`: z + U(-0.25, 0.25) noise per coordinate (the lecture's local
/// smoothness), n x d values.
#[wasm_bindgen]
pub fn gan_neighbours(z: Vec<f32>, n: usize, seed: u32) -> Result<Float32Array, JsError> {
    if z.is_empty() || !(1..=64).contains(&n) {
        return Err(invalid(format!(
            "gan_neighbours: need a latent vector and 1..=64 neighbours (got {} values, {n})",
            z.len()
        )));
    }
    let noise = rng::uniform_vec(n * z.len(), -NEIGHBOUR_NOISE, NEIGHBOUR_NOISE, seed as u64);
    let out: Vec<f32> = noise
        .chunks(z.len())
        .flat_map(|e| z.iter().zip(e).map(|(a, b)| a + b))
        .collect();
    Ok(Float32Array::from(&out[..]))
}

/// `n` held-out page digits (784 values each in [0, 1]) picked with `seed`.
#[wasm_bindgen]
pub fn gan_real_digits(n: usize, seed: u32) -> Result<Float32Array, JsError> {
    if !(1..=MAX_CHUNK).contains(&n) {
        return Err(invalid(format!(
            "gan_real_digits: n must be 1..={MAX_CHUNK}, got {n}"
        )));
    }
    let page = digits()?;
    let held = page.len().div_ceil(HELD_OUT_EVERY);
    let idx: Vec<usize> = (0..n)
        .map(|i| (rng::random_u32(seed as u64, i as u32) as usize % held) * HELD_OUT_EVERY)
        .collect();
    Ok(Float32Array::from(&page.gather(&idx).map_err(err)?.0[..]))
}

/// D's probability that each digit (784 values in [0, 1] each) is real: sigmoid of its logit
/// for the cross-entropy losses, its raw score clamped to [0, 1] for least squares.
#[wasm_bindgen]
pub async fn gan_discriminate(digits: Vec<f32>) -> Result<Float32Array, JsError> {
    let n = digits.len() / PIXELS;
    if n == 0 || !digits.len().is_multiple_of(PIXELS) || n > MAX_CHUNK {
        return Err(invalid(format!(
            "gan_discriminate: expected 1..={MAX_CHUNK} digits of {PIXELS} values, got {} values",
            digits.len()
        )));
    }
    let gan = current()?;
    let b = backend()?;
    let (t, loss) = {
        let gm = gan.borrow();
        let t = gan::discriminate(b.as_ref(), &gm.disc, &digits).map_err(err)?;
        (t, gm.loss)
    };
    let out = b.read(&t).await.map_err(err)?;
    crate::finite::check_output("the discriminator", &out).map_err(err)?;
    let p: Vec<f32> = out
        .iter()
        .map(|&v| {
            if loss == GanLoss::LeastSquares {
                v.clamp(0.0, 1.0)
            } else {
                1.0 / (1.0 + (-v).exp())
            }
        })
        .collect();
    Ok(Float32Array::from(&p[..]))
}

/// Classifier probabilities and penultimate features of digits in [0, 1].
async fn classify(
    b: &dyn Backend,
    clf: &Classifier,
    digits: &[f32],
) -> Result<(Vec<f32>, Vec<f32>), JsError> {
    let n = digits.len() / PIXELS;
    let x = b.upload(&[n, 1, SIDE, SIDE], digits).map_err(err)?;
    let feats = {
        let mut g = Graph::new(b);
        g.set_grad_enabled(false);
        let xv = g.constant(x.clone());
        let f = clf.features(&mut g, xv).map_err(err)?;
        g.value(f).map_err(err)?.clone()
    };
    let probs = clf.probabilities_tensor(b, &x).map_err(err)?;
    Ok((
        b.read(&probs).await.map_err(err)?,
        b.read(&feats).await.map_err(err)?,
    ))
}

/// The latent vectors of samples start..start+count of a scoring seeded by `seed`.
fn quality_z(gm: &Gan, start: usize, count: usize, seed: u32) -> Vec<f32> {
    let seed = (seed as u64).wrapping_mul(7);
    gan::sample_z_rows(start, count, gm.gen.config.latent, gm.latent, seed)
}

fn check_count(count: usize) -> Result<(), JsError> {
    if !(1..=MAX_CHUNK).contains(&count) {
        return Err(invalid(format!(
            "quality: chunk must be 1..={MAX_CHUNK} digits, got {count}"
        )));
    }
    Ok(())
}

/// Samples start..start+count (1..=500) of a scoring seeded by `seed`, in [0, 1].
async fn quality_samples(start: usize, count: usize, seed: u32) -> Result<Vec<f32>, JsError> {
    check_count(count)?;
    let gan = current()?;
    let b = backend()?;
    let fake = {
        let mut gm = gan
            .try_borrow_mut()
            .map_err(|_| invalid("the GAN is busy"))?;
        let z = quality_z(&gm, start, count, seed);
        gan::generate(b.as_ref(), sampler(b.as_ref(), &mut gm)?, &z).map_err(err)?
    };
    let fake = b.read(&fake).await.map_err(err)?;
    crate::finite::check_output("the generator", &fake).map_err(err)?;
    Ok(fake)
}

/// One chunk of the quality numbers: generated digits start..start+count (1..=500) of a
/// scoring seeded by `seed` (sample i's z depends on i alone, however the samples are cut
/// into chunks) and as many held-out real digits are classified and their results kept.
/// `start` 0 clears what earlier chunks kept. Resolves to the number of generated digits kept.
#[wasm_bindgen]
pub async fn gan_quality_chunk(start: usize, count: usize, seed: u32) -> Result<u32, JsError> {
    let fake = quality_samples(start, count, seed).await?;
    let part = quality_part(start, &fake).await?;
    Ok(quality_keep(start, part))
}

/// `gan_quality_chunk` without keeping anything: resolves to `{probs, fake_feats, real_feats}`
/// of the chunk, for the worker that keeps the scoring (`gan_quality_keep`). A helper worker
/// of the page runs this with the GAN's G loaded.
#[wasm_bindgen]
pub async fn gan_quality_part(start: usize, count: usize, seed: u32) -> Result<JsValue, JsError> {
    let fake = quality_samples(start, count, seed).await?;
    part_object(quality_part(start, &fake).await?)
}

/// Keep a chunk scored elsewhere (`gan_quality_part`) at sample position `start` (0 clears
/// what was kept). Resolves to the number of generated digits kept.
#[wasm_bindgen]
pub fn gan_quality_keep(
    start: usize,
    probs: Vec<f32>,
    fake_feats: Vec<f32>,
    real_feats: Vec<f32>,
) -> Result<u32, JsError> {
    let n = probs.len() / CLASSES;
    let ok = n >= 1
        && probs.len() == n * CLASSES
        && !fake_feats.is_empty()
        && fake_feats.len().is_multiple_of(n)
        && real_feats.len() == fake_feats.len()
        && [&probs, &fake_feats, &real_feats]
            .iter()
            .all(|v| v.iter().all(|x| x.is_finite()));
    if !ok {
        return Err(invalid(format!(
            "quality: a chunk needs {CLASSES} probabilities per digit and as many finite features for its real digits as for its samples, got {} / {} / {} values",
            probs.len(),
            fake_feats.len(),
            real_feats.len()
        )));
    }
    Ok(quality_keep(
        start,
        QualityPart {
            probs,
            fake_feats,
            real_feats,
        },
    ))
}

/// Like `gan_quality_chunk`, for given digits (784 values in [0, 1] each, 1..=500 of them)
/// instead of the generator's: any source of digits gets the same numbers (the
/// Autoencoder-vs-GAN panel scores an autoencoder's outputs with it).
#[wasm_bindgen]
pub async fn gan_quality_digits(start: usize, digits: Vec<f32>) -> Result<u32, JsError> {
    check_digits(&digits)?;
    let part = quality_part(start, &digits).await?;
    Ok(quality_keep(start, part))
}

/// `gan_quality_digits` without keeping anything: resolves like `gan_quality_part` (for a
/// helper worker; no GAN needed, only the classifier and the page digits).
#[wasm_bindgen]
pub async fn gan_quality_digits_part(start: usize, digits: Vec<f32>) -> Result<JsValue, JsError> {
    check_digits(&digits)?;
    part_object(quality_part(start, &digits).await?)
}

fn part_object(part: QualityPart) -> Result<JsValue, JsError> {
    let o = Object::new();
    set(&o, "probs", Float32Array::from(&part.probs[..]));
    set(&o, "fake_feats", Float32Array::from(&part.fake_feats[..]));
    set(&o, "real_feats", Float32Array::from(&part.real_feats[..]));
    Ok(o.into())
}

fn check_digits(digits: &[f32]) -> Result<(), JsError> {
    let n = digits.len() / PIXELS;
    if n == 0
        || !digits.len().is_multiple_of(PIXELS)
        || n > MAX_CHUNK
        || digits.iter().any(|v| !v.is_finite())
    {
        return Err(invalid(format!(
            "quality: expected 1..={MAX_CHUNK} digits of {PIXELS} finite values, got {} values",
            digits.len()
        )));
    }
    Ok(())
}

/// Classify `fake` (digits in [0, 1]) and as many held-out real digits (reference positions
/// start..).
async fn quality_part(start: usize, fake: &[f32]) -> Result<QualityPart, JsError> {
    let clf = TAB
        .with(|t| t.borrow().classifier.clone())
        .ok_or_else(|| invalid("the classifier is not loaded (models/classifier.safetensors)"))?;
    let page = digits()?;
    let b = backend()?;
    let b: &dyn Backend = b.as_ref();
    let count = fake.len() / PIXELS;
    let held = page.len().div_ceil(HELD_OUT_EVERY);
    // the page file is sorted by class: draw the reference digits at random (a fixed seed, so
    // every scoring compares with the same real digits), not in file order
    let idx: Vec<usize> = (start..start + count)
        .map(|i| (rng::random_u32(REFERENCE_SEED, i as u32) as usize % held) * HELD_OUT_EVERY)
        .collect();
    let (real, _) = page.gather(&idx).map_err(err)?;
    let (probs, fake_feats) = classify(b, &clf, fake).await?;
    let (_, real_feats) = classify(b, &clf, &real).await?;
    Ok(QualityPart {
        probs,
        fake_feats,
        real_feats,
    })
}

/// Keep `part` at sample position `start` (0 clears what was kept); the number of generated
/// digits kept.
fn quality_keep(start: usize, part: QualityPart) -> u32 {
    TAB.with(|t| {
        let q = &mut t.borrow_mut().quality;
        if start == 0 {
            *q = Quality::default();
        }
        q.parts.insert(start, part);
        q.parts
            .values()
            .map(|p| p.probs.len() / CLASSES)
            .sum::<usize>() as u32
    })
}

/// The quality numbers of the chunks kept: `{samples, classifier_score, frechet_distance,
/// histogram}` (histogram: generated digits per class by the classifier's label, 10 numbers).
#[wasm_bindgen]
pub fn gan_quality_result() -> Result<JsValue, JsError> {
    TAB.with(|t| {
        let t = t.borrow();
        let parts = t.quality.parts.values();
        let probs: Vec<f32> = parts
            .clone()
            .flat_map(|p| p.probs.iter().copied())
            .collect();
        let fake_feats: Vec<f32> = parts
            .clone()
            .flat_map(|p| p.fake_feats.iter().copied())
            .collect();
        let real_feats: Vec<f32> = parts.flat_map(|p| p.real_feats.iter().copied()).collect();
        let n = probs.len() / CLASSES;
        if n < 2 {
            return Err(invalid(
                "quality: no samples scored yet (gan_quality_chunk)",
            ));
        }
        let dim = fake_feats.len() / n;
        if fake_feats.len() != n * dim || real_feats.len() != n * dim {
            return Err(invalid(
                "quality: the chunks kept have features of different sizes",
            ));
        }
        let o = Object::new();
        set(&o, "samples", n as u32);
        set(
            &o,
            "classifier_score",
            classifier_score(&probs, CLASSES).map_err(err)?,
        );
        set(
            &o,
            "frechet_distance",
            frechet_distance(&fake_feats, &real_feats, dim).map_err(err)?,
        );
        let h: Vec<u32> = class_histogram(&probs, CLASSES)
            .map_err(err)?
            .into_iter()
            .map(|c| c as u32)
            .collect();
        set(&o, "histogram", js_sys::Uint32Array::from(&h[..]));
        Ok(o.into())
    })
}

/// The GAN's weights as safetensors files: `{g, d, g_ema}` (Uint8Arrays), G with metadata;
/// `g_ema` (the moving average of G, in G's format) is null when the average is off.
#[wasm_bindgen]
pub async fn gan_save() -> Result<JsValue, JsError> {
    let gan = current()?;
    let b = backend()?;
    let b: &dyn Backend = b.as_ref();
    // copy what to write (names, shapes, tensor handles) so no borrow lives across an await
    let files = {
        let mut gm = gan
            .try_borrow_mut()
            .map_err(|_| invalid("the GAN is busy"))?;
        let mut meta = HashMap::new();
        meta.insert(
            "model".to_string(),
            format!(
                "nnlab {:?} GAN generator (trained in the page)",
                gm.gen.config.arch
            ),
        );
        meta.insert("loss".to_string(), format!("{:?}", gm.loss));
        meta.insert("latent_dist".to_string(), format!("{:?}", gm.latent));
        meta.insert("steps".to_string(), gm.step.to_string());
        let list = |ps: Vec<&crate::autodiff::Param>| {
            ps.iter()
                .map(|p| (p.name().to_string(), p.shape().to_vec(), p.value().clone()))
                .collect::<Vec<_>>()
        };
        // G and its average carry the metadata, D only its dropout rate (if any)
        let p = gm.disc.dropout_rate();
        let d_meta =
            (p > 0.0).then(|| HashMap::from([(gan::DROPOUT_KEY.to_string(), p.to_string())]));
        let mut files = vec![
            (list(gm.gen.state()), Some(meta.clone())),
            (list(gm.disc.state()), d_meta),
        ];
        if let Some(decay) = gm.ema.as_ref().map(|e| e.decay) {
            meta.insert("ema_decay".to_string(), decay.to_string());
            files.push((list(sampler(b, &mut gm)?.state()), Some(meta)));
        }
        files
    };
    let mut out = Vec::new();
    for (params, meta) in files {
        let mut tensors = Vec::with_capacity(params.len());
        for (name, shape, t) in params {
            tensors.push(crate::weights::NamedTensor {
                name,
                shape,
                data: b.read(&t).await.map_err(err)?,
            });
        }
        out.push(crate::weights::to_bytes(&tensors, meta).map_err(err)?);
    }
    let o = Object::new();
    set(&o, "g", Uint8Array::from(&out[0][..]));
    set(&o, "d", Uint8Array::from(&out[1][..]));
    match out.get(2) {
        Some(e) => set(&o, "g_ema", Uint8Array::from(&e[..])),
        None => set(&o, "g_ema", JsValue::NULL),
    }
    Ok(o.into())
}
