/**
 * The probe engine behind the client's ping and bench modes: it opens TCP connections or UDP
 * sockets to any RFC 862 echo server, sends probes on a schedule, matches and verifies every
 * reply, and summarises latency (a {@linkcode Histogram}), throughput, errors, and for UDP loss,
 * lateness, duplication, reordering and jitter (a {@linkcode SequenceTracker} per socket).
 *
 * Three schedules:
 * - closed (the default): every connection keeps `pipeline` requests in flight and sends the next
 *   one as soon as a reply frees a place — the fastest a server can answer;
 * - `rate` (open model): requests are due at fixed times, `rate` per second in total; latency runs
 *   from each request's *intended* send time, so a server that stalls cannot hide the requests it
 *   delayed (no coordinated omission); `pipeline` caps what each connection has in flight;
 * - `interval` (ping): one probe per interval in total, latency likewise from the intended time.
 *
 * TCP probes are a fixed byte pattern indexed by stream offset, so every echoed byte is checked,
 * and a reply is complete when `size` bytes have come back. UDP probes carry a random run id, a
 * sequence number and the send time (see {@linkcode encodeProbe}), so replies are told apart,
 * strays from another run are ignored, and a truncated or altered reply is caught. The TCP lane
 * also runs over TLS (`tls`) and Unix sockets (`unix`), with the same checks and accounting. The
 * WebSocket lane (`transport: "ws"`, `ws:` or `wss:`) sends each request as one binary message of
 * `size` bytes cut from the TCP lane's pattern (indexed by the connection's message offset), so an
 * echo that alters, drops, reorders or resizes a message is caught the same way.
 *
 * With `reportInterval` and `onInterval`, each interval of the measured part is reported as it
 * ends (counts, rates, its own latency histogram); the intervals add up to the result. Results
 * travel and merge with `probeResultToRecord` / `mergeProbeResults` (`probe_result.ts`), spread
 * over threads with `runProbeWorkers` (`probe_workers.ts`), and export to HdrHistogram logs
 * (`hdr_log.ts`).
 *
 * Layout: this file holds the options check and {@linkcode runProbe}; the public types are in
 * `_probe_types.ts`, the run (schedule, budget, timers, result) in `_probe_run.ts`, interval
 * reports in `_probe_interval.ts`, and the lanes in `_probe_tcp.ts`, `_probe_udp.ts` and
 * `_probe_ws.ts`.
 *
 * The hot loops reuse their buffers: one read loop per TCP connection that parses replies by
 * length, one receive loop per UDP socket, writes batched per connection; hooks cost nothing when
 * absent.
 *
 * @example A two-second TCP benchmark against a local server
 * ```ts
 * import { runProbe } from "./probe.ts";
 * import { serveEcho } from "./serve.ts";
 *
 * await using server = await serveEcho({ port: 0 });
 * const result = await runProbe({ port: server.addr.port, connections: 4, duration: 2000 });
 * console.log(result.received, result.requestsPerSecond, result.latency.p99);
 * ```
 *
 * @module
 */
import { PROBE_HEADER_SIZE } from "./sequence.ts";
import { DEFAULT_HOSTNAME, DEFAULT_PORT } from "./types.ts";
import { MAX_UDP_PAYLOAD } from "./udp.ts";
import { ProbeRun, type Settings } from "./_probe_run.ts";
import { openTcpLanes } from "./_probe_tcp.ts";
import { openUdpLanes } from "./_probe_udp.ts";
import { openWsLanes } from "./_probe_ws.ts";
import { DEFAULT_WS_PORT, wsAddress, wsUrl } from "./_ws_options.ts";
import type { ProbeOptions, ProbeResult } from "./_probe_types.ts";

export type {
  ProbeIntervalReport,
  ProbeOptions,
  ProbeProgress,
  ProbeReply,
  ProbeReplyKind,
  ProbeResult,
} from "./_probe_types.ts";

/** Default probe size in bytes (a ping packet's size). */
export const DEFAULT_PROBE_SIZE = 64;
/** Default time to wait for a UDP reply before the probe counts as lost, in ms. */
export const DEFAULT_PROBE_UDP_TIMEOUT = 1000;
/** Default time a TCP request may go unanswered before its connection counts an error, in ms. */
export const DEFAULT_PROBE_TCP_TIMEOUT = 5000;
/** Default chunk size of `stream` mode, in bytes (64 KiB). */
export const DEFAULT_STREAM_SIZE = 64 * 1024;
/** Default chunks in flight per connection in `stream` mode (a 256 KiB window). */
export const DEFAULT_STREAM_PIPELINE = 4;
/** The largest TCP request size accepted, in bytes (16 MiB). */
export const MAX_PROBE_TCP_SIZE = 16 * 1024 * 1024;
/** The most connections or sockets one run may open. */
export const MAX_PROBE_CONNECTIONS = 100_000;

