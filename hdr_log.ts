/**
 * HdrHistogram interval logs (format v1.3), the files HdrHistogram's own tools read
 * (`HistogramLogProcessor`, HdrHistogram's plotter, `hdr-histogram-js`'s `HistogramLogReader`):
 * comment headers, a legend, then one line per interval with its start (s), length (s), max and
 * the interval's histogram, compressed and base64-encoded.
 *
 * The histogram encoding is HdrHistogram's compressed V2 form: the cookie `0x1c849314`
 * (`0x1c849304 | 0x10`), the length of what follows, then the zlib-deflated V2 encoding — a
 * big-endian header (cookie `0x1c849313`, payload length, normalizing index offset 0, significant
 * digits, lowest and highest trackable value, integer-to-double ratio 1.0) and the counts as
 * ZigZag LEB128 numbers, a run of empty buckets written as one negative number.
 *
 * Values are microseconds, recorded into HdrHistogram's layout with 3 significant digits from a
 * {@linkcode Histogram}: each non-empty bucket's representative value (within the histogram's
 * relative error, 1% by default, of every sample in it), rounded to a whole microsecond, with the
 * bucket's count. `Interval_Max` is in milliseconds (the max in µs divided by 1,000).
 *
 * @example Write an interval log from a probe run's interval reports
 * ```ts
 * import { formatHdrLogHeader, formatHdrLogInterval, runProbe, serveEcho } from "./mod.ts";
 *
 * await using server = await serveEcho({ port: 0 });
 * const startTime = Date.now();
 * let log = formatHdrLogHeader(startTime);
 * await runProbe({
 *   port: server.addr.port,
 *   duration: 300,
 *   reportInterval: 100,
 *   onInterval: (r) => {
 *     log += formatHdrLogInterval(r.histogram, { startTime: r.startTime, endTime: r.endTime }, startTime);
 *   },
 * });
 * console.log(log.split("\n").length > 4); // true
 * ```
 *
 * @module
 */
import { Buffer } from "node:buffer";
import { deflateSync } from "node:zlib";
import type { Histogram } from "./histogram.ts";

/** V2 encoding cookie with the LEB128 word-size marker (HdrHistogram's `V2EncodingCookieBase | 0x10`). */
const V2_COOKIE = 0x1c849303 | 0x10;
/** The compressed V2 cookie (`V2CompressedEncodingCookieBase | 0x10`). */
const V2_COMPRESSED_COOKIE = 0x1c849304 | 0x10;
/** Bytes of the uncompressed V2 header. */
const V2_HEADER_SIZE = 40;
/** Significant decimal digits of the HdrHistogram layout (0.1% resolution). */
const SIGNIFICANT_DIGITS = 3;
/** The default highest trackable value: one hour in microseconds. */
const DEFAULT_HIGHEST = 3_600_000_000;

// The HdrHistogram layout for lowest discernible value 1 and SIGNIFICANT_DIGITS.
const SUB_BUCKET_COUNT_MAGNITUDE = Math.ceil(Math.log2(2 * 10 ** SIGNIFICANT_DIGITS));
const SUB_BUCKET_HALF_COUNT_MAGNITUDE = SUB_BUCKET_COUNT_MAGNITUDE - 1;
const SUB_BUCKET_HALF_COUNT = 2 ** SUB_BUCKET_HALF_COUNT_MAGNITUDE;
const SUB_BUCKET_MASK = 2 ** SUB_BUCKET_COUNT_MAGNITUDE - 1;
const LEADING_ZERO_COUNT_BASE = 64 - SUB_BUCKET_HALF_COUNT_MAGNITUDE - 1;

/** Number of bits needed for a non-negative integer below 2^53. */
function bitLength(v: number): number {
  return v < 0x1_0000_0000 ? 32 - Math.clz32(v) : 64 - Math.clz32(Math.floor(v / 0x1_0000_0000));
}

/** HdrHistogram's counts-array index of integer value `v` (lowest discernible value 1). */
function countsIndex(v: number): number {
  const bucket = LEADING_ZERO_COUNT_BASE - (64 - bitLength(Math.max(v, SUB_BUCKET_MASK)));
  const subBucket = Math.floor(v / 2 ** bucket);
  return ((bucket + 1) << SUB_BUCKET_HALF_COUNT_MAGNITUDE) + (subBucket - SUB_BUCKET_HALF_COUNT);
}

/** Appends `value` (an integer, |value| < 2^52) ZigZag LEB128-encoded. */
function putZigZag(out: number[], value: number): void {
  let z = value >= 0 ? value * 2 : -value * 2 - 1;
  while (z >= 0x80) {
    out.push((z % 0x80) | 0x80);
    z = Math.floor(z / 0x80);
  }
  out.push(z);
}

