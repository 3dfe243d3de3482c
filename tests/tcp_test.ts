import assert from "node:assert/strict";
import net from "node:net";
import { once } from "node:events";
import { Buffer } from "node:buffer";
import { Random, randomSeed } from "../_random.ts";
import { EchoConnectionError, EchoMismatchError, EchoTimeoutError } from "../errors.ts";
import type { CloseInfo, ConnectionInfo } from "../serve.ts";
import { echoTcp, echoTcpStream, serveTcpEcho } from "../tcp.ts";
import type { EchoError } from "../errors.ts";
import {
  HAS_IPV6,
  randomBytes,
  randomInt,
  readAll,
  Recorder,
  ROOT,
  sha256,
  test,
} from "./_helpers.ts";

/** One seed per run, named in failure messages so a failing run can be replayed. */
const SEED = Number(Deno.env.get("ECHO_TEST_SEED") ?? randomSeed());
const HOST = "127.0.0.1";

function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

async function writeAll(conn: Deno.Conn, data: Uint8Array): Promise<void> {
  for (let written = 0; written < data.length;) written += await conn.write(data.subarray(written));
}

/** Reads a connection until the peer closes it. */
async function readToEnd(conn: Deno.Conn): Promise<Uint8Array> {
  const chunks: Uint8Array[] = [];
  const buffer = new Uint8Array(64 * 1024);
  for (;;) {
    const n = await conn.read(buffer);
    if (n === null) break;
    chunks.push(buffer.slice(0, n));
  }
  return await readAll(ReadableStream.from(chunks));
}

/** A port nobody listens on (bound then released). */
function closedPort(): number {
  const listener = Deno.listen({ hostname: HOST, port: 0 });
  const port = (listener.addr as Deno.NetAddr).port;
  listener.close();
  return port;
}

/** A raw one-connection server for the error tests: `serve` decides what the "echo" does. */
function rawServer(serve: (conn: Deno.Conn) => Promise<void>): {
  port: number;
  done: Promise<void>;
} {
  const listener = Deno.listen({ hostname: HOST, port: 0 });
  const done = (async () => {
    const conn = await listener.accept();
    listener.close();
    try {
      await serve(conn);
    } catch {
      // the client may reset when it gives up
    } finally {
      conn.close();
    }
  })();
  return { port: (listener.addr as Deno.NetAddr).port, done };
}

/** Reads exactly `n` bytes. */
async function readExactly(conn: Deno.Conn, n: number): Promise<Uint8Array> {
  const data = new Uint8Array(n);
  for (let got = 0; got < n;) {
    const read = await conn.read(data.subarray(got));
    if (read === null) throw new Error(`eof after ${got} of ${n} bytes`);
    got += read;
  }
  return data;
}

async function drain(conn: Deno.Conn): Promise<void> {
  const buffer = new Uint8Array(64 * 1024);
  while ((await conn.read(buffer)) !== null) {
    // discard
  }
}

test("tcp: 8 MiB of random bytes echo byte-exact with random write sizes, read concurrently", async () => {
  const random = new Random(SEED);
  const size = 8 * 1024 * 1024;
  const data = randomBytes(size, random);
  const closes = new Recorder<CloseInfo>();
  await using server = serveTcpEcho({ port: 0, onClose: closes.push });
  const conn = await Deno.connect({ hostname: HOST, port: server.addr.port });
  const received = new Uint8Array(size);
  let writes = 0;
  const writer = (async () => {
    for (let offset = 0; offset < size; writes++) {
      const n = Math.min(randomInt(random, 1, 256 * 1024), size - offset);
      await writeAll(conn, data.subarray(offset, offset + n));
      offset += n;
    }
    await conn.closeWrite();
  })();
  const reader = (async () => {
    const scratch = new Uint8Array(100_000);
    let got = 0;
    for (;;) {
      const n = await conn.read(scratch);
      if (n === null) return got;
      assert.ok(got + n <= size, `seed ${SEED}: more bytes came back than were sent`);
      received.set(scratch.subarray(0, n), got);
      got += n;
    }
  })();
  const [, got] = await Promise.all([writer, reader]);
  conn.close();
  assert.equal(got, size, `seed ${SEED}`);
  assert.equal(await sha256(received), await sha256(data), `seed ${SEED}`);
  assert.ok(writes > 16, `seed ${SEED}: only ${writes} writes`);
  await closes.until((items) => items.length === 1);
  assert.equal(closes.items[0].bytes, size);
  assert.equal(closes.items[0].reason, "eof");
  assert.equal(server.stats.bytesIn, size);
  assert.equal(server.stats.bytesOut, size);
});

