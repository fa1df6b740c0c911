// Weir console: a page per hash route (#/jobs, #/jobs/<name>, #/catalog,
// #/sql), drawn from the REST API (/api/v1), refreshed by polling every two
// seconds. No framework and nothing fetched but this server's API.
"use strict";

const POLL_MS = 2000;
const TOKEN_KEY = "weir.api_token";
const main = () => document.getElementById("main");

// ---- the API ----

function token() { return sessionStorage.getItem(TOKEN_KEY); }

class ApiError extends Error {
  constructor(status, body) {
    super(body && body.message ? body.message : "HTTP " + status);
    this.status = status;
    this.body = body || {};
  }
}

async function api(method, path, body) {
  const headers = { "Accept": "application/json" };
  if (token()) headers["Authorization"] = "Bearer " + token();
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const response = await fetch("/api/v1" + path, {
    method, headers, body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await response.text();
  const data = text ? JSON.parse(text) : null;
  if (response.status === 401) {
    askToken(token() ? "That token was not accepted." : "");
    throw new ApiError(401, data);
  }
  if (!response.ok) throw new ApiError(response.status, data);
  return data;
}

// ---- the token ----

let tokenWaiters = [];

function askToken(message) {
  const dialog = document.getElementById("token-dialog");
  document.getElementById("token-error").textContent = message || "";
  if (!dialog.open) dialog.showModal();
  document.getElementById("token-input").focus();
}

function setupToken() {
  const form = document.getElementById("token-form");
  form.addEventListener("submit", () => {
    const value = document.getElementById("token-input").value.trim();
    if (value) sessionStorage.setItem(TOKEN_KEY, value);
    document.getElementById("token-input").value = "";
    showSignout();
    render();
  });
  document.getElementById("signout").addEventListener("click", () => {
    sessionStorage.removeItem(TOKEN_KEY);
    showSignout();
    render();
  });
  showSignout();
}

function showSignout() {
  document.getElementById("signout").classList.toggle("hidden", !token());
}

// ---- small helpers ----

function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k === "class") el.className = v;
    else if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
    else el.setAttribute(k, v === true ? "" : v);
  }
  for (const c of children.flat()) {
    if (c === undefined || c === null || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

const SVG = "http://www.w3.org/2000/svg";
function s(tag, attrs, ...children) {
  const el = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs || {})) el.setAttribute(k, v);
  for (const c of children.flat()) {
    if (c === undefined || c === null) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

function fmtInt(n) {
  if (n === null || n === undefined) return "—";
  return Math.round(n).toLocaleString("en-US");
}
function fmtRate(n) {
  if (n === null || n === undefined || !isFinite(n)) return "—";
  if (n >= 1e6) return (n / 1e6).toFixed(1) + "M/s";
  if (n >= 1e4) return (n / 1e3).toFixed(1) + "k/s";
  return Math.round(n).toLocaleString("en-US") + "/s";
}
function fmtBytes(n) {
  if (n === null || n === undefined) return "—";
  const units = ["B", "KB", "MB", "GB", "TB"];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) { n /= 1024; i++; }
  return (i === 0 ? n : n.toFixed(1)) + " " + units[i];
}
function fmtTime(iso) {
  if (!iso) return "—";
  const d = new Date(iso);
  if (isNaN(d)) return iso;
  return d.toISOString().replace("T", " ").replace(/\.\d+Z$/, "").replace("Z", "");
}
function ago(iso) {
  if (!iso) return "—";
  const secs = (Date.now() - new Date(iso).getTime()) / 1000;
  if (!isFinite(secs)) return iso;
  if (secs < 2) return "just now";
  if (secs < 90) return Math.round(secs) + "s ago";
  if (secs < 5400) return Math.round(secs / 60) + "m ago";
  return Math.round(secs / 3600) + "h ago";
}
function pill(status) { return h("span", { class: "pill " + status, "data-status": status }, status); }

// Rows per second from successive samples of a counter, per key.
const samples = new Map();
// A stopped job moves no rows, whatever its last two samples said.
function jobRate(job, key, value) {
  const r = rate(key, value);
  return job.status === "running" ? r : 0;
}

function rate(key, value) {
  if (value === null || value === undefined) return null;
  const now = performance.now();
  const last = samples.get(key);
  samples.set(key, { value, now, rate: last ? last.rate : null });
  if (!last || now - last.now < 200) return last ? last.rate : null;
  const r = Math.max(0, (value - last.value) / ((now - last.now) / 1000));
  samples.get(key).rate = r;
  return r;
}

// ---- routing and polling ----

let timer = null;
let generation = 0;

function route() {
  const hash = location.hash.replace(/^#\/?/, "");
  const [page, ...rest] = hash.split("/");
  return { page: page || "jobs", arg: rest.length ? decodeURIComponent(rest.join("/")) : null };
}

function render() {
  clearTimeout(timer);
  const gen = ++generation;
  const { page, arg } = route();
  document.querySelectorAll("nav a").forEach(a => a.classList.toggle("active", a.dataset.nav === page));
  const pages = { jobs: arg ? jobPage : jobsPage, catalog: catalogPage, sql: sqlPage };
  const draw = pages[page] || jobsPage;
  const tick = async () => {
    if (gen !== generation) return;
    let again = false;
    try {
      again = await draw(arg, gen);
      document.getElementById("live").classList.toggle("on", !!again);
    } catch (err) {
      if (gen !== generation) return;
      if (!(err instanceof ApiError && err.status === 401)) {
        main().replaceChildren(h("div", { class: "notice bad" }, "Could not reach the API: " + err.message));
      }
      again = true;
    }
    if (again && gen === generation) timer = setTimeout(tick, POLL_MS);
  };
  tick();
}

// ---- jobs ----

async function jobsPage(_, gen) {
  const jobs = await api("GET", "/jobs");
  if (gen !== generation) return false;
  const body = jobs.map(j => h("tr", { class: "row", "data-job": j.name, onclick: () => { location.hash = "#/jobs/" + encodeURIComponent(j.name); } },
    h("td", {}, h("a", { href: "#/jobs/" + encodeURIComponent(j.name) }, j.name)),
    h("td", {}, j.kind),
    h("td", {}, pill(j.status)),
    h("td", { class: "num" }, fmtRate(jobRate(j, "in:" + j.name, j.rows_in))),
    h("td", { class: "num" }, fmtInt(j.rows_in)),
    h("td", { class: "num" }, fmtInt(j.rows_out)),
    h("td", { class: "mono" }, j.watermark ? fmtTime(j.watermark) : "—"),
    h("td", {}, j.last_checkpoint_epoch === null ? "—" : "#" + j.last_checkpoint_epoch + " · " + ago(j.last_checkpoint_at)),
    h("td", { class: "num" }, j.restarts),
  ));
  main().replaceChildren(
    h("div", { class: "head" }, h("div", { class: "grow" }, h("h1", {}, "Jobs"),
      h("div", { class: "sub" }, "Every materialized view and sink, live."))),
    h("div", { class: "card flush" }, jobs.length === 0
      ? h("div", { class: "empty" }, "No jobs yet. Create a materialized view in the SQL page or with psql.")
      : h("div", { class: "scroll" }, h("table", { id: "jobs" },
        h("thead", {}, h("tr", {}, h("th", {}, "Name"), h("th", {}, "Kind"), h("th", {}, "Status"),
          h("th", { class: "num" }, "Rows in / s"), h("th", { class: "num" }, "Rows in"), h("th", { class: "num" }, "Rows out"),
          h("th", {}, "Watermark"), h("th", {}, "Last checkpoint"), h("th", { class: "num" }, "Restarts"))),
        h("tbody", {}, body)))),
  );
  return true;
}

let notice = null;

async function jobAction(name, what, body) {
  const buttons = document.querySelectorAll(".actions button");
  buttons.forEach(b => { b.disabled = true; });
  try {
    if (what === "savepoint") {
      const stamp = new Date().toISOString().replace(/[-:T]/g, "").slice(0, 14);
      const sp = await api("POST", "/jobs/" + encodeURIComponent(name) + "/savepoints", { name: name + "_" + stamp });
      notice = { text: "Savepoint " + sp.name + " taken at epoch " + sp.epoch + ".", bad: false };
    } else {
      const job = await api("POST", "/jobs/" + encodeURIComponent(name) + "/" + what, body);
      notice = { text: "Job " + name + " is " + job.status + ".", bad: false };
    }
  } catch (err) {
    notice = { text: (err.body && err.body.code ? err.body.code + ": " : "") + err.message, bad: true };
  }
  render();
}

async function jobPage(name, gen) {
  const path = "/jobs/" + encodeURIComponent(name);
  const [job, checkpoints, savepoints, events, logs] = await Promise.all([
    api("GET", path), api("GET", path + "/checkpoints"),
    api("GET", "/savepoints?job=" + encodeURIComponent(name)).catch(() => []),
    api("GET", path + "/events"), api("GET", path + "/logs?limit=200"),
  ]);
  if (gen !== generation) return false;
  const running = job.status === "running";
  const isView = job.kind === "view";
  const inRate = jobRate(job, "in:" + name, job.rows_in);
  const outRate = jobRate(job, "out:" + name, job.rows_out);
  const last = checkpoints.length ? checkpoints[checkpoints.length - 1] : null;
  main().replaceChildren(...[
    h("div", { class: "head" },
      h("div", { class: "grow" },
        h("div", { class: "sub" }, h("a", { href: "#/jobs" }, "Jobs"), " / " + job.kind),
        h("h1", { id: "job-name" }, job.name, " ", pill(job.status)),
        h("div", { class: "sub" }, job.last_error ? job.last_error : "desired state " + job.desired_state +
          (running && job.started_at ? " · running since " + fmtTime(job.started_at) : ""))),
      h("div", { class: "actions" },
        h("button", { id: "suspend", disabled: !(running && isView), onclick: () => jobAction(name, "suspend") }, "Suspend"),
        h("button", { id: "resume", disabled: !(job.status === "suspended" && isView), onclick: () => jobAction(name, "resume") }, "Resume"),
        h("button", { id: "savepoint", disabled: !(running && isView), onclick: () => jobAction(name, "savepoint") }, "Take savepoint"),
        h("button", { id: "restart", disabled: !isView || job.status === "suspended" || job.status === "suspending", onclick: () => jobAction(name, "restart") }, "Restart"))),
    notice ? h("div", { class: "notice" + (notice.bad ? " bad" : ""), id: "notice" }, notice.text) : null,
    h("div", { class: "stats" },
      stat("Rows in / s", fmtRate(inRate)),
      stat("Rows out / s", fmtRate(outRate)),
      stat("Watermark", job.watermark ? fmtTime(job.watermark) : "—", true),
      stat("Last checkpoint", last ? "#" + last.epoch + " · " + ago(last.completed_at) : "—", true),
      stat("Restarts", fmtInt(job.restarts))),
    h("div", { class: "card" }, h("h2", {}, "Operators"), graph(job, name),
      h("div", { class: "legend" }, "Rows flow left to right. Blue outline: keeps state. Each task shows rows per second, its watermark (wm) and its state; the bar on its left edge is the share of the last interval it waited on a full output: ",
        h("span", { class: "bp-key ok" }, "up to 10%"), " ", h("span", { class: "bp-key low" }, "up to 50%"), " ", h("span", { class: "bp-key high" }, "more"),
        ". Stateless operators and exchanges run in the task that feeds them.")),
    h("div", { class: "grid2" },
      h("div", { class: "card" }, h("h2", {}, "Checkpoints"), checkpointChart(checkpoints)),
      h("div", { class: "card flush" }, h("h2", {}, "Savepoints"), savepointTable(savepoints))),
    h("div", { class: "stack" }),
    h("div", { class: "grid2" },
      h("div", { class: "card flush" }, h("h2", {}, "Events"), eventTable(events)),
      h("div", { class: "card flush" }, h("h2", {}, "Log"), logView(logs))),
    h("div", { class: "stack" }),
    h("div", { class: "card" }, h("h2", {}, "Definition"), h("pre", { class: "wrap mono" }, job.definition)),
  ].filter(Boolean));
  const logBox = document.querySelector(".logs");
  if (logBox) logBox.scrollTop = logBox.scrollHeight;
  return true;
}

function stat(k, v, small) {
  return h("div", { class: "stat" }, h("div", { class: "k" }, k), h("div", { class: "v" + (small ? " small" : "") }, v));
}

const SHORT = {
  StreamMaterialize: "View", StreamSource: "Source", StreamProject: "Project", StreamFilter: "Filter",
  StreamUnnest: "Unnest", StreamExchange: "Exchange", StreamHashJoin: "Hash join",
  StreamWindowAggregate: "Window aggregate", StreamGroupAggregate: "Group aggregate",
};

// The figures a node shows: two lines, rows per second, then watermark and
// state; or, for an operator that runs inside another's task, which one.
function operatorFigures(op, g, running) {
  const f = op.figures;
  // A stopped run's last rates are history: a job that is not running
  // moves no rows.
  const rate = v => fmtRate(running ? v : 0);
  if (!f) {
    const host = op.runs_in !== undefined && op.runs_in !== null ? g.operators[op.runs_in] : null;
    return [host ? "runs in the " + (SHORT[host.kind] || host.kind).toLowerCase() + " task" : "", ""];
  }
  const rows = [];
  if (op.kind !== "StreamMaterialize" && op.kind !== "StreamSource") rows.push("in " + rate(f.rows_in_per_second));
  if (op.kind === "StreamMaterialize") rows.push("in " + rate(f.rows_in_per_second));
  else rows.push("out " + rate(f.rows_out_per_second));
  const more = ["wm " + (f.watermark ? fmtTime(f.watermark).slice(11) : "—")];
  if (f.state_bytes !== null && f.state_bytes !== undefined) more.push(fmtBytes(f.state_bytes) + " · " + fmtInt(f.state_entries) + " keys");
  return [rows.join(" · "), more.join(" · ")];
}

function backpressure(f) {
  if (!f || f.backpressure === null || f.backpressure === undefined) return null;
  return { level: f.backpressure_level, text: "backpressured " + Math.round(f.backpressure * 100) + "%" };
}

function graph(job, name) {
  const g = job.graph;
  if (!g || !g.operators.length) return h("div", { class: "empty" }, "The job is not running: no plan to show.");
  // Depth from the view (0); sources are deepest, drawn on the left.
  const children = new Map(g.operators.map(o => [o.id, []]));
  g.edges.forEach(e => children.get(e.to).push(e.from));
  const depth = new Map([[0, 0]]);
  const order = [0];
  for (let i = 0; i < order.length; i++) {
    for (const c of children.get(order[i])) { depth.set(c, depth.get(order[i]) + 1); order.push(c); }
  }
  const maxDepth = Math.max(...depth.values());
  // Leaves take rows one after another; a parent sits at its children's middle.
  const row = new Map();
  let next = 0;
  const place = id => {
    const kids = children.get(id);
    if (!kids.length) { row.set(id, next++); return; }
    kids.forEach(place);
    row.set(id, kids.reduce((a, k) => a + row.get(k), 0) / kids.length);
  };
  place(0);
  const W = 232, H = 96, GX = 40, GY = 20, PAD = 8;
  const width = (maxDepth + 1) * W + maxDepth * GX + 2 * PAD;
  const height = Math.max(1, next) * H + (Math.max(1, next) - 1) * GY + 2 * PAD;
  const pos = id => ({ x: PAD + (maxDepth - depth.get(id)) * (W + GX), y: PAD + row.get(id) * (H + GY) });
  const svg = s("svg", { class: "graph", id: "graph", viewBox: `0 0 ${width} ${height}`, role: "img", "aria-label": "operator graph" });
  svg.style.maxHeight = Math.max(height, 90) + "px";
  for (const e of g.edges) {
    const a = pos(e.from), b = pos(e.to);
    const x1 = a.x + W, y1 = a.y + H / 2, x2 = b.x, y2 = b.y + H / 2, mx = (x1 + x2) / 2;
    svg.append(s("path", { class: "edge", d: `M${x1},${y1} C${mx},${y1} ${mx},${y2} ${x2},${y2}` }));
  }
  for (const op of g.operators) {
    const p = pos(op.id);
    const detail = op.detail.length > 36 ? op.detail.slice(0, 35) + "…" : op.detail;
    const stateful = op.runtime_name && !op.runtime_name.endsWith("source");
    const [figs, more] = operatorFigures(op, g, job.status === "running");
    const bp = backpressure(op.figures);
    const workers = op.figures ? op.figures.workers : op.workers;
    const node = s("g", {
      class: "node" + (stateful ? " stateful" : "") + (op.figures ? " task" : " fused") + (bp ? " bp-" + bp.level : ""),
      transform: `translate(${p.x},${p.y})`, "data-kind": op.kind, "data-id": op.id,
    },
      s("title", {}, op.kind + ": " + op.detail + (bp ? "\n" + bp.text + " (of the last interval, its most blocked worker)" : "")),
      s("rect", { width: W, height: H, rx: 8 }),
      bp ? s("rect", { class: "bp", width: 5, height: H - 16, x: 0, y: 8, rx: 2 }) : null,
      s("text", { class: "kind", x: 14, y: 20 }, SHORT[op.kind] || op.kind),
      workers ? s("text", { class: "workers", x: W - 12, y: 20, "text-anchor": "end" }, "×" + workers) : null,
      s("text", { class: "detail", x: 14, y: 37 }, detail),
      s("text", { class: "fig rows", x: 14, y: 56 }, figs),
      s("text", { class: "fig more", x: 14, y: 72 }, more),
      bp ? s("text", { class: "bp-text", x: 14, y: 88 }, bp.text) : null);
    svg.append(node);
  }
  return svg;
}

function checkpointChart(checkpoints) {
  const cps = checkpoints.slice(-40);
  if (!cps.length) return h("div", { class: "empty" }, "No checkpoints yet.");
  const W = 560, H = 170, L = 46, R = 56, T = 10, B = 24;
  const maxD = Math.max(1, ...cps.map(c => c.duration_ms || 0));
  const maxS = Math.max(1, ...cps.map(c => c.size_bytes || 0));
  const bw = (W - L - R) / cps.length;
  const svg = s("svg", { class: "chart", id: "checkpoint-chart", viewBox: `0 0 ${W} ${H}`, preserveAspectRatio: "none" });
  svg.append(s("line", { class: "axis", x1: L, x2: W - R, y1: H - B, y2: H - B }));
  svg.append(s("text", { class: "label", x: L - 6, y: T + 8, "text-anchor": "end" }, Math.round(maxD) + " ms"));
  svg.append(s("text", { class: "label", x: L - 6, y: H - B, "text-anchor": "end" }, "0"));
  svg.append(s("text", { class: "label", x: W - R + 6, y: T + 8 }, fmtBytes(maxS)));
  cps.forEach((c, i) => {
    const bh = ((c.duration_ms || 0) / maxD) * (H - T - B);
    svg.append(s("rect", { class: "cbar", x: L + i * bw + bw * 0.15, width: Math.max(1, bw * 0.7), y: H - B - bh, height: bh },
      s("title", {}, `#${c.epoch} · ${c.duration_ms === null ? "?" : c.duration_ms + " ms"} · ${fmtBytes(c.size_bytes)} · ${fmtTime(c.completed_at)}`)));
  });
  const pts = cps.map((c, i) => [L + i * bw + bw / 2, H - B - ((c.size_bytes || 0) / maxS) * (H - T - B)]);
  svg.append(s("polyline", { class: "line", points: pts.map(p => p.join(",")).join(" ") }));
  pts.forEach(p => svg.append(s("circle", { class: "dot", cx: p[0], cy: p[1], r: 2 })));
  svg.append(s("text", { class: "label", x: L, y: H - 6 }, "#" + cps[0].epoch + " · " + fmtTime(cps[0].completed_at).slice(11)));
  svg.append(s("text", { class: "label", x: W - R, y: H - 6, "text-anchor": "end" }, "#" + cps[cps.length - 1].epoch + " · " + fmtTime(cps[cps.length - 1].completed_at).slice(11)));
  return h("div", {}, svg, h("div", { class: "key" },
    h("span", {}, h("span", { class: "sw a" }), "duration"), h("span", {}, h("span", { class: "sw b" }), "state size"),
    h("span", {}, cps.length + " checkpoints")));
}

function savepointTable(savepoints) {
  if (!savepoints.length) return h("div", { class: "empty" }, "No savepoints.");
  return h("div", { class: "scroll" }, h("table", { id: "savepoints" },
    h("thead", {}, h("tr", {}, h("th", {}, "Name"), h("th", {}, "Origin"), h("th", { class: "num" }, "Epoch"), h("th", { class: "num" }, "Size"), h("th", {}, "Taken"))),
    h("tbody", {}, savepoints.slice().reverse().map(sp => h("tr", {},
      h("td", { class: "mono" }, sp.name), h("td", {}, sp.origin), h("td", { class: "num" }, sp.epoch),
      h("td", { class: "num" }, fmtBytes(sp.size_bytes)), h("td", {}, ago(sp.created_at)))))));
}

function eventTable(events) {
  if (!events.length) return h("div", { class: "empty" }, "No events.");
  return h("div", { class: "scroll logs-table" }, h("table", { id: "events" },
    h("thead", {}, h("tr", {}, h("th", {}, "When"), h("th", {}, "Status"), h("th", {}, "Why"))),
    h("tbody", {}, events.slice(-12).reverse().map(e => h("tr", {},
      h("td", { class: "mono" }, fmtTime(e.at).slice(11)),
      h("td", {}, e.from_status ? e.from_status + " → " : "", h("b", {}, e.to_status)),
      h("td", { class: "wrap" }, e.reason))))));
}

function logView(lines) {
  if (!lines.length) return h("div", { class: "empty" }, "No log lines yet.");
  return h("div", { class: "logs", id: "logs" }, lines.map(l => {
    const fields = Object.entries(l.fields).map(([k, v]) => k + "=" + v).join(" ");
    return h("div", { class: l.level },
      h("span", { class: "t" }, new Date(l.at_ms).toISOString().slice(11, 19)),
      h("span", { class: "lvl" }, l.level), l.message,
      l.operator ? " [" + l.operator + "]" : "", fields ? "  " + fields : "");
  }));
}

// ---- catalog ----

async function catalogPage(_, gen) {
  const c = await api("GET", "/catalog");
  if (gen !== generation) return false;
  const kinds = [["streams", "stream"], ["tables", "table"], ["views", "view"], ["materialized_views", "materialized view"], ["sinks", "sink"]];
  const cards = [];
  for (const [key, label] of kinds) {
    for (const o of c[key]) {
      cards.push(h("div", { class: "card object", "data-object": o.name },
        h("h3", {}, o.name),
        h("div", { class: "kind" }, label + (o.options.connector ? " · " + o.options.connector : "")),
        h("table", {}, h("tbody", {}, o.columns.map(col => h("tr", {},
          h("td", { class: "mono" }, col.name), h("td", { class: "mono" }, col.type + (col.nullable ? "" : " not null")))))),
        o.definition ? h("div", { class: "def" }, o.definition) : null));
    }
  }
  main().replaceChildren(
    h("div", { class: "head" }, h("div", { class: "grow" }, h("h1", {}, "Catalog"),
      h("div", { class: "sub" }, "Streams, tables, views and sinks, with their columns."))),
    cards.length ? h("div", { class: "objects" }, cards) : h("div", { class: "card empty" }, "The catalog is empty."));
  return false;
}

// ---- SQL ----

let lastSql = "SHOW JOBS";

async function sqlPage() {
  const area = h("textarea", { id: "sql", spellcheck: "false" }, lastSql);
  const out = h("div", { id: "sql-result" });
  const run = h("button", { class: "primary", id: "run", onclick: () => runSql(area, out, run) }, "Run");
  area.addEventListener("keydown", e => {
    if ((e.ctrlKey || e.metaKey) && e.key === "Enter") { e.preventDefault(); runSql(area, out, run); }
  });
  main().replaceChildren(
    h("div", { class: "head" }, h("div", { class: "grow" }, h("h1", {}, "SQL"),
      h("div", { class: "sub" }, "One statement at a time, as a fresh session runs it. Results show the first 1,000 rows."))),
    h("div", { class: "card" }, area, h("div", { class: "sqlbar" }, h("span", { class: "hint" }, "Ctrl+Enter runs"), run)),
    out);
  return false;
}

async function runSql(area, out, button) {
  lastSql = area.value;
  button.disabled = true;
  try {
    const r = await api("POST", "/sql", { sql: area.value });
    out.replaceChildren(resultTable(r));
  } catch (err) {
    if (err.status === 401) return;
    out.replaceChildren(sqlError(area.value, err));
  } finally {
    button.disabled = false;
  }
}

function resultTable(r) {
  if (!r.columns.length) {
    return h("div", { class: "card", id: "sql-ok" }, h("b", {}, r.tag), r.row_count ? " · " + r.row_count + " rows" : "",
      r.notices.map(n => h("div", { class: "sub" }, "WARNING: " + n)));
  }
  return h("div", { class: "card flush" }, h("div", { class: "scroll" }, h("table", { id: "sql-rows" },
    h("thead", {}, h("tr", {}, r.columns.map(c => h("th", { title: c.type }, c.name)))),
    h("tbody", {}, r.rows.map(row => h("tr", {}, row.map((v, i) => {
      const numeric = /int|numeric|real|double/.test(r.columns[i].type);
      if (v === null) return h("td", { class: "null" }, "null");
      return h("td", { class: numeric ? "num" : "" }, typeof v === "object" ? JSON.stringify(v) : String(v));
    })))))),
    h("div", { class: "result-meta" }, r.row_count + (r.row_count === 1 ? " row" : " rows") + (r.truncated ? " (more not shown)" : "")));
}

function sqlError(sql, err) {
  const b = err.body || {};
  const box = h("div", { class: "sqlerr", id: "sql-error" },
    h("span", { class: "code" }, b.code || err.status), h("span", {}, err.message));
  if (b.hint) box.append(h("div", { class: "sub" }, "Hint: " + b.hint));
  if (b.position) {
    // The line holding the position, and a caret under its character.
    const chars = Array.from(sql);
    let start = 0, line = 1;
    for (let i = 0; i < b.position - 1 && i < chars.length; i++) {
      if (chars[i] === "\n") { start = i + 1; line++; }
    }
    let end = chars.indexOf("\n", start);
    if (end < 0) end = chars.length;
    const text = chars.slice(start, end).join("");
    const col = b.position - 1 - start;
    box.append(h("pre", { id: "sql-error-position" }, "line " + line + ": " + text + "\n" +
      " ".repeat(("line " + line + ": ").length + col), h("span", { class: "caret" }, "^ position " + b.position)));
  }
  return box;
}

// ---- start ----

window.addEventListener("hashchange", () => { notice = null; render(); });
document.addEventListener("DOMContentLoaded", () => { setupToken(); render(); });
