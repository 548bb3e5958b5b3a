// The daemon's HTTP API, as the page uses it: same origin, JSON in and out.
// The page never sees the token: the daemon moved it into an HttpOnly cookie when the page was
// opened from the URL `dgx-music web` prints, and the browser sends that cookie by itself.

export const API = '/api/v1';

/** An error the daemon answered: `code` and `message` from its body, `field` when it names one. */
export class ApiError extends Error {
  constructor(status, body) {
    const err = (body && body.error) || {};
    super(err.message || `HTTP ${status}`);
    this.status = status;
    this.code = err.code || 'http_' + status;
    this.field = err.field || null;
  }

  /** The message for a person: the daemon's, which names the field (prefixed when it does not). */
  get text() {
    return this.field && !this.message.includes(this.field) ? `${this.field}: ${this.message}` : this.message;
  }
}

/** Call `url` (a path on the daemon): `body` (an object) is sent as JSON; the answer is parsed
 * JSON, or an ApiError. */
export async function call(method, url, body) {
  const init = { method, credentials: 'same-origin', headers: { Accept: 'application/json' } };
  if (method !== 'GET' && method !== 'HEAD') {
    // Every state-changing request is JSON (the daemon refuses other types there).
    init.headers['Content-Type'] = 'application/json';
    init.body = JSON.stringify(body === undefined ? {} : body);
  }
  let resp;
  try {
    resp = await fetch(url, init);
  } catch (e) {
    throw new ApiError(0, { error: { code: 'unreachable', message: 'the daemon does not answer (is it running?)' } });
  }
  let data = null;
  const text = await resp.text();
  if (text) {
    try { data = JSON.parse(text); } catch { data = null; }
  }
  if (!resp.ok) throw new ApiError(resp.status, data);
  return data;
}

export const get = (url) => call('GET', url);

/** A query string from an object, leaving out empty values. */
export function query(params) {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) {
    if (v !== undefined && v !== null && v !== '' && v !== false) q.set(k, String(v));
  }
  const s = q.toString();
  return s ? '?' + s : '';
}

export const audioUrl = (id) => `${API}/tracks/${encodeURIComponent(id)}/audio`;
