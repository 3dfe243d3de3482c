/**
 * Small internal helpers shared by the transports.
 *
 * @module
 */
import { Buffer } from "node:buffer";
import type { EchoAddress } from "./errors.ts";
import { describeNetworkError, EchoConnectionError, formatAddress } from "./errors.ts";

/**
 * Wraps a bind failure in an {@linkcode EchoConnectionError} naming the address; permission errors
 * pass through untouched so callers can tell which flag is missing.
 *
 * @param error What the bind threw.
 * @param address Where it tried to bind.
 * @returns The error to throw.
 */
export function listenError(error: unknown, address: EchoAddress): unknown {
  if (error instanceof Deno.errors.NotCapable || error instanceof Deno.errors.PermissionDenied) {
    return error;
  }
  return new EchoConnectionError(
    `cannot listen on ${address.transport} ${formatAddress(address)}: ${
      describeNetworkError(error)
    }`,
    { address, cause: error },
  );
}

const encoder = new TextEncoder();

/**
 * Text or bytes as bytes.
 *
 * @param message A string (sent as UTF-8) or bytes.
 * @returns The bytes.
 */
export function toBytes(message: string | Uint8Array): Uint8Array {
  return typeof message === "string" ? encoder.encode(message) : message;
}

/** Runs at least this long are compared natively (Buffer.compare). */
const NATIVE_COMPARE_MIN = 256;

/**
 * Index of the first byte where two arrays differ, or -1 when equal.
 *
 * @param a First array.
 * @param b Second array.
 * @returns The offset, or -1.
 */
export function firstDifference(a: Uint8Array, b: Uint8Array): number {
  const n = Math.min(a.length, b.length);
  // A native memcmp settles long equal runs (the common case) far faster than a JS loop.
  const equal = n >= NATIVE_COMPARE_MIN && Buffer.compare(a.subarray(0, n), b.subarray(0, n)) === 0;
  if (!equal) { for (let i = 0; i < n; i++) if (a[i] !== b[i]) return i; }
  return a.length === b.length ? -1 : n;
}
