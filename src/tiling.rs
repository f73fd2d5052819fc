//! Tiled inference for fully convolutional models (the denoiser): an image of any size is cut
//! into tiles, each tile is run with a halo of extra input pixels around it, and only the
//! tile's interior is kept. For a stack of `depth` 3x3 convolutions (stride 1, zero padding 1)
//! an output pixel depends on inputs at most `depth` pixels away, so with halo >= depth every
//! kept pixel sees exactly the inputs it sees in the whole image; where a tile touches the
//! image border the tile's zero padding is the image's zero padding. Tiled output therefore
//! equals untiled output (up to float summation order).
//!
//! The tile size is chosen so the largest buffer of a tile, (floats per pixel) x (tile +
//! 2 halo)^2, stays within a byte budget: half the backend's storage-binding limit (the GPU
//! convs are direct, so a buffer holds one activation: `width` floats per pixel), or on the
//! CPU, which states no limit, `CPU_BUDGET_BYTES` for its im2col matrix (9 `width` floats per
//! pixel).
//!
//! A tile's path: `plan` cuts the image, `crop` copies a tile's input rectangle out of the planar
//! image, the model runs on it (`models::dncnn::denoise_crop`, with its flips for the
//! self-ensemble), and `paste` copies the tile's interior into the output.

use crate::data::images::Image;
use crate::{Error, Result};

/// One tile: the output rectangle it produces and the (larger) input rectangle it reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Tile {
    pub out_y: usize,
    pub out_x: usize,
    pub out_h: usize,
    pub out_w: usize,
    pub in_y: usize,
    pub in_x: usize,
    pub in_h: usize,
    pub in_w: usize,
}

impl Tile {
    /// Offset of the output rectangle inside the input rectangle.
    pub fn inner_offset(&self) -> (usize, usize) {
        (self.out_y - self.in_y, self.out_x - self.in_x)
    }
}

/// Cover an h x w image with tiles whose output is at most `core` x `core`, each read with
/// `halo` extra pixels on every side (clipped at the image border).
pub fn plan(h: usize, w: usize, core: usize, halo: usize) -> Result<Vec<Tile>> {
    if h == 0 || w == 0 {
        return Err(Error::Invalid(format!("tiling: empty image {w}x{h}")));
    }
    if core == 0 {
        return Err(Error::Invalid("tiling: tile size must be >= 1".into()));
    }
    let mut tiles = Vec::new();
    for out_y in (0..h).step_by(core) {
        for out_x in (0..w).step_by(core) {
            let out_h = core.min(h - out_y);
            let out_w = core.min(w - out_x);
            let in_y = out_y.saturating_sub(halo);
            let in_x = out_x.saturating_sub(halo);
            let in_h = (out_y + out_h + halo).min(h) - in_y;
            let in_w = (out_x + out_w + halo).min(w) - in_x;
            tiles.push(Tile {
                out_y,
                out_x,
                out_h,
                out_w,
                in_y,
                in_x,
                in_h,
                in_w,
            });
        }
    }
    Ok(tiles)
}

/// As [`plan`], for a model whose float rounding depends on a pixel's offset mod 4 from its
/// crop's corners (the page's wasm convs work in 4x4 blocks from the crop's corner:
/// `cpu::winograd_wasm`): every crop starts at a row and column that are multiples of 4 and
/// ends where the image ends mod 4, so a pixel's offsets from all four corners of its crop are
/// those from the image's corners mod 4 in every plan (and so under the self-ensemble's flips
/// and turns, which put another corner first), and every plan gives the same pixels, given a
/// halo that covers the rounding's reach too ([`rounding_radius`]). `core` and `halo` are
/// rounded up to multiples of 4 and a crop short of the image's far edge gets up to 3 more
/// rows (columns): a crop's side is at most [`ALIGN_ROOM`] more than [`plan`]'s for the same
/// `core` and `halo`.
pub fn plan_aligned(h: usize, w: usize, core: usize, halo: usize) -> Result<Vec<Tile>> {
    let mut tiles = plan(h, w, core.next_multiple_of(4), halo.next_multiple_of(4))?;
    for t in &mut tiles {
        // in_y and in_x are multiples of 4 (of the core, less the halo, or 0); the far edge
        // moves on to the image's residue mod 4 (not past the image: the image ends there)
        t.in_h += (h - (t.in_y + t.in_h)) % 4;
        t.in_w += (w - (t.in_x + t.in_w)) % 4;
    }
    Ok(tiles)
}

