//! Tensors: a shape plus storage on one backend. Layout is row-major NCHW for activations,
//! OIHW for conv weights and (in, out, kH, kW) for transposed-conv weights, as in PyTorch.
//!
//! A `Tensor` is a cheap handle (clone = new reference to the same storage). Storage is
//! mutable in place only through optimizer steps, running statistics and `Backend::assign`.

use std::sync::{Arc, RwLock};

use crate::gpu::GpuBuffer;
use crate::{Error, Result};

#[derive(Clone)]
pub enum Storage {
    Cpu(Arc<RwLock<Vec<f32>>>),
    Gpu(Arc<GpuBuffer>),
    /// f16 values, two per 32-bit word (element 2i in the low half of word i): only the fused
    /// inference's activations on a device with `shader-f16` (`Backend::conv2d_fused` writes
    /// and reads them, a read converts them to f32); every other op refuses them.
    GpuF16(Arc<GpuBuffer>),
}

#[derive(Clone)]
pub struct Tensor {
    shape: Vec<usize>,
    storage: Storage,
}

impl Tensor {
    pub fn from_storage(shape: &[usize], storage: Storage) -> Tensor {
        Tensor {
            shape: shape.to_vec(),
            storage,
        }
    }
    pub fn shape(&self) -> &[usize] {
        &self.shape
    }
    pub fn numel(&self) -> usize {
        numel(&self.shape)
    }
    pub fn storage(&self) -> &Storage {
        &self.storage
    }
    pub fn is_gpu(&self) -> bool {
        matches!(self.storage, Storage::Gpu(_) | Storage::GpuF16(_))
    }
    /// True for a GPU tensor stored as f16 (see `Storage::GpuF16`).
    pub fn is_f16(&self) -> bool {
        matches!(self.storage, Storage::GpuF16(_))
    }
    /// True when both handles share one storage (a reshape or clone of the other).
    pub fn same_storage(&self, other: &Tensor) -> bool {
        match (&self.storage, &other.storage) {
            (Storage::Cpu(a), Storage::Cpu(b)) => Arc::ptr_eq(a, b),
            (Storage::Gpu(a), Storage::Gpu(b)) => Arc::ptr_eq(a, b),
            (Storage::GpuF16(a), Storage::GpuF16(b)) => Arc::ptr_eq(a, b),
            _ => false,
        }
    }
    /// Same storage, new shape with the same element count (no copy).
    pub fn reshape(&self, shape: &[usize]) -> Result<Tensor> {
        if numel(shape) != self.numel() {
            return Err(Error::Shape(format!(
                "cannot reshape {:?} ({} elements) to {:?} ({} elements)",
                self.shape,
                self.numel(),
                shape,
                numel(shape)
            )));
        }
        Ok(Tensor {
            shape: shape.to_vec(),
            storage: self.storage.clone(),
        })
    }
    /// The CPU storage, or an error naming the op when the tensor lives on the GPU.
    pub fn cpu_data(&self, op: &str) -> Result<Arc<RwLock<Vec<f32>>>> {
        match &self.storage {
            Storage::Cpu(d) => Ok(d.clone()),
            Storage::Gpu(_) | Storage::GpuF16(_) => Err(Error::Invalid(format!(
                "{op}: tensor lives on the GPU, the CPU backend was asked"
            ))),
        }
    }
    /// The GPU buffer, or an error naming the op when the tensor lives on the CPU.
    pub fn gpu_buffer(&self, op: &str) -> Result<Arc<GpuBuffer>> {
        match &self.storage {
            Storage::Gpu(b) => Ok(b.clone()),
            Storage::GpuF16(_) => Err(Error::Invalid(format!(
                "{op}: the tensor holds f16 values (a fused inference activation); only conv2d_fused and reads take it"
            ))),
            Storage::Cpu(_) => Err(Error::Invalid(format!(
                "{op}: tensor lives on the CPU, the GPU backend was asked"
            ))),
        }
    }
    /// The GPU buffer and whether it holds f16 values (for the ops that read either).
    pub fn gpu_buffer_any(&self, op: &str) -> Result<(Arc<GpuBuffer>, bool)> {
        match &self.storage {
            Storage::GpuF16(b) => Ok((b.clone(), true)),
            _ => Ok((self.gpu_buffer(op)?, false)),
        }
    }
}

impl std::fmt::Debug for Tensor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Tensor({:?}, {})",
            self.shape,
            match self.storage {
                Storage::Cpu(_) => "cpu",
                Storage::Gpu(_) => "gpu",
                Storage::GpuF16(_) => "gpu f16",
            }
        )
    }
}

pub fn numel(shape: &[usize]) -> usize {
    shape.iter().product()
}

/// Dimensions of a rank-4 NCHW shape, or a shape error naming `what`.
pub fn dims4(shape: &[usize], what: &str) -> Result<[usize; 4]> {
    match shape {
        [a, b, c, d] => Ok([*a, *b, *c, *d]),
        _ => Err(Error::Shape(format!(
            "{what} must be rank 4 (N, C, H, W), got {shape:?}"
        ))),
    }
}

/// Dimensions of a rank-2 shape, or a shape error naming `what`.
pub fn dims2(shape: &[usize], what: &str) -> Result<[usize; 2]> {
    match shape {
        [a, b] => Ok([*a, *b]),
        _ => Err(Error::Shape(format!(
            "{what} must be rank 2, got {shape:?}"
        ))),
    }
}

/// Error unless both shapes are equal (elementwise ops, losses).
pub fn same_shape(a: &[usize], b: &[usize], op: &str) -> Result<()> {
    if a != b {
        return Err(Error::Shape(format!("{op}: shapes differ: {a:?} vs {b:?}")));
    }
    Ok(())
}

/// Error for tensors with no elements, which no op accepts.
pub fn non_empty(shape: &[usize], what: &str) -> Result<()> {
    if numel(shape) == 0 {
        return Err(Error::Shape(format!(
            "{what} has no elements (shape {shape:?})"
        )));
    }
    Ok(())
}
