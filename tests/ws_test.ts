import assert from "node:assert/strict";
import { Buffer } from "node:buffer";
import WebSocket from "ws";
import { Random, randomSeed } from "../_random.ts";
import type { FeedMessage } from "../_event_feed.ts";
import { EventFeed, mayWatch } from "../_event_feed.ts";
import { CidrList } from "../cidr.ts";
import { echoTcp, serveTcpEcho } from "../tcp.ts";
import { echoUdp, serveUdpEcho } from "../udp.ts";
import type { WsCloseInfo, WsRejectInfo } from "../ws.ts";
import { echoWs, serveWsEcho, wsUrl } from "../ws.ts";
import { EchoConnectionError, EchoMismatchError } from "../errors.ts";
import { randomBytes, Recorder, ROOT } from "./_helpers.ts";

/** One seed per run, named in failure messages so a failing run can be replayed. */
const SEED = Number(Deno.env.get("ECHO_TEST_SEED") ?? randomSeed());
const random = new Random(SEED);
const encoder = new TextEncoder();
const decoder = new TextDecoder();

/**
 * npm:ws runs on node:net, whose timers and handles outlive a test by a tick; these tests check
 * their own cleanup (every server shut down, every client closed) instead of the sanitizers.
 */
function test(
  name: string,
  fn: () => void | Promise<void>,
  options: { ignore?: boolean } = {},
): void {
  Deno.test({ name, fn, sanitizeOps: false, sanitizeResources: false, ...options });
}

type Client = InstanceType<typeof WebSocket>;

/** Opens an npm:ws client and waits until it is open. */
async function open(url: string, options: Record<string, unknown> = {}): Promise<Client> {
  const ws = new WebSocket(url, options);
  await new Promise<void>((resolve, reject) => {
    ws.once("open", () => resolve());
    ws.once("error", reject);
  });
  return ws;
}

/** Resolves with the close code and reason a client receives. */
function closed(ws: Client): Promise<{ code: number; reason: string }> {
  return new Promise((resolve) =>
    ws.once("close", (code: number, reason: Buffer) => resolve({ code, reason: reason.toString() }))
  );
}

/** The next message a client receives, with whether it was binary. */
function nextMessage(ws: Client): Promise<{ data: Buffer; binary: boolean }> {
  return new Promise((resolve) =>
    ws.once("message", (data: Buffer, binary: boolean) => resolve({ data, binary }))
  );
}

/** The HTTP status of an upgrade the server refuses. */
function refusedStatus(url: string): Promise<number> {
  const ws = new WebSocket(url);
  ws.on("error", () => {}); // terminate() reports the aborted handshake
  return new Promise((resolve) =>
    ws.once("unexpected-response", (_req: unknown, res: { statusCode: number }) => {
      resolve(res.statusCode);
      ws.terminate();
    })
  );
}

/** Random printable ASCII text of exactly `length` bytes. */
function asciiText(length: number): string {
  const bytes = randomBytes(length, random).map((b) => 0x20 + (b % 95));
  return decoder.decode(bytes);
}

async function writeAll(conn: Deno.Conn, data: Uint8Array): Promise<void> {
  for (let off = 0; off < data.length;) off += await conn.write(data.subarray(off));
}

/** A client frame (masked with a zero key, which leaves the payload as is). */
function frame(opcode: number, payload: Uint8Array, fin = true): Uint8Array {
  const len = payload.length;
  const head = [(fin ? 0x80 : 0) | opcode];
  if (len < 126) head.push(0x80 | len);
  else if (len < 65536) head.push(0x80 | 126, len >> 8, len & 255);
  else {head.push(
      0x80 | 127,
      0,
      0,
      0,
      0,
      len >>> 24,
      (len >> 16) & 255,
      (len >> 8) & 255,
      len & 255,
    );}
  head.push(0, 0, 0, 0);
  const out = new Uint8Array(head.length + len);
  out.set(head);
  out.set(payload, head.length);
  return out;
}

