/**
 * The guards of a server that is safe to expose, each proven over real sockets on loopback: the
 * connection cap, the idle timeout, the per-session byte and time caps, the UDP per-source rate
 * limit, the loop and reflection guard, and the allow-list (dual-stack included), on both UDP
 * backends. Waits are on real events (a hook, a read returning null, an echoed datagram); a
 * watchdog turns a lost event into a failure instead of a hang.
 *
 * @module
 */
import assert from "node:assert/strict";
import { createStats } from "../stats.ts";
import { DatagramPolicy } from "../_policy.ts";
import { Random, randomSeed } from "../_random.ts";
import { DEFAULT_LIMITS } from "../limits.ts";
import type { CloseInfo, ConnectionInfo, DatagramInfo, RejectInfo } from "../serve.ts";
import { serveEcho } from "../serve.ts";
import { echoTcp, serveTcpEcho } from "../tcp.ts";
import { echoUdp, serveUdpEcho } from "../udp.ts";
import {
  HAS_IPV6,
  randomBytes,
  readUntilClosed,
  Recorder,
  roundTrip,
  test,
  watchdog,
} from "./_helpers.ts";

const SEED = Number(Deno.env.get("ECHO_TEST_SEED") ?? randomSeed());
const HOST = "127.0.0.1";
const BACKENDS = ["deno", "node"] as const;
/** Longest wait for an event that should come at once; reaching it fails the test. */
const WATCHDOG_MS = 10_000;

const within = watchdog(WATCHDOG_MS);

function connect(port: number, hostname = HOST): Promise<Deno.TcpConn> {
  return Deno.connect({ hostname, port });
}

async function writeAll(conn: Deno.Conn, data: Uint8Array): Promise<void> {
  for (let written = 0; written < data.length;) written += await conn.write(data.subarray(written));
}

function udpSocket(hostname = HOST): Deno.DatagramConn {
  return Deno.listenDatagram({ hostname, port: 0, transport: "udp" });
}

function portOf(socket: Deno.DatagramConn | Deno.Listener): number {
  return (socket.addr as Deno.NetAddr).port;
}

function to(port: number, hostname = HOST): Deno.NetAddr {
  return { transport: "udp", hostname, port };
}

/** Receives one datagram (with the watchdog). */
async function receive(socket: Deno.DatagramConn): Promise<[Uint8Array, Deno.NetAddr]> {
  const [data, from] = await within(socket.receive(), `a datagram on port ${portOf(socket)}`);
  return [data, from as Deno.NetAddr];
}

const MARKER = new TextEncoder().encode("marker");

/**
 * Proves `socket` was sent nothing so far: a bystander sends a marker straight to it, and the
 * marker must be the first datagram in its queue. Call it once the server is provably done with
 * the datagram that must go unanswered (a later datagram was handled: the server serves them in
 * order and awaits each send), so a reply would already be queued ahead of the marker.
 */
async function assertNothingReceived(socket: Deno.DatagramConn, context: string): Promise<void> {
  const bystander = udpSocket((socket.addr as Deno.NetAddr).hostname);
  try {
    await bystander.send(MARKER, socket.addr);
    const [data, from] = await receive(socket);
    assert.equal(
      from.port,
      portOf(bystander),
      `${context}: a datagram of ${data.length} bytes from port ${from.port} came first`,
    );
    assert.deepEqual(data, MARKER);
  } finally {
    bystander.close();
  }
}

const bytes = (...values: number[]) => new Uint8Array(values);

