//! wasm API of the Denoise tab: DnCNN inference on an uploaded photo, the lecture's figures,
//! and training a small DnCNN in the tab.
//!
//! The state lives in this worker (one `Tab` in a thread_local): the loaded models by key, the
//! opened photo, the running denoise job and its result, the figure image, the training
//! images and the trainer. Long work is split into short calls that a JS loop drives
//! (www/denoise.js), so the worker queue never blocks for long and the page can cancel or
//! pause between calls:
//!   denoise_begin(...) -> tile count; denoise_tile(i) per tile; denoise_result()
//! On the CPU backend the page spreads the tiles over one helper worker per core: this worker
//! keeps the job and hands out denoise_tile_input(i), a helper runs denoise_crop_run(...), and
//! denoise_tile_output(i, y) puts the result back (www/denoise.js, `createTilePool`).
//!   dncnn_train_init(opts); dncnn_train_steps(n) per call; dncnn_train_validate()
//! State that an async call needs across an `await` is taken out of the `Tab` first and put
//! back after, so no RefCell borrow is held across an await.

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;

use js_sys::{Object, Reflect, Uint8Array};
use wasm_bindgen::prelude::*;

use super::{backend, err, invalid, set};
use crate::backend::{Backend, BinaryOp};
use crate::data::images::{self, ColorMode, Image};
use crate::data::patches::{Noise, NoiseLevel, PatchSampler, DEFAULT_CLIP_MIX};
use crate::metrics;
use crate::models::dncnn::{self, DnCnn, DnCnnConfig};
use crate::nn::Adam;
use crate::tensor::Tensor;
use crate::tiling::{self, Tile};
use crate::weights;

/// The page's cap on decoded pixels. Lower than the CLI's (`images::DEFAULT_MAX_PIXELS`)
/// because a wasm32 module has at most 4 GiB: a 25 MP colour photo is 300 MB per f32 copy,
/// and the tab holds several (input, noisy, output, display bytes).
pub const PAGE_MAX_PIXELS: u64 = 25_000_000;
/// Largest output tile side in the page: smaller than the device limit allows, so a big photo
/// is many short worker calls (progress and Cancel stay responsive).
const PAGE_MAX_TILE: usize = 512;
/// Smallest tile side `denoise_begin`'s `max_tile` may ask for (a tile's halo costs more than
/// its core below this).
const MIN_TILE: usize = 32;
/// Photos above this many pixels get no SSIM (its f64 window sums would need gigabytes).
const SSIM_MAX_PIXELS: usize = 4_000_000;
/// Training photos are cut to their central square of at most this side.
const TRAIN_MAX_SIDE: usize = 1024;
/// Validation: this many fixed patches of this side, drawn apart from the training batches.
const VAL_PATCHES: usize = 4;
const VAL_SIDE: usize = 64;
/// Key folded into the seed of the validation draw (its own stream, never a training batch).
const VAL_SEED_KEY: u64 = 0x7A11_DA7E;

/// A model in use by the tab: the registry's models and the trainer's model are shared `Rc`s.
type Model = Rc<DnCnn>;

/// The tiled denoising of one photo, in progress.
struct Job {
    /// a number per job of this worker (`denoise_begin` counts up)
    id: u32,
    model: Model,
    /// what the model sees, one image per pass (1 pass; or 3 when a gray model denoises each
    /// plane of a colour photo), each with the model's channels
    passes: Vec<Image>,
    /// the clean reference for PSNR/SSIM (when synthetic noise was added), in output layout
    clean: Option<Image>,
    /// alpha of the photo, given back to the output
    alpha: Option<Vec<f32>>,
    tiles: Vec<Tile>,
    /// planar output of each pass
    out: Vec<Vec<f32>>,
    done: Vec<bool>,
    /// geometric self-ensemble (mean over the 8 flips/rotations of each tile)
    ensemble: bool,
}

impl Job {
    fn tile_count(&self) -> usize {
        self.tiles.len() * self.passes.len()
    }
}

/// A finished denoising (kept for the PNG download).
struct Finished {
    output: Image,
}

/// A clean training photo, kept in both colour modes.
struct TrainImage {
    name: String,
    gray: Image,
    rgb: Image,
}

struct Trainer {
    model: Model,
    opt: Adam,
    sampler: PatchSampler,
    noise: Noise,
    batch: usize,
    seed: u64,
    step: u64,
    /// fixed validation patches: noisy on the backend, clean on the host, and their sigma
    val_noisy: Tensor,
    val_clean: Vec<f32>,
    val_sigma: f32,
    /// PSNR of the noisy validation patches
    val_psnr_noisy: f64,
    meta: HashMap<String, String>,
}

#[derive(Default)]
struct Tab {
    models: HashMap<String, Model>,
    photo: Option<Image>,
    job: Option<Job>,
    result: Option<Finished>,
    figure: Option<Image>,
    train_images: Vec<TrainImage>,
    trainer: Option<Trainer>,
}

thread_local! {
    static TAB: RefCell<Tab> = RefCell::new(Tab::default());
    static NEXT_JOB: std::cell::Cell<u32> = const { std::cell::Cell::new(1) };
}

