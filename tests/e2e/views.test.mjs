// End-to-end: the views a ConvNetJS user expects (issue 22 item 5, www/filters.js) draw.
//  1. Denoise tab (CPU backend): after a small photo is denoised, Show draws the first-layer
//     filters of the model in use, the crop and its feature maps; another layer redraws them.
//  2. Adversarial tab (WebGPU): after the first attack, conv1's filters and one layer's outputs
//     for the digit and its adversarial version draw; fc1's units too.
// Run: node --test tests/e2e/views.test.mjs   (after ./build.sh build)
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { NO_WEBGPU, OUT, WEBGPU, openPage, suite } from './harness.mjs';
import { grayPng } from './png.mjs';

const S = suite([
  ['www/data/mnist_page.bin', 'run ./build.sh setup first'],
  ['www/models/dncnn_blind_gray.safetensors', 'train it (see the README)'],
  ['www/models/classifier.safetensors', 'train it (see the README)'],
]);
const SLOW = 200_000;

/** {w, h, distinct}: a canvas's size and how many distinct gray levels it holds. */
const canvasInfo = (page, sel) =>
  page.$eval(sel, (c) => {
    if (!c.width || !c.height) return { w: c.width, h: c.height, distinct: 0 };
    const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
    const seen = new Set();
    for (let i = 0; i < d.length; i += 4) seen.add(d[i]);
    return { w: c.width, h: c.height, distinct: seen.size };
  });

async function assertDrawn(page, sel) {
  const c = await canvasInfo(page, sel);
  assert.ok(c.w > 0 && c.h > 0 && c.distinct > 2, `${sel} is drawn: ${JSON.stringify(c)}`);
  return c;
}

test('Denoise tab: first-layer filters and a layer\'s feature maps of the photo on screen', async () => {
  const { page, problems } = await openPage(S, { args: NO_WEBGPU, hash: '#denoise', ignoreLoadFailures: /./ });
  await page.waitForFunction(() => /blind gray ✓/.test(document.getElementById('dn-models').textContent), null, { timeout: 60_000 });
  await page.selectOption('#dn-model', 'blind');
  const photo = grayPng(96, 80, (x, y) => Math.round(128 + 100 * Math.sin(x / 5) * Math.cos(y / 7)));
  await page.setInputFiles('#dn-file', { name: 'waves.png', mimeType: 'image/png', buffer: photo });
  await page.waitForFunction(() => document.getElementById('dn-info').dataset.state === 'done', null, { timeout: SLOW });
  await page.click('#dn-fv-show');
  await page.waitForSelector('#dn-views[data-done="true"]', { timeout: SLOW });
  const filters = await assertDrawn(page, '#dn-fv-filters');
  await assertDrawn(page, '#dn-fv-crop');
  const maps = await assertDrawn(page, '#dn-fv-maps');
  const [, depth, width] = (await page.textContent('#dn-models')).match(/blind gray ✓ \(depth (\d+), width (\d+)/);
  assert.equal(await page.$eval('#dn-fv-filters', (c) => Number(c.dataset.drawn)), Number(width), 'one filter per first-layer channel');
  console.log(`filters ${filters.w}x${filters.h}, maps ${maps.w}x${maps.h}: ${await page.textContent('#dn-fv-status')}`);
  const layers = await page.$$eval('#dn-fv-layer option', (o) => o.length);
  assert.equal(layers, Number(depth) - 1, 'every layer with feature maps is offered');
  // another layer, more maps: redrawn
  await page.evaluate(() => delete document.getElementById('dn-views').dataset.done);
  await page.selectOption('#dn-fv-layer', String(layers - 1));
  await page.waitForSelector('#dn-views[data-done="true"]', { timeout: SLOW });
  await assertDrawn(page, '#dn-fv-maps');
  assert.match(await page.textContent('#dn-fv-status'), new RegExp(`after layer ${layers} of`));
  await page.$eval('#dn-views', (e) => e.scrollIntoView());
  await page.screenshot({ path: join(OUT, 'views-denoise.png') });
  assert.deepEqual(problems, []);
});

test('Adversarial tab: conv1 filters and a layer\'s outputs for the digit and its adversarial version', async () => {
  const { page, problems } = await openPage(S, { args: WEBGPU, hash: '#adversarial', ignoreLoadFailures: /classifier_adv/ });
  // the first digit is attacked once the digits and the model are in
  await page.waitForSelector('#adv-views[data-done="true"]', { timeout: SLOW });
  await assertDrawn(page, '#adv-fv-filters');
  const clean = await assertDrawn(page, '#adv-fv-clean');
  await assertDrawn(page, '#adv-fv-adv');
  assert.equal(await page.$eval('#adv-fv-filters', (c) => Number(c.dataset.drawn)), 32, 'conv1 has 32 filters');
  console.log(`conv1 maps ${clean.w}x${clean.h}: ${await page.textContent('#adv-fv-status')}`);
  await page.evaluate(() => delete document.getElementById('adv-views').dataset.done);
  await page.selectOption('#adv-fv-layer', '3');
  await page.waitForSelector('#adv-views[data-done="true"][data-layer="3"]', { timeout: SLOW });
  await assertDrawn(page, '#adv-fv-clean');
  assert.equal(await page.$eval('#adv-fv-clean', (c) => Number(c.dataset.drawn)), 128, 'fc1 has 128 units');
  assert.match(await page.textContent('#adv-fv-status'), /^fc1/);
  await page.$eval('#adv-views', (e) => e.scrollIntoView());
  await page.screenshot({ path: join(OUT, 'views-adversarial.png') });
  assert.deepEqual(problems, []);
});
