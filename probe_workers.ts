/**
 * {@linkcode runProbeWorkers}: one probe spread over several Web Workers, so that the load a
 * client drives is not capped by one JavaScript thread. Each worker runs its share of the
 * connections (and of `count` and `rate`) with {@linkcode runProbe}; their results travel as
 * lossless records and are combined by {@linkcode mergeProbeResults} — counters summed, histograms
 * added bucket by bucket, so the percentiles are exactly those of one histogram of every sample.
 * Interval reports are merged by interval index the same way.
 *
 * Cost: a worker is a whole V8 isolate (some 10–20 MB and a few tens of ms to start), and each
 * interval report crosses threads as a histogram snapshot. It pays when there are more cores
 * than the server under test uses; on a 2-core machine running the server too it mostly adds
 * contention.
 *
 * @example
 * ```ts
 * import { runProbeWorkers, serveEcho } from "./mod.ts";
 *
 * await using server = await serveEcho({ port: 0 });
 * const result = await runProbeWorkers(
 *   { port: server.addr.port, connections: 4, count: 200 },
 *   { workers: 2 },
 * );
 * console.log(result.received, result.connectionsServed); // 200 4
 * ```
 *
 * @module
 */
import { EchoConnectionError, type EchoError, EchoTimeoutError } from "./errors.ts";
import { Histogram, type HistogramSnapshot } from "./histogram.ts";
import { validateProbeOptions } from "./probe.ts";
import { mergeProbeResults, type ProbeResultRecord } from "./probe_result.ts";
import { INTERVAL_COUNTERS } from "./_probe_interval.ts";
import type {
  ProbeIntervalReport,
  ProbeOptions,
  ProbeResult,
  ProbeWorkerRequest,
} from "./_probe_types.ts";

const ENTRY = new URL("./_probe_worker_entry.ts", import.meta.url);

/** How to spread a probe; see {@linkcode runProbeWorkers}. */
export interface ProbeWorkersOptions {
  /** Web Workers to use, 1 to 64, at most `connections` (and `count`, when given). */
  workers: number;
}

/** An interval report as it crosses from a worker: the histogram as a snapshot. */
type CrossedReport = Omit<ProbeIntervalReport, "histogram"> & { histogram: HistogramSnapshot };

/** What a worker posts. */
type WorkerMessage =
  | { type: "interval"; report: CrossedReport }
  | { type: "result"; record: ProbeResultRecord }
  | { type: "error"; name: string; message: string; address?: EchoError["address"] };

/** `total` split into `n` near-equal whole shares, larger ones first. */
function split(total: number, n: number): number[] {
  return Array.from({ length: n }, (_, i) => Math.floor(total / n) + (i < total % n ? 1 : 0));
}

/** A worker's error, rebuilt on this side with its class and address. */
function rebuild(message: Extract<WorkerMessage, { type: "error" }>): Error {
  const options = message.address ? { address: message.address } : {};
  if (message.name === "EchoTimeoutError") return new EchoTimeoutError(message.message, options);
  if (message.name === "EchoConnectionError") {
    return new EchoConnectionError(message.message, options);
  }
  if (message.name === "TypeError") return new TypeError(message.message);
  if (message.name === "RangeError") return new RangeError(message.message);
  const error = new Error(message.message);
  error.name = message.name;
  return error;
}

/**
 * Runs a probe over `workers` Web Workers and merges their results exactly (see the module
 * documentation). Takes the options of {@linkcode runProbe} except the per-reply hooks
 * (`onReply`, `onProgress`, `onError`, which would cost a message per event) and `interval`
 * (one ping schedule cannot be shared); `onInterval` works, with reports merged across workers by
 * interval index. `connections`, `count` and `rate` are totals, split between the workers.
 *
 * @example Spread a one-second benchmark over two workers
 * ```ts
 * import { runProbeWorkers, serveEcho } from "./mod.ts";
 *
 * await using server = await serveEcho({ port: 0 });
 * const result = await runProbeWorkers(
 *   { port: server.addr.port, connections: 8, duration: 1000 },
 *   { workers: 2 },
 * );
 * console.log(result.requestsPerSecond, result.latency.p99);
 * ```
 *
 * @param options What to measure, as for {@linkcode runProbe} (totals over all workers).
 * @param spread How many workers.
 * @returns The merged result.
 * @throws {RangeError} When `workers` is out of range or above `connections` or `count`.
 * @throws {TypeError} When a hook that cannot cross threads is given, or options conflict.
 * @throws {EchoConnectionError} When a worker can open no connection at all.
 */
