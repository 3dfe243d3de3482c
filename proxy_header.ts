/**
 * Writing a PROXY protocol header (v1 text or v2 binary, HAProxy's `doc/proxy-protocol.txt`), as a
 * balancer would: for clients that test a PROXY-aware server (`client.ts --proxy-header`). Reading
 * one is proxy_protocol.ts's.
 *
 * @module
 */
import { ipFromBytes, ipToBytes } from "./cidr.ts";
import {
  crc32c,
  PROXY_TLV_CRC32C,
  PROXY_V2_SIGNATURE,
  type ProxyEndpoint,
  type ProxyTlv,
} from "./proxy_protocol.ts";

/** What {@linkcode encodeProxyHeader} writes. */
export interface ProxyHeaderInit {
  /** 1 (text) or 2 (binary). */
  version: 1 | 2;
  /**
   * `"PROXY"` (the default when `source` is given) relays `source`/`destination`; `"LOCAL"` (the
   * default without them) says "my own connection": version 1 writes `PROXY UNKNOWN` for it.
   */
  command?: "PROXY" | "LOCAL";
  /** The real client: an IPv4 or IPv6 literal and a port. Give both ends or neither. */
  source?: ProxyEndpoint;
  /** The address the client connected to. */
  destination?: ProxyEndpoint;
  /** Version 2 only: the transport announced; default `"stream"`. */
  transport?: "stream" | "dgram";
  /** Version 2 only: TLVs to append. */
  tlvs?: readonly ProxyTlv[];
  /** Version 2 only: append a CRC32C TLV over the whole header. */
  crc32c?: boolean;
}

function endpointBytes(endpoint: ProxyEndpoint, name: string): Uint8Array {
  const bytes = ipToBytes(endpoint?.hostname);
  if (!bytes) {
    throw new TypeError(
      `${name}.hostname must be an IPv4 or IPv6 address, got ${JSON.stringify(endpoint?.hostname)}`,
    );
  }
  if (!Number.isInteger(endpoint.port) || endpoint.port < 0 || endpoint.port > 65535) {
    throw new RangeError(`${name}.port must be a whole number 0-65535, got ${endpoint.port}`);
  }
  return bytes;
}

function mapped(bytes: Uint8Array): Uint8Array {
  if (bytes.length === 16) return bytes;
  const out = new Uint8Array(16);
  out[10] = out[11] = 0xff;
  out.set(bytes, 12);
  return out;
}

/**
 * Encodes a PROXY header, for a client that stands in for a balancer (`client.ts
 * --proxy-header`). When one end is IPv4 and the other IPv6, the IPv4 one is written in its
 * IPv4-mapped IPv6 form, as HAProxy does.
 *
 * @example
 * ```ts
 * import { encodeProxyHeader } from "./proxy_header.ts";
 *
 * const line = encodeProxyHeader({
 *   version: 1,
 *   source: { hostname: "192.0.2.7", port: 40000 },
 *   destination: { hostname: "192.0.2.1", port: 7 },
 * });
 * console.log(JSON.stringify(new TextDecoder().decode(line))); // "PROXY TCP4 192.0.2.7 192.0.2.1 40000 7\r\n"
 * console.log(encodeProxyHeader({ version: 2 }).length); // 16: LOCAL, no addresses
 * ```
 *
 * @param init Version, command, addresses and (version 2) TLVs.
 * @returns The header bytes, to send before any data.
 * @throws {TypeError} For a bad address, one end without the other, or v2-only fields on v1.
 * @throws {RangeError} For a bad port, or version 2 TLVs above 65,535 bytes in all.
 */
