//! DnCNN: training lowers the loss, weights and checkpoints round-trip (and resuming repeats
//! the uninterrupted run), tiled denoising equals untiled, tile plans for a 24-megapixel photo
//! stay under a buffer limit, PSNR/SSIM known values, the patch augmentations, and every kind of
//! bad image input. CPU only; tiny models so the whole file runs in seconds.

use std::collections::HashMap;
use std::io::Cursor;

use nnlab::backend::read_blocking;
use nnlab::cpu::CpuBackend;
use nnlab::data::images::{self, ColorMode, Image};
use nnlab::data::patches::{augment, dihedral, dihedral_inverse, Noise, NoiseLevel, PatchSampler};
use nnlab::metrics;
use nnlab::models::dncnn::{self, DnCnn, DnCnnConfig};
use nnlab::nn::Adam;
use nnlab::nn::Module;
use nnlab::tiling;
use nnlab::{rng, Backend};

#[path = "common/models.rs"]
mod models_common;

use models_common::tiny_dncnn;

const TINY: DnCnnConfig = DnCnnConfig {
    channels: 1,
    depth: 4,
    width: 8,
};

/// A smooth synthetic image with some edges (values in [0, 1]).
fn synthetic(c: usize, h: usize, w: usize, seed: u64) -> Image {
    let mut d = Vec::with_capacity(c * h * w);
    for ch in 0..c {
        for y in 0..h {
            for x in 0..w {
                let v = 0.5
                    + 0.3
                        * ((x as f32 * 0.21 + ch as f32 + seed as f32).sin()
                            * (y as f32 * 0.13).cos());
                let edge = if (x / 7 + y / 9) % 2 == 0 {
                    0.15
                } else {
                    -0.15
                };
                d.push((v + edge).clamp(0.0, 1.0));
            }
        }
    }
    Image::new(c, h, w, d).unwrap()
}

fn train_losses(b: &dyn Backend, model: &DnCnn, steps: u64) -> Vec<f32> {
    let imgs = (0..4).map(|i| synthetic(1, 48, 48, i)).collect();
    let sampler = PatchSampler::new(imgs, 24).unwrap();
    let mut opt = dncnn::adam(3e-3);
    let shape = [8, 1, 24, 24];
    (0..steps)
        .map(|s| {
            let bt = sampler.batch(8, Noise::unclipped(NoiseLevel::Fixed(25.0)), 7, s);
            let noisy = b.upload(&shape, &bt.noisy).unwrap();
            let clean = b.upload(&shape, &bt.clean).unwrap();
            let l = dncnn::train_step(b, model, &mut opt, &noisy, &clean).unwrap();
            read_blocking(b, &l).unwrap()[0]
        })
        .collect()
}

#[test]
fn a_few_training_steps_lower_the_loss() {
    let b = CpuBackend::new();
    let model = DnCnn::new(&b, TINY, 1).unwrap();
    let losses = train_losses(&b, &model, 40);
    let first: f32 = losses[..5].iter().sum::<f32>() / 5.0;
    let last: f32 = losses[35..].iter().sum::<f32>() / 5.0;
    println!("loss first 5 steps {first:.4e}, last 5 {last:.4e}");
    assert!(last < 0.7 * first, "loss did not fall: {first} -> {last}");
}

fn eval_output(b: &dyn Backend, model: &DnCnn, img: &Image) -> Vec<f32> {
    let x = b
        .upload(&[1, img.channels, img.height, img.width], &img.data)
        .unwrap();
    read_blocking(b, &model.denoise_tensor(b, &x).unwrap()).unwrap()
}

#[test]
fn weights_round_trip_and_shape_is_read_from_the_file() {
    let b = CpuBackend::new();
    let model = DnCnn::new(&b, TINY, 3).unwrap();
    train_losses(&b, &model, 3); // moves BatchNorm running statistics off their defaults
    let bytes = pollster::block_on(model.to_weights(&b, HashMap::new())).unwrap();
    let loaded = DnCnn::from_weights(&b, &bytes).unwrap();
    assert_eq!(loaded.config, TINY);
    let names: Vec<String> = loaded
        .state()
        .iter()
        .map(|p| p.name().to_string())
        .collect();
    assert!(
        names.contains(&"dncnn.0.bias".to_string())
            && names.contains(&"dncnn.3.running_var".to_string())
            && names.contains(&"dncnn.8.weight".to_string()),
        "{names:?}"
    );
    let img = synthetic(1, 20, 17, 5);
    assert_eq!(
        eval_output(&b, &model, &img),
        eval_output(&b, &loaded, &img)
    );
    // a truncated or foreign file is refused with a weights error
    let err = DnCnn::from_weights(&b, &bytes[..bytes.len() / 2])
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("weights error"), "{err}");
    let other = nnlab::weights::to_bytes(
        &[nnlab::weights::NamedTensor {
            name: "fc.weight".into(),
            shape: vec![2, 2],
            data: vec![0.0; 4],
        }],
        None,
    )
    .unwrap();
    let err = DnCnn::from_weights(&b, &other).err().unwrap().to_string();
    assert!(err.contains("not a DnCNN"), "{err}");
}

#[test]
fn checkpoint_resume_repeats_the_uninterrupted_run() {
    let b = CpuBackend::new();
    let straight = DnCnn::new(&b, TINY, 9).unwrap();
    let losses = train_losses(&b, &straight, 6);

    // run 3 steps, checkpoint, restore into fresh objects, run 3 more with the same batches
    let imgs: Vec<Image> = (0..4).map(|i| synthetic(1, 48, 48, i)).collect();
    let sampler = PatchSampler::new(imgs, 24).unwrap();
    let shape = [8, 1, 24, 24];
    let run = |model: &DnCnn, opt: &mut Adam, steps: std::ops::Range<u64>| -> Vec<f32> {
        steps
            .map(|s| {
                let bt = sampler.batch(8, Noise::unclipped(NoiseLevel::Fixed(25.0)), 7, s);
                let l = dncnn::train_step(
                    &b,
                    model,
                    opt,
                    &b.upload(&shape, &bt.noisy).unwrap(),
                    &b.upload(&shape, &bt.clean).unwrap(),
                )
                .unwrap();
                read_blocking(&b, &l).unwrap()[0]
            })
            .collect()
    };
    let m1 = DnCnn::new(&b, TINY, 9).unwrap();
    let mut o1 = dncnn::adam(3e-3);
    let mut got = run(&m1, &mut o1, 0..3);
    let ck = pollster::block_on(dncnn::checkpoint_bytes(&b, &m1, &o1, 3, HashMap::new())).unwrap();
    let m2 = DnCnn::new(&b, TINY, 1234).unwrap();
    let mut o2 = dncnn::adam(3e-3);
    let (step, _) = dncnn::restore_checkpoint(&b, &m2, &mut o2, &ck).unwrap();
    assert_eq!(step, 3);
    // a checkpoint also loads as plain weights (eval/denoise straight from a checkpoint)
    let from_ck = DnCnn::from_weights(&b, &ck).unwrap();
    let probe = synthetic(1, 16, 16, 4);
    assert_eq!(
        eval_output(&b, &from_ck, &probe),
        eval_output(&b, &m1, &probe)
    );
    got.extend(run(&m2, &mut o2, 3..6));
    assert_eq!(
        got, losses,
        "resumed run differs from the uninterrupted one"
    );
    let img = synthetic(1, 16, 16, 2);
    assert_eq!(eval_output(&b, &straight, &img), eval_output(&b, &m2, &img));
}

fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

#[test]
fn tiled_denoising_equals_untiled() {
    let b = CpuBackend::new();
    for (channels, h, w) in [(1usize, 37usize, 53usize), (3, 29, 31)] {
        let cfg = DnCnnConfig {
            channels,
            depth: 5,
            width: 8,
        };
        let model = DnCnn::new(&b, cfg, 4).unwrap();
        // a few training steps so BatchNorm's running statistics are not the identity
        let c = channels;
        let imgs = (0..2).map(|i| synthetic(c, 40, 40, i)).collect();
        let sampler = PatchSampler::new(imgs, 16).unwrap();
        let mut opt = dncnn::adam(1e-3);
        for s in 0..3 {
            let bt = sampler.batch(
                4,
                Noise::unclipped(NoiseLevel::Uniform { lo: 0.0, hi: 55.0 }),
                1,
                s,
            );
            let sh = [4, c, 16, 16];
            dncnn::train_step(
                &b,
                &model,
                &mut opt,
                &b.upload(&sh, &bt.noisy).unwrap(),
                &b.upload(&sh, &bt.clean).unwrap(),
            )
            .unwrap();
        }
        let clean = synthetic(c, h, w, 8);
        let noisy = clean
            .with_data(images::add_awgn(&clean.data, 25.0, 3, 0))
            .unwrap();
        let whole = eval_output(&b, &model, &noisy);
        for core in [1usize, 7, 10, 16, 100] {
            let tiled = dncnn::denoise_tiled(&b, &model, &noisy, core, false, |_, _| {}).unwrap();
            let d = max_abs_diff(&whole, &tiled);
            println!("channels {c}, {w}x{h}, tile {core}: max |tiled - untiled| = {d:.2e}");
            assert!(d <= 1e-4, "tile {core}: max abs diff {d}");
        }
        // a halo smaller than the receptive field is NOT exact: the test can tell
        let tiles = tiling::plan(h, w, 10, 1).unwrap();
        let mut out = vec![0.0; noisy.data.len()];
        for t in &tiles {
            let x = b
                .upload(&[1, c, t.in_h, t.in_w], &nnlab::tiling::crop(&noisy, t))
                .unwrap();
            let y = read_blocking(&b, &model.denoise_tensor(&b, &x).unwrap()).unwrap();
            nnlab::tiling::paste(&mut out, &noisy, t, &y);
        }
        assert!(
            max_abs_diff(&whole, &out) > 1e-4,
            "a too-small halo should differ"
        );
    }
}

#[test]
fn dihedral_turns_rectangles_and_each_mode_has_an_inverse() {
    // [[0 1 2], [3 4 5]] turned a quarter counter-clockwise is [[2 5], [1 4], [0 3]]
    let small: Vec<f32> = (0..6).map(|i| i as f32).collect();
    let (r, h, w) = dihedral(&small, 1, 2, 3, 1);
    assert_eq!((h, w), (3, 2));
    assert_eq!(r, [2.0, 5.0, 1.0, 4.0, 0.0, 3.0]);
    let (c, h, w) = (2, 4, 7);
    let data: Vec<f32> = (0..c * h * w).map(|i| i as f32).collect();
    for m in 0..8u8 {
        let (t, h2, w2) = dihedral(&data, c, h, w, m);
        assert_eq!(
            (h2, w2),
            if m % 2 == 1 { (w, h) } else { (h, w) },
            "mode {m}"
        );
        let (back, h3, w3) = dihedral(&t, c, h2, w2, dihedral_inverse(m));
        assert_eq!(
            (h3, w3, back),
            (h, w, data.clone()),
            "mode {m} then its inverse"
        );
    }
}

#[test]
fn self_ensemble_is_the_mean_of_the_eight_turned_back_outputs_and_tiles_exactly() {
    let b = CpuBackend::new();
    let cfg = DnCnnConfig {
        channels: 3,
        depth: 4,
        width: 8,
    };
    let model = DnCnn::new(&b, cfg, 9).unwrap();
    let (h, w) = (23, 34);
    let clean = synthetic(3, h, w, 2);
    let noisy = clean
        .with_data(images::add_awgn(&clean.data, 25.0, 5, 0))
        .unwrap();
    // by hand: turn the whole image, denoise, turn back, average
    let mut want = vec![0.0f32; noisy.data.len()];
    for m in 0..8u8 {
        let (t, h2, w2) = dihedral(&noisy.data, 3, h, w, m);
        let y = eval_output(&b, &model, &Image::new(3, h2, w2, t).unwrap());
        let (back, _, _) = dihedral(&y, 3, h2, w2, dihedral_inverse(m));
        want.iter_mut().zip(&back).for_each(|(a, v)| *a += v / 8.0);
    }
    let plain = dncnn::denoise_tiled(&b, &model, &noisy, 100, false, |_, _| {}).unwrap();
    assert!(
        max_abs_diff(&want, &plain) > 1e-4,
        "the ensemble should differ from one pass"
    );
    for core in [100usize, 9] {
        let got = dncnn::denoise_tiled(&b, &model, &noisy, core, true, |_, _| {}).unwrap();
        let d = max_abs_diff(&want, &got);
        println!("self-ensemble, tile {core}: max |tiled - by hand| = {d:.2e}");
        assert!(d <= 1e-4, "tile {core}: {d}");
    }
}

