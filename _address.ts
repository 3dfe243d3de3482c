/**
 * Parsing the address a server is asked to bind (`--host`, `serveEcho({ hostname })`) once and
 * strictly, before anything listens: IP literals are put in canonical form, host names are
 * checked for syntax, and everything else is a typed usage error naming what is wrong. Whether
 * the server is reachable from the network is not decided here, from the text: it is decided
 * from the address actually bound (`isLoopback(listener.addr.hostname)` in cidr.ts), after the
 * bind succeeded, since a name such as `localhost` or a shorthand such as `127.1` says little.
 *
 * @module
 */
import { parseCidr } from "./cidr.ts";

/** What a host text is: an IPv4 or IPv6 literal, or a host name resolved when binding. */
export type HostKind = "ipv4" | "ipv6" | "name";

/** A host text, parsed: see {@linkcode parseHost}. */
export interface ParsedHost {
  /** What to bind: an IP literal in canonical form, or the host name in lower case. */
  hostname: string;
  /** Which kind of text it was. */
  kind: HostKind;
}

/**
 * Why {@linkcode parseHost} refused a text:
 *
 * - `"empty"`: nothing given.
 * - `"control"`: a space, newline or other control character, or a non-ASCII character.
 * - `"port"`: the text holds a port too (`127.0.0.1:5006`, `[::1]:5006`); {@linkcode InvalidHostError.port} has it.
 * - `"brackets"`: brackets that do not hold exactly one IPv6 address (`[[::1]]`, `[127.0.0.1]`).
 * - `"zone"`: an IPv6 zone id (`::1%lo`), which Deno cannot bind.
 * - `"ambiguous"`: an IPv4 address with leading zeros or in hex, which some systems read as octal.
 * - `"syntax"`: neither an IP address nor a host name.
 */
export type InvalidHostReason =
  | "empty"
  | "control"
  | "port"
  | "brackets"
  | "zone"
  | "ambiguous"
  | "syntax";

/**
 * A host text that cannot be bound as given: a usage error (a CLI exits 2 on it). The message is
 * one line whatever the text holds (it is quoted with escapes).
 *
 * @example
 * ```ts
 * import { InvalidHostError, parseHost } from "./_address.ts";
 *
 * try {
 *   parseHost("127.0.0.1:20052");
 * } catch (error) {
 *   if (error instanceof InvalidHostError) console.log(error.reason, error.port); // "port" 20052
 * }
 * ```
 */
export class InvalidHostError extends TypeError {
  /** The text refused. */
  readonly input: string;
  /** Why. */
  readonly reason: InvalidHostReason;
  /** For `"port"`: the port the text held. */
  readonly port?: number;
  /** The option at fault, as the server options spell it (see `OptionError` in _validate.ts). */
  readonly option = "hostname";

  /**
   * Creates the error.
   *
   * @param input The text refused.
   * @param reason Why.
   * @param detail The explanation, after the quoted text.
   * @param port For `"port"`: the port the text held.
   */
  constructor(input: string, reason: InvalidHostReason, detail: string, port?: number) {
    super(`invalid host ${JSON.stringify(input)}: ${detail}`);
    this.name = "InvalidHostError";
    this.input = input;
    this.reason = reason;
    this.port = port;
  }
}

