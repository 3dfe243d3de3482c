import assert from "node:assert/strict";
import { paletteFor } from "../_cli.ts";
import {
  formatBenchHeader,
  formatBenchSummary,
  formatCount,
  formatEchoReply,
  formatIntervalLine,
  formatMegabytes,
  formatMergeHeader,
  formatMicros,
  formatPingHeader,
  formatPingReply,
  formatPingSummary,
  formatPingTime,
  formatProgress,
  intervalJson,
  lossPercent,
  PROBE_JSON_SCHEMA,
  probeJson,
  renderHistogram,
  transportName,
} from "../_client_report.ts";
import { Histogram } from "../histogram.ts";
import { fakeInterval, fakeResult } from "./_probe_fixtures.ts";

const plain = paletteFor({ isTerminal: () => false });

Deno.test("number and time formats", () => {
  assert.equal(formatCount(1234567), "1,234,567");
  assert.equal(formatCount(41234.6), "41,235");
  assert.equal(formatPingTime(0.21345), "0.213");
  assert.equal(formatPingTime(3.14159), "3.14");
  assert.equal(formatPingTime(12.345), "12.3");
  assert.equal(formatPingTime(1234.5), "1235");
  assert.equal(formatPingTime(NaN), "?");
  assert.equal(formatMicros(27.4), "27µs");
  assert.equal(formatMicros(1050), "1.05ms");
  assert.equal(formatMicros(NaN), "—");
  assert.equal(formatMegabytes(2_512_000), "2.51 MB/s");
  assert.equal(formatMegabytes(812_000_000), "812 MB/s");
});

Deno.test("ping lines: header, replies marked like ping marks them", () => {
  const address = { hostname: "127.0.0.1", port: 5006, transport: "tcp" as const };
  assert.equal(
    formatPingHeader({ transport: "tcp", address, size: 64 }, 1000),
    "PING tcp 127.0.0.1:5006: 64 bytes every 1.00s",
  );
  const reply = { connection: 0, seq: 3, bytes: 64, rtt: 0.2134, kind: "reply" as const };
  assert.equal(
    formatPingReply({ ...reply, warmup: false }, address, plain),
    "64 bytes from 127.0.0.1:5006: seq=3 time=0.213 ms",
  );
  assert.match(
    formatPingReply({ ...reply, kind: "duplicate", warmup: false }, address, plain),
    / \(DUP!\)$/,
  );
  assert.match(
    formatPingReply({ ...reply, kind: "late", warmup: false }, address, plain),
    / \(late\)$/,
  );
  assert.match(
    formatPingReply(
      { ...reply, kind: "mismatch", seq: -1, rtt: NaN, warmup: false },
      address,
      plain,
    ),
    /seq=\? time=\? ms \(MISMATCH\)$/,
  );
  assert.equal(
    formatPingReply(reply as never, { hostname: "::1", port: 7 }, plain),
    "64 bytes from [::1]:7: seq=3 time=0.213 ms",
  );
});

Deno.test("lossPercent counts probes with no reply at all; late ones came back", () => {
  assert.equal(lossPercent({ sent: 0, received: 0, late: 0 }), 0);
  assert.equal(lossPercent({ sent: 4, received: 3, late: 0 }), 25);
  assert.equal(lossPercent({ sent: 4, received: 3, late: 1 }), 0);
});

Deno.test("ping summary: counts, loss, and rtt min/avg/max/mdev in ms", () => {
  const result = fakeResult({ sent: 4, received: 3, elapsed: 3000 }, [100, 200, 300]);
  const lines = formatPingSummary(result, plain).split("\n");
  assert.equal(lines[0], "--- tcp 127.0.0.1:5006 ping statistics ---");
  assert.equal(lines[1], "4 sent, 3 received, 25% loss, time 3.00s");
  assert.equal(lines[2], "rtt min/avg/max/mdev = 0.100/0.200/0.300/0.082 ms");

  const udp = fakeResult({
    transport: "udp",
    sent: 3,
    received: 2,
    late: 1,
    duplicates: 1,
    reordered: 0,
    mismatches: 1,
  }, [50, 60]);
  assert.match(
    formatPingSummary(udp, plain).split("\n")[1],
    /^3 sent, 2 received, 0% loss, 1 duplicate, 0 reordered, 1 late, 1 mismatched, time /,
  );
  const none = formatPingSummary(fakeResult({ sent: 2 }), plain).split("\n");
  assert.equal(none.length, 2, "no rtt line without replies");
  assert.match(none[1], /100% loss/);
});

