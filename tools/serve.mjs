// The page's static server: `./build.sh serve` runs it (`node tools/serve.mjs [--port N] [DIR]`,
// default port 8080, DIR www), and the e2e tests start it in-process (`startServer`), so what
// the tests check is what a user gets. Node's standard library only.
//
// It serves one folder to this machine and nothing else:
// - binds 127.0.0.1, and answers only requests whose Host is 127.0.0.1:PORT or localhost:PORT
//   (a DNS-rebinding page elsewhere that points its own name at 127.0.0.1 gets a 421);
// - sends the page's Content-Security-Policy (read from the meta tag of DIR/index.html, so the
//   two never differ, plus frame-ancestors, which a meta tag cannot carry), nosniff, and
//   COOP/COEP, which make the page cross-origin isolated (SharedArrayBuffer, wasm threads);
// - GET and HEAD of plain files only: no directory listing, no dot-files, and any path that
//   would leave DIR (.., encoded slashes, symlinks) is a 404;
// - /favicon.ico: DIR's favicon.ico, else its favicon.svg or favicon.png, else 204 (no 404 noise).
import { createServer } from 'node:http';
import { createReadStream, readFileSync } from 'node:fs';
import { realpath, stat } from 'node:fs/promises';
import { extname, join, resolve, sep } from 'node:path';
import { fileURLToPath } from 'node:url';

const MIME = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.mjs': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.json': 'application/json',
  '.map': 'application/json',
  '.wasm': 'application/wasm',
  '.png': 'image/png',
  '.jpg': 'image/jpeg',
  '.jpeg': 'image/jpeg',
  '.gif': 'image/gif',
  '.webp': 'image/webp',
  '.svg': 'image/svg+xml',
  '.ico': 'image/x-icon',
  '.txt': 'text/plain; charset=utf-8',
  '.md': 'text/plain; charset=utf-8',
  '.ts': 'text/plain; charset=utf-8',
  '.safetensors': 'application/octet-stream',
  '.bin': 'application/octet-stream',
};

/** The CSP the page declares in its meta tag; the fallback is the same policy. */
const DEFAULT_CSP =
  "default-src 'self'; script-src 'self' 'wasm-unsafe-eval'; worker-src 'self'; style-src 'self'; img-src 'self' data: blob:; connect-src 'self'";

