//! wasm tests, run in headless Chromium by wasm-bindgen-test-runner:
//!   CHROMEDRIVER=/usr/bin/chromedriver cargo test --release --target wasm32-unknown-unknown --test wasm
//! (`./build.sh test` does this). Chromium is started with --enable-unsafe-webgpu (webdriver.json),
//! which gives the browser's WebGPU adapter (SwiftShader on a machine without a GPU).
//!
//! - the CPU backend works in wasm (golden values of the lecture's example, a small matmul);
//! - the simd128 GEMM of the CPU backend (src/cpu/gemm_wasm.rs, built with SIMD by
//!   .cargo/config.toml) equals a scalar reference over odd sizes, register-tile tails, every
//!   operand layout (plain, transposed, strided) and accumulation;
//! - the implicit GEMM of the wasm stride-1 convs equals the reference, the Winograd 3x3 conv
//!   and the CPU conv2d (bias, fused ReLU, every path) equal a direct sum over the window;
//! - on the browser's WebGPU adapter, GPU conv2d, conv_transpose2d and matmul equal the CPU
//!   backend over a few shapes (odd sizes, batch > 1, stride 1/2, padding 0/1/2, dilation 2);
//!   the `tiled` kernel variant likewise, and the browser's deferred tuning pass.
//! No WebGPU adapter is a test failure with the reason, never a skip.
#![cfg(target_arch = "wasm32")]

use nnlab::backend::{Backend, Conv2dParams, ConvTranspose2dParams};
use nnlab::cpu::CpuBackend;
use nnlab::gpu::GpuBackend;
use nnlab::rng::uniform_vec;
use wasm_bindgen_test::*;

wasm_bindgen_test_configure!(run_in_browser);

async fn gpu() -> GpuBackend {
    match GpuBackend::new(Default::default()).await {
        Ok(g) => {
            console_log!("WebGPU backend: {}", nnlab::Backend::info(&g).describe());
            g
        }
        Err(e) => panic!(
            "no WebGPU adapter in this browser, so the GPU kernels cannot be tested: {e}. \
             Chromium must run with --enable-unsafe-webgpu (see webdriver.json)"
        ),
    }
}

async fn read(be: &dyn Backend, t: &nnlab::Tensor) -> Vec<f32> {
    be.read(t).await.expect("read back")
}

/// Largest |a - b|, after checking both have the same length; panics past `tol * (1 + |b|)`.
fn compare(what: &str, got: &[f32], want: &[f32], tol: f32) -> f32 {
    assert_eq!(
        got.len(),
        want.len(),
        "{what}: {} values, expected {}",
        got.len(),
        want.len()
    );
    let mut max_err = 0.0f32;
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        let e = (g - w).abs();
        assert!(
            e <= tol * (1.0 + w.abs()),
            "{what}: element {i} is {g}, the CPU gives {w} (|diff| {e})"
        );
        max_err = max_err.max(e);
    }
    console_log!(
        "{what}: max abs error {max_err:.3e} over {} values",
        got.len()
    );
    max_err
}

// ---------------------------------------------------------------- CPU path in wasm

