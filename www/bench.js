// www/bench.html: times the page's kernels in a compute worker per backend (one worker at a
// time, like the tabs on one core), shows a table per backend with GFLOP/s and, when the FP32
// peak of the adapter is known or entered, the fraction of it, and keeps the results as JSON:
// in <pre id="result"> (for tools/bench_page.mjs) and behind "Download JSON" (a Blob URL).
// body[data-status] is 'done' or 'error' at the end.

import { tuneAndSave } from './workers.js';

const params = new URLSearchParams(location.search);
const BACKENDS = ['webgpu', 'cpu', 'auto'];
const ROW_SETS = ['kernels', 'dncnn', 'dcgan', 'gemm'];
const $ = (id) => document.getElementById(id);

/** The query, checked: a list of problems for anything that is not understood. */
function readQuery() {
  const problems = [];
  const list = (name, dflt, allowed) => {
    const v = (params.get(name) ?? dflt).split(',').map((s) => s.trim().toLowerCase()).filter(Boolean);
    const bad = v.filter((x) => !allowed.includes(x));
    if (bad.length) problems.push(`?${name}: ${bad.join(', ')} not understood (use ${allowed.join(', ')})`);
    return v.filter((x) => allowed.includes(x));
  };
  const backends = list('backend', 'webgpu,cpu', BACKENDS);
  const rows = list('rows', 'kernels,dncnn,dcgan', ROW_SETS);
  const size = (params.get('size') ?? 'full').trim().toLowerCase();
  if (!['full', 'small'].includes(size)) problems.push(`?size: "${size}" not understood (use full or small)`);
  const runsText = params.get('runs');
  const runs = runsText === null ? 5 : Number(runsText);
  if (!Number.isInteger(runs) || runs < 1 || runs > 100) problems.push(`?runs must be a whole number from 1 to 100, got "${runsText}"`);
  return { backends, rows, size: size === 'small' ? 'small' : 'full', runs: Number.isInteger(runs) && runs >= 1 && runs <= 100 ? runs : 5, problems };
}
const Q = readQuery();

/** A compute worker on `backend`: resolves to { call, info, stop } once it reports its status. */
function startWorker(backend) {
  const url = new URL('./worker.js', import.meta.url);
  url.searchParams.set('backend', backend);
  for (const key of ['simd', 'f16']) if (params.get(key)) url.searchParams.set(key, params.get(key));
  const worker = new Worker(url, { type: 'module' });
  const pending = new Map();
  let nextId = 1;
  const call = (cmd, ...args) =>
    new Promise((resolve, reject) => {
      const id = nextId++;
      pending.set(id, { resolve, reject });
      worker.postMessage({ id, cmd, args });
    });
  return new Promise((resolve, reject) => {
    worker.onmessage = (ev) => {
      const m = ev.data;
      if (m.type === 'status') {
        if (m.error) reject(new Error(m.error));
        else resolve({ call, info: m.info, stop: () => worker.terminate() });
        return;
      }
      const p = pending.get(m.id);
      pending.delete(m.id);
      if (m.ok) p.resolve(m.result);
      else p.reject(new Error(m.error));
    };
    worker.onerror = (ev) => reject(new Error(ev.message || 'the worker failed to load'));
  });
}

const median = (xs) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
};

/** Median ms of `runs` timed calls of `fn` after `warm` untimed ones; each call does `per` units. */
async function time(fn, runs, warm = 1, per = 1) {
  for (let i = 0; i < warm; i++) await fn();
  const ms = [];
  for (let i = 0; i < runs; i++) {
    const t0 = performance.now();
    await fn();
    ms.push((performance.now() - t0) / per);
  }
  return { ms: median(ms), runs: ms };
}

/** FLOPs of a DnCNN (3x3 convs, 'same') on one side x side image with c channels. */
const dncnnFlops = (c, depth, width, side) => 2 * 9 * side * side * (c * width + (depth - 2) * width * width + width * c);

const out = {
  page: 'nnlab bench.html',
  date: new Date().toISOString(),
  query: location.search,
  size: Q.size,
  runs_per_row: Q.runs,
  userAgent: navigator.userAgent,
  hardwareConcurrency: navigator.hardwareConcurrency,
  fp32_peak_tflops: null,
  backends: [],
};

// ---------------------------------------------------------------- the FP32 peak

/** The peak in use: the one entered (when valid), else the known one of the first GPU adapter. */
let knownPeak = null;
function peakInUse() {
  const text = $('peak').value.trim();
  if (text === '') return knownPeak ? { tflops: knownPeak.tflops, source: `known for ${knownPeak.adapter}` } : null;
  const v = Number(text.replace(',', '.'));
  if (!Number.isFinite(v) || v <= 0) return { error: `"${text}" is not a positive number of TFLOP/s (e.g. 10.4); the fraction of peak is not shown` };
  if (v > 10000) return { error: `${v} TFLOP/s is more than any single GPU has; enter the peak in TFLOP/s (e.g. 10.4 for 10,400 GFLOP/s)` };
  return { tflops: v, source: 'entered' };
}

