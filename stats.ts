/**
 * Server counters: plain number fields, cheap to bump on the hot path and safe to read at any time.
 *
 * @module
 */

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
}

/** Counters kept by every echo server; the handle exposes them as `stats`. */
export interface EchoStats {
  /** TCP (and WebSocket) sessions open now. */
  sessionsOpen: number;
  /** TCP (and WebSocket) sessions accepted since start. */
  sessionsTotal: number;
  /** Bytes received (TCP and UDP payloads, WebSocket message payloads). */
  bytesIn: number;
  /** Bytes echoed back (TCP and UDP payloads, WebSocket message payloads). */
  bytesOut: number;
  /** Datagrams received. */
  datagramsIn: number;
  /** Datagrams sent back. */
  datagramsOut: number;
  /** Sessions or datagrams that ended in an error (reset, refused send, ...). */
  errors: number;
  /** Refusals by reason. */
  dropped: DropCounters;
  /** What the UDP impairment stage did, when one runs. */
  impairment?: ImpairmentCounters;
  /** The WebSocket echo's own share (also counted in the totals above), when one runs. */
  ws?: WsCounters;
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
    sessionsOpen: 0,
    sessionsTotal: 0,
    bytesIn: 0,
    bytesOut: 0,
    datagramsIn: 0,
    datagramsOut: 0,
    errors: 0,
    dropped: { limit: 0, idle: 0, acl: 0, guard: 0, rate: 0 },
  };
}
