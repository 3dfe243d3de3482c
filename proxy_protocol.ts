/**
 * The PROXY protocol, versions 1 and 2 (HAProxy's `doc/proxy-protocol.txt`): a load balancer
 * prepends one header to each connection saying who the client really is. This module parses it
 * strictly and incrementally, reads it off a connection within bounds of bytes and time, and
 * encodes it for the client side.
 *
 * What the parser accepts, as the spec asks:
 * - Version 1: one US-ASCII line `PROXY TCP4|TCP6 src dst sport dport\r\n`, at most 107 bytes
 *   with the CRLF; single spaces; addresses in their family's literal form (no leading zeros in
 *   IPv4 octets or ports, ports 0-65535); a lone CR or LF is refused. `PROXY UNKNOWN`, with or
 *   without anything else before the CRLF, means "use the socket's own addresses".
 * - Version 2: the 12-byte signature, version 2, command `LOCAL` (health checks: the socket's own
 *   addresses, the address block ignored) or `PROXY`; family IPv4, IPv6 (addresses used), Unix or
 *   unspecified (the socket's own addresses); the 16-bit length is checked against the address
 *   block and against `maxHeaderBytes`; TLVs are walked and each must end inside the header; a
 *   `PP2_TYPE_CRC32C` TLV is verified. Unassigned versions, commands, families and protocols are
 *   refused.
 *
 * Anything else is a {@linkcode ProxyProtocolError} whose `reason` says why, so a server can count
 * refusals by reason. The parser never throws: every input gives a header, "need more", or an
 * error.
 *
 * @example Parse what a balancer sent, and find the data after it
 * ```ts
 * import { parseProxyHeader } from "./proxy_protocol.ts";
 *
 * const bytes = new TextEncoder().encode("PROXY TCP4 192.0.2.7 198.51.100.1 56324 7\r\nhello");
 * const result = parseProxyHeader(bytes);
 * if (result.status === "done") {
 *   console.log(result.header.source); // { hostname: "192.0.2.7", port: 56324 }
 *   console.log(new TextDecoder().decode(bytes.subarray(result.header.headerLength))); // "hello"
 * }
 * ```
 *
 * @module
 */
import { type CidrList, ipFromBytes, ipToBytes, isLoopback } from "./cidr.ts";
import { EchoError, type EchoErrorOptions } from "./errors.ts";
// The reasons are counted in stats.ts, which imports nothing; they are this module's vocabulary.

/** The longest version 1 line, CRLF included (`PROXY UNKNOWN` with two full IPv6 addresses). */
export const PROXY_V1_MAX_LENGTH = 107;

/** The 12 bytes every version 2 header starts with. */
export const PROXY_V2_SIGNATURE: Uint8Array = Uint8Array.of(
  0x0d,
  0x0a,
  0x0d,
  0x0a,
  0x00,
  0x0d,
  0x0a,
  0x51,
  0x55,
  0x49,
  0x54,
  0x0a,
);

/**
 * Default bound on a whole header, in bytes: room for an IPv6 address block and about 4 KB of
 * TLVs (a balancer's unique id, ALPN, SNI and TLS details take a few hundred). A version 2 header
 * announcing more is refused as `too-long` before its body is read.
 */
export const DEFAULT_PROXY_MAX_HEADER_BYTES = 4096;

/** The largest `maxHeaderBytes` accepted: the 16-byte fixed part plus the 16-bit length's max. */
export const PROXY_MAX_HEADER_BYTES_LIMIT: number = 16 + 65535;

/** The smallest `maxHeaderBytes` accepted: a version 2 Unix address block (16 + 216 bytes). */
export const PROXY_MIN_HEADER_BYTES_LIMIT: number = 16 + 216;

/** Default time allowed for a whole header to arrive, in ms (the spec asks for at least 3 s). */
export const DEFAULT_PROXY_TIMEOUT = 5000;

import type { ProxyRefusalReason } from "./stats.ts";
export { PROXY_REFUSAL_REASONS, type ProxyRefusalReason } from "./stats.ts";

