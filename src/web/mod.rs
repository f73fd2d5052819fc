//! The wasm-bindgen API of the page. It runs inside a dedicated Web Worker (www/worker.js);
//! the page thread only draws. One backend per worker: WebGPU through wgpu when the browser
//! gives a hardware adapter, else the CPU backend, with the reason kept for the status line.
//!
//! Every exported function returns `Result<_, JsError>`: errors reach JS as `Error` objects
//! carrying nnlab's message; nothing panics on user input.

use std::cell::RefCell;
use std::rc::Rc;

use js_sys::{Object, Reflect};
use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::JsFuture;

use crate::backend::{Backend, BackendInfo};
use crate::cpu::CpuBackend;
use crate::gpu::{GpuBackend, GpuOptions};

mod adversarial;
mod autoencoders;
mod bench;
mod conv_arith;
mod denoise;
mod denoise_steps;
mod filters;
mod gan;
mod gan_ae;
mod semi;
mod tuner;

struct State {
    backend: Rc<dyn Backend>,
    /// why the GPU is not used (None when it is)
    gpu_error: Option<String>,
    /// the browser's own description of its WebGPU adapter (null without one)
    browser_adapter: JsValue,
    /// what the page's `?binding-limit-mb` did, for the status line (None when not given)
    binding_note: Option<String>,
    /// what was wrong with the page's `?backend=` (None when absent or valid)
    backend_note: Option<String>,
    /// the CPU backend is in use because the browser's adapter is a software fallback
    passed_over_fallback: bool,
    /// the same backend as `backend` when it is the GPU (its tuner: src/web/tuner.rs)
    gpu: Option<GpuBackend>,
}

impl State {
    /// The backend's info, with the browser's own name for its adapter where wgpu has none.
    fn info(&self) -> BackendInfo {
        let mut info = self.backend.info();
        if info.kind == "gpu" {
            if let Some(name) = browser_adapter_name(&self.browser_adapter) {
                info.adapter = name;
            }
        }
        info
    }
}

thread_local! {
    static STATE: RefCell<Option<State>> = const { RefCell::new(None) };
    /// The page's digit set (31 MB as f32) with the byte length it was parsed from: the
    /// Adversarial, Autoencoders and GAN tabs share one copy.
    static PAGE_DIGITS: RefCell<Option<(usize, Rc<crate::data::mnist::Mnist>)>> = const { RefCell::new(None) };
}

/// Page digits i with i % HELD_OUT_EVERY == 0 (2,000 of 10,000, every class) are held out from
/// every in-tab training (classifier, autoencoders and PCA, GAN) and serve as evaluation digits.
pub(crate) const HELD_OUT_EVERY: usize = 5;

/// The indices of the page digits (of `n`) that the tabs train on.
pub(crate) fn page_train_indices(n: usize) -> Vec<usize> {
    (0..n).filter(|i| i % HELD_OUT_EVERY != 0).collect()
}

/// The page's training digits (of `n`) in a seeded random order, reshuffled at each epoch: the
/// batches of the tabs that train on the page digits (Adversarial, Autoencoders).
pub(crate) struct EpochOrder {
    order: Vec<usize>,
    cursor: usize,
    seed: u64,
    /// completed passes over the training digits
    pub epoch: usize,
}

impl EpochOrder {
    pub fn new(n: usize, seed: u64) -> EpochOrder {
        EpochOrder {
            order: crate::rng::shuffled(
                page_train_indices(n),
                seed.wrapping_mul(1000).wrapping_add(1),
            ),
            cursor: 0,
            seed,
            epoch: 0,
        }
    }
    pub fn len(&self) -> usize {
        self.order.len()
    }
    /// The next `batch` page indices; a batch that would run past the epoch's end starts a new
    /// epoch instead (the remainder is dropped).
    pub fn next_batch(&mut self, batch: usize) -> Vec<usize> {
        if self.cursor + batch > self.order.len() {
            self.epoch += 1;
            let seed = self
                .seed
                .wrapping_mul(1000)
                .wrapping_add(self.epoch as u64 + 1);
            self.order = crate::rng::shuffled(std::mem::take(&mut self.order), seed);
            self.cursor = 0;
        }
        let idx = self.order[self.cursor..self.cursor + batch].to_vec();
        self.cursor += batch;
        idx
    }
}

