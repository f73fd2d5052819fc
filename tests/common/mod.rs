//! Helpers shared by the op tests (`tests/ops/`): the backends, seeded data, host round trips,
//! tolerance checks, finite differences, GPU-vs-CPU comparison, and `backend_test!`, which runs
//! one test body on every backend.
//!
//! No GPU adapter is a test FAILURE with the reason, never a skip: CI installs lavapipe
//! (mesa-vulkan-drivers), and a GPU instance that passed without running would prove nothing.

#![allow(dead_code)]

use std::sync::OnceLock;

use nnlab::backend::{
    conv2d_shapes, conv_transpose2d_shapes, read_blocking, Backend, Conv2dParams,
    ConvTranspose2dParams, Hw,
};
use nnlab::cpu::CpuBackend;
use nnlab::gpu::{GpuBackend, GpuOptions, Policy, Variant};
use nnlab::rng;
use nnlab::{Result, Tensor};

/// `backend_test!(fn name(b) { body })` writes `body` once, with `b: &dyn Backend`, and makes a
/// module `name` holding one `#[test]` per backend: `name::cpu` on `CpuBackend` and `name::gpu`
/// on the default `GpuBackend`. `cargo test --test ops conv2d::` then runs every conv2d check on
/// both; `cargo test --test ops ::cpu` only the CPU instances. Doc comments and attributes
/// before `fn` go on the module. A body that holds only on the CPU (exact host libm values, a
/// CPU kernel's own limits) is a plain `#[test]` that says why.
macro_rules! backend_test {
    ($(#[$meta:meta])* fn $name:ident($b:ident) $body:block) => {
        $(#[$meta])*
        mod $name {
            #[allow(unused_imports)]
            use super::*;

            fn body($b: &dyn nnlab::backend::Backend) $body

            #[test]
            fn cpu() {
                body(&nnlab::cpu::CpuBackend::new())
            }

            #[test]
            fn gpu() {
                body(&$crate::common::gpu())
            }
        }
    };
}

// ---------------------------------------------------------------- backends

/// A GPU backend with these limits, or a failure that says what is missing.
pub fn gpu_with(opts: GpuOptions) -> GpuBackend {
    match GpuBackend::new_blocking(opts) {
        Ok(g) => {
            println!("GPU: {}", g.info().describe());
            g
        }
        Err(e) => panic!(
            "this test needs a GPU adapter (natively: Vulkan, e.g. lavapipe from \
             mesa-vulkan-drivers + libvulkan1); it is never skipped: {e}"
        ),
    }
}

/// The GPU with the adapter's own limits: one device for the whole test binary (a clone is a
/// handle to it), so its compiled pipelines serve every test instead of being rebuilt per test.
pub fn gpu() -> GpuBackend {
    static GPU: OnceLock<GpuBackend> = OnceLock::new();
    GPU.get_or_init(|| gpu_with(GpuOptions::default())).clone()
}

/// The GPU with the adapter's own limits and one kernel variant forced (one device per
/// variant for the whole test binary), for the sweeps that run every variant.
pub fn gpu_variant(v: Variant) -> GpuBackend {
    static GPUS: [OnceLock<GpuBackend>; 2] = [OnceLock::new(), OnceLock::new()];
    let i = Variant::ALL.iter().position(|&x| x == v).unwrap();
    GPUS[i]
        .get_or_init(|| {
            let g = gpu_with(GpuOptions::default());
            g.set_kernel_policy(Policy::Force(v));
            g
        })
        .clone()
}

/// `g` with kernel variant `v` forced (for backends made with their own limits).
pub fn forced(g: GpuBackend, v: Variant) -> GpuBackend {
    g.set_kernel_policy(Policy::Force(v));
    g
}

/// A GPU with 1 MiB storage bindings and 64 workgroups per dimension, so ops on tensors of a
/// few MiB run their chunking and multi-dispatch paths.
pub fn small_gpu() -> GpuBackend {
    let g = gpu_with(GpuOptions {
        max_storage_binding_bytes: Some(1 << 20),
        max_workgroups_per_dim: Some(64),
        ..Default::default()
    });
    assert_eq!(g.max_binding_elems(), 1 << 18);
    g
}

/// A tensor shape of 820_545 floats (3.1 MiB), over `small_gpu`'s binding limit.
pub const SPLIT: [usize; 4] = [3, 5, 227, 241];

/// Upload and read back on any backend (natively, blocking on the GPU's map).
pub trait HostIo {
    /// A tensor of `shape` holding `data`.
    fn t(&self, shape: &[usize], data: &[f32]) -> Tensor;
    /// The tensor's values.
    fn v(&self, x: &Tensor) -> Vec<f32>;
}

impl<B: Backend + ?Sized> HostIo for B {
    fn t(&self, shape: &[usize], data: &[f32]) -> Tensor {
        self.upload(shape, data).unwrap()
    }
    fn v(&self, x: &Tensor) -> Vec<f32> {
        pollster::block_on(self.read(x)).unwrap()
    }
}

// ---------------------------------------------------------------- data

pub fn numel(s: &[usize]) -> usize {
    s.iter().product()
}

pub fn arange(n: usize) -> Vec<f32> {
    (0..n).map(|i| i as f32).collect()
}

/// Uniform in [-1, 1), seeded.
pub fn rnd(n: usize, seed: u64) -> Vec<f32> {
    rng::uniform_vec(n, -1.0, 1.0, seed)
}

/// Uniform in [lo, hi), seeded.
pub fn rnd_in(n: usize, seed: u64, lo: f32, hi: f32) -> Vec<f32> {
    rng::uniform_vec(n, lo, hi, seed)
}

/// Random values in [-1, 1) kept at least `gap` away from zero (so no finite difference
/// straddles a kink).
pub fn rnd_away(n: usize, seed: u64, gap: f32) -> Vec<f32> {
    rnd(n, seed)
        .into_iter()
        .map(|x| {
            if x.abs() < gap {
                x + 2.0 * gap * if x < 0.0 { -1.0 } else { 1.0 }
            } else {
                x
            }
        })
        .collect()
}

/// A small deterministic chooser over the counter RNG (for random shape sweeps).
#[derive(Clone, Copy)]
pub struct Pick {
    pub seed: u64,
    pub i: u32,
}

impl Pick {
    pub fn of<T: Copy>(&mut self, xs: &[T]) -> T {
        self.i += 1;
        xs[(rng::uniform01(self.seed, self.i) * xs.len() as f32) as usize % xs.len()]
    }
    /// A per-axis setting from `xs`: the same value on both axes when `square`, else one each.
    pub fn hw(&mut self, xs: &[usize], square: bool) -> Hw {
        let h = self.of(xs);
        Hw::new(h, if square { h } else { self.of(xs) })
    }
}

// ---------------------------------------------------------------- checks

/// GPU against CPU for elementwise ops and reductions: |gpu - cpu| <= TOL (1 + |cpu|).
pub const TOL: f32 = 1e-5;

/// Assert |got - want| <= tol (1 + |want|) elementwise; print and return the max abs error.
pub fn assert_close(name: &str, got: &[f32], want: &[f32], tol: f32) -> f32 {
    assert_eq!(got.len(), want.len(), "{name}: lengths differ");
    let mut worst = 0.0f32;
    for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
        let e = (g - w).abs();
        assert!(
            e <= tol * (1.0 + w.abs()),
            "{name}: element {i} of {}: got {g}, want {w}",
            got.len()
        );
        worst = worst.max(e);
    }
    println!("{name:<48} n={:<8} max abs err {worst:.3e}", got.len());
    worst
}

/// The finite-difference tolerance: |analytic - numeric| <= FD_TOL (1 + |numeric|) (see ops/main.rs).
pub const FD_TOL: f64 = 2e-3;

/// Central finite differences of sum(gy * f(inputs)) w.r.t. inputs[which], compared with
/// `analytic`; returns (max abs err, max rel err) and asserts `FD_TOL`. Per-output differences
/// are taken first and summed in f64, so cancellation in a large total does not eat precision.
pub fn fd_check(
    name: &str,
    inputs: &[Vec<f32>],
    which: usize,
    gy: &[f32],
    analytic: &[f32],
    eps: f32,
    f: &dyn Fn(&[Vec<f32>]) -> Vec<f32>,
) -> (f64, f64) {
    assert_eq!(
        analytic.len(),
        inputs[which].len(),
        "{name}: gradient has the wrong size"
    );
    let (mut max_abs, mut max_rel) = (0.0f64, 0.0f64);
    let mut xs = inputs.to_vec();
    for i in 0..inputs[which].len() {
        let x0 = inputs[which][i];
        xs[which][i] = x0 + eps;
        let yp = f(&xs);
        xs[which][i] = x0 - eps;
        let ym = f(&xs);
        xs[which][i] = x0;
        let d: f64 = gy
            .iter()
            .zip(yp.iter().zip(&ym))
            .map(|(&g, (&a, &b))| g as f64 * (a as f64 - b as f64))
            .sum::<f64>()
            / (2.0 * eps as f64);
        let a = analytic[i] as f64;
        let err = (a - d).abs();
        assert!(
            err <= FD_TOL * (1.0 + d.abs()),
            "{name}: d/d{which}[{i}]: analytic {a}, finite difference {d}"
        );
        max_abs = max_abs.max(err);
        max_rel = max_rel.max(err / d.abs().max(1e-3));
    }
    println!(
        "{name} (input {which}): {} elements, max abs err {max_abs:.2e}, max rel err {max_rel:.2e}",
        inputs[which].len()
    );
    (max_abs, max_rel)
}

/// Assert `r` is an error whose message contains `what`.
pub fn is_err_with<T: std::fmt::Debug>(r: Result<T>, what: &str) {
    match r {
        Err(e) => {
            let msg = e.to_string();
            assert!(msg.contains(what), "error {msg:?} should mention {what:?}");
        }
        Ok(x) => panic!("expected an error mentioning {what:?}, got Ok({x:?})"),
    }
}

// ---------------------------------------------------------------- GPU against its CPU twin

/// The same data on the GPU and on the CPU.
pub struct Pair {
    pub g: Tensor,
    pub c: Tensor,
}

pub fn pair(g: &GpuBackend, shape: &[usize], data: &[f32]) -> Pair {
    Pair {
        g: g.t(shape, data),
        c: CpuBackend::new().t(shape, data),
    }
}

/// Compare a GPU tensor with a CPU tensor: |gpu - cpu| <= tol (1 + |cpu|) elementwise.
pub fn same(g: &GpuBackend, name: &str, gt: &Tensor, ct: &Tensor, tol: f32) {
    assert_eq!(gt.shape(), ct.shape(), "{name}: shapes differ");
    assert_close(name, &g.v(gt), &CpuBackend::new().v(ct), tol);
}

/// Run `op` on both backends with the same inputs (shape, data); returns (max abs error,
/// max abs reference value). Errors on either side fail the test with the op's name.
pub fn compare(
    g: &GpuBackend,
    what: &str,
    inputs: &[(&[usize], &[f32])],
    op: impl Fn(&dyn Backend, &[Tensor]) -> Result<Tensor>,
) -> (f32, f32) {
    let cpu = CpuBackend::new();
    let run = |be: &dyn Backend| -> Vec<f32> {
        let ts: Vec<Tensor> = inputs.iter().map(|(s, d)| be.t(s, d)).collect();
        let out = op(be, &ts).unwrap_or_else(|e| panic!("{what} on {}: {e}", be.info().kind));
        read_blocking(be, &out).unwrap()
    };
    let (want, got) = (run(&cpu), run(g));
    assert_eq!(want.len(), got.len(), "{what}: output lengths differ");
    let err = want
        .iter()
        .zip(&got)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0f32, f32::max);
    let scale = want.iter().map(|a| a.abs()).fold(0.0f32, f32::max);
    assert!(
        got.iter().all(|v| v.is_finite()),
        "{what}: non-finite GPU output"
    );
    (err, scale)
}

