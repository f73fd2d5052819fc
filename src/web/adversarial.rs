//! wasm API of the Adversarial tab (MNIST classifier, FGSM, adversarial training).
//!
//! The page fetches its assets (the digit set, the shipped weights) and hands the bytes over;
//! this module keeps them, and answers one short request per worker call: attack one digit,
//! evaluate one chunk of digits at one eps, or take a few training steps. The page's JS loops
//! drive the long work (robustness curve, training) so it can pause and cancel between calls.
//!
//! The in-tab classifier trains on the page digits whose index is not a multiple of
//! `HELD_OUT_EVERY`; evaluation (robustness curve, held-out accuracy) uses only multiples of it,
//! so every model is scored on digits it never saw (the shipped ones never saw any page digit).

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::rc::Rc;

use js_sys::{Float32Array, Object};
use wasm_bindgen::prelude::*;

use super::{backend, err, invalid, loaded_digits, set, EpochOrder, HELD_OUT_EVERY};
use crate::backend::{Backend, UnaryOp};
use crate::data::drawing;
use crate::data::mnist::{one_hot, Mnist, CLASSES, PIXELS, SIDE};
use crate::models::attack::{self, AdvMethod, AdvTraining, Attack, EvalResult};
use crate::models::classifier::{train_step, Classifier, ClassifierConfig};
use crate::nn::{Adam, Module};

/// Most digits one evaluation call takes (keeps a call short).
const MAX_CHUNK: usize = 500;
/// Most training steps one call takes.
const MAX_STEPS_PER_CALL: usize = 100;
/// Steps of the iterative attack (step size 2.5 eps / steps, as in the CLI).
const ITERATIVE_STEPS: usize = 10;

/// The classifier being trained in the tab, with its optimizer and data order.
struct Trainer {
    model: Rc<Classifier>,
    /// "small" or "full" (`size_config`)
    size: &'static str,
    opt: Adam,
    adversarial: Option<(f32, f32)>,
    batch: usize,
    seed: u64,
    step: usize,
    order: EpochOrder,
}

#[derive(Default)]
struct Tab {
    digits: Option<Rc<Mnist>>,
    /// the shipped classifiers loaded so far, by name (`SHIPPED`)
    shipped: BTreeMap<&'static str, Rc<Classifier>>,
    trainer: Option<Rc<RefCell<Trainer>>>,
    /// a helper worker's copy of the in-tab classifier (`adv_load_model("trained", ..)`)
    trained_copy: Option<Rc<Classifier>>,
}

thread_local! {
    static TAB: RefCell<Tab> = RefCell::new(Tab::default());
}

fn digits() -> Result<Rc<Mnist>, JsError> {
    loaded_digits(TAB.with(|t| t.borrow().digits.clone()), "adv_load_digits")
}

/// The shipped classifiers: (name, file under www/, what it is).
const SHIPPED: [(&str, &str, &str); 3] = [
    (
        "standard",
        "models/classifier.safetensors",
        "the standard classifier",
    ),
    (
        "adversarial",
        "models/classifier_adv.safetensors",
        "the adversarially trained (RS-FGSM) classifier",
    ),
    (
        "pgd",
        "models/classifier_pgd.safetensors",
        "the PGD-trained classifier",
    ),
];

fn shipped(which: &str) -> Option<(&'static str, &'static str, &'static str)> {
    SHIPPED.iter().copied().find(|(name, ..)| *name == which)
}

fn unknown_model(which: &str) -> JsError {
    let names: Vec<&str> = SHIPPED.iter().map(|(n, ..)| *n).collect();
    invalid(format!(
        "unknown model {which:?} (expected {} or trained)",
        names.join(", ")
    ))
}

/// The classifier named `which`: one of the shipped ones (`SHIPPED`) or "trained" (the one
/// trained in this tab).
pub(super) fn model(which: &str) -> Result<Rc<Classifier>, JsError> {
    TAB.with(|t| {
        let t = t.borrow();
        if which == "trained" {
            return t
                .trainer
                .as_ref()
                .map(|tr| tr.borrow().model.clone())
                .or_else(|| t.trained_copy.clone())
                .ok_or_else(|| {
                    invalid("no classifier has been trained in this tab yet: press Train first")
                });
        }
        let (name, file, what) = shipped(which).ok_or_else(|| unknown_model(which))?;
        t.shipped
            .get(name)
            .cloned()
            .ok_or_else(|| invalid(format!("{what} is not loaded ({file} is missing)")))
    })
}

