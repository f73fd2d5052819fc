//! Convolutions and matmul on the GPU (shaders/conv2d.wgsl, shaders/matmul.wgsl).
//!
//! Three conv kernels serve all six conv ops, through the identities
//!   conv_transpose2d forward         == conv2d backward-input  (with the bias added)
//!   conv_transpose2d backward-input  == conv2d forward
//!   conv_transpose2d backward-weight == conv2d backward-weight with x and gy swapped
//! and a `backend::ConvGeom` (shared with the CPU) always described in conv2d terms:
//! x (N, cin, h, w) -> y (N, cout, ho, wo), weight (cout, cin, kh, kw); one launcher (`run_data`)
//! runs the forward and the backward-input kernels. A transposed conv's weight (Cin, Cout, kh, kw)
//! is exactly the weight of the conv it transposes, so no weight is ever flipped. (The forward and
//! backward-input kernels read a repacked copy of it, channels contiguous, for vec4 loads.)
//!
//! Binding limits: a tensor larger than one storage binding is processed a batch slice at a
//! time, each slice bound at a 256-byte aligned offset with the remaining element offset
//! passed to the shader; backward-weight sums its partial results across slices. The matmul
//! splits into blocks of C (and of K, accumulating) whose operand ranges each fit one binding.

use super::context::{Binding, Shader};
use super::tuner::{bucket, Variant};
use super::{GpuBackend, GpuBuffer, Params};
use crate::backend::conv_ops::ConvKernels;
use crate::backend::*;
use crate::tensor::{Storage, Tensor};
use crate::{Error, Result};

/// A conv module: the storage types (`XT`, `YT`, `WT`: see conv2d_params.wgsl), the shared
/// parameters and bindings, then the kernels.
macro_rules! conv_module {
    ($name:literal, $types:literal, $file:literal) => {
        Shader {
            name: $name,
            source: concat!(
                $types,
                include_str!("../../shaders/conv2d_params.wgsl"),
                include_str!(concat!("../../shaders/", $file))
            ),
        }
    };
}
const CONV: Shader = conv_module!(
    "conv2d",
    "alias XT = f32;\nalias YT = f32;\nalias WT = f32;\n",
    "conv2d.wgsl"
);
/// conv2d.wgsl with an f16 packed weight (the fused inference on a device with `shader-f16`),
/// one module per input (x) and output (y) storage type; sums stay f32. Only `conv_fwd` runs in
/// them, and `pack_w_fwd` of the first (f32 weight in, f16 packed weight out).
const CONV_F16_X32_Y16: Shader = conv_module!(
    "conv2d_f16_x32_y16",
    "enable f16;\nalias XT = f32;\nalias YT = f16;\nalias WT = f16;\n",
    "conv2d.wgsl"
);
const CONV_F16_X16_Y16: Shader = conv_module!(
    "conv2d_f16_x16_y16",
    "enable f16;\nalias XT = f16;\nalias YT = f16;\nalias WT = f16;\n",
    "conv2d.wgsl"
);
const CONV_F16_X16_Y32: Shader = conv_module!(
    "conv2d_f16_x16_y32",
    "enable f16;\nalias XT = f16;\nalias YT = f32;\nalias WT = f16;\n",
    "conv2d.wgsl"
);
const CONV_F16_X32_Y32: Shader = conv_module!(
    "conv2d_f16_x32_y32",
    "enable f16;\nalias XT = f32;\nalias YT = f32;\nalias WT = f16;\n",
    "conv2d.wgsl"
);

/// The f16-weight module for an input and an output stored as f16 (true) or f32.
fn f16_module(x16: bool, y16: bool) -> Shader {
    match (x16, y16) {
        (false, true) => CONV_F16_X32_Y16,
        (true, true) => CONV_F16_X16_Y16,
        (true, false) => CONV_F16_X16_Y32,
        (false, false) => CONV_F16_X32_Y32,
    }
}
const MATMUL: Shader = Shader {
    name: "matmul",
    source: concat!(
        include_str!("../../shaders/matmul_params.wgsl"),
        include_str!("../../shaders/matmul.wgsl")
    ),
};
const CONV_TILED: Shader = conv_module!(
    "conv2d_tiled",
    "alias XT = f32;\nalias YT = f32;\nalias WT = f32;\n",
    "conv2d_tiled.wgsl"
);
const MATMUL_TILED: Shader = Shader {
    name: "matmul_tiled",
    source: concat!(
        include_str!("../../shaders/matmul_params.wgsl"),
        include_str!("../../shaders/matmul_tiled.wgsl")
    ),
};

