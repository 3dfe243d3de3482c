/**
 * serveEcho({ workers }) and server.ts --workers: TCP accepted by several threads on one port,
 * byte-exact; the connection cap and the counters are totals over every thread; hooks run on the
 * main thread; shutdown stops every thread; the CLI refuses --workers above 1 before anything
 * listens when the port cannot be shared.
 *
 * @module
 */
import assert from "node:assert/strict";
import { Random, randomSeed } from "../_random.ts";
import { canSharePort } from "../_tcp_listen.ts";
import { validateWorkers } from "../_worker_pool.ts";
import type { CloseInfo, ConnectionInfo, RejectInfo } from "../serve.ts";
import { serveEcho } from "../serve.ts";
import { echoTcp, echoTcpStream } from "../tcp.ts";
import { echoUdp } from "../udp.ts";
import { childEnded, randomBytes, randomInt, spawnServer, test } from "./_helpers.ts";

const SEED = Number(Deno.env.get("ECHO_TEST_SEED") ?? randomSeed());
const HOST = "127.0.0.1";
const SKIP = !canSharePort();

test(`workers 3: 40 clients byte-exact, counters and hooks total over the threads (seed ${SEED})`, async () => {
  if (SKIP) return;
  const connections: ConnectionInfo[] = [];
  const closes: CloseInfo[] = [];
  const server = await serveEcho({
    hostname: HOST,
    port: 0,
    workers: 3,
    onConnection: (info) => connections.push(info),
    onClose: (info) => closes.push(info),
  });
  const port = server.addr.port;
  assert.deepEqual(server.listeners.map((l) => l.transport), ["tcp", "udp"]);
  let bytes = 0;
  await Promise.all(Array.from({ length: 40 }, async (_, i) => {
    const random = new Random(SEED + i);
    const data = randomBytes(
      i % 8 === 0 ? randomInt(random, 100_000, 400_000) : randomInt(random, 1, 5000),
      random,
    );
    bytes += data.length;
    if (data.length > 50_000) {
      await echoTcpStream(ReadableStream.from([data]), { port });
    } else {
      const { reply } = await echoTcp(data, { port });
      assert.deepEqual(reply, data, `client ${i}`);
    }
  }));
  assert.deepEqual((await echoUdp("udp stays on the main thread", { port })).reply.length, 28);
  await server.shutdown();
  assert.equal(server.stats.sessionsTotal, 40);
  assert.equal(server.stats.sessionsOpen, 0);
  assert.equal(server.stats.bytesIn, bytes + 28);
  assert.equal(server.stats.bytesOut, bytes + 28);
  assert.equal(server.stats.datagramsIn, 1);
  assert.equal(connections.length, 40);
  assert.equal(closes.length, 40);
  // Ids stay unique across threads, and none is skipped: 1 to 40, whichever thread accepted.
  assert.equal(new Set(connections.map((c) => c.id)).size, 40);
  assert.deepEqual(
    connections.map((c) => c.id).sort((a, b) => a - b),
    [...Array(40).keys()].map((i) => i + 1),
  );
  assert.deepEqual(new Set(closes.map((c) => c.id)), new Set(connections.map((c) => c.id)));
});

test("workers 3: maxConnections caps the sessions of all threads together", async () => {
  if (SKIP) return;
  const rejects: RejectInfo[] = [];
  const server = await serveEcho({
    hostname: HOST,
    port: 0,
    transport: "tcp",
    workers: 3,
    maxConnections: 5,
    onReject: (info) => rejects.push(info),
  });
  const port = server.addr.port;
  const conns = await Promise.all(
    Array.from({ length: 12 }, () => Deno.connect({ hostname: HOST, port })),
  );
  try {
    // Each client sends a byte: the five served get it back, the rest are closed unanswered.
    const served = await Promise.all(conns.map(async (conn) => {
      try {
        await conn.write(new Uint8Array([7]));
        const got = new Uint8Array(1);
        return await conn.read(got) === 1 && got[0] === 7;
      } catch {
        return false; // reset by the server
      }
    }));
    assert.equal(served.filter(Boolean).length, 5);
  } finally {
    for (const conn of conns) conn.close();
  }
  await server.shutdown();
  assert.equal(server.stats.dropped.limit, 7);
  assert.equal(server.stats.sessionsTotal, 5);
  assert.equal(rejects.length, 7);
  assert.ok(rejects.every((r) => r.reason === "limit"));
});

test("workers: shutdown stops every thread; the port is free again", async () => {
  if (SKIP) return;
  const server = await serveEcho({ hostname: HOST, port: 0, transport: "tcp", workers: 4 });
  const port = server.addr.port;
  await echoTcp("before", { port });
  await server.shutdown();
  await server.finished;
  // Binding the port without reusePort succeeds only when no thread holds it any more.
  Deno.listen({ hostname: HOST, port }).close();
});

test("validateWorkers: counts, once and udp-only are refused with one-line errors", () => {
  assert.throws(() => validateWorkers(0), RangeError);
  assert.throws(() => validateWorkers(1.5), RangeError);
  validateWorkers(1, { once: true });
  if (SKIP) return;
  assert.throws(() => validateWorkers(2, { once: true }), /cannot serve once/);
  assert.throws(() => validateWorkers(2, { transport: "udp" }), /nothing for them to do/);
});

test("server.ts --workers 2 without unstable net: usage error (exit 2), nothing listens", async () => {
  const child = spawnServer(["--port", "0", "--workers", "2"], [
    "--allow-net",
    "--allow-read",
    "--no-config",
  ]);
  const { code, lines, stderr } = await childEnded(child);
  assert.equal(code, 2, stderr);
  assert.deepEqual(lines, []);
  assert.match(stderr, /--workers 2: .*unstable net/);
});

test("server.ts --workers 2 without --allow-read: a missing permission (exit 1, as every missing permission is), nothing listens", async () => {
  if (SKIP) return;
  const child = spawnServer(["--port", "0", "--workers", "2"]);
  const { code, lines, stderr } = await childEnded(child);
  assert.equal(code, 1, stderr);
  assert.deepEqual(lines, []);
  assert.match(
    stderr.trim(),
    /^server\.ts: permission denied: workers above 1 need --allow-read for \S+_worker_entry\.ts/,
  );
  assert.equal(stderr.trim().split("\n").length, 1, stderr);
});

test("server.ts --workers auto: serves, and a signal stops every thread", async () => {
  if (SKIP) return;
  const child = spawnServer(["--port", "0", "--workers", "auto", "--tcp"], [
    "--allow-net",
    "--allow-read",
  ]);
  const line = await child.stdout.next();
  const port = Number(/listening tcp 127\.0\.0\.1:(\d+)/.exec(line ?? "")?.[1]);
  assert.ok(port > 0, `ready line: ${line}`);
  for (let i = 0; i < 8; i++) await echoTcp(`hello ${i}`, { port });
  child.child.kill("SIGTERM");
  const { code, lines } = await childEnded(child);
  assert.equal(code, 0);
  assert.ok(lines.some((l) => /stopped: 8 TCP sessions/.test(l)), lines.join("\n"));
});
