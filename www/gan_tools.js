// The GAN tab's tools on a trained or loaded generator: the digit strips and the picks framed on
// them, the latent tools (interpolation, neighbours, vector arithmetic), the quality numbers from
// the shipped classifier, and the "Real or Fake?" game against D. Panels of gan.js's tab: each
// function takes the tab context.
import { PIXELS, SIDE, digitsImage } from './digits.js';
import { drawClassHistogram } from './gan_hist.js';
import { $ } from './util.js';
import { nextChunk } from './loop.js';
import { qualityHelpers, scoreSamples } from './quality_helpers.js';

const INTERP_STEPS = 10;
const NEIGHBOURS = 8;
const QUALITY_SAMPLES = 500;
/** Scoring calls aim at 300 ms (from 10 digits up to 100), so a Pause during scoring acts quickly. */
const QUALITY_CHUNK = { targetMs: 300, chunk: 10, max: 100 };
/**
 * The z of the scored samples: the same at every scoring (as the grid's), so the scores along
 * a training run compare, and the numbers do not depend on how the samples are cut into chunks.
 */
const QUALITY_SEED = 4243;
const GAME_DIGITS = 8;
export const GRID_COLS = 8;
const GRID_SCALE = 2;
const GRID_GAP = 2;
/** Colours of the picks drawn over the grid. */
export const PICK_COLOURS = { a: '#e15759', b: '#4e79a7', centre: '#59a14f', p: '#b07aa1', q: '#f28e2b', r: '#76b7b2' };
/** The vector-arithmetic groups: the result is P - Q + R. */
export const GROUPS = ['p', 'q', 'r'];

export const fmt = (v, d = 3) => (v == null || !Number.isFinite(v) ? String(v) : v.toFixed(d));

/** The smallest and largest class share of a quality answer, as "a–b%". */
export const classRange = (q) => {
  const p = [...q.histogram].map((c) => (100 * c) / q.samples);
  return `${fmt(Math.min(...p), 1)}–${fmt(Math.max(...p), 1)}%`;
};

/** `n` samples of the GAN (its average where one is kept), z seeded by `seed`, in chunks of 100. */
export async function ganSamples(call, n, seed) {
  const out = new Float32Array(n * PIXELS);
  for (let s = 0; s < n; s += 100) out.set(await call('gan_generate', await call('gan_sample_z', Math.min(100, n - s), seed + s)), s * PIXELS);
  return out;
}

// ---------------------------------------------------------------- drawing

/** Draw `count` digits (784 values in [0, 1] each) on `canvas` in `cols` columns. */
export function drawDigits(canvas, values, count, cols, scale = GRID_SCALE, gap = GRID_GAP) {
  const img = digitsImage(values, count, cols, scale, gap);
  [canvas.width, canvas.height] = [img.width, img.height];
  canvas.getContext('2d').putImageData(img, 0, 0);
  canvas.hidden = false;
}

