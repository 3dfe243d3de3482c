/**
 * Text and JSON for the client's ping and bench modes: ping lines and summary, the bench summary,
 * the live progress line, the terminal latency histogram and the `--json` result object. Pure
 * functions of a {@linkcode ProbeResult}; the CLI decides where they go.
 *
 * @module
 */
import { countOf, formatBytes, formatCount, JSON_SCHEMA, type Palette, showBytes } from "./_cli.ts";

export { formatCount };
import { formatDuration } from "./duration.ts";
import { formatAddress } from "./errors.ts";
import type { Histogram } from "./histogram.ts";
import type { ProbeIntervalReport, ProbeProgress, ProbeReply, ProbeResult } from "./probe.ts";
import { probeResultToRecord } from "./probe_result.ts";
import type { EchoError } from "./errors.ts";
import type { EchoResult, EchoStreamResult } from "./tcp.ts";

/** The version of the ping/bench `--json` object; bumped when a field changes meaning. */
export const PROBE_JSON_SCHEMA: number = JSON_SCHEMA;

/** How the run was set up, for headers and the JSON object. */
export interface RunDescription {
  /** `ping` or `bench`. */
  mode: "ping" | "bench";
  /** Requests per second asked for (open model), if any. */
  rate?: number;
  /** Ping interval in ms, if any. */
  interval?: number;
  /** Measured duration asked for, in ms, if any. */
  duration?: number;
  /** Requests asked for, if any. */
  count?: number;
  /** Warm-up in ms. */
  warmup?: number;
  /** When measuring began, Unix epoch ms (for the JSON timestamps), if known. */
  startTime?: number;
  /** When the run ended, Unix epoch ms, if known. */
  endTime?: number;
}

/**
 * A round-trip time in ms the way ping prints it: 3 decimals below 1 ms, then 2, 1, 0.
 *
 * @example
 * ```ts
 * import { formatPingTime } from "./_client_report.ts";
 * console.log(formatPingTime(0.21345), formatPingTime(12.345)); // "0.213" "12.3"
 * ```
 *
 * @param ms Milliseconds.
 * @returns The number, without unit.
 */
export function formatPingTime(ms: number): string {
  if (!Number.isFinite(ms)) return "?";
  return ms.toFixed(ms < 1 ? 3 : ms < 10 ? 2 : ms < 100 ? 1 : 0);
}

/**
 * Microseconds as a short duration: `27µs`, `1.05ms`, `2.40s`; `—` when not a number.
 *
 * @example
 * ```ts
 * import { formatMicros } from "./_client_report.ts";
 * console.log(formatMicros(27.4), formatMicros(1050)); // "27µs" "1.05ms"
 * ```
 *
 * @param us Microseconds.
 * @returns Short text.
 */
export function formatMicros(us: number): string {
  return Number.isFinite(us) ? formatDuration(us / 1000) : "—";
}

/**
 * Bytes per second in decimal megabytes, as load tools print it.
 *
 * @example
 * ```ts
 * import { formatMegabytes } from "./_client_report.ts";
 * console.log(formatMegabytes(2_512_000)); // "2.51 MB/s"
 * ```
 *
 * @param bytesPerSecond The rate.
 * @returns `2.51 MB/s`.
 */
export function formatMegabytes(bytesPerSecond: number): string {
  const mb = bytesPerSecond / 1e6;
  return `${mb.toFixed(mb < 10 ? 2 : mb < 100 ? 1 : 0)} MB/s`;
}

/**
 * The transport as people name it: `tls` and `unix` for those TCP lanes, `wss` for WebSocket
 * over TLS, else `tcp`, `udp` or `ws`.
 *
 * @example
 * ```ts
 * import { transportName } from "./_client_report.ts";
 * const address = { hostname: "", port: 0, transport: "unix" as const, path: "/tmp/e.sock" };
 * console.log(transportName({ transport: "tcp", address })); // "unix"
 * ```
 *
 * @param result A result, or the same fields.
 * @returns `tcp`, `tls`, `unix`, `udp`, `ws` or `wss`.
 */
