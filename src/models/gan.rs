//! GANs on MNIST (lecture part 3): min_G max_D E[log D(x)] + E[log(1 - D(G(z)))].
//!
//! * dense: MLP generator z -> 256 -> 512 -> 784 (LeakyReLU, tanh out) and MLP discriminator
//!   784 -> 512 -> 256 -> 1 (LeakyReLU 0.2);
//! * DCGAN-style hybrid: G = dense -> reshape (2w, 7, 7) -> BatchNorm+ReLU -> transposed conv
//!   stride 2 (w, 14, 14) -> BatchNorm+ReLU -> transposed conv stride 2 -> tanh 28x28
//!   (`extra_conv`: a stride-1 transposed conv + BatchNorm+ReLU at 7x7 before the first
//!   upsampling, as TensorFlow's DCGAN tutorial; `extra_conv_14`: one more, w -> w at 14x14
//!   after it, which `gan_grow` inserts into a G that has the first);
//!   D = strided conv (w) + LeakyReLU -> strided conv (2w) + LeakyReLU -> dense -> 1 logit;
//!   optionally dropout after each LeakyReLU (`Discriminator::set_dropout`, TensorFlow's DCGAN
//!   tutorial), its rate kept in the D file's metadata (`DROPOUT_KEY`), and a residual block at
//!   7x7 after the second LeakyReLU (`Discriminator::add_block`: h + conv(LeakyReLU(conv(h))),
//!   3x3 convs 2w -> 2w; tensors `d.r1.*`, `d.r2.*`), added to a trained D as the identity.
//!
//! Digits are scaled to [-1, 1] (tanh range). D outputs a logit; the cross-entropy losses use
//! BCE with logits, the least-squares losses (Mao et al.) treat the raw output as D's score.
//! Each step builds one tape; G's update backpropagates through D (D's parameters get
//! gradients on that tape too, but only G's optimizer steps).

use crate::autodiff::{Graph, Param, Var};
use crate::backend::{Backend, Conv2dParams, ConvTranspose2dParams, LossKind};
use crate::data::mnist::Mnist;
use crate::error::{Error, Result};
use crate::nn::init::init_tensor;
use crate::nn::{
    BatchNorm2d, Conv2d, ConvTranspose2d, Dropout, Init, Linear, Module, Optimizer, SpectralNorm,
};
use crate::rng;

pub use super::gan_tricks::Tricks;
use crate::tensor::Tensor;

