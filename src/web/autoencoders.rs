//! wasm API of the Autoencoders tab: train a plain, sparse, contractive or denoising
//! autoencoder on the page's MNIST digits, compare it with PCA, and walk its 2-D code plane.
//!
//! The page hands over its assets (the digit set, the shipped k = 2 model) as bytes; this
//! module keeps them and the tab's state, and answers one short request per worker call. The
//! page's JS loop drives training (`ae_train_steps(n)` per call, an evaluation now and then),
//! so it can pause between calls and the worker queue never blocks for long.
//!
//! Data: the page digits (MNIST training digits 0..10000, sorted by class). Digits i with
//! i % HELD_OUT_EVERY == 0 (2000, every class) are held out; the in-tab models and PCA train
//! on the other 8000. The shipped model never saw any page digit.

use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap};
use std::rc::Rc;

use js_sys::{Float32Array, Object, Uint8Array};
use wasm_bindgen::prelude::*;

use super::{
    backend, err, invalid, loaded_digits, page_train_indices, set, EpochOrder, HELD_OUT_EVERY,
};
use crate::autodiff::Graph;
use crate::backend::Backend;
use crate::data::mnist::{Mnist, PIXELS};
use crate::models::autoencoder::{
    self, AeArch, AeConfig, AeCost, AeKind, Autoencoder, NoiseKind, MAX_CODE,
};
use crate::models::pca::{self, Pca};
use crate::nn::{Adam, Module, Optimizer};
use crate::rng;
use crate::tensor::Tensor;

/// Most training steps one call takes.
const MAX_STEPS_PER_CALL: usize = 100;
/// Most digits one evaluation call takes (bounds its time and activation memory).
const EVAL_CHUNK: usize = 500;
/// Seed of the fixed corruption of held-out digits (denoising evaluation and grid).
const HELD_OUT_NOISE_SEED: u64 = 99;
/// Seed of the fixed order in which evaluations visit the held-out digits.
const HELD_OUT_ORDER_SEED: u64 = 2024;
/// A code unit below this counts as "off" in the sparsity figure.
const NEAR_ZERO: f32 = 0.05;
/// Largest manifold grid side (side^2 decoded digits in one call).
const MAX_MANIFOLD_SIDE: usize = 30;

/// The model being shown and trained, with its optimizer, cost and data order.
struct Trainer {
    model: Rc<Autoencoder>,
    opt: Adam,
    cost: AeCost,
    batch: usize,
    seed: u64,
    step: usize,
    /// how the model came to be, for the weights file and the page ("shipped", "new", ...)
    history: String,
    order: EpochOrder,
}

/// A plain autoencoder kept for comparison (contractive: Jacobian norm vs the plain one).
struct PlainRef {
    model: Rc<Autoencoder>,
    source: String,
}

#[derive(Default)]
struct Tab {
    digits: Option<Rc<Mnist>>,
    trainer: Option<Rc<RefCell<Trainer>>>,
    /// the latest plain model of each code size k
    plain: HashMap<usize, PlainRef>,
    pca: Option<Rc<Pca>>,
}

thread_local! {
    static TAB: RefCell<Tab> = RefCell::new(Tab::default());
}

fn digits() -> Result<Rc<Mnist>, JsError> {
    loaded_digits(TAB.with(|t| t.borrow().digits.clone()), "ae_load_digits")
}

fn trainer() -> Result<Rc<RefCell<Trainer>>, JsError> {
    TAB.with(|t| t.borrow().trainer.clone())
        .ok_or_else(|| invalid("no autoencoder yet: load the shipped model or press Reset"))
}

/// The current model and its training cost (the trainer is not borrowed past this call).
fn current() -> Result<(Rc<Autoencoder>, AeCost), JsError> {
    let tr = trainer()?;
    let tr = tr
        .try_borrow()
        .map_err(|_| invalid("the autoencoder is busy training"))?;
    Ok((tr.model.clone(), tr.cost))
}

fn held_out_indices(n: usize) -> Vec<usize> {
    (0..n).step_by(HELD_OUT_EVERY).collect()
}

