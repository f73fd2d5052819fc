// The Adversarial tab: pick or draw a digit, attack a classifier with FGSM (one step, iterative,
// targeted) and watch the prediction flip; the robustness curve (accuracy against eps) for the
// shipped models; and a classifier trained from scratch in the tab, then attacked.
//
// All computing happens in the worker (src/web/adversarial.rs), one short call at a time: an
// attack on one digit per update, one chunk of digits at one eps per curve call, a few steps per
// training call. The loops live here, so they can pause and cancel between calls.
//
// The tab is set up panel by panel; the panels share one context `tab` (the worker call, the
// state, and the functions one panel offers the others). This file: loading, the digit picker,
// the drawing pad and the attack view; adversarial_train.js: the curve and the training.

import { SIDE, digitsImage, drawMagnified, pageDigitBytes } from './digits.js';
import { $, onFirstShown, pct, setError } from './util.js';
import { LABELS, setupCurve, setupTraining } from './adversarial_train.js';
import { setupAdversarialViews } from './filters.js';

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
  pgd: {
    url: 'models/classifier_pgd.safetensors',
    name: 'PGD-trained classifier',
    how: 'nnlab train classifier --init classifier_adv.safetensors --adversarial --alpha 0 --eps 0.3 --pgd-steps 7 --out www/models/classifier_pgd.safetensors',
  },
};
/** The shipped models, then the one trained in the tab. */
const ALL_MODELS = [...Object.keys(MODELS), 'trained'];
const GRID_SIZE = 30;

const argmax = (a) => a.reduce((best, v, i) => (v > a[best] ? i : best), 0);

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

// ---------------------------------------------------------------- the tab

export function setupAdversarialTab(call) {
  const panel = $('panel-adversarial');
  const tab = {
    call,
    panel,
    showError: (e) => setError($('adv-error'), e),
    st: {
      started: false,
      page: null, // { count, labels: Uint8Array, pixels: Uint8Array, byClass: number[][] }
      models: Object.fromEntries(ALL_MODELS.map((w) => [w, false])),
      modelBytes: {}, // the shipped files' bytes, by model
      digit: null, // { pixels: Float32Array(784), label: number (-1: the model's prediction), source }
      fallback: false,
      cpu: false,
      heldOut: 2000, // page digits never used by the in-tab training (every held_out_every-th)
    },
  };
  tab.syncModelOptions = () => syncModelOptions(tab);
  $('adv-curve-n').addEventListener('change', tab.syncModelOptions);
  setupPicker(tab);
  setupDrawPad(tab);
  setupAttack(tab);
  setupCurve(tab);
  setupTraining(tab);
  setupAdversarialViews(call, { panel, after: panel.querySelector('.adv-top') });
  onFirstShown(panel, () => start(tab));
}

// ---------------------------------------------------------------- loading (on first view)

async function start(tab) {
  const { st, call } = tab;
  if (st.started) return;
  st.started = true;
  try {
    showBackendNotice(tab, await call('backend_info'));
  } catch (e) {
    tab.showError(e);
  }
  await Promise.all([loadDigits(tab), ...Object.keys(MODELS).map((w) => loadModel(tab, w))]);
  if (!st.models.standard) $('adv-model').value = Object.keys(MODELS).find((w) => st.models[w]) ?? 'trained';
  tab.syncModelOptions();
  tab.requestUpdate();
}

function showBackendNotice({ st }, info) {
  st.cpu = info.kind === 'cpu';
  st.kind = info.kind;
  st.fallback = info.kind === 'gpu' && info.fallback;
  const notice = $('adv-backend-notice');
  if (st.cpu) {
    notice.textContent = `WebGPU is not used here (${info.gpu_error || 'no adapter'}), so this tab runs on the CPU backend (wasm). Attacks on one digit stay quick; the robustness curve and training are slower, so start with few digits and the small model.`;
  } else if (st.fallback) {
    notice.textContent = `WebGPU runs on a software adapter, ${info.adapter}, that emulates a GPU on the CPU: the robustness curve and training are slow here; start with few digits and the small model.`;
  } else {
    return;
  }
  notice.hidden = false;
  $('adv-curve-n').value = '100';
}

