// Tiny inline-SVG charts for the KPI page (no library): vertical bars with an optional
// target line, and horizontal bars with optional target marks. Labels via textContent.
const NS = 'http://www.w3.org/2000/svg';

export function s(tag, attrs, text) {
  const el = document.createElementNS(NS, tag);
  for (const [k, v] of Object.entries(attrs || {})) if (v != null) el.setAttribute(k, String(v));
  if (text != null) el.textContent = String(text);
  return el;
}

// Cut a label to about `px` wide at the charts' 12 px font (CJK twice as wide), with an ellipsis.
export function fit(text, px) {
  const str = String(text);
  let w = 0;
  for (let i = 0; i < str.length; i++) {
    w += str.charCodeAt(i) > 0x2e80 ? 12 : 6.6;
    if (w > px) return str.slice(0, Math.max(1, i - 1)) + '…';
  }
  return str;
}

function niceMax(v) {
  if (!(v > 0)) return 1;
  const p = Math.pow(10, Math.floor(Math.log10(v)));
  for (const m of [1, 2, 2.5, 5, 10]) if (m * p >= v) return m * p;
  return 10 * p;
}

/** Vertical bars: items [{label, value, title?}], target {value, label}? */
export function columns(items, { width = 560, height = 200, target, fmt = (x) => x, labelEvery = 1 } = {}) {
  const L = 34, B = 22, T = 10, R = 6;
  const max = niceMax(Math.max(target ? target.value * 1.15 : 0, ...items.map((i) => i.value)));
  const svg = s('svg', { viewBox: `0 0 ${width} ${height}`, role: 'img' });
  const iw = width - L - R, ih = height - T - B;
  const y = (v) => T + ih - (v / max) * ih;
  for (const f of [0, 0.5, 1]) {
    svg.append(s('line', { x1: L, x2: width - R, y1: y(max * f), y2: y(max * f), class: 'axis', 'stroke-width': f ? 0.5 : 1 }));
    svg.append(s('text', { x: L - 4, y: y(max * f) + 4, 'text-anchor': 'end' }, fmt(max * f)));
  }
  const bw = iw / Math.max(1, items.length);
  items.forEach((it, i) => {
    const x = L + i * bw;
    const over = target && it.value > target.value;
    const r = s('rect', { x: x + bw * 0.12, y: y(it.value), width: bw * 0.76, height: Math.max(0, T + ih - y(it.value)), class: 'bar' + (over ? ' over' : '') });
    r.append(s('title', {}, it.title || `${it.label}: ${fmt(it.value)}`));
    svg.append(r);
    if (i % labelEvery === 0) svg.append(s('text', { x: x + bw / 2, y: height - 6, 'text-anchor': 'middle' }, it.label));
  });
  if (target) {
    svg.append(s('line', { x1: L, x2: width - R, y1: y(target.value), y2: y(target.value), class: 'target' }));
    svg.append(s('text', { x: width - R, y: y(target.value) - 3, 'text-anchor': 'end' }, target.label));
  }
  return svg;
}

/** Horizontal bars: items [{label, value, target?, text?, over?}], max optional. */
export function bars(items, { width = 560, labelWidth = 180, max, fmt = (x) => x, row = 20, textRoom = 70 } = {}) {
  const R = textRoom;
  const height = Math.max(1, items.length) * row + 6;
  const m = max || niceMax(Math.max(...items.map((i) => Math.max(i.value, i.target || 0)), 0));
  const svg = s('svg', { viewBox: `0 0 ${width} ${height}`, role: 'img' });
  const iw = width - labelWidth - R;
  items.forEach((it, i) => {
    const y0 = 3 + i * row;
    svg.append(s('text', { x: labelWidth - 6, y: y0 + row * 0.68, 'text-anchor': 'end' }, fit(it.label, labelWidth - 8)));
    const w = Math.max(0, (it.value / m) * iw);
    const r = s('rect', { x: labelWidth, y: y0 + 3, width: w, height: row - 6, class: 'bar' + (it.over ? ' over' : ''), fill: it.fill || null });
    r.append(s('title', {}, it.title || `${it.label}: ${fmt(it.value)}`));
    svg.append(r);
    if (it.target != null) {
      const tw = (it.target / m) * iw;
      svg.append(s('rect', { x: labelWidth, y: y0 + 1, width: tw, height: row - 2, class: 'target-bar' }));
    }
    const tx = labelWidth + Math.max(w, it.target != null ? (it.target / m) * iw : 0) + 4;
    svg.append(s('text', { x: tx, y: y0 + row * 0.68 }, fit(it.text != null ? it.text : fmt(it.value), width - tx - 2)));
  });
  return svg;
}
