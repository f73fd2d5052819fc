//! The CPU backend proven on its own: every backward against central finite differences of the
//! CPU forward, golden values worked out by hand on arange-filled inputs, the lecture's
//! transposed-conv construction against the PyTorch-style op, BatchNorm running statistics,
//! optimizers, random numbers, and bad input refused with an `Error` (no panic).
//!
//! Finite differences: for input element i, D_i = sum_j gy_j (y_j(x + eps e_i) - y_j(x - eps e_i)) / (2 eps),
//! the per-output differences taken first and the sum accumulated in f64 (so cancellation in a
//! large total does not eat the precision). Error budget, for gradients of size O(1..10):
//! * rounding: each f32 output carries ~6e-8 |y| error, so D_i errs by about
//!   sqrt(#outputs touched) * 6e-8 * |y| * |gy| / eps: ~3e-5 with eps = 0.1 (used for linear
//!   ops, where central differences have no truncation error at all) and ~3e-4 worst case with
//!   eps = 1e-2 (nonlinear ops);
//! * truncation (nonlinear ops): eps^2 / 6 * |f'''| ~ 2e-5 for the smooth functions used here;
//!   inputs are kept >= 0.05 away from kinks (relu, abs, l1, clamp) so no difference straddles one.
//!
//! The tolerance |analytic - numeric| <= 2e-3 (1 + |numeric|) sits well above that budget and far
//! below the O(0.1..1) errors an indexing or sign bug produces. Run with --nocapture to see the
//! measured maxima.

#![allow(clippy::too_many_arguments, clippy::excessive_precision)]

use nnlab::backend::conv_arith::{flip_transpose_weight, lecture_transposed, stretch_and_pad};
use nnlab::backend::*;
use nnlab::cpu::CpuBackend;
use nnlab::rng;
use nnlab::{Error, Tensor};

const TOL: f64 = 2e-3;

fn be() -> CpuBackend {
    CpuBackend::new()
}
fn t(shape: &[usize], v: &[f32]) -> Tensor {
    be().upload(shape, v).unwrap()
}
fn v(x: &Tensor) -> Vec<f32> {
    read_blocking(&be(), x).unwrap()
}
fn arange(n: usize) -> Vec<f32> {
    (0..n).map(|i| i as f32).collect()
}
/// Uniform in [-1, 1), seeded.
fn rnd(n: usize, seed: u64) -> Vec<f32> {
    rng::uniform_vec(n, -1.0, 1.0, seed)
}
/// Random values kept at least `gap` away from zero (so no finite difference straddles a kink).
fn rnd_away(n: usize, seed: u64, gap: f32) -> Vec<f32> {
    rnd(n, seed)
        .into_iter()
        .map(|x| {
            if x.abs() < gap {
                x + 2.0 * gap * if x < 0.0 { -1.0 } else { 1.0 }
            } else {
                x
            }
        })
        .collect()
}

fn assert_close(name: &str, got: &[f32], want: &[f32], tol: f32) {
    assert_eq!(got.len(), want.len(), "{name}: lengths differ");
    let mut worst = 0.0f32;
    for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
        let e = (g - w).abs();
        assert!(
            e <= tol * (1.0 + w.abs()),
            "{name}: element {i}: got {g}, want {w}"
        );
        worst = worst.max(e);
    }
    println!("{name}: max abs err {worst:.3e}");
}

/// Central finite differences of sum(gy * f(inputs)) w.r.t. inputs[which], compared with
/// `analytic`; returns (max abs err, max rel err) and asserts the tolerance above.
fn fd_check(
    name: &str,
    inputs: &[Vec<f32>],
    which: usize,
    gy: &[f32],
    analytic: &[f32],
    eps: f32,
    f: &dyn Fn(&[Vec<f32>]) -> Vec<f32>,
) -> (f64, f64) {
    assert_eq!(
        analytic.len(),
        inputs[which].len(),
        "{name}: gradient has the wrong size"
    );
    let (mut max_abs, mut max_rel) = (0.0f64, 0.0f64);
    let mut xs = inputs.to_vec();
    for i in 0..inputs[which].len() {
        let x0 = inputs[which][i];
        xs[which][i] = x0 + eps;
        let yp = f(&xs);
        xs[which][i] = x0 - eps;
        let ym = f(&xs);
        xs[which][i] = x0;
        let d: f64 = gy
            .iter()
            .zip(yp.iter().zip(&ym))
            .map(|(&g, (&a, &b))| g as f64 * (a as f64 - b as f64))
            .sum::<f64>()
            / (2.0 * eps as f64);
        let a = analytic[i] as f64;
        let err = (a - d).abs();
        assert!(
            err <= TOL * (1.0 + d.abs()),
            "{name}: d/d{which}[{i}]: analytic {a}, finite difference {d}"
        );
        max_abs = max_abs.max(err);
        max_rel = max_rel.max(err / d.abs().max(1e-3));
    }
    println!(
        "{name} (input {which}): {} elements, max abs err {max_abs:.2e}, max rel err {max_rel:.2e}",
        inputs[which].len()
    );
    (max_abs, max_rel)
}

// ---------------------------------------------------------------- conv2d

fn conv_fd_case(
    n: usize,
    cin: usize,
    cout: usize,
    h: usize,
    w: usize,
    k: usize,
    stride: usize,
    padding: usize,
    dilation: usize,
    seed: u64,
) {
    let b = be();
    let p = Conv2dParams {
        stride,
        padding,
        dilation,
    };
    let xs = [n, cin, h, w];
    let ws = [cout, cin, k, k];
    let inputs = vec![
        rnd(n * cin * h * w, seed),
        rnd(cout * cin * k * k, seed + 1),
        rnd(cout, seed + 2),
    ];
    let f = |ins: &[Vec<f32>]| {
        v(&b.conv2d(
            &t(&xs, &ins[0]),
            &t(&ws, &ins[1]),
            Some(&t(&[cout], &ins[2])),
            p,
        )
        .unwrap())
    };
    let y = b
        .conv2d(
            &t(&xs, &inputs[0]),
            &t(&ws, &inputs[1]),
            Some(&t(&[cout], &inputs[2])),
            p,
        )
        .unwrap();
    let gy = rnd(y.numel(), seed + 3);
    let gyt = t(y.shape(), &gy);
    let gx = v(&b
        .conv2d_backward_input(&gyt, &t(&ws, &inputs[1]), &xs, p)
        .unwrap());
    let gw = v(&b
        .conv2d_backward_weight(&t(&xs, &inputs[0]), &gyt, &ws, p)
        .unwrap());
    let gb = v(&b.bias_grad(&gyt).unwrap());
    let name = format!("conv2d n{n} c{cin}->{cout} {h}x{w} k{k} s{stride} p{padding} d{dilation}");
    fd_check(&name, &inputs, 0, &gy, &gx, 0.1, &f);
    fd_check(&name, &inputs, 1, &gy, &gw, 0.1, &f);
    fd_check(&name, &inputs, 2, &gy, &gb, 0.1, &f);
}

