// The estate page (#/estates/<id>): its alarms (the shared alarm table, scoped to the
// estate), its open incidents, its gateways, and links to its posts and devices.
import { h, setText } from '../lib/dom.js';
import { createAlarmTable } from '../lib/alarmtable.js';
import { badge } from '../lib/prio.js';

export const title = 'nav.estates';

export function mount(root, ctx, params) {
  const t = ctx.t;
  const id = params.path[0];
  const e0 = ctx.estates.get(id);
  if (!e0) {
    root.append(h('p', { class: 'note' }, t('estate.unknown', { id: id || '' })), h('a', { href: '#/overview' }, t('nav.overview')));
    return { unmount() {} };
  }
  const enc = encodeURIComponent(id);
  const heading = h('h1');
  const links = h('div', { class: 'atoolbar' },
    h('a', { class: 'btn btn-small', href: `#/alarms?estate=${enc}`, testid: 'estate-alarms-link' }, t('estate.to_alarms')),
    h('a', { class: 'btn btn-small', href: `#/coverage?estate=${enc}`, testid: 'estate-coverage-link' }, t('estate.to_coverage')),
    h('a', { class: 'btn btn-small', href: `#/devices?estate=${enc}`, testid: 'estate-devices-link' }, t('estate.to_devices')),
    h('a', { class: 'btn btn-small', href: `#/incidents?estate=${enc}` }, t('estate.to_incidents')));
  const table = createAlarmTable(ctx, { scope: (a) => a.estate === id, filter: () => true, pin: false });
  const incList = h('ul', { class: 'list' });
  const gwList = h('ul', { class: 'list' });
  const info = h('div', { class: 'kv' });
  root.append(heading, links,
    h('h2', null, t('estate.alarms')), table.node,
    h('div', { class: 'estate-grid' },
      h('div', { class: 'panel' }, h('h2', null, t('estate.incidents')), incList),
      h('div', { class: 'panel' }, h('h2', null, t('estate.gateways')), info, gwList)));

  function renderInfo() {
    const e = ctx.estates.get(id) || e0;
    setText(heading, `${e.name} (${e.id})`);
    info.textContent = '';
    info.append(h('span', { class: 'muted' }, t('estate.timezone')), h('span', null, e.timezone || ''));
    gwList.textContent = '';
    const gws = e.gateways || [];
    if (!gws.length) gwList.append(h('li', { class: 'muted' }, t('overview.gw_none')));
    for (const g of gws) {
      gwList.append(h('li', { testid: 'estate-gateway', dataset: { gateway: g.id, connected: String(!!g.connected) } },
        h('b', null, g.id), ' ',
        h('span', { class: g.connected ? 'gw-on' : 'gw-off' }, g.connected ? t('estate.gw_connected') : t('estate.gw_disconnected')), ' · ',
        h('span', { class: 'muted' }, t('estate.gw_seen', { time: g.last_seen ? ctx.fmtTime(g.last_seen, id) : '—' })), ' · ',
        h('span', { class: 'muted' }, t('estate.gw_version', { v: g.software_version || '?' }))));
    }
  }

  // the incident view's labels when they are there (one wording on every page)
  function stateText(st) {
    const k = 'incident.state.' + st;
    const v = t(k);
    return v !== k ? v : t('istate.' + st);
  }

  function renderIncidents() {
    incList.textContent = '';
    const list = [...ctx.store.incidents.values()].filter((i) => i.estate === id)
      .sort((a, b) => String(a.priority).localeCompare(String(b.priority)) || Date.parse(b.opened_at) - Date.parse(a.opened_at));
    if (!list.length) incList.append(h('li', { class: 'muted' }, t('estate.no_incidents')));
    for (const i of list) {
      incList.append(h('li', { testid: 'estate-incident', dataset: { incidentId: i.id } },
        badge(t, i.priority), ' ',
        h('a', { href: '#/incidents/' + i.id }, `#${i.id} ${i.title}`), ' · ',
        h('span', null, stateText(i.state)), ' · ',
        h('span', { class: 'muted time' }, ctx.fmtTime(i.opened_at, id)),
        i.response_breached ? h('span', { class: 'flag' }, t('estate.breached')) : null));
    }
  }

  renderInfo();
  renderIncidents();
  table.update(null);
  const offs = [ctx.on('store', (kinds, detail) => {
    if (kinds.has('alarms')) table.update(detail && detail.alarmIds);
    if (kinds.has('incidents')) renderIncidents();
    if (kinds.has('estates')) { renderInfo(); table.update(null); }
  })];
  return { unmount() { offs.forEach((f) => f()); table.destroy(); } };
}
