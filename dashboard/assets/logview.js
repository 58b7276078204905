// What the Live and Logs pages share: the columns of a request-log row and its detail dialog.

import {
  badge, cost, dateTime, details, h, int, modal, ms, statusBadge, timeOnly,
} from './ui.js';

const tokens = (r) => (r.prompt_tokens === null || r.prompt_tokens === undefined)
  ? h('span', { class: 'muted' }, '—')
  : h('span', { class: 'nowrap' }, `${int(r.prompt_tokens)} → ${int(r.completion_tokens)}`);

export function logColumns({ timeOnly: onlyTime = false } = {}) {
  return [
    { label: 'Time', class: 'nowrap', cell: (r) => h('time', { datetime: r.created_at, title: dateTime(r.created_at) }, onlyTime ? timeOnly(r.created_at) : dateTime(r.created_at)) },
    { label: 'Key', cell: (r) => r.key_name || h('span', { class: 'muted' }, '—') },
    { label: 'Model', class: 'model', cell: (r) => h('span', { class: 'model-cell' }, r.model || '—', r.stream ? badge('stream', 'info') : null) },
    { label: 'Provider', cell: (r) => r.provider || h('span', { class: 'muted' }, '—') },
    { label: 'Status', cell: (r) => h('span', { title: r.error || null }, statusBadge(r.status)) },
    { label: 'Latency', class: 'num', cell: (r) => ms(r.latency_ms) },
    { label: 'TTFT', class: 'num', cell: (r) => (r.ttft_ms === null || r.ttft_ms === undefined ? h('span', { class: 'muted' }, '—') : ms(r.ttft_ms)) },
    { label: 'Tokens in → out', class: 'num', cell: tokens },
    { label: 'Cost', class: 'num', cell: logCost },
  ];
}

/** A request with nothing to bill (no usage, no price to look up) shows a dash, not "unpriced". */
function logCost(r) {
  const nothing = (r.cost_usd === null || r.cost_usd === undefined) && !r.price_note
    && (r.prompt_tokens === null || r.prompt_tokens === undefined);
  if (nothing) return h('span', { class: 'muted', title: 'No usage to price.' }, '—');
  return cost(r.cost_usd, r.price_note);
}

export const rowAttrs = (r) => ({ data: { requestId: r.request_id, id: String(r.id) } });

const PRICE_SOURCES = {
  override: 'a price override in the configuration',
  exact: 'the registry, exact model id',
  stripped: 'the registry, after removing a date suffix',
  alias: 'a configured alias',
  none: 'no price found',
};

const USAGE_SOURCES = {
  reported: 'reported by the provider',
  estimated: 'estimated by the gateway (the stream ended before the provider reported usage)',
};

export function showLog(r) {
  const costValue = r.cost_usd === null || r.cost_usd === undefined
    ? h('span', null, h('span', { class: 'unpriced' }, 'unpriced'), r.price_note ? ` — ${r.price_note}` : '')
    : cost(r.cost_usd);
  const body = h('div', { class: 'log-detail' },
    h('div', { class: 'log-detail-head' }, statusBadge(r.status), h('code', null, r.request_id)),
    r.error ? h('div', { class: 'alert alert-bad' }, r.error) : null,
    h('h3', null, 'Request'),
    details([
      ['Time', dateTime(r.created_at)],
      ['Request id', h('code', null, r.request_id)],
      ['Log id', String(r.id)],
      ['Key', r.key_name],
      ['Model (requested)', r.model],
      ['Model (upstream)', r.upstream_model],
      ['Provider', r.provider],
      ['Streamed', r.stream ? 'yes' : 'no'],
      ['Status', String(r.status)],
      ['Latency', ms(r.latency_ms)],
      ['Time to first token', r.ttft_ms === null || r.ttft_ms === undefined ? null : ms(r.ttft_ms)],
    ]),
    h('h3', null, 'Usage'),
    details([
      ['Prompt tokens', int(r.prompt_tokens)],
      ['of which cached', int(r.cached_tokens)],
      ['Completion tokens', int(r.completion_tokens)],
      ['of which reasoning', int(r.reasoning_tokens)],
      ['Usage source', r.usage_source ? h('span', null, h('code', null, r.usage_source), ` — ${USAGE_SOURCES[r.usage_source] || ''}`) : 'no usage'],
    ]),
    h('h3', null, 'Price'),
    details([
      ['Cost', costValue],
      ['Price source', r.price_source ? h('span', null, h('code', null, r.price_source), PRICE_SOURCES[r.price_source] ? ` — ${PRICE_SOURCES[r.price_source]}` : '') : null],
      ['Price note', r.price_note],
      ['Registry version', r.registry_version ? h('code', null, r.registry_version) : null],
    ]),
    r.attempts && r.attempts.length ? h('h3', null, 'Upstream attempts') : null,
    r.attempts && r.attempts.length
      ? h('ol', { class: 'attempts' }, ...r.attempts.map((a) => h('li', null,
        h('code', null, a.target), ' — ',
        a.error ? h('span', { class: 'text-warn' }, `${a.status ? `HTTP ${a.status}: ` : ''}${a.error}`) : `HTTP ${a.status || 200}`,
        ` (${ms(a.ms)})`)))
      : null);
  return modal('Request', body, { wide: true });
}
