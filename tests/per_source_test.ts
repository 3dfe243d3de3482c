/**
 * maxPerSource over real sockets on loopback: one source that opens more than its share is
 * refused at once and counted, while another source (127.0.0.2, bound with node:net's
 * `localAddress`) is still served; the default is on for a non-loopback bind and off on
 * loopback. SourceSlots' bookkeeping (IPv6 /64 grouping, entries removed at 0) is unit-tested.
 *
 * @module
 */
import assert from "node:assert/strict";
import net from "node:net";
import { DEFAULT_MAX_PER_SOURCE, defaultMaxPerSource, SourceSlots } from "../limits.ts";
import type { CloseInfo, ConnectionInfo, RejectInfo } from "../serve.ts";
import { serveTcpEcho } from "../tcp.ts";
import { readUntilClosed, Recorder, roundTrip, test, watchdog } from "./_helpers.ts";

const within = watchdog(10_000);

/** Connects from a chosen loopback source address and echoes one message through it. */
function echoFrom(localAddress: string, port: number, message: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = net.connect({ host: "127.0.0.1", port, localAddress });
    let reply = "";
    socket.setEncoding("utf8");
    socket.on("connect", () => socket.write(message));
    socket.on("data", (chunk) => {
      reply += chunk;
      if (reply.length >= message.length) {
        socket.end();
        resolve(reply);
      }
    });
    socket.on("error", reject);
    socket.on("close", () => reject(new Error(`closed after "${reply}"`)));
  });
}

test("maxPerSource: a source beyond N open sessions is closed at once and counted; another source is still served", async () => {
  const N = 4;
  const K = 3;
  const connections = new Recorder<ConnectionInfo>();
  const rejects = new Recorder<RejectInfo>();
  const closes = new Recorder<CloseInfo>();
  await using server = serveTcpEcho({
    port: 0,
    maxPerSource: N,
    onConnection: connections.push,
    onClose: closes.push,
    onReject: rejects.push,
  });
  const port = server.addr.port;
  const held: Deno.Conn[] = [];
  try {
    for (let i = 0; i < N; i++) held.push(await Deno.connect({ hostname: "127.0.0.1", port }));
    await within(connections.until((c) => c.length === N), `${N} sessions`);
    for (let i = 0; i < K; i++) {
      const extra = await Deno.connect({ hostname: "127.0.0.1", port });
      const ending = await within(readUntilClosed(extra), `refused connection ${i + 1} to close`);
      extra.close();
      assert.equal(ending.received.length, 0);
    }
    await within(rejects.until((r) => r.length === K), "onReject");
    assert.ok(rejects.items.every((r) => r.reason === "source" && r.transport === "tcp"));
    assert.equal(server.stats.dropped.source, K);
    assert.equal(server.stats.dropped.limit, 0);
    assert.equal(server.stats.sessionsOpen, N);

    // Another source is served while the first one is full.
    assert.equal(await within(echoFrom("127.0.0.2", port, "other"), "127.0.0.2's echo"), "other");
    // The first source's sessions are still served, and a closed one frees its slot.
    for (const [i, conn] of held.entries()) await roundTrip(conn, new Uint8Array([i, 7]));
    held.pop()!.close();
    // 127.0.0.2's session and the one just closed.
    await within(closes.until((c) => c.length === 2), "the closed session to end");
    const again = await Deno.connect({ hostname: "127.0.0.1", port });
    held.push(again);
    await roundTrip(again, new Uint8Array([9]));
    assert.equal(server.stats.dropped.source, K);
  } finally {
    for (const conn of held) conn.close();
  }
});

