// The GAN tab: train a dense GAN or a DCGAN on MNIST digits in the page, watch D's and G's
// losses and an 8x8 grid of samples from a fixed set of z; or load the shipped DCGAN. Then the
// latent tools (interpolation, local smoothness), quality numbers from the shipped classifier,
// and a "Real or Fake?" game against D (those in gan_tools.js).
// Everything heavy runs in the worker through `call(cmd, ...args)` (src/web/gan.rs); this file
// drives short calls in loops that can pause between them, and draws on canvases. The panels
// share one context `tab` (the call, the form, the state).
import { pageDigitBytes } from './digits.js';
import { lineChart, trailingAverage } from './chart.js';
import { ChunkLoop, MAX_CALL_MS } from './loop.js';
import { $, download, fetchBytes, setError } from './util.js';
import {
  GRID_COLS,
  GROUPS,
  PICK_COLOURS,
  clearLatentTools,
  drawDigits,
  fmt,
  frameCell,
  scoreNow,
  setupGame,
  setupLatentTools,
  setupQuality,
  showQualityHistory,
} from './gan_tools.js';
import { setupAeVsGan } from './ae_vs_gan.js';
import { setupLangevin } from './gan_langevin.js';
import { setupRejection } from './gan_rejection.js';

const CLASSIFIER_URL = 'models/classifier.safetensors';
const PRETRAINED_G = 'models/gan_dcgan_g.safetensors';
const PRETRAINED_D = 'models/gan_dcgan_d.safetensors';
/** The grid's fixed latent vectors come from this seed (the same z after every reset). */
const GRID_SEED = 4242;
/**
 * The "Quick start" settings: what gave recognisable digits of most classes fastest on the
 * page's CPU path (measured with tools/gan_quickstart.mjs; figures in the README). A high
 * learning rate moves G fast but makes its samples wobble from step to step; the moving
 * average of G's weights (EMA 0.998, ~500 steps) keeps the speed and removes the wobble.
 */
export const QUICK_START = { arch: 'dense', loss: 'ce', latent: 64, dist: 'normal', width: 32, lr: '2e-3', beta1: 0.5, batch: 64, ema: 0.998, every: 20, real: 0.9, lrd: '', mbstd: false, smooth: 0, fgsm: 1 };
/** Training calls aim at 300 ms (loop.js's MAX_CALL_MS): Pause answers within about this long (trainCall). */
const TRAIN_CHUNK = { targetMs: 300, max: 50 };

// ---------------------------------------------------------------- drawing

/** D and G losses per step (moving averages over n/50 steps; a non-finite loss breaks the line). */
function drawLosses(canvas, d, g) {
  const w = Math.max(1, Math.round(d.length / 50));
  const points = (vals) => trailingAverage(vals.map((v, i) => [i + 1, v]), w);
  const finite = [...d, ...g].filter(Number.isFinite);
  lineChart(canvas, {
    x: { label: 'step' },
    y: { min: Math.min(0, ...finite), max: Math.max(...finite) * 1.05 || 1, label: 'loss', fmt: (v) => (Math.abs(v) < 1000 ? v.toFixed(2) : v.toExponential(0)) },
    series: [
      { points: points(d), color: '#4e79a7', width: 1.5 },
      { points: points(g), color: '#f28e2b', width: 1.5 },
    ],
    legend: [
      { text: 'D loss', color: '#4e79a7' },
      { text: 'G loss', color: '#f28e2b' },
    ],
    empty: 'losses appear here while training',
  });
}

// ---------------------------------------------------------------- the tab

