import assert from "node:assert/strict";
import { Random, randomSeed } from "../_random.ts";
import { EchoConnectionError } from "../errors.ts";
import { echoTcp, echoTcpStream } from "../tcp.ts";
import {
  MAX_UNIX_PATH_BYTES,
  serveUnixEcho,
  type UnixCloseInfo,
  type UnixConnectionInfo,
  type UnixListenInfo,
  type UnixRejectInfo,
} from "../unix.ts";
import { LineReader, randomBytes, readAll, Recorder, sha256, test } from "./_helpers.ts";
import { assertOneLine, runProgram, startServer, stopServer } from "./_cli_child.ts";

/** One seed per run, named in failure messages so a failing run can be replayed. */
const SEED = Number(Deno.env.get("ECHO_TEST_SEED") ?? randomSeed());
const decoder = new TextDecoder();

/** A temporary directory, removed with everything in it when disposed. */
async function tempDir(): Promise<{ path: string } & AsyncDisposable> {
  const path = await Deno.makeTempDir({ prefix: "echo_unix_" });
  return { path, [Symbol.asyncDispose]: () => Deno.remove(path, { recursive: true }) };
}

/** What is at `path`: `socket`, `file`, `directory`, or `none`. */
async function kindAt(path: string): Promise<string> {
  try {
    const info = await Deno.lstat(path);
    return info.isSocket ? "socket" : info.isFile ? "file" : info.isDirectory ? "directory" : "?";
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) return "none";
    throw error;
  }
}

/**
 * Leaves a stale socket file at `path` the way a crashed server does: a child process binds it and
 * is killed with SIGKILL, so nothing removes the file.
 */
async function staleSocket(path: string): Promise<void> {
  const child = new Deno.Command(Deno.execPath(), {
    args: [
      "eval",
      `const l = Deno.listen({ transport: "unix", path: Deno.args[0] });
       console.log("ready");
       for await (const c of l) c.close();`,
      path,
    ],
    stdout: "piped",
    stderr: "null",
    stdin: "null",
  }).spawn();
  const lines = new LineReader(child.stdout);
  await lines.waitFor(/^ready$/);
  child.kill("SIGKILL");
  await child.status;
  await lines.rest();
}

test("unix: echo over a Unix socket, byte-exact, with Unix addresses in every hook", async () => {
  await using dir = await tempDir();
  const path = `${dir.path}/echo.sock`;
  const listens = new Recorder<UnixListenInfo>();
  const connections = new Recorder<UnixConnectionInfo>();
  const closes = new Recorder<UnixCloseInfo>();
  const server = await serveUnixEcho({
    path,
    onListen: listens.push,
    onConnection: connections.push,
    onClose: closes.push,
  });
  assert.deepEqual(listens.items, [{ transport: "unix", path }]);
  assert.deepEqual(server.listeners, [{ transport: "unix", path }]);
  assert.deepEqual({ ...server.addr }, { transport: "unix", path });
  assert.equal(await kindAt(path), "socket");

  const { reply, address } = await echoTcp("Hello World", { unix: path });
  assert.equal(decoder.decode(reply), "Hello World");
  assert.deepEqual(address, { hostname: "", port: 0, transport: "unix", path });

  const data = randomBytes(4 * 1024 * 1024, new Random(SEED));
  const chunks: Uint8Array[] = [];
  const result = await echoTcpStream(ReadableStream.from([data]), {
    unix: path,
    output: new WritableStream({ write: (chunk) => void chunks.push(chunk) }),
  });
  assert.equal(result.bytes, data.length);
  assert.equal(await sha256(await readAll(ReadableStream.from(chunks))), await sha256(data));

  await closes.until((items) => items.length === 2);
  assert.equal(connections.items[0].localAddr.transport, "unix");
  assert.equal(connections.items[0].localAddr.path, path);
  assert.equal(connections.items[0].remoteAddr.transport, "unix");
  assert.deepEqual(closes.items.map((c) => [c.reason, c.bytes]), [
    ["eof", 11],
    ["eof", data.length],
  ]);
  await server.shutdown();
  assert.equal(server.stats.bytesOut, 11 + data.length);
  assert.equal(server.stats.errors, 0);
});

test("unix: the socket file is removed on shutdown, by shutdown(), signal or dispose", async () => {
  await using dir = await tempDir();
  const path = `${dir.path}/echo.sock`;
  const first = await serveUnixEcho({ path });
  await first.shutdown();
  assert.equal(await kindAt(path), "none");

  const controller = new AbortController();
  const second = await serveUnixEcho({ path, signal: controller.signal });
  await echoTcp("once", { unix: path });
  controller.abort();
  await second.finished;
  assert.equal(await kindAt(path), "none");

  {
    await using _third = await serveUnixEcho({ path });
    assert.equal(await kindAt(path), "socket");
  }
  assert.equal(await kindAt(path), "none");
});

