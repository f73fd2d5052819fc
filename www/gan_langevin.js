// "Langevin on D" (GAN tab): D's logit estimates how much likelier a digit is under the data than
// under G, so instead of only keeping or dropping G's samples (rejection, beside) each latent
// vector can be moved towards codes D finds more real: Langevin steps on |z|^2 / 2 - D(G(z))
// (Che et al. 2020, discriminator driven latent sampling). The same 500 latent vectors as
// "G alone", each moved, scored alike. The current G (its average where one is kept) and D.
import { $, setTableRows } from './util.js';
import { PIXELS } from './digits.js';
import { classRange, drawDigits, fmt, ganSamples } from './gan_tools.js';
import { scoreGivenDigits } from './quality_helpers.js';

const N = 500;
/** Latent vectors per call: a call of 50 steps on 50 vectors takes a few seconds on the CPU path. */
const CHUNK = 50;
const SHOWN = 24;
/** The same z as the rejection panel's "G alone" row. */
const SEED = 57;
const NOISE_SEED = 91;

async function run(tab) {
  const { call, state } = tab;
  tab.showError(null);
  await tab.ensureAssets();
  if (!state.model) await tab.loadPretrained();
  const steps = Number($('ddls-steps').value);
  const eps = Number($('ddls-eps').value);
  if (!Number.isInteger(steps) || steps < 1 || steps > 500) throw new Error('Langevin steps must be a whole number from 1 to 500');
  if (!Number.isFinite(eps) || eps <= 0 || eps > 1) throw new Error('the Langevin step size must be in (0, 1]');
  const out = $('ddls-out');
  setTableRows($('ddls-table'), []);
  delete $('ddls-table').dataset.rows;
  out.textContent = 'drawing samples of G…';
  // the z of ganSamples (chunks of 100 from SEED + start), moved chunk by chunk
  const plain = await ganSamples(call, N, SEED);
  const moved = new Float32Array(N * PIXELS);
  for (let s = 0; s < N; s += CHUNK) {
    out.textContent = `moving latent vectors ${s + 1}-${s + CHUNK} of ${N} (${steps} steps each)…`;
    const block = Math.floor(s / 100) * 100;
    const z = await call('gan_sample_z', 100, SEED + block);
    const d = z.length / 100;
    const mine = z.subarray((s - block) * d, (s - block + CHUNK) * d);
    const zt = await call('gan_langevin', mine, steps, eps, NOISE_SEED + s);
    moved.set(await call('gan_generate', zt), s * PIXELS);
  }
  drawDigits($('ddls-plain'), plain, SHOWN, SHOWN / 2);
  drawDigits($('ddls-moved'), moved, SHOWN, SHOWN / 2);
  out.textContent = 'scoring…';
  const rows = [];
  for (const [name, digits] of [['G alone', plain], [`G + Langevin on D (${steps} steps of ${eps})`, moved]]) {
    rows.push([name, await scoreGivenDigits(tab, digits, N)]);
  }
  setTableRows($('ddls-table'), rows.map(([name, q]) => [name, fmt(q.classifier_score, 2), fmt(q.frechet_distance, 0), classRange(q)]));
  const [[, a], [, b]] = rows;
  out.textContent = `On the same ${N} latent vectors, the score went from ${fmt(a.classifier_score, 2)} to ${fmt(b.classifier_score, 2)} and the Frechet distance from ${fmt(a.frechet_distance, 0)} to ${fmt(b.frechet_distance, 0)}.`;
  $('ddls-table').dataset.rows = String(rows.length);
}

export function setupLangevin(tab) {
  $('ddls-run').addEventListener(
    'click',
    tab.guarded(async () => run(tab)),
  );
}
