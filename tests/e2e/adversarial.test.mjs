// End-to-end: the Adversarial tab in a real headless Chromium (Debian's /usr/bin/chromium driven
// by playwright-core), on WebGPU (Chromium's SwiftShader) and on the CPU fallback. A user picks a
// digit, moves the eps slider to 0.25 and sees the prediction flip; draws a digit; computes a
// (small) robustness curve; trains a classifier for a few steps and attacks it.
// SwiftShader emulates the GPU on the CPU (slowly), so the work here is kept small: curves over
// 20 digits, and the 20 training steps of 16 digits run on the CPU backend. Screenshots go to
// tests/e2e/out/adversarial-*.png.
// Run: node --test tests/e2e/adversarial.test.mjs   (after ./build.sh build)
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { NO_WEBGPU, OUT, WEBGPU, openPage, suite } from './harness.mjs';

// what this tab loads; other tabs' assets (e.g. weights not trained yet) are theirs to check
const OUR_ASSETS = /\/(data\/mnist_page\.bin|models\/classifier(_adv)?\.safetensors|adversarial\.(js|css))$/;

const S = suite([
  ['www/data/mnist_page.bin', 'run ./build.sh setup first'],
  ['www/models/classifier.safetensors', 'train it (see the README)'],
]);

/**
 * Headless Chromium (fresh profile, given flags) showing the Adversarial tab. `missing`: URL
 * endings answered with 404. Failed loads of other tabs' assets are left to their tests.
 */
const openTab = (args, { missing = [], hash = '#adversarial' } = {}) =>
  openPage(S, { args, missing, hash, ignoreLoadFailures: { test: (url) => !OUR_ASSETS.test(url) } });

/** Wait until the attack view has answered the latest change; returns its data attributes. */
async function attackDone(page) {
  await page.waitForSelector('#adv-verdict[data-busy="false"]', { timeout: 120_000 });
  return page.$eval('#adv-verdict', (el) => ({ ...el.dataset, text: el.textContent }));
}

async function setEps(page, key, times = 1) {
  await page.focus('#adv-eps');
  for (let i = 0; i < times; i++) await page.keyboard.press(key);
  return attackDone(page);
}

/** The robustness table as { model: [acc at each eps] }. */
async function curveTable(page) {
  return page.$$eval('#adv-curve-table tbody tr', (rows) =>
    Object.fromEntries(rows.map((r) => [r.dataset.model, [...r.querySelectorAll('td')].map((td) => Number(td.dataset.acc))])),
  );
}

