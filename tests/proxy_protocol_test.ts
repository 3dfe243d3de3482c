import assert from "node:assert/strict";
import { Buffer } from "node:buffer";
import { CidrList, ipFromBytes, ipToBytes } from "../cidr.ts";
import {
  crc32c,
  isTrustedProxyPeer,
  parseProxyHeader,
  proxiedAddress,
  PROXY_REFUSAL_REASONS,
  PROXY_V1_MAX_LENGTH,
  PROXY_V2_SIGNATURE,
  type ProxyHeader,
  type ProxyHeaderSource,
  type ProxyParseResult,
  ProxyProtocolError,
  type ProxyRefusalReason,
  readProxyHeader,
} from "../proxy_protocol.ts";
import { encodeProxyHeader, proxyHeaderFor, type ProxyHeaderInit } from "../proxy_header.ts";
import { Random, randomSeed } from "../_random.ts";
import {
  type Ending,
  HAS_IPV6,
  randomBytes,
  randomInt,
  readUntilClosed,
  test,
  watchdog,
} from "./_helpers.ts";
import { serveEcho, validateServeOptions } from "../serve.ts";
import { proxiedServer } from "./_proxied_server.ts";
import { echoTcp, echoTcpStream } from "../tcp.ts";
import { runProbe, validateProbeOptions } from "../probe.ts";

const encoder = new TextEncoder();
const decoder = new TextDecoder();
const within = watchdog(10_000);

function text(line: string): Uint8Array {
  return encoder.encode(line);
}

function concat(...parts: Uint8Array[]): Uint8Array {
  return new Uint8Array(Buffer.concat(parts));
}

function done(result: ProxyParseResult): ProxyHeader {
  if (result.status !== "done") {
    assert.fail(
      `expected a header, got ${result.status}${
        result.status === "error" ? `: ${result.error.message}` : ""
      }`,
    );
  }
  return result.header;
}

function refused(result: ProxyParseResult): ProxyProtocolError {
  if (result.status !== "error") assert.fail(`expected a refusal, got ${result.status}`);
  assert.ok(result.error instanceof ProxyProtocolError);
  return result.error;
}

/** A v2 header built byte by byte from the spec's struct, independently of the encoder. */
function v2(verCmd: number, fam: number, body: number[]): Uint8Array {
  return Uint8Array.of(
    ...PROXY_V2_SIGNATURE,
    verCmd,
    fam,
    body.length >> 8,
    body.length & 0xff,
    ...body,
  );
}

// ---------------------------------------------------------------------------------------------
// Version 1

Deno.test("v1: the spec's example, with the HTTP request after it left for the echo", () => {
  const request = "GET / HTTP/1.1\r\nHost: 192.168.0.11\r\n\r\n";
  const bytes = text(`PROXY TCP4 192.168.0.1 192.168.0.11 56324 443\r\n${request}`);
  const header = done(parseProxyHeader(bytes));
  assert.deepEqual(header, {
    version: 1,
    command: "PROXY",
    family: "ipv4",
    transport: "stream",
    source: { hostname: "192.168.0.1", port: 56324 },
    destination: { hostname: "192.168.0.11", port: 443 },
    tlvs: [],
    headerLength: 47,
  });
  assert.equal(decoder.decode(bytes.subarray(header.headerLength)), request);
});

Deno.test("v1: the spec's longest lines are accepted, one byte more is too long", () => {
  const v4 = "PROXY TCP4 255.255.255.255 255.255.255.255 65535 65535\r\n";
  assert.equal(v4.length, 56);
  assert.equal(done(parseProxyHeader(text(v4))).headerLength, 56);
  const full = "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff";
  const v6 = `PROXY TCP6 ${full} ${full} 65535 65535\r\n`;
  assert.equal(v6.length, 104);
  const h6 = done(parseProxyHeader(text(v6)));
  assert.equal(h6.source?.hostname, full);
  assert.equal(h6.family, "ipv6");
  const worst = `PROXY UNKNOWN ${full} ${full} 65535 65535\r\n`;
  assert.equal(worst.length, PROXY_V1_MAX_LENGTH);
  const unknown = done(parseProxyHeader(text(worst)));
  assert.equal(unknown.family, "unspec");
  assert.equal(unknown.source, undefined, "UNKNOWN: the socket's own address is the client");
  assert.equal(unknown.headerLength, 107);
  const tooLong = `PROXY UNKNOWN ${full} ${full} 65535 655350\r\n`;
  assert.equal(refused(parseProxyHeader(text(tooLong))).reason, "too-long");
  // Refused at byte 107 already, not after waiting for more.
  assert.equal(refused(parseProxyHeader(text(tooLong.slice(0, 107)))).reason, "too-long");
  assert.equal(parseProxyHeader(text(tooLong.slice(0, 106))).status, "need-more");
});

Deno.test("v1: UNKNOWN short and long forms mean the socket's own address", () => {
  for (
    const line of [
      "PROXY UNKNOWN\r\n",
      "PROXY UNKNOWN 1.2.3.4 5.6.7.8 1 2\r\n",
      "PROXY UNKNOWN x\r\n",
    ]
  ) {
    const header = done(parseProxyHeader(text(line + "data")));
    assert.equal(header.family, "unspec");
    assert.equal(header.source, undefined);
    assert.equal(header.destination, undefined);
    assert.equal(header.headerLength, line.length);
  }
});

Deno.test("v1: IPv6 text forms are canonicalised; mapped IPv4 is kept as IPv6", () => {
  const header = done(
    parseProxyHeader(text("PROXY TCP6 2001:DB8:0:0:0:0:0:7 ::ffff:192.0.2.1 1 65535\r\n")),
  );
  assert.deepEqual(header.source, { hostname: "2001:db8::7", port: 1 });
  assert.deepEqual(header.destination, { hostname: "::ffff:192.0.2.1", port: 65535 });
});

