/**
 * Fake probe results and interval reports (real histograms of given latencies), for tests of what
 * is printed or written from them; and the accounting every stream lane's result must satisfy.
 *
 * @module
 */
import assert from "node:assert/strict";
import { Histogram } from "../histogram.ts";
import type { ProbeIntervalReport, ProbeResult } from "../probe.ts";

/** A result as runProbe would return it, with latencies (µs) recorded into its histogram. */
export function fakeResult(
  overrides: Partial<ProbeResult> = {},
  latencies: number[] = [],
): ProbeResult {
  const histogram = new Histogram();
  for (const us of latencies) histogram.record(us);
  return {
    transport: "tcp",
    address: { hostname: "127.0.0.1", port: 5006, transport: "tcp" },
    connections: 1,
    size: 64,
    pipeline: 1,
    stream: false,
    aborted: false,
    elapsed: 2000,
    sent: latencies.length,
    received: latencies.length,
    bytes: latencies.length * 64,
    requestsPerSecond: latencies.length / 2,
    bytesPerSecond: (latencies.length * 64) / 2,
    latency: histogram.summary(),
    histogram,
    errors: 0,
    mismatches: 0,
    failed: 0,
    lost: 0,
    late: 0,
    duplicates: 0,
    reordered: 0,
    jitter: 0,
    strays: 0,
    outstanding: 0,
    unsent: 0,
    connectionsServed: 1,
    ...overrides,
  };
}

/** An interval report with these latencies (µs) recorded. */
export function fakeInterval(
  overrides: Partial<ProbeIntervalReport> = {},
  latencies: number[] = [],
): ProbeIntervalReport {
  const histogram = new Histogram();
  for (const us of latencies) histogram.record(us);
  return {
    index: 2,
    final: false,
    start: 2000,
    end: 3000,
    startTime: Date.UTC(2026, 11, 1, 12, 0, 2),
    endTime: Date.UTC(2026, 11, 1, 12, 0, 3),
    sent: latencies.length,
    received: latencies.length,
    bytes: latencies.length * 64,
    requestsPerSecond: latencies.length,
    bytesPerSecond: latencies.length * 64,
    latency: histogram.summary(),
    histogram,
    errors: 0,
    mismatches: 0,
    failed: 0,
    lost: 0,
    late: 0,
    duplicates: 0,
    reordered: 0,
    ...overrides,
  };
}

/**
 * TCP, TLS, Unix, WebSocket: every request sent is answered, mismatched, failed with its
 * connection, or outstanding.
 */
export function assertTcpCounts(r: ProbeResult): void {
  assert.equal(
    r.sent,
    r.received + r.mismatches + r.failed + r.outstanding,
    `sent ${r.sent} != received ${r.received} + mismatches ${r.mismatches} + failed ${r.failed} + outstanding ${r.outstanding}`,
  );
  assert.equal(r.latency.count, r.received);
  assert.equal(r.bytes, r.received * r.size);
}
