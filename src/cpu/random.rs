//! Counter-based random tensors on the CPU: element i is `rng::uniform01(seed, i)` or
//! `rng::normal(seed, i)`, the same numbers the GPU twin produces.

use super::{new_tensor, par_chunks, CpuBackend};
use crate::backend::*;
use crate::rng;
use crate::tensor::{non_empty, numel, Tensor};
use crate::{Error, Result};

pub fn random(_be: &CpuBackend, shape: &[usize], dist: Distribution, seed: u64) -> Result<Tensor> {
    non_empty(shape, "random")?;
    let n = numel(shape);
    if n > u32::MAX as usize {
        return Err(Error::Invalid(format!(
            "random: {n} elements exceed the 2^32 counters of one stream"
        )));
    }
    let mut out = vec![0.0f32; n];
    const CHUNK: usize = 1 << 16;
    match dist {
        Distribution::Uniform { lo, hi } => {
            #[allow(clippy::neg_cmp_op_on_partial_ord)] // NaN is refused too
            if !(lo <= hi) || !lo.is_finite() || !hi.is_finite() {
                return Err(Error::Invalid(format!(
                    "random: uniform bounds must be finite with lo <= hi (got {lo}, {hi})"
                )));
            }
            par_chunks(&mut out, CHUNK, |ci, o| {
                for (j, e) in o.iter_mut().enumerate() {
                    *e = lo + (hi - lo) * rng::uniform01(seed, (ci * CHUNK + j) as u32);
                }
            });
        }
        Distribution::Normal { mean, std } => {
            #[allow(clippy::neg_cmp_op_on_partial_ord)] // NaN is refused too
            if !(std >= 0.0) || !mean.is_finite() || !std.is_finite() {
                return Err(Error::Invalid(format!(
                    "random: normal needs a finite mean and std >= 0 (got {mean}, {std})"
                )));
            }
            par_chunks(&mut out, CHUNK, |ci, o| {
                for (j, e) in o.iter_mut().enumerate() {
                    *e = mean + std * rng::normal(seed, (ci * CHUNK + j) as u32);
                }
            });
        }
    }
    Ok(new_tensor(shape, out))
}
