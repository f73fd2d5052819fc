//! The op trait both backends implement (CPU reference in `cpu/`, WGSL in `gpu/`), with the
//! parameter types and the shape rules they share. Every op validates its inputs here, in the
//! shape helpers, so both backends refuse the same inputs with the same messages.

mod batchnorm;
pub mod conv_arith;
mod conv_geom;
pub mod conv_ops;
mod forward;

pub use batchnorm::{
    batchnorm2d_backward_shapes, batchnorm2d_eval_shapes, batchnorm2d_relu_backward_shapes,
    batchnorm2d_train_shapes, distinct_from_written,
};
pub use conv_geom::{
    conv2d_shapes, conv_out_size, conv_transpose2d_shapes, conv_transpose_out_size, ConvGeom,
};

use std::future::Future;
use std::pin::Pin;

use crate::tensor::{non_empty, Tensor};
use crate::{Error, Result};

pub type LocalBoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + 'a>>;

/// A conv setting with one value per spatial axis, as PyTorch's `(h, w)` tuple: `h` along rows,
/// `w` along columns. `From<usize>` sets both axes alike (PyTorch's int form), so
/// `Conv2dParams::new(2, 1, 1).with_padding((1, 0))` reads like `Conv2d(stride=2, padding=(1, 0))`.
#[derive(Clone, Copy, PartialEq, Eq, Default)]
pub struct Hw {
    pub h: usize,
    pub w: usize,
}

impl Hw {
    pub const fn new(h: usize, w: usize) -> Hw {
        Hw { h, w }
    }
    /// The same value on both axes.
    pub const fn square(v: usize) -> Hw {
        Hw { h: v, w: v }
    }
    pub fn is_square(self) -> bool {
        self.h == self.w
    }
}

impl From<usize> for Hw {
    fn from(v: usize) -> Hw {
        Hw::square(v)
    }
}

impl From<(usize, usize)> for Hw {
    fn from((h, w): (usize, usize)) -> Hw {
        Hw { h, w }
    }
}

impl From<[usize; 2]> for Hw {
    fn from([h, w]: [usize; 2]) -> Hw {
        Hw { h, w }
    }
}

/// `(h, w)`, short in test names and error messages.
impl std::fmt::Debug for Hw {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "({}, {})", self.h, self.w)
    }
}

/// Shown as PyTorch prints it: `2` when both axes agree, else `(2, 1)`.
impl std::fmt::Display for Hw {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.is_square() {
            write!(f, "{}", self.h)
        } else {
            write!(f, "({}, {})", self.h, self.w)
        }
    }
}

/// conv2d with PyTorch semantics, each setting per axis (rows, columns); the kernel's own size,
/// square or not, is the weight's shape. H_out = (H + 2p - d(k-1) - 1) / s + 1 on each axis.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Conv2dParams {
    pub stride: Hw,
    pub padding: Hw,
    pub dilation: Hw,
}

impl Conv2dParams {
    /// The same stride, padding and dilation on both axes (`with_*` sets one per axis).
    pub const fn new(stride: usize, padding: usize, dilation: usize) -> Conv2dParams {
        Conv2dParams {
            stride: Hw::square(stride),
            padding: Hw::square(padding),
            dilation: Hw::square(dilation),
        }
    }
    pub fn with_stride(self, stride: impl Into<Hw>) -> Conv2dParams {
        Conv2dParams {
            stride: stride.into(),
            ..self
        }
    }
    pub fn with_padding(self, padding: impl Into<Hw>) -> Conv2dParams {
        Conv2dParams {
            padding: padding.into(),
            ..self
        }
    }
    pub fn with_dilation(self, dilation: impl Into<Hw>) -> Conv2dParams {
        Conv2dParams {
            dilation: dilation.into(),
            ..self
        }
    }
}

impl Default for Conv2dParams {
    fn default() -> Self {
        Conv2dParams::new(1, 0, 1)
    }
}

