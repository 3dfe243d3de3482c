/**
 * The public types of {@linkcode runProbe} (options, replies, progress, results), kept below the
 * run and its lanes so that they import nothing back; `probe.ts` re-exports them.
 *
 * @module
 */
import type { EchoAddress, EchoError } from "./errors.ts";
import type { Histogram, HistogramSummary } from "./histogram.ts";
import type { TlsClientOptions } from "./tcp.ts";
import type { UdpBackendKind } from "./types.ts";

/** How a reply was classified, as passed to {@linkcode ProbeOptions.onReply}. */
export type ProbeReplyKind = "reply" | "late" | "duplicate" | "mismatch";

/** One reply, as passed to {@linkcode ProbeOptions.onReply}. */
export interface ProbeReply {
  /** Which connection (TCP, WebSocket) or socket (UDP) it came on, from 0. */
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
  /** Server port, 1 to 65535. Default 5006 (`ws`: 5007). */
  port?: number;
  /**
   * `tcp` (default), `udp`, or `ws`: WebSocket connections (`url`, or `hostname`, `port` and
   * `path`; `wss:` with `tls`), each request one binary message, verified like TCP's bytes.
   */
  transport?: "tcp" | "udp" | "ws";
  /** `ws` only: the echo's `ws://` or `wss://` URL, instead of `hostname`, `port` and `path`. */
  url?: string;
  /** `ws` only: the path to ask for when the URL is built from `hostname` and `port`. Default `/`. */
  path?: string;
  /** TCP or WebSocket connections, or UDP sockets, to use, 1 to 100,000. Default 1. */
  connections?: number;
  /**
   * Bytes per request (TCP), datagram (UDP) or binary message (WebSocket). Default 64. UDP: 24
   * (the probe header) to 65,507; TCP and WebSocket: 1 to 16 MiB. In `stream` mode the unit in which latency is recorded (default 64 KiB).
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
   * (or WebSocket) request unanswered this long is an error and the connection is closed and
   * opened again; also the connect timeout. Default 1000 (UDP) or 5000 (TCP, WebSocket).
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
  /**
   * Report on the measured part every `reportInterval` ms through `onInterval` (after the
   * warm-up; the last, partial interval is reported when the run ends, so interval counts add up
   * to the result's). A finite number above 0; default 1000 when `onInterval` is given.
   */
  reportInterval?: number;
  /** Called once per `reportInterval` with that interval's counts and latency. */
  onInterval?: (report: ProbeIntervalReport) => void;
  /**
   * TCP: speak TLS, verifying the server's certificate (`caCerts`, `servername` as for
   * `echoTcp`). Same histograms and accounting as plain TCP. WebSocket: `wss:`, trusting `caCerts`
   * besides the built-in roots (no `servername`: the URL's host is the name checked).
   */
  tls?: TlsClientOptions;
  /**
   * TCP only: connect to the Unix domain socket at this path instead of `hostname` and `port`
   * (which must then be left out). Not with `tls`.
   */
  unix?: string;
  /**
   * TCP only: start each connection with a PROXY protocol header of this version (1 or 2),
   * naming the connection's own ends, to measure a PROXY-aware server directly. Default: none.
   */
  proxyHeader?: 1 | 2;
}

/**
 * One interval of a run, as passed to {@linkcode ProbeOptions.onInterval}: what happened between
 * `start` and `end` (ms since measuring began). Counts are those of the result, split by time:
 * summed over every interval they give the final result's.
 */
export interface ProbeIntervalReport {
  /** Which interval, from 0. */
  index: number;
  /** Whether this is the last one (reported as the run ends; usually shorter). */
  final: boolean;
  /** Start of the interval, ms since measuring began (after the warm-up). */
  start: number;
  /** End of the interval, ms since measuring began. */
  end: number;
  /** Start of the interval, Unix epoch ms. */
  startTime: number;
  /** End of the interval, Unix epoch ms. */
  endTime: number;
  /** Requests sent in the interval. */
  sent: number;
  /** Requests completed in the interval. */
  received: number;
  /** Echoed payload bytes received intact in the interval. */
  bytes: number;
  /** `received` per second of the interval. */
  requestsPerSecond: number;
  /** `bytes` per second of the interval. */
  bytesPerSecond: number;
  /** Latency of the interval's completed requests (µs): its own histogram, reset each interval. */
  latency: HistogramSummary;
  /**
   * The interval's own latency histogram (µs), e.g. for {@linkcode formatHdrLogInterval}. Valid
   * only during the call: it is reset and reused afterwards (copy it with `merge` to keep it).
   */
  histogram: Histogram;
  /** Errors counted in the interval. */
  errors: number;
  /** Replies with altered bytes in the interval. */
  mismatches: number;
  /** TCP: requests lost with a failed connection in the interval. */
  failed: number;
  /** UDP: probes that timed out in the interval. */
  lost: number;
  /** UDP: late replies in the interval. */
  late: number;
  /** UDP: duplicate replies in the interval. */
  duplicates: number;
  /** UDP: reordered replies in the interval. */
  reordered: number;
}

/** The outcome of {@linkcode runProbe}. Counts cover the measured part of the run only. */
export interface ProbeResult {
  /** `tcp`, `udp` or `ws` (with `tls` set for `wss:`). */
  transport: "tcp" | "udp" | "ws";
  /** WebSocket runs: the URL connected to. */
  url?: string;
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
  /** TCP, WebSocket: requests in flight on a connection that failed. */
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
  /** Set (true) when the TCP lanes spoke TLS, or the WebSocket lanes `wss:`. */
  tls?: boolean;
}

/** What `runProbeWorkers` sends a worker: the options to run (no hooks, no signal), or an abort. */
export type ProbeWorkerRequest =
  | { type: "run"; options: ProbeOptions; intervals: boolean }
  | { type: "abort" };
