// Live: the request stream from the WebSocket, newest first, capped. Starts with the most recent
// rows from /api/logs so the page is not empty; everything after comes from the socket.

import { api } from '../api.js';
import { logColumns, rowAttrs, showLog } from '../logview.js';
import {
  dateTime, errorBox, h, int, mount, tableRow, timeOnly,
} from '../ui.js';

const MAX_ROWS = 200;
const MAX_EVENTS = 30;

const EVENT_TEXT = {
  registry_refreshed: (e) => `Model registry refreshed${e.models ? ` (${int(e.models)} models)` : ''}`,
  registry_refresh_failed: (e) => `Model registry refresh failed${e.reason ? `: ${e.reason}` : ''}`,
  key_created: (e) => `Key created: ${e.name}`,
  key_revoked: (e) => `Key revoked: ${e.name}`,
  circuit_changed: (e) => `Circuit for ${e.target} is ${String(e.state).replace('_', '-')}${e.reason ? `: ${e.reason}` : ''}`,
  provider_health_changed: (e) => `Provider ${e.provider || e.name || ''} is ${e.status || 'changed'}${e.message ? `: ${e.message}` : ''}`,
};

export default {
  render(el, { live }) {
    const columns = logColumns({ timeOnly: true });
    const tbody = h('tbody', { id: 'live-rows' });
    const seen = new Set();
    let paused = false;
    let buffered = [];
    let count = 0;

    const statusText = h('span', { class: 'live-state' });
    const counter = h('span', { class: 'muted' });
    const lagNote = h('div', { class: 'alert alert-warn', hidden: true });
    const emptyRow = h('tr', { class: 'empty-row' }, h('td', { colspan: String(columns.length) }, 'Waiting for requests…'));
    tbody.appendChild(emptyRow);

    const updateCounter = () => {
      counter.textContent = `${int(count)} received${paused && buffered.length ? ` · ${buffered.length} waiting` : ''}`;
    };
    const showStatus = (s) => {
      statusText.dataset.state = s;
      statusText.textContent = {
        open: 'Connected — new requests appear as they finish',
        connecting: 'Connecting…',
        waiting: `Disconnected — retrying in ${Math.max(1, Math.round((live.retryAt - Date.now()) / 1000))} s`,
        idle: 'Offline',
      }[s] || s;
    };

    // Live rows arrive oldest first and each goes on top; the initial page of older rows
    // (newest first) goes underneath whatever already arrived.
    function addRows(rows, fresh) {
      emptyRow.remove();
      for (const r of rows) {
        if (seen.has(r.id)) continue;
        seen.add(r.id);
        const tr = tableRow(columns, r, { onRow: showLog, rowAttrs });
        if (fresh) {
          tr.classList.add('flash');
          tbody.insertBefore(tr, tbody.firstChild);
        } else {
          tbody.appendChild(tr);
        }
      }
      while (tbody.children.length > MAX_ROWS) {
        const last = tbody.lastElementChild;
        seen.delete(Number(last.dataset.id));
        last.remove();
      }
    }

    const onLog = (r) => {
      if (!r || r.id === undefined) return;
      count++;
      if (paused) buffered.push(r);
      else addRows([r], true);
      updateCounter();
    };

    const events = h('ul', { class: 'event-list' }, h('li', { class: 'muted' }, 'No events yet.'));
    const addEvent = (text, kind) => {
      if (events.firstElementChild && events.firstElementChild.classList.contains('muted')) events.replaceChildren();
      events.insertBefore(h('li', { class: `event event-${kind}` },
        h('time', null, timeOnly(new Date().toISOString())), ' ', text), events.firstChild);
      while (events.children.length > MAX_EVENTS) events.lastElementChild.remove();
    };
    const onEvent = (e) => {
      if (!e || !e.kind) return;
      const f = EVENT_TEXT[e.kind];
      const bad = e.kind.endsWith('failed') || e.status === 'failing';
      addEvent(f ? f(e) : e.kind, bad ? 'bad' : 'info');
    };
    const onLagged = (d) => {
      const n = (d && d.skipped) || 0;
      lagNote.textContent = `This browser fell behind and skipped ${int(live.stats.skipped)} message${live.stats.skipped === 1 ? '' : 's'} (the gateway never waits for a dashboard). The Logs page has every request.`;
      lagNote.hidden = false;
      addEvent(`Skipped ${int(n)} messages`, 'warn');
    };

    const pauseBtn = h('button', { type: 'button', class: 'btn' }, 'Pause');
    pauseBtn.addEventListener('click', () => {
      paused = !paused;
      pauseBtn.textContent = paused ? 'Resume' : 'Pause';
      pauseBtn.classList.toggle('btn-primary', paused);
      if (!paused && buffered.length) {
        addRows(buffered, true);
        buffered = [];
      }
      updateCounter();
    });
    const clearBtn = h('button', { type: 'button', class: 'btn btn-ghost' }, 'Clear');
    clearBtn.addEventListener('click', () => {
      tbody.replaceChildren(emptyRow);
      buffered = [];
      updateCounter();
    });

    const head = h('thead', null, h('tr', null, columns.map((c) => h('th', { class: c.class, scope: 'col' }, c.label))));
    const loadError = h('div');
    mount(el,
      h('div', { class: 'page-head' }, h('h1', null, 'Live'),
        h('div', { class: 'page-actions' }, pauseBtn, clearBtn)),
      h('div', { class: 'live-bar card' }, statusText, counter),
      lagNote,
      loadError,
      h('div', { class: 'live-layout' },
        h('div', { class: 'table-wrap' }, h('table', { class: 'data live-table' }, head, tbody)),
        h('aside', { class: 'card live-events' }, h('h2', null, 'Events'), events)));

    showStatus(live.state);
    updateCounter();
    const ticker = setInterval(() => { if (live.state === 'waiting') showStatus('waiting'); }, 1000);
    const offs = [
      live.on('request_log', onLog),
      live.on('event', onEvent),
      live.on('lagged', onLagged),
      live.on('status', showStatus),
    ];
    api('/api/logs?limit=50').then((r) => {
      if (r.items.length) addRows(r.items, false);
      else if (!count) emptyRow.firstChild.textContent = 'No requests yet. Send one to /v1/chat/completions and it shows up here.';
    }).catch((e) => mount(loadError, errorBox(e)));
    addEvent(`Opened at ${dateTime(new Date().toISOString())}`, 'info');
    return () => {
      offs.forEach((off) => off());
      clearInterval(ticker);
    };
  },
};
