/**
 * The server CLI's lines (_server_report.ts), without a process: text and `--json` events, what
 * quiet and verbose leave out, refusal floods summed up, counter summaries, warnings on stderr.
 *
 * @module
 */
import assert from "node:assert/strict";
import { paletteFor } from "../_cli.ts";
import { EchoError } from "../errors.ts";
import {
  describeReady,
  payload,
  peer,
  REJECT_LINES_PER_SECOND,
  ServerReport,
  type ServerReportOptions,
  summary,
} from "../_server_report.ts";
import { createStats } from "../stats.ts";

const plain = paletteFor({ isTerminal: () => false });
const client: Deno.NetAddr = { transport: "tcp", hostname: "127.0.0.1", port: 40000 };
const local: Deno.NetAddr = { transport: "tcp", hostname: "127.0.0.1", port: 5006 };
const TIME = new Date("2026-01-02T03:04:05.000Z");

function record(options: Partial<ServerReportOptions> = {}) {
  const out: string[] = [];
  const err: string[] = [];
  const report = new ServerReport(
    { colors: plain, errColors: plain, now: () => TIME, ...options },
    { out: (line) => out.push(line), err: (line) => err.push(line) },
  );
  return { report, out, err };
}

Deno.test("ServerReport: text lines for every event, the counters at the end", () => {
  const { report, out, err } = record();
  const hooks = report.hooks;
  hooks.onListen!({ transport: "tcp", hostname: "::1", port: 5006, secure: true });
  hooks.onListen!({ transport: "udp", hostname: "127.0.0.1", port: 5006, impairment: "loss 20%" });
  hooks.onConnection!({ id: 1, remoteAddr: client, localAddr: local });
  hooks.onClose!({ id: 1, remoteAddr: client, bytes: 11, duration: 2.345, reason: "eof" });
  hooks.onDatagram!({ remoteAddr: { ...client, transport: "udp" }, data: new Uint8Array(3) });
  assert.equal(hooks.onData, undefined, "no data lines unless verbose");
  const stats = createStats();
  stats.sessionsTotal = 1;
  report.stopped(stats);
  assert.deepEqual(out, [
    "listening tls [::1]:5006",
    "listening udp 127.0.0.1:5006 (impaired: loss 20%)",
    "connection #1 from 127.0.0.1:40000",
    "closed #1 127.0.0.1:40000: 11 bytes echoed in 2.3ms (eof)",
    "datagram from 127.0.0.1:40000: 3 bytes",
    "stopped: 1 TLS session, 0 datagrams, 0 bytes in, 0 bytes out, 0 errors",
  ]);
  assert.deepEqual(err, []);
});

Deno.test("ServerReport: --json lines carry the schema, the event and the time", () => {
  const { report, out } = record({ json: true, verbose: true });
  report.hooks.onData!({ id: 2, remoteAddr: client, data: new TextEncoder().encode("hi") });
  report.hooks.onError!(new EchoError("accept failed: boom"));
  assert.deepEqual(out.map((line) => JSON.parse(line)), [
    {
      schema: 1,
      event: "data",
      time: TIME.toISOString(),
      id: 2,
      remote: "127.0.0.1:40000",
      size: 2,
      text: "hi",
    },
    { schema: 1, event: "error", time: TIME.toISOString(), message: "accept failed: boom" },
  ]);
});

Deno.test("ServerReport: quiet leaves out per-event lines, not warnings or the stopped summary", () => {
  const { report, out, err } = record({ quiet: true });
  for (const hook of ["onConnection", "onClose", "onDatagram", "onReject", "onData"] as const) {
    assert.equal(report.hooks[hook], undefined, hook);
  }
  report.hooks.onListen!({ transport: "udp", hostname: "127.0.0.1", port: 7, backend: "node" });
  report.hooks.onError!(new EchoError("send failed"));
  report.notice("reachable from the network");
  report.stopped(createStats());
  assert.deepEqual(out, [
    "listening udp 127.0.0.1:7",
    "stopped: 0 TCP sessions, 0 datagrams, 0 bytes in, 0 bytes out, 0 errors",
  ]);
  assert.deepEqual(err, [
    "note: UDP runs on node:dgram; run with --unstable-net to use Deno.listenDatagram",
    "server.ts: warning: send failed",
    "server.ts: notice: reachable from the network",
  ]);
});

Deno.test("ServerReport: a refusal flood shows ten lines a second, then one sum", () => {
  const { report, out } = record();
  const from: Deno.NetAddr = { transport: "udp", hostname: "192.0.2.1", port: 19 };
  for (let i = 0; i < REJECT_LINES_PER_SECOND + 5; i++) {
    report.hooks.onReject!({ transport: "udp", remoteAddr: from, reason: "guard", detail: "x" });
  }
  report.stopped(createStats());
  assert.equal(out.length, REJECT_LINES_PER_SECOND + 2);
  assert.equal(out[0], "refused udp 192.0.2.1:19: guard (x)");
  assert.equal(
    out[REJECT_LINES_PER_SECOND],
    "refused 5 more udp datagrams: guard (not shown one by one; the counters have them)",
  );
  assert.match(out.at(-1)!, /^stopped: /);
});