/**
 * Encodes a histogram of microseconds as HdrHistogram's compressed V2 form, base64: the text
 * `Histogram.decodeFromCompressedBase64` (Java) and `decodeFromCompressedBase64`
 * (hdr-histogram-js) read.
 *
 * @example
 * ```ts
 * import { encodeHdrHistogram, Histogram } from "./mod.ts";
 *
 * const h = new Histogram();
 * h.record(150, 10);
 * console.log(encodeHdrHistogram(h).startsWith("HISTF")); // true
 * ```
 *
 * @param histogram Latencies in microseconds.
 * @returns The base64 text.
 */
export function encodeHdrHistogram(histogram: Histogram): string {
  // Sparse (index, count) pairs in increasing index order; our buckets map to increasing values.
  const indices: number[] = [];
  const counts: number[] = [];
  let max = 0;
  histogram.forEachValue((value, count) => {
    const v = Math.round(value);
    const i = countsIndex(v);
    if (indices.length > 0 && indices[indices.length - 1] === i) counts[counts.length - 1] += count;
    else {
      indices.push(i);
      counts.push(count);
    }
    if (v > max) max = v;
  });
  const payload: number[] = [];
  let next = 0;
  for (let k = 0; k < indices.length; k++) {
    const zeros = indices[k] - next;
    if (zeros === 1) putZigZag(payload, 0);
    else if (zeros > 1) putZigZag(payload, -zeros);
    putZigZag(payload, counts[k]);
    next = indices[k] + 1;
  }
  const raw = new Uint8Array(V2_HEADER_SIZE + payload.length);
  const view = new DataView(raw.buffer);
  view.setInt32(0, V2_COOKIE);
  view.setInt32(4, payload.length);
  view.setInt32(8, 0); // normalizing index offset
  view.setInt32(12, SIGNIFICANT_DIGITS);
  view.setBigInt64(16, 1n); // lowest discernible value
  view.setBigInt64(24, BigInt(Math.max(DEFAULT_HIGHEST, 2 * max)));
  view.setFloat64(32, 1.0); // integer to double value conversion ratio
  raw.set(payload, V2_HEADER_SIZE);
  const compressed = deflateSync(raw);
  const out = new Uint8Array(8 + compressed.length);
  const outView = new DataView(out.buffer);
  outView.setInt32(0, V2_COMPRESSED_COOKIE);
  outView.setInt32(4, compressed.length);
  out.set(compressed, 8);
  return Buffer.from(out).toString("base64");
}

/**
 * The header of an interval log: format version, start time (seconds since the epoch, and as a
 * date), base time (interval timestamps are relative to it) and the legend.
 *
 * @example
 * ```ts
 * import { formatHdrLogHeader } from "./mod.ts";
 *
 * console.log(formatHdrLogHeader(Date.UTC(2026, 11, 1)));
 * // #[Histogram log format version 1.3]
 * // #[StartTime: 1796083200.000 (seconds since epoch), Tue, 01 Dec 2026 00:00:00 GMT]
 * // ...
 * ```
 *
 * @param startTime When the run started, Unix epoch ms.
 * @returns The header lines, each ending in a newline.
 */
export function formatHdrLogHeader(startTime: number): string {
  const seconds = (startTime / 1000).toFixed(3);
  return "#[Histogram log format version 1.3]\n" +
    `#[StartTime: ${seconds} (seconds since epoch), ${new Date(startTime).toUTCString()}]\n` +
    `#[BaseTime: ${seconds} (seconds since epoch)]\n` +
    "#[Values are microseconds; Interval_Max is in milliseconds]\n" +
    '"StartTimestamp","Interval_Length","Interval_Max","Interval_Compressed_Histogram"\n';
}

/** When an interval ran, Unix epoch ms (as in a probe's interval report). */
export interface HdrLogInterval {
  /** Start of the interval, Unix epoch ms. */
  startTime: number;
  /** End of the interval, Unix epoch ms. */
  endTime: number;
}

/**
 * One interval line: start (seconds after `baseTime`), length (s), max (ms) and the histogram.
 *
 * @example
 * ```ts
 * import { formatHdrLogInterval, Histogram } from "./mod.ts";
 *
 * const h = new Histogram();
 * h.record(1500, 3);
 * const line = formatHdrLogInterval(h, { startTime: 2_000, endTime: 3_000 }, 1_000);
 * console.log(line.split(",").slice(0, 3).join(",")); // 1.000,1.000,1.500
 * ```
 *
 * @param histogram The interval's latencies, microseconds.
 * @param interval When the interval ran.
 * @param baseTime The log's base time (the header's), Unix epoch ms.
 * @returns The line, ending in a newline.
 */
export function formatHdrLogInterval(
  histogram: Histogram,
  interval: HdrLogInterval,
  baseTime: number,
): string {
  const start = ((interval.startTime - baseTime) / 1000).toFixed(3);
  const length = ((interval.endTime - interval.startTime) / 1000).toFixed(3);
  const max = histogram.count > 0 ? (histogram.max / 1000).toFixed(3) : "0.000";
  return `${start},${length},${max},${encodeHdrHistogram(histogram)}\n`;
}
