//! Hidden entry points for www/bench.html: the page's own speed on the worker's backend, timed
//! by the page (each call is one unit of work; a result comes back so nothing is skipped).
//! The kernel table is `nnlab bench`'s (`kernel_bench`); the DnCNN and DCGAN rows follow
//! TensorFlow.js's peer benchmark (../shared/peer/tfjs): a DnCNN of given depth and width on one
//! image, and a DCGAN training step. Nothing here is used by the tabs.

use std::cell::RefCell;

use wasm_bindgen::prelude::*;

use super::{backend, err, invalid, set};
use crate::kernel_bench::{fp32_peak_tflops, kernel_case, KernelCase, KernelSize};
use crate::models::dncnn::{self, DnCnn, DnCnnConfig};
use crate::models::gan::{self, Discriminator, GanArch, GanConfig, GanLoss, Generator, Latent};
use crate::nn::Adam;
use crate::rng;
use crate::tensor::Tensor;

struct DnCnnCase {
    model: DnCnn,
    x: Vec<f32>,
    side: usize,
}

struct GanCase {
    gen: Generator,
    disc: Discriminator,
    opt_g: Adam,
    opt_d: Adam,
    x: Tensor,
    z: Tensor,
}

thread_local! {
    static DNCNN: RefCell<Option<DnCnnCase>> = const { RefCell::new(None) };
    static GAN: RefCell<Option<GanCase>> = const { RefCell::new(None) };
    static KERNEL: RefCell<Option<KernelCase>> = const { RefCell::new(None) };
}

/// The FP32 peak in TFLOP/s of an adapter known by name (`kernel_bench::fp32_peak_tflops`,
/// the table `nnlab bench` uses too), or undefined.
#[wasm_bindgen]
pub fn bench_fp32_peak_tflops(adapter: &str) -> Option<f64> {
    fp32_peak_tflops(adapter)
}

/// Make kernel-table case `index` (0, 1, ...) on the worker's backend, its inputs seeded, at
/// `size` "full" (`nnlab bench`'s shapes) or "small" (smaller batches: a quick run). Resolves to
/// `{op, shape, gflop}`, or null past the last case.
#[wasm_bindgen]
pub fn bench_kernel_setup(index: usize, size: &str) -> Result<JsValue, JsError> {
    let size = match size {
        "full" => KernelSize::Full,
        "small" => KernelSize::Small,
        _ => {
            return Err(invalid(format!(
                "bench_kernel_setup: size must be \"full\" or \"small\", got {size:?}"
            )))
        }
    };
    KERNEL.with(|k| *k.borrow_mut() = None);
    let be = backend()?;
    let Some(case) = kernel_case(be.as_ref(), index, size).map_err(err)? else {
        return Ok(JsValue::NULL);
    };
    let o = js_sys::Object::new();
    set(&o, "op", case.op);
    set(&o, "shape", case.shape.as_str());
    set(&o, "gflop", case.gflop);
    KERNEL.with(|k| *k.borrow_mut() = Some(case));
    Ok(o.into())
}

/// Run the prepared kernel case `reps` times (1..=1000) and wait until the backend has done
/// them (one number, the sum of the last output, is read back); resolves to that sum.
#[wasm_bindgen]
pub async fn bench_kernel_run(reps: usize) -> Result<f64, JsError> {
    if !(1..=1000).contains(&reps) {
        return Err(invalid(format!(
            "bench_kernel_run: reps must be 1..=1000, got {reps}"
        )));
    }
    let be = backend()?;
    let case = KERNEL
        .with(|k| k.borrow_mut().take())
        .ok_or_else(|| invalid("bench_kernel_run: call bench_kernel_setup first"))?;
    let r = async {
        let mut last = case.run(be.as_ref())?;
        for _ in 1..reps {
            last = case.run(be.as_ref())?;
        }
        let s = be.read(&be.sum(&last)?).await?;
        Ok::<f64, crate::Error>(s[0] as f64)
    }
    .await;
    KERNEL.with(|k| *k.borrow_mut() = Some(case));
    r.map_err(err)
}

/// Sum of `reps` GEMMs c (m x n) = a (m x k) * b (k x n) of seeded values on the CPU (the
/// kernel the CPU backend's convs use); returns a checksum of c.
#[wasm_bindgen]
pub fn bench_gemm(m: usize, n: usize, k: usize, reps: usize) -> Result<f64, JsError> {
    if m * n * k == 0 || m * k > 1 << 26 || k * n > 1 << 26 || m * n > 1 << 26 {
        return Err(invalid(
            "bench_gemm: sizes must be positive and each matrix at most 2^26 values",
        ));
    }
    let a = rng::uniform_vec(m * k, -1.0, 1.0, 1);
    let b = rng::uniform_vec(k * n, -1.0, 1.0, 2);
    let mut c = vec![0.0f32; m * n];
    for _ in 0..reps {
        crate::cpu::gemm_wasm::sgemm(m, n, k, (&a, k, 1), (&b, n, 1), (&mut c, n, 1), false);
    }
    Ok(c.iter().map(|v| *v as f64).sum())
}

