//! Counter-based random numbers: element i depends only on (seed, i); the CPU draws the host
//! stream of src/rng.rs exactly, bad input is refused on every backend; on the GPU, uniform and
//! normal draws against the CPU twin and the host stream, and the splitting paths.

use crate::common::*;
use nnlab::backend::*;
use nnlab::cpu::CpuBackend;
use nnlab::rng;

/// The CPU draws exactly the host stream of src/rng.rs, uniform and normal (the GPU's normal
/// differs from the host libm's log/cos by up to 1e-5: `gpu_matches_cpu` bounds that).
#[test]
fn cpu_draws_the_host_counter_stream() {
    let b = nnlab::cpu::CpuBackend::new();
    let u = b.v(&b
        .random(&[10, 7], Distribution::Uniform { lo: -2.0, hi: 3.0 }, 42)
        .unwrap());
    assert_eq!(u, rng::uniform_vec(70, -2.0, 3.0, 42));
    assert!(u.iter().all(|&x| (-2.0..3.0).contains(&x)));
    let g = b.v(&b
        .random(
            &[200_000],
            Distribution::Normal {
                mean: 1.0,
                std: 2.0,
            },
            7,
        )
        .unwrap());
    assert_eq!(&g[..100], &rng::normal_vec(100, 1.0, 2.0, 7)[..]);
    assert_eq!(g[150_000], 1.0 + 2.0 * rng::normal(7, 150_000)); // past the first parallel chunk
    let m = g.iter().map(|&x| x as f64).sum::<f64>() / g.len() as f64;
    let var = g.iter().map(|&x| (x as f64 - m).powi(2)).sum::<f64>() / g.len() as f64;
    assert!(
        (m - 1.0).abs() < 0.02 && (var - 4.0).abs() < 0.05,
        "mean {m} var {var}"
    );
    assert_ne!(
        b.v(&b
            .random(&[8], Distribution::Uniform { lo: 0.0, hi: 1.0 }, 1)
            .unwrap()),
        b.v(&b
            .random(&[8], Distribution::Uniform { lo: 0.0, hi: 1.0 }, 2)
            .unwrap())
    );
}

backend_test! {
    /// No elements, lo > hi and a negative std are refused.
    fn bad_input_is_an_error(b) {
        is_err_with(
            b.random(&[0], Distribution::Uniform { lo: 0.0, hi: 1.0 }, 1),
            "no elements",
        );
        is_err_with(
            b.random(&[3], Distribution::Uniform { lo: 1.0, hi: 0.0 }, 1),
            "lo <= hi",
        );
        is_err_with(
            b.random(
                &[3],
                Distribution::Normal {
                    mean: 0.0,
                    std: -1.0,
                },
                1,
            ),
            "std",
        );
        assert!(b
            .random(&[0, 3], Distribution::Uniform { lo: 0.0, hi: 1.0 }, 1)
            .is_err());
    }
}

// ---------------------------------------------------------------- the GPU against its CPU twin

#[test]
fn gpu_matches_cpu() {
    let g = gpu();
    let cpu = CpuBackend::new();
    for (shape, seed) in [
        (vec![1usize], 0u64),
        (vec![3, 5, 7], 1),
        (vec![2, 1000], 42),
        (vec![300, 301], (7 << 32) | 9),
    ] {
        let u = Distribution::Uniform { lo: -0.5, hi: 2.0 };
        let (gu, cu) = (
            g.random(&shape, u, seed).unwrap(),
            cpu.random(&shape, u, seed).unwrap(),
        );
        assert_close(
            &format!("random uniform {shape:?} seed {seed}"),
            &g.v(&gu),
            &CpuBackend::new().v(&cu),
            0.0,
        );
        // standard normal: within 1e-5 absolute (the GPU's log/cos are not the host libm's)
        let nd = Distribution::Normal {
            mean: 0.0,
            std: 1.0,
        };
        let (gn, cn) = (
            g.v(&g.random(&shape, nd, seed).unwrap()),
            CpuBackend::new().v(&cpu.random(&shape, nd, seed).unwrap()),
        );
        let worst = gn
            .iter()
            .zip(&cn)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0f32, f32::max);
        println!("random normal {shape:?} seed {seed}: max abs err {worst:.3e}");
        assert!(
            worst <= 1e-5,
            "random normal {shape:?}: GPU and CPU differ by {worst}"
        );
        let nd = Distribution::Normal {
            mean: 0.5,
            std: 2.0,
        };
        let (gn, cn) = (
            g.random(&shape, nd, seed).unwrap(),
            cpu.random(&shape, nd, seed).unwrap(),
        );
        assert_close(
            &format!("random normal(0.5, 2) {shape:?} seed {seed}"),
            &g.v(&gn),
            &CpuBackend::new().v(&cn),
            1e-5,
        );
        // and the host stream of src/rng.rs
        let host = rng::uniform_vec(numel(&shape), -0.5, 2.0, seed);
        assert_close(
            &format!("random uniform vs rng::uniform_vec {shape:?}"),
            &g.v(&gu),
            &host,
            0.0,
        );
    }
}

/// With a 1 MiB binding limit and 64 workgroups per dimension, ops on tensors of a few MiB
/// split into chunks and dispatches and still give the CPU result.
#[test]
fn gpu_splits_under_low_limits() {
    let (g, n) = (small_gpu(), numel(&SPLIT));
    let u = Distribution::Uniform { lo: 0.0, hi: 1.0 };
    assert_close(
        "split random uniform",
        &g.v(&g.random(&[n], u, 5).unwrap()),
        &rng::uniform_vec(n, 0.0, 1.0, 5),
        0.0,
    );
}
