// The editor: click to cut with SAM's prompt decoder running in this browser (onnxruntime-web, WASM)
// over the image's stored embedding, and an erase / restore brush for an existing clipping's mask.
//
// Coordinates: the overlay canvas has the resized image's pixels (the embedding's); prompts sent to the
// server are in the original's pixels. The decoder answers low-res logits (4g x 4g), turned into the
// preview's mask by the same steps as the server's for the saved clipping (SamPredictor.postprocess_masks,
// server1/cutting.upscale): what the user previews is what /cut saves, at the overlay's size. Each click is
// decoded with the previous step's low-res logits as SAM's mask prompt (as SAM's demo does), and /cut replays
// the clicks in the same order the same way (server1/cutting.replay).

import { api, csrfToken, parseJson, reasonFrom } from './api.js';

const VENDOR = '/static/vendor/onnxruntime-web/';
const root = document.getElementById('editor');
const imageId = root.dataset.imageId;
const $ = (id) => document.getElementById(id);
const overlay = $('ed-overlay');
const ctx = overlay.getContext('2d');
const status = (text) => { $('ed-status').textContent = text; };

let meta = null; // GET /api/images/<id>/editor
let ort = null;
let session = null;
let embedding = null; // ort.Tensor 1 x 256 x g x g
let size = { w: 1, h: 1 }; // the overlay's (resized image's) pixels
let points = []; // {x, y, label} in the original's pixels
let box = null; // {x0, y0, x1, y1} in the original's pixels
let hover = null; // a preview point, original's pixels
let drag = null; // {x, y} where a press started (overlay pixels)
let cursor = null; // the keyboard cursor (overlay pixels)
let mask = null; // the last decoded low-res logits
let chain = []; // [{key, decoded}]: each step of the prompt decoded (decodeChain), kept for the next decode
let busy = false; // a decode is running
let queued = false; // the prompt changed meanwhile: decode once more, the latest prompt only
let decodes = 0;
let target = null; // the clipping being touched up
let brush = null; // {canvas, base, strokes, redo, stroke}

// ---- loading ---------------------------------------------------------------------------------
function half(bits) { // IEEE float16 -> number
  const exp = (bits >> 10) & 0x1f;
  const frac = bits & 0x3ff;
  const sign = bits & 0x8000 ? -1 : 1;
  if (exp === 0) return sign * 2 ** -14 * (frac / 1024);
  if (exp === 31) return frac ? NaN : sign * Infinity;
  return sign * 2 ** (exp - 15) * (1 + frac / 1024);
}

export function parseNpy(buffer) {
  const bytes = new Uint8Array(buffer);
  const headerLength = bytes[6] === 1 ? new DataView(buffer).getUint16(8, true) : new DataView(buffer).getUint32(8, true);
  const start = bytes[6] === 1 ? 10 : 12;
  const header = new TextDecoder().decode(bytes.subarray(start, start + headerLength));
  const shape = header.match(/'shape':\s*\(([^)]*)\)/)[1].split(',').filter((s) => s.trim()).map(Number);
  if (!header.includes("'descr': '<f2'")) throw new Error('the embedding is not float16');
  const raw = new Uint16Array(buffer.slice(start + headerLength));
  const table = new Float32Array(65536);
  for (let i = 0; i < 65536; i += 1) table[i] = half(i);
  const data = new Float32Array(raw.length);
  for (let i = 0; i < raw.length; i += 1) data[i] = table[raw[i]];
  return { shape, data };
}

// A 503 with Retry-After (the server computes one embedding at a time) is asked again, a few times.
async function fetchBuffer(url, tries = 10) {
  const response = await fetch(url, { credentials: 'same-origin' });
  const wait = Number(response.headers.get('Retry-After'));
  if (response.status === 503 && wait && tries > 1) {
    await new Promise((resolve) => { setTimeout(resolve, wait * 1000); });
    return fetchBuffer(url, tries - 1);
  }
  if (!response.ok) throw new Error(reasonFrom(response.status, parseJson(await response.text())));
  return response.arrayBuffer();
}

