// The canvas composer: its controls, keyboard and actions, over the composition (composer/document.js:
// the document in inches, undo and saving), its view (composer/view.js: drawing, zoom, pointer gestures)
// and its export (composer/export.js: "Download PNG" at width×DPI by height×DPI pixels).

import { el, toast } from './ui.js';
import {
  canRedo, canUndo, change, composition, load, onChange, pixelSize, redo, save, selectedItem, undo,
} from './composer/document.js';
import { exportPng, pageProblem } from './composer/export.js';
import { draw, fit, image, initView, normaliseAngle, resize, ROTATE_STEP, zoomCentre } from './composer/view.js';

const SCALE_STEP = 1.1;

const $ = (id) => document.getElementById(id);

// ---- public: adding a clipping -------------------------------------------------------------

export async function addClipping(clip, imageId, imageName) {
  const entry = await image(clip.url).promise;
  if (entry.failed) {
    toast('That clipping could not be loaded.', { kind: 'error' });
    return false;
  }
  const { doc } = composition;
  const { naturalWidth: w, naturalHeight: h } = entry.img;
  // Placed at 40% of the page (the export still draws it from the full-resolution file).
  const fitScale = Math.min((doc.width_in * 0.4) / w, (doc.height_in * 0.4) / h);
  const offset = (doc.items.length % 6) * 0.25;
  const item = {
    id: crypto.randomUUID ? crypto.randomUUID() : `i${Date.now()}${Math.random()}`,
    image_id: imageId,
    url: clip.url,
    thumb_url: clip.thumbUrl,
    label: `Clipping ${clip.index + 1} of ${imageName}`,
    x: doc.width_in / 2 + offset,
    y: doc.height_in / 2 + offset,
    w: w * fitScale,
    h: h * fitScale,
    rotation: 0,
  };
  change(() => doc.items.push(item));
  select(item.id);
  return true;
}

// ---- actions ----------------------------------------------------------------------------------------

function select(id) {
  composition.selected = id;
  syncControls();
  draw();
}

function editSelected(edit) {
  const item = selectedItem();
  if (item) change(() => edit(item));
}

const rotate = (degrees) => editSelected((item) => {
  item.rotation = normaliseAngle(item.rotation + degrees);
});

const resizeSelected = (factor) => editSelected((item) => {
  item.w *= factor;
  item.h *= factor;
});

function restack(direction) {
  const { items } = composition.doc;
  const at = items.findIndex((item) => item.id === composition.selected);
  const to = at + direction;
  if (at < 0 || to < 0 || to >= items.length) return;
  change(() => {
    const [item] = items.splice(at, 1);
    items.splice(to, 0, item);
  });
}

function removeSelected() {
  const id = composition.selected;
  if (!id) return;
  change(() => {
    composition.doc.items = composition.doc.items.filter((item) => item.id !== id);
  });
}

function removeImage(imageId) {
  const { doc } = composition;
  if (!doc.items.some((item) => item.image_id === imageId)) return;
  change(() => {
    doc.items = doc.items.filter((item) => item.image_id !== imageId);
  });
}

function applyPage(event) {
  event.preventDefault();
  const width = Number($('page-width').value);
  const height = Number($('page-height').value);
  const dpi = Number($('page-dpi').value);
  const message = pageProblem(width, height, dpi);
  const error = $('page-error');
  error.hidden = !message;
  error.textContent = message;
  if (message) return;
  const { doc } = composition;
  change(() => {
    // Clippings keep their size and their place relative to the page.
    for (const item of doc.items) {
      item.x *= width / doc.width_in;
      item.y *= height / doc.height_in;
    }
    doc.width_in = width;
    doc.height_in = height;
    doc.dpi = dpi;
    doc.background = $('page-bg').value;
  });
  fit();
}