Deno.test("v1: every deviation from the format is refused with its reason", () => {
  const cases: [string, ProxyRefusalReason][] = [
    ["GET / HTTP/1.1\r\n", "signature"],
    ["PROX\r\n", "signature"],
    ["PROXY\r\n", "malformed"],
    ["PROXY \r\n", "unsupported"],
    ["proxy TCP4 1.2.3.4 5.6.7.8 1 2\r\n", "signature"],
    ["PROXZ TCP4 1.2.3.4 5.6.7.8 1 2\r\n", "signature"],
    ["PROXY\tTCP4 1.2.3.4 5.6.7.8 1 2\r\n", "malformed"],
    ["PROXY  TCP4 1.2.3.4 5.6.7.8 1 2\r\n", "unsupported"],
    ["PROXY TCP5 1.2.3.4 5.6.7.8 1 2\r\n", "unsupported"],
    ["PROXY tcp4 1.2.3.4 5.6.7.8 1 2\r\n", "unsupported"],
    ["PROXY UNKNOWNX\r\n", "unsupported"],
    ["PROXY TCP4 1.2.3.4  5.6.7.8 1 2\r\n", "malformed"],
    ["PROXY TCP4 1.2.3.4 5.6.7.8 1 2 \r\n", "malformed"],
    ["PROXY TCP4 1.2.3.4 5.6.7.8 1\r\n", "malformed"],
    ["PROXY TCP4 1.2.3.4 5.6.7.8 1 2 3\r\n", "malformed"],
    ["PROXY TCP4 01.2.3.4 5.6.7.8 1 2\r\n", "malformed"],
    ["PROXY TCP4 1.2.3.256 5.6.7.8 1 2\r\n", "malformed"],
    ["PROXY TCP4 1.2.3 5.6.7.8 1 2\r\n", "malformed"],
    ["PROXY TCP4 ::1 5.6.7.8 1 2\r\n", "malformed"],
    ["PROXY TCP6 1.2.3.4 ::1 1 2\r\n", "malformed"],
    ["PROXY TCP6 fe80::1%eth0 ::1 1 2\r\n", "malformed"],
    ["PROXY TCP6 ::1::2 ::1 1 2\r\n", "malformed"],
    ["PROXY TCP4 1.2.3.4 5.6.7.8 65536 2\r\n", "malformed"],
    ["PROXY TCP4 1.2.3.4 5.6.7.8 080 2\r\n", "malformed"],
    ["PROXY TCP4 1.2.3.4 5.6.7.8 -1 2\r\n", "malformed"],
    ["PROXY TCP4 1.2.3.4 5.6.7.8 1 2\n", "malformed"],
    ["PROXY TCP4 1.2.3.4 5.6.7.8 1 2\rX", "malformed"],
    ["PROXY TCP4 1.2.3.4\n5.6.7.8 1 2\r\n", "malformed"],
    ["PROXY UNKNOWN \x00\r\n", "malformed"],
    ["PROXY UNKNOWN caf\u00e9\r\n", "malformed"],
  ];
  for (const [line, reason] of cases) {
    const error = refused(parseProxyHeader(text(line)));
    assert.equal(error.reason, reason, `${JSON.stringify(line)}: ${error.message}`);
    assert.ok(!error.message.includes("\n"), "one-line message");
  }
});

Deno.test("v1: a hopeless line is refused before its CRLF arrives", () => {
  assert.equal(refused(parseProxyHeader(text("PROXY TCP4 1.2.3.x"))).reason, "malformed");
  assert.equal(refused(parseProxyHeader(text("PROXY TCP9"))).reason, "unsupported");
  assert.equal(refused(parseProxyHeader(text("PRX"))).reason, "signature");
  assert.equal(refused(parseProxyHeader(text("PROXY TCP4 1 2 3 4 5"))).reason, "malformed");
});

// ---------------------------------------------------------------------------------------------
// Version 2

Deno.test("v2: TCP over IPv4, built from the spec's struct", () => {
  const bytes = v2(0x21, 0x11, [192, 0, 2, 7, 198, 51, 100, 1, 0xdb, 0xc4, 0, 7]);
  const header = done(parseProxyHeader(concat(bytes, text("data"))));
  assert.deepEqual(header, {
    version: 2,
    command: "PROXY",
    family: "ipv4",
    transport: "stream",
    source: { hostname: "192.0.2.7", port: 56260 },
    destination: { hostname: "198.51.100.1", port: 7 },
    tlvs: [],
    headerLength: 28,
  });
});

Deno.test("v2: TCP over IPv6 and UDP over IPv4", () => {
  const src = [0x20, 0x01, 0x0d, 0xb8, ...new Array(11).fill(0), 7];
  const dst = [...new Array(15).fill(0), 1];
  const six = done(parseProxyHeader(v2(0x21, 0x21, [...src, ...dst, 0x9c, 0x40, 0, 7])));
  assert.equal(six.family, "ipv6");
  assert.deepEqual(six.source, { hostname: "2001:db8::7", port: 40000 });
  assert.deepEqual(six.destination, { hostname: "::1", port: 7 });
  const udp = done(parseProxyHeader(v2(0x21, 0x12, [10, 0, 0, 1, 10, 0, 0, 2, 0, 1, 0, 2])));
  assert.equal(udp.transport, "dgram");
});

Deno.test("v2: LOCAL, AF_UNSPEC and AF_UNIX keep the socket's own address", () => {
  const local = done(parseProxyHeader(v2(0x20, 0x00, [])));
  assert.equal(local.command, "LOCAL");
  assert.equal(local.source, undefined);
  assert.equal(local.headerLength, 16);
  // LOCAL with an address block: skipped, not used (the receiver must honour the length).
  const localWithAddresses = done(
    parseProxyHeader(v2(0x20, 0x11, [1, 2, 3, 4, 5, 6, 7, 8, 0, 1, 0, 2])),
  );
  assert.equal(localWithAddresses.source, undefined);
  assert.equal(localWithAddresses.headerLength, 28);
  // LOCAL ignores even an unassigned family byte.
  assert.equal(done(parseProxyHeader(v2(0x20, 0xff, [1, 2, 3]))).headerLength, 19);
  const unspec = done(parseProxyHeader(v2(0x21, 0x00, [])));
  assert.equal(unspec.family, "unspec");
  assert.equal(unspec.source, undefined);
  const unix = done(parseProxyHeader(v2(0x21, 0x31, new Array(216).fill(0x61))));
  assert.equal(unix.family, "unix");
  assert.equal(unix.source, undefined);
  assert.equal(unix.headerLength, 232);
});

