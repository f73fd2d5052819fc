//! Kernel variants and the autotuner that picks one per shape class.
//!
//! The matmul and the three conv kernels each come in two variants: `Blocked` (register-blocked,
//! no workgroup memory: shaders/matmul.wgsl, shaders/conv2d.wgsl; shaped for software
//! rasterisers) and `Tiled` (workgroup-memory tiled implicit GEMM: shaders/matmul_tiled.wgsl,
//! shaders/conv2d_tiled.wgsl; shaped for real GPUs). Both give the same results up to float
//! rounding (the GPU-vs-CPU sweeps run once per variant).
//!
//! Policy (`NNLAB_GPU_VARIANT=blocked|tiled|auto`, or `GpuBackend::set_kernel_policy`): a forced
//! variant, or `auto` (the default): at the first use of a *shape class* (op, operand layout and
//! each size bucketed to a power of two, see the launchers' `class_key`), natively, the op runs
//! every variant once to warm up (pipeline compilation) and twice timed (wall clock around the
//! device's completion, the variants in turn, each one's best kept), keeps the fastest and
//! returns its result; later ops of that class run the winner. A tuning pass of a class
//! therefore costs about six runs of one op, once per process. (Timestamp queries are not used:
//! the wall clock around completion is what a user waits for, and every adapter has it.)
//!
//! In the browser an op cannot wait for the GPU (the worker must not block), so `auto` there
//! never tunes inside an op: an unknown class runs `Blocked` and is remembered as pending with a
//! replay (its shapes, no data); `tune_pending` (the wasm binding `gpu_tune`, called by the
//! bench page, never by the tabs) times the variants of the pending classes on zero-filled
//! inputs, awaiting the queue between runs. The table is exported and imported as JSON
//! (`to_json` / `load_json`: the page keeps it in localStorage per adapter), so a visitor's
//! choices survive reloads and no tab ever freezes for a tuning pass.

use std::collections::BTreeMap;
use std::sync::Mutex;

use crate::{Error, Result};

/// A kernel variant (see the module doc).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Variant {
    Blocked,
    Tiled,
}

impl Variant {
    pub const ALL: [Variant; 2] = [Variant::Blocked, Variant::Tiled];

    pub fn name(self) -> &'static str {
        match self {
            Variant::Blocked => "blocked",
            Variant::Tiled => "tiled",
        }
    }

    pub fn parse(s: &str) -> Option<Variant> {
        Variant::ALL.into_iter().find(|v| v.name() == s)
    }
}

/// Which variant the launchers run: one forced, or the tuner's pick per shape class.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Policy {
    Auto,
    Force(Variant),
}

impl Policy {
    /// `blocked`, `tiled` or `auto`.
    pub fn parse(s: &str) -> Result<Policy> {
        match s.trim() {
            "auto" | "" => Ok(Policy::Auto),
            v => Variant::parse(v).map(Policy::Force).ok_or_else(|| {
                Error::Invalid(format!(
                    "unknown GPU kernel variant {v:?}: use blocked, tiled or auto"
                ))
            }),
        }
    }

    /// `$NNLAB_GPU_VARIANT` (auto when unset or not understood; natively a bad value is
    /// reported once on stderr rather than failing every op).
    pub fn from_env() -> Policy {
        #[cfg(not(target_arch = "wasm32"))]
        if let Ok(v) = std::env::var("NNLAB_GPU_VARIANT") {
            return Policy::parse(&v).unwrap_or_else(|e| {
                eprintln!("NNLAB_GPU_VARIANT: {e}; using auto");
                Policy::Auto
            });
        }
        Policy::Auto
    }

    pub fn name(self) -> &'static str {
        match self {
            Policy::Auto => "auto",
            Policy::Force(v) => v.name(),
        }
    }
}

/// Re-runs one op of a shape class on fresh inputs with a given variant (browser tuning).
pub type Replay = Box<dyn Fn(&super::GpuBackend, Variant) -> Result<()> + Send>;

