// The sequential-ecosystem web console: plain JavaScript, no framework, no build step.
// Everything comes from the public /api/v1 through fetch() with the bearer header, so what
// the console does, a script can do. The shell (index.html) carries no data.
"use strict";

const API = "/api/v1";
const TOKEN_KEY = "sequential.token";
const TERMINAL = ["succeeded", "failed", "cancelled"];
const STATUSES = ["queued", "running", "waiting", "paused", "stopping", "succeeded", "failed", "cancelled"];
const PAGE = 25;

// ------------------------------------------------------------------ small DOM helpers

function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k === "class") el.className = v;
    else if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
    else if (v === true) el.setAttribute(k, "");
    else el.setAttribute(k, String(v));
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const c of children.flat(Infinity)) {
    if (c === null || c === undefined || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

// Replaces an element's children; null, false and nested arrays are skipped (unlike the DOM's).
function fill(el, ...children) {
  el.replaceChildren();
  return append(el, children);
}

function appendTo(el, ...children) {
  return append(el, children);
}

function svg(tag, attrs, ...children) {
  const el = document.createElementNS("http://www.w3.org/2000/svg", tag);
  for (const [k, v] of Object.entries(attrs || {})) if (v !== null && v !== undefined) el.setAttribute(k, String(v));
  for (const c of children.flat()) if (c) el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  return el;
}

const main = () => document.getElementById("main");

function link(href, ...children) {
  return h("a", { href }, ...children);
}

function badge(status) {
  return h("span", { class: `badge s-${status}` }, status);
}

// ------------------------------------------------------------------ formatting

function ms(at) {
  if (at === null || at === undefined) return null;
  if (typeof at === "number") return at;
  const t = Date.parse(at);
  return Number.isNaN(t) ? null : t;
}

function duration(msec) {
  if (msec === null || msec === undefined || Number.isNaN(msec)) return "";
  if (msec < 0) msec = 0;
  if (msec < 1000) return `${Math.round(msec)} ms`;
  const s = msec / 1000;
  if (s < 60) return `${s.toFixed(s < 10 ? 2 : 1)} s`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m} min ${Math.floor(s % 60)} s`;
  const hr = Math.floor(m / 60);
  if (hr < 48) return `${hr} h ${m % 60} min`;
  return `${Math.floor(hr / 24)} d ${hr % 24} h`;
}

function when(at) {
  const t = ms(at);
  if (t === null) return "";
  const d = new Date(t);
  const pad = (n) => String(n).padStart(2, "0");
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
}

function shortId(id) {
  // a UUID v7 starts with its creation time: the tail is what tells runs apart
  return id ? id.slice(0, 4) + "…" + id.slice(-8) : "";
}

function oneLine(v, max = 120) {
  let s;
  try { s = typeof v === "string" ? v : JSON.stringify(v); } catch { s = String(v); }
  if (s === undefined) s = "";
  return s.length > max ? s.slice(0, max - 1) + "…" : s;
}

function errorOf(e) {
  if (!e) return null;
  if (e.error && typeof e.error === "object") return errorOf(e.error);
  return { name: e.name || "Error", message: e.message || (typeof e === "string" ? e : ""), stack: e.stack };
}

function runDuration(run) {
  const start = ms(run.started_at) ?? ms(run.created_at);
  if (start === null) return null;
  const end = ms(run.ended_at) ?? (TERMINAL.includes(run.status) ? ms(run.updated_at) : Date.now());
  return end - start;
}

function summary(run) {
  const w = run.waiting || {};
  const err = errorOf(run.error);
  switch (run.status) {
    case "succeeded": return "→ " + oneLine(run.output);
    case "failed": return err ? `${err.name}: ${err.message}` : "failed";
    case "cancelled": return err && err.message ? `cancelled: ${err.message}` : "cancelled";
    case "paused": return `paused at ${run.state || "a call"}${err ? ": " + err.message : ""} (retry to continue)`;
    case "waiting":
      if (w.kind === "event") return `waits for event “${w.name}”`;
      if (w.kind === "timer") return `sleeps until ${when(w.until)}`;
      return "waiting";
    case "running": return run.state ? `at ${run.state}` : "running";
    case "queued": return "queued";
    default: return run.status;
  }
}

// ------------------------------------------------------------------ the API client

class ApiError extends Error {
  constructor(status, code, message, details) {
    super(message);
    this.status = status;
    this.code = code;
    this.details = details;
  }
}

const conn = { down: false, tokenPrompt: null };

function banner(text) {
  const b = document.getElementById("banner");
  if (text) { b.textContent = text; b.hidden = false; } else { b.hidden = true; b.textContent = ""; }
}

function serverGone() {
  if (conn.down) return;
  conn.down = true;
  banner("The server does not answer. Reconnecting…");
  const probe = async () => {
    try {
      const r = await fetch(API + "/version", { cache: "no-store" });
      if (r.ok || r.status === 401) { serverBack(); return; }
    } catch { /* still gone */ }
    setTimeout(probe, 1500);
  };
  setTimeout(probe, 1500);
}

function serverBack() {
  if (!conn.down) return;
  conn.down = false;
  banner(null);
  document.dispatchEvent(new Event("server-back"));
}

function authHeaders() {
  const t = sessionStorage.getItem(TOKEN_KEY);
  return t ? { Authorization: "Bearer " + t } : {};
}

// Asks for the token once at a time; every request refused with 401 waits for the same answer.
function askToken(refused) {
  if (conn.tokenPrompt) return conn.tokenPrompt;
  conn.tokenPrompt = new Promise((resolve) => {
    const input = h("input", { type: "password", id: "token-input", autocomplete: "off", "aria-describedby": "token-hint" });
    const form = h("form", { method: "dialog" },
      h("h2", { id: "dialog-title" }, "This server needs a token"),
      h("p", { id: "token-hint", class: "hint" }, refused
        ? "The token was refused. Enter the token the server was started with (SEQUENTIAL_API_TOKEN or --token-file)."
        : "Enter the token the server was started with (SEQUENTIAL_API_TOKEN or --token-file). It is kept for this browser tab only."),
      h("label", { for: "token-input" }, "Token"),
      input,
      h("div", { class: "buttons" }, h("button", { type: "submit", class: "primary" }, "Use token")));
    form.addEventListener("submit", (ev) => {
      ev.preventDefault();
      const v = input.value.trim();
      if (!v) return;
      sessionStorage.setItem(TOKEN_KEY, v);
      dialog.close();
      conn.tokenPrompt = null;
      resolve();
    });
    const dialog = document.getElementById("dialog");
    fill(dialog, form);
    dialog.oncancel = (ev) => ev.preventDefault();
    dialog.showModal();
    input.focus();
  });
  return conn.tokenPrompt;
}

// Requests for documents (not streams) in flight: the page says it is busy while any are.
let loading = 0;

async function api(path, opts = {}) {
  if (opts.raw) return request(path, opts);
  loading += 1;
  document.body.setAttribute("aria-busy", "true");
  try {
    return await request(path, opts);
  } finally {
    loading -= 1;
    if (loading === 0) document.body.setAttribute("aria-busy", "false");
  }
}

async function request(path, opts) {
  const headers = Object.assign({ Accept: "application/json" }, opts.headers || {}, authHeaders());
  let body = opts.body;
  if (opts.json !== undefined) {
    headers["Content-Type"] = "application/json";
    body = JSON.stringify(opts.json);
  }
  let res;
  try {
    res = await fetch(API + path, { method: opts.method || "GET", headers, body, signal: opts.signal, cache: "no-store" });
  } catch (e) {
    if (e.name === "AbortError") throw e;
    serverGone();
    throw new ApiError(0, "SERVER_GONE", "The server does not answer; the console reconnects when it is back.");
  }
  serverBack();
  if (res.status === 401) {
    // a token that was sent and refused is wrong: ask again (once), never retry on our own
    await askToken(Boolean(headers.Authorization));
    return api(path, opts);
  }
  if (opts.raw) return res;
  const text = await res.text();
  let doc = null;
  if (text) { try { doc = JSON.parse(text); } catch { doc = text; } }
  if (!res.ok && !(opts.accept || []).includes(res.status)) {
    const d = doc && typeof doc === "object" ? doc : {};
    throw new ApiError(res.status, d.code || "HTTP_" + res.status, d.error || `${res.status} ${res.statusText}`, d.details);
  }
  return opts.withStatus ? { status: res.status, doc } : doc;
}

// Reads an NDJSON stream; calls onRecord for each line; resolves when the server closes it.
async function ndjson(path, onRecord, signal) {
  const res = await api(path, { raw: true, signal, headers: { Accept: "application/x-ndjson" } });
  if (!res.ok) {
    let d = {};
    try { d = await res.json(); } catch { /* not JSON */ }
    throw new ApiError(res.status, d.code || "HTTP_" + res.status, d.error || res.statusText);
  }
  const reader = res.body.getReader();
  const dec = new TextDecoder();
  let buf = "";
  for (;;) {
    let chunk;
    try { chunk = await reader.read(); } catch (e) {
      if (signal && signal.aborted) return;
      throw new ApiError(0, "STREAM_BROKEN", "the stream broke: " + e.message);
    }
    if (chunk.done) break;
    buf += dec.decode(chunk.value, { stream: true });
    // one pass over the chunk: slicing the rest off after every line is quadratic
    let from = 0, nl;
    const lines = [];
    while ((nl = buf.indexOf("\n", from)) >= 0) {
      lines.push(buf.slice(from, nl));
      from = nl + 1;
    }
    buf = buf.slice(from);
    for (const raw of lines) {
      const line = raw.trim();
      if (!line) continue;
      let rec;
      try { rec = JSON.parse(line); } catch { continue; }
      if (rec.kind === "ping") continue;
      onRecord(rec);
    }
  }
}

// Whether the server has the host-wide stream (read from its OpenAPI document, once).
let hostStream = null;
async function hasHostStream() {
  if (hostStream === null) {
    try {
      const doc = await api("/openapi.json");
      hostStream = Boolean(doc && doc.paths && doc.paths["/api/v1/events"]);
    } catch { return false; }
  }
  return hostStream;
}

// ------------------------------------------------------------------ routing

let page = { stop() {} };

function go(href, replace) {
  if (replace) history.replaceState(null, "", href); else history.pushState(null, "", href);
  route();
}

function route() {
  page.stop();
  const path = location.pathname.replace(/\/+$/, "");
  const m = main();
  fill(m);
  const parts = path.split("/").filter(Boolean).map(decodeURIComponent);
  if (parts[0] === "ui") parts.shift();
  let section = "runs";
  if (parts.length === 0 || (parts[0] === "runs" && parts.length === 1)) page = runsPage();
  else if (parts[0] === "runs" && parts.length === 2) page = runPage(parts[1]);
  else if (parts[0] === "tasks" && parts.length === 1) { page = tasksPage(); section = "tasks"; }
  else if (parts[0] === "tasks" && parts.length === 2) { page = taskPage(parts[1]); section = "tasks"; }
  else page = notFound("There is no page at " + location.pathname + ".");
  for (const a of document.querySelectorAll("[data-nav]")) {
    if (a.dataset.nav === section) a.setAttribute("aria-current", "page"); else a.removeAttribute("aria-current");
  }
}

function notFound(what, back = "/ui/runs", backText = "Back to the runs") {
  document.title = "Not found · sequential-ecosystem";
  fill(main(), 
    h("h1", {}, "Not found"),
    h("div", { class: "empty", id: "not-found" }, h("p", {}, what), h("p", {}, link(back, backText))));
  return { stop() {} };
}

document.addEventListener("click", (ev) => {
  const a = ev.target.closest && ev.target.closest("a[href]");
  if (!a || ev.defaultPrevented || ev.button !== 0 || ev.metaKey || ev.ctrlKey || ev.shiftKey || a.target || a.hasAttribute("download")) return;
  const url = new URL(a.href, location.href);
  if (url.origin !== location.origin || !(url.pathname === "/" || url.pathname.startsWith("/ui"))) return;
  ev.preventDefault();
  go(url.pathname + url.search);
});
window.addEventListener("popstate", route);

// ------------------------------------------------------------------ confirmation dialog

function confirmDialog(title, text, action, danger) {
  return new Promise((resolve) => {
    const dialog = document.getElementById("dialog");
    const cancel = h("button", { type: "button", id: "confirm-cancel" }, "Cancel");
    const ok = h("button", { type: "submit", id: "confirm-ok", class: danger ? "danger" : "primary" }, action);
    const form = h("form", { method: "dialog" },
      h("h2", { id: "dialog-title" }, title), h("p", {}, text), h("div", { class: "buttons" }, cancel, ok));
    let answered = false;
    const done = (v) => { if (answered) return; answered = true; dialog.close(); resolve(v); };
    form.addEventListener("submit", (ev) => { ev.preventDefault(); done(true); });
    cancel.addEventListener("click", () => done(false));
    dialog.oncancel = () => done(false);
    fill(dialog, form);
    dialog.showModal();
    ok.focus();
  });
}

// ------------------------------------------------------------------ JSON view

function jsonView(value, depthOpen = 2) {
  const root = h("div", { class: "json" });
  root.append(jsonNode(null, value, 0, depthOpen));
  return root;
}

function jsonLeaf(v) {
  if (typeof v === "string") return h("span", { class: "str" }, JSON.stringify(v));
  if (typeof v === "number") return h("span", { class: "num" }, String(v));
  return h("span", { class: "lit" }, String(v));
}

function jsonNode(key, v, depth, depthOpen) {
  const label = key === null ? [] : [h("span", { class: "k" }, JSON.stringify(key)), ": "];
  if (v === null || typeof v !== "object") return h("div", { class: "row" }, label, jsonLeaf(v));
  const isArr = Array.isArray(v);
  const entries = isArr ? v.map((x, i) => [i, x]) : Object.entries(v);
  if (entries.length === 0) return h("div", { class: "row" }, label, isArr ? "[]" : "{}");
  const d = h("details", { open: depth < depthOpen });
  d.append(h("summary", {}, label, isArr ? `[ ${entries.length} item${entries.length === 1 ? "" : "s"} ]` : `{ ${entries.length} key${entries.length === 1 ? "" : "s"} }`));
  for (const [k, x] of entries.slice(0, 500)) d.append(jsonNode(isArr ? null : k, x, depth + 1, depthOpen));
  if (entries.length > 500) d.append(h("div", { class: "row muted" }, `… ${entries.length - 500} more`));
  return d;
}

// A body shown up to `limit` characters, with a download link for the whole of it.
function bodyView(body, limit = 4000) {
  const text = typeof body === "string" ? body : JSON.stringify(body, null, 2);
  if (text === undefined) return h("span", { class: "muted" }, "(none)");
  if (text.length <= limit) return h("pre", {}, text);
  const url = URL.createObjectURL(new Blob([text], { type: "application/json" }));
  return h("div", {}, h("pre", {}, text.slice(0, limit) + "\n…"),
    h("a", { href: url, download: "body.json" }, `Download the whole body (${text.length.toLocaleString()} characters)`));
}

// ------------------------------------------------------------------ runs list

function runsPage() {
  document.title = "Runs · sequential-ecosystem";
  const params = new URLSearchParams(location.search);
  const limit = Math.min(Math.max(Number(params.get("limit")) || PAGE, 1), 200);
  const state = { task: params.get("task") || "", status: params.get("status") || "", q: params.get("q") || "", cursors: [null], items: [], next: null };
  const ctl = new AbortController();
  let stopped = false;
  let refreshTimer = null;

  const taskSel = h("select", { id: "filter-task", name: "task" }, h("option", { value: "" }, "All tasks"));
  const statusSel = h("select", { id: "filter-status", name: "status" }, h("option", { value: "" }, "Any status"),
    STATUSES.map((s) => h("option", { value: s, selected: s === state.status }, s)));
  const search = h("input", { id: "search", type: "search", value: state.q, placeholder: "run id or idempotency key", autocomplete: "off" });
  const prev = h("button", { type: "button", id: "prev-page" }, "← Newer");
  const next = h("button", { type: "button", id: "next-page" }, "Older →");
  const count = h("span", { class: "count", "aria-live": "polite" });
  const live = h("span", { class: "muted", id: "live-state" });
  const tbody = h("tbody", { id: "runs-body" });
  const table = h("table", { class: "runs", "aria-label": "Runs" },
    h("thead", {}, h("tr", {},
      h("th", { class: "c-id", scope: "col" }, "Run"), h("th", { class: "c-status", scope: "col" }, "Status"),
      h("th", { class: "c-task", scope: "col" }, "Task"), h("th", { class: "c-ver wide", scope: "col" }, "Ver."),
      h("th", { class: "c-started wide", scope: "col" }, "Started"), h("th", { class: "c-dur", scope: "col" }, "Duration"),
      h("th", { class: "c-summary wide", scope: "col" }, "Summary"))),
    tbody);
  const empty = h("div", { class: "empty", id: "runs-empty", hidden: true });
  const error = h("p", { class: "message err", role: "alert" });

  fill(main(), 
    h("h1", {}, "Runs"),
    h("form", { class: "toolbar", role: "search", onsubmit: (ev) => { ev.preventDefault(); apply(); } },
      h("div", {}, h("label", { for: "filter-task" }, "Task"), taskSel),
      h("div", {}, h("label", { for: "filter-status" }, "Status"), statusSel),
      h("div", { class: "grow" }, h("label", { for: "search" }, "Search"), search),
      h("button", { type: "submit" }, "Search")),
    h("div", { class: "pager" }, prev, next, live, count),
    error, empty, table);

  taskSel.addEventListener("change", apply);
  statusSel.addEventListener("change", apply);
  prev.addEventListener("click", () => { if (state.cursors.length > 1) { state.cursors.pop(); load(); } });
  next.addEventListener("click", () => { if (state.next) { state.cursors.push(state.next); load(); } });

  api("/tasks?limit=1000").then((doc) => {
    for (const t of doc.items || []) taskSel.append(h("option", { value: t.name, selected: t.name === state.task }, t.name));
  }).catch(() => {});

  function apply() {
    state.task = taskSel.value;
    state.status = statusSel.value;
    state.q = search.value.trim();
    state.cursors = [null];
    const p = new URLSearchParams();
    if (state.task) p.set("task", state.task);
    if (state.status) p.set("status", state.status);
    if (state.q) p.set("q", state.q);
    if (limit !== PAGE) p.set("limit", limit);
    history.replaceState(null, "", "/ui/runs" + (p.toString() ? "?" + p : ""));
    load();
  }

  async function fetchPage() {
    const q = state.q;
    if (q && /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i.test(q)) {
      const got = await api("/runs/" + encodeURIComponent(q), { accept: [404, 400], withStatus: true });
      return { items: got.status === 200 ? [got.doc] : [], next_cursor: null };
    }
    const p = new URLSearchParams({ limit: String(limit) });
    if (state.task) p.set("task", state.task);
    if (state.status) p.set("status", state.status);
    if (q) p.set("idempotency_key", q);
    const cursor = state.cursors[state.cursors.length - 1];
    if (cursor) p.set("cursor", cursor);
    return api("/runs?" + p);
  }

  async function load() {
    try {
      const doc = await fetchPage();
      if (stopped) return;
      error.textContent = "";
      state.items = doc.items || [];
      state.next = doc.next_cursor || null;
      render();
    } catch (e) {
      if (stopped || e.name === "AbortError") return;
      error.textContent = e.message;
    }
  }

  // Rows are updated in place (fixed height, fixed columns), so live updates never shift the page.
  function render() {
    prev.disabled = state.cursors.length <= 1;
    next.disabled = !state.next;
    count.textContent = state.items.length ? `${state.items.length} on this page` : "";
    const filtered = state.task || state.status || state.q;
    if (state.items.length === 0) {
      fill(empty, ...(filtered
        ? [h("p", {}, "No run matches these filters."), h("p", {}, link("/ui/runs", "Show every run"))]
        : [h("p", {}, "No runs yet."), h("p", {}, "Start one from a ", link("/ui/tasks", "task's page"), ", or from a shell: ", h("code", {}, "sequential-ecosystem run hello"))]));
      empty.hidden = false;
      table.hidden = true;
      return;
    }
    empty.hidden = true;
    table.hidden = false;
    while (tbody.rows.length > state.items.length) tbody.deleteRow(-1);
    state.items.forEach((run, i) => {
      let tr = tbody.rows[i];
      if (!tr) { tr = tbody.insertRow(-1); for (let c = 0; c < 7; c++) tr.insertCell(-1); }
      if (tr.dataset.sig === sig(run)) return;
      tr.dataset.sig = sig(run);
      tr.dataset.run = run.id;
      const cells = tr.cells;
      fill(cells[0], h("a", { href: "/ui/runs/" + run.id, class: "mono", title: run.id, "aria-label": "Run " + run.id }, shortId(run.id)));
      fill(cells[1], badge(run.status));
      cells[1].className = "status";
      fill(cells[2], h("a", { href: "/ui/tasks/" + encodeURIComponent(run.task.name) }, run.task.name));
      cells[3].textContent = "v" + run.task.version; cells[3].className = "wide";
      cells[4].textContent = when(run.started_at || run.created_at); cells[4].className = "wide";
      cells[5].textContent = duration(runDuration(run));
      cells[6].textContent = summary(run); cells[6].className = "summary wide"; cells[6].title = summary(run);
    });
  }
  const sig = (r) => [r.id, r.status, r.updated_at, r.journal && r.journal.last_seq].join("|");

  function soon() {
    if (refreshTimer || stopped) return;
    refreshTimer = setTimeout(() => { refreshTimer = null; load(); }, 200);
  }

  async function follow() {
    let after = null;
    while (!stopped) {
      if (await hasHostStream()) {
        live.textContent = "live";
        try {
          const p = new URLSearchParams({ kinds: "run.*" });
          if (after !== null) p.set("after", after);
          await ndjson("/events?" + p, (rec) => {
            if (rec.cursor !== undefined) after = rec.cursor;
            else if (rec.id !== undefined && typeof rec.id !== "object") after = rec.id;
            soon();
          }, ctl.signal);
        } catch (e) {
          if (stopped) return;
          live.textContent = "reconnecting…";
        }
        await sleep(1000);
      } else {
        // no host-wide stream on this server: poll the page
        live.textContent = "live (polling)";
        await sleep(2000);
        if (!stopped && !document.hidden) await load();
      }
    }
  }

  const onBack = () => load();
  document.addEventListener("server-back", onBack);
  const ticker = setInterval(() => { if (state.items.some((r) => !TERMINAL.includes(r.status))) rerenderDurations(); }, 1000);
  function rerenderDurations() {
    state.items.forEach((run, i) => { const tr = tbody.rows[i]; if (tr) tr.cells[5].textContent = duration(runDuration(run)); });
  }

  load().then(follow);
  return {
    stop() {
      stopped = true;
      ctl.abort();
      clearInterval(ticker);
      clearTimeout(refreshTimer);
      document.removeEventListener("server-back", onBack);
    },
  };
}

function sleep(n) {
  return new Promise((r) => setTimeout(r, n));
}

// ------------------------------------------------------------------ one run

function runPage(id) {
  document.title = "Run " + shortId(id) + " · sequential-ecosystem";
  const ctl = new AbortController();
  let stopped = false;
  const st = { run: null, records: [], bySeq: new Map(), selected: null, task: null, lastSeq: null };

  const head = h("div", { id: "run-head" });
  const attention = h("div", { class: "status-slot", id: "run-attention", "aria-live": "polite" });
  const actions = h("div", { class: "actions", id: "run-actions" });
  const message = h("p", { class: "message", id: "action-message", role: "status" });
  const eventForm = h("div", { id: "event-form-slot" });
  const io = h("div", { id: "run-io" });
  const graph = h("div", { id: "run-graph" });
  const timeline = h("ol", { class: "timeline", id: "timeline", "aria-label": "Journal" });
  const tlHint = h("p", { class: "hint" }, "Each call is a bar from requested to completed. Open a record for its request and response; pick one to rerun from it.");

  fill(main(), 
    h("p", {}, link("/ui/runs", "← Runs")),
    head, attention, actions, message, eventForm, io, graph,
    h("h2", {}, "Journal"), tlHint, timeline);
  head.append(h("h1", {}, "Run ", h("span", { class: "mono" }, id)));

  async function loadRun() {
    try {
      st.run = await api("/runs/" + encodeURIComponent(id));
    } catch (e) {
      if (e.status === 404 || e.status === 400) {
        stopped = true;
        notFound(`No run has the id ${id}. It may have been deleted with its task, or the link is mistyped.`);
        return false;
      }
      if (e.status === 0) return null;
      message.className = "message err";
      message.textContent = e.message;
      return null;
    }
    renderRun();
    return true;
  }

  function renderRun() {
    // nothing is redrawn unless the run changed: a keyboard user's focus stays where it is
    const key = JSON.stringify([st.run.status, st.run.waiting, st.run.state, st.run.attempt, st.run.updated_at, st.run.ended_at]);
    if (key === st.renderedKey) { placeBars(); return; }
    st.renderedKey = key;
    const run = st.run;
    const err = errorOf(run.error);
    fill(head, 
      h("h1", {}, "Run ", h("span", { class: "mono" }, run.id)),
      h("dl", { class: "facts" },
        fact("Status", h("span", { id: "run-status" }, badge(run.status))),
        fact("Task", link("/ui/tasks/" + encodeURIComponent(run.task.name), run.task.name), ` v${run.task.version}`),
        fact("Created", when(run.created_at)),
        fact("Started", when(run.started_at) || "—"),
        fact("Ended", when(run.ended_at) || "—"),
        fact("Duration", h("span", { id: "run-duration" }, duration(runDuration(run)))),
        run.idempotency_key ? fact("Idempotency key", h("code", {}, run.idempotency_key)) : null,
        run.parent ? fact("Parent", link("/ui/runs/" + run.parent.run, shortId(run.parent.run))) : null,
        fact("Attempt", String(run.attempt ?? "—"))));
    renderAttention(run, err);
    renderActions(run);
    // input and output side by side in boxes of a fixed height: the output arriving moves nothing
    const result = run.status === "succeeded"
      ? h("div", { id: "run-output", class: "box" }, jsonView(run.output))
      : err && run.status !== "paused" && run.status !== "waiting"
        ? h("div", { class: "box" }, errorView(err))
        : h("div", { class: "box" }, h("p", { class: "muted" }, "The output appears here when the run succeeds."));
    fill(io, h("div", { class: "io" },
      h("section", { "aria-labelledby": "h-input" }, h("h2", { id: "h-input" }, "Input"), h("div", { class: "box" }, jsonView(run.input))),
      h("section", { "aria-labelledby": "h-output" }, h("h2", { id: "h-output" }, run.status === "failed" || run.status === "cancelled" ? "Error" : "Output"), result)));
    placeBars();
  }

  function fact(label, ...value) {
    return h("div", {}, h("dt", {}, label), h("dd", {}, ...value));
  }

  function errorView(err) {
    return h("div", { class: "panel problem", id: "run-error" },
      h("p", {}, h("strong", {}, err.name), ": ", err.message),
      err.stack ? h("details", {}, h("summary", {}, "Stack"), h("pre", {}, err.stack)) : null);
  }

  let countdown = null;
  function renderAttention(run, err) {
    clearInterval(countdown);
    const w = run.waiting || {};
    if (run.status === "waiting" && w.kind === "event") {
      const left = h("span", { class: "muted" });
      fill(attention, h("div", { class: "panel attention", id: "waiting" },
        h("p", { class: "one-line" }, "Waiting for the event ", h("code", {}, w.name), w.until ? [" until ", when(w.until), " ", left] : null)));
      if (w.until) tick(left, w.until);
    } else if (run.status === "waiting" && w.kind === "timer") {
      const left = h("span", { id: "timer-left" });
      fill(attention, h("div", { class: "panel attention", id: "waiting" },
        h("p", { class: "one-line" }, "Sleeping until ", when(w.until), ": ", left)));
      tick(left, w.until);
    } else if (run.status === "paused") {
      const call = pausedCall();
      fill(attention, h("div", { class: "panel problem", id: "paused" },
        h("p", {}, h("strong", {}, "Paused"), ": a call spent its retries. Retry it once what it calls is back."),
        call ? h("p", {}, "Failed call: ", h("code", { id: "paused-call" }, call)) : null,
        err ? h("p", {}, "Last error: ", h("code", { id: "paused-error" }, `${err.name}: ${err.message}`)) : null));
    } else {
      // one line in the same box for every other status, so a change of status moves nothing
      const text = {
        queued: "Queued: a worker picks it up next.",
        running: `Running${run.state ? " at " + run.state : ""}.`,
        stopping: "Stopping: the step in flight may finish, then the run ends cancelled.",
        succeeded: `Succeeded after ${duration(runDuration(run))}.`,
        failed: `Failed${err ? ": " + err.name + ": " + err.message : ""}.`,
        cancelled: `Cancelled${err && err.message ? ": " + err.message : ""}.`,
      }[run.status] || run.status;
      fill(attention, h("div", { class: "panel", id: "run-line" }, h("p", { class: "one-line" }, text)));
    }
  }

  function tick(el, until) {
    const t = ms(until);
    const upd = () => { el.textContent = `(${duration(Math.max(0, t - Date.now()))} left)`; };
    upd();
    countdown = setInterval(upd, 1000);
  }

  function pausedCall() {
    const paused = [...st.records].reverse().find((r) => r.kind === "run.paused");
    const seq = paused && paused.data ? paused.data.seq : null;
    const req = seq !== null && seq !== undefined ? st.records.find((r) => r.kind === "call.requested" && r.data && r.data.seq === seq) : null;
    if (req) return describeCall(req.data);
    return st.run.state || null;
  }

  function renderActions(run) {
    const active = !TERMINAL.includes(run.status);
    const btn = (idv, label, onclick, cls) => h("button", { type: "button", id: idv, class: cls, onclick }, label);
    fill(actions, 
      btn("action-rerun", st.selected === null ? "Rerun from start" : `Rerun from record #${st.selected}`, () => rerun()),
      active ? btn("action-event", "Send event…", () => openEventForm()) : null,
      run.status === "paused" ? btn("action-retry", "Retry", () => act("Retry this run?", "The failed call runs again with fresh retries.", "Retry", "_retry", {}), "primary") : null,
      active ? btn("action-cancel", "Cancel", () => act("Cancel this run?", "The step in flight may finish within 7 s; then the run ends cancelled.", "Cancel the run", "_stop", { timeout: 7000 }, true)) : null,
      active ? btn("action-kill", "Kill", () => act("Kill this run now?", "The run ends cancelled at once; the step in flight is aborted.", "Kill", "_kill", {}, true), "danger") : null);
    if (!active) fill(eventForm);
  }

  async function act(title, text, action, verb, body, danger) {
    if (!(await confirmDialog(title, text, action, danger))) return;
    message.className = "message";
    message.textContent = "…";
    try {
      st.run = await api(`/runs/${encodeURIComponent(id)}/${verb}`, { method: "POST", json: body });
      message.className = "message ok";
      message.textContent = `${action}: done.`;
      renderRun();
      follow();
    } catch (e) {
      message.className = "message err";
      message.textContent = e.message;
    }
  }

  async function rerun() {
    const from = st.selected === null ? 0 : st.selected;
    const text = from === 0
      ? "A new run starts over with the same input."
      : `A new run starts with the first ${from} journal records of this one (replayed, not re-executed).`;
    if (!(await confirmDialog("Rerun?", text, "Rerun"))) return;
    try {
      const n = await api(`/runs/${encodeURIComponent(id)}/_fork`, { method: "POST", json: { from_seq: from } });
      go("/ui/runs/" + n.id);
    } catch (e) {
      message.className = "message err";
      message.textContent = e.message;
    }
  }

  function openEventForm() {
    const w = (st.run && st.run.waiting) || {};
    const name = h("input", { type: "text", id: "event-name", value: w.kind === "event" ? w.name : "", required: true, autocomplete: "off" });
    const payload = h("textarea", { id: "event-payload", spellcheck: "false", "aria-describedby": "event-payload-error" }, "{}");
    const nameErr = h("p", { class: "field-error", id: "event-name-error" });
    const payloadErr = h("p", { class: "field-error", id: "event-payload-error", role: "alert" });
    const form = h("form", { class: "panel form-grid", id: "event-form" },
      h("label", { for: "event-name" }, "Event name"), name, nameErr,
      h("label", { for: "event-payload" }, "Payload (JSON)"), payload, payloadErr,
      h("div", { class: "actions" },
        h("button", { type: "submit", class: "primary", id: "event-send" }, "Send event"),
        h("button", { type: "button", id: "event-close", onclick: () => fill(eventForm) }, "Close")));
    form.addEventListener("submit", async (ev) => {
      ev.preventDefault();
      nameErr.textContent = "";
      payloadErr.textContent = "";
      const n = name.value.trim();
      if (!n) { nameErr.textContent = "Name the event, e.g. approved."; name.focus(); return; }
      let message;
      try { message = JSON.parse(payload.value.trim() || "null"); } catch (e) {
        payloadErr.textContent = `The payload is not JSON (${e.message}); nothing was sent. For example {"by": "ann"}.`;
        payload.setAttribute("aria-invalid", "true");
        payload.focus();
        return;
      }
      payload.removeAttribute("aria-invalid");
      if (!(await confirmDialog("Send this event?", `“${n}” with ${oneLine(message, 80)}`, "Send"))) return;
      try {
        const r = await api(`/runs/${encodeURIComponent(id)}/_event`, { method: "POST", json: { eventName: n, message } });
        msg(r.consumed ? `Event “${n}” sent; the run took it.` : `Event “${n}” sent; it waits in the run's inbox.`, "ok");
        fill(eventForm);
      } catch (e) {
        payloadErr.textContent = e.message;
      }
    });
    fill(eventForm, form);
    (name.value ? payload : name).focus();
  }

  function msg(text, kind) {
    message.className = "message " + (kind || "");
    message.textContent = text;
  }

  // ---- the journal as a timeline
  let pending = [];
  let frame = null;
  function addRecord(rec) {
    if (st.bySeq.has(rec.seq)) return;
    if (!st.records.length) performance.mark("journal-first-record");
    st.bySeq.set(rec.seq, rec);
    st.records.push(rec);
    st.lastSeq = rec.seq;
    pending.push(rec);
    if (!frame) frame = requestAnimationFrame(flush);
  }

  const rows = new Map(); // call seq → its row (a completion updates the request's row)
  const rowList = [];
  function flush() {
    frame = null;
    const began = performance.now();
    const batch = pending;
    pending = [];
    const frag = document.createDocumentFragment();
    for (const rec of batch) {
      const d = rec.data || {};
      if (rec.kind === "call.completed" && rows.has(callKey(d))) {
        const row = rows.get(callKey(d));
        row.complete = rec;
        buildRow(row);
        continue;
      }
      if (rec.kind === "run.paused" && rows.has(callKey(d)) && !rows.get(callKey(d)).complete) {
        // the call that spent its retries ends here, failed
        const call = rows.get(callKey(d));
        call.complete = { at: rec.at, data: { result: { error: d.error } } };
        buildRow(call);
      }
      const row = { li: h("li", { "data-seq": rec.seq }), rec, complete: null };
      if ((rec.kind === "call.requested" || rec.kind === "timer.armed") && d.seq !== undefined && !rows.has(callKey(d))) rows.set(callKey(d), row);
      rowList.push(row);
      buildRow(row);
      frag.append(row.li);
    }
    timeline.append(frag);
    placeBars();
    performance.measure("journal-render", { start: began, end: performance.now() });
    performance.mark("journal-rendered");
    if (st.run && st.run.status === "paused") renderAttention(st.run, errorOf(st.run.error));
    if (st.graphTask) drawGraph();
  }

  // Bars are relative to the whole run: only their position changes when the run goes on.
  function placeBars() {
    if (!st.records.length) return;
    const t0 = ms(st.records[0].at);
    const tEnd = Math.max(ms(st.records[st.records.length - 1].at) || t0, t0 + 1);
    const span = tEnd - t0;
    const active = !(st.run && TERMINAL.includes(st.run.status));
    for (const row of rowList) {
      if (!row.bar) continue;
      const start = ms(row.rec.at);
      const end = row.complete ? ms(row.complete.at) : active ? tEnd : start;
      row.bar.style.left = `${Math.min(((start - t0) / span) * 100, 99.5)}%`;
      row.bar.style.width = `${Math.max(((end - start) / span) * 100, 0.3)}%`;
    }
  }

  function buildRow(row) {
    const { li, rec, complete } = row;
    const isCall = rec.kind === "call.requested" || rec.kind === "timer.armed" || rec.kind === "call.completed";
    const threw = complete && complete.data && complete.data.result && complete.data.result.error;
    const open = isCall && !complete && rec.kind !== "call.completed";
    row.bar = isCall ? h("div", { class: "bar" + (threw ? " bad" : open ? " open" : "") }) : null;
    const track = h("div", { class: "track", "aria-hidden": "true" }, row.bar);
    const what = h("span", { class: "what" }, marks(rec, complete),
      rec.kind === "timer.armed" && complete ? describeCall(complete.data || {}) : describe(rec));
    const dur = isCall ? (complete ? duration(ms(complete.at) - ms(rec.at)) : open ? "open" : "") : "";
    const summaryEl = h("summary", { class: "rec", "aria-label": `Record ${rec.seq}: ${what.textContent} ${dur}` },
      h("span", { class: "seq" }, rec.seq), what, track, h("span", { class: "dur" }, dur));
    const det = li.firstChild;
    const wasOpen = det ? det.open : false;
    const body = h("div", { class: "body" });
    const details = h("details", { open: wasOpen }, summaryEl, body);
    details.addEventListener("toggle", () => { if (details.open && !body.firstChild) fillBody(body, rec, row.complete); });
    if (wasOpen) fillBody(body, rec, complete);
    fill(li, details);
  }

  function marks(rec, complete) {
    const d = rec.data || {};
    const out = [];
    const m = (t) => out.push(h("span", { class: "mark" }, t));
    if (rec.kind === "call.requested") {
      if (d.kind === "waitForEvent") m("event");
      if (d.kind === "sleep") m("timer");
      if (d.kind === "child") m("child");
      if (d.attempt > 1 || (complete && complete.data && complete.data.attempts > 1)) m("retried");
    }
    if (rec.kind === "timer.armed") m("timer");
    if (rec.kind === "child.started") m("child");
    if (rec.kind === "run.paused") m("paused");
    if (rec.kind === "retry.scheduled" || (rec.kind === "state.entered" && d.attempt > 1)) m("retry");
    if (rec.kind === "event.received") m("event");
    return out;
  }

  function describe(rec) {
    const d = rec.data || {};
    switch (rec.kind) {
      case "run.started": return `run started (v${d.version ?? "?"})`;
      case "call.requested": return describeCall(d);
      case "call.completed": return describeCall(d) + " — completed";
      case "log": return `${(d.request && d.request.level) || "log"}: ${oneLine(d.request && d.request.message, 200)}`;
      case "timer.armed": return `waiting (timer until ${when(d.wakeAt)})`;
      case "child.started": return [`child run `, link("/ui/runs/" + d.run, shortId(d.run))];
      case "run.paused": return `paused: ${(errorOf(d.error) || {}).message || ""}`;
      case "run.succeeded": return "run succeeded";
      case "run.failed": return `run failed: ${(errorOf(d.error) || {}).name || ""}: ${(errorOf(d.error) || {}).message || ""}`;
      case "run.cancelled": return `run cancelled${d.error && d.error.message ? ": " + d.error.message : ""}`;
      case "state.entered": return `entered ${d.path}${d.attempt > 1 ? " (attempt " + d.attempt + ")" : ""}`;
      case "state.succeeded": return `${d.path} succeeded → ${oneLine(d.output, 80)}`;
      case "state.failed": return `${d.path} failed: ${(errorOf(d.error) || {}).message || ""}`;
      case "transition": return `${d.from} → ${d.to} (${d.via})`;
      case "retry.scheduled": return `retry of ${d.path} at ${when(d.at || d.until)}`;
      case "event.received": return `event “${d.name || d.eventName}” received`;
      default: return rec.kind + (d.path ? " " + d.path : d.state ? " " + d.state : "");
    }
  }

  function fillBody(body, rec, complete) {
    const d = rec.data || {};
    const rows = [h("span", { class: "muted" }, "kind"), h("span", {}, rec.kind), h("span", { class: "muted" }, "at"), h("span", {}, when(rec.at) + ` (${ms(rec.at)})`)];
    if (complete) rows.push(h("span", { class: "muted" }, "completed"), h("span", {}, when(complete.at) + ` (${duration(ms(complete.at) - ms(rec.at))})`));
    body.append(h("div", { class: "kv" }, rows));
    if (rec.kind === "call.requested") {
      body.append(h("h3", {}, "Request"), requestView(d));
      if (complete) {
        const res = (complete.data && complete.data.result) || {};
        if (res.error) { body.append(h("h3", {}, "Error")); body.append(errorView(errorOf(res.error))); }
        else { body.append(h("h3", {}, "Response"), responseView(res.ok)); }
      }
    } else if (rec.kind === "child.started") {
      body.append(h("p", {}, link("/ui/runs/" + d.run, "Open the child run")));
    } else {
      body.append(bodyView(d));
    }
  }

  function requestView(d) {
    const req = d.request || {};
    if (d.kind === "fetch") {
      const init = req.init || req.options || {};
      const headers = req.headers || init.headers;
      return h("div", {},
        h("p", {}, h("code", {}, `${req.method || init.method || "GET"} ${req.url || req.input || ""}`)),
        headers ? [h("p", { class: "muted" }, "Headers"), bodyView(headers)] : null,
        (req.body ?? init.body) !== undefined ? [h("p", { class: "muted" }, "Body"), bodyView(req.body ?? init.body)] : null,
        h("details", {}, h("summary", {}, "As recorded"), bodyView(req)));
    }
    return bodyView(req);
  }

  function responseView(ok) {
    if (ok && typeof ok === "object" && ("status" in ok) && ("headers" in ok || "body" in ok || "data" in ok)) {
      return h("div", {},
        h("p", {}, h("code", {}, `${ok.status} ${ok.statusText || ""}`)),
        ok.headers ? [h("p", { class: "muted" }, "Headers"), bodyView(ok.headers)] : null,
        [h("p", { class: "muted" }, "Body"), bodyView(ok.body !== undefined ? ok.body : ok.data)]);
    }
    return bodyView(ok);
  }

  timeline.addEventListener("click", (ev) => {
    const li = ev.target.closest("li[data-seq]");
    if (!li || ev.target.closest("a")) return;
    // pick the record to rerun from (the open/close of details still happens)
    const seq = Number(li.dataset.seq);
    st.selected = st.selected === seq ? null : seq;
    for (const x of timeline.querySelectorAll("li.selected")) x.classList.remove("selected");
    if (st.selected !== null) li.classList.add("selected");
    const b = document.getElementById("action-rerun");
    if (b) b.textContent = st.selected === null ? "Rerun from start" : `Rerun from record #${st.selected}`;
  });

  // ---- graph tasks: the graph with visited states and the current one (the API's overlay)
  async function loadGraph() {
    try {
      const t = await api(`/tasks/${encodeURIComponent(st.run.task.name)}?version=${st.run.task.version}`);
      if (t && t.graph) { st.graphTask = true; drawGraph(); }
    } catch { /* the version may be gone: no graph */ }
  }

  let graphBusy = false, graphAgain = false;
  async function drawGraph() {
    if (graphBusy) { graphAgain = true; return; }
    graphBusy = true;
    try {
      const doc = await api(`/tasks/${encodeURIComponent(st.run.task.name)}/graph?format=json&run=${encodeURIComponent(id)}`);
      if (!stopped) fill(graph, h("h2", {}, "Graph"), graphSvg(doc));
    } catch { /* drawn next time */ } finally { graphBusy = false; }
    if (graphAgain && !stopped) { graphAgain = false; drawGraph(); }
  }

  // ---- live: the journal stream, and the run by long-poll
  let following = false;
  async function follow() {
    if (following) return;
    following = true;
    try {
      while (!stopped) {
        try {
          const q = st.lastSeq === null ? "" : `?after=${st.lastSeq}`;
          await ndjson(`/runs/${encodeURIComponent(id)}/events${q}`, (rec) => {
            if (rec.kind === "stream.lagged" || rec.kind === "stream.error") return;
            if (typeof rec.seq === "number") addRecord(rec);
            if (/^run\.|^call\./.test(rec.kind)) refreshSoon();
          }, ctl.signal);
          await loadRun();
          if (TERMINAL.includes(st.run.status)) break;
        } catch (e) {
          if (stopped) return;
          await sleep(1500);
        }
      }
    } finally { following = false; }
  }

  let refreshTimer = null;
  function refreshSoon() {
    if (refreshTimer) return;
    refreshTimer = setTimeout(async () => { refreshTimer = null; if (!stopped) await loadRun(); }, 150);
  }

  async function poll() {
    while (!stopped) {
      if (!st.run || TERMINAL.includes(st.run.status)) { await sleep(2000); continue; }
      try {
        const before = st.run.status;
        const r = await api(`/runs/${encodeURIComponent(id)}?wait=20s&until=change`, { signal: ctl.signal });
        if (stopped) return;
        st.run = r;
        renderRun();
        if (r.status === before) await sleep(500);
      } catch (e) {
        if (stopped) return;
        await sleep(1500);
      }
    }
  }

  const ticker = setInterval(() => {
    if (st.run && !TERMINAL.includes(st.run.status)) {
      const el = document.getElementById("run-duration");
      if (el) el.textContent = duration(runDuration(st.run));
    }
  }, 1000);
  const onBack = () => { loadRun(); follow(); };
  document.addEventListener("server-back", onBack);

  loadRun().then((ok) => {
    if (!ok) return;
    loadGraph();
    follow();
    poll();
  });
  return {
    stop() {
      stopped = true;
      ctl.abort();
      clearInterval(ticker);
      clearInterval(countdown);
      document.removeEventListener("server-back", onBack);
    },
  };
}

