// The Autoencoders tab's views: the cost curve, the comparison grid (autoencoder vs PCA), the
// k = 2 code plane (scatter of held-out codes, decoded manifold, decoded point under the mouse),
// the regulariser's figures, and the evaluation that refreshes them. Panels of autoencoders.js's
// tab: each function takes the tab context.
import { SIDE, digitsImage, drawMagnified } from './digits.js';
import { expAverage, lineChart } from './chart.js';
import { $, pct } from './util.js';

/** The ten label colours of the scatter (Tableau 10). */
export const PALETTE = ['#4e79a7', '#f28e2b', '#e15759', '#76b7b2', '#59a14f', '#edc948', '#b07aa1', '#ff9da7', '#9c755f', '#5c5c5c'];
const MANIFOLD_SIDE = 15;
/** Held-out digits for the cost curve and code statistics (one worker call). */
const EVAL_DIGITS = 500;
/** Held-out digits in the k = 2 scatter (in calls of EVAL_DIGITS). */
const SCATTER_DIGITS = 2000;
/** Held-out digits for the Jacobian measurement (the worker caps k * n). */
const JACOBIAN_DIGITS = 100;
const SCATTER_MARGIN = 26;

export const fmt = (v, d = 4) => (v == null || !Number.isFinite(v) ? '–' : v.toFixed(d));

// ---------------------------------------------------------------- drawing

