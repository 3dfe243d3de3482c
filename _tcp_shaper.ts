/**
 * The TCP shaper: when each chunk of an echoed stream may be written back (added delay, pacing
 * by bandwidth). It holds no data and no timers; the shaped session (_shaped_session.ts) holds
 * the bytes and waits. Public through impair.ts.
 *
 * @module
 */
import {
  checkMilliseconds,
  checkNumber,
  checkOptionsObject,
  formatMs as ms,
} from "./_impair_check.ts";

import type { TcpShaperOptions } from "./types.ts";
export type { TcpShaperOptions } from "./types.ts";

/**
 * Checks TCP shaping options.
 *
 * @param options The options to check.
 * @throws {TypeError} If `options` is not an object or a field is not a number.
 * @throws {RangeError} If a field is out of range, e.g.
 * `bandwidth must be a positive finite number of bytes per second, got 0`.
 *
 * @example
 * ```ts
 * import { validateTcpShaperOptions } from "./impair.ts";
 *
 * validateTcpShaperOptions({ delay: 20, bandwidth: 1_000_000 });
 * ```
 */
export function validateTcpShaperOptions(options: TcpShaperOptions): void {
  const o = checkOptionsObject(options);
  checkMilliseconds(o, "delay");
  const bandwidth = checkNumber(o, "bandwidth");
  if (bandwidth !== undefined && !(bandwidth > 0 && Number.isFinite(bandwidth))) {
    throw new RangeError(
      `bandwidth must be a positive finite number of bytes per second, got ${bandwidth}`,
    );
  }
  const burst = checkNumber(o, "burst");
  if (burst !== undefined && !(burst >= 1 && Number.isFinite(burst))) {
    throw new RangeError(`burst must be a finite number of bytes of at least 1, got ${burst}`);
  }
}

/**
 * Whether TCP shaping options ask for anything (delay or bandwidth). When false, create no
 * {@linkcode TcpShaper}.
 *
 * @param options The options.
 * @returns True if `delay` is above zero or `bandwidth` is set.
 *
 * @example
 * ```ts
 * import { isShaping } from "./impair.ts";
 *
 * console.log(isShaping({}), isShaping({ bandwidth: 1000 })); // false true
 * ```
 */
export function isShaping(options: TcpShaperOptions): boolean {
  return (options.delay ?? 0) > 0 || options.bandwidth !== undefined;
}

/**
 * Decides when each chunk of one TCP stream may be written back: not before it was received plus
 * `delay`, paced by a token bucket at `bandwidth` bytes per second, and never before the previous
 * chunk (so order is kept). Use one per connection (per direction). It holds no timers and no
 * data: the caller waits until the returned time.
 *
 * Token bucket: it starts full (`burst` bytes) and refills at `bandwidth`. A chunk may go once the
 * bucket holds its size, or is full for a chunk larger than the bucket; it then takes its whole
 * size (the bucket goes into debt for a larger chunk), so the long-run rate is exactly `bandwidth`.
 * Hence for chunks i <= j no larger than `burst`:
 * bytes(i..j) <= burst + bandwidth × (time(j) − time(i)) / 1000.
 *
 * @example 1000 B/s, 100-byte chunks all received at once
 * ```ts
 * import { TcpShaper } from "./impair.ts";
 *
 * const shaper = new TcpShaper({ bandwidth: 1000, burst: 100 });
 * console.log([0, 1, 2].map(() => shaper.sendTime(0, 100))); // [0, 100, 200]
 * ```
 */
export class TcpShaper {
  /** The added delay in ms. */
  readonly delay: number;
  /** The pacing rate in bytes per second, or undefined for unlimited. */
  readonly bandwidth: number | undefined;
  /** The token-bucket depth in bytes (Infinity when unlimited). */
  readonly burst: number;
  #tokens: number;
  #at = -Infinity;
  #last = -Infinity;

  /**
   * Creates a shaper.
   *
   * @param options Delay, bandwidth and burst; checked with {@linkcode validateTcpShaperOptions}.
   * @throws {TypeError} If an option is not a number.
   * @throws {RangeError} If an option is out of range.
   *
   * @example
   * ```ts
   * import { TcpShaper } from "./impair.ts";
   *
   * const shaper = new TcpShaper({ delay: 20 });
   * console.log(shaper.sendTime(1000, 512)); // 1020
   * ```
   */
  constructor(options: TcpShaperOptions) {
    validateTcpShaperOptions(options);
    this.delay = options.delay ?? 0;
    this.bandwidth = options.bandwidth;
    this.burst = options.burst ??
      (this.bandwidth === undefined
        ? Infinity
        : Math.max(1, Math.min(16_384, this.bandwidth / 100)));
    this.#tokens = this.burst;
  }

  /**
   * When a chunk received at `receivedAt` may be written. Call it once per chunk, in stream
   * order: each call takes the chunk's bytes from the bucket.
   *
   * @param receivedAt When the chunk was read, in ms on the `performance.now()` timeline.
   * @param bytes The chunk's length in bytes.
   * @returns The write time in ms (same timeline): at least `receivedAt + delay`, and never
   * before the time returned for the previous chunk.
   * @throws {RangeError} If `receivedAt` is not finite or `bytes` is negative or not finite.
   *
   * @example
   * ```ts
   * import { TcpShaper } from "./impair.ts";
   *
   * const shaper = new TcpShaper({ delay: 10, bandwidth: 1_000_000 });
   * const at = shaper.sendTime(performance.now(), 1500);
   * const wait = Math.max(0, at - performance.now());
   * console.log(`write in ${wait.toFixed(1)} ms`);
   * ```
   */
  sendTime(receivedAt: number, bytes: number): number {
    if (!Number.isFinite(receivedAt)) {
      throw new RangeError(`receivedAt must be a finite time in ms, got ${receivedAt}`);
    }
    if (!(bytes >= 0 && Number.isFinite(bytes))) {
      throw new RangeError(`bytes must be a finite number of at least 0, got ${bytes}`);
    }
    let t = Math.max(receivedAt + this.delay, this.#last);
    if (this.bandwidth !== undefined) {
      const perMs = this.bandwidth / 1000;
      let tokens = this.#at === -Infinity
        ? this.burst
        : Math.min(this.burst, this.#tokens + (t - this.#at) * perMs);
      const need = Math.min(bytes, this.burst);
      if (tokens < need) {
        t += (need - tokens) / perMs;
        tokens = need;
      }
      this.#tokens = tokens - bytes;
      this.#at = t;
    }
    this.#last = t;
    return t;
  }

  /**
   * A one-line summary for a ready line, e.g. `delay 20ms, bandwidth 125000 B/s`.
   *
   * @returns The summary.
   *
   * @example
   * ```ts
   * import { TcpShaper } from "./impair.ts";
   *
   * console.log(new TcpShaper({ delay: 20, bandwidth: 125000 }).describe());
   * ```
   */
  describe(): string {
    const parts: string[] = [];
    if (this.delay > 0) parts.push(`delay ${ms(this.delay)}`);
    if (this.bandwidth !== undefined) {
      parts.push(`bandwidth ${+this.bandwidth.toFixed(3)} B/s`);
      if (this.burst !== Math.max(1, Math.min(16_384, this.bandwidth / 100))) {
        parts.push(`burst ${+this.burst.toFixed(3)} B`);
      }
    }
    return parts.length === 0 ? "no shaping" : parts.join(", ");
  }
}
