// Charts are SVG images drawn by the server (plotters, GET /api/charts/{metric}.svg) at the size
// they are shown, so their text is real-size. Each is fetched with the session, shown from a blob
// URL (so a failed load can say why), and redrawn on refresh(), when the theme changes, and when
// its width changes.

import { qs } from './api.js';
import { h } from './ui.js';

export function chart(metric, title, paramsFn, themeFn, { height = 240, alt } = {}) {
  const img = h('img', { class: 'chart-img', alt: alt || `${title} chart`, decoding: 'async' });
  const status = h('div', { class: 'chart-status' }, 'Loading…');
  const frame = h('div', { class: 'chart-frame' }, img, status);
  const figure = h('figure', { class: 'chart card', data: { metric } },
    h('figcaption', { class: 'chart-title' }, title), frame);
  let drawnWidth = 0;
  let url = null;
  let seq = 0;
  let timer = null;

  async function refresh() {
    const my = ++seq;
    const width = Math.round(frame.clientWidth) || 640;
    drawnWidth = width;
    const params = { ...paramsFn(), theme: themeFn(), w: width, h: height, v: Date.now() };
    try {
      const resp = await fetch(`/api/charts/${metric}.svg${qs(params)}`, { credentials: 'same-origin', cache: 'no-store' });
      if (!resp.ok) {
        let msg = `Chart unavailable (${resp.status}).`;
        try {
          msg = (await resp.json()).error.message || msg;
        } catch { /* not JSON */ }
        throw new Error(msg);
      }
      const blob = await resp.blob();
      if (my !== seq) return;
      const next = URL.createObjectURL(blob);
      img.src = next;
      if (url) URL.revokeObjectURL(url);
      url = next;
      status.hidden = true;
      figure.classList.remove('chart-failed');
    } catch (e) {
      if (my !== seq) return;
      status.textContent = e.message;
      status.hidden = false;
      figure.classList.add('chart-failed');
    }
  }

  const onTheme = () => refresh();
  window.addEventListener('gg-theme', onTheme);
  // Redraw at the new size once a resize settles.
  let resizeTimer = null;
  const resized = new ResizeObserver(() => {
    const w = Math.round(frame.clientWidth);
    if (!drawnWidth || !w || Math.abs(w - drawnWidth) < 24) return;
    clearTimeout(resizeTimer);
    resizeTimer = setTimeout(refresh, 250);
  });
  resized.observe(frame);
  return {
    el: figure,
    refresh,
    every(ms) {
      clearInterval(timer);
      timer = setInterval(refresh, ms);
    },
    destroy() {
      seq++;
      clearInterval(timer);
      clearTimeout(resizeTimer);
      resized.disconnect();
      window.removeEventListener('gg-theme', onTheme);
      if (url) URL.revokeObjectURL(url);
    },
  };
}