export function encodeProxyHeader(init: ProxyHeaderInit): Uint8Array {
  const { version } = init;
  if (version !== 1 && version !== 2) throw new TypeError(`version must be 1 or 2, got ${version}`);
  if ((init.source === undefined) !== (init.destination === undefined)) {
    throw new TypeError("give both source and destination, or neither");
  }
  const command = init.command ?? (init.source ? "PROXY" : "LOCAL");
  if (command !== "PROXY" && command !== "LOCAL") {
    throw new TypeError(`command must be "PROXY" or "LOCAL", got ${JSON.stringify(command)}`);
  }
  if (command === "PROXY" && !init.source) {
    throw new TypeError("a PROXY command needs source and destination");
  }
  let source: Uint8Array | undefined;
  let destination: Uint8Array | undefined;
  if (init.source && init.destination && command === "PROXY") {
    source = endpointBytes(init.source, "source");
    destination = endpointBytes(init.destination, "destination");
    if (source.length !== destination.length) {
      source = mapped(source);
      destination = mapped(destination);
    }
  }
  if (version === 1) {
    if (init.tlvs || init.crc32c || init.transport) {
      throw new TypeError("tlvs, crc32c and transport exist in PROXY version 2 only");
    }
    const line = source && destination
      ? `PROXY ${source.length === 4 ? "TCP4" : "TCP6"} ${ipFromBytes(source)} ${
        ipFromBytes(destination)
      } ${init.source!.port} ${init.destination!.port}\r\n`
      : "PROXY UNKNOWN\r\n";
    return new TextEncoder().encode(line);
  }
  const transport = init.transport ?? "stream";
  if (transport !== "stream" && transport !== "dgram") {
    throw new TypeError(`transport must be "stream" or "dgram", got ${JSON.stringify(transport)}`);
  }
  const tlvs = [...(init.tlvs ?? [])];
  for (const tlv of tlvs) {
    if (!Number.isInteger(tlv.type) || tlv.type < 0 || tlv.type > 255) {
      throw new RangeError(`TLV type must be a byte, got ${tlv.type}`);
    }
    if (!(tlv.value instanceof Uint8Array) || tlv.value.length > 65535) {
      throw new RangeError("a TLV value must be bytes, at most 65,535 of them");
    }
  }
  if (init.crc32c) tlvs.push({ type: PROXY_TLV_CRC32C, value: new Uint8Array(4) });
  const addressBytes = source ? 2 * source.length + 4 : 0;
  const length = addressBytes + tlvs.reduce((sum, tlv) => sum + 3 + tlv.value.length, 0);
  if (length > 65535) {
    throw new RangeError(`PROXY v2 header body of ${length} bytes exceeds 65,535`);
  }
  const out = new Uint8Array(16 + length);
  const view = new DataView(out.buffer);
  out.set(PROXY_V2_SIGNATURE);
  out[12] = command === "LOCAL" ? 0x20 : 0x21;
  out[13] = source ? ((source.length === 4 ? 0x10 : 0x20) | (transport === "stream" ? 1 : 2)) : 0;
  view.setUint16(14, length);
  let offset = 16;
  if (source && destination) {
    out.set(source, offset);
    out.set(destination, offset + source.length);
    offset += 2 * source.length;
    view.setUint16(offset, init.source!.port);
    view.setUint16(offset + 2, init.destination!.port);
    offset += 4;
  }
  let crcAt = -1;
  for (const tlv of tlvs) {
    out[offset] = tlv.type;
    view.setUint16(offset + 1, tlv.value.length);
    out.set(tlv.value, offset + 3);
    if (init.crc32c && tlv.type === PROXY_TLV_CRC32C) crcAt = offset + 3;
    offset += 3 + tlv.value.length;
  }
  if (crcAt >= 0) view.setUint32(crcAt, crc32c(out));
  return out;
}

/**
 * The header a balancer would send ahead of a connection it relays, naming the connection's own
 * ends (its local address as the client, its remote one as the destination); `LOCAL` when they
 * are not IP addresses (a Unix socket). For clients that test PROXY-aware servers.
 *
 * @example
 * ```ts
 * import { proxyHeaderFor } from "./proxy_header.ts";
 * import { parseProxyHeader } from "./proxy_protocol.ts";
 *
 * const header = proxyHeaderFor({
 *   localAddr: { transport: "tcp", hostname: "127.0.0.1", port: 50000 },
 *   remoteAddr: { transport: "tcp", hostname: "127.0.0.1", port: 7000 },
 * }, 1);
 * console.log(new TextDecoder().decode(header)); // "PROXY TCP4 127.0.0.1 127.0.0.1 50000 7000\r\n"
 * ```
 *
 * @param conn The connection (a `Deno.Conn`, or its two addresses).
 * @param version 1 (text) or 2 (binary).
 * @returns The header's bytes.
 * @throws {RangeError} When `version` is not 1 or 2.
 */
export function proxyHeaderFor(
  conn: { readonly localAddr: Deno.Addr; readonly remoteAddr: Deno.Addr },
  version: 1 | 2,
): Uint8Array {
  if (version !== 1 && version !== 2) {
    throw new RangeError(`the PROXY header version must be 1 or 2, got ${version}`);
  }
  const { localAddr: local, remoteAddr: remote } = conn;
  return local.transport === "tcp" && remote.transport === "tcp"
    ? encodeProxyHeader({
      version,
      source: { hostname: local.hostname, port: local.port },
      destination: { hostname: remote.hostname, port: remote.port },
    })
    : encodeProxyHeader({ version, command: "LOCAL" });
}
