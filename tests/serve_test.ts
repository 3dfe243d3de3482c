import assert from "node:assert/strict";
import { EchoConnectionError, EchoError } from "../errors.ts";
import type { CloseInfo, ConnectionInfo, DatagramInfo, ListenInfo } from "../serve.ts";
import {
  DEFAULT_GRACE_PERIOD,
  describeListener,
  serveEcho,
  validateServeOptions,
} from "../serve.ts";
import { echoWs } from "../ws.ts";
import { echoTcp } from "../tcp.ts";
import { echoUdp, serveUdpEcho } from "../udp.ts";
import { readUntilClosed, Recorder, runEval, takeUdpPortWithFreeTcp, test } from "./_helpers.ts";

const HOST = "127.0.0.1";
const decoder = new TextDecoder();
const encoder = new TextEncoder();

/** Whether nothing listens for TCP on the port any more. */
async function tcpRefused(port: number): Promise<boolean> {
  try {
    (await Deno.connect({ hostname: HOST, port })).close();
    return false;
  } catch (error) {
    if (error instanceof Deno.errors.ConnectionRefused) return true;
    throw error;
  }
}

/**
 * Whether a new TCP client goes unserved: refused, or (when it reached the backlog of a listener
 * that is being closed, whose descriptor Deno releases a moment later) reset or closed unanswered.
 */
async function tcpNotServed(port: number): Promise<boolean> {
  let conn: Deno.TcpConn;
  try {
    conn = await Deno.connect({ hostname: HOST, port });
  } catch (error) {
    if (error instanceof Deno.errors.ConnectionRefused) return true;
    if (error instanceof Deno.errors.ConnectionReset) return true;
    throw error;
  }
  try {
    await conn.write(encoder.encode("anyone?"));
    const { received } = await readUntilClosed(conn);
    return received.length === 0;
  } catch (error) {
    if (error instanceof Deno.errors.ConnectionReset) return true;
    if (error instanceof Deno.errors.BrokenPipe) return true;
    throw error;
  } finally {
    conn.close();
  }
}

/** Whether the UDP port is free again (a socket can bind it). */
function udpFree(port: number): boolean {
  try {
    Deno.listenDatagram({ hostname: HOST, port, transport: "udp" }).close();
    return true;
  } catch (error) {
    if (error instanceof Deno.errors.AddrInUse) return false;
    throw error;
  }
}

test("serveEcho: TCP and UDP share one port picked with port 0", async () => {
  await using server = await serveEcho({ port: 0 });
  const { port } = server.addr;
  assert.ok(port > 0);
  assert.equal(server.addr.hostname, HOST);
  assert.deepEqual(
    server.listeners.map((l) => [l.transport, l.hostname, l.port]),
    [["tcp", HOST, port], ["udp", HOST, port]],
  );
  assert.ok(server.listeners[1].backend === "deno" || server.listeners[1].backend === "node");
  assert.equal(describeListener(server.listeners[0]), `tcp 127.0.0.1:${port}`);
  assert.equal(decoder.decode((await echoTcp("over tcp", { port })).reply), "over tcp");
  assert.equal(decoder.decode((await echoUdp("over udp", { port })).reply), "over udp");
  assert.equal(server.stats.sessionsTotal, 1);
  assert.equal(server.stats.datagramsIn, 1);
});

test("serveEcho: `await using` closes both listeners at the end of the block", async () => {
  let port: number;
  {
    await using server = await serveEcho({ port: 0 });
    port = server.addr.port;
    await echoTcp("inside", { port });
  }
  assert.ok(await tcpRefused(port), "TCP still listening after the block");
  assert.ok(udpFree(port), "UDP port still bound after the block");
});