/** Options of a {@linkcode ProxyProtocolError}. */
export interface ProxyProtocolErrorOptions extends EchoErrorOptions {
  /** Why the header was refused. */
  reason: ProxyRefusalReason;
}

/**
 * A PROXY header was missing, malformed, too slow or from a peer not allowed to send one.
 *
 * @example Count refusals by reason
 * ```ts
 * import { parseProxyHeader, ProxyProtocolError } from "./proxy_protocol.ts";
 *
 * const result = parseProxyHeader(new TextEncoder().encode("GET / HTTP/1.1\r\n"));
 * if (result.status === "error") {
 *   console.log(result.error instanceof ProxyProtocolError, result.error.reason); // true "signature"
 * }
 * ```
 */
export class ProxyProtocolError extends EchoError {
  /** Why the header was refused. */
  readonly reason: ProxyRefusalReason;

  /**
   * Creates an error.
   *
   * @param message One line saying what was wrong.
   * @param options The reason, the address concerned and the cause.
   */
  constructor(message: string, options: ProxyProtocolErrorOptions) {
    super(message, options);
    this.name = "ProxyProtocolError";
    this.reason = options.reason;
  }
}

/** One end of a proxied connection. */
export interface ProxyEndpoint {
  /** IP address: dotted IPv4, or RFC 5952 IPv6 text when parsed. */
  hostname: string;
  /** Port, 0-65535. */
  port: number;
}

/** A version 2 Type-Length-Value field. */
export interface ProxyTlv {
  /** The type byte (`0x01` ALPN, `0x02` authority, `0x03` CRC32C, `0x04` no-op, `0x05` id, ...). */
  type: number;
  /** The value (at most 65,535 bytes). */
  value: Uint8Array;
}

/**
 * The address family a header announces. `"unspec"` (v1 `UNKNOWN`, v2 `AF_UNSPEC` or an
 * unspecified protocol) and `"unix"` carry no usable addresses.
 */
export type ProxyFamily = "ipv4" | "ipv6" | "unix" | "unspec";

/** The transport a version 2 header announces (version 1 is always `"stream"`, or `"unspec"`). */
export type ProxyTransport = "stream" | "dgram" | "unspec";

/** A parsed PROXY header. */
export interface ProxyHeader {
  /** 1 (text) or 2 (binary). */
  version: 1 | 2;
  /**
   * `"PROXY"`: relayed on behalf of `source`; `"LOCAL"` (version 2 only): the balancer's own
   * connection, e.g. a health check.
   */
  command: "PROXY" | "LOCAL";
  /** The announced family. */
  family: ProxyFamily;
  /** The announced transport. */
  transport: ProxyTransport;
  /**
   * The real client. `undefined` for `LOCAL`, `UNKNOWN`, Unix and unspecified families: then
   * the socket's own peer address is the client.
   */
  source?: ProxyEndpoint;
  /** The address the client connected to; `undefined` exactly when `source` is. */
  destination?: ProxyEndpoint;
  /** Version 2 TLVs, in order (empty for version 1, and when the address block is opaque). */
  tlvs: ProxyTlv[];
  /** Bytes the header took, CRLF or TLVs included: the echo starts after them. */
  headerLength: number;
}

/**
 * What {@linkcode parseProxyHeader} made of the bytes so far: a header, a request for more bytes
 * (at least `atLeast` in all), or a refusal.
 */
export type ProxyParseResult =
  | { readonly status: "done"; readonly header: ProxyHeader }
  | { readonly status: "need-more"; readonly atLeast: number }
  | { readonly status: "error"; readonly error: ProxyProtocolError };

/** Options of {@linkcode parseProxyHeader}. */
export interface ParseProxyHeaderOptions {
  /**
   * The largest header accepted, in bytes (version 1 is bounded at 107 whatever this says).
   * From {@linkcode PROXY_MIN_HEADER_BYTES_LIMIT} to {@linkcode PROXY_MAX_HEADER_BYTES_LIMIT};
   * default {@linkcode DEFAULT_PROXY_MAX_HEADER_BYTES}.
   */
  maxHeaderBytes?: number;
}

