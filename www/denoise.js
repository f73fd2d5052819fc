// The Denoise tab: open a photo (file picker, drag and drop, paste, samples), denoise it tile by
// tile in the worker with a DnCNN (progress, Cancel), show it side by side or under a
// before/after slider, PSNR/SSIM when synthetic noise was added, download as PNG; the
// lecture's figures; and a Train panel that trains a small DnCNN in the tab (denoise_train.js).
// Everything heavy runs in the worker through `call(cmd, ...args)` (src/web/denoise.rs); this
// file only drives short calls in loops that can stop between them, and draws. On the CPU
// backend the tiles of a photo are spread over one helper worker per core (`createTilePool`).
import { $, download, fetchBytes, setError } from './util.js';
import { setupTraining } from './denoise_train.js';
import { allLanes, createHelperPool, helperCount } from './workers.js';
import { nextChunk } from './loop.js';
import { setupDenoiseViews } from './filters.js';

const SAMPLES = ['camera', 'moon', 'astronaut', 'coffee', 'chelsea'];
/** Shipped model files (www/models/), by key; a missing one is "not available". */
const MODEL_FILES = {
  s10: 'models/dncnn_s10_gray.safetensors',
  blind: 'models/dncnn_blind_gray.safetensors',
  color: 'models/dncnn_blind_color.safetensors',
};
const MODEL_NAMES = {
  s10: 'σ=10 gray',
  blind: 'blind gray',
  color: 'blind colour',
  trained: 'trained in this tab',
  file: 'loaded weights file',
};
/** "the blind gray model", "the model trained in this tab", ... */
const modelPhrase = (key) => (key === 'trained' ? 'the model trained in this tab' : key === 'file' ? 'the loaded weights file' : `the ${MODEL_NAMES[key]} model`);
const FIGURE_IMAGE = 'camera';
const FIGURE_CROP = 256;
const FIGURE_SEED = 1;

const fmtDb = (v) => (v == null ? '–' : `${v.toFixed(2)} dB`);
const fmtSsim = (v) => (v == null ? '–' : v.toFixed(4));

function show(el, on) {
  el.hidden = !on;
}

/** An ImageData from the worker's RGBA bytes. */
function imageData(rgba, w, h) {
  return new ImageData(new Uint8ClampedArray(rgba.buffer, rgba.byteOffset, rgba.byteLength), w, h);
}

function paint(canvas, data) {
  canvas.width = data ? data.width : 0;
  canvas.height = data ? data.height : 0;
  if (data) canvas.getContext('2d').putImageData(data, 0, 0);
}

// ---------------------------------------------------------------- models

function createModels(call, onChange) {
  const available = {}; // key -> true | false (shipped files), after check()
  const info = {}; // key -> model info from the worker
  const loading = {}; // key -> Promise<info>
  const bytes = {}; // key -> file bytes (for fine-tuning)

  async function load(key) {
    if (info[key]) return info[key];
    if (!MODEL_FILES[key]) throw new Error(`model not available: ${MODEL_NAMES[key] || key}`);
    loading[key] ??= (async () => {
      const b = await fetchBytes(MODEL_FILES[key], `model ${MODEL_NAMES[key]}`);
      const i = await call('denoise_load_model', key, b);
      bytes[key] = b;
      info[key] = i;
      onChange();
      return i;
    })();
    try {
      return await loading[key];
    } finally {
      delete loading[key];
    }
  }

  /** Which shipped files exist (HEAD requests); then load them in the background. */
  async function check() {
    await Promise.all(
      Object.entries(MODEL_FILES).map(async ([key, url]) => {
        try {
          available[key] = (await fetch(url, { method: 'HEAD' })).ok;
        } catch {
          available[key] = false;
        }
      }),
    );
    onChange();
    for (const key of Object.keys(MODEL_FILES)) {
      if (available[key]) load(key).catch((e) => { available[key] = false; info[key] = null; onChange(e); });
    }
  }

  return {
    available,
    info,
    bytes,
    load,
    check,
    has: (key) => Boolean(available[key] || info[key]),
    set(key, i) {
      info[key] = i;
      onChange();
    },
    drop(key) {
      delete info[key];
      onChange();
    },
  };
}

// ---------------------------------------------------------------- helper workers

/**
 * Layers of a tile per call in the tabs' worker: a call lasts about `targetMs` (at least one
 * layer), so Cancel never waits for more.
 */
