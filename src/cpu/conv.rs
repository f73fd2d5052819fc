//! conv ops on the CPU (stub: to be written)
#![allow(unused_variables)]
use crate::backend::*;
use crate::tensor::Tensor;
use crate::{Error, Result};
use super::CpuBackend;

pub fn conv2d(be: &CpuBackend, x: &Tensor, w: &Tensor, b: Option<&Tensor>, p: Conv2dParams) -> Result<Tensor> {
    Err(Error::Invalid("cpu conv2d: not implemented yet".into()))
}

pub fn conv2d_backward_input(be: &CpuBackend, gy: &Tensor, w: &Tensor, x_shape: &[usize], p: Conv2dParams) -> Result<Tensor> {
    Err(Error::Invalid("cpu conv2d_backward_input: not implemented yet".into()))
}

pub fn conv2d_backward_weight(be: &CpuBackend, x: &Tensor, gy: &Tensor, w_shape: &[usize], p: Conv2dParams) -> Result<Tensor> {
    Err(Error::Invalid("cpu conv2d_backward_weight: not implemented yet".into()))
}

pub fn conv_transpose2d(be: &CpuBackend, x: &Tensor, w: &Tensor, b: Option<&Tensor>, p: ConvTranspose2dParams) -> Result<Tensor> {
    Err(Error::Invalid("cpu conv_transpose2d: not implemented yet".into()))
}

pub fn conv_transpose2d_backward_input(be: &CpuBackend, gy: &Tensor, w: &Tensor, x_shape: &[usize], p: ConvTranspose2dParams) -> Result<Tensor> {
    Err(Error::Invalid("cpu conv_transpose2d_backward_input: not implemented yet".into()))
}

pub fn conv_transpose2d_backward_weight(be: &CpuBackend, x: &Tensor, gy: &Tensor, w_shape: &[usize], p: ConvTranspose2dParams) -> Result<Tensor> {
    Err(Error::Invalid("cpu conv_transpose2d_backward_weight: not implemented yet".into()))
}

pub fn matmul(be: &CpuBackend, a: &Tensor, b: &Tensor, trans_a: bool, trans_b: bool) -> Result<Tensor> {
    Err(Error::Invalid("cpu matmul: not implemented yet".into()))
}

