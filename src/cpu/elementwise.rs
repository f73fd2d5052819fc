//! elementwise ops on the CPU (stub: to be written)
#![allow(unused_variables)]
use crate::backend::*;
use crate::tensor::Tensor;
use crate::{Error, Result};
use super::CpuBackend;

pub fn assign(be: &CpuBackend, dst: &Tensor, src: &Tensor) -> Result<()> {
    Err(Error::Invalid("cpu assign: not implemented yet".into()))
}

pub fn fill(be: &CpuBackend, shape: &[usize], value: f32) -> Result<Tensor> {
    Err(Error::Invalid("cpu fill: not implemented yet".into()))
}

pub fn bias_add(be: &CpuBackend, x: &Tensor, b: &Tensor) -> Result<Tensor> {
    Err(Error::Invalid("cpu bias_add: not implemented yet".into()))
}

pub fn binary(be: &CpuBackend, op: BinaryOp, a: &Tensor, b: &Tensor) -> Result<Tensor> {
    Err(Error::Invalid("cpu binary: not implemented yet".into()))
}

pub fn affine(be: &CpuBackend, x: &Tensor, a: f32, b: f32) -> Result<Tensor> {
    Err(Error::Invalid("cpu affine: not implemented yet".into()))
}

pub fn unary(be: &CpuBackend, op: UnaryOp, x: &Tensor) -> Result<Tensor> {
    Err(Error::Invalid("cpu unary: not implemented yet".into()))
}

pub fn unary_backward(be: &CpuBackend, op: UnaryOp, x: &Tensor, gy: &Tensor) -> Result<Tensor> {
    Err(Error::Invalid("cpu unary_backward: not implemented yet".into()))
}

pub fn clamp(be: &CpuBackend, x: &Tensor, lo: f32, hi: f32) -> Result<Tensor> {
    Err(Error::Invalid("cpu clamp: not implemented yet".into()))
}

pub fn upload(shape: &[usize], data: &[f32]) -> Result<Tensor> {
    Err(Error::Invalid("cpu upload: not implemented yet".into()))
}

pub fn read(t: &Tensor) -> Result<Vec<f32>> {
    Err(Error::Invalid("cpu read: not implemented yet".into()))
}
