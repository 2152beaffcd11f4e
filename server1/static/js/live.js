// Live updates over /events (server-sent events) and the GPU worker status in the header.
// EventSource reconnects by itself; after a reconnect the album is fetched once to catch
// up on what happened while the stream was down. No polling.

import { api, parseJson } from './api.js';

const WORKER_LABELS = { off: 'GPU off', starting: 'GPU starting', ready: 'GPU ready', busy: 'GPU busy' };

export function showWorker(data) {
  const value = typeof data === 'string' ? data : data?.worker ?? data?.status ?? data?.state;
  const state = WORKER_LABELS[value] ? value : 'unknown';
  const badge = document.getElementById('worker-status');
  badge.dataset.state = state;
  badge.querySelector('.worker-label').textContent = WORKER_LABELS[state] ?? 'GPU unknown';
  // GET /api/status and the "status" event: {"worker": ..., "queue": {state: n}}
  const queue = (typeof data === 'object' && data?.queue) || {};
  const waiting = Number(queue.queued ?? 0) + Number(queue.processing ?? 0);
  const count = badge.querySelector('.worker-count');
  count.textContent = waiting ? `· ${waiting} in queue` : '';
  count.hidden = !waiting;
  badge.title = waiting ? `GPU worker: ${state}, ${waiting} image(s) waiting or in progress` : `GPU worker: ${state}`;
}

export async function loadWorker() {
  try {
    showWorker(await api('GET', '/api/status'));
  } catch {
    showWorker('unknown');
  }
}

export function connectEvents({ onImage, onRemoved, onResync }) {
  const source = new EventSource('/events');
  let dropped = false;
  // An image event carries the image's current state, or {"id", "deleted": true} once it is gone.
  source.addEventListener('image', (event) => {
    const data = parseJson(event.data);
    if (!data || data.id === undefined) return;
    if (data.deleted) onRemoved(String(data.id));
    else onImage(data);
  });
  source.addEventListener('status', (event) => showWorker(parseJson(event.data) ?? event.data.trim()));
  source.addEventListener('error', () => {
    dropped = true;
  });
  source.addEventListener('open', () => {
    document.body.dataset.live = 'connected';
    if (dropped) {
      dropped = false;
      onResync();
      loadWorker();
    }
  });
  return source;
}
