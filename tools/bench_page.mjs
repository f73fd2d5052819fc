#!/usr/bin/env node
// The page's own speed in headless Chromium (www/bench.html on the CPU backend, or the
// backends --backend lists), and with
// --peer DIR TensorFlow.js's wasm backend right after it (DIR is a copy of
// ../shared/peer/tfjs with `npm ci` done), then the ratios from this one run.
// With --page, the Denoise tab itself on the CPU backend (the shipped blind gray model, no
// noise added): Set12's 01.png (256x256) on 1 worker and on one per core, and a generated
// colour (--gray: gray) photo of --mp megapixels (4:3) on one worker per core.
//
//   node tools/bench_page.mjs [--simd plain] [--runs 5] [--rows gemm,dncnn,dcgan] [--peer /tmp/tfjs]
//   node tools/bench_page.mjs --backend webgpu,cpu --rows kernels,dncnn,dcgan [--size small]
//     (WebGPU too: SwiftShader in headless Chromium here)
//   node tools/bench_page.mjs --page [--mp 12] [--gray] [--rows '']
//
// Needs www/pkg (./build.sh build) and Debian's Chromium. Not part of the tests: timings only.
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import os from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';
import { startServer } from './serve.mjs';
import { rgbaPng } from '../tests/e2e/png.mjs';

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..');
const argv = process.argv.slice(2);
const opt = (name, dflt) => {
  const i = argv.indexOf(`--${name}`);
  return i >= 0 && i + 1 < argv.length ? argv[i + 1] : dflt;
};
const CHROMIUM = process.env.NNLAB_CHROMIUM || '/usr/bin/chromium';
const PEER = opt('peer', null);
const say = (s) => process.stdout.write(`${s}\n`);

function cpuModel() {
  try {
    return execFileSync('lscpu', { encoding: 'utf8' }).match(/Model name:\s*(.*)/)[1].trim();
  } catch {
    return os.cpus()[0]?.model || 'unknown';
  }
}

async function nnlabRun() {
  const server = await startServer(join(ROOT, 'www'));
  const backends = opt('backend', 'cpu');
  const webgpu = backends.split(',').some((b) => b !== 'cpu') ? ['--enable-unsafe-webgpu'] : [];
  const browser = await chromium.launch({ executablePath: CHROMIUM, headless: true, args: ['--no-sandbox', '--disable-background-timer-throttling', ...webgpu] });
  try {
    const page = await browser.newPage();
    const q = new URLSearchParams({ backend: backends, runs: opt('runs', '5'), rows: opt('rows', 'gemm,dncnn,dcgan') });
    if (opt('size', null)) q.set('size', opt('size', null));
    if (opt('simd', null)) q.set('simd', opt('simd', null));
    const load0 = os.loadavg()[0];
    await page.goto(`${server.url}bench.html?${q}`);
    await page.waitForSelector('body[data-status="done"], body[data-status="error"]', { state: 'attached', timeout: 1_800_000 });
    const all = JSON.parse(await page.textContent('#result'));
    // bench.html keeps one entry per backend; the peer comparison takes the CPU backend's
    const one = all.backends?.find((b) => b.asked === 'cpu') ?? all.backends?.[0] ?? {};
    const r = { rows: one.rows ?? {}, info: one.info, error: all.error ?? all.backends?.find((b) => b.error)?.error, all: all.backends ?? [] };
    r.browser = browser.version();
    r.loadavg_1m = [load0, os.loadavg()[0]].map((v) => Math.round(v * 100) / 100);
    return r;
  } finally {
    await browser.close();
    await server.close();
  }
}

/** The depth and width a shipped DnCNN file states in its safetensors metadata. */
function shippedShape(file) {
  const bytes = readFileSync(join(ROOT, 'www', 'models', file));
  const n = Number(bytes.readBigUInt64LE(0));
  const meta = JSON.parse(bytes.subarray(8, 8 + n).toString('utf8')).__metadata__ || {};
  const depth = Number(meta.depth);
  const width = Number(meta.width);
  if (!(depth >= 2 && width >= 1)) throw new Error(`${file}: no depth/width in its metadata`);
  return { depth, width };
}

