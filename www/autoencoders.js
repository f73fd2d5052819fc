// The Autoencoders tab: train a plain, sparse, contractive or denoising autoencoder on MNIST
// digits in the page, watch its cost (training and held-out), compare its reconstructions with
// PCA's, and, with k = 2, see the codes of held-out digits and the decoded manifold.
// Everything heavy runs in the worker through `call(cmd, ...args)` (src/web/autoencoders.rs);
// this file drives short calls in a loop that can pause between them, and draws on canvases.
import { PIXELS, SIDE, digitsImage, drawMagnified, pageDigitBytes } from './digits.js';
import { download, fetchBytes } from './util.js';

const $ = (id) => document.getElementById(id);

const SHIPPED_URL = 'models/ae_plain_k2.safetensors';
/** The ten label colours of the scatter (Tableau 10). */
const PALETTE = ['#4e79a7', '#f28e2b', '#e15759', '#76b7b2', '#59a14f', '#edc948', '#b07aa1', '#ff9da7', '#9c755f', '#5c5c5c'];
const MANIFOLD_SIDE = 15;
/** Target duration of one training call: Pause answers within about this long. */
const TRAIN_CALL_MS = 300;
/** Evaluations (held-out cost, grid, scatter, manifold) take at most ~1/7 of the time. */
const REFRESH_MIN_MS = 1500;
const REFRESH_SHARE = 6;
/** Held-out digits for the cost curve and code statistics (one worker call). */
const EVAL_DIGITS = 500;
/** Held-out digits in the k = 2 scatter (in calls of EVAL_DIGITS). */
const SCATTER_DIGITS = 2000;
/** Held-out digits for the Jacobian measurement (the worker caps k * n). */
const JACOBIAN_DIGITS = 100;
/** Default lambda of each regularised kind (as `nnlab train ae`). */
const DEFAULT_LAMBDA = { sparse: 0.001, contractive: 0.1 };

const fmt = (v, d = 4) => (v == null || !Number.isFinite(v) ? '–' : v.toFixed(d));
const pct = (v) => `${(100 * v).toFixed(1)}%`;
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

function setError(text) {
  const el = $('ae-error');
  el.textContent = text || '';
  el.hidden = !text;
}

// ---------------------------------------------------------------- drawing

/** Training cost (each step, drawn smoothed) and held-out cost (at evaluations) vs step. */
function drawLoss(canvas, train, held) {
  const ctx = canvas.getContext('2d');
  const { width: W, height: H } = canvas;
  const m = { l: 52, r: 12, t: 10, b: 28 };
  ctx.clearRect(0, 0, W, H);
  ctx.font = '11px system-ui, sans-serif';
  ctx.fillStyle = '#5b6475';
  if (!train.length && !held.length) {
    ctx.fillText('no training yet', m.l + 10, H / 2);
    return;
  }
  // exponential moving average of the per-step cost
  const smooth = [];
  let ema = null;
  for (const [s, v] of train) {
    ema = ema == null ? v : 0.95 * ema + 0.05 * v;
    smooth.push([s, ema]);
  }
  const pts = smooth.concat(held);
  const maxStep = Math.max(1, ...pts.map((p) => p[0]));
  let lo = Math.min(...pts.map((p) => p[1]));
  let hi = Math.max(...pts.map((p) => p[1]));
  if (hi - lo < 1e-6) [lo, hi] = [lo - 0.01, hi + 0.01];
  const pad = 0.06 * (hi - lo);
  lo = Math.max(0, lo - pad);
  hi += pad;
  const X = (s) => m.l + ((W - m.l - m.r) * s) / maxStep;
  const Y = (v) => m.t + ((H - m.t - m.b) * (hi - v)) / (hi - lo);
  ctx.strokeStyle = '#dde1e8';
  ctx.lineWidth = 1;
  for (let i = 0; i <= 4; i++) {
    const v = lo + ((hi - lo) * i) / 4;
    ctx.beginPath();
    ctx.moveTo(m.l, Y(v));
    ctx.lineTo(W - m.r, Y(v));
    ctx.stroke();
    ctx.fillText(v.toFixed(3), 4, Y(v) + 4);
  }
  ctx.fillText('0', m.l - 3, H - 10);
  const maxLabel = `step ${maxStep}`;
  ctx.fillText(maxLabel, W - m.r - ctx.measureText(maxLabel).width, H - 10);
  const line = (p, color, width) => {
    if (!p.length) return;
    ctx.strokeStyle = color;
    ctx.lineWidth = width;
    ctx.beginPath();
    p.forEach(([s, v], i) => (i ? ctx.lineTo(X(s), Y(v)) : ctx.moveTo(X(s), Y(v))));
    ctx.stroke();
  };
  line(smooth, '#2f5fd0', 2);
  line(held, '#d9480f', 1.5);
  ctx.fillStyle = '#d9480f';
  for (const [s, v] of held) {
    ctx.beginPath();
    ctx.arc(X(s), Y(v), 2.5, 0, 2 * Math.PI);
    ctx.fill();
  }
}

