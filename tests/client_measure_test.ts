/**
 * client.ts as a measuring tool beyond one run: live interval reports, the HdrHistogram log, the
 * lossless result in --json, `merge`, ping and bench over TLS and Unix sockets, --workers, and
 * server.ts --jitter/--jitter-keep-order as the client sees them. Every test spawns the real CLI
 * (stdout and stderr piped, so never a terminal) against a real server.
 */
import assert from "node:assert/strict";
import * as hdr from "hdr-histogram-js";
import { Histogram } from "../histogram.ts";
import { PROBE_RESULT_SCHEMA, probeResultToRecord } from "../probe_result.ts";
import type { ProbeResult } from "../probe.ts";
import { serveEcho } from "../serve.ts";
import { serveUnixEcho } from "../unix.ts";
import { Random } from "../_random.ts";
import { fakeResult } from "./_probe_fixtures.ts";
import { runProgram } from "./_cli_child.ts";
import { childEnded, readyOrKill, ROOT, spawnServer } from "./_helpers.ts";

const CERT = await Deno.readTextFile(`${ROOT}tests/fixtures/tls_cert.pem`);
const KEY = await Deno.readTextFile(`${ROOT}tests/fixtures/tls_key.pem`);

interface Run {
  code: number;
  stdout: string;
  stderr: string;
}

/** `deno run <permissions> client.ts <args>` in the repository root, to completion. */
function client(args: string[], permissions = ["--allow-net"]): Promise<Run> {
  return runProgram("client.ts", args, permissions);
}

/** The objects of newline-delimited JSON output. */
function jsonLines(text: string): Record<string, unknown>[] {
  return text.trim().split("\n").map((line) => JSON.parse(line));
}

/** The final object's lossless record, its histogram rebuilt. */
function histogramOf(final: Record<string, unknown>): Histogram {
  const result = final.result as ReturnType<typeof probeResultToRecord>;
  return Histogram.fromSnapshot(result.histogram);
}

function assertNoEscapes(run: Run): void {
  assert.ok(!run.stdout.includes("\x1b"), "no escape code on stdout");
  assert.ok(!run.stderr.includes("\x1b"), "no escape code on stderr");
}

/** A usage error: exit 2, one line on stderr naming `name`, nothing on stdout. */
function assertUsageLine(run: Run, name: RegExp): void {
  assert.equal(run.code, 2, run.stderr);
  assert.equal(run.stdout, "", "nothing written to stdout");
  const lines = run.stderr.trim().split("\n");
  assert.equal(lines.length, 1, run.stderr);
  assert.match(lines[0], name);
}

Deno.test("client.ts --bench --json --report-interval: an object per interval, then the result; they add up", async () => {
  await using server = await serveEcho({ port: 0 });
  const run = await client([
    "--bench",
    "-p",
    String(server.addr.port),
    "-c",
    "2",
    "-d",
    "1200ms",
    "--report-interval",
    "300ms",
    "--json",
  ]);
  assert.equal(run.code, 0, run.stderr);
  assertNoEscapes(run);
  const objects = jsonLines(run.stdout);
  const final = objects.at(-1)!;
  const intervals = objects.slice(0, -1);
  assert.equal(final.event, "result");
  assert.ok(intervals.length >= 4, `${intervals.length} intervals`);
  for (const [i, o] of intervals.entries()) {
    assert.equal(o.schema, final.schema);
    assert.equal(o.event, "interval");
    assert.equal(o.index, i);
    assert.equal(o.final, i === intervals.length - 1);
    assert.ok(!Number.isNaN(Date.parse(o.start_time as string)), "ISO start_time");
    assert.ok(Date.parse(o.end_time as string) >= Date.parse(o.start_time as string));
  }
  assert.ok(!Number.isNaN(Date.parse(final.start_time as string)));
  assert.ok(!Number.isNaN(Date.parse(final.end_time as string)));
  for (const [key, total] of [["requests", "requests"], ["sent", "sent"], ["bytes", "bytes"]]) {
    const sum = intervals.reduce((n, o) => n + (o[key] as number), 0);
    assert.equal(sum, final[total], `intervals' ${key} add up`);
  }
  assert.ok((final.requests as number) > 0);
});

