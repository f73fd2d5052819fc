//! DnCNN (Zhang, Zuo, Chen, Meng, Zhang 2017, "Beyond a Gaussian Denoiser"): a plain stack of
//! 3x3 convolutions that predicts the noise of an image (residual learning); the denoised image
//! is the input minus that prediction.
//!
//! ```text
//! x (N, C, H, W), C = 1 (gray) or 3 (colour)
//! dncnn.0       conv C -> width, 3x3 pad 1, bias        + ReLU
//! dncnn.{3i+2}  conv width -> width, 3x3 pad 1, no bias
//! dncnn.{3i+3}  BatchNorm2d(width)                       + ReLU      i = 0 .. depth-3
//! dncnn.{3(depth-2)+2}  conv width -> C, 3x3 pad 1, no bias  = predicted noise v
//! output = x - v
//! ```
//! The names are those of PyTorch's `nn.Sequential` attribute `dncnn` holding
//! [Conv2d, ReLU, (Conv2d, BatchNorm2d, ReLU) x (depth-2), Conv2d] (the ReLUs take indices but
//! hold no weights), so a file from here loads into that PyTorch module (`strict=False` only
//! for BatchNorm's `num_batches_tracked`). `depth` counts the conv layers (17 in the paper, 20
//! for DnCNN-B); the receptive field is (2 depth + 1)^2, i.e. radius `depth`, which is the
//! halo tiled inference needs.
//!
//! Training (`train_step`): MSE between the predicted and the true residual (noisy - clean),
//! `nn::Adam`, whose state a checkpoint saves and restores exactly (`checkpoint_bytes`,
//! `restore_checkpoint`).

use std::collections::HashMap;

use crate::autodiff::{Graph, Param, Var};
use crate::backend::{Backend, Conv2dParams, LossKind};
use crate::data::images::Image;
use crate::data::patches::{dihedral, dihedral_inverse};
use crate::models::dncnn_fused::{DnCnnFused, PingPong};
use crate::nn::{Adam, BatchNorm2d, Conv2d, Init, Module, Optimizer};
use crate::tensor::Tensor;
use crate::tiling::{self, crop, paste};
use crate::weights::{self, NamedTensor};
use crate::{Error, Result};

/// Shape of a DnCNN.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DnCnnConfig {
    /// image channels in and out: 1 (gray) or 3 (colour)
    pub channels: usize,
    /// number of conv layers (>= 2)
    pub depth: usize,
    /// feature channels of the hidden layers
    pub width: usize,
}

impl DnCnnConfig {
    /// The paper's DnCNN-S: depth 17, width 64.
    pub fn paper(channels: usize) -> DnCnnConfig {
        DnCnnConfig {
            channels,
            depth: 17,
            width: 64,
        }
    }
    pub fn validate(&self) -> Result<()> {
        if self.channels != 1 && self.channels != 3 {
            return Err(Error::Invalid(format!(
                "DnCNN: channels must be 1 (gray) or 3 (colour), got {}",
                self.channels
            )));
        }
        if self.depth < 2 || self.depth > 100 {
            return Err(Error::Invalid(format!(
                "DnCNN: depth must be in 2..=100, got {}",
                self.depth
            )));
        }
        if self.width == 0 || self.width > 1024 {
            return Err(Error::Invalid(format!(
                "DnCNN: width must be in 1..=1024, got {}",
                self.width
            )));
        }
        Ok(())
    }
    /// Receptive-field radius in pixels (one per 3x3 conv): the halo tiling needs.
    pub fn receptive_radius(&self) -> usize {
        self.depth
    }
    /// Number of trainable parameters.
    pub fn parameter_count(&self) -> usize {
        let (c, w, d) = (self.channels, self.width, self.depth);
        (c * w * 9 + w) + (d - 2) * (w * w * 9 + 2 * w) + w * c * 9
    }
    /// Index in the `dncnn` Sequential of the last conv.
    fn last_index(&self) -> usize {
        3 * (self.depth - 2) + 2
    }
}

pub struct DnCnn {
    pub config: DnCnnConfig,
    pub first: Conv2d,
    pub middle: Vec<(Conv2d, BatchNorm2d)>,
    pub last: Conv2d,
}

