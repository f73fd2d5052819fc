// The GAN tab: train a dense GAN or a DCGAN on MNIST digits in the page, watch D's and G's
// losses and an 8x8 grid of samples from a fixed set of z; or load the shipped DCGAN. Then the
// latent tools (interpolation, local smoothness), quality numbers from the shipped classifier,
// and a "Real or Fake?" game against D.
// Everything heavy runs in the worker through `call(cmd, ...args)` (src/web/gan.rs); this file
// drives short calls in loops that can pause between them, and draws on canvases.
import { PIXELS, SIDE, digitsImage, pageDigitBytes } from './digits.js';
import { download, fetchBytes } from './util.js';

const $ = (id) => document.getElementById(id);

const CLASSIFIER_URL = 'models/classifier.safetensors';
const PRETRAINED_G = 'models/gan_dcgan_g.safetensors';
const PRETRAINED_D = 'models/gan_dcgan_d.safetensors';
/** The grid's fixed latent vectors come from this seed (the same z after every reset). */
const GRID_SEED = 4242;
const GRID_COLS = 8;
const GRID_SCALE = 2;
const GRID_GAP = 2;
/** Target duration of one training call: Pause answers within about this long. */
const TRAIN_CALL_MS = 400;
const MAX_STEPS_PER_CALL = 50;
const INTERP_STEPS = 10;
const NEIGHBOURS = 8;
const QUALITY_SAMPLES = 500;
const QUALITY_CHUNK = 100;
const GAME_DIGITS = 8;
/** Colours of the picks drawn over the grid. */
const PICK_COLOURS = { a: '#e15759', b: '#4e79a7', centre: '#59a14f', p: '#b07aa1', q: '#f28e2b', r: '#76b7b2' };
/** The vector-arithmetic groups: the result is P - Q + R. */
const GROUPS = ['p', 'q', 'r'];

const fmt = (v, d = 3) => (v == null || !Number.isFinite(v) ? String(v) : v.toFixed(d));

function setError(text) {
  const el = $('gan-error');
  el.textContent = text || '';
  el.hidden = !text;
}

// ---------------------------------------------------------------- drawing

/** Draw `count` digits (784 values in [0, 1] each) on `canvas` in `cols` columns. */
function drawDigits(canvas, values, count, cols, scale = GRID_SCALE, gap = GRID_GAP) {
  const img = digitsImage(values, count, cols, scale, gap);
  [canvas.width, canvas.height] = [img.width, img.height];
  canvas.getContext('2d').putImageData(img, 0, 0);
}

/** Frame cell `k` of a digit grid drawn by drawDigits. */
function frameCell(canvas, k, cols, colour, label) {
  const cell = SIDE * GRID_SCALE + GRID_GAP;
  const ctx = canvas.getContext('2d');
  const x = (k % cols) * cell;
  const y = Math.floor(k / cols) * cell;
  ctx.strokeStyle = colour;
  ctx.lineWidth = 3;
  ctx.strokeRect(x + 1.5, y + 1.5, SIDE * GRID_SCALE - 3, SIDE * GRID_SCALE - 3);
  if (label) {
    ctx.fillStyle = colour;
    ctx.font = 'bold 12px sans-serif';
    ctx.fillText(label, x + 4, y + 14);
  }
}