/// The tuner's state: the policy, the winner per shape class, the classes awaiting a tuning
/// pass (browser only).
pub struct Tuner {
    policy: Mutex<Policy>,
    table: Mutex<BTreeMap<String, Variant>>,
    pending: Mutex<Vec<(String, Replay)>>,
    /// tune inside the op at a class's first use (natively) or defer to `tune_pending` (always
    /// in the browser, where an op cannot wait; natively on request, to test that path)
    deferred: Mutex<bool>,
}

impl Default for Tuner {
    fn default() -> Self {
        Tuner {
            policy: Mutex::new(Policy::from_env()),
            table: Mutex::new(BTreeMap::new()),
            pending: Mutex::new(Vec::new()),
            deferred: Mutex::new(cfg!(target_arch = "wasm32")),
        }
    }
}

impl Tuner {
    /// Natively: defer tuning to `tune_pending` as the browser does (true) or tune inside the
    /// op (false, the default). In the browser tuning is always deferred.
    pub fn set_deferred(&self, d: bool) {
        *self.deferred.lock().unwrap() = d || cfg!(target_arch = "wasm32");
    }
    fn deferred(&self) -> bool {
        *self.deferred.lock().unwrap()
    }
    pub fn policy(&self) -> Policy {
        *self.policy.lock().unwrap()
    }
    pub fn set_policy(&self, p: Policy) {
        *self.policy.lock().unwrap() = p;
    }
    pub fn choice(&self, key: &str) -> Option<Variant> {
        self.table.lock().unwrap().get(key).copied()
    }
    pub fn record(&self, key: &str, v: Variant) {
        self.table.lock().unwrap().insert(key.to_string(), v);
    }
    /// Number of classes awaiting a tuning pass.
    pub fn pending(&self) -> usize {
        self.pending.lock().unwrap().len()
    }
    pub fn add_pending(&self, key: &str, replay: Replay) {
        let mut p = self.pending.lock().unwrap();
        if !p.iter().any(|(k, _)| k == key) {
            p.push((key.to_string(), replay));
        }
    }
    pub fn take_pending(&self) -> Vec<(String, Replay)> {
        std::mem::take(&mut *self.pending.lock().unwrap())
    }

    /// The table as JSON: `{"class": "variant", ...}` (class keys hold only [a-z0-9_/.-]).
    pub fn to_json(&self) -> String {
        let t = self.table.lock().unwrap();
        let body: Vec<String> = t
            .iter()
            .map(|(k, v)| format!("\"{k}\":\"{}\"", v.name()))
            .collect();
        format!("{{{}}}", body.join(","))
    }

    /// Merge a table written by `to_json`; returns how many choices it held. Anything else
    /// (a table from an older version, a hand edit) is an error and changes nothing.
    pub fn load_json(&self, json: &str) -> Result<usize> {
        let bad =
            || Error::Invalid("the GPU tuner table is not {\"class\": \"variant\", ...}".into());
        let s = json.trim();
        let inner = s
            .strip_prefix('{')
            .and_then(|s| s.strip_suffix('}'))
            .ok_or_else(bad)?;
        let mut got = Vec::new();
        for pair in inner.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (k, v) = pair.split_once(':').ok_or_else(bad)?;
            let unq = |x: &str| {
                x.trim()
                    .strip_prefix('"')
                    .and_then(|x| x.strip_suffix('"'))
                    .map(str::to_string)
            };
            let (k, v) = (unq(k).ok_or_else(bad)?, unq(v).ok_or_else(bad)?);
            let ok_key = !k.is_empty()
                && k.chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "_/.-".contains(c));
            if !ok_key {
                return Err(bad());
            }
            got.push((k, Variant::parse(&v).ok_or_else(bad)?));
        }
        let n = got.len();
        let mut t = self.table.lock().unwrap();
        for (k, v) in got {
            t.insert(k, v);
        }
        Ok(n)
    }
}

/// A size bucketed to the next power of two (a shape class spans sizes within 2x).
pub fn bucket(n: usize) -> usize {
    n.max(1).next_power_of_two()
}