pub const PIXELS: usize = 784;
/// Slope of D's LeakyReLU (DCGAN).
const SLOPE: f32 = 0.2;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GanArch {
    Dense,
    Dcgan,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GanLoss {
    /// cross-entropy; G minimises -log D(G(z)) (non-saturating)
    CrossEntropy,
    /// cross-entropy; G minimises log(1 - D(G(z))) as in the minimax game (saturates early)
    Minimax,
    /// least squares: D minimises (D(x) - 1)^2 / 2 + D(G(z))^2 / 2, G minimises (D(G(z)) - 1)^2 / 2
    LeastSquares,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Latent {
    Normal,
    /// uniform in [-1, 1]
    Uniform,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GanConfig {
    pub arch: GanArch,
    /// latent size d
    pub latent: usize,
    /// base width: DCGAN channels (G's 2w and w, D's w and 2w)
    pub width: usize,
    /// DCGAN: an extra stride-1 transposed conv 2w -> 2w (3x3) + BatchNorm/ReLU at 7x7 in G,
    /// before the upsampling (TensorFlow's DCGAN tutorial shape; its tensors `g.m.*`, `g.mbn.*`)
    pub extra_conv: bool,
    /// DCGAN: an extra stride-1 transposed conv w -> w (3x3) + BatchNorm/ReLU at 14x14 in G,
    /// between the two upsamplings (its tensors `g.m2.*`, `g.m2bn.*`; `nnlab grow gan` inserts
    /// it into a G that already has `extra_conv`)
    pub extra_conv_14: bool,
}

impl GanConfig {
    pub fn validate(&self) -> Result<()> {
        if self.latent == 0 || self.latent > 512 {
            return Err(Error::Invalid(format!(
                "latent size must be 1..=512, got {}",
                self.latent
            )));
        }
        if self.width == 0 || self.width > 256 {
            return Err(Error::Invalid(format!(
                "width must be 1..=256, got {}",
                self.width
            )));
        }
        if (self.extra_conv || self.extra_conv_14) && self.arch != GanArch::Dcgan {
            return Err(Error::Invalid(
                "the extra stride-1 conv is a DCGAN option (use --arch dcgan)".into(),
            ));
        }
        Ok(())
    }
}

/// Latent vectors (n, d) drawn from `latent` with `seed` (the same seed gives the same z).
pub fn sample_z(n: usize, d: usize, latent: Latent, seed: u64) -> Vec<f32> {
    sample_z_rows(0, n, d, latent, seed)
}

/// Rows start..start+n of the latent vectors `sample_z(start + n, ..)` would give: each row
/// depends only on its index, so a set of samples can be cut into chunks in any way.
pub fn sample_z_rows(start: usize, n: usize, d: usize, latent: Latent, seed: u64) -> Vec<f32> {
    (start * d..(start + n) * d)
        .map(|i| match latent {
            Latent::Normal => rng::normal(seed, i as u32),
            Latent::Uniform => -1.0 + 2.0 * rng::uniform01(seed, i as u32),
        })
        .collect()
}

/// Smallest truncation threshold `truncate_z` accepts: below it, rejection of a normal value
/// would need too many redraws (at 0.25 one draw in five is kept).
pub const MIN_TRUNCATION: f32 = 0.25;
/// Redraws per value before `truncate_z` gives up and clamps (at threshold 0.25 that happens
/// with probability 0.8^64 ~ 6e-7 per value).
const TRUNCATION_TRIES: u32 = 64;

/// A threshold `truncate_z` accepts: a number >= `MIN_TRUNCATION`, else the reason.
pub fn check_truncation(threshold: f32) -> Result<()> {
    if !(threshold >= MIN_TRUNCATION && threshold.is_finite()) {
        return Err(Error::Invalid(format!(
            "the truncation threshold must be a number >= {MIN_TRUNCATION}, got {threshold}"
        )));
    }
    Ok(())
}

/// The truncation trick (Brock et al. 2018, BigGAN): every latent value with |z| > `threshold`
/// is redrawn until it falls inside, so z follows the distribution truncated to
/// [-threshold, threshold]. A smaller threshold keeps G near the centre of its latent space:
/// more typical digits, less variety. `z` holds rows start.. of a set seeded by `seed`; each
/// value's redraws depend only on its index in the set, so chunks of a set agree with the whole.
pub fn truncate_z(
    z: &mut [f32],
    start: usize,
    d: usize,
    latent: Latent,
    seed: u64,
    threshold: f32,
) -> Result<()> {
    check_truncation(threshold)?;
    let redraw_seed = seed ^ 0x7a11_c0de_5eed;
    for (k, v) in z.iter_mut().enumerate() {
        let i = ((start * d + k) as u32).wrapping_mul(TRUNCATION_TRIES);
        let mut t = 0;
        while v.abs() > threshold && t < TRUNCATION_TRIES {
            *v = match latent {
                Latent::Normal => rng::normal(redraw_seed, i.wrapping_add(t)),
                Latent::Uniform => -1.0 + 2.0 * rng::uniform01(redraw_seed, i.wrapping_add(t)),
            };
            t += 1;
        }
        *v = v.clamp(-threshold, threshold);
    }
    Ok(())
}

/// Digits in [0, 1] -> the generator's range [-1, 1].
pub fn to_tanh_range(x: &[f32]) -> Vec<f32> {
    x.iter().map(|v| 2.0 * v - 1.0).collect()
}

/// The batch of training step `step`, the one recipe of the CLI and the page: `batch` real digits
/// drawn with replacement from `pool` (indices into `digits`) by (seed, step), in the tanh
/// range, as x (batch, 784); and latent vectors z (batch, latent) from `dist`, seeded by
/// (seed, step). The same (seed, step) gives the same batch, so a run can be repeated.
#[allow(clippy::too_many_arguments)]
pub fn training_batch(
    b: &dyn Backend,
    digits: &Mnist,
    pool: &[usize],
    batch: usize,
    latent: usize,
    dist: Latent,
    seed: u64,
    step: u64,
) -> Result<(Tensor, Tensor)> {
    if pool.is_empty() {
        return Err(Error::Invalid("GAN training: no training digits".into()));
    }
    let step_seed = seed.wrapping_mul(31).wrapping_add(step);
    let idx: Vec<usize> = (0..batch)
        .map(|i| pool[rng::random_u32(step_seed, i as u32) as usize % pool.len()])
        .collect();
    let (xs, _) = digits.gather(&idx)?;
    let x = b.upload(&[batch, PIXELS], &to_tanh_range(&xs))?;
    let zs = sample_z(
        batch,
        latent,
        dist,
        seed.wrapping_mul(1_000_003).wrapping_add(step),
    );
    let z = b.upload(&[batch, latent], &zs)?;
    Ok((x, z))
}

/// How a new G's and D's weights start.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WeightInit {
    /// the layers' own default: Kaiming normal for a following ReLU, zero biases, BN gamma 1
    Kaiming,
    /// Radford et al.'s DCGAN: weights N(0, 0.02), zero biases, BN gamma N(1, 0.02). Kaiming's
    /// std is sqrt(2 / fan_in): 0.35 for D's first conv (fan_in 16) and for G's last transposed
    /// conv (fan_in 16), 18x DCGAN's, and D then wins within 100 steps (issue 20).
    Dcgan,
}

/// DCGAN's std of the weights and of the BatchNorm gammas around 1.
const DCGAN_STD: f32 = 0.02;

/// DCGAN's weights: N(0, 0.02) (biases back to zero by the layers' `reinit`).
const DCGAN_WEIGHTS: Init = Init::Normal {
    mean: 0.0,
    std: DCGAN_STD,
};

/// Re-initialise BatchNorm layers as DCGAN does: gamma N(1, 0.02), beta 0; layer k gets seed
/// `seed + k`.
fn dcgan_batchnorm(b: &dyn Backend, bns: &[&BatchNorm2d], seed: u64) -> Result<()> {
    let gamma = Init::Normal {
        mean: 1.0,
        std: DCGAN_STD,
    };
    for (k, bn) in bns.iter().enumerate() {
        let g = init_tensor(b, bn.weight.shape(), gamma, seed + k as u64)?;
        b.assign(bn.weight.value(), &g)?;
        b.assign(bn.bias.value(), &b.zeros(bn.bias.shape())?)?;
    }
    Ok(())
}

pub struct Generator {
    pub config: GanConfig,
    layers: GLayers,
}

// one per generator: the dense variant's unused bytes cost nothing worth a Box
#[allow(clippy::large_enum_variant)]
enum GLayers {
    Dense {
        l1: Linear,
        l2: Linear,
        out: Linear,
    },
    Dcgan {
        l1: Linear,
        bn1: BatchNorm2d,
        /// the extra stride-1 transposed conv and its BatchNorm (`GanConfig::extra_conv`)
        mid: Option<(ConvTranspose2d, BatchNorm2d)>,
        t1: ConvTranspose2d,
        bn2: BatchNorm2d,
        /// the extra stride-1 block at 14x14 (`GanConfig::extra_conv_14`)
        mid14: Option<(ConvTranspose2d, BatchNorm2d)>,
        out: ConvTranspose2d,
    },
}

const UP: ConvTranspose2dParams = ConvTranspose2dParams::new(2, 1, 0, 1);
const DOWN: Conv2dParams = Conv2dParams::new(2, 1, 1);
/// The extra transposed convs: 3x3, stride 1, padding 1 (the size stays: 7x7 or 14x14).
const MID: ConvTranspose2dParams = ConvTranspose2dParams::new(1, 1, 0, 1);
const MID_KERNEL: usize = 3;

/// An extra stride-1 block of G (3x3 transposed conv c -> c + BatchNorm), when `present`.
fn mid_block(
    b: &dyn Backend,
    present: bool,
    conv: &str,
    bn: &str,
    c: usize,
    seed: u64,
) -> Result<Option<(ConvTranspose2d, BatchNorm2d)>> {
    if !present {
        return Ok(None);
    }
    Ok(Some((
        ConvTranspose2d::new(b, conv, c, c, MID_KERNEL, MID, true, seed)?,
        BatchNorm2d::new(b, bn, c)?,
    )))
}

/// `h` through an extra stride-1 block (conv, BatchNorm+ReLU) when G has it, else `h`.
fn mid_forward(
    g: &mut Graph<'_>,
    block: &Option<(ConvTranspose2d, BatchNorm2d)>,
    h: Var,
) -> Result<Var> {
    match block {
        Some((m, mbn)) => {
            let h = m.forward(g, h)?;
            mbn.forward_relu(g, h)
        }
        None => Ok(h),
    }
}

impl Generator {
    pub fn new(b: &dyn Backend, config: GanConfig, seed: u64) -> Result<Generator> {
        config.validate()?;
        let (d, w) = (config.latent, config.width);
        let layers = match config.arch {
            GanArch::Dense => GLayers::Dense {
                l1: Linear::new(b, "g.0", d, 256, true, seed)?,
                l2: Linear::new(b, "g.1", 256, 512, true, seed + 1)?,
                out: Linear::new(b, "g.2", 512, PIXELS, true, seed + 2)?,
            },
            GanArch::Dcgan => GLayers::Dcgan {
                l1: Linear::new(b, "g.0", d, 2 * w * 49, true, seed)?,
                bn1: BatchNorm2d::new(b, "g.1", 2 * w)?,
                mid: mid_block(b, config.extra_conv, "g.m", "g.mbn", 2 * w, seed + 5)?,
                t1: ConvTranspose2d::new(b, "g.2", 2 * w, w, 4, UP, true, seed + 1)?,
                bn2: BatchNorm2d::new(b, "g.3", w)?,
                mid14: mid_block(b, config.extra_conv_14, "g.m2", "g.m2bn", w, seed + 7)?,
                out: ConvTranspose2d::new(b, "g.4", w, 1, 4, UP, true, seed + 2)?,
            },
        };
        Ok(Generator { config, layers })
    }
    /// A new G whose weights start as `init` says.
    pub fn with_init(
        b: &dyn Backend,
        config: GanConfig,
        seed: u64,
        init: WeightInit,
    ) -> Result<Generator> {
        let gen = Generator::new(b, config, seed)?;
        if init == WeightInit::Dcgan {
            // each layer its own seed, in layer order
            match &gen.layers {
                GLayers::Dense { l1, l2, out } => {
                    l1.reinit(b, DCGAN_WEIGHTS, seed)?;
                    l2.reinit(b, DCGAN_WEIGHTS, seed + 1)?;
                    out.reinit(b, DCGAN_WEIGHTS, seed + 2)?;
                }
                GLayers::Dcgan {
                    l1,
                    bn1,
                    mid,
                    t1,
                    bn2,
                    mid14,
                    out,
                } => {
                    l1.reinit(b, DCGAN_WEIGHTS, seed)?;
                    t1.reinit(b, DCGAN_WEIGHTS, seed + 1)?;
                    out.reinit(b, DCGAN_WEIGHTS, seed + 2)?;
                    dcgan_batchnorm(b, &[bn1, bn2], seed + 3)?;
                    if let Some((m, mbn)) = mid {
                        m.reinit(b, DCGAN_WEIGHTS, seed + 5)?;
                        dcgan_batchnorm(b, &[mbn], seed + 6)?;
                    }
                    if let Some((m, mbn)) = mid14 {
                        m.reinit(b, DCGAN_WEIGHTS, seed + 7)?;
                        dcgan_batchnorm(b, &[mbn], seed + 8)?;
                    }
                }
            }
        }
        Ok(gen)
    }
    /// The DCGAN G's first block, relu(bn1(l1 z)) as (N, 2w, 7, 7): what the extra stride-1
    /// block reads (and what `gan_grow` measures to insert one). An error for the dense G.
    pub fn first_block(&self, g: &mut Graph<'_>, z: Var) -> Result<Var> {
        let GLayers::Dcgan { l1, bn1, .. } = &self.layers else {
            return Err(Error::Invalid(
                "the dense generator has no convolutional first block".into(),
            ));
        };
        let (n, w) = (g.shape(z)?[0], self.config.width);
        let h = l1.forward(g, z)?;
        let h = g.reshape(h, &[n, 2 * w, 7, 7])?;
        bn1.forward_relu(g, h)
    }
    /// The DCGAN G up to the first upsampling's BatchNorm+ReLU, (N, w, 14, 14): what the extra
    /// block at 14x14 reads. An error for the dense G.
    pub fn upsampled_block(&self, g: &mut Graph<'_>, z: Var) -> Result<Var> {
        let GLayers::Dcgan { mid, t1, bn2, .. } = &self.layers else {
            return Err(Error::Invalid(
                "the dense generator has no convolutional blocks".into(),
            ));
        };
        let h = self.first_block(g, z)?;
        let h = mid_forward(g, mid, h)?;
        let h = t1.forward(g, h)?;
        bn2.forward_relu(g, h)
    }
    /// The BatchNorm layers, in order (none in the dense G).
    pub fn batchnorms(&self) -> Vec<&BatchNorm2d> {
        match &self.layers {
            GLayers::Dense { .. } => Vec::new(),
            GLayers::Dcgan {
                bn1,
                mid,
                bn2,
                mid14,
                ..
            } => {
                let mut v = vec![bn1];
                v.extend(mid.iter().map(|(_, mbn)| mbn));
                v.push(bn2);
                v.extend(mid14.iter().map(|(_, mbn)| mbn));
                v
            }
        }
    }
}

impl Module for Generator {
    /// z (N, d) -> images (N, 784) in [-1, 1].
    fn forward(&self, g: &mut Graph<'_>, z: Var) -> Result<Var> {
        let s = g.shape(z)?;
        if s.len() != 2 || s[1] != self.config.latent {
            return Err(Error::Shape(format!(
                "generator: expected z (N, {}), got {s:?}",
                self.config.latent
            )));
        }
        let n = s[0];
        let logits = match &self.layers {
            GLayers::Dense { l1, l2, out } => {
                let h = l1.forward(g, z)?;
                let h = g.leaky_relu(h, SLOPE)?;
                let h = l2.forward(g, h)?;
                let h = g.leaky_relu(h, SLOPE)?;
                out.forward(g, h)?
            }
            GLayers::Dcgan { mid14, out, .. } => {
                let h = self.upsampled_block(g, z)?;
                let h = mid_forward(g, mid14, h)?;
                let h = out.forward(g, h)?;
                g.reshape(h, &[n, PIXELS])?
            }
        };
        g.tanh(logits)
    }
    fn params(&self) -> Vec<&Param> {
        match &self.layers {
            GLayers::Dense { l1, l2, out } => [l1.params(), l2.params(), out.params()].concat(),
            GLayers::Dcgan {
                l1,
                bn1,
                mid,
                t1,
                bn2,
                mid14,
                out,
            } => {
                let mut p = [l1.params(), bn1.params()].concat();
                if let Some((m, mbn)) = mid {
                    p.extend(m.params());
                    p.extend(mbn.params());
                }
                p.extend(t1.params());
                p.extend(bn2.params());
                if let Some((m, mbn)) = mid14 {
                    p.extend(m.params());
                    p.extend(mbn.params());
                }
                [p, out.params()].concat()
            }
        }
    }
    fn buffers(&self) -> Vec<&Param> {
        match &self.layers {
            GLayers::Dense { .. } => Vec::new(),
            GLayers::Dcgan { .. } => self
                .batchnorms()
                .into_iter()
                .flat_map(|bn| bn.buffers())
                .collect(),
        }
    }
}

pub struct Discriminator {
    pub config: GanConfig,
    layers: DLayers,
    /// the minibatch-dispersion feature (`minibatch_dispersion`) and its weight into the logit
    mbstd: Option<Linear>,
    /// spectral normalisation of the three weighted layers' weights (in layer order)
    sn: Option<Vec<SpectralNorm>>,
    /// dropout after each LeakyReLU in training mode (TensorFlow's DCGAN tutorial: 0.3)
    dropout: Option<Dropout>,
    /// the residual block's two convs (`add_block`)
    block: Option<(Conv2d, Conv2d)>,
}

/// Names of the residual block's two convs in a discriminator file (`Discriminator::add_block`).
pub const D_BLOCK: [&str; 2] = ["d.r1", "d.r2"];

/// Metadata key of D's dropout rate in a discriminator file (absent: no dropout).
pub const DROPOUT_KEY: &str = "dropout";

/// Power-iteration steps that start a spectrally normalised D's vectors (then one per step).
const SN_START_ITERATIONS: usize = 10;

/// The name ending of a spectral-norm vector in a discriminator file (their presence switches
/// spectral normalisation on when a file is loaded).
pub const SN_SUFFIX: &str = ".sn_u";

/// The parts a discriminator has beyond its three layers, as its file's tensors show them
/// (what a loader builds before loading; `Discriminator::with_parts`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DParts {
    /// the minibatch-dispersion feature (`MBSTD_WEIGHT`)
    pub mbstd: bool,
    /// spectral normalisation (vectors named `*SN_SUFFIX`)
    pub sn: bool,
    /// the residual block (`D_BLOCK`, `Discriminator::add_block`)
    pub block: bool,
}

/// The parts of a discriminator file's D, from its tensors' names.
pub fn d_parts_from_tensors(ts: &[crate::weights::NamedTensor]) -> DParts {
    let block = format!("{}.", D_BLOCK[0]);
    DParts {
        mbstd: ts.iter().any(|t| t.name == MBSTD_WEIGHT),
        sn: ts.iter().any(|t| t.name.ends_with(SN_SUFFIX)),
        block: ts.iter().any(|t| t.name.starts_with(&block)),
    }
}

/// D's dropout rate from a discriminator file's metadata (`DROPOUT_KEY`; 0 when absent).
pub fn dropout_from_metadata(meta: &std::collections::HashMap<String, String>) -> Result<f32> {
    match meta.get(DROPOUT_KEY) {
        None => Ok(0.0),
        Some(v) => {
            let p: f32 = v.trim().parse().map_err(|_| {
                Error::Weights(format!("discriminator: bad dropout rate {v:?} in metadata"))
            })?;
            crate::nn::dropout::check_rate(p)?;
            Ok(p)
        }
    }
}

/// Name of the minibatch-dispersion weight in a discriminator file (its presence switches the
/// feature on when a file is loaded).
pub const MBSTD_WEIGHT: &str = "d.mbstd.weight";

enum DLayers {
    Dense { l1: Linear, l2: Linear, out: Linear },
    Dcgan { c1: Conv2d, c2: Conv2d, out: Linear },
}

impl Discriminator {
    pub fn new(b: &dyn Backend, config: GanConfig, seed: u64) -> Result<Discriminator> {
        Discriminator::with_options(b, config, seed, false, false)
    }
    /// D with or without the minibatch-dispersion feature (`mbstd`) and with or without
    /// spectral normalisation of its conv and dense weights (`sn`; see `nn::SpectralNorm`).
    pub fn with_options(
        b: &dyn Backend,
        config: GanConfig,
        seed: u64,
        mbstd: bool,
        sn: bool,
    ) -> Result<Discriminator> {
        Discriminator::with_init(b, config, seed, mbstd, sn, WeightInit::Kaiming)
    }
    /// D with `parts` (the block added last, at seed + 200), the weights starting as `init`
    /// says: what a discriminator file with those parts loads into.
    pub fn with_parts(
        b: &dyn Backend,
        config: GanConfig,
        seed: u64,
        parts: DParts,
        init: WeightInit,
    ) -> Result<Discriminator> {
        let mut d = Discriminator::with_init(b, config, seed, parts.mbstd, parts.sn, init)?;
        if parts.block {
            d.add_block(b, seed + 200)?;
        }
        Ok(d)
    }
    /// `with_options` with the weights starting as `init` says.
    pub fn with_init(
        b: &dyn Backend,
        config: GanConfig,
        seed: u64,
        mbstd: bool,
        sn: bool,
        init: WeightInit,
    ) -> Result<Discriminator> {
        config.validate()?;
        let w = config.width;
        let layers = match config.arch {
            GanArch::Dense => DLayers::Dense {
                l1: Linear::new(b, "d.0", PIXELS, 512, true, seed)?,
                l2: Linear::new(b, "d.1", 512, 256, true, seed + 1)?,
                out: Linear::new(b, "d.2", 256, 1, true, seed + 2)?,
            },
            GanArch::Dcgan => DLayers::Dcgan {
                c1: Conv2d::new(b, "d.0", 1, w, 4, DOWN, true, seed)?,
                c2: Conv2d::new(b, "d.1", w, 2 * w, 4, DOWN, true, seed + 1)?,
                out: Linear::new(b, "d.2", 2 * w * 49, 1, true, seed + 2)?,
            },
        };
        let mbstd = if mbstd {
            Some(Linear::new(b, "d.mbstd", 1, 1, false, seed + 3)?)
        } else {
            None
        };
        let mut d = Discriminator {
            config,
            layers,
            mbstd,
            sn: None,
            dropout: None,
            block: None,
        };
        if init == WeightInit::Dcgan {
            // each layer its own seed, in layer order (D has no BatchNorm)
            match &d.layers {
                DLayers::Dense { l1, l2, out } => {
                    l1.reinit(b, DCGAN_WEIGHTS, seed)?;
                    l2.reinit(b, DCGAN_WEIGHTS, seed + 1)?;
                    out.reinit(b, DCGAN_WEIGHTS, seed + 2)?;
                }
                DLayers::Dcgan { c1, c2, out } => {
                    c1.reinit(b, DCGAN_WEIGHTS, seed)?;
                    c2.reinit(b, DCGAN_WEIGHTS, seed + 1)?;
                    out.reinit(b, DCGAN_WEIGHTS, seed + 2)?;
                }
            }
            if let Some(m) = &d.mbstd {
                m.reinit(b, DCGAN_WEIGHTS, seed + 3)?;
            }
        }
        if sn {
            let sn = (d.weights().iter().enumerate())
                .map(|(k, w)| SpectralNorm::new(b, w, seed + 10 + k as u64, SN_START_ITERATIONS))
                .collect::<Result<Vec<_>>>()?;
            d.sn = Some(sn);
        }
        Ok(d)
    }
    pub fn has_mbstd(&self) -> bool {
        self.mbstd.is_some()
    }
    pub fn has_sn(&self) -> bool {
        self.sn.is_some()
    }
    /// Switch dropout with rate `p` on after each of D's LeakyReLUs (0: off); masks drawn from
    /// `seed`, a fresh one at every forward in training mode (none in evaluation mode).
    pub fn set_dropout(&mut self, p: f32, seed: u64) -> Result<()> {
        self.dropout = if p == 0.0 {
            crate::nn::dropout::check_rate(p)?;
            None
        } else {
            Some(Dropout::new(p, seed)?)
        };
        Ok(())
    }
    /// D's dropout rate (0 without).
    pub fn dropout_rate(&self) -> f32 {
        self.dropout.as_ref().map_or(0.0, |d| d.p)
    }
    /// Add the residual block at 7x7 after the second LeakyReLU (and its dropout): h + r2(act(
    /// r1(h))), r1 and r2 3x3 convs 2w -> 2w with padding 1. r1 starts Kaiming (seed), r2 at
    /// zero, so D computes what it did before and the block grows from there: more capacity
    /// for a D that a trained G fools (accuracy near chance) without starting D over. DCGAN D
    /// only, once, and not with spectral norm (which normalises the three layers it was made
    /// with).
    pub fn add_block(&mut self, b: &dyn Backend, seed: u64) -> Result<()> {
        if self.config.arch != GanArch::Dcgan {
            return Err(Error::Invalid(
                "the residual block in D needs a DCGAN discriminator".into(),
            ));
        }
        if self.block.is_some() {
            return Err(Error::Invalid("D already has the residual block".into()));
        }
        if self.sn.is_some() {
            return Err(Error::Invalid(
                "the residual block in D does not go with spectral norm".into(),
            ));
        }
        let c = 2 * self.config.width;
        let same = Conv2dParams::new(1, 1, 1);
        let r1 = Conv2d::new(b, D_BLOCK[0], c, c, 3, same, true, seed)?;
        let r2 = Conv2d::new(b, D_BLOCK[1], c, c, 3, same, true, seed + 1)?;
        b.assign(r2.weight.value(), &b.zeros(r2.weight.shape())?)?;
        self.block = Some((r1, r2));
        Ok(())
    }
    pub fn has_block(&self) -> bool {
        self.block.is_some()
    }
    /// LeakyReLU, then dropout when it is on.
    fn act(&self, g: &mut Graph<'_>, h: Var) -> Result<Var> {
        let h = g.leaky_relu(h, SLOPE)?;
        match &self.dropout {
            None => Ok(h),
            Some(d) => d.forward(g, h),
        }
    }
    /// The weights of the three weighted layers, in order (what spectral norm normalises).
    fn weights(&self) -> [&Param; 3] {
        match &self.layers {
            DLayers::Dense { l1, l2, out } => [&l1.weight, &l2.weight, &out.weight],
            DLayers::Dcgan { c1, c2, out } => [&c1.weight, &c2.weight, &out.weight],
        }
    }
    /// One power-iteration step of every spectrally normalised weight (once per D step, on its
    /// current weights; nothing without spectral norm).
    pub fn power_iteration(&self, b: &dyn Backend) -> Result<()> {
        if let Some(sn) = &self.sn {
            for (s, w) in sn.iter().zip(self.weights()) {
                s.power_iteration(b, w)?;
            }
        }
        Ok(())
    }
    /// With spectral norm: `iterations` power-iteration steps (to start the vectors of weights
    /// loaded from a file that had none).
    pub fn restart_power_iteration(&self, b: &dyn Backend, iterations: usize) -> Result<()> {
        for _ in 0..iterations {
            self.power_iteration(b)?;
        }
        Ok(())
    }
    /// The current estimates sigma = u^T W v of the three weights' spectral norms (None
    /// without spectral norm).
    #[cfg(not(target_arch = "wasm32"))]
    pub fn spectral_norms(&self, b: &dyn Backend) -> Result<Option<Vec<f32>>> {
        match &self.sn {
            None => Ok(None),
            Some(sn) => (sn.iter().zip(self.weights()))
                .map(|(s, w)| s.sigma(b, w))
                .collect::<Result<Vec<_>>>()
                .map(Some),
        }
    }
    /// A dense layer of D, through W / sigma(W) with spectral norm (`k`: its index in
    /// `weights`).
    fn dense(&self, g: &mut Graph<'_>, l: &Linear, k: usize, x: Var) -> Result<Var> {
        match &self.sn {
            None => l.forward(g, x),
            Some(sn) => {
                let w = sn[k].weight(g, &l.weight)?;
                let bias = l.bias.as_ref().map(|p| g.param(p));
                g.linear(x, w, bias)
            }
        }
    }
    /// A conv layer of D, as `dense`.
    fn conv(&self, g: &mut Graph<'_>, c: &Conv2d, k: usize, x: Var) -> Result<Var> {
        match &self.sn {
            None => c.forward(g, x),
            Some(sn) => {
                let w = sn[k].weight(g, &c.weight)?;
                let bias = c.bias.as_ref().map(|p| g.param(p));
                g.conv2d(x, w, bias, c.p)
            }
        }
    }
}

/// Minibatch dispersion (after Karras et al.'s minibatch standard deviation, with the mean
/// absolute deviation in place of the standard deviation: the tape has |x| but no sqrt): for
/// features h (N, F), s = mean_f mean_n |h_nf - mean_n h_nf|, returned as an (N, 1) column of s.
/// A batch of G's samples that all look alike has a small s, so D can see mode collapse.
/// Composed of matmuls with constant averaging vectors, so the tape differentiates it.
pub fn minibatch_dispersion(g: &mut Graph<'_>, h: Var) -> Result<Var> {
    let s = g.shape(h)?;
    if s.len() != 2 {
        return Err(Error::Shape(format!(
            "minibatch dispersion: expected features (N, F), got {s:?}"
        )));
    }
    let (n, f) = (s[0], s[1]);
    let be = g.backend();
    let avg_n = g.constant(be.fill(&[1, n], 1.0 / n as f32)?);
    let ones_n = g.constant(be.fill(&[n, 1], 1.0)?);
    let avg_f = g.constant(be.fill(&[f, 1], 1.0 / f as f32)?);
    let mean = g.matmul(avg_n, h, false, false)?; // (1, F)
    let mean_rows = g.matmul(ones_n, mean, false, false)?; // (N, F)
    let centred = g.sub(h, mean_rows)?;
    let dev = g.abs(centred)?;
    let mad = g.matmul(avg_n, dev, false, false)?; // (1, F)
    let sc = g.matmul(mad, avg_f, false, false)?; // (1, 1)
    g.matmul(ones_n, sc, false, false) // (N, 1)
}

impl Module for Discriminator {
    /// images (N, 784) in [-1, 1] -> logits (N, 1).
    fn forward(&self, g: &mut Graph<'_>, x: Var) -> Result<Var> {
        let s = g.shape(x)?;
        if s.len() != 2 || s[1] != PIXELS {
            return Err(Error::Shape(format!(
                "discriminator: expected images (N, {PIXELS}), got {s:?}"
            )));
        }
        let (h, out) = match &self.layers {
            DLayers::Dense { l1, l2, out } => {
                let h = self.dense(g, l1, 0, x)?;
                let h = self.act(g, h)?;
                let h = self.dense(g, l2, 1, h)?;
                (self.act(g, h)?, out)
            }
            DLayers::Dcgan { c1, c2, out } => {
                let h = g.reshape(x, &[s[0], 1, 28, 28])?;
                let h = self.conv(g, c1, 0, h)?;
                let h = self.act(g, h)?;
                let h = self.conv(g, c2, 1, h)?;
                let h = self.act(g, h)?;
                let h = match &self.block {
                    None => h,
                    Some((r1, r2)) => {
                        let r = r1.forward(g, h)?;
                        let r = self.act(g, r)?;
                        let r = r2.forward(g, r)?;
                        g.add(h, r)?
                    }
                };
                (g.flatten(h)?, out)
            }
        };
        let logit = self.dense(g, out, 2, h)?;
        match &self.mbstd {
            None => Ok(logit),
            Some(w) => {
                let disp = minibatch_dispersion(g, h)?;
                let e = w.forward(g, disp)?;
                g.add(logit, e)
            }
        }
    }
    fn params(&self) -> Vec<&Param> {
        let mut p = match &self.layers {
            DLayers::Dense { l1, l2, out } => [l1.params(), l2.params(), out.params()].concat(),
            DLayers::Dcgan { c1, c2, out } => [c1.params(), c2.params(), out.params()].concat(),
        };
        if let Some(w) = &self.mbstd {
            p.extend(w.params());
        }
        if let Some((r1, r2)) = &self.block {
            p.extend(r1.params());
            p.extend(r2.params());
        }
        p
    }
    /// spectral norm's power-iteration vectors (saved with the weights)
    fn buffers(&self) -> Vec<&Param> {
        (self.sn.iter().flatten())
            .flat_map(|s| s.buffers())
            .collect()
    }
}

/// A constant (N, 1) target filled with `v`.
fn target(g: &mut Graph<'_>, n: usize, v: f32) -> Result<Var> {
    let t = g.backend().upload(&[n, 1], &vec![v; n])?;
    Ok(g.constant(t))
}

/// D's loss on real logits and fake logits.
pub fn d_loss(g: &mut Graph<'_>, loss: GanLoss, real: Var, fake: Var) -> Result<Var> {
    let (nr, nf) = (g.shape(real)?[0], g.shape(fake)?[0]);
    let (one, zero) = (target(g, nr, 1.0)?, target(g, nf, 0.0)?);
    let kind = match loss {
        GanLoss::CrossEntropy | GanLoss::Minimax => LossKind::BceWithLogits,
        GanLoss::LeastSquares => LossKind::LeastSquares,
    };
    let lr = g.loss(kind, real, one)?;
    let lf = g.loss(kind, fake, zero)?;
    g.add(lr, lf)
}

/// G's loss on the logits D gives its samples.
pub fn g_loss(g: &mut Graph<'_>, loss: GanLoss, fake: Var) -> Result<Var> {
    let n = g.shape(fake)?[0];
    match loss {
        GanLoss::CrossEntropy => {
            let one = target(g, n, 1.0)?;
            g.loss(LossKind::BceWithLogits, fake, one)
        }
        GanLoss::Minimax => {
            // log(1 - D(G(z))) = -BCE(logit, 0)
            let zero = target(g, n, 0.0)?;
            let l = g.loss(LossKind::BceWithLogits, fake, zero)?;
            g.scale(l, -1.0)
        }
        GanLoss::LeastSquares => {
            let one = target(g, n, 1.0)?;
            g.loss(LossKind::LeastSquares, fake, one)
        }
    }
}

/// Losses and D's accuracy (real called real, fake called fake) of one training step.
#[derive(Clone, Copy, Debug, Default)]
pub struct StepStats {
    pub d_loss: f32,
    pub g_loss: f32,
    /// fraction of the batch's real and fake digits D classifies correctly (threshold: logit 0
    /// for cross-entropy, score 0.5 for least squares)
    pub d_accuracy: f32,
}

/// The tensors one step reads back: [d_loss], [g_loss], real logits, fake logits.
pub struct StepOutput {
    pub d_loss: Tensor,
    pub g_loss: Tensor,
    pub real_out: Tensor,
    pub fake_out: Tensor,
}

impl StepOutput {
    /// Turn the read-back values into stats.
    pub fn stats(loss: GanLoss, d: f32, gl: f32, real: &[f32], fake: &[f32]) -> StepStats {
        let thr = if loss == GanLoss::LeastSquares {
            0.5
        } else {
            0.0
        };
        let right =
            real.iter().filter(|v| **v > thr).count() + fake.iter().filter(|v| **v <= thr).count();
        StepStats {
            d_loss: d,
            g_loss: gl,
            d_accuracy: right as f32 / (real.len() + fake.len()).max(1) as f32,
        }
    }
}

/// One alternating step: D on real `x` (N, 784 in [-1, 1]) and G(z) (detached), then G on a
/// fresh tape through D. Nothing is read back (see `StepOutput`).
#[allow(clippy::too_many_arguments)]
pub fn train_step(
    b: &dyn Backend,
    gen: &Generator,
    disc: &Discriminator,
    opt_g: &mut dyn Optimizer,
    opt_d: &mut dyn Optimizer,
    loss: GanLoss,
    x: &Tensor,
    z: &Tensor,
) -> Result<StepOutput> {
    train_step_with(
        b,
        gen,
        disc,
        opt_g,
        opt_d,
        loss,
        &Tricks::default(),
        x,
        z,
        0,
    )
}

/// `train_step` with the training options of `gan_tricks` (label smoothing, D smoothness,
/// FGSM real digits); `seed` draws the smoothness term's random start. It is `train_d`
/// then `train_g_half` on the same z.
#[allow(clippy::too_many_arguments)]
pub fn train_step_with(
    b: &dyn Backend,
    gen: &Generator,
    disc: &Discriminator,
    opt_g: &mut dyn Optimizer,
    opt_d: &mut dyn Optimizer,
    loss: GanLoss,
    tricks: &Tricks,
    x: &Tensor,
    z: &Tensor,
    seed: u64,
) -> Result<StepOutput> {
    let d = train_d(
        b,
        gen,
        GSamples::Training,
        disc,
        opt_d,
        loss,
        tricks,
        x,
        z,
        seed,
    )?;
    let g_loss = train_g_half(b, gen, disc, opt_g, loss, z)?;
    Ok(StepOutput {
        d_loss: d.d_loss,
        g_loss,
        real_out: d.real_out,
        fake_out: d.fake_out,
    })
}

/// What the D half of a step leaves to read back: [d_loss], real logits, fake logits.
pub struct DHalf {
    pub d_loss: Tensor,
    pub real_out: Tensor,
    pub fake_out: Tensor,
}

/// How D's update draws G's samples.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GSamples {
    /// in training mode (BatchNorm's batch statistics), as in a GAN step
    Training,
    /// in inference mode (BatchNorm's running statistics), as `generate` draws them: for a D
    /// trained on against a fixed G, the D that rejection sampling (`gan_rejection`) uses
    /// (Azadi et al. 2019)
    Inference,
}

