import assert from "node:assert/strict";
import { Random, randomSeed } from "../_random.ts";
import { EchoMismatchError, EchoTimeoutError } from "../errors.ts";
import type { DatagramInfo } from "../serve.ts";
import { echoUdp, MAX_UDP_PAYLOAD, resolveHost, serveUdpEcho } from "../udp.ts";
import { HAS_IPV6, randomBytes, Recorder, test } from "./_helpers.ts";

const SEED = Number(Deno.env.get("ECHO_TEST_SEED") ?? randomSeed());
const BACKENDS = ["deno", "node"] as const;
const decoder = new TextDecoder();

/** A raw UDP socket for the tests' own misbehaving servers (Deno.listenDatagram, unstable net). */
function rawSocket(hostname = "127.0.0.1"): Deno.DatagramConn {
  return Deno.listenDatagram({ hostname, port: 0, transport: "udp" });
}

function portOf(conn: Deno.DatagramConn): number {
  return (conn.addr as Deno.NetAddr).port;
}

for (const backend of BACKENDS) {
  test(`udp (${backend} server): datagrams of 0, 1 and 65,507 bytes come back whole, to either client backend`, async () => {
    const random = new Random(SEED);
    await using server = await serveUdpEcho({ port: 0, backend });
    assert.equal(server.listeners[0].backend, backend);
    assert.equal(server.listeners[0].transport, "udp");
    let bytes = 0;
    let count = 0;
    for (const client of BACKENDS) {
      for (const size of [0, 1, MAX_UDP_PAYLOAD]) {
        const data = randomBytes(size, random);
        const result = await echoUdp(data, {
          port: server.addr.port,
          backend: client,
          timeout: 2000,
          retries: 0,
        });
        assert.equal(result.reply.length, size, `${client} client, ${size} bytes`);
        assert.deepEqual(result.reply, data, `seed ${SEED}`);
        assert.equal(result.attempts, 1);
        bytes += size;
        count++;
      }
    }
    assert.equal(server.stats.datagramsIn, count);
    assert.equal(server.stats.datagramsOut, count);
    assert.equal(server.stats.bytesIn, bytes);
    assert.equal(server.stats.bytesOut, bytes);
    assert.equal(server.stats.errors, 0);
  });

  test(`udp (${backend}): IPv6 loopback, both sizes at the edges`, async () => {
    await using server = await serveUdpEcho({ hostname: "::1", port: 0, backend });
    assert.equal(server.addr.hostname, "::1");
    for (const size of [0, MAX_UDP_PAYLOAD]) {
      const data = randomBytes(size, new Random(SEED));
      const { reply, address } = await echoUdp(data, {
        hostname: "::1",
        port: server.addr.port,
        backend,
        timeout: 2000,
        retries: 0,
      });
      assert.deepEqual(reply, data);
      assert.equal(address.hostname, "::1");
    }
    // The bracketed form a user may type works too.
    const { reply } = await echoUdp("v6", { hostname: "[::1]", port: server.addr.port, backend });
    assert.equal(decoder.decode(reply), "v6");
  }, { ignore: !HAS_IPV6 });

  test(`echoUdp (${backend}): a reply from another address is ignored`, async () => {
    const real = rawSocket();
    const stray = rawSocket();
    const served = (async () => {
      const [data, from] = await real.receive();
      // The wrong bytes arrive first, from another port; then the real echo.
      await stray.send(new TextEncoder().encode("not your echo"), from);
      await real.send(data, from);
    })();
    try {
      const { reply, attempts } = await echoUdp("the real one", {
        port: portOf(real),
        backend,
        timeout: 2000,
        retries: 0,
      });
      assert.equal(decoder.decode(reply), "the real one");
      assert.equal(attempts, 1);
      await served;
    } finally {
      real.close();
      stray.close();
    }
  });

  test(`echoUdp (${backend}): against a silent socket, every attempt is sent, then EchoTimeoutError`, async () => {
    const silent = rawSocket();
    try {
      for (const retries of [0, 2]) {
        await assert.rejects(
          echoUdp("anyone?", { port: portOf(silent), backend, timeout: 50, retries }),
          (error: unknown) => {
            assert.ok(error instanceof EchoTimeoutError, String(error));
            assert.deepEqual(error.address, {
              hostname: "127.0.0.1",
              port: portOf(silent),
              transport: "udp",
            });
            const attempts = retries + 1;
            assert.match(
              error.message,
              new RegExp(`after ${attempts} attempts? of 50ms`),
            );
            return true;
          },
        );
        // Exactly retries + 1 datagrams reached the socket, all alike.
        for (let i = 0; i <= retries; i++) {
          const [data] = await silent.receive();
          assert.equal(decoder.decode(data), "anyone?");
        }
      }
      // Nothing more is queued: a marker sent now is the next datagram received.
      const marker = rawSocket();
      await marker.send(new TextEncoder().encode("marker"), silent.addr);
      marker.close();
      assert.equal(decoder.decode((await silent.receive())[0]), "marker");
    } finally {
      silent.close();
    }
  });

  test(`echoUdp (${backend}): a retry succeeds when the first datagram is dropped`, async () => {
    const lossy = rawSocket();
    const served = (async () => {
      await lossy.receive(); // dropped
      const [data, from] = await lossy.receive();
      await lossy.send(data, from);
    })();
    try {
      const { reply, attempts } = await echoUdp("second time lucky", {
        port: portOf(lossy),
        backend,
        timeout: 100,
        retries: 3,
      });
      assert.equal(decoder.decode(reply), "second time lucky");
      assert.equal(attempts, 2);
      await served;
    } finally {
      lossy.close();
    }
  });

  test(`echoUdp (${backend}): a truncated or altered reply is an EchoMismatchError at its offset`, async () => {
    const bad = rawSocket();
    const served = (async () => {
      for (const change of ["truncate", "alter"] as const) {
        const [data, from] = await bad.receive();
        const reply = change === "truncate" ? data.slice(0, 5) : data.slice();
        if (change === "alter") reply[3] ^= 1;
        await bad.send(reply, from);
      }
    })();
    try {
      for (const offset of [5, 3]) {
        await assert.rejects(
          echoUdp("Hello World", { port: portOf(bad), backend, timeout: 2000, retries: 0 }),
          (error: unknown) => {
            assert.ok(error instanceof EchoMismatchError, String(error));
            assert.equal(error.offset, offset);
            assert.match(error.message, new RegExp(`differs from the message at byte ${offset}$`));
            return true;
          },
        );
      }
      await served;
    } finally {
      bad.close();
    }
  });

  test(`udp (${backend} server): counters and the onDatagram hook see every datagram`, async () => {
    const seen = new Recorder<{ remote: Deno.NetAddr; text: string }>();
    await using server = await serveUdpEcho({
      port: 0,
      backend,
      // The payload is only valid during the call: copy it out.
      onDatagram: ({ remoteAddr, data }: DatagramInfo) =>
        seen.push({ remote: remoteAddr, text: decoder.decode(data) }),
    });
    const messages = ["one", "two", "", "four!"];
    for (const message of messages) await echoUdp(message, { port: server.addr.port, backend });
    assert.deepEqual(seen.items.map((s) => s.text), messages);
    assert.ok(seen.items.every((s) => s.remote.hostname === "127.0.0.1" && s.remote.port > 0));
    const bytes = messages.join("").length;
    assert.deepEqual(
      {
        datagramsIn: server.stats.datagramsIn,
        datagramsOut: server.stats.datagramsOut,
        bytesIn: server.stats.bytesIn,
        bytesOut: server.stats.bytesOut,
        sessionsTotal: server.stats.sessionsTotal,
        errors: server.stats.errors,
      },
      {
        datagramsIn: 4,
        datagramsOut: 4,
        bytesIn: bytes,
        bytesOut: bytes,
        sessionsTotal: 0,
        errors: 0,
      },
    );
  });

  test(`udp (${backend} server): a client that is gone before its echo does not disturb others`, async () => {
    await using server = await serveUdpEcho({ port: 0, backend });
    const gone = rawSocket();
    await gone.send(new TextEncoder().encode("bye"), server.addr);
    gone.close(); // the echo goes to a closed port: ICMP port unreachable
    const { reply } = await echoUdp("still here", { port: server.addr.port, backend });
    assert.equal(decoder.decode(reply), "still here");
    assert.equal(server.stats.datagramsIn, 2);
  });
}