test("tcp: after the client half-closes, the server sends back all pending bytes, then closes", async () => {
  const data = randomBytes(256 * 1024, new Random(SEED));
  const closes = new Recorder<CloseInfo>();
  await using server = serveTcpEcho({ port: 0, onClose: closes.push });
  const conn = await Deno.connect({ hostname: HOST, port: server.addr.port });
  // Nothing is read until the write side is shut: all of the echo is still pending then.
  await writeAll(conn, data);
  await conn.closeWrite();
  const reply = await readToEnd(conn); // ends only if the server closes after the last byte
  conn.close();
  assert.equal(reply.length, data.length);
  assert.ok(sameBytes(reply, data), `seed ${SEED}: echo differs`);
  await closes.until((items) => items.length === 1);
  assert.equal(closes.items[0].reason, "eof");
  assert.equal(closes.items[0].bytes, data.length);
});

test("tcp: 200 concurrent clients each get their own random payload back", async () => {
  const random = new Random(SEED);
  const payloads = Array.from(
    { length: 200 },
    () => randomBytes(randomInt(random, 1, 32 * 1024), random),
  );
  await using server = serveTcpEcho({ port: 0 });
  const results = await Promise.all(
    payloads.map((payload) => echoTcp(payload, { port: server.addr.port, timeout: 30_000 })),
  );
  results.forEach((result, i) => assert.ok(sameBytes(result.reply, payloads[i]), `client ${i}`));
  await server.shutdown();
  const total = payloads.reduce((sum, p) => sum + p.length, 0);
  assert.equal(server.stats.sessionsTotal, 200);
  assert.equal(server.stats.sessionsOpen, 0);
  assert.equal(server.stats.bytesIn, total);
  assert.equal(server.stats.bytesOut, total);
  assert.equal(server.stats.errors, 0);
});

test("tcp: a client reset mid-transfer ends only its own session; others are served", async () => {
  const random = new Random(SEED);
  const closes = new Recorder<CloseInfo>();
  const errors: EchoError[] = [];
  await using server = serveTcpEcho({
    port: 0,
    onClose: closes.push,
    onError: (e) => errors.push(e),
  });
  const port = server.addr.port;
  const resetSeen = closes.until((items) => items.some((c) => c.reason === "reset"));

  // B streams 2 MiB: the first half before A resets, the second half after.
  const streamed = randomBytes(2 * 1024 * 1024, random);
  async function* twoHalves() {
    yield streamed.slice(0, 1024 * 1024);
    await resetSeen;
    yield streamed.slice(1024 * 1024);
  }
  const echoed: Uint8Array[] = [];
  const b = echoTcpStream(ReadableStream.from(twoHalves()), {
    port,
    window: 256 * 1024,
    output: new WritableStream({ write: (chunk) => void echoed.push(chunk) }),
  });

  // A sends 1 MiB and resets (RST) once some of the echo has come back.
  const a = net.connect(port, HOST);
  await once(a, "connect");
  a.write(Buffer.from(randomBytes(1024 * 1024, random)));
  await new Promise<void>((resolve) => {
    let got = 0;
    a.on("data", (chunk: Buffer) => {
      got += chunk.length;
      if (got >= 64 * 1024) resolve();
    });
  });
  const aClosed = once(a, "close");
  a.resetAndDestroy();
  await aClosed;
  await resetSeen;

  const result = await b;
  assert.equal(result.bytes, streamed.length);
  assert.ok(sameBytes(await readAll(ReadableStream.from(echoed)), streamed), `seed ${SEED}`);
  await echoTcp("still serving", { port });
  await server.shutdown();
  const reasons = closes.items.map((c) => c.reason).sort();
  assert.deepEqual(reasons, ["eof", "eof", "reset"]);
  assert.equal(server.stats.errors, 1);
  assert.equal(server.stats.sessionsTotal, 3);
  assert.deepEqual(errors, [], "a reset concerns one peer and is not reported as a server error");
});

