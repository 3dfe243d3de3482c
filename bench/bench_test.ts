// Tests for the benchmark suite's own machinery: argument parsing, the native programs (built
// when cc exists), starting servers on their ready lines, the load generator's checks
// (mismatches and UDP loss are counted, not hidden), the naive reference peer, peers that survive
// clients that leave, and a peer that dies being reported as dead, never as 0 req/s. Loopback
// only, port 0, short bounded runs; nothing asserts on speed.
import assert from "node:assert/strict";
import { buildNative, findBun, runGenerator, startServer, which } from "./_peers.ts";
import { renderReport } from "./_report.ts";
import { CELLS, type Context, LOADGEN, main, median, parseBenchArgs, runSuite } from "./main.ts";
import { descendants, renderMemory } from "./memory.ts";
import { renderReadmeTable } from "./readme_table.ts";

const NODE = await which("node");
const HAS_CC = (await which("cc")) !== null;
const NODE_ECHO = new URL("./peers/node_echo.mjs", import.meta.url).pathname;

let nativeBuild: Promise<Awaited<ReturnType<typeof buildNative>>> | null = null;
function native() {
  nativeBuild ??= buildNative();
  return nativeBuild;
}

function loadgenArgs(bin: string, port: number, extra: string[]): string[] {
  return [bin, "--host", "127.0.0.1", "--port", String(port), "--duration", "0.3", ...extra];
}

Deno.test("parseBenchArgs: --quick defaults, filters and validation", () => {
  const quick = parseBenchArgs(["--quick"]);
  assert.equal(quick.duration, 1);
  assert.equal(quick.runs, 1);
  assert.equal(quick.pin, "split");
  assert.equal(quick.cells.length, 7);
  assert.deepEqual(quick.servers, ["deno", "naive", "node", "bun", "c"]);
  assert.deepEqual(quick.modes, ["fresh", "long-lived"]);

  const some = parseBenchArgs([
    "--only",
    "udp-64x1,tcp-64x1",
    "--servers",
    "c,node",
    "--runs",
    "5",
  ]);
  assert.deepEqual(some.cells.map((c) => c.id), ["tcp-64x1", "udp-64x1"]); // matrix order kept
  assert.deepEqual(some.servers, ["node", "c"]);
  assert.equal(some.runs, 5);
  assert.equal(some.duration, 5);
  assert.equal(parseBenchArgs(["--duration", "250ms"]).duration, 0.25);
  assert.equal(parseBenchArgs(["--no-pin"]).pin, "none");

  assert.throws(() => parseBenchArgs(["--only", "tcp-nope"]), RangeError);
  assert.throws(() => parseBenchArgs(["--servers", "java"]), RangeError);
  assert.throws(() => parseBenchArgs(["--runs", "0"]), RangeError);
  assert.throws(() => parseBenchArgs(["--pin", "same", "--busy-poll"]), RangeError);
  assert.throws(() => parseBenchArgs(["--duration=-1"]), RangeError);
});

Deno.test("parseBenchArgs: modes, saving and labels", () => {
  assert.deepEqual(parseBenchArgs(["--long-lived"]).modes, ["long-lived"]);
  assert.deepEqual(parseBenchArgs(["--mode", "fresh"]).modes, ["fresh"]);
  assert.deepEqual(parseBenchArgs(["--mode", "both"]).modes, ["fresh", "long-lived"]);
  assert.throws(() => parseBenchArgs(["--mode", "warm"]), RangeError);
  assert.throws(() => parseBenchArgs(["--long-lived", "--mode", "fresh"]), RangeError);
  assert.match(parseBenchArgs([]).out!, /bench\/results$/);
  assert.equal(parseBenchArgs(["--no-save"]).out, null);
  assert.equal(parseBenchArgs(["--out", "/tmp/x"]).out, "/tmp/x");
  assert.throws(() => parseBenchArgs(["--no-save", "--out", "/tmp/x"]), RangeError);
  assert.equal(parseBenchArgs(["--label", "smoke"]).label, "smoke");
});

