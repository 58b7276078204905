// End-to-end test of the dashboard in a real browser: Debian's Chromium (headless), driven by
// playwright-core, against the real binaries (target/debug/gophergate and gophergate-mock).
//
// It signs in, watches a /v1 request appear on the Live page (so it fails if the live view stops
// updating), creates a key (shown once) and revokes it, visits every page with no script error or
// CSP violation, and takes screenshots of every page: into a temporary folder, or into the committed
// docs/screenshots/ with UPDATE_SCREENSHOTS=1 (GG_SCREENSHOT_DIR names another folder).
//
// Run: npm ci && node --test (from tests/browser), after `cargo build --bins`.

import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

const HERE = path.dirname(fileURLToPath(import.meta.url));
const ROOT = path.resolve(HERE, '..', '..');
const TARGET = process.env.CARGO_TARGET_DIR || path.join(ROOT, 'target');
const GATEWAY = path.join(TARGET, 'debug', 'gophergate');
const MOCK = path.join(TARGET, 'debug', 'gophergate-mock');
const CHROMIUM = process.env.CHROMIUM_PATH || '/usr/bin/chromium';
const SHOTS =
  process.env.GG_SCREENSHOT_DIR ||
  (process.env.UPDATE_SCREENSHOTS
    ? path.join(ROOT, 'docs', 'screenshots')
    : fs.mkdtempSync(path.join(os.tmpdir(), 'gg-shots-')));
const SNAPSHOT = path.resolve(ROOT, '..', 'shared', 'data', 'models-dev-snapshot.json');
const UPSTREAM_KEY = 'upstream-openai-key-123456';
const ADMIN_PASSWORD = 'browser-test-password-42';
/** How long a request may take to show up on the Live page. */
const LIVE_TIMEOUT_MS = 5000;

const procs = [];
let dataDir;
let env;
let base;
let clientKey;
let browser;
let context;
let page;
const problems = [];

