//! Hostile input to the `nnlab` command line (issue 22): each case a hostile tester found, run
//! on the built binary, expecting either a clear error (exit status 1 or clap's 2, a message
//! naming the problem and the file, no panic or abort text) or a correct output.
//!
//! Everything is tiny and synthetic, in a temporary folder: a 3-layer DnCNN, a dense GAN, a few
//! small PNGs as Train400 and Set12, and an MNIST of 10,064 training digits (the first 10,000
//! are the page's, so 64 train) and 100 test digits. Sizes are refused before any data is read.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

use nnlab::cpu::CpuBackend;
use nnlab::data::images::{self, Image};
use nnlab::models::dncnn::{DnCnn, DnCnnConfig};
use nnlab::models::gan::{Discriminator, GanArch, GanConfig, Generator};
use nnlab::nn::Module;
use nnlab::weights;

const EXE: &str = env!("CARGO_BIN_EXE_nnlab");

/// Training digits of the synthetic MNIST (after the page's 10,000).
const TRAIN_DIGITS: usize = 64;

// ---------------------------------------------------------------- fixtures

struct Fixture {
    dir: PathBuf,
}

impl Fixture {
    fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }
    fn p(&self, name: &str) -> String {
        self.path(name).display().to_string()
    }
}

/// A copy of a safetensors file with every value of `tensor` set to `value` (written without
/// nnlab, which refuses to save non-finite values).
fn poisoned(bytes: &[u8], tensor: &str, value: f32) -> Vec<u8> {
    let st = safetensors::SafeTensors::deserialize(bytes).unwrap();
    let meta = safetensors::SafeTensors::read_metadata(bytes)
        .unwrap()
        .1
        .metadata()
        .clone();
    let mut raw: Vec<(String, Vec<usize>, Vec<u8>)> = Vec::new();
    let mut found = false;
    for (name, view) in st.tensors() {
        let mut data = view.data().to_vec();
        if name == tensor {
            found = true;
            for c in data.chunks_exact_mut(4) {
                c.copy_from_slice(&value.to_le_bytes());
            }
        }
        raw.push((name, view.shape().to_vec(), data));
    }
    assert!(found, "no tensor {tensor}");
    let views: Vec<(String, safetensors::tensor::TensorView<'_>)> = raw
        .iter()
        .map(|(n, s, d)| {
            let v = safetensors::tensor::TensorView::new(safetensors::Dtype::F32, s.clone(), d);
            (n.clone(), v.unwrap())
        })
        .collect();
    safetensors::serialize(views, meta).unwrap()
}

/// An IDX file: magic, dims, then bytes.
fn idx(magic: u32, dims: &[u32], body: &[u8]) -> Vec<u8> {
    let mut v = magic.to_be_bytes().to_vec();
    for d in dims {
        v.extend(d.to_be_bytes());
    }
    v.extend_from_slice(body);
    v
}

fn write(path: &Path, bytes: &[u8]) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, bytes).unwrap();
}

fn gray_png(path: &Path, w: usize, h: usize, seed: usize) {
    let data = (0..w * h)
        .map(|i| ((i * 37 + seed * 11) % 251) as f32 / 255.0)
        .collect();
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    images::save_png(path, &Image::new(1, h, w, data).unwrap()).unwrap();
}

