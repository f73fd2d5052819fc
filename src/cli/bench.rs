//! `nnlab info` (the backends available here) and the kernel benchmark (`nnlab bench`,
//! `./build.sh bench`): GFLOP/s of the conv and matmul ops on DnCNN-like and GAN-like shapes, on
//! every backend that exists here. Timings are wall-clock over repeated runs after a warm-up;
//! compare them as ratios within one run.

use std::time::{Duration, Instant};

use crate::backend::Backend;
use crate::cpu::CpuBackend;
use crate::gpu::{GpuBackend, GpuOptions, Policy, Variant};
pub use crate::kernel_bench::fp32_peak_tflops;
use crate::kernel_bench::{kernel_case, KernelSize, KERNEL_CASES};
use crate::{rng, Result};

/// One row of the bench table.
pub struct BenchRow {
    pub backend: String,
    pub op: &'static str,
    pub shape: String,
    pub gflop: f64,
    pub seconds: f64,
}

impl BenchRow {
    pub fn gflops(&self) -> f64 {
        self.gflop / self.seconds
    }
}

/// What the bench's timings count: wall-clock time (the default), or, with NNLAB_BENCH_CLOCK=cpu,
/// the CPU time of all this process's threads (Linux), which other processes sharing the cores
/// do not inflate: a fair 1-thread figure on a busy machine (at more threads it also counts
/// the time threads spend waiting for work, so use wall time there).
fn cpu_clock() -> bool {
    std::env::var("NNLAB_BENCH_CLOCK").is_ok_and(|v| v == "cpu")
}

/// CPU seconds used so far by all threads of this process (sum of /proc/self/task/*/schedstat).
fn process_cpu_seconds() -> Option<f64> {
    let mut ns = 0u64;
    for t in std::fs::read_dir("/proc/self/task").ok()? {
        let stat = std::fs::read_to_string(t.ok()?.path().join("schedstat")).ok()?;
        ns += stat.split_whitespace().next()?.parse::<u64>().ok()?;
    }
    Some(ns as f64 * 1e-9)
}

/// Seconds on the bench's clock (see `cpu_clock`), from an arbitrary origin.
fn clock_now(origin: Instant) -> f64 {
    if cpu_clock() {
        if let Some(s) = process_cpu_seconds() {
            return s;
        }
    }
    origin.elapsed().as_secs_f64()
}

/// Time `f` (which enqueues work) until `budget` has passed, after one warm-up; `sync` waits
/// for the backend to finish. Returns seconds per call on the bench's clock.
fn time_it(
    budget: Duration,
    sync: &dyn Fn() -> Result<()>,
    f: &mut dyn FnMut() -> Result<()>,
) -> Result<f64> {
    f()?;
    sync()?;
    let origin = Instant::now();
    let start = clock_now(origin);
    let mut reps = 0u32;
    while reps < 2 || clock_now(origin) - start < budget.as_secs_f64() {
        f()?;
        sync()?;
        reps += 1;
        if reps >= 200 {
            break;
        }
    }
    Ok((clock_now(origin) - start) / reps as f64)
}

/// Bench every op on one backend.
pub fn bench_backend(
    be: &dyn Backend,
    sync: &dyn Fn() -> Result<()>,
    budget: Duration,
) -> Result<Vec<BenchRow>> {
    let name = be.info().describe();
    let mut rows = Vec::new();
    let mut push = |op: &'static str, shape: String, gflop: f64, secs: f64| {
        rows.push(BenchRow {
            backend: name.clone(),
            op,
            shape,
            gflop,
            seconds: secs,
        });
    };

    for i in 0..KERNEL_CASES {
        let Some(case) = kernel_case(be, i, KernelSize::Full)? else {
            break;
        };
        let t = time_it(budget, sync, &mut || case.run(be).map(drop))?;
        push(case.op, case.shape.clone(), case.gflop, t);
    }
    Ok(rows)
}

/// The shipped DnCNN models the inference bench runs (those present under www/models/).
const DNCNN_MODELS: [&str; 3] = ["dncnn_s10_gray", "dncnn_blind_gray", "dncnn_blind_color"];
/// Side of the test image of the inference bench: 512 on the CPU (the peer bench's row), 128 on
/// a GPU adapter (small: lavapipe runs ~1 GFLOP/s).
fn dncnn_side(be: &dyn Backend) -> usize {
    if be.info().kind == "cpu" {
        512
    } else {
        128
    }
}

