//! Image I/O for the denoiser: decode PNG / JPEG / GIF bytes (the `image` crate) into planar
//! f32 images in [0, 1], gray (1 channel) or RGB (3 channels), and encode them back as 8-bit
//! PNG; additive white Gaussian noise on the 0-255 scale; the denoising data sets.
//!
//! What decoding does with unusual input (each case has a test):
//! - empty bytes, non-images, corrupt or truncated files: `Error::Invalid` saying so;
//! - images over the megapixel cap: refused before decoding, the cap named in the message;
//! - 16-bit PNG: converted to f32 at full precision; gray+alpha / RGBA: the alpha plane is kept
//!   separately in `Image::alpha` (the denoiser ignores it, `encode_png` writes it back);
//! - JPEG EXIF orientation is applied; CMYK and progressive JPEG decode as the crate allows;
//! - animated GIF: the first frame.
//!
//! Gray conversion of colour input uses the `image` crate's luma weights (Rec. 709).

use std::io::Cursor;
use std::path::{Path, PathBuf};

use image::{DynamicImage, ImageDecoder, ImageReader};

use crate::{rng, Error, Result};

/// Default cap on decoded pixels (a 24-megapixel photo fits; 50 MP is refused).
pub const DEFAULT_MAX_PIXELS: u64 = 50_000_000;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ColorMode {
    Gray,
    Rgb,
}

impl ColorMode {
    pub fn channels(self) -> usize {
        match self {
            ColorMode::Gray => 1,
            ColorMode::Rgb => 3,
        }
    }
    /// 1 -> Gray, 3 -> Rgb.
    pub fn from_channels(c: usize) -> Result<ColorMode> {
        match c {
            1 => Ok(ColorMode::Gray),
            3 => Ok(ColorMode::Rgb),
            _ => Err(Error::Invalid(format!(
                "images have 1 (gray) or 3 (RGB) channels, not {c}"
            ))),
        }
    }
}

/// A planar image (channels, height, width), values in [0, 1] (noisy images may leave it).
#[derive(Clone, Debug, PartialEq)]
pub struct Image {
    pub channels: usize,
    pub height: usize,
    pub width: usize,
    pub data: Vec<f32>,
    /// The source's alpha plane (height * width), when it had one.
    pub alpha: Option<Vec<f32>>,
}

impl Image {
    /// An image from planar data, checked for size.
    pub fn new(channels: usize, height: usize, width: usize, data: Vec<f32>) -> Result<Image> {
        if channels == 0 || height == 0 || width == 0 || data.len() != channels * height * width {
            return Err(Error::Shape(format!(
                "image {channels}x{height}x{width} needs {} values, got {}",
                channels * height * width,
                data.len()
            )));
        }
        Ok(Image {
            channels,
            height,
            width,
            data,
            alpha: None,
        })
    }
    pub fn pixels(&self) -> usize {
        self.height * self.width
    }
    /// The same image with other pixel values (alpha kept).
    pub fn with_data(&self, data: Vec<f32>) -> Result<Image> {
        let mut im = Image::new(self.channels, self.height, self.width, data)?;
        im.alpha = self.alpha.clone();
        Ok(im)
    }
}

fn invalid(msg: String) -> Error {
    Error::Invalid(msg)
}

/// Decode image bytes to a planar f32 image in `mode`, refusing images over `max_pixels`.
pub fn decode(bytes: &[u8], mode: ColorMode, max_pixels: u64) -> Result<Image> {
    if bytes.is_empty() {
        return Err(invalid("the file is empty (0 bytes): not an image".into()));
    }
    let reader = || -> Result<ImageReader<Cursor<&[u8]>>> {
        let r = ImageReader::new(Cursor::new(bytes))
            .with_guessed_format()
            .map_err(|e| invalid(format!("cannot read the image: {e}")))?;
        match r.format() {
            Some(image::ImageFormat::Png | image::ImageFormat::Jpeg | image::ImageFormat::Gif) => {
                Ok(r)
            }
            // recognised by its signature, but not decoded by this build: say so, rather than
            // "corrupt or truncated"
            Some(other) => Err(invalid(format!(
                "a {} image: not supported (nnlab reads PNG, JPEG and GIF; convert it to PNG)",
                format_name(other)
            ))),
            None => Err(invalid(format!(
                "not an image nnlab can read ({} bytes; expected PNG, JPEG or GIF)",
                bytes.len()
            ))),
        }
    };
    let format = reader()?
        .format()
        .map(|f| format!("{f:?}"))
        .unwrap_or_default();
    let corrupt =
        |e: image::ImageError| invalid(format!("corrupt or truncated {format} image: {e}"));
    let (w, h) = reader()?.into_dimensions().map_err(corrupt)?;
    let pixels = w as u64 * h as u64;
    if pixels == 0 {
        return Err(invalid(format!(
            "the {format} image has no pixels ({w}x{h})"
        )));
    }
    if pixels > max_pixels {
        return Err(invalid(format!(
            "the image is {w}x{h} = {:.1} megapixels, over the cap of {:.1} megapixels",
            pixels as f64 / 1e6,
            max_pixels as f64 / 1e6
        )));
    }
    let mut decoder = reader()?.into_decoder().map_err(corrupt)?;
    let orientation = decoder
        .orientation()
        .unwrap_or(image::metadata::Orientation::NoTransforms);
    let mut img = DynamicImage::from_decoder(decoder).map_err(corrupt)?;
    img.apply_orientation(orientation);
    Ok(from_dynamic(&img, mode))
}