test("tcp: connections reset while still queued in the accept backlog are counted and skipped", async () => {
  const closes = new Recorder<CloseInfo>();
  const errors: EchoError[] = [];
  await using server = serveTcpEcho({
    port: 0,
    gracePeriod: 5000,
    onClose: closes.push,
    onError: (e) => errors.push(e),
  });
  const count = 20;
  // outputSync blocks this thread, and with it the server's accept loop, while the child opens
  // `count` connections and resets each one: they all sit reset in the backlog before any accept.
  const burst = new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "--allow-net",
      `${ROOT}tests/_reset_burst.ts`,
      String(server.addr.port),
      String(count),
    ],
    stdin: "null",
  }).outputSync();
  assert.equal(burst.code, 0, new TextDecoder().decode(burst.stderr));
  // The backlog is first in, first out: this exchange is accepted after every reset connection.
  const { reply } = await echoTcp("after the burst", { port: server.addr.port });
  assert.equal(new TextDecoder().decode(reply), "after the burst");
  await server.shutdown();
  // Depending on the runtime, a reset connection either fails in accept (Deno: ENOTCONN from
  // getpeername) or is accepted and fails on its first read; either way it is counted once.
  const reasons = closes.items.map((c) => c.reason);
  assert.equal(reasons.filter((r) => r === "eof").length, 1, reasons.join());
  assert.ok(reasons.every((r) => r === "eof" || r === "reset"), reasons.join());
  assert.equal(server.stats.errors, count);
  assert.equal(server.stats.sessionsTotal, reasons.length);
  assert.equal(server.stats.sessionsOpen, 0);
  assert.deepEqual(errors.map((e) => e.message), []);
});

test("tcp: a client that writes but never reads does not stop another client being served", async () => {
  await using server = serveTcpEcho({ port: 0, gracePeriod: 5000 });
  const port = server.addr.port;
  const hog = await Deno.connect({ hostname: HOST, port });
  const chunk = new Uint8Array(1024 * 1024);
  const total = 64 * chunk.length; // far beyond what the socket buffers of both ends can hold
  let written = 0;
  const reachedTwoMiB = Promise.withResolvers<void>();
  const hogging = (async () => {
    try {
      while (written < total) {
        written += await hog.write(chunk);
        if (written >= 2 * chunk.length) reachedTwoMiB.resolve();
      }
    } catch {
      // closed below while a write is still pending
    }
  })();
  await reachedTwoMiB.promise;

  const random = new Random(SEED);
  const message = randomBytes(100_000, random);
  const { reply } = await echoTcp(message, { port });
  assert.ok(sameBytes(reply, message));
  const streamed = await echoTcpStream(ReadableStream.from([randomBytes(1024 * 1024, random)]), {
    port,
  });
  assert.equal(streamed.bytes, 1024 * 1024);
  assert.ok(
    written < total,
    "the hog's writes all completed, so back-pressure was never in force and the test proves nothing",
  );
  hog.close();
  await hogging;
});

test("tcp: IPv6 loopback (::1)", async () => {
  const connections = new Recorder<ConnectionInfo>();
  await using server = serveTcpEcho({
    hostname: "::1",
    port: 0,
    onConnection: connections.push,
  });
  assert.equal(server.addr.hostname, "::1");
  const { reply, address } = await echoTcp("over IPv6", {
    hostname: "::1",
    port: server.addr.port,
  });
  assert.equal(new TextDecoder().decode(reply), "over IPv6");
  assert.equal(address.hostname, "::1");
  assert.equal(connections.items[0].remoteAddr.hostname, "::1");
  const data = randomBytes(300_000, new Random(SEED));
  const { bytes } = await echoTcpStream(ReadableStream.from([data]), {
    hostname: "::1",
    port: server.addr.port,
  });
  assert.equal(bytes, data.length);
}, { ignore: !HAS_IPV6 });

test("echoTcp: a 32 MiB message, more than both ends' socket buffers hold, does not deadlock", async () => {
  const message = randomBytes(32 * 1024 * 1024, new Random(SEED));
  await using server = serveTcpEcho({ port: 0 });
  const { reply } = await echoTcp(message, { port: server.addr.port, timeout: 30_000 });
  assert.equal(reply.length, message.length);
  assert.equal(await sha256(reply), await sha256(message), `seed ${SEED}`);
});

test("echoTcp: a refused connection is an EchoConnectionError naming the address", async () => {
  const port = closedPort();
  await assert.rejects(echoTcp("hello", { port, timeout: 2000 }), (error: unknown) => {
    assert.ok(error instanceof EchoConnectionError, String(error));
    assert.deepEqual(error.address, { hostname: HOST, port, transport: "tcp" });
    assert.ok(error.message.includes(`127.0.0.1:${port}`), error.message);
    assert.match(error.message, /connection refused/);
    assert.ok(error.cause instanceof Deno.errors.ConnectionRefused);
    return true;
  });
});