/// A conv2d forward made ready for repeated inference with [`Backend::conv2d_fused`]: its
/// weight, bias and settings, whether a ReLU follows (applied in the kernel's epilogue), and a
/// slot for the weight in the layout the backend's kernel reads, filled by the backend at the
/// first call and kept (the GPU repacks the weight for vec4 loads; keeping it saves that
/// launch on every later call: one launch per layer). The weight and bias must not change
/// afterwards (build one from values that are fixed for the run, e.g. a folded BatchNorm).
///
/// With `f16` set (see [`FusedConv2d::with_f16`]) the weight is kept as f16, the input may be an
/// f16 tensor, and with `f16_out` the output is one (`Storage::GpuF16`); sums and the bias stay
/// f32. Only a GPU with `shader-f16` runs it so (`BackendInfo::f16_inference`); the CPU runs
/// the same rounding on f32 values as its twin: the weight and, with `f16_out`, each output
/// value rounded to the nearest f16.
pub struct FusedConv2d {
    pub weight: Tensor,
    pub bias: Option<Tensor>,
    pub p: Conv2dParams,
    pub relu: bool,
    /// the weight stored as f16
    pub f16: bool,
    /// the output stored as f16 (with `f16` only)
    pub f16_out: bool,
    /// the backend's packed form of `weight` (on the CPU: the weight rounded to f16, with `f16`)
    pub(crate) packed: std::sync::OnceLock<Tensor>,
}

impl FusedConv2d {
    pub fn new(weight: Tensor, bias: Option<Tensor>, p: Conv2dParams, relu: bool) -> FusedConv2d {
        FusedConv2d {
            weight,
            bias,
            p,
            relu,
            f16: false,
            f16_out: false,
            packed: std::sync::OnceLock::new(),
        }
    }

    /// Store the weight as f16, and the output too when `out` (a hidden layer's activation).
    pub fn with_f16(self, out: bool) -> FusedConv2d {
        FusedConv2d {
            f16: true,
            f16_out: out,
            ..self
        }
    }
}

/// conv_transpose2d with PyTorch semantics, each setting per axis:
/// H_out = (H-1)s - 2p + d(k-1) + output_padding + 1, with output_padding < max(s, d).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConvTranspose2dParams {
    pub stride: Hw,
    pub padding: Hw,
    pub output_padding: Hw,
    pub dilation: Hw,
}

impl ConvTranspose2dParams {
    /// The same stride, padding, output_padding and dilation on both axes (PyTorch's order).
    pub const fn new(
        stride: usize,
        padding: usize,
        output_padding: usize,
        dilation: usize,
    ) -> ConvTranspose2dParams {
        ConvTranspose2dParams {
            stride: Hw::square(stride),
            padding: Hw::square(padding),
            output_padding: Hw::square(output_padding),
            dilation: Hw::square(dilation),
        }
    }
    pub fn with_stride(self, stride: impl Into<Hw>) -> ConvTranspose2dParams {
        ConvTranspose2dParams {
            stride: stride.into(),
            ..self
        }
    }
    pub fn with_padding(self, padding: impl Into<Hw>) -> ConvTranspose2dParams {
        ConvTranspose2dParams {
            padding: padding.into(),
            ..self
        }
    }
    pub fn with_output_padding(self, output_padding: impl Into<Hw>) -> ConvTranspose2dParams {
        ConvTranspose2dParams {
            output_padding: output_padding.into(),
            ..self
        }
    }
    pub fn with_dilation(self, dilation: impl Into<Hw>) -> ConvTranspose2dParams {
        ConvTranspose2dParams {
            dilation: dilation.into(),
            ..self
        }
    }
    /// The conv2d whose backward-input this transposed conv is.
    pub fn as_conv(&self) -> Conv2dParams {
        Conv2dParams {
            stride: self.stride,
            padding: self.padding,
            dilation: self.dilation,
        }
    }
}

