//! Adversarial examples (Goodfellow et al. 2014) and adversarial training, on any classifier
//! `Module` whose forward maps images in [0, 1] to logits.
//!
//! - FGSM: x~ = clip(x + eps sign(grad_x C(x, y)), 0, 1), one step.
//! - Gradient ascent (the lecture's first form, before sign() bounds ||x~ - x||_inf):
//!   x~ = clip(x + eps_2 g / ||g||_2, 0, 1) per image, g = grad_x C(x, y). Its L2 budget eps_2
//!   is eps * sqrt(pixels), the L2 norm of an FGSM step of the same eps, so both curves share
//!   one eps axis.
//! - Iterative FGSM (Kurakin et al.): `steps` signed steps of `step_size`, each followed by
//!   projection onto the L-inf ball of radius eps around x and onto [0, 1]. PGD (Madry et al.
//!   2018) is the same walk from a uniformly random point of the ball; evaluated with several
//!   restarts, an image counts as robust only if every restart fails on it.
//! - Targeted variants descend the loss of a chosen class instead of ascending the true one's.
//! - Adversarial training: alpha C(x) + (1 - alpha) C(x~), x~ the FGSM, RS-FGSM or PGD example
//!   of the current parameters, treated as data (no gradient flows through its construction).
//!
//! The input gradient is the tape's (`Graph::input` + `backward`): no hand-written backprop.
//! Every step runs on the backend's ops (sign, affine, add, clamp), so the same code runs on the
//! CPU and the GPU.

use crate::autodiff::{Graph, Var};
use crate::backend::{Backend, BinaryOp, UnaryOp};
use crate::data::mnist::{one_hot, CLASSES};
use crate::nn::{cross_entropy, Module};
use crate::tensor::Tensor;
use crate::{Error, Result};

/// Which attack.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum AttackKind {
    Fgsm,
    /// One step along the L2-normalised gradient, L2 norm eps * sqrt(pixels).
    GradientL2,
    /// Iterative FGSM, or PGD when `random_start` holds a seed: the walk starts at a uniformly
    /// random point of the eps ball; `restarts` such walks are tried in an evaluation.
    Iterative {
        steps: usize,
        step_size: f32,
        random_start: Option<u64>,
        restarts: usize,
    },
}

/// An attack with its budget eps (L-inf, pixel scale [0, 1]) and optionally a target class.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Attack {
    pub kind: AttackKind,
    pub eps: f32,
    /// Some(class): push every image toward this class; None: away from its true label.
    pub target: Option<u8>,
}

impl Attack {
    pub fn fgsm(eps: f32) -> Attack {
        Attack {
            kind: AttackKind::Fgsm,
            eps,
            target: None,
        }
    }
    /// Gradient ascent x + eps sqrt(pixels) g / ||g||_2 (see the module notes).
    pub fn gradient_l2(eps: f32) -> Attack {
        Attack {
            kind: AttackKind::GradientL2,
            eps,
            target: None,
        }
    }
    /// Iterative attack with the common step size 2.5 eps / steps (Madry et al.), so the walk
    /// can reach the ball's surface and move along it.
    pub fn iterative(eps: f32, steps: usize) -> Attack {
        let step_size = 2.5 * eps / steps.max(1) as f32;
        Attack {
            kind: AttackKind::Iterative {
                steps,
                step_size,
                random_start: None,
                restarts: 1,
            },
            eps,
            target: None,
        }
    }
    /// PGD: the iterative attack from `restarts` random starts in the eps ball (seeded).
    pub fn pgd(eps: f32, steps: usize, restarts: usize, seed: u64) -> Attack {
        let step_size = 2.5 * eps / steps.max(1) as f32;
        Attack {
            kind: AttackKind::Iterative {
                steps,
                step_size,
                random_start: Some(seed),
                restarts,
            },
            eps,
            target: None,
        }
    }
    /// How many perturbations an evaluation tries per image (the worst counts).
    pub fn restarts(&self) -> usize {
        match self.kind {
            AttackKind::Iterative { restarts, .. } => restarts,
            _ => 1,
        }
    }
    pub fn targeted(self, class: u8) -> Attack {
        Attack {
            target: Some(class),
            ..self
        }
    }