const CR = 0x0d;
const LF = 0x0a;
const V1_PREFIX = "PROXY ";
const V1_WORDS = ["TCP4", "TCP6", "UNKNOWN"] as const;
const PORT_TEXT = /^(0|[1-9][0-9]{0,4})$/;
/** The type of the v2 TLV that carries a CRC32C of the whole header. */
export const PROXY_TLV_CRC32C = 0x03;
const V2_ADDRESS_BYTES = [0, 12, 36, 216] as const; // by family nibble: unspec, inet, inet6, unix
const FAMILIES: readonly ProxyFamily[] = ["unspec", "ipv4", "ipv6", "unix"];
const TRANSPORTS: readonly ProxyTransport[] = ["unspec", "stream", "dgram"];

function refuse(reason: ProxyRefusalReason, message: string): ProxyParseResult {
  return { status: "error", error: new ProxyProtocolError(message, { reason }) };
}

function needMore(atLeast: number): ProxyParseResult {
  return { status: "need-more", atLeast };
}

/**
 * Checks `maxHeaderBytes` and returns it, or the default.
 *
 * @param value The option.
 * @returns The bound in bytes.
 */
function maxHeaderBytesOf(value: number | undefined): number {
  if (value === undefined) return DEFAULT_PROXY_MAX_HEADER_BYTES;
  if (
    !Number.isInteger(value) || value < PROXY_MIN_HEADER_BYTES_LIMIT ||
    value > PROXY_MAX_HEADER_BYTES_LIMIT
  ) {
    throw new RangeError(
      `maxHeaderBytes must be a whole number from ${PROXY_MIN_HEADER_BYTES_LIMIT} to ${PROXY_MAX_HEADER_BYTES_LIMIT}, got ${value}`,
    );
  }
  return value;
}

/**
 * Parses a PROXY header (version 1 or 2, told apart by the first byte) from the bytes a
 * connection has received so far. Call it again with more bytes after `"need-more"`; bytes past
 * `header.headerLength` are the client's data. A truncated valid header always gives
 * `"need-more"`, never a wrong header; a header that cannot become valid gives `"error"` as soon
 * as that shows.
 *
 * @example Feed it a binary header one chunk at a time
 * ```ts
 * import { parseProxyHeader } from "./proxy_protocol.ts";
 * import { encodeProxyHeader } from "./proxy_header.ts";
 *
 * const header = encodeProxyHeader({
 *   version: 2,
 *   source: { hostname: "2001:db8::7", port: 40000 },
 *   destination: { hostname: "2001:db8::1", port: 7 },
 * });
 * console.log(parseProxyHeader(header.subarray(0, 20)).status); // "need-more"
 * const result = parseProxyHeader(header);
 * if (result.status === "done") console.log(result.header.source?.hostname); // "2001:db8::7"
 * ```
 *
 * @param bytes Everything received so far, from the connection's first byte.
 * @param options The bound on the header's size.
 * @returns The header, a request for more bytes, or the refusal.
 * @throws {RangeError} Only for a bad `maxHeaderBytes` option, never for the bytes.
 */
export function parseProxyHeader(
  bytes: Uint8Array,
  options: ParseProxyHeaderOptions = {},
): ProxyParseResult {
  const maxHeaderBytes = maxHeaderBytesOf(options.maxHeaderBytes);
  if (bytes.length === 0) return needMore(1);
  if (bytes[0] === 0x50) return parseV1(bytes);
  if (bytes[0] === CR) return parseV2(bytes, maxHeaderBytes);
  return refuse(
    "signature",
    `not a PROXY protocol header (first byte 0x${bytes[0].toString(16).padStart(2, "0")})`,
  );
}

// ---------------------------------------------------------------------------------------------
// Version 1

