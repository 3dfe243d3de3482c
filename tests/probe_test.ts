import assert from "node:assert/strict";
import { EchoConnectionError, type EchoError } from "../errors.ts";
import { UdpImpairment } from "../impair.ts";
import { type ProbeReply, type ProbeResult, runProbe, validateProbeOptions } from "../probe.ts";
import { encodeProbe } from "../sequence.ts";
import { serveEcho } from "../serve.ts";
import { assertTcpCounts } from "./_probe_fixtures.ts";

/** UDP: every probe sent is answered in time, lost, late, or outstanding. */
function assertUdpCounts(r: ProbeResult): void {
  assert.equal(
    r.sent,
    r.received + r.lost + r.late + r.outstanding,
    `sent ${r.sent} != received ${r.received} + lost ${r.lost} + late ${r.late} + outstanding ${r.outstanding}`,
  );
  assert.equal(r.latency.count, r.received);
  assert.equal(r.bytes, r.received * r.size);
}

/** A port nothing listens on (bound, then released). */
function freePort(): number {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (listener.addr as Deno.NetAddr).port;
  listener.close();
  return port;
}

/**
 * A raw TCP server that handles each connection with `handle`, for misbehaving servers.
 * Returns its port and a stop function that closes the listener and every connection.
 */
function rawTcpServer(
  handle: (conn: Deno.Conn) => Promise<void>,
): { port: number; stop: () => Promise<void> } {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const conns = new Set<Deno.Conn>();
  const sessions = new Set<Promise<void>>();
  const accepting = (async () => {
    for await (const conn of listener) {
      conns.add(conn);
      const session = handle(conn).catch(() => {}).finally(() => {
        conns.delete(conn);
        try {
          conn.close();
        } catch {
          // closed by the handler
        }
      });
      sessions.add(session);
      session.finally(() => sessions.delete(session));
    }
  })().catch(() => {});
  return {
    port: (listener.addr as Deno.NetAddr).port,
    stop: async () => {
      listener.close();
      for (const conn of conns) {
        try {
          conn.close();
        } catch {
          // already closed
        }
      }
      await accepting;
      await Promise.all(sessions);
    },
  };
}

/**
 * A raw UDP server that answers each datagram through `handle` (which sends what it likes).
 */
function rawUdpServer(
  handle: (data: Uint8Array, from: Deno.NetAddr, conn: Deno.DatagramConn) => Promise<void>,
): { port: number; stop: () => Promise<void> } {
  const conn = Deno.listenDatagram({ hostname: "127.0.0.1", port: 0, transport: "udp" });
  const loop = (async () => {
    const buffer = new Uint8Array(65_536);
    for (;;) {
      const [data, from] = await conn.receive(buffer);
      await handle(data.slice(), from as Deno.NetAddr, conn);
    }
  })().catch(() => {});
  return {
    port: (conn.addr as Deno.NetAddr).port,
    stop: async () => {
      conn.close();
      await loop;
    },
  };
}

// ---------------------------------------------------------------------------------------------
// Options

Deno.test("validateProbeOptions: a UDP size below the 24-byte probe header is a RangeError", () => {
  assert.throws(
    () => validateProbeOptions({ transport: "udp", size: 23 }),
    (e: unknown) =>
      e instanceof RangeError && /UDP probes need at least 24 bytes/.test(e.message) &&
      /got 23/.test(e.message),
  );
  validateProbeOptions({ transport: "udp", size: 24 });
  validateProbeOptions({ transport: "tcp", size: 1 });
  assert.throws(() => validateProbeOptions({ transport: "udp", size: 65_508 }), RangeError);
});