/** The shipped blind DnCNN's file for c channels: gray (c = 1) or colour (c = 3). */
const blindFile = (c) => (c === 1 ? 'dncnn_blind_gray.safetensors' : 'dncnn_blind_color.safetensors');

/** FLOPs per pixel of the shipped blind DnCNN of c channels: first and last conv c <-> width,
 * depth - 2 convs width -> width, all 3x3 (the direct conv's count). */
function shippedFlopsPerPixel(c) {
  const { depth, width } = shippedShape(blindFile(c));
  return 2 * 9 * (c * width + (depth - 2) * width * width + width * c);
}

/** Denoise `bytes` in the Denoise tab (?backend=cpu&workers=N); the page's own time and text. */
async function pageRun(browser, url, name, bytes, workers) {
  const page = await browser.newPage();
  try {
    const q = new URLSearchParams({ backend: 'cpu' });
    if (workers) q.set('workers', String(workers));
    if (opt('simd', null)) q.set('simd', opt('simd', null));
    await page.goto(`${url}?${q}#denoise`);
    await page.waitForFunction(() => /blind gray ✓/.test(document.getElementById('dn-models').textContent), null, { timeout: 600_000 });
    await page.setChecked('#dn-noise', false);
    await page.setInputFiles('#dn-file', { name, mimeType: 'image/png', buffer: bytes });
    await page.waitForFunction(() => ['done', 'error'].includes(document.getElementById('dn-info').dataset.state), null, { timeout: 3_600_000 });
    const first = await page.textContent('#dn-info');
    // once more in the same tab: the time a user sees from the second photo on
    await page.evaluate(() => (document.getElementById('dn-info').dataset.state = 'again'));
    await page.click('#dn-run');
    await page.waitForFunction(() => ['done', 'error'].includes(document.getElementById('dn-info').dataset.state), null, { timeout: 3_600_000 });
    const text = await page.textContent('#dn-info');
    const secs = Number(text.match(/ in ([\d.]+) s/)?.[1]);
    if (!secs) throw new Error(`${name}: ${text} ${await page.textContent('#dn-error')}`);
    return { secs, text: `${text} (first run: ${first.match(/ in ([\d.]+ s)/)?.[1]})` };
  } finally {
    await page.close();
  }
}

async function pageBench() {
  const server = await startServer(join(ROOT, 'www'));
  const browser = await chromium.launch({ executablePath: CHROMIUM, headless: true, args: ['--no-sandbox', '--disable-background-timer-throttling'] });
  try {
    const data = process.env.NNLAB_DATA || join(ROOT, '..', 'shared', 'data');
    const set12 = readFileSync(join(data, 'denoise', 'Set12', '01.png'));
    const cores = (await browser.newPage().then(async (p) => { const n = await p.evaluate(() => navigator.hardwareConcurrency); await p.close(); return n; }));
    for (const workers of [1, null]) {
      const r = await pageRun(browser, server.url, '01.png', set12, workers);
      const gflops = (shippedFlopsPerPixel(1) * 256 * 256) / r.secs / 1e9;
      pageGflops[workers ? 'one' : 'all'] = gflops;
      say(`  Denoise tab, 256x256 gray, ${workers ? `workers=${workers}` : `default workers (hardwareConcurrency ${cores})`}: ${r.secs} s, ${gflops.toFixed(2)} GFLOP/s (${r.text.replace(/.* in /, 'in ')})`);
    }
    const mp = Number(opt('mp', '12'));
    if (mp > 0) {
      const w = Math.round(Math.sqrt((mp * 1e6 * 4) / 3));
      const h = Math.round((w * 3) / 4);
      // --gray: equal channels, so the page takes the blind gray model (its depth may differ)
      const gray = argv.includes('--gray');
      const photo = rgbaPng(w, h, (x, y) => {
        const v = (x * 3 + y) % 256;
        return gray ? [v, v, v, 255] : [v, (x + 2 * y) % 256, ((x ^ y) * 5) % 256, 255];
      });
      const r = await pageRun(browser, server.url, `photo-${w}x${h}.png`, photo, null);
      const { depth, width } = shippedShape(blindFile(gray ? 1 : 3));
      say(`  Denoise tab, ${w}x${h} ${gray ? 'gray' : 'colour'} (${((w * h) / 1e6).toFixed(1)} MP, model ${depth}x${width}), default workers: ${r.secs} s (${r.text.replace(/.* in /, 'in ')}); at that rate 12 MP takes ${((r.secs * 12e6) / (w * h)).toFixed(0)} s`);
    }
  } finally {
    await browser.close();
    await server.close();
  }
}

