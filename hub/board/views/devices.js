// Device and plant view: `#/devices?estate=` (devices of an estate) and
// `#/devices/<estate>/<device>` (last readings, trend chart, commands).
// Also the home of what the incident view shares with it: the priority badge, and device
// commands (form + live result), since commands are devices'.
import { trendChart } from '../lib/chart.js';
import { h as el, setText } from '../lib/dom.js';

export const title = 'nav.devices';

const PRIO_SYMBOL = { P1: '◆', P2: '▲', P3: '■', P4: '●' };

/** Priority shown by shape and text as well as colour (never colour alone). */
export function prioBadge(p) {
  const pr = PRIO_SYMBOL[p] ? p : 'P4';
  return el('span', { class: `b-prio b-prio-${pr}`, data: { priority: p } }, `${PRIO_SYMBOL[pr]} ${p || ''}`);
}

/**
 * Coalesces calls: the first call schedules `fn` after `ms`, later calls until then join it
 * (a steady stream of events still refetches every `ms`, unlike a debounce, which would
 * wait for a pause that may never come). Never runs `fn` twice at once: a call during a
 * run schedules one more run after it (so answers are applied in order).
 */
export function coalesce(fn, ms) {
  let timer = null;
  let running = false;
  let again = false;
  const run = async () => {
    timer = null;
    if (running) { again = true; return; }
    running = true;
    try { await fn(); } catch (e) { console.error(e); } finally {
      running = false;
      if (again) { again = false; c(); }
    }
  };
  const c = () => { if (!timer) timer = setTimeout(run, ms); };
  c.cancel = () => { clearTimeout(timer); timer = null; again = false; };
  return c;
}

/** Shows an API failure as a toast (422 and 409 answers name what is wrong). */
export function apiError(ctx, e) {
  const status = e && e.status ? ` (${e.status})` : '';
  ctx.toast(`${ctx.t('device.error')}${status}: ${e && e.message ? e.message : e}`, 'error');
}

function actionLabel(ctx, a) {
  return ctx.t(`device.action.${a}`);
}

/**
 * Asks for a command to one of `devices` ({estate, device, kind, points?}) and sends it
 * after the operator confirms (the form's OK is the confirmation). Resolves to the command
 * as the hub answered (202), or null when cancelled or refused.
 */
export async function sendCommandDialog(ctx, devices, incident) {
  const choices = [];
  for (const d of devices) {
    // The hub says what each device's kind takes (`GET /devices` `actions`).
    for (const a of d.actions || []) {
      choices.push({ value: `${choices.length}`, label: `${d.device}${d.kind ? ' (' + ctx.t('device.kind.' + d.kind) + ')' : ''} — ${actionLabel(ctx, a)}`, d, a });
    }
  }
  if (!choices.length) {
    ctx.toast(ctx.t('device.no_commands'), 'error');
    return null;
  }
  const needsWrite = choices.some(c => c.a === 'write');
  // Guess the point to write: a reset point first (a pump fault is reset by writing it).
  const names = devices.flatMap(d => Object.keys(d.points || {}));
  const writable = [...names.filter(p => /reset/i.test(p)), ...names.filter(p => !/reset/i.test(p) && /set|cmd|write|start|stop/i.test(p))];
  const fields = [{ name: 'choice', label: 'device.command_action', type: 'select', options: choices.map(c => ({ value: c.value, label: c.label })), value: '0', required: true }];
  if (needsWrite) {
    const only = choices.every(c => c.a === 'write');
    fields.push({ name: 'point', label: 'device.command_point', type: 'text', value: writable[0] || '', required: only });
    fields.push({ name: 'value', label: 'device.command_value', type: 'text', value: '1', required: only });
  }
  // The hub refuses opening a door or resetting a fire panel without a named reason
  // (`GET /devices` `reason_required`).
  const needsReason = choices.some(c => (c.d.reason_required || []).includes(c.a));
  fields.push({ name: 'reason', label: 'device.command_reason', type: 'text', required: needsReason });
  const v = await ctx.form(incident ? 'incident.command_title' : 'device.command_title', fields);
  if (!v) return null;
  const c = choices[Number(v.choice)] || choices[0];
  const body = { estate: c.d.estate, action: c.a, operator: ctx.operator };
  if (c.a === 'write') {
    body.args = { point: String(v.point || '').trim(), value: String(v.value ?? '').trim() };
    if (!body.args.point || !body.args.value) {
      ctx.toast(ctx.t('device.write_needs'), 'error');
      return null;
    }
  }
  if (v.reason && String(v.reason).trim()) body.reason = String(v.reason).trim();
  if (incident) body.incident = incident;
  try {
    return await ctx.api.post(`/devices/${encodeURIComponent(c.d.device)}/commands`, body);
  } catch (e) {
    apiError(ctx, e);
    return null;
  }
}

