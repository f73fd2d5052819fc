//! conv_transpose2d: backward against finite differences, the lecture's construction (zero
//! insertion, padding, flipped kernel) against the PyTorch-style op, a golden value by hand, bad
//! input; on the GPU, a random sweep against the CPU twin and the splitting paths. (The direct
//! f64 loop of conv2d.rs checks the transposed conv as conv2d's backward too.)

use crate::common::*;
use nnlab::backend::conv_arith::{flip_transpose_weight, lecture_transposed, stretch_and_pad};
use nnlab::backend::*;

// ---------------------------------------------------------------- every backend

fn convt_fd_case(
    b: &dyn Backend,
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
    let p = ConvTranspose2dParams {
        stride,
        padding,
        output_padding,
        dilation,
    };
    conv_fd_check(b, ConvOp::Transposed(p), [n, cin, cout, h, w, k], seed);
}

backend_test! {
    fn conv_transpose2d_backward_matches_finite_differences(b) {
        //             n cin cout h  w  k  s  p op d
        convt_fd_case(b, 1, 2, 3, 3, 4, 3, 2, 1, 1, 1, 110);
        convt_fd_case(b, 3, 3, 2, 4, 4, 3, 1, 0, 0, 1, 120);
        convt_fd_case(b, 3, 2, 2, 3, 5, 4, 2, 1, 0, 1, 130);
        convt_fd_case(b, 1, 2, 1, 4, 3, 3, 2, 2, 1, 2, 140);
        convt_fd_case(b, 2, 1, 2, 3, 3, 3, 1, 1, 1, 2, 150); // output_padding >= stride (allowed when < dilation)
        convt_fd_case(b, 3, 2, 3, 5, 5, 1, 1, 0, 0, 1, 160); // 1x1
    }
}

backend_test! {
    /// Its transposed conv back to 6x6 (kernel 3, stride 2, padding 1, a' = output_padding 1):
    /// x 3x3 arange (x[r][c] = 3r + c), filter of ones. Output row Y receives input rows r with
    /// Y = 2r - 1 + ky, ky in 0..3: R_Y = {0},{0,1},{1},{1,2},{2},{2} for Y = 0..5 (Y = 5 is the
    /// output_padding row, reached only by ky = 2 of r = 2... and r = 3 which does not exist).
    /// y(Y, X) = |C_X| S_Y + |R_Y| T_X with S = sum 3r = [0,3,3,9,6,6], T = sum c = [0,1,1,3,2,2],
    /// |R| = |C| = [1,2,1,2,1,1].
    fn golden_lecture_example_transposed_conv(b) {
        let lt = lecture_transposed(6, 3, 2, 1).unwrap();
        assert_eq!((lt.o, lt.a_t, lt.o_t), (3, 1, 6));
        let x = b.t(&[1, 1, 3, 3], &arange(9));
        let w = b.t(&[1, 1, 3, 3], &[1.0; 9]);
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
        assert_eq!(b.v(&y), want);
    }
}

backend_test! {
    fn lecture_construction_equals_conv_transpose2d(b) {
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
                    &b.t(&[n, cin, side, side], &xs),
                    &b.t(&[cout, cin, m, m], &wf),
                    None,
                    Conv2dParams::default(),
                )
                .unwrap();
            let torch = b
                .conv_transpose2d(
                    &b.t(&[n, cin, o, o], &x),
                    &b.t(&[cin, cout, m, m], &w),
                    None,
                    lt.pytorch_params(s, p),
                )
                .unwrap();
            assert_eq!(direct.shape(), &[n, cout, i, i], "i={i} m={m} s={s} p={p}");
            assert_eq!(torch.shape(), direct.shape(), "i={i} m={m} s={s} p={p}");
            assert_close(
                &format!("lecture vs conv_transpose2d i={i} m={m} s={s} p={p}"),
                &b.v(&torch),
                &b.v(&direct),
                1e-5,
            );
            cases += 1;
        }
        assert_eq!(cases, 9);
    }
}

backend_test! {
    fn bad_input_is_an_error(b) {
        let x = b.t(&[1, 2, 5, 5], &rnd(50, 1));
        let w = b.t(&[3, 2, 3, 3], &rnd(54, 2));
        let tp = ConvTranspose2dParams {
            stride: 2,
            padding: 1,
            output_padding: 2,
            dilation: 1,
        };
        is_err_with(
            b.conv_transpose2d(&x, &b.t(&[2, 3, 3, 3], &rnd(54, 2)), None, tp),
            "output_padding",
        );
        is_err_with(
            b.conv_transpose2d(&x, &w, None, ConvTranspose2dParams::default()),
            "channels",
        );
        is_err_with(
            b.conv_transpose2d(
                &x,
                &b.t(&[2, 3, 3, 3], &rnd(54, 2)),
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
                &b.t(&[1, 3, 5, 5], &rnd(75, 3)),
                &b.t(&[2, 3, 3, 3], &rnd(54, 2)),
                &[1, 2, 5, 5],
                ConvTranspose2dParams::default(),
            ),
            "output gradient",
        );
    }

}

// ---------------------------------------------------------------- the GPU against its CPU twin

#[test]
fn gpu_matches_cpu_on_random_shapes() {
    conv_sweep("conv_transpose2d", Pick { seed: 12, i: 0 }, 500, |pick| {
        let n = pick.of(&[1, 2, 3]);
        let (cin, cout) = (pick.of(&[1, 3, 6, 17]), pick.of(&[1, 2, 5, 18]));
        let (h, w) = (pick.of(&[1, 3, 4, 7]), pick.of(&[2, 5, 7]));
        let k = pick.of(&[1, 2, 3, 4, 5]);
        let op = ConvOp::Transposed(ConvTranspose2dParams {
            stride: pick.of(&[1, 2, 3]),
            padding: pick.of(&[0, 1, 2]),
            output_padding: pick.of(&[0, 1, 2]),
            dilation: pick.of(&[1, 2]),
        });
        let bias = pick.of(&[false, true]);
        (op, [n, cin, h, w], [cin, cout, k, k], bias)
    });
}

#[test]
fn gpu_splits_under_low_limits() {
    // 1 MiB per binding, 64 workgroups per dim: x 20x32x16x16 (0.6 MiB) -> y 20x24x33x33
    // (~2 MiB), stride 2, output_padding 1
    let op = ConvOp::Transposed(ConvTranspose2dParams {
        stride: 2,
        padding: 1,
        output_padding: 1,
        dilation: 1,
    });
    let mut worst = 0.0f32;
    let shapes = ([20, 32, 16, 16], [32, 24, 4, 4]);
    conv_matches_cpu(&small_gpu(), op, "split", shapes, true, 5, &mut worst);
    println!("conv_transpose2d split under a 1 MiB binding limit: max abs error {worst:e}");
}

/// Both backends refuse the same bad input with the same words: the rules live once in
/// `backend/` (conv_geom.rs, batchnorm.rs).
#[test]
fn refusals_are_word_for_word_the_same() {
    same_refusals(1, |be, case| {
        let t = |s: &[usize]| be.fill(s, 1.0).unwrap();
        let p = ConvTranspose2dParams::default();
        match case {
            _ => be
                .conv_transpose2d_backward_input(
                    &t(&[2, 1, 5, 5]),
                    &t(&[3, 1, 3, 3]),
                    &[2, 3, 5, 5],
                    p,
                )
                .map(|_| ()),
        }
    });
}
