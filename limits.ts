/**
 * Limit policies for a server that is safe to expose: the documented defaults, a bounded
 * per-source token bucket for UDP, and a connection cap derived from the process's file
 * descriptor limit. Everything here is transport-agnostic: it takes keys, numbers and times,
 * never sockets, and takes the current time as an argument so that tests are deterministic.
 *
 * @example
 * ```ts
 * import { DEFAULT_LIMITS, defaultUdpRate, effectiveMaxConnections } from "./limits.ts";
 *
 * const { value, lowered } = effectiveMaxConnections(DEFAULT_LIMITS.maxConnections, 1024);
 * console.log(value, lowered); // 960 true
 * console.log(defaultUdpRate("0.0.0.0")); // 1000
 * console.log(defaultUdpRate("127.0.0.1")); // undefined: no limit on loopback
 * ```
 *
 * @module
 */

import { isLoopback, sourceNetwork } from "./cidr.ts";

/** The limit settings a server applies; see {@linkcode DEFAULT_LIMITS} for the defaults. */
export interface Limits {
  /** Most TCP/TLS connections open at once; further connections are refused. */
  maxConnections: number;
  /** Milliseconds a connection may stay silent (nothing received) before it is closed. */
  idleTimeout: number;
  /** Most bytes echoed in one connection before it is closed; `undefined` for no cap. */
  maxSessionBytes: number | undefined;
  /** Most milliseconds one connection may last; `undefined` for no cap. */
  maxSessionTime: number | undefined;
  /**
   * UDP datagrams answered per second from one source address (burst: one second's worth),
   * on non-loopback binds only: see {@linkcode defaultUdpRate}.
   */
  udpRate: number;
}

/**
 * The documented defaults:
 *
 * - `maxConnections: 4096`: well under common descriptor limits once raised, and lowered by
 *   {@linkcode effectiveMaxConnections} when the process limit is smaller.
 * - `idleTimeout: 300_000` (5 minutes): silent connections cannot pin descriptors forever.
 * - `maxSessionBytes: undefined`, `maxSessionTime: undefined`: an echo session may be long
 *   (benchmarks, soak tests); the idle timeout already reclaims abandoned ones.
 * - `udpRate: 1000` datagrams per second per source address, applied only when the bind
 *   address is not loopback: it caps what one (possibly spoofed) source can make the server
 *   reflect, while local benchmarks on `127.0.0.1`/`::1` run unthrottled.
 *
 * @example
 * ```ts
 * import { DEFAULT_LIMITS } from "./limits.ts";
 *
 * console.log(DEFAULT_LIMITS.idleTimeout / 60_000); // 5 (minutes)
 * ```
 */
export const DEFAULT_LIMITS: Readonly<Limits> = Object.freeze({
  maxConnections: 4096,
  idleTimeout: 5 * 60 * 1000,
  maxSessionBytes: undefined,
  maxSessionTime: undefined,
  udpRate: 1000,
});

/**
 * The default per-source UDP rate for a bind address: `undefined` (no limit) when `hostname`
 * is loopback (`127.0.0.0/8`, `::1`, mapped forms, or `localhost`), else
 * {@linkcode DEFAULT_LIMITS}`.udpRate`. Wildcard binds `0.0.0.0` and `::` are not loopback:
 * they expose the server on every interface.
 *
 * @param hostname The address or host name the server binds to.
 * @returns Datagrams per second per source, or `undefined` for no limit.
 *
 * @example
 * ```ts
 * import { defaultUdpRate } from "./limits.ts";
 *
 * console.log(defaultUdpRate("::1")); // undefined
 * console.log(defaultUdpRate("::")); // 1000
 * ```
 */
export function defaultUdpRate(hostname: string): number | undefined {
  return isLoopback(hostname) ? undefined : DEFAULT_LIMITS.udpRate;
}

// ---------------------------------------------------------------------------------------------