/// `count` of `items` spread evenly (every class survives: the page digits are sorted by class).
fn spread(items: &[usize], count: usize) -> Vec<usize> {
    let count = count.min(items.len());
    (0..count).map(|j| items[j * items.len() / count]).collect()
}

fn parse_arch(arch: &str) -> Result<AeArch, JsError> {
    match arch {
        "dense" => Ok(AeArch::Dense),
        "conv" => Ok(AeArch::Conv),
        other => Err(invalid(format!(
            "unknown architecture {other:?} (expected dense or conv)"
        ))),
    }
}

fn arch_name(a: AeArch) -> &'static str {
    match a {
        AeArch::Dense => "dense",
        AeArch::Conv => "conv",
    }
}

fn parse_kind(kind: &str) -> Result<AeKind, JsError> {
    match kind {
        "plain" => Ok(AeKind::Plain),
        "sparse" => Ok(AeKind::Sparse),
        "contractive" => Ok(AeKind::Contractive),
        "denoising" => Ok(AeKind::Denoising),
        other => Err(invalid(format!(
            "unknown autoencoder kind {other:?} (expected plain, sparse, contractive or denoising)"
        ))),
    }
}

fn kind_name(k: AeKind) -> &'static str {
    match k {
        AeKind::Plain => "plain",
        AeKind::Sparse => "sparse",
        AeKind::Contractive => "contractive",
        AeKind::Denoising => "denoising",
    }
}

/// The kind a weights file says it was trained as: its `kind` field (this tab's files) or the
/// CLI's `model` field ("nnlab Plain autoencoder").
fn kind_from_meta(meta: &HashMap<String, String>) -> Option<AeKind> {
    if let Some(k) = meta.get("kind") {
        return parse_kind(k).ok();
    }
    let model = meta.get("model")?.to_lowercase();
    ["plain", "sparse", "contractive", "denoising"]
        .into_iter()
        .find(|k| model.contains(k))
        .and_then(|k| parse_kind(k).ok())
}

fn parse_noise(noise: &str) -> Result<NoiseKind, JsError> {
    match noise {
        "gaussian" => Ok(NoiseKind::Gaussian),
        "masking" => Ok(NoiseKind::Masking),
        other => Err(invalid(format!(
            "unknown noise {other:?} (expected gaussian or masking)"
        ))),
    }
}

fn check_code_size(k: usize) -> Result<(), JsError> {
    if !(2..=MAX_CODE).contains(&k) {
        return Err(invalid(format!(
            "code size k must be 2..={MAX_CODE}, got {k}"
        )));
    }
    Ok(())
}

/// A copy of `model` with its own parameters (a frozen reference while the original trains on).
fn snapshot(b: &dyn Backend, model: &Autoencoder) -> Result<Autoencoder, JsError> {
    let copy = Autoencoder::new(b, model.config, 0).map_err(err)?;
    for (dst, src) in copy.params().iter().zip(model.params()) {
        b.assign(dst.value(), src.value()).map_err(err)?;
    }
    Ok(copy)
}

fn parameter_count(model: &Autoencoder) -> usize {
    model
        .params()
        .iter()
        .map(|p| p.shape().iter().product::<usize>())
        .sum()
}

/// Make `model` the tab's current model (fresh optimizer, data order from `seed`).
fn install(
    model: Autoencoder,
    cost: AeCost,
    lr: f32,
    batch: usize,
    seed: u64,
    history: String,
) -> Result<Rc<Autoencoder>, JsError> {
    let page = digits()?;
    let model = Rc::new(model);
    let trainer = Trainer {
        model: model.clone(),
        opt: Adam::new(lr, 0.9, 0.999),
        cost,
        batch,
        seed,
        step: 0,
        history,
        order: EpochOrder::new(page.len(), seed),
    };
    TAB.with(|t| t.borrow_mut().trainer = Some(Rc::new(RefCell::new(trainer))));
    Ok(model)
}

fn model_object(model: &Autoencoder, cost: &AeCost, step: usize, history: &str) -> Object {
    let o = Object::new();
    set(&o, "arch", arch_name(model.config.arch));
    set(&o, "k", model.config.k as u32);
    set(&o, "kind", kind_name(cost.kind));
    set(&o, "parameters", parameter_count(model) as u32);
    set(&o, "step", step as u32);
    set(&o, "history", history);
    o
}

