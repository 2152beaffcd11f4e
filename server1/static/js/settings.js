// The settings panel: the server validates; its messages are shown beside the fields.

import { api } from './api.js';
import { wireDialog } from './ui.js';

const dialog = () => document.getElementById('settings');
const form = () => document.getElementById('settings-form');
const WEIGHTS_POLL_MS = 2000;
let weightsTimer = null;

export function initSettings() {
  wireDialog(dialog());
  document.getElementById('open-settings').addEventListener('click', openSettings);
  form().addEventListener('submit', saveSettings);
}

async function openSettings() {
  clearErrors();
  document.getElementById('settings-saved').textContent = '';
  dialog().showModal();
  try {
    const data = await api('GET', '/api/settings');
    fill(data.settings ?? data);
    showModels(data.models);
    showSamWeights(data.sam_weights);
  } catch (error) {
    showError(`Could not load your settings: ${error.message}`);
  }
}

function fill(settings) {
  for (const field of form().elements) {
    if (field.name && field.name in settings) field.value = String(settings[field.name]);
  }
}

// The models this installation is configured with (DETECT_MODEL, MATTE_MODEL, SAM_MODEL).
function showModels(models) {
  const line = document.getElementById('settings-models');
  if (!models) line.textContent = '';
  else if (models.error) line.textContent = `Models: ${models.error}`;
  else line.textContent = `Models in use: SAM ${models.sam}, detection ${models.detect}, cut-out ${models.matte}.`;
}

// The chosen SAM's weights until they are there ("downloading vit_h, 40 %"); looked at again meanwhile.
function showSamWeights(weights) {
  const line = document.getElementById('settings-sam-weights');
  clearTimeout(weightsTimer);
  line.hidden = !weights;
  if (!weights) return;
  const { model, state, percent, error } = weights;
  if (state === 'downloading') line.textContent = `downloading ${model}${percent === null ? '' : `, ${percent} %`}`;
  else if (state === 'failed' || state === 'missing') line.textContent = `${model} is not available: ${error}`;
  else line.textContent = `${model}: waiting for its download`;
  if (state !== 'failed' && state !== 'missing') weightsTimer = setTimeout(refreshSamWeights, WEIGHTS_POLL_MS);
}

async function refreshSamWeights() {
  if (!dialog().open) return;
  try {
    showSamWeights((await api('GET', '/api/settings')).sam_weights);
  } catch {
    weightsTimer = setTimeout(refreshSamWeights, WEIGHTS_POLL_MS);
  }
}

function collect() {
  const changes = {};
  for (const field of form().elements) {
    if (!field.name) continue;
    const raw = field.value.trim();
    // Send what was typed; a number only when it reads as one, so the server judges the rest.
    if (field.dataset.kind && raw !== '' && Number.isFinite(Number(raw))) changes[field.name] = Number(raw);
    else changes[field.name] = raw;
  }
  return changes;
}

async function saveSettings(event) {
  event.preventDefault();
  clearErrors();
  const button = form().querySelector('button[type="submit"]');
  button.disabled = true;
  try {
    const data = await api('POST', '/api/settings', collect());
    fill(data.settings ?? data);
    showSamWeights(data.sam_weights);
    document.getElementById('settings-saved').textContent = 'Settings saved.';
  } catch (error) {
    const errors = error.body?.errors;
    let summary = error.message;
    if (errors && typeof errors === 'object') {
      summary = 'Some settings were not accepted; see the messages below.';
      for (const [name, message] of Object.entries(errors)) {
        const slot = form().querySelector(`[data-error-for="${CSS.escape(name)}"]`);
        const input = form().elements.namedItem(name);
        if (slot) slot.textContent = message;
        if (input) input.setAttribute('aria-invalid', 'true');
        if (!slot) summary = error.message; // a message for a field the form does not show
      }
    }
    showError(summary);
  } finally {
    button.disabled = false;
  }
}

function showError(message) {
  const box = document.getElementById('settings-error');
  box.textContent = message;
  box.hidden = false;
}

function clearErrors() {
  document.getElementById('settings-error').hidden = true;
  for (const slot of form().querySelectorAll('[data-error-for]')) slot.textContent = '';
  for (const input of form().querySelectorAll('[aria-invalid]')) input.removeAttribute('aria-invalid');
}