impl Default for ConvTranspose2dParams {
    fn default() -> Self {
        ConvTranspose2dParams::new(1, 0, 0, 1)
    }
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub enum UnaryOp {
    Relu,
    /// max(x, 0) + slope * min(x, 0)
    LeakyRelu(f32),
    Tanh,
    Sigmoid,
    /// sign(x) in {-1, 0, 1}; its gradient is zero (used by FGSM).
    Sign,
    /// x * x
    Square,
    /// |x|
    Abs,
    /// 1 / x (IEEE: 1 / 0 = inf); its gradient is -1 / x^2 (spectral normalisation's 1 / sigma)
    Reciprocal,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BinaryOp {
    Add,
    Sub,
    Mul,
}

/// Losses reduce to a scalar tensor of shape [1].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LossKind {
    /// mean((p - t)^2) over all elements
    Mse,
    /// mean(|p - t|) over all elements
    L1,
    /// mean(max(x,0) - x t + log(1 + exp(-|x|))) over all elements; t in [0, 1]
    BceWithLogits,
    /// rows of the last dimension: mean over rows of -sum_k t_k log softmax(x)_k; t a distribution
    SoftmaxCrossEntropy,
    /// least-squares GAN loss (Mao et al.): 0.5 * mean((p - t)^2)
    LeastSquares,
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Distribution {
    /// uniform in [lo, hi)
    Uniform { lo: f32, hi: f32 },
    /// normal with the given mean and standard deviation (Box-Muller over counter pairs)
    Normal { mean: f32, std: f32 },
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SgdParams {
    pub lr: f32,
    pub momentum: f32,
    pub weight_decay: f32,
}

/// Adam (Kingma & Ba) with bias correction; `step` counts from 1.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct AdamParams {
    pub lr: f32,
    pub beta1: f32,
    pub beta2: f32,
    pub eps: f32,
    pub weight_decay: f32,
    pub step: u32,
}

/// What a backend reports about itself (shown in the page's status line and the bench).
#[derive(Clone, Debug, PartialEq)]
pub struct BackendInfo {
    /// "cpu" or "gpu"
    pub kind: &'static str,
    /// adapter name for the GPU ("llvmpipe", "SwiftShader", "NVIDIA H100"), "native"/"wasm" for the CPU
    pub adapter: String,
    /// true for software adapters (lavapipe, SwiftShader) that run on the CPU
    pub fallback: bool,
    /// largest storage binding in bytes the backend can use (usize::MAX on the CPU)
    pub max_binding_bytes: u64,
    /// fused inference plans (`DnCnnFused`) store weights and activations as f16 here (a GPU
    /// with `shader-f16`, unless switched off); false on the CPU
    pub f16_inference: bool,
}

impl BackendInfo {
    pub fn describe(&self) -> String {
        let base = if self.kind == "cpu" {
            format!("CPU backend ({})", self.adapter)
        } else if self.fallback {
            format!(
                "WebGPU/wgpu on {} (software fallback adapter: runs on the CPU)",
                self.adapter
            )
        } else {
            format!("WebGPU/wgpu on {}", self.adapter)
        };
        if self.f16_inference {
            format!("{base}, DnCNN inference in f16 (shader-f16)")
        } else {
            base
        }
    }
}

/// The ops. Tensors passed in must live on this backend (else `Error::Invalid`); shapes are
/// checked and a mismatch is an `Error::Shape`; nothing panics on bad input.
pub trait Backend {
    fn info(&self) -> BackendInfo;

    // ---- memory
    fn upload(&self, shape: &[usize], data: &[f32]) -> Result<Tensor>;
    fn zeros(&self, shape: &[usize]) -> Result<Tensor>;
    /// Read a tensor back to the host. On the GPU this maps asynchronously (never blocks a
    /// browser thread); natively, drive it with `pollster::block_on`.
    fn read<'a>(&'a self, t: &'a Tensor) -> LocalBoxFuture<'a, Result<Vec<f32>>>;
    /// Read several tensors back at once, in order. On the GPU this is one copy and one map
    /// for all of them (each map is a round trip through the browser's event loop, so a
    /// training step that reads its losses pays one wait instead of one per tensor).
    fn read_many<'a>(&'a self, ts: &'a [&'a Tensor]) -> LocalBoxFuture<'a, Result<Vec<Vec<f32>>>>;
    /// Overwrite `dst` with `src` (same element count) in place.
    fn assign(&self, dst: &Tensor, src: &Tensor) -> Result<()>;
    /// A filled tensor of the given shape: fill with a constant.
    fn fill(&self, shape: &[usize], value: f32) -> Result<Tensor>;

