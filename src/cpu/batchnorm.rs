//! BatchNorm2d on the CPU, per channel over (N, H, W), statistics accumulated in f64.
//! Training normalises with the biased batch variance and updates running_var with the
//! unbiased one, as PyTorch does.
//!
//! Each op is two vectorised passes (simd.rs): the forward reads x once for both statistics
//! (shifted sums of x and x^2) and once to normalise; the backward reads (x, gy) once for both
//! sums and once to write gx. Channels are spread over the threads for the sums, planes for the
//! writes.

use std::mem::MaybeUninit;

use super::{build_vec, host, new_tensor, par_map, simd, CpuBackend};
use crate::backend::{
    batchnorm2d_backward_shapes, batchnorm2d_eval_shapes, batchnorm2d_train_shapes,
};
use crate::tensor::Tensor;
use crate::Result;

/// Values per parallel task of the element passes (whole planes).
const CHUNK: usize = 1 << 15;

/// A new (N, C, hw) tensor's values, f(channel, plane's outputs, plane offset) writing each
/// plane; tasks of whole planes over the threads.
fn per_plane(
    len: usize,
    c: usize,
    hw: usize,
    f: impl Fn(usize, &mut [MaybeUninit<f32>], usize) + Sync + Send,
) -> Vec<f32> {
    let chunk = hw * (CHUNK / hw).max(1);
    build_vec(len, chunk, |start, out| {
        for (k, plane) in out.chunks_mut(hw).enumerate() {
            let off = start + k * hw;
            f((off / hw) % c, plane, off);
        }
    })
}

/// y = x * a[c] + b[c] (the normalisation folded into one multiply-add per value).
fn apply_affine(x: &[f32], c: usize, hw: usize, a: &[f32], b: &[f32]) -> Vec<f32> {
    per_plane(x.len(), c, hw, |ch, out, off| {
        let (ac, bc) = (a[ch], b[ch]);
        let xs = &x[off..off + out.len()];
        simd::wide!({
            for (o, &v) in out.iter_mut().zip(xs) {
                o.write(v * ac + bc);
            }
        })
    })
}

/// The planes of channel ch: (sample i's plane) for i in 0..n.
fn planes(xs: &[f32], n: usize, c: usize, hw: usize, ch: usize) -> impl Iterator<Item = &[f32]> {
    (0..n).map(move |i| &xs[(i * c + ch) * hw..(i * c + ch + 1) * hw])
}

#[allow(clippy::too_many_arguments)]
pub fn train(
    _be: &CpuBackend,
    x: &Tensor,
    gamma: &Tensor,
    beta: &Tensor,
    running_mean: &Tensor,
    running_var: &Tensor,
    momentum: f32,
    eps: f32,
) -> Result<(Tensor, Tensor, Tensor)> {
    let op = "batchnorm2d_train";
    let [n, c, hw] =
        batchnorm2d_train_shapes(x, [gamma, beta, running_mean, running_var], momentum, eps)?;
    let count = n * hw;
    let (rmh, rvh) = (host(running_mean, op)?, host(running_var, op)?);
    let (y, mean, var) = {
        let (xh, gh, bh) = (host(x, op)?, host(gamma, op)?, host(beta, op)?);
        let (xd, gd, bd) = (xh.read()?, gh.read()?, bh.read()?);
        let xs: &[f32] = &xd;
        // one pass per channel: sums of (x - shift) and its square, shift = the channel's
        // first value (near the mean, so E[d^2] - E[d]^2 does not cancel)
        let stats = par_map(c, |ch| {
            let shift = xs[ch * hw] as f64;
            let (s1, s2) = simd::wide!({
                planes(xs, n, c, hw, ch).fold((0.0, 0.0), |(a, b), p| {
                    let (x, y) = simd::shifted_moments(p, shift);
                    (a + x, b + y)
                })
            });
            let d = s1 / count as f64;
            (shift + d, (s2 / count as f64 - d * d).max(0.0))
        });
        let invstd: Vec<f32> = stats
            .iter()
            .map(|&(_, var)| (1.0 / (var + eps as f64).sqrt()) as f32)
            .collect();
        let a: Vec<f32> = (0..c).map(|ch| gd[ch] * invstd[ch]).collect();
        let b: Vec<f32> = (0..c)
            .map(|ch| bd[ch] - stats[ch].0 as f32 * a[ch])
            .collect();
        let y = apply_affine(xs, c, hw, &a, &b);
        (
            y,
            stats.iter().map(|s| s.0).collect::<Vec<f64>>(),
            stats.iter().map(|s| s.1).collect::<Vec<f64>>(),
        )
    };
    let unbias = count as f64 / (count - 1) as f64;
    {
        let (mut rm, mut rv) = (rmh.write()?, rvh.write()?);
        let m = momentum as f64;
        for ch in 0..c {
            rm[ch] = ((1.0 - m) * rm[ch] as f64 + m * mean[ch]) as f32;
            rv[ch] = ((1.0 - m) * rv[ch] as f64 + m * var[ch] * unbias) as f32;
        }
    }
    let invstd: Vec<f32> = var
        .iter()
        .map(|&v| (1.0 / (v + eps as f64).sqrt()) as f32)
        .collect();
    let mean: Vec<f32> = mean.iter().map(|&m| m as f32).collect();
    Ok((
        new_tensor(x.shape(), y),
        new_tensor(&[c], mean),
        new_tensor(&[c], invstd),
    ))
}

