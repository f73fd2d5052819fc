//! The lecture's model families, composed from `nn` layers (their backward is the tape's).

pub mod attack;
pub mod autoencoder;
pub mod classifier;
pub mod dncnn;
pub mod dncnn_fused;
pub mod dncnn_grow;
pub mod gan;
pub mod gan_grow;
pub mod gan_langevin;
pub mod gan_metrics;
pub mod gan_rejection;
pub mod gan_tricks;
pub mod grow_identity;
pub mod pca;
pub mod semi;

pub use classifier::{Classifier, ClassifierConfig};