/// The attack named `kind` ("fgsm", "gradient" (L2 gradient ascent, norm eps * 28),
/// "iterative", "targeted_fgsm", "targeted_iterative") at `eps`.
fn parse_attack(kind: &str, eps: f32, target: i32) -> Result<Attack, JsError> {
    let base = |iterative: bool| {
        if iterative {
            Attack::iterative(eps, ITERATIVE_STEPS)
        } else {
            Attack::fgsm(eps)
        }
    };
    let attack = match kind {
        "fgsm" => base(false),
        "gradient" => Attack::gradient_l2(eps),
        "iterative" => base(true),
        "targeted_fgsm" | "targeted_iterative" => {
            if !(0..CLASSES as i32).contains(&target) {
                return Err(invalid(format!("targeted attack: the target class must be a digit 0..9, got {target}")));
            }
            base(kind == "targeted_iterative").targeted(target as u8)
        }
        other => return Err(invalid(format!("unknown attack {other:?} (expected fgsm, gradient, iterative, targeted_fgsm or targeted_iterative)"))),
    };
    attack.validate().map_err(err)?;
    Ok(attack)
}

/// Load the page's digit set (www/data/mnist_page.bin). Resolves to `{digits, held_out_every}`:
/// the page shows the held-out digits (multiples of `held_out_every`) for attacks, so it needs the
/// rule from here rather than a copy of the constant.
#[wasm_bindgen]
pub fn adv_load_digits(bytes: &[u8]) -> Result<JsValue, JsError> {
    let page = super::page_digits(bytes)?;
    let n = page.len() as u32;
    TAB.with(|t| t.borrow_mut().digits = Some(page));
    let o = Object::new();
    set(&o, "digits", n);
    set(&o, "held_out_every", HELD_OUT_EVERY as u32);
    Ok(o.into())
}

/// Load classifier weights (safetensors bytes) as `which`: a shipped model's name (`SHIPPED`),
/// or "trained" (a copy of the in-tab classifier, `classifier_train_weights`,
/// in a helper worker that spreads the robustness curve). Resolves to the file's metadata
/// (model card fields: test_accuracy, adversarial, command, ...) as a plain object of strings.
#[wasm_bindgen]
pub fn adv_load_model(which: &str, bytes: &[u8]) -> Result<JsValue, JsError> {
    let name = match shipped(which) {
        Some((name, ..)) => Some(name),
        None if which == "trained" => None,
        None => return Err(unknown_model(which)),
    };
    let meta: BTreeMap<String, String> = crate::weights::metadata(bytes)
        .map_err(|e| invalid(format!("{which} classifier: {e}")))?
        .into_iter()
        .collect();
    let config = match which {
        "trained" => size_config(meta.get("size").map_or("", |s| s.as_str()))?,
        _ => ClassifierConfig::default(),
    };
    let b = backend()?;
    let m = Classifier::new(b.as_ref(), config, 0).map_err(err)?;
    crate::weights::load_params(b.as_ref(), &m.params(), bytes)
        .map_err(|e| invalid(format!("{which} classifier: {e}")))?;
    TAB.with(|t| {
        let mut t = t.borrow_mut();
        let m = Rc::new(m);
        match name {
            Some(name) => {
                t.shipped.insert(name, m);
            }
            None => t.trained_copy = Some(m),
        }
    });
    let o = Object::new();
    for (k, v) in meta {
        set(&o, &k, v);
    }
    Ok(o.into())
}

/// The in-tab classifier's weights as a safetensors file (its size in the metadata), for
/// `adv_load_model("trained", ..)` in a helper worker.
#[wasm_bindgen]
pub async fn classifier_train_weights() -> Result<Vec<u8>, JsError> {
    let (model, size) = TAB.with(|t| {
        let t = t.borrow();
        let tr = t.trainer.as_ref().ok_or_else(|| {
            invalid("no classifier has been trained in this tab yet: press Train first")
        })?;
        let tr = tr.borrow();
        Ok::<_, JsError>((tr.model.clone(), tr.size))
    })?;
    let b = backend()?;
    let mut tensors = Vec::new();
    for p in model.params() {
        tensors.push(crate::weights::NamedTensor {
            name: p.name().to_string(),
            shape: p.shape().to_vec(),
            data: b.read(p.value()).await.map_err(err)?,
        });
    }
    let meta = std::collections::HashMap::from([("size".to_string(), size.to_string())]);
    crate::weights::to_bytes(&tensors, Some(meta)).map_err(err)
}