/// Parse www/data/mnist_page.bin once per worker; a tab loading the same file again gets the
/// parsed copy.
pub(crate) fn page_digits(bytes: &[u8]) -> Result<Rc<crate::data::mnist::Mnist>, JsError> {
    if let Some(d) = PAGE_DIGITS.with(|p| {
        p.borrow()
            .as_ref()
            .filter(|(len, _)| *len == bytes.len())
            .map(|(_, d)| d.clone())
    }) {
        return Ok(d);
    }
    let d = Rc::new(crate::data::mnist::Mnist::from_page_bytes(bytes).map_err(err)?);
    PAGE_DIGITS.with(|p| *p.borrow_mut() = Some((bytes.len(), d.clone())));
    Ok(d)
}

pub(crate) fn err(e: impl std::fmt::Display) -> JsError {
    JsError::new(&e.to_string())
}

/// The training calls' guard on their step count: 1..=`max` steps per worker call.
pub(crate) fn check_steps(n: usize, max: usize) -> Result<(), JsError> {
    if (1..=max).contains(&n) {
        Ok(())
    } else {
        Err(invalid(format!(
            "training: steps per call must be 1..={max}, got {n}"
        )))
    }
}

/// A JS error with a message of our own (bad arguments, a step out of order).
pub(crate) fn invalid(msg: impl Into<String>) -> JsError {
    JsError::new(&msg.into())
}

/// A tab's digit set, or the error naming the call that loads it.
pub(crate) fn loaded_digits(
    digits: Option<Rc<crate::data::mnist::Mnist>>,
    loader: &str,
) -> Result<Rc<crate::data::mnist::Mnist>, JsError> {
    digits.ok_or_else(|| invalid(format!("the page's digit set is not loaded yet ({loader})")))
}

pub(crate) fn set(obj: &Object, key: &str, value: impl Into<JsValue>) {
    // Reflect::set on a plain object cannot fail.
    let _ = Reflect::set(obj, &JsValue::from_str(key), &value.into());
}

/// The backend in use in words (`BackendInfo::describe`, with the browser's adapter name);
/// empty before `init_backend`.
pub(crate) fn backend_describe() -> String {
    STATE
        .with(|s| s.borrow().as_ref().map(|s| s.info().describe()))
        .unwrap_or_default()
}

/// The backend picked by `init_backend` (shared by every tab's API).
pub(crate) fn backend() -> Result<Rc<dyn Backend>, JsError> {
    STATE
        .with(|s| s.borrow().as_ref().map(|s| s.backend.clone()))
        .ok_or_else(|| JsError::new("nnlab is not initialised: call init_backend() first"))
}

/// Ask the browser for a WebGPU adapter in JS terms, so that a failure says what to change
/// (Chromium exposes `navigator.gpu` but returns a null adapter unless WebGPU is enabled).
/// Ok: the adapter's `info` as the browser reports it (vendor, architecture, description,
/// isFallbackAdapter); Err: why there is none.
async fn probe_webgpu() -> Result<JsValue, String> {
    let global = js_sys::global();
    let navigator = Reflect::get(&global, &"navigator".into())
        .ok()
        .filter(|v| v.is_object())
        .ok_or("this context has no navigator")?;
    let gpu = match Reflect::get(&navigator, &"gpu".into()) {
        Ok(g) if g.is_object() => g,
        _ => return Err("this browser has no WebGPU (navigator.gpu is missing)".into()),
    };
    let request = Reflect::get(&gpu, &"requestAdapter".into())
        .ok()
        .and_then(|f| f.dyn_into::<js_sys::Function>().ok())
        .ok_or("navigator.gpu.requestAdapter is missing")?;
    let promise = request
        .call0(&gpu)
        .ok()
        .and_then(|p| p.dyn_into::<js_sys::Promise>().ok())
        .ok_or("navigator.gpu.requestAdapter() did not return a promise")?;
    match JsFuture::from(promise).await {
        Ok(a) if a.is_object() => Ok(Reflect::get(&a, &"info".into()).unwrap_or(JsValue::NULL)),
        Ok(_) => Err("navigator.gpu exists but requestAdapter() returned no adapter (WebGPU is disabled or blocklisted in this browser; Chromium on Linux needs --enable-unsafe-webgpu)".into()),
        Err(e) => Err(format!("requestAdapter() failed: {}", e.as_string().unwrap_or_else(|| format!("{e:?}")))),
    }
}

/// The browser's `isFallbackAdapter` in an `adapter_object` (false when it does not say).
fn is_fallback_adapter(adapter: &JsValue) -> bool {
    Reflect::get(adapter, &"isFallbackAdapter".into())
        .ok()
        .and_then(|v| v.as_bool())
        .unwrap_or(false)
}