/** Sends a raw HTTP request over TCP and returns the connection and the response head. */
async function rawRequest(
  port: number,
  lines: string[],
): Promise<{ conn: Deno.Conn; status: number; head: string }> {
  const conn = await Deno.connect({ hostname: "127.0.0.1", port });
  await writeAll(conn, encoder.encode(`${lines.join("\r\n")}\r\n\r\n`));
  let head = "";
  const buf = new Uint8Array(4096);
  while (!head.includes("\r\n\r\n")) {
    const n = await conn.read(buf);
    if (n === null) break;
    head += decoder.decode(buf.subarray(0, n));
  }
  return { conn, status: Number(head.split(" ")[1]), head };
}

function upgradeLines(
  path = "/",
  { version = "13", key = "dGhlIHNhbXBsZSBub25jZQ==" } = {},
): string[] {
  return [
    `GET ${path} HTTP/1.1`,
    "Host: 127.0.0.1",
    "Upgrade: websocket",
    "Connection: Upgrade",
    `Sec-WebSocket-Key: ${key}`,
    `Sec-WebSocket-Version: ${version}`,
  ];
}

/** Reads a connection to its end, returning every byte (an error after data counts as the end). */
async function readToEnd(conn: Deno.Conn): Promise<Uint8Array> {
  const chunks: number[] = [];
  const buf = new Uint8Array(65536);
  try {
    for (let n; (n = await conn.read(buf)) !== null;) chunks.push(...buf.subarray(0, n));
  } catch (error) {
    if (!(error instanceof Deno.errors.ConnectionReset)) throw error;
  }
  return new Uint8Array(chunks);
}

const SIZES = [0, 125, 126, 65_535, 65_536, 1 << 20];

test(`ws: text and binary of ${SIZES.join(", ")} bytes echo byte-exact with their type (seed ${SEED})`, async () => {
  await using server = serveWsEcho({ port: 0 });
  const ws = await open(server.url);
  let bytes = 0;
  for (const size of SIZES) {
    const text = asciiText(size);
    ws.send(text);
    const t = await nextMessage(ws);
    assert.equal(t.binary, false, `text of ${size} came back binary`);
    assert.equal(t.data.length, size);
    assert.equal(t.data.toString("utf8"), text, `text of ${size} differs`);
    const data = randomBytes(size, random);
    ws.send(data);
    const b = await nextMessage(ws);
    assert.equal(b.binary, true, `binary of ${size} came back as text`);
    assert.equal(Buffer.compare(b.data, data), 0, `binary of ${size} differs`);
    bytes += 2 * size;
  }
  // Multi-byte UTF-8 stays text and exact.
  const unicode = "héllo wörld ✓ 🦕".repeat(1000);
  ws.send(unicode);
  const u = await nextMessage(ws);
  assert.equal(u.binary, false);
  assert.equal(u.data.toString("utf8"), unicode);
  bytes += Buffer.byteLength(unicode);
  const done = closed(ws);
  ws.close(1000);
  assert.equal((await done).code, 1000);
  assert.equal(server.stats.ws!.bytesIn, bytes);
  assert.equal(server.stats.ws!.bytesOut, bytes);
  assert.equal(server.stats.ws!.messagesOut, 2 * SIZES.length + 1);
  assert.equal(server.stats.bytesIn, bytes);
});

test("ws: fragmented text and binary messages come back whole, as one message", async () => {
  await using server = serveWsEcho({ port: 0 });
  const ws = await open(server.url);
  const data = randomBytes(200_000, random);
  const parts = [data.subarray(0, 1), data.subarray(1, 70_000), data.subarray(70_000)];
  const reply = nextMessage(ws);
  parts.forEach((part, i) => ws.send(part, { binary: true, fin: i === parts.length - 1 }));
  const b = await reply;
  assert.equal(b.binary, true);
  assert.equal(Buffer.compare(b.data, data), 0);
  // A text message split inside a multi-byte character.
  const text = encoder.encode("ab🦕cd");
  const textReply = nextMessage(ws);
  ws.send(text.subarray(0, 3), { binary: false, fin: false });
  ws.send(text.subarray(3), { binary: false, fin: true });
  const t = await textReply;
  assert.equal(t.binary, false);
  assert.equal(t.data.toString("utf8"), "ab🦕cd");
  assert.equal(server.stats.ws!.messagesIn, 2);
  const done = closed(ws);
  ws.close();
  await done;
});

