//! Every GPU kernel other than convolution/matmul against its CPU twin (`CpuBackend`), on
//! lavapipe natively: elementwise ops, reductions, softmax, losses and their gradients,
//! BatchNorm2d, SGD/Adam, random numbers; then the same ops under artificially low device
//! limits (1 MiB storage binding, 64 workgroups per dimension) so the chunking paths run.
//!
//! Tolerances: elementwise ops compare within 1e-5 (1 + |cpu|) (the GPU's exp/log/tanh are
//! not the host libm's); reductions within 1e-5 (1 + |cpu|) too — the CPU sums in f64, the GPU
//! in f32 trees whose relative error grows like log2(n) * 6e-8. Run with --nocapture for the
//! measured maxima. No adapter = failure: CI requires Vulkan (mesa-vulkan-drivers).

use nnlab::backend::*;
use nnlab::cpu::CpuBackend;
use nnlab::gpu::{GpuBackend, GpuOptions};
use nnlab::rng;
use nnlab::Tensor;

const TOL: f32 = 1e-5;

fn open(opts: GpuOptions) -> GpuBackend {
    match GpuBackend::new_blocking(opts) {
        Ok(g) => {
            println!("GPU: {}", g.info().describe());
            g
        }
        Err(e) => panic!("these tests need a GPU adapter (natively: Vulkan, e.g. mesa-vulkan-drivers for lavapipe): {e}"),
    }
}

fn gpu() -> GpuBackend {
    open(GpuOptions::default())
}

/// A GPU with 1 MiB storage bindings and 64 workgroups per dimension.
fn small_gpu() -> GpuBackend {
    open(GpuOptions {
        max_storage_binding_bytes: Some(1 << 20),
        max_workgroups_per_dim: Some(64),
    })
}

/// Uniform in [lo, hi), seeded.
fn rnd(n: usize, seed: u64, lo: f32, hi: f32) -> Vec<f32> {
    rng::uniform_vec(n, lo, hi, seed)
}

fn numel(s: &[usize]) -> usize {
    s.iter().product()
}

/// The same data on both backends.
struct Pair {
    g: Tensor,
    c: Tensor,
}

fn pair(g: &GpuBackend, shape: &[usize], data: &[f32]) -> Pair {
    Pair {
        g: g.upload(shape, data).unwrap(),
        c: CpuBackend::new().upload(shape, data).unwrap(),
    }
}

fn read_gpu(g: &GpuBackend, t: &Tensor) -> Vec<f32> {
    read_blocking(g, t).unwrap()
}
fn read_cpu(t: &Tensor) -> Vec<f32> {
    read_blocking(&CpuBackend::new(), t).unwrap()
}

/// Assert |gpu - cpu| <= tol (1 + |cpu|) elementwise; print and return the max abs error.
fn close(name: &str, got: &[f32], want: &[f32], tol: f32) -> f32 {
    assert_eq!(got.len(), want.len(), "{name}: lengths differ");
    let mut worst = 0.0f32;
    for (i, (&a, &b)) in got.iter().zip(want).enumerate() {
        let e = (a - b).abs();
        assert!(
            e <= tol * (1.0 + b.abs()),
            "{name}: element {i} of {}: gpu {a}, cpu {b}",
            got.len()
        );
        worst = worst.max(e);
    }
    println!("{name:<48} n={:<8} max abs err {worst:.3e}", got.len());
    worst
}

/// Compare a GPU tensor with a CPU tensor.
fn same(g: &GpuBackend, name: &str, gt: &Tensor, ct: &Tensor, tol: f32) {
    assert_eq!(gt.shape(), ct.shape(), "{name}: shapes differ");
    close(name, &read_gpu(g, gt), &read_cpu(ct), tol);
}

/// Shapes with odd sizes, batch 1 and > 1, sizes not a multiple of the workgroup size.
const SHAPES: &[&[usize]] = &[
    &[1, 3, 5, 7],
    &[2, 4, 9, 11],
    &[3, 17, 13],
    &[1, 1000],
    &[4, 257],
    &[5, 6, 33, 7],
    &[7, 1],
];

const UNARY: &[UnaryOp] = &[
    UnaryOp::Relu,
    UnaryOp::LeakyRelu(0.2),
    UnaryOp::Tanh,
    UnaryOp::Sigmoid,
    UnaryOp::Sign,
    UnaryOp::Square,
    UnaryOp::Abs,
];

