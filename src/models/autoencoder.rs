//! Autoencoders on MNIST (lecture part 2): F(x) = psi(phi(x)) ~ x, plain and regularised.
//!
//! * architecture: dense (784-512-256-k and back) or convolutional (two stride-2 convs down to
//!   7x7, a dense code, a dense layer and two stride-2 transposed convs back up);
//! * the code layer is a sigmoid, so every code lies in [0, 1]^k: the 2-D manifold of a k = 2
//!   model is the unit square, and the contractive penalty has its closed form;
//! * cost C(x, F(x)) = mean binary cross-entropy per pixel (decoder logits against the clean
//!   digit), plus the kind's term:
//!   - sparse: lambda * mean over the batch of ||phi(x)||_1;
//!   - contractive: lambda * mean over the batch of ||J||_F^2, J the Jacobian of the code layer
//!     with respect to its input h, in closed form sum_j (c_j (1 - c_j))^2 sum_i W_ji^2 (Rifai
//!     et al. 2011; exact for the sigmoid code layer; the full encoder's Jacobian w.r.t. x is
//!     measured separately by `jacobian_norm`);
//!   - denoising: the input is corrupted (Gaussian noise of std `level`, clipped to [0, 1], or
//!     masking noise zeroing a `level` fraction of pixels) and the target stays clean.
//!
//! Everything is composed from `nn` layers and tape ops; no hand-written backward.

use crate::autodiff::{Graph, Param, Var};
use crate::backend::{Backend, Conv2dParams, ConvTranspose2dParams, LossKind};
use crate::error::{Error, Result};
use crate::nn::{Conv2d, ConvTranspose2d, Linear, Module};
use crate::rng;
use crate::tensor::Tensor;

