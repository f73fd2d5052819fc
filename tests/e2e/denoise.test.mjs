// End-to-end tests of the Denoise tab in a real headless Chromium (Debian's chromium driven by
// playwright-core, WebGPU on its SwiftShader adapter):
//  1. a Set12 image with synthetic noise (sigma 25, seed 1) denoised on WebGPU by the blind gray
//     model: the PSNR gain the page reports is >= 5 dB; the PNG download decodes to the same size;
//  2. a small DnCNN trained in the tab: the loss falls; the weights download loads back into the
//     page, and into the CLI (`nnlab denoise --model PATH`) when the native binary is built;
//  3. bad input (empty file, garbage bytes, truncated PNG, a PNG over the megapixel cap, a wrong
//     weights file) gives a clear message and the next upload works; a missing model file is
//     reported as "model not available".
//  4. a 24-megapixel photo under the default WebGPU limits and under a 4 MiB storage-binding cap
//     (?binding-limit-mb=4): it opens, is split into tiles that fit (smaller and more under the
//     cap), tiles get denoised, Cancel stops it, and the next upload works.
//  5. on the CPU backend, a photo's tiles spread over 3 helper workers (?workers=3) give the
//     same pixels as one worker (?workers=1); Cancel stops the helpers and the next run works.
// Screenshots go to tests/e2e/out/denoise-*.png. Set12 is read from ../shared/data (or
// $NNLAB_DATA) in node and uploaded through the file input: it is never served.
// Run: node --test tests/e2e/denoise.test.mjs   (after ./build.sh build)
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { deflateSync } from 'node:zlib';
import { DATA, NO_WEBGPU, OUT, ROOT, openPage, suite } from './harness.mjs';
import { chunk, grayPng, rgbaPng } from './png.mjs';

const SET12 = join(DATA, 'denoise', 'Set12');
const NNLAB = join(ROOT, 'target', 'release', 'nnlab');
// SwiftShader emulates the GPU on the CPU: every wait is generous
const SLOW = 200_000;

const S = suite([
  [join(SET12, '01.png'), 'set NNLAB_DATA to the folder holding denoise/'],
  ['www/models/dncnn_blind_gray.safetensors', 'train it (see the README)'],
]);

/**
 * The page in a fresh headless Chromium, on the Denoise tab with the backend started.
 * `missing`: www paths answered 404 (to test a missing model file).
 */
async function openDenoise({ missing = [], query = '' } = {}) {
  const r = await openPage(S, { query, hash: '#denoise', missing, acceptDownloads: true });
  const status = await r.page.textContent('#status-text');
  assert.match(status, /^Backend: WebGPU on /, `the tests run on WebGPU; the status line says: ${status}`);
  assert.equal(await r.page.isVisible('#panel-denoise'), true);
  return r;
}

/** Wait until the shipped blind gray model is loaded (the model line names its depth). */
async function blindLoaded(page) {
  await page.waitForFunction(() => /blind gray ✓/.test(document.getElementById('dn-models').textContent), null, { timeout: 60_000 });
}

/** Train the smallest DnCNN the Train panel offers (depth 4, width 16, batch 8) for `steps`
 *  steps, then pause and wait until the loop has stopped. SwiftShader runs each step on the
 *  CPU, a few seconds each. */
async function trainSmallModel(page, steps) {
  await page.selectOption('#dn-depth', '4');
  await page.selectOption('#dn-width', '16');
  await page.selectOption('#dn-batch', '8');
  await page.click('#dn-train-start');
  await page.waitForFunction((n) => Number(document.getElementById('dn-train-stats').dataset.step || 0) >= n, steps, { timeout: SLOW });
  await page.click('#dn-train-pause');
  await page.waitForFunction(() => document.getElementById('dn-train-stats').dataset.running === 'false', null, { timeout: 60_000 });
}

async function upload(page, name, buffer, mimeType = 'image/png') {
  await page.setInputFiles('#dn-file', { name, mimeType, buffer });
}

