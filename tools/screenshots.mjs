// Screenshots of every tab of the page at several widths, to look at the layout by eye:
//   node tools/screenshots.mjs [OUT_DIR] [WIDTH ...]      (default tests/e2e/out/screens, 1280 800)
// Serves www/ (./build.sh build first), opens headless Chromium on the CPU backend, shows each tab,
// waits for it to settle (the Denoise tab for the camera sample and its layer views, the
// Adversarial tab for its first attack and layer views, the Autoencoders tab for its shipped
// model, the GAN tab for the pretrained DCGAN and a pick in each latent tool) and writes OUT_DIR/TAB-WIDTH.png (full page).
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { chromium } from 'playwright-core';
import { startServer } from './serve.mjs';

const ROOT = new URL('..', import.meta.url).pathname;
const out = process.argv[2] ?? join(ROOT, 'tests/e2e/out/screens');
const widths = process.argv.slice(3).map(Number);
// NNLAB_TABS=denoise,adversarial takes only those tabs
const TABS = process.env.NNLAB_TABS?.split(',') ?? ['denoise', 'autoencoders', 'gan', 'adversarial', 'conv'];

/** Bring a tab to a state worth looking at. */
async function settle(page, tab) {
  if (tab === 'autoencoders') await page.waitForSelector('#panel-autoencoders[data-ready="true"]', { timeout: 180_000 });
  if (tab === 'adversarial') await page.waitForSelector('#adv-views[data-done="true"]', { timeout: 120_000 });
  if (tab === 'denoise') {
    // the camera sample denoised, then the layer views of it
    await page.click('[data-sample="camera"]');
    await page.waitForFunction(() => document.getElementById('dn-info').dataset.state === 'done', null, { timeout: 300_000 });
    await page.click('#dn-fv-show');
    await page.waitForSelector('#dn-views[data-done="true"]', { timeout: 120_000 });
  }
  if (tab === 'gan') {
    await page.click('#gan-pretrained');
    await page.waitForFunction(() => /Pretrained/.test(document.getElementById('gan-model').textContent), null, { timeout: 120_000 });
    const grid = await page.locator('#gan-grid').boundingBox();
    const cell = grid.width / 8;
    for (const [pick, k] of [['a', 0], ['b', 7], ['centre', 9], ['p', 1], ['q', 2], ['r', 3]]) {
      await page.selectOption('#gan-form select[name="pick"]', pick);
      await page.mouse.click(grid.x + ((k % 8) + 0.5) * cell, grid.y + (Math.floor(k / 8) + 0.5) * cell);
      await page.waitForFunction(() => document.getElementById('gan-form').dataset.busy === 'false', null, { timeout: 60_000 });
    }
  }
  if (tab === 'conv') await page.waitForSelector('#conv-result[data-agree]', { timeout: 60_000 });
  await page.waitForTimeout(500);
}

mkdirSync(out, { recursive: true });
const server = await startServer(join(ROOT, 'www'));
for (const width of widths.length ? widths : [1280, 800]) {
  const profile = mkdtempSync(join(tmpdir(), 'nnlab-shots-'));
  const context = await chromium.launchPersistentContext(profile, {
    executablePath: process.env.NNLAB_CHROMIUM || '/usr/bin/chromium',
    headless: true,
    args: ['--no-sandbox', '--disable-dev-shm-usage'],
    viewport: { width, height: 900 },
  });
  const page = context.pages()[0] ?? (await context.newPage());
  page.on('pageerror', (e) => console.log(`page error: ${e.message}`));
  page.on('console', (m) => m.type() === 'error' && console.log(`console error: ${m.text()} ${m.location?.().url ?? ''}`));
  await page.goto(`${server.url}?backend=cpu#denoise`);
  await page.waitForSelector('#status:not(.status-pending)', { timeout: 120_000 });
  for (const tab of TABS) {
    await page.click(`#tab-${tab}`);
    await settle(page, tab);
    const file = join(out, `${tab}-${width}.png`);
    await page.screenshot({ path: file, fullPage: true });
    console.log(file);
  }
  await context.close();
  rmSync(profile, { recursive: true, force: true });
}
await server.close();