/// Megapixels/s of tiled DnCNN inference for each shipped model on one backend; rows of
/// (model, MP/s, ms per image) and the models that are missing.
pub fn bench_dncnn(
    be: &dyn Backend,
    budget: Duration,
) -> Result<(Vec<(String, f64, f64)>, Vec<String>)> {
    use crate::data::images::Image;
    use crate::models::dncnn::{self, DnCnn};
    let (mut rows, mut missing) = (Vec::new(), Vec::new());
    let side = dncnn_side(be);
    for name in DNCNN_MODELS {
        let path = std::path::PathBuf::from(format!("www/models/{name}.safetensors"));
        let Ok(bytes) = std::fs::read(&path) else {
            missing.push(path.display().to_string());
            continue;
        };
        let model = DnCnn::from_weights(be, &bytes)?;
        let c = model.config.channels;
        let img = Image::new(
            c,
            side,
            side,
            rng::uniform_vec(c * side * side, 0.0, 1.0, 11),
        )?;
        let core = dncnn::tile_core(be, &model.config)?;
        // denoise_tiled reads its result back, so each call is already synchronous
        let t = time_it(budget, &|| Ok(()), &mut || {
            dncnn::denoise_tiled(be, &model, &img, core, false, |_, _| {}).map(drop)
        })?;
        rows.push((
            format!("{name} {side}x{side}"),
            img.pixels() as f64 / 1e6 / t,
            t * 1e3,
        ));
    }
    Ok((rows, missing))
}

/// DnCNN training patches/s: Adam steps on batches of 64 gray 40x40 patches (the paper's
/// setting) with the shipped models' shape, depth 10 and width 48.
pub fn bench_dncnn_train(be: &dyn Backend, budget: Duration) -> Result<f64> {
    use crate::models::dncnn::{self, DnCnn, DnCnnConfig};
    let config = DnCnnConfig {
        channels: 1,
        depth: 10,
        width: 48,
    };
    let model = DnCnn::new(be, config, 1)?;
    let mut opt = dncnn::adam(1e-3);
    let shape = [64, 1, 40, 40];
    let clean = be.upload(&shape, &rng::uniform_vec(64 * 1600, 0.0, 1.0, 12))?;
    let noisy = be.upload(&shape, &rng::uniform_vec(64 * 1600, 0.0, 1.0, 13))?;
    // read the loss back each step, as the trainer does
    let t = time_it(budget, &|| Ok(()), &mut || {
        let loss = dncnn::train_step(be, &model, &mut opt, &noisy, &clean)?;
        crate::backend::read_blocking(be, &loss).map(drop)
    })?;
    Ok(64.0 / t)
}

/// GAN training steps/s (batch 64: one D step and one G step) for both architectures, at the
/// shipped DCGAN's width 32; rows of (architecture, steps/s).
pub fn bench_gan(be: &dyn Backend, budget: Duration) -> Result<Vec<(String, f64)>> {
    use crate::models::gan::{self, Discriminator, GanArch, GanConfig, GanLoss, Generator, Latent};
    use crate::nn::Adam;
    let mut rows = Vec::new();
    // NNLAB_BENCH_GAN=dense|dcgan runs one architecture (profiling)
    let only = std::env::var("NNLAB_BENCH_GAN").ok();
    for arch in [GanArch::Dense, GanArch::Dcgan] {
        if only
            .as_ref()
            .is_some_and(|o| !format!("{arch:?}").eq_ignore_ascii_case(o))
        {
            continue;
        }
        let cfg = GanConfig {
            arch,
            latent: 100,
            width: 32,
            extra_conv: false,
            extra_conv_14: false,
        };
        let (gen, disc) = (Generator::new(be, cfg, 1)?, Discriminator::new(be, cfg, 2)?);
        let (mut og, mut od) = (Adam::new(2e-4, 0.5, 0.999), Adam::new(2e-4, 0.5, 0.999));
        let x = be.upload(
            &[64, gan::PIXELS],
            &rng::uniform_vec(64 * gan::PIXELS, -1.0, 1.0, 3),
        )?;
        let z = be.upload(&[64, 100], &gan::sample_z(64, 100, Latent::Normal, 4))?;
        // read the loss back each step, as a training loop does
        let t = time_it(budget, &|| Ok(()), &mut || {
            let out = gan::train_step(
                be,
                &gen,
                &disc,
                &mut og,
                &mut od,
                GanLoss::CrossEntropy,
                &x,
                &z,
            )?;
            crate::backend::read_blocking(be, &out.g_loss).map(drop)
        })?;
        rows.push((format!("{arch:?}"), 1.0 / t));
    }
    Ok(rows)
}

