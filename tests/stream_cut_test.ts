/**
 * Sessions the server cuts (end of the grace period, maxSessionTime) lose nothing the server has
 * read: a write under way finishes and a shaped session's queue is written out before the close.
 *
 * What a cut cannot do on a Deno.Conn is reset: Deno's close shuts the write half down first
 * (tokio's OwnedWriteHalf drop: `shutdown(SHUT_WR)`, then `close`; strace shows it), so the peer
 * always sees a FIN, even with unread input queued (Linux's RST then follows the FIN and the
 * peer's reads may still end with a clean EOF; when the RST comes first, the peer's kernel drops
 * what it had not yet handed to the reader). So these tests assert what the server controls:
 * each session wrote back every byte it read before it was closed, and every client's echo is a
 * prefix of what it sent.
 */
import assert from "node:assert/strict";
import { serveEcho } from "../serve.ts";
import { type Ending, readUntilClosed, test } from "./_helpers.ts";

const HOST = "127.0.0.1";

function report(line: string): void {
  console.log(`    ${line}`);
}

function pattern(length: number, seed: number): Uint8Array {
  const data = new Uint8Array(length);
  for (let i = 0; i < length; i++) data[i] = (i * 31 + seed + (i >> 10)) & 255;
  return data;
}

/** Whether `received` is the start of `sent`. */
function isPrefix(received: Uint8Array, sent: Uint8Array): boolean {
  if (received.length > sent.length) return false;
  for (let i = 0; i < received.length; i++) if (received[i] !== sent[i]) return false;
  return true;
}

/**
 * A client that writes `data` as fast as the server takes it (and reads at the same time) until
 * the server ends the connection; with `halfClose`, it sends all of `data`, then a FIN.
 */
async function stream(
  port: number,
  data: Uint8Array,
  halfClose: boolean,
): Promise<Ending & { sent: number }> {
  const conn = await Deno.connect({ hostname: HOST, port });
  let sent = 0;
  const writing = (async () => {
    try {
      while (sent < data.length) {
        sent += await conn.write(data.subarray(sent, Math.min(data.length, sent + 16384)));
      }
      if (halfClose) await conn.closeWrite();
    } catch {
      // the server ended the connection
    }
  })();
  const ending = await readUntilClosed(conn);
  await writing;
  conn.close();
  return { ...ending, sent };
}

/** Counts the endings: resets, complete FINs, and FINs with echo missing (must be none). */
function tally(endings: (Ending & { sent: number })[], data: Uint8Array[]) {
  let reset = 0, complete = 0, truncated = 0, missing = 0;
  endings.forEach((e, i) => {
    assert.ok(isPrefix(e.received, data[i]), `client ${i}: echo is not a prefix of what it sent`);
    if (e.end === "reset") reset++;
    else if (e.received.length === e.sent) complete++;
    else {
      truncated++;
      missing += e.sent - e.received.length;
    }
  });
  return { reset, complete, truncated, missing };
}

/** Runs clients against a server, cuts them with `cut`, and checks nothing read was dropped. */
async function cutAndCheck(
  what: string,
  options: Parameters<typeof serveEcho>[0],
  clients: number,
  size: number,
  halfClose: boolean,
  cut: (server: Awaited<ReturnType<typeof serveEcho>>) => Promise<void>,
): Promise<void> {
  const data = Array.from({ length: clients }, (_, i) => pattern(size, i));
  let started = 0;
  const { promise: allStarted, resolve } = Promise.withResolvers<void>();
  const read = new Map<number, number>();
  const echoed = new Map<number, number>();
  const server = await serveEcho({
    hostname: HOST,
    port: 0,
    transport: "tcp",
    ...options,
    onData: ({ id, data }) => {
      const before = read.get(id) ?? 0;
      read.set(id, before + data.length);
      // Cut once the server has read a good part of every client's stream.
      if (before < 65536 && before + data.length >= 65536 && ++started === clients) resolve();
    },
    onClose: ({ id, bytes }) => echoed.set(id, bytes),
  });
  const ends = data.map((d) => stream((server.addr as Deno.NetAddr).port, d, halfClose));
  await allStarted;
  await cut(server);
  const endings = await Promise.all(ends);
  await server.shutdown();
  const counts = tally(endings, data);
  const received = endings.reduce((sum, e) => sum + e.received.length, 0);
  const readTotal = [...read.values()].reduce((a, b) => a + b, 0);
  const dropped = [...read].filter(([id, n]) => echoed.get(id) !== n).length;
  report(
    `${what}: ${JSON.stringify(counts)}; server read ${readTotal} B, clients got ${received} B, ` +
      `${dropped} sessions closed with read input unechoed`,
  );
  assert.equal(dropped, 0, `${what}: ${dropped} sessions dropped input they had read`);
}

test("stream cut: at the end of the grace period, 10 continuous streamers get back everything the server read", async () => {
  await cutAndCheck(
    "10 streamers, grace 200 ms",
    { gracePeriod: 200 },
    10,
    64 << 20,
    false,
    (s) => s.shutdown(),
  );
});

test("stream cut: 48 half-closed clients cut at shutdown get back everything the server read", async () => {
  await cutAndCheck(
    "48 half-closed, grace 0",
    { gracePeriod: 0 },
    48,
    512 * 1024,
    true,
    (s) => s.shutdown(),
  );
});

test("stream cut: shaped sessions cut at shutdown write out their queue first", async () => {
  await cutAndCheck(
    "4 shaped streamers (delay 200 ms), grace 0",
    { gracePeriod: 0, impair: { delay: 200 } },
    4,
    64 << 20,
    false,
    (s) => s.shutdown(),
  );
});

test("stream cut: maxSessionTime cuts lose nothing read, plain and shaped", async () => {
  for (const impair of [undefined, { delay: 200 }]) {
    await cutAndCheck(
      `maxSessionTime 300 ms${impair ? ", shaped" : ""}`,
      { maxSessionTime: 300, impair },
      4,
      64 << 20,
      false,
      async () => {},
    );
  }
});

test("stream cut: maxSessionBytes echoes exactly the cap; an exact-size client gets it all and a FIN", async () => {
  await cutAndCheck(
    "maxSessionBytes 1 MB",
    { maxSessionBytes: 1_000_000 },
    2,
    64 << 20,
    false,
    async () => {},
  );
  await using server = await serveEcho({
    hostname: HOST,
    port: 0,
    transport: "tcp",
    maxSessionBytes: 100_000,
  });
  const exact = pattern(100_000, 2);
  const conn = await Deno.connect({ hostname: HOST, port: server.addr.port });
  await conn.write(exact);
  const ending = await readUntilClosed(conn);
  conn.close();
  assert.equal(ending.end, "eof");
  assert.deepEqual(ending.received, exact);
});
