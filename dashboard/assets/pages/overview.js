// Overview: live counters (WebSocket metrics every 2 s), totals for a range (from the usage
// rollups), charts (server-drawn SVG) and provider status.

import { api, qs } from '../api.js';
import { chart } from '../charts.js';
import {
  badge, bytes, cost, duration, empty, errorBox, h, int, mount, ms, pct, select, short, throttle, utcDay, ago,
} from '../ui.js';

const RANGES = [['1', 'Today'], ['7', 'Last 7 days'], ['30', 'Last 30 days'], ['90', 'Last 90 days']];

export default {
  render(el, { live, theme }) {
    let days = sessionStorage.getItem('gg-overview-days') || '7';
    const range = () => ({ group_by: 'day', from: utcDay(-(Number(days) - 1)), to: utcDay(0) });

    // Live counters -------------------------------------------------------------------------
    const tiles = {};
    const tile = (id, label, hint) => {
      const value = h('div', { class: 'tile-value', data: { metric: id } }, '—');
      const sub = h('div', { class: 'tile-sub' }, hint || '');
      tiles[id] = { value, sub };
      return h('div', { class: 'tile' }, h('div', { class: 'tile-label' }, label), value, sub);
    };
    const liveTiles = h('div', { class: 'tiles tiles-live' },
      tile('rps', 'Requests / s'),
      tile('in_flight', 'In flight'),
      tile('error_rate', 'Error rate', 'last 2 s'),
      tile('cpu', 'Gateway CPU'),
      tile('rss', 'Gateway memory'),
      tile('sys', 'System memory'),
      tile('queue', 'Log queue', 'rows waiting'),
      tile('uptime', 'Uptime'));
    const liveNote = h('span', { class: 'muted' });
    const showMetrics = (m) => {
      if (!m) return;
      tiles.rps.value.textContent = m.requests_per_second.toFixed(m.requests_per_second < 10 ? 1 : 0);
      tiles.in_flight.value.textContent = int(m.in_flight);
      tiles.error_rate.value.textContent = pct(m.error_rate * 100);
      tiles.error_rate.value.classList.toggle('text-bad', m.error_rate > 0.05);
      tiles.cpu.value.textContent = pct(m.process_cpu_percent);
      tiles.cpu.sub.textContent = `system ${pct(m.system_cpu_percent, 0)}`;
      tiles.rss.value.textContent = bytes(m.process_rss_bytes);
      tiles.sys.value.textContent = bytes(m.system_memory_used_bytes);
      tiles.sys.sub.textContent = `of ${bytes(m.system_memory_total_bytes)}`;
      tiles.queue.value.textContent = int(m.log_queue_depth);
      tiles.uptime.value.textContent = duration(m.uptime_seconds);
      tiles.uptime.sub.textContent = `${int(m.hub_clients)} dashboard${m.hub_clients === 1 ? '' : 's'} connected`;
    };
    const showStatus = (s) => {
      liveNote.textContent = s === 'open' ? 'updated every 2 s' : 'waiting for the live connection…';
    };
    showMetrics(live.metrics);
    showStatus(live.state);

    // Totals for the range ------------------------------------------------------------------
    const totals = h('div', { class: 'tiles tiles-totals' });
    async function loadTotals() {
      try {
        const r = await api(`/api/usage${qs(range())}`);
        const sum = { requests: 0, errors: 0, prompt: 0, completion: 0, cached: 0, cost: null, unpriced: 0 };
        for (const i of r.items) {
          sum.requests += i.requests;
          sum.errors += i.errors;
          sum.prompt += i.prompt_tokens;
          sum.completion += i.completion_tokens;
          sum.cached += i.cached_tokens;
          if (i.cost_usd !== null) sum.cost = (sum.cost || 0) + i.cost_usd;
          sum.unpriced += i.unpriced_requests;
        }
        const box = (label, value, sub, id) => h('div', { class: 'tile tile-total', data: { total: id } },
          h('div', { class: 'tile-label' }, label), h('div', { class: 'tile-value' }, value), h('div', { class: 'tile-sub' }, sub));
        const costSub = sum.unpriced
          ? h('span', { class: 'unpriced', title: 'Requests to models with no known price are not in the sum.' },
            `${int(sum.unpriced)} unpriced request${sum.unpriced === 1 ? '' : 's'} not included`)
          : 'all requests priced';
        mount(totals,
          box('Requests', int(sum.requests), `${r.from} to ${r.to}`, 'requests'),
          box('Tokens', short(sum.prompt + sum.completion), `${short(sum.prompt)} in (${short(sum.cached)} cached) · ${short(sum.completion)} out`, 'tokens'),
          box('Cost', sum.cost === null ? cost(null, 'No request in this range had a known price.') : cost(sum.cost), costSub, 'cost'),
          box('Errors', int(sum.errors), sum.requests ? `${pct((sum.errors / sum.requests) * 100)} of requests` : 'no requests', 'errors'));
      } catch (e) {
        mount(totals, errorBox(e));
      }
    }

    // Charts --------------------------------------------------------------------------------
    const charts = [
      chart('requests', 'Requests per day', range, theme),
      chart('tokens', 'Tokens per day', range, theme),
      chart('cost', 'Cost per day (USD)', range, theme),
      chart('errors', 'Errors per day', range, theme),
      chart('latency', 'Latency of recent requests', range, theme),
    ];
    const refreshCharts = () => charts.forEach((c) => c.refresh());

    // Providers -----------------------------------------------------------------------------
    const providerBox = h('div', { class: 'card provider-status' }, h('div', { class: 'muted' }, 'Loading providers…'));
    async function loadProviders() {
      try {
        const r = await api('/api/providers');
        if (!r.items.length) {
          mount(providerBox, empty('No providers configured.'));
          return;
        }
        mount(providerBox, h('ul', { class: 'provider-list' }, r.items.map((p) => {
          const health = p.health || { status: 'unknown' };
          const kind = !p.available ? 'neutral' : health.status === 'ok' ? 'ok' : health.status === 'failing' ? 'bad' : 'info';
          const label = !p.available ? 'unavailable' : health.status === 'unknown' ? 'ready' : health.status;
          return h('li', { class: 'provider-row' },
            h('span', { class: `dot dot-${kind}`, 'aria-hidden': 'true' }),
            h('span', { class: 'provider-name' }, p.name),
            badge(label, kind),
            h('span', { class: 'muted provider-detail' },
              !p.available ? (p.unavailable_reason || 'not configured')
                : health.checked_at ? `${health.latency_ms !== null && health.latency_ms !== undefined ? ms(health.latency_ms) + ' · ' : ''}checked ${ago(health.checked_at)}`
                  : p.key_source ? `key from ${p.key_source}` : ''));
        })));
      } catch (e) {
        mount(providerBox, errorBox(e));
      }
    }

    // Layout --------------------------------------------------------------------------------
    const rangeSelect = select('range', RANGES, days);
    rangeSelect.addEventListener('change', () => {
      days = rangeSelect.value;
      sessionStorage.setItem('gg-overview-days', days);
      loadTotals();
      refreshCharts();
    });
    mount(el,
      h('div', { class: 'page-head' }, h('h1', null, 'Overview'),
        h('div', { class: 'page-actions' }, h('label', { class: 'inline-field' }, h('span', null, 'Range'), rangeSelect))),
      h('section', { class: 'section' },
        h('div', { class: 'section-head' }, h('h2', null, 'Right now'), liveNote),
        liveTiles),
      h('section', { class: 'section' }, h('div', { class: 'section-head' }, h('h2', null, 'Totals')), totals),
      h('section', { class: 'section' },
        h('div', { class: 'section-head' }, h('h2', null, 'Over time'), h('span', { class: 'muted' }, 'UTC days')),
        h('div', { class: 'chart-grid' }, charts.map((c) => c.el))),
      h('section', { class: 'section' },
        h('div', { class: 'section-head' }, h('h2', null, 'Providers'), h('a', { href: '#/providers' }, 'Manage')),
        providerBox));

    loadTotals();
    refreshCharts();
    loadProviders();
    // New requests move the totals and charts: redraw at most every 5 s while traffic flows.
    const onRequest = throttle(() => {
      loadTotals();
      refreshCharts();
    }, 5000);
    const offs = [
      live.on('metrics', showMetrics),
      live.on('status', showStatus),
      live.on('request_log', onRequest),
      live.on('event', (ev) => { if (ev && (ev.kind === 'provider_health_changed' || ev.kind === 'circuit_changed')) loadProviders(); }),
    ];
    const slow = setInterval(() => {
      loadTotals();
      refreshCharts();
      loadProviders();
    }, 60000);
    return () => {
      offs.forEach((off) => off());
      clearInterval(slow);
      charts.forEach((c) => c.destroy());
    };
  },
};
