/**
 * `server.ts --ws` and `client.ts --ws` as processes: the npm `ws` package as an independent
 * client, `--json` lines that say `"transport":"ws"`, a tutorial-style TCP client's session seen by
 * a viewer of `/events`, the one handle's shutdown (1001), the policy flags, wss with the TLS
 * flags, `client.ts --ws` ping and bench (text and `--json`, intervals adding up; over wss too), and
 * bad flags (exit 2, one line).
 *
 * @module
 */
import assert from "node:assert/strict";
import type { Buffer } from "node:buffer";
import WebSocket from "ws";
import type { FeedMessage } from "../_event_feed.ts";
import { assertOneLine, runProgram } from "./_cli_child.ts";
import {
  childEnded,
  type ReadChild,
  readyOrKill,
  Recorder,
  ROOT,
  spawnServer,
  tutorialTcpClient,
} from "./_helpers.ts";

/** npm:ws runs on node:net, whose handles outlive a test by a tick; each test closes its own. */
function test(name: string, fn: () => Promise<void>): void {
  Deno.test({ name, fn, sanitizeOps: false, sanitizeResources: false });
}

type Client = InstanceType<typeof WebSocket>;

/** A server.ts child with its listeners' ports read from its ready lines. */
interface WsServer extends ReadChild {
  tcp: number;
  ws: number;
}

/** Starts server.ts with `--port 0 --ws 0` and waits for every ready line. */
async function start(args: string[], deno = ["--allow-net"]): Promise<WsServer> {
  const server = spawnServer(["--port", "0", "--ws", "0", ...args], deno);
  const json = args.includes("--json");
  const ports = await readyOrKill(
    server,
    (async () => {
      const ports: Record<string, number> = {};
      const want = args.includes("--tcp") || args.includes("--tls-cert") ? 2 : 3;
      while (Object.keys(ports).length < want) {
        if (json) {
          const info = JSON.parse((await server.stdout.waitFor(/"event":"listening"/)).input);
          ports[info.transport] = info.port;
        } else {
          const [, transport, port] = await server.stdout.waitFor(
            /^listening (tcp|tls|udp|ws|wss) 127\.0\.0\.1:(\d+)/,
          );
          ports[transport.replace(/^tls$/, "tcp").replace(/^wss$/, "ws")] = Number(port);
        }
      }
      return ports;
    })(),
  );
  return { ...server, tcp: ports.tcp, ws: ports.ws };
}

const CERT_FILE = `${ROOT}tests/fixtures/tls_cert.pem`;
const KEY_FILE = `${ROOT}tests/fixtures/tls_key.pem`;

/** Starts server.ts serving wss: (and TLS) with the test certificate. */
function startWss(): Promise<WsServer> {
  return start(["--tls-cert", CERT_FILE, "--tls-key", KEY_FILE], ["--allow-net", "--allow-read"]);
}

/** Kills a server still running (a failed assertion's clean-up) and waits for it. */
async function ended(server: ReadChild): Promise<void> {
  try {
    server.child.kill();
  } catch {
    // it has exited already
  }
  await server.child.status;
}

async function open(url: string, options: Record<string, unknown> = {}): Promise<Client> {
  const ws = new WebSocket(url, options);
  await new Promise<void>((resolve, reject) => {
    ws.once("open", () => resolve());
    ws.once("error", reject);
  });
  return ws;
}

function closed(ws: Client): Promise<number> {
  return new Promise((resolve) => ws.once("close", (code: number) => resolve(code)));
}

function nextMessage(ws: Client): Promise<{ data: Buffer; binary: boolean }> {
  return new Promise((resolve) =>
    ws.once("message", (data: Buffer, binary: boolean) => resolve({ data, binary }))
  );
}

