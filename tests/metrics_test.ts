import assert from "node:assert/strict";
import { EchoConnectionError } from "../errors.ts";
import {
  HealthState,
  METRICS_CONTENT_TYPE,
  parseHostPort,
  renderMetrics,
  serveMetrics,
  VERSION,
} from "../metrics.ts";
import { serveEcho } from "../serve.ts";
import {
  countProxyRefusal,
  createStats,
  type EchoStats,
  recordSessionDuration,
  SESSION_DURATION_BUCKETS,
  sumStats,
  transportCounters,
} from "../stats.ts";
import { echoTcp } from "../tcp.ts";
import { echoUdp } from "../udp.ts";
import { childEnded, readyOrKill, spawnServer, test } from "./_helpers.ts";
import { assertOneLine, runProgram } from "./_cli_child.ts";
import { SIGNAL_REPEAT_MS } from "../_cli_signals.ts";

// ---------------------------------------------------------------------------------------------
// A strict reader of the text format, so the exposition is checked by parsing it back.

interface Sample {
  name: string;
  labels: Record<string, string>;
  value: number;
}

interface Family {
  type: string;
  help: string;
  samples: Sample[];
}

const SAMPLE = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$/;
const LABEL = /([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"(?:,|$)/gy;

function parseExposition(text: string): Map<string, Family> {
  assert.ok(text.endsWith("\n"), "ends with a line feed");
  const families = new Map<string, Family>();
  let current: string | undefined;
  for (const line of text.slice(0, -1).split("\n")) {
    const help = /^# HELP (\S+) (.+)$/.exec(line);
    if (help) {
      assert.ok(!families.has(help[1]), `family ${help[1]} declared once`);
      families.set(help[1], { type: "", help: help[2], samples: [] });
      current = help[1];
      continue;
    }
    const type = /^# TYPE (\S+) (counter|gauge|histogram)$/.exec(line);
    if (type) {
      assert.equal(type[1], current, "TYPE right after its HELP");
      families.get(type[1])!.type = type[2];
      continue;
    }
    const match = SAMPLE.exec(line);
    assert.ok(match, `a sample line: ${JSON.stringify(line)}`);
    const [, name, labelText = "", valueText] = match;
    const family = families.get(current!)!;
    const base = family.type === "histogram" ? name.replace(/_(bucket|sum|count)$/, "") : name;
    assert.equal(base, current, `${name} belongs to the family declared before it`);
    const labels: Record<string, string> = {};
    LABEL.lastIndex = 0;
    let consumed = 0;
    for (let m; (m = LABEL.exec(labelText));) {
      labels[m[1]] = m[2].replace(/\\n/g, "\n").replace(/\\"/g, '"').replace(/\\\\/g, "\\");
      consumed = LABEL.lastIndex;
    }
    assert.equal(consumed, labelText.length, `labels parse: ${labelText}`);
    const value = valueText === "+Inf" ? Infinity : Number(valueText);
    assert.ok(!Number.isNaN(value), `value of ${line}`);
    family.samples.push({ name, labels, value });
  }
  for (const [name, family] of families) {
    assert.ok(family.type, `${name} has a TYPE`);
    assert.ok(family.samples.length > 0, `${name} has samples`);
    if (family.type === "counter") assert.match(name, /_total$/);
    else assert.doesNotMatch(name, /_total$/);
  }
  return families;
}

function value(families: Map<string, Family>, name: string, labels: Record<string, string> = {}) {
  const family = families.get(name.replace(/_(bucket|sum|count)$/, "")) ?? families.get(name);
  assert.ok(family, `family of ${name}`);
  const found = family.samples.filter((s) =>
    s.name === name && Object.entries(labels).every(([k, v]) => s.labels[k] === v)
  );
  assert.equal(found.length, 1, `one ${name} ${JSON.stringify(labels)}`);
  return found[0].value;
}

/** promtool's verdict on an exposition, or undefined where promtool is missing. */
async function promtool(text: string): Promise<{ code: number; output: string } | undefined> {
  let child: Deno.ChildProcess;
  try {
    child = new Deno.Command("promtool", {
      args: ["check", "metrics"],
      stdin: "piped",
      stdout: "piped",
      stderr: "piped",
    }).spawn();
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) return undefined;
    throw error;
  }
  const writer = child.stdin.getWriter();
  await writer.write(new TextEncoder().encode(text));
  await writer.close();
  const { code, stdout, stderr } = await child.output();
  const decoder = new TextDecoder();
  return { code, output: decoder.decode(stdout) + decoder.decode(stderr) };
}

const HAS_PROMTOOL = (() => {
  try {
    new Deno.Command("promtool", { args: ["--version"], stdout: "null", stderr: "null" })
      .outputSync();
    return true;
  } catch {
    return false;
  }
})();
if (!HAS_PROMTOOL) {
  console.log(
    "metrics_test: promtool not found (Debian package prometheus); its checks are skipped",
  );
}

/** Counters as made before the per-transport split, the histogram and the PROXY refusals. */
function bareStats(): EchoStats {
  const stats = createStats();
  delete stats.transports;
  delete stats.sessionDuration;
  delete stats.proxyRefused;
  return stats;
}

function populated(): EchoStats {
  const stats = createStats();
  const tcp = transportCounters(stats, "tcp");
  const udp = transportCounters(stats, "udp");
  stats.sessionsTotal = tcp.sessionsTotal = 5;
  stats.sessionsOpen = tcp.sessionsOpen = 2;
  tcp.bytesIn = tcp.bytesOut = 1000;
  udp.bytesIn = udp.bytesOut = 64;
  stats.bytesIn = stats.bytesOut = 1064;
  stats.datagramsIn = udp.datagramsIn = 2;
  stats.datagramsOut = udp.datagramsOut = 1;
  stats.errors = tcp.errors = 1;
  stats.dropped.acl = 3;
  stats.dropped.rate = 4;
  countProxyRefusal(stats, "timeout");
  countProxyRefusal(stats, "timeout");
  countProxyRefusal(stats, "untrusted");
  for (const ms of [1, 5, 5.0001, 40, 999, 7_200_000]) recordSessionDuration(stats, ms);
  stats.impairment = { dropped: 1, duplicated: 2, reordered: 0, delayed: 0, overflow: 0 };
  return stats;
}

// ---------------------------------------------------------------------------------------------

Deno.test("renderMetrics: every family parses back with the counters' values", () => {
  const stats = populated();
  const health = new HealthState();
  const families = parseExposition(renderMetrics(stats, { health, transports: ["tls"] }));
  assert.equal(
    value(families, "echo_build_info", { version: VERSION, deno: Deno.version.deno }),
    1,
  );
  assert.equal(VERSION, "0.1.0");
  const start = value(families, "process_start_time_seconds");
  assert.ok(start > 1.6e9 && start <= Date.now() / 1000, `start ${start}`);
  assert.equal(value(families, "echo_draining"), 0);
  assert.equal(value(families, "echo_connections_total", { transport: "tcp" }), 5);
  assert.equal(value(families, "echo_connections_total", { transport: "tls" }), 0, "listed");
  assert.equal(value(families, "echo_current_sessions", { transport: "tcp" }), 2);
  assert.equal(value(families, "echo_bytes_in_total", { transport: "udp" }), 64);
  assert.equal(value(families, "echo_datagrams_in_total", { transport: "udp" }), 2);
  assert.equal(value(families, "echo_datagrams_out_total", { transport: "udp" }), 1);
  assert.equal(value(families, "echo_errors_total", { transport: "tcp" }), 1);
  // No stream series for UDP, no datagram series for TCP, nothing for unused transports.
  const transports = (name: string) =>
    families.get(name)!.samples.map((s) => s.labels.transport).sort();
  assert.deepEqual(transports("echo_connections_total"), ["tcp", "tls"]);
  assert.deepEqual(transports("echo_datagrams_in_total"), ["udp"]);
  assert.deepEqual(transports("echo_bytes_in_total"), ["tcp", "tls", "udp"]);
  assert.equal(value(families, "echo_refused_total", { reason: "acl" }), 3);
  assert.equal(value(families, "echo_refused_total", { reason: "rate" }), 4);
  assert.equal(value(families, "echo_refused_total", { reason: "proxy_timeout" }), 2);
  assert.equal(value(families, "echo_refused_total", { reason: "proxy_untrusted" }), 1);
  assert.equal(value(families, "echo_refused_total", { reason: "proxy_malformed" }), 0);
  assert.equal(value(families, "echo_impairment_total", { action: "duplicated" }), 2);
  // The histogram: cumulative buckets in order, +Inf equal to the count, le inclusive.
  const buckets = families.get("echo_session_duration_seconds")!.samples
    .filter((s) => s.name.endsWith("_bucket"));
  assert.deepEqual(buckets.map((b) => b.labels.le), [
    ...SESSION_DURATION_BUCKETS.map(String),
    "+Inf",
  ]);
  for (let i = 1; i < buckets.length; i++) assert.ok(buckets[i].value >= buckets[i - 1].value);
  assert.equal(value(families, "echo_session_duration_seconds_bucket", { le: "0.005" }), 2);
  assert.equal(value(families, "echo_session_duration_seconds_bucket", { le: "0.01" }), 3);
  assert.equal(value(families, "echo_session_duration_seconds_bucket", { le: "1" }), 5);
  assert.equal(value(families, "echo_session_duration_seconds_bucket", { le: "3600" }), 5);
  assert.equal(value(families, "echo_session_duration_seconds_bucket", { le: "+Inf" }), 6);
  assert.equal(value(families, "echo_session_duration_seconds_count"), 6);
  const sum = value(families, "echo_session_duration_seconds_sum");
  assert.ok(Math.abs(sum - 7201.0500001) < 1e-6, `sum ${sum}`);
  health.drain();
  assert.equal(value(parseExposition(renderMetrics(stats, { health })), "echo_draining"), 1);
});

Deno.test("renderMetrics: counters without the per-transport split show as transport=all", () => {
  const stats = bareStats();
  stats.bytesIn = 9;
  stats.sessionsTotal = 1;
  const families = parseExposition(renderMetrics(stats));
  assert.equal(value(families, "echo_bytes_in_total", { transport: "all" }), 9);
  assert.equal(value(families, "echo_connections_total", { transport: "all" }), 1);
  assert.equal(value(families, "echo_session_duration_seconds_count"), 0);
  assert.equal(value(families, "echo_refused_total", { reason: "proxy_closed" }), 0);
  assert.equal(families.has("echo_draining"), false, "no health state given");
});

Deno.test("renderMetrics: label values are escaped", () => {
  const text = renderMetrics(createStats(), { version: 'a"b\\c\nd' });
  assert.ok(text.includes('version="a\\"b\\\\c\\nd"'), text.split("\n")[2]);
  assert.equal(value(parseExposition(text), "echo_build_info", { version: 'a"b\\c\nd' }), 1);
});

Deno.test("sumStats and the recording hooks", () => {
  const a = populated();
  const b = populated();
  const total = sumStats([a, b]);
  assert.equal(total.bytesIn, 2128);
  assert.equal(total.transports?.tcp.sessionsTotal, 10);
  assert.equal(total.dropped.acl, 6);
  assert.equal(total.proxyRefused?.timeout, 4);
  assert.equal(total.sessionDuration?.count, 12);
  assert.deepEqual(total.sessionDuration?.counts, a.sessionDuration!.counts.map((n) => 2 * n));
  assert.equal(total.impairment?.duplicated, 4);
  assert.equal(a.bytesIn, 1064, "the parts are left alone");
  // Stats made before the split (no transports, no histogram) get them on first use.
  const bare = bareStats();
  transportCounters(bare, "ws").datagramsIn++;
  recordSessionDuration(bare, -5); // a clock step: counted as 0
  countProxyRefusal(bare, "checksum");
  assert.equal(bare.transports?.ws.datagramsIn, 1);
  assert.equal(bare.sessionDuration?.counts[0], 1);
  assert.equal(bare.proxyRefused?.checksum, 1);
});

test("promtool check metrics passes on the output of a real server", async () => {
  await using echo = await serveEcho({ port: 0 });
  await echoTcp("count me", { port: echo.addr.port });
  await echoUdp("and me", { port: echo.addr.port });
  await using metrics = serveMetrics({ port: 0, stats: echo.stats, transports: ["tcp", "udp"] });
  const response = await fetch(`http://127.0.0.1:${metrics.addr.port}/metrics`);
  assert.equal(response.status, 200);
  assert.equal(response.headers.get("content-type"), METRICS_CONTENT_TYPE);
  const text = await response.text();
  const families = parseExposition(text);
  // Totals come from the live counters (the per-transport split is wired in a later change).
  assert.ok(value(families, "echo_connections_total", { transport: "tcp" }) >= 0);
  for (const sample of [text, renderMetrics(populated(), { health: new HealthState() })]) {
    const verdict = await promtool(sample);
    assert.ok(verdict, "promtool ran");
    assert.equal(verdict.code, 0, verdict.output);
    assert.equal(verdict.output.trim(), "", "no lint warnings");
  }
  // promtool can fail: a counter without _total is reported.
  const bad = await promtool("# HELP x_bytes b\n# TYPE x_bytes counter\nx_bytes 1\n");
  assert.notEqual(bad!.code, 0);
}, { ignore: !HAS_PROMTOOL });

test("serveMetrics: /healthz is 200 while serving and 503 once draining", async () => {
  const health = new HealthState();
  await using metrics = serveMetrics({ port: 0, stats: createStats(), health });
  assert.equal(metrics.health, health);
  assert.equal(metrics.addr.hostname, "127.0.0.1", "loopback by default");
  const url = `http://127.0.0.1:${metrics.addr.port}/healthz`;
  const before = await fetch(url);
  assert.deepEqual([before.status, await before.text()], [200, "serving\n"]);
  const head = await fetch(url, { method: "HEAD" });
  await head.body?.cancel();
  assert.equal(head.status, 200);
  assert.equal(health.drainingSince, undefined);
  health.drain();
  assert.ok(health.drainingSince! <= Date.now());
  const after = await fetch(url);
  assert.deepEqual([after.status, await after.text()], [503, "draining\n"]);
  health.drain(); // again: still draining
  const scrape = await fetch(`http://127.0.0.1:${metrics.addr.port}/metrics`);
  assert.equal(value(parseExposition(await scrape.text()), "echo_draining"), 1);
});

test("serveMetrics: other paths are 404, other methods 405", async () => {
  await using metrics = serveMetrics({ port: 0, stats: createStats() });
  const base = `http://127.0.0.1:${metrics.addr.port}`;
  for (const path of ["/", "/metrics/", "/metricsx", "/favicon.ico", "/healthz/x"]) {
    const response = await fetch(base + path);
    assert.equal(response.status, 404, path);
    await response.body?.cancel();
  }
  const post = await fetch(`${base}/metrics`, { method: "POST", body: "x" });
  assert.equal(post.status, 405);
  assert.equal(post.headers.get("allow"), "GET, HEAD");
  await post.body?.cancel();
  const query = await fetch(`${base}/metrics?name[]=echo_up`);
  assert.equal(query.status, 200);
  await query.body?.cancel();
});

test("serveMetrics: a stats function is called at each scrape", async () => {
  let scrapes = 0;
  const stats = () => {
    scrapes++;
    const s = createStats();
    s.bytesIn = scrapes;
    transportCounters(s, "tcp").bytesIn = scrapes;
    return s;
  };
  await using metrics = serveMetrics({ port: 0, stats });
  const url = `http://127.0.0.1:${metrics.addr.port}/metrics`;
  for (const expected of [1, 2]) {
    const families = parseExposition(await (await fetch(url)).text());
    assert.equal(value(families, "echo_bytes_in_total", { transport: "tcp" }), expected);
  }
});

test("serveMetrics: bad addresses and ports are one-line errors", () => {
  const stats = createStats();
  assert.throws(() => serveMetrics({ port: -1, stats }), RangeError);
  assert.throws(() => serveMetrics({ port: 1.5, stats }), RangeError);
  assert.throws(() => serveMetrics({ port: 65536, stats }), RangeError);
  assert.throws(() => serveMetrics({ hostname: "", port: 0, stats }), TypeError);
  using taken = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (taken.addr as Deno.NetAddr).port;
  for (
    const [hostname, pattern] of [
      ["127.0.0.1", /^cannot listen on tcp 127\.0\.0\.1:\d+: address already in use$/],
      ["192.0.2.1", /^cannot listen on tcp 192\.0\.2\.1:\d+: address not available/],
      ["not a host", /^cannot listen on tcp not a host:\d+: invalid host/],
    ] as const
  ) {
    const error = (() => {
      try {
        serveMetrics({ hostname, port: hostname === "127.0.0.1" ? port : 0, stats });
      } catch (error) {
        return error;
      }
      assert.fail(`${hostname}: expected an error`);
    })();
    assert.ok(error instanceof EchoConnectionError, String(error));
    assert.match(error.message, pattern);
    assert.ok(!error.message.includes("\n"));
  }
});

test("serveMetrics: an abort signal stops it; shutdown and dispose may both run", async () => {
  const controller = new AbortController();
  const metrics = serveMetrics({ port: 0, stats: createStats(), signal: controller.signal });
  controller.abort();
  await metrics.finished;
  await assert.rejects(fetch(`http://127.0.0.1:${metrics.addr.port}/healthz`));
  const other = serveMetrics({ port: 0, stats: createStats() });
  await other.shutdown();
  await other[Symbol.asyncDispose]();
});

Deno.test("parseHostPort: HOST:PORT, [IPv6]:PORT, bare PORT; anything else a one-line error", () => {
  assert.deepEqual(parseHostPort("127.0.0.1:9101"), { hostname: "127.0.0.1", port: 9101 });
  assert.deepEqual(parseHostPort("localhost:0"), { hostname: "localhost", port: 0 });
  assert.deepEqual(parseHostPort("[::1]:65535"), { hostname: "::1", port: 65535 });
  assert.deepEqual(parseHostPort("9101"), { hostname: "127.0.0.1", port: 9101 });
  assert.deepEqual(parseHostPort("9101", "::1"), { hostname: "::1", port: 9101 });
  for (
    const bad of [
      "",
      " 1",
      "host",
      "host:",
      ":9101",
      "::1:9101",
      "[::1]",
      "[::1]9101",
      "h:65536",
      "h:09",
      "h:-1",
      "h:1.5",
    ]
  ) {
    assert.throws(() => parseHostPort(bad), (error: Error) => {
      assert.ok(error instanceof TypeError, bad);
      assert.match(error.message, /^invalid address .*\(expected HOST:PORT\)$/, bad);
      return true;
    });
  }
});

test("HealthState.drainFor: draining at once, resolves after the period or on abort", async () => {
  const health = new HealthState();
  const started = performance.now();
  const waiting = health.drainFor(200);
  assert.equal(health.state, "draining", "503 from the first moment");
  await waiting;
  assert.ok(performance.now() - started >= 195, "served through the whole period");
  const again = new HealthState();
  const controller = new AbortController();
  const long = again.drainFor(60_000, { signal: controller.signal });
  controller.abort(); // a second signal: stop waiting
  await long;
  assert.equal(again.draining, true);
  await new HealthState().drainFor(0);
  assert.throws(() => new HealthState().drainFor(-1), RangeError);
  assert.throws(() => new HealthState().drainFor(Infinity), RangeError);
});

// ---------------------------------------------------------------------------------------------
// server.ts --metrics and --drain, as a balancer sees them

async function startCliServer(args: string[]) {
  const metricsPort = freePort();
  const child = spawnServer([
    "--tcp",
    "--port",
    "0",
    "--metrics",
    `127.0.0.1:${metricsPort}`,
    ...args,
  ]);
  const ready = await readyOrKill(child, child.stdout.waitFor(/listening tcp 127\.0\.0\.1:(\d+)/));
  const lines = child.stdout.rest();
  return { child, port: Number(ready[1]), base: `http://127.0.0.1:${metricsPort}`, lines };
}

/** A free port on 127.0.0.1, a moment ago. */
function freePort(): number {
  using listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  return (listener.addr as Deno.NetAddr).port;
}

test("server.ts --proxy-protocol --metrics: /metrics passes promtool and counts what happened", async () => {
  const server = await startCliServer(["--proxy-protocol"]);
  try {
    for (const version of [1, 2, 2] as const) {
      await echoTcp("through a balancer", { port: server.port, proxyHeader: version });
    }
    const conn = await Deno.connect({ hostname: "127.0.0.1", port: server.port });
    await conn.write(new TextEncoder().encode("no header at all\r\n"));
    assert.equal(await conn.read(new Uint8Array(64)).catch(() => null), null, "refused");
    conn.close();
    // The refusal is counted before the connection is closed, so the scrape below sees it.
    const response = await fetch(`${server.base}/metrics`);
    const text = await response.text();
    const families = parseExposition(text);
    assert.equal(value(families, "echo_connections_total", { transport: "tcp" }), 3);
    assert.equal(value(families, "echo_bytes_out_total", { transport: "tcp" }), 3 * 18);
    assert.equal(value(families, "echo_refused_total", { reason: "proxy_signature" }), 1);
    assert.equal(value(families, "echo_session_duration_seconds_count"), 3);
    assert.equal(value(families, "echo_draining"), 0);
    const health = await fetch(`${server.base}/healthz`);
    assert.equal(health.status, 200);
    await health.body?.cancel();
    if (HAS_PROMTOOL) {
      const verdict = await promtool(text);
      assert.equal(verdict!.code, 0, verdict!.output);
      assert.equal(verdict!.output.trim(), "", "no lint warnings");
    } else {
      console.log("promtool not found: the real server's /metrics is parsed, not linted");
    }
  } finally {
    server.child.child.kill("SIGINT");
    await childEnded(server.child);
  }
});

test("server.ts --drain: SIGTERM turns /healthz 503 at once, serves on for the period, exits 0", async () => {
  const drain = 1500;
  const server = await startCliServer(["--drain", `${drain}ms`]);
  const signalled = performance.now();
  server.child.child.kill("SIGTERM");
  // The first /healthz answered after the signal is handled says 503 (polled: the signal's
  // arrival is not observable otherwise).
  let status = 200;
  for (let i = 0; i < 200 && status === 200; i++) {
    const response = await fetch(`${server.base}/healthz`);
    status = response.status;
    await response.body?.cancel();
  }
  assert.equal(status, 503);
  const { reply } = await echoTcp("still served while draining", { port: server.port });
  assert.equal(new TextDecoder().decode(reply), "still served while draining");
  const { code, stderr } = await childEnded(server.child);
  assert.equal(code, 0, stderr);
  assert.ok(performance.now() - signalled >= drain, "served for the whole drain period");
  assert.match(stderr, /draining: \/healthz answers 503/);
});

test("server.ts --drain: a second signal during the drain exits at once", async () => {
  const server = await startCliServer(["--drain", "10m"]);
  server.child.child.kill("SIGTERM");
  let status = 200;
  for (let i = 0; i < 200 && status === 200; i++) {
    const response = await fetch(`${server.base}/healthz`);
    status = response.status;
    await response.body?.cancel();
  }
  assert.equal(status, 503);
  // Signals closer than SIGNAL_REPEAT_MS count as one Ctrl-C: the second must come later.
  await new Promise((resolve) => setTimeout(resolve, SIGNAL_REPEAT_MS + 50));
  server.child.child.kill("SIGTERM");
  const { code } = await childEnded(server.child);
  assert.equal(code, 1);
});

test("server.ts and client.ts: bad balancer flags are one-line usage errors, a taken port exit 1", async () => {
  const cases: ["server.ts" | "client.ts", string[], number, RegExp][] = [
    ["server.ts", ["--metrics", "nope"], 2, /--metrics: invalid address/],
    ["server.ts", ["--metrics", "127.0.0.1:70000"], 2, /the port must be 0-65535/],
    ["server.ts", ["--proxy-from", "10.0.0.0/8"], 2, /--proxy-from needs --proxy-protocol/],
    ["server.ts", ["--proxy-protocol", "--proxy-from", "10.0.0.0/33"], 2, /proxyFrom/],
    ["server.ts", ["--proxy-protocol", "--udp"], 2, /--udp and --proxy-protocol conflict/],
    ["server.ts", ["--drain", "soon"], 2, /--drain/],
    ["client.ts", ["--proxy-header", "v3"], 2, /--proxy-header must be v1 or v2/],
    ["client.ts", ["--proxy-header", "v1", "--udp"], 2, /--udp and --proxy-header conflict/],
  ];
  for (const [program, args, expected, pattern] of cases) {
    const { code, stderr } = await runProgram(program, args, ["--allow-net", "--allow-read"]);
    assert.equal(code, expected, `${program} ${args.join(" ")}: ${stderr}`);
    assertOneLine(stderr, pattern, `${program} ${args.join(" ")}`);
  }
  using taken = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (taken.addr as Deno.NetAddr).port;
  const { code, stderr } = await runProgram(
    "server.ts",
    ["--tcp", "--port", "0", "--metrics", `127.0.0.1:${port}`],
    ["--allow-net"],
  );
  assert.equal(code, 1, stderr);
  assertOneLine(stderr, /error: .*in use/i, "metrics port in use");
});

test("server.ts --workers 2 --proxy-protocol --metrics: /metrics shows the totals of every thread", async () => {
  const metricsPort = freePort();
  const child = spawnServer(
    [
      "--tcp",
      "--port",
      "0",
      "-q",
      "--workers",
      "2",
      "--proxy-protocol",
      "--metrics",
      `${metricsPort}`,
    ],
    ["--allow-net", "--allow-read"],
  );
  const ready = await readyOrKill(child, child.stdout.waitFor(/listening tcp 127\.0\.0\.1:(\d+)/));
  const port = Number(ready[1]);
  try {
    for (let i = 0; i < 16; i++) await echoTcp(`exchange ${i}`, { port, proxyHeader: 2 });
    for (let i = 0; i < 4; i++) {
      const conn = await Deno.connect({ hostname: "127.0.0.1", port });
      await conn.write(new TextEncoder().encode("no header\r\n"));
      await conn.read(new Uint8Array(16)).catch(() => null);
      conn.close();
    }
    // Workers report their counters every 250 ms: scrape until the totals are all in.
    let families: ReturnType<typeof parseExposition> = new Map();
    const complete = () =>
      families.has("echo_connections_total") &&
      value(families, "echo_connections_total", { transport: "tcp" }) === 16 &&
      value(families, "echo_refused_total", { reason: "proxy_signature" }) === 4;
    for (let i = 0; i < 100 && !complete(); i++) {
      if (i > 0) await new Promise((resolve) => setTimeout(resolve, 50));
      families = parseExposition(
        await (await fetch(`http://127.0.0.1:${metricsPort}/metrics`)).text(),
      );
    }
    assert.ok(complete(), "16 sessions and 4 refusals, summed over both threads");
    assert.equal(value(families, "echo_session_duration_seconds_count"), 16);
  } finally {
    child.child.kill("SIGINT");
    const { code, stderr } = await childEnded(child);
    assert.equal(code, 0, stderr);
  }
});
