/**
 * The live page `ws.ts` serves at `GET /`: one self-contained HTML document (inline CSS and
 * script, no build step, no CDN, works offline). It connects to the echo on load, echoes typed
 * text with its round-trip time, runs pings with a live RTT chart and histogram, and shows the
 * server's counters and event feed from `/events`.
 *
 * @module
 */

const STYLE = `
:root { color-scheme: light dark; --bg: #fdfdfc; --fg: #1c1c1c; --muted: #5b5b5b; --line: #d4d4d0;
  --card: #ffffff; --accent: #0b62c4; --ok: #1a7f37; --bad: #b42318; --warn: #9a6700; }
@media (prefers-color-scheme: dark) {
  :root { --bg: #141517; --fg: #e8e8e6; --muted: #a3a3a0; --line: #3a3c40; --card: #1d1f22;
    --accent: #6cb0ff; --ok: #56d364; --bad: #ff7b72; --warn: #e3b341; }
}
* { box-sizing: border-box; }
body { margin: 0; background: var(--bg); color: var(--fg);
  font: 15px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; }
header, main { max-width: 1100px; margin: 0 auto; padding: 0.75rem 1rem; }
header { display: flex; flex-wrap: wrap; gap: 0.5rem 1rem; align-items: baseline; }
h1 { font-size: 1.3rem; margin: 0; }
h2 { font-size: 1.05rem; margin: 0 0 0.5rem; }
main { display: grid; gap: 1rem; grid-template-columns: repeat(auto-fit, minmax(320px, 1fr)); }
section { background: var(--card); border: 1px solid var(--line); border-radius: 8px;
  padding: 0.75rem; min-width: 0; }
.status { font-weight: 600; }
.status[data-state="open"] { color: var(--ok); }
.status[data-state="closed"] { color: var(--bad); }
.status[data-state="connecting"] { color: var(--warn); }
form, .row { display: flex; flex-wrap: wrap; gap: 0.5rem; align-items: end; }
label { display: flex; flex-direction: column; font-size: 0.85rem; color: var(--muted); gap: 0.15rem; }
input { font: inherit; color: var(--fg); background: var(--bg); border: 1px solid var(--line);
  border-radius: 6px; padding: 0.35rem 0.5rem; min-width: 0; }
input[type="number"] { width: 6.5rem; }
.grow { flex: 1 1 12rem; }
#message { width: 100%; }
button { font: inherit; border-radius: 6px; border: 1px solid var(--accent); background: var(--accent);
  color: var(--bg); padding: 0.35rem 0.9rem; cursor: pointer; }
button:disabled { opacity: 0.5; cursor: not-allowed; }
:focus-visible { outline: 3px solid var(--accent); outline-offset: 2px; }
ol.log { list-style: none; margin: 0.5rem 0 0; padding: 0; max-height: 14rem; overflow: auto;
  font: 13px/1.4 ui-monospace, SFMono-Regular, Menlo, Consolas, monospace; }
ol.log li { padding: 0.15rem 0; border-bottom: 1px solid var(--line); overflow-wrap: anywhere; }
.rtt { color: var(--ok); }
.bad { color: var(--bad); }
.muted { color: var(--muted); }
canvas { width: 100%; height: 160px; display: block; margin-top: 0.5rem;
  border: 1px solid var(--line); border-radius: 6px; }
dl { display: grid; grid-template-columns: repeat(auto-fill, minmax(9rem, 1fr)); gap: 0.35rem 1rem;
  margin: 0; }
dl div { display: flex; justify-content: space-between; gap: 0.5rem;
  border-bottom: 1px solid var(--line); }
dt { color: var(--muted); } dd { margin: 0; font-variant-numeric: tabular-nums; font-weight: 600; }
.note { font-size: 0.85rem; color: var(--muted); margin: 0.5rem 0 0; }
#feed-note[data-refused] { color: var(--bad); font-weight: 600; }
.wide { grid-column: 1 / -1; }
@media (max-width: 420px) { header, main { padding: 0.5rem; } input[type="number"] { width: 5rem; } }
`;