export async function runProbeWorkers(
  options: ProbeOptions,
  spread: ProbeWorkersOptions,
): Promise<ProbeResult> {
  validateProbeOptions(options);
  const n = spread?.workers;
  const connections = options.connections ?? 1;
  if (typeof n !== "number" || !Number.isInteger(n) || n < 1 || n > 64) {
    throw new RangeError(`workers must be a whole number from 1 to 64, got ${n}`);
  }
  if (n > connections) {
    throw new RangeError(`workers (${n}) must not exceed connections (${connections})`);
  }
  if (options.count !== undefined && n > options.count) {
    throw new RangeError(`workers (${n}) must not exceed count (${options.count})`);
  }
  for (const hook of ["onReply", "onProgress", "onError"] as const) {
    if (options[hook] !== undefined) {
      throw new TypeError(`${hook} cannot cross to workers: leave it out, or use onInterval`);
    }
  }
  if (options.interval !== undefined) {
    throw new TypeError("interval (ping) is one schedule: it cannot be split between workers");
  }
  const { signal, onInterval, ...plain } = options;
  const shares = split(connections, n);
  const counts = options.count === undefined ? undefined : split(options.count, n);
  const merger = onInterval ? new IntervalMerger(n, onInterval) : undefined;
  const threads: Worker[] = [];
  const abort = () => {
    for (const t of threads) t.postMessage({ type: "abort" } satisfies ProbeWorkerRequest);
  };
  signal?.addEventListener("abort", abort, { once: true });
  try {
    const records = await Promise.all(shares.map((share, i) => {
      const thread = new Worker(ENTRY.href, { type: "module" });
      threads.push(thread);
      const { promise, resolve, reject } = Promise.withResolvers<ProbeResultRecord>();
      thread.onmessage = (event: MessageEvent<WorkerMessage>) => {
        const message = event.data;
        if (message.type === "interval") {
          try {
            merger?.add(i, message.report);
          } catch (error) {
            reject(error);
          }
        } else if (message.type === "result") resolve(message.record);
        else reject(rebuild(message));
      };
      thread.onerror = (event) => {
        event.preventDefault();
        reject(new Error(`probe worker ${i} failed: ${event.message}`));
      };
      const request: ProbeWorkerRequest = {
        type: "run",
        options: {
          ...plain,
          connections: share,
          ...(counts ? { count: counts[i] } : {}),
          ...(options.rate !== undefined ? { rate: (options.rate * share) / connections } : {}),
        },
        intervals: merger !== undefined,
      };
      thread.postMessage(request);
      if (signal?.aborted) thread.postMessage({ type: "abort" } satisfies ProbeWorkerRequest);
      return promise.catch((error) => {
        abort();
        throw error;
      });
    }));
    const result = mergeProbeResults(records, {
      names: records.map((_, i) => `worker ${i}`),
    });
    return { ...result, pipeline: options.pipeline ?? result.pipeline };
  } finally {
    signal?.removeEventListener("abort", abort);
    for (const t of threads) t.terminate();
  }
}

/**
 * Merges interval reports from `n` workers by index: interval i goes out once every worker has
 * reported its interval i or ended before it; counts are summed and histograms added.
 */
class IntervalMerger {
  readonly #n: number;
  readonly #hook: (report: ProbeIntervalReport) => void;
  readonly #pending = new Map<number, CrossedReport[]>();
  /** Per worker: the index of its final report, once seen. */
  readonly #lastIndex: number[];
  #next = 0;

  constructor(n: number, hook: (report: ProbeIntervalReport) => void) {
    this.#n = n;
    this.#hook = hook;
    this.#lastIndex = new Array(n).fill(Infinity);
  }

  add(worker: number, report: CrossedReport): void {
    const list = this.#pending.get(report.index) ?? [];
    list.push(report);
    this.#pending.set(report.index, list);
    if (report.final) this.#lastIndex[worker] = report.index;
    for (;;) {
      const i = this.#next;
      const expected = this.#lastIndex.filter((last) => last >= i).length;
      const got = this.#pending.get(i) ?? [];
      if (expected === 0 || got.length < expected) return;
      this.#pending.delete(i);
      this.#next++;
      this.#emit(i, got, this.#lastIndex.every((last) => last <= i));
    }
  }

  #emit(index: number, parts: CrossedReport[], final: boolean): void {
    const histogram = Histogram.fromSnapshot(parts[0].histogram);
    for (const p of parts.slice(1)) histogram.merge(Histogram.fromSnapshot(p.histogram));
    const sums = Object.fromEntries(
      INTERVAL_COUNTERS.map((k) => [k, parts.reduce((total, p) => total + p[k], 0)]),
    ) as Pick<ProbeIntervalReport, (typeof INTERVAL_COUNTERS)[number]>;
    const start = Math.min(...parts.map((p) => p.start));
    const end = Math.max(...parts.map((p) => p.end));
    const seconds = (end - start) / 1000;
    this.#hook({
      index,
      final,
      start,
      end,
      startTime: Math.min(...parts.map((p) => p.startTime)),
      endTime: Math.max(...parts.map((p) => p.endTime)),
      ...sums,
      requestsPerSecond: seconds > 0 ? sums.received / seconds : 0,
      bytesPerSecond: seconds > 0 ? sums.bytes / seconds : 0,
      latency: histogram.summary(),
      histogram,
    });
  }
}
