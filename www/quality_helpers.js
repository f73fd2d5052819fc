// The GAN tab's quality numbers (classifier score, Frechet distance, class histogram) over
// helper workers on the CPU backend: each helper holds the page digits, the shipped classifier
// and, to score samples, a copy of G; chunks of digits are handed out as each helper finishes
// one. The tabs' worker keeps the chunks in sample order (`gan_quality_keep`) and computes the
// numbers, so they do not depend on how many helpers there were (sample i's z depends on i alone).
import { PIXELS, pageDigitBytes } from './digits.js';
import { nextChunk } from './loop.js';
import { allLanes, helperCount, sharedHelpers } from './workers.js';

/** A helper's chunk aims at ~0.3 s, so Pause (which stops handing chunks out) answers quickly. */
const CHUNK = { targetMs: 300, min: 10, max: 500 };

/** The helpers to score with: null where the tabs' worker scores alone (WebGPU, ?workers=1, one core). */
export async function qualityHelpers(kind) {
  const n = helperCount(kind);
  return n > 1 ? sharedHelpers().start(n) : null;
}

/** Have helper `h` hold the page digits and the classifier (`classifier`: its file bytes). */
async function loadScorer(h, classifier) {
  const pool = sharedHelpers();
  const digits = await pageDigitBytes();
  await pool.ensure(h, 'gan:digits', digits, () => h.worker.call('gan_load_digits', digits));
  await pool.ensure(h, 'gan:classifier', classifier, () => h.worker.call('gan_load_classifier', classifier));
}

/**
 * Score `total` digits over `helpers` into the tabs' worker's kept chunks: `load(h)` readies a
 * helper, `part(h, start, count)` scores a chunk there (a `gan_quality_*part` answer).
 * `onProgress(done)` after each chunk. Resolves to false where `live()` turned false first
 * (nothing is kept then); the first error stops every helper's lane and is thrown.
 */
async function spread(call, helpers, total, { load, part, live, onProgress }) {
  const parts = [];
  let next = 0;
  let done = 0;
  await allLanes(helpers.map((h) => async (failed) => {
    await load(h);
    let n = 50;
    while (next < total && live() && !failed()) {
      const start = next;
      const count = Math.min(n, total - start);
      next += count;
      const t = performance.now();
      parts.push([start, await part(h, start, count)]);
      n = nextChunk(count, performance.now() - t, CHUNK);
      done += count;
      onProgress(done);
    }
  }));
  if (!live() || done < total) return false;
  parts.sort((a, b) => a[0] - b[0]);
  for (const [start, p] of parts) await call('gan_quality_keep', start, p.probs, p.fake_feats, p.real_feats);
  return true;
}

/**
 * `total` samples of the GAN in the tabs' worker (z seeded by `seed`), scored over `helpers`:
 * each gets a copy of G (`g`: its safetensors bytes, `dist`: its latent distribution).
 */
export function scoreSamples(call, helpers, { total, seed, g, dist, classifier, live, onProgress }) {
  const load = async (h) => {
    await loadScorer(h, classifier);
    await sharedHelpers().ensure(h, 'gan:g', g, () => h.worker.call('gan_load', g, new Uint8Array(0), 'ce', dist, 1e-3, 0.5, 8, 1));
  };
  const part = (h, start, count) => h.worker.call('gan_quality_part', start, count, seed);
  return spread(call, helpers, total, { load, part, live, onProgress });
}

/** Given digits (`total` x 784 values in [0, 1]) scored over `helpers`. */
export function scoreDigits(call, helpers, { digits, total, classifier }) {
  const part = (h, start, count) => h.worker.call('gan_quality_digits_part', start, digits.subarray(start * PIXELS, (start + count) * PIXELS));
  return spread(call, helpers, total, { load: (h) => loadScorer(h, classifier), part, live: () => true, onProgress: () => {} });
}

/**
 * Score `total` given digits (`total` x 784 in [0, 1]) with the GAN tab's quality numbers: on
 * the CPU backend over the helper workers, else in chunks in the tabs' worker. Resolves to
 * `gan_quality_result`'s answer.
 */
export async function scoreGivenDigits({ call, kind, state }, digits, total, chunk = 100) {
  const helpers = await qualityHelpers(kind);
  if (helpers) await scoreDigits(call, helpers, { digits, total, classifier: state.classifierBytes });
  else for (let s = 0; s < total; s += chunk) await call('gan_quality_digits', s, digits.subarray(s * PIXELS, (s + chunk) * PIXELS));
  return call('gan_quality_result');
}