#[test]
fn elementwise_ops_match_cpu() {
    let g = gpu();
    let cpu = CpuBackend::new();
    for (k, &shape) in SHAPES.iter().enumerate() {
        let n = numel(shape);
        let x = pair(&g, shape, &rnd(n, 10 + k as u64, -6.0, 6.0));
        let y = pair(&g, shape, &rnd(n, 20 + k as u64, -2.0, 2.0));
        let tag = |op: &str| format!("{op} {shape:?}");
        same(
            &g,
            &tag("affine"),
            &g.affine(&x.g, -1.5, 0.25).unwrap(),
            &cpu.affine(&x.c, -1.5, 0.25).unwrap(),
            TOL,
        );
        same(
            &g,
            &tag("clamp"),
            &g.clamp(&x.g, -0.5, 2.0).unwrap(),
            &cpu.clamp(&x.c, -0.5, 2.0).unwrap(),
            0.0,
        );
        for op in [BinaryOp::Add, BinaryOp::Sub, BinaryOp::Mul] {
            same(
                &g,
                &tag(&format!("binary {op:?}")),
                &g.binary(op, &x.g, &y.g).unwrap(),
                &cpu.binary(op, &x.c, &y.c).unwrap(),
                0.0,
            );
        }
        for &op in UNARY {
            same(
                &g,
                &tag(&format!("unary {op:?}")),
                &g.unary(op, &x.g).unwrap(),
                &cpu.unary(op, &x.c).unwrap(),
                TOL,
            );
            let (gb, cb) = (
                g.unary_backward(op, &x.g, &y.g).unwrap(),
                cpu.unary_backward(op, &x.c, &y.c).unwrap(),
            );
            same(&g, &tag(&format!("unary_backward {op:?}")), &gb, &cb, TOL);
        }
        let b = pair(&g, &[shape[1]], &rnd(shape[1], 30 + k as u64, -1.0, 1.0));
        same(
            &g,
            &tag("bias_add"),
            &g.bias_add(&x.g, &b.g).unwrap(),
            &cpu.bias_add(&x.c, &b.c).unwrap(),
            0.0,
        );
    }
}

#[test]
fn reductions_and_softmax_match_cpu() {
    let g = gpu();
    let cpu = CpuBackend::new();
    let mut shapes: Vec<&[usize]> = SHAPES.to_vec();
    shapes.push(&[3, 70001]); // several partial-sum workgroups
    for (k, &shape) in shapes.iter().enumerate() {
        let n = numel(shape);
        let x = pair(&g, shape, &rnd(n, 40 + k as u64, -3.0, 3.0));
        let tag = |op: &str| format!("{op} {shape:?}");
        same(
            &g,
            &tag("sum"),
            &g.sum(&x.g).unwrap(),
            &cpu.sum(&x.c).unwrap(),
            TOL,
        );
        same(
            &g,
            &tag("mean"),
            &g.mean(&x.g).unwrap(),
            &cpu.mean(&x.c).unwrap(),
            TOL,
        );
        same(
            &g,
            &tag("softmax"),
            &g.softmax(&x.g).unwrap(),
            &cpu.softmax(&x.c).unwrap(),
            TOL,
        );
        same(
            &g,
            &tag("bias_grad"),
            &g.bias_grad(&x.g).unwrap(),
            &cpu.bias_grad(&x.c).unwrap(),
            TOL,
        );
    }
    // softmax stays finite for huge logits
    let big = pair(&g, &[2, 3], &[1000.0, 999.0, -1000.0, 88.0, 89.0, 90.0]);
    same(
        &g,
        "softmax of large logits",
        &g.softmax(&big.g).unwrap(),
        &cpu.softmax(&big.c).unwrap(),
        TOL,
    );
}

/// Targets suited to each loss: anything for regression losses, [0, 1] for BCE, a
/// distribution per row for softmax cross-entropy.
fn targets(kind: LossKind, shape: &[usize], seed: u64) -> Vec<f32> {
    let n = numel(shape);
    match kind {
        LossKind::BceWithLogits => rnd(n, seed, 0.0, 1.0),
        LossKind::SoftmaxCrossEntropy => {
            let d = *shape.last().unwrap();
            let mut t = rnd(n, seed, 0.0, 1.0);
            for row in t.chunks_mut(d) {
                let s: f32 = row.iter().sum();
                row.iter_mut().for_each(|v| *v /= s);
            }
            t
        }
        _ => rnd(n, seed, -2.0, 2.0),
    }
}