test("echoTcp: a server that never replies gives an EchoTimeoutError", async () => {
  const { port, done } = rawServer(drain);
  await assert.rejects(echoTcp("hello", { port, timeout: 200 }), (error: unknown) => {
    assert.ok(error instanceof EchoTimeoutError, String(error));
    assert.deepEqual(error.address, { hostname: HOST, port, transport: "tcp" });
    assert.match(error.message, /within 200ms/);
    return true;
  });
  await done;
});

test("echoTcp: a reply with a wrong byte gives an EchoMismatchError with its offset", async () => {
  const message = new TextEncoder().encode("Hello World");
  const { port, done } = rawServer(async (conn) => {
    const got = await readExactly(conn, message.length);
    got[6] ^= 0x20; // "world"
    await writeAll(conn, got);
    await drain(conn);
  });
  await assert.rejects(echoTcp(message, { port }), (error: unknown) => {
    assert.ok(error instanceof EchoMismatchError, String(error));
    assert.equal(error.offset, 6);
    assert.equal(error.address?.port, port);
    assert.match(error.message, /at byte 6/);
    return true;
  });
  await done;
});

test("echoTcp: a short reply then close gives an EchoMismatchError at the first missing byte", async () => {
  const { port, done } = rawServer(async (conn) => {
    const got = await readExactly(conn, 11);
    await writeAll(conn, got.subarray(0, 4));
  });
  await assert.rejects(echoTcp("Hello World", { port }), (error: unknown) => {
    assert.ok(error instanceof EchoMismatchError, String(error));
    assert.equal(error.offset, 4);
    assert.match(error.message, /after 4 of 11 bytes/);
    return true;
  });
  await done;
});

test("echoTcp: aborting the signal rejects with the signal's reason", async () => {
  const { port, done } = rawServer(async (conn) => {
    await readExactly(conn, 5);
    controller.abort(new Error("caller gave up"));
    await drain(conn);
  });
  const controller = new AbortController();
  await assert.rejects(
    echoTcp("hello", { port, timeout: 10_000, signal: controller.signal }),
    { message: "caller gave up" },
  );
  await done;
});

test("echoTcpStream: round trip with a small window, written to output", async () => {
  const random = new Random(SEED);
  const data = randomBytes(512 * 1024, random);
  const chunks: Uint8Array[] = [];
  for (let offset = 0; offset < data.length;) {
    const n = randomInt(random, 1, 10_000);
    chunks.push(data.subarray(offset, offset + n));
    offset += n;
  }
  await using server = serveTcpEcho({ port: 0 });
  const echoed: Uint8Array[] = [];
  const result = await echoTcpStream(ReadableStream.from(chunks), {
    port: server.addr.port,
    window: 4096,
    output: new WritableStream({ write: (chunk) => void echoed.push(chunk) }),
  });
  assert.equal(result.bytes, data.length);
  assert.equal(result.address.port, server.addr.port);
  assert.ok(sameBytes(await readAll(ReadableStream.from(echoed)), data), `seed ${SEED}`);
});

test("echoTcpStream: an empty input echoes zero bytes", async () => {
  await using server = serveTcpEcho({ port: 0 });
  const result = await echoTcpStream(ReadableStream.from<Uint8Array>([]), {
    port: server.addr.port,
  });
  assert.equal(result.bytes, 0);
});

test("echoTcpStream: a corrupted byte deep in the stream is reported at its offset", async () => {
  const bad = 100_000;
  const { port, done } = rawServer(async (conn) => {
    const buffer = new Uint8Array(16 * 1024);
    let seen = 0;
    for (;;) {
      const n = await conn.read(buffer);
      if (n === null) return;
      if (bad >= seen && bad < seen + n) buffer[bad - seen] ^= 0xff;
      seen += n;
      await writeAll(conn, buffer.subarray(0, n));
    }
  });
  const data = randomBytes(300_000, new Random(SEED));
  await assert.rejects(
    echoTcpStream(ReadableStream.from([data]), { port, window: 32 * 1024 }),
    (error: unknown) => {
      assert.ok(error instanceof EchoMismatchError, String(error));
      assert.equal(error.offset, bad);
      assert.match(error.message, new RegExp(`differs at byte ${bad}`));
      return true;
    },
  );
  await done;
});

