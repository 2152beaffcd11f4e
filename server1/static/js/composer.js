// The canvas composer. The composition is a document in inches (so a change of DPI
// never moves anything), kept on the server through GET|PUT /api/canvas; the view is
// a zoomable, pannable drawing of it; "Download PNG" draws it again at width×DPI by
// height×DPI pixels from the clippings' full-resolution images.

import { api } from './api.js';
import { el, toast } from './ui.js';

const DEFAULT_DOC = { version: 1, width_in: 8, height_in: 10, dpi: 300, background: 'white', items: [] };
const MAX_EXPORT_PIXELS = 120e6; // below Chromium's canvas limit, with room to spare
const MAX_SIDE = 16384;
const HANDLE = 9; // screen px
const ROTATE_STEP = 15;
const SCALE_STEP = 1.1;
const HISTORY = 100;

let doc = structuredClone(DEFAULT_DOC);
let selected = null; // item id
const undoStack = [];
const redoStack = [];
const images = new Map(); // url -> {img, ready, failed}
// auto: the page is fitted to the stage and stays fitted when the stage resizes, until the user zooms or pans.
const view = { scale: 1, x: 0, y: 0, auto: true, width: 0, height: 0 };
let canvas;
let ctx;
let saveTimer = 0;
let saving = Promise.resolve();
let dirty = false;
let drawQueued = false;
let gesture = null;
const pointers = new Map();

const $ = (id) => document.getElementById(id);

// ---- document ---------------------------------------------------------------------------

function validDoc(data) {
  const out = { ...DEFAULT_DOC, ...(data && typeof data === 'object' ? data : {}) };
  out.items = Array.isArray(out.items) ? out.items.filter((item) => item && typeof item.url === 'string') : [];
  for (const key of ['width_in', 'height_in', 'dpi']) if (!(Number(out[key]) > 0)) out[key] = DEFAULT_DOC[key];
  return out;
}

const itemById = (id) => doc.items.find((item) => item.id === id);
const snapshot = () => JSON.stringify(doc);

// Every change goes through here: one undo step, a redraw, a save.
function change(mutate, before = snapshot()) {
  mutate();
  if (snapshot() === before) return;
  undoStack.push(before);
  if (undoStack.length > HISTORY) undoStack.shift();
  redoStack.length = 0;
  changed();
}

function changed() {
  if (selected && !itemById(selected)) selected = null;
  syncControls();
  draw();
  queueSave();
}

function undo() {
  if (!undoStack.length) return;
  redoStack.push(snapshot());
  doc = JSON.parse(undoStack.pop());
  changed();
}

function redo() {
  if (!redoStack.length) return;
  undoStack.push(snapshot());
  doc = JSON.parse(redoStack.pop());
  changed();
}

function queueSave() {
  dirty = true;
  setSaveState('Saving…', 'pending');
  clearTimeout(saveTimer);
  saveTimer = setTimeout(save, 600);
}

function save({ keepalive = false } = {}) {
  clearTimeout(saveTimer);
  if (!dirty) return saving;
  dirty = false;
  const body = JSON.parse(snapshot());
  saving = saving.then(() => api('PUT', '/api/canvas', body, { keepalive })).then(
    () => { if (!dirty) setSaveState('All changes saved', 'saved'); },
    (error) => {
      dirty = true;
      setSaveState(`Not saved: ${error.message}`, 'error');
    },
  );
  return saving;
}

function setSaveState(text, state) {
  const box = $('save-state');
  box.textContent = text;
  box.dataset.state = state;
}

// ---- images --------------------------------------------------------------------------------

function image(url) {
  let entry = images.get(url);
  if (!entry) {
    const img = new Image();
    entry = { img, ready: false, failed: false };
    entry.promise = new Promise((resolve) => {
      img.onload = () => {
        entry.ready = true;
        draw();
        resolve(entry);
      };
      img.onerror = () => {
        entry.failed = true;
        draw();
        resolve(entry);
      };
    });
    img.decoding = 'async';
    img.src = url;
    images.set(url, entry);
  }
  return entry;
}

// ---- public: adding a clipping -------------------------------------------------------------

