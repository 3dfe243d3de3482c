/**
 * The option checks shared by the UDP impairment stage (impair.ts) and the TCP shaper
 * (_tcp_shaper.ts), so both report bad values in the same words.
 *
 * @module
 */

/**
 * The largest delay or jitter accepted, in ms (one day; timers overflow past 2^31 − 1 ms).
 *
 * @example
 * ```ts
 * import { MAX_DELAY_MS } from "./_impair_check.ts";
 *
 * console.log(MAX_DELAY_MS); // 86400000
 * ```
 */
export const MAX_DELAY_MS = 86_400_000;

/**
 * Reads an optional number field.
 *
 * @param options The options object.
 * @param name The field.
 * @returns The value, or undefined when absent.
 * @throws {TypeError} If the field is present and not a number.
 *
 * @example
 * ```ts
 * import { checkNumber } from "./_impair_check.ts";
 *
 * console.log(checkNumber({ delay: 5 }, "delay")); // 5
 * ```
 */
export function checkNumber(options: Record<string, unknown>, name: string): number | undefined {
  const value = options[name];
  if (value === undefined) return undefined;
  if (typeof value !== "number") {
    throw new TypeError(`${name} must be a number, got ${typeof value}`);
  }
  return value;
}

/**
 * Checks an optional duration field: 0 to {@linkcode MAX_DELAY_MS}.
 *
 * @param options The options object.
 * @param name The field.
 * @throws {TypeError} If the field is not a number.
 * @throws {RangeError} If it is out of range.
 *
 * @example
 * ```ts
 * import { checkMilliseconds } from "./_impair_check.ts";
 *
 * checkMilliseconds({ delay: 20 }, "delay");
 * ```
 */
export function checkMilliseconds(options: Record<string, unknown>, name: string): void {
  const value = checkNumber(options, name);
  if (value !== undefined && !(value >= 0 && value <= MAX_DELAY_MS)) {
    throw new RangeError(`${name} must be between 0 and ${MAX_DELAY_MS} ms, got ${value}`);
  }
}

/**
 * Checks that options are an object.
 *
 * @param options The value given as options.
 * @returns The same value, typed as a record.
 * @throws {TypeError} If it is not an object.
 *
 * @example
 * ```ts
 * import { checkOptionsObject } from "./_impair_check.ts";
 *
 * console.log(checkOptionsObject({ delay: 1 }).delay); // 1
 * ```
 */
export function checkOptionsObject(options: unknown): Record<string, unknown> {
  if (typeof options !== "object" || options === null) {
    throw new TypeError(
      `options must be an object, got ${options === null ? "null" : typeof options}`,
    );
  }
  return options as Record<string, unknown>;
}

/**
 * Formats milliseconds for a summary line: `20ms`, `0.5ms`.
 *
 * @param value Milliseconds.
 * @returns The text.
 *
 * @example
 * ```ts
 * import { formatMs } from "./_impair_check.ts";
 *
 * console.log(formatMs(20)); // 20ms
 * ```
 */
export function formatMs(value: number): string {
  return `${+value.toFixed(3)}ms`;
}
