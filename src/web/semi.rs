//! wasm API of the "Improving the discriminator" panel (Adversarial tab): two classifiers
//! trained side by side on L labelled page digits, one on the labels only, one adding the
//! consistency term on the other (unlabelled) page digits (VAT or noise; `models::semi`); their
//! held-out accuracy; x^, r and F(x^) vs F(x^ + r) for a few unlabelled digits; the shipped
//! 100-label model.
//!
//! Digits: the labelled subset and the unlabelled pool come from the page's training digits
//! (index not a multiple of `HELD_OUT_EVERY`); accuracy is measured on the held-out ones.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::rc::Rc;

use js_sys::{Float32Array, Object};
use wasm_bindgen::prelude::*;

use super::{backend, err, invalid, loaded_digits, set, HELD_OUT_EVERY};
use crate::backend::Backend;
use crate::data::mnist::{one_hot, Mnist, CLASSES, PIXELS, SIDE};
use crate::models::attack::{self, EvalResult};
use crate::models::semi::{self, PerturbNorm, SemiConfig, Unlabelled};
use crate::models::{Classifier, ClassifierConfig};
use crate::nn::{Adam, Module};

/// Most training steps (of both models) one call takes; most digits one evaluation takes.
const MAX_STEPS_PER_CALL: usize = 50;
const MAX_CHUNK: usize = 500;
const MAX_SHOW: usize = 16;
/// The panel's classifier: the CLI's semi-supervised widths.
const CONFIG: ClassifierConfig = ClassifierConfig {
    c1: 16,
    c2: 32,
    c3: 32,
    hidden: 128,
};
const LABELLED_BATCH: usize = 32;
const UNLABELLED_BATCH: usize = 64;

struct Trainer {
    model: Rc<Classifier>,
    opt: Adam,
    cfg: SemiConfig,
    step: usize,
}

struct Run {
    labelled: Vec<usize>,
    unlabelled: Vec<usize>,
    seed: u64,
    /// "labels" (labels only) and "semi" (+ the consistency term)
    labels_only: Trainer,
    semi: Trainer,
}

#[derive(Default)]
struct Panel {
    digits: Option<Rc<Mnist>>,
    shipped: Option<Rc<Classifier>>,
    run: Option<Rc<RefCell<Run>>>,
}

thread_local! {
    static PANEL: RefCell<Panel> = RefCell::new(Panel::default());
}

fn digits() -> Result<Rc<Mnist>, JsError> {
    loaded_digits(
        PANEL.with(|p| p.borrow().digits.clone()),
        "semi_load_digits",
    )
}

fn current_run() -> Result<Rc<RefCell<Run>>, JsError> {
    PANEL
        .with(|p| p.borrow().run.clone())
        .ok_or_else(|| invalid("nothing to train: press Reset (choose L) first"))
}

/// Load the page's digit set (shared with the other tabs). Resolves to `{digits}`.
#[wasm_bindgen]
pub fn semi_load_digits(bytes: &[u8]) -> Result<JsValue, JsError> {
    let page = super::page_digits(bytes)?;
    let n = page.len() as u32;
    PANEL.with(|p| p.borrow_mut().digits = Some(page));
    let o = Object::new();
    set(&o, "digits", n);
    Ok(o.into())
}

/// Load the shipped semi-supervised classifier (safetensors bytes); resolves to its metadata.
#[wasm_bindgen]
pub fn semi_load_model(bytes: &[u8]) -> Result<JsValue, JsError> {
    let b = backend()?;
    let m = Classifier::from_bytes(b.as_ref(), bytes)
        .map_err(|e| invalid(format!("semi-supervised classifier: {e}")))?;
    let meta: BTreeMap<String, String> = crate::weights::metadata(bytes)
        .map_err(err)?
        .into_iter()
        .collect();
    PANEL.with(|p| p.borrow_mut().shipped = Some(Rc::new(m)));
    let o = Object::new();
    for (k, v) in meta {
        set(&o, &k, v);
    }
    Ok(o.into())
}

