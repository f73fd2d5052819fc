// Shared set-up of the browser end-to-end tests: the page's own server (tools/serve.mjs) over www/, headless
// Chromium (Debian's, driven by playwright-core) with a fresh profile per page, and the checks
// every test wants: no request leaves 127.0.0.1, and errors in the page or its worker are kept.
import { before, after } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, isAbsolute, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';
import { startServer } from '../../tools/serve.mjs';

const HERE = dirname(fileURLToPath(import.meta.url));
export const ROOT = join(HERE, '..', '..');
export const OUT = join(HERE, 'out');
export const DATA = process.env.NNLAB_DATA || join(ROOT, '..', 'shared', 'data');
export const CHROMIUM = process.env.NNLAB_CHROMIUM || '/usr/bin/chromium';
/** Flags of a WebGPU-enabled headless Chromium (SwiftShader on a machine without a GPU). */
export const WEBGPU = [
  '--enable-unsafe-webgpu',
  '--no-sandbox',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
  '--disable-dev-shm-usage',
];
/** The same without WebGPU: the page falls back to its CPU backend. */
export const NO_WEBGPU = WEBGPU.filter((a) => a !== '--enable-unsafe-webgpu');

const isForeign = (u) => {
  const url = new URL(u);
  return url.protocol !== 'data:' && url.protocol !== 'blob:' && url.hostname !== '127.0.0.1';
};

/**
 * Register the suite's before/after hooks: check the built page (and `requiredFiles`, paths
 * under the repository root or absolute, each with the advice shown when it is missing), start the server,
 * and close every browser at the end. Returns a handle whose `url` is the server's.
 */
export function suite(requiredFiles = []) {
  const handle = { url: null };
  let server;
  const browsers = [];
  handle.browsers = browsers;
  before(async () => {
    assert.ok(existsSync(join(ROOT, 'www', 'pkg', 'nnlab_bg.wasm')), 'www/pkg is missing: run ./build.sh build first');
    assert.ok(existsSync(CHROMIUM), `no Chromium at ${CHROMIUM}: apt-get install chromium (or set NNLAB_CHROMIUM)`);
    for (const [path, advice] of requiredFiles) assert.ok(existsSync(isAbsolute(path) ? path : join(ROOT, path)), `${path} is missing: ${advice}`);
    mkdirSync(OUT, { recursive: true });
    server = await startServer(join(ROOT, 'www'));
    handle.url = server.url;
  });
  after(async () => {
    for (const b of browsers) {
      await b.context.close();
      rmSync(b.profile, { recursive: true, force: true });
    }
    await server?.close();
  });
  return handle;
}

/**
 * The page in a fresh headless Chromium. Options: `args` (browser flags; with WebGPU's, the page
 * is opened with `?backend=webgpu` unless `query` names a backend), `path` (another page of
 * www/, e.g. 'bench.html'), `ready` (the selector waited for; default: the status line),
 * `query`, `hash` (the tab),
 * `missing` (URL endings answered 404, e.g. a model file), `ignoreLoadFailures` (a regexp of
 * URLs whose failed loads are not problems — other tabs' assets), `acceptDownloads`.
 * Returns { page, context, foreign, problems }: requests that tried to leave 127.0.0.1
 * (refused) and errors seen in the page or its worker. Waits for `ready`.
 */
export async function openPage(suiteHandle, { args = WEBGPU, path = '', ready = '#status:not(.status-pending)', query = '', hash = '', missing = [], ignoreLoadFailures = null, acceptDownloads = false } = {}) {
  const profile = mkdtempSync(join(tmpdir(), 'nnlab-e2e-'));
  const context = await chromium.launchPersistentContext(profile, {
    executablePath: CHROMIUM,
    headless: true,
    args,
    viewport: { width: 1200, height: 900 },
    acceptDownloads,
  });
  suiteHandle.browsers.push({ context, profile });
  const foreign = [];
  const problems = [];
  // every request (page and worker) is seen here; one that leaves 127.0.0.1 is refused and kept
  await context.route('**/*', (route) => {
    const url = route.request().url();
    if (isForeign(url)) {
      foreign.push(url);
      return route.abort();
    }
    if (missing.some((m) => new URL(url).pathname.endsWith(m))) return route.fulfill({ status: 404, body: 'not found' });
    return route.continue();
  });
  const page = context.pages()[0] ?? (await context.newPage());
  const keep = (what, m) => {
    const url = m.location?.().url ?? '';
    if (/Failed to load resource/.test(m.text())) {
      if (missing.some((x) => url.endsWith(x))) return; // the 404s the test asked for
      if (ignoreLoadFailures && ignoreLoadFailures.test(url)) return;
    }
    problems.push(`${what}: ${m.text()} ${url}`);
  };
  page.on('pageerror', (e) => problems.push(`page error: ${e.message}`));
  page.on('console', (m) => m.type() === 'error' && keep('console error', m));
  page.on('worker', (w) => w.on('console', (m) => m.type() === 'error' && keep('worker console error', m)));
  // With WebGPU flags the tests mean WebGPU, though the adapter here (SwiftShader) is a software
  // one that the page passes over by default: ask for it unless the test says otherwise.
  const params = new URLSearchParams(query);
  if (args.includes('--enable-unsafe-webgpu') && !params.has('backend')) params.set('backend', 'webgpu');
  const search = params.toString() ? `?${params}` : '';
  await page.goto(`${suiteHandle.url}${path}${search}${hash}`);
  await page.waitForSelector(ready, { timeout: 120_000 });
  return { page, context, foreign, problems };
}
