//! A hand-drawn digit turned into an MNIST-format image, the way MNIST's own digits were made
//! (LeCun, Cortes & Burges): the ink's bounding box is scaled, keeping its aspect ratio, so that
//! its larger side is 20 pixels (area averaging, i.e. anti-aliased), and the result is placed
//! in a 28x28 field so that its centre of mass lands on the field's centre.
//!
//! The centre is pixel (14, 14) in index coordinates with an integer shift (the mass centre is
//! rounded): measured on the page's 10,000 MNIST digits the centre of mass has mean (13.996,
//! 14.004) and standard deviation 0.29 per axis, the spread of a uniform offset in [-0.5, 0.5],
//! i.e. an integer translation that put the centre within half a pixel of (14, 14). With this
//! convention an MNIST digit (bounding box 20 pixels, as 9,998 of those 10,000 are) passes
//! through unchanged, and the same digit drawn larger anywhere on a canvas gives the same image.

use crate::data::mnist::{PIXELS, SIDE};
use crate::{Error, Result};

/// The larger side of the digit's bounding box after scaling (MNIST's 20x20 box).
pub const BOX: usize = 20;
/// Where the centre of mass goes (row and column, index coordinates).
pub const CENTRE: f32 = 14.0;
/// Largest drawing accepted (per side), so a bad call cannot ask for gigabytes.
pub const MAX_SIDE: usize = 4096;

/// The inclusive-exclusive bounding box (top, left, bottom, right) of the pixels above zero.
fn ink_box(pixels: &[f32], width: usize, height: usize) -> Option<(usize, usize, usize, usize)> {
    let (mut top, mut left, mut bottom, mut right) = (height, width, 0, 0);
    for y in 0..height {
        for x in 0..width {
            if pixels[y * width + x] > 0.0 {
                top = top.min(y);
                bottom = bottom.max(y + 1);
                left = left.min(x);
                right = right.max(x + 1);
            }
        }
    }
    (bottom > top).then_some((top, left, bottom, right))
}

/// Area-averaging weights along one axis: output pixel j covers the source interval
/// [j f, (j + 1) f) (f source pixels per output pixel); each source pixel i in it gets the
/// weight (overlap length) / f. Source pixels past `src_len` count as zero (no weight), so the
/// last output pixel of a side that is not a whole number of output pixels is partly empty.
fn area_weights(src_len: usize, dst_len: usize, f: f64) -> Vec<Vec<(usize, f32)>> {
    (0..dst_len)
        .map(|j| {
            let (a, b) = (j as f64 * f, ((j + 1) as f64 * f).min(src_len as f64));
            let mut w = Vec::new();
            let mut i = a.floor() as usize;
            while (i as f64) < b && i < src_len {
                let overlap = (b.min(i as f64 + 1.0) - a.max(i as f64)).max(0.0);
                if overlap > 0.0 {
                    w.push((i, (overlap / f) as f32));
                }
                i += 1;
            }
            w
        })
        .collect()
}

/// Scale the `(h, w)` crop to fit a `BOX` x `BOX` box keeping the aspect ratio; returns
/// (pixels, rows, cols) of the scaled crop.
fn scale_to_box(crop: &[f32], h: usize, w: usize) -> (Vec<f32>, usize, usize) {
    let f = h.max(w) as f64 / BOX as f64;
    // a tiny tolerance so that 200 / 10 gives 20 columns, not 21 from rounding noise
    let out = |n: usize| (((n as f64 / f) - 1e-9).ceil() as usize).clamp(1, BOX);
    let (oh, ow) = (out(h), out(w));
    let (wy, wx) = (area_weights(h, oh, f), area_weights(w, ow, f));
    // columns first (h x ow), then rows (oh x ow)
    let mut tmp = vec![0.0f32; h * ow];
    for y in 0..h {
        for (j, ws) in wx.iter().enumerate() {
            tmp[y * ow + j] = ws.iter().map(|&(i, k)| k * crop[y * w + i]).sum();
        }
    }
    let mut img = vec![0.0f32; oh * ow];
    for (r, ws) in wy.iter().enumerate() {
        for j in 0..ow {
            img[r * ow + j] = ws.iter().map(|&(i, k)| k * tmp[i * ow + j]).sum();
        }
    }
    (img, oh, ow)
}

/// Where a scaled digit of `len` pixels along an axis, with its centre of mass at `c`, starts
/// in the 28-pixel field: round(CENTRE - c), kept so that the whole digit stays inside.
fn offset(c: f64, len: usize) -> usize {
    let o = (CENTRE as f64 - c).round();
    o.clamp(0.0, (SIDE - len) as f64) as usize
}

/// A drawing (`width` x `height` intensities, row-major, ink > 0, background 0; white ink on
/// black like MNIST) as a 28x28 MNIST-format image with values in [0, 1] (inputs are clamped).
/// Errors on a wrong pixel count, a size of 0 or above `MAX_SIDE`, and an empty drawing.
pub fn mnist_from_drawing(pixels: &[f32], width: usize, height: usize) -> Result<Vec<f32>> {
    if width == 0 || height == 0 || width > MAX_SIDE || height > MAX_SIDE {
        return Err(Error::Invalid(format!(
            "drawing: size {width}x{height} must be 1..={MAX_SIDE} per side"
        )));
    }
    if pixels.len() != width * height {
        return Err(Error::Invalid(format!(
            "drawing: {} pixel values for a {width}x{height} drawing",
            pixels.len()
        )));
    }
    let clean: Vec<f32> = pixels
        .iter()
        .map(|&v| {
            if v.is_finite() {
                v.clamp(0.0, 1.0)
            } else {
                0.0
            }
        })
        .collect();
    let (top, left, bottom, right) = ink_box(&clean, width, height)
        .ok_or_else(|| Error::Invalid("the drawing is empty: draw a digit first".into()))?;
    let (h, w) = (bottom - top, right - left);
    let crop: Vec<f32> = (top..bottom)
        .flat_map(|y| clean[y * width + left..y * width + right].iter().copied())
        .collect();
    let (img, oh, ow) = scale_to_box(&crop, h, w);

    // centre of mass in f64 (sums over up to 400 pixels)
    let (mut m, mut my, mut mx) = (0.0f64, 0.0f64, 0.0f64);
    for y in 0..oh {
        for x in 0..ow {
            let v = img[y * ow + x] as f64;
            m += v;
            my += v * y as f64;
            mx += v * x as f64;
        }
    }
    if m <= 0.0 {
        return Err(Error::Invalid(
            "the drawing is too faint to place: draw with more ink".into(),
        ));
    }
    let (oy, ox) = (offset(my / m, oh), offset(mx / m, ow));
    let mut out = vec![0.0f32; PIXELS];
    for y in 0..oh {
        out[(oy + y) * SIDE + ox..(oy + y) * SIDE + ox + ow]
            .copy_from_slice(&img[y * ow..(y + 1) * ow]);
    }
    Ok(out)
}

/// `mnist_from_drawing` for 8-bit intensities (0..=255), e.g. one channel of a canvas.
pub fn mnist_from_drawing_u8(pixels: &[u8], width: usize, height: usize) -> Result<Vec<f32>> {
    let v: Vec<f32> = pixels.iter().map(|&p| p as f32 / 255.0).collect();
    mnist_from_drawing(&v, width, height)
}
