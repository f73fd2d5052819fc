//! matmul (dense layers) with every transpose: values against an f64 loop and the backward the
//! tape uses against finite differences, bad input; on the GPU, a random sweep of shapes (vec4
//! and scalar kernels) against the CPU twin, the splitting paths and many dispatches.

use crate::common::*;
use nnlab::gpu::{GpuBackend, GpuOptions, Policy, Variant};

// ---------------------------------------------------------------- every backend

backend_test! {
    fn matmul_all_transposes_match_finite_differences(b) {
        let (m, k, n) = (5, 7, 3);
        for (ta, tb) in [(false, false), (true, false), (false, true), (true, true)] {
            let sa = if ta { [k, m] } else { [m, k] };
            let sb = if tb { [n, k] } else { [k, n] };
            let inputs = vec![rnd(m * k, 1), rnd(k * n, 2)];
            let f = |ins: &[Vec<f32>]| {
                b.v(&b.matmul(&b.t(&sa, &ins[0]), &b.t(&sb, &ins[1]), ta, tb)
                    .unwrap())
            };
            let y = f(&inputs);
            // reference product by hand loops, in f64
            let at = |i: usize, l: usize| if ta { inputs[0][l * m + i] } else { inputs[0][i * k + l] } as f64;
            let bt = |l: usize, j: usize| if tb { inputs[1][j * k + l] } else { inputs[1][l * n + j] } as f64;
            let want: Vec<f32> = (0..m * n)
                .map(|e| (0..k).map(|l| at(e / n, l) * bt(l, e % n)).sum::<f64>() as f32)
                .collect();
            assert_close(&format!("matmul ta={ta} tb={tb}"), &y, &want, 1e-5);
            // the tape's backward: ga = gy op(b)^T (in a's storage layout), gb = op(a)^T gy
            let gy = rnd(m * n, 3);
            let gyt = b.t(&[m, n], &gy);
            let (at_, bt_) = (b.t(&sa, &inputs[0]), b.t(&sb, &inputs[1]));
            let ga = if ta {
                b.matmul(&bt_, &gyt, tb, true)
            } else {
                b.matmul(&gyt, &bt_, false, !tb)
            }
            .unwrap();
            let gb = if tb {
                b.matmul(&gyt, &at_, true, ta)
            } else {
                b.matmul(&at_, &gyt, !ta, false)
            }
            .unwrap();
            assert_eq!(ga.shape(), &sa);
            assert_eq!(gb.shape(), &sb);
            let name = format!("matmul ta={ta} tb={tb}");
            fd_check(&name, &inputs, 0, &gy, &b.v(&ga), 0.1, &f);
            fd_check(&name, &inputs, 1, &gy, &b.v(&gb), 0.1, &f);
        }
    }
}

backend_test! {
    /// Shapes of the CPU's few-rows path (`cpu/gemm_small.rs`, m or k 8..=128 and the other
    /// up to 1024: a dense layer's batch, or the sum of its weight gradient): row tiles of 14
    /// and their remainders, blocks of 32 columns and a partial last one, k with and without
    /// a remainder of 16, a long sum (the dense GAN's 784-input layer) and many rows (its
    /// weight gradient), every transpose, against an f64 loop.
    fn matmul_few_rows_every_transpose_match_f64(b) {
        for (i, [m, k, n]) in [
            [64, 100, 6272 / 8],
            [8, 8, 32],
            [13, 17, 47],
            [127, 128, 100],
            [30, 64, 65],
            [64, 784, 70],
            [517, 64, 33],
        ]
            .into_iter()
            .enumerate()
        {
            for (ta, tb) in [(false, false), (true, false), (false, true), (true, true)] {
                let sa = if ta { [k, m] } else { [m, k] };
                let sb = if tb { [n, k] } else { [k, n] };
                let (a, bm) = (rnd(m * k, 40 + i as u64), rnd(k * n, 50 + i as u64));
                let y = b.v(&b.matmul(&b.t(&sa, &a), &b.t(&sb, &bm), ta, tb).unwrap());
                let at = |r: usize, l: usize| if ta { a[l * m + r] } else { a[r * k + l] } as f64;
                let bt = |l: usize, j: usize| if tb { bm[j * k + l] } else { bm[l * n + j] } as f64;
                let want: Vec<f32> = (0..m * n)
                    .map(|e| (0..k).map(|l| at(e / n, l) * bt(l, e % n)).sum::<f64>() as f32)
                    .collect();
                // f32 rounding of a k-long sum grows with k (its bound: k eps sum |a b|)
                let tol = 1e-5 * (k as f32 / 128.0).max(1.0);
                assert_close(&format!("matmul {m}x{k}x{n} ta={ta} tb={tb}"), &y, &want, tol);
            }
        }
    }
}

backend_test! {
    fn bad_input_is_an_error(b) {
        is_err_with(
            b.matmul(
                &b.t(&[2, 3], &rnd(6, 1)),
                &b.t(&[2, 3], &rnd(6, 1)),
                false,
                false,
            ),
            "inner",
        );
        is_err_with(
            b.matmul(&b.t(&[6], &rnd(6, 1)), &b.t(&[6, 1], &rnd(6, 1)), false, false),
            "rank 2",
        );
    }

}

// ---------------------------------------------------------------- the GPU against its CPU twin