/// For `compare`'s result of f32 sums of `k` terms of size ~1: allow a few ulps of the largest
/// value per sqrt(k).
pub fn check_sum(what: &str, (err, scale): (f32, f32), k: usize, worst: &mut f32) {
    let tol = 2e-6 * (1.0 + scale) * (k as f32).sqrt().max(4.0);
    assert!(
        err <= tol,
        "{what}: max abs error {err:e} > {tol:e} (max |ref| {scale})"
    );
    *worst = worst.max(err);
}

/// A conv of either kind, so that one code path runs its three kernels (forward,
/// backward-input, backward-weight) on both backends.
#[derive(Clone, Copy, Debug)]
pub enum ConvOp {
    Direct(Conv2dParams),
    Transposed(ConvTranspose2dParams),
}

impl ConvOp {
    pub fn name(self) -> &'static str {
        match self {
            ConvOp::Direct(_) => "conv2d",
            ConvOp::Transposed(_) => "conv_transpose2d",
        }
    }
    /// The output shape for input `xs` and weight `ws`, or None where the shape rule refuses.
    pub fn out_shape(self, xs: &[usize], ws: &[usize]) -> Option<[usize; 4]> {
        match self {
            ConvOp::Direct(p) => conv2d_shapes(xs, ws, None, p).ok(),
            ConvOp::Transposed(p) => conv_transpose2d_shapes(xs, ws, None, p).ok(),
        }
    }
    pub fn forward(
        self,
        be: &dyn Backend,
        x: &Tensor,
        w: &Tensor,
        b: Option<&Tensor>,
    ) -> Result<Tensor> {
        match self {
            ConvOp::Direct(p) => be.conv2d(x, w, b, p),
            ConvOp::Transposed(p) => be.conv_transpose2d(x, w, b, p),
        }
    }
    pub fn backward_input(
        self,
        be: &dyn Backend,
        gy: &Tensor,
        w: &Tensor,
        xs: &[usize],
    ) -> Result<Tensor> {
        match self {
            ConvOp::Direct(p) => be.conv2d_backward_input(gy, w, xs, p),
            ConvOp::Transposed(p) => be.conv_transpose2d_backward_input(gy, w, xs, p),
        }
    }
    pub fn backward_weight(
        self,
        be: &dyn Backend,
        x: &Tensor,
        gy: &Tensor,
        ws: &[usize],
    ) -> Result<Tensor> {
        match self {
            ConvOp::Direct(p) => be.conv2d_backward_weight(x, gy, ws, p),
            ConvOp::Transposed(p) => be.conv_transpose2d_backward_weight(x, gy, ws, p),
        }
    }
}

