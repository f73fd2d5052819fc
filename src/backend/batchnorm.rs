//! The rules of the three BatchNorm2d ops, checked here once so that both backends refuse the
//! same input with the same words.

use crate::tensor::{dims4, non_empty, same_shape, Tensor};
use crate::{Error, Result};

/// (N, C, H*W) of x (N, C, H, W), after checking that every per-channel tensor has shape [C].
fn per_channel_shapes(x: &Tensor, per_channel: &[(&Tensor, &str)], op: &str) -> Result<[usize; 3]> {
    let [n, c, h, w] = dims4(x.shape(), &format!("{op} input"))?;
    non_empty(x.shape(), &format!("{op} input"))?;
    for (t, what) in per_channel {
        if t.shape() != [c] {
            return Err(Error::Shape(format!(
                "{op}: {what} must have shape [{c}] (one per channel), got {:?}",
                t.shape()
            )));
        }
    }
    Ok([n, c, h * w])
}

/// Error unless none of `written` (updated in place) shares storage with another named tensor.
pub fn distinct_from_written(
    op: &str,
    written: &[(&Tensor, &str)],
    read: &[(&Tensor, &str)],
) -> Result<()> {
    let all: Vec<&(&Tensor, &str)> = written.iter().chain(read).collect();
    for (i, (a, an)) in written.iter().enumerate() {
        for (b, bn) in &all[i + 1..] {
            if a.same_storage(b) {
                return Err(Error::Invalid(format!(
                    "{op}: {an} and {bn} must be different tensors (one is updated in place)"
                )));
            }
        }
    }
    Ok(())
}

/// The per-channel tensors of batchnorm2d_train and _eval, in the trait's order.
const AFFINE_AND_RUNNING: [&str; 4] = ["gamma", "beta", "running_mean", "running_var"];

fn named<'a, const K: usize>(
    ts: [&'a Tensor; K],
    names: [&'a str; K],
) -> [(&'a Tensor, &'a str); K] {
    std::array::from_fn(|i| (ts[i], names[i]))
}

/// batchnorm2d_train with `stats` = [gamma, beta, running_mean, running_var]: returns
/// (N, C, H*W).
pub fn batchnorm2d_train_shapes(
    x: &Tensor,
    stats: [&Tensor; 4],
    momentum: f32,
    eps: f32,
) -> Result<[usize; 3]> {
    let op = "batchnorm2d_train";
    let [n, c, hw] = per_channel_shapes(x, &named(stats, AFFINE_AND_RUNNING), op)?;
    if n * hw < 2 {
        return Err(Error::Shape(format!(
            "{op}: needs more than one value per channel, got input {:?}",
            x.shape()
        )));
    }
    if eps.is_nan() || eps < 0.0 || !momentum.is_finite() {
        return Err(Error::Invalid(format!(
            "{op}: eps must be >= 0 and momentum finite (got eps {eps}, momentum {momentum})"
        )));
    }
    let [gamma, beta, running_mean, running_var] = stats;
    distinct_from_written(
        op,
        &[(running_mean, "running_mean"), (running_var, "running_var")],
        &[(x, "the input"), (gamma, "gamma"), (beta, "beta")],
    )?;
    Ok([n, c, hw])
}

/// batchnorm2d_eval with `stats` = [gamma, beta, running_mean, running_var]: returns
/// (N, C, H*W).
pub fn batchnorm2d_eval_shapes(x: &Tensor, stats: [&Tensor; 4]) -> Result<[usize; 3]> {
    per_channel_shapes(x, &named(stats, AFFINE_AND_RUNNING), "batchnorm2d_eval")
}

/// batchnorm2d_backward: returns (N, C, H*W).
pub fn batchnorm2d_backward_shapes(
    x: &Tensor,
    gy: &Tensor,
    gamma: &Tensor,
    mean: &Tensor,
    invstd: &Tensor,
) -> Result<[usize; 3]> {
    let op = "batchnorm2d_backward";
    let s = per_channel_shapes(
        x,
        &[(gamma, "gamma"), (mean, "mean"), (invstd, "invstd")],
        op,
    )?;
    same_shape(x.shape(), gy.shape(), op)?;
    Ok(s)
}

/// batchnorm2d_relu_backward with `per_channel` = [gamma, beta, mean, invstd]: returns
/// (N, C, H*W).
pub fn batchnorm2d_relu_backward_shapes(
    x: &Tensor,
    y: &Tensor,
    gy: &Tensor,
    per_channel: [&Tensor; 4],
) -> Result<[usize; 3]> {
    let op = "batchnorm2d_relu_backward";
    let names = ["gamma", "beta", "mean", "invstd"];
    let s = per_channel_shapes(x, &named(per_channel, names), op)?;
    same_shape(x.shape(), y.shape(), op)?;
    same_shape(x.shape(), gy.shape(), op)?;
    Ok(s)
}