test("server.ts --ws --json: npm:ws echoes text and binary, a TCP session reaches an /events viewer, client.ts --ws, SIGUSR2 and shutdown 1001", async () => {
  const server = await start(["--json", "-v"]);
  const viewer = await open(`ws://127.0.0.1:${server.ws}/events`);
  const feed = new Recorder<FeedMessage>();
  viewer.on("message", (data: Buffer) => feed.push(JSON.parse(data.toString())));
  const echo = await open(`ws://127.0.0.1:${server.ws}/chat`);
  try {
    // The viewer is registered once its first counters came.
    await feed.until((items) => items.some((m) => m.type === "stats"));
    assert.equal(await tutorialTcpClient(server.tcp, "from the tutorial"), "from the tutorial");
    const events = () => feed.items.flatMap((m) => m.type === "events" ? m.events : []);
    await feed.until(() => events().some((e) => e.transport === "tcp" && e.kind === "close"));
    const tcpClose = events().find((e) => e.transport === "tcp" && e.kind === "close")!;
    assert.equal(tcpClose.bytes, "from the tutorial".length);
    assert.match(tcpClose.remote!, /^127\.0\.0\.1:\d+$/);

    // Text stays text, binary stays binary, byte-exact.
    let reply = nextMessage(echo);
    echo.send("héllo");
    assert.deepEqual(await reply.then((r) => [r.binary, r.data.toString()]), [false, "héllo"]);
    // -v prints each message in hex, and this test reads stdout only at the end: keep it small.
    const bytes = new Uint8Array(1000).map((_, i) => (i * 7) & 0xff);
    reply = nextMessage(echo);
    echo.send(bytes);
    const got = await reply;
    assert.equal(got.binary, true);
    assert.deepEqual(new Uint8Array(got.data), bytes);

    const one = await runProgram("client.ts", ["--ws", "--port", String(server.ws), "--json"], [
      "--allow-net",
    ]);
    assert.equal(one.code, 0, one.stderr);
    const result = JSON.parse(one.stdout);
    assert.deepEqual([result.ok, result.transport, result.reply, result.bytes], [
      true,
      "ws",
      "Hello World",
      11,
    ]);
    assert.equal(result.address, `127.0.0.1:${server.ws}`);

    server.child.kill("SIGUSR2");
    const stats = JSON.parse((await server.stdout.waitFor(/"event":"stats"/)).input).stats;
    assert.ok(stats.ws.sessionsTotal >= 2, JSON.stringify(stats.ws));
    assert.ok(stats.ws.messagesIn >= 3);

    // Shutdown: the open echo session and the viewer are closed with 1001.
    const echoClosed = closed(echo);
    const viewerClosed = closed(viewer);
    server.child.kill("SIGINT");
    assert.equal(await echoClosed, 1001);
    assert.equal(await viewerClosed, 1001);
    const { code, lines } = await childEnded(server);
    assert.equal(code, 0);
    const json = lines.map((line) => JSON.parse(line));
    const ws = json.filter((e) => e.transport === "ws");
    const chat = ws.find((e) => e.event === "connection" && e.path === "/chat");
    assert.ok(chat, lines.join("\n"));
    const data = ws.filter((e) => e.event === "data" && e.id === chat.id);
    assert.deepEqual(data.map((e) => [e.type, e.size]), [["text", 6], ["binary", 1000]]);
    assert.equal(data[0].text, "héllo");
    const chatClose = ws.find((e) => e.event === "close" && e.id === chat.id);
    assert.deepEqual([chatClose.reason, chatClose.code, chatClose.messages], ["shutdown", 1001, 2]);
    assert.ok(ws.some((e) => e.event === "close" && e.reason === "eof" && e.code === 1000));
    const tcp = json.filter((e) => e.event === "close" && e.transport === undefined);
    assert.equal(tcp.length, 1, "the TCP session's close line");
    const stopped = json.at(-1);
    assert.equal(stopped.event, "stopped");
    assert.equal(stopped.stats.ws.sessionsOpen, 0);
  } finally {
    echo.terminate();
    viewer.terminate();
    await ended(server);
  }
});

