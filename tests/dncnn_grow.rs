//! Growing a DnCNN (Net2Net, `models::dncnn_grow`, `nnlab grow dncnn`): the grown model has the
//! asked depth and width, and in evaluation mode computes what the small one computes (within
//! 1e-4 without noise; with the symmetry-breaking noise, close, and the copied channels no
//! longer equal), gray and colour, with BatchNorm statistics and affine parameters far from the
//! identity; its file loads with the right shape and metadata; shrinking, a wrong file and
//! statistics of another model are clear errors, from the library and from the command line.

#[path = "common/models.rs"]
mod models_common;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use models_common::randomize_batchnorm;
use nnlab::backend::read_blocking;
use nnlab::cpu::CpuBackend;
use nnlab::data::images::{self, Image};
use nnlab::models::dncnn::{DnCnn, DnCnnConfig};
use nnlab::models::dncnn_grow::{grow, hidden_stats, insert_positions, ChannelStats, GrowPlan};
use nnlab::{rng, weights, Backend, Tensor};

const EXE: &str = env!("CARGO_BIN_EXE_nnlab");

/// A small DnCNN with non-trivial BatchNorms and a last layer at full scale (so the predicted
/// noise, and any error in it, is not tiny).
fn small_model(b: &dyn Backend, channels: usize, depth: usize, width: usize) -> DnCnn {
    let config = DnCnnConfig {
        channels,
        depth,
        width,
    };
    let m = DnCnn::new(b, config, 5).unwrap();
    for (i, bn) in m.batchnorms().into_iter().enumerate() {
        randomize_batchnorm(b, bn, 100 + 10 * i as u64);
    }
    let std = (2.0 / (9 * width) as f32).sqrt();
    m.last
        .reinit(b, nnlab::nn::Init::Normal { mean: 0.0, std }, 9)
        .unwrap();
    m
}

fn images(b: &dyn Backend, channels: usize, n: usize, side: usize, seed: u64) -> Tensor {
    let len = n * channels * side * side;
    b.upload(
        &[n, channels, side, side],
        &rng::uniform_vec(len, 0.0, 1.0, seed),
    )
    .unwrap()
}

fn max_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

fn grown(b: &dyn Backend, m: &DnCnn, depth: usize, width: usize, noise: f32) -> DnCnn {
    let c = m.config.channels;
    let stats = pollster::block_on(hidden_stats(b, m, 3, |k| {
        Ok(images(b, c, 4, 12, 50 + k as u64))
    }))
    .unwrap();
    let plan = GrowPlan {
        depth,
        width,
        seed: 3,
        noise,
    };
    pollster::block_on(grow(b, m, &stats, plan)).unwrap()
}

#[test]
fn the_grown_model_computes_the_same_function() {
    let b = CpuBackend::new();
    for channels in [1, 3] {
        let m = small_model(&b, channels, 4, 6);
        let x = images(&b, channels, 2, 16, 7);
        let want = read_blocking(&b, &m.denoise_tensor(&b, &x).unwrap()).unwrap();
        let residual = max_diff(&want, &read_blocking(&b, &x).unwrap());
        assert!(
            residual > 0.05,
            "the test model predicts too little noise: {residual}"
        );
        for (depth, width) in [(4, 6), (7, 6), (4, 11), (9, 13)] {
            let g = grown(&b, &m, depth, width, 0.0);
            assert_eq!(
                g.config,
                DnCnnConfig {
                    channels,
                    depth,
                    width
                }
            );
            assert_eq!(g.middle.len(), depth - 2);
            assert_eq!(g.first.weight.shape(), &[width, channels, 3, 3]);
            assert_eq!(g.last.weight.shape(), &[channels, width, 3, 3]);
            let got = read_blocking(&b, &g.denoise_tensor(&b, &x).unwrap()).unwrap();
            let d = max_diff(&got, &want);
            assert!(
                d <= 1e-4,
                "{channels} ch, depth {depth} width {width}: max |diff| {d}"
            );
        }
    }
}

