// GopherGate dashboard: the shell (sidebar, theme, session) and a hash router over the pages in
// ./pages. Plain ES modules, no framework, no build step: the binary serves these files as they
// are.

import { api, setSignedOutHandler } from './api.js';
import { live } from './live.js';
import { h, mount, toast } from './ui.js';
import login from './pages/login.js';
import overview from './pages/overview.js';
import livePage from './pages/live.js';
import logs from './pages/logs.js';
import usage from './pages/usage.js';
import keys from './pages/keys.js';
import providers from './pages/providers.js';
import models from './pages/models.js';
import users from './pages/users.js';
import settings from './pages/settings.js';
import account from './pages/account.js';

const PAGES = [
  ['overview', 'Overview', overview],
  ['live', 'Live', livePage],
  ['logs', 'Logs', logs],
  ['usage', 'Usage & cost', usage],
  ['keys', 'Keys', keys],
  ['providers', 'Providers', providers],
  ['models', 'Models', models],
  ['users', 'Users', users],
  ['settings', 'Settings', settings],
  ['account', 'Account & password', account],
];

const app = {
  user: null,
  root: document.getElementById('app'),
  main: null,
  nav: null,
  cleanup: null,
  liveDot: null,
};

// ---------------------------------------------------------------------------------------------
// Theme: light or dark, from the saved toggle, else the system's preference.

const darkQuery = window.matchMedia('(prefers-color-scheme: dark)');

export function theme() {
  const set = document.documentElement.getAttribute('data-theme');
  if (set === 'light' || set === 'dark') return set;
  return darkQuery.matches ? 'dark' : 'light';
}

function setTheme(t) {
  document.documentElement.setAttribute('data-theme', t);
  try {
    localStorage.setItem('gg-theme', t);
  } catch { /* not persisted */ }
  window.dispatchEvent(new CustomEvent('gg-theme', { detail: t }));
}

darkQuery.addEventListener('change', () => {
  if (!document.documentElement.hasAttribute('data-theme')) {
    window.dispatchEvent(new CustomEvent('gg-theme', { detail: theme() }));
  }
});

function themeButton() {
  const btn = h('button', { type: 'button', class: 'icon-btn theme-toggle', title: 'Switch light or dark theme' });
  const label = () => {
    const next = theme() === 'dark' ? 'light' : 'dark';
    btn.setAttribute('aria-label', `Switch to the ${next} theme`);
    btn.textContent = theme() === 'dark' ? '☀' : '☾';
  };
  label();
  btn.addEventListener('click', () => {
    setTheme(theme() === 'dark' ? 'light' : 'dark');
    label();
  });
  window.addEventListener('gg-theme', label);
  return btn;
}

// ---------------------------------------------------------------------------------------------
// Shell

function brand() {
  return h('a', { class: 'brand', href: '#/overview', 'aria-label': 'GopherGate home' },
    h('span', { class: 'logo', 'aria-hidden': 'true' }),
    h('span', { class: 'wordmark' }, h('span', null, 'Gopher'), h('b', null, 'Gate')));
}

function liveIndicator() {
  const dot = h('span', { class: 'live-dot', 'aria-hidden': 'true' });
  const text = h('span', { class: 'live-text' });
  const el = h('button', { type: 'button', class: 'live-status', title: 'Live connection' }, dot, text);
  const show = (s) => {
    el.dataset.state = s;
    text.textContent = { open: 'Live', connecting: 'Connecting…', waiting: 'Reconnecting…', idle: 'Offline' }[s] || s;
  };
  show(live.state);
  live.on('status', show);
  el.addEventListener('click', () => live.reconnectNow());
  return el;
}