fn with_tab<T>(f: impl FnOnce(&mut Tab) -> T) -> T {
    TAB.with(|t| f(&mut t.borrow_mut()))
}

// ---------------------------------------------------------------- pictures

/// Decode an uploaded photo with the page's cap; a gray photo comes back with 1 channel.
fn decode_photo(bytes: &[u8]) -> crate::Result<Image> {
    images::decode_as_stored(bytes, PAGE_MAX_PIXELS)
}

/// `{width, height, channels, rgba}` of an image for drawing.
fn picture(img: &Image) -> Object {
    let o = Object::new();
    set(&o, "width", img.width as u32);
    set(&o, "height", img.height as u32);
    set(&o, "channels", img.channels as u32);
    set(&o, "rgba", Uint8Array::from(&img.rgba8()[..]));
    o
}

fn optional(v: Option<f64>) -> JsValue {
    v.filter(|x| x.is_finite())
        .map(JsValue::from_f64)
        .unwrap_or(JsValue::NULL)
}

// ---------------------------------------------------------------- models

/// `{key, channels, depth, width, parameters, meta}` of a model.
fn model_info(key: &str, m: &DnCnn, meta: &HashMap<String, String>) -> Object {
    let o = Object::new();
    set(&o, "key", key);
    set(&o, "channels", m.config.channels as u32);
    set(&o, "depth", m.config.depth as u32);
    set(&o, "width", m.config.width as u32);
    set(&o, "parameters", m.config.parameter_count() as u32);
    let mo = Object::new();
    for (k, v) in meta {
        set(&mo, k, v.as_str());
    }
    set(&o, "meta", mo);
    o
}

/// Load a DnCNN weights file (a shipped model, or one the user picked) under `key`; a training
/// checkpoint works too. Replaces a model of the same key. Resolves to `{key, channels, depth,
/// width, parameters, meta}` (`meta`: the file's metadata, e.g. `step`, `steps`, `mode`).
/// A wrong or truncated file is refused with the reason, and the key's old model is kept.
#[wasm_bindgen]
pub fn denoise_load_model(key: &str, bytes: &[u8]) -> Result<JsValue, JsError> {
    if key == "trained" {
        return Err(invalid(
            "the key 'trained' is the model trained in this tab",
        ));
    }
    if bytes.is_empty() {
        return Err(invalid("the weights file is empty (0 bytes)"));
    }
    let be = backend()?;
    let meta = weights::metadata(bytes).map_err(err)?;
    let model = DnCnn::from_weights(be.as_ref(), bytes).map_err(err)?;
    let info = model_info(key, &model, &meta);
    with_tab(|t| t.models.insert(key.to_string(), Rc::new(model)));
    Ok(info.into())
}

/// The model under `key`: a loaded one, or "trained" for the one being trained in this tab.
pub(super) fn model(key: &str) -> Result<Model, JsError> {
    with_tab(|t| {
        if key == "trained" {
            return t
                .trainer
                .as_ref()
                .map(|tr| tr.model.clone())
                .ok_or_else(|| {
                    invalid("no model has been trained in this tab yet: start training first")
                });
        }
        t.models
            .get(key)
            .cloned()
            .ok_or_else(|| invalid(format!("model '{key}' is not loaded (model not available)")))
    })
}

/// The tile side for `workers` workers sharing a photo: `core`, or, when the photo would give
/// fewer tiles than workers, the side of an even split of it into 2x2, 3x3... tiles that gives
/// each worker one; never under 4 halos (64 at least: the halo would then cost more than the
/// extra worker gains).
fn split_core(h: usize, w: usize, core: usize, halo: usize, workers: usize) -> usize {
    let count = |c: usize| h.div_ceil(c) * w.div_ceil(c);
    let least = (4 * halo).max(64);
    let mut best = core;
    for k in 2.. {
        if count(best) >= workers {
            break;
        }
        let c = h.div_ceil(k).max(w.div_ceil(k)).min(core);
        if c < least {
            break;
        }
        best = c;
    }
    best
}

/// The largest tile side up to `core` (and at least `MIN_TILE`) whose tile with its halo
/// has at most `max_pixels` pixels in an h x w photo (0: no cap). A thin photo keeps long
/// tiles: the cap is on the pixels, not on the side.
fn capped_core(h: usize, w: usize, core: usize, halo: usize, max_pixels: usize) -> usize {
    let pixels = |c: usize| (c + 2 * halo).min(h) * (c + 2 * halo).min(w);
    if max_pixels == 0 || pixels(core) <= max_pixels {
        return core;
    }
    let mut c = core;
    while c > MIN_TILE && pixels(c) > max_pixels {
        c -= 1;
    }
    c
}

/// Output tile side for a model on this backend, at most `PAGE_MAX_TILE`.
fn page_tile(be: &dyn Backend, cfg: &DnCnnConfig) -> Result<usize, JsError> {
    Ok(dncnn::tile_core(be, cfg).map_err(err)?.min(PAGE_MAX_TILE))
}

// ---------------------------------------------------------------- denoising a photo