export function transportName(
  result: Pick<ProbeResult, "transport" | "address" | "tls">,
): EchoTransportName {
  if (result.address.transport === "unix") return "unix";
  if (result.transport === "ws") return result.tls ? "wss" : "ws";
  return result.tls ? "tls" : result.transport;
}

function where(result: Pick<ProbeResult, "transport" | "address" | "tls">): string {
  return `${transportName(result)} ${formatAddress(result.address)}`;
}

function plural(n: number, word: string, words = `${word}s`): string {
  return `${formatCount(n)} ${n === 1 ? word : words}`;
}

/**
 * The first line of a ping run.
 *
 * @example
 * ```ts
 * import { formatPingHeader } from "./_client_report.ts";
 * const address = { hostname: "127.0.0.1", port: 5006, transport: "udp" as const };
 * console.log(formatPingHeader({ transport: "udp", address, size: 64 }, 1000));
 * // "PING udp 127.0.0.1:5006: 64 bytes every 1.00s"
 * ```
 *
 * @param target Transport, address and probe size.
 * @param interval Milliseconds between probes.
 * @returns One line.
 */
export function formatPingHeader(
  target: Pick<ProbeResult, "transport" | "address" | "size" | "tls">,
  interval: number,
): string {
  return `PING ${where(target)}: ${target.size} bytes every ${formatDuration(interval)}`;
}

/**
 * One ping line per reply: `64 bytes from 127.0.0.1:5006: seq=3 time=0.213 ms`, marked
 * `(DUP!)`, `(late)` or `(MISMATCH)` like ping marks odd replies.
 *
 * @example
 * ```ts
 * import { formatPingReply } from "./_client_report.ts";
 * import { paletteFor } from "./_cli.ts";
 * const reply = { connection: 0, seq: 3, bytes: 64, rtt: 0.2134, kind: "reply" as const, warmup: false };
 * const address = { hostname: "127.0.0.1", port: 5006, transport: "tcp" as const };
 * console.log(formatPingReply(reply, address, paletteFor({ isTerminal: () => false })));
 * // "64 bytes from 127.0.0.1:5006: seq=3 time=0.213 ms"
 * ```
 *
 * @param reply The reply.
 * @param address The server.
 * @param colors Colours.
 * @returns One line.
 */
export function formatPingReply(
  reply: ProbeReply,
  address: { hostname: string; port: number },
  colors: Palette,
): string {
  const base = `${reply.bytes} bytes from ${formatAddress(address)}: seq=${
    reply.seq < 0 ? "?" : reply.seq
  } time=${formatPingTime(reply.rtt)} ms`;
  switch (reply.kind) {
    case "duplicate":
      return `${base} ${colors.yellow("(DUP!)")}`;
    case "late":
      return `${base} ${colors.yellow("(late)")}`;
    case "mismatch":
      return `${base} ${colors.red("(MISMATCH)")}`;
    default:
      return base;
  }
}

/**
 * Share of probes that got no reply at all (lost, outstanding or failed), in percent.
 *
 * @example
 * ```ts
 * import { lossPercent } from "./_client_report.ts";
 * console.log(lossPercent({ sent: 4, received: 3, late: 0 })); // 25
 * ```
 *
 * @param result Sent, received and late counts.
 * @returns 0 to 100 (0 when nothing was sent).
 */
export function lossPercent(result: Pick<ProbeResult, "sent" | "received" | "late">): number {
  if (result.sent === 0) return 0;
  return (100 * Math.max(0, result.sent - result.received - result.late)) / result.sent;
}

function formatPercent(p: number): string {
  return `${+p.toFixed(p > 0 && p < 0.1 ? 3 : p < 10 ? 2 : 1)}%`;
}