impl super::GpuBackend {
    /// Run an op with the variant the policy and the tuner pick for its shape class `key`.
    /// `run` enqueues the op with a given variant; `replay` (deferred tuning: the browser)
    /// re-runs the class on fresh inputs for a later tuning pass.
    pub(crate) fn run_tuned<T>(
        &self,
        key: &str,
        run: &mut dyn FnMut(Variant) -> Result<T>,
        replay: impl FnOnce() -> Replay,
    ) -> Result<T> {
        let tuner = self.tuner();
        if let Policy::Force(v) = tuner.policy() {
            return run(v);
        }
        if let Some(v) = tuner.choice(key) {
            return run(v);
        }
        if tuner.deferred() {
            tuner.add_pending(key, replay());
            return run(Variant::Blocked);
        }
        #[cfg(target_arch = "wasm32")]
        unreachable!("tuning is always deferred in the browser");
        #[cfg(not(target_arch = "wasm32"))]
        {
            // warm-up (compiles the pipelines), then two timed rounds over the variants in
            // turn, each variant's best kept: a busy machine's noise hits both alike
            let mut secs = [f64::INFINITY; Variant::ALL.len()];
            let mut last = None;
            for round in 0..3 {
                for (i, v) in Variant::ALL.into_iter().enumerate() {
                    let t0 = std::time::Instant::now();
                    let out = run(v)?;
                    self.wait()?;
                    if round > 0 {
                        secs[i] = secs[i].min(t0.elapsed().as_secs_f64());
                    }
                    last = Some((v, out));
                }
            }
            let best = (0..secs.len()).fold(0, |b, i| if secs[i] < secs[b] { i } else { b });
            let v = Variant::ALL[best];
            tuner.record(key, v);
            // the result is the winner's own run, made last: an op that writes into a given
            // tensor leaves exactly what later runs of the class (the winner) would write
            match last {
                Some((lv, out)) if lv == v => Ok(out),
                _ => run(v),
            }
        }
    }

    /// Tune the classes met since the last pass (browser: ops never tune themselves there):
    /// each variant runs once to warm up and `reps` times timed, awaiting the queue after each;
    /// returns the number of classes tuned. `now_ms` is the caller's clock.
    pub async fn tune_pending(&self, reps: usize, now_ms: &dyn Fn() -> f64) -> Result<usize> {
        let jobs = self.tuner().take_pending();
        let n = jobs.len();
        for (key, replay) in jobs {
            let mut best: Option<(f64, Variant)> = None;
            for v in Variant::ALL {
                replay(self, v)?;
                self.done().await?;
                let t0 = now_ms();
                for _ in 0..reps.max(1) {
                    replay(self, v)?;
                }
                self.done().await?;
                let ms = now_ms() - t0;
                if best.is_none_or(|(b, _)| ms < b) {
                    best = Some((ms, v));
                }
            }
            if let Some((_, v)) = best {
                self.tuner().record(&key, v);
            }
        }
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_round_trip_and_refusals() {
        let t = Tuner::default();
        t.record("matmul/v4/ak_bn/m1024/n64/k1024", Variant::Tiled);
        t.record("conv_fwd/c64/o64/k3x3/s1x1/p4096", Variant::Blocked);
        let j = t.to_json();
        let u = Tuner::default();
        assert_eq!(u.load_json(&j).unwrap(), 2);
        assert_eq!(u.to_json(), j);
        assert_eq!(u.load_json("{}").unwrap(), 0);
        for bad in [
            "",
            "[]",
            "{\"a\":\"fast\"}",
            "{\"A B\":\"tiled\"}",
            "{a:tiled}",
        ] {
            assert!(u.load_json(bad).is_err(), "{bad}");
        }
        assert_eq!(
            Policy::parse("tiled").unwrap(),
            Policy::Force(Variant::Tiled)
        );
        assert!(Policy::parse("fast").is_err());
        assert_eq!(bucket(0), 1);
        assert_eq!(bucket(65), 128);
    }
}