#[test]
fn conv2d_backward_matches_finite_differences() {
    //            n cin cout h  w  k  s  p  d
    conv_fd_case(1, 2, 3, 7, 5, 3, 1, 0, 1, 10);
    conv_fd_case(3, 2, 3, 6, 7, 3, 2, 1, 1, 20);
    conv_fd_case(1, 3, 2, 9, 9, 3, 1, 2, 2, 30);
    conv_fd_case(3, 1, 2, 8, 5, 2, 2, 0, 2, 40);
    conv_fd_case(3, 2, 2, 5, 5, 1, 1, 0, 1, 50); // 1x1: the path without im2col
    conv_fd_case(1, 2, 3, 5, 6, 3, 2, 2, 1, 60);
    conv_fd_case(3, 3, 1, 7, 7, 5, 2, 1, 1, 70);
}

fn convt_fd_case(
    n: usize,
    cin: usize,
    cout: usize,
    h: usize,
    w: usize,
    k: usize,
    stride: usize,
    padding: usize,
    output_padding: usize,
    dilation: usize,
    seed: u64,
) {
    let b = be();
    let p = ConvTranspose2dParams {
        stride,
        padding,
        output_padding,
        dilation,
    };
    let xs = [n, cin, h, w];
    let ws = [cin, cout, k, k];
    let inputs = vec![
        rnd(n * cin * h * w, seed),
        rnd(cin * cout * k * k, seed + 1),
        rnd(cout, seed + 2),
    ];
    let f = |ins: &[Vec<f32>]| {
        v(&b.conv_transpose2d(
            &t(&xs, &ins[0]),
            &t(&ws, &ins[1]),
            Some(&t(&[cout], &ins[2])),
            p,
        )
        .unwrap())
    };
    let y = b
        .conv_transpose2d(
            &t(&xs, &inputs[0]),
            &t(&ws, &inputs[1]),
            Some(&t(&[cout], &inputs[2])),
            p,
        )
        .unwrap();
    // PyTorch's size rule
    let want = (h - 1) * stride + dilation * (k - 1) + output_padding + 1 - 2 * padding;
    assert_eq!(y.shape()[2], want);
    let gy = rnd(y.numel(), seed + 3);
    let gyt = t(y.shape(), &gy);
    let gx = v(&b
        .conv_transpose2d_backward_input(&gyt, &t(&ws, &inputs[1]), &xs, p)
        .unwrap());
    let gw = v(&b
        .conv_transpose2d_backward_weight(&t(&xs, &inputs[0]), &gyt, &ws, p)
        .unwrap());
    let gb = v(&b.bias_grad(&gyt).unwrap());
    let name = format!("conv_transpose2d n{n} c{cin}->{cout} {h}x{w} k{k} s{stride} p{padding} op{output_padding} d{dilation}");
    fd_check(&name, &inputs, 0, &gy, &gx, 0.1, &f);
    fd_check(&name, &inputs, 1, &gy, &gw, 0.1, &f);
    fd_check(&name, &inputs, 2, &gy, &gb, 0.1, &f);
}

#[test]
fn conv_transpose2d_backward_matches_finite_differences() {
    //             n cin cout h  w  k  s  p op d
    convt_fd_case(1, 2, 3, 3, 4, 3, 2, 1, 1, 1, 110);
    convt_fd_case(3, 3, 2, 4, 4, 3, 1, 0, 0, 1, 120);
    convt_fd_case(3, 2, 2, 3, 5, 4, 2, 1, 0, 1, 130);
    convt_fd_case(1, 2, 1, 4, 3, 3, 2, 2, 1, 2, 140);
    convt_fd_case(2, 1, 2, 3, 3, 3, 1, 1, 1, 2, 150); // output_padding >= stride (allowed when < dilation)
    convt_fd_case(3, 2, 3, 5, 5, 1, 1, 0, 0, 1, 160); // 1x1
}

// ---------------------------------------------------------------- golden values by hand

/// The lecture's example: input 6x6 arange (x[r][c] = 6r + c), 3x3 filter of ones, stride 2,
/// padding 1 -> 3x3. Output (oy, ox) sums the window rows R = {2oy-1 .. 2oy+1} and columns C
/// clipped to [0, 5]: R0 = {0,1}, R1 = {1,2,3}, R2 = {3,4,5}, so
/// y = |C| * sum_{r in R} 6r + |R| * sum_{c in C} c, e.g. y(0,0) = 2*6 + 2*1 = 14,
/// y(1,1) = 3*36 + 3*6 = 126, y(2,2) = 3*72 + 3*12 = 252. Bias 0.5 is added to all.
#[test]
fn golden_lecture_example_conv() {
    let b = be();
    let x = t(&[1, 1, 6, 6], &arange(36));
    let w = t(&[1, 1, 3, 3], &[1.0; 9]);
    let bias = t(&[1], &[0.5]);
    let y = b
        .conv2d(
            &x,
            &w,
            Some(&bias),
            Conv2dParams {
                stride: 2,
                padding: 1,
                dilation: 1,
            },
        )
        .unwrap();
    assert_eq!(y.shape(), &[1, 1, 3, 3]);
    let want = [14.0, 30.0, 42.0, 75.0, 126.0, 144.0, 147.0, 234.0, 252.0].map(|e: f32| e + 0.5);
    assert_eq!(v(&y), want);
}

