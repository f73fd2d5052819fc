//! conv_transpose2d: backward against finite differences, the lecture's construction (zero
//! insertion, padding, flipped kernel) against the PyTorch-style op, a golden value by hand, bad
//! input; on the GPU, a random sweep against the CPU twin and the splitting paths. (The direct
//! f64 loop of conv2d.rs checks the transposed conv as conv2d's backward too.)

use crate::common::*;
use crate::conv_reference::*;
use nnlab::backend::conv_arith::{flip_transpose_weight, lecture_transposed, stretch_and_pad};
use nnlab::backend::*;
use nnlab::gpu::Variant;

// ---------------------------------------------------------------- every backend

/// conv_transpose2d's three backward results vs finite differences for x (n, cin, h, w) to
/// `cout` channels; kernel, stride, padding, output_padding, dilation each a number or
/// (rows, columns).
fn convt_fd_case(
    b: &dyn Backend,
    [n, cin, cout, h, w]: [usize; 5],
    k: impl Into<Hw>,
    (s, p, a, d): (impl Into<Hw>, impl Into<Hw>, impl Into<Hw>, impl Into<Hw>),
    seed: u64,
) {
    let p = ConvTranspose2dParams::default()
        .with_stride(s)
        .with_padding(p)
        .with_output_padding(a)
        .with_dilation(d);
    conv_fd_check(b, ConvOp::Transposed(p), [n, cin, cout, h, w], k, seed);
}

backend_test! {
    fn conv_transpose2d_backward_matches_finite_differences(b) {
        //              n cin cout h  w    k   (s, p, op, d)
        convt_fd_case(b, [1, 2, 3, 3, 4], 3, (2, 1, 1, 1), 110);
        convt_fd_case(b, [3, 3, 2, 4, 4], 3, (1, 0, 0, 1), 120);
        convt_fd_case(b, [3, 2, 2, 3, 5], 4, (2, 1, 0, 1), 130);
        convt_fd_case(b, [1, 2, 1, 4, 3], 3, (2, 2, 1, 2), 140);
        convt_fd_case(b, [2, 1, 2, 3, 3], 3, (1, 1, 1, 2), 150); // output_padding >= stride (allowed when < dilation)
        convt_fd_case(b, [3, 2, 3, 5, 5], 1, (1, 0, 0, 1), 160); // 1x1
    }
}

