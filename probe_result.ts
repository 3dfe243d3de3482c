/**
 * Probe results that travel and merge: {@linkcode probeResultToRecord} turns a
 * {@linkcode ProbeResult} into a lossless JSON record (every counter and the full latency
 * histogram, see {@linkcode ProbeResultRecord}), {@linkcode parseProbeResultRecord} reads one back
 * from a file's text, and {@linkcode mergeProbeResults} combines runs from several processes or
 * machines into one result whose percentiles are those of all their samples together — exactly
 * what one histogram fed with every sample would give, since histograms with one bucket scheme
 * add bucket by bucket (percentiles themselves cannot be averaged).
 *
 * @example Merge two runs against one server
 * ```ts
 * import { mergeProbeResults, probeResultToRecord, runProbe, serveEcho } from "./mod.ts";
 *
 * await using server = await serveEcho({ port: 0 });
 * const runs = await Promise.all([1, 2].map(() => runProbe({ port: server.addr.port, count: 50 })));
 * const records = runs.map((r) => JSON.parse(JSON.stringify(probeResultToRecord(r))));
 * const merged = mergeProbeResults(records, { names: ["a.json", "b.json"] });
 * console.log(merged.received, merged.latency.p99); // 100 ...
 * ```
 *
 * @module
 */
import { EchoError } from "./errors.ts";
import { Histogram, type HistogramSnapshot } from "./histogram.ts";
import { INTERVAL_COUNTERS } from "./_probe_interval.ts";
import type { ProbeResult } from "./_probe_types.ts";

/** The `schema` of a {@linkcode ProbeResultRecord}; bumped when a field changes meaning. */
export const PROBE_RESULT_SCHEMA = 1;

/**
 * A {@linkcode ProbeResult} as plain JSON, without loss: the counters as the run counted them,
 * `pipeline` `null` for no limit, and the latency histogram (microseconds) as a
 * {@linkcode HistogramSnapshot} instead of a summary. Rates and the latency summary are left out:
 * they follow from the rest.
 *
 * @example
 * ```ts
 * import { probeResultToRecord, type ProbeResultRecord, runProbe, serveEcho } from "./mod.ts";
 *
 * await using server = await serveEcho({ port: 0 });
 * const record: ProbeResultRecord = probeResultToRecord(
 *   await runProbe({ port: server.addr.port, count: 10 }),
 * );
 * console.log(record.schema, record.received, record.histogram.count); // 1 10 10
 * ```
 */
export interface ProbeResultRecord extends
  Omit<
    ProbeResult,
    "pipeline" | "histogram" | "latency" | "requestsPerSecond" | "bytesPerSecond"
  > {
  /** Always {@linkcode PROBE_RESULT_SCHEMA}. */
  schema: typeof PROBE_RESULT_SCHEMA;
  /** What the caller ran (`ping` or `bench` for the CLI), if it said; merged runs must agree. */
  mode?: string;
  /** Requests in flight per connection at most; `null` for no limit. */
  pipeline: number | null;
  /** The latency histogram, microseconds, lossless. */
  histogram: HistogramSnapshot;
}

/** The counters a merge adds up. */
const SUMMED = [
  ...INTERVAL_COUNTERS,
  "connections",
  "strays",
  "outstanding",
  "unsent",
  "connectionsServed",
] as const;

/**
 * A result that cannot be read or merged: its input is named, so a CLI can say which file.
 *
 * @example
 * ```ts
 * import { ProbeMergeError, parseProbeResultRecord } from "./mod.ts";
 *
 * try {
 *   parseProbeResultRecord('{"schema":1,"transport":"tc', "run-a.json");
 * } catch (error) {
 *   if (error instanceof ProbeMergeError) console.log(error.input, error.message);
 * }
 * ```
 */
export class ProbeMergeError extends EchoError {
  /** The input concerned: its name as given, or `#N` (from 1) without names. */
  readonly input: string;

  /**
   * Creates an error.
   *
   * @param input The input's name.
   * @param message What is wrong with it, starting with the name.
   * @param cause The error behind it, if any.
   */
  constructor(input: string, message: string, cause?: unknown) {
    super(message, cause === undefined ? {} : { cause });
    this.name = "ProbeMergeError";
    this.input = input;
  }
}

/**
 * Turns a result into its lossless JSON record.
 *
 * @example
 * ```ts
 * import { probeResultToRecord, runProbe, serveEcho } from "./mod.ts";
 *
 * await using server = await serveEcho({ port: 0 });
 * const result = await runProbe({ port: server.addr.port, count: 5 });
 * console.log(JSON.stringify(probeResultToRecord(result, { mode: "bench" })).length > 0);
 * ```
 *
 * @param result The result of {@linkcode runProbe}.
 * @param options `mode`: what was run (checked on merge).
 * @returns The record, ready for `JSON.stringify`.
 */
