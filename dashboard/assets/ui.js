// DOM helpers and formatters. Every element is built with createElement and text nodes, never
// from HTML strings, so nothing from the server can become markup. Styling is by class only
// (the CSP forbids inline styles).

/**
 * h('div', {class: 'card', on: {click: fn}, data: {id: 1}}, 'text', child, [more])
 * Attributes: class, text, on (event listeners), data (dataset), anything else via setAttribute.
 * `false`/`null`/`undefined` attributes and children are skipped.
 */
export function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  if (attrs) {
    for (const [k, v] of Object.entries(attrs)) {
      if (v === false || v === null || v === undefined) continue;
      if (k === 'class') el.className = Array.isArray(v) ? v.filter(Boolean).join(' ') : v;
      else if (k === 'text') el.textContent = v;
      else if (k === 'on') for (const [ev, fn] of Object.entries(v)) el.addEventListener(ev, fn);
      else if (k === 'data') for (const [dk, dv] of Object.entries(v)) el.dataset[dk] = dv;
      else if (k === 'value') el.value = v;
      else if (k === 'checked' || k === 'disabled' || k === 'hidden' || k === 'selected') el[k] = !!v;
      else if (k === 'style' || k.startsWith('on')) throw new Error(`h(): ${k} is not allowed`);
      else el.setAttribute(k, v === true ? '' : String(v));
    }
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const c of children) {
    if (c === null || c === undefined || c === false) continue;
    if (Array.isArray(c)) append(el, c);
    else if (c instanceof Node) el.appendChild(c);
    else el.appendChild(document.createTextNode(String(c)));
  }
}

/** Replaces an element's children. */
export function mount(el, ...children) {
  el.replaceChildren();
  append(el, children);
  return el;
}

// ---------------------------------------------------------------------------------------------
// Formatting

const intFmt = new Intl.NumberFormat('en-US');

export function int(n) {
  return n === null || n === undefined ? '—' : intFmt.format(n);
}

/** 950, 1.2k, 3.4M */
export function short(n) {
  if (n === null || n === undefined) return '—';
  const a = Math.abs(n);
  if (a >= 1e9) return (n / 1e9).toFixed(1) + 'G';
  if (a >= 1e6) return (n / 1e6).toFixed(1) + 'M';
  if (a >= 1e4) return (n / 1e3).toFixed(0) + 'k';
  if (a >= 1e3) return (n / 1e3).toFixed(1) + 'k';
  return Number.isInteger(n) ? String(n) : n.toFixed(1);
}

/** Dollars with enough digits that a small cost is not shown as $0.00. Null is not a number. */
export function usd(v) {
  if (v === null || v === undefined) return null;
  const a = Math.abs(v);
  if (a === 0) return '$0.00';
  if (a >= 1) return '$' + v.toFixed(2);
  if (a >= 0.01) return '$' + v.toFixed(4);
  return '$' + v.toFixed(6).replace(/0+$/, '').replace(/\.$/, '');
}

/**
 * A cost cell: the amount, or "unpriced" with the reason (never a made-up $0).
 * `unpricedCount` is for totals: "$1.23 + 4 unpriced".
 */
export function cost(v, note, unpricedCount) {
  if (v === null || v === undefined) {
    return h('span', { class: 'unpriced', title: note || 'No price is known for this model.' },
      unpricedCount ? `unpriced (${int(unpricedCount)})` : 'unpriced');
  }
  const amount = h('span', { class: 'money' }, usd(v));
  if (unpricedCount) {
    return h('span', null, amount, ' ',
      h('span', { class: 'unpriced', title: 'Requests with no known price are not in this sum.' },
        `+ ${int(unpricedCount)} unpriced`));
  }
  return amount;
}

export function ms(v) {
  if (v === null || v === undefined) return '—';
  if (v >= 10000) return (v / 1000).toFixed(0) + ' s';
  if (v >= 1000) return (v / 1000).toFixed(1) + ' s';
  return Math.round(v) + ' ms';
}

export function pct(v, digits = 1) {
  if (v === null || v === undefined || Number.isNaN(v)) return '—';
  return v.toFixed(digits) + '%';
}