/// Every pixel of an h x w image is produced by exactly one tile, and inputs contain outputs.
fn check_cover(tiles: &[tiling::Tile], h: usize, w: usize, halo: usize) {
    let mut hits = vec![0u8; h * w];
    for t in tiles {
        assert!(
            t.in_y <= t.out_y
                && t.in_x <= t.out_x
                && t.out_y + t.out_h <= t.in_y + t.in_h
                && t.out_x + t.out_w <= t.in_x + t.in_w
        );
        assert!(t.in_y + t.in_h <= h && t.in_x + t.in_w <= w);
        // the halo is complete wherever the image continues
        assert!(t.out_y - t.in_y == halo.min(t.out_y) && t.out_x - t.in_x == halo.min(t.out_x));
        for y in t.out_y..t.out_y + t.out_h {
            for v in &mut hits[y * w + t.out_x..y * w + t.out_x + t.out_w] {
                *v += 1;
            }
        }
    }
    assert!(
        hits.iter().all(|&v| v == 1),
        "pixels not covered exactly once"
    );
}

/// Input positions (one axis, from the crop's start) that an output pixel at `u` of a stack of
/// `layers` 3x3 convs run as Winograd F(4x4, 3x3) (tiles from position 0) depends on, its
/// rounding included: at offset a in its tile, the patch rows that A^T's row a and B^T reach
/// (0..=4, 1..=4, 1..=4, 1..=5 of the patch from t - 1, t the tile's start).
fn winograd_reach(u: isize, layers: usize) -> (isize, isize) {
    let (mut lo, mut hi) = (u, u);
    for _ in 0..layers {
        let (tl, th) = (lo - lo.rem_euclid(4), hi - hi.rem_euclid(4));
        lo = if lo.rem_euclid(4) == 0 { tl - 1 } else { tl };
        hi = if hi.rem_euclid(4) == 3 {
            th + 4
        } else {
            th + 3
        };
    }
    (lo, hi)
}

/// `rounding_radius` is the reach of a pixel's rounding through a stack of F(4x4, 3x3) convs,
/// and a direct conv's reach (1 per layer) is within it.
#[test]
fn rounding_radius_is_the_winograd_reach() {
    for layers in 0..40usize {
        let far = (0..4)
            .map(|u| {
                let (lo, hi) = winograd_reach(u, layers);
                (u - lo).max(hi - u) as usize
            })
            .max()
            .unwrap();
        assert_eq!(tiling::rounding_radius(layers), far, "{layers} layers");
        assert!(far >= layers);
    }
}

/// `plan_aligned` (the page's tiles) with the halo of `rounding_radius`: crops at rows and
/// columns that are multiples of 4, ending at the image's residue mod 4, so a pixel's offset
/// from each corner of its crop is the same mod 4 in every plan, and in each of the crop's
/// orientations (the self-ensemble's flips and turns start the tiles at another corner) every
/// kept pixel's rounding reach stays inside the crop or ends at the image's edge: every plan
/// gives the same pixels. Each pixel covered once, the halo complete, no crop over
/// ALIGN_ROOM larger than `plan`'s.
#[test]
fn aligned_tile_plans_keep_every_pixels_offsets_mod_4() {
    for (h, w) in [
        (256usize, 256usize),
        (255, 257),
        (101, 64),
        (37, 1000),
        (7, 9),
        (298, 203),
    ] {
        for (core, radius) in [
            (10usize, 1usize),
            (33, 17),
            (64, 10),
            (129, 17),
            (1000, 17),
            (150, 3),
        ] {
            let halo = tiling::rounding_radius(radius);
            let tiles = tiling::plan_aligned(h, w, core, halo).unwrap();
            check_cover(&tiles, h, w, halo.next_multiple_of(4));
            let plain = tiling::plan(h, w, core, halo).unwrap();
            let side = |ts: &[tiling::Tile]| ts.iter().map(|t| t.in_h.max(t.in_w)).max().unwrap();
            assert!(side(&tiles) <= side(&plain) + tiling::ALIGN_ROOM);
            for t in &tiles {
                assert!(t.in_y % 4 == 0 && t.in_x % 4 == 0, "{t:?}: a corner off 4");
                assert_eq!((t.in_y + t.in_h) % 4, h % 4, "{t:?}: bottom edge of {h}");
                assert_eq!((t.in_x + t.in_w) % 4, w % 4, "{t:?}: right edge of {w}");
                // per axis: (image side, crop start, crop length, kept start, kept length)
                for (n, i0, il, o0, ol) in [
                    (h, t.in_y, t.in_h, t.out_y, t.out_h),
                    (w, t.in_x, t.in_w, t.out_x, t.out_w),
                ] {
                    for x in o0..o0 + ol {
                        // from the crop's start, and (flipped) from its end
                        for flip in [false, true] {
                            let (u, image_u) = if flip {
                                (i0 + il - 1 - x, n - 1 - x)
                            } else {
                                (x - i0, x)
                            };
                            assert_eq!(u % 4, image_u % 4, "{t:?}: pixel {x} of {n}, flip {flip}");
                            let (lo, hi) = winograd_reach(u as isize, radius);
                            // past the crop's start only where the image starts there too
                            let start_is_edge = if flip { i0 + il == n } else { i0 == 0 };
                            let end_is_edge = if flip { i0 == 0 } else { i0 + il == n };
                            assert!(
                                lo >= 0 || start_is_edge,
                                "{t:?}: pixel {x} of {n} reaches {lo}"
                            );
                            assert!(
                                hi < il as isize || end_is_edge,
                                "{t:?}: pixel {x} of {n} reaches {hi}"
                            );
                        }
                    }
                }
            }
        }
    }
}

#[test]
fn a_24_megapixel_tile_plan_stays_under_the_buffer_limit() {
    let (h, w) = (4000usize, 6000usize);
    let cfg = DnCnnConfig::paper(3);
    let halo = cfg.receptive_radius();
    // default WebGPU limit (128 MiB) and an artificially low one (4 MiB), one activation per
    // buffer; the CPU's "no limit" with its im2col matrix (9 width floats per pixel)
    for (limit, per_pixel) in [
        (128u64 << 20, cfg.width),
        (4 << 20, cfg.width),
        (u64::MAX, 9 * cfg.width),
    ] {
        let core = tiling::core_for_limit(limit, per_pixel, halo).unwrap();
        let tiles = tiling::plan(h, w, core, halo).unwrap();
        let biggest = tiling::max_activation_bytes(&tiles, per_pixel);
        println!(
            "limit {limit} B: tile core {core}, {} tiles, largest buffer {} KiB",
            tiles.len(),
            biggest >> 10
        );
        assert!(biggest <= limit / 2 && biggest <= tiling::CPU_BUDGET_BYTES);
        check_cover(&tiles, h, w, halo);
    }
    // a limit too small for even a minimal tile is a clear error, not a panic
    let err = tiling::core_for_limit(1000, 64, 17)
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("cannot hold"), "{err}");
}

