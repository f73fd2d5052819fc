//! Layers: each owns its `Param`s (named as PyTorch's state_dict would name them) and has a
//! forward that only composes graph ops. Inputs are checked here first so a wrong shape gets a
//! message naming the layer.

use super::init::{init_tensor, Init};
use super::Module;
use crate::autodiff::{Graph, Param, Var};
use crate::backend::{Backend, BinaryOp, Conv2dParams, ConvTranspose2dParams, Hw};
use crate::tensor::Tensor;
use crate::{Error, Result};

fn join(prefix: &str, name: &str) -> String {
    if prefix.is_empty() {
        name.to_string()
    } else {
        format!("{prefix}.{name}")
    }
}

fn check_channels(
    layer: &str,
    g: &Graph<'_>,
    x: Var,
    rank: usize,
    dim1: usize,
    expect: &str,
) -> Result<()> {
    let s = g.shape(x)?;
    if s.len() != rank || s[1] != dim1 {
        return Err(Error::Shape(format!(
            "layer {layer}: expected input {expect}, got {s:?}"
        )));
    }
    Ok(())
}

/// A weighted layer's `weight` (Kaiming normal for a following ReLU) and, when `bias`, its
/// zero `bias` of `bias_len`.
fn new_weight_and_bias(
    b: &dyn Backend,
    name: &str,
    weight_shape: &[usize],
    bias: bool,
    bias_len: usize,
    seed: u64,
) -> Result<(Param, Option<Param>)> {
    let weight = Param::new(
        join(name, "weight"),
        init_tensor(b, weight_shape, Init::RELU, seed)?,
    );
    let bias = if bias {
        Some(Param::new(join(name, "bias"), b.zeros(&[bias_len])?))
    } else {
        None
    };
    Ok((weight, bias))
}

/// The graph leaves of a weight and its optional bias.
fn weight_and_bias_vars(
    g: &mut Graph<'_>,
    weight: &Param,
    bias: Option<&Param>,
) -> (Var, Option<Var>) {
    (g.param(weight), bias.map(|p| g.param(p)))
}

/// A weighted layer's parameters in state_dict order: the weight, then the bias if any.
fn weight_then_bias<'a>(weight: &'a Param, bias: Option<&'a Param>) -> Vec<&'a Param> {
    std::iter::once(weight).chain(bias).collect()
}

/// What tells the two convolution layers apart, implemented by their parameter types:
/// `Conv<Conv2dParams>` is `Conv2d`, `Conv<ConvTranspose2dParams>` is `ConvTranspose2d`.
pub trait ConvKind: Copy {
    /// The layer's name in messages.
    const LAYER: &'static str;
    /// The weight's shape, laid out as PyTorch does.
    fn weight_shape(cin: usize, cout: usize, k: Hw) -> [usize; 4];
    /// The input channels a weight of that shape takes.
    fn in_channels(weight_shape: &[usize]) -> usize;
    /// The op on the tape with these settings.
    fn apply(self, g: &mut Graph<'_>, x: Var, w: Var, b: Option<Var>) -> Result<Var>;
}

impl ConvKind for Conv2dParams {
    const LAYER: &'static str = "Conv2d";
    fn weight_shape(cin: usize, cout: usize, k: Hw) -> [usize; 4] {
        [cout, cin, k.h, k.w]
    }
    fn in_channels(weight_shape: &[usize]) -> usize {
        weight_shape[1]
    }
    fn apply(self, g: &mut Graph<'_>, x: Var, w: Var, b: Option<Var>) -> Result<Var> {
        g.conv2d(x, w, b, self)
    }
}

impl ConvKind for ConvTranspose2dParams {
    const LAYER: &'static str = "ConvTranspose2d";
    fn weight_shape(cin: usize, cout: usize, k: Hw) -> [usize; 4] {
        [cin, cout, k.h, k.w]
    }
    fn in_channels(weight_shape: &[usize]) -> usize {
        weight_shape[0]
    }
    fn apply(self, g: &mut Graph<'_>, x: Var, w: Var, b: Option<Var>) -> Result<Var> {
        g.conv_transpose2d(x, w, b, self)
    }
}

/// 2-d convolution, weight (Cout, Cin, kh, kw) (`k`: a size or (kh, kw)), optional bias (Cout). Weights start Kaiming
/// normal for a following ReLU, biases at zero; `reinit` changes that.
pub type Conv2d = Conv<Conv2dParams>;

/// Transposed 2-d convolution, weight (Cin, Cout, kh, kw) as PyTorch, optional bias (Cout);
/// initialised as `Conv2d`.
pub type ConvTranspose2d = Conv<ConvTranspose2dParams>;

/// Either convolution layer (see `Conv2d`, `ConvTranspose2d`): the weight, the optional bias and
/// the op's settings `p`.
pub struct Conv<P> {
    pub name: String,
    pub weight: Param,
    pub bias: Option<Param>,
    pub p: P,
}

impl<P: ConvKind> Conv<P> {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        b: &dyn Backend,
        name: &str,
        cin: usize,
        cout: usize,
        k: impl Into<Hw>,
        p: P,
        bias: bool,
        seed: u64,
    ) -> Result<Conv<P>> {
        let k = k.into();
        if cin == 0 || cout == 0 || k.h == 0 || k.w == 0 {
            return Err(Error::Invalid(format!(
                "layer {name}: {} needs cin, cout, k >= 1 (got {cin}, {cout}, {k})",
                P::LAYER
            )));
        }
        let weight_shape = P::weight_shape(cin, cout, k);
        let (weight, bias) = new_weight_and_bias(b, name, &weight_shape, bias, cout, seed)?;
        Ok(Conv {
            name: name.to_string(),
            weight,
            bias,
            p,
        })
    }
    /// Re-initialise the weight in place (bias back to zero).
    pub fn reinit(&self, b: &dyn Backend, init: Init, seed: u64) -> Result<()> {
        reinit(b, &self.weight, self.bias.as_ref(), init, seed)
    }
}

