//! conv2d (and conv2d_relu): backward against finite differences, golden values by hand,
//! every variant against a direct f64 loop at sizes where the CPU's fast paths split the work
//! (checking the transposed conv that is its backward too), bad input; on the GPU, a random
//! sweep against the CPU twin, the splitting paths under low device limits, and the refusals.

use crate::common::*;
use crate::conv_reference::*;
use nnlab::backend::*;
use nnlab::cpu::CpuBackend;
use nnlab::gpu::{GpuOptions, Policy, Variant};
use nnlab::Error;

// ---------------------------------------------------------------- every backend

/// conv2d's three backward results vs finite differences for x (n, cin, h, w) to `cout`
/// channels, kernel, stride, padding, dilation each a number or (rows, columns).
fn conv_fd_case(
    b: &dyn Backend,
    [n, cin, cout, h, w]: [usize; 5],
    k: impl Into<Hw>,
    (s, p, d): (impl Into<Hw>, impl Into<Hw>, impl Into<Hw>),
    seed: u64,
) {
    let p = Conv2dParams::default()
        .with_stride(s)
        .with_padding(p)
        .with_dilation(d);
    conv_fd_check(b, ConvOp::Direct(p), [n, cin, cout, h, w], k, seed);
}

backend_test! {
    fn conv2d_backward_matches_finite_differences(b) {
        //              n cin cout h  w    k   (s, p, d)
        conv_fd_case(b, [1, 2, 3, 7, 5], 3, (1, 0, 1), 10);
        conv_fd_case(b, [3, 2, 3, 6, 7], 3, (2, 1, 1), 20);
        conv_fd_case(b, [1, 3, 2, 9, 9], 3, (1, 2, 2), 30);
        conv_fd_case(b, [3, 1, 2, 8, 5], 2, (2, 0, 2), 40);
        conv_fd_case(b, [3, 2, 2, 5, 5], 1, (1, 0, 1), 50); // 1x1: the path without im2col
        conv_fd_case(b, [1, 2, 3, 5, 6], 3, (2, 2, 1), 60);
        conv_fd_case(b, [3, 3, 1, 7, 7], 5, (2, 1, 1), 70);
    }
}

backend_test! {
    /// Rectangular kernels and per-axis stride, padding and dilation (PyTorch's tuple forms).
    fn conv2d_per_axis_backward_matches_finite_differences(b) {
        conv_fd_case(b, [2, 2, 3, 6, 8], (3, 2), (1, (1, 0), 1), 80);
        conv_fd_case(b, [1, 3, 2, 7, 9], (1, 3), ((2, 1), (0, 2), (1, 2)), 90);
        conv_fd_case(b, [2, 2, 2, 9, 6], (2, 3), ((1, 3), (2, 1), (2, 1)), 100);
        conv_fd_case(b, [1, 2, 3, 8, 7], (4, 2), ((3, 2), (1, 3), 1), 110);
    }
}

backend_test! {
    /// The lecture's example: input 6x6 arange (x[r][c] = 6r + c), 3x3 filter of ones, stride 2,
    /// padding 1 -> 3x3. Output (oy, ox) sums the window rows R = {2oy-1 .. 2oy+1} and columns C
    /// clipped to [0, 5]: R0 = {0,1}, R1 = {1,2,3}, R2 = {3,4,5}, so
    /// y = |C| * sum_{r in R} 6r + |R| * sum_{c in C} c, e.g. y(0,0) = 2*6 + 2*1 = 14,
    /// y(1,1) = 3*36 + 3*6 = 126, y(2,2) = 3*72 + 3*12 = 252. Bias 0.5 is added to all.
    fn golden_lecture_example_conv(b) {
        let x = b.t(&[1, 1, 6, 6], &arange(36));
        let w = b.t(&[1, 1, 3, 3], &[1.0; 9]);
        let bias = b.t(&[1], &[0.5]);
        let y = b
            .conv2d(
                &x,
                &w,
                Some(&bias),
                Conv2dParams::new(2, 1, 1),
            )
            .unwrap();
        assert_eq!(y.shape(), &[1, 1, 3, 3]);
        let want = [14.0, 30.0, 42.0, 75.0, 126.0, 144.0, 147.0, 234.0, 252.0].map(|e: f32| e + 0.5);
        assert_eq!(b.v(&y), want);
    }
}

