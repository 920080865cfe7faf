// One deployment's page: fetches its history from the worker every 5 s and draws it with uPlot.
// Every value from the stream reaches the page through textContent, never as HTML.
"use strict";
(function () {
  const body = document.body;
  const historyUrl = body.dataset.history;
  const $ = (id) => document.getElementById(id);
  const POLL_MS = 5000;
  const COLORS = {
    actual: "#1d2330", forecast: "#1f77b4", band: "rgba(31, 119, 180, 0.18)", limit: "#8a8f99",
    score: "#4b4f9c", warning: "#ff8c00", critical: "#d62728",
    current: "#1d2330", recommended: "#1f77b4", hpa: "#8a8f99",
  };
  const charts = {};
  let timer = null;

  function pct(v) { return v == null ? "–" : (100 * v).toFixed(1) + " %"; }
  function clock(t) { return new Date(t * 1000).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" }); }
  function stamp(iso) { return new Date(iso).toLocaleString(); }
  function constant(t, v) { return t.map(() => v); }

  function size(el) { return { width: Math.max(320, el.clientWidth), height: 220 }; }

  function options(el, series, extra) {
    return Object.assign({
      ...size(el),
      scales: { x: { time: true } },
      series: [{}].concat(series),
      legend: { live: true },
      cursor: { drag: { x: true, y: false } },
    }, extra || {});
  }

  function draw(name, data, series, extra) {
    const el = $("chart-" + name);
    const chart = charts[name];
    if (chart && chart.series.length === data.length) {
      chart.setData(data);
      return chart;
    }
    if (chart) chart.destroy();
    charts[name] = new uPlot(options(el, series, extra), data, el);
    return charts[name];
  }

  function utilisation(name, feature, limit, limitLabel, h, horizon) {
    const f = h.forecast[horizon][feature];
    const data = [h.t, h.series[feature], f.point, f.lower, f.upper, constant(h.t, limit)];
    const fmt = (u, v) => pct(v);
    draw(name, data, [
      { label: "actual", stroke: COLORS.actual, width: 1.5, value: fmt },
      { label: "forecast " + horizon, stroke: COLORS.forecast, dash: [6, 4], value: fmt },
      { label: "band low", stroke: COLORS.band, value: fmt },
      { label: "band high", stroke: COLORS.band, value: fmt },
      { label: limitLabel, stroke: COLORS.limit, dash: [2, 4], value: fmt },
    ], {
      bands: [{ series: [4, 3], fill: COLORS.band }],
      axes: [{}, { values: (u, ticks) => ticks.map((v) => (100 * v).toFixed(0) + "%") }],
    });
  }

  function anomaly(h) {
    const s = h.series;
    const marks = (severity) => s.anomaly_score.map((v, i) => (s.is_anomaly[i] && s.severity[i] === severity ? v : null));
    const warning = marks("warning");
    const critical = marks("critical");
    const points = (color) => ({ show: true, size: 9, stroke: color, fill: color });
    draw("anomaly", [h.t, s.anomaly_score, constant(h.t, h.threshold), warning, critical], [
      { label: "score σ", stroke: COLORS.score, width: 1.2 },
      { label: "threshold", stroke: COLORS.limit, dash: [4, 4] },
      { label: "detected: warning", stroke: COLORS.warning, paths: () => null, points: points(COLORS.warning) },
      { label: "detected: critical", stroke: COLORS.critical, paths: () => null, points: points(COLORS.critical) },
    ]);
    const el = $("chart-anomaly");
    const detections = warning.concat(critical).filter((v) => v != null).length;
    el.dataset.detections = String(detections);
    const times = h.t.filter((t, i) => warning[i] != null || critical[i] != null);
    el.dataset.detectionTimes = times.join(",");
  }

  function replicas(h) {
    const stepped = uPlot.paths.stepped({ align: 1 });
    draw("replicas", [h.t, h.replicas.current, h.replicas.recommended, h.replicas.reactive_hpa], [
      { label: "current", stroke: COLORS.current, width: 1.5, paths: stepped },
      { label: "recommended", stroke: COLORS.recommended, width: 2, paths: stepped },
      { label: "reactive HPA", stroke: COLORS.hpa, dash: [4, 4], paths: stepped },
    ]);
  }

  function cell(row, text, className) {
    const td = row.insertCell();
    td.textContent = text == null ? "–" : String(text);
    if (className) td.className = className;
    return td;
  }

  function fill(id, rows, render) {
    const tbody = $(id).tBodies[0];
    tbody.replaceChildren();
    for (const item of rows) render(tbody.insertRow(), item);
  }

  function recommendations(h) {
    fill("recommendations", h.recommendations, (row, rec) => {
      const items = rec.recommendations || [];
      const scaling = items.find((i) => i.type === "scaling") || {};
      const action = scaling.action || "hold";
      row.dataset.action = action;
      row.dataset.t = String(Date.parse(rec.timestamp) / 1000);
      cell(row, stamp(rec.timestamp));
      cell(row, action, "act-" + action);
      cell(row, (rec.current_replicas == null ? "?" : rec.current_replicas) + " → " + rec.recommended_replicas);
      cell(row, (rec.evidence || {}).rule);
      cell(row, items.map((i) => i.reason).join(" · ") || rec.summary);
      const td = row.insertCell();
      const details = document.createElement("details");
      const summary = document.createElement("summary");
      summary.textContent = "evidence";
      const pre = document.createElement("pre");
      pre.textContent = JSON.stringify(rec.evidence, null, 2);
      details.append(summary, pre);
      td.append(details);
    });
  }

  function accuracy(h) {
    const rows = [];
    for (const [feature, byHorizon] of Object.entries(h.accuracy)) {
      for (const [horizon, acc] of Object.entries(byHorizon)) rows.push([feature, horizon, acc]);
    }
    fill("accuracy", rows, (row, [feature, horizon, acc]) => {
      cell(row, feature);
      cell(row, horizon);
      cell(row, pct(acc.mae));
      cell(row, pct(acc.coverage) + " (target " + pct(h.level) + ")");
    });
    fill("models", h.models, (row, m) => {
      cell(row, m.name);
      cell(row, m.version);
      cell(row, m.loaded_at ? stamp(m.loaded_at) : null);
    });
  }

  function summary(h) {
    let i = h.series.action.length - 1;
    while (i >= 0 && h.series.action[i] == null) i--;
    const when = i >= 0 ? clock(h.t[i]) : "–";
    const parts = i < 0 ? ["no window yet"] : [
      "latest window " + when,
      "replicas " + (h.replicas.current[i] == null ? "?" : h.replicas.current[i]) + " → " + h.replicas.recommended[i],
      "anomaly " + (h.series.is_anomaly[i] ? h.series.severity[i] : "none"),
    ];
    $("summary").textContent = parts.join(" · ");
    $("status").textContent = "updated " + new Date().toLocaleTimeString() + " · every " + POLL_MS / 1000 + " s";
  }

  function render(h) {
    const horizon = $("horizon").value;
    utilisation("cpu", "cpu_utilization", h.cpu_scale_up, "scale-up threshold", h, horizon);
    utilisation("memory", "memory_utilization", h.memory_warning, "memory warning", h, horizon);
    anomaly(h);
    replicas(h);
    recommendations(h);
    accuracy(h);
    summary(h);
  }

  let latest = null;
  async function load() {
    window.clearTimeout(timer);
    try {
      const resp = await fetch(historyUrl + "?window=" + encodeURIComponent($("window").value), {
        credentials: "same-origin", headers: { Accept: "application/json" },
      });
      if (!resp.ok) {
        const err = await resp.json().catch(() => ({ error: resp.statusText }));
        $("status").textContent = "history: HTTP " + resp.status + " " + (err.error || "");
      } else {
        latest = await resp.json();
        render(latest);
        if (!body.dataset.readyAt) body.dataset.readyAt = performance.now().toFixed(1);
      }
    } catch (e) {
      $("status").textContent = "history: " + e;
    }
    timer = window.setTimeout(load, POLL_MS);
  }

  $("window").addEventListener("change", load);
  $("horizon").addEventListener("change", () => { if (latest) render(latest); });
  window.addEventListener("resize", () => {
    for (const [name, chart] of Object.entries(charts)) chart.setSize(size($("chart-" + name)));
  });
  load();
})();
