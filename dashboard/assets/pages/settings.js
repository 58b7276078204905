// Settings: the effective configuration as the server runs it (read-only; secrets are redacted by
// the server before they get here), plus version, uptime and the log writer's counters.

import { api } from '../api.js';
import {
  details, duration, errorBox, h, mount, table,
} from '../ui.js';

/** Flattens nested objects to [dotted.key, value] rows. */
function flatten(obj, prefix = '', out = []) {
  for (const [k, v] of Object.entries(obj || {})) {
    const key = prefix ? `${prefix}.${k}` : k;
    if (v && typeof v === 'object' && !Array.isArray(v) && Object.keys(v).length) flatten(v, key, out);
    else out.push([key, v]);
  }
  return out;
}

function show(v) {
  if (v === null || v === undefined) return h('span', { class: 'muted' }, 'not set');
  if (typeof v === 'string') return h('code', { class: /^\*+$|redacted/i.test(v) ? 'redacted' : null }, v);
  return h('code', null, JSON.stringify(v));
}

export default {
  render(el) {
    const body = h('div', null, h('div', { class: 'muted loading' }, 'Loading…'));
    mount(el, h('div', { class: 'page-head' }, h('h1', null, 'Settings')),
      h('p', { class: 'muted' }, 'The configuration in effect (defaults, then the file, then environment variables). Read-only: change the file or the environment and restart. Secrets are never sent to the browser.'),
      body);
    api('/api/system').then((s) => {
      const section = (title, obj) => h('section', { class: 'section' },
        h('div', { class: 'section-head' }, h('h2', null, title)),
        table([{ label: 'Key', cell: ([k]) => h('code', null, k) }, { label: 'Value', cell: ([, v]) => show(v) }], flatten(obj), { class: 'config-table' }));
      mount(body,
        h('div', { class: 'card' }, details([
          ['Version', s.version],
          ['Uptime', duration(s.uptime_seconds)],
        ])),
        section('Configuration', s.config),
        s.log ? section('Request log', s.log) : null,
        s.metrics ? section('Metrics', s.metrics) : null);
    }).catch((e) => mount(body, errorBox(e)));
  },
};
