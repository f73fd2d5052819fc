//! The lecture's model families, composed from `nn` layers (their backward is the tape's).

pub mod classifier;

pub use classifier::{Classifier, ClassifierConfig};
