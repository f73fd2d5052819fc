//! Growing a trained DnCNN into a deeper and wider one that computes the same function
//! (Net2Net: Chen, Goodfellow, Shlens 2015, "Net2Net: Accelerating Learning via Knowledge
//! Transfer"), so a larger model starts training at the smaller one's quality instead of from
//! scratch.
//!
//! Deeper (Net2DeeperNet): new middle layers conv + BatchNorm + ReLU that are the identity in
//! evaluation mode are inserted after existing hidden layers, spread evenly. The conv is the
//! identity (centre tap 1 on its own channel, every other tap 0); the BatchNorm's running
//! statistics are the per-channel mean m and variance v of its input (the ReLU'd output of the
//! layer before, measured on data: [`hidden_stats`]), and gamma = sqrt(v + eps), beta = m, so
//! (x - m) / sqrt(v + eps) * gamma + beta = x; the ReLU of a ReLU'd input changes nothing. The
//! measured statistics make the training-mode BatchNorm (batch statistics) close to the
//! identity as well, so the first training steps start from the small model's function.
//!
//! Wider (Net2WiderNet): every hidden layer (all but the last conv) gets `width` output
//! channels: channel j < old width is channel j, each further one a copy of a channel drawn at
//! random (its conv filter, bias, BatchNorm parameters and running statistics copied). The next
//! layer's input weights of a channel copied r times in all are divided by r, so the sum over
//! the copies gives the old weight and the function is unchanged. Copies would receive equal
//! updates forever (their incoming weights get proportional gradients, and Adam is invariant to
//! that scale), so `noise` adds Gaussian noise of std `noise` x (the std of that layer's
//! weights) to the incoming weights of the added channels: the function then changes by about
//! that fraction of the copies' share (0 keeps it exact up to float rounding).
//!
//! Deepening is done first, at the old width; widening then applies to the new layers too.

use crate::backend::Backend;
use crate::models::dncnn::{DnCnn, DnCnnConfig};
use crate::nn::Module;
use crate::rng;
use crate::tensor::Tensor;
use crate::{Error, Result};

pub use super::grow_identity::ChannelStats;
use super::grow_identity::{identity_conv3x3, ChannelMoments};

/// Per-channel statistics of each hidden layer's output (after its ReLU; layers 0 .. depth-2)
/// in evaluation mode, over the batches `noisy(0..batches)` (each (N, C, H, W)): the inputs the
/// identity layers inserted after them will see.
pub async fn hidden_stats(
    b: &dyn Backend,
    model: &DnCnn,
    batches: usize,
    mut noisy: impl FnMut(usize) -> Result<Tensor>,
) -> Result<Vec<ChannelStats>> {
    if batches == 0 {
        return Err(Error::Invalid(
            "grow: the hidden-layer statistics need at least 1 batch".into(),
        ));
    }
    let DnCnnConfig { depth, width, .. } = model.config;
    let mut moments: Vec<ChannelMoments> =
        (0..depth - 1).map(|_| ChannelMoments::new(width)).collect();
    for k in 0..batches {
        let x = noisy(k)?;
        model.check_input(&x)?;
        let mut h = x.clone();
        for (l, m) in moments.iter_mut().enumerate() {
            h = model.inference_layer(b, l, &x, &h)?;
            let shape = h.shape();
            m.add(&b.read(&h).await?, shape[0], shape[2] * shape[3]);
        }
    }
    Ok(moments.iter().map(ChannelMoments::stats).collect())
}

/// How to grow: the target shape, the seed of the channel choice and the noise, and the noise
/// scale (see the module doc).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct GrowPlan {
    pub depth: usize,
    pub width: usize,
    pub seed: u64,
    pub noise: f32,
}

/// One conv layer on the host: weight (cout, cin, 3, 3), optional bias, optional BatchNorm
/// [gamma, beta, running mean, running var].
#[derive(Clone, Debug)]
struct HostLayer {
    cout: usize,
    cin: usize,
    k: usize,
    w: Vec<f32>,
    bias: Option<Vec<f32>>,
    bn: Option<[Vec<f32>; 4]>,
}