export function probeResultToRecord(
  result: ProbeResult,
  options: { mode?: string } = {},
): ProbeResultRecord {
  return {
    schema: PROBE_RESULT_SCHEMA,
    ...(options.mode === undefined ? {} : { mode: options.mode }),
    transport: result.transport,
    address: { ...result.address },
    connections: result.connections,
    size: result.size,
    pipeline: Number.isFinite(result.pipeline) ? result.pipeline : null,
    stream: result.stream,
    aborted: result.aborted,
    elapsed: result.elapsed,
    sent: result.sent,
    received: result.received,
    bytes: result.bytes,
    errors: result.errors,
    mismatches: result.mismatches,
    failed: result.failed,
    lost: result.lost,
    late: result.late,
    duplicates: result.duplicates,
    reordered: result.reordered,
    jitter: result.jitter,
    strays: result.strays,
    outstanding: result.outstanding,
    unsent: result.unsent,
    connectionsServed: result.connectionsServed,
    ...(result.tls ? { tls: true } : {}),
    ...(result.url !== undefined ? { url: result.url } : {}),
    histogram: result.histogram.toSnapshot(),
  };
}

/**
 * Parses one record from a file's text: a record, or the output of a run with interval reports
 * (newline-delimited JSON, the result last), where the record may also sit in a `result` field of
 * the last object (so a CLI can print its own summary fields beside it).
 *
 * @example
 * ```ts
 * import { parseProbeResultRecord, ProbeMergeError } from "./mod.ts";
 *
 * try {
 *   parseProbeResultRecord("{}", "empty.json");
 * } catch (error) {
 *   console.log((error as ProbeMergeError).message); // empty.json: not a probe result ...
 * }
 * ```
 *
 * @param text The JSON text (one object, or newline-delimited objects: the last one counts).
 * @param name The input's name, for errors.
 * @returns The checked record.
 * @throws {ProbeMergeError} When the text is not complete JSON (e.g. a truncated file) or not a
 * probe result of schema {@linkcode PROBE_RESULT_SCHEMA}.
 */
export function parseProbeResultRecord(text: string, name: string): ProbeResultRecord {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (whole) {
    // Newline-delimited objects: the result is the last line. A truncated last line still fails.
    const lines = text.trimEnd().split("\n");
    try {
      if (lines.length < 2) throw whole;
      value = JSON.parse(lines[lines.length - 1]);
    } catch (error) {
      throw new ProbeMergeError(
        name,
        `${name}: not complete JSON (truncated?): ${(error as Error).message}`,
        error,
      );
    }
  }
  const nested = (value as { result?: unknown } | null)?.result;
  if (typeof value === "object" && value !== null && !("histogram" in value) && nested) {
    value = nested;
  }
  return checkRecord(value, name);
}

/** Checks one record's shape and schema; returns it typed. */
function checkRecord(value: unknown, name: string): ProbeResultRecord {
  if (typeof value !== "object" || value === null || Array.isArray(value)) {
    throw new ProbeMergeError(name, `${name}: not a probe result (expected a JSON object)`);
  }
  const r = value as Record<string, unknown>;
  if (!("schema" in r) || !("histogram" in r)) {
    throw new ProbeMergeError(
      name,
      `${name}: not a probe result with a histogram (no schema or histogram field)`,
    );
  }
  if (r.schema !== PROBE_RESULT_SCHEMA) {
    throw new ProbeMergeError(
      name,
      `${name}: schema ${
        JSON.stringify(r.schema)
      }, this version reads schema ${PROBE_RESULT_SCHEMA}`,
    );
  }
  for (const key of [...SUMMED, "size", "elapsed", "jitter"] as const) {
    const n = r[key];
    if (typeof n !== "number" || !Number.isFinite(n) || n < 0) {
      throw new ProbeMergeError(name, `${name}: ${key} must be a number >= 0, got ${n}`);
    }
  }
  if (r.transport !== "tcp" && r.transport !== "udp" && r.transport !== "ws") {
    throw new ProbeMergeError(name, `${name}: transport must be tcp, udp or ws`);
  }
  if (r.url !== undefined && typeof r.url !== "string") {
    throw new ProbeMergeError(name, `${name}: url must be a string`);
  }
  if (typeof r.stream !== "boolean" || typeof r.aborted !== "boolean") {
    throw new ProbeMergeError(name, `${name}: stream and aborted must be booleans`);
  }
  try {
    Histogram.fromSnapshot(r.histogram as HistogramSnapshot);
  } catch (error) {
    throw new ProbeMergeError(name, `${name}: ${(error as Error).message}`, error);
  }
  return r as unknown as ProbeResultRecord;
}

