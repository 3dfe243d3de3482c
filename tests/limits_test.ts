import assert from "node:assert/strict";
import {
  DEFAULT_LIMITS,
  DEFAULT_MAX_SOURCES,
  defaultUdpRate,
  effectiveMaxConnections,
  FD_HEADROOM,
  fileDescriptorLimit,
  RateLimiter,
} from "../limits.ts";

Deno.test("DEFAULT_LIMITS: the documented values, frozen", () => {
  assert.deepEqual(DEFAULT_LIMITS, {
    maxConnections: 4096,
    idleTimeout: 300_000,
    maxSessionBytes: undefined,
    maxSessionTime: undefined,
    udpRate: 1000,
  });
  assert.ok(Object.isFrozen(DEFAULT_LIMITS));
});

Deno.test("defaultUdpRate: off on loopback binds, on elsewhere (wildcards included)", () => {
  for (const host of ["127.0.0.1", "127.1.2.3", "::1", "::ffff:127.0.0.1", "localhost"]) {
    assert.equal(defaultUdpRate(host), undefined, host);
  }
  for (const host of ["0.0.0.0", "::", "192.0.2.1", "2001:db8::1", "example.com", "::ffff:0:0"]) {
    assert.equal(defaultUdpRate(host), 1000, host);
  }
});

Deno.test("RateLimiter: burst, then refill at the rate, capped at burst", () => {
  const limiter = new RateLimiter({ rate: 10, burst: 3 });
  assert.equal(limiter.rate, 10);
  assert.equal(limiter.burst, 3);
  assert.equal(limiter.maxSources, DEFAULT_MAX_SOURCES);
  const take = (now: number) => limiter.take("a", now);
  assert.deepEqual([take(0), take(0), take(0), take(0)], [true, true, true, false]);
  assert.equal(take(99), false); // 0.99 of a token
  assert.equal(take(100), true); // 1 token after 100 ms at 10/s
  assert.equal(take(100), false);
  // A long quiet spell refills only up to burst.
  assert.deepEqual([take(60_000), take(60_000), take(60_000), take(60_000)], [
    true,
    true,
    true,
    false,
  ]);
  // Sustained: over 10 simulated seconds at one attempt per ms, about rate * 10 are allowed.
  let allowed = 0;
  for (let now = 70_000; now < 80_000; now++) if (take(now)) allowed++;
  assert.ok(allowed >= 100 && allowed <= 103, `allowed ${allowed}`);
});

Deno.test("RateLimiter: default burst is one second's worth (at least 1)", () => {
  const fast = new RateLimiter({ rate: 1000 });
  assert.equal(fast.burst, 1000);
  let allowed = 0;
  for (let i = 0; i < 1500; i++) if (fast.take("x", 0)) allowed++;
  assert.equal(allowed, 1000);

  const slow = new RateLimiter({ rate: 0.5 });
  assert.equal(slow.burst, 1);
  assert.equal(slow.take("x", 0), true);
  assert.equal(slow.take("x", 1999), false);
  assert.equal(slow.take("x", 2000), true);
});

Deno.test("RateLimiter: sources are independent", () => {
  const limiter = new RateLimiter({ rate: 1, burst: 1 });
  assert.equal(limiter.take("192.0.2.1", 0), true);
  assert.equal(limiter.take("192.0.2.1", 0), false);
  assert.equal(limiter.take("192.0.2.2", 0), true);
  assert.equal(limiter.take("::ffff:192.0.2.1", 0), true); // keys are opaque strings
  assert.equal(limiter.size, 3);
});

Deno.test("RateLimiter: the table is bounded, least recently used out", () => {
  const limiter = new RateLimiter({ rate: 1, burst: 1, maxSources: 3 });
  assert.equal(limiter.take("a", 0), true);
  assert.equal(limiter.take("b", 0), true);
  assert.equal(limiter.take("c", 0), true);
  assert.equal(limiter.take("a", 1), false); // refreshes "a": order is now b, c, a
  assert.equal(limiter.take("d", 2), true); // evicts "b"
  assert.equal(limiter.size, 3);
  assert.equal(limiter.take("a", 3), false); // still tracked, still empty
  assert.equal(limiter.take("c", 3), false); // still tracked
  assert.equal(limiter.take("b", 3), true); // forgotten, so a fresh full bucket (evicts "d")
  assert.equal(limiter.take("d", 3), true); // "d" was evicted in turn
  assert.equal(limiter.size, 3);

  // A flood of distinct (spoofed) sources never grows the table past the bound.
  const bounded = new RateLimiter({ rate: 1000, maxSources: 100 });
  for (let i = 0; i < 10_000; i++) bounded.take(`10.0.${i >> 8}.${i & 255}`, i);
  assert.equal(bounded.size, 100);
  bounded.clear();
  assert.equal(bounded.size, 0);
});

Deno.test("RateLimiter: a clock that goes backwards does not refill or wedge", () => {
  const limiter = new RateLimiter({ rate: 1, burst: 1 });
  assert.equal(limiter.take("a", 10_000), true);
  assert.equal(limiter.take("a", 5_000), false); // backwards: no refill
  assert.equal(limiter.take("a", 5_999), false);
  assert.equal(limiter.take("a", 6_000), true); // refills from the new reference point
});