/** Wait for the denoising started by an upload or a click to end; returns {state, info, error}. */
async function outcome(page) {
  await page.waitForFunction(() => ['done', 'error'].includes(document.getElementById('dn-info').dataset.state), null, { timeout: SLOW });
  return page.evaluate(() => ({
    state: document.getElementById('dn-info').dataset.state,
    info: document.getElementById('dn-info').textContent,
    error: document.getElementById('dn-error').hidden ? null : document.getElementById('dn-error').textContent,
  }));
}

async function setNoise(page, on, sigma = 25, seed = 1) {
  await page.setChecked('#dn-noise', on);
  await page.$eval('#dn-sigma', (e, v) => {
    e.value = String(v);
    e.dispatchEvent(new Event('input'));
  }, sigma);
  await page.fill('#dn-seed', String(seed));
}

// ---------------------------------------------------------------- test inputs (PNG writer: png.mjs)

/** A PNG whose header says w x h, with one row of pixel data (refused before decoding). */
function pngHeaderOnly(w, h) {
  const full = grayPng(1, 1, () => 0);
  const ihdr = Buffer.alloc(13);
  ihdr.writeUInt32BE(w, 0);
  ihdr.writeUInt32BE(h, 4);
  ihdr[8] = 8;
  const idat = chunk('IDAT', deflateSync(Buffer.alloc(w + 1)));
  return Buffer.concat([full.subarray(0, 8), chunk('IHDR', ihdr), idat, chunk('IEND', Buffer.alloc(0))]);
}

// ---------------------------------------------------------------- 1. Set12 on WebGPU

test('Set12 01.png with sigma 25 8-bit noise: the blind gray model gains >= 5 dB on WebGPU', async () => {
  const { page, foreign, problems } = await openDenoise();
  await blindLoaded(page);
  await page.selectOption('#dn-model', 'blind');
  await setNoise(page, true, 25, 1);
  const t0 = Date.now();
  await upload(page, '01.png', readFileSync(join(SET12, '01.png')));
  const r = await outcome(page);
  assert.equal(r.error, null, `denoising failed: ${r.error}`);
  assert.equal(r.state, 'done');
  const m = await page.$eval('#dn-metrics', (e) => ({ ...e.dataset }));
  const gain = Number(m.gain);
  console.log(`Set12 01.png sigma 25 seed 1, blind gray on WebGPU: noisy ${Number(m.psnrIn).toFixed(2)} dB -> ` +
    `denoised ${Number(m.psnrOut).toFixed(2)} dB (SSIM ${m.ssimOut}), gain ${gain.toFixed(2)} dB, ${((Date.now() - t0) / 1000).toFixed(1)} s; ${r.info}`);
  // the page clips the noisy photo to 8 bits (the CLI's --clip): 20.54 dB, where unclipped noise gives 20.17
  assert.ok(Math.abs(Number(m.psnrIn) - 20.54) < 0.1, `noisy 8-bit PSNR at sigma 25 should be ~20.54 dB, got ${m.psnrIn}`);
  assert.ok(gain >= 5, `PSNR gain ${gain} dB < 5 dB`);
  assert.match(await page.textContent('#dn-cap-out'), /denoised \(blind gray\)/);
  await page.screenshot({ path: join(OUT, 'denoise-set12.png'), fullPage: true });

  // the before/after slider at 1:1
  await page.check('input[name="dn-view"][value="slider"]');
  await page.check('#dn-zoom');
  await page.$eval('#dn-split', (e) => {
    e.value = '35';
    e.dispatchEvent(new Event('input'));
  });
  assert.equal(await page.isVisible('#dn-compare'), true);
  assert.equal(await page.$eval('#dn-cmp-out', (c) => `${c.width}x${c.height}`), '256x256');
  await page.locator('.dn-view-card').screenshot({ path: join(OUT, 'denoise-slider.png') });

  // download: a PNG of the same size
  const [dl] = await Promise.all([page.waitForEvent('download'), page.click('#dn-download')]);
  assert.equal(dl.suggestedFilename(), '01-denoised.png');
  const png = readFileSync(await dl.path());
  assert.equal(png.subarray(1, 4).toString('ascii'), 'PNG');
  assert.deepEqual([png.readUInt32BE(16), png.readUInt32BE(20)], [256, 256]);

  // x8 self-ensemble on a small crop-sized image: same pipeline, 8 passes per tile
  const small = grayPng(64, 48, (x, y) => 128 + Math.round(90 * Math.sin(x / 6) * Math.cos(y / 9)));
  const psnrOf = async (ensemble) => {
    await page.setChecked('#dn-ensemble', ensemble);
    await upload(page, `waves-${ensemble}.png`, small);
    const o = await outcome(page);
    assert.equal(o.error, null, `denoising failed (ensemble ${ensemble}): ${o.error}`);
    return page.$eval('#dn-metrics', (e) => ({ ...e.dataset }));
  };
  const plain = await psnrOf(false);
  const ens = await psnrOf(true);
  console.log(`64x48 waves sigma 25: one pass ${Number(plain.psnrOut).toFixed(2)} dB, x8 self-ensemble ${Number(ens.psnrOut).toFixed(2)} dB`);
  assert.match(await page.textContent('#dn-cap-out'), /×8 self-ensemble/);
  assert.ok(Number(ens.gain) > 0 && ens.psnrOut !== plain.psnrOut, 'the ensemble runs and gives its own result');
  await page.setChecked('#dn-ensemble', false);

  assert.deepEqual(problems, [], 'no errors in the page or the worker');
  assert.deepEqual(foreign, [], 'no request may leave 127.0.0.1');
});

