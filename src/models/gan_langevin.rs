//! Discriminator driven latent sampling (Che et al. 2020, "Your GAN is secretly an energy-based
//! model"): a trained D's logit d(x) estimates log p_data(x) / p_G(x) up to a constant, so
//! p_G(G(z)) exp(d(G(z))) is closer to the data, and in latent space that target has the energy
//! E(z) = |z|^2 / 2 - d(G(z)) for a standard-normal prior. Langevin dynamics on E,
//!
//!   z <- z - (eps / 2) grad E(z) + sqrt(eps) xi,   xi ~ N(0, I),
//!
//! move each latent vector towards codes D finds more real, where rejection sampling
//! (`gan_rejection`) can only keep or drop the codes it was given. Neither looks at labels or
//! at the classifier. Every step runs G and D forward and back to z on the backend; z stays
//! there between steps.

use crate::autodiff::Graph;
use crate::backend::{Backend, BinaryOp};
use crate::error::{Error, Result};
use crate::models::gan::{Discriminator, Generator};
use crate::nn::Module;
use crate::rng;
use crate::tensor::Tensor;

/// The checks of `langevin`'s settings, apart from the models (for the CLI and the page to
/// refuse bad settings before anything is loaded).
pub fn check_settings(steps: usize, eps: f32) -> Result<()> {
    if steps > 10_000 {
        return Err(Error::Invalid(format!(
            "latent Langevin: at most 10000 steps, got {steps}"
        )));
    }
    if !(eps.is_finite() && eps > 0.0 && eps <= 1.0) {
        return Err(Error::Invalid(format!(
            "latent Langevin: the step size must be in (0, 1], got {eps}"
        )));
    }
    Ok(())
}

/// `steps` Langevin steps of size `eps` on E(z) = |z|^2 / 2 - d(G(z)) from the latent vectors
/// `z` (N, latent) on the backend, with the noise of step t drawn from `seed` + t. G and D run
/// in inference mode (running BatchNorm statistics, no dropout); their weights get no
/// gradient. Returns the moved latent vectors (N, latent), on the backend.
pub fn langevin(
    b: &dyn Backend,
    gen: &Generator,
    disc: &Discriminator,
    z: &Tensor,
    steps: usize,
    eps: f32,
    seed: u64,
) -> Result<Tensor> {
    check_settings(steps, eps)?;
    let d = gen.config.latent;
    if z.shape().len() != 2 || z.shape()[1] != d {
        return Err(Error::Shape(format!(
            "latent Langevin: z must be (N, {d}), got {:?}",
            z.shape()
        )));
    }
    let n = z.shape()[0];
    let mut z = z.clone();
    for t in 0..steps {
        let mut g = Graph::new(b);
        g.set_training(false);
        g.freeze(&gen.params());
        g.freeze(&disc.params());
        let zv = g.input(z.clone());
        let x = gen.forward(&mut g, zv)?;
        let logit = disc.forward(&mut g, x)?;
        // summed over the batch, so that each z gets the gradient of its own logit
        let total = g.sum(logit)?;
        g.backward(total)?;
        let grad_d = g.grad(zv).ok_or_else(|| {
            Error::Invalid("latent Langevin: D's logit does not depend on z".into())
        })?;
        // z - (eps/2)(z - grad d) + sqrt(eps) xi = (1 - eps/2) z + (eps/2) grad d + sqrt(eps) xi
        let xi = rng::normal_vec(n * d, 0.0, eps.sqrt(), seed.wrapping_add(t as u64));
        let shrunk = b.affine(&z, 1.0 - eps / 2.0, 0.0)?;
        let pulled = b.affine(&grad_d, eps / 2.0, 0.0)?;
        let moved = b.binary(BinaryOp::Add, &shrunk, &pulled)?;
        z = b.binary(BinaryOp::Add, &moved, &b.upload(&[n, d], &xi)?)?;
    }
    Ok(z)
}
