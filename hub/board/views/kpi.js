// KPIs (#/kpi): ISA-18.2 alarm-system measures and post coverage, drawn as inline SVG.
// GET /kpi/alarms and /kpi/coverage answer totals; the alarms-per-hour bars are counted
// here from the alarm list (GET /alarms, first raise time), which is what the API offers.
import { h } from '../lib/dom.js';
import { columns, bars } from '../lib/svg.js';
import { SYMBOL } from '../lib/prio.js';
import { toMs } from '../lib/time.js';

export const title = 'nav.kpi';
const HOURS = 24;
const pct = (x) => `${Math.round(x * 1000) / 10} %`;

export function mount(root, ctx) {
  const t = ctx.t;
  const head = h('div', { class: 'atoolbar' }, h('h1', null, t('kpi.title', { h: HOURS })),
    h('button', { class: 'btn btn-small', type: 'button', onclick: () => load() }, t('kpi.refresh')));
  const figures = h('div', { class: 'panel kpi-figures' });
  const grid = h('div', { class: 'kpis' });
  root.append(head, figures, grid);
  let alive = true;

  function card(name, titleKey, note, ...content) {
    return h('div', { class: 'panel kpi-chart', testid: 'kpi-chart', dataset: { kpi: name } },
      h('h2', null, t(titleKey)), note ? h('div', { class: 'muted' }, note) : null, ...content);
  }
  const fig = (label, value, ok) => h('span', null, t(label), ': ', h('b', { class: ok === false ? 'cov-gap' : '' }, value));
  const est = (id) => ctx.estates.get(id)?.name || id;

  async function load() {
    const [ka, kc, list, cov] = await Promise.all([
      ctx.api.get('/kpi/alarms', { hours: HOURS }).catch((e) => ({ error: e })),
      ctx.api.get('/kpi/coverage', { hours: HOURS }).catch((e) => ({ error: e })),
      ctx.api.get('/alarms', { limit: 5000 }).catch(() => []),
      ctx.api.get('/coverage').catch(() => null),
    ]);
    if (!alive) return;
    figures.textContent = '';
    grid.textContent = '';

    if (ka.error) {
      grid.append(h('p', { class: 'note error' }, t('shell.load_failed', { error: ka.error.message })));
    } else {
      const per10 = ka.alarms_per_10_minutes, target10 = ka.target_per_10_minutes;
      figures.append(
        fig('kpi.alarms_total', String(ka.alarms)),
        fig('kpi.per10', `${Math.round(per10 * 100) / 100} / ${target10}`, per10 <= target10),
        fig('kpi.flood_share', `${pct(ka.flood.share_of_time)} (${t('kpi.target')} < ${pct(ka.flood.target_share)})`, ka.flood.share_of_time <= ka.flood.target_share),
        fig('kpi.standing', String(ka.standing_over_24h.count), ka.standing_over_24h.count === 0));

      // alarms per hour, with the ISA-18.2 "acceptable" rate (1 per 10 min = 6 per hour)
      const now = Date.now();
      const start = Math.floor(now / 3600000) * 3600000 - (HOURS - 1) * 3600000;
      const buckets = Array.from({ length: HOURS }, (_, i) => ({ at: start + i * 3600000, value: 0 }));
      for (const a of list) {
        const ms = toMs(a.raised_at);
        const i = Math.floor((ms - start) / 3600000);
        if (i >= 0 && i < HOURS) buckets[i].value++;
      }
      grid.append(card('alarms-per-hour', 'kpi.per_hour', t('kpi.per_hour_note'),
        columns(buckets.map((b) => ({ label: ctx.fmtTime(b.at).slice(11, 13), value: b.value, title: `${ctx.fmtTime(b.at).slice(0, 16)}: ${b.value}` })),
          { target: { value: target10 * 6, label: t('kpi.acceptable', { n: target10 * 6 }) }, labelEvery: 2 })));

      // priority mix against the ISA-18.2 80/15/5 guide (P1 ≈ 5 %, P2 ≈ 15 %, P3+P4 ≈ 80 %)
      const mix = ka.priority_mix;
      const share = (p) => (mix[p] ? mix[p].share : 0);
      const count = (p) => (mix[p] ? mix[p].count : 0);
      const groups = [
        { label: `${SYMBOL.P1} P1 ${t('prio.P1')}`, value: share('P1'), target: 0.05, n: count('P1'), fill: 'var(--p1)' },
        { label: `${SYMBOL.P2} P2 ${t('prio.P2')}`, value: share('P2'), target: 0.15, n: count('P2'), fill: 'var(--p2)' },
        { label: `${SYMBOL.P3}${SYMBOL.P4} P3+P4`, value: share('P3') + share('P4'), target: 0.8, n: count('P3') + count('P4'), fill: 'var(--p4)' },
      ];
      grid.append(card('priority-mix', 'kpi.mix', t('kpi.mix_note'),
        bars(groups.map((g) => ({ ...g, text: `${pct(g.value)} (${g.n}) · ${t('kpi.target')} ${pct(g.target)}`, title: `${g.label}: ${pct(g.value)}` })),
          { max: 1, labelWidth: 110, fmt: pct, textRoom: 200 })));

      const top = ka.top_ten || [];
      grid.append(card('top-ten', 'kpi.top', null, top.length
        ? bars(top.map((x) => ({ label: `${est(x.estate)} · ${x.device}`, value: x.activations, text: `${x.activations} · ${x.priority} ${x.message || x.condition}`, title: `#${x.alarm_id} ${x.message}` })), { labelWidth: 190, width: 620, textRoom: 230 })
        : h('p', { class: 'muted' }, t('kpi.none'))));
    }

    if (kc.error) {
      grid.append(card('coverage-share', 'kpi.coverage', kc.error.status === 404 ? t('kpi.no_rota') : t('shell.load_failed', { error: kc.error.message })));
    } else {
      figures.append(
        fig('kpi.coverage_share', pct(kc.coverage_share), kc.coverage_share >= 0.99),
        fig('kpi.patrols', `${pct(kc.patrols.on_time_share)} (${kc.patrols.on_time}/${kc.patrols.finished})`, kc.patrols.on_time_share >= 0.95));
      const per = [];
      if (cov && cov.estates) {
        for (const e of cov.estates) per.push({ label: est(e.estate), value: e.required ? e.covered / e.required : 1, text: `${e.covered}/${e.required}` });
      }
      grid.append(card('coverage-share', 'kpi.coverage', t('kpi.coverage_note', { share: pct(kc.coverage_share), req: kc.post_hours_required, un: kc.post_hours_uncovered }),
        per.length ? bars(per.map((p) => ({ ...p, over: p.value < 1 })), { max: 1, fmt: pct }) : h('p', { class: 'muted' }, t('kpi.none'))));
      const gaps = kc.gaps_by_estate || [];
      grid.append(card('gaps-by-estate', 'kpi.gaps', null, gaps.length
        ? bars(gaps.map((g) => ({ label: est(g.estate), value: g.hours, text: t('kpi.gap_text', { n: g.gaps, h: g.hours }), over: true })), { fmt: (x) => `${x} h` })
        : h('p', { class: 'muted' }, t('kpi.no_gaps'))));
    }
  }

  load().catch((e) => ctx.toast(t('shell.load_failed', { error: e.message }), 'error'));
  const timer = setInterval(() => load().catch(() => {}), 60000);
  return { unmount() { alive = false; clearInterval(timer); } };
}
