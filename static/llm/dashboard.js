// The LLM cost dashboard's charts. Chart.js itself is Unfold's copy, loaded by its
// skeleton.html ({% static 'unfold/js/chart/chart.js' %}); the configurations come from
// views_dashboard.charts() through json_script. A click on a bar or point opens the
// request log for that day (or the dashboard narrowed to that row): the spec's `links`.
(() => {
  "use strict";

  const FORMATS = {
    // The rules of apps/llm/money.py usd(): $0, $1,234.57, $12,345,679, $0.0194, $0.05, $0.000021.
    money: (v) => {
      const n = Number(v) || 0;
      const a = Math.abs(n);
      if (a === 0) return "$0";
      let text;
      if (a >= 999999.995) text = a.toLocaleString("en-US", { maximumFractionDigits: 0, maximumSignificantDigits: 8 });
      else if (a >= 0.99995) text = a.toLocaleString("en-US", { minimumFractionDigits: 2, maximumFractionDigits: 2 });
      else if (a >= 0.01) text = a.toLocaleString("en-US", { minimumFractionDigits: 2, maximumFractionDigits: 4 });
      else text = a.toLocaleString("en-US", { maximumSignificantDigits: 4, maximumFractionDigits: 20 });
      return (n < 0 ? "-$" : "$") + text;
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
