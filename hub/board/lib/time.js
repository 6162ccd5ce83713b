// Times in the estate's time zone, 24 h, tabular: YYYY-MM-DD HH:mm:ss.
const fmts = new Map();

function formatter(tz) {
  let f = fmts.get(tz || '');
  if (!f) {
    try {
      f = new Intl.DateTimeFormat('en-GB', {
        timeZone: tz || undefined, year: 'numeric', month: '2-digit', day: '2-digit',
        hour: '2-digit', minute: '2-digit', second: '2-digit', hourCycle: 'h23',
      });
    } catch {
      f = formatter('');
    }
    fmts.set(tz || '', f);
  }
  return f;
}

export function toMs(t) {
  if (t == null || t === '') return NaN;
  if (typeof t === 'number') return t;
  return Date.parse(t);
}

export function makeFmtTime(estates) {
  return (t, estateId) => {
    const ms = toMs(t);
    if (!Number.isFinite(ms)) return '';
    const tz = estateId != null ? estates.get(estateId)?.timezone : undefined;
    const p = {};
    for (const part of formatter(tz).formatToParts(new Date(ms))) p[part.type] = part.value;
    return `${p.year}-${p.month}-${p.day} ${p.hour === '24' ? '00' : p.hour}:${p.minute}:${p.second}`;
  };
}

export function makeFmtAge(t) {
  return (then) => {
    const ms = toMs(then);
    if (!Number.isFinite(ms)) return '';
    const s = Math.max(0, Math.round((Date.now() - ms) / 1000));
    if (s < 60) return t('age.s', { n: s });
    const m = Math.floor(s / 60);
    if (m < 60) return t('age.min', { n: m });
    const hr = Math.floor(m / 60);
    if (hr < 48) return t('age.h', { n: hr, m: m % 60 });
    return t('age.d', { n: Math.floor(hr / 24) });
  };
}
