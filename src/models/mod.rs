//! The lecture's model families, composed from `nn` layers (their backward is the tape's).

#[cfg(not(target_arch = "wasm32"))]
pub mod ae_cli;
pub mod autoencoder;
pub mod classifier;
pub mod dncnn;
#[cfg(not(target_arch = "wasm32"))]
pub mod dncnn_cli;
#[cfg(not(target_arch = "wasm32"))]
pub mod dncnn_figure;
pub mod gan;
#[cfg(not(target_arch = "wasm32"))]
pub mod gan_cli;
pub mod gan_metrics;

pub use classifier::{Classifier, ClassifierConfig};