export async function addClipping(clip, imageId, imageName) {
  const entry = await image(clip.url).promise;
  if (entry.failed) {
    toast('That clipping could not be loaded.', { kind: 'error' });
    return false;
  }
  const { naturalWidth: w, naturalHeight: h } = entry.img;
  // Placed at 40% of the page (the export still draws it from the full-resolution file).
  const fitScale = Math.min((doc.width_in * 0.4) / w, (doc.height_in * 0.4) / h);
  const width = w * fitScale;
  const height = h * fitScale;
  const offset = (doc.items.length % 6) * 0.25;
  const item = {
    id: crypto.randomUUID ? crypto.randomUUID() : `i${Date.now()}${Math.random()}`,
    image_id: imageId,
    url: clip.url,
    thumb_url: clip.thumbUrl,
    label: `Clipping ${clip.index + 1} of ${imageName}`,
    x: doc.width_in / 2 + offset,
    y: doc.height_in / 2 + offset,
    w: width,
    h: height,
    rotation: 0,
  };
  change(() => doc.items.push(item));
  selected = item.id;
  syncControls();
  draw();
  return true;
}

// ---- geometry ----------------------------------------------------------------------------------

const toScreen = (x, y) => [view.x + x * view.scale, view.y + y * view.scale];
const toDoc = (sx, sy) => [(sx - view.x) / view.scale, (sy - view.y) / view.scale];

function local(item, x, y) {
  // A document point in the item's own frame (centre at 0,0, unrotated).
  const a = (-item.rotation * Math.PI) / 180;
  const dx = x - item.x;
  const dy = y - item.y;
  return [dx * Math.cos(a) - dy * Math.sin(a), dx * Math.sin(a) + dy * Math.cos(a)];
}

function corner(item, fx, fy) {
  // Screen position of a point given as fractions of the item's half-size (1,1 = bottom right).
  const a = (item.rotation * Math.PI) / 180;
  const lx = (fx * item.w) / 2;
  const ly = (fy * item.h) / 2;
  return toScreen(item.x + lx * Math.cos(a) - ly * Math.sin(a), item.y + lx * Math.sin(a) + ly * Math.cos(a));
}

function rotateHandle(item) {
  const a = (item.rotation * Math.PI) / 180;
  const [tx, ty] = corner(item, 0, -1);
  return [tx + 26 * Math.sin(a), ty - 26 * Math.cos(a)];
}

function hitItem(sx, sy) {
  const [x, y] = toDoc(sx, sy);
  for (let i = doc.items.length - 1; i >= 0; i -= 1) {
    const item = doc.items[i];
    const [lx, ly] = local(item, x, y);
    if (Math.abs(lx) <= item.w / 2 && Math.abs(ly) <= item.h / 2) return item;
  }
  return null;
}

const near = (ax, ay, bx, by, r = HANDLE + 4) => Math.hypot(ax - bx, ay - by) <= r;

// ---- view ------------------------------------------------------------------------------------------

function resize() {
  const box = $('stage').getBoundingClientRect();
  if (!box.width || !box.height) return; // the canvas view is hidden
  const dpr = window.devicePixelRatio || 1;
  canvas.width = Math.max(1, Math.round(box.width * dpr));
  canvas.height = Math.max(1, Math.round(box.height * dpr));
  if (view.auto) {
    fit();
  } else {
    // Keep what was in the middle of the stage in the middle.
    view.x += (box.width - view.width) / 2;
    view.y += (box.height - view.height) / 2;
  }
  view.width = box.width;
  view.height = box.height;
  draw();
}

function fit() {
  const box = $('stage').getBoundingClientRect();
  if (!box.width) return;
  const pad = Math.min(48, box.width * 0.06);
  view.scale = Math.max(0.01, Math.min((box.width - 2 * pad) / doc.width_in, (box.height - 2 * pad) / doc.height_in));
  view.x = (box.width - doc.width_in * view.scale) / 2;
  view.y = (box.height - doc.height_in * view.scale) / 2;
  view.auto = true;
  draw();
}

function zoomAt(factor, sx, sy) {
  const next = Math.min(4000, Math.max(2, view.scale * factor));
  view.auto = false;
  const [x, y] = toDoc(sx, sy);
  view.scale = next;
  view.x = sx - x * next;
  view.y = sy - y * next;
  draw();
}

function zoomCentre(factor) {
  const box = $('stage').getBoundingClientRect();
  zoomAt(factor, box.width / 2, box.height / 2);
}

function draw() {
  if (drawQueued || !canvas) return;
  drawQueued = true;
  requestAnimationFrame(() => {
    drawQueued = false;
    paint();
  });
}

