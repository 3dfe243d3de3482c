/**
 * Shared CLI plumbing: one flag table drives parsing, validation and `--help`; exit codes; colour;
 * one-line errors (never a stack trace for a user error).
 *
 * @module
 */
import { parseArgs } from "node:util";
import { parseDuration } from "./duration.ts";
import { DEFAULT_HOSTNAME, DEFAULT_PORT } from "./types.ts";
import { FileTooLargeError, readTextFileCapped } from "./_read_file.ts";
import { InvalidHostError, parseHost } from "./_address.ts";
import { CidrLineError, readCidrFile } from "./cidr_file.ts";

/** The schema version of every `--json` line and object of both CLIs; bumped when a field changes meaning. */
export const JSON_SCHEMA = 1;

/** Exit code: success. */
export const EXIT_OK = 0;
/** Exit code: a runtime failure (port in use, unreachable, timeout, mismatch, permission). */
export const EXIT_FAILURE = 1;
/** Exit code: bad usage (unknown flag, bad value, conflicting flags). */
export const EXIT_USAGE = 2;

import { VERSION } from "./_version.ts";
/** The package version, from deno.json: one source, the one `/metrics` reports too. */
export { VERSION };

/** A command-line mistake: reported in one line with exit code 2. */
export class UsageError extends Error {
  /**
   * Creates a usage error.
   *
   * @param message What is wrong with the command line.
   */
  constructor(message: string) {
    super(message);
    this.name = "UsageError";
  }
}

/** One command-line flag. */
export interface Flag {
  /** Long name, without dashes. */
  name: string;
  /** One-letter alias. */
  short?: string;
  /** Other long names accepted for the same flag. */
  aliases?: string[];
  /** `boolean` for switches, `string` for flags with a value. */
  type: "boolean" | "string";
  /** Whether the flag may be repeated (values are collected). */
  multiple?: boolean;
  /** Placeholder for the value in --help, e.g. `PORT`. */
  arg?: string;
  /** One line for --help. */
  description: string;
  /** Help section the flag is listed under. */
  group?: string;
}

/**
 * Flags from a compact table, for one help section. Each key is the long name, then optionally
 * `|alias`, ` -s` (the one-letter alias), ` ARG` (a placeholder: the flag takes a value) and
 * ` ...` (repeatable); each value is the flag's --help line.
 *
 * @example
 * ```ts
 * import { flagTable } from "./_cli.ts";
 * const [host, quiet] = flagTable("Options", {
 *   "host|hostname ADDR": "address to bind",
 *   "quiet -q": "no per-event lines",
 * });
 * console.log(host.type, host.aliases, quiet.short); // "string" ["hostname"] "q"
 * ```
 *
 * @param group The help section, or undefined for the first, untitled one (`Options`).
 * @param table Key: name and shape; value: description.
 * @returns The flags, in the table's order.
 */
export function flagTable(group: string | undefined, table: Record<string, string>): Flag[] {
  return Object.entries(table).map(([key, description]) => {
    const [names, ...rest] = key.split(" ");
    const [name, ...aliases] = names.split("|");
    const flag: Flag = { name, type: "boolean", description };
    for (const part of rest) {
      if (part === "...") flag.multiple = true;
      else if (part.startsWith("-")) flag.short = part.slice(1);
      else {
        flag.type = "string";
        flag.arg = part;
      }
    }
    if (aliases.length) flag.aliases = aliases;
    if (group !== undefined) flag.group = group;
    return flag;
  });
}

/** A whole CLI: name, usage, flags and examples, for parsing and for --help. */
export interface CliSpec {
  /** Program name for messages, e.g. `server.ts`. */
  name: string;
  /** One line saying what it does. */
  summary: string;
  /** Usage line(s). */
  usage: string[];
  /** The flag table. */
  flags: Flag[];
  /** Example command lines with a comment each. */
  examples: [string, string][];
  /** Paragraphs printed after the examples. */
  notes?: string[];
}

/** Parsed flag values by long name. */
export type FlagValues = Record<string, string | boolean | string[] | undefined>;

