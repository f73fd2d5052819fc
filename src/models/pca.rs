//! PCA, the lecture's linear baseline for autoencoders: the k leading eigenvectors of the
//! data covariance, by subspace (block power) iteration with a Rayleigh-Ritz step, so only
//! a d x d covariance and d x k blocks are ever formed (d = 784 for MNIST).

use crate::backend::Backend;
use crate::error::{Error, Result};
use crate::rng;

/// A fitted PCA: mean, k orthonormal components (rows) by decreasing variance.
#[derive(Clone, Debug)]
pub struct Pca {
    pub dim: usize,
    pub mean: Vec<f32>,
    /// k x dim, row-major, orthonormal rows
    pub components: Vec<f32>,
    /// variance along each component (eigenvalues of the covariance), decreasing
    pub variances: Vec<f64>,
    /// trace of the covariance (total variance)
    pub total_variance: f64,
}

/// Extra vectors carried in the iteration: the subspace converges at the rate of
/// lambda_{k+extra+1} / lambda_k instead of lambda_{k+1} / lambda_k.
const OVERSAMPLE: usize = 8;
const MAX_ITERS: usize = 300;

/// Fit PCA with `k` components to `n` rows of length `dim` (row-major `data`). The covariance,
/// the one large product, is the backend's matmul; the small iteration runs on the host in f64.
pub async fn fit(
    b: &dyn Backend,
    data: &[f32],
    n: usize,
    dim: usize,
    k: usize,
    seed: u64,
) -> Result<Pca> {
    if n < 2 || dim == 0 || data.len() != n * dim {
        return Err(Error::Invalid(format!(
            "PCA needs >= 2 rows of {dim} values (got {} values for {n} rows)",
            data.len()
        )));
    }
    if k == 0 || k > dim {
        return Err(Error::Invalid(format!(
            "PCA components k must be 1..={dim}, got {k}"
        )));
    }
    let mut mean = vec![0.0f64; dim];
    for row in data.chunks(dim) {
        for (m, &v) in mean.iter_mut().zip(row) {
            *m += v as f64;
        }
    }
    let mean: Vec<f32> = mean.iter().map(|m| (m / n as f64) as f32).collect();
    let centred: Vec<f32> = data
        .chunks(dim)
        .flat_map(|row| row.iter().zip(&mean).map(|(v, m)| v - m))
        .collect();
    // covariance C = Xc^T Xc / (n - 1), dim x dim
    let xc = b.upload(&[n, dim], &centred)?;
    drop(centred);
    let mut cov = b.read(&b.matmul(&xc, &xc, true, false)?).await?;
    let scale = 1.0 / (n - 1) as f32;
    cov.iter_mut().for_each(|c| *c *= scale);
    let total_variance = (0..dim).map(|i| cov[i * dim + i] as f64).sum();

    let p = (k + OVERSAMPLE).min(dim);
    // q: dim x p, columns orthonormalised
    let mut q: Vec<f64> = rng::normal_vec(dim * p, 0.0, 1.0, seed)
        .into_iter()
        .map(f64::from)
        .collect();
    orthonormalise(&mut q, dim, p);
    let mut prev = vec![0.0f64; p];
    for _ in 0..MAX_ITERS {
        let z = cov_times(&cov, &q, dim, p);
        // Rayleigh quotients before re-orthonormalising: diag(Q^T C Q)
        let ritz: Vec<f64> = (0..p)
            .map(|j| (0..dim).map(|i| q[i * p + j] * z[i * p + j]).sum())
            .collect();
        q = z;
        orthonormalise(&mut q, dim, p);
        let done = ritz
            .iter()
            .zip(&prev)
            .take(k)
            .all(|(a, b)| (a - b).abs() <= 1e-7 * a.abs().max(1e-12));
        prev = ritz;
        if done {
            break;
        }
    }
    // Rayleigh-Ritz: eigen-decompose T = Q^T C Q (p x p) and rotate Q by its eigenvectors
    let cq = cov_times(&cov, &q, dim, p);
    let mut t = vec![0.0f64; p * p];
    for a in 0..p {
        for b in 0..p {
            t[a * p + b] = (0..dim).map(|i| q[i * p + a] * cq[i * p + b]).sum();
        }
    }
    let (vals, vecs) = symmetric_eigen(t, p);
    let mut order: Vec<usize> = (0..p).collect();
    order.sort_by(|&a, &b| vals[b].total_cmp(&vals[a]));
    let mut components = vec![0.0f32; k * dim];
    for (r, &j) in order.iter().take(k).enumerate() {
        for i in 0..dim {
            components[r * dim + i] =
                (0..p).map(|a| q[i * p + a] * vecs[a * p + j]).sum::<f64>() as f32;
        }
    }
    let variances = order.iter().take(k).map(|&j| vals[j].max(0.0)).collect();
    Ok(Pca {
        dim,
        mean,
        components,
        variances,
        total_variance,
    })
}