pub fn eval(
    _be: &CpuBackend,
    x: &Tensor,
    gamma: &Tensor,
    beta: &Tensor,
    running_mean: &Tensor,
    running_var: &Tensor,
    eps: f32,
) -> Result<Tensor> {
    let op = "batchnorm2d_eval";
    let [_, c, hw] = batchnorm2d_eval_shapes(x, [gamma, beta, running_mean, running_var])?;
    let hs = [
        host(x, op)?,
        host(gamma, op)?,
        host(beta, op)?,
        host(running_mean, op)?,
        host(running_var, op)?,
    ];
    let (xd, gd, bd, rm, rv) = (
        hs[0].read()?,
        hs[1].read()?,
        hs[2].read()?,
        hs[3].read()?,
        hs[4].read()?,
    );
    let a: Vec<f32> = (0..c)
        .map(|ch| (gd[ch] as f64 / (rv[ch] as f64 + eps as f64).sqrt()) as f32)
        .collect();
    let b: Vec<f32> = (0..c).map(|ch| bd[ch] - rm[ch] * a[ch]).collect();
    Ok(new_tensor(x.shape(), apply_affine(&xd, c, hw, &a, &b)))
}

/// With xhat = (x - mean) invstd and M = N H W values per channel:
/// gbeta = sum gy, ggamma = sum gy xhat, gx = gamma invstd / M (M gy - gbeta - xhat ggamma).
pub fn backward(
    _be: &CpuBackend,
    x: &Tensor,
    gy: &Tensor,
    gamma: &Tensor,
    mean: &Tensor,
    invstd: &Tensor,
) -> Result<(Tensor, Tensor, Tensor)> {
    let op = "batchnorm2d_backward";
    let [n, c, hw] = batchnorm2d_backward_shapes(x, gy, gamma, mean, invstd)?;
    let hs = [
        host(x, op)?,
        host(gy, op)?,
        host(gamma, op)?,
        host(mean, op)?,
        host(invstd, op)?,
    ];
    let (xd, gyd, gd, md, id) = (
        hs[0].read()?,
        hs[1].read()?,
        hs[2].read()?,
        hs[3].read()?,
        hs[4].read()?,
    );
    let (xs, gys): (&[f32], &[f32]) = (&xd, &gyd);
    let sums = par_map(c, |ch| {
        let m = md[ch];
        let (sg, sgd) = simd::wide!({
            planes(xs, n, c, hw, ch)
                .zip(planes(gys, n, c, hw, ch))
                .fold((0.0, 0.0), |(a, b), (xp, gp)| {
                    let (x, y) = simd::grad_moments(xp, gp, m);
                    (a + x, b + y)
                })
        });
        // sum gy, sum gy xhat
        (sg, sgd * id[ch] as f64)
    });
    let count = (n * hw) as f32;
    // gx = k (M gy - gbeta - xhat ggamma), k = gamma invstd / M, as one multiply-add per value:
    // gx = (gamma invstd) gy + (-k invstd ggamma) (x - mean) - k gbeta
    let coef: Vec<[f32; 3]> = (0..c)
        .map(|ch| {
            let k = gd[ch] * id[ch] / count;
            let (gbeta, ggamma) = (sums[ch].0 as f32, sums[ch].1 as f32);
            [gd[ch] * id[ch], -k * id[ch] * ggamma, -k * gbeta]
        })
        .collect();
    let gx = per_plane(xs.len(), c, hw, |ch, out, off| {
        let [a, b, c0] = coef[ch];
        let m = md[ch];
        let r = off..off + out.len();
        let (xp, gp) = (&xs[r.clone()], &gys[r]);
        simd::wide!({
            for ((o, &xv), &g) in out.iter_mut().zip(xp).zip(gp) {
                o.write(a * g + b * (xv - m) + c0);
            }
        })
    });
    let ggamma = sums.iter().map(|s| s.1 as f32).collect();
    let gbeta = sums.iter().map(|s| s.0 as f32).collect();
    Ok((
        new_tensor(x.shape(), gx),
        new_tensor(&[c], ggamma),
        new_tensor(&[c], gbeta),
    ))
}