/** Fill every GPU row's "% of FP32 peak" cell and the JSON's fractions from the peak in use. */
function showPeak() {
  const p = peakInUse();
  $('peak-note').textContent = p?.error ?? (p ? `${p.tflops} TFLOP/s (${p.source})` : 'unknown for this adapter: enter it to see the fraction of peak');
  $('peak-note').classList.toggle('bad', Boolean(p?.error));
  const tflops = p && !p.error ? p.tflops : null;
  out.fp32_peak_tflops = tflops ? { tflops, source: p.source } : null;
  for (const b of out.backends) {
    for (const r of Object.values(b.rows)) {
      r.fraction_of_peak = tflops && b.info?.kind === 'gpu' && r.gflops ? r.gflops / (tflops * 1e3) : null;
      if (r.cell) r.cell.textContent = r.fraction_of_peak === null ? '–' : `${(100 * r.fraction_of_peak).toFixed(2)} %`;
    }
  }
  publish();
}
$('peak').addEventListener('input', showPeak);

/** The results as JSON (without the table cells). */
const json = () => JSON.stringify(out, (k, v) => (k === 'cell' ? undefined : v), 1);
function publish() {
  $('result').textContent = json();
}

$('download').addEventListener('click', () => {
  const url = URL.createObjectURL(new Blob([json()], { type: 'application/json' }));
  const a = document.createElement('a');
  a.href = url;
  a.download = 'nnlab-bench.json';
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 10_000);
});

// ---------------------------------------------------------------- one backend's section

function cell(tr, text, cls) {
  const td = document.createElement('td');
  td.textContent = text;
  if (cls) td.className = cls;
  tr.append(td);
  return td;
}

/** A section for one backend: heading, notes and an empty table; returns its parts. */
function section(title) {
  const sec = document.createElement('section');
  sec.className = 'bench-backend';
  const h = document.createElement('h2');
  h.textContent = title;
  const notes = document.createElement('div');
  const table = document.createElement('table');
  table.className = 'params bench-table';
  table.innerHTML = '<thead><tr><th>row</th><th>shape</th><th>median ms</th><th>GFLOP/s</th><th>% of FP32 peak</th><th>runs</th></tr></thead><tbody></tbody>';
  sec.append(h, notes, table);
  $('backends').append(sec);
  const note = (text, cls) => {
    const p = document.createElement('p');
    p.textContent = text;
    if (cls) p.className = cls;
    notes.append(p);
    return p;
  };
  return { h, note, tbody: table.tBodies[0] };
}

/** Add a timed row to the section's table and to `rows` (keyed by name). */
function addRow(ui, rows, name, shape, r, gflop) {
  const gflops = gflop ? gflop / (r.ms / 1e3) : null;
  const tr = document.createElement('tr');
  cell(tr, name);
  cell(tr, shape);
  cell(tr, r.ms.toFixed(r.ms < 10 ? 2 : 1), 'num');
  cell(tr, gflops ? gflops.toFixed(2) : '–', 'num');
  const peakCell = cell(tr, '–', 'num');
  cell(tr, String(r.runs.length), 'num');
  ui.tbody.append(tr);
  rows[name] = { shape, ms: r.ms, gflop, gflops, fraction_of_peak: null, runs: r.runs, cell: peakCell };
  showPeak();
}

/** The optional WebGPU features of the browser's adapter that matter for speed (asked here, on
 * the page's thread: the worker's own adapter is the same one). */
async function adapterFeatures() {
  try {
    const a = await navigator.gpu?.requestAdapter();
    return a ? ['shader-f16', 'timestamp-query', 'subgroups'].filter((f) => a.features.has(f)) : null;
  } catch {
    return null;
  }
}

/** The tuner's choices as the wasm module reports them, or the placeholder when it has no tuner. */
async function tunerChoices(w) {
  try {
    const v = await w.call('gpu_tuner_choices');
    return typeof v === 'string' ? JSON.parse(v) : v;
  } catch (e) {
    if (/unknown command/.test(e.message)) return null;
    return { error: e.message };
  }
}

const progress = (text) => ($('progress').textContent = text);

/** The kernel table on worker `w`: each case set up, then timed over `runs` calls. */
async function kernelRows(w, ui, rows) {
  for (let i = 0; ; i++) {
    const meta = await w.call('bench_kernel_setup', i, Q.size);
    if (!meta) break;
    progress(`${ui.title}: ${meta.op}…`);
    // several calls per timed run where one is short, so the read-back's latency counts less
    const reps = meta.gflop < 0.5 ? 4 : 1;
    const r = await time(() => w.call('bench_kernel_run', reps), Q.runs, 1, reps);
    addRow(ui, rows, meta.op, meta.shape, r, meta.gflop);
  }
}