/// The architecture of an in-tab classifier: "small" (16, 32, 32 channels, 64 hidden: fast)
/// or "full" (the shipped model's 32, 64, 64, 128).
fn size_config(size: &str) -> Result<ClassifierConfig, JsError> {
    match size {
        "small" => Ok(ClassifierConfig {
            c1: 16,
            c2: 32,
            c3: 32,
            hidden: 64,
        }),
        "full" => Ok(ClassifierConfig::default()),
        other => Err(invalid(format!(
            "unknown model size {other:?} (expected small or full)"
        ))),
    }
}

/// A drawing (one 8-bit channel, width x height, white ink on black) as a 28x28 MNIST-format
/// image (bounding box scaled to 20 pixels, centred by its centre of mass): 784 values in [0, 1].
#[wasm_bindgen]
pub fn adv_preprocess_drawing(
    pixels: &[u8],
    width: usize,
    height: usize,
) -> Result<Float32Array, JsError> {
    let img = drawing::mnist_from_drawing_u8(pixels, width, height).map_err(err)?;
    Ok(Float32Array::from(&img[..]))
}

/// Attack one digit (784 values in [0, 1]) with model `which`. `label` is the true class, or -1
/// to take the model's own prediction (a drawn digit). `kind`: fgsm, iterative, targeted_fgsm,
/// targeted_iterative; `target` the class for targeted kinds. Resolves to `{label, before,
/// after, adversarial, direction, direction_kind}`: class probabilities before and after (10
/// each), the adversarial image (784), and the perturbation's direction (784): sign(grad_x C)
/// for the FGSM kinds (negated for targeted, i.e. the step actually taken), (x~ - x) / eps for
/// the iterative ones.
#[wasm_bindgen]
pub async fn adv_attack(
    which: &str,
    pixels: Vec<f32>,
    label: i32,
    kind: &str,
    eps: f32,
    target: i32,
) -> Result<JsValue, JsError> {
    if pixels.len() != PIXELS {
        return Err(invalid(format!(
            "adv_attack: expected {PIXELS} pixel values (28x28), got {}",
            pixels.len()
        )));
    }
    if label >= CLASSES as i32 {
        return Err(invalid(format!(
            "adv_attack: label {label} is not a digit 0..9 (or -1 for the model's prediction)"
        )));
    }
    let attack = parse_attack(kind, eps, target)?;
    let (b, m) = (backend()?, model(which)?);
    let b: &dyn Backend = b.as_ref();
    let clean: Vec<f32> = pixels
        .iter()
        .map(|v| {
            if v.is_finite() {
                v.clamp(0.0, 1.0)
            } else {
                0.0
            }
        })
        .collect();
    let x = b.upload(&[1, 1, SIDE, SIDE], &clean).map_err(err)?;

    let before = b
        .read(&m.probabilities_tensor(b, &x).map_err(err)?)
        .await
        .map_err(err)?;
    crate::finite::check_output("the classifier", &before).map_err(err)?;
    let label = if label < 0 {
        attack::argmax(&before) as u8
    } else {
        label as u8
    };

    let x_adv = attack::perturb(b, m.as_ref(), &x, &[label], &attack).map_err(err)?;
    let after = m.probabilities_tensor(b, &x_adv).map_err(err)?;
    let (direction, direction_kind) = match (attack.kind, attack.target) {
        (attack::AttackKind::Fgsm, target) => {
            let t = b
                .upload(&[1, CLASSES], &one_hot(&[target.unwrap_or(label)]))
                .map_err(err)?;
            let (grad, _) = attack::input_gradient(b, m.as_ref(), &x, &t).map_err(err)?;
            let s = b.unary(UnaryOp::Sign, &grad).map_err(err)?;
            let s = if target.is_some() {
                b.affine(&s, -1.0, 0.0).map_err(err)?
            } else {
                s
            };
            (
                s,
                if target.is_some() {
                    "-sign(grad of the target's loss)"
                } else {
                    "sign(grad)"
                },
            )
        }
        (attack::AttackKind::GradientL2, _) => {
            // the unclipped step itself, g / ||g||_2, scaled to a peak of 1 for the view
            let t = b.upload(&[1, CLASSES], &one_hot(&[label])).map_err(err)?;
            let (grad, _) = attack::input_gradient(b, m.as_ref(), &x, &t).map_err(err)?;
            let g = b.read(&grad).await.map_err(err)?;
            let peak = g.iter().fold(0.0f32, |m, v| m.max(v.abs()));
            let g: Vec<f32> = g
                .iter()
                .map(|v| if peak > 0.0 { v / peak } else { 0.0 })
                .collect();
            (
                b.upload(&[1, 1, SIDE, SIDE], &g).map_err(err)?,
                "grad / max|grad|",
            )
        }
        (attack::AttackKind::Iterative { .. }, _) => {
            let d = b
                .binary(crate::backend::BinaryOp::Sub, &x_adv, &x)
                .map_err(err)?;
            (
                b.affine(&d, if eps > 0.0 { 1.0 / eps } else { 0.0 }, 0.0)
                    .map_err(err)?,
                "(x~ - x) / eps",
            )
        }
    };
    let [after, adv, direction]: [Vec<f32>; 3] = b
        .read_many(&[&after, &x_adv, &direction])
        .await
        .map_err(err)?
        .try_into()
        .map_err(|_| err("read_many returned the wrong number of tensors"))?;
    crate::finite::check_output("the classifier", &after).map_err(err)?;

    let o = Object::new();
    set(&o, "label", label as u32);
    set(&o, "before", Float32Array::from(&before[..]));
    set(&o, "after", Float32Array::from(&after[..]));
    set(&o, "adversarial", Float32Array::from(&adv[..]));
    set(&o, "direction", Float32Array::from(&direction[..]));
    set(&o, "direction_kind", direction_kind);
    Ok(o.into())
}

