// Page thread: tabs, the status line and drawing. All computing happens in worker.js.
import { setupConvTab } from './conv.js';
import { setupDenoiseTab } from './denoise.js';
import { setupAdversarialTab } from './adversarial.js';
import { setupAutoencodersTab } from './autoencoders.js';
import { setupGanTab } from './gan.js';

// ---------------------------------------------------------------- worker client

// the worker sees the page's `binding-limit-mb` and `backend` (see worker.js) in its own URL
const workerUrl = new URL('./worker.js', import.meta.url);
const pageParams = new URLSearchParams(location.search);
for (const key of ['binding-limit-mb', 'backend']) {
  const value = pageParams.get(key);
  if (value !== null) workerUrl.searchParams.set(key, value);
}
const worker = new Worker(workerUrl, { type: 'module' });
const pending = new Map();
let nextId = 1;
let onStatus = () => {};

worker.onmessage = (ev) => {
  const msg = ev.data;
  if (msg.type === 'status') {
    onStatus(msg);
    return;
  }
  const p = pending.get(msg.id);
  if (!p) return;
  pending.delete(msg.id);
  if (msg.ok) p.resolve(msg.result);
  else p.reject(new Error(msg.error));
};
worker.onerror = (ev) => {
  const text = `the compute worker failed: ${ev.message || 'could not load worker.js or the wasm module'}`;
  onStatus({ error: text });
  for (const p of pending.values()) p.reject(new Error(text));
  pending.clear();
};

/** Call a worker command; resolves with its result or rejects with an Error carrying its message. */
export function call(cmd, ...args) {
  return new Promise((resolve, reject) => {
    const id = nextId++;
    pending.set(id, { resolve, reject });
    worker.postMessage({ id, cmd, args });
  });
}

// ---------------------------------------------------------------- status line

const statusEl = document.getElementById('status');
const statusText = document.getElementById('status-text');

function showStatus({ info, error }) {
  statusEl.classList.remove('status-pending', 'status-gpu', 'status-fallback', 'status-cpu', 'status-error');
  if (error) {
    statusEl.classList.add('status-error');
    statusText.textContent = error;
    return;
  }
  let switchTo = null; // the other backend, offered as a link where it may serve better
  if (info.kind === 'gpu') {
    const name = info.adapter;
    if (info.fallback) {
      statusEl.classList.add('status-fallback');
      statusText.textContent = `Backend: WebGPU on ${name}, a software fallback adapter (it runs on the CPU, so it is slow)`;
      switchTo = ['cpu', 'Use the CPU backend'];
    } else {
      statusEl.classList.add('status-gpu');
      statusText.textContent = `Backend: WebGPU on ${name}`;
    }
  } else {
    // amber, not red, when the CPU was chosen as the faster of the two
    statusEl.classList.add(info.passed_over_fallback ? 'status-fallback' : 'status-cpu');
    statusText.textContent = `Backend: CPU (wasm). WebGPU is not used: ${info.gpu_error || 'no adapter'}`;
    if (info.passed_over_fallback) switchTo = ['webgpu', 'Use WebGPU anyway'];
  }
  for (const note of [info.binding_note, info.backend_note]) if (note) statusText.textContent += ` (${note})`;
  if (switchTo) {
    const url = new URL(location.href);
    url.searchParams.set('backend', switchTo[0]);
    const a = document.createElement('a');
    a.id = 'status-switch';
    a.href = url.href;
    a.textContent = switchTo[1];
    statusText.append('. ', a);
  }
  statusEl.dataset.kind = info.kind;
  statusEl.dataset.fallback = String(info.fallback);
}
onStatus = showStatus;

// ---------------------------------------------------------------- tabs

const tabs = [...document.querySelectorAll('[role="tab"]')];

function selectTab(name, { focus = false } = {}) {
  for (const t of tabs) {
    const on = t.dataset.tab === name;
    t.setAttribute('aria-selected', String(on));
    t.tabIndex = on ? 0 : -1;
    document.getElementById(t.getAttribute('aria-controls')).hidden = !on;
    if (on && focus) t.focus();
  }
  if (location.hash !== `#${name}`) history.replaceState(null, '', `#${name}`);
}

for (const t of tabs) {
  t.addEventListener('click', () => selectTab(t.dataset.tab));
  t.addEventListener('keydown', (ev) => {
    const i = tabs.indexOf(t);
    const step = ev.key === 'ArrowRight' ? 1 : ev.key === 'ArrowLeft' ? -1 : 0;
    if (step) selectTab(tabs[(i + step + tabs.length) % tabs.length].dataset.tab, { focus: true });
  });
}
const initial = location.hash.slice(1);
selectTab(tabs.some((t) => t.dataset.tab === initial) ? initial : tabs[0].dataset.tab);

setupConvTab(call);
setupDenoiseTab(call);
setupAdversarialTab(call);
setupAutoencodersTab(call);
setupGanTab(call);
