// Region overview: one small tile per estate, worst first. Tiles are kept in a Map and
// only the ones whose summary changed are touched; the order is fixed with minimal moves.
import { h, setText, setAttr, reorder, debounce } from '../lib/dom.js';
import { PRIORITIES, SYMBOL, RANK, needsAck, badge, updateBadge, syncFlash } from '../lib/prio.js';

export const title = 'nav.overview';

function summarise(ctx) {
  const by = new Map();
  for (const id of ctx.estates.keys()) by.set(id, { n: { P1: 0, P2: 0, P3: 0, P4: 0 }, un: { P1: 0, P2: 0, P3: 0, P4: 0 }, unack: 0, worst: null });
  for (const a of ctx.store.alarms.values()) {
    let s = by.get(a.estate);
    if (!s) continue;
    // worst *active* alarm, not taken out of view by shelving/suppression/out-of-service
    if (a.active && !a.shelved && !a.suppressed && !a.out_of_service) {
      if (s.n[a.priority] != null) s.n[a.priority]++;
      if (!s.worst || RANK[a.priority] < RANK[s.worst]) s.worst = a.priority;
      if (!a.acknowledged && s.un[a.priority] != null) s.un[a.priority]++;
    }
    if (needsAck(a)) s.unack++;
  }
  return by;
}

export function mount(root, ctx) {
  const t = ctx.t;
  const tiles = new Map();
  let coverage = null;      // Map estate → {required, covered, gaps} | 'none' when the rota is off
  const summary = h('div', { class: 'summary' });
  const grid = h('div', { class: 'tiles' });
  root.append(h('h1', null, t('overview.title')), summary, grid);

  function tile(id) {
    let x = tiles.get(id);
    if (x) return x;
    const b = badge(t, null);
    const node = h('a', { class: 'tile', href: '#/estates/' + encodeURIComponent(id), testid: 'estate-tile', dataset: { estate: id } },
      h('div', { class: 'tile-name' }),
      h('div', { class: 'tile-row' }, b, h('span', { class: 'tile-unack' })),
      h('div', { class: 'tile-row tile-counts' }),
      h('div', { class: 'tile-row' }, h('span', { class: 'tile-gw' })),
      h('div', { class: 'tile-row' }, h('span', { class: 'tile-cov' })));
    x = { node, badge: b, name: node.children[0], unack: node.querySelector('.tile-unack'), counts: node.children[2], gw: node.querySelector('.tile-gw'), cov: node.querySelector('.tile-cov'), sig: '' };
    tiles.set(id, x);
    return x;
  }

  function render() {
    const sums = summarise(ctx);
    const order = [];
    let gwDown = 0, withAlarms = 0;
    for (const [id, e] of ctx.estates) {
      const s = sums.get(id);
      const gws = e.gateways || [];
      const down = gws.filter((g) => !g.connected).length;
      if (down || !gws.length) gwDown++;
      if (s.worst) withAlarms++;
      const cov = coverage === 'none' ? null : coverage && coverage.get(id);
      const sig = JSON.stringify([e.name, s, down, gws.length, cov, coverage === null ? 0 : coverage === 'none' ? 1 : 2]);
      const x = tile(id);
      order.push({ id, name: e.name || id, rank: s.worst ? RANK[s.worst] : 9, unack: s.unack, x });
      if (sig === x.sig) continue;
      x.sig = sig;
      setAttr(x.node, 'data-worst', s.worst || 'none');
      setText(x.name, e.name || id);
      setAttr(x.name, 'title', `${e.name} (${id})`);
      updateBadge(t, x.badge, s.worst);
      // the worst band flashes while one of its alarms waits for an acknowledgement
      const unackWorst = !!s.worst && s.un[s.worst] > 0;
      if (unackWorst && !x.badge.classList.contains('flash')) { syncFlash(x.badge); x.badge.classList.add('flash'); }
      if (!unackWorst) x.badge.classList.remove('flash');
      setText(x.unack, s.unack ? t('overview.unack', { n: s.unack }) : '');
      setText(x.counts, PRIORITIES.map((p) => `${SYMBOL[p]}${p} ${s.n[p]}`).join('  '));
      x.gw.className = 'tile-gw ' + (down || !gws.length ? 'gw-off' : 'gw-on');
      setText(x.gw, !gws.length ? t('overview.gw_none') : down ? t('overview.gw_down', { n: down, of: gws.length }) : t('overview.gw_up'));
      if (coverage === 'none') setText(x.cov, '');
      else if (!cov) setText(x.cov, coverage ? t('overview.cov_none') : '…');
      else {
        x.cov.className = 'tile-cov' + (cov.gaps ? ' cov-gap' : '');
        setText(x.cov, t('overview.cov', { covered: cov.covered, required: cov.required }) + (cov.gaps ? ' · ' + t('overview.gaps', { n: cov.gaps }) : ''));
      }
    }
    order.sort((a, b) => a.rank - b.rank || String(a.name).localeCompare(String(b.name)));
    for (const id of [...tiles.keys()]) if (!ctx.estates.has(id)) tiles.delete(id);
    reorder(grid, order.map((o) => o.x.node));
    setText(summary, [t('overview.estates', { n: ctx.estates.size }), t('overview.with_alarms', { n: withAlarms }), t('overview.gw_problem', { n: gwDown })].join(' · '));
  }

  async function loadCoverage() {
    try {
      const c = await ctx.api.get('/coverage');
      const m = new Map();
      for (const e of c.estates || []) {
        const gaps = (e.posts || []).filter((p) => p.gap || p.status === 'empty' || p.status === 'short').length;
        m.set(e.estate, { required: e.required, covered: e.covered, gaps });
      }
      coverage = m;
    } catch (e) {
      coverage = e.status === 404 ? 'none' : coverage;
    }
    render();
  }
  const coverageSoon = debounce(loadCoverage, 1500);

  let scheduled = false;
  const renderSoon = () => { if (!scheduled) { scheduled = true; requestAnimationFrame(() => { scheduled = false; render(); }); } };

  render();
  loadCoverage();
  const covTimer = setInterval(loadCoverage, 60000);
  const offs = [
    ctx.on('store', (kinds) => { if (kinds.has('alarms') || kinds.has('estates')) renderSoon(); }),
    ctx.on('coverage', coverageSoon),
    ctx.on('reset', coverageSoon),
  ];
  return { unmount() { offs.forEach((f) => f()); clearInterval(covTimer); coverageSoon.cancel(); } };
}