/// Tile sizes of the shaders: a conv workgroup covers 128 columns (pixels or taps) x 32 channels,
/// a matmul workgroup 32 x 32 of C (64 x 64 for the vec4 kernels).
const CONV_COLS: usize = 128;
const CONV_ROWS: usize = 32;
/// The tiled conv kernels' tile: 64 channels x 64 columns, K-slices of 16.
const TILED: usize = 64;
const TILED_K: usize = 16;
const MM_TILE: usize = 32;
const MM_TILE_VEC4: usize = 64;
/// Binding offsets are aligned down to 64 floats (256 bytes); a span needs that much slack.
const ALIGN: usize = 64;

/// Everything in the conv shader's `Params` struct (in its order): all u32 scalars (4-byte
/// aligned in a uniform, no padding between them), kernel and settings one per axis.
struct ConvLaunch {
    g: ConvGeom,
    batch: usize,
    x_off: usize,
    y_off: usize,
    has_bias: bool,
    tiles_c: usize,
    rows_per_split: usize,
    splits: usize,
    accumulate: bool,
    relu: bool,
}

impl ConvLaunch {
    /// The parameter block for `batch` samples at element offsets (x_off, y_off).
    fn new(g: &ConvGeom, batch: usize, x_off: usize, y_off: usize) -> ConvLaunch {
        ConvLaunch {
            g: *g,
            batch,
            x_off,
            y_off,
            has_bias: false,
            tiles_c: 0,
            rows_per_split: 0,
            splits: 0,
            accumulate: false,
            relu: false,
        }
    }

    fn build(&self) -> Params {
        let g = &self.g;
        Params::new()
            .u(self.batch)
            .u(g.cin)
            .u(g.h)
            .u(g.w)
            .u(g.cout)
            .u(g.ho)
            .u(g.wo)
            .u(g.kh)
            .u(g.kw)
            .u(g.sh)
            .u(g.sw)
            .u(g.ph)
            .u(g.pw)
            .u(g.dh)
            .u(g.dw)
            .u(self.x_off)
            .u(self.y_off)
            .u(self.has_bias as usize)
            .u(self.tiles_c)
            .u(self.rows_per_split)
            .u(self.splits)
            .u(self.accumulate as usize)
            .u(self.relu as usize)
    }
}

/// Bind elements [start, start + len) of `buf`: the binding starts at the 256-byte boundary at
/// or below `start`; returns it with the element offset of `start` inside it.
fn span(buf: &GpuBuffer, start: usize, len: usize) -> (Binding<'_>, usize) {
    span_of(buf, start, len, false)
}

/// `span` of a buffer of f16 values (`f16`: 2 bytes an element, 128 to the 256-byte boundary;
/// the binding's size rounded up to whole 32-bit words) or of f32 values.
fn span_of(buf: &GpuBuffer, start: usize, len: usize, f16: bool) -> (Binding<'_>, usize) {
    let (align, bytes) = if f16 { (2 * ALIGN, 2) } else { (ALIGN, 4) };
    let base = start / align * align;
    let off = start - base;
    (
        Binding::Range(
            buf,
            (base * bytes) as u64,
            ((off + len) * bytes).next_multiple_of(4) as u64,
        ),
        off,
    )
}

/// Largest number of floats one bound span may cover: the binding limit less the alignment
/// slack of `span` and the rounding of vec4 bindings to whole vec4s.
fn span_capacity(be: &GpuBackend) -> usize {
    be.max_binding_elems().saturating_sub(ALIGN + 4)
}

/// Error unless a tensor that must be bound whole (a weight, a bias) fits one binding.
fn must_fit(be: &GpuBackend, len: usize, what: &str) -> Result<()> {
    if len > span_capacity(be) {
        return Err(Error::Gpu(format!(
            "{what} has {len} floats ({:.1} MiB), more than this device's largest storage binding ({:.1} MiB); it cannot be split",
            len as f64 * 4.0 / 1048576.0,
            be.max_binding_bytes() as f64 / 1048576.0
        )));
    }
    Ok(())
}

