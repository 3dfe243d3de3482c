import assert from "node:assert/strict";
import { Random, randomSeed } from "../_random.ts";
import {
  DEFAULT_MAX_HELD,
  type ImpairOptions,
  isImpairing,
  isShaping,
  TcpShaper,
  UdpImpairment,
  validateImpairOptions,
  validateTcpShaperOptions,
} from "../impair.ts";

// ---------------------------------------------------------------------------------------------
// Helpers

/** The caller's address type in these tests: opaque to the stage, passed through untouched. */
interface Peer {
  name: string;
}

interface Sent {
  seq: number;
  key: string;
  to: Peer;
  at: number;
  /** Whether the send happened while the test was still inside its synchronous submit loop. */
  duringSubmit: boolean;
  data: Uint8Array;
}

function encode(seq: number, buffer = new Uint8Array(4)): Uint8Array {
  new DataView(buffer.buffer, buffer.byteOffset, buffer.byteLength).setUint32(0, seq);
  return buffer;
}

function decode(data: Uint8Array): number {
  return new DataView(data.buffer, data.byteOffset, data.byteLength).getUint32(0);
}

/**
 * A recording send function. `until(n)` resolves once n sends have happened (driven by the
 * sends themselves, not by sleeping); a 5 s guard turns a hang into a clear failure.
 */
function recorder() {
  const sent: Sent[] = [];
  let submitting = false;
  let waiter: { count: number; resolve: () => void } | undefined;
  const send = (data: Uint8Array, to: Peer, key: string): void => {
    // Decode now: a missing copy would show as a wrong sequence number here.
    sent.push({
      seq: decode(data),
      key,
      to,
      at: performance.now(),
      duringSubmit: submitting,
      data,
    });
    if (waiter !== undefined && sent.length >= waiter.count) {
      const { resolve } = waiter;
      waiter = undefined;
      resolve();
    }
  };
  const until = (count: number): Promise<void> => {
    if (sent.length >= count) return Promise.resolve();
    return new Promise<void>((resolve, reject) => {
      const guard = setTimeout(
        () => reject(new Error(`only ${sent.length} of ${count} replies were sent`)),
        5000,
      );
      waiter = {
        count,
        resolve: () => {
          clearTimeout(guard);
          resolve();
        },
      };
    });
  };
  const submitLoop = (body: () => void): void => {
    submitting = true;
    try {
      body();
    } finally {
      submitting = false;
    }
  };
  return { sent, send, until, submitLoop };
}

const peers: Peer[] = [{ name: "a" }, { name: "b" }, { name: "c" }, { name: "d" }];
const keyOf = (peer: Peer): string => `127.0.0.1:${40000 + peers.indexOf(peer)}`;

/** Generous two-sided bound on a binomial count: 4 standard deviations. */
function assertBinomial(label: string, count: number, trials: number, p: number): void {
  const mean = trials * p;
  const bound = 4 * Math.sqrt(trials * p * (1 - p));
  assert.ok(
    Math.abs(count - mean) <= bound,
    `${label}: ${count} of ${trials}, expected ${mean.toFixed(1)} ± ${bound.toFixed(1)}`,
  );
}

/** For each sent entry: how many replies to the same source that arrived later went out before. */
function overtakers(sent: Sent[]): number[] {
  return sent.map((entry, i) =>
    sent.slice(0, i).filter((other) => other.key === entry.key && other.seq > entry.seq).length
  );
}

/**
 * Deno.test with the op and resource sanitizers on: in Deno 2.9 they are off by default, and they
 * are what proves that a stage left no timer behind.
 */
function test(name: string, fn: () => void | Promise<void>): void {
  Deno.test({ name, sanitizeOps: true, sanitizeResources: true, fn });
}

// ---------------------------------------------------------------------------------------------
// _random.ts

