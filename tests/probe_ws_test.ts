/**
 * The probe's WebSocket lane (`runProbe({ transport: "ws" })`) against real servers: the project's
 * WebSocket echo (ws: and wss:), a server that flips a byte, one that closes on the first message;
 * its option checks; its results as records and merges; and client.ts --ws ping against the
 * byte-flipping server (exit 1).
 *
 * @module
 */
import assert from "node:assert/strict";
import {
  type ProbeIntervalReport,
  type ProbeReply,
  runProbe,
  validateProbeOptions,
} from "../probe.ts";
import { mergeProbeResults, ProbeMergeError, probeResultToRecord } from "../probe_result.ts";
import { serveWsEcho } from "../ws.ts";
import { transportName } from "../_client_report.ts";
import { runProgram } from "./_cli_child.ts";
import { ROOT } from "./_helpers.ts";
import { assertTcpCounts } from "./_probe_fixtures.ts";

const CERT = await Deno.readTextFile(`${ROOT}tests/fixtures/tls_cert.pem`);
const KEY = await Deno.readTextFile(`${ROOT}tests/fixtures/tls_key.pem`);

/**
 * A WebSocket server (Deno.serve + upgradeWebSocket) whose sessions run `onMessage`, for servers
 * that misbehave; closed with `await using`.
 */
function rawWsServer(
  onMessage: (socket: WebSocket, data: Uint8Array) => void,
): { url: string } & AsyncDisposable {
  const sockets = new Set<WebSocket>();
  const server = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen: () => {} }, (request) => {
    const { socket, response } = Deno.upgradeWebSocket(request);
    socket.binaryType = "arraybuffer";
    sockets.add(socket);
    socket.onclose = () => sockets.delete(socket);
    socket.onmessage = (event) => onMessage(socket, new Uint8Array(event.data as ArrayBuffer));
    return response;
  });
  return {
    url: `ws://127.0.0.1:${server.addr.port}/`,
    async [Symbol.asyncDispose]() {
      for (const socket of sockets) socket.close(1001);
      await server.shutdown();
    },
  };
}

Deno.test("ws ping: 20 probes, each received, verified and numbered in order", async () => {
  await using server = serveWsEcho({ port: 0, feed: false });
  const replies: ProbeReply[] = [];
  const result = await runProbe({
    transport: "ws",
    url: server.url,
    count: 20,
    interval: 10,
    onReply: (reply) => replies.push(reply),
  });
  assertTcpCounts(result);
  assert.deepEqual(
    [result.transport, result.url, result.tls, result.sent, result.received, result.mismatches],
    ["ws", server.url, undefined, 20, 20, 0],
  );
  assert.equal(result.errors, 0);
  assert.equal(result.address.port, server.addr.port);
  assert.deepEqual(replies.map((r) => r.seq), [...Array(20).keys()]);
  assert.ok(replies.every((r) => r.kind === "reply" && r.bytes === 64 && r.rtt >= 0));
  assert.equal(transportName(result), "ws");
});

Deno.test("ws bench 1 s, 4 connections × pipeline 2: counts and intervals add up, nothing altered", async () => {
  await using server = serveWsEcho({ port: 0, feed: false });
  const intervals: { received: number; sent: number; bytes: number; count: number }[] = [];
  const result = await runProbe({
    transport: "ws",
    port: server.addr.port,
    connections: 4,
    pipeline: 2,
    size: 300, // above the native-compare threshold: both compare paths are used over a run
    duration: 1000,
    reportInterval: 250,
    onInterval: (r: ProbeIntervalReport) =>
      intervals.push({
        received: r.received,
        sent: r.sent,
        bytes: r.bytes,
        count: r.latency.count,
      }),
  });
  assertTcpCounts(result);
  assert.ok(result.received > 100, `only ${result.received} requests in 1 s`);
  assert.deepEqual([result.mismatches, result.errors, result.failed], [0, 0, 0]);
  assert.equal(result.connectionsServed, 4);
  assert.equal(result.pipeline, 2);
  assert.ok(intervals.length >= 4, `${intervals.length} intervals`);
  const sum = (key: "received" | "sent" | "bytes" | "count") =>
    intervals.reduce((n, i) => n + i[key], 0);
  assert.equal(sum("received"), result.received);
  assert.equal(sum("sent"), result.sent);
  assert.equal(sum("bytes"), result.bytes);
  assert.equal(sum("count"), result.latency.count);
});

Deno.test("ws size 1 and open-model --rate with warm-up: every message verified, on schedule", async () => {
  await using server = serveWsEcho({ port: 0, feed: false });
  const result = await runProbe({
    transport: "ws",
    url: server.url,
    connections: 2,
    size: 1,
    rate: 200,
    pipeline: 4,
    warmup: 200,
    duration: 500,
  });
  assertTcpCounts(result);
  assert.equal(result.mismatches, 0);
  // 200/s for 0.5 s: about 100 measured requests (the warm-up's are not counted).
  assert.ok(result.sent >= 80 && result.sent <= 101, `sent ${result.sent}`);
  assert.ok(result.received >= 80, `received ${result.received}`);
});

Deno.test("ws: a server that flips a byte gives a mismatch for every probe", async () => {
  await using server = rawWsServer((socket, data) => {
    data[Math.min(3, data.length - 1)] ^= 0x20;
    socket.send(data);
  });
  const kinds: string[] = [];
  const result = await runProbe({
    transport: "ws",
    url: server.url,
    count: 10,
    interval: 5,
    onReply: (r) => kinds.push(r.kind),
  });
  assertTcpCounts(result);
  assert.deepEqual([result.received, result.mismatches, result.errors], [0, 10, 0]);
  assert.deepEqual(kinds, Array(10).fill("mismatch"));
});

