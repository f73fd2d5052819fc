//! Convolution arithmetic of the lecture (after Dumoulin & Visin 2016, relationship 14).
//!
//! A conv with kernel m, stride s, padding p maps an input of size i to o = floor((i + 2p - m)/s) + 1.
//! Its transposed conv is itself a *direct* conv, with stride s' = 1 and kernel m' = m, run on the
//! o-sized input after inserting i' = s - 1 zeros between neighbouring pixels (size
//! S = o + (o - 1) i'), padding by p' = m - p - 1 on each side and by a' = (i + 2p - m) mod s extra
//! zeros on the bottom/right. Its output size, that of a stride-1 conv over the padded grid of
//! side S + 2p' + a', is o' = s'(S - 1) + a' + m' - 2p, which equals i.
//!
//! Note: the lecture writes the last term as 2p'. That agrees with the above only when
//! 2p = m - 1 (as in its example: m = 3, p = 1); in general, e.g. i = 1, m = 2, s = 1, p = 1, it
//! gives o' = 3 instead of 1. We use the padding p of the direct conv, as Dumoulin & Visin's
//! relationship 14 does, and test that o' = i for every (i, m, s, p).
//! In PyTorch terms that is ConvTranspose2d(kernel m, stride s, padding p, output_padding a').

use super::{conv_out_size, Conv2dParams, ConvTranspose2dParams};
use crate::{Error, Result};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct LectureTransposed {
    /// input size of the direct conv
    pub i: usize,
    /// output size of the direct conv = input size of the transposed conv
    pub o: usize,
    /// kernel m' = m
    pub m_t: usize,
    /// stride s' = 1
    pub s_t: usize,
    /// padding p' = m - p - 1
    pub p_t: usize,
    /// zeros inserted between input pixels, i' = s - 1
    pub i_t: usize,
    /// extra zeros on one side, a' = (i + 2p - m) mod s
    pub a_t: usize,
    /// size after inserting the zeros, S = o + (o - 1) i'
    pub stretched: usize,
    /// output size o' = s'(S - 1) + a' + m' - 2p (see the module doc on the lecture's 2p')
    pub o_t: usize,
}

/// The lecture's transposed-conv parameters for a direct conv (i, m, s, p).
/// Needs p <= m - 1 so that p' is not negative (as in the lecture).
pub fn lecture_transposed(i: usize, m: usize, s: usize, p: usize) -> Result<LectureTransposed> {
    if m == 0 || s == 0 || i == 0 {
        return Err(Error::Invalid(format!(
            "input size, kernel and stride must be >= 1 (i={i}, m={m}, s={s})"
        )));
    }
    if p + 1 > m {
        return Err(Error::Invalid(format!(
            "padding p={p} must be at most m-1={} so that p' = m-p-1 >= 0",
            m - 1
        )));
    }
    let o = conv_out_size(i.into(), m.into(), Conv2dParams::new(s, p, 1))?.h;
    let i_t = s - 1;
    let stretched = o + (o - 1) * i_t;
    let p_t = m - p - 1;
    let a_t = (i + 2 * p - m) % s;
    let o_t = (stretched - 1) + a_t + m - 2 * p;
    Ok(LectureTransposed {
        i,
        o,
        m_t: m,
        s_t: 1,
        p_t,
        i_t,
        a_t,
        stretched,
        o_t,
    })
}

impl LectureTransposed {
    /// The same transposed conv in PyTorch's parametrisation.
    pub fn pytorch_params(&self, s: usize, p: usize) -> ConvTranspose2dParams {
        ConvTranspose2dParams::new(s, p, self.a_t, 1)
    }
}

/// The zero-inserted, padded input of the lecture's construction, on the host:
/// x (N, C, o, o) -> (N, C, P, P) with P = S + 2p' + a'; the a' extra zeros go bottom/right.
pub fn stretch_and_pad(
    x: &[f32],
    n: usize,
    c: usize,
    o: usize,
    lt: &LectureTransposed,
) -> (Vec<f32>, usize) {
    let side = lt.stretched + 2 * lt.p_t + lt.a_t;
    let mut out = vec![0.0f32; n * c * side * side];
    for plane in 0..n * c {
        for y in 0..o {
            for x_ in 0..o {
                let (yy, xx) = (lt.p_t + y * (lt.i_t + 1), lt.p_t + x_ * (lt.i_t + 1));
                out[plane * side * side + yy * side + xx] = x[plane * o * o + y * o + x_];
            }
        }
    }
    (out, side)
}

/// The direct-conv weight that realises a transposed conv: w (Cin, Cout, k, k) ->
/// (Cout, Cin, k, k) with the kernel rotated by 180 degrees.
pub fn flip_transpose_weight(w: &[f32], cin: usize, cout: usize, k: usize) -> Vec<f32> {
    let mut out = vec![0.0f32; w.len()];
    for ci in 0..cin {
        for co in 0..cout {
            for y in 0..k {
                for x in 0..k {
                    out[((co * cin + ci) * k + (k - 1 - y)) * k + (k - 1 - x)] =
                        w[((ci * cout + co) * k + y) * k + x];
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lecture_example() {
        let lt = lecture_transposed(6, 3, 2, 1).unwrap();
        assert_eq!(
            (
                lt.o,
                lt.m_t,
                lt.s_t,
                lt.p_t,
                lt.i_t,
                lt.a_t,
                lt.stretched,
                lt.o_t
            ),
            (3, 3, 1, 1, 1, 1, 5, 6)
        );
    }

    #[test]
    fn output_size_returns_input_size() {
        for i in 1..20 {
            for m in 1..6 {
                for s in 1..4 {
                    for p in 0..m {
                        if let Ok(lt) = lecture_transposed(i, m, s, p) {
                            assert_eq!(lt.o_t, i, "i={i} m={m} s={s} p={p}");
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn refuses_bad_arguments() {
        assert!(lecture_transposed(6, 3, 0, 1).is_err());
        assert!(lecture_transposed(6, 3, 2, 3).is_err());
        assert!(lecture_transposed(2, 5, 1, 0).is_err());
    }
}