// The decoder's session and the embedding, started as soon as the page knows their URLs: the embedding may be
// computed on the server now (a photo Server2 has not processed), meanwhile the photo and the decoder load.
async function loadDecoder() {
  status('Loading the cutting model (it runs in this browser)…');
  const npy = fetchBuffer(meta.embedding.url);
  npy.catch(() => {}); // awaited below; a failure is reported there, not as unhandled meanwhile
  ort = await import(`${VENDOR}ort.wasm.min.mjs`);
  ort.env.wasm.wasmPaths = VENDOR;
  // Threads need SharedArrayBuffer, which the page has because it is cross-origin isolated (server1/editor.py).
  // One core is left to the page (drawing, pointer events): on 2 cores under load a second decoder thread
  // measured slower than one (README "Editor"). ?one-thread is the benchmark's single-thread figure.
  const single = new URLSearchParams(window.location.search).has('one-thread');
  const spare = Math.max(1, (navigator.hardwareConcurrency || 2) - 1);
  ort.env.wasm.numThreads = crossOriginIsolated && !single ? Math.min(4, spare) : 1;
  root.dataset.threads = String(ort.env.wasm.numThreads);
  session = await ort.InferenceSession.create(await fetchBuffer(meta.embedding.decoder_url), { executionProviders: ['wasm'] });
  const parsed = parseNpy(await npy);
  embedding = new ort.Tensor('float32', parsed.data, parsed.shape);
}

// ---- the decoder -----------------------------------------------------------------------------
function modelFrame() {
  const e = meta.embedding;
  const scale = e.input_size / Math.max(e.width, e.height);
  return { w: Math.floor(e.width * scale + 0.5), h: Math.floor(e.height * scale + 0.5) };
}

// Prompt (original's pixels) -> decoder feeds, as server1.cutting.decoder_inputs builds them; previous: the
// last step's decoded mask, fed back (server1.cutting.low_res_logits).
function feeds(prompt, previous) {
  const frame = modelFrame();
  const sx = frame.w / meta.width;
  const sy = frame.h / meta.height;
  const coords = [];
  const labels = [];
  for (const p of prompt.points) { coords.push(p.x * sx, p.y * sy); labels.push(p.label); }
  if (prompt.box) {
    coords.push(prompt.box.x0 * sx, prompt.box.y0 * sy, prompt.box.x1 * sx, prompt.box.y1 * sy);
    labels.push(2, 3);
  } else {
    coords.push(0, 0);
    labels.push(-1);
  }
  const grid = embedding.dims[3];
  const fed = previous ? previous.logits : new Float32Array(16 * grid * grid);
  return {
    image_embeddings: embedding,
    point_coords: new ort.Tensor('float32', Float32Array.from(coords), [1, labels.length, 2]),
    point_labels: new ort.Tensor('float32', Float32Array.from(labels), [1, labels.length]),
    mask_input: new ort.Tensor('float32', fed, [1, 1, 4 * grid, 4 * grid]),
    has_mask_input: new ort.Tensor('float32', Float32Array.of(previous ? 1 : 0), [1]),
  };
}

async function decode(prompt, previous) {
  const out = await session.run(feeds(prompt, previous));
  const low = out.low_res_masks;
  return { logits: low.data, side: low.dims[3] };
}

const hasPrompt = (prompt) => prompt.box || prompt.points.some((p) => p.label === 1);