const SCRIPT = `
"use strict";
const $ = (id) => document.getElementById(id);
const base = (location.protocol === "https:" ? "wss://" : "ws://") + location.host;
const css = (name) => getComputedStyle(document.documentElement).getPropertyValue(name).trim();
const pending = []; // FIFO of sent messages: the echo preserves order
let echo;
function setStatus(state, text) { const s = $("status"); s.dataset.state = state; s.textContent = text; }
function logLine(list, html, max) {
  const li = document.createElement("li"); li.innerHTML = html;
  list.prepend(li); while (list.children.length > max) list.lastChild.remove();
}
function esc(text) { return String(text).replace(/[&<>"]/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;" })[c]); }
function connect() {
  setStatus("connecting", "connecting…");
  echo = new WebSocket(base + "/");
  echo.binaryType = "arraybuffer";
  echo.onopen = () => { setStatus("open", "connected to " + base + "/"); $("send").disabled = false; $("ping").disabled = false; };
  echo.onclose = (e) => {
    setStatus("closed", "closed (" + e.code + (e.reason ? " " + e.reason : "") + ") — reconnecting in 2 s");
    $("send").disabled = true; $("ping").disabled = true;
    while (pending.length) { const p = pending.shift(); if (p.kind === "ping") ping.lost++; }
    setTimeout(connect, 2000);
  };
  echo.onmessage = (e) => {
    const now = performance.now();
    const p = pending.shift();
    if (!p) return;
    const rtt = now - p.sent;
    if (p.kind === "text") {
      const ok = e.data === p.text;
      logLine($("log"), (ok ? "" : '<span class="bad">mismatch</span> ') + "&larr; " + esc(e.data) +
        ' <span class="rtt">' + rtt.toFixed(2) + " ms</span>", 100);
    } else {
      if (e.data !== p.text) ping.bad++; else { ping.rtts.push(rtt); }
      drawPing();
    }
  };
}
$("echo-form").addEventListener("submit", (e) => {
  e.preventDefault();
  const text = $("message").value;
  if (!echo || echo.readyState !== 1) return;
  pending.push({ kind: "text", text, sent: performance.now() });
  echo.send(text);
  $("message").value = "";
});
const ping = { rtts: [], sent: 0, lost: 0, bad: 0, timer: 0, total: 0 };
$("ping-form").addEventListener("submit", (e) => {
  e.preventDefault();
  clearInterval(ping.timer);
  const count = Math.max(1, Math.min(10000, Number($("count").value) || 50));
  const interval = Math.max(1, Math.min(60000, Number($("interval").value) || 20));
  const size = Math.max(8, Math.min(1 << 20, Number($("size").value) || 32));
  Object.assign(ping, { rtts: [], sent: 0, lost: 0, bad: 0, total: count });
  const pad = "x".repeat(size);
  const tick = () => {
    if (ping.sent >= count) { clearInterval(ping.timer); return; }
    if (!echo || echo.readyState !== 1) return;
    const text = ("ping " + ping.sent + " " + pad).slice(0, size);
    pending.push({ kind: "ping", text, sent: performance.now() });
    echo.send(text);
    ping.sent++;
    drawPing();
  };
  tick();
  ping.timer = setInterval(tick, interval);
});
function pct(sorted, q) { return sorted.length ? sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))] : NaN; }
function fmt(ms) { return Number.isFinite(ms) ? ms.toFixed(2) : "–"; }
function canvas2d(el) {
  const ratio = window.devicePixelRatio || 1;
  const w = el.clientWidth, h = el.clientHeight;
  if (el.width !== Math.round(w * ratio) || el.height !== Math.round(h * ratio)) {
    el.width = Math.round(w * ratio); el.height = Math.round(h * ratio);
  }
  const g = el.getContext("2d"); g.setTransform(ratio, 0, 0, ratio, 0, 0);
  g.clearRect(0, 0, w, h); g.font = "11px system-ui, sans-serif";
  return { g, w, h };
}
function drawPing() {
  const rtts = ping.rtts, sorted = [...rtts].sort((a, b) => a - b);
  $("ping-summary").textContent = "sent " + ping.sent + "/" + ping.total + ", received " + rtts.length +
    (ping.lost ? ", lost " + ping.lost : "") + (ping.bad ? ", mismatched " + ping.bad : "") +
    " · min " + fmt(sorted[0]) + " · p50 " + fmt(pct(sorted, 0.5)) + " · p90 " + fmt(pct(sorted, 0.9)) +
    " · p99 " + fmt(pct(sorted, 0.99)) + " · max " + fmt(sorted[sorted.length - 1]) + " ms";
  const chart = $("chart"), { g, w, h } = canvas2d(chart);
  const max = Math.max(0.1, sorted[sorted.length - 1] || 0.1) * 1.1, left = 34, bottom = 16;
  g.strokeStyle = css("--line"); g.fillStyle = css("--muted"); g.lineWidth = 1;
  for (let i = 0; i <= 4; i++) {
    const y = (h - bottom) * (1 - i / 4) + 0.5;
    g.beginPath(); g.moveTo(left, y); g.lineTo(w, y); g.stroke();
    g.fillText((max * i / 4).toFixed(max < 4 ? 2 : 1), 2, Math.max(10, y + 4));
  }
  g.fillText("ms / message #", left + 4, h - 3);
  g.strokeStyle = css("--accent"); g.lineWidth = 1.5; g.beginPath();
  const n = Math.max(2, ping.total || rtts.length);
  rtts.forEach((r, i) => {
    const x = left + (w - left - 4) * i / (n - 1), y = (h - bottom) * (1 - r / max);
    if (i === 0) g.moveTo(x, y); else g.lineTo(x, y);
  });
  g.stroke();
  chart.dataset.points = String(rtts.length);
  const hist = $("histogram"), c = canvas2d(hist);
  const buckets = 20, counts = new Array(buckets).fill(0);
  const lo = sorted[0] || 0, hi = (sorted[sorted.length - 1] || 1) * 1.0001;
  for (const r of sorted) counts[Math.min(buckets - 1, Math.floor((r - lo) / (hi - lo || 1) * buckets))]++;
  const top = Math.max(1, ...counts), bw = (c.w - 8) / buckets;
  c.g.fillStyle = css("--accent");
  counts.forEach((k, i) => { const bh = (c.h - bottom - 4) * k / top; c.g.fillRect(4 + i * bw + 1, c.h - bottom - bh, bw - 2, bh); });
  c.g.fillStyle = css("--muted");
  if (sorted.length) { c.g.fillText(fmt(lo) + " ms", 4, c.h - 3); const t = fmt(hi) + " ms"; c.g.fillText(t, c.w - 4 - c.g.measureText(t).width, c.h - 3); }
  hist.dataset.samples = String(sorted.length);
}
const COUNTERS = [
  ["sessions open", (s) => s.sessionsOpen], ["sessions total", (s) => s.sessionsTotal],
  ["bytes in", (s) => s.bytesIn], ["bytes out", (s) => s.bytesOut],
  ["datagrams in", (s) => s.datagramsIn], ["datagrams out", (s) => s.datagramsOut],
  ["ws messages", (s) => s.ws ? s.ws.messagesIn : 0], ["errors", (s) => s.errors],
  ["refused: limit", (s) => s.dropped.limit], ["refused: acl", (s) => s.dropped.acl],
  ["closed: idle", (s) => s.dropped.idle], ["refused: guard", (s) => s.dropped.guard],
  ["refused: rate", (s) => s.dropped.rate],
  ["ws too big", (s) => s.ws ? s.ws.tooBig : 0], ["ws not reading", (s) => s.ws ? s.ws.slow : 0],
];
function showStats(m) {
  const dl = $("counters");
  if (!dl.children.length) {
    for (const [name] of COUNTERS) {
      const div = document.createElement("div");
      div.innerHTML = "<dt>" + esc(name) + "</dt><dd>0</dd>"; dl.append(div);
    }
  }
  if (!m.stats) return;
  COUNTERS.forEach(([, get], i) => { dl.children[i].lastChild.textContent = Number(get(m.stats) || 0).toLocaleString("en"); });
  $("viewers").textContent = String(m.viewers);
}
function describe(e) {
  const t = new Date(e.time).toLocaleTimeString("en-GB", { hour12: false });
  let text = t + " " + e.transport + " " + e.kind;
  if (e.id !== undefined) text += " #" + e.id;
  if (e.remote) text += " " + e.remote;
  if (e.bytes !== undefined) text += " " + e.bytes + " B";
  if (e.duration !== undefined) text += " " + e.duration + " ms";
  if (e.reason) text += " (" + e.reason + (e.detail ? " " + e.detail : "") + ")";
  if (e.preview) text += " “" + e.preview + "”";
  return text;
}
function events() {
  const feed = new WebSocket(base + "/events");
  feed.onmessage = (e) => {
    const m = JSON.parse(e.data);
    if (m.type === "stats") showStats(m);
    else if (m.type === "events") {
      for (const ev of m.events) logLine($("feed"), esc(describe(ev)), 200);
      $("dropped").textContent = String(m.dropped);
    }
  };
  feed.onclose = (e) => {
    const note = $("feed-note");
    if (e.code === 1008) { note.dataset.refused = ""; note.textContent = "Live view refused: " + (e.reason || "not allowed from your address"); return; }
    note.textContent = "Live view closed (" + e.code + (e.reason ? " " + e.reason : "") + "); retrying in 3 s";
    setTimeout(events, 3000);
  };
  feed.onopen = () => { const note = $("feed-note"); delete note.dataset.refused; note.textContent = "Live: events from every transport of this server, shown to loopback viewers only (unless the server allows others)."; };
}
showStats({ viewers: 0 });
drawPing();
window.addEventListener("resize", drawPing);
connect();
events();
`;

