//! DnCNN's fused inference: one conv launch per layer. Each BatchNorm is folded into the conv
//! before it once per run (`dncnn::fold_batchnorm`), each conv carries its bias and ReLU in the
//! kernel's epilogue (`Backend::conv2d_fused`, whose packed weight the GPU keeps after the first
//! call), and the activations alternate between two tensors per crop (`PingPong`), so a layer
//! allocates nothing in steady state. The last layer is its conv plus the residual x - v (two
//! launches). Equal to the unfused model (`DnCnn::inference_layer`, the graph in eval mode) up
//! to float rounding: tests/dncnn_inference.rs.
//!
//! Where the backend says `f16_inference` (a GPU with `shader-f16`, issue 18) every layer's
//! weight is stored as f16 and the hidden activations are f16 tensors (half the memory and
//! bandwidth); the input, the bias, the sums, the last layer's output and x - v stay f32.
//! Set12's PSNR moves by far less than 0.02 dB (README, "GPU kernel variants").

use super::dncnn::{fold_batchnorm, DnCnn};
use crate::backend::{Backend, BinaryOp, FusedConv2d};
use crate::tensor::{numel, Tensor};
use crate::{Error, Result};

/// A DnCNN's layers ready for fused inference on one backend. Built from the model's values at
/// the time: build a new one after the weights change (training, loading).
pub struct DnCnnFused {
    layers: Vec<FusedConv2d>,
    f16: bool,
}

impl DnCnnFused {
    pub fn new(b: &dyn Backend, model: &DnCnn) -> Result<DnCnnFused> {
        DnCnnFused::with_f16(b, model, b.info().f16_inference)
    }

    /// As `new`, with f16 storage (weights, hidden activations) when `f16`: a GPU needs
    /// `shader-f16` for it; the CPU rounds to f16 as its twin.
    pub fn with_f16(b: &dyn Backend, model: &DnCnn, f16: bool) -> Result<DnCnnFused> {
        let bias = |c: &crate::nn::Conv2d| c.bias.as_ref().map(|p| p.value().clone());
        let first = &model.first;
        let mut layers = vec![FusedConv2d::new(
            first.weight.value().clone(),
            bias(first),
            first.p,
            true,
        )];
        for (conv, bn) in &model.middle {
            let (w, bf) = fold_batchnorm(b, conv, bn)?;
            layers.push(FusedConv2d::new(w, Some(bf), conv.p, true));
        }
        let last = &model.last;
        layers.push(FusedConv2d::new(
            last.weight.value().clone(),
            bias(last),
            last.p,
            false,
        ));
        if f16 {
            let n = layers.len();
            layers = layers
                .into_iter()
                .enumerate()
                .map(|(k, c)| c.with_f16(k + 1 < n))
                .collect();
        }
        Ok(DnCnnFused { layers, f16 })
    }

    /// Weights and hidden activations are stored as f16.
    pub fn is_f16(&self) -> bool {
        self.f16
    }

    pub fn depth(&self) -> usize {
        self.layers.len()
    }

    /// Layer `k` applied to `h` (x itself for k = 0) as `DnCnn::inference_layer`, the hidden
    /// layers' output written into one of `bufs`' two tensors (the one `h` is not in).
    pub fn layer(
        &self,
        b: &dyn Backend,
        k: usize,
        x: &Tensor,
        h: &Tensor,
        bufs: &mut PingPong,
    ) -> Result<Tensor> {
        let depth = self.depth();
        let Some(c) = self.layers.get(k) else {
            return Err(Error::Invalid(format!(
                "DnCNN layer {k} does not exist (depth {depth})"
            )));
        };
        if k + 1 == depth {
            let v = b.conv2d_fused(h, c, None)?;
            return b.binary(BinaryOp::Sub, x, &v);
        }
        let s = h.shape();
        let shape = [s[0], c.weight.shape()[0], s[2], s[3]];
        let (slot, out) = bufs.other_than(h, &shape)?;
        let y = b.conv2d_fused(h, c, out.as_ref())?;
        bufs.keep(slot, &y);
        Ok(y)
    }

    /// The whole network on a batch (N, C, H, W): the denoised batch.
    pub fn denoise(&self, b: &dyn Backend, x: &Tensor) -> Result<Tensor> {
        let mut bufs = PingPong::default();
        let mut h = x.clone();
        for k in 0..self.depth() {
            h = self.layer(b, k, x, &h, &mut bufs)?;
        }
        Ok(h)
    }
}

/// The two activation tensors a fused DnCNN writes in turn. Each keeps its storage for as long
/// as the element count stays (a rotated crop reuses it under its new shape). The first layer
/// to use a slot lets `conv2d_fused` make the tensor (f32 or f16, as the layer stores it).
#[derive(Default)]
pub struct PingPong {
    bufs: [Option<Tensor>; 2],
}

impl PingPong {
    /// The slot not holding `input`, and its tensor reshaped to `shape` when it has that many
    /// elements (None: the layer makes a new one, `keep` it then).
    fn other_than(&self, input: &Tensor, shape: &[usize]) -> Result<(usize, Option<Tensor>)> {
        let i = match &self.bufs[0] {
            Some(t) if t.same_storage(input) => 1,
            _ => 0,
        };
        let t = match &self.bufs[i] {
            Some(t) if t.numel() == numel(shape) => Some(t.reshape(shape)?),
            _ => None,
        };
        Ok((i, t))
    }

    fn keep(&mut self, slot: usize, t: &Tensor) {
        self.bufs[slot] = Some(t.clone());
    }
}
