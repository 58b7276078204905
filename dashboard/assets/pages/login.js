// Sign-in: username and password to POST /api/auth/login, which sets the HttpOnly session cookie.

import { api } from '../api.js';
import { h, mount } from '../ui.js';

export default {
  render(el, { onSignedIn }) {
    const username = h('input', { name: 'username', autocomplete: 'username', required: true, autofocus: true, spellcheck: 'false', autocapitalize: 'none' });
    const password = h('input', { name: 'password', type: 'password', autocomplete: 'current-password', required: true });
    const error = h('div', { class: 'alert alert-bad', role: 'alert', hidden: true });
    const submit = h('button', { type: 'submit', class: 'btn btn-primary btn-block' }, 'Sign in');
    const form = h('form', { class: 'login-form', novalidate: true },
      h('label', { class: 'field' }, h('span', { class: 'field-label' }, 'Username'), username),
      h('label', { class: 'field' }, h('span', { class: 'field-label' }, 'Password'), password),
      error,
      submit);
    form.addEventListener('submit', async (e) => {
      e.preventDefault();
      error.hidden = true;
      if (!username.value.trim() || !password.value) {
        error.textContent = 'Enter your username and password.';
        error.hidden = false;
        return;
      }
      submit.disabled = true;
      submit.textContent = 'Signing in…';
      try {
        const r = await api('/api/auth/login', {
          method: 'POST',
          body: { username: username.value.trim(), password: password.value },
          quiet401: true,
        });
        password.value = '';
        onSignedIn(r.user);
      } catch (err) {
        error.textContent = err.message;
        error.hidden = false;
        password.select();
      } finally {
        submit.disabled = false;
        submit.textContent = 'Sign in';
      }
    });
    mount(el,
      h('div', { class: 'login-card card' },
        h('div', { class: 'login-brand' },
          h('span', { class: 'logo logo-large', 'aria-hidden': 'true' }),
          h('div', { class: 'wordmark wordmark-large' }, h('span', null, 'Gopher'), h('b', null, 'Gate'))),
        h('p', { class: 'login-sub' }, 'Sign in to the gateway dashboard'),
        form,
        h('details', { class: 'login-help' },
          h('summary', null, 'First time here?'),
          h('p', null, 'On its first start with no users, the server prints an ',
            h('code', null, 'admin'), ' password once in its output. Or create a user from a terminal:'),
          h('pre', { class: 'code' }, 'gophergate users create --username alice --password-stdin'))));
    username.focus();
  },
};