const LOSSES: &[LossKind] = &[
    LossKind::Mse,
    LossKind::L1,
    LossKind::BceWithLogits,
    LossKind::SoftmaxCrossEntropy,
    LossKind::LeastSquares,
];

#[test]
fn losses_and_gradients_match_cpu() {
    let g = gpu();
    let cpu = CpuBackend::new();
    let gloss = pair(&g, &[1], &[0.7]);
    for (k, &shape) in SHAPES.iter().enumerate() {
        let n = numel(shape);
        for &kind in LOSSES {
            let p = pair(&g, shape, &rnd(n, 50 + k as u64, -4.0, 4.0));
            let t = pair(&g, shape, &targets(kind, shape, 60 + k as u64));
            let tag = |op: &str| format!("{op} {kind:?} {shape:?}");
            same(
                &g,
                &tag("loss"),
                &g.loss(kind, &p.g, &t.g).unwrap(),
                &cpu.loss(kind, &p.c, &t.c).unwrap(),
                TOL,
            );
            let gb = g.loss_backward(kind, &p.g, &t.g, &gloss.g).unwrap();
            let cb = cpu.loss_backward(kind, &p.c, &t.c, &gloss.c).unwrap();
            same(&g, &tag("loss_backward"), &gb, &cb, TOL);
        }
    }
}

/// BatchNorm2d train (y, mean, invstd, running stats), eval and backward on both backends.
fn batchnorm_case(g: &GpuBackend, shape: &[usize], seed: u64, tol: f32) {
    let cpu = CpuBackend::new();
    let c = shape[1];
    let n = numel(shape);
    let x = pair(g, shape, &rnd(n, seed, -2.0, 3.0));
    let gy = pair(g, shape, &rnd(n, seed + 1, -1.0, 1.0));
    let gamma = pair(g, &[c], &rnd(c, seed + 2, 0.5, 1.5));
    let beta = pair(g, &[c], &rnd(c, seed + 3, -0.5, 0.5));
    let rm = pair(g, &[c], &rnd(c, seed + 4, -0.1, 0.1));
    let rv = pair(g, &[c], &rnd(c, seed + 5, 0.9, 1.1));
    let tag = |op: &str| format!("batchnorm2d {op} {shape:?}");
    let (gy_, gm, gi) = g
        .batchnorm2d_train(&x.g, &gamma.g, &beta.g, &rm.g, &rv.g, 0.1, 1e-5)
        .unwrap();
    let (cy, cm, ci) = cpu
        .batchnorm2d_train(&x.c, &gamma.c, &beta.c, &rm.c, &rv.c, 0.1, 1e-5)
        .unwrap();
    same(g, &tag("train y"), &gy_, &cy, tol);
    same(g, &tag("train mean"), &gm, &cm, tol);
    same(g, &tag("train invstd"), &gi, &ci, tol);
    same(g, &tag("running mean"), &rm.g, &rm.c, tol);
    same(g, &tag("running var"), &rv.g, &rv.c, tol);
    let ge = g
        .batchnorm2d_eval(&x.g, &gamma.g, &beta.g, &rm.g, &rv.g, 1e-5)
        .unwrap();
    let ce = cpu
        .batchnorm2d_eval(&x.c, &gamma.c, &beta.c, &rm.c, &rv.c, 1e-5)
        .unwrap();
    same(g, &tag("eval y"), &ge, &ce, tol);
    let (gx, gg, gb) = g
        .batchnorm2d_backward(&x.g, &gy.g, &gamma.g, &gm, &gi)
        .unwrap();
    let (cx, cg, cb) = cpu
        .batchnorm2d_backward(&x.c, &gy.c, &gamma.c, &cm, &ci)
        .unwrap();
    same(g, &tag("backward gx"), &gx, &cx, tol);
    same(g, &tag("backward ggamma"), &gg, &cg, tol);
    same(g, &tag("backward gbeta"), &gb, &cb, tol);
}