Deno.test("validateProbeOptions: out-of-range numbers are RangeErrors naming the option", () => {
  const cases: [Record<string, unknown>, RegExp][] = [
    [{ port: 0 }, /^port must be/],
    [{ connections: 0 }, /^connections must be/],
    [{ count: 0 }, /^count must be/],
    [{ count: 1.5 }, /^count must be/],
    [{ duration: 0 }, /^duration must be/],
    [{ rate: -1 }, /^rate must be/],
    [{ interval: NaN }, /^interval must be/],
    [{ timeout: Infinity }, /^timeout must be/],
    [{ warmup: -5 }, /^warmup must be/],
    [{ pipeline: 0 }, /^pipeline must be/],
    [{ pipeline: Infinity }, /pipeline must be finite without a rate or interval/],
  ];
  for (const [options, message] of cases) {
    assert.throws(
      () => validateProbeOptions(options),
      (e: unknown) => e instanceof RangeError && message.test(e.message),
      JSON.stringify(options),
    );
  }
  validateProbeOptions({ interval: 10, pipeline: Infinity });
});

Deno.test("validateProbeOptions: conflicting options are TypeErrors", () => {
  assert.throws(() => validateProbeOptions({ rate: 10, interval: 10 }), TypeError);
  assert.throws(() => validateProbeOptions({ stream: true, rate: 10 }), TypeError);
  assert.throws(() => validateProbeOptions({ stream: true, interval: 10 }), TypeError);
  assert.throws(() => validateProbeOptions({ stream: true, transport: "udp" }), TypeError);
  assert.throws(
    () => validateProbeOptions({ transport: "sctp" as "tcp" }),
    /transport must be "tcp" or "udp"/,
  );
});

Deno.test("runProbe rejects bad options before opening anything", async () => {
  await assert.rejects(runProbe({ transport: "udp", size: 8, port: 9 }), RangeError);
});

// ---------------------------------------------------------------------------------------------
// Against our server

Deno.test("TCP closed model: count requests over several pipelined connections all come back", async () => {
  await using server = await serveEcho({ port: 0 });
  const result = await runProbe({
    port: server.addr.port,
    count: 300,
    connections: 3,
    pipeline: 4,
    size: 100,
  });
  assertTcpCounts(result);
  assert.equal(result.transport, "tcp");
  assert.equal(result.sent, 300);
  assert.equal(result.received, 300);
  assert.equal(result.mismatches, 0);
  assert.equal(result.errors, 0);
  assert.equal(result.outstanding, 0);
  assert.equal(result.aborted, false);
  assert.equal(result.connectionsServed, 3);
  assert.ok(result.latency.min <= result.latency.p50 && result.latency.p50 <= result.latency.max);
  assert.ok(result.requestsPerSecond > 0);
  assert.equal(server.stats.bytesOut, 300 * 100);
});

Deno.test("UDP closed model: count probes over several sockets, both backends", async () => {
  await using server = await serveEcho({ port: 0 });
  for (const backend of ["deno", "node"] as const) {
    const result = await runProbe({
      transport: "udp",
      backend,
      port: server.addr.port,
      count: 200,
      connections: 2,
      pipeline: 3,
      size: 200,
    });
    assertUdpCounts(result);
    assert.equal(result.sent, 200, backend);
    assert.equal(result.received + result.lost, 200, backend);
    assert.equal(result.mismatches, 0, backend);
    assert.equal(result.duplicates, 0, backend);
    assert.equal(result.strays, 0, backend);
    assert.equal(result.outstanding, 0, backend);
  }
});

Deno.test("short bench (duration) against our server: TCP and UDP counts add up", async () => {
  await using server = await serveEcho({ port: 0 });
  const port = server.addr.port;
  const progress: number[] = [];
  const tcp = await runProbe({
    port,
    duration: 1100,
    connections: 4,
    size: 64,
    onProgress: (p) => progress.push(p.requests),
  });
  assertTcpCounts(tcp);
  assert.ok(tcp.received > 0);
  assert.equal(tcp.mismatches, 0);
  assert.equal(tcp.errors, 0);
  assert.equal(tcp.outstanding, 0);
  assert.ok(tcp.elapsed >= 1100, `elapsed ${tcp.elapsed}`);
  assert.ok(progress.length >= 1, "a progress report after one second");

  const udp = await runProbe({ port, transport: "udp", duration: 300, connections: 2 });
  assertUdpCounts(udp);
  assert.ok(udp.received > 0);
  assert.equal(udp.received, udp.sent - udp.lost - udp.late);
  assert.equal(udp.mismatches, 0);
  assert.equal(udp.outstanding, 0);
});

