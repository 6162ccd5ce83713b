// Flat-key labels: i18n/<lang>.json (zh-CN and en hold the same keys; a test checks it).
export const LANGS = ['zh-CN', 'en'];
const KEY = 'gh.lang';

export function savedLang() {
  const l = localStorage.getItem(KEY);
  return LANGS.includes(l) ? l : 'zh-CN';
}

export function saveLang(l) {
  localStorage.setItem(KEY, l);
}

async function load(file) {
  try {
    const r = await fetch(new URL(`../i18n/${file}`, import.meta.url), { cache: 'no-cache' });
    if (!r.ok) return {};
    return await r.json();
  } catch {
    return {};
  }
}

export async function loadLabels(lang) {
  return load(`${lang}.json`);
}

/** t(key, vars) over a label table; a missing key answers the key itself. */
export function makeT(labels) {
  return (key, vars) => {
    let s = labels[key];
    if (s == null) return key;
    if (vars) s = s.replace(/\{(\w+)\}/g, (m, k) => (vars[k] != null ? String(vars[k]) : m));
    return s;
  };
}