Deno.test("RateLimiter: invalid options and times throw RangeError", () => {
  for (const rate of [0, -1, NaN, Infinity]) {
    assert.throws(() => new RateLimiter({ rate }), {
      name: "RangeError",
      message: `invalid rate ${rate}: expected a finite number > 0 per second`,
    });
  }
  assert.throws(() => new RateLimiter({ rate: "5" as unknown as number }), RangeError);
  assert.throws(() => new RateLimiter({ rate: 10, burst: 0.5 }), {
    name: "RangeError",
    message: "invalid burst 0.5: expected a finite number >= 1",
  });
  assert.throws(() => new RateLimiter({ rate: 10, burst: Infinity }), RangeError);
  for (const maxSources of [0, 1.5, -3, NaN]) {
    assert.throws(() => new RateLimiter({ rate: 10, maxSources }), {
      name: "RangeError",
      message: `invalid maxSources ${maxSources}: expected an integer >= 1`,
    });
  }
  const limiter = new RateLimiter({ rate: 10 });
  for (const now of [NaN, Infinity]) {
    assert.throws(() => limiter.take("a", now), {
      name: "RangeError",
      message: `invalid time ${now}: expected finite milliseconds`,
    });
  }
  assert.equal(limiter.size, 0);
});

Deno.test("effectiveMaxConnections: leaves FD_HEADROOM descriptors free", () => {
  assert.equal(FD_HEADROOM, 64);
  assert.deepEqual(effectiveMaxConnections(4096, 1024), { value: 960, lowered: true });
  assert.deepEqual(effectiveMaxConnections(4096, 4160), { value: 4096, lowered: false });
  assert.deepEqual(effectiveMaxConnections(4096, 4159), { value: 4095, lowered: true });
  assert.deepEqual(effectiveMaxConnections(100, 1024), { value: 100, lowered: false });
  assert.deepEqual(effectiveMaxConnections(4096, Infinity), { value: 4096, lowered: false });
  assert.deepEqual(effectiveMaxConnections(Infinity, 1024), { value: 960, lowered: true });
  assert.deepEqual(effectiveMaxConnections(10, 20), { value: 1, lowered: true }); // floor of 1
  assert.deepEqual(effectiveMaxConnections(1, 0), { value: 1, lowered: false });
  for (const bad of [0, -1, 1.5, NaN]) {
    assert.throws(() => effectiveMaxConnections(bad, 1024), {
      name: "RangeError",
      message: `invalid maximum connections ${bad}: expected an integer >= 1`,
    });
  }
  assert.throws(() => effectiveMaxConnections(10, -1), {
    name: "RangeError",
    message: "invalid descriptor limit -1: expected a number >= 0",
  });
  assert.throws(() => effectiveMaxConnections(10, NaN), RangeError);
});

Deno.test("fileDescriptorLimit: the soft limit this process runs under", async () => {
  const limit = fileDescriptorLimit();
  if (Deno.build.os !== "linux") {
    assert.equal(limit, undefined);
    return;
  }
  // Deno 2 lets only --allow-all read /proc/self; under narrower flags, undefined is right.
  let readable = true;
  try {
    Deno.readTextFileSync("/proc/self/limits");
  } catch {
    readable = false;
  }
  if (!readable) {
    assert.equal(limit, undefined);
    return;
  }
  // The shell that a child runs in inherits our limits: compare with its `ulimit -n`.
  const out = await new Deno.Command("sh", { args: ["-c", "ulimit -n"] }).output();
  const expected = new TextDecoder().decode(out.stdout).trim();
  assert.equal(limit, expected === "unlimited" ? Infinity : Number(expected));
  // With the limit omitted, effectiveMaxConnections reads it.
  assert.deepEqual(effectiveMaxConnections(10_000_000), effectiveMaxConnections(10_000_000, limit));
});

/**
 * Runs a snippet in a child Deno with the given flags under a descriptor limit set by its shell.
 * Both the soft and the hard limit are set: Deno raises its soft limit to the hard one at start.
 */
async function inChild(flags: string[], limit: number, code: string): Promise<string> {
  const dir = await Deno.makeTempDir();
  try {
    const file = `${dir}/child.ts`;
    const module = new URL("../limits.ts", import.meta.url).href;
    await Deno.writeTextFile(file, `import * as limits from ${JSON.stringify(module)};\n${code}`);
    const command = `ulimit -n ${limit} && exec "$0" run --no-prompt "$@"`;
    const out = await new Deno.Command("sh", {
      args: ["-c", command, Deno.execPath(), ...flags, file],
      stdin: "null",
    }).output();
    const stderr = new TextDecoder().decode(out.stderr);
    assert.equal(out.code, 0, stderr);
    return new TextDecoder().decode(out.stdout).trim();
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

Deno.test({
  name: "fileDescriptorLimit: read under -A, undefined without the permission Deno 2 asks for",
  ignore: Deno.build.os !== "linux",
  fn: async () => {
    const snippet = "console.log(JSON.stringify([limits.fileDescriptorLimit() ?? null, " +
      "limits.effectiveMaxConnections(4096)]));";
    assert.equal(
      await inChild(["-A"], 1000, snippet),
      '[1000,{"value":936,"lowered":true}]',
    );
    // Deno 2 guards /proc/self: --allow-read alone is refused ("requires all access").
    assert.equal(
      await inChild(["--allow-read"], 1000, snippet),
      '[null,{"value":4096,"lowered":false}]',
    );
    // No permission at all: undefined at once, and no prompt (stdin is closed anyway).
    assert.equal(await inChild([], 1000, snippet), '[null,{"value":4096,"lowered":false}]');
  },
});