/** Frame cell `k` of a digit grid drawn by drawDigits. */
export function frameCell(canvas, k, cols, colour, label) {
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

/** The grid cell under a click on a canvas drawn by drawDigits (-1 outside), for `cols` x `rows`. */
export function cellAt(canvas, ev, cols, rows = 1) {
  const r = canvas.getBoundingClientRect();
  const cell = (SIDE * GRID_SCALE + GRID_GAP) * (r.width / canvas.width);
  const col = Math.floor((ev.clientX - r.left) / cell);
  const row = Math.floor((ev.clientY - r.top) / cell);
  return col < 0 || col >= cols || row < 0 || row >= rows ? -1 : row * cols + col;
}

// ---------------------------------------------------------------- latent tools

const zOf = ({ state }, k) => state.gridZ.slice(k * state.model.latent, (k + 1) * state.model.latent);

export function clearLatentTools() {
  $('gan-arith-note').textContent = 'Pick groups P, Q and R in the grid (a click toggles a sample).';
  for (const id of ['gan-interp', 'gan-neigh', 'gan-arith']) {
    const c = $(id);
    c.getContext('2d').clearRect(0, 0, c.width, c.height);
    c.hidden = true; // shown again when drawn: no empty strips
  }
  $('gan-interp-note').textContent = 'Pick A and B in the grid.';
  $('gan-neigh-note').textContent = 'Pick a sample N in the grid.';
}

async function drawInterpolation(tab) {
  const { a, b } = tab.state.picks;
  if (a == null || b == null) return;
  const spherical = tab.form.interp.value === 'slerp';
  const z = await tab.call('gan_interpolate', zOf(tab, a), zOf(tab, b), INTERP_STEPS, spherical);
  drawDigits($('gan-interp'), await tab.call('gan_generate', z), INTERP_STEPS, INTERP_STEPS);
  $('gan-interp-note').textContent = `${spherical ? 'Spherical' : 'Linear'} path from sample A to sample B in ${INTERP_STEPS} steps.`;
}

async function drawNeighbours(tab) {
  const { state, call } = tab;
  const c = state.picks.centre;
  if (c == null) return;
  const z = await call('gan_neighbours', zOf(tab, c), NEIGHBOURS, Math.floor(Math.random() * 1e9));
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
async function drawArithmetic(tab) {
  const { state } = tab;
  const d = state.model.latent;
  if (GROUPS.some((g) => !state.groups[g].length)) {
    $('gan-arith-note').textContent = `Groups: ${GROUPS.map((g) => `${g.toUpperCase()} ${state.groups[g].length}`).join(', ')} samples; pick at least one of each.`;
    return;
  }
  const means = GROUPS.map((g) => {
    const m = new Float32Array(d);
    for (const k of state.groups[g]) zOf(tab, k).forEach((v, i) => (m[i] += v / state.groups[g].length));
    return m;
  });
  const z = new Float32Array(4 * d);
  means.forEach((m, j) => z.set(m, j * d));
  for (let i = 0; i < d; i++) z[3 * d + i] = means[0][i] - means[1][i] + means[2][i];
  const canvas = $('gan-arith');
  drawDigits(canvas, await tab.call('gan_generate', z), 4, 4);
  GROUPS.forEach((g, j) => frameCell(canvas, j, 4, PICK_COLOURS[g], `mean ${g.toUpperCase()}`));
  $('gan-arith-note').textContent = `G(mean z) of P (${state.groups.p.length}), Q (${state.groups.q.length}) and R (${state.groups.r.length}), then G(P − Q + R).`;
}

export function setupLatentTools(tab) {
  const { state, grid, form } = tab;
  grid.addEventListener(
    'click',
    tab.guarded(async (ev) => {
      if (!state.model || !state.gridImages || state.loop.running) return;
      const k = cellAt(grid, ev, GRID_COLS, GRID_COLS);
      if (k < 0) return;
      const which = form.pick.value;
      if (GROUPS.includes(which)) {
        const g = state.groups[which];
        if (g.includes(k)) g.splice(g.indexOf(k), 1);
        else g.push(k);
      } else {
        state.picks[which] = k;
      }
      await tab.redrawGrid();
      if (which === 'centre') await drawNeighbours(tab);
      else if (GROUPS.includes(which)) await drawArithmetic(tab);
      else await drawInterpolation(tab);
    }),
  );
  form.interp.addEventListener('change', tab.guarded(() => drawInterpolation(tab)));
  $('gan-neigh-again').addEventListener('click', tab.guarded(() => drawNeighbours(tab)));
}

// ---------------------------------------------------------------- quality

/**
 * Score the samples in the tabs' worker, in short calls; false where Pause (`live()` false)
 * stopped it.
 */
async function scoreHere(call, live, onProgress) {
  let n = QUALITY_CHUNK.chunk;
  for (let start = 0; start < QUALITY_SAMPLES; ) {
    if (!live()) return false;
    onProgress(start);
    const count = Math.min(n, QUALITY_SAMPLES - start);
    const t = performance.now();
    await call('gan_quality_chunk', start, count, QUALITY_SEED);
    start += count;
    n = nextChunk(count, performance.now() - t, QUALITY_CHUNK);
  }
  return true;
}

/**
 * Score QUALITY_SAMPLES samples (in short worker calls; on the CPU backend over one helper
 * worker per core) and add them to the history.
 */
export async function scoreNow(tab, live = () => true) {
  const { state, call } = tab;
  const t0 = performance.now();
  const out = $('gan-quality-out');
  const helpers = await qualityHelpers(tab.kind);
  const on = helpers ? ` on ${helpers.length} workers` : '';
  const onProgress = (done) => (out.textContent = `scoring… ${done} / ${QUALITY_SAMPLES} samples${on}`);
  onProgress(0);
  let scored;
  if (helpers) {
    const { g, g_ema: ema } = await call('gan_save'); // samples come from G's moving average when it is on
    const opts = { total: QUALITY_SAMPLES, seed: QUALITY_SEED, g: ema ?? g, dist: state.model.dist, classifier: state.classifierBytes, live, onProgress };
    scored = await scoreSamples(call, helpers, opts);
  } else {
    scored = await scoreHere(call, live, onProgress);
  }
  if (!scored) {
    out.textContent = 'scoring stopped by Pause (it starts again while training)';
    return;
  }
  const q = await call('gan_quality_result');
  out.textContent = `At step ${state.step}: classifier score ${fmt(q.classifier_score, 2)} (max 10), Frechet distance ${fmt(q.frechet_distance, 2)} on the classifier's features, ${q.samples} samples vs ${q.samples} held-out page digits (scored in ${fmt((performance.now() - t0) / 1000, 1)} s${on || ' in one worker'}).`;
  out.dataset.score = String(q.classifier_score);
  out.dataset.step = String(state.step);
  out.dataset.workers = String(helpers ? helpers.length : 1);
  out.dataset.histogram = [...q.histogram].join(',');
  out.dataset.frechet = String(q.frechet_distance);
  out.dataset.ms = String(Math.round(performance.now() - t0));
  drawClassHistogram($('gan-hist'), q.histogram);
  const pcts = [...q.histogram].map((c) => (100 * c) / q.samples);
  $('gan-hist-caption').textContent = `Classes of ${q.samples} samples at step ${state.step} (the shipped classifier's label): score ${fmt(q.classifier_score, 2)}, Frechet ${fmt(q.frechet_distance, 0)}, classes ${fmt(Math.min(...pcts), 1)}-${fmt(Math.max(...pcts), 1)}%.`;
  state.lastScore = state.step;
  state.scoreEnd = performance.now();
  state.scoreMs = state.scoreEnd - t0;
  if (state.quality.at(-1)?.[0] !== state.step) state.quality.push([state.step, q.classifier_score, q.frechet_distance]);
  showQualityHistory(tab);
}

export function showQualityHistory({ state }) {
  if (!state.quality.length) {
    drawClassHistogram($('gan-hist'), null);
    $('gan-hist-caption').textContent = "Classes of 500 samples (the shipped classifier's label), scored while training";
  }
  const h = $('gan-quality-history');
  h.textContent = state.quality.length ? `So far (step: score / Frechet): ${state.quality.map(([s, c, f]) => `${s}: ${fmt(c, 2)} / ${fmt(f, 0)}`).join(' · ')}` : '';
  h.dataset.count = String(state.quality.length);
}

export function setupQuality(tab) {
  $('gan-quality').addEventListener('click', tab.guarded(() => scoreNow(tab)));
}

// ---------------------------------------------------------------- Real or Fake?

/** Four real held-out digits and four of G's, shuffled, with D's p(real) of each. */
async function newRound(call) {
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
    const i = f ? src : src - nFake;
    images.set((f ? fake : real).subarray(i * PIXELS, (i + 1) * PIXELS), k * PIXELS);
    isFake.push(f);
  });
  const pReal = await call('gan_discriminate', images);
  return { images, isFake, pReal, user: new Array(GAME_DIGITS).fill(false), checked: false };
}