Deno.test("v2: unassigned versions, commands, families and protocols are refused", () => {
  const addr = [1, 2, 3, 4, 5, 6, 7, 8, 0, 1, 0, 2];
  const cases: [Uint8Array, ProxyRefusalReason][] = [
    [v2(0x11, 0x11, addr), "unsupported"], // version 1 in a binary header
    [v2(0x31, 0x11, addr), "unsupported"],
    [v2(0x22, 0x11, addr), "unsupported"], // command 2
    [v2(0x2f, 0x11, addr), "unsupported"],
    [v2(0x21, 0x41, addr), "unsupported"], // family 4
    [v2(0x21, 0x13, addr), "unsupported"], // protocol 3
    [v2(0x21, 0x11, addr.slice(0, 11)), "malformed"], // address block short
    [v2(0x21, 0x21, addr), "malformed"], // IPv6 needs 36 bytes
    [v2(0x21, 0x31, addr), "malformed"], // Unix needs 216
  ];
  for (const [bytes, reason] of cases) {
    assert.equal(
      refused(parseProxyHeader(bytes)).reason,
      reason,
      `fam/cmd ${bytes[12]} ${bytes[13]}`,
    );
  }
  const badSignature = v2(0x21, 0x11, addr);
  badSignature[4] = 0x01;
  assert.equal(refused(parseProxyHeader(badSignature)).reason, "signature");
  // Refused as soon as the offending byte arrives.
  assert.equal(
    refused(parseProxyHeader(v2(0x22, 0x11, addr).subarray(0, 13))).reason,
    "unsupported",
  );
});

Deno.test("v2: a huge length is refused at byte 16, before its body is awaited", () => {
  const huge = Uint8Array.of(...PROXY_V2_SIGNATURE, 0x21, 0x11, 0xff, 0xff);
  const error = refused(parseProxyHeader(huge));
  assert.equal(error.reason, "too-long");
  assert.match(error.message, /65551 bytes is above the limit of 4096/);
  // With a larger bound the same header is merely incomplete.
  const more = parseProxyHeader(huge, { maxHeaderBytes: 16 + 65535 });
  assert.deepEqual(more, { status: "need-more", atLeast: 65551 });
  // A 5,000-byte header (TLVs) passes a raised bound, and not the default.
  const big = encodeProxyHeader({
    version: 2,
    source: { hostname: "10.0.0.1", port: 1 },
    destination: { hostname: "10.0.0.2", port: 2 },
    tlvs: [{ type: 0x04, value: new Uint8Array(5000 - 28 - 3) }],
  });
  assert.equal(big.length, 5000);
  assert.equal(refused(parseProxyHeader(big)).reason, "too-long");
  assert.equal(done(parseProxyHeader(big, { maxHeaderBytes: 8192 })).headerLength, 5000);
  assert.throws(() => parseProxyHeader(big, { maxHeaderBytes: 100 }), RangeError);
  assert.throws(() => parseProxyHeader(big, { maxHeaderBytes: 70000 }), RangeError);
});

Deno.test("v2: TLVs are returned, walked to the end, and CRC32C is verified", () => {
  assert.equal(crc32c(text("123456789")), 0xe3069283); // RFC 3720 B.4 check value
  const tlvs = [
    { type: 0x01, value: text("h2") },
    { type: 0x05, value: text("unique-id-42") },
    { type: 0x04, value: new Uint8Array(0) },
  ];
  const bytes = encodeProxyHeader({
    version: 2,
    source: { hostname: "192.0.2.7", port: 40000 },
    destination: { hostname: "192.0.2.1", port: 7 },
    tlvs,
    crc32c: true,
  });
  const header = done(parseProxyHeader(bytes));
  assert.deepEqual(header.tlvs.slice(0, 3), tlvs);
  assert.equal(header.tlvs[3].type, 0x03);
  assert.equal(header.headerLength, bytes.length);
  // Any flipped bit in the header breaks the checksum (or the format).
  for (const at of [17, 20, 30, bytes.length - 1]) {
    const broken = bytes.slice();
    broken[at] ^= 0x01;
    assert.notEqual(parseProxyHeader(broken).status, "done", `bit flipped at ${at}`);
  }
  const flipped = bytes.slice();
  flipped[17] ^= 0x01;
  assert.equal(refused(parseProxyHeader(flipped)).reason, "checksum");
  // TLVs on LOCAL (what HAProxy's health checks send) are walked too.
  const local = done(parseProxyHeader(encodeProxyHeader({ version: 2, crc32c: true, tlvs })));
  assert.equal(local.command, "LOCAL");
  assert.equal(local.tlvs.length, 4);
  // A TLV running past the header, or a header cut inside a TLV's own header.
  const addr = [1, 2, 3, 4, 5, 6, 7, 8, 0, 1, 0, 2];
  assert.equal(
    refused(parseProxyHeader(v2(0x21, 0x11, [...addr, 0x01, 0, 5, 1, 2]))).reason,
    "malformed",
  );
  assert.equal(refused(parseProxyHeader(v2(0x21, 0x11, [...addr, 0x01, 0]))).reason, "malformed");
  assert.equal(
    refused(parseProxyHeader(v2(0x21, 0x11, [...addr, 0x03, 0, 2, 1, 2]))).reason,
    "malformed",
  );
});

Deno.test("proxiedAddress: the header's source, or the socket's peer when it has none", () => {
  const peer: Deno.NetAddr = { transport: "tcp", hostname: "127.0.0.1", port: 50000 };
  const proxied = done(parseProxyHeader(encodeProxyHeader({
    version: 2,
    source: { hostname: "2001:db8::9", port: 4000 },
    destination: { hostname: "2001:db8::1", port: 7 },
  })));
  assert.deepEqual(proxiedAddress(peer, proxied), {
    transport: "tcp",
    hostname: "2001:db8::9",
    port: 4000,
  });
  const local = done(parseProxyHeader(encodeProxyHeader({ version: 2 })));
  assert.equal(proxiedAddress(peer, local), peer);
  const unknown = done(parseProxyHeader(text("PROXY UNKNOWN\r\n")));
  assert.equal(proxiedAddress(peer, unknown), peer);
  const unix: Deno.UnixAddr = { transport: "unix", path: "/tmp/echo.sock" };
  assert.equal(proxiedAddress(unix, proxied).transport, "tcp");
});

// ---------------------------------------------------------------------------------------------
// Round trips and truncation

const ROUND_TRIPS: ProxyHeaderInit[] = [
  {
    version: 1,
    source: { hostname: "192.0.2.7", port: 40000 },
    destination: { hostname: "192.0.2.1", port: 7 },
  },
  {
    version: 1,
    source: { hostname: "2001:db8::7", port: 0 },
    destination: { hostname: "::1", port: 65535 },
  },
  {
    version: 1,
    source: { hostname: "192.0.2.7", port: 1 },
    destination: { hostname: "::1", port: 2 },
  },
  { version: 1 },
  {
    version: 1,
    command: "LOCAL",
    source: { hostname: "1.2.3.4", port: 1 },
    destination: { hostname: "1.2.3.5", port: 2 },
  },
  {
    version: 2,
    source: { hostname: "192.0.2.7", port: 40000 },
    destination: { hostname: "192.0.2.1", port: 7 },
  },
  {
    version: 2,
    source: { hostname: "2001:db8::7", port: 1 },
    destination: { hostname: "2001:db8::1", port: 2 },
  },
  {
    version: 2,
    source: { hostname: "10.1.2.3", port: 53 },
    destination: { hostname: "10.1.2.4", port: 53 },
    transport: "dgram",
  },
  { version: 2 },
  { version: 2, tlvs: [{ type: 0xe0, value: text("custom") }], crc32c: true },
  {
    version: 2,
    source: { hostname: "::ffff:192.0.2.7", port: 9 },
    destination: { hostname: "2001:db8::1", port: 7 },
    tlvs: [{ type: 0x02, value: text("example.com") }, { type: 0x20, value: new Uint8Array(40) }],
    crc32c: true,
  },
];