/** D and G losses per step (moving averages over `w` steps, raw values faint). */
function drawLosses(canvas, d, g) {
  const ctx = canvas.getContext('2d');
  const W = canvas.width;
  const H = canvas.height;
  const pad = { l: 40, r: 10, t: 10, b: 22 };
  ctx.clearRect(0, 0, W, H);
  ctx.fillStyle = '#fff';
  ctx.fillRect(0, 0, W, H);
  const n = d.length;
  const finite = [...d, ...g].filter(Number.isFinite);
  ctx.fillStyle = '#333';
  ctx.font = '11px sans-serif';
  if (!n || !finite.length) {
    ctx.fillText('losses appear here while training', pad.l, H / 2);
    return;
  }
  const lo = Math.min(0, ...finite);
  const hi = Math.max(...finite) * 1.05 || 1;
  const X = (i) => pad.l + (n > 1 ? (i / (n - 1)) * (W - pad.l - pad.r) : 0);
  const Y = (v) => H - pad.b - ((v - lo) / (hi - lo)) * (H - pad.t - pad.b);
  ctx.strokeStyle = '#999';
  ctx.beginPath();
  ctx.moveTo(pad.l, pad.t);
  ctx.lineTo(pad.l, H - pad.b);
  ctx.lineTo(W - pad.r, H - pad.b);
  ctx.stroke();
  const label = (v) => (Math.abs(v) < 1000 ? v.toFixed(2) : v.toExponential(0));
  ctx.fillText(label(hi), 2, pad.t + 8);
  ctx.fillText(label(lo), 2, H - pad.b);
  ctx.fillText(`step ${n}`, W - pad.r - 60, H - 6);
  const w = Math.max(1, Math.round(n / 50));
  const line = (vals, colour, width) => {
    ctx.strokeStyle = colour;
    ctx.lineWidth = width;
    ctx.beginPath();
    let on = false;
    let sum = 0;
    const win = [];
    for (let i = 0; i < n; i++) {
      const v = vals[i];
      if (!Number.isFinite(v)) {
        on = false;
        continue;
      }
      win.push(v);
      sum += v;
      if (win.length > w) sum -= win.shift();
      const y = Y(sum / win.length);
      if (on) ctx.lineTo(X(i), y);
      else ctx.moveTo(X(i), y);
      on = true;
    }
    ctx.stroke();
  };
  line(d, '#4e79a7', 1.5);
  line(g, '#f28e2b', 1.5);
  ctx.lineWidth = 1;
  ctx.fillStyle = '#4e79a7';
  ctx.fillText('D loss', pad.l + 8, pad.t + 10);
  ctx.fillStyle = '#f28e2b';
  ctx.fillText('G loss', pad.l + 60, pad.t + 10);
}

// ---------------------------------------------------------------- the tab

