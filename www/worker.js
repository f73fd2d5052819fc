// The compute worker: loads the wasm module and answers the page's requests.
// Protocol (postMessage): page -> {id, cmd, args}; worker -> {type: 'reply', id, ok, result | error}.
// Once at start: {type: 'status', info} (or {type: 'status', error}) naming the backend in use.
//
// Two builds of the wasm module exist (build.sh cmd_build), both with SIMD: pkg/relaxed/ adds
// relaxed SIMD (a fused multiply-add in the CPU backend's GEMM), pkg/ has plain SIMD. The
// relaxed one is loaded where the browser validates a one-instruction relaxed-SIMD module;
// `?simd=plain` (passed on by the page) forces the plain one.

// (func (param v128 v128 v128) (result v128) local.get 0 1 2  f32x4.relaxed_madd)
const RELAXED_PROBE = new Uint8Array([
  0, 97, 115, 109, 1, 0, 0, 0, 1, 8, 1, 96, 3, 123, 123, 123, 1, 123, 3, 2, 1, 0,
  10, 13, 1, 11, 0, 32, 0, 32, 1, 32, 2, 253, 133, 2, 11,
]);
// (func (param v128 v128) (result v128) local.get 0 1  f32x4.add)
const SIMD_PROBE = new Uint8Array([
  0, 97, 115, 109, 1, 0, 0, 0, 1, 7, 1, 96, 2, 123, 123, 1, 123, 3, 2, 1, 0,
  10, 11, 1, 9, 0, 32, 0, 32, 1, 253, 228, 1, 11,
]);

/** 'relaxed' or 'simd': the build this browser runs (null: it has no WebAssembly SIMD). */
function simdBuild() {
  if (!WebAssembly.validate(SIMD_PROBE)) return null;
  const forcePlain = new URL(self.location.href).searchParams.get('simd') === 'plain';
  return !forcePlain && WebAssembly.validate(RELAXED_PROBE) ? 'relaxed' : 'simd';
}
const build = simdBuild();
let nn = {};

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

// `?f16=0` (passed on like the above) runs DnCNN in f32 on an adapter with shader-f16.
function f16Param() {
  return new URL(self.location.href).searchParams.get('f16') ?? undefined;
}

const ready = (async () => {
  if (!build) throw new Error('this browser has no WebAssembly SIMD (Chrome 91+, Firefox 89+, Safari 16.4+ have it)');
  nn = await import(build === 'relaxed' ? './pkg/relaxed/nnlab.js' : './pkg/nnlab.js');
  await nn.default();
  const info = await nn.init_backend(bindingLimitBytes(), backendParam(), f16Param());
  info.wasm = build;
  return info;
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
