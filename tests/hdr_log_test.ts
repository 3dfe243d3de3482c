/**
 * The HdrHistogram interval log is checked by the reference reader: hdr-histogram-js decodes every
 * line, and its counts and percentiles match ours.
 */
import assert from "node:assert/strict";
import { Buffer } from "node:buffer";
// The reference decoder, pinned in deno.json's "imports" (test-only: no module file imports it).
import * as hdr from "hdr-histogram-js";
import { encodeHdrHistogram, formatHdrLogHeader, formatHdrLogInterval } from "../hdr_log.ts";
import { Histogram } from "../histogram.ts";
import { runProbe } from "../probe.ts";
import { serveEcho } from "../serve.ts";
import { Random } from "../_random.ts";

const PERCENTILES = [1, 10, 50, 90, 99, 99.9];

/** HdrHistogram's value at p is within 0.1% (+1 µs rounding) of our estimate, and ours of truth. */
function assertSamePercentiles(decoded: hdr.Histogram, ours: Histogram, label: string): void {
  assert.equal(decoded.totalCount, ours.count, `${label}: total count`);
  for (const p of PERCENTILES) {
    const theirs = decoded.getValueAtPercentile(p);
    const mine = ours.percentile(p);
    assert.ok(
      Math.abs(theirs - mine) <= mine * 0.002 + 1,
      `${label}: p${p} HdrHistogram ${theirs} vs ours ${mine}`,
    );
  }
}

Deno.test("hdr: the compressed V2 encoding decodes to the same counts and percentiles", () => {
  const random = new Random(7);
  const h = new Histogram();
  const raw: number[] = [];
  for (let i = 0; i < 50_000; i++) {
    const v = Math.round(30 * Math.exp(3 * random.next()) * 10) / 10; // 30 µs .. 600 µs, skewed
    raw.push(v);
    h.record(v);
  }
  h.record(2_500_000, 3); // a few 2.5 s outliers: large bucket indices
  h.record(0); // zero sits in HdrHistogram's first bucket
  const text = encodeHdrHistogram(h);
  const bytes = Buffer.from(text, "base64");
  assert.equal(new DataView(bytes.buffer, bytes.byteOffset).getInt32(0), 0x1c849314, "cookie");
  const decoded = hdr.decodeFromCompressedBase64(text);
  assertSamePercentiles(decoded, h, "synthetic");
  assert.ok(Math.abs(decoded.maxValue - 2_500_000) <= 2_500_000 * 0.001 + 1);
  assert.equal(decoded.minNonZeroValue <= 31, true);
  // Against the raw samples too: HdrHistogram's median is within 1.2% of the true one.
  const sorted = raw.toSorted((a, b) => a - b);
  const median = sorted[Math.ceil(sorted.length * 0.5) - 1];
  assert.ok(Math.abs(decoded.getValueAtPercentile(50) - median) <= median * 0.012 + 1);
  const empty = hdr.decodeFromCompressedBase64(encodeHdrHistogram(new Histogram()));
  assert.equal(empty.totalCount, 0);
});

Deno.test("hdr: a probe run's interval log is read back by HistogramLogReader", async () => {
  await using server = await serveEcho({ port: 0 });
  const startTime = Date.now();
  let log = formatHdrLogHeader(startTime);
  const copies: Histogram[] = [];
  const starts: number[] = [];
  const result = await runProbe({
    port: server.addr.port,
    connections: 2,
    duration: 700,
    reportInterval: 200,
    onInterval: (r) => {
      log += formatHdrLogInterval(r.histogram, r, startTime);
      const copy = new Histogram();
      copy.merge(r.histogram);
      copies.push(copy);
      starts.push(r.startTime);
    },
  });
  assert.match(log, /^#\[Histogram log format version 1\.3\]\n#\[StartTime: \d+\.\d{3} /);
  assert.match(
    log,
    /\n"StartTimestamp","Interval_Length","Interval_Max","Interval_Compressed_Histogram"\n/,
  );
  const reader = new hdr.HistogramLogReader(log);
  const total = hdr.build();
  let n = 0;
  for (let decoded; (decoded = reader.nextIntervalHistogram()) !== null; n++) {
    assertSamePercentiles(decoded, copies[n], `interval ${n}`);
    // Timestamps to the millisecond (the log keeps three decimals of seconds).
    assert.ok(Math.abs(decoded.startTimeStampMsec - starts[n]) <= 1, `interval ${n} start`);
    total.add(decoded);
  }
  assert.equal(n, copies.length);
  assert.ok(n >= 4, `${n} intervals`);
  assert.equal(total.totalCount, result.received, "the log holds every measured reply");
  assertSamePercentiles(total, result.histogram, "whole run");
});
