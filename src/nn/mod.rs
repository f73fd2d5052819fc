//! Layers, activations, initialisation and optimizers on top of the autodiff tape. Layers only
//! compose graph ops (`crate::autodiff`); their backward is the tape's.
//!
//! ```ignore
//! let mut g = Graph::new(&backend);
//! let x = g.constant(batch);
//! let y = model.forward(&mut g, x)?;
//! let t = g.constant(target);
//! let loss = g.loss(LossKind::Mse, y, t)?;
//! g.backward(loss)?;
//! opt.step(&g, &model.params())?;
//! ```

pub mod dropout;
pub mod init;
pub mod layers;
pub mod loss;
pub mod optim;
pub mod spectral_norm;

pub use dropout::{dropout, Dropout};
pub use init::Init;
pub use layers::{recalibrate_batchnorm, BatchNorm2d, Conv2d, ConvTranspose2d, Linear};
pub use loss::cross_entropy;
pub use optim::{Adam, Optimizer, Sgd};
pub use spectral_norm::SpectralNorm;

use crate::autodiff::{Graph, Param, Var};
use crate::backend::UnaryOp;
use crate::Result;

/// Something with a forward and named state.
pub trait Module {
    fn forward(&self, g: &mut Graph<'_>, x: Var) -> Result<Var>;
    /// Trainable parameters (what an optimizer updates).
    fn params(&self) -> Vec<&Param>;
    /// Non-trainable state saved with the weights (BatchNorm running statistics).
    fn buffers(&self) -> Vec<&Param> {
        Vec::new()
    }
    /// Everything a weights file holds: params then buffers (PyTorch's state_dict).
    fn state(&self) -> Vec<&Param> {
        let mut s = self.params();
        s.extend(self.buffers());
        s
    }
}

/// A parameter-free elementwise activation.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Activation {
    Relu,
    LeakyRelu(f32),
    Tanh,
    Sigmoid,
}

impl Activation {
    pub fn op(self) -> UnaryOp {
        match self {
            Activation::Relu => UnaryOp::Relu,
            Activation::LeakyRelu(s) => UnaryOp::LeakyRelu(s),
            Activation::Tanh => UnaryOp::Tanh,
            Activation::Sigmoid => UnaryOp::Sigmoid,
        }
    }
}

impl Module for Activation {
    fn forward(&self, g: &mut Graph<'_>, x: Var) -> Result<Var> {
        g.unary(self.op(), x)
    }
    fn params(&self) -> Vec<&Param> {
        Vec::new()
    }
}

/// (N, ...) -> (N, rest), as `nn.Flatten()`.
pub struct Flatten;

impl Module for Flatten {
    fn forward(&self, g: &mut Graph<'_>, x: Var) -> Result<Var> {
        g.flatten(x)
    }
    fn params(&self) -> Vec<&Param> {
        Vec::new()
    }
}

/// Layers applied in order.
#[derive(Default)]
pub struct Sequential {
    pub layers: Vec<Box<dyn Module>>,
}

impl Sequential {
    pub fn new() -> Sequential {
        Sequential { layers: Vec::new() }
    }
    /// Append a layer (builder style).
    pub fn push(mut self, m: impl Module + 'static) -> Sequential {
        self.layers.push(Box::new(m));
        self
    }
}

impl Module for Sequential {
    fn forward(&self, g: &mut Graph<'_>, mut x: Var) -> Result<Var> {
        for l in &self.layers {
            x = l.forward(g, x)?;
        }
        Ok(x)
    }
    fn params(&self) -> Vec<&Param> {
        self.layers.iter().flat_map(|l| l.params()).collect()
    }
    fn buffers(&self) -> Vec<&Param> {
        self.layers.iter().flat_map(|l| l.buffers()).collect()
    }
}
