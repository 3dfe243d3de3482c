import assert from "node:assert/strict";
import {
  describeNetworkError,
  EchoConnectionError,
  EchoError,
  EchoMismatchError,
  EchoTimeoutError,
  formatAddress,
} from "../errors.ts";

const address = { hostname: "127.0.0.1", port: 5006, transport: "tcp" as const };

Deno.test("each error class is an EchoError and an Error, with a name callers can test", () => {
  const cause = new Deno.errors.ConnectionRefused("refused");
  const errors = [
    [new EchoError("base", { address }), "EchoError"],
    [new EchoTimeoutError("slow", { address }), "EchoTimeoutError"],
    [new EchoConnectionError("down", { address, cause }), "EchoConnectionError"],
    [new EchoMismatchError("differs", { address, offset: 7 }), "EchoMismatchError"],
  ] as const;
  for (const [error, name] of errors) {
    assert.ok(error instanceof EchoError);
    assert.ok(error instanceof Error);
    assert.equal(error.name, name);
    assert.deepEqual(error.address, address);
    assert.match(String(error), new RegExp(`^${name}: `));
  }
  assert.equal(errors[2][0].cause, cause);
  assert.equal((errors[3][0] as EchoMismatchError).offset, 7);
});

Deno.test("an error without a cause has no cause property; without an address none either", () => {
  const error = new EchoTimeoutError("no reply");
  assert.equal("cause" in error, false);
  assert.equal(error.address, undefined);
  assert.equal(new EchoMismatchError("x", { offset: 0 }).offset, 0);
});

Deno.test("formatAddress brackets IPv6 only", () => {
  assert.equal(formatAddress({ hostname: "127.0.0.1", port: 7 }), "127.0.0.1:7");
  assert.equal(formatAddress({ hostname: "::1", port: 7 }), "[::1]:7");
  assert.equal(formatAddress({ hostname: "fe80::1%lo", port: 5006 }), "[fe80::1%lo]:5006");
  assert.equal(formatAddress({ hostname: "localhost", port: 0 }), "localhost:0");
});

Deno.test("describeNetworkError gives one short lower-case phrase", () => {
  const cases: [unknown, string][] = [
    [new Deno.errors.ConnectionRefused("x"), "connection refused"],
    [new Deno.errors.ConnectionReset("x"), "connection reset by peer"],
    [new Deno.errors.ConnectionAborted("x"), "connection aborted"],
    [new Deno.errors.AddrInUse("x"), "address already in use"],
    [new Deno.errors.AddrNotAvailable("x"), "address not available on this machine"],
    [new Deno.errors.TimedOut("x"), "timed out"],
    [new Deno.errors.NotConnected("x"), "not connected"],
    [new Deno.errors.BrokenPipe("x"), "broken pipe"],
    [
      new Deno.errors.NotCapable('Requires net access to "x", run again with the --allow-net flag'),
      'Requires net access to "x", run again with the --allow-net flag',
    ],
    [new Error("first line\n    at stack()"), "first line"],
    ["plain string", "plain string"],
    [42, "42"],
  ];
  for (const [error, phrase] of cases) assert.equal(describeNetworkError(error), phrase);
});