function freePort() {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.unref();
    s.on('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });
}

async function waitFor(what, fn, timeoutMs = 20000) {
  const deadline = Date.now() + timeoutMs;
  let last;
  while (Date.now() < deadline) {
    try {
      if (await fn()) return;
    } catch (e) {
      last = e;
    }
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`${what} did not happen within ${timeoutMs} ms${last ? `: ${last.message}` : ''}`);
}

function start(cmd, args, opts = {}) {
  const p = spawn(cmd, args, { env, stdio: ['ignore', 'ignore', 'inherit'], ...opts });
  procs.push(p);
  return p;
}

/** Runs a gophergate CLI command against the test's database; returns stdout. */
function cli(args, input) {
  const r = spawnSync(GATEWAY, args, { env, input, encoding: 'utf8' });
  assert.equal(r.status, 0, `gophergate ${args.join(' ')} failed: ${r.stderr}`);
  return r.stdout.trim();
}

async function chat(model, content, { stream = false, requestId } = {}) {
  const headers = { Authorization: `Bearer ${clientKey}`, 'Content-Type': 'application/json' };
  if (requestId) headers['x-request-id'] = requestId;
  const resp = await fetch(`${base}/v1/chat/completions`, {
    method: 'POST',
    headers,
    body: JSON.stringify({ model, stream, messages: [{ role: 'user', content }] }),
  });
  await resp.text();
  return resp.status;
}

before(async () => {
  for (const bin of [GATEWAY, MOCK]) {
    assert.ok(fs.existsSync(bin), `${bin} is missing: run \`cargo build --bins\` first`);
  }
  assert.ok(fs.existsSync(CHROMIUM), `${CHROMIUM} is missing: apt-get install chromium`);
  dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'gg-browser-'));
  const [mockPort, gwPort] = [await freePort(), await freePort()];
  env = Object.fromEntries(Object.entries(process.env)
    .filter(([k]) => !k.startsWith('GOPHERGATE_') && !k.endsWith('_API_KEY') && !k.endsWith('_BASE_URL')));
  Object.assign(env, {
    GOPHERGATE_DATA_DIR: dataDir,
    GOPHERGATE_SERVER__LISTEN: `127.0.0.1:${gwPort}`,
    // The registry snapshot from ../shared when present; never the network.
    GOPHERGATE_REGISTRY__URL: fs.existsSync(SNAPSHOT) ? SNAPSHOT : path.join(dataDir, 'no-registry.json'),
    OPENAI_API_KEY: UPSTREAM_KEY,
    OPENAI_BASE_URL: `http://127.0.0.1:${mockPort}/v1`,
    RUST_LOG: 'warn',
  });
  start(MOCK, ['--listen', `127.0.0.1:${mockPort}`, '--api-key', UPSTREAM_KEY]);
  // The admin exists before the first start, so the server does not make one of its own.
  cli(['users', 'create', '--username', 'admin', '--password-stdin'], `${ADMIN_PASSWORD}\n`);
  start(GATEWAY, ['serve']);
  base = `http://127.0.0.1:${gwPort}`;
  await waitFor('the gateway answering /health', async () => (await fetch(`${base}/health`)).ok);
  clientKey = cli(['keys', 'create', '--name', 'browser-test']);
  assert.match(clientKey, /^\S{20,}$/);

  browser = await chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  });
  context = await browser.newContext({
    viewport: { width: 1360, height: 860 },
    deviceScaleFactor: 1,
    colorScheme: 'light',
    locale: 'en-US',
    timezoneId: 'UTC',
  });
  context.setDefaultTimeout(10000);
  page = await context.newPage();
  page.on('pageerror', (e) => problems.push(`page error: ${e.message}`));
  page.on('console', (m) => {
    if (m.type() === 'error' && !/the server responded with a status of (401|404)/.test(m.text())) {
      problems.push(`console error: ${m.text()}`);
    }
  });
  fs.mkdirSync(SHOTS, { recursive: true });
});

after(async () => {
  if (browser) await browser.close().catch(() => {});
  const gw = procs.find((p) => p.spawnargs[0] === GATEWAY);
  for (const p of procs) p.kill('SIGTERM');
  if (gw && gw.exitCode === null) {
    // A graceful stop takes milliseconds; the timer only bounds a hung one (and must not keep
    // node alive once the gateway is gone).
    await new Promise((r) => {
      const timer = setTimeout(r, 15000);
      gw.once('exit', () => { clearTimeout(timer); r(); });
    });
    assert.equal(gw.exitCode, 0, 'the gateway did not stop cleanly on SIGTERM');
  }
  if (dataDir) fs.rmSync(dataDir, { recursive: true, force: true });
});

process.on('exit', () => { for (const p of procs) p.kill('SIGKILL'); });

/** Waits until a page has drawn: no "Loading…" left, and every chart image loaded or failed. */
async function settled() {
  await page.waitForFunction(() => !document.querySelector('.loading')
    && [...document.querySelectorAll('.chart')].every((c) => {
      const img = c.querySelector('.chart-img');
      return c.classList.contains('chart-failed') || (img && img.complete && img.naturalWidth > 0);
    }));
  // Toasts from earlier steps are not part of the page; finite animations (row flashes) end.
  await page.evaluate(() => document.querySelectorAll('.toasts').forEach((t) => t.remove()));
  await page.waitForFunction(() => document.getAnimations()
    .every((a) => a.playState !== 'running' || a.effect.getTiming().iterations === Infinity), null, { timeout: 5000 });
  await page.waitForTimeout(150);
}

async function shot(name, { fullPage = false } = {}) {
  await settled();
  await page.screenshot({ path: path.join(SHOTS, `${name}.png`), fullPage });
}

async function go(hash) {
  await page.evaluate((h) => { location.hash = h; }, hash);
  await page.waitForSelector(`.page[data-page="${hash.replace('#/', '')}"]`);
}

