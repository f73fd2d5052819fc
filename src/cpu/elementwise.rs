//! Elementwise ops, memory ops and bias_add on the CPU. Large tensors are split over threads
//! in fixed chunks (natively), small ones stay on the calling thread; each op's loop is its own
//! monomorphised, branch-free closure, vectorised by `simd::wide`, and writes its output once
//! (no zero fill first). Each element is computed as the GPU twin does, up to float rounding
//! (tanh and sigmoid use simd.rs's vectorisable exp).

use std::mem::MaybeUninit;

use super::{build_vec, host, new_tensor, simd, CpuBackend};
use crate::backend::*;
use crate::tensor::{non_empty, numel, same_shape, Tensor};
use crate::{Error, Result};

/// Elements per parallel task: large enough that thread hand-off costs nothing, and tensors
/// smaller than this are not split at all.
const CHUNK: usize = 1 << 15;

/// out[i] = f(xs[i]), vectorised.
#[inline(always)]
fn fill1(out: &mut [MaybeUninit<f32>], xs: &[f32], f: impl Fn(f32) -> f32) {
    simd::wide!({
        for (o, &v) in out.iter_mut().zip(xs) {
            o.write(f(v));
        }
    })
}

/// out[i] = f(as_[i], bs[i]), vectorised.
#[inline(always)]
fn fill2(out: &mut [MaybeUninit<f32>], as_: &[f32], bs: &[f32], f: impl Fn(f32, f32) -> f32) {
    simd::wide!({
        for ((o, &a), &b) in out.iter_mut().zip(as_).zip(bs) {
            o.write(f(a, b));
        }
    })
}

/// y = f(x) elementwise.
pub(crate) fn map1(
    x: &Tensor,
    op: &str,
    f: impl Fn(f32) -> f32 + Sync + Send + Copy,
) -> Result<Tensor> {
    non_empty(x.shape(), op)?;
    let xh = host(x, op)?;
    let xg = xh.read()?;
    let xs: &[f32] = &xg;
    let y = build_vec(xs.len(), CHUNK, |start, out| {
        fill1(out, &xs[start..start + out.len()], f)
    });
    Ok(new_tensor(x.shape(), y))
}

/// y = f(a, b) elementwise over two tensors of the same shape.
pub(crate) fn map2(
    a: &Tensor,
    b: &Tensor,
    op: &str,
    f: impl Fn(f32, f32) -> f32 + Sync + Send + Copy,
) -> Result<Tensor> {
    same_shape(a.shape(), b.shape(), op)?;
    non_empty(a.shape(), op)?;
    let (ah, bh) = (host(a, op)?, host(b, op)?);
    let (ag, bg) = (ah.read()?, bh.read()?);
    let (as_, bs): (&[f32], &[f32]) = (&ag, &bg);
    let y = build_vec(as_.len(), CHUNK, |start, out| {
        let r = start..start + out.len();
        fill2(out, &as_[r.clone()], &bs[r], f)
    });
    Ok(new_tensor(a.shape(), y))
}

pub fn upload(shape: &[usize], data: &[f32]) -> Result<Tensor> {
    non_empty(shape, "upload")?;
    if numel(shape) != data.len() {
        return Err(Error::Shape(format!(
            "upload: shape {shape:?} needs {} values, got {}",
            numel(shape),
            data.len()
        )));
    }
    Ok(new_tensor(shape, data.to_vec()))
}

pub fn read(t: &Tensor) -> Result<Vec<f32>> {
    super::to_vec(t, "read")
}

pub fn fill(_be: &CpuBackend, shape: &[usize], value: f32) -> Result<Tensor> {
    non_empty(shape, "fill")?;
    Ok(new_tensor(shape, vec![value; numel(shape)]))
}

pub fn assign(_be: &CpuBackend, dst: &Tensor, src: &Tensor) -> Result<()> {
    if dst.numel() != src.numel() {
        return Err(Error::Shape(format!(
            "assign: {:?} into {:?}: element counts differ",
            src.shape(),
            dst.shape()
        )));
    }
    let (dh, sh) = (host(dst, "assign")?, host(src, "assign")?);
    if dh.same(&sh) {
        return Ok(()); // same storage: nothing to copy (and locking twice would deadlock)
    }
    let s = sh.read()?;
    dh.write()?.copy_from_slice(&s);
    Ok(())
}

pub fn bias_add(_be: &CpuBackend, x: &Tensor, b: &Tensor) -> Result<Tensor> {
    let [_, c, inner] = bias_shapes(x.shape(), b.shape())?;
    let (xh, bh) = (host(x, "bias_add")?, host(b, "bias_add")?);
    let (xd, bd) = (xh.read()?, bh.read()?);
    let (xs, bs): (&[f32], &[f32]) = (&xd, &bd);
    // whole samples (c * inner values) per task, several when samples are small
    let sample = c * inner;
    let chunk = sample * (CHUNK / sample).max(1);
    let y = build_vec(xs.len(), chunk, |start, out| {
        let xs = &xs[start..start + out.len()];
        simd::wide!({
            for (os, xs) in out.chunks_mut(sample).zip(xs.chunks(sample)) {
                if inner == 1 {
                    // (N, C): one row per sample, the bias along it
                    for ((o, &v), &bv) in os.iter_mut().zip(xs).zip(bs) {
                        o.write(v + bv);
                    }
                } else {
                    for ((op, xp), &bv) in os.chunks_mut(inner).zip(xs.chunks(inner)).zip(bs) {
                        for (o, &v) in op.iter_mut().zip(xp) {
                            o.write(v + bv);
                        }
                    }
                }
            }
        })
    });
    Ok(new_tensor(x.shape(), y))
}

