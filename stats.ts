/**
 * Server counters: plain number fields, cheap to bump on the hot path and safe to read at any time.
 * They hold only numbers, arrays and plain objects, so a worker can post them to the main thread
 * and {@linkcode sumStats} can add several up.
 *
 * @module
 */

/**
 * Why a connection's PROXY header was refused:
 * - `"signature"`: the connection does not start with a version 1 or 2 signature;
 * - `"malformed"`: it does, but what follows breaks the format (bad address, port, spacing, line
 *   ending, address block shorter than its family needs, a TLV running past the end);
 * - `"unsupported"`: an unassigned version, command, family or protocol (`PROXY TCP5`, `0x2F`);
 * - `"too-long"`: no CRLF in the first 107 bytes, or a version 2 length above `maxHeaderBytes`;
 * - `"checksum"`: a CRC32C TLV that does not match the header;
 * - `"timeout"`: no complete header within the time allowed;
 * - `"closed"`: the peer closed (or reset) the connection before a complete header;
 * - `"untrusted"`: the peer is not allowed to send a header at all.
 */
export type ProxyRefusalReason =
  | "signature"
  | "malformed"
  | "unsupported"
  | "too-long"
  | "checksum"
  | "timeout"
  | "closed"
  | "untrusted";

/** Every {@linkcode ProxyRefusalReason}, in a fixed order (for counters and metrics). */
export const PROXY_REFUSAL_REASONS: readonly ProxyRefusalReason[] = Object.freeze([
  "signature",
  "malformed",
  "unsupported",
  "too-long",
  "checksum",
  "timeout",
  "closed",
  "untrusted",
]);

/** Datagrams and sessions refused or cut short, by reason. */
export interface DropCounters {
  /** TCP sessions closed at once because `maxConnections` was reached. */
  limit: number;
  /** TCP sessions closed for being idle longer than `idleTimeout`. */
  idle: number;
  /** TCP sessions and datagrams refused by the address allow-list. */
  acl: number;
  /** Datagrams not answered by the loop and reflection guard. */
  guard: number;
  /** Datagrams dropped by the per-source rate limit. */
  rate: number;
  /** Stream sessions closed at once because their source held `maxPerSource` sessions. */
  source: number;
  /** Stream connections accepted and closed at once because no file descriptor was left. */
  fd: number;
  /** Datagrams not answered because they bounced back and forth with another echo service. */
  loop: number;
}

/**
 * Counters kept by every echo server; the handle exposes them as `stats`. The fields it shares
 * with {@linkcode TransportCounters} are the totals over every transport.
 */
export interface EchoStats extends TransportCounters {
  /** Refusals by reason. */
  dropped: DropCounters;
  /** What the UDP impairment stage did, when one runs. */
  impairment?: ImpairmentCounters;
  /** The WebSocket echo's own share (also counted in the totals above), when one runs. */
  ws?: WsCounters;
  /**
   * The same counters split by transport (`/metrics` labels them). Present when made by
   * {@linkcode createStats}; bump them through {@linkcode transportCounters}.
   */
  transports?: Record<EchoTransportName, TransportCounters>;
  /** Stream sessions by how long they lasted; see {@linkcode recordSessionDuration}. */
  sessionDuration?: DurationHistogram;
  /** Connections closed for their PROXY header, by reason; see {@linkcode countProxyRefusal}. */
  proxyRefused?: Record<ProxyRefusalReason, number>;
}

/**
 * Counters of a WebSocket echo server. Its sessions and bytes are also in the {@linkcode EchoStats}
 * totals, and its refusals in `dropped` (`acl`, `limit`, `idle`).
 */
export interface WsCounters {
  /** WebSocket sessions open now. */
  sessionsOpen: number;
  /** WebSocket sessions accepted since start. */
  sessionsTotal: number;
  /** Messages received (text and binary). */
  messagesIn: number;
  /** Messages echoed back. */
  messagesOut: number;
  /** Payload bytes received (text counted as its UTF-8 bytes). */
  bytesIn: number;
  /** Payload bytes echoed back. */
  bytesOut: number;
  /** Sessions closed with 1009 for a message above the size cap. */
  tooBig: number;
  /** Sessions closed with 1008 because the client did not read its echoes (backpressure). */
  slow: number;
  /** Sessions the runtime failed for a protocol error (invalid UTF-8, bad frame, frame too large). */
  protocolErrors: number;
  /** Upgrade requests refused with 400 (bad key, version or method). */
  badRequests: number;
  /** Plain HTTP requests refused with 426 (the echo path needs a WebSocket). */
  upgradeRequired: number;
  /** Pages served (`GET /`). */
  pages: number;
  /** Live-view (`/events`) viewers refused (not loopback nor in `eventsFrom`, or too many). */
  viewersRefused: number;
}