/// The page-digit index of the j-th of `n` evaluation digits, spread evenly (the file is sorted
/// by class, so every class is in): over the held-out digits (multiples of HELD_OUT_EVERY) when
/// they suffice, else over all page digits (which only the shipped models have never seen).
fn eval_index(j: usize, n: usize, total: usize) -> usize {
    let held_out = total.div_ceil(HELD_OUT_EVERY);
    if n <= held_out {
        (j * held_out / n) * HELD_OUT_EVERY
    } else {
        j * total / n
    }
}

/// Evaluate model `which` on evaluation digits start..start+count of an evaluation set of
/// `n_digits` (see `eval_index`; the in-tab model only on held-out digits) under attack `kind` at `eps` (eps 0: clean). Resolves to
/// `{n, correct, confidence_sum}`; the page adds chunks up into a robustness curve.
#[wasm_bindgen]
pub async fn adv_eval_chunk(
    which: &str,
    n_digits: usize,
    start: usize,
    count: usize,
    kind: &str,
    eps: f32,
    target: i32,
) -> Result<JsValue, JsError> {
    let page = digits()?;
    let held_out = page.len().div_ceil(HELD_OUT_EVERY);
    if n_digits == 0 || n_digits > page.len() {
        return Err(invalid(format!(
            "evaluation: n_digits must be 1..={} (the page digits), got {n_digits}",
            page.len()
        )));
    }
    if which == "trained" && n_digits > held_out {
        return Err(invalid(format!(
            "evaluation: the classifier trained in this tab can be scored on at most {held_out} digits (the held-out ones; it trained on the rest)"
        )));
    }
    if count == 0 || count > MAX_CHUNK || start + count > n_digits {
        return Err(invalid(format!(
            "evaluation: chunk {start}..{} must be 1..={MAX_CHUNK} digits inside 0..{n_digits}",
            start + count
        )));
    }
    let attack = parse_attack(kind, eps, target)?;
    let (b, m) = (backend()?, model(which)?);
    let idx: Vec<usize> = (start..start + count)
        .map(|j| eval_index(j, n_digits, page.len()))
        .collect();
    let (xs, ys) = page.gather(&idx).map_err(err)?;
    let x = b.upload(&[count, 1, SIDE, SIDE], &xs).map_err(err)?;
    let mut r = EvalResult::default();
    let attack = (eps > 0.0).then_some(&attack);
    attack::evaluate_batch(b.as_ref(), m.as_ref(), &x, &ys, attack, &mut r)
        .await
        .map_err(err)?;
    let o = Object::new();
    set(&o, "n", r.n as u32);
    set(&o, "correct", r.correct as u32);
    set(&o, "confidence_sum", r.confidence_sum);
    Ok(o.into())
}

