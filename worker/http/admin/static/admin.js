// The admin page's behaviour: refresh from the JSON API every 2 s and send actions to it.
// Data is only ever put in the page with textContent / setAttribute (never innerHTML).
"use strict";
(function () {
  const REFRESH_MS = 2000;
  const body = document.body;
  // The job statuses come from the page (worker/statuses.py via data-statuses), never from a list of our own.
  const STATUSES = (body.dataset.statuses || "").split(" ").filter(Boolean);
  const csrf = body.dataset.csrf || "";
  const $ = (sel) => document.querySelector(sel);

  const { el, td, fmtTime } = window.adminDom;
  const badge = (text, cls) => el("span", { class: "badge " + cls, text: text });
  const jobHref = (id) => "/admin/jobs/" + encodeURIComponent(id);
  const pct = (rate) => (rate === null || rate === undefined ? "–" : (rate * 100).toFixed(1) + " %");

  const pretty = (value) => JSON.stringify(value === undefined ? null : value, null, 2);

  async function api(method, path, payload) {
    const options = { method: method, credentials: "same-origin", headers: { Accept: "application/json" } };
    if (method !== "GET") {
      options.headers["Content-Type"] = "application/json";
      options.headers["X-CSRF-Token"] = csrf;
      options.body = JSON.stringify(payload || {});
    }
    const response = await fetch("/admin/api" + path, options);
    let data = null;
    try { data = await response.json(); } catch (e) { data = null; }
    if (response.status === 401) window.location.assign("/admin/login");
    return { ok: response.ok, status: response.status, data: data || {} };
  }

  function outcome(text, ok) {
    const node = $("#outcome");
    node.textContent = text;
    node.className = "outcome " + (ok ? "ok" : "error");
  }
  function refreshed(ok) {
    const node = $("#updated");
    if (node) node.textContent = ok ? new Date().toLocaleTimeString() : "refresh failed";
  }
  function setListener(listener) {
    const node = $("#listener");
    if (!node || !listener) return;
    node.hidden = false;
    node.textContent = !listener.enabled ? "listener off (polling)" : listener.healthy ? "listener ok" : "listener DOWN";
    node.className = "badge " + (listener.healthy ? "ok" : "bad");
    node.title = listener.last_error || "";
  }
  function replaceRows(tbody, rows) { tbody.replaceChildren(...rows); }
  // A job's reported progress (worker/progress.py): a <progress> bar when it gave a total, and "done/total phase".
  function progressCell(job) {
    const p = job.progress && typeof job.progress === "object" ? job.progress : null;
    const node = el("span", { class: "progress", "data-progress": job.id });
    if (!p) return node;
    const total = typeof p.total === "number" ? p.total : null;
    if (total) node.append(el("progress", { max: total, value: Math.min(Number(p.done) || 0, total) }));
    node.append(el("span", { class: "progress-text",
      text: String(p.done) + (total !== null ? "/" + total : "") + (p.phase ? " " + p.phase : "") }));
    return node;
  }

  // --- overview page ---------------------------------------------------------------------------
  let cursor = null;
  function filterParams() {
    const form = $("#filters");
    const params = new URLSearchParams();
    for (const [key, value] of new FormData(form).entries()) if (String(value).trim()) params.set(key, String(value).trim());
    return params;
  }

  function renderOverview(o) {
    for (const status of STATUSES) {
      const node = document.querySelector('[data-total="' + status + '"] .n');
      if (node) node.textContent = String(o.totals[status] || 0);
    }
    $("#oldest").textContent = o.oldest_due_pending.age_s === null ? "–" : o.oldest_due_pending.age_s.toFixed(1) + " s";
    $("#throughput").textContent = String(o.last_hour.succeeded);
    $("#failure-rate").textContent = pct(o.last_hour.failure_rate);
    $("#paused-banner").hidden = !o.globally_paused;
    setListener(o.listener);
    const paused = new Set(o.paused.map((p) => p.task_type));
    const hour = new Map(o.last_hour.by_task_type.map((h) => [h.task_type, h]));
    replaceRows($("#types tbody"), o.by_task_type.map((t) => {
      const h = hour.get(t.task_type);
      const isPaused = paused.has(t.task_type);
      return el("tr", { "data-task-type": t.task_type }, td(t.task_type),
        ...STATUSES.map((s) => td(t[s], "num")), td(h ? h.attempts : 0, "num"), td(pct(h ? h.failure_rate : null), "num"),
        el("td", {}, isPaused ? badge("paused", "warn") : badge("active", "ok")),
        el("td", {}, el("button", { type: "button", "data-action": isPaused ? "resume" : "pause",
          "data-task-type": t.task_type, text: isPaused ? "Resume" : "Pause" })));
    }));
    replaceRows($("#schedules tbody"), o.schedules.map((s) => el("tr", {}, td(s.name), td(s.cron || "disabled"),
      td(s.task_type), td(s.enabled ? fmtTime(s.next_run) : "disabled"), td(fmtTime(s.last_slot)),
      el("td", {}, s.last_job_id ? el("a", { href: jobHref(s.last_job_id), text: s.last_job_status || "gone" }) : ""))));
  }

  function renderJobs(page) {
    replaceRows($("#job-list tbody"), page.jobs.map((j) => el("tr", { "data-job-id": j.id }, td(fmtTime(j.created_at)),
      el("td", {}, el("a", { href: jobHref(j.id), text: j.id.slice(0, 8) })), td(j.task_type),
      el("td", {}, badge(j.status, "s-" + j.status)), td(j.attempts + "/" + j.max_attempts, "num"),
      el("td", {}, progressCell(j)), td(j.last_error || "", "err"))));
    $("#empty").hidden = page.jobs.length > 0;
    const next = $("#next-page");
    next.hidden = !page.next_cursor;
    next.dataset.cursor = page.next_cursor || "";
    $("#first-page").hidden = cursor === null;
  }

  async function refreshOverview() {
    const params = filterParams();
    if (cursor) params.set("cursor", cursor);
    const [o, jobs] = await Promise.all([api("GET", "/overview"), api("GET", "/jobs?" + params.toString())]);
    if (o.ok) renderOverview(o.data);
    const filterError = $("#filter-error");
    if (jobs.ok) { renderJobs(jobs.data); filterError.hidden = true; }
    else if (jobs.status === 422) { filterError.textContent = jobs.data.error || "invalid filter"; filterError.hidden = false; }
    refreshed(o.ok && jobs.ok);
  }

  async function pauseOrResume(action, taskType) {
    const r = await api("POST", "/" + action, { task_type: taskType });
    const what = taskType === "*" ? "every task type" : taskType;
    if (!r.ok) outcome(action + " failed: " + (r.data.error || r.status), false);
    else if (action === "pause") outcome("Paused " + what + ": its pending jobs wait until resumed.", true);
    else outcome(r.data.resumed ? "Resumed " + what + "." : what + " was not paused.", true);
  }

  async function bulk(action) {
    const filter = Object.fromEntries(filterParams().entries());
    if (!window.confirm(action + " every job matching the filter (up to 1000)?")) return;
    const r = await api("POST", "/jobs/" + action, { filter: filter });
    if (!r.ok) outcome(action + " failed: " + (r.data.error || r.status), false);
    else outcome(action + ": " + r.data.count + " job(s) done of " + r.data.matched + " matching" + (r.data.more ? " (more remain)" : "") + ".", true);
  }

  function initOverview() {
    $("#filters").addEventListener("submit", (event) => {
      event.preventDefault();
      cursor = null;
      const params = filterParams().toString();
      window.history.replaceState(null, "", "/admin/" + (params ? "?" + params : "") + "#jobs");
      refresh();
    });
    $("#next-page").addEventListener("click", () => { cursor = $("#next-page").dataset.cursor || null; refresh(); });
    $("#first-page").addEventListener("click", () => { cursor = null; refresh(); });
    document.addEventListener("click", (event) => {
      const target = event.target instanceof Element ? event.target.closest("button[data-action], button[data-bulk]") : null;
      if (!target) return;
      const done = target.dataset.bulk ? bulk(target.dataset.bulk) : pauseOrResume(target.dataset.action, target.dataset.taskType);
      done.then(refresh);
    });
  }

  // --- job page --------------------------------------------------------------------------------
  const jobId = body.dataset.jobId;
  const FIELDS_TIME = /(_at|_until)$/;

  function renderResult(result) {
    const box = $("#result-summary");
    box.replaceChildren();
    if (!result || typeof result !== "object" || Array.isArray(result)) return;
    const rows = Object.entries(result).filter(([k]) => k !== "errors").map(([k, v]) =>
      el("tr", {}, el("th", { text: k }), td(v !== null && typeof v === "object" ? pretty(v) : v)));
    box.append(el("table", { class: "kv" }, ...rows));
    const errors = Array.isArray(result.errors) ? result.errors : [];
    if (errors.length) {
      const cols = errors[0] && typeof errors[0] === "object" ? Object.keys(errors[0]) : ["error"];
      box.append(el("h3", { text: "Errors (" + errors.length + ")" }), el("table", { class: "result-errors" },
        el("thead", {}, el("tr", {}, ...cols.map((c) => el("th", { text: c })))),
        el("tbody", {}, ...errors.map((e) => el("tr", {}, ...cols.map((c) => td(e && typeof e === "object" ? e[c] : e, "err")))))));
    }
  }

  function renderJob(job) {
    const status = $("#job-status");
    status.textContent = job.status;
    status.className = "badge s-" + job.status;
    for (const cell of document.querySelectorAll("[data-field]")) {
      const key = cell.dataset.field;
      const value = job[key];
      cell.textContent = value === null || value === undefined ? "" : FIELDS_TIME.test(key) ? fmtTime(value) : String(value);
    }
    const bar = document.querySelector(".job-progress");
    if (bar) bar.replaceChildren(progressCell(job));
    $("#last-error").textContent = job.last_error || "none";
    $("#payload").textContent = pretty(job.payload);
    $("#result").textContent = pretty(job.result);
    renderResult(job.result);
    replaceRows($("#runs tbody"), job.runs.map((r) => el("tr", {}, td(r.attempt, "num"),
      el("td", {}, badge(r.outcome, "o-" + r.outcome)), td(r.worker_id), td(fmtTime(r.started_at)),
      td(r.duration_ms + " ms", "num"), td(r.error || "", "err"))));
    $("#no-runs").hidden = job.runs.length > 0;
  }

  async function refreshJob() {
    const r = await api("GET", "/jobs/" + encodeURIComponent(jobId));
    if (r.ok) renderJob(r.data);
    else if (r.status === 404) {
      const status = $("#job-status");
      status.textContent = "gone";
      status.className = "badge";
    }
    refreshed(r.ok);
  }

  const DONE = {
    retry: () => "Retried: the job is pending again and will run shortly.",
    cancel: () => "Cancelled.",
    archive: (d) => "Archived with " + d.archived_runs + " attempt record(s); it is no longer in the queue.",
    "run-now": (d) => "Ran now: " + d.status + " in " + d.duration_ms + " ms" + (d.error ? ": " + d.error : "") + ".",
  };

  function initJob() {
    document.addEventListener("click", async (event) => {
      const target = event.target instanceof Element ? event.target.closest("button[data-job-action]") : null;
      if (!target) return;
      const action = target.dataset.jobAction;
      target.disabled = true;
      try {
        const r = await api("POST", "/jobs/" + encodeURIComponent(jobId) + "/" + action, {});
        outcome(r.ok ? DONE[action](r.data) : action + " refused: " + (r.data.error || r.status), r.ok);
      } finally {
        target.disabled = false;
      }
      refresh();
    });
  }

  // --- refresh loop ----------------------------------------------------------------------------
  const page = body.dataset.page;
  const refreshPage = page === "overview" ? refreshOverview : page === "job" ? refreshJob : null;
  let timer = null;
  async function refresh() {
    if (!refreshPage) return;
    window.clearTimeout(timer);
    try { await refreshPage(); } catch (e) { refreshed(false); }
    timer = window.setTimeout(refresh, REFRESH_MS);
  }
  if (page === "overview") initOverview();
  if (page === "job") initJob();
  refresh();
})();