function renderShell() {
  const isAdmin = app.user.role === 'admin';
  const links = PAGES.filter(([id, , page]) => id !== 'account' && (!page.adminOnly || isAdmin))
    .map(([id, title]) => h('a', { href: `#/${id}`, class: 'nav-link', data: { page: id } }, title));
  app.nav = h('nav', { class: 'nav', id: 'nav', 'aria-label': 'Pages' }, links);
  const menuBtn = h('button', {
    type: 'button', class: 'icon-btn menu-toggle', 'aria-label': 'Menu', 'aria-controls': 'nav', 'aria-expanded': 'false',
  }, '☰');
  const sidebar = h('aside', { class: 'sidebar' },
    h('div', { class: 'sidebar-top' }, brand(), h('div', { class: 'sidebar-tools' }, liveIndicator(), themeButton(), menuBtn)),
    app.nav,
    h('div', { class: 'sidebar-user' },
      h('a', { href: '#/account', class: 'user-chip', data: { page: 'account' }, title: 'Account and password' },
        h('span', { class: 'avatar', 'aria-hidden': 'true' }, (app.user.username || '?').slice(0, 1).toUpperCase()),
        h('span', { class: 'user-name' }, app.user.username),
        h('span', { class: 'user-role' }, app.user.role)),
      h('button', { type: 'button', class: 'btn btn-ghost btn-small', on: { click: logout } }, 'Sign out')));
  menuBtn.addEventListener('click', () => {
    const open = sidebar.classList.toggle('nav-open');
    menuBtn.setAttribute('aria-expanded', String(open));
  });
  app.nav.addEventListener('click', (e) => {
    if (e.target.closest('a')) {
      sidebar.classList.remove('nav-open');
      menuBtn.setAttribute('aria-expanded', 'false');
    }
  });
  app.main = h('main', { class: 'main', id: 'main', tabindex: '-1' });
  app.root.className = 'shell';
  app.root.removeAttribute('aria-busy');
  mount(app.root, sidebar, app.main);
}

async function logout() {
  try {
    await api('/api/auth/logout', { method: 'POST', quiet401: true });
  } catch { /* signed out either way */ }
  signedOut(null);
}

function signedOut(err) {
  live.stop();
  if (app.cleanup) app.cleanup();
  app.cleanup = null;
  app.user = null;
  if (err) toast('Your session has ended. Sign in again.', 'warn');
  showLogin();
}

function showLogin() {
  const wanted = location.hash;
  if (wanted && wanted !== '#/login' && wanted !== '#/') app.wanted = wanted;
  app.root.className = 'login-shell';
  app.root.removeAttribute('aria-busy');
  if (location.hash !== '#/login') history.replaceState(null, '', '#/login');
  mount(app.root);
  login.render(app.root, {
    onSignedIn: (user) => {
      app.user = user;
      const next = app.wanted || '#/overview';
      app.wanted = null;
      history.replaceState(null, '', next);
      start();
      // The sign-in answer has the name and role; `me` adds the session's expiry.
      refreshUser().catch(() => {});
    },
  });
}

// ---------------------------------------------------------------------------------------------
// Router

function currentPage() {
  const id = (location.hash.replace(/^#\/?/, '').split(/[/?]/)[0] || 'overview').toLowerCase();
  return id;
}

function route() {
  if (!app.user) {
    showLogin();
    return;
  }
  if (!app.main) renderShell();
  const id = currentPage();
  if (id === 'login') {
    history.replaceState(null, '', '#/overview');
    route();
    return;
  }
  const entry = PAGES.find(([pid]) => pid === id);
  if (app.cleanup) {
    try {
      app.cleanup();
    } catch (e) {
      console.error(e);
    }
    app.cleanup = null;
  }
  for (const a of app.root.querySelectorAll('[data-page]')) {
    a.classList.toggle('active', a.dataset.page === id);
    if (a.dataset.page === id) a.setAttribute('aria-current', 'page');
    else a.removeAttribute('aria-current');
  }
  const container = h('div', { class: 'page', data: { page: id } });
  mount(app.main, container);
  window.scrollTo(0, 0);
  if (!entry) {
    mount(container, h('div', { class: 'page-head' }, h('h1', null, 'Not found')),
      h('p', null, 'There is no such page. ', h('a', { href: '#/overview' }, 'Go to the overview.')));
    document.title = 'Not found · GopherGate';
    return;
  }
  const [, title, page] = entry;
  document.title = `${title} · GopherGate`;
  if (page.adminOnly && app.user.role !== 'admin') {
    mount(container, h('div', { class: 'page-head' }, h('h1', null, title)),
      h('div', { class: 'alert alert-warn' }, 'This page needs an admin account.'));
    return;
  }
  const ctx = { user: app.user, live, theme, refreshUser, signedOut };
  const cleanup = page.render(container, ctx);
  app.cleanup = typeof cleanup === 'function' ? cleanup : null;
}

async function refreshUser() {
  app.user = await api('/api/auth/me');
  return app.user;
}

function start(hash) {
  app.main = null;
  live.start();
  if (hash && location.hash !== hash && (location.hash === '' || location.hash === '#/login')) {
    history.replaceState(null, '', hash);
  }
  route();
}

setSignedOutHandler((err) => {
  if (app.user) signedOut(err);
});
window.addEventListener('hashchange', route);

async function boot() {
  try {
    app.user = await api('/api/auth/me', { quiet401: true });
  } catch (e) {
    if (e.status !== 401) toast(e.message, 'bad');
    showLogin();
    return;
  }
  start('#/overview');
}

boot();
