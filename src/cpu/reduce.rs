//! Reductions, softmax and losses on the CPU. Sums accumulate in f64, so the reference is
//! more accurate than any GPU tree reduction it is compared with.

use super::elementwise::{sigmoid, sign};
use super::{host, new_tensor, simd, CpuBackend};
use crate::backend::*;
use crate::tensor::{non_empty, same_shape, Tensor};
use crate::{Error, Result};

fn scalar(v: f64) -> Tensor {
    new_tensor(&[1], vec![v as f32])
}

/// Sum of gy over every dim but 1: the gradient of bias_add w.r.t. its bias, shape [C].
pub fn bias_grad(_be: &CpuBackend, gy: &Tensor) -> Result<Tensor> {
    let c = gy.shape().get(1).copied().unwrap_or(0);
    let [_, c, inner] = bias_shapes(gy.shape(), &[c]).map_err(|e| match e {
        Error::Shape(m) => Error::Shape(m.replace("bias_add", "bias_grad")),
        e => e,
    })?;
    let gh = host(gy, "bias_grad")?;
    let gd = gh.read()?;
    let gs: &[f32] = &gd;
    let acc = simd::wide!({
        let mut acc = vec![0.0f64; c];
        if inner == 1 {
            // (N, C): add the rows, each column its own f64 accumulator (vectorised across C)
            for row in gs.chunks_exact(c) {
                for (a, &v) in acc.iter_mut().zip(row) {
                    *a += v as f64;
                }
            }
        } else {
            for (i, plane) in gs.chunks_exact(inner).enumerate() {
                acc[i % c] += simd::sum_f64(plane);
            }
        }
        acc
    });
    Ok(new_tensor(
        &[c],
        acc.into_iter().map(|v| v as f32).collect(),
    ))
}

fn sum64(x: &Tensor, op: &str) -> Result<f64> {
    non_empty(x.shape(), op)?;
    let h = host(x, op)?;
    let d = h.read()?;
    Ok(simd::wide!(simd::sum_f64(&d)))
}

pub fn sum(_be: &CpuBackend, x: &Tensor) -> Result<Tensor> {
    Ok(scalar(sum64(x, "sum")?))
}

pub fn mean(_be: &CpuBackend, x: &Tensor) -> Result<Tensor> {
    Ok(scalar(sum64(x, "mean")? / x.numel() as f64))
}

/// Length of the last dimension (the softmax rows), refusing scalars-without-shape and empties.
fn row_len(x: &[usize], op: &str) -> Result<usize> {
    non_empty(x, op)?;
    match x.last() {
        Some(&k) => Ok(k),
        None => Err(Error::Shape(format!(
            "{op}: input must have at least one dimension"
        ))),
    }
}

/// softmax of one row into `out`, stable: exp(x - max) / sum.
fn softmax_row(x: &[f32], out: &mut [f32]) {
    let m = x.iter().fold(f32::NEG_INFINITY, |a, &b| a.max(b));
    let mut s = 0.0f64;
    for (o, &v) in out.iter_mut().zip(x) {
        *o = (v - m).exp();
        s += *o as f64;
    }
    let inv = (1.0 / s) as f32;
    out.iter_mut().for_each(|o| *o *= inv);
}

pub fn softmax(_be: &CpuBackend, x: &Tensor) -> Result<Tensor> {
    let k = row_len(x.shape(), "softmax")?;
    let h = host(x, "softmax")?;
    let d = h.read()?;
    let mut y = vec![0.0f32; d.len()];
    for (xr, yr) in d.chunks(k).zip(y.chunks_mut(k)) {
        softmax_row(xr, yr);
    }
    Ok(new_tensor(x.shape(), y))
}

/// log(sum(exp(row))) computed stably, in f64.
fn logsumexp(x: &[f32]) -> f64 {
    let m = x.iter().fold(f32::NEG_INFINITY, |a, &b| a.max(b)) as f64;
    m + x.iter().map(|&v| (v as f64 - m).exp()).sum::<f64>().ln()
}