test("Random matches the C reference of xoshiro128** seeded by SplitMix32", () => {
  // Produced by the reference xoshiro128starstar.c (prng.di.unimi.it) with its four state words
  // filled by the SplitMix32 described in _random.ts, compiled with gcc. The same program gives
  // 11520 0 5927040 70819200 2031721883 1637235492 from state {1, 2, 3, 4}, the published check.
  const vectors: Record<number, number[]> = {
    0: [1789933344, 44971166, 2521387044, 3848737593, 1138324114, 749234105],
    42: [660444221, 3652823732, 77672526, 910233633, 2297337756, 3786072677],
    4294967295: [4104197751, 1825856343, 1152209388, 2427537429, 3685145430, 609215610],
  };
  for (const [seed, expected] of Object.entries(vectors)) {
    const random = new Random(Number(seed));
    assert.deepEqual(expected.map(() => random.nextUint32()), expected, `seed ${seed}`);
  }
});

test("Random: same seed same sequence, next() in [0, 1) with a sane mean", () => {
  const a = new Random(12345);
  const b = new Random(12345);
  const c = new Random(12346);
  const n = 20_000;
  let sum = 0;
  let differs = false;
  for (let i = 0; i < n; i++) {
    const u = a.next();
    assert.equal(u, b.next());
    if (u !== c.next()) differs = true;
    assert.ok(u >= 0 && u < 1, `out of range: ${u}`);
    sum += u;
  }
  assert.ok(differs, "neighbouring seeds must give different sequences");
  // Mean of n uniforms: standard deviation sqrt(1/12/n).
  assert.ok(Math.abs(sum / n - 0.5) <= 4 * Math.sqrt(1 / 12 / n), `mean ${sum / n}`);
  assert.equal(a.seed, 12345);
  const seed = randomSeed();
  assert.ok(Number.isInteger(seed) && seed >= 0 && seed <= 0xffffffff);
});

test("Random rejects seeds outside [0, 2^32)", () => {
  for (const seed of [-1, 1.5, 2 ** 32, NaN]) {
    assert.throws(() => new Random(seed), {
      name: "RangeError",
      message: `seed must be an integer between 0 and 4294967295, got ${seed}`,
    });
  }
});

// ---------------------------------------------------------------------------------------------
// Options

test("validateImpairOptions accepts good options and names the bad one", () => {
  validateImpairOptions({});
  validateImpairOptions({
    loss: 0,
    duplicate: 1,
    reorder: 0.5,
    delay: 0,
    jitter: 10,
    seed: 0,
    maxHeld: 1,
  });
  const cases: [ImpairOptions, string, string][] = [
    [{ loss: 1.5 }, "RangeError", "loss must be a probability between 0 and 1, got 1.5"],
    [
      { duplicate: -0.1 },
      "RangeError",
      "duplicate must be a probability between 0 and 1, got -0.1",
    ],
    [{ reorder: NaN }, "RangeError", "reorder must be a probability between 0 and 1, got NaN"],
    [{ delay: -5 }, "RangeError", "delay must be between 0 and 86400000 ms, got -5"],
    [{ jitter: Infinity }, "RangeError", "jitter must be between 0 and 86400000 ms, got Infinity"],
    [{ seed: 1.5 }, "RangeError", "seed must be an integer between 0 and 4294967295, got 1.5"],
    [
      { seed: 2 ** 32 },
      "RangeError",
      "seed must be an integer between 0 and 4294967295, got 4294967296",
    ],
    [{ maxHeld: 0 }, "RangeError", "maxHeld must be an integer of at least 1, got 0"],
    [{ loss: "0.2" as unknown as number }, "TypeError", "loss must be a number, got string"],
    [null as unknown as ImpairOptions, "TypeError", "options must be an object, got null"],
  ];
  for (const [options, name, message] of cases) {
    assert.throws(() => validateImpairOptions(options), { name, message });
    assert.throws(() => new UdpImpairment(() => {}, options), { name, message });
  }
  assert.throws(
    () => new UdpImpairment(undefined as unknown as () => void, {}),
    { name: "TypeError", message: "send must be a function, got undefined" },
  );
});

test("isImpairing is true only when something is asked for", () => {
  assert.equal(isImpairing({}), false);
  assert.equal(isImpairing({ seed: 1, maxHeld: 10, loss: 0, delay: 0 }), false);
  for (const key of ["loss", "duplicate", "reorder", "delay", "jitter"] as const) {
    assert.equal(isImpairing({ [key]: 0.5 }), true, key);
  }
});

