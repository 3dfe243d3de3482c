import assert from "node:assert/strict";
import { Random, randomSeed } from "../_random.ts";
import { echoTcp } from "../tcp.ts";
import { echoUdp } from "../udp.ts";
import { assertOneLine, runProgram } from "./_cli_child.ts";
import {
  childEnded,
  HAS_IPV6,
  randomBytes,
  readAll,
  type ReadChild,
  readyOrKill,
  ROOT,
  sha256,
  spawnServer,
  takeUdpPortWithFreeTcp,
  test,
} from "./_helpers.ts";

const SEED = Number(Deno.env.get("ECHO_TEST_SEED") ?? randomSeed());
const HOST = "127.0.0.1";
const decoder = new TextDecoder();
const VERSION = JSON.parse(await Deno.readTextFile(`${ROOT}deno.json`)).version as string;

/** A server.ts child, with its ready lines read and its port known. */
interface RunningServer extends ReadChild {
  port: number;
}

/**
 * Starts server.ts and waits for its `listening` lines (one per transport).
 *
 * @param args Flags for server.ts.
 * @param options `deno` flags (default `--allow-net`), how many listeners to wait for, JSON mode.
 */
async function startServer(
  args: string[],
  options: { deno?: string[]; listeners?: number; json?: boolean } = {},
): Promise<RunningServer> {
  const server = spawnServer(args, options.deno);
  const { stdout } = server;
  const ports: number[] = [];
  await readyOrKill(
    server,
    (async () => {
      while (ports.length < (options.listeners ?? 2)) {
        if (options.json) {
          const { input } = await stdout.waitFor(/"event":"listening"/);
          ports.push(JSON.parse(input).port);
        } else {
          const match = await stdout.waitFor(/^listening (tcp|udp) 127\.0\.0\.1:(\d+)$/);
          ports.push(Number(match[2]));
        }
      }
    })(),
  );
  assert.ok(ports.every((p) => p === ports[0] && p > 0), `ports ${ports}`);
  return { ...server, port: ports[0] };
}

/** Signals a server and collects how it ended. */
async function stopServer(
  server: RunningServer,
  signal: Deno.Signal = "SIGINT",
): Promise<{ code: number; lines: string[]; stderr: string }> {
  server.child.kill(signal);
  return await childEnded(server);
}

/** Runs one of the CLIs to completion (with `--allow-net` unless `deno` flags are given). */
function run(
  program: "server.ts" | "client.ts",
  args: string[],
  options: { deno?: string[]; stdin?: Uint8Array } = {},
): Promise<{ code: number; stdout: string; stderr: string }> {
  return runProgram(program, args, options.deno ?? ["--allow-net"], options.stdin);
}

/** A port nobody listens on (bound then released). */
function closedPort(): number {
  const listener = Deno.listen({ hostname: HOST, port: 0 });
  const port = (listener.addr as Deno.NetAddr).port;
  listener.close();
  return port;
}