test("maxConnections: beyond N open sessions a new one is closed at once and counted; the N are still served", async () => {
  const N = 3;
  const connections = new Recorder<ConnectionInfo>();
  const closes = new Recorder<CloseInfo>();
  const rejects = new Recorder<RejectInfo>();
  await using server = serveTcpEcho({
    port: 0,
    maxConnections: N,
    onConnection: connections.push,
    onClose: closes.push,
    onReject: rejects.push,
  });
  const port = server.addr.port;
  const held: Deno.Conn[] = [];
  try {
    for (let i = 0; i < N; i++) held.push(await connect(port));
    await within(connections.until((c) => c.length === N), `${N} sessions`);

    const extra = await connect(port);
    const ending = await within(readUntilClosed(extra), "the refused session to close");
    const extraPort = (extra.localAddr as Deno.NetAddr).port;
    extra.close();
    assert.equal(ending.received.length, 0);
    await within(rejects.until((r) => r.length === 1), "onReject");
    assert.equal(rejects.items[0].reason, "limit");
    assert.equal(rejects.items[0].transport, "tcp");
    assert.equal(rejects.items[0].remoteAddr.port, extraPort);
    assert.equal(server.stats.dropped.limit, 1);
    assert.equal(server.stats.sessionsOpen, N);
    assert.equal(server.stats.sessionsTotal, N);

    // The N sessions keep being served.
    for (const [i, conn] of held.entries()) await roundTrip(conn, bytes(i, 1, 2, 3));

    // A session that ends frees its place for the next client.
    held.pop()!.close();
    await within(closes.until((c) => c.length === 1), "onClose");
    const next = await connect(port);
    held.push(next);
    await roundTrip(next, bytes(9, 9));
    assert.equal(server.stats.dropped.limit, 1);
    assert.equal(connections.items.length, N + 1);
  } finally {
    for (const conn of held) conn.close();
  }
});

test("idleTimeout: a silent session is closed after about the timeout; one with traffic every 30 ms is not", async () => {
  const IDLE = 100;
  const connections = new Recorder<ConnectionInfo>();
  const closes = new Recorder<CloseInfo>();
  await using server = serveTcpEcho({
    port: 0,
    idleTimeout: IDLE,
    onConnection: connections.push,
    onClose: closes.push,
  });
  const port = server.addr.port;
  const start = performance.now(); // before the connect, so never later than the session start
  const silent = await connect(port);
  const active = await connect(port);
  try {
    await within(connections.until((c) => c.length === 2), "2 sessions");
    const activeId = connections.items.find((c) =>
      c.remoteAddr.port === (active.localAddr as Deno.NetAddr).port
    )!.id;
    // The active client sends a byte every 30 ms for 300 ms (three idle timeouts).
    const activity = (async () => {
      for (let i = 0; i < 10; i++) {
        await roundTrip(active, bytes(i));
        await new Promise((resolve) => setTimeout(resolve, 30));
      }
    })();
    const ending = await within(readUntilClosed(silent), "the silent session to close");
    const closedAfter = performance.now() - start;
    assert.equal(ending.end, "eof");
    assert.ok(closedAfter >= IDLE, `closed after ${closedAfter.toFixed(1)}ms, before the timeout`);
    assert.ok(closedAfter < 10 * IDLE, `closed only after ${closedAfter.toFixed(1)}ms`);
    await within(activity, "the active client's 10 round trips");
    await roundTrip(active, bytes(42)); // still open after 300 ms
    assert.deepEqual(closes.items.map((c) => c.reason), ["idle"]);
    assert.notEqual(closes.items[0].id, activeId);
    assert.equal(server.stats.dropped.idle, 1);
    assert.equal(server.stats.sessionsOpen, 1);
  } finally {
    silent.close();
    active.close();
  }
  await within(closes.until((c) => c.length === 2), "the active session to end");
  assert.equal(closes.items[1].reason, "eof");
  assert.equal(server.stats.dropped.idle, 1);
});

for (const shaped of [false, true]) {
  const how = shaped ? " (TCP shaping on)" : "";
  test(`maxSessionBytes${how}: exactly N bytes are echoed, then the session closes with reason "limit"`, async () => {
    const CAP = 1000;
    const random = new Random(SEED);
    const closes = new Recorder<CloseInfo>();
    await using server = serveTcpEcho({
      port: 0,
      maxSessionBytes: CAP,
      impair: shaped ? { delay: 2 } : undefined,
      onClose: closes.push,
    });
    // A client that sends exactly the cap, and one that sends five times as much at once.
    for (const size of [CAP, 5 * CAP]) {
      const data = randomBytes(size, random);
      const conn = await connect(server.addr.port);
      try {
        await writeAll(conn, data);
        const { received } = await within(readUntilClosed(conn), "the capped session to close");
        const context = `seed ${SEED}: ${size} bytes sent, ${received.length} echoed`;
        assert.equal(received.length, CAP, context);
        assert.deepEqual(received, data.subarray(0, CAP), context);
      } finally {
        conn.close();
      }
    }
    await within(closes.until((c) => c.length === 2), "onClose");
    assert.deepEqual(closes.items.map((c) => [c.reason, c.bytes]), [["limit", CAP], [
      "limit",
      CAP,
    ]]);
    assert.equal(server.stats.bytesOut, 2 * CAP);
  });
}

