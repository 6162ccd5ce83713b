// The board's shell: builds `ctx` (CONTRACT "View module interface"), the header, the
// hash router, the live store and the sound. Views live in views/<name>.js and are loaded
// on demand, so a view that is not there yet shows a calm note instead of breaking the page.
import { h, setText, setAttr, reorder } from './lib/dom.js';
import { api } from './lib/api.js';
import { savedLang, saveLang, loadLabels, makeT } from './lib/i18n.js';
import { makeFmtTime, makeFmtAge, toMs } from './lib/time.js';
import { makeUi } from './lib/ui.js';
import { createStore } from './lib/store.js';
import { createSound } from './lib/sound.js';
import { showSignIn, signOut } from './lib/signin.js';
import { PRIORITIES, SYMBOL, RANK, needsAck, badge, syncFlash } from './lib/prio.js';

// Test and diagnostics counters (browser tests read them).
const gh = (window.__gh = {
  soundPlays: 0, soundAttempts: 0, soundKinds: {}, soundLast: null, soundActive: null,
  events: 0, reloads: 0, connects: 0, storeAlarms: 0, es: null, view: null,
});

const ROUTES = {
  overview: 'overview', alarms: 'alarms', incidents: 'incident', coverage: 'coverage',
  devices: 'devices', kpi: 'kpi', estates: 'estate',
};
const NAV = ['overview', 'alarms', 'incidents', 'coverage', 'devices', 'kpi'];
const kiosk = new URLSearchParams(location.search).has('kiosk');

let t = (k) => k;
const listeners = new Map();
function emit(type, ...args) {
  for (const fn of [...(listeners.get(type) || [])]) {
    try { fn(...args); } catch (e) { console.error('board listener', type, e); }
  }
}

const estates = new Map();
const ui = makeUi(() => t);

const ctx = {
  api,
  t: (k, v) => t(k, v),
  lang: savedLang(),
  fmtTime: makeFmtTime(estates),
  fmtAge: makeFmtAge((k, v) => t(k, v)),
  estates,
  store: null,
  on(type, fn) {
    if (!listeners.has(type)) listeners.set(type, new Set());
    listeners.get(type).add(fn);
    return () => listeners.get(type)?.delete(fn);
  },
  navigate(hash) {
    const to = hash.startsWith('#') ? hash : '#' + hash;
    if (location.hash === to) route(); else location.hash = to;
  },
  confirm: ui.confirm,
  form: ui.form,
  toast: ui.toast,
  // Who is signed in (GET /me); the hub records the caller, and the board shows it.
  user: null,
  get operator() { return ctx.user ? ctx.user.name : 'operator'; },
  kiosk,
};
window.__ghctx = ctx;

// ---- live store -----------------------------------------------------------------------
const live = createStore({
  api,
  emit,
  gh,
  status(s, err) {
    if (s === 'error') { if (err) loadFailed(err); return; }
    if (s === 'live') {
      loadFailedShown = false;
      if (estates.size === 0) loadEstates(); // the hub was down when the page opened
    }
    liveState = s;
    renderLive();
  },
});
ctx.store = live.store;
const sound = createSound({ store: live.store, gh, onState: () => renderSound() });

// ---- header ---------------------------------------------------------------------------
const top = document.getElementById('top');
const floodBanner = document.getElementById('flood-banner');
const strip = document.getElementById('strip');
const viewHost = document.getElementById('view');
let liveState = 'connecting';

const el = {};
function buildHeader() {
  top.textContent = '';
  el.brand = h('a', { class: 'brand', href: '#/overview' }, t('shell.brand'));
  el.nav = h('nav', { class: 'nav' });
  el.navLinks = {};
  for (const v of NAV) {
    const a = h('a', { href: '#/' + v, testid: 'nav-' + v }, t('nav.' + v));
    el.navLinks[v] = a;
    el.nav.append(a);
  }
  el.estates = h('a', { class: 'hdr-estates', href: '#/overview' });
  el.counts = h('div', { class: 'hdr-counts' });
  el.prio = {};
  for (const p of PRIORITIES) {
    const a = h('a', { class: 'hdr-count prio-' + p, href: '#/alarms?priority=' + p, dataset: { p } });
    el.prio[p] = a;
    el.counts.append(a);
  }
  el.unack = h('a', { class: 'hdr-unack', href: '#/alarms?state=unacknowledged' });
  el.live = h('span', { class: 'live', testid: 'live-status', 'aria-live': 'polite' });
  el.lang = h('button', { class: 'btn btn-small', testid: 'lang-toggle', type: 'button', onclick: toggleLang });
  el.sound = h('button', { class: 'btn btn-small', testid: 'sound-toggle', type: 'button', onclick: toggleSound });
  el.operator = h('span', { class: 'operator', testid: 'operator-name' });
  el.signOut = h('button', { class: 'btn btn-small', testid: 'sign-out', type: 'button', onclick: () => signOut(api) });
  top.append(el.brand, el.nav, el.estates, el.counts, el.unack, h('span', { class: 'spacer' }), el.live, el.sound, el.lang, el.operator, el.signOut);
  renderCounts();
  renderLive();
  renderSound();
  renderOperator();
  setText(el.lang, ctx.lang === 'zh-CN' ? 'EN' : '中文');
  setAttr(el.lang, 'title', t('shell.lang'));
  markNav();
}