// The prompt decoded step by step as server1/cutting.replay does: the box alone first (when there is one),
// then each click in order, each step with the previous step's logits fed back; a step with neither a box
// nor a positive point is skipped. Steps already decoded for the same prefix are reused, so a hover or a new
// click costs one decode.
async function decodeChain(prompt) {
  let previous = null;
  let i = 0;
  for (let k = prompt.box ? 0 : 1; k <= prompt.points.length; k += 1) {
    const step = { points: prompt.points.slice(0, k), box: prompt.box };
    if (hasPrompt(step)) {
      const key = JSON.stringify(step);
      if (!chain[i] || chain[i].key !== key) {
        chain.length = i;
        chain.push({ key, decoded: await decode(step, previous) });
      }
      previous = chain[i].decoded;
      i += 1;
    }
  }
  return previous;
}

function currentPrompt() {
  const all = hover ? [...points, hover] : points;
  return { points: all, box };
}

// Hover preview at the decoder's speed, never queued up: a change during a decode only marks the prompt
// stale; the loop then decodes whatever the prompt is by then (intermediate cursor positions are dropped).
async function refresh() {
  if (!session || target) return draw();
  if (busy) { queued = true; return; }
  busy = true;
  root.dataset.busy = '1';
  try {
    do {
      queued = false;
      const prompt = currentPrompt();
      mask = hasPrompt(prompt) ? await decodeChain(prompt) : null;
      decodes += 1;
      root.dataset.decodes = String(decodes);
      draw();
    } while (queued);
  } catch (error) {
    status(`The cutting model failed: ${error.message}`);
  } finally {
    busy = false;
    root.dataset.busy = '0';
  }
}

// ---- the mask: SamPredictor.postprocess_masks ----------------------------------------------------
// Source positions of the first `count` of `to` outputs resampled from `from` inputs, pixel centres aligned
// (torch's bilinear with align_corners=False, OpenCV's INTER_LINEAR): first and second input, second's weight.
function taps(from, to, count) {
  const first = new Int32Array(count);
  const second = new Int32Array(count);
  const weight = new Float32Array(count);
  for (let i = 0; i < count; i += 1) {
    const s = Math.max(0, (i + 0.5) * (from / to) - 0.5);
    first[i] = Math.min(Math.floor(s), from - 1);
    second[i] = Math.min(first[i] + 1, from - 1);
    weight[i] = first[i] === from - 1 ? 0 : s - first[i];
  }
  return { first, second, weight };
}

// Bilinear resize of the sw x sh top-left part of src (rows of `stride` values) to dw x dh, keeping only the
// top-left cw x ch of the result. Typed arrays and no allocation in the loops: it runs on every hover.
function resize(src, stride, sw, sh, dw, dh, cw = dw, ch = dh) {
  const xs = taps(sw, dw, cw);
  const ys = taps(sh, dh, ch);
  const rows = new Float32Array(sh * cw);
  for (let y = 0; y < sh; y += 1) {
    const row = y * stride;
    for (let x = 0; x < cw; x += 1) {
      const f = xs.weight[x];
      rows[y * cw + x] = src[row + xs.first[x]] * (1 - f) + src[row + xs.second[x]] * f;
    }
  }
  const out = new Float32Array(cw * ch);
  for (let y = 0; y < ch; y += 1) {
    const a = ys.first[y] * cw;
    const b = ys.second[y] * cw;
    const f = ys.weight[y];
    for (let x = 0; x < cw; x += 1) out[y * cw + x] = rows[a + x] * (1 - f) + rows[b + x] * f;
  }
  return out;
}

// The mask at width x height (1 inside): logits to the input frame (only its image part is computed), that
// part to width x height, then > 0; as server1/cutting.upscale does for /cut.
function maskAt({ logits, side }, width, height) {
  const input = meta.embedding.input_size;
  const frame = modelFrame();
  const inFrame = resize(logits, side, side, side, input, input, frame.w, frame.h);
  const same = width === frame.w && height === frame.h; // the preview, usually: a resize to the same size is exact
  const scaled = same ? inFrame : resize(inFrame, frame.w, frame.w, frame.h, width, height);
  const bits = new Uint8Array(scaled.length);
  for (let i = 0; i < scaled.length; i += 1) bits[i] = scaled[i] > 0 ? 1 : 0;
  return bits;
}