/**
 * The closing statistics of a ping run, as ping prints them.
 *
 * @example
 * ```ts ignore
 * console.log(formatPingSummary(result, colors));
 * // --- tcp 127.0.0.1:5006 ping statistics ---
 * // 3 sent, 3 received, 0% loss, 0 duplicates, 0 reordered, time 2.00s
 * // rtt min/avg/max/mdev = 0.041/0.052/0.071/0.012 ms
 * ```
 *
 * @param result The run's result.
 * @param colors Colours.
 * @returns Two or three lines.
 */
export function formatPingSummary(result: ProbeResult, colors: Palette): string {
  const loss = lossPercent(result);
  const parts = [
    `${formatCount(result.sent)} sent`,
    `${formatCount(result.received)} received`,
  ];
  const lossText = `${formatPercent(loss)} loss`;
  parts.push(loss > 0 ? colors.red(lossText) : lossText);
  if (result.transport === "udp") {
    parts.push(
      plural(result.duplicates, "duplicate"),
      `${formatCount(result.reordered)} reordered`,
    );
    if (result.late > 0) parts.push(colors.yellow(`${formatCount(result.late)} late`));
  }
  if (result.mismatches > 0) parts.push(colors.red(`${formatCount(result.mismatches)} mismatched`));
  if (result.errors > 0) parts.push(colors.red(plural(result.errors, "error")));
  parts.push(`time ${formatDuration(result.elapsed)}`);
  const lines = [colors.bold(`--- ${where(result)} ping statistics ---`), parts.join(", ")];
  const l = result.latency;
  if (l.count > 0) {
    const ms = [l.min, l.mean, l.max, l.stddev].map((us) => formatPingTime(us / 1000));
    lines.push(`rtt min/avg/max/mdev = ${ms.join("/")} ms`);
  }
  return lines.join("\n");
}

function describeSchedule(result: ProbeResult, run: RunDescription): string {
  if (result.stream) return `stream window ${formatCount(result.pipeline * result.size)} B`;
  const pipeline = result.pipeline === Infinity ? "unlimited" : String(result.pipeline);
  if (run.rate !== undefined) return `rate ${formatCount(run.rate)}/s, pipeline ${pipeline}`;
  if (run.interval !== undefined) return `every ${formatDuration(run.interval)}`;
  return `pipeline ${pipeline}`;
}

/**
 * The first line of a bench run.
 *
 * @example
 * ```ts ignore
 * console.log(formatBenchHeader(result, { mode: "bench", duration: 10_000 }));
 * // bench tcp 127.0.0.1:5006: 50 connections × 1,024 B, pipeline 1, 10.00s
 * ```
 *
 * @param result The run's settings (a result, or the same fields).
 * @param run What was asked for.
 * @returns One line.
 */
export function formatBenchHeader(
  result: Pick<
    ProbeResult,
    "transport" | "address" | "connections" | "size" | "pipeline" | "stream" | "tls"
  >,
  run: RunDescription,
): string {
  const what =
    `${plural(result.connections, result.transport === "udp" ? "socket" : "connection")}` +
    ` × ${formatCount(result.size)} B`;
  const limits: string[] = [];
  if (run.duration !== undefined) limits.push(formatDuration(run.duration));
  if (run.count !== undefined) limits.push(plural(run.count, "request"));
  if (run.warmup) limits.push(`+${formatDuration(run.warmup)} warm-up`);
  const schedule = describeSchedule(result as ProbeResult, run);
  return `bench ${where(result)}: ${what}, ${schedule}${
    limits.length ? `, ${limits.join(", ")}` : ""
  }`;
}

/**
 * The first line of `client.ts merge`: how many runs of what were combined, from which files.
 *
 * @example
 * ```ts
 * import { formatMergeHeader } from "./_client_report.ts";
 * const address = { hostname: "127.0.0.1", port: 5006, transport: "tcp" as const };
 * console.log(formatMergeHeader({ transport: "tcp", address, connections: 4, size: 64 }, ["a.json", "b.json"]));
 * // "merged 2 runs of tcp 127.0.0.1:5006 (4 connections × 64 B in all): a.json, b.json"
 * ```
 *
 * @param result The merged result.
 * @param files The files merged, in order.
 * @returns One line.
 */
