/**
 * server.ts as a server reachable from the network would be run (issue 10's phase 2, issue 11
 * #5), over real sockets and spawned CLIs: `--host` parsed strictly before anything listens
 * (exit 2, `--port` named for a host with a port in it); the "reachable from the network" notice
 * and the non-loopback defaults (per-source cap, UDP rate) decided from the address bound, after
 * the bind, never from the text (`127.1` and `localhost` are loopback, `8.8.8.8` fails to bind
 * with no notice first); `--allow-file`, `--max-per-source` and `--per-source-prefix6`. Traffic
 * goes to 127.0.0.1 only: a 0.0.0.0 bind is reached through loopback.
 *
 * @module
 */
import assert from "node:assert/strict";
import { DEFAULT_MAX_PER_SOURCE } from "../limits.ts";
import { assertOneLine, runProgram, type ServerChild, startServer } from "./_cli_child.ts";
import { childEnded, roundTrip, test, watchdog } from "./_helpers.ts";

const within = watchdog(20_000);
const LISTENING = /^listening tcp (\S+):(\d+)$/;
const NOTICE = /notice: the echo service on .* is reachable from the network/;

/** Starts server.ts and reads its listening lines (one per transport). */
async function start(
  args: string[],
  deno = ["--allow-net"],
): Promise<ServerChild & { port: number }> {
  const server = await startServer(args, deno, LISTENING);
  if (!args.includes("--tcp")) await within(server.stdout.waitFor(/^listening udp /), "udp ready");
  return { ...server, port: Number(server.ready[2]) };
}

/** Stops a server with SIGINT; its exit code, the stopped line and stderr. */
async function stop(
  server: ServerChild,
): Promise<{ code: number; stopped: string; stderr: string }> {
  server.child.kill("SIGINT");
  const { code, lines, stderr } = await within(childEnded(server), "the server to stop");
  return { code, stopped: lines.find((line) => line.startsWith("stopped:")) ?? "", stderr };
}

/** Opens `count` TCP connections to hostname:port (loopback) at once; how many of them echo. */
async function served(port: number, count: number, hostname = "127.0.0.1"): Promise<number> {
  const conns: Deno.Conn[] = [];
  try {
    for (let i = 0; i < count; i++) conns.push(await Deno.connect({ hostname, port }));
    // Each connection is echoed or closed at once: nothing is left waiting.
    const echoed = await within(
      Promise.all(conns.map((conn) => roundTrip(conn, Uint8Array.of(7)).then(() => 1, () => 0))),
      `${count} connections`,
    );
    return echoed.reduce((a: number, b) => a + b, 0);
  } finally {
    for (const conn of conns) conn.close();
  }
}

/**
 * Sends `total` one-byte datagrams to 127.0.0.1:port in bursts of 50, each burst after the last
 * one's replies (or 200 ms without one, when the rest will not come), and counts the replies. A
 * burst fits in any socket buffer, so a missing reply is the server's choice, not a lost packet.
 */
async function udpAnswered(port: number, total: number, hostname = "127.0.0.1"): Promise<number> {
  const socket = Deno.listenDatagram({ transport: "udp", hostname, port: 0 });
  const target: Deno.NetAddr = { transport: "udp", hostname, port };
  let answered = 0;
  let waiting: (() => void) | undefined;
  const reader = (async () => {
    try {
      for (;;) {
        await socket.receive();
        answered++;
        waiting?.();
      }
    } catch {
      // closed
    }
  })();
  try {
    for (let sent = 0; sent < total;) {
      const burst = Math.min(50, total - sent);
      for (let i = 0; i < burst; i++) await socket.send(Uint8Array.of(sent++ & 0xff), target);
      for (let before = -1; answered < sent && answered !== before;) {
        before = answered;
        const { promise, resolve } = Promise.withResolvers<void>();
        waiting = resolve;
        const timer = setTimeout(resolve, 200);
        await promise;
        clearTimeout(timer);
      }
    }
  } finally {
    socket.close();
    await reader;
  }
  return answered;
}

