/**
 * The WebSocket echo's option defaults and their check, and its URLs: what `serveEcho`, the CLI
 * and the probe's WebSocket lane need before (and without) loading the WebSocket server itself,
 * which a server without `ws` never loads. Public through ws.ts.
 *
 * @module
 */
import { CidrList } from "./cidr.ts";
import { type EchoAddress, formatAddress } from "./errors.ts";
import { checkDuration, checkWhole, optionTypeError } from "./_validate.ts";
import { DEFAULT_HOSTNAME, type WsOptions } from "./types.ts";

/** The WebSocket echo's port when none is given (the TCP/UDP echo's 5006, plus one). */
export const DEFAULT_WS_PORT = 5007;
/** Largest message echoed by default: 16 MiB. */
export const DEFAULT_WS_MAX_MESSAGE = 16 << 20;
/**
 * Largest `maxMessage` allowed: the runtime refuses single frames of 64 MiB or more before this
 * module sees them.
 */
export const WS_MAX_MESSAGE_LIMIT = (64 << 20) - 1;
/** Default cap on bytes queued to a client that does not read: 32 MiB. */
export const DEFAULT_WS_MAX_BUFFERED = 32 << 20;
/** Default keep-alive: a ping after 15 s without messages, closed 15 s later without a reply. */
export const DEFAULT_WS_KEEP_ALIVE = 30_000;

/**
 * Checks the WebSocket echo's own options without binding anything; `serveEcho` checks its `ws`
 * option with it. Every error names its option in an `option` property.
 *
 * @example
 * ```ts
 * import { validateWsOptions } from "./_ws_options.ts";
 * try {
 *   validateWsOptions({ maxMessage: 1 << 30 });
 * } catch (error) {
 *   console.log((error as RangeError & { option: string }).option); // "maxMessage"
 * }
 * ```
 *
 * @param options The options.
 * @throws {RangeError} When a number is out of range.
 * @throws {TypeError} When an `eventsFrom` rule is not a CIDR range.
 */
export function validateWsOptions(options: WsOptions): void {
  checkWhole("port", options.port, 0, { max: 65535 });
  checkDuration("keepAlive", options.keepAlive);
  checkWhole("maxMessage", options.maxMessage, 0, { max: WS_MAX_MESSAGE_LIMIT });
  checkWhole("maxBuffered", options.maxBuffered, 1);
  if (options.eventsFrom !== undefined) {
    try {
      new CidrList(options.eventsFrom);
    } catch (error) {
      throw optionTypeError("eventsFrom", (error as Error).message);
    }
  }
}

/** Where a WebSocket client connects: a URL, or its parts; see {@linkcode wsUrl}. */
export interface WsUrlOptions {
  /** The echo's URL (`ws://…` or `wss://…`); or give `hostname` and `port`. */
  url?: string;
  /** Server host. Default `127.0.0.1`. */
  hostname?: string;
  /** Server port. Default 5007. */
  port?: number;
  /** Path to ask for. Default `/`. */
  path?: string;
  /** Present (any object): `wss:` instead of `ws:` when the URL is built from its parts. */
  tls?: object;
}

/**
 * Builds the URL `echoWs` (and the probe's WebSocket lane) connects to.
 *
 * @example
 * ```ts
 * import { wsUrl } from "./ws.ts";
 * console.log(wsUrl({ hostname: "::1", port: 8080, tls: {} })); // "wss://[::1]:8080/"
 * ```
 *
 * @param options `url`, or `hostname`, `port`, `path` and `tls`.
 * @returns The URL.
 * @throws {TypeError} When `url` is not a ws: or wss: URL, or is combined with `hostname`/`port`.
 */
export function wsUrl(options: WsUrlOptions): string {
  if (options.url !== undefined) {
    if (options.hostname !== undefined || options.port !== undefined) {
      throw new TypeError("give either url or hostname/port, not both");
    }
    const url = new URL(options.url);
    if (url.protocol !== "ws:" && url.protocol !== "wss:") {
      throw new TypeError(`not a WebSocket URL (ws: or wss:): ${options.url}`);
    }
    return url.href;
  }
  const host = formatAddress({
    hostname: options.hostname ?? DEFAULT_HOSTNAME,
    port: options.port ?? DEFAULT_WS_PORT,
  });
  return `${options.tls ? "wss" : "ws"}://${host}${options.path ?? "/"}`;
}

/**
 * The server's address in a WebSocket URL, for errors and reports (brackets off an IPv6 host; the
 * scheme's port when the URL has none).
 *
 * @example
 * ```ts
 * import { wsAddress } from "./_ws_options.ts";
 * console.log(wsAddress("wss://[::1]/echo")); // { hostname: "::1", port: 443, transport: "tcp" }
 * ```
 *
 * @param url A ws: or wss: URL.
 * @returns Host, port and transport `tcp` (what a WebSocket runs over).
 */
export function wsAddress(url: string): EchoAddress {
  const parsed = new URL(url);
  return {
    hostname: parsed.hostname.replace(/^\[|\]$/g, ""),
    port: Number(parsed.port) || (parsed.protocol === "wss:" ? 443 : 80),
    transport: "tcp",
  };
}
