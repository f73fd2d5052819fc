// Views a ConvNetJS user expects, in the Denoise and Adversarial tabs: a model's learned
// first-layer filters, and the feature maps of one layer for the picture on screen (for a digit
// and its adversarial version side by side). The worker computes them with the models' own
// forward code (src/web/filters.rs); this file builds the cards and draws. Kept cheap: a 64x64
// crop of the photo, one digit, a few maps, only on demand or after an attack.
import { setError } from './util.js';

const el = (tag, props = {}, ...children) => {
  const e = Object.assign(document.createElement(tag), props);
  e.append(...children);
  return e;
};

/** A `<label><span>text</span><select>` with `options` ([value, text]). */
function selectField(id, text, options, selected) {
  const select = el('select', { id });
  for (const [value, label] of options) select.append(el('option', { value: String(value), textContent: label, selected: value === selected }));
  return [el('label', {}, el('span', { textContent: text }), select), select];
}

function figure(caption, canvas) {
  return el('figure', { className: 'fv-fig' }, el('figcaption', { textContent: caption }), canvas);
}

// ---------------------------------------------------------------- drawing

/**
 * Draw `m` ({count, channels, height, width, data}) as a grid of `cols` cells, each pixel a
 * `scale`-pixel square, `gap` pixels apart. `value(k, c, i)` gives a byte (0..255) for map k,
 * channel c, pixel i; a map of 3 channels is drawn in colour, else in gray.
 */
function drawGrid(canvas, m, { cols, scale, value, gap = 1 }) {
  const rows = Math.ceil(m.count / cols);
  const cw = m.width * scale + gap;
  const ch = m.height * scale + gap;
  canvas.width = cols * cw + gap;
  canvas.height = rows * ch + gap;
  const img = new ImageData(canvas.width, canvas.height);
  img.data.fill(255); // white gaps
  const plane = m.height * m.width;
  for (let k = 0; k < m.count; k++) {
    const x0 = (k % cols) * cw + gap;
    const y0 = Math.floor(k / cols) * ch + gap;
    for (let i = 0; i < plane; i++) {
      const rgb = m.channels === 3 ? [0, 1, 2].map((c) => value(k, c, i)) : Array(3).fill(value(k, 0, i));
      const px = x0 + (i % m.width) * scale;
      const py = y0 + Math.floor(i / m.width) * scale;
      for (let dy = 0; dy < scale; dy++) {
        for (let dx = 0; dx < scale; dx++) img.data.set(rgb, 4 * ((py + dy) * canvas.width + px + dx));
      }
    }
  }
  canvas.getContext('2d').putImageData(img, 0, 0);
  canvas.dataset.drawn = String(m.count);
}

/** Filters: each one scaled by its own largest |weight| (gray 128 = 0, white = positive). */
function drawFilters(canvas, m, cols) {
  const size = m.channels * m.height * m.width;
  const peak = [];
  for (let k = 0; k < m.count; k++) {
    let p = 0;
    for (let j = 0; j < size; j++) p = Math.max(p, Math.abs(m.data[k * size + j]));
    peak.push(p || 1);
  }
  const plane = m.height * m.width;
  drawGrid(canvas, m, { cols, scale: 6, gap: 4, value: (k, c, i) => 128 + (127 * m.data[k * size + c * plane + i]) / peak[k] });
}

/**
 * Feature maps (after a ReLU, so >= 0): map k scaled by `peaks[k]` (its largest value, or a
 * shared one), black = 0. Returns nothing; a map that is all zero stays black.
 */
function drawMaps(canvas, m, { cols, scale, peaks }) {
  const plane = m.height * m.width;
  drawGrid(canvas, m, { cols, scale, value: (k, _c, i) => (255 * m.data[k * plane + i]) / (peaks[k] || 1) });
}

/** The largest value of each map of `m` (over several answers for the same layer: a shared scale). */
function mapPeaks(...ms) {
  const m0 = ms[0];
  const plane = m0.height * m0.width;
  const peaks = new Array(m0.count).fill(0);
  for (const m of ms) {
    for (let k = 0; k < m.count; k++) {
      for (let i = 0; i < plane; i++) peaks[k] = Math.max(peaks[k], m.data[k * plane + i]);
    }
  }
  return peaks;
}

/** Fraction of units that are zero (ReLU off) in `m`. */
function zeroShare(m) {
  let z = 0;
  for (const v of m.data) if (v === 0) z++;
  return z / m.data.length;
}

// ---------------------------------------------------------------- Denoise tab

/** Side of the crop whose feature maps are shown. */
const CROP = 64;

/**
 * The Denoise tab's card "Inside the network", placed after `after`. `current()` resolves to
 * what is on screen: `{key, info, picture}` (the model that denoises the open photo, its info
 * from the worker, the input picture as ImageData), or null; `inputCanvas` (the input pane) takes a click
 * to move the crop.
 */
