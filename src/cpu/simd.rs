//! Vectorised building blocks of the CPU's element-wise, BatchNorm and bias passes.
//!
//! `wide!(expr)` evaluates `expr` compiled for AVX-512 (or AVX2 + FMA) when this CPU has it,
//! detected at run time, else as the baseline build (SSE2 natively, simd128 on wasm when the
//! build enables it). `expr`'s loops are plain Rust that the compiler vectorises: the macro
//! puts one copy of the expression in a closure inlined into a function with the wider target
//! features (one copy per tier, so each is inlined at its only call site), and the same
//! source gives 16- or 8-wide code. No float operation is fused or reordered by the width (no
//! `mul_add`), so every tier gives the same bits.
//!
//! The math here (exp, tanh, sigmoid) is written branch-free so that it vectorises; it is
//! accurate to a few units in the last place (the tests below check it against f64).

/// The widest vector instructions this CPU has, of those `wide!` compiles for.
#[derive(Clone, Copy, PartialEq, Eq)]
#[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
pub(crate) enum Tier {
    Avx512,
    Avx2,
    Base,
}

/// The widest tier this CPU has, lowered to `NNLAB_CPU_TIER` (`avx2` or `base`) when that is
/// set: the tests run every kernel's narrower paths on a CPU that has the wider ones, as a
/// CPU without AVX-512 would. Read once per process.
#[inline(always)]
pub(crate) fn tier() -> Tier {
    static TIER: std::sync::OnceLock<Tier> = std::sync::OnceLock::new();
    *TIER.get_or_init(|| {
        let found = detected_tier();
        match std::env::var("NNLAB_CPU_TIER").as_deref() {
            Err(_) | Ok("") | Ok("avx512") => found,
            Ok("avx2") if found == Tier::Avx512 => Tier::Avx2,
            Ok("avx2") => found,
            Ok("base") => Tier::Base,
            Ok(other) => {
                eprintln!("NNLAB_CPU_TIER={other:?} ignored (avx512, avx2 or base)");
                found
            }
        }
    })
}

fn detected_tier() -> Tier {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx512f") {
            return Tier::Avx512;
        }
        if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma")
        {
            return Tier::Avx2;
        }
    }
    Tier::Base
}

/// Evaluate the expression compiled for the widest vectors this CPU has (see the module doc).
/// It should call only `#[inline(always)]` helpers, so that all of it is in the wide copy.
macro_rules! wide {
    ($body:expr) => {{
        match $crate::cpu::simd::tier() {
            #[cfg(target_arch = "x86_64")]
            // SAFETY: tier() saw AVX-512F on this CPU.
            $crate::cpu::simd::Tier::Avx512 => unsafe { $crate::cpu::simd::on_avx512(|| $body) },
            #[cfg(target_arch = "x86_64")]
            // SAFETY: tier() saw AVX2 and FMA on this CPU.
            $crate::cpu::simd::Tier::Avx2 => unsafe { $crate::cpu::simd::on_avx2(|| $body) },
            _ => $body,
        }
    }};
}
pub(crate) use wide;

/// # Safety
/// The CPU must have AVX-512F/VL/DQ, AVX2 and FMA.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512vl,avx512dq,avx2,fma")]
#[inline]
pub(crate) unsafe fn on_avx512<R>(f: impl FnOnce() -> R) -> R {
    f()
}

/// # Safety
/// The CPU must have AVX2 and FMA.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
#[inline]
pub(crate) unsafe fn on_avx2<R>(f: impl FnOnce() -> R) -> R {
    f()
}

/// Lanes of the f64 accumulators in `sum_f64` and friends: one AVX-512 register pair.
const LANES: usize = 16;

/// Sum of term(x[i], g[i]) in f64 over the whole chunks of LANES values of xs and gs (the
/// caller adds the rest), in LANES independent accumulators so that it vectorises. Summing in
/// f64 keeps the CPU the accurate reference.
#[inline(always)]
#[allow(clippy::needless_range_loop)] // the lanes are indexed on purpose: LLVM maps them to vector lanes
fn lanes(xs: &[f32], gs: &[f32], term: impl Fn(f32, f32) -> f64) -> f64 {
    let mut acc = [0.0f64; LANES];
    for i in 0..xs.len().min(gs.len()) / LANES {
        let xb: &[f32; LANES] = xs[i * LANES..][..LANES].try_into().unwrap();
        let gb: &[f32; LANES] = gs[i * LANES..][..LANES].try_into().unwrap();
        for l in 0..LANES {
            acc[l] += term(xb[l], gb[l]);
        }
    }
    acc.iter().sum()
}

/// Values per block of `two_sums`: both slices' blocks stay in L1 between its two passes.
const BLOCK: usize = 2048;