const SAME: Conv2dParams = Conv2dParams::new(1, 1, 1);

impl DnCnn {
    /// A freshly initialised DnCNN (Kaiming normal convs, the last one scaled by 0.1, BatchNorm
    /// gamma 1 beta 0); same seed, same weights on every backend.
    pub fn new(b: &dyn Backend, config: DnCnnConfig, seed: u64) -> Result<DnCnn> {
        config.validate()?;
        let DnCnnConfig {
            channels,
            depth,
            width,
        } = config;
        let seed = seed.wrapping_mul(1000);
        let first = Conv2d::new(b, "dncnn.0", channels, width, 3, SAME, true, seed)?;
        let mut middle = Vec::with_capacity(depth - 2);
        for i in 0..depth - 2 {
            let conv = Conv2d::new(
                b,
                &format!("dncnn.{}", 3 * i + 2),
                width,
                width,
                3,
                SAME,
                false,
                seed + 1 + i as u64,
            )?;
            let bn = BatchNorm2d::new(b, &format!("dncnn.{}", 3 * i + 3), width)?;
            middle.push((conv, bn));
        }
        let last = Conv2d::new(
            b,
            &format!("dncnn.{}", config.last_index()),
            width,
            channels,
            3,
            SAME,
            false,
            seed + depth as u64,
        )?;
        // the last layer starts at a tenth of Kaiming's scale: the untrained network is then
        // close to the identity denoiser (predicted noise ~ 0), so the first steps start from a
        // loss near the noise variance instead of ~0.5
        let std = 0.1 * (2.0 / (9 * width) as f32).sqrt();
        last.reinit(b, Init::Normal { mean: 0.0, std }, seed + depth as u64)?;
        Ok(DnCnn {
            config,
            first,
            middle,
            last,
        })
    }

    /// The predicted noise v(x) (same shape as x).
    pub fn predict_noise(&self, g: &mut Graph<'_>, x: Var) -> Result<Var> {
        let s = g.shape(x)?;
        if s.len() != 4 || s[1] != self.config.channels {
            return Err(Error::Shape(format!(
                "DnCNN: expected images (N, {}, H, W), got {s:?}",
                self.config.channels
            )));
        }
        let h = self.first.forward(g, x)?;
        let mut h = g.relu(h)?;
        for (conv, bn) in &self.middle {
            let y = conv.forward(g, h)?;
            h = bn.forward_relu(g, y)?;
        }
        self.last.forward(g, h)
    }

    /// A DnCNN whose shape is read from a weights file (the conv weights' names and shapes),
    /// with the file's values loaded. A training checkpoint works too (its optimizer state,
    /// the "adam.*" tensors, is ignored).
    pub fn from_weights(b: &dyn Backend, bytes: &[u8]) -> Result<DnCnn> {
        let found: Vec<NamedTensor> = weights::from_bytes(bytes)?
            .into_iter()
            .filter(|t| !weights::is_optimizer_state(&t.name))
            .collect();
        let config = config_from_tensors(&found)?;
        let model = DnCnn::new(b, config, 0)?;
        let state = model.state();
        let expected: Vec<(&str, &[usize])> = state.iter().map(|p| (p.name(), p.shape())).collect();
        weights::check(&expected, &found)?;
        let by_name: HashMap<&str, &NamedTensor> =
            found.iter().map(|t| (t.name.as_str(), t)).collect();
        for p in &state {
            let t = by_name[p.name()];
            b.assign(p.value(), &b.upload(&t.shape, &t.data)?)?;
        }
        Ok(model)
    }

    /// Serialised weights (params and BatchNorm running statistics) with metadata.
    pub async fn to_weights(
        &self,
        b: &dyn Backend,
        mut meta: HashMap<String, String>,
    ) -> Result<Vec<u8>> {
        meta.insert("model".into(), "DnCNN".into());
        meta.insert("channels".into(), self.config.channels.to_string());
        meta.insert("depth".into(), self.config.depth.to_string());
        meta.insert("width".into(), self.config.width.to_string());
        weights::save_params(b, &self.state(), Some(meta)).await
    }