/// Its transposed conv back to 6x6 (kernel 3, stride 2, padding 1, a' = output_padding 1):
/// x 3x3 arange (x[r][c] = 3r + c), filter of ones. Output row Y receives input rows r with
/// Y = 2r - 1 + ky, ky in 0..3: R_Y = {0},{0,1},{1},{1,2},{2},{2} for Y = 0..5 (Y = 5 is the
/// output_padding row, reached only by ky = 2 of r = 2... and r = 3 which does not exist).
/// y(Y, X) = |C_X| S_Y + |R_Y| T_X with S = sum 3r = [0,3,3,9,6,6], T = sum c = [0,1,1,3,2,2],
/// |R| = |C| = [1,2,1,2,1,1].
#[test]
fn golden_lecture_example_transposed_conv() {
    let b = be();
    let lt = lecture_transposed(6, 3, 2, 1).unwrap();
    assert_eq!((lt.o, lt.a_t, lt.o_t), (3, 1, 6));
    let x = t(&[1, 1, 3, 3], &arange(9));
    let w = t(&[1, 1, 3, 3], &[1.0; 9]);
    let y = b
        .conv_transpose2d(&x, &w, None, lt.pytorch_params(2, 1))
        .unwrap();
    assert_eq!(y.shape(), &[1, 1, 6, 6]);
    #[rustfmt::skip]
    let want = [
        0.0, 1.0, 1.0, 3.0, 2.0, 2.0,
        3.0, 8.0, 5.0, 12.0, 7.0, 7.0,
        3.0, 7.0, 4.0, 9.0, 5.0, 5.0,
        9.0, 20.0, 11.0, 24.0, 13.0, 13.0,
        6.0, 13.0, 7.0, 15.0, 8.0, 8.0,
        6.0, 13.0, 7.0, 15.0, 8.0, 8.0,
    ];
    assert_eq!(v(&y), want);
}

/// "valid" (p = 0): 4x4 arange input (x[r][c] = 4r + c), 3x3 arange filter (w[ky][kx] = 3ky + kx).
/// y(oy, ox) = sum w * x[oy+ky][ox+kx] = sum w (4ky + kx) + (4oy + ox) sum w, and
/// sum w (4ky + kx) = sum (3ky + kx)(4ky + kx) = 12*3*sum ky^2 + 7 (sum ky)(sum kx) + 3 sum kx^2
/// = 180 + 63 + 15 = 258 (sums over 0..3: sum k = 3, sum k^2 = 5), sum w = 36:
/// y = 258 + 36 (4oy + ox) = [[258, 294], [402, 438]]. The arange filter catches a flipped kernel.
#[test]
fn golden_valid_padding() {
    let y = be()
        .conv2d(
            &t(&[1, 1, 4, 4], &arange(16)),
            &t(&[1, 1, 3, 3], &arange(9)),
            None,
            Conv2dParams::default(),
        )
        .unwrap();
    assert_eq!(y.shape(), &[1, 1, 2, 2]);
    assert_eq!(v(&y), [258.0, 294.0, 402.0, 438.0]);
}

/// "same" (p = 1): 3x3 arange input (x[r][c] = 3r + c), filter of ones: each output is the sum of
/// its clipped 3x3 neighbourhood, y = |C| sum_{r in R} 3r + |R| sum_{c in C} c with
/// R/C = {0,1}, {0,1,2}, {1,2}: e.g. y(0,0) = 0+1+3+4 = 8, y(1,1) = 36, y(2,2) = 4+5+7+8 = 24.
#[test]
fn golden_same_padding() {
    let y = be()
        .conv2d(
            &t(&[1, 1, 3, 3], &arange(9)),
            &t(&[1, 1, 3, 3], &[1.0; 9]),
            None,
            Conv2dParams {
                padding: 1,
                ..Default::default()
            },
        )
        .unwrap();
    assert_eq!(y.shape(), &[1, 1, 3, 3]);
    assert_eq!(v(&y), [8.0, 15.0, 12.0, 21.0, 36.0, 27.0, 20.0, 33.0, 24.0]);
}

/// "full" (p = 2): same input and filter, 5x5 output. Row sets R_oy = {0},{0,1},{0,1,2},{1,2},{2}
/// (sum 3r = 0,3,9,9,6; |R| = 1,2,3,2,1), columns alike (sum c = 0,1,3,3,2).
/// e.g. y(0,4) = x[0][2] = 2, y(3,3) = 4+5+7+8 = 24, y(4,4) = 8.
#[test]
fn golden_full_padding() {
    let y = be()
        .conv2d(
            &t(&[1, 1, 3, 3], &arange(9)),
            &t(&[1, 1, 3, 3], &[1.0; 9]),
            None,
            Conv2dParams {
                padding: 2,
                ..Default::default()
            },
        )
        .unwrap();
    assert_eq!(y.shape(), &[1, 1, 5, 5]);
    #[rustfmt::skip]
    let want = [
        0.0, 1.0, 3.0, 3.0, 2.0,
        3.0, 8.0, 15.0, 12.0, 7.0,
        9.0, 21.0, 36.0, 27.0, 15.0,
        9.0, 20.0, 33.0, 24.0, 13.0,
        6.0, 13.0, 21.0, 15.0, 8.0,
    ];
    assert_eq!(v(&y), want);
}

// ---------------------------------------------------------------- lecture construction == PyTorch-style op

#[test]
fn lecture_construction_equals_conv_transpose2d() {
    let b = be();
    let (n, cin, cout) = (2, 3, 2);
    let mut cases = 0;
    for &(i, m, s, p) in &[
        (6, 3, 2, 1),
        (5, 3, 2, 1),
        (7, 3, 2, 0),
        (8, 4, 2, 1),
        (9, 3, 3, 2),
        (5, 2, 1, 0),
        (10, 5, 3, 2),
        (4, 1, 1, 0),
        (7, 3, 1, 1),
    ] {
        let lt = lecture_transposed(i, m, s, p).unwrap();
        let o = lt.o;
        let x = rnd(n * cin * o * o, (i * 100 + m * 10 + s) as u64);
        let w = rnd(cin * cout * m * m, (i * 100 + m * 10 + s + 7) as u64);
        // lecture: zero-insert, pad, then a plain stride-1 conv with the flipped, transposed filter
        let (xs, side) = stretch_and_pad(&x, n, cin, o, &lt);
        let wf = flip_transpose_weight(&w, cin, cout, m);
        let direct = b
            .conv2d(
                &t(&[n, cin, side, side], &xs),
                &t(&[cout, cin, m, m], &wf),
                None,
                Conv2dParams::default(),
            )
            .unwrap();
        let torch = b
            .conv_transpose2d(
                &t(&[n, cin, o, o], &x),
                &t(&[cin, cout, m, m], &w),
                None,
                lt.pytorch_params(s, p),
            )
            .unwrap();
        assert_eq!(direct.shape(), &[n, cout, i, i], "i={i} m={m} s={s} p={p}");
        assert_eq!(torch.shape(), direct.shape(), "i={i} m={m} s={s} p={p}");
        assert_close(
            &format!("lecture vs conv_transpose2d i={i} m={m} s={s} p={p}"),
            &v(&torch),
            &v(&direct),
            1e-5,
        );
        cases += 1;
    }
    assert_eq!(cases, 9);
}

