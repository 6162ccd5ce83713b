// Incident view: `#/incidents` (open and recent incidents) and `#/incidents/<id>` (header,
// timeline — newest at the top —, procedure checklist, escalation with a live countdown,
// the legal transitions, notifications and how each was delivered and answered, linked
// alarms, commands to the incident's devices).
import { h as el, setText } from '../lib/dom.js';
import { prioBadge, coalesce, apiError, sendCommandDialog, CommandList } from './devices.js';

export const title = 'nav.incidents';

// Notifications shown before "show all".
const NOTIF_ROWS = 50;

// States with no way out; which transitions are legal otherwise comes from the hub (`next`).
const TERMINAL = new Set(['closed', 'false_alarm']);

function estateName(ctx, id) {
  const e = ctx.estates.get(id);
  return e && e.name ? e.name : id;
}

function stateText(ctx, s) {
  return ctx.t('incident.state.' + s);
}

export function mount(root, ctx, params) {
  const path = (params.path || []).slice();
  if (path[0] === 'incidents') path.shift();
  root.classList.add('b-view', 'b-incidents');
  const id = path.length ? Number(path[0]) : NaN;
  if (Number.isInteger(id) && id > 0) return mountDetail(root, ctx, id);
  return mountList(root, ctx, params.query || {});
}

// ---------------------------------------------------------------- list

function mountList(root, ctx, query) {
  const estate = query.estate && ctx.estates.has(query.estate) ? query.estate : '';
  const openBody = el('tbody');
  const recentBody = el('tbody');
  const head = () => el('thead', null, el('tr', null,
    ['id', 'priority', 'estate', 'area', 'category', 'title', 'state', 'opened', 'response'].map(k => el('th', null, ctx.t('incident.col.' + k)))));
  const openCount = el('span', { class: 'b-count' });
  root.append(
    el('header', { class: 'b-head' }, el('h2', null, ctx.t('incident.title')),
      estate ? el('span', { class: 'b-filter' }, `${ctx.t('incident.col.estate')}: ${estateName(ctx, estate)} `, el('a', { href: '#/incidents' }, ctx.t('incident.all_estates'))) : null),
    el('section', { class: 'b-panel' }, el('h3', null, ctx.t('incident.open'), ' ', openCount), el('table', { class: 'b-table b-inc-table' }, head(), openBody)),
    el('section', { class: 'b-panel' }, el('h3', null, ctx.t('incident.recent')), el('table', { class: 'b-table b-inc-table' }, head(), recentBody)));
  const rows = new Map();
  let alive = true;

  function row(i) {
    let r = rows.get(i.id);
    if (!r) {
      r = el('tr', { testid: 'incident-row', class: 'b-row b-click', data: { incidentId: i.id }, tabindex: 0,
        onclick: () => ctx.navigate(`#/incidents/${i.id}`),
        onkeydown: e => { if (e.key === 'Enter') ctx.navigate(`#/incidents/${i.id}`); } },
      el('td', { class: 'b-num' }, el('a', { href: `#/incidents/${i.id}` }, `#${i.id}`)),
      el('td'), el('td'), el('td'), el('td'), el('td'), el('td'), el('td', { class: 'b-time' }), el('td'));
      rows.set(i.id, r);
    }
    const c = r.children;
    if (c[1].dataset.p !== i.priority) { c[1].textContent = ''; c[1].append(prioBadge(i.priority)); c[1].dataset.p = i.priority; }
    setText(c[2], estateName(ctx, i.estate));
    setText(c[3], i.area);
    setText(c[4], ctx.t('incident.category.' + i.category));
    setText(c[5], i.title);
    setText(c[6], stateText(ctx, i.state));
    r.dataset.state = i.state;
    setText(c[7], ctx.fmtTime(i.opened_at, i.estate));
    const breached = i.response_breached && !i.on_site_at;
    setText(c[8], TERMINAL.has(i.state) ? (i.closed_at ? `${ctx.t('incident.closed_at')} ${ctx.fmtTime(i.closed_at, i.estate)}` : '') : i.on_site_at ? `✔ ${ctx.t('incident.on_site_done')}` : `${breached ? '⚠ ' + ctx.t('incident.breached') + ' ' : ''}${ctx.t('incident.due')} ${ctx.fmtTime(i.response_due_at, i.estate)}`);
    r.classList.toggle('b-breached', !!breached);
    return r;
  }

  async function refresh() {
    const q = estate ? { estate } : {};
    let open, recent;
    try {
      [open, recent] = await Promise.all([
        ctx.api.get('/incidents', { ...q, open: true }),
        ctx.api.get('/incidents', { ...q, open: false, limit: 50 }),
      ]);
    } catch (e) { if (alive) apiError(ctx, e); return; }
    if (!alive) return;
    const seen = new Set();
    for (const [list, body] of [[open, openBody], [recent, recentBody]]) {
      for (const i of list) { seen.add(i.id); body.append(row(i)); }
      if (!list.length && !body.querySelector('.b-empty')) body.append(el('tr', { class: 'b-empty' }, el('td', { colspan: 9, class: 'b-muted' }, ctx.t('incident.none'))));
      if (list.length) body.querySelectorAll('.b-empty').forEach(n => n.remove());
    }
    for (const [k, r] of rows) if (!seen.has(k)) { r.remove(); rows.delete(k); }
    setText(openCount, `(${open.length})`);
  }
  const later = coalesce(refresh, 400);
  const offs = [ctx.on('incident', later), ctx.on('reset', later)];
  // Response-due flags change with time alone.
  const timer = setInterval(() => { if (!document.hidden) later(); }, 30_000);
  later();
  return { unmount() { alive = false; later.cancel(); clearInterval(timer); offs.forEach(f => f && f()); } };
}

