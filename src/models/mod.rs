//! The lecture's model families, composed from `nn` layers (their backward is the tape's).

pub mod classifier;
pub mod dncnn;
#[cfg(not(target_arch = "wasm32"))]
pub mod dncnn_cli;

pub use classifier::{Classifier, ClassifierConfig};