/** Options for {@linkcode RateLimiter}. */
export interface RateLimiterOptions {
  /** Tokens (datagrams) added per second to each source's bucket; a finite number > 0. */
  rate: number;
  /** Bucket capacity: the most taken at once after a quiet spell. Default `max(1, rate)`. */
  burst?: number;
  /**
   * Most sources tracked at once (default {@linkcode DEFAULT_MAX_SOURCES}); beyond it the
   * least recently seen source is forgotten.
   */
  maxSources?: number;
}

/**
 * Default bound on the sources a {@linkcode RateLimiter} tracks: 65,536 buckets, a few MiB,
 * however many addresses a spoofing sender makes up.
 *
 * @example
 * ```ts
 * import { DEFAULT_MAX_SOURCES } from "./limits.ts";
 *
 * console.log(DEFAULT_MAX_SOURCES); // 65536
 * ```
 */
export const DEFAULT_MAX_SOURCES = 65_536;

interface Bucket {
  tokens: number;
  last: number;
}

/**
 * A token bucket per source key (typically the source address), in a bounded table.
 *
 * Each source starts with a full bucket of `burst` tokens, refilled at `rate` per second up to
 * `burst`; {@linkcode RateLimiter.take} spends one token or refuses. The table keeps at most
 * `maxSources` buckets, least recently used first out (a `Map`'s insertion order, refreshed by
 * delete and set), so a flood of spoofed sources costs bounded memory. Forgetting a source only
 * errs towards leniency: if it returns, it starts again with a full bucket. The evicted bucket
 * object is reused, so a flood of new sources allocates nothing once the table is full.
 *
 * Time comes from the caller, in milliseconds on any monotonic clock (`performance.now()`).
 * If it goes backwards, the bucket is not refilled for that step.
 *
 * @example
 * ```ts
 * import { RateLimiter } from "./limits.ts";
 *
 * const limiter = new RateLimiter({ rate: 2, burst: 2 });
 * console.log(limiter.take("192.0.2.1", 0)); // true
 * console.log(limiter.take("192.0.2.1", 0)); // true
 * console.log(limiter.take("192.0.2.1", 0)); // false: bucket empty
 * console.log(limiter.take("192.0.2.1", 500)); // true: 500 ms refilled one token
 * console.log(limiter.take("198.51.100.2", 500)); // true: another source, its own bucket
 * ```
 */
export class RateLimiter {
  readonly #buckets = new Map<string, Bucket>();
  readonly #perMs: number;
  readonly #rate: number;
  readonly #burst: number;
  readonly #maxSources: number;

  /**
   * Validates the options and creates an empty table.
   *
   * @param options Rate, burst and table bound; see {@linkcode RateLimiterOptions}.
   * @throws {RangeError} When `rate` is not a finite number > 0, `burst` is not a finite
   * number >= 1, or `maxSources` is not an integer >= 1.
   */
  constructor(options: RateLimiterOptions) {
    const { rate, burst = Math.max(1, rate), maxSources = DEFAULT_MAX_SOURCES } = options ?? {};
    if (typeof rate !== "number" || !Number.isFinite(rate) || rate <= 0) {
      throw new RangeError(`invalid rate ${String(rate)}: expected a finite number > 0 per second`);
    }
    if (typeof burst !== "number" || !Number.isFinite(burst) || burst < 1) {
      throw new RangeError(`invalid burst ${String(burst)}: expected a finite number >= 1`);
    }
    if (typeof maxSources !== "number" || !Number.isInteger(maxSources) || maxSources < 1) {
      throw new RangeError(`invalid maxSources ${String(maxSources)}: expected an integer >= 1`);
    }
    this.#rate = rate;
    this.#perMs = rate / 1000;
    this.#burst = burst;
    this.#maxSources = maxSources;
  }

  /** Tokens added per second to each bucket. */
  get rate(): number {
    return this.#rate;
  }

  /** Capacity of each bucket. */
  get burst(): number {
    return this.#burst;
  }

  /** Most sources tracked at once. */
  get maxSources(): number {
    return this.#maxSources;
  }