function renderLive() {
  if (!el.live) return;
  const s = liveState === 'live' ? 'live' : 'reconnecting';
  setAttr(el.live, 'data-state', s);
  setText(el.live, liveState === 'live' ? '● ' + t('shell.live') : liveState === 'connecting' ? '○ ' + t('shell.connecting') : '○ ' + t('shell.reconnecting'));
}

function renderSound() {
  if (!el.sound) return;
  const s = sound.state();
  setAttr(el.sound, 'data-state', s);
  setText(el.sound, s === 'on' ? '♪ ' + t('shell.sound_on') : s === 'blocked' ? '♪ ' + t('shell.sound_enable') : '✕ ' + t('shell.sound_off'));
  el.sound.classList.toggle('attention', s === 'blocked');
}

function renderOperator() {
  if (!el.operator) return;
  const u = ctx.user;
  setText(el.operator, u ? `${u.name} · ${t('role.' + u.role)}` : '');
  setAttr(el.operator, 'data-role', u ? u.role : '');
  setText(el.signOut, t('signin.sign_out'));
}

function renderCounts() {
  if (!el.counts) return;
  const n = { P1: 0, P2: 0, P3: 0, P4: 0 };
  let unack = 0;
  for (const a of live.store.alarms.values()) {
    if (a.active && !a.shelved && !a.suppressed && !a.out_of_service && n[a.priority] != null) n[a.priority]++;
    if (needsAck(a)) unack++;
  }
  for (const p of PRIORITIES) {
    setText(el.prio[p], `${SYMBOL[p]} ${p} ${n[p]}`);
    setAttr(el.prio[p], 'title', t('prio.' + p) + ': ' + t('shell.active_count', { n: n[p] }));
    el.prio[p].classList.toggle('zero', n[p] === 0);
  }
  setText(el.unack, t('shell.unack', { n: unack }));
  el.unack.classList.toggle('zero', unack === 0);
  setText(el.estates, t('shell.estates', { n: estates.size }));
  const f = live.store.flood;
  floodBanner.hidden = !f;
  // The count is known from a `flood` event; a flood already under way at load (read from
  // the KPI answer) has none, so say it without a number rather than with a dash.
  const since = f && f.since ? ctx.fmtTime(f.since) : '';
  if (f) setText(floodBanner, '⚠ ' + (f.alarms_in_window == null
    ? t('shell.flood_nocount', { since })
    : t('shell.flood', { n: f.alarms_in_window, since })));
}