/// Start (or restart) training a classifier from scratch in the tab. `size`: "small" (16, 32,
/// 32 channels, 64 hidden: fast) or "full" (the shipped model's 32, 64, 64, 128).
/// `adversarial`: train on alpha C(x) + (1 - alpha) C(x~) with x~ the RS-FGSM example at `eps`
/// (random start, as the shipped adversarial model). Resolves to `{parameters, train_digits}`.
#[wasm_bindgen]
#[allow(clippy::too_many_arguments)]
pub fn classifier_train_reset(
    size: &str,
    adversarial: bool,
    alpha: f32,
    eps: f32,
    batch: usize,
    lr: f32,
    seed: u32,
) -> Result<JsValue, JsError> {
    let page = digits()?;
    let config = size_config(size)?;
    if !(1..=256).contains(&batch) {
        return Err(invalid(format!(
            "training: batch must be 1..=256, got {batch}"
        )));
    }
    if !(lr.is_finite() && lr > 0.0 && lr <= 0.1) {
        return Err(invalid(format!(
            "training: learning rate must be in (0, 0.1], got {lr}"
        )));
    }
    if adversarial {
        if !(alpha.is_finite() && (0.0..=1.0).contains(&alpha)) {
            return Err(invalid(format!(
                "training: alpha must be in [0, 1], got {alpha}"
            )));
        }
        Attack::fgsm(eps).validate().map_err(err)?;
    }
    let b = backend()?;
    let model = Classifier::new(b.as_ref(), config, seed as u64).map_err(err)?;
    let parameters: usize = model
        .params()
        .iter()
        .map(|p| p.shape().iter().product::<usize>())
        .sum();
    let seed = seed as u64;
    let order = EpochOrder::new(page.len(), seed);
    let n_train = order.len();
    let trainer = Trainer {
        model: Rc::new(model),
        size: if size == "small" { "small" } else { "full" },
        opt: Adam::new(lr, 0.9, 0.999),
        adversarial: adversarial.then_some((alpha, eps)),
        batch,
        seed,
        step: 0,
        order,
    };
    TAB.with(|t| t.borrow_mut().trainer = Some(Rc::new(RefCell::new(trainer))));
    let o = Object::new();
    set(&o, "parameters", parameters as u32);
    set(&o, "train_digits", n_train as u32);
    Ok(o.into())
}

/// Take `n` training steps (1..=100) on the in-tab classifier. Resolves to `{step, epoch,
/// losses, batch_accuracy}`: the step count so far, the epoch, each step's loss (Float32Array
/// of n), and the accuracy on the last batch after its update.
#[wasm_bindgen]
pub async fn classifier_train_steps(n: usize) -> Result<JsValue, JsError> {
    super::check_steps(n, MAX_STEPS_PER_CALL)?;
    let page = digits()?;
    let b = backend()?;
    let b: &dyn Backend = b.as_ref();
    let trainer = TAB
        .with(|t| t.borrow().trainer.clone())
        .ok_or_else(|| invalid("no classifier to train: reset the trainer first"))?;
    // compute every step with the trainer borrowed, then read the results without it
    let (losses, probs, labels, step, epoch) = {
        let mut tr = trainer
            .try_borrow_mut()
            .map_err(|_| invalid("training is already running"))?;
        let mut losses = Vec::with_capacity(n);
        let mut last = None;
        for _ in 0..n {
            let batch = tr.batch;
            let idx = tr.order.next_batch(batch);
            let (xs, ys) = page.gather(&idx).map_err(err)?;
            let x = b.upload(&[idx.len(), 1, SIDE, SIDE], &xs).map_err(err)?;
            let t = b
                .upload(&[idx.len(), CLASSES], &one_hot(&ys))
                .map_err(err)?;
            let adv = tr.adversarial.map(|(alpha, eps)| AdvTraining {
                eps,
                alpha,
                method: AdvMethod::RandomStart(
                    tr.seed.wrapping_mul(1_000_003).wrapping_add(tr.step as u64),
                ),
            });
            let Trainer { model, opt, .. } = &mut *tr;
            let loss = train_step(b, model.as_ref(), opt, &x, &t, adv.as_ref()).map_err(err)?;
            losses.push(loss);
            tr.step += 1;
            last = Some((x, ys));
        }
        let (x, ys) = last.expect("n >= 1");
        let probs = tr.model.probabilities_tensor(b, &x).map_err(err)?;
        (losses, probs, ys, tr.step, tr.order.epoch)
    };
    // every step's loss and the last batch's probabilities in one read-back
    let mut tensors: Vec<&crate::Tensor> = losses.iter().collect();
    tensors.push(&probs);
    let mut host = b.read_many(&tensors).await.map_err(err)?;
    let p = host
        .pop()
        .ok_or_else(|| invalid("read_many returned no tensors"))?;
    let mut values = Vec::with_capacity(n);
    for v in host.iter().map(|l| l[0]) {
        if !v.is_finite() {
            return Err(invalid(format!("training diverged: the loss is {v} at step {step}; reset with a smaller learning rate")));
        }
        values.push(v);
    }
    let mut r = EvalResult::default();
    r.add_batch(&p, &labels, None);
    let o = Object::new();
    set(&o, "step", step as u32);
    set(&o, "epoch", epoch as u32);
    set(&o, "losses", Float32Array::from(&values[..]));
    set(&o, "batch_accuracy", r.accuracy());
    Ok(o.into())
}