    /// Denoise a batch (N, C, H, W) in evaluation mode (BatchNorm running statistics), no
    /// gradients kept. Returns the denoised tensor on the backend.
    ///
    /// Fused inference form of the network ([`DnCnnFused`]: one launch per layer, two
    /// activation buffers), equal to [`Module::forward`] in evaluation mode up to float
    /// rounding; no graph keeps the activations.
    pub fn denoise_tensor(&self, b: &dyn Backend, x: &Tensor) -> Result<Tensor> {
        self.check_input(x)?;
        DnCnnFused::new(b, self)?.denoise(b, x)
    }

    /// Layer `k` (0..depth) of the inference form, applied to `h` (the output of layer k - 1;
    /// `x` itself for k = 0): a conv (BatchNorm folded in, at each call) with its ReLU for
    /// k < depth - 1, the feature maps the page's activation view shows; the last layer gives
    /// the denoised image x - v(h). Calling it for k = 0, 1, ... is the unfused twin of
    /// [`DnCnnFused`] (which folds once and reuses two buffers).
    pub fn inference_layer(
        &self,
        b: &dyn Backend,
        k: usize,
        x: &Tensor,
        h: &Tensor,
    ) -> Result<Tensor> {
        fn bias(c: &Conv2d) -> Option<&Tensor> {
            c.bias.as_ref().map(|p| p.value())
        }
        let depth = self.config.depth;
        if k == 0 {
            b.conv2d_relu(
                h,
                self.first.weight.value(),
                bias(&self.first),
                self.first.p,
            )
        } else if k < depth - 1 {
            let (conv, bn) = &self.middle[k - 1];
            let (w, bf) = fold_batchnorm(b, conv, bn)?;
            b.conv2d_relu(h, &w, Some(&bf), conv.p)
        } else if k == depth - 1 {
            let v = b.conv2d(h, self.last.weight.value(), bias(&self.last), self.last.p)?;
            b.binary(crate::backend::BinaryOp::Sub, x, &v)
        } else {
            Err(Error::Invalid(format!(
                "DnCNN layer {k} does not exist (depth {depth})"
            )))
        }
    }

    /// The BatchNorm layers of the middle convs, in order.
    pub fn batchnorms(&self) -> Vec<&BatchNorm2d> {
        self.middle.iter().map(|(_, bn)| bn).collect()
    }

    /// Recompute the BatchNorm running statistics as exact averages over `batches` batches in
    /// training mode, no weight changed (`nn::recalibrate_batchnorm`): `noisy(k)` gives the
    /// k-th batch of noisy inputs (N, C, H, W). During training they are a moving average
    /// (momentum 0.1) of the last ~10-20 batches, so they follow what those batches happened
    /// to hold (e.g. their share of toned patches).
    pub fn recalibrate_batchnorm(
        &self,
        b: &dyn Backend,
        batches: usize,
        mut noisy: impl FnMut(usize) -> Result<Tensor>,
    ) -> Result<()> {
        crate::nn::recalibrate_batchnorm(b, &self.batchnorms(), batches, |k| {
            let x = noisy(k)?;
            let mut g = Graph::new(b);
            g.set_grad_enabled(false);
            let xv = g.constant(x);
            self.predict_noise(&mut g, xv)?;
            Ok(())
        })
    }

    /// An error unless `x` is a batch of images (N, C, H, W) with the model's channels.
    pub fn check_input(&self, x: &Tensor) -> Result<()> {
        let s = x.shape();
        if s.len() != 4 || s[1] != self.config.channels {
            return Err(Error::Shape(format!(
                "DnCNN: expected images (N, {}, H, W), got {s:?}",
                self.config.channels
            )));
        }
        Ok(())
    }
}

