// The class histogram of generated digits (the shipped classifier's label of each sample): one
// bar per digit class, the share in percent above it, a dashed line at the balanced 10%, and
// bars outside issue 20's 6-14% band drawn in the warning colour, so mode collapse shows.

const BAND = [6, 14];

/** Draw `counts` (10 numbers) on `canvas`; with no counts, a note says what will appear. */
export function drawClassHistogram(canvas, counts) {
  const ctx = canvas.getContext('2d');
  const { width: w, height: h } = canvas;
  const css = getComputedStyle(canvas);
  const ink = css.color || '#222';
  ctx.clearRect(0, 0, w, h);
  ctx.font = '11px sans-serif';
  ctx.fillStyle = ink;
  const total = counts ? counts.reduce((a, b) => a + b, 0) : 0;
  if (!total) {
    ctx.textAlign = 'center';
    ctx.fillText('classes of scored samples appear here', w / 2, h / 2);
    canvas.dataset.total = '0';
    return;
  }
  const [left, right, top, bottom] = [8, 8, 16, 18];
  const pct = [...counts].map((c) => (100 * c) / total);
  const top100 = Math.max(20, ...pct) * 1.1;
  const y = (p) => top + (h - top - bottom) * (1 - p / top100);
  const slot = (w - left - right) / counts.length;
  ctx.textAlign = 'center';
  pct.forEach((p, k) => {
    const x = left + k * slot;
    const outside = p < BAND[0] || p > BAND[1];
    ctx.fillStyle = outside ? '#e15759' : '#4e79a7';
    ctx.fillRect(x + 3, y(p), slot - 6, y(0) - y(p));
    ctx.fillStyle = ink;
    ctx.fillText(String(k), x + slot / 2, h - 4);
    ctx.fillText(p.toFixed(p < 10 ? 1 : 0), x + slot / 2, y(p) - 3);
  });
  ctx.strokeStyle = ink;
  ctx.setLineDash([4, 3]);
  ctx.beginPath();
  ctx.moveTo(left, y(10));
  ctx.lineTo(w - right, y(10));
  ctx.stroke();
  ctx.setLineDash([]);
  canvas.dataset.total = String(total);
  canvas.dataset.percent = pct.map((p) => p.toFixed(1)).join(',');
}
