//! BatchNorm2d on the CPU, per channel over (N, H, W), statistics accumulated in f64.
//! Training normalises with the biased batch variance and updates running_var with the
//! unbiased one, as PyTorch does.

use super::{host, new_tensor, par_chunks, par_map, CpuBackend};
use crate::backend::{
    batchnorm2d_backward_shapes, batchnorm2d_eval_shapes, batchnorm2d_train_shapes,
};
use crate::tensor::Tensor;
use crate::Result;

/// y = (x - mean[c]) * scale[c] + shift... written as y = x * a[c] + b[c], one plane per task.
fn apply_affine(x: &[f32], c: usize, hw: usize, a: &[f32], b: &[f32]) -> Vec<f32> {
    let mut y = vec![0.0f32; x.len()];
    par_chunks(&mut y, hw, |plane, ys| {
        let (ac, bc) = (a[plane % c], b[plane % c]);
        for (o, &v) in ys.iter_mut().zip(&x[plane * hw..]) {
            *o = v * ac + bc;
        }
    });
    y
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
        // two passes per channel: mean, then the biased variance
        let stats = par_map(c, |ch| {
            let planes = || (0..n).map(move |i| &xs[(i * c + ch) * hw..(i * c + ch + 1) * hw]);
            let mean = planes().flatten().map(|&v| v as f64).sum::<f64>() / count as f64;
            let var = planes()
                .flatten()
                .map(|&v| (v as f64 - mean).powi(2))
                .sum::<f64>()
                / count as f64;
            (mean, var)
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
        let (mut sg, mut sgx) = (0.0f64, 0.0f64);
        for i in 0..n {
            let r = (i * c + ch) * hw..(i * c + ch + 1) * hw;
            for (&xv, &g) in xs[r.clone()].iter().zip(&gys[r]) {
                sg += g as f64;
                sgx += g as f64 * ((xv - md[ch]) * id[ch]) as f64;
            }
        }
        (sg, sgx)
    });
    let count = (n * hw) as f32;
    let mut gx = vec![0.0f32; xs.len()];
    par_chunks(&mut gx, hw, |plane, out| {
        let ch = plane % c;
        let (gbeta, ggamma) = (sums[ch].0 as f32, sums[ch].1 as f32);
        let k = gd[ch] * id[ch] / count;
        let base = plane * hw;
        for (j, o) in out.iter_mut().enumerate() {
            let xhat = (xs[base + j] - md[ch]) * id[ch];
            *o = k * (count * gys[base + j] - gbeta - xhat * ggamma);
        }
    });
    let ggamma = sums.iter().map(|s| s.1 as f32).collect();
    let gbeta = sums.iter().map(|s| s.0 as f32).collect();
    Ok((
        new_tensor(x.shape(), gx),
        new_tensor(&[c], ggamma),
        new_tensor(&[c], gbeta),
    ))
}
