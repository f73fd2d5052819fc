//! conv2d (and conv2d_relu): backward against finite differences, golden values by hand,
//! every variant against a direct f64 loop at sizes where the CPU's fast paths split the work
//! (checking the transposed conv that is its backward too), bad input; on the GPU, a random
//! sweep against the CPU twin, the splitting paths under low device limits, and the refusals.

use crate::common::*;
use nnlab::backend::*;
use nnlab::cpu::CpuBackend;
use nnlab::gpu::GpuOptions;
use nnlab::rng;
use nnlab::Error;

// ---------------------------------------------------------------- every backend

fn conv_fd_case(
    b: &dyn Backend,
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
    let p = Conv2dParams {
        stride,
        padding,
        dilation,
    };
    conv_fd_check(b, ConvOp::Direct(p), [n, cin, cout, h, w, k], seed);
}

backend_test! {
    fn conv2d_backward_matches_finite_differences(b) {
        //            n cin cout h  w  k  s  p  d
        conv_fd_case(b, 1, 2, 3, 7, 5, 3, 1, 0, 1, 10);
        conv_fd_case(b, 3, 2, 3, 6, 7, 3, 2, 1, 1, 20);
        conv_fd_case(b, 1, 3, 2, 9, 9, 3, 1, 2, 2, 30);
        conv_fd_case(b, 3, 1, 2, 8, 5, 2, 2, 0, 2, 40);
        conv_fd_case(b, 3, 2, 2, 5, 5, 1, 1, 0, 1, 50); // 1x1: the path without im2col
        conv_fd_case(b, 1, 2, 3, 5, 6, 3, 2, 2, 1, 60);
        conv_fd_case(b, 3, 3, 1, 7, 7, 5, 2, 1, 1, 70);
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
                Conv2dParams {
                    stride: 2,
                    padding: 1,
                    dilation: 1,
                },
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
                Conv2dParams {
                    padding: 1,
                    ..Default::default()
                },
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
                Conv2dParams {
                    stride: 1,
                    padding: 1,
                    dilation: 1,
                },
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
    /// `conv2d_relu` (the CPU's fused kernel; the trait's conv-then-ReLU on the GPU) is
    /// max(0, conv2d), with and without bias.
    fn conv2d_relu_is_relu_of_conv2d(b) {
        let p = Conv2dParams {
            stride: 2,
            padding: 1,
            dilation: 1,
        };
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
            b.conv2d(&x, &w, None, Conv2dParams { stride: 0, ..p }),
            "stride",
        );
        is_err_with(
            b.conv2d(&x, &w, None, Conv2dParams { dilation: 0, ..p }),
            "dilation",
        );
        is_err_with(
            b.conv2d(&x, &b.t(&[3, 2, 7, 7], &rnd(294, 2)), None, p),
            "kernel",
        );
        is_err_with(
            b.conv2d(&x, &b.t(&[3, 2, 3, 2], &rnd(36, 2)), None, p),
            "square",
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
// conv and im2col's col2im).

#[derive(Clone, Copy, Debug)]
struct Case {
    n: usize,
    cin: usize,
    cout: usize,
    h: usize,
    w: usize,
    k: usize,
    s: usize,
    p: usize,
    d: usize,
}

impl Case {
    fn out(&self, size: usize) -> usize {
        (size + 2 * self.p - self.d * (self.k - 1) - 1) / self.s + 1
    }
    /// Visit every (x index, w index, y index) product of the direct conv.
    fn each(&self, mut f: impl FnMut(usize, usize, usize)) {
        let (ho, wo) = (self.out(self.h), self.out(self.w));
        for n in 0..self.n {
            for co in 0..self.cout {
                for oy in 0..ho {
                    for ox in 0..wo {
                        let yi = ((n * self.cout + co) * ho + oy) * wo + ox;
                        for ci in 0..self.cin {
                            for ky in 0..self.k {
                                let iy = (oy * self.s + ky * self.d) as isize - self.p as isize;
                                if iy < 0 || iy >= self.h as isize {
                                    continue;
                                }
                                for kx in 0..self.k {
                                    let ix = (ox * self.s + kx * self.d) as isize - self.p as isize;
                                    if ix < 0 || ix >= self.w as isize {
                                        continue;
                                    }
                                    let xi = ((n * self.cin + ci) * self.h + iy as usize) * self.w
                                        + ix as usize;
                                    let wi = ((co * self.cin + ci) * self.k + ky) * self.k + kx;
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

fn close_f64(name: &str, got: &[f32], want: &[f64]) {
    assert_eq!(got.len(), want.len(), "{name}: length");
    let scale = want.iter().fold(1.0f64, |m, v| m.max(v.abs()));
    let worst = got
        .iter()
        .zip(want)
        .map(|(g, w)| (*g as f64 - w).abs())
        .fold(0.0f64, f64::max);
    assert!(
        worst <= 1e-5 * scale,
        "{name}: max |error| {worst} (largest value {scale})"
    );
}

fn check(be: &dyn Backend, c: Case, seed: u64) {
    let (ho, wo) = (c.out(c.h), c.out(c.w));
    let xs = [c.n, c.cin, c.h, c.w];
    let ws = [c.cout, c.cin, c.k, c.k];
    let ys = [c.n, c.cout, ho, wo];
    let x = rng::uniform_vec(xs.iter().product(), -1.0, 1.0, seed);
    let w = rng::uniform_vec(ws.iter().product(), -1.0, 1.0, seed + 1);
    let gy = rng::uniform_vec(ys.iter().product(), -1.0, 1.0, seed + 2);
    let bias = rng::uniform_vec(c.cout, -1.0, 1.0, seed + 3);
    let (mut y, mut gx, mut gw) = (
        vec![0.0f64; gy.len()],
        vec![0.0f64; x.len()],
        vec![0.0f64; w.len()],
    );
    c.each(|xi, wi, yi| {
        y[yi] += x[xi] as f64 * w[wi] as f64;
        gx[xi] += gy[yi] as f64 * w[wi] as f64;
        gw[wi] += gy[yi] as f64 * x[xi] as f64;
    });
    let plane = ho * wo;
    for (i, v) in y.iter_mut().enumerate() {
        *v += bias[(i / plane) % c.cout] as f64;
    }
    let up = |s: &[usize], v: &[f32]| be.upload(s, v).unwrap();
    let read = |t: &nnlab::Tensor| read_blocking(be, t).unwrap();
    let p = Conv2dParams {
        stride: c.s,
        padding: c.p,
        dilation: c.d,
    };
    let name = format!("{c:?}");
    let got = be
        .conv2d(&up(&xs, &x), &up(&ws, &w), Some(&up(&[c.cout], &bias)), p)
        .unwrap();
    close_f64(&format!("{name} forward"), &read(&got), &y);
    let got = be
        .conv2d_backward_input(&up(&ys, &gy), &up(&ws, &w), &xs, p)
        .unwrap();
    close_f64(&format!("{name} backward-input"), &read(&got), &gx);
    let got = be
        .conv2d_backward_weight(&up(&xs, &x), &up(&ys, &gy), &ws, p)
        .unwrap();
    close_f64(&format!("{name} backward-weight"), &read(&got), &gw);

    // The transposed conv with this weight read as (Cin_t = cout, Cout_t = cin) is the backward
    // of this conv: its forward is gx (from gy), its backward-input is y without bias (from
    // x as its output gradient), its backward-weight is gw with the roles of x and gy swapped.
    let pt = ConvTranspose2dParams {
        stride: c.s,
        padding: c.p,
        output_padding: 0,
        dilation: c.d,
    };
    let tshape = conv_transpose2d_shapes(&ys, &ws, None, pt).unwrap();
    if [tshape[2], tshape[3]] != [c.h, c.w] {
        return; // this conv drops input rows that no window reaches; no transposed twin
    }
    let got = be
        .conv_transpose2d(&up(&ys, &gy), &up(&ws, &w), None, pt)
        .unwrap();
    close_f64(&format!("{name} conv_transpose2d"), &read(&got), &gx);
    let nobias: Vec<f64> = {
        let mut v = vec![0.0f64; gy.len()];
        c.each(|xi, wi, yi| v[yi] += x[xi] as f64 * w[wi] as f64);
        v
    };
    let got = be
        .conv_transpose2d_backward_input(&up(&xs, &x), &up(&ws, &w), &ys, pt)
        .unwrap();
    close_f64(
        &format!("{name} conv_transpose2d backward-input"),
        &read(&got),
        &nobias,
    );
    let got = be
        .conv_transpose2d_backward_weight(&up(&ys, &gy), &up(&xs, &x), &ws, pt)
        .unwrap();
    close_f64(
        &format!("{name} conv_transpose2d backward-weight"),
        &read(&got),
        &gw,
    );
}

backend_test! {
    fn direct_loop_many_pixel_blocks_batch_one(b) {
        // 64 channels of 3x3: 576 taps, so a sample's 37 x 45 pixels are cut in many blocks
        let c = Case {
            n: 1,
            cin: 64,
            cout: 24,
            h: 37,
            w: 45,
            k: 3,
            s: 1,
            p: 1,
            d: 1,
        };
        check(b, c, 1);
    }
}

backend_test! {
    fn direct_loop_many_pixel_blocks_batch_three_odd_channels(b) {
        let c = Case {
            n: 3,
            cin: 33,
            cout: 5,
            h: 29,
            w: 31,
            k: 3,
            s: 1,
            p: 1,
            d: 1,
        };
        check(b, c, 2);
    }
}

backend_test! {
    fn direct_loop_stride_two_and_dilation(b) {
        check(
            b,
            Case {
                n: 2,
                cin: 40,
                cout: 7,
                h: 30,
                w: 27,
                k: 4,
                s: 2,
                p: 1,
                d: 1,
            },
            3,
        );
        check(
            b,
            Case {
                n: 1,
                cin: 48,
                cout: 3,
                h: 33,
                w: 26,
                k: 3,
                s: 1,
                p: 2,
                d: 2,
            },
            4,
        );
        check(
            b,
            Case {
                n: 2,
                cin: 20,
                cout: 9,
                h: 25,
                w: 23,
                k: 3,
                s: 3,
                p: 0,
                d: 2,
            },
            5,
        );
    }
}

backend_test! {
    fn direct_loop_padding_beyond_the_kernel_and_valid_convs(b) {
        // p > d (k - 1): the input gradient cannot be the flipped forward conv; col2im does it
        check(
            b,
            Case {
                n: 2,
                cin: 16,
                cout: 4,
                h: 11,
                w: 13,
                k: 2,
                s: 1,
                p: 2,
                d: 1,
            },
            6,
        );
        check(
            b,
            Case {
                n: 1,
                cin: 70,
                cout: 6,
                h: 26,
                w: 19,
                k: 3,
                s: 1,
                p: 0,
                d: 1,
            },
            7,
        );
        // 1x1 (no im2col) over several blocks, and one output channel (DnCNN's last layer)
        check(
            b,
            Case {
                n: 2,
                cin: 8,
                cout: 3,
                h: 120,
                w: 130,
                k: 1,
                s: 1,
                p: 0,
                d: 1,
            },
            8,
        );
        check(
            b,
            Case {
                n: 1,
                cin: 48,
                cout: 1,
                h: 40,
                w: 41,
                k: 3,
                s: 1,
                p: 1,
                d: 1,
            },
            9,
        );
    }
}

// ---------------------------------------------------------------- the GPU against its CPU twin

#[test]
fn gpu_matches_cpu_on_random_shapes() {
    conv_sweep("conv2d", Pick { seed: 11, i: 0 }, 100, |pick| {
        let n = pick.of(&[1, 2, 3]);
        let (cin, cout) = (pick.of(&[1, 3, 5, 17]), pick.of(&[1, 2, 7, 18, 33]));
        let (h, w) = (pick.of(&[5, 7, 9, 13]), pick.of(&[4, 6, 11]));
        let k = pick.of(&[1, 2, 3, 5]);
        let op = ConvOp::Direct(Conv2dParams {
            stride: pick.of(&[1, 2]),
            padding: pick.of(&[0, 1, 2]),
            dilation: pick.of(&[1, 2]),
        });
        let bias = pick.of(&[false, true]);
        (op, [n, cin, h, w], [cout, cin, k, k], bias)
    });
}

#[test]
fn gpu_splits_under_low_limits() {
    // 1 MiB per binding, 64 workgroups per dim: x 12x16x64x64 = 3 MiB, y 12x20x62x62 ~ 3.5 MiB
    let op = ConvOp::Direct(Conv2dParams::default());
    let mut worst = 0.0f32;
    let shapes = ([12, 16, 64, 64], [20, 16, 3, 3]);
    conv_matches_cpu(&small_gpu(), op, "split", shapes, true, 1, &mut worst);
    println!("conv2d split under a 1 MiB binding limit: max abs error {worst:e}");
}

#[test]
fn gpu_many_dispatches_when_workgroups_per_dim_is_tiny() {
    // 4 workgroups per dimension = 16 per dispatch: every launch below is split by wg_base
    let g = gpu_with(GpuOptions {
        max_storage_binding_bytes: None,
        max_workgroups_per_dim: Some(4),
    });
    let op = ConvOp::Direct(Conv2dParams {
        stride: 2,
        padding: 1,
        dilation: 1,
    });
    let mut worst = 0.0f32;
    let shapes = ([3, 5, 33, 31], [37, 5, 3, 3]);
    conv_matches_cpu(&g, op, "many dispatches", shapes, false, 20, &mut worst);
    println!("conv2d launches split over many dispatches: max abs error {worst:e}");
}

#[test]
fn gpu_bad_shapes_and_oversized_samples_are_errors() {
    let g = gpu_with(GpuOptions {
        max_storage_binding_bytes: Some(1 << 20),
        max_workgroups_per_dim: None,
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
            _ => be
                .conv2d(&x, &w, None, Conv2dParams { stride: 0, ..p })
                .map(|_| ()),
        }
    });
}