#[wasm_bindgen_test]
async fn cpu_backend_lecture_example() {
    let cpu = CpuBackend::new();
    // input 6x6 = 0..36, kernel 3x3 of ones, stride 2, padding 1 -> 3x3 (sums of each window)
    let x: Vec<f32> = (0..36).map(|v| v as f32).collect();
    let tx = cpu.upload(&[1, 1, 6, 6], &x).unwrap();
    let tw = cpu.upload(&[1, 1, 3, 3], &[1.0; 9]).unwrap();
    let y = cpu
        .conv2d(&tx, &tw, None, Conv2dParams::new(2, 1, 1))
        .unwrap();
    assert_eq!(y.shape(), &[1, 1, 3, 3]);
    let want_y: Vec<f32> = (0..3)
        .flat_map(|oy| (0..3).map(move |ox| (oy, ox)))
        .map(|(oy, ox)| {
            let mut s = 0.0;
            for ky in 0..3 {
                for kx in 0..3 {
                    let (r, c) = ((2 * oy + ky) as i32 - 1, (2 * ox + kx) as i32 - 1);
                    if (0..6).contains(&r) && (0..6).contains(&c) {
                        s += (r * 6 + c) as f32;
                    }
                }
            }
            s
        })
        .collect();
    assert_eq!(read(&cpu, &y).await, want_y);
    // first window covers rows/cols 0..=1: 0 + 1 + 6 + 7
    assert_eq!(want_y[0], 14.0);

    // back to 6x6 with a' = 1 (PyTorch output_padding)
    let lt = nnlab::backend::conv_arith::lecture_transposed(6, 3, 2, 1).unwrap();
    assert_eq!(lt.a_t, 1);
    let z = cpu
        .conv_transpose2d(&y, &tw, None, lt.pytorch_params(2, 1))
        .unwrap();
    assert_eq!(z.shape(), &[1, 1, 6, 6]);
    assert_eq!(read(&cpu, &z).await.len(), 36);

    // matmul: [[1,2,3],[4,5,6]] x [[1,0],[0,1],[1,1]] = [[4,5],[10,11]]
    let a = cpu
        .upload(&[2, 3], &[1.0, 2.0, 3.0, 4.0, 5.0, 6.0])
        .unwrap();
    let b = cpu
        .upload(&[3, 2], &[1.0, 0.0, 0.0, 1.0, 1.0, 1.0])
        .unwrap();
    let c = cpu.matmul(&a, &b, false, false).unwrap();
    assert_eq!(read(&cpu, &c).await, vec![4.0, 5.0, 10.0, 11.0]);

    // bad input is an error, not a panic
    assert!(cpu
        .conv2d(&tx, &tw, None, Conv2dParams::new(0, 0, 1))
        .is_err());
}

// ---------------------------------------------------------------- GPU vs CPU on the browser's WebGPU

#[wasm_bindgen_test]
async fn webgpu_adapter_is_available() {
    let g = gpu().await;
    let info = nnlab::Backend::info(&g);
    assert_eq!(info.kind, "gpu");
    assert!(!info.adapter.is_empty(), "the adapter has no name");
}

/// (N, Cin, H, W, Cout, k, stride, padding, dilation)
const CONV_SHAPES: &[[usize; 9]] = &[
    [1, 1, 6, 6, 1, 3, 2, 1, 1], // the lecture's example
    [2, 3, 7, 5, 5, 3, 1, 1, 1],
    [2, 3, 9, 9, 4, 3, 2, 0, 2],
    [1, 5, 13, 11, 7, 5, 2, 2, 1],
    [3, 2, 8, 8, 9, 1, 1, 0, 1],
];

#[wasm_bindgen_test]
async fn gpu_conv2d_equals_cpu() {
    let (g, cpu) = (gpu().await, CpuBackend::new());
    for (t, &[n, ci, h, w, co, k, s, p, d]) in CONV_SHAPES.iter().enumerate() {
        let x = uniform_vec(n * ci * h * w, -1.0, 1.0, 100 + t as u64);
        let wt = uniform_vec(co * ci * k * k, -1.0, 1.0, 200 + t as u64);
        let b = uniform_vec(co, -1.0, 1.0, 300 + t as u64);
        let prm = Conv2dParams::new(s, p, d);
        let run = |be: &dyn Backend| -> nnlab::Result<nnlab::Tensor> {
            let x = be.upload(&[n, ci, h, w], &x)?;
            let wt = be.upload(&[co, ci, k, k], &wt)?;
            let b = be.upload(&[co], &b)?;
            be.conv2d(&x, &wt, Some(&b), prm)
        };
        let want = run(&cpu).expect("CPU conv2d");
        let got = run(&g).unwrap_or_else(|e| panic!("GPU conv2d {:?}: {e}", CONV_SHAPES[t]));
        assert!(got.is_gpu(), "the GPU backend returned a CPU tensor");
        assert_eq!(got.shape(), want.shape());
        compare(
            &format!("conv2d {:?}", CONV_SHAPES[t]),
            &read(&g, &got).await,
            &read(&cpu, &want).await,
            1e-4,
        );
    }
}