/** The transports an echo server serves, as they are counted and labelled. */
export type EchoTransportName = "tcp" | "tls" | "unix" | "udp" | "ws";

/** Every {@linkcode EchoTransportName}, in a fixed order. */
export const ECHO_TRANSPORTS: readonly EchoTransportName[] = Object.freeze([
  "tcp",
  "tls",
  "unix",
  "udp",
  "ws",
]);

/** The counters kept per transport, and in total by {@linkcode EchoStats}. */
export interface TransportCounters {
  /** Stream sessions (TCP, TLS, Unix, WebSocket) open now. */
  sessionsOpen: number;
  /** Stream sessions accepted since start. */
  sessionsTotal: number;
  /** Payload bytes received. */
  bytesIn: number;
  /** Payload bytes echoed back. */
  bytesOut: number;
  /** Datagrams (or WebSocket messages) received. */
  datagramsIn: number;
  /** Datagrams (or WebSocket messages) sent back. */
  datagramsOut: number;
  /** Sessions or datagrams that ended in an error (reset, refused send, ...). */
  errors: number;
}

/**
 * Upper bounds, in seconds, of the session-duration histogram's buckets (a last, unbounded
 * bucket follows): from 5 ms, a request/response on loopback, to an hour.
 */
export const SESSION_DURATION_BUCKETS: readonly number[] = Object.freeze([
  0.005,
  0.01,
  0.025,
  0.05,
  0.1,
  0.25,
  0.5,
  1,
  2.5,
  5,
  10,
  30,
  60,
  300,
  900,
  3600,
]);

/** A fixed-bucket histogram of durations (the shape Prometheus exposes). */
export interface DurationHistogram {
  /**
   * How many durations fell in each bucket, not cumulative: `counts[i]` for
   * (`SESSION_DURATION_BUCKETS[i-1]`, `SESSION_DURATION_BUCKETS[i]`], the last one above every
   * bound.
   */
  counts: number[];
  /** The sum of every duration, in seconds. */
  sum: number;
  /** How many durations were recorded. */
  count: number;
}

/** Counters of the UDP impairment stage. */
export interface ImpairmentCounters {
  /** Replies dropped on purpose (`loss`). */
  dropped: number;
  /** Replies sent twice (`duplicate`). */
  duplicated: number;
  /** Replies held back so later ones overtake them (`reorder`). */
  reordered: number;
  /** Replies sent later than they arrived (`delay`, `jitter`). */
  delayed: number;
  /** Replies dropped because too many were held at once. */
  overflow: number;
}

/**
 * Creates a zeroed set of counters. Pass one object to several servers (the `stats` option) to
 * count them together.
 *
 * @example
 * ```ts
 * import { createStats } from "./mod.ts";
 * const stats = createStats();
 * console.log(stats.sessionsTotal, stats.dropped.limit); // 0 0
 * ```
 *
 * @returns New counters, all zero.
 */
export function createStats(): EchoStats {
  return {
    ...zeroTransport(),
    dropped: { limit: 0, idle: 0, acl: 0, guard: 0, rate: 0, source: 0, fd: 0, loop: 0 },
    transports: zeroTransports(),
    sessionDuration: zeroHistogram(),
    proxyRefused: zeroProxyRefused(),
  };
}

function zeroTransport(): TransportCounters {
  return {
    sessionsOpen: 0,
    sessionsTotal: 0,
    bytesIn: 0,
    bytesOut: 0,
    datagramsIn: 0,
    datagramsOut: 0,
    errors: 0,
  };
}

function zeroTransports(): Record<EchoTransportName, TransportCounters> {
  return {
    tcp: zeroTransport(),
    tls: zeroTransport(),
    unix: zeroTransport(),
    udp: zeroTransport(),
    ws: zeroTransport(),
  };
}

