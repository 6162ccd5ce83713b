// The alarm table, shared by the alarm board and the estate page. Rows are kept in a
// Map id → row and updated in place: a store batch touches only the rows of the alarms
// it changed, then the order is fixed by moving only the rows that are out of place.
//
// Order (what alarm consoles do, ISA-18.2 / EEMUA 191): priority first; within a
// priority the alarms still waiting for an acknowledgement before the acknowledged ones;
// then newest first, so a fresh alarm appears at the top of its priority band.
import { h, setText, setAttr, reorder } from './dom.js';
import { RANK, alarmState, needsAck, badge, updateBadge, syncFlash } from './prio.js';
import { toMs } from './time.js';

const COLS = ['priority', 'time', 'age', 'estate', 'area', 'device', 'message', 'value', 'state', 'incident', 'actions'];

// Parsed raise times, per alarm object (a changed alarm is a new object, so no stale entry).
const raisedMs = new WeakMap();
function raised(a) {
  let ms = raisedMs.get(a);
  if (ms === undefined) { ms = toMs(a.raised_at) || 0; raisedMs.set(a, ms); }
  return ms;
}

export function compareAlarms(a, b) {
  return (RANK[a.priority] || 9) - (RANK[b.priority] || 9)
    || (needsAck(b) ? 1 : 0) - (needsAck(a) ? 1 : 0)
    || raised(b) - raised(a)
    || b.id - a.id;
}

/**
 * opts: filter(a) → bool; pin (unacknowledged P1s stay shown even when the filter hides
 * them); limit (rows at most; pinned ones always); showAll() (the "show all" click);
 * scope(a) → bool (the alarms the hidden count is about, default all).
 */
