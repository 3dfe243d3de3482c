/** runProbeWorkers: lanes spread over Web Workers, results and intervals merged exactly. */
import assert from "node:assert/strict";
import { EchoConnectionError } from "../errors.ts";
import { Histogram } from "../histogram.ts";
import { type ProbeIntervalReport, runProbe } from "../probe.ts";
import { runProbeWorkers } from "../probe_workers.ts";
import { serveEcho } from "../serve.ts";
import { INTERVAL_COUNTERS } from "../_probe_interval.ts";

for (const transport of ["tcp", "udp"] as const) {
  Deno.test(`workers (${transport}): count split over 3 workers, every request accounted`, async () => {
    await using server = await serveEcho({ port: 0 });
    const result = await runProbeWorkers(
      { transport, port: server.addr.port, connections: 5, pipeline: 2, count: 3001 },
      { workers: 3 },
    );
    assert.equal(result.received, 3001);
    assert.equal(result.sent, 3001);
    assert.equal(result.connections, 5);
    assert.equal(result.connectionsServed, 5);
    assert.equal(result.pipeline, 2);
    assert.equal(result.latency.count, 3001);
    assert.equal(result.histogram.count, 3001);
    assert.equal(result.bytes, 3001 * result.size);
    assert.equal(result.errors + result.mismatches + result.lost, 0);
  });
}

Deno.test("workers: interval reports merge by index and add up to the result", async () => {
  await using server = await serveEcho({ port: 0 });
  const reports: ProbeIntervalReport[] = [];
  const result = await runProbeWorkers({
    port: server.addr.port,
    connections: 4,
    duration: 900,
    reportInterval: 250,
    onInterval: (r) => reports.push(r),
  }, { workers: 2 });
  assert.ok(reports.length >= 4, `${reports.length} reports`);
  for (const key of INTERVAL_COUNTERS) {
    assert.equal(reports.reduce((t, r) => t + r[key], 0), result[key], `sum of ${key}`);
  }
  const all = new Histogram();
  for (const r of reports) all.merge(r.histogram);
  // Buckets, count, min, max and percentiles exactly; mean and stddev up to rounding.
  assert.deepEqual(all.buckets(), result.histogram.buckets(), "interval histograms add up");
  const [a, b] = [all.summary(), result.histogram.summary()];
  for (const k of ["count", "min", "max", "p50", "p90", "p99", "p999"] as const) {
    assert.equal(a[k], b[k], k);
  }
  assert.ok(Math.abs(a.mean - b.mean) <= 1e-9 * b.mean);
  reports.forEach((r, i) => {
    assert.equal(r.index, i);
    assert.equal(r.final, i === reports.length - 1);
  });
});

Deno.test("workers: the mechanism and its overhead, one worker vs two vs in-process", async () => {
  await using server = await serveEcho({ port: 0 });
  const base = { port: server.addr.port, connections: 8, duration: 800 };
  const inProcess = await runProbe(base);
  const one = await runProbeWorkers(base, { workers: 1 });
  const two = await runProbeWorkers(base, { workers: 2 });
  for (const r of [inProcess, one, two]) assert.ok(r.received > 0 && r.errors === 0);
  console.log(
    `    8 connections, 0.8 s (2 cores shared with the server and other jobs): in-process ${
      inProcess.requestsPerSecond.toFixed(0)
    } req/s, 1 worker ${one.requestsPerSecond.toFixed(0)}, 2 workers ${
      two.requestsPerSecond.toFixed(0)
    }`,
  );
});

Deno.test("workers: bad spreads and hooks that cannot cross are refused; no server rejects", async () => {
  const bad: [Parameters<typeof runProbeWorkers>, RegExp][] = [
    [[{ connections: 2 }, { workers: 3 }], /must not exceed connections/],
    [[{ connections: 4, count: 2 }, { workers: 3 }], /must not exceed count/],
    [[{ connections: 4 }, { workers: 0 }], /workers must be a whole number/],
    [[{ connections: 4, onReply: () => {} }, { workers: 2 }], /onReply cannot cross/],
    [[{ connections: 4, transport: "udp", interval: 10 }, { workers: 2 }], /one schedule/],
  ];
  for (const [args, message] of bad) await assert.rejects(runProbeWorkers(...args), message);
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (listener.addr as Deno.NetAddr).port;
  listener.close();
  await assert.rejects(
    runProbeWorkers({ port, connections: 2, count: 2, timeout: 1000 }, { workers: 2 }),
    EchoConnectionError,
  );
});

Deno.test("workers: an abort ends every worker and resolves with what was measured", async () => {
  await using server = await serveEcho({ port: 0 });
  const controller = new AbortController();
  setTimeout(() => controller.abort(), 400);
  const started = performance.now();
  const result = await runProbeWorkers(
    { port: server.addr.port, connections: 2, signal: controller.signal },
    { workers: 2 },
  );
  assert.ok(performance.now() - started < 10_000);
  assert.equal(result.aborted, true);
  assert.ok(result.received > 0);
});
