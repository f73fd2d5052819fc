//! Device creation, the pipeline cache and the launcher shared by every GPU op.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};

use super::pool::{bytes_for, GpuBuffer, Pool, STORAGE_USAGE};
use super::tuner::{Policy, Tuner};
use crate::backend::BackendInfo;
use crate::tensor::{numel, Storage, Tensor};
use crate::{Error, Result};

/// Shared WGSL helpers, prepended to every shader.
const PRELUDE: &str = include_str!("../../shaders/prelude.wgsl");

/// Options for creating the GPU backend. The caps lower the device limits below what the
/// adapter offers, to test the splitting paths that real (smaller) GPUs exercise.
#[derive(Clone, Debug, Default)]
pub struct GpuOptions {
    pub max_storage_binding_bytes: Option<u64>,
    pub max_workgroups_per_dim: Option<u32>,
    /// run the fused inference in f32 even where the adapter has `shader-f16` (the page's
    /// `?f16=0`; natively also `NNLAB_GPU_F16=0`)
    pub no_f16: bool,
}

struct Inner {
    device: wgpu::Device,
    queue: wgpu::Queue,
    adapter: wgpu::AdapterInfo,
    limits: wgpu::Limits,
    pool: Arc<Pool>,
    pipelines: Mutex<HashMap<(&'static str, &'static str), wgpu::ComputePipeline>>,
    /// first uncaptured wgpu error since the last check (validation, out of memory)
    error: Arc<Mutex<Option<String>>>,
    /// kernel variant policy and the winners per shape class (src/gpu/tuner.rs)
    tuner: Tuner,
    /// work recorded but not yet submitted (see `GpuBackend::flush`)
    pending: Mutex<Pending>,
    /// the device was created with `shader-f16` (the adapter offers it)
    shader_f16: bool,
    /// the fused inference stores its weights and activations as f16 (see `f16_inference`)
    f16_inference: AtomicBool,
}

/// Most dispatches one command buffer collects before it is submitted anyway. One submit per
/// training step was measured slower in Chromium on SwiftShader (dense GAN 0.64 -> 0.43
/// steps/s): the GPU process then idles while the step is recorded. Batches of 32 keep that
/// overlap and still cut the submits 32-fold.
const MAX_PENDING_DISPATCHES: usize = 32;

/// The command encoder every launch and copy records into, and what must live until it is
/// submitted. Per-op submits cost more than the op itself at MNIST sizes (issue 18 item 4), so
/// work is submitted when something needs its results (a read, `wait`, `flush`), before an
/// upload, or every `MAX_PENDING_DISPATCHES`.
#[derive(Default)]
struct Pending {
    encoder: Option<wgpu::CommandEncoder>,
    /// the uniform blocks of the recorded dispatches: back to the pool once submitted
    uniforms: Vec<wgpu::Buffer>,
    dispatches: usize,
}

/// The GPU backend. Cloning is cheap (a handle to one device).
#[derive(Clone)]
pub struct GpuBackend {
    inner: Arc<Inner>,
}

/// A uniform parameter block: u32 words; floats are stored as their bits (`bitcast<f32>` in WGSL).
/// The first word is reserved for `wg_base`, which the launcher fills.
#[derive(Clone, Debug)]
pub struct Params(Vec<u32>);

impl Params {
    pub fn new() -> Params {
        Params(vec![0])
    }
    pub fn u(mut self, v: usize) -> Params {
        self.0.push(v as u32);
        self
    }
    pub fn f(mut self, v: f32) -> Params {
        self.0.push(v.to_bits());
        self
    }
}

impl Default for Params {
    fn default() -> Self {
        Params::new()
    }
}

/// A shader: a name (cache key) and its WGSL source (without the prelude).
#[derive(Clone, Copy)]
pub struct Shader {
    pub name: &'static str,
    pub source: &'static str,
}

