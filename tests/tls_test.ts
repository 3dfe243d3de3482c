import assert from "node:assert/strict";
import { Random, randomSeed } from "../_random.ts";
import { EchoConnectionError, EchoTimeoutError } from "../errors.ts";
import type { CloseInfo, ListenInfo } from "../serve.ts";
import { echoTcp, echoTcpStream, serveTcpEcho } from "../tcp.ts";
import { HAS_IPV6, randomBytes, readAll, Recorder, ROOT, sha256, test } from "./_helpers.ts";
import { assertOneLine, runProgram, startServer, stopServer } from "./_cli_child.ts";

/** One seed per run, named in failure messages so a failing run can be replayed. */
const SEED = Number(Deno.env.get("ECHO_TEST_SEED") ?? randomSeed());
const CERT_FILE = `${ROOT}tests/fixtures/tls_cert.pem`;
const KEY_FILE = `${ROOT}tests/fixtures/tls_key.pem`;
const cert = await Deno.readTextFile(CERT_FILE);
const key = await Deno.readTextFile(KEY_FILE);
const decoder = new TextDecoder();

/** A fresh private key (PKCS #8 PEM) that does not belong to the fixture certificate. */
async function otherKey(): Promise<string> {
  const pair = await crypto.subtle.generateKey(
    { name: "ECDSA", namedCurve: "P-256" },
    true,
    ["sign", "verify"],
  );
  const der = new Uint8Array(await crypto.subtle.exportKey("pkcs8", pair.privateKey));
  const base64 = btoa(String.fromCharCode(...der)).replace(/.{64}/g, "$&\n");
  return `-----BEGIN PRIVATE KEY-----\n${base64}\n-----END PRIVATE KEY-----\n`;
}

for (const hostname of ["127.0.0.1", "::1"]) {
  test(`tls: 8 MiB of random bytes echo byte-exact over TLS on ${hostname}`, async () => {
    const data = randomBytes(8 * 1024 * 1024, new Random(SEED));
    const listens = new Recorder<ListenInfo>();
    const closes = new Recorder<CloseInfo>();
    await using server = serveTcpEcho({
      hostname,
      port: 0,
      tls: { cert, key },
      onListen: listens.push,
      onClose: closes.push,
    });
    assert.deepEqual(listens.items, [{
      transport: "tcp",
      hostname,
      port: server.addr.port,
      secure: true,
    }]);
    assert.equal(server.listeners[0].secure, true);
    const chunks: Uint8Array[] = [];
    const result = await echoTcpStream(ReadableStream.from([data]), {
      hostname,
      port: server.addr.port,
      tls: { caCerts: [cert] },
      output: new WritableStream({ write: (chunk) => void chunks.push(chunk) }),
    });
    assert.equal(result.bytes, data.length, `seed ${SEED}`);
    const echoed = await readAll(ReadableStream.from(chunks));
    assert.equal(await sha256(echoed), await sha256(data), `seed ${SEED}`);
    const { reply } = await echoTcp("hello over tls", {
      hostname,
      port: server.addr.port,
      tls: { caCerts: [cert] },
    });
    assert.equal(decoder.decode(reply), "hello over tls");
    await closes.until((items) => items.length === 2);
    // The server counts plaintext bytes: TLS records are invisible above the listener.
    assert.equal(server.stats.bytesIn, data.length + "hello over tls".length);
    assert.deepEqual(closes.items.map((c) => c.reason), ["eof", "eof"]);
  }, { ignore: hostname === "::1" && !HAS_IPV6 });
}

test("tls: an untrusted certificate fails the handshake with a one-line EchoConnectionError", async () => {
  await using server = serveTcpEcho({ port: 0, tls: { cert, key }, onError: () => {} });
  const port = server.addr.port;
  for (const tls of [{}, { caCerts: [] }]) {
    const error = await echoTcp("never sent", { port, tls }).then(
      () => assert.fail("an untrusted certificate was accepted"),
      (e) => e,
    );
    assert.ok(error instanceof EchoConnectionError, String(error));
    assert.match(
      error.message,
      new RegExp(`^tls 127\\.0\\.0\\.1:${port}: .*UnknownIssuer.*caCerts`),
    );
    assert.ok(!error.message.includes("\n"));
    assert.deepEqual(error.address, { hostname: "127.0.0.1", port, transport: "tcp" });
  }
  // The server saw the handshakes fail and echoed nothing.
  assert.equal(server.stats.bytesIn, 0);
});