test('signs in', async () => {
  await page.goto(`${base}/`);
  await page.waitForSelector('.login-card');
  await shot('login');
  // A wrong password is refused with the server's message.
  await page.fill('input[name=username]', 'admin');
  await page.fill('input[name=password]', 'not the password');
  await page.click('button[type=submit]');
  await page.waitForSelector('.login-form .alert:not([hidden])');
  await page.fill('input[name=password]', ADMIN_PASSWORD);
  await page.click('button[type=submit]');
  await page.waitForSelector('.page[data-page="overview"]');
  assert.equal(await page.textContent('.user-name'), 'admin');
  // The session is an HttpOnly cookie: no script can read it.
  assert.equal(await page.evaluate(() => document.cookie.includes('gg_session')), false);
});

test('a /v1 request appears on the Live page as it happens', async () => {
  await go('#/live');
  await page.waitForSelector('.live-state[data-state="open"]', { timeout: 10000 })
    .catch(() => { throw new Error('the live connection (/api/ws) never opened'); });
  const requestId = `browser-live-${Date.now()}`;
  assert.equal(await chat('gpt-4o-mini', 'Hello from the browser test', { requestId }), 200);
  const row = `#live-rows tr[data-request-id="${requestId}"]`;
  await page.waitForSelector(row, { timeout: LIVE_TIMEOUT_MS })
    .catch(() => { throw new Error(`request ${requestId} did not appear on the Live page within ${LIVE_TIMEOUT_MS} ms`); });
  assert.match(await page.textContent(`${row} td[data-label="Model"]`), /gpt-4o-mini/);
  assert.match(await page.textContent(`${row} td[data-label="Status"]`), /200/);
  // Newest first: it is the top row.
  assert.equal(await page.getAttribute('#live-rows tr:first-child', 'data-request-id'), requestId);

  // More traffic for the other pages and the screenshots: a stream, priced and unpriced models,
  // an upstream error, an unknown model. Each shows up live too.
  const statuses = await Promise.all([
    chat('gpt-4o', 'Tell me a story', { stream: true }),
    chat('gpt-4o-mini', 'Summarise this'),
    chat('gpt-4.1-nano', 'Classify this'),
    chat('gpt-gophergate-custom', 'A model without a price'),
    chat('gpt-4o-mini', 'Fail please [[mock:error=429]]'),
    chat('no-such-model-anywhere', 'Hello'),
  ]);
  assert.deepEqual(statuses, [200, 200, 200, 200, 429, 404]);
  await page.waitForFunction(() => document.querySelectorAll('#live-rows tr[data-request-id]').length >= 7,
    null, { timeout: LIVE_TIMEOUT_MS });
  await shot('live');
});

test('a key is created, shown once, and revoked', async () => {
  await go('#/keys');
  await settled();
  await page.fill('form.create-key input[name=name]', 'ci-temporary');
  await page.fill('form.create-key input[name=budget_usd]', '5');
  await page.fill('form.create-key input[name=rpm]', '120');
  await page.click('form.create-key button[type=submit]');
  const secret = page.locator('.new-key .secret-value');
  await secret.waitFor();
  const key = await secret.inputValue();
  assert.match(key, /^\S{20,}$/);
  const row = 'tr[data-key="ci-temporary"]';
  await page.waitForSelector(`${row}[data-status="active"]`);
  // The list shows the prefix only.
  assert.ok(!(await page.textContent('.keys-table')).includes(key), 'the key is in the list');
  await page.click('.new-key button:has-text("Done")');
  await page.waitForSelector('.new-key', { state: 'detached' });
  assert.ok(!(await page.content()).includes(key), 'the key is still on the page after Done');
  const listed = await page.evaluate(() => fetch('/api/keys').then((r) => r.text()));
  assert.ok(!listed.includes(key), 'GET /api/keys returned the key');

  // The new key works until it is revoked.
  const ok = await fetch(`${base}/v1/models`, { headers: { Authorization: `Bearer ${key}` } });
  assert.equal(ok.status, 200);
  await page.click(`${row} button:has-text("Revoke")`);
  await page.click('dialog.modal .btn-danger');
  await page.waitForSelector(`${row}[data-status="revoked"]`);
  assert.match(await page.textContent(`${row} .badge`), /revoked/);
  const refused = await fetch(`${base}/v1/models`, { headers: { Authorization: `Bearer ${key}` } });
  assert.equal(refused.status, 401);
  await shot('keys');
});

