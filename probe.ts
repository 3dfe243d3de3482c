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
 * strays from another run are ignored, and a truncated or altered reply is caught.
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
import type { EchoAddress } from "./errors.ts";
import {
  describeNetworkError,
  EchoConnectionError,
  EchoError,
  EchoMismatchError,
  EchoTimeoutError,
  formatAddress,
} from "./errors.ts";
import { Histogram, type HistogramSummary } from "./histogram.ts";
import {
  decodeProbe,
  encodeProbe,
  type Probe,
  PROBE_HEADER_SIZE,
  SequenceTracker,
  verifyProbe,
} from "./sequence.ts";
import { Buffer } from "node:buffer";
import { clearImmediate, setImmediate } from "node:timers";
import { DEFAULT_HOSTNAME, DEFAULT_PORT } from "./types.ts";
import { MAX_UDP_PAYLOAD, resolveHost } from "./udp.ts";
import type { UdpBackend } from "./_udp_backend.ts";
import { RECEIVE_BUFFER_SIZE } from "./_udp_backend.ts";
import { bindUdp } from "./_udp_bind.ts";
import type { UdpBackendKind } from "./types.ts";

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

/** How a reply was classified, as passed to {@linkcode ProbeOptions.onReply}. */
export type ProbeReplyKind = "reply" | "late" | "duplicate" | "mismatch";

/** One reply, as passed to {@linkcode ProbeOptions.onReply}. */
export interface ProbeReply {
  /** Which connection (TCP) or socket (UDP) it came on, from 0. */
  connection: number;
  /** The request's sequence number on that connection or socket, from 0; -1 when unreadable. */
  seq: number;
  /** The reply's size in bytes. */
  bytes: number;
  /**
   * Round-trip time in ms, from the request's send time (its intended send time with `rate` or
   * `interval`) to the arrival of its last byte. `NaN` for a UDP reply too damaged to read.
   */
  rtt: number;
  /**
   * `reply` (intact, in time), `late` (UDP: first reply after the timeout), `duplicate` (UDP: a
   * second reply to one probe) or `mismatch` (the bytes differ from what was sent).
   */
  kind: ProbeReplyKind;
  /** Whether the request was sent during the warm-up (not counted in the results). */
  warmup: boolean;
}

/** A progress report, as passed to {@linkcode ProbeOptions.onProgress} once a second. */
export interface ProbeProgress {
  /** Time since the run started (warm-up included), in ms. */
  elapsed: number;
  /** Requests completed in the measured part of the run so far. */
  requests: number;
  /** Requests completed per second over the last report period (warm-up included). */
  rate: number;
  /** Errors so far (connection failures, TCP timeouts, failed sends). */
  errors: number;
  /** Whether the run is still warming up. */
  warmup: boolean;
}

/** What to measure and how; see {@linkcode runProbe}. */
export interface ProbeOptions {
  /** Server host name or address. Default `127.0.0.1`. */
  hostname?: string;
  /** Server port, 1 to 65535. Default 5006. */
  port?: number;
  /** `tcp` (default) or `udp`. */
  transport?: "tcp" | "udp";
  /** TCP connections or UDP sockets to use, 1 to 100,000. Default 1. */
  connections?: number;
  /**
   * Bytes per request (TCP) or datagram (UDP). Default 64. UDP: 24 (the probe header) to 65,507;
   * TCP: 1 to 16 MiB. In `stream` mode the unit in which latency is recorded (default 64 KiB).
   */
  size?: number;
  /** Measured requests to send in total; the run ends when all are answered, lost or failed. */
  count?: number;
  /** How long to measure, in ms (after the warm-up). Without `count` or `duration`: until aborted. */
  duration?: number;
  /**
   * Requests in flight per connection at most (an integer >= 1, or `Infinity`). Default 1, or
   * no limit with `interval`. With `stream`, the window is `pipeline` × `size` bytes (default 4).
   */
  pipeline?: number;
  /** Send one request every `interval` ms in total (ping). Excludes `rate`. */
  interval?: number;
  /** Send `rate` requests per second in total on a fixed schedule (open model). Excludes `interval`. */
  rate?: number;
  /** Run this long first, in ms, and discard what it measured. Default 0. */
  warmup?: number;
  /**
   * TCP only: keep a window of `pipeline` × `size` bytes in flight on every connection and report
   * the echoed bytes per second (closed model only: excludes `rate` and `interval`).
   */
  stream?: boolean;
  /**
   * UDP: a probe without a reply this long (ms) is lost, and a reply after it is late. TCP: a
   * request unanswered this long is an error and the connection is closed and opened again; also
   * the connect timeout. Default 1000 (UDP) or 5000 (TCP).
   */
  timeout?: number;
  /** Ends the run early; the promise then resolves with the results so far (`aborted: true`). */
  signal?: AbortSignal;
  /** UDP backend: `deno`, `node` or `auto` (default). */
  backend?: UdpBackendKind | "auto";
  /** Called for every reply (allocates an object per call; leave unset for top speed). */
  onReply?: (reply: ProbeReply) => void;
  /** Called once a second while the run lasts. */
  onProgress?: (progress: ProbeProgress) => void;
  /** Called for every error counted (connection failure, TCP timeout, failed send). */
  onError?: (error: EchoError) => void;
}