export function formatMergeHeader(
  result: Pick<ProbeResult, "transport" | "address" | "connections" | "size" | "tls">,
  files: readonly string[],
): string {
  const what =
    `${plural(result.connections, result.transport === "udp" ? "socket" : "connection")}` +
    ` × ${formatCount(result.size)} B in all`;
  return `merged ${plural(files.length, "run")} of ${where(result)} (${what}): ${files.join(", ")}`;
}

/**
 * The live progress line of a bench run (no newline; the caller rewrites it in place).
 *
 * @example
 * ```ts
 * import { formatProgress } from "./_client_report.ts";
 * console.log(formatProgress({ elapsed: 3000, requests: 12345, rate: 4100, errors: 0, warmup: false }));
 * // "  3.00s  12,345 requests  4,100 req/s  0 errors"
 * ```
 *
 * @param progress The report.
 * @returns One line.
 */
export function formatProgress(progress: ProbeProgress): string {
  const phase = progress.warmup ? " (warm-up)" : "";
  return `  ${formatDuration(progress.elapsed)}${phase}  ${plural(progress.requests, "request")}  ${
    formatCount(progress.rate)
  } req/s  ${plural(progress.errors, "error")}`;
}

/**
 * The results of a bench run, for people.
 *
 * @example
 * ```ts ignore
 * console.log(formatBenchSummary(result, colors));
 * ```
 *
 * @param result The run's result.
 * @param colors Colours.
 * @returns Several lines.
 */
export function formatBenchSummary(result: ProbeResult, colors: Palette): string {
  const l = result.latency;
  const label = (s: string) => colors.bold(s.padEnd(12));
  const lines: string[] = [];
  const aborted = result.aborted ? colors.yellow(" (interrupted)") : "";
  lines.push(
    `${label("requests")}${formatCount(result.received)} in ${
      formatDuration(result.elapsed)
    }${aborted}   ${colors.green(`${formatCount(result.requestsPerSecond)} req/s`)}   ${
      formatMegabytes(result.bytesPerSecond)
    }`,
  );
  if (l.count > 0) {
    const p = (name: string, us: number) => `${colors.dim(name)} ${formatMicros(us)}`;
    lines.push(
      `${label("latency")}${
        [
          p("min", l.min),
          p("p50", l.p50),
          p("p90", l.p90),
          p("p99", l.p99),
          p("p99.9", l.p999),
          p("max", l.max),
        ].join("   ")
      }`,
    );
    lines.push(`${" ".repeat(12)}${p("mean", l.mean)}   ${p("stddev", l.stddev)}`);
  }
  const bad = (n: number, text: string) => n > 0 ? colors.red(text) : text;
  const problems = [
    bad(result.errors, plural(result.errors, "error")),
    bad(result.mismatches, plural(result.mismatches, "mismatch", "mismatches")),
  ];
  if (result.transport !== "udp" && result.failed > 0) {
    problems.push(colors.red(`${formatCount(result.failed)} failed with their connection`));
  }
  if (result.unsent > 0) {
    problems.push(
      colors.yellow(`${formatCount(result.unsent)} due but never sent (pipeline full)`),
    );
  }
  if (result.outstanding > 0) problems.push(`${formatCount(result.outstanding)} unanswered`);
  if (result.connectionsServed < result.connections) {
    problems.push(
      colors.yellow(
        `${formatCount(result.connectionsServed)} of ${formatCount(result.connections)} ${
          result.transport === "udp" ? "sockets" : "connections"
        } served`,
      ),
    );
  }
  lines.push(`${label("checks")}${problems.join("   ")}`);
  if (result.transport === "udp") {
    const lossText = `lost ${formatCount(result.lost)} (${
      formatPercent(result.sent ? (100 * result.lost) / result.sent : 0)
    })`;
    lines.push(
      `${label("udp")}${
        [
          result.lost > 0 ? colors.red(lossText) : lossText,
          `late ${formatCount(result.late)}`,
          `duplicates ${formatCount(result.duplicates)}`,
          `reordered ${formatCount(result.reordered)}`,
          `jitter ${formatMicros(result.jitter)}`,
          ...(result.strays > 0 ? [`strays ${formatCount(result.strays)}`] : []),
        ].join("   ")
      }`,
    );
  }
  return lines.map((line) => `  ${line}`).join("\n");
}

