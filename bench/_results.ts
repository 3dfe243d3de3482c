/**
 * The benchmark's results file (`bench/results/DATE.json`): its types, the statistics taken from
 * its samples, and the number formats every table uses. The markdown report (`_report.ts`) and the
 * README table (`readme_table.ts`) are both rendered from this file alone, so neither holds a
 * figure the file does not.
 *
 * @module
 */
import { describeDeath, type LoadResult, type ServerDeath } from "./_peers.ts";

/**
 * How servers live through a run: `fresh` starts a new server for every measurement; `long-lived`
 * starts each server once and keeps it through every cell and run, as a deployed server is.
 */
export type BenchMode = "fresh" | "long-lived";

/** Both modes, in report order. */
export const MODES: readonly BenchMode[] = ["fresh", "long-lived"];

/** One cell of the matrix: a traffic shape the load generator drives. */
export interface Cell {
  /** Short id used by `--only`, e.g. `tcp-64x1`. */
  id: string;
  /** Transport. */
  proto: "tcp" | "udp";
  /** `rr`: request/response; `stream`: a window of bytes in flight, MB/s. */
  mode: "rr" | "stream";
  /** Message size in bytes. */
  size: number;
  /** Concurrent connections (UDP: sockets). */
  connections: number;
  /** Messages in flight per connection (stream: window = pipeline × size). */
  pipeline: number;
  /** What the row tells. */
  about: string;
}

/**
 * Where the CPU went during one measurement (averages over the generator's run, warm-up included).
 * Server CPU comes from /proc/PID/stat (10 ms ticks), the generator's from its own getrusage, the
 * machine's from /proc/stat; "other" is what neither used: other processes on this machine.
 */
export interface CpuUse {
  /** Cores the server used. */
  serverCores?: number;
  /** Cores the generator used. */
  generatorCores?: number;
  /** Cores everything else on the machine used. */
  otherCores?: number;
  /** Cores the hypervisor took. */
  stealCores?: number;
  /** Server CPU µs per request. */
  serverUsPerRequest?: number;
  /** Machine busy cores just before the measurement (with `--settle`). */
  busyBeforeCores?: number;
}

/** One measurement: one mode, cell, server and run. */
export interface Sample {
  /** How the server lived. */
  mode: BenchMode;
  /** Cell id. */
  cell: string;
  /** Server name, or `client.ts` for our generator against the C server. */
  server: string;
  /** Run number from 0. */
  run: number;
  /** The generator's JSON line (also kept when the server died, for the record). */
  result?: LoadResult;
  /** Peak RSS (VmHWM) in KiB after the measurement; long-lived: the peak since the start. */
  rssKiB?: number | null;
  /** RSS now (VmRSS) in KiB after the measurement. */
  rssNowKiB?: number | null;
  /** CPU use. */
  cpu?: CpuUse;
  /** Why the measurement failed (start failure, generator failure). */
  error?: string;
  /** The server exited by itself before or during the measurement. */
  died?: ServerDeath;
}

/** The machine a run was taken on. */
export interface Machine {
  /** CPUs. */
  nproc: number;
  /** Memory in GiB. */
  memoryGiB: number;
  /** CPU model. */
  cpu: string;
  /** OS and kernel. */
  os: string;
  /** Load averages at the start. */
  loadavg: number[];
}

/** A server row as it was run. */
export interface ServerRow {
  /** Name in the tables. */
  name: string;
  /** The command it was started with. */
  command: string[];
  /** A note the report prints in bold, or null. */
  note: string | null;
}

/** Everything one suite run produced: the contents of `bench/results/DATE.json`. */
export interface ResultsFile {
  /** Format tag. */
  format: "echo-bench-results/2";
  /** A label the README table repeats (e.g. that this is a smoke run), or null. */
  label: string | null;
  /** Start, ISO 8601. */
  date: string;
  /** End, ISO 8601. */
  finished: string;
  /** The machine. */
  machine: Machine;
  /** Versions: deno, node, bun, cc. */
  versions: Record<string, string | null>;
  /** Run settings. */
  settings: {
    duration: number;
    warmup: number;
    runs: number;
    pin: string;
    busyPoll: boolean;
    settle: number;
    modes: BenchMode[];
  };
  /** The load generator that judged the server rows. */
  judge: string;
  /** The cells, in run order. */
  cells: Cell[];
  /** The servers that ran. */
  servers: ServerRow[];
  /** Rows that could not run, with the reason. */
  skipped: { row: string; reason: string }[];
  /** Whether the `client.ts` row (our generator against the C server) ran. */
  clientRow: boolean;
  /** Every measurement. */
  samples: Sample[];
}