Deno.test("main: bad flags exit 2 with a one-line reason", async () => {
  assert.equal(await main(["--mode", "warm"]), 2);
});

Deno.test("median: odd, even, empty, ignores non-finite", () => {
  assert.equal(median([3, 1, 2]), 2);
  assert.equal(median([4, 1, 3, 2]), 2.5);
  assert.equal(median([]), null);
  assert.equal(median([NaN, 7]), 7);
});

Deno.test("startServer rejects when the program exits before its ready lines", async () => {
  await assert.rejects(
    startServer(["sh", "-c", "echo starting; echo broken >&2; exit 3"]),
    /exited \(code 3\).*broken/,
  );
});

Deno.test("startServer gives up on a silent program and stops it", async () => {
  await assert.rejects(
    startServer(["sh", "-c", "exec sleep 30"], { timeoutMs: 300 }),
    /no listening lines within 300 ms/,
  );
});

Deno.test("findBun never throws without installing and refuses a prefix in the repo", async () => {
  const bun = await findBun({ noInstall: true });
  assert.ok(bun.path !== null || typeof bun.reason === "string");
  const repo = new URL("..", import.meta.url).pathname.replace(/\/$/, "");
  await assert.rejects(findBun({ prefix: `${repo}/.bun`, noInstall: true }), RangeError);
});

Deno.test({
  name: "C echo server + loadgen: tcp rr, tcp stream and udp rr echo every byte",
  ignore: !HAS_CC,
  fn: async () => {
    const built = await native();
    assert.ok(built.echoServer && built.loadgen, built.reason);
    const server = await startServer([built.echoServer!, "--host", "127.0.0.1", "--port", "0"]);
    try {
      assert.equal(server.tcpPort, server.udpPort, "TCP and UDP share the port");
      const shapes = [
        [
          "--proto",
          "tcp",
          "--mode",
          "rr",
          "--connections",
          "3",
          "--size",
          "100",
          "--pipeline",
          "4",
        ],
        ["--proto", "tcp", "--mode", "stream", "--connections", "2", "--size", "65536"],
        ["--proto", "udp", "--mode", "rr", "--connections", "2", "--size", "1024"],
      ];
      for (const shape of shapes) {
        const res = await runGenerator(loadgenArgs(built.loadgen!, server.tcpPort!, shape));
        assert.ok(res.requests > 0, `no requests for ${shape.join(" ")}`);
        assert.equal(res.errors, 0);
        assert.equal(res.mismatches, 0);
        assert.equal(res.lost, 0);
        assert.equal(res.connections_served, Number(shape[shape.indexOf("--connections") + 1]));
        assert.ok(res.p50_us > 0 && res.p50_us <= res.p99_us && res.p99_us <= res.max_us);
      }
      // Deno lets only --allow-all read /proc/PID of a child (bench/main.ts runs with -A).
      const rss = await server.peakRssKiB();
      if (rss !== null) assert.ok(rss > 0);
      const cpu = await server.cpuSeconds();
      if (cpu !== null) assert.ok(cpu >= 0);
    } finally {
      assert.equal(await server.stop(), 0, "exits 0 on SIGTERM");
    }
  },
});

Deno.test({
  name: "node peer: ready lines, TCP and UDP echo verified by loadgen",
  ignore: !HAS_CC || NODE === null,
  fn: async () => {
    const built = await native();
    const server = await startServer([NODE!, NODE_ECHO, "--host", "127.0.0.1", "--port", "0"]);
    try {
      for (const proto of ["tcp", "udp"]) {
        const res = await runGenerator(
          loadgenArgs(built.loadgen!, server.tcpPort!, ["--proto", proto, "--connections", "2"]),
        );
        assert.ok(res.requests > 0);
        assert.equal(res.mismatches, 0);
        assert.equal(res.errors, 0);
      }
    } finally {
      assert.equal(await server.stop(), 0);
    }
  },
});