/** Options of {@linkcode renderHistogram}. */
export interface RenderHistogramOptions {
  /** Rows at most. Default 12. */
  rows?: number;
  /** Width of the longest bar in characters. Default 40. */
  width?: number;
}

/**
 * Draws a latency histogram (microseconds) in the terminal, like hey and wrk do: one row per range
 * of latencies (ranges grow geometrically from min to max), a count and a bar. Rows holding values
 * up to the median are green, up to p99 yellow, beyond red.
 *
 * @example
 * ```ts
 * import { renderHistogram } from "./_client_report.ts";
 * import { paletteFor } from "./_cli.ts";
 * import { Histogram } from "./histogram.ts";
 * const h = new Histogram();
 * for (let i = 1; i <= 1000; i++) h.record(20 + (i % 50));
 * console.log(renderHistogram(h, paletteFor({ isTerminal: () => false }), { rows: 5 }));
 * ```
 *
 * @param histogram Latencies in microseconds.
 * @param colors Colours.
 * @param options Rows and bar width.
 * @returns Several lines, or a note when the histogram is empty.
 */
export function renderHistogram(
  histogram: Histogram,
  colors: Palette,
  options: RenderHistogramOptions = {},
): string {
  const maxRows = Math.max(1, options.rows ?? 12);
  const width = Math.max(1, options.width ?? 40);
  if (histogram.count === 0) return "  (no replies: nothing to draw)";
  const min = histogram.min;
  const max = histogram.max;
  const buckets = histogram.buckets();
  const rows = Math.min(maxRows, buckets.length);
  const low = Math.max(min, 1e-3);
  const ratio = max / low;
  const counts = new Array<number>(rows).fill(0);
  const edges = Array.from({ length: rows }, (_, i) => low * Math.pow(ratio, (i + 1) / rows));
  edges[rows - 1] = max;
  for (const b of buckets) {
    // A bucket's values lie in (low, high]; place it by its geometric middle, within [min, max].
    const lo = b.low > 0 ? b.low : b.high / 2;
    const hi = Number.isFinite(b.high) ? b.high : b.low * 2;
    const mid = Math.min(max, Math.max(min, Math.sqrt(lo * hi)));
    let row = 0;
    while (row < rows - 1 && mid > edges[row]) row++;
    counts[row] += b.count;
  }
  const p50 = histogram.percentile(50);
  const p99 = histogram.percentile(99);
  const biggest = Math.max(...counts);
  const labels = edges.map((e) => formatMicros(e));
  const labelWidth = Math.max(...labels.map((s) => s.length));
  const countWidth = Math.max(...counts.map((c) => formatCount(c).length));
  const lines = [colors.bold("  latency histogram (upper bound, count):")];
  for (let i = 0; i < rows; i++) {
    const len = counts[i] === 0 ? 0 : Math.max(1, Math.round((counts[i] / biggest) * width));
    const from = i === 0 ? min : edges[i - 1];
    const paint = from < p50 ? colors.green : from < p99 ? colors.yellow : colors.red;
    lines.push(
      `  ${labels[i].padStart(labelWidth)} [${formatCount(counts[i]).padStart(countWidth)}] |${
        paint("■".repeat(len))
      }`,
    );
  }
  return lines.join("\n");
}