function isPositiveFinite(value: unknown): value is number {
  return typeof value === "number" && Number.isFinite(value) && value > 0;
}

function checkInteger(name: string, value: unknown, min: number, max: number): void {
  if (typeof value !== "number" || !Number.isInteger(value) || value < min || value > max) {
    throw new RangeError(`${name} must be a whole number from ${min} to ${max}, got ${value}`);
  }
}

/** The WebSocket lane's URL, checked: a ws: or wss: URL, or one built from its parts. */
function wsProbeUrl(options: ProbeOptions): string {
  const { url, path, tls } = options;
  if (url !== undefined) {
    if (typeof url !== "string") throw new TypeError(`url must be a string, got ${url}`);
    if (path !== undefined) throw new TypeError("url names the path: leave out path");
  }
  if (path !== undefined && (typeof path !== "string" || !path.startsWith("/"))) {
    throw new TypeError(`path must start with "/", got ${JSON.stringify(path)}`);
  }
  let href: string;
  try {
    href = wsUrl({ url, hostname: options.hostname, port: options.port, path, tls });
  } catch (error) {
    throw new TypeError(error instanceof TypeError ? error.message : `url: ${error}`);
  }
  if (href.startsWith("ws:") && tls !== undefined) {
    throw new TypeError(`tls with a ws: URL: give a wss: URL for TLS (${href})`);
  }
  return href;
}

function settingsOf(options: ProbeOptions): Settings {
  if (typeof options !== "object" || options === null) {
    throw new TypeError(`probe options must be an object, got ${options}`);
  }
  const transport = options.transport ?? "tcp";
  if (transport !== "tcp" && transport !== "udp" && transport !== "ws") {
    throw new TypeError(
      `transport must be "tcp" or "udp" (or "ws": WebSocket), got ${JSON.stringify(transport)}`,
    );
  }
  const udp = transport === "udp";
  const ws = transport === "ws";
  if (!ws && (options.url !== undefined || options.path !== undefined)) {
    throw new TypeError("url and path are for transport ws (WebSocket)");
  }
  const hostname = options.hostname ?? DEFAULT_HOSTNAME;
  if (typeof hostname !== "string" || hostname === "") {
    throw new TypeError(`hostname must be a non-empty string, got ${JSON.stringify(hostname)}`);
  }
  const port = options.port ?? (ws ? DEFAULT_WS_PORT : DEFAULT_PORT);
  checkInteger("port", port, 1, 65535);
  const { unix } = options;
  let tls = options.tls;
  const url = ws ? wsProbeUrl(options) : undefined;
  if (url !== undefined && url.startsWith("wss:")) tls ??= {};
  if (unix !== undefined) {
    if (typeof unix !== "string" || unix === "") {
      throw new TypeError(`unix must be a socket path, got ${JSON.stringify(unix)}`);
    }
    if (udp || ws) throw new TypeError("unix is a stream socket: it takes transport tcp");
    if (options.hostname !== undefined || options.port !== undefined) {
      throw new TypeError("unix connects to a socket path: leave out hostname and port");
    }
    if (tls !== undefined) throw new TypeError("tls is not supported over unix sockets");
  }
  if (tls !== undefined) {
    if (typeof tls !== "object" || tls === null) {
      throw new TypeError(`tls must be an object ({ caCerts, servername }), got ${tls}`);
    }
    if (udp) throw new TypeError("tls is TCP only (and WebSocket's wss:)");
    if (ws && tls.servername !== undefined) {
      throw new TypeError("tls.servername is not supported over ws: the URL's host is the name");
    }
  }
  const proxyHeader = options.proxyHeader;
  if (proxyHeader !== undefined) {
    if (proxyHeader !== 1 && proxyHeader !== 2) {
      throw new RangeError(`proxyHeader must be 1 or 2, got ${proxyHeader}`);
    }
    if (udp || ws) throw new TypeError("proxyHeader is for TCP (streams) only");
  }
  if (options.reportInterval !== undefined && !isPositiveFinite(options.reportInterval)) {
    throw new RangeError(
      `reportInterval must be a finite number above 0, got ${options.reportInterval}`,
    );
  }
  if (options.onInterval !== undefined && typeof options.onInterval !== "function") {
    throw new TypeError("onInterval must be a function");
  }
  const connections = options.connections ?? 1;
  checkInteger("connections", connections, 1, MAX_PROBE_CONNECTIONS);
  const stream = options.stream ?? false;
  if (stream && transport !== "tcp") throw new TypeError("stream mode is TCP only");
  if (options.rate !== undefined && options.interval !== undefined) {
    throw new TypeError("rate and interval exclude each other: give one schedule");
  }
  if (stream && (options.rate !== undefined || options.interval !== undefined)) {
    throw new TypeError("stream mode keeps its window full: it takes no rate or interval");
  }
  const size = options.size ?? (stream ? DEFAULT_STREAM_SIZE : DEFAULT_PROBE_SIZE);
  if (udp && typeof size === "number" && Number.isInteger(size) && size < PROBE_HEADER_SIZE) {
    throw new RangeError(
      `UDP probes need at least ${PROBE_HEADER_SIZE} bytes (run id, sequence number, send time), got ${size}`,
    );
  }
  checkInteger(
    "size",
    size,
    udp ? PROBE_HEADER_SIZE : 1,
    udp ? MAX_UDP_PAYLOAD : MAX_PROBE_TCP_SIZE,
  );
  if (options.count !== undefined) checkInteger("count", options.count, 1, Number.MAX_SAFE_INTEGER);
  for (const name of ["duration", "interval", "rate", "timeout"] as const) {
    const value = options[name];
    if (value !== undefined && !isPositiveFinite(value)) {
      throw new RangeError(`${name} must be a finite number above 0, got ${value}`);
    }
  }
  const warmup = options.warmup ?? 0;
  if (typeof warmup !== "number" || !Number.isFinite(warmup) || warmup < 0) {
    throw new RangeError(`warmup must be a finite number of ms >= 0, got ${warmup}`);
  }
  const scheduled = options.rate !== undefined || options.interval !== undefined;
  const pipeline = options.pipeline ??
    (options.interval !== undefined ? Infinity : stream ? DEFAULT_STREAM_PIPELINE : 1);
  if (pipeline !== Infinity) checkInteger("pipeline", pipeline, 1, 1_000_000);
  if (!scheduled && pipeline === Infinity) {
    throw new RangeError("pipeline must be finite without a rate or interval (closed model)");
  }
  const address = url === undefined ? undefined : wsAddress(url);
  return {
    hostname: address?.hostname ?? hostname,
    port: address?.port ?? port,
    transport,
    url,
    connections,
    size,
    count: options.count ?? Infinity,
    duration: options.duration ?? Infinity,
    pipeline,
    period: options.interval ?? (options.rate !== undefined ? 1000 / options.rate : 0),
    warmup,
    stream,
    timeout: options.timeout ?? (udp ? DEFAULT_PROBE_UDP_TIMEOUT : DEFAULT_PROBE_TCP_TIMEOUT),
    reportInterval: options.onInterval ? options.reportInterval ?? 1000 : 0,
    tls,
    unix,
    proxyHeader,
  };
}