impl<P: ConvKind> Module for Conv<P> {
    fn forward(&self, g: &mut Graph<'_>, x: Var) -> Result<Var> {
        let cin = P::in_channels(self.weight.shape());
        check_channels(&self.name, g, x, 4, cin, &format!("(N, {cin}, H, W)"))?;
        let (w, b) = weight_and_bias_vars(g, &self.weight, self.bias.as_ref());
        self.p.apply(g, x, w, b)
    }
    fn params(&self) -> Vec<&Param> {
        weight_then_bias(&self.weight, self.bias.as_ref())
    }
}

/// Fully connected: y = x W^T + b, x (N, in), W (out, in) as PyTorch, b (out).
pub struct Linear {
    pub name: String,
    pub weight: Param,
    pub bias: Option<Param>,
}

impl Linear {
    pub fn new(
        b: &dyn Backend,
        name: &str,
        inf: usize,
        outf: usize,
        bias: bool,
        seed: u64,
    ) -> Result<Linear> {
        if inf == 0 || outf == 0 {
            return Err(Error::Invalid(format!(
                "layer {name}: Linear needs in, out >= 1 (got {inf}, {outf})"
            )));
        }
        let (weight, bias) = new_weight_and_bias(b, name, &[outf, inf], bias, outf, seed)?;
        Ok(Linear {
            name: name.to_string(),
            weight,
            bias,
        })
    }
    pub fn reinit(&self, b: &dyn Backend, init: Init, seed: u64) -> Result<()> {
        reinit(b, &self.weight, self.bias.as_ref(), init, seed)
    }
}

impl Module for Linear {
    fn forward(&self, g: &mut Graph<'_>, x: Var) -> Result<Var> {
        let inf = self.weight.shape()[1];
        check_channels(
            &self.name,
            g,
            x,
            2,
            inf,
            &format!("(N, {inf}) (flatten images first)"),
        )?;
        let (w, b) = weight_and_bias_vars(g, &self.weight, self.bias.as_ref());
        g.linear(x, w, b)
    }
    fn params(&self) -> Vec<&Param> {
        weight_then_bias(&self.weight, self.bias.as_ref())
    }
}

/// BatchNorm2d: `weight` (gamma, starts at 1), `bias` (beta, 0) trainable; `running_mean` (0)
/// and `running_var` (1) are buffers updated in training mode. PyTorch's defaults
/// momentum 0.1, eps 1e-5. PyTorch's `num_batches_tracked` is not kept (weights loading
/// ignores it when present).
pub struct BatchNorm2d {
    pub name: String,
    pub weight: Param,
    pub bias: Param,
    pub running_mean: Param,
    pub running_var: Param,
    pub momentum: f32,
    pub eps: f32,
}

impl BatchNorm2d {
    pub fn new(b: &dyn Backend, name: &str, c: usize) -> Result<BatchNorm2d> {
        if c == 0 {
            return Err(Error::Invalid(format!(
                "layer {name}: BatchNorm2d needs >= 1 channel"
            )));
        }
        Ok(BatchNorm2d {
            name: name.to_string(),
            weight: Param::new(join(name, "weight"), b.fill(&[c], 1.0)?),
            bias: Param::new(join(name, "bias"), b.zeros(&[c])?),
            running_mean: Param::new(join(name, "running_mean"), b.zeros(&[c])?),
            running_var: Param::new(join(name, "running_var"), b.fill(&[c], 1.0)?),
            momentum: 0.1,
            eps: 1e-5,
        })
    }
}

