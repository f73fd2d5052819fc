//! The kernel table's cases, shared by `nnlab bench` (src/cli/bench.rs) and the page's
//! www/bench.html (src/web/bench.rs): the conv2d forward / backward-input / backward-weight and
//! a matmul at DnCNN-like shapes, a DCGAN generator's transposed conv and dense layer. Each case
//! names its op and shape, counts its FLOPs, and makes its seeded inputs only when prepared (so
//! one case's inputs are alive at a time).

use crate::backend::{Backend, Conv2dParams, ConvTranspose2dParams};
use crate::tensor::Tensor;
use crate::{rng, Result};

/// Batch sizes of the two shape families: `nnlab bench`'s, and the page's `?size=small` (a
/// quick run on a software adapter).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KernelSize {
    Full,
    Small,
}

/// One row of the kernel table, ready to run: `run` enqueues one call and returns its output.
pub struct KernelCase {
    pub op: &'static str,
    pub shape: String,
    pub gflop: f64,
    run: Box<dyn Fn(&dyn Backend) -> Result<Tensor>>,
}

impl KernelCase {
    pub fn run(&self, be: &dyn Backend) -> Result<Tensor> {
        (self.run)(be)
    }
}

/// Number of cases (indices 0..KERNEL_CASES of `kernel_case`).
pub const KERNEL_CASES: usize = 6;

fn rand_tensor(be: &dyn Backend, shape: &[usize], seed: u64) -> Result<Tensor> {
    let n = shape.iter().product();
    be.upload(shape, &rng::uniform_vec(n, -1.0, 1.0, seed))
}

/// Case `i` (0..KERNEL_CASES) with its inputs on `be`; None past the last.
pub fn kernel_case(be: &dyn Backend, i: usize, size: KernelSize) -> Result<Option<KernelCase>> {
    let small = size == KernelSize::Small;
    // DnCNN-like: batch 16 (small: 1), 64 -> 64 channels, 3x3, 64x64, stride 1, padding 1.
    let (n, c, hw, k) = (if small { 1 } else { 16 }, 64, 64, 3);
    let p = Conv2dParams::new(1, 1, 1);
    let conv_gflop = 2.0 * (n * c * hw * hw * c * k * k) as f64 / 1e9;
    let conv_shape = format!("N{n} {c}->{c} {k}x{k} {hw}x{hw}");
    // GAN-like: batch 64 (small: 4), transposed conv 128 -> 64, 7x7 -> 14x14, k4 s2 p1 (DCGAN
    // generator), and the generator's dense layer z (batch x 100) -> 128*7*7.
    let gn = if small { 4 } else { 64 };
    let case = |op, shape, gflop, run: Box<dyn Fn(&dyn Backend) -> Result<Tensor>>| {
        Ok(Some(KernelCase {
            op,
            shape,
            gflop,
            run,
        }))
    };
    match i {
        0 => {
            let x = rand_tensor(be, &[n, c, hw, hw], 1)?;
            let w = rand_tensor(be, &[c, c, k, k], 2)?;
            let run = Box::new(move |be: &dyn Backend| be.conv2d(&x, &w, None, p));
            case("conv2d forward", conv_shape, conv_gflop, run)
        }
        1 => {
            let w = rand_tensor(be, &[c, c, k, k], 2)?;
            let gy = rand_tensor(be, &[n, c, hw, hw], 3)?;
            let xs = [n, c, hw, hw];
            let run = Box::new(move |be: &dyn Backend| be.conv2d_backward_input(&gy, &w, &xs, p));
            case("conv2d backward-input", conv_shape, conv_gflop, run)
        }
        2 => {
            let x = rand_tensor(be, &[n, c, hw, hw], 1)?;
            let gy = rand_tensor(be, &[n, c, hw, hw], 3)?;
            let ws = [c, c, k, k];
            let run = Box::new(move |be: &dyn Backend| be.conv2d_backward_weight(&x, &gy, &ws, p));
            case("conv2d backward-weight", conv_shape, conv_gflop, run)
        }
        3 => {
            // the conv's implicit GEMM: (N*H*W) x (Cin*k*k) times (Cin*k*k) x Cout
            let (m, kk, nn) = (n * hw * hw, c * k * k, c);
            let a = rand_tensor(be, &[m, kk], 4)?;
            let b = rand_tensor(be, &[kk, nn], 5)?;
            let run = Box::new(move |be: &dyn Backend| be.matmul(&a, &b, false, false));
            let gflop = 2.0 * (m * kk * nn) as f64 / 1e9;
            case("matmul", format!("{m}x{kk} . {kk}x{nn}"), gflop, run)
        }
        4 => {
            let (ci, co, hw, k) = (128, 64, 7, 4);
            let pt = ConvTranspose2dParams::new(2, 1, 0, 1);
            let x = rand_tensor(be, &[gn, ci, hw, hw], 6)?;
            let w = rand_tensor(be, &[ci, co, k, k], 7)?;
            let gflop = 2.0 * (gn * ci * hw * hw * co * k * k) as f64 / 1e9;
            let shape = format!("N{gn} {ci}->{co} {k}x{k} s2 {hw}x{hw}->14x14");
            let run = Box::new(move |be: &dyn Backend| be.conv_transpose2d(&x, &w, None, pt));
            case("conv_transpose2d forward", shape, gflop, run)
        }
        5 => {
            let (m, kk, nn) = (gn, 100, 128 * 7 * 7);
            let a = rand_tensor(be, &[m, kk], 8)?;
            let b = rand_tensor(be, &[nn, kk], 9)?;
            let run = Box::new(move |be: &dyn Backend| be.matmul(&a, &b, false, true));
            let gflop = 2.0 * (m * kk * nn) as f64 / 1e9;
            case(
                "matmul (x W^T)",
                format!("{m}x{kk} . ({nn}x{kk})^T"),
                gflop,
                run,
            )
        }
        _ => Ok(None),
    }
}

/// FP32 peak (TFLOP/s) of some GPUs, matched on the adapter's name (lower case, first match);
/// None when unknown. Public spec-sheet figures (boost clock, FMA = 2 FLOPs).
pub fn fp32_peak_tflops(adapter: &str) -> Option<f64> {
    let a = adapter.to_lowercase();
    let table: [(&str, f64); 8] = [
        ("h200", 66.9),
        ("h100 pcie", 51.2),
        ("h100", 66.9),
        ("a100", 19.5),
        ("l40s", 91.6),
        ("a10g", 31.2),
        ("rtx 4090", 82.6),
        ("t4", 8.1),
    ];
    table.iter().find(|(k, _)| a.contains(k)).map(|(_, v)| *v)
}