function expectedSource(init: ProxyHeaderInit): string | undefined {
  if (!init.source || init.command === "LOCAL") return undefined;
  const mixed =
    ipToBytes(init.source.hostname)!.length !== ipToBytes(init.destination!.hostname)!.length;
  const bytes = ipToBytes(init.source.hostname)!;
  if (!mixed) return ipFromBytes(bytes);
  return bytes.length === 4 ? `::ffff:${init.source.hostname}` : ipFromBytes(bytes);
}

Deno.test("encoder and parser agree for v1/v2, IPv4/IPv6/mixed, LOCAL/UNKNOWN, TLVs", () => {
  for (const init of ROUND_TRIPS) {
    const bytes = encodeProxyHeader(init);
    const header = done(parseProxyHeader(concat(bytes, text("after"))));
    assert.equal(header.version, init.version);
    assert.equal(header.headerLength, bytes.length);
    assert.equal(header.source?.hostname, expectedSource(init), JSON.stringify(init));
    assert.equal(header.source?.port, expectedSource(init) ? init.source!.port : undefined);
    assert.equal(
      header.destination?.port,
      expectedSource(init) ? init.destination!.port : undefined,
    );
    if (init.version === 2) {
      assert.equal(header.command, init.source && init.command !== "LOCAL" ? "PROXY" : "LOCAL");
      assert.deepEqual(header.tlvs.slice(0, init.tlvs?.length ?? 0), init.tlvs ?? []);
      if (init.transport === "dgram") assert.equal(header.transport, "dgram");
    }
  }
});

Deno.test("every truncation of a valid header asks for more, never parses wrong", () => {
  for (const init of ROUND_TRIPS) {
    const bytes = encodeProxyHeader(init);
    const whole = done(parseProxyHeader(bytes));
    for (let cut = 0; cut < bytes.length; cut++) {
      const result = parseProxyHeader(bytes.subarray(0, cut));
      assert.equal(result.status, "need-more", `${JSON.stringify(init)} cut at ${cut}`);
      if (result.status === "need-more") assert.ok(result.atLeast > cut);
    }
    assert.deepEqual(done(parseProxyHeader(concat(bytes, randomBytes(50, new Random(1))))), whole);
  }
});

Deno.test("encoder refuses what it cannot write", () => {
  const a = { hostname: "1.2.3.4", port: 1 };
  assert.throws(() => encodeProxyHeader({ version: 3 as 1 }), TypeError);
  assert.throws(() => encodeProxyHeader({ version: 1, source: a }), TypeError);
  assert.throws(() => encodeProxyHeader({ version: 2, command: "PROXY" }), TypeError);
  assert.throws(
    () =>
      encodeProxyHeader({
        version: 1,
        source: { hostname: "example.com", port: 1 },
        destination: a,
      }),
    /source.hostname must be an IPv4 or IPv6 address/,
  );
  assert.throws(
    () =>
      encodeProxyHeader({
        version: 2,
        source: a,
        destination: { hostname: "1.2.3.5", port: 65536 },
      }),
    RangeError,
  );
  assert.throws(() => encodeProxyHeader({ version: 1, crc32c: true }), TypeError);
  assert.throws(
    () => encodeProxyHeader({ version: 2, tlvs: [{ type: 4, value: new Uint8Array(65535) }] }),
    RangeError,
  );
});

// ---------------------------------------------------------------------------------------------
// Fuzzing

function checkResult(bytes: Uint8Array, result: ProxyParseResult, label: string): void {
  if (result.status === "error") {
    assert.ok(result.error instanceof ProxyProtocolError, label);
    assert.ok(PROXY_REFUSAL_REASONS.includes(result.error.reason), label);
    assert.ok(!result.error.message.includes("\n"), label);
  } else if (result.status === "done") {
    const { header } = result;
    assert.ok(header.headerLength > 0 && header.headerLength <= bytes.length, label);
    assert.ok(header.headerLength <= 4096, label);
    if (header.version === 1) assert.ok(header.headerLength <= PROXY_V1_MAX_LENGTH, label);
    assert.equal(header.source === undefined, header.destination === undefined, label);
    // The header is decided by its own bytes alone: the exact prefix parses the same, and no
    // shorter prefix is ever a header.
    assert.deepEqual(parseProxyHeader(bytes.subarray(0, header.headerLength)), result, label);
    for (const cut of [0, 1, header.headerLength >> 1, header.headerLength - 1]) {
      assert.notEqual(
        parseProxyHeader(bytes.subarray(0, cut)).status,
        "done",
        `${label} cut ${cut}`,
      );
    }
  } else {
    assert.equal(result.status, "need-more", label);
    assert.ok(result.atLeast > bytes.length, label);
  }
}

