//! Reductions (sum, mean, bias_grad) and softmax: values by hand, their gradients against
//! finite differences, stability for huge logits, bad input; on the GPU, odd shapes and several
//! partial-sum workgroups against the CPU twin, and the splitting paths.

use crate::common::*;
use crate::elementwise::SHAPES;
use nnlab::backend::*;
use nnlab::cpu::CpuBackend;

// ---------------------------------------------------------------- every backend

backend_test! {
    fn sum_mean_softmax_values_and_gradients(b) {
        let x = b.t(&[2, 3], &arange(6));
        assert_eq!(b.v(&b.sum(&x).unwrap()), [15.0]);
        assert_eq!(b.v(&b.mean(&x).unwrap()), [2.5]);
        assert_eq!(b.sum(&x).unwrap().shape(), &[1]);
        // their gradients (what the tape fills in): ones and 1/n
        let xs = rnd(6, 9);
        fd_check("sum", &[xs.clone()], 0, &[1.0], &[1.0; 6], 0.1, &|ins| {
            b.v(&b.sum(&b.t(&[2, 3], &ins[0])).unwrap())
        });
        fd_check("mean", &[xs], 0, &[1.0], &[1.0 / 6.0; 6], 0.1, &|ins| {
            b.v(&b.mean(&b.t(&[2, 3], &ins[0])).unwrap())
        });
        // softmax rows: exp(x_k) / sum exp, e.g. [0, 1, 2] -> [1, e, e^2] / (1 + e + e^2)
        let s = b.v(&b.softmax(&x).unwrap());
        let e = std::f32::consts::E;
        let d = 1.0 + e + e * e;
        assert_close(
            "softmax",
            &s,
            &[1.0 / d, e / d, e * e / d, 1.0 / d, e / d, e * e / d],
            1e-6,
        );
        // numerically stable: huge logits do not overflow
        let big = b.v(&b.softmax(&b.t(&[1, 3], &[1000.0, 1000.0, -1000.0])).unwrap());
        assert_close("softmax big", &big, &[0.5, 0.5, 0.0], 1e-6);
        // softmax's Jacobian-vector product (y (gy - sum gy y)) against finite differences
        let xs = rnd(12, 10).iter().map(|v| 3.0 * v).collect::<Vec<f32>>();
        let gy = rnd(12, 11);
        let y = b.v(&b.softmax(&b.t(&[3, 4], &xs)).unwrap());
        let mut jvp = vec![0.0f32; 12];
        for r in 0..3 {
            let dot: f32 = (0..4).map(|k| gy[r * 4 + k] * y[r * 4 + k]).sum();
            for k in 0..4 {
                jvp[r * 4 + k] = y[r * 4 + k] * (gy[r * 4 + k] - dot);
            }
        }
        fd_check("softmax", &[xs], 0, &gy, &jvp, 1e-2, &|ins| {
            b.v(&b.softmax(&b.t(&[3, 4], &ins[0])).unwrap())
        });
    }
}

backend_test! {
    /// Reductions need a batch dimension for bias_grad; softmax of one element is fine.
    fn bad_input_is_an_error(b) {
        is_err_with(b.bias_grad(&b.t(&[6], &rnd(6, 1))), "rank >= 2");
        assert!(b.bias_grad(&b.t(&[1], &[1.0])).is_err());
        assert_eq!(b.v(&b.softmax(&b.t(&[1], &[1.0])).unwrap()), [1.0]);
    }
}

// ---------------------------------------------------------------- the GPU against its CPU twin

#[test]
fn gpu_matches_cpu() {
    let g = gpu();
    let cpu = CpuBackend::new();
    let mut shapes: Vec<&[usize]> = SHAPES.to_vec();
    shapes.push(&[3, 70001]); // several partial-sum workgroups
    for (k, &shape) in shapes.iter().enumerate() {
        let n = numel(shape);
        let x = pair(&g, shape, &rnd_in(n, 40 + k as u64, -3.0, 3.0));
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

/// With a 1 MiB binding limit and 64 workgroups per dimension, ops on tensors of a few MiB
/// split into chunks and dispatches and still give the CPU result.
#[test]
fn gpu_splits_under_low_limits() {
    let (g, cpu) = (small_gpu(), CpuBackend::new());
    let (shape, n) = (SPLIT, numel(&SPLIT));
    let x = pair(&g, &shape, &rnd_in(n, 200, -3.0, 3.0));
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
        &rnd_in((n / 1009 + 1) * 1009, 202, -5.0, 5.0),
    );
    same(
        &g,
        "split softmax",
        &g.softmax(&rows.g).unwrap(),
        &cpu.softmax(&rows.c).unwrap(),
        TOL,
    );
    // many small rows / many channels: more than 64 * 64 workgroups, so several dispatches
    let small_rows = pair(&g, &[70001, 3], &rnd_in(210003, 205, -5.0, 5.0));
    same(
        &g,
        "split softmax [70001, 3]",
        &g.softmax(&small_rows.g).unwrap(),
        &cpu.softmax(&small_rows.c).unwrap(),
        TOL,
    );
    let wide = pair(&g, &[7, 5003], &rnd_in(7 * 5003, 208, -1.0, 1.0));
    same(
        &g,
        "split bias_grad [7, 5003]",
        &g.bias_grad(&wide.g).unwrap(),
        &cpu.bias_grad(&wide.c).unwrap(),
        TOL,
    );
}