  /** How many sources are tracked now (at most `maxSources`). */
  get size(): number {
    return this.#buckets.size;
  }

  /**
   * Spends one token from `key`'s bucket.
   *
   * @param key The source, e.g. the datagram's source address.
   * @param now The current time in milliseconds.
   * @returns `true` when a token was available (answer), `false` when the source is over its
   * rate (drop).
   * @throws {RangeError} When `now` is not a finite number.
   */
  take(key: string, now: number): boolean {
    if (typeof now !== "number" || !Number.isFinite(now)) {
      throw new RangeError(`invalid time ${String(now)}: expected finite milliseconds`);
    }
    const buckets = this.#buckets;
    let bucket = buckets.get(key);
    if (bucket === undefined) {
      if (buckets.size >= this.#maxSources) {
        const oldest = buckets.keys().next().value as string;
        bucket = buckets.get(oldest) as Bucket;
        buckets.delete(oldest);
      } else {
        bucket = { tokens: 0, last: 0 };
      }
      bucket.tokens = this.#burst;
    } else {
      buckets.delete(key); // re-inserted below: now the most recently used
      const elapsed = now - bucket.last;
      if (elapsed > 0) {
        const tokens = bucket.tokens + elapsed * this.#perMs;
        bucket.tokens = tokens < this.#burst ? tokens : this.#burst;
      }
    }
    bucket.last = now;
    buckets.set(key, bucket);
    if (bucket.tokens >= 1) {
      bucket.tokens -= 1;
      return true;
    }
    return false;
  }

  /** Forgets every source. */
  clear(): void {
    this.#buckets.clear();
  }
}

// ---------------------------------------------------------------------------------------------

/**
 * The default cap on stream sessions open at once from one source (see
 * {@linkcode SourceSlots}) when the server is bound to a non-loopback address: 64.
 *
 * Why 64: one host then needs 64 times its share to fill the default `maxConnections` of 4,096
 * (it takes 64 hosts working together), while a genuine source still has room: a browser opens
 * at most 6 connections to a host, a busy client a few dozen, and several users behind one NAT
 * address share the 64. Raise it (or turn it off) for a server whose clients all come through
 * one proxy or NAT; on loopback every client is local, so the default there is no cap (as for
 * the UDP rate), and benchmarks with 1,000 connections run as before.
 *
 * @example
 * ```ts
 * import { DEFAULT_MAX_PER_SOURCE } from "./limits.ts";
 *
 * console.log(DEFAULT_MAX_PER_SOURCE); // 64
 * ```
 */
export const DEFAULT_MAX_PER_SOURCE = 64;

/**
 * How many leading bits of an IPv6 address name one source for {@linkcode SourceSlots} by
 * default: 64, since a site or a single host is usually given a whole /64 and can pick any
 * address in it.
 *
 * @example
 * ```ts
 * import { DEFAULT_PER_SOURCE_PREFIX6 } from "./limits.ts";
 *
 * console.log(DEFAULT_PER_SOURCE_PREFIX6); // 64
 * ```
 */
export const DEFAULT_PER_SOURCE_PREFIX6 = 64;

/**
 * The default per-source session cap for a bind address: `undefined` (no cap) on loopback,
 * else {@linkcode DEFAULT_MAX_PER_SOURCE}. Like {@linkcode defaultUdpRate}, give it the address
 * actually bound, so `127.1` or `localhost` count as the loopback they bind.
 *
 * @param hostname The bound address.
 * @returns Sessions per source, or `undefined` for no cap.
 *
 * @example
 * ```ts
 * import { defaultMaxPerSource } from "./limits.ts";
 *
 * console.log(defaultMaxPerSource("127.0.0.1")); // undefined
 * console.log(defaultMaxPerSource("0.0.0.0")); // 64
 * ```
 */
export function defaultMaxPerSource(hostname: string): number | undefined {
  return isLoopback(hostname) ? undefined : DEFAULT_MAX_PER_SOURCE;
}

