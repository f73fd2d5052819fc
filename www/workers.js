// Compute workers: each runs worker.js, its own wasm instance, and answers calls by id.
// Protocol (see worker.js): page -> {id, cmd, args}; worker -> {type: 'reply', id, ok, result |
// error}, and once at start {type: 'status', info | error}.

/** Page query parameters a worker reads from its own URL (see worker.js). */
const FORWARDED = ['binding-limit-mb', 'backend', 'simd'];

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

  return { call, status, failed, terminate };
}
