// The Denoise tab's Train panel: train a small DnCNN (or fine-tune a shipped one) on the sample
// photos and the user's own, in short worker calls (src/web/denoise.rs: dncnn_train_*), with the
// loss and a validation PSNR plotted as it goes; then use the model in the tab or save it.
import { lineChart } from './chart.js';
import { ChunkLoop } from './loop.js';
import { $, download, fetchBytes, setError } from './util.js';

/** Training calls aim at 0.3 s (loop.js's MAX_CALL_MS), so Pause answers quickly and the worker stays free. */
const TRAIN_CHUNK = { targetMs: 300, max: 50 };
/** Validate at most every this many seconds, and at most 20% of the time (it is a forward pass). */
const VALIDATE_EVERY_SECONDS = 2;

const fmtLoss = (v) => (v < 0.01 ? v.toExponential(2) : v.toFixed(4));

/** Mean loss over the first / last `k` steps of the recorded calls ({steps, loss} each). */
function lossOver(calls, k, fromEnd) {
  const seq = fromEnd ? [...calls].reverse() : calls;
  let n = 0;
  let sum = 0;
  for (const c of seq) {
    sum += c.loss * c.steps;
    n += c.steps;
    if (n >= k) break;
  }
  return n ? sum / n : NaN;
}

/**
 * `models`: the tab's model registry (shipped bytes for fine-tuning); `names`: the models' names
 * by key; `samples`: the sample photos every run trains on; `hooks.useTrained(info)` and
 * `hooks.dropTrained()` tell the tab about the trained model.
 */
export function setupTraining(call, { models, names, samples }, hooks) {
  const tr = {
    call,
    models,
    names,
    samples,
    hooks,
    el: {
      start: $('dn-train-start'), pause: $('dn-train-pause'), reset: $('dn-train-reset'), use: $('dn-train-use'),
      save: $('dn-train-save'), error: $('dn-train-error'), stats: $('dn-train-stats'), lossPlot: $('dn-loss-plot'),
      valPlot: $('dn-val-plot'), valCap: $('dn-val-cap'), files: $('dn-train-files'), list: $('dn-train-list'),
      depth: $('dn-depth'), width: $('dn-width'), channels: $('dn-channels'), mode: $('dn-noise-mode'),
      sigma: $('dn-train-sigma'), lo: $('dn-train-lo'), hi: $('dn-train-hi'), batch: $('dn-batch'), lr: $('dn-lr'),
      finetune: $('dn-finetune'), fixedWrap: $('dn-fixed-wrap'), rangeWrap: $('dn-range-wrap'),
    },
    samplesAdded: false,
    st: null, // the current run: {loop, info, calls, losses, vals, batch, ...}
    token: 0,
  };
  tr.fail = (e) => setError(tr.el.error, e);
  setupForm(tr);
  setupImages(tr);
  setupRunButtons(tr);
  draw(tr);
  buttons(tr);
}

// ---------------------------------------------------------------- the form and the images

function setupForm({ el }) {
  el.mode.addEventListener('change', () => {
    el.fixedWrap.hidden = el.mode.value !== 'fixed';
    el.rangeWrap.hidden = el.mode.value === 'fixed';
  });
  el.finetune.addEventListener('change', () => {
    // a fine-tuned model keeps the shipped model's shape
    el.depth.disabled = el.width.disabled = el.finetune.checked;
    if (el.finetune.checked && Number(el.lr.value) >= 1e-3) el.lr.value = '0.0001';
    if (!el.finetune.checked && Number(el.lr.value) < 1e-3) el.lr.value = '0.001';
  });
}

function showImages({ el }, r) {
  el.list.textContent = r.names.length ? `${r.names.length}: ${r.names.join(', ')}` : 'none';
}

async function addSamples(tr) {
  if (tr.samplesAdded) return;
  for (const name of tr.samples) {
    const b = await fetchBytes(`samples/${name}.png`, `sample ${name}`);
    showImages(tr, await tr.call('dncnn_train_add_image', b, name));
  }
  tr.samplesAdded = true;
}