/** The comparison grid: a label column, then one row of digits per model, 2x zoom. */
function drawGrid(canvas, g) {
  const scale = 2;
  const gap = 4;
  const labelW = 200;
  const rowH = SIDE * scale + gap + 6;
  const rows = [['original', g.originals, null]];
  if (g.noisy) rows.push(['noisy input', g.noisy, g.mse_noisy]);
  rows.push([g.noisy ? 'autoencoder (from noisy)' : 'autoencoder', g.ae, g.mse_ae]);
  rows.push([g.pca_k ? `PCA, k = ${g.pca_k}${g.noisy ? ' (from noisy)' : ''}` : 'PCA (not fitted yet)', g.pca, g.mse_pca]);
  const cols = g.count;
  canvas.width = labelW + cols * (SIDE * scale + gap);
  canvas.height = rows.length * rowH;
  const ctx = canvas.getContext('2d');
  ctx.fillStyle = '#ffffff';
  ctx.fillRect(0, 0, canvas.width, canvas.height);
  rows.forEach(([label, values, mse], r) => {
    const y = r * rowH + 3;
    ctx.fillStyle = '#1d2330';
    ctx.font = '600 13px system-ui, sans-serif';
    ctx.fillText(label, 6, y + 22);
    if (mse != null) {
      ctx.fillStyle = '#5b6475';
      ctx.font = '12px system-ui, sans-serif';
      ctx.fillText(`MSE ${mse.toFixed(4)} (this row)`, 6, y + 42);
    }
    if (values) ctx.putImageData(digitsImage(values, cols, cols, scale, gap), labelW, y);
    else {
      ctx.fillStyle = '#eef0f4';
      ctx.fillRect(labelW, y, canvas.width - labelW - gap, SIDE * scale);
    }
  });
}

/** Map between canvas pixels of a plane and codes in [0, 1]^2 (c1 grows upwards). */
function planeFrame(canvas, margin) {
  const w = canvas.width - 2 * margin;
  const h = canvas.height - 2 * margin;
  return {
    toPx: (c0, c1) => [margin + c0 * w, margin + (1 - c1) * h],
    toCode: (x, y) => [Math.min(1, Math.max(0, (x - margin) / w)), Math.min(1, Math.max(0, 1 - (y - margin) / h))],
  };
}

const SCATTER_MARGIN = 26;

function drawScatter(canvas, codes, labels, probe) {
  const ctx = canvas.getContext('2d');
  const f = planeFrame(canvas, SCATTER_MARGIN);
  ctx.fillStyle = '#ffffff';
  ctx.fillRect(0, 0, canvas.width, canvas.height);
  const [x0, y0] = f.toPx(0, 1);
  const [x1, y1] = f.toPx(1, 0);
  ctx.strokeStyle = '#c9ced8';
  ctx.strokeRect(x0, y0, x1 - x0, y1 - y0);
  ctx.fillStyle = '#5b6475';
  ctx.font = '11px system-ui, sans-serif';
  ctx.fillText('0', x0 - 4, y1 + 14);
  ctx.fillText('1', x1 - 4, y1 + 14);
  ctx.fillText('1', x0 - 14, y0 + 4);
  ctx.fillText('code 0 →', (x0 + x1) / 2 - 22, y1 + 16);
  ctx.save();
  ctx.translate(x0 - 10, (y0 + y1) / 2 + 22);
  ctx.rotate(-Math.PI / 2);
  ctx.fillText('code 1 →', 0, 0);
  ctx.restore();
  if (codes) {
    ctx.globalAlpha = 0.75;
    for (let i = 0; i < labels.length; i++) {
      const [x, y] = f.toPx(codes[2 * i], codes[2 * i + 1]);
      ctx.fillStyle = PALETTE[labels[i]];
      ctx.fillRect(x - 1.5, y - 1.5, 3, 3);
    }
    ctx.globalAlpha = 1;
  }
  drawProbeMark(ctx, f, probe);
}