fn loss_inputs(pred: &Tensor, target: &Tensor, op: &str) -> Result<()> {
    same_shape(pred.shape(), target.shape(), op)?;
    non_empty(pred.shape(), op)?;
    if pred.shape().is_empty() {
        return Err(Error::Shape(format!(
            "{op}: prediction must have at least one dimension"
        )));
    }
    Ok(())
}

pub fn loss(_be: &CpuBackend, kind: LossKind, pred: &Tensor, target: &Tensor) -> Result<Tensor> {
    let op = kind.name();
    loss_inputs(pred, target, op)?;
    let (ph, th) = (host(pred, op)?, host(target, op)?);
    let (p, t) = (ph.read()?, th.read()?);
    let n = p.len() as f64;
    let pairs = || p.iter().zip(t.iter()).map(|(&a, &b)| (a as f64, b as f64));
    let v = match kind {
        LossKind::Mse => pairs().map(|(a, b)| (a - b) * (a - b)).sum::<f64>() / n,
        LossKind::L1 => pairs().map(|(a, b)| (a - b).abs()).sum::<f64>() / n,
        LossKind::LeastSquares => 0.5 * pairs().map(|(a, b)| (a - b) * (a - b)).sum::<f64>() / n,
        LossKind::BceWithLogits => {
            pairs()
                .map(|(x, t)| x.max(0.0) - x * t + (-x.abs()).exp().ln_1p())
                .sum::<f64>()
                / n
        }
        LossKind::SoftmaxCrossEntropy => {
            let k = *pred.shape().last().unwrap_or(&1);
            let rows = p.len() / k;
            let mut total = 0.0f64;
            for (xr, tr) in p.chunks(k).zip(t.chunks(k)) {
                let lse = logsumexp(xr);
                // -sum_k t_k (x_k - lse)
                total -= xr
                    .iter()
                    .zip(tr)
                    .map(|(&x, &t)| t as f64 * (x as f64 - lse))
                    .sum::<f64>();
            }
            total / rows as f64
        }
    };
    Ok(scalar(v))
}

pub fn loss_backward(
    _be: &CpuBackend,
    kind: LossKind,
    pred: &Tensor,
    target: &Tensor,
    gloss: &Tensor,
) -> Result<Tensor> {
    let op = kind.name();
    loss_inputs(pred, target, op)?;
    loss_gradient_shape(kind, gloss.shape())?;
    let g = super::to_vec(gloss, op)?[0];
    let (ph, th) = (host(pred, op)?, host(target, op)?);
    let (p, t) = (ph.read()?, th.read()?);
    let scale = g / p.len() as f32;
    let mut gx = vec![0.0f32; p.len()];
    let each = |gx: &mut [f32], f: &dyn Fn(f32, f32) -> f32| {
        for ((o, &a), &b) in gx.iter_mut().zip(p.iter()).zip(t.iter()) {
            *o = scale * f(a, b);
        }
    };
    match kind {
        LossKind::Mse => each(&mut gx, &|a, b| 2.0 * (a - b)),
        LossKind::L1 => each(&mut gx, &|a, b| sign(a - b)),
        LossKind::LeastSquares => each(&mut gx, &|a, b| a - b),
        LossKind::BceWithLogits => each(&mut gx, &|x, t| sigmoid(x) - t),
        LossKind::SoftmaxCrossEntropy => {
            // d/dx_j of -sum_k t_k log softmax(x)_k = softmax(x)_j * sum_k t_k - t_j, per row
            let k = *pred.shape().last().unwrap_or(&1);
            let rows = p.len() / k;
            let scale = g / rows as f32;
            for ((xr, tr), gr) in p.chunks(k).zip(t.chunks(k)).zip(gx.chunks_mut(k)) {
                softmax_row(xr, gr);
                let tsum: f32 = tr.iter().sum();
                for (o, &tj) in gr.iter_mut().zip(tr) {
                    *o = scale * (*o * tsum - tj);
                }
            }
        }
    }
    Ok(new_tensor(pred.shape(), gx))
}
