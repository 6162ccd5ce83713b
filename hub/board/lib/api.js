// ctx.api: JSON over /api/v1; a non-2xx answer rejects with Error{status, message}.
const BASE = '/api/v1';

function url(path, query) {
  const u = new URL(BASE + path, location.origin);
  if (query) for (const [k, v] of Object.entries(query)) if (v != null && v !== '') u.searchParams.set(k, v);
  return u.pathname + u.search;
}

async function answer(res) {
  const text = await res.text();
  let body = null;
  try { body = text ? JSON.parse(text) : null; } catch { body = text; }
  // The session ended (signed out elsewhere, expired): the shell shows sign-in.
  if (res.status === 401) window.dispatchEvent(new Event('gh:unauthorized'));
  if (!res.ok) {
    let msg = `HTTP ${res.status}`;
    if (body && typeof body === 'object' && body.error) {
      const d = body.detail;
      msg = d == null || d === '' ? body.error : `${body.error}: ${typeof d === 'string' ? d : JSON.stringify(d)}`;
    }
    const e = new Error(msg);
    e.status = res.status;
    e.body = body;
    throw e;
  }
  return body;
}

async function call(method, path, query, body) {
  let res;
  try {
    res = await fetch(url(path, query), {
      method,
      headers: body !== undefined ? { 'content-type': 'application/json' } : {},
      body: body !== undefined ? JSON.stringify(body) : undefined,
      cache: 'no-store',
    });
  } catch (err) {
    const e = new Error(String(err && err.message || err));
    e.status = 0;
    throw e;
  }
  return answer(res);
}

export const api = {
  get: (path, query) => call('GET', path, query),
  post: (path, body) => call('POST', path, undefined, body ?? {}),
  del: (path) => call('DELETE', path),
};