test("describe() summarises the stage and always names the seed", () => {
  const cases: [ImpairOptions, string][] = [
    [
      { loss: 0.2, reorder: 0.1, delay: 50, jitter: 10, seed: 42 },
      "loss 20%, reorder 10%, delay 50ms±10ms, seed 42",
    ],
    [{ duplicate: 0.005, seed: 1 }, "duplicate 0.5%, seed 1"],
    [{ delay: 20, seed: 2 }, "delay 20ms, seed 2"],
    [{ jitter: 5, seed: 3 }, "delay 0ms±5ms, seed 3"],
    [{ seed: 9 }, "no impairment, seed 9"],
    [{ loss: 0.1, maxHeld: 10, seed: 4 }, "loss 10%, max held 10, seed 4"],
  ];
  for (const [options, expected] of cases) {
    const stage = new UdpImpairment(() => {}, options);
    assert.equal(stage.describe(), expected);
    stage.close();
  }
  const unseeded = new UdpImpairment(() => {}, { loss: 0.5 });
  assert.ok(Number.isInteger(unseeded.seed));
  assert.equal(unseeded.describe(), `loss 50%, seed ${unseeded.seed}`);
  unseeded.close();
});

// ---------------------------------------------------------------------------------------------
// UdpImpairment: loss, duplicate, reorder

test("measured loss, duplicate and reorder rates match the asked probabilities", async () => {
  const n = 10_000;
  const p = { loss: 0.2, duplicate: 0.1, reorder: 0.1 };
  const rec = recorder();
  const stage = new UdpImpairment<Peer>(rec.send, { ...p, seed: 20240601 });
  const buffer = new Uint8Array(4);
  rec.submitLoop(() => {
    for (let seq = 0; seq < n; seq++) {
      const peer = peers[seq % 2];
      stage.submit(encode(seq, buffer), peer, keyOf(peer)); // one buffer, reused every time
    }
  });
  const kept = n - stage.dropped;
  await rec.until(kept + stage.duplicated);
  assert.equal(stage.held, 0);
  stage.close();

  assertBinomial("dropped", stage.dropped, n, p.loss);
  assertBinomial("duplicated", stage.duplicated, kept, p.duplicate);
  assertBinomial("reordered", stage.reordered, kept, p.reorder);
  assert.equal(stage.delayed, 0);
  assert.equal(stage.overflow, 0);
  assert.equal(stage.discarded, 0);

  // The same counts, measured from what was sent.
  const copies = new Map<number, number>();
  for (const { seq } of rec.sent) copies.set(seq, (copies.get(seq) ?? 0) + 1);
  assert.equal(copies.size, kept, "every kept reply arrives");
  assert.equal([...copies.values()].filter((c) => c === 2).length, stage.duplicated);
  assert.ok([...copies.values()].every((c) => c === 1 || c === 2));
  for (const { seq, to, key } of rec.sent) {
    assert.equal(to, peers[seq % 2], "the address is passed through");
    assert.equal(key, keyOf(peers[seq % 2]));
  }
  const firstCopies = rec.sent.filter((entry, i) =>
    rec.sent.findIndex((other) => other.seq === entry.seq) === i
  );
  const overtaken = overtakers(firstCopies).filter((count) => count > 0).length;
  // Held replies near the end of the run may have had no later reply to be overtaken by.
  assert.ok(
    overtaken <= stage.reordered && overtaken >= stage.reordered - 10,
    `${overtaken} overtaken, ${stage.reordered} held back`,
  );
});

test("reordered replies are overtaken by exactly 3 later replies, or time out, and all arrive", async () => {
  const n = 600;
  const rec = recorder();
  const stage = new UdpImpairment<Peer>(rec.send, { reorder: 0.3, seed: 7 });
  const submittedAt = new Map<number, number>();
  rec.submitLoop(() => {
    for (let seq = 0; seq < n; seq++) {
      const peer = peers[seq % 3];
      submittedAt.set(seq, performance.now());
      stage.submit(encode(seq), peer, keyOf(peer));
    }
  });
  await rec.until(n);
  assert.equal(stage.held, 0);
  stage.close();

  assert.deepEqual(rec.sent.map((s) => s.seq).sort((a, b) => a - b), [...Array(n).keys()]);
  assert.ok(stage.reordered > 0);
  const counts = overtakers(rec.sent);
  let releasedByOvertaking = 0;
  let releasedByTimeout = 0;
  rec.sent.forEach((entry, i) => {
    if (entry.duringSubmit) {
      // Sent while replies were still arriving: either in order, or after exactly 3 later ones.
      assert.ok(counts[i] === 0 || counts[i] === 3, `seq ${entry.seq}: ${counts[i]} overtakers`);
      if (counts[i] === 3) releasedByOvertaking++;
    } else {
      // Sent by the 100 ms hold timer: fewer than 3 later replies had gone out.
      releasedByTimeout++;
      assert.ok(counts[i] < 3);
      assert.ok(entry.at >= submittedAt.get(entry.seq)! + 100 - 1);
    }
  });
  assert.equal(releasedByOvertaking + releasedByTimeout, stage.reordered);
  assert.ok(releasedByTimeout <= 10, `${releasedByTimeout} replies waited for the hold timer`);
});

