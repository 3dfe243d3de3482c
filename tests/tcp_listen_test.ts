/**
 * TCP listeners sharing a port (_tcp_listen.ts): two accept queues where the port can be shared, never
 * a port shared with another program or another copy of the server.
 *
 * @module
 */
import assert from "node:assert/strict";
import { ACCEPT_QUEUES, canSharePort, listenTcp } from "../_tcp_listen.ts";
import { serveTcpEcho } from "../tcp.ts";
import { EchoConnectionError } from "../errors.ts";
import { test } from "./_helpers.ts";

const HOST = "127.0.0.1";

test("listenTcp: several listeners on one port where it can share, else one", () => {
  const listeners = listenTcp(HOST, 0);
  try {
    assert.equal(listeners.length, canSharePort() ? ACCEPT_QUEUES : 1);
    const ports = new Set(listeners.map((l) => (l.addr as Deno.NetAddr).port));
    assert.equal(ports.size, 1);
  } finally {
    for (const listener of listeners) listener.close();
  }
});

test("listenTcp: a port held by anyone is refused, with or without reusePort", () => {
  const mine = listenTcp(HOST, 0);
  const port = (mine[0].addr as Deno.NetAddr).port;
  try {
    assert.throws(() => listenTcp(HOST, port), Deno.errors.AddrInUse);
    assert.throws(() => Deno.listen({ hostname: HOST, port }), Deno.errors.AddrInUse);
  } finally {
    for (const listener of mine) listener.close();
  }
  const plain = Deno.listen({ hostname: HOST, port: 0 });
  try {
    const held = (plain.addr as Deno.NetAddr).port;
    assert.throws(() => listenTcp(HOST, held), Deno.errors.AddrInUse);
  } finally {
    plain.close();
  }
});

test("listenTcp join: binds next to this process's listeners (what workers do)", () => {
  if (!canSharePort()) return;
  const mine = listenTcp(HOST, 0);
  const port = (mine[0].addr as Deno.NetAddr).port;
  const joined = listenTcp(HOST, port, { join: true, queues: 1 });
  try {
    assert.equal(joined.length, 1);
    assert.equal((joined[0].addr as Deno.NetAddr).port, port);
  } finally {
    for (const listener of [...mine, ...joined]) listener.close();
  }
});

test("serveTcpEcho twice on one port: the second fails with address in use", async () => {
  await using first = serveTcpEcho({ hostname: HOST, port: 0 });
  assert.throws(
    () => serveTcpEcho({ hostname: HOST, port: first.addr.port }),
    (error: unknown) =>
      error instanceof EchoConnectionError && error.cause instanceof Deno.errors.AddrInUse,
  );
});

test("a crowd connecting at once beyond one accept queue (600 > 511) is served", async () => {
  await using server = serveTcpEcho({ hostname: HOST, port: 0 });
  const port = server.addr.port;
  const conns = await Promise.all(
    Array.from({ length: 600 }, () => Deno.connect({ hostname: HOST, port })),
  );
  try {
    const one = new Uint8Array([42]);
    await Promise.all(conns.map(async (conn) => {
      await conn.write(one);
      const got = new Uint8Array(1);
      assert.equal(await conn.read(got), 1);
      assert.equal(got[0], 42);
    }));
  } finally {
    for (const conn of conns) conn.close();
  }
});