export function bytes(v) {
  if (v === null || v === undefined) return '—';
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let i = 0;
  while (v >= 1024 && i < units.length - 1) { v /= 1024; i++; }
  return (i === 0 ? v.toFixed(0) : v.toFixed(1)) + ' ' + units[i];
}

export function duration(secs) {
  if (secs === null || secs === undefined) return '—';
  const d = Math.floor(secs / 86400), hh = Math.floor((secs % 86400) / 3600);
  const mm = Math.floor((secs % 3600) / 60), ss = Math.floor(secs % 60);
  if (d) return `${d}d ${hh}h`;
  if (hh) return `${hh}h ${mm}m`;
  if (mm) return `${mm}m ${ss}s`;
  return `${ss}s`;
}

const pad = (n) => String(n).padStart(2, '0');

/** Local date and time, to the second: 2026-05-15 14:03:07. */
export function dateTime(iso) {
  if (!iso) return '—';
  const d = new Date(iso);
  if (Number.isNaN(d.getTime())) return iso;
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ` +
    `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
}

export function timeOnly(iso) {
  const d = new Date(iso);
  if (Number.isNaN(d.getTime())) return iso || '—';
  return `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
}

export function dateOnly(iso) {
  if (!iso) return '—';
  return dateTime(iso).slice(0, 10);
}

/** "3 min ago" */
export function ago(iso) {
  if (!iso) return 'never';
  const s = (Date.now() - new Date(iso).getTime()) / 1000;
  if (s < 5) return 'just now';
  if (s < 60) return `${Math.round(s)} s ago`;
  if (s < 3600) return `${Math.round(s / 60)} min ago`;
  if (s < 86400) return `${Math.round(s / 3600)} h ago`;
  return `${Math.round(s / 86400)} d ago`;
}

/** YYYY-MM-DD in UTC (what /api/usage takes), `days` from today. */
export function utcDay(offsetDays = 0) {
  const d = new Date(Date.now() + offsetDays * 86400000);
  return d.toISOString().slice(0, 10);
}

// ---------------------------------------------------------------------------------------------
// Small components

export function badge(text, kind = 'neutral') {
  return h('span', { class: `badge badge-${kind}` }, text);
}

export function statusBadge(status) {
  const kind = status >= 500 ? 'bad' : status >= 400 ? 'warn' : status === 0 ? 'neutral' : 'ok';
  return h('span', { class: `badge badge-${kind} status` }, String(status));
}

export function empty(text) {
  return h('div', { class: 'empty' }, text);
}

/** An inline error box for a failed call, with the server's message. */
export function errorBox(err) {
  return h('div', { class: 'alert alert-bad', role: 'alert' }, messageOf(err));
}

export function messageOf(err) {
  if (!err) return 'Something went wrong.';
  return err.message || String(err);
}

/**
 * A table. columns: [{label, cell: row => node|string, class?}]; rows: array.
 * opts.onRow(row) makes rows clickable (and keyboard-activatable); opts.rowAttrs(row) adds attributes.
 */
export function table(columns, rows, opts = {}) {
  const head = h('thead', null, h('tr', null, columns.map((c) =>
    h('th', { class: c.class, scope: 'col' }, c.label))));
  const body = h('tbody');
  for (const r of rows) body.appendChild(tableRow(columns, r, opts));
  const t = h('table', { class: ['data', opts.class] }, head, body);
  if (opts.foot) t.appendChild(h('tfoot', null, tableRow(columns.map((c) => ({ ...c, cell: c.foot || (() => '') })), opts.foot, {})));
  return h('div', { class: 'table-wrap' }, t);
}

export function tableRow(columns, r, opts = {}) {
  const attrs = opts.rowAttrs ? opts.rowAttrs(r) : {};
  const tr = h('tr', attrs, columns.map((c) => h('td', { class: c.class, 'data-label': c.label }, c.cell(r))));
  if (opts.onRow) {
    tr.classList.add('clickable');
    tr.tabIndex = 0;
    tr.addEventListener('click', () => opts.onRow(r));
    tr.addEventListener('keydown', (e) => { if (e.key === 'Enter') opts.onRow(r); });
  }
  return tr;
}

/** A labelled form field. */
export function field(label, input, hint) {
  return h('label', { class: 'field' },
    h('span', { class: 'field-label' }, label),
    input,
    hint ? h('span', { class: 'field-hint' }, hint) : null);
}

export function select(name, options, value) {
  return h('select', { name }, options.map(([v, label]) =>
    h('option', { value: v, selected: v === value }, label)));
}

// ---------------------------------------------------------------------------------------------
// Toasts and dialogs

let toastHost;

export function toast(message, kind = 'ok') {
  if (!toastHost) {
    toastHost = h('div', { class: 'toasts', role: 'status', 'aria-live': 'polite' });
    document.body.appendChild(toastHost);
  }
  const t = h('div', { class: `toast toast-${kind}` }, message);
  toastHost.appendChild(t);
  setTimeout(() => t.classList.add('toast-out'), 3800);
  setTimeout(() => t.remove(), 4300);
}

/** A modal with a title and body; resolves when closed. */
export function modal(title, body, { actions = [], wide = false } = {}) {
  return new Promise((resolve) => {
    const dlg = h('dialog', { class: ['modal', wide && 'modal-wide'] });
    const close = (v) => { dlg.close(); dlg.remove(); resolve(v); };
    const head = h('div', { class: 'modal-head' },
      h('h2', null, title),
      h('button', { class: 'icon-btn', type: 'button', 'aria-label': 'Close', on: { click: () => close(null) } }, '✕'));
    const foot = actions.length
      ? h('div', { class: 'modal-foot' }, actions.map((a) =>
        h('button', { type: 'button', class: a.class || 'btn', on: { click: () => close(a.value) } }, a.label)))
      : null;
    dlg.append(head, h('div', { class: 'modal-body' }, body), foot || '');
    dlg.addEventListener('cancel', (e) => { e.preventDefault(); close(null); });
    dlg.addEventListener('click', (e) => { if (e.target === dlg) close(null); });
    document.body.appendChild(dlg);
    dlg.showModal();
  });
}

export async function confirmAction(title, message, confirmLabel, danger = true) {
  const v = await modal(title, h('p', null, message), {
    actions: [
      { label: 'Cancel', value: false, class: 'btn btn-ghost' },
      { label: confirmLabel, value: true, class: danger ? 'btn btn-danger' : 'btn btn-primary' },
    ],
  });
  return v === true;
}

/** A copy-to-clipboard button for `text`. */
export function copyButton(text, label = 'Copy') {
  const btn = h('button', { type: 'button', class: 'btn btn-small' }, label);
  btn.addEventListener('click', async () => {
    let ok = false;
    try {
      await navigator.clipboard.writeText(text);
      ok = true;
    } catch {
      ok = false;
    }
    btn.textContent = ok ? 'Copied' : 'Select and copy';
    setTimeout(() => { btn.textContent = label; }, 1800);
  });
  return btn;
}

/** Definition list from [label, value] pairs; null values show a dash. */
export function details(pairs) {
  return h('dl', { class: 'kv' }, pairs.filter(Boolean).map(([k, v]) => [
    h('dt', null, k),
    h('dd', null, v === null || v === undefined || v === '' ? '—' : v),
  ]));
}

/** Downloads text as a file (blob URL; nothing leaves the browser). */
export function download(filename, text, type = 'text/csv') {
  const url = URL.createObjectURL(new Blob([text], { type }));
  const a = h('a', { href: url, download: filename, class: 'visually-hidden' });
  document.body.appendChild(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 1000);
}

/** Throttle: at most one call per `wait` ms; a call in between runs at the end of the wait. */
export function throttle(fn, wait) {
  let timer = null;
  let last = 0;
  return (...args) => {
    const now = Date.now();
    const run = () => { last = Date.now(); timer = null; fn(...args); };
    if (timer) return;
    if (now - last >= wait) run();
    else timer = setTimeout(run, wait - (now - last));
  };
}
