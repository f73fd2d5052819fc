//! Counter-based random numbers: element i of a stream depends only on (seed, i), so the CPU and
//! the GPU (shaders/random.wgsl implements the same functions) produce the same numbers, and
//! any slice of a stream can be generated without the rest. The mixer is the PCG-RXS-M-XS hash
//! (Jarzynski & Olano 2020, "Hash Functions for GPU Rendering"), applied in two rounds keyed
//! by the two halves of the 64-bit seed. Uses only u32 arithmetic, which WGSL has.

#[inline]
pub fn pcg_hash(x: u32) -> u32 {
    let state = x.wrapping_mul(747796405).wrapping_add(2891336453);
    let word = ((state >> ((state >> 28) + 4)) ^ state).wrapping_mul(277803737);
    (word >> 22) ^ word
}

/// The 32 random bits of counter `i` under `seed`.
#[inline]
pub fn random_u32(seed: u64, i: u32) -> u32 {
    let (lo, hi) = (seed as u32, (seed >> 32) as u32);
    pcg_hash(pcg_hash(i ^ pcg_hash(lo)).wrapping_add(hi))
}

/// Uniform in [0, 1) with 24 random bits (exactly representable in f32).
#[inline]
pub fn uniform01(seed: u64, i: u32) -> f32 {
    (random_u32(seed, i) >> 8) as f32 * (1.0 / 16_777_216.0)
}

/// Standard normal for element i: Box-Muller on the uniforms of counters 2i and 2i+1 (cosine branch).
#[inline]
pub fn normal(seed: u64, i: u32) -> f32 {
    let u1 = 1.0 - uniform01(seed, i.wrapping_mul(2)); // (0, 1], keeps ln finite
    let u2 = uniform01(seed, i.wrapping_mul(2).wrapping_add(1));
    (-2.0 * u1.ln()).sqrt() * (std::f32::consts::TAU * u2).cos()
}

/// Host-side stream helpers (data order, init), same numbers as the device op.
pub fn uniform_vec(n: usize, lo: f32, hi: f32, seed: u64) -> Vec<f32> {
    (0..n)
        .map(|i| lo + (hi - lo) * uniform01(seed, i as u32))
        .collect()
}

pub fn normal_vec(n: usize, mean: f32, std: f32, seed: u64) -> Vec<f32> {
    (0..n)
        .map(|i| mean + std * normal(seed, i as u32))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn moments_are_right() {
        let u = uniform_vec(100_000, 0.0, 1.0, 7);
        let m: f64 = u.iter().map(|&x| x as f64).sum::<f64>() / u.len() as f64;
        assert!((m - 0.5).abs() < 0.01, "uniform mean {m}");
        let g = normal_vec(100_000, 0.0, 1.0, 7);
        let m: f64 = g.iter().map(|&x| x as f64).sum::<f64>() / g.len() as f64;
        let v: f64 = g.iter().map(|&x| (x as f64 - m).powi(2)).sum::<f64>() / g.len() as f64;
        assert!(
            m.abs() < 0.02 && (v - 1.0).abs() < 0.02,
            "normal mean {m} var {v}"
        );
    }

    #[test]
    fn seeds_differ_and_repeat() {
        assert_eq!(uniform_vec(10, 0.0, 1.0, 1), uniform_vec(10, 0.0, 1.0, 1));
        assert_ne!(uniform_vec(10, 0.0, 1.0, 1), uniform_vec(10, 0.0, 1.0, 2));
        assert_ne!(
            uniform_vec(10, 0.0, 1.0, 1),
            uniform_vec(10, 0.0, 1.0, 1 << 32)
        );
    }
}

/// A seeded permutation of `items` (Fisher-Yates on the counter-based RNG): the same seed
/// gives the same order on every platform.
pub fn shuffled<T>(mut items: Vec<T>, seed: u64) -> Vec<T> {
    for i in (1..items.len()).rev() {
        let j = random_u32(seed, i as u32) as usize % (i + 1);
        items.swap(i, j);
    }
    items
}