// Calls pair by their seq within an activation (a graph state's handler run) or the run.
function callKey(d) {
  return `${d.activation ?? ""}:${d.seq}`;
}

function describeCall(d) {
  const r = d.request || {};
  switch (d.kind) {
    case "fetch": {
      const init = r.init || r.options || {};
      return `fetch ${r.method || init.method || "GET"} ${oneLine(r.url || r.input || "", 160)}`;
    }
    case "waitForEvent": return `waitForEvent “${r.name}”${r.timeoutMs ? " (timeout " + duration(r.timeoutMs) + ")" : ""}`;
    case "sleep": return `sleep ${duration(r.ms)}`;
    case "child": return `runTask ${r.task || ""}`;
    case "tool": return `tool ${r.name || r.service || ""}`;
    case "emit": return `emit “${r.name}” ${oneLine(r.data, 80)}`;
    default: return `${d.kind || "call"} ${oneLine(r, 100)}`;
  }
}

// ------------------------------------------------------------------ graphs (own layered layout)

// The top-level states of `GET /tasks/:name/graph?format=json` (a map's or parallel's inside
// is one box), their edges, and a run's visited and current states.
function graphModel(doc) {
  const nodes = (doc.states || []).map((st) => ({ id: st.path, label: st.name || st.path, type: st.type }));
  const ids = new Set(nodes.map((n) => n.id));
  const top = (p) => String(p || "").split(/[#/[]/)[0];
  const edges = [];
  for (const st of doc.states || []) {
    for (const e of st.edges || []) {
      if (!ids.has(e.to)) continue;
      const label = e.via === "done" ? "" : e.via;
      // two ways from one state to another: one arrow, both labels
      const same = edges.find((x) => x.from === st.path && x.to === e.to);
      if (same) same.label = [same.label, label].filter(Boolean).join(", ");
      else edges.push({ from: st.path, to: e.to, label });
    }
  }
  const run = doc.run || {};
  const visited = new Set((run.visited || []).map(top));
  const current = new Set((run.current || []).map((c) => top(typeof c === "string" ? c : c.path)));
  return { initial: doc.initial, nodes, edges, visited, current };
}

// Layers by longest path from the initial state (back edges ignored), then ordered in a layer
// by the mean position of their predecessors: a simple layered layout, no library.
function layout(model) {
  const names = model.nodes.map((n) => n.id);
  const edges = model.edges;
  const out = new Map(names.map((n) => [n, []]));
  for (const e of edges) out.get(e.from).push(e.to);
  const order = [];
  const seen = new Set();
  const visit = (n, stack) => {
    if (seen.has(n)) return;
    seen.add(n);
    stack.add(n);
    for (const m of out.get(n)) if (!stack.has(m)) visit(m, stack);
    stack.delete(n);
    order.unshift(n);
  };
  if (model.initial && out.has(model.initial)) visit(model.initial, new Set());
  for (const n of names) visit(n, new Set());
  const pos = new Map(order.map((n, i) => [n, i]));
  const layer = new Map(order.map((n) => [n, 0]));
  for (const n of order) for (const m of out.get(n)) if (pos.get(m) > pos.get(n)) layer.set(m, Math.max(layer.get(m), layer.get(n) + 1));
  const layers = [];
  for (const n of order) (layers[layer.get(n)] ||= []).push(n);
  const x = new Map();
  layers.forEach((ns) => ns.forEach((n, i) => x.set(n, i)));
  for (let pass = 0; pass < 2; pass++) {
    for (let l = 1; l < layers.length; l++) {
      const score = (n) => {
        const preds = edges.filter((e) => e.to === n && layer.get(e.from) < l).map((e) => x.get(e.from));
        return preds.length ? preds.reduce((a, b) => a + b, 0) / preds.length : x.get(n);
      };
      layers[l].sort((a, b) => score(a) - score(b));
      layers[l].forEach((n, i) => x.set(n, i));
    }
  }
  return { layers, layer, x };
}

function graphSvg(doc) {
  const model = graphModel(doc);
  const { layers, layer, x } = layout(model);
  const W = 150, H = 40, GX = 30, GY = 46;
  const widest = Math.max(1, ...layers.map((l) => l.length));
  const width = widest * (W + GX) + GX + 160;
  const height = layers.length * (H + GY) + GY;
  const pos = (n) => {
    const count = layers[layer.get(n)].length;
    const offset = (width - 160 - count * (W + GX) + GX) / 2;
    return { x: offset + x.get(n) * (W + GX), y: GY / 2 + layer.get(n) * (H + GY) };
  };
  const root = svg("svg", { viewBox: `0 0 ${width} ${height}`, width, role: "img", "aria-label": `Graph of ${doc.task || "the task"}: ${model.nodes.length} states${model.current.size ? ", current " + [...model.current].join(", ") : ""}` },
    svg("defs", {}, svg("marker", { id: "arrow", viewBox: "0 0 10 10", refX: 9, refY: 5, markerWidth: 7, markerHeight: 7, orient: "auto-start-reverse" }, svg("path", { d: "M0,0 L10,5 L0,10 z" }))));
  let bows = 0;
  for (const e of model.edges) {
    const a = pos(e.from), b = pos(e.to);
    const span = layer.get(e.to) - layer.get(e.from);
    const x1 = a.x + W / 2, y1 = a.y + H, x2 = b.x + W / 2, y2 = b.y;
    let d, lx, ly;
    if (span === 1) {
      d = `M${x1},${y1} C${x1},${y1 + GY / 2} ${x2},${y2 - GY / 2} ${x2},${y2}`;
      lx = (x1 + x2) / 2 + 4; ly = (y1 + y2) / 2 + 3;
    } else {
      // a long or backward edge bows out to the right of both boxes, each a little further
      const bow = Math.max(a.x, b.x) + W + 24 + 16 * (bows++ % 4);
      d = `M${a.x + W},${a.y + H / 2} C${bow},${a.y + H / 2} ${bow},${b.y + H / 2} ${b.x + W},${b.y + H / 2}`;
      lx = bow - 14; ly = (a.y + b.y) / 2 + H / 2;
    }
    root.append(svg("path", { class: "edge", d, "marker-end": "url(#arrow)" }));
    if (e.label) root.append(svg("text", { class: "edge-label", x: lx, y: ly }, e.label));
  }
  for (const n of model.nodes) {
    const p = pos(n.id);
    const cur = model.current.has(n.id), vis = model.visited.has(n.id);
    const label = n.label.length > 20 ? n.label.slice(0, 19) + "…" : n.label;
    root.append(svg("g", { class: "node" + (cur ? " current" : vis ? " visited" : ""), "data-state": n.id },
      svg("title", {}, `${n.id}${n.type ? " (" + n.type + ")" : ""}${cur ? ": current" : vis ? ": visited" : ""}`),
      svg("rect", { x: p.x, y: p.y, width: W, height: H, rx: n.type === "final" ? 18 : 6 }),
      svg("text", { x: p.x + W / 2, y: p.y + (n.type ? 17 : 24), "text-anchor": "middle" }, label),
      n.type ? svg("text", { class: "kind", x: p.x + W / 2, y: p.y + 31, "text-anchor": "middle" }, n.type + (cur ? " · current" : "")) : null));
  }
  return h("div", { class: "graph", id: "graph" }, root);
}

// ------------------------------------------------------------------ tasks

function tasksPage() {
  document.title = "Tasks · sequential-ecosystem";
  const body = h("tbody", { id: "tasks-body" });
  const table = h("table", { class: "tasks", "aria-label": "Tasks", hidden: true },
    h("thead", {}, h("tr", {},
      h("th", { class: "c-name", scope: "col" }, "Task"), h("th", { class: "c-ver", scope: "col" }, "Ver."),
      h("th", { class: "c-kind wide", scope: "col" }, "Kind"), h("th", { class: "c-hash wide", scope: "col" }, "Hash"),
      h("th", { class: "c-desc", scope: "col" }, "Description"))), body);
  const empty = h("div", { class: "empty", hidden: true },
    h("p", {}, "No tasks yet."),
    h("p", {}, "Upload one: ", h("code", {}, "curl -X POST $API/tasks -H 'content-type: application/octet-stream' --data-binary @task.tar.gz"), " (see docs/host-api.md)."));
  const error = h("p", { class: "message err", role: "alert" });
  fill(main(), h("h1", {}, "Tasks"), error, empty, table);
  let stopped = false;
  const load = async () => {
    try {
      const doc = await api("/tasks?limit=1000");
      if (stopped) return;
      const items = doc.items || [];
      empty.hidden = items.length > 0;
      table.hidden = items.length === 0;
      fill(body, ...items.map((t) => h("tr", {},
        h("td", {}, link("/ui/tasks/" + encodeURIComponent(t.name), t.name)),
        h("td", {}, "v" + t.version),
        h("td", { class: "wide" }, t.kind),
        h("td", { class: "wide mono", title: t.hash }, (t.hash || "").replace(/^sha256:/, "").slice(0, 12)),
        h("td", { title: t.description || "" }, t.description || ""))));
    } catch (e) { error.textContent = e.message; }
  };
  document.addEventListener("server-back", load);
  load();
  return { stop() { stopped = true; document.removeEventListener("server-back", load); } };
}

function taskPage(name) {
  document.title = name + " · sequential-ecosystem";
  let stopped = false;
  const params = new URLSearchParams(location.search);
  fill(main(), h("p", {}, link("/ui/tasks", "← Tasks")), h("h1", {}, name));
  (async () => {
    let t;
    try {
      t = await api(`/tasks/${encodeURIComponent(name)}` + (params.get("version") ? `?version=${encodeURIComponent(params.get("version"))}` : ""));
    } catch (e) {
      if (stopped) return;
      if (e.status === 404 || e.status === 400) { page = notFound(e.message, "/ui/tasks", "Back to the tasks"); return; }
      appendTo(main(), h("p", { class: "message err", role: "alert" }, e.message));
      return;
    }
    if (stopped) return;
    const inputs = Array.isArray(t.inputs) ? t.inputs : (t.config && Array.isArray(t.config.inputs) ? t.config.inputs : []);
    appendTo(main(), 
      t.description ? h("p", {}, t.description) : null,
      h("dl", { class: "facts" },
        h("div", {}, h("dt", {}, "Version"), h("dd", {}, "v" + t.version)),
        h("div", {}, h("dt", {}, "Kind"), h("dd", {}, t.kind || (t.graph ? "graph" : "implicit"))),
        h("div", {}, h("dt", {}, "Hash"), h("dd", { class: "mono" }, t.hash || "")),
        h("div", {}, h("dt", {}, "Runs"), h("dd", {}, link("/ui/runs?task=" + encodeURIComponent(name), "this task's runs")))),
      h("h2", {}, "Start a run"), startForm(name, t.version, inputs),
      h("h2", {}, "Inputs"), inputsTable(inputs),
      t.graph ? [h("h2", {}, "Graph"), h("div", { id: "task-graph" })] : null,
      h("h2", {}, "Code"), h("pre", { id: "task-code", tabindex: "0", "aria-label": "Code of " + name }, h("code", {}, t.code || "")),
      h("h2", {}, "Versions"),
      h("ul", {}, (t.versions || []).map((v) => h("li", {},
        link(`/ui/tasks/${encodeURIComponent(name)}?version=${v.version}`, "v" + v.version), " ",
        h("span", { class: "mono muted" }, v.hash || ""), " ", h("span", { class: "muted" }, when(v.created_at))))));
    if (t.graph) {
      try {
        const g = await api(`/tasks/${encodeURIComponent(name)}/graph?format=json&version=${t.version}`);
        if (!stopped) fill(document.getElementById("task-graph"), graphSvg(g));
      } catch (e) { /* shown without a graph */ }
    }
  })();
  return { stop() { stopped = true; } };
}

function inputsTable(inputs) {
  if (!inputs.length) return h("p", { class: "muted" }, "This task's config.json declares no inputs; it gets {} unless you give JSON.");
  return h("table", { "aria-label": "Inputs" },
    h("thead", {}, h("tr", {}, h("th", { scope: "col" }, "Name"), h("th", { scope: "col" }, "Type"), h("th", { scope: "col" }, "Default"), h("th", { scope: "col" }, "Description"))),
    h("tbody", {}, inputs.map((i) => h("tr", {},
      h("td", { class: "mono" }, i.name), h("td", {}, i.type || "json"),
      h("td", { class: "mono" }, i.default === undefined ? "" : JSON.stringify(i.default)),
      h("td", { title: i.description || "" }, i.description || "")))));
}

// A form generated from config.json's inputs; each value is checked against its type.
function startForm(name, version, inputs) {
  const fields = [];
  const form = h("form", { class: "panel form-grid", id: "start-form", novalidate: true });
  inputs.forEach((inp, i) => {
    const idv = `input-${i}`;
    const type = inp.type || "json";
    let control;
    if (type === "boolean") {
      control = h("select", { id: idv, name: inp.name }, h("option", { value: "true", selected: inp.default === true }, "true"), h("option", { value: "false", selected: inp.default !== true }, "false"));
    } else if (type === "number" || type === "integer") {
      control = h("input", { id: idv, name: inp.name, type: "text", inputmode: "decimal", value: inp.default ?? "", autocomplete: "off" });
    } else if (type === "string") {
      control = h("input", { id: idv, name: inp.name, type: "text", value: inp.default ?? "", autocomplete: "off" });
    } else {
      control = h("textarea", { id: idv, name: inp.name, spellcheck: "false" }, inp.default === undefined ? "" : JSON.stringify(inp.default, null, 2));
    }
    const err = h("p", { class: "field-error", id: idv + "-error" });
    control.setAttribute("aria-describedby", idv + "-error");
    fields.push({ inp, type, control, err });
    appendTo(form, h("label", { for: idv }, inp.name, h("span", { class: "muted" }, ` (${type}${inp.required ? ", required" : ""})`)),
      inp.description ? h("p", { class: "hint" }, inp.description) : null, control, err);
  });
  let raw = null;
  if (!inputs.length) {
    raw = h("textarea", { id: "input-json", spellcheck: "false", "aria-describedby": "input-json-error" }, "{}");
    appendTo(form, h("label", { for: "input-json" }, "Input (JSON)"), raw, h("p", { class: "field-error", id: "input-json-error" }));
  }
  const key = h("input", { id: "idempotency-key", type: "text", autocomplete: "off" });
  const out = h("p", { class: "message", role: "alert" });
  appendTo(form, h("label", { for: "idempotency-key" }, "Idempotency key ", h("span", { class: "muted" }, "(optional: the same key starts a run only once)")), key,
    h("div", { class: "actions" }, h("button", { type: "submit", class: "primary", id: "start-run" }, `Start ${name} v${version}`)), out);
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    out.textContent = "";
    let input = {};
    let bad = false;
    for (const f of fields) {
      f.err.textContent = "";
      f.control.removeAttribute("aria-invalid");
      const v = f.control.value;
      const fail = (m) => { f.err.textContent = m; f.control.setAttribute("aria-invalid", "true"); if (!bad) f.control.focus(); bad = true; };
      if (v.trim() === "") { if (f.inp.required) fail(`${f.inp.name} is required.`); continue; }
      if (f.type === "number" || f.type === "integer") {
        const n = Number(v);
        if (!Number.isFinite(n)) fail(`${f.inp.name} must be a number, e.g. ${f.inp.default ?? 42}.`);
        else if (f.type === "integer" && !Number.isInteger(n)) fail(`${f.inp.name} must be a whole number.`);
        else input[f.inp.name] = n;
      } else if (f.type === "boolean") input[f.inp.name] = v === "true";
      else if (f.type === "string") input[f.inp.name] = v;
      else {
        try {
          const j = JSON.parse(v);
          if (f.type === "object" && (j === null || typeof j !== "object" || Array.isArray(j))) fail(`${f.inp.name} must be a JSON object.`);
          else if (f.type === "array" && !Array.isArray(j)) fail(`${f.inp.name} must be a JSON array.`);
          else input[f.inp.name] = j;
        } catch (e) { fail(`${f.inp.name} is not JSON: ${e.message}.`); }
      }
    }
    if (raw) {
      const err = document.getElementById("input-json-error");
      err.textContent = "";
      try { input = JSON.parse(raw.value.trim() || "{}"); } catch (e) { err.textContent = `The input is not JSON: ${e.message}.`; bad = true; }
    }
    if (bad) return;
    const headers = key.value.trim() ? { "Idempotency-Key": key.value.trim() } : {};
    try {
      const run = await api(`/tasks/${encodeURIComponent(name)}/runs`, { method: "POST", json: { input, version }, headers });
      go("/ui/runs/" + run.id);
    } catch (e) {
      out.className = "message err";
      out.textContent = e.message;
    }
  });
  return form;
}

// ------------------------------------------------------------------ start

if (location.pathname === "/" || location.pathname === "/ui" || location.pathname === "/ui/") history.replaceState(null, "", "/ui/runs" + location.search);
route();