/// A format's usual name (TIFF, WebP, BMP...).
fn format_name(f: image::ImageFormat) -> String {
    f.extensions_str()
        .first()
        .map(|e| match *e {
            "webp" => "WebP".to_string(),
            "tiff" | "tif" => "TIFF".to_string(),
            e => e.to_uppercase(),
        })
        .unwrap_or_else(|| format!("{f:?}"))
}

/// Planar f32 conversion of a decoded image (alpha kept when present).
pub fn from_dynamic(img: &DynamicImage, mode: ColorMode) -> Image {
    let (w, h) = (img.width() as usize, img.height() as usize);
    let data = match mode {
        ColorMode::Gray => img.to_luma32f().into_raw(),
        ColorMode::Rgb => {
            let rgb = img.to_rgb32f().into_raw();
            let plane = w * h;
            let mut out = vec![0.0; 3 * plane];
            for (i, px) in rgb.chunks_exact(3).enumerate() {
                for c in 0..3 {
                    out[c * plane + i] = px[c];
                }
            }
            out
        }
    };
    let alpha = img.color().has_alpha().then(|| {
        img.to_rgba32f()
            .into_raw()
            .chunks_exact(4)
            .map(|p| p[3])
            .collect()
    });
    Image {
        channels: mode.channels(),
        height: h,
        width: w,
        data,
        alpha,
    }
}

/// The formats nnlab writes images in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OutputFormat {
    Png,
    /// quality [`JPEG_QUALITY`]; alpha is dropped (JPEG has none)
    Jpeg,
}

/// Quality of the JPEG files nnlab writes (1-100).
pub const JPEG_QUALITY: u8 = 95;

impl OutputFormat {
    /// The format a file name asks for by its extension (.png; .jpg or .jpeg), any case;
    /// anything else is refused, naming what is supported.
    pub fn from_path(path: &Path) -> Result<OutputFormat> {
        let ext = path
            .extension()
            .map(|e| e.to_string_lossy().to_ascii_lowercase());
        match ext.as_deref() {
            Some("png") => Ok(OutputFormat::Png),
            Some("jpg" | "jpeg") => Ok(OutputFormat::Jpeg),
            Some(e) => Err(Error::Invalid(format!(
                "{}: cannot write .{e} images: not supported (name the output .png or .jpg)",
                path.display()
            ))),
            None => Err(Error::Invalid(format!(
                "{}: the output needs an extension that says its format: .png or .jpg",
                path.display()
            ))),
        }
    }
}

/// 8-bit PNG bytes of an image: values clamped to [0, 1] and rounded; alpha written when kept.
pub fn encode_png(img: &Image) -> Result<Vec<u8>> {
    encode(img, OutputFormat::Png)
}

