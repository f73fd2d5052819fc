// End-to-end: the Autoencoders tab in headless Chromium on WebGPU (SwiftShader). The shipped
// k = 2 model loads and the scatter and decoded manifold draw; hovering the plane decodes a
// point; then a fresh model trains 200 steps in the tab, the cost falls and the comparison
// grid changes; sparse, contractive and denoising then train a few steps each. Screenshots of the grid and the manifold go to tests/e2e/out/.
// Run: node --test tests/e2e/autoencoders.test.mjs   (after ./build.sh build).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { NO_WEBGPU, OUT, WEBGPU, openPage as open, suite } from './harness.mjs';

const TRAIN_STEPS = 200;

const S = suite([['www/models/ae_plain_k2.safetensors', 'the shipped model is missing (see the README)']]);

// a missing file of another tab (its models may not be shipped yet) is that tab's business;
// this tab's own files must load
const MINE = /\/(autoencoders\.(js|css)|data\/mnist_page\.bin|models\/ae_[^/]*\.safetensors)$/;

/** Chromium with `args` and a fresh profile, on the Autoencoders tab. */
const openPage = (args) => open(S, { args, hash: '#autoencoders', ignoreLoadFailures: { test: (u) => !MINE.test(u.split(/[?#]/)[0]) } });

/** Summary of a canvas: pixel count, how many are not white/grey (coloured), mean and std of luminance. */
function canvasStats(page, id) {
  return page.evaluate((id) => {
    const c = document.getElementById(id);
    const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
    let sum = 0;
    let sum2 = 0;
    let coloured = 0;
    const n = d.length / 4;
    for (let i = 0; i < d.length; i += 4) {
      const l = (d[i] + d[i + 1] + d[i + 2]) / 3;
      sum += l;
      sum2 += l * l;
      if (Math.max(d[i], d[i + 1], d[i + 2]) - Math.min(d[i], d[i + 1], d[i + 2]) > 40) coloured++;
    }
    const mean = sum / n;
    return { width: c.width, height: c.height, coloured, mean, std: Math.sqrt(Math.max(0, sum2 / n - mean * mean)) };
  }, id);
}

/** Mean absolute difference (0..255) between the grid now and the snapshot taken by `snapGrid`. */
async function snapGrid(page) {
  await page.evaluate(() => {
    const c = document.getElementById('ae-grid');
    window.__gridSnap = { w: c.width, h: c.height, d: c.getContext('2d').getImageData(0, 0, c.width, c.height).data };
  });
}
function gridChange(page) {
  return page.evaluate(() => {
    const c = document.getElementById('ae-grid');
    const s = window.__gridSnap;
    if (c.width !== s.w || c.height !== s.h) return 255;
    const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
    let diff = 0;
    for (let i = 0; i < d.length; i += 4) diff += Math.abs(d[i] - s.d[i]);
    return diff / (d.length / 4);
  });
}

/** Train `steps` more steps as `kind` from where the model is. */
async function trainAs(page, kind, steps) {
  await page.selectOption('#ae-kind', kind);
  const from = await num(page, '#ae-stats', 'step');
  await page.fill('#ae-stop', String(from + steps));
  await page.click('#ae-train');
  await page.waitForFunction((n) => {
    const s = document.getElementById('ae-stats');
    return s.dataset.state === 'paused' && Number(s.dataset.step) === n;
  }, from + steps, { timeout: 120_000, polling: 250 });
  assert.equal(await page.isVisible('#ae-error'), false, `${kind}: no error`);
}

/** The three regularised kinds train on from the current model and show their own figures. */
async function trainRegularisedKinds(page, steps, label) {
  // sparse: the code statistics are shown
  await trainAs(page, 'sparse', steps);
  assert.match(await page.textContent('#ae-near-zero'), /^\d+\.\d% of 500 × 2$/);
  // contractive: the Jacobian norm is measured after training, against the plain model's
  await trainAs(page, 'contractive', steps);
  await page.waitForSelector('#ae-jac[data-value]');
  const jac = await page.textContent('#ae-jac');
  const jacPlain = await page.textContent('#ae-jac-plain');
  console.log(`${label}: contractive Jacobian norm ${jac}; plain ${jacPlain}`);
  assert.match(jacPlain, /^\d+\.\d+, ratio \d+\.\d+/);
  // denoising: the grid gains the noisy-input row
  await trainAs(page, 'denoising', steps);
  assert.match(await page.textContent('#ae-grid-note'), /from noisy inputs/);
  assert.ok((await canvasStats(page, 'ae-grid')).height > 4 * 60, 'four rows: original, noisy, autoencoder, PCA');
}

const num = async (page, sel, key) => Number(await page.getAttribute(sel, `data-${key}`));

test('Autoencoders tab: shipped k=2 manifold and scatter; 200 training steps lower the cost and update the grid', { timeout: 600_000 }, async () => {
  const t0 = Date.now();
  const { page, foreign, problems } = await openPage(WEBGPU);
  await page.waitForSelector('#status:not(.status-pending)', { timeout: 120_000 });
  console.log(`status line: ${await page.textContent('#status-text')}`);
  assert.equal(await page.getAttribute('#status', 'data-kind'), 'gpu', 'this test runs on WebGPU');
  assert.equal(await page.isVisible('#panel-autoencoders'), true);

  // ---- the shipped model: scatter, manifold, grid with PCA
  await page.waitForSelector('#panel-autoencoders[data-ready="true"]', { timeout: 120_000 });
  await page.waitForSelector('#ae-pca-status[data-mse]', { timeout: 120_000 });
  await page.waitForSelector('#ae-grid[data-pca="true"]', { timeout: 60_000 });
  console.log(`shipped model ready after ${((Date.now() - t0) / 1000).toFixed(1)} s`);
  console.log(`model: ${await page.textContent('#ae-model')}`);
  console.log(`PCA: ${await page.textContent('#ae-pca-status')}`);
  console.log(`grid note: ${await page.textContent('#ae-grid-note')}`);
  console.log(`stats: ${await page.textContent('#ae-stats')}`);
  assert.match(await page.textContent('#ae-model'), /dense autoencoder, k = 2.*shipped/);
  assert.match(await page.textContent('#ae-backend'), /software adapter/, 'the tab says it runs on a software adapter');
  assert.equal(await num(page, '#ae-scatter', 'points'), 2000);
  const scatter = await canvasStats(page, 'ae-scatter');
  const manifold = await canvasStats(page, 'ae-manifold');
  console.log(`scatter: ${JSON.stringify(scatter)}; manifold: ${JSON.stringify(manifold)}`);
  assert.ok(scatter.coloured > 2000, 'the scatter shows coloured points');
  assert.ok(manifold.std > 40 && manifold.mean > 10 && manifold.mean < 120, 'the manifold shows digit strokes on black');
  // the shipped autoencoder beats PCA at k = 2 on the held-out digits
  const heldCost = await num(page, '#ae-stats', 'held-last');
  const heldMse = await num(page, '#ae-stats', 'held-mse');
  const pcaMse = await num(page, '#ae-pca-status', 'mse');
  console.log(`held-out cost ${heldCost}; held-out MSE: autoencoder ${heldMse}, PCA ${pcaMse}`);
  assert.ok(heldMse < pcaMse, `the k=2 autoencoder (${heldMse}) should beat PCA (${pcaMse})`);

  // hovering the manifold decodes that point
  const manifoldEl = page.locator('#ae-manifold');
  const box = await manifoldEl.boundingBox();
  const at = { x: box.width * 0.25, y: box.height * 0.75 }; // code (0.25, 0.25)
  await manifoldEl.hover({ position: at });
  await page.waitForFunction(() => /code \(0\.2\d+, 0\.2\d+\)/.test(document.getElementById('ae-probe-code').textContent), null, { timeout: 30_000 });
  const probe = await canvasStats(page, 'ae-probe');
  assert.ok(probe.std > 30, 'the decoded point is drawn');
  await manifoldEl.click({ position: at });
  await page.locator('.ae-plane').screenshot({ path: join(OUT, 'autoencoders-manifold.png') });
  await page.locator('#ae-grid').screenshot({ path: join(OUT, 'autoencoders-grid-shipped.png') });

  // ---- a fresh model, 200 steps of batch 16
  await page.selectOption('#ae-batch', '16');
  await page.fill('#ae-stop', String(TRAIN_STEPS));
  const gridVersion = await num(page, '#ae-grid', 'version');
  await page.click('#ae-reset');
  await page.waitForFunction((v) => Number(document.getElementById('ae-grid').dataset.version) > v && document.getElementById('ae-grid').dataset.pca === 'true', gridVersion, { timeout: 60_000 });
  await page.waitForSelector('#ae-stats[data-state="paused"]');
  assert.match(await page.textContent('#ae-model'), /started from new dense k=2/);
  await snapGrid(page);
  const tTrain = Date.now();
  await page.click('#ae-train');
  await page.waitForSelector('#ae-stats[data-state="running"]');
  await page.waitForFunction((n) => {
    const s = document.getElementById('ae-stats');
    return s.dataset.state === 'paused' && Number(s.dataset.step) === n;
  }, TRAIN_STEPS, { timeout: 400_000, polling: 500 });
  const seconds = (Date.now() - tTrain) / 1000;
  const stats = await page.textContent('#ae-stats');
  console.log(`trained ${TRAIN_STEPS} steps in ${seconds.toFixed(1)} s (with evaluations): ${stats}`);
  const trainFirst = await num(page, '#ae-stats', 'train-first');
  const trainLast = await num(page, '#ae-stats', 'train-last');
  const heldFirst = await num(page, '#ae-stats', 'held-first');
  const heldLast = await num(page, '#ae-stats', 'held-last');
  console.log(`training cost ${trainFirst.toFixed(4)} -> ${trainLast.toFixed(4)}; held-out cost ${heldFirst.toFixed(4)} -> ${heldLast.toFixed(4)}`);
  console.log(`grid note after training: ${await page.textContent('#ae-grid-note')}`);
  assert.ok(trainLast < 0.8 * trainFirst, 'the training cost fell');
  assert.ok(heldLast < 0.8 * heldFirst, 'the held-out cost fell');
  // the tab says what the run started from and its held-out MSE before and after
  const run = await page.textContent('#ae-run');
  console.log(run);
  assert.match(run, new RegExp(`^Last run: ${TRAIN_STEPS} steps from new dense k=2.*held-out MSE [\\d.]+ → [\\d.]+ \\(500 held-out digits; better\\)`));
  assert.equal(await num(page, '#ae-grid', 'step'), TRAIN_STEPS, 'the grid was redrawn after training');
  const change = await gridChange(page);
  console.log(`grid: mean absolute pixel change ${change.toFixed(1)} / 255`);
  assert.ok(change > 2, 'the comparison grid changed');
  await page.locator('#ae-grid').screenshot({ path: join(OUT, 'autoencoders-grid-trained.png') });
  await page.locator('.ae-plane').screenshot({ path: join(OUT, 'autoencoders-manifold-trained.png') });
  await page.screenshot({ path: join(OUT, 'autoencoders-page.png'), fullPage: true });

  // ---- the other three kinds train on WebGPU too (a few steps each, from the model above)
  const tKinds = Date.now();
  await trainRegularisedKinds(page, 5, 'WebGPU');
  console.log(`WebGPU: sparse, contractive and denoising, 5 steps each, in ${((Date.now() - tKinds) / 1000).toFixed(1)} s`);

  assert.deepEqual(problems, [], 'no errors in the page or the worker');
  assert.deepEqual(foreign, [], 'no request may leave 127.0.0.1');
  console.log(`total ${((Date.now() - t0) / 1000).toFixed(1)} s`);
});

test('Autoencoders tab on the CPU backend: says so; sparse, contractive, denoising and conv train and show their figures', { timeout: 300_000 }, async () => {
  const t0 = Date.now();
  const { page, foreign, problems } = await openPage(NO_WEBGPU);
  await page.waitForSelector('#panel-autoencoders[data-ready="true"]', { timeout: 120_000 });
  await page.waitForSelector('#ae-stats[data-state="paused"]', { timeout: 60_000 });
  assert.equal(await page.getAttribute('#panel-autoencoders', 'data-backend'), 'cpu');
  assert.match(await page.textContent('#ae-backend'), /^Running on the CPU backend \(wasm\), not on a GPU/);
  await page.selectOption('#ae-batch', '16');

  // the shipped plain model trains on as sparse, contractive and denoising
  await trainRegularisedKinds(page, 10, 'CPU');
  assert.match(await page.textContent('#ae-jac-plain'), /— shipped/);
  assert.match(await page.textContent('#ae-run'), /^Last run: 10 steps from shipped .*held-out MSE [\d.]+ → [\d.]+/, 'Train continued the shipped model and says so');
  await page.locator('#ae-grid').screenshot({ path: join(OUT, 'autoencoders-grid-denoising-cpu.png') });
  // a conv model with k = 8: no 2-D plane, PCA refitted with k = 8
  await page.selectOption('#ae-kind', 'plain');
  await page.selectOption('#ae-arch', 'conv');
  await page.fill('#ae-k', '8');
  await page.dispatchEvent('#ae-k', 'change');
  await page.waitForFunction(() => /conv autoencoder, k = 8/.test(document.getElementById('ae-model').textContent), null, { timeout: 180_000 });
  await page.waitForFunction(() => /PCA k = 8/.test(document.getElementById('ae-pca-status').textContent), null, { timeout: 120_000 });
  await trainAs(page, 'plain', 5);
  assert.match(await page.textContent('#ae-plane-note'), /needs a model with k = 2/);
  console.log(`CPU: conv k=8 after 5 steps: ${await page.textContent('#ae-stats')}`);
  // Train can start from a fresh model instead (then the next Train continues that one)
  await page.selectOption('#ae-from', 'fresh');
  await page.fill('#ae-stop', '3');
  await page.click('#ae-train');
  await page.waitForFunction(() => /^Last run: 3 steps from new conv k=8/.test(document.getElementById('ae-run').textContent), null, { timeout: 120_000 });
  console.log(`CPU, fresh model: ${await page.textContent('#ae-run')}`);
  assert.equal(await page.inputValue('#ae-from'), 'continue', 'the next Train continues the fresh model');
  await page.screenshot({ path: join(OUT, 'autoencoders-cpu.png'), fullPage: true });

  assert.deepEqual(problems, [], 'no errors in the page or the worker');
  assert.deepEqual(foreign, [], 'no request may leave 127.0.0.1');
  console.log(`CPU test: ${((Date.now() - t0) / 1000).toFixed(1)} s`);
});
