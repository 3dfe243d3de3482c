import assert from "node:assert/strict";
import { serveEcho } from "../serve.ts";
import { runProgram } from "./_cli_child.ts";

const CLIENT = new URL("../client.ts", import.meta.url).pathname;
const ROOT = new URL("..", import.meta.url).pathname;

interface Run {
  code: number;
  stdout: string;
  stderr: string;
}

/** Runs client.ts with `args` (stdout and stderr piped, so not a terminal) and waits for it. */
function client(args: string[]): Promise<Run> {
  return runProgram("client.ts", args, ["--allow-net"]);
}

function freePort(): number {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (listener.addr as Deno.NetAddr).port;
  listener.close();
  return port;
}

Deno.test("client.ts --help lists the ping and bench flags", async () => {
  const { code, stdout } = await client(["--help"]);
  assert.equal(code, 0);
  for (const flag of ["--bench", "--ping", "--count", "--interval", "--rate", "--stream"]) {
    assert.match(stdout, new RegExp(`${flag}\\b`), flag);
  }
});

Deno.test("client.ts ping over TCP: a line per reply and the statistics, exit 0", async () => {
  await using server = await serveEcho({ port: 0 });
  const port = server.addr.port;
  const { code, stdout, stderr } = await client([
    "--count",
    "3",
    "--interval",
    "50ms",
    "-p",
    String(port),
  ]);
  assert.equal(code, 0, stderr);
  const lines = stdout.trim().split("\n");
  assert.equal(lines[0], `PING tcp 127.0.0.1:${port}: 64 bytes every 50.0ms`);
  for (let seq = 0; seq < 3; seq++) {
    assert.match(
      lines[1 + seq],
      new RegExp(`^64 bytes from 127\\.0\\.0\\.1:${port}: seq=${seq} time=\\d+\\.\\d+ ms$`),
    );
  }
  assert.equal(lines[4], "");
  assert.equal(lines[5], `--- tcp 127.0.0.1:${port} ping statistics ---`);
  assert.match(lines[6], /^3 sent, 3 received, 0% loss, time \d/);
  assert.match(lines[7], /^rtt min\/avg\/max\/mdev = [\d.]+\/[\d.]+\/[\d.]+\/[\d.]+ ms$/);
});

Deno.test("client.ts ping over UDP counts duplicates and reordering too", async () => {
  await using server = await serveEcho({ port: 0 });
  const { code, stdout, stderr } = await client([
    "-u",
    "--count",
    "3",
    "--interval",
    "20ms",
    "-s",
    "100",
    "-p",
    String(server.addr.port),
  ]);
  assert.equal(code, 0, stderr);
  assert.equal(stdout.match(/^100 bytes from /gm)?.length, 3);
  assert.match(stdout, /^3 sent, 3 received, 0% loss, 0 duplicates, 0 reordered, time /m);
});

Deno.test("client.ts --ping --json prints one result object", async () => {
  await using server = await serveEcho({ port: 0 });
  const { code, stdout } = await client([
    "--count",
    "2",
    "--interval",
    "10ms",
    "--json",
    "-p",
    String(server.addr.port),
  ]);
  assert.equal(code, 0);
  const json = JSON.parse(stdout);
  assert.equal(json.schema, 1);
  assert.equal(json.mode, "ping");
  assert.equal(json.ok, true);
  assert.equal(json.sent, 2);
  assert.equal(json.requests, 2);
  assert.equal(json.interval_ms, 10);
});

Deno.test("client.ts --bench --json: one JSON object whose counts add up", async () => {
  await using server = await serveEcho({ port: 0 });
  const port = String(server.addr.port);
  const tcp = await client(["--bench", "--json", "--duration", "300ms", "-c", "2", "-p", port]);
  assert.equal(tcp.code, 0, tcp.stderr);
  const t = JSON.parse(tcp.stdout);
  assert.equal(t.schema, 1);
  assert.equal(t.mode, "bench");
  assert.equal(t.transport, "tcp");
  assert.equal(t.connections, 2);
  assert.ok(t.requests > 0);
  assert.equal(t.mismatches, 0);
  assert.equal(t.errors, 0);
  assert.equal(t.sent, t.requests + t.failed + t.outstanding);
  assert.equal(t.bytes, t.requests * 64);
  assert.ok(t.p50_us > 0 && t.p50_us <= t.p99_us && t.p99_us <= t.max_us);

  const udp = await client(["--bench", "-u", "--json", "--count", "200", "-p", port]);
  assert.equal(udp.code, 0, udp.stderr);
  const u = JSON.parse(udp.stdout);
  assert.equal(u.transport, "udp");
  assert.equal(u.sent, 200);
  assert.equal(u.requests, u.sent - u.lost - u.late);
  assert.equal(u.mismatches, 0);
});