async function loadDigits(tab) {
  const { st, call } = tab;
  try {
    const bytes = await pageDigitBytes();
    const { digits: count, held_out_every: heldOutEvery } = await call('adv_load_digits', bytes);
    const labels = bytes.subarray(8, 8 + count);
    const pixels = bytes.subarray(8 + count);
    const byClass = Array.from({ length: 10 }, () => []);
    for (let i = 0; i < count; i += heldOutEvery) byClass[labels[i]].push(i);
    st.page = { count, labels, pixels, byClass };
    st.heldOut = Math.ceil(count / heldOutEvery);
    tab.showGrid('all', false);
    const first = Number($('adv-grid').querySelector('.adv-thumb')?.dataset.index ?? 0);
    tab.pickDigit(first);
  } catch (e) {
    $('adv-grid').replaceChildren(Object.assign(document.createElement('p'), { className: 'error', textContent: `Cannot load the digits: ${e.message}` }));
  }
}

async function loadModel({ st, call }, which) {
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
    const bytes = new Uint8Array(await res.arrayBuffer());
    const meta = await call('adv_load_model', which, bytes);
    st.models[which] = true;
    st.modelBytes[which] = bytes; // for the curve's helper workers
    li.dataset.state = 'loaded';
    const acc = meta.test_accuracy ? `, ${pct(Number(meta.test_accuracy))} on the 10,000 MNIST test digits` : '';
    const adv = meta.adversarial && meta.adversarial !== 'no' ? ` (trained with ${meta.adversarial})` : '';
    li.textContent = `${name}: loaded${acc}${adv}.`;
  } catch (e) {
    li.dataset.state = 'error';
    li.textContent = `${name}: could not be loaded — ${e.message}`;
  }
}

function syncModelOptions({ st }) {
  const sel = $('adv-model');
  for (const opt of sel.options) opt.disabled = !st.models[opt.value];
  // the in-tab model trained on the page digits that are not held out (all but 2,000)
  const heldOutOnly = Number($('adv-curve-n').value) <= st.heldOut;
  for (const which of ALL_MODELS) {
    const box = $(`adv-curve-${which}`);
    const ok = st.models[which] && (which !== 'trained' || heldOutOnly);
    box.disabled = !ok;
    if (!ok) box.checked = false;
  }
}

// ---------------------------------------------------------------- picking a digit

/** Offers tab.showGrid and tab.pickDigit. */
function setupPicker(tab) {
  const { st, panel } = tab;
  const digitPixels = (i) => Float32Array.from(st.page.pixels.subarray(i * 784, (i + 1) * 784), (v) => v / 255);

  /** Fill the grid with held-out digits: mixed classes (in turn) or one class; shuffled or not. */
  tab.showGrid = (cls, shuffle) => {
    const grid = $('adv-grid');
    grid.replaceChildren();
    for (const i of gridPicks(st.page.byClass, cls, shuffle)) {
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
      b.addEventListener('click', () => tab.pickDigit(i));
      grid.appendChild(b);
    }
    markSelected();
  };

  function markSelected() {
    for (const b of $('adv-grid').querySelectorAll('.adv-thumb')) {
      b.setAttribute('aria-pressed', String(st.digit?.source === 'page' && st.digit.index === Number(b.dataset.index)));
    }
  }

  tab.pickDigit = (i) => {
    st.digit = { pixels: digitPixels(i), label: st.page.labels[i], source: 'page', index: i };
    st.lastPick = i;
    markSelected();
    tab.requestUpdate();
  };

  for (const b of panel.querySelectorAll('.adv-classes [data-class]')) {
    b.addEventListener('click', () => st.page && tab.showGrid(b.dataset.class, true));
  }
  $('adv-random').addEventListener('click', () => {
    if (!st.page) return;
    const list = st.page.byClass[Math.floor(Math.random() * 10)];
    tab.pickDigit(list[Math.floor(Math.random() * list.length)]);
  });

  for (const r of panel.querySelectorAll('input[name="adv-source"]')) {
    r.addEventListener('change', () => {
      const draw = r.value === 'draw' && r.checked;
      $('adv-draw').hidden = !draw;
      $('adv-pick').hidden = draw;
      if (!r.checked) return;
      if (draw) {
        st.digit = null; // until something is drawn
        if (tab.drawn()) tab.updateFromDrawing();
        else tab.requestUpdate();
      } else if (st.lastPick !== undefined) {
        tab.pickDigit(st.lastPick);
      }
    });
  }
}