function parseV1(bytes: Uint8Array): ProxyParseResult {
  const scan = Math.min(bytes.length, PROXY_V1_MAX_LENGTH);
  let end = -1; // index of the CR of the CRLF
  let stop = scan; // end of the printable text checked so far
  for (let i = 0; i < scan; i++) {
    const c = bytes[i];
    if (c === CR) {
      if (i + 1 === bytes.length) { // the LF may come next
        stop = i;
        break;
      }
      if (i + 1 >= PROXY_V1_MAX_LENGTH || bytes[i + 1] !== LF) {
        return i + 1 >= PROXY_V1_MAX_LENGTH
          ? refuse(
            "too-long",
            `PROXY v1 line has no CRLF in its first ${PROXY_V1_MAX_LENGTH} bytes`,
          )
          : refuse("malformed", "PROXY v1 line has a CR not followed by LF");
      }
      end = i;
      break;
    }
    if (c === LF) return refuse("malformed", "PROXY v1 line ends with LF without CR");
    if (c < 0x20 || c > 0x7e) {
      return refuse("malformed", `PROXY v1 line holds a non-printable byte 0x${c.toString(16)}`);
    }
  }
  // Only printable ASCII up to `end` (or `scan`) from here on, so bytes map 1:1 to chars.
  // (apply, not a spread: a spread walks the typed array's iterator, 10x slower here)
  const text = String.fromCharCode.apply(
    null,
    bytes.subarray(0, end >= 0 ? end : stop) as unknown as number[],
  );
  const early = checkV1Prefix(text);
  if (early) return early;
  if (end < 0) {
    if (bytes.length >= PROXY_V1_MAX_LENGTH) {
      return refuse(
        "too-long",
        `PROXY v1 line has no CRLF in its first ${PROXY_V1_MAX_LENGTH} bytes`,
      );
    }
    return needMore(bytes.length + 1);
  }
  return parseV1Line(text, end + 2);
}

/** Refuses a v1 line as soon as what came so far cannot start a valid one. */
function checkV1Prefix(text: string): ProxyParseResult | undefined {
  const head = text.slice(0, V1_PREFIX.length);
  if (!V1_PREFIX.startsWith(head)) {
    return head.length < 5 || !head.startsWith("PROXY")
      ? refuse("signature", "not a PROXY protocol header")
      : refuse("malformed", "PROXY v1 line: expected one space after PROXY");
  }
  if (text.length <= V1_PREFIX.length) return undefined;
  const rest = text.slice(V1_PREFIX.length);
  const space = rest.indexOf(" ");
  const word = space < 0 ? rest : rest.slice(0, space);
  const known = V1_WORDS.find((w) => (space < 0 ? w.startsWith(word) : w === word));
  if (known === undefined) {
    return refuse(
      "unsupported",
      `PROXY v1 protocol ${JSON.stringify(word)} is not TCP4, TCP6 or UNKNOWN`,
    );
  }
  if (known === "UNKNOWN" || space < 0) return undefined;
  const fields = rest.slice(space + 1);
  const allowed = known === "TCP4" ? /^[0-9. ]*$/ : /^[0-9a-fA-F:. ]*$/;
  if (!allowed.test(fields)) {
    return refuse("malformed", `PROXY v1 ${known} line holds characters no address or port has`);
  }
  if (fields.split(" ").length > 4) {
    return refuse("malformed", `PROXY v1 ${known} line has too many fields`);
  }
  return undefined;
}