/// (N, Cin, H, W, Cout, k, stride, padding, output_padding)
const CONVT_SHAPES: &[[usize; 9]] = &[
    [1, 1, 3, 3, 1, 3, 2, 1, 1], // the lecture's example: 3x3 -> 6x6 with a' = 1
    [2, 3, 5, 4, 6, 3, 2, 1, 0],
    [1, 4, 7, 7, 3, 4, 2, 1, 1],
    [3, 5, 6, 5, 2, 3, 1, 2, 0],
    [2, 2, 4, 4, 3, 5, 3, 0, 2],
];

#[wasm_bindgen_test]
async fn gpu_conv_transpose2d_equals_cpu() {
    let (g, cpu) = (gpu().await, CpuBackend::new());
    for (t, &[n, ci, h, w, co, k, s, p, op]) in CONVT_SHAPES.iter().enumerate() {
        let x = uniform_vec(n * ci * h * w, -1.0, 1.0, 400 + t as u64);
        let wt = uniform_vec(ci * co * k * k, -1.0, 1.0, 500 + t as u64);
        let b = uniform_vec(co, -1.0, 1.0, 600 + t as u64);
        let prm = ConvTranspose2dParams::new(s, p, op, 1);
        let run = |be: &dyn Backend| -> nnlab::Result<nnlab::Tensor> {
            let x = be.upload(&[n, ci, h, w], &x)?;
            let wt = be.upload(&[ci, co, k, k], &wt)?;
            let b = be.upload(&[co], &b)?;
            be.conv_transpose2d(&x, &wt, Some(&b), prm)
        };
        let want = run(&cpu).expect("CPU conv_transpose2d");
        let got =
            run(&g).unwrap_or_else(|e| panic!("GPU conv_transpose2d {:?}: {e}", CONVT_SHAPES[t]));
        assert!(got.is_gpu(), "the GPU backend returned a CPU tensor");
        assert_eq!(got.shape(), want.shape());
        compare(
            &format!("conv_transpose2d {:?}", CONVT_SHAPES[t]),
            &read(&g, &got).await,
            &read(&cpu, &want).await,
            1e-4,
        );
    }
}

/// Rectangular kernels with per-axis settings: (x shape, kernel (kh, kw), stride, padding,
/// output_padding (transposed only), dilation), each (rows, columns).
type PerAxis = (
    [usize; 4],
    [usize; 2],
    [usize; 2],
    [usize; 2],
    [usize; 2],
    [usize; 2],
);
const PER_AXIS: &[PerAxis] = &[
    ([2, 3, 9, 7], [3, 2], [2, 1], [1, 0], [1, 0], [1, 2]),
    ([1, 5, 6, 11], [1, 4], [1, 3], [0, 2], [0, 1], [2, 1]),
    ([2, 4, 8, 8], [5, 3], [3, 2], [2, 1], [2, 1], [1, 1]),
];