/**
 * Parses arguments strictly against the flag table.
 *
 * @param spec The CLI.
 * @param args The arguments.
 * @returns Values by long name (aliases folded in) and positionals.
 * @throws {UsageError} On unknown flags, missing values or values given to switches.
 */
export function parseFlags(
  spec: CliSpec,
  args: string[],
): { values: FlagValues; positionals: string[] } {
  const options: Record<
    string,
    { type: "boolean" | "string"; short?: string; multiple?: boolean }
  > = {};
  for (const flag of spec.flags) {
    const multiple = Boolean(flag.multiple);
    options[flag.name] = flag.short
      ? { type: flag.type, short: flag.short, multiple }
      : { type: flag.type, multiple };
    for (const alias of flag.aliases ?? []) options[alias] = { type: flag.type, multiple };
  }
  let parsed;
  try {
    parsed = parseArgs({ args, options, strict: true, allowPositionals: true });
  } catch (error) {
    const e = error as Error & { code?: string };
    const option = /'([^']*)'/.exec(e.message)?.[1]?.replace(/ <value>$/, "") ?? "";
    if (e.code === "ERR_PARSE_ARGS_UNKNOWN_OPTION") {
      throw new UsageError(`unknown option ${option}`);
    }
    if (/does not take an argument/.test(e.message)) {
      throw new UsageError(`option ${option} does not take a value`);
    }
    if (/ambiguous/.test(e.message)) {
      throw new UsageError(
        `option ${option} needs a value (write ${option}=VALUE for one starting with -)`,
      );
    }
    if (/missing/.test(e.message)) throw new UsageError(`option ${option} needs a value`);
    throw new UsageError(e.message.split("\n")[0]);
  }
  const values: FlagValues = {};
  for (const flag of spec.flags) {
    const raw = parsed.values as FlagValues;
    for (const name of [flag.name, ...(flag.aliases ?? [])]) {
      const value = raw[name];
      if (value === undefined) continue;
      const previous = values[flag.name];
      if (flag.multiple) {
        values[flag.name] = [...(previous as string[] ?? []), ...(value as string[])];
      } else if (previous !== undefined && flag.type === "string" && previous !== value) {
        throw new UsageError(`--${flag.name} given twice with different values`);
      } else values[flag.name] = value;
    }
  }
  return { values, positionals: parsed.positionals };
}

/** Colour functions; identity when colour is off. */
export interface Palette {
  /** Bold text. */
  bold: (s: string) => string;
  /** Dim text. */
  dim: (s: string) => string;
  /** Red text. */
  red: (s: string) => string;
  /** Green text. */
  green: (s: string) => string;
  /** Yellow text. */
  yellow: (s: string) => string;
  /** Cyan text. */
  cyan: (s: string) => string;
}

/**
 * Colours for a stream: only on a terminal, never when NO_COLOR is set.
 *
 * @param stream The stream the text goes to.
 * @returns The palette.
 */
export function paletteFor(stream: { isTerminal(): boolean }): Palette {
  const on = !Deno.noColor && stream.isTerminal();
  const wrap = (open: number, close: number) => (s: string) =>
    on ? `\x1b[${open}m${s}\x1b[${close}m` : s;
  return {
    bold: wrap(1, 22),
    dim: wrap(2, 22),
    red: wrap(31, 39),
    green: wrap(32, 39),
    yellow: wrap(33, 39),
    cyan: wrap(36, 39),
  };
}

/**
 * Renders --help from the flag table.
 *
 * @param spec The CLI.
 * @param colors Colours to use.
 * @returns The help text.
 */