Deno.test("fuzz: random and mutated headers always give a clear result", () => {
  const seed = randomSeed();
  const random = new Random(seed);
  const corpus = [
    ...ROUND_TRIPS.map((init) => encodeProxyHeader(init)),
    text("PROXY TCP4 255.255.255.255 255.255.255.255 65535 65535\r\n"),
    text("PROXY UNKNOWN ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff ::1 1 2\r\n"),
  ];
  const counts = { done: 0, "need-more": 0, error: 0 };
  const started = performance.now();
  for (let i = 0; i < 6000; i++) {
    let bytes: Uint8Array;
    const kind = i % 4;
    if (kind === 0) {
      bytes = randomBytes(randomInt(random, 0, 300), random);
      if (random.next() < 0.5) {
        bytes.set(PROXY_V2_SIGNATURE.subarray(0, Math.min(12, bytes.length)));
      } else if (bytes.length >= 6) bytes.set(text("PROXY "));
    } else {
      const base = corpus[randomInt(random, 0, corpus.length - 1)];
      bytes = base.slice();
      const edits = randomInt(random, 1, 4);
      for (let e = 0; e < edits; e++) {
        const at = randomInt(random, 0, Math.max(0, bytes.length - 1));
        const what = randomInt(random, 0, 3);
        if (what === 0) bytes[at] = random.nextUint32() & 0xff;
        else if (what === 1) bytes[at] ^= 1 << randomInt(random, 0, 7);
        else if (what === 2) bytes = bytes.subarray(0, at);
        else {bytes = concat(
            bytes.subarray(0, at),
            randomBytes(randomInt(random, 1, 8), random),
            bytes.subarray(at),
          );}
      }
      if (kind === 3) bytes = concat(bytes, randomBytes(randomInt(random, 0, 64), random));
    }
    const label = `seed ${seed}, case ${i}, bytes ${
      Array.from(bytes, (b) => b.toString(16)).join(" ")
    }`;
    let result: ProxyParseResult;
    try {
      result = parseProxyHeader(bytes);
    } catch (error) {
      assert.fail(`${label}: threw ${error}`);
    }
    checkResult(bytes, result, label);
    counts[result.status]++;
  }
  // Every outcome occurs, so the fuzzer reaches past the signature checks.
  assert.ok(
    counts.done > 100 && counts["need-more"] > 100 && counts.error > 100,
    JSON.stringify(counts),
  );
  assert.ok(performance.now() - started < 60_000, "parsing is bounded");
});

Deno.test("fuzz: any chunking of header + data reads the same header and keeps every byte", async () => {
  const seed = randomSeed();
  const random = new Random(seed);
  for (let i = 0; i < 400; i++) {
    const header = encodeProxyHeader(ROUND_TRIPS[i % ROUND_TRIPS.length]);
    const data = randomBytes(randomInt(random, 0, 5000), random);
    const stream = concat(header, data);
    let offset = 0;
    // A peer that hands out the stream in random pieces (at most what the reader asks for).
    const source: ProxyHeaderSource = {
      read(buffer) {
        if (offset === stream.length) return Promise.resolve(null);
        const n = Math.min(buffer.length, stream.length - offset, randomInt(random, 1, 64));
        buffer.set(stream.subarray(offset, offset + n));
        offset += n;
        return Promise.resolve(n);
      },
    };
    const read = await readProxyHeader(source, { timeout: 10_000 });
    const label = `seed ${seed}, case ${i}`;
    assert.deepEqual(read.header, done(parseProxyHeader(header)), label);
    assert.deepEqual(concat(read.rest, stream.subarray(offset)), data, label);
  }
});

// ---------------------------------------------------------------------------------------------
// Reading off a real loopback connection

async function pair(): Promise<
  { client: Deno.TcpConn; server: Deno.TcpConn; [Symbol.dispose](): void }
> {
  using listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const [client, server] = await Promise.all([
    Deno.connect({ hostname: "127.0.0.1", port: (listener.addr as Deno.NetAddr).port }),
    listener.accept(),
  ]);
  return {
    client,
    server: server as Deno.TcpConn,
    [Symbol.dispose]() {
      for (const conn of [client, server]) {
        try {
          conn.close();
        } catch {
          // closed by the test
        }
      }
    },
  };
}

async function refusal(promise: Promise<unknown>): Promise<ProxyProtocolError> {
  try {
    await promise;
  } catch (error) {
    assert.ok(error instanceof ProxyProtocolError, String(error));
    return error;
  }
  assert.fail("expected a refusal");
}

test("readProxyHeader: header and data in one write, the data kept for the echo", async () => {
  using conns = await pair();
  const header = encodeProxyHeader({
    version: 2,
    source: { hostname: "203.0.113.9", port: 50000 },
    destination: { hostname: "127.0.0.1", port: 7 },
    crc32c: true,
  });
  const data = randomBytes(3000, new Random(7));
  await conns.client.write(concat(header, data));
  const read = await within(readProxyHeader(conns.server), "header");
  assert.equal(read.header.source?.hostname, "203.0.113.9");
  // What came with the header plus what is still in the socket is exactly the data.
  const received = [read.rest];
  let total = read.rest.length;
  const buffer = new Uint8Array(4096);
  while (total < data.length) {
    const n = await conns.server.read(buffer);
    assert.ok(n !== null);
    received.push(buffer.slice(0, n));
    total += n;
  }
  assert.deepEqual(concat(...received), data);
});

test("readProxyHeader: a header sent one byte at a time still arrives whole", async () => {
  using conns = await pair();
  const header = text("PROXY TCP6 2001:db8::1 2001:db8::2 40000 7\r\n");
  const reading = readProxyHeader(conns.server, { timeout: 20_000 });
  for (const byte of header) {
    await conns.client.write(Uint8Array.of(byte));
    await new Promise((resolve) => setTimeout(resolve, 2)); // the pacing under test, not a sync
  }
  await conns.client.write(text("echo me"));
  const read = await within(reading, "slow header", 30_000);
  assert.equal(read.header.source?.hostname, "2001:db8::1");
  assert.equal(read.header.headerLength, header.length);
  const rest = decoder.decode(read.rest);
  assert.ok("echo me".startsWith(rest), `rest ${JSON.stringify(rest)}`);
});

test("readProxyHeader: too slow a header times out, and the connection can be cut", async () => {
  using conns = await pair();
  await conns.client.write(text("PROXY TCP4 1.2.3."));
  const started = performance.now();
  const error = await refusal(readProxyHeader(conns.server, { timeout: 300 }));
  assert.equal(error.reason, "timeout");
  assert.ok(performance.now() - started >= 290, "waited the whole timeout");
  assert.equal(error.address?.hostname, "127.0.0.1");
  conns.server.close(); // ends the read left pending
});

test("readProxyHeader: the timeout bounds the whole header, not the gap between bytes", async () => {
  using conns = await pair();
  const header = text("PROXY TCP4 192.0.2.1 192.0.2.2 1 2\r\n");
  const reading = readProxyHeader(conns.server, { timeout: 600 });
  const started = performance.now();
  let sent = 0;
  // A slowloris: a byte every 100 ms keeps the connection busy but never finishes in time.
  let refusedAt: number | undefined;
  const mark = () => refusedAt = performance.now();
  reading.then(mark, mark);
  while (refusedAt === undefined && sent < header.length) {
    await conns.client.write(header.subarray(sent, sent + 1));
    sent++;
    await new Promise((resolve) => setTimeout(resolve, 100)); // the pacing under test
  }
  const error = await refusal(reading);
  assert.equal(error.reason, "timeout");
  assert.ok(sent < header.length, `refused before the header was complete (${sent} bytes sent)`);
  assert.ok(performance.now() - started >= 590);
  conns.server.close();
});

