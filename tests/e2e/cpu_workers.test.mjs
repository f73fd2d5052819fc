// End-to-end: on the CPU backend the Adversarial tab's robustness curve and the GAN tab's
// quality numbers (classifier score, Frechet distance, class histogram of the pretrained
// DCGAN's samples; the Autoencoder-vs-GAN panel) are spread over helper workers (issue 17
// item 4), and give the same numbers over 3 helpers as in the tabs' one worker (?workers=1).
// The curve is counts of digits: equal exactly. The quality numbers are computed in the tabs'
// worker from the chunks in sample order: equal to float rounding. The times (1 worker, 3, and
// one per core) are printed, not asserted.
// Run: node --test tests/e2e/cpu_workers.test.mjs   (after ./build.sh build)
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { NO_WEBGPU, openPage, suite } from './harness.mjs';

const S = suite([
  ['www/data/mnist_page.bin', 'run ./build.sh setup first'],
  ['www/models/classifier.safetensors', 'train it (see the README)'],
  ['www/models/classifier_adv.safetensors', 'train it (see the README)'],
  ['www/models/gan_dcgan_g.safetensors', 'train it (see the README)'],
]);
const SLOW = 300_000;
/** ?workers= of each run: the tabs' worker alone, 3 helpers, and the default (one per core). */
const RUNS = ['1', '3', ''];

/** FGSM curve of both shipped models on 100 digits: {results, workers, text}. */
async function curve(workers) {
  const { page, context, problems } = await openPage(S, { args: NO_WEBGPU, query: workers && `workers=${workers}`, hash: '#adversarial', ignoreLoadFailures: /./ });
  await page.waitForSelector('#adv-model-adversarial[data-state="loaded"]', { timeout: 60_000 });
  await page.waitForSelector('#adv-verdict[data-state="done"]', { timeout: 120_000 }); // the digits are in
  await page.selectOption('#adv-curve-n', '100');
  const texts = [];
  let r;
  // twice: the first run also starts the helpers and loads the digits and models into them
  for (let i = 0; i < 2; i++) {
    await page.click('#adv-curve-run');
    await page.waitForSelector('#adv-curve-status[data-state="done"], #adv-curve-status[data-state="error"]', { timeout: SLOW });
    r = await page.$eval('#adv-curve-status', (e) => ({ ...e.dataset, text: e.textContent }));
    assert.equal(r.state, 'done', r.text);
    texts.push(r.text);
    await page.$eval('#adv-curve-status', (e) => delete e.dataset.state);
  }
  assert.deepEqual(problems, []);
  await context.close();
  return { results: JSON.parse(r.results), workers: Number(r.workers), text: texts.join(' Again: ') };
}

/** The pretrained DCGAN's quality numbers, then the Autoencoder-vs-GAN table. */
async function quality(workers) {
  const { page, context, problems } = await openPage(S, { args: NO_WEBGPU, query: workers && `workers=${workers}`, hash: '#gan', ignoreLoadFailures: /./ });
  await page.waitForSelector('#gan-backend[data-kind="cpu"]', { timeout: 60_000 });
  const idle = () => page.waitForSelector('#gan-form[data-busy="false"]', { timeout: SLOW });
  await page.click('#gan-pretrained');
  await idle();
  const texts = [];
  let q;
  // twice: the first scoring also starts the helpers and loads the digits and classifier
  for (let i = 0; i < 2; i++) {
    await page.$eval('#gan-quality-out', (e) => delete e.dataset.score);
    await page.click('#gan-quality');
    await page.waitForFunction(() => document.getElementById('gan-quality-out').dataset.score !== undefined, null, { timeout: SLOW });
    await idle();
    q = await page.$eval('#gan-quality-out', (e) => ({ ...e.dataset, text: e.textContent }));
    texts.push(q.text.replace(/.*\(scored/, '(scored'));
  }
  q.text += ` Again: ${texts[1]}`;
  await page.click('#aevg-run');
  await page.waitForSelector('#aevg-table[data-rows="4"]', { timeout: SLOW });
  await idle();
  const table = await page.$$eval('#aevg-table tbody tr', (trs) => trs.map((tr) => [...tr.cells].map((c) => c.textContent)));
  assert.deepEqual(problems, []);
  await context.close();
  return { score: Number(q.score), frechet: Number(q.frechet), histogram: q.histogram, workers: Number(q.workers), ms: Number(q.ms), text: q.text, table };
}

test('CPU backend: the robustness curve over helper workers gives the counts of one worker', async () => {
  const runs = [];
  for (const w of RUNS) runs.push(await curve(w));
  for (const [i, r] of runs.entries()) console.log(`?workers=${RUNS[i] || '(default)'}: ${r.text}`);
  assert.equal(runs[0].workers, 1);
  assert.equal(runs[1].workers, 3);
  const std = runs[0].results.standard;
  assert.ok(std[0].correct >= 90 && std[5].correct <= 50, `a sensible curve: ${JSON.stringify(std)}`);
  for (const r of runs.slice(1)) assert.deepEqual(r.results, runs[0].results, 'the same counts at every eps for both models');
});

test('CPU backend: the quality numbers over helper workers equal those of one worker', async () => {
  const runs = [];
  for (const w of RUNS) runs.push(await quality(w));
  for (const [i, r] of runs.entries()) console.log(`?workers=${RUNS[i] || '(default)'}: ${r.text}\n${r.table.map((row) => row.join(' | ')).join('\n')}`);
  assert.equal(runs[0].workers, 1);
  assert.equal(runs[1].workers, 3);
  const [one] = runs;
  assert.ok(one.score > 1 && one.score <= 10 && one.frechet > 0, one.text);
  for (const r of runs.slice(1)) {
    assert.equal(r.histogram, one.histogram, 'the same class of every sample');
    assert.ok(Math.abs(r.score - one.score) <= 1e-4 * one.score, `classifier score ${r.score} vs ${one.score}`);
    assert.ok(Math.abs(r.frechet - one.frechet) <= 1e-4 * one.frechet, `Frechet distance ${r.frechet} vs ${one.frechet}`);
    assert.deepEqual(r.table, one.table, 'the Autoencoder-vs-GAN table, as printed');
  }
});
