// The "Improving the discriminator" panel of the Adversarial tab: a labels-only classifier and a
// semi-supervised one (+ consistency on the unlabelled page digits, VAT or noise) trained side
// by side on L labelled digits, with live held-out accuracy; x^, r and F(x^) vs F(x^ + r) for
// a few unlabelled digits; the shipped 100-label model's figures. Computing: src/web/semi.rs.

import { lineChart, niceTicks } from './chart.js';
import { digitsImage, drawMagnified, pageDigitBytes } from './digits.js';
import { ChunkLoop } from './loop.js';
import { $, onFirstShown, pct } from './util.js';

const SHIPPED_URL = 'models/classifier_semi100.safetensors';
/** Held-out digits per accuracy point, and how often (in steps) a point is taken. */
const HELD_OUT_EVAL = 500;
const EVAL_EVERY = 25;
/** Page digits shown as x^: training digits (index not a multiple of 5) of several classes (the file is sorted by class). */
const SHOW = [1, 2001, 4001, 6001, 8001, 9501];
const COLORS = { labels: '#b86e00', semi: '#1f8a4c' };
const TRAIN_CHUNK = { targetMs: 400, max: 20 };

const argmax = (a) => a.reduce((best, v, i) => (v > a[best] ? i : best), 0);

export function setupSemiPanel(call) {
  const card = $('semi-panel');
  if (!card) return;
  const st = { call, ready: false, exists: false, step: 0, curves: { labels: [], semi: [] }, loop: new ChunkLoop(TRAIN_CHUNK), session: null, desc: '' };
  drawCurves(st);
  const eps = $('semi-eps');
  $('semi-norm').addEventListener('change', () => {
    eps.value = $('semi-norm').value === 'l2' ? '2' : '0.1';
  });
  $('semi-run').addEventListener('click', () => {
    if (st.loop.running) {
      st.loop.pause();
      $('semi-run').disabled = true;
      $('semi-run').textContent = 'Pausing…';
      return;
    }
    st.session = trainLoop(st);
  });
  $('semi-reset').addEventListener('click', async () => {
    $('semi-reset').disabled = true;
    st.loop.pause();
    await st.session;
    try {
      await reset(st);
    } catch (e) {
      setStatus('error', `Reset failed: ${e.message}`);
    }
    $('semi-run').textContent = 'Train both';
    $('semi-run').disabled = false;
    $('semi-reset').disabled = false;
  });
  onFirstShown($('panel-adversarial'), () => load(st));
}

function setStatus(state, text) {
  const s = $('semi-status');
  s.dataset.state = state;
  s.textContent = text;
}

async function load(st) {
  try {
    const bytes = await pageDigitBytes();
    await st.call('semi_load_digits', bytes);
    st.ready = true;
    setStatus('ready', 'Press "Train both": both models start from the same weights; held-out accuracy on 500 page digits every 25 steps.');
  } catch (e) {
    setStatus('error', `Cannot load the digits: ${e.message}`);
  }
  await loadShipped(st);
}

async function loadShipped(st) {
  const el = $('semi-shipped');
  try {
    const res = await fetch(SHIPPED_URL);
    if (!res.ok) {
      el.textContent = `${SHIPPED_URL} is not on this server (HTTP ${res.status}); train it with the command in the README.`;
      return;
    }
    const meta = await st.call('semi_load_model', new Uint8Array(await res.arrayBuffer()));
    st.shipped = true;
    const acc = Number(meta.test_accuracy);
    el.textContent = `Trained with ${meta.training ?? 'VAT'} on MNIST training digits (not the page's): test error ${pct(1 - acc)} on the 10,000 MNIST test digits, in ${meta.train_seconds ?? '?'} s on a 2-core CPU. Below: its r on the unlabelled digits until a model is trained here.`;
    el.dataset.state = 'loaded';
    if (!st.exists && st.ready) await showDigits(st, 'shipped');
  } catch (e) {
    el.textContent = `The shipped model could not be loaded: ${e.message}`;
    el.dataset.state = 'error';
  }
}

function settings() {
  return { labels: Number($('semi-labels').value), kind: $('semi-kind').value, norm: $('semi-norm').value, eps: Number($('semi-eps').value) };
}

async function reset(st) {
  const s = settings();
  const r = await st.call('semi_reset', s.labels, s.kind, s.norm, s.eps, 1.0, 1);
  Object.assign(st, { exists: true, step: 0, curves: { labels: [], semi: [] }, nextEval: EVAL_EVERY, settings: s });
  st.loop.resetChunk();
  st.desc = `${s.labels} labelled + ${r.unlabelled.toLocaleString()} unlabelled page digits, ${s.kind === 'adversarial' ? 'VAT' : 'noise'} consistency, ${s.norm === 'l2' ? 'L2' : 'sign'} ε = ${s.eps}, λ = 1; ${r.parameters.toLocaleString()} parameters each`;
  setStatus('reset', `New pair of models: ${st.desc}.`);
  $('semi-status').dataset.step = '0';
  drawCurves(st);
}

async function evalBoth(st) {
  for (const which of ['labels', 'semi']) {
    const r = await st.call('semi_eval_chunk', which, 0, HELD_OUT_EVAL);
    st.curves[which].push([st.step, r.correct / r.n]);
  }
}