test("readProxyHeader: an abort ends the wait as `closed`", async () => {
  using conns = await pair();
  const controller = new AbortController();
  const reading = readProxyHeader(conns.server, { timeout: 60_000, signal: controller.signal });
  controller.abort();
  assert.equal((await refusal(reading)).reason, "closed");
  conns.server.close();
});

test("readProxyHeader: malformed, huge, and closed-early headers are refused at once", async () => {
  {
    using conns = await pair();
    await conns.client.write(text("GET / HTTP/1.1\r\n\r\n"));
    assert.equal(
      (await refusal(readProxyHeader(conns.server, { timeout: 60_000 }))).reason,
      "signature",
    );
  }
  {
    using conns = await pair();
    await conns.client.write(Uint8Array.of(...PROXY_V2_SIGNATURE, 0x21, 0x11, 0xff, 0xff));
    const started = performance.now();
    const error = await refusal(readProxyHeader(conns.server, { timeout: 60_000 }));
    assert.equal(error.reason, "too-long");
    assert.ok(performance.now() - started < 30_000, "not by the timeout");
  }
  {
    using conns = await pair();
    await conns.client.write(text("PROXY TCP4 1.2.3.4 "));
    conns.client.close();
    assert.equal(
      (await refusal(readProxyHeader(conns.server, { timeout: 60_000 }))).reason,
      "closed",
    );
  }
});

test("readProxyHeader: only trusted peers may send a header", async () => {
  {
    using conns = await pair();
    const error = await refusal(
      readProxyHeader(conns.server, { trusted: new CidrList(["10.0.0.0/8"]), timeout: 60_000 }),
    );
    assert.equal(error.reason, "untrusted");
    assert.match(error.message, /127\.0\.0\.1 may not send a PROXY header/);
  }
  {
    using conns = await pair();
    await conns.client.write(encodeProxyHeader({ version: 2 }));
    const read = await readProxyHeader(conns.server, { trusted: new CidrList(["127.0.0.0/8"]) });
    assert.equal(read.header.command, "LOCAL");
  }
  // An off-host peer is refused by default without a byte being read.
  let reads = 0;
  const source: ProxyHeaderSource = {
    remoteAddr: { transport: "tcp", hostname: "192.0.2.50", port: 1234 },
    read: () => {
      reads++;
      return Promise.resolve(null);
    },
  };
  assert.equal((await refusal(readProxyHeader(source))).reason, "untrusted");
  assert.equal(reads, 0);
  assert.equal(isTrustedProxyPeer({ transport: "tcp", hostname: "::1", port: 1 }), true);
  assert.equal(
    isTrustedProxyPeer({ transport: "tcp", hostname: "::ffff:127.0.0.1", port: 1 }),
    true,
  );
  assert.equal(isTrustedProxyPeer({ transport: "unix", path: "/tmp/x" }), true);
  await assert.rejects(readProxyHeader(source, { timeout: 0 }), RangeError);
});

test("readProxyHeader: IPv6 loopback peers are trusted by default", async () => {
  using listener = Deno.listen({ hostname: "::1", port: 0 });
  const client = await Deno.connect({
    hostname: "::1",
    port: (listener.addr as Deno.NetAddr).port,
  });
  const server = await listener.accept();
  try {
    await client.write(text("PROXY UNKNOWN\r\nx"));
    const read = await readProxyHeader(server);
    assert.equal(read.header.family, "unspec");
    assert.equal(decoder.decode(read.rest), "x");
  } finally {
    client.close();
    server.close();
  }
}, { ignore: !HAS_IPV6 });

if (!HAS_IPV6) console.log("proxy_protocol_test: no IPv6 loopback here, the ::1 test is skipped");

// ---------------------------------------------------------------------------------------------
// serveEcho({ proxyProtocol }): the header read at the start of every stream session

const V2_CLIENT = encodeProxyHeader({
  version: 2,
  source: { hostname: "203.0.113.7", port: 40001 },
  destination: { hostname: "198.51.100.1", port: 7 },
});

/** Writes `bytes`, then reads until the server ends the connection. */
async function sendAndRead(port: number, bytes: Uint8Array, halfClose = true): Promise<Ending> {
  const conn = await Deno.connect({ hostname: "127.0.0.1", port });
  try {
    if (bytes.length) await conn.write(bytes);
    if (halfClose) await conn.closeWrite();
    return await readUntilClosed(conn);
  } finally {
    conn.close();
  }
}

test("serveEcho proxyProtocol: the header's client is remoteAddr, its data echoed, header never", async () => {
  const { server, connections, closes, port } = await proxiedServer();
  try {
    const data = new TextEncoder().encode("data in the header's segment");
    // Header and data in one write: the bytes after the header are the client's first data.
    const { end, received } = await sendAndRead(port, new Uint8Array([...V2_CLIENT, ...data]));
    assert.equal(end, "eof");
    assert.equal(Buffer.compare(received, data), 0, "exactly the data, no header byte");
    assert.deepEqual(connections[0].remoteAddr, {
      transport: "tcp",
      hostname: "203.0.113.7",
      port: 40001,
    });
    await server.shutdown();
    assert.equal(closes[0].remoteAddr.hostname, "203.0.113.7");
    assert.equal(closes[0].bytes, data.length);
    assert.equal(server.stats.bytesIn, data.length);
    assert.equal(server.stats.transports?.tcp.bytesOut, data.length);
    assert.equal(server.stats.sessionDuration?.count, 1);
  } finally {
    await server.shutdown();
  }
});

test("serveEcho proxyProtocol: LOCAL (a health check) and v1 UNKNOWN keep the socket's peer", async () => {
  const { server, connections, port } = await proxiedServer();
  try {
    for (const header of [encodeProxyHeader({ version: 2 }), encodeProxyHeader({ version: 1 })]) {
      const { received } = await sendAndRead(port, new Uint8Array([...header, 1, 2, 3]));
      assert.deepEqual([...received], [1, 2, 3]);
    }
    assert.deepEqual(connections.map((c) => c.remoteAddr.hostname), ["127.0.0.1", "127.0.0.1"]);
  } finally {
    await server.shutdown();
  }
});

