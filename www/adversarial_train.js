// The Adversarial tab's robustness curve (accuracy against eps for the loaded models) and its
// in-tab training of a classifier (standard or adversarial), as panels of adversarial.js's tab.

import { lineChart, movingAverage, niceTicks } from './chart.js';
import { ChunkLoop, nextChunk } from './loop.js';
import { $, pct } from './util.js';
import { pageDigitBytes } from './digits.js';
import { allLanes, helperCount, sharedHelpers } from './workers.js';

export const LABELS = { standard: 'standard', adversarial: 'adversarially trained (RS-FGSM)', pgd: 'PGD-trained', trained: 'trained in this tab' };
const CURVE_EPS = [0, 0.05, 0.1, 0.15, 0.2, 0.25, 0.3];
const COLORS = { standard: '#2f5fd0', adversarial: '#1f8a4c', pgd: '#8e44ad', trained: '#c0392b' };
// Goodfellow et al. 2014 (maxout network, FGSM at eps 0.25): 89.4% error, 17.9% after
// adversarial training; shown on the curve as reference marks.
const PAPER = [
  { eps: 0.25, acc: 1 - 0.894, text: 'paper: maxout' },
  { eps: 0.25, acc: 1 - 0.179, text: 'paper: adv. trained' },
];
/** Digits evaluated per curve call at first; then aimed at ~0.4 s per call. */
const CURVE_CHUNK = { targetMs: 400, min: 10, max: 500 };
/** Training calls aim at ~0.3 s, so Pause answers quickly and the plots move smoothly. */
const TRAIN_CHUNK = { targetMs: 300, max: 50 };
const HELD_OUT_EVAL = 500;
const EVAL_EVERY = 50;

const mean = (a) => a.reduce((x, y) => x + y, 0) / a.length;

// ---------------------------------------------------------------- robustness curve

export function setupCurve(tab) {
  const { st, call } = tab;
  const curve = { running: false, cancel: false, results: {} }; // results[model][epsIndex] = {n, correct}
  const curveBtn = $('adv-curve-run');
  drawCurve(curve);

  curveBtn.addEventListener('click', async () => {
    if (curve.running) {
      curve.cancel = true;
      curveBtn.disabled = true;
      return;
    }
    const models = Object.keys(LABELS).filter((w) => st.models[w] && $(`adv-curve-${w}`).checked);
    if (!st.page || !models.length) {
      $('adv-curve-status').textContent = st.page ? 'Choose at least one model that is loaded.' : 'The digits are not loaded yet.';
      return;
    }
    curve.running = true;
    curve.cancel = false;
    curveBtn.textContent = 'Cancel';
    await runCurve(tab, curve, models, Number($('adv-curve-n').value), $('adv-curve-attack').value);
    curve.running = false;
    curveBtn.disabled = false;
    curveBtn.textContent = 'Compute the curve';
  });
}

/**
 * The workers that compute the curve: the tabs' worker alone (WebGPU, ?workers=1, one core),
 * or one helper per core (workers.js), each with the page digits and a copy of `models`
 * (the in-tab one as it is now). Each is {call, load}: `load()` readies the worker.
 */
async function curveWorkers(tab, models) {
  const { call, st } = tab;
  const n = helperCount(st.kind);
  if (n < 2) return [{ call, load: async () => {} }];
  const pool = sharedHelpers();
  const digits = await pageDigitBytes();
  const bytes = {};
  for (const w of models) bytes[w] = w === 'trained' ? await call('classifier_train_weights') : st.modelBytes[w];
  return (await pool.start(n)).map((h) => ({
    call: h.worker.call,
    async load() {
      await pool.ensure(h, 'adv:digits', digits, () => h.worker.call('adv_load_digits', digits));
      for (const w of models) await pool.ensure(h, `adv:${w}`, bytes[w], () => h.worker.call('adv_load_model', w, bytes[w]));
    },
  }));
}

/**
 * The chunks of the curve's work in order (each model, each eps, n digits): `take(count)`
 * gives the next {which, k, start, count}, or null when all are handed out.
 */
