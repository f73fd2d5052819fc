//! The CPU backend: the reference every GPU kernel is tested against, the fallback where a
//! browser has no WebGPU, and natively (im2col + the `gemm` crate, rayon threads) a practical
//! trainer on machines without a GPU. On wasm32 the GEMM is our own simd128 kernel (gemm_wasm.rs) and work is serial.

mod ops;

#[cfg(target_arch = "x86_64")]
mod avx512;

pub mod batchnorm;
pub mod conv;
mod conv_strided;
#[cfg(target_arch = "x86_64")]
mod conv_winograd;
mod deconv;
#[cfg(target_arch = "x86_64")]
mod deconv_winograd;
pub mod elementwise;
#[cfg(target_arch = "x86_64")]
mod gemm_small;
#[cfg(target_arch = "wasm32")]
pub mod gemm_wasm;
pub mod optim;
pub mod random;
pub mod reduce;
pub(crate) mod simd;
#[cfg(any(target_arch = "x86_64", target_arch = "wasm32"))]
mod winograd_g;
#[cfg(target_arch = "x86_64")]
mod winograd_transforms;
#[cfg(target_arch = "wasm32")]
pub mod winograd_wasm;

use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};

use crate::backend::{BackendInfo, LocalBoxFuture};
use crate::tensor::{Storage, Tensor};
use crate::{Error, Result};

#[derive(Clone, Debug, Default)]
pub struct CpuBackend;

impl CpuBackend {
    pub fn new() -> CpuBackend {
        CpuBackend
    }
    pub fn upload(&self, shape: &[usize], data: &[f32]) -> Result<Tensor> {
        elementwise::upload(shape, data)
    }
    /// Read a tensor back: immediate on the CPU, a future only to share the trait's signature.
    pub fn read_tensor<'a>(&'a self, t: &'a Tensor) -> LocalBoxFuture<'a, Result<Vec<f32>>> {
        Box::pin(async move { elementwise::read(t) })
    }
    pub fn read_tensors<'a>(
        &'a self,
        ts: &'a [&'a Tensor],
    ) -> LocalBoxFuture<'a, Result<Vec<Vec<f32>>>> {
        Box::pin(async move { ts.iter().map(|t| elementwise::read(t)).collect() })
    }
    pub fn info(&self) -> BackendInfo {
        BackendInfo {
            kind: "cpu",
            adapter: if cfg!(target_arch = "wasm32") {
                "wasm".into()
            } else {
                "native".into()
            },
            fallback: false,
            max_binding_bytes: u64::MAX,
            f16_inference: false,
        }
    }
}

/// Keep the memory of freed tensors in the process (glibc's malloc), for a long run of
/// same-sized ops (a training loop): a step allocates and frees each activation and gradient
/// (a DnCNN's are 20 MB each), and with glibc's defaults such blocks go back to the kernel
/// when freed (mmap, or a trim of the heap), so every op paid for fresh zeroed pages: page
/// faults took about 10% of a DnCNN training step at 2 threads. With blocks up to 32 MiB (the
/// most glibc allows) taken from the heap and no trimming, they are reused. Larger blocks (a
/// photo's planes) still come from mmap and return at once. Called by the CLI at start-up; a
/// no-op elsewhere.
pub fn keep_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        extern "C" {
            fn mallopt(param: std::ffi::c_int, value: std::ffi::c_int) -> std::ffi::c_int;
        }
        const M_TRIM_THRESHOLD: std::ffi::c_int = -1;
        const M_MMAP_THRESHOLD: std::ffi::c_int = -3;
        // SAFETY: mallopt only changes glibc malloc's tuning parameters; called before the
        // program's threads start.
        unsafe {
            mallopt(M_MMAP_THRESHOLD, 32 << 20);
            mallopt(M_TRIM_THRESHOLD, std::ffi::c_int::MAX);
        }
    }
}

// ---------------------------------------------------------------- host storage helpers

/// A new CPU tensor owning `data` (callers guarantee data.len() == numel(shape)).
pub(crate) fn new_tensor(shape: &[usize], data: Vec<f32>) -> Tensor {
    debug_assert_eq!(data.len(), crate::tensor::numel(shape));
    Tensor::from_storage(shape, Storage::Cpu(Arc::new(RwLock::new(data))))
}

/// The host storage of a CPU tensor, checked to hold exactly numel(shape) values.
pub(crate) struct Host {
    data: Arc<RwLock<Vec<f32>>>,
    op: String,
}

pub(crate) fn host(t: &Tensor, op: &str) -> Result<Host> {
    let h = Host {
        data: t.cpu_data(op)?,
        op: op.to_string(),
    };
    let len = h.read()?.len();
    if len != t.numel() {
        return Err(Error::Invalid(format!(
            "{op}: tensor {:?} has storage of {len} values",
            t.shape()
        )));
    }
    Ok(h)
}