export function renderHelp(spec: CliSpec, colors: Palette): string {
  const lines = [`${colors.bold(spec.name)} ${VERSION} — ${spec.summary}`, ""];
  lines.push(colors.bold("Usage:"));
  for (const usage of spec.usage) lines.push(`  ${usage}`);
  const labels = spec.flags.map((flag) => {
    const names = [
      ...(flag.short ? [`-${flag.short}`] : []),
      `--${flag.name}`,
      ...(flag.aliases ?? []).map((a) => `--${a}`),
    ].join(", ");
    return flag.type === "string" ? `${names} ${flag.arg ?? "VALUE"}` : names;
  });
  const width = Math.max(...labels.map((l) => l.length)) + 2;
  // One section per group, in the order groups first appear, each holding all of its flags: a
  // table that returns to a group later (e.g. --help after the transports) adds to its section.
  const sections = new Map<string, string[]>();
  spec.flags.forEach((flag, i) => {
    const heading = flag.group ?? "Options";
    if (!sections.has(heading)) sections.set(heading, []);
    sections.get(heading)!.push(`  ${labels[i].padEnd(width)}${flag.description}`);
  });
  for (const [heading, rows] of sections) lines.push("", colors.bold(`${heading}:`), ...rows);
  lines.push("", colors.bold("Examples:"));
  for (const [command, comment] of spec.examples) {
    lines.push(`  ${command}`, `      ${colors.dim(comment)}`);
  }
  for (const note of spec.notes ?? []) lines.push("", note);
  lines.push("", "Exit codes: 0 ok, 1 runtime failure, 2 usage error.");
  return lines.join("\n");
}

/**
 * Parses a port flag.
 *
 * @param text The value.
 * @param flag The flag name, for the message.
 * @returns The port, 0 to 65535.
 */
export function parsePort(text: string, flag = "--port"): number {
  if (!/^\d+$/.test(text) || Number(text) > 65535) {
    throw new UsageError(`${flag} must be a number from 0 to 65535, got "${text}"`);
  }
  return Number(text);
}

/**
 * The address of `--host` and `--port`, with the defaults (127.0.0.1, 5006), the host parsed
 * strictly by `parseHost` (_address.ts) before anything listens or connects: IP literals in
 * canonical form (`[::1]` -> `::1`, `127.1` -> `127.0.0.1`), names in lower case; a port in the
 * host (`127.0.0.1:5006`), a zone id, stray brackets or control characters are usage errors.
 *
 * @example
 * ```ts
 * import { parseAddress } from "./_cli.ts";
 * console.log(parseAddress({ host: "[::1]", port: "7" })); // { hostname: "::1", port: 7 }
 * console.log(parseAddress({ host: "127.1" }).hostname); // "127.0.0.1"
 * ```
 *
 * @param values Parsed flags.
 * @returns Host and port.
 * @throws {UsageError} When `--host` is not an address or name to use as it stands, or `--port`
 * is not a port.
 */
export function parseAddress(values: FlagValues): { hostname: string; port: number } {
  const host = values.host as string | undefined;
  const port = values.port === undefined ? DEFAULT_PORT : parsePort(values.port as string);
  if (host === undefined) return { hostname: DEFAULT_HOSTNAME, port };
  try {
    return { hostname: parseHost(host).hostname, port };
  } catch (error) {
    if (!(error instanceof InvalidHostError)) throw error;
    if (error.reason === "port") {
      const address = host.slice(0, host.lastIndexOf(":"));
      throw new UsageError(
        `--host ${JSON.stringify(host)} holds a port: give it with --port, ` +
          `as in --host ${address} --port ${error.port}`,
      );
    }
    throw new UsageError(`--host: ${error.message}`);
  }
}

/**
 * Parses a whole-number flag within bounds.
 *
 * @param text The value.
 * @param flag The flag name, for the message.
 * @param range Inclusive bounds.
 * @returns The number.
 */
export function parseInteger(
  text: string,
  flag: string,
  range: { min?: number; max?: number } = {},
): number {
  const min = range.min ?? 0;
  const max = range.max ?? Number.MAX_SAFE_INTEGER;
  const value = Number(text);
  if (!/^-?\d+$/.test(text) || value < min || value > max) {
    const bounds = range.max === undefined ? `at least ${min}` : `from ${min} to ${max}`;
    throw new UsageError(`${flag} must be a whole number ${bounds}, got "${text}"`);
  }
  return value;
}

/**
 * Parses a rate flag: a positive number with an optional decimal suffix (`64k`, `1.5M`, `2G`).
 *
 * @param text The value.
 * @param flag The flag name, for the message.
 * @param unit What is counted per second, for the message (`bytes`, `requests`).
 * @returns The rate per second.
 */
