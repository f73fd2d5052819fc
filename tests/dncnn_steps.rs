//! `CropSteps` (a DnCNN crop spread over short calls, the page's progress inside a tile): settled
//! after every layer (a mid-pass wait reads one number recorded after the layers) it gives the same crop as
//! `denoise_crop`, with and without the x8 self-ensemble, on the CPU and the GPU; its counts
//! and refusals.

use nnlab::cpu::CpuBackend;
use nnlab::gpu::{GpuBackend, GpuOptions};
use nnlab::models::dncnn::{denoise_crop, CropSteps, DnCnn, DnCnnConfig};
use nnlab::{rng, Backend};

#[path = "common/models.rs"]
mod models_common;

use models_common::tiny_dncnn;

fn gpu() -> GpuBackend {
    std::env::set_var("XDG_RUNTIME_DIR", "/tmp");
    GpuBackend::new_blocking(GpuOptions::default()).unwrap_or_else(|e| {
        panic!("no GPU adapter (install mesa-vulkan-drivers + libvulkan1 for lavapipe): {e}")
    })
}

/// The crop one layer per step, settling after each: the page's slowest schedule.
fn stepwise(
    b: &dyn Backend,
    model: &DnCnn,
    crop: &[f32],
    h: usize,
    w: usize,
    ensemble: bool,
) -> Vec<f32> {
    let mut run = CropSteps::new(model, crop.to_vec(), h, w, ensemble).unwrap();
    let total = run.total();
    assert_eq!(total, model.config.depth * if ensemble { 8 } else { 1 });
    let mut settles = 0;
    while !run.finished() {
        run.queue_layer(b, model).unwrap();
        pollster::block_on(run.settle(b)).unwrap();
        settles += 1;
    }
    assert_eq!((settles, run.queued()), (total, total));
    run.output().unwrap()
}

fn check(b: &dyn Backend) {
    for (channels, h, w) in [(1, 23, 17), (3, 12, 15)] {
        let config = DnCnnConfig {
            channels,
            depth: 4,
            width: 8,
        };
        let model = DnCnn::new(b, config, 3).unwrap();
        let crop = rng::uniform_vec(channels * h * w, 0.0, 1.0, 11);
        for ensemble in [false, true] {
            let want = pollster::block_on(denoise_crop(b, &model, &crop, h, w, ensemble)).unwrap();
            let got = stepwise(b, &model, &crop, h, w, ensemble);
            // the same ops in the same order: the same numbers
            assert_eq!(got, want, "channels {channels}, ensemble {ensemble}");
        }
    }
}

#[test]
fn steps_equal_denoise_crop_on_the_cpu() {
    check(&CpuBackend::new());
}

#[test]
fn steps_equal_denoise_crop_on_the_gpu() {
    check(&gpu());
}

#[test]
fn steps_refuse_misuse() {
    let b = CpuBackend::new();
    let model = tiny_dncnn(&b);
    // a crop of the wrong size
    assert!(CropSteps::new(&model, vec![0.0; 10], 3, 3, false).is_err());
    assert!(CropSteps::new(&model, vec![], 0, 3, false).is_err());
    let mut run = CropSteps::new(&model, vec![0.5; 9], 3, 3, false).unwrap();
    // the output before the end
    for _ in 0..2 {
        run.queue_layer(&b, &model).unwrap();
    }
    run.queue_layer(&b, &model).unwrap();
    // the pass's output awaits settle: no further layer, no output yet
    assert!(run.at_pass_end() && !run.finished());
    assert!(run.queue_layer(&b, &model).is_err());
    pollster::block_on(run.settle(&b)).unwrap();
    assert!(run.finished());
    assert!(run.queue_layer(&b, &model).is_err());
    assert_eq!(run.output().unwrap().len(), 9);
    let early = CropSteps::new(&model, vec![0.5; 9], 3, 3, false).unwrap();
    assert!(early.output().is_err());
}