/// 8-bit PNG or JPEG bytes of an image: values clamped to [0, 1] and rounded; alpha written
/// when kept (PNG only).
pub fn encode(img: &Image, format: OutputFormat) -> Result<Vec<u8>> {
    let plane = img.pixels();
    if img.data.len() != img.channels * plane {
        return Err(Error::Shape(format!(
            "image {}x{}x{} has {} values",
            img.channels,
            img.height,
            img.width,
            img.data.len()
        )));
    }
    let q = |v: f32| (v.clamp(0.0, 1.0) * 255.0).round() as u8;
    let alpha = img
        .alpha
        .as_ref()
        .filter(|a| a.len() == plane && format == OutputFormat::Png);
    let mut px = Vec::with_capacity(plane * (img.channels + 1));
    for i in 0..plane {
        for c in 0..img.channels {
            px.push(q(img.data[c * plane + i]));
        }
        if let Some(a) = alpha {
            px.push(q(a[i]));
        }
    }
    let (w, h) = (img.width as u32, img.height as u32);
    let dynimg = match (img.channels, alpha.is_some()) {
        (1, false) => image::GrayImage::from_raw(w, h, px).map(DynamicImage::ImageLuma8),
        (1, true) => image::GrayAlphaImage::from_raw(w, h, px).map(DynamicImage::ImageLumaA8),
        (3, false) => image::RgbImage::from_raw(w, h, px).map(DynamicImage::ImageRgb8),
        (3, true) => image::RgbaImage::from_raw(w, h, px).map(DynamicImage::ImageRgba8),
        (c, _) => {
            return Err(Error::Invalid(format!(
                "cannot write a {c}-channel image as PNG"
            )))
        }
    }
    .ok_or_else(|| Error::Shape("image buffer size mismatch".into()))?;
    let mut out = Cursor::new(Vec::new());
    match format {
        OutputFormat::Png => dynimg
            .write_to(&mut out, image::ImageFormat::Png)
            .map_err(|e| Error::Io(format!("cannot encode PNG: {e}")))?,
        OutputFormat::Jpeg => dynimg
            .write_with_encoder(image::codecs::jpeg::JpegEncoder::new_with_quality(
                &mut out,
                JPEG_QUALITY,
            ))
            .map_err(|e| Error::Io(format!("cannot encode JPEG: {e}")))?,
    }
    Ok(out.into_inner())
}

/// Add white Gaussian noise of standard deviation `sigma` on the 0-255 scale (sigma / 255 in
/// [0, 1] units), no clipping. Element i uses normal(seed, offset + i): same seed, same noise.
pub fn add_awgn(clean: &[f32], sigma: f32, seed: u64, offset: u32) -> Vec<f32> {
    let s = sigma / 255.0;
    clean
        .iter()
        .enumerate()
        .map(|(i, &x)| x + s * rng::normal(seed, offset.wrapping_add(i as u32)))
        .collect()
}

/// Round values to the nearest of the 256 8-bit levels after clamping to [0, 1] (what saving as
/// an 8-bit image does).
pub fn quantize8(x: &[f32]) -> Vec<f32> {
    x.iter().map(|&v| level8(v)).collect()
}

/// One value clamped to [0, 1] and rounded to the nearest 8-bit level.
pub fn level8(v: f32) -> f32 {
    (v.clamp(0.0, 1.0) * 255.0).round() / 255.0
}

/// [`add_awgn`], then clipped and rounded to 8 bits ([`quantize8`]): the noisy image as a user
/// would have it saved, and the protocol of `nnlab eval dncnn --clip` and of the page's PSNR line.
pub fn add_awgn8(clean: &[f32], sigma: f32, seed: u64, offset: u32) -> Vec<f32> {
    let mut v = add_awgn(clean, sigma, seed, offset);
    for x in &mut v {
        *x = level8(*x);
    }
    v
}

// ---------------------------------------------------------------- files and data sets (native)

/// Read and decode an image file.
#[cfg(not(target_arch = "wasm32"))]
pub fn load_file(path: &Path, mode: ColorMode, max_pixels: u64) -> Result<Image> {
    let bytes = std::fs::read(path)
        .map_err(|e| Error::Io(format!("cannot read {}: {e}", path.display())))?;
    decode(&bytes, mode, max_pixels).map_err(|e| match e {
        Error::Invalid(m) => Error::Invalid(format!("{}: {m}", path.display())),
        other => other,
    })
}

/// Write an image in the format its file name's extension names (PNG or JPEG; see
/// [`OutputFormat::from_path`]), atomically. Check the name first with
/// [`OutputFormat::from_path`] and `files::check_writable` when the image takes long to make.
#[cfg(not(target_arch = "wasm32"))]
pub fn save_image(path: &Path, img: &Image) -> Result<()> {
    let bytes = encode(img, OutputFormat::from_path(path)?)?;
    crate::files::write_atomic(path, &bytes)
}

/// Write an image as an 8-bit PNG file.
#[cfg(not(target_arch = "wasm32"))]
pub fn save_png(path: &Path, img: &Image) -> Result<()> {
    let bytes = encode_png(img)?;
    std::fs::write(path, bytes)
        .map_err(|e| Error::Io(format!("cannot write {}: {e}", path.display())))
}

/// The denoising data sets under `<data>/denoise/`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DenoiseSet {
    /// 400 gray 180x180 training crops (DnCNN's gray training set)
    Train400,
    /// 432 colour JPEGs: BSD500 minus CBSD68 (colour training set)
    Cbsd432,
    /// 12 gray test images
    Set12,
    /// 68 gray test images
    Bsd68,
    /// 68 colour test images
    Cbsd68,
}