const CMD_SYMBOL = { sent: '…', ok: '✔', failed: '✖', timed_out: '◷', gateway_offline: '⚠' };

/**
 * A live list of commands (`command-result` rows): fed by `GET /commands` and the `command`
 * stream events; `accept(cmd)` decides which new commands belong here.
 */
export class CommandList {
  constructor(ctx, accept) {
    this.ctx = ctx;
    this.accept = accept;
    this.nodes = new Map();
    this.root = el('ul', { class: 'b-commands' });
    this.empty = el('li', { class: 'b-muted' }, ctx.t('device.no_command_yet'));
    this.root.append(this.empty);
    this.off = ctx.on('command', ev => {
      const c = ev && ev.data;
      if (!c || typeof c !== 'object') return;
      if (this.nodes.has(c.id) || this.accept(c)) this.put(c, true);
    });
  }
  load(list) {
    // Oldest first so that `put` (which prepends) leaves the newest on top.
    for (const c of [...list].sort((a, b) => a.id - b.id)) this.put(c, true);
  }
  put(c, prepend) {
    const ctx = this.ctx;
    let n = this.nodes.get(c.id);
    if (!n) {
      n = el('li', { class: 'b-command', testid: 'command-result', data: { commandId: c.id } },
        el('span', { class: 'b-cmd-state' }), ' ',
        el('span', { class: 'b-cmd-what' }), ' ',
        el('span', { class: 'b-cmd-detail b-muted' }), ' ',
        el('time', { class: 'b-time' }));
      this.nodes.set(c.id, n);
      this.empty.remove();
      if (prepend) this.root.prepend(n); else this.root.append(n);
    }
    // The stream may bring the settled state before the POST's answer (`sent`) arrives:
    // a command settles once, so never go back to `sent`.
    if (c.state === 'sent' && n.dataset.state && n.dataset.state !== 'sent') return;
    n.dataset.state = c.state;
    const [st, what, detail, time] = n.querySelectorAll('span, time');
    setText(st, `${CMD_SYMBOL[c.state] || '?'} ${ctx.t('device.cmd_state.' + c.state)}`);
    const args = c.args && Object.keys(c.args).length ? ' ' + Object.entries(c.args).map(([k, v]) => `${k}=${v}`).join(' ') : '';
    setText(what, `#${c.id} ${c.device} · ${actionLabel(ctx, c.action)}${args} · ${c.operator || ''}`);
    setText(detail, c.detail || '');
    setText(time, ctx.fmtTime(c.finished_at || c.created_at, c.estate));
  }
  unmount() { this.off && this.off(); }
}

function onlineText(ctx, d) {
  if (d.online === true) return `● ${ctx.t('device.online')}`;
  if (d.online === false) return `○ ${ctx.t('device.offline')}`;
  return `– ${ctx.t('device.unknown')}`;
}

function fmtValue(v) {
  if (v === null || v === undefined) return '–';
  if (typeof v === 'number') return Number.isInteger(v) ? String(v) : v.toFixed(2);
  return String(v);
}

