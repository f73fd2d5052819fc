//! Losses (MSE, L1, BCE with logits, softmax cross-entropy, least squares) and their backward:
//! values by hand, stability for large logits, backward against finite differences, bad input;
//! on the GPU, every loss over odd shapes against the CPU twin, and the splitting paths.

use crate::common::*;
use crate::elementwise::SHAPES;
use nnlab::backend::*;
use nnlab::cpu::CpuBackend;
use nnlab::rng;

// ---------------------------------------------------------------- every backend

backend_test! {
    fn losses_backward_match_finite_differences(b) {
        let shape = [4, 5];
        let kinds = [
            LossKind::Mse,
            LossKind::L1,
            LossKind::BceWithLogits,
            LossKind::SoftmaxCrossEntropy,
            LossKind::LeastSquares,
        ];
        for (k, kind) in kinds.into_iter().enumerate() {
            let seed = 400 + 10 * k as u64;
            let pred: Vec<f32> = rnd(20, seed).iter().map(|v| 2.0 * v).collect();
            let target: Vec<f32> = match kind {
                LossKind::BceWithLogits => rng::uniform_vec(20, 0.0, 1.0, seed + 1),
                LossKind::SoftmaxCrossEntropy => {
                    // each row a distribution
                    let r = rng::uniform_vec(20, 0.1, 1.0, seed + 1);
                    r.chunks(5)
                        .flat_map(|row| {
                            let s: f32 = row.iter().sum();
                            row.iter().map(move |v| v / s).collect::<Vec<_>>()
                        })
                        .collect()
                }
                // L1 has a kink at pred == target: keep them >= 0.1 apart
                LossKind::L1 => pred
                    .iter()
                    .zip(rnd_away(20, seed + 1, 0.1))
                    .map(|(p, d)| p + d)
                    .collect(),
                _ => rnd(20, seed + 1),
            };
            let gloss = 0.7f32;
            let tt = b.t(&shape, &target);
            let f = |ins: &[Vec<f32>]| b.v(&b.loss(kind, &b.t(&shape, &ins[0]), &tt).unwrap());
            let g = b.v(&b
                .loss_backward(kind, &b.t(&shape, &pred), &tt, &b.t(&[1], &[gloss]))
                .unwrap());
            fd_check(
                &format!("loss {kind:?}"),
                &[pred],
                0,
                &[gloss],
                &g,
                1e-2,
                &f,
            );
        }
    }
}

backend_test! {
    /// Loss values worked out by hand on tiny inputs.
    fn loss_values(b) {
        let p = b.t(&[1, 4], &[0.0, 1.0, 2.0, 3.0]);
        let q = b.t(&[1, 4], &[1.0, 1.0, 0.0, 3.0]);
        // differences -1, 0, 2, 0: squares 1 + 0 + 4 + 0 = 5 over 4 elements
        let l = |k| b.v(&b.loss(k, &p, &q).unwrap())[0];
        assert_eq!(l(LossKind::Mse), 1.25);
        assert_eq!(l(LossKind::LeastSquares), 0.625);
        assert_eq!(l(LossKind::L1), 0.75); // (1 + 0 + 2 + 0) / 4
                                           // BCE with logit 0 and any target: log 2
        let z = b.t(&[2], &[0.0, 0.0]);
        assert_close(
            "bce",
            &b.v(&b
                .loss(LossKind::BceWithLogits, &z, &b.t(&[2], &[0.0, 1.0]))
                .unwrap()),
            &[std::f32::consts::LN_2],
            1e-6,
        );
        // softmax CE of equal logits over 4 classes with a one-hot target: log 4
        let ce = b.v(&b
            .loss(
                LossKind::SoftmaxCrossEntropy,
                &b.t(&[1, 4], &[3.0; 4]),
                &b.t(&[1, 4], &[0.0, 0.0, 1.0, 0.0]),
            )
            .unwrap());
        assert_close("softmax ce", &ce, &[4f32.ln()], 1e-6);
        // stable for large logits: BCE(100, 0) = 100, BCE(-100, 1) = 100
        assert_close(
            "bce big",
            &b.v(&b
                .loss(
                    LossKind::BceWithLogits,
                    &b.t(&[2], &[100.0, -100.0]),
                    &b.t(&[2], &[0.0, 1.0]),
                )
                .unwrap()),
            &[100.0],
            1e-6,
        );
    }
}

backend_test! {
    /// A target of another shape and a gradient scale that is not one element are refused.
    fn bad_input_is_an_error(b) {
        let a = b.t(&[2, 3], &rnd(6, 1));
        is_err_with(b.loss(LossKind::Mse, &a, &b.t(&[6], &rnd(6, 1))), "shapes differ");
        is_err_with(b.loss(LossKind::Mse, &a, &b.t(&[3, 2], &rnd(6, 1))), "shapes differ");
        is_err_with(
            b.loss_backward(LossKind::Mse, &a, &a, &b.t(&[2], &[1.0, 1.0])),
            "one element",
        );
        assert!(b.loss_backward(LossKind::Mse, &a, &a, &a).is_err());
    }
}

// ---------------------------------------------------------------- the GPU against its CPU twin

/// Targets suited to each loss: anything for regression losses, [0, 1] for BCE, a
/// distribution per row for softmax cross-entropy.
fn targets(kind: LossKind, shape: &[usize], seed: u64) -> Vec<f32> {
    let n = numel(shape);
    match kind {
        LossKind::BceWithLogits => rnd_in(n, seed, 0.0, 1.0),
        LossKind::SoftmaxCrossEntropy => {
            let d = *shape.last().unwrap();
            let mut t = rnd_in(n, seed, 0.0, 1.0);
            for row in t.chunks_mut(d) {
                let s: f32 = row.iter().sum();
                row.iter_mut().for_each(|v| *v /= s);
            }
            t
        }
        _ => rnd_in(n, seed, -2.0, 2.0),
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
fn gpu_matches_cpu() {
    let g = gpu();
    let cpu = CpuBackend::new();
    let gloss = pair(&g, &[1], &[0.7]);
    for (k, &shape) in SHAPES.iter().enumerate() {
        let n = numel(shape);
        for &kind in LOSSES {
            let p = pair(&g, shape, &rnd_in(n, 50 + k as u64, -4.0, 4.0));
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

/// With a 1 MiB binding limit and 64 workgroups per dimension, ops on tensors of a few MiB
/// split into chunks and dispatches and still give the CPU result.
#[test]
fn gpu_splits_under_low_limits() {
    let (g, cpu) = (small_gpu(), CpuBackend::new());
    let n = numel(&SPLIT);
    let rows = pair(
        &g,
        &[n / 1009 + 1, 1009],
        &rnd_in((n / 1009 + 1) * 1009, 202, -5.0, 5.0),
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
    let logits = pair(&g, &[30001, 10], &rnd_in(300010, 206, -5.0, 5.0));
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
}