/// The weight and bias of the conv equal to `conv` followed by `bn` in evaluation mode:
/// w' = w * gamma / sqrt(var + eps) per output channel, b' = (b - mean) * gamma / sqrt(var + eps)
/// + beta. Both are BatchNorm's own evaluation op on the backend (no read-back): w' is the
/// weight seen as (1, Cout, Cin k, k) normalised with mean 0 and beta 0; b' is the conv's bias
/// (or zeros) seen as (1, Cout, 1, 1) normalised as usual.
pub fn fold_batchnorm(
    b: &dyn Backend,
    conv: &Conv2d,
    bn: &BatchNorm2d,
) -> Result<(Tensor, Tensor)> {
    let ws = conv.weight.shape();
    let (cout, rest) = (ws[0], ws[1] * ws[2]);
    let zeros = b.zeros(&[cout])?;
    let as_planes = conv.weight.value().reshape(&[1, cout, rest, ws[3]])?;
    let (gamma, beta) = (bn.weight.value(), bn.bias.value());
    let (mean, var) = (bn.running_mean.value(), bn.running_var.value());
    let w = b
        .batchnorm2d_eval(&as_planes, gamma, &zeros, &zeros, var, bn.eps)?
        .reshape(ws)?;
    let bias0 = match &conv.bias {
        Some(p) => p.value().clone(),
        None => zeros.clone(),
    };
    let bf = b
        .batchnorm2d_eval(
            &bias0.reshape(&[1, cout, 1, 1])?,
            gamma,
            beta,
            mean,
            var,
            bn.eps,
        )?
        .reshape(&[cout])?;
    Ok((w, bf))
}

impl Module for DnCnn {
    /// The denoised image x - v(x).
    fn forward(&self, g: &mut Graph<'_>, x: Var) -> Result<Var> {
        let v = self.predict_noise(g, x)?;
        g.sub(x, v)
    }
    fn params(&self) -> Vec<&Param> {
        let mut p = self.first.params();
        for (conv, bn) in &self.middle {
            p.extend(conv.params());
            p.extend(bn.params());
        }
        p.extend(self.last.params());
        p
    }
    fn buffers(&self) -> Vec<&Param> {
        self.middle
            .iter()
            .flat_map(|(_, bn)| bn.buffers())
            .collect()
    }
}

/// Recover (channels, depth, width) from the conv weights "dncnn.<i>.weight" of rank 4.
pub fn config_from_tensors(ts: &[NamedTensor]) -> Result<DnCnnConfig> {
    let mut convs: Vec<(usize, &NamedTensor)> = ts
        .iter()
        .filter(|t| t.shape.len() == 4)
        .filter_map(|t| {
            t.name
                .strip_prefix("dncnn.")?
                .strip_suffix(".weight")?
                .parse::<usize>()
                .ok()
                .map(|i| (i, t))
        })
        .collect();
    convs.sort_by_key(|(i, _)| *i);
    let (Some((0, first)), Some((_, last))) = (convs.first(), convs.last()) else {
        return Err(Error::Weights(
            "not a DnCNN weights file: no 'dncnn.0.weight' conv weight".into(),
        ));
    };
    let config = DnCnnConfig {
        channels: first.shape[1],
        depth: convs.len(),
        width: first.shape[0],
    };
    config
        .validate()
        .map_err(|e| Error::Weights(format!("not a usable DnCNN weights file: {e}")))?;
    if last.shape[0] != config.channels {
        return Err(Error::Weights(format!(
            "DnCNN weights: the last conv outputs {} channels, the first takes {}",
            last.shape[0], config.channels
        )));
    }
    Ok(config)
}

// ---------------------------------------------------------------- training

/// Adam as the paper trains DnCNN: betas (0.9, 0.999), eps 1e-8, no weight decay.
pub fn adam(lr: f32) -> Adam {
    Adam::new(lr, 0.9, 0.999)
}

/// One training step on a batch: loss = mean((v(noisy) - (noisy - clean))^2). Returns the loss
/// tensor ([1]) without reading it back.
pub fn train_step(
    b: &dyn Backend,
    model: &DnCnn,
    opt: &mut Adam,
    noisy: &Tensor,
    clean: &Tensor,
) -> Result<Tensor> {
    let mut g = Graph::new(b);
    let y = g.constant(noisy.clone());
    let residual = b.binary(crate::backend::BinaryOp::Sub, noisy, clean)?;
    let r = g.constant(residual);
    let v = model.predict_noise(&mut g, y)?;
    let loss = g.loss(LossKind::Mse, v, r)?;
    g.backward(loss)?;
    opt.step(&g, &model.params())?;
    Ok(g.value(loss)?.clone())
}