Deno.test("client.ts --bench without a terminal prints JSON even without --json", async () => {
  await using server = await serveEcho({ port: 0 });
  const { code, stdout } = await client([
    "--bench",
    "--count",
    "50",
    "--stream",
    "-s",
    "4096",
    "-p",
    String(server.addr.port),
  ]);
  assert.equal(code, 0);
  const json = JSON.parse(stdout);
  assert.equal(json.stream, true);
  assert.equal(json.size, 4096);
  assert.equal(json.pipeline, 4);
  assert.equal(json.requests, 50);
  assert.ok(json.mbps > 0);
});

Deno.test("client.ts ping/bench usage errors: one line, exit 2", async () => {
  const cases: [string[], RegExp][] = [
    [["-u", "-s", "8", "--count", "1"], /UDP probes need at least 24 bytes.*got 8/],
    [["--bench", "--rate", "100", "--stream"], /--rate and --stream exclude each other/],
    [["--bench", "--stream", "-u"], /--stream is TCP only/],
    [["--count", "x"], /--count must be a whole number/],
    [["--count", "0"], /--count must be a whole number/],
    [["--bench", "--interval", "1s"], /--interval is for ping mode/],
    [["--ping", "-c", "2"], /--ping and --connections exclude each other/],
    [["--ping", "hello"], /ping mode sends its own probes/],
    [["--size", "100"], /--size applies to ping and bench modes/],
    [["--bench", "--rate", "fast"], /--rate must be a number/],
    [["--interval", "0"], /--interval must be above 0/],
    [["--count", "2", "-u", "--retries", "1"], /--retries applies to a single UDP echo/],
  ];
  for (const [args, message] of cases) {
    const { code, stdout, stderr } = await client(args);
    assert.equal(code, 2, `${args.join(" ")}: ${stderr}`);
    assert.equal(stdout, "", args.join(" "));
    assert.equal(stderr.trim().split("\n").length, 1, stderr);
    assert.match(stderr, message, args.join(" "));
  }
});

Deno.test("client.ts ping: altered replies are flagged and exit 1", async () => {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const sessions: Promise<void>[] = [];
  const accepting = (async () => {
    for await (const conn of listener) {
      sessions.push((async () => {
        const buffer = new Uint8Array(4096);
        try {
          for (;;) {
            const n = await conn.read(buffer);
            if (n === null) break;
            buffer[n - 1] ^= 0xff;
            await conn.write(buffer.subarray(0, n));
          }
        } catch {
          // the client went away
        } finally {
          conn.close();
        }
      })());
    }
  })().catch(() => {});
  try {
    const { code, stdout } = await client([
      "--count",
      "2",
      "--interval",
      "20ms",
      "-p",
      String((listener.addr as Deno.NetAddr).port),
    ]);
    assert.equal(code, 1);
    assert.equal(stdout.match(/\(MISMATCH\)$/gm)?.length, 2);
    assert.match(stdout, /^2 sent, 0 received, 100% loss, 2 mismatched, time /m);
  } finally {
    listener.close();
    await accepting;
    await Promise.all(sessions);
  }
});

Deno.test("client.ts ping with no server: TCP exits 1 naming the refusal, UDP reports loss", async () => {
  const port = String(freePort());
  const tcp = await client(["--count", "1", "-p", port]);
  assert.equal(tcp.code, 1);
  assert.match(tcp.stderr, /connection refused/);

  const udp = await client([
    "-u",
    "--count",
    "2",
    "--interval",
    "10ms",
    "--timeout",
    "100ms",
    "-p",
    port,
  ]);
  assert.equal(udp.code, 1);
  assert.match(udp.stdout, /^2 sent, 0 received, 100% loss/m);
});

Deno.test("client.ts ping: Ctrl-C (SIGINT) ends it and the statistics still print", async () => {
  await using server = await serveEcho({ port: 0 });
  const child = new Deno.Command(Deno.execPath(), {
    args: ["run", "--allow-net", CLIENT, "--interval", "20ms", "-p", String(server.addr.port)],
    cwd: ROOT,
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
    env: { NO_COLOR: "1" },
  }).spawn();
  const decoder = new TextDecoder();
  let stdout = "";
  const reader = child.stdout.getReader();
  // Wait for three replies, then interrupt.
  while ((stdout.match(/^64 bytes from /gm)?.length ?? 0) < 3) {
    const { value, done } = await reader.read();
    if (done) break;
    stdout += decoder.decode(value, { stream: true });
  }
  child.kill("SIGINT");
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    stdout += decoder.decode(value, { stream: true });
  }
  const [status] = await Promise.all([child.status, child.stderr.cancel()]);
  assert.equal(status.code, 0, stdout);
  assert.match(stdout, /ping statistics ---\n\d+ sent, \d+ received/);
});