/// Samples per launch so that one slice of x and one of y each fit a binding.
fn batch_chunk(be: &GpuBackend, g: &ConvGeom, op: &str) -> Result<usize> {
    let cap = span_capacity(be);
    let per = g.x_per_sample().max(g.y_per_sample());
    if per > cap {
        return Err(Error::Gpu(format!(
            "{op}: one sample needs {per} floats ({:.1} MiB) in a single binding, more than this device's limit ({:.1} MiB); use smaller images or tiles",
            per as f64 * 4.0 / 1048576.0,
            be.max_binding_bytes() as f64 / 1048576.0
        )));
    }
    Ok((cap / per).min(g.n).max(1))
}

// ---------------------------------------------------------------- the three conv kernels

/// Elements of the weight packed for the forward (`fwd`) or the backward-input kernel.
fn packed_len(g: &ConvGeom, fwd: bool) -> usize {
    let kk = g.kh * g.kw;
    if fwd {
        g.cin * kk * g.cout.next_multiple_of(4)
    } else {
        g.cout * kk * g.cin.next_multiple_of(4)
    }
}

/// The weight repacked so that a conv thread's 8 channels are two aligned vec4 loads
/// (shaders/conv2d.wgsl, pack_w_fwd / pack_w_bwd): `fwd` gives wp[r][co] (rows of cout rounded
/// up to 4), otherwise wp[co][kh][kw][ci] (rows of cin rounded up to 4). With `f16` (forward
/// only) the packed values are f16, two to a 32-bit word of the returned buffer.
fn pack_weight(
    be: &GpuBackend,
    g: &ConvGeom,
    wb: &GpuBuffer,
    fwd: bool,
    f16: bool,
    op: &str,
) -> Result<GpuBuffer> {
    let len = packed_len(g, fwd);
    let entry = if fwd { "pack_w_fwd" } else { "pack_w_bwd" };
    must_fit(be, len, &format!("{op}: the packed weight"))?;
    let packed = be.alloc(if f16 { len.div_ceil(2) } else { len })?;
    let (pbind, _) = span_of(&packed, 0, len, f16);
    let (wbind, _) = span(wb, 0, g.weight_len());
    be.launch(
        if f16 { CONV_F16_X32_Y16 } else { CONV },
        entry,
        &ConvLaunch::new(g, g.n, 0, 0).build(),
        &[pbind, wbind],
        len.div_ceil(256),
    )?;
    Ok(packed)
}

/// Which way `run_data` goes through a conv: both read one activation and the weight and write
/// the other activation, one thread per output pixel and channel.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Direction {
    /// y = conv(x, wt) (+ bias over cout): the conv2d forward.
    Forward,
    /// x = conv^T(y, wt) (+ bias over cin): the conv2d backward-input.
    BackwardInput,
}

/// What `run_data` does besides the conv itself (all off by default).
#[derive(Clone, Copy, Default)]
struct Epilogue<'a> {
    /// max(0, .) on each stored value, after the bias (inference's conv + ReLU in one launch)
    relu: bool,
    /// the weight already packed by `pack_weight` (saves that launch on repeated calls)
    packed: Option<&'a GpuBuffer>,
    /// write here (a tensor of the output's shape, overwritten) instead of a new tensor
    out: Option<&'a Tensor>,
    /// the packed weight is f16 (forward only, the blocked kernel): whether the input and the
    /// output are stored as f16
    f16: Option<(bool, bool)>,
}

/// The shape class of a conv kernel launch for the tuner: the kernel, the channel counts and
/// the GEMM columns within 2x, the kernel size and stride exactly.
fn class_key(kernel: &str, g: &ConvGeom) -> String {
    format!(
        "{kernel}/c{}/o{}/k{}x{}/s{}x{}/p{}",
        bucket(g.cin),
        bucket(g.cout),
        g.kh,
        g.kw,
        g.sh,
        g.sw,
        bucket(g.n * g.ho.max(g.h) * g.wo.max(g.w))
    )
}