/// Decode a photo (PNG, JPEG or GIF; EXIF orientation applied, alpha kept, 16-bit read at full
/// precision) and keep it as the tab's photo. The previous photo and result are dropped first,
/// so after a refusal the tab holds none. Refuses empty, corrupt, truncated and non-image files
/// and photos over `PAGE_MAX_PIXELS` (the cap is named). Resolves to `{width, height,
/// channels, gray, alpha, megapixels, cap_megapixels, rgba}`.
#[wasm_bindgen]
pub fn denoise_open(bytes: &[u8]) -> Result<JsValue, JsError> {
    with_tab(|t| {
        t.photo = None;
        t.job = None;
        t.result = None;
    });
    let img = decode_photo(bytes).map_err(err)?;
    let o = picture(&img);
    set(&o, "gray", img.channels == 1);
    set(&o, "alpha", img.alpha.is_some());
    set(&o, "megapixels", img.pixels() as f64 / 1e6);
    set(&o, "cap_megapixels", PAGE_MAX_PIXELS as f64 / 1e6);
    with_tab(|t| t.photo = Some(img));
    Ok(o.into())
}

/// The page's megapixel cap (for the hint under the file picker).
#[wasm_bindgen]
pub fn denoise_cap_megapixels() -> f64 {
    PAGE_MAX_PIXELS as f64 / 1e6
}

/// Start denoising the opened photo with model `key`. With `sigma > 0`, white Gaussian noise of
/// that sigma (0-255 scale, seeded by `seed`, not clipped: the paper's protocol, and the same
/// noise as `nnlab denoise --add-noise SIGMA --seed SEED`) is added first and the photo becomes
/// the clean reference. A gray model denoises a colour photo plane by plane; a colour model
/// takes a gray photo as three equal planes. With `ensemble` each tile is denoised in its 8
/// flips/rotations and the results, turned back, averaged (8 times the work). Resolves to
/// `{job, tiles, tile, passes, width, height, channels}`; then call `denoise_tile(i)` for i in
/// 0..tiles, then `denoise_result()`. `workers`, the number of workers that will share the
/// tiles (0 or 1: this one), makes the tiles of a small photo smaller so that each has one.
/// `max_pixels` (0: none) caps the pixels of a tile with its halo (the work of one DnCNN
/// layer), at a tile side of no less than `MIN_TILE`: the page asks for smaller tiles where it
/// measured a layer of a big tile to take longer than Cancel may wait (a software WebGPU
/// adapter). The answer also gives the `halo` of a tile.
#[wasm_bindgen]
pub fn denoise_begin(
    key: &str,
    sigma: f32,
    seed: u32,
    ensemble: bool,
    workers: u32,
    max_pixels: u32,
) -> Result<JsValue, JsError> {
    if !(sigma.is_finite() && (0.0..=255.0).contains(&sigma)) {
        return Err(invalid(format!(
            "the noise sigma must be in [0, 255], got {sigma}"
        )));
    }
    let model = model(key)?;
    let be = backend()?;
    let photo = with_tab(|t| {
        t.job = None;
        t.result = None;
        t.photo.clone()
    })
    .ok_or_else(|| invalid("no photo is open: choose, drop or paste one first"))?;
    // the noise is clipped and rounded to 8 bits: the noisy photo as a camera would save it
    let (input, clean) = if sigma > 0.0 {
        let noisy = photo
            .with_data(images::add_awgn8(&photo.data, sigma, seed as u64, 0))
            .map_err(err)?;
        (noisy, Some(photo))
    } else {
        (photo, None)
    };
    let mc = model.config.channels;
    let alpha = input.alpha.clone();
    let (passes, clean) = match (mc, input.channels) {
        (1, 3) => ((0..3).map(|c| input.plane(c)).collect(), clean),
        (3, 1) => (vec![input.gray_to_rgb()], clean.map(|c| c.gray_to_rgb())),
        _ => (vec![input], clean),
    };
    let (h, w) = (passes[0].height, passes[0].width);
    let radius = model.config.receptive_radius();
    // crops at multiples of 4, ending at the image's residue mod 4, with a halo that covers
    // the rounding's reach (`tiling::rounding_radius`): the wasm convs' rounding then does not
    // depend on the plan, so any number of workers gives the same pixels. The GPU's direct
    // convs need the receptive radius only.
    let cpu = be.info().kind == "cpu";
    let halo = if cpu {
        tiling::rounding_radius(radius)
    } else {
        radius
    };
    let largest = capped_core(
        h,
        w,
        page_tile(be.as_ref(), &model.config)?.saturating_sub(2 * (halo - radius)),
        halo,
        max_pixels as usize,
    )
    .saturating_sub(tiling::ALIGN_ROOM)
    .max(4);
    let core = split_core(h, w, largest, halo, workers as usize);
    let tiles = tiling::plan_aligned(h, w, core, halo).map_err(err)?;
    let core = tiles
        .iter()
        .map(|t| t.out_h.max(t.out_w))
        .max()
        .unwrap_or(core);
    let out = passes.iter().map(|p| vec![0.0f32; p.data.len()]).collect();
    let id = NEXT_JOB.with(|n| {
        let id = n.get();
        n.set(id.wrapping_add(1));
        id
    });
    let job = Job {
        id,
        model,
        done: vec![false; tiles.len() * passes.len()],
        passes,
        clean,
        alpha,
        tiles,
        out,
        ensemble,
    };
    let o = Object::new();
    set(&o, "job", id);
    set(&o, "tiles", job.tile_count() as u32);
    set(&o, "tile", core as u32);
    set(&o, "halo", halo.next_multiple_of(4) as u32);
    set(&o, "passes", job.passes.len() as u32);
    set(&o, "width", w as u32);
    set(&o, "height", h as u32);
    set(&o, "channels", (job.passes.len() * mc) as u32);
    with_tab(|t| t.job = Some(job));
    Ok(o.into())
}

