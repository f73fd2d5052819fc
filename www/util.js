// Small helpers the tab modules share.

export const $ = (id) => document.getElementById(id);

/** A fraction as a percentage with one decimal. */
export const pct = (p) => `${(100 * p).toFixed(1)}%`;

/** The bytes at a same-origin `url`; `what` names it in the error when it cannot be had. */
export async function fetchBytes(url, what) {
  let r;
  try {
    r = await fetch(url);
  } catch (e) {
    throw new Error(`${what}: cannot fetch ${url} (${e.message})`);
  }
  if (!r.ok) throw new Error(`${what} is not available: ${url} is missing on this server (HTTP ${r.status})`);
  return new Uint8Array(await r.arrayBuffer());
}

/** Offer `bytes` as a download called `name` (nothing leaves the tab: a blob URL). */
export function download(bytes, name, type = 'application/octet-stream') {
  const url = URL.createObjectURL(new Blob([bytes], { type }));
  const a = document.createElement('a');
  a.href = url;
  a.download = name;
  document.body.appendChild(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 10_000);
}

/**
 * Show an error in the tab's error box `el`: `e` is an Error, a message, or nothing (which
 * clears and hides the box).
 */
export function setError(el, e) {
  const text = e ? String(e.message ?? e) : '';
  el.textContent = text;
  el.hidden = !text;
}

/** Run `start` the first time `panel` is shown (now, if it is shown already). */
export function onFirstShown(panel, start) {
  if (!panel.hidden) {
    start();
    return;
  }
  const obs = new MutationObserver(() => {
    if (panel.hidden) return;
    obs.disconnect();
    start();
  });
  obs.observe(panel, { attributes: true, attributeFilter: ['hidden'] });
}

/** Replace `table`'s body with one row per entry of `rows` (each an array of cell texts). */
export function setTableRows(table, rows) {
  table.tBodies[0].replaceChildren(
    ...rows.map((cells) => {
      const tr = document.createElement('tr');
      for (const v of cells) {
        const td = document.createElement('td');
        td.textContent = v;
        tr.append(td);
      }
      return tr;
    }),
  );
}
