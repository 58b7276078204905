// Account: who is signed in, change the password (which ends every session), sign out.

import { api } from '../api.js';
import {
  dateTime, details, field, h, mount,
} from '../ui.js';

export default {
  render(el, { user, signedOut }) {
    const current = h('input', { type: 'password', name: 'current_password', autocomplete: 'current-password', required: true });
    const next = h('input', { type: 'password', name: 'new_password', autocomplete: 'new-password', required: true });
    const again = h('input', { type: 'password', name: 'confirm_password', autocomplete: 'new-password', required: true });
    const msg = h('div', { role: 'alert', hidden: true });
    const submit = h('button', { type: 'submit', class: 'btn btn-primary' }, 'Change password');
    const form = h('form', { class: 'card form-grid narrow' },
      h('h2', { class: 'form-title' }, 'Change password'),
      field('Current password', current),
      field('New password', next),
      field('New password again', again),
      msg,
      h('div', { class: 'form-actions' }, submit));
    const say = (text, kind) => {
      msg.className = `alert alert-${kind}`;
      msg.textContent = text;
      msg.hidden = false;
    };
    form.addEventListener('submit', async (e) => {
      e.preventDefault();
      msg.hidden = true;
      if (next.value !== again.value) {
        say('The new passwords differ.', 'bad');
        return;
      }
      submit.disabled = true;
      try {
        await api('/api/auth/password', { method: 'POST', body: { current_password: current.value, new_password: next.value }, quiet401: true });
        form.reset();
        say('Password changed. Every session has ended, this one too: sign in with the new password.', 'ok');
        setTimeout(() => signedOut(null), 1800);
      } catch (err) {
        say(err.message, 'bad');
      } finally {
        submit.disabled = false;
      }
    });
    const logout = h('button', { type: 'button', class: 'btn' }, 'Sign out everywhere');
    logout.addEventListener('click', async () => {
      try {
        await api('/api/auth/logout', { method: 'POST', quiet401: true });
      } catch { /* signed out either way */ }
      signedOut(null);
    });
    mount(el, h('div', { class: 'page-head' }, h('h1', null, 'Account & password')),
      h('div', { class: 'card' }, details([
        ['Username', user.username],
        ['Role', user.role],
        ['Session ends', user.expires_at ? dateTime(user.expires_at) : '—'],
      ]), h('div', { class: 'form-actions' }, logout),
      h('p', { class: 'muted small' }, 'Signing out ends every session of this user, in every browser.')),
      form);
  },
};