// ---------------------------------------------------------------- matmul

#[test]
fn matmul_all_transposes_match_finite_differences() {
    let b = be();
    let (m, k, n) = (5, 7, 3);
    for (ta, tb) in [(false, false), (true, false), (false, true), (true, true)] {
        let sa = if ta { [k, m] } else { [m, k] };
        let sb = if tb { [n, k] } else { [k, n] };
        let inputs = vec![rnd(m * k, 1), rnd(k * n, 2)];
        let f = |ins: &[Vec<f32>]| {
            v(&b.matmul(&t(&sa, &ins[0]), &t(&sb, &ins[1]), ta, tb)
                .unwrap())
        };
        let y = f(&inputs);
        // reference product by hand loops, in f64
        let at = |i: usize, l: usize| if ta { inputs[0][l * m + i] } else { inputs[0][i * k + l] } as f64;
        let bt = |l: usize, j: usize| if tb { inputs[1][j * k + l] } else { inputs[1][l * n + j] } as f64;
        let want: Vec<f32> = (0..m * n)
            .map(|e| (0..k).map(|l| at(e / n, l) * bt(l, e % n)).sum::<f64>() as f32)
            .collect();
        assert_close(&format!("matmul ta={ta} tb={tb}"), &y, &want, 1e-5);
        // the tape's backward: ga = gy op(b)^T (in a's storage layout), gb = op(a)^T gy
        let gy = rnd(m * n, 3);
        let gyt = t(&[m, n], &gy);
        let (at_, bt_) = (t(&sa, &inputs[0]), t(&sb, &inputs[1]));
        let ga = if ta {
            b.matmul(&bt_, &gyt, tb, true)
        } else {
            b.matmul(&gyt, &bt_, false, !tb)
        }
        .unwrap();
        let gb = if tb {
            b.matmul(&gyt, &at_, true, ta)
        } else {
            b.matmul(&at_, &gyt, !ta, false)
        }
        .unwrap();
        assert_eq!(ga.shape(), &sa);
        assert_eq!(gb.shape(), &sb);
        let name = format!("matmul ta={ta} tb={tb}");
        fd_check(&name, &inputs, 0, &gy, &v(&ga), 0.1, &f);
        fd_check(&name, &inputs, 1, &gy, &v(&gb), 0.1, &f);
    }
}

// ---------------------------------------------------------------- bad input

fn is_err_with<T: std::fmt::Debug>(r: nnlab::Result<T>, what: &str) {
    match r {
        Err(e) => {
            let msg = e.to_string();
            assert!(msg.contains(what), "error {msg:?} should mention {what:?}");
        }
        Ok(x) => panic!("expected an error mentioning {what:?}, got Ok({x:?})"),
    }
}

#[test]
fn bad_conv_input_is_an_error() {
    let b = be();
    let x = t(&[1, 2, 5, 5], &rnd(50, 1));
    let w = t(&[3, 2, 3, 3], &rnd(54, 2));
    let p = Conv2dParams::default();
    is_err_with(b.conv2d(&t(&[2, 5, 5], &rnd(50, 1)), &w, None, p), "rank 4");
    is_err_with(
        b.conv2d(&x, &t(&[3, 4, 3, 3], &rnd(108, 2)), None, p),
        "channels",
    );
    is_err_with(b.conv2d(&x, &w, Some(&t(&[2], &[0.0, 0.0])), p), "bias");
    is_err_with(
        b.conv2d(&x, &w, None, Conv2dParams { stride: 0, ..p }),
        "stride",
    );
    is_err_with(
        b.conv2d(&x, &w, None, Conv2dParams { dilation: 0, ..p }),
        "dilation",
    );
    is_err_with(
        b.conv2d(&x, &t(&[3, 2, 7, 7], &rnd(294, 2)), None, p),
        "kernel",
    );
    is_err_with(
        b.conv2d(&x, &t(&[3, 2, 3, 2], &rnd(36, 2)), None, p),
        "square",
    );
    is_err_with(
        b.conv2d_backward_input(&t(&[1, 3, 4, 4], &rnd(48, 3)), &w, &[1, 2, 5, 5], p),
        "output gradient",
    );
    is_err_with(
        b.conv2d_backward_weight(&x, &t(&[1, 3, 4, 4], &rnd(48, 3)), &[3, 2, 3, 3], p),
        "output gradient",
    );
    let tp = ConvTranspose2dParams {
        stride: 2,
        padding: 1,
        output_padding: 2,
        dilation: 1,
    };
    is_err_with(
        b.conv_transpose2d(&x, &t(&[2, 3, 3, 3], &rnd(54, 2)), None, tp),
        "output_padding",
    );
    is_err_with(
        b.conv_transpose2d(&x, &w, None, ConvTranspose2dParams::default()),
        "channels",
    );
    is_err_with(
        b.conv_transpose2d(
            &x,
            &t(&[2, 3, 3, 3], &rnd(54, 2)),
            None,
            ConvTranspose2dParams {
                stride: 0,
                ..Default::default()
            },
        ),
        "stride",
    );
    is_err_with(
        b.conv_transpose2d_backward_input(
            &t(&[1, 3, 5, 5], &rnd(75, 3)),
            &t(&[2, 3, 3, 3], &rnd(54, 2)),
            &[1, 2, 5, 5],
            ConvTranspose2dParams::default(),
        ),
        "output gradient",
    );
    is_err_with(
        b.matmul(
            &t(&[2, 3], &rnd(6, 1)),
            &t(&[2, 3], &rnd(6, 1)),
            false,
            false,
        ),
        "inner",
    );
    is_err_with(
        b.matmul(&t(&[6], &rnd(6, 1)), &t(&[6, 1], &rnd(6, 1)), false, false),
        "rank 2",
    );
    is_err_with(b.bias_add(&x, &t(&[3], &[0.0; 3])), "bias");
}