#[test]
fn batchnorm_matches_cpu() {
    let g = gpu();
    for (k, shape) in [
        [1, 3, 5, 7],
        [2, 4, 9, 11],
        [4, 6, 1, 1],
        [3, 65, 6, 5],
        [2, 2, 40, 37],
    ]
    .iter()
    .enumerate()
    {
        batchnorm_case(&g, shape, 70 + 10 * k as u64, 2e-5);
    }
}

/// `steps` optimizer steps on both backends from the same state; compare every tensor.
fn optim_case(g: &GpuBackend, n: usize, steps: u32, tol: f32) {
    let cpu = CpuBackend::new();
    let p0 = rnd(n, 90, -1.0, 1.0);
    let zeros = vec![0.0; n];
    let (p, v) = (pair(g, &[n], &p0), pair(g, &[n], &zeros));
    let sgd = SgdParams {
        lr: 0.05,
        momentum: 0.9,
        weight_decay: 0.01,
    };
    let (q, m, s) = (
        pair(g, &[n], &p0),
        pair(g, &[n], &zeros),
        pair(g, &[n], &zeros),
    );
    for step in 1..=steps {
        let grad = pair(g, &[n], &rnd(n, 100 + step as u64, -1.0, 1.0));
        g.sgd_step(&p.g, &grad.g, &v.g, sgd).unwrap();
        cpu.sgd_step(&p.c, &grad.c, &v.c, sgd).unwrap();
        let adam = AdamParams {
            lr: 1e-2,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay: 0.01,
            step,
        };
        g.adam_step(&q.g, &grad.g, &m.g, &s.g, adam).unwrap();
        cpu.adam_step(&q.c, &grad.c, &m.c, &s.c, adam).unwrap();
    }
    same(g, &format!("sgd p after {steps} steps"), &p.g, &p.c, tol);
    same(
        g,
        &format!("sgd velocity after {steps} steps"),
        &v.g,
        &v.c,
        tol,
    );
    same(g, &format!("adam p after {steps} steps"), &q.g, &q.c, tol);
    same(g, &format!("adam m after {steps} steps"), &m.g, &m.c, tol);
    same(g, &format!("adam v after {steps} steps"), &s.g, &s.c, tol);
}

#[test]
fn optimizers_match_cpu() {
    let g = gpu();
    for n in [1, 255, 1000, 4097] {
        optim_case(&g, n, 5, TOL);
    }
}

#[test]
fn random_matches_cpu() {
    let g = gpu();
    let cpu = CpuBackend::new();
    for (shape, seed) in [
        (vec![1usize], 0u64),
        (vec![3, 5, 7], 1),
        (vec![2, 1000], 42),
        (vec![300, 301], (7 << 32) | 9),
    ] {
        let u = Distribution::Uniform { lo: -0.5, hi: 2.0 };
        let (gu, cu) = (
            g.random(&shape, u, seed).unwrap(),
            cpu.random(&shape, u, seed).unwrap(),
        );
        close(
            &format!("random uniform {shape:?} seed {seed}"),
            &read_gpu(&g, &gu),
            &read_cpu(&cu),
            0.0,
        );
        // standard normal: within 1e-5 absolute (the GPU's log/cos are not the host libm's)
        let nd = Distribution::Normal {
            mean: 0.0,
            std: 1.0,
        };
        let (gn, cn) = (
            read_gpu(&g, &g.random(&shape, nd, seed).unwrap()),
            read_cpu(&cpu.random(&shape, nd, seed).unwrap()),
        );
        let worst = gn
            .iter()
            .zip(&cn)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0f32, f32::max);
        println!("random normal {shape:?} seed {seed}: max abs err {worst:.3e}");
        assert!(
            worst <= 1e-5,
            "random normal {shape:?}: GPU and CPU differ by {worst}"
        );
        let nd = Distribution::Normal {
            mean: 0.5,
            std: 2.0,
        };
        let (gn, cn) = (
            g.random(&shape, nd, seed).unwrap(),
            cpu.random(&shape, nd, seed).unwrap(),
        );
        close(
            &format!("random normal(0.5, 2) {shape:?} seed {seed}"),
            &read_gpu(&g, &gn),
            &read_cpu(&cn),
            1e-5,
        );
        // and the host stream of src/rng.rs
        let host = rng::uniform_vec(numel(&shape), -0.5, 2.0, seed);
        close(
            &format!("random uniform vs rng::uniform_vec {shape:?}"),
            &read_gpu(&g, &gu),
            &host,
            0.0,
        );
    }
}