test("cli: default TCP exchange and -u, output shape, then SIGINT stops gracefully", async () => {
  const server = await startServer(["-p", "0"]);
  const { port } = server;

  const tcp = await run("client.ts", ["-p", String(port)]);
  assert.equal(tcp.code, 0, tcp.stderr);
  assert.match(
    tcp.stdout,
    new RegExp(
      `^reply from tcp 127\\.0\\.0\\.1:${port}: "Hello World" \\(11 bytes\\) time=\\d+(\\.\\d+)?(µs|ms|s)\\n$`,
    ),
  );
  assert.equal(tcp.stderr, "");
  await server.stdout.waitFor(/^connection #1 from 127\.0\.0\.1:\d+$/);
  await server.stdout.waitFor(
    /^closed #1 127\.0\.0\.1:\d+: 11 bytes echoed in \d+\.\dms \(eof\)$/,
  );

  const udp = await run("client.ts", ["-u", "-p", String(port), "hi", "there"]);
  assert.equal(udp.code, 0, udp.stderr);
  assert.match(
    udp.stdout,
    new RegExp(`^reply from udp 127\\.0\\.0\\.1:${port}: "hi there" \\(8 bytes\\) time=\\S+\\n$`),
  );
  await server.stdout.waitFor(/^datagram from 127\.0\.0\.1:\d+: 8 bytes$/);

  const { code, lines, stderr } = await stopServer(server, "SIGINT");
  assert.equal(code, 0, stderr);
  assert.equal(
    lines.at(-1),
    "stopped: 1 TCP session, 1 datagram, 19 bytes in, 19 bytes out, 0 errors",
  );
  assert.equal(stderr, "");
});

test("cli: SIGTERM stops the server gracefully with the stopped line", async () => {
  const server = await startServer(["-p", "0", "--tcp"], { listeners: 1 });
  const { code, lines } = await stopServer(server, "SIGTERM");
  assert.equal(code, 0);
  assert.match(lines.at(-1)!, /^stopped: 0 TCP sessions, 0 datagrams/);
});

test("cli: --json lines parse and carry the schema, on both programs", async () => {
  const server = await startServer(["-p", "0", "--json"], { json: true });
  const { port } = server;
  const tcp = await run("client.ts", ["-p", String(port), "--json", "json please"]);
  assert.equal(tcp.code, 0, tcp.stderr);
  const tcpResult = JSON.parse(tcp.stdout);
  assert.equal(tcp.stdout.trim().split("\n").length, 1);
  assert.deepEqual(
    { ...tcpResult, rtt_ms: typeof tcpResult.rtt_ms },
    {
      schema: 1,
      ok: true,
      transport: "tcp",
      address: `127.0.0.1:${port}`,
      bytes: 11,
      reply: "json please",
      rtt_ms: "number",
    },
  );
  const udp = await run("client.ts", ["-u", "-p", String(port), "--json"]);
  assert.equal(udp.code, 0, udp.stderr);
  const udpResult = JSON.parse(udp.stdout);
  assert.equal(udpResult.schema, 1);
  assert.equal(udpResult.transport, "udp");
  assert.equal(udpResult.attempts, 1);
  assert.equal(udpResult.reply, "Hello World");

  const { code, lines } = await stopServer(server, "SIGTERM");
  assert.equal(code, 0);
  const events = lines.map((line) => JSON.parse(line));
  assert.ok(events.every((e) => e.schema === 1 && typeof e.event === "string" && e.time));
  assert.deepEqual(events.map((e) => e.event), [
    "listening",
    "listening",
    "connection",
    "close",
    "datagram",
    "stopped",
  ]);
  const close = events[3];
  assert.equal(close.bytes, 11);
  assert.equal(close.reason, "eof");
  assert.equal(events[4].size, 11);
  assert.equal(events[5].stats.sessionsTotal, 1);
  assert.equal(events[5].stats.datagramsIn, 1);

  // A failure is a JSON line on stdout too, and one line on stderr.
  const port2 = closedPort();
  const failed = await run("client.ts", ["-p", String(port2), "--json"]);
  assert.equal(failed.code, 1);
  const failure = JSON.parse(failed.stdout);
  assert.equal(failure.schema, 1);
  assert.equal(failure.ok, false);
  assert.equal(failure.error, "EchoConnectionError");
  assertOneLine(failed.stderr, new RegExp(`127\\.0\\.0\\.1:${port2}`), "client --json failure");
});

test("cli: --stdin streams 4 MiB of random bytes through the server unchanged", async () => {
  const server = await startServer(["-p", "0", "--tcp", "-q"], { listeners: 1 });
  const data = randomBytes(4 * 1024 * 1024, new Random(SEED));
  const child = new Deno.Command(Deno.execPath(), {
    args: ["run", "--allow-net", "client.ts", "--stdin", "-p", String(server.port)],
    cwd: ROOT,
    stdin: "piped",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  // Write and read at once: the echo comes back while input is still going in.
  const writing = (async () => {
    const writer = child.stdin.getWriter();
    for (let offset = 0; offset < data.length; offset += 100_000) {
      await writer.write(data.subarray(offset, offset + 100_000));
    }
    await writer.close();
  })();
  const [, echoed, stderr, status] = await Promise.all([
    writing,
    readAll(child.stdout),
    new Response(child.stderr).text(),
    child.status,
  ]);
  assert.equal(status.code, 0, stderr);
  assert.equal(echoed.length, data.length);
  assert.equal(await sha256(echoed), await sha256(data), `seed ${SEED}`);
  assertOneLine(
    stderr,
    /^echoed 4 MiB identical in \S+ \(.+\/s\) via tcp 127\.0\.0\.1:\d+$/,
    "--stdin",
  );
  const { code, lines } = await stopServer(server);
  assert.equal(code, 0);
  assert.deepEqual(
    lines.slice(0, -1),
    ["listening tcp 127.0.0.1:" + server.port],
    "-q prints no events",
  );
  // ... but the summary at exit.
  assert.match(lines.at(-1)!, /^stopped: 1 TCP session, 0 datagrams, 4,194,304 bytes in, /);
});

for (const transport of ["tcp", "udp"] as const) {
  test(`cli: server --once exits 0 by itself after one ${transport} exchange`, async () => {
    const server = await startServer(["-p", "0", "--once"]);
    const args = transport === "udp" ? ["-u"] : [];
    const client = await run("client.ts", [...args, "-p", String(server.port), "once"]);
    assert.equal(client.code, 0, client.stderr);
    const { code, lines, stderr } = await childEnded(server);
    assert.equal(code, 0, stderr);
    assert.match(
      lines.at(-1)!,
      transport === "tcp"
        ? /^stopped: 1 TCP session, 0 datagrams, 4 bytes in, 4 bytes out, 0 errors$/
        : /^stopped: 0 TCP sessions, 1 datagram, 4 bytes in, 4 bytes out, 0 errors$/,
    );
  });
}

test("cli: bad input exits 2 (usage) with one line and no stack trace", async () => {
  const cases: ["server.ts" | "client.ts", string[], RegExp][] = [
    ["server.ts", ["--bogus"], /^server\.ts: unknown option --bogus \(see --help\)$/],
    ["client.ts", ["--bogus"], /^client\.ts: unknown option --bogus \(see --help\)$/],
    ["server.ts", ["-p", "x"], /^server\.ts: --port must be a number from 0 to 65535, got "x"/],
    ["server.ts", ["-p", "70000"], /--port must be a number from 0 to 65535, got "70000"/],
    ["client.ts", ["-p", "x"], /^client\.ts: --port must be a number from 0 to 65535, got "x"/],
    ["client.ts", ["-p", "70000"], /--port must be a number from 0 to 65535/],
    ["client.ts", ["-p", "0"], /--port must be from 1 to 65535 for a client/],
    ["client.ts", ["--timeout", "5x"], /^client\.ts: --timeout: invalid duration "5x"/],
    ["client.ts", ["--timeout", "0"], /--timeout must be above 0/],
    ["server.ts", ["--quiet", "--verbose"], /^server\.ts: --quiet and --verbose conflict/],
    ["client.ts", ["--stdin", "--udp"], /^client\.ts: --stdin works over TCP only/],
    ["client.ts", ["--retries", "2"], /--retries applies to --udp only/],
    ["client.ts", ["-u", "--retries", "-1"], /--retries|needs a value/],
    ["server.ts", ["-p"], /option -p needs a value|--port needs a value/],
    ["server.ts", ["stray"], /unexpected argument "stray"/],
    // Impairments of the other transport would be ignored: they are refused, naming the transport.
    [
      "server.ts",
      ["--tcp", "--loss", "0.2"],
      /^server\.ts: --loss applies to UDP replies only .*serves TCP only/,
    ],
    [
      "server.ts",
      ["--tcp", "--reorder", "0.1"],
      /^server\.ts: --reorder applies to UDP replies only/,
    ],
    [
      "server.ts",
      ["--tcp", "--jitter", "5ms"],
      /^server\.ts: --jitter applies to UDP replies only/,
    ],
    [
      "server.ts",
      ["--udp", "--bandwidth", "1M"],
      /^server\.ts: --bandwidth applies to TCP only .*serves UDP only/,
    ],
  ];
  await Promise.all(cases.map(async ([program, args, pattern]) => {
    const context = `${program} ${args.join(" ")}`;
    const { code, stdout, stderr } = await run(program, args);
    assert.equal(code, 2, `${context}: ${stderr}`);
    assertOneLine(stderr, pattern, context);
    assert.equal(stdout, "", context);
  }));
});

test("cli: runtime failures exit 1 with one line naming the address", async () => {
  const taken = Deno.listen({ hostname: HOST, port: 0 });
  const takenPort = (taken.addr as Deno.NetAddr).port;
  const takenUdp = takeUdpPortWithFreeTcp();
  const takenUdpPort = (takenUdp.addr as Deno.NetAddr).port;
  const closed = closedPort();
  try {
    // The two UDP cases run one after the other: each binds TCP on the port before failing on UDP.
    const udpInUse = await run("server.ts", ["-p", String(takenUdpPort)]);
    const udpInUseFallback = await run("server.ts", ["-p", String(takenUdpPort)], {
      deno: ["--no-config", "--allow-net"],
    });
    const [inUse, refused, silent] = await Promise.all([
      run("server.ts", ["-p", String(takenPort)]),
      run("client.ts", ["-p", String(closed)]),
      run("client.ts", ["-u", "-p", String(closed), "--timeout", "50ms", "--retries", "1"]),
    ]);
    assert.equal(inUse.code, 1, inUse.stderr);
    assertOneLine(
      inUse.stderr,
      new RegExp(
        `^server\\.ts: error: cannot listen on tcp 127\\.0\\.0\\.1:${takenPort}: address already in use$`,
      ),
      "server port in use",
    );
    for (const [name, result] of [["deno", udpInUse], ["node:dgram", udpInUseFallback]] as const) {
      assert.equal(result.code, 1, `${name}: ${result.stderr}`);
      assert.match(
        result.stderr.trimEnd(),
        new RegExp(
          `^server\\.ts: error: cannot listen on udp 127\\.0\\.0\\.1:${takenUdpPort}: address already in use$`,
        ),
        `${name}: ${result.stderr}`,
      );
      assert.doesNotMatch(result.stderr, /^\s+at /m);
    }
    assert.equal(refused.code, 1, refused.stderr);
    assertOneLine(
      refused.stderr,
      new RegExp(
        `^client\\.ts: error: cannot connect to tcp 127\\.0\\.0\\.1:${closed}: connection refused$`,
      ),
      "client to a closed port",
    );
    assert.equal(silent.code, 1, silent.stderr);
    assertOneLine(
      silent.stderr,
      new RegExp(
        `^client\\.ts: error: no reply from udp 127\\.0\\.0\\.1:${closed} after 2 attempts of 50ms$`,
      ),
      "udp client to a closed port",
    );
  } finally {
    taken.close();
    takenUdp.close();
  }
});

test("cli: without --allow-net both programs exit 1 with a message naming --allow-net", async () => {
  const [server, client] = await Promise.all([
    run("server.ts", ["-p", "0"], { deno: ["--no-prompt"] }),
    run("client.ts", ["-p", "9"], { deno: ["--no-prompt"] }),
  ]);
  for (const [name, result] of [["server.ts", server], ["client.ts", client]] as const) {
    assert.equal(result.code, 1, `${name}: ${result.stderr}`);
    assertOneLine(result.stderr, /^\S+: permission denied: .*--allow-net/, name);
  }
});

test("cli: --help and --version exit 0 on both programs", async () => {
  const results = await Promise.all([
    run("server.ts", ["--help"]),
    run("client.ts", ["-h"]),
    run("server.ts", ["--version"]),
    run("client.ts", ["-V"]),
  ]);
  for (const { code, stderr } of results) assert.equal(code, 0, stderr);
  const [serverHelp, clientHelp, serverVersion, clientVersion] = results.map((r) => r.stdout);
  assert.match(serverHelp, new RegExp(`^server\\.ts ${VERSION} — `));
  assert.match(serverHelp, /Usage:\n {2}deno run --allow-net server\.ts/);
  assert.match(serverHelp, /-p, --port PORT/);
  assert.match(serverHelp, /Exit codes: 0 ok, 1 runtime failure, 2 usage error\./);
  assert.match(clientHelp, new RegExp(`^client\\.ts ${VERSION} — `));
  assert.match(clientHelp, /--stdin/);
  // Each section heading once, however the flag table orders its groups.
  for (const help of [serverHelp, clientHelp]) {
    const headings = help.split("\n").filter((line) => /^\S.*:$/.test(line));
    assert.deepEqual(headings, [...new Set(headings)], "a heading repeats");
  }
  assert.match(
    serverVersion,
    new RegExp(`^server\\.ts ${VERSION} \\(deno \\d+\\.\\d+\\.\\d+\\)\\n$`),
  );
  assert.match(
    clientVersion,
    new RegExp(`^client\\.ts ${VERSION} \\(deno \\d+\\.\\d+\\.\\d+\\)\\n$`),
  );
});

test("cli: without unstable net, UDP falls back to node:dgram and says so once on stderr", async () => {
  const server = await startServer(["-p", "0"], { deno: ["--no-config", "--allow-net"] });
  const { port } = server;
  const udp = await echoUdp("fallback", { port });
  assert.equal(decoder.decode(udp.reply), "fallback");
  const tcp = await echoTcp("and tcp", { port });
  assert.equal(decoder.decode(tcp.reply), "and tcp");
  const { code, lines, stderr } = await stopServer(server);
  assert.equal(code, 0, stderr);
  assert.match(lines.at(-1)!, /^stopped: 1 TCP session, 1 datagram/);
  const notes = stderr.split("\n").filter((line) => line.includes("node:dgram"));
  assert.deepEqual(notes, [
    "note: UDP runs on node:dgram; run with --unstable-net to use Deno.listenDatagram",
  ]);
  assert.equal(stderr.trim(), notes[0]);
});

test("cli: IPv6 loopback on both programs, with and without brackets", async () => {
  const server = spawnServer(["--host", "::1", "-p", "0"]);
  const { stdout } = server;
  const port = Number((await stdout.waitFor(/^listening tcp \[::1\]:(\d+)$/))[1]);
  await stdout.waitFor(new RegExp(`^listening udp \\[::1\\]:${port}$`));
  const [tcp, udp] = await Promise.all([
    run("client.ts", ["--host", "::1", "-p", String(port), "v6"]),
    run("client.ts", ["-u", "--host", "[::1]", "-p", String(port), "v6"]),
  ]);
  assert.equal(tcp.code, 0, tcp.stderr);
  assert.match(tcp.stdout, new RegExp(`^reply from tcp \\[::1\\]:${port}: "v6" \\(2 bytes\\)`));
  assert.equal(udp.code, 0, udp.stderr);
  assert.match(udp.stdout, new RegExp(`^reply from udp \\[::1\\]:${port}: "v6" \\(2 bytes\\)`));
  server.child.kill("SIGINT");
  const { code, lines } = await childEnded(server);
  assert.equal(code, 0);
  assert.match(lines.at(-1)!, /^stopped: 1 TCP session, 1 datagram/);
}, { ignore: !HAS_IPV6 });

test("cli: server -v shows each message as text, or as a hex dump when binary", async () => {
  const server = await startServer(["-p", "0", "-v"]);
  await echoTcp("plain text", { port: server.port });
  await server.stdout.waitFor(/^received from 127\.0\.0\.1:\d+ \(#1\): "plain text"$/);
  await echoUdp(new Uint8Array([0, 1, 2, 0xff, 0x41]), { port: server.port });
  await server.stdout.waitFor(/^received from 127\.0\.0\.1:\d+ \(udp\): 5 bytes:$/);
  await server.stdout.waitFor(/^ {2}00000000 {2}00 01 02 ff 41 {35}\|\.\.\.\.A\|$/);
  const { code } = await stopServer(server);
  assert.equal(code, 0);
});

test("cli: client failures against misbehaving servers exit 1 with one line", async () => {
  // A TCP server that answers with one byte changed, and one that never answers.
  const corrupting = Deno.listen({ hostname: HOST, port: 0 });
  const silent = Deno.listen({ hostname: HOST, port: 0 });
  const serveOne = async (listener: Deno.Listener, answer: boolean) => {
    const conn = await listener.accept();
    try {
      const buffer = new Uint8Array(64);
      let got = 0;
      while (got < 11) {
        const n = await conn.read(buffer.subarray(got));
        if (n === null) break;
        got += n;
      }
      if (answer) {
        buffer[6] ^= 0x20;
        await conn.write(buffer.subarray(0, got));
      }
      while ((await conn.read(buffer)) !== null) {
        // wait for the client to give up
      }
    } catch {
      // the client may reset
    } finally {
      conn.close();
      listener.close();
    }
  };
  const servers = [serveOne(corrupting, true), serveOne(silent, false)];
  const closed = closedPort();
  const [mismatch, timeout, stdinRefused, tooBig] = await Promise.all([
    run("client.ts", ["-p", String((corrupting.addr as Deno.NetAddr).port)]),
    run("client.ts", ["-p", String((silent.addr as Deno.NetAddr).port), "--timeout", "100ms"]),
    run("client.ts", ["--stdin", "-p", String(closed)], { stdin: new Uint8Array(10) }),
    run("client.ts", ["-u", "-p", "9", "x".repeat(65_508)]),
  ]);
  await Promise.all(servers);
  assert.equal(mismatch.code, 1, mismatch.stderr);
  assertOneLine(
    mismatch.stderr,
    /^client\.ts: error: reply from tcp 127\.0\.0\.1:\d+ differs from the message at byte 6$/,
    "mismatch",
  );
  assert.equal(timeout.code, 1, timeout.stderr);
  assertOneLine(
    timeout.stderr,
    /^client\.ts: error: no complete reply from tcp 127\.0\.0\.1:\d+ within 100ms$/,
    "timeout",
  );
  assert.equal(stdinRefused.code, 1, stdinRefused.stderr);
  assert.equal(stdinRefused.stdout, "");
  assertOneLine(
    stdinRefused.stderr,
    /cannot connect to tcp 127\.0\.0\.1:\d+: connection refused$/,
    "--stdin",
  );
  assert.equal(tooBig.code, 2, tooBig.stderr);
  assertOneLine(tooBig.stderr, /a UDP message holds at most 65507 bytes, got 65508/, "too big");
});

test("cli: --stdin with empty input echoes nothing and exits 0", async () => {
  const server = await startServer(["-p", "0", "--tcp", "--once"], { listeners: 1 });
  const client = await run("client.ts", ["--stdin", "-p", String(server.port)], {
    stdin: new Uint8Array(0),
  });
  assert.equal(client.code, 0, client.stderr);
  assert.equal(client.stdout, "");
  assertOneLine(client.stderr, /^echoed 0 B identical in /, "empty --stdin");
  const { code } = await childEnded(server);
  assert.equal(code, 0);
});

test("cli: SIGINT with an idle session open waits out the grace period, then exits 0", async () => {
  const server = await startServer(["-p", "0", "--tcp"], { listeners: 1 });
  const conn = await Deno.connect({ hostname: HOST, port: server.port });
  await server.stdout.waitFor(/^connection #1 from /);
  const { code, lines, stderr } = await stopServer(server, "SIGINT");
  assert.equal(code, 0, stderr);
  assert.match(
    lines.at(-2)!,
    /^closed #1 127\.0\.0\.1:\d+: 0 bytes echoed in \d+\.\dms \(shutdown\)$/,
  );
  assert.match(lines.at(-1)!, /^stopped: 1 TCP session,/);
  assert.equal(await conn.read(new Uint8Array(1)), null);
  conn.close();
});

test("cli: --stdin whose standard output is closed early says so, not 'broken pipe' on the connection", async () => {
  const server = await startServer(["-p", "0", "--tcp", "-q"], { listeners: 1 });
  const child = new Deno.Command(Deno.execPath(), {
    args: ["run", "--allow-net", "client.ts", "--stdin", "-p", String(server.port)],
    cwd: ROOT,
    stdin: "piped",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  // Like `| head -c 100`: read a little of the echo, then close the pipe while input keeps coming.
  const writer = child.stdin.getWriter();
  const chunk = new Uint8Array(64 * 1024);
  await writer.write(chunk);
  const reader = child.stdout.getReader();
  const first = await reader.read();
  assert.ok(first.value && first.value.length > 0);
  await reader.cancel();
  const stderr = new Response(child.stderr).text();
  try {
    for (let i = 0; i < 256; i++) await writer.write(chunk); // at most 16 MiB: it fails long before
    await writer.close();
  } catch {
    // the client exited and closed its stdin
  }
  const status = await child.status;
  assert.equal(status.code, 1);
  assertOneLine(
    await stderr,
    /^client\.ts: error: standard output closed \(broken pipe\) after [\d,]+ echoed bytes had been written to it: it was the output that closed, not the connection$/,
    "--stdin | head",
  );
  await stopServer(server);
});