test("shutdown: an idle session is closed after the grace period; finished resolves", async () => {
  const grace = 300;
  const connections = new Recorder<ConnectionInfo>();
  const closes = new Recorder<CloseInfo>();
  const server = await serveEcho({
    port: 0,
    gracePeriod: grace,
    onConnection: connections.push,
    onClose: closes.push,
  });
  const port = server.addr.port;
  const conn = await Deno.connect({ hostname: HOST, port });
  await connections.until((c) => c.length === 1);
  const started = performance.now();
  const finished = server.shutdown();
  assert.ok(await tcpNotServed(port), "a new connection was served after shutdown started");
  assert.equal(closes.items.length, 0, "the session was closed before the grace period");
  await finished;
  const waited = performance.now() - started;
  // The grace is a lower bound (timers never fire early); a little slack for clock granularity.
  assert.ok(waited >= grace - 5, `closed after ${waited}ms, before the ${grace}ms grace`);
  assert.equal(closes.items.length, 1);
  assert.equal(closes.items[0].reason, "shutdown");
  const { received } = await readUntilClosed(conn); // the server closed it: EOF (or a reset)
  assert.equal(received.length, 0);
  conn.close();
  assert.equal(server.stats.sessionsOpen, 0);
  assert.equal(DEFAULT_GRACE_PERIOD, 3000);
});

test("shutdown: a session that closes by itself within the grace ends normally", async () => {
  const connections = new Recorder<ConnectionInfo>();
  const closes = new Recorder<CloseInfo>();
  const server = await serveEcho({
    port: 0,
    gracePeriod: 60_000, // the test would hang this long if the grace were waited out
    onConnection: connections.push,
    onClose: closes.push,
  });
  const conn = await Deno.connect({ hostname: HOST, port: server.addr.port });
  await connections.until((c) => c.length === 1);
  const finished = server.shutdown();
  // Still echoing during the grace period.
  await conn.write(encoder.encode("last words"));
  await conn.closeWrite();
  const { received, end } = await readUntilClosed(conn);
  conn.close();
  assert.equal(decoder.decode(received), "last words");
  assert.equal(end, "eof");
  await finished;
  assert.deepEqual(closes.items.map((c) => [c.reason, c.bytes]), [["eof", 10]]);
});

for (const transport of ["tcp", "udp", "both"] as const) {
  test(`signal (${transport}): aborting shuts the server down`, async () => {
    const controller = new AbortController();
    const server = await serveEcho({ port: 0, transport, signal: controller.signal });
    const port = server.addr.port;
    if (transport !== "udp") await echoTcp("before", { port });
    if (transport !== "tcp") await echoUdp("before", { port });
    controller.abort();
    await server.finished;
    if (transport !== "udp") assert.ok(await tcpRefused(port));
    if (transport !== "tcp") assert.ok(udpFree(port));
  });

  test(`signal (${transport}): an already aborted signal stops the server at once`, async () => {
    const server = await serveEcho({ port: 0, transport, signal: AbortSignal.abort() });
    await server.finished;
    if (transport !== "udp") assert.ok(await tcpRefused(server.addr.port));
  });
}

test("once (tcp): one session is served, a second connection is refused, then it stops", async () => {
  const connections = new Recorder<ConnectionInfo>();
  const server = await serveEcho({
    port: 0,
    transport: "tcp",
    once: true,
    onConnection: connections.push,
  });
  const port = server.addr.port;
  const conn = await Deno.connect({ hostname: HOST, port });
  await connections.until((c) => c.length === 1);
  assert.ok(await tcpRefused(port), "a second client was accepted");
  await conn.write(encoder.encode("one"));
  await conn.closeWrite();
  assert.equal(decoder.decode((await readUntilClosed(conn)).received), "one");
  conn.close();
  await server.finished;
  assert.equal(server.stats.sessionsTotal, 1);
});

test("once (udp): one datagram is echoed, then it stops", async () => {
  const server = await serveEcho({ port: 0, transport: "udp", once: true });
  await echoUdp("one", { port: server.addr.port });
  await server.finished;
  assert.equal(server.stats.datagramsIn, 1);
  assert.ok(udpFree(server.addr.port));
});

test("once (both): a datagram first ends both transports", async () => {
  const server = await serveEcho({ port: 0, once: true });
  await echoUdp("one", { port: server.addr.port });
  await server.finished;
  assert.ok(await tcpRefused(server.addr.port));
  assert.ok(udpFree(server.addr.port));
  assert.equal(server.stats.sessionsTotal, 0);
});

test("once (both): a TCP session first ends both transports", async () => {
  const server = await serveEcho({ port: 0, once: true });
  await echoTcp("one", { port: server.addr.port });
  await server.finished;
  assert.ok(await tcpRefused(server.addr.port));
  assert.ok(udpFree(server.addr.port));
  assert.equal(server.stats.datagramsIn, 0);
});