/// Denoise tile `i` of the job `denoise_begin` started, in this worker. Resolves to the
/// tile's finished pixels for the output pane (see `tile_done`).
#[wasm_bindgen]
pub async fn denoise_tile(i: usize) -> Result<JsValue, JsError> {
    let be = backend()?;
    let (pass, t, crop, model, ensemble) = with_tab(|t| {
        let job = t.job.as_ref().ok_or_else(no_job)?;
        let (pass, tile, crop) = tile_input(job, i)?;
        Ok::<_, JsError>((pass, tile, crop, job.model.clone(), job.ensemble))
    })?;
    let y = dncnn::denoise_crop(be.as_ref(), &model, &crop, t.in_h, t.in_w, ensemble)
        .await
        .map_err(err)?;
    tile_done(i, pass, &y)
}

/// The input of tile `i` of the job, for another worker to denoise (the page spreads the tiles
/// of a photo over one worker per core on the CPU backend; this worker keeps the job).
/// Resolves to `{crop, height, width, channels}`: the tile with its halo, planar f32.
#[wasm_bindgen]
pub fn denoise_tile_input(i: usize) -> Result<JsValue, JsError> {
    with_tab(|t| {
        let job = t.job.as_ref().ok_or_else(no_job)?;
        let (_, tile, crop) = tile_input(job, i)?;
        let o = Object::new();
        set(&o, "crop", js_sys::Float32Array::from(&crop[..]));
        set(&o, "height", tile.in_h as u32);
        set(&o, "width", tile.in_w as u32);
        set(&o, "channels", job.model.config.channels as u32);
        Ok(o.into())
    })
}

/// Denoise one crop (`channels` x `height` x `width`, planar f32: a `denoise_tile_input`)
/// with the model loaded under `key` in this worker; with `ensemble` as in `denoise_begin`.
/// Holds no job: a helper worker of the page runs only this. Resolves to the denoised crop.
#[wasm_bindgen]
pub async fn denoise_crop_run(
    key: &str,
    crop: Vec<f32>,
    height: usize,
    width: usize,
    ensemble: bool,
) -> Result<Vec<f32>, JsError> {
    let model = model(key)?;
    let c = model.config.channels;
    if height == 0 || width == 0 || crop.len() != c * height * width {
        return Err(invalid(format!(
            "denoise_crop_run: {} values for a {c} x {height} x {width} crop",
            crop.len()
        )));
    }
    let be = backend()?;
    dncnn::denoise_crop(be.as_ref(), &model, &crop, height, width, ensemble)
        .await
        .map_err(err)
}

/// Put the denoised crop `y` of tile `i` (from `denoise_crop_run` in another worker) into the
/// job numbered `job_id` (`denoise_begin`'s `job`: a result that comes back after Cancel and a
/// new job is refused). Resolves like `denoise_tile`.
#[wasm_bindgen]
pub fn denoise_tile_output(job_id: u32, i: usize, y: Vec<f32>) -> Result<JsValue, JsError> {
    let pass = with_tab(|t| {
        let job = t
            .job
            .as_ref()
            .filter(|j| j.id == job_id)
            .ok_or_else(no_job)?;
        let (pass, tile) = tile_index(job, i)?;
        let want = job.model.config.channels * tile.in_h * tile.in_w;
        if y.len() != want {
            return Err(invalid(format!(
                "tile {i}: {} denoised values, expected {want}",
                y.len()
            )));
        }
        Ok(pass)
    })?;
    tile_done(i, pass, &y)
}

fn no_job() -> JsError {
    invalid("no denoising in progress (cancelled, or not begun)")
}

/// (pass, tile) of tile index `i`, checked.
fn tile_index(job: &Job, i: usize) -> Result<(usize, Tile), JsError> {
    if i >= job.tile_count() {
        return Err(invalid(format!(
            "tile {i} does not exist (the job has {})",
            job.tile_count()
        )));
    }
    Ok((i / job.tiles.len(), job.tiles[i % job.tiles.len()]))
}

/// (pass, tile, the tile's input crop) of tile index `i`.
fn tile_input(job: &Job, i: usize) -> Result<(usize, Tile, Vec<f32>), JsError> {
    let (pass, t) = tile_index(job, i)?;
    Ok((pass, t, tiling::crop(&job.passes[pass], &t)))
}

