//! The MNIST classifier: a small strided-conv CNN, softmax cross-entropy, trained with Adam.
//!
//! ```text
//! x (N,1,28,28) in [0,1] -> (x - 0.1307) / 0.3081          (MNIST mean/std, inside the model
//!                                                            so attacks work in pixel space)
//! conv1 1->c1 3x3 pad 1 + ReLU          28x28
//! conv2 c1->c2 3x3 stride 2 pad 1 + ReLU 14x14
//! conv3 c2->c3 3x3 stride 2 pad 1 + ReLU  7x7
//! flatten, fc1 -> hidden + ReLU, fc2 -> 10 logits
//! ```
//! Parameter names follow PyTorch's state_dict of a module with attributes conv1..conv3, fc1,
//! fc2 ("conv1.weight", "fc2.bias", ...), so the weights load into the equivalent PyTorch model.

use super::attack::{adversarial_training_loss, AdvTraining};
use crate::autodiff::{Graph, Param, Var};
use crate::backend::{Backend, Conv2dParams};
use crate::data::mnist::{CLASSES, SIDE};
use crate::nn::{cross_entropy, Conv2d, Init, Linear, Module, Optimizer};
use crate::tensor::Tensor;
use crate::{Error, Result};

/// MNIST pixel mean and standard deviation (of the training set).
pub const MNIST_MEAN: f32 = 0.1307;
pub const MNIST_STD: f32 = 0.3081;

/// Layer widths.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ClassifierConfig {
    pub c1: usize,
    pub c2: usize,
    pub c3: usize,
    pub hidden: usize,
}

impl Default for ClassifierConfig {
    /// The shipped model: 32, 64, 64 channels, 128 hidden units (~0.45 M parameters).
    fn default() -> Self {
        ClassifierConfig {
            c1: 32,
            c2: 64,
            c3: 64,
            hidden: 128,
        }
    }
}

impl ClassifierConfig {
    /// The widths a weights file's tensors imply: conv1..conv3's output channels and fc1's
    /// output size (the full name/shape check happens when the weights are loaded).
    pub fn of_weights(tensors: &[crate::weights::NamedTensor]) -> Result<ClassifierConfig> {
        let rows = |name: &str| {
            tensors
                .iter()
                .find(|t| t.name == name)
                .and_then(|t| t.shape.first().copied())
                .filter(|&n| n > 0)
                .ok_or_else(|| {
                    Error::Weights(format!(
                        "not a classifier: no tensor '{name}' (expected conv1..conv3, fc1, fc2)"
                    ))
                })
        };
        Ok(ClassifierConfig {
            c1: rows("conv1.weight")?,
            c2: rows("conv2.weight")?,
            c3: rows("conv3.weight")?,
            hidden: rows("fc1.weight")?,
        })
    }
}

pub struct Classifier {
    pub config: ClassifierConfig,
    pub conv1: Conv2d,
    pub conv2: Conv2d,
    pub conv3: Conv2d,
    pub fc1: Linear,
    pub fc2: Linear,
}

impl Classifier {
    /// A freshly initialised classifier: Kaiming normal before each ReLU, PyTorch's default
    /// uniform(+-1/sqrt(fan_in)) for the output layer, zero biases. Same seed, same weights.
    pub fn new(b: &dyn Backend, config: ClassifierConfig, seed: u64) -> Result<Classifier> {
        let ClassifierConfig { c1, c2, c3, hidden } = config;
        let same = Conv2dParams::new(1, 1, 1);
        let down = Conv2dParams::new(2, 1, 1);
        let seed = seed.wrapping_mul(16);
        let fc2 = Linear::new(b, "fc2", hidden, CLASSES, true, seed + 4)?;
        // kaiming_uniform(a = sqrt(5)) is PyTorch's Linear default: bound 1/sqrt(fan_in)
        fc2.reinit(b, Init::KaimingUniform { slope: 5f32.sqrt() }, seed + 5)?;
        Ok(Classifier {
            config,
            conv1: Conv2d::new(b, "conv1", 1, c1, 3, same, true, seed)?,
            conv2: Conv2d::new(b, "conv2", c1, c2, 3, down, true, seed + 1)?,
            conv3: Conv2d::new(b, "conv3", c2, c3, 3, down, true, seed + 2)?,
            fc1: Linear::new(b, "fc1", c3 * 7 * 7, hidden, true, seed + 3)?,
            fc2,
        })
    }