test("tls: servername verifies a name the address is not, and a wrong one is refused", async () => {
  await using server = serveTcpEcho({ port: 0, tls: { cert, key }, onError: () => {} });
  const port = server.addr.port;
  const { reply } = await echoTcp("by name", {
    port,
    tls: { caCerts: [cert], servername: "localhost" },
  });
  assert.equal(decoder.decode(reply), "by name");
  const error = await echoTcp("x", { port, tls: { caCerts: [cert], servername: "example.com" } })
    .then(() => assert.fail("a certificate without example.com was accepted"), (e) => e);
  assert.ok(error instanceof EchoConnectionError, String(error));
  assert.match(error.message, /not valid for name "example\.com".*servername/);
  // The stream client checks the certificate the same way.
  const streamed = await echoTcpStream(ReadableStream.from([new Uint8Array(100_000)]), {
    port,
    tls: { caCerts: [cert], servername: "localhost" },
  });
  assert.equal(streamed.bytes, 100_000);
  await assert.rejects(
    echoTcpStream(ReadableStream.from([new Uint8Array(10)]), { port, tls: {} }),
    (e) => e instanceof EchoConnectionError && /UnknownIssuer/.test(e.message),
  );
});

test("tls: a TLS client of a plain echo server is told the server does not speak TLS", async () => {
  await using server = serveTcpEcho({ port: 0 });
  const error = await echoTcp("x", { port: server.addr.port, tls: { caCerts: [cert] } })
    .then(() => assert.fail("handshake with a plain echo server succeeded"), (e) => e);
  assert.ok(error instanceof EchoConnectionError, String(error));
  assert.match(error.message, /does the server speak TLS\?/);
});

test("tls: a server that never answers the handshake times out", async () => {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const accepted = listener.accept();
  const error = await echoTcp("x", {
    port: (listener.addr as Deno.NetAddr).port,
    timeout: 300,
    tls: { caCerts: [cert] },
  }).then(() => assert.fail("no handshake, yet it succeeded"), (e) => e);
  (await accepted).close();
  listener.close();
  assert.ok(error instanceof EchoTimeoutError, String(error));
  assert.match(error.message, /no TLS handshake with tls 127\.0\.0\.1:\d+ within 300ms/);
});

test("tls: bad certificate or key material is a TypeError naming what is wrong", async () => {
  const cases: [{ cert: string; key: string }, RegExp][] = [
    [{ cert: "not a certificate", key }, /no PEM certificate found/],
    [{ cert, key: "not a key" }, /no PEM private key found/],
    [{ cert: key, key: cert }, /no PEM certificate found/],
    [{ cert, key: await otherKey() }, /does not belong to the certificate/],
  ];
  for (const [tls, pattern] of cases) {
    assert.throws(() => serveTcpEcho({ port: 0, tls }), (e) => {
      assert.ok(e instanceof TypeError, String(e));
      assert.match(e.message, pattern);
      return true;
    });
  }
  assert.throws(
    () => serveTcpEcho({ port: 0, tls: { cert: new Uint8Array(1), key } as never }),
    /PEM text/,
  );
});

// ---- CLI: server.ts --tls-cert/--tls-key, client.ts --tls --ca --servername ----

const SERVER_PERMS = ["--allow-net", "--allow-read"];

test("tls cli: server --tls-cert/--tls-key serves TLS only on TCP; client --tls --ca echoes", async () => {
  const server = await startServer(
    ["-p", "0", "--tls-cert", CERT_FILE, "--tls-key", KEY_FILE],
    SERVER_PERMS,
    /^listening tls 127\.0\.0\.1:(\d+)$/,
  );
  const port = server.ready[1];
  try {
    const ok = await runProgram(
      "client.ts",
      ["--tls", "--ca", CERT_FILE, "-p", port, "hello tls"],
      SERVER_PERMS,
    );
    assert.equal(ok.code, 0, ok.stderr);
    assert.match(
      ok.stdout,
      new RegExp(`^reply from tls 127\\.0\\.0\\.1:${port}: "hello tls" \\(9 bytes\\) time=`),
    );
    const named = await runProgram(
      "client.ts",
      ["--tls", "--ca", CERT_FILE, "--servername", "localhost", "-p", port, "--json"],
      SERVER_PERMS,
    );
    assert.equal(named.code, 0, named.stderr);
    assert.equal(JSON.parse(named.stdout).transport, "tls");
    const data = randomBytes(1024 * 1024, new Random(SEED));
    const streamed = await runProgram(
      "client.ts",
      ["--tls", "--ca", CERT_FILE, "-p", port, "--stdin"],
      SERVER_PERMS,
      data,
    );
    assert.equal(streamed.code, 0, streamed.stderr);
    assert.equal(await sha256(streamed.stdoutBytes), await sha256(data), `seed ${SEED}`);
    assert.match(streamed.stderr, new RegExp(`identical .* via tls 127\\.0\\.0\\.1:${port}\\n$`));

    const untrusted = await runProgram("client.ts", ["--tls", "-p", port], SERVER_PERMS);
    assert.equal(untrusted.code, 1);
    assertOneLine(
      untrusted.stderr,
      /certificate not trusted \(UnknownIssuer\).*--ca FILE/,
      "no --ca",
    );
    const wrongName = await runProgram(
      "client.ts",
      ["--tls", "--ca", CERT_FILE, "--servername", "example.com", "-p", port],
      SERVER_PERMS,
    );
    assert.equal(wrongName.code, 1);
    assertOneLine(wrongName.stderr, /not valid for name "example\.com"/, "wrong servername");
    // No UDP listener: a datagram to the port gets no answer.
    const udp = await runProgram(
      "client.ts",
      ["-u", "-p", port, "--timeout", "200ms", "--retries", "0"],
      ["--allow-net"],
    );
    assert.equal(udp.code, 1);
  } finally {
    const { code, lines } = await stopServer(server);
    assert.equal(code, 0);
    assert.equal(lines.filter((l) => l.startsWith("listening")).length, 1, lines.join("\n"));
  }
});

