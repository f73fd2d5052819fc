//! Elementwise ops, memory ops and bias_add on the CPU. Large tensors are split over threads
//! in fixed chunks (natively); each element is computed exactly as the GPU twin does.

use super::{host, new_tensor, par_chunks, CpuBackend};
use crate::backend::*;
use crate::tensor::{non_empty, numel, same_shape, Tensor};
use crate::{Error, Result};

/// Elements per parallel task: large enough that thread hand-off costs nothing.
const CHUNK: usize = 1 << 16;

/// y = f(x) elementwise.
pub(crate) fn map1(x: &Tensor, op: &str, f: impl Fn(f32) -> f32 + Sync + Send) -> Result<Tensor> {
    non_empty(x.shape(), op)?;
    let xh = host(x, op)?;
    let xg = xh.read()?;
    let xs: &[f32] = &xg;
    let mut y = vec![0.0f32; xs.len()];
    par_chunks(&mut y, CHUNK, |ci, ys| {
        for (o, &v) in ys.iter_mut().zip(&xs[ci * CHUNK..]) {
            *o = f(v);
        }
    });
    Ok(new_tensor(x.shape(), y))
}

/// y = f(a, b) elementwise over two tensors of the same shape.
pub(crate) fn map2(
    a: &Tensor,
    b: &Tensor,
    op: &str,
    f: impl Fn(f32, f32) -> f32 + Sync + Send,
) -> Result<Tensor> {
    same_shape(a.shape(), b.shape(), op)?;
    non_empty(a.shape(), op)?;
    let (ah, bh) = (host(a, op)?, host(b, op)?);
    let (ag, bg) = (ah.read()?, bh.read()?);
    let (as_, bs): (&[f32], &[f32]) = (&ag, &bg);
    let mut y = vec![0.0f32; as_.len()];
    par_chunks(&mut y, CHUNK, |ci, ys| {
        let base = ci * CHUNK;
        for (j, o) in ys.iter_mut().enumerate() {
            *o = f(as_[base + j], bs[base + j]);
        }
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
    let mut y = xd.clone();
    for (i, plane) in y.chunks_mut(inner).enumerate() {
        let v = bd[i % c];
        plane.iter_mut().for_each(|e| *e += v);
    }
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

/// The logistic function, without overflow for large |x|.
pub(crate) fn sigmoid(x: f32) -> f32 {
    if x >= 0.0 {
        1.0 / (1.0 + (-x).exp())
    } else {
        let e = x.exp();
        e / (1.0 + e)
    }
}

/// f(x) of a unary op.
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
        UnaryOp::Tanh => x.tanh(),
        UnaryOp::Sigmoid => sigmoid(x),
        UnaryOp::Sign => sign(x),
        UnaryOp::Square => x * x,
        UnaryOp::Abs => x.abs(),
    }
}

/// f'(x) of a unary op; at the kinks (0 for relu/abs) the derivative PyTorch uses (0, slope, 0).
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
            let t = x.tanh();
            1.0 - t * t
        }
        UnaryOp::Sigmoid => {
            let s = sigmoid(x);
            s * (1.0 - s)
        }
        UnaryOp::Sign => 0.0,
        UnaryOp::Square => 2.0 * x,
        UnaryOp::Abs => sign(x),
    }
}

pub fn unary(_be: &CpuBackend, op: UnaryOp, x: &Tensor) -> Result<Tensor> {
    map1(x, "unary op", move |v| unary_fn(op, v))
}

pub fn unary_backward(_be: &CpuBackend, op: UnaryOp, x: &Tensor, gy: &Tensor) -> Result<Tensor> {
    map2(x, gy, "unary op backward", move |v, g| {
        g * unary_grad(op, v)
    })
}

pub fn clamp(_be: &CpuBackend, x: &Tensor, lo: f32, hi: f32) -> Result<Tensor> {
    clamp_bounds(lo, hi)?;
    map1(x, "clamp", move |v| v.max(lo).min(hi))
}
