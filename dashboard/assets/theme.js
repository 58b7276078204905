// Applies the theme saved by the toggle before the page paints (no flash of the wrong theme).
// Without a saved choice the CSS follows prefers-color-scheme.
(function () {
  try {
    var t = localStorage.getItem('gg-theme');
    if (t === 'light' || t === 'dark') document.documentElement.setAttribute('data-theme', t);
  } catch (e) { /* storage disabled: follow the system */ }
})();
