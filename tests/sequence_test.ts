import assert from "node:assert/strict";
import {
  decodeProbe,
  encodeProbe,
  type Probe,
  PROBE_HEADER_SIZE,
  type ReplyKind,
  type SequenceStats,
  SequenceTracker,
  verifyProbe,
} from "../sequence.ts";

/** The invariant every tracker must keep after every call. */
function assertInvariant(s: SequenceStats): void {
  assert.equal(
    s.sent,
    s.received + s.lost + s.late + s.outstanding,
    `sent ${s.sent} != received ${s.received} + lost ${s.lost} + late ${s.late} + outstanding ${s.outstanding}`,
  );
}

/** Send seqs 0..n-1 at times 0, 10, 20, ... */
function sendAll(t: SequenceTracker, n: number, interval = 10): void {
  for (let seq = 0; seq < n; seq++) t.sent(seq, seq * interval);
}

// ---------------------------------------------------------------------------------------------
// Probe payload

Deno.test("encode/decode round trip for header-only and padded probes", () => {
  const cases: Probe[] = [
    { runId: 0, seq: 0, sentAt: 0 },
    { runId: 0xffff_ffff, seq: Number.MAX_SAFE_INTEGER, sentAt: 123456.789 },
    { runId: 0x1234_5678, seq: 2 ** 32 + 5, sentAt: -0.5 },
    { runId: 42, seq: 65_535, sentAt: 1e15 },
  ];
  for (const size of [24, 25, 27, 28, 64, 1024, 1472, 65_535]) {
    for (const probe of cases) {
      const buf = new Uint8Array(size);
      encodeProbe(buf, probe);
      assert.deepEqual(decodeProbe(buf), probe);
      assert.ok(verifyProbe(buf, probe), `size ${size} ${JSON.stringify(probe)}`);
    }
  }
});

Deno.test("header layout is big-endian: magic, version, size, run id, seq, send time", () => {
  const buf = new Uint8Array(300);
  encodeProbe(buf, { runId: 0xa1b2c3d4, seq: 2 ** 32 * 3 + 0x01020304, sentAt: 1.5 });
  assert.deepEqual(
    [...buf.subarray(0, PROBE_HEADER_SIZE)],
    [
      0xec,
      1,
      0x01,
      0x2c, // 300
      0xa1,
      0xb2,
      0xc3,
      0xd4,
      0,
      0,
      0,
      3,
      0x01,
      0x02,
      0x03,
      0x04,
      // 1.5 as a big-endian float64
      0x3f,
      0xf8,
      0,
      0,
      0,
      0,
      0,
      0,
    ],
  );
});

Deno.test("padding bytes are pinned, so the wire format cannot change unnoticed", () => {
  // Golden bytes of format version 1: a 34-byte probe has 2 whole padding words and 2 bytes of
  // a third. A change here breaks verification between different versions of the toolkit.
  const buf = new Uint8Array(34);
  encodeProbe(buf, { runId: 1, seq: 2, sentAt: 3 });
  assert.deepEqual(
    [...buf.subarray(PROBE_HEADER_SIZE)],
    [0x64, 0xfd, 0x1d, 0x9c, 0x82, 0xd2, 0x99, 0x8b, 0x38, 0x3a],
  );
});

Deno.test("decodeProbe fills and returns the given object instead of allocating", () => {
  const buf = new Uint8Array(40);
  encodeProbe(buf, { runId: 5, seq: 6, sentAt: 7 });
  const into: Probe = { runId: 0, seq: 0, sentAt: 0 };
  assert.equal(decodeProbe(buf, into), into);
  assert.deepEqual(into, { runId: 5, seq: 6, sentAt: 7 });
});

Deno.test("padding is deterministic per (runId, seq) and differs between probes", () => {
  const a = new Uint8Array(200);
  const b = new Uint8Array(200);
  encodeProbe(a, { runId: 1, seq: 10, sentAt: 0 });
  encodeProbe(b, { runId: 1, seq: 10, sentAt: 0 });
  assert.deepEqual(a, b);
  const pad = (runId: number, seq: number) => {
    const buf = new Uint8Array(200);
    encodeProbe(buf, { runId, seq, sentAt: 0 });
    return buf.slice(PROBE_HEADER_SIZE);
  };
  assert.notDeepEqual(pad(1, 10), pad(1, 11));
  assert.notDeepEqual(pad(1, 10), pad(2, 10));
  assert.notDeepEqual(pad(1, 10), pad(1, 10 + 2 ** 32)); // the high word matters too
  // not a constant fill: many distinct byte values
  assert.ok(new Set(pad(3, 4)).size > 100);
});