/**
 * The flat `--json` object of a ping or bench run. Field names follow the benchmark suite's load
 * generator (`requests`, `rps`, `mbps`, `p99_us`, ...) so one parser reads both; `mbps` is 10^6
 * bytes per second, one direction; latencies are microseconds; `null` where there was nothing to
 * measure.
 *
 * @example
 * ```ts ignore
 * console.log(JSON.stringify(probeJson(result, { mode: "bench", duration: 5000 })));
 * ```
 *
 * @param result The run's result.
 * @param run What was asked for.
 * @returns A plain object for `JSON.stringify`.
 */
export function probeJson(result: ProbeResult, run: RunDescription): Record<string, unknown> {
  const l = result.latency;
  const finite = (n: number) => (Number.isFinite(n) ? n : null);
  const round = (n: number) => (Number.isFinite(n) ? Math.round(n * 10) / 10 : null);
  return {
    schema: PROBE_JSON_SCHEMA,
    event: "result",
    mode: run.mode,
    ...timestamps(run.startTime, run.endTime),
    ok: result.mismatches === 0 && result.received + result.late > 0,
    transport: transportName(result),
    address: formatAddress(result.address),
    connections: result.connections,
    size: result.size,
    pipeline: finite(result.pipeline),
    stream: result.stream,
    rate: run.rate ?? null,
    interval_ms: run.interval ?? null,
    warmup_s: (run.warmup ?? 0) / 1000,
    aborted: result.aborted,
    seconds: Math.round(result.elapsed) / 1000,
    ...countsJson(result),
    strays: result.strays,
    outstanding: result.outstanding,
    unsent: result.unsent,
    loss_pct: Math.round(lossPercent(result) * 1000) / 1000,
    min_us: round(l.min),
    mean_us: round(l.mean),
    stddev_us: round(l.stddev),
    p50_us: round(l.p50),
    p90_us: round(l.p90),
    p99_us: round(l.p99),
    p999_us: round(l.p999),
    max_us: round(l.max),
    jitter_us: round(result.jitter),
    connections_served: result.connectionsServed,
    result: probeResultToRecord(result, { mode: run.mode }),
  };
}

/** The counters a result and an interval report share, under the JSON names. */
function countsJson(
  counts: ProbeResult | ProbeIntervalReport,
): Record<string, number> {
  return {
    requests: counts.received,
    rps: Math.round(counts.requestsPerSecond * 10) / 10,
    mbps: Math.round(counts.bytesPerSecond / 1e3) / 1e3,
    bytes: counts.bytes,
    sent: counts.sent,
    errors: counts.errors,
    mismatches: counts.mismatches,
    failed: counts.failed,
    lost: counts.lost,
    late: counts.late,
    duplicates: counts.duplicates,
    reordered: counts.reordered,
  };
}

/** `start_time`/`end_time` as ISO 8601 strings, for the ones known. */
function timestamps(start?: number, end?: number): Record<string, string> {
  return {
    ...(start === undefined ? {} : { start_time: new Date(start).toISOString() }),
    ...(end === undefined ? {} : { end_time: new Date(end).toISOString() }),
  };
}

/**
 * One `--report-interval` line: the interval's span, rates, median and p99, errors and, for UDP,
 * loss, duplicates and reordering. Plain text: no escape codes, so it suits any output.
 *
 * @example
 * ```ts
 * import { formatIntervalLine } from "./_client_report.ts";
 * import { Histogram } from "./histogram.ts";
 * const histogram = new Histogram();
 * histogram.record(180, 1000);
 * const report = {
 *   index: 1, final: false, start: 1000, end: 2000, startTime: 0, endTime: 1000, sent: 1000,
 *   received: 1000, bytes: 64_000, requestsPerSecond: 1000, bytesPerSecond: 64_000,
 *   latency: histogram.summary(), histogram, errors: 0, mismatches: 0, failed: 0, lost: 0,
 *   late: 0, duplicates: 0, reordered: 0,
 * };
 * console.log(formatIntervalLine(report, "tcp"));
 * // "[ 1.00- 2.00 s]  1,000 req/s  0.06 MB/s  p50 180µs  p99 180µs  0 errors"
 * ```
 *
 * @param report The interval.
 * @param transport `udp` adds the loss, duplicate and reorder counts.
 * @returns One line.
 */