// ---- drawing ---------------------------------------------------------------------------------
const scratch = document.createElement('canvas');

function drawMask() {
  if (!mask) return;
  const bits = maskAt(mask, size.w, size.h);
  scratch.width = size.w;
  scratch.height = size.h;
  const pixels = new ImageData(size.w, size.h);
  for (let i = 0; i < bits.length; i += 1) {
    if (bits[i]) pixels.data.set([79, 70, 229, 120], i * 4);
  }
  scratch.getContext('2d').putImageData(pixels, 0, 0);
  ctx.drawImage(scratch, 0, 0);
}

const toOverlay = (x, y) => [x * size.w / meta.width, y * size.h / meta.height];

function drawPrompt() {
  for (const p of points) {
    const [x, y] = toOverlay(p.x, p.y);
    ctx.beginPath();
    ctx.arc(x, y, Math.max(4, size.w / 150), 0, 2 * Math.PI);
    ctx.fillStyle = p.label === 1 ? '#16a34a' : '#dc2626';
    ctx.fill();
    ctx.lineWidth = 2;
    ctx.strokeStyle = '#fff';
    ctx.stroke();
  }
  const shown = box || (drag && drag.box);
  if (shown) {
    const [x0, y0] = toOverlay(shown.x0, shown.y0);
    const [x1, y1] = toOverlay(shown.x1, shown.y1);
    ctx.lineWidth = Math.max(2, size.w / 400);
    ctx.strokeStyle = '#f59e0b';
    ctx.strokeRect(x0, y0, x1 - x0, y1 - y0);
  }
}

function drawBrush() {
  ctx.fillStyle = 'rgba(15, 23, 42, 0.6)';
  ctx.fillRect(0, 0, size.w, size.h);
  ctx.globalCompositeOperation = 'destination-out';
  ctx.drawImage(brush.canvas, 0, 0, size.w, size.h); // the kept part shows the photo itself
  ctx.globalCompositeOperation = 'source-over';
}

function drawCursor() {
  if (!cursor) return;
  ctx.strokeStyle = '#fff';
  ctx.lineWidth = 2;
  const r = target ? brushRadius() * size.w / meta.width : Math.max(6, size.w / 80);
  ctx.beginPath();
  ctx.arc(cursor.x, cursor.y, r, 0, 2 * Math.PI);
  ctx.stroke();
}

function draw() {
  ctx.clearRect(0, 0, size.w, size.h);
  if (target && brush) drawBrush();
  else { drawMask(); drawPrompt(); }
  drawCursor();
  $('ed-save-cut').disabled = !session || !hasPrompt({ points, box });
}

// ---- cut: pointer and keyboard ---------------------------------------------------------------
function overlayPoint(event) {
  const rect = overlay.getBoundingClientRect();
  return { x: (event.clientX - rect.left) * size.w / rect.width, y: (event.clientY - rect.top) * size.h / rect.height };
}

const toOriginal = (p) => ({ x: p.x * meta.width / size.w, y: p.y * meta.height / size.h });
const negative = (event) => $('ed-negative').checked || event.shiftKey || event.altKey || event.ctrlKey || event.metaKey;

function addPoint(at, label) {
  const o = toOriginal(at);
  points.push({ x: o.x, y: o.y, label });
  hover = null;
  status(label === 1 ? 'Point added. Add more, or save the clipping.' : 'Background point added.');
  refresh();
}

function onDown(event) {
  if (!meta) return;
  overlay.setPointerCapture(event.pointerId);
  const at = overlayPoint(event);
  if (target) return strokeStart(at);
  drag = { x: at.x, y: at.y, box: null };
}