/// With a 1 MiB binding limit and 64 workgroups per dimension, ops on tensors of a few MiB
/// split into chunks and dispatches and still give the CPU result.
#[test]
fn splitting_under_low_limits() {
    let g = small_gpu();
    let cpu = CpuBackend::new();
    assert_eq!(g.max_binding_elems(), 1 << 18);
    let shape = [3, 5, 227, 241]; // 820_545 floats = 3.1 MiB
    let n = numel(&shape);
    let x = pair(&g, &shape, &rnd(n, 200, -3.0, 3.0));
    let y = pair(&g, &shape, &rnd(n, 201, -1.0, 1.0));
    same(
        &g,
        "split unary tanh",
        &g.unary(UnaryOp::Tanh, &x.g).unwrap(),
        &cpu.unary(UnaryOp::Tanh, &x.c).unwrap(),
        TOL,
    );
    same(
        &g,
        "split binary mul",
        &g.binary(BinaryOp::Mul, &x.g, &y.g).unwrap(),
        &cpu.binary(BinaryOp::Mul, &x.c, &y.c).unwrap(),
        0.0,
    );
    let b = pair(&g, &[5], &[0.1, -0.2, 0.3, -0.4, 0.5]);
    same(
        &g,
        "split bias_add",
        &g.bias_add(&x.g, &b.g).unwrap(),
        &cpu.bias_add(&x.c, &b.c).unwrap(),
        0.0,
    );
    same(
        &g,
        "split bias_grad",
        &g.bias_grad(&x.g).unwrap(),
        &cpu.bias_grad(&x.c).unwrap(),
        TOL,
    );
    same(
        &g,
        "split sum",
        &g.sum(&x.g).unwrap(),
        &cpu.sum(&x.c).unwrap(),
        TOL,
    );
    same(
        &g,
        "split mean",
        &g.mean(&x.g).unwrap(),
        &cpu.mean(&x.c).unwrap(),
        TOL,
    );
    // softmax rows of 1009 (not a divisor of the chunk): chunk starts fall between alignments
    let rows = pair(
        &g,
        &[n / 1009 + 1, 1009],
        &rnd((n / 1009 + 1) * 1009, 202, -5.0, 5.0),
    );
    same(
        &g,
        "split softmax",
        &g.softmax(&rows.g).unwrap(),
        &cpu.softmax(&rows.c).unwrap(),
        TOL,
    );
    let gloss = pair(&g, &[1], &[1.3]);
    for kind in [LossKind::Mse, LossKind::SoftmaxCrossEntropy] {
        let shape = rows.g.shape().to_vec();
        let t = pair(&g, &shape, &targets(kind, &shape, 203));
        same(
            &g,
            &format!("split loss {kind:?}"),
            &g.loss(kind, &rows.g, &t.g).unwrap(),
            &cpu.loss(kind, &rows.c, &t.c).unwrap(),
            TOL,
        );
        let (gb, cb) = (
            g.loss_backward(kind, &rows.g, &t.g, &gloss.g).unwrap(),
            cpu.loss_backward(kind, &rows.c, &t.c, &gloss.c).unwrap(),
        );
        same(&g, &format!("split loss_backward {kind:?}"), &gb, &cb, TOL);
    }
    // many small rows / many channels: more than 64 * 64 workgroups, so several dispatches
    let small_rows = pair(&g, &[70001, 3], &rnd(210003, 205, -5.0, 5.0));
    same(
        &g,
        "split softmax [70001, 3]",
        &g.softmax(&small_rows.g).unwrap(),
        &cpu.softmax(&small_rows.c).unwrap(),
        TOL,
    );
    let logits = pair(&g, &[30001, 10], &rnd(300010, 206, -5.0, 5.0));
    let t = pair(
        &g,
        &[30001, 10],
        &targets(LossKind::SoftmaxCrossEntropy, &[30001, 10], 207),
    );
    let kind = LossKind::SoftmaxCrossEntropy;
    same(
        &g,
        "split loss SoftmaxCrossEntropy [30001, 10]",
        &g.loss(kind, &logits.g, &t.g).unwrap(),
        &cpu.loss(kind, &logits.c, &t.c).unwrap(),
        TOL,
    );
    let (gb, cb) = (
        g.loss_backward(kind, &logits.g, &t.g, &gloss.g).unwrap(),
        cpu.loss_backward(kind, &logits.c, &t.c, &gloss.c).unwrap(),
    );
    same(
        &g,
        "split loss_backward SoftmaxCrossEntropy [30001, 10]",
        &gb,
        &cb,
        TOL,
    );
    let wide = pair(&g, &[7, 5003], &rnd(7 * 5003, 208, -1.0, 1.0));
    same(
        &g,
        "split bias_grad [7, 5003]",
        &g.bias_grad(&wide.g).unwrap(),
        &cpu.bias_grad(&wide.c).unwrap(),
        TOL,
    );
    batchnorm_case(&g, &shape, 204, 2e-5);
    optim_case(&g, 700_001, 2, TOL);
    let u = Distribution::Uniform { lo: 0.0, hi: 1.0 };
    close(
        "split random uniform",
        &read_gpu(&g, &g.random(&[n], u, 5).unwrap()),
        &rng::uniform_vec(n, 0.0, 1.0, 5),
        0.0,
    );
}

