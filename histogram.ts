/**
 * A log-bucketed latency histogram with a bounded relative error and constant memory.
 *
 * Values are sorted into buckets whose bounds grow geometrically, so every value in a bucket is
 * within the configured relative error of the bucket's representative value. The bucket array is
 * sized once, from the value range and the error, and never grows: a run of a billion samples
 * uses the same memory as a run of ten. `count`, `min`, `max` are exact; `mean` and `stddev` are
 * computed from the recorded values themselves (not the buckets); percentiles come from the
 * buckets.
 *
 * @example Record round-trip times in microseconds and summarise them
 * ```ts
 * import { Histogram } from "./histogram.ts";
 *
 * const h = new Histogram();
 * for (const us of [812, 790, 1044, 905, 3120]) h.record(us);
 * const s = h.summary();
 * console.log(s.count, s.min, s.p50, s.max); // 5 790 ~905 3120
 * ```
 *
 * @module
 */

/** Options for {@linkcode Histogram}. */
export interface HistogramOptions {
  /**
   * The largest relative error of a percentile, as a fraction: `0.01` means a reported
   * percentile is within 1% of the true value. Must be in (0, 0.5]. Default `0.01`.
   */
  relativeError?: number;
  /**
   * The smallest value tracked with the relative error (exclusive bound of the first regular
   * bucket). Values at or below it share one bottom bucket and are reported as `lowest`
   * (clamped into [min, max]). Must be finite and > 0. Default `1` (1 µs when recording
   * microseconds).
   */
  lowest?: number;
  /**
   * The largest value tracked with the relative error. Values above it share one top bucket and
   * are reported as `highest` (clamped into [min, max]). Must be finite and > `lowest`.
   * Default `3_600_000_000` (one hour in microseconds).
   */
  highest?: number;
}

/** One non-empty bucket from {@linkcode Histogram.prototype.buckets}: values in (low, high]. */
export interface HistogramBucket {
  /** Exclusive lower bound (the bottom bucket is [0, lowest], reported with `low` 0). */
  low: number;
  /** Inclusive upper bound (`Infinity` for the top bucket, which holds values above `highest`). */
  high: number;
  /** How many values were recorded in this bucket. */
  count: number;
}

/**
 * The summary of a histogram, as returned by {@linkcode Histogram.prototype.summary} and
 * `toJSON()`. Every field but `count` is `NaN` for an empty histogram (`null` in JSON).
 */
export interface HistogramSummary {
  /** Number of recorded values (exact). */
  count: number;
  /** Smallest recorded value (exact). */
  min: number;
  /** Arithmetic mean of the recorded values. */
  mean: number;
  /** Population standard deviation of the recorded values (ping's "mdev"). */
  stddev: number;
  /** Largest recorded value (exact). */
  max: number;
  /** 50th percentile (median), within the relative error. */
  p50: number;
  /** 90th percentile, within the relative error. */
  p90: number;
  /** 99th percentile, within the relative error. */
  p99: number;
  /** 99.9th percentile, within the relative error. */
  p999: number;
}

/** The `format` tag of a {@linkcode HistogramSnapshot}. */
export const HISTOGRAM_SNAPSHOT_FORMAT = "echo-histogram/1";

/**
 * A lossless, JSON-safe form of a {@linkcode Histogram}, from
 * {@linkcode Histogram.prototype.toSnapshot}; {@linkcode Histogram.fromSnapshot} rebuilds the same
 * histogram (same buckets, count, min, max, mean and stddev, so the same percentiles).
 *
 * The bucket scheme is the one {@linkcode Histogram} documents, fixed by `relativeError`, `lowest`
 * and `highest`: with e = relativeError · (1 − 1e-9) and γ = (1 + e) / (1 − e), there are
 * n = max(1, ⌈ln(highest / lowest) / ln γ⌉) regular buckets; bucket 0 holds [0, lowest], bucket
 * i (1 ≤ i ≤ n) holds (lowest·γ^(i−1), lowest·γ^i], bucket n + 1 holds values above `highest`.
 * `counts` lists the non-empty buckets only, as `[index, count]` pairs in increasing index order.
 *
 * @example
 * ```ts
 * import type { HistogramSnapshot } from "./histogram.ts";
 *
 * const snapshot: HistogramSnapshot = {
 *   format: "echo-histogram/1",
 *   relativeError: 0.01,
 *   lowest: 1,
 *   highest: 3_600_000_000,
 *   count: 2,
 *   min: 100,
 *   max: 200,
 *   sum: 300,
 *   mean: 150,
 *   m2: 5000,
 *   counts: [[231, 1], [265, 1]],
 * };
 * console.log(snapshot.count);
 * ```
 */
