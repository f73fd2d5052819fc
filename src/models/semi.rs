//! Semi-supervised training of a classifier (lecture part 4: "F(x^) = F(x^ + eps) for unlabelled
//! x^"): virtual adversarial training (Miyato et al. 2015/2017) and its random-noise twin.
//!
//! ```text
//! cost = CE(F(x_l), y_l) + lambda * D(F(x^), F(x^ + r)) [+ w H(F(x^))]
//! D(p, q) = KL(p || q) over the 10 classes, p = F(x^) held constant (no gradient)
//! ```
//! - adversarial r (VAT, one power iteration): d ~ N(0, I) rescaled to L2 norm xi; g = the
//!   gradient of D(F(x^), F(x^ + d)) with respect to d (the tape's); r = eps g / ||g||_2 (L2) or
//!   eps sign(g) (L-inf). r itself is data: no gradient flows through its construction.
//! - noise r: Gaussian noise rescaled to the same L2 norm eps (or eps sign(noise), a random
//!   corner of the same L-inf ball), for comparison.
//! - entropy minimisation (optional): + mean H(F(x^)), pushing unlabelled predictions to be
//!   confident.
//!
//! Everything is a composition of existing ops. With p constant, KL(p || softmax(z)) equals
//! CE(z, p) - H(p), so D's gradient is that of the softmax cross-entropy with soft targets p.
//! The entropy of softmax(z) is recorded as CE(z, uniform) + mean_k z_k - sum_k p_k z_k per row
//! (CE(z, uniform) = logsumexp(z) - mean_k z_k, and H = logsumexp(z) - sum_k p_k z_k), so its
//! gradient flows through both the log-sum-exp and p.

use super::attack::l2_normalize_rows;
use crate::autodiff::{Graph, Var};
use crate::backend::{Backend, Distribution, LossKind, UnaryOp};
use crate::data::mnist::CLASSES;
use crate::nn::{cross_entropy, Module};
use crate::tensor::Tensor;
use crate::{Error, Result};

/// What the unlabelled digits contribute.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Unlabelled {
    /// nothing: labels only
    None,
    /// consistency under random noise of the perturbation's size
    Noise,
    /// consistency under the virtual adversarial direction (VAT)
    Adversarial,
}

/// How the perturbation r is sized.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PerturbNorm {
    /// r = eps g / ||g||_2 per image
    L2,
    /// r = eps sign(g) (L-inf ball, as FGSM)
    Sign,
}

/// The semi-supervised cost's settings.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SemiConfig {
    pub unlabelled: Unlabelled,
    pub norm: PerturbNorm,
    /// size of r: its L2 norm (L2) or per-pixel bound (sign), pixel scale [0, 1]
    pub eps: f32,
    /// L2 norm of the random start d of the power iteration
    pub xi: f32,
    /// weight of the consistency term
    pub lambda: f32,
    /// add the mean entropy of the unlabelled predictions
    pub entropy: bool,
    /// weight of the entropy term when it is on (a schedule may ramp it up from 0, so that it
    /// does not lock in the early, labels-only mistakes)
    pub entropy_weight: f32,
}

impl Default for SemiConfig {
    /// VAT with the L2 norm, eps 2.0 (the pixel-scale MNIST setting of Miyato et al.), xi 1e-1,
    /// lambda 1, no entropy term (weight 1 when turned on).
    fn default() -> Self {
        SemiConfig {
            unlabelled: Unlabelled::Adversarial,
            norm: PerturbNorm::L2,
            eps: 2.0,
            xi: 0.1,
            lambda: 1.0,
            entropy: false,
            entropy_weight: 1.0,
        }
    }
}

