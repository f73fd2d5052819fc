//! Buffer pool: tensors return their buffer here when dropped, and the next tensor of the same
//! byte size takes it, so a training loop allocates nothing in steady state. Reusing a buffer
//! that earlier recorded work still reads is safe: WebGPU orders the commands of one encoder
//! and all submits of one queue, and an upload submits the recorded work before its queue
//! write (context.rs), which would otherwise land first.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};

pub(crate) const STORAGE_USAGE: wgpu::BufferUsages = wgpu::BufferUsages::STORAGE
    .union(wgpu::BufferUsages::COPY_SRC)
    .union(wgpu::BufferUsages::COPY_DST);

#[derive(Default)]
pub(crate) struct Pool {
    free: Mutex<HashMap<(u64, u32), Vec<wgpu::Buffer>>>,
}

impl Pool {
    pub(crate) fn take(
        &self,
        device: &wgpu::Device,
        bytes: u64,
        usage: wgpu::BufferUsages,
    ) -> wgpu::Buffer {
        let key = (bytes, usage.bits());
        if let Some(b) = self
            .free
            .lock()
            .unwrap()
            .get_mut(&key)
            .and_then(|v| v.pop())
        {
            return b;
        }
        device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("nnlab"),
            size: bytes,
            usage,
            mapped_at_creation: false,
        })
    }
    fn give_back(&self, buffer: wgpu::Buffer) {
        let key = (buffer.size(), buffer.usage().bits());
        self.free
            .lock()
            .unwrap()
            .entry(key)
            .or_default()
            .push(buffer);
    }
    /// Drop every pooled buffer (frees GPU memory, e.g. after a large one-off job).
    pub(crate) fn clear(&self) {
        self.free.lock().unwrap().clear();
    }
}

/// A GPU buffer owned by a tensor (or a temporary); goes back to the pool on drop.
pub struct GpuBuffer {
    buffer: Option<wgpu::Buffer>,
    /// length in f32 elements (the buffer may be a little larger: sizes round up to 16 bytes)
    len: usize,
    pool: Weak<Pool>,
}

impl GpuBuffer {
    pub(crate) fn new(buffer: wgpu::Buffer, len: usize, pool: &Arc<Pool>) -> GpuBuffer {
        GpuBuffer {
            buffer: Some(buffer),
            len,
            pool: Arc::downgrade(pool),
        }
    }
    pub fn raw(&self) -> &wgpu::Buffer {
        self.buffer.as_ref().expect("buffer is present until drop")
    }
    /// Number of f32 elements this buffer holds.
    pub fn len(&self) -> usize {
        self.len
    }
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

impl Drop for GpuBuffer {
    fn drop(&mut self) {
        if let (Some(b), Some(pool)) = (self.buffer.take(), self.pool.upgrade()) {
            pool.give_back(b);
        }
    }
}

/// Bytes for `len` f32 elements, rounded up to 16 (WebGPU wants 4-byte copies, non-zero bindings).
pub(crate) fn bytes_for(len: usize) -> u64 {
    ((len.max(1) as u64 * 4) + 15) / 16 * 16
}