/// Load the page's digit set (www/data/mnist_page.bin). Resolves to `{digits, train, held_out}`.
#[wasm_bindgen]
pub fn ae_load_digits(bytes: &[u8]) -> Result<JsValue, JsError> {
    let page = super::page_digits(bytes)?;
    let n = page.len();
    TAB.with(|t| t.borrow_mut().digits = Some(page));
    let o = Object::new();
    set(&o, "digits", n as u32);
    set(&o, "train", page_train_indices(n).len() as u32);
    set(&o, "held_out", held_out_indices(n).len() as u32);
    Ok(o.into())
}

/// Make a new autoencoder (`arch` dense or conv, code size `k` 2..=64, init `seed`) the
/// current model, untrained. Resolves to `{arch, k, kind, parameters, step, history}`.
#[wasm_bindgen]
pub fn ae_reset(arch: &str, k: usize, seed: u32) -> Result<JsValue, JsError> {
    check_code_size(k)?;
    let config = AeConfig {
        arch: parse_arch(arch)?,
        k,
    };
    let b = backend()?;
    let model = Autoencoder::new(b.as_ref(), config, seed as u64).map_err(err)?;
    // keep the training settings the page chose before, if any
    let (cost, lr, batch) = TAB
        .with(|t| {
            t.borrow().trainer.as_ref().and_then(|tr| {
                tr.try_borrow()
                    .ok()
                    .map(|tr| (tr.cost, tr.opt.lr(), tr.batch))
            })
        })
        .unwrap_or((AeCost::plain(), 1e-3, 32));
    let history = format!("new {arch} k={k}, seed {seed}");
    let model = install(model, cost, lr, batch, seed as u64, history.clone())?;
    Ok(model_object(&model, &cost, 0, &history).into())
}

/// Load autoencoder weights (safetensors bytes; architecture and k read from the shapes) as
/// the current model. `name` says where they came from ("shipped", a file name). A plain
/// model also becomes the reference of its k for the contractive comparison. Resolves to
/// `{arch, k, kind, parameters, step, history, meta}`.
#[wasm_bindgen]
pub fn ae_load_weights(bytes: &[u8], name: &str) -> Result<JsValue, JsError> {
    let b = backend()?;
    let model = autoencoder::from_weights(b.as_ref(), bytes)
        .map_err(|e| invalid(format!("{name}: {e}")))?;
    let meta = crate::weights::metadata(bytes).map_err(err)?;
    let kind = kind_from_meta(&meta);
    check_code_size(model.config.k)?;
    let cost = AeCost {
        kind: kind.unwrap_or(AeKind::Plain),
        ..AeCost::plain()
    };
    let history = format!(
        "{name} ({} {} k={})",
        kind.map(kind_name).unwrap_or("unknown kind"),
        arch_name(model.config.arch),
        model.config.k
    );
    let model = install(model, cost, 1e-3, 32, 1, history.clone())?;
    if kind == Some(AeKind::Plain) {
        let k = model.config.k;
        let source = history.clone();
        TAB.with(|t| {
            t.borrow_mut().plain.insert(
                k,
                PlainRef {
                    model: model.clone(),
                    source,
                },
            )
        });
    }
    let o = model_object(&model, &cost, 0, &history);
    let m = Object::new();
    for (k, v) in meta.into_iter().collect::<BTreeMap<_, _>>() {
        set(&m, &k, v);
    }
    set(&o, "meta", m);
    Ok(o.into())
}