Deno.test({
  name: "loadgen counts corrupted echoes as mismatches",
  ignore: !HAS_CC,
  fn: async () => {
    const built = await native();
    const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
    const sessions: Promise<void>[] = [];
    const accepting = (async () => {
      for await (const conn of listener) {
        sessions.push((async () => {
          const buf = new Uint8Array(4096);
          let n: number | null;
          let count = 0;
          try {
            while ((n = await conn.read(buf)) !== null) {
              if (++count % 50 === 0) buf[0] ^= 0xff; // corrupt one byte now and then
              let off = 0;
              while (off < n) off += await conn.write(buf.subarray(off, n));
            }
          } catch { /* reset at the end of the run */ }
          conn.close();
        })());
      }
    })();
    try {
      const res = await runGenerator(
        loadgenArgs(built.loadgen!, listener.addr.port, ["--proto", "tcp", "--size", "64"]),
      );
      assert.ok(res.requests > 0);
      assert.ok(res.mismatches > 0, "corruption must be seen");
    } finally {
      listener.close();
      await accepting.catch(() => {});
      await Promise.all(sessions);
    }
  },
});

Deno.test({
  name: "loadgen counts unanswered datagrams as lost and keeps the pipeline full",
  ignore: !HAS_CC,
  fn: async () => {
    const built = await native();
    const socket = Deno.listenDatagram({ hostname: "127.0.0.1", port: 0, transport: "udp" });
    const port = (socket.addr as Deno.NetAddr).port;
    let seen = 0;
    const serving = (async () => {
      for await (const [data, addr] of socket) {
        if (++seen % 4 !== 0) await socket.send(data, addr); // drop every 4th datagram
      }
    })();
    try {
      const res = await runGenerator(
        loadgenArgs(built.loadgen!, port, ["--proto", "udp", "--timeout-ms", "20"]),
      );
      assert.ok(res.requests > 0);
      assert.ok(res.lost > 0, "drops must be counted");
      assert.equal(res.mismatches, 0);
    } finally {
      socket.close();
      await serving.catch(() => {});
    }
  },
});

const NAIVE = new URL("./peers/naive_deno.ts", import.meta.url).pathname;

Deno.test({
  name: "naive peer: ready lines, TCP and UDP echo verified by loadgen, 65,507 B datagram whole",
  ignore: !HAS_CC,
  fn: async () => {
    const built = await native();
    const server = await startServer([
      Deno.execPath(),
      "run",
      "--allow-net",
      "--unstable-net",
      NAIVE,
    ]);
    try {
      for (const [proto, port] of [["tcp", server.tcpPort], ["udp", server.udpPort]] as const) {
        const res = await runGenerator(
          loadgenArgs(built.loadgen!, port!, ["--proto", proto, "--connections", "2"]),
        );
        assert.ok(res.requests > 0);
        assert.equal(res.mismatches, 0);
        assert.equal(res.errors, 0);
      }
      const socket = Deno.listenDatagram({ hostname: "127.0.0.1", port: 0, transport: "udp" });
      try {
        const big = new Uint8Array(65507).map((_, i) => i % 251);
        await socket.send(big, { transport: "udp", hostname: "127.0.0.1", port: server.udpPort! });
        const [back] = await socket.receive(new Uint8Array(65536));
        assert.equal(back.length, big.length);
        assert.deepEqual(back, big);
      } finally {
        socket.close();
      }
    } finally {
      assert.equal(await server.stop(), 0, "exits 0 on SIGTERM");
    }
  },
});

const BUN = (await findBun({ noInstall: true })).path;

