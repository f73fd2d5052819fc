//! Training batches for the denoiser: random square patches of clean images with one of the 8
//! flip/rotation augmentations (the dihedral group of the square, as in DnCNN), and white
//! Gaussian noise of a fixed sigma or a sigma drawn uniformly per patch (blind training). A
//! chosen fraction of the noisy patches is clipped to [0, 1] and rounded to 8 bits, as the noise
//! of a saved photo is (see [`Noise`]); the rest keep the paper's unclipped noise. Another
//! chosen fraction of the clean patches is first compressed toward black or white ([`tone`]),
//! so that the clipped noise of dark and bright regions is common in training.
//!
//! Every draw comes from the counter-based RNG (`crate::rng`) keyed by (seed, step, patch), so
//! batch `step` is a pure function of (images, seed, step): resuming at step s reproduces the
//! run exactly, and the "RNG position" of a checkpoint is just its step number.

use super::images::{level8, Image};
use crate::{rng, Error, Result};

/// How the noise level of each training patch is chosen (sigma on the 0-255 scale).
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum NoiseLevel {
    Fixed(f32),
    /// uniform in [lo, hi] per patch (DnCNN-B: [0, 55])
    Uniform {
        lo: f32,
        hi: f32,
    },
}

/// The noise of training patches: its level, and the fraction of patches whose noisy version
/// is clipped to [0, 1] and rounded to the 256 8-bit levels. A photo a user opens is 8-bit, so
/// its noise was clipped at black and white: a model trained only on unclipped noise takes the
/// clipped (biased) noise of dark and bright regions for signal and leaves them grey.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Noise {
    pub level: NoiseLevel,
    /// in [0, 1]: 0 is the paper's protocol, 1 is all-clipped
    pub clipped: f32,
    /// in [0, 1]: the fraction of clean patches compressed toward black or white before the
    /// noise ([`tone`]); 0 keeps the images' own intensities
    pub toned: f32,
}

impl Noise {
    /// The paper's protocol: unclipped, unrounded Gaussian noise.
    pub fn unclipped(level: NoiseLevel) -> Noise {
        Noise {
            level,
            clipped: 0.0,
            toned: 0.0,
        }
    }
}

/// The range of the gain of a toned patch (log-uniform): 1/25 leaves a patch that spanned the
/// full range about 10 levels, 1/2 half the range. In natural training images regions within a
/// few levels of black or white are rare, so without toning the model seldom sees noise that
/// the clip at 0 or 255 has biased (at sigma 50 a pixel of level 10 reads ~+12 levels brighter
/// on average after clipping) and learns to keep that bias as signal.
pub const TONE_GAIN: (f32, f32) = (1.0 / 25.0, 0.5);

/// Compress a clean patch toward black (`x -> g x`) or white (`x -> 1 - g (1 - x)`) with gain
/// `g` in (0, 1], and round it to 8-bit levels as a dark or bright region of a saved photo is.
/// The structure of the patch is kept, its contrast scaled by `g`.
pub fn tone(patch: &mut [f32], toward_white: bool, gain: f32) {
    for v in patch {
        let x = if toward_white {
            1.0 - gain * (1.0 - *v)
        } else {
            gain * *v
        };
        *v = level8(x);
    }
}

/// The trainers' default [`Noise::clipped`]: half the patches as the paper has them, half as a
/// saved 8-bit photo has them.
pub const DEFAULT_CLIP_MIX: f32 = 0.5;

/// Streams of the sampler (each gets its own key so they never share counters).
const STREAM_POS: u64 = 1;
const STREAM_NOISE: u64 = 2;

/// A key for (seed, stream, step): the step is folded into the 64-bit seed, so counters inside
/// one step start at 0 and never wrap for realistic batch sizes.
fn key(seed: u64, stream: u64, step: u64) -> u64 {
    let s = seed ^ stream.wrapping_mul(0xA076_1D64_78BD_642F);
    s.wrapping_add(step.wrapping_mul(0x9E37_79B9_7F4A_7C15))
        .rotate_left(17)
        ^ step
}

/// Apply augmentation `mode` (0..8) to a planar (c, p, p) patch: rotate by 90 degrees `mode % 4`
/// times (counter-clockwise), then flip vertically when `mode >= 4`. Mode 0 is the identity.
pub fn augment(patch: &[f32], c: usize, p: usize, mode: u8) -> Vec<f32> {
    dihedral(patch, c, p, p, mode).0
}

/// [`augment`] for a planar (c, h, w) rectangle: returns the data and its new (height, width),
/// which swap for an odd number of quarter turns.
pub fn dihedral(data: &[f32], c: usize, h: usize, w: usize, mode: u8) -> (Vec<f32>, usize, usize) {
    let rot = mode % 4;
    let flip = mode >= 4;
    let (h2, w2) = if rot % 2 == 1 { (w, h) } else { (h, w) };
    let mut out = vec![0.0; data.len()];
    for ch in 0..c {
        let src = &data[ch * h * w..(ch + 1) * h * w];
        let dst = &mut out[ch * h * w..(ch + 1) * h * w];
        for y in 0..h2 {
            let yy = if flip { h2 - 1 - y } else { y };
            for x in 0..w2 {
                // destination (y, x) reads the source pixel it came from
                let (sy, sx) = match rot {
                    0 => (yy, x),
                    1 => (x, w - 1 - yy),
                    2 => (h - 1 - yy, w - 1 - x),
                    _ => (h - 1 - x, yy),
                };
                dst[y * w2 + x] = src[sy * w + sx];
            }
        }
    }
    (out, h2, w2)
}