function drawProbeMark(ctx, f, probe) {
  if (!probe) return;
  const [x, y] = f.toPx(probe[0], probe[1]);
  ctx.strokeStyle = '#1d2330';
  ctx.lineWidth = 1.5;
  ctx.beginPath();
  ctx.arc(x, y, 6, 0, 2 * Math.PI);
  ctx.moveTo(x - 10, y);
  ctx.lineTo(x + 10, y);
  ctx.moveTo(x, y - 10);
  ctx.lineTo(x, y + 10);
  ctx.stroke();
}

/** The decoded manifold fills the canvas: cell (r, c) is the code at the cell's centre. */
function drawManifold(canvas, image, probe) {
  const ctx = canvas.getContext('2d');
  if (image) ctx.putImageData(image, 0, 0);
  else {
    ctx.fillStyle = '#eef0f4';
    ctx.fillRect(0, 0, canvas.width, canvas.height);
  }
  drawProbeMark(ctx, planeFrame(canvas, 0), probe);
}

/** Canvas coordinates of a mouse event (the canvas may be scaled by CSS). */
function canvasPoint(canvas, ev) {
  const r = canvas.getBoundingClientRect();
  return [((ev.clientX - r.left) * canvas.width) / r.width, ((ev.clientY - r.top) * canvas.height) / r.height];
}

// ---------------------------------------------------------------- the tab

