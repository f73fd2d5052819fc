// End-to-end: the GAN tab in a real headless Chromium (Debian's /usr/bin/chromium driven by
// playwright-core) on WebGPU (Chromium's SwiftShader). A user trains a dense GAN for 50 steps and
// sees the sample grid change with finite losses; an absurd learning rate diverges, pauses
// training with a message, and Reset recovers; the pretrained DCGAN draws its grid and the
// latent tools (interpolation, neighbours, vector arithmetic) and a "Real or Fake?" round work.
// The quality numbers (500 samples) take ~2 minutes on SwiftShader, so they are tested on the
// CPU backend (recomputed while training); the DCGAN trains a few steps on both.
// Screenshots go to tests/e2e/out/gan-*.png.
// Run: node --test tests/e2e/gan.test.mjs   (after ./build.sh build)
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { NO_WEBGPU, OUT, WEBGPU, openPage, suite } from './harness.mjs';

// what this tab loads; other tabs' assets are theirs to check
const OUR_ASSETS = /\/(data\/mnist_page\.bin|models\/(classifier|gan_dcgan_[gd])\.safetensors|gan\.(js|css))$/;

const S = suite([
  ['www/data/mnist_page.bin', 'run ./build.sh setup first'],
  ['www/models/gan_dcgan_g.safetensors', 'train it (see the README)'],
  ['www/models/gan_dcgan_d.safetensors', 'train it (see the README)'],
  ['www/models/classifier.safetensors', 'train it (see the README)'],
]);

const openTab = (args = WEBGPU) =>
  openPage(S, { args, hash: '#gan', acceptDownloads: true, ignoreLoadFailures: { test: (url) => !OUR_ASSETS.test(url) } });

/** A fingerprint of a canvas's pixels (sum and a rolling hash) and whether it is blank. */
const canvasPixels = (page, sel) =>
  page.$eval(sel, (c) => {
    const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
    let sum = 0;
    let hash = 0;
    let dark = 0;
    for (let i = 0; i < d.length; i += 4) {
      sum += d[i];
      hash = (hash * 31 + d[i]) | 0;
      if (d[i] < 128) dark++;
    }
    return { sum, hash, dark, n: d.length / 4 };
  });

async function setField(page, name, value) {
  await page.fill(`#gan-form [name="${name}"]`, String(value));
}

/** Wait until the tab is idle (training stopped, no action running). */
const stopped = (page, timeout = 120_000) => page.waitForSelector('#gan-form[data-busy="false"]', { timeout });

/**
 * Train until element `id`'s `data-<key>` reaches `atLeast`, then pause; resolves to the seconds
 * it took and the progress line. (The page's CSP forbids string predicates.)
 */
async function trainUntil(page, [id, key, atLeast], timeout = 120_000) {
  const t0 = Date.now();
  await page.click('#gan-train');
  await page.waitForFunction(([i, k, n]) => Number(document.getElementById(i).dataset[k]) >= n, [id, key, atLeast], { timeout });
  await page.click('#gan-pause');
  await stopped(page);
  return { secs: (Date.now() - t0) / 1000, progress: await page.textContent('#gan-progress') };
}
const progressStep = (n) => ['gan-progress', 'step', n];

