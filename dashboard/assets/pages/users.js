// Users (admins only; the API refuses viewers too): list, add with a role, remove.

import { api } from '../api.js';
import {
  badge, confirmAction, dateTime, empty, errorBox, field, h, mount, select, table, toast,
} from '../ui.js';

export default {
  adminOnly: true,
  render(el, { user }) {
    const list = h('div', null, h('div', { class: 'muted loading' }, 'Loading…'));

    async function load() {
      try {
        const r = await api('/api/users');
        const columns = [
          { label: 'Username', cell: (u) => h('span', null, h('strong', null, u.username), u.username === user.username ? h('span', { class: 'muted' }, ' (you)') : '') },
          { label: 'Role', cell: (u) => badge(u.role, u.role === 'admin' ? 'info' : 'neutral') },
          { label: 'Created', class: 'nowrap', cell: (u) => dateTime(u.created_at) },
          {
            label: '',
            class: 'actions',
            cell: (u) => (u.username === user.username ? ''
              : h('button', { type: 'button', class: 'btn btn-small btn-danger-ghost', on: { click: () => remove(u) } }, 'Remove')),
          },
        ];
        mount(list, r.items.length ? table(columns, r.items) : empty('No users.'));
      } catch (e) {
        mount(list, errorBox(e));
      }
    }

    async function remove(u) {
      if (!await confirmAction('Remove user', `Remove ${u.username}? Their sessions end at once.`, 'Remove')) return;
      try {
        await api(`/api/users/${encodeURIComponent(u.username)}`, { method: 'DELETE' });
        toast(`Removed ${u.username}.`);
        load();
      } catch (e) {
        toast(e.message, 'bad');
      }
    }

    const username = h('input', { name: 'username', required: true, autocomplete: 'off', spellcheck: 'false', autocapitalize: 'none' });
    const role = select('role', [['viewer', 'viewer (read only)'], ['admin', 'admin']], 'viewer');
    const password = h('input', { name: 'password', type: 'password', required: true, autocomplete: 'new-password' });
    const error = h('div', { class: 'alert alert-bad', role: 'alert', hidden: true });
    const form = h('form', { class: 'card form-grid' },
      h('h2', { class: 'form-title' }, 'Add a user'),
      field('Username', username), field('Role', role), field('Password', password, 'Give it to them safely; they can change it under Account.'),
      error,
      h('div', { class: 'form-actions' }, h('button', { type: 'submit', class: 'btn btn-primary' }, 'Add user')));
    form.addEventListener('submit', async (e) => {
      e.preventDefault();
      error.hidden = true;
      try {
        await api('/api/users', { method: 'POST', body: { username: username.value.trim(), role: role.value, password: password.value } });
        toast(`Added ${username.value.trim()}.`);
        form.reset();
        load();
      } catch (err) {
        error.textContent = err.message;
        error.hidden = false;
      }
    });

    mount(el, h('div', { class: 'page-head' }, h('h1', null, 'Users')),
      h('p', { class: 'muted' }, 'Admins can change everything; viewers can read logs, usage and settings.'),
      form,
      h('section', { class: 'section' }, list));
    load();
  },
};
