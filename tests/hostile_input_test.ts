/**
 * Hostile input against a server with every guard on: random bytes on TCP and UDP, zero-length and
 * maximum-size datagrams, connect-and-reset floods next to a byte-exact transfer, half-open
 * sessions, and clients that never read. Waits are on real events; a watchdog turns a lost event
 * into a failure instead of a hang.
 *
 * @module
 */
import assert from "node:assert/strict";
import { createStats } from "../stats.ts";
import net from "node:net";
import { Random, randomSeed } from "../_random.ts";
import type { EchoError } from "../errors.ts";
import type { CloseInfo, ConnectionInfo, EchoServerOptions } from "../serve.ts";
import { echoTcp, echoTcpStream, serveTcpEcho } from "../tcp.ts";
import { MAX_UDP_PAYLOAD, serveUdpEcho } from "../udp.ts";
import { randomBytes, randomInt, Recorder, test, watchdog } from "./_helpers.ts";

const SEED = Number(Deno.env.get("ECHO_TEST_SEED") ?? randomSeed());
const HOST = "127.0.0.1";
const WATCHDOG_MS = 15_000;

/** Every guard on, with limits loose enough for the traffic below. */
const GUARDED: EchoServerOptions = {
  port: 0,
  allow: ["127.0.0.0/8", "::1/128"],
  maxConnections: 512,
  idleTimeout: 10_000,
  maxSessionBytes: 2 ** 30,
  maxSessionTime: 60_000,
  udpRate: 100_000,
  loopGuard: true,
};

const within = watchdog(WATCHDOG_MS);

/** Cuts `data` into chunks of random sizes from 1 to `max` bytes. */
function randomChunks(data: Uint8Array, random: Random, max: number): Uint8Array[] {
  const chunks: Uint8Array[] = [];
  for (let offset = 0; offset < data.length;) {
    const size = Math.min(data.length - offset, randomInt(random, 1, max));
    chunks.push(data.subarray(offset, offset + size));
    offset += size;
  }
  return chunks;
}

/** Writes forever (up to `total` bytes) without reading; ends when the connection is closed. */
function pushWithoutReading(conn: Deno.Conn, chunk: Uint8Array, total: number) {
  let written = 0;
  const { promise: pushed, resolve: settle } = Promise.withResolvers<void>();
  const done = (async () => {
    try {
      while (written < total) {
        written += await conn.write(chunk);
        if (written >= 2 * chunk.length) settle();
      }
      await conn.closeWrite(); // half-open, if it ever gets here
    } catch {
      // the server closed the session while a write was pending
    } finally {
      settle();
    }
  })();
  return { pushed, done, written: () => written };
}

test("hostile tcp: 32 clients send random bytes in random-size writes; each gets exactly its bytes back", async () => {
  const random = new Random(SEED);
  const errors: EchoError[] = [];
  await using server = serveTcpEcho({ ...GUARDED, onError: (e) => errors.push(e) });
  const sizes = [0, 1, 2, 65_535, 65_536, 65_537];
  while (sizes.length < 32) sizes.push(randomInt(random, 0, 512 * 1024));
  const results = await within(
    Promise.all(sizes.map((size) => {
      const data = randomBytes(size, random);
      const chunks = randomChunks(data, random, randomInt(random, 1, 70_000));
      return echoTcpStream(ReadableStream.from(chunks), {
        port: server.addr.port,
        window: randomInt(random, 1, 256 * 1024),
      });
    })),
    "32 streams",
  );
  assert.deepEqual(results.map((r) => r.bytes), sizes, `seed ${SEED}`);
  assert.equal(server.stats.bytesOut, sizes.reduce((a, b) => a + b, 0));
  assert.deepEqual(errors, []);
  assert.deepEqual(server.stats.dropped, createStats().dropped);
});

for (const backend of ["deno", "node"] as const) {
  test(`hostile udp (${backend}): random datagrams of 0 to 65,507 bytes come back whole through every guard`, async () => {
    const random = new Random(SEED);
    await using server = await serveUdpEcho({ ...GUARDED, backend });
    const socket = Deno.listenDatagram({ hostname: HOST, port: 0, transport: "udp" });
    const target: Deno.NetAddr = { transport: "udp", hostname: HOST, port: server.addr.port };
    const sizes = [0, MAX_UDP_PAYLOAD, 1, 0, MAX_UDP_PAYLOAD - 1, 1472, 1473, 65_536 - 29];
    while (sizes.length < 40) sizes.push(randomInt(random, 0, MAX_UDP_PAYLOAD));
    try {
      for (const size of sizes) {
        const data = randomBytes(size, random);
        await socket.send(data, target);
        const [reply, from] = await within(socket.receive(), `the echo of ${size} bytes`);
        assert.equal((from as Deno.NetAddr).port, server.addr.port);
        assert.equal(reply.length, size, `seed ${SEED}`);
        assert.deepEqual(reply, data, `seed ${SEED}: ${size} bytes`);
      }
    } finally {
      socket.close();
    }
    assert.equal(server.stats.datagramsOut, sizes.length);
    assert.equal(server.stats.errors, 0);
    assert.deepEqual(server.stats.dropped, createStats().dropped);
  });
}