const NAME =
  /^(?=.{1,253}$)[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?(?:\.[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?)*$/i;

/** The canonical text of an IPv6 literal, or undefined. */
function ipv6(text: string): string | undefined {
  if (!text.includes(":")) return undefined;
  try {
    const cidr = parseCidr(text);
    return cidr.family === 6 ? cidr.address : undefined;
  } catch {
    return undefined;
  }
}

/**
 * An IPv4 address in the numeric forms `inet_aton` reads, decimal only: `a.b.c.d`, and the
 * shorthands `a.b.c` (c fills 16 bits), `a.b` (b fills 24 bits) and `a` (32 bits), so `127.1`
 * is `127.0.0.1`. Returns the dotted quad, undefined for other text; throws on leading zeros
 * and hex, which some resolvers read as octal or hex and others refuse.
 */
function ipv4(input: string, text: string): string | undefined {
  if (!/^(?:0x[0-9a-f]*|[0-9]*)(?:\.(?:0x[0-9a-f]*|[0-9]*))*$/i.test(text)) return undefined;
  const parts = text.split(".");
  if (parts.length > 4 || parts.some((p) => p === "")) {
    throw new InvalidHostError(input, "syntax", "not an IPv4 address (write a.b.c.d)");
  }
  if (parts.some((p) => !/^(0|[1-9][0-9]*)$/.test(p))) {
    throw new InvalidHostError(
      input,
      "ambiguous",
      "leading zeros (octal to some systems) and hex are not accepted: write a.b.c.d in decimal",
    );
  }
  const numbers = parts.map(Number);
  const last = numbers.pop()!;
  const lastBits = 8 * (4 - numbers.length);
  if (numbers.some((n) => n > 255) || last >= 2 ** lastBits) {
    throw new InvalidHostError(input, "syntax", "a number in it is out of range");
  }
  const value = numbers.reduce((acc, n, i) => acc + n * 2 ** (8 * (3 - i)), 0) + last;
  return [24, 16, 8, 0].map((shift) => Math.floor(value / 2 ** shift) % 256).join(".");
}

/**
 * Parses the address a server is to bind, strictly and once:
 *
 * - IPv4 literals, including the shorthands `127.1` and `10.1.2` (decimal only: leading zeros
 *   and hex are refused as ambiguous), are returned as a dotted quad.
 * - IPv6 literals, bare or in one pair of brackets (`[::1]`), are returned in canonical form.
 *   Zone ids (`fe80::1%eth0`, `::1%lo`) are refused: Deno's bind cannot take one (it would
 *   try to resolve the text as a name), and for an address that is not link-local the zone adds
 *   nothing, so giving the address alone is the fix.
 * - Host names (`localhost`, `echo.example`) are checked for syntax and returned in lower case,
 *   to be resolved when binding.
 * - Anything with a port (`127.0.0.1:5006`, `[::1]:5006`, `localhost:5006`), extra brackets,
 *   spaces, control or non-ASCII characters is refused.
 *
 * Classify the bound address, not this text, to decide whether the server is reachable from
 * the network: see the module documentation.
 *
 * @example
 * ```ts
 * import { parseHost } from "./_address.ts";
 *
 * console.log(parseHost("127.1")); // { hostname: "127.0.0.1", kind: "ipv4" }
 * console.log(parseHost("[0:0::1]")); // { hostname: "::1", kind: "ipv6" }
 * console.log(parseHost("LocalHost")); // { hostname: "localhost", kind: "name" }
 * ```
 *
 * @param text The host as given.
 * @returns What to bind and what kind of text it was.
 * @throws {InvalidHostError} With a one-line message and a `reason`.
 */
export function parseHost(text: string): ParsedHost {
  if (typeof text !== "string" || text === "") {
    throw new InvalidHostError(String(text ?? ""), "empty", "give an address or a host name");
  }
  if (/[^\x21-\x7e]/.test(text)) {
    throw new InvalidHostError(
      text,
      "control",
      "spaces, control characters and non-ASCII characters are not allowed (write a name in its ASCII form)",
    );
  }
  if (text.includes("[") || text.includes("]")) {
    const match = /^\[([^[\]]+)\](?::(\d+))?$/.exec(text);
    const inner = match ? ipv6(match[1]) : undefined;
    if (match && inner !== undefined && match[2] !== undefined) throw portError(text, match[2]);
    if (match && match[1].includes("%")) throw zoneError(text);
    if (!match || inner === undefined) {
      throw new InvalidHostError(text, "brackets", "brackets may hold one IPv6 address only");
    }
    return { hostname: inner, kind: "ipv6" };
  }
  if (text.includes("%")) {
    if (ipv6(text.slice(0, text.indexOf("%"))) !== undefined) throw zoneError(text);
    throw new InvalidHostError(text, "syntax", "not an IP address or host name");
  }
  const v6 = ipv6(text);
  if (v6 !== undefined) return { hostname: v6, kind: "ipv6" };
  const hostPort = /^([^:]+):(\d+)$/.exec(text);
  if (hostPort && (NAME.test(hostPort[1]) || /^[0-9.]+$/.test(hostPort[1]))) {
    throw portError(text, hostPort[2]);
  }
  if (text.includes(":")) throw new InvalidHostError(text, "syntax", "not an IPv6 address");
  const v4 = ipv4(text, text);
  if (v4 !== undefined) return { hostname: v4, kind: "ipv4" };
  const name = text.endsWith(".") ? text.slice(0, -1) : text;
  if (!NAME.test(name) || /^[0-9]+$/.test(name.split(".").at(-1)!)) {
    throw new InvalidHostError(text, "syntax", "not an IP address or host name");
  }
  return { hostname: name.toLowerCase(), kind: "name" };
}

function portError(text: string, port: string): InvalidHostError {
  return new InvalidHostError(
    text,
    "port",
    `give the address alone and the port (${port}) separately`,
    Number(port),
  );
}

function zoneError(text: string): InvalidHostError {
  return new InvalidHostError(
    text,
    "zone",
    "zone ids (%...) cannot be bound; give the address without it (a link-local fe80:: address cannot be served)",
  );
}

/** A host and port, as {@linkcode parseHostPort} reads them. */
export interface HostPort {
  /** Host name or address (IPv6 without brackets). */
  hostname: string;
  /** Port, 0-65535. */
  port: number;
}

/**
 * Reads a listen address for `--metrics`: `HOST:PORT`, `[IPv6]:PORT`, or a bare `PORT` (on
 * `defaultHost`).
 *
 * @example
 * ```ts
 * import { parseHostPort } from "./_address.ts";
 * console.log(parseHostPort("9101")); // { hostname: "127.0.0.1", port: 9101 }
 * console.log(parseHostPort("[::1]:9101")); // { hostname: "::1", port: 9101 }
 * console.log(parseHostPort("0.0.0.0:9101")); // { hostname: "0.0.0.0", port: 9101 }
 * ```
 *
 * @param text The address.
 * @param defaultHost The host for a bare port; default `127.0.0.1`.
 * @returns The host and port.
 * @throws {TypeError} With a one-line message when the text is not such an address.
 */
export function parseHostPort(text: string, defaultHost = "127.0.0.1"): HostPort {
  const bad = (why: string) =>
    new TypeError(`invalid address ${JSON.stringify(text)}: ${why} (expected HOST:PORT)`);
  if (typeof text !== "string" || text.trim() !== text || text === "") throw bad("empty or padded");
  let hostname: string;
  let portText: string;
  const bracketed = /^\[([^\]]+)\]:([^:]*)$/.exec(text);
  if (bracketed) {
    [, hostname, portText] = bracketed;
  } else if (/^[0-9]+$/.test(text)) {
    [hostname, portText] = [defaultHost, text];
  } else {
    const colon = text.lastIndexOf(":");
    if (colon <= 0) throw bad("no port");
    hostname = text.slice(0, colon);
    portText = text.slice(colon + 1);
    if (hostname.includes(":")) throw bad("write an IPv6 address in brackets, [::1]:PORT");
  }
  if (!/^(0|[1-9][0-9]{0,4})$/.test(portText) || Number(portText) > 65535) {
    throw bad("the port must be 0-65535");
  }
  return { hostname, port: Number(portText) };
}