/// Set how the current model trains from its next step: `kind` (plain, sparse, contractive,
/// denoising), `lambda` (sparse/contractive weight), `noise` (gaussian, masking) and `level`
/// (denoising), Adam learning rate `lr`, `batch` size. Resolves to the model's description.
#[wasm_bindgen]
pub fn ae_set_training(
    kind: &str,
    lambda: f32,
    noise: &str,
    level: f32,
    lr: f32,
    batch: usize,
) -> Result<JsValue, JsError> {
    let cost = AeCost {
        kind: parse_kind(kind)?,
        lambda,
        noise: parse_noise(noise)?,
        level,
    };
    cost.validate().map_err(err)?;
    if !(lr.is_finite() && lr > 0.0 && lr <= 0.1) {
        return Err(invalid(format!(
            "learning rate must be in (0, 0.1], got {lr}"
        )));
    }
    if !(1..=256).contains(&batch) {
        return Err(invalid(format!("batch must be 1..=256, got {batch}")));
    }
    let tr = trainer()?;
    let mut tr = tr
        .try_borrow_mut()
        .map_err(|_| invalid("the autoencoder is busy training"))?;
    tr.cost = cost;
    tr.opt.set_lr(lr);
    tr.batch = batch;
    Ok(model_object(&tr.model, &tr.cost, tr.step, &tr.history).into())
}

/// Take `n` Adam steps (1..=100) on the current model. Resolves to `{step, epoch, losses,
/// recon}`: the step count so far, the epoch, and per step the cost and its reconstruction
/// term (Float32Array of n each; mean binary cross-entropy per pixel).
#[wasm_bindgen]
pub async fn ae_train_steps(n: usize) -> Result<JsValue, JsError> {
    super::check_steps(n, MAX_STEPS_PER_CALL)?;
    let page = digits()?;
    let b = backend()?;
    let b: &dyn Backend = b.as_ref();
    let trainer = trainer()?;
    freeze_plain_reference(b, &trainer)?;
    // every step is computed with the trainer borrowed; the losses are read after
    let (results, step, epoch) = {
        let mut tr = trainer
            .try_borrow_mut()
            .map_err(|_| invalid("training is already running"))?;
        let mut results = Vec::with_capacity(n);
        for _ in 0..n {
            let batch = tr.batch;
            let idx = tr.order.next_batch(batch);
            let (xs, _) = page.gather(&idx).map_err(err)?;
            let x = b.upload(&[idx.len(), PIXELS], &xs).map_err(err)?;
            let noisy = match tr.cost.kind {
                AeKind::Denoising => {
                    let seed = tr.seed.wrapping_mul(1_000_003).wrapping_add(tr.step as u64);
                    Some(
                        b.upload(
                            &[idx.len(), PIXELS],
                            &autoencoder::corrupt(&xs, tr.cost.noise, tr.cost.level, seed),
                        )
                        .map_err(err)?,
                    )
                }
                _ => None,
            };
            let mut g = Graph::new(b);
            let (total, recon) = tr
                .model
                .cost(&mut g, &x, noisy.as_ref(), &tr.cost)
                .map_err(err)?;
            g.backward(total).map_err(err)?;
            let Trainer { model, opt, .. } = &mut *tr;
            opt.step(&g, &model.params()).map_err(err)?;
            results.push((
                g.value(total).map_err(err)?.clone(),
                g.value(recon).map_err(err)?.clone(),
            ));
            tr.step += 1;
        }
        (results, tr.step, tr.order.epoch)
    };
    let (mut losses, mut recon) = (Vec::with_capacity(n), Vec::with_capacity(n));
    let tensors: Vec<&Tensor> = results.iter().flat_map(|(t, r)| [t, r]).collect();
    for v in b.read_many(&tensors).await.map_err(err)?.chunks(2) {
        let v0 = v[0][0];
        if !v0.is_finite() {
            return Err(invalid(format!("training diverged: the cost is {v0} at step {step}; press Reset and use a smaller learning rate")));
        }
        losses.push(v0);
        recon.push(v[1][0]);
    }
    let o = Object::new();
    set(&o, "step", step as u32);
    set(&o, "epoch", epoch as u32);
    set(&o, "losses", Float32Array::from(&losses[..]));
    set(&o, "recon", Float32Array::from(&recon[..]));
    Ok(o.into())
}