function setupImages(tr) {
  const { el } = tr;
  el.files.addEventListener('change', async () => {
    const files = [...el.files.files];
    el.files.value = '';
    setError(el.error, null);
    try {
      await addSamples(tr);
    } catch (e) {
      tr.fail(e);
    }
    const bad = [];
    for (const f of files) {
      try {
        showImages(tr, await tr.call('dncnn_train_add_image', new Uint8Array(await f.arrayBuffer()), f.name));
      } catch (e) {
        bad.push(e.message);
      }
    }
    if (bad.length) setError(el.error, bad.join('\n'));
    if (tr.st) el.list.textContent += ' (new photos join at the next Reset + Start)';
  });
}

function options({ el, models, names }) {
  const channels = Number(el.channels.value);
  const fixed = el.mode.value === 'fixed';
  const lo = fixed ? Number(el.sigma.value) : Number(el.lo.value);
  const hi = fixed ? lo : Number(el.hi.value);
  if (!(lo >= 0 && hi >= lo && hi <= 255)) throw new Error(`the noise range must satisfy 0 <= low <= high <= 255 (got ${lo}..${hi})`);
  const opts = {
    channels,
    depth: Number(el.depth.value),
    width: Number(el.width.value),
    sigma_lo: lo,
    sigma_hi: hi,
    val_sigma: fixed ? lo : 25,
    batch: Number(el.batch.value),
    patch: 40,
    lr: Number(el.lr.value),
    seed: 1,
  };
  if (el.finetune.checked) {
    // the shipped model that matches: colour, else sigma=10 for fixed sigma 10, else blind gray
    const keys = channels === 3 ? ['color'] : fixed && lo === 10 ? ['s10', 'blind'] : ['blind', 's10'];
    const key = keys.find((k) => models.bytes[k]);
    if (!key) throw new Error(`cannot fine-tune: model not available (${keys.map((k) => names[k]).join(' / ')})`);
    opts.init = models.bytes[key];
    opts.init_name = names[key];
  }
  return opts;
}

// ---------------------------------------------------------------- status and plots

function draw({ el, st }) {
  lineChart(el.lossPlot, { series: [{ points: st ? st.losses : [], color: '#2f5fd0', width: 1.6, dots: st?.losses.length < 40 ? 2 : 0 }], x: { label: 'step' }, y: { log: true, label: 'loss (log)', fmt: (v) => v.toExponential(1) } });
  lineChart(el.valPlot, { series: [{ points: st ? st.vals : [], color: '#1f8a4c', width: 1.6, dots: st?.vals.length < 40 ? 2 : 0 }], x: { label: 'step' }, y: { label: 'PSNR (dB)', fmt: (v) => v.toFixed(1) } });
}

function stats({ el, st }) {
  if (!st) {
    el.stats.textContent = 'Not started.';
    return;
  }
  const last = st.calls[st.calls.length - 1];
  const v = st.vals[st.vals.length - 1];
  const i = st.info;
  const running = st.loop.running;
  const parts = [
    `DnCNN ${i.channels === 3 ? 'colour' : 'gray'} d${i.depth} w${i.width}${st.from ? ` (fine-tuning ${st.from})` : ''}`,
    `step ${st.step}`,
    last ? `loss ${fmtLoss(last.loss)}` : 'loss –',
    st.rate ? `${st.rate >= 10 ? st.rate.toFixed(0) : st.rate.toPrecision(2)} patches/s` : '',
    v ? `validation PSNR ${v[1].toFixed(2)} dB (noisy ${st.valNoisy.toFixed(2)} dB, σ=${st.info.val_sigma})` : '',
    running ? 'training…' : 'paused',
  ].filter(Boolean);
  el.stats.textContent = parts.join(' · ');
  const d = el.stats.dataset;
  d.step = String(st.step);
  d.running = String(running);
  if (st.calls.length) {
    d.lossStart = lossOver(st.calls, 5, false).toExponential(4);
    d.lossRecent = lossOver(st.calls, 5, true).toExponential(4);
  }
  if (v) d.valPsnr = v[1].toFixed(3);
}

function buttons({ el, st }) {
  el.start.disabled = Boolean(st);
  el.pause.disabled = !st;
  el.pause.textContent = st && !st.loop.running ? 'Resume' : 'Pause';
  el.reset.disabled = !st;
  el.use.disabled = !st || st.step === 0;
  el.save.disabled = !st || st.step === 0;
}

const refresh = (tr) => {
  stats(tr);
  draw(tr);
  buttons(tr);
};

// ---------------------------------------------------------------- the run

