//! Dropout (Srivastava et al. 2014), inverted: in training mode each element is kept with
//! probability 1 - p and scaled by 1 / (1 - p), else zeroed; in evaluation mode it is the
//! identity. Composed of existing ops: the mask m = (sign(u - t) + 1) / (2 (1 - p)) is built
//! from the backend's counter-based uniform u (`Backend::random`, the same numbers on the CPU
//! and the GPU), `affine` and `Sign`, and enters the tape as a constant through `Graph::mul`,
//! so the gradient is m * dy. The threshold t sits halfway between two of the uniform's 2^24
//! grid points, so sign(u - t) is never 0.

use std::sync::atomic::{AtomicU64, Ordering};

use crate::autodiff::{Graph, Var};
use crate::backend::{Distribution, UnaryOp};
use crate::error::{Error, Result};

/// The uniform's grid: `rng::uniform01` returns k / 2^24.
const GRID: f32 = 16_777_216.0;

/// Check a dropout rate: 0 <= p < 1.
pub fn check_rate(p: f32) -> Result<()> {
    if (0.0..1.0).contains(&p) {
        Ok(())
    } else {
        Err(Error::Invalid(format!(
            "dropout rate must be in [0, 1), got {p}"
        )))
    }
}

/// Inverted dropout of `x` with rate `p`, mask drawn with `seed` (the same seed gives the same
/// mask); the identity when the graph is in evaluation mode or p = 0.
pub fn dropout(g: &mut Graph<'_>, x: Var, p: f32, seed: u64) -> Result<Var> {
    check_rate(p)?;
    if !g.training() || p == 0.0 {
        return Ok(x);
    }
    let be = g.backend();
    let shape = g.shape(x)?;
    let u = be.random(&shape, Distribution::Uniform { lo: 0.0, hi: 1.0 }, seed)?;
    // u < t is dropped: t = (round(p 2^24) - 1/2) / 2^24, so P(keep) = 1 - round(p 2^24) / 2^24
    let t = ((p * GRID).round() - 0.5) / GRID;
    let s = be.unary(UnaryOp::Sign, &be.affine(&u, 1.0, -t)?)?;
    let keep = 0.5 / (1.0 - p);
    let mask = g.constant(be.affine(&s, keep, keep)?);
    g.mul(x, mask)
}

/// A dropout layer that draws a fresh mask at every forward in training mode: call k uses seed
/// `seed + k` (so a run with the same seed repeats).
pub struct Dropout {
    pub p: f32,
    seed: u64,
    calls: AtomicU64,
}

impl Dropout {
    pub fn new(p: f32, seed: u64) -> Result<Dropout> {
        check_rate(p)?;
        Ok(Dropout {
            p,
            seed,
            calls: AtomicU64::new(0),
        })
    }
    pub fn forward(&self, g: &mut Graph<'_>, x: Var) -> Result<Var> {
        if !g.training() || self.p == 0.0 {
            return Ok(x);
        }
        let k = self.calls.fetch_add(1, Ordering::Relaxed);
        dropout(
            g,
            x,
            self.p,
            self.seed.wrapping_mul(0x9e37_79b9).wrapping_add(k),
        )
    }
}
