// The chunked, adaptive loop every tab trains with. Work runs in the worker as short calls of
// `n` steps each; `n` adapts so that one call takes about `targetMs`: long enough to amortise the
// call, short enough that Pause (which waits for the call in flight) answers quickly and the
// plots move smoothly. Between calls the page gets to draw.
//
// Pause acts within one call on every backend because a call's time is the time of its work:
// the worker's calls wait until the backend has done what they queued (on WebGPU a training
// call reads its losses back), so no GPU work is left queued behind a call, and the size of the
// next call comes from the time the last one really took.

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/**
 * Longest a loop call aims to take, whatever its caller asks: Pause waits for the call in
 * flight, and must act within a second (issue 22), with room for a slow or busy machine.
 */
export const MAX_CALL_MS = 300;

/**
 * The next chunk size after `n` units took `ms`: aimed at `targetMs`, within [min, max].
 * `smoothing` (0..1) keeps that share of the old size (timings are noisy); `maxGrowth` caps
 * how much one call may grow it (2 by default: one fast call, e.g. on a machine that was idle
 * for a moment, cannot make the next one many times longer than the target).
 */
export function nextChunk(n, ms, { targetMs, min = 1, max = 50, smoothing = 0, maxGrowth = 2 }) {
  const ideal = n * Math.min(maxGrowth, targetMs / Math.max(ms, 1));
  return Math.max(min, Math.min(max, Math.round(smoothing * n + (1 - smoothing) * ideal)));
}

/**
 * A train / pause / resume loop. `run(body)` calls `body.step(n)` (the worker call, timed) over
 * and over until `pause()` or until a hook stops it:
 * - `body.prepare()` (optional): runs once before the first call (a pause during it is kept);
 * - `body.plan(n)` (optional): the number of steps to run now (fewer near a stop), 0 to stop;
 * - `body.after(result, n, live)` (optional): bookkeeping and drawing after each call (not
 *   timed); returning false stops the loop. `live()` turns false at `pause()`: long work in
 *   `after` (the GAN's scoring) checks it between its own calls, so Pause does not wait for it.
 * `run` resolves when the loop stops and rejects with the error of a failed call.
 */
export class ChunkLoop {
  constructor({ targetMs, chunk = 1, ...limits }) {
    this.limits = { targetMs: Math.min(targetMs, MAX_CALL_MS), ...limits };
    this.first = chunk;
    this.chunk = chunk;
    this.running = false;
    this.armed = false;
    this.gen = 0;
    this.done = Promise.resolve();
  }

  /** Start again from the first chunk size (a new model). */
  resetChunk() {
    this.chunk = this.first;
  }

  /**
   * Mark the loop running now, for a `run` that starts later (after other queued work): the
   * buttons show it at once, and a pause before `run` starts is kept.
   */
  arm() {
    this.running = true;
    this.armed = true;
  }

  run(body) {
    if (!this.armed) this.running = true;
    this.armed = false;
    // a loop still finishing its call in flight (paused, then run again) ends after it
    const gen = ++this.gen;
    this.done = this.#loop(body, gen);
    return this.done;
  }

  async #loop({ prepare, step, plan, after }, gen) {
    const live = () => this.running && this.gen === gen;
    try {
      if (prepare) await prepare();
      while (live()) {
        const n = plan ? plan(this.chunk) : this.chunk;
        if (!n) break;
        const t = performance.now();
        const result = await step(n);
        this.chunk = nextChunk(n, performance.now() - t, this.limits);
        if (after && (await after(result, n, live)) === false) break;
        await sleep(0); // let the page draw between calls
      }
    } finally {
      if (this.gen === gen) this.running = false;
    }
  }

  /** Stop after the call in flight; resolves once the loop has stopped (never rejects). */
  pause() {
    this.running = false;
    return this.done.catch(() => {});
  }
}