const LAYER_CHUNK = { targetMs: 250, max: 64 };
/**
 * Most a one-layer call may take on WebGPU: where a layer of a big tile takes longer (a
 * software adapter: ~15 s for a 512x512 tile on SwiftShader), the tiles are made smaller, so
 * that the call Cancel waits for stays well under a second. `?layer-ms=N` sets it (0: tiles
 * as big as the device allows, whatever a layer takes).
 */
const LAYER_BUDGET_MS = Number(new URLSearchParams(location.search).get('layer-ms') ?? 400);
/** Tile side on WebGPU until a layer has been timed (then the job is planned again). */
const PROBE_TILE_PIXELS = 84 * 84;

/** "about 1 min 20 s left" */
function timeLeft(secs) {
  if (!(secs >= 0) || !Number.isFinite(secs)) return '';
  const s = Math.max(1, Math.round(secs));
  return s < 60 ? `about ${s} s left` : `about ${Math.floor(s / 60)} min ${s % 60} s left`;
}

/**
 * The time of a DnCNN layer per pixel on WebGPU, per model, from the layer calls of the tabs'
 * worker; `maxPixels(key)`: the pixels of a tile (with its halo) whose layer fits
 * LAYER_BUDGET_MS (0: no cap; before any timing, a small probe tile).
 */
function createLayerTimer() {
  const msPerPixel = new Map(); // model key -> ms per pixel of one layer (a running mean)
  return {
    maxPixels(key) {
      const rate = msPerPixel.get(key);
      return rate === undefined ? PROBE_TILE_PIXELS : Math.max(1, Math.min(2 ** 31, Math.floor(LAYER_BUDGET_MS / rate)));
    },
    /** `layers` layers of a tile of `pixels` took `ms`. */
    add(key, layers, pixels, ms) {
      const rate = ms / (layers * pixels);
      const old = msPerPixel.get(key);
      msPerPixel.set(key, old === undefined ? rate : 0.5 * old + 0.5 * rate);
    },
    known: (key) => msPerPixel.has(key),
  };
}

/**
 * Runs the tiles of the tabs' worker's denoising job: in that worker one at a time (WebGPU, or
 * ?workers=1), or spread over helper workers (createHelperPool), each handed the next tile as
 * it finishes one; the tabs' worker keeps the job and only cuts and pastes tiles.
 */
