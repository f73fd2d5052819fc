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

/// Per-channel mean and (biased) variance of the first block's output, f64 sums over
/// `batches` batches of `batch` latent vectors drawn from `latent` with seeds from `seed`
/// (async, as every read of the page's backends).
pub async fn first_block_stats(
    b: &dyn Backend,
    gen: &Generator,
    batches: usize,
    batch: usize,
    latent: Latent,
    seed: u64,
) -> Result<(Vec<f64>, Vec<f64>)> {
    if batches == 0 || batch == 0 {
        return Err(Error::Invalid(
            "grow gan: the statistics need at least one batch of one sample".into(),
        ));
    }
    let (d, c) = (gen.config.latent, 2 * gen.config.width);
    let (mut sum, mut sq, mut count) = (vec![0f64; c], vec![0f64; c], 0usize);
    for k in 0..batches {
        let z = gan::sample_z(batch, d, latent, seed.wrapping_add(k as u64));
        let mut g = Graph::new(b);
        g.set_grad_enabled(false);
        g.set_training(false);
        let zv = g.constant(b.upload(&[batch, d], &z)?);
        let h = gen.first_block(&mut g, zv)?;
        let v = b.read(g.value(h)?).await?;
        let plane = 49;
        for i in 0..batch {
            for ch in 0..c {
                for &a in &v[(i * c + ch) * plane..][..plane] {
                    sum[ch] += a as f64;
                    sq[ch] += (a as f64) * (a as f64);
                }
            }
        }
        count += batch * plane;
    }
    let n = count as f64;
    let mean: Vec<f64> = sum.iter().map(|s| s / n).collect();
    let var = sq
        .iter()
        .zip(&mean)
        .map(|(q, m)| (q / n - m * m).max(0.0))
        .collect();
    Ok((mean, var))
}

/// `gen` (a DCGAN G without the extra block) with the identity block inserted (see the module
/// doc); `stats` its `first_block_stats`. The other weights are copied; the new G's
/// evaluation-mode output equals the old one's up to float rounding.
pub fn deepen(b: &dyn Backend, gen: &Generator, stats: &(Vec<f64>, Vec<f64>)) -> Result<Generator> {
    let cfg = gen.config;
    check_deepenable(gen)?;
    let c = 2 * cfg.width;
    let (mean, var) = stats;
    if mean.len() != c || var.len() != c {
        return Err(Error::Invalid(format!(
            "grow gan: statistics of {} channels do not fit a first block of {c}",
            mean.len()
        )));
    }
    let mut grown_cfg = cfg;
    grown_cfg.extra_conv = true;
    let grown = Generator::new(b, grown_cfg, 0)?;
    let old = gen.state();
    let eps = grown.batchnorms()[1].eps;
    for p in grown.state() {
        let name = p.name();
        let values: Vec<f32> = match name {
            // the identity: w[c][c][1][1] = 1 in the (in, out, 3, 3) layout
            "g.m.weight" => (0..c * c * 9)
                .map(|i| {
                    if i % 9 == 4 && i / 9 / c == i / 9 % c {
                        1.0
                    } else {
                        0.0
                    }
                })
                .collect(),
            "g.m.bias" => vec![0.0; c],
            "g.mbn.weight" => var.iter().map(|v| (v + eps as f64).sqrt() as f32).collect(),
            "g.mbn.bias" | "g.mbn.running_mean" => mean.iter().map(|&m| m as f32).collect(),
            "g.mbn.running_var" => var.iter().map(|&v| v as f32).collect(),
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
