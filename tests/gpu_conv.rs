//! GPU conv / conv_transpose / matmul kernels against their CPU twins (nnlab::cpu::CpuBackend),
//! over a seeded random sweep of shapes, plus the splitting paths under artificially low
//! device limits. Runs natively on lavapipe; without a Vulkan adapter these tests FAIL with the
//! reason (CI requires one), they never skip.
//!
//! XDG_RUNTIME_DIR=/tmp cargo test --test gpu_conv -- --nocapture   (prints the max errors)

use nnlab::backend::{read_blocking, Backend, Conv2dParams, ConvTranspose2dParams};
use nnlab::cpu::CpuBackend;
use nnlab::gpu::{GpuBackend, GpuOptions};
use nnlab::rng::{uniform01, uniform_vec};
use nnlab::{Error, Result, Tensor};

fn gpu(opts: GpuOptions) -> GpuBackend {
    match GpuBackend::new_blocking(opts) {
        Ok(g) => g,
        Err(e) => panic!("these tests need a GPU adapter (natively: Vulkan, e.g. lavapipe from mesa-vulkan-drivers): {e}"),
    }
}

/// Seeded data in [-1, 1).
fn data(n: usize, seed: u64) -> Vec<f32> {
    uniform_vec(n, -1.0, 1.0, seed)
}

/// A small deterministic chooser over the counter RNG.
struct Pick {
    seed: u64,
    i: u32,
}

impl Pick {
    fn of<T: Copy>(&mut self, xs: &[T]) -> T {
        self.i += 1;
        xs[(uniform01(self.seed, self.i) * xs.len() as f32) as usize % xs.len()]
    }
}

/// Run `op` on both backends with the same inputs (shape, data); returns (max abs error,
/// max abs reference value). Errors on either side fail the test with the op's name.
fn compare(
    g: &GpuBackend,
    what: &str,
    inputs: &[(&[usize], &[f32])],
    op: impl Fn(&dyn Backend, &[Tensor]) -> Result<Tensor>,
) -> (f32, f32) {
    let cpu = CpuBackend::new();
    let run = |be: &dyn Backend| -> Vec<f32> {
        let ts: Vec<Tensor> = inputs
            .iter()
            .map(|(s, d)| be.upload(s, d).unwrap())
            .collect();
        let out = op(be, &ts).unwrap_or_else(|e| panic!("{what} on {}: {e}", be.info().kind));
        read_blocking(be, &out).unwrap()
    };
    let (want, got) = (run(&cpu), run(g));
    assert_eq!(want.len(), got.len(), "{what}: output lengths differ");
    let err = want
        .iter()
        .zip(&got)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0f32, f32::max);
    let scale = want.iter().map(|a| a.abs()).fold(0.0f32, f32::max);
    assert!(
        got.iter().all(|v| v.is_finite()),
        "{what}: non-finite GPU output"
    );
    (err, scale)
}

/// f32 sums of `k` terms of size ~1: allow a few ulps of the largest value per sqrt(k).
fn check(what: &str, (err, scale): (f32, f32), k: usize, worst: &mut f32) {
    let tol = 2e-6 * (1.0 + scale) * (k as f32).sqrt().max(4.0);
    assert!(
        err <= tol,
        "{what}: max abs error {err:e} > {tol:e} (max |ref| {scale})"
    );
    *worst = worst.max(err);
}