export function setupGanTab(call) {
  const form = $('gan-form');
  const grid = $('gan-grid');
  const lossCanvas = $('gan-losses');
  const state = {
    running: false,
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
    chunk: 1,
    lastDraw: 0,
    /** the shipped classifier is in the worker (quality numbers need it) */
    hasClassifier: false,
    lastScore: 0,
    scoreEnd: 0,
    scoreMs: 0,
    /** [step, classifier score, Frechet distance] of each scoring of this model */
    quality: [],
    game: null,
  };
  let assets = null;

  /** Load the digit set and the classifier into the worker once. */
  function ensureAssets() {
    assets ??= (async () => {
      const digits = await pageDigitBytes();
      await call('gan_load_digits', digits);
      const clf = await fetchBytes(CLASSIFIER_URL, 'the MNIST classifier').catch(() => null);
      if (clf) {
        await call('gan_load_classifier', clf);
        state.hasClassifier = true;
      }
    })().catch((e) => {
      assets = null;
      throw e;
    });
    return assets;
  }

  const num = (name) => Number(form.elements[name].value);
  const settings = () => [form.loss.value, form.dist.value, num('lr'), num('beta1'), num('batch'), num('seed')];

  function setButtons() {
    const has = !!state.model;
    const idle = !state.running && !state.busy;
    $('gan-pause').disabled = !state.running;
    for (const id of ['gan-train', 'gan-reset', 'gan-pretrained', 'gan-load']) $(id).disabled = !idle;
    for (const id of ['gan-save', 'gan-quality', 'gan-game-new', 'gan-neigh-again']) $(id).disabled = !idle || !has;
    form.dataset.running = String(state.running);
    form.dataset.busy = String(!idle);
  }

  function describeModel(m, how) {
    const arch = m.arch === 'dcgan' ? `DCGAN (width ${m.width})` : 'dense GAN';
    $('gan-model').textContent = `${how}: ${arch}, latent d = ${m.latent}; G ${m.g_parameters.toLocaleString()} parameters, D ${m.d_parameters.toLocaleString()}.`;
  }

  function progress(text) {
    $('gan-progress').textContent = text;
  }

  /** A new model is in the worker: fixed z for the grid, fresh curves, draw. */
  async function adopt(m, how) {
    state.model = m;
    state.step = 0;
    state.dLoss = [];
    state.gLoss = [];
    state.dAcc = [];
    state.picks = { a: null, b: null, centre: null };
    state.groups = { p: [], q: [], r: [] };
    state.lastScore = 0;
    state.quality = [];
    showQualityHistory();
    state.gridZ = await call('gan_sample_z', GRID_COLS * GRID_COLS, GRID_SEED);
    describeModel(m, how);
    drawLosses(lossCanvas, state.dLoss, state.gLoss);
    progress('step 0');
    $('gan-progress').dataset.step = '0';
    await redrawGrid();
    clearLatentTools();
  }

  async function redrawGrid() {
    state.gridImages = await call('gan_generate', state.gridZ);
    drawDigits(grid, state.gridImages, GRID_COLS * GRID_COLS, GRID_COLS);
    for (const [k, label] of [['a', 'A'], ['b', 'B'], ['centre', 'N']]) {
      if (state.picks[k] != null) frameCell(grid, state.picks[k], GRID_COLS, PICK_COLOURS[k], label);
    }
    for (const g of GROUPS) for (const k of state.groups[g]) frameCell(grid, k, GRID_COLS, PICK_COLOURS[g], g.toUpperCase());
    grid.dataset.step = String(state.step);
    state.lastDraw = state.step;
  }

  async function reset() {
    setError('');
    await ensureAssets();
    const m = await call('gan_reset', form.arch.value, form.loss.value, num('latent'), form.dist.value, num('width'), num('lr'), num('beta1'), num('batch'), num('seed'));
    await adopt(m, 'New');
  }

  async function trainLoop() {
    state.running = true;
    setButtons();
    const t0 = performance.now();
    const step0 = state.step;
    try {
      while (state.running) {
        const t = performance.now();
        const r = await call('gan_train_steps', state.chunk);
        const dt = performance.now() - t;
        state.chunk = Math.max(1, Math.min(MAX_STEPS_PER_CALL, Math.round((state.chunk * TRAIN_CALL_MS) / Math.max(dt, 1))));
        state.step = r.step;
        state.dLoss.push(...r.d_loss);
        state.gLoss.push(...r.g_loss);
        state.dAcc.push(...r.d_accuracy);
        const k = state.dLoss.length - 1;
        const rate = (state.step - step0) / ((performance.now() - t0) / 1000);
        progress(`step ${state.step} · ${fmt(rate, 2)} steps/s · D loss ${fmt(state.dLoss[k])} · G loss ${fmt(state.gLoss[k])} · D accuracy ${fmt(100 * state.dAcc[k], 1)}%`);
        $('gan-progress').dataset.rate = String(rate);
        $('gan-progress').dataset.step = String(state.step);
        drawLosses(lossCanvas, state.dLoss, state.gLoss);
        if (r.diverged) {
          state.running = false;
          setError(r.diverged);
          $('panel-gan').dataset.diverged = 'true';
          break;
        }
        if (state.step - state.lastDraw >= Math.max(1, num('every'))) await redrawGrid();
        const scoreEvery = Math.max(10, Number($('gan-quality-every').value) || 200);
        // scoring is slow on a software adapter: at most ~20% of the time goes to it
        const rested = performance.now() - state.scoreEnd >= 4 * state.scoreMs;
        if (state.hasClassifier && $('gan-quality-auto').checked && state.step - state.lastScore >= scoreEvery && rested) await scoreNow();
      }
      if (!$('panel-gan').dataset.diverged) await redrawGrid();
    } finally {
      state.running = false;
      setButtons();
    }
  }

  /** Run a user action: one at a time, errors shown in the tab. */
  const guarded = (fn) => async (ev) => {
    ev?.preventDefault?.();
    if (state.busy) return;
    state.busy = true;
    setButtons();
    try {
      await fn(ev);
    } catch (e) {
      setError(e.message);
    } finally {
      state.busy = false;
      setButtons();
    }
  };

  $('gan-train').addEventListener(
    'click',
    guarded(async () => {
      if (!state.model || $('panel-gan').dataset.diverged) {
        delete $('panel-gan').dataset.diverged;
        await reset();
      }
      setError('');
      await trainLoop();
    }),
  );
  $('gan-pause').addEventListener('click', () => {
    state.running = false;
  });
  $('gan-reset').addEventListener(
    'click',
    guarded(async () => {
      delete $('panel-gan').dataset.diverged;
      await reset();
    }),
  );
  form.addEventListener('submit', (ev) => ev.preventDefault());

  async function loadPretrained() {
    setError('');
    await ensureAssets();
    const [g, d] = await Promise.all([fetchBytes(PRETRAINED_G, 'the pretrained DCGAN generator'), fetchBytes(PRETRAINED_D, 'the pretrained DCGAN discriminator')]);
    form.loss.value = 'ce';
    form.dist.value = 'normal';
    const m = await call('gan_load', g, d, 'ce', 'normal', num('lr'), num('beta1'), num('batch'), num('seed'));
    form.arch.value = m.arch;
    form.latent.value = String(m.latent);
    form.width.value = String(m.width);
    delete $('panel-gan').dataset.diverged;
    await adopt(m, 'Pretrained');
  }
  $('gan-pretrained').addEventListener('click', guarded(loadPretrained));

  $('gan-save').addEventListener(
    'click',
    guarded(async () => {
      const { g, d } = await call('gan_save');
      const stem = `gan_${state.model.arch}_step${state.step}`;
      download(g, `${stem}_g.safetensors`);
      download(d, `${stem}_d.safetensors`);
    }),
  );
  $('gan-load').addEventListener(
    'click',
    guarded(async () => {
      const gf = $('gan-file-g').files[0];
      const df = $('gan-file-d').files[0];
      if (!gf) throw new Error('choose a generator file (…_g.safetensors) first');
      await ensureAssets();
      const g = new Uint8Array(await gf.arrayBuffer());
      const d = df ? new Uint8Array(await df.arrayBuffer()) : new Uint8Array(0);
      const m = await call('gan_load', g, d, ...settings());
      form.arch.value = m.arch;
      form.latent.value = String(m.latent);
      form.width.value = String(m.width);
      delete $('panel-gan').dataset.diverged;
      await adopt(m, `Loaded ${gf.name}${df ? ` and ${df.name}` : ' (D starts fresh)'}`);
    }),
  );

  // ------------------------------------------------------------ latent tools

  const zOf = (k) => state.gridZ.slice(k * state.model.latent, (k + 1) * state.model.latent);

  function clearLatentTools() {
    $('gan-arith-note').textContent = 'Pick groups P, Q and R in the grid (a click toggles a sample).';
    for (const id of ['gan-interp', 'gan-neigh', 'gan-arith']) {
      const c = $(id);
      c.getContext('2d').clearRect(0, 0, c.width, c.height);
    }
    $('gan-interp-note').textContent = 'Pick A and B in the grid.';
    $('gan-neigh-note').textContent = 'Pick a sample N in the grid.';
  }

  async function drawInterpolation() {
    const { a, b } = state.picks;
    if (a == null || b == null) return;
    const spherical = form.interp.value === 'slerp';
    const z = await call('gan_interpolate', zOf(a), zOf(b), INTERP_STEPS, spherical);
    drawDigits($('gan-interp'), await call('gan_generate', z), INTERP_STEPS, INTERP_STEPS);
    $('gan-interp-note').textContent = `${spherical ? 'Spherical' : 'Linear'} path from sample A to sample B in ${INTERP_STEPS} steps.`;
  }

  async function drawNeighbours() {
    const c = state.picks.centre;
    if (c == null) return;
    const z = await call('gan_neighbours', zOf(c), NEIGHBOURS, Math.floor(Math.random() * 1e9));
    const imgs = await call('gan_generate', z);
    const all = new Float32Array((NEIGHBOURS + 1) * PIXELS);
    all.set(state.gridImages.subarray(c * PIXELS, (c + 1) * PIXELS));
    all.set(imgs, PIXELS);
    const canvas = $('gan-neigh');
    drawDigits(canvas, all, NEIGHBOURS + 1, NEIGHBOURS + 1);
    frameCell(canvas, 0, NEIGHBOURS + 1, PICK_COLOURS.centre, 'N');
    $('gan-neigh-note').textContent = `Sample N (framed) and ${NEIGHBOURS} neighbours z + U(-0.25, 0.25)^d.`;
  }

  /** Decode the mean z of each group and P - Q + R. */
  async function drawArithmetic() {
    const d = state.model.latent;
    if (GROUPS.some((g) => !state.groups[g].length)) {
      $('gan-arith-note').textContent = `Groups: ${GROUPS.map((g) => `${g.toUpperCase()} ${state.groups[g].length}`).join(', ')} samples; pick at least one of each.`;
      return;
    }
    const means = GROUPS.map((g) => {
      const m = new Float32Array(d);
      for (const k of state.groups[g]) zOf(k).forEach((v, i) => (m[i] += v / state.groups[g].length));
      return m;
    });
    const z = new Float32Array(4 * d);
    means.forEach((m, j) => z.set(m, j * d));
    for (let i = 0; i < d; i++) z[3 * d + i] = means[0][i] - means[1][i] + means[2][i];
    const canvas = $('gan-arith');
    drawDigits(canvas, await call('gan_generate', z), 4, 4);
    GROUPS.forEach((g, j) => frameCell(canvas, j, 4, PICK_COLOURS[g], `mean ${g.toUpperCase()}`));
    $('gan-arith-note').textContent = `G(mean z) of P (${state.groups.p.length}), Q (${state.groups.q.length}) and R (${state.groups.r.length}), then G(P − Q + R).`;
  }

  grid.addEventListener(
    'click',
    guarded(async (ev) => {
      if (!state.model || !state.gridImages || state.running) return;
      const r = grid.getBoundingClientRect();
      const cell = (SIDE * GRID_SCALE + GRID_GAP) * (r.width / grid.width);
      const col = Math.floor((ev.clientX - r.left) / cell);
      const row = Math.floor((ev.clientY - r.top) / cell);
      if (col < 0 || col >= GRID_COLS || row < 0 || row >= GRID_COLS) return;
      const which = form.pick.value;
      const k = row * GRID_COLS + col;
      if (GROUPS.includes(which)) {
        const g = state.groups[which];
        if (g.includes(k)) g.splice(g.indexOf(k), 1);
        else g.push(k);
      } else {
        state.picks[which] = k;
      }
      await redrawGrid();
      if (which === 'centre') await drawNeighbours();
      else if (GROUPS.includes(which)) await drawArithmetic();
      else await drawInterpolation();
    }),
  );
  form.interp.addEventListener('change', guarded(drawInterpolation));
  $('gan-neigh-again').addEventListener('click', guarded(drawNeighbours));

  // ------------------------------------------------------------ quality

  /** Score QUALITY_SAMPLES fresh samples (in short worker calls) and add them to the history. */
  async function scoreNow() {
    const t0 = performance.now();
    const out = $('gan-quality-out');
    const seed = Math.floor(Math.random() * 1e6);
    for (let start = 0; start < QUALITY_SAMPLES; start += QUALITY_CHUNK) {
      out.textContent = `scoring… ${start} / ${QUALITY_SAMPLES} samples`;
      await call('gan_quality_chunk', start, QUALITY_CHUNK, seed);
    }
    const q = await call('gan_quality_result');
    out.textContent = `At step ${state.step}: classifier score ${fmt(q.classifier_score, 2)} (max 10), Frechet distance ${fmt(q.frechet_distance, 2)} on the classifier's features, ${q.samples} samples vs ${q.samples} held-out page digits.`;
    out.dataset.score = String(q.classifier_score);
    out.dataset.step = String(state.step);
    state.lastScore = state.step;
    state.scoreEnd = performance.now();
    state.scoreMs = state.scoreEnd - t0;
    if (state.quality.at(-1)?.[0] !== state.step) state.quality.push([state.step, q.classifier_score, q.frechet_distance]);
    showQualityHistory();
  }

  function showQualityHistory() {
    const h = $('gan-quality-history');
    h.textContent = state.quality.length
      ? `So far (step: score / Frechet): ${state.quality.map(([s, c, f]) => `${s}: ${fmt(c, 2)} / ${fmt(f, 0)}`).join(' · ')}`
      : '';
    h.dataset.count = String(state.quality.length);
  }

  $('gan-quality').addEventListener('click', guarded(scoreNow));

  // ------------------------------------------------------------ Real or Fake?

  const gameCanvas = $('gan-game');
  $('gan-game-new').addEventListener(
    'click',
    guarded(async () => {
      const seed = Math.floor(Math.random() * 1e9);
      const nFake = GAME_DIGITS / 2;
      const fake = await call('gan_generate', await call('gan_sample_z', nFake, seed));
      const real = await call('gan_real_digits', GAME_DIGITS - nFake, seed);
      // shuffle real and fake together
      const order = [...Array(GAME_DIGITS).keys()].sort(() => Math.random() - 0.5);
      const images = new Float32Array(GAME_DIGITS * PIXELS);
      const isFake = [];
      order.forEach((src, k) => {
        const f = src < nFake;
        images.set((f ? fake : real).subarray((f ? src : src - nFake) * PIXELS, ((f ? src : src - nFake) + 1) * PIXELS), k * PIXELS);
        isFake.push(f);
      });
      const pReal = await call('gan_discriminate', images);
      state.game = { images, isFake, pReal, user: new Array(GAME_DIGITS).fill(false), checked: false };
      drawGame();
      $('gan-game-check').disabled = false;
      $('gan-game-out').textContent = 'Click the digits you think are fake, then Check.';
    }),
  );

  function drawGame() {
    const g = state.game;
    drawDigits(gameCanvas, g.images, GAME_DIGITS, GAME_DIGITS);
    g.user.forEach((f, k) => {
      if (f) frameCell(gameCanvas, k, GAME_DIGITS, '#e15759', 'fake?');
      if (g.checked) frameCell(gameCanvas, k, GAME_DIGITS, g.isFake[k] ? '#f28e2b' : '#59a14f', '');
    });
  }

  gameCanvas.addEventListener('click', (ev) => {
    const g = state.game;
    if (!g || g.checked) return;
    const r = gameCanvas.getBoundingClientRect();
    const cell = (SIDE * GRID_SCALE + GRID_GAP) * (r.width / gameCanvas.width);
    const k = Math.floor((ev.clientX - r.left) / cell);
    if (k < 0 || k >= GAME_DIGITS) return;
    g.user[k] = !g.user[k];
    drawGame();
  });

  $('gan-game-check').addEventListener('click', () => {
    const g = state.game;
    if (!g) return;
    g.checked = true;
    $('gan-game-check').disabled = true;
    const you = g.user.filter((f, k) => f === g.isFake[k]).length;
    const dGuess = [...g.pReal].map((p) => p < 0.5);
    const d = dGuess.filter((f, k) => f === g.isFake[k]).length;
    drawGame();
    const rows = g.isFake.map((f, k) => `${k + 1}: ${f ? 'fake' : 'real'} — you: ${g.user[k] ? 'fake' : 'real'}, D: ${dGuess[k] ? 'fake' : 'real'} (p(real) ${fmt(g.pReal[k], 2)})`);
    $('gan-game-out').textContent = `You: ${you}/${GAME_DIGITS} right. D: ${d}/${GAME_DIGITS} right. Fakes are framed orange, real digits green after Check.\n${rows.join('\n')}`;
  });

  // ------------------------------------------------------------ backend note

  call('backend_info').then(
    (info) => {
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
    },
    () => {},
  );

  drawLosses(lossCanvas, [], []);
  clearLatentTools();
  setButtons();
}