test("unix: a stale socket left by a killed server is replaced", async () => {
  await using dir = await tempDir();
  const path = `${dir.path}/echo.sock`;
  await staleSocket(path);
  assert.equal(await kindAt(path), "socket", "SIGKILL should leave the socket file behind");
  // Nobody accepts on it: the client is refused, and says so.
  await assert.rejects(
    echoTcp("x", { unix: path }),
    (e) => e instanceof EchoConnectionError && /connection refused/.test(e.message),
  );
  await using _server = await serveUnixEcho({ path });
  assert.equal(decoder.decode((await echoTcp("revived", { unix: path })).reply), "revived");
});

test("unix: a path a live server listens on is refused, and that server keeps serving", async () => {
  await using dir = await tempDir();
  const path = `${dir.path}/echo.sock`;
  await using live = await serveUnixEcho({ path });
  const inode = (await Deno.lstat(path)).ino;
  const error = await serveUnixEcho({ path }).then(
    () => assert.fail("a second server took a live server's socket"),
    (e) => e,
  );
  assert.ok(error instanceof EchoConnectionError, String(error));
  assert.equal(
    error.message,
    `cannot listen on unix ${path}: a server is listening there (stop it first, or choose another path)`,
  );
  assert.equal((await Deno.lstat(path)).ino, inode, "the live server's socket was replaced");
  assert.equal(decoder.decode((await echoTcp("still here", { unix: path })).reply), "still here");
  await live.shutdown();
  // The probe connection is the only other session the live server saw.
  assert.equal(live.stats.sessionsTotal, 2);
});

test("unix: a regular file or a directory at the path is refused and left alone", async () => {
  await using dir = await tempDir();
  const file = `${dir.path}/precious.txt`;
  await Deno.writeTextFile(file, "do not delete");
  await assert.rejects(
    serveUnixEcho({ path: file }),
    (e) =>
      e instanceof EchoConnectionError &&
      e.message === `cannot listen on unix ${file}: a regular file is in the way ` +
          "(only a stale socket is replaced)",
  );
  assert.equal(await Deno.readTextFile(file), "do not delete");
  await assert.rejects(
    serveUnixEcho({ path: dir.path }),
    (e) => e instanceof EchoConnectionError && /a directory is in the way/.test(e.message),
  );
  assert.equal(await kindAt(dir.path), "directory");
  await assert.rejects(
    serveUnixEcho({ path: `${dir.path}/missing/echo.sock` }),
    (e) => e instanceof EchoConnectionError && /its directory does not exist$/.test(e.message),
  );
});

test("unix: bad paths and option mixes are TypeError or RangeError", async () => {
  await assert.rejects(serveUnixEcho({ path: "" }), TypeError);
  await assert.rejects(serveUnixEcho({} as never), TypeError);
  await assert.rejects(
    serveUnixEcho({ path: `/tmp/${"x".repeat(MAX_UNIX_PATH_BYTES)}` }),
    (e) => e instanceof RangeError && /the limit is 107/.test(e.message),
  );
  await assert.rejects(echoTcp("x", { unix: "/tmp/x.sock", port: 7 }), TypeError);
  await assert.rejects(echoTcp("x", { unix: "/tmp/x.sock", tls: {} }), TypeError);
  await assert.rejects(echoTcp("x", { unix: "" }), TypeError);
});

test("unix: a client of a path with no socket gets a one-line EchoConnectionError", async () => {
  await using dir = await tempDir();
  const path = `${dir.path}/nobody.sock`;
  const error = await echoTcp("x", { unix: path }).then(() => assert.fail("connected"), (e) => e);
  assert.ok(error instanceof EchoConnectionError, String(error));
  assert.equal(
    error.message,
    `cannot connect to unix ${path}: no such socket (is the server running?)`,
  );
  assert.deepEqual(error.address, { hostname: "", port: 0, transport: "unix", path });
});

test("unix: the connection cap applies, and its refusals are reported as unix", async () => {
  await using dir = await tempDir();
  const path = `${dir.path}/echo.sock`;
  const rejects = new Recorder<UnixRejectInfo>();
  await using server = await serveUnixEcho({ path, maxConnections: 1, onReject: rejects.push });
  const held = await Deno.connect({ transport: "unix", path });
  await held.write(new Uint8Array([1]));
  assert.equal(await held.read(new Uint8Array(1)), 1); // served: it holds the only slot
  const refused = await Deno.connect({ transport: "unix", path });
  assert.equal(await refused.read(new Uint8Array(1)), null); // closed at once
  refused.close();
  await rejects.until((items) => items.length === 1);
  assert.deepEqual(
    { ...rejects.items[0], remoteAddr: rejects.items[0].remoteAddr.transport },
    { transport: "unix", remoteAddr: "unix", reason: "limit" },
  );
  assert.equal(server.stats.dropped.limit, 1);
  held.close();
});

