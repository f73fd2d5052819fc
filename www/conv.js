// The Conv-arithmetic tab: reads i, m, s, p, asks the worker for the lecture's parameters and
// grid layout (conv_arith_params) and for a run of both convolutions (conv_arith_run), and draws.
import { $, setError } from './util.js';

const SVG = 'http://www.w3.org/2000/svg';
const KIND_NAMES = ['input pixel', "inserted zero (i')", "padding (p')", "extra zero (a')"];
const LECTURE_EXAMPLE = { i: 6, m: 3, s: 2, p: 1 };

function svgEl(name, attrs, parent) {
  const el = document.createElementNS(SVG, name);
  for (const [k, v] of Object.entries(attrs)) el.setAttribute(k, String(v));
  if (parent) parent.appendChild(el);
  return el;
}

/** A compact number for a cell or a matrix entry. */
function fmt(v) {
  if (Number.isInteger(v)) return String(v);
  return Math.abs(v) >= 100 ? v.toFixed(0) : v.toFixed(2);
}

function readInputs() {
  const out = {};
  for (const k of ['i', 'm', 's', 'p']) {
    const raw = $(`in-${k}`).value.trim();
    if (!/^\d+$/.test(raw)) throw new Error(`${k} must be a whole number >= 0 (got "${raw}")`);
    out[k] = Number(raw);
  }
  return out;
}

function fillTable(prm) {
  for (const k of ['o', 'm_t', 's_t', 'p_t', 'i_t', 'a_t', 'stretched', 'o_t']) {
    $(`v-${k}`).textContent = prm ? String(prm[k]) : '–';
  }
  $('v-conv-size').textContent = prm ? `${prm.i}×${prm.i} → ${prm.o}×${prm.o}` : '–';
  $('v-convt-size').textContent = prm ? `${prm.o}×${prm.o} → ${prm.o_t}×${prm.o_t}` : '–';
  $('v-pytorch').textContent = prm
    ? `ConvTranspose2d(kernel_size=${prm.m}, stride=${prm.pytorch.stride}, padding=${prm.pytorch.padding}, output_padding=${prm.pytorch.output_padding})`
    : '–';
}

/**
 * Draw the zero-inserted, padded grid (side x side cells coloured by kind), the input pixels
 * labelled with the conv output values when a run gave them (else x1, x2, ...), and the m' x m'
 * kernel window at its first position.
 */
function drawGrid(prm, values) {
  const wrap = $('grid-wrap');
  wrap.replaceChildren();
  if (!prm) return;
  const n = prm.side;
  const cs = Math.max(6, Math.min(44, Math.floor(400 / n)));
  const size = n * cs;
  const svg = svgEl('svg', { viewBox: `0 0 ${size + 4} ${size + 4}`, width: size + 4, height: size + 4, role: 'img', id: 'conv-grid-svg' });
  svgEl('title', {}, svg).textContent =
    `${n}×${n} grid: ${prm.o}×${prm.o} input pixels with ${prm.i_t} zeros between them, padding ${prm.p_t}, ${prm.a_t} extra row/column`;
  const g = svgEl('g', { transform: 'translate(2 2)' }, svg);
  const labels = cs >= 22;
  for (let y = 0; y < n; y++) {
    for (let x = 0; x < n; x++) {
      const c = y * n + x;
      const kind = prm.kinds[c];
      const rect = svgEl('rect', { x: x * cs, y: y * cs, width: cs, height: cs, class: `cell k${kind}` }, g);
      svgEl('title', {}, rect).textContent = KIND_NAMES[kind];
      if (!labels) continue;
      const t = svgEl('text', { x: x * cs + cs / 2, y: y * cs + cs / 2 }, g);
      if (kind === 0) {
        const idx = prm.input_index[c];
        t.textContent = values ? fmt(values[c]) : `x${idx + 1}`;
      } else {
        t.textContent = '0';
        t.setAttribute('class', 'zero');
      }
      if (cs < 30 && t.textContent.length > 2) t.setAttribute('font-size', '8');
    }
  }
  if (prm.m_t <= n) {
    svgEl('rect', { x: 0, y: 0, width: prm.m_t * cs, height: prm.m_t * cs, class: 'kernel' }, g);
  }
  wrap.appendChild(svg);
}

function matrix(caption, size, values) {
  const fig = document.createElement('figure');
  const cap = document.createElement('figcaption');
  cap.textContent = caption;
  fig.appendChild(cap);
  const table = document.createElement('table');
  table.className = 'matrix';
  for (let y = 0; y < size; y++) {
    const tr = table.insertRow();
    for (let x = 0; x < size; x++) tr.insertCell().textContent = fmt(values[y * size + x]);
  }
  fig.appendChild(table);
  return fig;
}