    // ---- convolution. x (N,Cin,H,W); w (Cout,Cin,kh,kw); b (Cout) -> (N,Cout,Ho,Wo); every
    // setting per axis (`Hw`)
    fn conv2d(&self, x: &Tensor, w: &Tensor, b: Option<&Tensor>, p: Conv2dParams)
        -> Result<Tensor>;
    /// relu(conv2d(x, w, b)): inference's conv + bias + ReLU as one op: the CPU applies the
    /// ReLU to each block of output while it is in cache, the GPU in the kernel's epilogue.
    fn conv2d_relu(
        &self,
        x: &Tensor,
        w: &Tensor,
        b: Option<&Tensor>,
        p: Conv2dParams,
    ) -> Result<Tensor>;
    /// `c`'s conv2d (with its ReLU when `c.relu`) of x in one kernel launch, written into
    /// `out` when given (a tensor of the output's shape, not x, overwritten: inference
    /// alternates two of them, so nothing is allocated per layer) or else into a new tensor;
    /// returns the output.
    fn conv2d_fused(&self, x: &Tensor, c: &FusedConv2d, out: Option<&Tensor>) -> Result<Tensor>;
    fn conv2d_backward_input(
        &self,
        gy: &Tensor,
        w: &Tensor,
        x_shape: &[usize],
        p: Conv2dParams,
    ) -> Result<Tensor>;
    fn conv2d_backward_weight(
        &self,
        x: &Tensor,
        gy: &Tensor,
        w_shape: &[usize],
        p: Conv2dParams,
    ) -> Result<Tensor>;
    /// x (N,Cin,H,W); w (Cin,Cout,kh,kw) as PyTorch; b (Cout)
    fn conv_transpose2d(
        &self,
        x: &Tensor,
        w: &Tensor,
        b: Option<&Tensor>,
        p: ConvTranspose2dParams,
    ) -> Result<Tensor>;
    fn conv_transpose2d_backward_input(
        &self,
        gy: &Tensor,
        w: &Tensor,
        x_shape: &[usize],
        p: ConvTranspose2dParams,
    ) -> Result<Tensor>;
    fn conv_transpose2d_backward_weight(
        &self,
        x: &Tensor,
        gy: &Tensor,
        w_shape: &[usize],
        p: ConvTranspose2dParams,
    ) -> Result<Tensor>;
    /// y = x + b broadcast along dim 1 (x is (N,C) or (N,C,H,W), b is (C))
    fn bias_add(&self, x: &Tensor, b: &Tensor) -> Result<Tensor>;
    /// gradient of bias_add w.r.t. b: sum of gy over every dim but 1
    fn bias_grad(&self, gy: &Tensor) -> Result<Tensor>;

    // ---- dense. op(a) (M,K) x op(b) (K,N) -> (M,N); op transposes when the flag is set
    fn matmul(&self, a: &Tensor, b: &Tensor, trans_a: bool, trans_b: bool) -> Result<Tensor>;

    // ---- elementwise
    fn binary(&self, op: BinaryOp, a: &Tensor, b: &Tensor) -> Result<Tensor>;
    /// y = a * x + b
    fn affine(&self, x: &Tensor, a: f32, b: f32) -> Result<Tensor>;
    fn unary(&self, op: UnaryOp, x: &Tensor) -> Result<Tensor>;
    /// gx = gy * f'(x)
    fn unary_backward(&self, op: UnaryOp, x: &Tensor, gy: &Tensor) -> Result<Tensor>;
    fn clamp(&self, x: &Tensor, lo: f32, hi: f32) -> Result<Tensor>;

    // ---- reductions -> shape [1]
    fn sum(&self, x: &Tensor) -> Result<Tensor>;
    fn mean(&self, x: &Tensor) -> Result<Tensor>;
    /// softmax over the last dimension
    fn softmax(&self, x: &Tensor) -> Result<Tensor>;

