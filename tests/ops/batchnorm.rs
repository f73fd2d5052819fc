//! BatchNorm2d (train with running statistics, eval, backward): backward against finite
//! differences, running statistics and eval by hand, bad input; on the GPU, odd shapes against
//! the CPU twin, the splitting paths, and the refusals word for word.

use crate::common::*;
use nnlab::backend::*;
use nnlab::cpu::CpuBackend;
use nnlab::gpu::GpuBackend;

// ---------------------------------------------------------------- every backend

backend_test! {
    fn batchnorm_backward_matches_finite_differences(b) {
        let (n, c, h, w) = (3, 2, 3, 2);
        let xs = [n, c, h, w];
        let inputs = vec![
            rnd(n * c * h * w, 500)
                .iter()
                .map(|v| 2.0 * v + 0.5)
                .collect::<Vec<f32>>(),
            vec![1.3, -0.7],
            vec![0.2, 0.4],
        ];
        let eps = 1e-5;
        let f = |ins: &[Vec<f32>]| {
            // fresh running stats every call: the forward output does not depend on them
            let (rm, rv) = (b.zeros(&[c]).unwrap(), b.fill(&[c], 1.0).unwrap());
            b.v(&b.batchnorm2d_train(
                &b.t(&xs, &ins[0]),
                &b.t(&[c], &ins[1]),
                &b.t(&[c], &ins[2]),
                &rm,
                &rv,
                0.1,
                eps,
            )
            .unwrap()
            .0)
        };
        let (rm, rv) = (b.zeros(&[c]).unwrap(), b.fill(&[c], 1.0).unwrap());
        let x = b.t(&xs, &inputs[0]);
        let gamma = b.t(&[c], &inputs[1]);
        let (_, mean, invstd) = b
            .batchnorm2d_train(&x, &gamma, &b.t(&[c], &inputs[2]), &rm, &rv, 0.1, eps)
            .unwrap();
        let gy = rnd(n * c * h * w, 501);
        let (gx, gg, gb) = b
            .batchnorm2d_backward(&x, &b.t(&xs, &gy), &gamma, &mean, &invstd)
            .unwrap();
        fd_check("batchnorm2d x", &inputs, 0, &gy, &b.v(&gx), 1e-2, &f);
        fd_check("batchnorm2d gamma", &inputs, 1, &gy, &b.v(&gg), 1e-2, &f);
        fd_check("batchnorm2d beta", &inputs, 2, &gy, &b.v(&gb), 1e-2, &f);
    }
}

backend_test! {
    /// x (N=2, C=2, 1x2): channel 0 holds 1, 2 | 3, 4 -> mean 2.5, biased var (2.25+0.25+0.25+2.25)/4
    /// = 1.25, unbiased 5/3; channel 1 holds 0, 0 | 0, 4 -> mean 1, biased var (1+1+1+9)/4 = 3,
    /// unbiased 4. With momentum 0.1 from running (0, 1): mean 0.25 / 0.1, var 0.9 + 0.1*5/3 and
    /// 0.9 + 0.4 = 1.3. Eval then normalises with those running statistics.
    fn batchnorm_running_stats_and_eval(b) {
        let x = b.t(&[2, 2, 1, 2], &[1.0, 2.0, 0.0, 0.0, 3.0, 4.0, 0.0, 4.0]);
        let (gamma, beta) = (b.t(&[2], &[1.0, 2.0]), b.t(&[2], &[0.0, -1.0]));
        let (rm, rv) = (b.zeros(&[2]).unwrap(), b.fill(&[2], 1.0).unwrap());
        let (y, mean, invstd) = b
            .batchnorm2d_train(&x, &gamma, &beta, &rm, &rv, 0.1, 0.0)
            .unwrap();
        assert_close("bn mean", &b.v(&mean), &[2.5, 1.0], 1e-7);
        assert_close(
            "bn invstd",
            &b.v(&invstd),
            &[1.0 / 1.25f32.sqrt(), 1.0 / 3f32.sqrt()],
            1e-6,
        );
        assert_close("bn running_mean", &b.v(&rm), &[0.25, 0.1], 1e-7);
        assert_close(
            "bn running_var",
            &b.v(&rv),
            &[0.9 + 0.1 * 5.0 / 3.0, 1.3],
            1e-6,
        );
        // channel 0 normalised: (x - 2.5) / sqrt(1.25); channel 1: 2 (x - 1) / sqrt 3 - 1
        let s0 = 1.25f32.sqrt();
        let s1 = 3f32.sqrt();
        let want = [
            -1.5 / s0,
            -0.5 / s0,
            -2.0 / s1 - 1.0,
            -2.0 / s1 - 1.0,
            0.5 / s0,
            1.5 / s0,
            -2.0 / s1 - 1.0,
            6.0 / s1 - 1.0,
        ];
        assert_close("bn train y", &b.v(&y), &want, 1e-6);
        // eval: (x - running_mean) / sqrt(running_var + eps) * gamma + beta
        let eps = 1e-5f32;
        let ye = b.v(&b
            .batchnorm2d_eval(&x, &gamma, &beta, &rm, &rv, eps)
            .unwrap());
        let (rmv, rvv) = (b.v(&rm), b.v(&rv));
        let xv = b.v(&x);
        let want: Vec<f32> = (0..8)
            .map(|i| {
                let ch = (i / 2) % 2;
                (xv[i] - rmv[ch]) / (rvv[ch] + eps).sqrt() * [1.0, 2.0][ch] + [0.0, -1.0][ch]
            })
            .collect();
        assert_close("bn eval", &ye, &want, 1e-6);
        // one value per channel cannot train; wrong parameter shapes are refused
        is_err_with(
            b.batchnorm2d_train(
                &b.t(&[1, 2, 1, 1], &[1.0, 2.0]),
                &gamma,
                &beta,
                &rm,
                &rv,
                0.1,
                1e-5,
            ),
            "more than one value",
        );
        is_err_with(
            b.batchnorm2d_eval(&x, &b.t(&[3], &[1.0; 3]), &beta, &rm, &rv, 1e-5),
            "gamma",
        );
        is_err_with(
            b.batchnorm2d_train(&x, &gamma, &beta, &rm, &rm, 0.1, 1e-5),
            "different tensors",
        );
    }
}