impl DenoiseSet {
    pub fn folder(self) -> &'static str {
        match self {
            DenoiseSet::Train400 => "Train400",
            DenoiseSet::Cbsd432 => "CBSD432",
            DenoiseSet::Set12 => "Set12",
            DenoiseSet::Bsd68 => "BSD68",
            DenoiseSet::Cbsd68 => "CBSD68",
        }
    }
    /// By folder name, case-insensitively.
    pub fn parse(name: &str) -> Result<DenoiseSet> {
        let all = [
            DenoiseSet::Train400,
            DenoiseSet::Cbsd432,
            DenoiseSet::Set12,
            DenoiseSet::Bsd68,
            DenoiseSet::Cbsd68,
        ];
        all.into_iter()
            .find(|s| s.folder().eq_ignore_ascii_case(name))
            .ok_or_else(|| Error::Invalid(format!("unknown data set '{name}' (expected Train400, CBSD432, Set12, BSD68 or CBSD68)")))
    }
    /// The colour mode its images are meant to be read in.
    pub fn mode(self) -> ColorMode {
        match self {
            DenoiseSet::Cbsd432 | DenoiseSet::Cbsd68 => ColorMode::Rgb,
            _ => ColorMode::Gray,
        }
    }
}

/// `<data>/denoise/<set>`, with `data` as in [`crate::data::data_dir`].
pub fn set_dir(data: &Path, set: DenoiseSet) -> PathBuf {
    data.join("denoise").join(set.folder())
}

/// Every PNG / JPEG / GIF under `dir` (not recursive), sorted by file name.
#[cfg(not(target_arch = "wasm32"))]
pub fn list_images(dir: &Path) -> Result<Vec<PathBuf>> {
    let rd = std::fs::read_dir(dir).map_err(|e| {
        Error::Io(format!(
            "cannot open the image folder {}: {e} (set NNLAB_DATA to the folder holding denoise/)",
            dir.display()
        ))
    })?;
    let mut out = Vec::new();
    for entry in rd {
        let p = entry?.path();
        let ext = p
            .extension()
            .and_then(|e| e.to_str())
            .map(|e| e.to_ascii_lowercase());
        if matches!(ext.as_deref(), Some("png" | "jpg" | "jpeg" | "gif")) {
            out.push(p);
        }
    }
    out.sort();
    if out.is_empty() {
        return Err(Error::Io(format!(
            "no PNG/JPEG/GIF images in {}",
            dir.display()
        )));
    }
    Ok(out)
}

/// Load a whole data set: (file name, image) pairs sorted by name.
#[cfg(not(target_arch = "wasm32"))]
pub fn load_set(data: &Path, set: DenoiseSet, mode: ColorMode) -> Result<Vec<(String, Image)>> {
    list_images(&set_dir(data, set))?
        .into_iter()
        .map(|p| {
            let name = p
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            Ok((name, load_file(&p, mode, DEFAULT_MAX_PIXELS)?))
        })
        .collect()
}

/// Which images of a set: a training set (Train400, CBSD432) is split once and for all into a
/// training part and a held-out validation part, so that steps, checkpoints and schedules are
/// chosen without looking at the test sets (Set12, BSD68, CBSD68).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Part {
    All,
    /// every image but the validation ones
    Train,
    /// every [`VAL_EVERY`]-th image in name order (the 10th, 20th, ...), centre-cropped to at
    /// most [`VAL_CROP`] pixels a side (Train400's size; CBSD432's 481x321 photos would make a
    /// validation pass 5 times slower)
    Val,
}

pub const VAL_EVERY: usize = 10;
pub const VAL_CROP: usize = 180;

impl Part {
    /// Whether image `index` (in name order) belongs to this part.
    pub fn holds(self, index: usize) -> bool {
        let val = index % VAL_EVERY == VAL_EVERY - 1;
        match self {
            Part::All => true,
            Part::Train => !val,
            Part::Val => val,
        }
    }
}

/// A set name as `nnlab eval dncnn --set` takes it: a folder name, or `Train400-val` /
/// `CBSD432-val` for the validation part of a training set.
pub fn parse_set_part(name: &str) -> Result<(DenoiseSet, Part)> {
    let lower = name.to_ascii_lowercase();
    match lower.strip_suffix("-val") {
        Some(base) => {
            let set = DenoiseSet::parse(base)?;
            if !matches!(set, DenoiseSet::Train400 | DenoiseSet::Cbsd432) {
                return Err(Error::Invalid(format!(
                    "'{name}': only the training sets Train400 and CBSD432 have a validation part"
                )));
            }
            Ok((set, Part::Val))
        }
        None => Ok((DenoiseSet::parse(name)?, Part::All)),
    }
}