#[test]
fn bad_input_is_an_error() {
    let g = gpu();
    let a = g.upload(&[2, 3], &[0.0; 6]).unwrap();
    let b = g.upload(&[3, 2], &[0.0; 6]).unwrap();
    let one = g.upload(&[1], &[1.0]).unwrap();
    assert!(g.unary_backward(UnaryOp::Relu, &a, &b).is_err());
    assert!(g.clamp(&a, 1.0, -1.0).is_err());
    assert!(g.bias_add(&a, &one).is_err());
    assert!(g.bias_grad(&one).is_err());
    assert!(g.loss(LossKind::Mse, &a, &b).is_err());
    assert!(g.loss_backward(LossKind::Mse, &a, &a, &a).is_err());
    assert!(g
        .batchnorm2d_eval(&a, &one, &one, &one, &one, 1e-5)
        .is_err());
    let x1 = g.upload(&[1, 1, 1, 1], &[2.0]).unwrap(); // one value per channel: no batch variance
    let (rm, rv) = (g.zeros(&[1]).unwrap(), g.fill(&[1], 1.0).unwrap());
    assert!(g
        .batchnorm2d_train(&x1, &one, &one, &rm, &rv, 0.1, 1e-5)
        .is_err());
    let x2 = g.upload(&[2, 1, 1, 1], &[2.0, 3.0]).unwrap();
    assert!(g
        .batchnorm2d_train(&x2, &one, &one, &rm, &rm, 0.1, 1e-5)
        .is_err()); // running stats alias
    assert!(g
        .batchnorm2d_train(&x2, &one, &rv, &rm, &rv, 0.1, 1e-5)
        .is_err()); // beta aliases running_var
    assert!(g
        .batchnorm2d_train(&x2, &one, &one, &rm, &rv, 0.1, 1e-5)
        .is_ok());
    assert!(g
        .sgd_step(
            &a,
            &b,
            &a,
            SgdParams {
                lr: 0.1,
                momentum: 0.0,
                weight_decay: 0.0
            }
        )
        .is_err());
    let adam = AdamParams {
        lr: 0.1,
        beta1: 0.9,
        beta2: 0.999,
        eps: 1e-8,
        weight_decay: 0.0,
        step: 0,
    };
    let (m, v) = (g.zeros(&[2, 3]).unwrap(), g.zeros(&[2, 3]).unwrap());
    assert!(g.adam_step(&a, &b, &m, &v, adam).is_err()); // step 0
    let adam = AdamParams { step: 1, ..adam };
    assert!(g.adam_step(&a, &a, &m, &v, adam).is_err()); // gradient aliases the parameter
    assert!(g
        .adam_step(&a, &b.reshape(&[2, 3]).unwrap(), &m, &m, adam)
        .is_err()); // m aliases v
    assert!(g
        .sgd_step(
            &a,
            &b.reshape(&[2, 3]).unwrap(),
            &a,
            SgdParams {
                lr: 0.1,
                momentum: 0.9,
                weight_decay: 0.0
            }
        )
        .is_err());
    assert!(g
        .random(&[0, 3], Distribution::Uniform { lo: 0.0, hi: 1.0 }, 1)
        .is_err());
    // a CPU tensor handed to the GPU backend
    let c = CpuBackend::new().upload(&[2, 3], &[0.0; 6]).unwrap();
    assert!(g.sum(&c).is_err());
}