// ---------------------------------------------------------------- 2. training in the tab

test('Train panel: a small DnCNN trained in the tab lowers its loss; its weights load back', async () => {
  const { page, foreign, problems } = await openDenoise();
  const t0 = Date.now();
  await trainSmallModel(page, 10);
  // the loop validates once more after pausing
  await page.waitForFunction(() => document.getElementById('dn-train-stats').dataset.valPsnr, null, { timeout: 60_000 });
  const s = await page.$eval('#dn-train-stats', (e) => ({ ...e.dataset, text: e.textContent }));
  const secs = (Date.now() - t0) / 1000;
  console.log(`trained ${s.step} steps in ${secs.toFixed(1)} s: loss over the first 5 steps ${s.lossStart}, over the last 5 ${s.lossRecent}; ${s.text}`);
  assert.equal(await page.isVisible('#dn-train-error'), false, await page.textContent('#dn-train-error'));
  assert.ok(Number(s.lossRecent) < Number(s.lossStart), `the loss did not fall: ${s.lossStart} -> ${s.lossRecent}`);
  assert.match(s.text, /patches\/s/);
  assert.equal(await page.textContent('#dn-train-pause'), 'Resume');
  await page.locator('.dn-train').screenshot({ path: join(OUT, 'denoise-train.png') });

  // the weights file downloads, loads back into the page, and into the CLI
  const [dl] = await Promise.all([page.waitForEvent('download'), page.click('#dn-train-save')]);
  const weights = readFileSync(await dl.path());
  const file = join(OUT, 'denoise-trained.safetensors');
  writeFileSync(file, weights);
  await page.setInputFiles('#dn-weights', { name: 'mine.safetensors', mimeType: 'application/octet-stream', buffer: weights });
  await page.waitForFunction(() => /Loaded mine\.safetensors/.test(document.getElementById('dn-info').textContent), null, { timeout: 60_000 });
  assert.match(await page.textContent('#dn-info'), /depth 4, width 16/);
  if (existsSync(NNLAB)) {
    const out = join(OUT, 'denoise-cli.png');
    const log = execFileSync(NNLAB, ['denoise', join(SET12, '01.png'), out, '--model', file, '--backend', 'cpu'], { encoding: 'utf8', cwd: ROOT });
    console.log(`CLI with the page's weights: ${log.trim().split('\n').pop()}`);
    assert.ok(existsSync(out));
  } else {
    console.log(`!!! SKIPPED the CLI check: ${NNLAB} is not built (./build.sh build)`);
  }

  // "use for denoising": the trained model denoises a small image at once
  await setNoise(page, true, 10, 1);
  await upload(page, 'small.png', grayPng(64, 64, (x, y) => 128 + Math.round(60 * Math.sin(x / 5) * Math.cos(y / 7))));
  await outcome(page);
  await page.click('#dn-train-use');
  await page.waitForFunction(() => document.getElementById('dn-cap-out').textContent.includes('trained in this tab'), null, { timeout: SLOW });
  const r = await outcome(page);
  assert.equal(r.error, null);

  assert.deepEqual(problems, [], 'no errors in the page or the worker');
  assert.deepEqual(foreign, [], 'no request may leave 127.0.0.1');
});

