// The view of the composition: a zoomable, pannable drawing of the page on the stage's canvas, and the
// pointer gestures on it (select, move, scale and rotate an item; pan; wheel and pinch zoom).

import { commit, composition, selectedItem, snapshot } from './document.js';

const HANDLE = 9; // screen px
export const ROTATE_STEP = 15; // degrees: a shift-drag's and a key's step
const CORNERS = [[-1, -1], [1, -1], [1, 1], [-1, 1]];

// auto: the page is fitted to the stage and stays fitted when the stage resizes, until the user zooms or pans.
const view = { scale: 1, x: 0, y: 0, auto: true, width: 0, height: 0 };
const images = new Map(); // url -> {img, ready, failed, promise}
const pointers = new Map(); // pointer id -> [x, y] on the canvas
let canvas;
let ctx;
let drawQueued = false;
let gesture = null;
let selectionChanged = () => {};

const $ = (id) => document.getElementById(id);

export const normaliseAngle = (a) => ((((a + 180) % 360) + 360) % 360) - 180;

// ---- images ------------------------------------------------------------------------------------

// The image at url, loading once; the view is drawn again when it arrives.
export function image(url) {
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

// The items onto target at `unit` pixels per inch (the view's scale, or the export's DPI).
export function drawItems(target, unit, withPlaceholders) {
  for (const item of composition.doc.items) {
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
  const { items } = composition.doc;
  for (let i = items.length - 1; i >= 0; i -= 1) {
    const [lx, ly] = local(items[i], x, y);
    if (Math.abs(lx) <= items[i].w / 2 && Math.abs(ly) <= items[i].h / 2) return items[i];
  }
  return null;
}

const near = (ax, ay, bx, by, r = HANDLE + 4) => Math.hypot(ax - bx, ay - by) <= r;
const onCorner = (item, sx, sy) => CORNERS.some(([fx, fy]) => near(sx, sy, ...corner(item, fx, fy)));

// ---- the view ----------------------------------------------------------------------------------

export function resize() {
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

export function fit() {
  const box = $('stage').getBoundingClientRect();
  if (!box.width) return;
  const { doc } = composition;
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

export function zoomCentre(factor) {
  const box = $('stage').getBoundingClientRect();
  zoomAt(factor, box.width / 2, box.height / 2);
}

// Drawn once per frame however many changes come in it.
export function draw() {
  if (drawQueued || !canvas) return;
  drawQueued = true;
  requestAnimationFrame(() => {
    drawQueued = false;
    paint();
  });
}

function paint() {
  const dpr = window.devicePixelRatio || 1;
  ctx.setTransform(1, 0, 0, 1, 0, 0);
  ctx.clearRect(0, 0, canvas.width, canvas.height);
  ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
  const pw = composition.doc.width_in * view.scale;
  const ph = composition.doc.height_in * view.scale;
  paintPage(pw, ph);
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
  const item = selectedItem();
  if (item) paintSelection(item);
  $('cv-zoom').textContent = `${Math.round((view.scale / 96) * 100)}%`;
}

// The page, with a soft shadow; a checkerboard when its background is transparent.
function paintPage(pw, ph) {
  ctx.save();
  ctx.shadowColor = 'rgba(15, 23, 42, 0.18)';
  ctx.shadowBlur = 18;
  ctx.shadowOffsetY = 4;
  ctx.fillStyle = '#ffffff';
  ctx.fillRect(view.x, view.y, pw, ph);
  ctx.restore();
  if (composition.doc.background !== 'transparent') return;
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

// The selected item's outline, corner handles (scale) and rotate handle.
function paintSelection(item) {
  const pts = CORNERS.map(([fx, fy]) => corner(item, fx, fy));
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

// ---- gestures ----------------------------------------------------------------------------------

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
  const current = selectedItem();
  if (current) {
    const [rx, ry] = rotateHandle(current);
    if (near(sx, sy, rx, ry)) {
      gesture = { kind: 'rotate', item: current, before };
      return;
    }
    if (onCorner(current, sx, sy)) {
      const [cx, cy] = toScreen(current.x, current.y);
      gesture = { kind: 'scale', item: current, before, start: Math.hypot(sx - cx, sy - cy), w: current.w, h: current.h };
      return;
    }
  }
  const hit = hitItem(sx, sy);
  if (hit) {
    composition.selected = hit.id;
    gesture = { kind: 'move', item: hit, before, sx, sy, x: hit.x, y: hit.y };
  } else {
    composition.selected = null;
    gesture = { kind: 'pan', sx, sy, x: view.x, y: view.y };
  }
  canvas.classList.toggle('grabbing', true);
  selectionChanged();
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
  if (gesture?.before) commit(gesture.before); // the item was changed in place: one undo step
  gesture = pointers.size === 2 ? pinchStart() : null;
}

function hover(event) {
  const [sx, sy] = pointerAt(event);
  const current = selectedItem();
  let cursor = hitItem(sx, sy) ? 'move' : 'grab';
  if (current) {
    const [rx, ry] = rotateHandle(current);
    if (near(sx, sy, rx, ry)) cursor = 'rotate';
    else if (onCorner(current, sx, sy)) cursor = 'scale';
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

// The canvas element's view and gestures; onSelect runs when a gesture selects or deselects an item.
export function initView(element, onSelect) {
  canvas = element;
  ctx = canvas.getContext('2d');
  selectionChanged = onSelect;
  canvas.addEventListener('pointerdown', onPointerDown);
  canvas.addEventListener('pointermove', onPointerMove);
  canvas.addEventListener('pointerup', onPointerUp);
  canvas.addEventListener('pointercancel', onPointerUp);
  canvas.addEventListener('wheel', onWheel, { passive: false });
}
