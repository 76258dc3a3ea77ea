// The LLM cost dashboard's charts. Chart.js itself is Unfold's copy, loaded by its
// skeleton.html ({% static 'unfold/js/chart/chart.js' %}); the configurations come from
// views_dashboard.charts() through json_script. A click on a bar or point opens the
// request log for that day (or the dashboard narrowed to that row): the spec's `links`.
(() => {
  "use strict";

  const FORMATS = {
    money: (v) => {
      const n = Number(v) || 0;
      const digits = n !== 0 && Math.abs(n) < 0.01 ? 6 : n !== 0 && Math.abs(n) < 1 ? 4 : 2;
      return "$" + n.toLocaleString(undefined, { minimumFractionDigits: digits, maximumFractionDigits: digits });
    },
    count: (v) => (Number(v) || 0).toLocaleString(),
    ms: (v) => (v === null || v === undefined ? "—" : Math.round(v).toLocaleString() + " ms"),
  };

  const dark = () => document.documentElement.classList.contains("dark");

  const build = (canvas, spec) => {
    const format = FORMATS[spec.format] || FORMATS.count;
    const horizontal = spec.options && spec.options.indexAxis === "y";
    const valueAxis = horizontal ? "x" : "y";
    const options = {
      responsive: true,
      maintainAspectRatio: false,
      interaction: { mode: horizontal ? "nearest" : "index", intersect: false },
      ...(spec.options || {}),
    };
    options.scales = options.scales || {};
    options.scales[valueAxis] = { beginAtZero: true, ...(options.scales[valueAxis] || {}) };
    options.scales[valueAxis].ticks = { callback: (value) => format(value) };
    for (const axis of Object.values(options.scales)) {
      axis.grid = { color: dark() ? "rgba(255,255,255,.08)" : "rgba(0,0,0,.06)" };
    }
    options.plugins = options.plugins || {};
    options.plugins.tooltip = {
      callbacks: { label: (ctx) => `${ctx.dataset.label}: ${format(horizontal ? ctx.parsed.x : ctx.parsed.y)}` },
    };
    options.onClick = (event, elements) => {
      const link = elements.length && spec.links ? spec.links[elements[0].index] : "";
      if (link) window.location.href = link;
    };
    options.onHover = (event, elements) => {
      const link = elements.length && spec.links ? spec.links[elements[0].index] : "";
      event.native.target.style.cursor = link ? "pointer" : "default";
    };
    return new window.Chart(canvas, { type: spec.type, data: spec.data, options });
  };

  const render = () => {
    const source = document.getElementById("llm-dashboard-charts");
    if (!source || !window.Chart) return;
    const specs = JSON.parse(source.textContent);
    for (const canvas of document.querySelectorAll("canvas[data-llm-chart]")) {
      const spec = specs[canvas.dataset.llmChart];
      if (spec) build(canvas, spec);
    }
  };

  // Choosing dates means a custom range; choosing a preset period ignores the dates.
  const wirePeriod = () => {
    const form = document.getElementById("llm-dashboard-filters");
    if (!form) return;
    const period = form.querySelector("#llm-period");
    for (const input of form.querySelectorAll("input[type=date]")) {
      input.addEventListener("change", () => { period.value = "custom"; });
    }
  };

  document.addEventListener("DOMContentLoaded", () => {
    render();
    wirePeriod();
  });
})();
