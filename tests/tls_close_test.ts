/**
 * TLS sessions closed before their handshake are really closed (issue 10 #1): bare TCP connects
 * that never send a byte are refused or timed out, every client sees the close, and the
 * server's descriptors come back. The server runs in a child process so its /proc/self/fd
 * counts only its own sockets.
 */
import assert from "node:assert/strict";
import { test } from "./_helpers.ts";
import { spawnStatChild } from "./_stat_child.ts";

const HOST = "127.0.0.1";

function report(line: string): void {
  console.log(`    ${line}`);
}

/** Waits until `conn` sees the server's close (EOF or reset); false if `limit` ms pass first. */
async function closedWithin(conn: Deno.Conn, limit: number): Promise<boolean> {
  const timer = setTimeout(() => conn.close(), limit);
  try {
    return await conn.read(new Uint8Array(64)).then(
      (n) => n === null,
      (error) => error instanceof Deno.errors.ConnectionReset,
    );
  } finally {
    clearTimeout(timer);
  }
}

async function bareConnects(options: Record<string, number>, count: number, limit: number) {
  const { child, lines } = spawnStatChild("--allow-all", "tests/_tls_fd_child.ts", [
    JSON.stringify(options),
  ]);
  try {
    const port = Number(/^port (\d+)$/.exec((await lines.next()) ?? "")?.[1]);
    assert.ok(port > 0);
    const fdsNow = async () => {
      for (let line; (line = await lines.next()) !== undefined;) {
        const match = /^fds (\d+)$/.exec(line);
        if (match) return Number(match[1]);
      }
      throw new Error("the server ended");
    };
    const base = await fdsNow();
    const conns: Deno.Conn[] = [];
    for (let i = 0; i < count; i++) conns.push(await Deno.connect({ hostname: HOST, port }));
    const start = performance.now();
    const closed = (await Promise.all(conns.map((c) => closedWithin(c, limit)))).filter(Boolean)
      .length;
    const took = performance.now() - start;
    // While the clients still hold their sockets open, the server must let go of its own: the
    // count must come back near the baseline within 5 s (the lines queue up, so read on).
    let held = await fdsNow();
    for (const until = performance.now() + 5000; held > base + 10 && performance.now() < until;) {
      held = await fdsNow();
    }
    for (const conn of conns) {
      try {
        conn.close();
      } catch {
        // closed by the timer
      }
    }
    return { closed, took, base, held };
  } finally {
    child.stdin.close();
    const kill = setTimeout(() => child.kill("SIGKILL"), 5000);
    await child.status;
    clearTimeout(kill);
  }
}

test("tls close: 200 bare connects to a TLS server (maxConnections 50, idle 1 s) are all closed and free their descriptors", async () => {
  const r = await bareConnects({ maxConnections: 50, idleTimeout: 1000 }, 200, 8000);
  report(
    `200 bare connects: ${r.closed} saw a close in ${r.took.toFixed(0)} ms; ` +
      `server fds ${r.base} -> ${r.held} with the clients still open`,
  );
  assert.equal(r.closed, 200, `${200 - r.closed} clients never saw a close`);
  assert.ok(r.held <= r.base + 10, `server holds ${r.held - r.base} descriptors more`);
});

test("tls close: a handshake has its own deadline (handshakeTimeout), idle timeout off", async () => {
  const r = await bareConnects({ idleTimeout: 0, handshakeTimeout: 500 }, 20, 8000);
  report(
    `20 bare connects, handshakeTimeout 500 ms: ${r.closed} closed in ${r.took.toFixed(0)} ms`,
  );
  assert.equal(r.closed, 20);
  assert.ok(r.took >= 400, `closed after ${r.took.toFixed(0)} ms, before the deadline`);
  assert.ok(r.held <= r.base + 10, `server holds ${r.held - r.base} descriptors more`);
});

test("tls close: server.ts --handshake-timeout closes a connection that never handshakes", async () => {
  const { startServer, stopServer } = await import("./_cli_child.ts");
  const fixtures = new URL("./fixtures/", import.meta.url).pathname;
  const server = await startServer(
    [
      "-p",
      "0",
      "--tls-cert",
      `${fixtures}tls_cert.pem`,
      "--tls-key",
      `${fixtures}tls_key.pem`,
      "--handshake-timeout",
      "300ms",
      "--idle-timeout",
      "0",
    ],
    ["--allow-net", "--allow-read"],
    /^listening tls 127\.0\.0\.1:(\d+)$/,
  );
  const conn = await Deno.connect({ hostname: "127.0.0.1", port: Number(server.ready[1]) });
  const start = performance.now();
  // Nothing sent: only the handshake deadline can end this connection (the idle timeout is off).
  const ended = await conn.read(new Uint8Array(1)).catch((error) => error);
  const elapsed = performance.now() - start;
  conn.close();
  assert.ok(ended === null || ended instanceof Deno.errors.ConnectionReset, String(ended));
  assert.ok(elapsed >= 250, `closed after ${elapsed.toFixed(0)} ms, before the deadline`);
  assert.ok(elapsed < 5000, `closed after ${elapsed.toFixed(0)} ms, not by the 300 ms deadline`);
  const { code } = await stopServer(server);
  assert.equal(code, 0);
});