backend_test! {
    /// Rectangular kernels and per-axis stride, padding, output_padding and dilation.
    fn conv_transpose2d_per_axis_backward_matches_finite_differences(b) {
        convt_fd_case(b, [2, 2, 3, 3, 4], (3, 2), ((2, 1), (1, 0), (1, 0), 1), 170);
        convt_fd_case(b, [1, 3, 2, 4, 3], (2, 4), ((1, 3), (0, 2), (0, 2), (1, 1)), 180);
        convt_fd_case(b, [2, 2, 2, 3, 5], (1, 3), ((3, 1), (0, 1), (2, 1), (1, 2)), 190);
        convt_fd_case(b, [1, 2, 3, 4, 4], (4, 1), ((2, 2), (2, 0), (1, 0), (2, 1)), 200);
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

// ---------------------------------------------------------------- against PyTorch's definition
// conv_transpose2d by its own definition (the scatter form, independent of conv2d):
//   y[n, co, i sh - ph + ky dh, j sw - pw + kx dw] += x[n, ci, i, j] w[ci, co, ky, kx]
// kept where that lands inside the (Ho, Wo) output, Ho = (H-1) sh - 2 ph + dh (kh-1) + ah + 1.
// Its backward-input and backward-weight are the same sum read the other ways.

/// (n, cin, cout), (h, w), then kernel, stride, padding, output_padding, dilation per axis.
#[derive(Clone, Copy, Debug)]
struct TCase {
    ncc: [usize; 3],
    hw: (usize, usize),
    k: Hw,
    p: ConvTranspose2dParams,
}

fn tcase(
    ncc: [usize; 3],
    hw: (usize, usize),
    k: impl Into<Hw>,
    (s, p, a, d): (impl Into<Hw>, impl Into<Hw>, impl Into<Hw>, impl Into<Hw>),
) -> TCase {
    let p = ConvTranspose2dParams::default()
        .with_stride(s)
        .with_padding(p)
        .with_output_padding(a)
        .with_dilation(d);
    TCase {
        ncc,
        hw,
        k: k.into(),
        p,
    }
}

impl TCase {
    fn out(&self) -> (usize, usize) {
        let (p, k) = (self.p, self.k);
        let axis = |i: usize, k: usize, f: fn(Hw) -> usize| {
            (i - 1) * f(p.stride) + f(p.dilation) * (k - 1) + f(p.output_padding) + 1
                - 2 * f(p.padding)
        };
        (axis(self.hw.0, k.h, |v| v.h), axis(self.hw.1, k.w, |v| v.w))
    }
    /// Visit every (x index, w index, y index) product of the definition.
    fn each(&self, mut f: impl FnMut(usize, usize, usize)) {
        let ([n, cin, cout], (h, w), k, p) = (self.ncc, self.hw, self.k, self.p);
        let (ho, wo) = self.out();
        for b in 0..n {
            for ci in 0..cin {
                for i in 0..h {
                    for j in 0..w {
                        let xi = ((b * cin + ci) * h + i) * w + j;
                        for co in 0..cout {
                            for ky in 0..k.h {
                                let oy = (i * p.stride.h + ky * p.dilation.h) as isize
                                    - p.padding.h as isize;
                                if oy < 0 || oy >= ho as isize {
                                    continue;
                                }
                                for kx in 0..k.w {
                                    let ox = (j * p.stride.w + kx * p.dilation.w) as isize
                                        - p.padding.w as isize;
                                    if ox < 0 || ox >= wo as isize {
                                        continue;
                                    }
                                    let yi =
                                        ((b * cout + co) * ho + oy as usize) * wo + ox as usize;
                                    let wi = ((ci * cout + co) * k.h + ky) * k.w + kx;
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

fn tcheck(be: &dyn Backend, c: TCase, seed: u64) {
    let ([n, cin, cout], (h, w)) = (c.ncc, c.hw);
    let (ho, wo) = c.out();
    let (xs, ws, ys) = ([n, cin, h, w], [cin, cout, c.k.h, c.k.w], [n, cout, ho, wo]);
    let [x, wt, gy, bias] = inputs([numel(&xs), numel(&ws), numel(&ys), cout], seed);
    let (y, gx, gw) = reference_sums(|f| c.each(f), &x, &wt, &gy);
    let y = with_channel_bias(&y, &bias, ho * wo);
    let name = format!("{c:?}");
    let got = be
        .conv_transpose2d(
            &be.t(&xs, &x),
            &be.t(&ws, &wt),
            Some(&be.t(&[cout], &bias)),
            c.p,
        )
        .unwrap();
    assert_eq!(got.shape(), &ys, "{name}");
    close_f64(&format!("{name} forward"), &be.v(&got), &y);
    let got = be
        .conv_transpose2d_backward_input(&be.t(&ys, &gy), &be.t(&ws, &wt), &xs, c.p)
        .unwrap();
    close_f64(&format!("{name} backward-input"), &be.v(&got), &gx);
    let got = be
        .conv_transpose2d_backward_weight(&be.t(&xs, &x), &be.t(&ys, &gy), &ws, c.p)
        .unwrap();
    close_f64(&format!("{name} backward-weight"), &be.v(&got), &gw);
}

backend_test! {
    /// A table of square and per-axis cases against the definition: the GAN's 4x4 stride 2,
    /// rectangular kernels, stride/padding/output_padding/dilation of their own per axis,
    /// output_padding >= stride where the dilation allows it, and the stride-1 path.
    fn definition_square_rectangular_and_per_axis(b) {
        //                ncc        (h, w)   kernel   (stride, padding, output_padding, dilation)
        let table = [
            tcase([2, 6, 4], (5, 5), 4, (2, 1, 0, 1)),
            tcase([1, 5, 3], (4, 6), (3, 5), (1, (1, 2), 0, 1)),
            tcase([2, 3, 4], (5, 4), (2, 3), ((2, 1), 0, (1, 0), 1)),
            tcase([1, 4, 2], (3, 7), (3, 1), ((3, 2), (1, 0), (2, 1), (1, 2))),
            tcase([2, 2, 3], (6, 3), (1, 4), ((1, 3), (0, 2), (0, 2), (1, 1))),
            tcase([1, 3, 3], (4, 4), (3, 2), ((1, 2), (2, 1), (1, 1), (2, 1))),
            tcase([1, 2, 5], (3, 5), (5, 3), ((2, 3), (3, 1), (1, 2), (1, 2))),
            tcase([3, 4, 2], (7, 6), (2, 2), ((1, 1), (0, 1), (0, 0), (3, 1))),
            tcase([1, 33, 17], (9, 11), (4, 3), ((2, 1), (1, 1), (1, 0), (1, 1))),
            // the CPU's stride-1 tap GEMMs (forward, backward-input and -weight)
            tcase([3, 40, 20], (13, 12), 3, (1, 1, 0, 1)),
        ];
        for (i, c) in table.into_iter().enumerate() {
            tcheck(b, c, 300 + 10 * i as u64);
        }
    }
}

backend_test! {
    /// Where the CPU gathers each output pixel from its stride phase's taps (`cpu/deconv.rs`:
    /// 16 or more output channels): the DCGAN's 4x4 stride 2, channels not a multiple of 16
    /// (80: vectors of 2, 2 and 1), per-axis stride,
    /// padding, output_padding and dilation, a stride larger than the kernel (phases with no
    /// tap: bias only), padding beyond the kernel, and a batch of one with more pixels per
    /// phase row than one tile holds.
    fn definition_phase_gather_cases(b) {
        //                ncc        (h, w)   kernel   (stride, padding, output_padding, dilation)
        let table = [
            tcase([3, 24, 32], (7, 7), 4, (2, 1, 0, 1)),
            tcase([2, 7, 80], (5, 6), 4, (2, 1, 1, 1)),
            tcase([2, 10, 64], (5, 6), (3, 4), ((2, 3), (1, 2), (1, 0), (1, 1))),
            tcase([1, 8, 48], (4, 5), 3, (3, 0, 2, 2)),
            tcase([2, 5, 16], (4, 4), 1, (2, 0, 1, 1)),
            tcase([2, 6, 16], (5, 4), (2, 3), ((1, 2), (2, 1), (0, 1), (2, 1))),
            tcase([1, 9, 16], (19, 21), (4, 5), ((2, 3), (1, 2), (0, 1), (1, 1))),
            tcase([2, 4, 64], (6, 7), 5, ((3, 2), (2, 5), (2, 1), (1, 1))),
        ];
        for (i, c) in table.into_iter().enumerate() {
            tcheck(b, c, 400 + 10 * i as u64);
        }
    }
}

backend_test! {
    /// Where the CPU runs Winograd F(2x2, 2x2) on each stride phase (`cpu/deconv_winograd.rs`:
    /// every phase has two taps, 16 or more input channels): the DCGAN's shape with channels
    /// not a multiple of 16 and a batch of 5 (sample groups of unequal size), phases of odd
    /// length (half tiles, output_padding), padding 0 on one axis and 2 on the other, a
    /// rectangular image, and a 6x6 kernel at stride 3 (two taps per phase too).
    fn definition_winograd_phase_cases(b) {
        //                ncc        (h, w)   kernel   (stride, padding, output_padding, dilation)
        let table = [
            tcase([5, 17, 28], (7, 7), 4, (2, 1, 0, 1)),
            tcase([1, 16, 16], (9, 6), 4, (2, 1, 1, 1)),
            tcase([2, 20, 48], (8, 5), 4, (2, (0, 2), (0, 1), 1)),
            tcase([2, 33, 32], (6, 6), 6, (3, 2, 0, 1)),
        ];
        for (i, c) in table.into_iter().enumerate() {
            tcheck(b, c, 500 + 10 * i as u64);
        }
    }
}

backend_test! {
    fn bad_input_is_an_error(b) {
        let x = b.t(&[1, 2, 5, 5], &rnd(50, 1));
        let w = b.t(&[3, 2, 3, 3], &rnd(54, 2));
        let tp = ConvTranspose2dParams::new(2, 1, 2, 1);
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
                ConvTranspose2dParams::default().with_stride(0),
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
        // per axis: output_padding must be below max(stride, dilation) on each axis
        let p2 = ConvTranspose2dParams::new(2, 1, 0, 1);
        let w2 = b.t(&[2, 3, 3, 3], &rnd(54, 2));
        is_err_with(
            b.conv_transpose2d(&x, &w2, None, p2.with_output_padding((0, 2))),
            "conv_transpose2d: output_padding 2 along the width must be smaller than stride 2 or dilation 1",
        );
        is_err_with(
            b.conv_transpose2d(&x, &w2, None, p2.with_stride((1, 2)).with_output_padding((1, 1))),
            "along the height",
        );
        assert_eq!(
            b.conv_transpose2d(&x, &w2, None, p2.with_stride((1, 2)).with_output_padding((0, 1)))
                .unwrap()
                .shape(),
            &[1, 3, 5, 10]
        );
        is_err_with(
            b.conv_transpose2d(&x, &w2, None, p2.with_dilation((1, 0))),
            "dilation",
        );
        // no output pixels along one axis (padding eats them), sizes that overflow
        is_err_with(
            b.conv_transpose2d(&x, &w2, None, p2.with_stride(1).with_padding((0, 5))),
            "along the width",
        );
        is_err_with(
            b.conv_transpose2d(&x, &w2, None, p2.with_stride((usize::MAX / 2, 1))),
            "conv_transpose2d",
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
        // half the draws square with the same settings on both axes, half one per axis
        let sq = pick.of(&[true, false]);
        let k = pick.hw(&[1, 2, 3, 4, 5], sq);
        let op = ConvOp::Transposed(ConvTranspose2dParams {
            stride: pick.hw(&[1, 2, 3], sq),
            padding: pick.hw(&[0, 1, 2], sq),
            output_padding: pick.hw(&[0, 1, 2], sq),
            dilation: pick.hw(&[1, 2], sq),
        });
        let bias = pick.of(&[false, true]);
        (op, [n, cin, h, w], [cin, cout, k.h, k.w], bias)
    });
}

#[test]
fn gpu_splits_under_low_limits() {
    // 1 MiB per binding, 64 workgroups per dim: x 20x32x16x16 (0.6 MiB) -> y 20x24x33x33
    // (~2 MiB), stride 2, output_padding 1
    let op = ConvOp::Transposed(ConvTranspose2dParams::new(2, 1, 1, 1));
    let mut worst = 0.0f32;
    let shapes = ([20, 32, 16, 16], [32, 24, 4, 4]);
    for v in Variant::ALL {
        let tag = format!("split ({})", v.name());
        conv_matches_cpu(
            &forced(small_gpu(), v),
            op,
            &tag,
            shapes,
            true,
            5,
            &mut worst,
        );
    }
    println!("conv_transpose2d split under a 1 MiB binding limit, every variant: max abs error {worst:e}");
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