async function validate(tr) {
  const t0 = performance.now();
  const v = await tr.call('dncnn_train_validate');
  const { st } = tr;
  if (st) st.valCost = performance.now() - t0;
  if (!st || v.step !== st.step) return;
  st.valNoisy = v.psnr_noisy;
  if (!st.vals.length || st.vals[st.vals.length - 1][0] !== v.step) st.vals.push([v.step, v.psnr]);
  st.lastVal = performance.now();
}

/** Train `run` until it is paused or replaced (Reset); validate every few seconds. */
async function trainRun(tr, run) {
  try {
    await run.loop.run({
      step: async (n) => {
        const t0 = performance.now();
        const r = await tr.call('dncnn_train_steps', n);
        run.rate = (n * run.batch) / ((performance.now() - t0) / 1000);
        return r;
      },
      after: async (r, n) => {
        if (run !== tr.st) return false;
        run.step = r.step;
        run.calls.push({ steps: n, loss: r.loss });
        run.losses.push([r.step, r.loss]);
        const gap = Math.max(VALIDATE_EVERY_SECONDS * 1000, 4 * run.valCost);
        if (run.vals.length === 0 || performance.now() - run.lastVal > gap) await validate(tr);
        if (run !== tr.st) return false;
        refresh(tr);
      },
    });
    if (run === tr.st && run.step > 0) await validate(tr);
  } catch (e) {
    if (run !== tr.st) return;
    tr.fail(e);
  }
  if (run === tr.st) refresh(tr);
}

async function startRun(tr) {
  const { el, call } = tr;
  setError(el.error, null);
  el.start.disabled = true;
  const my = ++tr.token;
  try {
    const opts = options(tr);
    el.stats.textContent = 'Loading the training images…';
    await addSamples(tr);
    const info = await call('dncnn_train_init', opts);
    if (my !== tr.token) return;
    const loop = new ChunkLoop(TRAIN_CHUNK);
    tr.st = { loop, info, from: opts.init_name, step: 0, calls: [], losses: [], vals: [], batch: opts.batch, lastVal: 0, valCost: 0, valNoisy: NaN, rate: 0 };
    // a fine-tuned model has the shipped model's shape: show it in the selectors
    for (const [sel, v] of [[el.depth, info.depth], [el.width, info.width], [el.channels, info.channels]]) {
      if (![...sel.options].some((o) => o.value === String(v))) sel.add(new Option(String(v), String(v)));
      sel.value = String(v);
    }
    el.valCap.textContent = `validation PSNR (dB) on 4 fixed 64×64 crops at σ=${info.val_sigma}`;
    el.stats.textContent = `DnCNN ${info.channels === 3 ? 'colour' : 'gray'}, depth ${info.depth}, width ${info.width} (${info.parameters} parameters)${opts.init ? `, fine-tuning the ${opts.init_name} model` : ''}, on ${info.images} images…`;
    loop.arm();
    buttons(tr);
    trainRun(tr, tr.st);
  } catch (e) {
    tr.fail(e);
    el.start.disabled = Boolean(tr.st);
  }
}

function setupRunButtons(tr) {
  const { el, call, hooks } = tr;
  el.start.addEventListener('click', () => startRun(tr));
  el.pause.addEventListener('click', () => {
    const { st } = tr;
    if (!st) return;
    if (st.loop.running) st.loop.pause();
    else {
      st.loop.arm();
      trainRun(tr, st);
    }
    buttons(tr);
    stats(tr);
  });
  el.reset.addEventListener('click', () => {
    tr.token++;
    tr.st?.loop.pause();
    tr.st = null;
    call('dncnn_train_reset').catch(() => {});
    hooks.dropTrained();
    setError(el.error, null);
    refresh(tr);
  });
  el.use.addEventListener('click', () => {
    if (tr.st) hooks.useTrained({ ...tr.st.info, step: tr.st.step });
  });
  el.save.addEventListener('click', async () => {
    const { st } = tr;
    if (!st) return;
    try {
      const bytes = await call('dncnn_train_weights');
      const i = st.info;
      download(bytes, `dncnn_${i.channels === 3 ? 'color' : 'gray'}_d${i.depth}_w${i.width}_step${st.step}.safetensors`, 'application/octet-stream');
    } catch (e) {
      tr.fail(e);
    }
  });
}