/// `op`'s three backward results (input, weight, bias) against central finite differences of
/// its forward on backend `b`, for x (N, Cin, H, W) and a kh x kw kernel to `cout` channels, all
/// data seeded from `seed` (x, w, b, gy: seed .. seed + 3). Linear in each input: eps 0.1.
pub fn conv_fd_check(
    b: &dyn Backend,
    op: ConvOp,
    [n, cin, cout, h, w]: [usize; 5],
    k: impl Into<Hw>,
    seed: u64,
) {
    let k = k.into();
    let xs = [n, cin, h, w];
    let ws = match op {
        ConvOp::Direct(_) => [cout, cin, k.h, k.w],
        ConvOp::Transposed(_) => [cin, cout, k.h, k.w],
    };
    let inputs = vec![
        rnd(numel(&xs), seed),
        rnd(numel(&ws), seed + 1),
        rnd(cout, seed + 2),
    ];
    let forward = |ins: &[Vec<f32>]| {
        let (x, wt, bias) = (b.t(&xs, &ins[0]), b.t(&ws, &ins[1]), b.t(&[cout], &ins[2]));
        op.forward(b, &x, &wt, Some(&bias)).unwrap()
    };
    let y = forward(&inputs);
    if let ConvOp::Transposed(p) = op {
        // PyTorch's size rule, per axis
        let size = |i: usize, k: usize, f: fn(Hw) -> usize| {
            let (s, d, a, pad) = (
                f(p.stride),
                f(p.dilation),
                f(p.output_padding),
                f(p.padding),
            );
            (i - 1) * s + d * (k - 1) + a + 1 - 2 * pad
        };
        assert_eq!(y.shape()[2], size(h, k.h, |v| v.h));
        assert_eq!(y.shape()[3], size(w, k.w, |v| v.w));
    }
    let gy = rnd(y.numel(), seed + 3);
    let gyt = b.t(y.shape(), &gy);
    let gx = b.v(&op
        .backward_input(b, &gyt, &b.t(&ws, &inputs[1]), &xs)
        .unwrap());
    let gw = b.v(&op
        .backward_weight(b, &b.t(&xs, &inputs[0]), &gyt, &ws)
        .unwrap());
    let gb = b.v(&b.bias_grad(&gyt).unwrap());
    let name = format!("{} n{n} c{cin}->{cout} {h}x{w} k{k} {op:?}", op.name());
    let f = |ins: &[Vec<f32>]| b.v(&forward(ins));
    fd_check(&name, &inputs, 0, &gy, &gx, 0.1, &f);
    fd_check(&name, &inputs, 1, &gy, &gw, 0.1, &f);
    fd_check(&name, &inputs, 2, &gy, &gb, 0.1, &f);
}