impl Host {
    pub(crate) fn read(&self) -> Result<RwLockReadGuard<'_, Vec<f32>>> {
        self.data.read().map_err(|_| {
            Error::Invalid(format!(
                "{}: tensor storage poisoned by an earlier panic",
                self.op
            ))
        })
    }
    pub(crate) fn write(&self) -> Result<RwLockWriteGuard<'_, Vec<f32>>> {
        self.data.write().map_err(|_| {
            Error::Invalid(format!(
                "{}: tensor storage poisoned by an earlier panic",
                self.op
            ))
        })
    }
    /// True when both handles share one storage (in-place ops must refuse aliasing: it would deadlock).
    pub(crate) fn same(&self, other: &Host) -> bool {
        Arc::ptr_eq(&self.data, &other.data)
    }
}

/// A copy of a CPU tensor's values.
pub(crate) fn to_vec(t: &Tensor, op: &str) -> Result<Vec<f32>> {
    Ok(host(t, op)?.read()?.clone())
}

// ---------------------------------------------------------------- GEMM and threads

/// c (m x n) = a (m x k) * b (k x n), plus the old c when `acc`. Each matrix is a slice with
/// (row stride, column stride), so transposes cost nothing. `par` lets the GEMM use all threads
/// (natively); callers that already run one GEMM per thread pass false.
#[allow(clippy::too_many_arguments)]
pub(crate) fn sgemm(
    m: usize,
    n: usize,
    k: usize,
    a: (&[f32], usize, usize),
    b: (&[f32], usize, usize),
    c: (&mut [f32], usize, usize),
    acc: bool,
    par: bool,
) {
    if m == 0 || n == 0 {
        return;
    }
    let last = |r: usize, cc: usize, (rs, cs): (usize, usize)| (r - 1) * rs + (cc - 1) * cs;
    // Internal invariants (shapes were validated by the callers): out-of-bounds here is a bug.
    assert!(c.0.len() > last(m, n, (c.1, c.2)), "sgemm: c too small");
    // SAFETY: c's bounds were checked above and it is borrowed mutably (no aliasing);
    // sgemm_ptr checks a and b and handles k == 0.
    unsafe { sgemm_ptr(m, n, k, a, b, (c.0.as_mut_ptr(), c.1, c.2), acc, par) }
}

/// [`sgemm`] writing through a raw pointer, for work items that each fill a disjoint part of
/// one output (a block of columns of every row), which no `&mut` slice can describe.
///
/// # Safety
/// `c` must be valid for reads and writes at every (i * rs + j * cs), i < m, j < n, and no
/// other thread may access those elements during the call.
#[allow(clippy::too_many_arguments)]
pub(crate) unsafe fn sgemm_ptr(
    m: usize,
    n: usize,
    k: usize,
    a: (&[f32], usize, usize),
    b: (&[f32], usize, usize),
    c: (*mut f32, usize, usize),
    acc: bool,
    par: bool,
) {
    if m == 0 || n == 0 {
        return;
    }
    let last = |r: usize, cc: usize, (rs, cs): (usize, usize)| (r - 1) * rs + (cc - 1) * cs;
    if k == 0 {
        if !acc {
            for i in 0..m {
                for j in 0..n {
                    *c.0.add(i * c.1 + j * c.2) = 0.0;
                }
            }
        }
        return;
    }
    assert!(a.0.len() > last(m, k, (a.1, a.2)), "sgemm: a too small");
    assert!(b.0.len() > last(k, n, (b.1, b.2)), "sgemm: b too small");
    gemm_impl(m, n, k, a, b, c, acc, par);
}

/// # Safety
/// a and b hold every element the strides reach; c is valid for them and not shared.
#[cfg(not(target_arch = "wasm32"))]
#[allow(clippy::too_many_arguments)]
unsafe fn gemm_impl(
    m: usize,
    n: usize,
    k: usize,
    a: (&[f32], usize, usize),
    b: (&[f32], usize, usize),
    c: (*mut f32, usize, usize),
    acc: bool,
    par: bool,
) {
    let par = if par && rayon::current_num_threads() > 1 {
        gemm::Parallelism::Rayon(0)
    } else {
        gemm::Parallelism::None
    };
    // SAFETY: the bounds of every matrix were checked by the callers; c does not alias a or b.
    // gemm computes dst = alpha*dst + beta*lhs*rhs (dst read when acc).
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            c.0,
            c.2 as isize,
            c.1 as isize,
            acc,
            a.0.as_ptr(),
            a.2 as isize,
            a.1 as isize,
            b.0.as_ptr(),
            b.2 as isize,
            b.1 as isize,
            1.0f32,
            1.0f32,
            false,
            false,
            false,
            par,
        );
    }
}

/// # Safety
/// As the native `gemm_impl`.
#[cfg(target_arch = "wasm32")]
#[allow(clippy::too_many_arguments)]
unsafe fn gemm_impl(
    m: usize,
    n: usize,
    k: usize,
    a: (&[f32], usize, usize),
    b: (&[f32], usize, usize),
    c: (*mut f32, usize, usize),
    acc: bool,
    _par: bool,
) {
    // SAFETY: as this function's contract (the caller's)
    unsafe { gemm_wasm::sgemm_raw(m, n, k, a, b, c, acc) }
}