// ---------------------------------------------------------------- 3. bad input

test('bad input: clear messages, the tab keeps working; a missing model is "not available"', async () => {
  const { page, foreign, problems } = await openDenoise({ missing: ['/models/dncnn_s10_gray.safetensors'] });
  await blindLoaded(page);
  await page.selectOption('#dn-model', 'blind');
  await setNoise(page, true, 25, 1);
  const good = grayPng(48, 40, (x, y) => (x * 5 + y * 3) % 256);
  const set12 = readFileSync(join(SET12, '01.png'));
  const cases = [
    ['empty.png', Buffer.alloc(0), /empty \(0 bytes\)/],
    ['garbage.png', Buffer.from(Array.from({ length: 3000 }, (_, i) => (i * 7919) % 251)), /not an image/],
    ['truncated.png', set12.subarray(0, Math.floor(set12.length / 3)), /corrupt or truncated/],
    ['huge.png', pngHeaderOnly(6000, 5000), /30\.0 megapixels, over the cap of 25\.0 megapixels/],
    // a format the browser build does not decode is named, not called corrupt
    ['photo.webp', Buffer.from('RIFF\x1a\0\0\0WEBPVP8L\x0d\0\0\0\x2f\0\0\0\0\0\0\0\0\0\0\0\0', 'latin1'), /WebP image: not supported/],
  ];
  for (const [name, bytes, want] of cases) {
    await upload(page, name, bytes);
    await page.waitForSelector('#dn-error:not([hidden])', { timeout: 60_000 });
    const msg = await page.textContent('#dn-error');
    console.log(`${name}: ${msg}`);
    assert.match(msg, new RegExp(`^${name.replace('.', '\\.')}: `));
    assert.match(msg, want);
    if (name === 'truncated.png') await page.screenshot({ path: join(OUT, 'denoise-bad-input.png') });
    // the next upload works
    await upload(page, 'good.png', good);
    const r = await outcome(page);
    assert.equal(r.error, null, `after ${name} the next upload failed: ${r.error}`);
    assert.equal(r.state, 'done');
    assert.equal(await page.$eval('#dn-out', (c) => `${c.width}x${c.height}`), '48x40');
  }

  // unusual but valid photos: EXIF orientation applied, alpha kept, colour through the gray
  // model plane by plane, a single pixel
  await upload(page, 'exif_rot6.jpg', readFileSync(join(ROOT, 'tests', 'data', 'images', 'exif_rot6.jpg')), 'image/jpeg');
  assert.equal((await outcome(page)).state, 'done');
  assert.equal(await page.$eval('#dn-out', (c) => `${c.width}x${c.height}`), '12x16', 'EXIF orientation 6 turns 16x12 into 12x16');
  await upload(page, 'alpha.png', rgbaPng(20, 14, (x, y) => [200, 10 * x, 15 * y, 40 + 10 * x]));
  const rgba = await outcome(page);
  assert.equal(rgba.state, 'done', rgba.error);
  assert.match(rgba.info, /each colour plane goes through the gray model.*Alpha kept/);
  const alpha = await page.$eval('#dn-out', (c) => [0, 7, 19].map((x) => c.getContext('2d').getImageData(x, 5, 1, 1).data[3]));
  assert.deepEqual(alpha, [40, 110, 230], 'the alpha plane comes back unchanged');
  await upload(page, 'one.png', grayPng(1, 1, () => 77));
  assert.equal((await outcome(page)).state, 'done');

  // a 100000 x 1 strip is ~200 tiles: Cancel stops it between two, and the tab goes on
  const strip = grayPng(100000, 1, (x) => (x * 13) % 256);
  await upload(page, 'strip.png', strip);
  await page.waitForFunction(() => /^([3-9]|\d\d+) \/ \d+ tiles/.test(document.getElementById('dn-progress-text').textContent), null, { timeout: 60_000 });
  console.log(`cancelling at: ${await page.textContent('#dn-progress-text')}`);
  await page.screenshot({ path: join(OUT, 'denoise-progress.png') });
  await page.click('#dn-cancel');
  await page.waitForFunction(() => document.getElementById('dn-info').dataset.state === 'cancelled');
  assert.equal(await page.isVisible('#dn-progress-row'), false);
  // run a quarter of it to the end (the whole strip is ~200 tile calls, 45 s on SwiftShader)
  await upload(page, 'strip25k.png', grayPng(25000, 1, (x) => (x * 13) % 256));
  const s = await outcome(page);
  assert.equal(s.state, 'done', s.error);
  console.log(`strip: ${s.info}`);
  assert.equal(await page.$eval('#dn-out', (c) => `${c.width}x${c.height}`), '25000x1');
  assert.match(await page.textContent('#dn-ssim-out'), /skipped \(photo smaller than the 11x11 window\)/);

  // a wrong weights file is refused; the shipped model still works after it
  await page.setInputFiles('#dn-weights', { name: 'wrong.safetensors', mimeType: 'application/octet-stream', buffer: Buffer.from('not weights at all') });
  await page.waitForSelector('#dn-error:not([hidden])');
  console.log(`wrong weights: ${await page.textContent('#dn-error')}`);
  assert.match(await page.textContent('#dn-error'), /^wrong\.safetensors: /);
  await page.click('#dn-run');
  assert.equal((await outcome(page)).state, 'done');
  // weights holding NaN are refused, naming the first bad tensor (the shipped model's first conv
  // set to NaN; safetensors: an 8-byte header length, the JSON header, then the data)
  const shipped = readFileSync(join(ROOT, 'www', 'models', 'dncnn_blind_gray.safetensors'));
  const headerLen = Number(shipped.readBigUInt64LE(0));
  const [from, to] = JSON.parse(shipped.subarray(8, 8 + headerLen).toString())['dncnn.0.weight'].data_offsets;
  const nan = Buffer.from(shipped);
  for (let i = 8 + headerLen + from; i < 8 + headerLen + to; i += 4) nan.writeFloatLE(NaN, i);
  await page.setInputFiles('#dn-weights', { name: 'nan.safetensors', mimeType: 'application/octet-stream', buffer: nan });
  await page.waitForFunction(() => /^nan\.safetensors: /.test(document.getElementById('dn-error').textContent), null, { timeout: 60_000 });
  console.log(`NaN weights: ${await page.textContent('#dn-error')}`);
  assert.match(await page.textContent('#dn-error'), /'dncnn\.0\.weight' holds \d+ non-finite values/);

  // the missing sigma=10 file: named on the model line, refused in the selector and the figures
  assert.match(await page.textContent('#dn-models'), /σ=10 gray: model not available/);
  assert.equal(await page.$eval('#dn-model option[value="s10"]', (o) => o.disabled), true);
  await page.click('[data-figure="s10"]');
  await page.waitForSelector('#dn-figure .error', { timeout: 60_000 });
  assert.match(await page.textContent('#dn-figure'), /model not available/);
  await page.screenshot({ path: join(OUT, 'denoise-no-model.png'), fullPage: true });

  assert.deepEqual(problems, [], 'no errors in the page or the worker');
  assert.deepEqual(foreign, [], 'no request may leave 127.0.0.1');
});

