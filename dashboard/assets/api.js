// The dashboard's one way to call the JSON API: same-origin, the HttpOnly session cookie goes by
// itself, state-changing calls send JSON (the server's CSRF rule), and every error surfaces the
// server's own message from its `{"error": {"message", …}}` body.

export class ApiError extends Error {
  constructor(status, message, code, param) {
    super(message);
    this.status = status;
    this.code = code || null;
    this.param = param || null;
  }
}

let onSignedOut = () => {};

/** Called when any call answers 401 (the session ended): the app shows the sign-in page. */
export function setSignedOutHandler(fn) {
  onSignedOut = fn;
}

/**
 * api('/api/keys'), api('/api/keys', {method: 'POST', body: {...}}).
 * Resolves to the parsed JSON, or null for 204. Rejects with ApiError.
 */
export async function api(path, { method = 'GET', body, signal, quiet401 = false } = {}) {
  const init = {
    method,
    credentials: 'same-origin',
    headers: { Accept: 'application/json' },
    cache: 'no-store',
    signal,
  };
  if (method !== 'GET' && method !== 'HEAD') {
    init.headers['Content-Type'] = 'application/json';
    init.headers['X-GopherGate-CSRF'] = '1';
    init.body = JSON.stringify(body === undefined ? {} : body);
  }
  let resp;
  try {
    resp = await fetch(path, init);
  } catch (e) {
    if (e.name === 'AbortError') throw e;
    throw new ApiError(0, 'The gateway could not be reached. Is it running?');
  }
  if (resp.status === 204) return null;
  const text = await resp.text();
  let data = null;
  try {
    data = text ? JSON.parse(text) : null;
  } catch {
    data = null;
  }
  if (!resp.ok) {
    const e = data && data.error;
    const err = new ApiError(
      resp.status,
      (e && e.message) || `The gateway answered ${resp.status} ${resp.statusText || ''}`.trim(),
      e && e.code,
      e && e.param,
    );
    if (resp.status === 401 && !quiet401) onSignedOut(err);
    throw err;
  }
  return data;
}

/** Builds a query string from an object, leaving out empty values. */
export function qs(params) {
  const p = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) {
    if (v !== null && v !== undefined && v !== '') p.set(k, String(v));
  }
  const s = p.toString();
  return s ? `?${s}` : '';
}
