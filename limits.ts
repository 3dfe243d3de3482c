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

import { isLoopback } from "./cidr.ts";

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