// ---------------------------------------------------------------- 4. a 24-megapixel photo

test('a 24-megapixel photo is tiled to fit the default limits and a 4 MiB binding cap; Cancel stops it', async () => {
  // 6000 x 4000, under the 25 MP cap; a smooth pattern so the PNG stays small
  const big = grayPng(6000, 4000, (x, y) => (x * 3 + y * 7) % 256);
  // a value that is not a number of MiB is ignored, and the status line says so
  {
    const { page } = await openDenoise({ query: '?binding-limit-mb=abc' });
    assert.match(await page.textContent('#status-text'), /\?binding-limit-mb ignored: not a positive number of MiB/);
    await page.close();
  }
  const plans = {};
  // ?layer-ms=0: tiles as big as the device allows (by default the tab times a layer on
  // SwiftShader and makes the tiles smaller still, so that Cancel never waits a second)
  for (const query of ['?layer-ms=0', '?layer-ms=0&binding-limit-mb=4']) {
    const { page, foreign, problems } = await openDenoise({ query });
    if (query.includes('binding')) assert.match(await page.textContent('#status-text'), /storage bindings capped at 4\.0 MiB/);
    // a small model trained for a step in the tab: a 512-pixel tile of the shipped 10-layer
    // model takes minutes on SwiftShader, of this one seconds (the tiling is the same code)
    await trainSmallModel(page, 1);
    await page.click('#dn-train-use');
    await setNoise(page, true, 25, 1);
    const t0 = Date.now();
    await upload(page, 'big.png', big);
    await page.waitForFunction(() => /^([2-9]|\d\d+) \/ \d+ tiles/.test(document.getElementById('dn-progress-text').textContent), null, { timeout: SLOW });
    const progress = await page.textContent('#dn-progress-text');
    const m = progress.match(/^(\d+) \/ (\d+) tiles \(up to (\d+)×\d+ pixels each\)/);
    assert.ok(m, `progress line: ${progress}`);
    plans[query.includes('binding') ? 'cap' : 'default'] = { tiles: Number(m[2]), side: Number(m[3]) };
    console.log(`24 MP with ${query}: ${progress} ${((Date.now() - t0) / 1000).toFixed(1)} s after the upload`);
    if (query.includes('binding')) await page.screenshot({ path: join(OUT, 'denoise-24mp.png') });
    await page.click('#dn-cancel');
    await page.waitForFunction(() => document.getElementById('dn-info').dataset.state === 'cancelled');
    // the tab goes on: a small photo denoises to the end
    await upload(page, 'small.png', grayPng(40, 30, (x, y) => (x * 5 + y * 3) % 256));
    const r = await outcome(page);
    assert.equal(r.state, 'done', r.error);
    assert.deepEqual(problems, [], 'no errors in the page or the worker');
    assert.deepEqual(foreign, [], 'no request may leave 127.0.0.1');
  }
  const [d, c] = [plans.default, plans.cap];
  assert.ok(c.side < d.side && c.tiles > d.tiles, `the cap gives smaller, more tiles: ${JSON.stringify(plans)}`);
});

