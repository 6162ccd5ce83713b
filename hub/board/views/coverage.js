// Coverage board `#/coverage?estate=`: posts × shifts per estate (the shift running now:
// who is on post; the next shift: who is assigned), open gaps with their cover proposals
// (score breakdown, accept), a sick call, and handover sheets. Live on `coverage` events.
import { h as el, setText } from '../lib/dom.js';
import { coalesce, apiError } from './devices.js';

export const title = 'nav.coverage';

const STATUS_SYMBOL = { covered: '✔', short: '▲', empty: '✖', not_staffed: '–' };
const RULES = ['travel', 'overtime', 'fairness_hours', 'fairness_nights', 'familiarity', 'changes'];

function estateName(ctx, id) {
  const e = ctx.estates.get(id);
  return e && e.name ? e.name : id;
}

/** `HH:mm` of an RFC 3339 time in the estate's zone (the shell's formatter, cut). */
function hm(ctx, t, estate) {
  const s = ctx.fmtTime(t, estate);
  return s ? s.slice(11, 16) : '';
}

function shiftLabel(ctx, p) {
  if (!p.shift) return ctx.t('coverage.no_shift');
  const name = ctx.t('coverage.shift.' + p.shift) === 'coverage.shift.' + p.shift ? p.shift : ctx.t('coverage.shift.' + p.shift);
  return `${name} ${hm(ctx, p.shift_start, p.estate)}–${hm(ctx, p.shift_end, p.estate)}`;
}

