// The live connection: one WebSocket to /api/ws (same origin, the session cookie authenticates it),
// fanned out to whichever page listens. Messages are {"type", "data"}: request_log, metrics, event,
// lagged. Reconnects with exponential backoff and jitter (0.5 s doubling to 30 s); a reconnect
// that keeps failing checks the session, so an expired one leads to the sign-in page.

import { api } from './api.js';

const MIN_DELAY = 500;
const MAX_DELAY = 30000;

class Live {
  constructor() {
    this.ws = null;
    this.state = 'idle'; // idle | connecting | open | waiting
    this.listeners = new Map();
    this.failures = 0;
    this.timer = null;
    this.stopped = true;
    this.metrics = null;
    this.retryAt = 0;
    this.stats = { received: 0, skipped: 0, connects: 0 };
  }

  start() {
    if (!this.stopped) return;
    this.stopped = false;
    this.connect();
  }

  stop() {
    this.stopped = true;
    clearTimeout(this.timer);
    if (this.ws) {
      this.ws.onclose = null;
      this.ws.close(1000);
      this.ws = null;
    }
    this.setState('idle');
  }

  /** Subscribe to a message type ('request_log', 'metrics', 'event', 'lagged') or 'status'. */
  on(type, fn) {
    if (!this.listeners.has(type)) this.listeners.set(type, new Set());
    this.listeners.get(type).add(fn);
    return () => this.listeners.get(type).delete(fn);
  }

  emit(type, data) {
    for (const fn of this.listeners.get(type) || []) {
      try {
        fn(data);
      } catch (e) {
        console.error('live listener failed', e);
      }
    }
  }

  setState(s) {
    this.state = s;
    this.emit('status', s);
  }

  connect() {
    clearTimeout(this.timer);
    const url = `${location.protocol === 'https:' ? 'wss' : 'ws'}://${location.host}/api/ws`;
    let ws;
    try {
      ws = new WebSocket(url);
    } catch {
      this.retry();
      return;
    }
    this.ws = ws;
    this.setState('connecting');
    ws.onopen = () => {
      this.failures = 0;
      this.stats.connects += 1;
      this.setState('open');
    };
    ws.onmessage = (ev) => {
      let msg;
      try {
        msg = JSON.parse(ev.data);
      } catch {
        return;
      }
      if (!msg || typeof msg.type !== 'string') return;
      this.stats.received += 1;
      if (msg.type === 'metrics') this.metrics = msg.data;
      if (msg.type === 'lagged') this.stats.skipped += (msg.data && msg.data.skipped) || 0;
      this.emit(msg.type, msg.data);
    };
    ws.onclose = () => {
      this.ws = null;
      if (!this.stopped) this.retry();
    };
    ws.onerror = () => { /* onclose follows */ };
  }

  retry() {
    this.failures += 1;
    const base = Math.min(MAX_DELAY, MIN_DELAY * 2 ** Math.min(this.failures - 1, 10));
    const delay = Math.round(base * (0.75 + Math.random() * 0.5));
    this.retryAt = Date.now() + delay;
    this.setState('waiting');
    // Several failures in a row: is the session still good? (A 401 signs the app out.)
    if (this.failures >= 3) api('/api/auth/me').catch(() => {});
    this.timer = setTimeout(() => this.connect(), delay);
  }

  /** Reconnect now (the "retry" button). */
  reconnectNow() {
    if (this.stopped) return;
    if (this.ws) return;
    this.failures = 0;
    this.connect();
  }
}

export const live = new Live();