test("same seed gives identical decisions; features do not shift each other's draws", async () => {
  const n = 2000;
  const run = async (
    options: ImpairOptions,
  ): Promise<{ order: number[]; stage: UdpImpairment<Peer> }> => {
    const rec = recorder();
    const stage = new UdpImpairment<Peer>(rec.send, options);
    for (let seq = 0; seq < n; seq++) {
      const peer = peers[seq % 4];
      stage.submit(encode(seq), peer, keyOf(peer));
    }
    await rec.until(n - stage.dropped + stage.duplicated);
    stage.close();
    return { order: rec.sent.map((s) => s.seq), stage };
  };
  const options = { loss: 0.3, duplicate: 0.2, reorder: 0.2, seed: 99 };
  const first = await run(options);
  const second = await run(options);
  assert.deepEqual(second.order, first.order);
  for (const counter of ["dropped", "duplicated", "reordered"] as const) {
    assert.equal(second.stage[counter], first.stage[counter], counter);
  }
  const other = await run({ ...options, seed: 100 });
  assert.notDeepEqual(other.order, first.order);

  // The generator is drawn four times per reply whatever is on: loss alone drops the same replies.
  const lossOnly = await run({ loss: 0.3, seed: 99 });
  const kept = (order: number[]) => [...new Set(order)].sort((a, b) => a - b);
  assert.deepEqual(kept(lossOnly.order), kept(first.order));
  assert.deepEqual(lossOnly.order, kept(lossOnly.order), "loss alone keeps order");
});

// ---------------------------------------------------------------------------------------------
// UdpImpairment: delay and jitter

test("with delay, no reply goes out before its submit time plus the delay", async () => {
  const delay = 15;
  const n = 60;
  const rec = recorder();
  const stage = new UdpImpairment<Peer>(rec.send, { delay, seed: 1 });
  const submittedAt: number[] = [];
  const buffer = new Uint8Array(4);
  rec.submitLoop(() => {
    for (let seq = 0; seq < n; seq++) {
      const peer = peers[seq % 2];
      submittedAt[seq] = performance.now();
      stage.submit(encode(seq, buffer), peer, keyOf(peer));
    }
  });
  assert.equal(rec.sent.length, 0, "nothing goes out synchronously");
  assert.equal(stage.delayed, n);
  assert.equal(stage.held, n);
  await rec.until(n);
  stage.close();
  for (const entry of rec.sent) {
    assert.ok(
      entry.at >= submittedAt[entry.seq] + delay - 1,
      `seq ${entry.seq} sent ${(entry.at - submittedAt[entry.seq]).toFixed(2)} ms after submit`,
    );
    assert.notEqual(entry.data, buffer, "a delayed reply is a copy");
  }
  for (const peer of peers.slice(0, 2)) {
    const order = rec.sent.filter((s) => s.key === keyOf(peer)).map((s) => s.seq);
    assert.deepEqual(order, [...order].sort((a, b) => a - b));
    assert.equal(order.length, n / 2);
  }
});