#[test]
fn psnr_and_ssim_known_values() {
    let a = vec![0.25f32; 32 * 32];
    assert_eq!(metrics::psnr(&a, &a).unwrap(), f64::INFINITY);
    // MSE 0.01 in [0,1] units (25.5 gray levels off everywhere) is 20 dB
    let b: Vec<f32> = a.iter().map(|v| v + 0.1).collect();
    assert!((metrics::psnr(&a, &b).unwrap() - 20.0).abs() < 1e-4);
    // sigma 25 noise on a mid-gray image: PSNR ~ 20 log10(255/25) = 20.17 dB
    let n = images::add_awgn(&vec![0.5; 256 * 256], 25.0, 1, 0);
    let p = metrics::psnr(&vec![0.5; 256 * 256], &n).unwrap();
    assert!((p - 20.17).abs() < 0.05, "{p}");
    let img = synthetic(1, 40, 30, 1);
    assert!((metrics::ssim(&img.data, &img.data, 1, 40, 30).unwrap() - 1.0).abs() < 1e-12);
    // constant images: SSIM = (2 m1 m2 + C1) / (m1^2 + m2^2 + C1), the contrast term being 1
    let (m1, m2, c1) = (0.25f64, 0.35f64, 1e-4f64);
    let want = (2.0 * m1 * m2 + c1) / (m1 * m1 + m2 * m2 + c1);
    assert!((metrics::ssim(&a, &b, 1, 32, 32).unwrap() - want).abs() < 1e-6);
    // colour: the mean of the channel SSIMs
    let rgb = synthetic(3, 20, 20, 2);
    let mut other = rgb.data.clone();
    for v in &mut other[..400] {
        *v = 0.5;
    }
    let per: Vec<f64> = (0..3)
        .map(|c| {
            metrics::ssim_plane(
                &rgb.data[c * 400..(c + 1) * 400],
                &other[c * 400..(c + 1) * 400],
                20,
                20,
            )
            .unwrap()
        })
        .collect();
    assert!(
        (metrics::ssim(&rgb.data, &other, 3, 20, 20).unwrap() - per.iter().sum::<f64>() / 3.0)
            .abs()
            < 1e-12
    );
    assert!(
        metrics::ssim(&a[..100], &a[..100], 1, 10, 10).is_err(),
        "smaller than the window must be an error"
    );
    // golden value from scikit-image 0.26: structural_similarity(a, b, gaussian_weights=True,
    // sigma=1.5, use_sample_covariance=False, data_range=1.0) on these 24x32 f32 images
    let (h, w) = (24usize, 32usize);
    let img = |extra: bool| -> Vec<f32> {
        (0..h * w)
            .map(|i| {
                ((i % w * 7 + i / w * 13 + if extra { (i % w) * (i / w) % 17 } else { 0 }) % 256)
                    as f32
                    / 255.0
            })
            .collect()
    };
    let got = metrics::ssim(&img(false), &img(true), 1, h, w).unwrap();
    println!("SSIM {got:.10} vs scikit-image 0.8179185615");
    assert!((got - 0.8179185614590943).abs() < 1e-6, "{got}");
}

#[test]
fn augmentations_are_the_eight_symmetries_of_the_square() {
    let p = 5;
    let patch: Vec<f32> = (0..2 * p * p).map(|i| i as f32).collect();
    let outs: Vec<Vec<f32>> = (0..8).map(|m| augment(&patch, 2, p, m)).collect();
    assert_eq!(outs[0], patch);
    for i in 0..8 {
        let mut sorted = outs[i].clone();
        sorted.sort_by(f32::total_cmp);
        assert_eq!(sorted, patch, "mode {i} is not a permutation");
        for j in 0..i {
            assert_ne!(outs[i], outs[j], "modes {i} and {j} coincide");
        }
    }
    // rotating four times is the identity
    let mut r = patch.clone();
    for _ in 0..4 {
        r = augment(&r, 2, p, 1);
    }
    assert_eq!(r, patch);
    // batches repeat for the same (seed, step) and differ across steps
    let s = PatchSampler::new(vec![synthetic(1, 30, 30, 0)], 8).unwrap();
    let level = Noise::unclipped(NoiseLevel::Uniform { lo: 0.0, hi: 55.0 });
    assert_eq!(s.batch(4, level, 1, 5).noisy, s.batch(4, level, 1, 5).noisy);
    assert_ne!(s.batch(4, level, 1, 5).noisy, s.batch(4, level, 1, 6).noisy);
    assert!(s
        .batch(64, level, 1, 0)
        .sigmas
        .iter()
        .all(|&x| (0.0..=55.0).contains(&x)));
}

fn png_bytes(img: image::DynamicImage) -> Vec<u8> {
    let mut c = Cursor::new(Vec::new());
    img.write_to(&mut c, image::ImageFormat::Png).unwrap();
    c.into_inner()
}

