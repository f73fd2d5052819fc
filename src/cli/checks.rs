//! Argument checks every command shares, made before anything is allocated or loaded: a size
//! that cannot fit in memory, a batch larger than the data, a noise level off the 0-255 scale.
//! Each refusal names the flag and says what would work.

use crate::{Error, Result};

/// Bytes of this machine's physical memory (Linux: `MemTotal` of /proc/meminfo); None where
/// it cannot be read.
fn physical_memory() -> Option<u128> {
    let info = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = info.lines().find(|l| l.starts_with("MemTotal:"))?;
    let kib: u128 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// Where the memory cannot be read, sizes beyond this are refused (1 TiB: no job here needs
/// it, and it keeps absurd values from reaching the allocator, which aborts).
const UNKNOWN_MEMORY: u128 = 1 << 40;

fn human(bytes: u128) -> String {
    let gib = bytes as f64 / (1u64 << 30) as f64;
    if gib >= 1024.0 {
        format!("{:.1} TiB", gib / 1024.0)
    } else {
        format!("{gib:.1} GiB")
    }
}

/// Refuse a run whose buffers cannot fit in this machine's memory, before allocating them (an
/// allocation that fails aborts the process). `needs` is a lower bound of the bytes one step
/// holds at once, computed in u128 so that absurd sizes do not overflow; `what` names the flags
/// that set it ("--batch 128 with --patch 40").
pub fn check_memory(what: &str, needs: u128) -> Result<()> {
    let have = physical_memory().unwrap_or(UNKNOWN_MEMORY);
    if needs > have {
        return Err(Error::Invalid(format!(
            "{what}: one step needs at least {} of memory, more than this machine has ({}); use smaller values",
            human(needs),
            human(have)
        )));
    }
    Ok(())
}

/// Bytes of f32 values, the product of `dims` (saturating: no overflow, however absurd).
pub fn f32_bytes(dims: &[usize]) -> u128 {
    dims.iter().fold(4u128, |n, &d| n.saturating_mul(d as u128))
}

/// Refuse a batch larger than the data it is drawn from (`items` names them: "training digits").
pub fn check_batch(batch: usize, available: usize, items: &str) -> Result<()> {
    if batch > available {
        return Err(Error::Invalid(format!(
            "--batch {batch} is larger than the {available} {items}: use --batch {available} or less"
        )));
    }
    Ok(())
}

/// Refuse a noise level off the 0-255 scale (NaN and infinity included): `flag` names it.
pub fn check_sigma(flag: &str, sigma: f32) -> Result<()> {
    if !(0.0..=255.0).contains(&sigma) {
        return Err(Error::Invalid(format!(
            "{flag} must be a noise standard deviation in 0..=255 (the 0-255 pixel scale), got {sigma}"
        )));
    }
    Ok(())
}

/// Refuse a `--limit` of 0 (it would evaluate nothing).
pub fn check_limit(limit: Option<usize>) -> Result<()> {
    if limit == Some(0) {
        return Err(Error::Invalid(
            "--limit must be at least 1 (the number of images or digits to evaluate)".into(),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusals_name_the_flag() {
        assert!(check_memory("--batch 1", 4).is_ok());
        let e = check_memory("--batch 10000000000", f32_bytes(&[10_000_000_000, 784]))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("--batch 10000000000") && e.contains("TiB"),
            "{e}"
        );
        assert!(f32_bytes(&[usize::MAX, usize::MAX]) > 0, "no overflow");
        assert!(check_batch(64, 64, "digits").is_ok());
        assert!(check_batch(65, 64, "digits")
            .unwrap_err()
            .to_string()
            .contains("64 digits"));
        for bad in [f32::NAN, f32::INFINITY, -1.0, 3e38, 255.5] {
            assert!(check_sigma("--add-noise", bad).is_err(), "{bad}");
        }
        assert!(check_sigma("--add-noise", 255.0).is_ok());
        assert!(check_limit(Some(0)).is_err() && check_limit(None).is_ok());
    }
}

/// `--stats-batches` of the grow commands: 1..=10000 batches.
pub fn check_stats_batches(n: usize) -> Result<()> {
    if n == 0 || n > 10_000 {
        return Err(Error::Invalid(format!(
            "--stats-batches must be in 1..=10000, got {n}"
        )));
    }
    Ok(())
}