test('maxSessionTime: a session is closed after the cap even while it is busy (reason "limit")', async () => {
  const CAP = 150;
  const closes = new Recorder<CloseInfo>();
  await using server = serveTcpEcho({ port: 0, maxSessionTime: CAP, onClose: closes.push });
  const start = performance.now();
  const conn = await connect(server.addr.port);
  let roundTrips = 0;
  try {
    // Busy: a round trip every 20 ms until the server ends the session.
    await within(
      (async () => {
        for (;;) {
          try {
            await roundTrip(conn, bytes(roundTrips & 0xff));
          } catch (error) {
            if (
              error instanceof Deno.errors.ConnectionReset ||
              error instanceof Deno.errors.BrokenPipe ||
              /closed after/.test(String(error))
            ) return;
            throw error;
          }
          roundTrips++;
          await new Promise((resolve) => setTimeout(resolve, 20));
        }
      })(),
      "the session to be closed",
    );
  } finally {
    conn.close();
  }
  const lasted = performance.now() - start;
  await within(closes.until((c) => c.length === 1), "onClose");
  assert.equal(closes.items[0].reason, "limit");
  assert.ok(closes.items[0].duration >= CAP, `closed after ${closes.items[0].duration}ms`);
  assert.ok(lasted < 10 * CAP, `closed only after ${lasted.toFixed(1)}ms`);
  assert.ok(roundTrips >= 2, `only ${roundTrips} round trips`);
  // Neither an idle close nor a refusal.
  assert.deepEqual(server.stats.dropped, createStats().dropped);
});

/** A second loopback source address (Linux routes all of 127.0.0.0/8 to lo; macOS does not). */
const OTHER_HOST = "127.0.0.2";
const HAS_OTHER_HOST = (() => {
  try {
    udpSocket(OTHER_HOST).close();
    return true;
  } catch {
    return false;
  }
})();

for (const backend of BACKENDS) {
  test(
    `udpRate (${backend}): a burst above rate + burst from one source is cut and counted; another source is unaffected`,
    async () => {
      const RATE = 20; // the burst is one second's worth: 20
      const SENT = 100;
      const handled = new Recorder<DatagramInfo | RejectInfo>();
      await using server = await serveUdpEcho({
        port: 0,
        backend,
        udpRate: RATE,
        // The payload is a view into the server's reused buffer: keep a copy.
        onDatagram: (info) => handled.push({ ...info, data: info.data.slice() }),
        onReject: handled.push,
      });
      const target = to(server.addr.port);
      const flooder = udpSocket();
      const other = udpSocket(OTHER_HOST); // buckets are per source address, not per port
      try {
        const start = performance.now();
        for (let i = 0; i < SENT; i++) await flooder.send(bytes(i), target);
        await within(handled.until((h) => h.length === SENT), `${SENT} datagrams handled`);
        const elapsed = performance.now() - start;
        const refused = handled.items.filter((h) => "reason" in h);
        const answered = SENT - refused.length;
        assert.ok(refused.every((r) => (r as RejectInfo).reason === "rate"));
        assert.equal(server.stats.dropped.rate, refused.length);
        assert.ok(refused.length > 0, "nothing was dropped");
        assert.ok(answered >= RATE, `only ${answered} answered: less than the burst`);
        const allowed = RATE + Math.ceil((RATE * elapsed) / 1000);
        assert.ok(answered <= allowed, `${answered} answered in ${elapsed.toFixed(1)}ms`);

        // Another source has its own bucket.
        for (let i = 0; i < RATE; i++) {
          await other.send(bytes(i), target);
          const [reply, from] = await receive(other);
          assert.deepEqual(reply, bytes(i));
          assert.equal(from.port, server.addr.port);
        }
        assert.equal(server.stats.dropped.rate, refused.length);

        // The flooder got exactly the answered ones back, in order, and nothing for the rest.
        const echoed = handled.items.slice(0, SENT)
          .filter((h): h is DatagramInfo => "data" in h).map((h) => h.data[0]);
        for (const value of echoed) assert.deepEqual((await receive(flooder))[0], bytes(value));
        await assertNothingReceived(flooder, "flooder");
      } finally {
        flooder.close();
        other.close();
      }
    },
    { ignore: !HAS_OTHER_HOST },
  );
}