test("ws: ping is answered with a pong carrying the same payload", async () => {
  await using server = serveWsEcho({ port: 0 });
  const ws = await open(server.url);
  const pong = new Promise<Buffer>((resolve) => ws.once("pong", resolve));
  ws.ping(Buffer.from("are you there?"));
  assert.equal((await pong).toString(), "are you there?");
  const done = closed(ws);
  ws.close();
  await done;
});

test("ws: the client's close code and reason are echoed back and reported", async () => {
  const closes = new Recorder<WsCloseInfo>();
  await using server = serveWsEcho({ port: 0, onClose: closes.push });
  const cases: [number, string][] = [[1000, ""], [4000, "bye now"], [3001, "fin ✓"]];
  for (const [code, reason] of cases) {
    const ws = await open(server.url);
    const done = closed(ws);
    ws.close(code, reason);
    assert.deepEqual(await done, { code, reason });
  }
  await closes.until((items) => items.length === cases.length);
  assert.deepEqual(closes.items.map((c) => [c.code, c.detail, c.reason]), [
    [1000, "", "eof"],
    [4000, "bye now", "eof"],
    [3001, "fin ✓", "eof"],
  ]);
});

test("ws: invalid UTF-8 fails the connection: Deno drops it without a close frame (1006, not 1007)", async () => {
  const closes = new Recorder<WsCloseInfo>();
  await using server = serveWsEcho({ port: 0, onClose: closes.push });
  const cases = [
    [frame(1, new Uint8Array([0x41, 0xff, 0xfe]))],
    // split inside a character whose continuation byte is wrong
    [frame(1, new Uint8Array([0xce]), false), frame(0, new Uint8Array([0x41]))],
  ];
  for (const frames of cases) {
    const { conn, status } = await rawRequest(server.addr.port, upgradeLines());
    assert.equal(status, 101);
    for (const f of frames) await writeAll(conn, f);
    // What the runtime does (Deno 2.9): no close frame at all, the TCP connection just ends.
    const rest = await readToEnd(conn);
    conn.close();
    assert.equal(rest.length, 0, `expected no close frame, got ${rest.length} bytes`);
  }
  // npm:ws, told not to check its own UTF-8, sees the same: 1006.
  const ws = await open(server.url, { skipUTF8Validation: true });
  const done = closed(ws);
  ws.send(Buffer.from([0xc3, 0x28]), { binary: false });
  assert.equal((await done).code, 1006);
  await closes.until((items) => items.length === 3);
  for (const c of closes.items) {
    assert.equal(c.reason, "error");
    assert.match(c.detail, /UTF-8/);
  }
  assert.equal(server.stats.ws!.protocolErrors, 3);
  assert.equal(server.stats.ws!.messagesIn, 0);
});

test("ws: a message above maxMessage is refused with 1009; one at the cap is echoed", async () => {
  const closes = new Recorder<WsCloseInfo>();
  await using server = serveWsEcho({ port: 0, maxMessage: 1000, onClose: closes.push });
  const ws = await open(server.url);
  ws.send(new Uint8Array(1000));
  assert.equal((await nextMessage(ws)).data.length, 1000);
  const done = closed(ws);
  ws.send(asciiText(1001));
  const { code, reason } = await done;
  assert.equal(code, 1009);
  assert.match(reason, /1001 bytes > 1000/);
  await closes.until((items) => items.length === 1);
  assert.equal(closes.items[0].reason, "limit");
  assert.equal(server.stats.ws!.tooBig, 1);
  // A fragmented message is judged whole: three fragments of 600 bytes are one message of 1800.
  const ws2 = await open(server.url);
  const done2 = closed(ws2);
  for (let i = 0; i < 3; i++) ws2.send(new Uint8Array(600), { fin: i === 2 });
  assert.equal((await done2).code, 1009);
  assert.equal(server.stats.ws!.tooBig, 2);
  // The runtime's own frame cap (64 MiB) is ours too: maxMessage cannot exceed it.
  assert.throws(() => serveWsEcho({ port: 0, maxMessage: 64 << 20 }), RangeError);
});