test("tls cli: --json ready line says secure; a client exchange ends cleanly (close_notify)", async () => {
  const server = await startServer(
    ["-p", "0", "--tls-cert", CERT_FILE, "--tls-key", KEY_FILE, "--json"],
    SERVER_PERMS,
    /"event":"listening"/,
  );
  const ready = JSON.parse(server.ready.input);
  const client = await runProgram(
    "client.ts",
    ["--tls", "--ca", CERT_FILE, "-p", String(ready.port)],
    SERVER_PERMS,
  );
  const { code, lines } = await stopServer(server);
  assert.equal(client.code, 0, client.stderr);
  assert.equal(code, 0);
  assert.equal(ready.transport, "tcp");
  assert.equal(ready.secure, true);
  const events = lines.map((line) => JSON.parse(line));
  // The client exits right after its reply: without close_notify the server would see a
  // truncated stream and count an error.
  assert.deepEqual(events.filter((e) => e.event === "close").map((e) => e.reason), ["eof"]);
  assert.equal(events.find((e) => e.event === "stopped").stats.errors, 0);
});

test("tls cli: bad or missing files and conflicting flags exit 2 with one line", async () => {
  await using dir = {
    path: await Deno.makeTempDir({ prefix: "echo_tls_" }),
    async [Symbol.asyncDispose]() {
      await Deno.remove(this.path, { recursive: true });
    },
  };
  const otherKeyFile = `${dir.path}/other_key.pem`;
  await Deno.writeTextFile(otherKeyFile, await otherKey());
  const encrypted = `${dir.path}/encrypted.pem`;
  await Deno.writeTextFile(encrypted, "-----BEGIN ENCRYPTED PRIVATE KEY-----\nAAAA\n");
  const cases: [string, string[], RegExp][] = [
    ["server.ts", ["--tls-cert", CERT_FILE], /--tls-cert and --tls-key go together/],
    ["server.ts", ["--tls-key", KEY_FILE], /--tls-cert and --tls-key go together/],
    [
      "server.ts",
      ["--tls-cert", `${dir.path}/missing.pem`, "--tls-key", KEY_FILE],
      /--tls-cert .*missing\.pem: no such file/,
    ],
    ["server.ts", ["--tls-cert", dir.path, "--tls-key", KEY_FILE], /is a directory/],
    [
      "server.ts",
      ["--tls-cert", KEY_FILE, "--tls-key", KEY_FILE],
      /--tls-cert .*tls_key\.pem: no PEM certificate in it/,
    ],
    ["server.ts", ["--tls-cert", CERT_FILE, "--tls-key", CERT_FILE], /no PEM key in it/],
    ["server.ts", ["--tls-cert", CERT_FILE, "--tls-key", encrypted], /the key is encrypted/],
    [
      "server.ts",
      ["-p", "0", "--tls-cert", CERT_FILE, "--tls-key", otherKeyFile],
      /does not belong to the certificate/,
    ],
    [
      "server.ts",
      ["--udp", "--tls-cert", CERT_FILE, "--tls-key", KEY_FILE],
      /--udp and --tls-cert conflict/,
    ],
    ["client.ts", ["--tls", "--ca", `${dir.path}/missing.pem`], /--ca .*: no such file/],
    ["client.ts", ["--tls", "--ca", KEY_FILE], /--ca .*: no PEM certificate/],
    ["client.ts", ["--ca", CERT_FILE], /--ca applies to --tls only/],
    ["client.ts", ["--servername", "localhost"], /--servername applies to --tls only/],
    ["client.ts", ["--tls", "-u"], /--udp and --tls conflict/],
  ];
  for (const [program, args, pattern] of cases) {
    const result = await runProgram(program as "server.ts", args, SERVER_PERMS);
    const context = `${program} ${args.join(" ")}`;
    assert.equal(result.code, 2, `${context}: ${result.stderr}`);
    assertOneLine(result.stderr, pattern, context);
  }
});

test("tls cli: without --allow-read, one line names the flag", async () => {
  const server = await runProgram(
    "server.ts",
    ["-p", "0", "--tls-cert", CERT_FILE, "--tls-key", KEY_FILE],
    ["--allow-net"],
  );
  assert.equal(server.code, 1);
  assertOneLine(server.stderr, /permission denied: .*--allow-read/, "server");
  const client = await runProgram("client.ts", ["--tls", "--ca", CERT_FILE], ["--allow-net"]);
  assert.equal(client.code, 1);
  assertOneLine(client.stderr, /permission denied: .*--allow-read/, "client");
});
