//! Every op of `Backend`, one module per op family, each holding all of that op's checks:
//!
//! * on every backend (`backend_test!`: one body, a `cpu` and a `gpu` instance): values worked
//!   out by hand on arange-filled inputs, the backward against central finite differences of the
//!   backend's own forward, bad input refused with an `Error` (no panic);
//! * GPU against its CPU twin (`gpu_*`): random or odd-shaped sweeps of every variant, then the
//!   same ops under artificially low device limits (1 MiB storage binding, 64 or 4 workgroups
//!   per dimension) so the chunking and multi-dispatch paths run, and the refusals word for word.
//!
//! `cargo test --release --test ops conv2d::` runs every conv2d check; `-- ::cpu` only the CPU
//! instances. No GPU adapter is a failure with the reason (CI installs lavapipe), never a skip.
//! Run with --nocapture for the measured maxima.
//!
//! Finite differences: for input element i, D_i = sum_j gy_j (y_j(x + eps e_i) - y_j(x - eps e_i)) / (2 eps),
//! the per-output differences taken first and the sum accumulated in f64 (so cancellation in a
//! large total does not eat the precision). Error budget, for gradients of size O(1..10):
//! * rounding: each f32 output carries ~6e-8 |y| error, so D_i errs by about
//!   sqrt(#outputs touched) * 6e-8 * |y| * |gy| / eps: ~3e-5 with eps = 0.1 (used for linear
//!   ops, where central differences have no truncation error at all) and ~3e-4 worst case with
//!   eps = 1e-2 (nonlinear ops);
//! * truncation (nonlinear ops): eps^2 / 6 * |f'''| ~ 2e-5 for the smooth functions used here;
//!   inputs are kept >= 0.05 away from kinks (relu, abs, l1, clamp) so no difference straddles one.
//!
//! The tolerance |analytic - numeric| <= 2e-3 (1 + |numeric|) sits well above that budget and far
//! below the O(0.1..1) errors an indexing or sign bug produces.
//!
//! GPU against CPU: elementwise ops compare within 1e-5 (1 + |cpu|) (the GPU's exp/log/tanh are
//! not the host libm's); reductions within 1e-5 (1 + |cpu|) too — the CPU sums in f64, the GPU
//! in f32 trees whose relative error grows like log2(n) * 6e-8. Convolutions and matmul allow a
//! few ulps of the largest value per sqrt(terms summed) (`check_sum`).

#![allow(clippy::too_many_arguments, clippy::excessive_precision)]

#[macro_use]
#[path = "../common/mod.rs"]
mod common;

mod batchnorm;
mod conv2d;
mod conv_reference;
mod conv_transpose2d;
mod elementwise;
mod loss;
mod matmul;
mod memory;
mod optim;
mod random;
mod reduce;
mod speed;