/// The positions (index of the hidden layer after which each new layer goes, 0 = the first
/// conv) of `extra` new layers among `hidden` existing hidden layers, spread evenly.
pub fn insert_positions(hidden: usize, extra: usize) -> Vec<usize> {
    (0..extra).map(|j| j * hidden / extra).collect()
}

/// `model` grown to `plan`'s depth and width (same channels), computing the same function in
/// evaluation mode (exactly with `noise` 0, up to float rounding). `stats` are the model's
/// [`hidden_stats`] (needed only when the depth grows). Errors: a smaller depth or width than
/// the model's, a depth or width out of range, stats of another model.
pub async fn grow(
    b: &dyn Backend,
    model: &DnCnn,
    stats: &[ChannelStats],
    plan: GrowPlan,
) -> Result<DnCnn> {
    let old = model.config;
    let new = DnCnnConfig {
        channels: old.channels,
        depth: plan.depth,
        width: plan.width,
    };
    new.validate()?;
    if plan.depth < old.depth || plan.width < old.width {
        return Err(Error::Invalid(format!(
            "grow: the model is depth {} width {}; it can only grow (asked for depth {} width {})",
            old.depth, old.width, plan.depth, plan.width
        )));
    }
    if !(plan.noise >= 0.0 && plan.noise.is_finite()) {
        return Err(Error::Invalid(format!(
            "grow: noise must be >= 0, got {}",
            plan.noise
        )));
    }
    let extra = plan.depth - old.depth;
    if extra > 0
        && (stats.len() != old.depth - 1
            || stats
                .iter()
                .any(|s| s.mean.len() != old.width || s.var.len() != old.width))
    {
        return Err(Error::Invalid(format!(
            "grow: {} hidden-layer statistics do not fit a model of depth {} width {}",
            stats.len(),
            old.depth,
            old.width
        )));
    }
    let mut layers = read_layers(b, model).await?;
    let eps = model.middle.first().map_or(1e-5, |(_, bn)| bn.eps);
    // deeper, at the old width: insert from the back so earlier positions stay valid
    let hidden = old.depth - 1;
    for &after in insert_positions(hidden, extra).iter().rev() {
        layers.insert(after + 1, identity_layer(old.width, &stats[after], eps));
    }
    // wider: each hidden layer's output channels mapped to old ones
    let mut prev: Option<(Vec<usize>, Vec<f32>)> = None; // (map, 1 / copies) of the input
    let last = layers.len() - 1;
    for (l, layer) in layers.iter_mut().enumerate() {
        let seed = plan.seed.wrapping_mul(1_000_003).wrapping_add(l as u64);
        let map: Vec<usize> = if l == last {
            (0..layer.cout).collect()
        } else {
            (0..plan.width)
                .map(|j| {
                    if j < layer.cout {
                        j
                    } else {
                        rng::random_u32(seed, j as u32) as usize % layer.cout
                    }
                })
                .collect()
        };
        *layer = widen(layer, &map, prev.as_ref(), plan.noise, seed ^ 0x5eed);
        let mut copies = vec![0usize; map.iter().max().map_or(0, |m| m + 1)];
        map.iter().for_each(|&k| copies[k] += 1);
        let share = map.iter().map(|&k| 1.0 / copies[k] as f32).collect();
        prev = Some((map, share));
    }
    write_layers(b, new, &layers)
}