/// Keep the plain reference of the current k in step with training: a model trained as plain
/// becomes the reference; before a plain reference trains on with another cost, it is copied.
fn freeze_plain_reference(b: &dyn Backend, trainer: &Rc<RefCell<Trainer>>) -> Result<(), JsError> {
    let (model, kind, history) = {
        let tr = trainer
            .try_borrow()
            .map_err(|_| invalid("training is already running"))?;
        (tr.model.clone(), tr.cost.kind, tr.history.clone())
    };
    let k = model.config.k;
    let is_ref = TAB.with(|t| {
        t.borrow()
            .plain
            .get(&k)
            .is_some_and(|r| Rc::ptr_eq(&r.model, &model))
    });
    if kind == AeKind::Plain && !is_ref {
        let source = format!("plain model trained in this tab ({history})");
        TAB.with(|t| t.borrow_mut().plain.insert(k, PlainRef { model, source }));
    } else if kind != AeKind::Plain && is_ref {
        let copy = Rc::new(snapshot(b, &model)?);
        TAB.with(|t| {
            if let Some(r) = t.borrow_mut().plain.get_mut(&k) {
                r.model = copy;
            }
        });
    }
    Ok(())
}

/// The held-out digits `idx`, clean and as the model's input (corrupted with a fixed seed for
/// a denoising cost).
fn held_out_batch(
    page: &Mnist,
    idx: &[usize],
    cost: &AeCost,
) -> Result<(Vec<f32>, Option<Vec<f32>>), JsError> {
    let (xs, _) = page.gather(idx).map_err(err)?;
    let noisy = (cost.kind == AeKind::Denoising)
        .then(|| autoencoder::corrupt(&xs, cost.noise, cost.level, HELD_OUT_NOISE_SEED));
    Ok((xs, noisy))
}

/// The held-out digits' page indices in a fixed shuffled order, so that any chunk of it is a
/// sample of every class (the page digits are sorted by class).
fn held_out_order(n: usize) -> Vec<usize> {
    rng::shuffled(held_out_indices(n), HELD_OUT_ORDER_SEED)
}

/// Positions start..start+count of the held-out order, checked.
fn held_out_chunk(
    page: &Mnist,
    start: usize,
    count: usize,
    max: usize,
) -> Result<Vec<usize>, JsError> {
    let order = held_out_order(page.len());
    if count == 0 || count > max || start + count > order.len() {
        return Err(invalid(format!(
            "held-out chunk {start}..{} must hold 1..={max} digits inside 0..{}",
            start + count,
            order.len()
        )));
    }
    Ok(order[start..start + count].to_vec())
}

/// Evaluate the current model with its training cost on held-out digits start..start+count
/// (count <= 500) of the fixed held-out order. Resolves to `{n, cost, recon, mse, near_zero,
/// mean_code, codes, labels}`: the mean cost and reconstruction term (as in training), the MSE
/// per pixel of the reconstructions against the clean digits, the fraction of code units
/// below 0.05 and the mean code unit, and the codes (Float32Array n*k) with their labels
/// (Uint8Array n).
#[wasm_bindgen]
pub async fn ae_eval(start: usize, count: usize) -> Result<JsValue, JsError> {
    let page = digits()?;
    let idx = held_out_chunk(&page, start, count, EVAL_CHUNK)?;
    let (model, cost) = current()?;
    let b = backend()?;
    let b: &dyn Backend = b.as_ref();
    let (xs, noisy) = held_out_batch(&page, &idx, &cost)?;
    let x = b.upload(&[count, PIXELS], &xs).map_err(err)?;
    let xn = noisy
        .map(|v| b.upload(&[count, PIXELS], &v))
        .transpose()
        .map_err(err)?;
    let mut g = Graph::new(b);
    g.set_grad_enabled(false);
    let p = model
        .cost_parts(&mut g, &x, xn.as_ref(), &cost)
        .map_err(err)?;
    let out = g.sigmoid(p.logits).map_err(err)?;
    let parts = [p.total, p.recon, p.code, out]
        .into_iter()
        .map(|id| g.value(id))
        .collect::<Result<Vec<_>, _>>()
        .map_err(err)?;
    let host = b.read_many(&parts).await.map_err(err)?;
    let (total, recon, codes) = (host[0][0] as f64, host[1][0] as f64, &host[2]);
    let mse = autoencoder::mse(&host[3], &xs);
    let near_zero = codes.iter().filter(|c| **c < NEAR_ZERO).count() as f64 / codes.len() as f64;
    let mean_code = codes.iter().map(|c| *c as f64).sum::<f64>() / codes.len() as f64;
    let labels: Vec<u8> = idx.iter().map(|&i| page.labels[i]).collect();
    let o = Object::new();
    set(&o, "n", count as u32);
    set(&o, "cost", total);
    set(&o, "recon", recon);
    set(&o, "mse", mse);
    set(&o, "near_zero", near_zero);
    set(&o, "mean_code", mean_code);
    set(&o, "codes", Float32Array::from(&codes[..]));
    set(&o, "labels", Uint8Array::from(&labels[..]));
    Ok(o.into())
}

