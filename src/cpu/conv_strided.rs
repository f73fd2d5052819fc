//! conv2d forward at a stride above 1 (a DCGAN discriminator's 4x4 stride-2 convs; the input
//! gradient of a transposed conv) by the register tiles of `deconv.rs`, vectorised over the
//! output channels, without im2col: each sample's input is copied once as (padded rows,
//! column phase, Cin, columns / stride), the padded columns split by their remainder mod the
//! column stride, so that consecutive output pixels read consecutive floats for every tap; a
//! tap is then a fixed offset. Pixel-major results go to the planes by 16 x 16 transposes.
//! Stride 1 keeps `conv.rs`'s tap GEMMs.

use super::deconv::{phase_tiles, to_planes, Grid};
use super::simd::{self, tier, Tier};
use super::{build_vec, with_scratch};
use crate::backend::ConvGeom;

/// Output channels per vector.
const V: usize = 16;

/// True where `forward` serves g: an AVX-512 CPU, a stride above 1, and enough output
/// channels that the vectors over them are mostly full (as `deconv::applies`).
pub(super) fn applies(g: &ConvGeom) -> bool {
    cfg!(target_arch = "x86_64")
        && tier() == Tier::Avx512
        && (g.sh > 1 || g.sw > 1)
        && g.cout >= V
        && g.cout.next_multiple_of(V) * 4 <= g.cout * 5
        && g.cin >= 4
}

/// y (N, Cout, Ho, Wo) = conv(x, w) + bias, then max(0, .) with `relu`. Call only where
/// `applies(g)`.
pub(super) fn forward(
    g: &ConvGeom,
    x: &[f32],
    w: &[f32],
    bias: Option<&[f32]>,
    relu: bool,
) -> Vec<f32> {
    let (ci, co) = (g.cin, g.cout);
    let co16 = co.next_multiple_of(V);
    // padded rows and columns any window reaches; columns in sw phases of `cols` each
    let hp = (g.ho - 1) * g.sh + (g.kh - 1) * g.dh + 1;
    let wpad = (g.wo - 1) * g.sw + (g.kw - 1) * g.dw + 1;
    let cols = wpad.div_ceil(g.sw);
    let row = g.sw * ci * cols;
    // weights as (tap, Cin, co16), tap = ky kw + kx; the tap's offset in the source
    let taps = g.kh * g.kw;
    let mut packed = vec![0.0f32; taps * ci * co16];
    let mut offs = Vec::with_capacity(taps);
    for ky in 0..g.kh {
        for kx in 0..g.kw {
            let t = ky * g.kw + kx;
            let (cx, px) = (kx * g.dw, (kx * g.dw) % g.sw);
            offs.push((ky * g.dh * row + px * ci * cols + cx / g.sw) as isize);
            for c in 0..ci {
                let dst = &mut packed[(t * ci + c) * co16..][..co];
                for (o, v) in dst.iter_mut().enumerate() {
                    *v = w[((o * ci + c) * g.kh + ky) * g.kw + kx];
                }
            }
        }
    }
    let (src_len, out_len) = (hp * row, g.pixels() * co16);
    let (xps, yps) = (g.x_per_sample(), g.y_per_sample());
    // no zero fill of y: every value is written once (`to_planes`)
    build_vec(g.n * yps, yps, |start, out| {
        with_scratch(src_len + out_len, |buf| {
            let (xt, yt) = buf.split_at_mut(src_len);
            // the padding of xt stays 0 for every sample of this call (only interiors change)
            xt.fill(0.0);
            for (j, yn) in out.chunks_mut(yps).enumerate() {
                let xn = &x[(start / yps + j) * xps..][..xps];
                split_columns(g, xn, (hp, wpad, cols), xt);
                let grid = Grid {
                    rows: g.ho,
                    cols: g.wo,
                    src_row: g.sh * row,
                    out_row: g.wo * co16,
                    out_col: co16,
                };
                phase_tiles(xt, 0, &offs, ci, cols, &packed, co16, yt, grid);
                to_planes(yt, co16, yn, co, bias, relu);
            }
        })
    })
}

/// x (Cin, H, W) into xt's interior: padded row rp = r + ph, column cp = col + pw of channel
/// c at xt[((rp sw + cp mod sw) Cin + c) cols + cp div sw] (the layout of `forward`), for the
/// rows and columns below hp and wpad. Each image row is split by column phase: one strided
/// read and contiguous write per phase (a per-value div and mod here took 9% of a DCGAN step).
fn split_columns(g: &ConvGeom, x: &[f32], (hp, wpad, cols): (usize, usize, usize), xt: &mut [f32]) {
    let (ci, sw) = (g.cin, g.sw);
    let wmax = g.w.min(wpad.saturating_sub(g.pw));
    simd::wide!({
        for c in 0..ci {
            for r in 0..g.h.min(hp.saturating_sub(g.ph)) {
                let rp = r + g.ph;
                let src = &x[(c * g.h + r) * g.w..][..wmax];
                for px in 0..sw {
                    // the first column in phase px: col = px - pw (mod sw)
                    let c0 = (px + sw - g.pw % sw) % sw;
                    if c0 >= wmax {
                        continue;
                    }
                    let d0 = (c0 + g.pw) / sw;
                    let cnt = (wmax - c0).div_ceil(sw);
                    let dst = &mut xt[((rp * sw + px) * ci + c) * cols + d0..][..cnt];
                    if sw == 1 {
                        dst.copy_from_slice(src);
                    } else {
                        for (k, d) in dst.iter_mut().enumerate() {
                            *d = src[c0 + k * sw];
                        }
                    }
                }
            }
        }
    })
}