backend_test! {
    /// Aliased running statistics (with each other or with beta), parameters of the wrong shape and
    /// one value per channel are refused; a proper call is accepted.
    fn bad_input_is_an_error(b) {
        let a = b.t(&[2, 3], &[0.0; 6]);
        let one = b.t(&[1], &[1.0]);
        assert!(b.batchnorm2d_eval(&a, &one, &one, &one, &one, 1e-5).is_err());
        let x1 = b.t(&[1, 1, 1, 1], &[2.0]); // one value per channel: no batch variance
        let (rm, rv) = (b.zeros(&[1]).unwrap(), b.fill(&[1], 1.0).unwrap());
        assert!(b.batchnorm2d_train(&x1, &one, &one, &rm, &rv, 0.1, 1e-5).is_err());
        let x2 = b.t(&[2, 1, 1, 1], &[2.0, 3.0]);
        // running stats alias
        assert!(b.batchnorm2d_train(&x2, &one, &one, &rm, &rm, 0.1, 1e-5).is_err());
        // beta aliases running_var
        assert!(b.batchnorm2d_train(&x2, &one, &rv, &rm, &rv, 0.1, 1e-5).is_err());
        assert!(b.batchnorm2d_train(&x2, &one, &one, &rm, &rv, 0.1, 1e-5).is_ok());
    }
}

// ---------------------------------------------------------------- the GPU against its CPU twin

/// BatchNorm2d train (y, mean, invstd, running stats), eval and backward on both backends.
fn batchnorm_case(g: &GpuBackend, shape: &[usize], seed: u64, tol: f32) {
    let cpu = CpuBackend::new();
    let c = shape[1];
    let n = numel(shape);
    let x = pair(g, shape, &rnd_in(n, seed, -2.0, 3.0));
    let gy = pair(g, shape, &rnd_in(n, seed + 1, -1.0, 1.0));
    let gamma = pair(g, &[c], &rnd_in(c, seed + 2, 0.5, 1.5));
    let beta = pair(g, &[c], &rnd_in(c, seed + 3, -0.5, 0.5));
    let rm = pair(g, &[c], &rnd_in(c, seed + 4, -0.1, 0.1));
    let rv = pair(g, &[c], &rnd_in(c, seed + 5, 0.9, 1.1));
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
fn gpu_matches_cpu() {
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

/// With a 1 MiB binding limit and 64 workgroups per dimension, ops on tensors of a few MiB
/// split into chunks and dispatches and still give the CPU result.
#[test]
fn gpu_splits_under_low_limits() {
    let (g, shape) = (small_gpu(), SPLIT);
    batchnorm_case(&g, &shape, 204, 2e-5);
}

/// Both backends refuse the same bad input with the same words: the rules live once in
/// `backend/` (batchnorm.rs).
#[test]
fn refusals_are_word_for_word_the_same() {
    same_refusals(7, |be, case| {
        let t = |s: &[usize]| be.fill(s, 1.0).unwrap();
        let (x, one) = (t(&[2, 1, 5, 5]), t(&[1]));
        let (rm, rv) = (t(&[1]), t(&[1]));
        match case {
            0 => be
                .batchnorm2d_eval(&x, &one, &one, &one, &t(&[2]), 1e-5)
                .map(|_| ()),
            1 => be
                .batchnorm2d_train(&t(&[1, 1, 1, 1]), &one, &one, &rm, &rv, 0.1, 1e-5)
                .map(|_| ()),
            2 => be
                .batchnorm2d_train(&x, &one, &one, &rm, &rv, 0.1, -1.0)
                .map(|_| ()),
            3 => be
                .batchnorm2d_train(&x, &one, &one, &rm, &rm, 0.1, 1e-5)
                .map(|_| ()),
            4 => be
                .batchnorm2d_train(&x, &rv, &one, &rm, &rv, 0.1, 1e-5)
                .map(|_| ()),
            5 => be
                .batchnorm2d_backward(&x, &t(&[2, 1, 5, 4]), &one, &one, &one)
                .map(|_| ()),
            _ => be
                .batchnorm2d_eval(&t(&[2, 5, 5]), &one, &one, &one, &one, 1e-5)
                .map(|_| ()),
        }
    });
}
