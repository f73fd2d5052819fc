//! BatchNorm2d on the GPU (shaders/batchnorm.wgsl + the channel reductions of reduce.wgsl):
//! statistics per channel (one workgroup per channel, chunked), a tiny per-channel kernel
//! that turns them into coefficients, and one elementwise pass applying them.

use super::context::{Binding, Shader};
use super::elementwise::run_elementwise;
use super::reduce::channel_reduce;
use super::{GpuBackend, GpuBuffer, Params};
use crate::backend::{
    batchnorm2d_backward_shapes, batchnorm2d_eval_shapes, batchnorm2d_train_shapes,
};
use crate::tensor::Tensor;
use crate::Result;

const SHADER: Shader = Shader {
    name: "batchnorm",
    source: include_str!("../../shaders/batchnorm.wgsl"),
};

/// The uniforms of batchnorm.wgsl, in the order of its `Params` struct.
fn bparams(
    n: usize,
    start: usize,
    inner: usize,
    channels: usize,
    count: f32,
    momentum: f32,
    eps: f32,
) -> Params {
    Params::new()
        .u(n)
        .u(start)
        .u(inner)
        .u(channels)
        .f(count)
        .f(momentum)
        .f(eps)
}

fn bufs(ts: &[&Tensor], op: &str) -> Result<Vec<std::sync::Arc<GpuBuffer>>> {
    ts.iter().map(|t| t.gpu_buffer(op)).collect()
}

/// Run a coef kernel over C channels; `args` in binding order from 1 (coef first).
fn coef(
    be: &GpuBackend,
    entry: &'static str,
    c: usize,
    count: f32,
    momentum: f32,
    eps: f32,
    args: &[&GpuBuffer],
) -> Result<()> {
    let binds: Vec<Binding> = args.iter().map(|b| Binding::Whole(b)).collect();
    be.launch(
        SHADER,
        entry,
        &bparams(c, 0, 0, 0, count, momentum, eps),
        &binds,
        c.div_ceil(64),
    )
}

/// out = A_c * y + B_c * (x - M_c) + D_c elementwise (see the shader).
fn apply(
    be: &GpuBackend,
    x: &GpuBuffer,
    y: &GpuBuffer,
    coef: &GpuBuffer,
    shape: &[usize],
    (c, inner): (usize, usize),
) -> Result<Tensor> {
    let out = be.empty(shape)?;
    let ob = out.gpu_buffer("batchnorm")?;
    let n = out.numel();
    run_elementwise(
        be,
        SHADER,
        "bn_apply",
        n,
        &[&ob, x, y],
        &[coef],
        |start, len| bparams(len, start, inner, c, 0.0, 0.0, 0.0),
    )?;
    Ok(out)
}

#[allow(clippy::too_many_arguments)]
pub fn train(
    be: &GpuBackend,
    x: &Tensor,
    gamma: &Tensor,
    beta: &Tensor,
    running_mean: &Tensor,
    running_var: &Tensor,
    momentum: f32,
    eps: f32,
) -> Result<(Tensor, Tensor, Tensor)> {
    let op = "batchnorm2d_train";
    let [n, c, inner] =
        batchnorm2d_train_shapes(x, [gamma, beta, running_mean, running_var], momentum, eps)?;
    let b = bufs(&[x, gamma, beta, running_mean, running_var], op)?;
    let count = (n * inner) as f32;
    let mean = channel_reduce(be, "chan_sum", (n, c, inner), &[&b[0]], &[], 1.0 / count)?;
    let mb = mean.gpu_buffer(op)?;
    let var = channel_reduce(
        be,
        "chan_sqdev",
        (n, c, inner),
        &[&b[0]],
        &[&mb],
        1.0 / count,
    )?;
    let vb = var.gpu_buffer(op)?;
    let invstd = be.empty(&[c])?;
    let ib = invstd.gpu_buffer(op)?;
    let cf = be.alloc(4 * c)?;
    coef(
        be,
        "train_coef",
        c,
        count,
        momentum,
        eps,
        &[&cf, &b[1], &b[2], &mb, &vb, &ib, &b[3], &b[4]],
    )?;
    let y = apply(be, &b[0], &b[0], &cf, x.shape(), (c, inner))?;
    Ok((y, mean, invstd))
}

pub fn eval(
    be: &GpuBackend,
    x: &Tensor,
    gamma: &Tensor,
    beta: &Tensor,
    running_mean: &Tensor,
    running_var: &Tensor,
    eps: f32,
) -> Result<Tensor> {
    let op = "batchnorm2d_eval";
    let [_, c, inner] = batchnorm2d_eval_shapes(x, [gamma, beta, running_mean, running_var])?;
    let b = bufs(&[x, gamma, beta, running_mean, running_var], op)?;
    let cf = be.alloc(4 * c)?;
    coef(
        be,
        "eval_coef",
        c,
        0.0,
        0.0,
        eps,
        &[&cf, &b[1], &b[2], &b[3], &b[4]],
    )?;
    apply(be, &b[0], &b[0], &cf, x.shape(), (c, inner))
}

pub fn backward(
    be: &GpuBackend,
    x: &Tensor,
    gy: &Tensor,
    gamma: &Tensor,
    mean: &Tensor,
    invstd: &Tensor,
) -> Result<(Tensor, Tensor, Tensor)> {
    let op = "batchnorm2d_backward";
    let [n, c, inner] = batchnorm2d_backward_shapes(x, gy, gamma, mean, invstd)?;
    let b = bufs(&[x, gy, gamma, mean, invstd], op)?;
    let gbeta = channel_reduce(be, "chan_sum", (n, c, inner), &[&b[1]], &[], 1.0)?;
    let ggamma = channel_reduce(
        be,
        "chan_dot",
        (n, c, inner),
        &[&b[0], &b[1]],
        &[&b[3], &b[4]],
        1.0,
    )?;
    let (gbb, ggb) = (gbeta.gpu_buffer(op)?, ggamma.gpu_buffer(op)?);
    let cf = be.alloc(4 * c)?;
    coef(
        be,
        "backward_coef",
        c,
        (n * inner) as f32,
        0.0,
        0.0,
        &[&cf, &b[2], &b[3], &b[4], &gbb, &ggb],
    )?;
    let gx = apply(be, &b[0], &b[1], &cf, x.shape(), (c, inner))?;
    Ok((gx, ggamma, gbeta))
}