test('Adversarial tab on WebGPU: FGSM at eps 0.25 flips a digit; targeted; drawing; curve', async () => {
  const { page, foreign, problems } = await openTab(WEBGPU);
  assert.equal(await page.getAttribute('#status', 'data-kind'), 'gpu', 'this test needs WebGPU (SwiftShader)');
  await page.waitForSelector('#adv-model-standard[data-state="loaded"]', { timeout: 120_000 });
  console.log(`models: ${(await page.textContent('#adv-models')).replace(/\s+/g, ' ').trim()}`);
  if ((await page.getAttribute('#status', 'data-fallback')) === 'true') {
    assert.match(await page.textContent('#adv-backend-notice'), /software adapter/);
  }

  // ---- pick a digit the model gets right at eps 0, then move the slider to 0.25 (FGSM)
  await page.waitForSelector('#adv-verdict[data-state="done"]', { timeout: 120_000 }); // digits loaded, first one attacked
  assert.equal(await page.inputValue('#adv-attack'), 'fgsm');
  const thumbs = await page.$$('#adv-grid .adv-thumb');
  assert.ok(thumbs.length >= 10, 'the grid shows digits to pick');
  let flipped = null;
  const tried = [];
  for (const thumb of thumbs.slice(0, 6)) {
    await thumb.click();
    let v = await setEps(page, 'Home');
    assert.equal(v.eps, '0.00');
    assert.equal(v.before, v.after, 'eps 0 changes nothing');
    if (v.before !== v.label) {
      tried.push(`#${await thumb.getAttribute('data-index')} misclassified`);
      continue;
    }
    v = await setEps(page, 'ArrowRight', 25); // step 0.01 -> 0.25, one key press at a time
    assert.equal(v.eps, '0.25');
    tried.push(`#${await thumb.getAttribute('data-index')} (label ${v.label}) -> ${v.after}`);
    if (v.after !== v.before) {
      flipped = v;
      break;
    }
  }
  console.log(`FGSM at 0.25 on the standard model: ${tried.join(', ')}`);
  assert.ok(flipped, `FGSM at eps 0.25 flipped none of the digits tried: ${tried.join(', ')}`);
  console.log(`verdict: ${flipped.text}`);
  assert.match(flipped.text, /the prediction flipped/);
  // the three images and the bars are drawn
  const afterBar = await page.$eval(`#adv-bars .adv-bar-row:nth-child(${Number(flipped.after) + 1}) .adv-bar.after`, (el) => parseFloat(el.style.width));
  assert.ok(afterBar > 0, 'the new class has a bar after the attack');
  await page.locator('#panel-adversarial .adv-top').screenshot({ path: join(OUT, 'adversarial-attack.png') });

  // ---- a targeted iterative attack toward 3 (on the same digit, eps 0.25)
  await page.selectOption('#adv-attack', 'targeted_iterative');
  await page.selectOption('#adv-target', flipped.label === '3' ? '5' : '3');
  const target = flipped.label === '3' ? '5' : '3';
  const t = await attackDone(page);
  console.log(`targeted: ${t.text}`);
  assert.equal(t.after, target, `the targeted iterative attack at 0.25 should reach class ${target}`);
  await page.selectOption('#adv-attack', 'fgsm');

  // ---- draw a digit ("7": a bar and a diagonal) on the canvas
  await page.check('input[name="adv-source"][value="draw"]');
  const box = await page.locator('#adv-draw-canvas').boundingBox();
  const at = (x, y) => [box.x + (x * box.width) / 280, box.y + (y * box.height) / 280];
  await page.mouse.move(...at(70, 60));
  await page.mouse.down();
  for (const [x, y] of [[130, 60], [200, 60], [180, 120], [160, 180], [140, 240]]) await page.mouse.move(...at(x, y), { steps: 4 });
  await page.mouse.up();
  const d = await setEps(page, 'Home');
  console.log(`drawn digit: ${d.text}`);
  assert.match(d.text, /no true label: taking the model's prediction \d/);
  const ink = await page.$eval('#adv-draw-preview', (c) => {
    const a = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
    let s = 0;
    for (let i = 0; i < a.length; i += 4) s += a[i];
    return s / 255 / (a.length / 4);
  });
  assert.ok(ink > 0.03 && ink < 0.5, `the 28x28 preview shows the preprocessed drawing (ink fraction ${ink})`);
  await page.locator('#panel-adversarial .adv-top').screenshot({ path: join(OUT, 'adversarial-draw.png') });
  await page.check('input[name="adv-source"][value="pick"]');

  // ---- robustness curve of the standard model on 20 digits (SwiftShader is slow; the page
  // offers up to 2,000; the CPU test below compares both models)
  for (const w of ['adversarial', 'pgd']) {
    if (await page.isEnabled(`#adv-curve-${w}`)) await page.uncheck(`#adv-curve-${w}`);
  }
  await page.selectOption('#adv-curve-n', '20');
  await page.click('#adv-curve-run');
  await page.waitForSelector('#adv-curve-status[data-state="done"], #adv-curve-status[data-state="error"]', { timeout: 150_000 });
  console.log(`curve: ${await page.textContent('#adv-curve-status')}`);
  assert.equal(await page.getAttribute('#adv-curve-status', 'data-state'), 'done');
  const curve = await curveTable(page);
  console.log(`curve table (eps 0, 0.05, ..., 0.3): ${JSON.stringify(curve)}`);
  assert.ok(curve.standard[0] >= 0.9, 'the standard model is accurate on clean digits');
  assert.ok(curve.standard[5] <= 0.5, 'FGSM at 0.25 breaks the standard model on most digits');

  await page.screenshot({ path: join(OUT, 'adversarial-gpu.png'), fullPage: true });

  assert.deepEqual(problems, [], 'no errors in the page or the worker');
  assert.deepEqual(foreign, [], 'no request may leave 127.0.0.1');
});

test('Adversarial tab without WebGPU: CPU notice; attack; curve of both models; training', async () => {
  const { page, foreign, problems } = await openTab(NO_WEBGPU);
  assert.equal(await page.getAttribute('#status', 'data-kind'), 'cpu');
  await page.waitForSelector('#adv-backend-notice:not([hidden])', { timeout: 60_000 });
  assert.match(await page.textContent('#adv-backend-notice'), /runs on the CPU backend/);
  await page.waitForSelector('#adv-model-standard[data-state="loaded"]', { timeout: 60_000 });
  // the page's digits (31 MB) may still be loading after the models are: wait until the first
  // digit is picked and attacked, or the slider below moves with nothing to attack
  await page.waitForSelector('#adv-verdict[data-state="done"]', { timeout: 120_000 });
  const v = await setEps(page, 'End'); // eps 0.5
  assert.equal(v.eps, '0.50');
  assert.match(v.text, /After FGSM/);

  await page.selectOption('#adv-curve-n', '20');
  await page.click('#adv-curve-run');
  await page.waitForSelector('#adv-curve-status[data-state="done"], #adv-curve-status[data-state="error"]', { timeout: 120_000 });
  assert.equal(await page.getAttribute('#adv-curve-status', 'data-state'), 'done', await page.textContent('#adv-curve-status'));
  const curve = await curveTable(page);
  console.log(`CPU curve (eps 0, 0.05, ..., 0.3): ${JSON.stringify(curve)}`);
  assert.ok(curve.standard[0] >= 0.9 && curve.standard[5] <= 0.5);
  if (curve.adversarial) {
    assert.ok(curve.adversarial[5] >= curve.standard[5] + 0.3, 'the adversarially trained model holds up far better at 0.25');
  } else {
    console.log('NOTE: models/classifier_adv.safetensors is missing, so the curve has the standard model only');
  }
  if (curve.pgd) {
    assert.ok(curve.pgd[5] >= curve.standard[5] + 0.3, 'the PGD-trained model holds up far better at 0.25');
  } else {
    console.log('NOTE: models/classifier_pgd.safetensors is missing, so the curve has no PGD-trained model');
  }
  // ---- train a small classifier from scratch for 20 steps of 16 digits (here on the CPU
  // backend, 3x quicker than SwiftShader's emulated GPU); its loss falls
  await page.selectOption('#adv-train-batch', '16');
  await page.click('#adv-train-run');
  await page.waitForFunction(() => Number(document.querySelector('#adv-train-status').dataset.step || 0) >= 20, null, { timeout: 150_000 });
  await page.click('#adv-train-run'); // pause
  await page.waitForSelector('#adv-train-status[data-state="paused"]', { timeout: 60_000 });
  const ts = await page.$eval('#adv-train-status', (el) => ({ ...el.dataset, text: el.textContent }));
  console.log(`training: ${ts.text}; mean loss of the first 5 steps ${ts.lossStart}, of the last 5 ${ts.lossNow}`);
  assert.ok(Number(ts.lossNow) < 0.85 * Number(ts.lossStart), `the training loss falls (${ts.lossStart} -> ${ts.lossNow})`);
  assert.equal(await page.textContent('#adv-train-run'), 'Resume');

  // ---- and attack it
  await page.click('#adv-train-attack');
  const tv = await attackDone(page);
  assert.equal(await page.inputValue('#adv-model'), 'trained');
  console.log(`attack on the in-tab model: ${tv.text}`);
  assert.equal(tv.state, 'done');
  await page.screenshot({ path: join(OUT, 'adversarial-cpu.png'), fullPage: true });
  assert.deepEqual(problems, [], 'no errors in the page or the worker');
  assert.deepEqual(foreign, [], 'no request may leave 127.0.0.1');
});

test('Adversarial tab: missing model files are named', async () => {
  const missing = ['/models/classifier.safetensors', '/models/classifier_adv.safetensors', '/models/classifier_pgd.safetensors'];
  // opened on the first tab: the Adversarial tab loads its assets only when first shown
  const { page, foreign, problems } = await openTab(NO_WEBGPU, { missing, hash: '' });
  assert.equal(await page.getAttribute('#adv-model-standard', 'data-state'), 'loading');
  await page.click('#tab-adversarial');
  for (const which of ['standard', 'adversarial', 'pgd']) {
    await page.waitForSelector(`#adv-model-${which}[data-state="missing"]`, { timeout: 60_000 });
  }
  const lines = (await page.textContent('#adv-models')).replace(/\s+/g, ' ').trim();
  console.log(`missing model lines: ${lines}`);
  assert.match(lines, /Standard classifier: missing — models\/classifier\.safetensors/);
  assert.match(lines, /Adversarially trained classifier: missing — models\/classifier_adv\.safetensors/);
  assert.match(lines, /PGD-trained classifier: missing — models\/classifier_pgd\.safetensors/);
  const v = await attackDone(page);
  assert.match(v.text, /Train a classifier in section 4 first/);
  assert.equal(await page.inputValue('#adv-model'), 'trained', 'the attack view waits for a model trained in the tab');
  assert.equal(await page.isDisabled('#adv-train-run'), false, 'training needs no shipped file');
  assert.deepEqual(problems, [], 'no errors in the page or the worker');
  assert.deepEqual(foreign, [], 'no request may leave 127.0.0.1');
});
