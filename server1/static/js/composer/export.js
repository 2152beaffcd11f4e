// "Download PNG": the composition drawn again at width×DPI by height×DPI pixels from the clippings'
// full-resolution images, and the page sizes that can be exported at all.

import { el, toast } from '../ui.js';
import { composition, pixelSize } from './document.js';
import { drawItems, image } from './view.js';

const MAX_EXPORT_PIXELS = 120e6; // below Chromium's canvas limit, with room to spare
const MAX_SIDE = 16384;

const $ = (id) => document.getElementById(id);

// Why a page of width x height inches at dpi cannot be had, or '' when it can.
export function pageProblem(width, height, dpi) {
  if (!(width >= 1 && width <= 60 && height >= 1 && height <= 60)) return 'Width and height must be from 1 to 60 inches.';
  const [w, h] = [Math.round(width * dpi), Math.round(height * dpi)];
  if (w > MAX_SIDE || h > MAX_SIDE || w * h > MAX_EXPORT_PIXELS) {
    return `At ${dpi} DPI that page is too large to export; choose a smaller size or a lower DPI.`;
  }
  return '';
}

export async function exportPng() {
  const { doc } = composition;
  const button = $('cv-export');
  const [width, height] = pixelSize();
  button.disabled = true;
  const label = button.querySelector('span');
  label.textContent = 'Preparing…';
  try {
    const entries = await Promise.all(doc.items.map((item) => image(item.url).promise));
    if (entries.some((entry) => entry.failed)) toast('Some clippings could not be loaded and are left out.', { kind: 'error' });
    const out = document.createElement('canvas');
    out.width = width;
    out.height = height;
    const target = out.getContext('2d');
    target.imageSmoothingQuality = 'high';
    if (doc.background !== 'transparent') {
      target.fillStyle = '#ffffff';
      target.fillRect(0, 0, width, height);
    }
    drawItems(target, doc.dpi, false);
    const blob = await new Promise((resolve) => out.toBlob(resolve, 'image/png'));
    if (!blob) throw new Error('the browser could not encode the image');
    const url = URL.createObjectURL(blob);
    const link = el('a', { href: url, download: `composition-${width}x${height}.png` });
    document.body.append(link);
    link.click();
    link.remove();
    setTimeout(() => URL.revokeObjectURL(url), 30000);
  } catch (error) {
    toast(`Could not export: ${error.message}`, { kind: 'error' });
  } finally {
    button.disabled = false;
    label.textContent = 'Download PNG';
  }
}