/// Step-wise learning-rate decay: `lr0`, times 0.1 from 60% of `total` steps, times 0.01 from 85%.
pub fn lr_at(lr0: f32, step: u64, total: u64) -> f32 {
    let f = step as f64 / total.max(1) as f64;
    if f < 0.6 {
        lr0
    } else if f < 0.85 {
        lr0 * 0.1
    } else {
        lr0 * 0.01
    }
}

/// A training checkpoint as safetensors bytes: the model state, the Adam moments
/// ("adam.m.<name>", "adam.v.<name>"; zeros for a parameter not yet stepped), and metadata with
/// `step`, `adam_t` (Adam's step count, the same for every parameter: each has a gradient in
/// every step), `adam_lr` and the caller's entries (training arguments). The RNG position is the
/// step (see `data::patches`).
pub async fn checkpoint_bytes(
    b: &dyn Backend,
    model: &DnCnn,
    opt: &Adam,
    step: u64,
    mut meta: HashMap<String, String>,
) -> Result<Vec<u8>> {
    let mut tensors = Vec::new();
    for p in model.state() {
        tensors.push(NamedTensor {
            name: p.name().to_string(),
            shape: p.shape().to_vec(),
            data: b.read(p.value()).await?,
        });
    }
    let mut adam_t = 0;
    for p in model.params() {
        let (m, v) = match opt.moments(p) {
            Some((m, v, t)) => {
                adam_t = adam_t.max(t);
                (b.read(m).await?, b.read(v).await?)
            }
            None => (vec![0.0; p.value().numel()], vec![0.0; p.value().numel()]),
        };
        for (kind, data) in [("m", m), ("v", v)] {
            tensors.push(NamedTensor {
                name: format!("adam.{kind}.{}", p.name()),
                shape: p.shape().to_vec(),
                data,
            });
        }
    }
    meta.insert("step".into(), step.to_string());
    meta.insert("adam_t".into(), adam_t.to_string());
    meta.insert("adam_lr".into(), opt.lr.to_string());
    meta.insert("channels".into(), model.config.channels.to_string());
    meta.insert("depth".into(), model.config.depth.to_string());
    meta.insert("width".into(), model.config.width.to_string());
    weights::to_bytes(&tensors, Some(meta))
}

/// Restore a checkpoint into a model of the same shape and its optimizer (every parameter's
/// moments, and `adam_t` as its step count); returns (step, metadata).
pub fn restore_checkpoint(
    b: &dyn Backend,
    model: &DnCnn,
    opt: &mut Adam,
    bytes: &[u8],
) -> Result<(u64, HashMap<String, String>)> {
    let meta = weights::metadata(bytes)?;
    let found = weights::from_bytes(bytes)?;
    let by_name: HashMap<&str, &NamedTensor> = found.iter().map(|t| (t.name.as_str(), t)).collect();
    let state = model.state();
    let params = model.params();
    let mut expected: Vec<(String, Vec<usize>)> = state
        .iter()
        .map(|p| (p.name().to_string(), p.shape().to_vec()))
        .collect();
    for p in &params {
        expected.push((format!("adam.m.{}", p.name()), p.shape().to_vec()));
        expected.push((format!("adam.v.{}", p.name()), p.shape().to_vec()));
    }
    let exp_refs: Vec<(&str, &[usize])> = expected
        .iter()
        .map(|(n, s)| (n.as_str(), s.as_slice()))
        .collect();
    weights::check(&exp_refs, &found)?;
    let num = |k: &str| -> Result<u64> {
        meta.get(k)
            .and_then(|v| v.parse().ok())
            .ok_or_else(|| Error::Weights(format!("checkpoint has no valid '{k}' entry")))
    };
    let step = num("step")?;
    let t = num("adam_t")? as u32;
    let put = |dst: &Tensor, name: &str| -> Result<()> {
        let src = by_name[name];
        b.assign(dst, &b.upload(&src.shape, &src.data)?)
    };
    for p in &state {
        put(p.value(), p.name())?;
    }
    let upload = |name: String| -> Result<Tensor> {
        let src = by_name[name.as_str()];
        b.upload(&src.shape, &src.data)
    };
    for p in &params {
        let m = upload(format!("adam.m.{}", p.name()))?;
        let v = upload(format!("adam.v.{}", p.name()))?;
        opt.set_moments(p, m, v, t)?;
    }
    Ok((step, meta))
}

