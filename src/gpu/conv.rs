//! conv ops on the GPU (stub: to be written)
#![allow(unused_variables)]
use crate::backend::*;
use crate::tensor::Tensor;
use crate::{Error, Result};
use super::GpuBackend;

pub fn conv2d(be: &GpuBackend, x: &Tensor, w: &Tensor, b: Option<&Tensor>, p: Conv2dParams) -> Result<Tensor> {
    Err(Error::Invalid("gpu conv2d: not implemented yet".into()))
}

pub fn conv2d_backward_input(be: &GpuBackend, gy: &Tensor, w: &Tensor, x_shape: &[usize], p: Conv2dParams) -> Result<Tensor> {
    Err(Error::Invalid("gpu conv2d_backward_input: not implemented yet".into()))
}

pub fn conv2d_backward_weight(be: &GpuBackend, x: &Tensor, gy: &Tensor, w_shape: &[usize], p: Conv2dParams) -> Result<Tensor> {
    Err(Error::Invalid("gpu conv2d_backward_weight: not implemented yet".into()))
}

pub fn conv_transpose2d(be: &GpuBackend, x: &Tensor, w: &Tensor, b: Option<&Tensor>, p: ConvTranspose2dParams) -> Result<Tensor> {
    Err(Error::Invalid("gpu conv_transpose2d: not implemented yet".into()))
}

pub fn conv_transpose2d_backward_input(be: &GpuBackend, gy: &Tensor, w: &Tensor, x_shape: &[usize], p: ConvTranspose2dParams) -> Result<Tensor> {
    Err(Error::Invalid("gpu conv_transpose2d_backward_input: not implemented yet".into()))
}

pub fn conv_transpose2d_backward_weight(be: &GpuBackend, x: &Tensor, gy: &Tensor, w_shape: &[usize], p: ConvTranspose2dParams) -> Result<Tensor> {
    Err(Error::Invalid("gpu conv_transpose2d_backward_weight: not implemented yet".into()))
}

pub fn matmul(be: &GpuBackend, a: &Tensor, b: &Tensor, trans_a: bool, trans_b: bool) -> Result<Tensor> {
    Err(Error::Invalid("gpu matmul: not implemented yet".into()))
}

