// www/bench.html: times the page's kernels in its compute worker (one worker, like the tabs on
// one core) and prints a table and, in <pre id="result">, JSON for tools/bench_page.mjs.
// body[data-status] is 'done' or 'error' at the end.

const params = new URLSearchParams(location.search);
const workerUrl = new URL('./worker.js', import.meta.url);
workerUrl.searchParams.set('backend', params.get('backend') || 'cpu');
if (params.get('simd')) workerUrl.searchParams.set('simd', params.get('simd'));
const RUNS = Math.max(1, Number(params.get('runs')) || 5);
const ROWS = (params.get('rows') || 'gemm,dncnn,dcgan').split(',');

const worker = new Worker(workerUrl, { type: 'module' });
const pending = new Map();
let nextId = 1;
const status = new Promise((resolve, reject) => {
  worker.onmessage = (ev) => {
    const m = ev.data;
    if (m.type === 'status') {
      if (m.error) reject(new Error(m.error));
      else resolve(m.info);
      return;
    }
    const p = pending.get(m.id);
    pending.delete(m.id);
    if (m.ok) p.resolve(m.result);
    else p.reject(new Error(m.error));
  };
  worker.onerror = (ev) => reject(new Error(ev.message || 'the worker failed to load'));
});
const call = (cmd, ...args) =>
  new Promise((resolve, reject) => {
    const id = nextId++;
    pending.set(id, { resolve, reject });
    worker.postMessage({ id, cmd, args });
  });

const median = (xs) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
};

/** Median ms of `runs` timed calls of `fn` after `warm` untimed ones. */
async function time(fn, runs, warm = 1) {
  for (let i = 0; i < warm; i++) await fn();
  const ms = [];
  for (let i = 0; i < runs; i++) {
    const t0 = performance.now();
    await fn();
    ms.push(performance.now() - t0);
  }
  return { ms: median(ms), runs: ms };
}

/** FLOPs of a DnCNN (3x3 convs, 'same') on one side x side image with c channels. */
const dncnnFlops = (c, depth, width, side) => 2 * 9 * side * side * (c * width + (depth - 2) * width * width + width * c);

const out = { rows: {}, info: null };
const tbody = document.querySelector('#rows tbody');
function row(name, r, flops) {
  const gflops = flops ? flops / (r.ms / 1e3) / 1e9 : null;
  out.rows[name] = { ms: r.ms, gflops, runs: r.runs };
  const tr = document.createElement('tr');
  for (const v of [name, r.ms.toFixed(1), gflops ? gflops.toFixed(2) : '–', r.runs.length]) {
    const td = document.createElement('td');
    td.textContent = String(v);
    tr.append(td);
  }
  tbody.append(tr);
}

(async () => {
  const info = await status;
  out.info = { ...info, hardwareConcurrency: navigator.hardwareConcurrency, userAgent: navigator.userAgent };
  document.getElementById('backend').textContent = `Backend: ${info.kind} (${info.adapter}), wasm build: ${info.wasm}`;
  if (ROWS.includes('gemm')) {
    // the conv shapes of DnCNN width 64 (forward: 64 x pixels x 576) and a square one
    for (const [m, n, k, reps] of [[64, 4096, 576, 10], [256, 256, 256, 40], [61, 1021, 33, 40]]) {
      const r = await time(() => call('bench_gemm', m, n, k, reps), RUNS);
      row(`gemm ${m}x${n}x${k}`, { ms: r.ms / reps, runs: r.runs.map((v) => v / reps) }, 2 * m * n * k);
    }
  }
  if (ROWS.includes('dncnn')) {
    await call('bench_dncnn_setup', 1, 17, 64, 256);
    row('dncnn 17x64 256x256 gray', await time(() => call('bench_dncnn_run'), RUNS), dncnnFlops(1, 17, 64, 256));
  }
  if (ROWS.includes('dcgan')) {
    await call('bench_dcgan_setup', 64, 64);
    row('dcgan step batch 64 (width 64)', await time(() => call('bench_dcgan_step'), RUNS, 2), null);
  }
  document.getElementById('result').textContent = JSON.stringify(out, null, 1);
  document.body.dataset.status = 'done';
})().catch((e) => {
  document.getElementById('result').textContent = JSON.stringify({ error: String(e.message || e), partial: out });
  document.body.dataset.status = 'error';
});