pub fn binary(_be: &CpuBackend, op: BinaryOp, a: &Tensor, b: &Tensor) -> Result<Tensor> {
    match op {
        BinaryOp::Add => map2(a, b, "binary op", |x, y| x + y),
        BinaryOp::Sub => map2(a, b, "binary op", |x, y| x - y),
        BinaryOp::Mul => map2(a, b, "binary op", |x, y| x * y),
    }
}

pub fn affine(_be: &CpuBackend, x: &Tensor, a: f32, b: f32) -> Result<Tensor> {
    map1(x, "affine", move |v| a * v + b)
}

/// sign(x) in {-1, 0, 1} (f32::signum would give 1 at 0).
pub(crate) fn sign(x: f32) -> f32 {
    if x > 0.0 {
        1.0
    } else if x < 0.0 {
        -1.0
    } else {
        0.0
    }
}

/// The logistic function, without overflow for large |x| (simd.rs's vectorisable form).
#[inline(always)]
pub(crate) fn sigmoid(x: f32) -> f32 {
    simd::sigmoid(x)
}

/// f(x) of a unary op.
#[inline(always)]
pub(crate) fn unary_fn(op: UnaryOp, x: f32) -> f32 {
    match op {
        UnaryOp::Relu => x.max(0.0),
        UnaryOp::LeakyRelu(slope) => {
            if x > 0.0 {
                x
            } else {
                slope * x
            }
        }
        UnaryOp::Tanh => simd::tanh(x),
        UnaryOp::Sigmoid => sigmoid(x),
        UnaryOp::Sign => sign(x),
        UnaryOp::Square => x * x,
        UnaryOp::Abs => x.abs(),
        UnaryOp::Reciprocal => 1.0 / x,
    }
}

/// f'(x) of a unary op; at the kinks (0 for relu/abs) the derivative PyTorch uses (0, slope, 0).
#[inline(always)]
pub(crate) fn unary_grad(op: UnaryOp, x: f32) -> f32 {
    match op {
        UnaryOp::Relu => {
            if x > 0.0 {
                1.0
            } else {
                0.0
            }
        }
        UnaryOp::LeakyRelu(slope) => {
            if x > 0.0 {
                1.0
            } else {
                slope
            }
        }
        UnaryOp::Tanh => {
            let t = simd::tanh(x);
            1.0 - t * t
        }
        UnaryOp::Sigmoid => {
            let s = sigmoid(x);
            s * (1.0 - s)
        }
        UnaryOp::Sign => 0.0,
        UnaryOp::Square => 2.0 * x,
        UnaryOp::Abs => sign(x),
        UnaryOp::Reciprocal => -1.0 / (x * x),
    }
}

/// Calls `$body` with `$f` bound to the closure of `$op` (a match outside the loop, so each op's
/// loop is monomorphised and branch-free inside).
macro_rules! with_unary {
    ($op:expr, $fn:ident, |$f:ident| $body:expr) => {
        match $op {
            UnaryOp::Relu => {
                let $f = |v: f32| $fn(UnaryOp::Relu, v);
                $body
            }
            UnaryOp::LeakyRelu(s) => {
                let $f = move |v: f32| $fn(UnaryOp::LeakyRelu(s), v);
                $body
            }
            UnaryOp::Tanh => {
                let $f = |v: f32| $fn(UnaryOp::Tanh, v);
                $body
            }
            UnaryOp::Sigmoid => {
                let $f = |v: f32| $fn(UnaryOp::Sigmoid, v);
                $body
            }
            UnaryOp::Sign => {
                let $f = |v: f32| $fn(UnaryOp::Sign, v);
                $body
            }
            UnaryOp::Square => {
                let $f = |v: f32| $fn(UnaryOp::Square, v);
                $body
            }
            UnaryOp::Abs => {
                let $f = |v: f32| $fn(UnaryOp::Abs, v);
                $body
            }
            UnaryOp::Reciprocal => {
                let $f = |v: f32| $fn(UnaryOp::Reciprocal, v);
                $body
            }
        }
    };
}

pub fn unary(_be: &CpuBackend, op: UnaryOp, x: &Tensor) -> Result<Tensor> {
    with_unary!(op, unary_fn, |f| map1(x, "unary op", f))
}

pub fn unary_backward(_be: &CpuBackend, op: UnaryOp, x: &Tensor, gy: &Tensor) -> Result<Tensor> {
    with_unary!(op, unary_grad, |d| map2(
        x,
        gy,
        "unary op backward",
        move |v, g| g * d(v)
    ))
}

pub fn clamp(_be: &CpuBackend, x: &Tensor, lo: f32, hi: f32) -> Result<Tensor> {
    clamp_bounds(lo, hi)?;
    map1(x, "clamp", move |v| v.max(lo).min(hi))
}
