//! The GPU backend: a wgpu device (WebGPU in the browser, Vulkan natively), a buffer pool, a
//! pipeline cache and one launcher that every op family uses (`launch`). The op families
//! live in their own files next to their shader in `shaders/`.
//!
//! Conventions every shader follows (see shaders/prelude.wgsl):
//! - group 0, binding 0 is a uniform `Params` struct whose first field is `wg_base: u32`;
//!   storage buffers follow at bindings 1, 2, ... in the order given to `launch`.
//! - the launcher gets a *linear* workgroup count; it spreads it over x and y (each at most
//!   maxComputeWorkgroupsPerDimension) and, past x*y, splits it into several dispatches with
//!   `wg_base` set to the first workgroup of each. The shader's workgroup number is
//!   `wg_base + wid.x + wid.y * nwg.x` (`prelude.wgsl`), so no launch is silently truncated.

mod context;
mod ops;
mod pool;

pub mod batchnorm;
pub mod conv;
pub mod elementwise;
pub mod optim;
pub mod random;
pub mod reduce;
pub mod tuner;

pub use context::{GpuBackend, GpuOptions, Params};
pub use pool::GpuBuffer;
pub use tuner::{Policy, Variant};