test("jitterKeepOrder without reorder keeps per-source order; sources do not wait for each other", async () => {
  const n = 400;
  const rec = recorder();
  const stage = new UdpImpairment<Peer>(rec.send, {
    delay: 10,
    jitter: 10,
    jitterKeepOrder: true,
    seed: 5,
  });
  rec.submitLoop(() => {
    for (let seq = 0; seq < n; seq++) {
      const peer = peers[seq % 4];
      stage.submit(encode(seq), peer, keyOf(peer));
    }
  });
  await rec.until(n);
  stage.close();
  assert.equal(stage.reordered, 0);
  for (const peer of peers) {
    const order = rec.sent.filter((s) => s.key === keyOf(peer)).map((s) => s.seq);
    assert.equal(order.length, n / 4);
    assert.deepEqual(order, [...order].sort((a, b) => a - b), `order for ${peer.name}`);
  }
  // Across sources the jitter shows: some reply overtakes an earlier one to another source.
  const all = rec.sent.map((s) => s.seq);
  assert.notDeepEqual(all, [...all].sort((a, b) => a - b));
});

test("reorder with delay: held replies are overtaken but never go before their delay", async () => {
  const delay = 10;
  const n = 300;
  const rec = recorder();
  const stage = new UdpImpairment<Peer>(rec.send, {
    delay,
    jitter: 5,
    jitterKeepOrder: true,
    reorder: 0.2,
    seed: 8,
  });
  const submittedAt: number[] = [];
  rec.submitLoop(() => {
    for (let seq = 0; seq < n; seq++) {
      const peer = peers[seq % 2];
      submittedAt[seq] = performance.now();
      stage.submit(encode(seq), peer, keyOf(peer));
    }
  });
  await rec.until(n);
  assert.equal(stage.held, 0);
  stage.close();
  assert.deepEqual(rec.sent.map((s) => s.seq).sort((a, b) => a - b), [...Array(n).keys()]);
  for (const entry of rec.sent) {
    assert.ok(entry.at >= submittedAt[entry.seq] + delay - 5 - 1, `seq ${entry.seq} early`);
  }
  const overtaken = overtakers(rec.sent).filter((count) => count > 0).length;
  assert.ok(stage.reordered > 0 && overtaken > 0);
  assert.ok(overtaken <= stage.reordered, `${overtaken} overtaken, ${stage.reordered} held back`);
});

test("the caller's buffer is copied only when a reply is held", async () => {
  const rec = recorder();
  const direct = new UdpImpairment<Peer>(rec.send, { loss: 0.5, duplicate: 0.5, seed: 3 });
  const buffer = new Uint8Array(4);
  for (let seq = 0; seq < 100; seq++) direct.submit(encode(seq, buffer), peers[0], keyOf(peers[0]));
  assert.ok(rec.sent.length > 0);
  assert.ok(
    rec.sent.every((s) => s.data === buffer),
    "the immediate path passes the buffer through",
  );
  direct.close();

  // Reorder only: replies not held go straight through, held ones are copies.
  const rec2 = recorder();
  const mixed = new UdpImpairment<Peer>(rec2.send, { reorder: 0.5, seed: 3 });
  rec2.submitLoop(() => {
    for (let seq = 0; seq < 100; seq++) {
      mixed.submit(encode(seq, buffer), peers[0], keyOf(peers[0]));
    }
  });
  await rec2.until(100);
  mixed.close();
  const counts = overtakers(rec2.sent);
  rec2.sent.forEach((s, i) => {
    if (counts[i] === 0 && s.duringSubmit) assert.equal(s.data, buffer);
    if (counts[i] > 0) assert.notEqual(s.data, buffer);
  });
  assert.deepEqual(rec2.sent.map((s) => s.seq).sort((a, b) => a - b), [...Array(100).keys()]);
});

// ---------------------------------------------------------------------------------------------
// UdpImpairment: limits, close, errors

test("replies beyond maxHeld are dropped and counted in overflow", async () => {
  const rec = recorder();
  const delayed = new UdpImpairment<Peer>(rec.send, { delay: 5, maxHeld: 10, seed: 1 });
  for (let seq = 0; seq < 25; seq++) {
    delayed.submit(encode(seq), peers[seq % 2], keyOf(peers[seq % 2]));
  }
  assert.equal(delayed.delayed, 10);
  assert.equal(delayed.overflow, 15);
  assert.equal(delayed.held, 10);
  await rec.until(10);
  assert.deepEqual(rec.sent.map((s) => s.seq).sort((a, b) => a - b), [...Array(10).keys()]);
  assert.equal(delayed.held, 0);
  // Room again once the held replies have gone.
  delayed.submit(encode(99), peers[0], keyOf(peers[0]));
  assert.equal(delayed.overflow, 15);
  await rec.until(11);
  delayed.close();

  const rec2 = recorder();
  const reordering = new UdpImpairment<Peer>(rec2.send, { reorder: 1, maxHeld: 5, seed: 1 });
  for (let seq = 0; seq < 8; seq++) reordering.submit(encode(seq), peers[0], keyOf(peers[0]));
  assert.equal(reordering.reordered, 5);
  assert.equal(reordering.overflow, 3);
  await rec2.until(5); // by the 100 ms hold timer: nothing else went out to overtake them
  assert.deepEqual(rec2.sent.map((s) => s.seq), [0, 1, 2, 3, 4]);
  reordering.close();
  assert.equal(DEFAULT_MAX_HELD, 4096);
});