/// A zero-filled tensor (the tuner's replays time kernels on data of the right shape only).
fn zeros(be: &GpuBackend, shape: &[usize]) -> Result<Tensor> {
    be.upload(shape, &vec![0.0; shape.iter().product()])
}

/// The conv2d forward or backward-input of `input` (x or y of `g`) with the variant the tuner
/// picks for its shape class.
fn run_data(
    be: &GpuBackend,
    g: &ConvGeom,
    dir: Direction,
    input: &Tensor,
    wt: &Tensor,
    bias: Option<&Tensor>,
    ep: Epilogue<'_>,
    op: &str,
) -> Result<Tensor> {
    let kernel = match dir {
        Direction::Forward => "conv_fwd",
        Direction::BackwardInput => "conv_bwd_input",
    };
    let (geom, relu) = (*g, ep.relu);
    let name = op.to_string();
    be.run_tuned(
        &class_key(kernel, g),
        &mut |v| run_data_with(be, g, dir, input, wt, bias, ep, op, v),
        || {
            Box::new(move |be: &GpuBackend, v| {
                let shape = match dir {
                    Direction::Forward => geom.x_shape(),
                    Direction::BackwardInput => geom.y_shape(),
                };
                let (input, wt) = (zeros(be, &shape)?, zeros(be, &geom.weight_shape())?);
                let ep = Epilogue {
                    relu,
                    ..Default::default()
                };
                run_data_with(be, &geom, dir, &input, &wt, None, ep, &name, v).map(drop)
            })
        },
    )
}

/// The conv2d forward or backward-input of `input` (x or y of `g`) with kernel variant
/// `variant`, batch slice by batch slice.
#[allow(clippy::too_many_arguments)]
fn run_data_with(
    be: &GpuBackend,
    g: &ConvGeom,
    dir: Direction,
    input: &Tensor,
    wt: &Tensor,
    bias: Option<&Tensor>,
    ep: Epilogue<'_>,
    op: &str,
    variant: Variant,
) -> Result<Tensor> {
    let fwd = dir == Direction::Forward;
    let tiled = variant == Variant::Tiled;
    let (out_shape, out_channels, out_pixels, entry) = match (fwd, tiled) {
        (true, false) => (g.y_shape(), g.cout, g.ho * g.wo, "conv_fwd"),
        (true, true) => (g.y_shape(), g.cout, g.ho * g.wo, "conv_fwd_tiled"),
        (false, false) => (g.x_shape(), g.cin, g.h * g.w, "conv_bwd_input"),
        (false, true) => (g.x_shape(), g.cin, g.h * g.w, "conv_bwd_input_tiled"),
    };
    let (shader, rows, cols) = match ep.f16 {
        Some((x16, y16)) => (f16_module(x16, y16), CONV_ROWS, CONV_COLS),
        None if tiled => (CONV_TILED, TILED, TILED),
        None => (CONV, CONV_ROWS, CONV_COLS),
    };
    let (x16, y16) = ep.f16.unwrap_or_default();
    if ep.f16.is_some() && (!fwd || tiled || ep.packed.is_none()) {
        return Err(Error::Invalid(format!(
            "{op}: f16 runs the blocked forward kernel on a packed weight only"
        )));
    }
    must_fit(be, g.weight_len(), &format!("{op}: the weight"))?;
    // an f16 tensor is taken only where the module reads f16 (else gpu_buffer refuses it)
    let any = |t: &Tensor, f16: bool| {
        if f16 {
            Ok(t.gpu_buffer_any(op)?.0)
        } else {
            t.gpu_buffer(op)
        }
    };
    let (ib, wb) = (any(input, x16)?, wt.gpu_buffer(op)?);
    let bb = bias.map(|b| b.gpu_buffer(op)).transpose()?;
    let out = match ep.out {
        Some(t) => t.clone(),
        None if y16 => be.empty_f16(&out_shape)?,
        None => be.empty(&out_shape)?,
    };
    let ob = any(&out, y16)?;
    let chunk = batch_chunk(be, g, op)?;
    let tiles_c = out_channels.div_ceil(rows);
    let own_packed;
    let packed = match ep.packed {
        Some(p) => p,
        None => {
            own_packed = pack_weight(be, g, &wb, fwd, false, op)?;
            &own_packed
        }
    };
    let w16 = ep.f16.is_some();
    let (xbuf, ybuf) = if fwd { (&ib, &ob) } else { (&ob, &ib) };
    let mut n0 = 0;
    while n0 < g.n {
        let nb = chunk.min(g.n - n0);
        let (xs, ys) = (g.x_per_sample(), g.y_per_sample());
        let (xbind, x_off) = span_of(xbuf, n0 * xs, nb * xs, x16);
        let (ybind, y_off) = span_of(ybuf, n0 * ys, nb * ys, y16);
        let (wbind, _) = span_of(packed, 0, packed_len(g, fwd), w16);
        let bbind = match &bb {
            Some(b) => span(b, 0, out_channels).0,
            None => span(&wb, 0, g.weight_len()).0, // unused placeholder
        };
        let mut lp = ConvLaunch::new(g, nb, x_off, y_off);
        lp.has_bias = bb.is_some();
        lp.relu = ep.relu;
        lp.tiles_c = tiles_c;
        let wgs = (nb * out_pixels).div_ceil(cols) * tiles_c;
        // bindings: the output, the input, the packed weight, the bias
        let (obind, ibind) = if fwd { (ybind, xbind) } else { (xbind, ybind) };
        be.launch(
            shader,
            entry,
            &lp.build(),
            &[obind, ibind, wbind, bbind],
            wgs,
        )?;
        n0 += nb;
    }
    Ok(out)
}

