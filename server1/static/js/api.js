// Talking to Server1: JSON requests with the CSRF header, and clear errors.

export const csrfToken = () => document.querySelector('meta[name="csrf-token"]')?.content ?? '';

export class ApiError extends Error {
  constructor(message, status, body) {
    super(message);
    this.status = status;
    this.body = body ?? {};
  }
}

// The server's reason for a refusal, or a plain sentence when it sent none (e.g. a proxy's 413 page).
export function reasonFrom(status, body) {
  if (body && typeof body.error === 'string' && body.error) return body.error;
  if (status === 413) return 'The file is too large.';
  if (status === 429) return 'Too many requests; wait a minute and try again.';
  if (status === 401 || status === 403) return 'Your session has ended; log in again.';
  if (status === 0) return 'The server could not be reached.';
  return `The server answered ${status}.`;
}

export function parseJson(text) {
  try {
    return JSON.parse(text);
  } catch {
    return null;
  }
}

function sessionEnded(response) {
  // An expired session is redirected to the login page (or answered 401).
  return response.status === 401 || (response.redirected && new URL(response.url).pathname === '/login');
}

export async function api(method, url, body, { keepalive = false } = {}) {
  const headers = { Accept: 'application/json' };
  if (method !== 'GET') headers['X-CSRFToken'] = csrfToken();
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  let response;
  try {
    response = await fetch(url, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
      credentials: 'same-origin',
      keepalive,
    });
  } catch {
    throw new ApiError(reasonFrom(0), 0);
  }
  if (sessionEnded(response)) {
    window.location.assign('/login');
    throw new ApiError(reasonFrom(401), 401);
  }
  const data = parseJson(await response.text());
  if (!response.ok) throw new ApiError(reasonFrom(response.status, data), response.status, data);
  return data ?? {};
}