/// Codes of held-out digits start..start+count (count <= 500) of the fixed held-out order
/// (the encoder only: for the scatter). Resolves to `{codes, labels}` (n*k, n).
#[wasm_bindgen]
pub async fn ae_codes(start: usize, count: usize) -> Result<JsValue, JsError> {
    let page = digits()?;
    let idx = held_out_chunk(&page, start, count, EVAL_CHUNK)?;
    let (model, cost) = current()?;
    let (xs, noisy) = held_out_batch(&page, &idx, &cost)?;
    let b = backend()?;
    let codes = autoencoder::codes(b.as_ref(), &model, noisy.as_deref().unwrap_or(&xs))
        .await
        .map_err(err)?;
    let labels: Vec<u8> = idx.iter().map(|&i| page.labels[i]).collect();
    let o = Object::new();
    set(&o, "codes", Float32Array::from(&codes[..]));
    set(&o, "labels", Uint8Array::from(&labels[..]));
    Ok(o.into())
}

/// Fit PCA with the current model's k on `rows` training digits (spread over every class;
/// 1..=8000). Takes seconds in wasm for 8000 digits (a 784 x 784 covariance). Resolves to
/// `{k, rows, explained, mse, mse_eval}`: the fraction of variance the k components explain,
/// the held-out MSE per pixel of PCA's reconstructions on all 2000 held-out digits, and on the
/// 500 that `ae_eval(0, 500)` scores.
#[wasm_bindgen]
pub async fn ae_pca_fit(rows: usize) -> Result<JsValue, JsError> {
    let page = digits()?;
    let (model, _) = current()?;
    let k = model.config.k;
    let train = page_train_indices(page.len());
    if !(k + 1..=train.len()).contains(&rows) {
        return Err(invalid(format!(
            "PCA: rows must be {}..={} (training digits), got {rows}",
            k + 1,
            train.len()
        )));
    }
    let (xs, _) = page.gather(&spread(&train, rows)).map_err(err)?;
    let b = backend()?;
    let p = pca::fit(b.as_ref(), &xs, rows, PIXELS, k, 1)
        .await
        .map_err(err)?;
    // held-out order: its first EVAL_CHUNK are the digits `ae_eval(0, 500)` scores
    let (held, _) = page.gather(&held_out_order(page.len())).map_err(err)?;
    let rec = p.reconstruct(&p.project(&held));
    let mse = autoencoder::mse(&rec, &held);
    let first = EVAL_CHUNK.min(held.len() / PIXELS) * PIXELS;
    let mse_eval = autoencoder::mse(&rec[..first], &held[..first]);
    let explained: f64 = p.explained_variance_ratio().iter().sum();
    TAB.with(|t| t.borrow_mut().pca = Some(Rc::new(p)));
    let o = Object::new();
    set(&o, "k", k as u32);
    set(&o, "rows", rows as u32);
    set(&o, "explained", explained);
    set(&o, "mse", mse);
    set(&o, "mse_eval", mse_eval);
    Ok(o.into())
}

