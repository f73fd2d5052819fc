//! Weights as safetensors (F32, little-endian), named and shaped as PyTorch's state_dict, so a
//! file written here loads into the equivalent PyTorch module and back.
//!
//! The core works on bytes (the browser has no files): [`to_bytes`] / [`from_bytes`] for plain
//! named tensors, [`save_params`] / [`load_params`] for a model's parameters on a backend.
//! Loading checks the file against the model and reports every missing name, unexpected name
//! and shape mismatch at once, as `Error::Weights`. Native file helpers sit at the bottom.

use std::collections::{BTreeSet, HashMap};

use safetensors::tensor::TensorView;
use safetensors::{Dtype, SafeTensors};

use crate::autodiff::Param;
use crate::backend::Backend;
use crate::tensor::numel;
use crate::{Error, Result};

/// One tensor of a weights file, on the host.
#[derive(Clone, Debug, PartialEq)]
pub struct NamedTensor {
    pub name: String,
    pub shape: Vec<usize>,
    pub data: Vec<f32>,
}

/// PyTorch's BatchNorm keeps an int64 step counter that nnlab does not; files from PyTorch may
/// hold it, so loading ignores it.
fn ignored(name: &str) -> bool {
    name.ends_with("num_batches_tracked")
}

/// Serialise named F32 tensors (plus optional free-form string metadata) to safetensors bytes.
pub fn to_bytes(
    tensors: &[NamedTensor],
    metadata: Option<HashMap<String, String>>,
) -> Result<Vec<u8>> {
    let mut seen = BTreeSet::new();
    for t in tensors {
        if !seen.insert(t.name.as_str()) {
            return Err(Error::Weights(format!(
                "cannot save: the name '{}' appears twice",
                t.name
            )));
        }
        if let Some(what) = crate::finite::describe_non_finite(&t.data) {
            return Err(Error::Weights(format!(
                "cannot save '{}': it holds {what} (training diverged?)",
                t.name
            )));
        }
        if numel(&t.shape) != t.data.len() {
            return Err(Error::Weights(format!(
                "cannot save '{}': shape {:?} has {} elements but the data has {}",
                t.name,
                t.shape,
                numel(&t.shape),
                t.data.len()
            )));
        }
    }
    let bytes: Vec<Vec<u8>> = tensors
        .iter()
        .map(|t| t.data.iter().flat_map(|x| x.to_le_bytes()).collect())
        .collect();
    let mut views = Vec::with_capacity(tensors.len());
    for (t, b) in tensors.iter().zip(&bytes) {
        let v = TensorView::new(Dtype::F32, t.shape.clone(), b)
            .map_err(|e| Error::Weights(format!("cannot save '{}': {e}", t.name)))?;
        views.push((t.name.as_str(), v));
    }
    safetensors::serialize(views, metadata)
        .map_err(|e| Error::Weights(format!("cannot serialise weights: {e}")))
}

fn parse(bytes: &[u8]) -> Result<SafeTensors<'_>> {
    SafeTensors::deserialize(bytes).map_err(|e| {
        Error::Weights(format!(
            "not a valid safetensors file ({} bytes): {e}",
            bytes.len()
        ))
    })
}