function createTileRunner(call, models) {
  const pool = createHelperPool();
  const timer = createLayerTimer();
  let backendKind = null; // 'gpu' | 'cpu', once the worker has said
  let layerChunk = 1; // layers per call in the tabs' worker, adapted to LAYER_CHUNK's target

  /** The model's weights for helper workers: the file bytes, or the tab's trained model now. */
  async function modelBytes(key) {
    if (key === 'trained') return call('dncnn_train_weights');
    if (!models.bytes[key]) throw new Error(`model not available: ${MODEL_NAMES[key] || key}`);
    return models.bytes[key];
  }

  /**
   * The tiles of `job` in the tabs' worker, a few layers per call (progress inside a tile;
   * Cancel waits for one call). On WebGPU each call is timed; a job planned before any timing
   * (`job.probe`) stops after a few calls where bigger tiles would do, and says so (`replan`).
   */
  async function ownLane(job, key, ensemble, going, onTile, onLayers) {
    let calls = 0;
    for (let i = 0; i < job.tiles && going(); i++) {
      const input = await call('denoise_tile_input', i);
      if (!going()) return false;
      let p = await call('denoise_steps_begin', key, input.crop, input.height, input.width, ensemble);
      while (!p.finished) {
        const t = performance.now();
        const before = p.done;
        p = await call('denoise_steps_run', layerChunk);
        if (!going()) return false;
        const ms = performance.now() - t;
        layerChunk = nextChunk(layerChunk, ms, LAYER_CHUNK);
        // the page's first call also sets up the shaders: not a layer's time
        if (backendKind === 'gpu' && calls++ > 0) timer.add(key, p.done - before, input.height * input.width, ms);
        if (job.probe && calls >= 3 && timer.maxPixels(key) > 2 * PROBE_TILE_PIXELS) return true;
        onLayers(i, p);
      }
      const y = await call('denoise_steps_output');
      const r = await call('denoise_tile_output', job.job, i, y);
      if (going()) onTile(r);
    }
    return false;
  }

  /**
   * Denoise every tile of `job` (denoise_begin's answer) with model `key`; `onTile(r)` gets each
   * finished tile, `onLayers(i, {done, total})` the layers done of tile i when the tabs' worker
   * runs it alone. Stops when `live()` turns false; the first error stops every lane and is
   * thrown. Resolves to {workers, replan}: the number of workers used, and whether the job
   * should be planned again with `maxPixels` (its probe tiles were too small).
   */
  async function run(job, key, ensemble, live, onTile, onLayers) {
    const n = Math.min(helperCount(backendKind), job.tiles);
    if (n === 1) {
      const replan = await ownLane(job, key, ensemble, live, onTile, onLayers);
      return { workers: 1, replan };
    }
    const bytes = await modelBytes(key);
    const helpers = await pool.start(n);
    if (!live()) return { workers: n };
    // helpers hold the trained model under its own key (the name 'trained' is the worker's own)
    const hkey = key === 'trained' ? 'pool-trained' : key;
    let next = 0;
    await allLanes(helpers.map((h) => async (failed) => {
      await pool.ensure(h, hkey, bytes, () => h.worker.call('denoise_load_model', hkey, bytes));
      const going = () => live() && !failed();
      while (next < job.tiles && going()) {
        const i = next++;
        const input = await call('denoise_tile_input', i);
        if (!going()) return;
        const y = await h.worker.call('denoise_crop_run', hkey, input.crop, input.height, input.width, ensemble);
        if (!going()) return;
        const r = await call('denoise_tile_output', job.job, i, y);
        if (going()) onTile(r);
      }
    }));
    return { workers: n };
  }

  /** 'gpu' or 'cpu': the backend of the tabs' worker. */
  async function kind() {
    backendKind ??= (await call('backend_info')).kind;
    return backendKind;
  }

  return {
    kind,
    run,
    /** The pixel cap of a tile for `denoise_begin` (0: none), and whether it is a probe. */
    plan(key) {
      if (backendKind !== 'gpu' || !(LAYER_BUDGET_MS > 0)) return { maxPixels: 0, probe: false };
      return { maxPixels: timer.maxPixels(key), probe: !timer.known(key) };
    },
    /** Start the helpers ahead of the first job (each compiles the wasm module: ~1 s). */
    async warm() {
      const n = helperCount(await kind());
      if (n > 1) await pool.start(n);
    },
    stop: () => pool.stop(),
  };
}

/** The model select's options and the line of model states (loaded, loading, missing). */
function refreshModelList(el, models) {
  const parts = [];
  for (const key of Object.keys(MODEL_FILES)) {
    const opt = el.model.querySelector(`option[value="${key}"]`);
    const i = models.info[key];
    const known = key in models.available;
    const ok = models.has(key);
    opt.disabled = known && !ok;
    opt.textContent = `${MODEL_NAMES[key]}${known && !ok ? ' (model not available)' : ''}`;
    if (!known) continue;
    if (!ok) {
      parts.push(`<span class="missing">${MODEL_NAMES[key]}: model not available</span>`);
    } else if (i) {
      const m = i.meta || {};
      const progress = m.step && m.steps && Number(m.step) < Number(m.steps) ? `, provisional: step ${m.step} of ${m.steps}` : '';
      parts.push(`<span class="ok">${MODEL_NAMES[key]} ✓</span> (depth ${i.depth}, width ${i.width}${progress})`);
    } else {
      parts.push(`${MODEL_NAMES[key]}: loading…`);
    }
  }
  const file = models.info.file;
  el.model.querySelector('option[value="file"]').disabled = !file;
  if (file) parts.push(`<span class="ok">loaded file ✓</span> (${file.channels === 3 ? 'colour' : 'gray'}, depth ${file.depth}, width ${file.width})`);
  el.model.querySelector('option[value="trained"]').disabled = !models.info.trained;
  el.models.innerHTML = `Models: ${parts.join(' · ') || 'checking…'}`;
}

/** The model for `photo`: the user's choice, or by the photo's colour. */
function pickModel(el, models, photo) {
  const choice = el.model.value;
  let key = null;
  if (choice !== 'auto') {
    if (!models.has(choice)) throw new Error(`model not available: ${MODEL_NAMES[choice]}`);
    key = choice;
  } else if (!photo.gray && models.has('color')) {
    key = 'color';
  } else {
    key = ['blind', 's10', 'trained', 'file'].find((k) => models.has(k));
    if (!key) throw new Error('model not available: there is no DnCNN weights file in www/models/ and none was trained or loaded in this tab');
  }
  const i = models.info[key];
  let note = '';
  if (!photo.gray && (!i || i.channels === 1)) {
    note = choice === 'auto' ? ' (colour model not available: each colour plane goes through the gray model)' : ' (each colour plane goes through the gray model)';
  }
  return { key, note };
}

