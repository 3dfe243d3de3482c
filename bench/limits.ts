/**
 * Where the performance goals stop, shown the way issue 12 asks: for each cell whose goal does
 * not hold, our server next to the best peer and to the smallest Deno program on the same cell
 * (bench/peers/naive_deno.ts) — and, on TCP, node:net under Deno, the one path that can reset a
 * connection — each measured once plainly (req/s, server CPU per request split
 * into user and kernel time, context switches, peak RSS) and once under `strace -c` on every
 * thread with V8's `--trace-gc` for the Deno rows (system calls and GC pauses per 1,000
 * requests; both slow the server down, so only the per-request counts of that pass are used).
 * The same for the client's own ceiling (issue 14): client.ts and the native generator against
 * the C server. And the memory floor: peak RSS at 1,000 busy connections for the smallest Deno
 * program with 64 KiB and 1 KiB buffers, with and without `--max-semi-space-size=1`, next to ours.
 *
 * Server on CPU 0, load on CPU 1, loopback only, every run bounded. Writes
 * `bench/results/limits_DATE.json` and `.md`.
 *
 * ```sh
 * deno run -A bench/limits.ts [--runs 3] [--duration 4] [--trace-seconds 3] [--no-strace]
 * ```
 *
 * @module
 */
import { parseArgs } from "node:util";
import {
  buildNative,
  errorText,
  findBun,
  type LoadResult,
  peakRssKiB,
  processCpuTimes,
  REPO_DIR,
  runGenerator,
  startServer,
  which,
} from "./_peers.ts";
import {
  type Cell,
  CELLS,
  CLIENT_BENCH,
  type Context,
  type GeneratorEntry,
  LOADGEN,
} from "./main.ts";

const HOST = "127.0.0.1";
const SERVER_CPU = 0;
const LOAD_CPU = 1;

function cells(ids: string[]): Cell[] {
  return ids.map((id) => CELLS.find((c) => c.id === id)!);
}

/** The cells whose goals do not hold in the committed run (cells of bench/main.ts). */
export const SERVER_CELLS: readonly Cell[] = cells(["tcp-64x1", "tcp-64x1000", "udp-1kx16"]);

/** The cells where client.ts stays under 0.8× the native generator. */
export const CLIENT_CELLS: readonly Cell[] = cells(["tcp-64kx10", "tcp-64x1000", "udp-1kx16"]);

/** One measured pair (a server and what loaded it) on one cell. */
export interface LimitRow {
  /** What was measured: "server" rows judge servers, "client" rows judge generators. */
  kind: "server" | "client" | "memory";
  /** Row name. */
  name: string;
  /** Cell id. */
  cell: string;
  /** The command measured (the server, or for client rows the generator). */
  command: string[];
  /** Requests per second in the median plain pass (the other plain figures are of that pass). */
  rps: number | null;
  /** Fewest and most requests per second over the plain passes. */
  rpsRange: [number, number] | null;
  /** p99 latency in µs in the plain pass. */
  p99Us: number | null;
  /** Fewest ÷ most requests per connection in the plain pass. */
  fairness: number | null;
  /** CPU µs per request of the measured process, user time (plain pass). */
  userUsPerRequest: number | null;
  /** CPU µs per request of the measured process, kernel time (plain pass). */
  sysUsPerRequest: number | null;
  /** Context switches (all threads) per request (plain pass). */
  switchesPerRequest: number | null;
  /** Peak RSS of the measured process in MiB. */
  peakMiB: number | null;
  /** System calls per request (strace pass), and the five most frequent per 1,000 requests. */
  syscallsPerRequest: number | null;
  /** The most frequent system calls, per 1,000 requests. */
  topSyscalls: { name: string; per1k: number }[];
  /** V8 GC events and pause ms per 1,000 requests (Deno rows, trace pass). */
  gc: { scavenges: number; markCompacts: number; pauseMs: number } | null;
  /** Why a figure is missing. */
  note?: string;
}

/** The results file. */
export interface LimitsFile {
  /** Schema of this file. */
  schema: "echo-limits/1";
  /** ISO date of the run. */
  date: string;
  /** Versions of the runtimes. */
  versions: Record<string, string | null>;
  /** Settings of the run. */
  settings: { runs: number; duration: number; traceSeconds: number; strace: boolean };
  /** Every row. */
  rows: LimitRow[];
}