test("udpRate default: 1000/s per source on non-loopback binds (0.0.0.0, ::), off on loopback", () => {
  const check = (bind: string, options: { udpRate?: number } = {}, times = 1500) => {
    const policy = new DatagramPolicy({ ...options, loopGuard: false }, to(5006, bind));
    let refused = 0;
    for (let i = 0; i < times; i++) {
      const verdict = policy.check("192.0.2.1", 40000);
      if (verdict === "rate") refused++;
      else assert.equal(verdict, undefined);
    }
    return { refused, policy };
  };
  assert.equal(DEFAULT_LIMITS.udpRate, 1000);
  for (const bind of ["0.0.0.0", "::", "192.0.2.7"]) {
    // 1500 checks take well under 100 ms: the 1000-token burst and little refill pass.
    const { refused, policy } = check(bind);
    assert.ok(refused >= 400 && refused <= 500, `${bind}: ${refused} refused of 1500`);
    assert.equal(policy.check("192.0.2.2", 40000), undefined, `${bind}: a second source`);
    assert.equal(policy.active, true);
    assert.equal(check(bind, { udpRate: 0 }).refused, 0, `${bind} with udpRate 0`);
  }
  for (const bind of ["127.0.0.1", "::1", "127.1.2.3"]) {
    const { refused, policy } = check(bind, {}, 5000);
    assert.equal(refused, 0, bind);
    assert.equal(policy.active, false, `${bind}: no stage at all with the guard off`);
    assert.ok(check(bind, { udpRate: 10 }).refused >= 1400, `${bind} with udpRate 10`);
  }
});

test("udpRate default on a real 0.0.0.0 bind: one source sending 2,500 datagrams at once is cut near 1000", async () => {
  // Only 127.0.0.1 is sent to. Batches of 100 stay well within a socket's receive buffer.
  const SENT = 2500;
  const BATCH = 100;
  const handled = new Recorder<DatagramInfo | RejectInfo>();
  await using server = await serveUdpEcho({
    hostname: "0.0.0.0",
    port: 0,
    onDatagram: handled.push,
    onReject: handled.push,
  });
  const socket = udpSocket();
  try {
    const target = to(server.addr.port);
    const start = performance.now();
    for (let sent = 0; sent < SENT;) {
      for (let i = 0; i < BATCH; i++, sent++) await socket.send(bytes(i), target);
      const expected = sent;
      await within(handled.until((h) => h.length === expected), `${expected} datagrams handled`);
    }
    const elapsed = performance.now() - start;
    const refused = server.stats.dropped.rate;
    assert.ok(refused > 0, `nothing refused in ${elapsed.toFixed(1)}ms`);
    const answered = SENT - refused;
    assert.ok(answered >= 1000, `${answered} answered: less than the burst`);
    assert.ok(
      answered <= 1000 + Math.ceil(elapsed) + 1,
      `${answered} answered in ${elapsed.toFixed(1)}ms`,
    );
  } finally {
    socket.close();
  }
});

