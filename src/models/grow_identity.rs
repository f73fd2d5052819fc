//! The pieces both grow commands (`dncnn_grow`, `gan_grow`) insert a layer with: the
//! per-channel statistics of the activations the new layer will read, and a 3x3 conv +
//! BatchNorm that return those activations unchanged (Net2DeeperNet).

/// Per-channel mean and (biased) variance of a layer's (ReLU'd) output, over a data sample.
#[derive(Clone, Debug, PartialEq)]
pub struct ChannelStats {
    pub mean: Vec<f64>,
    pub var: Vec<f64>,
}

impl ChannelStats {
    /// A BatchNorm that is the identity on inputs with these statistics, as [gamma, beta,
    /// running mean, running var]: gamma = sqrt(var + eps), beta = mean = running mean, so
    /// (x - mean) / sqrt(var + eps) * gamma + beta = x in evaluation mode.
    pub fn identity_batchnorm(&self, eps: f32) -> [Vec<f32>; 4] {
        let mean: Vec<f32> = self.mean.iter().map(|&m| m as f32).collect();
        let var: Vec<f32> = self.var.iter().map(|&v| v as f32).collect();
        let gamma = var.iter().map(|&v| (v + eps).sqrt()).collect();
        [gamma, mean.clone(), mean, var]
    }
}

/// Running f64 sums of NCHW activations per channel, for [`ChannelStats`].
pub struct ChannelMoments {
    sum: Vec<f64>,
    sq: Vec<f64>,
    count: usize,
}

impl ChannelMoments {
    pub fn new(channels: usize) -> ChannelMoments {
        ChannelMoments {
            sum: vec![0.0; channels],
            sq: vec![0.0; channels],
            count: 0,
        }
    }
    /// Adds `n` samples of (channels, `plane` pixels) each, NCHW.
    pub fn add(&mut self, v: &[f32], n: usize, plane: usize) {
        let c = self.sum.len();
        for i in 0..n {
            for ch in 0..c {
                for &a in &v[(i * c + ch) * plane..][..plane] {
                    self.sum[ch] += a as f64;
                    self.sq[ch] += (a as f64) * (a as f64);
                }
            }
        }
        self.count += n * plane;
    }
    /// The mean and variance of what was added (clamped at 0 against rounding).
    pub fn stats(&self) -> ChannelStats {
        let n = self.count as f64;
        let mean: Vec<f64> = self.sum.iter().map(|s| s / n).collect();
        let var = (self.sq.iter().zip(&mean))
            .map(|(q, m)| (q / n - m * m).max(0.0))
            .collect();
        ChannelStats { mean, var }
    }
}

/// A 3x3 conv weight of `c` channels in and out that is the identity: the centre tap 1 from
/// each channel to itself. The same array serves a conv's (out, in, 3, 3) layout and a
/// transposed conv's (in, out, 3, 3).
pub fn identity_conv3x3(c: usize) -> Vec<f32> {
    let mut w = vec![0f32; c * c * 9];
    for ch in 0..c {
        w[(ch * c + ch) * 9 + 4] = 1.0;
    }
    w
}