/** Starts a server pinned to CPU 0 (bench/_peers.ts) and keeps the stdout lines after its ready line. */
async function spawn(cmd: string[], proto: "tcp" | "udp") {
  const lines: string[] = [];
  const server = await startServer(cmd, {
    cpu: SERVER_CPU,
    expect: [proto],
    onLine: (line) => lines.push(line.trim()),
  });
  return {
    pid: server.pid,
    port: (proto === "tcp" ? server.tcpPort : server.udpPort)!,
    lines,
    stop: () => server.stop(),
  };
}

/** The process's user and kernel CPU seconds and context switches over all its threads. */
async function usage(pid: number): Promise<{ user: number; sys: number; switches: number }> {
  const times = await processCpuTimes(pid);
  if (!times) throw new Error(`cannot read /proc/${pid}/stat`);
  let switches = 0;
  for await (const task of Deno.readDir(`/proc/${pid}/task`)) {
    try {
      const s = await Deno.readTextFile(`/proc/${pid}/task/${task.name}/status`);
      for (const m of s.matchAll(/^(?:non)?voluntary_ctxt_switches:\s+(\d+)/gm)) {
        switches += Number(m[1]);
      }
    } catch { /* the thread ended */ }
  }
  return { ...times, switches };
}

async function peakMiB(pid: number): Promise<number | null> {
  const kib = await peakRssKiB(pid);
  return kib === null ? null : Math.round(kib / 102.4) / 10;
}

/** The generator's command for a cell, as the suite builds it (bench/main.ts). */
function generatorCmd(
  gen: GeneratorEntry,
  ctx: Context,
  cell: Cell,
  port: number,
  seconds: number,
) {
  return gen.command(ctx, cell, port, {
    duration: seconds,
    warmup: 1,
    runs: 1,
    busyPoll: false,
    settle: 0,
  });
}

/**
 * Runs a generator pinned to CPU 1 and returns its JSON result (client.ts --json names the fields
 * used here as loadgen does: requests, seconds, rps, p99_us).
 */
async function runLoad(cmd: string[]): Promise<{ load: LoadResult }> {
  return { load: await runGenerator(cmd, { cpu: LOAD_CPU }) };
}

/** Attaches strace -c to every thread of pid; stop() detaches and returns its table. */
async function strace(pid: number): Promise<() => Promise<Map<string, number>>> {
  const tids: string[] = [];
  for await (const t of Deno.readDir(`/proc/${pid}/task`)) tids.push(t.name);
  const file = await Deno.makeTempFile({ prefix: "limits_strace_" });
  const child = new Deno.Command("strace", {
    args: ["-c", "-qq", "-o", file, ...tids.flatMap((t) => ["-p", t])],
    stdout: "null",
    stderr: "piped",
  }).spawn();
  // strace says nothing when attached; give it the threads' attach before the load starts
  // by waiting until every thread shows a tracer in /proc (TracerPid), not by sleeping.
  for (let i = 0; i < 500; i++) {
    let attached = 0;
    for (const t of tids) {
      try {
        const s = await Deno.readTextFile(`/proc/${pid}/task/${t}/status`);
        if (!/^TracerPid:\s+0$/m.test(s)) attached++;
      } catch {
        attached++;
      }
    }
    if (attached === tids.length) break;
    await new Promise((r) => setTimeout(r, 10));
  }
  return async () => {
    child.kill("SIGINT");
    await child.output().catch(() => {});
    const text = await Deno.readTextFile(file);
    await Deno.remove(file);
    return parseStrace(text);
  };
}

/**
 * Reads the table `strace -c` prints: calls per system call.
 *
 * @example
 * ```ts
 * import { parseStrace } from "./limits.ts";
 * const text = " 60.00    0.000030           1        20         2 recvfrom\n" +
 *   "100.00    0.000050                    30         2 total\n";
 * console.log(parseStrace(text).get("recvfrom")); // 20
 * ```
 *
 * @param text What strace wrote.
 * @returns Calls by system call name (the total line left out).
 */