/** Options for {@linkcode SourceSlots}. */
export interface SourceSlotsOptions {
  /** Most slots one source may hold at once: a whole number >= 1. */
  max: number;
  /**
   * Leading bits of an IPv6 address that name its source, 0-128; default
   * {@linkcode DEFAULT_PER_SOURCE_PREFIX6}. IPv4 sources are single addresses (an IPv4 client of
   * a dual-stack bind counts as the same source whichever form it arrives in).
   */
  prefix6?: number;
}

/**
 * Counts what each source holds (open sessions) and refuses a source that holds `max`. A
 * source's entry goes when its count returns to 0, so the table holds at most one entry per
 * open session: its memory is bounded by the connection cap, however many sources come and go.
 *
 * @example
 * ```ts
 * import { SourceSlots } from "./limits.ts";
 *
 * const slots = new SourceSlots({ max: 2 });
 * const a = slots.acquire("192.0.2.1");
 * const b = slots.acquire("::ffff:192.0.2.1"); // the same client, mapped
 * console.log(a, b, slots.acquire("192.0.2.1")); // "192.0.2.1" "192.0.2.1" undefined
 * console.log(slots.acquire("2001:db8::1") !== undefined); // true: another source
 * slots.release(a!);
 * console.log(slots.acquire("192.0.2.1")); // "192.0.2.1": a slot came free
 * ```
 */
export class SourceSlots {
  readonly #counts = new Map<string, number>();
  readonly #max: number;
  readonly #prefix6: number;

  /**
   * Validates the options.
   *
   * @param options The cap and the IPv6 prefix.
   * @throws {RangeError} When `max` is not a whole number >= 1 or `prefix6` not one 0-128.
   */
  constructor(options: SourceSlotsOptions) {
    const { max, prefix6 = DEFAULT_PER_SOURCE_PREFIX6 } = options ?? {};
    if (typeof max !== "number" || !(Number.isInteger(max) || max === Infinity) || max < 1) {
      throw new RangeError(`maxPerSource must be a whole number of at least 1, got ${max}`);
    }
    if (typeof prefix6 !== "number" || !Number.isInteger(prefix6) || prefix6 < 0 || prefix6 > 128) {
      throw new RangeError(`perSourcePrefix6 must be a whole number from 0 to 128, got ${prefix6}`);
    }
    this.#max = max;
    this.#prefix6 = prefix6;
  }

  /** Most slots per source. */
  get max(): number {
    return this.#max;
  }

  /** Sources holding at least one slot now. */
  get size(): number {
    return this.#counts.size;
  }

  /**
   * Slots a source holds now.
   *
   * @param address The source address (or the key {@linkcode SourceSlots.acquire} returned).
   * @returns The count, 0 when none.
   */
  held(address: string): number {
    return this.#counts.get(this.#key(address)) ?? 0;
  }

