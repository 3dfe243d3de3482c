/**
 * client.ts's measuring modes: the ping and bench flags (their own blocks of the flag table), the
 * mapping of those flags to `runProbe` (or `runProbeWorkers`) options, the live interval reports,
 * the HdrHistogram log, `merge`, and printing what they measured. client.ts parses the flags and
 * dispatches here; the formatting itself is in _client_report.ts.
 *
 * @module
 */
import { onShutdownSignals } from "./_cli_signals.ts";
import {
  type CliSpec,
  EXIT_FAILURE,
  EXIT_OK,
  flagTable,
  type FlagValues,
  paletteFor,
  parseDurationFlag,
  parseInteger,
  parseRate,
  readInputFile,
  unixPermissionError,
  UsageError,
} from "./_cli.ts";
import type { EchoAddress } from "./errors.ts";
import { formatHdrLogHeader, formatHdrLogInterval } from "./hdr_log.ts";
import { mergeProbeResults, parseProbeResultRecord, ProbeMergeError } from "./probe_result.ts";
import { runProbeWorkers } from "./probe_workers.ts";
import type { TcpClientOptions } from "./tcp.ts";
import { MAX_UDP_PAYLOAD } from "./udp.ts";
import { wsAddress, wsUrl, type WsUrlOptions } from "./_ws_options.ts";
import {
  DEFAULT_PROBE_SIZE,
  DEFAULT_PROBE_TCP_TIMEOUT,
  DEFAULT_PROBE_UDP_TIMEOUT,
  DEFAULT_STREAM_PIPELINE,
  DEFAULT_STREAM_SIZE,
  MAX_PROBE_CONNECTIONS,
  MAX_PROBE_TCP_SIZE,
  type ProbeIntervalReport,
  type ProbeOptions,
  type ProbeResult,
  runProbe,
  validateProbeOptions,
} from "./probe.ts";
import {
  formatBenchHeader,
  formatBenchSummary,
  formatIntervalLine,
  formatMergeHeader,
  formatPingHeader,
  formatPingReply,
  formatPingSummary,
  formatProgress,
  intervalJson,
  probeJson,
  renderHistogram,
  type RunDescription,
} from "./_client_report.ts";

const PROBE_GROUP = "Ping and bench (measure any echo server)";

/** Flags of the ping and bench modes. */
export const PROBE_FLAGS: CliSpec["flags"] = [
  ...flagTable(PROBE_GROUP, {
    "ping": "ping: one probe per --interval, a line per reply, statistics at the end",
    "count -n N": "send N requests in total (ping: default until Ctrl-C)",
    "interval -i DURATION": "ping: time between probes (default 1s)",
    "bench": "bench: load the server; report req/s, MB/s, latency percentiles, errors",
    "connections -c N": "bench: TCP or WebSocket connections, or UDP sockets (default 1)",
    "duration -d DURATION": "how long to measure (bench: default 10s unless --count)",
    "size -s BYTES":
      `bytes per request (default ${DEFAULT_PROBE_SIZE}, --stream ${DEFAULT_STREAM_SIZE}; UDP >= 24)`,
    "pipeline K":
      `bench: requests in flight per connection (default 1, --stream ${DEFAULT_STREAM_PIPELINE})`,
    "rate R": "bench: R requests/s in total on a fixed schedule; latency from intended send",
    "warmup DURATION": "bench: run this long first and discard it (default 0)",
    "stream": "bench, TCP: keep --pipeline × --size bytes in flight per connection; MB/s",
  }),
];

const OUTPUT_GROUP = "Live reports, logs, workers, merging (ping and bench)";

/** Flags of the measuring modes' output and scale-out (their own block, beside PROBE_FLAGS). */
export const MEASURE_OUTPUT_FLAGS: CliSpec["flags"] = [
  ...flagTable(OUTPUT_GROUP, {
    "report-interval DURATION":
      "a line per DURATION (req/s, MB/s, p50/p99, errors, UDP loss); --json: an object each",
    "hdr-log FILE":
      "write an HdrHistogram interval log (v1.3) to FILE, one histogram per --report-interval",
    "workers N|auto":
      "bench: spread the connections over N Web Workers (auto: one per core), merged exactly",
  }),
];

