// End-to-end: the Adversarial tab's "Improving the discriminator" panel (www/semi.js) in headless
// Chromium, on the CPU backend and on WebGPU (?backend=gpu: SwiftShader). Both models (labels
// only, + VAT consistency) train a few steps on 100 labelled page digits; on pause both get a
// held-out accuracy and the panel draws x^, r and x^ + r with F(x^) and F(x^ + r) for six
// digits. The shipped 100-label model's figures are shown. On the CPU path also: gradient ascent
// (L2) in the attack view and its robustness curve on 20 digits. Kept short for CI: a few steps.
// Run: node --test tests/e2e/semi.test.mjs   (after ./build.sh build)
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { NO_WEBGPU, OUT, WEBGPU, openPage, suite } from './harness.mjs';

const OUR_ASSETS = /\/(data\/mnist_page\.bin|models\/classifier(_adv|_semi100)?\.safetensors|semi\.(js|css))$/;

const S = suite([
  ['www/data/mnist_page.bin', 'run ./build.sh setup first'],
  ['www/models/classifier_semi100.safetensors', 'train it (see the README, Adversarial)'],
]);

async function trainFewSteps(args, query, name) {
  const { page, foreign, problems } = await openPage(S, { args, query, hash: '#adversarial', ignoreLoadFailures: { test: (url) => !OUR_ASSETS.test(url) } });
  if (query.includes('gpu')) assert.equal(await page.getAttribute('#status', 'data-kind'), 'gpu', 'this test needs WebGPU (SwiftShader)');
  await page.waitForSelector('#semi-status[data-state="ready"]', { timeout: 120_000 });
  await page.waitForSelector('#semi-shipped[data-state="loaded"]', { timeout: 120_000 });
  const shipped = await page.textContent('#semi-shipped');
  console.log(`${name}: ${shipped}`);
  assert.match(shipped, /test error \d+\.\d%/);
  // the shipped model's r on the unlabelled digits, drawn before any training
  await page.waitForSelector('#semi-show[data-model="shipped"] figure', { timeout: 120_000 });

  await page.selectOption('#semi-labels', '100');
  await page.click('#semi-run');
  await page.waitForFunction(() => Number(document.querySelector('#semi-status').dataset.step) >= 3, null, { timeout: 300_000 });
  await page.click('#semi-run'); // pause: both models are scored and the digits redrawn
  await page.waitForSelector('#semi-status[data-state="paused"]', { timeout: 300_000 });
  const st = await page.$eval('#semi-status', (el) => ({ ...el.dataset, text: el.textContent }));
  console.log(`${name}: ${st.text}`);
  assert.ok(Number(st.step) >= 3);
  for (const acc of [st.accLabels, st.accSemi]) assert.ok(Number(acc) >= 0 && Number(acc) <= 1, `accuracy ${acc}`);
  assert.match(st.text, /labels only \d+\.\d%, semi-supervised \d+\.\d%/);
  const figs = await page.$$eval('#semi-show[data-model="semi"] figure', (fs) =>
    fs.map((f) => ({
      caption: f.querySelector('figcaption').textContent,
      // r drawn: its canvas is not blank white
      inked: (() => {
        const c = f.querySelectorAll('canvas')[1];
        const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
        for (let i = 0; i < d.length; i += 4) if (d[i] < 250 || d[i + 1] < 250 || d[i + 2] < 250) return true;
        return false;
      })(),
    })),
  );
  assert.equal(figs.length, 6, 'six unlabelled digits shown');
  for (const f of figs) {
    assert.match(f.caption, /F\(x̂\): \d \(\d+\.\d%\) · F\(x̂ \+ r\): \d \(\d+\.\d%\) · KL \d/);
    assert.ok(f.inked, 'r is drawn');
  }
  await page.locator('#semi-panel').screenshot({ path: join(OUT, `semi-${name}.png`) });
  if (name === 'cpu') await gradientAscent(page);
  assert.deepEqual(problems, [], 'no errors in the page or the worker');
  assert.deepEqual(foreign, [], 'no request may leave 127.0.0.1');
}

/** Gradient ascent (L2) beside FGSM: the attack view and its own robustness curve (20 digits). */
async function gradientAscent(page) {
  await page.waitForSelector('#adv-verdict[data-state="done"]', { timeout: 120_000 });
  await page.selectOption('#adv-attack', 'gradient');
  await page.waitForSelector('#adv-verdict[data-busy="false"]', { timeout: 120_000 });
  assert.match(await page.textContent('#adv-verdict'), /After gradient ascent \(L2, one step\)/);
  assert.match(await page.textContent('#adv-dir-caption'), /grad \/ max\|grad\|/);
  assert.match(await page.textContent('#adv-eps-255'), /L2 norm 28ε/);
  await page.selectOption('#adv-curve-n', '20');
  await page.selectOption('#adv-curve-attack', 'gradient');
  await page.uncheck('#adv-curve-adversarial');
  await page.click('#adv-curve-run');
  await page.waitForSelector('#adv-curve-status[data-state="done"], #adv-curve-status[data-state="error"]', { timeout: 120_000 });
  assert.equal(await page.getAttribute('#adv-curve-status', 'data-state'), 'done');
  const accs = await page.$$eval('#adv-curve-table tbody tr[data-model="standard"] td', (tds) => tds.map((td) => Number(td.dataset.acc)));
  const head = await page.textContent('#adv-curve-table thead');
  console.log(`gradient-ascent curve, standard model, 20 digits: ${JSON.stringify(accs)}`);
  assert.match(head, /gradient ascent/);
  assert.ok(accs[0] >= 0.9 && accs.at(-1) < accs[0], 'accuracy falls with eps');
}

test('semi-supervised panel on the CPU backend: both models train, x^, r and predictions drawn', () => trainFewSteps(NO_WEBGPU, '', 'cpu'));

test('semi-supervised panel on WebGPU (SwiftShader): both models train, x^, r and predictions drawn', () => trainFewSteps(WEBGPU, '?backend=gpu', 'webgpu'));
