/**
 * The PROXY protocol over TLS listeners, as a balancer sends it in front of a TLS backend
 * (HAProxy `send-proxy-v2`, `mode tcp`): the header in clear text, then the client's TLS
 * handshake on the same connection. Real sockets on loopback, the fixture certificate, the CLIs
 * as children, and the real HAProxy where it can be had.
 */
import assert from "node:assert/strict";
import { Buffer } from "node:buffer";
import { encodeProxyHeader } from "../proxy_header.ts";
import { PROXY_V2_SIGNATURE } from "../proxy_protocol.ts";
import { serveMetrics } from "../metrics.ts";
import type { ServeEchoOptions } from "../types.ts";
import { type ProxiedServer, proxiedServer } from "./_proxied_server.ts";
import { Random, randomSeed } from "../_random.ts";
import { randomBytes, randomInt, readUntilClosed, ROOT, test, watchdog } from "./_helpers.ts";
import { runProgram, startServer, stopServer } from "./_cli_child.ts";
import { type HaproxyBalancer, missing, startHaproxy } from "./_balancers.ts";

const CERT_FILE = `${ROOT}tests/fixtures/tls_cert.pem`;
const KEY_FILE = `${ROOT}tests/fixtures/tls_key.pem`;
const cert = await Deno.readTextFile(CERT_FILE);
const key = await Deno.readTextFile(KEY_FILE);
const encoder = new TextEncoder();
const guard = watchdog(15_000);
/** Awaits what should come at once (a watchdog, never a synchronisation). */
const within = <T>(promise: Promise<T>, what = "the server's answer") => guard(promise, what);
const PERMS = ["--allow-net", "--allow-read"];
const NO_HAPROXY = missing("haproxy");
if (NO_HAPROXY) console.log(`proxy_tls_test: the HAProxy test is skipped: ${NO_HAPROXY}`);

/** A header naming `hostname:port` as the client, as a balancer writes it. */
function headerFor(version: 1 | 2, hostname: string, port: number): Uint8Array {
  return encodeProxyHeader({
    version,
    source: { hostname, port },
    destination: { hostname: "198.51.100.1", port: 443 },
  });
}

async function writeAll(conn: Deno.Conn, bytes: Uint8Array): Promise<void> {
  for (let written = 0; written < bytes.length;) {
    written += await conn.write(bytes.subarray(written));
  }
}

/** A TLS echo server expecting PROXY headers, recording its hooks. */
function proxiedTlsServer(options: ServeEchoOptions = {}): Promise<ProxiedServer> {
  return proxiedServer({ tls: { cert, key }, ...options });
}

/** Connects, writes `header` in clear text, then does TLS on the same connection. */
async function tlsAfterHeader(port: number, header: Uint8Array): Promise<Deno.TlsConn> {
  const tcp = await Deno.connect({ hostname: "127.0.0.1", port });
  try {
    await writeAll(tcp, header);
  } catch (error) {
    tcp.close();
    throw error;
  }
  const tls = await Deno.startTls(tcp, { hostname: "127.0.0.1", caCerts: [cert] });
  try {
    await tls.handshake();
  } catch (error) {
    tls.close();
    throw error;
  }
  return tls;
}

/** Sends `data` over an open TLS connection, half-closes, and returns the whole echo. */
async function echoOver(tls: Deno.TlsConn, data: Uint8Array): Promise<Uint8Array> {
  const reading = readUntilClosed(tls);
  await writeAll(tls, data);
  await tls.closeWrite();
  return (await reading).received;
}

/**
 * A one-connection stand-in for a balancer that coalesces, as HAProxy does: it reads the client's
 * first bytes (the ClientHello), writes the header and them in one write, then relays both ways.
 * So the server reads the header and the start of the handshake together.
 */