/// The adapter info fields worth showing, copied into a plain object (GPUAdapterInfo's
/// properties live on its prototype, so they would not survive postMessage).
fn adapter_object(info: &JsValue) -> JsValue {
    if !info.is_object() {
        return JsValue::NULL;
    }
    let o = Object::new();
    for key in [
        "vendor",
        "architecture",
        "device",
        "description",
        "isFallbackAdapter",
    ] {
        set(
            &o,
            key,
            Reflect::get(info, &key.into()).unwrap_or(JsValue::UNDEFINED),
        );
    }
    o.into()
}

/// Pick the backend: WebGPU when the browser gives a hardware adapter, else the CPU with the
/// reason; `backend_param` (the page's `?backend=`, see `Choice`) can force either.
/// Resolves to the same object as `backend_info()`. Safe to call more than once (re-picks).
/// `max_binding_bytes` (the page's `?binding-limit-mb=N`) lowers the WebGPU storage-binding
/// limit below the adapter's, to see how the page copes on a small GPU (more, smaller tiles);
/// a value that is not a usable number of bytes is ignored. `binding_note` says which.
/// `f16_param` (the page's `?f16=`): `0` (or off/false/no) runs DnCNN's fused inference in f32
/// on an adapter with `shader-f16`, where it is f16 by default (`f16_inference` in the info).
#[wasm_bindgen]
pub async fn init_backend(
    max_binding_bytes: Option<f64>,
    backend_param: Option<String>,
    f16_param: Option<String>,
) -> Result<JsValue, JsError> {
    console_error_panic_hook::set_once();
    let no_f16 = matches!(
        f16_param.map(|v| v.trim().to_ascii_lowercase()).as_deref(),
        Some("0" | "off" | "false" | "no")
    );
    let opts = GpuOptions {
        max_storage_binding_bytes: max_binding_bytes
            .filter(|&b| usable_cap(b))
            .map(|b| b as u64),
        no_f16,
        ..Default::default()
    };
    let (choice, backend_note) = parse_choice(backend_param.as_deref());
    let cpu = || -> Rc<dyn Backend> { Rc::new(CpuBackend::new()) };
    let mut passed_over_fallback = false;
    let mut gpu_handle = None;
    // the browser is not asked for an adapter when the CPU was asked for
    let probed = match choice {
        Choice::Cpu => None,
        _ => Some(probe_webgpu().await.map(|info| adapter_object(&info))),
    };
    let (backend, gpu_error, browser_adapter): (Rc<dyn Backend>, Option<String>, JsValue) =
        match probed {
            None => (
                cpu(),
                Some("?backend=cpu asks for the CPU backend".into()),
                JsValue::NULL,
            ),
            Some(Err(reason)) => (cpu(), Some(reason), JsValue::NULL),
            // A software adapter emulates the GPU on the CPU with a large cost per kernel
            // launch; the wasm CPU backend does the same work faster (2.9x on a DnCNN denoise,
            // 7.3x on DCGAN training in headless Chromium with SwiftShader, see the README's
            // `?backend`). Decided from the
            // browser's own flag (the one wgpu reads too), before a device is opened on it.
            Some(Ok(adapter)) if choice == Choice::Auto && is_fallback_adapter(&adapter) => {
                passed_over_fallback = true;
                let name = browser_adapter_name(&adapter).unwrap_or_else(|| "(unnamed)".into());
                let why = format!(
                    "the browser's adapter, {name}, is a software fallback that emulates a GPU on the CPU, slower than this CPU backend (2.9x on a DnCNN denoise, 7.3x on DCGAN training in nnlab's measurements)"
                );
                (cpu(), Some(why), adapter)
            }
            Some(Ok(adapter)) => match GpuBackend::new(opts).await {
                Ok(gpu) => {
                    gpu_handle = Some(gpu.clone());
                    (Rc::new(gpu), None, adapter)
                }
                Err(e) => (cpu(), Some(e.to_string()), adapter),
            },
        };
    let note = max_binding_bytes.map(|b| binding_note(b, &backend.info()));
    STATE.with(|s| {
        *s.borrow_mut() = Some(State {
            backend,
            gpu_error,
            browser_adapter,
            binding_note: note,
            backend_note,
            passed_over_fallback,
            gpu: gpu_handle,
        })
    });
    backend_info()
}

/// The page's `?backend=`: `auto` (the default) uses WebGPU on a hardware adapter and the CPU
/// backend on a software fallback adapter; `webgpu` (or `gpu`) uses any adapter; `cpu` never
/// asks for one.
#[derive(Clone, Copy, PartialEq, Debug)]
enum Choice {
    Auto,
    WebGpu,
    Cpu,
}

