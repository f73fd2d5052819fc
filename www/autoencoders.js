// The Autoencoders tab: train a plain, sparse, contractive or denoising autoencoder on MNIST
// digits in the page, watch its cost (training and held-out), compare its reconstructions with
// PCA's, and, with k = 2, see the codes of held-out digits and the decoded manifold.
// Everything heavy runs in the worker through `call(cmd, ...args)` (src/web/autoencoders.rs);
// this file drives short calls in a loop that can pause between them; autoencoders_views.js
// draws. The panels share one context `tab` (the call, the form, the state, the lock).
import { pageDigitBytes } from './digits.js';
import { ChunkLoop } from './loop.js';
import { $, download, fetchBytes, onFirstShown, setError } from './util.js';
import {
  clearProbe,
  clearViews,
  drawLoss,
  fitPca,
  fmt,
  measureJacobian,
  redrawPlanes,
  refresh,
  setupPlane,
  updateGrid,
} from './autoencoders_views.js';

const SHIPPED_URL = 'models/ae_plain_k2.safetensors';
/** Training calls aim at 300 ms (Pause answers within about that), changing slowly: timings are noisy. */
const TRAIN_CHUNK = { targetMs: 300, chunk: 2, max: 100, smoothing: 0.5 };
/** Evaluations (held-out cost, grid, scatter, manifold) take at most ~1/7 of the time. */
const REFRESH_MIN_MS = 1500;
const REFRESH_SHARE = 6;
/** Default lambda of each regularised kind (as `nnlab train ae`). */
const DEFAULT_LAMBDA = { sparse: 0.001, contractive: 0.1 };

export function setupAutoencodersTab(call) {
  const tab = {
    call,
    panel: $('panel-autoencoders'),
    form: {
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
    },
    btn: {
      train: $('ae-train'),
      pause: $('ae-pause'),
      reset: $('ae-reset'),
      shipped: $('ae-shipped'),
      save: $('ae-save'),
      other: $('ae-other'),
      pca: $('ae-pca'),
      jac: $('ae-jac-run'),
    },
    canvas: { loss: $('ae-loss'), grid: $('ae-grid'), scatter: $('ae-scatter'), manifold: $('ae-manifold'), probe: $('ae-probe') },
    state: {
      started: false,
      ready: false,
      busy: 0, // exclusive operations running or queued
      loop: new ChunkLoop(TRAIN_CHUNK),
      run: null, // the training run in progress (a promise)
      model: null, // {arch, k, kind, parameters, step, history}
      step: 0,
      epoch: 0,
      train: [], // [step, cost] per step
      held: [], // [step, held-out cost] per evaluation
      lastEval: null,
      scatter: null, // {codes, labels} of the held-out digits in the scatter
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
    },
    showError: (e) => setError($('ae-error'), e),
  };
  tab.exclusive = exclusiveRunner(tab);
  tab.setButtons = () => setButtons(tab);
  tab.showStats = () => showStats(tab);
  setupForm(tab);
  setupButtons(tab);
  setupPlane(tab);
  showKindFields(tab);
  tab.setButtons();
  // load the digits and the shipped model the first time the tab is shown
  onFirstShown(tab.panel, () => start(tab));
}

/**
 * Work that changes the model (load, reset, PCA) runs one at a time, never beside training.
 * While one runs or waits, the tab is "busy" (buttons that would queue more are off).
 */
function exclusiveRunner(tab) {
  let lock = Promise.resolve();
  return (fn) => {
    tab.state.busy++;
    tab.setButtons();
    const run = lock.then(fn).finally(() => {
      tab.state.busy--;
      tab.setButtons();
    });
    lock = run.catch(() => {});
    return run;
  };
}

// ---------------------------------------------------------------- form