function readingText(p) {
  return `${fmtValue(p.value)}${p.unit ? ' ' + p.unit : ''}`;
}

/** Devices of an estate, as the hub knows them from its gateways. */
async function loadDevices(ctx, estate) {
  return { list: await ctx.api.get('/devices', { estate }) };
}

export function mount(root, ctx, params) {
  const path = (params.path || []).slice();
  if (path[0] === 'devices') path.shift();
  root.classList.add('b-view', 'b-devices');
  const view = path.length >= 2
    ? mountDetail(root, ctx, path[0], path.slice(1).join('/')) // the shell decoded the segments
    : mountList(root, ctx, path.length === 1 ? { ...(params.query || {}), estate: path[0] } : (params.query || {}));
  return view;
}

function estateName(ctx, id) {
  const e = ctx.estates.get(id);
  return e && e.name ? e.name : id;
}

function mountList(root, ctx, query) {
  const estates = [...ctx.estates.keys()];
  let estate = query.estate && ctx.estates.has(query.estate) ? query.estate : estates[0];
  const select = el('select', { testid: 'device-estate', onchange: () => ctx.navigate(`#/devices?estate=${encodeURIComponent(select.value)}`) },
    estates.map(id => el('option', { value: id, selected: id === estate }, estateName(ctx, id))));
  const note = el('p', { class: 'b-note', hidden: true });
  const tbody = el('tbody');
  root.append(
    el('header', { class: 'b-head' }, el('h2', null, ctx.t('device.title')), el('label', null, ctx.t('device.estate'), ' ', select), note),
    el('table', { class: 'b-table' },
      el('thead', null, el('tr', null, ['device', 'kind', 'area', 'gateway', 'state', 'last_seen', 'maintenance', 'readings'].map(k => el('th', null, ctx.t('device.col.' + k))))),
      tbody));
  const rows = new Map();
  let alive = true;

  async function refresh() {
    if (!estate) { setText(note, ctx.t('device.no_estate')); note.hidden = false; return; }
    let res;
    try { res = await loadDevices(ctx, estate); } catch (e) { if (alive) apiError(ctx, e); return; }
    if (!alive) return;
    note.hidden = true;
    const seen = new Set();
    for (const d of res.list) {
      seen.add(d.device);
      let r = rows.get(d.device);
      if (!r) {
        const link = el('a', { href: `#/devices/${encodeURIComponent(estate)}/${encodeURIComponent(d.device)}` }, d.device);
        r = el('tr', { testid: 'device-row', class: 'b-row', data: { device: d.device, estate } },
          el('td', null, link), el('td'), el('td'), el('td'), el('td'), el('td', { class: 'b-time' }), el('td'), el('td', { class: 'b-readings' }));
        rows.set(d.device, r);
      }
      tbody.append(r); // keeps the answer's order; moves an existing node, no re-creation
      const c = r.children;
      setText(c[1], d.kind ? ctx.t('device.kind.' + d.kind) : '–');
      setText(c[2], d.area || '');
      setText(c[3], d.gateway ? `${d.gateway}${d.gateway_connected === false ? ' ⚠ ' + ctx.t('device.gateway_down') : ''}` : '');
      setText(c[4], onlineText(ctx, d));
      r.dataset.online = String(d.online);
      setText(c[5], d.last_seen ? ctx.fmtTime(d.last_seen, estate) : '–');
      setText(c[6], d.maintenance ? ctx.t('device.in_maintenance') : '');
      r.classList.toggle('b-maint', !!d.maintenance);
      const pts = Object.entries(d.points || {});
      setText(c[7], pts.slice(0, 5).map(([k, p]) => `${k} ${readingText(p)}`).join(' · ') + (pts.length > 5 ? ` … (+${pts.length - 5})` : ''));
    }
    for (const [id, r] of rows) if (!seen.has(id)) { r.remove(); rows.delete(id); }
    if (!res.list.length) { setText(note, ctx.t('device.none')); note.hidden = false; }
  }
  const later = coalesce(refresh, 500);
  const offs = [ctx.on('device', later), ctx.on('reset', later)];
  const timer = setInterval(() => { if (!document.hidden) later(); }, 10_000);
  later();
  return {
    unmount() { alive = false; clearInterval(timer); later.cancel(); offs.forEach(f => f && f()); },
  };
}