impl SemiConfig {
    pub fn validate(&self) -> Result<()> {
        let bad = |what: &str, v: f32| {
            Error::Invalid(format!(
                "semi-supervised: {what} must be > 0 and finite, got {v}"
            ))
        };
        if !(self.eps.is_finite() && self.eps > 0.0) {
            return Err(bad("eps", self.eps));
        }
        if self.norm == PerturbNorm::Sign && self.eps > 1.0 {
            return Err(Error::Invalid(format!(
                "semi-supervised: with the sign norm eps is a per-pixel bound and must be <= 1, got {}",
                self.eps
            )));
        }
        if !(self.xi.is_finite() && self.xi > 0.0) {
            return Err(bad("xi", self.xi));
        }
        if !(self.lambda.is_finite() && self.lambda >= 0.0) {
            return Err(Error::Invalid(format!(
                "semi-supervised: lambda must be >= 0 and finite, got {}",
                self.lambda
            )));
        }
        if !(self.entropy_weight.is_finite() && self.entropy_weight >= 0.0) {
            return Err(Error::Invalid(format!(
                "semi-supervised: the entropy weight must be >= 0 and finite, got {}",
                self.entropy_weight
            )));
        }
        Ok(())
    }
}

/// F(x) = softmax of the model's logits, as data (no gradient, evaluation mode).
pub fn predict(b: &dyn Backend, model: &dyn Module, x: &Tensor) -> Result<Tensor> {
    let mut g = Graph::new(b);
    g.set_grad_enabled(false);
    g.set_training(false);
    let xv = g.constant(x.clone());
    let logits = model.forward(&mut g, xv)?;
    b.softmax(g.value(logits)?)
}

/// CE(F(x + r), p) on the tape (x, r, p given as vars): KL(p || F(x + r)) + H(p), the mean over
/// the batch. Gradients flow to the model's parameters and to `r` when it is an input.
fn consistency(g: &mut Graph<'_>, model: &dyn Module, x: Var, r: Var, p: Var) -> Result<Var> {
    let xr = g.add(x, r)?;
    cross_entropy(g, model, xr, p)
}

/// Mean over rows of the entropy of softmax(logits) (N, K), on the tape (see the module notes).
pub fn entropy(g: &mut Graph<'_>, logits: Var) -> Result<Var> {
    let s = g.shape(logits)?;
    if s.len() != 2 || s[0] == 0 || s[1] == 0 {
        return Err(Error::Shape(format!(
            "entropy: expected logits (N, K), got {s:?}"
        )));
    }
    let (n, k) = (s[0], s[1]);
    let uniform = g.constant(g.backend().fill(&[n, k], 1.0 / k as f32)?);
    let ce_uniform = g.loss(LossKind::SoftmaxCrossEntropy, logits, uniform)?;
    let zsum = g.sum(logits)?;
    let mean_z = g.scale(zsum, 1.0 / (n * k) as f32)?;
    let p = g.softmax(logits)?;
    let pz = g.mul(p, logits)?;
    let pz = g.sum(pz)?;
    let pz = g.scale(pz, 1.0 / n as f32)?;
    let lse = g.add(ce_uniform, mean_z)?;
    g.sub(lse, pz)
}

/// Random noise of the perturbation's size: L2 norm eps per image, or eps sign(noise).
pub fn noise(b: &dyn Backend, shape: &[usize], cfg: &SemiConfig, seed: u64) -> Result<Tensor> {
    let d = b.random(
        shape,
        Distribution::Normal {
            mean: 0.0,
            std: 1.0,
        },
        seed,
    )?;
    sized(b, &d, cfg)
}

/// A direction `d` (N, ...) given the perturbation's size: L2 norm eps per image, or
/// eps sign(d) (L-inf).
fn sized(b: &dyn Backend, d: &Tensor, cfg: &SemiConfig) -> Result<Tensor> {
    match cfg.norm {
        PerturbNorm::L2 => l2_normalize_rows(b, d, cfg.eps),
        PerturbNorm::Sign => b.affine(&b.unary(UnaryOp::Sign, d)?, cfg.eps, 0.0),
    }
}

