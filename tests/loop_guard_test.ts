import assert from "node:assert/strict";
import { DEFAULT_BLOCKED_PORTS, LoopGuard } from "../loop_guard.ts";

Deno.test("DEFAULT_BLOCKED_PORTS: frozen, sorted, unique, includes the inetd built-ins", () => {
  assert.ok(Object.isFrozen(DEFAULT_BLOCKED_PORTS));
  assert.deepEqual([...DEFAULT_BLOCKED_PORTS].sort((a, b) => a - b), DEFAULT_BLOCKED_PORTS);
  assert.equal(new Set(DEFAULT_BLOCKED_PORTS).size, DEFAULT_BLOCKED_PORTS.length);
  // NetBSD's bad_ports and FreeBSD's built-in datagram services, plus qotd.
  for (const port of [7, 9, 13, 17, 19, 37]) assert.ok(DEFAULT_BLOCKED_PORTS.includes(port));
  for (const port of [53, 123, 161, 1900, 11211]) assert.ok(DEFAULT_BLOCKED_PORTS.includes(port));
  assert.ok(!DEFAULT_BLOCKED_PORTS.includes(0)); // reported separately as "port-zero"
  // None falls in the Linux ephemeral range, where real clients get their ports.
  for (const port of DEFAULT_BLOCKED_PORTS) assert.ok(port < 32768, String(port));
});

Deno.test("LoopGuard.check: ordinary clients are answered", () => {
  const guard = new LoopGuard();
  for (
    const host of [
      "192.0.2.1",
      "::ffff:192.0.2.1",
      "::ffff:c000:201",
      "2001:db8::1",
      "127.0.0.1",
      "::1",
      "::ffff:127.0.0.1",
      "fe80::1%eth0",
      "240.0.0.1",
      "255.255.255.254",
    ]
  ) {
    assert.equal(guard.check(host, 40000), undefined, host);
  }
  for (const port of [1, 6, 8, 1024, 32768, 60999, 65535]) {
    assert.equal(guard.check("192.0.2.1", port), undefined, String(port));
  }
});

Deno.test("LoopGuard.check: port zero and every default blocked port are refused", () => {
  const guard = new LoopGuard();
  assert.equal(guard.check("192.0.2.1", 0), "port-zero");
  assert.equal(guard.check("::1", 0), "port-zero");
  for (const port of DEFAULT_BLOCKED_PORTS) {
    assert.equal(guard.check("192.0.2.1", port), "blocked-port", String(port));
    assert.equal(guard.check("::ffff:192.0.2.1", port), "blocked-port", String(port));
    assert.equal(guard.check("2001:db8::1", port), "blocked-port", String(port));
    // Loopback is answered in general, but not from a looping port.
    assert.equal(guard.check("127.0.0.1", port), "blocked-port", String(port));
  }
  assert.deepEqual(guard.blockedPorts, DEFAULT_BLOCKED_PORTS);
});

Deno.test("LoopGuard.check: broadcast, multicast and unspecified sources, mapped too", () => {
  const guard = new LoopGuard();
  const cases: [string, string][] = [
    ["255.255.255.255", "broadcast"],
    ["::ffff:255.255.255.255", "broadcast"],
    ["::ffff:ffff:ffff", "broadcast"],
    ["224.0.0.1", "multicast"],
    ["239.255.255.250", "multicast"],
    ["::ffff:224.0.0.251", "multicast"],
    ["::FFFF:E000:FB", "multicast"],
    ["ff02::1", "multicast"],
    ["ff0e::1%eth0", "multicast"],
    ["0.0.0.0", "unspecified"],
    ["0.1.2.3", "unspecified"],
    ["::", "unspecified"],
    ["::ffff:0.0.0.0", "unspecified"],
  ];
  for (const [host, verdict] of cases) assert.equal(guard.check(host, 40000), verdict, host);
  // The port checks come first.
  assert.equal(guard.check("255.255.255.255", 0), "port-zero");
  assert.equal(guard.check("ff02::1", 7), "blocked-port");
});

Deno.test("LoopGuard: blockedPorts replaces the defaults; localPort adds the own port", () => {
  const custom = new LoopGuard({ blockedPorts: [4500, 7] });
  assert.deepEqual(custom.blockedPorts, [7, 4500]);
  assert.equal(custom.check("192.0.2.1", 4500), "blocked-port");
  assert.equal(custom.check("192.0.2.1", 7), "blocked-port");
  assert.equal(custom.check("192.0.2.1", 19), undefined); // no longer in the list
  assert.equal(custom.check("192.0.2.1", 0), "port-zero");

  const none = new LoopGuard({ blockedPorts: [] });
  assert.deepEqual(none.blockedPorts, []);
  assert.equal(none.check("192.0.2.1", 7), undefined);
  assert.equal(none.check("192.0.2.1", 0), "port-zero"); // always
  assert.equal(none.check("224.0.0.1", 5000), "multicast"); // always

  const listing0 = new LoopGuard({ blockedPorts: [0, 7] });
  assert.equal(listing0.check("192.0.2.1", 0), "port-zero");

  const own = new LoopGuard({ localPort: 7007 });
  assert.equal(own.check("192.0.2.1", 7007), "blocked-port");
  assert.equal(own.check("192.0.2.1", 7008), undefined);
  assert.equal(own.check("192.0.2.1", 19), "blocked-port"); // defaults kept
  assert.ok(own.blockedPorts.includes(7007));

  const fromSet = new LoopGuard({ blockedPorts: new Set([1, 65535]), localPort: 0 });
  assert.deepEqual(fromSet.blockedPorts, [1, 65535]);
});

Deno.test("LoopGuard: invalid ports and hostnames throw with context", () => {
  for (const bad of [-1, 65536, 1.5, NaN, Infinity]) {
    assert.throws(() => new LoopGuard({ blockedPorts: [bad] }), {
      name: "RangeError",
      message: `invalid blocked port ${bad}: expected an integer 0-65535`,
    });
    assert.throws(() => new LoopGuard({ localPort: bad }), RangeError);
  }
  assert.throws(() => new LoopGuard({ blockedPorts: ["7" as unknown as number] }), RangeError);

  const guard = new LoopGuard();
  for (const bad of [-1, 65536, 1.5, NaN]) {
    assert.throws(() => guard.check("192.0.2.1", bad), {
      name: "RangeError",
      message: `invalid source port ${bad}: expected an integer 0-65535`,
    });
  }
  assert.throws(() => guard.check("192.0.2.1", "40000" as unknown as number), RangeError);
  for (const bad of ["", "localhost", "[::1]", "192.0.2.1:40000"]) {
    assert.throws(() => guard.check(bad, 40000), {
      name: "TypeError",
      message: `invalid source address ${JSON.stringify(bad)}: not an IPv4 or IPv6 address`,
    });
  }
});

Deno.test("LoopGuard: one guard's list does not leak into another", () => {
  const a = new LoopGuard({ blockedPorts: [1000] });
  const b = new LoopGuard({ blockedPorts: [2000] });
  assert.equal(a.check("192.0.2.1", 2000), undefined);
  assert.equal(b.check("192.0.2.1", 1000), undefined);
  assert.equal(new LoopGuard().check("192.0.2.1", 1000), undefined);
});