#[test]
fn zero_size_and_mismatched_tensors_are_errors() {
    let b = be();
    is_err_with(b.upload(&[0, 3], &[]), "no elements");
    is_err_with(b.upload(&[2, 3], &[1.0; 5]), "6 values");
    is_err_with(b.fill(&[4, 0], 1.0), "no elements");
    is_err_with(b.zeros(&[0]), "no elements");
    let a = t(&[2, 3], &rnd(6, 1));
    is_err_with(
        b.binary(BinaryOp::Add, &a, &t(&[3, 2], &rnd(6, 1))),
        "shapes differ",
    );
    is_err_with(b.assign(&a, &t(&[5], &rnd(5, 1))), "element counts differ");
    is_err_with(b.clamp(&a, 1.0, -1.0), "lower bound");
    is_err_with(
        b.loss(LossKind::Mse, &a, &t(&[6], &rnd(6, 1))),
        "shapes differ",
    );
    is_err_with(
        b.loss_backward(LossKind::Mse, &a, &a, &t(&[2], &[1.0, 1.0])),
        "one element",
    );
    is_err_with(b.bias_grad(&t(&[6], &rnd(6, 1))), "rank >= 2");
    is_err_with(
        b.softmax(&t(&[1], &[1.0]))
            .map(|_| ())
            .and(Err::<(), _>(Error::Invalid(
                "softmax of one element is fine".into(),
            ))),
        "fine",
    );
}

// ---------------------------------------------------------------- memory ops

#[test]
fn upload_read_fill_assign_roundtrip() {
    let b = be();
    let a = t(&[2, 3], &arange(6));
    assert_eq!(v(&a), arange(6));
    let f = b.fill(&[3, 2], 2.5).unwrap();
    assert_eq!(f.shape(), &[3, 2]);
    assert_eq!(v(&f), vec![2.5; 6]);
    b.assign(&f, &a).unwrap(); // same element count, different shape: allowed
    assert_eq!(v(&f), arange(6));
    b.assign(&a, &a).unwrap(); // self-assignment must not deadlock
    assert_eq!(v(&b.zeros(&[4]).unwrap()), vec![0.0; 4]);
}

// ---------------------------------------------------------------- speed (not asserted; run with --ignored --nocapture)

/// GFLOP/s of conv2d forward + backward-input + backward-weight on DnCNN-like shapes
/// (batch 16, 64->64 channels, 3x3, 64x64). The bar is >= 50 GFLOP/s on the 2-core dev machine.
#[test]
#[ignore]
fn conv2d_speed() {
    let b = be();
    let (n, c, h) = (16, 64, 64);
    let p = Conv2dParams {
        stride: 1,
        padding: 1,
        dilation: 1,
    };
    let x = t(&[n, c, h, h], &rnd(n * c * h * h, 1));
    let w = t(&[c, c, 3, 3], &rnd(c * c * 9, 2));
    let bias = t(&[c], &rnd(c, 3));
    let flops = 2.0 * (n * c * h * h * c * 9) as f64;
    // wall time per call; also prints the CPU seconds this process got, since on a shared machine
    // other processes take cores: GFLOP per CPU-second x cores estimates the unloaded figure
    let time = |f: &dyn Fn()| {
        f(); // warm-up
        let reps = 3;
        let (t0, c0) = (std::time::Instant::now(), cpu_seconds());
        for _ in 0..reps {
            f();
        }
        let (wall, cpu) = (
            t0.elapsed().as_secs_f64() / reps as f64,
            (cpu_seconds() - c0) / reps as f64,
        );
        println!("  wall {:.1} ms, cpu {:.1} ms", wall * 1e3, cpu * 1e3);
        wall
    };
    let y = b.conv2d(&x, &w, Some(&bias), p).unwrap();
    let tf = time(&|| drop(b.conv2d(&x, &w, Some(&bias), p).unwrap()));
    let ti = time(&|| drop(b.conv2d_backward_input(&y, &w, x.shape(), p).unwrap()));
    let tw = time(&|| drop(b.conv2d_backward_weight(&x, &y, w.shape(), p).unwrap()));
    let g = |s: f64| flops / s / 1e9;
    println!("conv2d 16x64x64x64 3x3: forward {:.1} GFLOP/s, backward-input {:.1}, backward-weight {:.1}, all three {:.1} GFLOP/s", g(tf), g(ti), g(tw), 3.0 * flops / (tf + ti + tw) / 1e9);
    // the GEMM alone on the forward's shape (Cout x Cin k k) * (Cin k k x H W), once per sample
    let wm = t(&[c, c * 9], &rnd(c * c * 9, 6));
    let cols = t(&[c * 9, h * h], &rnd(c * 9 * h * h, 7));
    let tg = time(&|| (0..n).for_each(|_| drop(b.matmul(&wm, &cols, false, false).unwrap())));
    println!("GEMM alone on the forward's shape: {:.1} GFLOP/s", g(tg));
    let (m, k, nn) = (1024, 1024, 1024);
    let a = t(&[m, k], &rnd(m * k, 4));
    let bb = t(&[k, nn], &rnd(k * nn, 5));
    let tm = time(&|| drop(b.matmul(&a, &bb, false, false).unwrap()));
    println!(
        "matmul 1024^3: {:.1} GFLOP/s",
        2.0 * (m * k * nn) as f64 / tm / 1e9
    );
}

// ---------------------------------------------------------------- elementwise

