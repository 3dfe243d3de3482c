/**
 * The echo-of-an-echo loop over real sockets on loopback: a test socket plays a second echo
 * service (it sends every datagram it gets straight back), one datagram starts the two talking,
 * and the server must stop answering after a bounded number of bounces, counting it as `loop`.
 * Clients whose datagrams differ (a sequence number, as every probe sends) are never counted,
 * however fast. BounceDetector's rules are unit-tested with an injected clock.
 *
 * @module
 */
import assert from "node:assert/strict";
import { BounceDetector, DEFAULT_BOUNCES } from "../loop_guard.ts";
import type { RejectInfo, UdpEchoOptions } from "../serve.ts";
import { serveUdpEcho } from "../udp.ts";
import { Recorder, test, watchdog } from "./_helpers.ts";

const within = watchdog(10_000);
/** The old server bounced forever; the test's echo peer stops here so the test stays bounded. */
const PEER_LIMIT = 20_000;

/** A UDP echo server on loopback recording its refusals, and a client socket aimed at it. */
async function serverAndSocket(options: UdpEchoOptions) {
  const rejects = new Recorder<RejectInfo>();
  const server = await serveUdpEcho({ port: 0, ...options, onReject: rejects.push });
  const socket = Deno.listenDatagram({ hostname: "127.0.0.1", port: 0, transport: "udp" });
  const target: Deno.NetAddr = { transport: "udp", hostname: "127.0.0.1", port: server.addr.port };
  return {
    rejects,
    server,
    socket,
    target,
    async [Symbol.asyncDispose]() {
      try {
        socket.close();
      } catch {
        // closed by the test
      }
      await server.shutdown();
    },
  };
}

for (const backend of ["deno", "node"] as const) {
  test(`echo loop (${backend}): one datagram between the server and another echo service stops after ${DEFAULT_BOUNCES} bounces`, async () => {
    await using setup = await serverAndSocket({ backend });
    const { rejects, server, socket: peer, target } = setup;
    let bounces = 0;
    const echoing = (async () => {
      await peer.send(new TextEncoder().encode("spoofed: who echoes first?"), target);
      while (bounces < PEER_LIMIT) {
        const [data] = await peer.receive();
        bounces++;
        await peer.send(data, target);
      }
    })();
    echoing.catch(() => {}); // ends when the peer is closed below
    try {
      await within(
        rejects.until((r) => r.some((x) => x.reason === "loop")),
        `the loop to be detected (${bounces} bounces so far)`,
      );
      const dropped = rejects.items.filter((x) => x.reason === "loop");
      assert.equal(dropped.length, 1, "one datagram was circulating; dropping it ends the loop");
      assert.equal(dropped[0].remoteAddr.port, (peer.addr as Deno.NetAddr).port);
      assert.equal(server.stats.dropped.loop, 1);
      // The server answered the first datagram and then DEFAULT_BOUNCES - 1 quick returns (more
      // only if this machine stalled for longer than the 10 ms window in between).
      assert.ok(server.stats.datagramsOut >= DEFAULT_BOUNCES, `${server.stats.datagramsOut} out`);
      assert.ok(bounces < PEER_LIMIT, `${bounces} bounces`);
    } finally {
      peer.close();
      await echoing.catch(() => {});
    }
  });
}

test("echo loop: a fast client whose datagrams differ is never counted; bounce: false turns it off", async () => {
  // The window is wide here so that a stall of this machine cannot reset the count.
  const on = { bounce: { window: 5_000 } };
  for (const loopGuard of [on, { bounce: false as const }]) {
    await using setup = await serverAndSocket({ loopGuard });
    const { rejects, server, socket, target } = setup;
    const refused = rejects.until((r) => r.length > 0).then(() => undefined);
    let pending: Promise<unknown> | undefined;
    try {
      // 500 round trips as fast as they go with distinct payloads (a counter), then up to 500
      // with one payload repeated, which is a loop to the detector when it is on.
      const same = new Uint8Array(64).fill(7);
      let answered = 0;
      for (let i = 0; i < 1000; i++) {
        await socket.send(i < 500 ? new TextEncoder().encode(`probe ${i}`) : same, target);
        pending = socket.receive();
        const got = await within(Promise.race([pending, refused]), `the echo of datagram ${i}`);
        if (got === undefined) break;
        pending = undefined;
        answered++;
      }
      if (loopGuard === on) {
        assert.deepEqual(rejects.items.map((r) => r.reason), ["loop"]);
        // The first repeat starts the count; DEFAULT_BOUNCES more are answered.
        assert.equal(answered, 500 + 1 + DEFAULT_BOUNCES);
      } else {
        assert.equal(answered, 1000);
        assert.equal(server.stats.dropped.loop, 0);
      }
    } finally {
      socket.close();
      await pending?.catch(() => {});
    }
  }
});

Deno.test("BounceDetector: counts quick identical returns per source; a pause, other bytes or another source start again", () => {
  const encode = (text: string) => new TextEncoder().encode(text);
  let now = 0;
  const clock = () => now;
  const at = (t: number, detector: BounceDetector, host: string, port: number, d: Uint8Array) => (
    now = t, detector.check(host, port, d)
  );
  const detector = new BounceDetector({ bounces: 3, window: 10, clock });
  const p = encode("payload");
  // The first datagram is new, the first repeat starts the clock, then three quick returns.
  const verdicts = [0, 5, 10, 15, 20, 25].map((t) => at(t, detector, "10.0.0.1", 5007, p));
  assert.deepEqual(verdicts, [false, false, false, false, true, true]);
  // A pause longer than the window starts again.
  assert.equal(at(36, detector, "10.0.0.1", 5007, p), false);
  for (let t = 37; t < 40; t++) at(t, detector, "10.0.0.1", 5007, p);
  assert.equal(at(40, detector, "10.0.0.1", 5007, p), true);
  // Other bytes (of the same length) start again.
  assert.equal(at(41, detector, "10.0.0.1", 5007, encode("PAYLOAD")), false);
  // Another source (port or address) has its own count.
  assert.equal(at(42, detector, "10.0.0.1", 5008, p), false);
  assert.equal(at(43, detector, "10.0.0.2", 5007, p), false);
  // Distinct payloads never read the clock.
  let reads = 0;
  const counting = new BounceDetector({ clock: () => (reads++, 0) });
  for (let i = 0; i < 100; i++) counting.check("10.0.0.1", 5007, encode(`probe ${i}`));
  assert.equal(reads, 0);
  // Large payloads: sampled, and a change in a sampled byte or the length is seen.
  const big = new Uint8Array(65_507);
  const d2 = new BounceDetector({ bounces: 2, window: 10, clock });
  assert.deepEqual([0, 1, 2, 3].map((t) => at(t, d2, "::1", 9999, big)), [
    false,
    false,
    false,
    true,
  ]);
  assert.equal(at(4, d2, "::1", 9999, big.subarray(1)), false);
  const changed = big.slice();
  changed[0] = 1;
  assert.equal(at(5, d2, "::1", 9999, changed), false);
  assert.throws(() => new BounceDetector({ bounces: 0 }), RangeError);
  assert.throws(() => new BounceDetector({ window: -1 }), RangeError);
});