    pub fn validate(&self) -> Result<()> {
        check_eps(self.eps)?;
        if let AttackKind::Iterative {
            steps,
            step_size,
            restarts,
            ..
        } = self.kind
        {
            if restarts == 0 || restarts > 100 {
                return Err(Error::Invalid(format!(
                    "iterative attack: restarts must be in 1..=100, got {restarts}"
                )));
            }
            if steps == 0 || steps > 10_000 {
                return Err(Error::Invalid(format!(
                    "iterative attack: steps must be in 1..=10000, got {steps}"
                )));
            }
            if !(step_size.is_finite() && step_size >= 0.0) {
                return Err(Error::Invalid(format!(
                    "iterative attack: step size must be >= 0, got {step_size}"
                )));
            }
        }
        if let Some(c) = self.target {
            if c as usize >= CLASSES {
                return Err(Error::Invalid(format!(
                    "targeted attack: class {c} is not a digit 0..9"
                )));
            }
        }
        Ok(())
    }
}

fn check_eps(eps: f32) -> Result<()> {
    if !(eps.is_finite() && (0.0..=1.0).contains(&eps)) {
        return Err(Error::Invalid(format!(
            "attack: eps must be in [0, 1] (pixel scale), got {eps}"
        )));
    }
    Ok(())
}

/// d C(x, t) / d x for every image, with the loss summed over the batch so that each image's
/// gradient is that of its own loss (the mean would scale all by 1/N). Returns (gradient,
/// mean loss [1]). `t` holds one-hot (or soft) target rows (N, 10).
pub fn input_gradient(
    b: &dyn Backend,
    model: &dyn Module,
    x: &Tensor,
    t: &Tensor,
) -> Result<(Tensor, Tensor)> {
    let n = x.shape().first().copied().unwrap_or(0);
    let mut g = Graph::new(b);
    g.set_training(false);
    let xv = g.input(x.clone());
    let tv = g.constant(t.clone());
    let loss = cross_entropy(&mut g, model, xv, tv)?;
    let total = g.scale(loss, n as f32)?;
    g.backward(total)?;
    let grad = g.grad(xv).ok_or_else(|| {
        Error::Invalid("attack: the model's output does not depend on its input".into())
    })?;
    Ok((grad, g.value(loss)?.clone()))
}

/// x' = clip(x + step sign(grad), 0, 1), then (with `ball = Some((x0, eps))`) projected onto
/// [x0 - eps, x0 + eps] before the [0, 1] clip. A negative `step` descends.
fn signed_step(
    b: &dyn Backend,
    x: &Tensor,
    grad: &Tensor,
    step: f32,
    ball: Option<(&Tensor, f32)>,
) -> Result<Tensor> {
    let s = b.unary(UnaryOp::Sign, grad)?;
    let delta = b.affine(&s, step, 0.0)?;
    let mut y = b.binary(BinaryOp::Add, x, &delta)?;
    if let Some((x0, eps)) = ball {
        let d = b.binary(BinaryOp::Sub, &y, x0)?;
        let d = b.clamp(&d, -eps, eps)?;
        y = b.binary(BinaryOp::Add, x0, &d)?;
    }
    b.clamp(&y, 0.0, 1.0)
}

