// "Rejection by D" (GAN tab): after training, D's logit estimates how much likelier a digit is
// under the data than under G, so keeping each of G's samples with a probability that grows
// with it (Azadi et al. 2019, discriminator rejection sampling) moves the samples toward the
// data. The current G (its average where one is kept) and the current D: the pretrained pair,
// or the ones trained in the tab. 500 samples of G alone and 500 kept ones, scored alike.
import { $, setTableRows } from './util.js';
import { classRange, drawDigits, fmt, ganSamples } from './gan_tools.js';
import { scoreGivenDigits } from './quality_helpers.js';

const N = 500;
/**
 * Candidates drawn per kept sample asked for: D keeps ~30-45% of the pretrained DCGAN's samples
 * at gamma 0, and ~20% of a dense GAN's after a few dozen steps in the tab.
 */
const POOL_PER_SAMPLE = 10;
const SHOWN = 24;
const SEED = 57;

async function run(tab) {
  const { call, state } = tab;
  tab.showError(null);
  await tab.ensureAssets();
  if (!state.model) await tab.loadPretrained();
  const gamma = Number($('drs-gamma').value);
  if (!Number.isFinite(gamma) || Math.abs(gamma) > 50) throw new Error('gamma must be a number between -50 and 50');
  const out = $('drs-out');
  setTableRows($('drs-table'), []);
  delete $('drs-table').dataset.rows;
  out.textContent = 'drawing samples of G…';
  const plain = await ganSamples(call, N, SEED);
  out.textContent = `drawing ${N * POOL_PER_SAMPLE} samples and D's verdict on each…`;
  const r = await call('gan_rejection_sample', N, N * POOL_PER_SAMPLE, gamma, SEED);
  drawDigits($('drs-plain'), plain, SHOWN, SHOWN / 2);
  drawDigits($('drs-kept'), r.digits, SHOWN, SHOWN / 2);
  out.textContent = 'scoring…';
  const rows = [];
  for (const [name, digits] of [['G alone', plain], [`G + rejection by D (gamma ${gamma}, kept ${r.kept} of ${r.pool})`, r.digits]]) {
    rows.push([name, await scoreGivenDigits(tab, digits, N)]);
  }
  setTableRows($('drs-table'), rows.map(([name, q]) => [name, fmt(q.classifier_score, 2), fmt(q.frechet_distance, 0), classRange(q)]));
  const [[, a], [, b]] = rows;
  out.textContent = `D kept ${fmt((100 * r.kept) / r.pool, 0)}% of G's samples; on ${N} each, the score went from ${fmt(a.classifier_score, 2)} to ${fmt(b.classifier_score, 2)} and the Frechet distance from ${fmt(a.frechet_distance, 0)} to ${fmt(b.frechet_distance, 0)}.`;
  $('drs-table').dataset.rows = String(rows.length);
}

export function setupRejection(tab) {
  $('drs-run').addEventListener(
    'click',
    tab.guarded(async () => run(tab)),
  );
}