backend_test! {
    /// "valid" (p = 0): 4x4 arange input (x[r][c] = 4r + c), 3x3 arange filter (w[ky][kx] = 3ky + kx).
    /// y(oy, ox) = sum w * x[oy+ky][ox+kx] = sum w (4ky + kx) + (4oy + ox) sum w, and
    /// sum w (4ky + kx) = sum (3ky + kx)(4ky + kx) = 12*3*sum ky^2 + 7 (sum ky)(sum kx) + 3 sum kx^2
    /// = 180 + 63 + 15 = 258 (sums over 0..3: sum k = 3, sum k^2 = 5), sum w = 36:
    /// y = 258 + 36 (4oy + ox) = [[258, 294], [402, 438]]. The arange filter catches a flipped kernel.
    fn golden_valid_padding(b) {
        let y = b
            .conv2d(
                &b.t(&[1, 1, 4, 4], &arange(16)),
                &b.t(&[1, 1, 3, 3], &arange(9)),
                None,
                Conv2dParams::default(),
            )
            .unwrap();
        assert_eq!(y.shape(), &[1, 1, 2, 2]);
        assert_eq!(b.v(&y), [258.0, 294.0, 402.0, 438.0]);
    }
}

backend_test! {
    /// "same" (p = 1): 3x3 arange input (x[r][c] = 3r + c), filter of ones: each output is the sum of
    /// its clipped 3x3 neighbourhood, y = |C| sum_{r in R} 3r + |R| sum_{c in C} c with
    /// R/C = {0,1}, {0,1,2}, {1,2}: e.g. y(0,0) = 0+1+3+4 = 8, y(1,1) = 36, y(2,2) = 4+5+7+8 = 24.
    fn golden_same_padding(b) {
        let y = b
            .conv2d(
                &b.t(&[1, 1, 3, 3], &arange(9)),
                &b.t(&[1, 1, 3, 3], &[1.0; 9]),
                None,
                Conv2dParams::default().with_padding(1),
            )
            .unwrap();
        assert_eq!(y.shape(), &[1, 1, 3, 3]);
        assert_eq!(b.v(&y), [8.0, 15.0, 12.0, 21.0, 36.0, 27.0, 20.0, 33.0, 24.0]);
    }
}

