//! `nnlab figure dncnn`: the lecture's three DnCNN figures, regenerated from the shipped models.
//!
//! 1. the sigma=10 model applied at sigma 5/10/15 (noisy row above, denoised row below);
//! 2. the blind model at sigma 10/30/50;
//! 3. sigma=10 model vs blind model at sigma 10/25/50 (rows: noisy, sigma=10 model, blind).
//!
//! Each figure is a PNG grid plus one line per panel with its PSNR (the PNG has no text: the
//! numbers go to stdout and to `<name>.md` beside the image).

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use clap::Args;

use super::dncnn::{load_model, shipped_model_path};
use super::RunArgs;
use crate::backend::Backend;
use crate::data::images::{self, ColorMode, DenoiseSet, Image, DEFAULT_MAX_PIXELS};
use crate::error::{Error, Result};
use crate::metrics;
use crate::models::dncnn::{self, DnCnn};

/// Gap between panels, in pixels (drawn white).
const GAP: usize = 4;

#[derive(Args, Clone, Debug)]
pub struct FigureArgs {
    /// clean gray image to corrupt (default: the first Set12 image, the cameraman)
    #[arg(long)]
    pub image: Option<PathBuf>,
    /// folder the PNGs and captions are written to
    #[arg(long, default_value = "docs/figures")]
    pub out_dir: PathBuf,
    /// the sigma=10 model
    #[arg(long, default_value = "s10")]
    pub s10: String,
    /// the blind model
    #[arg(long, default_value = "blind")]
    pub blind: String,
    /// seed of the added noise
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    #[command(flatten)]
    pub run: RunArgs,
}

/// One panel of a figure: the image and its caption.
struct Panel {
    image: Image,
    caption: String,
}

/// Noisy version of `clean` at `sigma` (fixed seed per sigma) and its PSNR.
fn noisy(clean: &Image, sigma: f32, seed: u64) -> Result<Panel> {
    let data = images::add_awgn(
        &clean.data,
        sigma,
        seed.wrapping_add(sigma.round() as u64),
        0,
    );
    let image = clean.with_data(data)?;
    let p = metrics::psnr(&clean.data, &image.data)?;
    Ok(Panel {
        image,
        caption: format!("noisy sigma {sigma}: {p:.2} dB"),
    })
}

fn denoised(
    b: &dyn Backend,
    model: &DnCnn,
    name: &str,
    clean: &Image,
    noisy: &Panel,
) -> Result<Panel> {
    let out = dncnn::denoise_image(b, model, &noisy.image, false)?;
    let image = out.with_data(images::quantize8(&out.data))?;
    let p = metrics::psnr(&clean.data, &image.data)?;
    Ok(Panel {
        image,
        caption: format!("{name}: {p:.2} dB"),
    })
}

/// Rows of equally sized panels pasted into one gray image (values clamped to [0, 1]).
fn grid(rows: &[Vec<Panel>]) -> Result<Image> {
    let first = &rows[0][0].image;
    let (h, w) = (first.height, first.width);
    let cols = rows[0].len();
    let (gh, gw) = (
        rows.len() * h + (rows.len() - 1) * GAP,
        cols * w + (cols - 1) * GAP,
    );
    let mut data = vec![1.0f32; gh * gw];
    for (r, row) in rows.iter().enumerate() {
        for (c, panel) in row.iter().enumerate() {
            for y in 0..h {
                for x in 0..w {
                    data[(r * (h + GAP) + y) * gw + c * (w + GAP) + x] =
                        panel.image.data[y * w + x].clamp(0.0, 1.0);
                }
            }
        }
    }
    Image::new(1, gh, gw, data)
}

/// Write `<name>.png` and `<name>.md` and print the captions.
fn save(dir: &Path, name: &str, title: &str, rows: Vec<Vec<Panel>>) -> Result<()> {
    let png = dir.join(format!("{name}.png"));
    images::save_png(&png, &grid(&rows)?)?;
    let mut md = format!("{title}\n\n");
    for (r, row) in rows.iter().enumerate() {
        let _ = writeln!(
            md,
            "- row {}: {}",
            r + 1,
            row.iter()
                .map(|p| p.caption.as_str())
                .collect::<Vec<_>>()
                .join(" | ")
        );
    }
    std::fs::write(dir.join(format!("{name}.md")), &md)
        .map_err(|e| Error::Io(format!("{}: {e}", dir.display())))?;
    println!("{} -> {}\n{md}", title, png.display());
    Ok(())
}

/// `nnlab figure dncnn`.
pub fn figure(a: FigureArgs) -> Result<()> {
    let b = a.run.backend()?;
    let b: &dyn Backend = b.as_ref();
    let clean = match &a.image {
        Some(p) => images::load_file(p, ColorMode::Gray, DEFAULT_MAX_PIXELS)?,
        None => {
            let dir = images::set_dir(&a.run.data_dir()?, DenoiseSet::Set12);
            let first = images::list_images(&dir)?
                .into_iter()
                .next()
                .ok_or_else(|| Error::Io(format!("no images in {}", dir.display())))?;
            images::load_file(&first, ColorMode::Gray, DEFAULT_MAX_PIXELS)?
        }
    };
    let s10 = load_model(b, &shipped_model_path(&a.s10))?;
    let blind = load_model(b, &shipped_model_path(&a.blind))?;
    for (m, what) in [(&s10, "--s10"), (&blind, "--blind")] {
        if m.config.channels != 1 {
            return Err(Error::Invalid(format!(
                "{what} must be a gray (1-channel) model"
            )));
        }
    }
    std::fs::create_dir_all(&a.out_dir)
        .map_err(|e| Error::Io(format!("{}: {e}", a.out_dir.display())))?;
    // the folder takes files: found before the denoising rather than after
    crate::files::check_writable(&a.out_dir.join("figure.png"))?;

    // one figure: a noisy row, then one denoised row per model
    let run = |name: &str, title: &str, sigmas: &[f32], models: &[(&DnCnn, &str)]| -> Result<()> {
        let noisy_row: Vec<Panel> = sigmas
            .iter()
            .map(|&s| noisy(&clean, s, a.seed))
            .collect::<Result<_>>()?;
        let mut rows = Vec::new();
        for (m, label) in models {
            rows.push(
                noisy_row
                    .iter()
                    .map(|n| denoised(b, m, label, &clean, n))
                    .collect::<Result<Vec<_>>>()?,
            );
        }
        rows.insert(0, noisy_row);
        save(&a.out_dir, name, title, rows)
    };
    run(
        "dncnn_s10",
        "The sigma=10 model at sigma 5 / 10 / 15 (noisy above, denoised below)",
        &[5.0, 10.0, 15.0],
        &[(&s10, "sigma=10 model")],
    )?;
    run(
        "dncnn_blind",
        "The blind model at sigma 10 / 30 / 50 (noisy above, denoised below)",
        &[10.0, 30.0, 50.0],
        &[(&blind, "blind model")],
    )?;
    run(
        "dncnn_s10_vs_blind",
        "sigma=10 model vs blind model at sigma 10 / 25 / 50 (rows: noisy, sigma=10 model, blind model)",
        &[10.0, 25.0, 50.0],
        &[(&s10, "sigma=10 model"), (&blind, "blind model")],
    )
}