async function modelRows(w, ui, rows) {
  if (Q.rows.includes('dncnn')) {
    const side = Q.size === 'small' ? 32 : 256;
    progress(`${ui.title}: DnCNN…`);
    await w.call('bench_dncnn_setup', 1, 17, 64, side);
    const r = await time(() => w.call('bench_dncnn_run'), Q.runs);
    addRow(ui, rows, `dncnn 17x64 ${side}x${side} gray`, `1 image, ${side}x${side}`, r, dncnnFlops(1, 17, 64, side) / 1e9);
  }
  if (Q.rows.includes('dcgan')) {
    const batch = Q.size === 'small' ? 4 : 64;
    progress(`${ui.title}: DCGAN step…`);
    await w.call('bench_dcgan_setup', 64, batch);
    const r = await time(() => w.call('bench_dcgan_step'), Q.runs, 2);
    addRow(ui, rows, `dcgan step batch ${batch} (width 64)`, `batch ${batch}, D then G`, r, null);
  }
  if (Q.rows.includes('gemm')) {
    // the conv shapes of DnCNN width 64 (forward: 64 x pixels x 576) and a square one
    for (const [m, n, k, reps] of [[64, 4096, 576, 10], [256, 256, 256, 40], [61, 1021, 33, 40]]) {
      const r = await time(() => w.call('bench_gemm', m, n, k, reps), Q.runs, 1, reps);
      addRow(ui, rows, `gemm ${m}x${n}x${k}`, 'wasm GEMM (CPU)', r, (2 * m * n * k) / 1e9);
    }
  }
}

/** Every asked row on one backend, in its own worker. */
async function runBackend(asked) {
  const ui = section(asked === 'cpu' ? 'CPU backend' : `WebGPU (?backend=${asked})`);
  ui.title = asked;
  const entry = { asked, info: null, tuner: null, rows: {}, error: null };
  out.backends.push(entry);
  let w;
  try {
    progress(`${asked}: starting the worker…`);
    w = await startWorker(asked);
    const info = w.info;
    entry.info = info;
    const kind = info.kind === 'gpu' ? `WebGPU on ${info.adapter}${info.fallback ? ' (a software adapter: it runs on the CPU)' : ''}` : `CPU backend (wasm, ${info.wasm} build)`;
    ui.h.textContent = kind;
    ui.title = info.kind === 'gpu' ? 'WebGPU' : 'CPU';
    ui.note(`Backend: ${info.describe ?? info.kind}${info.gpu_error ? ` — WebGPU not used: ${info.gpu_error}` : ''}`);
    if (asked !== 'cpu' && info.kind !== 'gpu') {
      ui.note('No WebGPU adapter here, so this section is skipped (the CPU backend has its own section).', 'bad');
      return;
    }
    if (info.kind === 'gpu') {
      const peak = await w.call('bench_fp32_peak_tflops', info.adapter);
      if (peak && !knownPeak) knownPeak = { tflops: peak, adapter: info.adapter };
      entry.features = await adapterFeatures();
      ui.note(`Adapter features: ${entry.features?.length ? entry.features.join(', ') : 'none of shader-f16, timestamp-query, subgroups'} (nnlab runs f32 kernels only)`);
      entry.tuner = await tunerChoices(w);
      ui.note(`Tuner's choices: ${entry.tuner === null ? '(one kernel per op)' : JSON.stringify(entry.tuner)}`, 'bench-tuner');
    }
    if (Q.rows.includes('kernels')) await kernelRows(w, ui, entry.rows);
    await modelRows(w, ui, entry.rows);
    // on a hardware adapter, tune the kernel variants on the classes just run (the tabs never
    // tune) and keep the choices for this adapter (localStorage; workers.js loads them)
    if (info.kind === 'gpu' && !info.fallback && entry.tuner !== null) {
      progress(`${asked}: tuning the kernel variants…`);
      entry.tuner = await tuneAndSave(w);
      ui.note(`Tuner's choices after tuning: ${JSON.stringify(entry.tuner)}`);
    }
  } catch (e) {
    entry.error = String(e.message || e);
    ui.note(`Stopped: ${entry.error}`, 'bad');
  } finally {
    w?.stop();
    publish();
  }
}

(async () => {
  if (Q.problems.length) {
    out.problems = Q.problems;
    const ui = section('Query not understood');
    for (const p of Q.problems) ui.note(p, 'bad');
    throw new Error(`the query has ${Q.problems.length} problem(s), see above; nothing was run`);
  }
  if (!Q.backends.length) throw new Error('no backend to run: ?backend= lists none of webgpu, cpu, auto');
  showPeak();
  for (const b of Q.backends) await runBackend(b);
  progress(`Done: ${out.backends.map((b) => `${Object.keys(b.rows).length} rows on ${b.info?.kind ?? b.asked}`).join(', ')}.`);
  $('download').disabled = false;
  publish();
  document.body.dataset.status = out.backends.some((b) => b.error) ? 'error' : 'done';
})().catch((e) => {
  out.error = String(e.message || e);
  progress(`Stopped: ${out.error}`);
  $('download').disabled = false;
  publish();
  document.body.dataset.status = 'error';
});
