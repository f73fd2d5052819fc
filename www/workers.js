// Compute workers: each runs worker.js, its own wasm instance, and answers calls by id.
// Protocol (see worker.js): page -> {id, cmd, args}; worker -> {type: 'reply', id, ok, result |
// error}, and once at start {type: 'status', info | error}.

/** Page query parameters a worker reads from its own URL (see worker.js). */
const FORWARDED = ['binding-limit-mb', 'backend', 'simd', 'f16'];

/**
 * Start a worker. `params` override the page's forwarded query parameters (a helper of the
 * Denoise tab asks for `backend: 'cpu'`). Returns {call, status, terminate}: `call(cmd,
 * ...args)` resolves with the command's result or rejects with an Error carrying its message;
 * `status` resolves once to {info} or {error} (a worker that fails to load gives {error});
 * `failed` resolves to a message if the worker fails, at start or later; `terminate()` stops
 * the worker at once and rejects the calls still pending.
 */
export function startWorker(params = {}) {
  const url = new URL('./worker.js', import.meta.url);
  const page = new URLSearchParams(location.search);
  for (const key of FORWARDED) {
    const value = page.get(key);
    if (value !== null) url.searchParams.set(key, value);
  }
  for (const [key, value] of Object.entries(params)) url.searchParams.set(key, value);
  const worker = new Worker(url, { type: 'module' });
  const pending = new Map();
  let nextId = 1;
  let stopped = null; // the Error of calls made after a failure or terminate()
  let settle;
  let failure;
  const status = new Promise((resolve) => (settle = resolve));
  const failed = new Promise((resolve) => (failure = resolve));

  function fail(error) {
    stopped = error;
    for (const p of pending.values()) p.reject(error);
    pending.clear();
  }

  worker.onmessage = (ev) => {
    const msg = ev.data;
    if (msg.type === 'status') {
      settle(msg);
      return;
    }
    const p = pending.get(msg.id);
    if (!p) return;
    pending.delete(msg.id);
    if (msg.ok) p.resolve(msg.result);
    else p.reject(new Error(msg.error));
  };
  worker.onerror = (ev) => {
    const text = `the compute worker failed: ${ev.message || 'could not load worker.js or the wasm module'}`;
    settle({ error: text });
    failure(text);
    fail(new Error(text));
  };

  function call(cmd, ...args) {
    if (stopped) return Promise.reject(stopped);
    return new Promise((resolve, reject) => {
      const id = nextId++;
      pending.set(id, { resolve, reject });
      worker.postMessage({ id, cmd, args });
    });
  }

  function terminate() {
    worker.terminate();
    settle({ error: 'the worker was stopped' });
    fail(new Error('the worker was stopped'));
  }

  // on WebGPU, the kernel tuner's choices saved for this adapter (see saveTuner)
  status.then(({ info }) => restoreTuner(call, info));
  return { call, status, failed, terminate };
}

// ---------------------------------------------------------------- GPU kernel tuner

/** localStorage key of the GPU kernel tuner's table for one adapter (src/web/tuner.rs). */
const tunerKey = (adapter) => `nnlab.gpu-tuner.${adapter}`;

async function restoreTuner(call, info) {
  if (info?.kind !== 'gpu') return;
  try {
    const saved = localStorage.getItem(tunerKey(info.adapter));
    if (saved) await call('gpu_tuner_load', saved);
  } catch {
    // storage unavailable or a table of an older version: the tuner starts empty
  }
}

/**
 * Tune the kernel variants on the shape classes this worker has met (the bench page calls it
 * after its runs; the tabs never do) and keep the choices in localStorage for this adapter.
 * Resolves to the tuner's state ({adapter, policy, pending, choices}).
 */
export async function tuneAndSave(w) {
  await w.call('gpu_tune');
  const state = JSON.parse(await w.call('gpu_tuner_choices'));
  if (state.adapter) {
    try {
      localStorage.setItem(tunerKey(state.adapter), JSON.stringify(state.choices));
    } catch {
      // storage unavailable: the choices last until the page is closed
    }
  }
  return state;
}

// ---------------------------------------------------------------- helper workers

/** Most helper workers (each holds a wasm instance with its models and data). */
const MAX_HELPERS = 16;

/**
 * How many workers share a long job: `?workers=N` on the page (1 = the tabs' own worker
 * alone), else one per core (navigator.hardwareConcurrency) on the CPU backend (`kind`
 * 'cpu'), and 1 on WebGPU (one GPU queue: more workers would only compete for it).
 */
export function helperCount(kind) {
  if (kind !== 'cpu') return 1;
  const asked = new URLSearchParams(location.search).get('workers');
  const n = asked === null ? navigator.hardwareConcurrency || 1 : Math.floor(Number(asked));
  return Number.isFinite(n) && n >= 1 ? Math.min(n, MAX_HELPERS) : 1;
}

/**
 * A pool of helper workers on the CPU backend, each its own wasm instance, started on first
 * use and kept between jobs: `start(n)` resolves to n helpers {worker, loaded}; `ensure(h,
 * what, bytes, load)` runs `load()` unless helper h already holds these `bytes` as `what`;
 * `stop()` ends them all at once (the next job starts new ones).
 */
export function createHelperPool() {
  let helpers = [];

  async function start(n) {
    while (helpers.length < n) helpers.push({ worker: startWorker({ backend: 'cpu' }), loaded: new Map() });
    const started = await Promise.all(helpers.slice(0, n).map((h) => h.worker.status));
    const bad = started.find((s) => s.error);
    if (bad) throw new Error(`a helper worker could not start: ${bad.error}`);
    return helpers.slice(0, n);
  }

  async function ensure(h, what, bytes, load) {
    if (h.loaded.get(what) === bytes) return;
    h.loaded.delete(what);
    await load();
    h.loaded.set(what, bytes);
  }

  function stop() {
    for (const h of helpers) h.worker.terminate();
    helpers = [];
  }

  return { start, ensure, stop };
}

/**
 * Run `lanes` (async functions, one per worker) together; the first error stops the others
 * (`failed()` turns true for them to check between calls) and is thrown.
 */
export async function allLanes(lanes) {
  let failed = false;
  await Promise.all(lanes.map((lane) => lane(() => failed).catch((e) => {
    failed = true;
    throw e;
  })));
}

let shared = null;
/**
 * The helpers the Adversarial and GAN tabs share (the page digits are loaded into each once):
 * their work comes in short calls, so Cancel stops handing work out rather than ending them.
 */
export function sharedHelpers() {
  shared ??= createHelperPool();
  return shared;
}
