/**
 * runProbe's interval reports (per-interval counts and latency that add up to the result) and its
 * TLS and Unix socket lanes, against real servers on loopback.
 */
import assert from "node:assert/strict";
import { EchoConnectionError } from "../errors.ts";
import { type ProbeIntervalReport, type ProbeResult, runProbe } from "../probe.ts";
import { serveEcho } from "../serve.ts";
import { serveTcpEcho } from "../tcp.ts";
import { serveUnixEcho } from "../unix.ts";
import { INTERVAL_COUNTERS } from "../_probe_interval.ts";

const CERT = await Deno.readTextFile(new URL("./fixtures/tls_cert.pem", import.meta.url));
const KEY = await Deno.readTextFile(new URL("./fixtures/tls_key.pem", import.meta.url));

/** Every counter the intervals carry, summed, equals the result's. */
function assertIntervalsAddUp(reports: ProbeIntervalReport[], result: ProbeResult): void {
  for (const key of INTERVAL_COUNTERS) {
    const sum = reports.reduce((total, r) => total + r[key], 0);
    assert.equal(sum, result[key], `sum of interval ${key}`);
  }
  const latencies = reports.reduce((total, r) => total + r.latency.count, 0);
  assert.equal(latencies, result.latency.count, "every measured latency in one interval");
  reports.forEach((r, i) => {
    assert.equal(r.index, i);
    assert.equal(r.final, i === reports.length - 1);
    if (i > 0) assert.equal(r.start, reports[i - 1].end, "intervals are contiguous");
    assert.ok(r.end >= r.start);
    assert.ok(Math.abs(r.endTime - r.startTime - (r.end - r.start)) < 0.01);
  });
  assert.equal(reports[0].start, 0);
}

for (const transport of ["tcp", "udp"] as const) {
  Deno.test(`probe intervals (${transport}): 1.2 s in 300 ms intervals, counts add up`, async () => {
    await using server = await serveEcho({ port: 0 });
    const reports: ProbeIntervalReport[] = [];
    const wallStart = Date.now();
    const result = await runProbe({
      transport,
      port: server.addr.port,
      connections: 2,
      duration: 1200,
      warmup: 100,
      reportInterval: 300,
      onInterval: (r) => reports.push(r),
    });
    assert.ok(reports.length >= 4, `${reports.length} reports`);
    assertIntervalsAddUp(reports, result);
    for (const r of reports.slice(0, 3)) {
      assert.equal(r.end - r.start, 300);
      assert.ok(r.received > 0 && r.requestsPerSecond > 0, `interval ${r.index} measured`);
      assert.ok(r.latency.p50 <= r.latency.p99);
      assert.equal(r.bytes, r.received * result.size);
    }
    // Timestamps are wall-clock: the first starts after the warm-up, within this test's span.
    assert.ok(reports[0].startTime >= wallStart + 100 - 5 && reports[0].startTime <= Date.now());
    console.log(
      `    ${transport}: ${
        reports.map((r) => `${r.received} req, p50 ${r.latency.p50.toFixed(0)} µs`).join(" | ")
      }`,
    );
  });
}

Deno.test("probe intervals: a UDP run with a silent server reports its losses in the intervals", async () => {
  const silent = Deno.listenDatagram({ hostname: "127.0.0.1", port: 0, transport: "udp" });
  try {
    const reports: ProbeIntervalReport[] = [];
    const result = await runProbe({
      transport: "udp",
      port: (silent.addr as Deno.NetAddr).port,
      count: 10,
      interval: 20,
      timeout: 100,
      reportInterval: 100,
      onInterval: (r) => reports.push(r),
    });
    assert.equal(result.lost, 10);
    assertIntervalsAddUp(reports, result);
    assert.ok(reports.filter((r) => r.lost > 0).length >= 2, "losses spread over intervals");
  } finally {
    silent.close();
  }
});

Deno.test("probe intervals: a throwing onInterval rejects the run", async () => {
  await using server = await serveEcho({ port: 0 });
  await assert.rejects(
    runProbe({
      port: server.addr.port,
      duration: 2000,
      reportInterval: 50,
      onInterval: () => {
        throw new Error("hook broke");
      },
    }),
    /hook broke/,
  );
});

Deno.test("probe over TLS: same accounting as TCP, every byte verified", async () => {
  await using server = serveTcpEcho({ port: 0, tls: { cert: CERT, key: KEY } });
  const result = await runProbe({
    port: server.addr.port,
    tls: { caCerts: [CERT], servername: "localhost" },
    connections: 3,
    pipeline: 4,
    size: 1000,
    count: 600,
  });
  assert.equal(result.tls, true);
  assert.equal(result.received, 600);
  assert.equal(result.sent, 600);
  assert.equal(result.mismatches + result.errors + result.failed, 0);
  assert.equal(result.bytes, 600 * 1000);
  assert.equal(result.latency.count, 600);
  assert.equal(server.stats.bytesIn, result.bytes);
  const stream = await runProbe({
    port: server.addr.port,
    tls: { caCerts: [CERT], servername: "localhost" },
    stream: true,
    duration: 300,
  });
  assert.ok(stream.bytes > 0 && stream.mismatches === 0);
});

Deno.test("probe over TLS: an untrusted certificate is a connection error naming tls", async () => {
  await using server = serveTcpEcho({ port: 0, tls: { cert: CERT, key: KEY } });
  await assert.rejects(
    runProbe({ port: server.addr.port, tls: {}, count: 1, timeout: 2000 }),
    (error: unknown) =>
      error instanceof EchoConnectionError &&
      /^cannot connect to tls 127\.0\.0\.1:/.test(error.message),
  );
});

Deno.test("probe over a Unix socket: same accounting, Unix address in the result", async () => {
  const dir = await Deno.makeTempDir({ prefix: "echo_probe_" });
  try {
    const path = `${dir}/echo.sock`;
    await using server = await serveUnixEcho({ path });
    const reports: ProbeIntervalReport[] = [];
    const result = await runProbe({
      unix: path,
      connections: 2,
      pipeline: 8,
      duration: 400,
      reportInterval: 150,
      onInterval: (r) => reports.push(r),
    });
    assert.deepEqual(result.address, { hostname: "", port: 0, transport: "unix", path });
    assert.equal(result.tls, undefined);
    assert.ok(result.received > 0);
    assert.equal(result.mismatches + result.errors + result.failed, 0);
    assert.equal(result.sent, result.received + result.outstanding);
    assert.equal(result.latency.count, result.received);
    assertIntervalsAddUp(reports, result);
    assert.equal(server.stats.bytesIn, result.sent * result.size);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("probe options: tls and unix are checked like echoTcp's", async () => {
  const { validateProbeOptions } = await import("../probe.ts");
  const bad: [Record<string, unknown>, RegExp][] = [
    [{ unix: "" }, /unix must be a socket path/],
    [{ unix: "/tmp/x.sock", port: 5 }, /leave out hostname and port/],
    [{ unix: "/tmp/x.sock", tls: {} }, /tls is not supported over unix/],
    [{ unix: "/tmp/x.sock", transport: "udp" }, /unix is a stream socket/],
    [{ tls: {}, transport: "udp" }, /tls is TCP only/],
    [{ tls: "yes" }, /tls must be an object/],
    [{ reportInterval: 0, onInterval: () => {} }, /reportInterval must be a finite number above 0/],
    [{ onInterval: 5 }, /onInterval must be a function/],
  ];
  for (const [options, message] of bad) assert.throws(() => validateProbeOptions(options), message);
});