  /**
   * Takes a slot for a source.
   *
   * @param address The source address, as the socket reports it.
   * @returns The source's key, to give to {@linkcode SourceSlots.release} when the slot is
   * given back; `undefined` when the source already holds `max` (refuse it).
   */
  acquire(address: string): string | undefined {
    const key = this.#key(address);
    const count = this.#counts.get(key) ?? 0;
    if (count >= this.#max) return undefined;
    this.#counts.set(key, count + 1);
    return key;
  }

  /**
   * Gives back a slot taken with {@linkcode SourceSlots.acquire}.
   *
   * @param key What `acquire` returned.
   */
  release(key: string): void {
    const count = this.#counts.get(key);
    if (count === undefined) return;
    if (count <= 1) this.#counts.delete(key);
    else this.#counts.set(key, count - 1);
  }

  #key(address: string): string {
    return sourceNetwork(address, this.#prefix6) ?? address;
  }
}

const LIMITS_PATH = "/proc/self/limits";

/**
 * Descriptors kept back from the process limit by {@linkcode effectiveMaxConnections}: a Deno
 * process holds about 23 at start (measured on Linux with Deno 2.9: runtime threads, epoll,
 * eventfds, stdio), plus the listening sockets, UDP sockets, log and certificate files.
 *
 * @example
 * ```ts
 * import { FD_HEADROOM } from "./limits.ts";
 *
 * console.log(FD_HEADROOM); // 64
 * ```
 */
export const FD_HEADROOM = 64;

/**
 * The soft limit on open files (`RLIMIT_NOFILE`) of this process, read from the
 * "Max open files" line of `/proc/self/limits`. Deno raises its soft limit to the hard limit
 * when it starts (seen with Deno 2.9 on Linux), so this is normally the hard limit.
 *
 * Returns `undefined` when it cannot be read: not Linux, no `/proc`, or not permitted. Note that
 * Deno 2 guards `/proc/self` specially: reading it needs `--allow-all`, and `--allow-read`
 * alone is not enough. This function never triggers a permission prompt: without read
 * permission it returns `undefined` at once. An "unlimited" soft limit is returned as
 * `Infinity`.
 *
 * @returns The soft limit, or `undefined` when unknown.
 *
 * @example
 * ```ts
 * import { fileDescriptorLimit } from "./limits.ts";
 *
 * const limit = fileDescriptorLimit();
 * console.log(limit === undefined ? "unknown" : `${limit} descriptors`);
 * ```
 */
export function fileDescriptorLimit(): number | undefined {
  try {
    if (Deno.build.os !== "linux") return undefined;
    const permission = Deno.permissions.querySync({ name: "read", path: LIMITS_PATH });
    if (permission.state !== "granted") return undefined;
    const text = Deno.readTextFileSync(LIMITS_PATH);
    const match = /^Max open files\s+(\d+|unlimited)\s/m.exec(text);
    if (match === null) return undefined;
    return match[1] === "unlimited" ? Infinity : Number(match[1]);
  } catch {
    return undefined;
  }
}

/** The result of {@linkcode effectiveMaxConnections}. */
export interface EffectiveMaxConnections {
  /** The connection cap to use. */
  value: number;
  /** Whether it is lower than requested because of the descriptor limit. */
  lowered: boolean;
}

/**
 * Lowers a requested connection cap to fit the file descriptor limit, keeping
 * {@linkcode FD_HEADROOM} descriptors back: `min(requested, max(1, fdLimit - 64))`. Each TCP or
 * TLS connection holds one descriptor, so a cap above the limit would turn into `EMFILE` errors
 * from `accept()` instead of clean refusals. When the limit is unknown, the request stands.
 *
 * @param requested The cap asked for: an integer >= 1, or `Infinity`.
 * @param fdLimit The soft descriptor limit; defaults to {@linkcode fileDescriptorLimit}().
 * @returns The cap and whether it was lowered (worth a warning).
 * @throws {RangeError} When `requested` or `fdLimit` is out of range.
 *
 * @example
 * ```ts
 * import { effectiveMaxConnections } from "./limits.ts";
 *
 * console.log(effectiveMaxConnections(4096, 1024)); // { value: 960, lowered: true }
 * console.log(effectiveMaxConnections(100, 1024)); // { value: 100, lowered: false }
 * ```
 */
export function effectiveMaxConnections(
  requested: number,
  fdLimit: number | undefined = fileDescriptorLimit(),
): EffectiveMaxConnections {
  if (
    typeof requested !== "number" ||
    !(Number.isInteger(requested) || requested === Infinity) ||
    requested < 1
  ) {
    throw new RangeError(
      `invalid maximum connections ${String(requested)}: expected an integer >= 1`,
    );
  }
  if (fdLimit === undefined) return { value: requested, lowered: false };
  if (typeof fdLimit !== "number" || Number.isNaN(fdLimit) || fdLimit < 0) {
    throw new RangeError(`invalid descriptor limit ${String(fdLimit)}: expected a number >= 0`);
  }
  const fit = Math.max(1, Math.floor(fdLimit) - FD_HEADROOM);
  return requested > fit ? { value: fit, lowered: true } : { value: requested, lowered: false };
}