#[test]
fn bad_image_inputs_give_clear_errors_or_work_as_documented() {
    let cap = images::DEFAULT_MAX_PIXELS;
    let err = |bytes: &[u8]| {
        images::decode(bytes, ColorMode::Gray, cap)
            .expect_err("should fail")
            .to_string()
    };
    assert!(err(&[]).contains("empty"));
    assert!(err(b"hello, this is plain text and not an image at all").contains("not an image"));
    let gray = image::GrayImage::from_fn(64, 48, |x, y| image::Luma([(x * 3 + y) as u8]));
    let png = png_bytes(image::DynamicImage::ImageLuma8(gray.clone()));
    let e = err(&png[..png.len() / 2]);
    assert!(e.contains("corrupt or truncated"), "{e}");
    let e = err(&png[..20]);
    assert!(
        e.contains("corrupt or truncated") || e.contains("not an image"),
        "{e}"
    );
    // formats recognised by their signature but not decoded: "not supported", naming the format
    for (name, bytes) in [
        ("TIFF", &b"II*\0\x08\0\0\0\0\0\0\0"[..]),
        ("TIFF", &b"MM\0*\0\0\0\x08\0\0\0\0"[..]),
        (
            "WebP",
            &b"RIFF\x1a\0\0\0WEBPVP8L\x0d\0\0\0\x2f\0\0\0\0\0\0\0\0\0\0\0\0"[..],
        ),
        (
            "BMP",
            &b"BM\x3a\0\0\0\0\0\0\0\x36\0\0\0\x28\0\0\0\x01\0\0\0"[..],
        ),
    ] {
        let e = err(bytes);
        assert!(
            e.contains("not supported") && e.contains(name),
            "{name}: {e}"
        );
    }
    // over the megapixel cap: refused before decoding, the cap named
    let e = images::decode(&png, ColorMode::Gray, 1000)
        .err()
        .unwrap()
        .to_string();
    assert!(
        e.contains("cap of 0.0 megapixels") && e.contains("64x48"),
        "{e}"
    );

    // 8-bit gray decodes exactly; PNG encoding round-trips
    let im = images::decode(&png, ColorMode::Gray, cap).unwrap();
    assert_eq!((im.channels, im.height, im.width), (1, 48, 64));
    assert_eq!(im.data[1], 3.0 / 255.0);
    let again = images::decode(&images::encode_png(&im).unwrap(), ColorMode::Gray, cap).unwrap();
    assert_eq!(again.data, im.data);
    // JPEG encoding (quality 95) decodes back close to the image; the output format follows
    // the extension, and one nnlab cannot write is refused by name
    let jpeg = images::encode(&im, images::OutputFormat::Jpeg).unwrap();
    assert_eq!(&jpeg[..2], &[0xff, 0xd8], "JPEG magic");
    let back = images::decode(&jpeg, ColorMode::Gray, cap).unwrap();
    let worst = back
        .data
        .iter()
        .zip(&im.data)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0, f32::max);
    assert!(worst < 0.05, "JPEG q95 round trip off by {worst}");
    use images::OutputFormat as F;
    use std::path::Path;
    assert_eq!(F::from_path(Path::new("a/b.PNG")).unwrap(), F::Png);
    assert_eq!(F::from_path(Path::new("b.jpg")).unwrap(), F::Jpeg);
    assert_eq!(F::from_path(Path::new("b.JPEG")).unwrap(), F::Jpeg);
    for bad in ["b.webp", "b.tiff", "b.bmp", "b", "b.png.txt"] {
        let e = F::from_path(Path::new(bad)).unwrap_err().to_string();
        assert!(e.contains(bad) && e.contains(".png"), "{bad}: {e}");
    }
    // gray in RGB mode: three equal planes
    let rgb = images::decode(&png, ColorMode::Rgb, cap).unwrap();
    assert_eq!(rgb.channels, 3);
    assert_eq!(&rgb.data[..64 * 48], &rgb.data[2 * 64 * 48..]);

    // 16-bit PNG converts at full precision
    let g16 = image::ImageBuffer::<image::Luma<u16>, Vec<u16>>::from_fn(8, 8, |x, _| {
        image::Luma([x as u16 * 8000 + 1])
    });
    let im = images::decode(
        &png_bytes(image::DynamicImage::ImageLuma16(g16)),
        ColorMode::Gray,
        cap,
    )
    .unwrap();
    assert!(
        (im.data[3] - 24001.0 / 65535.0).abs() < 1e-6,
        "{}",
        im.data[3]
    );

    // gray + alpha: alpha kept and written back
    let la = image::GrayAlphaImage::from_fn(5, 4, |x, _| image::LumaA([100, (x * 50) as u8]));
    let im = images::decode(
        &png_bytes(image::DynamicImage::ImageLumaA8(la)),
        ColorMode::Gray,
        cap,
    )
    .unwrap();
    let alpha = im.alpha.clone().expect("alpha kept");
    assert!((alpha[2] - 100.0 / 255.0).abs() < 1e-6);
    let back = images::decode(&images::encode_png(&im).unwrap(), ColorMode::Gray, cap).unwrap();
    assert_eq!(back.alpha, im.alpha);

    // animated GIF: the first frame
    let mut gif = Vec::new();
    {
        let mut enc = image::codecs::gif::GifEncoder::new(&mut gif);
        let frames = [10u8, 200].map(|v| {
            image::Frame::new(image::RgbaImage::from_pixel(
                6,
                6,
                image::Rgba([v, v, v, 255]),
            ))
        });
        enc.encode_frames(frames).unwrap();
    }
    let im = images::decode(&gif, ColorMode::Gray, cap).unwrap();
    assert!(
        (im.data[0] - 10.0 / 255.0).abs() < 0.02,
        "first frame expected, got {}",
        im.data[0]
    );

    // progressive-or-not JPEG in colour, and a 1x1 and a 100000x1 image through a tiny model
    let mut jpg = Cursor::new(Vec::new());
    image::DynamicImage::ImageRgb8(image::RgbImage::from_pixel(
        16,
        16,
        image::Rgb([200, 30, 60]),
    ))
    .write_to(&mut jpg, image::ImageFormat::Jpeg)
    .unwrap();
    let im = images::decode(jpg.get_ref(), ColorMode::Rgb, cap).unwrap();
    assert!(
        (im.data[0] - 200.0 / 255.0).abs() < 0.03 && (im.data[256] - 30.0 / 255.0).abs() < 0.03
    );

    let b = CpuBackend::new();
    let model = tiny_dncnn(&b);
    for (w, h) in [(1u32, 1u32), (100_000, 1)] {
        let im = images::decode(
            &png_bytes(image::DynamicImage::ImageLuma8(
                image::GrayImage::from_pixel(w, h, image::Luma([128])),
            )),
            ColorMode::Gray,
            cap,
        )
        .unwrap();
        let out = dncnn::denoise_image(&b, &model, &im, false).unwrap();
        assert_eq!((out.width, out.height), (w as usize, h as usize));
        assert!(out.data.iter().all(|v| v.is_finite()));
    }
    // a gray model refuses a colour image with a message, not a panic
    let e = dncnn::denoise_image(&b, &model, &rgb, false)
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("1-channel"), "{e}");
}

#[test]
fn noise_is_seeded_and_unclipped() {
    let clean = vec![0.0f32; 1000];
    let a = images::add_awgn(&clean, 25.0, 3, 0);
    assert_eq!(a, images::add_awgn(&clean, 25.0, 3, 0));
    assert!(
        a.iter().any(|&v| v < 0.0),
        "noisy input must not be clipped"
    );
    assert_eq!(a[10], 25.0 / 255.0 * rng::normal(3, 10));
}