for (const backend of BACKENDS) {
  test(`loop guard (${backend}): a blocked source port is not answered and is counted; loopGuard: false answers it`, async () => {
    const rejects = new Recorder<RejectInfo>();
    const looping = udpSocket(); // stands in for a chargen or echo port, which needs root
    const blockedPort = portOf(looping);
    const bystander = udpSocket();
    try {
      {
        await using server = await serveUdpEcho({
          port: 0,
          backend,
          loopGuard: { blockedPorts: [blockedPort] },
          onReject: rejects.push,
        });
        const target = to(server.addr.port);
        await looping.send(bytes(1, 2, 3), target);
        await within(rejects.until((r) => r.length === 1), "onReject");
        assert.deepEqual(
          { ...rejects.items[0], remoteAddr: { ...rejects.items[0].remoteAddr } },
          {
            transport: "udp",
            reason: "guard",
            detail: "blocked-port",
            remoteAddr: { transport: "udp", hostname: HOST, port: blockedPort },
          },
        );
        // A later datagram from an allowed port is answered, so the server is done with the first.
        await bystander.send(bytes(4), target);
        assert.deepEqual((await receive(bystander))[0], bytes(4));
        await assertNothingReceived(looping, "blocked port");
        assert.equal(server.stats.dropped.guard, 1);
        assert.equal(server.stats.datagramsIn, 2);
        assert.equal(server.stats.datagramsOut, 1);
      }
      {
        await using server = await serveUdpEcho({ port: 0, backend, loopGuard: false });
        await looping.send(bytes(5, 6), to(server.addr.port));
        const [reply, from] = await receive(looping);
        assert.deepEqual(reply, bytes(5, 6));
        assert.equal(from.port, server.addr.port);
        assert.equal(server.stats.dropped.guard, 0);
      }
    } finally {
      looping.close();
      bystander.close();
    }
  });
}

test("loop guard: on by default with the inetd ports and the server's own port; what the socket tests cannot fake", () => {
  // Sources with port 0, broadcast or multicast cannot be produced from userland on loopback;
  // the policy that the servers consult is checked directly (LoopGuard's own table is tested in
  // loop_guard_test.ts).
  const policy = new DatagramPolicy({}, to(7007, "0.0.0.0"));
  const cases: [string, number, string | undefined][] = [
    ["192.0.2.1", 0, "port-zero"],
    ["192.0.2.1", 19, "blocked-port"],
    ["192.0.2.1", 7007, "blocked-port"], // our own port: two of us would echo each other forever
    ["255.255.255.255", 40000, "broadcast"],
    ["::ffff:224.0.0.251", 40000, "multicast"],
    ["ff02::1", 40000, "multicast"],
    ["0.0.0.0", 40000, "unspecified"],
  ];
  for (const [host, port, detail] of cases) {
    assert.equal(policy.check(host, port), "guard", `${host}:${port}`);
    assert.equal(policy.detail, detail, `${host}:${port}`);
  }
  assert.equal(policy.check("192.0.2.1", 40000), undefined);
  // The guard comes before the allow-list and the rate limit, so a looping source never spends
  // a token, and a refused-by-acl source is reported as acl.
  const all = new DatagramPolicy({ allow: ["192.0.2.0/24"], udpRate: 1 }, to(7007, "0.0.0.0"));
  assert.equal(all.check("192.0.2.1", 7), "guard");
  assert.equal(all.check("198.51.100.1", 40000), "acl");
  assert.equal(all.check("192.0.2.1", 40000), undefined);
  assert.equal(all.check("192.0.2.1", 40000), "rate");
  // An object replaces the blocked set; false turns the guard off (port 0 aside, nothing else).
  const custom = new DatagramPolicy({ loopGuard: { blockedPorts: [4500] } }, to(7007, HOST));
  assert.equal(custom.check("127.0.0.1", 19), undefined);
  assert.equal(custom.check("127.0.0.1", 4500), "guard");
  assert.equal(custom.check("127.0.0.1", 7007), "guard");
  assert.equal(
    new DatagramPolicy({ loopGuard: false }, to(7007, HOST)).check("127.0.0.1", 19),
    undefined,
  );
});

test("allow (tcp): a source outside the list is closed at once and counted; inside it is served", async () => {
  const rejects = new Recorder<RejectInfo>();
  const connections = new Recorder<ConnectionInfo>();
  {
    await using server = serveTcpEcho({
      port: 0,
      allow: ["10.0.0.0/8"],
      onReject: rejects.push,
      onConnection: connections.push,
    });
    const conn = await connect(server.addr.port);
    const ending = await within(readUntilClosed(conn), "the refused connection to close");
    conn.close();
    assert.equal(ending.received.length, 0);
    await within(rejects.until((r) => r.length === 1), "onReject");
    assert.equal(rejects.items[0].reason, "acl");
    assert.equal(server.stats.dropped.acl, 1);
    assert.equal(server.stats.sessionsTotal, 0);
    assert.equal(connections.items.length, 0);
  }
  {
    await using server = serveTcpEcho({ port: 0, allow: ["10.0.0.0/8", "127.0.0.0/8"] });
    const { reply } = await echoTcp("inside", { port: server.addr.port });
    assert.equal(new TextDecoder().decode(reply), "inside");
    assert.equal(server.stats.dropped.acl, 0);
  }
});

