//! Optimizer steps on the GPU (shaders/optim.wgsl), in place on the parameter and its state,
//! chunked under the storage binding limit.

use super::context::Shader;
use super::elementwise::run_elementwise;
use super::{GpuBackend, Params};
use crate::backend::*;
use crate::tensor::Tensor;
use crate::{Error, Result};

const SHADER: Shader = Shader {
    name: "optim",
    source: include_str!("../../shaders/optim.wgsl"),
};

/// The uniforms of optim.wgsl: (lr, beta1/momentum, beta2, eps, weight decay, bc1, bc2).
fn oparams(n: usize, h: [f32; 7]) -> Params {
    h.iter().fold(Params::new().u(n), |p, &v| p.f(v))
}

pub fn sgd_step(
    be: &GpuBackend,
    p: &Tensor,
    g: &Tensor,
    velocity: &Tensor,
    hp: SgdParams,
) -> Result<()> {
    optimizer_operands("sgd_step", p, g, &[(velocity, "velocity")])?;
    let (pb, gb, vb) = (
        p.gpu_buffer("sgd_step")?,
        g.gpu_buffer("sgd_step")?,
        velocity.gpu_buffer("sgd_step")?,
    );
    let h = [hp.lr, hp.momentum, 0.0, 0.0, hp.weight_decay, 1.0, 1.0];
    run_elementwise(
        be,
        SHADER,
        "sgd",
        p.numel(),
        &[&pb, &gb, &vb],
        &[],
        |_, len| oparams(len, h),
    )
}

pub fn adam_step(
    be: &GpuBackend,
    p: &Tensor,
    g: &Tensor,
    m: &Tensor,
    v: &Tensor,
    hp: AdamParams,
) -> Result<()> {
    optimizer_operands(
        "adam_step",
        p,
        g,
        &[(m, "first moment"), (v, "second moment")],
    )?;
    if hp.step == 0 {
        return Err(Error::Invalid(
            "adam_step: step counts from 1, got 0".into(),
        ));
    }
    let (pb, gb) = (p.gpu_buffer("adam_step")?, g.gpu_buffer("adam_step")?);
    let (mb, vb) = (m.gpu_buffer("adam_step")?, v.gpu_buffer("adam_step")?);
    // bias corrections on the host in f64, like torch's python-side scalars
    let bc1 = (1.0 - (hp.beta1 as f64).powi(hp.step as i32)) as f32;
    let bc2 = (1.0 - (hp.beta2 as f64).powi(hp.step as i32)) as f32;
    let h = [hp.lr, hp.beta1, hp.beta2, hp.eps, hp.weight_decay, bc1, bc2];
    run_elementwise(
        be,
        SHADER,
        "adam",
        p.numel(),
        &[&pb, &gb, &mb, &vb],
        &[],
        |_, len| oparams(len, h),
    )
}