/// conv2d and conv_transpose2d, forward and both backwards, with the per-axis cases above:
/// the WGSL kernels under SwiftShader against the wasm CPU backend.
#[wasm_bindgen_test]
async fn gpu_per_axis_convs_equal_cpu() {
    let (g, cpu) = (gpu().await, CpuBackend::new());
    for (t, &(xs, k, s, p, a, d)) in PER_AXIS.iter().enumerate() {
        let cout = 3;
        let direct = Conv2dParams::default()
            .with_stride(s)
            .with_padding(p)
            .with_dilation(d);
        let transposed = ConvTranspose2dParams::default()
            .with_stride(s)
            .with_padding(p)
            .with_output_padding(a)
            .with_dilation(d);
        for tr in [false, true] {
            let ws = if tr {
                [xs[1], cout, k[0], k[1]]
            } else {
                [cout, xs[1], k[0], k[1]]
            };
            let seed = 900 + 10 * t as u64 + tr as u64 * 5;
            let x = uniform_vec(xs.iter().product(), -1.0, 1.0, seed);
            let wt = uniform_vec(ws.iter().product(), -1.0, 1.0, seed + 1);
            // [forward, backward-input, backward-weight] on one backend
            let run = |be: &dyn Backend| -> nnlab::Result<Vec<nnlab::Tensor>> {
                let (xt, wtt) = (be.upload(&xs, &x)?, be.upload(&ws, &wt)?);
                let y = if tr {
                    be.conv_transpose2d(&xt, &wtt, None, transposed)?
                } else {
                    be.conv2d(&xt, &wtt, None, direct)?
                };
                let gy = be.upload(y.shape(), &uniform_vec(y.numel(), -1.0, 1.0, seed + 2))?;
                let (gx, gw) = if tr {
                    (
                        be.conv_transpose2d_backward_input(&gy, &wtt, &xs, transposed)?,
                        be.conv_transpose2d_backward_weight(&xt, &gy, &ws, transposed)?,
                    )
                } else {
                    (
                        be.conv2d_backward_input(&gy, &wtt, &xs, direct)?,
                        be.conv2d_backward_weight(&xt, &gy, &ws, direct)?,
                    )
                };
                Ok(vec![y, gx, gw])
            };
            let want = run(&cpu).expect("CPU per-axis conv");
            let got = run(&g).unwrap_or_else(|e| panic!("GPU per-axis conv {t} {tr}: {e}"));
            for (i, (gt, wt)) in got.iter().zip(&want).enumerate() {
                assert_eq!(gt.shape(), wt.shape());
                compare(
                    &format!("per-axis case {t} transposed {tr} output {i}"),
                    &read(&g, gt).await,
                    &read(&cpu, wt).await,
                    1e-4,
                );
            }
        }
    }
}

/// (M, K, N, trans_a, trans_b)
const MATMUL_SHAPES: &[(usize, usize, usize, bool, bool)] = &[
    (7, 13, 5, false, false),
    (33, 65, 17, true, false),
    (64, 64, 64, false, true),
    (1, 129, 3, true, true),
    (100, 30, 70, false, false),
];

#[wasm_bindgen_test]
async fn gpu_matmul_equals_cpu() {
    let (g, cpu) = (gpu().await, CpuBackend::new());
    for (t, &(m, k, n, ta, tb)) in MATMUL_SHAPES.iter().enumerate() {
        let a = uniform_vec(m * k, -1.0, 1.0, 700 + t as u64);
        let b = uniform_vec(k * n, -1.0, 1.0, 800 + t as u64);
        let a_shape = if ta { [k, m] } else { [m, k] };
        let b_shape = if tb { [n, k] } else { [k, n] };
        let run = |be: &dyn Backend| -> nnlab::Result<nnlab::Tensor> {
            let a = be.upload(&a_shape, &a)?;
            let b = be.upload(&b_shape, &b)?;
            be.matmul(&a, &b, ta, tb)
        };
        let want = run(&cpu).expect("CPU matmul");
        let got = run(&g).unwrap_or_else(|e| panic!("GPU matmul {:?}: {e}", MATMUL_SHAPES[t]));
        assert!(got.is_gpu(), "the GPU backend returned a CPU tensor");
        assert_eq!(got.shape(), &[m, n]);
        compare(
            &format!("matmul {:?}", MATMUL_SHAPES[t]),
            &read(&g, &got).await,
            &read(&cpu, &want).await,
            1e-4,
        );
    }
}

