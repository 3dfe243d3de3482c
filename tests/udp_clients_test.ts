/**
 * The UDP server under many clients at once: every datagram comes back whole and is counted once;
 * unref() and ref() change nothing a client can see (bench/README.md tells why the server keeps
 * one receive loop).
 *
 * @module
 */
import assert from "node:assert/strict";
import { Random, randomSeed } from "../_random.ts";
import type { RejectInfo } from "../serve.ts";
import { echoUdp, MAX_UDP_PAYLOAD, serveUdpEcho } from "../udp.ts";
import { randomBytes, randomInt, test } from "./_helpers.ts";

const SEED = Number(Deno.env.get("ECHO_TEST_SEED") ?? randomSeed());
const HOST = "127.0.0.1";

/** Sends `data` from `socket` and waits for the datagram that comes back. */
async function roundTrip(socket: Deno.DatagramConn, data: Uint8Array, port: number) {
  await socket.send(data, { transport: "udp", hostname: HOST, port });
  const [reply] = await socket.receive(new Uint8Array(65_536));
  return reply.slice();
}

test(`udp: 32 clients at once, 0 to 65,507 bytes, each reply exact (seed ${SEED})`, async () => {
  const rejected: RejectInfo[] = [];
  await using server = await serveUdpEcho({
    hostname: HOST,
    port: 0,
    backend: "deno",
    onReject: (info) => rejected.push(info),
  });
  const port = server.addr.port;
  // Largest and empty first, one at a time: 32 clients sending 64 KiB together could overflow
  // a socket buffer, and UDP would drop some (echoUdp would retry, but the counts would differ).
  const random = new Random(SEED);
  for (const size of [0, MAX_UDP_PAYLOAD]) {
    const data = randomBytes(size, random);
    assert.deepEqual((await echoUdp(data, { port, backend: "deno" })).reply, data);
  }
  const attempts = await Promise.all(Array.from({ length: 32 }, async (_, i) => {
    const random = new Random(SEED + 1 + i);
    let sent = 0;
    for (let round = 0; round < 8; round++) {
      const data = randomBytes(randomInt(random, 1, 3000), random);
      // echoUdp checks the reply byte for byte and throws on a mismatch.
      const result = await echoUdp(data, { port, backend: "deno", timeout: 2000, retries: 3 });
      sent += result.attempts;
    }
    return sent;
  }));
  const total = 2 + attempts.reduce((a, b) => a + b, 0);
  assert.ok(server.stats.datagramsIn >= 2 + 32 * 8 && server.stats.datagramsIn <= total);
  assert.equal(server.stats.datagramsOut, server.stats.datagramsIn);
  assert.equal(server.stats.bytesOut, server.stats.bytesIn);
  assert.deepEqual(rejected, []);
});

test("udp: unref() and ref() again leave the counters alone and keep serving", async () => {
  const rejected: RejectInfo[] = [];
  await using server = await serveUdpEcho({
    hostname: HOST,
    port: 0,
    backend: "deno",
    onReject: (info) => rejected.push(info),
  });
  const socket = Deno.listenDatagram({ hostname: HOST, port: 0, transport: "udp" });
  try {
    const one = new Uint8Array([1, 2, 3]);
    assert.deepEqual(await roundTrip(socket, one, server.addr.port), one);
    server.unref();
    server.ref();
    // The wake-ups are in flight or taken by now; whichever, a client's datagram is served.
    assert.deepEqual(await roundTrip(socket, one, server.addr.port), one);
    // An empty datagram from a client is a datagram like any other.
    assert.deepEqual(
      await roundTrip(socket, new Uint8Array(0), server.addr.port),
      new Uint8Array(0),
    );
  } finally {
    socket.close();
  }
  assert.equal(server.stats.datagramsIn, 3);
  assert.equal(server.stats.datagramsOut, 3);
  assert.deepEqual(rejected, []);
});