/// Both backends refuse the same bad conv and BatchNorm input with the same words: the rules live
/// once in `backend/` (conv_geom.rs, batchnorm.rs).
#[test]
fn conv_and_batchnorm_refusals_are_word_for_word_the_same() {
    let g = gpu();
    let c = CpuBackend::new();
    let backends: [&dyn Backend; 2] = [&g, &c];
    let err = |be: &dyn Backend, case: usize| -> String {
        let t = |s: &[usize]| be.fill(s, 1.0).unwrap();
        let (x, w, one) = (t(&[2, 1, 5, 5]), t(&[3, 1, 3, 3]), t(&[1]));
        let (rm, rv) = (t(&[1]), t(&[1]));
        let p = Conv2dParams::default();
        let tp = ConvTranspose2dParams::default();
        let r = match case {
            0 => be.conv2d(&x, &t(&[3, 2, 3, 3]), None, p).map(|_| ()),
            1 => be.conv2d(&x, &w, Some(&one), p).map(|_| ()),
            2 => be
                .conv2d_backward_input(&t(&[2, 3, 4, 3]), &w, &[2, 1, 5, 5], p)
                .map(|_| ()),
            3 => be
                .conv2d_backward_weight(&x, &t(&[2, 3, 3]), &[3, 1, 3, 3], p)
                .map(|_| ()),
            4 => be
                .conv_transpose2d_backward_input(&t(&[2, 1, 5, 5]), &t(&[3, 1, 3, 3]), &[2, 3, 5, 5], tp)
                .map(|_| ()),
            5 => be
                .conv2d(&x, &w, None, Conv2dParams { stride: 0, ..p })
                .map(|_| ()),
            6 => be
                .batchnorm2d_eval(&x, &one, &one, &one, &t(&[2]), 1e-5)
                .map(|_| ()),
            7 => be
                .batchnorm2d_train(&t(&[1, 1, 1, 1]), &one, &one, &rm, &rv, 0.1, 1e-5)
                .map(|_| ()),
            8 => be
                .batchnorm2d_train(&x, &one, &one, &rm, &rv, 0.1, -1.0)
                .map(|_| ()),
            9 => be
                .batchnorm2d_train(&x, &one, &one, &rm, &rm, 0.1, 1e-5)
                .map(|_| ()),
            10 => be
                .batchnorm2d_train(&x, &rv, &one, &rm, &rv, 0.1, 1e-5)
                .map(|_| ()),
            11 => be
                .batchnorm2d_backward(&x, &t(&[2, 1, 5, 4]), &one, &one, &one)
                .map(|_| ()),
            _ => be
                .batchnorm2d_eval(&t(&[2, 5, 5]), &one, &one, &one, &one, 1e-5)
                .map(|_| ()),
        };
        match r {
            Ok(()) => panic!("case {case} ({}) was accepted", be.info().kind),
            Err(e) => e.to_string(),
        }
    };
    for case in 0..13 {
        let [gm, cm] = backends.map(|be| err(be, case));
        assert_eq!(gm, cm, "case {case}: the backends' words differ");
    }
}

/// `read_many` (one staging buffer and one map on the GPU) returns each tensor exactly as its
/// own `read` does, in order, on both backends: sizes 1, odd and large, the same tensor twice.
#[test]
fn read_many_equals_one_read_per_tensor() {
    let g = gpu();
    let c = CpuBackend::new();
    let shapes: [&[usize]; 4] = [&[1], &[3, 7], &[2, 3, 50, 41], &[5]];
    for b in [&g as &dyn Backend, &c as &dyn Backend] {
        let ts: Vec<Tensor> = shapes
            .iter()
            .enumerate()
            .map(|(i, s)| b.upload(s, &rnd(numel(s), 40 + i as u64, -2.0, 2.0)).unwrap())
            .collect();
        let mut refs: Vec<&Tensor> = ts.iter().collect();
        refs.push(&ts[1]);
        let many = pollster::block_on(b.read_many(&refs)).unwrap();
        assert_eq!(many.len(), refs.len());
        for (t, got) in refs.iter().zip(&many) {
            assert_eq!(got, &pollster::block_on(b.read(t)).unwrap(), "{}", b.info().describe());
        }
        assert!(pollster::block_on(b.read_many(&[])).unwrap().is_empty());
    }
}