/// Number of worker threads (1 on wasm32).
pub(crate) fn threads() -> usize {
    #[cfg(not(target_arch = "wasm32"))]
    {
        rayon::current_num_threads()
    }
    #[cfg(target_arch = "wasm32")]
    {
        1
    }
}

/// f(chunk index, chunk) over `out` split in chunks of `chunk_len`, in parallel natively.
pub(crate) fn par_chunks<F>(out: &mut [f32], chunk_len: usize, f: F)
where
    F: Fn(usize, &mut [f32]) + Sync + Send,
{
    let chunk_len = chunk_len.max(1);
    #[cfg(not(target_arch = "wasm32"))]
    {
        use rayon::prelude::*;
        out.par_chunks_mut(chunk_len)
            .enumerate()
            .for_each(|(i, c)| f(i, c));
    }
    #[cfg(target_arch = "wasm32")]
    {
        out.chunks_mut(chunk_len)
            .enumerate()
            .for_each(|(i, c)| f(i, c));
    }
}

/// A new vector of `n` values written by f(start, out), which must write every element of
/// `out` (the values start..start + out.len()). No zero fill first: an op that overwrites its
/// output pays one pass over memory, not two. Natively the vector is split in chunks of
/// `chunk` over the threads; when it is not larger than one chunk (or one thread runs), f runs
/// once on the calling thread (no task hand-off for small tensors).
pub(crate) fn build_vec<F>(n: usize, chunk: usize, f: F) -> Vec<f32>
where
    F: Fn(usize, &mut [std::mem::MaybeUninit<f32>]) + Sync + Send,
{
    let chunk = chunk.max(1);
    let mut v = Vec::with_capacity(n);
    let out = &mut v.spare_capacity_mut()[..n];
    if n <= chunk || threads() == 1 {
        f(0, out);
    } else {
        #[cfg(not(target_arch = "wasm32"))]
        {
            use rayon::prelude::*;
            out.par_chunks_mut(chunk)
                .enumerate()
                .for_each(|(i, c)| f(i * chunk, c));
        }
        #[cfg(target_arch = "wasm32")]
        f(0, out);
    }
    // SAFETY: f wrote all n values (its contract); capacity is n.
    unsafe { v.set_len(n) };
    v
}

/// f(i) for i in 0..count, in parallel natively (each index is one task: give it real work).
pub(crate) fn par_for<F>(count: usize, f: F)
where
    F: Fn(usize) + Sync + Send,
{
    #[cfg(not(target_arch = "wasm32"))]
    {
        use rayon::prelude::*;
        (0..count).into_par_iter().with_max_len(1).for_each(f);
    }
    #[cfg(target_arch = "wasm32")]
    {
        (0..count).for_each(f);
    }
}

thread_local! {
    /// Per-thread scratch (im2col blocks, packed operands): allocated once per thread, then
    /// reused by every op; a stack, so that a nested use gets a buffer of its own.
    static SCRATCH: std::cell::RefCell<Vec<Vec<f32>>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// f(a scratch slice of `len` floats, contents unspecified). The thread's buffers are reused
/// (grown when too small); a nested call on the same thread (an op that holds one while its
/// parallel loop runs part of its work on this thread, or rayon running another task while
/// one waits) takes the next buffer of the thread's stack, kept as well.
pub(crate) fn with_scratch<R>(len: usize, f: impl FnOnce(&mut [f32]) -> R) -> R {
    let mut buf = SCRATCH.with(|s| s.borrow_mut().pop()).unwrap_or_default();
    if buf.len() < len {
        buf.resize(len, 0.0);
    }
    let r = f(&mut buf[..len]);
    SCRATCH.with(|s| s.borrow_mut().push(buf));
    r
}

/// Run `f` (a whole command) on a thread of rayon's pool, natively: each op's parallel loop
/// then runs part of its work on the calling thread and hands the rest to the other workers,
/// as OpenMP's master thread does. Called from another thread, every op was handed to the
/// pool and the caller slept until it was done: two thread wake-ups per op, which a GAN step
/// of ~100 small ops paid at one thread as well. In wasm, `f()` (no pool).
pub fn on_worker_thread<R: Send>(f: impl FnOnce() -> R + Send) -> R {
    #[cfg(not(target_arch = "wasm32"))]
    {
        rayon::scope(|_| f())
    }
    #[cfg(target_arch = "wasm32")]
    {
        f()
    }
}

/// (0..count).map(f).collect(), in parallel natively.
pub(crate) fn par_map<T: Send, F>(count: usize, f: F) -> Vec<T>
where
    F: Fn(usize) -> T + Sync + Send,
{
    #[cfg(not(target_arch = "wasm32"))]
    {
        use rayon::prelude::*;
        (0..count).into_par_iter().map(f).collect()
    }
    #[cfg(target_arch = "wasm32")]
    {
        (0..count).map(f).collect()
    }
}