/** GRID_SIZE digit indices from `byClass`: classes in turn ('all') or one class. */
function gridPicks(byClass, cls, shuffle) {
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
  if (cls !== 'all') return from(byClass[Number(cls)], GRID_SIZE);
  const per = byClass.map((l) => from(l, Math.ceil(GRID_SIZE / 10)));
  const picks = [];
  for (let k = 0; picks.length < GRID_SIZE; k++) for (let c = 0; c < 10 && picks.length < GRID_SIZE; c++) if (per[c][k] !== undefined) picks.push(per[c][k]);
  return picks;
}

// ---------------------------------------------------------------- drawing a digit

/** Offers tab.drawn(), tab.updateFromDrawing() and tab.drawingBytes(). */
function setupDrawPad(tab) {
  const { st } = tab;
  const pad = $('adv-draw-canvas');
  const padCtx = pad.getContext('2d', { willReadFrequently: true });
  let drawn = false;
  let stroke = null;
  tab.pad = pad;
  tab.drawn = () => drawn;
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
    tab.updateFromDrawing(); // coalesced: at most one request in flight
  });
  const endStroke = () => {
    if (!stroke) return;
    stroke = null;
    tab.updateFromDrawing();
  };
  pad.addEventListener('pointerup', endStroke);
  pad.addEventListener('pointercancel', endStroke);
  $('adv-draw-clear').addEventListener('click', () => {
    clearPad();
    st.digit = null;
    tab.requestUpdate();
  });

  /** The drawing's red channel (white ink on black), for the worker's MNIST preprocessing. */
  tab.drawingBytes = () => {
    const rgba = padCtx.getImageData(0, 0, pad.width, pad.height).data;
    const out = new Uint8Array(pad.width * pad.height);
    for (let i = 0; i < out.length; i++) out[i] = rgba[4 * i];
    return out;
  };
  tab.updateFromDrawing = () => {
    if (!drawn) return;
    st.digit = { drawing: true, source: 'drawing', label: -1 };
    tab.requestUpdate();
  };
}

// ---------------------------------------------------------------- the attack view

/** Offers tab.requestUpdate(): attack the current digit again with the current settings. */
function setupAttack(tab) {
  const epsInput = $('adv-eps');
  const attackSel = $('adv-attack');
  const verdict = $('adv-verdict');
  const bars = buildBars();

  function epsLabel() {
    const eps = Number(epsInput.value);
    $('adv-eps-value').textContent = eps.toFixed(2);
    $('adv-eps-255').textContent = attackSel.value === 'gradient' ? `(L2 norm 28ε = ${(28 * eps).toFixed(2)}, as an FGSM step's)` : `(±${Math.round(eps * 255)} of 255 grey levels)`;
  }
  epsLabel();
  attackSel.addEventListener('change', epsLabel);

  // One request in flight at most; changes made meanwhile are folded into one follow-up request
  // carrying the latest settings (so a fast slider never queues up stale work).
  let inFlight = false;
  let again = false;
  let timer = 0; // a debounced request not yet sent
  tab.requestUpdate = () => {
    verdict.dataset.busy = 'true';
    clearTimeout(timer);
    timer = setTimeout(() => {
      timer = 0;
      if (inFlight) again = true;
      else runUpdate();
    }, 30);
  };

  async function runUpdate() {
    inFlight = true;
    again = false;
    try {
      await attack(tab, bars);
    } catch (e) {
      verdict.textContent = `The attack failed: ${e.message}`;
      verdict.dataset.state = 'error';
    }
    inFlight = false;
    if (again) runUpdate();
    else if (!timer) verdict.dataset.busy = 'false';
  }

  epsInput.addEventListener('input', () => {
    epsLabel();
    tab.requestUpdate();
  });
  attackSel.addEventListener('change', () => {
    $('adv-target').disabled = !attackSel.value.startsWith('targeted');
    tab.requestUpdate();
  });
  $('adv-target').addEventListener('change', tab.requestUpdate);
  $('adv-model').addEventListener('change', tab.requestUpdate);
}