// ---------------------------------------------------------------- inference on images

/// Bytes of one activation of a CPU tile. The CPU convs keep no im2col matrix (they work in
/// cache-sized blocks), so a tile's memory is the two or three activations alive at once in
/// `DnCnn::denoise_tensor`: at width 48 a 571-pixel core (a 512x512 image in one tile), about
/// 200 MB per tile whatever the size of the image.
pub const CPU_TILE_ACTIVATION_BYTES: u64 = 64 << 20;

/// Output tile side for this model on this backend (see `tiling::core_for_limit`): the largest
/// buffer is an activation (width floats per pixel), within the GPU's binding limit, and on
/// the CPU within `CPU_TILE_ACTIVATION_BYTES`.
pub fn tile_core(b: &dyn Backend, config: &DnCnnConfig) -> Result<usize> {
    let info = b.info();
    let limit = if info.kind == "cpu" {
        2 * CPU_TILE_ACTIVATION_BYTES // core_for_limit budgets half of a binding limit
    } else {
        info.max_binding_bytes
    };
    let per_pixel = config.width.max(config.channels);
    tiling::core_for_limit(limit, per_pixel, config.receptive_radius())
}

/// Denoise one planar crop (C, h, w) of an image and read it back. With `ensemble` the result is
/// the mean of the model's outputs on the 8 flips/rotations of the crop, each turned back
/// (geometric self-ensemble: 8 times the work, a little more PSNR). Each pass is read back
/// before the next is queued, so the peak memory is that of one pass (a GPU frees a pass's
/// activations only once its work is done). [`CropSteps`] does the same in short steps.
pub async fn denoise_crop(
    b: &dyn Backend,
    model: &DnCnn,
    crop: &[f32],
    h: usize,
    w: usize,
    ensemble: bool,
) -> Result<Vec<f32>> {
    let mut run = CropSteps::new(model, crop.to_vec(), h, w, ensemble)?;
    while !run.finished() {
        run.queue_layer(b, model)?;
        if run.at_pass_end() {
            run.settle(b).await?;
        }
    }
    run.output()
}

/// [`denoise_crop`] one layer at a time, so that a caller can spread a crop over several short
/// calls (the page on a slow adapter: progress inside a tile, and a Pause or Cancel that waits
/// for a few layers at most). `queue_layer` queues the next layer on the backend; `settle`
/// waits until the work queued so far is done (at the end of a pass it reads the pass's output
/// back; mid-pass it reads one number computed from the activation, so no more than the queued
/// layers are ever in flight). Passes: 1, or 8 with the self-ensemble.
pub struct CropSteps {
    crop: Vec<f32>,
    c: usize,
    h: usize,
    w: usize,
    depth: usize,
    modes: Vec<u8>,
    /// layers queued in all (pass * depth + layer)
    queued: usize,
    /// the current pass's input and its latest activation on the backend
    x: Option<Tensor>,
    act: Option<Tensor>,
    sum: Vec<f32>,
    /// the model's fused layers (made at the first layer, kept for every pass) and the two
    /// activation buffers they alternate between
    plan: Option<DnCnnFused>,
    bufs: PingPong,
}

impl CropSteps {
    pub fn new(
        model: &DnCnn,
        crop: Vec<f32>,
        h: usize,
        w: usize,
        ensemble: bool,
    ) -> Result<CropSteps> {
        let c = model.config.channels;
        if h == 0 || w == 0 || crop.len() != c * h * w {
            return Err(Error::Invalid(format!(
                "DnCNN: {} values for a {c} x {h} x {w} crop",
                crop.len()
            )));
        }
        // mode 0 is the identity, so one pass is the plain model
        let modes = if ensemble { (0..8).collect() } else { vec![0] };
        Ok(CropSteps {
            sum: vec![0.0; crop.len()],
            crop,
            c,
            h,
            w,
            depth: model.config.depth,
            modes,
            queued: 0,
            x: None,
            act: None,
            plan: None,
            bufs: PingPong::default(),
        })
    }

