//! Data sets: the MNIST IDX reader (more readers arrive with the denoising issue).
//!
//! Data lives outside the repository: `NNLAB_DATA` when set, else `../shared/data` relative to
//! a base directory (the crate root for tests, the current directory for the CLI).

pub mod drawing;
pub mod images;
pub mod mnist;
pub mod patches;

use std::path::{Path, PathBuf};

/// The data directory: `$NNLAB_DATA` when set and non-empty, else `base/../shared/data`.
pub fn data_dir(base: &Path) -> PathBuf {
    match std::env::var_os("NNLAB_DATA") {
        Some(d) if !d.is_empty() => PathBuf::from(d),
        _ => base.join("..").join("shared").join("data"),
    }
}
