// The app page: wires the album, uploads, live updates, settings and the canvas composer.

import { initAlbum, refreshAlbum, removeImage, upsertImage } from './album.js';
import { addClipping, composerShown, initComposer } from './composer.js';
import { connectEvents, loadWorker } from './live.js';
import { initSettings } from './settings.js';
import { toast, wireDialog } from './ui.js';
import { initUpload } from './upload.js';

const VIEWS = ['album', 'canvas'];

function showView(name, { focus = false } = {}) {
  const view = VIEWS.includes(name) ? name : 'album';
  for (const other of VIEWS) {
    document.getElementById(`view-${other}`).hidden = other !== view;
    const tab = document.getElementById(`tab-${other}`);
    if (other === view) tab.setAttribute('aria-current', 'page');
    else tab.removeAttribute('aria-current');
  }
  document.body.dataset.view = view;
  if (view === 'canvas') composerShown();
  if (focus) document.getElementById('main').focus({ preventScroll: true });
  const hash = view === 'album' ? '' : `#${view}`;
  if (window.location.hash !== hash) history.replaceState(null, '', hash || window.location.pathname);
}

// The clipping viewer: full-resolution image, download, add to canvas.
let viewing = null;

function openClipping(image, clip) {
  viewing = { image, clip };
  const dialog = document.getElementById('viewer');
  const img = document.getElementById('viewer-img');
  const size = document.getElementById('viewer-size');
  const title = `Clipping ${clip.index + 1} of ${image.name}`;
  document.getElementById('viewer-title').textContent = title;
  size.textContent = '';
  img.alt = title;
  img.onload = () => {
    size.textContent = `${img.naturalWidth} × ${img.naturalHeight} px`;
  };
  img.src = clip.url;
  document.getElementById('viewer-full').href = clip.url;
  const download = document.getElementById('viewer-download');
  download.href = clip.url;
  download.download = clip.name;
  dialog.showModal();
}

async function addViewedToCanvas() {
  if (!viewing) return;
  const button = document.getElementById('viewer-add');
  button.disabled = true;
  const added = await addClipping(viewing.clip, viewing.image.id, viewing.image.name);
  button.disabled = false;
  if (!added) return;
  document.getElementById('viewer').close();
  toast('Added to canvas.', { action: { label: 'Open canvas', run: () => showView('canvas', { focus: true }) } });
}

function init() {
  for (const name of VIEWS) {
    document.getElementById(`tab-${name}`).addEventListener('click', () => showView(name));
  }
  wireDialog(document.getElementById('viewer'));
  document.getElementById('viewer-add').addEventListener('click', addViewedToCanvas);
  initAlbum({ openClipping });
  initUpload(upsertImage, refreshAlbum);
  initSettings();
  initComposer();
  showView(window.location.hash.slice(1));
  refreshAlbum();
  loadWorker();
  connectEvents({ onImage: upsertImage, onRemoved: removeImage, onResync: refreshAlbum });
}

init();
