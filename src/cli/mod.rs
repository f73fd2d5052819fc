//! The command line's floor (native only): one file per command family, and here the pieces they
//! share: the backend a `--backend` flag names, the data folder, the flags every model command
//! takes (`RunArgs`, flattened into each command's arguments), progress timing,
//! the metadata written beside weights, and the MNIST training digits (files are written with
//! `files::write_atomic` and read with `weights::read_file`). `src/bin/nnlab.rs` only
//! parses and dispatches; the work is here so tests can call it. This is the only layer above
//! `models/` that opens a backend by name (it imports `cpu/` and `gpu/`; models do not).

pub mod ae;
pub mod bench;
pub mod checks;
pub mod classifier;
pub mod dncnn;
pub mod figure;
pub mod gan;
pub mod semi;

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use clap::{Args, ValueEnum};

use crate::backend::read_blocking;
use crate::cpu::CpuBackend;
use crate::data::mnist::{Mnist, Split, PAGE_DIGITS};
use crate::gpu::{GpuBackend, GpuOptions};
use crate::{Backend, Error, Result, Tensor};

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum BackendKind {
    Cpu,
    Gpu,
}

/// The flags every model command shares: where it runs and where its data is.
#[derive(Args, Clone, Debug)]
pub struct RunArgs {
    #[arg(long, value_enum, default_value_t = BackendKind::Cpu)]
    pub backend: BackendKind,
    /// data folder holding mnist/ and denoise/ (default: $NNLAB_DATA, else ../shared/data)
    #[arg(long)]
    pub data: Option<PathBuf>,
}

impl RunArgs {
    pub fn backend(&self) -> Result<Box<dyn Backend>> {
        backend(self.backend)
    }
    pub fn data_dir(&self) -> Result<PathBuf> {
        data_dir(&self.data)
    }
}

/// The backend a `--backend` flag names.
pub fn backend(kind: BackendKind) -> Result<Box<dyn Backend>> {
    Ok(match kind {
        BackendKind::Cpu => Box::new(CpuBackend::new()),
        BackendKind::Gpu => Box::new(GpuBackend::new_blocking(GpuOptions::default())?),
    })
}

/// `--data`, else $NNLAB_DATA, else ../shared/data.
pub fn data_dir(arg: &Option<PathBuf>) -> Result<PathBuf> {
    match arg {
        Some(d) => Ok(d.clone()),
        None => Ok(crate::data::data_dir(&std::env::current_dir()?)),
    }
}

/// The folders shipped models are looked for in, in order: `$NNLAB_MODELS` when set, then
/// `www/models` under the current folder, then the `www/models` of the repository the binary
/// sits in (`<repo>/target/release/nnlab` looks in `<repo>/www/models`), so `--model blind`
/// and the default model paths work from any folder.
pub fn model_dirs() -> Vec<PathBuf> {
    let mut dirs = Vec::new();
    if let Some(d) = std::env::var_os("NNLAB_MODELS").filter(|d| !d.is_empty()) {
        dirs.push(PathBuf::from(d));
    }
    dirs.push(PathBuf::from("www/models"));
    if let Some(repo) = std::env::current_exe()
        .ok()
        .and_then(|exe| Some(exe.parent()?.parent()?.parent()?.to_path_buf()))
    {
        dirs.push(repo.join("www").join("models"));
    }
    dirs
}

/// The file a model argument names. A path that exists is taken as given; a bare file name or
/// a path under `www/models/` (the defaults) that does not is looked for by its file name in
/// [`model_dirs`]. Not found: an error naming the path and every folder looked in.
pub fn model_file(arg: &Path) -> Result<PathBuf> {
    if arg.exists() {
        return Ok(arg.to_path_buf());
    }
    let shipped = arg
        .parent()
        .is_none_or(|p| p.as_os_str().is_empty() || p == Path::new("www/models"));
    let Some(name) = arg.file_name().filter(|_| shipped) else {
        return Err(Error::Io(format!("no model file {}", arg.display())));
    };
    let dirs = model_dirs();
    if let Some(found) = dirs.iter().map(|d| d.join(name)).find(|p| p.is_file()) {
        return Ok(found);
    }
    let looked: Vec<String> = dirs.iter().map(|d| d.display().to_string()).collect();
    Err(Error::Io(format!(
        "no model file {} (looked for {} in {}; set NNLAB_MODELS to the folder of the shipped models, or train one)",
        arg.display(),
        name.to_string_lossy(),
        looked.join(", ")
    )))
}

/// MNIST training digits 10000..60000: the first 10,000 are the page's, and no model the CLI
/// trains ever sees them.
pub fn mnist_train(dir: &Path) -> Result<Mnist> {
    let all = Mnist::load(dir, Split::Train)?;
    all.slice(PAGE_DIGITS..all.len())
}

/// Read a training step's loss back, refusing a diverged (non-finite) one with advice.
pub fn finite_loss(b: &dyn Backend, loss: &Tensor, step: impl std::fmt::Display) -> Result<f32> {
    let l = read_blocking(b, loss)?[0];
    if !l.is_finite() {
        return Err(Error::Invalid(format!(
            "training diverged at step {step} (loss {l}); try a lower --lr"
        )));
    }
    Ok(l)
}

/// Seconds as 1h02m03s / 2m03s for progress lines.
pub fn hms(secs: f64) -> String {
    let s = secs.max(0.0).round() as u64;
    if s >= 3600 {
        format!("{}h{:02}m{:02}s", s / 3600, s / 60 % 60, s % 60)
    } else {
        format!("{}m{:02}s", s / 60, s % 60)
    }
}

/// The command line that is running, for the metadata of the files it writes.
pub fn command_line() -> String {
    std::env::args().collect::<Vec<_>>().join(" ")
}

/// Metadata every weights file a training command writes carries: what the model is, the
/// command that trained it and the backend it ran on. Commands add their own entries.
pub fn metadata(b: &dyn Backend, model: &str) -> HashMap<String, String> {
    HashMap::from([
        ("model".to_string(), model.to_string()),
        ("command".to_string(), command_line()),
        ("backend".to_string(), b.info().describe()),
    ])
}