export interface HistogramSnapshot {
  /** Always {@linkcode HISTOGRAM_SNAPSHOT_FORMAT}. */
  format: typeof HISTOGRAM_SNAPSHOT_FORMAT;
  /** The relative error the buckets were built for. */
  relativeError: number;
  /** The lower bound of the accurately tracked range. */
  lowest: number;
  /** The upper bound of the accurately tracked range. */
  highest: number;
  /** Number of recorded values. */
  count: number;
  /** Smallest recorded value; `null` when empty. */
  min: number | null;
  /** Largest recorded value; `null` when empty. */
  max: number | null;
  /** Sum of the recorded values (count · mean), for readers that want it. */
  sum: number;
  /** Running mean of the recorded values (exactly as kept, so stddev survives a round trip). */
  mean: number;
  /** Sum of squared deviations from the mean (Welford's M2); stddev = √(m2 / count). */
  m2: number;
  /** The non-empty buckets: `[index, count]`, increasing index. */
  counts: [number, number][];
}

const DEFAULT_RELATIVE_ERROR = 0.01;
const DEFAULT_LOWEST = 1;
const DEFAULT_HIGHEST = 3_600_000_000;
/** Refuse configurations that would allocate absurd bucket arrays. */
const MAX_BUCKETS = 1 << 20;
/**
 * The buckets are built for a hair less than the requested error, so that floating-point
 * rounding at a bucket edge can never push a result past the promised bound.
 */
const ERROR_MARGIN = 1 - 1e-9;

/**
 * A log-bucketed latency histogram: bounded relative error, constant memory, deterministic.
 *
 * Bucket `i` (1 ≤ i ≤ n) holds values in (lowest·γ^(i-1), lowest·γ^i] with
 * γ = (1 + e) / (1 - e); its representative value 2·lowest·γ^i / (γ + 1) is within e of every
 * value in it. Bucket 0 holds [0, lowest]; bucket n + 1 holds values above `highest`.
 *
 * Percentiles use the nearest-rank definition: `percentile(p)` estimates the value of rank
 * max(1, ⌈p·count/100⌉) in the sorted values. The estimate is within the relative error of that
 * value when it lies in [lowest, highest], and is always clamped into [min, max]; ranks 1 and
 * `count` (so `p = 0` and `p = 100`) return `min` and `max` exactly.
 *
 * `record()` does no allocation and has no data-dependent loops, so it is safe in a hot loop.
 *
 * @example Percentiles of recorded latencies
 * ```ts
 * import { Histogram } from "./histogram.ts";
 *
 * const h = new Histogram({ relativeError: 0.01 });
 * for (let us = 1; us <= 1000; us++) h.record(us);
 * const p99 = h.percentile(99); // true value 990
 * console.log(Math.abs(p99 - 990) <= 990 * 0.01); // true
 * ```
 */
export class Histogram {
  /** The relative error this histogram was built for. */
  readonly relativeError: number;
  /** The lower bound of the accurately tracked range. */
  readonly lowest: number;
  /** The upper bound of the accurately tracked range. */
  readonly highest: number;

  #gamma: number;
  #invLogGamma: number;
  /** Index of the last regular bucket; the top (overflow) bucket is `#n + 1`. */
  #n: number;
  #counts: Float64Array;
  #count = 0;
  #min = Infinity;
  #max = -Infinity;
  #mean = 0;
  /** Sum of squared deviations from the mean (Welford). */
  #m2 = 0;