/**
 * Checks probe options without running anything: throws exactly what {@linkcode runProbe} would
 * reject with for bad options, so a CLI can turn it into a usage error.
 *
 * @example
 * ```ts
 * import { validateProbeOptions } from "./probe.ts";
 *
 * try {
 *   validateProbeOptions({ transport: "udp", size: 8 });
 * } catch (error) {
 *   console.log((error as RangeError).message); // UDP probes need at least 24 bytes ...
 * }
 * ```
 *
 * @param options The options to check.
 * @throws {RangeError} When a number is out of range (for example a UDP size below 24).
 * @throws {TypeError} When options conflict (`rate` with `interval` or `stream`, UDP `stream`).
 */
export function validateProbeOptions(options: ProbeOptions): void {
  settingsOf(options);
}

/**
 * Runs a probe: ping (`interval`), closed-model load (the default), open-model load (`rate`) or TCP
 * streaming (`stream`) against an echo server, and resolves with the measured results. The run
 * ends after `count` requests or `duration` ms (whichever comes first, after `warmup`), or when
 * `signal` aborts — then with the results so far. Connection failures during the run are counted
 * and the connection is opened again; only a run where no TCP connection can be opened at all (or
 * no UDP socket bound) rejects.
 *
 * @example Ping a server three times over UDP, printing each reply
 * ```ts
 * import { runProbe } from "./probe.ts";
 * import { serveEcho } from "./serve.ts";
 *
 * await using server = await serveEcho({ port: 0 });
 * const result = await runProbe({
 *   transport: "udp",
 *   port: server.addr.port,
 *   count: 3,
 *   interval: 20,
 *   onReply: (r) => console.log(`seq=${r.seq} time=${r.rtt.toFixed(3)} ms`),
 * });
 * console.log(result.sent, result.received, result.lost); // 3 3 0
 * ```
 *
 * @param options What to measure; see {@linkcode ProbeOptions}.
 * @returns The results of the measured part of the run.
 * @throws {RangeError} When an option is out of range (see {@linkcode validateProbeOptions}).
 * @throws {TypeError} When options conflict.
 * @throws {EchoConnectionError} When no connection can be opened or no socket bound.
 */
export async function runProbe(options: ProbeOptions): Promise<ProbeResult> {
  const settings = settingsOf(options);
  const open = settings.transport === "tcp"
    ? openTcpLanes
    : settings.transport === "udp"
    ? openUdpLanes
    : openWsLanes;
  const run = new ProbeRun(settings, options, open);
  return await run.start();
}