/// `op`'s forward (with a bias when `bias`), backward-input and backward-weight on the GPU
/// against the CPU twin, on data seeded from `seed` (x, w, b, gy: seed .. seed + 3). Each is
/// held to `check_sum` for the terms its outputs sum: Cin k k (forward), Cout k k
/// (backward-input), N times the pixels of the direct conv's output (backward-weight).
pub fn conv_matches_cpu(
    g: &GpuBackend,
    op: ConvOp,
    tag: &str,
    (xs, ws): ([usize; 4], [usize; 4]),
    bias: bool,
    seed: u64,
    worst: &mut f32,
) {
    let ys = op
        .out_shape(&xs, &ws)
        .expect("a conv the shape rule accepts");
    let (cin, cout, kk) = (xs[1], ys[1], ws[2] * ws[3]);
    let (x, w, b, gy) = (
        rnd(numel(&xs), seed),
        rnd(numel(&ws), seed + 1),
        rnd(cout, seed + 2),
        rnd(numel(&ys), seed + 3),
    );
    let pixels = match op {
        ConvOp::Direct(_) => ys[2] * ys[3],
        ConvOp::Transposed(_) => xs[2] * xs[3],
    };
    let name = op.name();
    let what = format!("{name} {tag}");
    let r = compare(g, &what, &[(&xs, &x), (&ws, &w), (&[cout], &b)], |be, t| {
        op.forward(be, &t[0], &t[1], bias.then_some(&t[2]))
    });
    check_sum(&what, r, cin * kk, worst);
    let what = format!("{name}_backward_input {tag}");
    let r = compare(g, &what, &[(&ys, &gy), (&ws, &w)], |be, t| {
        op.backward_input(be, &t[0], &t[1], &xs)
    });
    check_sum(&what, r, cout * kk, worst);
    let what = format!("{name}_backward_weight {tag}");
    let r = compare(g, &what, &[(&xs, &x), (&ys, &gy)], |be, t| {
        op.backward_weight(be, &t[0], &t[1], &ws)
    });
    check_sum(&what, r, xs[0] * pixels, worst);
}