export function setupGanTab(call) {
  const form = $('gan-form');
  const tab = {
    call,
    form,
    grid: $('gan-grid'),
    panel: $('panel-gan'),
    num: (name) => Number(form.elements[name].value),
    showError: (e) => setError($('gan-error'), e),
    state: {
      loop: new ChunkLoop(TRAIN_CHUNK),
      trainCall: trainCall(call), // the loop's call: whole steps or half steps (kept between runs)
      busy: false,
      model: null, // {arch, latent, width, ...} of the GAN in the worker
      step: 0,
      dLoss: [],
      gLoss: [],
      dAcc: [],
      gridZ: null,
      gridImages: null,
      picks: { a: null, b: null, centre: null },
      groups: { p: [], q: [], r: [] },
      lastDraw: 0,
      /** the shipped classifier is in the worker (quality numbers need it) */
      hasClassifier: false,
      lastScore: 0,
      scoreEnd: 0,
      scoreMs: 0,
      /** [step, classifier score, Frechet distance] of each scoring of this model */
      quality: [],
      game: null,
    },
  };
  tab.setButtons = () => setButtons(tab);
  tab.guarded = guardedRunner(tab);
  tab.redrawGrid = () => redrawGrid(tab);
  tab.ensureAssets = () => ensureAssets(tab);
  tab.loadPretrained = () => loadPretrained(tab);
  setupTraining(tab);
  setupModelFiles(tab);
  setupLatentTools(tab);
  setupQuality(tab);
  setupGame(tab);
  setupAeVsGan(tab);
  setupRejection(tab);
  setupLangevin(tab);
  call('backend_info').then((info) => {
    tab.kind = info.kind; // 'cpu': the quality numbers go over helper workers
    showBackend(info);
  }, () => {});
  drawLosses($('gan-losses'), [], []);
  clearLatentTools();
  tab.setButtons();
}

/** Run a user action: one at a time, errors shown in the tab. */
function guardedRunner(tab) {
  const { state } = tab;
  return (fn) => async (ev) => {
    ev?.preventDefault?.();
    if (state.busy) return;
    state.busy = true;
    tab.setButtons();
    try {
      await fn(ev);
    } catch (e) {
      tab.showError(e);
    } finally {
      state.busy = false;
      tab.setButtons();
    }
  };
}

let assets = null;
/** Load the digit set and the classifier into the worker once. */
function ensureAssets({ call, state }) {
  assets ??= (async () => {
    await call('gan_load_digits', await pageDigitBytes());
    const clf = await fetchBytes(CLASSIFIER_URL, 'the MNIST classifier').catch(() => null);
    if (clf) {
      await call('gan_load_classifier', clf);
      state.classifierBytes = clf; // for helper workers (quality_helpers.js)
      state.hasClassifier = true;
    }
  })().catch((e) => {
    assets = null;
    throw e;
  });
  return assets;
}

function setButtons({ state, form }) {
  const has = !!state.model;
  const running = state.loop.running;
  const idle = !running && !state.busy;
  $('gan-pause').disabled = !running;
  for (const id of ['gan-train', 'gan-quick', 'gan-reset', 'gan-pretrained', 'gan-load', 'aevg-run', 'drs-run', 'ddls-run']) $(id).disabled = !idle;
  for (const id of ['gan-save', 'gan-quality', 'gan-game-new', 'gan-neigh-again']) $(id).disabled = !idle || !has;
  form.dataset.running = String(running);
  form.dataset.busy = String(!idle);
}

function describeModel(m, how) {
  const arch = m.arch === 'dcgan' ? `DCGAN (width ${m.width})` : 'dense GAN';
  $('gan-model').textContent = `${how}: ${arch}, latent d = ${m.latent}; G ${m.g_parameters.toLocaleString()} parameters, D ${m.d_parameters.toLocaleString()}.`;
  $('gan-model').dataset.describes = $('gan-model').textContent;
}

/** Which G the samples come from (the form's EMA decay, as the worker was told). */
function describeSampler(ema) {
  const el = $('gan-model');
  const base = el.dataset.describes ?? el.textContent;
  el.textContent = ema > 0 ? `${base} Samples, scores and the latent tools use the moving average of G's weights (decay ${ema}).` : base;
  el.dataset.ema = String(ema);
}

function progress(text) {
  $('gan-progress').textContent = text;
}

/** A new model is in the worker: fixed z for the grid, fresh curves, draw. */
async function adopt(tab, m, how) {
  const { state } = tab;
  // the latent distribution the worker was given with the model (the form's, at this moment)
  Object.assign(state, { model: { ...m, dist: tab.form.dist.value }, step: 0, dLoss: [], gLoss: [], dAcc: [], lastScore: 0, quality: [] });
  state.picks = { a: null, b: null, centre: null };
  state.groups = { p: [], q: [], r: [] };
  state.loop.resetChunk();
  showQualityHistory(tab);
  state.gridZ = await tab.call('gan_sample_z', GRID_COLS * GRID_COLS, GRID_SEED);
  describeModel(m, how);
  drawLosses($('gan-losses'), state.dLoss, state.gLoss);
  progress('step 0');
  $('gan-progress').dataset.step = '0';
  await redrawGrid(tab);
  clearLatentTools();
}