function drawItems(target, unit, withPlaceholders) {
  for (const item of doc.items) {
    const entry = image(item.url);
    target.save();
    target.translate(item.x * unit, item.y * unit);
    target.rotate((item.rotation * Math.PI) / 180);
    const w = item.w * unit;
    const h = item.h * unit;
    if (entry.ready) {
      target.drawImage(entry.img, -w / 2, -h / 2, w, h);
    } else if (withPlaceholders) {
      target.fillStyle = entry.failed ? 'rgba(220, 38, 38, 0.12)' : 'rgba(100, 116, 139, 0.12)';
      target.fillRect(-w / 2, -h / 2, w, h);
    }
    target.restore();
  }
}

function paint() {
  const dpr = window.devicePixelRatio || 1;
  ctx.setTransform(1, 0, 0, 1, 0, 0);
  ctx.clearRect(0, 0, canvas.width, canvas.height);
  ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
  const pw = doc.width_in * view.scale;
  const ph = doc.height_in * view.scale;

  // The page, with a soft shadow; a checkerboard when its background is transparent.
  ctx.save();
  ctx.shadowColor = 'rgba(15, 23, 42, 0.18)';
  ctx.shadowBlur = 18;
  ctx.shadowOffsetY = 4;
  ctx.fillStyle = '#ffffff';
  ctx.fillRect(view.x, view.y, pw, ph);
  ctx.restore();
  if (doc.background === 'transparent') {
    ctx.save();
    ctx.beginPath();
    ctx.rect(view.x, view.y, pw, ph);
    ctx.clip();
    ctx.fillStyle = '#e9edf2';
    const cell = 10;
    for (let y = 0; y * cell < ph; y += 1) {
      for (let x = (y % 2); x * cell < pw; x += 2) ctx.fillRect(view.x + x * cell, view.y + y * cell, cell, cell);
    }
    ctx.restore();
  }

  // Items: faint where they stray off the page, full strength on it (what the export shows).
  ctx.save();
  ctx.translate(view.x, view.y);
  ctx.globalAlpha = 0.3;
  drawItems(ctx, view.scale, true);
  ctx.globalAlpha = 1;
  ctx.beginPath();
  ctx.rect(0, 0, pw, ph);
  ctx.clip();
  drawItems(ctx, view.scale, true);
  ctx.restore();

  ctx.strokeStyle = 'rgba(15, 23, 42, 0.14)';
  ctx.lineWidth = 1;
  ctx.strokeRect(view.x + 0.5, view.y + 0.5, pw - 1, ph - 1);

  const item = selected && itemById(selected);
  if (item) {
    const pts = [corner(item, -1, -1), corner(item, 1, -1), corner(item, 1, 1), corner(item, -1, 1)];
    ctx.strokeStyle = '#4f46e5';
    ctx.lineWidth = 1.5;
    ctx.beginPath();
    pts.forEach(([x, y], i) => (i ? ctx.lineTo(x, y) : ctx.moveTo(x, y)));
    ctx.closePath();
    ctx.stroke();
    const [tx, ty] = corner(item, 0, -1);
    const [rx, ry] = rotateHandle(item);
    ctx.beginPath();
    ctx.moveTo(tx, ty);
    ctx.lineTo(rx, ry);
    ctx.stroke();
    ctx.fillStyle = '#ffffff';
    for (const [x, y] of pts) {
      ctx.beginPath();
      ctx.rect(x - HANDLE / 2, y - HANDLE / 2, HANDLE, HANDLE);
      ctx.fill();
      ctx.stroke();
    }
    ctx.beginPath();
    ctx.arc(rx, ry, HANDLE / 2 + 1, 0, Math.PI * 2);
    ctx.fill();
    ctx.stroke();
  }
  $('cv-zoom').textContent = `${Math.round((view.scale / 96) * 100)}%`;
}

// ---- pointer and keyboard --------------------------------------------------------------------------

function pointerAt(event) {
  const box = canvas.getBoundingClientRect();
  return [event.clientX - box.left, event.clientY - box.top];
}