Deno.test("client.ts --ping -u --report-interval without a terminal: plain interval lines with UDP counts", async () => {
  await using server = await serveEcho({ port: 0, transport: "udp" });
  const run = await client([
    "-u",
    "-p",
    String(server.addr.port),
    "--count",
    "20",
    "--interval",
    "20ms",
    "--report-interval",
    "100ms",
  ]);
  assert.equal(run.code, 0, run.stderr);
  assertNoEscapes(run);
  const lines = run.stdout.split("\n").filter((l) => l.startsWith("["));
  assert.ok(lines.length >= 3, run.stdout);
  for (const line of lines) {
    const match = line.match(
      /^\[ *\d+\.\d\d- *\d+\.\d\d s\] {2}[\d,]+ req\/s {2}\d+\.\d\d MB\/s {2}p50 \S+ {2}p99 \S+ {2}0 errors {2}lost (\d+) {2}dup 0 {2}reordered 0$/,
    );
    assert.ok(match, line);
  }
  const received = run.stdout.split("\n").filter((l) => / bytes from /.test(l)).length;
  assert.equal(received, 20);
  assert.match(run.stdout, /20 sent, 20 received/);
});

Deno.test("client.ts --bench (no terminal, no --json) with --report-interval never prints a progress escape", async () => {
  await using server = await serveEcho({ port: 0 });
  const run = await client([
    "--bench",
    "-p",
    String(server.addr.port),
    "-d",
    "500ms",
    "--report-interval",
    "100ms",
  ]);
  assert.equal(run.code, 0, run.stderr);
  assertNoEscapes(run);
  assert.equal(jsonLines(run.stdout).at(-1)!.event, "result");
});

