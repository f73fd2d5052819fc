//! Elementwise ops on the GPU (shaders/elementwise.wgsl): one thread per element. Tensors
//! larger than one storage binding are processed in chunks bound at aligned offsets. The
//! chunking helpers here (`window`, `row_chunks`, `run_elementwise`) serve every op family.

use super::context::{Binding, Shader};
use super::{GpuBackend, GpuBuffer, Params};
use crate::backend::*;
use crate::tensor::{non_empty, numel, same_shape, Tensor};
use crate::{Error, Result};

pub(crate) const SHADER: Shader = Shader {
    name: "elementwise",
    source: include_str!("../../shaders/elementwise.wgsl"),
};
const WG: usize = 256;
/// Floats per 256-byte storage offset alignment.
const ALIGN: usize = 64;

/// Bind elements [start, start + len) of `buf`: the binding begins at the aligned offset at or
/// before `start`; returns it with `skip`, the number of floats in it before `start`.
pub(crate) fn window(buf: &GpuBuffer, start: usize, len: usize) -> (Binding<'_>, usize) {
    let first = start / ALIGN * ALIGN;
    let skip = start - first;
    (
        Binding::Range(buf, first as u64 * 4, (skip + len) as u64 * 4),
        skip,
    )
}

/// Split `rows` rows of `row_len` floats into chunks (first row, row count) whose windows stay
/// under the binding limit (including up to 63 floats of alignment slack). Errors when a
/// single row does not fit.
pub(crate) fn row_chunks(
    be: &GpuBackend,
    rows: usize,
    row_len: usize,
    op: &str,
) -> Result<Vec<(usize, usize)>> {
    let max = be.max_binding_elems();
    if row_len + ALIGN > max {
        return Err(Error::Gpu(format!(
            "{op}: one row of {row_len} floats does not fit this device's storage binding limit ({} floats)",
            max
        )));
    }
    let per = ((max - ALIGN) / row_len.max(1)).max(1);
    Ok((0..rows)
        .step_by(per)
        .map(|r| (r, per.min(rows - r)))
        .collect())
}

/// Run elementwise `entry` of `shader` over `n` elements, in chunks under the binding limit:
/// `windows` are bound chunk by chunk from binding 1 on (chunks are multiples of 64 floats, so
/// each begins at index 0 of its binding), then `wholes` entirely. `params(start, len)` builds
/// the uniforms of the chunk [start, start + len).
pub(crate) fn run_elementwise(
    be: &GpuBackend,
    shader: Shader,
    entry: &'static str,
    n: usize,
    windows: &[&GpuBuffer],
    wholes: &[&GpuBuffer],
    params: impl Fn(usize, usize) -> Params,
) -> Result<()> {
    let chunk = (be.max_binding_elems() / ALIGN * ALIGN).max(ALIGN);
    let mut start = 0;
    while start < n {
        let len = chunk.min(n - start);
        let mut binds: Vec<Binding> = windows.iter().map(|b| window(b, start, len).0).collect();
        binds.extend(wholes.iter().map(|b| Binding::Whole(b)));
        be.launch(shader, entry, &params(start, len), &binds, len.div_ceil(WG))?;
        start += len;
    }
    Ok(())
}

/// Run `entry` over `n` elements (`params(len)` builds the uniforms of a chunk of `len`): `out` is written, `ins` read; each chunk stays under the
/// device's binding limit (chunks are multiples of 64 floats = 256 bytes, the offset alignment).
pub(crate) fn run_chunked(
    be: &GpuBackend,
    entry: &'static str,
    params: impl Fn(usize) -> Params,
    out: &Tensor,
    ins: &[&Tensor],
    n: usize,
) -> Result<()> {
    let outb = out.gpu_buffer(entry)?;
    let inb = ins
        .iter()
        .map(|t| t.gpu_buffer(entry))
        .collect::<Result<Vec<_>>>()?;
    let mut windows: Vec<&GpuBuffer> = vec![&outb];
    windows.extend(inb.iter().map(|b| &**b));
    run_elementwise(be, SHADER, entry, n, &windows, &[], |_, len| params(len))
}

pub fn fill(be: &GpuBackend, shape: &[usize], value: f32) -> Result<Tensor> {
    non_empty(shape, "fill")?;
    let out = be.empty(shape)?;
    run_chunked(
        be,
        "fill",
        |len| Params::new().u(len).u(0).f(value).f(0.0),
        &out,
        &[],
        numel(shape),
    )?;
    Ok(out)
}

