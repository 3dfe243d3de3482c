import assert from "node:assert/strict";
import { Histogram, type HistogramSnapshot } from "../histogram.ts";
import { runProbe } from "../probe.ts";
import {
  mergeProbeResults,
  parseProbeResultRecord,
  PROBE_RESULT_SCHEMA,
  ProbeMergeError,
  type ProbeResultRecord,
  probeResultToRecord,
} from "../probe_result.ts";
import { serveEcho } from "../serve.ts";
import { Random } from "../_random.ts";

/** Latency-like samples (µs): log-normal around `median`, seeded. */
function samples(seed: number, n: number, median: number, spread: number): number[] {
  const random = new Random(seed);
  const out: number[] = [];
  for (let i = 0; i < n; i++) {
    // Box-Muller from two uniforms in (0, 1].
    const u = 1 - random.next();
    const v = random.next();
    const z = Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * v);
    out.push(Math.round(median * Math.exp(spread * z) * 1000) / 1000);
  }
  return out;
}

/** A record as a run would have produced it, with these latencies. */
function recordOf(values: number[], extra: Partial<ProbeResultRecord> = {}): ProbeResultRecord {
  const h = new Histogram();
  for (const v of values) h.record(v);
  return {
    schema: PROBE_RESULT_SCHEMA,
    mode: "bench",
    transport: "tcp",
    address: { hostname: "127.0.0.1", port: 5006, transport: "tcp" },
    connections: 4,
    size: 64,
    pipeline: 1,
    stream: false,
    aborted: false,
    elapsed: 1000 + values.length % 7,
    sent: values.length + 1,
    received: values.length,
    bytes: values.length * 64,
    errors: 1,
    mismatches: 0,
    failed: 0,
    lost: 0,
    late: 0,
    duplicates: 0,
    reordered: 0,
    jitter: 0,
    strays: 0,
    outstanding: 1,
    unsent: 0,
    connectionsServed: 4,
    histogram: h.toSnapshot(),
    ...extra,
  };
}

const PERCENTILES = [0, 1, 10, 25, 50, 75, 90, 99, 99.9, 100];

Deno.test("histogram snapshot: a JSON round trip gives the same histogram", () => {
  const h = new Histogram();
  for (const v of samples(1, 20_000, 800, 0.6)) h.record(v);
  h.record(0);
  h.record(5e9); // above highest: the top bucket
  const copy = Histogram.fromSnapshot(JSON.parse(JSON.stringify(h.toSnapshot())));
  assert.deepEqual(copy.summary(), h.summary());
  assert.deepEqual(copy.buckets(), h.buckets());
  for (const p of PERCENTILES) assert.equal(copy.percentile(p), h.percentile(p), `p${p}`);
  const empty = Histogram.fromSnapshot(new Histogram().toSnapshot());
  assert.equal(empty.count, 0);
  assert.ok(Number.isNaN(empty.min));
});

Deno.test("histogram snapshot: inconsistent snapshots are refused", () => {
  const h = new Histogram();
  h.record(100, 3);
  const good = h.toSnapshot();
  const bad: [Partial<HistogramSnapshot> | Record<string, unknown>, RegExp][] = [
    [{ format: "other" as "echo-histogram/1" }, /format/],
    [{ count: 4 }, /hold 3 values, count says 4/],
    [{ counts: [[99_999_999, 3]] }, /out of order or range/],
    [{ counts: [[231, -3]] }, /count -3/],
    [{ min: 200 }, /inconsistent/],
    [{ relativeError: 2 }, /relativeError/],
  ];
  for (const [patch, message] of bad) {
    assert.throws(
      () => Histogram.fromSnapshot({ ...good, ...patch } as HistogramSnapshot),
      message,
    );
  }
});

Deno.test("merge: percentiles equal one histogram of all samples, and the sorted reference within 1%", () => {
  const parts = [
    samples(2, 30_000, 120, 0.3), // a fast machine
    samples(3, 12_000, 900, 0.8), // a slow one
    samples(4, 5_001, 40, 1.5), // a wide one
  ];
  const records = parts.map((p) => JSON.parse(JSON.stringify(recordOf(p))));
  const merged = mergeProbeResults(records, { names: ["a.json", "b.json", "c.json"] });
  const all = parts.flat();
  const single = new Histogram();
  for (const v of all) single.record(v);
  const sorted = all.toSorted((a, b) => a - b);
  const lines: string[] = [];
  for (const p of PERCENTILES) {
    const got = merged.histogram.percentile(p);
    assert.equal(got, single.percentile(p), `p${p} equals the single histogram's`);
    const rank = Math.max(1, Math.ceil((p / 100) * sorted.length));
    const truth = sorted[rank - 1];
    assert.ok(Math.abs(got - truth) <= truth * 0.01, `p${p}: ${got} vs true ${truth}`);
    lines.push(`p${p} ${got.toFixed(1)}/${truth.toFixed(1)}`);
  }
  console.log(`    merged vs sorted reference (µs): ${lines.join(", ")}`);
  assert.equal(merged.received, all.length);
  assert.equal(merged.latency.count, all.length);
  assert.equal(merged.sent, all.length + 3);
  assert.equal(merged.errors, 3);
  assert.equal(merged.connections, 12);
  assert.equal(merged.bytes, all.length * 64);
  assert.equal(merged.elapsed, Math.max(...records.map((r) => r.elapsed)));
  assert.equal(merged.requestsPerSecond, all.length / (merged.elapsed / 1000));
  assert.equal(merged.latency.min, sorted[0]);
  assert.equal(merged.latency.max, sorted.at(-1));
  const mean = all.reduce((a, b) => a + b, 0) / all.length;
  assert.ok(Math.abs(merged.latency.mean - mean) < 1e-6 * mean);
});

