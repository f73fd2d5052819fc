//! reduce ops on the CPU (stub: to be written)
#![allow(unused_variables)]
use crate::backend::*;
use crate::tensor::Tensor;
use crate::{Error, Result};
use super::CpuBackend;

pub fn bias_grad(be: &CpuBackend, gy: &Tensor) -> Result<Tensor> {
    Err(Error::Invalid("cpu bias_grad: not implemented yet".into()))
}

pub fn sum(be: &CpuBackend, x: &Tensor) -> Result<Tensor> {
    Err(Error::Invalid("cpu sum: not implemented yet".into()))
}

pub fn mean(be: &CpuBackend, x: &Tensor) -> Result<Tensor> {
    Err(Error::Invalid("cpu mean: not implemented yet".into()))
}

pub fn softmax(be: &CpuBackend, x: &Tensor) -> Result<Tensor> {
    Err(Error::Invalid("cpu softmax: not implemented yet".into()))
}

pub fn loss(be: &CpuBackend, kind: LossKind, pred: &Tensor, target: &Tensor) -> Result<Tensor> {
    Err(Error::Invalid("cpu loss: not implemented yet".into()))
}

pub fn loss_backward(be: &CpuBackend, kind: LossKind, pred: &Tensor, target: &Tensor, gloss: &Tensor) -> Result<Tensor> {
    Err(Error::Invalid("cpu loss_backward: not implemented yet".into()))
}

