//! Losses of a model's output recorded on the tape, for the models that share them.

use crate::autodiff::{Graph, Var};
use crate::backend::LossKind;
use crate::nn::Module;
use crate::Result;

/// Mean softmax cross-entropy of `model`'s logits on `x` against the class distribution `t`
/// (one-hot for labels), recorded in `g`. The classifier trains on it; the attacks climb it.
pub fn cross_entropy(g: &mut Graph<'_>, model: &dyn Module, x: Var, t: Var) -> Result<Var> {
    let logits = model.forward(g, x)?;
    g.loss(LossKind::SoftmaxCrossEntropy, logits, t)
}
