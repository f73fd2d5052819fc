// The Adversarial tab: pick or draw a digit, attack a classifier with FGSM (one step, iterative,
// targeted) and watch the prediction flip; the robustness curve (accuracy against eps) for the
// shipped models; and a classifier trained from scratch in the tab, then attacked.
//
// All computing happens in the worker (src/web/adversarial.rs), one short call at a time: an
// attack on one digit per update, one chunk of digits at one eps per curve call, a few steps per
// training call. The loops live here, so they can pause and cancel between calls.

import { SIDE, digitsImage, drawMagnified, pageDigitBytes } from './digits.js';

const MODELS = {
  standard: {
    url: 'models/classifier.safetensors',
    name: 'Standard classifier',
    how: 'nnlab train classifier --out www/models/classifier.safetensors',
  },
  adversarial: {
    url: 'models/classifier_adv.safetensors',
    name: 'Adversarially trained classifier',
    how: 'nnlab train classifier --adversarial --random-start --out www/models/classifier_adv.safetensors',
  },
};
const CURVE_EPS = [0, 0.05, 0.1, 0.15, 0.2, 0.25, 0.3];
const COLORS = { standard: '#2f5fd0', adversarial: '#1f8a4c', trained: '#c0392b' };
const LABELS = { standard: 'standard', adversarial: 'adversarially trained', trained: 'trained in this tab' };
const GRID_SIZE = 30;
// Goodfellow et al. 2014 (maxout network, FGSM at eps 0.25): 89.4% error, 17.9% after
// adversarial training; shown on the curve as reference marks.
const PAPER = [
  { eps: 0.25, acc: 1 - 0.894, text: 'paper: maxout' },
  { eps: 0.25, acc: 1 - 0.179, text: 'paper: adv. trained' },
];

const $ = (id) => document.getElementById(id);
const pct = (p) => `${(100 * p).toFixed(1)}%`;
const argmax = (a) => a.reduce((best, v, i) => (v > a[best] ? i : best), 0);
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

// ---------------------------------------------------------------- drawing helpers

/** Draw 784 values in [0, 1] (white on black) magnified to fill `canvas`, without smoothing. */
function drawDigit(canvas, pixels) {
  drawMagnified(canvas, digitsImage(pixels, 1, 1));
}

/** Draw 784 values in [-1, 1] with a diverging colormap: blue (-1), white (0), red (+1). */
function drawDiverging(canvas, values) {
  const img = new ImageData(SIDE, SIDE);
  const neg = [33, 102, 172];
  const pos = [178, 24, 43];
  for (let i = 0; i < SIDE * SIDE; i++) {
    const v = Math.max(-1, Math.min(1, values[i]));
    const c = v < 0 ? neg : pos;
    const t = Math.abs(v);
    img.data.set([255 + t * (c[0] - 255), 255 + t * (c[1] - 255), 255 + t * (c[2] - 255), 255], 4 * i);
  }
  drawMagnified(canvas, img);
}

function clearCanvas(canvas, color = '#f0f2f6') {
  const ctx = canvas.getContext('2d');
  ctx.fillStyle = color;
  ctx.fillRect(0, 0, canvas.width, canvas.height);
}

/**
 * A line plot on `canvas`: axes with ticks, then `series` = [{points: [[x, y]], color, dots,
 * width, faint}] and optional `marks` = [{x, y, text}]. x and y ranges are given.
 */
