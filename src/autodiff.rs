//! A small reverse-mode autodiff tape (micrograd's idea over whole tensors).
//!
//! A [`Graph`] records every op a model runs: the op's output tensor, the indices of its input
//! nodes and a backward closure. The closure calls only `Backend` ops, so the one backward runs
//! on the CPU and on the GPU alike, and no model writes its own backprop. [`Graph::backward`]
//! seeds d loss / d loss = 1 and walks the tape in reverse, summing the gradients of a node that
//! feeds several ops. Gradients are kept for the leaves (inputs and parameters), so FGSM and the
//! GAN generator step can read d loss / d input as easily as an optimizer reads d loss / d weight.
//!
//! Modes: a graph is in training mode by default (BatchNorm uses batch statistics and updates
//! its running statistics); [`Graph::set_training`] switches to evaluation mode. With
//! [`Graph::set_grad_enabled`]`(false)` nothing is kept for the backward (inference).
//!
//! A graph lives for one step: build it, run the forward, `backward`, let the optimizer read the
//! gradients, drop it.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::backend::{Backend, BinaryOp, Conv2dParams, ConvTranspose2dParams, LossKind, UnaryOp};
use crate::tensor::{numel, Tensor};
use crate::{Error, Result};

static NEXT_ID: AtomicU64 = AtomicU64::new(1);

fn fresh_id() -> u64 {
    NEXT_ID.fetch_add(1, Ordering::Relaxed)
}

/// A handle to a node of one graph (cheap to copy). Its value is `graph.value(v)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Var {
    graph: u64,
    index: usize,
}

/// A named trainable (or state) tensor owned by a layer. The tensor is a handle: optimizers and
/// weight loading update its storage in place, so every clone of a `Param` sees the update.
#[derive(Clone, Debug)]
pub struct Param {
    id: u64,
    name: String,
    value: Tensor,
}

impl Param {
    /// `name` as PyTorch's state_dict would spell it ("conv1.weight").
    pub fn new(name: impl Into<String>, value: Tensor) -> Param {
        Param {
            id: fresh_id(),
            name: name.into(),
            value,
        }
    }
    pub fn name(&self) -> &str {
        &self.name
    }
    pub fn value(&self) -> &Tensor {
        &self.value
    }
    pub fn shape(&self) -> &[usize] {
        self.value.shape()
    }
    /// Identity shared by all clones of this parameter (optimizer state is keyed by it).
    pub fn id(&self) -> u64 {
        self.id
    }
}

/// Backward of one op: given d loss / d output and which inputs need a gradient, return one
/// optional gradient per input (None where not needed or not defined).
type BackwardFn = Box<dyn Fn(&dyn Backend, &Tensor, &[bool]) -> Result<Vec<Option<Tensor>>>>;

/// The backend calls of one convolution kind (`P`: its parameters), so that `Graph::conv2d` and
/// `Graph::conv_transpose2d` share one tape node: forward(x, w, b), the gradient to the input
/// (gy, w, x's shape) and to the weight (x, gy, w's shape).
#[derive(Clone, Copy)]
struct ConvOps<P> {
    forward: ConvForwardFn<P>,
    backward_input: ConvGradFn<P>,
    backward_weight: ConvGradFn<P>,
}
type ConvForwardFn<P> = fn(&dyn Backend, &Tensor, &Tensor, Option<&Tensor>, P) -> Result<Tensor>;
type ConvGradFn<P> = fn(&dyn Backend, &Tensor, &Tensor, &[usize], P) -> Result<Tensor>;

struct Node {
    value: Tensor,
    inputs: Vec<usize>,
    backward: Option<BackwardFn>,
    /// true when some leaf below this node wants a gradient
    requires_grad: bool,
    /// only for leaves: gradients are kept here after `backward`
    grad: Option<Tensor>,
}