fn parse_cfg(unlabelled: &str, norm: &str, eps: f32, lambda: f32) -> Result<SemiConfig, JsError> {
    let unlabelled = match unlabelled {
        "adversarial" => Unlabelled::Adversarial,
        "noise" => Unlabelled::Noise,
        other => {
            return Err(invalid(format!(
                "unknown unlabelled term {other:?} (expected adversarial or noise)"
            )))
        }
    };
    let norm = match norm {
        "l2" => PerturbNorm::L2,
        "sign" => PerturbNorm::Sign,
        other => {
            return Err(invalid(format!(
                "unknown norm {other:?} (expected l2 or sign)"
            )))
        }
    };
    let cfg = SemiConfig {
        unlabelled,
        norm,
        eps,
        lambda,
        ..SemiConfig::default()
    };
    cfg.validate().map_err(err)?;
    Ok(cfg)
}

/// Start both models from the same initial weights on `labels` labelled page digits (a
/// multiple of 10, drawn evenly from the classes by `seed`); the semi-supervised one adds
/// `unlabelled` ("adversarial" or "noise") consistency with `norm` ("l2" or "sign"), size `eps`
/// and weight `lambda`. Resolves to `{labelled, unlabelled, parameters}`.
#[wasm_bindgen]
pub fn semi_reset(
    labels: usize,
    unlabelled: &str,
    norm: &str,
    eps: f32,
    lambda: f32,
    seed: u32,
) -> Result<JsValue, JsError> {
    let page = digits()?;
    let cfg = parse_cfg(unlabelled, norm, eps, lambda)?;
    let train: Vec<usize> = super::page_train_indices(page.len());
    if labels == 0 || labels % CLASSES != 0 || labels > 1000 {
        return Err(invalid(format!(
            "L must be a multiple of 10 in 10..=1000, got {labels}"
        )));
    }
    let seed = seed as u64;
    let train_labels: Vec<u8> = train.iter().map(|&i| page.labels[i]).collect();
    let picked = semi::balanced_subset(&train_labels, labels / CLASSES, seed).map_err(err)?;
    let labelled: Vec<usize> = picked.iter().map(|&k| train[k]).collect();
    let unlabelled: Vec<usize> = train
        .iter()
        .copied()
        .filter(|i| labelled.binary_search(i).is_err())
        .collect();
    let b = backend()?;
    let new = |cfg: SemiConfig| -> Result<Trainer, JsError> {
        Ok(Trainer {
            model: Rc::new(Classifier::new(b.as_ref(), CONFIG, seed).map_err(err)?),
            opt: Adam::new(1e-3, 0.9, 0.999),
            cfg,
            step: 0,
        })
    };
    let labels_only = new(SemiConfig {
        unlabelled: Unlabelled::None,
        ..cfg
    })?;
    let semi = new(cfg)?;
    let parameters: usize = semi.model.params().iter().map(|p| p.value().numel()).sum();
    let o = Object::new();
    set(&o, "labelled", labelled.len() as u32);
    set(&o, "unlabelled", unlabelled.len() as u32);
    set(&o, "parameters", parameters as u32);
    let run = Run {
        labelled,
        unlabelled,
        seed,
        labels_only,
        semi,
    };
    PANEL.with(|p| p.borrow_mut().run = Some(Rc::new(RefCell::new(run))));
    Ok(o.into())
}

/// `n` seeded indices of `items` for step `step` (a batch of all of them when fewer).
fn batch_of(items: &[usize], n: usize, seed: u64, step: usize) -> Vec<usize> {
    if items.len() <= n {
        return items.to_vec();
    }
    let s = seed.wrapping_mul(7919).wrapping_add(step as u64);
    (0..n)
        .map(|k| items[crate::rng::random_u32(s, k as u32) as usize % items.len()])
        .collect()
}

