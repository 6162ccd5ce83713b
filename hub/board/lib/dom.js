// Small DOM helpers. All API text goes through textContent (never innerHTML with data).

/** h('div', {class: 'x', data: {a: 1}, testid: 't', onclick: fn}, child, 'text', [more], ...) */
export function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  if (attrs) {
    for (const [k, v] of Object.entries(attrs)) {
      if (v == null || v === false) continue;
      if (k === 'class') el.className = v;
      else if (k === 'dataset' || k === 'data') {
        for (const [dk, dv] of Object.entries(v)) if (dv != null) el.dataset[dk] = String(dv);
      }
      else if (k === 'testid') el.dataset.testid = v;
      else if (k === 'text') el.textContent = v;
      else if (k.startsWith('on') && typeof v === 'function') el.addEventListener(k.slice(2), v);
      else if (k in el && typeof v !== 'string') el[k] = v;
      else el.setAttribute(k, v === true ? '' : String(v));
    }
  }
  for (const c of children.flat(Infinity)) {
    if (c == null || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

/** Set text only when it changed (keeps style recalculation to the nodes that moved). */
export function setText(el, text) {
  const s = text == null ? '' : String(text);
  if (el.textContent !== s) el.textContent = s;
}

export function setAttr(el, name, value) {
  const s = value == null ? null : String(value);
  if (s === null) { if (el.hasAttribute(name)) el.removeAttribute(name); }
  else if (el.getAttribute(name) !== s) el.setAttribute(name, s);
}

/**
 * Put `nodes` into `parent` in this order, moving only nodes that are out of place
 * (a stable list mostly needs no DOM operation at all). Nodes of `parent` not in the
 * list are removed.
 */
export function reorder(parent, nodes) {
  const keep = new Set(nodes);
  for (const c of [...parent.children]) if (!keep.has(c)) c.remove();
  let cur = parent.firstElementChild;
  for (const n of nodes) {
    if (n === cur) { cur = cur.nextElementSibling; continue; }
    parent.insertBefore(n, cur);
  }
}

/** Coalesce calls into one per `ms` (trailing). */
export function debounce(fn, ms) {
  let t = null;
  const d = (...a) => { clearTimeout(t); t = setTimeout(() => { t = null; fn(...a); }, ms); };
  d.cancel = () => clearTimeout(t);
  return d;
}
