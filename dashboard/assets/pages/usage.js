// Usage & cost: totals by key, model, provider or day for a date range, as a chart and a table,
// exported to CSV in the browser from the same JSON.

import { api, qs } from '../api.js';
import { chart } from '../charts.js';
import {
  cost, download, empty, errorBox, field, h, int, mount, select, table, utcDay,
} from '../ui.js';

const GROUPS = [['day', 'Day'], ['model', 'Model'], ['key', 'Key'], ['provider', 'Provider']];
const METRICS = [['cost', 'Cost'], ['requests', 'Requests'], ['tokens', 'Tokens'], ['errors', 'Errors']];

const CSV_COLUMNS = ['group', 'requests', 'errors', 'prompt_tokens', 'cached_tokens', 'completion_tokens',
  'reasoning_tokens', 'cost_usd', 'unpriced_requests'];

function csvCell(v) {
  if (v === null || v === undefined) return '';
  const s = String(v);
  // Quote when needed; a leading =+-@ is neutralised so a spreadsheet does not run it as a formula.
  const safe = /^[=+\-@]/.test(s) && typeof v === 'string' ? `'${s}` : s;
  return /[",\n\r]/.test(safe) ? `"${safe.replace(/"/g, '""')}"` : safe;
}

export function toCsv(report) {
  const lines = [[report.group_by, ...CSV_COLUMNS.slice(1)].join(',')];
  for (const i of report.items) lines.push(CSV_COLUMNS.map((c) => csvCell(i[c])).join(','));
  return lines.join('\r\n') + '\r\n';
}

export default {
  render(el, { theme }) {
    const saved = JSON.parse(sessionStorage.getItem('gg-usage') || '{}');
    const groupSel = select('group_by', GROUPS, saved.group_by || 'day');
    const metricSel = select('metric', METRICS, saved.metric || 'cost');
    const fromIn = h('input', { type: 'date', name: 'from', value: saved.from || utcDay(-29), required: true });
    const toIn = h('input', { type: 'date', name: 'to', value: saved.to || utcDay(0), required: true });
    const filterKey = h('input', { name: 'key_name', placeholder: 'all keys', value: saved.key_name || '', spellcheck: 'false' });
    const exportBtn = h('button', { type: 'button', class: 'btn', disabled: true }, 'Export CSV');
    let report = null;

    const params = () => ({
      group_by: groupSel.value, from: fromIn.value, to: toIn.value, key_name: filterKey.value.trim(),
    });
    let chartBox = chart(metricSel.value, title(), params, theme, { height: 300 });
    const chartSlot = h('div', { class: 'usage-chart' }, chartBox.el);
    const results = h('div');

    function title() {
      const m = METRICS.find(([v]) => v === metricSel.value)[1];
      const g = GROUPS.find(([v]) => v === groupSel.value)[1].toLowerCase();
      return `${m} by ${g}`;
    }

    function newChart() {
      chartBox.destroy();
      chartBox = chart(metricSel.value, title(), params, theme, { height: 300 });
      mount(chartSlot, chartBox.el);
      chartBox.refresh();
    }

    async function load() {
      const p = params();
      sessionStorage.setItem('gg-usage', JSON.stringify({ ...p, metric: metricSel.value }));
      mount(results, h('div', { class: 'muted loading' }, 'Loading…'));
      exportBtn.disabled = true;
      newChart();
      try {
        report = await api(`/api/usage${qs(p)}`);
      } catch (e) {
        mount(results, errorBox(e));
        return;
      }
      // Days in order; groups biggest first by the charted measure, as the chart shows them.
      const measure = {
        cost: (i) => i.cost_usd ?? -1, requests: (i) => i.requests, errors: (i) => i.errors,
        tokens: (i) => i.prompt_tokens + i.completion_tokens,
      }[metricSel.value];
      const items = report.group_by === 'day' ? report.items
        : [...report.items].sort((a, b) => measure(b) - measure(a) || b.requests - a.requests);
      if (!items.length) {
        mount(results, empty('No requests in this range.'));
        return;
      }
      exportBtn.disabled = false;
      const total = items.reduce((t, i) => {
        for (const k of ['requests', 'errors', 'prompt_tokens', 'cached_tokens', 'completion_tokens', 'reasoning_tokens', 'unpriced_requests']) t[k] += i[k];
        if (i.cost_usd !== null) t.cost_usd = (t.cost_usd || 0) + i.cost_usd;
        return t;
      }, { group: 'Total', requests: 0, errors: 0, prompt_tokens: 0, cached_tokens: 0, completion_tokens: 0, reasoning_tokens: 0, cost_usd: null, unpriced_requests: 0 });
      const num = (k) => ({ label: k[1], class: 'num', cell: (r) => int(r[k[0]]), foot: (r) => int(r[k[0]]) });
      const costCell = (r) => cost(r.cost_usd, r.cost_usd === null ? 'None of these requests had a known price.' : null, r.unpriced_requests);
      const columns = [
        {
          label: GROUPS.find(([v]) => v === report.group_by)[1],
          cell: (r) => (r.group === null ? h('span', { class: 'muted' }, '(none)') : r.group),
          foot: () => h('strong', null, 'Total'),
        },
        num(['requests', 'Requests']), num(['errors', 'Errors']), num(['prompt_tokens', 'Input tokens']),
        num(['cached_tokens', 'Cached']), num(['completion_tokens', 'Output tokens']), num(['reasoning_tokens', 'Reasoning']),
        { label: 'Cost', class: 'num', cell: costCell, foot: costCell },
      ];
      mount(results, table(columns, items, { foot: total, class: 'usage-table' }),
        h('p', { class: 'muted small' },
          `${report.from} to ${report.to} (UTC days, both included). Cost sums priced requests only; `,
          'unpriced ones (no known price for the model) are counted separately, never as $0.'));
    }

    exportBtn.addEventListener('click', () => {
      if (!report) return;
      download(`gophergate-usage-by-${report.group_by}-${report.from}-to-${report.to}.csv`, toCsv(report));
    });
    const form = h('form', { class: 'filters card' },
      field('Group by', groupSel), field('From', fromIn), field('To', toIn), field('Key', filterKey), field('Chart', metricSel),
      h('div', { class: 'filter-actions' }, h('button', { type: 'submit', class: 'btn btn-primary' }, 'Apply')));
    form.addEventListener('submit', (e) => { e.preventDefault(); load(); });
    groupSel.addEventListener('change', load);
    metricSel.addEventListener('change', load);

    mount(el,
      h('div', { class: 'page-head' }, h('h1', null, 'Usage & cost'), h('div', { class: 'page-actions' }, exportBtn)),
      form,
      chartSlot,
      results);
    load();
    return () => chartBox.destroy();
  },
};
