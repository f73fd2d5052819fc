//! The GPU kernel tuner from the page (src/gpu/tuner.rs): its choices as JSON, a table to load
//! (www/workers.js keeps it in localStorage per adapter and loads it at worker start), a tuning
//! pass over the shape classes met so far (for the bench page: the tabs never tune, so no tab
//! waits for one), and a forced variant.

use wasm_bindgen::prelude::*;

use super::{invalid, STATE};
use crate::gpu::{GpuBackend, Policy};

fn gpu() -> Option<GpuBackend> {
    STATE.with(|s| s.borrow().as_ref().and_then(|s| s.gpu.clone()))
}

/// `{"adapter": name | null, "policy": "auto" | "blocked" | "tiled", "pending": classes not yet
/// tuned, "choices": {class: variant}}` as a JSON string.
#[wasm_bindgen]
pub fn gpu_tuner_choices() -> String {
    match gpu() {
        Some(g) => {
            let t = g.tuner();
            let adapter = g.info().adapter.replace(['"', '\\'], "");
            format!(
                "{{\"adapter\":\"{adapter}\",\"policy\":\"{}\",\"pending\":{},\"choices\":{}}}",
                t.policy().name(),
                t.pending(),
                t.to_json()
            )
        }
        None => "{\"adapter\":null,\"policy\":\"auto\",\"pending\":0,\"choices\":{}}".into(),
    }
}

/// Merge a `choices` table saved from `gpu_tuner_choices` (same adapter); returns how many
/// choices it held (0 without a GPU). A malformed table is an error and changes nothing.
#[wasm_bindgen]
pub fn gpu_tuner_load(choices_json: &str) -> Result<usize, JsError> {
    match gpu() {
        Some(g) => g
            .tuner()
            .load_json(choices_json)
            .map_err(|e| invalid(&e.to_string())),
        None => Ok(0),
    }
}

/// Time every kernel variant on the shape classes met since the last pass (zero-filled inputs
/// of the same shapes, `reps` runs each, awaiting the GPU between variants) and keep the
/// winners; resolves to the number of classes tuned. Takes as long as a few runs of each op.
#[wasm_bindgen]
pub async fn gpu_tune(reps: Option<usize>) -> Result<usize, JsError> {
    let Some(g) = gpu() else { return Ok(0) };
    g.tune_pending(reps.unwrap_or(3).clamp(1, 20), &js_sys::Date::now)
        .await
        .map_err(|e| invalid(&e.to_string()))
}

/// Force a kernel variant (`blocked`, `tiled`) or let the tuner pick (`auto`).
#[wasm_bindgen]
pub fn gpu_set_kernel_variant(variant: &str) -> Result<(), JsError> {
    let p = Policy::parse(variant).map_err(|e| invalid(&e.to_string()))?;
    if let Some(g) = gpu() {
        g.set_kernel_policy(p);
    }
    Ok(())
}