/// op(a) (m, k) times op(b) (k, n) on the GPU against the CPU twin, a and b seeded; each output
/// sums k terms (`check_sum`).
fn matmul_matches_cpu(
    g: &GpuBackend,
    [m, k, n]: [usize; 3],
    (ta, tb): (bool, bool),
    (seed_a, seed_b): (u64, u64),
    worst: &mut f32,
) {
    let sa = if ta { [k, m] } else { [m, k] };
    let sb = if tb { [n, k] } else { [k, n] };
    let (a, b) = (rnd(m * k, seed_a), rnd(k * n, seed_b));
    let what = format!(
        "matmul {sa:?}{} x {sb:?}{}",
        if ta { "^T" } else { "" },
        if tb { "^T" } else { "" }
    );
    let r = compare(g, &what, &[(&sa, &a), (&sb, &b)], |be, t| {
        be.matmul(&t[0], &t[1], ta, tb)
    });
    check_sum(&what, r, k, worst);
}

#[test]
fn gpu_matches_cpu_on_random_shapes_and_transposes() {
    // every kernel variant, on the same shapes
    for v in Variant::ALL {
        let g = gpu_variant(v);
        let mut pick = Pick { seed: 13, i: 0 };
        let mut worst = 0.0f32;
        // sizes that are multiples of 4 take the vec4 kernels, the others the scalar ones;
        // sizes past 64 span several tiles of the tiled kernels (edge tiles and interior ones)
        for case in 0..32u64 {
            let mkn = [
                pick.of(&[1, 3, 4, 17, 36, 70, 132]),
                pick.of(&[1, 2, 8, 9, 31, 64, 77]),
                pick.of(&[1, 5, 32, 47, 100, 136]),
            ];
            let trans = (case % 2 == 1, (case / 2) % 2 == 1);
            matmul_matches_cpu(&g, mkn, trans, (900 + case, 950 + case), &mut worst);
        }
        // every vec4 entry (one per operand layout) on whole tiles and on edge tiles with a
        // partial K-slice, and a scalar case past one tile each way
        for (i, mkn) in [[64, 64, 64], [132, 100, 72], [65, 33, 130]]
            .into_iter()
            .enumerate()
        {
            for (t, trans) in [(false, false), (true, false), (false, true), (true, true)]
                .into_iter()
                .enumerate()
            {
                let seed = 990 + 4 * i as u64 + t as u64;
                matmul_matches_cpu(&g, mkn, trans, (seed, seed + 50), &mut worst);
            }
        }
        println!(
            "matmul ({}), 32 random shapes x transposes: max abs error {worst:e}",
            v.name()
        );
    }
}

#[test]
fn gpu_splits_under_low_limits() {
    // 1 MiB per binding, 64 workgroups per dim: operands of 2-3 MiB, every transpose combination
    for v in Variant::ALL {
        let g = forced(small_gpu(), v);
        let mut worst = 0.0f32;
        for trans in [(false, false), (true, false), (false, true), (true, true)] {
            matmul_matches_cpu(&g, [600, 900, 700], trans, (10, 11), &mut worst);
        }
        println!(
            "matmul ({}) split under a 1 MiB binding limit: max abs error {worst:e}",
            v.name()
        );
    }
}

#[test]
fn gpu_many_dispatches_when_workgroups_per_dim_is_tiny() {
    // 4 workgroups per dimension = 16 per dispatch: every launch below is split by wg_base
    for v in Variant::ALL {
        let g = forced(
            gpu_with(GpuOptions {
                max_storage_binding_bytes: None,
                max_workgroups_per_dim: Some(4),
                ..Default::default()
            }),
            v,
        );
        let mut worst = 0.0f32;
        matmul_matches_cpu(&g, [130, 70, 150], (false, false), (23, 24), &mut worst);
        // the vec4 kernels
        matmul_matches_cpu(&g, [132, 72, 160], (true, true), (25, 26), &mut worst);
        println!(
            "matmul ({}) launches split over many dispatches: max abs error {worst:e}",
            v.name()
        );
    }
}

#[test]
fn gpu_tuner_picks_a_variant_per_class_and_keeps_the_results() {
    // auto: the first op of a class times every variant and keeps the winner; the result is
    // the winner's, so it matches the CPU like any forced variant's
    let g = gpu_with(GpuOptions::default());
    g.set_kernel_policy(Policy::Auto);
    let mut worst = 0.0f32;
    matmul_matches_cpu(&g, [96, 80, 72], (false, false), (31, 32), &mut worst);
    matmul_matches_cpu(&g, [33, 65, 17], (true, false), (33, 34), &mut worst);
    let table = g.tuner().to_json();
    assert_eq!(table.matches(':').count(), 2, "two classes tuned: {table}");
    // a class met again runs its winner without tuning (same table)
    matmul_matches_cpu(&g, [100, 84, 76], (false, false), (35, 36), &mut worst);
    assert_eq!(g.tuner().to_json(), table);
    // the table survives an export and import (the page keeps it per adapter)
    let h = gpu_with(GpuOptions::default());
    assert_eq!(h.tuner().load_json(&table).unwrap(), 2);
    assert_eq!(h.tuner().to_json(), table);
    println!("matmul tuned classes: {table}; max abs error {worst:e}");
}
