//! optim ops on the GPU (stub: to be written)
#![allow(unused_variables)]
use crate::backend::*;
use crate::tensor::Tensor;
use crate::{Error, Result};
use super::GpuBackend;

pub fn sgd_step(be: &GpuBackend, p: &Tensor, g: &Tensor, velocity: &Tensor, hp: SgdParams) -> Result<()> {
    Err(Error::Invalid("gpu sgd_step: not implemented yet".into()))
}

pub fn adam_step(be: &GpuBackend, p: &Tensor, g: &Tensor, m: &Tensor, v: &Tensor, hp: AdamParams) -> Result<()> {
    Err(Error::Invalid("gpu adam_step: not implemented yet".into()))
}