Deno.test("merge: two real runs, through JSON, add up", async () => {
  await using server = await serveEcho({ port: 0 });
  const runs = await Promise.all(
    [30, 50].map((count) => runProbe({ port: server.addr.port, connections: 2, count })),
  );
  const texts = runs.map((r) => JSON.stringify(probeResultToRecord(r, { mode: "bench" })));
  const records = texts.map((t, i) => parseProbeResultRecord(t, `run${i}.json`));
  const merged = mergeProbeResults(records);
  assert.equal(merged.received, 80);
  assert.equal(merged.histogram.count, 80);
  assert.equal(merged.sent, runs[0].sent + runs[1].sent);
  const both = new Histogram();
  both.merge(runs[0].histogram);
  both.merge(runs[1].histogram);
  assert.deepEqual(merged.latency, both.summary());
});

Deno.test("merge refuses other schemas, sizes, transports, modes and truncated files, naming the input", () => {
  const a = recordOf([100, 200]);
  const cases: [unknown, RegExp][] = [
    [{ ...a, schema: 2 }, /^b\.json: schema 2, this version reads schema 1$/],
    [{ ...a, size: 1024 }, /^b\.json: size 1024 differs from a\.json's 64/],
    [{ ...a, transport: "udp" }, /^b\.json: transport "udp" differs/],
    [{ ...a, mode: "ping" }, /^b\.json: mode "ping" differs/],
    [{ ...a, stream: true }, /^b\.json: stream true differs/],
    [{ ...a, histogram: { ...a.histogram, count: 5 } }, /^b\.json: histogram snapshot buckets/],
    [{ latency: {} }, /^b\.json: not a probe result with a histogram/],
  ];
  for (const [b, message] of cases) {
    assert.throws(
      () => mergeProbeResults([a, b], { names: ["a.json", "b.json"] }),
      (error: unknown) =>
        error instanceof ProbeMergeError && error.input === "b.json" && message.test(error.message),
      String(message),
    );
  }
  const text = JSON.stringify(a);
  assert.throws(
    () => parseProbeResultRecord(text.slice(0, text.length / 2), "cut.json"),
    (error: unknown) =>
      error instanceof ProbeMergeError && error.input === "cut.json" &&
      /^cut\.json: not complete JSON \(truncated\?\)/.test(error.message),
  );
  assert.throws(() => mergeProbeResults([]), RangeError);
  // A run's newline-delimited output (interval lines, then the result) cut in its last line.
  const ndjson = `{"type":"interval"}\n{"type":"interval"}\n${JSON.stringify({ result: a })}\n`;
  assert.throws(
    () => parseProbeResultRecord(ndjson.slice(0, -40), "cut.ndjson"),
    (error: unknown) => error instanceof ProbeMergeError && error.input === "cut.ndjson",
  );
});

Deno.test("parse: a record alone, nested in a CLI object's result, or last of NDJSON lines", () => {
  const a = recordOf([100, 200, 300]);
  const texts = [
    JSON.stringify(a),
    JSON.stringify({ schema: 1, mode: "bench", rps: 5, result: a }),
    `{"type":"interval","index":0}\n{"type":"interval","index":1}\n${
      JSON.stringify({ rps: 5, result: a })
    }\n`,
  ];
  for (const text of texts) {
    assert.deepEqual(parseProbeResultRecord(text, "x.json"), a);
  }
});

Deno.test("record: a TLS run keeps tls, so a TLS run and a plain one refuse to merge", async () => {
  const cert = await Deno.readTextFile(new URL("./fixtures/tls_cert.pem", import.meta.url));
  const key = await Deno.readTextFile(new URL("./fixtures/tls_key.pem", import.meta.url));
  await using server = await serveEcho({ port: 0, transport: "tcp", tls: { cert, key } });
  const result = await runProbe({ port: server.addr.port, count: 5, tls: { caCerts: [cert] } });
  const record = JSON.parse(JSON.stringify(probeResultToRecord(result)));
  assert.equal(record.tls, true);
  assert.equal(mergeProbeResults([record, record]).tls, true);
  const { tls: _, ...plain } = record;
  assert.throws(
    () => mergeProbeResults([record, plain], { names: ["tls.json", "tcp.json"] }),
    (error: unknown) => error instanceof ProbeMergeError && /^tcp\.json: tls/.test(error.message),
  );
});
