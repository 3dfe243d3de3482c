/**
 * Interval reports of {@linkcode runProbe} (`reportInterval`, `onInterval`): every period after
 * the warm-up, the differences of the run's counters since the last report and the latency of
 * that period alone (its own histogram, reset after each report). The last, partial interval is
 * reported with the result's own counts, so the intervals add up to the result.
 *
 * @module
 */
import { Histogram } from "./histogram.ts";
import type { ProbeIntervalReport, ProbeResult } from "./_probe_types.ts";

/** The counters an interval report takes the differences of. */
export const INTERVAL_COUNTERS = [
  "sent",
  "received",
  "bytes",
  "errors",
  "mismatches",
  "failed",
  "lost",
  "late",
  "duplicates",
  "reordered",
] as const;

/** Cumulative counts of a run at one moment (a result, or the run's counters so far). */
export type IntervalCounts = Pick<ProbeResult, (typeof INTERVAL_COUNTERS)[number]>;

/**
 * Reports a run's intervals: a timer per period from `origin`, `sample()` for the cumulative
 * counts at each boundary, and the period's latencies recorded into `histogram` by the run.
 *
 * @example
 * ```ts
 * import { IntervalReporter } from "./_probe_interval.ts";
 *
 * const counts = { sent: 0, received: 0, bytes: 0, errors: 0, mismatches: 0, failed: 0, lost: 0, late: 0, duplicates: 0, reordered: 0 };
 * const reporter = new IntervalReporter(performance.now(), 100, {
 *   onInterval: (r) => console.log(r.index, r.received),
 *   sample: () => counts,
 *   fail: (error) => console.error(error),
 * });
 * reporter.histogram.record(250);
 * reporter.finish(performance.now(), { ...counts, received: 1 }); // 0 1
 * ```
 */
export class IntervalReporter {
  /** The current interval's latencies (µs); the run records into it. */
  readonly histogram: Histogram = new Histogram();
  readonly #origin: number;
  readonly #period: number;
  readonly #hooks: IntervalHooks;
  #index = 0;
  #base: IntervalCounts;
  #timer: ReturnType<typeof setTimeout> | undefined;
  #stopped = false;

  /**
   * @param origin When measuring began (`performance.now()` time).
   * @param period The interval, in ms.
   * @param hooks Where reports go, how to sample the counts, and where a throwing hook goes.
   */
  constructor(origin: number, period: number, hooks: IntervalHooks) {
    this.#origin = origin;
    this.#period = period;
    this.#hooks = hooks;
    this.#base = Object.fromEntries(INTERVAL_COUNTERS.map((k) => [k, 0])) as IntervalCounts;
  }

  /** Arms the timer for the next boundary. */
  start(): void {
    if (this.#stopped) return;
    const end = (this.#index + 1) * this.#period;
    const at = this.#origin + end;
    this.#timer = setTimeout(() => {
      this.#timer = undefined;
      if (this.#stopped) return;
      try {
        this.#report(end, this.#hooks.sample(), false);
      } catch (error) {
        this.#hooks.fail(error);
        return;
      }
      this.start();
    }, Math.max(0, at - performance.now()));
  }

  /** Stops the timer (the run is over). */
  stop(): void {
    this.#stopped = true;
    if (this.#timer !== undefined) clearTimeout(this.#timer);
    this.#timer = undefined;
  }

  /**
   * Reports the last interval, up to `end` (or the last boundary, if later), with the final
   * counts. Throws what `onInterval` throws.
   */
  finish(end: number, counts: IntervalCounts): void {
    this.stop();
    this.#report(Math.max(end - this.#origin, this.#index * this.#period), counts, true);
  }

  /** Reports the interval ending `end` ms after the origin. */
  #report(end: number, counts: IntervalCounts, final: boolean): void {
    const start = this.#index * this.#period;
    const seconds = Math.max(0, end - start) / 1000;
    const delta = {} as IntervalCounts;
    for (const k of INTERVAL_COUNTERS) delta[k] = counts[k] - this.#base[k];
    const report: ProbeIntervalReport = {
      index: this.#index,
      final,
      start,
      end,
      startTime: performance.timeOrigin + this.#origin + start,
      endTime: performance.timeOrigin + this.#origin + end,
      ...delta,
      requestsPerSecond: seconds > 0 ? delta.received / seconds : 0,
      bytesPerSecond: seconds > 0 ? delta.bytes / seconds : 0,
      latency: this.histogram.summary(),
      histogram: this.histogram,
    };
    this.#base = Object.fromEntries(INTERVAL_COUNTERS.map((k) => [k, counts[k]])) as IntervalCounts;
    this.#index++;
    try {
      this.#hooks.onInterval(report);
    } finally {
      this.histogram.reset();
    }
  }
}

/** What an {@linkcode IntervalReporter} calls. */
export interface IntervalHooks {
  /** Receives each report. */
  onInterval: (report: ProbeIntervalReport) => void;
  /** The run's cumulative counts now. */
  sample: () => IntervalCounts;
  /** Gets what `onInterval` threw from a timer. */
  fail: (error: unknown) => void;
}