test("hooks: onListen, onConnection, onData, onClose and onDatagram see what happened", async () => {
  const listens: ListenInfo[] = [];
  const connections = new Recorder<ConnectionInfo>();
  const data: string[] = [];
  const closes = new Recorder<CloseInfo>();
  const datagrams: { remote: Deno.NetAddr; text: string }[] = [];
  const errors: EchoError[] = [];
  await using server = await serveEcho({
    port: 0,
    onListen: (info) => listens.push(info),
    onConnection: connections.push,
    onData: ({ data: bytes }) => data.push(decoder.decode(bytes)),
    onClose: closes.push,
    onDatagram: ({ remoteAddr, data: bytes }: DatagramInfo) =>
      datagrams.push({ remote: remoteAddr, text: decoder.decode(bytes) }),
    onError: (e) => errors.push(e),
  });
  const port = server.addr.port;
  assert.deepEqual(listens.map((l) => [l.transport, l.port]), [["tcp", port], ["udp", port]]);
  assert.ok(listens[1].backend);

  await echoTcp("hello hooks", { port });
  await closes.until((c) => c.length === 1);
  const [connection] = connections.items;
  assert.equal(connection.id, 1);
  assert.equal(connection.remoteAddr.hostname, HOST);
  assert.equal(connection.localAddr.port, port);
  assert.equal(data.join(""), "hello hooks");
  const [close] = closes.items;
  assert.equal(close.id, 1);
  assert.equal(close.reason, "eof");
  assert.equal(close.bytes, 11);
  assert.equal(close.remoteAddr.port, connection.remoteAddr.port);
  assert.ok(close.duration >= 0);

  await echoUdp("a datagram", { port });
  assert.equal(datagrams.length, 1);
  assert.equal(datagrams[0].text, "a datagram");
  assert.equal(datagrams[0].remote.hostname, HOST);

  await echoTcp("second", { port });
  await closes.until((c) => c.length === 2);
  assert.equal(connections.items[1].id, 2);
  assert.deepEqual(errors, []);
});

test("hooks: a throwing hook reaches onError and the server keeps serving", async () => {
  const errors = new Recorder<EchoError>();
  let thrown = 0;
  const boom = () => {
    thrown++;
    throw new Error(`boom ${thrown}`);
  };
  await using server = await serveEcho({
    port: 0,
    onConnection: boom,
    onData: boom,
    onClose: boom,
    onDatagram: boom,
    onError: (error) => {
      errors.push(error);
      throw new Error("and onError throws too");
    },
  });
  const port = server.addr.port;
  assert.equal(decoder.decode((await echoTcp("still echoed", { port })).reply), "still echoed");
  assert.equal(decoder.decode((await echoUdp("still echoed", { port })).reply), "still echoed");
  await errors.until((e) => e.length === 4); // connection, data, close, datagram
  for (const error of errors.items) {
    assert.ok(error instanceof EchoError);
    assert.match(error.message, /^hook failed: boom \d$/);
    assert.ok(error.cause instanceof Error);
  }
  assert.equal(thrown, 4);
  assert.equal(decoder.decode((await echoTcp("and again", { port })).reply), "and again");
});

test("serveEcho: a TCP port in use gives an EchoConnectionError naming the address", async () => {
  const taken = Deno.listen({ hostname: HOST, port: 0 });
  const port = (taken.addr as Deno.NetAddr).port;
  try {
    await assert.rejects(serveEcho({ port }), (error: unknown) => {
      assert.ok(error instanceof EchoConnectionError, String(error));
      assert.equal(error.message, `cannot listen on tcp 127.0.0.1:${port}: address already in use`);
      assert.deepEqual(error.address, { hostname: HOST, port, transport: "tcp" });
      assert.ok(error.cause instanceof Deno.errors.AddrInUse);
      return true;
    });
  } finally {
    taken.close();
  }
});

for (const backend of ["deno", "node"] as const) {
  test(`serveEcho (${backend}): a UDP port in use gives an EchoConnectionError and frees the TCP port`, async () => {
    const taken = takeUdpPortWithFreeTcp();
    const port = (taken.addr as Deno.NetAddr).port;
    try {
      await assert.rejects(serveEcho({ port, backend }), (error: unknown) => {
        assert.ok(error instanceof EchoConnectionError, String(error));
        assert.equal(
          error.message,
          `cannot listen on udp 127.0.0.1:${port}: address already in use`,
        );
        assert.deepEqual(error.address, { hostname: HOST, port, transport: "udp" });
        // serveEcho's port-0 retry depends on this class, whichever backend bound.
        assert.ok(error.cause instanceof Deno.errors.AddrInUse, String(error.cause));
        return true;
      });
      assert.ok(await tcpRefused(port), "the TCP listener of the failed server is still open");
    } finally {
      taken.close();
    }
  });
}