/// Microseconds per small op when many are queued back to back and read once: 500 chained
/// adds of 64 floats (each a separate dispatch), then one read. At MNIST sizes this overhead,
/// not the arithmetic, sets a training step's time on a GPU (issue 18 item 4).
pub fn bench_dispatch(be: &dyn Backend, budget: Duration) -> Result<f64> {
    use crate::backend::BinaryOp;
    const OPS: usize = 500;
    let a = be.upload(&[64], &rng::uniform_vec(64, -1.0, 1.0, 15))?;
    let t = time_it(budget, &|| Ok(()), &mut || {
        let mut x = be.binary(BinaryOp::Add, &a, &a)?;
        for _ in 1..OPS {
            x = be.binary(BinaryOp::Add, &x, &a)?;
        }
        crate::backend::read_blocking(be, &x).map(drop)
    })?;
    Ok(t / OPS as f64 * 1e6)
}

/// DnCNN 17x64 (the paper's gray model: 17 layers, 64 channels; fresh weights) on one gray
/// `w` x `h` image, tiled as `nnlab denoise` tiles it: (GFLOP of the image, seconds of the
/// first run, which includes compiling the pipelines, seconds of the better of two more, or of
/// the first alone when it took over 10 s: gpu_check.sh gives the photo 100 s, in f16 and f32).
pub fn bench_photo(be: &dyn Backend, w: usize, h: usize) -> Result<(f64, f64, f64)> {
    use crate::data::images::Image;
    use crate::models::dncnn::{self, DnCnn, DnCnnConfig};
    let config = DnCnnConfig {
        channels: 1,
        depth: 17,
        width: 64,
    };
    let model = DnCnn::new(be, config, 1)?;
    let img = Image::new(1, h, w, rng::uniform_vec(w * h, 0.0, 1.0, 14))?;
    let core = dncnn::tile_core(be, &config)?;
    let (c, d, k) = (config.channels, config.depth, config.width);
    let flop_per_pixel = 2 * 9 * (c * k + (d - 2) * k * k + k * c);
    let gflop = (flop_per_pixel * w * h) as f64 / 1e9;
    let run = || -> Result<f64> {
        let t = Instant::now();
        dncnn::denoise_tiled(be, &model, &img, core, false, |_, _| {})?;
        Ok(t.elapsed().as_secs_f64())
    };
    let first = run()?;
    // a slow adapter (or a slow kernel on a real one) is timed once, to stay in a time budget
    let best = if first > 10.0 {
        first
    } else {
        run()?.min(run()?)
    };
    Ok((gflop, first, best))
}

/// Parse `WxH` (e.g. `4000x3000`) for `nnlab bench --photo`.
pub fn parse_size(s: &str) -> Result<(usize, usize)> {
    let bad = || {
        crate::Error::Invalid(format!(
            "--photo takes WIDTHxHEIGHT, e.g. 4000x3000, got '{s}'"
        ))
    };
    let (w, h) = s.split_once(['x', 'X']).ok_or_else(bad)?;
    let (w, h): (usize, usize) = (
        w.trim().parse().map_err(|_| bad())?,
        h.trim().parse().map_err(|_| bad())?,
    );
    if w == 0 || h == 0 || w.checked_mul(h).is_none_or(|n| n > 100_000_000) {
        return Err(crate::Error::Invalid(format!(
            "--photo {s}: the image must have 1 to 100 million pixels"
        )));
    }
    Ok((w, h))
}

/// What `nnlab bench` runs besides its defaults.
#[derive(Clone, Copy, Debug, Default)]
pub struct BenchOptions {
    /// the CPU backend only (skip the GPU / software adapter)
    pub cpu_only: bool,
    /// the GPU backend only (skip the CPU backend)
    pub gpu_only: bool,
    /// also time DnCNN 17x64 on one gray image of this size (`bench_photo`)
    pub photo: Option<(usize, usize)>,
}

