// The live store: standing alarms, open incidents and the flood state, kept current from
// GET /api/v1/stream. Lists are (re)loaded on `hello` of a fresh connection, on `reset`,
// `lagged`, and on a reconnect the hub could not catch up; stream events in between are
// queued and applied after the load. Changes are applied in batches: once per animation
// frame, or after 250 ms when frames are paused (a background tab must still sound alarms).
import { isStanding } from './prio.js';

const EVENT_TYPES = ['alarm', 'incident', 'coverage', 'command', 'device', 'notification', 'flood'];
const IDS_MAX = 500;

export function createStore({ api, emit, status, gh }) {
  const store = {
    alarms: new Map(),
    incidents: new Map(),
    flood: null,
    /** Put alarms as a write answered them (ack, shelve) before the stream event arrives. */
    applyAlarms(list) { applyAlarmList(list, list.map((a) => a.id)); flushSoon(); },
  };

  let es = null;
  let lastId = '';           // last SSE id seen (`<boot>-<seq>`), '' when the hub has none
  let boot = null;           // hub boot of the connection the lists belong to
  let loaded = false;        // the lists were read at least once
  let loading = null;        // Promise of the load under way
  let queue = [];            // events that arrived while loading
  let closedTimer = null;
  let backoff = 1000;
  const dirtyAlarms = new Set();
  let incidentsDirty = false;
  let pendingKinds = new Set();
  let pendingAlarmIds = new Set();
  let allAlarmsChanged = false;
  let flushScheduled = false;

  // ---- applying -------------------------------------------------------------------------

  function applyAlarmList(list, askedIds) {
    const seen = new Set();
    for (const a of list) {
      seen.add(a.id);
      if (isStanding(a)) store.alarms.set(a.id, a); else store.alarms.delete(a.id);
      pendingAlarmIds.add(a.id);
    }
    for (const id of askedIds || []) {
      if (!seen.has(id) && store.alarms.delete(id)) pendingAlarmIds.add(id);
    }
    pendingKinds.add('alarms');
  }

  function flushSoon() {
    if (flushScheduled) return;
    flushScheduled = true;
    let timer = null;
    const run = () => {
      if (!flushScheduled) return;
      flushScheduled = false;
      cancelAnimationFrame(raf);
      clearTimeout(timer);
      flush();
    };
    const raf = requestAnimationFrame(run);
    timer = setTimeout(run, 250);
  }

  function flush() {
    if (!pendingKinds.size) return;
    const kinds = pendingKinds;
    const detail = { alarmIds: allAlarmsChanged ? null : pendingAlarmIds };
    pendingKinds = new Set();
    pendingAlarmIds = new Set();
    allAlarmsChanged = false;
    gh.storeAlarms = store.alarms.size;
    emit('store', kinds, detail);
  }

  // ---- loading --------------------------------------------------------------------------

  async function loadAlarms() {
    const list = await api.get('/alarms', { state: 'standing', limit: 5000 });
    // the same Map object for the page's life: a view may keep a reference to it
    store.alarms.clear();
    for (const a of list) store.alarms.set(a.id, a);
    allAlarmsChanged = true;
    pendingKinds.add('alarms');
  }

  async function loadIncidents() {
    const list = await api.get('/incidents', { open: 'true', limit: 1000 });
    store.incidents.clear();
    for (const i of list) store.incidents.set(i.id, i);
    pendingKinds.add('incidents');
  }

  async function loadFlood() {
    try {
      const k = await api.get('/kpi/alarms', { hours: 1 });
      store.flood = k && k.flood && k.flood.active ? { id: 0, since: k.flood.since, alarms_in_window: null } : null;
    } catch {
      store.flood = null;
    }
    pendingKinds.add('flood');
  }

  let reloadAgain = null;
  function reloadAll(why) {
    // a gap reported while a load runs may predate its snapshot: read once more after it
    if (loading) { if (why !== 'start') reloadAgain = why; return loading; }
    gh.reloads++;
    dirtyAlarms.clear();
    incidentsDirty = false;
    loading = Promise.all([loadAlarms(), loadIncidents(), loadFlood()])
      .then(() => {
        loaded = true;
        loading = null;
        if (reloadAgain) { const w = reloadAgain; reloadAgain = null; reloadAll(w); return; }
        const q = queue;
        queue = [];
        for (const ev of q) onEvent(ev);
        flushSoon();
        if (why === 'reset' || why === 'lagged' || why === 'reconnect') emit('reset', why);
      })
      .catch((e) => {
        loading = null;
        status('error', e);
        setTimeout(() => reloadAll(why), 3000);
      });
    return loading;
  }

  // ---- refetching changed objects -------------------------------------------------------

  let alarmFetch = null;
  async function fetchDirtyAlarms() {
    if (alarmFetch) return;               // the running fetch picks the rest up after
    while (dirtyAlarms.size) {
      const ids = [...dirtyAlarms];
      dirtyAlarms.clear();
      if (ids.length > IDS_MAX) {
        alarmFetch = loadAlarms();
      } else {
        alarmFetch = api.get('/alarms', { ids: ids.join(',') })
          .then((list) => applyAlarmList(list, ids))
          .catch((e) => {
            for (const id of ids) dirtyAlarms.add(id);
            throw e;
          });
      }
      try { await alarmFetch; } catch { alarmFetch = null; setTimeout(fetchDirtyAlarms, 2000); return; }
      alarmFetch = null;
      flushSoon();
    }
  }

  let incidentTimer = null;
  function incidentsSoon() {
    incidentsDirty = true;
    if (incidentTimer) return;
    incidentTimer = setTimeout(async () => {
      incidentTimer = null;
      if (!incidentsDirty) return;
      incidentsDirty = false;
      try { await loadIncidents(); flushSoon(); } catch { incidentsSoon(); }
    }, 400);
  }

  // ---- the stream -----------------------------------------------------------------------

  function onEvent(ev) {
    if (!loaded || loading) { queue.push(ev); return; }
    switch (ev.type) {
      case 'alarm':
        if (ev.id) dirtyAlarms.add(ev.id);
        queueMicrotask(fetchDirtyAlarms);
        break;
      case 'incident':
        incidentsSoon();
        break;
      case 'flood':
        store.flood = ev.change === 'ended' ? null : { id: ev.id, alarms_in_window: ev.data && ev.data.alarms_in_window, since: new Date().toISOString() };
        pendingKinds.add('flood');
        flushSoon();
        break;
      default:
        break;
    }
  }

  function parse(e) {
    try { return JSON.parse(e.data); } catch { return null; }
  }

  function connect() {
    clearTimeout(closedTimer);
    closedTimer = null;
    if (es) { es.close(); es = null; }
    const u = '/api/v1/stream' + (lastId ? '?after=' + encodeURIComponent(lastId) : '');
    const src = new EventSource(u);
    es = src;
    gh.es = src;
    gh.connects++;
    status('connecting');
    src.addEventListener('hello', (e) => {
      if (src !== es) return;
      const hello = parse(e) || {};
      backoff = 1000;
      status('live');
      // Catch-up is possible only when the hub numbers its events (issue 11) and this is
      // the same hub process; then the missed events (or a `reset`) follow the hello.
      const canCatchUp = loaded && hello.boot != null && boot != null && String(hello.boot) === String(boot) && lastId !== '';
      if (hello.boot != null) boot = hello.boot;
      if (!canCatchUp) {
        if (e.lastEventId) lastId = e.lastEventId;
        else if (hello.boot != null && hello.seq != null) lastId = `${hello.boot}-${hello.seq}`;
        else lastId = '';
      }
      if (!loaded) reloadAll('start');
      else if (!canCatchUp) reloadAll('reconnect');
    });
    const onTyped = (e) => {
      if (src !== es) return;
      if (e.lastEventId) lastId = e.lastEventId;
      const ev = parse(e);
      if (!ev) return;
      gh.events++;
      onEvent(ev);
      emit(ev.type, ev);
    };
    for (const t of EVENT_TYPES) src.addEventListener(t, onTyped);
    for (const t of ['reset', 'lagged']) {
      src.addEventListener(t, (e) => {
        if (src !== es) return;
        if (e.lastEventId) lastId = e.lastEventId;
        reloadAll(t);
      });
    }
    src.onerror = () => {
      if (src !== es) return;
      status('reconnecting');
      // The browser retries by itself (sending Last-Event-ID); when it gives up the source
      // is CLOSED and we retry with ?after= and a growing delay.
      if (src.readyState === EventSource.CLOSED) scheduleReconnect();
    };
  }

  function scheduleReconnect() {
    clearTimeout(closedTimer);
    closedTimer = setTimeout(connect, backoff);
    backoff = Math.min(backoff * 2, 30000);
  }

  // A source closed from outside (a test, a proxy) fires no error: look now and then.
  setInterval(() => {
    if (es && es.readyState === EventSource.CLOSED && !closedTimer) scheduleReconnect();
  }, 3000);

  gh.reconnect = () => connect();
  gh.reload = () => reloadAll('manual');

  return { store, connect, reloadAll, types: EVENT_TYPES };
}