function buildBars() {
  const root = $('adv-bars');
  const rows = [];
  const el = (tag, className, textContent = '') => Object.assign(document.createElement(tag), { className, textContent });
  for (let k = 0; k < 10; k++) {
    const row = el('div', 'adv-bar-row');
    const track = el('div', 'adv-bar-track');
    const before = el('div', 'adv-bar before');
    const after = el('div', 'adv-bar after');
    track.append(before, after);
    const val = el('span', 'adv-bar-value');
    row.append(el('span', 'adv-bar-class', String(k)), track, val);
    root.appendChild(row);
    rows.push({ row, before, after, val });
  }
  return rows;
}

function showBars(bars, before, after, label) {
  for (let k = 0; k < 10; k++) {
    const b = bars[k];
    b.before.style.width = `${(100 * (before?.[k] ?? 0)).toFixed(1)}%`;
    b.after.style.width = `${(100 * (after?.[k] ?? 0)).toFixed(1)}%`;
    b.val.textContent = before ? `${pct(before[k])} → ${pct(after[k])}` : '';
    b.row.classList.toggle('is-label', k === label);
  }
}

/** One attack on the current digit with the settings on screen; the verdict says how it went. */
async function attack(tab, bars) {
  const { st, call } = tab;
  const verdict = $('adv-verdict');
  const which = $('adv-model').value;
  if (!st.digit) {
    verdict.textContent = st.page ? 'Pick a digit or draw one.' : 'Waiting for the digits…';
    verdict.dataset.state = 'idle';
    for (const id of ['adv-img-orig', 'adv-img-dir', 'adv-img-adv']) clearCanvas($(id));
    showBars(bars, null, null, -1);
    return;
  }
  if (!st.models[which]) {
    verdict.textContent = which === 'trained' ? 'Train a classifier in section 4 first.' : `The ${LABELS[which]} classifier is not loaded (see above).`;
    verdict.dataset.state = 'idle';
    drawDigit($('adv-img-orig'), st.digit.pixels ?? new Float32Array(784));
    return;
  }
  if (st.digit.drawing) {
    st.digit.pixels = await call('adv_preprocess_drawing', tab.drawingBytes(), tab.pad.width, tab.pad.height);
    st.digit.drawing = false;
    drawDigit($('adv-draw-preview'), st.digit.pixels);
  }
  const attackSel = $('adv-attack');
  const kind = attackSel.value;
  const eps = Number($('adv-eps').value);
  const target = Number($('adv-target').value);
  const r = await call('adv_attack', which, st.digit.pixels, st.digit.label, kind, eps, kind.startsWith('targeted') ? target : -1);
  drawDigit($('adv-img-orig'), st.digit.pixels);
  drawDiverging($('adv-img-dir'), r.direction);
  drawDigit($('adv-img-adv'), r.adversarial);
  $('adv-dir-caption').textContent = kind.endsWith('fgsm') || kind === 'gradient' ? `perturbation direction ${r.direction_kind}` : `perturbation ${r.direction_kind}`;
  const before = argmax(r.before);
  const after = argmax(r.after);
  showBars(bars, r.before, r.after, r.label);
  const truth = st.digit.source === 'page' ? `true label ${r.label}` : `no true label: taking the model's prediction ${r.label}`;
  let outcome;
  if (kind.startsWith('targeted')) outcome = after === target ? `reached the target ${target}` : `did not reach the target ${target}`;
  else outcome = after !== before ? 'the prediction flipped' : 'the prediction held';
  verdict.textContent = `${truth}. Before: ${before} (${pct(r.before[before])}). After ${attackSel.selectedOptions[0].textContent} at ε = ${eps.toFixed(2)}: ${after} (${pct(r.after[after])}) — ${outcome}.`;
  Object.assign(verdict.dataset, { state: 'done', label: String(r.label), before: String(before), after: String(after), eps: eps.toFixed(2) });
  // the layer views (filters.js) follow the digit on screen
  tab.panel.dispatchEvent(new CustomEvent('adv-attacked', { detail: { which, pixels: st.digit.pixels, adversarial: r.adversarial } }));
}
