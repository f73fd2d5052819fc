//! Seeded parameter initialisation (host-side counter-based streams from `crate::rng`, then one
//! upload), so the same seed gives the same weights on every backend.
//!
//! Fans follow PyTorch's `_calculate_fan_in_and_fan_out`: for a weight of shape
//! (d0, d1, kh, kw), fan_in = d1 * kh * kw and fan_out = d0 * kh * kw (for a Linear (out, in):
//! fan_in = in, fan_out = out). Note that for a transposed-conv weight (Cin, Cout, kh, kw) this
//! gives fan_in = Cout * kh * kw, exactly as PyTorch computes it.

use crate::backend::Backend;
use crate::rng;
use crate::tensor::{numel, Tensor};
use crate::{Error, Result};

#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Init {
    /// He et al.: normal with std = gain / sqrt(fan_in), gain = sqrt(2 / (1 + slope^2));
    /// slope 0 for ReLU, the negative slope for LeakyReLU.
    KaimingNormal {
        slope: f32,
    },
    /// He et al.: uniform in +-gain * sqrt(3 / fan_in).
    KaimingUniform {
        slope: f32,
    },
    /// Glorot & Bengio: uniform in +-gain * sqrt(6 / (fan_in + fan_out)).
    XavierUniform {
        gain: f32,
    },
    /// Glorot & Bengio: normal with std = gain * sqrt(2 / (fan_in + fan_out)).
    XavierNormal {
        gain: f32,
    },
    Normal {
        mean: f32,
        std: f32,
    },
    Uniform {
        lo: f32,
        hi: f32,
    },
    Constant(f32),
}

impl Init {
    /// Kaiming normal for layers followed by a ReLU.
    pub const RELU: Init = Init::KaimingNormal { slope: 0.0 };
}

/// (fan_in, fan_out) of a weight shape, as PyTorch computes them.
pub fn fans(shape: &[usize]) -> Result<(usize, usize)> {
    if shape.len() < 2 {
        return Err(Error::Invalid(format!(
            "init: fan-in/fan-out need a weight of rank >= 2, got {shape:?}"
        )));
    }
    let receptive = numel(&shape[2..]);
    Ok((shape[1] * receptive, shape[0] * receptive))
}

/// The host values of an initialised tensor.
pub fn init_values(shape: &[usize], init: Init, seed: u64) -> Result<Vec<f32>> {
    let n = numel(shape);
    let gain = |slope: f32| (2.0 / (1.0 + slope * slope)).sqrt();
    Ok(match init {
        Init::KaimingNormal { slope } => {
            let (fan_in, _) = fans(shape)?;
            rng::normal_vec(n, 0.0, gain(slope) / (fan_in.max(1) as f32).sqrt(), seed)
        }
        Init::KaimingUniform { slope } => {
            let (fan_in, _) = fans(shape)?;
            let bound = gain(slope) * (3.0 / fan_in.max(1) as f32).sqrt();
            rng::uniform_vec(n, -bound, bound, seed)
        }
        Init::XavierUniform { gain } => {
            let (fi, fo) = fans(shape)?;
            let bound = gain * (6.0 / (fi + fo).max(1) as f32).sqrt();
            rng::uniform_vec(n, -bound, bound, seed)
        }
        Init::XavierNormal { gain } => {
            let (fi, fo) = fans(shape)?;
            rng::normal_vec(n, 0.0, gain * (2.0 / (fi + fo).max(1) as f32).sqrt(), seed)
        }
        Init::Normal { mean, std } => rng::normal_vec(n, mean, std, seed),
        Init::Uniform { lo, hi } => rng::uniform_vec(n, lo, hi, seed),
        Init::Constant(c) => vec![c; n],
    })
}

/// An initialised tensor on `backend`.
pub fn init_tensor(
    backend: &dyn Backend,
    shape: &[usize],
    init: Init,
    seed: u64,
) -> Result<Tensor> {
    backend.upload(shape, &init_values(shape, init, seed)?)
}