/// The tape. See the module documentation.
pub struct Graph<'b> {
    backend: &'b dyn Backend,
    id: u64,
    nodes: Vec<Node>,
    params: HashMap<u64, usize>,
    training: bool,
    grad_enabled: bool,
}

impl<'b> Graph<'b> {
    /// A new, empty graph in training mode with gradients enabled.
    pub fn new(backend: &'b dyn Backend) -> Graph<'b> {
        Graph {
            backend,
            id: fresh_id(),
            nodes: Vec::new(),
            params: HashMap::new(),
            training: true,
            grad_enabled: true,
        }
    }

    pub fn backend(&self) -> &'b dyn Backend {
        self.backend
    }
    pub fn training(&self) -> bool {
        self.training
    }
    /// Training mode (true): BatchNorm uses batch statistics and updates running ones.
    /// Evaluation mode (false): BatchNorm uses its running statistics.
    pub fn set_training(&mut self, training: bool) {
        self.training = training;
    }
    /// With gradients disabled ops keep no backward (saves memory for inference);
    /// `backward` then returns an error.
    pub fn set_grad_enabled(&mut self, enabled: bool) {
        self.grad_enabled = enabled;
    }
    pub fn grad_enabled(&self) -> bool {
        self.grad_enabled
    }
    /// Number of nodes recorded so far.
    pub fn len(&self) -> usize {
        self.nodes.len()
    }
    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    // ------------------------------------------------------------------ leaves

    /// A leaf whose gradient is wanted (an input image for FGSM, a latent code...).
    pub fn input(&mut self, t: Tensor) -> Var {
        self.leaf(t, true)
    }
    /// A leaf without gradient (data, targets).
    pub fn constant(&mut self, t: Tensor) -> Var {
        self.leaf(t, false)
    }
    /// The leaf for a parameter. Asking twice for the same parameter returns the same node, so
    /// a layer applied twice in one graph (a GAN discriminator on real and fake) sums its grads.
    pub fn param(&mut self, p: &Param) -> Var {
        if let Some(&i) = self.params.get(&p.id) {
            return Var {
                graph: self.id,
                index: i,
            };
        }
        let v = self.leaf(p.value.clone(), true);
        self.params.insert(p.id, v.index);
        v
    }
    /// Parameters this graph computes no gradient for (PyTorch's `requires_grad_(False)`): each
    /// gets its leaf now, as a constant, and `param` returns that leaf. Call it before the
    /// forward that uses them; e.g. a GAN's generator step runs through the discriminator, whose
    /// weight gradients nobody reads there.
    pub fn freeze(&mut self, params: &[&Param]) {
        for p in params {
            if !self.params.contains_key(&p.id) {
                let v = self.leaf(p.value.clone(), false);
                self.params.insert(p.id, v.index);
            }
        }
    }
    /// A new leaf holding `v`'s value, through which no gradient flows (PyTorch's `detach`).
    pub fn detach(&mut self, v: Var) -> Result<Var> {
        let t = self.value(v)?.clone();
        Ok(self.constant(t))
    }

    fn leaf(&mut self, t: Tensor, requires_grad: bool) -> Var {
        self.nodes.push(Node {
            value: t,
            inputs: Vec::new(),
            backward: None,
            requires_grad,
            grad: None,
        });
        Var {
            graph: self.id,
            index: self.nodes.len() - 1,
        }
    }

    // ------------------------------------------------------------------ access

    fn index(&self, v: Var) -> Result<usize> {
        if v.graph != self.id || v.index >= self.nodes.len() {
            return Err(Error::Invalid(
                "autodiff: this Var belongs to another graph".into(),
            ));
        }
        Ok(v.index)
    }
    pub fn value(&self, v: Var) -> Result<&Tensor> {
        Ok(&self.nodes[self.index(v)?].value)
    }
    pub fn shape(&self, v: Var) -> Result<Vec<usize>> {
        Ok(self.value(v)?.shape().to_vec())
    }
    /// d loss / d v after `backward`, for leaves (inputs, parameters). None when `v` did not
    /// contribute to the loss, or is not a leaf that wants a gradient.
    pub fn grad(&self, v: Var) -> Option<Tensor> {
        self.index(v).ok().and_then(|i| self.nodes[i].grad.clone())
    }
    /// d loss / d p for a parameter used in this graph.
    pub fn param_grad(&self, p: &Param) -> Option<Tensor> {
        self.params
            .get(&p.id)
            .and_then(|&i| self.nodes[i].grad.clone())
    }