/// Paste the denoised crop of tile `i` into the job and mark it done. Resolves to `{done, x, y,
/// width, height, rgba}`: the tiles done so far, and the tile's output rectangle as 8-bit RGBA
/// for the output pane (a colour photo going through a gray model plane by plane shows the
/// planes not denoised yet as they were).
fn tile_done(i: usize, pass: usize, y: &[f32]) -> Result<JsValue, JsError> {
    with_tab(|tab| {
        let job = tab.job.as_mut().ok_or_else(no_job)?;
        let t = job.tiles[i % job.tiles.len()];
        tiling::paste(&mut job.out[pass], &job.passes[pass], &t, y);
        job.done[i] = true;
        let done = job.done.iter().filter(|d| **d).count() as u32;
        let (w, plane) = (job.passes[0].width, job.passes[0].pixels());
        let mc = job.passes[0].channels;
        let mut data = Vec::with_capacity(job.passes.len() * mc * t.out_h * t.out_w);
        for (p, src) in job.passes.iter().enumerate() {
            let denoised = job.done[p * job.tiles.len() + i % job.tiles.len()];
            for c in 0..mc {
                for r in t.out_y..t.out_y + t.out_h {
                    let row = c * plane + r * w + t.out_x;
                    let from = if denoised { &job.out[p] } else { &src.data };
                    data.extend(from[row..row + t.out_w].iter().map(|v| v.clamp(0.0, 1.0)));
                }
            }
        }
        let mut rect = Image::new(job.passes.len() * mc, t.out_h, t.out_w, data).map_err(err)?;
        rect.alpha = job.alpha.as_ref().map(|a| {
            (t.out_y..t.out_y + t.out_h)
                .flat_map(|r| {
                    a[r * w + t.out_x..r * w + t.out_x + t.out_w]
                        .iter()
                        .copied()
                })
                .collect()
        });
        let o = Object::new();
        set(&o, "done", done);
        set(&o, "x", t.out_x as u32);
        set(&o, "y", t.out_y as u32);
        set(&o, "width", t.out_w as u32);
        set(&o, "height", t.out_h as u32);
        set(&o, "rgba", Uint8Array::from(&rect.rgba8()[..]));
        Ok(o.into())
    })
}

/// Drop the job in progress (Cancel).
#[wasm_bindgen]
pub fn denoise_cancel() {
    with_tab(|t| t.job = None);
}

/// Finish the job: the denoised photo (8-bit, alpha kept) and, when noise was added, PSNR and
/// SSIM of the noisy input and of the result against the clean photo. Resolves to `{width,
/// height, channels, input_rgba, output_rgba, psnr_input, psnr_output, gain, ssim_input,
/// ssim_output, ssim_skipped}` (null where unknown; `ssim_skipped` says why SSIM was not
/// computed for a photo with a clean reference).
#[wasm_bindgen]
pub fn denoise_result() -> Result<JsValue, JsError> {
    let job = with_tab(|t| t.job.take())
        .ok_or_else(|| invalid("no denoising in progress (cancelled, or not begun)"))?;
    if let Some(missing) = job.done.iter().position(|d| !d) {
        let n = job.tile_count();
        with_tab(|t| t.job = Some(job));
        return Err(invalid(format!(
            "tile {missing} of {n} is not denoised yet"
        )));
    }
    let Job {
        passes,
        clean,
        alpha,
        out,
        ..
    } = job;
    let (h, w) = (passes[0].height, passes[0].width);
    let c = passes.len() * passes[0].channels;
    let mut input = Image::new(
        c,
        h,
        w,
        passes
            .into_iter()
            .map(|p| p.data)
            .collect::<Vec<_>>()
            .concat(),
    )
    .map_err(err)?;
    input.alpha = alpha;
    let output = input
        .with_data(images::quantize8(&out.concat()))
        .map_err(err)?;
    drop(out);

    let o = Object::new();
    set(&o, "width", w as u32);
    set(&o, "height", h as u32);
    set(&o, "channels", c as u32);
    set(&o, "input_rgba", Uint8Array::from(&input.rgba8()[..]));
    set(&o, "output_rgba", Uint8Array::from(&output.rgba8()[..]));
    let (mut pi, mut po, mut si, mut so) = (None, None, None, None);
    let win = metrics::SSIM_WINDOW;
    let ssim_skipped = if h * w > SSIM_MAX_PIXELS {
        Some(format!("photo over {} MP", SSIM_MAX_PIXELS / 1_000_000))
    } else if h < win || w < win {
        Some(format!("photo smaller than the {win}x{win} window"))
    } else {
        None
    };
    if let Some(clean) = &clean {
        pi = Some(metrics::psnr(&clean.data, &input.data).map_err(err)?);
        po = Some(metrics::psnr(&clean.data, &output.data).map_err(err)?);
        if ssim_skipped.is_none() {
            si = Some(metrics::ssim(&clean.data, &input.data, c, h, w).map_err(err)?);
            so = Some(metrics::ssim(&clean.data, &output.data, c, h, w).map_err(err)?);
        }
    }
    set(&o, "psnr_input", optional(pi));
    set(&o, "psnr_output", optional(po));
    set(&o, "gain", optional(pi.zip(po).map(|(a, b)| b - a)));
    set(&o, "ssim_input", optional(si));
    set(&o, "ssim_output", optional(so));
    set(
        &o,
        "ssim_skipped",
        clean
            .and(ssim_skipped)
            .map(JsValue::from)
            .unwrap_or(JsValue::NULL),
    );
    with_tab(|t| t.result = Some(Finished { output }));
    Ok(o.into())
}

