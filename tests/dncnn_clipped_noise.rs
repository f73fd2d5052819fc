//! Noise as an 8-bit photo has it (issue 23): the training sampler's clipped fraction, the
//! validation part held out of the training sets, and the shipped blind gray and colour models
//! on a dark image with clipped noise (dark regions must stay dark).

use nnlab::cpu::CpuBackend;
use nnlab::data::images::{self, parse_set_part, DenoiseSet, Image, Part};
use nnlab::data::patches::{tone, Noise, NoiseLevel, PatchSampler, TONE_GAIN};
use nnlab::models::dncnn::{self, DnCnn};
use nnlab::rng;

fn is_8bit(v: f32) -> bool {
    (0.0..=1.0).contains(&v) && ((v * 255.0).round() - v * 255.0).abs() < 1e-3
}

/// Textured gray images whose pixels sit on 8-bit levels, as a loaded photo's do.
fn images(n: usize, side: usize) -> Vec<Image> {
    (0..n)
        .map(|i| {
            let data = rng::uniform_vec(side * side, 0.0, 1.0, 40 + i as u64);
            Image::new(1, side, side, images::quantize8(&data)).unwrap()
        })
        .collect()
}

#[test]
fn the_clipped_fraction_clips_whole_patches_and_leaves_the_rest_as_they_were() {
    let sampler = PatchSampler::new(images(5, 48), 16).unwrap();
    let level = NoiseLevel::Fixed(50.0);
    let (n, per) = (64, 16 * 16);
    let plain = sampler.batch(n, Noise::unclipped(level), 3, 7);
    // sigma 50: every unclipped patch has values below 0 or above 1
    assert!(plain.noisy.iter().any(|v| !(0.0..=1.0).contains(v)));
    let all = sampler.batch(
        n,
        Noise {
            level,
            clipped: 1.0,
            toned: 0.0,
        },
        3,
        7,
    );
    assert!(all.noisy.iter().all(|&v| is_8bit(v)));
    assert_eq!(
        all.clean, plain.clean,
        "the clean patches do not depend on the noise"
    );
    let half = sampler.batch(
        n,
        Noise {
            level,
            clipped: 0.5,
            toned: 0.0,
        },
        3,
        7,
    );
    assert_eq!(half.clean, plain.clean);
    assert_eq!(half.sigmas, plain.sigmas);
    let mut clipped = 0;
    for k in 0..n {
        let (h, p) = (
            &half.noisy[k * per..(k + 1) * per],
            &plain.noisy[k * per..(k + 1) * per],
        );
        if h == p {
            continue;
        }
        // a clipped patch is the unclipped one clamped and rounded, value by value
        clipped += 1;
        assert_eq!(h, images::quantize8(p).as_slice(), "patch {k}");
    }
    assert!(
        (16..=48).contains(&clipped),
        "{clipped} of {n} patches clipped with a fraction of 0.5"
    );
    // the same batch again: a pure function of (seed, step)
    let again = sampler.batch(
        n,
        Noise {
            level,
            clipped: 0.5,
            toned: 0.0,
        },
        3,
        7,
    );
    assert_eq!(again.noisy, half.noisy);
}

#[test]
fn tone_compresses_a_patch_toward_black_or_white_on_8bit_levels_and_keeps_its_order() {
    let x: Vec<f32> = (0..=255).map(|l| l as f32 / 255.0).collect();
    let mut dark = x.clone();
    tone(&mut dark, false, 0.1);
    let mut bright = x.clone();
    tone(&mut bright, true, 0.1);
    assert_eq!((dark[0], bright[255]), (0.0, 1.0), "the end itself stays");
    // 255 * 0.1 = 25.5 levels: rounded to 26 (and 255 - 25.5 to 230)
    assert_eq!((dark[255] * 255.0, bright[0] * 255.0), (26.0, 230.0));
    for w in [&dark, &bright] {
        assert!(w.iter().all(|&v| is_8bit(v)));
        assert!(w.windows(2).all(|p| p[0] <= p[1]), "order kept");
    }
}