export function setupDenoiseViews(call, { after, current, inputCanvas }) {
  const [layerLabel, layerSel] = selectField('dn-fv-layer', 'layer', [[0, 'layer 1']], 0);
  const [countLabel, countSel] = selectField('dn-fv-count', 'maps', [[16, '16'], [32, '32'], [64, '64']], 16);
  const show = el('button', { id: 'dn-fv-show', type: 'button', className: 'secondary', textContent: 'Show' });
  const status = el('p', { id: 'dn-fv-status', className: 'hint', textContent: 'Open a photo, then press Show.' });
  const error = el('p', { id: 'dn-fv-error', className: 'error', hidden: true });
  const filters = el('canvas', { id: 'dn-fv-filters', className: 'fv-canvas' });
  const crop = el('canvas', { id: 'dn-fv-crop', className: 'fv-canvas fv-crop' });
  const maps = el('canvas', { id: 'dn-fv-maps', className: 'fv-canvas' });
  const card = el(
    'div',
    { className: 'card fv-card', id: 'dn-views' },
    el('h3', { textContent: 'Inside the network' }),
    el('p', {
      className: 'hint',
      textContent: `The first layer's learned 3×3 filters (gray = 0, white positive, black negative), and the feature maps after one layer's ReLU for a ${CROP}×${CROP} crop of the input picture (each map scaled to its own peak; black = 0). Click the input picture to move the crop.`,
    }),
    el('div', { className: 'fv-controls' }, layerLabel, countLabel, show),
    status,
    error,
    el('div', { className: 'fv-row' }, figure('first-layer filters', filters), figure('crop', crop), figure('feature maps', maps)),
  );
  after.after(card);

  let centre = null; // crop centre in picture pixels (null: the middle)
  let shown = false;
  let token = 0;

  /** Planar floats in [0, 1] of the crop, with the model's channels (gray: luma). */
  function cropPlanes(picture, channels) {
    const w = Math.min(CROP, picture.width);
    const h = Math.min(CROP, picture.height);
    const cx = centre ? centre[0] : picture.width / 2;
    const cy = centre ? centre[1] : picture.height / 2;
    const x0 = Math.max(0, Math.min(picture.width - w, Math.round(cx - w / 2)));
    const y0 = Math.max(0, Math.min(picture.height - h, Math.round(cy - h / 2)));
    const out = new Float32Array(channels * w * h);
    const view = new ImageData(w, h);
    for (let y = 0; y < h; y++) {
      for (let x = 0; x < w; x++) {
        const s = 4 * ((y0 + y) * picture.width + x0 + x);
        const [r, g, b] = picture.data.subarray(s, s + 3);
        const i = y * w + x;
        if (channels === 3) {
          out[i] = r / 255;
          out[w * h + i] = g / 255;
          out[2 * w * h + i] = b / 255;
        } else {
          out[i] = (0.299 * r + 0.587 * g + 0.114 * b) / 255;
        }
        view.data.set([r, g, b, 255], 4 * i);
      }
    }
    return { planes: out, w, h, view };
  }

  async function update() {
    const my = ++token;
    setError(error, null);
    const now = await current().catch(() => null);
    if (my !== token) return;
    if (!now) {
      status.textContent = 'Open a photo first.';
      return;
    }
    const { key, info, picture } = now;
    const depth = info.depth;
    if (layerSel.options.length !== depth - 1) {
      const keep = Math.min(Number(layerSel.value), depth - 2);
      layerSel.replaceChildren(...Array.from({ length: depth - 1 }, (_, k) => el('option', { value: String(k), textContent: `layer ${k + 1}${k === 0 ? ' (first)' : ''}`, selected: k === keep })));
    }
    const layer = Number(layerSel.value);
    const count = Math.min(Number(countSel.value), info.width);
    status.textContent = 'Computing…';
    try {
      const f = await call('dncnn_first_filters', key);
      if (my !== token) return;
      drawFilters(filters, f, 8);
      const c = cropPlanes(picture, info.channels);
      crop.width = c.w;
      crop.height = c.h;
      crop.getContext('2d').putImageData(c.view, 0, 0);
      const m = await call('dncnn_activations', key, c.planes, c.h, c.w, layer, count);
      if (my !== token) return;
      drawMaps(maps, m, { cols: 8, scale: 1, peaks: mapPeaks(m) });
      status.textContent = `${f.count} filters of ${f.channels === 3 ? 'colour ' : ''}${f.height}×${f.width} pixels; ${m.count} of the ${info.width} maps after layer ${layer + 1} of ${depth} (${Math.round(100 * zeroShare(m))}% of the values are 0: ReLU off).`;
      card.dataset.done = 'true';
    } catch (e) {
      if (my !== token) return;
      status.textContent = '';
      setError(error, e);
    }
  }

  show.addEventListener('click', () => {
    shown = true;
    update();
  });
  for (const s of [layerSel, countSel]) s.addEventListener('change', () => shown && update());
  inputCanvas.addEventListener('click', (ev) => {
    const r = inputCanvas.getBoundingClientRect();
    if (!r.width || !r.height) return;
    centre = [((ev.clientX - r.left) / r.width) * inputCanvas.width, ((ev.clientY - r.top) / r.height) * inputCanvas.height];
    if (shown) update();
  });
  return {
    /** A new photo: the crop goes back to its middle. */
    newPhoto() {
      centre = null;
    },
    /** Redraw for the picture and model now on screen, if the views were asked for. */
    refresh() {
      if (shown) update();
    },
  };
}