pub fn binary(be: &GpuBackend, op: BinaryOp, a: &Tensor, b: &Tensor) -> Result<Tensor> {
    same_shape(a.shape(), b.shape(), "binary op")?;
    non_empty(a.shape(), "binary op input")?;
    let code = match op {
        BinaryOp::Add => 0,
        BinaryOp::Sub => 1,
        BinaryOp::Mul => 2,
    };
    let out = be.empty(a.shape())?;
    run_chunked(
        be,
        "binary",
        |len| Params::new().u(len).u(code).f(0.0).f(0.0),
        &out,
        &[a, b],
        a.numel(),
    )?;
    Ok(out)
}

pub fn assign(be: &GpuBackend, dst: &Tensor, src: &Tensor) -> Result<()> {
    if dst.numel() != src.numel() {
        return Err(Error::Shape(format!(
            "assign: {:?} into {:?}: element counts differ",
            src.shape(),
            dst.shape()
        )));
    }
    let (s, d) = (src.gpu_buffer("assign")?, dst.gpu_buffer("assign")?);
    if std::sync::Arc::ptr_eq(&s, &d) {
        return Ok(()); // assigning a tensor to itself (WebGPU refuses a copy within one buffer)
    }
    be.copy_elems(&s, 0, &d, 0, src.numel())
}

pub fn bias_add(be: &GpuBackend, x: &Tensor, b: &Tensor) -> Result<Tensor> {
    let [_, c, inner] = bias_shapes(x.shape(), b.shape())?;
    let (xb, bb) = (x.gpu_buffer("bias_add")?, b.gpu_buffer("bias_add")?);
    let out = be.empty(x.shape())?;
    let ob = out.gpu_buffer("bias_add")?;
    run_elementwise(
        be,
        SHADER,
        "bias_add",
        x.numel(),
        &[&ob, &xb],
        &[&bb],
        |start, len| {
            Params::new()
                .u(len)
                .u(0)
                .f(0.0)
                .f(0.0)
                .u(start)
                .u(inner)
                .u(c)
        },
    )?;
    Ok(out)
}

/// One-input elementwise entry with selector `op` and scalars `a`, `b`.
fn map1(
    be: &GpuBackend,
    entry: &'static str,
    x: &Tensor,
    op: u32,
    a: f32,
    b: f32,
) -> Result<Tensor> {
    non_empty(x.shape(), entry)?;
    let out = be.empty(x.shape())?;
    run_chunked(
        be,
        entry,
        |len| Params::new().u(len).u(op as usize).f(a).f(b),
        &out,
        &[x],
        x.numel(),
    )?;
    Ok(out)
}

pub fn affine(be: &GpuBackend, x: &Tensor, a: f32, b: f32) -> Result<Tensor> {
    map1(be, "affine", x, 0, a, b)
}

/// The shader's code for a unary op and its scalar (the leaky slope).
fn unary_code(op: UnaryOp) -> (u32, f32) {
    match op {
        UnaryOp::Relu => (0, 0.0),
        UnaryOp::LeakyRelu(s) => (1, s),
        UnaryOp::Tanh => (2, 0.0),
        UnaryOp::Sigmoid => (3, 0.0),
        UnaryOp::Sign => (4, 0.0),
        UnaryOp::Square => (5, 0.0),
        UnaryOp::Abs => (6, 0.0),
        UnaryOp::Reciprocal => (7, 0.0),
    }
}

pub fn unary(be: &GpuBackend, op: UnaryOp, x: &Tensor) -> Result<Tensor> {
    let (code, slope) = unary_code(op);
    map1(be, "unary", x, code, slope, 0.0)
}

pub fn unary_backward(be: &GpuBackend, op: UnaryOp, x: &Tensor, gy: &Tensor) -> Result<Tensor> {
    same_shape(x.shape(), gy.shape(), "unary_backward")?;
    non_empty(x.shape(), "unary_backward input")?;
    let (code, slope) = unary_code(op);
    let out = be.empty(x.shape())?;
    run_chunked(
        be,
        "unary_backward",
        |len| Params::new().u(len).u(code as usize).f(slope).f(0.0),
        &out,
        &[x, gy],
        x.numel(),
    )?;
    Ok(out)
}

pub fn clamp(be: &GpuBackend, x: &Tensor, lo: f32, hi: f32) -> Result<Tensor> {
    clamp_bounds(lo, hi)?;
    map1(be, "clamp_op", x, 0, lo, hi)
}
