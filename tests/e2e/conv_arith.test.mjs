// End-to-end: a real headless Chromium (Debian's /usr/bin/chromium, driven by playwright-core)
// loads the served page, checks the status line names a WebGPU adapter, and uses the
// Conv-arithmetic tab for the lecture's example (6x6 input, 3x3 kernel, stride 2, padding 1).
// Run: node --test tests/e2e/   (after ./build.sh build; ./build.sh test does both).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { NO_WEBGPU, OUT, WEBGPU, openPage as open, suite } from './harness.mjs';

const S = suite();
const openPage = (args, query = '') => open(S, { args, query });

/** Wait until the status line leaves its "starting" state; returns its text. */
async function backendStatus(page) {
  await page.waitForSelector('#status:not(.status-pending)', { timeout: 120_000 });
  return page.textContent('#status-text');
}

async function enter(page, { i, m, s, p }) {
  for (const [k, v] of Object.entries({ i, m, s, p })) await page.fill(`#in-${k}`, String(v));
  await page.click('#conv-run');
}

/** Wait for the run to finish (ok or not) and return the result line. */
async function runResult(page) {
  await page.waitForSelector('#conv-result[data-agree]', { timeout: 120_000 });
  return (await page.textContent('#conv-result')).trim();
}

test('page: status names a WebGPU adapter; Conv-arithmetic tab runs the lecture example', async () => {
  const { page, foreign, problems } = await openPage(WEBGPU);

  const status = await backendStatus(page);
  console.log(`status line: ${status}`);
  assert.match(status, /^Backend: WebGPU on \S.*/, `the status line must name a WebGPU adapter, got: ${status}`);
  assert.equal(await page.getAttribute('#status', 'data-kind'), 'gpu');
  if ((await page.getAttribute('#status', 'data-fallback')) === 'true') {
    assert.match(status, /software fallback adapter/, 'a fallback adapter must be called so');
  }

  // every tab opens its own panel
  for (const tab of ['denoise', 'autoencoders', 'gan', 'adversarial']) {
    await page.click(`#tab-${tab}`);
    assert.equal(await page.isVisible(`#panel-${tab}`), true, `${tab} panel`);
  }

  await page.click('#tab-conv');
  assert.equal(await page.isVisible('#panel-conv'), true);
  await enter(page, { i: 6, m: 3, s: 2, p: 1 });
  const result = await runResult(page);
  console.log(`result line: ${result}`);

  const shown = {};
  for (const k of ['o', 'm_t', 's_t', 'p_t', 'i_t', 'a_t', 'stretched', 'o_t']) {
    shown[k] = Number(await page.textContent(`#v-${k}`));
  }
  assert.deepEqual(shown, { o: 3, m_t: 3, s_t: 1, p_t: 1, i_t: 1, a_t: 1, stretched: 5, o_t: 6 });
  assert.match(await page.textContent('#v-pytorch'), /stride=2, padding=1, output_padding=1/);

  assert.equal(result, 'conv: 6x6 -> 3x3; transposed conv: 3x3 -> 6x6 ✓');
  assert.equal(await page.getAttribute('#conv-result', 'data-agree'), 'true');
  assert.match(await page.textContent('#conv-check'), /Ran on WebGPU.*equals ConvTranspose2d/);

  // the grid: side S + 2p' + a' = 8; 9 input pixels, 16 inserted zeros, 24 padding, 15 a' cells
  const counts = await page.$$eval('#conv-grid-svg rect.cell', (cells) =>
    [0, 1, 2, 3].map((k) => cells.filter((c) => c.classList.contains(`k${k}`)).length),
  );
  assert.deepEqual(counts, [9, 16, 24, 15]);
  // first conv output: the window over rows/cols 0..1 of 0..35 with a kernel of ones: 0+1+6+7
  assert.equal((await page.textContent('#conv-values figure:nth-child(2) td')).trim(), '14');

  await page.screenshot({ path: join(OUT, 'conv-arith.png'), fullPage: true });

  // bad input gives a readable error, and the tab recovers
  await enter(page, { i: 6, m: 3, s: 2, p: 3 });
  await page.waitForSelector('#conv-error:not([hidden])');
  assert.match(await page.textContent('#conv-error'), /padding p=3 must be at most m-1=2/);
  // nothing from the previous inputs stays on screen under the error
  assert.equal(await page.getAttribute('#conv-result', 'class'), 'result', 'no green (or red) result under an error');
  assert.equal(await page.textContent('#conv-values'), '', 'no values of the previous run');
  await page.click('#conv-example');
  await page.waitForSelector('#conv-error', { state: 'hidden' });
  assert.equal(await runResult(page), 'conv: 6x6 -> 3x3; transposed conv: 3x3 -> 6x6 ✓');

  assert.deepEqual(problems, [], 'no errors in the page or the worker');
  assert.deepEqual(foreign, [], 'no request may leave 127.0.0.1');
});