    /// Record an op: its output, inputs and backward (dropped when gradients are disabled or no
    /// input needs one).
    fn push(&mut self, value: Tensor, inputs: &[Var], backward: BackwardFn) -> Result<Var> {
        let mut idx = Vec::with_capacity(inputs.len());
        for &v in inputs {
            idx.push(self.index(v)?);
        }
        let requires_grad = self.grad_enabled && idx.iter().any(|&i| self.nodes[i].requires_grad);
        let backward = if requires_grad { Some(backward) } else { None };
        let inputs = if requires_grad { idx } else { Vec::new() };
        self.nodes.push(Node {
            value,
            inputs,
            backward,
            requires_grad,
            grad: None,
        });
        Ok(Var {
            graph: self.id,
            index: self.nodes.len() - 1,
        })
    }

    fn vals<const N: usize>(&self, vs: [Var; N]) -> Result<[Tensor; N]> {
        let mut out: [Option<Tensor>; N] = std::array::from_fn(|_| None);
        for (o, v) in out.iter_mut().zip(vs) {
            *o = Some(self.value(v)?.clone());
        }
        Ok(out.map(|t| t.expect("filled above")))
    }

    // ------------------------------------------------------------------ backward

    /// Reverse pass from a scalar `loss` (one element). Gradients of leaves are summed over
    /// every use and can be read with `grad` / `param_grad`. Call once per graph.
    pub fn backward(&mut self, loss: Var) -> Result<()> {
        let li = self.index(loss)?;
        if !self.grad_enabled {
            return Err(Error::Invalid(
                "autodiff: backward on a graph with gradients disabled".into(),
            ));
        }
        if self.nodes[li].value.numel() != 1 {
            return Err(Error::Shape(format!(
                "autodiff: backward needs a scalar loss (one element), got shape {:?}",
                self.nodes[li].value.shape()
            )));
        }
        let b = self.backend;
        let mut grads: Vec<Option<Tensor>> = vec![None; li + 1];
        grads[li] = Some(b.fill(self.nodes[li].value.shape(), 1.0)?);
        for i in (0..=li).rev() {
            let Some(gy) = grads[i].take() else { continue };
            let node = &self.nodes[i];
            let Some(bw) = &node.backward else {
                // a leaf: keep (accumulate onto an earlier backward's) gradient
                if node.requires_grad {
                    let g = match self.nodes[i].grad.take() {
                        Some(old) => b.binary(BinaryOp::Add, &old, &gy)?,
                        None => gy,
                    };
                    self.nodes[i].grad = Some(g);
                }
                continue;
            };
            let needs: Vec<bool> = node
                .inputs
                .iter()
                .map(|&j| self.nodes[j].requires_grad)
                .collect();
            let gins = bw(b, &gy, &needs)?;
            for (&j, g) in node.inputs.iter().zip(gins) {
                let Some(g) = g else { continue };
                if !self.nodes[j].requires_grad {
                    continue;
                }
                // ops may return a gradient with the input's elements but another shape
                let g = if g.shape() != self.nodes[j].value.shape() {
                    g.reshape(self.nodes[j].value.shape())?
                } else {
                    g
                };
                grads[j] = Some(match grads[j].take() {
                    Some(acc) => b.binary(BinaryOp::Add, &acc, &g)?,
                    None => g,
                });
            }
        }
        Ok(())
    }