/// D's update on real `x` (N, 784 in [-1, 1]) and G(z) (detached), G's samples drawn as
/// `samples` says. With `GSamples::Training` it is the first half of a training step: the page
/// runs the halves as separate calls on a slow adapter (Pause waits for one half, not a whole
/// step); run back to back they are `train_step_with`.
#[allow(clippy::too_many_arguments)]
pub fn train_d(
    b: &dyn Backend,
    gen: &Generator,
    samples: GSamples,
    disc: &Discriminator,
    opt_d: &mut dyn Optimizer,
    loss: GanLoss,
    tricks: &Tricks,
    x: &Tensor,
    z: &Tensor,
    seed: u64,
) -> Result<DHalf> {
    // spectral norm: one power-iteration step on D's current weights, before its forward passes
    disc.power_iteration(b)?;
    // G runs without a tape (its output is a constant here)
    let fake = {
        let mut g = Graph::new(b);
        g.set_grad_enabled(false);
        g.set_training(samples == GSamples::Training);
        let zv = g.constant(z.clone());
        let f = gen.forward(&mut g, zv)?;
        g.value(f)?.clone()
    };
    let mut g = Graph::new(b);
    let (dl, real_out, fake_out) =
        super::gan_tricks::d_loss_with(&mut g, disc, loss, tricks, x, fake, seed)?;
    g.backward(dl)?;
    opt_d.step(&g, &disc.params())?;
    Ok(DHalf {
        d_loss: g.value(dl)?.clone(),
        real_out: g.value(real_out)?.clone(),
        fake_out: g.value(fake_out)?.clone(),
    })
}