export function parseRate(text: string, flag: string, unit: string): number {
  const match = /^(\d+(?:\.\d+)?)([kMG]?)$/.exec(text.trim());
  const value = match ? Number(match[1]) * { "": 1, k: 1e3, M: 1e6, G: 1e9 }[match[2]]! : NaN;
  if (!(value > 0) || !Number.isFinite(value)) {
    throw new UsageError(
      `${flag} must be a number of ${unit} per second above 0 (like 500, 64k or 1M), got "${text}"`,
    );
  }
  return value;
}

/**
 * Parses a duration flag (`250ms`, `10s`, `2m`; bare = ms).
 *
 * @param text The value.
 * @param flag The flag name, for the message.
 * @returns Milliseconds.
 */
export function parseDurationFlag(text: string, flag: string): number {
  try {
    return parseDuration(text);
  } catch (error) {
    throw new UsageError(`${flag}: ${(error as Error).message}`);
  }
}

/**
 * Runs a CLI's main function and exits with its code, turning every error into one line on stderr:
 * usage errors exit 2, everything else exits 1, and a missing permission names the flag to add.
 *
 * @param name Program name for messages.
 * @param main The program; resolves with an exit code.
 */
export async function runCli(name: string, main: () => Promise<number>): Promise<never> {
  let code: number;
  try {
    code = await main();
  } catch (error) {
    code = reportFailure(name, error);
  }
  Deno.exit(code);
}

/**
 * Prints one line for an error and returns the exit code it deserves.
 *
 * @param name Program name for messages.
 * @param error What was thrown.
 * @returns 2 for usage errors, 1 otherwise.
 */
export function reportFailure(name: string, error: unknown): number {
  const red = paletteFor(Deno.stderr).red;
  if (error instanceof UsageError) {
    console.error(`${name}: ${error.message} (see --help)`);
    return EXIT_USAGE;
  }
  const message = error instanceof Error ? error.message.split("\n")[0] : String(error);
  const permission = error instanceof Deno.errors.NotCapable ||
    error instanceof Deno.errors.PermissionDenied;
  console.error(`${name}: ${red(permission ? "permission denied" : "error")}: ${message}`);
  return EXIT_FAILURE;
}

/** The largest PEM file `readPemFile` reads: 1 MiB, hundreds of certificates. */
const MAX_PEM_BYTES = 1024 * 1024;
/** The largest other input file read whole (a results file for `merge`): 256 MiB. */
const MAX_INPUT_BYTES = 256 * 1024 * 1024;

/**
 * Reads a text file named on the command line, at most `maxBytes` of it (`/dev/zero` fails at
 * once). A file that is missing, a directory, unreadable or too large is a usage error naming
 * `what` and the file; a missing `--allow-read` stays Deno's NotCapable, whose message names that
 * flag.
 *
 * @example
 * ```ts
 * import { readInputFile, UsageError } from "./_cli.ts";
 * await readInputFile("/no/such/file.json", "merge").catch((error: UsageError) =>
 *   console.log(error.message) // "merge /no/such/file.json: no such file"
 * );
 * ```
 *
 * @param file The path given.
 * @param what The flag or subcommand, for the message.
 * @param limit `maxBytes`, the most it reads (default 256 MiB), and `tooLarge`, what to say of a
 * larger file.
 * @returns The file's text.
 */
export async function readInputFile(
  file: string,
  what: string,
  limit: { maxBytes?: number; tooLarge?: string } = {},
): Promise<string> {
  const maxBytes = limit.maxBytes ?? MAX_INPUT_BYTES;
  const tooLarge = limit.tooLarge ?? `larger than ${formatBytes(maxBytes)}`;
  try {
    return await readTextFileCapped(file, maxBytes);
  } catch (error) {
    throw new UsageError(`${what} ${file}: ${unreadable(error, tooLarge)}`);
  }
}

/** PEM markers that `readPemFile` looks for. */
const PEM_MARKERS = {
  certificate: /-----BEGIN CERTIFICATE-----/,
  key: /-----BEGIN (?:RSA |EC )?PRIVATE KEY-----/,
} as const;