/** The --help paragraph on live reports, logs, workers and merge. */
export const MEASURE_OUTPUT_NOTE =
  "--report-interval (default: none; --hdr-log alone logs every 1s) reports each interval of the\n" +
  "measured part; with --json (or bench on a non-terminal) each is one JSON object, then the\n" +
  "result (newline-delimited, like iperf3 --json-stream). Interval lines never hold escape codes.\n" +
  "--hdr-log needs --allow-write for FILE. --workers needs --allow-read (for the workers'\n" +
  "module); it refuses ping, more workers than -c or --count, and drops the progress line and\n" +
  "the first-error line (those are per-event hooks that would not cross threads).\n" +
  "merge FILE...: combine the --json results of runs made at the same time (other processes or\n" +
  "machines) into one: counts summed, histograms added, so percentiles are those of all the\n" +
  "samples. It only reads files (--allow-read); runs of other sizes, transports or schemas are\n" +
  "refused with exit 2.";

/** The --help paragraph on the measuring modes. */
export const PROBE_NOTE =
  "Ping and bench: --ping, --count, --interval or --duration alone select ping; --bench or\n" +
  "any of -c, --pipeline, --rate, --warmup, --stream select bench (10s unless --count or\n" +
  "--duration). --timeout is how long a UDP probe may go unanswered before it counts as lost\n" +
  `(default ${DEFAULT_PROBE_UDP_TIMEOUT}ms; a reply after it is "late"), and how long a TCP request may go\n` +
  `unanswered before its connection counts an error and is opened again (default ${
    DEFAULT_PROBE_TCP_TIMEOUT / 1000
  }s).\n` +
  "With --ws (or --url) each probe is one binary message of --size bytes, verified byte for byte,\n" +
  "over ws: or wss: (--tls, --ca); --stream and --proxy-header are TCP's.\n" +
  "Both exit 0 when at least one reply came back and none differed from what was sent. Bench\n" +
  "shows a progress line and a latency histogram on a terminal, and prints one JSON object\n" +
  "(schema 1) with --json or when stdout is not a terminal. Ctrl-C ends either mode early and\n" +
  "still prints the results.";

/** `--proxy-header v1|v2` -> the `proxyHeader` option (TCP, TLS and Unix streams). */
export function proxyHeaderFlag(
  values: FlagValues,
  udp: boolean,
): Pick<TcpClientOptions, "proxyHeader"> {
  const text = values["proxy-header"] as string | undefined;
  if (text === undefined) return {};
  if (udp) throw new UsageError("--udp and --proxy-header conflict: the header is for streams");
  if (text !== "v1" && text !== "v2") {
    throw new UsageError(`--proxy-header must be v1 or v2, got "${text}"`);
  }
  return { proxyHeader: text === "v1" ? 1 : 2 };
}

/** Flags that only make sense for bench mode, and so select it. */
const BENCH_FLAGS = ["connections", "pipeline", "rate", "warmup", "stream"] as const;
/** Flags that select ping mode when no bench flag is given. */
const PING_FLAGS = ["ping", "count", "interval", "duration"] as const;

/**
 * Which measuring mode the flags ask for, if any.
 *
 * @param values Parsed flags.
 * @returns `ping`, `bench`, or undefined for a single echo.
 */
export function measureMode(values: FlagValues): "ping" | "bench" | undefined {
  const benchFlag = BENCH_FLAGS.find((name) => values[name] !== undefined);
  if (values.bench || benchFlag !== undefined) {
    const why = values.bench ? "--bench" : `--${benchFlag}`;
    if (values.ping) throw new UsageError(`--ping and ${why} exclude each other`);
    if (values.interval !== undefined) {
      throw new UsageError(
        `--interval is for ping mode; ${why} selects bench, which paces with --rate`,
      );
    }
    return "bench";
  }
  if (PING_FLAGS.some((name) => values[name] !== undefined)) return "ping";
  if (values.size !== undefined) {
    throw new UsageError("--size applies to ping and bench modes (add --ping or --bench)");
  }
  return undefined;
}