export function parseStrace(text: string): Map<string, number> {
  const table = new Map<string, number>();
  for (const line of text.split("\n")) {
    const f = line.trim().split(/\s+/);
    // % time, seconds, usecs/call, calls, [errors,] syscall
    if (f.length >= 5 && /^\d+(\.\d+)?$/.test(f[0]) && f[f.length - 1] !== "total") {
      table.set(f[f.length - 1], Number(f[3]));
    }
  }
  return table;
}

/**
 * Counts V8 `--trace-gc` lines stamped (ms since the isolate started) between fromMs and toMs.
 *
 * @example
 * ```ts
 * import { gcOf } from "./limits.ts";
 * const line = "[1:0x5] 1200 ms: Scavenge 3.2 (4.2) -> 3.1 (5.2) MB, pooled: 0.0 MB, " +
 *   "1.50 / 0.00 ms (average mu = 1.000, current mu = 1.000) allocation failure;";
 * console.log(gcOf([line], 1000, 2000)); // { scavenges: 1, markCompacts: 0, pauseMs: 1.5 }
 * ```
 *
 * @param lines The server's stdout lines.
 * @param fromMs Start of the window.
 * @param toMs End of the window.
 * @returns Scavenges (and minor mark-sweeps), mark-compacts, and their summed pause in ms.
 */
export function gcOf(lines: string[], fromMs: number, toMs: number): {
  scavenges: number;
  markCompacts: number;
  pauseMs: number;
} {
  let scavenges = 0, markCompacts = 0, pauseMs = 0;
  for (const line of lines) {
    const at = /\]\s+(\d+) ms: /.exec(line);
    if (!at || Number(at[1]) < fromMs || Number(at[1]) > toMs) continue;
    // "… 17 ms: Scavenge 3.2 (4.2) -> 3.1 (5.2) MB, pooled: 0.0 MB, 1.50 / 0.00 ms (…) …"
    const m =
      /ms: (Scavenge|Minor Mark-Sweep|Mark-Compact|Mark-Sweep)\b.*? MB, ([\d.]+) \/ [\d.]+ ms/
        .exec(line);
    if (!m) continue;
    if (m[1] === "Scavenge" || m[1] === "Minor Mark-Sweep") scavenges++;
    else markCompacts++;
    pauseMs += Number(m[2]);
  }
  return { scavenges, markCompacts, pauseMs };
}

function emptyRow(kind: LimitRow["kind"], name: string, cell: string, command: string[]): LimitRow {
  return {
    kind,
    name,
    cell,
    command,
    rps: null,
    rpsRange: null,
    p99Us: null,
    fairness: null,
    userUsPerRequest: null,
    sysUsPerRequest: null,
    switchesPerRequest: null,
    peakMiB: null,
    syscallsPerRequest: null,
    topSyscalls: [],
    gc: null,
  };
}

const round = (n: number, d = 2) => Math.round(n * 10 ** d) / 10 ** d;

interface MeasureSpec {
  kind: LimitRow["kind"];
  name: string;
  cell: Cell;
  /** The server command (started on CPU 0). */
  server: string[];
  /** Which process the figures are about. */
  watch: "server" | "generator";
  /** The generator command for a port and a duration. */
  generator: (port: number, seconds: number) => string[];
  /** Deno rows get a --trace-gc pass. */
  deno: boolean;
}

function rowOf(spec: MeasureSpec, settings: LimitsFile["settings"]): LimitRow {
  return emptyRow(
    spec.kind,
    spec.name,
    spec.cell.id,
    spec.watch === "server" ? spec.server : spec.generator(0, settings.duration),
  );
}

/** One plain pass with a fresh server: req/s, p99, fairness, CPU, switches, peak RSS. */
async function plainPass(spec: MeasureSpec, settings: LimitsFile["settings"]): Promise<LimitRow> {
  const pass = rowOf(spec, settings);
  const server = await spawn(spec.server, spec.cell.proto);
  try {
    if (spec.watch === "server") {
      const before = await usage(server.pid);
      const { load } = await runLoad(spec.generator(server.port, settings.duration));
      const after = await usage(server.pid);
      fill(pass, load, before, after);
      pass.peakMiB = await peakMiB(server.pid);
    } else {
      // The generator is the measured process.
      const { load, usage: u, peak } = await runWatched(
        spec.generator(server.port, settings.duration),
      );
      fill(pass, load, { user: 0, sys: 0, switches: 0 }, u);
      pass.peakMiB = peak;
    }
  } finally {
    await server.stop();
  }
  return pass;
}