backend_test! {
    /// "full" (p = 2): same input and filter, 5x5 output. Row sets R_oy = {0},{0,1},{0,1,2},{1,2},{2}
    /// (sum 3r = 0,3,9,9,6; |R| = 1,2,3,2,1), columns alike (sum c = 0,1,3,3,2).
    /// e.g. y(0,4) = x[0][2] = 2, y(3,3) = 4+5+7+8 = 24, y(4,4) = 8.
    fn golden_full_padding(b) {
        let y = b
            .conv2d(
                &b.t(&[1, 1, 3, 3], &arange(9)),
                &b.t(&[1, 1, 3, 3], &[1.0; 9]),
                None,
                Conv2dParams::default().with_padding(2),
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
        assert_eq!(b.v(&y), want);
    }
}

backend_test! {
    /// An independent hand-checkable value: a 1-channel 3x3 ones kernel over arange(16) 4x4 with
    /// padding 1 sums each 3x3 neighbourhood.
    fn golden_4x4_same_padding(b) {
        let x: Vec<f32> = (0..16).map(|v| v as f32).collect();
        let xt = b.upload(&[1, 1, 4, 4], &x).unwrap();
        let wt = b.upload(&[1, 1, 3, 3], &[1.0; 9]).unwrap();
        let y = read_blocking(
            b,
            &b.conv2d(
                &xt,
                &wt,
                None,
                Conv2dParams::new(1, 1, 1),
            )
            .unwrap(),
        )
        .unwrap();
        assert_eq!(
            y,
            vec![10., 18., 24., 18., 27., 45., 54., 39., 51., 81., 90., 63., 42., 66., 72., 50.]
        );
    }
}

backend_test! {
    /// `conv2d_relu` (the CPU's fused kernel; the GPU forward kernel's ReLU epilogue) is
    /// max(0, conv2d), with and without bias.
    fn conv2d_relu_is_relu_of_conv2d(b) {
        let p = Conv2dParams::new(2, 1, 1);
        let x = b.t(&[2, 3, 9, 8], &rnd(432, 1));
        let w = b.t(&[5, 3, 3, 3], &rnd(135, 2));
        let bias = b.t(&[5], &rnd(5, 3));
        for bias in [None, Some(&bias)] {
            let y = b.v(&b.conv2d(&x, &w, bias, p).unwrap());
            let want: Vec<f32> = y.iter().map(|v| v.max(0.0)).collect();
            let got = b.conv2d_relu(&x, &w, bias, p).unwrap();
            assert_eq!(got.shape(), &[2, 5, 5, 4]);
            assert_eq!(b.v(&got), want, "bias {}", bias.is_some());
        }
    }
}

/// The ReLU epilogue of every GPU kernel variant: conv2d_relu == relu(conv2d) exactly on that
/// variant, and conv2d near the CPU's.
#[test]
fn gpu_conv2d_relu_every_variant() {
    let c = CpuBackend::new();
    for v in Variant::ALL {
        let g = gpu_variant(v);
        for (xs, ws, p) in [
            ([2, 3, 9, 8], [5, 3, 3, 3], Conv2dParams::new(2, 1, 1)),
            ([1, 70, 12, 13], [66, 70, 3, 3], Conv2dParams::new(1, 1, 1)),
        ] {
            let (x, w, bias) = (rnd(numel(&xs), 1), rnd(numel(&ws), 2), rnd(ws[0], 3));
            let run = |be: &dyn Backend, relu: bool| {
                let (x, w, b) = (be.t(&xs, &x), be.t(&ws, &w), be.t(&[ws[0]], &bias));
                let y = if relu {
                    be.conv2d_relu(&x, &w, Some(&b), p)
                } else {
                    be.conv2d(&x, &w, Some(&b), p)
                };
                be.v(&y.unwrap())
            };
            let plain = run(&g, false);
            let want: Vec<f32> = plain.iter().map(|v| v.max(0.0)).collect();
            assert_eq!(run(&g, true), want, "{} {xs:?}", v.name());
            assert_close(
                &format!("conv2d {} {xs:?}", v.name()),
                &plain,
                &run(&c, false),
                1e-4,
            );
        }
    }
}

/// The browser's tuning path, natively: with tuning deferred, unknown classes run `blocked`
/// and wait; `tune_pending` (the page's gpu_tune) times their replays and fills the table; the
/// ops match the CPU before and after.
#[test]
fn gpu_deferred_tuning_as_in_the_browser() {
    let g = gpu_with(GpuOptions::default());
    g.set_kernel_policy(Policy::Auto);
    g.tuner().set_deferred(true);
    let op = ConvOp::Direct(Conv2dParams::new(1, 1, 1));
    let shapes = ([2, 5, 12, 11], [7, 5, 3, 3]);
    let mut worst = 0.0f32;
    conv_matches_cpu(&g, op, "deferred", shapes, true, 40, &mut worst);
    // forward, backward-input, backward-weight: three classes waiting, none chosen
    assert_eq!(g.tuner().pending(), 3);
    assert_eq!(g.tuner().to_json(), "{}");
    let t0 = std::time::Instant::now();
    let clock = || t0.elapsed().as_secs_f64() * 1e3;
    assert_eq!(pollster::block_on(g.tune_pending(2, &clock)).unwrap(), 3);
    assert_eq!(g.tuner().pending(), 0);
    let table = g.tuner().to_json();
    assert_eq!(table.matches(':').count(), 3, "{table}");
    conv_matches_cpu(&g, op, "after tuning", shapes, true, 41, &mut worst);
    assert_eq!(g.tuner().to_json(), table);
    println!("deferred tuning: {table}; max abs error {worst:e}");
}

backend_test! {
    fn bad_input_is_an_error(b) {
        let x = b.t(&[1, 2, 5, 5], &rnd(50, 1));
        let w = b.t(&[3, 2, 3, 3], &rnd(54, 2));
        let p = Conv2dParams::default();
        is_err_with(b.conv2d(&b.t(&[2, 5, 5], &rnd(50, 1)), &w, None, p), "rank 4");
        is_err_with(
            b.conv2d(&x, &b.t(&[3, 4, 3, 3], &rnd(108, 2)), None, p),
            "channels",
        );
        is_err_with(b.conv2d(&x, &w, Some(&b.t(&[2], &[0.0, 0.0])), p), "bias");
        is_err_with(
            b.conv2d(&x, &w, None, p.with_stride(0)),
            "stride",
        );
        is_err_with(
            b.conv2d(&x, &w, None, p.with_dilation(0)),
            "dilation",
        );
        is_err_with(
            b.conv2d(&x, &b.t(&[3, 2, 7, 7], &rnd(294, 2)), None, p),
            "kernel",
        );
        // per axis: one zero, a kernel too wide for the width only, sizes that overflow
        is_err_with(b.conv2d(&x, &w, None, p.with_stride((1, 0))), "stride");
        is_err_with(b.conv2d(&x, &w, None, p.with_dilation((0, 2))), "dilation");
        is_err_with(
            b.conv2d(&x, &b.t(&[3, 2, 3, 6], &rnd(108, 2)), None, p),
            "conv2d: along the width the kernel 6",
        );
        is_err_with(
            b.conv2d(&x, &w, None, p.with_padding((0, 1)).with_dilation((1, 4))),
            "along the width",
        );
        is_err_with(b.conv2d(&x, &w, None, p.with_dilation((usize::MAX / 2, 1))), "conv2d");
        is_err_with(b.conv2d(&x, &w, None, p.with_padding((1, usize::MAX / 2))), "conv2d");
        is_err_with(
            b.conv2d(&x, &w, None, p.with_padding(usize::MAX / 8)),
            "too large",
        );
        // a rectangular kernel is fine
        assert_eq!(
            b.conv2d(&x, &b.t(&[3, 2, 3, 2], &rnd(36, 2)), None, p).unwrap().shape(),
            &[1, 3, 3, 4]
        );
        is_err_with(
            b.conv2d_backward_input(&b.t(&[1, 3, 4, 4], &rnd(48, 3)), &w, &[1, 2, 5, 5], p),
            "output gradient",
        );
        is_err_with(
            b.conv2d_backward_weight(&x, &b.t(&[1, 3, 4, 4], &rnd(48, 3)), &[3, 2, 3, 3], p),
            "output gradient",
        );
    }

}

// ---------------------------------------------------------------- against a direct f64 loop
// The conv kernels at sizes where their fast paths split the work: many blocks of output pixels
// per sample (block edges in the middle of an output row), a batch of one, odd sizes, strides,
// dilation, and both ways of computing the input gradient (the stride-1 flipped-weight forward
// conv and im2col's col2im); then rectangular kernels and per-axis settings. Each case checks
// its transposed twin too, with the output_padding that gives back the input size.

#[derive(Clone, Copy, Debug)]
struct Case {
    n: usize,
    cin: usize,
    cout: usize,
    h: usize,
    w: usize,
    k: Hw,
    s: Hw,
    p: Hw,
    d: Hw,
}

/// A case: (n, cin, cout), (h, w), then kernel, stride, padding, dilation (each a number or
/// (rows, columns)).
fn case(
    [n, cin, cout]: [usize; 3],
    (h, w): (usize, usize),
    k: impl Into<Hw>,
    s: impl Into<Hw>,
    p: impl Into<Hw>,
    d: impl Into<Hw>,
) -> Case {
    let (k, s, p, d) = (k.into(), s.into(), p.into(), d.into());
    Case {
        n,
        cin,
        cout,
        h,
        w,
        k,
        s,
        p,
        d,
    }
}

impl Case {
    /// PyTorch's output length along one axis: (size + 2p - d(k-1) - 1) / s + 1.
    fn out_axis(size: usize, k: usize, s: usize, p: usize, d: usize) -> usize {
        (size + 2 * p - d * (k - 1) - 1) / s + 1
    }
    fn out(&self) -> (usize, usize) {
        let c = self;
        (
            Case::out_axis(c.h, c.k.h, c.s.h, c.p.h, c.d.h),
            Case::out_axis(c.w, c.k.w, c.s.w, c.p.w, c.d.w),
        )
    }
    /// The input rows/columns no window reaches: the transposed twin's output_padding.
    fn leftover(&self) -> Hw {
        let c = self;
        let rest = |size: usize, k: usize, s: usize, p: usize, d: usize| {
            (size + 2 * p - d * (k - 1) - 1) % s
        };
        Hw::new(
            rest(c.h, c.k.h, c.s.h, c.p.h, c.d.h),
            rest(c.w, c.k.w, c.s.w, c.p.w, c.d.w),
        )
    }
    /// Visit every (x index, w index, y index) product of the direct conv, by its definition:
    /// y[n, co, oy, ox] = sum x[n, ci, oy sh - ph + ky dh, ox sw - pw + kx dw] w[co, ci, ky, kx].
    fn each(&self, mut f: impl FnMut(usize, usize, usize)) {
        let c = self;
        let (ho, wo) = c.out();
        for n in 0..c.n {
            for co in 0..c.cout {
                for oy in 0..ho {
                    for ox in 0..wo {
                        let yi = ((n * c.cout + co) * ho + oy) * wo + ox;
                        for ci in 0..c.cin {
                            for ky in 0..c.k.h {
                                let iy = (oy * c.s.h + ky * c.d.h) as isize - c.p.h as isize;
                                if iy < 0 || iy >= c.h as isize {
                                    continue;
                                }
                                for kx in 0..c.k.w {
                                    let ix = (ox * c.s.w + kx * c.d.w) as isize - c.p.w as isize;
                                    if ix < 0 || ix >= c.w as isize {
                                        continue;
                                    }
                                    let xi =
                                        ((n * c.cin + ci) * c.h + iy as usize) * c.w + ix as usize;
                                    let wi = ((co * c.cin + ci) * c.k.h + ky) * c.k.w + kx;
                                    f(xi, wi, yi);
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}

fn check(be: &dyn Backend, c: Case, seed: u64) {
    let (ho, wo) = c.out();
    let xs = [c.n, c.cin, c.h, c.w];
    let ws = [c.cout, c.cin, c.k.h, c.k.w];
    let ys = [c.n, c.cout, ho, wo];
    let [x, w, gy, bias] = inputs([numel(&xs), numel(&ws), numel(&ys), c.cout], seed);
    let (nobias, gx, gw) = reference_sums(|f| c.each(f), &x, &w, &gy);
    let y = with_channel_bias(&nobias, &bias, ho * wo);
    let p = Conv2dParams {
        stride: c.s,
        padding: c.p,
        dilation: c.d,
    };
    let name = format!("{c:?}");
    let got = be
        .conv2d(
            &be.t(&xs, &x),
            &be.t(&ws, &w),
            Some(&be.t(&[c.cout], &bias)),
            p,
        )
        .unwrap();
    close_f64(&format!("{name} forward"), &be.v(&got), &y);
    let got = be
        .conv2d_backward_input(&be.t(&ys, &gy), &be.t(&ws, &w), &xs, p)
        .unwrap();
    close_f64(&format!("{name} backward-input"), &be.v(&got), &gx);
    let got = be
        .conv2d_backward_weight(&be.t(&xs, &x), &be.t(&ys, &gy), &ws, p)
        .unwrap();
    close_f64(&format!("{name} backward-weight"), &be.v(&got), &gw);

    // The transposed conv with this weight read as (Cin_t = cout, Cout_t = cin) is the backward
    // of this conv: its forward is gx (from gy), its backward-input is y without bias (from
    // x as its output gradient), its backward-weight is gw with the roles of x and gy swapped.
    // output_padding gives back the input rows and columns no window reaches.
    let pt = ConvTranspose2dParams {
        stride: c.s,
        padding: c.p,
        output_padding: c.leftover(),
        dilation: c.d,
    };
    assert_eq!(conv_transpose2d_shapes(&ys, &ws, None, pt).unwrap(), xs);
    let got = be
        .conv_transpose2d(&be.t(&ys, &gy), &be.t(&ws, &w), None, pt)
        .unwrap();
    close_f64(&format!("{name} conv_transpose2d"), &be.v(&got), &gx);
    let got = be
        .conv_transpose2d_backward_input(&be.t(&xs, &x), &be.t(&ws, &w), &ys, pt)
        .unwrap();
    close_f64(
        &format!("{name} conv_transpose2d backward-input"),
        &be.v(&got),
        &nobias,
    );
    let got = be
        .conv_transpose2d_backward_weight(&be.t(&ys, &gy), &be.t(&xs, &x), &ws, pt)
        .unwrap();
    close_f64(
        &format!("{name} conv_transpose2d backward-weight"),
        &be.v(&got),
        &gw,
    );
}

backend_test! {
    fn direct_loop_many_pixel_blocks_batch_one(b) {
        // 64 channels of 3x3: 576 taps, so a sample's 37 x 45 pixels are cut in many blocks
        check(b, case([1, 64, 24], (37, 45), 3, 1, 1, 1), 1);
    }
}

backend_test! {
    fn direct_loop_many_pixel_blocks_batch_three_odd_channels(b) {
        check(b, case([3, 33, 5], (29, 31), 3, 1, 1, 1), 2);
    }
}

backend_test! {
    fn direct_loop_stride_two_and_dilation(b) {
        check(b, case([2, 40, 7], (30, 27), 4, 2, 1, 1), 3);
        check(b, case([1, 48, 3], (33, 26), 3, 1, 2, 2), 4);
        check(b, case([2, 20, 9], (25, 23), 3, 3, 0, 2), 5);
    }
}

backend_test! {
    fn direct_loop_padding_beyond_the_kernel_and_valid_convs(b) {
        // p > d (k - 1): the input gradient cannot be the flipped forward conv; col2im does it
        check(b, case([2, 16, 4], (11, 13), 2, 1, 2, 1), 6);
        check(b, case([1, 70, 6], (26, 19), 3, 1, 0, 1), 7);
        // 1x1 (no im2col) over several blocks, and one output channel (DnCNN's last layer)
        check(b, case([2, 8, 3], (120, 130), 1, 1, 0, 1), 8);
        check(b, case([1, 48, 1], (40, 41), 3, 1, 1, 1), 9);
    }
}

backend_test! {
    /// Strided convs with 16 or more output channels, which the CPU runs without im2col
    /// (`cpu/conv_strided.rs`; their transposed twins' input gradient goes there too): the
    /// DCGAN discriminator's 4x4 stride 2, 80 channels (vectors of 2, 2 and 1), per-axis
    /// stride, padding and dilation, a 1x1 with a stride, and a stride on one axis only.
    fn direct_loop_strided_many_output_channels(b) {
        let table = [
            case([2, 6, 32], (15, 14), 4, 2, 1, 1),
            case([1, 5, 80], (11, 13), (3, 5), (2, 3), (1, 2), (2, 1)),
            case([3, 4, 16], (9, 10), 3, 3, 0, 1),
            case([2, 8, 64], (17, 16), 1, 2, 0, 1),
            case([1, 7, 48], (20, 9), (2, 3), (1, 2), (1, 1), 1),
            // 16 input and 32 output channels: the input gradient by Winograd on each phase
            // (`cpu/deconv_winograd.rs`), with phases of 8 and 7 rows
            case([3, 16, 32], (15, 14), 4, 2, 1, 1),
        ];
        for (i, c) in table.into_iter().enumerate() {
            check(b, c, 500 + 10 * i as u64);
        }
    }
}

backend_test! {
    /// 3x3 stride-1 convs with 16 or more channels each side, which the CPU runs as Winograd
    /// F(4x4, 3x3) on AVX-512 (`cpu/conv_winograd.rs`; their input gradient too, the flipped
    /// weight's forward, and their weight gradient): channels not a multiple of 16, output sizes
    /// of every remainder by 4 (partial tiles),
    /// padding 0, 2 and per axis, and an image of more tiles than one work item holds (bands).
    fn winograd_3x3_cases(b) {
        let table = [
            case([3, 17, 28], (9, 11), 3, 1, 1, 1),
            case([2, 33, 48], (8, 7), 3, 1, 0, 1),
            case([1, 16, 16], (6, 9), 3, 1, 2, 1),
            case([2, 20, 32], (7, 10), 3, 1, (1, 0), 1),
            case([1, 16, 32], (50, 47), 3, 1, 1, 1),
        ];
        for (i, c) in table.into_iter().enumerate() {
            check(b, c, 600 + 10 * i as u64);
        }
    }
}

backend_test! {
    /// conv2d_relu = max(0, conv2d) on a 3x3 stride-1 conv of 48 channels with a bias (the
    /// CPU's Winograd path adds the bias and applies the ReLU in its transpose).
    fn conv2d_relu_winograd_equals_relu_of_conv2d(b) {
        let (xs, ws) = ([2, 24, 13, 12], [48, 24, 3, 3]);
        let x = b.t(&xs, &rnd(numel(&xs), 71));
        let w = b.t(&ws, &rnd(numel(&ws), 72));
        let bias = b.t(&[48], &rnd(48, 73));
        let p = Conv2dParams::new(1, 1, 1);
        let y: Vec<f32> = b
            .v(&b.conv2d(&x, &w, Some(&bias), p).unwrap())
            .iter()
            .map(|v| v.max(0.0))
            .collect();
        let yr = b.v(&b.conv2d_relu(&x, &w, Some(&bias), p).unwrap());
        assert!(y.iter().any(|v| *v == 0.0) && y.iter().any(|v| *v > 0.0));
        assert_close("conv2d_relu 3x3 stride 1", &yr, &y, 1e-6);
    }
}

backend_test! {
    /// conv2d_relu (inference's fused ReLU) = max(0, conv2d) on a strided conv with 48 output
    /// channels (the CPU's `conv_strided.rs` path applies the ReLU in its transpose).
    fn conv2d_relu_strided_equals_relu_of_conv2d(b) {
        let (xs, ws) = ([2, 5, 13, 12], [48, 5, 3, 3]);
        let x = b.t(&xs, &rnd(numel(&xs), 61));
        let w = b.t(&ws, &rnd(numel(&ws), 62));
        let bias = b.t(&[48], &rnd(48, 63));
        let p = Conv2dParams::new(2, 1, 1);
        let y: Vec<f32> = b
            .v(&b.conv2d(&x, &w, Some(&bias), p).unwrap())
            .iter()
            .map(|v| v.max(0.0))
            .collect();
        let yr = b.v(&b.conv2d_relu(&x, &w, Some(&bias), p).unwrap());
        assert!(y.iter().any(|v| *v == 0.0) && y.iter().any(|v| *v > 0.0));
        assert_close("conv2d_relu stride 2", &yr, &y, 1e-6);
    }
}

backend_test! {
    /// Rectangular kernels and a stride, padding and dilation of their own per axis (PyTorch's
    /// tuple forms), on every path: stride 1 both ways (the flipped-weight forward for the input
    /// gradient), stride 1 on one axis only, padding beyond the kernel on one axis (col2im),
    /// 1xk and kx1 kernels, 1x1 with a stride, and sizes where the transposed twin needs an
    /// output_padding of its own per axis.
    fn direct_loop_rectangular_kernels_and_per_axis_settings(b) {
        //                 n cin cout  (h, w)    kernel   stride   padding  dilation
        let table = [
            case([2, 5, 4], (9, 11), (3, 5), 1, (1, 2), 1),
            case([1, 6, 3], (10, 7), (2, 3), 1, 0, (2, 1)),
            case([2, 3, 5], (12, 9), (3, 1), (2, 1), (1, 0), 1),
            case([1, 4, 2], (8, 13), (1, 4), (1, 3), (0, 2), (1, 2)),
            case([3, 2, 3], (11, 10), (2, 3), (3, 2), (0, 1), (2, 1)),
            case([1, 3, 4], (7, 9), (3, 2), (1, 2), (3, 0), 1),
            case([2, 4, 3], (13, 6), (5, 2), (2, 1), (2, 3), (1, 1)),
            case([1, 2, 2], (6, 15), (1, 1), (2, 3), (1, 0), 1),
            case([2, 3, 2], (9, 9), 3, (1, 2), (2, 1), (2, 1)),
            case([1, 35, 6], (21, 34), (3, 5), (1, 1), (1, 2), (1, 1)),
            case([1, 40, 5], (23, 30), (5, 3), (2, 1), (2, 1), (1, 2)),
        ];
        for (i, c) in table.into_iter().enumerate() {
            check(b, c, 100 + 10 * i as u64);
        }
    }
}

// ---------------------------------------------------------------- the GPU against its CPU twin

#[test]
fn gpu_matches_cpu_on_random_shapes() {
    conv_sweep("conv2d", Pick { seed: 11, i: 0 }, 100, |pick| {
        let n = pick.of(&[1, 2, 3]);
        let (cin, cout) = (pick.of(&[1, 3, 5, 17]), pick.of(&[1, 2, 7, 18, 33]));
        let (h, w) = (pick.of(&[5, 7, 9, 13]), pick.of(&[4, 6, 11]));
        // half the draws square with the same settings on both axes, half one per axis
        let sq = pick.of(&[true, false]);
        let k = pick.hw(&[1, 2, 3, 5], sq);
        let op = ConvOp::Direct(Conv2dParams {
            stride: pick.hw(&[1, 2, 3], sq),
            padding: pick.hw(&[0, 1, 2], sq),
            dilation: pick.hw(&[1, 2], sq),
        });
        let bias = pick.of(&[false, true]);
        (op, [n, cin, h, w], [cout, cin, k.h, k.w], bias)
    });
}

#[test]
fn gpu_splits_under_low_limits() {
    // 1 MiB per binding, 64 workgroups per dim: x 12x16x64x64 = 3 MiB, y 12x20x62x62 ~ 3.5 MiB
    let op = ConvOp::Direct(Conv2dParams::default());
    let mut worst = 0.0f32;
    let shapes = ([12, 16, 64, 64], [20, 16, 3, 3]);
    for v in Variant::ALL {
        let tag = format!("split ({})", v.name());
        conv_matches_cpu(
            &forced(small_gpu(), v),
            op,
            &tag,
            shapes,
            true,
            1,
            &mut worst,
        );
    }
    println!("conv2d split under a 1 MiB binding limit, every variant: max abs error {worst:e}");
}

#[test]
fn gpu_many_dispatches_when_workgroups_per_dim_is_tiny() {
    // 4 workgroups per dimension = 16 per dispatch: every launch below is split by wg_base
    let op = ConvOp::Direct(Conv2dParams::new(2, 1, 1));
    let mut worst = 0.0f32;
    let shapes = ([3, 5, 33, 31], [37, 5, 3, 3]);
    for v in Variant::ALL {
        let g = gpu_with(GpuOptions {
            max_storage_binding_bytes: None,
            max_workgroups_per_dim: Some(4),
            ..Default::default()
        });
        let tag = format!("many dispatches ({})", v.name());
        conv_matches_cpu(&forced(g, v), op, &tag, shapes, false, 20, &mut worst);
    }
    println!("conv2d launches split over many dispatches, every variant: max abs error {worst:e}");
}

#[test]
fn gpu_bad_shapes_and_oversized_samples_are_errors() {
    let g = gpu_with(GpuOptions {
        max_storage_binding_bytes: Some(1 << 20),
        max_workgroups_per_dim: None,
        ..Default::default()
    });
    let p = Conv2dParams::default();
    let x = g.upload(&[1, 3, 8, 8], &rnd(192, 1)).unwrap();
    let w = g.upload(&[4, 2, 3, 3], &rnd(72, 2)).unwrap();
    assert!(matches!(g.conv2d(&x, &w, None, p), Err(Error::Shape(_))));
    let gy = g.upload(&[1, 4, 5, 5], &rnd(100, 3)).unwrap();
    let w3 = g.upload(&[4, 3, 3, 3], &rnd(108, 4)).unwrap();
    assert!(matches!(
        g.conv2d_backward_input(&gy, &w3, &[1, 3, 8, 8], p),
        Err(Error::Shape(_))
    ));
    assert!(matches!(
        g.conv2d_backward_weight(&x, &gy, &[4, 3, 3, 3], p),
        Err(Error::Shape(_))
    ));
    let a = g.upload(&[3, 4], &rnd(12, 5)).unwrap();
    assert!(matches!(
        g.matmul(&a, &a, false, false),
        Err(Error::Shape(_))
    ));
    assert!(g.matmul(&a, &a, false, true).is_ok());
    // one sample of 1 x 70 x 64 x 64 floats (1.1 MiB) cannot fit a 1 MiB binding
    let big = g.upload(&[1, 70, 64, 64], &vec![0.0; 70 * 4096]).unwrap();
    let wb = g.upload(&[1, 70, 1, 1], &[0.0; 70]).unwrap();
    match g.conv2d(&big, &wb, None, p) {
        Err(Error::Gpu(m)) => assert!(m.contains("binding"), "{m}"),
        other => panic!("expected a GPU limit error, got {other:?}"),
    }
    let cpu_tensor = CpuBackend::new()
        .upload(&[1, 3, 8, 8], &rnd(192, 1))
        .unwrap();
    assert!(g.conv2d(&cpu_tensor, &w3, None, p).is_err());
}

/// Both backends refuse the same bad input with the same words: the rules live once in
/// `backend/` (conv_geom.rs, batchnorm.rs).
#[test]
fn refusals_are_word_for_word_the_same() {
    same_refusals(5, |be, case| {
        let t = |s: &[usize]| be.fill(s, 1.0).unwrap();
        let (x, w, one) = (t(&[2, 1, 5, 5]), t(&[3, 1, 3, 3]), t(&[1]));
        let p = Conv2dParams::default();
        match case {
            0 => be.conv2d(&x, &t(&[3, 2, 3, 3]), None, p).map(|_| ()),
            1 => be.conv2d(&x, &w, Some(&one), p).map(|_| ()),
            2 => be
                .conv2d_backward_input(&t(&[2, 3, 4, 3]), &w, &[2, 1, 5, 5], p)
                .map(|_| ()),
            3 => be
                .conv2d_backward_weight(&x, &t(&[2, 3, 3]), &[3, 1, 3, 3], p)
                .map(|_| ()),
            _ => be.conv2d(&x, &w, None, p.with_stride(0)).map(|_| ()),
        }
    });
}

// ---------------------------------------------------------------- against PyTorch itself

/// One case of tests/data/conv_torch.txt (written by tools/conv_torch_fixture.py): the op, its
/// settings, and (name, shape, values) of x, w, b, gy and PyTorch's y, gx, gw, gb.
struct TorchCase {
    op: ConvOp,
    tensors: Vec<(String, Vec<usize>, Vec<f64>)>,
}

impl TorchCase {
    fn get(&self, name: &str) -> (&[usize], &[f64]) {
        let t = self.tensors.iter().find(|t| t.0 == name).expect(name);
        (&t.1, &t.2)
    }
}

fn torch_cases() -> Vec<TorchCase> {
    let text = include_str!("../data/conv_torch.txt");
    let mut cases: Vec<TorchCase> = Vec::new();
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let mut it = line.split_whitespace();
        let head = it.next().unwrap();
        if head == "case" {
            let kind = it.next().unwrap();
            let v: Vec<usize> = it.map(|t| t.parse().unwrap()).collect();
            let hw = |i: usize| Hw::new(v[i], v[i + 1]);
            let op = match kind {
                "conv2d" => ConvOp::Direct(Conv2dParams {
                    stride: hw(0),
                    padding: hw(2),
                    dilation: hw(6),
                }),
                _ => ConvOp::Transposed(ConvTranspose2dParams {
                    stride: hw(0),
                    padding: hw(2),
                    output_padding: hw(4),
                    dilation: hw(6),
                }),
            };
            cases.push(TorchCase {
                op,
                tensors: vec![],
            });
        } else {
            let rank: usize = it.next().unwrap().parse().unwrap();
            let shape: Vec<usize> = (&mut it).take(rank).map(|t| t.parse().unwrap()).collect();
            let vals: Vec<f64> = it.map(|t| t.parse().unwrap()).collect();
            assert_eq!(vals.len(), shape.iter().product::<usize>(), "{head}");
            let case = cases.last_mut().expect("a case line first");
            case.tensors.push((head.to_string(), shape, vals));
        }
    }
    cases
}

backend_test! {
    /// Rectangular kernels and per-axis stride, padding, output_padding and dilation against
    /// PyTorch's own F.conv2d / F.conv_transpose2d and autograd (float64 on the same f32 inputs).
    fn pytorch_fixture_rectangular_per_axis(b) {
        let cases = torch_cases();
        assert_eq!(cases.len(), 6);
        for c in cases {
            let t = |name: &str| {
                let (s, v) = c.get(name);
                let v: Vec<f32> = v.iter().map(|e| *e as f32).collect();
                b.t(s, &v)
            };
            let (x, w, bias, gy) = (t("x"), t("w"), t("b"), t("gy"));
            let name = format!("{} {:?}", c.op.name(), c.op);
            let y = c.op.forward(b, &x, &w, Some(&bias)).unwrap();
            assert_eq!(y.shape(), c.get("y").0, "{name}");
            close_f64(&format!("{name} forward"), &b.v(&y), c.get("y").1);
            let gx = c.op.backward_input(b, &gy, &w, x.shape()).unwrap();
            close_f64(&format!("{name} backward-input"), &b.v(&gx), c.get("gx").1);
            let gw = c.op.backward_weight(b, &x, &gy, w.shape()).unwrap();
            close_f64(&format!("{name} backward-weight"), &b.v(&gw), c.get("gw").1);
            let gb = b.bias_grad(&gy).unwrap();
            close_f64(&format!("{name} bias"), &b.v(&gb), c.get("gb").1);
        }
    }
}
