// End-to-end: the page's own server (tools/serve.mjs, what `./build.sh serve` runs and every e2e
// test loads the page from). Raw HTTP requests check what a browser cannot be made to send: the
// security headers on every answer, MIME types, the Host check (DNS rebinding), no directory
// listing, no path out of www/ however it is spelled, GET/HEAD only, the favicon. Then the page
// in headless Chromium under those headers: cross-origin isolated (COOP/COEP), and its worker,
// wasm and a model still load with the CSP header on top of the meta tag.
// Run: node --test tests/e2e/server.test.mjs   (after ./build.sh build)
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import { request } from 'node:http';
import { join } from 'node:path';
import { NO_WEBGPU, ROOT, openPage, suite } from './harness.mjs';

const S = suite();

/** One raw request: `path` is sent as written (no normalisation); resolves to {status, headers, body}. */
function get(path, { method = 'GET', host = null } = {}) {
  const url = new URL(S.url);
  return new Promise((ok, fail) => {
    const req = request(
      // host '' sends no Host header at all
      { host: '127.0.0.1', port: url.port, path, method, setHost: false, headers: host === '' ? {} : { Host: host ?? url.host } },
      (res) => {
        const chunks = [];
        res.on('data', (c) => chunks.push(c));
        res.on('end', () => ok({ status: res.statusCode, headers: res.headers, body: Buffer.concat(chunks) }));
      },
    );
    req.on('error', fail);
    req.end();
  });
}

/** The CSP of the page's meta tag, as one line. */
function metaCsp() {
  const html = readFileSync(join(ROOT, 'www', 'index.html'), 'utf8');
  const m = html.match(/http-equiv="Content-Security-Policy"\s+content="([^"]*)"/);
  assert.ok(m, 'www/index.html has a CSP meta tag');
  return m[1].replace(/\s+/g, ' ').trim();
}

function assertSecurityHeaders(r, what) {
  const csp = r.headers['content-security-policy'] ?? '';
  assert.ok(csp.startsWith(metaCsp().replace(/;\s*$/, '')), `${what}: CSP header ${csp} should carry the meta tag's policy`);
  assert.match(csp, /script-src [^;]*'wasm-unsafe-eval'/, `${what}: wasm needs 'wasm-unsafe-eval'`);
  assert.match(csp, /frame-ancestors 'none'/, what);
  assert.equal(r.headers['x-content-type-options'], 'nosniff', what);
  assert.equal(r.headers['cross-origin-opener-policy'], 'same-origin', what);
  assert.equal(r.headers['cross-origin-embedder-policy'], 'require-corp', what);
}