test("close() cancels every timer and counts what it discards", () => {
  const rec = recorder();
  const stage = new UdpImpairment<Peer>(rec.send, { delay: 60_000, reorder: 0.5, seed: 11 });
  for (let seq = 0; seq < 20; seq++) {
    stage.submit(encode(seq), peers[seq % 3], keyOf(peers[seq % 3]));
  }
  assert.equal(stage.held, 20);
  assert.equal(stage.reordered + stage.delayed, 20);
  stage.close();
  assert.equal(stage.discarded, 20);
  assert.equal(stage.held, 0);
  stage.submit(encode(20), peers[0], keyOf(peers[0]));
  assert.equal(stage.discarded, 21);
  stage.close();
  assert.equal(rec.sent.length, 0);
  // The op sanitizer (see test()) fails this test if any timer is still pending here.
});

test("a throwing send: immediate path throws, deferred sends are counted", async () => {
  const boom = () => {
    throw new Error("socket closed");
  };
  const direct = new UdpImpairment<Peer>(boom, { loss: 0.01, seed: 1 });
  assert.throws(() => direct.submit(encode(0), peers[0], keyOf(peers[0])), /socket closed/);
  direct.close();

  let calls = 0;
  let done!: () => void;
  const finished = new Promise<void>((resolve) => (done = resolve));
  const deferred = new UdpImpairment<Peer>(() => {
    if (++calls === 3) done();
    throw new Error("socket closed");
  }, { delay: 2, seed: 1 });
  for (let seq = 0; seq < 3; seq++) deferred.submit(encode(seq), peers[0], keyOf(peers[0]));
  await finished;
  assert.equal(deferred.sendErrors, 3);
  assert.equal(deferred.held, 0);
  deferred.close();
});

// ---------------------------------------------------------------------------------------------
// TcpShaper

test("TcpShaper: delay only adds delay and keeps order", () => {
  const shaper = new TcpShaper({ delay: 20 });
  assert.equal(shaper.sendTime(1000, 512), 1020);
  assert.equal(shaper.sendTime(1005, 1 << 20), 1025);
  assert.equal(shaper.sendTime(990, 1), 1025, "never before the previous chunk");
  assert.equal(shaper.describe(), "delay 20ms");
  assert.equal(new TcpShaper({}).describe(), "no shaping");
  assert.equal(isShaping({}), false);
  assert.equal(isShaping({ delay: 0 }), false);
  assert.equal(isShaping({ delay: 1 }), true);
  assert.equal(isShaping({ bandwidth: 1 }), true);
});

test("TcpShaper: token-bucket arithmetic", () => {
  const a = new TcpShaper({ bandwidth: 1000, burst: 100 });
  assert.deepEqual([0, 1, 2].map(() => a.sendTime(0, 100)), [0, 100, 200]);
  // Idle long enough to refill the bucket (capped at burst): goes at once, then paces again.
  assert.equal(a.sendTime(1000, 100), 1000);
  assert.equal(a.sendTime(1000, 50), 1050);
  // A chunk larger than the bucket waits for a full bucket and leaves it in debt.
  const b = new TcpShaper({ bandwidth: 1000, burst: 100 });
  assert.equal(b.sendTime(0, 300), 0);
  assert.equal(b.sendTime(0, 50), 250);
  // Delay and bandwidth together: paced from receivedAt + delay.
  const c = new TcpShaper({ delay: 10, bandwidth: 2000, burst: 100 });
  assert.deepEqual([0, 0, 0].map(() => c.sendTime(0, 100)), [10, 60, 110]);
  // Default burst: 10 ms worth, at most 16 KiB, at least 1 byte.
  assert.equal(new TcpShaper({ bandwidth: 1000 }).burst, 10);
  assert.equal(new TcpShaper({ bandwidth: 1e9 }).burst, 16384);
  assert.equal(new TcpShaper({ bandwidth: 50 }).burst, 1);
  assert.equal(new TcpShaper({}).burst, Infinity);
  assert.equal(
    new TcpShaper({ delay: 5, bandwidth: 125000 }).describe(),
    "delay 5ms, bandwidth 125000 B/s",
  );
  assert.equal(
    new TcpShaper({ bandwidth: 1000, burst: 100 }).describe(),
    "bandwidth 1000 B/s, burst 100 B",
  );
});

