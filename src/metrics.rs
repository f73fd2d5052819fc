//! Image quality metrics: PSNR and SSIM, on planar images with values in [0, 1].
//!
//! PSNR: 10 log10(1 / MSE) with the MSE computed in [0, 1]; this is the same number as
//! 10 log10(255^2 / MSE_255) on the 0-255 scale (the ratio does not depend on the scale), so
//! results compare directly with the DnCNN paper's tables.
//!
//! SSIM (Wang et al. 2004, the reference implementation's settings): an 11x11 Gaussian window
//! with sigma 1.5, K1 = 0.01, K2 = 0.03, dynamic range L = 1, computed over the "valid" window
//! positions only (no padding), and averaged over them. A colour image's SSIM is the mean of
//! the per-channel SSIMs (as scikit-image's `channel_axis`; the reference code is gray-only).

use crate::{Error, Result};

/// Side of the SSIM window and its Gaussian sigma.
pub const SSIM_WINDOW: usize = 11;
pub const SSIM_SIGMA: f64 = 1.5;

fn check_same(a: &[f32], b: &[f32], what: &str) -> Result<()> {
    if a.len() != b.len() {
        return Err(Error::Shape(format!(
            "{what}: images differ in size ({} vs {} values)",
            a.len(),
            b.len()
        )));
    }
    if a.is_empty() {
        return Err(Error::Shape(format!("{what}: empty images")));
    }
    Ok(())
}

/// Mean squared error (computed in f64).
pub fn mse(a: &[f32], b: &[f32]) -> Result<f64> {
    check_same(a, b, "mse")?;
    Ok(a.iter()
        .zip(b)
        .map(|(&x, &y)| (x as f64 - y as f64).powi(2))
        .sum::<f64>()
        / a.len() as f64)
}

/// PSNR in dB for images in [0, 1] (peak 1), equal to the 0-255 scale PSNR. Identical images
/// give +infinity.
pub fn psnr(a: &[f32], b: &[f32]) -> Result<f64> {
    Ok(psnr_from_mse(mse(a, b)?))
}

/// PSNR in dB for a given MSE of [0, 1] images.
pub fn psnr_from_mse(mse: f64) -> f64 {
    if mse <= 0.0 {
        f64::INFINITY
    } else {
        -10.0 * mse.log10()
    }
}

/// Normalised 1-d Gaussian of `SSIM_WINDOW` taps (the 2-d window is its outer product).
fn gaussian_taps() -> [f64; SSIM_WINDOW] {
    let r = (SSIM_WINDOW / 2) as f64;
    let mut t = [0.0; SSIM_WINDOW];
    for (i, v) in t.iter_mut().enumerate() {
        let d = i as f64 - r;
        *v = (-d * d / (2.0 * SSIM_SIGMA * SSIM_SIGMA)).exp();
    }
    let s: f64 = t.iter().sum();
    t.map(|v| v / s)
}

/// Separable "valid" filtering of an h x w plane with the Gaussian: (h-10) x (w-10) output.
fn filter_valid(x: &[f64], h: usize, w: usize, taps: &[f64; SSIM_WINDOW]) -> Vec<f64> {
    let (ho, wo) = (h + 1 - SSIM_WINDOW, w + 1 - SSIM_WINDOW);
    let mut rows = vec![0.0; h * wo];
    for y in 0..h {
        for xo in 0..wo {
            rows[y * wo + xo] = taps
                .iter()
                .enumerate()
                .map(|(k, t)| t * x[y * w + xo + k])
                .sum();
        }
    }
    let mut out = vec![0.0; ho * wo];
    for yo in 0..ho {
        for xo in 0..wo {
            out[yo * wo + xo] = taps
                .iter()
                .enumerate()
                .map(|(k, t)| t * rows[(yo + k) * wo + xo])
                .sum();
        }
    }
    out
}

/// SSIM of one h x w plane (values in [0, 1]). Needs h, w >= 11.
pub fn ssim_plane(a: &[f32], b: &[f32], h: usize, w: usize) -> Result<f64> {
    check_same(a, b, "ssim")?;
    if a.len() != h * w {
        return Err(Error::Shape(format!(
            "ssim: {} values for a {h}x{w} plane",
            a.len()
        )));
    }
    if h < SSIM_WINDOW || w < SSIM_WINDOW {
        return Err(Error::Invalid(format!(
            "ssim: the image ({w}x{h}) is smaller than the {SSIM_WINDOW}x{SSIM_WINDOW} window"
        )));
    }
    let taps = gaussian_taps();
    let af: Vec<f64> = a.iter().map(|&v| v as f64).collect();
    let bf: Vec<f64> = b.iter().map(|&v| v as f64).collect();
    let prod = |p: &[f64], q: &[f64]| -> Vec<f64> { p.iter().zip(q).map(|(x, y)| x * y).collect() };
    let mu_a = filter_valid(&af, h, w, &taps);
    let mu_b = filter_valid(&bf, h, w, &taps);
    let aa = filter_valid(&prod(&af, &af), h, w, &taps);
    let bb = filter_valid(&prod(&bf, &bf), h, w, &taps);
    let ab = filter_valid(&prod(&af, &bf), h, w, &taps);
    let (c1, c2) = ((0.01f64).powi(2), (0.03f64).powi(2));
    let mut sum = 0.0;
    for i in 0..mu_a.len() {
        let (ma, mb) = (mu_a[i], mu_b[i]);
        let (va, vb, cov) = (aa[i] - ma * ma, bb[i] - mb * mb, ab[i] - ma * mb);
        sum +=
            ((2.0 * ma * mb + c1) * (2.0 * cov + c2)) / ((ma * ma + mb * mb + c1) * (va + vb + c2));
    }
    Ok(sum / mu_a.len() as f64)
}

/// SSIM of planar images (channels, h, w): the mean of the per-channel SSIMs.
pub fn ssim(a: &[f32], b: &[f32], channels: usize, h: usize, w: usize) -> Result<f64> {
    check_same(a, b, "ssim")?;
    if channels == 0 || a.len() != channels * h * w {
        return Err(Error::Shape(format!(
            "ssim: {} values for a {channels}x{h}x{w} image",
            a.len()
        )));
    }
    let plane = h * w;
    let mut s = 0.0;
    for c in 0..channels {
        s += ssim_plane(
            &a[c * plane..(c + 1) * plane],
            &b[c * plane..(c + 1) * plane],
            h,
            w,
        )?;
    }
    Ok(s / channels as f64)
}