test("serveUdpEcho: an address that is not on this machine names it", async () => {
  // 192.0.2.0/24 is TEST-NET-1: never assigned to a local interface. Nothing is sent.
  await assert.rejects(serveUdpEcho({ hostname: "192.0.2.1", port: 0 }), (error: unknown) => {
    assert.ok(error instanceof EchoConnectionError, String(error));
    assert.match(error.message, /^cannot listen on udp 192\.0\.2\.1:0: address not available/);
    return true;
  });
});

test("unref: a running server does not keep the process alive", async () => {
  const mod = new URL("../mod.ts", import.meta.url).href;
  const code = `
    import { echoTcp, echoUdp, serveEcho } from ${JSON.stringify(mod)};
    for (const backend of ["deno", "node"]) {
      const server = await serveEcho({ port: 0, backend });
      server.unref();
      await echoTcp("x", { port: server.addr.port });
      await echoUdp("x", { port: server.addr.port, backend });
      console.log("serving unref'd", backend, server.listeners[1].backend);
    }
  `;
  // A watchdog, not a synchronisation: if unref does not work the child never exits.
  const { code: exitCode, signal, stdout, stderr } = await runEval(code, 30_000);
  assert.equal(signal, null, "the child had to be killed: the server kept it alive");
  assert.equal(exitCode, 0, decoder.decode(stderr));
  assert.deepEqual(decoder.decode(stdout).trim().split("\n"), [
    "serving unref'd deno deno",
    "serving unref'd node node",
  ]);
});

Deno.test("serveEcho: an impairment the served transports would ignore is a TypeError naming it", async () => {
  for (
    const [options, option] of [
      [{ transport: "tcp", impair: { loss: 0.2 } }, "impair.loss"],
      [{ transport: "tcp", impair: { delay: 5, jitter: 5 } }, "impair.jitter"],
      [{ transport: "udp", impair: { bandwidth: 1000 } }, "impair.bandwidth"],
    ] as const
  ) {
    await assert.rejects(serveEcho({ port: 0, ...options }), (error: unknown) => {
      assert.ok(error instanceof TypeError, String(error));
      assert.equal((error as { option?: string }).option, option);
      return true;
    });
    assert.throws(() => validateServeOptions({ port: 0, ...options }), TypeError);
  }
  // Delay applies to both; loss with UDP served is fine.
  await using both = await serveEcho({ port: 0, impair: { delay: 1, loss: 0.5, bandwidth: 1e6 } });
  assert.equal(both.listeners.length, 2);
});

test("serveEcho({ ws }): one handle over TCP, UDP and WebSocket, shared counters, the feed hooked in, shutdown ends all three", async () => {
  const listens: ListenInfo[] = [];
  const closes: CloseInfo[] = [];
  const server = await serveEcho({
    port: 0,
    ws: { port: 0 },
    onListen: (info) => listens.push(info),
    onClose: (info) => closes.push(info),
  });
  assert.deepEqual(server.listeners.map((l) => l.transport), ["tcp", "udp", "ws"]);
  assert.deepEqual(listens.map((l) => l.transport), ["tcp", "udp", "ws"], "ready after all bound");
  const ws = server.listeners.find((l) => l.transport === "ws")!;
  assert.equal(ws.url, `ws://${HOST}:${ws.port}/`);
  assert.notEqual(ws.port, server.addr.port);
  // A live viewer of the page's feed sees the TCP session: serveEcho hooked the feed in.
  const viewer = new WebSocket(`${ws.url}events`);
  const seen = new Recorder<string>();
  viewer.onmessage = (event) => seen.push(String(event.data));
  await seen.until((items) => items.some((m) => m.includes('"type":"stats"')));
  await echoTcp("tcp", { port: server.addr.port });
  await echoUdp("udp", { port: server.addr.port });
  assert.equal((await echoWs("ws", { url: ws.url })).reply, "ws");
  await seen.until((items) =>
    items.some((m) => m.includes('"transport":"tcp","id":1') && m.includes('"kind":"close"'))
  );
  assert.equal(closes.length, 1, "the user's onClose still runs beside the feed's");
  assert.equal(server.stats.ws!.messagesIn, 1);
  assert.equal(server.stats.datagramsIn, 1);
  assert.equal(server.stats.sessionsTotal, 2, "one TCP and one WebSocket session");
  const viewerClosed = new Promise<number>((resolve) => (viewer.onclose = (e) => resolve(e.code)));
  await server.shutdown();
  assert.equal(await viewerClosed, 1001);
  assert.ok(await tcpRefused(server.addr.port));
  await assert.rejects(fetch(`http://${HOST}:${ws.port}/`));
});