function plot(canvas, { xmin, xmax, ymin, ymax, xlabel, ylabel, xticks, yticks, yfmt = String, series, marks = [], legend = [], legendAt = 'top-right' }) {
  const ctx = canvas.getContext('2d');
  const W = canvas.width;
  const H = canvas.height;
  const m = { l: 52, r: 14, t: 12, b: 38 };
  const px = (x) => m.l + ((x - xmin) / (xmax - xmin || 1)) * (W - m.l - m.r);
  const py = (y) => H - m.b - ((y - ymin) / (ymax - ymin || 1)) * (H - m.t - m.b);
  ctx.clearRect(0, 0, W, H);
  ctx.fillStyle = '#fff';
  ctx.fillRect(0, 0, W, H);
  ctx.font = '11px system-ui, sans-serif';
  ctx.strokeStyle = '#e6e9ef';
  ctx.fillStyle = '#5b6475';
  ctx.lineWidth = 1;
  ctx.textAlign = 'center';
  ctx.textBaseline = 'top';
  for (const x of xticks) {
    ctx.beginPath();
    ctx.moveTo(px(x), m.t);
    ctx.lineTo(px(x), H - m.b);
    ctx.stroke();
    ctx.fillText(String(x), px(x), H - m.b + 4);
  }
  ctx.textAlign = 'right';
  ctx.textBaseline = 'middle';
  for (const y of yticks) {
    ctx.beginPath();
    ctx.moveTo(m.l, py(y));
    ctx.lineTo(W - m.r, py(y));
    ctx.stroke();
    ctx.fillText(yfmt(y), m.l - 6, py(y));
  }
  ctx.textAlign = 'center';
  ctx.textBaseline = 'bottom';
  ctx.fillText(xlabel, (m.l + W - m.r) / 2, H - 2);
  ctx.save();
  ctx.translate(12, (m.t + H - m.b) / 2);
  ctx.rotate(-Math.PI / 2);
  ctx.textBaseline = 'middle';
  ctx.fillText(ylabel, 0, 0);
  ctx.restore();
  ctx.strokeStyle = '#8a93a3';
  ctx.strokeRect(m.l, m.t, W - m.l - m.r, H - m.t - m.b);

  ctx.save();
  ctx.beginPath();
  ctx.rect(m.l, m.t, W - m.l - m.r, H - m.t - m.b);
  ctx.clip();
  for (const s of series) {
    ctx.strokeStyle = s.color;
    ctx.fillStyle = s.color;
    ctx.globalAlpha = s.faint ? 0.45 : 1;
    ctx.lineWidth = s.width ?? 2;
    if (s.line !== false && s.points.length > 1) {
      ctx.beginPath();
      s.points.forEach(([x, y], i) => (i ? ctx.lineTo(px(x), py(y)) : ctx.moveTo(px(x), py(y))));
      ctx.stroke();
    }
    if (s.dots) {
      for (const [x, y] of s.points) {
        ctx.beginPath();
        ctx.arc(px(x), py(y), s.dots, 0, 2 * Math.PI);
        ctx.fill();
      }
    }
  }
  ctx.globalAlpha = 1;
  ctx.restore();
  ctx.fillStyle = '#1d2330';
  ctx.strokeStyle = '#1d2330';
  ctx.textAlign = 'left';
  ctx.textBaseline = 'middle';
  for (const mk of marks) {
    const [x, y] = [px(mk.x), py(mk.y)];
    ctx.beginPath();
    ctx.moveTo(x - 5, y - 5);
    ctx.lineTo(x + 5, y + 5);
    ctx.moveTo(x + 5, y - 5);
    ctx.lineTo(x - 5, y + 5);
    ctx.lineWidth = 1.5;
    ctx.stroke();
    ctx.fillText(mk.text, x + 8, y);
  }
  // legend in a corner the data leaves free: 'top-right', 'bottom-right' or 'bottom-left'
  let ly = legendAt === 'top-right' ? m.t + 10 : H - m.b - 10 - 16 * (legend.length - 1);
  const left = legendAt === 'bottom-left';
  ctx.textAlign = left ? 'left' : 'right';
  for (const { text, color } of legend) {
    ctx.fillStyle = color;
    ctx.fillRect(left ? m.l + 8 : W - m.r - 14, ly - 2, 10, 4);
    ctx.fillStyle = '#1d2330';
    ctx.fillText(text, left ? m.l + 24 : W - m.r - 20, ly);
    ly += 16;
  }
}

// ---------------------------------------------------------------- the tab