/// The lecture's comparison grid on held-out digits: one digit of each class (the `offset`-th
/// held-out digit of that class). Resolves to `{count, labels, originals, noisy, ae, pca,
/// mse_noisy, mse_ae, mse_pca, pca_k}`: `count` x 784 values per row (Float32Array); `noisy`
/// is the corrupted input of a denoising cost (null otherwise) and both models reconstruct
/// what the model is given (the noisy input for denoising); `pca` is null unless PCA is fitted
/// with the model's k. MSEs are per pixel, against the clean originals, over the row.
#[wasm_bindgen]
pub async fn ae_grid(offset: usize) -> Result<JsValue, JsError> {
    let page = digits()?;
    let (model, cost) = current()?;
    let b = backend()?;
    let held = held_out_indices(page.len());
    let mut idx = Vec::new();
    for class in 0..10u8 {
        let of_class: Vec<usize> = held
            .iter()
            .copied()
            .filter(|&i| page.labels[i] == class)
            .collect();
        if !of_class.is_empty() {
            idx.push(of_class[offset % of_class.len()]);
        }
    }
    let (xs, noisy) = held_out_batch(&page, &idx, &cost)?;
    let input = noisy.as_deref().unwrap_or(&xs);
    let rec = autoencoder::reconstruct(b.as_ref(), &model, input)
        .await
        .map_err(err)?;
    let pca = TAB
        .with(|t| t.borrow().pca.clone())
        .filter(|p| p.k() == model.config.k);
    let pca_rec = pca.as_ref().map(|p| p.reconstruct(&p.project(input)));
    let labels: Vec<u8> = idx.iter().map(|&i| page.labels[i]).collect();
    let o = Object::new();
    set(&o, "count", idx.len() as u32);
    set(&o, "labels", Uint8Array::from(&labels[..]));
    set(&o, "originals", Float32Array::from(&xs[..]));
    set(
        &o,
        "noisy",
        noisy
            .as_ref()
            .map(|v| JsValue::from(Float32Array::from(&v[..])))
            .unwrap_or(JsValue::NULL),
    );
    set(
        &o,
        "mse_noisy",
        noisy
            .as_ref()
            .map(|v| JsValue::from(autoencoder::mse(v, &xs)))
            .unwrap_or(JsValue::NULL),
    );
    set(&o, "ae", Float32Array::from(&rec[..]));
    set(&o, "mse_ae", autoencoder::mse(&rec, &xs));
    set(
        &o,
        "pca",
        pca_rec
            .as_ref()
            .map(|v| JsValue::from(Float32Array::from(&v[..])))
            .unwrap_or(JsValue::NULL),
    );
    set(
        &o,
        "mse_pca",
        pca_rec
            .as_ref()
            .map(|v| JsValue::from(autoencoder::mse(v, &xs)))
            .unwrap_or(JsValue::NULL),
    );
    set(
        &o,
        "pca_k",
        pca.map(|p| JsValue::from(p.k() as u32))
            .unwrap_or(JsValue::NULL),
    );
    Ok(o.into())
}

/// The decoded 2-D manifold of a k = 2 model: a `side` x `side` grid (2..=30) of decoder
/// outputs over the code square [0, 1]^2, at the cell centres. Row r has c1 = 1 - (r + 0.5) /
/// side (c1 grows upwards, as in a plot), column c has c0 = (c + 0.5) / side. Resolves to a
/// Float32Array of side * side * 784 values, row-major by grid cell.
#[wasm_bindgen]
pub async fn ae_manifold(side: usize) -> Result<Float32Array, JsError> {
    if !(2..=MAX_MANIFOLD_SIDE).contains(&side) {
        return Err(invalid(format!(
            "manifold: side must be 2..={MAX_MANIFOLD_SIDE}, got {side}"
        )));
    }
    let (model, _) = current()?;
    if model.config.k != 2 {
        return Err(invalid(format!(
            "the 2-D manifold needs a model with k = 2 (this one has k = {})",
            model.config.k
        )));
    }
    let b = backend()?;
    let s = side as f32;
    let codes: Vec<f32> = (0..side * side)
        .flat_map(|i| {
            [
                ((i % side) as f32 + 0.5) / s,
                1.0 - ((i / side) as f32 + 0.5) / s,
            ]
        })
        .collect();
    let out = autoencoder::decode_codes(b.as_ref(), &model, &codes)
        .await
        .map_err(err)?;
    Ok(Float32Array::from(&out[..]))
}