Deno.test("verifyProbe catches any single flipped byte, header or padding", () => {
  const probe = { runId: 0xdeadbeef, seq: 77, sentAt: 9.25 };
  const buf = new Uint8Array(100);
  encodeProbe(buf, probe);
  for (let i = 0; i < buf.length; i++) {
    for (const bit of [0x01, 0x80]) {
      buf[i] ^= bit;
      assert.equal(verifyProbe(buf, probe), false, `byte ${i} bit ${bit} not caught`);
      buf[i] ^= bit;
    }
  }
  assert.ok(verifyProbe(buf, probe));
});

Deno.test("verifyProbe rejects a truncated or extended echo and a different probe", () => {
  const probe = { runId: 1, seq: 2, sentAt: 3 };
  const buf = new Uint8Array(2_000);
  encodeProbe(buf, probe);
  // a server with a 1024-byte receive buffer (as in the tutorial) truncates the probe
  const truncated = buf.subarray(0, 1024);
  assert.deepEqual(decodeProbe(truncated), probe); // the header still decodes...
  assert.equal(verifyProbe(truncated, probe), false); // ...but the size field says 2000
  const extended = new Uint8Array(2_001);
  extended.set(buf);
  assert.equal(verifyProbe(extended, probe), false);
  assert.equal(verifyProbe(buf, { ...probe, seq: 3 }), false);
  assert.equal(verifyProbe(buf, { ...probe, runId: 2 }), false);
  assert.equal(verifyProbe(buf, { ...probe, sentAt: 3.0000001 }), false);
  assert.equal(verifyProbe(buf.subarray(0, 23), probe), false);
});

Deno.test("short buffers: encode throws RangeError, decode returns undefined", () => {
  for (const size of [0, 1, 23]) {
    assert.throws(
      () => encodeProbe(new Uint8Array(size), { runId: 1, seq: 1, sentAt: 1 }),
      RangeError,
    );
    assert.equal(decodeProbe(new Uint8Array(size)), undefined);
  }
  assert.throws(
    () => encodeProbe(new Uint8Array(65_536), { runId: 1, seq: 1, sentAt: 1 }),
    RangeError,
  );
});

Deno.test("decodeProbe returns undefined for datagrams that are not probes", () => {
  const text = new TextEncoder().encode("Hello World, this is not a probe!");
  assert.equal(decodeProbe(text), undefined);
  const buf = new Uint8Array(24);
  encodeProbe(buf, { runId: 1, seq: 1, sentAt: 1 });
  const wrongVersion = buf.slice();
  wrongVersion[1] = 2;
  assert.equal(decodeProbe(wrongVersion), undefined);
  const hugeSeq = buf.slice();
  hugeSeq[8] = 0xff; // seq high word beyond 2^53
  assert.equal(decodeProbe(hugeSeq), undefined);
  const nanTime = buf.slice();
  nanTime.set([0x7f, 0xf8, 0, 0, 0, 0, 0, 0], 16);
  assert.equal(decodeProbe(nanTime), undefined);
});

Deno.test("encodeProbe rejects out-of-range fields with RangeError", () => {
  const buf = new Uint8Array(32);
  for (
    const probe of [
      { runId: -1, seq: 0, sentAt: 0 },
      { runId: 2 ** 32, seq: 0, sentAt: 0 },
      { runId: 1.5, seq: 0, sentAt: 0 },
      { runId: 0, seq: -1, sentAt: 0 },
      { runId: 0, seq: 0.5, sentAt: 0 },
      { runId: 0, seq: 2 ** 53, sentAt: 0 },
      { runId: 0, seq: 0, sentAt: NaN },
      { runId: 0, seq: 0, sentAt: Infinity },
    ]
  ) {
    assert.throws(() => encodeProbe(buf, probe), RangeError, JSON.stringify(probe));
  }
});

// ---------------------------------------------------------------------------------------------
// SequenceTracker

Deno.test("in-order replies: all received, nothing lost, rtt of the last reply", () => {
  const t = new SequenceTracker({ timeout: 1000 });
  for (let seq = 0; seq < 100; seq++) {
    t.sent(seq, seq * 10);
    assert.equal(t.received(seq, seq * 10 + 3), "reply");
    assertInvariant(t.stats);
  }
  t.expire(1e9);
  const s = t.stats;
  assert.deepEqual(s, {
    sent: 100,
    received: 100,
    lost: 0,
    late: 0,
    outstanding: 0,
    duplicates: 0,
    reordered: 0,
    unknown: 0,
    jitter: 0,
    rtt: 3,
  });
});