const BODY = `<header>
<h1>Echo · WebSocket console</h1>
<p id="status" class="status" role="status" aria-live="polite" data-state="connecting">connecting…</p>
</header>
<main>
<section aria-labelledby="echo-h">
<h2 id="echo-h">Echo</h2>
<form id="echo-form" autocomplete="off">
<label class="grow" for="message">Message (Enter sends)<input id="message" name="message" type="text" maxlength="100000" placeholder="Hello World" autofocus></label>
<button id="send" type="submit" disabled>Send</button>
</form>
<ol id="log" class="log" aria-label="Echoed messages, newest first" aria-live="polite"></ol>
</section>
<section aria-labelledby="ping-h">
<h2 id="ping-h">Ping</h2>
<form id="ping-form">
<label for="count">Messages<input id="count" type="number" min="1" max="10000" value="100"></label>
<label for="interval">Interval (ms)<input id="interval" type="number" min="1" max="60000" value="20"></label>
<label for="size">Size (bytes)<input id="size" type="number" min="8" max="1048576" value="32"></label>
<button id="ping" type="submit" disabled>Start ping</button>
</form>
<p id="ping-summary" class="note" aria-live="polite"></p>
<canvas id="chart" role="img" aria-label="Round-trip time of each ping message, in milliseconds"></canvas>
<canvas id="histogram" role="img" aria-label="Histogram of ping round-trip times"></canvas>
</section>
<section aria-labelledby="server-h">
<h2 id="server-h">Server</h2>
<dl id="counters" aria-label="Server counters"></dl>
<p class="note">Viewers: <span id="viewers">0</span> · feed events dropped for this page: <span id="dropped">0</span></p>
</section>
<section class="wide" aria-labelledby="feed-h">
<h2 id="feed-h">Events</h2>
<p id="feed-note" class="note" role="status">Connecting to the live view…</p>
<ol id="feed" class="log" aria-label="Server events, newest first"></ol>
</section>
</main>`;

