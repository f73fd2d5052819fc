//! Training options of the GAN beyond the plain alternating step (issue 20's recipe and issue
//! 19's "improving the discriminator"), each composed of tape ops or backend ops:
//!
//! * one-sided label smoothing: D's target for real digits is `real_label` (e.g. 0.9) instead of 1;
//! * two time-scale learning rates: separate optimizers, set by the caller;
//! * a linear decay of both learning rates over a run (`decayed_lr`), set by the caller;
//! * the minibatch-dispersion feature in D (`gan::minibatch_dispersion`);
//! * an exponential moving average of G's weights for sampling (`ema_update`,
//!   `recalibrate_batchnorm`);
//! * D smoothness (VAT-like consistency, Miyato et al.): D(x) = D(x + r) on real digits, r the
//!   sign of the gradient of the divergence at a random start, as a penalty weighted by `weight`;
//! * FGSM-perturbed real digits mixed with alpha: D's real term is
//!   alpha C(x) + (1 - alpha) C(x~), x~ = x + eps sign(grad_x C(x)) (D's own loss on real).
//!
//! Every gradient (of D's loss wrt its input, of the penalty wrt D's parameters) is the tape's.
//! Pixel budgets (`eps`) are on the [0, 1] pixel scale; G's range is [-1, 1], so they are
//! doubled there.

use crate::autodiff::{Graph, Var};
use crate::backend::{Backend, BinaryOp, Distribution, LossKind, UnaryOp};
use crate::error::{Error, Result};
use crate::nn::Module;
use crate::tensor::Tensor;

use super::gan::{self, Discriminator, GanLoss, Generator, Latent};

/// The learning rate of step `step` (0-based) of a run of `steps` that decays linearly from `lr`
/// at its first step to `lr * end_factor` at its last (`end_factor` 1: constant).
pub fn decayed_lr(lr: f32, end_factor: f32, step: usize, steps: usize) -> f32 {
    if steps <= 1 {
        return lr;
    }
    let t = step.min(steps - 1) as f32 / (steps - 1) as f32;
    lr * (1.0 - (1.0 - end_factor) * t)
}

/// A perturbation budget: `weight` of its term (smoothness) or alpha (FGSM mix), and eps.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Perturbation {
    pub weight: f32,
    /// L-inf budget on the [0, 1] pixel scale
    pub eps: f32,
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Tricks {
    /// D's target for real digits (1 = none; 0.9 = one-sided label smoothing)
    pub real_label: f32,
    /// D smoothness: weight * divergence(D(x), D(x + r))
    pub smooth: Option<Perturbation>,
    /// FGSM real digits: weight = alpha of alpha C(x) + (1 - alpha) C(x~)
    pub fgsm: Option<Perturbation>,
}

impl Default for Tricks {
    fn default() -> Self {
        Tricks {
            real_label: 1.0,
            smooth: None,
            fgsm: None,
        }
    }
}

impl Tricks {
    pub fn validate(&self) -> Result<()> {
        if !(self.real_label > 0.0 && self.real_label <= 1.0) {
            return Err(Error::Invalid(format!(
                "the real label must be in (0, 1], got {}",
                self.real_label
            )));
        }
        if let Some(p) = self.smooth {
            if !(p.weight.is_finite() && p.weight >= 0.0) {
                return Err(Error::Invalid(format!(
                    "smoothness weight must be >= 0, got {}",
                    p.weight
                )));
            }
            check_eps(p.eps)?;
        }
        if let Some(p) = self.fgsm {
            if !(0.0..=1.0).contains(&p.weight) {
                return Err(Error::Invalid(format!(
                    "FGSM alpha must be in [0, 1], got {}",
                    p.weight
                )));
            }
            check_eps(p.eps)?;
        }
        Ok(())
    }
}

fn check_eps(eps: f32) -> Result<()> {
    if !(eps.is_finite() && (0.0..=1.0).contains(&eps)) {
        return Err(Error::Invalid(format!(
            "perturbation eps must be in [0, 1] (pixel scale), got {eps}"
        )));
    }
    Ok(())
}

fn loss_kind(loss: GanLoss) -> LossKind {
    match loss {
        GanLoss::CrossEntropy | GanLoss::Minimax => LossKind::BceWithLogits,
        GanLoss::LeastSquares => LossKind::LeastSquares,
    }
}

/// A constant of D's output shape (N, 1) filled with `v`.
fn filled(g: &mut Graph<'_>, n: usize, v: f32) -> Result<Var> {
    let t = g.backend().fill(&[n, 1], v)?;
    Ok(g.constant(t))
}

/// x + step * sign(grad), clamped to G's range [-1, 1] (backend ops).
fn signed_step(b: &dyn Backend, x: &Tensor, grad: &Tensor, step: f32) -> Result<Tensor> {
    let s = b.unary(UnaryOp::Sign, grad)?;
    let s = b.affine(&s, step, 0.0)?;
    b.clamp(&b.binary(BinaryOp::Add, x, &s)?, -1.0, 1.0)
}

