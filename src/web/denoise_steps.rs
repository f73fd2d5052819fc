//! Denoising one crop in short calls, a few DnCNN layers each (`models::dncnn::CropSteps`):
//! the Denoise tab's tiles in the tabs' own worker (WebGPU, or `?workers=1`) go through here, so
//! that on a slow adapter the page shows progress inside a tile and Cancel never waits for more
//! than the layers of one call (www/denoise.js runs them with the page's adaptive chunk loop).
//!   denoise_steps_begin(key, crop, h, w, ensemble) -> {total}
//!   denoise_steps_run(n) -> {done, total, finished}   (call until finished)
//!   denoise_steps_output() -> the denoised crop, for denoise_tile_output
//! One run at a time per worker; a new begin (or denoise_steps_drop, on Cancel) drops the old.

use std::cell::RefCell;

use js_sys::Object;
use wasm_bindgen::prelude::*;

use super::denoise::model;
use super::{backend, err, invalid, set};
use crate::models::dncnn::CropSteps;

/// Most layers one call may queue (a call is also cut at the end of a pass).
const MAX_LAYERS_PER_CALL: usize = 64;

struct Run {
    key: String,
    steps: CropSteps,
}

thread_local! {
    static RUN: RefCell<Option<Run>> = const { RefCell::new(None) };
}

fn progress(steps: &CropSteps) -> JsValue {
    let o = Object::new();
    set(&o, "done", steps.queued() as u32);
    set(&o, "total", steps.total() as u32);
    set(&o, "finished", steps.finished());
    o.into()
}

/// Start denoising a crop (`channels` x `height` x `width`, planar f32, e.g. a
/// `denoise_tile_input`) with the model loaded under `key` ("trained": the tab's own); with
/// `ensemble` as in `denoise_begin`. Resolves to `{done: 0, total, finished}`; `total` counts
/// layers (passes x depth).
#[wasm_bindgen]
pub fn denoise_steps_begin(
    key: &str,
    crop: Vec<f32>,
    height: usize,
    width: usize,
    ensemble: bool,
) -> Result<JsValue, JsError> {
    RUN.with(|r| *r.borrow_mut() = None);
    let m = model(key)?;
    let steps = CropSteps::new(&m, crop, height, width, ensemble).map_err(err)?;
    let p = progress(&steps);
    RUN.with(|r| {
        *r.borrow_mut() = Some(Run {
            key: key.to_string(),
            steps,
        })
    });
    Ok(p)
}

/// Run the next `n` layers (1..=64; fewer where a pass ends) and wait until the backend has
/// done them, so that the time of this call is the time of its layers and no more work is in
/// flight after it. Resolves to `{done, total, finished}`.
#[wasm_bindgen]
pub async fn denoise_steps_run(n: usize) -> Result<JsValue, JsError> {
    if !(1..=MAX_LAYERS_PER_CALL).contains(&n) {
        return Err(invalid(format!(
            "denoise_steps_run: layers per call must be 1..={MAX_LAYERS_PER_CALL}, got {n}"
        )));
    }
    let be = backend()?;
    // the run leaves the thread_local while it awaits (no borrow across an await)
    let Run { key, mut steps } = RUN
        .with(|r| r.borrow_mut().take())
        .ok_or_else(|| invalid("no crop is being denoised (cancelled, or not begun)"))?;
    let m = model(&key)?;
    for _ in 0..n {
        if steps.finished() || steps.at_pass_end() {
            break;
        }
        steps.queue_layer(be.as_ref(), &m).map_err(err)?;
    }
    steps.settle(be.as_ref()).await.map_err(err)?;
    let p = progress(&steps);
    // the worker answers one call at a time (www/worker.js), so no begin or drop ran meanwhile
    RUN.with(|r| *r.borrow_mut() = Some(Run { key, steps }));
    Ok(p)
}

/// The denoised crop of the finished run (the run ends).
#[wasm_bindgen]
pub fn denoise_steps_output() -> Result<Vec<f32>, JsError> {
    let run = RUN
        .with(|r| r.borrow_mut().take())
        .ok_or_else(|| invalid("no crop is being denoised (cancelled, or not begun)"))?;
    run.steps.output().map_err(err)
}

/// Drop the run in progress, if any (Cancel).
#[wasm_bindgen]
pub fn denoise_steps_drop() {
    RUN.with(|r| *r.borrow_mut() = None);
}