export function setupAdversarialTab(call) {
  const panel = $('panel-adversarial');
  const errorEl = $('adv-error');
  const showError = (e) => {
    errorEl.textContent = e ? String(e.message || e) : '';
    errorEl.hidden = !e;
  };

  const st = {
    started: false,
    page: null, // { count, labels: Uint8Array, pixels: Uint8Array, byClass: number[][] }
    models: { standard: false, adversarial: false, trained: false },
    digit: null, // { pixels: Float32Array(784), label: number (-1: the model's prediction), source }
    fallback: false,
    cpu: false,
    heldOut: 2000, // page digits never used by the in-tab training (every held_out_every-th)
  };

  // ---------------------------------------------------------------- loading (on first view)

  async function start() {
    if (st.started) return;
    st.started = true;
    try {
      const info = await call('backend_info');
      st.cpu = info.kind === 'cpu';
      st.fallback = info.kind === 'gpu' && info.fallback;
      const notice = $('adv-backend-notice');
      if (st.cpu) {
        notice.textContent = `WebGPU is not used here (${info.gpu_error || 'no adapter'}), so this tab runs on the CPU backend (wasm). Attacks on one digit stay quick; the robustness curve and training are slower, so start with few digits and the small model.`;
        notice.hidden = false;
        $('adv-curve-n').value = '100';
      } else if (st.fallback) {
        notice.textContent = `WebGPU runs on a software adapter, ${info.adapter}, that emulates a GPU on the CPU: the robustness curve and training are slow here; start with few digits and the small model.`;
        notice.hidden = false;
        $('adv-curve-n').value = '100';
      }
    } catch (e) {
      showError(e);
    }
    await Promise.all([loadDigits(), loadModel('standard'), loadModel('adversarial')]);
    if (!st.models.standard) $('adv-model').value = st.models.adversarial ? 'adversarial' : 'trained';
    syncModelOptions();
    requestUpdate();
  }

  async function loadDigits() {
    try {
      const bytes = await pageDigitBytes();
      const { digits: count, held_out_every: heldOutEvery } = await call('adv_load_digits', bytes);
      const labels = bytes.subarray(8, 8 + count);
      const pixels = bytes.subarray(8 + count);
      const byClass = Array.from({ length: 10 }, () => []);
      for (let i = 0; i < count; i += heldOutEvery) byClass[labels[i]].push(i);
      st.page = { count, labels, pixels, byClass };
      st.heldOut = Math.ceil(count / heldOutEvery);
      showGrid('all', false);
      const first = Number($('adv-grid').querySelector('.adv-thumb')?.dataset.index ?? 0);
      pickDigit(first);
    } catch (e) {
      $('adv-grid').replaceChildren(Object.assign(document.createElement('p'), { className: 'error', textContent: `Cannot load the digits: ${e.message}` }));
    }
  }

  async function loadModel(which) {
    const li = $(`adv-model-${which}`);
    const { url, name, how } = MODELS[which];
    try {
      const res = await fetch(url);
      if (res.status === 404) {
        li.dataset.state = 'missing';
        li.textContent = `${name}: missing — ${url} is not on this server. Train it with \`${how}\` (see the README), then reload.`;
        return;
      }
      if (!res.ok) throw new Error(`HTTP ${res.status} for ${url}`);
      const meta = await call('adv_load_model', which, new Uint8Array(await res.arrayBuffer()));
      st.models[which] = true;
      li.dataset.state = 'loaded';
      const acc = meta.test_accuracy ? `, ${pct(Number(meta.test_accuracy))} on the 10,000 MNIST test digits` : '';
      const adv = meta.adversarial && meta.adversarial !== 'no' ? ` (trained with ${meta.adversarial})` : '';
      li.textContent = `${name}: loaded${acc}${adv}.`;
    } catch (e) {
      li.dataset.state = 'error';
      li.textContent = `${name}: could not be loaded — ${e.message}`;
    }
  }

  function syncModelOptions() {
    const sel = $('adv-model');
    for (const opt of sel.options) opt.disabled = !st.models[opt.value];
    // the in-tab model trained on the page digits that are not held out (all but 2,000)
    const heldOutOnly = Number($('adv-curve-n').value) <= st.heldOut;
    for (const which of ['standard', 'adversarial', 'trained']) {
      const box = $(`adv-curve-${which}`);
      const ok = st.models[which] && (which !== 'trained' || heldOutOnly);
      box.disabled = !ok;
      if (!ok) box.checked = false;
    }
  }
  $('adv-curve-n').addEventListener('change', syncModelOptions);

  // ---------------------------------------------------------------- picking a digit

  function digitPixels(i) {
    const raw = st.page.pixels.subarray(i * 784, (i + 1) * 784);
    return Float32Array.from(raw, (v) => v / 255);
  }

  /** Fill the grid with held-out digits: mixed classes (in turn) or one class; shuffled or not. */
  function showGrid(cls, shuffle) {
    const { byClass } = st.page;
    let picks = [];
    const from = (list, n) => {
      const copy = list.slice();
      if (shuffle) {
        for (let i = copy.length - 1; i > 0; i--) {
          const j = Math.floor(Math.random() * (i + 1));
          [copy[i], copy[j]] = [copy[j], copy[i]];
        }
      }
      return copy.slice(0, n);
    };
    if (cls === 'all') {
      const per = byClass.map((l) => from(l, Math.ceil(GRID_SIZE / 10)));
      for (let k = 0; picks.length < GRID_SIZE; k++) for (let c = 0; c < 10 && picks.length < GRID_SIZE; c++) if (per[c][k] !== undefined) picks.push(per[c][k]);
    } else {
      picks = from(byClass[Number(cls)], GRID_SIZE);
    }
    const grid = $('adv-grid');
    grid.replaceChildren();
    for (const i of picks) {
      const b = document.createElement('button');
      b.type = 'button';
      b.className = 'adv-thumb';
      b.dataset.index = String(i);
      b.title = `digit #${i}, label ${st.page.labels[i]}`;
      b.setAttribute('aria-label', `digit ${st.page.labels[i]} (#${i})`);
      const c = document.createElement('canvas');
      c.width = 56;
      c.height = 56;
      drawDigit(c, digitPixels(i));
      b.appendChild(c);
      b.addEventListener('click', () => pickDigit(i));
      grid.appendChild(b);
    }
    markSelected();
  }

  function markSelected() {
    for (const b of $('adv-grid').querySelectorAll('.adv-thumb')) {
      b.setAttribute('aria-pressed', String(st.digit?.source === 'page' && st.digit.index === Number(b.dataset.index)));
    }
  }

  function pickDigit(i) {
    st.digit = { pixels: digitPixels(i), label: st.page.labels[i], source: 'page', index: i };
    st.lastPick = i;
    markSelected();
    requestUpdate();
  }

  for (const b of panel.querySelectorAll('.adv-classes [data-class]')) {
    b.addEventListener('click', () => st.page && showGrid(b.dataset.class, true));
  }
  $('adv-random').addEventListener('click', () => {
    if (!st.page) return;
    const c = Math.floor(Math.random() * 10);
    const list = st.page.byClass[c];
    pickDigit(list[Math.floor(Math.random() * list.length)]);
  });

  for (const r of panel.querySelectorAll('input[name="adv-source"]')) {
    r.addEventListener('change', () => {
      const draw = r.value === 'draw' && r.checked;
      $('adv-draw').hidden = !draw;
      $('adv-pick').hidden = draw;
      if (!r.checked) return;
      if (draw) {
        st.digit = null; // until something is drawn
        if (drawn) updateFromDrawing();
        else requestUpdate();
      } else if (st.lastPick !== undefined) {
        pickDigit(st.lastPick);
      }
    });
  }

  // ---------------------------------------------------------------- drawing a digit

  const pad = $('adv-draw-canvas');
  const padCtx = pad.getContext('2d', { willReadFrequently: true });
  let drawn = false;
  let stroke = null;
  function clearPad() {
    padCtx.fillStyle = '#000';
    padCtx.fillRect(0, 0, pad.width, pad.height);
    drawn = false;
    clearCanvas($('adv-draw-preview'), '#000');
  }
  clearPad();
  const padPoint = (ev) => {
    const r = pad.getBoundingClientRect();
    return [((ev.clientX - r.left) * pad.width) / r.width, ((ev.clientY - r.top) * pad.height) / r.height];
  };
  pad.addEventListener('pointerdown', (ev) => {
    pad.setPointerCapture(ev.pointerId);
    stroke = padPoint(ev);
    padCtx.fillStyle = '#fff';
    padCtx.beginPath();
    padCtx.arc(stroke[0], stroke[1], 10, 0, 2 * Math.PI);
    padCtx.fill();
    drawn = true;
  });
  pad.addEventListener('pointermove', (ev) => {
    if (!stroke) return;
    const p = padPoint(ev);
    padCtx.strokeStyle = '#fff';
    padCtx.lineWidth = 20; // about 2 pixels once the digit is scaled to 20x20, like MNIST's pen
    padCtx.lineCap = 'round';
    padCtx.lineJoin = 'round';
    padCtx.beginPath();
    padCtx.moveTo(stroke[0], stroke[1]);
    padCtx.lineTo(p[0], p[1]);
    padCtx.stroke();
    stroke = p;
    updateFromDrawing(); // coalesced: at most one request in flight
  });
  const endStroke = () => {
    if (!stroke) return;
    stroke = null;
    updateFromDrawing();
  };
  pad.addEventListener('pointerup', endStroke);
  pad.addEventListener('pointercancel', endStroke);
  $('adv-draw-clear').addEventListener('click', () => {
    clearPad();
    st.digit = null;
    requestUpdate();
  });

  /** The drawing's red channel (white ink on black), for the worker's MNIST preprocessing. */
  function drawingBytes() {
    const rgba = padCtx.getImageData(0, 0, pad.width, pad.height).data;
    const out = new Uint8Array(pad.width * pad.height);
    for (let i = 0; i < out.length; i++) out[i] = rgba[4 * i];
    return out;
  }
  function updateFromDrawing() {
    if (!drawn) return;
    st.digit = { drawing: true, source: 'drawing', label: -1 };
    requestUpdate();
  }

  // ---------------------------------------------------------------- the attack view

  const epsInput = $('adv-eps');
  const attackSel = $('adv-attack');
  const targetSel = $('adv-target');
  const verdict = $('adv-verdict');
  const bars = buildBars();

  function buildBars() {
    const root = $('adv-bars');
    const rows = [];
    for (let k = 0; k < 10; k++) {
      const row = document.createElement('div');
      row.className = 'adv-bar-row';
      const cls = Object.assign(document.createElement('span'), { className: 'adv-bar-class', textContent: String(k) });
      const track = Object.assign(document.createElement('div'), { className: 'adv-bar-track' });
      const before = Object.assign(document.createElement('div'), { className: 'adv-bar before' });
      const after = Object.assign(document.createElement('div'), { className: 'adv-bar after' });
      track.append(before, after);
      const val = Object.assign(document.createElement('span'), { className: 'adv-bar-value' });
      row.append(cls, track, val);
      root.appendChild(row);
      rows.push({ row, before, after, val });
    }
    return rows;
  }

  function showBars(before, after, label) {
    for (let k = 0; k < 10; k++) {
      const b = bars[k];
      b.before.style.width = `${(100 * (before?.[k] ?? 0)).toFixed(1)}%`;
      b.after.style.width = `${(100 * (after?.[k] ?? 0)).toFixed(1)}%`;
      b.val.textContent = before ? `${pct(before[k])} → ${pct(after[k])}` : '';
      b.row.classList.toggle('is-label', k === label);
    }
  }

  function epsLabel() {
    const eps = Number(epsInput.value);
    $('adv-eps-value').textContent = eps.toFixed(2);
    $('adv-eps-255').textContent = `(±${Math.round(eps * 255)} of 255 grey levels)`;
  }
  epsLabel();

  // One request in flight at most; changes made meanwhile are folded into one follow-up request
  // carrying the latest settings (so a fast slider never queues up stale work).
  let inFlight = false;
  let again = false;
  let timer = 0; // a debounced request not yet sent
  function requestUpdate() {
    verdict.dataset.busy = 'true';
    clearTimeout(timer);
    timer = setTimeout(() => {
      timer = 0;
      if (inFlight) again = true;
      else runUpdate();
    }, 30);
  }

  async function runUpdate() {
    inFlight = true;
    again = false;
    try {
      await update();
    } catch (e) {
      verdict.textContent = `The attack failed: ${e.message}`;
      verdict.dataset.state = 'error';
    }
    inFlight = false;
    if (again) runUpdate();
    else if (!timer) verdict.dataset.busy = 'false';
  }

  async function update() {
    const which = $('adv-model').value;
    if (!st.digit) {
      verdict.textContent = st.page ? 'Pick a digit or draw one.' : 'Waiting for the digits…';
      verdict.dataset.state = 'idle';
      for (const id of ['adv-img-orig', 'adv-img-dir', 'adv-img-adv']) clearCanvas($(id));
      showBars(null, null, -1);
      return;
    }
    if (!st.models[which]) {
      verdict.textContent = which === 'trained' ? 'Train a classifier in section 4 first.' : `The ${LABELS[which]} classifier is not loaded (see above).`;
      verdict.dataset.state = 'idle';
      drawDigit($('adv-img-orig'), st.digit.pixels ?? new Float32Array(784));
      return;
    }
    if (st.digit.drawing) {
      st.digit.pixels = await call('adv_preprocess_drawing', drawingBytes(), pad.width, pad.height);
      st.digit.drawing = false;
      drawDigit($('adv-draw-preview'), st.digit.pixels);
    }
    const kind = attackSel.value;
    const eps = Number(epsInput.value);
    const target = Number(targetSel.value);
    const r = await call('adv_attack', which, st.digit.pixels, st.digit.label, kind, eps, kind.startsWith('targeted') ? target : -1);
    drawDigit($('adv-img-orig'), st.digit.pixels);
    drawDiverging($('adv-img-dir'), r.direction);
    drawDigit($('adv-img-adv'), r.adversarial);
    $('adv-dir-caption').textContent = kind.endsWith('fgsm') ? `perturbation direction ${r.direction_kind}` : `perturbation ${r.direction_kind}`;
    const before = argmax(r.before);
    const after = argmax(r.after);
    showBars(r.before, r.after, r.label);
    const truth = st.digit.source === 'page' ? `true label ${r.label}` : `no true label: taking the model's prediction ${r.label}`;
    let outcome;
    if (kind.startsWith('targeted')) outcome = after === target ? `reached the target ${target}` : `did not reach the target ${target}`;
    else outcome = after !== before ? 'the prediction flipped' : 'the prediction held';
    verdict.textContent = `${truth}. Before: ${before} (${pct(r.before[before])}). After ${attackSel.selectedOptions[0].textContent} at ε = ${eps.toFixed(2)}: ${after} (${pct(r.after[after])}) — ${outcome}.`;
    verdict.dataset.state = 'done';
    verdict.dataset.label = String(r.label);
    verdict.dataset.before = String(before);
    verdict.dataset.after = String(after);
    verdict.dataset.eps = eps.toFixed(2);
  }

  epsInput.addEventListener('input', () => {
    epsLabel();
    requestUpdate();
  });
  attackSel.addEventListener('change', () => {
    targetSel.disabled = !attackSel.value.startsWith('targeted');
    requestUpdate();
  });
  targetSel.addEventListener('change', requestUpdate);
  $('adv-model').addEventListener('change', requestUpdate);

  // ---------------------------------------------------------------- robustness curve

  const curve = { running: false, cancel: false, results: {} }; // results[model][epsIndex] = {n, correct}
  const curveBtn = $('adv-curve-run');

  function drawCurve() {
    const series = [];
    const legend = [];
    for (const [which, rows] of Object.entries(curve.results)) {
      const pts = rows.map((r, k) => (r && r.n ? [CURVE_EPS[k], r.correct / r.n] : null)).filter(Boolean);
      series.push({ points: pts, color: COLORS[which], dots: 3.5 });
      legend.push({ text: `${LABELS[which]} (${curve.attackName})`, color: COLORS[which] });
    }
    plot($('adv-curve-canvas'), {
      xmin: 0,
      xmax: 0.3,
      ymin: 0,
      ymax: 1,
      xlabel: 'ε (L∞ budget, pixel scale 0..1)',
      ylabel: 'accuracy',
      xticks: CURVE_EPS,
      yticks: [0, 0.2, 0.4, 0.6, 0.8, 1],
      yfmt: (y) => `${Math.round(100 * y)}%`,
      series,
      marks: curve.attackName === 'FGSM' ? PAPER.map((p) => ({ x: p.eps, y: p.acc, text: p.text })) : [],
      legend,
      legendAt: 'bottom-left',
    });
    // the numbers as a table
    const table = $('adv-curve-table');
    table.replaceChildren();
    if (!Object.keys(curve.results).length) return;
    const head = table.createTHead().insertRow();
    head.appendChild(Object.assign(document.createElement('th'), { textContent: `accuracy, ${curve.attackName}` }));
    for (const e of CURVE_EPS) head.appendChild(Object.assign(document.createElement('th'), { textContent: `ε ${e}` }));
    const body = table.createTBody();
    for (const [which, rows] of Object.entries(curve.results)) {
      const tr = body.insertRow();
      tr.dataset.model = which;
      tr.appendChild(Object.assign(document.createElement('th'), { textContent: LABELS[which] }));
      CURVE_EPS.forEach((_, k) => {
        const td = tr.insertCell();
        const r = rows[k];
        td.textContent = r && r.n ? pct(r.correct / r.n) : '–';
        if (r && r.n) td.dataset.acc = String(r.correct / r.n);
      });
    }
  }
  drawCurve();

  curveBtn.addEventListener('click', async () => {
    if (curve.running) {
      curve.cancel = true;
      curveBtn.disabled = true;
      return;
    }
    const models = ['standard', 'adversarial', 'trained'].filter((w) => st.models[w] && $(`adv-curve-${w}`).checked);
    if (!st.page || !models.length) {
      $('adv-curve-status').textContent = st.page ? 'Choose at least one model that is loaded.' : 'The digits are not loaded yet.';
      return;
    }
    const n = Number($('adv-curve-n').value);
    const kind = $('adv-curve-attack').value;
    curve.attackName = kind === 'fgsm' ? 'FGSM' : 'iterative FGSM';
    curve.results = Object.fromEntries(models.map((w) => [w, CURVE_EPS.map(() => null)]));
    curve.running = true;
    curve.cancel = false;
    curveBtn.textContent = 'Cancel';
    const progress = $('adv-curve-progress');
    const status = $('adv-curve-status');
    const total = models.length * CURVE_EPS.length * n;
    progress.max = total;
    progress.value = 0;
    status.dataset.state = 'running';
    let done = 0;
    let chunk = 50;
    const t0 = performance.now();
    try {
      outer: for (const which of models) {
        for (let k = 0; k < CURVE_EPS.length; k++) {
          const acc = { n: 0, correct: 0 };
          curve.results[which][k] = acc;
          for (let start = 0; start < n; ) {
            if (curve.cancel) break outer;
            const count = Math.min(chunk, n - start);
            const t = performance.now();
            const r = await call('adv_eval_chunk', which, n, start, count, kind, CURVE_EPS[k], -1);
            // aim at ~0.4 s per call: long enough to amortise the call, short enough to cancel
            const ms = performance.now() - t;
            if (CURVE_EPS[k] > 0) chunk = Math.max(10, Math.min(500, Math.round((count * 400) / Math.max(ms, 1))));
            acc.n += r.n;
            acc.correct += r.correct;
            start += count;
            done += count;
            progress.value = done;
            status.textContent = `${LABELS[which]}, ε = ${CURVE_EPS[k]}: ${done.toLocaleString()} of ${total.toLocaleString()} digit evaluations`;
            drawCurve();
          }
        }
      }
      const secs = ((performance.now() - t0) / 1000).toFixed(1);
      status.textContent = curve.cancel ? `Cancelled after ${done.toLocaleString()} evaluations.` : `Done: ${n.toLocaleString()} page digits × ${CURVE_EPS.length} values of ε × ${models.length} model(s) in ${secs} s.`;
      status.dataset.state = curve.cancel ? 'cancelled' : 'done';
    } catch (e) {
      status.textContent = `The curve failed: ${e.message}`;
      status.dataset.state = 'error';
    }
    curve.running = false;
    curveBtn.disabled = false;
    curveBtn.textContent = 'Compute the curve';
  });

  // ---------------------------------------------------------------- training in the tab

  const tr = { running: false, loop: null, exists: false, losses: [], batchAcc: [], heldOut: [], step: 0, chunk: 1, nextEval: 50, params: 0, mode: '' };
  const trainBtn = $('adv-train-run');
  const trainStatus = $('adv-train-status');
  const mode = () => panel.querySelector('input[name="adv-train-mode"]:checked').value;

  for (const r of panel.querySelectorAll('input[name="adv-train-mode"]')) {
    r.addEventListener('change', () => {
      const adv = mode() === 'adversarial';
      $('adv-alpha').disabled = !adv;
      $('adv-train-eps').disabled = !adv;
    });
  }
  $('adv-alpha').addEventListener('input', () => ($('adv-alpha-value').textContent = Number($('adv-alpha').value).toFixed(2)));
  $('adv-train-eps').addEventListener('input', () => ($('adv-train-eps-value').textContent = Number($('adv-train-eps').value).toFixed(2)));

  async function resetTrainer() {
    const adv = mode() === 'adversarial';
    const alpha = Number($('adv-alpha').value);
    const eps = Number($('adv-train-eps').value);
    const size = $('adv-train-size').value;
    const batch = Number($('adv-train-batch').value);
    const r = await call('classifier_train_reset', size, adv, alpha, eps, batch, 0.001, 1);
    Object.assign(tr, { exists: true, losses: [], batchAcc: [], heldOut: [], step: 0, chunk: 1, nextEval: 50, params: r.parameters });
    tr.mode = adv ? `adversarial, α = ${alpha.toFixed(2)}, ε = ${eps.toFixed(2)} (RS-FGSM)` : 'standard';
    st.models.trained = false;
    syncModelOptions();
    $('adv-train-attack').disabled = true;
    drawTraining();
    trainStatus.textContent = `New ${size} classifier (${r.parameters.toLocaleString()} parameters), ${tr.mode} training, batches of ${batch} from ${r.train_digits.toLocaleString()} page digits.`;
    delete trainStatus.dataset.lossStart;
    delete trainStatus.dataset.lossNow;
    trainStatus.dataset.step = '0';
    trainStatus.dataset.state = 'reset';
  }

  async function evalHeldOut() {
    const n = 500;
    const r = await call('adv_eval_chunk', 'trained', n, 0, n, 'fgsm', 0, -1);
    tr.heldOut.push([tr.step, r.correct / r.n]);
  }

  function drawTraining() {
    const xticks = ticks(Math.max(10, tr.step));
    if (xticks.at(-1) < tr.step) xticks.push(Number((2 * xticks.at(-1) - xticks.at(-2)).toPrecision(6)));
    const steps = xticks.at(-1);
    const raw = tr.losses.map((l, i) => [i + 1, l]);
    // a centred moving average (window grows with the run) for a readable trend without lag
    const h = Math.min(25, Math.floor(raw.length / 40));
    const smooth = raw.map(([x], i) => {
      const w = tr.losses.slice(Math.max(0, i - h), i + h + 1);
      return [x, w.reduce((a, b) => a + b, 0) / w.length];
    });
    const ymax = Math.max(0.5, ...tr.losses.slice(0, 20), ...tr.losses.slice(-200));
    plot($('adv-loss-canvas'), {
      xmin: 0,
      xmax: steps,
      ymin: 0,
      ymax: 1.08 * Math.min(ymax, 5),
      xlabel: 'step',
      ylabel: 'loss',
      xticks,
      yticks: ticks(Math.min(ymax, 5)),
      yfmt: (y) => y.toFixed(1),
      series: [
        { points: raw, color: '#2f5fd0', width: 1, faint: true },
        { points: smooth, color: '#2f5fd0' },
      ],
      legend: [{ text: 'training loss (moving average; faint: each step)', color: '#2f5fd0' }],
    });
    plot($('adv-acc-canvas'), {
      xmin: 0,
      xmax: steps,
      ymin: 0,
      ymax: 1,
      xlabel: 'step',
      ylabel: 'accuracy',
      xticks,
      yticks: [0, 0.25, 0.5, 0.75, 1],
      yfmt: (y) => `${Math.round(100 * y)}%`,
      series: [
        { points: tr.batchAcc, color: '#b86e00', width: 1, dots: 2, line: false, faint: true },
        { points: tr.heldOut, color: '#1f8a4c', dots: 3 },
      ],
      legend: [
        { text: 'last training batch', color: '#b86e00' },
        { text: 'held-out (500 digits)', color: '#1f8a4c' },
      ],
      legendAt: 'bottom-right',
    });
  }
  drawTraining();

  /** About five round tick values from 0 to max. */
  function ticks(max) {
    const raw = max / 5;
    const mag = 10 ** Math.floor(Math.log10(raw));
    const step = [1, 2, 5, 10].map((m) => m * mag).find((s) => s >= raw);
    const out = [];
    for (let v = 0; v <= max + 1e-9; v += step) out.push(Number(v.toPrecision(6)));
    return out;
  }

  async function trainLoop() {
    tr.running = true;
    trainBtn.textContent = 'Pause';
    trainStatus.dataset.state = 'running';
    try {
      if (!tr.exists) await resetTrainer();
      while (tr.running) {
        const t = performance.now();
        const r = await call('classifier_train_steps', tr.chunk);
        const ms = performance.now() - t;
        // aim at ~0.3 s per call so Pause answers quickly and the plots move smoothly
        tr.chunk = Math.max(1, Math.min(50, Math.round((tr.chunk * 300) / Math.max(ms, 1))));
        for (const l of r.losses) tr.losses.push(l);
        tr.step = r.step;
        tr.batchAcc.push([r.step, r.batch_accuracy]);
        if (!st.models.trained) {
          st.models.trained = true;
          syncModelOptions();
          $('adv-train-attack').disabled = false;
        }
        if (tr.step >= tr.nextEval) {
          await evalHeldOut();
          tr.nextEval = tr.step + 50;
        }
        const last = tr.heldOut.at(-1);
        const recent = tr.losses.slice(-20);
        const meanLoss = recent.reduce((a, b) => a + b, 0) / recent.length;
        trainStatus.textContent = `step ${tr.step} · epoch ${r.epoch + 1} · loss ${meanLoss.toFixed(3)} (mean of the last ${recent.length}) · batch accuracy ${pct(r.batch_accuracy)}${last ? ` · held-out accuracy ${pct(last[1])} at step ${last[0]}` : ''} · ${tr.mode}`;
        trainStatus.dataset.step = String(tr.step);
        // for the e2e test and the curious: mean loss of the first and of the latest 5 steps
        const mean = (a) => a.reduce((x, y) => x + y, 0) / a.length;
        trainStatus.dataset.lossStart = mean(tr.losses.slice(0, 5)).toFixed(4);
        trainStatus.dataset.lossNow = mean(tr.losses.slice(-5)).toFixed(4);
        drawTraining();
        if ($('adv-model').value === 'trained') requestUpdate();
        await sleep(0); // let the page draw between calls
      }
      // a held-out point where training paused
      if (tr.heldOut.at(-1)?.[0] !== tr.step && tr.step > 0) {
        await evalHeldOut();
        drawTraining();
        const last = tr.heldOut.at(-1);
        trainStatus.textContent = `Paused at step ${tr.step}: held-out accuracy ${pct(last[1])} (500 digits) · ${tr.mode}`;
      }
      trainStatus.dataset.state = 'paused';
    } catch (e) {
      trainStatus.textContent = `Training stopped: ${e.message}`;
      trainStatus.dataset.state = 'error';
    }
    tr.running = false;
    trainBtn.textContent = tr.exists && tr.step ? 'Resume' : 'Train';
    trainBtn.disabled = false;
  }

  trainBtn.addEventListener('click', () => {
    if (tr.running) {
      tr.running = false; // the loop ends after the call in flight
      trainBtn.disabled = true;
      trainBtn.textContent = 'Pausing…';
      return;
    }
    tr.loop = trainLoop();
  });
  $('adv-train-reset').addEventListener('click', async () => {
    const resetBtn = $('adv-train-reset');
    resetBtn.disabled = true;
    tr.running = false;
    await tr.loop; // the loop stops after the call in flight
    trainBtn.disabled = true;
    try {
      await resetTrainer();
      if ($('adv-model').value === 'trained') requestUpdate();
    } catch (e) {
      trainStatus.textContent = `Reset failed: ${e.message}`;
    }
    trainBtn.textContent = 'Train';
    trainBtn.disabled = false;
    resetBtn.disabled = false;
  });
  $('adv-train-attack').addEventListener('click', () => {
    $('adv-model').value = 'trained';
    requestUpdate();
    panel.querySelector('.adv-attack').scrollIntoView({ behavior: 'smooth', block: 'start' });
  });

  // ---------------------------------------------------------------- start when first shown

  const startIfShown = () => {
    if (!panel.hidden) start();
  };
  new MutationObserver(startIfShown).observe(panel, { attributes: true, attributeFilter: ['hidden'] });
  startIfShown();
}