    // ------------------------------------------------------------------ convolution and dense

    /// conv2d with PyTorch semantics (every setting per axis); x (N,Cin,H,W), w (Cout,Cin,kh,kw),
    /// b (Cout).
    pub fn conv2d(&mut self, x: Var, w: Var, b: Option<Var>, p: Conv2dParams) -> Result<Var> {
        let ops = ConvOps::<Conv2dParams> {
            forward: |be, x, w, b, p| be.conv2d(x, w, b, p),
            backward_input: |be, gy, w, x_shape, p| be.conv2d_backward_input(gy, w, x_shape, p),
            backward_weight: |be, x, gy, w_shape, p| be.conv2d_backward_weight(x, gy, w_shape, p),
        };
        self.conv(ops, x, w, b, p)
    }

    /// conv_transpose2d with PyTorch semantics (every setting per axis); x (N,Cin,H,W),
    /// w (Cin,Cout,kh,kw), b (Cout).
    pub fn conv_transpose2d(
        &mut self,
        x: Var,
        w: Var,
        b: Option<Var>,
        p: ConvTranspose2dParams,
    ) -> Result<Var> {
        let ops = ConvOps::<ConvTranspose2dParams> {
            forward: |be, x, w, b, p| be.conv_transpose2d(x, w, b, p),
            backward_input: |be, gy, w, x_shape, p| {
                be.conv_transpose2d_backward_input(gy, w, x_shape, p)
            },
            backward_weight: |be, x, gy, w_shape, p| {
                be.conv_transpose2d_backward_weight(x, gy, w_shape, p)
            },
        };
        self.conv(ops, x, w, b, p)
    }