/// [`load_set`], keeping the images of `part` (the validation part centre-cropped).
#[cfg(not(target_arch = "wasm32"))]
pub fn load_part(
    data: &Path,
    set: DenoiseSet,
    mode: ColorMode,
    part: Part,
) -> Result<Vec<(String, Image)>> {
    Ok(load_set(data, set, mode)?
        .into_iter()
        .enumerate()
        .filter(|(i, _)| part.holds(*i))
        .map(|(_, (name, img))| match part {
            Part::Val => (name, img.center_crop(VAL_CROP)),
            _ => (name, img),
        })
        .collect())
}

// ---------------------------------------------------------------- plane conversions

impl Image {
    /// True when the image is gray: one channel, or three equal planes (a gray photo stored
    /// as RGB).
    pub fn planes_equal(&self) -> bool {
        let p = self.pixels();
        self.channels == 1
            || (self.data[..p] == self.data[p..2 * p] && self.data[..p] == self.data[2 * p..])
    }

    /// Plane `c` as a 1-channel image (no alpha).
    pub fn plane(&self, c: usize) -> Image {
        let p = self.pixels();
        Image {
            channels: 1,
            height: self.height,
            width: self.width,
            data: self.data[c * p..(c + 1) * p].to_vec(),
            alpha: None,
        }
    }

    /// A gray image as 3 equal planes (alpha kept).
    pub fn gray_to_rgb(&self) -> Image {
        let mut data = Vec::with_capacity(3 * self.data.len());
        for _ in 0..3 {
            data.extend_from_slice(&self.data);
        }
        Image {
            channels: 3,
            height: self.height,
            width: self.width,
            data,
            alpha: self.alpha.clone(),
        }
    }

    /// Luma of a colour image with the Rec. 709 weights `decode` uses for gray (no alpha); a
    /// gray image is returned as it is.
    pub fn rgb_to_gray(&self) -> Image {
        if self.channels == 1 {
            return self.clone();
        }
        let p = self.pixels();
        let d = &self.data;
        let data = (0..p)
            .map(|i| 0.2126 * d[i] + 0.7152 * d[p + i] + 0.0722 * d[2 * p + i])
            .collect();
        Image {
            channels: 1,
            height: self.height,
            width: self.width,
            data,
            alpha: None,
        }
    }

    /// The side x side (at most) window at the image's centre (alpha cropped alike).
    pub fn center_crop(&self, side: usize) -> Image {
        let (h, w) = (self.height.min(side), self.width.min(side));
        let (y0, x0) = ((self.height - h) / 2, (self.width - w) / 2);
        let mut data = Vec::with_capacity(self.channels * h * w);
        for c in 0..self.channels {
            for y in y0..y0 + h {
                let row = c * self.pixels() + y * self.width + x0;
                data.extend_from_slice(&self.data[row..row + w]);
            }
        }
        let alpha = self.alpha.as_ref().map(|a| {
            (y0..y0 + h)
                .flat_map(|y| a[y * self.width + x0..y * self.width + x0 + w].to_vec())
                .collect()
        });
        Image {
            channels: self.channels,
            height: h,
            width: w,
            data,
            alpha,
        }
    }

    /// Interleaved 8-bit RGBA for a canvas (gray shown on all three channels; alpha kept, else
    /// opaque).
    pub fn rgba8(&self) -> Vec<u8> {
        let p = self.pixels();
        let q = |v: f32| (v.clamp(0.0, 1.0) * 255.0).round() as u8;
        let mut out = Vec::with_capacity(4 * p);
        for i in 0..p {
            if self.channels == 1 {
                let v = q(self.data[i]);
                out.extend_from_slice(&[v, v, v]);
            } else {
                out.extend_from_slice(&[
                    q(self.data[i]),
                    q(self.data[p + i]),
                    q(self.data[2 * p + i]),
                ]);
            }
            out.push(self.alpha.as_ref().map_or(255, |a| q(a[i])));
        }
        out
    }
}

/// Decode a photo in colour, refusing images over `max_pixels`; a gray photo (three equal
/// planes) comes back with 1 channel, its alpha kept.
pub fn decode_as_stored(bytes: &[u8], max_pixels: u64) -> Result<Image> {
    let img = decode(bytes, ColorMode::Rgb, max_pixels)?;
    if img.planes_equal() {
        let mut g = img.plane(0);
        g.alpha = img.alpha;
        Ok(g)
    } else {
        Ok(img)
    }
}