test('every page renders, with screenshots', async () => {
  await go('#/overview');
  // The live counters fill in from the WebSocket's metrics (every 2 s).
  await page.waitForFunction(() => document.querySelector('[data-metric="uptime"]').textContent !== '—', null, { timeout: 6000 });
  await page.waitForSelector('[data-total="requests"]');
  const total = await page.textContent('[data-total="requests"] .tile-value');
  assert.ok(Number(total.replace(/,/g, '')) >= 7, `overview counts ${total} requests`);
  // Honest money: an unpriced model is said to be unpriced, not $0.
  assert.match(await page.textContent('[data-total="cost"]'), /unpriced/);
  await shot('overview', { fullPage: true });
  // Every chart drew (server-side SVG), and the chart API wants a session like the rest of /api.
  assert.equal(await page.locator('.chart').count(), 5);
  assert.equal(await page.locator('.chart-failed').count(), 0, 'a chart failed to load');
  assert.equal((await fetch(`${base}/api/charts/requests.svg`)).status, 401);
  const svg = await page.evaluate(() => fetch('/api/charts/cost.svg?group_by=model&theme=dark')
    .then(async (r) => [r.status, r.headers.get('content-type'), await r.text()]));
  assert.deepEqual(svg.slice(0, 2), [200, 'image/svg+xml']);
  assert.match(svg[2], /gpt-4o-mini/);
  assert.match(svg[2], />\s*unpriced\s*</);

  await go('#/logs');
  await page.waitForSelector('.logs-table tbody tr');
  await shot('logs');
  // Row detail: usage and price provenance.
  await page.click('.logs-table tbody tr:has-text("gpt-gophergate-custom")');
  await page.waitForSelector('dialog.modal');
  const detail = await page.textContent('dialog.modal');
  for (const label of ['Usage source', 'Price source', 'Price note', 'Registry version']) {
    assert.ok(detail.includes(label), `log detail lacks ${label}`);
  }
  assert.match(detail, /unpriced/);
  await shot('log-detail');
  await page.keyboard.press('Escape');
  await page.waitForSelector('dialog.modal', { state: 'detached' });
  // Filters: status 429 leaves only the failed request.
  await page.fill('form.filters input[name=status]', '429');
  await page.click('form.filters button[type=submit]');
  await page.waitForFunction(() => {
    const rows = document.querySelectorAll('.logs-table tbody tr');
    return rows.length === 1 && rows[0].textContent.includes('429');
  });
  await page.click('form.filters button:has-text("Reset")');

  await go('#/usage');
  await page.waitForSelector('.usage-table');
  await page.selectOption('select[name=group_by]', 'model');
  await page.waitForFunction(() => document.querySelector('.usage-table')?.textContent.includes('gpt-4o-mini'));
  const [download] = await Promise.all([
    page.waitForEvent('download'),
    page.click('button:has-text("Export CSV")'),
  ]);
  const csv = fs.readFileSync(await download.path(), 'utf8');
  assert.match(csv.split('\r\n')[0], /^model,requests,errors,prompt_tokens/);
  assert.match(csv, /gpt-4o-mini,/);
  await shot('usage', { fullPage: true });

  await go('#/providers');
  await page.waitForSelector('.provider-card[data-provider="openai"]');
  await page.click('.provider-card[data-provider="openai"] button:has-text("Test connection")');
  await page.waitForSelector('.provider-card[data-provider="openai"] .test-result .alert');
  assert.equal(await page.getAttribute('.provider-card[data-provider="openai"] input[name=api_key]', 'type'), 'password');
  await shot('providers');

  await go('#/models');
  await page.waitForSelector('.page[data-page="models"] .card');
  await settled();
  await shot('models');

  await go('#/users');
  await page.waitForSelector('.page[data-page="users"] table');
  await shot('users');

  await go('#/settings');
  await page.waitForSelector('.config-table');
  const settingsText = await page.textContent('.page[data-page="settings"]');
  assert.ok(!settingsText.includes(UPSTREAM_KEY), 'the settings page shows a provider key');
  await shot('settings');

  await go('#/account');
  await page.waitForSelector('.page[data-page="account"] form');
  await shot('account');

  // Dark theme through the toggle; it sticks across a reload.
  await go('#/overview');
  await page.click('.theme-toggle');
  assert.equal(await page.getAttribute('html', 'data-theme'), 'dark');
  await page.reload();
  await page.waitForSelector('.page[data-page="overview"]');
  assert.equal(await page.getAttribute('html', 'data-theme'), 'dark');
  await shot('overview-dark', { fullPage: true });
  await go('#/live');
  await page.waitForSelector('#live-rows tr[data-request-id]');
  await shot('live-dark');

  // A phone.
  await page.setViewportSize({ width: 390, height: 844 });
  await page.evaluate(() => { localStorage.setItem('gg-theme', 'light'); });
  await page.reload();
  await go('#/overview');
  await shot('overview-phone', { fullPage: true });
  await page.click('.menu-toggle');
  await page.waitForSelector('#nav .nav-link[data-page="keys"]', { state: 'visible' });
  await shot('menu-phone');
  await page.setViewportSize({ width: 1360, height: 860 });

  assert.deepEqual(problems, [], 'script errors or CSP violations in the browser');
});