test("hostile tcp: 300 connect-and-reset clients while another streams 4 MiB byte-exact", async () => {
  const FLOOD = 300;
  const AT_ONCE = 30;
  const random = new Random(SEED);
  const connections = new Recorder<ConnectionInfo>();
  const closes = new Recorder<CloseInfo>();
  const errors: EchoError[] = [];
  await using server = serveTcpEcho({
    ...GUARDED,
    onConnection: connections.push,
    onClose: closes.push,
    onError: (e) => errors.push(e),
  });
  const port = server.addr.port;
  const payload = randomBytes(4 * 1024 * 1024, random);
  const streaming = echoTcpStream(ReadableStream.from(randomChunks(payload, random, 64 * 1024)), {
    port,
    window: 256 * 1024,
  });
  const resetOne = () =>
    new Promise<void>((resolve) => {
      const socket = net.connect(port, HOST, () => socket.resetAndDestroy());
      socket.once("error", () => {}); // a refusal racing the reset is fine too
      socket.once("close", () => resolve());
    });
  const flood = (async () => {
    for (let sent = 0; sent < FLOOD; sent += AT_ONCE) {
      await Promise.all(Array.from({ length: AT_ONCE }, resetOne));
    }
  })();
  const [streamed] = await within(Promise.all([streaming, flood]), "the stream and the flood");
  assert.equal(streamed.bytes, payload.length, `seed ${SEED}`);

  // Accept is first come, first served: once a new client is served, every flood connection
  // has been accepted (or failed to be).
  await echoTcp("after the flood", { port });
  const accepted = connections.items.length;
  await within(closes.until((c) => c.length === accepted), "every session to end");
  const resets = closes.items.filter((c) => c.reason === "reset").length;
  const acceptFailures = server.stats.errors - resets;
  assert.ok(acceptFailures >= 0);
  assert.equal(
    server.stats.sessionsTotal + server.stats.dropped.limit + acceptFailures,
    FLOOD + 2,
    "every connection is accounted for: served, refused, or failed at accept",
  );
  assert.ok(closes.items.every((c) => ["eof", "reset"].includes(c.reason)));
  assert.equal(server.stats.sessionsOpen, 0);
  assert.deepEqual(errors, []);
});

test("half-open: a client that sends, half-closes and never reads still has its session finish (eof)", async () => {
  const random = new Random(SEED);
  const closes = new Recorder<CloseInfo>();
  await using server = serveTcpEcho({ ...GUARDED, onClose: closes.push });
  const data = randomBytes(64 * 1024, random);
  const conn = await Deno.connect({ hostname: HOST, port: server.addr.port });
  try {
    for (let written = 0; written < data.length;) {
      written += await conn.write(data.subarray(written));
    }
    await conn.closeWrite();
    await within(closes.until((c) => c.length === 1), "the session to end");
    assert.equal(closes.items[0].reason, "eof");
    assert.equal(closes.items[0].bytes, data.length);
    assert.equal(server.stats.sessionsOpen, 0);
  } finally {
    conn.close();
  }
});

test("never-reading clients: their stuck sessions are closed as idle while another client is served byte-exact", async () => {
  const HOGS = 10;
  const IDLE = 300;
  const random = new Random(SEED);
  const connections = new Recorder<ConnectionInfo>();
  const closes = new Recorder<CloseInfo>();
  await using server = serveTcpEcho({
    ...GUARDED,
    idleTimeout: IDLE,
    onConnection: connections.push,
    onClose: closes.push,
  });
  const port = server.addr.port;
  const chunk = randomBytes(1024 * 1024, random);
  const hogs = await Promise.all(
    Array.from({ length: HOGS }, () => Deno.connect({ hostname: HOST, port })),
  );
  const hogPorts = new Set(hogs.map((c) => (c.localAddr as Deno.NetAddr).port));
  // 64 MiB each: far more than the socket buffers of both ends hold, so they get stuck.
  const pushes = hogs.map((conn) => pushWithoutReading(conn, chunk, 64 * chunk.length));
  try {
    await within(Promise.all(pushes.map((p) => p.pushed)), "the hogs to push 2 MiB each");
    const payload = randomBytes(2 * 1024 * 1024, random);
    const { bytes } = await within(
      echoTcpStream(ReadableStream.from(randomChunks(payload, random, 100_000)), { port }),
      "the well-behaved client",
    );
    assert.equal(bytes, payload.length);
    await within(
      closes.until((c) => c.filter((x) => x.reason === "idle").length === HOGS),
      "the stuck sessions to be closed as idle",
    );
    const idle = closes.items.filter((c) => c.reason === "idle");
    assert.ok(idle.every((c) => hogPorts.has(c.remoteAddr.port)), "only hogs are idle");
    assert.equal(server.stats.dropped.idle, HOGS);
    assert.ok(pushes.every((p) => p.written() < 64 * chunk.length), "a hog was never stuck");
  } finally {
    for (const conn of hogs) conn.close();
    await Promise.all(pushes.map((p) => p.done));
  }
});

test("never-reading, half-closing clients with no idle timeout: shutdown still finishes after the grace period", async () => {
  const HOGS = 5;
  const closes = new Recorder<CloseInfo>();
  const connections = new Recorder<ConnectionInfo>();
  const server = serveTcpEcho({
    ...GUARDED,
    idleTimeout: 0,
    gracePeriod: 100,
    onConnection: connections.push,
    onClose: closes.push,
  });
  const chunk = new Uint8Array(1024 * 1024);
  const hogs = await Promise.all(
    Array.from({ length: HOGS }, () => Deno.connect({ hostname: HOST, port: server.addr.port })),
  );
  const pushes = hogs.map((conn) => pushWithoutReading(conn, chunk, 64 * chunk.length));
  try {
    await within(Promise.all(pushes.map((p) => p.pushed)), "the hogs to push 2 MiB each");
    await within(connections.until((c) => c.length === HOGS), "the sessions");
    await within(server.shutdown(), "shutdown to finish");
    assert.deepEqual(closes.items.map((c) => c.reason), Array(HOGS).fill("shutdown"));
    assert.equal(server.stats.sessionsOpen, 0);
  } finally {
    for (const conn of hogs) conn.close();
    await Promise.all(pushes.map((p) => p.done));
    await server.shutdown();
  }
});
