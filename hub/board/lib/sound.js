// Audible cues (Web Audio oscillators; no sound files). Fire and security sound different:
// fire is the ISO 8201 temporal-three pattern on one low tone, security (and the other
// P1 categories) a fast high–low two-tone. The cue repeats every REPEAT_MS while any P1 is
// unacknowledged; a new P2 gets one short double beep. Driven by setInterval (never
// requestAnimationFrame, which stops in a background tab).
import { needsAck } from './prio.js';

const KEY = 'gh.sound';
const REPEAT_MS = 4000;

export function createSound({ store, gh, onState }) {
  let enabled = localStorage.getItem(KEY) !== 'off';
  let ac = null;
  const heardP2 = new Set();

  // Creating an AudioContext before a user gesture only logs a warning and stays
  // suspended; ask the autoplay policy first where the browser can tell.
  function allowed() {
    try { return !navigator.getAutoplayPolicy || navigator.getAutoplayPolicy('audiocontext') === 'allowed'; } catch { return true; }
  }

  function audio(gesture) {
    if (!ac) {
      if (!gesture && !allowed()) return null;
      const AC = window.AudioContext || window.webkitAudioContext;
      if (!AC) return null;
      ac = new AC();
      ac.onstatechange = () => onState();
    }
    return ac;
  }

  function tone(at, freq, dur, type = 'square', gain = 0.12) {
    const o = ac.createOscillator();
    const g = ac.createGain();
    o.type = type;
    o.frequency.setValueAtTime(freq, at);
    g.gain.setValueAtTime(0, at);
    g.gain.linearRampToValueAtTime(gain, at + 0.01);
    g.gain.setValueAtTime(gain, at + dur - 0.02);
    g.gain.linearRampToValueAtTime(0, at + dur);
    o.connect(g).connect(ac.destination);
    o.start(at);
    o.stop(at + dur + 0.01);
  }

  const patterns = {
    // temporal three: 0.5 s on / 0.5 s off ×3
    fire: (t0) => { for (let i = 0; i < 3; i++) tone(t0 + i, 660, 0.5, 'sawtooth', 0.1); },
    // two-tone 1.2 kHz / 800 Hz, 4 pairs
    security: (t0) => { for (let i = 0; i < 4; i++) { tone(t0 + i * 0.4, 1200, 0.18); tone(t0 + i * 0.4 + 0.2, 800, 0.18); } },
    p2: (t0) => { tone(t0, 880, 0.12, 'sine', 0.15); tone(t0 + 0.2, 880, 0.12, 'sine', 0.15); },
  };

  function play(kind) {
    gh.soundAttempts++;
    if (!enabled) return;
    const c = audio();
    if (!c) return;
    if (c.state !== 'running') { c.resume().catch(() => {}); if (c.state !== 'running') return; }
    patterns[kind](c.currentTime + 0.05);
    gh.soundPlays++;
    gh.soundLast = kind;
    gh.soundKinds[kind] = (gh.soundKinds[kind] || 0) + 1;
  }

  /** What should sound now: the worst unacknowledged P1's kind, fire first. */
  function p1Kind() {
    let kind = null;
    for (const a of store.alarms.values()) {
      if (a.priority !== 'P1' || !needsAck(a)) continue;
      if (a.category === 'fire') return 'fire';
      kind = 'security';
    }
    return kind;
  }

  function tick() {
    const k = p1Kind();
    gh.soundActive = k;
    if (k) play(k);
  }

  let timer = null;
  let lastKind = null;
  let first = true;
  /** Called after each store batch: start at once on a new P1, stop when none is left. */
  function update() {
    const k = p1Kind();
    if (k && !timer) {
      tick();
      timer = setInterval(tick, REPEAT_MS);
    } else if (k && k !== lastKind) {
      tick();
    } else if (!k && timer) {
      clearInterval(timer);
      timer = null;
      gh.soundActive = null;
    }
    lastKind = k;
    if (!k) {
      let newP2 = false;
      for (const a of store.alarms.values()) {
        if (a.priority === 'P2' && needsAck(a) && a.active && !heardP2.has(a.id)) { heardP2.add(a.id); newP2 = true; }
      }
      if (newP2 && !first) play('p2');
    } else {
      for (const a of store.alarms.values()) if (a.priority === 'P2') heardP2.add(a.id);
    }
    first = false;
  }

  function setEnabled(on) {
    enabled = on;
    localStorage.setItem(KEY, on ? 'on' : 'off');
    if (on) { const c = audio(true); if (c && c.state !== 'running') c.resume().catch(() => {}); }
    onState();
    if (on) update();
  }

  /** 'off' | 'blocked' (needs a click: autoplay policy) | 'on' */
  function state() {
    if (!enabled) return 'off';
    // no context yet: made on the first click, or when a P1 must sound (autoplay allowed)
    return ac && ac.state === 'running' ? 'on' : 'blocked';
  }

  // The first click anywhere lets a blocked AudioContext start.
  const unblock = () => {
    if (!enabled) return;
    const c = audio(true);
    if (c && c.state !== 'running') c.resume().then(() => { onState(); update(); }, () => {});
  };
  document.addEventListener('pointerdown', unblock, true);
  document.addEventListener('keydown', unblock, true);

  return { update, setEnabled, state, isEnabled: () => enabled, test: () => play(p1Kind() || 'security') };
}