Deno.test("TCP stream mode: bytes are chunks of size, all verified", async () => {
  await using server = await serveEcho({ port: 0 });
  const result = await runProbe({ port: server.addr.port, stream: true, duration: 200 });
  assertTcpCounts(result);
  assert.equal(result.size, 64 * 1024);
  assert.equal(result.pipeline, 4);
  assert.equal(result.stream, true);
  assert.ok(result.received > 0);
  assert.equal(result.mismatches, 0);
  assert.ok(result.bytesPerSecond > 0);
});

Deno.test("ping via the library: one reply per interval, sequence numbers in order", async () => {
  await using server = await serveEcho({ port: 0 });
  for (const transport of ["tcp", "udp"] as const) {
    const replies: ProbeReply[] = [];
    const result = await runProbe({
      transport,
      port: server.addr.port,
      count: 5,
      interval: 10,
      onReply: (r) => replies.push(r),
    });
    assert.deepEqual(replies.map((r) => r.seq), [0, 1, 2, 3, 4], transport);
    assert.ok(replies.every((r) => r.kind === "reply" && r.bytes === 64 && r.rtt >= 0));
    assert.ok(replies.every((r) => r.connection === 0 && !r.warmup));
    assert.equal(result.sent, 5);
    assert.equal(result.received, 5);
    assert.equal(result.pipeline, Infinity);
    // The fifth probe is due 40 ms after the first: the schedule is kept.
    assert.ok(result.elapsed >= 40, `${transport} elapsed ${result.elapsed}`);
  }
});

Deno.test("rate (open model): count requests on a fixed schedule", async () => {
  await using server = await serveEcho({ port: 0 });
  for (const transport of ["tcp", "udp"] as const) {
    const result = await runProbe({
      transport,
      port: server.addr.port,
      count: 100,
      rate: 2000,
      connections: 2,
    });
    assert.equal(result.sent, 100, transport);
    assert.equal(result.received + result.lost, 100, transport);
    assert.equal(result.unsent, 0);
    // The hundredth request is due 99 × 0.5 ms after the first.
    assert.ok(result.elapsed >= 49.5, `${transport} elapsed ${result.elapsed}`);
  }
});

Deno.test("warmup: what is sent during it is left out of the results", async () => {
  await using server = await serveEcho({ port: 0 });
  for (const transport of ["tcp", "udp"] as const) {
    let warm = 0;
    const result = await runProbe({
      transport,
      port: server.addr.port,
      warmup: 50,
      count: 40,
      onReply: (r) => void (r.warmup && warm++),
    });
    assert.ok(warm > 0, `${transport}: replies during the warm-up`);
    assert.equal(result.sent, 40, transport);
    assert.equal(result.received + result.lost, 40, transport);
    assert.equal(result.latency.count, result.received);
  }
});

Deno.test("an abort ends an endless run early and still returns the results so far", async () => {
  await using server = await serveEcho({ port: 0 });
  for (const transport of ["tcp", "udp"] as const) {
    const controller = new AbortController();
    let seen = 0;
    const result = await runProbe({
      transport,
      port: server.addr.port,
      signal: controller.signal,
      onReply: () => {
        if (++seen === 50) controller.abort();
      },
    });
    assert.equal(result.aborted, true);
    assert.ok(result.received >= 50, `${transport} received ${result.received}`);
    if (transport === "tcp") assertTcpCounts(result);
    else assertUdpCounts(result);
  }
});

Deno.test("an already aborted signal returns an empty result at once", async () => {
  await using server = await serveEcho({ port: 0 });
  const result = await runProbe({ port: server.addr.port, signal: AbortSignal.abort() });
  assert.equal(result.aborted, true);
  assert.equal(result.sent, 0);
  assert.equal(result.elapsed, 0);
  assert.equal(result.requestsPerSecond, 0);
});