function coalescingBalancer(serverPort: number, header: Uint8Array) {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const relay = async (from: Deno.Conn, to: Deno.Conn) => {
    const buffer = new Uint8Array(16 * 1024);
    try {
      for (let n; (n = await from.read(buffer)) !== null;) {
        await writeAll(to, buffer.subarray(0, n));
      }
      await to.closeWrite();
    } catch {
      // the other side went away; closing both below ends the other direction
    }
  };
  const done = (async () => {
    const client = await listener.accept();
    listener.close();
    const server = await Deno.connect({ hostname: "127.0.0.1", port: serverPort });
    try {
      const buffer = new Uint8Array(16 * 1024);
      const n = await client.read(buffer);
      assert.ok(n !== null && n > 0, "the client's ClientHello");
      await writeAll(server, new Uint8Array([...header, ...buffer.subarray(0, n)]));
      await Promise.all([relay(client, server), relay(server, client)]);
    } finally {
      client.close();
      server.close();
    }
  })();
  return { port: (listener.addr as Deno.NetAddr).port, done };
}

test("tls + proxyProtocol: v1 and v2 headers before TLS are echoed as the header's client", async () => {
  const { server, connections, closes, port } = await proxiedTlsServer();
  const random = new Random(randomSeed());
  let bytes = 0;
  try {
    for (const version of [1, 2] as const) {
      const data = randomBytes(randomInt(random, 1, 200_000), random);
      const tls = await within(
        tlsAfterHeader(port, headerFor(version, "203.0.113.7", 40000 + version)),
      );
      try {
        const echoed = await within(echoOver(tls, data), `v${version}`);
        assert.equal(Buffer.compare(echoed, data), 0, `v${version}: the echo, no header byte`);
      } finally {
        tls.close();
      }
      bytes += data.length;
    }
    // The header and the ClientHello in one segment: the bytes after the header go to TLS.
    const balancer = coalescingBalancer(port, headerFor(2, "2001:db8::7", 40003));
    const tcp = await Deno.connect({ hostname: "127.0.0.1", port: balancer.port });
    const tls = await Deno.startTls(tcp, { hostname: "127.0.0.1", caCerts: [cert] });
    try {
      const echoed = await within(echoOver(tls, encoder.encode("coalesced")), "coalesced");
      assert.equal(new TextDecoder().decode(echoed), "coalesced");
    } finally {
      tls.close();
    }
    await balancer.done;
    bytes += "coalesced".length;
    assert.deepEqual(connections.map((c) => c.remoteAddr), [
      { transport: "tcp", hostname: "203.0.113.7", port: 40001 },
      { transport: "tcp", hostname: "203.0.113.7", port: 40002 },
      { transport: "tcp", hostname: "2001:db8::7", port: 40003 },
    ]);
    await server.shutdown();
    assert.deepEqual(closes.map((c) => [c.remoteAddr.hostname, c.reason]), [
      ["203.0.113.7", "eof"],
      ["203.0.113.7", "eof"],
      ["2001:db8::7", "eof"],
    ]);
    const tlsCounters = server.stats.transports?.tls;
    assert.equal(tlsCounters?.bytesIn, bytes);
    assert.equal(tlsCounters?.bytesOut, bytes);
    assert.equal(server.stats.errors, 0);
  } finally {
    await server.shutdown();
  }
});

test("tls + proxyProtocol: a peer outside proxyFrom is refused as untrusted, before any TLS", async () => {
  const { server, rejects, port } = await proxiedTlsServer({ proxyFrom: ["10.0.0.0/8"] });
  try {
    await assert.rejects(within(tlsAfterHeader(port, headerFor(2, "203.0.113.7", 40001))));
    assert.equal(rejects.length, 1);
    assert.equal(rejects[0].reason, "proxy");
    assert.equal(rejects[0].detail, "untrusted");
    assert.equal(rejects[0].remoteAddr.hostname, "127.0.0.1", "the peer that sent it");
    assert.equal(server.stats.proxyRefused?.untrusted, 1);
    assert.equal(server.stats.sessionsTotal, 0);
  } finally {
    await server.shutdown();
  }
});