test("serveEcho proxyProtocol: bad headers are refused with their own reason, others still served", async () => {
  const { server, rejects, port } = await proxiedServer({ proxyTimeout: 300 });
  try {
    const garbage = new TextEncoder().encode("GET / HTTP/1.1\r\nHost: x\r\n\r\n");
    const malformed = new TextEncoder().encode("PROXY TCP4 1.2.3.999 1.2.3.4 1 2\r\nhello");
    const huge = V2_CLIENT.slice(0, 16);
    new DataView(huge.buffer).setUint16(14, 65535); // a 64 KiB address block announced
    const cases: [string, Uint8Array][] = [
      ["signature", garbage],
      ["malformed", malformed],
      ["too-long", huge],
    ];
    for (const [reason, bytes] of cases) {
      const { received } = await sendAndRead(port, bytes, false);
      assert.equal(received.length, 0, `${reason}: nothing echoed`);
    }
    // Slow: one byte, then nothing more for longer than proxyTimeout.
    const slow = await Deno.connect({ hostname: "127.0.0.1", port });
    await slow.write(V2_CLIENT.subarray(0, 1));
    const ending = await readUntilClosed(slow);
    slow.close();
    assert.equal(ending.received.length, 0);
    // Between the refusals, a good client is served.
    const good = await sendAndRead(port, new Uint8Array([...V2_CLIENT, 42]));
    assert.deepEqual([...good.received], [42]);
    assert.deepEqual(rejects.map((r) => r.detail), [
      "signature",
      "malformed",
      "too-long",
      "timeout",
    ]);
    assert.ok(rejects.every((r) => r.reason === "proxy"));
    const refused = server.stats.proxyRefused!;
    assert.deepEqual(
      [refused.signature, refused.malformed, refused["too-long"], refused.timeout],
      [1, 1, 1, 1],
    );
    assert.equal(server.stats.sessionsTotal, 1, "refused connections are not sessions");
  } finally {
    await server.shutdown();
  }
});

test("serveEcho proxyProtocol: a peer outside proxyFrom is refused as untrusted", async () => {
  const { server, rejects, port } = await proxiedServer({ proxyFrom: ["10.0.0.0/8"] });
  try {
    const { received } = await sendAndRead(port, new Uint8Array([...V2_CLIENT, 1]));
    assert.equal(received.length, 0);
    assert.equal(rejects[0].detail, "untrusted");
    assert.equal(rejects[0].remoteAddr.hostname, "127.0.0.1", "the peer that sent it");
    assert.equal(server.stats.proxyRefused?.untrusted, 1);
  } finally {
    await server.shutdown();
  }
});

test("serveEcho proxyProtocol: allow applies to the header's client, not the balancer", async () => {
  const { server, rejects, connections, port } = await proxiedServer({ allow: ["203.0.113.0/24"] });
  try {
    const ok = await sendAndRead(port, new Uint8Array([...V2_CLIENT, 7]));
    assert.deepEqual(
      [...ok.received],
      [7],
      "the balancer (127.0.0.1) is not in allow; its client is",
    );
    const other = encodeProxyHeader({
      version: 1,
      source: { hostname: "192.0.2.9", port: 1234 },
      destination: { hostname: "192.0.2.1", port: 7 },
    });
    const refused = await sendAndRead(port, new Uint8Array([...other, 7]));
    assert.equal(refused.received.length, 0);
    assert.equal(rejects[0].reason, "acl");
    assert.equal(rejects[0].remoteAddr.hostname, "192.0.2.9");
    assert.equal(connections.length, 1);
    assert.equal(server.stats.dropped.acl, 1);
  } finally {
    await server.shutdown();
  }
});

test("serveEcho proxyProtocol: shutdown closes connections still waiting for a header", async () => {
  const { server, port } = await proxiedServer({ proxyTimeout: 60_000 });
  const conn = await Deno.connect({ hostname: "127.0.0.1", port });
  await conn.write(V2_CLIENT.subarray(0, 5));
  // The server holds the connection (it counts towards the cap) until shutdown ends it.
  const ending = readUntilClosed(conn);
  await server.shutdown();
  assert.equal((await ending).received.length, 0);
  conn.close();
  assert.equal(server.stats.proxyRefused?.closed, 1);
});

test("serveEcho proxyProtocol: echoTcp and echoTcpStream can send the header (v1 and v2)", async () => {
  const { server, connections, port } = await proxiedServer();
  try {
    const { reply } = await echoTcp("through a header", { port, proxyHeader: 1 });
    assert.equal(new TextDecoder().decode(reply), "through a header");
    const input = ReadableStream.from([new Uint8Array(100_000).fill(9)]);
    const { bytes } = await echoTcpStream(input, { port, proxyHeader: 2 });
    assert.equal(bytes, 100_000);
    assert.equal(connections.length, 2);
  } finally {
    await server.shutdown();
  }
});

test("serveEcho proxyProtocol: option errors name the option; TLS is refused", () => {
  const option = (f: () => unknown) => {
    try {
      f();
    } catch (error) {
      return (error as { option?: string }).option;
    }
    return "no error";
  };
  assert.equal(option(() => validateServeOptions({ proxyFrom: ["10.0.0.0/8"] })), "proxyFrom");
  assert.equal(option(() => validateServeOptions({ proxyTimeout: 10 })), "proxyTimeout");
  assert.equal(
    option(() => validateServeOptions({ proxyProtocol: true, proxyFrom: ["nope"] })),
    "proxyFrom",
  );
  assert.equal(
    option(() => validateServeOptions({ proxyProtocol: true, proxyTimeout: 0 })),
    "proxyTimeout",
  );
  // PROXY over TLS is served (the header in clear text before the handshake: proxy_tls_test.ts).
  assert.equal(
    option(() => validateServeOptions({ proxyProtocol: true, tls: { cert: "c", key: "k" } })),
    "no error",
  );
});

test("serveEcho proxyProtocol with workers: every thread reads headers, totals count refusals", async () => {
  const clients = new Set<string>();
  const server = await serveEcho({
    port: 0,
    transport: "tcp",
    workers: 3,
    proxyProtocol: true,
    onConnection: (info) => clients.add(`${info.remoteAddr.hostname}:${info.remoteAddr.port}`),
  });
  try {
    const port = server.addr.port;
    for (let i = 0; i < 24; i++) {
      const header = encodeProxyHeader({
        version: i % 2 ? 1 : 2,
        source: { hostname: "198.51.100.9", port: 1000 + i },
        destination: { hostname: "198.51.100.1", port: 7 },
      });
      const { received } = await sendAndRead(port, new Uint8Array([...header, i]));
      assert.deepEqual([...received], [i]);
    }
    for (let i = 0; i < 6; i++) await sendAndRead(port, encoder.encode("no header\r\n"), false);
  } finally {
    await server.shutdown();
  }
  assert.equal(clients.size, 24, "each session shows the header's client, on every thread");
  assert.ok([...clients].every((c) => c.startsWith("198.51.100.9:")));
  assert.equal(server.stats.sessionsTotal, 24);
  assert.equal(server.stats.transports?.tcp.sessionsTotal, 24);
  assert.equal(server.stats.proxyRefused?.signature, 6);
  assert.equal(server.stats.sessionDuration?.count, 24);
});

