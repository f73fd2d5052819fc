//! Quality numbers of generated digits, from the shipped MNIST classifier (host math on values
//! read back, so the CLI and the page share it):
//!
//! * classifier score: exp(E_x KL(p(y|x) || p(y))), the Inception score with the MNIST
//!   classifier in Inception's place (1 = useless, 10 = confident and all classes equally used);
//! * Frechet distance between Gaussians fitted to the classifier's penultimate features of
//!   generated and of real held-out digits: |mu1 - mu2|^2 + tr(S1 + S2 - 2 (S1 S2)^(1/2));
//! * class histogram: how many digits the classifier labels as each class (its argmax), so
//!   mode collapse (classes missing or crowding) shows directly.

use super::pca::symmetric_eigen;
use crate::error::{Error, Result};

/// exp(mean KL(p(y|x) || p(y))) of `probs` (n rows of `classes`).
pub fn classifier_score(probs: &[f32], classes: usize) -> Result<f64> {
    if classes == 0 || probs.is_empty() || probs.len() % classes != 0 {
        return Err(Error::Invalid(format!(
            "classifier score: {} values are not rows of {classes}",
            probs.len()
        )));
    }
    let n = probs.len() / classes;
    let mut marginal = vec![0.0f64; classes];
    for row in probs.chunks(classes) {
        for (m, &p) in marginal.iter_mut().zip(row) {
            *m += p as f64 / n as f64;
        }
    }
    let mut kl = 0.0f64;
    for row in probs.chunks(classes) {
        for (&p, &m) in row.iter().zip(&marginal) {
            let p = p as f64;
            if p > 1e-12 {
                kl += p * (p.ln() - m.max(1e-12).ln());
            }
        }
    }
    Ok((kl / n as f64).exp())
}

/// Digits per class (the argmax of each row of `probs`, n rows of `classes`).
pub fn class_histogram(probs: &[f32], classes: usize) -> Result<Vec<usize>> {
    if classes == 0 || probs.is_empty() || probs.len() % classes != 0 {
        return Err(Error::Invalid(format!(
            "class histogram: {} values are not rows of {classes}",
            probs.len()
        )));
    }
    let mut h = vec![0usize; classes];
    for row in probs.chunks(classes) {
        let k = (0..classes).fold(0, |best, k| if row[k] > row[best] { k } else { best });
        h[k] += 1;
    }
    Ok(h)
}

/// (smallest, largest) share of a class in a histogram, in percent.
pub fn class_share_range(h: &[usize]) -> (f64, f64) {
    let n = h.iter().sum::<usize>().max(1) as f64;
    let min = h.iter().copied().min().unwrap_or(0) as f64;
    let max = h.iter().copied().max().unwrap_or(0) as f64;
    (100.0 * min / n, 100.0 * max / n)
}

/// Mean and covariance (dim x dim, row-major, unbiased) of n rows.
pub fn gaussian(features: &[f32], dim: usize) -> Result<(Vec<f64>, Vec<f64>)> {
    if dim == 0 || features.len() % dim != 0 || features.len() / dim < 2 {
        return Err(Error::Invalid(format!(
            "Frechet distance: need at least 2 rows of {dim} features, got {} values",
            features.len()
        )));
    }
    let n = features.len() / dim;
    let mut mu = vec![0.0f64; dim];
    for row in features.chunks(dim) {
        for (m, &v) in mu.iter_mut().zip(row) {
            *m += v as f64 / n as f64;
        }
    }
    let mut cov = vec![0.0f64; dim * dim];
    for row in features.chunks(dim) {
        let c: Vec<f64> = row.iter().zip(&mu).map(|(&v, m)| v as f64 - m).collect();
        for i in 0..dim {
            for j in i..dim {
                cov[i * dim + j] += c[i] * c[j];
            }
        }
    }
    for i in 0..dim {
        for j in i..dim {
            let v = cov[i * dim + j] / (n - 1) as f64;
            cov[i * dim + j] = v;
            cov[j * dim + i] = v;
        }
    }
    Ok((mu, cov))
}

/// Symmetric square root of a PSD matrix (negative eigenvalues from rounding clipped to 0).
fn sqrtm_psd(a: &[f64], n: usize) -> Vec<f64> {
    let (vals, vecs) = symmetric_eigen(a.to_vec(), n);
    let mut r = vec![0.0f64; n * n];
    for k in 0..n {
        let s = vals[k].max(0.0).sqrt();
        for i in 0..n {
            let vik = vecs[i * n + k] * s;
            for j in 0..n {
                r[i * n + j] += vik * vecs[j * n + k];
            }
        }
    }
    r
}

fn matmul(a: &[f64], b: &[f64], n: usize) -> Vec<f64> {
    let mut c = vec![0.0f64; n * n];
    for i in 0..n {
        for k in 0..n {
            let aik = a[i * n + k];
            for j in 0..n {
                c[i * n + j] += aik * b[k * n + j];
            }
        }
    }
    c
}

/// Frechet distance between the Gaussians of two feature sets (rows of `dim`).
pub fn frechet_distance(a: &[f32], b: &[f32], dim: usize) -> Result<f64> {
    let (mu1, s1) = gaussian(a, dim)?;
    let (mu2, s2) = gaussian(b, dim)?;
    let mean_term: f64 = mu1.iter().zip(&mu2).map(|(x, y)| (x - y).powi(2)).sum();
    let trace = |m: &[f64]| (0..dim).map(|i| m[i * dim + i]).sum::<f64>();
    // tr((S1 S2)^(1/2)) = tr((R S2 R)^(1/2)) with R = S1^(1/2), a symmetric PSD product
    let r = sqrtm_psd(&s1, dim);
    let m = matmul(&matmul(&r, &s2, dim), &r, dim);
    let (vals, _) = symmetric_eigen(m, dim);
    let cross: f64 = vals.iter().map(|v| v.max(0.0).sqrt()).sum();
    Ok((mean_term + trace(&s1) + trace(&s2) - 2.0 * cross).max(0.0))
}