function parseV1Line(line: string, headerLength: number): ProxyParseResult {
  if (!line.startsWith(V1_PREFIX)) {
    return line.startsWith("PROXY")
      ? refuse("malformed", "PROXY v1 line: expected one space after PROXY")
      : refuse("signature", "not a PROXY protocol header");
  }
  if (line === "PROXY UNKNOWN" || line.startsWith("PROXY UNKNOWN ")) {
    return {
      status: "done",
      header: {
        version: 1,
        command: "PROXY",
        family: "unspec",
        transport: "unspec",
        tlvs: [],
        headerLength,
      },
    };
  }
  const parts = line.split(" ");
  const word = parts[1];
  if (word !== "TCP4" && word !== "TCP6") {
    return refuse(
      "unsupported",
      `PROXY v1 protocol ${JSON.stringify(word)} is not TCP4, TCP6 or UNKNOWN`,
    );
  }
  if (parts.length !== 6) {
    return refuse("malformed", `PROXY v1 ${word} line needs 4 fields separated by single spaces`);
  }
  const width = word === "TCP4" ? 4 : 16;
  const source = ipToBytes(parts[2]);
  const destination = ipToBytes(parts[3]);
  if (source?.length !== width || destination?.length !== width) {
    return refuse(
      "malformed",
      `PROXY v1 ${word} line has an address that is not ${word === "TCP4" ? "IPv4" : "IPv6"}`,
    );
  }
  const sourcePort = v1Port(parts[4]);
  const destinationPort = v1Port(parts[5]);
  if (sourcePort < 0 || destinationPort < 0) {
    return refuse(
      "malformed",
      `PROXY v1 ${word} line has a port that is not 0-65535 without leading zeros`,
    );
  }
  return {
    status: "done",
    header: {
      version: 1,
      command: "PROXY",
      family: width === 4 ? "ipv4" : "ipv6",
      transport: "stream",
      source: { hostname: ipFromBytes(source), port: sourcePort },
      destination: { hostname: ipFromBytes(destination), port: destinationPort },
      tlvs: [],
      headerLength,
    },
  };
}

function v1Port(text: string): number {
  if (!PORT_TEXT.test(text)) return -1;
  const port = Number(text);
  return port <= 65535 ? port : -1;
}

// ---------------------------------------------------------------------------------------------
// Version 2

function parseV2(bytes: Uint8Array, maxHeaderBytes: number): ProxyParseResult {
  const n = bytes.length;
  for (let i = 0; i < Math.min(n, 12); i++) {
    if (bytes[i] !== PROXY_V2_SIGNATURE[i]) {
      return refuse("signature", "not a PROXY protocol header");
    }
  }
  if (n < 13) return needMore(16);
  const version = bytes[12] >> 4;
  const command = bytes[12] & 0x0f;
  if (version !== 2) return refuse("unsupported", `PROXY v2 header announces version ${version}`);
  if (command > 1) {
    return refuse("unsupported", `PROXY v2 command 0x${command.toString(16)} is unassigned`);
  }
  if (n < 14) return needMore(16);
  const familyCode = bytes[13] >> 4;
  const protocolCode = bytes[13] & 0x0f;
  const local = command === 0;
  // LOCAL ignores the family byte (the spec: "discard the protocol block including the family").
  const knownFamily = familyCode <= 3 && protocolCode <= 2;
  if (!local && !knownFamily) {
    return refuse(
      "unsupported",
      `PROXY v2 family/protocol 0x${bytes[13].toString(16)} is unassigned`,
    );
  }
  if (n < 16) return needMore(16);
  const length = (bytes[14] << 8) | bytes[15];
  const total = 16 + length;
  if (total > maxHeaderBytes) {
    return refuse(
      "too-long",
      `PROXY v2 header of ${total} bytes is above the limit of ${maxHeaderBytes}`,
    );
  }
  // The address block the family needs; "unspecified" in either nibble leaves it opaque.
  const addressed = knownFamily && familyCode !== 0 && protocolCode !== 0;
  const addressBytes = addressed ? V2_ADDRESS_BYTES[familyCode] : 0;
  if (!local && length < addressBytes) {
    return refuse(
      "malformed",
      `PROXY v2 length ${length} is short of the ${addressBytes}-byte address block`,
    );
  }
  if (n < total) return needMore(total);

  const header: ProxyHeader = {
    version: 2,
    command: local ? "LOCAL" : "PROXY",
    family: local || !addressed ? "unspec" : FAMILIES[familyCode],
    transport: local || !addressed ? "unspec" : TRANSPORTS[protocolCode],
    tlvs: [],
    headerLength: total,
  };
  if (!local && (familyCode === 1 || familyCode === 2) && addressed) {
    const width = familyCode === 1 ? 4 : 16;
    const view = new DataView(bytes.buffer, bytes.byteOffset, total);
    const ports = 16 + 2 * width;
    header.source = {
      hostname: ipFromBytes(bytes.subarray(16, 16 + width)),
      port: view.getUint16(ports),
    };
    header.destination = {
      hostname: ipFromBytes(bytes.subarray(16 + width, ports)),
      port: view.getUint16(ports + 2),
    };
  }
  // Where the TLVs start: after the address block when its size is known (for LOCAL too, when
  // its family byte is a valid one and fits); when it is not, the rest is skipped unread.
  let offset: number;
  if (familyCode === 0 && protocolCode === 0) offset = 16;
  else if (addressed && length >= addressBytes) offset = 16 + addressBytes;
  else offset = total;
  const tlvs = header.tlvs;
  while (offset < total) {
    if (offset + 3 > total) return refuse("malformed", "PROXY v2 TLV header runs past the end");
    const type = bytes[offset];
    const valueLength = (bytes[offset + 1] << 8) | bytes[offset + 2];
    const start = offset + 3;
    offset = start + valueLength;
    if (offset > total) {
      return refuse("malformed", `PROXY v2 TLV 0x${type.toString(16)} runs past the end`);
    }
    if (type === PROXY_TLV_CRC32C) {
      if (valueLength !== 4) return refuse("malformed", "PROXY v2 CRC32C TLV is not 4 bytes");
      const copy = bytes.slice(0, total);
      copy.fill(0, start, start + 4);
      const expected = new DataView(bytes.buffer, bytes.byteOffset + start, 4).getUint32(0);
      if (crc32c(copy) !== expected) return refuse("checksum", "PROXY v2 CRC32C does not match");
    }
    tlvs.push({ type, value: bytes.slice(start, offset) });
  }
  return { status: "done", header };
}