function onMove(event) {
  if (!meta) return;
  const at = overlayPoint(event);
  cursor = event.pointerType === 'mouse' ? at : null;
  if (target) { if (brush && brush.stroke) strokeTo(at); else draw(); return; }
  if (drag) {
    if (Math.hypot(at.x - drag.x, at.y - drag.y) > Math.max(6, size.w / 100)) {
      const a = toOriginal(drag);
      const b = toOriginal(at);
      drag.box = { x0: Math.min(a.x, b.x), y0: Math.min(a.y, b.y), x1: Math.max(a.x, b.x), y1: Math.max(a.y, b.y) };
      draw();
    }
    return;
  }
  if (event.pointerType === 'mouse' && session) { // hover preview (no hover on touch)
    const o = toOriginal(at);
    hover = { x: o.x, y: o.y, label: negative(event) ? 0 : 1 };
    refresh();
  }
}

function onUp(event) {
  if (!meta) return;
  if (target) return strokeEnd();
  const pressed = drag;
  drag = null;
  if (!pressed) return;
  if (pressed.box) {
    box = pressed.box;
    hover = null;
    status('Box drawn. Click inside to refine, or save the clipping.');
    refresh();
  } else if (session) {
    addPoint(overlayPoint(event), negative(event) ? 0 : 1);
  }
}

function clearPrompt() {
  points = [];
  box = null;
  hover = null;
  mask = null;
  chain = [];
  status('Cleared. Click the object to cut it out.');
  refresh();
}

function onKey(event) {
  if (!meta) return;
  const step = (event.shiftKey ? 0.05 : 0.01) * size.w;
  const moves = { ArrowLeft: [-step, 0], ArrowRight: [step, 0], ArrowUp: [0, -step], ArrowDown: [0, step] };
  if (event.key in moves) {
    event.preventDefault();
    cursor = cursor || { x: size.w / 2, y: size.h / 2 };
    cursor = { x: Math.min(size.w, Math.max(0, cursor.x + moves[event.key][0])), y: Math.min(size.h, Math.max(0, cursor.y + moves[event.key][1])) };
    if (!target && session) { const o = toOriginal(cursor); hover = { x: o.x, y: o.y, label: 1 }; refresh(); } else draw();
  } else if (event.key === 'Enter' && cursor) {
    event.preventDefault();
    if (target) { strokeStart(cursor); strokeEnd(); } else if (session) addPoint(cursor, event.shiftKey ? 0 : 1);
  } else if (event.key === 'Backspace' && !target) {
    event.preventDefault();
    points.pop();
    status(points.length ? 'Last point removed.' : 'No points left.');
    refresh();
  } else if (event.key === 'Escape' && !target) {
    clearPrompt();
  }
}

async function saveCut() {
  const body = {
    points: points.map((p) => [p.x, p.y]),
    labels: points.map((p) => p.label),
    box: box && [box.x0, box.y0, box.x1, box.y1],
  };
  $('ed-save-cut').disabled = true;
  status('Saving the clipping at full resolution…');
  try {
    const answer = await api('POST', `/api/images/${encodeURIComponent(imageId)}/cut`, body);
    await loadMeta();
    status(`Saved as a new clipping: it is in the album now (${answer.clipping.name}).`);
    points = []; box = null; hover = null; mask = null;
    draw();
  } catch (error) {
    status(`Not saved: ${error.message}`);
    draw();
  }
}

// ---- touch-up brush ------------------------------------------------------------------------
const brushMode = () => document.querySelector('input[name="ed-brush"]:checked').value;
const brushRadius = () => Number($('ed-size').value) / 2 * meta.width / size.w; // slider in screen-ish pixels

function paint(stroke) {
  const c = brush.canvas.getContext('2d');
  c.globalCompositeOperation = stroke.mode === 'erase' ? 'destination-out' : 'source-over';
  c.fillStyle = '#fff';
  c.strokeStyle = '#fff';
  c.lineCap = 'round';
  c.lineJoin = 'round';
  c.lineWidth = stroke.radius * 2;
  const [first, ...rest] = stroke.points;
  c.beginPath();
  c.arc(first.x, first.y, stroke.radius, 0, 2 * Math.PI);
  c.fill();
  if (rest.length) {
    c.beginPath();
    c.moveTo(first.x, first.y);
    for (const p of rest) c.lineTo(p.x, p.y);
    c.stroke();
  }
  c.globalCompositeOperation = 'source-over';
}