export function setupAutoencodersTab(call) {
  const panel = $('panel-autoencoders');
  const form = {
    kind: $('ae-kind'),
    arch: $('ae-arch'),
    k: $('ae-k'),
    lambda: $('ae-lambda'),
    noise: $('ae-noise'),
    level: $('ae-level'),
    lr: $('ae-lr'),
    batch: $('ae-batch'),
    stop: $('ae-stop'),
    seed: $('ae-seed'),
  };
  const btn = {
    train: $('ae-train'),
    pause: $('ae-pause'),
    reset: $('ae-reset'),
    shipped: $('ae-shipped'),
    save: $('ae-save'),
    other: $('ae-other'),
    pca: $('ae-pca'),
    jac: $('ae-jac-run'),
  };
  const canvas = { loss: $('ae-loss'), grid: $('ae-grid'), scatter: $('ae-scatter'), manifold: $('ae-manifold'), probe: $('ae-probe') };

  const state = {
    started: false,
    ready: false,
    running: false,
    busy: 0, // exclusive operations running or queued
    loop: null,
    model: null, // {arch, k, kind, parameters, step, history}
    step: 0,
    epoch: 0,
    chunk: 2,
    train: [], // [step, cost] per step
    held: [], // [step, held-out cost] per evaluation
    lastEval: null,
    scatter: null, // {codes, labels} of SCATTER_DIGITS held-out digits
    evalMs: 0,
    gridOffset: 0,
    pca: null, // {k, rows, explained, mse, seconds}
    manifold: null, // ImageData
    probe: null, // [c0, c1] shown
    pinned: null, // [c0, c1] clicked
    decoding: false,
    pendingDecode: null,
    rate: null, // {stepsPerSecond, msPerStep}
    lambdas: { ...DEFAULT_LAMBDA },
  };

  // Work that changes the model (load, reset, PCA) runs one at a time, never beside training.
  // While one runs or waits, the tab is "busy" (buttons that would queue more are off).
  let lock = Promise.resolve();
  function exclusive(fn) {
    state.busy++;
    setButtons();
    const run = lock.then(fn).finally(() => {
      state.busy--;
      setButtons();
    });
    lock = run.catch(() => {});
    return run;
  }

  // ------------------------------------------------------------ form

  function showKindFields() {
    const kind = form.kind.value;
    $('ae-lambda-wrap').hidden = !(kind === 'sparse' || kind === 'contractive');
    $('ae-noise-wrap').hidden = kind !== 'denoising';
    $('ae-level-wrap').hidden = kind !== 'denoising';
    $('ae-reg-note').textContent = {
      plain: 'A plain autoencoder: no regulariser. Train a sparse or contractive one to compare.',
      sparse: 'Sparse: λ‖φ(x)‖₁ pushes code units towards 0; watch the fraction of near-zero units grow with λ.',
      contractive:
        'Contractive: λ‖J‖²_F of the sigmoid code layer (closed form) makes the code insensitive to small input changes; compare the measured encoder Jacobian with the plain model of the same k.',
      denoising: 'Denoising: the model sees a corrupted digit and is scored on the clean one; the grid shows noisy input → reconstruction.',
    }[kind];
    const reg = document.querySelector('.ae-reg');
    reg.classList.toggle('ae-sparse', kind === 'sparse');
    reg.classList.toggle('ae-contractive', kind === 'contractive');
  }

  function numberField(el, what, lo, hi) {
    const v = Number(el.value);
    if (el.value === '' || !Number.isFinite(v) || v < lo || v > hi) throw new Error(`${what} must be a number in [${lo}, ${hi}], got "${el.value}"`);
    return v;
  }

  function trainingSettings() {
    const kind = form.kind.value;
    const lambda = kind === 'sparse' || kind === 'contractive' ? numberField(form.lambda, 'λ', 0, 1000) : 0;
    const maxLevel = form.noise.value === 'masking' ? 0.99 : 5;
    const level = kind === 'denoising' ? numberField(form.level, 'noise level', 0, maxLevel) : 0;
    const lr = numberField(form.lr, 'learning rate', 1e-6, 0.1);
    return [kind, lambda, form.noise.value, level, lr, Number(form.batch.value)];
  }

  async function applySettings() {
    const info = await call('ae_set_training', ...trainingSettings());
    state.model = info;
  }

  function architecture() {
    const k = Number(form.k.value);
    if (!Number.isInteger(k) || k < 2 || k > 64) throw new Error(`code size k must be a whole number 2..64, got "${form.k.value}"`);
    const seed = Number(form.seed.value);
    if (!Number.isInteger(seed) || seed < 0 || seed > 4294967295) throw new Error(`seed must be a whole number 0..4294967295, got "${form.seed.value}"`);
    return { arch: form.arch.value, k, seed };
  }

  function stopAt() {
    const v = Number(form.stop.value);
    return form.stop.value !== '' && Number.isFinite(v) && v > 0 ? Math.floor(v) : null;
  }

  // ------------------------------------------------------------ status

  function setButtons() {
    const ok = Boolean(state.ready && state.model);
    const idle = ok && !state.busy;
    btn.train.disabled = !idle;
    btn.pause.disabled = !state.running;
    for (const b of [btn.save, btn.other, btn.jac, btn.pca]) b.disabled = !ok;
    // these replace the model: they pause training first, but do not queue behind other work
    for (const b of [btn.reset, btn.shipped]) b.disabled = !ok || (state.busy > 0 && !state.running);
    $('ae-stats').dataset.state = state.running ? 'running' : state.busy ? 'busy' : ok ? 'paused' : 'idle';
  }

  function showModel() {
    const m = state.model;
    if (!m) return;
    $('ae-model').textContent =
      `Model: ${m.arch} autoencoder, k = ${m.k}, ${m.parameters.toLocaleString()} parameters; ` + `started from ${m.history}; training as ${form.kind.value}.`;
  }

  function showStats() {
    const el = $('ae-stats');
    const ev = state.lastEval;
    const last = state.train.slice(-20);
    const trainCost = last.length ? last.reduce((a, p) => a + p[1], 0) / last.length : null;
    const parts = [`step ${state.step}`, `epoch ${state.epoch}`];
    if (state.rate) parts.push(`${state.rate.stepsPerSecond.toFixed(2)} steps/s (${state.rate.msPerStep.toFixed(0)} ms per step of ${form.batch.value} digits)`);
    if (trainCost != null) parts.push(`training cost ${fmt(trainCost)} (last ${last.length} steps)`);
    if (ev) parts.push(`held-out cost ${fmt(ev.cost)}, MSE ${fmt(ev.mse)} (${ev.n} digits)`);
    el.textContent = parts.join(' · ');
    el.dataset.step = String(state.step);
    // first and last figures, for the end-to-end test and for anyone reading the page
    if (state.train.length) {
      const head = state.train.slice(0, 10);
      el.dataset.trainFirst = String(head.reduce((a, p) => a + p[1], 0) / head.length);
      el.dataset.trainLast = String(trainCost);
    }
    if (ev) el.dataset.heldMse = String(ev.mse);
    if (state.held.length) {
      el.dataset.heldFirst = String(state.held[0][1]);
      el.dataset.heldLast = String(state.held[state.held.length - 1][1]);
    }
  }

  function showRegulariser(ev) {
    $('ae-near-zero').textContent = ev ? `${pct(ev.near_zero)} of ${ev.n} × ${state.model.k}` : '–';
    $('ae-mean-code').textContent = ev ? fmt(ev.mean_code, 3) : '–';
  }

  /** E‖∂φ/∂x‖²_F over `n` digits, one code unit (one backward pass) per worker call. */
  async function jacobianNorm(which, n) {
    let sum = 0;
    let part = null;
    for (let j = 0; j < state.model.k; j++) {
      part = await call('ae_jacobian_part', which, n, j, 1);
      if (!part) return null;
      sum += part.sum;
    }
    return { value: sum / n, source: part.source };
  }

  async function measureJacobian() {
    $('ae-jac').textContent = 'measuring…';
    $('ae-jac-plain').textContent = '';
    const own = await jacobianNorm('model', JACOBIAN_DIGITS);
    $('ae-jac').textContent = `${fmt(own.value, 3)} (${JACOBIAN_DIGITS} held-out digits)`;
    $('ae-jac').dataset.value = String(own.value);
    const plain = await jacobianNorm('plain', JACOBIAN_DIGITS);
    if (!plain) $('ae-jac-plain').textContent = `no plain model with k = ${state.model.k} yet (train or load one)`;
    else $('ae-jac-plain').textContent = `${fmt(plain.value, 3)}, ratio ${fmt(own.value / plain.value, 3)} — ${plain.source}`;
  }

  // ------------------------------------------------------------ views

  function clearViews() {
    state.train = [];
    state.held = [];
    state.lastEval = null;
    state.scatter = null;
    state.rate = null;
    state.manifold = null;
    drawLoss(canvas.loss, state.train, state.held);
    showRegulariser(null);
    $('ae-jac').textContent = '–';
    $('ae-jac-plain').textContent = '–';
  }

  function planeAvailable() {
    const on = state.model && state.model.k === 2;
    document.querySelector('.ae-plane').classList.toggle('ae-off', !on);
    $('ae-plane-note').textContent = on
      ? 'Left: the codes of held-out digits, coloured by label. Right: the decoder’s output over a 15×15 grid of the code square [0, 1]² (code 0 grows to the right, code 1 upwards). Hover or click either plane to decode that point.'
      : `The 2-D plane needs a model with k = 2 (this one has k = ${state.model?.k}). Set k = 2 or load the shipped model.`;
    return on;
  }

  function redrawPlanes() {
    if (!planeAvailable()) {
      drawScatter(canvas.scatter, null, [], null);
      drawManifold(canvas.manifold, null, null);
      return;
    }
    const sc = state.scatter;
    drawScatter(canvas.scatter, sc?.codes, sc?.labels ?? [], state.probe);
    drawManifold(canvas.manifold, state.manifold, state.probe);
  }

  /** The comparison grid and its note (held-out MSE of the autoencoder and of PCA). */
  async function updateGrid() {
    const grid = await call('ae_grid', state.gridOffset);
    drawGrid(canvas.grid, grid);
    canvas.grid.dataset.version = String(Number(canvas.grid.dataset.version || 0) + 1);
    canvas.grid.dataset.step = String(state.step);
    canvas.grid.dataset.pca = String(Boolean(grid.pca));
    const ev = state.lastEval;
    const pca = state.pca && state.pca.k === state.model.k ? state.pca : null;
    const parts = [];
    if (ev) parts.push(`autoencoder ${fmt(ev.mse)} (${ev.n} digits${grid.noisy ? ', from noisy inputs' : ''})`);
    if (pca && ev) parts.push(`PCA ${fmt(pca.mse_eval)} (the same digits${grid.noisy ? ', clean inputs' : ''})`);
    $('ae-grid-note').textContent =
      `One held-out digit per class. Held-out MSE per pixel: ${parts.join(', ') || '–'}.` +
      (grid.noisy ? ` The noisy inputs themselves: ${fmt(grid.mse_noisy)} on this row.` : '');
  }

  /**
   * Held-out evaluation, grid, scatter and manifold of the current model, as several short
   * worker calls: the cost on the first EVAL_DIGITS held-out digits (the same ones every
   * time, so the curve compares), then with k = 2 the codes of the rest for the scatter.
   */
  async function refresh() {
    const t0 = performance.now();
    const k2 = state.model.k === 2;
    const ev = await call('ae_eval', 0, EVAL_DIGITS);
    state.lastEval = ev;
    state.held.push([state.step, ev.cost]);
    showRegulariser(ev);
    await updateGrid();
    if (k2) {
      const codes = new Float32Array(2 * SCATTER_DIGITS);
      const labels = new Uint8Array(SCATTER_DIGITS);
      codes.set(ev.codes);
      labels.set(ev.labels);
      for (let s = EVAL_DIGITS; s < SCATTER_DIGITS; s += EVAL_DIGITS) {
        const c = await call('ae_codes', s, Math.min(EVAL_DIGITS, SCATTER_DIGITS - s));
        codes.set(c.codes, 2 * s);
        labels.set(c.labels, s);
      }
      state.scatter = { codes, labels };
      canvas.scatter.dataset.points = String(labels.length);
      const m = await call('ae_manifold', MANIFOLD_SIDE);
      state.manifold = digitsImage(m, MANIFOLD_SIDE * MANIFOLD_SIDE, MANIFOLD_SIDE);
      canvas.manifold.dataset.version = String(Number(canvas.manifold.dataset.version || 0) + 1);
    }
    redrawPlanes();
    drawLoss(canvas.loss, state.train, state.held);
    showStats();
    state.evalMs = performance.now() - t0;
    if (state.probe && k2) decodeAt(state.probe);
  }

  async function fitPca() {
    const k = state.model.k;
    const rows = Number($('ae-pca-rows').value);
    const status = $('ae-pca-status');
    status.textContent = `Fitting PCA (k = ${k}) on ${rows.toLocaleString()} training digits… (a few seconds; the worker waits)`;
    await sleep(0); // let the message paint
    const t0 = performance.now();
    const p = await call('ae_pca_fit', rows);
    state.pca = { ...p, seconds: (performance.now() - t0) / 1000 };
    status.textContent =
      `PCA k = ${p.k} on ${p.rows.toLocaleString()} training digits in ${state.pca.seconds.toFixed(1)} s: ` +
      `explains ${pct(p.explained)} of the variance; held-out MSE ${fmt(p.mse)} (all 2000 held-out digits).`;
    status.dataset.mse = String(p.mse_eval);
  }

  /** After the model changed: views from scratch, PCA for a new k. */
  async function modelChanged(info) {
    state.model = info;
    state.step = info.step;
    state.epoch = 0;
    state.probe = state.pinned = null;
    canvas.probe.getContext('2d').clearRect(0, 0, canvas.probe.width, canvas.probe.height);
    $('ae-probe-code').textContent = 'hover a plane';
    form.arch.value = info.arch;
    form.k.value = String(info.k);
    await applySettings();
    clearViews();
    showModel();
    setButtons();
    await refresh();
    if (!state.pca || state.pca.k !== info.k) {
      await fitPca();
      await updateGrid();
    }
  }

  // ------------------------------------------------------------ training

  async function pause() {
    state.running = false;
    if (state.loop) await state.loop;
  }

  async function trainLoop() {
    setError('');
    const runStart = { t: performance.now(), step: state.step };
    let computeMs = 0;
    let computeSteps = 0;
    let lastRefresh = performance.now();
    try {
      await applySettings();
      showModel();
      while (state.running) {
        const stop = stopAt();
        if (stop != null && state.step >= stop) break;
        const n = stop != null ? Math.min(state.chunk, stop - state.step) : state.chunk;
        const t0 = performance.now();
        const r = await call('ae_train_steps', n);
        const dt = performance.now() - t0;
        // aim each call at TRAIN_CALL_MS so Pause stays quick (changing slowly: timings are noisy)
        const ideal = (n * TRAIN_CALL_MS) / Math.max(dt, 1);
        state.chunk = Math.max(1, Math.min(100, Math.round(0.5 * state.chunk + 0.5 * ideal)));
        computeMs += dt;
        computeSteps += n;
        const first = r.step - r.losses.length;
        r.losses.forEach((v, i) => state.train.push([first + i + 1, v]));
        state.step = r.step;
        state.epoch = r.epoch;
        state.rate = { stepsPerSecond: (1000 * computeSteps) / computeMs, msPerStep: computeMs / computeSteps };
        drawLoss(canvas.loss, state.train, state.held);
        showStats();
        if (performance.now() - lastRefresh > Math.max(REFRESH_MIN_MS, REFRESH_SHARE * state.evalMs)) {
          await refresh();
          lastRefresh = performance.now();
        }
      }
    } catch (e) {
      setError(e.message);
    } finally {
      state.running = false;
      const wall = (performance.now() - runStart.t) / 1000;
      try {
        if (state.held.at(-1)?.[0] !== state.step) await refresh();
        if (form.kind.value === 'contractive') await measureJacobian();
      } catch (e) {
        setError(e.message);
      }
      $('ae-stats').dataset.runSeconds = String(wall);
      $('ae-stats').dataset.runSteps = String(state.step - runStart.step);
      setButtons();
    }
  }

  function startTraining() {
    if (state.running || state.busy) return;
    state.running = true; // before the loop starts, so that Pause can stop it at once
    state.loop = exclusive(trainLoop);
  }

  /** A new random model with the form's architecture, k and seed. */
  function resetModel() {
    let arch;
    try {
      arch = architecture();
    } catch (e) {
      setError(e.message);
      return Promise.resolve();
    }
    return pause().then(() =>
      exclusive(async () => {
        setError('');
        const info = await call('ae_reset', arch.arch, arch.k, arch.seed);
        await modelChanged(info);
      }).catch((e) => setError(e.message)),
    );
  }

  async function loadWeights(bytes, name) {
    await pause();
    return exclusive(async () => {
      setError('');
      const info = await call('ae_load_weights', bytes, name);
      const meta = info.meta || {};
      if (meta.kind || /plain|sparse|contractive|denoising/i.test(meta.model || '')) form.kind.value = info.kind;
      showKindFields();
      await modelChanged(info);
      const note = meta.heldout_mse ? ` Its card: held-out MSE ${meta.heldout_mse} (MNIST test digits), ${meta.command || ''}.` : '';
      $('ae-model').textContent += note;
    });
  }

  // ------------------------------------------------------------ the code plane

  async function decodeAt(code) {
    state.pendingDecode = code;
    if (state.decoding) return;
    state.decoding = true;
    try {
      while (state.pendingDecode) {
        const c = state.pendingDecode;
        state.pendingDecode = null;
        const img = await call('ae_decode', new Float32Array(c));
        drawMagnified(canvas.probe, digitsImage(img, 1, 1));
        $('ae-probe-code').textContent = `code (${c[0].toFixed(3)}, ${c[1].toFixed(3)})`;
      }
    } catch (e) {
      setError(e.message);
    } finally {
      state.decoding = false;
    }
  }

  function planeEvents(el, margin) {
    const at = (ev) => {
      const [x, y] = canvasPoint(el, ev);
      return planeFrame(el, margin).toCode(x, y);
    };
    el.addEventListener('mousemove', (ev) => {
      if (!state.ready || state.model?.k !== 2) return;
      state.probe = at(ev);
      redrawPlanes();
      decodeAt(state.probe);
    });
    el.addEventListener('click', (ev) => {
      if (!state.ready || state.model?.k !== 2) return;
      state.pinned = state.probe = at(ev);
      redrawPlanes();
      decodeAt(state.probe);
    });
    el.addEventListener('mouseleave', () => {
      state.probe = state.pinned;
      redrawPlanes();
      if (state.probe) decodeAt(state.probe);
    });
  }

  // ------------------------------------------------------------ start

  async function showBackend() {
    const info = await call('backend_info');
    const el = $('ae-backend');
    el.classList.remove('ae-cpu', 'ae-fallback');
    if (info.kind === 'cpu') {
      el.classList.add('ae-cpu');
      el.textContent = `Running on the CPU backend (wasm), not on a GPU: ${info.gpu_error || 'WebGPU is not available'}. Training works, more slowly.`;
    } else if (info.fallback) {
      el.classList.add('ae-fallback');
      el.textContent = `Running on WebGPU with ${info.adapter}, a software adapter that emulates a GPU on the CPU: training works, slowly.`;
    } else {
      el.textContent = '';
    }
    el.hidden = !el.textContent;
    panel.dataset.backend = info.kind;
  }

  async function start() {
    if (state.started) return;
    state.started = true;
    drawLoss(canvas.loss, [], []);
    redrawPlanes();
    try {
      await showBackend();
      const digits = await pageDigitBytes();
      await call('ae_load_digits', digits);
      state.ready = true;
      try {
        await loadWeights(await fetchBytes(SHIPPED_URL, 'the shipped k=2 model'), 'shipped');
      } catch (e) {
        // no shipped model on this server: start from an untrained one
        setError(`${e.message}. Starting from an untrained model; press Train.`);
        const arch = architecture();
        const info = await exclusive(() => call('ae_reset', arch.arch, arch.k, arch.seed));
        await exclusive(() => modelChanged(info));
      }
      panel.dataset.ready = 'true';
    } catch (e) {
      setError(e.message);
    }
    setButtons();
  }

  // ------------------------------------------------------------ wiring

  // the training settings apply from the next step (the worker runs calls in order, so this
  // lands between two training chunks)
  function settingsChanged() {
    if (!state.model) return;
    applySettings().then(
      () => {
        setError('');
        showModel();
      },
      (e) => setError(e.message),
    );
  }
  form.kind.addEventListener('change', () => {
    const kind = form.kind.value;
    if (kind in state.lambdas) form.lambda.value = String(state.lambdas[kind]);
    showKindFields();
    settingsChanged();
  });
  form.lambda.addEventListener('change', () => {
    if (form.kind.value in state.lambdas) state.lambdas[form.kind.value] = Number(form.lambda.value);
  });
  for (const el of [form.lambda, form.noise, form.level, form.lr, form.batch]) el.addEventListener('change', settingsChanged);
  for (const el of [form.arch, form.k]) el.addEventListener('change', () => state.ready && resetModel());
  $('ae-form').addEventListener('submit', (ev) => ev.preventDefault());

  btn.train.addEventListener('click', startTraining);
  btn.pause.addEventListener('click', () => pause());
  btn.reset.addEventListener('click', () => resetModel());
  btn.shipped.addEventListener('click', async () => {
    try {
      await loadWeights(await fetchBytes(SHIPPED_URL, 'the shipped k=2 model'), 'shipped');
    } catch (e) {
      setError(e.message);
    }
  });
  $('ae-file').addEventListener('change', async (ev) => {
    const file = ev.target.files[0];
    ev.target.value = '';
    if (!file) return;
    try {
      await loadWeights(new Uint8Array(await file.arrayBuffer()), file.name);
    } catch (e) {
      setError(e.message);
    }
  });
  btn.save.addEventListener('click', async () => {
    try {
      const bytes = await call('ae_weights');
      const m = state.model;
      download(bytes, `ae_${form.kind.value}_${m.arch}_k${m.k}_step${state.step}.safetensors`);
    } catch (e) {
      setError(e.message);
    }
  });
  btn.other.addEventListener('click', () => {
    state.gridOffset += 1;
    updateGrid().catch((e) => setError(e.message));
  });
  // PCA does not touch the model: it runs between training chunks, no need to pause
  btn.pca.addEventListener('click', async () => {
    btn.pca.disabled = true;
    try {
      await fitPca();
      await updateGrid();
    } catch (e) {
      setError(e.message);
    } finally {
      setButtons();
    }
  });
  btn.jac.addEventListener('click', () => measureJacobian().catch((e) => setError(e.message)));
  planeEvents(canvas.scatter, SCATTER_MARGIN);
  planeEvents(canvas.manifold, 0);

  const legend = $('ae-legend');
  legend.replaceChildren(
    ...PALETTE.map((c, d) => {
      const s = document.createElement('span');
      const dot = document.createElement('i');
      dot.style.background = c;
      s.append(dot, String(d));
      return s;
    }),
  );
  showKindFields();
  setButtons();

  // load the digits and the shipped model the first time the tab is shown
  if (!panel.hidden) start();
  else {
    const obs = new MutationObserver(() => {
      if (!panel.hidden) {
        obs.disconnect();
        start();
      }
    });
    obs.observe(panel, { attributes: true, attributeFilter: ['hidden'] });
  }
}