for (const backend of BACKENDS) {
  test(`allow (udp, ${backend}): a source outside the list is ignored and counted; inside it is served`, async () => {
    const rejects = new Recorder<RejectInfo>();
    const socket = udpSocket();
    try {
      {
        await using server = await serveUdpEcho({
          port: 0,
          backend,
          allow: ["10.0.0.0/8"],
          onReject: rejects.push,
        });
        const target = to(server.addr.port);
        // Two datagrams: once the second is refused, the server is done with the first.
        await socket.send(bytes(1), target);
        await socket.send(bytes(2), target);
        await within(rejects.until((r) => r.length === 2), "2 refusals");
        assert.ok(rejects.items.every((r) => r.reason === "acl" && r.transport === "udp"));
        await assertNothingReceived(socket, "outside the allow-list");
        assert.equal(server.stats.dropped.acl, 2);
        assert.equal(server.stats.datagramsOut, 0);
      }
      {
        await using server = await serveUdpEcho({ port: 0, backend, allow: ["127.0.0.0/8"] });
        await socket.send(bytes(3), to(server.addr.port));
        assert.deepEqual((await receive(socket))[0], bytes(3));
        assert.equal(server.stats.dropped.acl, 0);
      }
    } finally {
      socket.close();
    }
  });
}

/** Whether a `::` bind here also accepts IPv4 clients (not so when net.ipv6.bindv6only is 1). */
async function dualStack(): Promise<boolean> {
  let listener: Deno.Listener;
  try {
    listener = Deno.listen({ hostname: "::", port: 0 });
  } catch {
    return false;
  }
  const accepted = listener.accept().then((conn) => conn.close(), () => {});
  try {
    (await connect(portOf(listener))).close();
    await accepted;
    return true;
  } catch {
    return false;
  } finally {
    listener.close();
    await accepted;
  }
}

const DUAL_STACK = await dualStack();

for (const backend of BACKENDS) {
  test(
    `allow on a dual-stack :: bind (${backend}): IPv4 clients arrive as ::ffff:127.0.0.1 and match 127.0.0.1/32`,
    async () => {
      const connections = new Recorder<ConnectionInfo>();
      const datagrams = new Recorder<DatagramInfo>();
      const rejects = new Recorder<RejectInfo>();
      await using server = await serveEcho({
        hostname: "::",
        port: 0,
        backend,
        allow: ["127.0.0.1/32"],
        onConnection: connections.push,
        onDatagram: datagrams.push,
        onReject: rejects.push,
      });
      const port = server.addr.port;
      await echoTcp("v4 over tcp", { port });
      await echoUdp("v4 over udp", { port, retries: 0 });
      assert.equal(connections.items[0].remoteAddr.hostname, "::ffff:127.0.0.1");
      assert.equal(datagrams.items[0].remoteAddr.hostname, "::ffff:127.0.0.1");
      assert.equal(server.stats.dropped.acl, 0);
      if (HAS_IPV6) {
        // ::1 is not in 127.0.0.1/32: refused on both transports.
        const conn = await connect(port, "::1");
        const ending = await within(readUntilClosed(conn), "the refused ::1 connection to close");
        conn.close();
        assert.equal(ending.received.length, 0);
        const socket = udpSocket("::1");
        try {
          await socket.send(bytes(1), to(port, "::1"));
          await socket.send(bytes(2), to(port, "::1"));
          await within(rejects.until((r) => r.length === 3), "3 refusals");
          assert.deepEqual(rejects.items.map((r) => [r.transport, r.reason]).sort(), [
            ["tcp", "acl"],
            ["udp", "acl"],
            ["udp", "acl"],
          ]);
          await assertNothingReceived(socket, "::1 outside the allow-list");
        } finally {
          socket.close();
        }
        assert.equal(server.stats.dropped.acl, 3);
      }
    },
    { ignore: !DUAL_STACK },
  );
}
