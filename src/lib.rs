//! nnlab: tensor ops on two backends (hand-written WGSL through wgpu, and a CPU reference),
//! a reverse-mode autodiff tape over them, layers, optimizers and the lecture's models.
//! The layers, their allowed imports and the conventions: docs/ARCHITECTURE.md; the user's
//! view: README.md.

pub mod autodiff;
pub mod backend;
#[cfg(not(target_arch = "wasm32"))]
pub mod cli;
pub mod cpu;
pub mod data;
pub mod error;
#[cfg(not(target_arch = "wasm32"))]
pub mod files;
pub mod finite;
pub mod gpu;
pub mod kernel_bench;
pub mod metrics;
pub mod models;
pub mod nn;
pub mod rng;
pub mod tensor;
pub mod tiling;
pub mod weights;

#[cfg(target_arch = "wasm32")]
pub mod web;

pub use backend::{Backend, BackendInfo};
pub use error::{Error, Result};
pub use tensor::Tensor;