function chunker(models, n) {
  const tasks = models.flatMap((which) => CURVE_EPS.map((_, k) => ({ which, k })));
  let t = 0;
  let start = 0;
  return (count) => {
    if (start >= n) [t, start] = [t + 1, 0];
    if (t >= tasks.length) return null;
    const c = { ...tasks[t], start, count: Math.min(count, n - start) };
    start += c.count;
    return c;
  };
}

/**
 * Evaluate `n` held-out digits at every eps for each of `models`, in chunks handed to the
 * curve's workers as each finishes one (Cancel stops handing them out); draw as it goes.
 */
async function runCurve(tab, curve, models, n, kind) {
  curve.attackName = { fgsm: 'FGSM', gradient: 'gradient ascent, L2 28ε', iterative: 'iterative FGSM' }[kind];
  curve.results = Object.fromEntries(models.map((w) => [w, CURVE_EPS.map(() => null)]));
  const progress = $('adv-curve-progress');
  const status = $('adv-curve-status');
  const total = models.length * CURVE_EPS.length * n;
  progress.max = total;
  progress.value = 0;
  status.dataset.state = 'running';
  let done = 0;
  const t0 = performance.now();
  const take = chunker(models, n);
  try {
    const workers = await curveWorkers(tab, models);
    const on = workers.length > 1 ? ` on ${workers.length} workers` : '';
    await allLanes(workers.map((w) => async (failed) => {
      await w.load();
      let chunk = 50;
      for (let c = take(chunk); c && !curve.cancel && !failed(); c = take(chunk)) {
        const t = performance.now();
        const r = await w.call('adv_eval_chunk', c.which, n, c.start, c.count, kind, CURVE_EPS[c.k], -1);
        // eps 0 needs no attack: its timing would overestimate the chunk
        if (CURVE_EPS[c.k] > 0) chunk = nextChunk(c.count, performance.now() - t, CURVE_CHUNK);
        const acc = (curve.results[c.which][c.k] ??= { n: 0, correct: 0 });
        acc.n += r.n;
        acc.correct += r.correct;
        done += c.count;
        progress.value = done;
        status.textContent = `${LABELS[c.which]}, ε = ${CURVE_EPS[c.k]}: ${done.toLocaleString()} of ${total.toLocaleString()} digit evaluations${on}`;
        drawCurve(curve);
      }
    }));
    const secs = ((performance.now() - t0) / 1000).toFixed(1);
    status.textContent = curve.cancel ? `Cancelled after ${done.toLocaleString()} evaluations.` : `Done: ${n.toLocaleString()} page digits × ${CURVE_EPS.length} values of ε × ${models.length} model(s) in ${secs} s${on}.`;
    status.dataset.workers = String(workers.length);
    status.dataset.results = JSON.stringify(curve.results);
    status.dataset.state = curve.cancel ? 'cancelled' : 'done';
  } catch (e) {
    status.textContent = `The curve failed: ${e.message}`;
    status.dataset.state = 'error';
  }
}

function drawCurve(curve) {
  const entries = Object.entries(curve.results);
  lineChart($('adv-curve-canvas'), {
    x: { min: 0, max: 0.3, ticks: CURVE_EPS, label: 'ε (L∞ budget, pixel scale 0..1)' },
    y: { min: 0, max: 1, ticks: [0, 0.2, 0.4, 0.6, 0.8, 1], label: 'accuracy', fmt: (y) => `${Math.round(100 * y)}%` },
    series: entries.map(([which, rows]) => ({
      points: rows.map((r, k) => (r && r.n ? [CURVE_EPS[k], r.correct / r.n] : null)).filter(Boolean),
      color: COLORS[which],
      dots: 3.5,
    })),
    marks: curve.attackName === 'FGSM' ? PAPER.map((p) => ({ x: p.eps, y: p.acc, text: p.text })) : [],
    legend: entries.map(([which]) => ({ text: `${LABELS[which]} (${curve.attackName})`, color: COLORS[which] })),
    legendAt: 'bottom-left',
    empty: null,
  });
  // the numbers as a table
  const table = $('adv-curve-table');
  table.replaceChildren();
  if (!entries.length) return;
  const th = (textContent) => Object.assign(document.createElement('th'), { textContent });
  const head = table.createTHead().insertRow();
  head.appendChild(th(`accuracy, ${curve.attackName}`));
  for (const e of CURVE_EPS) head.appendChild(th(`ε ${e}`));
  const body = table.createTBody();
  for (const [which, rows] of entries) {
    const tr = body.insertRow();
    tr.dataset.model = which;
    tr.appendChild(th(LABELS[which]));
    CURVE_EPS.forEach((_, k) => {
      const td = tr.insertCell();
      const r = rows[k];
      td.textContent = r && r.n ? pct(r.correct / r.n) : '–';
      if (r && r.n) td.dataset.acc = String(r.correct / r.n);
    });
  }
}