/// The simd128 GEMM against its scalar reference: sizes around the 4x8 register tile and the
/// packing blocks (k past 256, n past 1024), each of a, b, c plain, transposed or with a padded
/// row stride, with and without accumulation into c.
#[wasm_bindgen_test]
fn simd_gemm_equals_scalar_reference() {
    use nnlab::cpu::gemm_wasm::{sgemm, sgemm_reference, MR, NR};
    assert!(
        cfg!(target_feature = "simd128"),
        "the wasm tests must be built with simd128"
    );
    let sizes = [
        (1, 1, 1),
        (MR, NR, 1),
        (MR + 1, NR + 1, 3),
        (MR - 1, NR - 1, 7),
        (2 * MR + 3, 3 * NR + 5, 17),
        (13, 29, 257),
        (64, 77, 576),
        (5, 1029, 9),
        (131, 9, 40),
    ];
    let mut case = 0u64;
    for &(m, n, k) in &sizes {
        // layout: 0 row-major, 1 transposed (column-major), 2 row-major with 3 padding columns
        for layout in 0..3usize {
            for acc in [false, true] {
                case += 1;
                let view = |r: usize, c: usize| match layout {
                    0 => (r * c, c, 1),
                    1 => (r * c, 1, r),
                    _ => (r * (c + 3), c + 3, 1),
                };
                let (la, ars, acs) = view(m, k);
                let (lb, brs, bcs) = view(k, n);
                // c keeps its layout across cases of one size, the operands rotate
                let (lc, crs, ccs) = if layout == 1 {
                    (m * n, 1, m)
                } else {
                    (m * (n + 2), n + 2, 1)
                };
                let a = uniform_vec(la, -1.0, 1.0, 10 * case);
                let b = uniform_vec(lb, -1.0, 1.0, 10 * case + 1);
                let c0 = uniform_vec(lc, -1.0, 1.0, 10 * case + 2);
                let (mut got, mut want) = (c0.clone(), c0.clone());
                sgemm(
                    m,
                    n,
                    k,
                    (&a, ars, acs),
                    (&b, brs, bcs),
                    (&mut got, crs, ccs),
                    acc,
                );
                sgemm_reference(
                    m,
                    n,
                    k,
                    (&a, ars, acs),
                    (&b, brs, bcs),
                    (&mut want, crs, ccs),
                    acc,
                );
                let what = format!("gemm m {m} n {n} k {k} layout {layout} acc {acc}");
                // f32 sums of k products of values in [-1, 1]
                compare(&what, &got, &want, 1e-6 * k as f32);
                // the padding columns of c are never written
                if ccs == 1 {
                    for i in 0..m {
                        for j in n..crs {
                            assert_eq!(
                                got[i * crs + j],
                                c0[i * crs + j],
                                "{what}: c padding written"
                            );
                        }
                    }
                }
            }
        }
    }
}

/// The implicit GEMM of the wasm stride-1 convs (`sgemm_rows_at`: B's rows read in place at
/// given offsets, a packed once by `pack_panels`) equals the scalar reference on the explicit
/// B, over register-tile tails in m and n, overlapping rows (a conv's taps) and k from 1 up.
#[wasm_bindgen_test]
fn simd_rows_at_gemm_equals_scalar_reference() {
    use nnlab::cpu::gemm_wasm::{pack_panels, sgemm_reference, sgemm_rows_at, MR, NR};
    let sizes = [
        (1, 1, 1),
        (MR, NR, 9),
        (MR + 1, NR + 3, 9),
        (MR - 1, 2 * NR - 1, 27),
        (64, 784, 576),
        (48, 100, 432),
        (3, 37, 576),
    ];
    for (case, &(m, n, k)) in sizes.iter().enumerate() {
        let case = case as u64;
        // row p starts at a pseudo-random offset: rows overlap and run in any order
        let offs: Vec<u32> = (0..k)
            .map(|p| ((p * 37 + 11) % (3 * k + 5)) as u32)
            .collect();
        let len = offs.iter().max().copied().unwrap_or(0) as usize + n;
        let bsrc = uniform_vec(len, -1.0, 1.0, 500 + case);
        let a = uniform_vec(m * k, -1.0, 1.0, 600 + case);
        let mut b = vec![0.0f32; k * n];
        for (p, row) in b.chunks_exact_mut(n).enumerate() {
            row.copy_from_slice(&bsrc[offs[p] as usize..][..n]);
        }
        // c with 2 padding columns, which must stay untouched
        let c0 = uniform_vec(m * (n + 2), -1.0, 1.0, 700 + case);
        let (mut got, mut want) = (c0.clone(), c0.clone());
        let pa = pack_panels(m, k, (&a, k, 1));
        sgemm_rows_at(m, n, &pa, &bsrc, &offs, (&mut got, n + 2, 1));
        sgemm_reference(
            m,
            n,
            k,
            (&a, k, 1),
            (&b, n, 1),
            (&mut want, n + 2, 1),
            false,
        );
        let what = format!("rows-at gemm m {m} n {n} k {k}");
        compare(&what, &got, &want, 1e-6 * k as f32);
        for i in 0..m {
            for j in n..n + 2 {
                assert_eq!(
                    got[i * (n + 2) + j],
                    c0[i * (n + 2) + j],
                    "{what}: c padding written"
                );
            }
        }
    }
}

