//! Elementwise ops (activations: unary and their backward; binary add/sub/mul; affine; clamp;
//! bias_add): backward against finite differences, values by hand (PyTorch's gradient at the
//! kinks), bad input; on the GPU, every op over odd shapes against the CPU twin, and the
//! splitting paths.

use crate::common::*;
use nnlab::backend::*;
use nnlab::cpu::CpuBackend;
use nnlab::gpu::GpuOptions;

/// Shapes with odd sizes, batch 1 and > 1, sizes not a multiple of the workgroup size.
pub const SHAPES: &[&[usize]] = &[
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

// ---------------------------------------------------------------- every backend

backend_test! {
    fn unary_backward_matches_finite_differences(b) {
        let shape = [3, 7];
        for (k, &op) in UNARY.iter().enumerate() {
            // scaled to [-3, 3), >= 0.15 away from the kinks at 0
            let x: Vec<f32> = rnd_away(21, 200 + k as u64, 0.05)
                .iter()
                .map(|v| 3.0 * v)
                .collect();
            let gy = rnd(21, 300 + k as u64);
            let f = |ins: &[Vec<f32>]| b.v(&b.unary(op, &b.t(&shape, &ins[0])).unwrap());
            let gx = b.v(&b
                .unary_backward(op, &b.t(&shape, &x), &b.t(&shape, &gy))
                .unwrap());
            fd_check(&format!("unary {op:?}"), &[x], 0, &gy, &gx, 1e-2, &f);
        }
    }
}

backend_test! {
    fn unary_values(b) {
        let x = b.t(&[5], &[-2.0, -0.5, 0.0, 0.5, 2.0]);
        let u = |op| b.v(&b.unary(op, &x).unwrap());
        assert_eq!(u(UnaryOp::Relu), [0.0, 0.0, 0.0, 0.5, 2.0]);
        assert_eq!(u(UnaryOp::LeakyRelu(0.1)), [-0.2, -0.05, 0.0, 0.5, 2.0]);
        assert_eq!(u(UnaryOp::Sign), [-1.0, -1.0, 0.0, 1.0, 1.0]);
        assert_eq!(u(UnaryOp::Square), [4.0, 0.25, 0.0, 0.25, 4.0]);
        assert_eq!(u(UnaryOp::Abs), [2.0, 0.5, 0.0, 0.5, 2.0]);
        assert_close(
            "tanh",
            &u(UnaryOp::Tanh),
            &[-0.9640276, -0.46211716, 0.0, 0.46211716, 0.9640276],
            1e-6,
        );
        assert_close(
            "sigmoid",
            &u(UnaryOp::Sigmoid),
            &[0.11920292, 0.37754067, 0.5, 0.62245933, 0.88079708],
            1e-6,
        );
        // no overflow at the extremes
        assert_eq!(
            b.v(&b.unary(UnaryOp::Sigmoid, &b.t(&[2], &[-200.0, 200.0]))
                .unwrap()),
            [0.0, 1.0]
        );
        // the gradient at the kinks is PyTorch's: relu'(0) = 0, abs'(0) = 0, sign' = 0
        let z = b.t(&[1], &[0.0]);
        let one = b.t(&[1], &[1.0]);
        for (op, want) in [
            (UnaryOp::Relu, 0.0),
            (UnaryOp::Abs, 0.0),
            (UnaryOp::LeakyRelu(0.1), 0.1),
            (UnaryOp::Sign, 0.0),
        ] {
            assert_eq!(
                b.v(&b.unary_backward(op, &z, &one).unwrap()),
                [want],
                "{op:?}"
            );
        }
    }
}

backend_test! {
    /// The backward the tape uses for the binary ops, affine and bias_add (they have no op of
    /// their own): add -> (gy, gy), sub -> (gy, -gy), mul -> (gy b, gy a), affine -> a gy,
    /// bias_add -> (gy, bias_grad(gy)).
    fn binary_affine_bias_backward_match_finite_differences(b) {
        let shape = [2, 3, 2, 3];
        let n = 36;
        let inputs = vec![rnd(n, 1), rnd(n, 2)];
        let gy = rnd(n, 3);
        let gyt = b.t(&shape, &gy);
        for op in [BinaryOp::Add, BinaryOp::Sub, BinaryOp::Mul] {
            let f = |ins: &[Vec<f32>]| {
                b.v(&b.binary(op, &b.t(&shape, &ins[0]), &b.t(&shape, &ins[1]))
                    .unwrap())
            };
            let (ga, gb) = match op {
                BinaryOp::Add => (gy.clone(), gy.clone()),
                BinaryOp::Sub => (gy.clone(), b.v(&b.affine(&gyt, -1.0, 0.0).unwrap())),
                BinaryOp::Mul => (
                    b.v(&b.binary(BinaryOp::Mul, &gyt, &b.t(&shape, &inputs[1]))
                        .unwrap()),
                    b.v(&b.binary(BinaryOp::Mul, &gyt, &b.t(&shape, &inputs[0]))
                        .unwrap()),
                ),
            };
            fd_check(&format!("binary {op:?}"), &inputs, 0, &gy, &ga, 0.1, &f);
            fd_check(&format!("binary {op:?}"), &inputs, 1, &gy, &gb, 0.1, &f);
        }
        let f = |ins: &[Vec<f32>]| b.v(&b.affine(&b.t(&shape, &ins[0]), -1.5, 0.25).unwrap());
        assert_close(
            "affine value",
            &f(&inputs),
            &inputs[0]
                .iter()
                .map(|x| -1.5 * x + 0.25)
                .collect::<Vec<_>>(),
            1e-6,
        );
        fd_check(
            "affine",
            &inputs,
            0,
            &gy,
            &b.v(&b.affine(&gyt, -1.5, 0.0).unwrap()),
            0.1,
            &f,
        );
        // bias_add on (N, C, H, W) and on (N, C)
        for (xs, c) in [(vec![2, 3, 2, 3], 3), (vec![4, 9], 9)] {
            let ins = vec![rnd(36, 4), rnd(c, 5)];
            let f = |ins: &[Vec<f32>]| b.v(&b.bias_add(&b.t(&xs, &ins[0]), &b.t(&[c], &ins[1])).unwrap());
            let gyt = b.t(&xs, &gy);
            fd_check(&format!("bias_add {xs:?}"), &ins, 0, &gy, &gy, 0.1, &f);
            fd_check(
                &format!("bias_add {xs:?}"),
                &ins,
                1,
                &gy,
                &b.v(&b.bias_grad(&gyt).unwrap()),
                0.1,
                &f,
            );
        }
    }
}

backend_test! {
    fn clamp_values_and_mask_gradient(b) {
        let x = b.t(&[6], &[-3.0, -1.0, -0.5, 0.5, 1.0, 3.0]);
        assert_eq!(
            b.v(&b.clamp(&x, -1.0, 1.0).unwrap()),
            [-1.0, -1.0, -0.5, 0.5, 1.0, 1.0]
        );
        // clamp's gradient (1 strictly inside, 0 outside) by finite differences, away from the bounds
        let xs = rnd_away(30, 7, 0.05)
            .iter()
            .map(|v| 2.0 * v)
            .collect::<Vec<f32>>();
        let xs: Vec<f32> = xs
            .into_iter()
            .map(|v| {
                if (v.abs() - 1.0).abs() < 0.05 {
                    v * 1.2
                } else {
                    v
                }
            })
            .collect();
        let gy = rnd(30, 8);
        let mask: Vec<f32> = xs
            .iter()
            .zip(&gy)
            .map(|(&x, &g)| if x > -1.0 && x < 1.0 { g } else { 0.0 })
            .collect();
        fd_check("clamp", &[xs], 0, &gy, &mask, 1e-2, &|ins| {
            b.v(&b.clamp(&b.t(&[30], &ins[0]), -1.0, 1.0).unwrap())
        });
    }
}

backend_test! {
    /// Mismatched shapes and bad bounds are refused with words that say so.
    fn bad_input_is_an_error(b) {
        let a = b.t(&[2, 3], &rnd(6, 1));
        let a32 = b.t(&[3, 2], &rnd(6, 1));
        is_err_with(b.binary(BinaryOp::Add, &a, &a32), "shapes differ");
        is_err_with(b.clamp(&a, 1.0, -1.0), "lower bound");
        assert!(b.unary_backward(UnaryOp::Relu, &a, &a32).is_err());
        assert!(b.bias_add(&a, &b.t(&[1], &[1.0])).is_err());
        let x = b.t(&[1, 2, 5, 5], &rnd(50, 1));
        is_err_with(b.bias_add(&x, &b.t(&[3], &[0.0; 3])), "bias");
    }
}

// ---------------------------------------------------------------- the GPU against its CPU twin

#[test]
fn gpu_matches_cpu() {
    let g = gpu();
    let cpu = CpuBackend::new();
    for (k, &shape) in SHAPES.iter().enumerate() {
        let n = numel(shape);
        let x = pair(&g, shape, &rnd_in(n, 10 + k as u64, -6.0, 6.0));
        let y = pair(&g, shape, &rnd_in(n, 20 + k as u64, -2.0, 2.0));
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
        let b = pair(&g, &[shape[1]], &rnd_in(shape[1], 30 + k as u64, -1.0, 1.0));
        same(
            &g,
            &tag("bias_add"),
            &g.bias_add(&x.g, &b.g).unwrap(),
            &cpu.bias_add(&x.c, &b.c).unwrap(),
            0.0,
        );
    }
}

/// With a 1 MiB binding limit and 64 workgroups per dimension, ops on tensors of a few MiB
/// split into chunks and dispatches and still give the CPU result.
#[test]
fn gpu_splits_under_low_limits() {
    let (g, cpu) = (small_gpu(), CpuBackend::new());
    let (shape, n) = (SPLIT, numel(&SPLIT));
    let x = pair(&g, &shape, &rnd_in(n, 200, -3.0, 3.0));
    let y = pair(&g, &shape, &rnd_in(n, 201, -1.0, 1.0));
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
}

#[test]
fn gpu_fill_and_mul_under_tiny_limits() {
    // 4 KiB bindings, 2 workgroups per dimension: 5000 floats take 5 chunks of many dispatches
    let gpu = gpu_with(GpuOptions {
        max_storage_binding_bytes: Some(1 << 12),
        max_workgroups_per_dim: Some(2),
        ..Default::default()
    });
    let n = 5000;
    let a: Vec<f32> = (0..n).map(|i| i as f32).collect();
    let ta = gpu.upload(&[n], &a).unwrap();
    let tb = gpu.fill(&[n], 2.0).unwrap();
    let c = gpu.binary(BinaryOp::Mul, &ta, &tb).unwrap();
    let out = read_blocking(&gpu, &c).unwrap();
    for i in 0..n {
        assert_eq!(out[i], 2.0 * i as f32);
    }
}

// ---------------------------------------------------------------- reciprocal (1 / x)

/// Values of |x| in [0.25, 3.25) with both signs (1 / x stays within 4 in magnitude).
fn away_from_zero(n: usize, seed: u64) -> Vec<f32> {
    rnd_in(n, seed, -3.0, 3.0)
        .into_iter()
        .map(|v| v + 0.25 * v.signum())
        .collect()
}

backend_test! {
    /// 1 / x by hand (1 / 0 = inf, as IEEE and PyTorch), its backward -gy / x^2 against finite
    /// differences, and on the tape (`Graph::reciprocal`), where its gradient reaches x.
    fn reciprocal(b) {
        let x = b.t(&[6], &[-4.0, -0.5, 0.25, 1.0, 2.0, 0.0]);
        let y = b.v(&b.unary(UnaryOp::Reciprocal, &x).unwrap());
        assert_eq!(&y[..5], [-0.25, -2.0, 4.0, 1.0, 0.5]);
        assert!(y[5].is_infinite() && y[5] > 0.0);
        let shape = [3, 7];
        let xs = away_from_zero(21, 41);
        let gy = rnd(21, 42);
        let f = |ins: &[Vec<f32>]| {
            b.v(&b.unary(UnaryOp::Reciprocal, &b.t(&shape, &ins[0])).unwrap())
        };
        let gx = b.v(&b
            .unary_backward(UnaryOp::Reciprocal, &b.t(&shape, &xs), &b.t(&shape, &gy))
            .unwrap());
        fd_check("unary Reciprocal", std::slice::from_ref(&xs), 0, &gy, &gx, 1e-3, &f);
        let mut g = nnlab::autodiff::Graph::new(b);
        let xv = g.input(b.t(&shape, &xs));
        let r = g.reciprocal(xv).unwrap();
        let s = g.sum(r).unwrap();
        g.backward(s).unwrap();
        let want: Vec<f32> = xs.iter().map(|v| -1.0 / (v * v)).collect();
        assert_close("tape reciprocal grad", &b.v(&g.grad(xv).unwrap()), &want, 1e-6);
        assert!(b.unary_backward(UnaryOp::Reciprocal, &x, &b.t(&[5], &[1.0; 5])).is_err());
    }
}

/// The GPU's 1 / x and its backward against the CPU twin over every shape class, and on a
/// tensor that splits into chunks and dispatches under low limits.
#[test]
fn gpu_reciprocal_matches_cpu() {
    let cpu = CpuBackend::new();
    let shapes: Vec<&[usize]> = SHAPES.iter().copied().chain([&SPLIT[..]]).collect();
    for (g, name) in [(gpu(), "gpu"), (small_gpu(), "small gpu")] {
        for (k, &shape) in shapes.iter().enumerate() {
            let n = numel(shape);
            let x = pair(&g, shape, &away_from_zero(n, 50 + k as u64));
            let y = pair(&g, shape, &rnd_in(n, 60 + k as u64, -2.0, 2.0));
            let tag = |op: &str| format!("{name} {op} {shape:?}");
            same(
                &g,
                &tag("reciprocal"),
                &g.unary(UnaryOp::Reciprocal, &x.g).unwrap(),
                &cpu.unary(UnaryOp::Reciprocal, &x.c).unwrap(),
                TOL,
            );
            same(
                &g,
                &tag("reciprocal backward"),
                &g.unary_backward(UnaryOp::Reciprocal, &x.g, &y.g).unwrap(),
                &cpu.unary_backward(UnaryOp::Reciprocal, &x.c, &y.c).unwrap(),
                TOL,
            );
        }
    }
}