/// Pixels of one MNIST digit.
pub const PIXELS: usize = 784;
/// Largest code size the tab and CLI accept.
pub const MAX_CODE: usize = 64;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AeArch {
    Dense,
    Conv,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum AeKind {
    Plain,
    Sparse,
    Contractive,
    Denoising,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NoiseKind {
    /// x + N(0, level^2), clipped to [0, 1]
    Gaussian,
    /// each pixel zeroed with probability `level`
    Masking,
}

/// The cost being minimised: kind, its weight lambda (sparse, contractive) and the input
/// corruption (denoising).
#[derive(Clone, Copy, Debug)]
pub struct AeCost {
    pub kind: AeKind,
    pub lambda: f32,
    pub noise: NoiseKind,
    pub level: f32,
}

impl AeCost {
    pub fn plain() -> AeCost {
        AeCost {
            kind: AeKind::Plain,
            lambda: 0.0,
            noise: NoiseKind::Gaussian,
            level: 0.0,
        }
    }
    pub fn validate(&self) -> Result<()> {
        if !(self.lambda >= 0.0 && self.lambda.is_finite()) {
            return Err(Error::Invalid(format!(
                "lambda must be >= 0, got {}",
                self.lambda
            )));
        }
        let max = if self.noise == NoiseKind::Masking {
            1.0
        } else {
            10.0
        };
        if !(self.level >= 0.0 && self.level < max) {
            return Err(Error::Invalid(format!(
                "noise level must be in [0, {max}), got {}",
                self.level
            )));
        }
        Ok(())
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AeConfig {
    pub arch: AeArch,
    /// code size
    pub k: usize,
}

impl AeConfig {
    pub fn validate(&self) -> Result<()> {
        if self.k == 0 || self.k > MAX_CODE {
            return Err(Error::Invalid(format!(
                "code size k must be 1..={MAX_CODE}, got {}",
                self.k
            )));
        }
        Ok(())
    }
}

/// Encoder layers below the code layer.
enum Trunk {
    Dense { l1: Linear, l2: Linear },
    Conv { c1: Conv2d, c2: Conv2d },
}

/// Decoder layers above the code.
enum Head {
    Dense {
        l1: Linear,
        l2: Linear,
        out: Linear,
    },
    Conv {
        l1: Linear,
        t1: ConvTranspose2d,
        out: ConvTranspose2d,
    },
}

pub struct Autoencoder {
    pub config: AeConfig,
    trunk: Trunk,
    /// the sigmoid code layer (its weight enters the contractive penalty)
    code: Linear,
    head: Head,
}

/// Width of the conv trunk's output (32 channels of 7x7).
const CONV_FEATURES: usize = 32 * 7 * 7;

impl Autoencoder {
    pub fn new(b: &dyn Backend, config: AeConfig, seed: u64) -> Result<Autoencoder> {
        config.validate()?;
        let k = config.k;
        let down = Conv2dParams::new(2, 1, 1);
        let up = ConvTranspose2dParams::new(2, 1, 0, 1);
        let (trunk, hidden, head) = match config.arch {
            AeArch::Dense => (
                Trunk::Dense {
                    l1: Linear::new(b, "enc.0", PIXELS, 512, true, seed)?,
                    l2: Linear::new(b, "enc.1", 512, 256, true, seed + 1)?,
                },
                256,
                Head::Dense {
                    l1: Linear::new(b, "dec.0", k, 256, true, seed + 3)?,
                    l2: Linear::new(b, "dec.1", 256, 512, true, seed + 4)?,
                    out: Linear::new(b, "dec.2", 512, PIXELS, true, seed + 5)?,
                },
            ),
            AeArch::Conv => (
                Trunk::Conv {
                    c1: Conv2d::new(b, "enc.0", 1, 16, 3, down, true, seed)?,
                    c2: Conv2d::new(b, "enc.1", 16, 32, 3, down, true, seed + 1)?,
                },
                CONV_FEATURES,
                Head::Conv {
                    l1: Linear::new(b, "dec.0", k, CONV_FEATURES, true, seed + 3)?,
                    t1: ConvTranspose2d::new(b, "dec.1", 32, 16, 4, up, true, seed + 4)?,
                    out: ConvTranspose2d::new(b, "dec.2", 16, 1, 4, up, true, seed + 5)?,
                },
            ),
        };
        let code = Linear::new(b, "code", hidden, k, true, seed + 2)?;
        // Xavier-style init for the sigmoid code layer keeps its units off saturation at start.
        code.reinit(
            b,
            crate::nn::init::Init::XavierUniform { gain: 1.0 },
            seed + 2,
        )?;
        Ok(Autoencoder {
            config,
            trunk,
            code,
            head,
        })
    }

    /// The input of the code layer, h, for digits x (N, 784) in [0, 1].
    pub fn trunk(&self, g: &mut Graph<'_>, x: Var) -> Result<Var> {
        let s = g.shape(x)?;
        if s.len() != 2 || s[1] != PIXELS {
            return Err(Error::Shape(format!(
                "autoencoder: expected digits (N, {PIXELS}), got {s:?}"
            )));
        }
        match &self.trunk {
            Trunk::Dense { l1, l2 } => {
                let h = l1.forward(g, x)?;
                let h = g.relu(h)?;
                let h = l2.forward(g, h)?;
                g.relu(h)
            }
            Trunk::Conv { c1, c2 } => {
                let h = g.reshape(x, &[s[0], 1, 28, 28])?;
                let h = c1.forward(g, h)?;
                let h = g.relu(h)?;
                let h = c2.forward(g, h)?;
                let h = g.relu(h)?;
                g.flatten(h)
            }
        }
    }

    /// The code c = sigmoid(W h + b) of h (the trunk's output).
    pub fn code_from_trunk(&self, g: &mut Graph<'_>, h: Var) -> Result<Var> {
        let z = self.code.forward(g, h)?;
        g.sigmoid(z)
    }

    /// phi(x): codes (N, k) in [0, 1].
    pub fn encode(&self, g: &mut Graph<'_>, x: Var) -> Result<Var> {
        let h = self.trunk(g, x)?;
        self.code_from_trunk(g, h)
    }

    /// Decoder logits (N, 784) of codes (N, k); psi(c) = sigmoid of these.
    pub fn decode_logits(&self, g: &mut Graph<'_>, c: Var) -> Result<Var> {
        let n = g.shape(c)?[0];
        match &self.head {
            Head::Dense { l1, l2, out } => {
                let h = l1.forward(g, c)?;
                let h = g.relu(h)?;
                let h = l2.forward(g, h)?;
                let h = g.relu(h)?;
                out.forward(g, h)
            }
            Head::Conv { l1, t1, out } => {
                let h = l1.forward(g, c)?;
                let h = g.relu(h)?;
                let h = g.reshape(h, &[n, 32, 7, 7])?;
                let h = t1.forward(g, h)?;
                let h = g.relu(h)?;
                let h = out.forward(g, h)?;
                g.reshape(h, &[n, PIXELS])
            }
        }
    }

    /// psi(c): decoded digits (N, 784) in [0, 1].
    pub fn decode(&self, g: &mut Graph<'_>, c: Var) -> Result<Var> {
        let l = self.decode_logits(g, c)?;
        g.sigmoid(l)
    }

    /// ||J||_F^2 of the code layer for each row, summed over the batch: sum_n sum_j
    /// (c_nj (1 - c_nj))^2 sum_i W_ji^2 -> shape [1].
    pub fn contractive_penalty_sum(&self, g: &mut Graph<'_>, code: Var) -> Result<Var> {
        let b = g.backend();
        let w = g.param(&self.code.weight);
        let fan_in = self.code.weight.shape()[1];
        let c2 = g.square(code)?;
        let slope = g.sub(code, c2)?; // c (1 - c), the sigmoid's derivative
        let slope2 = g.square(slope)?; // (N, k)
        let w2 = g.square(w)?; // (k, in)
        let ones = g.constant(b.upload(&[fan_in, 1], &vec![1.0; fan_in])?);
        let row_norms = g.matmul(w2, ones, false, false)?; // (k, 1)
        let per_row = g.matmul(slope2, row_norms, false, false)?; // (N, 1)
        g.sum(per_row)
    }

    /// The cost of `cost.kind` on clean digits `x` (N, 784), with `noisy` the corrupted input
    /// of a denoising cost (ignored otherwise). Returns (total cost, reconstruction term).
    pub fn cost(
        &self,
        g: &mut Graph<'_>,
        x: &Tensor,
        noisy: Option<&Tensor>,
        cost: &AeCost,
    ) -> Result<(Var, Var)> {
        let p = self.cost_parts(g, x, noisy, cost)?;
        Ok((p.total, p.recon))
    }

    /// [`Autoencoder::cost`] with the codes and decoder logits it went through, so an
    /// evaluation can report cost, codes and reconstructions from one forward pass.
    pub fn cost_parts(
        &self,
        g: &mut Graph<'_>,
        x: &Tensor,
        noisy: Option<&Tensor>,
        cost: &AeCost,
    ) -> Result<CostParts> {
        let n = x.shape()[0] as f32;
        let target = g.constant(x.clone());
        let input = match (cost.kind, noisy) {
            (AeKind::Denoising, Some(xn)) => g.constant(xn.clone()),
            (AeKind::Denoising, None) => {
                return Err(Error::Invalid(
                    "a denoising cost needs the corrupted input".into(),
                ))
            }
            _ => target,
        };
        let code = self.encode(g, input)?;
        let logits = self.decode_logits(g, code)?;
        let recon = g.loss(LossKind::BceWithLogits, logits, target)?;
        let total = match cost.kind {
            AeKind::Sparse => {
                let a = g.abs(code)?;
                let s = g.sum(a)?;
                let pen = g.scale(s, cost.lambda / n)?;
                g.add(recon, pen)?
            }
            AeKind::Contractive => {
                let s = self.contractive_penalty_sum(g, code)?;
                let pen = g.scale(s, cost.lambda / n)?;
                g.add(recon, pen)?
            }
            AeKind::Plain | AeKind::Denoising => recon,
        };
        Ok(CostParts {
            total,
            recon,
            code,
            logits,
        })
    }
}

/// The graph nodes of one cost evaluation (see [`Autoencoder::cost_parts`]).
pub struct CostParts {
    /// the cost being minimised, shape [1]
    pub total: Var,
    /// its reconstruction term (mean binary cross-entropy per pixel), shape [1]
    pub recon: Var,
    /// the codes (N, k)
    pub code: Var,
    /// the decoder's logits (N, 784); the reconstruction is their sigmoid
    pub logits: Var,
}

impl Module for Autoencoder {
    /// F(x) = psi(phi(x)).
    fn forward(&self, g: &mut Graph<'_>, x: Var) -> Result<Var> {
        let c = self.encode(g, x)?;
        self.decode(g, c)
    }
    fn params(&self) -> Vec<&Param> {
        let mut p: Vec<&Param> = match &self.trunk {
            Trunk::Dense { l1, l2 } => [l1.params(), l2.params()].concat(),
            Trunk::Conv { c1, c2 } => [c1.params(), c2.params()].concat(),
        };
        p.extend(self.code.params());
        p.extend(match &self.head {
            Head::Dense { l1, l2, out } => [l1.params(), l2.params(), out.params()].concat(),
            Head::Conv { l1, t1, out } => [l1.params(), t1.params(), out.params()].concat(),
        });
        p
    }
}

/// The corrupted input of a denoising autoencoder for digits `x` (host values in [0, 1]).
pub fn corrupt(x: &[f32], noise: NoiseKind, level: f32, seed: u64) -> Vec<f32> {
    match noise {
        NoiseKind::Gaussian => x
            .iter()
            .enumerate()
            .map(|(i, &v)| (v + level * rng::normal(seed, i as u32)).clamp(0.0, 1.0))
            .collect(),
        NoiseKind::Masking => x
            .iter()
            .enumerate()
            .map(|(i, &v)| {
                if rng::uniform01(seed, i as u32) < level {
                    0.0
                } else {
                    v
                }
            })
            .collect(),
    }
}

/// The architecture and code size a weights file was saved with (from its tensor shapes).
pub fn config_from_tensors(ts: &[crate::weights::NamedTensor]) -> Result<AeConfig> {
    let find = |name: &str| ts.iter().find(|t| t.name == name);
    let code = find("code.weight")
        .ok_or_else(|| Error::Weights("not an autoencoder: no 'code.weight' tensor".into()))?;
    let arch = match find("enc.0.weight").map(|t| t.shape.len()) {
        Some(2) => AeArch::Dense,
        Some(4) => AeArch::Conv,
        _ => {
            return Err(Error::Weights(
                "not an autoencoder: no 'enc.0.weight' of rank 2 or 4".into(),
            ))
        }
    };
    let config = AeConfig {
        arch,
        k: code.shape[0],
    };
    config.validate()?;
    Ok(config)
}

/// Load an autoencoder from safetensors bytes (architecture and k read from the shapes).
pub fn from_weights(b: &dyn Backend, bytes: &[u8]) -> Result<Autoencoder> {
    let ts = crate::weights::from_bytes(bytes)?;
    let model = Autoencoder::new(b, config_from_tensors(&ts)?, 0)?;
    crate::weights::load_params(b, &model.params(), bytes)?;
    Ok(model)
}

/// Digits per forward pass in the evaluation helpers below (bounds the activations' memory).
const EVAL_CHUNK: usize = 500;

/// F(input) on the host for digits `input` (n x 784), in chunks, no gradients kept. Async so
/// the browser can call it (natively: `pollster::block_on`).
pub async fn reconstruct(b: &dyn Backend, model: &Autoencoder, input: &[f32]) -> Result<Vec<f32>> {
    let mut out = Vec::with_capacity(input.len());
    for chunk in input.chunks(EVAL_CHUNK * PIXELS) {
        let mut g = Graph::new(b);
        g.set_grad_enabled(false);
        let x = g.constant(b.upload(&[chunk.len() / PIXELS, PIXELS], chunk)?);
        let y = model.forward(&mut g, x)?;
        out.extend(b.read(g.value(y)?).await?);
    }
    crate::finite::check_output("the autoencoder", &out)?;
    Ok(out)
}

/// Mean squared error per pixel of `reconstruction` against `clean`.
pub fn mse(reconstruction: &[f32], clean: &[f32]) -> f64 {
    let se: f64 = reconstruction
        .iter()
        .zip(clean)
        .map(|(o, c)| ((o - c) as f64).powi(2))
        .sum();
    se / clean.len().max(1) as f64
}

/// Mean squared error per pixel of F(input) against `clean` (input = clean when None).
pub async fn reconstruction_mse(
    b: &dyn Backend,
    model: &Autoencoder,
    clean: &[f32],
    input: Option<&[f32]>,
) -> Result<f64> {
    let rec = reconstruct(b, model, input.unwrap_or(clean)).await?;
    Ok(mse(&rec, clean))
}

/// Codes phi(x) (n x k, in [0, 1]) of digits (n x 784), in chunks.
pub async fn codes(b: &dyn Backend, model: &Autoencoder, digits: &[f32]) -> Result<Vec<f32>> {
    let mut out = Vec::with_capacity(digits.len() / PIXELS * model.config.k);
    for chunk in digits.chunks(EVAL_CHUNK * PIXELS) {
        let mut g = Graph::new(b);
        g.set_grad_enabled(false);
        let x = g.constant(b.upload(&[chunk.len() / PIXELS, PIXELS], chunk)?);
        let c = model.encode(&mut g, x)?;
        out.extend(b.read(g.value(c)?).await?);
    }
    crate::finite::check_output("the encoder", &out)?;
    Ok(out)
}

/// Decoded digits psi(c) (n x 784, in [0, 1]) of codes (n x k), in chunks.
pub async fn decode_codes(b: &dyn Backend, model: &Autoencoder, codes: &[f32]) -> Result<Vec<f32>> {
    let k = model.config.k;
    if !codes.len().is_multiple_of(k) {
        return Err(Error::Shape(format!(
            "decode: {} code values are not a whole number of codes of size {k}",
            codes.len()
        )));
    }
    let mut out = Vec::with_capacity(codes.len() / k * PIXELS);
    for chunk in codes.chunks(EVAL_CHUNK * k) {
        let mut g = Graph::new(b);
        g.set_grad_enabled(false);
        let c = g.constant(b.upload(&[chunk.len() / k, k], chunk)?);
        let y = model.decode(&mut g, c)?;
        out.extend(b.read(g.value(y)?).await?);
    }
    crate::finite::check_output("the decoder", &out)?;
    Ok(out)
}

/// Mean over digits of ||d phi(x) / dx||_F^2, the full encoder's Jacobian, one backward pass
/// per code unit (each pass gives that unit's gradient row for every digit at once).
pub async fn jacobian_norm(b: &dyn Backend, model: &Autoencoder, digits: &[f32]) -> Result<f64> {
    let n = digits.len() / PIXELS;
    Ok(jacobian_rows_sq_sum(b, model, digits, 0..model.config.k).await? / n.max(1) as f64)
}

/// The part of [`jacobian_norm`] from code units `units`, summed over digits (not averaged):
/// sum_n sum_{j in units} ||d phi_j(x_n) / dx||^2. Lets a caller split the k backward passes
/// over several short calls.
pub async fn jacobian_rows_sq_sum(
    b: &dyn Backend,
    model: &Autoencoder,
    digits: &[f32],
    units: std::ops::Range<usize>,
) -> Result<f64> {
    let n = digits.len() / PIXELS;
    let k = model.config.k;
    if n == 0 || units.end > k {
        return Err(Error::Invalid(format!("jacobian: need >= 1 digit and code units inside 0..{k} (got {n} digits, units {units:?})")));
    }
    let x = b.upload(&[n, PIXELS], &digits[..n * PIXELS])?;
    let mut total = 0.0f64;
    for j in units {
        let mut g = Graph::new(b);
        let xv = g.input(x.clone());
        let c = model.encode(&mut g, xv)?;
        let mask: Vec<f32> = (0..n * k)
            .map(|i| if i % k == j { 1.0 } else { 0.0 })
            .collect();
        let m = g.constant(b.upload(&[n, k], &mask)?);
        let picked = g.mul(c, m)?;
        let s = g.sum(picked)?;
        g.backward(s)?;
        let grad = g
            .grad(xv)
            .ok_or_else(|| Error::Invalid("the code does not depend on the input".into()))?;
        total += b
            .read(&grad)
            .await?
            .iter()
            .map(|v| (*v as f64).powi(2))
            .sum::<f64>();
    }
    Ok(total)
}
