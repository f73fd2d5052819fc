//! batchnorm ops on the CPU (stub: to be written)
#![allow(unused_variables)]
use crate::backend::*;
use crate::tensor::Tensor;
use crate::{Error, Result};
use super::CpuBackend;

pub fn train(be: &CpuBackend, x: &Tensor, gamma: &Tensor, beta: &Tensor, running_mean: &Tensor, running_var: &Tensor, momentum: f32, eps: f32) -> Result<(Tensor, Tensor, Tensor)> {
    Err(Error::Invalid("cpu train: not implemented yet".into()))
}

pub fn eval(be: &CpuBackend, x: &Tensor, gamma: &Tensor, beta: &Tensor, running_mean: &Tensor, running_var: &Tensor, eps: f32) -> Result<Tensor> {
    Err(Error::Invalid("cpu eval: not implemented yet".into()))
}

pub fn backward(be: &CpuBackend, x: &Tensor, gy: &Tensor, gamma: &Tensor, mean: &Tensor, invstd: &Tensor) -> Result<(Tensor, Tensor, Tensor)> {
    Err(Error::Invalid("cpu backward: not implemented yet".into()))
}