/** Median, smallest and largest of one figure across runs. */
export interface Stat {
  /** Median. */
  median: number;
  /** Smallest. */
  min: number;
  /** Largest. */
  max: number;
}

/** The figures of one (mode, cell, server) across runs. */
export interface Summary {
  /** Samples that measured a live server. */
  ok: number;
  /** Samples that failed (start or generator failure). */
  failed: number;
  /** Samples whose server died. */
  died: ServerDeath[];
  /** Failure reasons. */
  errors: string[];
  /** Each generator field across the ok samples. */
  fields: Record<string, Stat>;
  /** Each CPU figure across the ok samples. */
  cpu: Record<string, Stat>;
  /** Peak RSS across the ok samples. */
  rssKiB: Stat | null;
  /** RSS after the measurement across the ok samples. */
  rssNowKiB: Stat | null;
}

/**
 * Median of the finite numbers in a list (mean of the middle two for even lengths).
 *
 * @example
 * ```ts
 * import { median } from "./_results.ts";
 * console.log(median([3, 1, 2]), median([4, 1, 3, 2]), median([])); // 2 2.5 null
 * ```
 *
 * @param values The numbers.
 * @returns The median, or null for an empty list.
 */
export function median(values: number[]): number | null {
  const xs = values.filter(Number.isFinite).sort((a, b) => a - b);
  if (!xs.length) return null;
  const mid = xs.length >> 1;
  return xs.length % 2 ? xs[mid] : (xs[mid - 1] + xs[mid]) / 2;
}

/**
 * Median, min and max of the finite numbers in a list.
 *
 * @example
 * ```ts
 * import { stat } from "./_results.ts";
 * console.log(stat([3, 1, 2])); // { median: 2, min: 1, max: 3 }
 * ```
 *
 * @param values The numbers.
 * @returns The figures, or null for a list with no finite number.
 */
export function stat(values: (number | null | undefined)[]): Stat | null {
  const xs = values.filter((x): x is number => typeof x === "number" && Number.isFinite(x));
  const m = median(xs);
  return m === null ? null : { median: m, min: Math.min(...xs), max: Math.max(...xs) };
}

/**
 * Aggregates the samples of one (mode, cell, server). A sample whose server died counts as dead,
 * never as a figure, even when the generator printed one.
 *
 * @example
 * ```ts
 * import { summarize } from "./_results.ts";
 * const s = summarize([{ mode: "fresh", cell: "tcp-64x1", server: "c", run: 0, error: "boom" }]);
 * console.log(s.ok, s.failed); // 0 1
 * ```
 *
 * @param samples The samples.
 * @returns Their figures.
 */
export function summarize(samples: Sample[]): Summary {
  const died = samples.filter((s) => s.died).map((s) => s.died!);
  const ok = samples.filter((s) => s.result && !s.died && !s.error);
  const fields: Record<string, Stat> = {};
  const names = new Set(ok.flatMap((s) => Object.keys(s.result!)));
  for (const name of names) {
    const st = stat(ok.map((s) => Number(s.result![name])));
    if (st) fields[name] = st;
  }
  const cpu: Record<string, Stat> = {};
  for (
    const name of [
      "serverCores",
      "generatorCores",
      "otherCores",
      "stealCores",
      "serverUsPerRequest",
    ] as const
  ) {
    const st = stat(ok.map((s) => s.cpu?.[name]));
    if (st) cpu[name] = st;
  }
  return {
    ok: ok.length,
    failed: samples.filter((s) => !s.died && (s.error || !s.result)).length,
    died,
    errors: samples.filter((s) => s.error && !s.died).map((s) => s.error!),
    fields,
    cpu,
    rssKiB: stat(ok.map((s) => s.rssKiB)),
    rssNowKiB: stat(ok.map((s) => s.rssNowKiB)),
  };
}

/**
 * The samples of one (mode, cell, server) in a results file.
 *
 * @example
 * ```ts
 * import { samplesOf, type ResultsFile } from "./_results.ts";
 * const results = { samples: [] } as unknown as ResultsFile;
 * console.log(samplesOf(results, "fresh", "tcp-64x1", "deno").length); // 0
 * ```
 *
 * @param results The results file.
 * @param mode The mode.
 * @param cell The cell id.
 * @param server The server name.
 * @returns The matching samples in run order.
 */
export function samplesOf(
  results: ResultsFile,
  mode: BenchMode,
  cell: string,
  server: string,
): Sample[] {
  return results.samples.filter((s) => s.mode === mode && s.cell === cell && s.server === server)
    .sort((a, b) => a.run - b.run);
}