// ---------------------------------------------------------------------------------------------
// Misbehaving servers

Deno.test("TCP: a server that alters bytes is caught, request by request", async () => {
  const server = rawTcpServer(async (conn) => {
    const buffer = new Uint8Array(4096);
    for (;;) {
      const n = await conn.read(buffer);
      if (n === null) return;
      buffer[0] ^= 0x55;
      await conn.write(buffer.subarray(0, n));
    }
  });
  try {
    const kinds: string[] = [];
    const result = await runProbe({
      port: server.port,
      count: 5,
      interval: 5,
      onReply: (r) => kinds.push(r.kind),
    });
    assertTcpCounts(result);
    assert.equal(result.mismatches, 5);
    assert.equal(result.received, 0);
    assert.deepEqual(kinds, ["mismatch", "mismatch", "mismatch", "mismatch", "mismatch"]);
  } finally {
    await server.stop();
  }
});

Deno.test("TCP: one altered byte in a large request is caught too", async () => {
  const server = rawTcpServer(async (conn) => {
    const buffer = new Uint8Array(64 * 1024);
    let offset = 0;
    for (;;) {
      const n = await conn.read(buffer);
      if (n === null) return;
      // Alter byte 3000 of the stream, in the middle of the first request only.
      if (offset <= 3000 && 3000 < offset + n) buffer[3000 - offset] ^= 0x01;
      offset += n;
      await conn.write(buffer.subarray(0, n));
    }
  });
  try {
    const result = await runProbe({ port: server.port, count: 3, size: 4096, interval: 5 });
    assertTcpCounts(result);
    assert.equal(result.mismatches, 1);
    assert.equal(result.received, 2);
  } finally {
    await server.stop();
  }
});

Deno.test("UDP: an altered reply is a mismatch and its probe is lost", async () => {
  const server = rawUdpServer(async (data, from, conn) => {
    data[data.length - 1] ^= 1;
    await conn.send(data, from);
  });
  try {
    const result = await runProbe({
      transport: "udp",
      port: server.port,
      count: 3,
      interval: 5,
      timeout: 100,
    });
    assertUdpCounts(result);
    assert.equal(result.mismatches, 3);
    assert.equal(result.received, 0);
    assert.equal(result.lost, 3);
  } finally {
    await server.stop();
  }
});

Deno.test("UDP: a truncated reply is a mismatch", async () => {
  const server = rawUdpServer(async (data, from, conn) => {
    await conn.send(data.subarray(0, data.length - 8), from);
  });
  try {
    const result = await runProbe({
      transport: "udp",
      port: server.port,
      count: 2,
      interval: 5,
      timeout: 100,
      size: 100,
    });
    assert.equal(result.mismatches, 2);
    assert.equal(result.lost, 2);
  } finally {
    await server.stop();
  }
});

Deno.test("UDP: datagrams of another run are strays, not replies", async () => {
  const foreign = new Uint8Array(64);
  const server = rawUdpServer(async (data, from, conn) => {
    encodeProbe(foreign, { runId: 1, seq: 0, sentAt: 0 });
    await conn.send(foreign, from);
    await conn.send(data, from);
  });
  try {
    const result = await runProbe({ transport: "udp", port: server.port, count: 4, interval: 5 });
    assertUdpCounts(result);
    assert.equal(result.received, 4);
    // runId 1 is this run's id with probability 2^-32.
    assert.equal(result.strays, 4);
    assert.equal(result.mismatches, 0);
  } finally {
    await server.stop();
  }
});