/// The second half of a training step: G on a fresh tape through D (already updated by the D
/// half), only G's parameters move. Returns G's loss ([1], not read back).
pub fn train_g_half(
    b: &dyn Backend,
    gen: &Generator,
    disc: &Discriminator,
    opt_g: &mut dyn Optimizer,
    loss: GanLoss,
    z: &Tensor,
) -> Result<Tensor> {
    let mut g = Graph::new(b);
    // D's weight gradients are not needed here (only the gradient through D to G's output)
    g.freeze(&disc.params());
    let zv = g.constant(z.clone());
    let f = gen.forward(&mut g, zv)?;
    let fo = disc.forward(&mut g, f)?;
    let gl = g_loss(&mut g, loss, fo)?;
    g.backward(gl)?;
    opt_g.step(&g, &gen.params())?;
    Ok(g.value(gl)?.clone())
}

/// Samples G(z) in [0, 1] (N, 784) for latent vectors z (N, d), in inference mode.
pub fn generate(b: &dyn Backend, gen: &Generator, z: &[f32]) -> Result<Tensor> {
    let n = z.len() / gen.config.latent;
    let mut g = Graph::new(b);
    g.set_grad_enabled(false);
    g.set_training(false);
    let zv = g.constant(b.upload(&[n, gen.config.latent], z)?);
    let f = gen.forward(&mut g, zv)?;
    // [-1, 1] -> [0, 1]
    b.affine(g.value(f)?, 0.5, 0.5)
}