/// The last result as PNG bytes (8-bit, alpha kept).
#[wasm_bindgen]
pub fn denoise_png() -> Result<Vec<u8>, JsError> {
    with_tab(|t| {
        let r = t
            .result
            .as_ref()
            .ok_or_else(|| invalid("nothing to download yet: denoise a photo first"))?;
        images::encode_png(&r.output).map_err(err)
    })
}

// ---------------------------------------------------------------- lecture figures

/// Keep a gray image for the lecture figures: the central `crop` x `crop` (at most) of
/// `bytes`, converted to gray. Resolves to `{width, height}`.
#[wasm_bindgen]
pub fn denoise_figure_image(bytes: &[u8], crop: usize) -> Result<JsValue, JsError> {
    if crop < 2 * metrics::SSIM_WINDOW {
        return Err(invalid(format!(
            "the figure crop must be at least {} pixels",
            2 * metrics::SSIM_WINDOW
        )));
    }
    let img = images::decode(bytes, ColorMode::Gray, PAGE_MAX_PIXELS).map_err(err)?;
    let mut img = img.center_crop(crop);
    img.alpha = None;
    let o = Object::new();
    set(&o, "width", img.width as u32);
    set(&o, "height", img.height as u32);
    with_tab(|t| t.figure = Some(img));
    Ok(o.into())
}

/// One panel of a lecture figure: the figure image with noise of `sigma` (seeded by `seed +
/// round(sigma)`, as `nnlab figure dncnn` does) and its denoising by model `key` (gray).
/// Resolves to `{noisy: {width, height, channels, rgba}, denoised: {...}, psnr_noisy,
/// psnr_denoised}`.
#[wasm_bindgen]
pub async fn denoise_figure_panel(key: &str, sigma: f32, seed: u32) -> Result<JsValue, JsError> {
    if !(sigma.is_finite() && (0.0..=255.0).contains(&sigma)) {
        return Err(invalid(format!(
            "the noise sigma must be in [0, 255], got {sigma}"
        )));
    }
    let model = model(key)?;
    if model.config.channels != 1 {
        return Err(invalid("the lecture figures use gray models"));
    }
    let be = backend()?;
    let clean = with_tab(|t| t.figure.clone())
        .ok_or_else(|| invalid("no figure image: call denoise_figure_image first"))?;
    let noise_seed = (seed as u64).wrapping_add(sigma.round() as u64);
    let noisy = clean
        .with_data(images::add_awgn(&clean.data, sigma, noise_seed, 0))
        .map_err(err)?;
    let core = page_tile(be.as_ref(), &model.config)?;
    let out = dncnn::denoise_tiled_async(be.as_ref(), &model, &noisy, core, false, |_, _| {})
        .await
        .map_err(err)?;
    let denoised = clean.with_data(images::quantize8(&out)).map_err(err)?;
    let o = Object::new();
    set(&o, "noisy", picture(&noisy));
    set(&o, "denoised", picture(&denoised));
    set(
        &o,
        "psnr_noisy",
        metrics::psnr(&clean.data, &noisy.data).map_err(err)?,
    );
    set(
        &o,
        "psnr_denoised",
        metrics::psnr(&clean.data, &denoised.data).map_err(err)?,
    );
    Ok(o.into())
}

// ---------------------------------------------------------------- training in the tab

/// Add a clean photo to the training images (its central square of at most 1024 x 1024 is
/// kept, in gray and in colour). Resolves to `{count, names}`.
#[wasm_bindgen]
pub fn dncnn_train_add_image(bytes: &[u8], name: &str) -> Result<JsValue, JsError> {
    let img = decode_photo(bytes).map_err(|e| invalid(format!("{name}: {e}")))?;
    let rgb = if img.channels == 1 {
        img.gray_to_rgb()
    } else {
        img
    };
    let mut rgb = rgb.center_crop(TRAIN_MAX_SIDE);
    rgb.alpha = None;
    let gray = rgb.rgb_to_gray();
    with_tab(|t| {
        t.train_images.push(TrainImage {
            name: name.to_string(),
            gray,
            rgb,
        })
    });
    Ok(train_images_info())
}

/// Forget every training image (the trainer, if any, keeps the ones it started with).
#[wasm_bindgen]
pub fn dncnn_train_clear_images() -> JsValue {
    with_tab(|t| t.train_images.clear());
    train_images_info()
}

fn train_images_info() -> JsValue {
    with_tab(|t| {
        let o = Object::new();
        set(&o, "count", t.train_images.len() as u32);
        let names: js_sys::Array = t
            .train_images
            .iter()
            .map(|i| JsValue::from_str(&i.name))
            .collect();
        set(&o, "names", names);
        o.into()
    })
}

/// A number field of the options object, or `default` when absent.
fn field(opts: &JsValue, key: &str, default: f64) -> Result<f64, JsError> {
    let v = Reflect::get(opts, &key.into()).unwrap_or(JsValue::UNDEFINED);
    if v.is_undefined() || v.is_null() {
        return Ok(default);
    }
    v.as_f64()
        .filter(|x| x.is_finite())
        .ok_or_else(|| invalid(format!("training option '{key}' must be a number")))
}