#[test]
fn noise_breaks_the_copies_apart_and_changes_little() {
    let b = CpuBackend::new();
    let m = small_model(&b, 1, 4, 6);
    let x = images(&b, 1, 2, 16, 7);
    let want = read_blocking(&b, &m.denoise_tensor(&b, &x).unwrap()).unwrap();
    let g = grown(&b, &m, 6, 12, 0.01);
    let got = read_blocking(&b, &g.denoise_tensor(&b, &x).unwrap()).unwrap();
    let d = max_diff(&got, &want);
    assert!(d > 0.0 && d < 0.02, "noise 0.01 changed the output by {d}");
    // every added channel of the first layer differs from the channel it copied
    let w = read_blocking(&b, g.first.weight.value()).unwrap();
    let filters: Vec<&[f32]> = w.chunks(9).collect();
    for j in 6..12 {
        assert!(
            (0..6).all(|k| filters[j] != filters[k]),
            "channel {j} is still an exact copy"
        );
    }
    // without noise, each added channel is an exact copy of one old channel
    let g0 = grown(&b, &m, 6, 12, 0.0);
    let w0 = read_blocking(&b, g0.first.weight.value()).unwrap();
    let f0: Vec<&[f32]> = w0.chunks(9).collect();
    for j in 6..12 {
        assert!((0..6).any(|k| f0[j] == f0[k]), "channel {j} copies nothing");
    }
}

#[test]
fn new_layers_are_spread_and_saved_files_load_with_their_shape() {
    assert_eq!(insert_positions(9, 7), vec![0, 1, 2, 3, 5, 6, 7]);
    assert_eq!(insert_positions(3, 0), Vec::<usize>::new());
    assert_eq!(insert_positions(2, 5), vec![0, 0, 0, 1, 1]);
    let b = CpuBackend::new();
    let m = small_model(&b, 1, 4, 6);
    let g = grown(&b, &m, 7, 10, 0.01);
    let bytes = pollster::block_on(g.to_weights(&b, HashMap::new())).unwrap();
    let meta = weights::metadata(&bytes).unwrap();
    assert_eq!(meta["depth"], "7");
    assert_eq!(meta["width"], "10");
    let back = DnCnn::from_weights(&b, &bytes).unwrap();
    assert_eq!(back.config, g.config);
    let x = images(&b, 1, 1, 20, 9);
    let a = read_blocking(&b, &g.denoise_tensor(&b, &x).unwrap()).unwrap();
    let c = read_blocking(&b, &back.denoise_tensor(&b, &x).unwrap()).unwrap();
    assert_eq!(a, c);
}

#[test]
fn shrinking_and_foreign_statistics_are_errors() {
    let b = CpuBackend::new();
    let m = small_model(&b, 1, 5, 8);
    let stats = pollster::block_on(hidden_stats(&b, &m, 1, |k| {
        Ok(images(&b, 1, 2, 8, k as u64))
    }))
    .unwrap();
    assert_eq!(stats.len(), 4);
    for (depth, width) in [(4, 8), (5, 7), (3, 4)] {
        let plan = GrowPlan {
            depth,
            width,
            seed: 1,
            noise: 0.0,
        };
        let e = pollster::block_on(grow(&b, &m, &stats, plan))
            .err()
            .expect("shrinking must fail")
            .to_string();
        assert!(e.contains("only grow"), "{e}");
    }
    let plan = GrowPlan {
        depth: 8,
        width: 8,
        seed: 1,
        noise: 0.0,
    };
    let e = pollster::block_on(grow(&b, &m, &stats[..2], plan))
        .err()
        .expect("foreign stats must fail")
        .to_string();
    assert!(e.contains("statistics"), "{e}");
    let wrong = vec![
        ChannelStats {
            mean: vec![0.0; 3],
            var: vec![1.0; 3],
        };
        4
    ];
    assert!(pollster::block_on(grow(&b, &m, &wrong, plan)).is_err());
    let bad_noise = GrowPlan {
        noise: f32::NAN,
        ..plan
    };
    assert!(pollster::block_on(grow(&b, &m, &stats, bad_noise)).is_err());
    assert!(pollster::block_on(hidden_stats(&b, &m, 0, |k| Ok(images(
        &b, 1, 2, 8, k as u64
    ))))
    .is_err());
    // images of the wrong channel count
    assert!(pollster::block_on(hidden_stats(&b, &m, 1, |k| Ok(images(
        &b, 3, 2, 8, k as u64
    ))))
    .is_err());
}

// ---------------------------------------------------------------- the command

