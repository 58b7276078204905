// Keys: client keys with their limits and spend; admins create (the key is shown once, here,
// and never again) and revoke.

import { api } from '../api.js';
import {
  badge, confirmAction, copyButton, dateOnly, dateTime, empty, errorBox, field, h, int, mount, table, toast, usd,
} from '../ui.js';

const STATUS_KIND = { active: 'ok', revoked: 'bad', expired: 'neutral' };

function spend(k) {
  const spent = k.spent_usd || 0;
  if (k.budget_usd === null || k.budget_usd === undefined) {
    return h('span', { class: 'nowrap' }, usd(spent), h('span', { class: 'muted' }, ' · no budget'));
  }
  const ratio = k.budget_usd > 0 ? spent / k.budget_usd : 1;
  return h('div', { class: 'spend' },
    h('meter', {
      min: '0', max: String(k.budget_usd || 1), low: String((k.budget_usd || 1) * 0.75), high: String((k.budget_usd || 1) * 0.9),
      optimum: '0', value: String(Math.min(spent, k.budget_usd || 1)), title: `${Math.round(ratio * 100)}% of the budget`,
    }),
    h('span', { class: 'nowrap' }, `${usd(spent)} of ${usd(k.budget_usd)}`));
}

export default {
  render(el, { user }) {
    const isAdmin = user.role === 'admin';
    const list = h('div', null, h('div', { class: 'muted loading' }, 'Loading…'));
    const reveal = h('div');

    async function load() {
      try {
        const r = await api('/api/keys');
        const columns = [
          { label: 'Name', cell: (k) => h('strong', null, k.name) },
          { label: 'Key', cell: (k) => h('code', { class: 'prefix' }, `${k.prefix}…`) },
          { label: 'Status', cell: (k) => badge(k.status, STATUS_KIND[k.status] || 'neutral') },
          { label: 'Models', cell: (k) => (k.models && k.models.length ? k.models.join(', ') : h('span', { class: 'muted' }, 'all')) },
          { label: 'RPM', class: 'num', cell: (k) => (k.rpm ? int(k.rpm) : h('span', { class: 'muted' }, '—')) },
          { label: 'TPM', class: 'num', cell: (k) => (k.tpm ? int(k.tpm) : h('span', { class: 'muted' }, '—')) },
          { label: 'Spend / budget', cell: spend },
          {
            label: 'Expires',
            class: 'nowrap',
            cell: (k) => (k.revoked_at ? h('span', { class: 'muted', title: dateTime(k.revoked_at) }, `revoked ${dateOnly(k.revoked_at)}`)
              : k.expires_at ? h('span', { title: dateTime(k.expires_at) }, dateOnly(k.expires_at)) : h('span', { class: 'muted' }, 'never')),
          },
          { label: 'Created', class: 'nowrap', cell: (k) => h('span', { title: dateTime(k.created_at) }, dateOnly(k.created_at)) },
        ];
        if (isAdmin) {
          columns.push({
            label: '',
            class: 'actions',
            cell: (k) => (k.status === 'active'
              ? h('button', { type: 'button', class: 'btn btn-small btn-danger-ghost', on: { click: () => revoke(k) } }, 'Revoke')
              : ''),
          });
        }
        // Active keys first, newest first within each group.
        const items = [...r.items].sort((a, b) => (b.status === 'active') - (a.status === 'active')
          || String(b.created_at).localeCompare(String(a.created_at)));
        mount(list, items.length
          ? table(columns, items, { rowAttrs: (k) => ({ data: { key: k.name, status: k.status } }), class: 'keys-table' })
          : empty(isAdmin ? 'No keys yet. Create one above; clients send it as a Bearer token.' : 'No keys yet.'));
      } catch (e) {
        mount(list, errorBox(e));
      }
    }

    async function revoke(k) {
      if (!await confirmAction('Revoke key', `Revoke "${k.name}"? Clients using it get 401 from now on. This cannot be undone.`, 'Revoke')) return;
      try {
        await api(`/api/keys/${encodeURIComponent(k.name)}/revoke`, { method: 'POST' });
        toast(`Revoked ${k.name}.`);
        load();
      } catch (e) {
        toast(e.message, 'bad');
      }
    }

    function showNewKey(key, item) {
      const input = h('input', { class: 'secret-value', readonly: true, value: key, 'aria-label': 'New client key', spellcheck: 'false' });
      input.addEventListener('focus', () => input.select());
      const done = h('button', { type: 'button', class: 'btn' }, 'Done, I have copied it');
      done.addEventListener('click', () => mount(reveal));
      mount(reveal, h('div', { class: 'card new-key', role: 'status' },
        h('h2', null, `Key "${item.name}" created`),
        h('p', null, h('strong', null, 'Copy it now: '), 'it is shown only this once and stored only as a hash.'),
        h('div', { class: 'secret-row' }, input, copyButton(key)),
        h('p', { class: 'muted small' }, 'Use it as ', h('code', null, 'Authorization: Bearer <key>'), ' with base URL ',
          h('code', null, `${location.origin}/v1`), '.'),
        done));
      input.focus();
    }

    let form = null;
    if (isAdmin) {
      const name = h('input', { name: 'name', required: true, maxlength: '128', placeholder: 'my-app', spellcheck: 'false', autocomplete: 'off' });
      const models = h('input', { name: 'models', placeholder: 'all models (or gpt-4o-mini, gemini-2.5-flash)', spellcheck: 'false' });
      const rpm = h('input', { name: 'rpm', type: 'number', min: '1', step: '1', placeholder: 'no limit' });
      const tpm = h('input', { name: 'tpm', type: 'number', min: '1', step: '1', placeholder: 'no limit' });
      const budget = h('input', { name: 'budget_usd', type: 'number', min: '0', step: '0.01', placeholder: 'no budget' });
      const expires = h('input', { name: 'expires_at', type: 'datetime-local' });
      const error = h('div', { class: 'alert alert-bad', role: 'alert', hidden: true });
      const submit = h('button', { type: 'submit', class: 'btn btn-primary' }, 'Create key');
      form = h('form', { class: 'card form-grid create-key' },
        h('h2', { class: 'form-title' }, 'New key'),
        field('Name', name),
        field('Allowed models', models, 'Comma-separated; empty allows every model.'),
        field('Requests per minute', rpm),
        field('Tokens per minute', tpm, 'Prompt plus completion tokens.'),
        field('Budget (USD)', budget, 'Requests that would exceed it get 429.'),
        field('Expires', expires, 'Local time; empty never expires.'),
        error,
        h('div', { class: 'form-actions' }, submit));
      form.addEventListener('submit', async (e) => {
        e.preventDefault();
        error.hidden = true;
        const body = { name: name.value.trim() };
        const m = models.value.split(',').map((s) => s.trim()).filter(Boolean);
        if (m.length) body.models = m;
        if (rpm.value) body.rpm = Number(rpm.value);
        if (tpm.value) body.tpm = Number(tpm.value);
        if (budget.value) body.budget_usd = Number(budget.value);
        if (expires.value) body.expires_at = new Date(expires.value).toISOString();
        submit.disabled = true;
        try {
          const r = await api('/api/keys', { method: 'POST', body });
          form.reset();
          showNewKey(r.key, r.item);
          load();
        } catch (err) {
          error.textContent = err.message;
          error.hidden = false;
        } finally {
          submit.disabled = false;
        }
      });
    }

    mount(el,
      h('div', { class: 'page-head' }, h('h1', null, 'Keys'),
        h('div', { class: 'page-actions' }, h('button', { type: 'button', class: 'btn', on: { click: load } }, 'Refresh'))),
      reveal,
      form,
      h('section', { class: 'section' }, list),
      isAdmin ? null : h('p', { class: 'muted small' }, 'Viewers can see keys; creating and revoking them needs an admin.'));
    load();
    return () => mount(reveal);
  },
};
