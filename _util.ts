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

/**
 * Whether a TLS listen (`Deno.listenTls`, `Deno.serve` with a certificate) failed on the
 * certificate or key rather than on the address or a permission.
 *
 * @param error What the listen threw.
 * @returns true for a certificate or key the runtime could not use.
 */
export function isTlsMaterialError(error: unknown): boolean {
  if (
    error instanceof Deno.errors.AddrInUse || error instanceof Deno.errors.NotCapable ||
    error instanceof Deno.errors.PermissionDenied
  ) return false;
  return error instanceof Deno.errors.InvalidData ||
    (error instanceof Error && /\b(?:key|cert|pem|tls)/i.test(error.message));
}

/**
 * A one-line TypeError for a certificate or key a TLS listen could not use.
 *
 * @param error What the listen threw.
 * @returns The error to throw, naming what was wrong.
 */
export function tlsMaterialError(error: unknown): TypeError {
  const message = error instanceof Error ? error.message.split("\n")[0] : String(error);
  const text = /no certificates found/i.test(message)
    ? 'TLS certificate: no PEM certificate found (expected "-----BEGIN CERTIFICATE-----")'
    : /no keys found/i.test(message)
    ? 'TLS key: no PEM private key found (expected "-----BEGIN PRIVATE KEY-----", unencrypted)'
    : /mismatch|consistent/i.test(message)
    ? "TLS key does not belong to the certificate (KeyMismatch)"
    : `invalid TLS certificate or key: ${message}`;
  return new TypeError(text, { cause: error });
}