function markNav() {
  const cur = (location.hash.replace(/^#\/?/, '').split(/[/?]/)[0]) || 'overview';
  for (const [v, a] of Object.entries(el.navLinks || {})) a.classList.toggle('active', v === cur || (cur === 'estates' && v === 'overview'));
}

// The strip: unacknowledged P1/P2 stay in view on every page; a click opens the alarm.
const stripChips = new Map();
function renderStrip() {
  const list = [...live.store.alarms.values()]
    .filter((a) => (a.priority === 'P1' || a.priority === 'P2') && needsAck(a))
    .sort((a, b) => RANK[a.priority] - RANK[b.priority] || toMs(b.raised_at) - toMs(a.raised_at) || b.id - a.id);
  const shown = list.slice(0, 6);
  const nodes = [];
  const keep = new Set();
  for (const a of shown) {
    keep.add(a.id);
    let c = stripChips.get(a.id);
    if (!c) {
      const b = badge(t, a.priority, 'flash');
      syncFlash(b);
      c = { node: h('a', { class: 'chip', href: '#/alarms?alarm=' + a.id, testid: 'strip-alarm', dataset: { alarmId: a.id } }, b, h('span', { class: 'chip-text' })), badge: b };
      stripChips.set(a.id, c);
    }
    c.node.classList.toggle('rtn', !a.active);
    const est = estates.get(a.estate)?.name || a.estate;
    setText(c.node.lastChild, `${est} · ${a.area || ''} · ${a.message || a.condition} · ${ctx.fmtTime(a.raised_at, a.estate).slice(11)}`);
    nodes.push(c.node);
  }
  for (const id of [...stripChips.keys()]) if (!keep.has(id)) stripChips.delete(id);
  if (list.length > shown.length) {
    if (!el.stripMore) el.stripMore = h('a', { class: 'chip more', href: '#/alarms?state=unacknowledged' });
    setText(el.stripMore, t('shell.strip_more', { n: list.length - shown.length }));
    nodes.push(el.stripMore);
  }
  reorder(strip, nodes);
  strip.hidden = nodes.length === 0;
}

async function toggleLang() {
  const next = ctx.lang === 'zh-CN' ? 'en' : 'zh-CN';
  await setLang(next);
  buildHeader();
  stripChips.clear();
  strip.textContent = '';
  renderStrip();
  route(true);
}

async function setLang(lang) {
  const labels = await loadLabels(lang);
  t = makeT(labels);
  ctx.lang = lang;
  saveLang(lang);
  document.documentElement.lang = lang;
  document.title = t('shell.title');
}

function toggleSound() {
  const s = sound.state();
  sound.setEnabled(s !== 'on');
  if (s === 'blocked') sound.setEnabled(true);
}


// ---- estates --------------------------------------------------------------------------
async function loadEstates() {
  try {
    const list = await api.get('/estates');
    estates.clear();
    for (const e of list.slice().sort((a, b) => String(a.name).localeCompare(String(b.name)))) estates.set(e.id, e);
    renderCounts();
    emit('store', new Set(['estates']), { alarmIds: new Set() });
  } catch (e) {
    loadFailed(e);
  }
}

// One toast per outage: the loads retry by themselves and the live status already says so.
let loadFailedShown = false;
function loadFailed(e) {
  if (loadFailedShown) return;
  loadFailedShown = true;
  ctx.toast(t('shell.load_failed', { error: e.message }), 'error');
}

// ---- router ---------------------------------------------------------------------------
let current = null; // {name, module, handle, key}
let routeSeq = 0;

function parseHash() {
  const raw = location.hash.replace(/^#\/?/, '');
  const [p, q = ''] = raw.split('?');
  const segs = p.split('/').filter(Boolean).map((s) => { try { return decodeURIComponent(s); } catch { return s; } });
  const query = Object.fromEntries(new URLSearchParams(q));
  const first = segs.shift() || 'overview';
  return { first, path: segs, query };
}

async function route(force) {
  markNav();
  const { first, path, query } = parseHash();
  const name = ROUTES[first];
  const params = { path, query };
  const key = first + '/' + path.join('/');
  if (!force && current && current.key === key && current.handle && typeof current.handle.update === 'function') {
    current.handle.update(params);
    return;
  }
  const seq = ++routeSeq;
  if (current && current.handle) { try { current.handle.unmount(); } catch (e) { console.error(e); } }
  current = null;
  viewHost.textContent = '';
  const section = h('section', { class: 'view-' + (name || 'unknown') });
  viewHost.append(section);
  gh.view = name || null;
  if (!name) {
    section.append(h('p', { class: 'note' }, t('shell.no_view', { name: first })));
    return;
  }
  let mod;
  try {
    mod = await import(`./views/${name}.js`);
  } catch (e) {
    if (seq !== routeSeq) return;
    section.append(h('p', { class: 'note', testid: 'view-missing' }, t('shell.view_missing', { name: t('nav.' + first) })));
    return;
  }
  if (seq !== routeSeq) return;
  try {
    const handle = mod.mount(section, ctx, params) || { unmount() {} };
    current = { name, key, handle };
    if (mod.title) document.title = t(mod.title) + ' · ' + t('shell.title');
  } catch (e) {
    console.error('mount', name, e);
    section.textContent = '';
    section.append(h('p', { class: 'note error' }, t('shell.view_failed', { error: e.message })));
  }
}

// ---- start ----------------------------------------------------------------------------
async function start() {
  if (kiosk) { document.body.classList.add('kiosk'); if (!sound.isEnabled()) sound.setEnabled(true); }
  await setLang(ctx.lang);
  try {
    ctx.user = await api.get('/me');
  } catch (e) {
    if (e.status === 401) { showSignIn(t, viewHost); return; }
    ctx.user = null;
  }
  // From now on a 401 means the session ended: back to sign-in (once).
  window.addEventListener('gh:unauthorized', () => location.reload(), { once: true });
  buildHeader();
  ctx.on('store', (kinds) => {
    if (kinds.has('alarms') || kinds.has('flood') || kinds.has('estates')) renderCounts();
    if (kinds.has('alarms') || kinds.has('estates')) renderStrip();
    if (kinds.has('alarms')) { sound.update(); renderSound(); }
  });
  ctx.on('reset', () => loadEstates());
  window.addEventListener('hashchange', () => route());
  await loadEstates();
  setInterval(loadEstates, 30000);
  live.connect();
  route();
}

start();