export function mount(root, ctx, params) {
  const query = params.query || {};
  const estate = query.estate && ctx.estates.has(query.estate) ? query.estate : '';
  root.classList.add('b-view', 'b-coverage');
  let alive = true;

  const estSel = el('select', { testid: 'coverage-estate', onchange: () => ctx.navigate(estSel.value ? `#/coverage?estate=${encodeURIComponent(estSel.value)}` : '#/coverage') },
    el('option', { value: '' }, ctx.t('coverage.all_estates')),
    [...ctx.estates.keys()].map(id => el('option', { value: id, selected: id === estate }, estateName(ctx, id))));
  const summary = el('span', { class: 'b-count' });
  const note = el('p', { class: 'b-note', hidden: true });
  const grid = el('div', { class: 'b-cov-grid' });
  const gapsBox = el('div', { class: 'b-gaps' });
  const gapCount = el('span', { class: 'b-count' });
  const escalateBox = el('p', { class: 'b-note', hidden: true });
  const handBox = el('ul', { class: 'b-handovers' });
  const guardSel = el('select', { name: 'guard', required: true });
  const absReason = el('input', { name: 'reason', type: 'text', value: 'sick' });
  const absHours = el('input', { name: 'hours', type: 'number', min: 1, max: 336, placeholder: ctx.t('coverage.absence_hours_hint') });
  const absForm = el('form', { class: 'b-absence', testid: 'absence-form', onsubmit: e => { e.preventDefault(); recordAbsence(); } },
    el('label', null, ctx.t('coverage.guard'), ' ', guardSel), ' ',
    el('label', null, ctx.t('coverage.absence_reason'), ' ', absReason), ' ',
    el('label', null, ctx.t('coverage.absence_hours'), ' ', absHours), ' ',
    el('button', { class: 'b-btn', type: 'submit', testid: 'absence-submit' }, ctx.t('coverage.absence_record')));

  root.append(
    el('header', { class: 'b-head' }, el('h2', null, ctx.t('coverage.title')), ' ', summary,
      el('label', null, ctx.t('coverage.estate'), ' ', estSel), note),
    el('div', { class: 'b-cols' },
      el('div', { class: 'b-main' }, el('section', { class: 'b-panel' }, grid)),
      el('div', { class: 'b-side' },
        el('section', { class: 'b-panel' }, el('h3', null, ctx.t('coverage.gaps'), ' ', gapCount), escalateBox, gapsBox),
        el('section', { class: 'b-panel' }, el('h3', null, ctx.t('coverage.absence')), absForm),
        el('section', { class: 'b-panel' }, el('h3', null, ctx.t('coverage.handovers')), handBox))));

  // ------------------------------------------------ posts × shifts
  const blocks = new Map(); // estate → {node, head, body, rows: Map(post → tr)}
  function block(e) {
    let b = blocks.get(e);
    if (!b) {
      const head = el('span', { class: 'b-count' });
      const body = el('tbody');
      const node = el('section', { class: 'b-cov-estate', data: { estate: e } },
        el('h3', null, el('a', { href: `#/estates/${encodeURIComponent(e)}` }, estateName(ctx, e)), ' ', head),
        el('table', { class: 'b-table b-cov' },
          el('thead', null, el('tr', null, el('th', null, ctx.t('coverage.post')), el('th', null, ctx.t('coverage.now')), el('th', null, ctx.t('coverage.next')))),
          body));
      b = { node, head, body, rows: new Map() };
      blocks.set(e, b);
    }
    return b;
  }

  function cell(td, e, p, live) {
    const status = p ? p.status : 'not_staffed';
    td.dataset.testid = 'coverage-cell';
    td.dataset.estate = e;
    td.dataset.post = p ? p.post : '';
    td.dataset.status = status;
    td.dataset.basis = live ? 'present' : 'assigned';
    td.className = `b-cov-cell b-cov-${status}`;
    // Rebuild the cell only when what it shows changed (hundreds of cells per refresh).
    const sig = JSON.stringify(p ? [p.status, p.required, p.shift, p.shift_start, p.present, p.assigned, p.gap, live] : null) + ctx.lang;
    if (td.dataset.sig === sig) return;
    td.dataset.sig = sig;
    td.textContent = '';
    if (!p) { td.append(ctx.t('coverage.status.not_staffed')); return; }
    const people = live ? p.present : p.assigned;
    const count = live ? people.length : people.length;
    td.append(
      el('div', { class: 'b-cov-shift b-small b-muted' }, shiftLabel(ctx, p)),
      el('div', { class: 'b-cov-status' }, `${STATUS_SYMBOL[status] || ''} ${ctx.t('coverage.status.' + status)} ${count}/${p.required}`),
      el('div', { class: 'b-cov-who' }, people.length
        ? people.map(g => (g.name || g.guard) + (live && g.since ? ` (${ctx.t('coverage.since')} ${hm(ctx, g.since, e)})` : '')).join(', ')
        : '—'));
    if (live && p.assigned && p.assigned.length && p.status !== 'covered') {
      td.append(el('div', { class: 'b-small b-muted' }, `${ctx.t('coverage.assigned')}: ${p.assigned.map(g => g.name || g.guard).join(', ')}`));
    }
    if (live && p.gap) td.append(el('div', { class: 'b-small b-cov-gap' }, `⚠ ${ctx.t('coverage.gap_since')} ${hm(ctx, p.gap.since, e)}${p.gap.alarmed ? ' · ' + ctx.t('coverage.alarmed') : ''}`));
  }

  function renderGrid(now, next) {
    const nextBy = new Map();
    for (const e of next.estates || []) for (const p of e.posts) nextBy.set(e.estate + '|' + p.post, { ...p, estate: e.estate });
    const seen = new Set();
    let req = 0, cov = 0;
    // Estates short of guards first (what needs a decision on top), then by name.
    const order = (now.estates || []).slice().sort((a, b) => ((b.covered < b.required) - (a.covered < a.required))
      || String(estateName(ctx, a.estate)).localeCompare(String(estateName(ctx, b.estate))));
    for (const e of order) {
      const b = block(e.estate);
      seen.add(e.estate);
      grid.append(b.node);
      req += e.required; cov += e.covered;
      setText(b.head, `${e.covered}/${e.required}`);
      b.node.classList.toggle('b-cov-est-short', e.covered < e.required);
      for (const p0 of e.posts) {
        const p = { ...p0, estate: e.estate };
        let r = b.rows.get(p.post);
        if (!r) {
          r = el('tr', { data: { post: p.post } }, el('th', { class: 'b-cov-post' }), el('td'), el('td'));
          b.rows.set(p.post, r);
        }
        b.body.append(r);
        const th = r.children[0];
        th.textContent = '';
        th.append(el('div', null, p.post), el('div', { class: 'b-small b-muted' }, `${ctx.t('coverage.kind.' + p.kind) === 'coverage.kind.' + p.kind ? p.kind : ctx.t('coverage.kind.' + p.kind)}${p.area ? ' · ' + p.area : ''}`));
        cell(r.children[1], e.estate, p, true);
        cell(r.children[2], e.estate, nextBy.get(e.estate + '|' + p.post), false);
      }
    }
    for (const [k, b] of blocks) if (!seen.has(k)) { b.node.remove(); blocks.delete(k); }
    setText(summary, req ? `${ctx.t('coverage.covered')} ${cov}/${req}` : '');
  }

  // ------------------------------------------------ gaps and proposals
  async function accept(p) {
    const ok = await ctx.confirm(ctx.t('coverage.accept_confirm', { guard: p.guard_name || p.guard, post: p.gap.split('@')[0] }));
    if (!ok) return;
    try {
      await ctx.api.post(`/rota/proposals/${encodeURIComponent(p.id)}/accept`, { operator: ctx.operator });
      ctx.toast(ctx.t('coverage.accepted', { guard: p.guard_name || p.guard }));
    } catch (e) { apiError(ctx, e); }
    forceSolve = true;
    later();
  }

  function proposalNode(p) {
    const rules = p.rules || {};
    return el('li', { class: `b-proposal${p.recommended ? ' b-recommended' : ''}`, testid: 'proposal', data: { proposalId: p.id, recommended: String(!!p.recommended) } },
      el('div', null,
        el('strong', null, p.guard_name || p.guard), ' ',
        el('span', { class: 'b-tag' }, ctx.t('coverage.pkind.' + p.kind)), ' ',
        p.recommended ? el('span', { class: 'b-tag b-tag-strong' }, `★ ${ctx.t('coverage.recommended')}`) : null, ' ',
        el('span', { class: 'b-num' }, `${ctx.t('coverage.score')} ${p.score}`), ' ',
        el('button', { class: 'b-btn', testid: 'proposal-accept', onclick: () => accept(p) }, ctx.t('coverage.accept'))),
      el('div', { class: 'b-small b-muted' },
        p.from_post ? `${ctx.t('coverage.from_post')} ${p.from_post}${p.from_estate ? ' (' + estateName(ctx, p.from_estate) + ')' : ''} · ` : '',
        p.backfill ? `${ctx.t('coverage.backfill')} ${p.backfill} · ` : '',
        RULES.filter(k => rules[k]).map(k => `${ctx.t('coverage.rule.' + k)} ${rules[k]}`).join(' · ') || ctx.t('coverage.no_cost')));
  }

  function renderGaps(gaps, sol) {
    gapsBox.textContent = '';
    setText(gapCount, `(${gaps.length})`);
    const byGap = new Map();
    for (const p of (sol && sol.proposals) || []) {
      if (!byGap.has(p.gap)) byGap.set(p.gap, []);
      byGap.get(p.gap).push(p);
    }
    const esc = ((sol && sol.escalate) || []).filter(g => gaps.some(x => x.id === g));
    escalateBox.hidden = !esc.length;
    setText(escalateBox, esc.length ? `⚠ ${ctx.t('coverage.escalate', { n: esc.length })}` : '');
    for (const g of gaps) {
      const props = (byGap.get(g.id) || []).sort((a, b) => (b.recommended - a.recommended) || (a.rank - b.rank) || (a.score - b.score));
      gapsBox.append(el('div', { class: `b-gap${g.current ? ' b-gap-now' : ''}`, testid: 'gap', data: { gapId: g.id, estate: g.estate, post: g.post } },
        el('div', null,
          el('strong', null, `${estateName(ctx, g.estate)} · ${g.post}`), ' ',
          el('span', { class: 'b-muted' }, `${ctx.t('coverage.gapkind.' + g.kind)} · ${shiftLabel(ctx, g)}`), ' ',
          g.need > 0 ? el('span', { class: 'b-gap-need' }, `⚠ ${ctx.t('coverage.need', { n: g.need })}`) : el('span', null, `✔ ${ctx.t('coverage.cover_coming')}`),
          g.since ? el('span', { class: 'b-small b-muted' }, ` · ${ctx.t('coverage.gap_since')} ${hm(ctx, g.since, g.estate)}`) : null,
          g.en_route && g.en_route.length ? el('span', { class: 'b-small' }, ` · ${ctx.t('coverage.en_route')}: ${g.en_route.map(guardName).join(', ')}`) : null),
        props.length
          ? el('ol', { class: 'b-proposals' }, props.slice(0, 5).map(proposalNode))
          : g.need > 0 ? el('p', { class: 'b-muted b-small' }, sol ? ctx.t('coverage.no_proposal') : ctx.t('coverage.loading')) : null));
    }
    if (!gaps.length) gapsBox.append(el('p', { class: 'b-muted' }, ctx.t('coverage.no_gaps')));
  }

  // ------------------------------------------------ absences and handovers
  async function recordAbsence() {
    const guard = guardSel.value;
    if (!guard) { ctx.toast(ctx.t('coverage.pick_guard'), 'error'); return; }
    const body = { guard, operator: ctx.operator, reason: absReason.value.trim() || 'sick' };
    const h = Number(absHours.value);
    if (absHours.value && h > 0) body.until = new Date(Date.now() + h * 3600_000).toISOString();
    const name = guardSel.selectedOptions[0] ? guardSel.selectedOptions[0].textContent : guard;
    if (!(await ctx.confirm(ctx.t('coverage.absence_confirm', { guard: name })))) return;
    try {
      await ctx.api.post('/rota/absences', body);
      ctx.toast(ctx.t('coverage.absence_done', { guard: name }));
      absHours.value = '';
    } catch (e) { apiError(ctx, e); }
    forceSolve = true;
    later();
  }

  async function ackHandover(h) {
    const incoming = (h.sheet && h.sheet.incoming) || [];
    const first = incoming[0] ? (incoming[0].guard || incoming[0].id || incoming[0].name || incoming[0]) : '';
    const v = await ctx.form('coverage.handover_ack_title', [{ name: 'guard', label: 'coverage.guard', type: 'text', value: typeof first === 'string' ? first : '', required: true }]);
    if (!v) return;
    try {
      await ctx.api.post(`/rota/handovers/${h.id}/ack`, { guard: v.guard.trim() });
      ctx.toast(ctx.t('coverage.handover_acked'));
    } catch (e) { apiError(ctx, e); }
    later();
  }

  function people(list) {
    return (list || []).map(g => (typeof g === 'string' ? g : g.name || g.guard || g.id || '')).filter(Boolean).join(', ') || '—';
  }

  function renderHandovers(list) {
    handBox.textContent = '';
    for (const h of list) {
      const s = h.sheet || {};
      handBox.append(el('li', { class: `b-handover${h.acknowledged ? ' b-muted' : ''}`, testid: 'handover', data: { handoverId: h.id, acknowledged: String(h.acknowledged) } },
        el('div', null, el('strong', null, `${estateName(ctx, h.estate)} · ${h.post}`), ' ',
          el('span', { class: 'b-time' }, ctx.fmtTime(h.shift_start, h.estate)), ' ',
          h.acknowledged
            ? el('span', null, `✔ ${ctx.t('coverage.handover_acked_by', { guard: guardName(h.acked_by || '') })}`)
            : el('button', { class: 'b-btn', testid: 'handover-ack', onclick: () => ackHandover(h) }, ctx.t('coverage.handover_ack'))),
        el('div', { class: 'b-small' },
          `${ctx.t('coverage.outgoing')}: ${people((s.outgoing || []).map(guardName))} → ${ctx.t('coverage.incoming')}: ${people((s.incoming || []).map(guardName))}`),
        el('div', { class: 'b-small b-muted' },
          `${ctx.t('coverage.open_alarms')} ${(s.open_alarms || []).length} · ${ctx.t('coverage.faults')} ${(s.equipment_faults || []).length} · ${ctx.t('coverage.open_incidents')} ${(s.open_incidents || []).length} · ${ctx.t('coverage.notes')} ${(s.notes || []).length}`),
        (s.notes || []).slice(0, 3).map(n => el('div', { class: 'b-small' }, `✎ ${n.author || ''}: `, n.text || ''))));
    }
    if (!list.length) handBox.append(el('li', { class: 'b-muted' }, ctx.t('coverage.no_handovers')));
  }

  let guardsLoaded = false;
  const guardNames = new Map();
  const guardName = id => guardNames.get(id) || id;
  async function loadGuards() {
    try {
      const gs = await ctx.api.get('/rota/guards');
      if (!alive) return;
      const keep = guardSel.value;
      guardSel.textContent = '';
      guardSel.append(el('option', { value: '' }, ctx.t('coverage.pick_guard')));
      const list = gs.filter(g => !estate || g.home_estate === estate || (g.on_post && g.on_post.post) || g.floating);
      for (const g of gs) guardNames.set(g.id, g.name);
      for (const g of list.sort((a, b) => (b.on_post ? 1 : 0) - (a.on_post ? 1 : 0) || String(a.name).localeCompare(String(b.name)))) {
        guardSel.append(el('option', { value: g.id, selected: g.id === keep }, `${g.name} (${g.id})${g.on_post ? ' · ' + g.on_post.post : ''}${g.absent ? ' · ' + ctx.t('coverage.absent') : ''}`));
      }
      guardsLoaded = true;
    } catch (e) { if (e.status !== 404) apiError(ctx, e); }
  }

  let solving = false;
  async function refresh() {
    const q = estate ? { estate } : {};
    let now;
    try {
      now = await ctx.api.get('/coverage', q);
    } catch (e) {
      if (!alive) return;
      if (e.status === 404) { setText(note, ctx.t('coverage.no_rota')); note.hidden = false; return; }
      apiError(ctx, e); return;
    }
    // The next shift: shifts are 12 h, so 12 h on is the one after this.
    const at = new Date(Date.parse(now.at) + 12 * 3600_000).toISOString();
    const [next, gaps, hands] = await Promise.all([
      ctx.api.get('/coverage', { ...q, at }).catch(() => ({ estates: [] })),
      ctx.api.get('/rota/gaps', q).catch(e => { apiError(ctx, e); return []; }),
      ctx.api.get('/rota/handovers', { ...q, limit: 30 }).catch(() => []),
    ]);
    if (!guardsLoaded) await loadGuards();
    if (!alive) return;
    note.hidden = true;
    renderGrid(now, next);
    renderHandovers(hands);
    renderGaps(gaps, lastSol);
    const solKey = gaps.map(g => `${g.id}:${g.need}`).join(',');
    const stale = solKey !== lastSolKey || Date.now() - lastSolAt > 15_000 || forceSolve;
    if (gaps.length && !solving && stale) {
      solving = true;
      lastSolKey = solKey;
      lastSolAt = Date.now();
      forceSolve = false;
      try {
        // One solve covers every gap together (the joint optimum); a single gap asks `?gap=`.
        lastSol = await ctx.api.get('/rota/proposals', gaps.length === 1 ? { gap: gaps[0].id } : {});
        if (alive) renderGaps(gaps, lastSol);
      } catch (e) { if (alive && e.status !== 404) apiError(ctx, e); } finally { solving = false; }
    }
  }
  let lastSol = null;
  // Solving is the costly read (every open gap at once): again only when the gaps changed,
  // after an operator's action, or every 15 s (guards' hours and positions move on).
  let lastSolKey = '';
  let lastSolAt = 0;
  let forceSolve = false;
  const later = coalesce(refresh, 700);
  const offs = [ctx.on('coverage', () => { later(); }), ctx.on('reset', later)];
  const timer = setInterval(() => { if (!document.hidden) later(); }, 60_000);
  later();
  return { unmount() { alive = false; later.cancel(); clearInterval(timer); offs.forEach(f => f && f()); } };
}