#[test]
fn the_toned_fraction_darkens_or_brightens_whole_clean_patches_and_leaves_the_noise_as_it_was() {
    let sampler = PatchSampler::new(images(5, 48), 16).unwrap();
    let level = NoiseLevel::Uniform { lo: 0.0, hi: 55.0 };
    let (n, per) = (64, 16 * 16);
    let with = |clipped: f32, toned: f32| {
        sampler.batch(
            n,
            Noise {
                level,
                clipped,
                toned,
            },
            3,
            7,
        )
    };
    let plain = with(0.0, 0.0);
    let toned = with(0.0, 0.5);
    assert_eq!(toned.sigmas, plain.sigmas, "sigma drawn as before");
    let (mut dark, mut bright) = (0, 0);
    for k in 0..n {
        let r = k * per..(k + 1) * per;
        let (c, c0) = (&toned.clean[r.clone()], &plain.clean[r.clone()]);
        // the noise values are those of the untoned batch
        for i in r.clone() {
            let (e, e0) = (
                toned.noisy[i] - toned.clean[i],
                plain.noisy[i] - plain.clean[i],
            );
            assert!((e - e0).abs() < 1e-5, "patch {k}: noise {e} vs {e0}");
        }
        if c == c0 {
            continue;
        }
        assert!(c.iter().all(|&v| is_8bit(v)), "patch {k} on 8-bit levels");
        // the contrast is scaled by a gain in TONE_GAIN (within the rounding of two levels)
        let span = |p: &[f32]| {
            p.iter().cloned().fold(f32::MIN, f32::max) - p.iter().cloned().fold(f32::MAX, f32::min)
        };
        let (g_lo, g_hi) = TONE_GAIN;
        let (s, s0) = (span(c), span(c0));
        assert!(
            s >= g_lo * s0 - 1.0 / 255.0 && s <= g_hi * s0 + 1.0 / 255.0,
            "patch {k}: span {s} from {s0}"
        );
        let max_dark = g_hi + 0.5 / 255.0;
        if c.iter().all(|&v| v <= max_dark) {
            dark += 1;
        } else {
            assert!(
                c.iter().all(|&v| v >= 1.0 - max_dark),
                "patch {k} toned toward neither end"
            );
            bright += 1;
        }
    }
    assert!(
        (16..=48).contains(&(dark + bright)) && dark >= 6 && bright >= 6,
        "{dark} dark and {bright} bright of {n} patches with a fraction of 0.5"
    );
    // toning and clipping are drawn apart: with both, the clipped patches are the toned
    // batch's noisy patches clamped and rounded
    let both = with(1.0, 0.5);
    assert_eq!(both.clean, toned.clean);
    assert_eq!(both.noisy, images::quantize8(&toned.noisy));
    // a pure function of (seed, step), so resume stays bit-identical
    let again = with(0.0, 0.5);
    assert_eq!((again.clean, again.noisy), (toned.clean, toned.noisy));
}

#[test]
fn the_validation_part_is_every_tenth_image_and_only_training_sets_have_one() {
    let val: Vec<usize> = (0..40).filter(|&i| Part::Val.holds(i)).collect();
    assert_eq!(val, vec![9, 19, 29, 39]);
    for i in 0..400 {
        assert!(Part::All.holds(i));
        assert_ne!(
            Part::Train.holds(i),
            Part::Val.holds(i),
            "image {i} in exactly one part"
        );
    }
    assert_eq!(
        parse_set_part("train400-VAL").unwrap(),
        (DenoiseSet::Train400, Part::Val)
    );
    assert_eq!(
        parse_set_part("CBSD432-val").unwrap(),
        (DenoiseSet::Cbsd432, Part::Val)
    );
    assert_eq!(
        parse_set_part("BSD68").unwrap(),
        (DenoiseSet::Bsd68, Part::All)
    );
    let e = parse_set_part("BSD68-val").unwrap_err().to_string();
    assert!(e.contains("only the training sets"), "{e}");
}

#[test]
fn clipped_noise_lies_on_8bit_levels_and_keeps_the_unclipped_values_inside() {
    let clean = images::quantize8(&rng::uniform_vec(4096, 0.0, 1.0, 5));
    let raw = images::add_awgn(&clean, 25.0, 9, 0);
    let q = images::add_awgn8(&clean, 25.0, 9, 0);
    for (r, v) in raw.iter().zip(&q) {
        assert!(is_8bit(*v));
        assert!((r.clamp(0.0, 1.0) - v).abs() <= 0.5 / 255.0 + 1e-6);
    }
}

