//! Counter-based random tensors on the GPU (shaders/random.wgsl): the same numbers as
//! `crate::rng` on the CPU, element i from counter i whatever the chunking.

use super::context::Shader;
use super::elementwise::run_elementwise;
use super::{GpuBackend, Params};
use crate::backend::*;
use crate::tensor::{non_empty, numel, Tensor};
use crate::{Error, Result};

const SHADER: Shader = Shader {
    name: "random",
    source: include_str!("../../shaders/random.wgsl"),
};

pub fn random(be: &GpuBackend, shape: &[usize], dist: Distribution, seed: u64) -> Result<Tensor> {
    non_empty(shape, "random")?;
    let n = numel(shape);
    if n > u32::MAX as usize {
        return Err(Error::Invalid(format!(
            "random: {n} elements exceed the 2^32 counters of one stream"
        )));
    }
    let (entry, a, b) = match dist {
        Distribution::Uniform { lo, hi } => {
            if !lo.is_finite() || !hi.is_finite() || lo > hi {
                return Err(Error::Invalid(format!(
                    "random: uniform bounds must be finite with lo <= hi (got {lo}, {hi})"
                )));
            }
            ("random_uniform", lo, hi)
        }
        Distribution::Normal { mean, std } => {
            if !mean.is_finite() || !std.is_finite() || std < 0.0 {
                return Err(Error::Invalid(format!(
                    "random: normal needs a finite mean and std >= 0 (got {mean}, {std})"
                )));
            }
            ("random_normal", mean, std)
        }
    };
    let out = be.empty(shape)?;
    let ob = out.gpu_buffer("random")?;
    let (lo32, hi32) = (seed as u32 as usize, (seed >> 32) as usize);
    run_elementwise(be, SHADER, entry, n, &[&ob], &[], |start, len| {
        Params::new().u(len).u(start).u(lo32).u(hi32).f(a).f(b)
    })?;
    Ok(out)
}