test("TcpShaper: monotone, never early, and within burst + bandwidth × time", () => {
  const random = new Random(2718);
  const bandwidth = 50_000;
  const delay = 3;
  const shaper = new TcpShaper({ delay, bandwidth });
  const chunks: { receivedAt: number; bytes: number; at: number }[] = [];
  let clock = 0;
  for (let i = 0; i < 400; i++) {
    // Arrivals mostly forward in time, sometimes slightly out of order, sometimes idle.
    clock += random.next() < 0.1 ? 50 * random.next() : random.next() * 2 - 0.5;
    const bytes = 1 + Math.floor(random.next() * shaper.burst);
    chunks.push({ receivedAt: clock, bytes, at: shaper.sendTime(clock, bytes) });
  }
  const eps = 1e-6;
  for (let j = 0; j < chunks.length; j++) {
    assert.ok(chunks[j].at >= chunks[j].receivedAt + delay - eps, `chunk ${j} early`);
    if (j > 0) assert.ok(chunks[j].at >= chunks[j - 1].at, `chunk ${j} out of order`);
    let bytes = 0;
    for (let i = j; i >= 0; i--) {
      bytes += chunks[i].bytes;
      const allowed = shaper.burst + bandwidth * (chunks[j].at - chunks[i].at) / 1000;
      assert.ok(bytes <= allowed + eps, `chunks ${i}..${j}: ${bytes} bytes > ${allowed}`);
    }
  }
  // Backlogged from time 0: the last chunk goes exactly when the rate allows.
  const backlog = new TcpShaper({ bandwidth, burst: 1000 });
  let total = 0;
  let last = 0;
  for (let i = 0; i < 200; i++) {
    const bytes = 1 + Math.floor(random.next() * 1000);
    last = backlog.sendTime(0, bytes);
    total += bytes;
    if (i === 199) total -= bytes - Math.min(bytes, 1000);
  }
  assert.ok(Math.abs(last - (total - 1000) / bandwidth * 1000) < 1e-6, `last at ${last}`);
});

test("TcpShaper validates its options and arguments", () => {
  validateTcpShaperOptions({});
  const cases: [Parameters<typeof validateTcpShaperOptions>[0], string, string][] = [
    [{ delay: -1 }, "RangeError", "delay must be between 0 and 86400000 ms, got -1"],
    [
      { bandwidth: 0 },
      "RangeError",
      "bandwidth must be a positive finite number of bytes per second, got 0",
    ],
    [
      { bandwidth: Infinity },
      "RangeError",
      "bandwidth must be a positive finite number of bytes per second, got Infinity",
    ],
    [
      { burst: 0.5 },
      "RangeError",
      "burst must be a finite number of bytes of at least 1, got 0.5",
    ],
    [
      { bandwidth: "fast" as unknown as number },
      "TypeError",
      "bandwidth must be a number, got string",
    ],
  ];
  for (const [options, name, message] of cases) {
    assert.throws(() => validateTcpShaperOptions(options), { name, message });
    assert.throws(() => new TcpShaper(options), { name, message });
  }
  const shaper = new TcpShaper({ bandwidth: 1000 });
  assert.throws(() => shaper.sendTime(NaN, 1), {
    name: "RangeError",
    message: "receivedAt must be a finite time in ms, got NaN",
  });
  assert.throws(() => shaper.sendTime(0, -1), {
    name: "RangeError",
    message: "bytes must be a finite number of at least 0, got -1",
  });
});