fn fixture() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(|| {
        // under target/ (cargo's scratch folder for integration tests), fresh each run
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("hostile");
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let f = Fixture { dir };
        let b = CpuBackend::new();

        // images: a gray photo, Train400 and Set12 of a few small crops
        gray_png(&f.path("gray.png"), 40, 30, 0);
        for i in 0..3 {
            gray_png(
                &f.path(&format!("data/denoise/Train400/t{i}.png")),
                48,
                48,
                i,
            );
        }
        gray_png(&f.path("data/denoise/Set12/01.png"), 32, 32, 7);
        gray_png(&f.path("data/denoise/Set12/02.png"), 32, 32, 8);
        // signatures of formats nnlab does not decode
        write(&f.path("photo.tiff"), b"II*\0\x08\0\0\0\0\0\0\0");
        write(
            &f.path("photo.webp"),
            b"RIFF\x1a\0\0\0WEBPVP8L\x0d\0\0\0\x2f\0\0\0\0\0\0\0\0\0\0\0\0",
        );
        write(
            &f.path("photo.bmp"),
            b"BM\x3a\0\0\0\0\0\0\0\x36\0\0\0\x28\0\0\0\x01\0\0\0",
        );

        // MNIST: 10,000 page digits + TRAIN_DIGITS, and 100 test digits
        for (prefix, n) in [("train", 10_000 + TRAIN_DIGITS), ("t10k", 100)] {
            let px: Vec<u8> = (0..n * 784).map(|i| (i * 7 % 256) as u8).collect();
            let labels: Vec<u8> = (0..n).map(|i| (i % 10) as u8).collect();
            write(
                &f.path(&format!("data/mnist/{prefix}-images-idx3-ubyte")),
                &idx(2051, &[n as u32, 28, 28], &px),
            );
            write(
                &f.path(&format!("data/mnist/{prefix}-labels-idx1-ubyte")),
                &idx(2049, &[n as u32], &labels),
            );
        }

        // a tiny DnCNN, one with NaN in its first conv, one with 1e30 in its last
        let config = DnCnnConfig {
            channels: 1,
            depth: 3,
            width: 4,
        };
        let model = DnCnn::new(&b, config, 1).unwrap();
        let good = pollster::block_on(model.to_weights(&b, HashMap::new())).unwrap();
        write(&f.path("dncnn.safetensors"), &good);
        write(
            &f.path("dncnn_nan.safetensors"),
            &poisoned(&good, "dncnn.0.weight", f32::NAN),
        );
        write(
            &f.path("dncnn_huge.safetensors"),
            &poisoned(&good, "dncnn.5.weight", 1e30),
        );
        write(
            &f.path("garbage.safetensors"),
            b"this is not a weights file",
        );

        // the shipped classifier, and a copy with NaN weights
        let clf = std::fs::read(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("www/models/classifier.safetensors"),
        )
        .unwrap();
        write(&f.path("classifier.safetensors"), &clf);
        let first = weights::from_bytes(&clf).unwrap()[0].name.clone();
        write(
            &f.path("classifier_nan.safetensors"),
            &poisoned(&clf, &first, f32::NAN),
        );

        // a small dense GAN (G and D beside it), and a copy with NaN in G
        let gc = GanConfig {
            arch: GanArch::Dense,
            latent: 8,
            width: 8,
            extra_conv: false,
            extra_conv_14: false,
        };
        let g = Generator::new(&b, gc, 1).unwrap();
        let d = Discriminator::new(&b, gc, 2).unwrap();
        let gb = pollster::block_on(weights::save_params(&b, &g.state(), None)).unwrap();
        let db = pollster::block_on(weights::save_params(&b, &d.state(), None)).unwrap();
        write(&f.path("gan_g.safetensors"), &gb);
        write(&f.path("gan_d.safetensors"), &db);
        let g0 = weights::from_bytes(&gb).unwrap()[0].name.clone();
        write(&f.path("nan_g.safetensors"), &poisoned(&gb, &g0, f32::NAN));
        write(&f.path("nan_d.safetensors"), &db);
        let d0 = weights::from_bytes(&db).unwrap()[0].name.clone();
        write(&f.path("dnan.safetensors"), &poisoned(&db, &d0, f32::NAN));
        f
    })
}

// ---------------------------------------------------------------- running the binary

/// `nnlab ARGS` in the fixture folder, with the synthetic data as NNLAB_DATA.
fn nnlab(args: &[&str]) -> Output {
    nnlab_in(&fixture().dir, args, &[])
}