export function formatIntervalLine(
  report: ProbeIntervalReport,
  transport: ProbeResult["transport"],
): string {
  const s = (ms: number) => (ms / 1000).toFixed(2).padStart(5);
  const l = report.latency;
  const parts = [
    `[${s(report.start)}-${s(report.end)} s]`,
    `${formatCount(report.requestsPerSecond)} req/s`,
    formatMegabytes(report.bytesPerSecond),
    `p50 ${l.count ? formatMicros(l.p50) : "-"}`,
    `p99 ${l.count ? formatMicros(l.p99) : "-"}`,
    plural(report.errors, "error"),
  ];
  if (report.mismatches > 0) parts.push(plural(report.mismatches, "mismatch", "mismatches"));
  if (transport === "udp") {
    parts.push(
      `lost ${formatCount(report.lost)}`,
      `dup ${formatCount(report.duplicates)}`,
      `reordered ${formatCount(report.reordered)}`,
    );
  }
  return parts.join("  ");
}

/**
 * One `--report-interval` object of `--json` output (newline-delimited, the result object last,
 * like iperf3's `--json-stream`): `event: "interval"`, the schema version, the interval's span
 * (seconds since measuring began, and ISO 8601 timestamps), its counts (which add up to the
 * result's) and latency percentiles in µs (`null` when nothing completed).
 *
 * @example
 * ```ts
 * import { intervalJson } from "./_client_report.ts";
 * import { Histogram } from "./histogram.ts";
 * const histogram = new Histogram();
 * const report = {
 *   index: 0, final: true, start: 0, end: 500, startTime: 0, endTime: 500, sent: 0,
 *   received: 0, bytes: 0, requestsPerSecond: 0, bytesPerSecond: 0,
 *   latency: histogram.summary(), histogram, errors: 0, mismatches: 0, failed: 0, lost: 0,
 *   late: 0, duplicates: 0, reordered: 0,
 * };
 * console.log(intervalJson(report, "bench").p50_us); // null
 * ```
 *
 * @param report The interval.
 * @param mode `ping` or `bench`.
 * @returns A plain object for `JSON.stringify`.
 */
export function intervalJson(
  report: ProbeIntervalReport,
  mode: RunDescription["mode"],
): Record<string, unknown> {
  const l = report.latency;
  const us = (n: number) => (l.count > 0 ? Math.round(n * 10) / 10 : null);
  return {
    schema: PROBE_JSON_SCHEMA,
    event: "interval",
    mode,
    index: report.index,
    final: report.final,
    start_s: Math.round(report.start) / 1000,
    end_s: Math.round(report.end) / 1000,
    ...timestamps(report.startTime, report.endTime),
    ...countsJson(report),
    p50_us: us(l.p50),
    p90_us: us(l.p90),
    p99_us: us(l.p99),
    max_us: us(l.max),
  };
}

/** How a single echo went over the wire, for its line: `tcp`, `tls`, `unix`, `udp`, `ws` or `wss`. */
export type EchoTransportName = "tcp" | "tls" | "unix" | "udp" | "ws" | "wss";

/**
 * The line of a `--stdin` stream echo (on stderr: stdout carries the data), or its JSON object.
 *
 * @example
 * ```ts
 * import { formatStreamResult } from "./_client_report.ts";
 * const address = { hostname: "127.0.0.1", port: 5006, transport: "tcp" as const };
 * console.log(formatStreamResult({ bytes: 2048, elapsed: 4, address }, "tcp", false));
 * // "echoed 2 KiB identical in 4.00ms (500 KiB/s) via tcp 127.0.0.1:5006"
 * ```
 *
 * @param result What echoTcpStream returned.
 * @param transport How it went.
 * @param json One JSON object instead of the text.
 * @returns The line.
 */