    /// Layers in all (passes x depth).
    pub fn total(&self) -> usize {
        self.modes.len() * self.depth
    }

    /// Layers queued so far.
    pub fn queued(&self) -> usize {
        self.queued
    }

    /// Every layer is queued and every pass read back: `output` may be called.
    pub fn finished(&self) -> bool {
        self.queued == self.total() && self.act.is_none()
    }

    /// The last layer of a pass is queued and not read back yet.
    pub fn at_pass_end(&self) -> bool {
        self.act.is_some() && self.queued % self.depth == 0
    }

    /// Queue the next layer (a pass's first layer uploads its flipped/rotated input). An error
    /// when every layer is queued, or when a pass's output awaits `settle`.
    pub fn queue_layer(&mut self, b: &dyn Backend, model: &DnCnn) -> Result<()> {
        if self.queued == self.total() || self.at_pass_end() {
            return Err(Error::Invalid(
                "DnCNN crop: no layer to queue (settle first)".into(),
            ));
        }
        if model.config.channels != self.c || model.config.depth != self.depth {
            return Err(Error::Invalid(
                "DnCNN crop: the model changed during the run".into(),
            ));
        }
        let k = self.queued % self.depth;
        if k == 0 {
            let mode = self.modes[self.queued / self.depth];
            let (x, hm, wm) = dihedral(&self.crop, self.c, self.h, self.w, mode);
            self.x = Some(b.upload(&[1, self.c, hm, wm], &x)?);
        }
        let x = self
            .x
            .as_ref()
            .expect("a pass's input is uploaded at its first layer");
        let h = self.act.as_ref().unwrap_or(x);
        if self.plan.is_none() {
            self.plan = Some(DnCnnFused::new(b, model)?);
        }
        let plan = self.plan.as_ref().expect("made above");
        let next = plan.layer(b, k, x, h, &mut self.bufs)?;
        self.act = Some(next);
        self.queued += 1;
        Ok(())
    }

    /// Wait for the queued work: at a pass's end read its output back and add it to the mean;
    /// mid-pass read one number recorded after the queued layers (so the wait is theirs).
    pub async fn settle(&mut self, b: &dyn Backend) -> Result<()> {
        let Some(act) = self.act.as_ref() else {
            return Ok(());
        };
        if !self.at_pass_end() {
            // one number recorded after the queued layers: its read waits for them (the GPU
            // runs a queue in order). Of the input, which is f32 where the activations may be
            // f16 tensors that no op but the fused conv reads.
            let x = self.x.as_ref().unwrap_or(act);
            b.read(&b.sum(x)?).await?;
            return Ok(());
        }
        let (hm, wm) = (act.shape()[2], act.shape()[3]);
        let y = b.read(act).await?;
        // the pass that just ended
        let mode = self.modes[(self.queued - 1) / self.depth];
        let (y, _, _) = dihedral(&y, self.c, hm, wm, dihedral_inverse(mode));
        self.sum.iter_mut().zip(&y).for_each(|(s, v)| *s += v);
        self.act = None;
        self.x = None;
        Ok(())
    }

    /// The denoised crop (the mean over the passes), checked finite.
    pub fn output(self) -> Result<Vec<f32>> {
        if !self.finished() {
            return Err(Error::Invalid(format!(
                "DnCNN crop: {} of {} layers done",
                self.queued,
                self.total()
            )));
        }
        let passes = self.modes.len() as f32;
        let mut out = self.sum;
        // dividing by 1 (one pass) is exact
        out.iter_mut().for_each(|s| *s /= passes);
        crate::finite::check_image_output("the DnCNN", &out)?;
        Ok(out)
    }
}

