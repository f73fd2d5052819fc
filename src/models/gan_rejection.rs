//! Discriminator rejection sampling (Azadi et al. 2019, "Discriminator Rejection Sampling"):
//! after training, D's logit estimates log p_data(x) / p_G(x) (up to a constant), so keeping a
//! sample of G with probability proportional to exp(logit) draws from a distribution closer to
//! the data's. D is used as trained; nothing here looks at labels or at the classifier.
//!
//! The acceptance probability of the paper (its eq. 8): with M the largest logit of the pool,
//! F(x) = l(x) - M - ln(1 - exp(l(x) - M - eps)) - gamma and p(x) = sigmoid(F(x)). gamma = 0
//! is close to the exact rule exp(l - M), which keeps few samples when one logit stands out;
//! a larger gamma keeps fewer, a negative one more (at gamma -> -inf every sample is kept).

use crate::error::{Error, Result};

/// The paper's eps: keeps ln(1 - exp(.)) finite at the pool's largest logit.
const EPS: f32 = 1e-6;

/// Acceptance probability of each sample of a pool from its D logit (see the module comment).
/// Errors on an empty pool or a non-finite logit (a diverged D must not pick samples).
pub fn acceptance(logits: &[f32], gamma: f32) -> Result<Vec<f32>> {
    if logits.is_empty() {
        return Err(Error::Invalid("rejection sampling: empty pool".into()));
    }
    if let Some(v) = logits.iter().find(|v| !v.is_finite()) {
        return Err(Error::Invalid(format!(
            "rejection sampling: the discriminator gave a non-finite logit ({v})"
        )));
    }
    if !gamma.is_finite() {
        return Err(Error::Invalid(format!(
            "rejection sampling: gamma must be finite, got {gamma}"
        )));
    }
    let m = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    Ok(logits
        .iter()
        .map(|&l| {
            let d = (l - m) as f64; // <= 0
            let f = d - (-(d - EPS as f64).exp()).ln_1p() - gamma as f64;
            (1.0 / (1.0 + (-f).exp())) as f32
        })
        .collect())
}

/// The indices of the samples kept when sample i is kept with probability `p[i]` and `u[i]` is
/// its uniform draw in [0, 1) (in pool order).
pub fn kept(p: &[f32], u: &[f32]) -> Vec<usize> {
    (p.iter().zip(u))
        .enumerate()
        .filter(|(_, (p, u))| u < p)
        .map(|(i, _)| i)
        .collect()
}

/// The pool indices of the first `n` samples kept at `gamma` (sample i kept when its uniform
/// draw i of `seed` is below its acceptance probability), and how many of the pool were kept
/// in all. An error when fewer than `n` are kept: fewer samples must not be scored as if they
/// were `n`.
pub fn select(logits: &[f32], gamma: f32, seed: u64, n: usize) -> Result<(Vec<usize>, usize)> {
    let p = acceptance(logits, gamma)?;
    let u: Vec<f32> = (0..p.len() as u32)
        .map(|i| crate::rng::uniform01(seed ^ 0xd125, i))
        .collect();
    let mut k = kept(&p, &u);
    let total = k.len();
    if total < n {
        return Err(Error::Invalid(format!(
            "rejection sampling at gamma {gamma} kept {total} of {} samples, fewer than the {n} asked for: lower gamma",
            p.len()
        )));
    }
    k.truncate(n);
    Ok((k, total))
}

/// `select` over a pool of digits (`per` values each, in pool order): the first `n` kept,
/// concatenated, and how many of the pool were kept in all.
pub fn keep_digits(
    digits: &[f32],
    per: usize,
    logits: &[f32],
    gamma: f32,
    seed: u64,
    n: usize,
) -> Result<(Vec<f32>, usize)> {
    if digits.len() != logits.len() * per {
        return Err(Error::Shape(format!(
            "rejection sampling: {} values for {} logits of digits of {per}",
            digits.len(),
            logits.len()
        )));
    }
    let (kept, total) = select(logits, gamma, seed, n)?;
    let out = (kept.iter())
        .flat_map(|&i| digits[i * per..(i + 1) * per].iter().copied())
        .collect();
    Ok((out, total))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn acceptance_rises_with_the_logit_and_falls_with_gamma() {
        let l = [-3.0, -1.0, 0.0, 2.0];
        let p = acceptance(&l, 0.0).unwrap();
        assert!(p.windows(2).all(|w| w[0] < w[1]), "{p:?}");
        // the largest logit: F = -eps - ln(1 - exp(-eps)) ~ ln(1 / eps), so p ~ 1
        assert!(p[3] > 0.999, "{p:?}");
        let q = acceptance(&l, 3.0).unwrap();
        assert!(p.iter().zip(&q).all(|(a, b)| b < a), "{p:?} {q:?}");
        let all = acceptance(&l, -60.0).unwrap();
        assert!(all.iter().all(|&v| v > 0.999), "{all:?}");
    }

    #[test]
    fn exact_rule_at_gamma_zero_far_below_the_top() {
        // for l << M, F ~ l - M + exp(l - M), so p ~ exp(l - M)
        let p = acceptance(&[-8.0, 0.0], 0.0).unwrap();
        assert!((p[0] - (-8.0f32).exp()).abs() < 1e-4, "{p:?}");
    }

    #[test]
    fn select_keeps_the_first_n_and_refuses_too_few() {
        let l: Vec<f32> = (0..200).map(|i| (i % 7) as f32 - 6.0).collect();
        let (k, total) = select(&l, -60.0, 1, 50).unwrap();
        assert_eq!((k, total), ((0..50).collect::<Vec<_>>(), 200));
        let (k, total) = select(&l, 0.0, 1, 5).unwrap();
        assert!(k.len() == 5 && (5..200).contains(&total) && k.windows(2).all(|w| w[0] < w[1]));
        let e = select(&l, 60.0, 1, 5).unwrap_err().to_string();
        assert!(e.contains("fewer than the 5"), "{e}");
    }

    #[test]
    fn keep_digits_gathers_the_kept_rows_in_pool_order() {
        let digits = [0.0, 0.1, 1.0, 1.1, 2.0, 2.1];
        let (out, total) = keep_digits(&digits, 2, &[0.0, 0.0, 0.0], -60.0, 1, 2).unwrap();
        assert_eq!((out, total), (vec![0.0, 0.1, 1.0, 1.1], 3));
        assert!(keep_digits(&digits, 3, &[0.0, 0.0, 0.0], 0.0, 1, 1).is_err());
    }

    #[test]
    fn bad_pools_are_refused() {
        assert!(acceptance(&[], 0.0).is_err());
        assert!(acceptance(&[0.0, f32::NAN], 0.0).is_err());
        assert!(acceptance(&[0.0], f32::INFINITY).is_err());
    }

    #[test]
    fn kept_compares_each_draw_with_its_probability() {
        assert_eq!(
            kept(&[0.5, 0.5, 1.0, 0.0], &[0.4, 0.6, 0.99, 0.0]),
            vec![0, 2]
        );
    }
}