/// D's logits (N, 1) for digits in [0, 1] (N, 784), in inference mode (no dropout).
pub fn discriminate(b: &dyn Backend, disc: &Discriminator, digits: &[f32]) -> Result<Tensor> {
    let n = digits.len() / PIXELS;
    let mut g = Graph::new(b);
    g.set_grad_enabled(false);
    g.set_training(false);
    let x = g.constant(b.upload(&[n, PIXELS], &to_tanh_range(digits))?);
    let o = disc.forward(&mut g, x)?;
    Ok(g.value(o)?.clone())
}

/// Architecture, latent size and width of a generator weights file.
pub fn config_from_tensors(ts: &[crate::weights::NamedTensor]) -> Result<GanConfig> {
    let first = ts
        .iter()
        .find(|t| t.name == "g.0.weight")
        .ok_or_else(|| Error::Weights("not a generator: no 'g.0.weight' tensor".into()))?;
    let (out, latent) = (first.shape[0], first.shape[1]);
    let config = if ts.iter().any(|t| t.name == "g.1.running_mean") {
        GanConfig {
            arch: GanArch::Dcgan,
            latent,
            width: out / 98,
            extra_conv: ts.iter().any(|t| t.name == "g.m.weight"),
            extra_conv_14: ts.iter().any(|t| t.name == "g.m2.weight"),
        }
    } else {
        GanConfig {
            arch: GanArch::Dense,
            latent,
            width: 64,
            extra_conv: false,
            extra_conv_14: false,
        }
    };
    config.validate()?;
    Ok(config)
}

/// Spherical interpolation between latent vectors (falls back to linear when nearly parallel).
pub fn slerp(a: &[f32], b: &[f32], t: f32) -> Vec<f32> {
    let na = a.iter().map(|v| v * v).sum::<f32>().sqrt();
    let nb = b.iter().map(|v| v * v).sum::<f32>().sqrt();
    let cos =
        (a.iter().zip(b).map(|(x, y)| x * y).sum::<f32>() / (na * nb).max(1e-12)).clamp(-1.0, 1.0);
    let omega = cos.acos();
    if omega.abs() < 1e-4 {
        return a
            .iter()
            .zip(b)
            .map(|(x, y)| (1.0 - t) * x + t * y)
            .collect();
    }
    let (s0, s1) = (
        ((1.0 - t) * omega).sin() / omega.sin(),
        (t * omega).sin() / omega.sin(),
    );
    a.iter().zip(b).map(|(x, y)| s0 * x + s1 * y).collect()
}