/** Options of {@linkcode mergeProbeResults}. */
export interface MergeProbeOptions {
  /** The inputs' names (e.g. file names), for errors; default `#1`, `#2`, … */
  names?: readonly string[];
}

/**
 * Combines the records of several runs (processes or machines that loaded one server at the same
 * time) into one result:
 * - counters (requests, bytes, errors, loss, duplicates, connections, …) are summed;
 * - histograms are added bucket by bucket, so every percentile equals that of one histogram fed
 *   all the samples (within the histogram's relative error, 1% by default, of the true value);
 * - `elapsed` is the longest run's (the runs are taken as parallel), so `requestsPerSecond` is
 *   the total received over that span: the load all generators drove together;
 * - `jitter` is averaged weighted by received replies; `aborted` is true if any run was;
 *   `address`, `url` and `pipeline` are the first run's. A WebSocket run is transport `ws`, with
 *   `tls` for `wss:`, so ws and wss runs do not merge, as tcp and tls runs do not.
 *
 * @example
 * ```ts
 * import { mergeProbeResults, probeResultToRecord, runProbe, serveEcho } from "./mod.ts";
 *
 * await using server = await serveEcho({ port: 0 });
 * const a = probeResultToRecord(await runProbe({ port: server.addr.port, count: 20 }));
 * const b = probeResultToRecord(await runProbe({ port: server.addr.port, count: 30 }));
 * console.log(mergeProbeResults([a, b]).received); // 50
 * ```
 *
 * @param records Parsed records ({@linkcode ProbeResultRecord}, e.g. from
 * {@linkcode parseProbeResultRecord}), at least one.
 * @param options Names of the inputs, for errors.
 * @returns The merged result, histogram included.
 * @throws {ProbeMergeError} Naming the input, when one is not a record of this schema, or when
 * runs differ in transport, size, stream mode, mode, TLS or histogram scheme.
 * @throws {RangeError} When `records` is empty.
 */
export function mergeProbeResults(
  records: readonly unknown[],
  options: MergeProbeOptions = {},
): ProbeResult {
  if (!Array.isArray(records) || records.length === 0) {
    throw new RangeError("mergeProbeResults needs at least one result");
  }
  const nameOf = (i: number) => options.names?.[i] ?? `#${i + 1}`;
  const checked = records.map((r, i) => checkRecord(r, nameOf(i)));
  const first = checked[0];
  const histogram = Histogram.fromSnapshot(first.histogram);
  const totals: Record<(typeof SUMMED)[number], number> = Object.fromEntries(
    SUMMED.map((k) => [k, 0]),
  ) as Record<(typeof SUMMED)[number], number>;
  let elapsed = 0;
  let aborted = false;
  let jitterSum = 0;
  let jitterWeight = 0;
  for (const [i, r] of checked.entries()) {
    const name = nameOf(i);
    for (const key of ["transport", "size", "stream", "mode", "tls"] as const) {
      if (r[key] !== first[key]) {
        throw new ProbeMergeError(
          name,
          `${name}: ${key} ${JSON.stringify(r[key])} differs from ${nameOf(0)}'s ${
            JSON.stringify(first[key])
          }: only runs of one kind merge`,
        );
      }
    }
    if (i > 0) {
      try {
        histogram.merge(Histogram.fromSnapshot(r.histogram));
      } catch (error) {
        throw new ProbeMergeError(name, `${name}: ${(error as Error).message}`, error);
      }
    }
    for (const key of SUMMED) totals[key] += r[key];
    elapsed = Math.max(elapsed, r.elapsed);
    aborted ||= r.aborted;
    if (r.received > 0) {
      jitterSum += r.jitter * r.received;
      jitterWeight += r.received;
    }
  }
  const seconds = elapsed / 1000;
  return {
    transport: first.transport,
    address: { ...first.address },
    size: first.size,
    pipeline: first.pipeline ?? Infinity,
    stream: first.stream,
    aborted,
    elapsed,
    ...totals,
    requestsPerSecond: seconds > 0 ? totals.received / seconds : 0,
    bytesPerSecond: seconds > 0 ? totals.bytes / seconds : 0,
    latency: histogram.summary(),
    histogram,
    jitter: jitterWeight > 0 ? jitterSum / jitterWeight : 0,
    ...(first.tls ? { tls: true } : {}),
    ...(first.url !== undefined ? { url: first.url } : {}),
  };
}