/// gw[co, ci, kh, kw] = sum over samples and output pixels of y * shifted x: the conv2d
/// backward-weight. K = N*ho*wo is split into slices (more threads than the weight has
/// outputs / 16, which is few); each slice writes its partial sums, a second kernel adds them.
fn run_bwd_weight(
    be: &GpuBackend,
    g: &ConvGeom,
    x: &Tensor,
    y: &Tensor,
    op: &str,
) -> Result<Tensor> {
    let geom = *g;
    let name = op.to_string();
    be.run_tuned(
        &class_key("conv_bwd_weight", g),
        &mut |v| run_bwd_weight_with(be, g, x, y, op, v),
        || {
            Box::new(move |be: &GpuBackend, v| {
                let (x, y) = (zeros(be, &geom.x_shape())?, zeros(be, &geom.y_shape())?);
                run_bwd_weight_with(be, &geom, &x, &y, &name, v).map(drop)
            })
        },
    )
}

/// The backward-weight with kernel variant `variant`.
fn run_bwd_weight_with(
    be: &GpuBackend,
    g: &ConvGeom,
    x: &Tensor,
    y: &Tensor,
    op: &str,
    variant: Variant,
) -> Result<Tensor> {
    let tiled = variant == Variant::Tiled;
    let wn = g.weight_len();
    must_fit(be, wn, &format!("{op}: the weight gradient"))?;
    let (xb, yb) = (x.gpu_buffer(op)?, y.gpu_buffer(op)?);
    let out = be.empty(&g.weight_shape())?;
    let ob = out.gpu_buffer(op)?;
    let chunk = batch_chunk(be, g, op)?;
    let (rows_t, cols_t) = if tiled {
        (TILED, TILED)
    } else {
        (CONV_ROWS, CONV_COLS)
    };
    let tiles_c = g.cout.div_ceil(rows_t);
    let tiles_r = g.taps().div_ceil(cols_t);
    // aim for ~64k threads in flight (a real GPU's worth), within the binding for the partials
    let base_threads = tiles_c * tiles_r * 64;
    let max_splits = (65536 / base_threads)
        .clamp(1, 64)
        .min(span_capacity(be) / wn)
        .max(1);
    let partial = be.alloc(max_splits * wn)?;
    let mut n0 = 0;
    while n0 < g.n {
        let nb = chunk.min(g.n - n0);
        // the blocked kernel splits output rows (n, oh); the tiled one output pixels (n, oh,
        // ow) in whole K-slices
        let (rows, quantum) = if tiled {
            (nb * g.ho * g.wo, TILED_K)
        } else {
            (nb * g.ho, 1)
        };
        let rows_per_split = rows
            .div_ceil(max_splits.min(rows.div_ceil(quantum)))
            .next_multiple_of(quantum);
        let splits = rows.div_ceil(rows_per_split);
        let (pbind, _) = span(&partial, 0, splits * wn);
        let (xbind, x_off) = span(&xb, n0 * g.x_per_sample(), nb * g.x_per_sample());
        let (ybind, y_off) = span(&yb, n0 * g.y_per_sample(), nb * g.y_per_sample());
        let mut lp = ConvLaunch::new(g, nb, x_off, y_off);
        lp.tiles_c = tiles_c;
        lp.rows_per_split = rows_per_split;
        lp.splits = splits;
        be.launch(
            if tiled { CONV_TILED } else { CONV },
            if tiled {
                "conv_bwd_weight_tiled"
            } else {
                "conv_bwd_weight"
            },
            &lp.build(),
            &[pbind, xbind, ybind],
            splits * tiles_r * tiles_c,
        )?;

        let mut sp = ConvLaunch::new(g, nb, 0, 0);
        sp.splits = splits;
        sp.accumulate = n0 > 0;
        let (gbind, _) = span(&ob, 0, wn);
        let (pbind, _) = span(&partial, 0, splits * wn);
        be.launch(
            CONV,
            "sum_partials",
            &sp.build(),
            &[gbind, pbind],
            wn.div_ceil(256),
        )?;
        n0 += nb;
    }
    Ok(out)
}

