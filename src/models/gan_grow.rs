//! Deepening a trained DCGAN generator by an extra stride-1 block so that it computes the same
//! function (Net2DeeperNet, as `dncnn_grow` does for the DnCNN): training then goes on from the
//! smaller G's samples with more capacity, instead of from scratch. The blocks come in order:
//! first the one at 7x7 (`GanConfig::extra_conv`), then the one at 14x14
//! (`GanConfig::extra_conv_14`).
//!
//! The inserted block is a 3x3 transposed conv that is the identity (centre tap 1 on its own
//! channel, bias 0), a BatchNorm whose running statistics are the per-channel mean m and
//! variance v of its input (the ReLU'd output of the block before it, measured over sampled z
//! in evaluation mode) with gamma = sqrt(v + eps) and beta = m, so it returns its input, and a
//! ReLU, which changes nothing on a ReLU'd input. In training mode the BatchNorm uses batch
//! statistics, which are close to m and v for a batch of a few hundred, so training starts
//! from (nearly) the old G.

use crate::autodiff::Graph;
use crate::backend::Backend;
use crate::error::{Error, Result};
use crate::models::gan::{self, GanArch, Generator, Latent};
use crate::models::grow_identity::{identity_conv3x3, ChannelMoments, ChannelStats};
use crate::nn::Module;

/// Where `deepen` inserts the identity block.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GrowBlock {
    /// at 7x7, 2w channels, before the first upsampling (tensors `g.m.*`, `g.mbn.*`)
    At7,
    /// at 14x14, w channels, between the upsamplings (tensors `g.m2.*`, `g.m2bn.*`)
    At14,
}

impl GrowBlock {
    /// Channels and pixels per channel of the block's input in G of `width`.
    fn input_shape(self, width: usize) -> (usize, usize) {
        match self {
            GrowBlock::At7 => (2 * width, 49),
            GrowBlock::At14 => (width, 196),
        }
    }
    /// The names of the conv's and the BatchNorm's tensors.
    fn names(self) -> (&'static str, &'static str) {
        match self {
            GrowBlock::At7 => ("g.m", "g.mbn"),
            GrowBlock::At14 => ("g.m2", "g.m2bn"),
        }
    }
    pub fn describe(self) -> &'static str {
        match self {
            GrowBlock::At7 => "the extra stride-1 block at 7x7",
            GrowBlock::At14 => "the extra stride-1 block at 14x14",
        }
    }
}

/// The block `deepen` would insert into `gen` (a DCGAN G without both extra blocks), else the
/// reason.
pub fn next_block(gen: &Generator) -> Result<GrowBlock> {
    if gen.config.arch != GanArch::Dcgan {
        return Err(Error::Invalid(
            "grow gan: only a DCGAN generator can be deepened (the dense one has no conv block)"
                .into(),
        ));
    }
    match (gen.config.extra_conv, gen.config.extra_conv_14) {
        (false, false) => Ok(GrowBlock::At7),
        (true, false) => Ok(GrowBlock::At14),
        _ => Err(Error::Invalid(
            "grow gan: this generator already has both extra stride-1 blocks (7x7 and 14x14)"
                .into(),
        )),
    }
}

/// Per-channel mean and (biased) variance of the input of `gen`'s next block (`next_block`)
/// over `batches` batches of `batch` latent vectors drawn from `latent` with seeds from `seed`
/// (async, as every read of the page's backends).
pub async fn block_stats(
    b: &dyn Backend,
    gen: &Generator,
    batches: usize,
    batch: usize,
    latent: Latent,
    seed: u64,
) -> Result<ChannelStats> {
    let at = next_block(gen)?;
    if batches == 0 || batch == 0 {
        return Err(Error::Invalid(
            "grow gan: the statistics need at least one batch of one sample".into(),
        ));
    }
    let d = gen.config.latent;
    let (c, pixels) = at.input_shape(gen.config.width);
    let mut moments = ChannelMoments::new(c);
    for k in 0..batches {
        let z = gan::sample_z(batch, d, latent, seed.wrapping_add(k as u64));
        let mut g = Graph::new(b);
        g.set_grad_enabled(false);
        g.set_training(false);
        let zv = g.constant(b.upload(&[batch, d], &z)?);
        let h = match at {
            GrowBlock::At7 => gen.first_block(&mut g, zv)?,
            GrowBlock::At14 => gen.upsampled_block(&mut g, zv)?,
        };
        moments.add(&b.read(g.value(h)?).await?, batch, pixels);
    }
    Ok(moments.stats())
}

/// `gen` with the identity block inserted at `next_block(gen)` (see the module doc); `stats`
/// its `block_stats`. The other weights are copied; the new G's evaluation-mode output equals
/// the old one's up to float rounding.
pub fn deepen(b: &dyn Backend, gen: &Generator, stats: &ChannelStats) -> Result<Generator> {
    let at = next_block(gen)?;
    let (c, _) = at.input_shape(gen.config.width);
    if stats.mean.len() != c || stats.var.len() != c {
        return Err(Error::Invalid(format!(
            "grow gan: statistics of {} channels do not fit a block input of {c}",
            stats.mean.len()
        )));
    }
    let mut grown_cfg = gen.config;
    match at {
        GrowBlock::At7 => grown_cfg.extra_conv = true,
        GrowBlock::At14 => grown_cfg.extra_conv_14 = true,
    }
    let grown = Generator::new(b, grown_cfg, 0)?;
    let old = gen.state();
    let (conv, bn) = at.names();
    // G's BatchNorms in order: bn1, the 7x7 block's, bn2, the 14x14 block's
    let new_bn = grown.batchnorms()[match at {
        GrowBlock::At7 => 1,
        GrowBlock::At14 => 3,
    }];
    let [gamma, beta, running_mean, running_var] = stats.identity_batchnorm(new_bn.eps);
    let (conv_weight, conv_bias) = (format!("{conv}.weight"), format!("{conv}.bias"));
    let bn_prefix = format!("{bn}.");
    for p in grown.state() {
        let name = p.name();
        let values = match name.strip_prefix(&bn_prefix) {
            _ if name == conv_weight => identity_conv3x3(c),
            _ if name == conv_bias => vec![0.0; c],
            Some("weight") => gamma.clone(),
            Some("bias") => beta.clone(),
            Some("running_mean") => running_mean.clone(),
            Some("running_var") => running_var.clone(),
            _ => {
                let src = old.iter().find(|q| q.name() == name).ok_or_else(|| {
                    Error::Invalid(format!("grow gan: the generator has no {name}"))
                })?;
                b.assign(p.value(), src.value())?;
                continue;
            }
        };
        b.assign(p.value(), &b.upload(p.value().shape(), &values)?)?;
    }
    Ok(grown)
}