const HOURS = [1, 6, 24, 72, 168];

function mountDetail(root, ctx, estate, device) {
  let hours = 6;
  let info = { estate, device, kind: null, points: {} };
  const tz = (ctx.estates.get(estate) || {}).timezone;
  const hdr = el('h2');
  const meta = el('dl', { class: 'b-meta' });
  const readings = el('tbody');
  const chartBox = el('div', { class: 'b-charts' });
  const chartNote = el('p', { class: 'b-note', hidden: true });
  const hoursSel = el('select', { testid: 'trend-hours', onchange: () => { hours = Number(hoursSel.value); later(); } },
    HOURS.map(h => el('option', { value: h, selected: h === hours }, ctx.t('device.hours', { n: h }))));
  const cmds = new CommandList(ctx, c => c.estate === estate && c.device === device);
  const cmdBtn = el('button', { class: 'b-btn b-btn-cmd', testid: 'device-command', onclick: async () => {
    const c = await sendCommandDialog(ctx, [info]);
    if (c) { cmds.put(c, true); ctx.toast(ctx.t('device.command_sent', { id: c.id })); }
  } }, ctx.t('device.command'));
  // Maintenance suppresses the device's alarms by design while it lasts (ISA-18.2).
  async function toggleMaintenance() {
    const on = !info.maintenance;
    const fields = [{ name: 'reason', label: 'device.maintenance_reason', type: 'text', required: true }];
    // Maintenance always ends (the hub refuses an open-ended one).
    if (on) fields.push({ name: 'minutes', label: 'device.maintenance_minutes', type: 'number', min: 1, max: 10080, value: '60', required: true });
    const v = await ctx.form(on ? 'device.maintenance_start' : 'device.maintenance_end', fields);
    if (!v) return;
    const body = { estate, on, reason: v.reason, operator: ctx.operator };
    if (on && v.minutes !== '' && v.minutes !== undefined) body.minutes = Number(v.minutes);
    try {
      await ctx.api.post(`/devices/${encodeURIComponent(device)}/maintenance`, body);
    } catch (e) { apiError(ctx, e); }
    later();
  }
  root.append(
    el('nav', { class: 'b-crumbs' }, el('a', { href: `#/devices?estate=${encodeURIComponent(estate)}` }, `← ${ctx.t('device.title')} · ${estateName(ctx, estate)}`)),
    el('header', { class: 'b-head' }, hdr, meta),
    el('div', { class: 'b-cols' },
      el('section', { class: 'b-panel b-wide' },
        el('h3', null, ctx.t('device.trend'), ' ', hoursSel), chartNote, chartBox),
      el('div', { class: 'b-side' },
        el('section', { class: 'b-panel' }, el('h3', null, ctx.t('device.readings')),
          el('table', { class: 'b-table' }, el('thead', null, el('tr', null, ['point', 'value', 'quality', 'at'].map(k => el('th', null, ctx.t('device.col.' + k))))), readings)),
        el('section', { class: 'b-panel' }, el('h3', null, ctx.t('device.commands'), ' ', cmdBtn), cmds.root))));
  setText(hdr, `${device} · ${estateName(ctx, estate)}`);
  let alive = true;
  let charts = [];

  async function loadInfo() {
    let res;
    try { res = await loadDevices(ctx, estate); } catch (e) { if (alive) apiError(ctx, e); return; }
    if (!alive) return;
    const d = res.list.find(x => x.device === device);
    if (d) info = d;
    meta.textContent = '';
    const item = (k, v) => meta.append(el('dt', null, ctx.t('device.col.' + k)), el('dd', null, v));
    item('kind', info.kind ? ctx.t('device.kind.' + info.kind) : '–');
    item('area', info.area || '–');
    item('gateway', info.gateway ? `${info.gateway}${info.gateway_connected === false ? ' ⚠ ' + ctx.t('device.gateway_down') : ''}` : '–');
    item('state', onlineText(ctx, info));
    item('last_seen', info.last_seen ? ctx.fmtTime(info.last_seen, estate) : '–');
    item('maintenance', el('span', null, info.maintenance ? ctx.t('device.in_maintenance') : ctx.t('device.no'), ' ',
      el('button', { class: 'b-btn b-btn-quiet', testid: 'device-maintenance', onclick: toggleMaintenance },
        ctx.t(info.maintenance ? 'device.maintenance_end' : 'device.maintenance_start'))));
    readings.textContent = '';
    const pts = Object.entries(info.points || {}).sort(([a], [b]) => a.localeCompare(b));
    for (const [k, p] of pts) {
      readings.append(el('tr', { data: { point: k, quality: p.quality } },
        el('td', null, k), el('td', { class: 'b-num' }, readingText(p)), el('td', null, p.quality || ''), el('td', { class: 'b-time' }, p.at ? ctx.fmtTime(p.at, estate) : '')));
    }
    if (!pts.length) readings.append(el('tr', null, el('td', { colspan: 4, class: 'b-muted' }, ctx.t('device.no_readings'))));
  }

  async function loadPoints() {
    let res;
    try {
      res = await ctx.api.get(`/devices/${encodeURIComponent(device)}/points`, { estate, hours });
    } catch (e) {
      if (!alive) return;
      if (e.status === 404) { setText(chartNote, ctx.t('device.no_points_api')); chartNote.hidden = false; return; }
      apiError(ctx, e); return;
    }
    if (!alive) return;
    // One chart per unit: different units on one axis would hide each other.
    const byUnit = new Map();
    for (const [name, p] of Object.entries(res.points || {})) {
      const unit = p.unit || '';
      if (!byUnit.has(unit)) byUnit.set(unit, []);
      byUnit.get(unit).push({ name, samples: p.samples || [] });
    }
    chartNote.hidden = byUnit.size > 0;
    setText(chartNote, ctx.t('device.no_samples'));
    const key = [...byUnit.entries()].map(([u, s]) => u + ':' + s.map(x => x.name).join(',')).join('|');
    if (charts.key !== key) {
      charts.forEach(c => c.destroy());
      chartBox.textContent = '';
      charts = [];
      for (const [unit, series] of byUnit) {
        const box = el('div', { class: 'b-chart', testid: 'trend-chart', data: { unit } });
        chartBox.append(box);
        charts.push(trendChart(box, { unit, series, tz, from: res.from, to: res.to, timeLabel: ctx.t('device.time'), fmtTime: t => ctx.fmtTime(t, estate), width: Math.max(360, chartBox.clientWidth - 8) }));
      }
      charts.key = key;
    } else {
      let i = 0;
      for (const [, series] of byUnit) charts[i++].update(series, res.from, res.to);
    }
  }

  const refreshAll = () => (document.hidden ? null : Promise.all([loadInfo(), loadPoints()]));
  const later = coalesce(refreshAll, 800);
  const offs = [
    ctx.on('alarm', ev => { const a = ev && ev.data; if (a && a.estate === estate && a.device === device) later(); }),
    ctx.on('device', later),
    ctx.on('reset', later),
  ];
  const timer = setInterval(later, 10_000);
  ctx.api.get('/commands', { estate, device, limit: 20 }).then(l => alive && cmds.load(l)).catch(e => alive && apiError(ctx, e));
  Promise.all([loadInfo(), loadPoints()]);
  return {
    unmount() {
      alive = false; clearInterval(timer); later.cancel(); offs.forEach(f => f && f()); cmds.unmount();
      charts.forEach(c => c.destroy());
    },
  };
}