#[test]
fn unary_backward_matches_finite_differences() {
    let b = be();
    let shape = [3, 7];
    let ops = [
        UnaryOp::Relu,
        UnaryOp::LeakyRelu(0.2),
        UnaryOp::Tanh,
        UnaryOp::Sigmoid,
        UnaryOp::Sign,
        UnaryOp::Square,
        UnaryOp::Abs,
    ];
    for (k, op) in ops.into_iter().enumerate() {
        // scaled to [-3, 3), >= 0.15 away from the kinks at 0
        let x: Vec<f32> = rnd_away(21, 200 + k as u64, 0.05)
            .iter()
            .map(|v| 3.0 * v)
            .collect();
        let gy = rnd(21, 300 + k as u64);
        let f = |ins: &[Vec<f32>]| v(&b.unary(op, &t(&shape, &ins[0])).unwrap());
        let gx = v(&b
            .unary_backward(op, &t(&shape, &x), &t(&shape, &gy))
            .unwrap());
        fd_check(&format!("unary {op:?}"), &[x], 0, &gy, &gx, 1e-2, &f);
    }
}

#[test]
fn unary_values() {
    let b = be();
    let x = t(&[5], &[-2.0, -0.5, 0.0, 0.5, 2.0]);
    let u = |op| v(&b.unary(op, &x).unwrap());
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
        v(&b.unary(UnaryOp::Sigmoid, &t(&[2], &[-200.0, 200.0]))
            .unwrap()),
        [0.0, 1.0]
    );
    // the gradient at the kinks is PyTorch's: relu'(0) = 0, abs'(0) = 0, sign' = 0
    let z = t(&[1], &[0.0]);
    let one = t(&[1], &[1.0]);
    for (op, want) in [
        (UnaryOp::Relu, 0.0),
        (UnaryOp::Abs, 0.0),
        (UnaryOp::LeakyRelu(0.1), 0.1),
        (UnaryOp::Sign, 0.0),
    ] {
        assert_eq!(
            v(&b.unary_backward(op, &z, &one).unwrap()),
            [want],
            "{op:?}"
        );
    }
}

/// The backward the tape uses for the binary ops, affine and bias_add (they have no op of
/// their own): add -> (gy, gy), sub -> (gy, -gy), mul -> (gy b, gy a), affine -> a gy,
/// bias_add -> (gy, bias_grad(gy)).
#[test]
fn binary_affine_bias_backward_match_finite_differences() {
    let b = be();
    let shape = [2, 3, 2, 3];
    let n = 36;
    let inputs = vec![rnd(n, 1), rnd(n, 2)];
    let gy = rnd(n, 3);
    let gyt = t(&shape, &gy);
    for op in [BinaryOp::Add, BinaryOp::Sub, BinaryOp::Mul] {
        let f = |ins: &[Vec<f32>]| {
            v(&b.binary(op, &t(&shape, &ins[0]), &t(&shape, &ins[1]))
                .unwrap())
        };
        let (ga, gb) = match op {
            BinaryOp::Add => (gy.clone(), gy.clone()),
            BinaryOp::Sub => (gy.clone(), v(&b.affine(&gyt, -1.0, 0.0).unwrap())),
            BinaryOp::Mul => (
                v(&b.binary(BinaryOp::Mul, &gyt, &t(&shape, &inputs[1]))
                    .unwrap()),
                v(&b.binary(BinaryOp::Mul, &gyt, &t(&shape, &inputs[0]))
                    .unwrap()),
            ),
        };
        fd_check(&format!("binary {op:?}"), &inputs, 0, &gy, &ga, 0.1, &f);
        fd_check(&format!("binary {op:?}"), &inputs, 1, &gy, &gb, 0.1, &f);
    }
    let f = |ins: &[Vec<f32>]| v(&b.affine(&t(&shape, &ins[0]), -1.5, 0.25).unwrap());
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
        &v(&b.affine(&gyt, -1.5, 0.0).unwrap()),
        0.1,
        &f,
    );
    // bias_add on (N, C, H, W) and on (N, C)
    for (xs, c) in [(vec![2, 3, 2, 3], 3), (vec![4, 9], 9)] {
        let ins = vec![rnd(36, 4), rnd(c, 5)];
        let f = |ins: &[Vec<f32>]| v(&b.bias_add(&t(&xs, &ins[0]), &t(&[c], &ins[1])).unwrap());
        let gyt = t(&xs, &gy);
        fd_check(&format!("bias_add {xs:?}"), &ins, 0, &gy, &gy, 0.1, &f);
        fd_check(
            &format!("bias_add {xs:?}"),
            &ins,
            1,
            &gy,
            &v(&b.bias_grad(&gyt).unwrap()),
            0.1,
            &f,
        );
    }
}

#[test]
fn clamp_values_and_mask_gradient() {
    let b = be();
    let x = t(&[6], &[-3.0, -1.0, -0.5, 0.5, 1.0, 3.0]);
    assert_eq!(
        v(&b.clamp(&x, -1.0, 1.0).unwrap()),
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
        v(&b.clamp(&t(&[30], &ins[0]), -1.0, 1.0).unwrap())
    });
}

// ---------------------------------------------------------------- reductions, softmax, losses

#[test]
fn sum_mean_softmax_values_and_gradients() {
    let b = be();
    let x = t(&[2, 3], &arange(6));
    assert_eq!(v(&b.sum(&x).unwrap()), [15.0]);
    assert_eq!(v(&b.mean(&x).unwrap()), [2.5]);
    assert_eq!(b.sum(&x).unwrap().shape(), &[1]);
    // their gradients (what the tape fills in): ones and 1/n
    let xs = rnd(6, 9);
    fd_check("sum", &[xs.clone()], 0, &[1.0], &[1.0; 6], 0.1, &|ins| {
        v(&b.sum(&t(&[2, 3], &ins[0])).unwrap())
    });
    fd_check("mean", &[xs], 0, &[1.0], &[1.0 / 6.0; 6], 0.1, &|ins| {
        v(&b.mean(&t(&[2, 3], &ins[0])).unwrap())
    });
    // softmax rows: exp(x_k) / sum exp, e.g. [0, 1, 2] -> [1, e, e^2] / (1 + e + e^2)
    let s = v(&b.softmax(&x).unwrap());
    let e = std::f32::consts::E;
    let d = 1.0 + e + e * e;
    assert_close(
        "softmax",
        &s,
        &[1.0 / d, e / d, e * e / d, 1.0 / d, e / d, e * e / d],
        1e-6,
    );
    // numerically stable: huge logits do not overflow
    let big = v(&b.softmax(&t(&[1, 3], &[1000.0, 1000.0, -1000.0])).unwrap());
    assert_close("softmax big", &big, &[0.5, 0.5, 0.0], 1e-6);
    // softmax's Jacobian-vector product (y (gy - sum gy y)) against finite differences
    let xs = rnd(12, 10).iter().map(|v| 3.0 * v).collect::<Vec<f32>>();
    let gy = rnd(12, 11);
    let y = v(&b.softmax(&t(&[3, 4], &xs)).unwrap());
    let mut jvp = vec![0.0f32; 12];
    for r in 0..3 {
        let dot: f32 = (0..4).map(|k| gy[r * 4 + k] * y[r * 4 + k]).sum();
        for k in 0..4 {
            jvp[r * 4 + k] = y[r * 4 + k] * (gy[r * 4 + k] - dot);
        }
    }
    fd_check("softmax", &[xs], 0, &gy, &jvp, 1e-2, &|ins| {
        v(&b.softmax(&t(&[3, 4], &ins[0])).unwrap())
    });
}