Deno.test("ws: a reply of another length, or sent as text, is a mismatch too", async () => {
  let n = 0;
  await using server = rawWsServer((socket, data) => {
    if (n++ % 2 === 0) socket.send(data.subarray(0, data.length - 1));
    else socket.send(new TextDecoder().decode(data));
  });
  const result = await runProbe({ transport: "ws", url: server.url, count: 6, interval: 5 });
  assert.deepEqual([result.received, result.mismatches], [0, 6]);
});

Deno.test("ws: a server that closes on the first message: errors counted, requests failed, the run ends", async () => {
  await using server = rawWsServer((socket) => socket.close(1011, "no"));
  const errors: string[] = [];
  const result = await runProbe({
    transport: "ws",
    url: server.url,
    count: 3,
    interval: 10,
    timeout: 2000,
    onError: (e) => errors.push(e.message),
  });
  assertTcpCounts(result);
  assert.equal(result.received, 0);
  assert.ok(result.failed >= 1, `failed ${result.failed}`);
  assert.ok(result.errors >= 1);
  assert.match(errors[0], /closed the connection \(1011 no\)/);
});

Deno.test("ws: no server is a connection error naming the URL", async () => {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = listener.addr.port;
  listener.close();
  await assert.rejects(
    runProbe({ transport: "ws", port, count: 1 }),
    (error: Error) =>
      error.name === "EchoConnectionError" &&
      error.message.includes(`ws://127.0.0.1:${port}/`),
  );
});

Deno.test("wss: custom CA through the client option; the result is ws with tls, named wss", async () => {
  await using server = serveWsEcho({ port: 0, feed: false, tls: { cert: CERT, key: KEY } });
  assert.ok(server.url.startsWith("wss://"));
  const result = await runProbe({
    transport: "ws",
    url: server.url,
    tls: { caCerts: [CERT] },
    connections: 2,
    pipeline: 2,
    count: 100,
  });
  assertTcpCounts(result);
  assert.deepEqual([result.received, result.mismatches, result.tls], [100, 0, true]);
  assert.equal(transportName(result), "wss");
  // Without the CA the certificate is not trusted: the connection fails.
  await assert.rejects(
    runProbe({ transport: "ws", url: server.url, count: 1 }),
    /certificate|cert/i,
  );
});

Deno.test("ws records: lossless, merged with ws runs, refused beside tcp or wss runs", async () => {
  await using server = serveWsEcho({ port: 0, feed: false });
  const runs = await Promise.all(
    [1, 2].map(() => runProbe({ transport: "ws", url: server.url, count: 30, pipeline: 3 })),
  );
  const records = runs.map((r) => JSON.parse(JSON.stringify(probeResultToRecord(r))));
  assert.equal(records[0].transport, "ws");
  assert.equal(records[0].url, server.url);
  const merged = mergeProbeResults(records);
  assert.deepEqual([merged.transport, merged.url, merged.received], ["ws", server.url, 60]);
  assert.throws(
    () => mergeProbeResults([records[0], { ...records[1], transport: "tcp" }]),
    ProbeMergeError,
  );
  assert.throws(() => mergeProbeResults([records[0], { ...records[1], tls: true }]), /tls/);
});

Deno.test("validateProbeOptions: ws conflicts and bad URLs are named", () => {
  const cases: [Parameters<typeof validateProbeOptions>[0], RegExp][] = [
    [{ transport: "ws", unix: "/tmp/x.sock" }, /unix is a stream socket/],
    [{ transport: "ws", proxyHeader: 1 }, /proxyHeader is for TCP/],
    [{ transport: "ws", stream: true }, /stream mode is TCP only/],
    [{ transport: "ws", url: "http://127.0.0.1/" }, /not a WebSocket URL/],
    [{ transport: "ws", url: "ws://127.0.0.1:1/", port: 2 }, /either url or hostname\/port/],
    [{ transport: "ws", url: "ws://127.0.0.1:1/", path: "/x" }, /leave out path/],
    [{ transport: "ws", url: "ws://127.0.0.1:1/", tls: {} }, /give a wss: URL/],
    [{ transport: "ws", tls: { servername: "x" } }, /servername is not supported over ws/],
    [{ transport: "ws", path: "x" }, /path must start with/],
    [{ transport: "tcp", url: "ws://127.0.0.1/" }, /url and path are for transport ws/],
    [{ transport: "ws", size: 0 }, /size must be a whole number from 1/],
  ];
  for (const [options, pattern] of cases) {
    assert.throws(() => validateProbeOptions(options), pattern, JSON.stringify(options));
  }
  validateProbeOptions({ transport: "ws", url: "wss://[::1]:9/echo" });
  validateProbeOptions({ transport: "ws", hostname: "::1", port: 9, path: "/e", tls: {} });
});

Deno.test("client.ts --ws --ping against a byte-flipping server: MISMATCH lines and exit 1", async () => {
  await using server = rawWsServer((socket, data) => {
    data[0] ^= 1;
    socket.send(data);
  });
  const run = await runProgram(
    "client.ts",
    ["--url", server.url, "--ping", "--count", "3", "--interval", "10ms"],
    ["--allow-net"],
  );
  assert.equal(run.code, 1, run.stderr);
  assert.match(run.stdout, /^PING ws 127\.0\.0\.1:\d+: 64 bytes every 10\.0ms/);
  assert.equal(run.stdout.match(/\(MISMATCH\)/g)?.length, 3, run.stdout);
  assert.match(run.stdout, /3 sent, 0 received, 100% loss, 3 mismatched/);
});