test('server: headers, MIME types, Host check, no listing, no traversal, favicon', async () => {
  const files = {
    '/': 'text/html; charset=utf-8',
    '/index.html': 'text/html; charset=utf-8',
    '/main.js': 'text/javascript; charset=utf-8',
    '/worker.js': 'text/javascript; charset=utf-8',
    '/style.css': 'text/css; charset=utf-8',
    '/pkg/nnlab.js': 'text/javascript; charset=utf-8',
    '/pkg/nnlab_bg.wasm': 'application/wasm',
    '/models/classifier.safetensors': 'application/octet-stream',
    '/samples/camera.png': 'image/png',
  };
  if (existsSync(join(ROOT, 'www', 'data', 'mnist_page.bin'))) files['/data/mnist_page.bin'] = 'application/octet-stream';
  for (const [path, type] of Object.entries(files)) {
    const r = await get(path, { method: 'HEAD' });
    assert.equal(r.status, 200, path);
    assert.equal(r.headers['content-type'], type, path);
    assertSecurityHeaders(r, path);
  }
  const wasm = await get('/pkg/nnlab_bg.wasm');
  assert.deepEqual([...wasm.body.subarray(0, 4)], [0x00, 0x61, 0x73, 0x6d], 'the wasm file itself');

  // Host check: the two names of this server only; a rebinding page's own name is refused
  const { port } = new URL(S.url);
  for (const host of [`127.0.0.1:${port}`, `localhost:${port}`, `LOCALHOST:${port}`]) {
    assert.equal((await get('/', { host })).status, 200, host);
  }
  for (const host of [`evil.example:${port}`, 'evil.example', `127.0.0.1:${Number(port) + 1}`, `127.0.0.1`, '']) {
    const r = await get('/', { host });
    assert.ok(!r.body.toString().includes('<html'), 'no page for a foreign Host');
    if (host === '') {
      // no Host at all: Node's HTTP parser answers 400 before the server sees it
      assert.ok([400, 421].includes(r.status), `no Host header must be refused, got ${r.status}`);
      continue;
    }
    assert.equal(r.status, 421, `Host "${host}" must be refused, got ${r.status}`);
    assertSecurityHeaders(r, `Host ${host}`);
  }

  // no directory listing; nothing outside www/ (package.json sits one folder up), no dot-files
  for (const path of ['/models/', '/models', '/pkg/', '/samples/', '/data/',
    '/../package.json', '/models/../../package.json', '/%2e%2e/package.json', '/..%2fpackage.json',
    '/%2E%2E%2Fpackage.json', '/models/..%5c..%5cpackage.json', '/..\\package.json', '/%00index.html',
    '/.gitignore', '/nope.js', '/%zz']) {
    const r = await get(path);
    assert.ok([400, 404].includes(r.status), `${path} must be refused, got ${r.status}`);
    const body = r.body.toString();
    assert.ok(!/"name"|classifier\.safetensors|<a href/.test(body), `${path} must not list or leak anything: ${body.slice(0, 80)}`);
    assertSecurityHeaders(r, path);
  }

  // GET and HEAD only
  for (const method of ['POST', 'PUT', 'DELETE', 'OPTIONS']) {
    const r = await get('/', { method });
    assert.equal(r.status, 405, method);
    assert.equal(r.headers.allow, 'GET, HEAD');
  }

  // the favicon: a file when www/ has one, else an empty answer, never a 404
  const fav = await get('/favicon.ico');
  assert.ok([200, 204].includes(fav.status), `/favicon.ico: ${fav.status}`);
  if (fav.status === 200) assert.match(fav.headers['content-type'], /^image\//);
  assertSecurityHeaders(fav, '/favicon.ico');

  // a second load of a file can be answered 304
  const first = await get('/main.js', { method: 'HEAD' });
  const again = await new Promise((ok, fail) => {
    const req = request({ host: '127.0.0.1', port, path: '/main.js', headers: { 'If-Modified-Since': first.headers['last-modified'] } }, ok);
    req.on('error', fail);
    req.end();
  });
  again.resume();
  assert.equal(again.statusCode, 304);
});

test('server: the page is cross-origin isolated, and its worker, wasm and models work under the headers', async () => {
  const { page, foreign, problems } = await openPage(S, { args: NO_WEBGPU });
  assert.equal(await page.evaluate(() => self.crossOriginIsolated), true, 'COOP/COEP make the page cross-origin isolated');
  const status = (await page.textContent('#status-text')).trim();
  console.log(`status line: ${status}`);
  assert.match(status, /^Backend: CPU/, 'the worker started and ran the wasm module');
  // a model and the digits are fetchable by the page under COEP (same origin)
  const sizes = await page.evaluate(async () => {
    const out = {};
    for (const u of ['models/classifier.safetensors', 'samples/camera.png']) out[u] = (await (await fetch(u)).arrayBuffer()).byteLength;
    return out;
  });
  for (const [u, n] of Object.entries(sizes)) assert.ok(n > 1000, `${u}: ${n} bytes`);
  // the Conv-arithmetic tab runs a conv in the worker
  await page.click('#tab-conv');
  await page.click('#conv-run');
  await page.waitForSelector('#conv-result[data-agree]', { timeout: 120_000 });
  assert.equal(await page.getAttribute('#conv-result', 'data-agree'), 'true');
  assert.deepEqual(foreign, []);
  assert.deepEqual(problems, [], 'no CSP violation or other error in the page or its worker');
});
