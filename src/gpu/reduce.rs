//! Reductions on the GPU (shaders/reduce.wgsl): sum/mean and the losses reduce to a scalar in
//! two passes (partials per workgroup, then one workgroup sums the partials); softmax and the
//! softmax cross-entropy run one workgroup per row; bias_grad and the BatchNorm statistics
//! split every channel over several workgroups writing partials, then add those per channel.
//! Everything is chunked under the storage binding limit; nothing is read back to the host.

use super::context::{Binding, Shader};
use super::elementwise::{row_chunks, run_elementwise, window};
use super::{GpuBackend, GpuBuffer, Params};
use crate::backend::*;
use crate::tensor::{non_empty, same_shape, Tensor};
use crate::{Error, Result};

pub(crate) const SHADER: Shader = Shader {
    name: "reduce",
    source: include_str!("../../shaders/reduce.wgsl"),
};

/// At least this many elements per thread before a scalar reduction uses more workgroups:
/// few workgroups keep the (slow on lavapipe) barrier count low.
const PER_THREAD: usize = 8;
const MAX_GROUPS: usize = 256;

/// The uniforms of reduce.wgsl, in the order of its `Params` struct.
#[allow(clippy::too_many_arguments)]
fn rparams(
    n: usize,
    skip: usize,
    mode: u32,
    groups: usize,
    base: usize,
    d: usize,
    channels: usize,
    scale: f32,
    slot: usize,
) -> Params {
    Params::new()
        .u(n)
        .u(skip)
        .u(mode as usize)
        .u(groups)
        .u(base)
        .u(d)
        .u(channels)
        .f(scale)
        .u(slot)
}