Deno.test("fresh tracker: zero counters, rtt NaN", () => {
  const s = new SequenceTracker({ timeout: 1 }).stats;
  assert.ok(Number.isNaN(s.rtt));
  assert.equal(s.sent + s.received + s.lost + s.late + s.outstanding + s.jitter, 0);
});

Deno.test("lost: expire declares lost exactly the probes with sentAt + timeout <= now", () => {
  const t = new SequenceTracker({ timeout: 100 });
  sendAll(t, 10); // seq k sent at 10k
  assert.equal(t.received(3, 35), "reply");
  assert.equal(t.expire(99), 0);
  assert.equal(t.stats.outstanding, 9);
  assert.equal(t.expire(100), 1); // seq 0 (0 + 100 <= 100)
  assert.equal(t.expire(135), 2); // seq 1 and 2; seq 3 was answered; seq 4 due at 140
  assert.equal(t.stats.lost, 3);
  assert.equal(t.expire(135), 0); // idempotent
  assert.equal(t.expire(1_000), 6); // 4..9
  const s = t.stats;
  assert.deepEqual([s.sent, s.received, s.lost, s.late, s.outstanding], [10, 1, 9, 0, 0]);
  assertInvariant(s);
});

Deno.test("late after expiry: a lost probe answered later moves from lost to late", () => {
  const t = new SequenceTracker({ timeout: 100 });
  t.sent(0, 0);
  t.sent(1, 10);
  t.expire(150); // both lost
  assert.deepEqual([t.stats.lost, t.stats.late], [2, 0]);
  assert.equal(t.received(0, 160), "late");
  let s = t.stats;
  assert.deepEqual([s.received, s.lost, s.late, s.outstanding], [0, 1, 1, 0]);
  assertInvariant(s);
  assert.equal(t.received(0, 170), "duplicate"); // a second reply to a late probe
  s = t.stats;
  assert.deepEqual([s.late, s.duplicates], [1, 1]);
  assertInvariant(s);
});

Deno.test("late before expiry ran: a reply at or after the timeout is late, never lost", () => {
  const t = new SequenceTracker({ timeout: 100 });
  t.sent(0, 0);
  t.sent(1, 0);
  t.sent(2, 0);
  assert.equal(t.received(0, 99.999), "reply");
  assert.equal(t.received(1, 100), "late"); // exactly at the timeout
  assert.equal(t.received(2, 5_000), "late");
  assert.equal(t.expire(10_000), 0);
  const s = t.stats;
  assert.deepEqual([s.received, s.lost, s.late, s.outstanding], [1, 0, 2, 0]);
  assert.equal(s.rtt, 99.999); // late replies do not update rtt or jitter
  assert.equal(s.jitter, 0);
  assertInvariant(s);
});

Deno.test("duplicates: second and later replies to one sequence", () => {
  const t = new SequenceTracker({ timeout: 1000 });
  sendAll(t, 3);
  const kinds: ReplyKind[] = [];
  for (const seq of [0, 0, 1, 0, 2, 2]) kinds.push(t.received(seq, 50));
  assert.deepEqual(kinds, ["reply", "duplicate", "reply", "duplicate", "reply", "duplicate"]);
  const s = t.stats;
  assert.deepEqual([s.received, s.duplicates, s.reordered], [3, 3, 0]);
  assertInvariant(s);
});

/** Feed `order` as replies (all sent first) and return the reordered count. */
function reorderedFor(order: number[]): number {
  const t = new SequenceTracker({ timeout: 1_000 });
  sendAll(t, Math.max(...order) + 1, 1);
  for (const seq of order) t.received(seq, 500);
  assertInvariant(t.stats);
  return t.stats.reordered;
}

Deno.test("reordering per RFC 4737: s is reordered when s < NextExp (highest seen + 1)", () => {
  // In order: none.
  assert.equal(reorderedFor([1, 2, 3, 4, 5, 6, 7, 8, 9, 10]), 0);
  // One packet late: 4 arrives after 5..10; only 4 is below NextExp.
  assert.equal(reorderedFor([1, 2, 3, 5, 6, 7, 8, 9, 10, 4]), 1);
  // A burst late: 4, 5, 6 arrive after 7..10; all three are below NextExp = 11.
  assert.equal(reorderedFor([1, 2, 3, 7, 8, 9, 10, 4, 5, 6]), 3);
  // One packet early: 4 arrives before 2 and 3; then 2 and 3 are both reordered (the
  // RFC 4737 singleton counts the packets that arrive after a higher one, not the early one).
  assert.equal(reorderedFor([1, 4, 2, 3, 5]), 2);
  // Fully reversed: every packet after the first is reordered.
  assert.equal(reorderedFor([5, 4, 3, 2, 1]), 4);
  // Loss alone is not reordering: 3 never arrives.
  assert.equal(reorderedFor([1, 2, 4, 5]), 0);
});

