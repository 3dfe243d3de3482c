import assert from "node:assert/strict";
import { connectAnyAddress } from "../_tcp_connect.ts";
import { echoTcp } from "../tcp.ts";
import { serveTcpEcho } from "../tcp.ts";

const test = (name: string, fn: () => Promise<void>) =>
  Deno.test({ name, fn, sanitizeOps: true, sanitizeResources: true });

/** A port with an IPv6 loopback listener and (most likely) nothing on 127.0.0.1. */
function listenV6Only(): Deno.TcpListener {
  for (;;) {
    const v6 = Deno.listen({ hostname: "::1", port: 0 });
    try {
      Deno.listen({ hostname: "127.0.0.1", port: v6.addr.port }).close();
      return v6; // the same port is free on IPv4: a connect there is refused
    } catch {
      v6.close();
    }
  }
}

test("connectAnyAddress: a name whose first address refuses reaches the next one", async () => {
  using listener = listenV6Only();
  const accepted = listener.accept();
  // "localhost" is 127.0.0.1 here (the first address Deno's connect takes); the lookup adds ::1.
  const conn = await connectAnyAddress("localhost", listener.addr.port, {
    lookup: () => Promise.resolve(["127.0.0.1", "::1"]),
  });
  assert.equal((conn.remoteAddr as Deno.NetAddr).hostname, "::1");
  conn.close();
  (await accepted).close();
});

test("connectAnyAddress: every address refusing gives the first attempt's error", async () => {
  using listener = listenV6Only();
  const port = listener.addr.port;
  listener.close();
  await assert.rejects(
    connectAnyAddress("localhost", port, { lookup: () => Promise.resolve(["127.0.0.1", "::1"]) }),
    Deno.errors.ConnectionRefused,
  );
});

test("connectAnyAddress: a failed lookup leaves the name's own attempt", async () => {
  using listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const accepted = listener.accept();
  const conn = await connectAnyAddress("localhost", listener.addr.port, {
    lookup: () => Promise.reject(new Error("no resolver")),
  });
  conn.close();
  (await accepted).close();
});

test("echoTcp: --host localhost reaches a server on ::1 when localhost lists ::1 at all", async () => {
  // On this machine's /etc/hosts localhost may be IPv4 only; the name's own attempt is tried first,
  // so this holds wherever localhost has ::1 among its addresses, and is skipped (said) elsewhere.
  const { lookup } = await import("node:dns/promises");
  const all = (await lookup("localhost", { all: true })).map((a) => a.address);
  if (!all.includes("::1")) {
    console.log(
      "skipped: localhost has no ::1 address here (/etc/hosts lists",
      all.join(", "),
      ")",
    );
    return;
  }
  await using server = serveTcpEcho({ hostname: "::1", port: 0 });
  const { reply } = await echoTcp("hi", { hostname: "localhost", port: server.addr.port });
  assert.equal(new TextDecoder().decode(reply), "hi");
});
