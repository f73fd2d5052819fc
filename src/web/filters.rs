//! wasm API of the views ConvNetJS users expect (www/filters.js): a model's learned first-layer
//! filters, and the feature maps of one layer for the picture on screen.
//!   Denoise tab: dncnn_first_filters(key), dncnn_activations(key, crop, h, w, layer, count)
//!   Adversarial tab: adv_first_filters(which), adv_activations(which, digit, layer)
//! The activations come from the models' own forward code (`DnCnn::inference_layer`,
//! `Classifier::hidden_layers`), so the maps are exactly what the model computes.

use js_sys::{Float32Array, Object};
use wasm_bindgen::prelude::*;

use super::{adversarial, backend, denoise, err, invalid, set};
use crate::autodiff::Graph;
use crate::backend::Backend;
use crate::data::mnist::{PIXELS, SIDE};
use crate::tensor::Tensor;

/// Largest crop side the DnCNN activation view takes (64 maps of it are read back).
const MAX_CROP_SIDE: usize = 256;

/// `{count, channels, height, width, data}`: `count` maps of `channels` x height x width
/// (row-major) in one Float32Array.
fn maps(count: usize, channels: usize, h: usize, w: usize, data: &[f32]) -> Object {
    let o = Object::new();
    set(&o, "count", count as u32);
    set(&o, "channels", channels as u32);
    set(&o, "height", h as u32);
    set(&o, "width", w as u32);
    set(&o, "data", Float32Array::from(data));
    o
}

/// A conv weight (out, in, k, k) read back, as `maps(out, in, k, k)`.
async fn conv_filters(b: &dyn Backend, w: &Tensor) -> Result<JsValue, JsError> {
    let s = w.shape().to_vec();
    let data = b.read(w).await.map_err(err)?;
    Ok(maps(s[0], s[1], s[2], s[3], &data).into())
}

/// The first conv layer's filters of the DnCNN loaded under `key` ("trained": the tab's own):
/// `{count: width, channels: 1 or 3, height: 3, width: 3, data}`.
#[wasm_bindgen]
pub async fn dncnn_first_filters(key: &str) -> Result<JsValue, JsError> {
    let m = denoise::model(key)?;
    let b = backend()?;
    conv_filters(b.as_ref(), m.first.weight.value()).await
}

/// The feature maps after layer `layer` (0-based, 0..depth-1: a conv with its ReLU) of the
/// DnCNN under `key` for a crop (`channels` x `height` x `width`, planar f32 in [0, 1], sides
/// 1..=256): the first `count` maps (1..=width) as `{count, channels: 1, height, width, data,
/// depth}`.
#[wasm_bindgen]
pub async fn dncnn_activations(
    key: &str,
    crop: Vec<f32>,
    height: usize,
    width: usize,
    layer: usize,
    count: usize,
) -> Result<JsValue, JsError> {
    let m = denoise::model(key)?;
    let (c, depth, maps_n) = (m.config.channels, m.config.depth, m.config.width);
    if !(1..=MAX_CROP_SIDE).contains(&height) || !(1..=MAX_CROP_SIDE).contains(&width) {
        return Err(invalid(format!(
            "dncnn_activations: crop sides must be 1..={MAX_CROP_SIDE}, got {height} x {width}"
        )));
    }
    if crop.len() != c * height * width {
        return Err(invalid(format!(
            "dncnn_activations: {} values for a {c} x {height} x {width} crop",
            crop.len()
        )));
    }
    if layer + 1 >= depth {
        return Err(invalid(format!(
            "dncnn_activations: layer {layer} has no feature maps (layers 0..{} do)",
            depth - 1
        )));
    }
    if !(1..=maps_n).contains(&count) {
        return Err(invalid(format!(
            "dncnn_activations: count must be 1..={maps_n}, got {count}"
        )));
    }
    let b = backend()?;
    let b: &dyn Backend = b.as_ref();
    let x = b.upload(&[1, c, height, width], &crop).map_err(err)?;
    let mut h = x.clone();
    for k in 0..=layer {
        h = m.inference_layer(b, k, &x, &h).map_err(err)?;
    }
    let data = b.read(&h).await.map_err(err)?;
    crate::finite::check_output("the DnCNN", &data).map_err(err)?;
    let o = maps(count, 1, height, width, &data[..count * height * width]);
    set(&o, "depth", depth as u32);
    Ok(o.into())
}

/// The first conv layer's filters of classifier `which` (standard, adversarial, trained):
/// `{count: c1, channels: 1, height: 3, width: 3, data}`.
#[wasm_bindgen]
pub async fn adv_first_filters(which: &str) -> Result<JsValue, JsError> {
    let m = adversarial::model(which)?;
    let b = backend()?;
    conv_filters(b.as_ref(), m.conv1.weight.value()).await
}

/// The outputs of hidden layer `layer` (0: conv1, 1: conv2, 2: conv3, 3: fc1, after their
/// ReLUs) of classifier `which` for one digit (784 values in [0, 1]): `{count, channels: 1,
/// height, width, data}` (fc1: `count` 1 x 1 maps, one per hidden unit).
#[wasm_bindgen]
pub async fn adv_activations(
    which: &str,
    digit: Vec<f32>,
    layer: usize,
) -> Result<JsValue, JsError> {
    if digit.len() != PIXELS {
        return Err(invalid(format!(
            "adv_activations: expected {PIXELS} pixel values (28x28), got {}",
            digit.len()
        )));
    }
    let m = adversarial::model(which)?;
    let b = backend()?;
    let b: &dyn Backend = b.as_ref();
    let clean: Vec<f32> = digit
        .iter()
        .map(|v| {
            if v.is_finite() {
                v.clamp(0.0, 1.0)
            } else {
                0.0
            }
        })
        .collect();
    let mut g = Graph::new(b);
    g.set_grad_enabled(false);
    let x = g.constant(b.upload(&[1, 1, SIDE, SIDE], &clean).map_err(err)?);
    let layers = m.hidden_layers(&mut g, x).map_err(err)?;
    let v = *layers.get(layer).ok_or_else(|| {
        invalid(format!(
            "adv_activations: layer {layer} does not exist (0: conv1, 1: conv2, 2: conv3, 3: fc1)"
        ))
    })?;
    let t = g.value(v).map_err(err)?.clone();
    drop(g);
    let s = t.shape().to_vec();
    let data = b.read(&t).await.map_err(err)?;
    crate::finite::check_output("the classifier", &data).map_err(err)?;
    Ok(match s.len() {
        4 => maps(s[1], 1, s[2], s[3], &data),
        _ => maps(s[1], 1, 1, 1, &data),
    }
    .into())
}