/// conv2d(x, w) + b (then ReLU) at stride 1 as a direct f64 sum over the window: x (N, Cin, H,
/// W), w (Cout, Cin, kh, kw); the reference of the CPU convs below.
#[allow(clippy::too_many_arguments)]
fn direct_conv(
    [n, ci, h, w, co, kh, kw, ph, pw, d]: [usize; 10],
    x: &[f32],
    wt: &[f32],
    b: Option<&[f32]>,
    relu: bool,
) -> Vec<f32> {
    let (ho, wo) = (h + 2 * ph - d * (kh - 1), w + 2 * pw - d * (kw - 1));
    let mut want = vec![0.0f32; n * co * ho * wo];
    for s in 0..n {
        for o in 0..co {
            for oy in 0..ho {
                for ox in 0..wo {
                    let mut acc = b.map_or(0.0, |b| b[o] as f64);
                    for c in 0..ci {
                        for ky in 0..kh {
                            for kx in 0..kw {
                                let iy = (oy + ky * d) as isize - ph as isize;
                                let ix = (ox + kx * d) as isize - pw as isize;
                                if iy < 0 || ix < 0 || iy >= h as isize || ix >= w as isize {
                                    continue;
                                }
                                let xv = x[((s * ci + c) * h + iy as usize) * w + ix as usize];
                                let wv = wt[((o * ci + c) * kh + ky) * kw + kx];
                                acc += xv as f64 * wv as f64;
                            }
                        }
                    }
                    let v = acc as f32;
                    want[((s * co + o) * ho + oy) * wo + ox] = if relu { v.max(0.0) } else { v };
                }
            }
        }
    }
    want
}

/// The CPU backend's conv2d in wasm (3x3 stride 1 with Cin >= 16: Winograd; other stride-1
/// kernels with Cin >= 16: the tap path's implicit GEMM; im2col otherwise), with bias and
/// fused ReLU, equals a direct f64 sum over the window: odd sizes, batch > 1, padding 0-2,
/// dilation, rectangular kernels, Cout not a multiple of the register tile.
#[wasm_bindgen_test]
async fn cpu_conv2d_equals_direct_sum() {
    let cpu = CpuBackend::new();
    // (N, Cin, H, W, Cout, kh, kw, pad h, pad w, dilation)
    let shapes: &[[usize; 10]] = &[
        [1, 16, 9, 11, 5, 3, 3, 1, 1, 1],
        [2, 20, 7, 6, 9, 3, 3, 1, 1, 2],
        [1, 64, 12, 10, 64, 3, 3, 1, 1, 1],
        [1, 48, 6, 13, 3, 3, 3, 1, 1, 1],
        [1, 17, 8, 9, 6, 1, 3, 0, 1, 1],
        [1, 16, 10, 7, 4, 5, 3, 2, 0, 1],
        [2, 3, 7, 5, 8, 3, 3, 1, 1, 1],
    ];
    for (t, &shape) in shapes.iter().enumerate() {
        let [n, ci, h, w, co, kh, kw, ph, pw, d] = shape;
        let t = t as u64;
        let x = uniform_vec(n * ci * h * w, -1.0, 1.0, 800 + t);
        let wt = uniform_vec(co * ci * kh * kw, -1.0, 1.0, 900 + t);
        let b = uniform_vec(co, -1.0, 1.0, 1000 + t);
        let prm = Conv2dParams::new(1, 0, d).with_padding((ph, pw));
        let (ho, wo) = (h + 2 * ph - d * (kh - 1), w + 2 * pw - d * (kw - 1));
        let want = direct_conv(shape, &x, &wt, Some(&b), true);
        let xt = cpu.upload(&[n, ci, h, w], &x).unwrap();
        let wtt = cpu.upload(&[co, ci, kh, kw], &wt).unwrap();
        let bt = cpu.upload(&[co], &b).unwrap();
        let y = cpu
            .conv2d_relu(&xt, &wtt, Some(&bt), prm)
            .expect("CPU conv2d_relu");
        assert_eq!(y.shape(), &[n, co, ho, wo]);
        compare(
            &format!("cpu conv2d_relu {shape:?}"),
            &read(&cpu, &y).await,
            &want,
            1e-6 * (ci * kh * kw) as f32,
        );
    }
}