function onPointerDown(event) {
  canvas.focus({ preventScroll: true });
  canvas.setPointerCapture(event.pointerId);
  pointers.set(event.pointerId, pointerAt(event));
  if (pointers.size === 2) {
    gesture = pinchStart();
    return;
  }
  const [sx, sy] = pointerAt(event);
  const before = snapshot();
  const current = selected && itemById(selected);
  if (current) {
    const [rx, ry] = rotateHandle(current);
    if (near(sx, sy, rx, ry)) {
      gesture = { kind: 'rotate', item: current, before };
      return;
    }
    const handles = [[-1, -1], [1, -1], [1, 1], [-1, 1]];
    if (handles.some(([fx, fy]) => near(sx, sy, ...corner(current, fx, fy)))) {
      const [cx, cy] = toScreen(current.x, current.y);
      gesture = { kind: 'scale', item: current, before, start: Math.hypot(sx - cx, sy - cy), w: current.w, h: current.h };
      return;
    }
  }
  const hit = hitItem(sx, sy);
  if (hit) {
    selected = hit.id;
    gesture = { kind: 'move', item: hit, before, sx, sy, x: hit.x, y: hit.y };
  } else {
    selected = null;
    gesture = { kind: 'pan', sx, sy, x: view.x, y: view.y };
  }
  canvas.classList.toggle('grabbing', true);
  syncControls();
  draw();
}

function onPointerMove(event) {
  if (!pointers.has(event.pointerId)) {
    hover(event);
    return;
  }
  pointers.set(event.pointerId, pointerAt(event));
  if (!gesture) return;
  const [sx, sy] = pointerAt(event);
  if (gesture.kind === 'pinch') {
    pinchMove();
  } else if (gesture.kind === 'pan') {
    view.auto = false;
    view.x = gesture.x + sx - gesture.sx;
    view.y = gesture.y + sy - gesture.sy;
  } else if (gesture.kind === 'move') {
    gesture.item.x = gesture.x + (sx - gesture.sx) / view.scale;
    gesture.item.y = gesture.y + (sy - gesture.sy) / view.scale;
  } else if (gesture.kind === 'scale') {
    const [cx, cy] = toScreen(gesture.item.x, gesture.item.y);
    const factor = Math.max(0.02, Math.hypot(sx - cx, sy - cy) / Math.max(1, gesture.start));
    gesture.item.w = gesture.w * factor;
    gesture.item.h = gesture.h * factor;
  } else if (gesture.kind === 'rotate') {
    const [cx, cy] = toScreen(gesture.item.x, gesture.item.y);
    let angle = (Math.atan2(sy - cy, sx - cx) * 180) / Math.PI + 90;
    if (event.shiftKey) angle = Math.round(angle / ROTATE_STEP) * ROTATE_STEP;
    gesture.item.rotation = normaliseAngle(angle);
  }
  draw();
}

function onPointerUp(event) {
  pointers.delete(event.pointerId);
  canvas.classList.remove('grabbing');
  if (gesture?.before) {
    const done = gesture;
    const after = snapshot();
    if (after !== done.before) {
      undoStack.push(done.before);
      redoStack.length = 0;
      changed();
    }
  }
  gesture = pointers.size === 2 ? pinchStart() : null;
}

function hover(event) {
  const [sx, sy] = pointerAt(event);
  const current = selected && itemById(selected);
  let cursor = hitItem(sx, sy) ? 'move' : 'grab';
  if (current) {
    const [rx, ry] = rotateHandle(current);
    if (near(sx, sy, rx, ry)) cursor = 'rotate';
    else if ([[-1, -1], [1, -1], [1, 1], [-1, 1]].some(([fx, fy]) => near(sx, sy, ...corner(current, fx, fy)))) cursor = 'scale';
  }
  canvas.dataset.cursor = cursor;
}

function pinchStart() {
  const [[ax, ay], [bx, by]] = [...pointers.values()];
  return { kind: 'pinch', distance: Math.hypot(ax - bx, ay - by), mx: (ax + bx) / 2, my: (ay + by) / 2, scale: view.scale,
    x: view.x, y: view.y };
}

function pinchMove() {
  const [[ax, ay], [bx, by]] = [...pointers.values()];
  const factor = Math.hypot(ax - bx, ay - by) / Math.max(1, gesture.distance);
  view.auto = false;
  const [x, y] = [(gesture.mx - gesture.x) / gesture.scale, (gesture.my - gesture.y) / gesture.scale];
  view.scale = Math.min(4000, Math.max(2, gesture.scale * factor));
  view.x = (ax + bx) / 2 - x * view.scale;
  view.y = (ay + by) / 2 - y * view.scale;
}

function onWheel(event) {
  event.preventDefault();
  const [sx, sy] = pointerAt(event);
  if (event.ctrlKey || !event.shiftKey) zoomAt(Math.exp(-event.deltaY * 0.0015), sx, sy);
}

