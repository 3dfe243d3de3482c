/**
 * Allow-lists from text and files: one CIDR rule a line, `#` comments, blank lines (for
 * `server.ts --allow-file`); a rule that does not parse names its file and line.
 *
 * @example
 * ```ts
 * import { parseCidrLines } from "./cidr_file.ts";
 * console.log(parseCidrLines("10.0.0.0/8 # lab\n\n::1\n")); // ["10.0.0.0/8", "::1"]
 * ```
 *
 * @module
 */
import { parseCidr } from "./cidr.ts";
import { readTextFileCapped } from "./_read_file.ts";

export { FileTooLargeError } from "./_read_file.ts";

/** A rule in a list of rules (text or file) that does not parse, with where it stands. */
export class CidrLineError extends TypeError {
  /** The line number, from 1. */
  readonly line: number;
  /** The file (or other source) named in the message, when given. */
  readonly source?: string;

  /**
   * Creates the error.
   *
   * @param message What is wrong with the rule (the {@linkcode parseCidr} message).
   * @param line The line number, from 1.
   * @param source The file, when known.
   */
  constructor(message: string, line: number, source?: string) {
    super(`${source === undefined ? "line " : `${source}:`}${line}: ${message}`);
    this.name = "CidrLineError";
    this.line = line;
    this.source = source;
  }
}

/** Options of {@linkcode parseCidrLines}. */
export interface ParseCidrLinesOptions {
  /** The file the text came from, named in errors (`allow.txt:12: ...`). */
  source?: string;
}

/**
 * Parses a list of rules, one a line: blank lines are skipped, `#` starts a comment (a whole
 * line or the end of one), surrounding whitespace is ignored, `\r\n` line ends are fine. Each
 * rule is checked with {@linkcode parseCidr}.
 *
 * @example
 * ```ts
 * import { CidrList } from "./cidr.ts";
 * import { parseCidrLines } from "./cidr_file.ts";
 *
 * const rules = parseCidrLines("# offices\n10.0.0.0/8\n\n2001:db8::/32  # lab\n");
 * console.log(rules); // ["10.0.0.0/8", "2001:db8::/32"]
 * console.log(new CidrList(rules).matches("10.1.2.3")); // true
 * ```
 *
 * @param text The list.
 * @param options Where it came from, for errors.
 * @returns The rules, in order, as written (trimmed).
 * @throws {CidrLineError} On the first rule that does not parse, naming its line.
 */
export function parseCidrLines(text: string, options: ParseCidrLinesOptions = {}): string[] {
  const rules: string[] = [];
  let line = 0;
  for (let start = 0; start <= text.length;) {
    let end = text.indexOf("\n", start);
    if (end === -1) end = text.length;
    line++;
    const hash = text.indexOf("#", start);
    const rule = text.slice(start, hash !== -1 && hash < end ? hash : end).trim();
    start = end + 1;
    if (rule === "") continue;
    try {
      parseCidr(rule);
    } catch (error) {
      throw new CidrLineError((error as Error).message, line, options.source);
    }
    rules.push(rule);
  }
  return rules;
}

/** Options of {@linkcode readCidrFile}. */
export interface ReadCidrFileOptions {
  /** The largest file accepted, in bytes. Default {@linkcode MAX_CIDR_FILE_BYTES}. */
  maxBytes?: number;
}

/**
 * The largest rules file {@linkcode readCidrFile} reads by default: 16 MiB, some 800,000 rules.
 *
 * @example
 * ```ts
 * import { MAX_CIDR_FILE_BYTES } from "./cidr_file.ts";
 *
 * console.log(MAX_CIDR_FILE_BYTES / 1024 / 1024); // 16
 * ```
 */
export const MAX_CIDR_FILE_BYTES = 16 * 1024 * 1024;

/**
 * Reads rules from a file, one a line, as {@linkcode parseCidrLines} describes (needs
 * `--allow-read` for the file). The result can be given to {@linkcode CidrList} or to a
 * server's `allow` option, alone or with other rules.
 *
 * @example
 * ```ts
 * import { CidrList } from "./cidr.ts";
 * import { readCidrFile } from "./cidr_file.ts";
 *
 * const path = await Deno.makeTempFile();
 * await Deno.writeTextFile(path, "127.0.0.0/8\n::1 # loopback\n");
 * const allow = new CidrList(await readCidrFile(path));
 * console.log(allow.size, allow.matches("127.0.0.1")); // 2 true
 * await Deno.remove(path);
 * ```
 *
 * @param path The file.
 * @param options The size bound.
 * @returns The rules, in order.
 * @throws {CidrLineError} On a rule that does not parse, naming the file and line.
 * @throws {FileTooLargeError} When the file is larger than `maxBytes`.
 * @throws {Deno.errors.NotFound} (and other Deno errors) when the file cannot be read.
 */
export async function readCidrFile(
  path: string,
  options: ReadCidrFileOptions = {},
): Promise<string[]> {
  const text = await readTextFileCapped(path, options.maxBytes ?? MAX_CIDR_FILE_BYTES);
  return parseCidrLines(text, { source: path });
}