// ---------------------------------------------------------------- training in the tab

export function setupTraining(tab) {
  const { panel } = tab;
  const tr = { loop: new ChunkLoop(TRAIN_CHUNK), exists: false, losses: [], batchAcc: [], heldOut: [], step: 0, nextEval: EVAL_EVERY, params: 0, mode: '' };
  const trainBtn = $('adv-train-run');
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
  drawTraining(tr);

  trainBtn.addEventListener('click', () => {
    if (tr.loop.running) {
      tr.loop.pause(); // the loop ends after the call in flight
      trainBtn.disabled = true;
      trainBtn.textContent = 'Pausing…';
      return;
    }
    tr.session = trainLoop(tab, tr, mode());
  });
  $('adv-train-reset').addEventListener('click', async () => {
    const resetBtn = $('adv-train-reset');
    resetBtn.disabled = true;
    tr.loop.pause(); // the loop stops after the call in flight
    await tr.session;
    trainBtn.disabled = true;
    try {
      await resetTrainer(tab, tr, mode());
      if ($('adv-model').value === 'trained') tab.requestUpdate();
    } catch (e) {
      $('adv-train-status').textContent = `Reset failed: ${e.message}`;
    }
    trainBtn.textContent = 'Train';
    trainBtn.disabled = false;
    resetBtn.disabled = false;
  });
  $('adv-train-attack').addEventListener('click', () => {
    $('adv-model').value = 'trained';
    tab.requestUpdate();
    panel.querySelector('.adv-attack').scrollIntoView({ behavior: 'smooth', block: 'start' });
  });
}

async function resetTrainer(tab, tr, mode) {
  const adv = mode === 'adversarial';
  const alpha = Number($('adv-alpha').value);
  const eps = Number($('adv-train-eps').value);
  const size = $('adv-train-size').value;
  const batch = Number($('adv-train-batch').value);
  const r = await tab.call('classifier_train_reset', size, adv, alpha, eps, batch, 0.001, 1);
  Object.assign(tr, { exists: true, losses: [], batchAcc: [], heldOut: [], step: 0, nextEval: EVAL_EVERY, params: r.parameters });
  tr.loop.resetChunk();
  tr.mode = adv ? `adversarial, α = ${alpha.toFixed(2)}, ε = ${eps.toFixed(2)} (RS-FGSM)` : 'standard';
  tab.st.models.trained = false;
  tab.syncModelOptions();
  $('adv-train-attack').disabled = true;
  drawTraining(tr);
  const status = $('adv-train-status');
  status.textContent = `New ${size} classifier (${r.parameters.toLocaleString()} parameters), ${tr.mode} training, batches of ${batch} from ${r.train_digits.toLocaleString()} page digits.`;
  delete status.dataset.lossStart;
  delete status.dataset.lossNow;
  status.dataset.step = '0';
  status.dataset.state = 'reset';
}

async function evalHeldOut(call, tr) {
  const r = await call('adv_eval_chunk', 'trained', HELD_OUT_EVAL, 0, HELD_OUT_EVAL, 'fgsm', 0, -1);
  tr.heldOut.push([tr.step, r.correct / r.n]);
}

