// Priority and alarm-state presentation (ISA-101 / ISA-18.2): colour only for priority,
// always with a symbol and text.
import { h, setText, setAttr } from './dom.js';

export const PRIORITIES = ['P1', 'P2', 'P3', 'P4'];
export const SYMBOL = { P1: '◆', P2: '▲', P3: '■', P4: '●' };
export const RANK = { P1: 1, P2: 2, P3: 3, P4: 4 };

/** The contract's data-state of an alarm. */
export function alarmState(a) {
  if (a.out_of_service) return 'out_of_service';
  if (a.suppressed) return 'suppressed';
  if (a.shelved) return 'shelved';
  if (a.active) return a.acknowledged ? 'ack_active' : 'unack_active';
  return a.acknowledged ? 'normal' : 'unack_cleared';
}

/** Standing = active, unacknowledged or shelved (docs/design.md §4.7 `state=standing`). */
export function isStanding(a) {
  return !!(a.active || !a.acknowledged || a.shelved);
}

/** An alarm that should call for the operator: unacknowledged and not taken out of view. */
export function needsAck(a) {
  return !a.acknowledged && !a.shelved && !a.suppressed && !a.out_of_service;
}

/** A priority badge: symbol + text, colour by priority. */
export function badge(t, p, extraClass) {
  const el = h('span', { class: 'prio prio-' + (p || 'none') + (extraClass ? ' ' + extraClass : '') });
  updateBadge(t, el, p);
  return el;
}

export function updateBadge(t, el, p) {
  setAttr(el, 'data-p', p || 'none');
  el.className = el.className.replace(/\bprio-(P\d|none)\b/, 'prio-' + (p || 'none'));
  setText(el, p ? `${SYMBOL[p]} ${p} ${t('prio.' + p)}` : t('prio.none'));
}

// Flashing elements created at different times would blink out of step; start each one's
// animation at the page clock's phase of the 1 s period so all blink together.
export function syncFlash(el) {
  const now = document.timeline ? document.timeline.currentTime : performance.now();
  el.style.animationDelay = `-${Math.round(now % 1000)}ms`;
  return el;
}
