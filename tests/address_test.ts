/**
 * parseHost(): the `--host` text parsed once and strictly. Pure cases, plus binds over real
 * sockets showing that the classification comes from the bound address (`127.1` binds
 * loopback, so no network notice and no non-loopback defaults).
 *
 * @module
 */
import assert from "node:assert/strict";
import { InvalidHostError, type InvalidHostReason, parseHost } from "../_address.ts";
import { isLoopback } from "../cidr.ts";
import { defaultMaxPerSource, defaultUdpRate } from "../limits.ts";
import { serveEcho, validateServeOptions } from "../serve.ts";
import { optionOf } from "../_validate.ts";
import { HAS_IPV6, test } from "./_helpers.ts";

Deno.test("parseHost: literals in canonical form, IPv4 shorthands, names in lower case", () => {
  const cases: [string, string, string][] = [
    ["127.0.0.1", "127.0.0.1", "ipv4"],
    ["127.1", "127.0.0.1", "ipv4"],
    ["127.0.1", "127.0.0.1", "ipv4"],
    ["10.65535", "10.0.255.255", "ipv4"],
    ["2130706433", "127.0.0.1", "ipv4"],
    ["0.0.0.0", "0.0.0.0", "ipv4"],
    ["::", "::", "ipv6"],
    ["::1", "::1", "ipv6"],
    ["[::1]", "::1", "ipv6"],
    ["0:0:0:0:0:0:0:1", "::1", "ipv6"],
    ["2001:DB8::1", "2001:db8::1", "ipv6"],
    ["::ffff:127.0.0.1", "::ffff:127.0.0.1", "ipv6"],
    ["localhost", "localhost", "name"],
    ["LocalHost.", "localhost", "name"],
    ["echo-1.example.org", "echo-1.example.org", "name"],
  ];
  for (const [text, hostname, kind] of cases) {
    assert.deepEqual(parseHost(text), { hostname, kind }, text);
  }
});

Deno.test("parseHost: bad values are one-line InvalidHostErrors (a TypeError) with a reason", () => {
  const cases: [string, InvalidHostReason, RegExp][] = [
    ["", "empty", /give an address/],
    ["127.0.0.1:20052", "port", /port \(20052\) separately/],
    ["[::1]:5006", "port", /port \(5006\) separately/],
    ["localhost:5006", "port", /separately/],
    ["[[::1]]", "brackets", /one IPv6 address only/],
    ["[127.0.0.1]", "brackets", /one IPv6 address only/],
    ["[::1", "brackets", /one IPv6 address only/],
    ["::1%lo", "zone", /zone ids/],
    ["fe80::1%eth0", "zone", /zone ids/],
    ["[fe80::1%eth0]", "zone", /zone ids/],
    ["127.0.0.1\nlistening on tcp 0.0.0.0:1", "control", /control characters/],
    [" 127.0.0.1", "control", /spaces/],
    ["exämple.org", "control", /ASCII/],
    ["010.0.0.1", "ambiguous", /leading zeros/],
    ["0x7f.1", "ambiguous", /hex/],
    ["256.1.1.1", "syntax", /out of range/],
    ["1.2.3.4.5", "syntax", /not an IPv4 address/],
    ["127.0.0.", "syntax", /not an IPv4 address/],
    ["1:2:3", "syntax", /not an IPv6 address/],
    ["-bad-.example", "syntax", /not an IP address or host name/],
    ["host.123", "syntax", /not an IP address or host name/],
    ["a%b", "syntax", /not an IP address or host name/],
  ];
  for (const [text, reason, message] of cases) {
    try {
      parseHost(text);
      assert.fail(`${JSON.stringify(text)} was accepted`);
    } catch (error) {
      assert.ok(error instanceof InvalidHostError && error instanceof TypeError, text);
      assert.equal(error.reason, reason, text);
      assert.equal(error.input, text);
      assert.match(error.message, message, text);
      assert.ok(!error.message.includes("\n"), `${JSON.stringify(text)}: one line`);
      if (reason === "port") assert.equal(typeof error.port, "number");
    }
  }
});

test("parseHost: 127.1 and [::1] bind loopback, and the bound address is what is classified", () => {
  for (const text of ["127.1", "localhost", "[::1]"]) {
    const { hostname } = parseHost(text);
    let listener: Deno.Listener;
    try {
      listener = Deno.listen({ hostname, port: 0 });
    } catch (error) {
      if (text === "[::1]" && error instanceof Deno.errors.AddrNotAvailable) {
        console.log("address_test: [::1] skipped: no IPv6 loopback here");
        continue;
      }
      throw error;
    }
    try {
      const bound = (listener.addr as Deno.NetAddr).hostname;
      assert.ok(isLoopback(bound), `${text} bound ${bound}`);
      assert.equal(defaultUdpRate(bound), undefined);
      assert.equal(defaultMaxPerSource(bound), undefined);
    } finally {
      listener.close();
    }
  }
});

test("serveEcho/validateServeOptions: hostname is parsed the same way, the error names the option", async () => {
  for (const hostname of ["127.0.0.1:5006", "::1%lo", "[[::1]]", "bad\nhost"]) {
    assert.throws(() => validateServeOptions({ hostname }), (error: unknown) => {
      assert.ok(error instanceof InvalidHostError, hostname);
      assert.equal(optionOf(error), "hostname");
      return true;
    });
    await assert.rejects(() => serveEcho({ hostname, port: 0 }), InvalidHostError);
  }
  // Canonical forms bind what they name: [::1] and 127.1 without the caller stripping anything.
  await using server = await serveEcho({ hostname: "127.1", port: 0 });
  assert.deepEqual(server.listeners.map((info) => info.hostname), ["127.0.0.1", "127.0.0.1"]);
  if (HAS_IPV6) {
    await using six = await serveEcho({ hostname: "[::1]", port: 0, transport: "tcp" });
    assert.equal(six.addr.hostname, "::1");
  }
});
