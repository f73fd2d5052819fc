//! Optimizers (SGD with momentum and weight decay, Adam with bias correction), in place:
//! steps worked out by hand, bad input; on the GPU, several steps from the same state against
//! the CPU twin, and the splitting paths.

use crate::common::*;
use nnlab::backend::*;
use nnlab::cpu::CpuBackend;
use nnlab::gpu::GpuBackend;

// ---------------------------------------------------------------- every backend

backend_test! {
    fn sgd_and_adam_match_hand_computation(b) {
        // SGD, lr 0.1, momentum 0.9, wd 0.01, p = 1, g = 0.5: g' = 0.51; step 1 v = 0.51, p = 0.949;
        // step 2 g' = 0.5 + 0.00949 = 0.50949, v = 0.459 + 0.50949 = 0.96849, p = 0.949 - 0.096849
        let (p, g, vel) = (b.t(&[1], &[1.0]), b.t(&[1], &[0.5]), b.zeros(&[1]).unwrap());
        let hp = SgdParams {
            lr: 0.1,
            momentum: 0.9,
            weight_decay: 0.01,
        };
        b.sgd_step(&p, &g, &vel, hp).unwrap();
        assert_close("sgd step 1", &b.v(&p), &[0.949], 1e-6);
        b.sgd_step(&p, &g, &vel, hp).unwrap();
        assert_close("sgd step 2 v", &b.v(&vel), &[0.96849], 1e-6);
        assert_close("sgd step 2 p", &b.v(&p), &[0.949 - 0.096849], 1e-6);
        // Adam: at step 1 the bias-corrected update is lr * g / (|g| + eps) = lr * sign(g) (about)
        let (p, g, m, vv) = (
            b.t(&[2], &[1.0, -1.0]),
            b.t(&[2], &[0.3, -2.0]),
            b.zeros(&[2]).unwrap(),
            b.zeros(&[2]).unwrap(),
        );
        let hp = AdamParams {
            lr: 0.01,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay: 0.0,
            step: 1,
        };
        b.adam_step(&p, &g, &m, &vv, hp).unwrap();
        assert_close("adam step 1", &b.v(&p), &[0.99, -0.99], 1e-6);
        assert_close("adam m", &b.v(&m), &[0.03, -0.2], 1e-6);
        assert_close("adam v", &b.v(&vv), &[0.00009, 0.004], 1e-6);
        // step 2 with g = 0.3 again (first element): m = 0.9*0.03 + 0.03 = 0.057, v = 0.999*9e-5 + 9e-5
        // = 1.7991e-4; mhat = 0.057/0.19 = 0.3, vhat = 1.7991e-4/0.001999 = 0.09 -> update lr * 0.3/0.3
        b.adam_step(&p, &g, &m, &vv, AdamParams { step: 2, ..hp })
            .unwrap();
        assert_close("adam step 2", &b.v(&p)[..1], &[0.98], 1e-6);
        // weight decay enters the gradient: p = 2, g = 0, wd 0.5 -> g' = 1, step-1 update lr
        let (p, g, m, vv) = (
            b.t(&[1], &[2.0]),
            b.t(&[1], &[0.0]),
            b.zeros(&[1]).unwrap(),
            b.zeros(&[1]).unwrap(),
        );
        b.adam_step(
            &p,
            &g,
            &m,
            &vv,
            AdamParams {
                weight_decay: 0.5,
                ..hp
            },
        )
        .unwrap();
        assert_close("adam wd", &b.v(&p), &[1.99], 1e-6);
        // bad input
        is_err_with(
            b.adam_step(&p, &g, &m, &vv, AdamParams { step: 0, ..hp }),
            "step",
        );
        is_err_with(b.adam_step(&p, &g, &m, &m, hp), "different tensors");
        is_err_with(
            b.sgd_step(
                &p,
                &b.t(&[2], &[0.0, 0.0]),
                &vel,
                SgdParams {
                    lr: 0.1,
                    momentum: 0.0,
                    weight_decay: 0.0,
                },
            ),
            "shapes differ",
        );
    }
}

