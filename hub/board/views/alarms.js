// The alarm board: every standing alarm of the region, live. Filters live in the hash
// query (?estate=&priority=&category=&state=), so a view can be linked and reloaded.
import { h } from '../lib/dom.js';
import { createAlarmTable } from '../lib/alarmtable.js';
import { PRIORITIES, alarmState, needsAck } from '../lib/prio.js';

export const title = 'nav.alarms';

const CATEGORIES = ['fire', 'security', 'plant', 'device'];
// unacknowledged / acknowledged / active / cleared as the API's state filter names them,
// plus the board's own states (shelved, suppressed, out of service)
const STATES = ['unacknowledged', 'acknowledged', 'active', 'cleared', 'shelved', 'suppressed', 'out_of_service'];
const ROW_LIMIT = 1000;

function matches(q) {
  return (a) => {
    if (q.estate && a.estate !== q.estate) return false;
    if (q.priority && a.priority !== q.priority) return false;
    if (q.category && a.category !== q.category) return false;
    switch (q.state || '') {
      case '': return true;
      case 'unacknowledged': return !a.acknowledged;
      case 'acknowledged': return !!a.acknowledged;
      case 'active': return !!a.active;
      case 'cleared': return !a.active;
      default: return alarmState(a) === q.state;
    }
  };
}

export function mount(root, ctx, params) {
  const t = ctx.t;
  let query = { ...params.query };
  let all = query.all === '1';

  const selects = {};
  function select(name, options, label) {
    const s = h('select', { testid: 'filter-' + name, name, onchange: () => setQuery({ [name]: s.value }) });
    s.append(h('option', { value: '' }, t('filter.all')));
    for (const [v, l] of options) s.append(h('option', { value: v }, l));
    selects[name] = s;
    return h('label', null, t(label), s);
  }
  const estateOpts = () => [...ctx.estates.values()].map((e) => [e.id, e.name]);
  const toolbar = h('div', { class: 'atoolbar' },
    select('estate', estateOpts(), 'filter.estate'),
    select('priority', PRIORITIES.map((p) => [p, `${p} ${t('prio.' + p)}`]), 'filter.priority'),
    select('category', CATEGORIES.map((c) => [c, t('cat.' + c)]), 'filter.category'),
    select('state', STATES.map((s) => [s, t('fstate.' + s)]), 'filter.state'),
  );
  const counts = h('span', { class: 'muted' });
  const flood = h('span', { class: 'flag flood-flag', testid: 'alarm-flood' });
  const table = createAlarmTable(ctx, {
    filter: matches(query),
    pin: true,
    limit: all ? Infinity : ROW_LIMIT,
    showAll: () => { all = true; ctx.navigate('#/alarms?all=1'); },
  });
  toolbar.append(counts, flood, table.hiddenBox);
  root.append(h('h1', null, t('alarms.title')), toolbar, table.node);

  function syncSelects() {
    for (const [k, s] of Object.entries(selects)) {
      if (k === 'estate' && query.estate && ![...s.options].some((o) => o.value === query.estate)) {
        s.append(h('option', { value: query.estate }, query.estate));
      }
      s.value = query[k] || '';
    }
  }

  function setQuery(patch) {
    const q = { ...query, ...patch };
    delete q.alarm;
    delete q.all;
    const sp = new URLSearchParams();
    for (const k of ['estate', 'priority', 'category', 'state']) if (q[k]) sp.set(k, q[k]);
    const s = sp.toString();
    ctx.navigate('#/alarms' + (s ? '?' + s : ''));
  }

  function renderCounts() {
    let n = 0, un = 0;
    for (const a of ctx.store.alarms.values()) { n++; if (needsAck(a)) un++; }
    counts.textContent = t('alarms.counts', { n, un });
    flood.hidden = !ctx.store.flood;
    flood.textContent = ctx.store.flood ? t('alarms.flood') : '';
  }

  function apply(params2) {
    query = { ...params2.query };
    all = query.all === '1';
    syncSelects();
    table.setFilter(matches(query), all ? Infinity : ROW_LIMIT);
    if (query.alarm) table.focus(Number(query.alarm));
  }

  apply(params);
  renderCounts();
  const offs = [
    ctx.on('store', (kinds, detail) => {
      if (kinds.has('estates')) {
        const s = selects.estate;
        const have = new Set([...s.options].map((o) => o.value));
        for (const [v, l] of estateOpts()) if (!have.has(v)) s.append(h('option', { value: v }, l));
      }
      if (kinds.has('flood')) renderCounts();
      if (kinds.has('alarms') || kinds.has('estates')) {
        table.update(kinds.has('estates') ? null : detail && detail.alarmIds);
        renderCounts();
      }
    }),
  ];
  return {
    update: apply,
    unmount() { offs.forEach((f) => f()); table.destroy(); },
  };
}