async function trainLoop(tab, tr, mode) {
  const { st, call } = tab;
  const trainBtn = $('adv-train-run');
  const status = $('adv-train-status');
  trainBtn.textContent = 'Pause';
  status.dataset.state = 'running';
  try {
    await tr.loop.run({
      prepare: async () => {
        if (!tr.exists) await resetTrainer(tab, tr, mode);
      },
      step: (n) => call('classifier_train_steps', n),
      after: async (r) => {
        for (const l of r.losses) tr.losses.push(l);
        tr.step = r.step;
        tr.batchAcc.push([r.step, r.batch_accuracy]);
        if (!st.models.trained) {
          st.models.trained = true;
          tab.syncModelOptions();
          $('adv-train-attack').disabled = false;
        }
        if (tr.step >= tr.nextEval) {
          await evalHeldOut(call, tr);
          tr.nextEval = tr.step + EVAL_EVERY;
        }
        showProgress(tr, r);
        drawTraining(tr);
        if ($('adv-model').value === 'trained') tab.requestUpdate();
      },
    });
    // a held-out point where training paused
    if (tr.heldOut.at(-1)?.[0] !== tr.step && tr.step > 0) {
      await evalHeldOut(call, tr);
      drawTraining(tr);
      const last = tr.heldOut.at(-1);
      status.textContent = `Paused at step ${tr.step}: held-out accuracy ${pct(last[1])} (${HELD_OUT_EVAL} digits) · ${tr.mode}`;
    }
    status.dataset.state = 'paused';
  } catch (e) {
    status.textContent = `Training stopped: ${e.message}`;
    status.dataset.state = 'error';
  }
  trainBtn.textContent = tr.exists && tr.step ? 'Resume' : 'Train';
  trainBtn.disabled = false;
}

function showProgress(tr, r) {
  const status = $('adv-train-status');
  const last = tr.heldOut.at(-1);
  const recent = tr.losses.slice(-20);
  status.textContent = `step ${tr.step} · epoch ${r.epoch + 1} · loss ${mean(recent).toFixed(3)} (mean of the last ${recent.length}) · batch accuracy ${pct(r.batch_accuracy)}${last ? ` · held-out accuracy ${pct(last[1])} at step ${last[0]}` : ''} · ${tr.mode}`;
  status.dataset.step = String(tr.step);
  // for the e2e test and the curious: mean loss of the first and of the latest 5 steps
  status.dataset.lossStart = mean(tr.losses.slice(0, 5)).toFixed(4);
  status.dataset.lossNow = mean(tr.losses.slice(-5)).toFixed(4);
}

/** About five round tick values from 0 to max. */
const ticks = (max) => niceTicks(0, max);

function drawTraining(tr) {
  const xticks = ticks(Math.max(10, tr.step));
  if (xticks.at(-1) < tr.step) xticks.push(Number((2 * xticks.at(-1) - xticks.at(-2)).toPrecision(6)));
  const x = { min: 0, max: xticks.at(-1), ticks: xticks, label: 'step' };
  const raw = tr.losses.map((l, i) => [i + 1, l]);
  // a centred moving average (window grows with the run) for a readable trend without lag
  const smooth = movingAverage(raw, Math.min(25, Math.floor(raw.length / 40)));
  const ymax = Math.min(5, Math.max(0.5, ...tr.losses.slice(0, 20), ...tr.losses.slice(-200)));
  lineChart($('adv-loss-canvas'), {
    x,
    y: { min: 0, max: 1.08 * ymax, ticks: ticks(ymax), label: 'loss', fmt: (y) => y.toFixed(1) },
    series: [
      { points: raw, color: '#2f5fd0', width: 1, faint: true },
      { points: smooth, color: '#2f5fd0' },
    ],
    legend: [{ text: 'training loss (moving average; faint: each step)', color: '#2f5fd0' }],
    empty: null,
  });
  lineChart($('adv-acc-canvas'), {
    x,
    y: { min: 0, max: 1, ticks: [0, 0.25, 0.5, 0.75, 1], label: 'accuracy', fmt: (y) => `${Math.round(100 * y)}%` },
    series: [
      { points: tr.batchAcc, color: '#b86e00', width: 1, dots: 2, line: false, faint: true },
      { points: tr.heldOut, color: '#1f8a4c', dots: 3 },
    ],
    legend: [
      { text: 'last training batch', color: '#b86e00' },
      { text: `held-out (${HELD_OUT_EVAL} digits)`, color: '#1f8a4c' },
    ],
    legendAt: 'bottom-right',
    empty: null,
  });
}