/** The outcome of {@linkcode runProbe}. Counts cover the measured part of the run only. */
export interface ProbeResult {
  /** `tcp` or `udp`. */
  transport: "tcp" | "udp";
  /** The server. */
  address: EchoAddress;
  /** Connections or sockets used. */
  connections: number;
  /** Bytes per request. */
  size: number;
  /** Requests in flight per connection at most. */
  pipeline: number;
  /** Whether this was a TCP stream run. */
  stream: boolean;
  /** Whether the run was ended by the abort signal. */
  aborted: boolean;
  /** Length of the measured part of the run, in ms (up to the last reply). */
  elapsed: number;
  /** Requests sent. */
  sent: number;
  /** Requests answered intact and (UDP) in time: the completed requests. */
  received: number;
  /** Echoed payload bytes received intact (one direction). */
  bytes: number;
  /** `received` per second of `elapsed`. */
  requestsPerSecond: number;
  /** `bytes` per second of `elapsed`. */
  bytesPerSecond: number;
  /** Latency of the completed requests, in microseconds. */
  latency: HistogramSummary;
  /** The latency histogram itself (microseconds), for drawing the distribution. */
  histogram: Histogram;
  /** Errors: connection failures, TCP timeouts, failed sends. */
  errors: number;
  /** Replies whose bytes differed from what was sent (UDP: the probe then counts as lost). */
  mismatches: number;
  /** TCP: requests in flight on a connection that failed. */
  failed: number;
  /** UDP: probes with no reply within the timeout, and none since. */
  lost: number;
  /** UDP: probes whose first reply came after the timeout (not counted as lost). */
  late: number;
  /** UDP: second and later replies to one probe. */
  duplicates: number;
  /** UDP: first replies overtaken by a reply to a later probe on the same socket (RFC 4737). */
  reordered: number;
  /** UDP: RFC 3550 interarrival jitter, in microseconds (averaged over sockets by replies). */
  jitter: number;
  /** UDP: datagrams that were not replies to this run (other senders, other runs, too old). */
  strays: number;
  /** Requests sent whose fate is unknown: still in flight when the run was aborted. */
  outstanding: number;
  /** With `rate` or `duration`: requests that were due but never sent (the pipeline was full). */
  unsent: number;
  /** Connections or sockets that completed at least one measured request. */
  connectionsServed: number;
}

/** The payload pattern of TCP requests repeats every PERIOD bytes (a prime, so it never aligns). */
const PERIOD = 251;
/** Pause before a failed TCP connection is opened again, in ms. */
const RECONNECT_DELAY = 100;
/** How close to a scheduled send the engine stops sleeping on a timer and spins, in ms. */
const SPIN_WINDOW = 4;
/** Progress reports come this often, in ms. */
const PROGRESS_PERIOD = 1000;
/** Segments at least this long are compared natively (Buffer.compare); shorter ones in JS. */
const NATIVE_COMPARE_MIN = 256;
/** The most bytes one TCP write or read covers. */
const MAX_IO = 256 * 1024;

interface Settings {
  hostname: string;
  port: number;
  transport: "tcp" | "udp";
  connections: number;
  size: number;
  count: number;
  duration: number;
  pipeline: number;
  period: number;
  warmup: number;
  stream: boolean;
  timeout: number;
}

function isPositiveFinite(value: unknown): value is number {
  return typeof value === "number" && Number.isFinite(value) && value > 0;
}

function checkInteger(name: string, value: unknown, min: number, max: number): void {
  if (typeof value !== "number" || !Number.isInteger(value) || value < min || value > max) {
    throw new RangeError(`${name} must be a whole number from ${min} to ${max}, got ${value}`);
  }
}

