// Live updates over /events (server-sent events) and Server2's status in the header: GPU or CPU (as Server2
// reports its device; GPU until it has), off, starting, ready or busy.
// EventSource reconnects by itself; after a reconnect the album is fetched once to catch
// up on what happened while the stream was down. No polling.

import { api, parseJson } from './api.js';

const WORKER_STATES = ['off', 'starting', 'ready', 'busy'];

export function showWorker(data) {
  const value = typeof data === 'string' ? data : data?.worker ?? data?.status ?? data?.state;
  const state = WORKER_STATES.includes(value) ? value : 'unknown';
  const device = typeof data === 'object' && data?.device === 'cpu' ? 'CPU' : 'GPU';
  const badge = document.getElementById('worker-status');
  badge.dataset.state = state;
  badge.dataset.device = device.toLowerCase();
  badge.querySelector('.worker-label').textContent = `${device} ${state}`;
  // GET /api/status and the "status" event: {"worker": ..., "queue": {state: n}}
  const queue = (typeof data === 'object' && data?.queue) || {};
  const waiting = Number(queue.queued ?? 0) + Number(queue.processing ?? 0);
  const count = badge.querySelector('.worker-count');
  count.textContent = waiting ? `· ${waiting} in queue` : '';
  count.hidden = !waiting;
  badge.title = `${device} worker: ${state}${waiting ? `, ${waiting} image(s) waiting or in progress` : ''}`;
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