function zeroHistogram(): DurationHistogram {
  return { counts: new Array(SESSION_DURATION_BUCKETS.length + 1).fill(0), sum: 0, count: 0 };
}

function zeroProxyRefused(): Record<ProxyRefusalReason, number> {
  return {
    signature: 0,
    malformed: 0,
    unsupported: 0,
    "too-long": 0,
    checksum: 0,
    timeout: 0,
    closed: 0,
    untrusted: 0,
  };
}

/**
 * One transport's counters in `stats`, created when missing. A server looks its transport's
 * counters up once at start and bumps them next to the totals.
 *
 * @example
 * ```ts
 * import { createStats, transportCounters } from "./stats.ts";
 * const stats = createStats();
 * const tls = transportCounters(stats, "tls");
 * stats.bytesIn += 5;
 * tls.bytesIn += 5;
 * console.log(stats.transports?.tls.bytesIn); // 5
 * ```
 *
 * @param stats The counters.
 * @param transport Which transport.
 * @returns Its counters (live: bump them).
 */
export function transportCounters(
  stats: EchoStats,
  transport: EchoTransportName,
): TransportCounters {
  stats.transports ??= zeroTransports();
  return stats.transports[transport] ??= zeroTransport();
}

/**
 * Records how long a stream session lasted in the session-duration histogram.
 *
 * @example
 * ```ts
 * import { createStats, recordSessionDuration } from "./stats.ts";
 * const stats = createStats();
 * recordSessionDuration(stats, 40); // 40 ms
 * console.log(stats.sessionDuration?.count, stats.sessionDuration?.sum); // 1 0.04
 * ```
 *
 * @param stats The counters.
 * @param ms The session's duration, in milliseconds.
 */
export function recordSessionDuration(stats: EchoStats, ms: number): void {
  const histogram = stats.sessionDuration ??= zeroHistogram();
  const seconds = Math.max(0, ms) / 1000;
  let i = 0;
  while (i < SESSION_DURATION_BUCKETS.length && seconds > SESSION_DURATION_BUCKETS[i]) i++;
  histogram.counts[i]++;
  histogram.sum += seconds;
  histogram.count++;
}

/**
 * Counts a connection closed for its PROXY header.
 *
 * @example
 * ```ts
 * import { countProxyRefusal, createStats } from "./stats.ts";
 * const stats = createStats();
 * countProxyRefusal(stats, "timeout");
 * console.log(stats.proxyRefused?.timeout); // 1
 * ```
 *
 * @param stats The counters.
 * @param reason Why it was refused.
 */
export function countProxyRefusal(stats: EchoStats, reason: ProxyRefusalReason): void {
  const counts = stats.proxyRefused ??= zeroProxyRefused();
  counts[reason] = (counts[reason] ?? 0) + 1;
}

/**
 * Adds up several sets of counters into a new one (e.g. the main thread's and each worker's
 * last report). Every number is summed, field by field, at any depth; a field missing on one
 * side counts as zero.
 *
 * @example
 * ```ts
 * import { createStats, sumStats } from "./stats.ts";
 * const a = createStats();
 * const b = createStats();
 * a.bytesIn = 3;
 * b.bytesIn = 4;
 * b.dropped.acl = 1;
 * const total = sumStats([a, b]);
 * console.log(total.bytesIn, total.dropped.acl); // 7 1
 * ```
 *
 * @param parts The counters to add.
 * @returns Their sum.
 */
export function sumStats(parts: readonly EchoStats[]): EchoStats {
  const total = createStats();
  for (const part of parts) addInto(total as unknown as Tree, part as unknown as Tree);
  return total;
}

type Tree = { [key: string]: number | Tree | number[] | undefined };

function addInto(into: Tree, from: Tree): void {
  for (const key of Object.keys(from)) {
    const value = from[key];
    if (typeof value === "number") {
      into[key] = ((into[key] as number | undefined) ?? 0) + value;
    } else if (Array.isArray(value)) {
      const target = (into[key] ??= new Array(value.length).fill(0)) as number[];
      for (let i = 0; i < value.length; i++) target[i] = (target[i] ?? 0) + value[i];
    } else if (value && typeof value === "object") {
      addInto((into[key] ??= {}) as Tree, value);
    }
  }
}