#[test]
fn conv2d_fwd_bwd_match_cpu_on_random_shapes() {
    let g = gpu(GpuOptions::default());
    let mut pick = Pick { seed: 11, i: 0 };
    let (mut worst, mut cases) = (0.0f32, 0);
    while cases < 40 {
        let n = pick.of(&[1, 2, 3]);
        let (cin, cout) = (pick.of(&[1, 3, 5, 17]), pick.of(&[1, 2, 7, 18, 33]));
        let (h, w) = (pick.of(&[5, 7, 9, 13]), pick.of(&[4, 6, 11]));
        let k = pick.of(&[1, 2, 3, 5]);
        let p = Conv2dParams {
            stride: pick.of(&[1, 2]),
            padding: pick.of(&[0, 1, 2]),
            dilation: pick.of(&[1, 2]),
        };
        let bias = pick.of(&[false, true]);
        let (xs, ws) = ([n, cin, h, w], [cout, cin, k, k]);
        let Ok(d) = nnlab::backend::conv2d_shapes(&xs, &ws, None, p) else {
            continue;
        };
        let ys = [n, cout, d[6], d[7]];
        let seed = 100 + cases as u64;
        let (x, wt, b, gy) = (
            data(n * cin * h * w, seed),
            data(cout * cin * k * k, seed + 1),
            data(cout, seed + 2),
            data(ys.iter().product(), seed + 3),
        );
        let tag = format!("x {xs:?} w {ws:?} {p:?} bias {bias}");
        let r = compare(
            &g,
            &format!("conv2d {tag}"),
            &[(&xs, &x), (&ws, &wt), (&[cout], &b)],
            |be, t| be.conv2d(&t[0], &t[1], bias.then_some(&t[2]), p),
        );
        check(&format!("conv2d {tag}"), r, cin * k * k, &mut worst);
        let r = compare(
            &g,
            &format!("conv2d_backward_input {tag}"),
            &[(&ys, &gy), (&ws, &wt)],
            |be, t| be.conv2d_backward_input(&t[0], &t[1], &xs, p),
        );
        check(
            &format!("conv2d_backward_input {tag}"),
            r,
            cout * k * k,
            &mut worst,
        );
        let r = compare(
            &g,
            &format!("conv2d_backward_weight {tag}"),
            &[(&xs, &x), (&ys, &gy)],
            |be, t| be.conv2d_backward_weight(&t[0], &t[1], &ws, p),
        );
        check(
            &format!("conv2d_backward_weight {tag}"),
            r,
            n * d[6] * d[7],
            &mut worst,
        );
        cases += 1;
    }
    println!("conv2d fwd/bwd-input/bwd-weight, {cases} random shapes: max abs error {worst:e}");
}

#[test]
fn conv_transpose2d_fwd_bwd_match_cpu_on_random_shapes() {
    let g = gpu(GpuOptions::default());
    let mut pick = Pick { seed: 12, i: 0 };
    let (mut worst, mut cases) = (0.0f32, 0);
    while cases < 40 {
        let n = pick.of(&[1, 2, 3]);
        let (cin, cout) = (pick.of(&[1, 3, 6, 17]), pick.of(&[1, 2, 5, 18]));
        let (h, w) = (pick.of(&[1, 3, 4, 7]), pick.of(&[2, 5, 7]));
        let k = pick.of(&[1, 2, 3, 4, 5]);
        let p = ConvTranspose2dParams {
            stride: pick.of(&[1, 2, 3]),
            padding: pick.of(&[0, 1, 2]),
            output_padding: pick.of(&[0, 1, 2]),
            dilation: pick.of(&[1, 2]),
        };
        let bias = pick.of(&[false, true]);
        let (xs, ws) = ([n, cin, h, w], [cin, cout, k, k]);
        let Ok(d) = nnlab::backend::conv_transpose2d_shapes(&xs, &ws, None, p) else {
            continue;
        };
        let ys = [n, cout, d[6], d[7]];
        let seed = 500 + cases as u64;
        let (x, wt, b, gy) = (
            data(n * cin * h * w, seed),
            data(cin * cout * k * k, seed + 1),
            data(cout, seed + 2),
            data(ys.iter().product(), seed + 3),
        );
        let tag = format!("x {xs:?} w {ws:?} {p:?} bias {bias}");
        let r = compare(
            &g,
            &format!("conv_transpose2d {tag}"),
            &[(&xs, &x), (&ws, &wt), (&[cout], &b)],
            |be, t| be.conv_transpose2d(&t[0], &t[1], bias.then_some(&t[2]), p),
        );
        check(
            &format!("conv_transpose2d {tag}"),
            r,
            cin * k * k,
            &mut worst,
        );
        let r = compare(
            &g,
            &format!("conv_transpose2d_backward_input {tag}"),
            &[(&ys, &gy), (&ws, &wt)],
            |be, t| be.conv_transpose2d_backward_input(&t[0], &t[1], &xs, p),
        );
        check(
            &format!("conv_transpose2d_backward_input {tag}"),
            r,
            cout * k * k,
            &mut worst,
        );
        let r = compare(
            &g,
            &format!("conv_transpose2d_backward_weight {tag}"),
            &[(&xs, &x), (&ys, &gy)],
            |be, t| be.conv_transpose2d_backward_weight(&t[0], &t[1], &ws, p),
        );
        check(
            &format!("conv_transpose2d_backward_weight {tag}"),
            r,
            n * h * w,
            &mut worst,
        );
        cases += 1;
    }
    println!(
        "conv_transpose2d fwd/bwd-input/bwd-weight, {cases} random shapes: max abs error {worst:e}"
    );
}