/// Decode one code (k values, each clamped to [0, 1], the sigmoid's range) with the current
/// model. Resolves to 784 pixel values in [0, 1].
#[wasm_bindgen]
pub async fn ae_decode(code: Vec<f32>) -> Result<Float32Array, JsError> {
    let (model, _) = current()?;
    let k = model.config.k;
    if code.len() != k {
        return Err(invalid(format!(
            "decode: expected {k} code values, got {}",
            code.len()
        )));
    }
    let code: Vec<f32> = code
        .iter()
        .map(|c| {
            if c.is_finite() {
                c.clamp(0.0, 1.0)
            } else {
                0.5
            }
        })
        .collect();
    let b = backend()?;
    let out = autoencoder::decode_codes(b.as_ref(), &model, &code)
        .await
        .map_err(err)?;
    Ok(Float32Array::from(&out[..]))
}

/// Part of the encoder's Jacobian norm E ||d phi(x) / dx||_F^2 on `n` held-out digits: the
/// rows of code units first..first+count (one backward pass each), of the current model
/// (`which` = "model") or of the latest plain model of the same k ("plain"). The page adds the
/// parts up over all k units in short calls. Resolves to `{sum, n, k, source}`: the sum over
/// digits and units (divide the total by n), and where the plain model came from; null when
/// there is no plain model of this k.
#[wasm_bindgen]
pub async fn ae_jacobian_part(
    which: &str,
    n: usize,
    first: usize,
    count: usize,
) -> Result<JsValue, JsError> {
    let page = digits()?;
    let (current, _) = current()?;
    let k = current.config.k;
    let (model, source) = match which {
        "model" => (current, String::new()),
        "plain" => match TAB.with(|t| {
            t.borrow()
                .plain
                .get(&k)
                .map(|r| (r.model.clone(), r.source.clone()))
        }) {
            Some(r) => r,
            None => return Ok(JsValue::NULL),
        },
        other => {
            return Err(invalid(format!(
                "jacobian: unknown model {other:?} (expected model or plain)"
            )))
        }
    };
    let held = held_out_indices(page.len());
    if n == 0 || n > held.len() || count == 0 || first + count > k {
        return Err(invalid(format!("jacobian: need 1..={} digits and code units inside 0..{k} (got n {n}, units {first}..{})", held.len(), first + count)));
    }
    let (xs, _) = page.gather(&spread(&held, n)).map_err(err)?;
    let b = backend()?;
    let sum = autoencoder::jacobian_rows_sq_sum(b.as_ref(), &model, &xs, first..first + count)
        .await
        .map_err(err)?;
    let o = Object::new();
    set(&o, "sum", sum);
    set(&o, "n", n as u32);
    set(&o, "k", k as u32);
    set(&o, "source", source);
    Ok(o.into())
}

/// The current model's weights as safetensors bytes (PyTorch state_dict names), with its kind,
/// architecture, k, cost settings and step count as metadata.
#[wasm_bindgen]
pub async fn ae_weights() -> Result<Vec<u8>, JsError> {
    let tr = trainer()?;
    let (model, cost, step, history) = {
        let tr = tr
            .try_borrow()
            .map_err(|_| invalid("the autoencoder is busy training"))?;
        (tr.model.clone(), tr.cost, tr.step, tr.history.clone())
    };
    let mut meta = HashMap::new();
    meta.insert(
        "model".to_string(),
        format!("nnlab {:?} autoencoder", cost.kind),
    );
    meta.insert("kind".to_string(), kind_name(cost.kind).to_string());
    meta.insert("arch".to_string(), arch_name(model.config.arch).to_string());
    meta.insert("k".to_string(), model.config.k.to_string());
    meta.insert("lambda".to_string(), cost.lambda.to_string());
    meta.insert(
        "noise".to_string(),
        format!("{:?} {}", cost.noise, cost.level),
    );
    meta.insert("steps_in_tab".to_string(), step.to_string());
    meta.insert("history".to_string(), history);
    meta.insert(
        "data".to_string(),
        "nnlab page digits (MNIST training digits 0..10000) with index % 5 != 0".to_string(),
    );
    let b = backend()?;
    crate::weights::save_params(b.as_ref(), &model.params(), Some(meta))
        .await
        .map_err(err)
}