/// The augmentation that undoes `mode`: a turn is undone by the opposite turn; a turn followed by
/// a flip is its own inverse (F R^r F = R^-r).
pub fn dihedral_inverse(mode: u8) -> u8 {
    if mode >= 4 {
        mode
    } else {
        (4 - mode) % 4
    }
}

/// Random patches from a set of clean images of one colour mode.
pub struct PatchSampler {
    images: Vec<Image>,
    pub patch: usize,
    pub channels: usize,
}

/// One training batch on the host: (n, c, p, p) clean and noisy patches and each patch's sigma.
pub struct Batch {
    pub clean: Vec<f32>,
    pub noisy: Vec<f32>,
    pub sigmas: Vec<f32>,
}

impl PatchSampler {
    /// Images smaller than the patch are skipped; an error when none is left or the images
    /// differ in channel count.
    pub fn new(images: Vec<Image>, patch: usize) -> Result<PatchSampler> {
        if patch == 0 {
            return Err(Error::Invalid("patch size must be >= 1".into()));
        }
        let channels = images.first().map(|i| i.channels).unwrap_or(0);
        if images.iter().any(|i| i.channels != channels) {
            return Err(Error::Invalid(
                "training images must all have the same number of channels".into(),
            ));
        }
        let images: Vec<Image> = images
            .into_iter()
            .filter(|i| i.height >= patch && i.width >= patch)
            .collect();
        if images.is_empty() {
            return Err(Error::Invalid(format!(
                "no training image is at least {patch}x{patch} pixels"
            )));
        }
        Ok(PatchSampler {
            images,
            patch,
            channels,
        })
    }

    pub fn len(&self) -> usize {
        self.images.len()
    }
    pub fn is_empty(&self) -> bool {
        self.images.is_empty()
    }

    /// Patch `k` of batch `step`: a uniformly chosen image, position and augmentation.
    fn clean_patch(&self, seed: u64, step: u64, k: usize) -> Vec<f32> {
        let key = key(seed, STREAM_POS, step);
        let r = |j: u32| rng::random_u32(key, (k as u32).wrapping_mul(4).wrapping_add(j)) as usize;
        let img = &self.images[r(0) % self.images.len()];
        let p = self.patch;
        let y0 = r(1) % (img.height - p + 1);
        let x0 = r(2) % (img.width - p + 1);
        let mode = (r(3) % 8) as u8;
        let plane = img.pixels();
        let mut out = Vec::with_capacity(self.channels * p * p);
        for c in 0..self.channels {
            for y in 0..p {
                let row = c * plane + (y0 + y) * img.width + x0;
                out.extend_from_slice(&img.data[row..row + p]);
            }
        }
        augment(&out, self.channels, p, mode)
    }

    /// Batch `step` of `n` patches with `noise`.
    pub fn batch(&self, n: usize, noise: Noise, seed: u64, step: u64) -> Batch {
        let per = self.channels * self.patch * self.patch;
        let nkey = key(seed, STREAM_NOISE, step);
        let mut clean = Vec::with_capacity(n * per);
        let mut noisy = Vec::with_capacity(n * per);
        let mut sigmas = Vec::with_capacity(n);
        for k in 0..n {
            let mut c = self.clean_patch(seed, step, k);
            // counters 0xFFFD_0000 + k (whether), 0xFFFC_0000 + k (which end) and 0xFFFB_0000 + k
            // (gain): draws of their own, so toning leaves sigma, the clipped choice and the noise
            // values of every patch as they were
            let u = |base: u32| rng::uniform01(nkey, base.wrapping_add(k as u32));
            if noise.toned > 0.0 && u(0xFFFD_0000) < noise.toned {
                let (lo, hi) = TONE_GAIN;
                let gain = lo * (hi / lo).powf(u(0xFFFB_0000));
                tone(&mut c, u(0xFFFC_0000) < 0.5, gain);
            }
            let sigma = match noise.level {
                NoiseLevel::Fixed(s) => s,
                // counter 0xFFFF_0000 + k sits far above the noise counters of this step
                NoiseLevel::Uniform { lo, hi } => {
                    lo + (hi - lo) * rng::uniform01(nkey, 0xFFFF_0000u32.wrapping_add(k as u32))
                }
            };
            let s = sigma / 255.0;
            let base = (k * per) as u32;
            let start = noisy.len();
            noisy.extend(
                c.iter()
                    .enumerate()
                    .map(|(i, &x)| x + s * rng::normal(nkey, base + i as u32)),
            );
            // counter 0xFFFE_0000 + k: its own draw, so the clipped choice leaves sigma and the
            // noise values of a patch as they were
            if noise.clipped > 0.0
                && rng::uniform01(nkey, 0xFFFE_0000u32.wrapping_add(k as u32)) < noise.clipped
            {
                for v in &mut noisy[start..] {
                    *v = level8(*v);
                }
            }
            clean.extend_from_slice(&c);
            sigmas.push(sigma);
        }
        Batch {
            clean,
            noisy,
            sigmas,
        }
    }
}