#[test]
fn matmul_matches_cpu_on_random_shapes_and_transposes() {
    let g = gpu(GpuOptions::default());
    let mut pick = Pick { seed: 13, i: 0 };
    let mut worst = 0.0f32;
    // sizes that are multiples of 4 take the vec4 kernel, the others the scalar one
    for case in 0..32u64 {
        let (m, k, n) = (
            pick.of(&[1, 3, 4, 17, 36, 70]),
            pick.of(&[1, 2, 8, 9, 31, 64]),
            pick.of(&[1, 5, 32, 47, 100]),
        );
        let (ta, tb) = (case % 2 == 1, (case / 2) % 2 == 1);
        let sa = if ta { [k, m] } else { [m, k] };
        let sb = if tb { [n, k] } else { [k, n] };
        let (a, b) = (data(m * k, 900 + case), data(k * n, 950 + case));
        let what = format!(
            "matmul {sa:?}{} x {sb:?}{}",
            if ta { "^T" } else { "" },
            if tb { "^T" } else { "" }
        );
        let r = compare(&g, &what, &[(&sa, &a), (&sb, &b)], |be, t| {
            be.matmul(&t[0], &t[1], ta, tb)
        });
        check(&what, r, k, &mut worst);
    }
    println!("matmul, 32 random shapes x transposes: max abs error {worst:e}");
}

