//! wasm API of the "Autoencoder vs GAN" panel (issue 19 item 7, in the GAN tab): an autoencoder
//! of its own (the shipped one by default), its reconstructions of held-out page digits with
//! their per-pixel MSE, and its decodings of random codes. The GAN's samples and the scoring
//! (classifier score, Frechet distance, class histogram) come from the GAN tab's API
//! (`gan_generate`, `gan_quality_digits`).

use std::cell::RefCell;
use std::rc::Rc;

use js_sys::{Float32Array, Object};
use wasm_bindgen::prelude::*;

use super::{backend, err, invalid, set, HELD_OUT_EVERY};
use crate::data::mnist::PIXELS;
use crate::models::autoencoder::{self, Autoencoder};
use crate::rng;

const MAX_DIGITS: usize = 500;

thread_local! {
    static AE: RefCell<Option<Rc<Autoencoder>>> = const { RefCell::new(None) };
}

/// Load the panel's autoencoder (safetensors bytes). Resolves to its code size k.
#[wasm_bindgen]
pub fn aevg_load_ae(bytes: &[u8]) -> Result<u32, JsError> {
    let b = backend()?;
    let m = autoencoder::from_weights(b.as_ref(), bytes)
        .map_err(|e| invalid(format!("autoencoder: {e}")))?;
    let k = m.config.k as u32;
    AE.with(|a| *a.borrow_mut() = Some(Rc::new(m)));
    Ok(k)
}

/// `n` (1..=500) held-out page digits picked with `seed` (`page`: the page's digit set, as
/// the GAN tab loaded it), the autoencoder's reconstructions of them and its decodings of `n`
/// random codes uniform in [0, 1]^k (the code's sigmoid range). Resolves to
/// `{originals, recon, mse, random}`: digits as Float32Arrays of 784 values each, and the
/// per-pixel MSE of the reconstructions.
#[wasm_bindgen]
pub async fn aevg_ae_digits(n: usize, seed: u32) -> Result<JsValue, JsError> {
    if !(1..=MAX_DIGITS).contains(&n) {
        return Err(invalid(format!("n must be 1..={MAX_DIGITS}, got {n}")));
    }
    let ae = AE
        .with(|a| a.borrow().clone())
        .ok_or_else(|| invalid("no autoencoder loaded (aevg_load_ae)"))?;
    let page = super::gan::page_digits_loaded()?;
    let held = page.len().div_ceil(HELD_OUT_EVERY);
    let idx: Vec<usize> = (0..n)
        .map(|i| (rng::random_u32(seed as u64, i as u32) as usize % held) * HELD_OUT_EVERY)
        .collect();
    let (xs, _) = page.gather(&idx).map_err(err)?;
    let b = backend()?;
    let recon = autoencoder::reconstruct(b.as_ref(), &ae, &xs)
        .await
        .map_err(err)?;
    let codes = rng::uniform_vec(n * ae.config.k, 0.0, 1.0, seed as u64 ^ 0x5eed);
    let random = autoencoder::decode_codes(b.as_ref(), &ae, &codes)
        .await
        .map_err(err)?;
    crate::finite::check_output("the autoencoder", &recon).map_err(err)?;
    crate::finite::check_output("the autoencoder", &random).map_err(err)?;
    debug_assert_eq!(recon.len(), n * PIXELS);
    let o = Object::new();
    set(&o, "originals", Float32Array::from(&xs[..]));
    set(&o, "recon", Float32Array::from(&recon[..]));
    set(&o, "mse", autoencoder::mse(&recon, &xs));
    set(&o, "random", Float32Array::from(&random[..]));
    Ok(o.into())
}