backend_test! {
    /// A step 0, a gradient or state that aliases another tensor, and mismatched shapes are refused.
    fn bad_input_is_an_error(b) {
        let a = b.t(&[2, 3], &[0.0; 6]);
        let a32 = b.t(&[3, 2], &[0.0; 6]);
        let sgd = |momentum| SgdParams {
            lr: 0.1,
            momentum,
            weight_decay: 0.0,
        };
        assert!(b.sgd_step(&a, &a32, &a, sgd(0.0)).is_err());
        let adam = AdamParams {
            lr: 0.1,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay: 0.0,
            step: 0,
        };
        let (m, v) = (b.zeros(&[2, 3]).unwrap(), b.zeros(&[2, 3]).unwrap());
        let g = a32.reshape(&[2, 3]).unwrap();
        assert!(b.adam_step(&a, &a32, &m, &v, adam).is_err()); // step 0, gradient of another shape
    assert!(b.adam_step(&a, &g, &m, &v, adam).is_err()); // step 0
        let adam = AdamParams { step: 1, ..adam };
        assert!(b.adam_step(&a, &a, &m, &v, adam).is_err()); // gradient aliases the parameter
        assert!(b.adam_step(&a, &g, &m, &m, adam).is_err()); // m aliases v
        assert!(b.sgd_step(&a, &g, &a, sgd(0.9)).is_err()); // velocity aliases the parameter
    }
}

// ---------------------------------------------------------------- the GPU against its CPU twin

/// `steps` optimizer steps on both backends from the same state; compare every tensor.
fn optim_case(g: &GpuBackend, n: usize, steps: u32, tol: f32) {
    let cpu = CpuBackend::new();
    let p0 = rnd_in(n, 90, -1.0, 1.0);
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
        let grad = pair(g, &[n], &rnd_in(n, 100 + step as u64, -1.0, 1.0));
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
fn gpu_matches_cpu() {
    let g = gpu();
    for n in [1, 255, 1000, 4097] {
        optim_case(&g, n, 5, TOL);
    }
}

/// With a 1 MiB binding limit and 64 workgroups per dimension, ops on tensors of a few MiB
/// split into chunks and dispatches and still give the CPU result.
#[test]
fn gpu_splits_under_low_limits() {
    let g = small_gpu();
    optim_case(&g, 700_001, 2, TOL);
}

/// A weight large enough that the CPU spreads Adam over its threads (`cpu/optim.rs`, chunks
/// of 65536 values) is updated value for value as each value alone is, bit for bit.
#[test]
fn cpu_adam_on_a_large_weight_equals_the_same_step_per_value() {
    let b = CpuBackend::new();
    let n = 200_003;
    let (p0, g0) = (rnd(n, 71), rnd(n, 72));
    let hp = AdamParams {
        lr: 0.01,
        beta1: 0.5,
        beta2: 0.999,
        eps: 1e-8,
        weight_decay: 0.01,
        step: 1,
    };
    let state = |v: &[f32]| b.upload(&[v.len()], v).unwrap();
    let (p, g, m, v) = (
        state(&p0),
        state(&g0),
        b.zeros(&[n]).unwrap(),
        b.zeros(&[n]).unwrap(),
    );
    for step in 1..=2 {
        b.adam_step(&p, &g, &m, &v, AdamParams { step, ..hp })
            .unwrap();
    }
    let got = [&p, &m, &v].map(|t| read_blocking(&b, t).unwrap());
    for i in (0..n).step_by(9973).chain([n - 1]) {
        let (q, gg, mm, vv) = (
            state(&p0[i..=i]),
            state(&g0[i..=i]),
            b.zeros(&[1]).unwrap(),
            b.zeros(&[1]).unwrap(),
        );
        for step in 1..=2 {
            b.adam_step(&q, &gg, &mm, &vv, AdamParams { step, ..hp })
                .unwrap();
        }
        for (k, t) in [&q, &mm, &vv].into_iter().enumerate() {
            assert_eq!(
                got[k][i],
                read_blocking(&b, t).unwrap()[0],
                "value {i}, state {k}"
            );
        }
    }
}