for (const [name, runtime] of [["node", NODE], ["bun", BUN]] as const) {
  Deno.test({
    name: `${name} peer survives UDP clients that leave before their reply (ICMP refused)`,
    ignore: !HAS_CC || runtime === null,
    fn: async () => {
      if (runtime === null) return;
      const built = await native();
      const server = await startServer([runtime, NODE_ECHO, "--host", "127.0.0.1", "--port", "0"]);
      try {
        const to = { transport: "udp" as const, hostname: "127.0.0.1", port: server.udpPort! };
        for (let i = 0; i < 50; i++) {
          const s = Deno.listenDatagram({ hostname: "127.0.0.1", port: 0, transport: "udp" });
          await s.send(new Uint8Array(32), to);
          s.close(); // the reply meets a closed port: ICMP port unreachable
        }
        const res = await runGenerator(
          loadgenArgs(built.loadgen!, server.udpPort!, ["--proto", "udp"]),
        );
        assert.ok(res.requests > 0, "still echoing");
        assert.equal(server.died(), null);
      } finally {
        assert.equal(await server.stop(), 0);
      }
    },
  });
}

// A peer that serves one read, then exits 3 with a line on stderr.
const FAKE_PEER = `
const l = Deno.listen({ hostname: "127.0.0.1", port: 0 });
console.log("listening tcp 127.0.0.1:" + l.addr.port);
console.log("listening udp 127.0.0.1:" + l.addr.port);
const c = await l.accept();
await c.read(new Uint8Array(64));
console.error("fake: giving up");
Deno.exit(3);
`;

Deno.test({
  name: "a peer that dies is reported as died (exit code, last stderr), never as a rate",
  ignore: !HAS_CC,
  fn: async () => {
    const built = await native();
    const ctx: Context = {
      deno: Deno.execPath(),
      node: null,
      bun: null,
      cEcho: built.echoServer,
      loadgen: built.loadgen,
      oursExists: false,
      clientBench: false,
    };
    const cells = CELLS.filter((c) => c.id === "tcp-64x1" || c.id === "tcp-1kx50");
    const settings = { duration: 0.3, warmup: 0, runs: 1, busyPoll: false, settle: 0 };
    const samples = await runSuite({
      cells,
      rows: [
        { name: "deno", cmd: [Deno.execPath(), "eval", FAKE_PEER], gen: LOADGEN },
        { name: "c", cmd: [built.echoServer!, "--host", "127.0.0.1", "--port", "0"], gen: LOADGEN },
      ],
      modes: ["fresh", "long-lived"],
      settings,
      pin: "none",
      ctx,
    });
    const fake = samples.filter((s) => s.server === "deno");
    assert.equal(fake.length, 4);
    for (const s of fake) {
      assert.deepEqual(s.died, { code: 3, signal: null, stderr: "fake: giving up" }, s.mode);
    }
    // Long-lived: the second cell finds it already dead (it is not restarted).
    const later = fake.find((s) => s.mode === "long-lived" && s.cell === "tcp-1kx50")!;
    assert.match(later.error ?? "", /died before this measurement/);
    assert.ok(samples.filter((s) => s.server === "c").every((s) => s.result && !s.died));

    const results = {
      format: "echo-bench-results/2" as const,
      label: null,
      date: "2026-12-01T00:00:00.000Z",
      finished: "2026-12-01T00:00:05.000Z",
      machine: { nproc: 2, memoryGiB: 1, cpu: "test", os: "linux", loadavg: [0, 0, 0] },
      versions: { deno: Deno.version.deno, node: null, bun: null, cc: null },
      settings: { ...settings, pin: "none", modes: ["fresh" as const, "long-lived" as const] },
      judge: LOADGEN.name,
      cells,
      servers: [{ name: "deno", command: [], note: null }, { name: "c", command: [], note: null }],
      skipped: [],
      clientRow: false,
      samples,
    };
    const died = "died (exit code 3, last stderr: fake: giving up)";
    for (const text of [renderReport(results), renderReadmeTable(results, "x.json")]) {
      const rows = text.split("\n").filter((l) => /^\| (tcp-64x1|tcp-1kx50|TCP) /.test(l));
      assert.ok(rows.length >= 4, text);
      for (const row of rows) {
        const first = row.split("|")[2].trim();
        assert.equal(first, died, row);
      }
    }
  },
});