/// 60 random convs from `draw` (op, x shape, w shape, bias) through `conv_matches_cpu`, data
/// seeded from `seed` on; draws the shape rule refuses are skipped.
pub fn conv_sweep(
    what: &str,
    pick: Pick,
    seed: u64,
    mut draw: impl FnMut(&mut Pick) -> (ConvOp, [usize; 4], [usize; 4], bool),
) {
    // the same 60 shapes for every variant (each pass starts from the same `pick`)
    for v in Variant::ALL {
        conv_sweep_on(
            &gpu_variant(v),
            &format!("{what} ({})", v.name()),
            pick,
            seed,
            &mut draw,
        );
    }
}

fn conv_sweep_on(
    g: &GpuBackend,
    what: &str,
    mut pick: Pick,
    seed: u64,
    draw: &mut impl FnMut(&mut Pick) -> (ConvOp, [usize; 4], [usize; 4], bool),
) {
    let (mut worst, mut cases) = (0.0f32, 0);
    while cases < 60 {
        let (op, xs, ws, bias) = draw(&mut pick);
        if op.out_shape(&xs, &ws).is_none() {
            continue;
        }
        let tag = format!("x {xs:?} w {ws:?} {op:?} bias {bias}");
        conv_matches_cpu(g, op, &tag, (xs, ws), bias, seed + cases as u64, &mut worst);
        cases += 1;
    }
    println!("{what} fwd/bwd-input/bwd-weight, {cases} random shapes: max abs error {worst:e}");
}

/// Both backends refuse each case with the same words (the shape rules live once, in
/// `backend/`): `case` runs one bad call on the given backend.
pub fn same_refusals(cases: usize, case: impl Fn(&dyn Backend, usize) -> Result<()>) {
    let (g, c) = (gpu(), CpuBackend::new());
    for i in 0..cases {
        let [gm, cm] = [&g as &dyn Backend, &c].map(|be| match case(be, i) {
            Ok(()) => panic!("case {i} ({}) was accepted", be.info().kind),
            Err(e) => e.to_string(),
        });
        assert_eq!(gm, cm, "case {i}: the backends' words differ");
    }
}
