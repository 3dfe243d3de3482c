/**
 * The validators of the server options, written once: each throws a RangeError or TypeError whose
 * `option` property names the option (`maxConnections`, `impair.delay`), so a CLI can name its
 * flag instead. They cost nothing on the hot path: options are checked once, at start-up.
 *
 * @module
 */

/** A RangeError or TypeError about one option, which `option` names. */
export type OptionError = (RangeError | TypeError) & {
  /** The option at fault, as the options object spells it (`maxConnections`). */
  readonly option: string;
};

/**
 * A RangeError naming its option.
 *
 * @example
 * ```ts
 * import { optionRangeError } from "./_validate.ts";
 * const error = optionRangeError("port", "port must be from 0 to 65535, got 70000");
 * console.log(error instanceof RangeError, error.option); // true "port"
 * ```
 *
 * @param option The option at fault.
 * @param message The one-line message.
 * @returns The error, to throw.
 */
export function optionRangeError(option: string, message: string): OptionError {
  return Object.assign(new RangeError(message), { option });
}

/**
 * A TypeError naming its option.
 *
 * @example
 * ```ts
 * import { optionTypeError } from "./_validate.ts";
 * console.log(optionTypeError("path", "path must be a string").option); // "path"
 * ```
 *
 * @param option The option at fault.
 * @param message The one-line message.
 * @returns The error, to throw.
 */
export function optionTypeError(option: string, message: string): OptionError {
  return Object.assign(new TypeError(message), { option });
}

/**
 * The option an error from these validators names, if it is one.
 *
 * @example
 * ```ts
 * import { checkWhole, optionOf } from "./_validate.ts";
 * try {
 *   checkWhole("maxConnections", 0, 1);
 * } catch (error) {
 *   console.log(optionOf(error)); // "maxConnections"
 * }
 * ```
 *
 * @param error Anything thrown.
 * @returns The option's name, or undefined.
 */
export function optionOf(error: unknown): string | undefined {
  const option = (error as { option?: unknown } | null)?.option;
  return error instanceof Error && typeof option === "string" ? option : undefined;
}

/**
 * Checks a count: a whole number of at least `min` (Infinity allowed with `infinite`; at most
 * `max` when given), when given.
 *
 * @example
 * ```ts
 * import { checkWhole } from "./_validate.ts";
 * checkWhole("maxSessionBytes", undefined, 1); // absent is fine
 * checkWhole("maxConnections", Infinity, 1, { infinite: true });
 * checkWhole("perSourcePrefix6", 56, 0, { max: 128 });
 * ```
 *
 * @param option The option's name, for the message.
 * @param value The value, or undefined when absent.
 * @param min The least value allowed.
 * @param allow `infinite`: Infinity means "no cap" and is allowed; `max`: the largest value.
 * @throws {RangeError} With `option` set, when it is not such a number.
 */
export function checkWhole(
  option: string,
  value: unknown,
  min: number,
  allow: { infinite?: boolean; max?: number } = {},
): void {
  if (value === undefined) return;
  const max = allow.max ?? Infinity;
  if (
    typeof value !== "number" ||
    !(Number.isInteger(value) || (allow.infinite && value === Infinity)) || value < min ||
    value > max
  ) {
    throw optionRangeError(
      option,
      max < Infinity
        ? `${option} must be a whole number from ${min} to ${max}, got ${value}`
        : `${option} must be a whole number of at least ${min}, got ${value}`,
    );
  }
}

/**
 * Checks that a `tls` option holds its certificate and key as PEM text, when given.
 *
 * @example
 * ```ts
 * import { checkTlsPem } from "./_validate.ts";
 * checkTlsPem({ cert: "-----BEGIN CERTIFICATE-----…", key: "-----BEGIN PRIVATE KEY-----…" });
 * ```
 *
 * @param tls The option, or undefined when absent.
 * @throws {TypeError} When cert or key is not a string (a file name object, bytes, missing).
 */
export function checkTlsPem(tls: { cert?: unknown; key?: unknown } | undefined): void {
  if (tls !== undefined && (typeof tls.cert !== "string" || typeof tls.key !== "string")) {
    throw new TypeError("tls needs cert and key as PEM text (strings), not file names or bytes");
  }
}

/**
 * The longest delay a timer takes, in ms (about 24.8 days): a longer one fires at once
 * (`setTimeout` takes a 32-bit signed delay), so no duration may be longer.
 */
export const MAX_DURATION_MS = 2 ** 31 - 1;

/**
 * Checks a duration in ms: a number from 0 to {@linkcode MAX_DURATION_MS}, when given.
 *
 * @example
 * ```ts
 * import { checkDuration } from "./_validate.ts";
 * checkDuration("idleTimeout", 0); // 0 = off, fine
 * ```
 *
 * @param option The option's name, for the message.
 * @param value The value, or undefined when absent.
 * @throws {RangeError} With `option` set, when it is not such a number.
 */
export function checkDuration(option: string, value: unknown): void {
  if (value === undefined) return;
  if (typeof value !== "number" || !(value >= 0) || !Number.isFinite(value)) {
    throw optionRangeError(option, `${option} must be a duration of 0 ms or more, got ${value}`);
  }
  if (value > MAX_DURATION_MS) {
    throw optionRangeError(
      option,
      `${option} must be at most ${MAX_DURATION_MS} ms (about 24.8 days, the longest timer), got ${value}`,
    );
  }
}

/**
 * Checks a rate: a finite number of 0 or more per second, when given.
 *
 * @example
 * ```ts
 * import { checkRate } from "./_validate.ts";
 * checkRate("udpRate", 1000, "datagrams");
 * ```
 *
 * @param option The option's name, for the message.
 * @param value The value, or undefined when absent.
 * @param unit What is counted, for the message (`datagrams`).
 * @throws {RangeError} With `option` set, when it is not such a number.
 */
export function checkRate(option: string, value: unknown, unit: string): void {
  if (value === undefined) return;
  if (typeof value !== "number" || !(value >= 0 && value < Infinity)) {
    throw optionRangeError(option, `${option} must be 0 or more ${unit} per second, got ${value}`);
  }
}
