// End-to-end: Pause and Cancel act within a second on both backends (issue 22: "the e2e suite
// covers ... Pause within a second"), and progress shows inside a tile.
//  1. GAN tab, CPU backend (wasm) and WebGPU (SwiftShader): Train, wait until the steps move,
//     Pause: the step counter stops changing within 1 s of the click; Train again resumes. On
//     SwiftShader one step takes over a second, so the tab runs its D and G halves as separate
//     calls (gan.js trainCall); Pause then waits for half a step.
//  2. Denoise tab, WebGPU and the CPU backend with one worker: a photo shows "layer k of n"
//     before its tile is done; Cancel hides the progress within 1 s, nothing is drawn after it,
//     and the tabs' worker has ended its call in flight within 1 s (data-stopped-ms: on
//     SwiftShader the tab cuts the photo into tiles whose layer takes well under a second,
//     denoise.js createLayerTimer); the next photo denoises.
// The 1 s bar is the functional requirement (the worker's calls aim at ~300 ms by
// design, loop.js), not a speed figure. The times measured are printed.
// Run: node --test tests/e2e/pause_cancel.test.mjs   (after ./build.sh build)
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { NO_WEBGPU, WEBGPU, openPage, suite } from './harness.mjs';
import { grayPng } from './png.mjs';

const S = suite([
  ['www/data/mnist_page.bin', 'run ./build.sh setup first'],
  ['www/models/dncnn_blind_gray.safetensors', 'train it (see the README)'],
]);
const SLOW = 200_000;
const PAUSE_BAR_MS = 1000;

/**
 * Record in the page the times (performance.now) at which element `id`'s text or data
 * attributes change, and the time of the first click on `button`, into window.__changes and
 * window.__clickAt.
 */
async function watch(page, id, button) {
  await page.evaluate(([i, b]) => {
    window.__changes = [];
    window.__clickAt = null;
    const el = document.getElementById(i);
    new MutationObserver(() => window.__changes.push(performance.now())).observe(el, { attributes: true, childList: true, characterData: true, subtree: true });
    document.getElementById(b).addEventListener('click', () => (window.__clickAt ??= performance.now()), { capture: true });
  }, [id, button]);
}

/** ms from the click to the last change seen (0 when none came after it). */
const lastChangeAfterClick = (page) =>
  page.evaluate(() => {
    const after = window.__changes.filter((t) => t >= window.__clickAt);
    return after.length ? after.at(-1) - window.__clickAt : 0;
  });

const ganStep = (page) => page.$eval('#gan-progress', (e) => Number(e.dataset.step));

async function ganPauseResume(args, label) {
  const { page, problems } = await openPage(S, { args, hash: '#gan', ignoreLoadFailures: /./ });
  await page.waitForFunction(() => document.getElementById('gan-backend').textContent.length > 0, null, { timeout: 60_000 });
  await page.selectOption('#gan-form [name="arch"]', 'dense');
  await page.fill('#gan-form [name="batch"]', '8');
  await page.uncheck('#gan-quality-auto');
  await page.click('#gan-reset');
  await page.waitForSelector('#gan-form[data-busy="false"]', { timeout: SLOW });
  await page.click('#gan-train');
  // past the first calls (shader compilation, the chunk size settling)
  await page.waitForFunction(() => Number(document.getElementById('gan-progress').dataset.step) >= 20, null, { timeout: SLOW });
  await watch(page, 'gan-progress', 'gan-pause');
  await page.waitForTimeout(3500); // a few updates: the time of one call (below)
  await page.click('#gan-pause');
  await page.waitForSelector('#gan-form[data-busy="false"]', { timeout: SLOW });
  const paused = await ganStep(page);
  await page.waitForTimeout(1500); // a step change after this long would show below
  const ms = await lastChangeAfterClick(page);
  // the time one call took just before the click: the gap between the last two updates
  const callMs = await page.evaluate(() => {
    const t = window.__changes.filter((x) => x < window.__clickAt);
    const updates = t.filter((x, i) => i === 0 || x - t[i - 1] > 20);
    return updates.length >= 2 ? updates.at(-1) - updates.at(-2) : 0;
  });
  console.log(`GAN on ${label}: Pause at step ${paused}; last step change ${ms.toFixed(0)} ms after the click; one call before it took ${callMs.toFixed(0)} ms (${await page.textContent('#gan-progress')})`);
  assert.equal(await ganStep(page), paused, 'no step after the pause');
  // Pause waits for the call in flight and starts nothing more: at most ~300 ms of steps, or
  // half a step where one step is longer than that
  assert.ok(ms < PAUSE_BAR_MS, `Pause acted ${ms.toFixed(0)} ms after the click (bar: ${PAUSE_BAR_MS} ms; one call took ${callMs.toFixed(0)} ms)`);
  // Train again resumes the same model
  await page.click('#gan-train');
  await page.waitForFunction((s) => Number(document.getElementById('gan-progress').dataset.step) > s, paused, { timeout: SLOW });
  await page.click('#gan-pause');
  await page.waitForSelector('#gan-form[data-busy="false"]', { timeout: SLOW });
  assert.ok((await ganStep(page)) > paused, 'training resumed');
  assert.deepEqual(problems, []);
}