/// `scale * v_i / ||v_i||_2` for every sample i of `v` (N, ...): each row rescaled to L2 norm
/// `scale` (a zero row stays zero). Composed from existing ops, so it runs on both backends:
/// the squared norms are one matmul against ones, and the division by their square root is
/// BatchNorm's evaluation rule with one "channel" per sample, mean 0, variance ||v_i||^2 and
/// gamma = scale: gamma (v - 0) / sqrt(||v_i||^2 + tiny). Used outside the tape (the
/// perturbations it makes are data, not differentiated through).
pub fn l2_normalize_rows(b: &dyn Backend, v: &Tensor, scale: f32) -> Result<Tensor> {
    let shape = v.shape().to_vec();
    let n = shape.first().copied().unwrap_or(0);
    let k = v.numel() / n.max(1);
    if n == 0 || k == 0 {
        return Err(Error::Shape(format!(
            "l2_normalize_rows: empty input {shape:?}"
        )));
    }
    let rows = v.reshape(&[n, k])?;
    let sq = b.unary(UnaryOp::Square, &rows)?;
    let ones = b.fill(&[k, 1], 1.0)?;
    let norms2 = b.matmul(&sq, &ones, false, false)?.reshape(&[n])?;
    let zeros = b.zeros(&[n])?;
    let gamma = b.fill(&[n], scale)?;
    // tiny keeps a zero row at zero instead of 0/0; far below any squared gradient norm here
    let y = b.batchnorm2d_eval(
        &v.reshape(&[1, n, k, 1])?,
        &gamma,
        &zeros,
        &zeros,
        &norms2,
        1e-30,
    )?;
    y.reshape(&shape)
}

/// Gradient ascent with L2 budget `l2`: clip(x + l2 g / ||g||_2, 0, 1) per image, g the
/// gradient of C(x, t) (a negative `l2` descends, for targeted use).
pub fn gradient_ascent_l2(
    b: &dyn Backend,
    model: &dyn Module,
    x: &Tensor,
    t: &Tensor,
    l2: f32,
) -> Result<Tensor> {
    if !l2.is_finite() {
        return Err(Error::Invalid(format!(
            "gradient ascent: the L2 budget must be finite, got {l2}"
        )));
    }
    let (grad, _) = input_gradient(b, model, x, t)?;
    let step = l2_normalize_rows(b, &grad, l2)?;
    b.clamp(&b.binary(BinaryOp::Add, x, &step)?, 0.0, 1.0)
}

/// The L2 budget of the gradient-ascent attack at pixel-scale `eps` for images of `x`'s shape:
/// eps * sqrt(pixels per image), the L2 norm of an FGSM step that moves every pixel.
pub fn l2_budget(x: &Tensor, eps: f32) -> f32 {
    let n = x.shape().first().copied().unwrap_or(1).max(1);
    eps * ((x.numel() / n) as f32).sqrt()
}

/// FGSM: clip(x + eps sign(grad_x C(x, y)), 0, 1); `t` one-hot rows of the true labels.
pub fn fgsm(
    b: &dyn Backend,
    model: &dyn Module,
    x: &Tensor,
    t: &Tensor,
    eps: f32,
) -> Result<Tensor> {
    check_eps(eps)?;
    let (grad, _) = input_gradient(b, model, x, t)?;
    signed_step(b, x, &grad, eps, None)
}

/// Targeted FGSM: clip(x - eps sign(grad_x C(x, target)), 0, 1): one step down the target's loss.
pub fn fgsm_targeted(
    b: &dyn Backend,
    model: &dyn Module,
    x: &Tensor,
    target: &Tensor,
    eps: f32,
) -> Result<Tensor> {
    check_eps(eps)?;
    let (grad, _) = input_gradient(b, model, x, target)?;
    signed_step(b, x, &grad, -eps, None)
}

/// Iterative FGSM / PGD: `steps` signed steps of `step_size` (up the loss of `t`, or down it
/// when `targeted`), each projected onto the eps ball around x and onto [0, 1]. The walk starts
/// at x, or (PGD, `random_start = Some(seed)`) at a uniformly random point of the ball.
#[allow(clippy::too_many_arguments)]
pub fn iterative(
    b: &dyn Backend,
    model: &dyn Module,
    x: &Tensor,
    t: &Tensor,
    eps: f32,
    steps: usize,
    step_size: f32,
    targeted: bool,
    random_start: Option<u64>,
) -> Result<Tensor> {
    Attack {
        kind: AttackKind::Iterative {
            steps,
            step_size,
            random_start,
            restarts: 1,
        },
        eps,
        target: None,
    }
    .validate()?;
    let step = if targeted { -step_size } else { step_size };
    let mut xa = match random_start {
        None => x.clone(),
        Some(seed) => random_point(b, x, eps, seed)?,
    };
    for _ in 0..steps {
        let (grad, _) = input_gradient(b, model, &xa, t)?;
        xa = signed_step(b, &xa, &grad, step, Some((x, eps)))?;
    }
    Ok(xa)
}