/**
 * Reads a PEM file named by a flag (`--tls-cert`, `--tls-key`, `--ca`). A file that is missing,
 * unreadable, larger than {@linkcode MAX_PEM_BYTES} (`/dev/zero` fails at once), encrypted or holds
 * no PEM block of the right kind is a usage error naming the flag and the file; a missing `--allow-read` stays Deno's NotCapable, whose message names that flag.
 *
 * @param file The path given.
 * @param flag The flag, for the message.
 * @param kind What the file must hold.
 * @returns The file's text.
 */
export async function readPemFile(
  file: string,
  flag: string,
  kind: "certificate" | "key",
): Promise<string> {
  const text = await readInputFile(file, flag, {
    maxBytes: MAX_PEM_BYTES,
    tooLarge: `larger than 1 MiB; a PEM ${kind} file is a few KiB`,
  });
  if (kind === "key" && /ENCRYPTED/.test(text)) {
    throw new UsageError(`${flag} ${file}: the key is encrypted; give an unencrypted PEM key`);
  }
  if (!PEM_MARKERS[kind].test(text)) {
    const expected = kind === "key" ? "-----BEGIN PRIVATE KEY-----" : "-----BEGIN CERTIFICATE-----";
    throw new UsageError(`${flag} ${file}: no PEM ${kind} in it (expected "${expected}")`);
  }
  return text;
}

/**
 * Why a file named by a flag could not be read, in a few words for a usage error. A missing
 * `--allow-read` (Deno's NotCapable, whose message names that flag) is thrown on as it is.
 */
function unreadable(error: unknown, tooLarge: string): string {
  if (error instanceof Deno.errors.NotCapable) throw error;
  return error instanceof FileTooLargeError
    ? tooLarge
    : error instanceof Deno.errors.NotFound
    ? "no such file"
    : error instanceof Deno.errors.IsADirectory
    ? "is a directory"
    : error instanceof Deno.errors.PermissionDenied
    ? "not readable (file permissions)"
    : (error as Error).message.split("\n")[0];
}

/**
 * Reads a file of CIDR rules named by a flag (`--allow-file`): one rule a line, `#` comments
 * (`readCidrFile` in cidr.ts). A rule that does not parse is a usage error naming the flag, the
 * file and the line; so is a file that is missing, unreadable or larger than 16 MiB (`/dev/zero`
 * fails at once). A missing `--allow-read` stays Deno's NotCapable, whose message names that flag.
 *
 * @example
 * ```ts
 * import { readAllowFile } from "./_cli.ts";
 * const path = await Deno.makeTempFile();
 * await Deno.writeTextFile(path, "# the lab\n10.0.0.0/8\n2001:db8::/32 # and its v6\n");
 * console.log(await readAllowFile(path, "--allow-file")); // ["10.0.0.0/8", "2001:db8::/32"]
 * await Deno.remove(path);
 * ```
 *
 * @param file The path given.
 * @param flag The flag, for the message.
 * @returns The rules, in order.
 * @throws {UsageError} On a bad rule or a file that cannot be read.
 */
export async function readAllowFile(file: string, flag: string): Promise<string[]> {
  try {
    return await readCidrFile(file);
  } catch (error) {
    if (error instanceof CidrLineError) throw new UsageError(`${flag} ${error.message}`);
    const why = unreadable(error, "larger than 16 MiB (some 800,000 rules): is it a rules file?");
    throw new UsageError(`${flag} ${file}: ${why}`);
  }
}

/**
 * Rewrites a missing permission for a Unix socket so the one line names every flag Deno 2.9 asks
 * for (it reports them one at a time: read, then write, then net); other errors pass through.
 *
 * @param error What was thrown.
 * @param path The socket path.
 * @returns The error to throw.
 */
export function unixPermissionError(error: unknown, path: string): unknown {
  if (!(error instanceof Deno.errors.NotCapable)) return error;
  const detail = error.message.split("\n")[0].replace(/, run again with.*$/, "");
  return new Deno.errors.NotCapable(
    `--unix needs --allow-read, --allow-write and --allow-net (or --allow-net=unix:${path}) ` +
      `for ${path} (${detail})`,
  );
}