test("server.ts --host: a port, zone id, stray brackets or a newline are usage errors before anything listens", async () => {
  const cases: [string, RegExp][] = [
    [
      "127.0.0.1:20052",
      /--host "127\.0\.0\.1:20052" holds a port: .*--host 127\.0\.0\.1 --port 20052/,
    ],
    ["[::1]:5006", /holds a port: .*--port 5006/],
    ["localhost:5006", /holds a port: .*--port 5006/],
    ["::1%lo", /--host: invalid host "::1%lo": zone ids/],
    ["[[::1]]", /--host: invalid host "\[\[::1\]\]": brackets/],
    ["evil\nline", /--host: invalid host "evil\\nline": spaces, control characters/],
    ["", /--host: invalid host "": give an address/],
    ["010.0.0.1", /leading zeros/],
  ];
  for (const [host, message] of cases) {
    const { code, stdout, stderr } = await runProgram("server.ts", ["--host", host, "-p", "0"], [
      "--allow-net",
    ]);
    assert.equal(code, 2, `--host ${JSON.stringify(host)}: ${stderr}`);
    assert.equal(stdout, "", "nothing listened");
    assertOneLine(stderr, message, `--host ${JSON.stringify(host)}`);
    assert.doesNotMatch(stderr, NOTICE);
  }
  // The client parses --host the same way.
  const client = await runProgram("client.ts", ["--host", "127.0.0.1:20052", "hi"], [
    "--allow-net",
  ]);
  assert.equal(client.code, 2, client.stderr);
  assertOneLine(client.stderr, /holds a port: .*--port 20052/, "client --host with a port");
});

test("server.ts --host 8.8.8.8: the bind fails (exit 1) and no network notice comes first", async () => {
  const { code, stdout, stderr } = await runProgram("server.ts", ["--host", "8.8.8.8", "-p", "0"], [
    "--allow-net",
  ]);
  assert.equal(code, 1, stderr);
  assert.equal(stdout, "");
  assertOneLine(stderr, /cannot listen on tcp 8\.8\.8\.8:0/, "a bind that fails");
  assert.doesNotMatch(stderr, NOTICE);
});

test("server.ts --host 127.1 / localhost: loopback, so no notice, no per-source cap, no UDP rate limit", async () => {
  const count = DEFAULT_MAX_PER_SOURCE + 6;
  for (const host of ["127.1", "localhost"]) {
    const server = await start(["--host", host, "-p", "0"]);
    // localhost may be ::1 first on some systems: either is loopback.
    const bound = server.ready[1].replace(/^\[(.*)\]$/, "$1");
    assert.match(bound, /^(127\.0\.0\.1|::1)$/, `${host} binds loopback`);
    const echoed = await served(server.port, count, bound);
    assert.equal(echoed, count, `${host}: every connection echoed`);
    const answered = await udpAnswered(server.port, 1500, bound);
    assert.equal(answered, 1500, `${host}: every datagram answered`);
    const { code, stopped, stderr } = await stop(server);
    assert.equal(code, 0, stderr);
    assert.doesNotMatch(stderr, NOTICE, `${host} printed the network notice`);
    assert.doesNotMatch(stopped, /refused/, `${host}: ${stopped}`);
  }
});