Deno.test("bench header and summary name what was run and what came back", () => {
  const result = fakeResult({ connections: 50, size: 1024 }, [100, 120, 130, 5000]);
  assert.equal(
    formatBenchHeader(result, { mode: "bench", duration: 10_000, warmup: 1000 }),
    "bench tcp 127.0.0.1:5006: 50 connections × 1,024 B, pipeline 1, 10.00s, +1.00s warm-up",
  );
  assert.equal(
    formatBenchHeader({ ...result, transport: "udp", connections: 1 }, {
      mode: "bench",
      rate: 20000,
      count: 100,
    }),
    "bench udp 127.0.0.1:5006: 1 socket × 1,024 B, rate 20,000/s, pipeline 1, 100 requests",
  );
  const summary = formatBenchSummary({ ...result, connectionsServed: 50 }, plain);
  assert.match(summary, /requests +4 in 2\.00s +2 req\/s/);
  assert.match(summary, /p50 \d+µs/);
  assert.match(summary, /0 errors +0 mismatches/);
  assert.doesNotMatch(summary, /udp/);
  const udp = formatBenchSummary(
    fakeResult({ transport: "udp", lost: 1, sent: 5, jitter: 12 }, [10, 20, 30, 40]),
    plain,
  );
  assert.match(udp, /udp +lost 1 \(20%\) +late 0 +duplicates 0 +reordered 0 +jitter 12µs/);
  assert.match(
    formatBenchSummary(fakeResult({ connections: 4, connectionsServed: 3 }), plain),
    /3 of 4 connections served/,
  );
});

Deno.test("progress line", () => {
  assert.equal(
    formatProgress({ elapsed: 3000, requests: 12345, rate: 4100.4, errors: 1, warmup: false }),
    "  3.00s  12,345 requests  4,100 req/s  1 error",
  );
  assert.match(
    formatProgress({ elapsed: 500, requests: 0, rate: 10, errors: 0, warmup: true }),
    /\(warm-up\)/,
  );
});

