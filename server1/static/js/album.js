// The album: every original with its status and clippings, rendered incrementally.
//
// The model holds every image; the DOM holds only the first `limit` cards and grows a
// page at a time as the user scrolls, so an album of thousands of images stays smooth.

import { api } from './api.js';
import { confirmAction, el, icon, toast } from './ui.js';

const PAGE = 60;
const STATE_LABELS = { queued: 'Queued', processing: 'Processing', done: 'Done', failed: 'Failed' };

const images = new Map(); // id -> normalised image
let order = []; // ids, newest first
let limit = PAGE;
const cards = new Map(); // id -> rendered <li>
const dirty = new Set();
let frame = 0;
let loaded = false;
let onOpenClipping = () => {};

const list = () => document.getElementById('album');

// /api/images and the `image` events: status may be a state string or a status record.
export function normalise(raw) {
  const status = raw.status;
  const record = status && typeof status === 'object' ? status : {};
  const state = typeof status === 'string' ? status : record.state || raw.state || 'queued';
  const id = String(raw.id);
  return {
    id,
    // Ids are the file name plus a random suffix ('IMG_0001-3fa2c1d9'): show the file name.
    name: raw.name || id.replace(/-[0-9a-f]{8}$/, ''),
    state: STATE_LABELS[state] ? state : 'queued',
    error: raw.error ?? record.error ?? null,
    thumbUrl: raw.thumb_url || '',
    originalUrl: raw.original_url || '',
    zipUrl: raw.zip_url || `/api/images/${encodeURIComponent(id)}/clippings.zip`,
    clippings: (raw.clippings || []).map((clip, index) => ({
      url: clip.url,
      thumbUrl: clip.thumb_url || clip.url,
      name: clip.name || clip.url.split('/').pop().split('?')[0],
      index,
    })),
  };
}

export function initAlbum({ openClipping }) {
  onOpenClipping = openClipping;
  const sentinel = document.getElementById('album-more');
  new IntersectionObserver((entries) => {
    if (entries.some((e) => e.isIntersecting) && limit < order.length) {
      limit += PAGE;
      schedule();
    }
  }, { rootMargin: '800px 0px' }).observe(sentinel);
  document.getElementById('clear-all').addEventListener('click', clearAll);
  list().addEventListener('click', onCardClick);
}

export async function refreshAlbum() {
  try {
    const data = await api('GET', '/api/images');
    const fresh = (data.images || []).map(normalise);
    const seen = new Set(fresh.map((image) => image.id));
    for (const id of images.keys()) if (!seen.has(id)) removeImage(id);
    order = fresh.map((image) => image.id);
    for (const image of fresh) setImage(image);
    loaded = true;
    schedule();
  } catch (error) {
    document.getElementById('album-summary').textContent = `Could not load the album: ${error.message}`;
  }
}

function setImage(image) {
  const old = images.get(image.id);
  // An upload's first answer knows only id and state: keep what we already know.
  if (old && !image.thumbUrl) Object.assign(image, { thumbUrl: old.thumbUrl, originalUrl: old.originalUrl, name: old.name });
  images.set(image.id, image);
  dirty.add(image.id);
}

// A live update or an upload's answer: newest images go to the top.
export function upsertImage(raw) {
  const image = normalise(raw);
  if (!images.has(image.id)) {
    order.unshift(image.id);
    limit += 1;
  }
  setImage(image);
  schedule();
}

export function removeImage(id) {
  images.delete(id);
  const at = order.indexOf(id);
  if (at >= 0) order.splice(at, 1);
  cards.get(id)?.remove();
  cards.delete(id);
  schedule();
}

function schedule() {
  if (!frame) frame = requestAnimationFrame(render);
}

function render() {
  frame = 0;
  const root = list();
  const shown = order.slice(0, limit);
  const keep = new Set(shown);
  for (const [id, card] of cards) {
    if (!keep.has(id)) {
      card.remove();
      cards.delete(id);
    }
  }
  let previous = null;
  for (const id of shown) {
    let card = cards.get(id);
    if (!card || dirty.has(id)) {
      const fresh = renderCard(images.get(id));
      if (card) card.replaceWith(fresh);
      card = fresh;
      cards.set(id, card);
    }
    const expected = previous ? previous.nextSibling : root.firstChild;
    if (expected !== card) root.insertBefore(card, expected);
    previous = card;
  }
  dirty.clear();
  renderSummary();
}

function renderSummary() {
  const counts = { queued: 0, processing: 0, done: 0, failed: 0 };
  let clippings = 0;
  for (const image of images.values()) {
    counts[image.state] += 1;
    clippings += image.clippings.length;
  }
  const total = images.size;
  const parts = [`${total} ${total === 1 ? 'photo' : 'photos'}`, `${clippings} ${clippings === 1 ? 'clipping' : 'clippings'}`];
  const working = counts.queued + counts.processing;
  if (working) parts.push(`${working} in progress`);
  if (counts.failed) parts.push(`${counts.failed} failed`);
  document.getElementById('album-summary').textContent = loaded ? parts.join(' · ') : 'Loading…';
  document.getElementById('album-empty').hidden = !loaded || total > 0;
  document.getElementById('clear-all').disabled = total === 0;
}

