//! reduce ops on the GPU (stub: to be written)
#![allow(unused_variables)]
use crate::backend::*;
use crate::tensor::Tensor;
use crate::{Error, Result};
use super::GpuBackend;

pub fn bias_grad(be: &GpuBackend, gy: &Tensor) -> Result<Tensor> {
    Err(Error::Invalid("gpu bias_grad: not implemented yet".into()))
}

pub fn sum(be: &GpuBackend, x: &Tensor) -> Result<Tensor> {
    Err(Error::Invalid("gpu sum: not implemented yet".into()))
}

pub fn mean(be: &GpuBackend, x: &Tensor) -> Result<Tensor> {
    Err(Error::Invalid("gpu mean: not implemented yet".into()))
}

pub fn softmax(be: &GpuBackend, x: &Tensor) -> Result<Tensor> {
    Err(Error::Invalid("gpu softmax: not implemented yet".into()))
}

pub fn loss(be: &GpuBackend, kind: LossKind, pred: &Tensor, target: &Tensor) -> Result<Tensor> {
    Err(Error::Invalid("gpu loss: not implemented yet".into()))
}

pub fn loss_backward(be: &GpuBackend, kind: LossKind, pred: &Tensor, target: &Tensor, gloss: &Tensor) -> Result<Tensor> {
    Err(Error::Invalid("gpu loss_backward: not implemented yet".into()))
}

