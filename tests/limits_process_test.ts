/**
 * The guards seen from outside, against server.ts running as a child process: memory stays
 * bounded under 100 clients that push and never read, 1,500 idle connections are held while a new
 * client is served, and the CLI reports drops by reason (SIGUSR2, shutdown, `--json`) and refuses
 * bad limit values with exit code 2. Memory is read from /proc/PID/status (VmRSS, VmHWM).
 *
 * @module
 */
import assert from "node:assert/strict";
import { Random, randomSeed } from "../_random.ts";
import { echoTcp } from "../tcp.ts";
import {
  childEnded,
  randomBytes,
  type ReadChild,
  readyOrKill,
  ROOT,
  spawnServer,
  test,
  watchdog,
} from "./_helpers.ts";

const SEED = Number(Deno.env.get("ECHO_TEST_SEED") ?? randomSeed());
const HOST = "127.0.0.1";
const MiB = 1024 * 1024;
const WATCHDOG_MS = 20_000;
const decoder = new TextDecoder();

const within = watchdog(WATCHDOG_MS);

/** A server.ts child with its output readers. */
interface Child extends ReadChild {
  port: number;
}

/** Starts server.ts with `args` and waits for its listening lines (text or JSON). */
async function startServer(args: string[], listeners = 2): Promise<Child> {
  const server = spawnServer(args);
  let port = 0;
  await readyOrKill(
    server,
    (async () => {
      for (let i = 0; i < listeners; i++) {
        const { input: line } = await within(
          server.stdout.waitFor(/listening/),
          "the listening line",
        );
        port = line.startsWith("{")
          ? JSON.parse(line).port
          : Number(/:(\d+)/.exec(line.split(" ").at(-1)!)![1]);
      }
    })(),
  );
  return { ...server, port };
}

/** Stops a child with SIGINT and collects the rest of its output. */
async function stopServer(
  child: Child,
): Promise<{ code: number; lines: string[]; stderr: string }> {
  child.child.kill("SIGINT");
  return await within(childEnded(child), "the server to stop");
}

/** Kills a child that may have stopped already, and waits for it. */
async function kill(child: Child): Promise<void> {
  try {
    child.child.kill();
  } catch {
    // already gone
  }
  await child.child.status;
}

/** Resident memory of a process, in MiB: now (VmRSS) and at its peak (VmHWM). */
interface Memory {
  rss: number;
  hwm: number;
}

/**
 * Reads /proc/PID/status. Deno 2 lets only --allow-all read /proc directly; under the test task's
 * narrower permissions the file is read with `cat` (--allow-run) instead.
 */
async function memoryOf(pid: number): Promise<Memory> {
  const path = `/proc/${pid}/status`;
  let text: string;
  try {
    text = await Deno.readTextFile(path);
  } catch (error) {
    if (!(error instanceof Deno.errors.NotCapable)) throw error;
    const { success, stdout } = await new Deno.Command("cat", { args: [path] }).output();
    assert.ok(success, `cannot read ${path}`);
    text = decoder.decode(stdout);
  }
  const kib = (field: string) => Number(new RegExp(`^${field}:\\s+(\\d+) kB`, "m").exec(text)![1]);
  return { rss: kib("VmRSS") / 1024, hwm: kib("VmHWM") / 1024 };
}

const HAS_PROC = await (async () => {
  if (Deno.build.os !== "linux") return false;
  try {
    await memoryOf(Deno.pid);
    return true;
  } catch {
    return false;
  }
})();

/** The open-file limit of processes started from here (`ulimit -n`), or 0 when unknown. */
const FD_LIMIT = await (async () => {
  try {
    const { stdout } = await new Deno.Command("sh", { args: ["-c", "ulimit -n"] }).output();
    const text = decoder.decode(stdout).trim();
    return text === "unlimited" ? Infinity : Number(text) || 0;
  } catch {
    return 0;
  }
})();

/**
 * Writes `data` again and again, never reading, until `total` bytes or the connection closes;
 * `reached` resolves once `mark` bytes are written (or the writing ends).
 */
function pushWithoutReading(conn: Deno.Conn, data: Uint8Array, total: number, mark: number) {
  let written = 0;
  const { promise: reached, resolve } = Promise.withResolvers<void>();
  const done = (async () => {
    try {
      while (written < total) {
        const offset = written % data.length;
        written += await conn.write(data.subarray(offset));
        if (written >= mark) resolve();
      }
    } catch {
      // closed at the end of the test while a write was pending
    } finally {
      resolve();
    }
  })();
  return { reached, done, written: () => written };
}