/** Training cost (each step, drawn smoothed) and held-out cost (at evaluations) vs step. */
export function drawLoss(canvas, train, held) {
  lineChart(canvas, {
    x: { label: 'step' },
    y: { label: 'cost', floor: 0, fmt: (v) => v.toFixed(3) },
    series: [
      { points: expAverage(train, 0.95), color: '#2f5fd0' },
      { points: held, color: '#d9480f', width: 1.5, dots: 2.5 },
    ],
    // the key is under the chart (index.html)
    empty: 'no training yet',
  });
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

// ---------------------------------------------------------------- figures

export function showRegulariser({ state }, ev) {
  $('ae-near-zero').textContent = ev ? `${pct(ev.near_zero)} of ${ev.n} × ${state.model.k}` : '–';
  $('ae-mean-code').textContent = ev ? fmt(ev.mean_code, 3) : '–';
}

/** E‖∂φ/∂x‖²_F over `n` digits, one code unit (one backward pass) per worker call. */
async function jacobianNorm({ call, state }, which, n) {
  let sum = 0;
  let part = null;
  for (let j = 0; j < state.model.k; j++) {
    part = await call('ae_jacobian_part', which, n, j, 1);
    if (!part) return null;
    sum += part.sum;
  }
  return { value: sum / n, source: part.source };
}

export async function measureJacobian(tab) {
  $('ae-jac').textContent = 'measuring…';
  $('ae-jac-plain').textContent = '';
  const own = await jacobianNorm(tab, 'model', JACOBIAN_DIGITS);
  $('ae-jac').textContent = `${fmt(own.value, 3)} (${JACOBIAN_DIGITS} held-out digits)`;
  $('ae-jac').dataset.value = String(own.value);
  const plain = await jacobianNorm(tab, 'plain', JACOBIAN_DIGITS);
  if (!plain) $('ae-jac-plain').textContent = `no plain model with k = ${tab.state.model.k} yet (train or load one)`;
  else $('ae-jac-plain').textContent = `${fmt(plain.value, 3)}, ratio ${fmt(own.value / plain.value, 3)} — ${plain.source}`;
}

export function clearViews(tab) {
  const { state } = tab;
  Object.assign(state, { train: [], held: [], lastEval: null, scatter: null, rate: null, manifold: null });
  drawLoss(tab.canvas.loss, state.train, state.held);
  showRegulariser(tab, null);
  $('ae-jac').textContent = '–';
  $('ae-jac-plain').textContent = '–';
}

function planeAvailable({ state }) {
  const on = state.model && state.model.k === 2;
  document.querySelector('.ae-plane').classList.toggle('ae-off', !on);
  $('ae-plane-note').textContent = on
    ? 'Left: the codes of held-out digits, coloured by label. Right: the decoder’s output over a 15×15 grid of the code square [0, 1]² (code 0 grows to the right, code 1 upwards). Hover or click either plane to decode that point.'
    : state.model
      ? `The 2-D plane needs a model with k = 2 (this one has k = ${state.model.k}). Set k = 2 or load the shipped model.`
      : 'The 2-D plane shows the codes of a model with k = 2 once one is loaded.';
  return on;
}

export function redrawPlanes(tab) {
  const { state, canvas } = tab;
  if (!planeAvailable(tab)) {
    drawScatter(canvas.scatter, null, [], null);
    drawManifold(canvas.manifold, null, null);
    return;
  }
  const sc = state.scatter;
  drawScatter(canvas.scatter, sc?.codes, sc?.labels ?? [], state.probe);
  drawManifold(canvas.manifold, state.manifold, state.probe);
}

/** The comparison grid and its note (held-out MSE of the autoencoder and of PCA). */
export async function updateGrid({ call, state, canvas }) {
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
export async function refresh(tab) {
  const { call, state, canvas } = tab;
  const t0 = performance.now();
  const k2 = state.model.k === 2;
  const ev = await call('ae_eval', 0, EVAL_DIGITS);
  state.lastEval = ev;
  state.held.push([state.step, ev.cost]);
  showRegulariser(tab, ev);
  await updateGrid(tab);
  if (k2) {
    state.scatter = await scatterCodes(call, ev);
    canvas.scatter.dataset.points = String(state.scatter.labels.length);
    const m = await call('ae_manifold', MANIFOLD_SIDE);
    state.manifold = digitsImage(m, MANIFOLD_SIDE * MANIFOLD_SIDE, MANIFOLD_SIDE);
    canvas.manifold.dataset.version = String(Number(canvas.manifold.dataset.version || 0) + 1);
  }
  redrawPlanes(tab);
  drawLoss(canvas.loss, state.train, state.held);
  tab.showStats();
  state.evalMs = performance.now() - t0;
  if (state.probe && k2) decodeAt(tab, state.probe);
}

/** The codes of SCATTER_DIGITS held-out digits: those of the evaluation `ev`, then the rest. */
async function scatterCodes(call, ev) {
  const codes = new Float32Array(2 * SCATTER_DIGITS);
  const labels = new Uint8Array(SCATTER_DIGITS);
  codes.set(ev.codes);
  labels.set(ev.labels);
  for (let s = EVAL_DIGITS; s < SCATTER_DIGITS; s += EVAL_DIGITS) {
    const c = await call('ae_codes', s, Math.min(EVAL_DIGITS, SCATTER_DIGITS - s));
    codes.set(c.codes, 2 * s);
    labels.set(c.labels, s);
  }
  return { codes, labels };
}

export async function fitPca({ call, state }) {
  const k = state.model.k;
  const rows = Number($('ae-pca-rows').value);
  const status = $('ae-pca-status');
  status.textContent = `Fitting PCA (k = ${k}) on ${rows.toLocaleString()} training digits… (a few seconds; the worker waits)`;
  await new Promise((r) => setTimeout(r, 0)); // let the message paint
  const t0 = performance.now();
  const p = await call('ae_pca_fit', rows);
  state.pca = { ...p, seconds: (performance.now() - t0) / 1000 };
  status.textContent =
    `PCA k = ${p.k} on ${p.rows.toLocaleString()} training digits in ${state.pca.seconds.toFixed(1)} s: ` +
    `explains ${pct(p.explained)} of the variance; held-out MSE ${fmt(p.mse)} (all 2000 held-out digits).`;
  status.dataset.mse = String(p.mse_eval);
}

// ---------------------------------------------------------------- the code plane

/** Decode `code` into the probe canvas; a request made meanwhile replaces the pending one. */
export async function decodeAt(tab, code) {
  const { call, state, canvas } = tab;
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
    tab.showError(e);
  } finally {
    state.decoding = false;
  }
}

/** Hovering a plane decodes the point under the mouse; a click pins it. */
export function setupPlane(tab) {
  const { state, canvas } = tab;
  for (const [el, margin] of [[canvas.scatter, SCATTER_MARGIN], [canvas.manifold, 0]]) {
    const at = (ev) => {
      const [x, y] = canvasPoint(el, ev);
      return planeFrame(el, margin).toCode(x, y);
    };
    const probe = (ev, pin) => {
      if (!state.ready || state.model?.k !== 2) return;
      state.probe = at(ev);
      if (pin) state.pinned = state.probe;
      redrawPlanes(tab);
      decodeAt(tab, state.probe);
    };
    el.addEventListener('mousemove', (ev) => probe(ev, false));
    el.addEventListener('click', (ev) => probe(ev, true));
    el.addEventListener('mouseleave', () => {
      state.probe = state.pinned;
      redrawPlanes(tab);
      if (state.probe) decodeAt(tab, state.probe);
    });
  }
  $('ae-legend').replaceChildren(
    ...PALETTE.map((c, d) => {
      const s = document.createElement('span');
      const dot = document.createElement('i');
      dot.style.background = c;
      s.append(dot, String(d));
      return s;
    }),
  );
}

/** Forget the decoded point (a new model). */
export function clearProbe({ state, canvas }) {
  state.probe = state.pinned = null;
  canvas.probe.getContext('2d').clearRect(0, 0, canvas.probe.width, canvas.probe.height);
  $('ae-probe-code').textContent = 'hover a plane';
}
