//! Kernel timings, not asserted (run with --ignored --nocapture): the CPU's conv2d and GEMM,
//! and the GPU's kernels on whatever adapter exists (lavapipe here: NOT a GPU timing).

use crate::common::*;
use nnlab::backend::*;
use nnlab::cpu::CpuBackend;
use nnlab::Tensor;

/// GFLOP/s of conv2d forward + backward-input + backward-weight on DnCNN-like shapes
/// (batch 16, 64->64 channels, 3x3, 64x64). The bar is >= 50 GFLOP/s on the 2-core dev machine.
#[test]
#[ignore]
fn cpu_conv2d_speed() {
    let b = CpuBackend::new();
    let (n, c, h) = (16, 64, 64);
    let p = Conv2dParams::new(1, 1, 1);
    let x = b.t(&[n, c, h, h], &rnd(n * c * h * h, 1));
    let w = b.t(&[c, c, 3, 3], &rnd(c * c * 9, 2));
    let bias = b.t(&[c], &rnd(c, 3));
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
    let wm = b.t(&[c, c * 9], &rnd(c * c * 9, 6));
    let cols = b.t(&[c * 9, h * h], &rnd(c * 9 * h * h, 7));
    let tg = time(&|| (0..n).for_each(|_| drop(b.matmul(&wm, &cols, false, false).unwrap())));
    println!("GEMM alone on the forward's shape: {:.1} GFLOP/s", g(tg));
    let (m, k, nn) = (1024, 1024, 1024);
    let a = b.t(&[m, k], &rnd(m * k, 4));
    let bb = b.t(&[k, nn], &rnd(k * nn, 5));
    let tm = time(&|| drop(b.matmul(&a, &bb, false, false).unwrap()));
    println!(
        "matmul 1024^3: {:.1} GFLOP/s",
        2.0 * (m * k * nn) as f64 / tm / 1e9
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

/// GFLOP/s of these kernels on whatever adapter exists (lavapipe here: NOT a GPU timing).
/// XDG_RUNTIME_DIR=/tmp cargo test --release --test ops speed::gpu_kernel_gflops -- --ignored --nocapture
#[test]
#[ignore]
fn gpu_kernel_gflops() {
    let g = gpu();
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
/// XDG_RUNTIME_DIR=/tmp cargo test --release --test ops speed::gpu_kernel_quick_timing -- --ignored --nocapture
#[test]
#[ignore]
fn gpu_kernel_quick_timing() {
    let g = gpu();
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
    let p = Conv2dParams::new(1, 1, 1);
    let x = g.upload(&[n, c, hw, hw], &rnd(n * c * hw * hw, 1)).unwrap();
    let w = g.upload(&[c, c, 3, 3], &rnd(c * c * 9, 2)).unwrap();
    let gflop = 2.0 * (n * c * hw * hw * c * 9) as f64 / 1e9;
    time("conv2d fwd", gflop, &|| g.conv2d(&x, &w, None, p).unwrap());
    time("conv2d bwd-input", gflop, &|| {
        g.conv2d_backward_input(&x, &w, &[n, c, hw, hw], p).unwrap()
    });
    time("conv2d bwd-weight", gflop, &|| {
        g.conv2d_backward_weight(&x, &x, &[c, c, 3, 3], p).unwrap()
    });
    let a = g.upload(&[2048, 576], &rnd(2048 * 576, 3)).unwrap();
    let b = g.upload(&[576, 64], &rnd(576 * 64, 4)).unwrap();
    time(
        "matmul 2048x576x64 (vec4 kernel)",
        2.0 * 2048.0 * 576.0 * 64.0 / 1e9,
        &|| g.matmul(&a, &b, false, false).unwrap(),
    );
    let b = g.upload(&[576, 63], &rnd(576 * 63, 4)).unwrap();
    time(
        "matmul 2048x576x63 (scalar kernel)",
        2.0 * 2048.0 * 576.0 * 63.0 / 1e9,
        &|| g.matmul(&a, &b, false, false).unwrap(),
    );
}