  /**
   * Create an empty histogram.
   *
   * @param options The relative error and value range; see {@linkcode HistogramOptions}.
   * @throws {RangeError} When an option is out of range or the range would need too many buckets.
   *
   * @example A histogram for values in milliseconds, 0.01 ms to 60 s, with 0.5% error
   * ```ts
   * import { Histogram } from "./histogram.ts";
   *
   * const h = new Histogram({ relativeError: 0.005, lowest: 0.01, highest: 60_000 });
   * console.log(h.bucketCount > 0); // true
   * ```
   */
  constructor(options: HistogramOptions = {}) {
    const relativeError = options.relativeError ?? DEFAULT_RELATIVE_ERROR;
    const lowest = options.lowest ?? DEFAULT_LOWEST;
    const highest = options.highest ?? DEFAULT_HIGHEST;
    if (typeof relativeError !== "number" || !(relativeError > 0 && relativeError <= 0.5)) {
      throw new RangeError(`Histogram relativeError must be in (0, 0.5], got ${relativeError}`);
    }
    if (typeof lowest !== "number" || !(lowest > 0) || !Number.isFinite(lowest)) {
      throw new RangeError(`Histogram lowest must be a finite number > 0, got ${lowest}`);
    }
    if (typeof highest !== "number" || !(highest > lowest) || !Number.isFinite(highest)) {
      throw new RangeError(
        `Histogram highest must be a finite number > lowest (${lowest}), got ${highest}`,
      );
    }
    const e = relativeError * ERROR_MARGIN;
    const gamma = (1 + e) / (1 - e);
    const invLogGamma = 1 / Math.log(gamma);
    const n = Math.max(1, Math.ceil(Math.log(highest / lowest) * invLogGamma));
    if (n + 2 > MAX_BUCKETS) {
      throw new RangeError(
        `Histogram range ${lowest}..${highest} with relativeError ${relativeError} needs ${
          n + 2
        } buckets (max ${MAX_BUCKETS})`,
      );
    }
    this.relativeError = relativeError;
    this.lowest = lowest;
    this.highest = highest;
    this.#gamma = gamma;
    this.#invLogGamma = invLogGamma;
    this.#n = n;
    this.#counts = new Float64Array(n + 2);
  }

  /**
   * The number of buckets, fixed at construction (memory does not grow with the values recorded).
   *
   * @example
   * ```ts
   * import { Histogram } from "./histogram.ts";
   *
   * const h = new Histogram();
   * const before = h.bucketCount;
   * for (let i = 1; i <= 10_000; i++) h.record(i * 37);
   * console.log(h.bucketCount === before); // true
   * ```
   */
  get bucketCount(): number {
    return this.#counts.length;
  }