let crcTable: Uint32Array | undefined;

/**
 * CRC32C (Castagnoli, RFC 4960 appendix B) of some bytes.
 *
 * @example
 * ```ts
 * import { crc32c } from "./proxy_protocol.ts";
 * console.log(crc32c(new TextEncoder().encode("123456789")).toString(16)); // "e3069283"
 * ```
 *
 * @param bytes The bytes.
 * @returns The checksum as an unsigned 32-bit number.
 */
export function crc32c(bytes: Uint8Array): number {
  if (!crcTable) {
    crcTable = new Uint32Array(256);
    for (let i = 0; i < 256; i++) {
      let c = i;
      for (let k = 0; k < 8; k++) c = c & 1 ? (c >>> 1) ^ 0x82f63b78 : c >>> 1;
      crcTable[i] = c >>> 0;
    }
  }
  let crc = 0xffffffff;
  for (let i = 0; i < bytes.length; i++) crc = crcTable[(crc ^ bytes[i]) & 0xff] ^ (crc >>> 8);
  return (crc ^ 0xffffffff) >>> 0;
}

// ---------------------------------------------------------------------------------------------
// Reading from a connection

/** What {@linkcode readProxyHeader} reads from: a `Deno.Conn`, or anything with `read`. */
export interface ProxyHeaderSource {
  /** Reads into `buffer` like `Deno.Conn.read`: a byte count, or `null` at the end. */
  read(buffer: Uint8Array): Promise<number | null>;
  /** The peer's address, checked against `trusted` when it is a network address. */
  readonly remoteAddr?: Deno.Addr;
}

/** Options of {@linkcode readProxyHeader}. */
export interface ReadProxyHeaderOptions extends ParseProxyHeaderOptions {
  /** Time allowed for the whole header, in ms. Default {@linkcode DEFAULT_PROXY_TIMEOUT}. */
  timeout?: number;
  /**
   * Peers allowed to send a header (the balancers); see {@linkcode isTrustedProxyPeer}. Default:
   * loopback peers only.
   */
  trusted?: CidrList;
  /** Aborts the read (e.g. on server shutdown), as a `closed` refusal. */
  signal?: AbortSignal;
}

