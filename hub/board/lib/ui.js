// Modal dialogs (ctx.form, ctx.confirm) and toasts.
import { h } from './dom.js';

export function makeUi(getT) {
  const host = document.getElementById('overlay-host') || document.body;
  const toasts = h('div', { class: 'toasts', 'aria-live': 'polite' });
  host.append(toasts);

  function toast(text, kind) {
    const el = h('div', { class: 'toast' + (kind ? ' toast-' + kind : ''), testid: 'toast', role: kind === 'error' ? 'alert' : 'status' }, text);
    toasts.append(el);
    setTimeout(() => el.remove(), kind === 'error' ? 8000 : 4000);
  }

  /** One modal at a time; resolves with the values, or null when cancelled. */
  function modal(title, fields, okLabel) {
    const t = getT();
    return new Promise((resolve) => {
      const prev = document.activeElement;
      const form = h('form', { class: 'dialog-form', novalidate: true });
      const inputs = [];
      for (const f of fields || []) {
        let input;
        const id = 'f-' + f.name + '-' + Math.random().toString(36).slice(2, 7);
        if (f.type === 'select') {
          input = h('select', { name: f.name, id });
          for (const o of f.options || []) {
            const [value, label] = typeof o === 'object' ? [o.value, o.label] : [o, o];
            input.append(h('option', { value: String(value) }, t(String(label))));
          }
        } else if (f.type === 'textarea') {
          input = h('textarea', { name: f.name, id, rows: 3 });
        } else {
          input = h('input', { name: f.name, id, type: f.type === 'number' ? 'number' : 'text' });
          if (f.type === 'number') { if (f.min != null) input.min = f.min; if (f.max != null) input.max = f.max; }
        }
        if (f.value != null) input.value = String(f.value);
        if (f.required) input.required = true;
        inputs.push([f, input]);
        form.append(h('label', { for: id, class: 'dialog-field' }, h('span', null, t(f.label || f.name) + (f.required ? ' *' : '')), input));
      }
      const err = h('div', { class: 'dialog-error', role: 'alert' });
      const ok = h('button', { type: 'submit', class: 'btn btn-primary', testid: 'dialog-ok' }, t(okLabel || 'dialog.ok'));
      const cancel = h('button', { type: 'button', class: 'btn', testid: 'dialog-cancel' }, t('dialog.cancel'));
      form.append(err, h('div', { class: 'dialog-buttons' }, cancel, ok));
      const box = h('div', { class: 'dialog', testid: 'dialog', role: 'dialog', 'aria-modal': 'true' },
        h('h2', { class: 'dialog-title' }, t(title)), form);
      const back = h('div', { class: 'dialog-back' }, box);
      const done = (v) => {
        back.remove();
        document.removeEventListener('keydown', onKey, true);
        if (prev && prev.focus) prev.focus();
        resolve(v);
      };
      const onKey = (e) => { if (e.key === 'Escape') { e.preventDefault(); done(null); } };
      document.addEventListener('keydown', onKey, true);
      cancel.addEventListener('click', () => done(null));
      form.addEventListener('submit', (e) => {
        e.preventDefault();
        const out = {};
        for (const [f, input] of inputs) {
          let v = input.value;
          if (f.type !== 'textarea') v = v.trim();
          if (f.required && v === '') { err.textContent = t('dialog.required', { field: t(f.label || f.name) }); input.focus(); return; }
          if (f.type === 'number' && v !== '') {
            const n = Number(v);
            if (!Number.isFinite(n)) { err.textContent = t('dialog.number', { field: t(f.label || f.name) }); input.focus(); return; }
            v = n;
          }
          out[f.name] = v;
        }
        done(out);
      });
      host.append(back);
      const first = inputs.length ? inputs[0][1] : ok;
      first.focus();
    });
  }

  const form = (titleKey, fields) => modal(titleKey, fields, 'dialog.ok');
  const confirm = async (text) => (await modal(text, [], 'dialog.confirm')) !== null;
  return { toast, form, confirm };
}