test('GAN tab on the CPU backend: Pause stops the steps within a second, Train resumes', async () => {
  await ganPauseResume(NO_WEBGPU, 'the CPU backend');
});

test('GAN tab on WebGPU (SwiftShader): Pause stops the steps within a second, Train resumes', async () => {
  await ganPauseResume(WEBGPU, 'WebGPU');
});

/**
 * The worker's GAN API driven directly (a worker of the page's own, through workers.js): 3
 * steps as whole steps, as D and G halves, and as half, then whole steps (which finish the
 * pending step first). Resolves to each run's step count, losses, and whether its saved G and
 * D tensors equal those of the whole steps to the bit (the data after each file's header; the
 * header's metadata order may differ).
 */
async function ganHalvesRun(page, backend) {
  return page.evaluate(async (backendParam) => {
    const { startWorker } = await import('./workers.js');
    const w = startWorker({ backend: backendParam });
    const status = await w.status;
    if (status.error) throw new Error(status.error);
    const digits = new Uint8Array(await (await fetch('data/mnist_page.bin')).arrayBuffer());
    await w.call('gan_load_digits', digits);
    const data = (file) => file.subarray(8 + Number(new DataView(file.buffer, file.byteOffset).getBigUint64(0, true)));
    const same = (a, b) => a.length === b.length && a.every((v, i) => v === b[i]);
    const runs = {};
    const plans = { whole: ['s3'], halves: ['h', 'h', 'h', 'h', 'h', 'h'], mixed: ['h', 's2', 'h', 'h'] };
    for (const [name, plan] of Object.entries(plans)) {
      await w.call('gan_reset', 'dense', 'ce', 16, 'normal', 32, 2e-4, 0.5, 8, 3, false);
      const losses = { d: [], g: [] };
      let step = 0;
      for (const p of plan) {
        const r = p === 'h' ? await w.call('gan_train_half') : await w.call('gan_train_steps', Number(p.slice(1)));
        losses.d.push(...r.d_loss);
        losses.g.push(...r.g_loss);
        step = r.step;
      }
      const { g, d } = await w.call('gan_save');
      runs[name] = { step, losses, g: data(g), d: data(d), bytes: g.length + d.length };
    }
    w.terminate();
    return Object.fromEntries(Object.entries(runs).map(([name, r]) => [name, { step: r.step, losses: r.losses, bytes: r.bytes, sameG: same(r.g, runs.whole.g), sameD: same(r.d, runs.whole.d) }]));
  }, backend);
}

for (const [args, backend, label] of [[NO_WEBGPU, 'cpu', 'the CPU backend'], [WEBGPU, 'webgpu', 'WebGPU']]) {
  test(`GAN on ${label}: a step in two halves (two worker calls) gives the weights of a whole step`, async () => {
    const { page, problems } = await openPage(S, { args, ignoreLoadFailures: /./ });
    const runs = await ganHalvesRun(page, backend);
    for (const name of ['halves', 'mixed']) {
      assert.equal(runs[name].step, 3, `${name}: 3 steps`);
      assert.ok(runs[name].sameG && runs[name].sameD, `${name}: the same G and D as whole steps, to the bit`);
    }
    // the halves report each step once, with its D and G losses
    assert.deepEqual(runs.halves.losses, runs.whole.losses);
    console.log(`GAN halves on ${label}: after 3 steps G and D (${runs.whole.bytes} bytes) equal; D losses ${runs.whole.losses.d.map((v) => v.toFixed(4)).join(' ')}`);
    assert.deepEqual(problems, []);
  });
}

/** A 160 x 160 gray test photo: one tile on the CPU backend, a few small ones on SwiftShader. */
const photo = grayPng(160, 160, (x, y) => (Math.floor(x / 16) + Math.floor(y / 16)) % 2 ? 200 : 60);
const IN_TILE = /^0 \/ \d+ tiles( \(up to \d+×\d+ pixels each\))? · tile 1: layer \d+ of \d+/;