test("ws: 200 concurrent clients x 100 messages, every echo verified", async () => {
  await using server = serveWsEcho({ port: 0 });
  const clients = 200, messages = 100;
  let verified = 0;
  const started = performance.now();
  await Promise.all(Array.from({ length: clients }, async (_, c) => {
    const ws = await open(server.url);
    const expected: (string | Uint8Array)[] = [];
    const all = new Promise<void>((resolve, reject) => {
      let i = 0;
      ws.on("message", (data: Buffer, binary: boolean) => {
        const want = expected[i++];
        const ok = typeof want === "string"
          ? !binary && data.toString("utf8") === want
          : binary && Buffer.compare(data, want) === 0;
        if (!ok) reject(new Error(`client ${c} message ${i - 1} differs`));
        verified++;
        if (i === messages) resolve();
      });
    });
    for (let m = 0; m < messages; m++) {
      const message = m % 2 ? `client ${c} message ${m}` : randomBytes(1 + (m % 200), random);
      expected.push(message);
      ws.send(message);
    }
    await all;
    const done = closed(ws);
    ws.close();
    await done;
  }));
  const ms = performance.now() - started;
  console.log(`  ${verified} echoes verified from ${clients} clients in ${ms.toFixed(0)} ms`);
  assert.equal(verified, clients * messages);
  assert.equal(server.stats.ws!.sessionsTotal, clients);
  assert.equal(server.stats.ws!.messagesOut, clients * messages);
});

