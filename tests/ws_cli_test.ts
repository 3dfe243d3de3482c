/**
 * `server.ts --ws` and `client.ts --ws` as processes: the npm `ws` package as an independent
 * client, `--json` lines that say `"transport":"ws"`, a tutorial-style TCP client's session seen by
 * a viewer of `/events`, the one handle's shutdown (1001), the policy flags, wss with the TLS
 * flags, and bad flags (exit 2, one line).
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
  const cert = `${ROOT}tests/fixtures/tls_cert.pem`;
  const key = `${ROOT}tests/fixtures/tls_key.pem`;
  const server = await start(["--tls-cert", cert, "--tls-key", key], [
    "--allow-net",
    "--allow-read",
  ]);
  try {
    assert.ok(
      server.stdout.seen.includes(
        `listening wss 127.0.0.1:${server.ws} (page: https://127.0.0.1:${server.ws}/)`,
      ),
      server.stdout.seen.join("\n"),
    );
    const url = `wss://127.0.0.1:${server.ws}/`;
    const one = await runProgram("client.ts", ["--url", url, "--tls", "--ca", cert, "secret"], [
      "--allow-net",
      "--allow-read",
    ]);
    assert.equal(one.code, 0, one.stderr);
    assert.match(one.stdout, new RegExp(`^reply from wss 127\\.0\\.0\\.1:${server.ws}: "secret"`));
    await server.stdout.waitFor(/^ws closed #1 .*\(eof, 1000\)$/);
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
    ["client.ts", ["--ws", "--ping"], /--ws and ping mode: not supported yet/],
    ["client.ts", ["--ws", "--bench"], /--ws and bench mode: not supported yet/],
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