test('a viewer sees no admin controls, and the API refuses them too', async () => {
  const created = await page.evaluate(() => fetch('/api/users', {
    method: 'POST',
    headers: { 'Content-Type': 'application/json' },
    body: JSON.stringify({ username: 'viewer1', password: 'viewer-password-1', role: 'viewer' }),
  }).then((r) => r.status));
  assert.equal(created, 201);
  const viewerContext = await browser.newContext({ viewport: { width: 1360, height: 860 }, colorScheme: 'light' });
  const v = await viewerContext.newPage();
  v.on('pageerror', (e) => problems.push(`viewer page error: ${e.message}`));
  try {
    await v.goto(`${base}/#/keys`);
    await v.fill('input[name=username]', 'viewer1');
    await v.fill('input[name=password]', 'viewer-password-1');
    await v.click('button[type=submit]');
    // Back on the page asked for, read-only.
    await v.waitForSelector('.page[data-page="keys"] .keys-table');
    assert.equal(await v.locator('form.create-key').count(), 0);
    assert.equal(await v.locator('.keys-table button:has-text("Revoke")').count(), 0);
    assert.equal(await v.locator('#nav .nav-link[data-page="users"]').count(), 0);
    await v.evaluate(() => { location.hash = '#/users'; });
    await v.waitForSelector('.page[data-page="users"] .alert');
    const status = await v.evaluate(() => fetch('/api/keys', {
      method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify({ name: 'nope' }),
    }).then((r) => r.status));
    assert.equal(status, 403);
  } finally {
    await viewerContext.close();
  }
  assert.deepEqual(problems, []);
});

test('sign out ends the session', async () => {
  await go('#/overview');
  await page.click('.sidebar-user button:has-text("Sign out")');
  await page.waitForSelector('.login-card');
  const status = await page.evaluate(() => fetch('/api/auth/me').then((r) => r.status));
  assert.equal(status, 401);
});