test("ws: plain HTTP gets the page at / and 426 elsewhere; bad handshakes get 400", async () => {
  await using server = serveWsEcho({ port: 0 });
  const base = `http://127.0.0.1:${server.addr.port}`;
  const page = await fetch(`${base}/`);
  assert.equal(page.status, 200);
  assert.match(page.headers.get("content-type")!, /text\/html/);
  assert.match(page.headers.get("content-security-policy")!, /script-src 'sha256-/);
  assert.match(await page.text(), /<title>Echo · WebSocket console<\/title>/);
  for (const path of ["/echo", "/events", "/favicon.ico"]) {
    const response = await fetch(`${base}${path}`);
    assert.equal(response.status, 426, path);
    assert.equal(response.headers.get("upgrade"), "websocket");
    assert.match(await response.text(), /Upgrade Required/);
  }
  const post = await fetch(`${base}/`, { method: "POST", body: "x" });
  assert.equal(post.status, 426);
  await post.body?.cancel();
  const cases: [string, string[]][] = [
    ["version 12", upgradeLines("/", { version: "12" })],
    ["key too short", upgradeLines("/", { key: "c2hvcnQ=" })],
    ["no key", upgradeLines("/").filter((l) => !l.startsWith("Sec-WebSocket-Key"))],
  ];
  for (const [what, lines] of cases) {
    const { conn, status, head } = await rawRequest(server.addr.port, lines);
    conn.close();
    assert.equal(status, 400, `${what}: ${head}`);
    assert.match(head, /sec-websocket-version: 13/i, `${what}: ${head}`);
  }
  assert.equal(server.stats.ws!.badRequests, cases.length);
  // A POST that asks for an upgrade never reaches the handler: the runtime's HTTP layer answers 400.
  const post2 = ["POST / HTTP/1.1", ...upgradeLines("/").slice(1), "Content-Length: 0"];
  const { conn, status } = await rawRequest(server.addr.port, post2);
  conn.close();
  assert.equal(status, 400);
  assert.equal(server.stats.ws!.upgradeRequired, 4);
  assert.equal(server.stats.ws!.pages, 1);
  // The server still serves.
  assert.equal((await echoWs("still here", { url: server.url })).reply, "still here");
});

test("ws: 100 stalled half-sent handshakes hold up nobody; the server still echoes", async () => {
  await using server = serveWsEcho({ port: 0 });
  const stalled = await Promise.all(Array.from({ length: 100 }, async () => {
    const conn = await Deno.connect({ hostname: "127.0.0.1", port: server.addr.port });
    await writeAll(conn, encoder.encode("GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websoc"));
    return conn;
  }));
  const { reply } = await echoWs("past the stalled ones", { url: server.url, timeout: 5000 });
  assert.equal(reply, "past the stalled ones");
  const ws = await open(server.url);
  ws.send(new Uint8Array(70_000));
  assert.equal((await nextMessage(ws)).data.length, 70_000);
  const done = closed(ws);
  ws.close();
  await done;
  for (const conn of stalled) conn.close();
  assert.equal(server.stats.ws!.sessionsTotal, 2);
});

test("ws: the allow-list refuses others with 403 and counts them", async () => {
  const rejects = new Recorder<WsRejectInfo>();
  await using server = serveWsEcho({ port: 0, allow: ["10.0.0.0/8"], onReject: rejects.push });
  assert.equal(await refusedStatus(server.url), 403);
  assert.equal((await fetch(`http://127.0.0.1:${server.addr.port}/`)).status, 403);
  await rejects.until((items) => items.length === 2);
  assert.deepEqual(rejects.items.map((r) => [r.transport, r.reason]), [["ws", "acl"], [
    "ws",
    "acl",
  ]]);
  assert.equal(server.stats.dropped.acl, 2);
  assert.equal(server.stats.ws!.sessionsTotal, 0);
  await using open2 = serveWsEcho({ port: 0, allow: ["127.0.0.0/8"] });
  assert.equal((await echoWs("ok", { url: open2.url })).reply, "ok");
});

test("ws: maxConnections refuses the next upgrade with 503 until a session ends", async () => {
  await using server = serveWsEcho({ port: 0, maxConnections: 2 });
  const a = await open(server.url);
  const b = await open(server.url);
  assert.equal(await refusedStatus(server.url), 503);
  assert.equal(server.stats.dropped.limit, 1);
  const aClosed = closed(a);
  a.close();
  await aClosed;
  while (server.stats.ws!.sessionsOpen > 1) await new Promise((r) => setTimeout(r, 5));
  const d = await open(server.url);
  for (const ws of [b, d]) {
    const done = closed(ws);
    ws.close();
    await done;
  }
});

test("ws: a session silent for idleTimeout is closed with 1001 and counted", async () => {
  const closes = new Recorder<WsCloseInfo>();
  await using server = serveWsEcho({ port: 0, idleTimeout: 200, onClose: closes.push });
  const ws = await open(server.url);
  const started = performance.now();
  const { code, reason } = await closed(ws);
  assert.equal(code, 1001);
  assert.equal(reason, "idle timeout");
  assert.ok(performance.now() - started >= 190);
  await closes.until((items) => items.length === 1);
  assert.equal(closes.items[0].reason, "idle");
  assert.equal(server.stats.dropped.idle, 1);
});

test("ws: the keep-alive closes a client that never answers pings", async () => {
  const closes = new Recorder<WsCloseInfo>();
  await using server = serveWsEcho({ port: 0, keepAlive: 300, onClose: closes.push });
  const { conn, status } = await rawRequest(server.addr.port, upgradeLines());
  assert.equal(status, 101);
  // The raw client reads (the ping, then the close) but never answers.
  const got = await readToEnd(conn);
  conn.close();
  assert.equal(got[0], 0x89, "a ping first");
  assert.ok(got.includes(0x88), "then a close frame");
  await closes.until((items) => items.length === 1);
  assert.equal(closes.items[0].code, 1001);
  assert.equal(closes.items[0].reason, "reset");
  assert.match(closes.items[0].detail, /ping/);
  assert.equal(server.stats.ws!.protocolErrors, 0);
});

test("ws: a client that never reads is closed with 1008 once maxBuffered is queued", async () => {
  const closes = new Recorder<WsCloseInfo>();
  const maxBuffered = 1 << 20;
  await using server = serveWsEcho({
    port: 0,
    maxBuffered,
    gracePeriod: 300,
    onClose: closes.push,
  });
  const { conn, status } = await rawRequest(server.addr.port, upgradeLines());
  assert.equal(status, 101);
  const chunk = frame(2, new Uint8Array(65_536));
  // Send until the server gives up on us; we never read. The kernel buffers absorb a few MiB.
  let sent = 0;
  const writer = (async () => {
    try {
      while (server.stats.ws!.slow === 0 && sent < 256 << 20) {
        await writeAll(conn, chunk);
        sent += 65_536;
      }
    } catch {
      // the server may reset us once it lets go
    }
  })();
  await closes.until((items) => items.length === 1);
  await writer;
  conn.close();
  assert.equal(server.stats.ws!.slow, 1);
  assert.equal(closes.items[0].reason, "limit");
  // Bounded: the server queued at most the cap plus one message before closing.
  assert.ok(server.stats.ws!.bytesOut <= sent);
  assert.ok(server.stats.ws!.bytesOut >= maxBuffered, `echoed ${server.stats.ws!.bytesOut}`);
});

test("ws: a reading client may pipeline up to maxBuffered bytes of messages (the window)", async () => {
  // The runtime reads WebSocket messages as fast as they come (it cannot pause a socket), so the
  // cap is the window a client may have in flight; below it, nothing is cut.
  await using server = serveWsEcho({ port: 0, maxBuffered: 32 << 20 });
  const ws = await open(server.url);
  let got = 0;
  const all = new Promise<string>((resolve) => {
    ws.on("message", () => ++got === 24 && resolve("all"));
    ws.once("close", (code: number) => resolve(`closed ${code} after ${got}`));
  });
  const message = randomBytes(1 << 20, random);
  for (let i = 0; i < 24; i++) ws.send(message);
  assert.equal(await all, "all");
  assert.equal(server.stats.ws!.slow, 0);
  const done = closed(ws);
  ws.close();
  await done;
});

test("ws: shutdown closes every open session with 1001 and finishes", async () => {
  const server = serveWsEcho({ port: 0 });
  const clients = await Promise.all(Array.from({ length: 5 }, () => open(server.url)));
  const codes = Promise.all(clients.map(closed));
  await server.shutdown();
  for (const { code, reason } of await codes) {
    assert.equal(code, 1001);
    assert.equal(reason, "server shutting down");
  }
  await server.finished;
  assert.equal(server.stats.ws!.sessionsOpen, 0);
  await assert.rejects(fetch(`http://127.0.0.1:${server.addr.port}/`));
});

test("ws: /events streams ws events and TCP/UDP servers' events pushed through feed.hooks()", async () => {
  await using server = serveWsEcho({ port: 0 });
  await using tcp = serveTcpEcho({ port: 0, ...server.feed!.hooks("tcp") });
  const viewer = await open(`${server.url}events`);
  const messages: FeedMessage[] = [];
  const seen = new Recorder<FeedMessage>();
  viewer.on("message", (data: Buffer) => {
    const m = JSON.parse(data.toString()) as FeedMessage;
    messages.push(m);
    seen.push(m);
  });
  await seen.until((items) => items.some((m) => m.type === "stats"));
  await using udp = await serveUdpEcho({ port: 0, ...server.feed!.hooks("udp") });
  await echoTcp("from tcp", { port: tcp.addr.port });
  await echoUdp("a datagram\n", { port: udp.addr.port });
  await echoWs("from ws", { url: server.url });
  const events = () => seen.items.flatMap((m) => m.type === "events" ? m.events : []);
  await seen.until(() =>
    events().some((e) => e.transport === "tcp" && e.kind === "close") &&
    events().some((e) => e.transport === "ws" && e.kind === "close")
  );
  const tcpClose = events().find((e) => e.transport === "tcp" && e.kind === "close")!;
  assert.equal(tcpClose.bytes, "from tcp".length);
  assert.match(tcpClose.remote!, /^127\.0\.0\.1:\d+$/);
  assert.ok(events().some((e) => e.transport === "tcp" && e.kind === "connection"));
  const datagram = events().find((e) => e.kind === "datagram")!;
  assert.deepEqual([datagram.transport, datagram.bytes, datagram.preview], [
    "udp",
    11,
    "a datagram.",
  ]);
  // counters come too
  await seen.until(() =>
    seen.items.some((m) => m.type === "stats" && (m.stats?.ws?.messagesIn ?? 0) >= 1)
  );
  const done = closed(viewer);
  viewer.close();
  await done;
});

test("ws: /events beyond maxViewers is closed with 1013 and counted; the echo is unaffected", async () => {
  await using server = serveWsEcho({ port: 0, feed: new EventFeed({ maxViewers: 1 }) });
  const first = await open(`${server.url}events`);
  const hello = nextMessage(first);
  assert.match((await hello).data.toString(), /"type":"hello"/);
  const second = await open(`${server.url}events`);
  assert.deepEqual(await closed(second), {
    code: 1013,
    reason: "too many live viewers; try again later",
  });
  assert.equal(server.stats.ws!.viewersRefused, 1);
  assert.equal(server.feed!.viewers, 1);
  assert.equal(server.stats.ws!.sessionsTotal, 0, "viewers are not echo sessions");
  assert.equal((await echoWs("echo", { url: server.url })).reply, "echo");
  const done = closed(first);
  first.close();
  await done;
});

test("EventFeed: a viewer that cannot keep up loses the oldest events, counted; pushes stay O(1)", async () => {
  const sent: string[] = [];
  let buffered = 10 << 20; // "busy" socket
  const listeners = new Map<string, () => void>();
  const fake = {
    readyState: 1,
    get bufferedAmount() {
      return buffered;
    },
    send: (text: string) => sent.push(text),
    close: () => listeners.get("close")?.(),
    addEventListener: (type: string, fn: () => void) => listeners.set(type, fn),
  } as unknown as globalThis.WebSocket;
  const feed = new EventFeed({ capacity: 100, history: 0, batchInterval: 10 });
  assert.equal(feed.addViewer(fake), true);
  assert.equal(sent.length, 1); // hello; stats skipped (busy)
  const started = performance.now();
  for (let i = 0; i < 100_000; i++) feed.push({ kind: "datagram", transport: "udp", bytes: i });
  const pushMs = performance.now() - started;
  buffered = 0; // the viewer drains
  await new Promise((r) => setTimeout(r, 50));
  const batch = sent.map((t) => JSON.parse(t) as FeedMessage).find((m) => m.type === "events");
  assert.ok(batch && batch.type === "events");
  assert.equal(batch.events.length, 100);
  assert.equal(batch.dropped, 100_000 - 100);
  assert.equal(batch.events.at(-1)!.bytes, 99_999);
  assert.equal(feed.dropped, 100_000 - 100);
  console.log(`  100,000 pushes took ${pushMs.toFixed(1)} ms with one stalled viewer`);
  feed.close();
});

test("EventFeed: only loopback viewers may watch, unless eventsFrom admits others", () => {
  assert.equal(mayWatch("127.0.0.1"), true);
  assert.equal(mayWatch("::1"), true);
  assert.equal(mayWatch("::ffff:127.0.0.1"), true);
  assert.equal(mayWatch("192.168.1.20"), false);
  assert.equal(mayWatch("192.168.1.20", new CidrList(["192.168.1.0/24"])), true);
  assert.equal(mayWatch("192.168.2.20", new CidrList(["192.168.1.0/24"])), false);
});

test("ws: wss:// with a certificate echoes to npm:ws and to echoWs", async () => {
  const cert = await Deno.readTextFile(`${ROOT}tests/fixtures/tls_cert.pem`);
  const key = await Deno.readTextFile(`${ROOT}tests/fixtures/tls_key.pem`);
  await using server = serveWsEcho({ port: 0, tls: { cert, key } });
  assert.match(server.url, /^wss:\/\/127\.0\.0\.1:\d+\/$/);
  assert.equal(server.listeners[0].secure, true);
  const ws = await open(server.url, { ca: cert });
  const data = randomBytes(100_000, random);
  ws.send(data);
  assert.equal(Buffer.compare((await nextMessage(ws)).data, data), 0);
  const done = closed(ws);
  ws.close(1000, "tls done");
  assert.deepEqual(await done, { code: 1000, reason: "tls done" });
  const { reply } = await echoWs("over wss", { url: server.url, tls: { caCerts: [cert] } });
  assert.equal(reply, "over wss");
  // untrusted: a one-line connection error
  await assert.rejects(echoWs("x", { url: server.url, timeout: 3000 }), /cannot reach wss:/);
  assert.throws(() => serveWsEcho({ port: 0, tls: { cert: "nope", key } }), TypeError);
});

test("ws: a port in use, bad limits and bad rules are one-line typed errors", async () => {
  await using server = serveWsEcho({ port: 0 });
  assert.throws(
    () => serveWsEcho({ port: server.addr.port }),
    (e: unknown) =>
      e instanceof EchoConnectionError &&
      /^cannot listen on tcp 127\.0\.0\.1:\d+: address already in use$/.test(e.message),
  );
  assert.throws(() => serveWsEcho({ port: 0, maxBuffered: 0 }), /maxBuffered must be/);
  assert.throws(() => serveWsEcho({ port: 0, keepAlive: -1 }), /keepAlive must be/);
  // The same validators as every other option (_validate.ts): sizes and ports are whole numbers,
  // and the error names its option.
  assert.throws(
    () => serveWsEcho({ port: 0, maxMessage: 1024.5 }),
    (e: unknown) =>
      e instanceof RangeError && (e as RangeError & { option?: string }).option === "maxMessage" &&
      /^maxMessage must be a whole number from 0 to \d+, got 1024\.5$/.test(e.message),
  );
  assert.throws(() => serveWsEcho({ port: 0.5 }), /port must be a whole number from 0 to 65535/);
  assert.throws(() => serveWsEcho({ port: 0, gracePeriod: -1 }), /gracePeriod must be a duration/);
  assert.throws(() => serveWsEcho({ port: 0, idleTimeout: -1 }), RangeError);
  assert.throws(() => serveWsEcho({ port: 0, allow: ["10.0.0.0/33"] }), TypeError);
  assert.throws(() => serveWsEcho({ port: 0, eventsFrom: ["nope"] }), TypeError);
  assert.throws(() => wsUrl({ url: "http://x/" }), /not a WebSocket URL/);
  assert.throws(() => wsUrl({ url: "ws://x/", port: 1 }), /either url or hostname/);
  assert.equal(wsUrl({ hostname: "::1", port: 9, path: "/p" }), "ws://[::1]:9/p");
});

test("echoWs: a server that answers with another type or other bytes is a mismatch", async () => {
  // A deliberately wrong echo server: text comes back as binary, binary comes back changed.
  const wrong = Deno.serve({ port: 0, hostname: "127.0.0.1", onListen() {} }, (request) => {
    const { socket, response } = Deno.upgradeWebSocket(request);
    socket.binaryType = "arraybuffer";
    socket.onmessage = (e) =>
      socket.send(typeof e.data === "string" ? encoder.encode(e.data) : new Uint8Array([9]));
    return response;
  });
  try {
    const url = `ws://127.0.0.1:${wrong.addr.port}/`;
    await assert.rejects(
      echoWs("text", { url }),
      (e: unknown) =>
        e instanceof EchoMismatchError && /binary message came back for a text one/.test(e.message),
    );
    await assert.rejects(
      echoWs(new Uint8Array([1, 2]), { url }),
      (e: unknown) => e instanceof EchoMismatchError && e.offset === 0,
    );
  } finally {
    await wrong.shutdown();
  }
  await assert.rejects(echoWs("x", { port: wrong.addr.port, timeout: 2000 }), EchoConnectionError);
});