/// FGSM real digits for D: x~ = clamp(x + 2 eps sign(grad_x C_real(D(x))), -1, 1), where
/// C_real is D's loss on real digits (x in [-1, 1]); the step makes D's job harder.
pub fn fgsm_real(
    b: &dyn Backend,
    disc: &Discriminator,
    loss: GanLoss,
    real_label: f32,
    x: &Tensor,
    eps: f32,
) -> Result<Tensor> {
    let n = x.shape()[0];
    let mut g = Graph::new(b);
    let xv = g.input(x.clone());
    let o = disc.forward(&mut g, xv)?;
    let t = filled(&mut g, n, real_label)?;
    let l = g.loss(loss_kind(loss), o, t)?;
    g.backward(l)?;
    let grad = g
        .grad(xv)
        .ok_or_else(|| Error::Invalid("FGSM: no gradient reached the input".into()))?;
    signed_step(b, x, &grad, 2.0 * eps)
}

/// The divergence between D's outputs used by the smoothness term: for cross-entropy, the
/// binary cross-entropy of D(x + r)'s logit against sigmoid(D(x)) (KL plus a constant); for
/// least squares, the squared difference of the scores. `target` is D(x)'s output (a constant).
fn divergence(g: &mut Graph<'_>, loss: GanLoss, out: Var, target: &Tensor) -> Result<Var> {
    let b = g.backend();
    let t = match loss {
        GanLoss::LeastSquares => target.clone(),
        _ => b.unary(UnaryOp::Sigmoid, target)?,
    };
    let tv = g.constant(t);
    g.loss(loss_kind(loss), out, tv)
}

/// The smoothness direction r = 2 eps sign(grad_d div(D(x), D(x + d))) at a random start
/// d = 2 eps sign(N(0, 1)) (VAT's first power-iteration step, in L-inf), and the point x + r
/// clamped to [-1, 1]. `d_x` is D(x)'s output (held constant).
pub fn smooth_point(
    b: &dyn Backend,
    disc: &Discriminator,
    loss: GanLoss,
    x: &Tensor,
    d_x: &Tensor,
    eps: f32,
    seed: u64,
) -> Result<Tensor> {
    let noise = b.random(
        x.shape(),
        Distribution::Normal {
            mean: 0.0,
            std: 1.0,
        },
        seed,
    )?;
    let start = signed_step(b, x, &noise, 2.0 * eps)?;
    let mut g = Graph::new(b);
    let xv = g.input(start.clone());
    let o = disc.forward(&mut g, xv)?;
    let l = divergence(&mut g, loss, o, d_x)?;
    g.backward(l)?;
    let grad = g
        .grad(xv)
        .ok_or_else(|| Error::Invalid("D smoothness: no gradient reached the input".into()))?;
    signed_step(b, x, &grad, 2.0 * eps)
}

/// The perturbed real digits of one D step, data to the tape (nothing flows through their
/// construction): FGSM's x~ and the smoothness term's x + r with D(x) (the term's target).
pub struct DPoints {
    pub adv: Option<Tensor>,
    pub smooth: Option<(Tensor, Tensor)>,
}

/// The perturbed points for `tricks` at D's current parameters (`seed`: the smoothness term's
/// random start). `d_x`: D(x) if already computed, else it is computed here without a tape.
pub fn d_points(
    b: &dyn Backend,
    disc: &Discriminator,
    loss: GanLoss,
    tricks: &Tricks,
    x: &Tensor,
    d_x: Option<&Tensor>,
    seed: u64,
) -> Result<DPoints> {
    let adv = match tricks.fgsm {
        Some(p) => Some(fgsm_real(b, disc, loss, tricks.real_label, x, p.eps)?),
        None => None,
    };
    let smooth = match tricks.smooth {
        Some(p) => {
            let d_x = match d_x {
                Some(t) => t.clone(),
                None => {
                    let mut g = Graph::new(b);
                    g.set_grad_enabled(false);
                    let xv = g.constant(x.clone());
                    let o = disc.forward(&mut g, xv)?;
                    g.value(o)?.clone()
                }
            };
            Some((smooth_point(b, disc, loss, x, &d_x, p.eps, seed)?, d_x))
        }
        None => None,
    };
    Ok(DPoints { adv, smooth })
}

/// D's loss with the tricks on one tape, for real `x` and generated `fake` (constants in
/// [-1, 1]); returns (loss, D(x), D(fake)). `seed` draws the smoothness term's random start.
#[allow(clippy::too_many_arguments)]
pub fn d_loss_with(
    g: &mut Graph<'_>,
    disc: &Discriminator,
    loss: GanLoss,
    tricks: &Tricks,
    x: &Tensor,
    fake: Tensor,
    seed: u64,
) -> Result<(Var, Var, Var)> {
    d_loss_at(g, disc, loss, tricks, x, fake, None, seed)
}

