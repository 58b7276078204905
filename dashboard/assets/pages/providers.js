// Providers: each upstream's configuration, key state, availability and health; admins set a key
// (a masked field; the key is stored encrypted and never shown again) and test the connection.

import { api } from '../api.js';
import {
  ago, badge, dateTime, details, empty, errorBox, h, int, mount, ms, toast,
} from '../ui.js';

const HEALTH_KIND = { ok: 'ok', failing: 'bad', unknown: 'neutral' };
const CIRCUIT_KIND = { closed: 'ok', open: 'bad', half_open: 'warn' };
const KEY_SOURCES = { env: 'environment variable', config: 'configuration file', database: 'dashboard (encrypted)', none: 'none' };

export default {
  render(el, { user, live }) {
    const isAdmin = user.role === 'admin';
    const list = h('div', { class: 'provider-cards' }, h('div', { class: 'muted loading' }, 'Loading…'));

    const results = new Map();

    async function load() {
      try {
        const r = await api('/api/providers');
        mount(list, r.items.length ? r.items.map(card) : empty('No providers.'));
      } catch (e) {
        mount(list, errorBox(e));
      }
    }

    function card(p) {
      const health = p.health || { status: 'unknown' };
      // Kept across re-renders: a live health or circuit event must not wipe a test's outcome.
      const result = results.get(p.name) || h('div', { class: 'test-result', 'aria-live': 'polite' });
      results.set(p.name, result);
      const testBtn = h('button', { type: 'button', class: 'btn btn-small', disabled: !p.has_key }, 'Test connection');
      testBtn.addEventListener('click', async () => {
        testBtn.disabled = true;
        mount(result, h('span', { class: 'muted' }, 'Testing…'));
        try {
          const t = await api(`/api/providers/${encodeURIComponent(p.name)}/test`, { method: 'POST' });
          mount(result, h('div', { class: `alert ${t.ok ? 'alert-ok' : 'alert-bad'}` },
            t.ok ? 'Connected' : 'Failed',
            t.status ? ` · HTTP ${t.status}` : '',
            t.latency_ms !== null && t.latency_ms !== undefined ? ` · ${ms(t.latency_ms)}` : '',
            t.message ? ` · ${t.message}` : ''));
        } catch (e) {
          mount(result, errorBox(e));
        } finally {
          testBtn.disabled = false;
        }
      });

      let toggleBtn = null;
      if (isAdmin) {
        toggleBtn = h('button', { type: 'button', class: 'btn btn-small', data: { action: 'toggle' } },
          p.enabled ? 'Disable' : 'Enable');
        toggleBtn.addEventListener('click', async () => {
          toggleBtn.disabled = true;
          try {
            await api(`/api/providers/${encodeURIComponent(p.name)}/enabled`, { method: 'PUT', body: { enabled: !p.enabled } });
            toast(`${p.name} ${p.enabled ? 'disabled' : 'enabled'}.`);
            load();
          } catch (err) {
            mount(result, errorBox(err));
            toggleBtn.disabled = false;
          }
        });
      }

      let keyForm = null;
      if (isAdmin) {
        const keyIn = h('input', {
          type: 'password', name: 'api_key', autocomplete: 'new-password', spellcheck: 'false',
          placeholder: p.has_key ? 'replace the key' : 'paste the provider key', 'aria-label': `${p.name} API key`,
        });
        const save = h('button', { type: 'submit', class: 'btn btn-small btn-primary' }, 'Save key');
        keyForm = h('form', { class: 'key-form' }, keyIn, save);
        keyForm.addEventListener('submit', async (e) => {
          e.preventDefault();
          if (!keyIn.value.trim()) return;
          save.disabled = true;
          try {
            await api(`/api/providers/${encodeURIComponent(p.name)}/key`, { method: 'PUT', body: { api_key: keyIn.value.trim() } });
            keyIn.value = '';
            toast(`Saved the ${p.name} key (encrypted).`);
            load();
          } catch (err) {
            mount(result, errorBox(err));
          } finally {
            save.disabled = false;
          }
        });
      }

      return h('article', { class: 'card provider-card', data: { provider: p.name } },
        h('header', { class: 'provider-head' },
          h('span', { class: `dot dot-${p.available ? HEALTH_KIND[health.status] || 'neutral' : 'neutral'}`, 'aria-hidden': 'true' }),
          h('h2', null, p.name),
          badge(p.kind, 'info'),
          p.enabled ? badge('enabled', 'ok') : badge('disabled', 'neutral'),
          p.available ? null : badge('unavailable', 'warn')),
        details([
          ['Base URL', h('code', { class: 'break' }, p.base_url || '—')],
          ['API key', p.has_key ? `set, from ${KEY_SOURCES[p.key_source] || p.key_source}` : h('span', { class: 'text-warn' }, 'not set')],
          p.available ? null : ['Why unavailable', p.unavailable_reason],
          ['Health', h('span', null, badge(health.status, HEALTH_KIND[health.status] || 'neutral'),
            health.latency_ms !== null && health.latency_ms !== undefined ? ` ${ms(health.latency_ms)}` : '')],
          ['Last checked', health.checked_at ? h('span', { title: dateTime(health.checked_at) }, ago(health.checked_at)) : 'not yet'],
          health.message ? ['Message', health.message] : null,
          ...(p.circuits || []).map((c) => [`Circuit ${c.target.slice(p.name.length + 1)}`,
            h('span', { class: 'circuit', data: { state: c.state } },
              badge(c.state.replace('_', '-'), CIRCUIT_KIND[c.state] || 'neutral'),
              ` ${int(c.failures)}/${int(c.requests)} failed in the window`,
              c.retry_in_ms ? `, retry in ${ms(c.retry_in_ms)}` : '',
              c.last_error ? h('span', { class: 'muted small break' }, ` — ${c.last_error}`) : '')]),
        ]),
        isAdmin ? h('div', { class: 'provider-actions' }, keyForm, testBtn, toggleBtn) : null,
        result);
    }

    mount(el,
      h('div', { class: 'page-head' }, h('h1', null, 'Providers'),
        h('div', { class: 'page-actions' }, h('button', { type: 'button', class: 'btn', on: { click: load } }, 'Refresh'))),
      h('p', { class: 'muted' }, 'A provider is used when it has a key. Keys saved here are encrypted with the gateway\'s encryption key; keys from the environment or the configuration file take effect at start.'),
      list);
    load();
    // Health and circuit changes arrive over the live connection: the cards follow them.
    const off = live && live.on('event', (ev) => {
      if (ev && (ev.kind === 'provider_health_changed' || ev.kind === 'circuit_changed')) load();
    });
    return () => { if (off) off(); };
  },
};