test("tls + proxyProtocol: a malformed header is refused and its bytes never reach TLS", async () => {
  const { server, rejects, port } = await proxiedTlsServer();
  /** Writes `bytes` in clear text and returns what came back before the server closed. */
  const plain = async (bytes: Uint8Array) => {
    const conn = await Deno.connect({ hostname: "127.0.0.1", port });
    try {
      await writeAll(conn, bytes);
      return await within(readUntilClosed(conn));
    } finally {
      conn.close();
    }
  };
  const notTls = encoder.encode("hello, not a ClientHello\r\n");
  try {
    // The control: after a good header, bytes that are not TLS reach TLS, which answers with an
    // alert record (content type 21), so the refusal below could be seen if TLS had them.
    const reached = await plain(new Uint8Array([...headerFor(1, "192.0.2.7", 1000), ...notTls]));
    assert.ok(reached.received.length > 0, "TLS answered the control");
    assert.equal(reached.received[0], 0x15, "a TLS alert");
    const malformed = encoder.encode("PROXY TCP4 1.2.3.999 1.2.3.4 1 2\r\n");
    const refused = await plain(new Uint8Array([...malformed, ...notTls]));
    assert.equal(refused.received.length, 0, "no TLS byte: the handshake never started");
    // A real TLS client after a malformed header: its handshake fails, nothing is served.
    await assert.rejects(within(tlsAfterHeader(port, malformed)));
    assert.deepEqual(rejects.map((r) => [r.reason, r.detail]), [
      ["proxy", "malformed"],
      ["proxy", "malformed"],
    ]);
    assert.equal(server.stats.proxyRefused?.malformed, 2);
    assert.equal(server.stats.sessionsTotal, 1, "only the control became a session");
  } finally {
    await server.shutdown();
  }
});

test("tls + proxyProtocol: a header slower than proxyTimeout times out, counted", async () => {
  const { server, rejects, port } = await proxiedTlsServer({ proxyTimeout: 300 });
  const conn = await Deno.connect({ hostname: "127.0.0.1", port });
  try {
    const started = performance.now();
    await conn.write(PROXY_V2_SIGNATURE.subarray(0, 1));
    const ending = await within(readUntilClosed(conn));
    assert.equal(ending.received.length, 0);
    assert.ok(performance.now() - started >= 250, "not before the deadline");
    assert.deepEqual(rejects.map((r) => [r.reason, r.detail]), [["proxy", "timeout"]]);
    assert.equal(server.stats.proxyRefused?.timeout, 1);
    // The server goes on serving others.
    const tls = await within(tlsAfterHeader(port, headerFor(2, "203.0.113.8", 1)));
    try {
      assert.deepEqual([...await within(echoOver(tls, Uint8Array.of(1, 2, 3)))], [1, 2, 3]);
    } finally {
      tls.close();
    }
  } finally {
    conn.close();
    await server.shutdown();
  }
});

test("tls + proxyProtocol: allow and per-source slots apply to the header's client", async () => {
  const { server, rejects, connections, port } = await proxiedTlsServer({
    allow: ["203.0.113.0/24"], // the balancer (127.0.0.1) is not in it; its clients are
    maxPerSource: 1,
  });
  try {
    // The first session of 203.0.113.7 holds its source's one slot while open.
    const first = await within(tlsAfterHeader(port, headerFor(2, "203.0.113.7", 1)));
    try {
      await assert.rejects(within(tlsAfterHeader(port, headerFor(2, "203.0.113.7", 2))));
      await assert.rejects(within(tlsAfterHeader(port, headerFor(1, "192.0.2.9", 3))));
      // Another source of the allowed range has its own slot.
      const other = await within(tlsAfterHeader(port, headerFor(1, "203.0.113.8", 4)));
      try {
        assert.deepEqual([...await within(echoOver(other, Uint8Array.of(9)))], [9]);
      } finally {
        other.close();
      }
      assert.deepEqual([...await within(echoOver(first, Uint8Array.of(7)))], [7]);
    } finally {
      first.close();
    }
    assert.deepEqual(rejects.map((r) => [r.reason, r.remoteAddr.hostname]), [
      ["source", "203.0.113.7"],
      ["acl", "192.0.2.9"],
    ]);
    assert.deepEqual(connections.map((c) => c.remoteAddr.port), [1, 4]);
    assert.equal(server.stats.dropped.source, 1);
    assert.equal(server.stats.dropped.acl, 1);
  } finally {
    await server.shutdown();
  }
});