Deno.test("reordering ignores duplicates and counts late replies", () => {
  const t = new SequenceTracker({ timeout: 100 });
  sendAll(t, 4, 1);
  t.received(0, 50);
  t.received(2, 50);
  t.received(0, 51); // duplicate: below NextExp, but duplicates are not considered
  assert.equal(t.stats.reordered, 0);
  t.received(1, 60); // reordered
  t.expire(1_000); // seq 3 lost
  assert.equal(t.received(3, 1_001), "late"); // 3 > 2: in order, and now the highest
  t.received(3, 1_002); // duplicate
  const s = t.stats;
  assert.deepEqual([s.reordered, s.duplicates, s.late, s.received], [1, 2, 1, 3]);
  assertInvariant(s);
});

Deno.test("jitter follows RFC 3550's J += (|D| - J) / 16 over successive reply RTTs", () => {
  const t = new SequenceTracker({ timeout: 1000 });
  // RTTs 10, 12, 11, 15 -> D = +2, -1, +4
  //   J1 = 0      + (2 - 0)      / 16 = 0.125
  //   J2 = 0.125  + (1 - 0.125)  / 16 = 0.125 + 0.0546875 = 0.1796875
  //   J3 = 0.1796875 + (4 - 0.1796875) / 16 = 0.1796875 + 0.23876953125 = 0.41845703125
  const rtts = [10, 12, 11, 15];
  const expected = [0, 0.125, 0.1796875, 0.41845703125];
  rtts.forEach((rtt, seq) => {
    t.sent(seq, seq * 100);
    assert.equal(t.received(seq, seq * 100 + rtt), "reply");
    assert.equal(t.stats.jitter, expected[seq], `after reply ${seq}`);
    assert.equal(t.stats.rtt, rtt);
  });
});

Deno.test("jitter uses arrival order of replies, skipping lost probes", () => {
  const t = new SequenceTracker({ timeout: 1000 });
  t.sent(0, 0);
  t.sent(1, 100);
  t.sent(2, 200);
  t.received(2, 232); // rtt 32, first reply: J stays 0
  t.received(0, 240); // rtt 240, D = 208: J = 208 / 16 = 13
  // seq 1 never answered
  assert.equal(t.stats.jitter, 13);
  assert.equal(t.stats.rtt, 240);
});

Deno.test("unknown: never-sent, negative and non-integer sequence numbers", () => {
  const t = new SequenceTracker({ timeout: 1000 });
  assert.equal(t.received(0, 1), "unknown"); // nothing sent yet
  t.sent(0, 0);
  t.sent(5, 1); // gaps are allowed
  assert.equal(t.received(3, 2), "unknown"); // inside the gap
  assert.equal(t.received(6, 2), "unknown"); // above the highest sent
  assert.equal(t.received(-1, 2), "unknown");
  assert.equal(t.received(1.5, 2), "unknown");
  assert.equal(t.received(5, 2), "reply");
  const s = t.stats;
  assert.deepEqual([s.unknown, s.received, s.outstanding], [5, 1, 1]);
  assertInvariant(s);
});

Deno.test("window overflow: old sequences become unknown, outstanding ones count as lost", () => {
  const t = new SequenceTracker({ timeout: 1e9, window: 16 });
  sendAll(t, 16, 1); // 0..15 all outstanding, window full
  assert.equal(t.received(0, 100), "reply");
  t.sent(16, 200); // pushes seq 0 out (answered: nothing to count)
  t.sent(17, 200); // pushes seq 1 out while outstanding: lost
  let s = t.stats;
  assert.deepEqual([s.sent, s.received, s.lost, s.outstanding], [18, 1, 1, 16]);
  assertInvariant(s);
  assert.equal(t.received(0, 300), "unknown"); // would have been a duplicate: too old to tell
  assert.equal(t.received(1, 300), "unknown"); // too old: stays lost
  assert.equal(t.received(2, 300), "reply"); // oldest in the window
  assert.equal(t.received(17, 300), "reply");
  s = t.stats;
  assert.deepEqual([s.received, s.lost, s.unknown], [3, 1, 2]);
  assertInvariant(s);
});