/// Adversarial images for `x` (N, 1, H, W) with true `labels` under `attack`.
pub fn perturb(
    b: &dyn Backend,
    model: &dyn Module,
    x: &Tensor,
    labels: &[u8],
    attack: &Attack,
) -> Result<Tensor> {
    perturb_restart(b, model, x, labels, attack, 0)
}

/// `perturb` with the random start of restart number `restart` (attacks without a random
/// start give the same images for every restart).
pub fn perturb_restart(
    b: &dyn Backend,
    model: &dyn Module,
    x: &Tensor,
    labels: &[u8],
    attack: &Attack,
    restart: usize,
) -> Result<Tensor> {
    attack.validate()?;
    let n = x.shape().first().copied().unwrap_or(0);
    if labels.len() != n {
        return Err(Error::Shape(format!(
            "attack: {} labels for a batch of {n} images",
            labels.len()
        )));
    }
    if attack.eps == 0.0 {
        return Ok(x.clone());
    }
    let (rows, targeted) = match attack.target {
        Some(c) => (one_hot(&vec![c; n]), true),
        None => (one_hot(labels), false),
    };
    let t = b.upload(&[n, CLASSES], &rows)?;
    match (attack.kind, targeted) {
        (AttackKind::Fgsm, false) => fgsm(b, model, x, &t, attack.eps),
        (AttackKind::Fgsm, true) => fgsm_targeted(b, model, x, &t, attack.eps),
        (AttackKind::GradientL2, targeted) => {
            let l2 = l2_budget(x, attack.eps);
            gradient_ascent_l2(b, model, x, &t, if targeted { -l2 } else { l2 })
        }
        (
            AttackKind::Iterative {
                steps,
                step_size,
                random_start,
                ..
            },
            targeted,
        ) => {
            let start = random_start.map(|s| restart_seed(s, restart));
            iterative(
                b, model, x, &t, attack.eps, steps, step_size, targeted, start,
            )
        }
    }
}

fn restart_seed(seed: u64, restart: usize) -> u64 {
    seed.wrapping_mul(0x9E37_79B9_7F4A_7C15)
        .wrapping_add(restart as u64)
}

/// A uniformly random point of the L-inf ball of radius eps around x, clipped to [0, 1].
fn random_point(b: &dyn Backend, x: &Tensor, eps: f32, seed: u64) -> Result<Tensor> {
    let noise = b.random(
        x.shape(),
        crate::backend::Distribution::Uniform { lo: -eps, hi: eps },
        seed,
    )?;
    b.clamp(&b.binary(BinaryOp::Add, x, &noise)?, 0.0, 1.0)
}

/// RS-FGSM (Wong, Rice & Kolter 2020, "Fast is better than free"): start at a uniformly random
/// point of the eps ball, take one signed step of 1.25 eps, project back onto the ball and
/// [0, 1]. Training on plain FGSM at a large eps can overfit to it "catastrophically": the
/// model learns to mask its gradient, FGSM stops working while iterative attacks succeed; the
/// random start prevents that at the cost of one random tensor per step.
pub fn fgsm_random_start(
    b: &dyn Backend,
    model: &dyn Module,
    x: &Tensor,
    t: &Tensor,
    eps: f32,
    seed: u64,
) -> Result<Tensor> {
    check_eps(eps)?;
    let x0 = random_point(b, x, eps, seed)?;
    let (grad, _) = input_gradient(b, model, &x0, t)?;
    signed_step(b, &x0, &grad, 1.25 * eps, Some((x, eps)))
}

/// How adversarial training crafts its examples.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum AdvMethod {
    /// plain FGSM (Goodfellow et al.)
    Fgsm,
    /// RS-FGSM with this step's seed (Wong et al. 2020)
    RandomStart(u64),
    /// PGD (Madry et al. 2018): `steps` signed steps of `step_size` from a random start
    /// (this step's seed) in the eps ball
    Pgd {
        steps: usize,
        step_size: f32,
        seed: u64,
    },
}

