// The only script of ours the pages load (the CSP allows no inline script): the overview's chart.
'use strict';

(function () {
  const REFRESH_MS = 10000;
  const SERIES = [
    { label: 'delivered', stroke: '#2e7d32' },
    { label: 'deferred', stroke: '#ef6c00' },
    { label: 'bounced', stroke: '#c62828' },
  ];

  function startChart(element) {
    let plot = null;
    const draw = (history) => {
      const data = [history.minutes, history.delivered, history.deferred, history.bounced];
      if (plot) return plot.setData(data);
      plot = new uPlot(
        {
          width: Math.max(320, element.clientWidth),
          height: 220,
          series: [{}, ...SERIES.map((s) => ({ label: s.label, stroke: s.stroke, width: 2, points: { show: false } }))],
          axes: [{}, { label: 'recipients / min' }],
          scales: { y: { range: (u, min, max) => [0, Math.max(5, max)] } },
        },
        data,
        element,
      );
    };
    const refresh = () =>
      fetch(element.dataset.history, { credentials: 'same-origin', headers: { accept: 'application/json' } })
        .then((response) => (response.ok ? response.json() : Promise.reject(new Error(String(response.status)))))
        .then(draw)
        .catch(() => element.setAttribute('data-error', 'the chart could not be loaded'));
    refresh();
    setInterval(refresh, REFRESH_MS);
    window.addEventListener('resize', () => plot && plot.setSize({ width: Math.max(320, element.clientWidth), height: 220 }));
  }

  document.addEventListener('DOMContentLoaded', () => {
    const chart = document.getElementById('chart');
    if (chart && typeof uPlot === 'function') startChart(chart);
  });
})();