test("server.ts --tls-cert --proxy-protocol: client.ts --proxy-header v2 --tls echoes; --json remote is the header's", async () => {
  const server = await startServer(
    ["-p", "0", "--tls-cert", CERT_FILE, "--tls-key", KEY_FILE, "--proxy-protocol", "--json"],
    PERMS,
    /"event":"listening"/,
  );
  const port = String(JSON.parse(server.ready.input).port);
  let stopped: Awaited<ReturnType<typeof stopServer>> | undefined;
  try {
    const ok = await runProgram(
      "client.ts",
      ["--proxy-header", "v2", "--tls", "--ca", CERT_FILE, "-p", port, "hello tls proxy"],
      PERMS,
    );
    assert.equal(ok.code, 0, ok.stderr);
    assert.match(
      ok.stdout,
      new RegExp(`^reply from tls 127\\.0\\.0\\.1:${port}: "hello tls proxy"`),
    );
    const v1 = await runProgram(
      "client.ts",
      ["--proxy-header", "v1", "--tls", "--ca", CERT_FILE, "-p", port, "v1 too"],
      PERMS,
    );
    assert.equal(v1.code, 0, v1.stderr);
    // A header naming another client: that client is the remote of the event lines.
    const tls = await within(tlsAfterHeader(Number(port), headerFor(2, "203.0.113.7", 40001)));
    try {
      assert.equal(new TextDecoder().decode(await within(echoOver(tls, encoder.encode("x")))), "x");
    } finally {
      tls.close();
    }
    // Without a header the connection is refused before TLS: the client fails, the server says why.
    const bare = await runProgram(
      "client.ts",
      ["--tls", "--ca", CERT_FILE, "-p", port, "no"],
      PERMS,
    );
    assert.equal(bare.code, 1, bare.stderr);
    stopped = await stopServer(server);
  } finally {
    if (!stopped) await stopServer(server);
  }
  assert.equal(stopped.code, 0, stopped.stderr);
  const events = stopped.lines.map((line) => JSON.parse(line));
  const remotes = events.filter((e) => e.event === "connection").map((e) => e.remote);
  assert.equal(remotes.length, 3);
  assert.match(remotes[0], /^127\.0\.0\.1:\d+$/);
  assert.equal(remotes[2], "203.0.113.7:40001");
  const refused = events.filter((e) => e.event === "reject");
  assert.deepEqual(refused.map((e) => [e.reason, e.detail]), [["proxy", "signature"]]);
  const closes = events.filter((e) => e.event === "close");
  assert.deepEqual(closes.map((e) => e.reason), ["eof", "eof", "eof"]);
  const stats = events.find((e) => e.event === "stopped").stats;
  assert.equal(stats.proxyRefused.signature, 1);
  assert.equal(stats.transports.tls.sessionsTotal, 3);
});

test(
  "HAProxy send-proxy-v2 in front of a TLS instance (mode tcp): TLS passes through, real client seen",
  async () => {
    const random = new Random(randomSeed());
    const { server, connections, rejects, port } = await proxiedTlsServer();
    const metrics = serveMetrics({ port: 0, stats: server.stats });
    let haproxy: HaproxyBalancer | undefined;
    try {
      haproxy = await startHaproxy({ backends: [{ port, checkPort: metrics.addr.port }] });
      await haproxy.waitForStates((s) => s.echo1 === "UP");
      const clientPorts: number[] = [];
      let bytes = 0;
      for (let i = 0; i < 8; i++) {
        const data = randomBytes(randomInt(random, 1, 64 * 1024), random);
        const tcp = await Deno.connect({ hostname: "127.0.0.1", port: haproxy.port });
        clientPorts.push((tcp.localAddr as Deno.NetAddr).port);
        const tls = await Deno.startTls(tcp, { hostname: "127.0.0.1", caCerts: [cert] });
        try {
          const echoed = await within(echoOver(tls, data), `exchange ${i}`);
          assert.equal(Buffer.compare(echoed, data), 0, `exchange ${i}`);
        } finally {
          tls.close();
        }
        bytes += data.length;
      }
      assert.deepEqual(rejects, [], "every header from HAProxy was admitted");
      assert.deepEqual(
        connections.map((c) => [c.remoteAddr.hostname, c.remoteAddr.port]),
        clientPorts.map((p) => ["127.0.0.1", p]),
        "the instance saw the real clients, not HAProxy's connections",
      );
      assert.equal(server.stats.transports?.tls.bytesIn, bytes);
    } finally {
      await haproxy?.stop();
      await metrics.shutdown();
      await server.shutdown();
    }
  },
  { ignore: Boolean(NO_HAPROXY) },
);