Deno.test("UDP: loss and duplicates match what an impairing server did", async () => {
  let stage: UdpImpairment<Deno.NetAddr> | undefined;
  const server = rawUdpServer((data, from, conn) => {
    stage ??= new UdpImpairment<Deno.NetAddr>(
      (bytes, to) => void conn.send(bytes.slice(), to).catch(() => {}),
      { loss: 0.2, duplicate: 0.2, seed: 7 },
    );
    stage.submit(data, from, `${from.hostname}:${from.port}`);
    return Promise.resolve();
  });
  try {
    const result = await runProbe({
      transport: "udp",
      port: server.port,
      count: 100,
      pipeline: 1,
      timeout: 25,
    });
    assertUdpCounts(result);
    assert.ok(stage!.dropped > 0 && stage!.duplicated > 0);
    assert.equal(result.lost, stage!.dropped);
    assert.equal(result.received, 100 - stage!.dropped);
    // A duplicate of the very last reply may arrive after the run has ended.
    assert.ok(
      result.duplicates <= stage!.duplicated && result.duplicates >= stage!.duplicated - 1,
      `duplicates ${result.duplicates} vs ${stage!.duplicated}`,
    );
    assert.equal(result.late, 0);
  } finally {
    stage?.close();
    await server.stop();
  }
});

Deno.test("UDP: replies held back by the server are counted as reordered", async () => {
  let stage: UdpImpairment<Deno.NetAddr> | undefined;
  const server = rawUdpServer((data, from, conn) => {
    stage ??= new UdpImpairment<Deno.NetAddr>(
      (bytes, to) => void conn.send(bytes.slice(), to).catch(() => {}),
      { reorder: 0.3, seed: 11 },
    );
    stage.submit(data, from, `${from.hostname}:${from.port}`);
    return Promise.resolve();
  });
  try {
    const result = await runProbe({
      transport: "udp",
      port: server.port,
      count: 60,
      interval: 1,
      timeout: 2000,
    });
    assertUdpCounts(result);
    assert.equal(result.received, 60);
    assert.ok(result.reordered > 0, "some replies were overtaken");
    assert.ok(result.reordered <= stage!.reordered);
  } finally {
    stage?.close();
    await server.stop();
  }
});

Deno.test("UDP: no reply within the timeout is loss", async () => {
  const server = rawUdpServer(() => Promise.resolve());
  try {
    const result = await runProbe({
      transport: "udp",
      port: server.port,
      count: 3,
      interval: 5,
      timeout: 50,
    });
    assertUdpCounts(result);
    assert.equal(result.sent, 3);
    assert.equal(result.lost, 3);
    assert.equal(result.received, 0);
    assert.ok(Number.isNaN(result.latency.p50));
  } finally {
    await server.stop();
  }
});

Deno.test("TCP: a server that never answers is a timeout error", async () => {
  const server = rawTcpServer(async (conn) => {
    const buffer = new Uint8Array(1024);
    while ((await conn.read(buffer)) !== null) {
      // swallow
    }
  });
  try {
    const errors: EchoError[] = [];
    const result = await runProbe({
      port: server.port,
      count: 1,
      timeout: 100,
      onError: (e) => errors.push(e),
    });
    assertTcpCounts(result);
    assert.equal(result.failed, 1);
    assert.equal(result.errors, 1);
    assert.equal(errors[0].name, "EchoTimeoutError");
  } finally {
    await server.stop();
  }
});

Deno.test("TCP: a connection the server closes is counted and opened again", async () => {
  const server = rawTcpServer(async (conn) => {
    // Echo the first request only, then close.
    const buffer = new Uint8Array(64);
    let got = 0;
    while (got < 64) {
      const n = await conn.read(buffer.subarray(got));
      if (n === null) return;
      got += n;
    }
    await conn.write(buffer);
  });
  try {
    const result = await runProbe({ port: server.port, count: 4, interval: 150 });
    assertTcpCounts(result);
    assert.ok(result.received >= 2, `received ${result.received}`);
    assert.ok(result.errors >= 1);
    assert.equal(result.received + result.failed, 4);
  } finally {
    await server.stop();
  }
});

Deno.test("TCP: no server at all rejects with a connection error", async () => {
  const port = freePort();
  await assert.rejects(
    runProbe({ port, count: 1 }),
    (e: unknown) => e instanceof EchoConnectionError && /connection refused/.test(e.message),
  );
});