function positiveDuration(text: string, flag: string): number {
  const ms = parseDurationFlag(text, flag);
  if (!(ms > 0)) throw new UsageError(`${flag} must be above 0, got "${text}"`);
  return ms;
}

/** Runs `body` with an abort signal that the first Ctrl-C fires; a second one exits at once. */
async function interruptible<T>(body: (signal: AbortSignal) => Promise<T>): Promise<T> {
  const controller = new AbortController();
  using _signals = onShutdownSignals({
    graceful: () => controller.abort(),
    immediate: () => Deno.exit(130),
  }, ["SIGINT"]);
  return await body(controller.signal);
}

/** Ping and bench succeed when something came back and nothing came back altered. */
function measureExitCode(result: ProbeResult): number {
  return result.mismatches === 0 && result.received + result.late > 0 ? EXIT_OK : EXIT_FAILURE;
}

const encoder = new TextEncoder();

function writeStderr(text: string): void {
  const bytes = encoder.encode(text);
  for (let written = 0; written < bytes.length;) {
    written += Deno.stderr.writeSync(bytes.subarray(written));
  }
}

/** `--workers N` (1 to 64) or `auto` (one per core), at most the connections and the count. */
function parseProbeWorkers(
  text: string,
  limits: { connections: number; count?: number },
): number {
  const cap = Math.min(64, limits.connections, limits.count ?? Infinity);
  if (text === "auto") return Math.max(1, Math.min(navigator.hardwareConcurrency || 1, cap));
  const n = parseInteger(text, "--workers", { min: 1, max: 64 });
  if (n > limits.connections) {
    throw new UsageError(
      `--workers ${n} is more than -c ${limits.connections}: a worker needs a connection`,
    );
  }
  if (limits.count !== undefined && n > limits.count) {
    throw new UsageError(`--workers ${n} is more than --count ${limits.count}`);
  }
  return n;
}

/**
 * Web Workers load their module from this file's directory: without read access Deno reports
 * each worker's failure as an uncaught multi-line error, so ask first and fail with one line.
 */
function requireWorkerRead(): void {
  const here = new URL(".", import.meta.url);
  if (here.protocol !== "file:") return;
  const state = Deno.permissions.querySync({ name: "read", path: here }).state;
  if (state !== "granted") {
    throw new Deno.errors.NotCapable(
      `--workers needs --allow-read (the workers load their module from ${here.pathname})`,
    );
  }
}

/** An open --hdr-log file: the header at once, a line per interval, written synchronously. */
class HdrLogFile implements Disposable {
  readonly #file: Deno.FsFile;
  readonly #base: number;

  constructor(path: string, base: number) {
    try {
      this.#file = Deno.openSync(path, { write: true, create: true, truncate: true });
    } catch (error) {
      if (error instanceof Deno.errors.NotCapable) {
        throw new Deno.errors.NotCapable(`--hdr-log needs --allow-write for ${path}`);
      }
      const why = error instanceof Deno.errors.NotFound
        ? "no such directory"
        : (error as Error).message.split("\n")[0];
      throw new UsageError(`--hdr-log ${path}: ${why}`);
    }
    this.#base = base;
    this.#write(formatHdrLogHeader(base));
  }

  add(report: ProbeIntervalReport): void {
    this.#write(formatHdrLogInterval(report.histogram, report, this.#base));
  }

  #write(text: string): void {
    const bytes = encoder.encode(text);
    for (let written = 0; written < bytes.length;) {
      written += this.#file.writeSync(bytes.subarray(written));
    }
  }

  [Symbol.dispose](): void {
    this.#file.close();
  }
}

/**
 * `client.ts merge FILE...`: the --json results of several runs -> one result, printed as a
 * summary or (--json) one object. Reads files only; bad input is one line and exit 2.
 *
 * @param files The result files.
 * @param values Parsed flags (only --json applies).
 * @returns The exit code.
 */
