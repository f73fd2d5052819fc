//! Optimizer steps on the CPU, in place on the parameter and its state (torch.optim semantics).

use super::{host, CpuBackend, Host};
use crate::backend::*;
use crate::tensor::Tensor;
use crate::{Error, Result};

/// Hosts of (p, g, states...) after the shared checks of shapes and that no two share storage
/// (in-place updates of aliased tensors would be wrong, and locking them twice would deadlock).
fn operands(op: &str, p: &Tensor, g: &Tensor, states: &[(&Tensor, &str)]) -> Result<Vec<Host>> {
    optimizer_operands(op, p, g, states)?;
    let mut hs = vec![host(p, op)?, host(g, op)?];
    for (s, _) in states {
        hs.push(host(s, op)?);
    }
    Ok(hs)
}

/// g' = g + wd p; v = mu v + g'; p -= lr v (PyTorch's SGD with momentum, dampening 0).
pub fn sgd_step(
    _be: &CpuBackend,
    p: &Tensor,
    g: &Tensor,
    velocity: &Tensor,
    hp: SgdParams,
) -> Result<()> {
    let hs = operands("sgd_step", p, g, &[(velocity, "velocity")])?;
    let (mut pd, gd, mut vd) = (hs[0].write()?, hs[1].read()?, hs[2].write()?);
    for ((pi, &gi), vi) in pd.iter_mut().zip(gd.iter()).zip(vd.iter_mut()) {
        let gi = gi + hp.weight_decay * *pi;
        *vi = hp.momentum * *vi + gi;
        *pi -= hp.lr * *vi;
    }
    Ok(())
}

/// Adam with L2 weight decay added to the gradient (torch.optim.Adam) and bias correction:
/// m = b1 m + (1-b1) g'; v = b2 v + (1-b2) g'^2; p -= lr/(1-b1^t) m / (sqrt(v)/sqrt(1-b2^t) + eps).
pub fn adam_step(
    _be: &CpuBackend,
    p: &Tensor,
    g: &Tensor,
    m: &Tensor,
    v: &Tensor,
    hp: AdamParams,
) -> Result<()> {
    if hp.step == 0 {
        return Err(Error::Invalid(
            "adam_step: step counts from 1 (got 0)".into(),
        ));
    }
    let hs = operands(
        "adam_step",
        p,
        g,
        &[(m, "first moment"), (v, "second moment")],
    )?;
    let (mut pd, gd, mut md, mut vd) = (
        hs[0].write()?,
        hs[1].read()?,
        hs[2].write()?,
        hs[3].write()?,
    );
    let bc1 = 1.0 - (hp.beta1 as f64).powi(hp.step as i32);
    let bc2 = 1.0 - (hp.beta2 as f64).powi(hp.step as i32);
    let c = AdamConsts {
        hp,
        step_size: (hp.lr as f64 / bc1) as f32,
        sqrt_bc2: bc2.sqrt() as f32,
    };
    adam_update_split(&mut pd, &gd, &mut md, &mut vd, c);
    Ok(())
}

#[derive(Clone, Copy)]
struct AdamConsts {
    hp: AdamParams,
    step_size: f32,
    sqrt_bc2: f32,
}

/// Values per task of a split Adam update: a large weight (a dense GAN layer's 400K values)
/// is spread over the threads, a small one runs on the calling thread.
#[cfg(not(target_arch = "wasm32"))]
const ADAM_CHUNK: usize = 1 << 16;

/// `adam_update` in chunks over the threads (natively), each chunk on its own slices: the
/// same arithmetic per value, so the same result bit for bit.
fn adam_update_split(p: &mut [f32], g: &[f32], m: &mut [f32], v: &mut [f32], c: AdamConsts) {
    #[cfg(not(target_arch = "wasm32"))]
    if p.len() > ADAM_CHUNK && super::threads() > 1 {
        use rayon::prelude::*;
        let n = p.len().min(g.len()).min(m.len()).min(v.len());
        p[..n]
            .par_chunks_mut(ADAM_CHUNK)
            .zip(g[..n].par_chunks(ADAM_CHUNK))
            .zip(m[..n].par_chunks_mut(ADAM_CHUNK))
            .zip(v[..n].par_chunks_mut(ADAM_CHUNK))
            .for_each(|(((p, g), m), v)| adam_update(p, g, m, v, c));
        return;
    }
    adam_update(p, g, m, v, c)
}

/// The Adam update over whole slices, in the widest vectors this CPU has (the same arithmetic
/// in every width, so the same result bit for bit).
fn adam_update(p: &mut [f32], g: &[f32], m: &mut [f32], v: &mut [f32], c: AdamConsts) {
    #[cfg(target_arch = "x86_64")]
    {
        if super::simd::tier() == super::simd::Tier::Avx512 {
            // SAFETY: the CPU has AVX-512F (tier() checked it).
            return unsafe { adam_update_avx512(p, g, m, v, c) };
        }
    }
    adam_update_portable(p, g, m, v, c)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn adam_update_avx512(
    p: &mut [f32],
    g: &[f32],
    m: &mut [f32],
    v: &mut [f32],
    c: AdamConsts,
) {
    adam_update_portable(p, g, m, v, c)
}

#[inline(always)]
fn adam_update_portable(p: &mut [f32], g: &[f32], m: &mut [f32], v: &mut [f32], c: AdamConsts) {
    let hp = c.hp;
    let it = p.iter_mut().zip(g).zip(m.iter_mut()).zip(v.iter_mut());
    for (((pi, &gi), mi), vi) in it {
        let gi = gi + hp.weight_decay * *pi;
        *mi = hp.beta1 * *mi + (1.0 - hp.beta1) * gi;
        *vi = hp.beta2 * *vi + (1.0 - hp.beta2) * gi * gi;
        *pi -= c.step_size * *mi / (vi.sqrt() / c.sqrt_bc2 + hp.eps);
    }
}
