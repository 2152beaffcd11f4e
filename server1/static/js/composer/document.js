// The composition: a document in inches (so a change of DPI never moves anything), its undo history, and
// its saving through GET|PUT /api/canvas. Every change goes through change() (or commit(), for a gesture
// that changed the document in place): one undo step, then the listener (redraw, controls) and a save.

import { api } from '../api.js';

const DEFAULT_DOC = { version: 1, width_in: 8, height_in: 10, dpi: 300, background: 'white', items: [] };
const HISTORY = 100;
const SAVE_DELAY = 600; // ms of quiet before a save

export const composition = { doc: structuredClone(DEFAULT_DOC), selected: null }; // selected: an item id
const undoStack = [];
const redoStack = [];
let listener = () => {};
let saveTimer = 0;
let saving = Promise.resolve();
let dirty = false;

const $ = (id) => document.getElementById(id);
export const snapshot = () => JSON.stringify(composition.doc);

function validDoc(data) {
  const out = { ...DEFAULT_DOC, ...(data && typeof data === 'object' ? data : {}) };
  out.items = Array.isArray(out.items) ? out.items.filter((item) => item && typeof item.url === 'string') : [];
  for (const key of ['width_in', 'height_in', 'dpi']) if (!(Number(out[key]) > 0)) out[key] = DEFAULT_DOC[key];
  return out;
}

export function onChange(callback) {
  listener = callback;
}

export const itemById = (id) => composition.doc.items.find((item) => item.id === id);
export const selectedItem = () => (composition.selected && itemById(composition.selected)) || null;
export const canUndo = () => undoStack.length > 0;
export const canRedo = () => redoStack.length > 0;

export function pixelSize() {
  const { doc } = composition;
  return [Math.round(doc.width_in * doc.dpi), Math.round(doc.height_in * doc.dpi)];
}

export function change(mutate, previous = snapshot()) {
  mutate();
  commit(previous);
}

export function commit(previous) {
  if (snapshot() === previous) return;
  undoStack.push(previous);
  if (undoStack.length > HISTORY) undoStack.shift();
  redoStack.length = 0;
  changed();
}

function changed() {
  if (composition.selected && !itemById(composition.selected)) composition.selected = null;
  listener();
  queueSave();
}

export function undo() {
  if (!undoStack.length) return;
  redoStack.push(snapshot());
  composition.doc = JSON.parse(undoStack.pop());
  changed();
}

export function redo() {
  if (!redoStack.length) return;
  undoStack.push(snapshot());
  composition.doc = JSON.parse(redoStack.pop());
  changed();
}

function queueSave() {
  dirty = true;
  setSaveState('Saving…', 'pending');
  clearTimeout(saveTimer);
  saveTimer = setTimeout(save, SAVE_DELAY);
}

export function save({ keepalive = false } = {}) {
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

export async function load() {
  try {
    const data = await api('GET', '/api/canvas');
    composition.doc = validDoc(data.canvas ?? data);
    setSaveState('All changes saved', 'saved');
  } catch (error) {
    if (error.status !== 404) setSaveState(`Could not load the canvas: ${error.message}`, 'error');
  }
}

function setSaveState(text, state) {
  const box = $('save-state');
  box.textContent = text;
  box.dataset.state = state;
}