/**
 * What the tab shows: `input` and `output` (ImageData or null) in the side-by-side or slider
 * view; `render()` redraws them, `paintTile(r)` draws one finished tile, `setMetrics(r)` the
 * PSNR/SSIM box.
 */
function createView(el) {
  const view = { input: null, output: null, render, paintTile, setMetrics };

  function render() {
    const cmp = el.viewCard.querySelector('input[name="dn-view"]:checked').value === 'slider';
    show(el.side, !cmp);
    show(el.compare, cmp);
    el.viewCard.classList.toggle('dn-zoom', el.zoom.checked);
    if (cmp) {
      paint(el.cmpOut, view.output || view.input);
      paint(el.cmpIn, view.input);
      paint(el.canvasIn, null);
      paint(el.canvasOut, null);
      updateSplit();
    } else {
      paint(el.canvasIn, view.input);
      paint(el.canvasOut, view.output);
      paint(el.cmpIn, null);
      paint(el.cmpOut, null);
    }
  }

  function updateSplit() {
    const v = Number(el.split.value);
    el.cmpIn.style.clipPath = `inset(0 ${100 - v}% 0 0)`;
    el.divider.style.left = `${v}%`;
  }

  for (const r of el.viewCard.querySelectorAll('input[name="dn-view"]')) r.addEventListener('change', render);
  el.zoom.addEventListener('change', render);
  el.split.addEventListener('input', updateSplit);
  // 1:1 side by side: the two boxes scroll together
  const boxes = [...el.side.querySelectorAll('.dn-scroll')];
  for (const b of boxes) {
    b.addEventListener('scroll', () => {
      for (const o of boxes) {
        if (o !== b && (o.scrollLeft !== b.scrollLeft || o.scrollTop !== b.scrollTop)) {
          o.scrollLeft = b.scrollLeft;
          o.scrollTop = b.scrollTop;
        }
      }
    });
  }

  function setMetrics(r) {
    const noise = r && r.psnr_input != null;
    show(el.metrics, noise);
    for (const k of ['psnrIn', 'psnrOut', 'gain']) delete el.metrics.dataset[k];
    if (!noise) return;
    $('dn-psnr-in').textContent = fmtDb(r.psnr_input);
    $('dn-psnr-out').textContent = fmtDb(r.psnr_output);
    const skipped = r.ssim_skipped ? `skipped (${r.ssim_skipped})` : null;
    $('dn-ssim-in').textContent = skipped || fmtSsim(r.ssim_input);
    $('dn-ssim-out').textContent = skipped || fmtSsim(r.ssim_output);
    $('dn-gain').textContent = `${r.gain >= 0 ? '+' : ''}${r.gain.toFixed(2)} dB`;
    $('dn-gain').classList.toggle('good', r.gain > 0);
    el.metrics.dataset.psnrIn = r.psnr_input.toFixed(4);
    el.metrics.dataset.psnrOut = r.psnr_output.toFixed(4);
    el.metrics.dataset.gain = r.gain.toFixed(4);
    if (r.ssim_output != null) el.metrics.dataset.ssimOut = r.ssim_output.toFixed(4);
  }

  /** Draw a finished tile ({x, y, width, height, rgba}) into the output image and its canvas. */
  function paintTile(r) {
    const out = view.output;
    if (!out) return;
    const row = 4 * r.width;
    for (let y = 0; y < r.height; y++) out.data.set(r.rgba.subarray(y * row, (y + 1) * row), 4 * ((r.y + y) * out.width + r.x));
    const rect = imageData(r.rgba, r.width, r.height);
    for (const c of [el.canvasOut, el.cmpOut]) {
      if (c.width === out.width && c.height === out.height) c.getContext('2d').putImageData(rect, r.x, r.y);
    }
  }

  return view;
}

