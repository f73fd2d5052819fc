// The compute worker: loads the wasm module and answers the page's requests.
// Protocol (postMessage): page -> {id, cmd, args}; worker -> {type: 'reply', id, ok, result | error}.
// Once at start: {type: 'status', info} (or {type: 'status', error}) naming the backend in use.
import init, * as nn from './pkg/nnlab.js';

// The calls the page may make: any function the wasm module exports (src/web/*.rs), by name.
// wasm-bindgen's own entry points are not commands.
const NOT_COMMANDS = new Set(['default', 'initSync', 'init_backend']);
function command(name) {
  const fn = nn[name];
  if (typeof fn !== 'function' || NOT_COMMANDS.has(name) || name.startsWith('__')) return null;
  return fn;
}

function message(e) {
  if (e instanceof Error) return e.message;
  return String(e);
}

// `?binding-limit-mb=N` on the page (passed on to this worker's URL) caps the WebGPU
// storage-binding size, to see the page on a small GPU. init_backend decides whether the
// value is usable (NaN for a non-number) and says what it did in `binding_note`.
function bindingLimitBytes() {
  const mb = new URL(self.location.href).searchParams.get('binding-limit-mb');
  return mb === null ? undefined : Number(mb) * 2 ** 20;
}

// `?backend=auto|webgpu|cpu` (passed on like the above): auto, the default, uses WebGPU on a
// hardware adapter and the CPU backend on a software one; init_backend says why in the status.
function backendParam() {
  return new URL(self.location.href).searchParams.get('backend') ?? undefined;
}

const ready = (async () => {
  await init();
  return nn.init_backend(bindingLimitBytes(), backendParam());
})();

ready.then(
  (info) => postMessage({ type: 'status', info }),
  (e) => postMessage({ type: 'status', error: `could not start nnlab: ${message(e)}` }),
);

// Requests run one at a time, in order: the backend is a single device queue.
let queue = Promise.resolve();
self.onmessage = (ev) => {
  const { id, cmd, args = [] } = ev.data;
  queue = queue.then(async () => {
    try {
      await ready;
      const fn = command(cmd);
      if (!fn) throw new Error(`unknown command ${cmd}`);
      const result = await fn(...args);
      postMessage({ type: 'reply', id, ok: true, result });
    } catch (e) {
      postMessage({ type: 'reply', id, ok: false, error: message(e) });
    }
  });
};