test("serveEcho({ ws }): bad ws options and conflicts are named errors before anything binds", async () => {
  const option = (fn: () => unknown) => {
    try {
      fn();
    } catch (error) {
      return (error as { option?: string }).option;
    }
    return undefined;
  };
  assert.equal(
    option(() => validateServeOptions({ ws: { maxMessage: 64 << 20 } })),
    "ws.maxMessage",
  );
  assert.equal(
    option(() => validateServeOptions({ ws: { eventsFrom: ["nope"] } })),
    "ws.eventsFrom",
  );
  assert.equal(option(() => validateServeOptions({ ws: {}, once: true })), "ws");
  assert.equal(
    option(() => validateServeOptions({ ws: {}, transport: "unix", path: "/tmp/x" })),
    "ws",
  );
  await assert.rejects(serveEcho({ port: 0, ws: { port: 0, keepAlive: -1 } }), RangeError);
  const path = `${await Deno.makeTempDir()}/echo.sock`;
  await assert.rejects(serveEcho({ transport: "unix", path, ws: { port: 0 } }), TypeError);
  // A WebSocket port in use is a typed bind error (the WebSocket listener binds first).
  await using blocker = await serveEcho({ port: 0, transport: "tcp" });
  await assert.rejects(
    serveEcho({ port: 0, ws: { port: blocker.addr.port } }),
    EchoConnectionError,
  );
});

test("serveEcho: a duration no timer can hold (2^31 ms and more) is refused, not fired at once", async () => {
  // setTimeout takes a 32-bit delay: 2^31 ms would fire after 1 ms, so a grace period that long
  // would cut every session at once and a PROXY timeout that long would refuse every header.
  const refusal = (fn: () => unknown) => {
    try {
      fn();
    } catch (error) {
      return { option: (error as { option?: string }).option, message: (error as Error).message };
    }
    return undefined;
  };
  const tooLong = 2 ** 31;
  for (
    const [options, name] of [
      [{ gracePeriod: tooLong }, "gracePeriod"],
      [{ proxyProtocol: true, proxyTimeout: tooLong }, "proxyTimeout"],
      [{ idleTimeout: tooLong }, "idleTimeout"],
    ] as const
  ) {
    const r = refusal(() => validateServeOptions(options));
    assert.equal(r?.option, name);
    assert.match(r!.message, new RegExp(`^${name} must be at most 2147483647 ms`));
  }
  assert.equal(refusal(() => validateServeOptions({ gracePeriod: -1 }))?.option, "gracePeriod");
  assert.equal(
    refusal(() => validateServeOptions({ tls: { cert: "", key: "", handshakeTimeout: tooLong } }))
      ?.option,
    "tls.handshakeTimeout",
  );
  assert.equal(refusal(() => validateServeOptions({ gracePeriod: 2 ** 31 - 1 })), undefined);
  // tls.handshakeTimeout is checked before anything binds: the port stays free.
  const cert = await Deno.readTextFile(new URL("./fixtures/tls_cert.pem", import.meta.url));
  const key = await Deno.readTextFile(new URL("./fixtures/tls_key.pem", import.meta.url));
  await using probe = await serveEcho({ port: 0, transport: "tcp" });
  const port = probe.addr.port;
  await probe.shutdown();
  await assert.rejects(
    serveEcho({ port, transport: "tcp", tls: { cert, key, handshakeTimeout: tooLong } }),
    /tls\.handshakeTimeout must be at most 2147483647 ms/,
  );
  await using again = await serveEcho({ port, transport: "tcp" });
  assert.equal(again.addr.port, port);
});
