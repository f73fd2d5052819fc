//! BatchNorm2d (train with running statistics, eval, backward) and BatchNorm followed by a ReLU
//! (one op each way): backward against finite differences, running statistics and eval by
//! hand, the fused ops against the unfused ones, bad input; on the GPU, odd shapes against the
//! CPU twin, the splitting paths, and the refusals word for word.

use crate::common::*;
use nnlab::backend::*;
use nnlab::cpu::CpuBackend;
use nnlab::gpu::GpuBackend;

// ---------------------------------------------------------------- every backend

/// batchnorm2d's backward (with a ReLU after it, fused, when `relu`) against finite
/// differences of its forward, with respect to x, gamma and beta (`inputs`, x shaped `xs`).
fn backward_matches_finite_differences(
    b: &dyn Backend,
    xs: [usize; 4],
    inputs: &[Vec<f32>],
    gy_seed: u64,
    relu: bool,
) {
    let (c, eps) = (xs[1], 1e-5);
    let up = |ins: &[Vec<f32>]| [b.t(&xs, &ins[0]), b.t(&[c], &ins[1]), b.t(&[c], &ins[2])];
    let forward = |ins: &[Vec<f32>]| {
        let [x, gamma, beta] = up(ins);
        // fresh running stats every call: the forward output does not depend on them
        let (rm, rv) = (b.zeros(&[c]).unwrap(), b.fill(&[c], 1.0).unwrap());
        let train = if relu {
            <dyn Backend>::batchnorm2d_relu_train
        } else {
            <dyn Backend>::batchnorm2d_train
        };
        train(b, &x, &gamma, &beta, &rm, &rv, 0.1, eps).unwrap()
    };
    let f = |ins: &[Vec<f32>]| b.v(&forward(ins).0);
    let (y, mean, invstd) = forward(inputs);
    let [x, gamma, beta] = up(inputs);
    let gy = rnd(numel(&xs), gy_seed);
    let gyt = b.t(&xs, &gy);
    let (gx, gg, gb) = if relu {
        b.batchnorm2d_relu_backward(&x, &y, &gyt, &gamma, &beta, &mean, &invstd)
    } else {
        b.batchnorm2d_backward(&x, &gyt, &gamma, &mean, &invstd)
    }
    .unwrap();
    let name = if relu {
        "batchnorm2d_relu"
    } else {
        "batchnorm2d"
    };
    for (k, (what, g)) in [("x", gx), ("gamma", gg), ("beta", gb)]
        .into_iter()
        .enumerate()
    {
        fd_check(
            &format!("{name} {what}"),
            inputs,
            k,
            &gy,
            &b.v(&g),
            1e-2,
            &f,
        );
    }
}

backend_test! {
    fn batchnorm_backward_matches_finite_differences(b) {
        let xs = [3, 2, 3, 2];
        let x: Vec<f32> = rnd(numel(&xs), 500).iter().map(|v| 2.0 * v + 0.5).collect();
        let inputs = [x, vec![1.3, -0.7], vec![0.2, 0.4]];
        backward_matches_finite_differences(b, xs, &inputs, 501, false);
    }
}

backend_test! {
    /// relu(batchnorm2d(x)) as one op: its backward against finite differences. No finite
    /// difference holds at the ReLU's kink, so x is a grid of 18 values per channel (spacing
    /// 0.3, scrambled over the samples and pixels) and beta puts every normalised value at
    /// least 0.05 from 0 (0.12 and 0.06 here), on both sides of it.
    fn batchnorm_relu_backward_matches_finite_differences(b) {
        let (n, c, h, w) = (3, 2, 3, 2);
        let grid: Vec<f32> = (0..n * c * h * w)
            .map(|k| {
                let (i, ch, p) = (k / (c * h * w), (k / (h * w)) % c, k % (h * w));
                let j = i * h * w + p;
                0.3 * ((j * 7) % 18) as f32 - 2.0 + 0.5 * ch as f32
            })
            .collect();
        let inputs = [grid, vec![1.3, -0.7], vec![0.5, -0.13]];
        // the normalised values before the ReLU (the unfused op): away from 0, both signs
        let (rm, rv) = (b.zeros(&[c]).unwrap(), b.fill(&[c], 1.0).unwrap());
        let [x, gamma, beta] = [(&[n, c, h, w][..], 0), (&[c], 1), (&[c], 2)]
            .map(|(s, k)| b.t(s, &inputs[k]));
        let z = b.v(&b.batchnorm2d_train(&x, &gamma, &beta, &rm, &rv, 0.1, 1e-5).unwrap().0);
        let nearest = z.iter().map(|v| v.abs()).fold(f32::INFINITY, f32::min);
        assert!(nearest >= 0.05, "an input lies {nearest} from the ReLU's kink");
        assert!(z.iter().any(|&v| v < 0.0) && z.iter().any(|&v| v > 0.0));
        backward_matches_finite_differences(b, [n, c, h, w], &inputs, 511, true);
    }
}