/// Adversarial training's settings for one step.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct AdvTraining {
    /// the attack's budget (pixel scale)
    pub eps: f32,
    /// weight of the clean loss: alpha C(x) + (1 - alpha) C(x~)
    pub alpha: f32,
    pub method: AdvMethod,
}

/// alpha C(x) + (1 - alpha) C(x~) recorded in `g` (x~ given; gradients flow to the parameters
/// through both terms).
pub fn adversarial_loss(
    g: &mut Graph<'_>,
    model: &dyn Module,
    x: Var,
    x_adv: Var,
    t: Var,
    alpha: f32,
) -> Result<Var> {
    if !(alpha.is_finite() && (0.0..=1.0).contains(&alpha)) {
        return Err(Error::Invalid(format!(
            "adversarial loss: alpha must be in [0, 1], got {alpha}"
        )));
    }
    let adv = cross_entropy(g, model, x_adv, t)?;
    if alpha == 0.0 {
        // Madry et al.'s objective: the clean term would only be computed to be multiplied by 0
        return Ok(adv);
    }
    let clean = cross_entropy(g, model, x, t)?;
    let a = g.scale(clean, alpha)?;
    let c = g.scale(adv, 1.0 - alpha)?;
    g.add(a, c)
}

/// The adversarial-training objective for a batch: crafts x~ (FGSM, RS-FGSM or PGD) with the
/// current parameters (in separate graphs), then records alpha C(x) + (1 - alpha) C(x~) in `g`.
pub fn adversarial_training_loss(
    g: &mut Graph<'_>,
    model: &dyn Module,
    x: &Tensor,
    t: &Tensor,
    cfg: &AdvTraining,
) -> Result<Var> {
    let b = g.backend();
    let x_adv = match cfg.method {
        AdvMethod::Fgsm => fgsm(b, model, x, t, cfg.eps)?,
        AdvMethod::RandomStart(seed) => fgsm_random_start(b, model, x, t, cfg.eps, seed)?,
        AdvMethod::Pgd {
            steps,
            step_size,
            seed,
        } => iterative(b, model, x, t, cfg.eps, steps, step_size, false, Some(seed))?,
    };
    let xv = g.constant(x.clone());
    let xa = g.constant(x_adv);
    let tv = g.constant(t.clone());
    adversarial_loss(g, model, xv, xa, tv, cfg.alpha)
}

/// Accuracy and confidence of a classifier on a labelled set, optionally under attack.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct EvalResult {
    pub n: usize,
    pub correct: usize,
    /// sum over images of the probability of the predicted class
    pub confidence_sum: f64,
    /// the same, over the misclassified images only
    pub wrong_confidence_sum: f64,
    /// images classified as the attack's target class (targeted attacks)
    pub target_hits: usize,
}

impl EvalResult {
    pub fn accuracy(&self) -> f64 {
        self.correct as f64 / self.n.max(1) as f64
    }
    pub fn error(&self) -> f64 {
        1.0 - self.accuracy()
    }
    pub fn mean_confidence(&self) -> f64 {
        self.confidence_sum / self.n.max(1) as f64
    }
    /// Mean confidence on the misclassified images (Goodfellow et al. report it), 0 if none.
    pub fn mean_wrong_confidence(&self) -> f64 {
        let wrong = self.n - self.correct;
        if wrong == 0 {
            0.0
        } else {
            self.wrong_confidence_sum / wrong as f64
        }
    }

    /// Add one batch's class probabilities (n, 10) against its labels.
    pub fn add_batch(&mut self, probs: &[f32], labels: &[u8], target: Option<u8>) {
        for (row, &l) in probs.chunks(CLASSES).zip(labels) {
            let (pred, conf) =
                row.iter().enumerate().fold(
                    (0, f32::MIN),
                    |best, (k, &p)| if p > best.1 { (k, p) } else { best },
                );
            self.n += 1;
            self.confidence_sum += conf as f64;
            if pred == l as usize {
                self.correct += 1;
            } else {
                self.wrong_confidence_sum += conf as f64;
            }
            if target == Some(pred as u8) {
                self.target_hits += 1;
            }
        }
    }
}

