// End-to-end, the GAN tab's issue-20 parts on the CPU backend (the page's path without WebGPU):
// "Quick start" trains with its preset (samples from the moving average of G) and the class histogram of scored samples is drawn beside
// the classifier score and Frechet distance while training; the latent tools and "Real or Fake?"
// work on the model trained in the tab; D's training options (label smoothing, minibatch
// dispersion, smoothness term, FGSM real digits) train a few finite steps; "Rejection by D"
// scores kept samples beside G's own, on the tab-trained GAN and on the pretrained one; "Langevin
// on D" scores moved samples beside G's own on the pretrained one.
// Run: node --test tests/e2e/gan_recipe.test.mjs   (after ./build.sh build)
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { NO_WEBGPU, OUT, openPage, suite } from './harness.mjs';

const OUR_ASSETS = /\/(data\/mnist_page\.bin|models\/(classifier|gan_dcgan_[gd])\.safetensors|gan[a-z_]*\.(js|css))$/;

const S = suite([
  ['www/data/mnist_page.bin', 'run ./build.sh setup first'],
  ['www/models/classifier.safetensors', 'train it (see the README)'],
]);

const stopped = (page, timeout = 120_000) => page.waitForSelector('#gan-form[data-busy="false"]', { timeout });
const cellClick = async (page, k) => {
  const s = await page.$eval('#gan-grid', (c) => c.getBoundingClientRect().width / c.width);
  await page.locator('#gan-grid').click({ position: { x: ((k % 8) * 58 + 28) * s, y: (Math.floor(k / 8) * 58 + 28) * s } });
  await stopped(page);
};

/**
 * "Rejection by D" on the current G and D at `gamma`: two scored rows, at least the 500 asked
 * for kept (and, where `someRejected`, not the whole pool).
 */
