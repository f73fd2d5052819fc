//! Non-finite values (NaN, +-inf) never pass silently: a weights file holding one is refused on
//! load (see `weights::from_bytes`), and a model's output is checked here before it is shown or
//! saved, by the CLI and by the page's worker alike. A NaN weight makes every output NaN, and
//! an image of NaN clamped to [0, 1] looks like a (black) picture with a PSNR: without this check
//! such garbage would be presented as a result.

use crate::{Error, Result};

/// An image model's output (pixels in [0, 1]) further than this from 0 is not an image whatever
/// the input was: it comes from broken weights (a value of 1e30 in a conv is finite, and gives
/// an all-black picture once clamped). A working model is off by well under 1.
pub const IMAGE_OUTPUT_BOUND: f32 = 1e4;

/// The index and value of the first NaN or infinity in `data`, and how many there are.
pub fn first_non_finite(data: &[f32]) -> Option<(usize, f32, usize)> {
    let first = data.iter().position(|v| !v.is_finite())?;
    let count = data[first..].iter().filter(|v| !v.is_finite()).count();
    Some((first, data[first], count))
}

/// "3 non-finite values of 864 (the first, NaN, at index 17)", or None when all are finite.
pub fn describe_non_finite(data: &[f32]) -> Option<String> {
    let (first, value, count) = first_non_finite(data)?;
    let what = if value.is_nan() {
        "NaN".to_string()
    } else {
        format!("{value}")
    };
    Some(format!(
        "{count} non-finite value{} of {} (the first, {what}, at index {first})",
        if count == 1 { "" } else { "s" },
        data.len()
    ))
}

/// Refuse a weights tensor holding NaN or infinity (the message names the tensor; the caller
/// adds the file's name).
pub fn check_tensor(name: &str, data: &[f32]) -> Result<()> {
    match describe_non_finite(data) {
        None => Ok(()),
        Some(what) => Err(Error::Weights(format!(
            "tensor '{name}' holds {what}: the file is damaged or comes from a diverged training run"
        ))),
    }
}

/// Refuse a model's output holding NaN or infinity. `model` names it ("the DnCNN", "the
/// generator", ...).
pub fn check_output(model: &str, data: &[f32]) -> Result<()> {
    match describe_non_finite(data) {
        None => Ok(()),
        Some(what) => Err(Error::Weights(format!(
            "{model} produced {what}: its weights are broken (a damaged file or a diverged training run), so the result is not shown"
        ))),
    }
}

/// [`check_output`] for a model whose output is an image with pixels in [0, 1]: also refuses
/// values beyond +-[`IMAGE_OUTPUT_BOUND`], which no working model gives.
pub fn check_image_output(model: &str, data: &[f32]) -> Result<()> {
    check_output(model, data)?;
    match data.iter().position(|v| v.abs() > IMAGE_OUTPUT_BOUND) {
        None => Ok(()),
        Some(i) => Err(Error::Weights(format!(
            "{model} produced pixel values far outside [0, 1] ({:e} at index {i}): its weights are broken (a damaged file or a diverged training run), so the result is not shown",
            data[i]
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_first_bad_value() {
        assert_eq!(first_non_finite(&[0.0, 1.0]), None);
        let (i, v, n) = first_non_finite(&[0.0, f32::INFINITY, f32::NAN, 2.0]).unwrap();
        assert_eq!((i, v, n), (1, f32::INFINITY, 2));
        let e = check_tensor("conv.weight", &[1.0, f32::NAN])
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("'conv.weight'") && e.contains("NaN") && e.contains("index 1"),
            "{e}"
        );
        assert!(check_image_output("m", &[0.5, -0.2, 1.3]).is_ok());
        assert!(check_image_output("m", &[0.5, -1e31]).is_err());
    }
}