Deno.test("window overflow by a jump larger than the window evicts everything once", () => {
  const t = new SequenceTracker({ timeout: 1e9, window: 8 });
  sendAll(t, 5, 1);
  t.received(4, 10);
  t.sent(1_000_000, 20);
  const s = t.stats;
  assert.deepEqual([s.sent, s.received, s.lost, s.outstanding], [6, 1, 4, 1]);
  assertInvariant(s);
  for (let seq = 0; seq < 5; seq++) assert.equal(t.received(seq, 30), "unknown");
  assert.equal(t.received(1_000_000, 30), "reply");
  assert.equal(t.expire(2e9), 0);
});

Deno.test("default window of 65,536: a run three times the window keeps exact counts", () => {
  const t = new SequenceTracker({ timeout: 50 });
  assert.equal(t.window, 65_536);
  // 200,000 probes, 1 ms apart (three times the window). By sequence number:
  //   multiple of 7            never answered: lost
  //   else multiple of 11      answered 100 ms later (after expiry): late, and reordered
  //   else multiple of 17      answered after the next in-time reply: reordered
  //   else                     answered 2 ms later; multiples of 13 answered twice
  const total = 200_000;
  const isLost = (seq: number) => seq % 7 === 0;
  const isLate = (seq: number) => !isLost(seq) && seq % 11 === 0;
  const isSwapped = (seq: number) => !isLost(seq) && !isLate(seq) && seq % 17 === 0;
  let expect = { received: 0, late: 0, duplicates: 0, reordered: 0 };
  let pending = -1;
  for (let seq = 0; seq < total; seq++) {
    t.sent(seq, seq);
    if (isSwapped(seq)) {
      pending = seq;
    } else if (!isLost(seq) && !isLate(seq)) {
      assert.equal(t.received(seq, seq + 2), "reply");
      expect.received++;
      if (pending >= 0) {
        assert.equal(t.received(pending, seq + 2), "reply");
        expect = { ...expect, received: expect.received + 1, reordered: expect.reordered + 1 };
        pending = -1;
      }
      if (seq % 13 === 0) {
        assert.equal(t.received(seq, seq + 3), "duplicate");
        expect.duplicates++;
      }
    }
    if (seq >= 100 && isLate(seq - 100)) {
      assert.equal(t.received(seq - 100, seq), "late");
      expect = { ...expect, late: expect.late + 1, reordered: expect.reordered + 1 };
    }
    t.expire(seq);
    if (seq % 9_973 === 0) assertInvariant(t.stats);
  }
  t.expire(total + 1_000);
  let expectLost = 0;
  for (let seq = 0; seq < total; seq++) {
    if (isLost(seq) || (isLate(seq) && seq + 100 >= total)) expectLost++;
  }
  const s = t.stats;
  assertInvariant(s);
  assert.equal(s.sent, total);
  assert.equal(s.received, expect.received);
  assert.equal(s.late, expect.late);
  assert.equal(s.lost, expectLost);
  assert.equal(s.duplicates, expect.duplicates);
  assert.equal(s.reordered, expect.reordered);
  assert.equal(s.outstanding, 0);
  assert.equal(s.unknown, 0);
  assert.ok(expect.late > 1_000 && expect.duplicates > 1_000 && expect.reordered > 2_000);
  assert.ok(expectLost > 28_000);
});

Deno.test("invalid options and calls throw RangeError", () => {
  for (
    const options of [
      { timeout: 0 },
      { timeout: -1 },
      { timeout: NaN },
      { timeout: Infinity },
      { timeout: 10, window: 0 },
      { timeout: 10, window: 1.5 },
      { timeout: 10, window: 2 ** 25 },
    ]
  ) {
    assert.throws(() => new SequenceTracker(options), RangeError, JSON.stringify(options));
  }
  assert.throws(() => new SequenceTracker({} as { timeout: number }), RangeError);
  const t = new SequenceTracker({ timeout: 10 });
  t.sent(5, 100);
  assert.throws(() => t.sent(5, 101), RangeError); // seq must increase
  assert.throws(() => t.sent(4, 101), RangeError);
  assert.throws(() => t.sent(6, 99), RangeError); // time must not go backwards
  assert.throws(() => t.sent(6, NaN), RangeError);
  assert.throws(() => t.sent(-1, 200), RangeError);
  assert.throws(() => t.received(5, NaN), RangeError);
  assert.throws(() => t.received(5, 99), RangeError); // before its send time
  assert.throws(() => t.expire(NaN), RangeError);
  assertInvariant(t.stats);
  assert.equal(t.stats.sent, 1);
});