/// The wasm Winograd F(4x4, 3x3) conv (src/cpu/winograd_wasm.rs) equals a direct f64 sum:
/// sizes of every residue mod 4 (a last tile 1, 2 or 3 pixels into the output, down and
/// across), padding 0-2, several blocks of tiles down and across (W = 300: 75 tiles a row, two
/// blocks), batch 2, one output channel, 2x1 and 1x2 outputs, with and without bias and ReLU.
#[wasm_bindgen_test]
fn winograd_conv_equals_direct_sum() {
    use nnlab::backend::ConvGeom;
    use nnlab::cpu::winograd_wasm;
    // (N, Cin, H, W, Cout, pad h, pad w, bias, relu)
    let cases: &[([usize; 7], bool, bool)] = &[
        ([1, 16, 9, 11, 5, 1, 1], true, true),
        ([2, 24, 7, 6, 9, 0, 2], false, false),
        ([1, 64, 12, 10, 64, 1, 1], true, true),
        ([1, 16, 5, 300, 8, 1, 1], true, false),
        ([1, 16, 70, 20, 3, 2, 1], false, true),
        ([1, 32, 4, 3, 1, 0, 0], true, false),
        ([2, 16, 1, 2, 4, 1, 1], true, true),
        ([1, 64, 40, 40, 64, 1, 1], true, true),
        ([1, 16, 11, 7, 6, 1, 1], true, true),
    ];
    for (t, &([n, ci, h, w, co, ph, pw], bias, relu)) in cases.iter().enumerate() {
        let t = t as u64;
        let shape = [n, ci, h, w, co, 3, 3, ph, pw, 1];
        let x = uniform_vec(n * ci * h * w, -1.0, 1.0, 1100 + t);
        let wt = uniform_vec(co * ci * 9, -1.0, 1.0, 1200 + t);
        let b = uniform_vec(co, -1.0, 1.0, 1300 + t);
        let b = bias.then_some(b.as_slice());
        let prm = Conv2dParams::new(1, 0, 1).with_padding((ph, pw));
        let bshape = [co];
        let g = ConvGeom::conv2d(&[n, ci, h, w], &[co, ci, 3, 3], b.map(|_| &bshape[..]), prm)
            .expect("a valid conv");
        assert!(winograd_wasm::applies(&g), "{shape:?} is a Winograd case");
        let got = winograd_wasm::forward(&g, &x, &wt, b, relu);
        let want = direct_conv(shape, &x, &wt, b, relu);
        let err = compare(
            &format!("winograd conv {shape:?} bias {bias} relu {relu}"),
            &got,
            &want,
            1e-6 * (ci * 9) as f32,
        );
        let top = want.iter().fold(0.0f32, |a, v| a.max(v.abs()));
        console_log!(
            "winograd {shape:?}: max |diff| {err:.2e}, {:.2e} of the largest value",
            err / top
        );
    }
}

