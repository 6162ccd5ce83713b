// A trend chart of a device's points (uPlot, vendored): x in the estate's time zone with
// 24 h stamps; muted line colours told apart by dash pattern too (saturated colour is kept
// for alarm priority, ISA-101).
import uPlot from '../vendor/uplot/uPlot.esm.js';

const LINES = [
  { stroke: '#2f3b4a', dash: [] },
  { stroke: '#5d7391', dash: [6, 3] },
  { stroke: '#7b6650', dash: [2, 2] },
  { stroke: '#55735f', dash: [8, 3, 2, 3] },
  { stroke: '#6e5a7e', dash: [12, 4] },
  { stroke: '#4a4a4a', dash: [1, 3] },
];

const fmtCache = new Map();
function hhmm(tz, withDate) {
  const k = `${tz}|${withDate}`;
  let f = fmtCache.get(k);
  if (!f) {
    const opts = { hour: '2-digit', minute: '2-digit', hourCycle: 'h23' };
    if (withDate) Object.assign(opts, { month: '2-digit', day: '2-digit' });
    try { f = new Intl.DateTimeFormat('en-GB', { ...opts, timeZone: tz || undefined }); } catch { f = new Intl.DateTimeFormat('en-GB', opts); }
    fmtCache.set(k, f);
  }
  return f;
}

function stamp(tz, s, withDate) {
  const p = Object.fromEntries(hhmm(tz, withDate).formatToParts(new Date(s * 1000)).map(x => [x.type, x.value]));
  return withDate ? `${p.month}-${p.day} ${p.hour}:${p.minute}` : `${p.hour}:${p.minute}`;
}

function num(v) {
  if (typeof v === 'number') return Number.isFinite(v) ? v : null;
  if (typeof v === 'boolean') return v ? 1 : 0;
  if (typeof v === 'string' && v.trim() !== '' && !Number.isNaN(Number(v))) return Number(v);
  return null;
}

/**
 * Aligns series of `[unix_s, value]` samples on one x array (uPlot's data layout). Devices
 * report on change, so a value holds until the next sample: each series is carried on to
 * `to` (the end of the window) and drawn as steps.
 */
function align(series, to) {
  const xs = new Set();
  for (const s of series) for (const [t] of s.samples) xs.add(t);
  if (to) xs.add(to);
  const x = [...xs].sort((a, b) => a - b);
  const at = new Map(x.map((t, i) => [t, i]));
  const ys = series.map(s => {
    const y = new Array(x.length).fill(null);
    let last = null;
    for (const [t, v] of s.samples) { y[at.get(t)] = num(v); last = [t, num(v)]; }
    if (to && last && last[0] < to && last[1] !== null) y[at.get(to)] = last[1];
    return y;
  });
  return [x, ...ys];
}

function secs(t) {
  if (t === null || t === undefined) return null;
  const ms = typeof t === 'number' ? t * 1000 : Date.parse(t);
  return Number.isFinite(ms) ? ms / 1000 : null;
}

/**
 * Draws `series` ([{name, samples}]) of one `unit` into `box` over `from`..`to` (RFC 3339). `fmtTime(ms)` formats the
 * legend's time (the shell's, in the estate's zone). Returns {update(series), destroy()}.
 */
export function trendChart(box, { unit, series, tz, fmtTime, timeLabel = 'Time', from, to, width = 640, height = 190 }) {
  // The window asked for (from..to), not only where samples fall.
  let win = [secs(from), secs(to)];
  const data = align(series, win[1]);
  const step = uPlot.paths.stepped({ align: 1 });
  const opts = {
    width,
    height,
    tzDate: tz ? ts => uPlot.tzDate(new Date(ts * 1000), tz) : undefined,
    legend: { live: true },
    cursor: { drag: { x: false, y: false } },
    scales: { x: { time: true, range: (u, min, max) => (win[0] && win[1] ? [win[0], win[1]] : [min, max]) } },
    axes: [
      {
        stroke: '#333',
        grid: { stroke: '#c8c8c8', width: 1 },
        ticks: { stroke: '#999', width: 1 },
        values: (u, splits) => splits.map(s => stamp(tz, s, u.scales.x.max - u.scales.x.min > 36 * 3600)),
        font: '12px "Noto Sans CJK SC", "PingFang SC", "Microsoft YaHei", sans-serif',
      },
      {
        stroke: '#333',
        grid: { stroke: '#c8c8c8', width: 1 },
        ticks: { stroke: '#999', width: 1 },
        label: unit || undefined,
        size: 60,
        font: '12px "Noto Sans CJK SC", "PingFang SC", "Microsoft YaHei", sans-serif',
      },
    ],
    series: [
      { label: timeLabel, value: (u, v) => (v === null || v === undefined ? '–' : fmtTime(v * 1000)) },
      ...series.map((s, i) => ({
        label: unit ? `${s.name} (${unit})` : s.name,
        stroke: LINES[i % LINES.length].stroke,
        dash: LINES[i % LINES.length].dash,
        width: 1.5,
        spanGaps: true,
        paths: step,
        points: { show: false },
      })),
    ],
  };
  const plot = new uPlot(opts, data, box);
  box.dataset.samples = String(data[0].length);
  // Follow the width of the panel (window resized, side panel opened).
  let lastW = width;
  const ro = typeof ResizeObserver === 'function' && box.parentElement
    ? new ResizeObserver(() => {
      const w = Math.max(320, Math.floor(box.parentElement.clientWidth - 12));
      if (Math.abs(w - lastW) > 4) { lastW = w; plot.setSize({ width: w, height }); }
    })
    : null;
  if (ro) ro.observe(box.parentElement);
  return {
    update(next, nextFrom, nextTo) {
      if (nextFrom && nextTo) win = [secs(nextFrom), secs(nextTo)];
      const d = align(next, win[1]);
      plot.setData(d);
      box.dataset.samples = String(d[0].length);
    },
    destroy() { if (ro) ro.disconnect(); plot.destroy(); },
  };
}
