// Line plots on a canvas, for every tab: loss and accuracy curves while training, the
// Adversarial tab's robustness curve. One painter: axes with round ticks, series of [x, y]
// points (lines break at non-finite y), optional dots, cross marks and a legend.

const AXIS = '#8a93a3';
const GRID = '#e6e9ef';
const TEXT = '#5b6475';
const INK = '#1d2330';

/** About `count` round tick values covering [lo, hi] (1, 2 or 5 times a power of ten apart). */
export function niceTicks(lo, hi, count = 5) {
  if (!(hi > lo)) return [lo];
  const raw = (hi - lo) / count;
  const mag = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 5, 10].map((m) => m * mag).find((s) => s >= raw);
  const out = [];
  for (let v = Math.ceil(lo / step - 1e-9) * step; v <= hi + 1e-9 * step; v += step) out.push(Number(v.toPrecision(6)));
  return out;
}

/** Points [x, y] smoothed by a centred moving average of half-width `h` (non-finite y skipped). */
export function movingAverage(points, h) {
  return points.map(([x], i) => {
    const w = points.slice(Math.max(0, i - h), i + h + 1).map((p) => p[1]).filter(Number.isFinite);
    return [x, w.length ? w.reduce((a, b) => a + b, 0) / w.length : NaN];
  });
}

/** Points [x, y] smoothed by a trailing moving average over `w` points (non-finite y kept as gaps). */
export function trailingAverage(points, w) {
  const win = [];
  let sum = 0;
  return points.map(([x, y]) => {
    if (!Number.isFinite(y)) return [x, NaN];
    win.push(y);
    sum += y;
    if (win.length > w) sum -= win.shift();
    return [x, sum / win.length];
  });
}

/** Points [x, y] smoothed by an exponential moving average with weight `keep` on the past. */
export function expAverage(points, keep) {
  let ema = null;
  return points.map(([x, y]) => {
    ema = ema == null ? y : keep * ema + (1 - keep) * y;
    return [x, ema];
  });
}

/** The range [lo, hi] of the finite y of every series, padded by `pad` of its height. */
function autoRange(series, log, pad = 0.06) {
  const ys = series.flatMap((s) => s.points.map((p) => (log ? Math.log10(p[1]) : p[1]))).filter(Number.isFinite);
  if (!ys.length) return [0, 1];
  let lo = Math.min(...ys);
  let hi = Math.max(...ys);
  if (hi - lo < 1e-9) [lo, hi] = [lo - 0.5, hi + 0.5];
  const m = pad * (hi - lo);
  return [lo - m, hi + m];
}

/**
 * Draw a line plot on `canvas`.
 * - `series`: [{points: [[x, y]], color, width = 2, dots (radius), line = true, faint}]
 * - `x`, `y`: {min, max, ticks, label, fmt}; a missing min/max/ticks is taken from the data
 *   (x from 0); `y.log` plots log10(y) with ticks at the data's decades; `y.floor` keeps an
 *   automatic minimum at or above it.
 * - `marks`: [{x, y, text}] drawn as crosses; `legend`: [{text, color}] in `legendAt`
 *   ('top-right', 'top-left', 'bottom-right' or 'bottom-left'); `empty`: the text shown when
 *   no series has a point.
 */
export function lineChart(canvas, { series, x = {}, y = {}, marks = [], legend = [], legendAt = 'top-right', empty = 'no data yet' }) {
  const ctx = canvas.getContext('2d');
  const W = canvas.width;
  const H = canvas.height;
  const m = { l: 56, r: 14, t: 12, b: 38 };
  ctx.clearRect(0, 0, W, H);
  ctx.fillStyle = '#fff';
  ctx.fillRect(0, 0, W, H);
  ctx.font = '11px system-ui, sans-serif';
  const hasData = series.some((s) => s.points.some((p) => Number.isFinite(p[1])));
  if (!hasData && empty) {
    ctx.fillStyle = TEXT;
    ctx.textAlign = 'center';
    ctx.textBaseline = 'middle';
    ctx.fillText(empty, W / 2, H / 2);
    return;
  }
  const fy = y.log ? (v) => Math.log10(v) : (v) => v;
  const xs = series.flatMap((s) => s.points.map((p) => p[0]));
  const xmin = x.min ?? 0;
  const xmax = x.max ?? Math.max(xmin + 1, ...xs);
  let [ymin, ymax] = autoRange(series, y.log);
  if (y.floor != null && y.min == null) ymin = Math.max(fy(y.floor), ymin);
  if (y.min != null) ymin = fy(y.min);
  if (y.max != null) ymax = fy(y.max);
  const px = (v) => m.l + ((v - xmin) / (xmax - xmin || 1)) * (W - m.l - m.r);
  const py = (v) => H - m.b - ((v - ymin) / (ymax - ymin || 1)) * (H - m.t - m.b);
  const xticks = x.ticks ?? niceTicks(xmin, xmax);
  const yticks = y.ticks ? y.ticks.map(fy) : niceTicks(ymin, ymax, 4);
  const yfmt = y.fmt ?? (y.log ? (v) => v.toExponential(0) : (v) => String(v));
  drawAxes(ctx, { W, H, m, px, py, xticks, yticks, xfmt: x.fmt ?? String, yfmt: (t) => yfmt(y.log ? 10 ** t : t), xlabel: x.label ?? '', ylabel: y.label ?? '' });
  drawSeries(ctx, { W, H, m, px, py: (v) => py(fy(v)) }, series);
  drawMarks(ctx, marks.map((mk) => ({ ...mk, px: px(mk.x), py: py(fy(mk.y)) })));
  drawLegend(ctx, { W, H, m }, legend, legendAt);
}