fn nnlab_in(cwd: &Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut c = Command::new(EXE);
    c.args(args)
        .current_dir(cwd)
        .env("NNLAB_DATA", fixture().path("data"))
        .env_remove("NNLAB_MODELS")
        .env("RUST_BACKTRACE", "0");
    for (k, v) in env {
        c.env(k, v);
    }
    c.output().expect("run nnlab")
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// A clear error: exit status 1 (or clap's 2), each needle in the message, no panic/abort.
#[track_caller]
fn fails(out: &Output, needles: &[&str]) -> String {
    let t = text(out);
    let code = out.status.code();
    assert!(
        matches!(code, Some(1) | Some(2)),
        "expected a clean error exit, got {code:?}:\n{t}"
    );
    for bad in [
        "panicked",
        "memory allocation",
        "RUST_BACKTRACE",
        "stack backtrace",
    ] {
        assert!(!t.contains(bad), "panic/abort text {bad:?}:\n{t}");
    }
    for n in needles {
        assert!(t.contains(n), "the message should mention {n:?}:\n{t}");
    }
    t
}

#[track_caller]
fn succeeds(out: &Output) -> String {
    let t = text(out);
    assert_eq!(out.status.code(), Some(0), "expected success:\n{t}");
    t
}

/// A fresh sub-folder of the fixture for one test's outputs.
fn scratch(name: &str) -> PathBuf {
    let d = fixture().path(&format!("out-{name}"));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn s(p: &Path) -> String {
    p.display().to_string()
}

// ---------------------------------------------------------------- weights

#[test]
fn weights_with_nan_are_refused_everywhere_with_file_and_tensor() {
    let f = fixture();
    let out = scratch("nan");
    let nan = f.p("dncnn_nan.safetensors");
    let need = ["dncnn_nan.safetensors", "dncnn.0.weight", "NaN"];
    let png = s(&out.join("o.png"));
    fails(
        &nnlab(&["denoise", "--model", &nan, &f.p("gray.png"), &png]),
        &need,
    );
    assert!(!out.join("o.png").exists(), "nothing written");
    fails(
        &nnlab(&["eval", "dncnn", "--model", &nan, "--sigma", "25"]),
        &need,
    );
    let avg = s(&out.join("avg.safetensors"));
    let good = f.p("dncnn.safetensors");
    fails(&nnlab(&["average", "--out", &avg, &good, &nan]), &need);
    assert!(!out.join("avg.safetensors").exists());
    let tiny = [
        "--depth", "3", "--width", "4", "--patch", "8", "--batch", "2", "--steps", "2",
    ];
    let w = s(&out.join("w.safetensors"));
    let mut args = vec!["train", "dncnn", "--init", &nan, "--out", &w];
    args.extend(tiny);
    fails(&nnlab(&args), &need);
    let mut args = vec![
        "train",
        "dncnn",
        "--resume",
        "--checkpoint",
        &nan,
        "--out",
        &w,
    ];
    args.extend(tiny);
    fails(&nnlab(&args), &need);
    // the classifier and the GAN
    let (clf_nan, g_nan) = (f.p("classifier_nan.safetensors"), f.p("nan_g.safetensors"));
    let (clf, g_out) = (
        f.p("classifier.safetensors"),
        s(&out.join("g_g.safetensors")),
    );
    let (clf_need, g_need) = (
        ["classifier_nan.safetensors", "NaN"],
        ["nan_g.safetensors", "NaN"],
    );
    #[rustfmt::skip]
    let cases: [(&[&str], &[&str]); 3] = [
        (&["eval", "classifier", "--model", &clf_nan, "--eps", "0"], &clf_need),
        (&["eval", "gan", "--model", &g_nan, "--classifier", &clf, "--samples", "10"], &g_need),
        (&["train", "gan", "--init", &g_nan, "--steps", "1", "--batch", "4", "--out", &g_out], &g_need),
    ];
    for (args, need) in cases {
        fails(&nnlab(args), need);
    }
}

#[test]
fn a_model_whose_output_is_not_an_image_is_refused() {
    let f = fixture();
    let out = scratch("huge");
    let png = out.join("o.png");
    let t = fails(
        &nnlab(&[
            "denoise",
            "--model",
            &f.p("dncnn_huge.safetensors"),
            &f.p("gray.png"),
            &s(&png),
        ]),
        &["DnCNN"],
    );
    assert!(
        t.contains("outside [0, 1]") || t.contains("non-finite"),
        "{t}"
    );
    assert!(!png.exists(), "no image written from broken weights");
}

// ---------------------------------------------------------------- sizes and counts

#[test]
fn huge_batches_and_sizes_give_a_clear_error_not_an_abort() {
    let f = fixture();
    let out = scratch("batch");
    let o = |n: &str| s(&out.join(n));
    let huge = "10000000000";
    let tiny_dncnn = ["--depth", "3", "--width", "4"];
    // (model, its flags, output file): each refused, naming the flag that is too large
    #[rustfmt::skip]
    let cases: [(&str, Vec<&str>, &str); 5] = [
        ("gan", vec!["--batch", huge, "--steps", "1"], "g_g.safetensors"),
        ("ae", vec!["--batch", huge, "--steps", "1"], "ae.safetensors"),
        ("classifier", vec!["--batch", huge, "--epochs", "1"], "c.safetensors"),
        ("dncnn", [&["--batch", huge, "--steps", "1"][..], &tiny_dncnn].concat(), "d.safetensors"),
        ("dncnn", [&["--patch", "1000000", "--steps", "1"][..], &tiny_dncnn].concat(), "d.safetensors"),
    ];
    for (model, flags, file) in &cases {
        let out_file = o(file);
        let mut args = vec!["train", model];
        args.extend(flags);
        args.extend(["--out", &out_file]);
        fails(&nnlab(&args), &[flags[0]]);
    }
    // nothing was written
    assert_eq!(std::fs::read_dir(&out).unwrap().count(), 0);
    // evaluation takes the test digits in chunks of at most --batch: a huge one is one chunk
    let clf = f.p("classifier.safetensors");
    let eval_clf = ["eval", "classifier", "--model", &clf, "--eps", "0"];
    let t = succeeds(&nnlab(&[&eval_clf[..], &["--batch", huge]].concat()));
    assert!(t.contains("100 MNIST test digits"), "{t}");
    fails(
        &nnlab(&[&eval_clf[..], &["--limit", "0"]].concat()),
        &["--limit"],
    );
    // attack settings out of range are refused before anything is evaluated
    for bad in [&["--eps", "5"][..], &["--eps", "0.1", "--target", "11"]] {
        let mut args = vec!["eval", "classifier", "--model", &clf];
        args.extend(bad);
        let t = fails(&nnlab(&args), &[]);
        assert!(!t.contains("accuracy"), "refused before the table:\n{t}");
    }
}

#[test]
fn a_batch_larger_than_the_data_is_refused() {
    let out = scratch("bigger");
    let o = |n: &str| s(&out.join(n));
    let batch = (TRAIN_DIGITS + 1).to_string();
    let digits = TRAIN_DIGITS.to_string();
    #[rustfmt::skip]
    let cases = [
        ("classifier", &["--epochs", "1"][..], "c.safetensors"),
        ("gan", &["--steps", "1", "--arch", "dense"], "g_g.safetensors"),
        ("ae", &["--steps", "1"], "ae.safetensors"),
    ];
    for (model, flags, file) in cases {
        let out_file = o(file);
        let mut args = vec!["train", model, "--batch", &batch];
        args.extend(flags);
        args.extend(["--out", &out_file]);
        fails(&nnlab(&args), &["--batch", &digits]);
    }
    assert_eq!(std::fs::read_dir(&out).unwrap().count(), 0);
}

#[test]
fn zero_counts_and_absurd_noise_are_refused() {
    let f = fixture();
    let out = scratch("counts");
    let model = f.p("dncnn.safetensors");
    fails(
        &nnlab(&["eval", "dncnn", "--model", &model, "--limit", "0"]),
        &["--limit"],
    );
    let png = s(&out.join("o.png"));
    for noise in ["3e38", "-1", "NaN", "inf", "256"] {
        let flag = format!("--add-noise={noise}");
        fails(
            &nnlab(&["denoise", "--model", &model, &flag, &f.p("gray.png"), &png]),
            &["--add-noise"],
        );
    }
    fails(
        &nnlab(&["eval", "dncnn", "--model", &model, "--sigma", "25,3e38"]),
        &["--sigma"],
    );
    fails(
        &nnlab(&[
            "train",
            "dncnn",
            "--stop-at",
            "0",
            "--checkpoint",
            &s(&out.join("ck.safetensors")),
            "--depth",
            "3",
            "--width",
            "4",
        ]),
        &["--stop-at"],
    );
    assert_eq!(std::fs::read_dir(&out).unwrap().count(), 0);
    // a sane level works, and --limit 1 evaluates one image
    succeeds(&nnlab(&[
        "denoise",
        "--model",
        &model,
        "--add-noise",
        "25",
        &f.p("gray.png"),
        &png,
    ]));
    let t = succeeds(&nnlab(&[
        "eval", "dncnn", "--model", &model, "--limit", "1", "--sigma", "25",
    ]));
    assert!(
        t.lines()
            .any(|l| l.starts_with("Set12") && l.split_whitespace().nth(2) == Some("1")),
        "{t}"
    );
}

// ---------------------------------------------------------------- images in and out

#[test]
fn the_output_format_follows_the_extension() {
    let f = fixture();
    let out = scratch("format");
    let model = f.p("dncnn.safetensors");
    for (name, magic) in [
        ("o.jpg", &[0xffu8, 0xd8][..]),
        ("o.JPEG", &[0xff, 0xd8]),
        ("o.png", &b"\x89PNG"[..]),
    ] {
        let p = out.join(name);
        succeeds(&nnlab(&[
            "denoise",
            "--model",
            &model,
            &f.p("gray.png"),
            &s(&p),
        ]));
        let bytes = std::fs::read(&p).unwrap();
        assert_eq!(&bytes[..magic.len()], magic, "{name}");
    }
    for name in ["o.webp", "o.bmp", "o.tiff", "o"] {
        let t = fails(
            &nnlab(&[
                "denoise",
                "--model",
                &model,
                &f.p("gray.png"),
                &s(&out.join(name)),
            ]),
            &[name, ".png"],
        );
        assert!(!t.contains("denoised"), "refused before the work:\n{t}");
        assert!(!out.join(name).exists());
    }
}

#[test]
fn an_unwritable_output_is_found_before_the_work() {
    let f = fixture();
    let out = scratch("unwritable");
    let model = f.p("dncnn.safetensors");
    // under a file, and a folder
    for bad in [f.path("gray.png").join("o.png"), out.clone()] {
        let t = fails(
            &nnlab(&["denoise", "--model", &model, &f.p("gray.png"), &s(&bad)]),
            &[&s(&bad)],
        );
        assert!(!t.contains("denoised"), "refused before the work:\n{t}");
    }
    // training outputs are checked before the training
    let bad = s(&f.path("gray.png").join("w.safetensors"));
    for args in [
        vec![
            "train", "gan", "--arch", "dense", "--batch", "4", "--steps", "1", "--out", &bad,
        ],
        vec!["train", "ae", "--batch", "4", "--steps", "1", "--out", &bad],
        vec![
            "train",
            "classifier",
            "--batch",
            "4",
            "--epochs",
            "1",
            "--out",
            &bad,
        ],
        vec![
            "train", "dncnn", "--depth", "3", "--width", "4", "--patch", "8", "--batch", "2",
            "--steps", "1", "--out", &bad,
        ],
    ] {
        let t = fails(&nnlab(&args), &[&bad]);
        assert!(!t.contains("step 1"), "refused before training:\n{t}");
    }
}

#[test]
fn unsupported_image_formats_are_called_so() {
    let f = fixture();
    let out = scratch("unsupported");
    for (file, name) in [
        ("photo.tiff", "TIFF"),
        ("photo.webp", "WebP"),
        ("photo.bmp", "BMP"),
    ] {
        let t = fails(
            &nnlab(&[
                "denoise",
                "--model",
                &f.p("dncnn.safetensors"),
                &f.p(file),
                &s(&out.join("o.png")),
            ]),
            &[file, name, "not supported"],
        );
        assert!(!t.contains("corrupt"), "{t}");
    }
}

// ---------------------------------------------------------------- files

#[test]
fn shipped_model_names_resolve_outside_the_repository() {
    let f = fixture();
    let out = scratch("shipped");
    let png = s(&out.join("o.png"));
    // NNLAB_MODELS names the folder
    let models = out.join("models");
    std::fs::create_dir_all(&models).unwrap();
    std::fs::copy(
        f.path("dncnn.safetensors"),
        models.join("dncnn_blind_gray.safetensors"),
    )
    .unwrap();
    let t = succeeds(&nnlab_in(
        &out,
        &["denoise", "--model", "blind", &f.p("gray.png"), &png],
        &[("NNLAB_MODELS", &s(&models))],
    ));
    assert!(
        t.contains(&s(&models)),
        "the model came from NNLAB_MODELS:\n{t}"
    );
    // the install location: target/<profile>/nnlab finds the repository's www/models
    let exe = Path::new(EXE);
    let shipped = exe
        .parent()
        .unwrap()
        .join("../../www/models/dncnn_s10_gray.safetensors");
    if shipped.exists() {
        succeeds(&nnlab_in(
            &out,
            &["denoise", "--model", "s10", &f.p("gray.png"), &png],
            &[],
        ));
    } else {
        println!(
            "note: {} not found beside the binary: install-location lookup not exercised",
            shipped.display()
        );
    }
    // an unknown name says where it looked
    fails(
        &nnlab_in(
            &out,
            &["denoise", "--model", "nosuch", &f.p("gray.png"), &png],
            &[],
        ),
        &["nosuch", "blind"],
    );
}

#[test]
fn every_file_error_names_the_file() {
    let f = fixture();
    let out = scratch("names");
    let garbage = f.p("garbage.safetensors");
    let missing = s(&out.join("missing.safetensors"));
    let clf = f.p("classifier.safetensors");
    let o = |n: &str| s(&out.join(n));
    let (png, avg, gan_out, w) = (
        o("o.png"),
        o("a.safetensors"),
        o("g_g.safetensors"),
        o("w.safetensors"),
    );
    let (gray, gan_g) = (f.p("gray.png"), f.p("gan_g.safetensors"));
    for m in [&garbage, &missing] {
        let file = Path::new(m).file_name().unwrap().to_str().unwrap();
        // every command that reads a weights file, given `m` as that file
        #[rustfmt::skip]
        let cases: [&[&str]; 8] = [
            &["eval", "gan", "--model", m, "--classifier", &clf, "--samples", "10"],
            &["eval", "gan", "--classifier", m, "--model", &gan_g, "--samples", "10"],
            &["eval", "classifier", "--model", m, "--eps", "0"],
            &["eval", "dncnn", "--model", m],
            &["denoise", "--model", m, &gray, &png],
            &["average", "--out", &avg, m],
            &["train", "gan", "--init", m, "--steps", "1", "--batch", "4", "--out", &gan_out],
            &["train", "dncnn", "--init", m, "--steps", "1", "--out", &w],
        ];
        for args in cases {
            fails(&nnlab(args), &[file]);
        }
    }
    // --resume: a checkpoint that is garbage, or a weights file without the checkpoint's entries
    for m in [&garbage, &f.p("dncnn.safetensors")] {
        let file = Path::new(m).file_name().unwrap().to_str().unwrap();
        fails(
            &nnlab(&[
                "train",
                "dncnn",
                "--resume",
                "--checkpoint",
                m,
                "--steps",
                "1",
                "--out",
                &s(&out.join("w.safetensors")),
            ]),
            &[file],
        );
    }
    // a missing image
    fails(
        &nnlab(&[
            "denoise",
            "--model",
            &f.p("dncnn.safetensors"),
            &s(&out.join("nope.png")),
            &s(&out.join("o.png")),
        ]),
        &["nope.png"],
    );
}

#[test]
fn checkpoints_named_tmp_are_written_whole_and_stop_at_resumes() {
    let out = scratch("checkpoint");
    let ck = out.join("run.tmp");
    let w = out.join("w.safetensors");
    let tiny = [
        "--depth",
        "3",
        "--width",
        "4",
        "--patch",
        "8",
        "--batch",
        "2",
        "--steps",
        "3",
        "--checkpoint-every",
        "1",
    ];
    let mut args = vec![
        "train",
        "dncnn",
        "--checkpoint",
        ck.to_str().unwrap(),
        "--out",
        w.to_str().unwrap(),
        "--stop-at",
        "1",
    ];
    args.extend(tiny);
    let t = succeeds(&nnlab(&args));
    assert!(t.contains("--resume"), "{t}");
    let step = |p: &Path| weights::metadata(&std::fs::read(p).unwrap()).unwrap()["step"].clone();
    assert_eq!(step(&ck), "1", "the checkpoint --stop-at promised");
    assert!(!w.exists(), "a stopped run writes no final weights");
    // resume to the end: the .tmp checkpoint is replaced whole, nothing temporary is left
    let mut args = vec![
        "train",
        "dncnn",
        "--resume",
        "--checkpoint",
        ck.to_str().unwrap(),
        "--out",
        w.to_str().unwrap(),
    ];
    args.extend(tiny);
    succeeds(&nnlab(&args));
    assert_eq!(step(&ck), "3");
    weights::from_bytes(&std::fs::read(&w).unwrap()).unwrap();
    let mut names: Vec<String> = std::fs::read_dir(&out)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(
        names,
        ["run.tmp", "w.safetensors"],
        "no temporary file left"
    );
}

#[test]
fn gan_rejection_sampling_and_its_d_fine_tune() {
    let f = fixture();
    let out = scratch("drs");
    let (g, d, clf) = (
        f.p("gan_g.safetensors"),
        f.p("gan_d.safetensors"),
        f.p("classifier.safetensors"),
    );
    // D alone against the fixed G: only D is written
    let tuned = s(&out.join("tuned.safetensors"));
    let o = nnlab(&[
        "train", "gan", "--init", &g, "--d-only", "--steps", "2", "--batch", "4", "--out", &tuned,
    ]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("(G fixed)"), "{}", text(&o));
    assert!(out.join("tuned_d.safetensors").exists());
    assert!(!out.join("tuned.safetensors").exists());
    // --d-only needs a trained pair and no EMA
    fails(
        &nnlab(&["train", "gan", "--d-only", "--steps", "1", "--out", &tuned]),
        &["--d-only", "--init"],
    );
    let tuned_d = s(&out.join("tuned_d.safetensors"));
    // eval gan on the fixture's G with the options given
    let eval_gan = |options: &[&str]| {
        let base = [
            "eval",
            "gan",
            "--model",
            &g,
            "--classifier",
            &clf,
            "--samples",
            "10",
        ];
        nnlab(&[&base[..], options].concat())
    };
    let eval = |gamma: &str, d: &str| {
        eval_gan(&[
            "--discriminator",
            d,
            "--drs-pool",
            "20",
            "--drs-gamma",
            gamma,
        ])
    };
    // a gamma that keeps nearly everything: one row more, with the count kept
    let o = eval("-60", &tuned_d);
    assert!(o.status.success(), "{}", text(&o));
    assert!(
        text(&o).contains("rejection by D, gamma -60 (kept "),
        "{}",
        text(&o)
    );
    // one that keeps too few: a clear error, not fewer samples scored
    fails(&eval("60", &d), &["gamma 60", "fewer than the 10"]);
    // a D with NaN weights: refused, not used to pick samples
    fails(&eval("0", &f.p("dnan.safetensors")), &["non-finite"]);
    // the truncation trick: a row with its threshold said; too small a threshold is refused
    let truncated = |t: &str| eval_gan(&["--truncation", t]);
    let o = truncated("1.5");
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("truncated to +-1.5"), "{}", text(&o));
    fails(&truncated("0.1"), &["--truncation", ">= 0.25", "0.1"]);
    // latent Langevin on D: a row per step count; it needs D, a step size in (0, 1] and
    // normal latents, each said before anything is loaded
    let o = eval_gan(&[
        "--discriminator",
        &d,
        "--langevin",
        "0,3",
        "--langevin-eps",
        "0.1",
        "--drs-gamma=-60",
        "--drs-pool",
        "1",
    ]);
    assert!(o.status.success(), "{}", text(&o));
    for steps in ["0", "3"] {
        let row = format!("latent Langevin on D, {steps} steps of 0.1");
        assert!(text(&o).contains(&row), "{}", text(&o));
    }
    fails(
        &eval_gan(&["--langevin", "3"]),
        &["--langevin", "--discriminator"],
    );
    // the D of the fixture, 3 steps, and one setting more
    let langevin_with = |extra: &[&str]| {
        eval_gan(&[&["--discriminator", &d, "--langevin", "3"][..], extra].concat())
    };
    fails(
        &langevin_with(&["--langevin-eps", "0"]),
        &["--langevin", "step size"],
    );
    fails(
        &langevin_with(&["--latent-dist", "uniform"]),
        &["--langevin", "normal"],
    );
    // a D with NaN weights: refused before any latent moves
    fails(
        &eval_gan(&[
            "--discriminator",
            &f.p("dnan.safetensors"),
            "--langevin",
            "2",
            "--drs-gamma=-60",
            "--drs-pool",
            "1",
        ]),
        &["non-finite"],
    );
}

/// `grow gan`: a DCGAN G gets the extra block at 7x7, then at 14x14, and keeps its samples
/// each time (the largest change is printed), its D travels beside it, and `train gan --init`
/// goes on from the grown pair; a dense G and one with both blocks are refused with the reason.
#[test]
fn grow_gan_deepens_a_dcgan_and_refuses_what_it_cannot() {
    let f = fixture();
    let out = scratch("grow-gan");
    let (g, grown, grown2) = (
        s(&out.join("g.safetensors")),
        s(&out.join("grown.safetensors")),
        s(&out.join("grown2.safetensors")),
    );
    let args = [
        "--arch", "dcgan", "--width", "4", "--batch", "4", "--steps", "1",
    ];
    let o = nnlab(&[&["train", "gan"][..], &args, &["--out", &g]].concat());
    assert!(o.status.success(), "{}", text(&o));
    let grow = |from: &str, to: &str, block: &str| {
        let o = nnlab(&[
            "grow",
            "gan",
            "--model",
            from,
            "--out",
            to,
            "--stats-batches",
            "2",
        ]);
        assert!(o.status.success(), "{}", text(&o));
        let t = text(&o);
        assert!(t.contains(block), "{t}");
        let change: f32 = t
            .split("largest pixel change on 64 samples ")
            .nth(1)
            .and_then(|r| r.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no change printed:\n{t}"));
        assert!(change < 1e-4, "{t}");
    };
    grow(&g, &grown, "block at 7x7");
    assert!(out.join("grown_d.safetensors").exists());
    grow(&grown, &grown2, "block at 14x14");
    assert!(out.join("grown2_d.safetensors").exists());
    let o = nnlab(&[
        "train",
        "gan",
        "--init",
        &grown2,
        "--batch",
        "4",
        "--steps",
        "1",
        "--out",
        &s(&out.join("more.safetensors")),
    ]);
    assert!(o.status.success(), "{}", text(&o));
    fails(
        &nnlab(&[
            "grow",
            "gan",
            "--model",
            &grown2,
            "--out",
            &s(&out.join("x.safetensors")),
        ]),
        &[
            "already has both extra stride-1 blocks",
            "grown2.safetensors",
        ],
    );
    fails(
        &nnlab(&[
            "grow",
            "gan",
            "--model",
            &f.p("gan_g.safetensors"),
            "--out",
            &s(&out.join("y.safetensors")),
        ]),
        &["only a DCGAN", "gan_g.safetensors"],
    );
}