test('GAN tab on WebGPU: dense GAN trains 50 steps, DCGAN trains, divergence pauses, pretrained DCGAN draws', async () => {
  const { page, foreign, problems } = await openTab();
  assert.equal(await page.getAttribute('#status', 'data-kind'), 'gpu', 'this test needs WebGPU (SwiftShader)');
  await page.waitForFunction(() => document.getElementById('gan-backend').textContent.length > 0, null, { timeout: 60_000 });
  console.log(`backend note: ${await page.textContent('#gan-backend')}`);

  // ---- train a dense GAN: Reset draws the untrained grid, Train runs until >= 50 steps
  await page.selectOption('#gan-form [name="arch"]', 'dense');
  // SwiftShader emulates the GPU on the loaded CPU: a smaller batch keeps the test short
  await setField(page, 'batch', 32);
  await setField(page, 'every', 25);
  await page.uncheck('#gan-quality-auto'); // scoring takes ~2 minutes on SwiftShader: tested on the CPU backend below
  await page.click('#gan-reset');
  await stopped(page);
  const before = await canvasPixels(page, '#gan-grid');
  const { secs, progress } = await trainUntil(page, ['gan-grid', 'step', 50], 150_000);
  console.log(`after ${secs.toFixed(1)} s: ${progress}`);
  const after = await canvasPixels(page, '#gan-grid');
  assert.notEqual(after.hash, before.hash, 'the sample grid changed while training');
  const m = progress.match(/step (\d+) · ([\d.]+) steps\/s · D loss (\S+) · G loss (\S+) · D accuracy (\S+)%/);
  assert.ok(m, `progress line: ${progress}`);
  assert.ok(Number(m[1]) >= 50, 'at least 50 steps');
  for (const v of [m[3], m[4]]) assert.ok(Number.isFinite(Number(v)), `finite loss, got ${v}`);
  assert.equal(await page.isVisible('#gan-error'), false, 'no error');
  await page.screenshot({ path: join(OUT, 'gan-dense-50-steps.png'), fullPage: true });

  // ---- the DCGAN trains on WebGPU too (a few steps of batch 16: SwiftShader is slow), its grid
  // drawn by the moving average of G (updated on the GPU, BatchNorm statistics recomputed there)
  await page.selectOption('#gan-form [name="arch"]', 'dcgan');
  await setField(page, 'batch', 16);
  await setField(page, 'ema', 0.9);
  await page.click('#gan-reset');
  await stopped(page);
  const dcBefore = await canvasPixels(page, '#gan-grid');
  const { secs: dcSecs, progress: dcProgress } = await trainUntil(page, progressStep(3), 150_000);
  console.log(`DCGAN on WebGPU, after ${dcSecs.toFixed(1)} s: ${dcProgress}`);
  assert.doesNotMatch(dcProgress, /NaN|Infinity/);
  assert.match(await page.textContent('#gan-model'), /DCGAN \(width 32\)/);
  assert.notEqual((await canvasPixels(page, '#gan-grid')).hash, dcBefore.hash, 'the DCGAN grid changed');
  assert.match(await page.textContent('#gan-model'), /moving average of G's weights \(decay 0\.9\)/);
  await setField(page, 'ema', 0);
  await page.selectOption('#gan-form [name="arch"]', 'dense');
  await setField(page, 'batch', 32);

  // ---- an absurd learning rate diverges: training pauses with a message; Reset recovers
  await setField(page, 'lr', '1e10');
  await page.click('#gan-reset');
  await stopped(page);
  await page.click('#gan-train');
  await page.waitForSelector('#panel-gan[data-diverged="true"]', { timeout: 120_000 });
  await stopped(page);
  const msg = await page.textContent('#gan-error');
  console.log(`divergence: ${msg}`);
  assert.match(msg, /diverged/);
  await page.screenshot({ path: join(OUT, 'gan-diverged.png'), fullPage: true });
  await setField(page, 'lr', '2e-4');
  await page.click('#gan-reset');
  await stopped(page);
  assert.equal(await page.getAttribute('#panel-gan', 'data-diverged'), null, 'Reset clears the divergence');
  const { progress: recovered } = await trainUntil(page, progressStep(3), 60_000);
  console.log(`after Reset: ${recovered}`);
  assert.doesNotMatch(recovered, /NaN|Infinity/);
  assert.equal(await page.isVisible('#gan-error'), false);

  // ---- the pretrained DCGAN: its grid draws; pick A, B and N for the latent tools
  await page.click('#gan-pretrained');
  await page.waitForFunction(() => /Pretrained: DCGAN/.test(document.getElementById('gan-model').textContent), null, { timeout: 120_000 });
  await stopped(page);
  const dc = await canvasPixels(page, '#gan-grid');
  console.log(`pretrained grid: ${dc.dark} of ${dc.n} pixels dark`);
  assert.ok(dc.dark > dc.n * 0.3 && dc.dark < dc.n * 0.97, 'the grid shows digits (mostly dark background, some ink)');
  const box = await page.$eval('#gan-grid', (c) => {
    const r = c.getBoundingClientRect();
    return { x: r.left, y: r.top, s: r.width / c.width };
  });
  const clickCell = async (k) => page.mouse.click(box.x + ((k % 8) * 58 + 28) * box.s, box.y + (Math.floor(k / 8) * 58 + 28) * box.s);
  await page.selectOption('#gan-form [name="pick"]', 'a');
  await clickCell(0);
  await stopped(page);
  await page.selectOption('#gan-form [name="pick"]', 'b');
  await clickCell(63);
  await page.waitForFunction(() => /path from sample A to sample B/.test(document.getElementById('gan-interp-note').textContent), null, { timeout: 60_000 });
  await stopped(page);
  await page.selectOption('#gan-form [name="interp"]', 'slerp');
  await page.waitForFunction(() => /Spherical/.test(document.getElementById('gan-interp-note').textContent), null, { timeout: 60_000 });
  await stopped(page);
  await page.selectOption('#gan-form [name="pick"]', 'centre');
  await clickCell(10);
  await page.waitForFunction(() => /neighbours/.test(document.getElementById('gan-neigh-note').textContent), null, { timeout: 60_000 });
  await stopped(page);
  // vector arithmetic: one sample in each of the groups P, Q, R
  for (const [g, k] of [['p', 1], ['q', 2], ['r', 3]]) {
    await page.selectOption('#gan-form [name="pick"]', g);
    await clickCell(k);
    await stopped(page);
  }
  assert.match(await page.textContent('#gan-arith-note'), /P − Q \+ R/);
  const interp = await canvasPixels(page, '#gan-interp');
  assert.ok(interp.dark > 0 && interp.dark < interp.n, 'interpolation drawn');
  await page.screenshot({ path: join(OUT, 'gan-pretrained.png'), fullPage: true });

  // ---- Real or Fake?: a round; the user marks the first digit fake; Check scores user and D
  await page.click('#gan-game-new');
  await stopped(page);
  const game = await page.$eval('#gan-game', (c) => {
    const r = c.getBoundingClientRect();
    return { x: r.left, y: r.top, s: r.width / c.width };
  });
  await page.mouse.click(game.x + 28 * game.s, game.y + 28 * game.s);
  await page.click('#gan-game-check');
  const verdict = await page.textContent('#gan-game-out');
  console.log(`game: ${verdict.split('\n')[0]}`);
  assert.match(verdict, /You: \d\/8 right\. D: \d\/8 right/);

  await page.screenshot({ path: join(OUT, 'gan-game-arith.png'), fullPage: true });

  assert.deepEqual(foreign, [], 'no request leaves 127.0.0.1');
  assert.deepEqual(problems, [], 'no errors in the page or the worker');
});

test('GAN tab on the CPU backend: says so; dense GAN and DCGAN train; save and load G and D', async () => {
  const { page, foreign, problems } = await openTab(NO_WEBGPU);
  assert.equal(await page.getAttribute('#status', 'data-kind'), 'cpu');
  await page.waitForSelector('#gan-backend[data-kind="cpu"]', { timeout: 60_000 });
  const note = await page.textContent('#gan-backend');
  console.log(`CPU note: ${note}`);
  assert.match(note, /CPU backend/);
  await page.selectOption('#gan-form [name="arch"]', 'dense');
  await setField(page, 'batch', 32);
  await page.fill('#gan-quality-every', '10'); // the quality numbers are recomputed while training
  const { secs, progress } = await trainUntil(page, ['gan-quality-history', 'count', 1]);
  console.log(`CPU, after ${secs.toFixed(1)} s: ${progress}`);
  const history = await page.textContent('#gan-quality-history');
  console.log(`CPU, quality while training: ${history}`);
  assert.match(history, /\b\d+: \d+\.\d\d \/ \d+/, 'scored while training');
  assert.doesNotMatch(progress, /NaN|Infinity/);
  assert.equal(await page.isVisible('#gan-error'), false);
  // the DCGAN trains too (a few steps)
  await page.selectOption('#gan-form [name="arch"]', 'dcgan');
  await page.click('#gan-reset');
  await stopped(page);
  const { secs: dcSecs, progress: dc } = await trainUntil(page, progressStep(3));
  console.log(`CPU DCGAN, after ${dcSecs.toFixed(1)} s: ${dc}`);
  assert.doesNotMatch(dc, /NaN|Infinity/);
  assert.match(await page.textContent('#gan-model'), /DCGAN \(width 32\)/);
  // save G and D (two downloads), then load them back through the file inputs
  const downloads = [];
  page.on('download', (d) => downloads.push(d));
  await page.click('#gan-save');
  await stopped(page);
  for (let i = 0; i < 50 && downloads.length < 2; i++) await new Promise((r) => setTimeout(r, 100));
  assert.equal(downloads.length, 2, 'Save downloads G and D');
  const files = {};
  for (const d of downloads) {
    const name = d.suggestedFilename();
    files[/_g\.safetensors$/.test(name) ? 'g' : 'd'] = join(OUT, name);
    await d.saveAs(join(OUT, name));
  }
  console.log(`saved: ${Object.values(files).join(', ')}`);
  await page.setInputFiles('#gan-file-g', files.g);
  await page.setInputFiles('#gan-file-d', files.d);
  await page.click('#gan-load');
  await stopped(page);
  assert.equal(await page.isVisible('#gan-error'), false, 'the saved files load back');
  assert.match(await page.textContent('#gan-model'), /^Loaded gan_dcgan_step\d+_g\.safetensors and gan_dcgan_step\d+_d\.safetensors: DCGAN \(width 32\)/);
  await page.screenshot({ path: join(OUT, 'gan-cpu.png'), fullPage: false });
  assert.deepEqual(foreign, []);
  assert.deepEqual(problems, []);
});
