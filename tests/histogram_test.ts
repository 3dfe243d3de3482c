import assert from "node:assert/strict";
import { Histogram } from "../histogram.ts";

/** mulberry32: a small seeded generator, so every run sees the same data. */
function rng(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (s + 0x6d2b79f5) | 0;
    let t = Math.imul(s ^ (s >>> 15), 1 | s);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** Standard normal by Box-Muller, from a uniform source. */
function normal(u: () => number): number {
  const a = 1 - u(); // (0, 1]
  return Math.sqrt(-2 * Math.log(a)) * Math.cos(2 * Math.PI * u());
}

/** Nearest-rank percentile of sorted values: the definition Histogram documents. */
function nearestRank(sorted: number[], p: number): number {
  const rank = Math.max(1, Math.ceil((p * sorted.length) / 100));
  return sorted[rank - 1];
}

const N = 20_000;
const distributions: Record<string, (u: () => number) => number> = {
  uniform: (u) => 1 + u() * 9_999,
  logNormal: (u) => Math.exp(Math.log(1_000) + 0.8 * normal(u)),
  constant: () => 777,
  bimodal: (u) => u() < 0.7 ? Math.max(1, 200 + 10 * normal(u)) : 5_000 + 200 * normal(u),
  // sub-microsecond steps on top of a large base: many values per bucket
  narrow: (u) => 123_456 + u(),
};
const PERCENTILES = [0, 0.1, 1, 10, 25, 50, 75, 90, 95, 99, 99.9, 99.99, 100];

for (const relativeError of [0.01, 0.001, 0.05]) {
  for (const [name, draw] of Object.entries(distributions)) {
    Deno.test(`percentiles of ${name} data stay within ${relativeError} relative error`, () => {
      const u = rng(0xc0ffee);
      const h = new Histogram({ relativeError });
      const values: number[] = [];
      for (let i = 0; i < N; i++) {
        const v = draw(u);
        values.push(v);
        h.record(v);
      }
      values.sort((a, b) => a - b);
      assert.equal(h.count, N);
      assert.equal(h.min, values[0]);
      assert.equal(h.max, values[N - 1]);
      for (const p of PERCENTILES) {
        const truth = nearestRank(values, p);
        const got = h.percentile(p);
        assert.ok(
          Math.abs(got - truth) <= truth * relativeError,
          `${name} p${p}: got ${got}, true ${truth}, error ${Math.abs(got - truth) / truth}`,
        );
        assert.ok(got >= h.min && got <= h.max, `${name} p${p}: ${got} outside [min, max]`);
      }
    });
  }
}

Deno.test("percentile covers every rank of a small sample within the error", () => {
  // Every value 1..1000 and every integer percentile: exercises each rank boundary.
  const h = new Histogram();
  const values: number[] = [];
  for (let v = 1; v <= 1000; v++) {
    values.push(v * 1.37);
    h.record(v * 1.37);
  }
  for (let p = 0; p <= 100; p += 0.5) {
    const truth = nearestRank(values, p);
    const got = h.percentile(p);
    assert.ok(Math.abs(got - truth) <= truth * 0.01, `p${p}: got ${got}, true ${truth}`);
  }
  assert.equal(h.percentile(0), 1.37);
  assert.equal(h.percentile(100), 1370);
});

Deno.test("mean and population stddev match a direct computation", () => {
  const u = rng(42);
  const h = new Histogram();
  const values: number[] = [];
  for (let i = 0; i < 5_000; i++) {
    const v = distributions.logNormal(u);
    values.push(v);
    h.record(v);
  }
  const mean = values.reduce((a, b) => a + b, 0) / values.length;
  const variance = values.reduce((a, v) => a + (v - mean) ** 2, 0) / values.length;
  assert.ok(Math.abs(h.mean - mean) <= mean * 1e-12, `mean ${h.mean} vs ${mean}`);
  assert.ok(
    Math.abs(h.stddev - Math.sqrt(variance)) <= Math.sqrt(variance) * 1e-9,
    `stddev ${h.stddev} vs ${Math.sqrt(variance)}`,
  );
});

Deno.test("stddev of 2,4,4,4,5,5,7,9 is 2 (population) and constant data has stddev 0", () => {
  const h = new Histogram();
  for (const v of [2, 4, 4, 4, 5, 5, 7, 9]) h.record(v);
  assert.equal(h.mean, 5);
  assert.equal(h.stddev, 2);
  const c = new Histogram();
  c.record(1_000_000.25, 1_000);
  for (let i = 0; i < 1000; i++) c.record(1_000_000.25);
  assert.equal(c.stddev, 0);
  assert.equal(c.mean, 1_000_000.25);
  assert.equal(c.count, 2_000);
});

Deno.test("record(value, count) equals recording the value count times", () => {
  const a = new Histogram();
  const b = new Histogram();
  a.record(10, 3);
  a.record(20, 2);
  a.record(30, 0);
  for (const v of [10, 10, 10, 20, 20]) b.record(v);
  assert.deepEqual(a.buckets(), b.buckets());
  assert.deepEqual(a.summary(), b.summary());
});

Deno.test("merge equals recording everything in one histogram", () => {
  const u = rng(7);
  const whole = new Histogram();
  const parts = [new Histogram(), new Histogram(), new Histogram()];
  for (let i = 0; i < 30_000; i++) {
    const v = i % 3 === 2 ? distributions.bimodal(u) : distributions.logNormal(u);
    whole.record(v);
    parts[i % 3].record(v);
  }
  const merged = new Histogram();
  for (const part of parts) merged.merge(part);
  merged.merge(new Histogram()); // merging an empty one changes nothing
  assert.equal(merged.count, whole.count);
  assert.equal(merged.min, whole.min);
  assert.equal(merged.max, whole.max);
  assert.deepEqual(merged.buckets(), whole.buckets());
  for (const p of PERCENTILES) assert.equal(merged.percentile(p), whole.percentile(p));
  // mean and stddev are combined with Chan's formula: equal up to rounding
  assert.ok(Math.abs(merged.mean - whole.mean) <= whole.mean * 1e-12);
  assert.ok(Math.abs(merged.stddev - whole.stddev) <= whole.stddev * 1e-9);
});

Deno.test("merging a histogram into itself doubles every count", () => {
  const h = new Histogram();
  for (const v of [5, 50, 500]) h.record(v);
  h.merge(h);
  assert.equal(h.count, 6);
  assert.deepEqual(h.buckets().map((b) => b.count), [2, 2, 2]);
  assert.equal(h.min, 5);
  assert.equal(h.max, 500);
});

Deno.test("merge refuses a differently configured histogram", () => {
  const h = new Histogram();
  assert.throws(() => h.merge(new Histogram({ relativeError: 0.02 })), RangeError);
  assert.throws(() => h.merge(new Histogram({ highest: 1e6 })), RangeError);
  assert.throws(() => h.merge({} as Histogram), TypeError);
});

Deno.test("identical inputs give identical results (deterministic)", () => {
  const run = () => {
    const u = rng(99);
    const h = new Histogram();
    for (let i = 0; i < 10_000; i++) h.record(distributions.bimodal(u));
    return JSON.stringify({ s: h.summary(), b: h.buckets() });
  };
  assert.equal(run(), run());
});

Deno.test("memory is constant: the bucket array does not grow with the values recorded", () => {
  const h = new Histogram();
  const fixed = h.bucketCount;
  // log(3.6e9) / log(1.01 / 0.99) ~= 1096 regular buckets, plus bottom and top
  assert.ok(fixed > 1_000 && fixed < 1_200, `bucketCount ${fixed}`);
  const u = rng(1);
  for (let i = 0; i < 200_000; i++) h.record(u() * 4e9); // every bucket, including the top
  assert.equal(h.bucketCount, fixed);
  assert.ok(h.buckets().length <= fixed);
  assert.equal(h.buckets().reduce((a, b) => a + b.count, 0), 200_000);
  h.reset();
  assert.equal(h.bucketCount, fixed);
});

Deno.test("values outside the range: bottom and top buckets, exact min and max", () => {
  const h = new Histogram({ lowest: 10, highest: 1_000 });
  h.record(0);
  h.record(3);
  h.record(10);
  h.record(500);
  h.record(5_000);
  h.record(1e12);
  assert.equal(h.count, 6);
  assert.equal(h.min, 0);
  assert.equal(h.max, 1e12);
  const b = h.buckets();
  assert.deepEqual(b[0], { low: 0, high: 10, count: 3 });
  assert.deepEqual(b[b.length - 1], { low: 1_000, high: Infinity, count: 2 });
  assert.equal(b.length, 3);
  assert.ok(b[1].low < 500 && 500 <= b[1].high);
  // below the range the estimate is `lowest`, above it `highest`, then clamped into [min, max]
  assert.equal(h.percentile(20), 10);
  assert.equal(h.percentile(80), 1_000);
  assert.equal(h.percentile(0), 0);
  assert.equal(h.percentile(100), 1e12);
  const only = new Histogram({ lowest: 10 });
  only.record(2);
  only.record(3);
  only.record(4);
  assert.equal(only.percentile(50), 4); // `lowest` (10) clamped to max
});

Deno.test("buckets are ordered, contiguous where adjacent, and hold their values", () => {
  const h = new Histogram({ relativeError: 0.05 });
  const values = [1.5, 2, 3, 7, 7.2, 100, 101, 1e4, 3.5e9];
  for (const v of values) h.record(v);
  const b = h.buckets();
  for (let i = 1; i < b.length; i++) assert.ok(b[i - 1].high <= b[i].low);
  for (const v of values) {
    assert.ok(b.some((x) => x.low < v && v <= x.high), `${v} in no bucket`);
  }
  assert.equal(b[b.length - 1].high, 3.6e9); // last regular bucket capped at `highest`
});

Deno.test("empty histogram: count 0, NaN statistics, no buckets; reset empties", () => {
  const h = new Histogram();
  assert.equal(h.count, 0);
  assert.ok(Number.isNaN(h.min) && Number.isNaN(h.max));
  assert.ok(Number.isNaN(h.mean) && Number.isNaN(h.stddev));
  assert.ok(Number.isNaN(h.percentile(50)));
  assert.deepEqual(h.buckets(), []);
  assert.equal(
    JSON.stringify(h),
    '{"count":0,"min":null,"mean":null,"stddev":null,"max":null,"p50":null,"p90":null,"p99":null,"p999":null}',
  );
  h.record(3);
  h.reset();
  assert.equal(h.count, 0);
  assert.deepEqual(h.buckets(), []);
  h.record(8);
  assert.deepEqual([h.min, h.max, h.mean], [8, 8, 8]);
});

Deno.test("summary and toJSON report count, min, mean, stddev, max and p50..p999", () => {
  const h = new Histogram();
  for (let v = 1; v <= 10_000; v++) h.record(v);
  const s = h.summary();
  assert.deepEqual(Object.keys(s), [
    "count",
    "min",
    "mean",
    "stddev",
    "max",
    "p50",
    "p90",
    "p99",
    "p999",
  ]);
  assert.equal(s.count, 10_000);
  assert.equal(s.min, 1);
  assert.equal(s.max, 10_000);
  assert.equal(s.mean, 5_000.5);
  for (const [key, truth] of [["p50", 5_000], ["p90", 9_000], ["p99", 9_900], ["p999", 9_990]]) {
    const got = s[key as "p50"];
    assert.ok(Math.abs(got - (truth as number)) <= (truth as number) * 0.01, `${key} ${got}`);
  }
  assert.deepEqual(JSON.parse(JSON.stringify(h)), s);
});

Deno.test("invalid options throw RangeError", () => {
  for (
    const options of [
      { relativeError: 0 },
      { relativeError: -0.01 },
      { relativeError: 0.6 },
      { relativeError: NaN },
      { lowest: 0 },
      { lowest: -1 },
      { lowest: Infinity },
      { highest: 1 },
      { lowest: 10, highest: 5 },
      { highest: Infinity },
      { highest: NaN },
      { relativeError: 1e-7, lowest: 1e-300, highest: 1e300 }, // too many buckets
    ]
  ) {
    assert.throws(() => new Histogram(options), RangeError, JSON.stringify(options));
  }
});

Deno.test("invalid values, counts and percentiles throw RangeError and record nothing", () => {
  const h = new Histogram();
  for (const v of [-1, -0.001, NaN, Infinity, -Infinity]) {
    assert.throws(() => h.record(v), RangeError, String(v));
  }
  for (const c of [-1, 1.5, NaN, Infinity]) {
    assert.throws(() => h.record(1, c), RangeError, String(c));
  }
  for (const p of [-1, 100.01, NaN]) {
    assert.throws(() => h.percentile(p), RangeError, String(p));
  }
  assert.equal(h.count, 0);
  assert.throws(() => h.record(-5), /got -5/);
});
