/**
 * Typed errors raised by the echo clients and servers. Each carries the address it concerns and, where
 * there was one, the underlying error as `cause`, so callers can branch on the class (or `name`) and
 * still print a one-line message.
 *
 * @module
 */

/** A network address as Deno reports it, or a Unix socket's path. */
export interface EchoAddress {
  /** Host name or IP address (empty for a Unix socket). */
  hostname: string;
  /** Port number (0 for a Unix socket). */
  port: number;
  /** Transport the address belongs to. */
  transport: "tcp" | "udp" | "unix";
  /** For a Unix socket: its path. */
  path?: string;
}

/** Options shared by every {@linkcode EchoError}. */
export interface EchoErrorOptions {
  /** The address the operation concerned. */
  address?: EchoAddress;
  /** The error that caused this one. */
  cause?: unknown;
}

/**
 * Base class of every error this module throws on purpose.
 *
 * @example Branch on the error class
 * ```ts
 * import { EchoError, echoTcp } from "./mod.ts";
 * try {
 *   await echoTcp("hi", { port: 1, timeout: 500 });
 * } catch (error) {
 *   if (!(error instanceof EchoError)) throw error;
 *   console.log(error.name, error.message);
 * }
 * ```
 */
export class EchoError extends Error {
  /** The address the operation concerned, when known. */
  readonly address?: EchoAddress;

  /**
   * Creates an error.
   *
   * @param message One line describing what went wrong.
   * @param options The address concerned and the cause.
   */
  constructor(message: string, options: EchoErrorOptions = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = "EchoError";
    this.address = options.address;
  }
}

/**
 * No reply (or no connection) within the allowed time.
 *
 * @example
 * ```ts
 * import { EchoTimeoutError } from "./mod.ts";
 * const error = new EchoTimeoutError("no reply within 1000ms", {
 *   address: { hostname: "127.0.0.1", port: 5006, transport: "udp" },
 * });
 * console.log(error.name); // "EchoTimeoutError"
 * ```
 */
export class EchoTimeoutError extends EchoError {
  /**
   * Creates a timeout error.
   *
   * @param message One line describing what timed out.
   * @param options The address concerned and the cause.
   */
  constructor(message: string, options: EchoErrorOptions = {}) {
    super(message, options);
    this.name = "EchoTimeoutError";
  }
}

/** Where an echoed reply first differs from what was sent. */
export interface EchoMismatchErrorOptions extends EchoErrorOptions {
  /** Byte offset of the first difference (or of the missing bytes). */
  offset: number;
}

/**
 * The echoed bytes differ from the bytes that were sent.
 *
 * @example
 * ```ts
 * import { EchoMismatchError } from "./mod.ts";
 * const error = new EchoMismatchError("reply differs at byte 3", { offset: 3 });
 * console.log(error.offset); // 3
 * ```
 */
export class EchoMismatchError extends EchoError {
  /** Byte offset of the first difference. */
  readonly offset: number;

  /**
   * Creates a mismatch error.
   *
   * @param message One line describing the difference.
   * @param options The offset of the first difference, the address and the cause.
   */
  constructor(message: string, options: EchoMismatchErrorOptions) {
    super(message, options);
    this.name = "EchoMismatchError";
    this.offset = options.offset;
  }
}

/**
 * The connection could not be made or was lost (refused, reset, unreachable, address in use).
 *
 * @example
 * ```ts
 * import { EchoConnectionError } from "./mod.ts";
 * const error = new EchoConnectionError("connection refused by 127.0.0.1:1", {
 *   address: { hostname: "127.0.0.1", port: 1, transport: "tcp" },
 * });
 * console.log(error.address?.port); // 1
 * ```
 */
export class EchoConnectionError extends EchoError {
  /**
   * Creates a connection error.
   *
   * @param message One line naming the address and what happened.
   * @param options The address concerned and the cause.
   */
  constructor(message: string, options: EchoErrorOptions = {}) {
    super(message, options);
    this.name = "EchoConnectionError";
  }
}

/**
 * Writing the echo to its destination failed (for {@linkcode echoTcpStream}'s `output`: a pipe
 * whose reader went away, a full disk), not the connection: the echo was verified up to `bytes`.
 *
 * @example
 * ```ts
 * import { EchoOutputError } from "./mod.ts";
 * const error = new EchoOutputError("output closed after 100 echoed bytes: broken pipe", {
 *   bytes: 100,
 * });
 * console.log(error.bytes); // 100
 * ```
 */
export class EchoOutputError extends EchoError {
  /** Echoed bytes written to the output before it failed. */
  readonly bytes: number;

  /**
   * Creates an output error.
   *
   * @param message One line saying what failed.
   * @param options How many bytes were written, the address and the cause.
   */
  constructor(message: string, options: EchoErrorOptions & { bytes: number }) {
    super(message, options);
    this.name = "EchoOutputError";
    this.bytes = options.bytes;
  }
}

/**
 * Formats an address as `host:port`, bracketing IPv6 literals (`[::1]:5006`); a Unix socket's
 * address is its path.
 *
 * @example
 * ```ts
 * import { formatAddress } from "./mod.ts";
 * console.log(formatAddress({ hostname: "::1", port: 7 })); // "[::1]:7"
 * console.log(formatAddress({ hostname: "", port: 0, path: "/tmp/echo.sock" })); // "/tmp/echo.sock"
 * ```
 *
 * @param address The address to format.
 * @returns The address as text.
 */
export function formatAddress(address: { hostname: string; port: number; path?: string }): string {
  if (address.path !== undefined) return address.path;
  return address.hostname.includes(":")
    ? `[${address.hostname}]:${address.port}`
    : `${address.hostname}:${address.port}`;
}

/**
 * Turns a Deno network error into a one-line explanation (`connection refused`, `address in use`, ...).
 *
 * @param error Any thrown value.
 * @returns A short lower-case phrase.
 */
export function describeNetworkError(error: unknown): string {
  if (error instanceof Deno.errors.ConnectionRefused) return "connection refused";
  if (error instanceof Deno.errors.ConnectionReset) return "connection reset by peer";
  if (error instanceof Deno.errors.ConnectionAborted) return "connection aborted";
  if (error instanceof Deno.errors.AddrInUse) return "address already in use";
  if (error instanceof Deno.errors.AddrNotAvailable) return "address not available on this machine";
  if (error instanceof Deno.errors.TimedOut) return "timed out";
  if (error instanceof Deno.errors.NotConnected) return "not connected";
  if (error instanceof Deno.errors.BrokenPipe) return "broken pipe";
  if (error instanceof Deno.errors.NotCapable || error instanceof Deno.errors.PermissionDenied) {
    return (error as Error).message;
  }
  if (error instanceof Error) return error.message.split("\n")[0];
  return String(error);
}
