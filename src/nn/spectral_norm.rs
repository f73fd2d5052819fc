//! Spectral normalisation of a weight (Miyato et al. 2018): W_sn = W / sigma(W), sigma the
//! largest singular value of W seen as a matrix (out, rest), estimated by power iteration.
//!
//! As in the paper's implementation, the vectors u (out) and v (rest) live outside the tape and
//! are constants to it: `power_iteration` takes one step per training step (v = W^T u / |W^T u|,
//! u = W v / |W v|) and persists them (saved with the weights as buffers, so a continued run
//! keeps its estimate). On the tape sigma = u^T W v, so the gradient of W / sigma includes the
//! term through sigma; 1 / sigma is `Graph::reciprocal`, and the division of every element is a
//! matmul of the flattened weight (numel, 1) by that (1, 1) scalar.
//!
//! The two vector norms of a power-iteration step are taken on the host (the tape has no sqrt),
//! so this is native only (the CLI); in the browser `new` and `power_iteration` are errors.

use crate::autodiff::{Graph, Param, Var};
use crate::backend::Backend;
use crate::error::{Error, Result};
use crate::rng;

/// The persistent power-iteration vectors of one normalised weight.
pub struct SpectralNorm {
    /// (out,) left singular vector estimate
    pub u: Param,
    /// (rest,) right singular vector estimate
    pub v: Param,
}

/// Rows and columns of a weight seen as a matrix: (shape[0], product of the rest).
fn matrix_dims(w: &Param) -> Result<(usize, usize)> {
    let s = w.shape();
    if s.len() < 2 {
        return Err(Error::Shape(format!(
            "spectral norm of {}: expected a weight of rank >= 2, got {s:?}",
            w.name()
        )));
    }
    Ok((s[0], s[1..].iter().product()))
}

/// x / |x| on the host (the vectors are short: a layer's rows or columns).
fn normalized(x: &[f32]) -> Vec<f32> {
    let n = x
        .iter()
        .map(|v| (*v as f64) * (*v as f64))
        .sum::<f64>()
        .sqrt();
    let n = n.max(1e-12) as f32;
    x.iter().map(|v| v / n).collect()
}

impl SpectralNorm {
    /// Vectors for weight `w` (named `<w's layer>.sn_u` / `.sn_v`): u drawn from N(0, 1) with
    /// `seed` and normalised, then `iterations` power-iteration steps (>= 1, so v matches u).
    pub fn new(b: &dyn Backend, w: &Param, seed: u64, iterations: usize) -> Result<SpectralNorm> {
        let (out, rest) = matrix_dims(w)?;
        let layer = w.name().strip_suffix(".weight").unwrap_or(w.name());
        let u0: Vec<f32> = (0..out).map(|i| rng::normal(seed, i as u32)).collect();
        let sn = SpectralNorm {
            u: Param::new(format!("{layer}.sn_u"), b.upload(&[out], &normalized(&u0))?),
            v: Param::new(format!("{layer}.sn_v"), b.zeros(&[rest])?),
        };
        for _ in 0..iterations.max(1) {
            sn.power_iteration(b, w)?;
        }
        Ok(sn)
    }

    /// One power-iteration step on W's current value: v = W^T u / |W^T u|, u = W v / |W v|
    /// (backend matmuls; the two norms on the host). Not recorded on any tape.
    #[cfg(target_arch = "wasm32")]
    pub fn power_iteration(&self, _b: &dyn Backend, w: &Param) -> Result<()> {
        Err(Error::Invalid(format!(
            "spectral norm of {}: the power iteration reads vectors back and runs natively only (nnlab train gan --sn)",
            w.name()
        )))
    }
    #[cfg(not(target_arch = "wasm32"))]
    pub fn power_iteration(&self, b: &dyn Backend, w: &Param) -> Result<()> {
        use crate::backend::read_blocking;
        let (out, rest) = matrix_dims(w)?;
        let wm = w.value().reshape(&[out, rest])?;
        let u = self.u.value().reshape(&[1, out])?;
        let wtu = read_blocking(b, &b.matmul(&u, &wm, false, false)?)?;
        let v = b.upload(&[rest], &normalized(&wtu))?;
        b.assign(self.v.value(), &v)?;
        let wv = read_blocking(b, &b.matmul(&wm, &v.reshape(&[rest, 1])?, false, false)?)?;
        b.assign(self.u.value(), &b.upload(&[out], &normalized(&wv))?)?;
        Ok(())
    }

    /// sigma = u^T W v for W's current value (no tape).
    #[cfg(not(target_arch = "wasm32"))]
    pub fn sigma(&self, b: &dyn Backend, w: &Param) -> Result<f32> {
        use crate::backend::read_blocking;
        let mut g = Graph::new(b);
        g.set_grad_enabled(false);
        let wv = g.constant(w.value().clone());
        let s = self.sigma_on(&mut g, wv, w)?;
        Ok(read_blocking(b, g.value(s)?)?[0])
    }

    /// sigma = u^T W v on the tape (1, 1), u and v constants.
    fn sigma_on(&self, g: &mut Graph<'_>, wv: Var, w: &Param) -> Result<Var> {
        let (out, rest) = matrix_dims(w)?;
        let u = g.constant(self.u.value().reshape(&[1, out])?);
        let v = g.constant(self.v.value().reshape(&[rest, 1])?);
        let wm = g.reshape(wv, &[out, rest])?;
        let uw = g.matmul(u, wm, false, false)?; // (1, rest)
        g.matmul(uw, v, false, false) // (1, 1)
    }

    /// W / sigma on the tape, W the parameter `w` (its gradient flows through both).
    pub fn weight(&self, g: &mut Graph<'_>, w: &Param) -> Result<Var> {
        let wv = g.param(w);
        let sigma = self.sigma_on(g, wv, w)?;
        let inv = g.reciprocal(sigma)?;
        let numel = w.value().numel();
        let flat = g.reshape(wv, &[numel, 1])?;
        let scaled = g.matmul(flat, inv, false, false)?; // (numel, 1)
        g.reshape(scaled, w.shape())
    }

    /// u and v (saved with the weights).
    pub fn buffers(&self) -> Vec<&Param> {
        vec![&self.u, &self.v]
    }
}