impl BatchNorm2d {
    /// relu(forward(x)), fused in training (`Graph::batchnorm2d_relu`).
    pub fn forward_relu(&self, g: &mut Graph<'_>, x: Var) -> Result<Var> {
        self.apply(g, x, true)
    }

    fn apply(&self, g: &mut Graph<'_>, x: Var, relu: bool) -> Result<Var> {
        let c = self.weight.shape()[0];
        check_channels(&self.name, g, x, 4, c, &format!("(N, {c}, H, W)"))?;
        let gamma = g.param(&self.weight);
        let beta = g.param(&self.bias);
        let op = if relu {
            Graph::batchnorm2d_relu
        } else {
            Graph::batchnorm2d
        };
        op(
            g,
            x,
            gamma,
            beta,
            self.running_mean.value(),
            self.running_var.value(),
            self.momentum,
            self.eps,
        )
    }
}

impl Module for BatchNorm2d {
    fn forward(&self, g: &mut Graph<'_>, x: Var) -> Result<Var> {
        self.apply(g, x, false)
    }
    fn params(&self) -> Vec<&Param> {
        vec![&self.weight, &self.bias]
    }
    fn buffers(&self) -> Vec<&Param> {
        vec![&self.running_mean, &self.running_var]
    }
}

/// Recompute the running statistics of `bns` as exact averages over `batches` batches
/// (SWA's BatchNorm update; PyTorch's `momentum=None`): `forward(k)` must run the model that
/// holds them on batch k in training mode (no tape needed). Before each batch the statistics
/// are zeroed, so the layer's own update leaves `momentum * batch statistic`; those are summed
/// and divided by `momentum * batches`. The running mean is then the mean over all the batches'
/// values, the running variance the mean of the batches' unbiased variances. Weights and the
/// BatchNorm affine parameters are not touched; a layer's batch statistics in training mode
/// do not depend on its running ones, so zeroing them changes nothing else. On an error the
/// statistics are left partly updated.
pub fn recalibrate_batchnorm(
    b: &dyn Backend,
    bns: &[&BatchNorm2d],
    batches: usize,
    mut forward: impl FnMut(usize) -> Result<()>,
) -> Result<()> {
    if batches == 0 {
        return Err(Error::Invalid(
            "BatchNorm recalibration needs at least 1 batch".into(),
        ));
    }
    if let Some(bn) = bns
        .iter()
        .find(|bn| !(bn.momentum > 0.0 && bn.momentum <= 1.0))
    {
        return Err(Error::Invalid(format!(
            "layer {}: BatchNorm recalibration needs a momentum in (0, 1], got {}",
            bn.name, bn.momentum
        )));
    }
    let stats = |bn: &BatchNorm2d| {
        [
            bn.running_mean.value().clone(),
            bn.running_var.value().clone(),
        ]
    };
    let mut sums: Vec<[Tensor; 2]> = Vec::with_capacity(bns.len());
    for bn in bns {
        sums.push([
            b.zeros(bn.running_mean.shape())?,
            b.zeros(bn.running_var.shape())?,
        ]);
    }
    for k in 0..batches {
        for bn in bns {
            for t in stats(bn) {
                b.assign(&t, &b.zeros(t.shape())?)?;
            }
        }
        forward(k)?;
        for (bn, sum) in bns.iter().zip(&mut sums) {
            for (t, s) in stats(bn).iter().zip(sum.iter_mut()) {
                let scaled = b.affine(t, 1.0 / bn.momentum, 0.0)?;
                *s = b.binary(BinaryOp::Add, s, &scaled)?;
            }
        }
    }
    for (bn, sum) in bns.iter().zip(&sums) {
        for (t, s) in stats(bn).iter().zip(sum) {
            b.assign(t, &b.affine(s, 1.0 / batches as f32, 0.0)?)?;
        }
    }
    Ok(())
}

fn reinit(
    b: &dyn Backend,
    weight: &Param,
    bias: Option<&Param>,
    init: Init,
    seed: u64,
) -> Result<()> {
    b.assign(weight.value(), &init_tensor(b, weight.shape(), init, seed)?)?;
    if let Some(bias) = bias {
        b.assign(bias.value(), &b.zeros(bias.shape())?)?;
    }
    Ok(())
}