const normaliseAngle = (a) => ((((a + 180) % 360) + 360) % 360) - 180;

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
    Escape: () => {
      selected = null;
      syncControls();
      draw();
    },
  };
  if (moves[event.key] && selected) {
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

// ---- actions ----------------------------------------------------------------------------------------

function editSelected(edit) {
  const item = selected && itemById(selected);
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
  const at = doc.items.findIndex((item) => item.id === selected);
  const to = at + direction;
  if (at < 0 || to < 0 || to >= doc.items.length) return;
  change(() => {
    const [item] = doc.items.splice(at, 1);
    doc.items.splice(to, 0, item);
  });
}

function removeSelected() {
  if (!selected) return;
  const id = selected;
  change(() => {
    doc.items = doc.items.filter((item) => item.id !== id);
  });
}

function applyPage(event) {
  event.preventDefault();
  const width = Number($('page-width').value);
  const height = Number($('page-height').value);
  const dpi = Number($('page-dpi').value);
  const error = $('page-error');
  let message = '';
  if (!(width >= 1 && width <= 60 && height >= 1 && height <= 60)) message = 'Width and height must be from 1 to 60 inches.';
  else if (Math.round(width * dpi) > MAX_SIDE || Math.round(height * dpi) > MAX_SIDE
    || Math.round(width * dpi) * Math.round(height * dpi) > MAX_EXPORT_PIXELS) {
    message = `At ${dpi} DPI that page is too large to export; choose a smaller size or a lower DPI.`;
  }
  error.hidden = !message;
  error.textContent = message;
  if (message) return;
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

function pixelSize() {
  return [Math.round(doc.width_in * doc.dpi), Math.round(doc.height_in * doc.dpi)];
}

async function exportPng() {
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

// ---- controls ------------------------------------------------------------------------------------------

function syncControls() {
  const has = Boolean(selected && itemById(selected));
  const at = doc.items.findIndex((item) => item.id === selected);
  for (const id of ['cv-rotl', 'cv-rotr', 'cv-smaller', 'cv-larger', 'cv-delete']) $(id).disabled = !has;
  $('cv-forward').disabled = !has || at === doc.items.length - 1;
  $('cv-backward').disabled = !has || at === 0;
  $('cv-undo').disabled = !undoStack.length;
  $('cv-redo').disabled = !redoStack.length;
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
  const list = $('layers');
  list.replaceChildren(...[...doc.items].reverse().map((item) => el('li', {},
    el('button', { type: 'button', class: 'layer', 'aria-pressed': String(item.id === selected), dataset: { id: item.id } },
      el('span', { class: 'layer-thumb checker' }, el('img', { src: item.thumb_url || item.url, alt: '', loading: 'lazy' })),
      el('span', { class: 'layer-label', text: item.label || 'Clipping' })))));
  if (!doc.items.length) list.append(el('li', { class: 'muted small layers-empty', text: 'Nothing on the canvas yet.' }));
}

export async function initComposer() {
  canvas = $('composer-canvas');
  ctx = canvas.getContext('2d');
  canvas.addEventListener('pointerdown', onPointerDown);
  canvas.addEventListener('pointermove', onPointerMove);
  canvas.addEventListener('pointerup', onPointerUp);
  canvas.addEventListener('pointercancel', onPointerUp);
  canvas.addEventListener('wheel', onWheel, { passive: false });
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
    selected = button.dataset.id;
    syncControls();
    draw();
    $('layers').querySelector(`[data-id="${CSS.escape(selected)}"]`)?.focus();
  });
  new ResizeObserver(resize).observe($('stage'));
  window.addEventListener('pagehide', () => save({ keepalive: true }));
  // Clippings of deleted photos are gone from the server: take them off the canvas too.
  document.addEventListener('album:cleared', () => change(() => {
    doc.items = [];
  }));
  document.addEventListener('album:deleted', (event) => {
    if (doc.items.some((item) => item.image_id === event.detail)) {
      change(() => {
        doc.items = doc.items.filter((item) => item.image_id !== event.detail);
      });
    }
  });
  try {
    const data = await api('GET', '/api/canvas');
    doc = validDoc(data.canvas ?? data);
    setSaveState('All changes saved', 'saved');
  } catch (error) {
    if (error.status !== 404) setSaveState(`Could not load the canvas: ${error.message}`, 'error');
  }
  syncControls();
  resize();
}

export function composerShown() {
  resize();
}
