//! The CPU backend: the reference every GPU kernel is tested against, the fallback where a
//! browser has no WebGPU, and natively (im2col + the `gemm` crate, rayon threads) a practical
//! trainer on machines without a GPU.

mod ops;

pub mod batchnorm;
pub mod conv;
pub mod elementwise;
pub mod optim;
pub mod random;
pub mod reduce;

use crate::backend::BackendInfo;

#[derive(Clone, Debug, Default)]
pub struct CpuBackend;

impl CpuBackend {
    pub fn new() -> CpuBackend {
        CpuBackend
    }
    pub fn info(&self) -> BackendInfo {
        BackendInfo {
            kind: "cpu",
            adapter: if cfg!(target_arch = "wasm32") { "wasm".into() } else { "native".into() },
            fallback: false,
            max_binding_bytes: u64::MAX,
        }
    }
}