/**
 * The figure a cell is judged by: requests/s, or MB/s for the stream cell.
 *
 * @example
 * ```ts
 * import { metric } from "./_results.ts";
 * console.log(metric({ mode: "stream" })); // "mbps"
 * ```
 *
 * @param cell The cell.
 * @returns The generator field.
 */
export function metric(cell: Pick<Cell, "mode">): "mbps" | "rps" {
  return cell.mode === "stream" ? "mbps" : "rps";
}

/**
 * Formats a rate: `21.3k` requests/s, or `4251 MB/s` for the stream cell.
 *
 * @example
 * ```ts
 * import { fmtRate } from "./_results.ts";
 * console.log(fmtRate({ mode: "rr" }, 21345)); // "21.3k"
 * ```
 *
 * @param cell The cell (its mode).
 * @param v The value.
 * @returns The text, `—` when undefined.
 */
export function fmtRate(cell: Pick<Cell, "mode">, v: number | undefined | null): string {
  if (v === undefined || v === null) return "—";
  if (cell.mode === "stream") return `${v.toFixed(v < 100 ? 1 : 0)} MB/s`;
  return v >= 1000 ? `${(v / 1000).toFixed(1)}k` : v.toFixed(0);
}

/**
 * Formats a latency given in µs: `38.2 µs`, `512 µs`, `23.1 ms`.
 *
 * @example
 * ```ts
 * import { fmtUs } from "./_results.ts";
 * console.log(fmtUs(23100)); // "23.1 ms"
 * ```
 *
 * @param v Microseconds.
 * @returns The text, `—` when undefined.
 */
export function fmtUs(v: number | undefined | null): string {
  if (v === undefined || v === null) return "—";
  if (v >= 10_000) return `${(v / 1000).toFixed(1)} ms`;
  return `${v.toFixed(v < 100 ? 1 : 0)} µs`;
}

/**
 * Formats KiB as MiB with one decimal.
 *
 * @example
 * ```ts
 * import { fmtMiB } from "./_results.ts";
 * console.log(fmtMiB(102400)); // "100.0"
 * ```
 *
 * @param kib Kibibytes.
 * @returns The text, `—` when undefined.
 */
export function fmtMiB(kib: number | null | undefined): string {
  return kib === null || kib === undefined ? "—" : `${(kib / 1024).toFixed(1)}`;
}

/**
 * Formats a ratio `a ÷ b` as `0.91×`.
 *
 * @example
 * ```ts
 * import { fmtRatio } from "./_results.ts";
 * console.log(fmtRatio(91, 100), fmtRatio(1, 0)); // "0.91×" "—"
 * ```
 *
 * @param a Numerator.
 * @param b Denominator.
 * @returns The text, `—` when either is missing or b is 0.
 */
export function fmtRatio(a: number | undefined | null, b: number | undefined | null): string {
  if (a === undefined || a === null || b === undefined || b === null || b === 0) return "—";
  return `${(a / b).toFixed(2)}×`;
}

/**
 * A figure with its spread across runs: `21.3k (20.1k–22.4k)`; only the median for one run.
 *
 * @example
 * ```ts
 * import { fmtRange } from "./_results.ts";
 * console.log(fmtRange({ median: 2, min: 1, max: 3 }, (v) => `${v}`)); // "2 (1–3)"
 * ```
 *
 * @param st The figure across runs.
 * @param fmt How to format one value.
 * @returns The text, `—` for null.
 */
export function fmtRange(st: Stat | null | undefined, fmt: (v: number) => string): string {
  if (!st) return "—";
  return fmt(st.min) === fmt(st.max)
    ? fmt(st.median)
    : `${fmt(st.median)} (${fmt(st.min)}–${fmt(st.max)})`;
}

/**
 * What a table shows instead of figures: `died (…)` when the server died in any run (with how
 * many), `fail` when no run measured, else null (figures can be shown).
 *
 * @example
 * ```ts
 * import { summarize, unavailable } from "./_results.ts";
 * const died = { code: 3, signal: null, stderr: "boom" };
 * const s = summarize([{ mode: "fresh", cell: "tcp-64x1", server: "x", run: 0, died }]);
 * console.log(unavailable(s)); // "died (exit code 3, last stderr: boom)"
 * ```
 *
 * @param s The summary, or undefined when the pair did not run.
 * @returns The text, or null when there are figures.
 */
export function unavailable(s: Summary | undefined): string | null {
  if (!s) return "—";
  if (s.died.length) {
    const total = s.ok + s.failed + s.died.length;
    return `${describeDeath(s.died[0]).replaceAll("|", "/")}${
      total > 1 ? ` in ${s.died.length}/${total} runs` : ""
    }`;
  }
  if (!s.ok) return s.failed ? "fail" : "—";
  return null;
}