async function trainLoop(st) {
  if (!st.ready) {
    setStatus('error', 'The digits are not loaded yet.');
    return;
  }
  $('semi-run').textContent = 'Pause';
  setStatus('running', 'Training…');
  try {
    await st.loop.run({
      prepare: async () => {
        if (!st.exists) await reset(st);
      },
      step: (n) => st.call('semi_train_steps', n),
      after: async (r) => {
        st.step = r.step;
        st.last = r;
        if (st.step >= st.nextEval) {
          await evalBoth(st);
          st.nextEval = st.step + EVAL_EVERY;
          await showDigits(st, 'semi');
        }
        showProgress(st);
        drawCurves(st);
      },
    });
    if (st.step > 0 && st.curves.semi.at(-1)?.[0] !== st.step) {
      await evalBoth(st);
      await showDigits(st, 'semi');
      drawCurves(st);
    }
    showProgress(st);
    $('semi-status').dataset.state = 'paused';
  } catch (e) {
    setStatus('error', `Training stopped: ${e.message}`);
  }
  $('semi-run').textContent = st.step ? 'Resume' : 'Train both';
  $('semi-run').disabled = false;
}

function showProgress(st) {
  const a = st.curves.labels.at(-1);
  const b = st.curves.semi.at(-1);
  const acc = a && b ? ` · held-out accuracy at step ${b[0]}: labels only ${pct(a[1])}, semi-supervised ${pct(b[1])}` : '';
  const r = st.last;
  const cost = r ? ` · costs: labels only ${r.labels_loss.toFixed(3)}, semi ${r.semi_loss.toFixed(3)} (consistency ${r.consistency.toFixed(3)})` : '';
  const s = $('semi-status');
  s.textContent = `step ${st.step}${acc}${cost} · ${st.desc}`;
  s.dataset.step = String(st.step);
  if (a && b) {
    s.dataset.accLabels = String(a[1]);
    s.dataset.accSemi = String(b[1]);
  }
}

function drawCurves(st) {
  const xticks = niceTicks(0, Math.max(50, st.step));
  const x = { min: 0, max: xticks.at(-1), ticks: xticks, label: 'step' };
  lineChart($('semi-acc-canvas'), {
    x,
    y: { min: 0, max: 1, ticks: [0, 0.25, 0.5, 0.75, 1], label: 'held-out accuracy', fmt: (y) => `${Math.round(100 * y)}%` },
    series: [
      { points: st.curves.labels, color: COLORS.labels, dots: 3 },
      { points: st.curves.semi, color: COLORS.semi, dots: 3 },
    ],
    legend: [
      { text: 'labels only', color: COLORS.labels },
      { text: 'labels + unlabelled consistency', color: COLORS.semi },
    ],
    legendAt: 'bottom-right',
    empty: null,
  });
}

/** x^, r (blue/white/red, scaled to its largest pixel) and x^ + r, with both predictions. */
async function showDigits(st, which) {
  const s = which === 'shipped' ? { kind: 'adversarial', norm: 'l2', eps: 2 } : st.settings;
  const r = await st.call('semi_show', which, SHOW, s.kind, s.norm, s.eps, st.step + 1);
  const box = $('semi-show');
  box.replaceChildren();
  box.dataset.model = which;
  SHOW.forEach((_, k) => {
    const x = r.x.subarray(k * 784, (k + 1) * 784);
    const rr = r.r.subarray(k * 784, (k + 1) * 784);
    const xr = Float32Array.from(x, (v, i) => Math.min(1, Math.max(0, v + rr[i])));
    const peak = rr.reduce((m, v) => Math.max(m, Math.abs(v)), 0) || 1;
    const before = r.before.subarray(k * 10, (k + 1) * 10);
    const after = r.after.subarray(k * 10, (k + 1) * 10);
    const fig = document.createElement('figure');
    fig.className = 'semi-digit';
    fig.append(canvasOf(digitsImage(x, 1, 1)), canvasOf(diverging(rr, peak)), canvasOf(digitsImage(xr, 1, 1)));
    const cap = document.createElement('figcaption');
    const pb = argmax(before);
    const pa = argmax(after);
    cap.textContent = `F(x̂): ${pb} (${pct(before[pb])}) · F(x̂ + r): ${pa} (${pct(after[pa])}) · KL ${r.kl[k].toFixed(3)}`;
    fig.append(cap);
    box.append(fig);
  });
  const note = document.createElement('p');
  note.className = 'hint';
  note.textContent = `Each: x̂, r (${s.kind === 'adversarial' ? 'virtual adversarial' : 'random'} direction, ${s.norm === 'l2' ? `L2 norm ${s.eps}` : `±${s.eps}`}; blue −, red +), x̂ + r — under the ${which === 'shipped' ? 'shipped' : 'semi-supervised'} model.`;
  box.append(note);
}

function canvasOf(image) {
  const c = document.createElement('canvas');
  c.width = 84;
  c.height = 84;
  drawMagnified(c, image);
  return c;
}

/** 784 values as a blue (-peak) / white / red (+peak) map. */
function diverging(values, peak) {
  const img = new ImageData(28, 28);
  values.forEach((v, i) => {
    const t = Math.max(-1, Math.min(1, v / peak));
    const c = t >= 0 ? [255, 255 * (1 - t), 255 * (1 - t)] : [255 * (1 + t), 255 * (1 + t), 255];
    img.data.set([c[0], c[1], c[2], 255], 4 * i);
  });
  return img;
}