/// (sum of term(x, g)[0], sum of term(x, g)[1]) in f64 over the common length of xs and gs.
/// Each block is summed once per sum (`lanes`), the second pass reading it from L1: LLVM
/// vectorises a loop of one accumulator array, but with both in one loop it paired the two
/// sums in 2-wide vectors, one value at a time (BatchNorm's statistics then ran at a quarter
/// of the memory's speed).
#[inline(always)]
fn two_sums(xs: &[f32], gs: &[f32], term: impl Fn(f32, f32) -> [f64; 2]) -> (f64, f64) {
    let n = xs.len().min(gs.len());
    let full = n / LANES * LANES;
    let (mut s0, mut s1) = (0.0, 0.0);
    for start in (0..full).step_by(BLOCK) {
        let end = (start + BLOCK).min(full);
        let (xb, gb) = (&xs[start..end], &gs[start..end]);
        s0 += lanes(xb, gb, |x, g| term(x, g)[0]);
        s1 += lanes(xb, gb, |x, g| term(x, g)[1]);
    }
    for (&x, &g) in xs[full..n].iter().zip(&gs[full..n]) {
        let [t0, t1] = term(x, g);
        s0 += t0;
        s1 += t1;
    }
    (s0, s1)
}

/// Sum of xs in f64.
#[inline(always)]
pub(crate) fn sum_f64(xs: &[f32]) -> f64 {
    let full = xs.len() / LANES * LANES;
    let rest: f64 = xs[full..].iter().map(|&x| x as f64).sum();
    lanes(xs, xs, |x, _| x as f64) + rest
}

/// (sum of (x - shift), sum of (x - shift)^2) in f64: BatchNorm's statistics in one pass (the
/// shift, a value near the mean, keeps the variance E[d^2] - E[d]^2 free of cancellation).
#[inline(always)]
pub(crate) fn shifted_moments(xs: &[f32], shift: f64) -> (f64, f64) {
    two_sums(xs, xs, |x, _| {
        let d = x as f64 - shift;
        [d, d * d]
    })
}

/// (sum of g, sum of g (x - mean)) in f64 over the values whose x `keep` accepts (g taken as 0
/// elsewhere: a ReLU's mask after BatchNorm): BatchNorm backward's two reductions in one pass.
#[inline(always)]
pub(crate) fn grad_moments_where(
    xs: &[f32],
    gs: &[f32],
    mean: f32,
    keep: impl Fn(f32) -> bool,
) -> (f64, f64) {
    two_sums(xs, gs, |x, g| {
        // (the select in f32, where it is one masked move per vector)
        let g = if keep(x) { g } else { 0.0 } as f64;
        [g, g * (x - mean) as f64]
    })
}

const LOG2E: f32 = std::f32::consts::LOG2_E;
/// ln 2 split in a part exact in f32 times small integers, and the rest.
const LN2_HI: f32 = 0.693_145_75;
const LN2_LO: f32 = 1.428_606_8e-6;

/// e^x, branch-free: x = n ln2 + r with |r| <= ln2 / 2, e^r by its Taylor series to degree 7
/// (error below 2.5e-9), times 2^n put straight into the exponent bits. Below -87 (where e^x
/// is subnormal) it gives 0, above 88.7 infinity.
#[inline(always)]
pub(crate) fn exp(x0: f32) -> f32 {
    let x = x0.clamp(-87.0, 88.0);
    // round to nearest by the 1.5 * 2^23 trick (vectorises where f32::round does not)
    const SHIFTER: f32 = 12_582_912.0;
    let n = (x * LOG2E + SHIFTER) - SHIFTER;
    let r = (x - n * LN2_HI) - n * LN2_LO;
    let p = 1.0 / 5040.0;
    let p = p * r + 1.0 / 720.0;
    let p = p * r + 1.0 / 120.0;
    let p = p * r + 1.0 / 24.0;
    let p = p * r + 1.0 / 6.0;
    let p = p * r + 0.5;
    let p = p * r + 1.0;
    let p = p * r + 1.0;
    let scale = f32::from_bits(((n as i32 + 127) as u32) << 23);
    let y = p * scale;
    let y = if x0 < -87.0 { 0.0 } else { y };
    if x0 > 88.7 {
        f32::INFINITY
    } else {
        y
    }
}