Deno.test("client.ts --hdr-log: an HdrHistogram v1.3 log that hdr-histogram-js decodes, holding every reply", async () => {
  await using server = await serveEcho({ port: 0 });
  const dir = await Deno.makeTempDir();
  try {
    const log = `${dir}/run.hlog`;
    const run = await client(
      [
        "--bench",
        "-p",
        String(server.addr.port),
        "-c",
        "2",
        "-d",
        "900ms",
        "--report-interval",
        "200ms",
        "--json",
        "--hdr-log",
        log,
      ],
      ["--allow-net", `--allow-write=${dir}`],
    );
    assert.equal(run.code, 0, run.stderr);
    const final = jsonLines(run.stdout).at(-1)!;
    const text = await Deno.readTextFile(log);
    assert.match(text, /^#\[Histogram log format version 1\.3\]\n/);
    const reader = new hdr.HistogramLogReader(text);
    const total = hdr.build();
    let n = 0;
    for (let h; (h = reader.nextIntervalHistogram()) !== null; n++) total.add(h);
    assert.ok(n >= 4, `${n} interval histograms`);
    assert.equal(total.totalCount, final.requests, "the log holds every measured reply");
    const ours = histogramOf(final);
    for (const p of [50, 90, 99]) {
      const theirs = total.getValueAtPercentile(p);
      const mine = ours.percentile(p);
      assert.ok(Math.abs(theirs - mine) <= mine * 0.002 + 1, `p${p}: ${theirs} vs ${mine}`);
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("client.ts --hdr-log without --allow-write: exit 1, one line naming --allow-write", async () => {
  await using server = await serveEcho({ port: 0 });
  const run = await client([
    "--ping",
    "-p",
    String(server.addr.port),
    "--count",
    "1",
    "--hdr-log",
    "x.hlog",
  ]);
  assert.equal(run.code, 1);
  assert.equal(run.stderr.trim().split("\n").length, 1, run.stderr);
  assert.match(run.stderr, /--hdr-log needs --allow-write/);
});

Deno.test("client.ts --json: the result field is lossless (its histogram gives the printed percentiles)", async () => {
  await using server = await serveEcho({ port: 0 });
  const run = await client(["--bench", "-p", String(server.addr.port), "--count", "300", "--json"]);
  assert.equal(run.code, 0, run.stderr);
  const [final] = jsonLines(run.stdout);
  const record = final.result as Record<string, unknown>;
  assert.equal(record.schema, PROBE_RESULT_SCHEMA);
  assert.equal(record.received, 300);
  assert.equal(record.sent, final.sent);
  const h = histogramOf(final);
  assert.equal(h.count, 300);
  assert.equal(Math.round(h.percentile(99) * 10) / 10, final.p99_us);
  assert.equal(Math.round(h.max * 10) / 10, final.max_us);
});

/** A record of a run with exactly these latencies (µs), as a result file would hold it. */
function recordOf(samples: number[], overrides: Partial<ProbeResult> = {}): unknown {
  return probeResultToRecord(fakeResult({ connections: 2, elapsed: 1000, ...overrides }, samples), {
    mode: "bench",
  });
}

Deno.test("client.ts merge (--allow-read only): percentiles equal those of every sample, sorted", async () => {
  const random = new Random(14);
  const runs = [
    Array.from({ length: 20_000 }, () => 50 + 200 * random.next()), // a fast machine
    Array.from({ length: 5_000 }, () => 400 + 4000 * random.next() ** 3), // a slow one
    Array.from({ length: 1_000 }, () => 80 + 30 * random.next()),
  ];
  const dir = await Deno.makeTempDir();
  try {
    const files = runs.map((_, i) => `${dir}/run${i}.json`);
    for (const [i, samples] of runs.entries()) {
      await Deno.writeTextFile(files[i], JSON.stringify(recordOf(samples)) + "\n");
    }
    const run = await client(["merge", ...files, "--json"], ["--allow-read"]);
    assert.equal(run.code, 0, run.stderr);
    const [merged] = jsonLines(run.stdout);
    const all = runs.flat().sort((a, b) => a - b);
    assert.equal(merged.requests, all.length);
    assert.deepEqual(merged.merged, files);
    const h = histogramOf(merged);
    for (const p of [1, 10, 50, 90, 99, 99.9]) {
      const truth = all[Math.max(0, Math.ceil((p / 100) * all.length) - 1)];
      const got = h.percentile(p);
      assert.ok(Math.abs(got - truth) <= truth * 0.01, `p${p}: merged ${got}, sorted ${truth}`);
    }
    assert.equal(merged.min_us, Math.round(all[0] * 10) / 10);
    assert.equal(merged.max_us, Math.round(all.at(-1)! * 10) / 10);
    // The human summary reads the same files.
    const text = await client(["merge", ...files], ["--allow-read"]);
    assert.equal(text.code, 0, text.stderr);
    assert.match(
      text.stdout,
      /^merged 3 runs of tcp 127\.0\.0\.1:5006 \(6 connections × 64 B in all\)/,
    );
    assert.match(text.stdout, /requests +26,000 in 1\.00s/);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("client.ts merge of two real runs made at the same time (NDJSON with intervals too)", async () => {
  await using server = await serveEcho({ port: 0 });
  const dir = await Deno.makeTempDir();
  try {
    const args = ["--bench", "-p", String(server.addr.port), "-d", "600ms", "--json"];
    const [a, b] = await Promise.all([
      client([...args, "--report-interval", "200ms"]),
      client(args),
    ]);
    assert.equal(a.code, 0, a.stderr);
    assert.equal(b.code, 0, b.stderr);
    await Deno.writeTextFile(`${dir}/a.json`, a.stdout);
    await Deno.writeTextFile(`${dir}/b.json`, b.stdout);
    const run = await client(["merge", `${dir}/a.json`, `${dir}/b.json`, "--json"], [
      "--allow-read",
    ]);
    assert.equal(run.code, 0, run.stderr);
    const [merged] = jsonLines(run.stdout);
    const fa = jsonLines(a.stdout).at(-1)!;
    const fb = jsonLines(b.stdout).at(-1)!;
    assert.equal(merged.requests, (fa.requests as number) + (fb.requests as number));
    const reference = histogramOf(fa);
    reference.merge(histogramOf(fb));
    assert.equal(merged.p50_us, Math.round(reference.percentile(50) * 10) / 10);
    assert.equal(merged.p99_us, Math.round(reference.percentile(99) * 10) / 10);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("client.ts merge bad input: one line naming the file, exit 2, nothing written", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const good = `${dir}/good.json`;
    const text = JSON.stringify(recordOf([100, 200, 300]));
    await Deno.writeTextFile(good, text);
    const cases: [string, string][] = [
      ["schema.json", JSON.stringify({ ...(JSON.parse(text)), schema: 2 })],
      ["size.json", JSON.stringify(recordOf([100], { size: 1024 }))],
      [
        "transport.json",
        JSON.stringify(recordOf([100], {
          transport: "udp",
          address: { hostname: "127.0.0.1", port: 5006, transport: "udp" },
        })),
      ],
      ["truncated.json", text.slice(0, text.length - 40)],
    ];
    for (const [name, body] of cases) {
      await Deno.writeTextFile(`${dir}/${name}`, body);
      const run = await client(["merge", good, `${dir}/${name}`], ["--allow-read"]);
      assertUsageLine(run, new RegExp(`${name.replace(".", "\\.")}`));
    }
    assertUsageLine(
      await client(["merge", good, `${dir}/missing.json`], ["--allow-read"]),
      /missing\.json: no such file/,
    );
    assertUsageLine(await client(["merge"], ["--allow-read"]), /merge needs the result files/);
    assertUsageLine(
      await client(["merge", good, "-c", "2"], ["--allow-read"]),
      /merge takes only --json/,
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("client.ts ping and bench over TLS: the same accounting, named tls", async () => {
  await using server = await serveEcho({
    port: 0,
    transport: "tcp",
    tls: { cert: CERT, key: KEY },
  });
  const port = String(server.addr.port);
  const tls = ["--tls", "--ca", "tests/fixtures/tls_cert.pem"];
  const perms = ["--allow-net", "--allow-read"];
  const ping = await client(
    ["--ping", "-p", port, "--count", "3", "--interval", "20ms", ...tls],
    perms,
  );
  assert.equal(ping.code, 0, ping.stderr);
  assert.match(ping.stdout, new RegExp(`^PING tls 127\\.0\\.0\\.1:${port}: 64 bytes`));
  assert.match(ping.stdout, /3 sent, 3 received, 0% loss/);
  const bench = await client(
    [
      "--bench",
      "-p",
      port,
      "-c",
      "2",
      "--count",
      "200",
      "--json",
      ...tls,
      "--servername",
      "localhost",
    ],
    perms,
  );
  assert.equal(bench.code, 0, bench.stderr);
  const [final] = jsonLines(bench.stdout);
  assert.equal(final.transport, "tls");
  assert.equal(final.requests, 200);
  assert.equal((final.result as Record<string, unknown>).tls, true);
  assert.equal(histogramOf(final).count, 200);
  // A wrong name fails the handshake: no reply, exit 1, the reason on stderr.
  const wrong = await client(
    ["--ping", "-p", port, "--count", "1", ...tls, "--servername", "example.com"],
    perms,
  );
  assert.equal(wrong.code, 1);
  assert.match(wrong.stderr, /example\.com|NotValidForName|certificate/i);
});

Deno.test("client.ts ping and bench over a Unix socket", async () => {
  const dir = await Deno.makeTempDir();
  const path = `${dir}/echo.sock`;
  try {
    await using _server = await serveUnixEcho({ path });
    const perms = ["--allow-read", "--allow-write", `--allow-net=unix:${path}`];
    const ping = await client(
      ["--ping", "--unix", path, "--count", "3", "--interval", "20ms"],
      perms,
    );
    assert.equal(ping.code, 0, ping.stderr);
    assert.match(ping.stdout, new RegExp(`^PING unix ${path}: 64 bytes`));
    assert.match(ping.stdout, /3 sent, 3 received, 0% loss/);
    const bench = await client(
      ["--bench", "--unix", path, "-c", "3", "--count", "300", "--json"],
      perms,
    );
    assert.equal(bench.code, 0, bench.stderr);
    const [final] = jsonLines(bench.stdout);
    assert.equal(final.transport, "unix");
    assert.equal(final.address, path);
    assert.equal(final.requests, 300);
    assert.equal(final.connections_served, 3);
    assertUsageLine(
      await client(["--bench", "--unix", path, "-p", "7"], perms),
      /--unix and --port conflict/,
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("client.ts --bench --workers 2: connections spread over threads, results merged exactly", async () => {
  await using server = await serveEcho({ port: 0 });
  const port = String(server.addr.port);
  const run = await client(
    ["--bench", "-p", port, "-c", "4", "--count", "400", "--workers", "2", "--json"],
    ["--allow-net", "--allow-read"],
  );
  assert.equal(run.code, 0, run.stderr);
  const [final] = jsonLines(run.stdout);
  assert.equal(final.requests, 400);
  assert.equal(final.connections, 4);
  assert.equal(final.connections_served, 4);
  assert.equal(histogramOf(final).count, 400);
  // With interval reports: merged by index, adding up to the result.
  const live = await client(
    [
      "--bench",
      "-p",
      port,
      "-c",
      "2",
      "-d",
      "600ms",
      "--workers",
      "2",
      "--report-interval",
      "200ms",
      "--json",
    ],
    ["--allow-net", "--allow-read"],
  );
  assert.equal(live.code, 0, live.stderr);
  const objects = jsonLines(live.stdout);
  const sum = objects.slice(0, -1).reduce((n, o) => n + (o.requests as number), 0);
  assert.equal(sum, objects.at(-1)!.requests);
});

Deno.test("client.ts --workers refusals: ping, more than -c or --count, no --allow-read", async () => {
  assertUsageLine(await client(["--ping", "--workers", "2"]), /--workers is for bench/);
  assertUsageLine(await client(["--bench", "-c", "2", "--workers", "3"]), /more than -c 2/);
  assertUsageLine(
    await client(["--bench", "-c", "4", "--count", "2", "--workers", "3"]),
    /more than --count 2/,
  );
  assertUsageLine(await client(["--workers", "2"]), /applies to ping and bench/);
  const run = await client(["--bench", "-c", "2", "--workers", "2", "-p", "9"]);
  assert.equal(run.code, 1);
  assert.equal(run.stderr.trim().split("\n").length, 1, run.stderr);
  assert.match(run.stderr, /--workers needs --allow-read/);
});

/** server.ts on a free UDP port with these impairment flags; its port. */
async function impairedServer(flags: string[]) {
  const server = spawnServer(["--udp", "-p", "0", ...flags]);
  const match = await readyOrKill(
    server,
    server.stdout.waitFor(/^listening udp 127\.0\.0\.1:(\d+) \(impaired: (.*)\)$/),
  );
  return { server, port: match[1], impaired: match[2] };
}

Deno.test("server.ts --delay 50ms --jitter 20ms: median RTT near 50 ms, spread about ±20 ms; --jitter-keep-order pushes it up", async () => {
  const plain = await impairedServer(["--delay", "50ms", "--jitter", "20ms", "--seed", "7"]);
  const kept = await impairedServer([
    "--delay",
    "50ms",
    "--jitter",
    "20ms",
    "--seed",
    "7",
    "--jitter-keep-order",
  ]);
  try {
    assert.equal(plain.impaired, "delay 50ms±20ms, seed 7");
    assert.match(kept.impaired, /jitter keeps order/);
    const ping = (port: string) =>
      client(["-u", "-p", port, "--count", "400", "--interval", "2ms", "--json"]);
    const [a, b] = [await ping(plain.port), await ping(kept.port)];
    assert.equal(a.code, 0, a.stderr);
    assert.equal(b.code, 0, b.stderr);
    const ha = histogramOf(jsonLines(a.stdout)[0]);
    const hb = histogramOf(jsonLines(b.stdout)[0]);
    const ms = (h: Histogram, p: number) => h.percentile(p) / 1000;
    // As netem: delays drawn from [30, 70) ms around 50; loopback and a loaded machine only add.
    assert.ok(ms(ha, 50) >= 49 && ms(ha, 50) < 60, `median ${ms(ha, 50)} ms`);
    assert.ok(ms(ha, 10) >= 30 && ms(ha, 10) < 45, `p10 ${ms(ha, 10)} ms`);
    assert.ok(ms(ha, 90) >= 60, `p90 ${ms(ha, 90)} ms`);
    assert.ok((jsonLines(a.stdout)[0].reordered as number) > 0, "jitter reorders");
    // Keeping order, a reply waits for any slower one before it: towards 70 ms.
    assert.equal(jsonLines(b.stdout)[0].reordered, 0);
    assert.ok(ms(hb, 50) > ms(ha, 50) + 5, `kept median ${ms(hb, 50)} vs ${ms(ha, 50)} ms`);
    assert.ok(ms(hb, 10) > ms(ha, 10) + 5, `kept p10 ${ms(hb, 10)} vs ${ms(ha, 10)} ms`);
  } finally {
    for (const { server } of [plain, kept]) {
      server.child.kill("SIGINT");
      await childEnded(server);
    }
  }
});

Deno.test("server.ts --jitter-keep-order without --jitter: exit 2, one line", async () => {
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["run", "--allow-net", "server.ts", "--udp", "-p", "0", "--jitter-keep-order"],
    cwd: ROOT,
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).output();
  const stderr = new TextDecoder().decode(out.stderr);
  assert.equal(out.code, 2);
  assert.equal(stderr.trim().split("\n").length, 1, stderr);
  assert.match(stderr, /--jitter-keep-order applies to --jitter/);
});

Deno.test("--help names the new flags, what --workers refuses, merge, and --jitter-keep-order", async () => {
  const help = await client(["--help"]);
  assert.equal(help.code, 0, help.stderr);
  for (const flag of ["--report-interval", "--hdr-log", "--workers", "merge FILE"]) {
    assert.ok(help.stdout.includes(flag), flag);
  }
  assert.match(help.stdout, /it refuses ping, more workers than -c or --count/);
  const server = await new Deno.Command(Deno.execPath(), {
    args: ["run", "server.ts", "--help"],
    cwd: ROOT,
    stdout: "piped",
    env: { NO_COLOR: "1" },
  }).output();
  const text = new TextDecoder().decode(server.stdout);
  assert.match(text, /--jitter-keep-order/);
  assert.match(text, /median DELAY; reorders, as netem does/);
});

Deno.test("client.ts --ping --json --report-interval: ping intervals as objects too, adding up", async () => {
  await using server = await serveEcho({ port: 0 });
  const run = await client([
    "--ping",
    "-p",
    String(server.addr.port),
    "--count",
    "12",
    "--interval",
    "25ms",
    "--report-interval",
    "100ms",
    "--json",
  ]);
  assert.equal(run.code, 0, run.stderr);
  assertNoEscapes(run);
  const objects = jsonLines(run.stdout);
  const final = objects.at(-1)!;
  assert.equal(final.event, "result");
  assert.equal(final.mode, "ping");
  assert.ok(objects.length >= 3, run.stdout);
  for (const o of objects.slice(0, -1)) assert.equal(o.mode, "ping");
  const sum = objects.slice(0, -1).reduce((n, o) => n + (o.requests as number), 0);
  assert.equal(sum, 12);
  assert.equal(final.requests, 12);
});