/// Take `n` steps (1..=50) of both models on the same labelled batches. Resolves to `{step,
/// labels_loss, semi_loss, consistency}` (the last call's mean costs; `consistency` is the
/// semi model's consistency cross-entropy).
#[wasm_bindgen]
pub async fn semi_train_steps(n: usize) -> Result<JsValue, JsError> {
    super::check_steps(n, MAX_STEPS_PER_CALL)?;
    let page = digits()?;
    let b = backend()?;
    let b: &dyn Backend = b.as_ref();
    let run = current_run()?;
    let (parts, step) = {
        let mut guard = run
            .try_borrow_mut()
            .map_err(|_| invalid("training is already running"))?;
        let r = &mut *guard;
        let mut parts = Vec::with_capacity(n);
        for _ in 0..n {
            let step = r.semi.step;
            let li = batch_of(&r.labelled, LABELLED_BATCH, r.seed ^ 0x1abe1, step);
            let ui = batch_of(&r.unlabelled, UNLABELLED_BATCH, r.seed ^ 0x5e111, step);
            let (xs, ys) = page.gather(&li).map_err(err)?;
            let x_l = b.upload(&[li.len(), 1, SIDE, SIDE], &xs).map_err(err)?;
            let t_l = b.upload(&[li.len(), CLASSES], &one_hot(&ys)).map_err(err)?;
            let (xu, _) = page.gather(&ui).map_err(err)?;
            let x_u = b.upload(&[ui.len(), 1, SIDE, SIDE], &xu).map_err(err)?;
            let seed = r.seed.wrapping_mul(1_000_003).wrapping_add(step as u64);
            let one = |t: &mut Trainer, x_u: Option<&crate::tensor::Tensor>| {
                let Trainer {
                    model, opt, cfg, ..
                } = t;
                let p = semi::train_step(b, model.as_ref(), opt, &x_l, &t_l, x_u, cfg, seed);
                t.step += 1;
                p
            };
            let lo = one(&mut r.labels_only, None).map_err(err)?;
            let se = one(&mut r.semi, Some(&x_u)).map_err(err)?;
            parts.push([lo[0].clone(), se[0].clone(), se[2].clone()]);
        }
        (parts, r.semi.step)
    };
    // every step's costs in one read-back (one map per call, not per step)
    let tensors: Vec<&crate::tensor::Tensor> = parts.iter().flatten().collect();
    let host = b.read_many(&tensors).await.map_err(err)?;
    let mut sums = [0.0f64; 3];
    for v in host.chunks(3) {
        for k in 0..3 {
            let x = v[k][0];
            if !x.is_finite() {
                return Err(invalid(format!(
                    "training diverged: a cost is {x} at step {step}; press Reset"
                )));
            }
            sums[k] += x as f64;
        }
    }
    let o = Object::new();
    set(&o, "step", step as u32);
    set(&o, "labels_loss", sums[0] / n as f64);
    set(&o, "semi_loss", sums[1] / n as f64);
    set(&o, "consistency", sums[2] / n as f64);
    Ok(o.into())
}

fn model(which: &str) -> Result<Rc<Classifier>, JsError> {
    match which {
        "shipped" => PANEL
            .with(|p| p.borrow().shipped.clone())
            .ok_or_else(|| invalid("the shipped semi-supervised classifier is not loaded")),
        "labels" => Ok(current_run()?.borrow().labels_only.model.clone()),
        "semi" => Ok(current_run()?.borrow().semi.model.clone()),
        other => Err(invalid(format!(
            "unknown model {other:?} (expected labels, semi or shipped)"
        ))),
    }
}