/// Every tensor of a safetensors file (F32 only; other dtypes are an error, except PyTorch's
/// `num_batches_tracked` counters, which are skipped). Sorted by name.
pub fn from_bytes(bytes: &[u8]) -> Result<Vec<NamedTensor>> {
    let st = parse(bytes)?;
    let mut out = Vec::new();
    for (name, view) in st.tensors() {
        if ignored(&name) {
            continue;
        }
        if view.dtype() != Dtype::F32 {
            return Err(Error::Weights(format!(
                "tensor '{name}' has dtype {:?}; nnlab reads F32 only",
                view.dtype()
            )));
        }
        let data: Vec<f32> = view
            .data()
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect();
        out.push(NamedTensor {
            name,
            shape: view.shape().to_vec(),
            data,
        });
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    // every value is checked here, the one place every weights file is read through (CLI and
    // page, models and checkpoints' optimizer state): NaN or inf would only make garbage
    for t in &out {
        crate::finite::check_tensor(&t.name, &t.data)?;
    }
    Ok(out)
}

/// The free-form metadata of a safetensors file (empty when it has none).
pub fn metadata(bytes: &[u8]) -> Result<HashMap<String, String>> {
    let (_, meta) = SafeTensors::read_metadata(bytes)
        .map_err(|e| Error::Weights(format!("not a valid safetensors file: {e}")))?;
    Ok(meta.metadata().clone().unwrap_or_default())
}

/// Compare what a file holds with what a model expects; one error listing every problem.
pub fn check(expected: &[(&str, &[usize])], found: &[NamedTensor]) -> Result<()> {
    let found_map: HashMap<&str, &[usize]> = found
        .iter()
        .map(|t| (t.name.as_str(), t.shape.as_slice()))
        .collect();
    let expected_names: BTreeSet<&str> = expected.iter().map(|(n, _)| *n).collect();
    let mut missing = Vec::new();
    let mut wrong = Vec::new();
    for (name, shape) in expected {
        match found_map.get(name) {
            None => missing.push(name.to_string()),
            Some(s) if s != shape => {
                wrong.push(format!("'{name}' expected {shape:?}, file has {s:?}"))
            }
            Some(_) => {}
        }
    }
    let mut unexpected: Vec<&str> = found
        .iter()
        .map(|t| t.name.as_str())
        .filter(|n| !expected_names.contains(n))
        .collect();
    unexpected.sort();
    if missing.is_empty() && wrong.is_empty() && unexpected.is_empty() {
        return Ok(());
    }
    let mut parts = Vec::new();
    if !missing.is_empty() {
        parts.push(format!("missing: {}", missing.join(", ")));
    }
    if !unexpected.is_empty() {
        parts.push(format!("unexpected: {}", unexpected.join(", ")));
    }
    if !wrong.is_empty() {
        parts.push(format!("shape mismatch: {}", wrong.join("; ")));
    }
    Err(Error::Weights(format!(
        "weights file does not match the model ({})",
        parts.join(" | ")
    )))
}

/// Read `params` from the backend (asynchronously, so the browser can call it) and serialise.
pub async fn save_params(
    backend: &dyn Backend,
    params: &[&Param],
    metadata: Option<HashMap<String, String>>,
) -> Result<Vec<u8>> {
    let mut tensors = Vec::with_capacity(params.len());
    for p in params {
        let data = backend.read(p.value()).await?;
        tensors.push(NamedTensor {
            name: p.name().to_string(),
            shape: p.shape().to_vec(),
            data,
        });
    }
    to_bytes(&tensors, metadata)
}

/// Check `bytes` against `params` (names and shapes) and, only if everything matches, copy the
/// values into the parameters in place.
pub fn load_params(backend: &dyn Backend, params: &[&Param], bytes: &[u8]) -> Result<()> {
    let found = from_bytes(bytes)?;
    let expected: Vec<(&str, &[usize])> = params.iter().map(|p| (p.name(), p.shape())).collect();
    check(&expected, &found)?;
    let by_name: HashMap<&str, &NamedTensor> = found.iter().map(|t| (t.name.as_str(), t)).collect();
    for p in params {
        let t = by_name[p.name()];
        let up = backend.upload(&t.shape, &t.data)?;
        backend.assign(p.value(), &up)?;
    }
    Ok(())
}

/// Whether a tensor name or metadata key is a training checkpoint's optimizer state (the
/// "adam.m.*"/"adam.v.*" tensors, the "adam_t"/"adam_lr" keys) rather than part of the model.
pub fn is_optimizer_state(name: &str) -> bool {
    name.starts_with("adam.") || name.starts_with("adam_")
}

/// The element-wise mean of several weights files of one model (stochastic weight averaging:
/// snapshots of one training run, taken along its trajectory, averaged into one model). Every
/// file must hold the same names and shapes, else one error names the first difference.
/// Tensors named `adam.*` (a checkpoint's optimizer state) are left out; everything else, BatchNorm
/// running statistics included, is averaged. Sums in f64.
pub fn average(files: &[&[u8]]) -> Result<Vec<NamedTensor>> {
    let model = |bytes: &[u8]| -> Result<Vec<NamedTensor>> {
        Ok(from_bytes(bytes)?
            .into_iter()
            .filter(|t| !is_optimizer_state(&t.name))
            .collect())
    };
    let Some((first, rest)) = files.split_first() else {
        return Err(Error::Invalid(
            "nothing to average: no weights files given".into(),
        ));
    };
    let first = model(first)?;
    let mut sums: Vec<Vec<f64>> = first
        .iter()
        .map(|t| t.data.iter().map(|&v| v as f64).collect())
        .collect();
    for (i, bytes) in rest.iter().enumerate() {
        let other = model(bytes)?;
        let same = other.len() == first.len()
            && other
                .iter()
                .zip(&first)
                .all(|(a, b)| a.name == b.name && a.shape == b.shape);
        if !same {
            return Err(Error::Weights(format!(
                "file {} does not hold the same tensors (names and shapes) as file 1: not snapshots of one model",
                i + 2
            )));
        }
        for (sum, t) in sums.iter_mut().zip(&other) {
            sum.iter_mut()
                .zip(&t.data)
                .for_each(|(s, &v)| *s += v as f64);
        }
    }
    let n = files.len() as f64;
    Ok(first
        .into_iter()
        .zip(sums)
        .map(|(t, sum)| NamedTensor {
            data: sum.iter().map(|s| (s / n) as f32).collect(),
            ..t
        })
        .collect())
}

/// Save `params` to a file (native), atomically (see `files::write_atomic`).
#[cfg(not(target_arch = "wasm32"))]
pub fn save_file(
    backend: &dyn Backend,
    params: &[&Param],
    path: &std::path::Path,
    metadata: Option<HashMap<String, String>>,
) -> Result<()> {
    let bytes = pollster::block_on(save_params(backend, params, metadata))?;
    crate::files::write_atomic(path, &bytes)
}

/// Read a weights file (native) and check it whole: a safetensors file of F32 tensors, every
/// value finite. Every error names the file. What the model makes of the bytes (names, shapes)
/// is checked when they are loaded; wrap that error in [`in_file`].
#[cfg(not(target_arch = "wasm32"))]
pub fn read_file(path: &std::path::Path) -> Result<Vec<u8>> {
    let bytes = std::fs::read(path)
        .map_err(|e| Error::Io(format!("cannot read {}: {e}", path.display())))?;
    from_bytes(&bytes).map_err(|e| in_file(path, e))?;
    Ok(bytes)
}

/// An error about a weights file's content, with the file's name in front.
pub fn in_file(path: &std::path::Path, e: Error) -> Error {
    let p = path.display();
    match e {
        Error::Weights(m) => Error::Weights(format!("{p}: {m}")),
        Error::Shape(m) => Error::Shape(format!("{p}: {m}")),
        Error::Invalid(m) => Error::Invalid(format!("{p}: {m}")),
        other => other,
    }
}

/// Load `params` from a file (native); see [`load_params`].
#[cfg(not(target_arch = "wasm32"))]
pub fn load_file(backend: &dyn Backend, params: &[&Param], path: &std::path::Path) -> Result<()> {
    let bytes = read_file(path)?;
    load_params(backend, params, &bytes).map_err(|e| in_file(path, e))
}