/// The virtual adversarial perturbation for unlabelled `x` with clean predictions `p`
/// (= `predict(x)`): one power iteration from a random d of L2 norm xi (see the module notes).
pub fn adversarial_direction(
    b: &dyn Backend,
    model: &dyn Module,
    x: &Tensor,
    p: &Tensor,
    cfg: &SemiConfig,
    seed: u64,
) -> Result<Tensor> {
    let n = x.shape().first().copied().unwrap_or(0);
    let d = b.random(
        x.shape(),
        Distribution::Normal {
            mean: 0.0,
            std: 1.0,
        },
        seed,
    )?;
    let d = l2_normalize_rows(b, &d, cfg.xi)?;
    let mut g = Graph::new(b);
    g.set_training(false);
    let xv = g.constant(x.clone());
    let dv = g.input(d);
    let pv = g.constant(p.clone());
    let div = consistency(&mut g, model, xv, dv, pv)?;
    // summed over the batch, so each image's gradient is that of its own divergence
    let total = g.scale(div, n as f32)?;
    g.backward(total)?;
    let grad = g.grad(dv).ok_or_else(|| {
        Error::Invalid("virtual adversarial direction: the model ignores its input".into())
    })?;
    sized(b, &grad, cfg)
}

/// The perturbation r that `cfg` asks for (None for labels only).
pub fn perturbation(
    b: &dyn Backend,
    model: &dyn Module,
    x: &Tensor,
    p: &Tensor,
    cfg: &SemiConfig,
    seed: u64,
) -> Result<Option<Tensor>> {
    Ok(match cfg.unlabelled {
        Unlabelled::None => None,
        Unlabelled::Noise => Some(noise(b, x.shape(), cfg, seed)?),
        Unlabelled::Adversarial => Some(adversarial_direction(b, model, x, p, cfg, seed)?),
    })
}

/// Mean KL(F(x) || F(x + r)) over the batch, as a number (for reports and tests):
/// CE(F(x + r), p) - CE(F(x), p) with p = F(x).
pub fn divergence(b: &dyn Backend, model: &dyn Module, x: &Tensor, r: &Tensor) -> Result<Tensor> {
    let p = predict(b, model, x)?;
    let mut g = Graph::new(b);
    g.set_grad_enabled(false);
    g.set_training(false);
    let xv = g.constant(x.clone());
    let rv = g.constant(r.clone());
    let pv = g.constant(p);
    let cross = consistency(&mut g, model, xv, rv, pv)?;
    let h = cross_entropy(&mut g, model, xv, pv)?;
    let kl = g.sub(cross, h)?;
    Ok(g.value(kl)?.clone())
}

/// The parts of one step's cost, each a [1] tensor (None where the term is off).
pub struct SemiLoss {
    pub total: Var,
    pub labelled: Var,
    pub consistency: Option<Var>,
    pub entropy: Option<Var>,
}

/// Records the semi-supervised cost in `g`: CE on the labelled batch (`x_l`, one-hot `t_l`)
/// plus, on the unlabelled batch `x_u`, lambda * CE(F(x^ + r), F(x^)) (the KL up to a constant)
/// and the entropy term (times its weight) when asked. r is crafted first with the current
/// parameters.
pub fn semi_loss(
    g: &mut Graph<'_>,
    model: &dyn Module,
    x_l: &Tensor,
    t_l: &Tensor,
    x_u: Option<&Tensor>,
    cfg: &SemiConfig,
    seed: u64,
) -> Result<SemiLoss> {
    cfg.validate()?;
    let b = g.backend();
    let xl = g.constant(x_l.clone());
    let tl = g.constant(t_l.clone());
    let labelled = cross_entropy(g, model, xl, tl)?;
    let mut out = SemiLoss {
        total: labelled,
        labelled,
        consistency: None,
        entropy: None,
    };
    let Some(x_u) = x_u else {
        return Ok(out);
    };
    if cfg.unlabelled != Unlabelled::None {
        let p = predict(b, model, x_u)?;
        if let Some(r) = perturbation(b, model, x_u, &p, cfg, seed)? {
            let xv = g.constant(x_u.clone());
            let rv = g.constant(r);
            let pv = g.constant(p);
            let c = consistency(g, model, xv, rv, pv)?;
            let weighted = g.scale(c, cfg.lambda)?;
            out.total = g.add(out.total, weighted)?;
            out.consistency = Some(c);
        }
    }
    if cfg.entropy {
        let xv = g.constant(x_u.clone());
        let logits = model.forward(g, xv)?;
        let h = entropy(g, logits)?;
        let weighted = g.scale(h, cfg.entropy_weight)?;
        out.total = g.add(out.total, weighted)?;
        out.entropy = Some(h);
    }
    Ok(out)
}