// ---------------------------------------------------------------- detail

function countdownText(ms) {
  const neg = ms < 0;
  let s = Math.floor(Math.abs(ms) / 1000);
  const h = Math.floor(s / 3600); s -= h * 3600;
  const m = Math.floor(s / 60); s -= m * 60;
  const two = n => String(n).padStart(2, '0');
  return `${neg ? '−' : ''}${h ? h + ':' : ''}${two(m)}:${two(s)}`;
}

function mountDetail(root, ctx, id) {
  let inc = null;
  let alive = true;
  const hdrTitle = el('h2');
  const hdrMeta = el('div', { class: 'b-meta-line' });
  // The label in the operator's language, and the state's code (what `incident-state` holds).
  const stateLabel = el('span', { class: 'b-state' });
  const stateEl = el('code', { class: 'b-state-code', testid: 'incident-state' });
  const transitions = el('div', { class: 'b-actions' });
  const steps = el('ol', { class: 'b-steps' });
  const escBox = el('div', { class: 'b-esc' });
  const countdown = el('span', { class: 'b-countdown', testid: 'escalation-countdown' });
  const countdownWhat = el('span', { class: 'b-muted' });
  const escList = el('table', { class: 'b-table b-small' });
  const notifBody = el('tbody');
  let notifShowAll = false;
  const alarmsBody = el('tbody');
  const timeline = el('ol', { class: 'b-timeline' });
  const cmds = new CommandList(ctx, c => c.incident_id === id);
  const cmdBtn = el('button', { class: 'b-btn b-btn-cmd', testid: 'incident-command', onclick: sendCommand }, ctx.t('incident.command'));
  const tlNodes = new Map();
  let devices = [];
  let devicesKey = '';
  let nextDue = null;

  root.append(
    el('nav', { class: 'b-crumbs' }, el('a', { href: '#/incidents' }, `← ${ctx.t('incident.title')}`)),
    el('header', { class: 'b-head b-inc-head' }, hdrTitle, stateLabel, stateEl, hdrMeta),
    el('div', { class: 'b-cols' },
      el('div', { class: 'b-main' },
        el('section', { class: 'b-panel' }, el('h3', null, ctx.t('incident.actions')), transitions),
        el('section', { class: 'b-panel' }, el('h3', null, ctx.t('incident.procedure')), steps),
        el('section', { class: 'b-panel' },
          el('h3', null, ctx.t('incident.escalation')),
          el('p', { class: 'b-esc-next' }, ctx.t('incident.next_step'), ' ', countdown, ' ', countdownWhat),
          escBox, escList),
        el('section', { class: 'b-panel' },
          el('h3', null, ctx.t('incident.notifications'), ' ', el('span', { class: 'b-muted b-small' }, ctx.t('incident.newest_first'))),
          el('table', { class: 'b-table b-small b-notif-table', testid: 'notifications' },
            el('thead', null, el('tr', null,
              el('th', null, ctx.t('incident.notif_col.recipient')),
              el('th', null, ctx.t('incident.notif_col.channel')),
              el('th', null, ctx.t('incident.notif_col.state')),
              el('th', null, ctx.t('incident.notif_col.attempts')),
              el('th', null, ctx.t('incident.notif_col.answer')))),
            notifBody)),
        el('section', { class: 'b-panel' }, el('h3', null, ctx.t('incident.alarms')),
          el('table', { class: 'b-table' }, el('thead', null, el('tr', null,
            ['priority', 'device', 'message', 'state', 'raised'].map(k => el('th', null, ctx.t('incident.alarm_col.' + k))))), alarmsBody)),
        el('section', { class: 'b-panel' }, el('h3', null, ctx.t('incident.commands'), ' ', cmdBtn), cmds.root)),
      el('section', { class: 'b-panel b-side' }, el('h3', null, ctx.t('incident.timeline'), ' ', el('span', { class: 'b-muted b-small' }, ctx.t('incident.newest_first'))), timeline)));

  async function sendCommand() {
    if (!devices.length) { ctx.toast(ctx.t('incident.no_devices'), 'error'); return; }
    const c = await sendCommandDialog(ctx, devices, id);
    if (c) { cmds.put(c, true); ctx.toast(ctx.t('device.command_sent', { id: c.id })); }
  }

  async function act(fn) {
    try {
      const d = await fn();
      if (d && d.id === id) render(d); else later();
      return true;
    } catch (e) {
      apiError(ctx, e);
      later();
      return false;
    }
  }

  /** Closing needs a supervisor's override while mandatory steps are open or alarms active. */
  async function overrideClose(body, why) {
    ctx.toast(why, 'error');
    const o = await ctx.form('incident.override_title', [
      { name: 'supervisor', label: 'incident.supervisor', type: 'text', required: true },
      { name: 'reason', label: 'incident.reason', type: 'textarea', required: true },
    ]);
    if (!o) return;
    await act(() => ctx.api.post(`/incidents/${id}/transition`, { ...body, override: { supervisor: o.supervisor.trim(), reason: o.reason.trim() } }));
  }

  async function transition(to) {
    const fields = [];
    if (to === 'false_alarm') fields.push({ name: 'reason', label: 'incident.reason', type: 'textarea', required: true });
    if (to === 'on_site') fields.push({ name: 'actor', label: 'incident.on_site_who', type: 'text', value: ctx.operator, required: true });
    fields.push({ name: 'note', label: 'incident.note', type: 'textarea' });
    const v = await ctx.form('incident.transition_' + to, fields);
    if (!v) return;
    const body = { to, actor: (v.actor && v.actor.trim()) || ctx.operator };
    if (v.note && v.note.trim()) body.note = v.note.trim();
    if (v.reason && v.reason.trim()) body.reason = v.reason.trim();
    if (to === 'closed' && inc) {
      // Known blockers go straight to the override (the hub checks again and answers 409).
      const steps = (inc.procedure || []).filter(x => x.mandatory && x.status === 'open').map(x => x.step_id);
      const alarms = (inc.alarms || []).filter(a => a.active).map(a => '#' + a.id);
      if (steps.length || alarms.length) {
        await overrideClose(body, ctx.t('incident.close_blocked', { steps: steps.join(', ') || '–', alarms: alarms.join(', ') || '–' }));
        return;
      }
    }
    try {
      render(await ctx.api.post(`/incidents/${id}/transition`, body));
    } catch (e) {
      if (to === 'closed' && e.status === 409 && /close/i.test(e.message || '')) {
        await overrideClose(body, e.message);
        return;
      }
      apiError(ctx, e);
      later();
    }
  }

  async function stepDone(step, skip) {
    const v = await ctx.form(skip ? 'incident.step_skip_title' : 'incident.step_done_title', [
      skip
        ? { name: 'note', label: 'incident.skip_reason', type: 'textarea', required: true }
        : { name: 'note', label: 'incident.note', type: 'textarea' },
    ]);
    if (!v) return;
    const body = { actor: ctx.operator };
    if (v.note && v.note.trim()) body.note = v.note.trim();
    if (skip) body.skipped = true;
    await act(() => ctx.api.post(`/incidents/${id}/steps/${encodeURIComponent(step.step_id)}/done`, body));
  }

  function renderTransitions(d) {
    transitions.textContent = '';
    // Where the incident stands on the workflow's path (the current state framed).
    const path = ['discovered', 'assessed', 'reported', 'on_site', 'recorded', 'closed'];
    const at = d.state === 'false_alarm' ? 1 : path.indexOf(d.state);
    transitions.append(el('ol', { class: 'b-flow' }, path.map((st, i) => el('li', {
      class: st === d.state ? 'b-flow-now' : i < at ? 'b-flow-past' : '',
    }, stateText(ctx, st))), d.state === 'false_alarm' ? el('li', { class: 'b-flow-now' }, stateText(ctx, 'false_alarm')) : null));
    // The hub says which transitions the workflow allows from here (`next`).
    const next = d.next || [];
    for (const to of next) {
      transitions.append(el('button', { class: `b-btn b-tr-${to}`, testid: `transition-${to}`, onclick: () => transition(to) },
        `→ ${ctx.t('incident.transition_' + to)}`));
    }
    if (!next.length) transitions.append(el('span', { class: 'b-muted' }, ctx.t('incident.terminal')));
    if (d.false_alarm_reason) transitions.append(el('p', null, `${ctx.t('incident.reason')}: `, d.false_alarm_reason));
    if (d.override_by) transitions.append(el('p', null, `${ctx.t('incident.override_by')}: ${d.override_by} — `, d.override_reason || ''));
  }

  function renderSteps(d) {
    steps.textContent = '';
    const closed = TERMINAL.has(d.state);
    for (const s of d.procedure || []) {
      const done = s.status !== 'open';
      const li = el('li', { class: `b-step b-step-${s.status}`, testid: 'step', data: { stepId: s.step_id, done: String(done), status: s.status } },
        el('span', { class: 'b-step-mark' }, s.status === 'done' ? '☑' : s.status === 'skipped' ? '⊘' : '☐'), ' ',
        el('span', { class: 'b-step-text' }, s.text), ' ',
        s.mandatory ? el('span', { class: 'b-tag' }, ctx.t('incident.mandatory')) : null,
        done ? el('span', { class: 'b-muted b-small b-step-by' }, ` ${ctx.t('incident.step.' + s.status)} · ${s.done_by || ''}${s.note ? ' · ' : ''}`, s.note || '') : null,
        !done && !closed ? el('span', { class: 'b-step-btns' },
          el('button', { class: 'b-btn', testid: 'step-done', onclick: () => stepDone(s, false) }, ctx.t('incident.step_done')),
          el('button', { class: 'b-btn b-btn-quiet', testid: 'step-skip', onclick: () => stepDone(s, true) }, ctx.t('incident.step_skip'))) : null);
      steps.append(li);
    }
    if (!(d.procedure || []).length) steps.append(el('li', { class: 'b-muted' }, ctx.t('incident.no_procedure')));
  }

  function renderEscalation(d) {
    const esc = d.escalation || { steps: [] };
    const all = [...(esc.steps || []), ...(d.timers || [])];
    const pending = all.filter(t => !t.outcome && !t.fired_at).sort((a, b) => Date.parse(a.due_at) - Date.parse(b.due_at));
    nextDue = !TERMINAL.has(d.state) && pending.length ? pending[0] : null;
    setText(countdownWhat, nextDue ? `${nextDue.kind === 'escalation' ? ctx.t('incident.esc_step', { step: nextDue.step + 1, role: nextDue.role ? ctx.t('incident.role.' + nextDue.role) : '' }) : ctx.t('incident.timer.' + nextDue.kind)} · ${ctx.fmtTime(nextDue.due_at, d.estate)}` : '');
    tick();
    escBox.textContent = '';
    escBox.append(el('span', null, `${ctx.t('incident.esc_run')} ${esc.run ?? ''}`));
    escList.textContent = '';
    escList.append(el('thead', null, el('tr', null, ['step', 'role', 'due', 'outcome'].map(k => el('th', null, ctx.t('incident.esc_col.' + k))))));
    const body = el('tbody');
    for (const t of all.sort((a, b) => Date.parse(a.due_at) - Date.parse(b.due_at))) {
      body.append(el('tr', { class: t.outcome ? 'b-muted' : '' },
        el('td', null, t.kind === 'escalation' ? `${esc.run === t.run ? '' : 'r' + t.run + ' '}${t.step + 1}${t.attempt > 1 ? ' ×' + t.attempt : ''}` : ctx.t('incident.timer.' + t.kind)),
        el('td', null, t.role ? ctx.t('incident.role.' + t.role) : (t.condition || '')),
        el('td', { class: 'b-time' }, ctx.fmtTime(t.due_at, d.estate)),
        el('td', null, t.outcome ? outcomeText(t.outcome) : (t.fired_at ? ctx.t('incident.fired') : ctx.t('incident.pending')))));
    }
    escList.append(body);
    renderNotifications(d);
  }

  // One row per notification, newest first: who (and in which role), the channel, the
  // delivery state in words with its time, attempts, and the recipient's answer. State is
  // text only (colour on this board means priority): a failure is bold with ⚠, settled
  // states muted.
  function renderNotifications(d) {
    notifBody.textContent = '';
    const all = (d.notifications || []).slice().sort((a, b) => b.id - a.id);
    // A long escalation or a flood can queue hundreds: the newest fit, the rest are counted
    // and one click away.
    const list = notifShowAll ? all : all.slice(0, NOTIF_ROWS);
    for (const n of list) {
      const failing = n.status === 'failed' || (n.status === 'pending' && !!n.last_error && !n.held);
      const settled = ['sent', 'delivered', 'digested'].includes(n.status);
      notifBody.append(el('tr', {
        class: `b-notif${failing ? ' b-notif-failed' : ''}${settled ? ' b-muted' : ''}`,
        testid: 'notification-row',
        data: { notificationId: n.id, status: n.status, held: n.held || null, answer: n.answer || null, role: n.role },
      },
      el('td', null, n.recipient || '', n.role ? el('span', { class: 'b-muted' }, ` (${roleText(n.role)})`) : null),
      el('td', { testid: 'notification-channel' }, channelText(n.channel)),
      el('td', { testid: 'notification-state' }, notifStateText(n, d.estate)),
      el('td', { class: 'b-num' }, String(n.attempts ?? 0)),
      el('td', { testid: 'notification-answer' }, answerText(n, d.estate))));
    }
    if (all.length > list.length) {
      notifBody.append(el('tr', { testid: 'notifications-more' }, el('td', { colspan: 5, class: 'b-muted' },
        ctx.t('incident.notif.more', { n: all.length - list.length }), ' ',
        el('button', { class: 'b-btn b-btn-quiet', onclick: () => { notifShowAll = true; if (inc) renderNotifications(inc); } }, ctx.t('incident.notif.show_all')))));
    }
    if (!all.length) notifBody.append(el('tr', { class: 'b-empty' }, el('td', { colspan: 5, class: 'b-muted' }, ctx.t('incident.none'))));
  }

  function roleText(role) {
    const k = 'incident.role.' + role;
    const s = ctx.t(k);
    return s === k ? role : s;
  }

  // `robot:<name>`: the robot's configured name as it is; the others as words.
  function channelText(c) {
    if (typeof c === 'string' && c.startsWith('robot:')) return c.slice(6);
    switch (c) {
      case 'email': return ctx.t('incident.channel.email');
      case 'sms': return ctx.t('incident.channel.sms');
      case 'webhook': return ctx.t('incident.channel.webhook');
      case 'log': return ctx.t('incident.channel.log');
      default: return c || '';
    }
  }

  function hhmm(t, estate) {
    return ctx.fmtTime(t, estate).slice(11, 16);
  }

  function notifStateText(n, estate) {
    const until = hhmm(n.next_attempt_at, estate);
    switch (n.status) {
      case 'pending':
        if (n.held === 'digest') return ctx.t('incident.notif.held_digest', { time: until });
        if (n.held === 'quiet_hours') return ctx.t('incident.notif.held_quiet', { time: until });
        if (n.last_error) return ctx.t('incident.notif.retrying', { reason: n.last_error, time: until });
        return ctx.t('incident.notif.queued');
      case 'sent': return ctx.t('incident.notif.sent_at', { time: hhmm(n.sent_at, estate) });
      case 'delivered': return ctx.t('incident.notif.delivered_at', { time: hhmm(n.delivered_at || n.sent_at, estate) });
      case 'failed': return ctx.t('incident.notif.failed_reason', { reason: n.last_error || '–' });
      case 'digested': return ctx.t('incident.notif.digested', { id: n.digest_id ?? '' });
      default: return n.status;
    }
  }

  function answerText(n, estate) {
    if (!n.answer) return '';
    const what = n.answer === 'acknowledged' ? ctx.t('incident.notif.answer_acknowledged')
      : n.answer === 'on_the_way' ? ctx.t('incident.notif.answer_on_the_way') : n.answer;
    const time = hhmm(n.answered_at, estate);
    if (n.answer_via === 'link') return ctx.t('incident.notif.by_link', { answer: what, time });
    if (n.answer_via === 'sms_reply') return ctx.t('incident.notif.by_sms_reply', { answer: what, time });
    return `${what} ${time}`;
  }

  // A timer's outcome is `fired`, `superseded`, or `stopped: why` / `skipped: why`: the
  // word in the operator's language, the hub's reason as it is.
  function outcomeText(o) {
    const i = o.indexOf(':');
    const head = i < 0 ? o : o.slice(0, i);
    const label = ctx.t('incident.outcome.' + head);
    if (label === 'incident.outcome.' + head) return o;
    return i < 0 ? label : `${label}: ${o.slice(i + 1).trim()}`;
  }

  function tick() {
    if (!nextDue) { setText(countdown, '–'); countdown.dataset.due = ''; return; }
    const ms = Date.parse(nextDue.due_at) - Date.now();
    setText(countdown, countdownText(ms));
    countdown.dataset.due = nextDue.due_at;
    countdown.classList.toggle('b-overdue', ms < 0);
  }

  async function ackAlarm(a) {
    try {
      await ctx.api.post(`/alarms/${a.id}/ack`, { operator: ctx.operator });
    } catch (e) { apiError(ctx, e); }
    later();
  }

  function renderAlarms(d) {
    alarmsBody.textContent = '';
    for (const a of d.alarms || []) {
      const st = a.out_of_service ? 'out_of_service' : a.shelved ? 'shelved' : a.suppressed ? 'suppressed'
        : a.active ? (a.acknowledged ? 'ack_active' : 'unack_active') : (a.acknowledged ? 'cleared' : 'unack_cleared');
      alarmsBody.append(el('tr', { class: `b-alarm b-alarm-${st}`, data: { alarmId: a.id, state: st } },
        el('td', null, prioBadge(a.priority)),
        el('td', null, el('a', { href: a.gateway === 'hub' ? `#/coverage?estate=${encodeURIComponent(a.estate)}` : `#/devices/${encodeURIComponent(a.estate)}/${encodeURIComponent(a.device)}` }, a.device)),
        el('td', null, a.message || a.condition),
        el('td', null, ctx.t('incident.alarm_state.' + st), a.acknowledged ? null : [' ',
          el('button', { class: 'b-btn', testid: 'incident-alarm-ack', onclick: () => ackAlarm(a) }, ctx.t('incident.alarm_ack'))]),
        el('td', { class: 'b-time' }, ctx.fmtTime(a.raised_at, a.estate))));
    }
    if (!(d.alarms || []).length) alarmsBody.append(el('tr', null, el('td', { colspan: 5, class: 'b-muted' }, ctx.t('incident.none'))));
  }

  function renderTimeline(d) {
    // Entries never change once written: add the new ones at the top.
    for (const t of d.timeline || []) {
      if (tlNodes.has(t.id)) continue;
      const n = el('li', { class: `b-tl b-tl-${t.kind}`, testid: 'timeline-entry', data: { kind: t.kind, entryId: t.id } },
        el('time', { class: 'b-time' }, ctx.fmtTime(t.at, d.estate)), ' ',
        el('span', { class: 'b-tl-kind' }, ctx.t('incident.tl.' + t.kind) === 'incident.tl.' + t.kind ? t.kind : ctx.t('incident.tl.' + t.kind)), ' ',
        t.actor ? el('span', { class: 'b-tl-actor' }, t.actor) : null, ' ',
        el('span', { class: 'b-tl-text' }, t.text));
      tlNodes.set(t.id, n);
      timeline.prepend(n);
    }
  }

  async function loadDevices(d) {
    // Alarms the hub raises itself (gateway `hub`: a post unattended) have no device.
    const fromDevices = (d.alarms || []).filter(a => a.gateway !== 'hub');
    const key = fromDevices.map(a => a.estate + '/' + a.device).sort().join(',');
    if (key === devicesKey && devicesKey) return;
    devicesKey = key;
    // The incident's devices as the hub knows them (kind, the actions it takes); one its
    // gateways do not know takes no command.
    const want = new Set(fromDevices.map(a => a.estate + '/' + a.device));
    const found = [];
    for (const e of new Set(fromDevices.map(a => a.estate))) {
      try {
        for (const x of await ctx.api.get('/devices', { estate: e })) if (want.has(x.estate + '/' + x.device)) found.push(x);
      } catch (err) { apiError(ctx, err); devicesKey = null; }
    }
    devices = found;
    cmdBtn.disabled = !devices.length;
  }

  function render(d) {
    if (!alive) return;
    const first = !inc;
    inc = d;
    setText(hdrTitle, `#${d.id} ${d.title}`);
    hdrMeta.textContent = '';
    hdrMeta.append(el('span', null, prioBadge(d.priority), ' ',
      el('span', null, `${ctx.t('incident.col.estate')}: `, el('a', { href: `#/estates/${encodeURIComponent(d.estate)}` }, estateName(ctx, d.estate))), ' · ',
      el('span', null, `${ctx.t('incident.col.area')}: ${d.area}`), ' · ',
      el('span', null, `${ctx.t('incident.col.category')}: ${ctx.t('incident.category.' + d.category)}`), ' · ',
      el('span', null, `${ctx.t('incident.col.opened')}: ${ctx.fmtTime(d.opened_at, d.estate)} (${d.opened_by})`), ' · ',
      el('span', { class: d.response_breached && !d.on_site_at ? 'b-breached' : '' },
        d.on_site_at ? `${ctx.t('incident.on_site_at')}: ${ctx.fmtTime(d.on_site_at, d.estate)}`
          : `${d.response_breached ? '⚠ ' + ctx.t('incident.breached') + ' ' : ''}${ctx.t('incident.due')} ${ctx.fmtTime(d.response_due_at, d.estate)}`),
      d.flood_group ? el('span', { class: 'b-tag' }, ctx.t('incident.flood_group')) : null));
    setText(stateLabel, stateText(ctx, d.state));
    setText(stateEl, d.state);
    stateEl.dataset.state = d.state;
    root.dataset.state = d.state;
    renderTransitions(d);
    renderSteps(d);
    renderEscalation(d);
    renderAlarms(d);
    renderTimeline(d);
    loadDevices(d);
    if (first) {
      ctx.api.get('/commands', { incident: id, limit: 100 }).then(l => alive && cmds.load(l)).catch(e => alive && apiError(ctx, e));
    }
  }

  async function load() {
    try {
      render(await ctx.api.get(`/incidents/${id}`));
    } catch (e) {
      if (!alive) return;
      if (e.status === 404) { setText(hdrTitle, ctx.t('incident.not_found', { id })); return; }
      apiError(ctx, e);
    }
  }
  const later = coalesce(load, 300);
  const offs = [
    ctx.on('incident', ev => { if (ev && Number(ev.id) === id) later(); }),
    ctx.on('alarm', ev => { const a = ev && ev.data; if (a && a.incident_id === id) later(); }),
    ctx.on('command', ev => { const c = ev && ev.data; if (c && c.incident_id === id) later(); }),
    ctx.on('notification', ev => { const n = ev && ev.data; if (n && n.incident_id === id) later(); }),
    ctx.on('reset', later),
  ];
  // The countdown runs on a timer, never on rAF (rAF stops in background tabs).
  const timer = setInterval(tick, 1000);
  load();
  return { unmount() { alive = false; later.cancel(); clearInterval(timer); offs.forEach(f => f && f()); cmds.unmount(); } };
}