Deno.test("renderHistogram: rows add up to the count, the fullest row gets the full width", () => {
  const latencies: number[] = [];
  for (let i = 0; i < 1000; i++) latencies.push(20 + (i % 40));
  for (let i = 0; i < 10; i++) latencies.push(2000 + i);
  const h = fakeResult({}, latencies).histogram;
  const lines = renderHistogram(h, plain, { rows: 8, width: 30 }).split("\n");
  assert.match(lines[0], /latency histogram/);
  const rows = lines.slice(1);
  assert.ok(rows.length <= 8 && rows.length >= 2);
  let total = 0;
  let widest = 0;
  for (const row of rows) {
    const match = /^\s+(\S+) \[\s*([\d,]+)\] \|(■*)$/.exec(row);
    assert.ok(match, row);
    total += Number(match[2].replaceAll(",", ""));
    widest = Math.max(widest, match[3].length);
  }
  assert.equal(total, 1010);
  assert.equal(widest, 30);
  assert.match(rows.at(-1)!, /^\s+2\.01ms \[/, "the last row ends at the maximum");
  assert.match(renderHistogram(new Histogram(), plain), /no replies/);
  const one = new Histogram();
  one.record(42);
  assert.equal(renderHistogram(one, plain).split("\n").length, 2);
});

Deno.test("probeJson: flat, loadgen-compatible names, schema version, null for nothing measured", () => {
  const result = fakeResult({ pipeline: Infinity, transport: "udp", lost: 1, sent: 4 }, [
    100,
    200,
    300,
  ]);
  const json = JSON.parse(JSON.stringify(probeJson(result, { mode: "ping", interval: 1000 })));
  assert.equal(json.schema, PROBE_JSON_SCHEMA);
  assert.equal(json.mode, "ping");
  assert.equal(json.ok, true);
  assert.equal(json.address, "127.0.0.1:5006");
  assert.equal(json.pipeline, null);
  assert.equal(json.requests, 3);
  assert.equal(json.seconds, 2);
  assert.equal(json.rps, 1.5);
  assert.equal(json.lost, 1);
  assert.equal(json.loss_pct, 25);
  assert.equal(json.min_us, 100);
  assert.equal(json.max_us, 300);
  for (
    const key of [
      "requests",
      "seconds",
      "rps",
      "mbps",
      "errors",
      "mismatches",
      "lost",
      "p50_us",
      "p90_us",
      "p99_us",
      "p999_us",
      "max_us",
      "connections_served",
    ]
  ) {
    assert.ok(key in json, key);
  }
  const empty = JSON.parse(JSON.stringify(probeJson(fakeResult(), { mode: "bench" })));
  assert.equal(empty.ok, false);
  assert.equal(empty.p50_us, null);
  assert.equal(empty.rate, null);
});

Deno.test("formatEchoReply: one byte is singular; a long reply is cut to one line with the rest counted", () => {
  const address = { hostname: "127.0.0.1", port: 7, transport: "tcp" as const };
  const colors = paletteFor({ isTerminal: () => false });
  const one = formatEchoReply({ reply: new Uint8Array([0x61]), rtt: 1, address }, "tcp", colors);
  assert.match(one, /: "a" \(1 byte\) time=/);
  const long = new TextEncoder().encode("y".repeat(65_536));
  const line = formatEchoReply({ reply: long, rtt: 1, address }, "tcp", colors);
  assert.ok(line.length < 400, `${line.length} characters`);
  assert.match(line, /"y{256}" … \(65,280 more bytes\) \(65,536 bytes\) time=/);
});

Deno.test("interval line: span, rates, p50/p99, errors; UDP adds loss, dup, reordered; no escapes", () => {
  const tcp = formatIntervalLine(fakeInterval({}, [200, 200, 200]), "tcp");
  assert.equal(tcp, "[ 2.00- 3.00 s]  3 req/s  0.00 MB/s  p50 200µs  p99 200µs  0 errors");
  const udp = formatIntervalLine(
    fakeInterval({ lost: 4, duplicates: 1, reordered: 2, errors: 1, mismatches: 1 }, [100]),
    "udp",
  );
  assert.equal(
    udp,
    "[ 2.00- 3.00 s]  1 req/s  0.00 MB/s  p50 100µs  p99 100µs  1 error  1 mismatch  lost 4  dup 1  reordered 2",
  );
  assert.match(formatIntervalLine(fakeInterval(), "tcp"), /p50 - {2}p99 - {2}0 errors$/);
  assert.ok(!tcp.includes("\x1b") && !udp.includes("\x1b"));
});

Deno.test("intervalJson: schema, event, span and ISO timestamps, counts, null latency when empty", () => {
  const json = JSON.parse(JSON.stringify(intervalJson(fakeInterval({}, [100, 200]), "bench")));
  assert.equal(json.schema, PROBE_JSON_SCHEMA);
  assert.equal(json.event, "interval");
  assert.equal(json.mode, "bench");
  assert.equal(json.index, 2);
  assert.equal(json.start_s, 2);
  assert.equal(json.end_s, 3);
  assert.equal(json.start_time, "2026-12-01T12:00:02.000Z");
  assert.equal(json.end_time, "2026-12-01T12:00:03.000Z");
  assert.equal(json.requests, 2);
  assert.equal(json.max_us, 200);
  assert.equal(JSON.parse(JSON.stringify(intervalJson(fakeInterval(), "ping"))).p50_us, null);
});

Deno.test("probeJson carries event, timestamps and the lossless result; TLS and Unix are named", () => {
  const result = fakeResult({ tls: true }, [100, 200, 300]);
  const json = JSON.parse(JSON.stringify(probeJson(result, {
    mode: "bench",
    startTime: Date.UTC(2026, 0, 1),
    endTime: Date.UTC(2026, 0, 1, 0, 0, 2),
  })));
  assert.equal(json.event, "result");
  assert.equal(json.start_time, "2026-01-01T00:00:00.000Z");
  assert.equal(json.end_time, "2026-01-01T00:00:02.000Z");
  assert.equal(json.transport, "tls");
  assert.equal(json.result.schema, 1);
  assert.equal(json.result.mode, "bench");
  assert.equal(json.result.tls, true);
  assert.equal(Histogram.fromSnapshot(json.result.histogram).percentile(50), result.latency.p50);
  const unix = { hostname: "", port: 0, transport: "unix" as const, path: "/tmp/e.sock" };
  assert.equal(transportName({ transport: "tcp", address: unix }), "unix");
  assert.equal(transportName({ transport: "udp", address: result.address }), "udp");
});

Deno.test("merge header names the runs, the transport and the files", () => {
  assert.equal(
    formatMergeHeader(fakeResult({ connections: 8 }), ["a.json", "b.json"]),
    "merged 2 runs of tcp 127.0.0.1:5006 (8 connections × 64 B in all): a.json, b.json",
  );
});