// Deno lets only --allow-all read /proc/PID of a child (and list /proc), as memory.ts does; the
// suite's own permissions are narrower, so there this test says so and is skipped.
const ALL_ACCESS = Deno.permissions.querySync({ name: "ffi" }).state === "granted";
if (!ALL_ACCESS) {
  console.log("skipped: memory.ts descendants test needs --allow-all (Deno guards /proc/PID)");
}

Deno.test({
  name: "memory.ts: descendants finds a grandchild, so deno task's server is measured",
  ignore: !ALL_ACCESS,
}, async () => {
  const child = new Deno.Command("sh", {
    args: ["-c", "sh -c 'echo $$; exec sleep 30' & wait"],
    stdout: "piped",
    stderr: "null",
  }).spawn();
  const reader = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
  try {
    const { value } = await reader.read();
    const grandchild = Number(value!.trim());
    try {
      assert.ok((await descendants(child.pid)).includes(grandchild));
    } finally {
      Deno.kill(grandchild, "SIGKILL");
    }
  } finally {
    await reader.cancel();
    await child.status;
  }
});

Deno.test("memory.ts: a start that failed is shown as failed, not as a figure", () => {
  const text = renderMemory([
    { method: "install", v8Flags: "", how: "", command: [], error: "deno install failed: x" },
  ], 1000);
  assert.match(text, /\| install \| none \| — \| failed: deno install failed: x \|/);
});

// npm 11's broken install, offline: `install` leaves bun/bin/bun.exe a placeholder and
// @oven/bun-linux-x64/bin/ empty; `pack` hands over a tarball whose bin/bun prints a version.
const FAKE_NPM = `#!/bin/sh
set -e
if [ "$1" = install ]; then
  m="$3/node_modules"; mkdir -p "$m/@oven/bun-linux-x64/bin" "$m/bun/bin"
  echo '{"name":"bun","version":"1.4.5"}' > "$m/bun/package.json"
  printf 'placeholder\\n' > "$m/bun/bin/bun.exe"; chmod +x "$m/bun/bin/bun.exe"; exit 0
fi
if [ "$1" = pack ]; then
  dest="$4"; work=$(mktemp -d); mkdir -p "$work/package/bin"
  printf '#!/bin/sh\\necho 1.4.5\\n' > "$work/package/bin/bun"
  tar -czf "$dest/oven-bun-linux-x64-1.4.5.tgz" -C "$work" package; rm -rf "$work"
  echo oven-bun-linux-x64-1.4.5.tgz; exit 0
fi
exit 9
`;

Deno.test({
  name: "findBun unpacks the platform package itself when npm leaves bin/ empty",
  ignore: Deno.build.os !== "linux" || Deno.build.arch !== "x86_64" ||
    Deno.env.get("BUN_BIN") !== undefined || (await which("bun")) !== null,
  fn: async () => {
    const dir = await Deno.makeTempDir({ prefix: "echo-bun-" });
    try {
      await Deno.writeTextFile(`${dir}/npm`, FAKE_NPM, { mode: 0o755 });
      const bun = await findBun({ prefix: `${dir}/prefix`, npm: `${dir}/npm` });
      assert.equal(bun.path, `${dir}/prefix/unpacked/package/bin/bun`, bun.reason);
      assert.equal(bun.version, "1.4.5");
      assert.match(bun.note ?? "", /bin\/ empty.*unpacked @oven\/bun-linux-x64@1\.4\.5 by hand/);

      // When unpacking fails too, Bun is skipped with a reason, never a throw.
      await Deno.writeTextFile(`${dir}/npm`, '#!/bin/sh\n[ "$1" = install ] && exit 0\nexit 1\n', {
        mode: 0o755,
      });
      const none = await findBun({ prefix: `${dir}/other`, npm: `${dir}/npm` });
      assert.equal(none.path, null);
      assert.match(none.reason ?? "", /left no working binary/);
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
});
