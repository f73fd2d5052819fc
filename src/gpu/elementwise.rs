#![allow(unused_variables)]
//! Elementwise ops on the GPU (shaders/elementwise.wgsl): one thread per element. Tensors
//! larger than one storage binding are processed in chunks bound at aligned offsets.

use super::context::{Binding, Shader};
use super::{GpuBackend, Params};
use crate::backend::*;
use crate::tensor::{non_empty, numel, same_shape, Tensor};
use crate::{Error, Result};

pub(crate) const SHADER: Shader = Shader { name: "elementwise", source: include_str!("../../shaders/elementwise.wgsl") };
const WG: usize = 256;

/// Run `entry` over `n` elements (`params(len)` builds the uniforms of a chunk of `len`): `out` is written, `ins` read; each chunk stays under the
/// device's binding limit (chunks are multiples of 64 floats = 256 bytes, the offset alignment).
pub(crate) fn run_chunked(be: &GpuBackend, entry: &'static str, params: impl Fn(usize) -> Params, out: &Tensor, ins: &[&Tensor], n: usize) -> Result<()> {
    let outb = out.gpu_buffer(entry)?;
    let inb = ins.iter().map(|t| t.gpu_buffer(entry)).collect::<Result<Vec<_>>>()?;
    let chunk = (be.max_binding_elems() / 64 * 64).max(64);
    let mut start = 0;
    while start < n {
        let len = chunk.min(n - start);
        let (off, bytes) = (start as u64 * 4, len as u64 * 4);
        let p = params(len);
        let mut binds = vec![Binding::Range(&outb, off, bytes)];
        for b in &inb {
            binds.push(Binding::Range(b, off, bytes));
        }
        be.launch(SHADER, entry, &p, &binds, len.div_ceil(WG))?;
        start += len;
    }
    Ok(())
}

pub fn fill(be: &GpuBackend, shape: &[usize], value: f32) -> Result<Tensor> {
    let out = be.empty(shape)?;
    run_chunked(be, "fill", |len| Params::new().u(len).u(0).f(value).f(0.0), &out, &[], numel(shape))?;
    Ok(out)
}

pub fn binary(be: &GpuBackend, op: BinaryOp, a: &Tensor, b: &Tensor) -> Result<Tensor> {
    same_shape(a.shape(), b.shape(), "binary op")?;
    non_empty(a.shape(), "binary op input")?;
    let code = match op {
        BinaryOp::Add => 0,
        BinaryOp::Sub => 1,
        BinaryOp::Mul => 2,
    };
    let out = be.empty(a.shape())?;
    run_chunked(be, "binary", |len| Params::new().u(len).u(code).f(0.0).f(0.0), &out, &[a, b], a.numel())?;
    Ok(out)
}

pub fn assign(be: &GpuBackend, dst: &Tensor, src: &Tensor) -> Result<()> {
    if dst.numel() != src.numel() {
        return Err(Error::Shape(format!("assign: {:?} into {:?}: element counts differ", src.shape(), dst.shape())));
    }
    let (s, d) = (src.gpu_buffer("assign")?, dst.gpu_buffer("assign")?);
    be.copy_elems(&s, 0, &d, 0, src.numel())
}


pub fn bias_add(be: &GpuBackend, x: &Tensor, b: &Tensor) -> Result<Tensor> {
    Err(Error::Invalid("gpu bias_add: not implemented yet".into()))
}

pub fn affine(be: &GpuBackend, x: &Tensor, a: f32, b: f32) -> Result<Tensor> {
    Err(Error::Invalid("gpu affine: not implemented yet".into()))
}

pub fn unary(be: &GpuBackend, op: UnaryOp, x: &Tensor) -> Result<Tensor> {
    Err(Error::Invalid("gpu unary: not implemented yet".into()))
}

pub fn unary_backward(be: &GpuBackend, op: UnaryOp, x: &Tensor, gy: &Tensor) -> Result<Tensor> {
    Err(Error::Invalid("gpu unary_backward: not implemented yet".into()))
}

pub fn clamp(be: &GpuBackend, x: &Tensor, lo: f32, hi: f32) -> Result<Tensor> {
    Err(Error::Invalid("gpu clamp: not implemented yet".into()))
}

