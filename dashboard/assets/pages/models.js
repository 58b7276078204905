// Models: the models.dev registry as the gateway loaded it (ids, limits, prices per million
// tokens), plus the configured price overrides and aliases.

import { api } from '../api.js';
import {
  dateTime, details, empty, errorBox, h, int, mount, select, table,
} from '../ui.js';

const PAGE = 200;

/** $2.50, $0.075, $0.0375, $0 — per million tokens. */
function price(v) {
  if (v === null || v === undefined) return h('span', { class: 'muted' }, '—');
  const n = Number(v);
  if (n === 0) return '$0';
  if (n >= 1 || Number(n.toFixed(2)) === n) return `$${n.toFixed(2)}`;
  return `$${n.toFixed(6).replace(/0+$/, '')}`;
}

function entries(v) {
  if (!v) return [];
  if (Array.isArray(v)) return v.map((x, i) => [x.model || x.id || x.name || String(i), x]);
  return Object.entries(v);
}

function valueText(v) {
  if (v === null || v === undefined) return '—';
  if (typeof v !== 'object') return String(v);
  return Object.entries(v).filter(([, x]) => x !== null && x !== undefined)
    .map(([k, x]) => `${k} ${typeof x === 'number' ? `$${x}` : typeof x === 'object' ? JSON.stringify(x) : x}`).join(' · ');
}

export default {
  render(el) {
    const body = h('div', null, h('div', { class: 'muted loading' }, 'Loading…'));
    mount(el, h('div', { class: 'page-head' }, h('h1', null, 'Models')), body);

    api('/api/models').then((r) => {
      const items = r.items || [];
      const providers = [...new Set(items.map((m) => m.provider))].sort();
      const search = h('input', { type: 'search', placeholder: 'Search model id or name', class: 'search', spellcheck: 'false' });
      const provSel = select('provider', [['', 'All providers'], ...providers.map((p) => [p, p])], '');
      const results = h('div');
      let shown = PAGE;
      const columns = [
        { label: 'Provider', cell: (m) => m.provider },
        { label: 'Model id', cell: (m) => h('code', null, m.id) },
        { label: 'Name', cell: (m) => m.name || '' },
        { label: 'Input', class: 'num', cell: (m) => price(m.input) },
        { label: 'Output', class: 'num', cell: (m) => price(m.output) },
        { label: 'Cache read', class: 'num', cell: (m) => price(m.cache_read) },
        { label: 'Cache write', class: 'num', cell: (m) => price(m.cache_write) },
        { label: 'Reasoning', class: 'num', cell: (m) => price(m.reasoning) },
        { label: 'Context', class: 'num', cell: (m) => (m.context ? int(m.context) : '—') },
        { label: 'Max output', class: 'num', cell: (m) => (m.max_output ? int(m.max_output) : '—') },
        {
          label: 'Price from',
          cell: (m) => (m.price_source && m.price_source !== 'none'
            ? h('span', { title: m.price_note || '' }, m.price_source)
            : h('span', { class: 'unpriced', title: m.price_note || 'No price is known for this model.' }, 'unpriced')),
        },
        { label: 'Bare id', cell: (m) => (m.routes_bare ? 'routes here' : h('span', { class: 'muted', title: `Use ${m.provider}/${m.id}` }, 'prefix needed')) },
      ];
      const show = () => {
        const term = search.value.trim().toLowerCase();
        const list = items.filter((m) => (!provSel.value || m.provider === provSel.value)
          && (!term || m.id.toLowerCase().includes(term) || (m.name || '').toLowerCase().includes(term)));
        const more = list.length > shown
          ? h('button', { type: 'button', class: 'btn', on: { click: () => { shown += PAGE; show(); } } }, `Show more (${int(list.length - shown)} left)`)
          : null;
        mount(results,
          h('p', { class: 'muted small' }, `${int(list.length)} model${list.length === 1 ? '' : 's'}. Prices in USD per million tokens.`),
          list.length ? table(columns, list.slice(0, shown), { class: 'models-table' }) : empty('No model matches.'),
          more);
      };
      search.addEventListener('input', () => { shown = PAGE; show(); });
      provSel.addEventListener('change', () => { shown = PAGE; show(); });

      const overrides = entries(r.overrides);
      const aliases = entries(r.aliases);
      const configured = (list, what, section) => (list.length
        ? `${int(list.length)} (below)`
        : h('span', { class: 'muted' }, 'none — add them under ', h('code', null, `[pricing.${section}]`), ` in the configuration file to ${what}`));
      mount(body,
        h('div', { class: 'card' }, details([
          ['Registry version', r.registry_version ? h('code', null, r.registry_version) : 'none loaded (prices unknown; routing by prefix)'],
          ['Loaded', r.loaded_at ? dateTime(r.loaded_at) : '—'],
          ['Models', int(items.length)],
          ['Price overrides', configured(overrides, 'set your own prices', 'overrides')],
          ['Aliases', configured(aliases, 'price a model like another', 'aliases')],
        ])),
        overrides.length ? h('section', { class: 'section' },
          h('div', { class: 'section-head' }, h('h2', null, 'Price overrides'), h('span', { class: 'muted' }, 'win over the registry')),
          table([{ label: 'Model', cell: ([k]) => h('code', null, k) }, { label: 'Prices (USD / 1M tokens)', cell: ([, v]) => valueText(v) }], overrides)) : null,
        aliases.length ? h('section', { class: 'section' },
          h('div', { class: 'section-head' }, h('h2', null, 'Aliases'), h('span', { class: 'muted' }, 'priced like another model')),
          table([{ label: 'Model', cell: ([k]) => h('code', null, k) }, { label: 'Priced as', cell: ([, v]) => h('code', null, valueText(v)) }], aliases)) : null,
        h('section', { class: 'section' },
          h('div', { class: 'section-head' }, h('h2', null, 'Registry')),
          h('div', { class: 'toolbar' }, search, provSel),
          results));
      show();
    }).catch((e) => mount(body, errorBox(e)));
  },
};