fn nnlab(dir: &Path, args: &[&str]) -> Output {
    Command::new(EXE)
        .args(args)
        .current_dir(dir)
        .env("NNLAB_DATA", dir.join("data"))
        .env_remove("NNLAB_MODELS")
        .env("RUST_BACKTRACE", "0")
        .output()
        .expect("run nnlab")
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

#[track_caller]
fn fails(o: &Output, needles: &[&str]) {
    let t = text(o);
    assert_eq!(o.status.code(), Some(1), "expected a clean error:\n{t}");
    assert!(!t.contains("panicked"), "{t}");
    for n in needles {
        assert!(t.contains(n), "the message should mention {n:?}:\n{t}");
    }
}

fn fixture() -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("dncnn_grow");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("data/denoise/Train400")).unwrap();
    for i in 0..12 {
        let data = (0..48 * 48)
            .map(|p| ((p * 37 + i * 11) % 251) as f32 / 255.0)
            .collect();
        let img = Image::new(1, 48, 48, data).unwrap();
        images::save_png(
            &dir.join(format!("data/denoise/Train400/t{i:02}.png")),
            &img,
        )
        .unwrap();
    }
    let b = CpuBackend::new();
    let m = small_model(&b, 1, 4, 6);
    let mut meta = HashMap::new();
    for (k, v) in [
        ("mode", "blind"),
        ("patch", "16"),
        ("batch", "4"),
        ("clip_mix", "0.5"),
        ("tone_mix", "0.3"),
        ("val", "step 9: stale"),
    ] {
        meta.insert(k.to_string(), v.to_string());
    }
    let bytes = pollster::block_on(m.to_weights(&b, meta)).unwrap();
    std::fs::write(dir.join("small.safetensors"), &bytes).unwrap();
    let plain = pollster::block_on(m.to_weights(&b, HashMap::new())).unwrap();
    std::fs::write(dir.join("no_meta.safetensors"), &plain).unwrap();
    std::fs::write(dir.join("garbage.safetensors"), b"not weights").unwrap();
    dir
}

#[test]
fn the_command_grows_a_file_and_refuses_bad_input() {
    let dir = fixture();
    let o = nnlab(
        &dir,
        &[
            "grow",
            "dncnn",
            "--model",
            "small.safetensors",
            "--depth",
            "7",
            "--width",
            "9",
            "--out",
            "grown.safetensors",
            "--noise",
            "0",
            "--stats-batches",
            "2",
        ],
    );
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let bytes = std::fs::read(dir.join("grown.safetensors")).unwrap();
    let meta = weights::metadata(&bytes).unwrap();
    assert_eq!(meta["depth"], "7");
    assert_eq!(meta["width"], "9");
    assert_eq!(meta["mode"], "blind");
    assert_eq!(meta["clip_mix"], "0.5");
    assert!(meta["grown_from"].contains("depth 4 width 6"), "{meta:?}");
    assert!(!meta.contains_key("val"), "a stale validation line stayed");
    let b = CpuBackend::new();
    let g = DnCnn::from_weights(&b, &bytes).unwrap();
    let m =
        DnCnn::from_weights(&b, &std::fs::read(dir.join("small.safetensors")).unwrap()).unwrap();
    let x = images(&b, 1, 1, 20, 4);
    let want = read_blocking(&b, &m.denoise_tensor(&b, &x).unwrap()).unwrap();
    let got = read_blocking(&b, &g.denoise_tensor(&b, &x).unwrap()).unwrap();
    assert!(max_diff(&got, &want) <= 1e-4);

    let grow_to = |model: &str, depth: &str, width: &str| {
        nnlab(
            &dir,
            &[
                "grow",
                "dncnn",
                "--model",
                model,
                "--depth",
                depth,
                "--width",
                width,
                "--out",
                "x.safetensors",
            ],
        )
    };
    fails(
        &grow_to("small.safetensors", "3", "6"),
        &["small.safetensors", "depth 4 width 6", "deeper or wider"],
    );
    fails(
        &grow_to("small.safetensors", "4", "5"),
        &["deeper or wider"],
    );
    fails(
        &grow_to("garbage.safetensors", "7", "9"),
        &["garbage.safetensors", "not a valid safetensors file"],
    );
    fails(
        &grow_to("missing.safetensors", "7", "9"),
        &["missing.safetensors"],
    );
    // deepening needs the training settings to measure the new layers' statistics on
    fails(
        &grow_to("no_meta.safetensors", "7", "9"),
        &["no_meta.safetensors", "'mode'"],
    );
    // widening alone needs no data
    let o = grow_to("no_meta.safetensors", "4", "9");
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert!(!dir.join("x.safetensors.tmp").exists());
}