/// The new layer's weights: output channel j is old channel map[j] (noise added to the added
/// channels' weights); input channel i is old input in_map[i], scaled by its share.
fn widen(
    layer: &HostLayer,
    map: &[usize],
    input: Option<&(Vec<usize>, Vec<f32>)>,
    noise: f32,
    seed: u64,
) -> HostLayer {
    let (cin_old, kk) = (layer.cin, layer.k * layer.k);
    let (in_map, share): (Vec<usize>, Vec<f32>) = match input {
        Some((m, s)) => (m.clone(), s.clone()),
        None => ((0..cin_old).collect(), vec![1.0; cin_old]),
    };
    let (cout, cin) = (map.len(), in_map.len());
    let n = layer.w.len() as f64;
    let mean = layer.w.iter().map(|&v| v as f64).sum::<f64>() / n;
    let std = (layer
        .w
        .iter()
        .map(|&v| (v as f64 - mean).powi(2))
        .sum::<f64>()
        / n)
        .sqrt();
    let mut w = vec![0f32; cout * cin * kk];
    for (j, &oj) in map.iter().enumerate() {
        for (i, (&oi, &s)) in in_map.iter().zip(&share).enumerate() {
            let src = &layer.w[(oj * cin_old + oi) * kk..][..kk];
            let dst = &mut w[(j * cin + i) * kk..][..kk];
            for (t, (d, &v)) in dst.iter_mut().zip(src).enumerate() {
                *d = v * s;
                if j >= layer.cout && noise > 0.0 {
                    let idx = ((j * cin + i) * kk + t) as u32;
                    *d += noise * std as f32 * rng::normal(seed, idx);
                }
            }
        }
    }
    let pick = |v: &Vec<f32>| map.iter().map(|&k| v[k]).collect::<Vec<f32>>();
    HostLayer {
        cout,
        cin,
        k: layer.k,
        w,
        bias: layer.bias.as_ref().map(pick),
        bn: layer
            .bn
            .as_ref()
            .map(|[g, bt, m, v]| [pick(g), pick(bt), pick(m), pick(v)]),
    }
}

/// conv (identity centre tap) + BatchNorm that is the identity on a ReLU'd input with these
/// statistics (gamma = sqrt(var + eps), beta = mean = running mean, running var = var).
fn identity_layer(width: usize, s: &ChannelStats, eps: f32) -> HostLayer {
    HostLayer {
        cout: width,
        cin: width,
        k: 3,
        w: identity_conv3x3(width),
        bias: None,
        bn: Some(s.identity_batchnorm(eps)),
    }
}

async fn read_layers(b: &dyn Backend, model: &DnCnn) -> Result<Vec<HostLayer>> {
    let conv = |c: &crate::nn::Conv2d| {
        let s = c.weight.shape();
        (s[0], s[1], s[2])
    };
    let mut out = Vec::with_capacity(model.config.depth);
    let (cout, cin, k) = conv(&model.first);
    out.push(HostLayer {
        cout,
        cin,
        k,
        w: b.read(model.first.weight.value()).await?,
        bias: match &model.first.bias {
            Some(p) => Some(b.read(p.value()).await?),
            None => None,
        },
        bn: None,
    });
    for (c, bn) in &model.middle {
        let (cout, cin, k) = conv(c);
        out.push(HostLayer {
            cout,
            cin,
            k,
            w: b.read(c.weight.value()).await?,
            bias: None,
            bn: Some([
                b.read(bn.weight.value()).await?,
                b.read(bn.bias.value()).await?,
                b.read(bn.running_mean.value()).await?,
                b.read(bn.running_var.value()).await?,
            ]),
        });
    }
    let (cout, cin, k) = conv(&model.last);
    out.push(HostLayer {
        cout,
        cin,
        k,
        w: b.read(model.last.weight.value()).await?,
        bias: None,
        bn: None,
    });
    Ok(out)
}

fn write_layers(b: &dyn Backend, config: DnCnnConfig, layers: &[HostLayer]) -> Result<DnCnn> {
    let model = DnCnn::new(b, config, 0)?;
    let set = |p: &crate::autodiff::Param, v: &[f32]| -> Result<()> {
        b.assign(p.value(), &b.upload(p.shape(), v)?)
    };
    let first = &layers[0];
    set(&model.first.weight, &first.w)?;
    if let (Some(p), Some(v)) = (&model.first.bias, &first.bias) {
        set(p, v)?;
    }
    for ((c, bn), l) in model.middle.iter().zip(&layers[1..]) {
        set(&c.weight, &l.w)?;
        let Some([g, bt, m, v]) = &l.bn else {
            return Err(Error::Invalid(
                "grow: a middle layer lost its BatchNorm".into(),
            ));
        };
        set(&bn.weight, g)?;
        set(&bn.bias, bt)?;
        set(&bn.running_mean, m)?;
        set(&bn.running_var, v)?;
    }
    set(&model.last.weight, &layers[layers.len() - 1].w)?;
    // every state tensor was set (the shapes were checked by upload/assign)
    debug_assert_eq!(model.state().len(), 2 + 4 * (config.depth - 2) + 1);
    Ok(model)
}