/// `?backend=`'s value (None when absent) as a choice, with a note when it was not understood.
fn parse_choice(value: Option<&str>) -> (Choice, Option<String>) {
    match value.map(|v| v.trim().to_ascii_lowercase()).as_deref() {
        None | Some("auto") => (Choice::Auto, None),
        Some("webgpu" | "gpu") => (Choice::WebGpu, None),
        Some("cpu") => (Choice::Cpu, None),
        Some(_) => (
            Choice::Auto,
            Some(format!(
                "?backend={} ignored: it takes auto, webgpu or cpu",
                value.unwrap_or_default()
            )),
        ),
    }
}

/// A storage-binding cap is usable when it is a finite number of bytes >= 1, fractions
/// dropped (the page passes NaN for a `?binding-limit-mb` that is not a number).
fn usable_cap(bytes: f64) -> bool {
    bytes.is_finite() && bytes >= 1.0
}

/// What a requested storage-binding cap did on the backend now in use, in words.
fn binding_note(requested: f64, info: &BackendInfo) -> String {
    let mib = |b: f64| b / f64::from(1u32 << 20);
    let limit = info.max_binding_bytes as f64;
    if !usable_cap(requested) {
        "?binding-limit-mb ignored: not a positive number of MiB".into()
    } else if info.kind != "gpu" {
        "?binding-limit-mb ignored: it caps WebGPU, which is not in use".into()
    } else if limit < requested.trunc() {
        format!(
            "?binding-limit-mb ignored: the adapter's own limit, {:.1} MiB, is lower",
            mib(limit)
        )
    } else {
        format!(
            "storage bindings capped at {:.1} MiB by ?binding-limit-mb",
            mib(limit)
        )
    }
}

/// `{kind, adapter, fallback, describe, gpu_error, max_binding_bytes, f16_inference,
/// browser_adapter, binding_note, backend_note, passed_over_fallback}` of the backend in use
/// (`f16_inference`: DnCNN runs with f16 weights and activations): `kind` is "gpu" or
/// "cpu"; `fallback` is true for software adapters (SwiftShader); `gpu_error` says why WebGPU is
/// not used (null when it is); `browser_adapter` is `{vendor, architecture, device, description,
/// isFallbackAdapter}` as the browser gives it; `binding_note` says what `init_backend`'s cap did
/// (null without one); `backend_note` says why `?backend=` was ignored (null when it was not);
/// `passed_over_fallback` is true when the CPU backend replaced a software adapter.
#[wasm_bindgen]
pub fn backend_info() -> Result<JsValue, JsError> {
    STATE.with(|s| {
        let s = s.borrow();
        let s = s
            .as_ref()
            .ok_or_else(|| JsError::new("nnlab is not initialised: call init_backend() first"))?;
        let o = info_object(&s.info(), s.gpu_error.as_deref());
        set(&o, "browser_adapter", s.browser_adapter.clone());
        let note =
            |n: &Option<String>| n.as_deref().map(JsValue::from_str).unwrap_or(JsValue::NULL);
        set(&o, "binding_note", note(&s.binding_note));
        set(&o, "backend_note", note(&s.backend_note));
        set(&o, "passed_over_fallback", s.passed_over_fallback);
        Ok(o.into())
    })
}

/// A name for the browser's adapter: wgpu's WebGPU backend only copies `description`, which
/// browsers often leave empty (Chromium's SwiftShader has vendor "google", architecture
/// "swiftshader"), so fall back to architecture and vendor.
fn browser_adapter_name(info: &JsValue) -> Option<String> {
    let field = |k: &str| {
        Reflect::get(info, &k.into())
            .ok()
            .and_then(|v| v.as_string())
            .filter(|v| !v.is_empty())
    };
    if !info.is_object() {
        return None;
    }
    if let Some(d) = field("description") {
        return Some(d);
    }
    match (field("architecture"), field("vendor")) {
        (Some(a), Some(v)) => Some(format!("{a} ({v})")),
        (Some(x), None) | (None, Some(x)) => Some(x),
        (None, None) => None,
    }
}

fn info_object(info: &BackendInfo, gpu_error: Option<&str>) -> Object {
    let o = Object::new();
    set(&o, "kind", info.kind);
    set(&o, "adapter", info.adapter.as_str());
    set(&o, "fallback", info.fallback);
    set(&o, "describe", info.describe());
    set(
        &o,
        "gpu_error",
        gpu_error.map(JsValue::from_str).unwrap_or(JsValue::NULL),
    );
    set(&o, "max_binding_bytes", info.max_binding_bytes as f64);
    set(&o, "f16_inference", info.f16_inference);
    o
}