fn whole(
    opts: &JsValue,
    key: &str,
    default: usize,
    lo: usize,
    hi: usize,
) -> Result<usize, JsError> {
    let v = field(opts, key, default as f64)?;
    if v.fract() != 0.0 || v < lo as f64 || v > hi as f64 {
        return Err(invalid(format!(
            "training option '{key}' must be a whole number in {lo}..={hi}, got {v}"
        )));
    }
    Ok(v as usize)
}

/// Start (or restart) training a DnCNN. `opts`: `{channels: 1|3, depth, width, sigma_lo,
/// sigma_hi (equal: fixed sigma; else uniform per patch), val_sigma, batch, patch, lr, seed,
/// init}` where `init` (a Uint8Array of a DnCNN weights file, optional) fine-tunes that model
/// instead of starting from scratch (its depth/width/channels win). Trains on the images added
/// with `dncnn_train_add_image`, with the 8 flip/rotation augmentations. Resolves to `{channels,
/// depth, width, parameters, images, val_sigma}`.
#[wasm_bindgen]
pub fn dncnn_train_init(opts: JsValue) -> Result<JsValue, JsError> {
    let be = backend()?;
    let b = be.as_ref();
    let init = Reflect::get(&opts, &"init".into())
        .ok()
        .filter(|v| v.is_object())
        .map(|v| Uint8Array::new(&v).to_vec());
    let model = match &init {
        Some(bytes) => {
            DnCnn::from_weights(b, bytes).map_err(|e| invalid(format!("cannot fine-tune: {e}")))?
        }
        None => {
            let config = DnCnnConfig {
                channels: whole(&opts, "channels", 1, 1, 3)?,
                depth: whole(&opts, "depth", 6, 2, 30)?,
                width: whole(&opts, "width", 24, 1, 128)?,
            };
            DnCnn::new(
                b,
                config,
                whole(&opts, "seed", 1, 0, u32::MAX as usize)? as u64,
            )
            .map_err(err)?
        }
    };
    let cfg = model.config;
    let (lo, hi) = (
        field(&opts, "sigma_lo", 10.0)? as f32,
        field(&opts, "sigma_hi", 10.0)? as f32,
    );
    if !(0.0..=255.0).contains(&lo) || !(lo..=255.0).contains(&hi) {
        return Err(invalid(format!(
            "the training noise range must satisfy 0 <= lo <= hi <= 255, got [{lo}, {hi}]"
        )));
    }
    let level = if lo == hi {
        NoiseLevel::Fixed(lo)
    } else {
        NoiseLevel::Uniform { lo, hi }
    };
    // the fraction of patches with 8-bit clipped noise (as the CLI trainer's --clip-mix)
    let clipped = field(&opts, "clipped", DEFAULT_CLIP_MIX as f64)? as f32;
    if !(0.0..=1.0).contains(&clipped) {
        return Err(invalid(format!(
            "the fraction of clipped-noise patches must be in [0, 1], got {clipped}"
        )));
    }
    let noise = Noise {
        level,
        clipped,
        toned: 0.0,
    };
    let val_sigma = field(&opts, "val_sigma", ((lo + hi) / 2.0) as f64)? as f32;
    let batch = whole(&opts, "batch", 16, 1, 256)?;
    let patch = whole(&opts, "patch", 40, 8, 128)?;
    let lr = field(&opts, "lr", 1e-3)? as f32;
    if !(lr > 0.0 && lr < 1.0) {
        return Err(invalid(format!(
            "the learning rate must be in (0, 1), got {lr}"
        )));
    }
    let seed = whole(&opts, "seed", 1, 0, u32::MAX as usize)? as u64;

    let imgs: Vec<Image> = with_tab(|t| {
        t.train_images
            .iter()
            .map(|i| {
                if cfg.channels == 1 {
                    i.gray.clone()
                } else {
                    i.rgb.clone()
                }
            })
            .collect()
    });
    if imgs.is_empty() {
        return Err(invalid(
            "no training images: add the samples or some clean photos first",
        ));
    }
    let n_images = imgs.len();
    let sampler = PatchSampler::new(imgs.clone(), patch).map_err(err)?;
    let val = PatchSampler::new(imgs, VAL_SIDE)
        .map_err(|e| invalid(format!("validation: {e}")))?
        .batch(
            VAL_PATCHES,
            Noise::unclipped(NoiseLevel::Fixed(val_sigma)),
            seed ^ VAL_SEED_KEY,
            0,
        );
    let val_psnr_noisy = metrics::psnr(&val.clean, &val.noisy).map_err(err)?;
    let val_noisy = b
        .upload(&[VAL_PATCHES, cfg.channels, VAL_SIDE, VAL_SIDE], &val.noisy)
        .map_err(err)?;
    let opt = dncnn::adam(lr);

    let mut meta = HashMap::new();
    let noise_name = match level {
        NoiseLevel::Fixed(s) => format!("fixed sigma {s}"),
        NoiseLevel::Uniform { lo, hi } => format!("blind sigma [{lo}, {hi}]"),
    };
    for (k, v) in [
        ("trained_in", "the nnlab page (Denoise tab)".to_string()),
        ("mode", noise_name),
        ("clip_mix", clipped.to_string()),
        ("patch", patch.to_string()),
        ("batch", batch.to_string()),
        ("lr0", lr.to_string()),
        ("seed", seed.to_string()),
        ("backend", b.info().describe()),
        (
            "init",
            if init.is_some() {
                "fine-tuned from a shipped model".into()
            } else {
                "from scratch".into()
            },
        ),
    ] {
        meta.insert(k.to_string(), v);
    }
    let o = model_info("trained", &model, &meta);
    set(&o, "images", n_images as u32);
    set(&o, "val_sigma", val_sigma);
    let trainer = Trainer {
        model: Rc::new(model),
        opt,
        sampler,
        noise,
        batch,
        seed,
        step: 0,
        val_noisy,
        val_clean: val.clean,
        val_sigma,
        val_psnr_noisy,
        meta,
    };
    with_tab(|t| t.trainer = Some(trainer));
    Ok(o.into())
}