test(
  "back-pressure: 100 clients pushing 16 MiB each and never reading leave the server's memory bounded; another client is served",
  async () => {
    const CLIENTS = 100;
    const PUSH = 16 * MiB;
    /** Each client must have pushed this much before memory is read: 400 MiB in all. */
    const PUSHED_EACH = 4 * MiB;
    const random = new Random(SEED);
    const server = await startServer(["-p", "0", "-q"]);
    const pid = server.child.pid;
    const before = await memoryOf(pid);
    const data = randomBytes(PUSH, random); // one buffer shared by every client
    const conns: Deno.Conn[] = [];
    const pushes: ReturnType<typeof pushWithoutReading>[] = [];
    try {
      for (let i = 0; i < CLIENTS; i++) {
        const conn = await Deno.connect({ hostname: HOST, port: server.port });
        conns.push(conn);
        pushes.push(pushWithoutReading(conn, data, PUSH, PUSHED_EACH)); // not awaited: they block
      }
      await within(
        Promise.all(pushes.map((p) => p.reached)),
        `every client to push ${PUSHED_EACH / MiB} MiB`,
      );
      // Another client is served while they are stuck.
      const message = randomBytes(MiB, random);
      const start = performance.now();
      const { reply } = await echoTcp(message, { port: server.port, timeout: 10_000 });
      const rtt = performance.now() - start;
      assert.deepEqual(reply, message, `seed ${SEED}`);
      const during = await memoryOf(pid);
      const pushed = pushes.reduce((sum, p) => sum + p.written(), 0);
      const stuck = pushes.filter((p) => p.written() < PUSH).length;
      console.log(
        `server RSS ${before.rss.toFixed(1)} MiB idle; with ${CLIENTS} never-reading clients ` +
          `(${(pushed / MiB).toFixed(0)} MiB pushed, ${stuck} still blocked): ` +
          `VmRSS ${during.rss.toFixed(1)} MiB, VmHWM ${during.hwm.toFixed(1)} MiB; ` +
          `a 1 MiB echo meanwhile took ${rtt.toFixed(1)} ms`,
      );
      assert.ok(during.hwm < 400, `server peak RSS ${during.hwm.toFixed(1)} MiB`);
      assert.ok(during.hwm - before.rss < pushed / MiB / 4, "the server holds what it was sent");
    } finally {
      for (const conn of conns) conn.close();
      await Promise.all(pushes.map((p) => p.done));
      const { code } = await stopServer(server);
      assert.equal(code, 0);
    }
  },
  { ignore: !HAS_PROC },
);

test("1,500 concurrent idle connections are held, and a new client is still served", async () => {
  const IDLE = 1500;
  const BATCH = 100;
  const server = await startServer(["-p", "0", "--tcp", "--json"], 1);
  const pid = server.child.pid;
  const before = await memoryOf(pid);
  const conns: Deno.Conn[] = [];
  // Count the connection events as they come: a server whose stdout pipe is full stops serving.
  const accepted = (async () => {
    for (let seen = 0; seen < IDLE; seen++) await server.stdout.waitFor(/"event":"connection"/);
  })();
  try {
    for (let opened = 0; opened < IDLE; opened += BATCH) {
      conns.push(
        ...await Promise.all(
          Array.from({ length: BATCH }, () => Deno.connect({ hostname: HOST, port: server.port })),
        ),
      );
    }
    // The server accepted every one (the kernel would queue them in the backlog otherwise).
    await within(accepted, `${IDLE} connection events`);
    const { reply } = await echoTcp("still served", { port: server.port });
    assert.equal(decoder.decode(reply), "still served");
    server.child.kill("SIGUSR2");
    const { input: line } = await within(
      server.stdout.waitFor(/"event":"stats"/),
      "the stats line",
    );
    const { stats } = JSON.parse(line);
    assert.ok(stats.sessionsOpen >= IDLE, `${stats.sessionsOpen} sessions open`);
    assert.equal(stats.sessionsTotal, IDLE + 1);
    assert.equal(stats.dropped.limit, 0);
    const held = await memoryOf(pid);
    console.log(
      `server RSS ${before.rss.toFixed(1)} MiB idle; with ${IDLE} idle connections: ` +
        `VmRSS ${held.rss.toFixed(1)} MiB, VmHWM ${held.hwm.toFixed(1)} MiB ` +
        `(${(((held.rss - before.rss) * 1024) / IDLE).toFixed(1)} KiB each)`,
    );
  } finally {
    for (const conn of conns) conn.close();
    const { code, lines } = await stopServer(server);
    assert.equal(code, 0);
    const stopped = JSON.parse(lines.findLast((l) => l.includes('"event":"stopped"'))!);
    assert.equal(stopped.stats.sessionsOpen, 0);
  }
}, { ignore: !HAS_PROC || FD_LIMIT < 3200 });

