//! The CPU conv kernels at sizes where their fast paths split the work: many blocks of output
//! pixels per sample (block edges in the middle of an output row), a batch of one, odd sizes,
//! strides, dilation, and both ways of computing the input gradient (the stride-1 flipped-weight
//! forward conv and im2col's col2im). Each result is checked against a direct f64 loop over the
//! definition of the conv (the small-size finite-difference checks are in cpu_ops.rs).

use nnlab::backend::*;
use nnlab::cpu::CpuBackend;
use nnlab::rng;

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

fn close(name: &str, got: &[f32], want: &[f64]) {
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

fn check(c: Case, seed: u64) {
    let be = CpuBackend::new();
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
    let read = |t: &nnlab::Tensor| read_blocking(&be, t).unwrap();
    let p = Conv2dParams {
        stride: c.s,
        padding: c.p,
        dilation: c.d,
    };
    let name = format!("{c:?}");
    let got = be
        .conv2d(&up(&xs, &x), &up(&ws, &w), Some(&up(&[c.cout], &bias)), p)
        .unwrap();
    close(&format!("{name} forward"), &read(&got), &y);
    let got = be
        .conv2d_backward_input(&up(&ys, &gy), &up(&ws, &w), &xs, p)
        .unwrap();
    close(&format!("{name} backward-input"), &read(&got), &gx);
    let got = be
        .conv2d_backward_weight(&up(&xs, &x), &up(&ys, &gy), &ws, p)
        .unwrap();
    close(&format!("{name} backward-weight"), &read(&got), &gw);

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
    close(&format!("{name} conv_transpose2d"), &read(&got), &gx);
    let nobias: Vec<f64> = {
        let mut v = vec![0.0f64; gy.len()];
        c.each(|xi, wi, yi| v[yi] += x[xi] as f64 * w[wi] as f64);
        v
    };
    let got = be
        .conv_transpose2d_backward_input(&up(&xs, &x), &up(&ws, &w), &ys, pt)
        .unwrap();
    close(
        &format!("{name} conv_transpose2d backward-input"),
        &read(&got),
        &nobias,
    );
    let got = be
        .conv_transpose2d_backward_weight(&up(&ys, &gy), &up(&xs, &x), &ws, pt)
        .unwrap();
    close(
        &format!("{name} conv_transpose2d backward-weight"),
        &read(&got),
        &gw,
    );
}

#[test]
fn many_pixel_blocks_batch_one() {
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
    check(c, 1);
}

#[test]
fn many_pixel_blocks_batch_three_odd_channels() {
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
    check(c, 2);
}

#[test]
fn stride_two_and_dilation() {
    check(
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

#[test]
fn padding_beyond_the_kernel_and_valid_convs() {
    // p > d (k - 1): the input gradient cannot be the flipped forward conv; col2im does it
    check(
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
