// The page's layout at 1280 and 800 px wide: in every tab, no control is clipped. A select or
// file input is as wide as it is when left to size itself (so its longest choice and its file
// name show), a button's text fits in it, and no control sticks out of its tab or makes the page
// scroll sideways. The tabs run on the CPU backend (the layout does not depend on it).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { suite, openPage as open, NO_WEBGPU, OUT } from './harness.mjs';

const S = suite();
const TABS = ['denoise', 'autoencoders', 'gan', 'adversarial', 'conv'];

/** The controls of the visible tab that do not fit, as readable strings. */
function clippedControls(page, tab) {
  return page.evaluate((tab) => {
    const panel = document.getElementById(`panel-${tab}`);
    const box = panel.getBoundingClientRect();
    const name = (el) => `${el.tagName.toLowerCase()}${el.id ? `#${el.id}` : el.name ? `[name=${el.name}]` : ''}${el.type ? `(${el.type})` : ''} "${(el.textContent || el.value || '').trim().slice(0, 30)}"`;
    /** The width `el` takes when nothing constrains it (a copy, measured off-screen). */
    const naturalWidth = (el) => {
      const copy = el.cloneNode(true);
      Object.assign(copy.style, { position: 'absolute', left: '-10000px', top: '0', width: 'auto', maxWidth: 'none', minWidth: '0', flex: 'none' });
      el.parentElement.appendChild(copy);
      const w = copy.getBoundingClientRect().width;
      copy.remove();
      return w;
    };
    const bad = [];
    for (const el of panel.querySelectorAll('button, select, input, textarea')) {
      const r = el.getBoundingClientRect();
      if (!r.width || !r.height || getComputedStyle(el).visibility === 'hidden') continue; // not shown
      if (r.left < box.left - 1 || r.right > box.right + 1) bad.push(`${name(el)} sticks out of the tab (${r.left.toFixed(0)}..${r.right.toFixed(0)} of ${box.left.toFixed(0)}..${box.right.toFixed(0)})`);
      const dressed = el.type === 'file' && getComputedStyle(el).opacity === '0'; // a file input dressed as a button
      if ((el.tagName === 'SELECT' || el.type === 'file') && !dressed) {
        const want = naturalWidth(el);
        if (r.width < want - 1) bad.push(`${name(el)} is ${r.width.toFixed(0)} px wide, its content needs ${want.toFixed(0)}`);
      }
      if (el.tagName === 'BUTTON' && el.scrollWidth > el.clientWidth + 1) bad.push(`${name(el)}: text ${el.scrollWidth} px in ${el.clientWidth} px`);
    }
    const page = document.documentElement;
    if (page.scrollWidth > page.clientWidth + 1) bad.push(`the page scrolls sideways (${page.scrollWidth} px in ${page.clientWidth})`);
    return bad;
  }, tab);
}

for (const width of [1280, 800]) {
  test(`layout at ${width} px: no control of any tab is clipped`, { timeout: 300_000 }, async () => {
    const { page, foreign, problems } = await open(S, { args: NO_WEBGPU, query: '?backend=cpu' });
    await page.setViewportSize({ width, height: 900 });
    const bad = [];
    for (const tab of TABS) {
      await page.click(`#tab-${tab}`);
      await page.waitForSelector(`#panel-${tab}:not([hidden])`);
      await page.waitForTimeout(300); // let the tab lay out what it fills in at once
      for (const b of await clippedControls(page, tab)) bad.push(`${tab}: ${b}`);
      await page.screenshot({ path: join(OUT, `layout-${tab}-${width}.png`), fullPage: true });
    }
    assert.deepEqual(bad, [], `clipped controls at ${width} px`);
    assert.deepEqual(problems, [], 'no errors in the page or the worker');
    assert.deepEqual(foreign, [], 'no request may leave 127.0.0.1');
  });
}