// ---------------------------------------------------------------- Adversarial tab

const ADV_LAYERS = [
  [0, 'conv1 (28×28 maps)'],
  [1, 'conv2 (14×14 maps)'],
  [2, 'conv3 (7×7 maps)'],
  [3, 'fc1 (hidden units)'],
];
const ADV_SCALE = [2, 3, 6, 10];

/**
 * The Adversarial tab's card "Inside the classifier", placed after `after`: conv1's filters of
 * the model attacked, and one layer's outputs for the digit and its adversarial version (the
 * same scale per map, so what the attack changes shows). The attack view sends an
 * `adv-attacked` event ({which, pixels, adversarial}) on `panel` after each attack.
 */
export function setupAdversarialViews(call, { panel, after }) {
  const [layerLabel, layerSel] = selectField('adv-fv-layer', 'layer', ADV_LAYERS, 0);
  const status = el('p', { id: 'adv-fv-status', className: 'hint', textContent: 'Pick a digit: its feature maps appear here.' });
  const error = el('p', { id: 'adv-fv-error', className: 'error', hidden: true });
  const filters = el('canvas', { id: 'adv-fv-filters', className: 'fv-canvas' });
  const clean = el('canvas', { id: 'adv-fv-clean', className: 'fv-canvas' });
  const adv = el('canvas', { id: 'adv-fv-adv', className: 'fv-canvas' });
  const card = el(
    'div',
    { className: 'card fv-card', id: 'adv-views' },
    el('h3', { textContent: 'Inside the classifier' }),
    el('p', {
      className: 'hint',
      textContent: 'The first conv layer\'s learned 3×3 filters (gray = 0, white positive, black negative), and one layer\'s outputs after its ReLU for the digit and for its adversarial version (each map on one scale for both; black = 0).',
    }),
    el('div', { className: 'fv-controls' }, layerLabel),
    status,
    error,
    el('div', { className: 'fv-row' }, figure('conv1 filters', filters)),
    // the two side by side at any width (they shrink rather than wrap): the lecture's comparison
    el('div', { className: 'fv-pair' }, figure('outputs for x', clean), figure('outputs for x̃ (adversarial)', adv)),
  );
  after.after(card);

  let last = null; // the latest attack's {which, pixels, adversarial}
  let inFlight = false;
  let again = false;
  let filtersOf = null; // the model whose filters are drawn

  async function update() {
    if (inFlight) {
      again = true;
      return;
    }
    inFlight = true;
    again = false;
    const { which, pixels, adversarial } = last;
    const layer = Number(layerSel.value);
    setError(error, null);
    try {
      // the in-tab model changes as it trains: its filters are read every time
      if (filtersOf !== which || which === 'trained') {
        drawFilters(filters, await call('adv_first_filters', which), 8);
        filtersOf = which;
      }
      const a = await call('adv_activations', which, pixels, layer);
      const b = await call('adv_activations', which, adversarial, layer);
      // fc1's units are single numbers: one scale for all of them, so their sizes compare
      const peaks = layer === 3 ? Array(a.count).fill(Math.max(...mapPeaks(a, b))) : mapPeaks(a, b);
      const cols = layer === 3 ? 16 : 8;
      drawMaps(clean, a, { cols, scale: ADV_SCALE[layer], peaks });
      drawMaps(adv, b, { cols, scale: ADV_SCALE[layer], peaks });
      let moved = 0;
      let total = 0;
      for (let i = 0; i < a.data.length; i++) {
        moved += Math.abs(a.data[i] - b.data[i]);
        total += Math.abs(a.data[i]);
      }
      status.textContent = `${ADV_LAYERS[layer][1]}: ${a.count} ${layer === 3 ? 'units' : 'maps'}; the attack changes them by ${total ? Math.round((100 * moved) / total) : 0}% (sum of |x̃ − x| over sum of |x| outputs).`;
      // done only when what is drawn is what is asked for: a change that came in while this
      // call ran is drawn next
      card.dataset.layer = String(layer);
      if (!again) card.dataset.done = 'true';
    } catch (e) {
      status.textContent = '';
      setError(error, e);
    }
    inFlight = false;
    if (again) update();
  }

  panel.addEventListener('adv-attacked', (ev) => {
    last = ev.detail;
    update();
  });
  layerSel.addEventListener('change', () => last && update());
}