/// Accuracy of model `which` ("labels", "semi", "shipped") on held-out page digits
/// start..start+count (the held-out ones are every `HELD_OUT_EVERY`-th). Resolves to `{n,
/// correct}`.
#[wasm_bindgen]
pub async fn semi_eval_chunk(which: &str, start: usize, count: usize) -> Result<JsValue, JsError> {
    let page = digits()?;
    let held_out = page.len().div_ceil(HELD_OUT_EVERY);
    if count == 0 || count > MAX_CHUNK || start + count > held_out {
        return Err(invalid(format!(
            "evaluation: chunk {start}..{} must be 1..={MAX_CHUNK} digits inside 0..{held_out}",
            start + count
        )));
    }
    let (b, m) = (backend()?, model(which)?);
    let idx: Vec<usize> = (start..start + count).map(|j| j * HELD_OUT_EVERY).collect();
    let (xs, ys) = page.gather(&idx).map_err(err)?;
    let x = b.upload(&[count, 1, SIDE, SIDE], &xs).map_err(err)?;
    let mut r = EvalResult::default();
    attack::evaluate_batch(b.as_ref(), m.as_ref(), &x, &ys, None, &mut r)
        .await
        .map_err(err)?;
    let o = Object::new();
    set(&o, "n", r.n as u32);
    set(&o, "correct", r.correct as u32);
    Ok(o.into())
}

/// For unlabelled page digits `indices` (at most 16): x^, the perturbation r of the panel's
/// settings under model `which`, F(x^) and F(x^ + r), and KL(F(x^) || F(x^ + r)) per digit.
/// `unlabelled`/`norm`/`eps` as in `semi_reset` (so the shipped model can be shown alone).
/// Resolves to `{x, r, before, after, kl}` (Float32Arrays: n*784, n*784, n*10, n*10, n).
#[wasm_bindgen]
pub async fn semi_show(
    which: &str,
    indices: Vec<u32>,
    unlabelled: &str,
    norm: &str,
    eps: f32,
    seed: u32,
) -> Result<JsValue, JsError> {
    let page = digits()?;
    if indices.is_empty() || indices.len() > MAX_SHOW {
        return Err(invalid(format!(
            "show: 1..={MAX_SHOW} digits, got {}",
            indices.len()
        )));
    }
    let idx: Vec<usize> = indices.iter().map(|&i| i as usize).collect();
    if let Some(&bad) = idx.iter().find(|&&i| i >= page.len()) {
        return Err(invalid(format!("show: no page digit {bad}")));
    }
    let cfg = parse_cfg(unlabelled, norm, eps, 1.0)?;
    let (b, m) = (backend()?, model(which)?);
    let b: &dyn Backend = b.as_ref();
    let n = idx.len();
    let (xs, _) = page.gather(&idx).map_err(err)?;
    let x = b.upload(&[n, 1, SIDE, SIDE], &xs).map_err(err)?;
    let p = semi::predict(b, m.as_ref(), &x).map_err(err)?;
    let r = semi::perturbation(b, m.as_ref(), &x, &p, &cfg, seed as u64)
        .map_err(err)?
        .ok_or_else(|| invalid("show: no perturbation for labels only"))?;
    let xr = b
        .binary(crate::backend::BinaryOp::Add, &x, &r)
        .map_err(err)?;
    let q = semi::predict(b, m.as_ref(), &xr).map_err(err)?;
    let [r, p, q]: [Vec<f32>; 3] = b
        .read_many(&[&r, &p, &q])
        .await
        .map_err(err)?
        .try_into()
        .map_err(|_| err("read_many returned the wrong number of tensors"))?;
    crate::finite::check_output("the classifier", &q).map_err(err)?;
    // KL per digit on the host, from the two probability rows
    let kl: Vec<f32> = p
        .chunks(CLASSES)
        .zip(q.chunks(CLASSES))
        .map(|(a, c)| {
            a.iter()
                .zip(c)
                .filter(|(&pa, _)| pa > 0.0)
                .map(|(&pa, &qc)| pa as f64 * (pa as f64 / (qc as f64).max(1e-30)).ln())
                .sum::<f64>() as f32
        })
        .collect();
    debug_assert_eq!(r.len(), n * PIXELS);
    let o = Object::new();
    set(&o, "x", Float32Array::from(&xs[..]));
    set(&o, "r", Float32Array::from(&r[..]));
    set(&o, "before", Float32Array::from(&p[..]));
    set(&o, "after", Float32Array::from(&q[..]));
    set(&o, "kl", Float32Array::from(&kl[..]));
    Ok(o.into())
}