test("cli: refusals by reason in the event lines, on SIGUSR2 (stats:) and in the stopped line", async () => {
  const server = await startServer([
    "-p",
    "0",
    "--max-connections",
    "1",
    "--idle-timeout",
    "300ms",
    "--udp-rate",
    "3",
  ]);
  const socket = Deno.listenDatagram({ hostname: HOST, port: 0, transport: "udp" });
  let held: Deno.Conn | undefined;
  try {
    held = await Deno.connect({ hostname: HOST, port: server.port });
    await within(server.stdout.waitFor(/^connection #1 from /), "the first connection");
    // Over the cap: closed at once.
    const extra = await Deno.connect({ hostname: HOST, port: server.port });
    assert.equal(await within(extra.read(new Uint8Array(1)), "the refusal"), null);
    extra.close();
    await within(server.stdout.waitFor(/^refused tcp 127\.0\.0\.1:\d+: limit$/), "refused line");
    // Over the rate: a burst of 3 is answered, the rest refused.
    const target: Deno.NetAddr = { transport: "udp", hostname: HOST, port: server.port };
    for (let i = 0; i < 8; i++) await socket.send(new Uint8Array([i]), target);
    let answered = 0;
    let refused = 0;
    while (answered + refused < 8) {
      const { input: line } = await within(
        server.stdout.waitFor(/^(datagram from |refused udp .*: rate$)/),
        "8 datagram lines",
      );
      if (line.startsWith("datagram")) answered++;
      else refused++;
    }
    assert.ok(answered >= 3 && refused >= 1, `${answered} answered, ${refused} refused`);
    // The held session is idle: closed after 300 ms.
    assert.equal(await within(held.read(new Uint8Array(1)), "the idle close"), null);
    await within(server.stdout.waitFor(/^closed #1 .* \(idle\)$/), "the idle close line");
    server.child.kill("SIGUSR2");
    const expected = `refused: limit 1, idle 1, rate ${refused}`;
    const { input: stats } = await within(server.stdout.waitFor(/^stats: /), "the stats line");
    assert.match(stats, /^stats: 1 TCP session, 8 datagrams, /);
    assert.ok(stats.endsWith(expected), stats);
    const { code, lines, stderr } = await stopServer(server);
    assert.equal(code, 0, stderr);
    const stopped = lines.findLast((l) => l.startsWith("stopped: "));
    assert.ok(stopped?.endsWith(expected), stopped);
  } finally {
    held?.close();
    socket.close();
    await kill(server);
  }
});

test("cli: SIGUSR2 sent as soon as the ready line appears prints the counters (it used to kill some servers)", async () => {
  // Its default action terminates the process, so the handler must be in place before the
  // ready line is printed. Several servers at once, since the window was a few microseconds.
  await Promise.all(Array.from({ length: 6 }, async () => {
    const child: Child = { ...spawnServer(["-p", "0"]), port: 0 };
    try {
      await within(child.stdout.waitFor(/^listening /), "the first ready line");
      child.child.kill("SIGUSR2");
      await within(child.stdout.waitFor(/^stats: 0 TCP sessions, 0 datagrams/), "the stats line");
      const { code } = await stopServer(child);
      assert.equal(code, 0);
    } finally {
      await kill(child);
    }
  }));
});

test("cli: a flood of refusals prints at most 10 lines a second per reason, then one line with the rest", async () => {
  const FLOOD = 150; // small datagrams that fit in a default socket receive buffer (212,992 bytes)
  await Promise.all([false, true].map(async (json) => {
    const server = await startServer([
      "-p",
      "0",
      "--udp",
      "--udp-rate",
      "1",
      ...(json ? ["--json"] : []),
    ], 1);
    const socket = Deno.listenDatagram({ hostname: HOST, port: 0, transport: "udp" });
    try {
      const target: Deno.NetAddr = { transport: "udp", hostname: HOST, port: server.port };
      for (let i = 0; i < FLOOD; i++) await socket.send(new Uint8Array([i]), target);
      // Every datagram is answered, or refused and shown, or refused and summed up.
      let answered = 0;
      let shown = 0;
      let summed = 0;
      const summary = json ? /"event":"suppressed"/ : /^refused (\d+) more udp datagrams: rate /;
      const single = json ? /"event":"reject"/ : /^refused udp 127\.0\.0\.1:\d+: rate$/;
      const echoed = json ? /"event":"datagram"/ : /^datagram from /;
      const any = new RegExp([summary, single, echoed].map((r) => r.source).join("|"));
      while (answered + shown + summed < FLOOD) {
        const { input: line } = await within(
          server.stdout.waitFor(any),
          `${FLOOD} datagrams accounted for (${answered}, ${shown}, ${summed} so far)`,
        );
        if (echoed.test(line)) answered++;
        else if (single.test(line)) shown++;
        else {
          summed += json ? JSON.parse(line).count : Number(summary.exec(line)![1]);
          if (json) assert.equal(JSON.parse(line).reason, "rate");
        }
      }
      assert.ok(shown <= 20, `${shown} refusal lines for one flood`);
      assert.ok(summed > 0);
      server.child.kill("SIGUSR2");
      const { input: stats } = await within(server.stdout.waitFor(/stats/), "the stats line");
      const dropped = json
        ? JSON.parse(stats).stats.dropped.rate
        : Number(/rate (\d+)$/.exec(stats)![1]);
      assert.equal(dropped, shown + summed);
      const { code } = await stopServer(server);
      assert.equal(code, 0);
    } finally {
      socket.close();
      await kill(server);
    }
  }));
});

test("cli --json: refusals are reject events, and the stats and stopped events carry dropped counters", async () => {
  const server = await startServer(["-p", "0", "--json", "--allow", "10.0.0.0/8"]);
  const socket = Deno.listenDatagram({ hostname: HOST, port: 0, transport: "udp" });
  try {
    const conn = await Deno.connect({ hostname: HOST, port: server.port });
    assert.equal(await within(conn.read(new Uint8Array(1)), "the refusal"), null);
    conn.close();
    await socket.send(new Uint8Array([1]), { transport: "udp", hostname: HOST, port: server.port });
    const rejects = [];
    for (let i = 0; i < 2; i++) {
      const { input: line } = await within(
        server.stdout.waitFor(/"event":"reject"/),
        "2 reject events",
      );
      rejects.push(JSON.parse(line));
    }
    assert.deepEqual(rejects.map((r) => [r.transport, r.reason]).sort(), [
      ["tcp", "acl"],
      ["udp", "acl"],
    ]);
    assert.ok(rejects.every((r) => r.schema === 1 && /^127\.0\.0\.1:\d+$/.test(r.remote)));
    server.child.kill("SIGUSR2");
    const { input: stats } = await within(
      server.stdout.waitFor(/"event":"stats"/),
      "the stats event",
    );
    const dropped = { limit: 0, idle: 0, acl: 2, guard: 0, rate: 0, source: 0, fd: 0, loop: 0 };
    assert.deepEqual(JSON.parse(stats).stats.dropped, dropped);
    const { code, lines } = await stopServer(server);
    assert.equal(code, 0);
    const stopped = JSON.parse(lines.findLast((l) => l.includes('"event":"stopped"'))!);
    assert.deepEqual(stopped.stats.dropped, dropped);
    assert.equal(stopped.stats.sessionsTotal, 0);
    assert.equal(stopped.stats.datagramsOut, 0);
  } finally {
    socket.close();
    await kill(server);
  }
});

test("cli: bad limit and access values exit 2 with one line naming the flag", async () => {
  const cases: [string[], RegExp][] = [
    [["--max-connections", "0"], /--max-connections must be a whole number at least 1, got "0"/],
    [["--max-connections", "lots"], /--max-connections must be a whole number/],
    [["--max-connections", "1.5"], /--max-connections must be a whole number/],
    [["--idle-timeout", "5x"], /--idle-timeout: invalid duration "5x"/],
    [["--idle-timeout=-1s"], /^server\.ts: --idle-timeout: /],
    [["--max-session-bytes", "0"], /--max-session-bytes must be a whole number at least 1/],
    [["--max-session-time", "soon"], /--max-session-time: invalid duration "soon"/],
    [["--udp-rate=-1"], /--udp-rate must be a whole number at least 0, got "-1"/],
    [["--udp-rate", "fast"], /--udp-rate must be a whole number/],
    [["--allow", "10.0.0.0/33"], /10\.0\.0\.0\/33/],
    [["--allow", "nonsense"], /nonsense/],
    [["--allow", "127.0.0.0/8", "--allow", "::1/129"], /::1\/129/],
    [["--allow"], /--allow needs a value/],
  ];
  await Promise.all(cases.map(async ([args, pattern]) => {
    const context = `server.ts ${args.join(" ")}`;
    const { code, stdout, stderr } = await new Deno.Command(Deno.execPath(), {
      args: ["run", "--allow-net", "server.ts", ...args],
      cwd: ROOT,
      stdin: "null",
    }).output();
    const text = decoder.decode(stderr);
    assert.equal(code, 2, `${context}: ${text}`);
    assert.equal(decoder.decode(stdout), "", context);
    const lines = text.trimEnd().split("\n");
    assert.equal(lines.length, 1, `${context}: ${text}`);
    assert.match(lines[0], /^server\.ts: /, context);
    assert.match(lines[0], pattern, context);
  }));
});