function repaint() {
  const c = brush.canvas.getContext('2d');
  c.clearRect(0, 0, brush.canvas.width, brush.canvas.height);
  c.drawImage(brush.base, target.box[0], target.box[1]);
  for (const stroke of brush.strokes) paint(stroke);
  brushButtons();
  draw();
}

function brushButtons() {
  $('ed-undo').disabled = !brush || !brush.strokes.length;
  $('ed-redo').disabled = !brush || !brush.redo.length;
  $('ed-save-mask').disabled = !brush || !brush.strokes.length;
}

function strokeStart(at) {
  if (!brush) return;
  brush.stroke = { mode: brushMode(), radius: brushRadius(), points: [toOriginal(at)] };
  paint(brush.stroke);
  draw();
}

function strokeTo(at) {
  brush.stroke.points.push(toOriginal(at));
  paint({ ...brush.stroke, points: brush.stroke.points.slice(-2) });
  draw();
}

function strokeEnd() {
  if (!brush || !brush.stroke) return;
  brush.strokes.push(brush.stroke);
  brush.redo = [];
  brush.stroke = null;
  status(`${brush.strokes.length} stroke${brush.strokes.length === 1 ? '' : 's'}; save to keep them.`);
  brushButtons();
}

function undoStroke() {
  if (!brush || !brush.strokes.length) return;
  brush.redo.push(brush.strokes.pop());
  repaint();
}

function redoStroke() {
  if (!brush || !brush.redo.length) return;
  brush.strokes.push(brush.redo.pop());
  repaint();
}

async function saveMask() {
  $('ed-save-mask').disabled = true;
  status('Saving the touched-up clipping at full resolution…');
  const blob = await new Promise((resolve) => brush.canvas.toBlob(resolve, 'image/png'));
  const form = new FormData();
  form.append('mask', blob, 'mask.png');
  const url = `/api/images/${encodeURIComponent(imageId)}/clippings/${encodeURIComponent(target.name)}/mask`;
  const response = await fetch(url, { method: 'POST', body: form, headers: { 'X-CSRFToken': csrfToken() }, credentials: 'same-origin' });
  const answer = parseJson(await response.text());
  if (!response.ok) {
    status(`Not saved: ${reasonFrom(response.status, answer)}`);
    brushButtons();
    return;
  }
  await loadMeta(answer.clipping.name);
  status('Saved as a new version of the clipping; "Back to the previous version" undoes it.');
}

async function revert() {
  try {
    const answer = await api('POST', `/api/images/${encodeURIComponent(imageId)}/clippings/${encodeURIComponent(target.name)}/undo`);
    await loadMeta(answer.clipping.name);
    status('Restored the previous version.');
  } catch (error) {
    status(`Could not go back: ${error.message}`);
  }
}

async function chooseTarget(name) {
  target = meta.clippings.find((c) => c.name === name) || null;
  brush = null;
  $('ed-cut-tools').hidden = Boolean(target);
  $('ed-brush-tools').hidden = !target;
  $('ed-revert').hidden = !(target && target.undo);
  $('ed-help').textContent = target
    ? 'Paint with the brush · Erase takes away, Restore brings the photo back · Ctrl+Z undoes a stroke.'
    : 'Hover to preview · click to add the object · Shift-click (or the checkbox) for background · drag for a box.';
  if (!target) {
    status(session ? 'Click the object to cut it out.' : meta.message);
    return refresh();
  }
  if (!target.box) {
    status('This clipping was made before touch-ups existed: retry the photo to edit it.');
    brushButtons();
    return draw();
  }
  status('Loading the clipping…');
  const base = new Image();
  base.src = target.url;
  await base.decode();
  const canvas = document.createElement('canvas');
  canvas.width = meta.width;
  canvas.height = meta.height;
  brush = { canvas, base, strokes: [], redo: [], stroke: null };
  repaint();
  status('Paint to erase or restore; the darkened part is left out of the clipping.');
}