async function rejectionByD(page, label, gamma, someRejected) {
  await page.fill('#drs-gamma', String(gamma));
  await page.click('#drs-run');
  await page.waitForSelector('#drs-table[data-rows="2"], #gan-error:not([hidden])', { timeout: 300_000 });
  await stopped(page);
  assert.equal(await page.isVisible('#gan-error'), false, `no error: ${await page.textContent('#gan-error')}`);
  const rows = await page.$$eval('#drs-table tbody tr', (trs) => trs.map((tr) => [...tr.cells].map((c) => c.textContent)));
  const note = await page.textContent('#drs-out');
  console.log(`rejection by D (${label}):\n${rows.map((r) => r.join(' | ')).join('\n')}\n${note}`);
  for (const r of rows) assert.ok(Number(r[1]) >= 1 && Number(r[1]) <= 10 && Number(r[2]) >= 0, `score and distance: ${r}`);
  const [, kept, pool] = rows[1][0].match(/kept (\d+) of (\d+)/).map(Number);
  assert.ok(kept >= 500 && kept <= pool && (!someRejected || kept < pool), `D kept part of the pool: ${rows[1][0]}`);
  assert.match(note, /^D kept \d+% of G's samples/);
  for (const id of ['drs-plain', 'drs-kept']) assert.equal(await page.isVisible(`#${id}`), true, `${id} drawn`);
  // a gamma that keeps too few: a clear message, no table from fewer samples
  await page.fill('#drs-gamma', '40');
  await page.click('#drs-run');
  await page.waitForSelector('#gan-error:not([hidden])', { timeout: 120_000 });
  assert.match(await page.textContent('#gan-error'), /kept \d+ of 5000 samples, fewer than the 500 asked for: lower gamma/);
  await stopped(page);
}

/**
 * "Langevin on D" on the current G and D: `steps` steps of `eps` moving the 500 latent vectors
 * of "G alone"; two scored rows and both strips; a step size out of range is refused with a
 * clear message.
 */
async function langevinOnD(page, label, steps, eps) {
  await page.fill('#ddls-steps', String(steps));
  await page.fill('#ddls-eps', String(eps));
  const t0 = Date.now();
  await page.click('#ddls-run');
  await page.waitForSelector('#ddls-table[data-rows="2"], #gan-error:not([hidden])', { timeout: 600_000 });
  await stopped(page);
  assert.equal(await page.isVisible('#gan-error'), false, `no error: ${await page.textContent('#gan-error')}`);
  const rows = await page.$$eval('#ddls-table tbody tr', (trs) => trs.map((tr) => [...tr.cells].map((c) => c.textContent)));
  const note = await page.textContent('#ddls-out');
  console.log(`Langevin on D (${label}, ${((Date.now() - t0) / 1000).toFixed(0)} s):\n${rows.map((r) => r.join(' | ')).join('\n')}\n${note}`);
  for (const r of rows) assert.ok(Number(r[1]) >= 1 && Number(r[1]) <= 10 && Number(r[2]) >= 0, `score and distance: ${r}`);
  assert.match(rows[1][0], new RegExp(`Langevin on D \\(${steps} steps of ${eps}\\)`));
  assert.match(note, /^On the same 500 latent vectors, the score went from/);
  for (const id of ['ddls-plain', 'ddls-moved']) assert.equal(await page.isVisible(`#${id}`), true, `${id} drawn`);
  await page.fill('#ddls-eps', '0');
  await page.click('#ddls-run');
  await page.waitForSelector('#gan-error:not([hidden])', { timeout: 60_000 });
  assert.match(await page.textContent('#gan-error'), /step size must be in \(0, 1\]/);
  await stopped(page);
}

test('GAN tab, CPU path: quick start draws the class histogram while training; latent tools and the game on the tab-trained model; D options train', async () => {
  const { page, foreign, problems } = await openPage(S, { args: NO_WEBGPU, hash: '#gan', ignoreLoadFailures: { test: (url) => !OUR_ASSETS.test(url) } });
  await page.waitForSelector('#gan-backend[data-kind="cpu"]', { timeout: 60_000 });
  assert.equal(await page.getAttribute('#gan-hist', 'data-total'), null, 'no histogram before scoring');
  await page.fill('#gan-quality-every', '40');
  await page.click('#gan-quick');
  await page.waitForFunction(() => Number(document.getElementById('gan-hist').dataset.total) > 0, null, { timeout: 180_000 });
  await page.click('#gan-pause');
  await stopped(page);
  const pct = (await page.getAttribute('#gan-hist', 'data-percent')).split(',').map(Number);
  const caption = await page.textContent('#gan-hist-caption');
  console.log(`quick start: ${await page.textContent('#gan-progress')}\nhistogram: ${pct.join(' ')}\n${caption}`);
  assert.equal(pct.length, 10, 'one bar per class');
  assert.ok(Math.abs(pct.reduce((a, b) => a + b, 0) - 100) < 0.5, 'shares sum to 100%');
  assert.equal(await page.getAttribute('#gan-hist', 'data-total'), '500');
  assert.match(caption, /score \d+\.\d\d, Frechet \d+, classes \d+\.\d-\d+\.\d%/);
  assert.equal(await page.inputValue('#gan-form [name="arch"]'), 'dense', 'the preset is in the form');
  assert.equal(await page.inputValue('#gan-form [name="ema"]'), '0.998');
  assert.match(await page.textContent('#gan-model'), /moving average of G's weights \(decay 0\.998\)/, 'samples come from the EMA of G');

  // the latent tools and the game on the model trained here
  await page.selectOption('#gan-form [name="pick"]', 'a');
  await cellClick(page, 0);
  await page.selectOption('#gan-form [name="pick"]', 'b');
  await cellClick(page, 9);
  assert.match(await page.textContent('#gan-interp-note'), /path from sample A to sample B/);
  for (const [g, k] of [['p', 1], ['q', 2], ['r', 3]]) {
    await page.selectOption('#gan-form [name="pick"]', g);
    await cellClick(page, k);
  }
  assert.match(await page.textContent('#gan-arith-note'), /P − Q \+ R/);
  await page.click('#gan-game-new');
  await stopped(page);
  await page.click('#gan-game-check');
  assert.match(await page.textContent('#gan-game-out'), /You: \d\/8 right\. D: \d\/8 right/);
  await page.screenshot({ path: join(OUT, 'gan-quickstart.png'), fullPage: true });
  // a few dozen steps in: D is sure of itself and keeps few at gamma 0 (a clear message then),
  // so a lower gamma
  await rejectionByD(page, 'the dense GAN trained here', -10, false);

  // D's options: a DCGAN with all of them trains a few finite steps
  await page.uncheck('#gan-quality-auto');
  await page.click('.gan-options summary');
  await page.selectOption('#gan-form [name="arch"]', 'dcgan');
  await page.fill('#gan-form [name="batch"]', '16');
  await page.fill('#gan-form [name="real"]', '0.9');
  await page.check('#gan-form [name="mbstd"]');
  await page.fill('#gan-form [name="smooth"]', '1');
  await page.fill('#gan-form [name="fgsm"]', '0.5');
  await page.fill('#gan-form [name="lrd"]', '4e-4');
  await page.click('#gan-reset');
  await stopped(page);
  await page.click('#gan-train');
  await page.waitForFunction(() => Number(document.getElementById('gan-progress').dataset.step) >= 3, null, { timeout: 120_000 });
  await page.click('#gan-pause');
  await stopped(page);
  const progress = await page.textContent('#gan-progress');
  console.log(`DCGAN with D options: ${progress}`);
  assert.doesNotMatch(progress, /NaN|Infinity/);
  assert.equal(await page.isVisible('#gan-error'), false, 'no error');
  assert.deepEqual(foreign, []);
  assert.deepEqual(problems, []);
});

test('GAN tab, CPU path: the Autoencoder vs GAN panel draws four strips and scores each; rejection by D and Langevin on D on the pretrained pair', async () => {
  const { page, foreign, problems } = await openPage(S, { args: NO_WEBGPU, hash: '#gan', ignoreLoadFailures: { test: (url) => !OUR_ASSETS.test(url) && !/ae_plain_k2/.test(url) } });
  await page.waitForSelector('#gan-backend[data-kind="cpu"]', { timeout: 60_000 });
  await page.click('#aevg-run');
  await page.waitForSelector('#aevg-table[data-rows="4"]', { timeout: 300_000 });
  await stopped(page);
  const rows = await page.$$eval('#aevg-table tbody tr', (trs) => trs.map((tr) => [...tr.cells].map((c) => c.textContent)));
  console.log(rows.map((r) => r.join(' | ')).join('\n'));
  console.log(await page.textContent('#aevg-out'));
  assert.equal(rows.length, 4);
  assert.match(rows[1][1], /^0\.\d{4}$/, 'the reconstructions have an MSE');
  assert.equal(rows[3][1], '—', 'the GAN samples have none');
  for (const r of rows) assert.ok(Number(r[2]) >= 1 && Number(r[2]) <= 10 && Number(r[3]) >= 0, `score and distance: ${r}`);
  for (const id of ['aevg-real', 'aevg-recon', 'aevg-random', 'aevg-gan']) assert.equal(await page.isVisible(`#${id}`), true, `${id} drawn`);
  assert.match(await page.textContent('#aevg-out'), /autoencoder copies a given digit/);
  await page.screenshot({ path: join(OUT, 'gan-ae-vs-gan.png'), fullPage: true });
  await rejectionByD(page, 'the pretrained DCGAN', 0, true);
  await page.screenshot({ path: join(OUT, 'gan-rejection.png'), fullPage: true });
  await langevinOnD(page, 'the pretrained DCGAN', 10, 0.1);
  await page.screenshot({ path: join(OUT, 'gan-langevin.png'), fullPage: true });
  assert.deepEqual(foreign, []);
  assert.deepEqual(problems, []);
});