/// An independent hand-checkable value: a 1-channel 3x3 ones kernel over arange(16) 4x4 with
/// padding 1 sums each 3x3 neighbourhood.
#[test]
fn conv2d_arange_golden() {
    let g = gpu(GpuOptions::default());
    let x: Vec<f32> = (0..16).map(|v| v as f32).collect();
    let xt = g.upload(&[1, 1, 4, 4], &x).unwrap();
    let wt = g.upload(&[1, 1, 3, 3], &[1.0; 9]).unwrap();
    let y = read_blocking(
        &g,
        &g.conv2d(
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

#[test]
fn large_ops_split_under_low_limits_and_match_cpu() {
    // 1 MiB per binding (so every tensor below spans several bindings), 64 workgroups per dim
    let g = gpu(GpuOptions {
        max_storage_binding_bytes: Some(1 << 20),
        max_workgroups_per_dim: Some(64),
    });
    let mut worst = 0.0f32;
    // conv2d: x 12x16x64x64 = 3 MiB, y 12x20x62x62 ~ 3.5 MiB
    let p = Conv2dParams {
        stride: 1,
        padding: 0,
        dilation: 1,
    };
    let (xs, ws, ys) = ([12, 16, 64, 64], [20, 16, 3, 3], [12, 20, 62, 62]);
    let (x, wt, b, gy) = (
        data(12 * 16 * 4096, 1),
        data(20 * 16 * 9, 2),
        data(20, 3),
        data(12 * 20 * 62 * 62, 4),
    );
    let r = compare(
        &g,
        "split conv2d",
        &[(&xs, &x), (&ws, &wt), (&[20], &b)],
        |be, t| be.conv2d(&t[0], &t[1], Some(&t[2]), p),
    );
    check("split conv2d", r, 16 * 9, &mut worst);
    let r = compare(
        &g,
        "split conv2d_backward_input",
        &[(&ys, &gy), (&ws, &wt)],
        |be, t| be.conv2d_backward_input(&t[0], &t[1], &xs, p),
    );
    check("split conv2d_backward_input", r, 20 * 9, &mut worst);
    let r = compare(
        &g,
        "split conv2d_backward_weight",
        &[(&xs, &x), (&ys, &gy)],
        |be, t| be.conv2d_backward_weight(&t[0], &t[1], &ws, p),
    );
    check("split conv2d_backward_weight", r, 12 * 62 * 62, &mut worst);

    // conv_transpose2d 8x32x16x16 (0.25 MiB) -> 8x24x33x33 (~0.8 MiB/…), stride 2, output_padding 1
    let pt = ConvTranspose2dParams {
        stride: 2,
        padding: 1,
        output_padding: 1,
        dilation: 1,
    };
    let (txs, tws, tys) = ([20, 32, 16, 16], [32, 24, 4, 4], [20, 24, 33, 33]);
    let (tx, twt, tb, tgy) = (
        data(20 * 32 * 256, 5),
        data(32 * 24 * 16, 6),
        data(24, 7),
        data(20 * 24 * 33 * 33, 8),
    );
    let r = compare(
        &g,
        "split conv_transpose2d",
        &[(&txs, &tx), (&tws, &twt), (&[24], &tb)],
        |be, t| be.conv_transpose2d(&t[0], &t[1], Some(&t[2]), pt),
    );
    check("split conv_transpose2d", r, 32 * 16, &mut worst);
    let r = compare(
        &g,
        "split conv_transpose2d_backward_input",
        &[(&tys, &tgy), (&tws, &twt)],
        |be, t| be.conv_transpose2d_backward_input(&t[0], &t[1], &txs, pt),
    );
    check(
        "split conv_transpose2d_backward_input",
        r,
        24 * 16,
        &mut worst,
    );
    let r = compare(
        &g,
        "split conv_transpose2d_backward_weight",
        &[(&txs, &tx), (&tys, &tgy)],
        |be, t| be.conv_transpose2d_backward_weight(&t[0], &t[1], &tws, pt),
    );
    check(
        "split conv_transpose2d_backward_weight",
        r,
        20 * 256,
        &mut worst,
    );

    // matmul: operands of 2-3 MiB, every transpose combination
    let (m, k, n) = (600, 900, 700);
    for (ta, tb) in [(false, false), (true, false), (false, true), (true, true)] {
        let sa = if ta { [k, m] } else { [m, k] };
        let sb = if tb { [n, k] } else { [k, n] };
        let (a, b) = (data(m * k, 10), data(k * n, 11));
        let what = format!("split matmul ta {ta} tb {tb}");
        let r = compare(&g, &what, &[(&sa, &a), (&sb, &b)], |be, t| {
            be.matmul(&t[0], &t[1], ta, tb)
        });
        check(&what, r, k, &mut worst);
    }
    println!("ops split under a 1 MiB binding limit: max abs error {worst:e}");
}

#[test]
fn many_dispatches_when_workgroups_per_dim_is_tiny() {
    // 4 workgroups per dimension = 16 per dispatch: every launch below is split by wg_base
    let g = gpu(GpuOptions {
        max_storage_binding_bytes: None,
        max_workgroups_per_dim: Some(4),
    });
    let mut worst = 0.0f32;
    let p = Conv2dParams {
        stride: 2,
        padding: 1,
        dilation: 1,
    };
    let (xs, ws, ys) = ([3, 5, 33, 31], [37, 5, 3, 3], [3, 37, 17, 16]);
    let (x, wt, gy) = (
        data(3 * 5 * 33 * 31, 20),
        data(37 * 45, 21),
        data(3 * 37 * 17 * 16, 22),
    );
    let r = compare(&g, "conv2d", &[(&xs, &x), (&ws, &wt)], |be, t| {
        be.conv2d(&t[0], &t[1], None, p)
    });
    check("conv2d", r, 45, &mut worst);
    let r = compare(
        &g,
        "conv2d_backward_input",
        &[(&ys, &gy), (&ws, &wt)],
        |be, t| be.conv2d_backward_input(&t[0], &t[1], &xs, p),
    );
    check("conv2d_backward_input", r, 37 * 9, &mut worst);
    let r = compare(
        &g,
        "conv2d_backward_weight",
        &[(&xs, &x), (&ys, &gy)],
        |be, t| be.conv2d_backward_weight(&t[0], &t[1], &ws, p),
    );
    check("conv2d_backward_weight", r, 3 * 17 * 16, &mut worst);
    let (a, b) = (data(130 * 70, 23), data(70 * 150, 24));
    let r = compare(
        &g,
        "matmul",
        &[(&[130, 70], &a), (&[70, 150], &b)],
        |be, t| be.matmul(&t[0], &t[1], false, false),
    );
    check("matmul", r, 70, &mut worst);
    let (a, b) = (data(72 * 132, 25), data(160 * 72, 26));
    let r = compare(
        &g,
        "matmul vec4",
        &[(&[72, 132], &a), (&[160, 72], &b)],
        |be, t| be.matmul(&t[0], &t[1], true, true),
    );
    check("matmul vec4", r, 72, &mut worst);
    println!("launches split over many dispatches: max abs error {worst:e}");
}

#[test]
fn bad_shapes_and_oversized_samples_are_errors() {
    let g = gpu(GpuOptions {
        max_storage_binding_bytes: Some(1 << 20),
        max_workgroups_per_dim: None,
    });
    let p = Conv2dParams::default();
    let x = g.upload(&[1, 3, 8, 8], &data(192, 1)).unwrap();
    let w = g.upload(&[4, 2, 3, 3], &data(72, 2)).unwrap();
    assert!(matches!(g.conv2d(&x, &w, None, p), Err(Error::Shape(_))));
    let gy = g.upload(&[1, 4, 5, 5], &data(100, 3)).unwrap();
    let w3 = g.upload(&[4, 3, 3, 3], &data(108, 4)).unwrap();
    assert!(matches!(
        g.conv2d_backward_input(&gy, &w3, &[1, 3, 8, 8], p),
        Err(Error::Shape(_))
    ));
    assert!(matches!(
        g.conv2d_backward_weight(&x, &gy, &[4, 3, 3, 3], p),
        Err(Error::Shape(_))
    ));
    let a = g.upload(&[3, 4], &data(12, 5)).unwrap();
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
        .upload(&[1, 3, 8, 8], &data(192, 1))
        .unwrap();
    assert!(g.conv2d(&cpu_tensor, &w3, None, p).is_err());
}

/// GFLOP/s of these kernels on whatever adapter exists (lavapipe here: NOT a GPU timing).
/// XDG_RUNTIME_DIR=/tmp cargo test --release --test gpu_conv -- --ignored --nocapture
#[test]
#[ignore]
fn gpu_kernel_gflops() {
    let g = gpu(GpuOptions::default());
    let rows =
        nnlab::cli::bench::bench_backend(&g, &|| g.wait(), std::time::Duration::from_millis(500))
            .unwrap();
    for r in rows {
        println!(
            "{} | {} | {} | {:.2} GFLOP/s | {:.1} ms",
            r.backend,
            r.op,
            r.shape,
            r.gflops(),
            r.seconds * 1e3
        );
    }
}

/// Small, quick timing of each kernel, best of 3 (for tuning; lavapipe is NOT a GPU timing).
/// XDG_RUNTIME_DIR=/tmp cargo test --release --test gpu_conv gpu_kernel_quick_timing -- --ignored --nocapture
#[test]
#[ignore]
fn gpu_kernel_quick_timing() {
    let g = gpu(GpuOptions::default());
    let time = |what: &str, gflop: f64, f: &dyn Fn() -> Tensor| {
        drop(f());
        g.wait().unwrap();
        // best of 3 (this machine is shared; the best run is the least disturbed)
        let mut s = f64::MAX;
        for _ in 0..3 {
            let t = std::time::Instant::now();
            drop(f());
            g.wait().unwrap();
            s = s.min(t.elapsed().as_secs_f64());
        }
        println!("{what}: {:.2} GFLOP/s ({:.1} ms)", gflop / s, s * 1e3);
    };
    let (n, c, hw) = (2, 64, 32);
    let p = Conv2dParams {
        stride: 1,
        padding: 1,
        dilation: 1,
    };
    let x = g
        .upload(&[n, c, hw, hw], &data(n * c * hw * hw, 1))
        .unwrap();
    let w = g.upload(&[c, c, 3, 3], &data(c * c * 9, 2)).unwrap();
    let gflop = 2.0 * (n * c * hw * hw * c * 9) as f64 / 1e9;
    time("conv2d fwd", gflop, &|| g.conv2d(&x, &w, None, p).unwrap());
    time("conv2d bwd-input", gflop, &|| {
        g.conv2d_backward_input(&x, &w, &[n, c, hw, hw], p).unwrap()
    });
    time("conv2d bwd-weight", gflop, &|| {
        g.conv2d_backward_weight(&x, &x, &[c, c, 3, 3], p).unwrap()
    });
    let a = g.upload(&[2048, 576], &data(2048 * 576, 3)).unwrap();
    let b = g.upload(&[576, 64], &data(576 * 64, 4)).unwrap();
    time(
        "matmul 2048x576x64 (vec4 kernel)",
        2.0 * 2048.0 * 576.0 * 64.0 / 1e9,
        &|| g.matmul(&a, &b, false, false).unwrap(),
    );
    let b = g.upload(&[576, 63], &data(576 * 63, 4)).unwrap();
    time(
        "matmul 2048x576x63 (scalar kernel)",
        2.0 * 2048.0 * 576.0 * 63.0 / 1e9,
        &|| g.matmul(&a, &b, false, false).unwrap(),
    );
}