/// Run `n` training steps (1..=1000). Resolves to `{step, loss}`: the step count so far and
/// the mean loss (MSE of the predicted noise, [0, 1] units) over these steps. The losses are
/// summed on the backend and read back once per call.
#[wasm_bindgen]
pub async fn dncnn_train_steps(n: u32) -> Result<JsValue, JsError> {
    if !(1..=1000).contains(&n) {
        return Err(invalid(format!(
            "steps per call must be in 1..=1000, got {n}"
        )));
    }
    let be = backend()?;
    let mut tr = with_tab(|t| t.trainer.take())
        .ok_or_else(|| invalid("training is not set up: press Start"))?;
    let r = train_steps(be.as_ref(), &mut tr, n).await;
    let step = tr.step;
    with_tab(|t| t.trainer = Some(tr));
    let loss = r?;
    if !loss.is_finite() {
        return Err(invalid(format!("training diverged at step {step} (the loss is {loss}): lower the learning rate and reset")));
    }
    let o = Object::new();
    set(&o, "step", step as f64);
    set(&o, "loss", loss);
    Ok(o.into())
}

async fn train_steps(b: &dyn Backend, tr: &mut Trainer, n: u32) -> Result<f64, JsError> {
    let shape = [
        tr.batch,
        tr.sampler.channels,
        tr.sampler.patch,
        tr.sampler.patch,
    ];
    let mut sum: Option<Tensor> = None;
    for _ in 0..n {
        let batch = tr.sampler.batch(tr.batch, tr.noise, tr.seed, tr.step);
        let noisy = b.upload(&shape, &batch.noisy).map_err(err)?;
        let clean = b.upload(&shape, &batch.clean).map_err(err)?;
        let loss = dncnn::train_step(b, &tr.model, &mut tr.opt, &noisy, &clean).map_err(err)?;
        sum = Some(match sum {
            None => loss,
            Some(s) => b.binary(BinaryOp::Add, &s, &loss).map_err(err)?,
        });
        tr.step += 1;
    }
    let total = b.read(sum.as_ref().expect("n >= 1")).await.map_err(err)?;
    Ok(total[0] as f64 / n as f64)
}

/// PSNR of the model (evaluation mode) on the fixed validation patches. Resolves to `{step,
/// psnr, psnr_noisy, sigma}`.
#[wasm_bindgen]
pub async fn dncnn_train_validate() -> Result<JsValue, JsError> {
    let be = backend()?;
    let (model, noisy, clean, sigma, psnr_noisy, step) = with_tab(|t| {
        t.trainer.as_ref().map(|tr| {
            (
                tr.model.clone(),
                tr.val_noisy.clone(),
                tr.val_clean.clone(),
                tr.val_sigma,
                tr.val_psnr_noisy,
                tr.step,
            )
        })
    })
    .ok_or_else(|| invalid("training is not set up: press Start"))?;
    let y = model.denoise_tensor(be.as_ref(), &noisy).map_err(err)?;
    let yv = images::quantize8(&be.read(&y).await.map_err(err)?);
    let o = Object::new();
    set(&o, "step", step as f64);
    set(
        &o,
        "psnr",
        optional(Some(metrics::psnr(&clean, &yv).map_err(err)?)),
    );
    set(&o, "psnr_noisy", psnr_noisy);
    set(&o, "sigma", sigma);
    Ok(o.into())
}

/// The trained model as a safetensors file (loadable by the page and `nnlab denoise --model`).
#[wasm_bindgen]
pub async fn dncnn_train_weights() -> Result<Vec<u8>, JsError> {
    let be = backend()?;
    let (model, mut meta, step) = with_tab(|t| {
        t.trainer
            .as_ref()
            .map(|tr| (tr.model.clone(), tr.meta.clone(), tr.step))
    })
    .ok_or_else(|| invalid("no model has been trained in this tab yet"))?;
    meta.insert("step".into(), step.to_string());
    model.to_weights(be.as_ref(), meta).await.map_err(err)
}

/// Drop the trainer and its model (Reset).
#[wasm_bindgen]
pub fn dncnn_train_reset() {
    with_tab(|t| t.trainer = None);
}