/** The row of the pass with the median req/s, with the fewest–most req/s of all passes. */
function medianRow(passes: LimitRow[]): LimitRow {
  const sorted = [...passes].sort((x, y) => x.rps! - y.rps!);
  return {
    ...sorted[(sorted.length - 1) >> 1],
    rpsRange: [sorted[0].rps!, sorted[sorted.length - 1].rps!],
  };
}

/** The profile pass: strace -c on every thread, --trace-gc on the Deno rows; fills row. */
async function profilePass(
  spec: MeasureSpec,
  settings: LimitsFile["settings"],
  row: LimitRow,
): Promise<void> {
  // Profile pass: strace -c on every thread, --trace-gc on Deno rows.
  const traced = spec.deno && spec.watch === "server" ? withTraceGc(spec.server) : spec.server;
  const spawnedAt = performance.now();
  const server = await spawn(traced, spec.cell.proto);
  try {
    if (spec.watch === "server") {
      const stop = await strace(server.pid);
      const loadFrom = performance.now() - spawnedAt;
      const { load } = await runLoad(spec.generator(server.port, settings.traceSeconds));
      const loadTo = performance.now() - spawnedAt;
      const table = await stop();
      // The counts cover the warm-up second too: per request over everything served.
      const served = load.requests * (1 + 1 / load.seconds);
      perRequest(row, table, served);
      if (spec.deno) {
        // V8 prints its GC lines through C stdio, which a pipe buffers until exit: read them
        // after the server stopped, keeping those stamped (ms since start) inside the load.
        await server.stop();
        const gc = gcOf(server.lines, loadFrom, loadTo);
        const k = 1000 / served;
        row.gc = {
          scavenges: round(gc.scavenges * k, 3),
          markCompacts: round(gc.markCompacts * k, 3),
          pauseMs: round(gc.pauseMs * k, 3),
        };
      }
    } else {
      const cmd = spec.generator(server.port, settings.traceSeconds);
      const traceFile = await Deno.makeTempFile({ prefix: "limits_strace_" });
      try {
        const { load } = await runLoad(["strace", "-f", "-c", "-qq", "-o", traceFile, ...cmd]);
        const table = parseStrace(await Deno.readTextFile(traceFile));
        // Warm-up requests are sent too, so the per-request count is over every request made.
        perRequest(row, table, load.requests * (settings.traceSeconds + 1) / settings.traceSeconds);
      } finally {
        await Deno.remove(traceFile);
      }
    }
  } finally {
    await server.stop();
  }
}

function withTraceGc(cmd: string[]): string[] {
  const i = cmd.indexOf("run");
  return [...cmd.slice(0, i + 1), "--v8-flags=--trace-gc", ...cmd.slice(i + 1)];
}

function fill(
  row: LimitRow,
  load: LoadResult,
  before: { user: number; sys: number; switches: number },
  after: { user: number; sys: number; switches: number },
) {
  row.rps = round(load.rps, 0);
  row.p99Us = Number.isFinite(load.p99_us) ? round(load.p99_us, 0) : null;
  if (load.min_conn_requests !== undefined && load.max_conn_requests) {
    row.fairness = round(load.min_conn_requests / load.max_conn_requests, 2);
  }
  // The usage counters cover the warm-up second too; per request over everything served.
  const served = load.requests * (1 + 1 / load.seconds);
  row.userUsPerRequest = round((after.user - before.user) * 1e6 / served, 2);
  row.sysUsPerRequest = round((after.sys - before.sys) * 1e6 / served, 2);
  row.switchesPerRequest = round((after.switches - before.switches) / served, 3);
}

function perRequest(row: LimitRow, table: Map<string, number>, requests: number) {
  let total = 0;
  for (const n of table.values()) total += n;
  row.syscallsPerRequest = round(total / requests, 2);
  row.topSyscalls = [...table].sort((a, b) => b[1] - a[1]).slice(0, 5).map(([name, n]) => ({
    name,
    per1k: round(n * 1000 / requests, 0),
  }));
}

