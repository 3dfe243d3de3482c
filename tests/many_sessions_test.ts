/**
 * Many sessions at once: past TURNS_FROM_SESSIONS the session loop takes turns to read
 * (_read_turns.ts); every byte must still come back exact, every session must be served, buffers grow
 * and shrink with the traffic, and no timer may outlive the sessions. No timing is asserted.
 *
 * @module
 */
import assert from "node:assert/strict";
import { Random, randomSeed } from "../_random.ts";
import { READS_PENDING, ReadTurns, TURNS_FROM_SESSIONS } from "../_read_turns.ts";
import { serveTcpEcho } from "../tcp.ts";
import { randomBytes, randomInt, test } from "./_helpers.ts";

const SEED = Number(Deno.env.get("ECHO_TEST_SEED") ?? randomSeed());
const HOST = "127.0.0.1";

/** Writes `data` in pieces and reads back exactly as many bytes, concurrently. */
async function exchange(conn: Deno.Conn, data: Uint8Array, random: Random): Promise<Uint8Array> {
  const reply = new Uint8Array(data.length);
  const reading = (async () => {
    let got = 0;
    while (got < reply.length) {
      const n = await conn.read(reply.subarray(got));
      if (n === null) throw new Error(`connection closed after ${got} of ${reply.length} bytes`);
      got += n;
    }
  })();
  let sent = 0;
  while (sent < data.length) {
    const piece = Math.min(data.length - sent, randomInt(random, 1, 70_000));
    let written = 0;
    while (written < piece) {
      written += await conn.write(data.subarray(sent + written, sent + piece));
    }
    sent += piece;
  }
  await reading;
  return reply;
}

test(`more sessions than TURNS_FROM_SESSIONS: every one is served byte-exact (seed ${SEED})`, async () => {
  const sessions = TURNS_FROM_SESSIONS + 60;
  await using server = serveTcpEcho({ hostname: HOST, port: 0 });
  const port = server.addr.port;
  const conns = await Promise.all(
    Array.from({ length: sessions }, () => Deno.connect({ hostname: HOST, port })),
  );
  try {
    // Each client does rounds of request/response of varied sizes (1 byte to 300 KiB), so
    // buffers grow past 64 KiB reads and shrink again while the line of turns is in use.
    const served = await Promise.all(conns.map(async (conn, i) => {
      const random = new Random(SEED + i);
      let rounds = 0;
      for (let round = 0; round < 6; round++) {
        const size = round === 2 && i % 16 === 0
          ? randomInt(random, 100_000, 300_000)
          : randomInt(random, 1, 3000);
        const data = randomBytes(size, random);
        const reply = await exchange(conn, data, random);
        assert.deepEqual(reply, data, `session ${i}, round ${round}, ${size} bytes (seed ${SEED})`);
        rounds++;
      }
      return rounds;
    }));
    assert.deepEqual(served, Array(sessions).fill(6));
    assert.equal(server.stats.sessionsOpen, sessions);
  } finally {
    for (const conn of conns) conn.close();
  }
  await server.shutdown();
  assert.equal(server.stats.sessionsOpen, 0);
  assert.equal(server.stats.sessionsTotal, sessions);
  assert.equal(server.stats.bytesIn, server.stats.bytesOut);
});

test("ReadTurns: reads start at once up to the allowance, then wait in arrival order", async () => {
  const turns = new ReadTurns(3);
  turns.enter();
  try {
    assert.equal(turns.take(), undefined);
    assert.equal(turns.take(), undefined);
    assert.equal(turns.take(), undefined);
    const order: number[] = [];
    const waits = [1, 2, 3, 4, 5].map((n) => {
      const turn = turns.take();
      assert.ok(turn instanceof Promise, `take ${n} must wait`);
      return turn.then(() => order.push(n));
    });
    assert.equal(turns.waiting, 5);
    await waits[2]; // the first turn lets three go, in order
    assert.deepEqual(order, [1, 2, 3]);
    assert.equal(turns.waiting, 2);
    // A newcomer waits behind those already in line, even though the allowance is not used up.
    const late = turns.take();
    assert.ok(late instanceof Promise);
    await Promise.all([...waits, late]);
    assert.deepEqual(order, [1, 2, 3, 4, 5]);
    assert.equal(turns.waiting, 0);
  } finally {
    // The last session leaving stops the ticking: the test's timer sanitizer would catch one left.
    turns.leave();
  }
});

test("ReadTurns: parked reads hold back new ones; done() makes room, and idle ones age out", async () => {
  const turns = new ReadTurns(8);
  turns.enter();
  try {
    // Reads that started and never completed (their clients are slow or quiet) are parked.
    const parked = Array.from({ length: READS_PENDING }, () => turns.started());
    const first = turns.take();
    assert.ok(first instanceof Promise, "no room while READS_PENDING reads are pending");
    for (const turn of parked.slice(0, 4)) turns.done(turn);
    await first; // a later turn has room for four again
    turns.started();
    // Fill the room up again: the next take has to wait.
    let waiting: Promise<void> | undefined;
    while (!(waiting = turns.take())) turns.started();
    // Never marked done, the parked reads age out after a number of turns: nobody waits forever.
    await waiting;
    assert.equal(turns.waiting, 0);
  } finally {
    turns.leave();
  }
});

test("ReadTurns: idle sessions do not make reads take turns; many that read do", () => {
  const turns = new ReadTurns();
  const open = TURNS_FROM_SESSIONS + 400;
  for (let i = 0; i < open; i++) turns.enter();
  try {
    assert.ok(turns.crowded);
    // One busy session among hundreds of idle ones reads and reads again: no turns.
    let window = 0;
    for (let i = 0; i < 1000; i++) window = turns.note(window);
    assert.equal(turns.busy, false);
    // Many sessions reading within the window: turns.
    for (let i = 0; i < TURNS_FROM_SESSIONS + 1; i++) turns.note(0);
    assert.equal(turns.busy, true);
  } finally {
    for (let i = 0; i < open; i++) turns.leave();
  }
});