test("server.ts --host 0.0.0.0: the notice after the bind, from the bound address; per-source cap and UDP rate on", async () => {
  const count = DEFAULT_MAX_PER_SOURCE + 6;
  const server = await start(["--host", "0.0.0.0", "-p", "0"]);
  assert.equal(server.ready[1], "0.0.0.0");
  assert.equal(await served(server.port, count), DEFAULT_MAX_PER_SOURCE);
  const answered = await udpAnswered(server.port, 2000);
  assert.ok(answered < 2000, "all 2000 datagrams answered: no rate limit");
  const { code, stopped, stderr } = await stop(server);
  assert.equal(code, 0, stderr);
  assert.match(stderr, /notice: the echo service on 0\.0\.0\.0 is reachable from the network/);
  assert.match(stopped, new RegExp(`refused: .*source ${count - DEFAULT_MAX_PER_SOURCE}\\b`));
  assert.match(stopped, /refused: .*rate \d+/);
  // --max-per-source 0 turns the cap off.
  const open = await start(["--host", "0.0.0.0", "-p", "0", "--tcp", "--max-per-source", "0"]);
  assert.equal(await served(open.port, count), count);
  const ended = await stop(open);
  assert.doesNotMatch(ended.stopped, /refused/);
});

test("server.ts --max-per-source N: the N+1th session from one source is refused and counted", async () => {
  const server = await start(["-p", "0", "--tcp", "--max-per-source", "2"]);
  assert.equal(await served(server.port, 3), 2);
  const { code, stopped, stderr } = await stop(server);
  assert.equal(code, 0, stderr);
  assert.match(stopped, /refused: source 1\b/);
  for (
    const [args, message] of [
      [["--max-per-source", "1.5"], /--max-per-source must be a whole number/],
      [
        ["--per-source-prefix6", "129"],
        /--per-source-prefix6 must be a whole number from 0 to 128/,
      ],
    ] as const
  ) {
    const bad = await runProgram("server.ts", ["-p", "0", ...args], ["--allow-net"]);
    assert.equal(bad.code, 2, bad.stderr);
    assertOneLine(bad.stderr, message, args.join(" "));
  }
});

test("server.ts --allow-file: rules from files, with --allow; bad rules name file and line (exit 2)", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const deny = `${dir}/deny.txt`;
    await Deno.writeTextFile(deny, "# nobody local\n10.0.0.0/8\n");
    const allow = `${dir}/allow.txt`;
    await Deno.writeTextFile(allow, "# loopback\r\n127.0.0.0/8  # v4\r\n\r\n::1\r\n");
    const deno = ["--allow-net", `--allow-read=${dir}`];
    // Only 10/8: loopback is refused.
    const refusing = await start(["-p", "0", "--tcp", "--allow-file", deny], deno);
    assert.equal(await served(refusing.port, 1), 0);
    assert.match((await stop(refusing)).stopped, /refused: acl 1\b/);
    // The file's rules join --allow's: 10/8 from the flag, loopback from the second file.
    const serving = await start(
      [
        "-p",
        "0",
        "--tcp",
        "--allow",
        "192.168.0.0/16",
        "--allow-file",
        deny,
        "--allow-file",
        allow,
      ],
      deno,
    );
    assert.equal(await served(serving.port, 2), 2);
    assert.doesNotMatch((await stop(serving)).stopped, /refused/);

    const bad = `${dir}/bad.txt`;
    await Deno.writeTextFile(bad, "10.0.0.0/8\n\n10.0.0.300/8\n");
    for (
      const [file, message] of [
        [bad, new RegExp(`--allow-file ${bad}:3: invalid CIDR "10\\.0\\.0\\.300/8"`)],
        [`${dir}/missing.txt`, /--allow-file .*missing\.txt: no such file/],
        [dir, /--allow-file .*: is a directory/],
      ] as const
    ) {
      const { code, stdout, stderr } = await runProgram(
        "server.ts",
        ["-p", "0", "--allow-file", file],
        deno,
      );
      assert.equal(code, 2, stderr);
      assert.equal(stdout, "");
      assertOneLine(stderr, message, file);
    }
    // Without --allow-read it is Deno's missing permission (exit 1), which names the flag.
    const denied = await runProgram("server.ts", ["-p", "0", "--allow-file", allow], [
      "--allow-net",
    ]);
    assert.equal(denied.code, 1, denied.stderr);
    assertOneLine(denied.stderr, /--allow-read/, "no --allow-read");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