function renderCard(image) {
  const title = image.name;
  const media = el('div', { class: 'card-media' },
    image.thumbUrl
      // Every photo opens in the editor: without Server2's embedding, Server1 computes one (server1/encoding.py).
      ? el('a', { href: `/edit/${encodeURIComponent(image.id)}`,
          class: 'card-thumb-link', 'aria-label': `Open the original of ${title} in the editor` },
        el('img', { src: image.thumbUrl, alt: `Original photo ${title}`, loading: 'lazy', decoding: 'async' }))
      : el('div', { class: 'card-thumb-placeholder', 'aria-hidden': 'true' }),
    el('span', { class: `badge badge-${image.state}` }, el('span', { class: 'badge-dot', 'aria-hidden': 'true' }),
      STATE_LABELS[image.state]),
  );

  const body = el('div', { class: 'card-body' }, el('p', { class: 'card-title', title: image.id, text: title }));
  if (image.state === 'failed') {
    body.append(el('p', { class: 'card-error', text: image.error || 'Processing failed.' }));
  } else if (image.state === 'done' && image.clippings.length === 0) {
    body.append(el('p', { class: 'card-note muted', text: 'No objects found in this photo.' }));
  } else if (image.state !== 'done') {
    body.append(el('p', { class: 'card-note muted', text: image.state === 'queued' ? 'Waiting for the GPU worker…' : 'Finding objects…' }));
  }
  if (image.clippings.length) {
    const clips = el('ul', { class: 'clips', 'aria-label': `Clippings of ${title}` });
    image.clippings.forEach((clip, i) => {
      const label = `Clipping ${i + 1} of ${title}`;
      clips.append(el('li', {}, el('button', { type: 'button', class: 'clip checker', dataset: { clip: String(i) },
        'aria-label': `Open ${label.toLowerCase()}` },
      el('img', { src: clip.thumbUrl, alt: label, loading: 'lazy', decoding: 'async' }))));
    });
    body.append(clips);
  }

  const actions = el('div', { class: 'card-actions' });
  if (image.state === 'failed') {
    actions.append(el('button', { type: 'button', class: 'btn btn-small btn-primary', dataset: { action: 'retry' } },
      icon('retry'), el('span', { text: 'Retry' })));
  }
  if (image.clippings.length) {
    actions.append(el('a', { class: 'btn btn-small btn-secondary', href: image.zipUrl, download: `${image.id}-clippings.zip`,
      'aria-label': `Download all clippings of ${title} as ZIP` }, icon('download'), el('span', { text: 'ZIP' })));
  }
  actions.append(el('button', { type: 'button', class: 'btn btn-small btn-ghost btn-delete', dataset: { action: 'delete' },
    'aria-label': `Delete ${title}` }, icon('trash'), el('span', { text: 'Delete' })));
  body.append(actions);

  return el('li', { class: `card card-${image.state}`, dataset: { id: image.id, state: image.state } }, media, body);
}

async function onCardClick(event) {
  const card = event.target.closest('.card');
  if (!card) return;
  const image = images.get(card.dataset.id);
  if (!image) return;
  const clipButton = event.target.closest('[data-clip]');
  if (clipButton) {
    onOpenClipping(image, image.clippings[Number(clipButton.dataset.clip)]);
    return;
  }
  const action = event.target.closest('[data-action]')?.dataset.action;
  if (action === 'retry') await retry(image, event.target.closest('button'));
  if (action === 'delete') await deleteImage(image);
}

async function retry(image, button) {
  button.disabled = true;
  try {
    await api('POST', `/api/images/${encodeURIComponent(image.id)}/retry`);
    // Queued again; the live feed brings the next states.
    upsertImage({ id: image.id, status: 'queued', thumb_url: image.thumbUrl, original_url: image.originalUrl });
  } catch (error) {
    button.disabled = false;
    toast(`Could not retry: ${error.message}`, { kind: 'error' });
  }
}

async function deleteImage(image) {
  const ok = await confirmAction('Delete this photo?', `“${image.name}” and its clippings will be removed.`, 'Delete photo');
  if (!ok) return;
  try {
    await api('DELETE', `/api/images/${encodeURIComponent(image.id)}`);
    removeImage(image.id);
    document.dispatchEvent(new CustomEvent('album:deleted', { detail: image.id }));
    toast('Photo deleted.');
  } catch (error) {
    toast(`Could not delete: ${error.message}`, { kind: 'error' });
  }
}

async function clearAll() {
  const ok = await confirmAction('Clear the whole album?',
    'Every photo and clipping of yours will be deleted. This cannot be undone.', 'Delete everything');
  if (!ok) return;
  try {
    await api('POST', '/api/clear');
    for (const id of [...images.keys()]) removeImage(id);
    document.dispatchEvent(new CustomEvent('album:cleared'));
    toast('Album cleared.');
  } catch (error) {
    toast(`Could not clear: ${error.message}`, { kind: 'error' });
  }
}
