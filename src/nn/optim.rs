//! Optimizers: per-parameter state tensors on the backend, updated in place by the backend's
//! `sgd_step` / `adam_step` kernels. A step reads each parameter's gradient from the graph the
//! loss was built in; parameters the loss did not use are left alone.

use std::collections::hash_map::Entry;
use std::collections::HashMap;

use crate::autodiff::{Graph, Param};
use crate::backend::{AdamParams, SgdParams};
use crate::tensor::Tensor;
use crate::{Error, Result};

pub trait Optimizer {
    /// One update of `params` from the gradients in `g` (after `g.backward(loss)`).
    fn step(&mut self, g: &Graph<'_>, params: &[&Param]) -> Result<()>;
    fn lr(&self) -> f32;
    fn set_lr(&mut self, lr: f32);
}

/// SGD with momentum and (L2) weight decay, PyTorch's formulation:
/// g' = g + wd p; v = momentum v + g'; p -= lr v.
pub struct Sgd {
    pub hp: SgdParams,
    velocity: HashMap<u64, Tensor>,
}

impl Sgd {
    pub fn new(lr: f32, momentum: f32, weight_decay: f32) -> Sgd {
        Sgd {
            hp: SgdParams {
                lr,
                momentum,
                weight_decay,
            },
            velocity: HashMap::new(),
        }
    }
}

impl Optimizer for Sgd {
    fn step(&mut self, g: &Graph<'_>, params: &[&Param]) -> Result<()> {
        let b = g.backend();
        for p in params {
            let Some(grad) = g.param_grad(p) else {
                continue;
            };
            let v = match self.velocity.entry(p.id()) {
                Entry::Occupied(e) => e.into_mut(),
                Entry::Vacant(e) => e.insert(b.zeros(p.shape())?),
            };
            b.sgd_step(p.value(), &grad, v, self.hp)?;
        }
        Ok(())
    }
    fn lr(&self) -> f32 {
        self.hp.lr
    }
    fn set_lr(&mut self, lr: f32) {
        self.hp.lr = lr;
    }
}

/// Adam (Kingma & Ba) with bias correction; weight decay as L2 added to the gradient (PyTorch's
/// `Adam(weight_decay=...)`). As in PyTorch each parameter counts its own steps (a parameter
/// without a gradient in some step is not advanced). Its state is exportable (`moments`,
/// `set_moments`): the DnCNN checkpoints save and restore it.
pub struct Adam {
    pub lr: f32,
    pub beta1: f32,
    pub beta2: f32,
    pub eps: f32,
    pub weight_decay: f32,
    state: HashMap<u64, (Tensor, Tensor, u32)>,
}

impl Adam {
    /// Adam with PyTorch's defaults for eps (1e-8) and no weight decay.
    pub fn new(lr: f32, beta1: f32, beta2: f32) -> Adam {
        Adam {
            lr,
            beta1,
            beta2,
            eps: 1e-8,
            weight_decay: 0.0,
            state: HashMap::new(),
        }
    }
    /// Steps taken so far for parameter `p` (0 before its first update).
    pub fn steps(&self, p: &Param) -> u32 {
        self.state.get(&p.id()).map_or(0, |s| s.2)
    }
    /// The state of parameter `p` for export (a checkpoint): its first and second moments, shaped
    /// like `p`, and its step count; None before its first update (the moments are then zero).
    pub fn moments(&self, p: &Param) -> Option<(&Tensor, &Tensor, u32)> {
        self.state.get(&p.id()).map(|(m, v, t)| (m, v, *t))
    }
    /// Set the state of parameter `p` (restoring a checkpoint): moments `m`, `v` shaped like `p`,
    /// after `t` steps. The tensors are used in place from then on.
    pub fn set_moments(&mut self, p: &Param, m: Tensor, v: Tensor, t: u32) -> Result<()> {
        for (x, what) in [(&m, "first moment"), (&v, "second moment")] {
            if x.shape() != p.shape() {
                return Err(Error::Shape(format!(
                    "Adam: the {what} of {} must have shape {:?}, got {:?}",
                    p.name(),
                    p.shape(),
                    x.shape()
                )));
            }
        }
        if m.same_storage(&v) {
            return Err(Error::Invalid(format!(
                "Adam: the moments of {} must be different tensors",
                p.name()
            )));
        }
        self.state.insert(p.id(), (m, v, t));
        Ok(())
    }
}

impl Optimizer for Adam {
    fn step(&mut self, g: &Graph<'_>, params: &[&Param]) -> Result<()> {
        let b = g.backend();
        for p in params {
            let Some(grad) = g.param_grad(p) else {
                continue;
            };
            let s = match self.state.entry(p.id()) {
                Entry::Occupied(e) => e.into_mut(),
                Entry::Vacant(e) => e.insert((b.zeros(p.shape())?, b.zeros(p.shape())?, 0)),
            };
            s.2 += 1;
            let hp = AdamParams {
                lr: self.lr,
                beta1: self.beta1,
                beta2: self.beta2,
                eps: self.eps,
                weight_decay: self.weight_decay,
                step: s.2,
            };
            b.adam_step(p.value(), &grad, &s.0, &s.1, hp)?;
        }
        Ok(())
    }
    fn lr(&self) -> f32 {
        self.lr
    }
    fn set_lr(&mut self, lr: f32) {
        self.lr = lr;
    }
}
