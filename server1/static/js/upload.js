// Uploads: one request per file so each has its own progress bar and its own answer.

import { csrfToken, parseJson, reasonFrom } from './api.js';
import { el, formatBytes, icon } from './ui.js';

const PARALLEL = 3;
const queue = [];
let running = 0;
let hooks = { uploaded: () => {}, batchDone: () => {} };

export function initUpload(onUploaded, onBatchDone) {
  hooks = { uploaded: onUploaded, batchDone: onBatchDone };
  const input = document.getElementById('upload-input');
  input.addEventListener('change', () => {
    addFiles(input.files);
    input.value = '';
  });
  const zone = document.getElementById('dropzone');
  let depth = 0;
  zone.addEventListener('dragenter', (event) => {
    if (!hasFiles(event)) return;
    event.preventDefault();
    depth += 1;
    zone.classList.add('dragging');
  });
  zone.addEventListener('dragover', (event) => {
    if (hasFiles(event)) event.preventDefault();
  });
  zone.addEventListener('dragleave', () => {
    depth = Math.max(0, depth - 1);
    if (!depth) zone.classList.remove('dragging');
  });
  zone.addEventListener('drop', (event) => {
    event.preventDefault();
    depth = 0;
    zone.classList.remove('dragging');
    addFiles(event.dataTransfer.files);
  });
  // A file dropped beside the zone must not navigate away from the app.
  window.addEventListener('dragover', (event) => event.preventDefault());
  window.addEventListener('drop', (event) => event.preventDefault());
}

const hasFiles = (event) => [...(event.dataTransfer?.types || [])].includes('Files');

function addFiles(files) {
  for (const file of files) {
    const row = uploadRow(file);
    document.getElementById('uploads').append(row.item);
    queue.push({ file, row });
  }
  pump();
}

function uploadRow(file) {
  const progress = el('progress', { class: 'upload-progress', max: 100, value: 0, 'aria-label': `Upload progress of ${file.name}` });
  const state = el('span', { class: 'upload-state', text: 'Waiting…' });
  const dismiss = el('button', { type: 'button', class: 'icon-btn icon-btn-small', 'aria-label': `Dismiss ${file.name}`, hidden: true },
    icon('close'));
  const item = el('li', { class: 'upload', dataset: { state: 'waiting' } },
    el('div', { class: 'upload-line' },
      el('span', { class: 'upload-name', text: file.name, title: file.name }),
      el('span', { class: 'upload-size muted', text: formatBytes(file.size) }),
      state, dismiss),
    progress);
  dismiss.addEventListener('click', () => item.remove());
  const set = (name, text) => {
    item.dataset.state = name;
    state.textContent = text;
  };
  return { item, progress, set, dismiss };
}

function pump() {
  while (running < PARALLEL && queue.length) {
    const job = queue.shift();
    running += 1;
    send(job).finally(() => {
      running -= 1;
      if (!running && !queue.length) hooks.batchDone();
      pump();
    });
  }
}

function send({ file, row }) {
  return new Promise((resolve) => {
    const xhr = new XMLHttpRequest();
    const form = new FormData();
    form.append('file', file, file.name);
    xhr.open('POST', '/upload');
    xhr.setRequestHeader('X-CSRFToken', csrfToken());
    xhr.setRequestHeader('Accept', 'application/json');
    row.set('uploading', 'Uploading 0%');
    xhr.upload.addEventListener('progress', (event) => {
      if (!event.lengthComputable) return;
      const percent = Math.floor((event.loaded / event.total) * 100);
      row.progress.value = percent;
      row.set('uploading', percent >= 100 ? 'Processing upload…' : `Uploading ${percent}%`);
    });
    xhr.addEventListener('load', () => {
      const body = parseJson(xhr.responseText);
      const loginPage = xhr.responseURL && new URL(xhr.responseURL).pathname === '/login';
      if (xhr.status >= 200 && xhr.status < 300 && !loginPage && body) {
        row.progress.value = 100;
        row.set('done', 'Uploaded');
        for (const image of body.images || []) hooks.uploaded(image);
        setTimeout(() => row.item.remove(), 2500);
      } else {
        const reason = loginPage ? reasonFrom(401) : reasonFrom(xhr.status, body);
        // The server names the file in its reason; the row already does.
        fail(row, reason.startsWith(`${file.name}: `) ? reason.slice(file.name.length + 2) : reason);
      }
      resolve();
    });
    xhr.addEventListener('error', () => {
      fail(row, reasonFrom(0));
      resolve();
    });
    xhr.send(form);
  });
}

function fail(row, reason) {
  row.set('failed', `Refused: ${reason}`);
  row.item.setAttribute('role', 'alert');
  row.dismiss.hidden = false;
}