/**
 * Runs a generator pinned to CPU 1 and reads its CPU time and peak RSS while it runs: Deno.Command
 * does not expose a child's rusage, so its /proc is read every 20 ms until it ends (the last 20 ms
 * at most are missed: under 1% of a run).
 */
async function runWatched(cmd: string[]) {
  const child = new Deno.Command("taskset", {
    args: ["-c", String(LOAD_CPU), ...cmd],
    cwd: REPO_DIR,
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  let last = { user: 0, sys: 0, switches: 0 };
  let peak: number | null = null;
  let done = false;
  const output = child.output().finally(() => done = true);
  while (!done) {
    try {
      last = await usage(child.pid);
      peak = (await peakMiB(child.pid)) ?? peak;
    } catch { /* ended */ }
    await Promise.race([output, new Promise((r) => setTimeout(r, 20))]);
  }
  const out = await output;
  const text = new TextDecoder().decode(out.stdout).trim().split("\n").filter((l) =>
    l.startsWith("{")
  ).pop();
  if (!out.success || !text) {
    const stderr = new TextDecoder().decode(out.stderr).trim().slice(-200);
    throw new Error(`${cmd[0]} failed (code ${out.code}): ${stderr}`);
  }
  return { load: JSON.parse(text) as LoadResult, usage: last, peak };
}

function table(rows: LimitRow[], kind: LimitRow["kind"], title: string): string[] {
  const out = [`## ${title}`, ""];
  out.push(
    "| cell | row | req/s | p99 µs | min÷max | user µs/req | kernel µs/req | switches/req | peak MiB | syscalls/req | top syscalls per 1k req | GC per 1k req (scavenge / mark-compact / pause ms) |",
    "|---|---|---|---|---|---|---|---|---|---|---|---|",
  );
  const f = (n: number | null) => n === null ? "–" : String(n);
  for (const r of rows.filter((r) => r.kind === kind)) {
    out.push(
      `| ${r.cell} | ${r.name} | ${f(r.rps)}${
        r.rpsRange ? ` (${r.rpsRange[0]}–${r.rpsRange[1]})` : ""
      } | ${f(r.p99Us)} | ${f(r.fairness)} | ${f(r.userUsPerRequest)} | ${f(r.sysUsPerRequest)} | ${
        f(r.switchesPerRequest)
      } | ${f(r.peakMiB)} | ${f(r.syscallsPerRequest)} | ${
        r.topSyscalls.map((s) => `${s.name} ${s.per1k}`).join(", ") || "–"
      } | ${r.gc ? `${r.gc.scavenges} / ${r.gc.markCompacts} / ${r.gc.pauseMs}` : "–"} |`,
    );
  }
  out.push("");
  return out;
}

/** Renders the results as markdown. */
export function renderLimits(file: LimitsFile): string {
  const v = Object.entries(file.versions).map(([k, x]) => `${k} ${x ?? "–"}`).join(", ");
  return [
    `# Where the goals stop — ${file.date}`,
    "",
    `Made by \`deno run -A bench/limits.ts\` (${v}); server on CPU 0, load on CPU 1; ${file.settings.runs} plain passes of ${file.settings.duration} s after 1 s warm-up, each with a fresh server, the rows of a cell interleaved (req/s: the median pass, and the fewest–most; the other plain figures are of the median pass); strace/--trace-gc pass ${file.settings.traceSeconds} s${
      file.settings.strace ? "" : " (skipped)"
    }. CPU and switches per request are of the measured process over the warm-up and the run.`,
    "",
    ...table(
      file.rows,
      "server",
      "Servers on the cells whose goals do not hold (judge: native loadgen)",
    ),
    ...table(file.rows, "memory", "Memory floor: 1,000 busy connections, 64 B request/response"),
    ...table(file.rows, "client", "The client's own ceiling: generators against the C server"),
  ].join("\n");
}

const USAGE =
  "usage: deno run -A bench/limits.ts [--runs 3] [--duration 4] [--trace-seconds 3] [--no-strace]";

/**
 * Reads the command line: whole numbers of runs and seconds, at least 1 each.
 *
 * @example
 * ```ts
 * import { parseLimitsArgs } from "./limits.ts";
 * console.log(parseLimitsArgs(["--runs", "1"])); // { runs: 1, duration: 4, traceSeconds: 3, strace: true, help: false }
 * ```
 *
 * @param argv The arguments.
 * @returns The settings, with `strace` as asked (main() turns it off when strace is missing).
 * @throws {RangeError} On an unknown flag or a value that is not a whole number of at least 1.
 */
export function parseLimitsArgs(
  argv: string[],
): LimitsFile["settings"] & { help: boolean } {
  let values;
  try {
    ({ values } = parseArgs({
      args: argv,
      options: {
        runs: { type: "string", default: "3" },
        duration: { type: "string", default: "4" },
        "trace-seconds": { type: "string", default: "3" },
        "no-strace": { type: "boolean", default: false },
        help: { type: "boolean", short: "h", default: false },
      },
    }));
  } catch (err) {
    throw new RangeError((err as Error).message);
  }
  const whole = (flag: string, text: string) => {
    const n = Number(text);
    if (!/^\d+$/.test(text) || n < 1) {
      throw new RangeError(`--${flag} must be a whole number of at least 1, got "${text}"`);
    }
    return n;
  };
  return {
    runs: whole("runs", values.runs),
    duration: whole("duration", values.duration),
    traceSeconds: whole("trace-seconds", values["trace-seconds"]),
    strace: !values["no-strace"],
    help: values.help,
  };
}

async function main(argv: string[]): Promise<number> {
  let args;
  try {
    args = parseLimitsArgs(argv);
  } catch (err) {
    console.error(`limits: ${(err as Error).message}\n${USAGE}`);
    return 2;
  }
  if (args.help) {
    console.log(USAGE);
    return 0;
  }
  const settings = {
    runs: args.runs,
    duration: args.duration,
    traceSeconds: args.traceSeconds,
    strace: args.strace && (await which("strace")) !== null,
  };
  if (args.strace && !settings.strace) {
    console.error("limits: strace is not installed: no profile pass");
  }
  const native = await buildNative();
  if (!native.loadgen || !native.echoServer) {
    console.error(`limits: ${native.reason}`);
    return 1;
  }
  const bun = await findBun({ noInstall: true });
  const deno = Deno.execPath();
  const naive = `${REPO_DIR}/bench/peers/naive_deno.ts`;
  const nodeEcho = `${REPO_DIR}/bench/peers/node_echo.mjs`;
  const oursWith = (extra: string[] = []) => [
    deno,
    "run",
    "--allow-net",
    ...extra,
    `${REPO_DIR}/server.ts`,
    "--host",
    HOST,
    "--port",
    "0",
    "--quiet",
  ];
  const ours = oursWith();
  const naiveCmd = (
    extra: string[] = [],
  ) => [deno, "run", "--allow-net", "--unstable-net", ...extra, naive];
  const c = [native.echoServer, "--host", HOST, "--port", "0"];
  const ctx: Context = {
    deno,
    node: null,
    bun: bun.path,
    cEcho: native.echoServer,
    loadgen: native.loadgen,
    oursExists: true,
    clientBench: true,
  };
  const specs: MeasureSpec[] = [];
  for (const cell of SERVER_CELLS) {
    const gen = (port: number, s: number) => generatorCmd(LOADGEN, ctx, cell, port, s);
    specs.push({
      kind: "server",
      name: "ours",
      cell,
      server: ours,
      watch: "server",
      generator: gen,
      deno: true,
    });
    specs.push({
      kind: "server",
      name: "naive Deno",
      cell,
      server: naiveCmd(),
      watch: "server",
      generator: gen,
      deno: true,
    });
    if (cell.proto === "tcp") {
      // The path that can reset a connection (node:net's resetAndDestroy, issue 10 #3): the
      // same node_echo.mjs as Bun's row, under Deno.
      specs.push({
        kind: "server",
        name: "node:net under Deno",
        cell,
        server: [deno, "run", "--allow-net", nodeEcho, "--host", HOST, "--port", "0", "--tcp"],
        watch: "server",
        generator: gen,
        deno: true,
      });
    }
    if (bun.path) {
      specs.push({
        kind: "server",
        name: "Bun",
        cell,
        server: [bun.path, nodeEcho, "--host", HOST, "--port", "0"],
        watch: "server",
        generator: gen,
        deno: false,
      });
    }
    specs.push({
      kind: "server",
      name: "C",
      cell,
      server: c,
      watch: "server",
      generator: gen,
      deno: false,
    });
  }
  const mem = SERVER_CELLS[1];
  const memGen = (port: number, s: number) => generatorCmd(LOADGEN, ctx, mem, port, s);
  const semi = ["--v8-flags=--max-semi-space-size=1"];
  const oursSemi = oursWith(semi);
  for (
    const [name, server] of [
      ["ours", ours],
      ["ours, --max-semi-space-size=1", oursSemi],
      ["naive Deno, 64 KiB buffers", naiveCmd()],
      ["naive Deno, 1 KiB buffers", [...naiveCmd(), "--buffer", "1024"]],
      ["naive Deno, 1 KiB buffers, --max-semi-space-size=1", [
        ...naiveCmd(semi),
        "--buffer",
        "1024",
      ]],
      ...(bun.path ? [["Bun", [bun.path, nodeEcho, "--host", HOST, "--port", "0"]]] : []),
    ] as [string, string[]][]
  ) {
    specs.push({
      kind: "memory",
      name,
      cell: mem,
      server,
      watch: "server",
      generator: memGen,
      deno: false,
    });
  }
  for (const cell of CLIENT_CELLS) {
    specs.push({
      kind: "client",
      name: "loadgen (C)",
      cell,
      server: c,
      watch: "generator",
      generator: (p, s) => generatorCmd(LOADGEN, ctx, cell, p, s),
      deno: false,
    });
    specs.push({
      kind: "client",
      name: "client.ts",
      cell,
      server: c,
      watch: "generator",
      generator: (p, s) => generatorCmd(CLIENT_BENCH, ctx, cell, p, s),
      deno: false,
    });
  }
  // Interleaved: each run measures every row of a cell in turn, so a noisy spell of the shared
  // machine falls on all of them, not on one.
  const rows: LimitRow[] = [];
  const groups = new Map<string, MeasureSpec[]>();
  for (const spec of specs) {
    const key = `${spec.kind} ${spec.cell.id}`;
    groups.set(key, [...(groups.get(key) ?? []), spec]);
  }
  for (const [key, group] of groups) {
    const passes = new Map<MeasureSpec, LimitRow[]>(group.map((g) => [g, []]));
    const failed = new Map<MeasureSpec, string>();
    for (let run = 1; run <= settings.runs; run++) {
      for (const spec of group) {
        if (failed.has(spec)) continue;
        console.error(`limits: ${key} ${spec.name}, run ${run} of ${settings.runs}…`);
        try {
          passes.get(spec)!.push(await plainPass(spec, settings));
        } catch (err) {
          failed.set(spec, errorText(err));
          console.error(`limits:   failed: ${errorText(err)}`);
        }
      }
    }
    for (const spec of group) {
      let row: LimitRow;
      if (failed.has(spec)) {
        row = rowOf(spec, settings);
        row.note = failed.get(spec);
      } else {
        row = medianRow(passes.get(spec)!);
        // Memory rows need no profile pass.
        if (settings.strace && spec.kind !== "memory") {
          console.error(`limits: ${key} ${spec.name}, strace and --trace-gc…`);
          try {
            await profilePass(spec, settings, row);
          } catch (err) {
            row.note = `profile pass failed: ${errorText(err)}`;
          }
        }
      }
      rows.push(row);
    }
  }
  const date = new Date().toISOString().replace(/\.\d+Z$/, "Z");
  const file: LimitsFile = {
    schema: "echo-limits/1",
    date,
    versions: { deno: Deno.version.deno, v8: Deno.version.v8, bun: bun.version ?? null },
    settings,
    rows,
  };
  const stem = `${REPO_DIR}/bench/results/limits_${date.replaceAll(":", "-")}`;
  await Deno.writeTextFile(`${stem}.json`, JSON.stringify(file, null, 2) + "\n");
  await Deno.writeTextFile(`${stem}.md`, renderLimits(file) + "\n");
  console.log(renderLimits(file));
  console.error(`limits: wrote ${stem}.json and .md`);
  return 0;
}

if (import.meta.main) Deno.exit(await main(Deno.args));