/// One storage binding: a whole buffer or a byte range of it (offsets aligned to
/// minStorageBufferOffsetAlignment, 256 bytes on every WebGPU device).
pub enum Binding<'a> {
    Whole(&'a GpuBuffer),
    Range(&'a GpuBuffer, u64, u64),
}

impl GpuBackend {
    /// Open the default adapter. Err (with the reason) where there is none: no WebGPU in this
    /// browser, no Vulkan driver natively.
    pub async fn new(opts: GpuOptions) -> Result<GpuBackend> {
        let instance = wgpu::Instance::new(wgpu::InstanceDescriptor::new_without_display_handle());
        let adapter = instance
            .request_adapter(&wgpu::RequestAdapterOptions {
                power_preference: wgpu::PowerPreference::HighPerformance,
                force_fallback_adapter: false,
                ..Default::default()
            })
            .await
            .map_err(|e| Error::Gpu(format!("no GPU adapter available ({e}); natively install a Vulkan driver (mesa-vulkan-drivers), in a browser enable WebGPU")))?;
        let info = adapter.get_info();
        let mut limits = adapter.limits();
        if let Some(b) = opts.max_storage_binding_bytes {
            limits.max_storage_buffer_binding_size = limits.max_storage_buffer_binding_size.min(b);
            limits.max_buffer_size = limits.max_buffer_size.min(b.max(1 << 20) * 4);
        }
        if let Some(w) = opts.max_workgroups_per_dim {
            limits.max_compute_workgroups_per_dimension =
                limits.max_compute_workgroups_per_dimension.min(w);
        }
        // asked for wherever offered (the fused inference's f16 kernels need it); nothing else
        // changes with it
        let features = adapter.features() & wgpu::Features::SHADER_F16;
        let shader_f16 = !features.is_empty();
        let (device, queue) = adapter
            .request_device(&wgpu::DeviceDescriptor {
                label: Some("nnlab"),
                required_features: features,
                required_limits: limits.clone(),
                ..Default::default()
            })
            .await
            .map_err(|e| {
                Error::Gpu(format!(
                    "could not open the GPU device on {}: {e}",
                    info.name
                ))
            })?;
        let error = Arc::new(Mutex::new(None::<String>));
        let slot = error.clone();
        device.on_uncaptured_error(Arc::new(move |e: wgpu::Error| {
            let mut s = slot.lock().unwrap();
            if s.is_none() {
                *s = Some(e.to_string());
            }
        }));
        Ok(GpuBackend {
            inner: Arc::new(Inner {
                device,
                queue,
                adapter: info,
                limits,
                pool: Arc::new(Pool::default()),
                pipelines: Mutex::new(HashMap::new()),
                error,
                tuner: Tuner::default(),
                pending: Mutex::new(Pending::default()),
                shader_f16,
                f16_inference: AtomicBool::new(shader_f16 && !opts.no_f16 && f16_from_env()),
            }),
        })
    }

    /// Natively: open the adapter, blocking.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn new_blocking(opts: GpuOptions) -> Result<GpuBackend> {
        pollster::block_on(Self::new(opts))
    }

    pub fn device(&self) -> &wgpu::Device {
        &self.inner.device
    }
    pub fn queue(&self) -> &wgpu::Queue {
        &self.inner.queue
    }
    pub fn limits(&self) -> &wgpu::Limits {
        &self.inner.limits
    }
    pub fn adapter_info(&self) -> &wgpu::AdapterInfo {
        &self.inner.adapter
    }
    /// Largest storage binding in bytes (ops split their work to stay under it).
    pub fn max_binding_bytes(&self) -> u64 {
        self.inner.limits.max_storage_buffer_binding_size
    }
    /// Largest binding in f32 elements.
    pub fn max_binding_elems(&self) -> usize {
        (self.max_binding_bytes() / 4) as usize
    }

    /// The device has `shader-f16` (WGSL's `enable f16`).
    pub fn has_shader_f16(&self) -> bool {
        self.inner.shader_f16
    }

    /// Whether the fused inference (`Backend::conv2d_fused` as `DnCnnFused` builds it) stores
    /// its weights and activations as f16, sums in f32: on by default where the device has
    /// `shader-f16` (issue 18: Set12 PSNR moves by far less than the 0.02 dB allowed, see the
    /// README), off with `GpuOptions::no_f16`, `NNLAB_GPU_F16=0` or `set_f16_inference(false)`.
    pub fn f16_inference(&self) -> bool {
        self.inner.f16_inference.load(Ordering::Relaxed)
    }

    /// Switch the f16 inference on or off for fused plans made from now on (every clone of
    /// this backend); an error to switch it on without `shader-f16`.
    pub fn set_f16_inference(&self, on: bool) -> Result<()> {
        if on && !self.inner.shader_f16 {
            return Err(Error::Gpu(format!(
                "f16 inference needs shader-f16, which {} does not offer",
                self.inner.adapter.name
            )));
        }
        self.inner.f16_inference.store(on, Ordering::Relaxed);
        Ok(())
    }

    pub fn info(&self) -> BackendInfo {
        let a = &self.inner.adapter;
        let name = if a.name.is_empty() {
            format!("{:?} adapter", a.backend)
        } else {
            a.name.clone()
        };
        BackendInfo {
            kind: "gpu",
            adapter: name,
            fallback: a.device_type == wgpu::DeviceType::Cpu,
            max_binding_bytes: self.max_binding_bytes(),
            f16_inference: self.f16_inference(),
        }
    }

    /// Return the first wgpu error raised since the last check, as an `Error::Gpu`.
    pub fn check(&self, what: &str) -> Result<()> {
        match self.inner.error.lock().unwrap().take() {
            Some(e) => Err(Error::Gpu(format!("{what}: {e}"))),
            None => Ok(()),
        }
    }

    /// Natively: block until all submitted GPU work is done (for timing in the bench).
    #[cfg(not(target_arch = "wasm32"))]
    pub fn wait(&self) -> Result<()> {
        self.flush();
        self.inner
            .device
            .poll(wgpu::PollType::wait_indefinitely())
            .map_err(|e| Error::Gpu(format!("waiting for the GPU failed: {e}")))?;
        self.check("GPU work")
    }

    /// Resolves when all work submitted so far is done (the browser's onSubmittedWorkDone;
    /// natively a blocking poll): the tuner's clock stops there.
    pub async fn done(&self) -> Result<()> {
        self.flush();
        let done = MapFuture::default();
        let state = done.0.clone();
        self.inner.queue.on_submitted_work_done(move || {
            let mut s = state.lock().unwrap();
            s.0 = Some(Ok(()));
            if let Some(w) = s.1.take() {
                w.wake();
            }
        });
        #[cfg(not(target_arch = "wasm32"))]
        self.wait()?;
        done.await.map_err(Error::Gpu)?;
        self.check("GPU work")
    }

    /// The kernel-variant tuner (src/gpu/tuner.rs).
    pub fn tuner(&self) -> &Tuner {
        &self.inner.tuner
    }

    /// Force a kernel variant, or let the tuner pick per shape class (`Policy::Auto`); the
    /// default comes from `$NNLAB_GPU_VARIANT`. Applies to every clone of this backend.
    pub fn set_kernel_policy(&self, p: Policy) {
        self.inner.tuner.set_policy(p)
    }

    /// Free pooled buffers no tensor uses.
    pub fn trim_pool(&self) {
        self.flush();
        self.inner.pool.clear();
    }

    /// Submit the recorded work (launches and copies collect in one command encoder until a
    /// read, `wait` or this). Reads and `wait` flush by themselves; call this before timing
    /// submitted work another way (e.g. `Queue::on_submitted_work_done`).
    pub fn flush(&self) {
        let mut p = self.inner.pending.lock().unwrap();
        self.submit_locked(&mut p);
    }

    /// Submit `p`'s encoder, if any, and return its uniforms to the pool. The lock is held
    /// across the submit so that work recorded by another caller cannot overtake it.
    fn submit_locked(&self, p: &mut Pending) {
        if let Some(enc) = p.encoder.take() {
            self.inner.queue.submit([enc.finish()]);
        }
        p.dispatches = 0;
        // reusing a uniform buffer is ordered after this submit (queue writes land before the
        // next submit's commands), so it may go back to the pool at once
        for u in p.uniforms.drain(..) {
            drop(GpuBuffer::new(u, 0, &self.inner.pool));
        }
    }

    fn new_encoder(&self) -> wgpu::CommandEncoder {
        self.inner
            .device
            .create_command_encoder(&Default::default())
    }

    // ------------------------------------------------------------------ buffers

    /// A new (uninitialised or recycled) buffer for `len` f32 elements. Errors when it exceeds
    /// the device's largest buffer.
    pub fn alloc(&self, len: usize) -> Result<GpuBuffer> {
        let bytes = bytes_for(len);
        if bytes > self.inner.limits.max_buffer_size {
            return Err(Error::Gpu(format!(
                "a tensor of {len} floats ({:.1} MiB) exceeds this device's largest buffer ({:.1} MiB); use a smaller batch or image tile",
                bytes as f64 / 1048576.0,
                self.inner.limits.max_buffer_size as f64 / 1048576.0
            )));
        }
        let b = self
            .inner
            .pool
            .take(&self.inner.device, bytes, STORAGE_USAGE);
        Ok(GpuBuffer::new(b, len, &self.inner.pool))
    }

    /// A tensor over a fresh buffer; contents unspecified (the op writes all of it).
    pub fn empty(&self, shape: &[usize]) -> Result<Tensor> {
        Ok(Tensor::from_storage(
            shape,
            Storage::Gpu(Arc::new(self.alloc(numel(shape))?)),
        ))
    }

    /// A tensor of f16 values (`Storage::GpuF16`) over a fresh buffer; contents unspecified.
    pub fn empty_f16(&self, shape: &[usize]) -> Result<Tensor> {
        let words = numel(shape).div_ceil(2);
        Ok(Tensor::from_storage(
            shape,
            Storage::GpuF16(Arc::new(self.alloc(words)?)),
        ))
    }

    pub fn tensor(&self, shape: &[usize], buf: GpuBuffer) -> Tensor {
        Tensor::from_storage(shape, Storage::Gpu(Arc::new(buf)))
    }

    pub fn upload(&self, shape: &[usize], data: &[f32]) -> Result<Tensor> {
        crate::tensor::non_empty(shape, "upload")?;
        if numel(shape) != data.len() {
            return Err(Error::Shape(format!(
                "upload: shape {shape:?} needs {} values, got {}",
                numel(shape),
                data.len()
            )));
        }
        let buf = self.alloc(data.len())?;
        // A queue write lands before everything of the next submit, but recorded work may still
        // read this buffer's earlier life in the pool: submit that work first.
        let mut p = self.inner.pending.lock().unwrap();
        self.submit_locked(&mut p);
        if !data.is_empty() {
            self.inner
                .queue
                .write_buffer(buf.raw(), 0, bytemuck::cast_slice(data));
        }
        drop(p);
        Ok(self.tensor(shape, buf))
    }

    /// Read a whole tensor back (see `read_buffer`).
    pub fn read_tensor<'a>(
        &'a self,
        t: &'a Tensor,
    ) -> crate::backend::LocalBoxFuture<'a, Result<Vec<f32>>> {
        Box::pin(async move {
            let mut out = self.read_tensors(&[t]).await?;
            Ok(out.pop().unwrap_or_default())
        })
    }

    pub fn read_tensors<'a>(
        &'a self,
        ts: &'a [&'a Tensor],
    ) -> crate::backend::LocalBoxFuture<'a, Result<Vec<Vec<f32>>>> {
        Box::pin(async move {
            let bufs = ts
                .iter()
                .map(|t| {
                    let (b, f16) = t.gpu_buffer_any("read")?;
                    Ok((b, t.numel(), f16))
                })
                .collect::<Result<Vec<_>>>()?;
            // an f16 tensor is read as its 32-bit words and unpacked here
            let srcs: Vec<(&GpuBuffer, usize)> = bufs
                .iter()
                .map(|(b, n, f16)| (&**b, if *f16 { n.div_ceil(2) } else { *n }))
                .collect();
            let words = self.read_buffers(&srcs).await?;
            Ok(words
                .into_iter()
                .zip(&bufs)
                .map(|(w, (_, n, f16))| if *f16 { unpack_f16(&w, *n) } else { w })
                .collect())
        })
    }

    /// Copy `len` floats from `src[src_off..]` to `dst[dst_off..]` on the GPU.
    pub fn copy_elems(
        &self,
        src: &GpuBuffer,
        src_off: usize,
        dst: &GpuBuffer,
        dst_off: usize,
        len: usize,
    ) -> Result<()> {
        if src_off + len > src.len() || dst_off + len > dst.len() {
            return Err(Error::Invalid(format!(
                "GPU copy out of range: {len} floats from {src_off} of {} to {dst_off} of {}",
                src.len(),
                dst.len()
            )));
        }
        if len == 0 {
            return Ok(());
        }
        let mut p = self.inner.pending.lock().unwrap();
        p.encoder
            .get_or_insert_with(|| self.new_encoder())
            .copy_buffer_to_buffer(
                src.raw(),
                src_off as u64 * 4,
                dst.raw(),
                dst_off as u64 * 4,
                Some(len as u64 * 4),
            );
        drop(p);
        self.check("GPU copy")
    }

    /// Read `len` floats of a buffer back. Waits asynchronously for the GPU (map_async): on the
    /// web the browser's event loop drives it; natively this polls the device.
    pub async fn read_buffer(&self, src: &GpuBuffer, len: usize) -> Result<Vec<f32>> {
        let mut out = self.read_buffers(&[(src, len)]).await?;
        Ok(out.pop().unwrap_or_default())
    }

    /// Read the first `len` floats of each buffer back, with one staging buffer and one map
    /// for all of them.
    pub async fn read_buffers(&self, srcs: &[(&GpuBuffer, usize)]) -> Result<Vec<Vec<f32>>> {
        let total: usize = srcs.iter().map(|(_, n)| n).sum();
        if total == 0 {
            return Ok(srcs.iter().map(|_| vec![]).collect());
        }
        for (src, len) in srcs {
            if *len > src.len() {
                return Err(Error::Invalid(format!(
                    "GPU read of {len} floats from a buffer of {}",
                    src.len()
                )));
            }
        }
        let bytes = total as u64 * 4;
        let staging = self.inner.pool.take(
            &self.inner.device,
            bytes_for(total),
            wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
        );
        // the copies join the recorded work, and all of it is submitted at once
        {
            let mut p = self.inner.pending.lock().unwrap();
            let enc = p.encoder.get_or_insert_with(|| self.new_encoder());
            let mut off = 0u64;
            for (src, len) in srcs {
                if *len > 0 {
                    enc.copy_buffer_to_buffer(src.raw(), 0, &staging, off, Some(*len as u64 * 4));
                }
                off += *len as u64 * 4;
            }
            self.submit_locked(&mut p);
        }
        self.check("GPU read")?;
        let done = MapFuture::default();
        let state = done.0.clone();
        staging.map_async(wgpu::MapMode::Read, 0..bytes, move |r| {
            let mut s = state.lock().unwrap();
            s.0 = Some(r.map_err(|e| e.to_string()));
            if let Some(w) = s.1.take() {
                w.wake();
            }
        });
        #[cfg(not(target_arch = "wasm32"))]
        self.inner
            .device
            .poll(wgpu::PollType::wait_indefinitely())
            .map_err(|e| Error::Gpu(format!("waiting for the GPU failed: {e}")))?;
        done.await
            .map_err(|e| Error::Gpu(format!("reading a GPU buffer failed: {e}")))?;
        // In the browser validation errors arrive asynchronously; by the time the map completed,
        // those of all earlier work have, so a read never returns data from a rejected op.
        if let Err(e) = self.check("GPU work before this read") {
            staging.unmap();
            return Err(e);
        }
        let out = {
            let view = staging
                .get_mapped_range(0..bytes)
                .map_err(|e| Error::Gpu(format!("reading a GPU buffer failed: {e}")))?;
            let all = bytemuck::cast_slice::<u8, f32>(&view);
            let mut at = 0;
            srcs.iter()
                .map(|(_, len)| {
                    at += len;
                    all[at - len..at].to_vec()
                })
                .collect()
        };
        staging.unmap();
        // the staging buffer goes back to the pool through a temporary owner
        drop(GpuBuffer::new(staging, total, &self.inner.pool));
        Ok(out)
    }

    // ------------------------------------------------------------------ launching

    fn pipeline(&self, shader: Shader, entry: &'static str) -> Result<wgpu::ComputePipeline> {
        let key = (shader.name, entry);
        if let Some(p) = self.inner.pipelines.lock().unwrap().get(&key) {
            return Ok(p.clone());
        }
        // an `enable` directive (f16 shaders) must come before every declaration
        let src = match shader.source.strip_prefix("enable f16;") {
            Some(rest) => format!("enable f16;\n{PRELUDE}\n{rest}"),
            None => format!("{PRELUDE}\n{}", shader.source),
        };
        let module = self
            .inner
            .device
            .create_shader_module(wgpu::ShaderModuleDescriptor {
                label: Some(shader.name),
                source: wgpu::ShaderSource::Wgsl(src.into()),
            });
        let pipeline =
            self.inner
                .device
                .create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
                    label: Some(entry),
                    layout: None,
                    module: &module,
                    entry_point: Some(entry),
                    compilation_options: Default::default(),
                    cache: None,
                });
        self.check(&format!("compiling {}::{entry}", shader.name))?;
        self.inner
            .pipelines
            .lock()
            .unwrap()
            .insert(key, pipeline.clone());
        Ok(pipeline)
    }

    /// Run `entry` of `shader` over `workgroups` workgroups (linear count; see the module doc),
    /// with `params` at binding 0 and `bindings` at 1, 2, ...
    pub fn launch(
        &self,
        shader: Shader,
        entry: &'static str,
        params: &Params,
        bindings: &[Binding<'_>],
        workgroups: usize,
    ) -> Result<()> {
        if workgroups == 0 {
            return Ok(());
        }
        let max_binding = self.max_binding_bytes();
        for b in bindings {
            let size = match b {
                Binding::Whole(g) => g.raw().size(),
                Binding::Range(_, _, s) => *s,
            };
            if size > max_binding {
                return Err(Error::Gpu(format!(
                    "{}::{entry}: a binding of {:.1} MiB exceeds the device limit of {:.1} MiB (the op should have split its work)",
                    shader.name,
                    size as f64 / 1048576.0,
                    max_binding as f64 / 1048576.0
                )));
            }
        }
        let pipeline = self.pipeline(shader, entry)?;
        let layout = pipeline.get_bind_group_layout(0);
        let max_dim = self
            .inner
            .limits
            .max_compute_workgroups_per_dimension
            .max(1) as usize;
        let per_dispatch = max_dim * max_dim;
        let mut p = self.inner.pending.lock().unwrap();
        let p = &mut *p;
        let enc = p.encoder.get_or_insert_with(|| self.new_encoder());
        let mut base = 0usize;
        while base < workgroups {
            let count = (workgroups - base).min(per_dispatch);
            let mut words = params.0.clone();
            words[0] = base as u32;
            while words.len() % 4 != 0 {
                words.push(0);
            }
            let ubytes = words.len() as u64 * 4;
            let ubuf = self.inner.pool.take(
                &self.inner.device,
                ubytes,
                wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::COPY_DST,
            );
            self.inner
                .queue
                .write_buffer(&ubuf, 0, bytemuck::cast_slice(&words));
            let mut entries = vec![wgpu::BindGroupEntry {
                binding: 0,
                resource: ubuf.as_entire_binding(),
            }];
            for (i, b) in bindings.iter().enumerate() {
                let resource = match b {
                    Binding::Whole(g) => g.raw().as_entire_binding(),
                    Binding::Range(g, off, size) => {
                        wgpu::BindingResource::Buffer(wgpu::BufferBinding {
                            buffer: g.raw(),
                            offset: *off,
                            size: wgpu::BufferSize::new(*size),
                        })
                    }
                };
                entries.push(wgpu::BindGroupEntry {
                    binding: i as u32 + 1,
                    resource,
                });
            }
            let group = self
                .inner
                .device
                .create_bind_group(&wgpu::BindGroupDescriptor {
                    label: None,
                    layout: &layout,
                    entries: &entries,
                });
            {
                let mut pass = enc.begin_compute_pass(&wgpu::ComputePassDescriptor {
                    label: Some(entry),
                    timestamp_writes: None,
                });
                pass.set_pipeline(&pipeline);
                pass.set_bind_group(0, &group, &[]);
                let x = count.min(max_dim);
                let y = count.div_ceil(x);
                pass.dispatch_workgroups(x as u32, y as u32, 1);
            }
            // kept until the encoder is submitted, then back to the pool
            p.uniforms.push(ubuf);
            p.dispatches += 1;
            base += count;
        }
        if p.dispatches >= MAX_PENDING_DISPATCHES {
            self.submit_locked(p);
        }
        self.check(&format!("{}::{entry}", shader.name))
    }
}