#[test]
fn losses_backward_match_finite_differences() {
    let b = be();
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
        let tt = t(&shape, &target);
        let f = |ins: &[Vec<f32>]| v(&b.loss(kind, &t(&shape, &ins[0]), &tt).unwrap());
        let g = v(&b
            .loss_backward(kind, &t(&shape, &pred), &tt, &t(&[1], &[gloss]))
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

/// Loss values worked out by hand on tiny inputs.
#[test]
fn loss_values() {
    let b = be();
    let p = t(&[1, 4], &[0.0, 1.0, 2.0, 3.0]);
    let q = t(&[1, 4], &[1.0, 1.0, 0.0, 3.0]);
    // differences -1, 0, 2, 0: squares 1 + 0 + 4 + 0 = 5 over 4 elements
    let l = |k| v(&b.loss(k, &p, &q).unwrap())[0];
    assert_eq!(l(LossKind::Mse), 1.25);
    assert_eq!(l(LossKind::LeastSquares), 0.625);
    assert_eq!(l(LossKind::L1), 0.75); // (1 + 0 + 2 + 0) / 4
                                       // BCE with logit 0 and any target: log 2
    let z = t(&[2], &[0.0, 0.0]);
    assert_close(
        "bce",
        &v(&b
            .loss(LossKind::BceWithLogits, &z, &t(&[2], &[0.0, 1.0]))
            .unwrap()),
        &[std::f32::consts::LN_2],
        1e-6,
    );
    // softmax CE of equal logits over 4 classes with a one-hot target: log 4
    let ce = v(&b
        .loss(
            LossKind::SoftmaxCrossEntropy,
            &t(&[1, 4], &[3.0; 4]),
            &t(&[1, 4], &[0.0, 0.0, 1.0, 0.0]),
        )
        .unwrap());
    assert_close("softmax ce", &ce, &[4f32.ln()], 1e-6);
    // stable for large logits: BCE(100, 0) = 100, BCE(-100, 1) = 100
    assert_close(
        "bce big",
        &v(&b
            .loss(
                LossKind::BceWithLogits,
                &t(&[2], &[100.0, -100.0]),
                &t(&[2], &[0.0, 1.0]),
            )
            .unwrap()),
        &[100.0],
        1e-6,
    );
}

// ---------------------------------------------------------------- BatchNorm2d

#[test]
fn batchnorm_backward_matches_finite_differences() {
    let b = be();
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
        v(&b.batchnorm2d_train(
            &t(&xs, &ins[0]),
            &t(&[c], &ins[1]),
            &t(&[c], &ins[2]),
            &rm,
            &rv,
            0.1,
            eps,
        )
        .unwrap()
        .0)
    };
    let (rm, rv) = (b.zeros(&[c]).unwrap(), b.fill(&[c], 1.0).unwrap());
    let x = t(&xs, &inputs[0]);
    let gamma = t(&[c], &inputs[1]);
    let (_, mean, invstd) = b
        .batchnorm2d_train(&x, &gamma, &t(&[c], &inputs[2]), &rm, &rv, 0.1, eps)
        .unwrap();
    let gy = rnd(n * c * h * w, 501);
    let (gx, gg, gb) = b
        .batchnorm2d_backward(&x, &t(&xs, &gy), &gamma, &mean, &invstd)
        .unwrap();
    fd_check("batchnorm2d x", &inputs, 0, &gy, &v(&gx), 1e-2, &f);
    fd_check("batchnorm2d gamma", &inputs, 1, &gy, &v(&gg), 1e-2, &f);
    fd_check("batchnorm2d beta", &inputs, 2, &gy, &v(&gb), 1e-2, &f);
}

/// x (N=2, C=2, 1x2): channel 0 holds 1, 2 | 3, 4 -> mean 2.5, biased var (2.25+0.25+0.25+2.25)/4
/// = 1.25, unbiased 5/3; channel 1 holds 0, 0 | 0, 4 -> mean 1, biased var (1+1+1+9)/4 = 3,
/// unbiased 4. With momentum 0.1 from running (0, 1): mean 0.25 / 0.1, var 0.9 + 0.1*5/3 and
/// 0.9 + 0.4 = 1.3. Eval then normalises with those running statistics.
#[test]
fn batchnorm_running_stats_and_eval() {
    let b = be();
    let x = t(&[2, 2, 1, 2], &[1.0, 2.0, 0.0, 0.0, 3.0, 4.0, 0.0, 4.0]);
    let (gamma, beta) = (t(&[2], &[1.0, 2.0]), t(&[2], &[0.0, -1.0]));
    let (rm, rv) = (b.zeros(&[2]).unwrap(), b.fill(&[2], 1.0).unwrap());
    let (y, mean, invstd) = b
        .batchnorm2d_train(&x, &gamma, &beta, &rm, &rv, 0.1, 0.0)
        .unwrap();
    assert_close("bn mean", &v(&mean), &[2.5, 1.0], 1e-7);
    assert_close(
        "bn invstd",
        &v(&invstd),
        &[1.0 / 1.25f32.sqrt(), 1.0 / 3f32.sqrt()],
        1e-6,
    );
    assert_close("bn running_mean", &v(&rm), &[0.25, 0.1], 1e-7);
    assert_close(
        "bn running_var",
        &v(&rv),
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
    assert_close("bn train y", &v(&y), &want, 1e-6);
    // eval: (x - running_mean) / sqrt(running_var + eps) * gamma + beta
    let eps = 1e-5f32;
    let ye = v(&b
        .batchnorm2d_eval(&x, &gamma, &beta, &rm, &rv, eps)
        .unwrap());
    let (rmv, rvv) = (v(&rm), v(&rv));
    let xv = v(&x);
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
            &t(&[1, 2, 1, 1], &[1.0, 2.0]),
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
        b.batchnorm2d_eval(&x, &t(&[3], &[1.0; 3]), &beta, &rm, &rv, 1e-5),
        "gamma",
    );
    is_err_with(
        b.batchnorm2d_train(&x, &gamma, &beta, &rm, &rm, 0.1, 1e-5),
        "different tensors",
    );
}

// ---------------------------------------------------------------- optimizers

#[test]
fn sgd_and_adam_match_hand_computation() {
    let b = be();
    // SGD, lr 0.1, momentum 0.9, wd 0.01, p = 1, g = 0.5: g' = 0.51; step 1 v = 0.51, p = 0.949;
    // step 2 g' = 0.5 + 0.00949 = 0.50949, v = 0.459 + 0.50949 = 0.96849, p = 0.949 - 0.096849
    let (p, g, vel) = (t(&[1], &[1.0]), t(&[1], &[0.5]), b.zeros(&[1]).unwrap());
    let hp = SgdParams {
        lr: 0.1,
        momentum: 0.9,
        weight_decay: 0.01,
    };
    b.sgd_step(&p, &g, &vel, hp).unwrap();
    assert_close("sgd step 1", &v(&p), &[0.949], 1e-6);
    b.sgd_step(&p, &g, &vel, hp).unwrap();
    assert_close("sgd step 2 v", &v(&vel), &[0.96849], 1e-6);
    assert_close("sgd step 2 p", &v(&p), &[0.949 - 0.096849], 1e-6);
    // Adam: at step 1 the bias-corrected update is lr * g / (|g| + eps) = lr * sign(g) (about)
    let (p, g, m, vv) = (
        t(&[2], &[1.0, -1.0]),
        t(&[2], &[0.3, -2.0]),
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
    assert_close("adam step 1", &v(&p), &[0.99, -0.99], 1e-6);
    assert_close("adam m", &v(&m), &[0.03, -0.2], 1e-6);
    assert_close("adam v", &v(&vv), &[0.00009, 0.004], 1e-6);
    // step 2 with g = 0.3 again (first element): m = 0.9*0.03 + 0.03 = 0.057, v = 0.999*9e-5 + 9e-5
    // = 1.7991e-4; mhat = 0.057/0.19 = 0.3, vhat = 1.7991e-4/0.001999 = 0.09 -> update lr * 0.3/0.3
    b.adam_step(&p, &g, &m, &vv, AdamParams { step: 2, ..hp })
        .unwrap();
    assert_close("adam step 2", &v(&p)[..1], &[0.98], 1e-6);
    // weight decay enters the gradient: p = 2, g = 0, wd 0.5 -> g' = 1, step-1 update lr
    let (p, g, m, vv) = (
        t(&[1], &[2.0]),
        t(&[1], &[0.0]),
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
    assert_close("adam wd", &v(&p), &[1.99], 1e-6);
    // bad input
    is_err_with(
        b.adam_step(&p, &g, &m, &vv, AdamParams { step: 0, ..hp }),
        "step",
    );
    is_err_with(b.adam_step(&p, &g, &m, &m, hp), "distinct");
    is_err_with(
        b.sgd_step(
            &p,
            &t(&[2], &[0.0, 0.0]),
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

// ---------------------------------------------------------------- random

#[test]
fn random_is_the_counter_stream() {
    let b = be();
    let u = v(&b
        .random(&[10, 7], Distribution::Uniform { lo: -2.0, hi: 3.0 }, 42)
        .unwrap());
    assert_eq!(u, rng::uniform_vec(70, -2.0, 3.0, 42));
    assert!(u.iter().all(|&x| (-2.0..3.0).contains(&x)));
    let g = v(&b
        .random(
            &[200_000],
            Distribution::Normal {
                mean: 1.0,
                std: 2.0,
            },
            7,
        )
        .unwrap());
    assert_eq!(&g[..100], &rng::normal_vec(100, 1.0, 2.0, 7)[..]);
    assert_eq!(g[150_000], 1.0 + 2.0 * rng::normal(7, 150_000)); // past the first parallel chunk
    let m = g.iter().map(|&x| x as f64).sum::<f64>() / g.len() as f64;
    let var = g.iter().map(|&x| (x as f64 - m).powi(2)).sum::<f64>() / g.len() as f64;
    assert!(
        (m - 1.0).abs() < 0.02 && (var - 4.0).abs() < 0.05,
        "mean {m} var {var}"
    );
    assert_ne!(
        v(
            &b.random(&[8], Distribution::Uniform { lo: 0.0, hi: 1.0 }, 1)
                .unwrap()
        ),
        v(
            &b.random(&[8], Distribution::Uniform { lo: 0.0, hi: 1.0 }, 2)
                .unwrap()
        )
    );
    is_err_with(
        b.random(&[0], Distribution::Uniform { lo: 0.0, hi: 1.0 }, 1),
        "no elements",
    );
    is_err_with(
        b.random(&[3], Distribution::Uniform { lo: 1.0, hi: 0.0 }, 1),
        "lo <= hi",
    );
    is_err_with(
        b.random(
            &[3],
            Distribution::Normal {
                mean: 0.0,
                std: -1.0,
            },
            1,
        ),
        "std",
    );
}

/// utime + stime of this process from /proc/self/stat (Linux; 0 elsewhere), in seconds.
fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let after = stat.rsplit(')').next().unwrap_or("");
    let f: Vec<&str> = after.split_whitespace().collect();
    let ticks: f64 = f.get(11).and_then(|u| u.parse().ok()).unwrap_or(0.0)
        + f.get(12).and_then(|s| s.parse().ok()).unwrap_or(0.0);
    ticks / 100.0
}