// ---------------------------------------------------------------- the ops

pub use crate::backend::conv_ops::{
    conv2d, conv2d_backward_input, conv2d_backward_weight, conv2d_relu, conv_transpose2d,
    conv_transpose2d_backward_input, conv_transpose2d_backward_weight,
};

impl ConvKernels for GpuBackend {
    /// The ReLU is the forward kernel's epilogue (one launch).
    fn conv_forward(
        &self,
        g: &ConvGeom,
        x: &Tensor,
        w: &Tensor,
        b: Option<&Tensor>,
        relu: bool,
        op: &str,
    ) -> Result<Tensor> {
        let ep = Epilogue {
            relu,
            ..Epilogue::default()
        };
        run_data(self, g, Direction::Forward, x, w, b, ep, op)
    }
    fn conv_backward_input(
        &self,
        g: &ConvGeom,
        gy: &Tensor,
        w: &Tensor,
        b: Option<&Tensor>,
        op: &str,
    ) -> Result<Tensor> {
        let ep = Epilogue::default();
        run_data(self, g, Direction::BackwardInput, gy, w, b, ep, op)
    }
    fn conv_backward_weight(
        &self,
        g: &ConvGeom,
        x: &Tensor,
        gy: &Tensor,
        op: &str,
    ) -> Result<Tensor> {
        run_bwd_weight(self, g, x, gy, op)
    }
}

/// The fused inference conv in one launch: the weight is packed at the first call and kept in
/// `c`, the ReLU is the kernel's epilogue, the output may be an existing tensor. With `c.f16`
/// (a device with `shader-f16`) the packed weight is f16, the input may be an f16 tensor and
/// with `c.f16_out` the output is one; that runs the blocked kernel (no tuning).
pub fn conv2d_fused(
    be: &GpuBackend,
    x: &Tensor,
    c: &FusedConv2d,
    out: Option<&Tensor>,
) -> Result<Tensor> {
    let op = "conv2d_fused";
    let g = ConvGeom::conv2d_fused(x, c, out)?;
    if c.f16 && !be.has_shader_f16() {
        return Err(Error::Gpu(format!(
            "{op}: an f16 weight needs shader-f16, which this device does not have"
        )));
    }
    if let Some(o) = out {
        let want16 = c.f16 && c.f16_out;
        if o.is_f16() != want16 {
            return Err(Error::Invalid(format!(
                "{op}: the output must be an {} tensor",
                if want16 { "f16" } else { "f32" }
            )));
        }
    }
    if c.packed.get().is_none() {
        let wb = c.weight.gpu_buffer(op)?;
        let packed = pack_weight(be, &g, &wb, true, c.f16, op)?;
        let len = packed_len(&g, true);
        let packed = std::sync::Arc::new(packed);
        let storage = if c.f16 {
            Storage::GpuF16(packed)
        } else {
            Storage::Gpu(packed)
        };
        // a second thread filling it first packed the same weight
        let _ = c.packed.set(Tensor::from_storage(&[len], storage));
    }
    let packed = c.packed.get().expect("set above").gpu_buffer_any(op)?.0;
    let ep = Epilogue {
        relu: c.relu,
        packed: Some(&packed),
        out,
        f16: c.f16.then(|| (x.is_f16(), c.f16_out)),
    };
    if c.f16 {
        let bias = c.bias.as_ref();
        return run_data_with(
            be,
            &g,
            Direction::Forward,
            x,
            &c.weight,
            bias,
            ep,
            op,
            Variant::Blocked,
        );
    }
    run_data(
        be,
        &g,
        Direction::Forward,
        x,
        &c.weight,
        c.bias.as_ref(),
        ep,
        op,
    )
}

