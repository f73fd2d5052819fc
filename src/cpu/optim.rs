//! optim ops on the CPU (stub: to be written)
#![allow(unused_variables)]
use crate::backend::*;
use crate::tensor::Tensor;
use crate::{Error, Result};
use super::CpuBackend;

pub fn sgd_step(be: &CpuBackend, p: &Tensor, g: &Tensor, velocity: &Tensor, hp: SgdParams) -> Result<()> {
    Err(Error::Invalid("cpu sgd_step: not implemented yet".into()))
}

pub fn adam_step(be: &CpuBackend, p: &Tensor, g: &Tensor, m: &Tensor, v: &Tensor, hp: AdamParams) -> Result<()> {
    Err(Error::Invalid("cpu adam_step: not implemented yet".into()))
}