function settingsOf(options: ProbeOptions): Settings {
  if (typeof options !== "object" || options === null) {
    throw new TypeError(`probe options must be an object, got ${options}`);
  }
  const transport = options.transport ?? "tcp";
  if (transport !== "tcp" && transport !== "udp") {
    throw new TypeError(`transport must be "tcp" or "udp", got ${JSON.stringify(transport)}`);
  }
  const udp = transport === "udp";
  const hostname = options.hostname ?? DEFAULT_HOSTNAME;
  if (typeof hostname !== "string" || hostname === "") {
    throw new TypeError(`hostname must be a non-empty string, got ${JSON.stringify(hostname)}`);
  }
  const port = options.port ?? DEFAULT_PORT;
  checkInteger("port", port, 1, 65535);
  const connections = options.connections ?? 1;
  checkInteger("connections", connections, 1, MAX_PROBE_CONNECTIONS);
  const stream = options.stream ?? false;
  if (stream && udp) throw new TypeError("stream mode is TCP only");
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
  return {
    hostname,
    port,
    transport,
    connections,
    size,
    count: options.count ?? Infinity,
    duration: options.duration ?? Infinity,
    pipeline,
    period: options.interval ?? (options.rate !== undefined ? 1000 / options.rate : 0),
    warmup,
    stream,
    timeout: options.timeout ?? (udp ? DEFAULT_PROBE_UDP_TIMEOUT : DEFAULT_PROBE_TCP_TIMEOUT),
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
  const run = new ProbeRun(settings, options);
  return await run.start();
}

/** A growable ring of numbers (power-of-two capacity); no allocation once it has grown. */
class Ring {
  #buf: Float64Array;
  #mask: number;
  #head = 0;
  length = 0;

  constructor(capacity: number) {
    let cap = 8;
    while (cap < capacity) cap *= 2;
    this.#buf = new Float64Array(cap);
    this.#mask = cap - 1;
  }

  push(value: number): void {
    if (this.length > this.#mask) this.#grow();
    this.#buf[(this.#head + this.length) & this.#mask] = value;
    this.length++;
  }

  shift(): number {
    const value = this.#buf[this.#head];
    this.#head = (this.#head + 1) & this.#mask;
    this.length--;
    return value;
  }

  peek(): number {
    return this.#buf[this.#head];
  }

  at(i: number): number {
    return this.#buf[(this.#head + i) & this.#mask];
  }

  clear(): void {
    this.#head = 0;
    this.length = 0;
  }

  #grow(): void {
    const next = new Float64Array(this.#buf.length * 2);
    for (let i = 0; i < this.length; i++) next[i] = this.at(i);
    this.#buf = next;
    this.#mask = next.length - 1;
    this.#head = 0;
  }
}

/** What the run needs from a connection or socket. */
interface Worker {
  /** Requests in flight plus requests handed over but not yet sent. */
  load(): number;
  /** Whether it can take requests now (TCP: connected). */
  ready(): boolean;
  /** Takes a request due at `at` (scheduled modes). */
  enqueue(at: number): void;
  /** Sends what it can. */
  pump(): void;
  /** Periodic checks: UDP expiry, TCP timeouts. */
  tick(now: number): void;
  /** Drops requests handed over but not sent; returns how many of them were measured. */
  dropQueued(): number;
  /** Closes the connection or socket for good. */
  close(): void;
  /** Completed measured requests. */
  served: number;
}

class ProbeRun {
  readonly s: Settings;
  readonly options: ProbeOptions;
  readonly histogram = new Histogram();
  readonly address: EchoAddress;
  readonly scheduled: boolean;
  /** Aborted when the run finishes, to cancel connects in progress. */
  readonly closing = new AbortController();

  startAt = 0;
  measureStart = 0;
  measureEnd = Infinity;
  /** No request is admitted any more; the run finishes once in-flight ones settle. */
  noMore = false;
  stopAt = Infinity;
  finished = false;
  lastActivity = 0;
  lastReplyAt = -Infinity;

  /** Requests sent and not settled, over all workers. */
  inflight = 0;
  /** Requests handed to workers and not sent yet. */
  queued = 0;
  /** Measured requests admitted (the `count` budget). */
  admitted = 0;
  /** Scheduled mode: index of the next request of the schedule. */
  index = 0;
  /** Scheduled mode: measured requests due before the end that were never handed out. */
  unsent = 0;

  sent = 0;
  received = 0;
  bytes = 0;
  errors = 0;
  mismatches = 0;
  failed = 0;
  /** Completed requests, warm-up included (for progress). */
  completedAll = 0;

  workers: Worker[] = [];
  #rr = 0;
  #timer: ReturnType<typeof setTimeout> | undefined;
  /** Whether a wake-up for the schedule is pending (a timer or a spin message). */
  #waiting = false;
  #immediate: ReturnType<typeof setImmediate> | undefined;
  #wake = () => {
    this.#timer = undefined;
    this.#immediate = undefined;
    this.#waiting = false;
    this.dispatch(performance.now());
  };
  #tick: ReturnType<typeof setInterval> | undefined;
  #progress: ReturnType<typeof setInterval> | undefined;
  #endTimer: ReturnType<typeof setTimeout> | undefined;
  #progressDone = 0;
  #progressAt = 0;
  #resolve!: (result: ProbeResult) => void;
  #reject!: (error: unknown) => void;
  #onAbort = () => this.finish(true);
  #aborted = false;

  constructor(settings: Settings, options: ProbeOptions) {
    this.s = settings;
    this.options = options;
    this.scheduled = settings.period > 0;
    this.address = {
      hostname: settings.hostname,
      port: settings.port,
      transport: settings.transport,
    };
  }

  async start(): Promise<ProbeResult> {
    const signal = this.options.signal;
    const done = new Promise<ProbeResult>((resolve, reject) => {
      this.#resolve = resolve;
      this.#reject = reject;
    });
    // While connecting, an abort only cancels the connects; the run proper starts after.
    const cancel = () => this.closing.abort();
    signal?.addEventListener("abort", cancel, { once: true });
    try {
      if (!signal?.aborted) {
        this.workers = this.s.transport === "tcp" ? await this.#openTcp() : await this.#openUdp();
      }
    } catch (error) {
      if (!signal?.aborted) throw error;
    } finally {
      signal?.removeEventListener("abort", cancel);
    }
    if (signal?.aborted) {
      this.#begin();
      this.stopAt = this.startAt;
      this.finish(true);
      return done;
    }
    signal?.addEventListener("abort", this.#onAbort, { once: true });
    this.#begin();
    const s = this.s;
    const tickMs = Math.min(
      Math.max(s.timeout / 10, s.transport === "udp" ? 1 : 10),
      s.transport === "udp" ? 50 : 250,
    );
    this.#tick = setInterval(() => this.#onTick(), tickMs);
    if (this.options.onProgress) {
      this.#progressAt = this.startAt;
      this.#progress = setInterval(() => this.#onProgress(), PROGRESS_PERIOD);
    }
    if (this.measureEnd !== Infinity) {
      this.#endTimer = setTimeout(() => this.#onEnd(), this.measureEnd - performance.now());
    }
    if (this.scheduled) this.dispatch(performance.now());
    else for (const w of this.workers) w.pump();
    return done;
  }

  #begin(): void {
    this.startAt = performance.now();
    this.lastActivity = this.startAt;
    this.measureStart = this.startAt + this.s.warmup;
    this.measureEnd = this.measureStart + this.s.duration;
  }

  async #openTcp(): Promise<Worker[]> {
    const pattern = makePattern();
    const workers = Array.from(
      { length: this.s.connections },
      (_, i) => new TcpWorker(this, i, pattern),
    );
    const outcomes = await Promise.all(workers.map((w) => w.connect(false)));
    if (!outcomes.some((ok) => ok)) {
      for (const w of workers) w.close();
      throw workers[0].lastError;
    }
    for (const [i, ok] of outcomes.entries()) {
      if (ok) continue;
      const error = workers[i].lastError;
      if (!(error instanceof EchoError)) {
        for (const w of workers) w.close();
        throw error;
      }
      this.error(error);
      workers[i].scheduleReconnect();
    }
    return workers;
  }

  async #openUdp(): Promise<Worker[]> {
    let ip: string;
    try {
      ip = await resolveHost(this.s.hostname);
    } catch (error) {
      throw new EchoConnectionError(
        `cannot resolve ${this.s.hostname}: ${describeNetworkError(error)}`,
        { address: this.address, cause: error },
      );
    }
    const v6 = ip.includes(":");
    const loopback = ip === "::1" || /^127\./.test(ip);
    const bindHost = loopback ? (v6 ? "::1" : "127.0.0.1") : (v6 ? "::" : "0.0.0.0");
    const runId = new Uint32Array(1);
    crypto.getRandomValues(runId);
    const sockets: UdpBackend[] = [];
    try {
      for (let i = 0; i < this.s.connections; i++) {
        sockets.push(await bindUdp({ hostname: bindHost, port: 0, backend: this.options.backend }));
      }
    } catch (error) {
      for (const socket of sockets) socket.close();
      if (error instanceof TypeError) throw error;
      throw new EchoConnectionError(`cannot open a UDP socket: ${describeNetworkError(error)}`, {
        address: this.address,
        cause: error,
      });
    }
    const target: Deno.NetAddr = { transport: "udp", hostname: ip, port: this.s.port };
    return sockets.map((socket, i) => new UdpWorker(this, i, socket, target, runId[0]));
  }

  /**
   * Whether a request with send time `at` may go out; counts it against `count` when measured.
   * Never finishes the run itself (the caller is about to add the request to `inflight`).
   */
  admit(at: number): boolean {
    if (this.noMore) return false;
    if (at >= this.measureEnd) {
      this.#stopAdmitting(at);
      return false;
    }
    if (at >= this.measureStart) {
      this.admitted++;
      if (this.admitted >= this.s.count) this.#stopAdmitting(at);
    }
    return true;
  }

  #stopAdmitting(at: number): void {
    if (this.noMore) return;
    this.noMore = true;
    this.stopAt = Math.min(at, performance.now());
    if (this.#timer !== undefined) clearTimeout(this.#timer);
    if (this.#immediate !== undefined) clearImmediate(this.#immediate);
    this.#timer = undefined;
    this.#immediate = undefined;
    this.#waiting = false;
  }

  /** Scheduled mode: hands every request that is due to a worker with room for it. */
  dispatch(now: number): void {
    if (this.noMore || this.finished) return;
    const workers = this.workers;
    const n = workers.length;
    const cap = this.s.pipeline;
    for (;;) {
      const at = this.startAt + this.index * this.s.period;
      if (at > now) {
        this.#waitUntil(at, now);
        return;
      }
      let worker: Worker | undefined;
      for (let k = 0; k < n; k++) {
        const w = workers[this.#rr];
        this.#rr = this.#rr + 1 === n ? 0 : this.#rr + 1;
        if (w.ready() && w.load() < cap) {
          worker = w;
          break;
        }
      }
      if (worker === undefined) return; // a reply or a reconnect calls again
      if (!this.admit(at)) return;
      this.index++;
      this.queued++;
      worker.enqueue(at);
    }
  }

  /**
   * Wakes the schedule at `at`. Deno's timers fire no sooner than about 2 ms, too coarse for a
   * schedule whose latency runs from the intended send time, so a timer covers all but the last
   * SPIN_WINDOW ms and event-loop turns (`setImmediate`, which lets I/O run between turns) cover
   * the rest: precise to a few microseconds at the price of a busy core while requests are due
   * less than SPIN_WINDOW ms apart.
   */
  #waitUntil(at: number, now: number): void {
    if (this.#waiting) return;
    this.#waiting = true;
    const delay = at - now;
    if (delay > SPIN_WINDOW) {
      this.#timer = setTimeout(this.#wake, delay - SPIN_WINDOW);
      return;
    }
    this.#immediate = setImmediate(this.#wake);
  }

  /** A worker has room again. */
  capacity(worker: Worker, now: number): void {
    if (this.scheduled) this.dispatch(now);
    else worker.pump();
  }

  /** Records a completed, intact request sent at `sentAt` and answered at `now`. */
  complete(worker: Worker, sentAt: number, now: number): void {
    this.completedAll++;
    this.lastActivity = now;
    if (sentAt < this.measureStart) return;
    this.received++;
    this.bytes += this.s.size;
    worker.served++;
    this.lastReplyAt = now;
    this.histogram.record((now - sentAt) * 1000);
  }

  reply(
    connection: number,
    seq: number,
    bytes: number,
    rtt: number,
    kind: ProbeReply["kind"],
    warmup: boolean,
  ): void {
    const hook = this.options.onReply;
    if (!hook) return;
    try {
      hook({ connection, seq, bytes, rtt, kind, warmup });
    } catch (error) {
      this.fail(error);
    }
  }

  error(error: EchoError): void {
    this.errors++;
    const hook = this.options.onError;
    if (!hook) return;
    try {
      hook(error);
    } catch (e) {
      this.fail(e);
    }
  }

  /** Finishes the run once nothing more will be sent and nothing is in flight. */
  settle(): void {
    if (this.noMore && this.inflight === 0 && this.queued === 0) this.finish(false);
  }

  #onTick(): void {
    const now = performance.now();
    for (const w of this.workers) {
      w.tick(now);
      if (this.finished) return;
    }
    if (this.noMore) {
      // Nothing settles any more (a dead server, a connection that cannot come back): give up
      // a timeout after the last sign of life.
      if (now - Math.max(this.lastActivity, this.stopAt) > this.s.timeout) this.finish(false);
      else this.settle();
    }
  }

  #onEnd(): void {
    this.#endTimer = undefined;
    const now = performance.now();
    if (now < this.measureEnd) {
      this.#endTimer = setTimeout(() => this.#onEnd(), this.measureEnd - now);
      return;
    }
    if (this.scheduled && !this.noMore) {
      this.dispatch(this.measureEnd - 1e-9);
      // Requests due in the measured window that never found room are reported, not sent.
      const due = Math.ceil((this.measureEnd - this.startAt) / this.s.period);
      const firstMeasured = Math.max(
        0,
        Math.ceil((this.measureStart - this.startAt) / this.s.period),
      );
      this.unsent += Math.max(0, due - Math.max(this.index, firstMeasured));
    }
    this.#stopAdmitting(this.measureEnd);
    if (this.scheduled) {
      // Requests handed out but not yet sent when the window closed are not sent either.
      for (const w of this.workers) this.unsent += w.dropQueued();
    }
    this.settle();
  }

  #onProgress(): void {
    const now = performance.now();
    const done = this.completedAll;
    const seconds = (now - this.#progressAt) / 1000;
    const rate = seconds > 0 ? (done - this.#progressDone) / seconds : 0;
    this.#progressDone = done;
    this.#progressAt = now;
    const hook = this.options.onProgress!;
    try {
      hook({
        elapsed: now - this.startAt,
        requests: this.received,
        rate,
        errors: this.errors,
        warmup: now < this.measureStart,
      });
    } catch (error) {
      this.fail(error);
    }
  }

  #cleanup(): void {
    this.finished = true;
    this.options.signal?.removeEventListener("abort", this.#onAbort);
    for (const t of [this.#timer, this.#endTimer]) if (t !== undefined) clearTimeout(t);
    if (this.#immediate !== undefined) clearImmediate(this.#immediate);
    for (const t of [this.#tick, this.#progress]) if (t !== undefined) clearInterval(t);
    this.closing.abort();
    for (const w of this.workers) w.close();
  }

  finish(aborted: boolean): void {
    if (this.finished) return;
    this.#aborted = aborted;
    if (aborted && this.stopAt === Infinity) this.stopAt = performance.now();
    this.#cleanup();
    this.#resolve(this.#result(aborted));
  }

  fail(error: unknown): void {
    if (this.finished) return;
    this.#cleanup();
    this.#reject(error);
  }

  #result(aborted: boolean): ProbeResult {
    const s = this.s;
    const now = performance.now();
    const end = Math.max(Math.min(this.stopAt, now), this.lastReplyAt);
    const elapsed = Math.max(0, end - this.measureStart);
    let sent = this.sent;
    let lost = 0, late = 0, duplicates = 0, reordered = 0, strays = 0, outstanding = 0;
    let jitterSum = 0, jitterWeight = 0;
    let served = 0;
    for (const w of this.workers) {
      served += w.served > 0 ? 1 : 0;
      if (w instanceof UdpWorker) {
        strays += w.strays;
        const t = w.measured();
        if (!t) continue;
        if (!aborted) t.expire(now);
        const st = t.stats;
        lost += st.lost;
        late += st.late;
        duplicates += st.duplicates;
        reordered += st.reordered;
        strays += st.unknown;
        outstanding += st.outstanding;
        if (st.received > 1) {
          jitterSum += st.jitter * st.received;
          jitterWeight += st.received;
        }
      } else if (w instanceof TcpWorker) {
        outstanding += w.measuredInFlight();
      }
    }
    if (s.transport === "udp") {
      sent = 0;
      for (const w of this.workers) sent += (w as UdpWorker).measured()?.stats.sent ?? 0;
    }
    const seconds = elapsed / 1000;
    return {
      transport: s.transport,
      address: this.address,
      connections: s.connections,
      size: s.size,
      pipeline: s.pipeline,
      stream: s.stream,
      aborted: this.#aborted || aborted,
      elapsed,
      sent,
      received: this.received,
      bytes: this.bytes,
      requestsPerSecond: seconds > 0 ? this.received / seconds : 0,
      bytesPerSecond: seconds > 0 ? this.bytes / seconds : 0,
      latency: this.histogram.summary(),
      histogram: this.histogram,
      errors: this.errors,
      mismatches: this.mismatches,
      failed: this.failed,
      lost,
      late,
      duplicates,
      reordered,
      jitter: jitterWeight > 0 ? (jitterSum / jitterWeight) * 1000 : 0,
      strays,
      outstanding,
      unsent: this.unsent,
      connectionsServed: served,
    };
  }
}

/**
 * The TCP request bytes: byte `o` of a connection's stream is `pattern[o % PERIOD]`, and the
 * buffer is long enough that any write or read of up to MAX_IO bytes is one subarray of it.
 */
function makePattern(): Uint8Array {
  const pattern = new Uint8Array(PERIOD + MAX_IO);
  for (let i = 0; i < pattern.length; i++) pattern[i] = ((i % PERIOD) * 151 + 89) & 0xff;
  return pattern;
}

/**
 * What the TCP and UDP workers share: the run, their index, and the queue of intended send times
 * handed over in scheduled modes (taken and dropped the same way on either transport).
 */
abstract class QueuedWorker implements Worker {
  readonly run: ProbeRun;
  readonly index: number;
  served = 0;
  /** Scheduled mode: intended send times handed over, not yet sent. */
  protected readonly queue: Ring;

  constructor(run: ProbeRun, index: number) {
    this.run = run;
    this.index = index;
    this.queue = new Ring(run.scheduled ? Math.min(run.s.pipeline, 1024) : 1);
  }

  abstract load(): number;
  abstract ready(): boolean;
  abstract pump(): void;
  abstract tick(now: number): void;
  abstract close(): void;

  enqueue(at: number): void {
    this.queue.push(at);
    this.pump();
  }

  dropQueued(): number {
    const run = this.run;
    let measured = 0;
    while (this.queue.length > 0) {
      if (this.queue.shift() >= run.measureStart) measured++;
      run.queued--;
    }
    return measured;
  }
}

class TcpWorker extends QueuedWorker {
  lastError: unknown;

  readonly #pattern: Uint8Array;
  readonly #buffer: Uint8Array;
  readonly #size: number;
  #conn: Deno.TcpConn | undefined;
  /** Bumped on every (re)connect and failure; loops of an older generation stop. */
  #gen = 0;
  #writing = false;
  #closed = false;
  #reconnectTimer: ReturnType<typeof setTimeout> | undefined;
  /** Send times of the requests in flight, oldest first. */
  readonly #inflight: Ring;
  /** Sequence number of the oldest request in flight. */
  #headSeq = 0;
  #sendOffset = 0;
  #recvOffset = 0;
  /** Bytes of the oldest request received so far, and whether any of them differed. */
  #partial = 0;
  #bad = false;

  constructor(run: ProbeRun, index: number, pattern: Uint8Array) {
    super(run, index);
    this.#pattern = pattern;
    this.#size = run.s.size;
    const window = run.s.size * Math.min(run.s.pipeline, 64);
    this.#buffer = new Uint8Array(Math.min(MAX_IO, Math.max(16 * 1024, window)));
    this.#inflight = new Ring(Math.min(run.s.pipeline, 1024));
  }

  load(): number {
    return this.#inflight.length + this.queue.length;
  }

  ready(): boolean {
    return this.#conn !== undefined;
  }

  measuredInFlight(): number {
    let n = 0;
    const start = this.run.measureStart;
    for (let i = 0; i < this.#inflight.length; i++) if (this.#inflight.at(i) >= start) n++;
    return n;
  }

  /** Opens the connection; resolves false (after counting the error) when it cannot. */
  async connect(reconnect: boolean): Promise<boolean> {
    const run = this.run;
    const gen = ++this.#gen;
    const { hostname, port, timeout } = run.s;
    const where = `tcp ${formatAddress(run.address)}`;
    const timer = new AbortController();
    const timeoutId = setTimeout(() => timer.abort(), timeout);
    let conn: Deno.TcpConn;
    try {
      conn = await Deno.connect({
        hostname,
        port,
        signal: AbortSignal.any([timer.signal, run.closing.signal]),
      });
    } catch (error) {
      if (this.#closed || run.finished) return false;
      if (
        error instanceof Deno.errors.NotCapable || error instanceof Deno.errors.PermissionDenied
      ) {
        this.lastError = error;
        if (reconnect) run.fail(error);
        return false;
      }
      const e = timer.signal.aborted
        ? new EchoTimeoutError(`no connection to ${where} within ${timeout}ms`, {
          address: run.address,
          cause: error,
        })
        : new EchoConnectionError(`cannot connect to ${where}: ${describeNetworkError(error)}`, {
          address: run.address,
          cause: error,
        });
      this.lastError = e;
      if (reconnect) {
        run.error(e);
        this.scheduleReconnect();
      }
      return false;
    } finally {
      clearTimeout(timeoutId);
    }
    if (this.#closed || run.finished || gen !== this.#gen) {
      conn.close();
      return false;
    }
    try {
      conn.setNoDelay(true);
    } catch {
      // not fatal: latency may suffer from Nagle's algorithm
    }
    this.#conn = conn;
    this.#sendOffset = 0;
    this.#recvOffset = 0;
    this.#partial = 0;
    this.#bad = false;
    this.#writing = false;
    void this.#readLoop(conn, gen);
    if (reconnect) run.capacity(this, performance.now());
    return true;
  }

  scheduleReconnect(): void {
    const run = this.run;
    if (this.#closed || run.finished || this.#reconnectTimer !== undefined) return;
    if (run.noMore) {
      // Nothing more to send: requests handed to this connection are dropped, not retried.
      run.failed += this.dropQueued();
      run.settle();
      return;
    }
    this.#reconnectTimer = setTimeout(() => {
      this.#reconnectTimer = undefined;
      if (!this.#closed && !run.finished) void this.connect(true);
    }, RECONNECT_DELAY);
  }

  pump(): void {
    if (this.#writing || this.#conn === undefined || this.run.finished) return;
    this.#writing = true;
    void this.#writeLoop(this.#conn, this.#gen);
  }

  async #writeLoop(conn: Deno.TcpConn, gen: number): Promise<void> {
    const run = this.run;
    const size = this.#size;
    const cap = run.s.pipeline;
    const inflight = this.#inflight;
    const pattern = this.#pattern;
    try {
      for (;;) {
        let count = 0;
        if (run.scheduled) {
          const queue = this.queue;
          while (queue.length > 0 && inflight.length < cap) {
            const at = queue.shift();
            inflight.push(at);
            if (at >= run.measureStart) run.sent++;
            count++;
          }
          run.queued -= count;
        } else {
          const now = performance.now();
          while (inflight.length < cap && run.admit(now)) {
            inflight.push(now);
            if (now >= run.measureStart) run.sent++;
            count++;
          }
        }
        if (count === 0) break;
        run.inflight += count;
        let left = count * size;
        while (left > 0) {
          const offset = this.#sendOffset % PERIOD;
          const n = await conn.write(pattern.subarray(offset, offset + Math.min(left, MAX_IO)));
          if (gen !== this.#gen) return;
          this.#sendOffset += n;
          left -= n;
        }
      }
    } catch (error) {
      if (gen === this.#gen) this.#fail(error);
      return;
    }
    if (gen === this.#gen) this.#writing = false;
  }

  async #readLoop(conn: Deno.TcpConn, gen: number): Promise<void> {
    const buffer = this.#buffer;
    try {
      for (;;) {
        const n = await conn.read(buffer);
        if (gen !== this.#gen) return;
        if (n === null) {
          this.#fail(
            new EchoConnectionError(
              `tcp ${formatAddress(this.run.address)} closed the connection`,
              { address: this.run.address },
            ),
          );
          return;
        }
        this.#onData(n);
        if (gen !== this.#gen || this.run.finished) return;
      }
    } catch (error) {
      if (gen === this.#gen) this.#fail(error);
    }
  }

  #onData(n: number): void {
    const run = this.run;
    const buffer = this.#buffer;
    const pattern = this.#pattern;
    const size = this.#size;
    const inflight = this.#inflight;
    let completed = 0;
    let now = 0;
    for (let i = 0; i < n;) {
      if (inflight.length === 0) {
        run.mismatches++;
        this.#fail(
          new EchoMismatchError(
            `tcp ${formatAddress(run.address)} sent back more bytes than were sent`,
            { address: run.address, offset: this.#recvOffset },
          ),
        );
        return;
      }
      const take = Math.min(size - this.#partial, n - i);
      if (!this.#bad) {
        let p = this.#recvOffset % PERIOD;
        if (take >= NATIVE_COMPARE_MIN) {
          // Native memcmp: some 40 times faster than a JS loop on large segments.
          const expected = pattern.subarray(p, p + take);
          if (Buffer.compare(buffer.subarray(i, i + take), expected) !== 0) this.#bad = true;
        } else {
          for (let k = i, end = i + take; k < end; k++, p++) {
            if (buffer[k] !== pattern[p]) {
              this.#bad = true;
              break;
            }
          }
        }
      }
      i += take;
      this.#recvOffset += take;
      this.#partial += take;
      if (this.#partial === size) {
        if (now === 0) now = performance.now();
        const sentAt = inflight.shift();
        const seq = this.#headSeq++;
        const warm = sentAt < run.measureStart;
        run.inflight--;
        completed++;
        if (this.#bad) {
          run.completedAll++;
          run.lastActivity = now;
          if (!warm) run.mismatches++;
          run.reply(this.index, seq, size, now - sentAt, "mismatch", warm);
        } else {
          run.complete(this, sentAt, now);
          if (run.options.onReply) run.reply(this.index, seq, size, now - sentAt, "reply", warm);
        }
        this.#partial = 0;
        this.#bad = false;
        if (run.finished) return;
      }
    }
    if (completed > 0) {
      if (run.noMore) run.settle();
      if (!run.finished) run.capacity(this, now);
    }
  }

  tick(now: number): void {
    if (this.#conn === undefined || this.#inflight.length === 0) return;
    const oldest = this.#inflight.peek();
    if (now - oldest >= this.run.s.timeout) {
      const run = this.run;
      this.#fail(
        new EchoTimeoutError(
          `no reply from tcp ${formatAddress(run.address)} within ${run.s.timeout}ms`,
          { address: run.address },
        ),
      );
    }
  }

  #fail(error: unknown): void {
    const run = this.run;
    this.#gen++;
    this.#writing = false;
    const conn = this.#conn;
    this.#conn = undefined;
    try {
      conn?.close();
    } catch {
      // already closed
    }
    if (this.#closed || run.finished) return;
    const lost = this.#inflight.length;
    for (let i = 0; i < lost; i++) if (this.#inflight.at(i) >= run.measureStart) run.failed++;
    this.#inflight.clear();
    this.#headSeq += lost;
    run.inflight -= lost;
    this.#partial = 0;
    this.#bad = false;
    if (error instanceof Deno.errors.NotCapable || error instanceof Deno.errors.PermissionDenied) {
      run.fail(error);
      return;
    }
    const e = error instanceof EchoError ? error : new EchoConnectionError(
      `tcp ${formatAddress(run.address)}: ${describeNetworkError(error)}`,
      { address: run.address, cause: error },
    );
    run.error(e);
    if (run.finished) return;
    this.scheduleReconnect();
    if (!run.finished) run.settle();
  }

  close(): void {
    this.#closed = true;
    this.#gen++;
    if (this.#reconnectTimer !== undefined) clearTimeout(this.#reconnectTimer);
    this.#reconnectTimer = undefined;
    const conn = this.#conn;
    this.#conn = undefined;
    try {
      conn?.close();
    } catch {
      // already closed
    }
  }
}

class UdpWorker extends QueuedWorker {
  /** Datagrams that were not replies of this run. */
  strays = 0;

  readonly #socket: UdpBackend;
  readonly #target: Deno.NetAddr;
  readonly #runId: number;
  readonly #send: Uint8Array;
  readonly #recv = new Uint8Array(RECEIVE_BUFFER_SIZE);
  readonly #probe: Probe;
  readonly #decoded: Probe = { runId: 0, seq: 0, sentAt: 0 };
  readonly #window: number;
  /** The tracker new probes go to; the warm-up one is kept apart once measuring starts. */
  #tracker: SequenceTracker;
  #warm: SequenceTracker | undefined;
  /** First sequence number of the measured part; Infinity while warming up. */
  #boundary = Infinity;
  #nextSeq = 0;
  /** Probes sent and not settled (replied, lost or late) on this socket. */
  #inflight = 0;
  #sending = false;
  #closed = false;

  constructor(
    run: ProbeRun,
    index: number,
    socket: UdpBackend,
    target: Deno.NetAddr,
    runId: number,
  ) {
    super(run, index);
    this.#socket = socket;
    this.#target = target;
    this.#runId = runId;
    this.#send = new Uint8Array(run.s.size);
    this.#probe = { runId, seq: 0, sentAt: 0 };
    const pipeline = run.s.pipeline;
    // The window must hold every probe that can be in flight, and leave room for late replies.
    this.#window = Math.min(65_536, Math.max(1024, Math.min(pipeline, 16_384) * 4));
    this.#tracker = new SequenceTracker({ timeout: run.s.timeout, window: this.#window });
    if (run.s.warmup === 0) this.#boundary = 0;
    void this.#receiveLoop();
  }

  /** The tracker of the measured part, or undefined when nothing was measured. */
  measured(): SequenceTracker | undefined {
    return this.#boundary === Infinity ? undefined : this.#tracker;
  }

  load(): number {
    return this.#inflight + this.queue.length;
  }

  ready(): boolean {
    return !this.#closed;
  }

  pump(): void {
    if (this.#sending || this.#closed || this.run.finished) return;
    this.#sending = true;
    void this.#sendLoop();
  }

  async #sendLoop(): Promise<void> {
    const run = this.run;
    const cap = run.s.pipeline;
    const probe = this.#probe;
    const buffer = this.#send;
    for (;;) {
      if (this.#closed || run.finished || this.#inflight >= cap) break;
      let at: number;
      if (run.scheduled) {
        if (this.queue.length === 0) break;
        at = this.queue.shift();
        run.queued--;
      } else {
        at = performance.now();
        if (!run.admit(at)) break;
      }
      const seq = this.#nextSeq++;
      if (this.#boundary === Infinity && at >= run.measureStart) {
        // The measured part starts: warm-up probes keep their own tracker.
        this.#boundary = seq;
        if (seq > 0) {
          this.#warm = this.#tracker;
          this.#tracker = new SequenceTracker({ timeout: run.s.timeout, window: this.#window });
        }
      }
      probe.seq = seq;
      probe.sentAt = at;
      encodeProbe(buffer, probe);
      this.#tracker.sent(seq, at);
      this.#inflight++;
      run.inflight++;
      try {
        await this.#socket.send(buffer, this.#target);
      } catch (error) {
        if (this.#closed || run.finished) break;
        run.error(
          new EchoConnectionError(
            `cannot send to udp ${formatAddress(run.address)}: ${describeNetworkError(error)}`,
            { address: run.address, cause: error },
          ),
        );
      }
    }
    this.#sending = false;
  }

  async #receiveLoop(): Promise<void> {
    const buffer = this.#recv;
    for (;;) {
      let datagram;
      try {
        datagram = await this.#socket.receive(buffer);
      } catch (error) {
        if (this.#closed || this.run.finished) return;
        if (error instanceof Deno.errors.BadResource || error instanceof Deno.errors.Interrupted) {
          return;
        }
        this.run.error(
          new EchoConnectionError(
            `receive from udp ${formatAddress(this.run.address)} failed: ${
              describeNetworkError(error)
            }`,
            { address: this.run.address, cause: error },
          ),
        );
        continue;
      }
      if (this.#closed || this.run.finished) return;
      try {
        this.#onDatagram(datagram.data, datagram.addr);
      } catch (error) {
        this.run.fail(error);
        return;
      }
    }
  }

  #onDatagram(data: Uint8Array, from: Deno.NetAddr): void {
    const run = this.run;
    const target = this.#target;
    if (from.port !== target.port || from.hostname !== target.hostname) {
      this.strays++;
      return;
    }
    const now = performance.now();
    const probe = decodeProbe(data, this.#decoded);
    if (probe !== undefined && probe.runId !== this.#runId) {
      this.strays++;
      return;
    }
    if (probe === undefined || data.length !== run.s.size || !verifyProbe(data, probe)) {
      // From the server but not intact: which probe it was cannot be trusted, so that probe
      // runs into its timeout (lost) unless an intact reply follows.
      const seq = probe?.seq ?? -1;
      const warm = seq >= 0 && seq < this.#boundary;
      if (!warm) run.mismatches++;
      run.lastActivity = now;
      run.reply(this.index, seq, data.length, probe ? now - probe.sentAt : NaN, "mismatch", warm);
      return;
    }
    const seq = probe.seq;
    const warm = seq < this.#boundary;
    const tracker = warm ? this.#warm ?? this.#tracker : this.#tracker;
    const expired = tracker.expire(now);
    if (expired > 0) this.#settled(expired);
    const sentAt = probe.sentAt;
    if (now < sentAt) {
      if (!warm) run.mismatches++;
      run.reply(this.index, seq, data.length, NaN, "mismatch", warm);
      return;
    }
    const kind = tracker.received(seq, now);
    if (kind === "unknown") {
      this.strays++;
    } else if (kind === "reply") {
      this.#settled(1);
      run.complete(this, sentAt, now);
      if (run.options.onReply) run.reply(this.index, seq, data.length, now - sentAt, kind, warm);
    } else {
      run.lastActivity = now;
      run.reply(this.index, seq, data.length, now - sentAt, kind, warm);
    }
    if (run.finished) return;
    if (kind === "reply" || expired > 0) {
      if (run.noMore) run.settle();
      if (!run.finished) run.capacity(this, now);
    }
  }

  #settled(n: number): void {
    this.#inflight -= n;
    this.run.inflight -= n;
  }

  tick(now: number): void {
    let expired = this.#tracker.expire(now);
    if (this.#warm) expired += this.#warm.expire(now);
    if (expired > 0) {
      this.#settled(expired);
      this.run.lastActivity = now;
      if (this.run.noMore) this.run.settle();
      if (!this.run.finished) this.run.capacity(this, now);
    }
  }

  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#socket.close();
  }
}