// ---------------------------------------------------------------- matmul

/// A row-major matrix operand seen through strides: element (i, j) of op(X) is at
/// i * si + j * sj.
#[derive(Clone, Copy)]
struct Strided {
    si: usize,
    sj: usize,
}

impl Strided {
    /// op(X) for a stored row-major matrix with `cols` columns, transposed or not.
    fn of(cols: usize, trans: bool) -> Strided {
        if trans {
            Strided { si: 1, sj: cols }
        } else {
            Strided { si: cols, sj: 1 }
        }
    }
    /// First element and length of the stored range block [i0, i0+ni) x [j0, j0+nj) touches.
    fn range(&self, i0: usize, ni: usize, j0: usize, nj: usize) -> (usize, usize) {
        let start = i0 * self.si + j0 * self.sj;
        (start, (ni - 1) * self.si + (nj - 1) * self.sj + 1)
    }
}

/// Block sizes (mb, nb, kb) so that the ranges of A, B and C one block touches each fit `cap`.
/// Halves the dimension that makes an operand's range long (its stored rows first).
fn matmul_blocks(
    m: usize,
    n: usize,
    k: usize,
    a: Strided,
    b: Strided,
    c: Strided,
    cap: usize,
) -> (usize, usize, usize) {
    let (mut mb, mut nb, mut kb) = (m, n, k);
    loop {
        if a.range(0, mb, 0, kb).1 > cap {
            // the stride-major dimension of A is m when A is not transposed
            if a.si >= a.sj && mb > 1 || kb == 1 {
                mb = mb.div_ceil(2)
            } else {
                kb = kb.div_ceil(2)
            }
        } else if b.range(0, kb, 0, nb).1 > cap {
            if b.si >= b.sj && kb > 1 || nb == 1 {
                kb = kb.div_ceil(2)
            } else {
                nb = nb.div_ceil(2)
            }
        } else if c.range(0, mb, 0, nb).1 > cap {
            if mb > 1 {
                mb = mb.div_ceil(2)
            } else {
                nb = nb.div_ceil(2)
            }
        } else {
            // blocks of a split product stay multiples of 4 where they can (the vec4 kernel)
            let round = |b: usize, full: usize| if b < full && b >= 8 { b / 4 * 4 } else { b };
            return (round(mb, m), round(nb, n), round(kb, k));
        }
    }
}

pub fn matmul(
    be: &GpuBackend,
    a: &Tensor,
    b: &Tensor,
    trans_a: bool,
    trans_b: bool,
) -> Result<Tensor> {
    let [m, k, n] = matmul_shapes(a.shape(), b.shape(), trans_a, trans_b)?;
    // shape class: alignment (vec4 kernels or not), operand layout, sizes within 2x
    let v4 = m % 4 == 0 && n % 4 == 0 && k % 4 == 0;
    let key = format!(
        "matmul/{}/a{}b{}/m{}/n{}/k{}",
        if v4 { "v4" } else { "s" },
        if trans_a { "m" } else { "k" },
        if trans_b { "k" } else { "n" },
        bucket(m),
        bucket(n),
        bucket(k)
    );
    let (sa, sb) = (a.shape().to_vec(), b.shape().to_vec());
    be.run_tuned(
        &key,
        &mut |v| matmul_with(be, a, b, trans_a, trans_b, v),
        || {
            Box::new(move |be: &GpuBackend, v| {
                let a = be.upload(&sa, &vec![0.0; sa.iter().product()])?;
                let b = be.upload(&sb, &vec![0.0; sb.iter().product()])?;
                matmul_with(be, &a, &b, trans_a, trans_b, v).map(drop)
            })
        },
    )
}