export async function merge(files: string[], values: FlagValues): Promise<number> {
  const extra = Object.keys(values).find((k) => k !== "json" && values[k] !== undefined);
  if (extra !== undefined) throw new UsageError(`merge takes only --json, not --${extra}`);
  if (files.length === 0) {
    throw new UsageError("merge needs the result files: client.ts merge A.json B.json ...");
  }
  const records = [];
  try {
    for (const file of files) {
      records.push(parseProbeResultRecord(await readInputFile(file, "merge"), file));
    }
    const result = mergeProbeResults(records, { names: files });
    const mode = records[0].mode === "ping" ? "ping" : "bench";
    if (values.json) {
      console.log(JSON.stringify({ ...probeJson(result, { mode }), merged: files }));
    } else {
      const colors = paletteFor(Deno.stdout);
      console.log(formatMergeHeader(result, files));
      console.log(formatBenchSummary(result, colors));
      console.log(`\n${renderHistogram(result.histogram, colors)}`);
    }
    return measureExitCode(result);
  } catch (error) {
    if (error instanceof ProbeMergeError) throw new UsageError(`merge: ${error.message}`);
    throw error;
  }
}

/**
 * Ping or bench mode: flags -> probe options -> runProbe() (or runProbeWorkers()) -> lines,
 * interval reports, summary, histogram or JSON.
 *
 * @param mode Which mode.
 * @param values Parsed flags.
 * @param common The flags every mode shares, already checked, and where to connect (`ws`: a
 * WebSocket target, `url` or `hostname`/`port`).
 * @returns The exit code.
 */