async function redrawGrid({ call, state, grid }) {
  state.gridImages = await call('gan_generate', state.gridZ);
  drawDigits(grid, state.gridImages, GRID_COLS * GRID_COLS, GRID_COLS);
  for (const [k, label] of [['a', 'A'], ['b', 'B'], ['centre', 'N']]) {
    if (state.picks[k] != null) frameCell(grid, state.picks[k], GRID_COLS, PICK_COLOURS[k], label);
  }
  for (const g of GROUPS) for (const k of state.groups[g]) frameCell(grid, k, GRID_COLS, PICK_COLOURS[g], g.toUpperCase());
  grid.dataset.step = String(state.step);
  state.lastDraw = state.step;
}

// ---------------------------------------------------------------- training

async function reset(tab) {
  const { form, num } = tab;
  tab.showError(null);
  await ensureAssets(tab);
  const m = await tab.call('gan_reset', form.arch.value, form.loss.value, num('latent'), form.dist.value, num('width'), num('lr'), num('beta1'), num('batch'), num('seed'), form.mbstd.checked);
  await adopt(tab, m, 'New');
  await applyOptions(tab);
}

/** D's options (learning rate, label smoothing, smoothness term, FGSM real digits) and G's moving average into the worker. */
async function applyOptions({ call, form, num }) {
  const lrd = form.lrd.value.trim() === '' ? num('lr') : num('lrd');
  await call('gan_set_options', lrd, num('real'), num('smooth'), num('smootheps'), num('fgsm'), num('fgsmeps'));
  await call('gan_set_ema', num('ema'));
  describeSampler(num('ema'));
}

/** Put the quick-start settings in the form. */
function applyPreset({ form }, preset) {
  for (const [k, v] of Object.entries(preset)) {
    const el = form.elements[k];
    if (el.type === 'checkbox') el.checked = !!v;
    else el.value = String(v);
  }
}

/**
 * The training call of the loop: `n` whole steps, or, where one step takes longer than a loop
 * call may (a software WebGPU adapter, or a big DCGAN on the CPU), half a step per call (D's
 * half, then G's: `gan_train_half`), so that Pause waits for half a step at most; back to whole
 * steps once a step's two halves together fit in a call.
 */
function trainCall(call) {
  let halves = false;
  let dMs = 0; // the time of the last D half
  return async (n) => {
    const t = performance.now();
    const r = halves ? await call('gan_train_half') : await call('gan_train_steps', n);
    const ms = performance.now() - t;
    if (!halves && n === 1 && ms > MAX_CALL_MS) halves = true;
    else if (halves && r.d_loss.length === 0) dMs = ms;
    else if (halves && dMs + ms < MAX_CALL_MS / 2) halves = false;
    return r;
  };
}

async function trainLoop(tab) {
  const { state, panel } = tab;
  const t0 = performance.now();
  const step0 = state.step;
  state.loop.arm();
  tab.setButtons();
  try {
    await state.loop.run({
      step: state.trainCall,
      after: async (r, _n, live) => {
        if (!r.d_loss.length) return true; // D's half of a step: nothing to show yet
        state.step = r.step;
        state.dLoss.push(...r.d_loss);
        state.gLoss.push(...r.g_loss);
        state.dAcc.push(...r.d_accuracy);
        const k = state.dLoss.length - 1;
        const rate = (state.step - step0) / ((performance.now() - t0) / 1000);
        progress(`step ${state.step} · ${fmt(rate, 2)} steps/s · D loss ${fmt(state.dLoss[k])} · G loss ${fmt(state.gLoss[k])} · D accuracy ${fmt(100 * state.dAcc[k], 1)}%`);
        $('gan-progress').dataset.rate = String(rate);
        $('gan-progress').dataset.step = String(state.step);
        drawLosses($('gan-losses'), state.dLoss, state.gLoss);
        if (r.diverged) {
          tab.showError(r.diverged);
          panel.dataset.diverged = 'true';
          return false;
        }
        if (state.step - state.lastDraw >= Math.max(1, tab.num('every'))) await redrawGrid(tab);
        await maybeScore(tab, live);
      },
    });
    if (!panel.dataset.diverged) await redrawGrid(tab);
  } finally {
    tab.setButtons();
  }
}

/**
 * Score while training when asked to, at most ~20% of the time (it is slow on a software
 * adapter); a Pause (`live()` false) stops the scoring between its calls.
 */