/// The matmul with a given kernel variant (the tuner's `run`).
pub fn matmul_with(
    be: &GpuBackend,
    a: &Tensor,
    b: &Tensor,
    trans_a: bool,
    trans_b: bool,
    variant: Variant,
) -> Result<Tensor> {
    let [m, k, n] = matmul_shapes(a.shape(), b.shape(), trans_a, trans_b)?;
    let tiled = variant == Variant::Tiled;
    let (ab, bb) = (a.gpu_buffer("matmul")?, b.gpu_buffer("matmul")?);
    let out = be.empty(&[m, n])?;
    let cb = out.gpu_buffer("matmul")?;
    let sa = Strided::of(a.shape()[1], trans_a);
    let sb = Strided::of(b.shape()[1], trans_b);
    let sc = Strided { si: n, sj: 1 };
    let cap = span_capacity(be);
    if cap == 0 {
        return Err(Error::Gpu(
            "matmul: the device's storage binding limit is too small".into(),
        ));
    }
    let (mb, nb, kb) = matmul_blocks(m, n, k, sa, sb, sc, cap);
    for m0 in (0..m).step_by(mb) {
        let ms = mb.min(m - m0);
        for n0 in (0..n).step_by(nb) {
            let ns = nb.min(n - n0);
            for k0 in (0..k).step_by(kb) {
                let ks = kb.min(k - k0);
                let (astart, alen) = sa.range(m0, ms, k0, ks);
                let (bstart, blen) = sb.range(k0, ks, n0, ns);
                // the vec4 kernels need every 4x4 block of A, B and C to be aligned vec4s
                let aligned4 =
                    |st: Strided, start: usize| st.si.max(st.sj) % 4 == 0 && start % 4 == 0;
                let (cstart, clen) = sc.range(m0, ms, n0, ns);
                let vec4 = ms % 4 == 0
                    && ns % 4 == 0
                    && ks % 4 == 0
                    && aligned4(sa, astart)
                    && aligned4(sb, bstart)
                    && aligned4(sc, cstart);
                let pad = |len: usize| if vec4 { len.next_multiple_of(4) } else { len };
                let (abind, a_off) = span(&ab, astart, pad(alen));
                let (bbind, b_off) = span(&bb, bstart, pad(blen));
                let (cbind, c_off) = span(&cb, cstart, pad(clen));
                let tile = if vec4 || tiled { MM_TILE_VEC4 } else { MM_TILE };
                let tiles_n = ns.div_ceil(tile);
                let params = Params::new()
                    .u(ms)
                    .u(ns)
                    .u(ks)
                    .u(a_off)
                    .u(sa.si)
                    .u(sa.sj)
                    .u(b_off)
                    .u(sb.si)
                    .u(sb.sj)
                    .u(c_off)
                    .u(n)
                    .u((k0 > 0) as usize)
                    .u(tiles_n);
                let entry = match (tiled, vec4, sa.sj == 1, sb.sj == 1) {
                    (false, false, _, _) => "matmul",
                    (false, true, true, true) => "matmul_vec4_ak_bn",
                    (false, true, true, false) => "matmul_vec4_ak_bk",
                    (false, true, false, true) => "matmul_vec4_am_bn",
                    (false, true, false, false) => "matmul_vec4_am_bk",
                    (true, false, _, _) => "matmul_tiled",
                    (true, true, true, true) => "matmul_tiled_v4_ak_bn",
                    (true, true, true, false) => "matmul_tiled_v4_ak_bk",
                    (true, true, false, true) => "matmul_tiled_v4_am_bn",
                    (true, true, false, false) => "matmul_tiled_v4_am_bk",
                };
                be.launch(
                    if tiled { MATMUL_TILED } else { MATMUL },
                    entry,
                    &params,
                    &[cbind, abind, bbind],
                    ms.div_ceil(tile) * tiles_n,
                )?;
            }
        }
    }
    Ok(out)
}