/** The ways to open a photo: file picker, samples, drag and drop anywhere on the tab, paste. */
function setupPhotoInput(panel, el, { openFile, openSample }) {
  el.file.addEventListener('change', async () => {
    const f = el.file.files[0];
    el.file.value = ''; // the same file can be chosen again
    await openFile(f);
  });
  for (const name of SAMPLES) {
    panel.querySelector(`[data-sample="${name}"]`).addEventListener('click', () => openSample(name));
  }
  el.drop.addEventListener('dragover', (ev) => {
    ev.preventDefault();
    el.drop.classList.add('dn-dragging');
  });
  el.drop.addEventListener('dragleave', () => el.drop.classList.remove('dn-dragging'));
  el.drop.addEventListener('drop', (ev) => {
    ev.preventDefault();
    el.drop.classList.remove('dn-dragging');
    const f = ev.dataTransfer && ev.dataTransfer.files[0];
    if (f) openFile(f);
    else setError(el.error, 'the drop held no file');
  });
  // a file dropped elsewhere on the tab must not make the browser leave the page
  panel.addEventListener('dragover', (ev) => ev.preventDefault());
  panel.addEventListener('drop', (ev) => {
    ev.preventDefault();
    const f = ev.dataTransfer && ev.dataTransfer.files[0];
    if (f) openFile(f);
  });
  document.addEventListener('paste', (ev) => {
    if (panel.hidden) return;
    const items = [...(ev.clipboardData?.items || [])];
    const item = items.find((i) => i.kind === 'file' && i.type.startsWith('image/'));
    if (!item) return;
    ev.preventDefault();
    openFile(item.getAsFile());
  });
}

/**
 * The progress line of `job` (begun at `t0`): `tile(r)` after a finished tile, `layers(i, p)`
 * after layers of tile i; tiles done, the layers of the tile in progress, the time left.
 */
function jobProgress(el, job, t0) {
  let tilesDone = 0;
  const tileSize = job.tiles > 1 ? ` (up to ${job.tile}×${job.tile} pixels each)` : '';
  const line = (fraction, inTile = '') => {
    el.progress.value = fraction;
    const secs = (performance.now() - t0) / 1000;
    const left = fraction > 0 && fraction < 1 ? ` · ${timeLeft((secs / fraction) * (1 - fraction))}` : '';
    el.progressText.textContent = `${tilesDone} / ${job.tiles} tiles${tileSize}${inTile}${left}`;
  };
  el.progress.value = 0;
  line(0);
  show(el.progressRow, true);
  return {
    tile(r) {
      tilesDone = r.done;
      line(r.done / job.tiles);
    },
    layers: (i, p) => line((tilesDone + p.done / p.total) / job.tiles, ` · tile ${i + 1}: layer ${p.done} of ${p.total}`),
  };
}

/**
 * Denoising the open photo (`getPhoto()`) in the tabs' worker: `denoise()` runs a job (tiles
 * through createTileRunner, drawn into `view` as they finish, progress and time left, then the
 * result and its metrics, then `onDone()`); `cancelJob()` stops the one in progress, if any, and
 * says whether there was one.
 */