  /**
   * Record `value`, `count` times. No allocation.
   *
   * @param value A finite number >= 0 (e.g. a latency in microseconds).
   * @param count How many times to record it: an integer >= 0 (default 1; 0 records nothing).
   * @throws {RangeError} When `value` is negative, NaN or infinite, or `count` is not a
   * non-negative safe integer.
   *
   * @example
   * ```ts
   * import { Histogram } from "./histogram.ts";
   *
   * const h = new Histogram();
   * h.record(250);
   * h.record(300, 4);
   * console.log(h.count); // 5
   * ```
   */
  record(value: number, count = 1): void {
    if (!(value >= 0 && value !== Infinity)) {
      throw new RangeError(`Histogram value must be a finite number >= 0, got ${value}`);
    }
    if (!(count >= 0) || !Number.isSafeInteger(count)) {
      throw new RangeError(`Histogram count must be a safe integer >= 0, got ${count}`);
    }
    if (count === 0) return;
    this.#counts[this.#index(value)] += count;
    const total = this.#count + count;
    const delta = value - this.#mean;
    this.#mean += (delta * count) / total;
    this.#m2 += delta * (value - this.#mean) * count;
    this.#count = total;
    if (value < this.#min) this.#min = value;
    if (value > this.#max) this.#max = value;
  }

  /** Number of recorded values (exact). */
  get count(): number {
    return this.#count;
  }

  /** Smallest recorded value (exact); `NaN` when empty. */
  get min(): number {
    return this.#count === 0 ? NaN : this.#min;
  }

  /** Largest recorded value (exact); `NaN` when empty. */
  get max(): number {
    return this.#count === 0 ? NaN : this.#max;
  }

  /** Arithmetic mean of the recorded values; `NaN` when empty. */
  get mean(): number {
    return this.#count === 0 ? NaN : this.#mean;
  }

  /** Population standard deviation of the recorded values (ping's "mdev"); `NaN` when empty. */
  get stddev(): number {
    return this.#count === 0 ? NaN : Math.sqrt(Math.max(0, this.#m2) / this.#count);
  }

  /**
   * Estimate the `p`th percentile (nearest rank), within the relative error, clamped into
   * [min, max]. `NaN` when empty.
   *
   * @param p The percentile, 0..100 (0 gives `min`, 100 gives `max`).
   * @throws {RangeError} When `p` is outside 0..100 or NaN.
   *
   * @example
   * ```ts
   * import { Histogram } from "./histogram.ts";
   *
   * const h = new Histogram();
   * for (const v of [10, 20, 30, 40]) h.record(v);
   * console.log(h.percentile(0), h.percentile(100)); // 10 40
   * ```
   */
  percentile(p: number): number {
    if (typeof p !== "number" || !(p >= 0 && p <= 100)) {
      throw new RangeError(`Histogram percentile must be in 0..100, got ${p}`);
    }
    const total = this.#count;
    if (total === 0) return NaN;
    const rank = Math.max(1, Math.ceil((p * total) / 100));
    if (rank <= 1) return this.#min;
    if (rank >= total) return this.#max;
    const counts = this.#counts;
    let seen = 0;
    let i = 0;
    for (; i < counts.length; i++) {
      seen += counts[i];
      if (seen >= rank) break;
    }
    const estimate = this.#representative(i);
    return estimate < this.#min ? this.#min : estimate > this.#max ? this.#max : estimate;
  }

  /**
   * Add every value recorded in `other` to this histogram. Counts, min, max, buckets and
   * percentiles come out exactly as if all values had been recorded here; mean and stddev are
   * combined with Chan's formula and agree up to floating-point rounding.
   *
   * @param other A histogram with the same relativeError, lowest and highest.
   * @throws {RangeError} When the two histograms were configured differently.
   *
   * @example Merge per-connection histograms into a total
   * ```ts
   * import { Histogram } from "./histogram.ts";
   *
   * const a = new Histogram();
   * const b = new Histogram();
   * a.record(100);
   * b.record(200);
   * a.merge(b);
   * console.log(a.count, a.min, a.max); // 2 100 200
   * ```
   */
  merge(other: Histogram): void {
    if (!(other instanceof Histogram)) {
      throw new TypeError("Histogram.merge expects a Histogram");
    }
    if (
      other.relativeError !== this.relativeError || other.lowest !== this.lowest ||
      other.highest !== this.highest
    ) {
      throw new RangeError(
        `Histogram.merge needs the same configuration: relativeError ${this.relativeError} vs ${other.relativeError}, lowest ${this.lowest} vs ${other.lowest}, highest ${this.highest} vs ${other.highest}`,
      );
    }
    const nb = other.#count;
    if (nb === 0) return;
    const na = this.#count;
    const total = na + nb;
    const delta = other.#mean - this.#mean;
    const m2 = this.#m2 + other.#m2 + (delta * delta * na * nb) / total;
    const mean = this.#mean + (delta * nb) / total;
    const src = other.#counts;
    const dst = this.#counts;
    for (let i = 0; i < dst.length; i++) dst[i] += src[i];
    if (other.#min < this.#min) this.#min = other.#min;
    if (other.#max > this.#max) this.#max = other.#max;
    this.#count = total;
    this.#mean = mean;
    this.#m2 = m2;
  }

  /**
   * Forget every recorded value; the configuration and the bucket array are kept.
   *
   * @example
   * ```ts
   * import { Histogram } from "./histogram.ts";
   *
   * const h = new Histogram();
   * h.record(5);
   * h.reset();
   * console.log(h.count); // 0
   * ```
   */
  reset(): void {
    this.#counts.fill(0);
    this.#count = 0;
    this.#min = Infinity;
    this.#max = -Infinity;
    this.#mean = 0;
    this.#m2 = 0;
  }

  /**
   * The non-empty buckets in increasing order of value, for drawing a distribution. Each holds
   * the values in (low, high]; the bottom bucket is [0, lowest] and the top bucket
   * (highest, Infinity]. The last regular bucket's `high` is capped at `highest`.
   *
   * @example Draw a text histogram
   * ```ts
   * import { Histogram } from "./histogram.ts";
   *
   * const h = new Histogram({ relativeError: 0.1 });
   * for (const v of [100, 101, 102, 500]) h.record(v);
   * for (const b of h.buckets()) {
   *   console.log(`${b.low.toFixed(1)}..${b.high.toFixed(1)} ${"#".repeat(b.count)}`);
   * }
   * ```
   */
  buckets(): HistogramBucket[] {
    const out: HistogramBucket[] = [];
    const counts = this.#counts;
    const top = this.#n + 1;
    for (let i = 0; i < counts.length; i++) {
      const count = counts[i];
      if (count === 0) continue;
      let low: number;
      let high: number;
      if (i === 0) {
        low = 0;
        high = this.lowest;
      } else if (i === top) {
        low = this.highest;
        high = Infinity;
      } else {
        low = this.lowest * Math.pow(this.#gamma, i - 1);
        high = i === this.#n ? this.highest : this.lowest * Math.pow(this.#gamma, i);
      }
      out.push({ low, high, count });
    }
    return out;
  }

  /**
   * Count, min, mean, stddev, max and the p50/p90/p99/p99.9 percentiles in one object.
   *
   * @example
   * ```ts
   * import { Histogram } from "./histogram.ts";
   *
   * const h = new Histogram();
   * h.record(1000, 3);
   * console.log(h.summary()); // { count: 3, min: 1000, mean: 1000, stddev: 0, max: 1000, ... }
   * ```
   */
  summary(): HistogramSummary {
    return {
      count: this.count,
      min: this.min,
      mean: this.mean,
      stddev: this.stddev,
      max: this.max,
      p50: this.percentile(50),
      p90: this.percentile(90),
      p99: this.percentile(99),
      p999: this.percentile(99.9),
    };
  }

  /**
   * The {@linkcode Histogram.prototype.summary}, so `JSON.stringify(histogram)` prints it.
   *
   * @example
   * ```ts
   * import { Histogram } from "./histogram.ts";
   *
   * const h = new Histogram();
   * h.record(42);
   * console.log(JSON.stringify(h)); // {"count":1,"min":42,...}
   * ```
   */
  toJSON(): HistogramSummary {
    return this.summary();
  }

  /**
   * A lossless, JSON-safe copy of this histogram (see {@linkcode HistogramSnapshot}): the bucket
   * scheme's parameters, the non-empty buckets, and the exact count, min, max, mean and M2.
   *
   * @returns The snapshot.
   *
   * @example Send a histogram to another process and rebuild it there
   * ```ts
   * import { Histogram } from "./histogram.ts";
   *
   * const h = new Histogram();
   * for (const us of [120, 130, 5000]) h.record(us);
   * const copy = Histogram.fromSnapshot(JSON.parse(JSON.stringify(h.toSnapshot())));
   * console.log(copy.percentile(50) === h.percentile(50)); // true
   * ```
   */
  toSnapshot(): HistogramSnapshot {
    const counts: [number, number][] = [];
    const c = this.#counts;
    for (let i = 0; i < c.length; i++) if (c[i] !== 0) counts.push([i, c[i]]);
    const empty = this.#count === 0;
    return {
      format: HISTOGRAM_SNAPSHOT_FORMAT,
      relativeError: this.relativeError,
      lowest: this.lowest,
      highest: this.highest,
      count: this.#count,
      min: empty ? null : this.#min,
      max: empty ? null : this.#max,
      sum: this.#mean * this.#count,
      mean: this.#mean,
      m2: this.#m2,
      counts,
    };
  }

  /**
   * Rebuilds a histogram from {@linkcode Histogram.prototype.toSnapshot}'s output (for example
   * parsed from a JSON file), checking that it is consistent.
   *
   * @param snapshot The snapshot.
   * @returns A histogram equal to the one the snapshot was taken of.
   * @throws {TypeError} When `snapshot` is not a histogram snapshot (wrong format or field types).
   * @throws {RangeError} When its fields contradict each other (bucket counts that do not add up
   * to `count`, an index outside the scheme, min above max).
   *
   * @example
   * ```ts
   * import { Histogram } from "./histogram.ts";
   *
   * const h = new Histogram();
   * h.record(42, 3);
   * console.log(Histogram.fromSnapshot(h.toSnapshot()).count); // 3
   * ```
   */
  static fromSnapshot(snapshot: HistogramSnapshot): Histogram {
    if (typeof snapshot !== "object" || snapshot === null) {
      throw new TypeError(`a histogram snapshot must be an object, got ${snapshot}`);
    }
    if (snapshot.format !== HISTOGRAM_SNAPSHOT_FORMAT) {
      throw new TypeError(
        `histogram snapshot format must be ${JSON.stringify(HISTOGRAM_SNAPSHOT_FORMAT)}, got ${
          JSON.stringify(snapshot.format)
        }`,
      );
    }
    const h = new Histogram({
      relativeError: snapshot.relativeError,
      lowest: snapshot.lowest,
      highest: snapshot.highest,
    });
    const { count, min, max, mean, m2, counts } = snapshot;
    if (!Number.isSafeInteger(count) || count < 0) {
      throw new RangeError(`histogram snapshot count must be a safe integer >= 0, got ${count}`);
    }
    if (!Array.isArray(counts)) throw new TypeError("histogram snapshot counts must be an array");
    let total = 0;
    let last = -1;
    for (const pair of counts) {
      const [i, n] = Array.isArray(pair) ? pair : [NaN, NaN];
      if (!Number.isInteger(i) || i <= last || i >= h.#counts.length) {
        throw new RangeError(`histogram snapshot bucket index ${i} is out of order or range`);
      }
      if (!Number.isSafeInteger(n) || n <= 0) {
        throw new RangeError(`histogram snapshot bucket ${i} has count ${n}`);
      }
      h.#counts[i] = n;
      total += n;
      last = i;
    }
    if (total !== count) {
      throw new RangeError(`histogram snapshot buckets hold ${total} values, count says ${count}`);
    }
    if (count === 0) return h;
    if (
      typeof min !== "number" || typeof max !== "number" || !(min >= 0) || !(max >= min) ||
      typeof mean !== "number" || typeof m2 !== "number" || !Number.isFinite(mean) ||
      !Number.isFinite(m2)
    ) {
      throw new RangeError("histogram snapshot min, max, mean or m2 is missing or inconsistent");
    }
    h.#count = count;
    h.#min = min;
    h.#max = max;
    h.#mean = mean;
    h.#m2 = m2;
    return h;
  }

  /**
   * Calls `fn(value, count)` for every non-empty bucket, in increasing order, with the bucket's
   * representative value (within the relative error of every value in it) clamped into
   * [min, max]: a way to export the distribution to another histogram format.
   *
   * @param fn Called once per non-empty bucket.
   *
   * @example
   * ```ts
   * import { Histogram } from "./histogram.ts";
   *
   * const h = new Histogram();
   * h.record(100, 2);
   * h.forEachValue((value, count) => console.log(value, count)); // 100 2
   * ```
   */
  forEachValue(fn: (value: number, count: number) => void): void {
    const c = this.#counts;
    for (let i = 0; i < c.length; i++) {
      if (c[i] === 0) continue;
      const v = this.#representative(i);
      fn(v < this.#min ? this.#min : v > this.#max ? this.#max : v, c[i]);
    }
  }

  #index(value: number): number {
    if (value <= this.lowest) return 0;
    if (value > this.highest) return this.#n + 1;
    const i = Math.ceil(Math.log(value / this.lowest) * this.#invLogGamma);
    return i < 1 ? 1 : i > this.#n ? this.#n : i;
  }

  #representative(i: number): number {
    if (i === 0) return this.lowest;
    if (i > this.#n) return this.highest;
    return (2 * this.lowest * Math.pow(this.#gamma, i)) / (this.#gamma + 1);
  }
}