/// Denoise a planar image with tiles of output side `core` (halo = the receptive radius), each
/// tile as [`denoise_crop`] (so `ensemble` too: the halo makes a tile's flips/rotations see the
/// same context as the whole image's would). `progress(done, total)` is called after each tile.
/// Returns the denoised planar data (not clamped). Reads each tile back asynchronously, so the
/// browser can await it; natively use [`denoise_tiled`].
pub async fn denoise_tiled_async(
    b: &dyn Backend,
    model: &DnCnn,
    img: &Image,
    core: usize,
    ensemble: bool,
    mut progress: impl FnMut(usize, usize),
) -> Result<Vec<f32>> {
    let c = model.config.channels;
    if img.channels != c {
        return Err(Error::Invalid(format!(
            "the model denoises {c}-channel images, the image has {}",
            img.channels
        )));
    }
    let tiles = tiling::plan(img.height, img.width, core, model.config.receptive_radius())?;
    let mut out = vec![0.0f32; img.data.len()];
    for (i, t) in tiles.iter().enumerate() {
        let yv = denoise_crop(b, model, &crop(img, t), t.in_h, t.in_w, ensemble).await?;
        paste(&mut out, img, t, &yv);
        progress(i + 1, tiles.len());
    }
    Ok(out)
}

/// [`denoise_tiled_async`], blocking (native).
#[cfg(not(target_arch = "wasm32"))]
pub fn denoise_tiled(
    b: &dyn Backend,
    model: &DnCnn,
    img: &Image,
    core: usize,
    ensemble: bool,
    progress: impl FnMut(usize, usize),
) -> Result<Vec<f32>> {
    pollster::block_on(denoise_tiled_async(b, model, img, core, ensemble, progress))
}

/// Denoise a whole image with the tile size chosen for the backend (native); `ensemble` as in
/// [`denoise_crop`].
#[cfg(not(target_arch = "wasm32"))]
pub fn denoise_image(b: &dyn Backend, model: &DnCnn, img: &Image, ensemble: bool) -> Result<Image> {
    let core = tile_core(b, &model.config)?;
    img.with_data(denoise_tiled(b, model, img, core, ensemble, |_, _| {})?)
}

/// The dark test image of issue 23: a 128x128 smooth ramp from 4 to 40 levels with soft blobs
/// of up to 10 levels, on 8-bit levels; the same plane in every channel.
pub fn dark_test_image(channels: usize) -> Result<Image> {
    let (h, w) = (128usize, 128usize);
    let mut plane = Vec::with_capacity(h * w);
    for y in 0..h {
        for x in 0..w {
            let ramp = 4.0 + 36.0 * x as f32 / (w - 1) as f32;
            let blob = 10.0 * ((y as f32 / 9.0).sin() * (x as f32 / 13.0).cos()).max(0.0);
            plane.push((ramp + blob).round() / 255.0);
        }
    }
    Image::new(channels, h, w, plane.repeat(channels))
}

/// The mean output bias, in 8-bit levels, of `model` on [`dark_test_image`] with 8-bit clipped
/// noise at sigma 50 (`images::add_awgn8`, noise seeds 1, 2, 3), the output rounded to 8 bits
/// as a saved result is; returns the mean over the seeds and the bias of each. Clipping at 0
/// turns zero-mean noise into a positive bias that a
/// model which never saw it keeps as signal: issue 23's bar is +-1 level. Native (as
/// [`denoise_image`]).
#[cfg(not(target_arch = "wasm32"))]
pub fn dark_bias(b: &dyn Backend, model: &DnCnn) -> Result<(f64, [f64; 3])> {
    use crate::data::images;
    let clean = dark_test_image(model.config.channels)?;
    let mean = |v: &[f32]| v.iter().map(|&x| x as f64).sum::<f64>() / v.len() as f64 * 255.0;
    let mut biases = [0.0; 3];
    for (i, seed) in [1u64, 2, 3].into_iter().enumerate() {
        let noisy = clean.with_data(images::add_awgn8(&clean.data, 50.0, seed, 0))?;
        let out = denoise_image(b, model, &noisy, false)?;
        biases[i] = mean(&images::quantize8(&out.data)) - mean(&clean.data);
    }
    Ok((biases.iter().sum::<f64>() / 3.0, biases))
}