function onKey(event) {
  const mod = event.ctrlKey || event.metaKey;
  if (mod && event.key.toLowerCase() === 'z') {
    event.preventDefault();
    if (event.shiftKey) redo();
    else undo();
    return;
  }
  if (mod && event.key.toLowerCase() === 'y') {
    event.preventDefault();
    redo();
    return;
  }
  const step = event.shiftKey ? 0.5 : 0.05;
  const moves = { ArrowLeft: [-step, 0], ArrowRight: [step, 0], ArrowUp: [0, -step], ArrowDown: [0, step] };
  const actions = {
    Delete: removeSelected,
    Backspace: removeSelected,
    PageUp: () => restack(1),
    PageDown: () => restack(-1),
    '[': () => rotate(-ROTATE_STEP),
    ']': () => rotate(ROTATE_STEP),
    '+': () => resizeSelected(SCALE_STEP),
    '=': () => resizeSelected(SCALE_STEP),
    '-': () => resizeSelected(1 / SCALE_STEP),
    Escape: () => select(null),
  };
  if (moves[event.key] && composition.selected) {
    event.preventDefault();
    const [dx, dy] = moves[event.key];
    editSelected((item) => {
      item.x += dx;
      item.y += dy;
    });
  } else if (actions[event.key] && !mod) {
    event.preventDefault();
    actions[event.key]();
  }
}

// ---- controls ------------------------------------------------------------------------------------------

function syncControls() {
  const { doc, selected } = composition;
  const has = Boolean(selectedItem());
  const at = doc.items.findIndex((item) => item.id === selected);
  for (const id of ['cv-rotl', 'cv-rotr', 'cv-smaller', 'cv-larger', 'cv-delete']) $(id).disabled = !has;
  $('cv-forward').disabled = !has || at === doc.items.length - 1;
  $('cv-backward').disabled = !has || at === 0;
  $('cv-undo').disabled = !canUndo();
  $('cv-redo').disabled = !canRedo();
  $('cv-export').disabled = false;
  const form = $('page-form');
  if (!form.contains(document.activeElement)) {
    $('page-width').value = String(doc.width_in);
    $('page-height').value = String(doc.height_in);
    $('page-dpi').value = String(doc.dpi);
    $('page-bg').value = doc.background;
  }
  const [w, h] = pixelSize();
  $('page-pixels').textContent = `Exports at ${w.toLocaleString()} × ${h.toLocaleString()} pixels.`;
  $('canvas-count').textContent = String(doc.items.length);
  $('stage-empty').hidden = doc.items.length > 0;
  renderLayers();
}

function renderLayers() {
  const { doc, selected } = composition;
  const list = $('layers');
  list.replaceChildren(...[...doc.items].reverse().map((item) => el('li', {},
    el('button', { type: 'button', class: 'layer', 'aria-pressed': String(item.id === selected), dataset: { id: item.id } },
      el('span', { class: 'layer-thumb checker' }, el('img', { src: item.thumb_url || item.url, alt: '', loading: 'lazy' })),
      el('span', { class: 'layer-label', text: item.label || 'Clipping' })))));
  if (!doc.items.length) list.append(el('li', { class: 'muted small layers-empty', text: 'Nothing on the canvas yet.' }));
}

export async function initComposer() {
  onChange(() => {
    syncControls();
    draw();
  });
  const canvas = $('composer-canvas');
  initView(canvas, syncControls);
  canvas.addEventListener('keydown', onKey);
  const click = (id, run) => $(id).addEventListener('click', run);
  click('cv-undo', undo);
  click('cv-redo', redo);
  click('cv-forward', () => restack(1));
  click('cv-backward', () => restack(-1));
  click('cv-rotl', () => rotate(-ROTATE_STEP));
  click('cv-rotr', () => rotate(ROTATE_STEP));
  click('cv-smaller', () => resizeSelected(1 / SCALE_STEP));
  click('cv-larger', () => resizeSelected(SCALE_STEP));
  click('cv-delete', removeSelected);
  click('cv-zoomin', () => zoomCentre(1.25));
  click('cv-zoomout', () => zoomCentre(1 / 1.25));
  click('cv-fit', fit);
  click('cv-export', exportPng);
  $('page-form').addEventListener('submit', applyPage);
  $('layers').addEventListener('click', (event) => {
    const button = event.target.closest('.layer');
    if (!button) return;
    select(button.dataset.id);
    $('layers').querySelector(`[data-id="${CSS.escape(button.dataset.id)}"]`)?.focus();
  });
  new ResizeObserver(resize).observe($('stage'));
  window.addEventListener('pagehide', () => save({ keepalive: true }));
  // Clippings of deleted photos are gone from the server: take them off the canvas too.
  document.addEventListener('album:cleared', () => change(() => {
    composition.doc.items = [];
  }));
  document.addEventListener('album:deleted', (event) => removeImage(event.detail));
  await load();
  syncControls();
  resize();
}

export function composerShown() {
  resize();
}