export function formatStreamResult(
  result: Pick<EchoStreamResult, "bytes" | "elapsed" | "address">,
  transport: EchoTransportName,
  json: boolean,
): string {
  if (json) {
    return JSON.stringify({
      schema: JSON_SCHEMA,
      ok: true,
      transport,
      address: formatAddress(result.address),
      bytes: result.bytes,
      elapsed_ms: result.elapsed,
    });
  }
  const rate = result.bytes / Math.max(result.elapsed / 1000, 1e-9);
  return `echoed ${formatBytes(result.bytes)} identical in ${formatDuration(result.elapsed)} (${
    formatBytes(rate)
  }/s) via ${transport} ${formatAddress(result.address)}`;
}

/**
 * The line of a single echo's reply: `reply from tcp 127.0.0.1:5006: "hi" (2 bytes) time=1.2ms`.
 *
 * @example
 * ```ts
 * import { formatEchoReply } from "./_client_report.ts";
 * import { paletteFor } from "./_cli.ts";
 * const address = { hostname: "127.0.0.1", port: 7, transport: "udp" as const };
 * const reply = new TextEncoder().encode("hi");
 * const colors = paletteFor({ isTerminal: () => false });
 * console.log(formatEchoReply({ reply, rtt: 1.5, address, attempts: 2 }, "udp", colors));
 * ```
 *
 * @param result What echoTcp or echoUdp returned (`attempts` for UDP).
 * @param transport How it went.
 * @param colors Colours to use.
 * @returns The line.
 */
export function formatEchoReply(
  result: Pick<EchoResult, "reply" | "rtt" | "address"> & { attempts?: number },
  transport: EchoTransportName,
  colors: Palette,
): string {
  const where = `${transport} ${formatAddress(result.address)}`;
  const attempts = (result.attempts ?? 1) > 1 ? ` after ${result.attempts} attempts` : "";
  return `reply from ${where}: ${showBytes(result.reply)} (${
    countOf(result.reply.length, "byte")
  }) time=${colors.green(formatDuration(result.rtt))}${attempts}`;
}

/**
 * The `--json` object of a single echo that succeeded.
 *
 * @example
 * ```ts
 * import { echoJson } from "./_client_report.ts";
 * const address = { hostname: "127.0.0.1", port: 7, transport: "tcp" as const };
 * const result = { reply: new Uint8Array(2), rtt: 1, address };
 * console.log(echoJson(result, { transport: "tcp", message: "hi", udp: false }).ok); // true
 * ```
 *
 * @param result What echoTcp or echoUdp returned.
 * @param run How it went, what was sent, and whether over UDP (which adds `attempts`).
 * @returns The object.
 */
export function echoJson(
  result: Pick<EchoResult, "reply" | "rtt" | "address"> & { attempts?: number },
  run: { transport: EchoTransportName; message: string; udp: boolean },
): Record<string, unknown> {
  return {
    schema: JSON_SCHEMA,
    ok: true,
    transport: run.transport,
    address: formatAddress(result.address),
    bytes: result.reply.length,
    reply: run.message,
    rtt_ms: result.rtt,
    ...(run.udp ? { attempts: result.attempts } : {}),
  };
}

/**
 * The `--json` object of a single echo that failed.
 *
 * @example
 * ```ts
 * import { echoFailureJson } from "./_client_report.ts";
 * import { EchoTimeoutError } from "./errors.ts";
 * console.log(echoFailureJson(new EchoTimeoutError("no reply"), "udp").error); // "EchoTimeoutError"
 * ```
 *
 * @param error What the echo threw.
 * @param transport How it went.
 * @returns The object.
 */
export function echoFailureJson(
  error: EchoError,
  transport: EchoTransportName,
): Record<string, unknown> {
  return { schema: JSON_SCHEMA, ok: false, transport, error: error.name, message: error.message };
}
