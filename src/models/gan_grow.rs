//! Deepening a trained DCGAN generator by the extra stride-1 block (`GanConfig::extra_conv`)
//! so that it computes the same function (Net2DeeperNet, as `dncnn_grow` does for the DnCNN):
//! training then goes on from the smaller G's samples with more capacity, instead of from
//! scratch.
//!
//! The inserted block is a 3x3 transposed conv that is the identity (centre tap 1 on its own
//! channel, bias 0), a BatchNorm whose running statistics are the per-channel mean m and
//! variance v of its input (the first block's ReLU'd output, measured over sampled z in
//! evaluation mode) with gamma = sqrt(v + eps) and beta = m, so it returns its input, and a
//! ReLU, which changes nothing on a ReLU'd input. In training mode the BatchNorm uses batch
//! statistics, which are close to m and v for a batch of a few hundred, so training starts
//! from (nearly) the old G.

use crate::autodiff::Graph;
use crate::backend::Backend;
use crate::error::{Error, Result};
use crate::models::gan::{self, GanArch, Generator, Latent};
use crate::models::grow_identity::{identity_conv3x3, ChannelMoments, ChannelStats};
use crate::nn::Module;

/// A DCGAN G without the extra block (what `deepen` takes), else the reason.
pub fn check_deepenable(gen: &Generator) -> Result<()> {
    if gen.config.arch != GanArch::Dcgan {
        return Err(Error::Invalid(
            "grow gan: only a DCGAN generator can be deepened (the dense one has no conv block)"
                .into(),
        ));
    }
    if gen.config.extra_conv {
        return Err(Error::Invalid(
            "grow gan: this generator already has the extra stride-1 block".into(),
        ));
    }
    Ok(())
}

/// Per-channel mean and (biased) variance of the first block's output over `batches` batches
/// of `batch` latent vectors drawn from `latent` with seeds from `seed` (async, as every read
/// of the page's backends).
pub async fn first_block_stats(
    b: &dyn Backend,
    gen: &Generator,
    batches: usize,
    batch: usize,
    latent: Latent,
    seed: u64,
) -> Result<ChannelStats> {
    if batches == 0 || batch == 0 {
        return Err(Error::Invalid(
            "grow gan: the statistics need at least one batch of one sample".into(),
        ));
    }
    let d = gen.config.latent;
    let mut moments = ChannelMoments::new(2 * gen.config.width);
    for k in 0..batches {
        let z = gan::sample_z(batch, d, latent, seed.wrapping_add(k as u64));
        let mut g = Graph::new(b);
        g.set_grad_enabled(false);
        g.set_training(false);
        let zv = g.constant(b.upload(&[batch, d], &z)?);
        let h = gen.first_block(&mut g, zv)?;
        moments.add(&b.read(g.value(h)?).await?, batch, 49);
    }
    Ok(moments.stats())
}

/// `gen` (a DCGAN G without the extra block) with the identity block inserted (see the module
/// doc); `stats` its `first_block_stats`. The other weights are copied; the new G's
/// evaluation-mode output equals the old one's up to float rounding.
pub fn deepen(b: &dyn Backend, gen: &Generator, stats: &ChannelStats) -> Result<Generator> {
    check_deepenable(gen)?;
    let c = 2 * gen.config.width;
    if stats.mean.len() != c || stats.var.len() != c {
        return Err(Error::Invalid(format!(
            "grow gan: statistics of {} channels do not fit a first block of {c}",
            stats.mean.len()
        )));
    }
    let mut grown_cfg = gen.config;
    grown_cfg.extra_conv = true;
    let grown = Generator::new(b, grown_cfg, 0)?;
    let old = gen.state();
    let [gamma, beta, running_mean, running_var] =
        stats.identity_batchnorm(grown.batchnorms()[1].eps);
    for p in grown.state() {
        let name = p.name();
        let values = match name {
            "g.m.weight" => identity_conv3x3(c),
            "g.m.bias" => vec![0.0; c],
            "g.mbn.weight" => gamma.clone(),
            "g.mbn.bias" => beta.clone(),
            "g.mbn.running_mean" => running_mean.clone(),
            "g.mbn.running_var" => running_var.clone(),
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