say(`CPU: ${cpuModel()}, ${os.cpus().length} cores; date ${new Date().toISOString()}; load avg ${os.loadavg().map((v) => v.toFixed(2)).join(' ')}`);
let nn = { rows: {} };
const pageGflops = {}; // the Denoise tab's GFLOP/s on 256x256: one worker, one per core
if (opt('rows', 'gemm,dncnn,dcgan')) {
  nn = await nnlabRun();
  if (nn.error) throw new Error(`bench.html: ${nn.error}`);
  for (const b of nn.all) {
    say(`nnlab page (Chromium ${nn.browser}, ${b.info.describe}, wasm build ${b.info.wasm}, load avg ${nn.loadavg_1m.join(' -> ')}):`);
    for (const [name, r] of Object.entries(b.rows)) say(`  ${name.padEnd(34)} ${r.shape.padEnd(32)} ${r.ms.toFixed(1).padStart(9)} ms${r.gflops ? `  ${r.gflops.toFixed(2).padStart(6)} GFLOP/s` : ''}`);
  }
}
if (argv.includes('--page')) {
  const { depth, width } = shippedShape(blindFile(1));
  say(`nnlab Denoise tab (CPU backend, blind gray model, depth ${depth} width ${width}):`);
  await pageBench();
}

if (PEER) {
  const out = join(os.tmpdir(), `tfjs-peer-${process.pid}.json`);
  const cases = [(nn.rows['dncnn 17x64 256x256 gray'] || pageGflops.one) && 'dncnn', nn.rows['dcgan step batch 64 (width 64)'] && 'dcgan'].filter(Boolean);
  say(`TF.js peer (${PEER}): wasm+shim+t2, cases ${cases.join(',')} ...`);
  execFileSync('node', ['run.mjs', '--backends', 'wasm+shim+t2', '--cases', cases.join(','), '--quiet', '--out', out], { cwd: PEER, stdio: 'inherit' });
  const peer = JSON.parse(readFileSync(out, 'utf8'));
  const run = (peer.runs || peer.results || []).find((r) => r.label === 'wasm+shim+t2') || (peer.runs || peer.results || [])[0];
  const dn = run?.cases?.dncnn;
  const dc = run?.cases?.dcgan;
  if (dn) {
    const ours = nn.rows['dncnn 17x64 256x256 gray'];
    if (ours) say(`DnCNN 17x64 256x256: TF.js wasm 2 threads ${dn.median_ms} ms (${dn.gflops} GFLOP/s), nnlab 1 worker ${ours.ms.toFixed(1)} ms (${ours.gflops.toFixed(2)} GFLOP/s): nnlab/TF.js per FLOP ${(dn.median_ms / ours.ms).toFixed(2)}x`);
    for (const [k, g] of Object.entries(pageGflops)) say(`Denoise tab 256x256 (${k === 'one' ? '1 worker' : 'one worker per core'}): ${g.toFixed(2)} GFLOP/s = ${(g / dn.gflops).toFixed(2)}x TF.js wasm 2 threads per FLOP`);
  }
  if (dc) {
    const ours = nn.rows['dcgan step batch 64 (width 64)'];
    say(`DCGAN step batch 64: TF.js wasm 2 threads + stand-in ${dc.median_ms} ms, nnlab 1 worker ${ours.ms.toFixed(1)} ms: nnlab ${(dc.median_ms / ours.ms).toFixed(2)}x faster`);
  }
}