test("echoTcpStream: a server that never echoes gives an EchoTimeoutError", async () => {
  // It reads everything, half-close included, and holds the connection open until the end.
  const release = Promise.withResolvers<void>();
  const { port, done } = rawServer(async (conn) => {
    await drain(conn);
    await release.promise;
  });
  await assert.rejects(
    echoTcpStream(ReadableStream.from([new Uint8Array(5000)]), { port, timeout: 200 }),
    (error: unknown) => {
      assert.ok(error instanceof EchoTimeoutError, String(error));
      assert.match(
        error.message,
        /^no echo from tcp 127\.0\.0\.1:\d+ for 200ms with 5000 bytes in flight$/,
      );
      return true;
    },
  );
  release.resolve();
  await done;
});

test("echoTcpStream: a server that closes with bytes still owed gives an EchoMismatchError", async () => {
  const { port, done } = rawServer(async (conn) => {
    const all = await readToEnd(conn); // the client half-closes after its last byte
    await writeAll(conn, all.subarray(0, 1000));
  });
  const data = randomBytes(5000, new Random(SEED));
  await assert.rejects(echoTcpStream(ReadableStream.from([data]), { port }), (error: unknown) => {
    assert.ok(error instanceof EchoMismatchError, String(error));
    assert.equal(error.offset, 1000);
    assert.match(error.message, /closed the connection after echoing 1000 of 5000 bytes$/);
    return true;
  });
  await done;
});

test("echoTcpStream: a refused connection is an EchoConnectionError", async () => {
  const port = closedPort();
  await assert.rejects(
    echoTcpStream(ReadableStream.from([new Uint8Array(10)]), { port }),
    (error: unknown) => {
      assert.ok(error instanceof EchoConnectionError, String(error));
      assert.equal(error.address?.port, port);
      return true;
    },
  );
});

test("shutdown: a session stuck writing to a client that never reads is closed after the grace", async () => {
  const closes = new Recorder<CloseInfo>();
  const server = serveTcpEcho({ port: 0, gracePeriod: 100, onClose: closes.push });
  const hog = await Deno.connect({ hostname: HOST, port: server.addr.port });
  const chunk = new Uint8Array(1024 * 1024);
  const stuck = Promise.withResolvers<void>();
  let written = 0;
  const hogging = (async () => {
    try {
      for (;;) {
        written += await hog.write(chunk);
        if (written >= 4 * chunk.length) stuck.resolve();
      }
    } catch {
      // closed below
    }
  })();
  await stuck.promise;
  await server.shutdown();
  assert.deepEqual(closes.items.map((c) => c.reason), ["shutdown"]);
  assert.ok(closes.items[0].bytes > 0);
  hog.close();
  await hogging;
});

test("echoTcpStream: a window below one byte is a RangeError", async () => {
  await assert.rejects(
    echoTcpStream(ReadableStream.from<Uint8Array>([]), { port: 1, window: 0 }),
    RangeError,
  );
});

test("echoTcp: a reply that is not an echo is reported where it differs, not as short", async () => {
  const { port, done } = rawServer(async (conn) => {
    await readExactly(conn, 11);
    await writeAll(conn, new TextEncoder().encode("BANNER!"));
  });
  await assert.rejects(echoTcp("Hello World", { port }), (error: unknown) => {
    assert.ok(error instanceof EchoMismatchError, String(error));
    assert.equal(error.offset, 0);
    assert.match(error.message, /differs from the message at byte 0 \(7 of 11 bytes came back/);
    assert.doesNotMatch(error.message, /TLS/);
    return true;
  });
  await done;
});

test("echoTcp: a plain client against a TLS port is told it looks like TLS", async () => {
  const cert = await Deno.readTextFile(new URL("./fixtures/tls_cert.pem", import.meta.url));
  const key = await Deno.readTextFile(new URL("./fixtures/tls_key.pem", import.meta.url));
  await using server = serveTcpEcho({ port: 0, tls: { cert, key } });
  await assert.rejects(echoTcp("Hello World", { port: server.addr.port }), (error: unknown) => {
    assert.ok(error instanceof EchoMismatchError, String(error));
    assert.equal(error.offset, 0);
    assert.match(error.message, /at byte 0 .*is this a TLS port\? try --tls/);
    return true;
  });
});