/// Peak resident memory of this process so far (Linux: VmHWM of /proc/self/status), in bytes.
pub fn peak_rss_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// Bench the CPU backend (unless `gpu_only`) and, unless `cpu_only` or no adapter exists, the
/// GPU backend; print a table.
pub fn run(budget: Duration, opts: BenchOptions) -> Result<String> {
    let mut out = String::new();
    let cpu = CpuBackend::new();
    // NNLAB_BENCH_ONLY=ops|denoise|dncnn-train|gan|dispatch|photo runs one section (profiling,
    // tools/gpu_check.sh)
    let only = std::env::var("NNLAB_BENCH_ONLY").ok();
    let want_any = |section: &str| only.as_deref().is_none_or(|o| o == section);
    let want = |section: &str| !opts.gpu_only && want_any(section);
    let mut photos: Vec<(String, f64, f64, f64)> = Vec::new();
    let mut rows = if want("ops") {
        bench_backend(&cpu, &|| Ok(()), budget)?
    } else {
        Vec::new()
    };
    let mut peak = None;
    let mut tuned = String::new();
    let (mut dn_rows, dn_missing) = if want("denoise") {
        bench_dncnn(&cpu, budget)?
    } else {
        (Vec::new(), Vec::new())
    };
    let cpu_name = cpu.info().describe();
    let mut dn: Vec<(String, String, f64, f64)> = dn_rows
        .drain(..)
        .map(|(m, mp, ms)| (cpu_name.clone(), m, mp, ms))
        .collect();
    let mut dn_train = Vec::new();
    if want("dncnn-train") {
        dn_train.push((cpu_name.clone(), bench_dncnn_train(&cpu, budget)?));
    }
    let mut gans: Vec<(String, String, f64)> = if want("gan") {
        bench_gan(&cpu, budget)?
    } else {
        Vec::new()
    }
    .into_iter()
    .map(|(a, r)| (cpu_name.clone(), a, r))
    .collect();
    let photo = opts.photo.filter(|_| want_any("photo"));
    if let (Some((w, h)), false) = (photo, opts.gpu_only) {
        let (gf, first, best) = bench_photo(&cpu, w, h)?;
        photos.push((cpu_name.clone(), gf, first, best));
    }
    let gpu = if opts.cpu_only {
        Err(crate::Error::Invalid("--cpu-only".into()))
    } else {
        GpuBackend::new_blocking(GpuOptions::default())
    };
    match gpu {
        Ok(gpu) => {
            let info = gpu.info();
            peak = if info.fallback {
                None
            } else {
                fp32_peak_tflops(&info.adapter)
            };
            if let Some(tf) = peak {
                out.push_str(&format!(
                    "GPU FP32 peak: {tf} TFLOP/s (from the adapter name '{}')\n",
                    info.adapter
                ));
            }
            // the kernel table once per variant and once tuned (unless NNLAB_GPU_VARIANT
            // pins one); the rows after it run under the policy of the environment
            let env_policy = gpu.tuner().policy();
            let policies = match env_policy {
                Policy::Auto => vec![
                    Policy::Force(Variant::Blocked),
                    Policy::Force(Variant::Tiled),
                    Policy::Auto,
                ],
                p => vec![p],
            };
            for p in policies.into_iter().filter(|_| want_any("ops")) {
                gpu.set_kernel_policy(p);
                let mut r = bench_backend(&gpu, &|| gpu.wait(), budget)?;
                for row in &mut r {
                    row.backend = format!("{} [{}]", row.backend, p.name());
                }
                rows.extend(r);
            }
            gpu.set_kernel_policy(env_policy);
            tuned = gpu.tuner().to_json();
            // DnCNN inference in f16 (the default where the adapter has shader-f16) and in f32
            let f16_default = gpu.f16_inference();
            let precisions = if f16_default {
                vec![true, false]
            } else {
                vec![false]
            };
            if want_any("denoise") {
                for &f16 in &precisions {
                    gpu.set_f16_inference(f16)?;
                    let name = gpu.info().describe();
                    dn.extend(
                        bench_dncnn(&gpu, budget)?
                            .0
                            .into_iter()
                            .map(|(m, mp, ms)| (name.clone(), m, mp, ms)),
                    );
                }
                gpu.set_f16_inference(f16_default)?;
            }
            if want_any("dispatch") {
                out.push_str(&format!(
                    "GPU dispatch: {:.1} us per small op (500 chained adds of 64 floats, one read)\n",
                    bench_dispatch(&gpu, budget)?
                ));
            }
            if want_any("dncnn-train") {
                dn_train.push((info.describe(), bench_dncnn_train(&gpu, budget)?));
            }
            if want_any("gan") {
                gans.extend(
                    bench_gan(&gpu, budget)?
                        .into_iter()
                        .map(|(a, r)| (info.describe(), a, r)),
                );
            }
            if let Some((w, h)) = photo {
                for &f16 in &precisions {
                    gpu.set_f16_inference(f16)?;
                    let (gf, first, best) = bench_photo(&gpu, w, h)?;
                    photos.push((gpu.info().describe(), gf, first, best));
                }
                gpu.set_f16_inference(f16_default)?;
            }
        }
        Err(e) => out.push_str(&format!("GPU: not benchmarked: {e}\n")),
    }
    out.push_str("| backend | op | shape | GFLOP/s | ms/call |\n|---|---|---|---:|---:|\n");
    for r in &rows {
        out.push_str(&format!(
            "| {} | {} | {} | {:.1} | {:.2} |\n",
            r.backend,
            r.op,
            r.shape,
            r.gflops(),
            r.seconds * 1e3
        ));
    }
    let fwd_bwd: Vec<&BenchRow> = rows
        .iter()
        .filter(|r| r.backend.starts_with("CPU") && r.op.starts_with("conv2d"))
        .collect();
    if !fwd_bwd.is_empty() {
        let gflop: f64 = fwd_bwd.iter().map(|r| r.gflop).sum();
        let secs: f64 = fwd_bwd.iter().map(|r| r.seconds).sum();
        out.push_str(&format!(
            "\nCPU conv2d forward+backward (all three passes): {:.1} GFLOP/s (bar: >= 50)\n",
            gflop / secs
        ));
    }
    out.push_str("\nDnCNN inference (random image, tiled as the page and `nnlab denoise` do):\n\n| backend | model | megapixels/s | ms/image |\n|---|---|---:|---:|\n");
    for (be, m, mp, ms) in &dn {
        out.push_str(&format!("| {be} | {m} | {mp:.3} | {ms:.0} |\n"));
    }
    out.push_str("\nDnCNN training (batch 64, gray 40x40 patches, depth 10, width 48, Adam):\n\n| backend | patches/s |\n|---|---:|\n");
    for (be, r) in &dn_train {
        out.push_str(&format!("| {be} | {r:.1} |\n"));
    }
    out.push_str("\nGAN training (batch 64, one D and one G step, width 32, latent 100):\n\n| backend | architecture | steps/s |\n|---|---|---:|\n");
    for (be, a, r) in &gans {
        out.push_str(&format!("| {be} | {a} | {r:.2} |\n"));
    }
    if !tuned.is_empty() {
        out.push_str(&format!(
            "\nGPU kernel variants: [blocked] / [tiled] forced, [auto] the tuner's pick per shape class; its table: {tuned}\n"
        ));
    }
    if let Some((w, h)) = photo {
        out.push_str(&format!("\nDnCNN 17x64 on one {w}x{h} gray image (fresh weights, tiled as `nnlab denoise`):\n\n| backend | first run s | s/image | GFLOP/s |\n|---|---:|---:|---:|\n"));
        for (be, gf, first, best) in &photos {
            out.push_str(&format!(
                "| {be} | {first:.3} | {best:.3} | {:.1} |\n",
                gf / best
            ));
        }
    }
    for m in &dn_missing {
        out.push_str(&format!(
            "(not benchmarked: {m} is missing; run from the repository root)\n"
        ));
    }
    match peak {
        Some(tf) => {
            for r in rows.iter().filter(|r| !r.backend.starts_with("CPU")) {
                out.push_str(&format!("{}: {:.1}% of FP32 peak ({tf} TFLOP/s)\n", r.op, 100.0 * r.gflops() / (tf * 1e3)));
            }
        }
        None => out.push_str("GPU fraction of FP32 peak: not applicable (no real GPU adapter, or its peak is unknown)\n"),
    }
    out.push_str(&format!(
        "CPU threads: {}; clock: {}; peak resident memory: {}\n",
        crate::cpu::threads(),
        if cpu_clock() {
            "process CPU time"
        } else {
            "wall"
        },
        peak_rss_bytes().map_or("unknown".into(), |b| format!(
            "{:.0} MiB",
            b as f64 / 1048576.0
        ))
    ));
    Ok(out)
}

/// `nnlab bench --seconds S`: the table of `run`.
pub fn bench(seconds: f64, opts: BenchOptions) -> Result<()> {
    if !(seconds > 0.0 && seconds < 600.0) {
        return Err(crate::Error::Invalid(format!(
            "--seconds must be in (0, 600), got {seconds}"
        )));
    }
    if opts.cpu_only && opts.gpu_only {
        return Err(crate::Error::Invalid(
            "--cpu-only and --gpu-only exclude each other".into(),
        ));
    }
    print!("{}", run(Duration::from_secs_f64(seconds), opts)?);
    Ok(())
}

/// `nnlab info`: the backends available on this machine and the GPU's limits.
pub fn info() {
    println!("{}", CpuBackend::new().info().describe());
    match GpuBackend::new_blocking(GpuOptions::default()) {
        Ok(g) => {
            let l = g.limits();
            println!("{}", g.info().describe());
            println!(
                "  max storage binding {} MiB, max buffer {} MiB, max workgroups/dim {}",
                l.max_storage_buffer_binding_size >> 20,
                l.max_buffer_size >> 20,
                l.max_compute_workgroups_per_dimension
            );
        }
        Err(e) => println!("GPU: unavailable: {e}"),
    }
}
