// Logs: the request log with filters (key, model, provider, status), a search within the loaded
// page, paging with the `before` cursor, and a detail view per row.

import { api, qs } from '../api.js';
import { logColumns, rowAttrs, showLog } from '../logview.js';
import {
  empty, errorBox, field, h, int, mount, select, table,
} from '../ui.js';

export default {
  render(el) {
    const saved = JSON.parse(sessionStorage.getItem('gg-logs-filters') || '{}');
    const input = (name, placeholder, type = 'text') => h('input', {
      name, placeholder, type, value: saved[name] || '', spellcheck: 'false', autocomplete: 'off',
    });
    const keyIn = input('key_name', 'any key');
    const modelIn = input('model', 'any model');
    const providerIn = input('provider', 'any provider');
    const statusIn = h('input', { name: 'status', placeholder: 'any', inputmode: 'numeric', pattern: '[0-9]*', value: saved.status || '', maxlength: '3' });
    const limitSel = select('limit', [['50', '50'], ['100', '100'], ['250', '250'], ['500', '500']], saved.limit || '100');
    const search = h('input', { type: 'search', name: 'search', placeholder: 'Search this page: request id, model, error…', class: 'search' });

    const form = h('form', { class: 'filters card' },
      field('Key', keyIn), field('Model', modelIn), field('Provider', providerIn), field('Status', statusIn),
      field('Per page', limitSel),
      h('div', { class: 'filter-actions' },
        h('button', { type: 'submit', class: 'btn btn-primary' }, 'Apply'),
        h('button', { type: 'button', class: 'btn btn-ghost', on: { click: reset } }, 'Reset')));

    const results = h('div', { class: 'results' });
    const pager = h('div', { class: 'pager' });
    const summary = h('span', { class: 'muted' });
    // Cursors of the pages before this one, so "Newer" can go back.
    let cursors = [];
    let current = null;
    let page = { items: [], next_before: null };

    function filters() {
      return {
        key_name: keyIn.value.trim(),
        model: modelIn.value.trim(),
        provider: providerIn.value.trim(),
        status: statusIn.value.trim(),
        limit: limitSel.value,
      };
    }

    async function load(before) {
      const f = filters();
      sessionStorage.setItem('gg-logs-filters', JSON.stringify(f));
      mount(results, h('div', { class: 'muted loading' }, 'Loading…'));
      try {
        page = await api(`/api/logs${qs({ ...f, before })}`);
        current = before || null;
        show();
      } catch (e) {
        mount(results, errorBox(e));
        mount(pager);
      }
    }

    function show() {
      const term = search.value.trim().toLowerCase();
      const items = term
        ? page.items.filter((r) => [r.request_id, r.model, r.upstream_model, r.key_name, r.provider, r.error, String(r.status)]
          .some((v) => v && String(v).toLowerCase().includes(term)))
        : page.items;
      summary.textContent = term
        ? `${int(items.length)} of ${int(page.items.length)} on this page match`
        : `${int(page.items.length)} request${page.items.length === 1 ? '' : 's'} on this page`;
      mount(results, items.length
        ? table(logColumns(), items, { onRow: showLog, rowAttrs, class: 'logs-table' })
        : empty(term ? 'Nothing on this page matches the search.' : 'No requests match these filters.'));
      const newer = h('button', { type: 'button', class: 'btn', disabled: current === null }, '← Newer');
      const newest = h('button', { type: 'button', class: 'btn btn-ghost', disabled: current === null }, 'Newest');
      const older = h('button', { type: 'button', class: 'btn', disabled: page.next_before === null }, 'Older →');
      newer.addEventListener('click', () => load(cursors.pop() || undefined));
      newest.addEventListener('click', () => { cursors = []; load(); });
      older.addEventListener('click', () => { cursors.push(current); load(page.next_before); });
      mount(pager, newest, newer, summary, older);
    }

    function reset() {
      for (const i of [keyIn, modelIn, providerIn, statusIn, search]) i.value = '';
      limitSel.value = '100';
      cursors = [];
      load();
    }

    form.addEventListener('submit', (e) => {
      e.preventDefault();
      cursors = [];
      load();
    });
    search.addEventListener('input', show);

    mount(el,
      h('div', { class: 'page-head' }, h('h1', null, 'Logs'),
        h('div', { class: 'page-actions' }, h('button', { type: 'button', class: 'btn', on: { click: () => load(current || undefined) } }, 'Refresh'))),
      form,
      h('div', { class: 'toolbar' }, search),
      results,
      pager,
      h('p', { class: 'muted small' }, 'One row per authenticated request. Select a row for its usage and price details.'));
    load();
  },
};