function pageCsp(root) {
  try {
    const html = readFileSync(join(root, 'index.html'), 'utf8');
    const tag = html.match(/<meta[^>]*http-equiv=["']Content-Security-Policy["'][^>]*>/i);
    const content = tag?.[0].match(/content=(["'])([^]*?)\1/i);
    if (content) return content[2].replace(/\s+/g, ' ').trim();
  } catch {
    // no index.html: the fallback policy
  }
  return DEFAULT_CSP;
}

/** The headers every response carries. */
function securityHeaders(csp) {
  return {
    'Content-Security-Policy': `${csp.replace(/;\s*$/, '')}; frame-ancestors 'none'`,
    'X-Content-Type-Options': 'nosniff',
    'Cross-Origin-Opener-Policy': 'same-origin',
    'Cross-Origin-Embedder-Policy': 'require-corp',
    'Cross-Origin-Resource-Policy': 'same-origin',
    'Referrer-Policy': 'no-referrer',
  };
}

/**
 * Serve `root` on 127.0.0.1:`port` (0: a free port). Resolves to { url, port, close() }.
 * `log` (optional) is called with one line per request.
 */
export async function startServer(root, { port = 0, log = null } = {}) {
  const base = await realpath(resolve(root));
  const headers = securityHeaders(pageCsp(base));
  let allowedHosts = new Set();

  const answer = (res, status, extra = {}, body = '') => {
    const type = body ? { 'Content-Type': 'text/plain; charset=utf-8' } : {};
    res.writeHead(status, { ...headers, ...type, ...extra });
    res.end(body);
  };

  /** The file under `base` that `pathname` names, or null (outside, hidden, or not a file). */
  async function resolveFile(pathname) {
    let path;
    try {
      path = decodeURIComponent(pathname);
    } catch {
      return null;
    }
    if (path.includes('\0') || path.includes('\\')) return null;
    if (path.endsWith('/')) path += 'index.html';
    const parts = path.split('/').filter((p) => p !== '');
    // ".." and dot-files (decoded: %2e%2e, %2f are caught here too)
    if (parts.some((p) => p.startsWith('.'))) return null;
    const file = join(base, ...parts);
    try {
      const real = await realpath(file);
      if (real !== base && !real.startsWith(base + sep)) return null;
      const st = await stat(real);
      return st.isFile() ? { file: real, st } : null;
    } catch {
      return null;
    }
  }

  async function favicon() {
    for (const name of ['favicon.ico', 'favicon.svg', 'favicon.png']) {
      const f = await resolveFile(`/${name}`);
      if (f) return f;
    }
    return null;
  }

  const server = createServer(async (req, res) => {
    const done = (status) => log?.(`${status} ${req.method} ${req.url}`);
    try {
      const host = (req.headers.host || '').toLowerCase();
      if (!allowedHosts.has(host)) {
        done(421);
        return answer(res, 421, {}, `this server answers only for ${[...allowedHosts][0]}\n`);
      }
      if (req.method !== 'GET' && req.method !== 'HEAD') {
        done(405);
        return answer(res, 405, { Allow: 'GET, HEAD' }, 'only GET and HEAD\n');
      }
      let pathname;
      try {
        pathname = new URL(req.url, 'http://h').pathname;
      } catch {
        done(400);
        return answer(res, 400, {}, 'bad request\n');
      }
      // the raw path too: URL() folds "/a/../b" to "/b", but a client asking for ".." is refused
      if (/(^|\/)\.\.?(\/|$)|%2e%2e|%2f|%5c/i.test(req.url.split('?')[0])) {
        done(404);
        return answer(res, 404, {}, 'not found\n');
      }
      let found = await resolveFile(pathname);
      if (!found && pathname === '/favicon.ico') {
        found = await favicon();
        if (!found) {
          done(204);
          return answer(res, 204);
        }
      }
      if (!found) {
        done(404);
        return answer(res, 404, {}, 'not found\n');
      }
      const { file, st } = found;
      const modified = st.mtime.toUTCString();
      const since = Date.parse(req.headers['if-modified-since'] || '');
      const fileHeaders = {
        'Content-Type': MIME[extname(file).toLowerCase()] || 'application/octet-stream',
        'Last-Modified': modified,
        'Cache-Control': 'no-cache',
      };
      if (!Number.isNaN(since) && Math.floor(st.mtimeMs / 1000) <= since / 1000) {
        done(304);
        res.writeHead(304, { ...headers, ...fileHeaders });
        return res.end();
      }
      res.writeHead(200, { ...headers, ...fileHeaders, 'Content-Length': st.size });
      done(200);
      if (req.method === 'HEAD') return res.end();
      const stream = createReadStream(file);
      stream.on('error', () => res.destroy());
      stream.pipe(res);
    } catch (e) {
      done(500);
      if (!res.headersSent) answer(res, 500, {}, 'internal error\n');
      else res.destroy();
      log?.(`error: ${e.message}`);
    }
  });
  await new Promise((ok, fail) => {
    server.once('error', fail);
    server.listen(port, '127.0.0.1', ok);
  });
  const bound = server.address().port;
  allowedHosts = new Set([`127.0.0.1:${bound}`, `localhost:${bound}`]);
  if (bound === 80) ['127.0.0.1', 'localhost'].forEach((h) => allowedHosts.add(h));
  return {
    url: `http://127.0.0.1:${bound}/`,
    port: bound,
    close: () =>
      new Promise((ok) => {
        server.close(ok);
        server.closeAllConnections?.();
      }),
  };
}

// `node tools/serve.mjs [--port N] [DIR]`
if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const args = process.argv.slice(2);
  let port = 8080;
  let dir = 'www';
  for (let i = 0; i < args.length; i++) {
    if (args[i] === '--port') port = Number(args[++i]);
    else if (args[i] === '--help' || args[i] === '-h') {
      console.log('usage: node tools/serve.mjs [--port N] [DIR]   (default: port 8080, DIR www)');
      process.exit(0);
    } else dir = args[i];
  }
  if (!Number.isInteger(port) || port < 0 || port > 65535) {
    console.error(`serve: --port must be an integer 0-65535, got ${args[args.indexOf('--port') + 1]}`);
    process.exit(2);
  }
  try {
    const s = await startServer(dir, { port, log: process.env.NNLAB_SERVE_LOG ? console.log : null });
    console.log(`serving ${resolve(dir)} on ${s.url}  (also http://localhost:${s.port}/; Ctrl-C to stop)`);
  } catch (e) {
    console.error(`serve: cannot serve ${dir} on 127.0.0.1:${port}: ${e.message}`);
    process.exit(1);
  }
}