/// Add one batch to `r`: images `x` (n, 1, 28, 28) with `labels`, under `attack` when given.
/// Reads the probabilities asynchronously, so it also runs in wasm (the page's robustness
/// curve and in-tab evaluation use it one chunk per worker call).
pub async fn evaluate_batch(
    b: &dyn Backend,
    model: &dyn Module,
    x: &Tensor,
    labels: &[u8],
    attack: Option<&Attack>,
    r: &mut EvalResult,
) -> Result<()> {
    let target = attack.and_then(|a| a.target);
    let mut worst = Vec::new();
    for restart in 0..attack.map_or(1, Attack::restarts) {
        let xa = match attack {
            Some(a) => perturb_restart(b, model, x, labels, a, restart)?,
            None => x.clone(),
        };
        let probs = b.read(&probabilities(b, model, xa)?).await?;
        crate::finite::check_output("the classifier", &probs)?;
        keep_worst(&mut worst, &probs, labels, target);
    }
    r.add_batch(&worst, labels, target);
    Ok(())
}

/// softmax(model(x)), in evaluation mode and without a tape.
fn probabilities(b: &dyn Backend, model: &dyn Module, x: Tensor) -> Result<Tensor> {
    let mut g = Graph::new(b);
    g.set_grad_enabled(false);
    g.set_training(false);
    let xv = g.constant(x);
    let logits = model.forward(&mut g, xv)?;
    b.softmax(g.value(logits)?)
}

/// Fold one restart's class probabilities (n, 10) into `worst`, keeping per image the row
/// where the attack did best: misclassified (untargeted) or on the target before anything
/// else, then the lowest probability of the true label (or the highest of the target).
fn keep_worst(worst: &mut Vec<f32>, probs: &[f32], labels: &[u8], target: Option<u8>) {
    if worst.is_empty() {
        worst.extend_from_slice(probs);
        return;
    }
    let score = |row: &[f32], label: u8| -> (bool, f32) {
        let pred = argmax(row);
        match target {
            Some(c) => (pred == c as usize, row[c as usize]),
            None => (pred != label as usize, -row[label as usize]),
        }
    };
    for ((w, p), &l) in worst
        .chunks_mut(CLASSES)
        .zip(probs.chunks(CLASSES))
        .zip(labels)
    {
        if score(p, l) > score(w, l) {
            w.copy_from_slice(p);
        }
    }
}

/// The index of the largest value (the first of equals): the predicted class of a row.
pub fn argmax(row: &[f32]) -> usize {
    row.iter()
        .enumerate()
        .fold(
            (0, f32::MIN),
            |best, (k, &p)| if p > best.1 { (k, p) } else { best },
        )
        .0
}

/// Evaluate `model` on `images` (n * 784 values in [0, 1]) with `labels`, in batches, under
/// `attack` when given (natively: blocks on the reads).
#[cfg(not(target_arch = "wasm32"))]
pub fn evaluate(
    b: &dyn Backend,
    model: &dyn Module,
    images: &[f32],
    labels: &[u8],
    batch: usize,
    attack: Option<&Attack>,
    mut progress: impl FnMut(usize),
) -> Result<EvalResult> {
    use crate::data::mnist::{PIXELS, SIDE};
    if batch == 0 || images.len() != labels.len() * PIXELS {
        return Err(Error::Invalid(format!(
            "evaluate: {} pixel values for {} labels (batch {batch})",
            images.len(),
            labels.len()
        )));
    }
    let mut r = EvalResult::default();
    for (xs, ys) in images.chunks(batch * PIXELS).zip(labels.chunks(batch)) {
        let x = b.upload(&[ys.len(), 1, SIDE, SIDE], xs)?;
        pollster::block_on(evaluate_batch(b, model, &x, ys, attack, &mut r))?;
        progress(r.n);
    }
    Ok(r)
}