// ---------------------------------------------------------------- 5. tiles over helper workers

/** A DnCNN weights file (safetensors) of depth 3, width 16, gray, with seeded values: a model
 *  the CPU backend runs in milliseconds per tile, wide enough that its 3x3 convs take the
 *  wasm Winograd path (whose rounding depends on a pixel's place in its tile). */
function tinyDncnn() {
  let s = 12345;
  const rnd = () => ((s = (s * 1103515245 + 12345) >>> 0) / 2 ** 32 - 0.5) * 0.3;
  const w = 16;
  const tensors = [
    ['dncnn.0.weight', [w, 1, 3, 3]], ['dncnn.0.bias', [w]], ['dncnn.2.weight', [w, w, 3, 3]],
    ['dncnn.3.weight', [w]], ['dncnn.3.bias', [w]], ['dncnn.3.running_mean', [w]], ['dncnn.3.running_var', [w], 1],
    ['dncnn.5.weight', [1, w, 3, 3]],
  ];
  const header = {};
  const parts = [];
  let off = 0;
  for (const [name, shape, base = 0] of tensors) {
    // a variance is positive: base + |noise|; the rest is noise
    const v = new Float32Array(shape.reduce((a, b) => a * b, 1)).map(() => (base ? base + Math.abs(rnd()) : rnd()));
    header[name] = { dtype: 'F32', shape, data_offsets: [off, off + v.byteLength] };
    parts.push(Buffer.from(v.buffer));
    off += v.byteLength;
  }
  let json = JSON.stringify(header);
  json += ' '.repeat((8 - (json.length % 8)) % 8);
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(BigInt(json.length));
  return Buffer.concat([len, Buffer.from(json), ...parts]);
}