export async function measure(
  mode: "ping" | "bench",
  values: FlagValues,
  common: {
    udp: boolean;
    ws?: boolean;
    json: boolean;
    target: TcpClientOptions & Pick<WsUrlOptions, "url" | "path">;
    timeout?: number;
  },
): Promise<number> {
  const { udp, json, target, timeout } = common;
  const ws = Boolean(common.ws);
  const stream = Boolean(values.stream);
  if (stream && (udp || ws)) {
    throw new UsageError(`--stream is TCP only, not ${udp ? "UDP" : "--ws"}`);
  }
  if (stream && values.rate !== undefined) {
    throw new UsageError("--rate and --stream exclude each other: a stream keeps its window full");
  }
  const count = values.count === undefined
    ? undefined
    : parseInteger(values.count as string, "--count", { min: 1 });
  const interval = mode !== "ping"
    ? undefined
    : values.interval === undefined
    ? 1000
    : positiveDuration(values.interval as string, "--interval");
  let duration = values.duration === undefined
    ? undefined
    : positiveDuration(values.duration as string, "--duration");
  if (mode === "bench" && duration === undefined && count === undefined) duration = 10_000;
  const connections = values.connections === undefined
    ? 1
    : parseInteger(values.connections as string, "--connections", {
      min: 1,
      max: MAX_PROBE_CONNECTIONS,
    });
  const size = values.size === undefined
    ? (stream ? DEFAULT_STREAM_SIZE : DEFAULT_PROBE_SIZE)
    : parseInteger(values.size as string, "--size", {
      min: 1,
      max: udp ? MAX_UDP_PAYLOAD : MAX_PROBE_TCP_SIZE,
    });
  const pipeline = values.pipeline !== undefined
    ? parseInteger(values.pipeline as string, "--pipeline", { min: 1, max: 1_000_000 })
    : mode === "bench"
    ? (stream ? DEFAULT_STREAM_PIPELINE : 1)
    : undefined;
  const rate = values.rate === undefined
    ? undefined
    : parseRate(values.rate as string, "--rate", "requests");
  const warmup = values.warmup === undefined
    ? 0
    : parseDurationFlag(values.warmup as string, "--warmup");
  const reportEvery = values["report-interval"] === undefined
    ? undefined
    : positiveDuration(values["report-interval"] as string, "--report-interval");
  const hdrLogPath = values["hdr-log"] as string | undefined;
  if (hdrLogPath === "") throw new UsageError("--hdr-log must not be empty");
  if (values.workers !== undefined && mode === "ping") {
    throw new UsageError("--workers is for bench: ping is one schedule of one probe at a time");
  }
  const workers = values.workers === undefined
    ? undefined
    : parseProbeWorkers(values.workers as string, { connections, count });
  if (workers !== undefined) requireWorkerRead();
  const options: ProbeOptions = {
    transport: udp ? "udp" : ws ? "ws" : "tcp",
    ...target,
    connections,
    size,
    count,
    duration,
    pipeline,
    interval,
    rate,
    warmup,
    stream,
    timeout,
    reportInterval: reportEvery ?? (hdrLogPath !== undefined ? 1000 : undefined),
    ...proxyHeaderFlag(values, udp),
  };
  try {
    validateProbeOptions(options);
  } catch (error) {
    if (error instanceof RangeError || error instanceof TypeError) {
      throw new UsageError(error.message);
    }
    throw error;
  }
  const address: EchoAddress = ws
    ? wsAddress(wsUrl(target))
    : target.unix !== undefined
    ? { hostname: "", port: 0, transport: "unix", path: target.unix }
    : { hostname: target.hostname!, port: target.port!, transport: udp ? "udp" : "tcp" };
  // A wss: URL speaks TLS without --tls.
  const tls = target.tls !== undefined || (ws && wsUrl(target).startsWith("wss:"));
  const colors = paletteFor(Deno.stdout);
  const human = mode === "ping" ? !json : !json && Deno.stdout.isTerminal();
  const run: RunDescription = { mode, rate, interval, duration, count, warmup };
  run.startTime = Date.now();
  using hdrLog = hdrLogPath === undefined ? undefined : new HdrLogFile(hdrLogPath, run.startTime);
  const onInterval = hdrLog === undefined && reportEvery === undefined
    ? undefined
    : (report: ProbeIntervalReport) => {
      hdrLog?.add(report);
      if (reportEvery === undefined) return;
      console.log(
        human
          ? formatIntervalLine(report, options.transport!)
          : JSON.stringify(intervalJson(report, mode)),
      );
    };
  const explain = (error: unknown) =>
    target.unix === undefined ? error : unixPermissionError(error, target.unix);
  const probe = (hooks: Partial<ProbeOptions>) =>
    interruptible((signal) => {
      const all = { ...options, ...hooks, signal, onInterval };
      return workers === undefined ? runProbe(all) : runProbeWorkers(all, { workers });
    }).catch((error) => Promise.reject(explain(error)));

  if (mode === "ping") {
    if (human) {
      console.log(
        formatPingHeader({ transport: options.transport!, address, size, tls }, interval!),
      );
    }
    const result = await probe({
      onReply: human
        ? (reply) => {
          if (!reply.warmup) console.log(formatPingReply(reply, address, colors));
        }
        : undefined,
      onError: human ? (error) => console.error(error.message) : undefined,
    });
    run.endTime = Date.now();
    console.log(
      human ? `\n${formatPingSummary(result, colors)}` : JSON.stringify(probeJson(result, run)),
    );
    return measureExitCode(result);
  }

  // The progress line rewrites itself with escapes: only on a terminal, and not beside interval
  // lines or across workers (which cannot carry a per-second hook).
  const progress = human && Deno.stderr.isTerminal() && reportEvery === undefined &&
    workers === undefined;
  if (human) {
    console.log(
      formatBenchHeader(
        {
          transport: options.transport!,
          address,
          connections,
          size,
          pipeline: pipeline!,
          stream,
          tls,
        },
        run,
      ),
    );
  }
  let firstError: string | undefined;
  const result = await probe(
    workers !== undefined ? {} : {
      onProgress: progress ? (p) => writeStderr(`\r\x1b[2K${formatProgress(p)}`) : undefined,
      onError: (error) => void (firstError ??= error.message),
    },
  );
  run.endTime = Date.now();
  if (progress) writeStderr("\r\x1b[2K");
  if (human) {
    console.log(formatBenchSummary(result, colors));
    console.log(`\n${renderHistogram(result.histogram, colors)}`);
  } else {
    console.log(JSON.stringify(probeJson(result, run)));
  }
  if (firstError !== undefined) {
    console.error(
      `first of ${result.errors} error${result.errors === 1 ? "" : "s"}: ${firstError}`,
    );
  }
  return measureExitCode(result);
}