/// The bar: a dark image with 8-bit clipped noise at sigma 50 comes out with a mean
/// within +-1 level of the clean one. Unclipped-only training leaves it grey: clipping at 0
/// turns zero-mean noise into a positive bias that the model keeps as signal (the models shipped
/// before: +10.4 levels gray, +10.8 colour). The shipped ones (toned fine-tunes, BatchNorm
/// recalibrated) have +0.84 (gray) and +0.81 (colour); the margin is thin (see README, issue 23:
/// neighbouring snapshots range over levels).
fn dark_bias_of_shipped(file: &str, channels: usize) -> f64 {
    let b = CpuBackend::new();
    let path = format!("{}/www/models/{file}", env!("CARGO_MANIFEST_DIR"));
    let model = DnCnn::from_weights(&b, &std::fs::read(path).unwrap()).unwrap();
    assert_eq!(model.config.channels, channels);
    // a 128x128 ramp of 4-40 levels with soft blobs (the same in every channel), sigma 50
    // clipped, noise seeds 1, 2, 3
    let clean = dncnn::dark_test_image(channels).unwrap();
    let mean = clean.data.iter().map(|&x| x as f64).sum::<f64>() / clean.data.len() as f64;
    let (bias, biases) = dncnn::dark_bias(&b, &model).unwrap();
    println!(
        "{file}: dark image (clean mean {:.1} levels), sigma 50 clipped: output bias {bias:+.2} levels (per seed {biases:?})",
        mean * 255.0
    );
    bias
}

#[test]
fn the_shipped_blind_gray_model_keeps_a_dark_image_dark_under_clipped_noise() {
    let bias = dark_bias_of_shipped("dncnn_blind_gray.safetensors", 1);
    assert!(
        bias.abs() <= 1.0,
        "mean output bias {bias:+.2} levels, outside +-1"
    );
}

#[test]
fn the_shipped_blind_colour_model_keeps_a_dark_image_dark_under_clipped_noise() {
    let bias = dark_bias_of_shipped("dncnn_blind_color.safetensors", 3);
    assert!(
        bias.abs() <= 1.0,
        "mean output bias {bias:+.2} levels, outside +-1"
    );
}

fn nnlab(args: &[&str]) -> (bool, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_nnlab"))
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    (out.status.success(), text)
}

#[test]
fn the_cli_refuses_a_clip_mix_outside_0_1_a_validation_part_of_a_test_set_and_0_recalibration_batches(
) {
    let (ok, text) = nnlab(&["train", "dncnn", "--clip-mix", "1.5", "--steps", "1"]);
    assert!(!ok && text.contains("clip-mix in [0, 1]"), "{text}");
    assert!(!text.contains("panicked"), "{text}");
    let (ok, text) = nnlab(&["train", "dncnn", "--tone-mix", "2", "--steps", "1"]);
    assert!(!ok && text.contains("tone-mix in [0, 1]"), "{text}");
    assert!(!text.contains("panicked"), "{text}");
    let (ok, text) = nnlab(&[
        "eval",
        "dncnn",
        "--model",
        "www/models/dncnn_blind_gray.safetensors",
        "--set",
        "BSD68-val",
        "--clip",
    ]);
    assert!(!ok && text.contains("only the training sets"), "{text}");
    assert!(!text.contains("panicked"), "{text}");
    let out = std::env::temp_dir().join(format!("nnlab_recal_{}.safetensors", std::process::id()));
    let out = out.to_string_lossy();
    for n in ["0", "-1", "x", "100001"] {
        let (ok, text) = nnlab(&[
            "average",
            "--out",
            &out,
            "--recalibrate-bn",
            n,
            "www/models/dncnn_blind_gray.safetensors",
        ]);
        assert!(
            !ok && (text.contains("recalibrate-bn") || text.contains("'-1'")),
            "{n}: {text}"
        );
        assert!(!text.contains("panicked"), "{text}");
    }
}