const printableText = new TextDecoder("utf-8", { fatal: true });

/**
 * The bytes as text, when they are UTF-8 with no control characters but tab and line breaks.
 *
 * @example
 * ```ts
 * import { printable } from "./_cli.ts";
 * console.log(printable(new Uint8Array([104, 105])), printable(new Uint8Array([0]))); // "hi" undefined
 * ```
 *
 * @param data The bytes.
 * @returns The text, or undefined for binary data.
 */
export function printable(data: Uint8Array): string | undefined {
  try {
    const text = printableText.decode(data);
    // deno-lint-ignore no-control-regex
    return /[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]/.test(text) ? undefined : text;
  } catch {
    return undefined; // not UTF-8
  }
}

/**
 * Shows received bytes for people: quoted text when printable, a hex dump otherwise; either is cut
 * after `limit` bytes (characters, for text) with a note of what was left out, so a 64 KiB reply
 * is one readable line, not a screenful.
 *
 * @example
 * ```ts
 * import { showBytes } from "./_cli.ts";
 * console.log(showBytes(new TextEncoder().encode("x".repeat(300)), 4)); // "xxxx" … (296 more bytes)
 * ```
 *
 * @param data The bytes.
 * @param limit Bytes (or characters) shown at most.
 * @returns One line of text, or several lines of hex dump.
 */
export function showBytes(data: Uint8Array, limit = 256): string {
  const text = printable(data);
  if (text !== undefined) {
    if (text.length <= limit) return JSON.stringify(text);
    const rest = data.length - new TextEncoder().encode(text.slice(0, limit)).length;
    return `${JSON.stringify(text.slice(0, limit))} … (${countOf(rest, "more byte")})`;
  }
  const lines: string[] = [];
  const shown = data.subarray(0, limit);
  for (let offset = 0; offset < shown.length; offset += 16) {
    const row = shown.subarray(offset, offset + 16);
    const hex = [...row].map((b) => b.toString(16).padStart(2, "0")).join(" ");
    const ascii = [...row].map((b) => (b >= 0x20 && b < 0x7f ? String.fromCharCode(b) : "."))
      .join("");
    lines.push(`  ${offset.toString(16).padStart(8, "0")}  ${hex.padEnd(47)}  |${ascii}|`);
  }
  if (data.length > limit) lines.push(`  … ${countOf(data.length - limit, "more byte")}`);
  return `${data.length} bytes:\n${lines.join("\n")}`;
}

const integer = new Intl.NumberFormat("en-US", { maximumFractionDigits: 0 });

/**
 * A whole number with thousands separators.
 *
 * @example
 * ```ts
 * import { formatCount } from "./_cli.ts";
 * console.log(formatCount(1234567)); // "1,234,567"
 * ```
 *
 * @param n The number.
 * @returns `1,234,567`.
 */
export function formatCount(n: number): string {
  return integer.format(n);
}

/**
 * A count and its noun, singular or plural as the count asks: `1 byte`, `2 bytes`, `1,024 bytes`.
 *
 * @example
 * ```ts
 * import { countOf } from "./_cli.ts";
 * console.log(countOf(1, "TCP session"), countOf(4096, "datagram")); // "1 TCP session" "4,096 datagrams"
 * ```
 *
 * @param n The count.
 * @param noun The singular.
 * @param plural The plural, when it is not `noun` + "s".
 * @returns The text.
 */
export function countOf(n: number, noun: string, plural = `${noun}s`): string {
  return `${formatCount(n)} ${n === 1 ? noun : plural}`;
}

/**
 * Formats a byte count with binary units: `512 B`, `1.5 KiB`, `3.2 GiB`.
 *
 * @param bytes A count.
 * @returns Short text.
 */
export function formatBytes(bytes: number): string {
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let value = bytes;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit++;
  }
  const digits = unit === 0 ? 0 : value < 10 ? 2 : 1;
  return `${new Intl.NumberFormat("en", { maximumFractionDigits: digits }).format(value)} ${
    units[unit]
  }`;
}