/// A buffer argument of a row/channel launch: a window of the chunk, or the whole buffer.
pub(crate) enum Arg<'a> {
    Win(&'a GpuBuffer),
    Whole(&'a GpuBuffer),
}

/// Launch `entry` over `rows` rows of `d` floats, in chunks of whole rows under the binding
/// limit. `params(chunk index, first row, rows, skip)` builds the uniforms; `groups(rows)` is
/// the workgroup count of a chunk.
fn run_rows(
    be: &GpuBackend,
    entry: &'static str,
    rows: usize,
    d: usize,
    args: &[Arg],
    params: impl Fn(usize, usize, usize, usize) -> Params,
    groups: impl Fn(usize) -> usize,
) -> Result<()> {
    for (ci, (r0, nr)) in row_chunks(be, rows, d, entry)?.into_iter().enumerate() {
        let mut skip = 0;
        let binds: Vec<Binding> = args
            .iter()
            .map(|a| match a {
                Arg::Win(b) => {
                    let (w, s) = window(b, r0 * d, nr * d);
                    skip = s;
                    w
                }
                Arg::Whole(b) => Binding::Whole(b),
            })
            .collect();
        be.launch(SHADER, entry, &params(ci, r0, nr, skip), &binds, groups(nr))?;
    }
    Ok(())
}

/// scale * sum over `n` elements of `entry`'s per-element value ("sum_partials": x;
/// "loss_partials": the loss `mode` of (ins[0], ins[1])), as a new [1] tensor.
fn reduce_scalar(
    be: &GpuBackend,
    entry: &'static str,
    mode: u32,
    ins: &[&GpuBuffer],
    n: usize,
    scale: f32,
) -> Result<Tensor> {
    let chunks = row_chunks(be, n, 1, entry)?;
    let groups_of = |len: usize| len.div_ceil(256 * PER_THREAD).clamp(1, MAX_GROUPS);
    let total: usize = chunks.iter().map(|&(_, len)| groups_of(len)).sum();
    let partial = be.alloc(total)?;
    let mut base = 0;
    for (start, len) in chunks {
        let g = groups_of(len);
        let mut binds = vec![Binding::Whole(&partial)];
        let mut skip = 0;
        for b in ins {
            let (w, s) = window(b, start, len);
            skip = s;
            binds.push(w);
        }
        be.launch(
            SHADER,
            entry,
            &rparams(len, skip, mode, g, base, 0, 0, 1.0, 0),
            &binds,
            g,
        )?;
        base += g;
    }
    let out = be.empty(&[1])?;
    let ob = out.gpu_buffer(entry)?;
    be.launch(
        SHADER,
        "finish",
        &rparams(total, 0, 0, 0, 0, 0, 0, scale, 0),
        &[Binding::Whole(&ob), Binding::Whole(&partial)],
        1,
    )?;
    Ok(out)
}

/// Per-channel reduction of a tensor viewed as (n, c, inner): `entry` is chan_sum (wins = [x]),
/// chan_sqdev (wins = [x], stats = [mean]) or chan_dot (wins = [x, gy], stats = [mean, invstd]).
/// Returns a new [c] tensor: scale * the sum over n and inner. Each chunk splits every channel
/// over several workgroups writing partials; a last pass adds them up per channel.
pub(crate) fn channel_reduce(
    be: &GpuBackend,
    entry: &'static str,
    (n, c, inner): (usize, usize, usize),
    wins: &[&GpuBuffer],
    stats: &[&GpuBuffer],
    scale: f32,
) -> Result<Tensor> {
    let chunks = row_chunks(be, n * c, inner, entry)?;
    // splits per channel: about 256 * PER_THREAD elements per workgroup, at most MAX_GROUPS
    let splits_of = |planes: usize| {
        (planes.div_ceil(c) * inner)
            .div_ceil(64 * 4 * PER_THREAD)
            .clamp(1, MAX_GROUPS)
    };
    let total: usize = chunks.iter().map(|&(_, np)| splits_of(np)).sum();
    if total * c > be.max_binding_elems() {
        return Err(Error::Gpu(format!("{entry}: {c} channels x {total} partial sums exceed this device's storage binding limit")));
    }
    let partial = be.alloc(total * c)?;
    let mut slot = 0;
    for (p0, np) in chunks {
        let s = splits_of(np);
        let mut binds = vec![Binding::Whole(&partial)];
        let mut skip = 0;
        for b in wins {
            let (w, sk) = window(b, p0 * inner, np * inner);
            skip = sk;
            binds.push(w);
        }
        binds.extend(stats.iter().map(|b| Binding::Whole(b)));
        be.launch(
            SHADER,
            entry,
            &rparams(np, skip, 0, s, p0, inner, c, 1.0, slot),
            &binds,
            s * c,
        )?;
        slot += s;
    }
    let out = be.empty(&[c])?;
    let ob = out.gpu_buffer(entry)?;
    be.launch(
        SHADER,
        "chan_finish",
        &rparams(total, 0, 0, 0, 0, 0, c, scale, 0),
        &[Binding::Whole(&ob), Binding::Whole(&partial)],
        c.div_ceil(64),
    )?;
    Ok(out)
}

pub fn bias_grad(be: &GpuBackend, gy: &Tensor) -> Result<Tensor> {
    let s = gy.shape();
    if s.len() < 2 {
        return Err(Error::Shape(format!(
            "bias_grad: gradient must have rank >= 2 (N, C, ...), got {s:?}"
        )));
    }
    non_empty(s, "bias_grad input")?;
    let inner = s[2..].iter().product();
    let b = gy.gpu_buffer("bias_grad")?;
    channel_reduce(be, "chan_sum", (s[0], s[1], inner), &[&b], &[], 1.0)
}

pub fn sum(be: &GpuBackend, x: &Tensor) -> Result<Tensor> {
    non_empty(x.shape(), "sum input")?;
    let b = x.gpu_buffer("sum")?;
    reduce_scalar(be, "sum_partials", 0, &[&b], x.numel(), 1.0)
}

pub fn mean(be: &GpuBackend, x: &Tensor) -> Result<Tensor> {
    non_empty(x.shape(), "mean input")?;
    let b = x.gpu_buffer("mean")?;
    reduce_scalar(
        be,
        "sum_partials",
        0,
        &[&b],
        x.numel(),
        1.0 / x.numel() as f32,
    )
}

/// (rows, row length) of a tensor whose last dimension is reduced.
fn rows_of(x: &Tensor, op: &str) -> Result<(usize, usize)> {
    non_empty(x.shape(), op)?;
    let d = *x
        .shape()
        .last()
        .ok_or_else(|| Error::Shape(format!("{op}: a scalar has no last dimension")))?;
    Ok((x.numel() / d, d))
}

pub fn softmax(be: &GpuBackend, x: &Tensor) -> Result<Tensor> {
    let (rows, d) = rows_of(x, "softmax")?;
    let xb = x.gpu_buffer("softmax")?;
    let out = be.empty(x.shape())?;
    let ob = out.gpu_buffer("softmax")?;
    run_rows(
        be,
        "softmax_rows",
        rows,
        d,
        &[Arg::Win(&ob), Arg::Win(&xb)],
        |_, r0, nr, skip| rparams(nr, skip, 0, 0, r0, d, 0, 1.0, 0),
        |nr| nr,
    )?;
    Ok(out)
}

/// The shader's code of an elementwise loss and its extra factor.
fn loss_mode(kind: LossKind) -> u32 {
    match kind {
        LossKind::Mse => 1,
        LossKind::L1 => 2,
        LossKind::BceWithLogits => 3,
        LossKind::LeastSquares => 4,
        LossKind::SoftmaxCrossEntropy => 0,
    }
}

fn check_loss(pred: &Tensor, target: &Tensor) -> Result<()> {
    same_shape(pred.shape(), target.shape(), "loss (prediction vs target)")?;
    non_empty(pred.shape(), "loss input")
}

pub fn loss(be: &GpuBackend, kind: LossKind, pred: &Tensor, target: &Tensor) -> Result<Tensor> {
    check_loss(pred, target)?;
    let (pb, tb) = (pred.gpu_buffer("loss")?, target.gpu_buffer("loss")?);
    if kind == LossKind::SoftmaxCrossEntropy {
        let (rows, d) = rows_of(pred, "softmax cross-entropy")?;
        let row_loss = be.alloc(rows)?;
        run_rows(
            be,
            "xent_rows",
            rows,
            d,
            &[Arg::Whole(&row_loss), Arg::Win(&pb), Arg::Win(&tb)],
            |_, r0, nr, skip| rparams(nr, skip, 0, 0, r0, d, 0, 1.0, 0),
            |nr| nr,
        )?;
        return reduce_scalar(be, "sum_partials", 0, &[&row_loss], rows, 1.0 / rows as f32);
    }
    reduce_scalar(
        be,
        "loss_partials",
        loss_mode(kind),
        &[&pb, &tb],
        pred.numel(),
        1.0 / pred.numel() as f32,
    )
}

pub fn loss_backward(
    be: &GpuBackend,
    kind: LossKind,
    pred: &Tensor,
    target: &Tensor,
    gloss: &Tensor,
) -> Result<Tensor> {
    check_loss(pred, target)?;
    loss_gradient_shape(kind, gloss.shape())?;
    let (pb, tb, gb) = (
        pred.gpu_buffer("loss_backward")?,
        target.gpu_buffer("loss_backward")?,
        gloss.gpu_buffer("loss_backward")?,
    );
    let out = be.empty(pred.shape())?;
    let ob = out.gpu_buffer("loss_backward")?;
    if kind == LossKind::SoftmaxCrossEntropy {
        let (rows, d) = rows_of(pred, "softmax cross-entropy")?;
        let scale = 1.0 / rows as f32;
        run_rows(
            be,
            "xent_grad_rows",
            rows,
            d,
            &[Arg::Win(&ob), Arg::Win(&pb), Arg::Win(&tb), Arg::Whole(&gb)],
            |_, r0, nr, skip| rparams(nr, skip, 0, 0, r0, d, 0, scale, 0),
            |nr| nr,
        )?;
        return Ok(out);
    }
    let (n, mode) = (pred.numel(), loss_mode(kind));
    run_elementwise(
        be,
        SHADER,
        "loss_grad",
        n,
        &[&ob, &pb, &tb],
        &[&gb],
        |_, len| rparams(len, 0, mode, 0, 0, 0, 0, 1.0 / n as f32, 0),
    )?;
    Ok(out)
}
