// The compute worker: loads the wasm module and answers the page's requests.
// Protocol (postMessage): page -> {id, cmd, args}; worker -> {type: 'reply', id, ok, result | error}.
// Once at start: {type: 'status', info} (or {type: 'status', error}) naming the backend in use.
import init, * as nn from './pkg/nnlab.js';

// The calls the page may make, by name. Each returns a value or a promise; errors are Error objects.
const COMMANDS = {
  backend_info: () => nn.backend_info(),
  conv_arith_params: (i, m, s, p) => nn.conv_arith_params(i, m, s, p),
  conv_arith_run: (i, m, s, p) => nn.conv_arith_run(i, m, s, p),
  conv_arith_cell_kinds: () => nn.conv_arith_cell_kinds(),
};

function message(e) {
  if (e instanceof Error) return e.message;
  return String(e);
}

const ready = (async () => {
  await init();
  return nn.init_backend();
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
      const fn = COMMANDS[cmd];
      if (!fn) throw new Error(`unknown command ${cmd}`);
      const result = await fn(...args);
      postMessage({ type: 'reply', id, ok: true, result });
    } catch (e) {
      postMessage({ type: 'reply', id, ok: false, error: message(e) });
    }
  });
};
