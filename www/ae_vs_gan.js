// The "Autoencoder vs GAN" panel of the GAN tab (the lecture's slide): the shipped autoencoder's
// reconstructions of held-out digits and its decodings of random codes, beside the GAN's
// samples, each scored the same way (per-pixel MSE where there is an original to compare with,
// classifier score and Frechet distance with the shipped classifier, class range).
import { $, fetchBytes, setTableRows } from './util.js';
import { classRange, drawDigits, fmt, ganSamples } from './gan_tools.js';
import { scoreGivenDigits } from './quality_helpers.js';

const AE_URL = 'models/ae_plain_k2.safetensors';
const N = 500;
const SHOWN = 12;

/** Rows of the table: [name, canvas id, digits, MSE or null]. */
async function compare(tab) {
  const { call, state } = tab;
  await tab.ensureAssets();
  if (!state.model) await tab.loadPretrained();
  await call('aevg_load_ae', await fetchBytes(AE_URL, 'the shipped autoencoder'));
  const out = $('aevg-out');
  out.textContent = 'decoding…';
  const ae = await call('aevg_ae_digits', N, 11);
  const rows = [
    ['real held-out digits (reference)', 'aevg-real', ae.originals, null],
    ['autoencoder: reconstructions', 'aevg-recon', ae.recon, ae.mse],
    ['autoencoder: random codes', 'aevg-random', ae.random, null],
    [`GAN (${state.model.arch === 'dcgan' ? `DCGAN width ${state.model.width}` : 'dense'}, step ${state.step}): samples`, 'aevg-gan', await ganSamples(call, N, 31), null],
  ];
  const table = [];
  for (const [name, id, digits, mse] of rows) {
    out.textContent = `scoring ${name}…`;
    drawDigits($(id), digits, SHOWN, SHOWN);
    const q = await scoreGivenDigits(tab, digits, N);
    table.push({ name, mse, q });
  }
  return table;
}

function showTable(table) {
  setTableRows($('aevg-table'), table.map(({ name, mse, q }) => [name, mse == null ? '—' : fmt(mse, 4), fmt(q.classifier_score, 2), fmt(q.frechet_distance, 0), classRange(q)]));
  const [, recon, random, gan] = table;
  const ganBeatsRandom = gan.q.frechet_distance < random.q.frechet_distance;
  $('aevg-out').textContent =
    `The autoencoder copies a given digit (MSE ${fmt(recon.mse, 4)} per pixel) but has no answer for a code it was not given: its decodings of random codes score ${fmt(random.q.classifier_score, 2)} with Frechet distance ${fmt(random.q.frechet_distance, 0)}, ` +
    `while the GAN, which copies nothing (no MSE), makes digits that ${ganBeatsRandom ? 'fit the distribution better' : 'do not yet fit the distribution better'} (score ${fmt(gan.q.classifier_score, 2)}, Frechet ${fmt(gan.q.frechet_distance, 0)}).`;
  $('aevg-table').dataset.rows = String(table.length);
}

export function setupAeVsGan(tab) {
  $('aevg-run').addEventListener(
    'click',
    tab.guarded(async () => showTable(await compare(tab))),
  );
}