#[wasm_bindgen_test]
async fn gpu_tiled_variant_and_tuning_pass_equal_cpu() {
    use nnlab::gpu::{Policy, Variant};
    let cpu = CpuBackend::new();
    for policy in [Policy::Force(Variant::Tiled), Policy::Auto] {
        let g = gpu().await;
        g.set_kernel_policy(policy);
        for pass in 0..2 {
            for (t, &[n, ci, h, w, co, k, s, p, d]) in CONV_SHAPES.iter().enumerate() {
                let x = uniform_vec(n * ci * h * w, -1.0, 1.0, 900 + t as u64);
                let wt = uniform_vec(co * ci * k * k, -1.0, 1.0, 910 + t as u64);
                let b = uniform_vec(co, -1.0, 1.0, 920 + t as u64);
                let prm = Conv2dParams::new(s, p, d);
                let run = |be: &dyn Backend| -> nnlab::Result<[nnlab::Tensor; 3]> {
                    let x = be.upload(&[n, ci, h, w], &x)?;
                    let wt = be.upload(&[co, ci, k, k], &wt)?;
                    let b = be.upload(&[co], &b)?;
                    let y = be.conv2d(&x, &wt, Some(&b), prm)?;
                    let gx = be.conv2d_backward_input(&y, &wt, x.shape(), prm)?;
                    let gw = be.conv2d_backward_weight(&x, &y, wt.shape(), prm)?;
                    Ok([y, gx, gw])
                };
                let want = run(&cpu).expect("CPU convs");
                let got = run(&g).unwrap_or_else(|e| panic!("GPU convs {:?}: {e}", CONV_SHAPES[t]));
                for (i, (gt, wt)) in got.iter().zip(&want).enumerate() {
                    compare(
                        &format!(
                            "{} pass {pass} conv {i} {:?}",
                            policy.name(),
                            CONV_SHAPES[t]
                        ),
                        &read(&g, gt).await,
                        &read(&cpu, wt).await,
                        1e-4,
                    );
                }
            }
            for (t, &(m, kk, n, ta, tb)) in MATMUL_SHAPES.iter().enumerate() {
                let a = uniform_vec(m * kk, -1.0, 1.0, 930 + t as u64);
                let b = uniform_vec(kk * n, -1.0, 1.0, 940 + t as u64);
                let a_shape = if ta { [kk, m] } else { [m, kk] };
                let b_shape = if tb { [n, kk] } else { [kk, n] };
                let run = |be: &dyn Backend| -> nnlab::Result<nnlab::Tensor> {
                    be.matmul(&be.upload(&a_shape, &a)?, &be.upload(&b_shape, &b)?, ta, tb)
                };
                let want = run(&cpu).expect("CPU matmul");
                let got =
                    run(&g).unwrap_or_else(|e| panic!("GPU matmul {:?}: {e}", MATMUL_SHAPES[t]));
                compare(
                    &format!(
                        "{} pass {pass} matmul {:?}",
                        policy.name(),
                        MATMUL_SHAPES[t]
                    ),
                    &read(&g, &got).await,
                    &read(&cpu, &want).await,
                    1e-4,
                );
            }
            if policy == Policy::Auto && pass == 0 {
                // nothing was tuned inside the ops; the pass tunes every class met
                let waiting = g.tuner().pending();
                assert!(waiting > 0, "no class waits for tuning");
                assert_eq!(g.tuner().to_json(), "{}");
                let tuned = g
                    .tune_pending(1, &js_sys::Date::now)
                    .await
                    .expect("tuning pass");
                assert_eq!(tuned, waiting);
                assert_eq!(g.tuner().pending(), 0);
                console_log!(
                    "tuned {tuned} classes on SwiftShader: {}",
                    g.tuner().to_json()
                );
            }
        }
    }
}
