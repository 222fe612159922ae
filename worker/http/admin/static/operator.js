// The operator's view on the overview: the Workers panel, the history charts (uPlot, vendored in
// static/vendor/ with its licence) and the schedules' track record, refreshed from the JSON API.
// Data is only ever put in the page with textContent / setAttribute (never innerHTML).
// window.workerCharts exposes the charts and the data they show (tests/test_admin_operator_browser.py).
"use strict";
(function () {
  const REFRESH_MS = 2000;
  const CHARTS_MS = 15000;
  const $ = (sel) => document.querySelector(sel);
  if (document.body.dataset.page !== "overview") return;

  const { el, td, fmtTime } = window.adminDom;
  async function getJson(path) {
    const response = await fetch("/admin/api" + path, { credentials: "same-origin", headers: { Accept: "application/json" } });
    if (response.status === 401) window.location.assign("/admin/login");
    return response.ok ? response.json() : null;
  }

  // --- workers ---------------------------------------------------------------------------------
  function renderWorkers(d) {
    $("#workers-count").textContent = d.workers.length + " live";
    $("#no-workers").hidden = d.workers.length > 0;
    $("#workers tbody").replaceChildren(...d.workers.map((w) => el("tr", { "data-worker-id": w.worker_id, class: w.fresh ? null : "stale" },
      td(w.worker_id), td(w.host + " (pid " + w.pid + ")"), td(w.version), td(w.task_types.join(", ")),
      td(w.running, "num"), td(w.concurrency, "num"), td(fmtTime(w.started_at)), td(w.seen_s_ago.toFixed(1) + " s ago"),
      el("td", {}, ...w.running_jobs.map((j) => el("a", { href: "/admin/jobs/" + encodeURIComponent(j), text: j.slice(0, 8) + " " }))))));
    $("#unserved").hidden = d.unserved.length === 0;
    $("#unserved-list").textContent = d.unserved.map((u) => u.task_type + " (" + u.due + " due)").join(", ");
  }

  // --- schedules' track record -----------------------------------------------------------------
  function slotNode(x) {
    let tip = fmtTime(x.slot) + ": " + x.state;
    if (x.duration_s !== null) tip += " in " + x.duration_s.toFixed(1) + " s";
    if (x.error) tip += ": " + x.error;
    const attrs = { class: "slot st-" + x.state, "data-state": x.state, title: tip };
    if (x.job_id) return el("a", Object.assign(attrs, { href: "/admin/jobs/" + encodeURIComponent(x.job_id) }));
    return el("span", attrs);
  }
  function renderTrack(d) {
    $("#schedule-track tbody").replaceChildren(...d.schedules.map((s) => {
      const last = el("td", {}, el("span", { class: "badge st-" + (s.last_state || "none"), text: s.last_state || "–" }));
      if (s.consecutive_failures > 1) last.append(" ", el("span", { class: "muted", text: s.consecutive_failures + " in a row" }));
      return el("tr", { "data-schedule": s.name, class: s.unhealthy ? "unhealthy" : null }, td(s.name, "name"),
        el("td", {}, el("span", { class: "strip" }, ...s.slots.map(slotNode))), last,
        td(s.next_slot ? fmtTime(s.next_slot) : "disabled"));
    }));
  }

  // --- charts ----------------------------------------------------------------------------------
  const charts = { throughput: null, depth: null, data: null };
  window.workerCharts = charts;
  function size(target) { return { width: Math.max(target.clientWidth, 300), height: 220 }; }
  function makeCharts() {
    const a = $("#chart-throughput");
    const b = $("#chart-depth");
    charts.throughput = new uPlot(Object.assign(size(a), {
      series: [{}, { label: "succeeded", stroke: "#1a7f37", width: 2 }, { label: "retried", stroke: "#b26a00", width: 2 },
        { label: "failed", stroke: "#c62828", width: 2 }],
      scales: { y: { range: (u, min, max) => [0, Math.max(1, max)] } },
    }), [[], [], [], []], a);
    charts.depth = new uPlot(Object.assign(size(b), {
      series: [{}, { label: "due pending", stroke: "#2454c5", width: 2, scale: "n" },
        { label: "oldest due age (s)", stroke: "#b26a00", width: 2, scale: "s" }],
      scales: { n: { range: (u, min, max) => [0, Math.max(1, max)] }, s: { range: (u, min, max) => [0, Math.max(1, max)] } },
      axes: [{}, { scale: "n" }, { scale: "s", side: 1, grid: { show: false } }],
    }), [[], [], []], b);
  }
  async function refreshCharts() {
    const form = new FormData($("#history-controls"));
    const params = new URLSearchParams({ window: String(form.get("window") || "hour") });
    if (form.get("task_type")) params.set("task_type", String(form.get("task_type")));
    const d = await getJson("/history?" + params.toString());
    const status = $("#history-status");
    if (!d) { status.textContent = "history unavailable"; return; }
    charts.data = d;
    charts.throughput.setData([d.buckets, d.succeeded, d.retried, d.failed]);
    charts.depth.setData([d.buckets, d.due_pending, d.oldest_due_age_s]);
    const total = d.succeeded.concat(d.retried, d.failed).reduce((s, n) => s + n, 0);
    status.textContent = total ? total + " finished attempts in the last " + d.window + " (" + (d.bucket_s / 60) + "-minute intervals)"
      : "No finished attempts in the last " + d.window + ".";
  }

  let timer = null;
  async function refresh() {
    window.clearTimeout(timer);
    try {
      const [w, s] = await Promise.all([getJson("/workers"), getJson("/schedules")]);
      if (w) renderWorkers(w);
      if (s) renderTrack(s);
    } catch (e) { /* the next round tries again; admin.js shows the refresh state */ }
    timer = window.setTimeout(refresh, REFRESH_MS);
  }
  let chartTimer = null;
  async function chartLoop() {
    window.clearTimeout(chartTimer);
    try { await refreshCharts(); } catch (e) { $("#history-status").textContent = "history unavailable"; }
    chartTimer = window.setTimeout(chartLoop, CHARTS_MS);
  }
  makeCharts();
  $("#history-controls").addEventListener("change", chartLoop);
  $("#history-controls").addEventListener("submit", (event) => { event.preventDefault(); chartLoop(); });
  window.addEventListener("resize", () => {
    for (const [u, t] of [[charts.throughput, $("#chart-throughput")], [charts.depth, $("#chart-depth")]]) u.setSize(size(t));
  });
  refresh();
  chartLoop();
})();
