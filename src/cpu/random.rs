//! random ops on the CPU (stub: to be written)
#![allow(unused_variables)]
use crate::backend::*;
use crate::tensor::Tensor;
use crate::{Error, Result};
use super::CpuBackend;

pub fn random(be: &CpuBackend, shape: &[usize], dist: Distribution, seed: u64) -> Result<Tensor> {
    Err(Error::Invalid("cpu random: not implemented yet".into()))
}

