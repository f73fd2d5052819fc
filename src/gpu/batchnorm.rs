//! batchnorm ops on the GPU (stub: to be written)
#![allow(unused_variables)]
use crate::backend::*;
use crate::tensor::Tensor;
use crate::{Error, Result};
use super::GpuBackend;

pub fn train(be: &GpuBackend, x: &Tensor, gamma: &Tensor, beta: &Tensor, running_mean: &Tensor, running_var: &Tensor, momentum: f32, eps: f32) -> Result<(Tensor, Tensor, Tensor)> {
    Err(Error::Invalid("gpu train: not implemented yet".into()))
}

pub fn eval(be: &GpuBackend, x: &Tensor, gamma: &Tensor, beta: &Tensor, running_mean: &Tensor, running_var: &Tensor, eps: f32) -> Result<Tensor> {
    Err(Error::Invalid("gpu eval: not implemented yet".into()))
}

pub fn backward(be: &GpuBackend, x: &Tensor, gy: &Tensor, gamma: &Tensor, mean: &Tensor, invstd: &Tensor) -> Result<(Tensor, Tensor, Tensor)> {
    Err(Error::Invalid("gpu backward: not implemented yet".into()))
}