function drawGame(g) {
  const canvas = $('gan-game');
  drawDigits(canvas, g.images, GAME_DIGITS, GAME_DIGITS);
  g.user.forEach((f, k) => {
    if (f) frameCell(canvas, k, GAME_DIGITS, '#e15759', 'fake?');
    if (g.checked) frameCell(canvas, k, GAME_DIGITS, g.isFake[k] ? '#f28e2b' : '#59a14f', '');
  });
}

export function setupGame(tab) {
  const { state } = tab;
  const gameCanvas = $('gan-game');
  $('gan-game-new').addEventListener(
    'click',
    tab.guarded(async () => {
      state.game = await newRound(tab.call);
      drawGame(state.game);
      $('gan-game-check').disabled = false;
      $('gan-game-out').textContent = 'Click the digits you think are fake, then Check.';
    }),
  );
  gameCanvas.addEventListener('click', (ev) => {
    const g = state.game;
    if (!g || g.checked) return;
    const k = cellAt(gameCanvas, ev, GAME_DIGITS);
    if (k < 0) return;
    g.user[k] = !g.user[k];
    drawGame(g);
  });
  $('gan-game-check').addEventListener('click', () => {
    const g = state.game;
    if (!g) return;
    g.checked = true;
    $('gan-game-check').disabled = true;
    const you = g.user.filter((f, k) => f === g.isFake[k]).length;
    const dGuess = [...g.pReal].map((p) => p < 0.5);
    const d = dGuess.filter((f, k) => f === g.isFake[k]).length;
    drawGame(g);
    const rows = g.isFake.map((f, k) => `${k + 1}: ${f ? 'fake' : 'real'} — you: ${g.user[k] ? 'fake' : 'real'}, D: ${dGuess[k] ? 'fake' : 'real'} (p(real) ${fmt(g.pReal[k], 2)})`);
    $('gan-game-out').textContent = `You: ${you}/${GAME_DIGITS} right. D: ${d}/${GAME_DIGITS} right. Fakes are framed orange, real digits green after Check.\n${rows.join('\n')}`;
  });
}