function createDenoiser(call, el, models, view, setState, getPhoto, onDone) {
  let jobToken = 0; // a new job or Cancel bumps it; a loop whose token is stale stops
  const tiles = createTileRunner(call, models);
  tiles.warm().catch(() => {}); // a helper that cannot start says so at the first job

  /** Stop the job in progress, if any (its loop sees the new token and ends; helpers stop). */
  function cancelJob() {
    jobToken++;
    const running = !el.progressRow.hidden;
    if (running) {
      call('denoise_cancel').catch(() => {});
      call('denoise_steps_drop').catch(() => {});
      tiles.stop();
    }
    show(el.progressRow, false);
    el.run.disabled = !getPhoto();
    return running;
  }

  el.cancel.addEventListener('click', () => {
    // data-stopped-ms: when the tabs' worker has ended the call in flight (its next answer)
    delete el.info.dataset.stoppedMs;
    const t = performance.now();
    const token = jobToken + 1;
    call('backend_info').then(() => {
      if (token === jobToken) el.info.dataset.stoppedMs = String(Math.round(performance.now() - t));
    }, () => {});
    if (cancelJob()) setState('cancelled', `Cancelled after ${el.progressText.textContent.replace(/ \(.*/, '').replace(/ · .*/, '')}.`);
  });

  async function denoise() {
    const photo = getPhoto();
    if (!photo) return;
    const token = ++jobToken;
    setError(el.error, '');
    el.run.disabled = true;
    el.download.disabled = true;
    view.output = null;
    view.setMetrics(null);
    view.render();
    const sigma = el.noise.checked ? Number(el.sigma.value) : 0;
    const seed = Math.max(0, Math.min(4294967295, Math.floor(Number(el.seed.value) || 0)));
    const size = `${photo.width}×${photo.height}`;
    try {
      const { key, note } = pickModel(el, models, photo);
      setState('loading', `Loading ${modelPhrase(key)}…`);
      await models.load(key);
      const kind = await tiles.kind();
      if (token !== jobToken) return;
      const ensemble = el.ensemble.checked;
      const what = `${photo.name} (${size}) with ${modelPhrase(key)}${note}${ensemble ? ', ×8 self-ensemble' : ''}${sigma ? `, σ=${sigma} noise added (seed ${seed})` : ''}`;
      const t0 = performance.now();
      /** plan the job (the tile size from the layer times measured so far) and run its tiles */
      const runJob = async () => {
        const { maxPixels, probe } = tiles.plan(key);
        const job = { ...(await call('denoise_begin', key, sigma, seed, ensemble, helperCount(kind), maxPixels)), probe };
        if (token !== jobToken) return { workers: 0 };
        // the output pane fills in as tiles finish
        if (!view.output) {
          view.output = new ImageData(job.width, job.height);
          view.render();
        }
        setState('running', `Denoising ${what}…`);
        const progress = jobProgress(el, job, t0);
        return tiles.run(job, key, ensemble, () => token === jobToken, (r) => {
          view.paintTile(r);
          progress.tile(r);
        }, (i, p) => {
          if (!p.finished && token === jobToken) progress.layers(i, p);
        });
      };
      let { workers, replan } = await runJob();
      // the first job on WebGPU starts with small tiles to time a layer; bigger ones fit
      if (replan && token === jobToken) ({ workers } = await runJob());
      if (token !== jobToken) return;
      const r = await call('denoise_result');
      if (token !== jobToken) return;
      const secs = (performance.now() - t0) / 1000;
      show(el.progressRow, false);
      view.input = imageData(r.input_rgba, r.width, r.height);
      view.output = imageData(r.output_rgba, r.width, r.height);
      el.capIn.textContent = sigma ? `noisy input (σ=${sigma})` : 'input';
      el.capOut.textContent = `denoised (${MODEL_NAMES[key]}${ensemble ? ', ×8 self-ensemble' : ''})`;
      view.render();
      view.setMetrics(r);
      el.download.disabled = false;
      el.info.dataset.workers = String(workers);
      const mp = (r.width * r.height) / 1e6;
      const on = kind === 'cpu' ? ` on ${workers} worker${workers > 1 ? 's' : ''}` : '';
      onDone();
      setState('done', `Denoised ${what} in ${secs.toFixed(1)} s${on} (${mp / secs >= 0.1 ? (mp / secs).toFixed(2) : (mp / secs).toPrecision(2)} MP/s).${photo.alpha ? ' Alpha kept.' : ''}`);
    } catch (e) {
      if (token !== jobToken) return;
      show(el.progressRow, false);
      tiles.stop();
      setError(el.error, e.message);
      setState('error', `Could not denoise ${photo.name}.`);
    } finally {
      if (token === jobToken) el.run.disabled = !getPhoto();
    }
  }

  return { cancelJob, denoise };
}

/** The card "Inside the network" (filters.js) for the open photo and the model that denoises it. */
function layerViews(call, el, models, view, getPhoto) {
  return setupDenoiseViews(call, {
    after: el.viewCard,
    inputCanvas: el.canvasIn,
    // the model that denoises the open photo, and the input picture as shown
    async current() {
      const photo = getPhoto();
      if (!photo || !view.input) return null;
      const { key } = pickModel(el, models, photo);
      return { key, info: await models.load(key), picture: view.input };
    },
  });
}

// ---------------------------------------------------------------- the tab

