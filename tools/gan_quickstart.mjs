// How good are the GAN tab's digits after 30, 60 and 120 s of training on the page's CPU path?
//   node tools/gan_quickstart.mjs [--preset '{"arch":"dense","lr":"1e-3",...}'] [--at 30,60,120]
// Serves www/ (./build.sh build first), opens headless Chromium without WebGPU (the CPU backend),
// presses "Quick start" (or, with --preset, puts those form values in and presses Reset + Train),
// pauses at each mark of training time (time spent scoring is not counted), scores 500 samples
// with the shipped classifier ("Score 500 samples") and prints the classifier score, Frechet
// distance, steps and the class histogram of each mark as a Markdown table.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { chromium } from 'playwright-core';
import { startServer } from './serve.mjs';

const ROOT = new URL('..', import.meta.url).pathname;
const arg = (name, dflt) => {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 ? process.argv[i + 1] : dflt;
};
const preset = arg('preset', null);
const marks = arg('at', '30,60,120').split(',').map(Number);

const server = await startServer(join(ROOT, 'www'));
const profile = mkdtempSync(join(tmpdir(), 'nnlab-gan-quick-'));
const context = await chromium.launchPersistentContext(profile, {
  executablePath: process.env.NNLAB_CHROMIUM || '/usr/bin/chromium',
  headless: true,
  args: ['--no-sandbox', '--disable-dev-shm-usage'],
  viewport: { width: 1280, height: 900 },
});
const page = context.pages()[0] ?? (await context.newPage());
page.on('pageerror', (e) => console.log(`page error: ${e.message}`));
const idle = () => page.waitForSelector('#gan-form[data-busy="false"]', { timeout: 300_000 });
try {
  await page.goto(`${server.url}?backend=cpu#gan`);
  await page.waitForSelector('#gan-backend[data-kind="cpu"]', { timeout: 120_000 });
  await page.uncheck('#gan-quality-auto');
  let started;
  if (preset) {
    await page.evaluate(() => (document.querySelector('.gan-options').open = true)); // D's options are in a <details>
    for (const [k, v] of Object.entries(JSON.parse(preset))) {
      const sel = `#gan-form [name="${k}"]`;
      if ((await page.getAttribute(sel, 'type')) === 'checkbox') await (v ? page.check(sel) : page.uncheck(sel));
      else if ((await page.evaluate((s) => document.querySelector(s).tagName, sel)) === 'SELECT') await page.selectOption(sel, String(v));
      else await page.fill(sel, String(v));
    }
    await page.click('#gan-reset');
    await idle();
    started = () => page.click('#gan-train');
  } else {
    started = () => page.click('#gan-quick');
  }
  const rows = [];
  let trained = 0;
  for (const [k, mark] of marks.entries()) {
    const t0 = Date.now();
    await (k === 0 ? started() : page.click('#gan-train'));
    await page.waitForTimeout(Math.max(0, (mark - trained) * 1000 - (Date.now() - t0)));
    await page.click('#gan-pause');
    await idle();
    trained += (Date.now() - t0) / 1000;
    const step = await page.getAttribute('#gan-progress', 'data-step');
    await page.click('#gan-quality');
    await page.waitForFunction((s) => document.getElementById('gan-quality-out').dataset.step === s, step, { timeout: 300_000 });
    await idle();
    const caption = await page.textContent('#gan-hist-caption');
    const pct = await page.getAttribute('#gan-hist', 'data-percent');
    const m = caption.match(/score ([\d.]+), Frechet (\d+), classes ([\d.]+)-([\d.]+)%/);
    rows.push(`| ${mark} s (${trained.toFixed(0)} s) | ${step} | ${m[1]} | ${m[2]} | ${m[3]}-${m[4]} | ${pct.replaceAll(',', ' ')} |`);
    console.log(rows.at(-1));
  }
  console.log(`\npreset: ${preset ?? 'Quick start'} · ${await page.textContent('#gan-model')}`);
  console.log('| training time (measured) | steps | classifier score | Frechet distance | classes % min-max | histogram 0..9 (%) |\n|---|---:|---:|---:|---|---|');
  for (const r of rows) console.log(r);
  await page.screenshot({ path: join(ROOT, 'tests/e2e/out/gan-quickstart-tool.png'), fullPage: false });
} finally {
  await context.close();
  rmSync(profile, { recursive: true, force: true });
  await server.close();
}