test("maxPerSource: default on for a non-loopback bind (64 per source), off on loopback", async () => {
  const rejects = new Recorder<RejectInfo>();
  const count = DEFAULT_MAX_PER_SOURCE + 6;
  for (const hostname of ["0.0.0.0", "127.0.0.1"]) {
    await using server = serveTcpEcho({ hostname, port: 0, onReject: rejects.push });
    const held: Deno.Conn[] = [];
    try {
      for (let i = 0; i < count; i++) {
        held.push(await Deno.connect({ hostname: "127.0.0.1", port: server.addr.port }));
      }
      // Each connection is either echoed or closed at once: nothing is left waiting.
      const served = await within(
        Promise.all(held.map(async (conn) => {
          try {
            await roundTrip(conn, new Uint8Array([1]));
            return 1;
          } catch {
            return 0;
          }
        })),
        `${count} connections on ${hostname}`,
      );
      const total = served.reduce((a: number, b) => a + b, 0);
      if (hostname === "0.0.0.0") {
        assert.equal(total, DEFAULT_MAX_PER_SOURCE);
        assert.equal(server.stats.dropped.source, count - DEFAULT_MAX_PER_SOURCE);
      } else {
        assert.equal(total, count);
        assert.equal(server.stats.dropped.source, 0);
      }
    } finally {
      for (const conn of held) conn.close();
    }
  }
  // maxPerSource: 0 turns the default off.
  await using open = serveTcpEcho({ hostname: "0.0.0.0", port: 0, maxPerSource: 0 });
  const held: Deno.Conn[] = [];
  try {
    for (let i = 0; i < count; i++) {
      held.push(await Deno.connect({ hostname: "127.0.0.1", port: open.addr.port }));
    }
    for (const conn of held) await within(roundTrip(conn, new Uint8Array([2])), "an echo");
    assert.equal(open.stats.dropped.source, 0);
  } finally {
    for (const conn of held) conn.close();
  }
});

test("maxPerSource: bad values are refused before anything listens", () => {
  assert.throws(() => serveTcpEcho({ port: 0, maxPerSource: -1 }), RangeError);
  assert.throws(() => serveTcpEcho({ port: 0, maxPerSource: 1.5 }), RangeError);
  assert.throws(() => serveTcpEcho({ port: 0, perSourcePrefix6: 129 }), {
    name: "RangeError",
    message: "perSourcePrefix6 must be a whole number from 0 to 128, got 129",
  });
});

Deno.test("SourceSlots: per address for IPv4 (mapped too), per /64 for IPv6, entries go at 0", () => {
  const slots = new SourceSlots({ max: 2 });
  assert.equal(slots.acquire("192.0.2.1"), "192.0.2.1");
  assert.equal(slots.acquire("::ffff:c000:201"), "192.0.2.1");
  assert.equal(slots.acquire("192.0.2.1"), undefined);
  assert.equal(slots.acquire("192.0.2.2"), "192.0.2.2");
  // Two addresses in one /64 are one source; another /64 is another.
  const a = slots.acquire("2001:db8:0:1::a");
  assert.equal(a, "2001:db8:0:1::/64");
  assert.equal(slots.acquire("2001:db8:0:1:ffff::b"), a);
  assert.equal(slots.acquire("2001:db8:0:1::c"), undefined);
  assert.equal(slots.acquire("2001:db8:0:2::a"), "2001:db8:0:2::/64");
  assert.equal(slots.held("2001:db8:0:1::77"), 2);
  assert.equal(slots.size, 4);
  // Released to 0, an entry is removed: the table never outgrows the open sessions.
  for (const key of ["192.0.2.1", "192.0.2.1", "192.0.2.2", a!, a!, "2001:db8:0:2::/64"]) {
    slots.release(key);
  }
  assert.equal(slots.size, 0);
  slots.release("192.0.2.1"); // an extra release is harmless
  assert.equal(slots.held("192.0.2.1"), 0);
  // prefix6 128: every IPv6 address is its own source.
  const exact = new SourceSlots({ max: 1, prefix6: 128 });
  assert.ok(exact.acquire("2001:db8::1"));
  assert.ok(exact.acquire("2001:db8::2"));
  assert.equal(exact.acquire("2001:db8::1"), undefined);
  // Many sources, each released: bounded.
  const many = new SourceSlots({ max: 1 });
  for (let i = 0; i < 10_000; i++) many.release(many.acquire(`10.0.${i >> 8}.${i & 255}`)!);
  assert.equal(many.size, 0);
  assert.throws(() => new SourceSlots({ max: 0 }), RangeError);
  assert.throws(() => new SourceSlots({ max: 2, prefix6: -1 }), RangeError);
});

Deno.test("defaultMaxPerSource: off on loopback binds, on elsewhere", () => {
  for (const host of ["127.0.0.1", "127.1.2.3", "::1", "::ffff:127.0.0.1", "localhost"]) {
    assert.equal(defaultMaxPerSource(host), undefined, host);
  }
  for (const host of ["0.0.0.0", "::", "192.0.2.1", "2001:db8::1"]) {
    assert.equal(defaultMaxPerSource(host), DEFAULT_MAX_PER_SOURCE, host);
  }
});
