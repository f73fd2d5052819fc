#!/usr/bin/env node
// The page's CPU backend without a browser: a DnCNN (default 17x64, gray) denoising one
// seeded side x side image (default 256) as one crop through the wasm build in node
// (bench_dncnn_setup / bench_dncnn_run), per run the process's CPU time (user + system) and
// wall time, after one warm-up run. Node 20 needs --experimental-wasm-relaxed-simd for the
// relaxed build (www/pkg/relaxed, the one Chromium 114+ loads); www/pkg is plain SIMD.
//
//   node --experimental-wasm-relaxed-simd tools/bench_dncnn_node.mjs [--pkg www/pkg/relaxed]
//        [--runs 5] [--depth 17] [--width 64] [--side 256]
//
// Timings only, not a test. A/B: run it on two pkg folders in turn (alternating).
import { readFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..');
const argv = process.argv.slice(2);
const opt = (name, dflt) => {
  const i = argv.indexOf(`--${name}`);
  return i >= 0 && i + 1 < argv.length ? argv[i + 1] : dflt;
};
const dir = resolve(ROOT, opt('pkg', 'www/pkg/relaxed'));
const runs = Number(opt('runs', '5'));
const [depth, width, side] = ['depth', 'width', 'side'].map((k, i) => Number(opt(k, ['17', '64', '256'][i])));
const mod = await import(join(dir, 'nnlab.js'));
mod.initSync({ module: readFileSync(join(dir, 'nnlab_bg.wasm')) });
await mod.init_backend(null, 'cpu', null);
mod.bench_dncnn_setup(1, depth, width, side);
await mod.bench_dncnn_run(); // warm-up
const out = [];
for (let r = 0; r < runs; r++) {
  const c0 = process.cpuUsage();
  const t0 = performance.now();
  const mean = await mod.bench_dncnn_run();
  const c = process.cpuUsage(c0);
  out.push({ cpu_s: +((c.user + c.system) / 1e6).toFixed(3), wall_s: +((performance.now() - t0) / 1e3).toFixed(3), mean });
}
console.log(JSON.stringify({ pkg: dir, depth, width, side, runs: out }));