/// C (dim x dim, f32) times Q (dim x p, f64) -> dim x p.
fn cov_times(cov: &[f32], q: &[f64], dim: usize, p: usize) -> Vec<f64> {
    let mut z = vec![0.0f64; dim * p];
    for i in 0..dim {
        let row = &cov[i * dim..(i + 1) * dim];
        let out = &mut z[i * p..(i + 1) * p];
        for (l, &c) in row.iter().enumerate() {
            let c = c as f64;
            for (o, &qv) in out.iter_mut().zip(&q[l * p..(l + 1) * p]) {
                *o += c * qv;
            }
        }
    }
    z
}

/// Modified Gram-Schmidt on the columns of a (rows x cols) row-major matrix.
fn orthonormalise(a: &mut [f64], rows: usize, cols: usize) {
    for j in 0..cols {
        for prev in 0..j {
            let dot: f64 = (0..rows)
                .map(|i| a[i * cols + j] * a[i * cols + prev])
                .sum();
            for i in 0..rows {
                a[i * cols + j] -= dot * a[i * cols + prev];
            }
        }
        let norm = (0..rows)
            .map(|i| a[i * cols + j].powi(2))
            .sum::<f64>()
            .sqrt();
        // a column that vanished (rank-deficient data) is left at zero
        let inv = if norm > 1e-300 { 1.0 / norm } else { 0.0 };
        for i in 0..rows {
            a[i * cols + j] *= inv;
        }
    }
}

/// Eigen-decomposition of a small symmetric matrix (row-major n x n) by cyclic Jacobi
/// rotations: (eigenvalues, eigenvectors as the columns of a row-major n x n matrix).
pub fn symmetric_eigen(mut a: Vec<f64>, n: usize) -> (Vec<f64>, Vec<f64>) {
    let mut v = vec![0.0f64; n * n];
    for i in 0..n {
        v[i * n + i] = 1.0;
    }
    for _sweep in 0..100 {
        let off: f64 = (0..n)
            .flat_map(|i| (0..n).filter(move |&j| j != i).map(move |j| (i, j)))
            .map(|(i, j)| a[i * n + j].powi(2))
            .sum();
        let diag: f64 = (0..n).map(|i| a[i * n + i].powi(2)).sum();
        if off <= 1e-24 * diag.max(1e-300) {
            break;
        }
        for p in 0..n {
            for q in p + 1..n {
                let apq = a[p * n + q];
                if apq.abs() < 1e-300 {
                    continue;
                }
                let theta = (a[q * n + q] - a[p * n + p]) / (2.0 * apq);
                let t = theta.signum() / (theta.abs() + (theta * theta + 1.0).sqrt());
                let t = if theta == 0.0 { 1.0 } else { t };
                let c = 1.0 / (t * t + 1.0).sqrt();
                let s = t * c;
                for k in 0..n {
                    let (akp, akq) = (a[k * n + p], a[k * n + q]);
                    a[k * n + p] = c * akp - s * akq;
                    a[k * n + q] = s * akp + c * akq;
                }
                for k in 0..n {
                    let (apk, aqk) = (a[p * n + k], a[q * n + k]);
                    a[p * n + k] = c * apk - s * aqk;
                    a[q * n + k] = s * apk + c * aqk;
                }
                for k in 0..n {
                    let (vkp, vkq) = (v[k * n + p], v[k * n + q]);
                    v[k * n + p] = c * vkp - s * vkq;
                    v[k * n + q] = s * vkp + c * vkq;
                }
            }
        }
    }
    ((0..n).map(|i| a[i * n + i]).collect(), v)
}

impl Pca {
    pub fn k(&self) -> usize {
        self.variances.len()
    }

    /// Fraction of the total variance each component explains (decreasing).
    pub fn explained_variance_ratio(&self) -> Vec<f64> {
        self.variances
            .iter()
            .map(|v| v / self.total_variance.max(1e-300))
            .collect()
    }

    /// Codes (n x k) of `n` rows.
    pub fn project(&self, data: &[f32]) -> Vec<f32> {
        let (d, k) = (self.dim, self.k());
        data.chunks(d)
            .flat_map(|row| {
                (0..k).map(move |c| {
                    row.iter()
                        .zip(&self.mean)
                        .zip(&self.components[c * d..(c + 1) * d])
                        .map(|((x, m), w)| (x - m) * w)
                        .sum::<f32>()
                })
            })
            .collect()
    }

    /// Rows (n x dim) rebuilt from codes (n x k): mean + codes . components.
    pub fn reconstruct(&self, codes: &[f32]) -> Vec<f32> {
        let (d, k) = (self.dim, self.k());
        codes
            .chunks(k)
            .flat_map(|c| {
                (0..d).map(move |i| {
                    self.mean[i]
                        + (0..k)
                            .map(|j| c[j] * self.components[j * d + i])
                            .sum::<f32>()
                })
            })
            .collect()
    }
}