/** A header read off a connection, and the client's bytes that came with it. */
export interface ProxyHeaderRead {
  /** The header. */
  header: ProxyHeader;
  /**
   * Bytes read past the header (the client's first data, possibly empty): echo them before
   * reading on.
   */
  rest: Uint8Array;
}

/**
 * Whether a peer may send a PROXY header: a network peer must be in `trusted`, or without it be
 * loopback (a balancer on this host); a Unix socket peer is local and always may.
 *
 * @example
 * ```ts
 * import { CidrList } from "./cidr.ts";
 * import { isTrustedProxyPeer } from "./proxy_protocol.ts";
 *
 * const peer: Deno.NetAddr = { transport: "tcp", hostname: "10.0.0.5", port: 40000 };
 * console.log(isTrustedProxyPeer(peer)); // false: not loopback
 * console.log(isTrustedProxyPeer(peer, new CidrList(["10.0.0.0/24"]))); // true
 * ```
 *
 * @param peer The socket's peer address.
 * @param trusted The balancers' addresses; default loopback only.
 * @returns Whether a header from this peer is believed.
 */
export function isTrustedProxyPeer(peer: Deno.Addr, trusted?: CidrList): boolean {
  if (peer.transport !== "tcp" && peer.transport !== "udp") return true;
  return trusted ? trusted.matches(peer.hostname) : isLoopback(peer.hostname);
}

/**
 * Reads a PROXY header off a connection, bounded in bytes (`maxHeaderBytes`, 107 for version 1)
 * and in time (`timeout` for the whole header, so a header sent one byte a second fails), after
 * checking that the peer may send one. Bytes that arrive with the header are returned as `rest`,
 * never lost.
 *
 * On any refusal the connection is left open for the caller to close (cut it with a reset: the
 * peer is not owed an orderly end); after a timeout or an abort a read is still pending on it,
 * and closing it ends that read.
 *
 * @example A header and data in one write
 * ```ts
 * import { readProxyHeader } from "./proxy_protocol.ts";
 * import { encodeProxyHeader } from "./proxy_header.ts";
 *
 * using listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
 * const client = await Deno.connect({ port: (listener.addr as Deno.NetAddr).port });
 * const server = await listener.accept();
 * const header = encodeProxyHeader({
 *   version: 1,
 *   source: { hostname: "192.0.2.7", port: 40000 },
 *   destination: { hostname: "192.0.2.1", port: 7 },
 * });
 * await client.write(new Uint8Array([...header, ...new TextEncoder().encode("hi")]));
 * const { header: read, rest } = await readProxyHeader(server, { timeout: 2000 });
 * console.log(read.source?.hostname, new TextDecoder().decode(rest)); // "192.0.2.7" "hi"
 * client.close();
 * server.close();
 * ```
 *
 * @param conn The connection, from its first byte.
 * @param options Time and size bounds, trusted peers, abort signal.
 * @returns The header and the bytes read past it.
 * @throws {ProxyProtocolError} With the refusal's `reason`.
 * @throws {RangeError} For a bad `timeout` or `maxHeaderBytes`.
 */
