//! BatchNorm2d on the CPU, per channel over (N, H, W), statistics accumulated in f64.
//! Training normalises with the biased batch variance and updates running_var with the
//! unbiased one, as PyTorch does.
//!
//! Each op is two vectorised passes (simd.rs): the forward reads x once for both statistics
//! (shifted sums of x and x^2) and once to normalise; the backward reads (x, gy) once for both
//! sums and once to write gx. Channels are spread over the threads for the sums, planes for the
//! writes. `train_then` / `backward_masked` with their ReLU are BatchNorm followed by a ReLU in the same two
//! passes each: the forward clamps as it normalises, the backward recomputes the ReLU's mask
//! from x (the forward's affine map, the same bits) as it reads x, so neither the ReLU's own
//! passes nor its gradient tensor exist (they were 7% of a DnCNN training step).

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

/// y = x * a[c] + b[c] (the normalisation folded into one multiply-add per value), then
/// max(0, .) with `relu`.
fn apply_affine(x: &[f32], c: usize, hw: usize, (a, b): (&[f32], &[f32]), relu: bool) -> Vec<f32> {
    per_plane(x.len(), c, hw, |ch, out, off| {
        let (ac, bc) = (a[ch], b[ch]);
        let xs = &x[off..off + out.len()];
        simd::wide!({
            if relu {
                for (o, &v) in out.iter_mut().zip(xs) {
                    o.write(if relu_passes(v, ac, bc) {
                        v * ac + bc
                    } else {
                        0.0
                    });
                }
            } else {
                for (o, &v) in out.iter_mut().zip(xs) {
                    o.write(v * ac + bc);
                }
            }
        })
    })
}

/// True where the ReLU after the normalisation x a + b passes its input (x a + b > 0): the
/// one definition the forward's clamp and the backward's mask share.
#[inline(always)]
fn relu_passes(x: f32, a: f32, b: f32) -> bool {
    x * a + b > 0.0
}

/// The normalisation as y = x a + b per channel: a = gamma invstd, b = beta - mean a.
fn affine_coefficients(
    gamma: &[f32],
    beta: &[f32],
    mean: &[f32],
    invstd: &[f32],
) -> (Vec<f32>, Vec<f32>) {
    let a: Vec<f32> = gamma.iter().zip(invstd).map(|(g, i)| g * i).collect();
    let b = (0..a.len()).map(|ch| beta[ch] - mean[ch] * a[ch]).collect();
    (a, b)
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
    train_then(
        x,
        [gamma, beta, running_mean, running_var],
        momentum,
        eps,
        false,
    )
}

/// `train`, with the ReLU after it when `relu` (the `Backend::batchnorm2d_relu_train`
/// fusion: the ReLU applied as it normalises); `params` = [gamma, beta, running_mean,
/// running_var].
pub(super) fn train_then(
    x: &Tensor,
    params: [&Tensor; 4],
    momentum: f32,
    eps: f32,
    relu: bool,
) -> Result<(Tensor, Tensor, Tensor)> {
    let op = "batchnorm2d_train";
    let [n, c, hw] = batchnorm2d_train_shapes(x, params, momentum, eps)?;
    let [gamma, beta, running_mean, running_var] = params;
    let count = n * hw;
    let (rmh, rvh) = (host(running_mean, op)?, host(running_var, op)?);
    let (xh, gh, bh) = (host(x, op)?, host(gamma, op)?, host(beta, op)?);
    let (xd, gd, bd) = (xh.read()?, gh.read()?, bh.read()?);
    let xs: &[f32] = &xd;
    // one pass per channel: sums of (x - shift) and its square, shift = the channel's first
    // value (near the mean, so E[d^2] - E[d]^2 does not cancel)
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
    let mean: Vec<f32> = stats.iter().map(|s| s.0 as f32).collect();
    let invstd: Vec<f32> = stats
        .iter()
        .map(|&(_, var)| (1.0 / (var + eps as f64).sqrt()) as f32)
        .collect();
    let (a, b) = affine_coefficients(&gd, &bd, &mean, &invstd);
    let y = apply_affine(xs, c, hw, (&a, &b), relu);
    let unbias = count as f64 / (count - 1) as f64;
    {
        let (mut rm, mut rv) = (rmh.write()?, rvh.write()?);
        let m = momentum as f64;
        for (ch, &(mean, var)) in stats.iter().enumerate() {
            rm[ch] = ((1.0 - m) * rm[ch] as f64 + m * mean) as f32;
            rv[ch] = ((1.0 - m) * rv[ch] as f64 + m * var * unbias) as f32;
        }
    }
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
    Ok(new_tensor(
        x.shape(),
        apply_affine(&xd, c, hw, (&a, &b), false),
    ))
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
    let shape = batchnorm2d_backward_shapes(x, gy, gamma, mean, invstd)?;
    backward_masked(op, shape, [x, gy], [gamma, mean, invstd], None)
}

/// `backward`, with gy first masked by the ReLU after the normalisation when `relu_beta`
/// (that normalisation's beta) is given (the backward of `train_then` with its ReLU: the mask
/// is recomputed from x, not read from y); `stats` = [gamma, mean, invstd].
pub(super) fn backward_masked(
    op: &str,
    [n, c, hw]: [usize; 3],
    [x, gy]: [&Tensor; 2],
    stats: [&Tensor; 3],
    relu_beta: Option<&Tensor>,
) -> Result<(Tensor, Tensor, Tensor)> {
    let hs = [host(x, op)?, host(gy, op)?];
    let [gh, mh, ih] = [
        host(stats[0], op)?,
        host(stats[1], op)?,
        host(stats[2], op)?,
    ];
    let (xd, gyd, gd, md, id) = (
        hs[0].read()?,
        hs[1].read()?,
        gh.read()?,
        mh.read()?,
        ih.read()?,
    );
    let (xs, gys): (&[f32], &[f32]) = (&xd, &gyd);
    // the forward's affine map, for the ReLU's mask
    let relu = match relu_beta {
        Some(beta) => Some(affine_coefficients(&gd, &host(beta, op)?.read()?, &md, &id)),
        None => None,
    };
    let ab = |ch: usize| relu.as_ref().map(|(a, b)| (a[ch], b[ch]));
    let sums = par_map(c, |ch| {
        let (m, mask) = (md[ch], ab(ch));
        let (sg, sgd) = simd::wide!({
            planes(xs, n, c, hw, ch)
                .zip(planes(gys, n, c, hw, ch))
                .fold((0.0, 0.0), |(a, b), (xp, gp)| {
                    let (x, y) = match mask {
                        Some((ma, mb)) => {
                            simd::grad_moments_where(xp, gp, m, |x| relu_passes(x, ma, mb))
                        }
                        None => simd::grad_moments_where(xp, gp, m, |_| true),
                    };
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
            match ab(ch) {
                Some((ma, mb)) => {
                    for ((o, &xv), &g) in out.iter_mut().zip(xp).zip(gp) {
                        let g = if relu_passes(xv, ma, mb) { g } else { 0.0 };
                        o.write(a * g + b * (xv - m) + c0);
                    }
                }
                None => {
                    for ((o, &xv), &g) in out.iter_mut().zip(xp).zip(gp) {
                        o.write(a * g + b * (xv - m) + c0);
                    }
                }
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
