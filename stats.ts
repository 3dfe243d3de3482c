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
  /**
   * TCP sessions closed at once because their source held `maxPerSource` sessions. Present once
   * counted (servers that never refuse this way keep the five counters above).
   */
  source?: number;
  /** TCP connections accepted and closed at once because no file descriptor was left. Present once counted. */
  fd?: number;
  /** Datagrams not answered because they bounced back and forth with another echo service. Present once counted. */
  loop?: number;
}

/** Counters kept by every echo server; the handle exposes them as `stats`. */
export interface EchoStats {
  /** TCP sessions open now. */
  sessionsOpen: number;
  /** TCP sessions accepted since start. */
  sessionsTotal: number;
  /** Bytes received (TCP and UDP payloads). */
  bytesIn: number;
  /** Bytes echoed back (TCP and UDP payloads). */
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
