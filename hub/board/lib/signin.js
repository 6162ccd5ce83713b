// Sign-in: the screen shown when the hub says 401 (no session, or it ended), and sign-out.
// The session lives in the HttpOnly `gatehouse_session` cookie the hub sets at login, which
// fetch and EventSource send on their own; the board never sees or stores the token.
import { h } from './dom.js';

/** Replaces the page with the sign-in form; a successful sign-in reloads the board. */
export function showSignIn(t, host) {
  document.getElementById('top').textContent = '';
  for (const id of ['strip', 'flood-banner']) { const n = document.getElementById(id); if (n) n.hidden = true; }
  host.textContent = '';
  const user = h('input', { type: 'text', name: 'user', testid: 'signin-user', autocomplete: 'username', required: true });
  const password = h('input', { type: 'password', name: 'password', testid: 'signin-password', autocomplete: 'current-password', required: true });
  const error = h('p', { class: 'note error', testid: 'signin-error', role: 'alert' });
  error.hidden = true;
  const submit = h('button', { class: 'btn', type: 'submit', testid: 'signin-submit' }, t('signin.submit'));
  const form = h('form', { class: 'signin', testid: 'signin-form' },
    h('h1', {}, t('shell.brand')),
    h('label', {}, t('signin.user'), user),
    h('label', {}, t('signin.password'), password),
    error, submit);
  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    submit.disabled = true;
    error.hidden = true;
    let status = 0;
    try {
      const res = await fetch('/api/v1/login', {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ user: user.value.trim(), password: password.value }),
        cache: 'no-store',
      });
      status = res.status;
    } catch { status = 0; }
    password.value = '';
    if (status === 200) { location.reload(); return; }
    error.textContent = t(status === 401 ? 'signin.wrong' : status === 429 ? 'signin.throttled' : 'signin.failed');
    error.hidden = false;
    submit.disabled = false;
    password.focus();
  });
  host.append(form);
  user.focus();
}

/** Ends the session (the hub also clears the cookie), then shows sign-in. */
export async function signOut(api) {
  try { await api.post('/logout', {}); } catch { /* signed out either way */ }
  location.reload();
}