/// A seeded DnCNN (`channels`, `depth`, `width`) and a seeded `side` x `side` image.
#[wasm_bindgen]
pub fn bench_dncnn_setup(
    channels: usize,
    depth: usize,
    width: usize,
    side: usize,
) -> Result<(), JsError> {
    if !(8..=1024).contains(&side) {
        return Err(invalid("bench_dncnn_setup: side must be 8..=1024"));
    }
    let be = backend()?;
    let config = DnCnnConfig {
        channels,
        depth,
        width,
    };
    let model = DnCnn::new(be.as_ref(), config, 7).map_err(err)?;
    let x = rng::uniform_vec(channels * side * side, 0.0, 1.0, 11);
    DNCNN.with(|c| *c.borrow_mut() = Some(DnCnnCase { model, x, side }));
    Ok(())
}

/// Denoise the bench image once as one crop (read back); resolves to its mean.
#[wasm_bindgen]
pub async fn bench_dncnn_run() -> Result<f64, JsError> {
    let be = backend()?;
    let case = DNCNN
        .with(|c| c.borrow_mut().take())
        .ok_or_else(|| invalid("bench_dncnn_run: call bench_dncnn_setup first"))?;
    let r = dncnn::denoise_crop(
        be.as_ref(),
        &case.model,
        &case.x,
        case.side,
        case.side,
        false,
    )
    .await;
    DNCNN.with(|c| *c.borrow_mut() = Some(case));
    let y = r.map_err(err)?;
    Ok(y.iter().map(|v| *v as f64).sum::<f64>() / y.len() as f64)
}

/// The DCGAN of TF.js's peer at `width` (64: G dense 100 -> 128x7x7, convT 128->64, convT
/// 64->1; D conv 1->64, conv 64->128, dense), Adam(2e-4, 0.5), seeded data of `batch` digits.
#[wasm_bindgen]
pub fn bench_dcgan_setup(width: usize, batch: usize) -> Result<(), JsError> {
    if batch == 0 || batch > 1024 {
        return Err(invalid("bench_dcgan_setup: batch must be 1..=1024"));
    }
    let be = backend()?;
    let cfg = GanConfig {
        arch: GanArch::Dcgan,
        latent: 100,
        width,
        extra_conv: false,
        extra_conv_14: false,
    };
    let gen = Generator::new(be.as_ref(), cfg, 1).map_err(err)?;
    let disc = Discriminator::new(be.as_ref(), cfg, 2).map_err(err)?;
    let x = be
        .upload(
            &[batch, gan::PIXELS],
            &rng::uniform_vec(batch * gan::PIXELS, -1.0, 1.0, 3),
        )
        .map_err(err)?;
    let z = be
        .upload(&[batch, 100], &gan::sample_z(batch, 100, Latent::Normal, 4))
        .map_err(err)?;
    let case = GanCase {
        gen,
        disc,
        opt_g: Adam::new(2e-4, 0.5, 0.999),
        opt_d: Adam::new(2e-4, 0.5, 0.999),
        x,
        z,
    };
    GAN.with(|c| *c.borrow_mut() = Some(case));
    Ok(())
}

/// One DCGAN training step (D then G, cross-entropy), both losses read back; resolves to the
/// G loss.
#[wasm_bindgen]
pub async fn bench_dcgan_step() -> Result<f64, JsError> {
    let be = backend()?;
    let mut case = GAN
        .with(|c| c.borrow_mut().take())
        .ok_or_else(|| invalid("bench_dcgan_step: call bench_dcgan_setup first"))?;
    let r = async {
        let c = &mut case;
        let out = gan::train_step(
            be.as_ref(),
            &c.gen,
            &c.disc,
            &mut c.opt_g,
            &mut c.opt_d,
            GanLoss::CrossEntropy,
            &c.x,
            &c.z,
        )?;
        let v = be.read_many(&[&out.d_loss, &out.g_loss]).await?;
        Ok::<f64, crate::Error>(v[1][0] as f64)
    }
    .await;
    GAN.with(|c| *c.borrow_mut() = Some(case));
    r.map_err(err)
}
