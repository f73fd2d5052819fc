// End-to-end: www/bench.html, linked from the page's footer, runs the kernel table and the
// DnCNN / DCGAN rows on WebGPU (SwiftShader here) and on the CPU backend at small sizes, one run
// each; shows GFLOP/s, the adapter, the tuner's choices (or the placeholder), the fraction of an
// entered FP32 peak (a non-number is refused with a message); "Download JSON" gives the same
// results. No timing is asserted. A query it does not understand runs nothing and says why.
// Run: node --test tests/e2e/bench.test.mjs   (after ./build.sh build)
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { NO_WEBGPU, WEBGPU, openPage, suite } from './harness.mjs';

const S = suite();
const KERNEL_OPS = ['conv2d forward', 'conv2d backward-input', 'conv2d backward-weight', 'matmul', 'conv_transpose2d forward', 'matmul (x W^T)'];
const MODEL_ROWS = ['dncnn 17x64 32x32 gray', 'dcgan step batch 4 (width 64)'];

/** The rows of each backend's table: [{title, tuner, rows: [[cells]]}]. */
const tables = (page) =>
  page.$$eval('section.bench-backend', (secs) =>
    secs.map((s) => ({
      title: s.querySelector('h2').textContent,
      tuner: s.querySelector('.bench-tuner')?.textContent ?? null,
      rows: [...s.querySelectorAll('tbody tr')].map((tr) => [...tr.cells].map((c) => c.textContent)),
    })),
  );

test('the footer links the bench page', async () => {
  const { page, foreign, problems } = await openPage(S, { args: NO_WEBGPU, query: 'backend=cpu' });
  await page.click('footer a[href="bench.html"]');
  await page.waitForURL(/bench\.html$/);
  assert.match(await page.textContent('h1'), /speed in this browser/);
  // stop its full-size run (no query): it is not this test's subject
  await page.close();
  assert.deepEqual(foreign, []);
  assert.deepEqual(problems, []);
});

test('bench.html on SwiftShader WebGPU and the CPU backend: table, peak fraction, JSON', async () => {
  const { page, foreign, problems } = await openPage(S, {
    args: WEBGPU,
    path: 'bench.html',
    query: 'backend=webgpu,cpu&size=small&runs=1',
    ready: 'body[data-status="done"], body[data-status="error"]',
    acceptDownloads: true,
  });
  assert.equal(await page.getAttribute('body', 'data-status'), 'done', await page.textContent('#backends'));
  const [gpu, cpu] = await tables(page);
  assert.match(gpu.title, /^WebGPU on .+software adapter/);
  assert.match(cpu.title, /^CPU backend/);
  // the tuner's choices where the wasm module has a tuner, else the placeholder
  assert.match(gpu.tuner, /^Tuner's choices: (\(one kernel per op\)|[[{])/);
  for (const t of [gpu, cpu]) {
    assert.deepEqual(t.rows.map((r) => r[0]), [...KERNEL_OPS, ...MODEL_ROWS], t.title);
    for (const r of t.rows) {
      assert.ok(Number(r[2]) > 0, `${t.title} ${r[0]}: ms ${r[2]}`);
      if (!r[0].startsWith('dcgan')) assert.ok(Number(r[3]) > 0, `${t.title} ${r[0]}: GFLOP/s ${r[3]}`);
      assert.equal(r[4], '–', 'no peak known for SwiftShader: no fraction yet');
    }
  }

  // a bad peak is refused with a message; a good one fills the GPU rows' fractions only
  await page.fill('#peak', 'fast');
  assert.match(await page.textContent('#peak-note'), /"fast" is not a positive number of TFLOP\/s/);
  await page.fill('#peak', '-3');
  assert.match(await page.textContent('#peak-note'), /not a positive number/);
  await page.fill('#peak', '0.5');
  assert.match(await page.textContent('#peak-note'), /0\.5 TFLOP\/s \(entered\)/);
  const [gpu2, cpu2] = await tables(page);
  for (const r of gpu2.rows) {
    if (!r[0].startsWith('dcgan')) {
      const pct = Number(r[4].replace(' %', ''));
      assert.ok(Math.abs(pct - Number(r[3]) / 5) <= 0.01 + 1e-3 * pct, `${r[0]}: ${r[4]} of 0.5 TFLOP/s at ${r[3]} GFLOP/s`);
    }
  }
  assert.ok(cpu2.rows.every((r) => r[4] === '–'), 'the adapter peak is not the CPU backend');

  // the JSON download holds the same rows (a Blob URL: nothing leaves the page)
  const [download] = await Promise.all([page.waitForEvent('download'), page.click('#download')]);
  assert.equal(download.suggestedFilename(), 'nnlab-bench.json');
  assert.match(download.url(), /^blob:/);
  const j = JSON.parse(readFileSync(await download.path(), 'utf8'));
  assert.equal(j.size, 'small');
  assert.deepEqual(j.fp32_peak_tflops, { tflops: 0.5, source: 'entered' });
  assert.deepEqual(j.backends.map((b) => [b.asked, b.info.kind, b.error]), [['webgpu', 'gpu', null], ['cpu', 'cpu', null]]);
  assert.ok(j.backends[0].info.fallback, 'SwiftShader is a software adapter');
  for (const b of j.backends) {
    assert.deepEqual(Object.keys(b.rows), [...KERNEL_OPS, ...MODEL_ROWS]);
    for (const op of KERNEL_OPS) {
      const r = b.rows[op];
      assert.ok(r.gflop > 0 && r.ms > 0 && r.gflops > 0 && r.runs.length === 1, `${b.asked} ${op}: ${JSON.stringify(r)}`);
      assert.equal(r.fraction_of_peak === null, b.asked === 'cpu');
    }
  }
  assert.deepEqual(foreign, []);
  assert.deepEqual(problems, []);
});

test('bench.html refuses a query it does not understand, and runs nothing', async () => {
  const { page, problems } = await openPage(S, {
    args: NO_WEBGPU,
    path: 'bench.html',
    query: 'backend=cpu,tpu&runs=many',
    ready: 'body[data-status="done"], body[data-status="error"]',
  });
  assert.equal(await page.getAttribute('body', 'data-status'), 'error');
  const text = await page.textContent('#backends');
  assert.match(text, /\?backend: tpu not understood/);
  assert.match(text, /\?runs must be a whole number from 1 to 100, got "many"/);
  assert.match(await page.textContent('#progress'), /nothing was run/);
  assert.deepEqual(problems, []);
});