test("echoUdp: more than 65,507 bytes is a RangeError before anything is sent", async () => {
  await assert.rejects(
    echoUdp(new Uint8Array(MAX_UDP_PAYLOAD + 1), { port: 9 }),
    (error: unknown) => {
      assert.ok(error instanceof RangeError);
      assert.match(error.message, /at most 65507 bytes, got 65508/);
      return true;
    },
  );
});

test("echoUdp: aborting the signal rejects with the signal's reason", async () => {
  const silent = rawSocket();
  const controller = new AbortController();
  const receiving = silent.receive().then(() => controller.abort(new Error("caller gave up")));
  try {
    await assert.rejects(
      echoUdp("hello", {
        port: portOf(silent),
        timeout: 10_000,
        retries: 0,
        signal: controller.signal,
      }),
      { message: "caller gave up" },
    );
    await receiving;
  } finally {
    silent.close();
  }
});

test("resolveHost returns IP literals as they are, IPv6 canonical and unbracketed", async () => {
  assert.equal(await resolveHost("127.0.0.1"), "127.0.0.1");
  assert.equal(await resolveHost("::1"), "::1");
  assert.equal(await resolveHost("[::1]"), "::1");
  assert.equal(await resolveHost("0:0:0:0:0:0:0:1"), "::1");
});

test("udp: shutdown ends the server; finished resolves and the port stops echoing", async () => {
  const server = await serveUdpEcho({ port: 0 });
  const port = server.addr.port;
  await server.shutdown();
  await server.finished;
  await assert.rejects(
    echoUdp("anyone?", { port, timeout: 50, retries: 0 }),
    EchoTimeoutError,
  );
});
