// Page thread: tabs, the status line and drawing. All computing happens in worker.js.
import { setupConvTab } from './conv.js';
import { setupDenoiseTab } from './denoise.js';
import { setupAdversarialTab } from './adversarial.js';
import { setupAutoencodersTab } from './autoencoders.js';
import { setupGanTab } from './gan.js';
import { setupSemiPanel } from './semi.js';
import { startWorker } from './workers.js';

// ---------------------------------------------------------------- worker client

// the tabs' compute worker; it sees the page's `binding-limit-mb`, `backend` and `simd` in its
// own URL (workers.js). The Denoise tab starts helpers of its own on the CPU backend.
const worker = startWorker();
/** Call a worker command; resolves with its result or rejects with an Error carrying its message. */
export const call = worker.call;
let onStatus = () => {};
worker.status.then((msg) => onStatus(msg));
worker.failed.then((error) => onStatus({ error }));

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
    const simd = info.wasm === 'relaxed' ? 'relaxed SIMD' : 'SIMD';
    statusText.textContent = `Backend: CPU (wasm, ${simd}). WebGPU is not used: ${info.gpu_error || 'no adapter'}`;
    if (info.passed_over_fallback) switchTo = ['webgpu', 'Use WebGPU anyway'];
  }
  if (info.f16_inference) statusText.textContent += ' (DnCNN in f16: the adapter has shader-f16; ?f16=0 for f32)';
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
setupSemiPanel(call);
setupAutoencodersTab(call);
setupGanTab(call);