    // ---- losses: loss -> [1]; backward returns d loss / d pred scaled by the scalar `gloss` ([1])
    fn loss(&self, kind: LossKind, pred: &Tensor, target: &Tensor) -> Result<Tensor>;
    fn loss_backward(
        &self,
        kind: LossKind,
        pred: &Tensor,
        target: &Tensor,
        gloss: &Tensor,
    ) -> Result<Tensor>;

    // ---- BatchNorm2d over (N,H,W) per channel. Training mode updates running stats in place
    // (running = (1-momentum) running + momentum batch, unbiased variance as PyTorch) and
    // returns (y, batch mean, batch 1/sqrt(var+eps)) for the backward.
    fn batchnorm2d_train(
        &self,
        x: &Tensor,
        gamma: &Tensor,
        beta: &Tensor,
        running_mean: &Tensor,
        running_var: &Tensor,
        momentum: f32,
        eps: f32,
    ) -> Result<(Tensor, Tensor, Tensor)>;
    fn batchnorm2d_eval(
        &self,
        x: &Tensor,
        gamma: &Tensor,
        beta: &Tensor,
        running_mean: &Tensor,
        running_var: &Tensor,
        eps: f32,
    ) -> Result<Tensor>;
    /// returns (gx, ggamma, gbeta)
    fn batchnorm2d_backward(
        &self,
        x: &Tensor,
        gy: &Tensor,
        gamma: &Tensor,
        mean: &Tensor,
        invstd: &Tensor,
    ) -> Result<(Tensor, Tensor, Tensor)>;
    /// relu(batchnorm2d_train(x)) as one op (a conv's BatchNorm and ReLU in training): returns
    /// (y, batch mean, batch 1/sqrt(var+eps)) as batchnorm2d_train. This composition is the
    /// definition; the CPU fuses it (the ReLU applied as it normalises, no pass of its own).
    #[allow(clippy::too_many_arguments)]
    fn batchnorm2d_relu_train(
        &self,
        x: &Tensor,
        gamma: &Tensor,
        beta: &Tensor,
        running_mean: &Tensor,
        running_var: &Tensor,
        momentum: f32,
        eps: f32,
    ) -> Result<(Tensor, Tensor, Tensor)> {
        let (z, mean, invstd) =
            self.batchnorm2d_train(x, gamma, beta, running_mean, running_var, momentum, eps)?;
        Ok((self.unary(UnaryOp::Relu, &z)?, mean, invstd))
    }
    /// The backward of batchnorm2d_relu_train, (gx, ggamma, gbeta), y its output: gy where
    /// y > 0 (else 0) through batchnorm2d_backward. This composition is the definition; the
    /// CPU fuses it, recomputing the mask from x, beta and the statistics (bit for bit the
    /// forward's) instead of reading y.
    #[allow(clippy::too_many_arguments)]
    fn batchnorm2d_relu_backward(
        &self,
        x: &Tensor,
        y: &Tensor,
        gy: &Tensor,
        gamma: &Tensor,
        beta: &Tensor,
        mean: &Tensor,
        invstd: &Tensor,
    ) -> Result<(Tensor, Tensor, Tensor)> {
        batchnorm2d_relu_backward_shapes(x, y, gy, [gamma, beta, mean, invstd])?;
        let gz = self.unary_backward(UnaryOp::Relu, y, gy)?;
        self.batchnorm2d_backward(x, &gz, gamma, mean, invstd)
    }

    // ---- optimizers, in place on p and the state tensors
    fn sgd_step(&self, p: &Tensor, g: &Tensor, velocity: &Tensor, hp: SgdParams) -> Result<()>;
    fn adam_step(
        &self,
        p: &Tensor,
        g: &Tensor,
        m: &Tensor,
        v: &Tensor,
        hp: AdamParams,
    ) -> Result<()>;

    // ---- counter-based random numbers (see `rng`): element i depends only on (seed, i)
    fn random(&self, shape: &[usize], dist: Distribution, seed: u64) -> Result<Tensor>;
}