/// `n` f16 values from the 32-bit words that hold them (element 2i in the low half of word i),
/// as f32.
fn unpack_f16(words: &[f32], n: usize) -> Vec<f32> {
    words
        .iter()
        .flat_map(|w| {
            let bits = w.to_bits();
            [bits as u16, (bits >> 16) as u16]
        })
        .take(n)
        .map(|h| half::f16::from_bits(h).to_f32())
        .collect()
}

/// `$NNLAB_GPU_F16` natively: `0`/`off` runs the fused inference in f32 on an adapter with
/// `shader-f16`; unset or `1`/`on` leaves it on (a bad value is reported once on stderr).
fn f16_from_env() -> bool {
    #[cfg(not(target_arch = "wasm32"))]
    if let Ok(v) = std::env::var("NNLAB_GPU_F16") {
        match v.trim().to_ascii_lowercase().as_str() {
            "0" | "off" | "false" | "no" => return false,
            "1" | "on" | "true" | "yes" | "" => return true,
            other => {
                eprintln!("NNLAB_GPU_F16: {other:?} is not 0 or 1; f16 stays on where offered")
            }
        }
    }
    true
}

/// A one-shot future completed by the map_async callback.
#[derive(Default)]
struct MapFuture(Arc<Mutex<(Option<std::result::Result<(), String>>, Option<Waker>)>>);

impl Future for MapFuture {
    type Output = std::result::Result<(), String>;
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut s = self.0.lock().unwrap();
        match s.0.take() {
            Some(r) => Poll::Ready(r),
            None => {
                s.1 = Some(cx.waker().clone());
                Poll::Pending
            }
        }
    }
}