Deno.test("summary, peer, describeReady, payload: the pieces of the lines", () => {
  const stats = createStats();
  stats.dropped.rate = 4;
  stats.impairment = { dropped: 2, duplicated: 0, reordered: 1, delayed: 0, overflow: 0 };
  assert.equal(
    summary(stats),
    "0 TCP sessions, 0 datagrams, 0 bytes in, 0 bytes out, 0 errors; refused: rate 4; " +
      "impairment: dropped 2, reordered 1",
  );
  assert.equal(peer({ transport: "unix", path: "/tmp/c.sock" }), "/tmp/c.sock");
  assert.equal(peer({ transport: "unix", path: "" }), "unix client");
  assert.equal(describeReady({ transport: "unix", path: "/tmp/e.sock" }), "unix /tmp/e.sock");
  assert.equal(
    describeReady({ transport: "tcp", hostname: "127.0.0.1", port: 1 }),
    "tcp 127.0.0.1:1",
  );
  assert.deepEqual(payload(new Uint8Array([0, 255])), { hex: "00ff" });
});

Deno.test("ServerReport: counts are singular for one, with thousands separators, and name Unix and TLS sessions", () => {
  const stats = {
    ...createStats(),
    sessionsTotal: 1,
    datagramsIn: 1,
    bytesIn: 1,
    bytesOut: 12_345,
    errors: 1,
  };
  assert.equal(
    summary(stats),
    "1 TCP session, 1 datagram, 1 byte in, 12,345 bytes out, 1 error",
  );
  for (
    const [info, noun] of [
      [{ transport: "unix", path: "/tmp/e.sock" }, "Unix session"],
      [{ transport: "tcp", hostname: "127.0.0.1", port: 7, secure: true }, "TLS session"],
    ] as const
  ) {
    const { report, out } = record();
    report.hooks.onListen!(info);
    report.hooks.onClose!({ id: 1, remoteAddr: client, bytes: 1, duration: 1, reason: "eof" });
    report.stopped(stats);
    assert.match(out.at(-2)!, /: 1 byte echoed in /);
    assert.equal(
      out.at(-1),
      `stopped: 1 ${noun}, 1 datagram, 1 byte in, 12,345 bytes out, 1 error`,
    );
  }
});

Deno.test("ServerReport: WebSocket lines (text and --json say transport ws), the ready line names the page, the summary has the ws share", () => {
  const { report, out } = record({ verbose: true });
  const ws = report.wsHooks;
  report.hooks.onListen!({ transport: "ws", hostname: "127.0.0.1", port: 8080, secure: false });
  report.hooks.onListen!({ transport: "ws", hostname: "::1", port: 8443, secure: true });
  ws.onConnection!({ transport: "ws", id: 1, remoteAddr: client, path: "/chat" });
  ws.onMessage!({ transport: "ws", id: 1, remoteAddr: client, data: "hi", bytes: 2 });
  ws.onMessage!({
    transport: "ws",
    id: 1,
    remoteAddr: client,
    data: new Uint8Array([0, 255]).buffer,
    bytes: 2,
  });
  ws.onClose!({
    transport: "ws",
    id: 1,
    remoteAddr: client,
    bytes: 4,
    messages: 2,
    duration: 12.34,
    reason: "eof",
    code: 1000,
    detail: "bye",
  });
  report.hooks.onReject!({ transport: "ws", remoteAddr: client, reason: "acl" });
  const stats = createStats();
  stats.sessionsTotal = 3; // two TCP sessions and one WebSocket session
  stats.ws = {
    sessionsOpen: 0,
    sessionsTotal: 1,
    messagesIn: 2,
    messagesOut: 2,
    bytesIn: 4,
    bytesOut: 4,
    tooBig: 1,
    slow: 0,
    protocolErrors: 0,
    badRequests: 2,
    upgradeRequired: 0,
    pages: 1,
    viewersRefused: 0,
  };
  report.stopped(stats);
  assert.deepEqual(out, [
    "listening ws 127.0.0.1:8080 (page: http://127.0.0.1:8080/)",
    "listening wss [::1]:8443 (page: https://[::1]:8443/)",
    "ws connection #1 from 127.0.0.1:40000 (path /chat)",
    'received from 127.0.0.1:40000 (ws #1, text): "hi"',
    "received from 127.0.0.1:40000 (ws #1, binary): 2 bytes:\n" +
    "  00000000  00 ff                                            |..|",
    "ws closed #1 127.0.0.1:40000: 4 bytes in 2 messages echoed in 12.3ms (eof, 1000 bye)",
    "refused ws 127.0.0.1:40000: acl",
    "stopped: 2 TCP sessions, 0 datagrams, 0 bytes in, 0 bytes out, 0 errors; " +
    "ws: 1 session, 2 messages in, 2 out, 1 page (too big 1, bad handshakes 2)",
  ]);

  const json = record({ json: true, verbose: true });
  json.report.wsHooks.onMessage!({
    transport: "ws",
    id: 2,
    remoteAddr: client,
    data: new Uint8Array([1, 2]).buffer,
    bytes: 2,
  });
  json.report.wsHooks.onClose!({
    transport: "ws",
    id: 2,
    remoteAddr: client,
    bytes: 2,
    messages: 1,
    duration: 1,
    reason: "limit",
    code: 1009,
    detail: "",
  });
  assert.deepEqual(json.out.map((line) => JSON.parse(line)), [
    {
      schema: 1,
      event: "data",
      time: TIME.toISOString(),
      transport: "ws",
      id: 2,
      remote: "127.0.0.1:40000",
      size: 2,
      type: "binary",
      hex: "0102",
    },
    {
      schema: 1,
      event: "close",
      time: TIME.toISOString(),
      transport: "ws",
      id: 2,
      remote: "127.0.0.1:40000",
      bytes: 2,
      messages: 1,
      duration_ms: 1,
      reason: "limit",
      code: 1009,
    },
  ]);
  const quiet = record({ quiet: true }).report.wsHooks;
  assert.deepEqual([quiet.onConnection, quiet.onMessage, quiet.onClose], [
    undefined,
    undefined,
    undefined,
  ]);
});
