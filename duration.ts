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
  if (ms < 1) return `${Math.round(ms * 1000)}µs`;
  if (ms < 100) return `${ms.toFixed(ms < 10 ? 2 : 1)}ms`;
  if (ms < 1000) return `${Math.round(ms)}ms`;
  if (ms < 60_000) return `${(ms / 1000).toFixed(2)}s`;
  const minutes = Math.floor(ms / 60_000);
  const seconds = Math.round((ms % 60_000) / 1000);
  return `${minutes}m${String(seconds).padStart(2, "0")}s`;
}