async function maybeScore(tab, live) {
  const { state } = tab;
  const scoreEvery = Math.max(10, Number($('gan-quality-every').value) || 200);
  const rested = performance.now() - state.scoreEnd >= 4 * state.scoreMs;
  if (state.hasClassifier && $('gan-quality-auto').checked && state.step - state.lastScore >= scoreEvery && rested) await scoreNow(tab, live);
}

function setupTraining(tab) {
  const { state, panel, form } = tab;
  $('gan-train').addEventListener(
    'click',
    tab.guarded(async () => {
      if (!state.model || panel.dataset.diverged) {
        delete panel.dataset.diverged;
        await reset(tab);
      }
      tab.showError(null);
      await applyOptions(tab);
      await trainLoop(tab);
    }),
  );
  $('gan-quick').addEventListener(
    'click',
    tab.guarded(async () => {
      applyPreset(tab, QUICK_START);
      delete panel.dataset.diverged;
      await reset(tab);
      await trainLoop(tab);
    }),
  );
  $('gan-pause').addEventListener('click', () => state.loop.pause());
  $('gan-reset').addEventListener(
    'click',
    tab.guarded(async () => {
      delete panel.dataset.diverged;
      await reset(tab);
    }),
  );
  form.addEventListener('submit', (ev) => ev.preventDefault());
}

// ---------------------------------------------------------------- model files

async function loadPretrained(tab) {
  const { form, num } = tab;
  tab.showError(null);
  await ensureAssets(tab);
  const [g, d] = await Promise.all([fetchBytes(PRETRAINED_G, 'the pretrained DCGAN generator'), fetchBytes(PRETRAINED_D, 'the pretrained DCGAN discriminator')]);
  form.loss.value = 'ce';
  form.dist.value = 'normal';
  const m = await tab.call('gan_load', g, d, 'ce', 'normal', num('lr'), num('beta1'), num('batch'), num('seed'));
  await loaded(tab, m, 'Pretrained');
}

/** A loaded model's shape in the form, then adopted. */
async function loaded(tab, m, how) {
  const { form } = tab;
  form.arch.value = m.arch;
  form.latent.value = String(m.latent);
  form.width.value = String(m.width);
  form.mbstd.checked = !!m.mbstd;
  delete tab.panel.dataset.diverged;
  await adopt(tab, m, how);
  await applyOptions(tab);
}

function setupModelFiles(tab) {
  const { state, form, num } = tab;
  $('gan-pretrained').addEventListener('click', tab.guarded(() => loadPretrained(tab)));
  $('gan-save').addEventListener(
    'click',
    tab.guarded(async () => {
      const { g, d, g_ema: ema } = await tab.call('gan_save');
      const stem = `gan_${state.model.arch}_step${state.step}`;
      download(g, `${stem}_g.safetensors`);
      download(d, `${stem}_d.safetensors`);
      if (ema) download(ema, `${stem}_g_ema.safetensors`); // what the grid and the scores showed
    }),
  );
  $('gan-load').addEventListener(
    'click',
    tab.guarded(async () => {
      const gf = $('gan-file-g').files[0];
      const df = $('gan-file-d').files[0];
      if (!gf) throw new Error('choose a generator file (…_g.safetensors) first');
      await ensureAssets(tab);
      const g = new Uint8Array(await gf.arrayBuffer());
      const d = df ? new Uint8Array(await df.arrayBuffer()) : new Uint8Array(0);
      const settings = [form.loss.value, form.dist.value, num('lr'), num('beta1'), num('batch'), num('seed')];
      const m = await tab.call('gan_load', g, d, ...settings);
      await loaded(tab, m, `Loaded ${gf.name}${df ? ` and ${df.name}` : ' (D starts fresh)'}`);
    }),
  );
}

// ---------------------------------------------------------------- backend note

function showBackend(info) {
  const el = $('gan-backend');
  if (info.kind === 'cpu') {
    el.textContent = `Running on the CPU backend (wasm): WebGPU is not used (${info.gpu_error || 'no adapter'}). Training runs in plain wasm on the CPU; the dense GAN is the quicker choice.`;
    el.dataset.kind = 'cpu';
  } else if (info.fallback) {
    el.textContent = `WebGPU on ${info.adapter}, a software adapter that emulates the GPU on the CPU: training is slow here, and the dense GAN is much faster than the DCGAN (the pretrained DCGAN's latent tools work at once).`;
    el.dataset.kind = 'gpu-fallback';
  } else {
    el.textContent = `Training on the GPU through WebGPU (${info.adapter}).`;
    el.dataset.kind = 'gpu';
  }
  el.hidden = false;
}