export function createAlarmTable(ctx, opts) {
  const t = ctx.t;
  let filter = opts.filter || (() => true);
  let limit = opts.limit || Infinity;
  const scope = opts.scope || (() => true);
  const rows = new Map();
  let focusId = null;

  const head = h('div', { class: 'arow ahead', role: 'row' }, COLS.map((c) => h('span', { role: 'columnheader' }, t('col.' + c))));
  const body = h('div', { class: 'abody', role: 'rowgroup' });
  const empty = h('div', { class: 'empty' }, t('alarms.none'));
  const scroller = h('div', { class: 'atable', role: 'table' }, head, body, empty);
  const hidden = h('span', { class: 'hidden-count', testid: 'alarm-hidden-count', dataset: { count: '0' } });
  const showAllBtn = h('button', { class: 'btn btn-small', type: 'button', testid: 'alarm-show-all', onclick: () => opts.showAll && opts.showAll() }, t('alarms.show_all'));
  const hiddenBox = h('span', { class: 'hidden-box' }, hidden, ' ', showAllBtn);

  function build(a) {
    const cells = {};
    const node = h('div', { class: 'arow', role: 'row', testid: 'alarm-row', dataset: { alarmId: a.id } });
    for (const c of COLS) { cells[c] = h('span', { class: 'a-' + c, role: 'cell' }); node.append(cells[c]); }
    cells.badge = badge(t, a.priority);
    cells.priority.append(cells.badge);
    cells.stateText = h('span');
    cells.flags = h('span');
    cells.state.append(cells.stateText, cells.flags);
    cells.link = h('a', {});
    cells.incident.append(cells.link);
    cells.ack = h('button', { class: 'btn', type: 'button', testid: 'alarm-ack', dataset: { act: 'ack' } }, t('alarms.ack'));
    cells.shelve = h('button', { class: 'btn', type: 'button', testid: 'alarm-shelve', dataset: { act: 'shelve' } }, t('alarms.shelve'));
    cells.actions.append(cells.ack, cells.shelve);
    const row = { node, cells, sig: '', pinned: false };
    fill(row, a);
    return row;
  }

  function fill(row, a) {
    const sig = `${a.changed_at}|${a.active}|${a.acknowledged}|${a.shelved}|${a.suppressed}|${a.out_of_service}|${a.chattering}|${a.value}|${a.incident_id}|${a.priority}|${a.message}|${ctx.estates.get(a.estate)?.name}`;
    if (sig === row.sig) return;
    row.sig = sig;
    const c = row.cells;
    const st = alarmState(a);
    setAttr(row.node, 'data-priority', a.priority);
    setAttr(row.node, 'data-state', st);
    updateBadge(t, c.badge, a.priority);
    const flashing = st === 'unack_active';
    if (flashing && !c.badge.classList.contains('flash')) { syncFlash(c.badge); c.badge.classList.add('flash'); }
    if (!flashing) c.badge.classList.remove('flash');
    c.badge.classList.toggle('rtn', st === 'unack_cleared');
    c.badge.classList.toggle('muted-state', st === 'shelved' || st === 'suppressed' || st === 'out_of_service');
    setText(c.time, ctx.fmtTime(a.raised_at, a.estate));
    setText(c.age, ctx.fmtAge(a.raised_at));
    setText(c.estate, ctx.estates.get(a.estate)?.name || a.estate);
    setAttr(c.estate, 'title', a.estate);
    setText(c.area, a.area);
    setText(c.device, a.device);
    setText(c.message, a.message || a.condition);
    setAttr(c.message, 'title', `${a.message || ''} (${a.condition || ''})`);
    setText(c.value, a.value == null ? '' : typeof a.value === 'number' ? String(Math.round(a.value * 100) / 100) : String(a.value));
    let stText = t('astate.' + st);
    if (st === 'shelved' && a.shelved_until) stText += ' ' + t('alarms.until', { time: ctx.fmtTime(a.shelved_until, a.estate).slice(11, 16) });
    setText(c.stateText, stText);
    const flags = [];
    if (a.chattering) flags.push(t('flag.chattering'));
    if (a.latched && a.active) flags.push(t('flag.latched'));
    if (st === 'shelved' && a.active) flags.push(t('flag.active'));
    setText(c.flags, '');
    for (const f of flags) c.flags.append(h('span', { class: 'flag' }, f));
    if (a.incident_id) {
      setAttr(c.link, 'href', '#/incidents/' + a.incident_id);
      setText(c.link, '#' + a.incident_id);
    } else {
      setAttr(c.link, 'href', null);
      setText(c.link, '');
    }
    c.ack.disabled = !!a.acknowledged;
    c.shelve.hidden = !!a.shelved || !!a.out_of_service;
    setAttr(row.node, 'title', a.shelve_reason ? `${t('astate.shelved')}: ${a.shelve_reason} (${a.shelved_by || ''})` : null);
  }

  /** Rebuild the order and the changed rows. `changed`: Set of alarm ids, or null (all). */
  function update(changed) {
    const t0 = performance.now();
    try { updateRows(changed); } finally {
      const gh = window.__gh;
      if (gh) { const ms = performance.now() - t0; gh.tableUpdates = (gh.tableUpdates || 0) + 1; gh.tableMsMax = Math.max(gh.tableMsMax || 0, ms); gh.tableMsTotal = (gh.tableMsTotal || 0) + ms; }
    }
  }

  function updateRows(changed) {
    const all = ctx.store.alarms;
    // rows whose alarm changed or left
    if (changed == null) {
      for (const [id, row] of rows) { const a = all.get(id); if (a) fill(row, a); }
    } else {
      for (const id of changed) { const row = rows.get(id); const a = all.get(id); if (row && a) fill(row, a); }
    }
    const list = [];
    let inScope = 0;
    for (const a of all.values()) {
      if (!scope(a)) continue;
      inScope++;
      const match = filter(a);
      const pinned = !match && opts.pin && a.priority === 'P1' && needsAck(a);
      if (match || pinned) list.push({ a, pinned, k: (RANK[a.priority] || 9) * 2 + (needsAck(a) ? 0 : 1), ms: raised(a) });
    }
    // compareAlarms with its keys computed once per alarm; unacknowledged P1s (pinned or
    // not) sort first anyway
    list.sort((x, y) => x.k - y.k || y.ms - x.ms || y.a.id - x.a.id);
    const shown = [];
    for (const it of list) {
      if (shown.length >= limit && !(it.a.priority === 'P1' && needsAck(it.a))) continue;
      shown.push(it);
    }
    const nodes = [];
    const keep = new Set();
    for (const { a, pinned } of shown) {
      let row = rows.get(a.id);
      if (!row) { row = build(a); rows.set(a.id, row); }
      if (row.pinned !== pinned) { row.pinned = pinned; row.node.classList.toggle('pinned', pinned); setAttr(row.node, 'data-pinned', pinned ? 'true' : null); }
      keep.add(a.id);
      nodes.push(row.node);
    }
    for (const id of [...rows.keys()]) if (!keep.has(id)) rows.delete(id);
    reorder(body, nodes);
    empty.hidden = nodes.length > 0;
    const notShown = Math.max(0, inScope - shown.length);
    setText(hidden, t('alarms.hidden', { n: notShown }));
    setAttr(hidden, 'data-count', notShown);
    hiddenBox.hidden = notShown === 0;
    if (focusId != null) applyFocus();
  }

  function applyFocus() {
    const row = rows.get(focusId);
    if (!row) return;
    for (const r of body.querySelectorAll('.arow.focus')) if (r !== row.node) r.classList.remove('focus');
    if (!row.node.classList.contains('focus')) {
      row.node.classList.add('focus');
      row.node.scrollIntoView({ block: 'center' });
    }
  }

  async function act(kind, id) {
    const a = ctx.store.alarms.get(id);
    try {
      let res;
      if (kind === 'ack') {
        res = await ctx.api.post(`/alarms/${id}/ack`, { operator: ctx.operator });
      } else {
        const v = await ctx.form('alarms.shelve_title', [
          { name: 'reason', label: 'alarms.reason', type: 'text', required: true },
          { name: 'minutes', label: 'alarms.minutes', type: 'number', required: true, value: 60, min: 1 },
        ]);
        if (!v) return;
        res = await ctx.api.post(`/alarms/${id}/shelve`, { reason: v.reason, minutes: v.minutes, operator: ctx.operator });
      }
      if (res && res.id != null) ctx.store.applyAlarms([res]);
      ctx.toast(t(kind === 'ack' ? 'alarms.acked' : 'alarms.shelved', { id, message: a ? a.message : '' }));
    } catch (e) {
      ctx.toast(t('alarms.action_failed', { error: e.message }), 'error');
    }
  }

  body.addEventListener('click', (e) => {
    const b = e.target.closest('button[data-act]');
    if (!b) return;
    const row = b.closest('.arow');
    const id = Number(row && row.dataset.alarmId);
    if (id) act(b.dataset.act, id);
  });

  // Ages move on even when nothing changes.
  const ageTimer = setInterval(() => {
    for (const [id, row] of rows) { const a = ctx.store.alarms.get(id); if (a) setText(row.cells.age, ctx.fmtAge(a.raised_at)); }
  }, 15000);

  return {
    node: scroller,
    hiddenBox,
    update,
    setFilter(fn, lim) { filter = fn; limit = lim || Infinity; update(null); },
    focus(id) { focusId = id; applyFocus(); },
    destroy() { clearInterval(ageTimer); },
  };
}