/// tanh(x): for |x| < 0.625 an odd polynomial (fitted here by least squares on Chebyshev nodes,
/// < 1 ulp), above that 1 - 2 / (e^(2|x|) + 1) with the sign of x.
#[inline(always)]
pub(crate) fn tanh(x: f32) -> f32 {
    let a = x.abs();
    let z = x * x;
    let p = -0.006_104_925f32;
    let p = p * z + 0.021_003_62;
    let p = p * z - 0.053_852_49;
    let p = p * z + 0.133_327_83;
    let p = p * z - 0.333_333_28;
    let small = x + x * z * p;
    let big = 1.0 - 2.0 / (exp(2.0 * a) + 1.0);
    let big = if x < 0.0 { -big } else { big };
    if a < 0.625 {
        small
    } else {
        big
    }
}

/// The logistic function 1 / (1 + e^-x), accurate at both tails: with e = e^-|x|, 1 / (1 + e)
/// for x >= 0 and e / (1 + e) below.
#[inline(always)]
pub(crate) fn sigmoid(x: f32) -> f32 {
    let e = exp(-x.abs());
    let r = 1.0 / (1.0 + e);
    if x >= 0.0 {
        r
    } else {
        e * r
    }
}

#[cfg(test)]
mod tests {
    /// Largest error in units of the last place of f32 over a sweep of x, against f64.
    fn max_ulp(f: impl Fn(f32) -> f32, g: impl Fn(f64) -> f64, lo: f32, hi: f32) -> f64 {
        let steps = 200_000;
        let mut worst = 0.0f64;
        for i in 0..=steps {
            let x = lo + (hi - lo) * i as f32 / steps as f32;
            let (y, r) = (f(x) as f64, g(x as f64));
            let ulp = ((r as f32).abs().max(f32::MIN_POSITIVE) * f32::EPSILON) as f64;
            worst = worst.max((y - r).abs() / ulp);
        }
        worst
    }

    #[test]
    fn exp_tanh_sigmoid_within_a_few_ulp() {
        let e = max_ulp(super::exp, f64::exp, -87.0, 88.0);
        assert!(e <= 2.0, "exp: {e} ulp");
        let t = max_ulp(super::tanh, f64::tanh, -10.0, 10.0);
        assert!(t <= 4.0, "tanh: {t} ulp");
        let s = max_ulp(super::sigmoid, |x| 1.0 / (1.0 + (-x).exp()), -80.0, 80.0);
        assert!(s <= 4.0, "sigmoid: {s} ulp");
        let (inf, nan) = (f32::INFINITY, f32::NAN);
        assert_eq!(super::exp(-200.0), 0.0);
        assert_eq!(super::exp(100.0), inf);
        assert_eq!((super::tanh(inf), super::tanh(-inf)), (1.0, -1.0));
        assert_eq!((super::sigmoid(-200.0), super::sigmoid(200.0)), (0.0, 1.0));
        assert!(
            super::exp(nan).is_nan() && super::tanh(nan).is_nan() && super::sigmoid(nan).is_nan()
        );
    }

    #[test]
    fn lane_sums_match_sequential_f64() {
        let xs: Vec<f32> = (0..1037)
            .map(|i| ((i * 37 % 101) as f32 - 50.0) * 0.37)
            .collect();
        let gs: Vec<f32> = (0..1037)
            .map(|i| ((i * 13 % 29) as f32 - 14.0) * 0.11)
            .collect();
        let seq: f64 = xs.iter().map(|&v| v as f64).sum();
        assert!((super::sum_f64(&xs) - seq).abs() < 1e-9);
        let (s1, s2) = super::shifted_moments(&xs, 3.0);
        let r1: f64 = xs.iter().map(|&v| v as f64 - 3.0).sum();
        let r2: f64 = xs.iter().map(|&v| (v as f64 - 3.0).powi(2)).sum();
        assert!((s1 - r1).abs() < 1e-9 && (s2 - r2).abs() < 1e-7 * r2);
        let (g1, g2) = super::grad_moments_where(&xs, &gs, 0.5, |_| true);
        let q1: f64 = gs.iter().map(|&v| v as f64).sum();
        let q2: f64 = xs
            .iter()
            .zip(&gs)
            .map(|(&x, &g)| g as f64 * (x - 0.5) as f64)
            .sum();
        assert!((g1 - q1).abs() < 1e-9 && (g2 - q2).abs() < 1e-9 * q2.abs().max(1.0));
        // masked: only the values with x > 1 count
        let (m1, m2) = super::grad_moments_where(&xs, &gs, 0.5, |x| x > 1.0);
        let kept = || xs.iter().zip(&gs).filter(|(&x, _)| x > 1.0);
        let p1: f64 = kept().map(|(_, &g)| g as f64).sum();
        let p2: f64 = kept().map(|(&x, &g)| g as f64 * (x - 0.5) as f64).sum();
        assert!((m1 - p1).abs() < 1e-9 && (m2 - p2).abs() < 1e-9 * p2.abs().max(1.0));
    }
}