/// `per_class` labelled digits of each class among `labels`, drawn by `seed` (the indices, in
/// class order). Errors when a class has too few.
pub fn balanced_subset(labels: &[u8], per_class: usize, seed: u64) -> Result<Vec<usize>> {
    let mut out = Vec::with_capacity(per_class * CLASSES);
    for c in 0..CLASSES as u8 {
        let of_class: Vec<usize> = (0..labels.len()).filter(|&i| labels[i] == c).collect();
        if of_class.len() < per_class {
            return Err(Error::Invalid(format!(
                "{per_class} labelled digits per class asked, but class {c} has {}",
                of_class.len()
            )));
        }
        let mut picked =
            crate::rng::shuffled(of_class, seed.wrapping_mul(31).wrapping_add(c as u64));
        picked.truncate(per_class);
        picked.sort_unstable();
        out.extend(picked);
    }
    Ok(out)
}

/// One off-diagonal cell of a confusion matrix.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Mistake {
    pub truth: usize,
    pub predicted: usize,
    pub count: usize,
}

/// The `k` most frequent (true class, predicted class) mistakes, most frequent first (ties: the
/// lower true class, then the lower predicted class). Labels and predictions pair up by index;
/// classes >= 10 are ignored.
pub fn top_mistakes(labels: &[u8], predicted: &[usize], k: usize) -> Vec<Mistake> {
    let mut counts = [[0usize; CLASSES]; CLASSES];
    for (&t, &p) in labels.iter().zip(predicted) {
        if (t as usize) < CLASSES && p < CLASSES && t as usize != p {
            counts[t as usize][p] += 1;
        }
    }
    let mut out: Vec<Mistake> = (0..CLASSES)
        .flat_map(|t| (0..CLASSES).map(move |p| (t, p)))
        .filter(|&(t, p)| counts[t][p] > 0)
        .map(|(truth, predicted)| Mistake {
            truth,
            predicted,
            count: counts[truth][predicted],
        })
        .collect();
    out.sort_by(|a, b| b.count.cmp(&a.count));
    out.truncate(k);
    out
}

/// One optimizer step on the semi-supervised cost. Returns [total, labelled CE, consistency CE
/// (0 when off), entropy (0 when off)] as [1] tensors on the backend (read them when needed).
#[allow(clippy::too_many_arguments)]
pub fn train_step(
    b: &dyn Backend,
    model: &dyn Module,
    opt: &mut dyn crate::nn::Optimizer,
    x_l: &Tensor,
    t_l: &Tensor,
    x_u: Option<&Tensor>,
    cfg: &SemiConfig,
    seed: u64,
) -> Result<[Tensor; 4]> {
    let mut g = Graph::new(b);
    let l = semi_loss(&mut g, model, x_l, t_l, x_u, cfg, seed)?;
    g.backward(l.total)?;
    opt.step(&g, &model.params())?;
    let zero = || b.zeros(&[1]);
    let value = |v: Option<Var>| -> Result<Tensor> {
        match v {
            Some(v) => Ok(g.value(v)?.clone()),
            None => zero(),
        }
    };
    Ok([
        g.value(l.total)?.clone(),
        g.value(l.labelled)?.clone(),
        value(l.consistency)?,
        value(l.entropy)?,
    ])
}