    /// The tape node of either convolution: inputs x, w and the optional bias; each gradient is
    /// computed only when that input needs one (the bias's is the sum of gy per channel).
    fn conv<P: Copy + 'static>(
        &mut self,
        ops: ConvOps<P>,
        x: Var,
        w: Var,
        b: Option<Var>,
        p: P,
    ) -> Result<Var> {
        let [xt, wt] = self.vals([x, w])?;
        let bt = b.map(|b| self.value(b).cloned()).transpose()?;
        let y = (ops.forward)(self.backend, &xt, &wt, bt.as_ref(), p)?;
        let mut inputs = vec![x, w];
        inputs.extend(b);
        self.push(
            y,
            &inputs,
            Box::new(move |be, gy, needs| {
                let gx = if needs[0] {
                    Some((ops.backward_input)(be, gy, &wt, xt.shape(), p)?)
                } else {
                    None
                };
                let gw = if needs[1] {
                    Some((ops.backward_weight)(be, &xt, gy, wt.shape(), p)?)
                } else {
                    None
                };
                let mut out = vec![gx, gw];
                if needs.len() > 2 {
                    out.push(if needs[2] {
                        Some(be.bias_grad(gy)?)
                    } else {
                        None
                    });
                }
                Ok(out)
            }),
        )
    }

    /// op(a) x op(b), where op transposes when the flag is set.
    pub fn matmul(&mut self, a: Var, b: Var, trans_a: bool, trans_b: bool) -> Result<Var> {
        let [at, bt] = self.vals([a, b])?;
        let y = self.backend.matmul(&at, &bt, trans_a, trans_b)?;
        self.push(
            y,
            &[a, b],
            Box::new(move |be, g, needs| {
                // C = op(A) op(B): dop(A) = G op(B)^T, dop(B) = op(A)^T G, then undo each op.
                let ga = if !needs[0] {
                    None
                } else {
                    Some(match (trans_a, trans_b) {
                        (false, false) => be.matmul(g, &bt, false, true)?,
                        (false, true) => be.matmul(g, &bt, false, false)?,
                        (true, false) => be.matmul(&bt, g, false, true)?,
                        (true, true) => be.matmul(&bt, g, true, true)?,
                    })
                };
                let gb = if !needs[1] {
                    None
                } else {
                    Some(match (trans_a, trans_b) {
                        (false, false) => be.matmul(&at, g, true, false)?,
                        (false, true) => be.matmul(g, &at, true, false)?,
                        (true, false) => be.matmul(&at, g, false, false)?,
                        (true, true) => be.matmul(g, &at, true, true)?,
                    })
                };
                Ok(vec![ga, gb])
            }),
        )
    }

    /// y = x W^T + b with x (N, in), W (out, in) as PyTorch's Linear, b (out).
    pub fn linear(&mut self, x: Var, w: Var, b: Option<Var>) -> Result<Var> {
        let y = self.matmul(x, w, false, true)?;
        match b {
            Some(b) => self.bias_add(y, b),
            None => Ok(y),
        }
    }

    /// x + b broadcast along dim 1 (x (N,C) or (N,C,H,W), b (C)).
    pub fn bias_add(&mut self, x: Var, b: Var) -> Result<Var> {
        let [xt, bt] = self.vals([x, b])?;
        let y = self.backend.bias_add(&xt, &bt)?;
        self.push(
            y,
            &[x, b],
            Box::new(move |be, gy, needs| {
                let gb = if needs[1] {
                    Some(be.bias_grad(gy)?)
                } else {
                    None
                };
                Ok(vec![Some(gy.clone()), gb])
            }),
        )
    }

    // ------------------------------------------------------------------ elementwise

    fn binary(&mut self, op: BinaryOp, a: Var, b: Var) -> Result<Var> {
        let [at, bt] = self.vals([a, b])?;
        let y = self.backend.binary(op, &at, &bt)?;
        self.push(
            y,
            &[a, b],
            Box::new(move |be, gy, needs| {
                Ok(match op {
                    BinaryOp::Add => vec![Some(gy.clone()), Some(gy.clone())],
                    BinaryOp::Sub => {
                        let gb = if needs[1] {
                            Some(be.affine(gy, -1.0, 0.0)?)
                        } else {
                            None
                        };
                        vec![Some(gy.clone()), gb]
                    }
                    BinaryOp::Mul => {
                        let ga = if needs[0] {
                            Some(be.binary(BinaryOp::Mul, gy, &bt)?)
                        } else {
                            None
                        };
                        let gb = if needs[1] {
                            Some(be.binary(BinaryOp::Mul, gy, &at)?)
                        } else {
                            None
                        };
                        vec![ga, gb]
                    }
                })
            }),
        )
    }
    pub fn add(&mut self, a: Var, b: Var) -> Result<Var> {
        self.binary(BinaryOp::Add, a, b)
    }
    pub fn sub(&mut self, a: Var, b: Var) -> Result<Var> {
        self.binary(BinaryOp::Sub, a, b)
    }
    pub fn mul(&mut self, a: Var, b: Var) -> Result<Var> {
        self.binary(BinaryOp::Mul, a, b)
    }

    /// y = a * x + b (scalars).
    pub fn affine(&mut self, x: Var, a: f32, b: f32) -> Result<Var> {
        let [xt] = self.vals([x])?;
        let y = self.backend.affine(&xt, a, b)?;
        self.push(
            y,
            &[x],
            Box::new(move |be, gy, _| Ok(vec![Some(be.affine(gy, a, 0.0)?)])),
        )
    }
    /// y = a * x
    pub fn scale(&mut self, x: Var, a: f32) -> Result<Var> {
        self.affine(x, a, 0.0)
    }

    /// Elementwise activation or map. `Sign` has zero gradient (nothing flows through it).
    pub fn unary(&mut self, op: UnaryOp, x: Var) -> Result<Var> {
        let [xt] = self.vals([x])?;
        let y = self.backend.unary(op, &xt)?;
        if op == UnaryOp::Sign {
            return Ok(self.constant(y));
        }
        self.push(
            y,
            &[x],
            Box::new(move |be, gy, _| Ok(vec![Some(be.unary_backward(op, &xt, gy)?)])),
        )
    }
    pub fn relu(&mut self, x: Var) -> Result<Var> {
        self.unary(UnaryOp::Relu, x)
    }
    pub fn leaky_relu(&mut self, x: Var, slope: f32) -> Result<Var> {
        self.unary(UnaryOp::LeakyRelu(slope), x)
    }
    pub fn tanh(&mut self, x: Var) -> Result<Var> {
        self.unary(UnaryOp::Tanh, x)
    }
    pub fn sigmoid(&mut self, x: Var) -> Result<Var> {
        self.unary(UnaryOp::Sigmoid, x)
    }
    pub fn square(&mut self, x: Var) -> Result<Var> {
        self.unary(UnaryOp::Square, x)
    }
    pub fn abs(&mut self, x: Var) -> Result<Var> {
        self.unary(UnaryOp::Abs, x)
    }
    /// 1 / x elementwise (gradient -1 / x^2).
    pub fn reciprocal(&mut self, x: Var) -> Result<Var> {
        self.unary(UnaryOp::Reciprocal, x)
    }
    /// sign(x) in {-1, 0, 1}; a constant for the backward (zero gradient), as FGSM needs.
    pub fn sign(&mut self, x: Var) -> Result<Var> {
        self.unary(UnaryOp::Sign, x)
    }

    /// clamp(x, lo, hi); the gradient passes where lo <= x <= hi (as PyTorch) and is 0 elsewhere.
    pub fn clamp(&mut self, x: Var, lo: f32, hi: f32) -> Result<Var> {
        if lo.is_nan() || hi.is_nan() || lo > hi {
            return Err(Error::Invalid(format!(
                "clamp: lo {lo} must not exceed hi {hi}"
            )));
        }
        let [xt] = self.vals([x])?;
        let y = self.backend.clamp(&xt, lo, hi)?;
        let yt = y.clone();
        self.push(
            y,
            &[x],
            Box::new(move |be, gy, _| {
                // mask = 1 - sign(clamp(x) - x)^2: 1 inside [lo, hi], 0 where clamping changed x
                let d = be.binary(BinaryOp::Sub, &yt, &xt)?;
                let s = be.unary(UnaryOp::Sign, &d)?;
                let s2 = be.unary(UnaryOp::Square, &s)?;
                let mask = be.affine(&s2, -1.0, 1.0)?;
                Ok(vec![Some(be.binary(BinaryOp::Mul, gy, &mask)?)])
            }),
        )
    }

    // ------------------------------------------------------------------ shape

    /// Same elements, new shape (no copy).
    pub fn reshape(&mut self, x: Var, shape: &[usize]) -> Result<Var> {
        let [xt] = self.vals([x])?;
        let y = xt.reshape(shape)?;
        let xs = xt.shape().to_vec();
        self.push(
            y,
            &[x],
            Box::new(move |_, gy, _| Ok(vec![Some(gy.reshape(&xs)?)])),
        )
    }
    /// (N, ...) -> (N, product of the rest), as `torch.flatten(x, 1)`.
    pub fn flatten(&mut self, x: Var) -> Result<Var> {
        let s = self.shape(x)?;
        if s.is_empty() {
            return Err(Error::Shape("flatten: input has rank 0".into()));
        }
        let rest = numel(&s[1..]);
        self.reshape(x, &[s[0], rest])
    }

    // ------------------------------------------------------------------ reductions

    /// Sum of all elements -> shape [1].
    pub fn sum(&mut self, x: Var) -> Result<Var> {
        self.reduce(x, false)
    }
    /// Mean of all elements -> shape [1].
    pub fn mean(&mut self, x: Var) -> Result<Var> {
        self.reduce(x, true)
    }
    fn reduce(&mut self, x: Var, mean: bool) -> Result<Var> {
        let [xt] = self.vals([x])?;
        let y = if mean {
            self.backend.mean(&xt)?
        } else {
            self.backend.sum(&xt)?
        };
        let xs = xt.shape().to_vec();
        self.push(
            y,
            &[x],
            Box::new(move |be, gy, _| {
                let n = numel(&xs);
                let g = broadcast_scalar(be, gy, n)?;
                let g = if mean {
                    be.affine(&g, 1.0 / n as f32, 0.0)?
                } else {
                    g
                };
                Ok(vec![Some(g.reshape(&xs)?)])
            }),
        )
    }

    /// Softmax over the last dimension. Backward: gx = y * (gy - rowsum(gy * y)), the row sums
    /// taken and broadcast back with two matmuls against ones.
    pub fn softmax(&mut self, x: Var) -> Result<Var> {
        let [xt] = self.vals([x])?;
        let y = self.backend.softmax(&xt)?;
        let yt = y.clone();
        self.push(
            y,
            &[x],
            Box::new(move |be, gy, _| {
                let shape = yt.shape().to_vec();
                let k = *shape.last().unwrap_or(&1);
                let rows = numel(&shape) / k.max(1);
                let y2 = yt.reshape(&[rows, k])?;
                let g2 = gy.reshape(&[rows, k])?;
                let gyy = be.binary(BinaryOp::Mul, &g2, &y2)?;
                let ones_k = be.fill(&[k, 1], 1.0)?;
                let s = be.matmul(&gyy, &ones_k, false, false)?; // (rows, 1)
                let ones_row = be.fill(&[1, k], 1.0)?;
                let sb = be.matmul(&s, &ones_row, false, false)?; // (rows, k)
                let d = be.binary(BinaryOp::Sub, &g2, &sb)?;
                Ok(vec![Some(
                    be.binary(BinaryOp::Mul, &y2, &d)?.reshape(&shape)?,
                )])
            }),
        )
    }

    // ------------------------------------------------------------------ losses

    /// A scalar loss ([1]) of `pred` against `target`. Gradients flow to `pred`; to `target`
    /// only for the losses of a difference (Mse, L1, LeastSquares), where d/dt = -d/dp.
    pub fn loss(&mut self, kind: LossKind, pred: Var, target: Var) -> Result<Var> {
        let [pt, tt] = self.vals([pred, target])?;
        let y = self.backend.loss(kind, &pt, &tt)?;
        let ti = self.index(target)?;
        let symmetric = matches!(kind, LossKind::Mse | LossKind::L1 | LossKind::LeastSquares);
        if self.grad_enabled && self.nodes[ti].requires_grad && !symmetric {
            return Err(Error::Invalid(format!(
                "loss {kind:?}: the target must not require a gradient (detach it or make it a constant)"
            )));
        }
        self.push(
            y,
            &[pred, target],
            Box::new(move |be, gl, needs| {
                let gp = be.loss_backward(kind, &pt, &tt, gl)?;
                let gt = if needs[1] {
                    Some(be.affine(&gp, -1.0, 0.0)?)
                } else {
                    None
                };
                Ok(vec![Some(gp), gt])
            }),
        )
    }

    // ------------------------------------------------------------------ batch norm

    /// BatchNorm2d over (N, H, W) per channel. In training mode (the graph's mode) it normalises
    /// with the batch statistics and updates `running_mean`/`running_var` in place; in
    /// evaluation mode it uses the running statistics (and its backward is exact for that).
    #[allow(clippy::too_many_arguments)]
    pub fn batchnorm2d(
        &mut self,
        x: Var,
        gamma: Var,
        beta: Var,
        running_mean: &Tensor,
        running_var: &Tensor,
        momentum: f32,
        eps: f32,
    ) -> Result<Var> {
        if self.training {
            let running = [running_mean, running_var];
            self.batchnorm2d_training([x, gamma, beta], running, momentum, eps, false)
        } else {
            let [xt, gt, bt] = self.vals([x, gamma, beta])?;
            let y = self
                .backend
                .batchnorm2d_eval(&xt, &gt, &bt, running_mean, running_var, eps)?;
            let (rm, rv) = (running_mean.clone(), running_var.clone());
            self.push(
                y,
                &[x, gamma, beta],
                Box::new(move |be, gy, needs| {
                    // y = gamma (x - rm) / sqrt(rv + eps) + beta, per channel. Expressed with
                    // batchnorm2d_eval itself: gx = eval(gy; gamma, beta 0, mean 0, rv), and
                    // xhat = eval(x; gamma 1, beta 0, rm, rv).
                    let c = gt.numel();
                    let zeros = be.zeros(&[c])?;
                    let gx = if needs[0] {
                        Some(be.batchnorm2d_eval(gy, &gt, &zeros, &zeros, &rv, eps)?)
                    } else {
                        None
                    };
                    let gg = if needs[1] {
                        let ones = be.fill(&[c], 1.0)?;
                        let xhat = be.batchnorm2d_eval(&xt, &ones, &zeros, &rm, &rv, eps)?;
                        Some(be.bias_grad(&be.binary(BinaryOp::Mul, gy, &xhat)?)?)
                    } else {
                        None
                    };
                    let gb = if needs[2] {
                        Some(be.bias_grad(gy)?)
                    } else {
                        None
                    };
                    Ok(vec![gx, gg, gb])
                }),
            )
        }
    }

    /// relu(batchnorm2d(x)): in training mode one op each way (`Backend::batchnorm2d_relu_train`
    /// and its backward), so the ReLU costs no pass and no tensor of its own; in evaluation
    /// mode the two ops.
    #[allow(clippy::too_many_arguments)]
    pub fn batchnorm2d_relu(
        &mut self,
        x: Var,
        gamma: Var,
        beta: Var,
        running_mean: &Tensor,
        running_var: &Tensor,
        momentum: f32,
        eps: f32,
    ) -> Result<Var> {
        if self.training {
            let running = [running_mean, running_var];
            return self.batchnorm2d_training([x, gamma, beta], running, momentum, eps, true);
        }
        let y = self.batchnorm2d(x, gamma, beta, running_mean, running_var, momentum, eps)?;
        self.relu(y)
    }

    /// BatchNorm2d in training mode on [x, gamma, beta], followed by a ReLU (fused) when `relu`.
    fn batchnorm2d_training(
        &mut self,
        inputs: [Var; 3],
        [running_mean, running_var]: [&Tensor; 2],
        momentum: f32,
        eps: f32,
        relu: bool,
    ) -> Result<Var> {
        let [xt, gt, bt] = self.vals(inputs)?;
        let train = if relu {
            <dyn Backend>::batchnorm2d_relu_train
        } else {
            <dyn Backend>::batchnorm2d_train
        };
        let (y, mean, invstd) = train(
            self.backend,
            &xt,
            &gt,
            &bt,
            running_mean,
            running_var,
            momentum,
            eps,
        )?;
        let yt = y.clone();
        self.push(
            y,
            &inputs,
            Box::new(move |be, gy, _| {
                let (gx, gg, gb) = if relu {
                    be.batchnorm2d_relu_backward(&xt, &yt, gy, &gt, &bt, &mean, &invstd)?
                } else {
                    be.batchnorm2d_backward(&xt, gy, &gt, &mean, &invstd)?
                };
                Ok(vec![Some(gx), Some(gg), Some(gb)])
            }),
        )
    }
}

/// A tensor of `n` copies of the one-element tensor `s` (via bias_add onto zeros (n, 1)).
fn broadcast_scalar(be: &dyn Backend, s: &Tensor, n: usize) -> Result<Tensor> {
    let s = s.reshape(&[1])?;
    let z = be.zeros(&[n, 1])?;
    be.bias_add(&z, &s)
}