/** `sha256-…` of a text, as a CSP source expression (Web Crypto: no node:crypto to load). */
async function hash(text: string): Promise<string> {
  const digest = new Uint8Array(
    await crypto.subtle.digest("SHA-256", new TextEncoder().encode(text)),
  );
  return `sha256-${btoa(String.fromCharCode(...digest))}`;
}

/** The page and the CSP hashes of its inline style and script. */
export interface WsPage {
  /** The whole HTML document. */
  html: string;
  /**
   * `sha256-…` of the inline script and style, for `script-src` and `style-src`; computed on
   * first use (a server that never serves the page never hashes it).
   */
  hashes(): Promise<{ script: string; style: string }>;
}

let hashes: Promise<{ script: string; style: string }> | undefined;

/**
 * The live page.
 *
 * @example
 * ```ts
 * import { WS_PAGE } from "./_ws_page.ts";
 * console.log(WS_PAGE.html.startsWith("<!doctype html>")); // true
 * ```
 */
export const WS_PAGE: WsPage = {
  html: `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="color-scheme" content="light dark">
<title>Echo · WebSocket console</title>
<link rel="icon" href="data:,">
<style>${STYLE}</style>
</head>
<body>
${BODY}
<script>${SCRIPT}</script>
</body>
</html>
`,
  hashes: () =>
    hashes ??= Promise.all([hash(SCRIPT), hash(STYLE)]).then(([script, style]) => ({
      script,
      style,
    })),
};