backend_test! {
    /// The fused BatchNorm + ReLU ops give what the unfused ops give (batchnorm2d_train then
    /// relu; relu's backward then batchnorm2d_backward), running statistics included, on
    /// tensors large enough that the CPU cuts their planes into several tasks.
    fn batchnorm_relu_equals_the_unfused_ops(b) {
        for (shape, seed) in [([3usize, 5, 7, 9], 520u64), ([5, 3, 70, 100], 530)] {
            let c = shape[1];
            let len = numel(&shape);
            let x = b.t(&shape, &rnd_in(len, seed, -2.0, 3.0));
            let gy = b.t(&shape, &rnd(len, seed + 1));
            let gamma = b.t(&[c], &rnd_in(c, seed + 2, -1.5, 1.5));
            let beta = b.t(&[c], &rnd_in(c, seed + 3, -0.5, 0.5));
            let running = || {
                let rm = b.t(&[c], &rnd_in(c, seed + 4, -0.1, 0.1));
                (rm, b.t(&[c], &rnd_in(c, seed + 5, 0.9, 1.1)))
            };
            let tag = |what: &str| format!("batchnorm2d_relu {shape:?} {what}");
            let (frm, frv) = running();
            let (y, mean, invstd) = b
                .batchnorm2d_relu_train(&x, &gamma, &beta, &frm, &frv, 0.1, 1e-5)
                .unwrap();
            let (rm, rv) = running();
            let (z, m2, i2) = b
                .batchnorm2d_train(&x, &gamma, &beta, &rm, &rv, 0.1, 1e-5)
                .unwrap();
            let want_y = b.unary(UnaryOp::Relu, &z).unwrap();
            assert_close(&tag("y"), &b.v(&y), &b.v(&want_y), 1e-6);
            assert_close(&tag("mean"), &b.v(&mean), &b.v(&m2), 1e-7);
            assert_close(&tag("invstd"), &b.v(&invstd), &b.v(&i2), 1e-7);
            assert_close(&tag("running mean"), &b.v(&frm), &b.v(&rm), 1e-7);
            assert_close(&tag("running var"), &b.v(&frv), &b.v(&rv), 1e-7);
            let (gx, gg, gb) = b
                .batchnorm2d_relu_backward(&x, &y, &gy, &gamma, &beta, &mean, &invstd)
                .unwrap();
            let gz = b.unary_backward(UnaryOp::Relu, &want_y, &gy).unwrap();
            let (wx, wg, wb) = b.batchnorm2d_backward(&x, &gz, &gamma, &m2, &i2).unwrap();
            assert_close(&tag("gx"), &b.v(&gx), &b.v(&wx), 1e-5);
            assert_close(&tag("ggamma"), &b.v(&gg), &b.v(&wg), 1e-5);
            assert_close(&tag("gbeta"), &b.v(&gb), &b.v(&wb), 1e-5);
        }
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
    // BatchNorm + ReLU: the GPU's composition against the CPU's fused kernels
    let (gy_, gm, gi) = g
        .batchnorm2d_relu_train(&x.g, &gamma.g, &beta.g, &rm.g, &rv.g, 0.1, 1e-5)
        .unwrap();
    let (cy, cm, ci) = cpu
        .batchnorm2d_relu_train(&x.c, &gamma.c, &beta.c, &rm.c, &rv.c, 0.1, 1e-5)
        .unwrap();
    same(g, &tag("relu train y"), &gy_, &cy, tol);
    let (gx, gg, gb) = g
        .batchnorm2d_relu_backward(&x.g, &gy_, &gy.g, &gamma.g, &beta.g, &gm, &gi)
        .unwrap();
    let (cx, cg, cb) = cpu
        .batchnorm2d_relu_backward(&x.c, &cy, &gy.c, &gamma.c, &beta.c, &cm, &ci)
        .unwrap();
    same(g, &tag("relu backward gx"), &gx, &cx, tol);
    same(g, &tag("relu backward ggamma"), &gg, &cg, tol);
    same(g, &tag("relu backward gbeta"), &gb, &cb, tol);
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
    same_refusals(9, |be, case| {
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
            6 => be
                .batchnorm2d_relu_backward(&x, &x, &x, &one, &t(&[2]), &one, &one)
                .map(|_| ()),
            7 => be
                .batchnorm2d_relu_backward(&x, &t(&[2, 1, 5, 4]), &x, &one, &one, &one, &one)
                .map(|_| ()),
            _ => be
                .batchnorm2d_eval(&t(&[2, 5, 5]), &one, &one, &one, &one, 1e-5)
                .map(|_| ()),
        }
    });
}