#[test]
fn cli_train_checkpoint_resume_eval_and_denoise() {
    use nnlab::cli::dncnn::{
        self as cli, AverageArgs, DenoiseArgs, EvalArgs, Mode, RecalibrateArgs, TrainArgs,
    };
    use nnlab::cli::{BackendKind, RunArgs};
    let root = std::env::temp_dir().join(format!("nnlab_dncnn_cli_{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    // 10 training images: the 10th is the validation part, checked every 2 steps
    for (set, n, side) in [("Train400", 10u64, 48usize), ("Set12", 1, 32)] {
        let dir = root.join("denoise").join(set);
        std::fs::create_dir_all(&dir).unwrap();
        for i in 0..n {
            images::save_png(
                &dir.join(format!("{i:02}.png")),
                &synthetic(1, side, side, i),
            )
            .unwrap();
        }
    }
    let ck = root.join("ck.safetensors");
    let out = root.join("model.safetensors");
    let args = |stop_at: Option<u64>, resume: bool| TrainArgs {
        mode: Mode::Blind,
        channels: 1,
        depth: 3,
        width: 4,
        patch: 16,
        batch: 4,
        steps: 6,
        stop_at,
        lr: 1e-3,
        seed: 5,
        out: Some(out.clone()),
        run: RunArgs {
            backend: BackendKind::Cpu,
            data: Some(root.clone()),
        },
        checkpoint: Some(ck.clone()),
        checkpoint_every: 2,
        snapshots: None,
        snapshot_every: 2,
        resume,
        print_every: 0.0,
        init: None,
        clip_mix: 0.5,
        tone_mix: 0.0,
        all_images: false,
        val_every: 2,
        bn: RecalibrateArgs {
            recalibrate_bn: None,
            bn_seed: 1,
        },
    };
    cli::train(args(Some(4), false)).unwrap();
    assert!(!out.exists(), "a stopped run writes only the checkpoint");
    cli::train(args(None, true)).unwrap();
    let resumed = std::fs::read(&out).unwrap();
    let ck6 = nnlab::weights::metadata(&std::fs::read(&ck).unwrap()).unwrap();
    assert_eq!(ck6["step"], "6");
    // the same 6 steps in one go give the same weights
    // (with weight snapshots every 2 steps)
    std::fs::remove_file(&ck).unwrap();
    let snaps = root.join("snaps");
    cli::train(TrainArgs {
        snapshots: Some(snaps.clone()),
        ..args(None, false)
    })
    .unwrap();
    let straight = std::fs::read(&out).unwrap();
    let w = |bytes: &[u8]| nnlab::weights::from_bytes(bytes).unwrap();
    assert_eq!(w(&resumed), w(&straight));
    // the last snapshot is the final model; `nnlab average` of the three is their mean, a
    // model the CLI loads
    let snap = |s: u64| snaps.join(format!("step_{s}.safetensors"));
    let read = |p: &std::path::Path| std::fs::read(p).unwrap();
    assert_eq!(w(&read(&snap(6))), w(&straight));
    let avg = root.join("avg.safetensors");
    let run = || RunArgs {
        backend: BackendKind::Cpu,
        data: Some(root.clone()),
    };
    let no_bn = || RecalibrateArgs {
        recalibrate_bn: None,
        bn_seed: 1,
    };
    cli::average(AverageArgs {
        out: avg.clone(),
        inputs: vec![snap(2), snap(4), snap(6)],
        bn: no_bn(),
        run: run(),
    })
    .unwrap();
    let (s2, s4, s6) = (w(&read(&snap(2))), w(&read(&snap(4))), w(&read(&snap(6))));
    for (((a, t2), t4), t6) in w(&read(&avg)).iter().zip(&s2).zip(&s4).zip(&s6) {
        for i in 0..a.data.len() {
            let mean = (t2.data[i] as f64 + t4.data[i] as f64 + t6.data[i] as f64) / 3.0;
            assert_eq!(a.data[i], mean as f32, "{}", a.name);
        }
    }
    assert!(
        nnlab::weights::metadata(&read(&avg)).unwrap()["averaged"].contains("step_4.safetensors")
    );
    cli::load_model(&CpuBackend::new(), &avg).unwrap();
    // --recalibrate-bn: only the BatchNorm running statistics change; the same seed repeats them
    let recal = root.join("recal.safetensors");
    let recalibrate = |n: usize, seed: u64| {
        cli::average(AverageArgs {
            out: recal.clone(),
            inputs: vec![snap(6)],
            bn: RecalibrateArgs {
                recalibrate_bn: Some(n),
                bn_seed: seed,
            },
            run: run(),
        })
    };
    recalibrate(3, 1).unwrap();
    let first = w(&read(&recal));
    assert!(
        nnlab::weights::metadata(&read(&recal)).unwrap()["bn_recalibrated"]
            .starts_with("3 batches of 4 patches of 16x16, seed 1, 50% clipped")
    );
    for (t, t6) in first.iter().zip(&s6) {
        assert_eq!(t.name, t6.name);
        if t.name.contains("running_") {
            assert_ne!(t.data, t6.data, "{}", t.name);
        } else {
            assert_eq!(t.data, t6.data, "{}", t.name);
        }
    }
    recalibrate(3, 1).unwrap();
    assert_eq!(w(&read(&recal)), first);
    recalibrate(3, 2).unwrap();
    assert_ne!(w(&read(&recal)), first);
    for bad in [0, 100_001] {
        let e = recalibrate(bad, 1).unwrap_err().to_string();
        assert!(e.contains("--recalibrate-bn"), "{e}");
        let e = cli::train(TrainArgs {
            bn: RecalibrateArgs {
                recalibrate_bn: Some(bad),
                bn_seed: 1,
            },
            ..args(None, false)
        })
        .unwrap_err()
        .to_string();
        assert!(e.contains("--recalibrate-bn"), "{e}");
    }
    // a file without the training settings (here: its 'mode' entry removed) is refused by name
    let mut no_mode = nnlab::weights::metadata(&read(&snap(6))).unwrap();
    no_mode.remove("mode");
    std::fs::write(
        root.join("no_mode.safetensors"),
        nnlab::weights::to_bytes(&s6, Some(no_mode)).unwrap(),
    )
    .unwrap();
    let e = cli::average(AverageArgs {
        out: recal.clone(),
        inputs: vec![root.join("no_mode.safetensors")],
        bn: RecalibrateArgs {
            recalibrate_bn: Some(2),
            bn_seed: 1,
        },
        run: run(),
    })
    .unwrap_err()
    .to_string();
    assert!(e.contains("'mode'"), "{e}");
    // train --recalibrate-bn: the final weights get recomputed statistics, the checkpoint keeps
    // the trained ones (so it equals the run without)
    std::fs::remove_file(&ck).unwrap();
    cli::train(TrainArgs {
        bn: RecalibrateArgs {
            recalibrate_bn: Some(3),
            bn_seed: 1,
        },
        ..args(None, false)
    })
    .unwrap();
    assert_eq!(w(&read(&out)), first);
    let s6_by_name: HashMap<&str, &Vec<f32>> =
        s6.iter().map(|t| (t.name.as_str(), &t.data)).collect();
    for t in w(&read(&ck)).iter().filter(|t| t.name.contains("running_")) {
        assert_eq!(&t.data, s6_by_name[t.name.as_str()], "{}", t.name);
    }
    let e = cli::average(AverageArgs {
        out: avg.clone(),
        inputs: vec![snap(2), root.join("missing.safetensors")],
        bn: no_bn(),
        run: run(),
    })
    .unwrap_err()
    .to_string();
    assert!(e.contains("missing.safetensors"), "{e}");

    cli::eval(EvalArgs {
        model: ck.clone(),
        set: vec!["Set12".into()],
        sigma: vec![25.0],
        noise_seed: 0,
        limit: None,
        per_image: true,
        clip: true,
        self_ensemble: false,
        dark_bias: false,
        run: RunArgs {
            backend: BackendKind::Cpu,
            data: Some(root.clone()),
        },
    })
    .unwrap();
    let input = root.join("denoise/Set12/00.png");
    let output = root.join("out.png");
    cli::denoise(DenoiseArgs {
        input,
        output: output.clone(),
        model: Some(out.to_string_lossy().into_owned()),
        add_noise: Some(25.0),
        clip: false,
        seed: 1,
        noisy_out: None,
        tile: Some(8),
        self_ensemble: false,
        backend: BackendKind::Cpu,
    })
    .unwrap();
    let den = images::load_file(&output, ColorMode::Gray, images::DEFAULT_MAX_PIXELS).unwrap();
    assert_eq!((den.width, den.height), (32, 32));
    // a wrong weights file is a clear error
    std::fs::write(root.join("bad.safetensors"), b"not weights").unwrap();
    let e = cli::load_model(&CpuBackend::new(), &root.join("bad.safetensors"))
        .err()
        .unwrap()
        .to_string();
    assert!(
        e.contains("bad.safetensors") && e.contains("weights error"),
        "{e}"
    );
    let _ = std::fs::remove_dir_all(&root);
}

/// CMYK, progressive and EXIF-rotated JPEGs (fixtures made with Pillow 13: a 16x12 image with
/// red = 16 x, green 120, blue 200; the EXIF one has orientation 6, "rotate 90 clockwise").
#[test]
fn cmyk_progressive_and_exif_rotated_jpegs_decode() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/images");
    let close = |got: f32, want: f32, what: &str| {
        assert!(
            (got * 255.0 - want).abs() <= 12.0,
            "{what}: got {}, want {want}",
            got * 255.0
        )
    };
    for name in ["cmyk.jpg", "progressive.jpg"] {
        let im =
            images::load_file(&dir.join(name), ColorMode::Rgb, images::DEFAULT_MAX_PIXELS).unwrap();
        assert_eq!((im.width, im.height, im.channels), (16, 12, 3), "{name}");
        let p = im.pixels();
        let at = |c: usize, x: usize, y: usize| im.data[c * p + y * 16 + x];
        close(at(0, 8, 5), 128.0, name);
        close(at(1, 8, 5), 120.0, name);
        close(at(2, 8, 5), 200.0, name);
    }
    // displayed upright: 12 wide, 16 tall, the red ramp running down the right-hand column
    let im = images::load_file(
        &dir.join("exif_rot6.jpg"),
        ColorMode::Rgb,
        images::DEFAULT_MAX_PIXELS,
    )
    .unwrap();
    assert_eq!((im.width, im.height), (12, 16));
    close(im.data[11], 0.0, "top right");
    close(im.data[15 * 12 + 11], 240.0, "bottom right");
}

/// The same DnCNN on the GPU backend (lavapipe natively) under a 64 KiB storage-binding limit:
/// a training step gives the CPU's loss and weights, and tiled GPU denoising (tile size from
/// the limit) equals untiled CPU denoising. No adapter = failure, as in the other GPU tests.
#[test]
fn gpu_train_step_and_tiled_denoise_match_the_cpu() {
    use nnlab::gpu::{GpuBackend, GpuOptions};
    let gpu = GpuBackend::new_blocking(GpuOptions {
        max_storage_binding_bytes: Some(64 << 10),
        max_workgroups_per_dim: None,
        // the f32 inference (the f16 one is checked in tests/dncnn_inference.rs)
        no_f16: true,
    })
    .unwrap_or_else(|e| {
        panic!("this test needs a GPU adapter (natively: Vulkan, e.g. mesa-vulkan-drivers): {e}")
    });
    let cpu = CpuBackend::new();
    let (mc, mg) = (
        DnCnn::new(&cpu, TINY, 6).unwrap(),
        DnCnn::new(&gpu, TINY, 6).unwrap(),
    );
    let (mut oc, mut og) = (dncnn::adam(1e-3), dncnn::adam(1e-3));
    let sampler = PatchSampler::new(vec![synthetic(1, 40, 40, 1)], 16).unwrap();
    let sh = [4, 1, 16, 16];
    let mut worst = 0.0f32;
    for s in 0..2 {
        let bt = sampler.batch(4, Noise::unclipped(NoiseLevel::Fixed(25.0)), 2, s);
        let lc = dncnn::train_step(
            &cpu,
            &mc,
            &mut oc,
            &cpu.upload(&sh, &bt.noisy).unwrap(),
            &cpu.upload(&sh, &bt.clean).unwrap(),
        )
        .unwrap();
        let lg = dncnn::train_step(
            &gpu,
            &mg,
            &mut og,
            &gpu.upload(&sh, &bt.noisy).unwrap(),
            &gpu.upload(&sh, &bt.clean).unwrap(),
        )
        .unwrap();
        let (lc, lg) = (
            read_blocking(&cpu, &lc).unwrap()[0],
            read_blocking(&gpu, &lg).unwrap()[0],
        );
        assert!(
            (lc - lg).abs() <= 1e-4 * lc.abs().max(1e-3),
            "step {s}: loss cpu {lc} gpu {lg}"
        );
    }
    for (pc, pg) in mc.state().iter().zip(mg.state()) {
        let d = max_abs_diff(
            &read_blocking(&cpu, pc.value()).unwrap(),
            &read_blocking(&gpu, pg.value()).unwrap(),
        );
        worst = worst.max(d);
    }
    println!("GPU vs CPU after 2 training steps: max |param diff| = {worst:.2e}");
    assert!(worst <= 1e-4, "parameters differ by {worst}");

    let clean = synthetic(1, 37, 53, 3);
    let noisy = clean
        .with_data(images::add_awgn(&clean.data, 25.0, 4, 0))
        .unwrap();
    let want = eval_output(&cpu, &mc, &noisy);
    let core = dncnn::tile_core(&gpu, &mg.config).unwrap();
    let got = dncnn::denoise_tiled(&gpu, &mg, &noisy, core, false, |_, _| {}).unwrap();
    let d = max_abs_diff(&want, &got);
    println!("GPU tiled (core {core}) vs CPU untiled: max abs diff {d:.2e}");
    assert!(core < 37 && d <= 1e-4, "core {core}, diff {d}");
}

/// A 24-megapixel image through a tiny DnCNN on the CPU and, under a 4 MiB binding limit, on the
/// GPU: runs, right size, finite. Slow on a loaded 2-core machine: run by hand with --ignored.
#[test]
#[ignore]
fn a_24_megapixel_image_denoises_in_tiles() {
    let (h, w) = (4000usize, 6000usize);
    let data: Vec<f32> = (0..h * w).map(|i| ((i % 977) as f32) / 977.0).collect();
    let img = Image::new(1, h, w, data).unwrap();
    let cfg = DnCnnConfig {
        channels: 1,
        depth: 3,
        width: 4,
    };
    let cpu = CpuBackend::new();
    let m = DnCnn::new(&cpu, cfg, 1).unwrap();
    let t = std::time::Instant::now();
    let out = dncnn::denoise_image(&cpu, &m, &img, false).unwrap();
    println!(
        "CPU: 24 MP in {:.1}s (tile core {})",
        t.elapsed().as_secs_f64(),
        dncnn::tile_core(&cpu, &cfg).unwrap()
    );
    assert_eq!((out.height, out.width), (h, w));
    assert!(out.data.iter().all(|v| v.is_finite()));
    let gpu = nnlab::gpu::GpuBackend::new_blocking(nnlab::gpu::GpuOptions {
        max_storage_binding_bytes: Some(4 << 20),
        max_workgroups_per_dim: None,
        // the f32 inference (the f16 one is checked in tests/dncnn_inference.rs)
        no_f16: true,
    })
    .unwrap();
    let mg = DnCnn::new(&gpu, cfg, 1).unwrap();
    let t = std::time::Instant::now();
    let outg = dncnn::denoise_image(&gpu, &mg, &img, false).unwrap();
    println!(
        "GPU (4 MiB bindings): 24 MP in {:.1}s (tile core {}), max |gpu - cpu| {:.2e}",
        t.elapsed().as_secs_f64(),
        dncnn::tile_core(&gpu, &cfg).unwrap(),
        max_abs_diff(&out.data, &outg.data)
    );
    assert!(max_abs_diff(&out.data, &outg.data) <= 1e-4);
}

/// `DnCnn::recalibrate_batchnorm` (through `nn::recalibrate_batchnorm`): each BatchNorm's
/// running mean becomes the mean of its input over the batches and its running variance the
/// mean of the batches' unbiased variances, whatever the statistics were before; the weights
/// stay. The expected values walk the layers in training mode and measure each BatchNorm's
/// input in f64.
#[test]
fn batchnorm_recalibration_averages_the_batch_statistics() {
    let b = CpuBackend::new();
    let config = DnCnnConfig {
        channels: 1,
        depth: 5,
        width: 6,
    };
    let model = DnCnn::new(&b, config, 4).unwrap();
    let c = config.width;
    for (i, bn) in model.batchnorms().into_iter().enumerate() {
        let gamma: Vec<f32> = (0..c).map(|k| 0.5 + 0.2 * ((k + i) % 4) as f32).collect();
        let beta: Vec<f32> = (0..c).map(|k| 0.1 * k as f32 - 0.2).collect();
        b.assign(bn.weight.value(), &b.upload(&[c], &gamma).unwrap())
            .unwrap();
        b.assign(bn.bias.value(), &b.upload(&[c], &beta).unwrap())
            .unwrap();
        b.assign(bn.running_mean.value(), &b.fill(&[c], 7.0).unwrap())
            .unwrap();
        b.assign(bn.running_var.value(), &b.fill(&[c], 9.0).unwrap())
            .unwrap();
    }
    let weights_before: Vec<Vec<f32>> = model
        .params()
        .iter()
        .map(|p| read_blocking(&b, p.value()).unwrap())
        .collect();
    let shape = [3, 1, 9, 11];
    let batches: Vec<Vec<f32>> = (0..4u64)
        .map(|k| rng::uniform_vec(3 * 9 * 11, 0.0, 0.5 + 0.2 * k as f32, 40 + k))
        .collect();
    model
        .recalibrate_batchnorm(&b, batches.len(), |k| b.upload(&shape, &batches[k]))
        .unwrap();
    let got: Vec<(Vec<f32>, Vec<f32>)> = model
        .batchnorms()
        .iter()
        .map(|bn| {
            (
                read_blocking(&b, bn.running_mean.value()).unwrap(),
                read_blocking(&b, bn.running_var.value()).unwrap(),
            )
        })
        .collect();
    for (p, before) in model.params().iter().zip(&weights_before) {
        assert_eq!(
            &read_blocking(&b, p.value()).unwrap(),
            before,
            "{}",
            p.name()
        );
    }
    assert!(model
        .recalibrate_batchnorm(&b, 0, |k| b.upload(&shape, &batches[k]))
        .is_err());

    let n = batches.len() as f64;
    let mut want = vec![(vec![0.0f64; c], vec![0.0f64; c]); config.depth - 2];
    for x in &batches {
        let mut g = nnlab::autodiff::Graph::new(&b);
        let xv = g.constant(b.upload(&shape, x).unwrap());
        let h = model.first.forward(&mut g, xv).unwrap();
        let mut h = g.relu(h).unwrap();
        for (i, (conv, bn)) in model.middle.iter().enumerate() {
            let y = conv.forward(&mut g, h).unwrap();
            let v = read_blocking(&b, g.value(y).unwrap()).unwrap();
            let hw = shape[2] * shape[3];
            for ch in 0..c {
                let vals: Vec<f64> = (0..shape[0])
                    .flat_map(|s| v[(s * c + ch) * hw..(s * c + ch + 1) * hw].iter())
                    .map(|&t| t as f64)
                    .collect();
                let m = vals.iter().sum::<f64>() / vals.len() as f64;
                let var =
                    vals.iter().map(|t| (t - m) * (t - m)).sum::<f64>() / (vals.len() - 1) as f64;
                want[i].0[ch] += m / n;
                want[i].1[ch] += var / n;
            }
            let z = bn.forward(&mut g, y).unwrap();
            h = g.relu(z).unwrap();
        }
    }
    for (i, ((gm, gv), (wm, wv))) in got.iter().zip(&want).enumerate() {
        for ch in 0..c {
            assert!(
                (gm[ch] as f64 - wm[ch]).abs() <= 1e-5 * (1.0 + wm[ch].abs()),
                "layer {i} ch {ch} mean {} vs {}",
                gm[ch],
                wm[ch]
            );
            assert!(
                (gv[ch] as f64 - wv[ch]).abs() <= 1e-5 * (1.0 + wv[ch].abs()),
                "layer {i} ch {ch} var {} vs {}",
                gv[ch],
                wv[ch]
            );
        }
    }
}
