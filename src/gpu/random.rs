//! random ops on the GPU (stub: to be written)
#![allow(unused_variables)]
use crate::backend::*;
use crate::tensor::Tensor;
use crate::{Error, Result};
use super::GpuBackend;

pub fn random(be: &GpuBackend, shape: &[usize], dist: Distribution, seed: u64) -> Result<Tensor> {
    Err(Error::Invalid("gpu random: not implemented yet".into()))
}