test("serveEcho proxyProtocol: a header dripped a byte at a time is cut at the whole-header deadline", async () => {
  const { server, rejects, port } = await proxiedServer({ proxyTimeout: 800 });
  const conn = await Deno.connect({ hostname: "127.0.0.1", port });
  const started = performance.now();
  let sent = 0;
  // One byte every 100 ms: each gap is far below the deadline, the whole header is not.
  const drip = setInterval(() => {
    if (sent < V2_CLIENT.length) conn.write(V2_CLIENT.subarray(sent, ++sent)).catch(() => {});
  }, 100);
  try {
    const ending = await readUntilClosed(conn);
    assert.equal(ending.received.length, 0);
    assert.ok(performance.now() - started >= 800, "not before the deadline");
    assert.ok(sent < V2_CLIENT.length, "cut before the header was complete");
    assert.equal(rejects[0]?.detail, "timeout");
  } finally {
    clearInterval(drip);
    conn.close();
    await server.shutdown();
  }
});

test("serveEcho proxyProtocol on a Unix socket: the header's client is the session's address", async () => {
  const path = `${await Deno.makeTempDir()}/proxied.sock`;
  const seen: Deno.Addr[] = [];
  const server = await serveEcho({
    transport: "unix",
    path,
    proxyProtocol: true,
    onConnection: (info) => seen.push(info.remoteAddr),
  });
  try {
    const conn = await Deno.connect({ transport: "unix", path });
    await conn.write(new Uint8Array([...V2_CLIENT, 5, 6]));
    await conn.closeWrite();
    const { received } = await readUntilClosed(conn);
    conn.close();
    assert.deepEqual([...received], [5, 6]);
    assert.deepEqual(seen, [{ transport: "tcp", hostname: "203.0.113.7", port: 40001 }]);
    assert.equal(server.stats.transports?.unix.bytesIn, 2);
  } finally {
    await server.shutdown();
    await Deno.remove(path.replace(/\/proxied\.sock$/, ""), { recursive: true });
  }
});

test("runProbe proxyHeader: ping and bench lanes measure a PROXY-aware server directly", async () => {
  const { server, connections, port } = await proxiedServer();
  try {
    for (const proxyHeader of [1, 2] as const) {
      const result = await runProbe({ port, proxyHeader, connections: 2, count: 40 });
      assert.equal(result.received, 40, `v${proxyHeader}`);
      assert.equal(result.mismatches + result.errors, 0);
    }
    assert.equal(connections.length, 4, "each lane's connection read its header");
    assert.equal(server.stats.proxyRefused?.signature, 0);
    assert.throws(() => validateProbeOptions({ transport: "udp", proxyHeader: 2 }), TypeError);
    assert.throws(() => validateProbeOptions({ proxyHeader: 3 as 2 }), RangeError);
  } finally {
    await server.shutdown();
  }
});

Deno.test("proxyHeaderFor: a connection's own ends, LOCAL for a Unix socket", () => {
  const tcp = {
    localAddr: { transport: "tcp", hostname: "::1", port: 50000 },
    remoteAddr: { transport: "tcp", hostname: "::1", port: 7000 },
  } as const;
  const v2 = parseProxyHeader(proxyHeaderFor(tcp, 2));
  assert.equal(v2.status, "done");
  if (v2.status === "done") {
    assert.deepEqual(v2.header.source, { hostname: "::1", port: 50000 });
    assert.deepEqual(v2.header.destination, { hostname: "::1", port: 7000 });
  }
  const unix = {
    localAddr: { transport: "unix", path: "" },
    remoteAddr: { transport: "unix", path: "/tmp/x.sock" },
  } as const;
  const local = parseProxyHeader(proxyHeaderFor(unix, 2));
  assert.ok(local.status === "done" && local.header.command === "LOCAL");
  assert.throws(() => proxyHeaderFor(tcp, 0 as 1), RangeError);
});

test("serveEcho proxyProtocol fuzz: random and mutated headers over sockets, each ends cleanly", async () => {
  const seed = randomSeed();
  const random = new Random(seed);
  const { server, port } = await proxiedServer({ proxyTimeout: 300 });
  const corpus = ROUND_TRIPS.map((init) => encodeProxyHeader(init));
  const expected = { sessions: 0, refused: 0 };
  const guard = watchdog(10_000);
  try {
    for (let i = 0; i < 60; i++) {
      let bytes: Uint8Array;
      if (i % 3 === 0) {
        bytes = randomBytes(randomInt(random, 1, 200), random);
        if (random.next() < 0.5) {
          bytes.set(PROXY_V2_SIGNATURE.subarray(0, Math.min(12, bytes.length)));
        }
      } else {
        bytes = corpus[randomInt(random, 0, corpus.length - 1)].slice();
        const at = randomInt(random, 0, bytes.length - 1);
        if (i % 3 === 1) bytes[at] ^= 1 << randomInt(random, 0, 7);
        else bytes = bytes.subarray(0, at + 1); // truncated (or whole, when at is the last byte)
        bytes = concat(bytes, randomBytes(randomInt(random, 0, 32), random));
      }
      const label = `seed ${seed}, case ${i}`;
      const result = parseProxyHeader(bytes);
      const conn = await Deno.connect({ hostname: "127.0.0.1", port });
      await conn.write(bytes);
      // A complete header: the rest is echoed until our half-close. An incomplete one: half of
      // them half-close (refused as closed), the others wait for the server's deadline.
      if (result.status === "done" || random.next() < 0.5) await conn.closeWrite();
      const { received } = await guard(readUntilClosed(conn), label);
      conn.close();
      if (result.status === "done") {
        expected.sessions++;
        const rest = bytes.subarray(result.header.headerLength);
        assert.equal(Buffer.compare(received, rest), 0, `${label}: the data after the header`);
      } else {
        expected.refused++;
        assert.equal(received.length, 0, `${label}: nothing echoed`);
      }
    }
    // The server still serves a good client after all that.
    const good = await sendAndRead(port, new Uint8Array([...V2_CLIENT, 1, 2]));
    assert.deepEqual([...good.received], [1, 2]);
  } finally {
    await server.shutdown();
  }
  const refused = Object.values(server.stats.proxyRefused ?? {}).reduce((a, b) => a + b, 0);
  assert.equal(server.stats.sessionsTotal, expected.sessions + 1, `seed ${seed}`);
  assert.equal(refused, expected.refused, `seed ${seed}`);
});