function drawAxes(ctx, { W, H, m, px, py, xticks, yticks, xfmt, yfmt, xlabel, ylabel }) {
  ctx.strokeStyle = GRID;
  ctx.fillStyle = TEXT;
  ctx.lineWidth = 1;
  ctx.textAlign = 'center';
  ctx.textBaseline = 'top';
  for (const t of xticks) {
    ctx.beginPath();
    ctx.moveTo(px(t), m.t);
    ctx.lineTo(px(t), H - m.b);
    ctx.stroke();
    ctx.fillText(xfmt(t), px(t), H - m.b + 4);
  }
  ctx.textAlign = 'right';
  ctx.textBaseline = 'middle';
  for (const t of yticks) {
    ctx.beginPath();
    ctx.moveTo(m.l, py(t));
    ctx.lineTo(W - m.r, py(t));
    ctx.stroke();
    ctx.fillText(yfmt(t), m.l - 6, py(t));
  }
  ctx.textAlign = 'center';
  ctx.textBaseline = 'bottom';
  ctx.fillText(xlabel, (m.l + W - m.r) / 2, H - 2);
  ctx.save();
  ctx.translate(12, (m.t + H - m.b) / 2);
  ctx.rotate(-Math.PI / 2);
  ctx.textBaseline = 'middle';
  ctx.fillText(ylabel, 0, 0);
  ctx.restore();
  ctx.strokeStyle = AXIS;
  ctx.strokeRect(m.l, m.t, W - m.l - m.r, H - m.t - m.b);
}

function drawSeries(ctx, { W, H, m, px, py }, series) {
  ctx.save();
  ctx.beginPath();
  ctx.rect(m.l, m.t, W - m.l - m.r, H - m.t - m.b);
  ctx.clip();
  for (const s of series) {
    ctx.strokeStyle = s.color;
    ctx.fillStyle = s.color;
    ctx.globalAlpha = s.faint ? 0.45 : 1;
    ctx.lineWidth = s.width ?? 2;
    if (s.line !== false && s.points.length > 1) {
      ctx.beginPath();
      let on = false;
      for (const [x, y] of s.points) {
        if (!Number.isFinite(y)) {
          on = false;
          continue;
        }
        if (on) ctx.lineTo(px(x), py(y));
        else ctx.moveTo(px(x), py(y));
        on = true;
      }
      ctx.stroke();
    }
    if (s.dots) {
      for (const [x, y] of s.points.filter((p) => Number.isFinite(p[1]))) {
        ctx.beginPath();
        ctx.arc(px(x), py(y), s.dots, 0, 2 * Math.PI);
        ctx.fill();
      }
    }
  }
  ctx.globalAlpha = 1;
  ctx.restore();
}

function drawMarks(ctx, marks) {
  ctx.fillStyle = INK;
  ctx.strokeStyle = INK;
  ctx.textAlign = 'left';
  ctx.textBaseline = 'middle';
  ctx.lineWidth = 1.5;
  for (const { px: x, py: y, text } of marks) {
    ctx.beginPath();
    ctx.moveTo(x - 5, y - 5);
    ctx.lineTo(x + 5, y + 5);
    ctx.moveTo(x + 5, y - 5);
    ctx.lineTo(x - 5, y + 5);
    ctx.stroke();
    ctx.fillText(text, x + 8, y);
  }
}

/** The legend in a corner that the data leaves free. */
function drawLegend(ctx, { W, H, m }, legend, at) {
  let ly = at.startsWith('top') ? m.t + 10 : H - m.b - 10 - 16 * (legend.length - 1);
  const left = at.endsWith('left');
  ctx.textAlign = left ? 'left' : 'right';
  ctx.textBaseline = 'middle';
  for (const { text, color } of legend) {
    ctx.fillStyle = color;
    ctx.fillRect(left ? m.l + 8 : W - m.r - 14, ly - 2, 10, 4);
    ctx.fillStyle = INK;
    ctx.fillText(text, left ? m.l + 24 : W - m.r - 20, ly);
    ly += 16;
  }
}