/// Read a tensor natively, blocking until the GPU is done.
#[cfg(not(target_arch = "wasm32"))]
pub fn read_blocking(backend: &dyn Backend, t: &Tensor) -> Result<Vec<f32>> {
    pollster::block_on(backend.read(t))
}

// ---------------------------------------------------------------- shape rules shared by both backends

/// Validate a matmul; returns (M, K, N).
pub fn matmul_shapes(a: &[usize], b: &[usize], ta: bool, tb: bool) -> Result<[usize; 3]> {
    let [a0, a1] = crate::tensor::dims2(a, "matmul left operand")?;
    let [b0, b1] = crate::tensor::dims2(b, "matmul right operand")?;
    let (m, k) = if ta { (a1, a0) } else { (a0, a1) };
    let (k2, n) = if tb { (b1, b0) } else { (b0, b1) };
    if k != k2 {
        return Err(Error::Shape(format!(
            "matmul: inner dimensions differ: {a:?}{} x {b:?}{} ({k} vs {k2})",
            if ta { "^T" } else { "" },
            if tb { "^T" } else { "" }
        )));
    }
    if m * k * n == 0 {
        return Err(Error::Shape(format!(
            "matmul: zero-size operand {a:?} x {b:?}"
        )));
    }
    Ok([m, k, n])
}

/// Validate clamp's bounds (NaN is refused too).
pub fn clamp_bounds(lo: f32, hi: f32) -> Result<()> {
    #[allow(clippy::neg_cmp_op_on_partial_ord)]
    if !(lo <= hi) {
        return Err(Error::Invalid(format!(
            "clamp: lower bound {lo} must be <= upper bound {hi}"
        )));
    }
    Ok(())
}

impl LossKind {
    /// The loss's name in error messages.
    pub fn name(self) -> &'static str {
        match self {
            LossKind::Mse => "mse loss",
            LossKind::L1 => "l1 loss",
            LossKind::BceWithLogits => "bce-with-logits loss",
            LossKind::SoftmaxCrossEntropy => "softmax cross-entropy loss",
            LossKind::LeastSquares => "least-squares loss",
        }
    }
}

/// Validate loss_backward's scale `gloss`: one element.
pub fn loss_gradient_shape(kind: LossKind, gloss: &[usize]) -> Result<()> {
    if crate::tensor::numel(gloss) != 1 {
        return Err(Error::Shape(format!(
            "{} backward: the loss gradient must have one element, got shape {gloss:?}",
            kind.name()
        )));
    }
    Ok(())
}

/// Validate an optimizer step's tensors: the gradient and every state tensor shaped like the
/// parameter, and no two of them the same storage (the parameter and state are updated in place).
pub fn optimizer_operands(
    op: &str,
    p: &Tensor,
    g: &Tensor,
    states: &[(&Tensor, &str)],
) -> Result<()> {
    non_empty(p.shape(), &format!("{op} parameter"))?;
    for (t, name) in [(g, "gradient")].iter().chain(states) {
        let what = format!("{op}: parameter vs {name}");
        crate::tensor::same_shape(p.shape(), t.shape(), &what)?;
    }
    let written: Vec<(&Tensor, &str)> = [(p, "parameter")]
        .into_iter()
        .chain(states.iter().copied())
        .collect();
    distinct_from_written(op, &written, &[(g, "gradient")])
}

/// Validate bias_add: x rank >= 2 and b == [x.shape[1]]; returns (outer, C, inner).
pub fn bias_shapes(x: &[usize], b: &[usize]) -> Result<[usize; 3]> {
    if x.len() < 2 {
        return Err(Error::Shape(format!(
            "bias_add: input must have rank >= 2 (N, C, ...), got {x:?}"
        )));
    }
    non_empty(x, "bias_add input")?;
    if b != [x[1]] {
        return Err(Error::Shape(format!(
            "bias_add: bias must have shape [{}], got {b:?}",
            x[1]
        )));
    }
    Ok([x[0], x[1], x[2..].iter().product()])
}