export async function readProxyHeader(
  conn: ProxyHeaderSource,
  options: ReadProxyHeaderOptions = {},
): Promise<ProxyHeaderRead> {
  const maxHeaderBytes = maxHeaderBytesOf(options.maxHeaderBytes);
  const timeout = options.timeout ?? DEFAULT_PROXY_TIMEOUT;
  if (!(timeout > 0) || !Number.isFinite(timeout)) {
    throw new RangeError(`timeout must be a positive number of ms, got ${timeout}`);
  }
  const peer = conn.remoteAddr;
  const address = peer && (peer.transport === "tcp" || peer.transport === "udp")
    ? { hostname: peer.hostname, port: peer.port, transport: peer.transport }
    : undefined;
  if (peer && !isTrustedProxyPeer(peer, options.trusted)) {
    throw new ProxyProtocolError(
      `${
        peer.transport === "tcp" || peer.transport === "udp" ? peer.hostname : "peer"
      } may not send a PROXY header`,
      { reason: "untrusted", address },
    );
  }
  const signal = options.signal;
  if (signal?.aborted) {
    throw new ProxyProtocolError("aborted before the PROXY header", { reason: "closed", address });
  }
  const buffer = new Uint8Array(maxHeaderBytes);
  let filled = 0;
  let timer: ReturnType<typeof setTimeout> | undefined;
  let onAbort: (() => void) | undefined;
  const stopped = new Promise<never>((_, reject) => {
    timer = setTimeout(
      () =>
        reject(
          new ProxyProtocolError(`no complete PROXY header within ${timeout}ms (${filled} bytes)`, {
            reason: "timeout",
            address,
          }),
        ),
      timeout,
    );
    onAbort = () =>
      reject(
        new ProxyProtocolError("aborted before the PROXY header", { reason: "closed", address }),
      );
    signal?.addEventListener("abort", onAbort, { once: true });
  });
  stopped.catch(() => {}); // seen through the race below
  try {
    for (;;) {
      const read = conn.read(buffer.subarray(filled));
      read.catch(() => {}); // after a timeout it ends when the caller closes the connection
      let n: number | null;
      try {
        n = await Promise.race([read, stopped]);
      } catch (error) {
        if (error instanceof ProxyProtocolError) throw error;
        throw new ProxyProtocolError(
          `connection failed before a complete PROXY header (${filled} bytes)`,
          { reason: "closed", address, cause: error },
        );
      }
      if (n === null) {
        throw new ProxyProtocolError(
          `connection closed before a complete PROXY header (${filled} bytes)`,
          { reason: "closed", address },
        );
      }
      filled += n;
      const result = parseProxyHeader(buffer.subarray(0, filled), { maxHeaderBytes });
      if (result.status === "done") {
        return { header: result.header, rest: buffer.subarray(result.header.headerLength, filled) };
      }
      if (result.status === "error") {
        const { error } = result;
        throw new ProxyProtocolError(error.message, { reason: error.reason, address });
      }
      // The parser refuses before the buffer can fill: v1 at 107 bytes, v2 by its length field.
    }
  } finally {
    clearTimeout(timer);
    if (onAbort) signal?.removeEventListener("abort", onAbort);
  }
}

/**
 * The client a connection stands for: the header's source when it has one, else (`LOCAL`,
 * `UNKNOWN`, Unix or unspecified families) the socket's own peer. Only call it for a header read
 * from a trusted peer ({@linkcode readProxyHeader} checks).
 *
 * @example
 * ```ts
 * import { parseProxyHeader, proxiedAddress } from "./proxy_protocol.ts";
 *
 * const peer: Deno.NetAddr = { transport: "tcp", hostname: "127.0.0.1", port: 50000 };
 * const result = parseProxyHeader(new TextEncoder().encode("PROXY TCP4 192.0.2.7 192.0.2.1 4000 7\r\n"));
 * if (result.status === "done") console.log(proxiedAddress(peer, result.header));
 * // { transport: "tcp", hostname: "192.0.2.7", port: 4000 }
 * ```
 *
 * @param peer The socket's peer address (the balancer).
 * @param header The header it sent.
 * @returns The address to use for events, allow-lists, limits and counters.
 */
export function proxiedAddress<A extends Deno.Addr>(
  peer: A,
  header: ProxyHeader,
): A | Deno.NetAddr {
  if (!header.source) return peer;
  // The client used the socket's transport (a Unix socket's peer stands for a TCP client).
  const transport = peer.transport === "udp" ? "udp" : "tcp";
  return { transport, hostname: header.source.hostname, port: header.source.port };
}
