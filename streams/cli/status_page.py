"""The status page: one self-contained HTML document (styles, script and plots inline).

Nothing is loaded from elsewhere (no CDN, no fonts, no favicon request): the page works on a
machine without internet, and a browser test sees every request it makes. The script polls
`/api/status` (streams/cli/status.py) every two seconds and redraws; the plots are SVG it builds
itself. Every text from the topics (account ids, evidence, reasons) goes through `esc()`: a
record's content must never become markup.

For tests and people alike, the page says what it did in its DOM: `body[data-state]` is
`loading`, `live` or `error`, `body[data-decisions]` the decisions shown, and any script error
(window.onerror, an unhandled rejection, console.error) is listed in `#page-errors`.
"""

from __future__ import annotations

PAGE = r"""<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<link rel="icon" href="data:,">
<title>distillguard status</title>
<style>
  :root { --block:#c62828; --throttle:#ef8f00; --allow:#2e7d32; --ink:#1d2330; --muted:#68707f;
          --line:#e3e6ec; --bg:#f6f7f9; --card:#fff; }
  * { box-sizing: border-box; }
  body { margin:0; font:14px/1.4 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif;
         color:var(--ink); background:var(--bg); }
  header { display:flex; align-items:baseline; gap:16px; padding:12px 20px; background:#1d2330;
           color:#fff; }
  header h1 { font-size:18px; margin:0; }
  header .meta { color:#b8bfcc; font-size:12px; }
  #banner { display:none; margin:12px 20px 0; padding:10px 14px; border-radius:6px;
            background:#fdecea; border:1px solid #f5c2c0; color:#8a1c1c; }
  #banner.on { display:block; }
  #banner li { margin:2px 0; }
  main { padding:12px 20px 24px; display:grid; gap:14px;
         grid-template-columns:repeat(auto-fit, minmax(520px, 1fr)); }
  section { background:var(--card); border:1px solid var(--line); border-radius:8px;
            padding:12px 14px; min-width:0; }
  section.wide { grid-column:1 / -1; }
  h2 { font-size:14px; margin:0 0 8px; display:flex; gap:10px; align-items:baseline; }
  h2 .note { font-weight:normal; color:var(--muted); font-size:12px; }
  .tiles { display:flex; flex-wrap:wrap; gap:10px; }
  .tile { flex:1 1 120px; padding:8px 10px; border-radius:6px; background:var(--bg); }
  .tile .v { font-size:24px; font-weight:600; font-variant-numeric:tabular-nums; }
  .tile .k { color:var(--muted); font-size:12px; }
  .tile.block .v { color:var(--block); } .tile.throttle .v { color:var(--throttle); }
  .tile.allow .v { color:var(--allow); }
  table { width:100%; border-collapse:collapse; font-variant-numeric:tabular-nums; }
  th, td { text-align:left; padding:4px 6px; border-bottom:1px solid var(--line);
           vertical-align:top; }
  th { color:var(--muted); font-weight:500; font-size:12px; }
  td.num, th.num { text-align:right; }
  .pill { display:inline-block; padding:0 7px; border-radius:10px; font-size:12px; color:#fff; }
  .a-block { background:var(--block); } .a-throttle { background:var(--throttle); }
  .a-allow { background:var(--allow); }
  .s-ok, .s-idle { background:var(--allow); } .s-starting, .s-recovering, .s-waiting { background:#5c6bc0; }
  .s-stalling { background:var(--throttle); } .s-stalled, .s-unreachable { background:var(--block); }
  .evidence { color:var(--muted); font-size:12px; }
  /* evidence lines run long (a cluster verdict's numbers): two lines, the whole on hover */
  .clamp { display:-webkit-box; -webkit-line-clamp:2; -webkit-box-orient:vertical;
           overflow:hidden; }
  #latest td.mono, #fleet th, #fleet td { white-space:nowrap; }
  .mono { font-family:ui-monospace, SFMono-Regular, Menlo, monospace; font-size:12px; }
  .legend { display:flex; gap:12px; font-size:12px; color:var(--muted); }
  .legend i { display:inline-block; width:10px; height:10px; border-radius:2px; margin-right:4px; }
  .toggle button { font:inherit; font-size:12px; border:1px solid var(--line); background:#fff;
                   padding:1px 8px; cursor:pointer; }
  .toggle button.on { background:var(--ink); color:#fff; }
  .empty { color:var(--muted); font-style:italic; padding:8px 0; }
  svg { display:block; width:100%; }
  svg text { font-size:11px; fill:var(--muted); }
  #page-errors { display:none; margin:0 20px; color:#8a1c1c; }
  #page-errors.on { display:block; }
  footer { padding:0 20px 20px; color:var(--muted); font-size:12px; }
</style>
</head>
<body data-state="loading" data-decisions="0">
<header>
  <h1>distillguard status</h1>
  <span class="meta" id="meta">connecting…</span>
</header>
<div id="banner" role="alert"><strong>Problems</strong><ul id="problems"></ul></div>
<ul id="page-errors"></ul>
<main>
  <section class="wide">
    <div class="tiles" id="tiles"></div>
  </section>
  <section class="wide">
    <h2>Decisions over time, by action
      <span class="toggle" id="time-toggle"><button data-k="by_processing_time" class="on">processing time</button><button data-k="by_event_time">event time</button></span>
      <span class="legend"><span><i style="background:var(--block)"></i>block</span><span><i style="background:var(--throttle)"></i>throttle</span><span><i style="background:var(--allow)"></i>allow</span></span>
      <span class="note" id="bins-note"></span></h2>
    <div id="timeline"></div>
  </section>
  <section>
    <h2>Fleet <span class="note" id="fleet-note"></span></h2>
    <div id="fleet"></div>
    <h2 style="margin-top:12px">Consumer lag per worker <span class="note">records behind, over the last minutes</span></h2>
    <div id="lag"></div>
  </section>
  <section>
    <h2>Top clusters under action <span class="note" id="clusters-note"></span></h2>
    <div id="clusters"></div>
  </section>
  <section>
    <h2>Latest decisions <span class="note">newest first</span></h2>
    <div id="latest"></div>
  </section>
  <section>
    <h2>Dead letters by reason <span class="note" id="dl-note"></span></h2>
    <div id="dead"></div>
  </section>
</main>
<footer id="footer"></footer>
<script>
"use strict";
const COLORS = {block: "#c62828", throttle: "#ef8f00", allow: "#2e7d32"};
const ACTIONS = ["block", "throttle", "allow"];
const pageErrors = [];
function pageError(text) {
  pageErrors.push(String(text));
  const ul = document.getElementById("page-errors");
  ul.classList.add("on");
  const li = document.createElement("li");
  li.textContent = "page error: " + text;
  ul.appendChild(li);
  document.body.dataset.errors = String(pageErrors.length);
}
window.addEventListener("error", e => pageError(e.message + " (" + e.filename + ":" + e.lineno + ")"));
window.addEventListener("unhandledrejection", e => pageError("unhandled rejection: " + e.reason));
const consoleError = console.error.bind(console);
console.error = (...args) => { pageError(args.join(" ")); consoleError(...args); };

function esc(s) {
  return String(s == null ? "" : s).replace(/[&<>"']/g,
    c => ({"&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;"}[c]));
}
const nf = new Intl.NumberFormat("en");
function n(x) { return x == null ? "–" : nf.format(x); }
function bytes(b) { return b == null ? "–" : (b / 1048576).toFixed(0) + " MB"; }
function hhmmss(ts) { return ts == null ? "–" : new Date(ts * 1000).toISOString().slice(11, 19); }
function ago(ts, now) {
  if (ts == null) return "never";
  const s = Math.max(0, now - ts);
  return s < 90 ? s.toFixed(0) + " s ago" : s < 5400 ? (s / 60).toFixed(0) + " min ago"
    : (s / 3600).toFixed(1) + " h ago";
}
// 1, 2 or 5 times a power of ten, at least x (and at least 1: counts are whole)
function niceStep(x) {
  if (x <= 1) return 1;
  const p = Math.pow(10, Math.floor(Math.log10(x)));
  for (const m of [1, 2, 5, 10]) if (m * p >= x) return m * p;
  return 10 * p;
}
function pill(cls, text) { return '<span class="pill ' + cls + '">' + esc(text) + "</span>"; }
function set(id, html) { document.getElementById(id).innerHTML = html; }

let timeKey = "by_processing_time";
let timeChosen = false;  // until a click, the page shows the series that has more to show
let last = null;
function showTime(key) {
  timeKey = key;
  for (const x of document.querySelectorAll("#time-toggle button")) x.classList.toggle("on", x.dataset.k === key);
}
document.getElementById("time-toggle").addEventListener("click", e => {
  const b = e.target.closest("button");
  if (!b) return;
  timeChosen = true;
  showTime(b.dataset.k);
  if (last) drawTimeline(last);
});

function tiles(s) {
  const d = s.decisions, w = s.fleet.workers;
  const ok = w.filter(x => ["ok", "idle"].includes(x.status)).length;
  const lag = w.reduce((a, x) => a + (x.lag || 0), 0);
  const t = [
    ["", n(d.total), "decisions", "tile-decisions"],
    ["block", n(d.by_action.block), "block decisions"],
    ["throttle", n(d.by_action.throttle), "throttle decisions"],
    ["allow", n(d.by_action.allow), "allow decisions"],
    ["block", n(d.accounts_now.block), "accounts blocked now"],
    ["throttle", n(d.accounts_now.throttle), "accounts throttled now"],
    ["", n(s.dead_letters.total), "dead letters"],
    ["", w.length ? ok + " / " + w.length : "–", "workers ok or idle"],
    ["", w.length ? n(lag) : "–", "fleet lag (records)"],
  ];
  set("tiles", t.map(([cls, v, k, id]) => '<div class="tile ' + cls + '"' + (id ? ' id="' + id + '"' : "") +
    '><div class="v">' + v + '</div><div class="k">' + esc(k) + "</div></div>").join(""));
}

// A stacked bar chart of decisions per bin; at most ~90 bars, merging neighbouring bins.
function drawTimeline(s) {
  if (!timeChosen) {
    // A fast run (the demo plays hours of traffic in a minute) is a few bins of processing
    // time but many of event time: show the one with more bins.
    const p = s.by_processing_time.start.length, ev = s.by_event_time.start.length;
    showTime(ev > p ? "by_event_time" : "by_processing_time");
  }
  const series = s[timeKey];
  const W = 1100, H = 200, L = 48, B = 22, T = 8;
  if (!series.start.length) {
    set("timeline", '<div class="empty">no decisions yet</div>');
    set("bins-note", "");
    return;
  }
  const first = series.start[0], lastStart = series.start[series.start.length - 1];
  const span = lastStart + series.bin_s - first;
  let merge = 1;
  while (span / (series.bin_s * merge) > 90) merge *= 2;
  const width = series.bin_s * merge;
  const bins = new Map();
  series.start.forEach((st, i) => {
    const k = Math.floor((st - first) / width);
    const c = bins.get(k) || {block: 0, throttle: 0, allow: 0};
    for (const a of ACTIONS) c[a] += series.counts[a][i];
    bins.set(k, c);
  });
  const count = Math.max(1, Math.ceil(span / width));
  let top = 1;
  for (const c of bins.values()) top = Math.max(top, c.block + c.throttle + c.allow);
  const step = niceStep(top / 4), max = step * Math.ceil(top / step);
  const bw = (W - L - 4) / count;
  let svg = '<svg viewBox="0 0 ' + W + " " + H + '" role="img" aria-label="decisions over time">';
  for (let v = 0; v <= max; v += step) {
    const y = T + (H - T - B) * (1 - v / max);
    svg += '<line x1="' + L + '" x2="' + W + '" y1="' + y + '" y2="' + y + '" stroke="#e3e6ec"/>';
    svg += '<text x="' + (L - 6) + '" y="' + (y + 4) + '" text-anchor="end">' + n(v) + "</text>";
  }
  for (const [k, c] of bins) {
    let y = H - B;
    const x = L + 2 + k * bw;
    for (const a of ACTIONS) {
      const h = (H - T - B) * c[a] / max;
      if (h <= 0) continue;
      y -= h;
      svg += '<rect x="' + x.toFixed(1) + '" y="' + y.toFixed(1) + '" width="' + Math.max(1, bw - 1).toFixed(1) +
        '" height="' + h.toFixed(1) + '" fill="' + COLORS[a] + '"><title>' + esc(hhmmss(first + k * width) +
        " " + a + " " + c[a]) + "</title></rect>";
    }
  }
  const ticks = Math.min(8, count);
  for (let i = 0; i <= ticks; i++) {
    const x = L + 2 + (count * i / ticks) * bw;
    const anchor = i === 0 ? "start" : i === ticks ? "end" : "middle";
    svg += '<text x="' + x.toFixed(1) + '" y="' + (H - 6) + '" text-anchor="' + anchor + '">' + hhmmss(first + width * count * i / ticks) + "</text>";
  }
  svg += "</svg>";
  set("timeline", svg);
  const unit = width >= 60 ? (width / 60) + " min" : width + " s";
  set("bins-note", "per " + unit + " of " + (timeKey === "by_event_time" ? "event time" : "processing time") +
    " (UTC)" + (series.evicted_decisions ? "; " + n(series.evicted_decisions) + " older decisions left the window" : ""));
}

function drawFleet(s) {
  const w = s.fleet.workers;
  if (!w.length) {
    set("fleet", '<div class="empty">no worker to poll (--worker URL)</div>');
    set("lag", "");
    return;
  }
  let h = '<table><tr><th>worker</th><th>status</th><th>requests partitions</th><th class="num">lag</th>' +
    '<th class="num">events</th><th class="num">dead letters</th><th class="num">RSS</th><th>last commit</th></tr>';
  for (const x of w) {
    const parts = x.partitions || {};
    const req = Object.keys(parts).filter(t => t.endsWith("requests"));
    const shown = req.length ? parts[req[0]].join(" ") : Object.values(parts).flat().length ? "(others only)" : "–";
    h += "<tr><td class=\"mono\">" + esc(x.url.replace(/^https?:\/\//, "").replace(/\/health$/, "")) +
      "</td><td>" + pill("s-" + esc(x.status), x.status) + (x.error ? '<div class="evidence">' + esc(x.error) + "</div>" : "") +
      '</td><td class="mono">' + esc(shown) + '</td><td class="num">' + n(x.lag) + '</td><td class="num">' +
      n(x.events) + '</td><td class="num">' + n(x.dead_letters) + '</td><td class="num">' + bytes(x.rss_bytes) +
      "</td><td>" + (x.last_commit_age_s == null ? "–" : esc(x.last_commit_age_s + " s ago")) + "</td></tr>";
  }
  set("fleet", h + "</table>");
  set("fleet-note", "polled every " + s.service.poll_s + " s");
  // lag over time, one line per worker
  const W = 540, H = 130, L = 48, B = 20, T = 6;
  const hist = s.fleet.lag_history, urls = Object.keys(hist);
  let t0 = Infinity, t1 = -Infinity, max = 1;
  for (const u of urls) for (const [t, lag] of hist[u]) {
    t0 = Math.min(t0, t); t1 = Math.max(t1, t); if (lag != null) max = Math.max(max, lag);
  }
  if (!(t1 > t0)) { set("lag", '<div class="empty">collecting…</div>'); return; }
  const step = niceStep(max / 2);
  max = step * Math.ceil(max / step);
  const palette = ["#3949ab", "#00897b", "#8e24aa", "#6d4c41", "#546e7a", "#d81b60"];
  let svg = '<svg viewBox="0 0 ' + W + " " + H + '" role="img" aria-label="lag per worker">';
  for (let v = 0; v <= max; v += step) {
    const y = T + (H - T - B) * (1 - v / max);
    svg += '<line x1="' + L + '" x2="' + W + '" y1="' + y + '" y2="' + y + '" stroke="#e3e6ec"/>' +
      '<text x="' + (L - 6) + '" y="' + (y + 4) + '" text-anchor="end">' + n(v) + "</text>";
  }
  urls.forEach((u, i) => {
    const pts = hist[u].filter(p => p[1] != null).map(([t, lag]) =>
      (L + (W - L) * (t - t0) / (t1 - t0)).toFixed(1) + "," + (T + (H - T - B) * (1 - lag / max)).toFixed(1));
    if (pts.length) svg += '<polyline fill="none" stroke-width="2" stroke="' + palette[i % palette.length] +
      '" points="' + pts.join(" ") + '"><title>' + esc(u) + "</title></polyline>";
    svg += '<text x="' + (L + 4 + i * 120) + '" y="' + (H - 4) + '" style="fill:' + palette[i % palette.length] + '">■ ' +
      esc(u.replace(/^https?:\/\//, "").replace(/\/health$/, "")) + "</text>";
  });
  set("lag", svg + "</svg>");
}

function drawClusters(s) {
  const top = s.clusters.top;
  set("clusters-note", n(s.clusters.followed) + " clusters named by throttle and block decisions");
  if (!top.length) { set("clusters", '<div class="empty">no cluster under action</div>'); return; }
  const max = Math.max(1, ...top.map(c => c.accounts + c.accounts_beyond_cap));
  let h = '<table><tr><th>cluster</th><th style="width:40%">accounts acted on</th></tr>';
  for (const c of top) {
    const total = c.block + c.throttle;
    const wb = 100 * (c.accounts / max) * (total ? c.block / total : 0);
    const wt = 100 * (c.accounts / max) * (total ? c.throttle / total : 0);
    h += '<tr><td><div class="mono">' + esc(c.cluster_id) + '</div><div class="evidence clamp" title="' + esc(c.evidence) + '">' + esc(c.evidence) +
      '</div></td><td><svg viewBox="0 0 100 10" preserveAspectRatio="none" style="height:12px">' +
      '<rect x="0" y="0" width="' + wb.toFixed(2) + '" height="10" fill="' + COLORS.block + '"/>' +
      '<rect x="' + wb.toFixed(2) + '" y="0" width="' + wt.toFixed(2) + '" height="10" fill="' + COLORS.throttle + '"/></svg>' +
      '<div class="evidence">' + n(c.accounts) + (c.accounts_beyond_cap ? "+" : "") + (c.accounts === 1 ? " account · " : " accounts · ") + n(c.block) +
      " block, " + n(c.throttle) + " throttle " + (c.block + c.throttle === 1 ? "decision" : "decisions") + " · last " + esc(c.last_account) + "</div></td></tr>";
  }
  set("clusters", h + "</table>");
}

function drawLatest(s) {
  if (!s.latest.length) { set("latest", '<div class="empty">no decisions yet</div>'); return; }
  let h = '<table><tr><th>time</th><th>action</th><th>account</th><th class="num">score</th><th>evidence</th></tr>';
  for (const d of s.latest.slice(0, 12)) {
    h += "<tr><td class=\"mono\">" + hhmmss(d.ts) + "</td><td>" + pill("a-" + esc(d.action), d.action) +
      (d.mode === "shadow" ? " <span class=\"evidence\">shadow</span>" : "") +
      '</td><td class="mono">' + esc(d.account_id) + '</td><td class="num">' +
      (d.score == null ? "–" : d.score.toFixed(2)) + '</td><td><div class="evidence clamp" title="' + esc(d.reason) + '">' +
      esc(d.reason) + "</div></td></tr>";
  }
  set("latest", h + "</table>");
}

function drawDead(s) {
  const dl = s.dead_letters;
  set("dl-note", n(dl.total) + " in all" + (dl.last_ts ? ", last " + ago(dl.last_ts, s.now) : ""));
  if (!dl.by_reason.length) { set("dead", '<div class="empty">no dead letters</div>'); return; }
  const max = Math.max(1, ...dl.by_reason.map(e => e.count));
  let h = '<table><tr><th>reason</th><th style="width:30%">records</th></tr>';
  for (const e of dl.by_reason.slice(0, 12)) {
    h += '<tr><td>' + esc(e.kind) + '<div class="evidence mono">last: ' + esc(e.source || "") + "</div></td><td>" +
      '<svg viewBox="0 0 100 10" preserveAspectRatio="none" style="height:12px"><rect width="' +
      (100 * e.count / max).toFixed(2) + '" height="10" fill="#6d4c41"/></svg><div class="evidence">' + n(e.count) + "</div></td></tr>";
  }
  set("dead", h + "</table>");
}

function drawFooter(s) {
  const parts = [];
  for (const [role, t] of Object.entries(s.topics)) {
    parts.push(esc(role) + ": " + esc(t.name) + " read " + n(t.read) + (t.on_topic != null ? " of " + n(t.on_topic) + " on the topic" : ""));
  }
  const dropped = Object.entries(s.evicted).filter(([, v]) => v).map(([k, v]) => esc(k) + " " + n(v));
  const unread = Object.entries(s.unreadable).map(([k, v]) => n(v) + " unreadable on " + esc(k));
  const dup = s.duplicates;
  if (dup.decisions || dup.dead_letters) unread.push(n(dup.decisions) + " decisions and " + n(dup.dead_letters) +
    " dead letters written twice (at-least-once delivery), counted once");
  if (s.decisions.not_a_decision) unread.push(n(s.decisions.not_a_decision) + " records on the enforcement topic that are not decisions");
  set("footer", parts.join(" · ") + (unread.length ? " · " + unread.join(", ") : "") +
    (dropped.length ? " · left the page's bounded memory: " + dropped.join(", ") : "") +
    " · Kafka " + esc(s.service.bootstrap));
}

function render(s) {
  last = s;
  const b = document.getElementById("banner");
  b.classList.toggle("on", s.problems.length > 0);
  set("problems", s.problems.map(p => "<li><strong>" + esc(p.source) + "</strong>: " + esc(p.message) + "</li>").join(""));
  set("meta", "updated " + hhmmss(s.now) + " UTC · last decision " + ago(s.decisions.last_ts, s.now));
  tiles(s); drawTimeline(s); drawFleet(s); drawClusters(s); drawLatest(s); drawDead(s); drawFooter(s);
  document.body.dataset.state = s.problems.length ? "error" : "live";
  document.body.dataset.decisions = String(s.decisions.total);
  document.body.dataset.deadLetters = String(s.dead_letters.total);
}

let failures = 0;
async function poll() {
  let s = null;
  try {
    const r = await fetch("api/status", {cache: "no-store"});
    if (!r.ok) throw new Error("HTTP " + r.status);
    s = await r.json();
    failures = 0;
  } catch (e) {
    failures += 1;
    // The service itself is gone (stopped, or the network): say so on the page, keep trying.
    document.getElementById("banner").classList.add("on");
    set("problems", "<li><strong>status service</strong>: " + esc(e.message || e) + " (" + failures + " failed polls; retrying)</li>");
    document.body.dataset.state = "error";
  }
  if (s) {
    try { render(s); } catch (e) { pageError("drawing the page: " + (e.stack || e)); }
  }
  setTimeout(poll, 2000);
}
poll();
</script>
</body>
</html>
"""
