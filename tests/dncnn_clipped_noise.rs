//! Noise as an 8-bit photo has it (issue 23): the training sampler's clipped fraction, the
//! validation part held out of the training sets, and the shipped blind gray model on a dark
//! image with clipped noise (dark regions must stay dark).

use nnlab::cpu::CpuBackend;
use nnlab::data::images::{self, parse_set_part, DenoiseSet, Image, Part};
use nnlab::data::patches::{Noise, NoiseLevel, PatchSampler};
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
        },
        3,
        7,
    );
    assert_eq!(again.noisy, half.noisy);
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
/// turns zero-mean noise into a positive bias that the model keeps as signal.
#[test]
#[ignore = "not met by the shipped model yet: +10.4 levels (see README, issue 23)"]
fn the_shipped_blind_gray_model_keeps_a_dark_image_dark_under_clipped_noise() {
    let b = CpuBackend::new();
    let bytes = std::fs::read(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/www/models/dncnn_blind_gray.safetensors"
    ))
    .unwrap();
    let model = DnCnn::from_weights(&b, &bytes).unwrap();
    // a dark scene: a smooth ramp from 4 to 40 levels with soft blobs, on 8-bit levels
    let (h, w) = (128usize, 128usize);
    let mut data = Vec::with_capacity(h * w);
    for y in 0..h {
        for x in 0..w {
            let ramp = 4.0 + 36.0 * x as f32 / (w - 1) as f32;
            let blob = 10.0 * ((y as f32 / 9.0).sin() * (x as f32 / 13.0).cos()).max(0.0);
            data.push((ramp + blob).round() / 255.0);
        }
    }
    let clean = Image::new(1, h, w, data).unwrap();
    let mean = |v: &[f32]| v.iter().map(|&x| x as f64).sum::<f64>() / v.len() as f64 * 255.0;
    let mut biases = Vec::new();
    for seed in [1u64, 2, 3] {
        let noisy = clean
            .with_data(images::add_awgn8(&clean.data, 50.0, seed, 0))
            .unwrap();
        let out = dncnn::denoise_image(&b, &model, &noisy, false).unwrap();
        let out = images::quantize8(&out.data);
        biases.push(mean(&out) - mean(&clean.data));
    }
    let bias = biases.iter().sum::<f64>() / biases.len() as f64;
    println!(
        "dark image (clean mean {:.1} levels), sigma 50 clipped: output bias {bias:+.2} levels (per seed {biases:?})",
        mean(&clean.data)
    );
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
fn the_cli_refuses_a_clip_mix_outside_0_1_and_a_validation_part_of_a_test_set() {
    let (ok, text) = nnlab(&["train", "dncnn", "--clip-mix", "1.5", "--steps", "1"]);
    assert!(!ok && text.contains("clip-mix in [0, 1]"), "{text}");
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
}