// ---- start -------------------------------------------------------------------------------------
async function loadMeta(select) {
  meta = await api('GET', `/api/images/${encodeURIComponent(imageId)}/editor`);
  const chooser = $('ed-target');
  chooser.replaceChildren(new Option('A new clipping (click the object)', ''));
  meta.clippings.forEach((clip, i) => chooser.append(new Option(`Touch up clipping ${i + 1}`, clip.name)));
  chooser.value = select && meta.clippings.some((c) => c.name === select) ? select : '';
  await chooseTarget(chooser.value);
}

async function start() {
  try {
    meta = await api('GET', `/api/images/${encodeURIComponent(imageId)}/editor`);
    const decoder = meta.embedding && loadDecoder();
    if (decoder) decoder.catch(() => {}); // awaited below, once the photo shows
    const photo = $('ed-image');
    photo.src = meta.resized_url || meta.original_url;
    await photo.decode();
    size = meta.embedding ? { w: meta.embedding.width, h: meta.embedding.height } : { w: photo.naturalWidth, h: photo.naturalHeight };
    overlay.width = size.w;
    overlay.height = size.h;
    meta.width = meta.width || photo.naturalWidth;
    meta.height = meta.height || photo.naturalHeight;
    await decoder;
    await loadMeta();
    if (!meta.embedding) status(meta.message);
    root.dataset.ready = '1';
  } catch (error) {
    status(`The editor could not start: ${error.message}`);
  }
}

overlay.addEventListener('pointerdown', onDown);
overlay.addEventListener('pointermove', onMove);
overlay.addEventListener('pointerup', onUp);
overlay.addEventListener('pointerleave', () => { cursor = null; if (hover) { hover = null; refresh(); } else draw(); });
overlay.addEventListener('contextmenu', (event) => event.preventDefault());
overlay.addEventListener('keydown', onKey);
$('ed-clear').addEventListener('click', clearPrompt);
$('ed-save-cut').addEventListener('click', saveCut);
$('ed-save-mask').addEventListener('click', saveMask);
$('ed-undo').addEventListener('click', undoStroke);
$('ed-redo').addEventListener('click', redoStroke);
$('ed-revert').addEventListener('click', revert);
$('ed-target').addEventListener('change', (event) => chooseTarget(event.target.value));
$('ed-size').addEventListener('input', draw);
document.addEventListener('keydown', (event) => {
  if (!(event.ctrlKey || event.metaKey) || event.key.toLowerCase() !== 'z' || !target) return;
  event.preventDefault();
  if (event.shiftKey) redoStroke(); else undoStroke();
});

// For the browser tests and the benchmark: the low-res mask (0/1 per pixel) and the time of one decode; the
// preview's mask at a given size ('0'/'1' per pixel, row by row) with the logits it came from.
const decodePrompt = (prompt) => decodeChain({
  points: prompt.points.map(([x, y], i) => ({ x, y, label: prompt.labels[i] })),
  box: prompt.box && { x0: prompt.box[0], y0: prompt.box[1], x1: prompt.box[2], y1: prompt.box[3] },
});
window.samEditor = {
  async lowRes(prompt) {
    const started = performance.now();
    const { logits, side } = await decodePrompt(prompt);
    return { side, ms: performance.now() - started, bits: Array.from(logits, (v) => (v > 0 ? 1 : 0)) };
  },
  async mask(prompt, width, height) {
    const decoded = await decodePrompt(prompt);
    return { side: decoded.side, logits: Array.from(decoded.logits), bits: maskAt(decoded, width, height).join('') };
  },
};

start();