export function setupDenoiseTab(call) {
  const panel = $('panel-denoise');
  const el = {
    file: $('dn-file'), drop: $('dn-drop'), model: $('dn-model'), weights: $('dn-weights'),
    noise: $('dn-noise'), ensemble: $('dn-ensemble'), sigma: $('dn-sigma'), sigmaOut: $('dn-sigma-out'), seed: $('dn-seed'),
    run: $('dn-run'), models: $('dn-models'), error: $('dn-error'), progressRow: $('dn-progress-row'),
    progress: $('dn-progress'), progressText: $('dn-progress-text'), cancel: $('dn-cancel'),
    zoom: $('dn-zoom'), download: $('dn-download'), info: $('dn-info'), metrics: $('dn-metrics'),
    side: $('dn-side'), compare: $('dn-compare'), split: $('dn-split'), divider: $('dn-divider'),
    canvasIn: $('dn-in'), canvasOut: $('dn-out'), cmpIn: $('dn-cmp-in'), cmpOut: $('dn-cmp-out'),
    capIn: $('dn-cap-in'), capOut: $('dn-cap-out'), viewCard: panel.querySelector('.dn-view-card'),
  };

  const models = createModels(call, (e) => {
    refreshModelList(el, models);
    if (e) setError(el.error, e.message);
  });

  // what is shown: the opened photo, and the last result
  let photo = null; // {width, height, gray, alpha, megapixels, name}
  const view = createView(el);

  call('denoise_cap_megapixels').then((cap) => ($('dn-cap').textContent = String(cap)), () => {});
  models.check();

  function setState(state, text) {
    el.info.dataset.state = state;
    el.info.textContent = text;
  }

  // ------------------------------------------------ opening a photo

  async function open(bytes, name, { sample = false } = {}) {
    cancelJob();
    setError(el.error, '');
    photo = null;
    view.input = view.output = null;
    view.setMetrics(null);
    el.download.disabled = true;
    el.run.disabled = true;
    el.capIn.textContent = 'input';
    el.capOut.textContent = 'denoised';
    view.render();
    setState('opening', `Opening ${name}…`);
    let p;
    try {
      p = await call('denoise_open', bytes);
    } catch (e) {
      setError(el.error, `${name}: ${e.message}`);
      setState('error', 'No photo open.');
      return;
    }
    photo = { ...p, name };
    views.newPhoto();
    view.input = imageData(p.rgba, p.width, p.height);
    view.render();
    el.run.disabled = false;
    // a sample is clean: show what the denoiser does with synthetic noise on it
    if (sample && !el.noise.checked) el.noise.checked = true;
    await denoise();
  }

  /** Called before the first await of every way to open a photo: the last outcome goes at once. */
  function opening(name) {
    cancelJob();
    setError(el.error, '');
    setState('opening', `Opening ${name}…`);
  }

  async function openFile(file) {
    if (!file) return;
    opening(file.name || 'pasted image');
    let bytes;
    try {
      bytes = new Uint8Array(await file.arrayBuffer());
    } catch (e) {
      setError(el.error, `${file.name}: cannot read the file (${e.message})`);
      return;
    }
    await open(bytes, file.name || 'pasted image');
  }

  async function openSample(name) {
    opening(`${name}.png`);
    try {
      await open(await fetchBytes(`samples/${name}.png`, `sample ${name}`), `${name}.png`, { sample: true });
    } catch (e) {
      setError(el.error, `${e.message} (./build.sh setup fetches the samples)`);
      setState('error', 'No photo open.');
    }
  }

  setupPhotoInput(panel, el, { openFile, openSample });


  const views = layerViews(call, el, models, view, () => photo);
  const { cancelJob, denoise } = createDenoiser(call, el, models, view, setState, () => photo, views.refresh);

  el.run.addEventListener('click', denoise);
  el.sigma.addEventListener('input', () => (el.sigmaOut.textContent = el.sigma.value));
  el.download.addEventListener('click', async () => {
    try {
      const png = await call('denoise_png');
      const base = (photo?.name || 'photo').replace(/\.[^.]*$/, '');
      download(png, `${base}-denoised.png`, 'image/png');
    } catch (e) {
      setError(el.error, e.message);
    }
  });

  el.weights.addEventListener('change', async () => {
    const f = el.weights.files[0];
    el.weights.value = '';
    if (!f) return;
    setError(el.error, '');
    try {
      const bytes = new Uint8Array(await f.arrayBuffer());
      const i = await call('denoise_load_model', 'file', bytes);
      models.bytes.file = bytes;
      models.set('file', i);
      el.model.value = 'file';
      setState(el.info.dataset.state || 'idle', `Loaded ${f.name}: DnCNN ${i.channels === 3 ? 'colour' : 'gray'}, depth ${i.depth}, width ${i.width}. Press Denoise to use it.`);
    } catch (e) {
      setError(el.error, `${f.name}: ${e.message}`);
    }
  });

  setupFigures(call, models);
  setupTraining(call, { models, names: MODEL_NAMES, samples: SAMPLES }, {
    useTrained(info) {
      models.set('trained', info);
      el.model.value = 'trained';
      if (photo) denoise();
    },
    dropTrained() {
      models.drop('trained');
      if (el.model.value === 'trained') el.model.value = 'auto';
    },
  });
}