test('CPU backend: tiles spread over helper workers give the same pixels as one worker; Cancel stops them', async () => {
  // 1100 x 300 colour with alpha through a gray model: 3 tiles of up to 512 per plane, 9 in all
  const photo = rgbaPng(1100, 300, (x, y) => [(x * 7 + y) % 256, (x + y * 5) % 256, (x * y) % 256, 100 + (x % 150)]);
  // 299 x 201: one tile on one worker, four of ~150 on three (crops at other offsets, an odd
  // side), denoised with the x8 self-ensemble (flips and turns)
  const odd = rgbaPng(299, 201, (x, y) => [(x * 3 + y * 7) % 256, (x * x + y) % 256, (x ^ y) % 256, 255]);
  const weights = tinyDncnn();
  const run = async (page, name = 'wide.png', png = photo) => {
    await upload(page, name, png);
    const r = await outcome(page);
    assert.equal(r.state, 'done', r.error);
    return page.evaluate(async () => {
      const c = document.getElementById('dn-out');
      const data = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
      const hash = new Uint8Array(await crypto.subtle.digest('SHA-256', data));
      return {
        size: `${c.width}x${c.height}`,
        hash: [...hash].map((b) => b.toString(16).padStart(2, '0')).join(''),
        workers: document.getElementById('dn-info').dataset.workers,
        psnr: document.getElementById('dn-metrics').dataset.psnrOut,
      };
    });
  };
  const results = {};
  for (const workers of [1, 3]) {
    const { page, foreign, problems } = await openPage(S, { args: NO_WEBGPU, query: `backend=cpu&workers=${workers}`, hash: '#denoise' });
    await page.setInputFiles('#dn-weights', { name: 'tiny.safetensors', mimeType: 'application/octet-stream', buffer: weights });
    await page.waitForFunction(() => /loaded file ✓/.test(document.getElementById('dn-models').textContent), null, { timeout: 60_000 });
    await page.selectOption('#dn-model', 'file');
    await setNoise(page, true, 25, 3);
    results[workers] = await run(page);
    console.log(`workers=${workers}: ${JSON.stringify(results[workers])} ${await page.textContent('#dn-info')}`);
    assert.equal(results[workers].workers, String(workers));
    if (workers > 1) {
      // Cancel in the middle of a x8 self-ensemble stops every helper; the next run is whole
      await page.setChecked('#dn-ensemble', true);
      await page.click('#dn-run');
      await page.waitForFunction(() => /^[1-8] \/ 9 tiles/.test(document.getElementById('dn-progress-text').textContent), null, { timeout: SLOW });
      await page.click('#dn-cancel');
      await page.waitForFunction(() => document.getElementById('dn-info').dataset.state === 'cancelled');
      await page.setChecked('#dn-ensemble', false);
      await page.click('#dn-run');
      const again = await outcome(page);
      assert.equal(again.state, 'done', again.error);
    }
    await page.setChecked('#dn-ensemble', true);
    results[workers].odd = await run(page, 'odd.png', odd);
    await page.setChecked('#dn-ensemble', false);
    console.log(`workers=${workers}, odd.png with the self-ensemble: ${JSON.stringify(results[workers].odd)} ${await page.textContent('#dn-info')}`);
    assert.deepEqual(problems, [], 'no errors in the page or its workers');
    assert.deepEqual(foreign, [], 'no request may leave 127.0.0.1');
  }
  assert.equal(results[3].size, '1100x300');
  assert.equal(results[3].hash, results[1].hash, 'the same pixels from 3 helper workers as from one worker');
  assert.equal(results[3].psnr, results[1].psnr);
  assert.equal(results[3].odd.size, '299x201');
  assert.equal(results[3].odd.hash, results[1].odd.hash, 'the same pixels of a photo tiled differently (and flipped) on 3 workers');
});