    /// A classifier of whatever widths the safetensors `bytes` hold (read from the shapes of
    /// conv1..conv3 and fc1), with those weights loaded.
    pub fn from_bytes(b: &dyn Backend, bytes: &[u8]) -> Result<Classifier> {
        let config = ClassifierConfig::of_weights(&crate::weights::from_bytes(bytes)?)?;
        let m = Classifier::new(b, config, 0)?;
        crate::weights::load_params(b, &m.params(), bytes)?;
        Ok(m)
    }

    /// [`Classifier::from_bytes`] from a file; errors name the file.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn load_file(b: &dyn Backend, path: &std::path::Path) -> Result<Classifier> {
        let bytes = crate::weights::read_file(path)?;
        Classifier::from_bytes(b, &bytes).map_err(|e| crate::weights::in_file(path, e))
    }

    /// Class probabilities (n, 10) on the host for images (n, 1, 28, 28), no gradients kept.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn probabilities(&self, b: &dyn Backend, x: &Tensor) -> Result<Vec<f32>> {
        let p = crate::backend::read_blocking(b, &self.probabilities_tensor(b, x)?)?;
        crate::finite::check_output("the classifier", &p)?;
        Ok(p)
    }

    /// Class probabilities (n, 10) as a tensor on the backend (read it asynchronously).
    pub fn probabilities_tensor(&self, b: &dyn Backend, x: &Tensor) -> Result<Tensor> {
        let mut g = Graph::new(b);
        g.set_grad_enabled(false);
        let xv = g.constant(x.clone());
        let logits = self.forward(&mut g, xv)?;
        b.softmax(g.value(logits)?)
    }
}

impl Module for Classifier {
    /// Logits (N, 10) for images (N, 1, 28, 28) with pixels in [0, 1].
    fn forward(&self, g: &mut Graph<'_>, x: Var) -> Result<Var> {
        let h = self.features(g, x)?;
        self.fc2.forward(g, h)
    }
    fn params(&self) -> Vec<&Param> {
        [
            &self.conv1 as &dyn Module,
            &self.conv2,
            &self.conv3,
            &self.fc1,
            &self.fc2,
        ]
        .into_iter()
        .flat_map(|m| m.params())
        .collect()
    }
}

impl Classifier {
    /// The penultimate features (N, hidden) after fc1's ReLU: what the GAN's Frechet distance
    /// compares.
    pub fn features(&self, g: &mut Graph<'_>, x: Var) -> Result<Var> {
        let [.., fc1] = self.hidden_layers(g, x)?;
        Ok(fc1)
    }

    /// The output of each hidden layer after its ReLU, in order: conv1 (N, c1, 28, 28), conv2
    /// (N, c2, 14, 14), conv3 (N, c3, 7, 7), fc1 (N, hidden). The page's activation view shows
    /// them; `features` is the last.
    pub fn hidden_layers(&self, g: &mut Graph<'_>, x: Var) -> Result<[Var; 4]> {
        let s = g.shape(x)?;
        if s.len() != 4 || s[1] != 1 || s[2] != SIDE || s[3] != SIDE {
            return Err(Error::Shape(format!(
                "classifier: expected images (N, 1, {SIDE}, {SIDE}), got {s:?}"
            )));
        }
        let x = g.affine(x, 1.0 / MNIST_STD, -MNIST_MEAN / MNIST_STD)?;
        let h = self.conv1.forward(g, x)?;
        let h1 = g.relu(h)?;
        let h = self.conv2.forward(g, h1)?;
        let h2 = g.relu(h)?;
        let h = self.conv3.forward(g, h2)?;
        let h3 = g.relu(h)?;
        let h = g.flatten(h3)?;
        let h = self.fc1.forward(g, h)?;
        let h4 = g.relu(h)?;
        Ok([h1, h2, h3, h4])
    }
}

/// One optimizer step on the clean loss C(x) (or, with `adversarial`, on alpha C(x) +
/// (1 - alpha) C(x~) with x~ the (RS-)FGSM example). Returns the loss tensor ([1]).
pub fn train_step(
    b: &dyn Backend,
    model: &dyn Module,
    opt: &mut dyn Optimizer,
    x: &Tensor,
    t: &Tensor,
    adversarial: Option<&AdvTraining>,
) -> Result<Tensor> {
    let mut g = Graph::new(b);
    let loss = match adversarial {
        None => {
            let xv = g.constant(x.clone());
            let tv = g.constant(t.clone());
            cross_entropy(&mut g, model, xv, tv)?
        }
        Some(cfg) => adversarial_training_loss(&mut g, model, x, t, cfg)?,
    };
    g.backward(loss)?;
    opt.step(&g, &model.params())?;
    Ok(g.value(loss)?.clone())
}