function showKindFields({ form }) {
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

function trainingSettings({ form }) {
  const kind = form.kind.value;
  const lambda = kind === 'sparse' || kind === 'contractive' ? numberField(form.lambda, 'λ', 0, 1000) : 0;
  const maxLevel = form.noise.value === 'masking' ? 0.99 : 5;
  const level = kind === 'denoising' ? numberField(form.level, 'noise level', 0, maxLevel) : 0;
  const lr = numberField(form.lr, 'learning rate', 1e-6, 0.1);
  return [kind, lambda, form.noise.value, level, lr, Number(form.batch.value)];
}

async function applySettings(tab) {
  tab.state.model = await tab.call('ae_set_training', ...trainingSettings(tab));
}

function architecture({ form }) {
  const k = Number(form.k.value);
  if (!Number.isInteger(k) || k < 2 || k > 64) throw new Error(`code size k must be a whole number 2..64, got "${form.k.value}"`);
  const seed = Number(form.seed.value);
  if (!Number.isInteger(seed) || seed < 0 || seed > 4294967295) throw new Error(`seed must be a whole number 0..4294967295, got "${form.seed.value}"`);
  return { arch: form.arch.value, k, seed };
}

function stopAt({ form }) {
  const v = Number(form.stop.value);
  return form.stop.value !== '' && Number.isFinite(v) && v > 0 ? Math.floor(v) : null;
}

function setupForm(tab) {
  const { form, state } = tab;
  // the training settings apply from the next step (the worker runs calls in order, so this
  // lands between two training chunks)
  function settingsChanged() {
    if (!state.model) return;
    applySettings(tab).then(
      () => {
        tab.showError(null);
        showModel(tab);
      },
      (e) => tab.showError(e),
    );
  }
  form.kind.addEventListener('change', () => {
    const kind = form.kind.value;
    if (kind in state.lambdas) form.lambda.value = String(state.lambdas[kind]);
    showKindFields(tab);
    settingsChanged();
  });
  form.lambda.addEventListener('change', () => {
    if (form.kind.value in state.lambdas) state.lambdas[form.kind.value] = Number(form.lambda.value);
  });
  for (const el of [form.lambda, form.noise, form.level, form.lr, form.batch]) el.addEventListener('change', settingsChanged);
  for (const el of [form.arch, form.k]) el.addEventListener('change', () => state.ready && resetModel(tab));
  $('ae-form').addEventListener('submit', (ev) => ev.preventDefault());
}

// ---------------------------------------------------------------- status

function setButtons({ btn, state }) {
  const ok = Boolean(state.ready && state.model);
  const running = state.loop.running;
  const idle = ok && !state.busy;
  btn.train.disabled = !idle;
  btn.pause.disabled = !running;
  for (const b of [btn.save, btn.other, btn.jac, btn.pca]) b.disabled = !ok;
  // these replace the model: they pause training first, but do not queue behind other work
  for (const b of [btn.reset, btn.shipped]) b.disabled = !ok || (state.busy > 0 && !running);
  $('ae-stats').dataset.state = running ? 'running' : state.busy ? 'busy' : ok ? 'paused' : 'idle';
}

function showModel({ state, form }) {
  const m = state.model;
  if (!m) return;
  $('ae-model').textContent = `Model: ${m.arch} autoencoder, k = ${m.k}, ${m.parameters.toLocaleString()} parameters; ` + `started from ${m.history}; training as ${form.kind.value}.`;
}

function showStats({ state, form }) {
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

// ---------------------------------------------------------------- model changes

/** After the model changed: views from scratch, PCA for a new k. */
async function modelChanged(tab, info) {
  const { state, form } = tab;
  state.model = info;
  state.step = info.step;
  state.epoch = 0;
  clearProbe(tab);
  form.arch.value = info.arch;
  form.k.value = String(info.k);
  await applySettings(tab);
  clearViews(tab);
  showModel(tab);
  tab.setButtons();
  await refresh(tab);
  if (!state.pca || state.pca.k !== info.k) {
    await fitPca(tab);
    await updateGrid(tab);
  }
}

/** Stop training after the call in flight; resolves when the run has ended. */
async function pause({ state }) {
  state.loop.pause();
  await state.run;
}

/** A new random model with the form's architecture, k and seed. */
function resetModel(tab) {
  let arch;
  try {
    arch = architecture(tab);
  } catch (e) {
    tab.showError(e);
    return Promise.resolve();
  }
  return pause(tab).then(() =>
    tab
      .exclusive(async () => {
        tab.showError(null);
        await modelChanged(tab, await tab.call('ae_reset', arch.arch, arch.k, arch.seed));
      })
      .catch((e) => tab.showError(e)),
  );
}

async function loadWeights(tab, bytes, name) {
  await pause(tab);
  return tab.exclusive(async () => {
    tab.showError(null);
    const info = await tab.call('ae_load_weights', bytes, name);
    const meta = info.meta || {};
    if (meta.kind || /plain|sparse|contractive|denoising/i.test(meta.model || '')) tab.form.kind.value = info.kind;
    showKindFields(tab);
    await modelChanged(tab, info);
    const note = meta.heldout_mse ? ` Its card: held-out MSE ${meta.heldout_mse} (MNIST test digits), ${meta.command || ''}.` : '';
    $('ae-model').textContent += note;
  });
}

const loadShipped = async (tab) => loadWeights(tab, await fetchBytes(SHIPPED_URL, 'the shipped k=2 model'), 'shipped');

// ---------------------------------------------------------------- training

async function trainLoop(tab, fresh) {
  const { state, canvas } = tab;
  tab.showError(null);
  try {
    if (fresh) await freshModel(tab);
  } catch (e) {
    tab.showError(e);
    state.loop.pause();
    return;
  }
  const runStart = { t: performance.now(), step: state.step, held: state.lastEval, from: state.model.history };
  let computeMs = 0;
  let computeSteps = 0;
  let lastRefresh = performance.now();
  try {
    await state.loop.run({
      prepare: async () => {
        await applySettings(tab);
        showModel(tab);
      },
      plan: (n) => {
        const stop = stopAt(tab);
        return stop == null ? n : Math.max(0, Math.min(n, stop - state.step));
      },
      step: async (n) => {
        const t0 = performance.now();
        const r = await tab.call('ae_train_steps', n);
        computeMs += performance.now() - t0;
        computeSteps += n;
        return r;
      },
      after: async (r) => {
        const first = r.step - r.losses.length;
        r.losses.forEach((v, i) => state.train.push([first + i + 1, v]));
        state.step = r.step;
        state.epoch = r.epoch;
        state.rate = { stepsPerSecond: (1000 * computeSteps) / computeMs, msPerStep: computeMs / computeSteps };
        drawLoss(canvas.loss, state.train, state.held);
        tab.showStats();
        if (performance.now() - lastRefresh > Math.max(REFRESH_MIN_MS, REFRESH_SHARE * state.evalMs)) {
          await refresh(tab);
          lastRefresh = performance.now();
        }
      },
    });
  } catch (e) {
    tab.showError(e);
  } finally {
    const wall = (performance.now() - runStart.t) / 1000;
    try {
      if (state.held.at(-1)?.[0] !== state.step) await refresh(tab);
      if (tab.form.kind.value === 'contractive') await measureJacobian(tab);
    } catch (e) {
      tab.showError(e);
    }
    $('ae-stats').dataset.runSeconds = String(wall);
    $('ae-stats').dataset.runSteps = String(state.step - runStart.step);
    showRun(tab, runStart);
    tab.setButtons();
  }
}

/** The held-out MSE before and after a training run, and what the run started from. */
function showRun({ state }, start) {
  const el = $('ae-run');
  const before = start.held;
  const after = state.lastEval;
  const steps = state.step - start.step;
  if (!before || !after || steps <= 0) return;
  const change = after.mse < before.mse ? 'better' : after.mse > before.mse ? 'worse' : 'unchanged';
  el.textContent = `Last run: ${steps} step${steps === 1 ? '' : 's'} from ${start.from}; held-out MSE ${fmt(before.mse)} → ${fmt(after.mse)} (${after.n} held-out digits; ${change}).`;
  el.dataset.heldBefore = String(before.mse);
  el.dataset.heldAfter = String(after.mse);
  el.hidden = false;
}

/** Replace the model by a fresh one (the form's architecture, k and seed) before training. */
async function freshModel(tab) {
  const arch = architecture(tab);
  await modelChanged(tab, await tab.call('ae_reset', arch.arch, arch.k, arch.seed));
  $('ae-from').value = 'continue'; // Train after a pause resumes this run
}

function startTraining(tab) {
  const { state } = tab;
  if (state.loop.running || state.busy) return;
  const fresh = $('ae-from').value === 'fresh';
  state.loop.arm(); // before the run starts, so that Pause can stop it at once
  state.run = tab.exclusive(() => trainLoop(tab, fresh));
}

// ---------------------------------------------------------------- buttons and start

function setupButtons(tab) {
  const { btn, state } = tab;
  const guard = (fn) => async (...args) => {
    try {
      await fn(...args);
    } catch (e) {
      tab.showError(e);
    }
  };
  btn.train.addEventListener('click', () => startTraining(tab));
  btn.pause.addEventListener('click', () => pause(tab));
  btn.reset.addEventListener('click', () => resetModel(tab));
  btn.shipped.addEventListener('click', guard(() => loadShipped(tab)));
  $('ae-file').addEventListener(
    'change',
    guard(async (ev) => {
      const file = ev.target.files[0];
      ev.target.value = '';
      if (file) await loadWeights(tab, new Uint8Array(await file.arrayBuffer()), file.name);
    }),
  );
  btn.save.addEventListener(
    'click',
    guard(async () => {
      const bytes = await tab.call('ae_weights');
      const m = state.model;
      download(bytes, `ae_${tab.form.kind.value}_${m.arch}_k${m.k}_step${state.step}.safetensors`);
    }),
  );
  btn.other.addEventListener('click', () => {
    state.gridOffset += 1;
    updateGrid(tab).catch((e) => tab.showError(e));
  });
  // PCA does not touch the model: it runs between training chunks, no need to pause
  btn.pca.addEventListener('click', async () => {
    btn.pca.disabled = true;
    try {
      await fitPca(tab);
      await updateGrid(tab);
    } catch (e) {
      tab.showError(e);
    } finally {
      tab.setButtons();
    }
  });
  btn.jac.addEventListener('click', () => measureJacobian(tab).catch((e) => tab.showError(e)));
}

async function showBackend({ call, panel }) {
  const info = await call('backend_info');
  const el = $('ae-backend');
  if (info.kind === 'cpu') {
    const speed = info.passed_over_fallback ? 'Training works, faster here than on that adapter.' : 'Training works, more slowly than on a GPU.';
    el.textContent = `Running on the CPU backend (wasm), not on a GPU: ${info.gpu_error || 'WebGPU is not available'}. ${speed}`;
  } else if (info.fallback) {
    el.textContent = `Running on WebGPU with ${info.adapter}, a software adapter that emulates a GPU on the CPU: training works, slowly.`;
  } else {
    el.textContent = '';
  }
  el.hidden = !el.textContent;
  panel.dataset.backend = info.kind;
}

async function start(tab) {
  const { state, canvas } = tab;
  if (state.started) return;
  state.started = true;
  drawLoss(canvas.loss, [], []);
  redrawPlanes(tab);
  try {
    await showBackend(tab);
    await tab.call('ae_load_digits', await pageDigitBytes());
    state.ready = true;
    try {
      await loadShipped(tab);
    } catch (e) {
      // no shipped model on this server: start from an untrained one
      tab.showError(`${e.message}. Starting from an untrained model; press Train.`);
      const arch = architecture(tab);
      const info = await tab.exclusive(() => tab.call('ae_reset', arch.arch, arch.k, arch.seed));
      await tab.exclusive(() => modelChanged(tab, info));
    }
    tab.panel.dataset.ready = 'true';
  } catch (e) {
    tab.showError(e);
  }
  tab.setButtons();
}