/// `d_loss_with` on given perturbed points (`points`; None: built here from D's current
/// parameters, reusing this tape's D(x)). With fixed points this is what the tape
/// differentiates, so finite differences can check it.
#[allow(clippy::too_many_arguments)]
pub fn d_loss_at(
    g: &mut Graph<'_>,
    disc: &Discriminator,
    loss: GanLoss,
    tricks: &Tricks,
    x: &Tensor,
    fake: Tensor,
    points: Option<&DPoints>,
    seed: u64,
) -> Result<(Var, Var, Var)> {
    let b = g.backend();
    let n = x.shape()[0];
    let kind = loss_kind(loss);
    let xv = g.constant(x.clone());
    let fv = g.constant(fake);
    let real_out = disc.forward(g, xv)?;
    let fake_out = disc.forward(g, fv)?;
    let built;
    let points = match points {
        Some(p) => p,
        None => {
            let d_x = g.value(real_out)?.clone();
            built = d_points(b, disc, loss, tricks, x, Some(&d_x), seed)?;
            &built
        }
    };
    let one = filled(g, n, tricks.real_label)?;
    let zero = filled(g, g.shape(fake_out)?[0], 0.0)?;
    let mut lr = g.loss(kind, real_out, one)?;
    if let (Some(p), Some(xt)) = (tricks.fgsm, &points.adv) {
        let xtv = g.constant(xt.clone());
        let adv = disc.forward(g, xtv)?;
        let la = g.loss(kind, adv, one)?;
        let (a, c) = (g.scale(lr, p.weight)?, g.scale(la, 1.0 - p.weight)?);
        lr = g.add(a, c)?;
    }
    let lf = g.loss(kind, fake_out, zero)?;
    let mut total = g.add(lr, lf)?;
    if let (Some(p), Some((xr, d_x))) = (tricks.smooth, &points.smooth) {
        let xrv = g.constant(xr.clone());
        let o = disc.forward(g, xrv)?;
        let div = divergence(g, loss, o, d_x)?;
        let term = g.scale(div, p.weight)?;
        total = g.add(total, term)?;
    }
    Ok((total, real_out, fake_out))
}

/// The smoothness divergence between D(x) and D(x'), a one-element tensor (for tests).
pub fn smoothness_divergence(
    b: &dyn Backend,
    disc: &Discriminator,
    loss: GanLoss,
    x: &Tensor,
    x2: &Tensor,
) -> Result<Tensor> {
    let mut g = Graph::new(b);
    g.set_grad_enabled(false);
    let xv = g.constant(x.clone());
    let o = disc.forward(&mut g, xv)?;
    let d_x = g.value(o)?.clone();
    let x2v = g.constant(x2.clone());
    let o2 = disc.forward(&mut g, x2v)?;
    let div = divergence(&mut g, loss, o2, &d_x)?;
    Ok(g.value(div)?.clone())
}

/// A copy of `gen` (same shape, same values) to hold the moving average of its weights.
pub fn ema_copy(b: &dyn Backend, gen: &Generator) -> Result<Generator> {
    let ema = Generator::new(b, gen.config, 0)?;
    for (e, w) in ema.state().iter().zip(gen.state()) {
        b.assign(e.value(), w.value())?;
    }
    Ok(ema)
}

/// ema <- decay * ema + (1 - decay) * gen, for every parameter (and BatchNorm buffer, though
/// `recalibrate_batchnorm` recomputes those before the average is used).
pub fn ema_update(b: &dyn Backend, ema: &Generator, gen: &Generator, decay: f32) -> Result<()> {
    if !(0.0..1.0).contains(&decay) {
        return Err(Error::Invalid(format!(
            "EMA decay must be in [0, 1), got {decay}"
        )));
    }
    for (e, w) in ema.state().iter().zip(gen.state()) {
        let a = b.affine(e.value(), decay, 0.0)?;
        let c = b.affine(w.value(), 1.0 - decay, 0.0)?;
        b.assign(e.value(), &b.binary(BinaryOp::Add, &a, &c)?)?;
    }
    Ok(())
}

/// The decay of an average's `updates`-th update (0-based) with warm-up: min(decay, (1 + t) /
/// (10 + t)), so a fresh average follows G closely at first instead of holding its random
/// start for ~1 / (1 - decay) steps (the tab averages from step 0 and shows it at once).
pub fn ema_decay_at(decay: f32, updates: usize) -> f32 {
    let t = updates as f32;
    decay.min((1.0 + t) / (10.0 + t))
}

/// BatchNorm running statistics that match a generator's (averaged) weights: exact averages
/// over `batches` forward passes in training mode over fresh z, without a tape
/// (`nn::recalibrate_batchnorm`; the statistics of averaged weights are not the average of the
/// statistics).
pub fn recalibrate_batchnorm(
    b: &dyn Backend,
    gen: &Generator,
    dist: Latent,
    batch: usize,
    batches: usize,
    seed: u64,
) -> Result<()> {
    let bns = gen.batchnorms();
    if bns.is_empty() {
        return Ok(());
    }
    crate::nn::recalibrate_batchnorm(b, &bns, batches, |k| {
        let z = gan::sample_z(batch, gen.config.latent, dist, seed.wrapping_add(k as u64));
        let mut g = Graph::new(b);
        g.set_grad_enabled(false);
        let zv = g.constant(b.upload(&[batch, gen.config.latent], &z)?);
        gen.forward(&mut g, zv)?;
        Ok(())
    })
}