test("server.ts --ws: the ready line names the page, the page is served, --max-connections refuses with 503 and a refusal line", async () => {
  const server = await start(["--max-connections", "1"]);
  let first: Client | undefined;
  try {
    const ready = server.stdout.seen.find((line) => line.startsWith("listening ws"));
    assert.equal(
      ready,
      `listening ws 127.0.0.1:${server.ws} (page: http://127.0.0.1:${server.ws}/)`,
    );
    const page = await fetch(`http://127.0.0.1:${server.ws}/`);
    assert.equal(page.status, 200);
    assert.match(await page.text(), /<html/i);
    first = await open(`ws://127.0.0.1:${server.ws}/`);
    const refused = new WebSocket(`ws://127.0.0.1:${server.ws}/`);
    refused.on("error", () => {});
    const status = await new Promise<number>((resolve) =>
      refused.once("unexpected-response", (_req: unknown, res: { statusCode: number }) => {
        resolve(res.statusCode);
        refused.terminate();
      })
    );
    assert.equal(status, 503);
    await server.stdout.waitFor(/^refused ws 127\.0\.0\.1:\d+: limit$/);
    const done = closed(first);
    first.close(1000, "bye");
    assert.equal(await done, 1000);
    await server.stdout.waitFor(
      /^ws closed #1 127\.0\.0\.1:\d+: 0 bytes in 0 messages echoed in [\d.]+ms \(eof, 1000 bye\)$/,
    );
    server.child.kill("SIGINT");
    const { code, lines } = await childEnded(server);
    assert.equal(code, 0);
    assert.match(lines.at(-1)!, /^stopped: 0 TCP sessions, .*; refused: limit 1; ws: 1 session, /);
  } finally {
    first?.terminate();
    await ended(server);
  }
});