test('page without WebGPU: the status line says why, the tab runs on the CPU backend', async () => {
  // the same flags without --enable-unsafe-webgpu: Chromium on Linux then gives no adapter
  const { page, foreign, problems } = await openPage(NO_WEBGPU);
  const status = await backendStatus(page);
  console.log(`status line without WebGPU: ${status}`);
  assert.match(status, /^Backend: CPU \(wasm, (relaxed )?SIMD\)\. WebGPU is not used: .*requestAdapter/);
  assert.equal(await page.isVisible('#status-switch'), false, 'no WebGPU to switch to');
  assert.equal(await page.getAttribute('#status', 'data-kind'), 'cpu');
  await page.click('#tab-conv');
  await enter(page, { i: 6, m: 3, s: 2, p: 1 });
  assert.equal(await runResult(page), 'conv: 6x6 -> 3x3; transposed conv: 3x3 -> 6x6 ✓');
  assert.match(await page.textContent('#conv-check'), /Ran on CPU backend \(wasm\)/);
  await page.screenshot({ path: join(OUT, 'conv-arith-cpu.png'), fullPage: true });
  assert.deepEqual(problems, [], 'no errors in the page or the worker');
  assert.deepEqual(foreign, [], 'no request may leave 127.0.0.1');
});

test('?backend: auto passes over a software adapter (with a link back), cpu forces the CPU, a bad value is named', async () => {
  const auto = await openPage(WEBGPU, '?backend=auto');
  const status = await backendStatus(auto.page);
  console.log(`status line with ?backend=auto: ${status}`);
  assert.ok(await auto.page.evaluate(() => 'gpu' in navigator), 'this test needs WebGPU flags');
  if ((await auto.page.getAttribute('#status', 'data-kind')) === 'cpu') {
    // a software adapter (SwiftShader here): the CPU backend is used and the way back is offered
    assert.match(status, /^Backend: CPU \(wasm, (relaxed )?SIMD\)\. WebGPU is not used: the browser's adapter, .+, is a software fallback/);
    assert.equal(await auto.page.getAttribute('#status-switch', 'href').then((h) => new URL(h).searchParams.get('backend')), 'webgpu');
    await auto.page.click('#status-switch');
    await auto.page.waitForSelector('#status[data-kind="gpu"]', { timeout: 120_000 });
    assert.match(await auto.page.textContent('#status-text'), /software fallback adapter .*\. Use the CPU backend$/);
  } else {
    // a hardware adapter: WebGPU, nothing to switch to
    assert.equal(await auto.page.getAttribute('#status', 'data-fallback'), 'false');
    assert.equal(await auto.page.isVisible('#status-switch'), false);
  }
  const cpu = await openPage(WEBGPU, '?backend=cpu');
  assert.match(await backendStatus(cpu.page), /^Backend: CPU \(wasm, (relaxed )?SIMD\)\. WebGPU is not used: \?backend=cpu asks for the CPU backend$/);
  const bad = await openPage(WEBGPU, '?backend=tpu');
  assert.match(await backendStatus(bad.page), /\(\?backend=tpu ignored: it takes auto, webgpu or cpu\)/);
  for (const { problems, foreign } of [auto, cpu, bad]) {
    assert.deepEqual(problems, [], 'no errors in the page or the worker');
    assert.deepEqual(foreign, [], 'no request may leave 127.0.0.1');
  }
});

test("Conv-arithmetic tab: a case with p != p' (i=28, m=4, s=2, p=1) goes back to 28x28", async () => {
  // the lecture's example has p = p' = 1, which hides a formula that confuses them
  const { page, foreign, problems } = await openPage(WEBGPU);
  await backendStatus(page);
  await page.click('#tab-conv');
  await enter(page, { i: 28, m: 4, s: 2, p: 1 });
  const result = await runResult(page);
  const shown = {};
  for (const k of ['o', 'p_t', 'i_t', 'a_t', 'stretched', 'o_t']) shown[k] = Number(await page.textContent(`#v-${k}`));
  assert.deepEqual(shown, { o: 14, p_t: 2, i_t: 1, a_t: 0, stretched: 27, o_t: 28 });
  assert.equal(result, 'conv: 28x28 -> 14x14; transposed conv: 14x14 -> 28x28 ✓');
  assert.deepEqual(problems, [], 'no errors in the page or the worker');
  assert.deepEqual(foreign, [], 'no request may leave 127.0.0.1');
});
