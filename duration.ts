/**
 * One duration grammar for every time flag and option: `250ms`, `1.5s`, `10s`, `2m`, `1h`; a bare
 * number is milliseconds.
 *
 * @module
 */

const UNITS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000 };
const PATTERN = /^(\d+(?:\.\d+)?|\.\d+)(ms|s|m|h)?$/;

/**
 * Parses a duration into milliseconds.
 *
 * @example
 * ```ts
 * import { parseDuration } from "./mod.ts";
 * console.log(parseDuration("250ms"), parseDuration("10s"), parseDuration("2m"), parseDuration("40"));
 * // 250 10000 120000 40
 * ```
 *
 * @param text The duration, e.g. `250ms`, `10s`, `2m`, `1h` or a bare number of milliseconds.
 * @returns The duration in milliseconds.
 * @throws {TypeError} When the text is not a duration.
 */
export function parseDuration(text: string): number {
  const match = PATTERN.exec(text.trim());
  if (!match) {
    throw new TypeError(
      `invalid duration "${text}": use a number with ms, s, m or h (250ms, 10s, 2m; bare = ms)`,
    );
  }
  return Number(match[1]) * UNITS[match[2] ?? "ms"];
}

/**
 * Formats milliseconds for people: `850µs`, `12.3ms`, `4.20s`, `2m05s`.
 *
 * @example
 * ```ts
 * import { formatDuration } from "./mod.ts";
 * console.log(formatDuration(0.85), formatDuration(12.34), formatDuration(4200)); // "850µs" "12.3ms" "4.20s"
 * ```
 *
 * @param ms A duration in milliseconds.
 * @returns The duration as short text.
 */
export function formatDuration(ms: number): string {
  if (!Number.isFinite(ms)) return String(ms);
  // Each unit is chosen after rounding, so a value that rounds up moves to the next unit
  // (999.6ms is "1.00s", 119.7s is "2m00s", never "1000ms" or "1m60s").
  const micros = Math.round(ms * 1000);
  if (micros < 1000) return `${micros}µs`;
  if (Number(ms.toFixed(2)) < 10) return `${ms.toFixed(2)}ms`;
  if (Number(ms.toFixed(1)) < 100) return `${ms.toFixed(1)}ms`;
  if (Math.round(ms) < 1000) return `${Math.round(ms)}ms`;
  const seconds = ms / 1000;
  if (Number(seconds.toFixed(2)) < 60) return `${seconds.toFixed(2)}s`;
  const total = Math.round(seconds);
  return `${Math.floor(total / 60)}m${String(total % 60).padStart(2, "0")}s`;
}