// ---------------------------------------------------------------- lecture figures

const FIGURES = {
  s10: { title: 'σ=10 model at σ 5/10/15', sigmas: [5, 10, 15], rows: ['s10'] },
  blind: { title: 'blind model at σ 10/30/50', sigmas: [10, 30, 50], rows: ['blind'] },
  compare: { title: 'σ=10 model vs blind model at σ 10/25/50', sigmas: [10, 25, 50], rows: ['s10', 'blind'] },
};

function setupFigures(call, models) {
  const out = $('dn-figure');
  const status = $('dn-fig-status');
  let token = 0;
  let imageReady = null;

  function panelEl(picture, caption) {
    const f = document.createElement('figure');
    const c = document.createElement('canvas');
    paint(c, imageData(picture.rgba, picture.width, picture.height));
    const cap = document.createElement('figcaption');
    cap.textContent = caption;
    f.append(c, cap);
    return f;
  }

  function row(label, cells) {
    const l = document.createElement('div');
    l.className = 'row-label';
    l.textContent = label;
    const r = document.createElement('div');
    r.className = 'row';
    r.append(...cells);
    out.append(l, r);
    return r;
  }

  async function generate(name) {
    const my = ++token;
    const fig = FIGURES[name];
    out.replaceChildren();
    out.dataset.figure = name;
    delete out.dataset.done;
    status.textContent = `Generating "${fig.title}"…`;
    try {
      imageReady ??= fetchBytes(`samples/${FIGURE_IMAGE}.png`, `sample ${FIGURE_IMAGE}`).then((b) => call('denoise_figure_image', b, FIGURE_CROP));
      await imageReady.catch((e) => {
        imageReady = null;
        throw e;
      });
      const usable = [];
      for (const key of fig.rows) {
        try {
          await models.load(key);
          usable.push(key);
        } catch {
          // shown as a row saying so
        }
      }
      if (!usable.length) throw new Error(`model not available: ${fig.rows.map((k) => MODEL_NAMES[k]).join(', ')}`);
      const noisyCells = [];
      const rows = Object.fromEntries(fig.rows.map((k) => [k, []]));
      let n = 0;
      const total = fig.sigmas.length * usable.length;
      for (const sigma of fig.sigmas) {
        for (const key of usable) {
          const p = await call('denoise_figure_panel', key, sigma, FIGURE_SEED);
          if (my !== token) return;
          n++;
          status.textContent = `Generating "${fig.title}": ${n} / ${total}`;
          // the noisy panel is the same for every model (one noise seed per sigma)
          if (noisyCells.length === fig.sigmas.indexOf(sigma)) noisyCells.push(panelEl(p.noisy, `noisy σ=${sigma}: ${p.psnr_noisy.toFixed(2)} dB`));
          const cell = panelEl(p.denoised, `${MODEL_NAMES[key]} model: ${p.psnr_denoised.toFixed(2)} dB`);
          cell.dataset.psnr = p.psnr_denoised.toFixed(4);
          cell.dataset.sigma = String(sigma);
          rows[key].push(cell);
        }
      }
      out.replaceChildren();
      row('noisy (above)', noisyCells);
      for (const key of fig.rows) {
        if (usable.includes(key)) row(`denoised by the ${MODEL_NAMES[key]} model`, rows[key]);
        else {
          const p = document.createElement('p');
          p.className = 'na';
          p.textContent = `${MODEL_NAMES[key]}: model not available`;
          out.append(p);
        }
      }
      out.dataset.done = 'true';
      status.textContent = `"${fig.title}" on the central ${FIGURE_CROP}×${FIGURE_CROP} of ${FIGURE_IMAGE}.png (PSNR against the clean image).`;
    } catch (e) {
      if (my !== token) return;
      status.textContent = '';
      const p = document.createElement('p');
      p.className = 'error';
      p.textContent = e.message;
      out.replaceChildren(p);
    }
  }

  for (const b of document.querySelectorAll('#panel-denoise [data-figure]')) b.addEventListener('click', () => generate(b.dataset.figure));
}