/// Most extra rows (columns) of a [`plan_aligned`] crop over a [`plan`] one: 3 for the core,
/// 3 for each side's halo, 3 at the far edge.
pub const ALIGN_ROOM: usize = 12;

/// The halo that gives a stack of `radius` 3x3 stride-1 convs (the receptive radius) the same
/// float pixels from every [`plan_aligned`] plan where each conv may run as Winograd
/// F(4x4, 3x3) (the page's wasm CPU backend, `cpu::winograd_wasm`). There an output pixel's
/// rounding depends on more of its tile's 6x6 input patch than its 3x3 window: at offset 0 in
/// its tile on the inputs 1 before to 3 after it, at 1 on 1 before to 2 after, at 2 on 2
/// before to 1 after, at 3 on 3 before to 1 after. Followed through the stack (every
/// layer's tiles on one grid), a pixel depends on inputs up to 2 radius + (radius mod 2)
/// away, where a direct conv's depend on `radius`; a crop's edge, where the image goes on,
/// must be that far from every pixel it keeps.
pub fn rounding_radius(radius: usize) -> usize {
    2 * radius + radius % 2
}

/// Byte budget for a tile's largest buffer when the backend states no binding limit (the CPU):
/// there it is the im2col matrix, 9 x width floats per pixel, and this keeps it near 256 MiB.
pub const CPU_BUDGET_BYTES: u64 = 256 << 20;

/// Largest output tile side such that `floats_per_pixel` x (side + 2 halo)^2 f32 values (the
/// largest buffer of a tile) fit in half of `max_binding_bytes`, and in `CPU_BUDGET_BYTES`.
/// Errors when not even a 1-pixel tile fits.
pub fn core_for_limit(
    max_binding_bytes: u64,
    floats_per_pixel: usize,
    halo: usize,
) -> Result<usize> {
    let budget = (max_binding_bytes / 2).min(CPU_BUDGET_BYTES);
    let floats = budget / 4 / floats_per_pixel.max(1) as u64;
    let side = (floats as f64).sqrt().floor() as usize;
    if side < 2 * halo + 1 {
        return Err(Error::Gpu(format!(
            "tiling: a storage binding of {max_binding_bytes} bytes cannot hold a {}x{} tile of {floats_per_pixel} values per pixel",
            2 * halo + 1,
            2 * halo + 1
        )));
    }
    Ok(side - 2 * halo)
}

/// Bytes of the largest buffer of a tile plan (max over tiles of floats_per_pixel * in_h * in_w * 4).
pub fn max_activation_bytes(tiles: &[Tile], floats_per_pixel: usize) -> u64 {
    tiles
        .iter()
        .map(|t| (floats_per_pixel * t.in_h * t.in_w * 4) as u64)
        .max()
        .unwrap_or(0)
}

/// The input rectangle of tile `t` of a planar image, (C, in_h, in_w).
pub fn crop(img: &Image, t: &Tile) -> Vec<f32> {
    let plane = img.pixels();
    let mut v = Vec::with_capacity(img.channels * t.in_h * t.in_w);
    for c in 0..img.channels {
        for y in t.in_y..t.in_y + t.in_h {
            let row = c * plane + y * img.width;
            v.extend_from_slice(&img.data[row + t.in_x..row + t.in_x + t.in_w]);
        }
    }
    v
}

/// Copy the interior (output rectangle) of a tile's result `y` (C, in_h, in_w) into `out`.
pub fn paste(out: &mut [f32], img: &Image, t: &Tile, y: &[f32]) {
    let plane = img.pixels();
    let (oy, ox) = t.inner_offset();
    for c in 0..img.channels {
        for r in 0..t.out_h {
            let src = c * t.in_h * t.in_w + (oy + r) * t.in_w + ox;
            let dst = c * plane + (t.out_y + r) * img.width + t.out_x;
            out[dst..dst + t.out_w].copy_from_slice(&y[src..src + t.out_w]);
        }
    }
}