// ---- CLI: server.ts --unix, client.ts --unix ----

/** What Deno 2.9 asks for a Unix socket. */
const UNIX_PERMS = ["--allow-read", "--allow-write", "--allow-net"];

test("unix cli: server --unix serves, client --unix echoes and streams, SIGINT removes the file", async () => {
  await using dir = await tempDir();
  const path = `${dir.path}/cli.sock`;
  const server = await startServer(["--unix", path], UNIX_PERMS, /^listening unix (.+)$/);
  try {
    assert.equal(server.ready[1], path);
    assert.equal(await kindAt(path), "socket");
    const ok = await runProgram("client.ts", ["--unix", path, "hello unix"], UNIX_PERMS);
    assert.equal(ok.code, 0, ok.stderr);
    assert.match(ok.stdout, new RegExp(`^reply from unix ${path}: "hello unix" \\(10 bytes\\)`));
    const data = randomBytes(1024 * 1024, new Random(SEED));
    const streamed = await runProgram("client.ts", ["--unix", path, "--stdin"], UNIX_PERMS, data);
    assert.equal(streamed.code, 0, streamed.stderr);
    assert.equal(await sha256(streamed.stdoutBytes), await sha256(data), `seed ${SEED}`);
    const json = await runProgram("client.ts", ["--unix", path, "--json"], UNIX_PERMS);
    assert.deepEqual(
      (({ transport, address }) => ({ transport, address }))(JSON.parse(json.stdout)),
      { transport: "unix", address: path },
    );
  } finally {
    const { code, lines } = await stopServer(server);
    assert.equal(code, 0);
    assert.ok(lines.some((l) => l === "connection #1 from unix client"), lines.join("\n"));
  }
  assert.equal(await kindAt(path), "none");
});

test("unix cli: taken paths exit 1, conflicting flags exit 2, each with one line", async () => {
  await using dir = await tempDir();
  const file = `${dir.path}/regular`;
  await Deno.writeTextFile(file, "keep");
  const regular = await runProgram("server.ts", ["--unix", file], UNIX_PERMS);
  assert.equal(regular.code, 1);
  assertOneLine(regular.stderr, /a regular file is in the way/, "regular file");
  assert.equal(await Deno.readTextFile(file), "keep");

  const path = `${dir.path}/live.sock`;
  await using _live = await serveUnixEcho({ path });
  const taken = await runProgram("server.ts", ["--unix", path], UNIX_PERMS);
  assert.equal(taken.code, 1);
  assertOneLine(taken.stderr, /a server is listening there/, "live server");

  const missing = await runProgram("client.ts", ["--unix", `${dir.path}/none.sock`], UNIX_PERMS);
  assert.equal(missing.code, 1);
  assertOneLine(missing.stderr, /no such socket \(is the server running\?\)/, "no socket");

  const cases: [string, string[], RegExp][] = [
    ["server.ts", ["--udp", "--unix", path], /--udp and --unix conflict/],
    ["server.ts", ["--unix", path, "-p", "7"], /--unix and --port conflict/],
    ["server.ts", ["--unix", path, "--host", "::1"], /--unix and --host conflict/],
    ["server.ts", ["--unix", path, "--allow", "10.0.0.0/8"], /--unix and --allow conflict/],
    [
      "server.ts",
      ["--unix", path, "--tls-cert", "c.pem", "--tls-key", "k.pem"],
      /--tls-cert and --unix conflict/,
    ],
    ["server.ts", ["--unix", ""], /--unix must not be empty/],
    ["client.ts", ["--unix", path, "-u"], /--udp and --unix conflict/],
    ["client.ts", ["--unix", path, "--tls"], /--tls and --unix conflict/],
    ["client.ts", ["--unix", path, "-p", "7"], /--unix and --port conflict/],
  ];
  for (const [program, args, pattern] of cases) {
    const result = await runProgram(program as "server.ts", args, UNIX_PERMS);
    const context = `${program} ${args.join(" ")}`;
    assert.equal(result.code, 2, `${context}: ${result.stderr}`);
    assertOneLine(result.stderr, pattern, context);
  }
});

test("unix cli: a missing permission is one line naming all three flags", async () => {
  await using dir = await tempDir();
  const path = `${dir.path}/perm.sock`;
  for (const deno of [[], ["--allow-read"], ["--allow-read", "--allow-write"]]) {
    for (const program of ["server.ts", "client.ts"] as const) {
      const result = await runProgram(program, ["--unix", path], deno);
      const context = `${program} with ${deno.join(" ") || "no permissions"}`;
      assert.equal(result.code, 1, `${context}: ${result.stderr}`);
      assertOneLine(
        result.stderr,
        /permission denied: --unix needs --allow-read, --allow-write and --allow-net/,
        context,
      );
    }
  }
  assert.equal(await kindAt(path), "none");
});