test("server.ts --ws with --tls-cert/--tls-key serves wss:, and client.ts --ws --tls --ca echoes over it", async () => {
  const server = await startWss();
  try {
    assert.ok(
      server.stdout.seen.includes(
        `listening wss 127.0.0.1:${server.ws} (page: https://127.0.0.1:${server.ws}/)`,
      ),
      server.stdout.seen.join("\n"),
    );
    const url = `wss://127.0.0.1:${server.ws}/`;
    const one = await runProgram(
      "client.ts",
      ["--url", url, "--tls", "--ca", CERT_FILE, "secret"],
      [
        "--allow-net",
        "--allow-read",
      ],
    );
    assert.equal(one.code, 0, one.stderr);
    assert.match(one.stdout, new RegExp(`^reply from wss 127\\.0\\.0\\.1:${server.ws}: "secret"`));
    await server.stdout.waitFor(/^ws closed #1 .*\(eof, 1000\)$/);
  } finally {
    server.child.kill("SIGINT");
    assert.equal((await childEnded(server)).code, 0);
  }
});

test("client.ts --ws --bench --json against server.ts --ws: intervals then the result, verified, adding up", async () => {
  const server = await start([]);
  try {
    const port = String(server.ws);
    const bench = await runProgram("client.ts", [
      "--ws",
      "--port",
      port,
      "--bench",
      "-c",
      "4",
      "--pipeline",
      "2",
      "-d",
      "1s",
      "--report-interval",
      "250ms",
      "--json",
    ], ["--allow-net"]);
    assert.equal(bench.code, 0, bench.stderr);
    const lines = bench.stdout.trim().split("\n").map((line) => JSON.parse(line));
    const final = lines.at(-1);
    const intervals = lines.slice(0, -1);
    assert.deepEqual(
      [final.event, final.mode, final.transport, final.address, final.connections, final.pipeline],
      ["result", "bench", "ws", `127.0.0.1:${server.ws}`, 4, 2],
    );
    assert.ok(final.requests > 100, `${final.requests} requests`);
    assert.deepEqual([final.mismatches, final.errors, final.failed], [0, 0, 0]);
    assert.equal(final.connections_served, 4);
    assert.equal(final.result.transport, "ws");
    assert.equal(final.result.url, `ws://127.0.0.1:${server.ws}/`);
    assert.equal(final.result.histogram.count, final.requests);
    assert.ok(intervals.length >= 4);
    assert.equal(intervals.reduce((n, i) => n + i.requests, 0), final.requests);
    assert.equal(intervals.reduce((n, i) => n + i.sent, 0), final.sent);

    const ping = await runProgram(
      "client.ts",
      ["--url", `ws://127.0.0.1:${server.ws}/x`, "--ping", "--count", "3", "--interval", "20ms"],
      ["--allow-net"],
    );
    assert.equal(ping.code, 0, ping.stderr);
    assert.match(
      ping.stdout,
      new RegExp(`^PING ws 127\\.0\\.0\\.1:${port}: 64 bytes every 20\\.0ms`),
    );
    assert.equal(ping.stdout.match(/^64 bytes from .*seq=\d time=/gm)?.length, 3, ping.stdout);
    assert.match(
      ping.stdout,
      /--- ws 127\.0\.0\.1:\d+ ping statistics ---\n3 sent, 3 received, 0% loss/,
    );
  } finally {
    server.child.kill("SIGINT");
    assert.equal((await childEnded(server)).code, 0);
  }
});

test("client.ts --ws --tls --ca --ping and --bench over wss: named wss, verified", async () => {
  const server = await startWss();
  try {
    const tls = ["--ws", "--port", String(server.ws), "--tls", "--ca", CERT_FILE];
    const perms = ["--allow-net", "--allow-read"];
    const ping = await runProgram(
      "client.ts",
      [...tls, "--ping", "--count", "3", "--interval", "10ms"],
      perms,
    );
    assert.equal(ping.code, 0, ping.stderr);
    assert.match(ping.stdout, /^PING wss 127\.0\.0\.1:\d+: 64 bytes/);
    assert.match(ping.stdout, /3 sent, 3 received, 0% loss/);
    const bench = await runProgram(
      "client.ts",
      [...tls, "--bench", "-c", "2", "--count", "200", "--json"],
      perms,
    );
    assert.equal(bench.code, 0, bench.stderr);
    const final = JSON.parse(bench.stdout);
    assert.deepEqual([final.transport, final.requests, final.mismatches], ["wss", 200, 0]);
    assert.equal(final.result.tls, true);
  } finally {
    server.child.kill("SIGINT");
    assert.equal((await childEnded(server)).code, 0);
  }
});

test("server.ts and client.ts: bad --ws flags are one-line usage errors (exit 2)", async () => {
  const cases: ["server.ts" | "client.ts", string[], RegExp][] = [
    ["server.ts", ["--ws-max-message", "10"], /--ws-max-message applies to --ws only/],
    ["server.ts", ["--ws-events-from", "::1/128"], /--ws-events-from applies to --ws only/],
    ["server.ts", ["--ws", "70000"], /--ws must be a number from 0 to 65535/],
    ["server.ts", ["--ws", "0", "--once"], /--ws and --once conflict/],
    ["server.ts", ["--ws", "0", "--unix", "/tmp/x.sock"], /--ws and --unix conflict/],
    ["server.ts", ["--ws", "5006"], /--ws and --port must differ/],
    ["server.ts", ["--ws", "0", "--ws-max-message", "67108864"], /--ws-max-message must be/],
    ["server.ts", ["--ws", "0", "--ws-events-from", "nope"], /--ws-events-from: invalid CIDR/],
    ["client.ts", ["--ws", "--bench", "--stream"], /--stream is TCP only, not --ws/],
    ["client.ts", ["--ws", "--ping", "--proxy-header", "v1"], /--ws and --proxy-header conflict/],
    ["client.ts", ["--ws", "--ping", "--udp"], /--ws and --udp conflict/],
    ["client.ts", ["--ws", "--ping", "hello"], /ping mode sends its own probes/],
    ["client.ts", ["--url", "ws://127.0.0.1:1/", "--tls", "--ping"], /give a wss: URL/],
    ["client.ts", ["--ws", "--bench", "--size", "0"], /--size must be/],
    ["client.ts", ["--ws", "--ping", "--servername", "x"], /--ws and --servername conflict/],
    ["client.ts", ["--ws", "--udp"], /--ws and --udp conflict/],
    ["client.ts", ["--url", "http://127.0.0.1/"], /--url must be a ws:\/\/ or wss:\/\/ URL/],
    ["client.ts", ["--url", "ws://127.0.0.1:1/", "--port", "2"], /--url and --host\/--port/],
  ];
  for (const [program, args, pattern] of cases) {
    const { code, stderr } = await runProgram(program, args, ["--allow-net"]);
    const context = `${program} ${args.join(" ")}`;
    assert.equal(code, 2, `${context}: exit ${code}, ${stderr}`);
    assertOneLine(stderr, pattern, context);
  }
});