/** Open the photo (x8 self-ensemble), see the progress move inside the first tile, Cancel; the times. */
async function cancelOnce(page, label) {
  await page.check('#dn-ensemble');
  // the progress line of a cancelled job stays in the (hidden) row: clear it, to see the new one
  await page.$eval('#dn-progress-text', (e) => (e.textContent = ''));
  await page.setInputFiles('#dn-file', { name: 'squares.png', mimeType: 'image/png', buffer: photo });
  // progress inside the first tile, before it is done
  await page.waitForFunction((re) => new RegExp(re).test(document.getElementById('dn-progress-text').textContent), IN_TILE.source, { timeout: SLOW });
  const first = await page.textContent('#dn-progress-text');
  await page.waitForFunction((t) => document.getElementById('dn-progress-text').textContent !== t, first, { timeout: SLOW });
  const second = await page.textContent('#dn-progress-text');
  console.log(`Denoise on ${label}: "${first}" then "${second}"`);
  assert.match(second, IN_TILE, 'the progress moves inside the tile');
  await watch(page, 'panel-denoise', 'dn-cancel');
  await page.click('#dn-cancel');
  await page.waitForFunction(() => document.getElementById('dn-info').dataset.state === 'cancelled', null, { timeout: 5000 });
  const hiddenMs = await page.evaluate(() => performance.now() - window.__clickAt);
  assert.equal(await page.isVisible('#dn-progress-row'), false);
  const outSum = () => page.$eval('#dn-out', (c) => (c.width ? c.getContext('2d').getImageData(0, 0, c.width, c.height).data.reduce((a, v) => a + v, 0) : 0));
  const drawn = await outSum();
  // the worker ends the layer call in flight; it answers its next call then (data-stopped-ms)
  await page.waitForSelector('#dn-info[data-stopped-ms]', { timeout: SLOW });
  const stoppedMs = Number(await page.getAttribute('#dn-info', 'data-stopped-ms'));
  await page.waitForTimeout(1500); // nothing may show after Cancel
  assert.equal(await outSum(), drawn, 'nothing drawn after Cancel');
  assert.equal(await page.isVisible('#dn-progress-row'), false);
  const ms = await lastChangeAfterClick(page);
  console.log(`Denoise on ${label}: Cancel took effect in ${hiddenMs.toFixed(0)} ms; last change in the tab ${ms.toFixed(0)} ms after the click; the worker was free after ${stoppedMs} ms`);
  assert.ok(hiddenMs < PAUSE_BAR_MS && ms < PAUSE_BAR_MS, `Cancel acted ${hiddenMs.toFixed(0)} ms, last change ${ms.toFixed(0)} ms after the click`);
  assert.ok(stoppedMs < PAUSE_BAR_MS, `the worker ended its call in flight ${stoppedMs} ms after Cancel`);
}

/**
 * Cancel twice (on WebGPU the first job's tiles are the probe's, the second's are sized from
 * the layer times measured), then a small photo denoises to the end.
 */
async function denoiseCancel(args, query, label) {
  const { page, problems } = await openPage(S, { args, query, hash: '#denoise', ignoreLoadFailures: /./ });
  await page.waitForFunction(() => /blind gray ✓/.test(document.getElementById('dn-models').textContent), null, { timeout: 60_000 });
  await page.selectOption('#dn-model', 'blind');
  await cancelOnce(page, label);
  await cancelOnce(page, label);
  // the tab goes on: a small photo denoises to the end
  await page.uncheck('#dn-ensemble');
  const t0 = Date.now();
  await page.setInputFiles('#dn-file', { name: 'small.png', mimeType: 'image/png', buffer: grayPng(48, 40, (x, y) => (x * 5 + y * 3) % 256) });
  await page.waitForFunction(() => ['done', 'error'].includes(document.getElementById('dn-info').dataset.state) && document.getElementById('dn-info').textContent.includes('small.png'), null, { timeout: SLOW });
  assert.equal(await page.$eval('#dn-info', (e) => e.dataset.state), 'done', await page.textContent('#dn-error'));
  console.log(`Denoise on ${label}: the next photo took ${((Date.now() - t0) / 1000).toFixed(1)} s`);
  assert.deepEqual(problems, []);
}

test('Denoise tab on WebGPU: progress inside a tile, Cancel within a second', async () => {
  await denoiseCancel(WEBGPU, '', 'WebGPU');
});

test('Denoise tab on the CPU backend (one worker): progress inside a tile, Cancel within a second', async () => {
  await denoiseCancel(NO_WEBGPU, 'workers=1', 'the CPU backend');
});