function showRun(prm, r) {
  const { i, o, o_t } = prm;
  const conv = r.conv;
  const tr = r.transposed;
  const agree = conv.in_size === i && conv.out_size === o && tr.in_size === o && tr.out_size === o_t && tr.out_size === i;
  const res = $('conv-result');
  res.textContent =
    `conv: ${conv.in_size}x${conv.in_size} -> ${conv.out_size}x${conv.out_size}; ` +
    `transposed conv: ${tr.in_size}x${tr.in_size} -> ${tr.out_size}x${tr.out_size} ${agree ? '✓' : '✗'}`;
  res.className = `result ${agree ? 'ok' : 'bad'}`;
  res.dataset.convOut = String(conv.out_size);
  res.dataset.convtOut = String(tr.out_size);
  res.dataset.agree = String(agree);
  const same = r.max_abs_diff <= 1e-3 * (1 + Math.max(...Array.from(tr.values, Math.abs)));
  $('conv-check').textContent =
    `Ran on ${r.backend}. Input: 0, 1, 2, … (arange), kernels of ones. ` +
    `The lecture's construction (a stride-1 conv with the flipped kernel over the grid above) ` +
    `${same ? 'equals' : 'DIFFERS FROM'} ConvTranspose2d: max |difference| = ${r.max_abs_diff === 0 ? '0' : r.max_abs_diff.toExponential(1)}.`;
  if (!agree) {
    $('conv-check').textContent =
      `Sizes disagree: the formulas give o = ${o} and o' = ${o_t}, the backend gave ${conv.out_size} and ` +
      `${tr.out_size}, and the input was i = ${i}. ` + $('conv-check').textContent;
  }
  const vals = $('conv-values');
  vals.replaceChildren();
  if (i <= 12) {
    vals.appendChild(matrix(`input ${i}×${i}`, i, Array.from({ length: i * i }, (_, k) => k)));
    vals.appendChild(matrix(`conv output ${o}×${o}`, o, conv.values));
    vals.appendChild(matrix(`transposed conv output ${tr.out_size}×${tr.out_size}`, tr.out_size, tr.values));
  }
}

function showRunError(e) {
  const res = $('conv-result');
  res.textContent = `Could not run the convolutions on the backend: ${e.message}`;
  res.className = 'result bad';
  res.dataset.agree = 'false';
  $('conv-check').textContent = '';
  $('conv-values').replaceChildren();
}

const showError = (e) => setError($('conv-error'), e);

/** Nothing computed for the inputs on screen: no result from earlier inputs stays under an error. */
function clearResult() {
  const res = $('conv-result');
  res.textContent = 'Not run: see the error above.';
  res.className = 'result';
  $('conv-check').textContent = '';
  $('conv-values').replaceChildren();
  fillTable(null);
  drawGrid(null);
}

export function setupConvTab(call) {
  let generation = 0; // a newer request makes older answers stale
  let timer = null;

  async function update() {
    clearTimeout(timer); // an explicit run supersedes a pending typed one
    const gen = ++generation;
    // the previous answer is stale from now on (tests wait on data-agree)
    const res = $('conv-result');
    delete res.dataset.agree;
    let args;
    try {
      args = readInputs();
    } catch (e) {
      showError(e);
      clearResult();
      return;
    }
    const { i, m, s, p } = args;
    let prm;
    try {
      prm = await call('conv_arith_params', i, m, s, p);
    } catch (e) {
      if (gen !== generation) return;
      showError(e);
      clearResult();
      return;
    }
    if (gen !== generation) return;
    showError('');
    fillTable(prm);
    drawGrid(prm, null);
    res.textContent = 'Running both convolutions on the backend…';
    res.className = 'result';
    try {
      const r = await call('conv_arith_run', i, m, s, p);
      if (gen !== generation) return;
      showRun(prm, r);
      drawGrid(prm, r.grid.values);
    } catch (e) {
      if (gen !== generation) return;
      showRunError(e);
    }
  }

  $('conv-form').addEventListener('submit', (ev) => {
    ev.preventDefault();
    update();
  });
  $('conv-form').addEventListener('input', () => {
    clearTimeout(timer);
    timer = setTimeout(update, 300);
  });
  $('conv-example').addEventListener('click', () => {
    for (const [k, v] of Object.entries(LECTURE_EXAMPLE)) $(`in-${k}`).value = String(v);
    update();
  });
  update();
}
