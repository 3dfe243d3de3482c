/**
 * The echo benchmark suite: our Deno server against Node, Bun and a C epoll ceiling, judged by a
 * native load generator so the ratios do not depend on our own client's speed.
 *
 * ```sh
 * deno run -A bench/main.ts [--quick] [--duration 5] [--warmup 1] [--runs 3]
 *   [--mode both|fresh|long-lived] [--only tcp-64x1,...] [--servers deno,naive,node,bun,c]
 *   [--label TEXT] [--out bench/results] [--no-save] [--json FILE] [--pin split|same|none]
 *   [--no-install]
 * ```
 *
 * The markdown report goes to stdout, progress to stderr; the results (every sample) and the
 * report are saved as `bench/results/DATE.json` and `DATE.md`. See bench/README.md.
 *
 * @module
 */
import { parseArgs } from "node:util";
import {
  buildNative,
  type BunInstall,
  canPin,
  errorText,
  findBun,
  machineCpu,
  peakRssKiB,
  REPO_DIR,
  runCommand,
  runGenerator,
  type ServerDeath,
  type ServerHandle,
  startServer,
  which,
} from "./_peers.ts";
import { renderReport } from "./_report.ts";
import {
  type BenchMode,
  type Cell,
  type CpuUse,
  fmtMiB,
  fmtRate,
  fmtUs,
  type Machine,
  metric,
  MODES,
  type ResultsFile,
  type Sample,
  summarize,
  unavailable,
} from "./_results.ts";

export type { BenchMode, Cell, ResultsFile } from "./_results.ts";
export { median } from "./_results.ts";

/**
 * The matrix, in run order.
 *
 * @example
 * ```ts
 * import { CELLS } from "./main.ts";
 * console.log(CELLS.map((c) => c.id).join(","));
 * ```
 */
export const CELLS: readonly Cell[] = [
  {
    id: "tcp-64x1",
    proto: "tcp",
    mode: "rr",
    size: 64,
    connections: 1,
    pipeline: 1,
    about: "per-message cost and latency: one connection, one 64 B message in flight",
  },
  {
    id: "tcp-1kx50",
    proto: "tcp",
    mode: "rr",
    size: 1024,
    connections: 50,
    pipeline: 1,
    about: "a busy server: 50 connections of 1 KiB request/response",
  },
  {
    id: "tcp-64kx10",
    proto: "tcp",
    mode: "rr",
    size: 65536,
    connections: 10,
    pipeline: 1,
    about: "large messages: copying and backpressure, 10 connections of 64 KiB",
  },
  {
    id: "tcp-64x1000",
    proto: "tcp",
    mode: "rr",
    size: 64,
    connections: 1000,
    pipeline: 1,
    about: "many connections: per-connection overhead, fairness, tail latency",
  },
  {
    id: "tcp-stream-x4",
    proto: "tcp",
    mode: "stream",
    size: 65536,
    connections: 4,
    pipeline: 4,
    about: "bulk throughput: 4 connections each keeping 256 KiB in flight (MB/s)",
  },
  {
    id: "udp-64x1",
    proto: "udp",
    mode: "rr",
    size: 64,
    connections: 1,
    pipeline: 1,
    about: "per-datagram cost and latency: one socket, one 64 B datagram in flight",
  },
  {
    id: "udp-1kx16",
    proto: "udp",
    mode: "rr",
    size: 1024,
    connections: 16,
    pipeline: 1,
    about: "a busy UDP server: 16 sockets of 1 KiB datagrams",
  },
];

/** Everything a server or generator command needs to know. */
export interface Context {
  /** Path to the deno binary running this suite. */
  deno: string;
  /** Path to node, or null. */
  node: string | null;
  /** Path to bun, or null. */
  bun: string | null;
  /** Path to the C echo server, or null. */
  cEcho: string | null;
  /** Path to the C load generator, or null. */
  loadgen: string | null;
  /** Whether /work/main/server.ts (our server) exists. */
  oursExists: boolean;
  /** Whether client.ts supports `--bench`. */
  clientBench: boolean;
}

/** A server row: how to start it, or why it cannot run here. */
export interface ServerEntry {
  /** Name used by `--servers` and in the tables. */
  name: string;
  /** The command that serves TCP and UDP echo on 127.0.0.1 with port 0, or a reason to skip. */
  command(ctx: Context): { cmd: string[]; note?: string } | { skip: string };
}

const SERVER_TS = `${REPO_DIR}/server.ts`;
const CLIENT_TS = `${REPO_DIR}/client.ts`;
const NODE_ECHO = `${REPO_DIR}/bench/peers/node_echo.mjs`;
const NAIVE_DENO = `${REPO_DIR}/bench/peers/naive_deno.ts`;
const HOST = "127.0.0.1";

/**
 * The servers. `deno` is ours and the base of every ratio; until server.ts exists the Node peer
 * stands in for it (marked in the report) so the harness can be exercised. `naive` is the
 * reference row: `peers/naive_deno.ts`, one read/write loop per connection and one receive/send
 * loop for UDP on the same Deno, the floor any design must clear.
 *
 * @example
 * ```ts
 * import { SERVERS } from "./main.ts";
 * console.log(SERVERS.map((s) => s.name)); // ["deno", "naive", "node", "bun", "c"]
 * ```
 */
export const SERVERS: readonly ServerEntry[] = [
  {
    name: "deno",
    command: (ctx) => {
      if (ctx.oursExists) {
        return {
          cmd: [
            ctx.deno,
            "run",
            "--allow-net",
            SERVER_TS,
            "--host",
            HOST,
            "--port",
            "0",
            "--quiet",
          ],
        };
      }
      if (!ctx.node) return { skip: "server.ts does not exist yet and node is missing" };
      return {
        cmd: [ctx.node, NODE_ECHO, "--host", HOST, "--port", "0"],
        note: "STAND-IN: server.ts does not exist yet, so node_echo.mjs under Node plays ours",
      };
    },
  },
  {
    name: "naive",
    command: (ctx) => ({
      cmd: [ctx.deno, "run", "--allow-net", "--unstable-net", NAIVE_DENO],
    }),
  },
  {
    name: "node",
    command: (ctx) =>
      ctx.node
        ? { cmd: [ctx.node, NODE_ECHO, "--host", HOST, "--port", "0"] }
        : { skip: "node is not on PATH" },
  },
  {
    name: "bun",
    command: (ctx) =>
      ctx.bun
        ? { cmd: [ctx.bun, NODE_ECHO, "--host", HOST, "--port", "0"] }
        : { skip: "bun is not available" },
  },
  {
    name: "c",
    command: (ctx) =>
      ctx.cEcho
        ? { cmd: [ctx.cEcho, "--host", HOST, "--port", "0"] }
        : { skip: "the C echo server was not built (no cc?)" },
  },
];

/** Run settings. */
export interface Settings {
  /** Measured seconds per cell. */
  duration: number;
  /** Unmeasured warm-up seconds per cell. */
  warmup: number;
  /** Interleaved runs; medians are taken across them. */
  runs: number;
  /** Let the native generator spin instead of sleeping (only with its own CPU). */
  busyPoll: boolean;
  /** Before each measurement wait up to this many seconds for other processes to go quiet. */
  settle: number;
}

/** A load generator row: how to drive one cell against a port. */
export interface GeneratorEntry {
  /** Name in the report. */
  name: string;
  /** Whether it can run here, or why not. */
  available(ctx: Context): true | string;
  /** The command for one cell. */
  command(ctx: Context, cell: Cell, port: number, settings: Settings): string[];
}

/**
 * The judge: the native load generator every server is measured with.
 *
 * @example
 * ```ts
 * import { CELLS, LOADGEN } from "./main.ts";
 * console.log(LOADGEN.name, CELLS.length);
 * ```
 */
export const LOADGEN: GeneratorEntry = {
  name: "loadgen (C)",
  available: (ctx) => ctx.loadgen ? true : "the C load generator was not built (no cc?)",
  command: (ctx, cell, port, s) => [
    ctx.loadgen!,
    ...cellFlags(cell, port),
    "--duration",
    String(s.duration),
    "--warmup",
    String(s.warmup),
    ...(s.busyPoll ? ["--busy-poll", "1"] : []),
  ],
};

/**
 * The hook for the row "client.ts (our generator) vs C server": runs
 * `deno run --allow-net client.ts --bench --json ...` against the C server once client.ts has a
 * `--bench` mode, and is skipped until then. The cell is given in client.ts's own flags (see
 * `clientFlags`); durations use the project's grammar (`5s`).
 *
 * @example
 * ```ts
 * import { CLIENT_BENCH } from "./main.ts";
 * console.log(CLIENT_BENCH.name);
 * ```
 */
export const CLIENT_BENCH: GeneratorEntry = {
  name: "client.ts",
  available: (ctx) => ctx.clientBench ? true : "client.ts does not support --bench yet",
  command: (ctx, cell, port, s) => [
    ctx.deno,
    "run",
    "--allow-net",
    CLIENT_TS,
    "--bench",
    "--json",
    ...clientFlags(cell, port),
    "--duration",
    `${s.duration}s`,
    "--warmup",
    `${s.warmup}s`,
  ],
};

/**
 * The cell in client.ts's own flags: `--udp` and `--stream` instead of loadgen's `--proto` and
 * `--mode`, and loadgen's 200 ms UDP loss timeout so both count a datagram lost alike.
 */
function clientFlags(cell: Cell, port: number): string[] {
  return [
    "--host",
    HOST,
    "--port",
    String(port),
    ...(cell.proto === "udp" ? ["--udp", "--timeout", "200ms"] : []),
    ...(cell.mode === "stream" ? ["--stream"] : []),
    "--connections",
    String(cell.connections),
    "--size",
    String(cell.size),
    "--pipeline",
    String(cell.pipeline),
  ];
}

function cellFlags(cell: Cell, port: number): string[] {
  return [
    "--host",
    HOST,
    "--port",
    String(port),
    "--proto",
    cell.proto,
    "--mode",
    cell.mode,
    "--connections",
    String(cell.connections),
    "--size",
    String(cell.size),
    "--pipeline",
    String(cell.pipeline),
  ];
}

/** How the server and the load generator are placed on CPUs. */
export type PinMode = "split" | "same" | "none";

/** Parsed command line. */
export interface BenchArgs extends Settings {
  /** Cells to run. */
  cells: Cell[];
  /** Server names to run. */
  servers: string[];
  /** Modes to run, interleaved: fresh servers, long-lived servers, or both. */
  modes: BenchMode[];
  /** Where to write the full results as JSON too, if anywhere. */
  json: string | null;
  /** Directory for `DATE.json` and `DATE.md`, or null with `--no-save`. */
  out: string | null;
  /** A label saved with the results and repeated by the README table (e.g. "smoke run"). */
  label: string | null;
  /**
   * CPU pinning with taskset: `split` puts the server on CPU 0 and the generator on CPU 1; `same`
   * puts both on CPU 0 (per-message CPU cost, no cross-CPU wake-ups); `none` leaves it to Linux.
   */
  pin: PinMode;
  /** Do not install Bun when it is missing. */
  noInstall: boolean;
  /** Print help and exit. */
  help: boolean;
}

/** Where results are saved unless `--out` or `--no-save` says otherwise. */
export const RESULTS_DIR = `${REPO_DIR}/bench/results`;

function seconds(text: string, flag: string): number {
  const match = /^(\d+(?:\.\d+)?|\.\d+)(ms|s)?$/.exec(text.trim());
  const value = match ? Number(match[1]) / (match[2] === "ms" ? 1000 : 1) : NaN;
  if (!Number.isFinite(value) || value < 0 || value > 3600) {
    throw new RangeError(`${flag} must be seconds in 0..3600 (e.g. 5, 0.5, 250ms), got "${text}"`);
  }
  return value;
}

/**
 * Parses the suite's command line. `--quick` means 1 s per cell, 0.25 s warm-up, 1 run, unless
 * those are given too. Durations are seconds (`5`, `0.5`) or `250ms`. `--long-lived` is
 * `--mode long-lived`; the default is both modes.
 *
 * @example
 * ```ts
 * import { parseBenchArgs } from "./main.ts";
 * const args = parseBenchArgs(["--quick", "--only", "tcp-64x1", "--servers", "node,c"]);
 * console.log(args.duration, args.runs, args.cells.length, args.servers); // 1 1 1 ["node", "c"]
 * ```
 *
 * @param argv The arguments after the script name.
 * @returns The settings.
 * @throws {RangeError} On unknown cells, servers, modes, or out-of-range numbers.
 */
export function parseBenchArgs(argv: string[]): BenchArgs {
  const { values } = parseArgs({
    args: argv,
    options: {
      quick: { type: "boolean", default: false },
      duration: { type: "string" },
      warmup: { type: "string" },
      runs: { type: "string" },
      only: { type: "string" },
      servers: { type: "string" },
      mode: { type: "string" },
      "long-lived": { type: "boolean", default: false },
      json: { type: "string" },
      out: { type: "string" },
      "no-save": { type: "boolean", default: false },
      label: { type: "string" },
      pin: { type: "string" },
      "no-pin": { type: "boolean", default: false },
      "no-install": { type: "boolean", default: false },
      "busy-poll": { type: "boolean", default: false },
      settle: { type: "string" },
      help: { type: "boolean", short: "h", default: false },
    },
    strict: true,
    allowPositionals: false,
  });
  const quick = values.quick === true;
  const duration = values.duration ? seconds(values.duration, "--duration") : quick ? 1 : 5;
  if (duration < 0.05) throw new RangeError(`--duration must be at least 0.05 s, got ${duration}`);
  const warmup = values.warmup ? seconds(values.warmup, "--warmup") : quick ? 0.25 : 1;
  const runs = values.runs ? Number(values.runs) : quick ? 1 : 3;
  if (!Number.isInteger(runs) || runs < 1 || runs > 50) {
    throw new RangeError(`--runs must be an integer in 1..50, got "${values.runs}"`);
  }
  const pin = values["no-pin"] ? "none" : (values.pin ?? "split");
  if (pin !== "split" && pin !== "same" && pin !== "none") {
    throw new RangeError(`--pin must be split, same or none, got "${pin}"`);
  }
  const busyPoll = values["busy-poll"] === true;
  if (busyPoll && pin !== "split") {
    throw new RangeError(
      `--busy-poll needs --pin split (the generator must have a CPU of its own)`,
    );
  }
  if (values["long-lived"] && values.mode !== undefined && values.mode !== "long-lived") {
    throw new RangeError(`--long-lived conflicts with --mode ${values.mode}`);
  }
  const mode = values["long-lived"] ? "long-lived" : (values.mode ?? "both");
  if (mode !== "both" && mode !== "fresh" && mode !== "long-lived") {
    throw new RangeError(`--mode must be both, fresh or long-lived, got "${mode}"`);
  }
  if (values["no-save"] && values.out !== undefined) {
    throw new RangeError("--no-save conflicts with --out");
  }
  const list = (text: string | undefined) =>
    (text ?? "").split(",").map((s) => s.trim()).filter((s) => s.length > 0);
  const only = list(values.only);
  for (const id of only) {
    if (!CELLS.some((c) => c.id === id)) {
      throw new RangeError(
        `unknown cell "${id}" in --only; cells: ${CELLS.map((c) => c.id).join(", ")}`,
      );
    }
  }
  const cells = only.length ? CELLS.filter((c) => only.includes(c.id)) : [...CELLS];
  const names = SERVERS.map((s) => s.name);
  const servers = list(values.servers);
  for (const name of servers) {
    if (!names.includes(name)) {
      throw new RangeError(`unknown server "${name}" in --servers; servers: ${names.join(", ")}`);
    }
  }
  return {
    duration,
    warmup,
    runs,
    cells,
    servers: servers.length ? names.filter((n) => servers.includes(n)) : names,
    modes: mode === "both" ? [...MODES] : [mode],
    json: values.json ?? null,
    out: values["no-save"] ? null : (values.out ?? RESULTS_DIR),
    label: values.label ?? null,
    pin,
    noInstall: values["no-install"] === true,
    busyPoll,
    settle: values.settle ? seconds(values.settle, "--settle") : 0,
    help: values.help === true,
  };
}

const USAGE = `usage: deno run -A bench/main.ts [options]
  --quick                1 s per cell, 0.25 s warm-up, 1 run (unless given explicitly)
  --duration SECONDS     measured time per cell (default 5; 250ms also accepted)
  --warmup SECONDS       unmeasured warm-up per cell (default 1)
  --runs N               interleaved runs; medians and min–max across them (default 3)
  --mode MODE            both (default): every measurement in both modes, interleaved;
                         fresh: a new server per measurement; long-lived: each server started
                         once and kept through every cell and run (as deployed)
  --long-lived           same as --mode long-lived
  --only IDS             comma-separated cells: ${CELLS.map((c) => c.id).join(",")}
  --servers NAMES        comma-separated servers: ${SERVERS.map((s) => s.name).join(",")}
  --label TEXT           saved with the results; the README table repeats it
  --out DIR              save DATE.json and DATE.md there (default bench/results)
  --no-save              do not save them
  --json FILE            also write the results JSON to FILE
  --pin split|same|none  split (default): server on CPU 0, generator on CPU 1 (taskset);
                         same: both on CPU 0; none: no pinning
  --no-pin               same as --pin none
  --busy-poll            the native generator spins instead of sleeping (needs --pin split)
  --settle SECONDS       before each measurement wait up to this long for the machine to be
                         quiet (other processes under 0.15 cores); default 0
  --no-install           do not install Bun from npm when it is missing`;

const live = new Set<ServerHandle>();

function progress(text: string): void {
  console.error(text);
}

/**
 * Waits, up to `maxSeconds`, for a 250 ms window in which the machine's CPUs were busy for less
 * than 0.15 cores in total; returns the last window's busy cores (null without /proc/stat).
 */
async function settle(maxSeconds: number): Promise<number | null> {
  const deadline = performance.now() + maxSeconds * 1000;
  for (;;) {
    const a = await machineCpu();
    const t = performance.now();
    await new Promise((resolve) => setTimeout(resolve, 250)); // a measuring window, not a wait-for
    const b = await machineCpu();
    if (!a || !b) return null;
    const busy = (b.busy - a.busy) / ((performance.now() - t) / 1000);
    if (busy < 0.15 || performance.now() >= deadline) return busy;
  }
}

/** A row of the run: a server and the generator that judges it. */
export interface SuiteRow {
  /** Name in the tables (`client.ts` for our generator against the C server). */
  name: string;
  /** The server command. */
  cmd: string[];
  /** The generator. */
  gen: GeneratorEntry;
}

/** Everything {@linkcode runSuite} runs. */
export interface SuitePlan {
  /** Cells, in order. */
  cells: Cell[];
  /** Rows; rotated within each cell and run. */
  rows: SuiteRow[];
  /** Modes, interleaved per measurement. */
  modes: BenchMode[];
  /** Durations and the rest. */
  settings: Settings;
  /** CPU placement. */
  pin: PinMode;
  /** Paths of the programs. */
  ctx: Context;
  /** Called after every measurement. */
  onSample?: (sample: Sample, cell: Cell) => void;
}

/** A long-lived server, or why it could not be started. */
type Kept = { handle: ServerHandle } | { error: string };

/** Waits up to 1 s for a server whose generator failed to finish exiting, if it is exiting. */
async function deathOf(handle: ServerHandle): Promise<ServerDeath | null> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  await Promise.race([
    handle.exited,
    new Promise((resolve) => timer = setTimeout(resolve, 1000)),
  ]);
  clearTimeout(timer);
  return handle.died();
}

async function measure(
  row: SuiteRow,
  cell: Cell,
  where: { mode: BenchMode; run: number; kept?: Kept },
  plan: SuitePlan,
): Promise<Sample> {
  const { settings, pin } = plan;
  const base: Sample = { mode: where.mode, cell: cell.id, server: row.name, run: where.run };
  let handle: ServerHandle | null = null;
  try {
    if (where.kept) {
      if ("error" in where.kept) return { ...base, error: where.kept.error };
      handle = where.kept.handle;
      const gone = handle.died();
      if (gone) return { ...base, died: gone, error: "it died before this measurement" };
    } else {
      handle = await startServer(row.cmd, {
        cpu: pin === "none" ? undefined : 0,
        timeoutMs: 30_000,
      });
      live.add(handle);
    }
    const port = cell.proto === "tcp" ? handle.tcpPort : handle.udpPort;
    if (port === null) throw new Error(`server printed no ${cell.proto} port`);
    const quiet = settings.settle > 0 ? await settle(settings.settle) : null;
    const server0 = await handle.cpuSeconds();
    const machine0 = await machineCpu();
    const t0 = performance.now();
    const result = await runGenerator(row.gen.command(plan.ctx, cell, port, settings), {
      cpu: pin === "none" ? undefined : pin === "same" ? 0 : 1,
      timeoutMs: (settings.warmup + settings.duration) * 1000 + 30_000,
    });
    const wall = (performance.now() - t0) / 1000;
    const server1 = await handle.cpuSeconds();
    const machine1 = await machineCpu();
    const rssKiB = await handle.peakRssKiB();
    const rssNowKiB = await handle.rssKiB();
    const cpu: CpuUse = {};
    if (quiet !== null) cpu.busyBeforeCores = quiet;
    if (server0 !== null && server1 !== null) cpu.serverCores = (server1 - server0) / wall;
    if (typeof result.cpu_s === "number") cpu.generatorCores = result.cpu_s / wall;
    if (machine0 && machine1) {
      cpu.stealCores = (machine1.steal - machine0.steal) / wall;
      const busy = (machine1.busy - machine0.busy) / wall;
      if (cpu.serverCores !== undefined && cpu.generatorCores !== undefined) {
        cpu.otherCores = Math.max(0, busy - cpu.serverCores - cpu.generatorCores);
      }
    }
    const rate = result.rps;
    if (cpu.serverCores !== undefined && rate > 0) {
      cpu.serverUsPerRequest = cpu.serverCores * 1e6 / rate;
    }
    // A server that failed every client may be exiting right now: give its exit a moment to land.
    const gone = result.requests === 0 || result.errors >= cell.connections
      ? await deathOf(handle)
      : handle.died();
    return { ...base, result, rssKiB, rssNowKiB, cpu, ...(gone ? { died: gone } : {}) };
  } catch (err) {
    const gone = handle ? await deathOf(handle) : null;
    if (gone) return { ...base, died: gone, error: errorText(err) };
    const tail = handle?.stderrTail().trim().split("\n").slice(-1)[0];
    return { ...base, error: errorText(err) + (tail ? ` (server stderr: ${tail})` : "") };
  } finally {
    if (handle && !where.kept) {
      await handle.stop();
      live.delete(handle);
    }
  }
}

/**
 * Runs the plan and returns every sample. Runs are interleaved: each run goes through every cell,
 * each cell through every row (each run and cell starting with a different row), and each row
 * through the modes (alternating which comes first). In long-lived mode every row's server is
 * started once, before the first measurement, and kept to the end; a server that dies is not
 * restarted: its later samples say it died.
 *
 * @example
 * ```ts ignore
 * import { runSuite } from "./main.ts";
 * const samples = await runSuite(plan);
 * ```
 *
 * @param plan What to run.
 * @returns The samples, in the order they were taken.
 */
export async function runSuite(plan: SuitePlan): Promise<Sample[]> {
  const samples: Sample[] = [];
  const kept = new Map<string, Kept>();
  try {
    if (plan.modes.includes("long-lived")) {
      for (const row of plan.rows) {
        try {
          const handle = await startServer(row.cmd, {
            cpu: plan.pin === "none" ? undefined : 0,
            timeoutMs: 30_000,
          });
          live.add(handle);
          kept.set(row.name, { handle });
        } catch (err) {
          kept.set(row.name, { error: `did not start: ${errorText(err)}` });
        }
      }
    }
    for (let run = 0; run < plan.settings.runs; run++) {
      for (const [ci, cell] of plan.cells.entries()) {
        const rows = plan.rows.map((_, i) => plan.rows[(i + run + ci) % plan.rows.length]);
        for (const row of rows) {
          const modes = run % 2 ? [...plan.modes].reverse() : plan.modes;
          for (const mode of modes) {
            const sample = await measure(row, cell, {
              mode,
              run,
              kept: mode === "long-lived" ? kept.get(row.name) : undefined,
            }, plan);
            samples.push(sample);
            plan.onSample?.(sample, cell);
          }
        }
      }
    }
  } finally {
    for (const k of kept.values()) {
      if ("handle" in k) {
        await k.handle.stop();
        live.delete(k.handle);
      }
    }
  }
  return samples;
}

async function machine(): Promise<Machine> {
  let cpu = "unknown";
  try {
    const info = await Deno.readTextFile("/proc/cpuinfo");
    cpu = /^model name\s*:\s*(.+)$/m.exec(info)?.[1]?.trim() ?? cpu;
  } catch { /* not Linux */ }
  const mem = Deno.systemMemoryInfo();
  return {
    nproc: navigator.hardwareConcurrency,
    memoryGiB: Math.round((mem.total / 2 ** 30) * 10) / 10,
    cpu,
    os: `${Deno.build.os} ${Deno.osRelease()}`,
    loadavg: Deno.loadavg(),
  };
}

async function detectClientBench(deno: string): Promise<boolean> {
  try {
    await Deno.stat(CLIENT_TS);
  } catch {
    return false;
  }
  const out = await runCommand([deno, "run", "--allow-net", CLIENT_TS, "--help"], {
    cwd: REPO_DIR,
    timeoutMs: 30_000,
  });
  return /--bench\b/.test(out.stdout + out.stderr);
}

async function exists(path: string): Promise<boolean> {
  try {
    await Deno.stat(path);
    return true;
  } catch {
    return false;
  }
}

/**
 * The file stem a run is saved under: its start time, `2026-12-01T21-40-05Z`.
 *
 * @example
 * ```ts
 * import { resultsStem } from "./main.ts";
 * console.log(resultsStem(new Date("2026-12-01T21:40:05.123Z"))); // "2026-12-01T21-40-05Z"
 * ```
 *
 * @param date The start of the run.
 * @returns The stem.
 */
export function resultsStem(date: Date): string {
  return `${date.toISOString().slice(0, 19).replaceAll(":", "-")}Z`;
}

/**
 * Runs the suite with the given command-line arguments, prints the report and saves the results.
 *
 * @example
 * ```ts ignore
 * import { main } from "./main.ts";
 * await main(["--quick", "--only", "tcp-64x1", "--servers", "node,c", "--no-save"]);
 * ```
 *
 * @param argv The arguments after the script name.
 * @returns The process exit code (0 when every measurement succeeded).
 */
export async function main(argv: string[]): Promise<number> {
  let args: BenchArgs;
  try {
    args = parseBenchArgs(argv);
  } catch (err) {
    console.error(`bench: ${errorText(err)}\n${USAGE}`);
    return 2;
  }
  if (args.help) {
    console.log(USAGE);
    return 0;
  }
  const started = new Date();
  const onSignal = () => {
    for (const h of live) h.stop();
    Deno.exit(130);
  };
  Deno.addSignalListener("SIGINT", onSignal);
  Deno.addSignalListener("SIGTERM", onSignal);

  progress("bench: preparing peers…");
  if ((await peakRssKiB(Deno.pid)) === null) {
    progress("bench: cannot read /proc/PID (run with -A): RSS and CPU figures will be missing");
  }
  const native = await buildNative();
  if (native.reason) progress(`bench: native: ${native.reason}`);
  const node = await which("node");
  const bun: BunInstall = args.servers.includes("bun")
    ? await findBun({ noInstall: args.noInstall })
    : { path: null, reason: "not selected" };
  if (!bun.path) progress(`bench: bun: ${bun.reason}`);
  if (bun.note) progress(`bench: bun: ${bun.note}`);
  const ctx: Context = {
    deno: Deno.execPath(),
    node,
    bun: bun.path,
    cEcho: native.echoServer,
    loadgen: native.loadgen,
    oursExists: await exists(SERVER_TS),
    clientBench: false,
  };
  ctx.clientBench = await detectClientBench(ctx.deno);
  const pin: PinMode = args.pin === "none"
    ? "none"
    : await canPin(args.pin === "split" ? [0, 1] : [0])
    ? args.pin
    : "none";
  if (pin !== args.pin) progress(`bench: cannot pin with taskset here; running unpinned`);

  const versions: Record<string, string | null> = {
    deno: Deno.version.deno,
    node: node ? (await runCommand([node, "--version"])).stdout.trim() || null : null,
    bun: bun.version ?? null,
    cc: native.loadgen ? (await runCommand(["cc", "--version"])).stdout.split("\n")[0] : null,
  };

  const skipped: { row: string; reason: string }[] = [];
  const servers: { name: string; cmd: string[]; note?: string }[] = [];
  for (const entry of SERVERS) {
    if (!args.servers.includes(entry.name)) continue;
    const c = entry.command(ctx);
    if ("skip" in c) skipped.push({ row: entry.name, reason: c.skip });
    else servers.push({ name: entry.name, cmd: c.cmd, note: c.note });
  }
  const bunRow = servers.find((s) => s.name === "bun");
  if (bun.note && bunRow) bunRow.note = bun.note;
  const judge = LOADGEN.available(ctx);
  if (judge !== true) {
    skipped.push({ row: "all server rows", reason: judge });
    servers.length = 0;
  }
  const client = CLIENT_BENCH.available(ctx);
  const runClient = client === true && ctx.cEcho !== null && judge === true;
  if (client !== true) skipped.push({ row: "client.ts vs C server", reason: client });
  else if (!ctx.cEcho) skipped.push({ row: "client.ts vs C server", reason: "no C server" });
  const rows: SuiteRow[] = servers.map((s) => ({ name: s.name, cmd: s.cmd, gen: LOADGEN }));
  if (runClient) {
    rows.push({
      name: "client.ts",
      cmd: [ctx.cEcho!, "--host", HOST, "--port", "0"],
      gen: CLIENT_BENCH,
    });
  }

  const perCell = args.warmup + args.duration + 0.8;
  const count = args.runs * args.cells.length * rows.length * args.modes.length;
  progress(
    `bench: ${count} measurements × ~${perCell.toFixed(1)} s ≈ ${
      Math.ceil((count * perCell) / 60)
    } min (servers: ${servers.map((s) => s.name).join(", ") || "none"}; modes: ${
      args.modes.join(", ")
    }; pinned: ${pin})`,
  );
  const m = await machine();
  const samples = await runSuite({
    cells: args.cells,
    rows,
    modes: args.modes,
    settings: args,
    pin,
    ctx,
    onSample: (s, cell) =>
      progress(
        `[run ${s.run + 1}/${args.runs}] ${s.mode} ${cell.id} ${s.server}: ${describe(cell, s)}`,
      ),
  });
  const finished = new Date();
  const results: ResultsFile = {
    format: "echo-bench-results/2",
    label: args.label,
    date: started.toISOString(),
    finished: finished.toISOString(),
    machine: m,
    versions,
    settings: {
      duration: args.duration,
      warmup: args.warmup,
      runs: args.runs,
      pin,
      busyPoll: args.busyPoll,
      settle: args.settle,
      modes: args.modes,
    },
    judge: LOADGEN.name,
    cells: args.cells,
    servers: servers.map((s) => ({ name: s.name, command: s.cmd, note: s.note ?? null })),
    skipped,
    clientRow: runClient,
    samples,
  };
  const report = renderReport(results);
  console.log(report);
  const json = JSON.stringify(results, null, 2) + "\n";
  if (args.out) {
    await Deno.mkdir(args.out, { recursive: true });
    const stem = `${args.out}/${resultsStem(started)}`;
    await Deno.writeTextFile(`${stem}.json`, json);
    await Deno.writeTextFile(`${stem}.md`, report);
    progress(`bench: wrote ${stem}.json and ${stem}.md`);
  }
  if (args.json) {
    await Deno.writeTextFile(args.json, json);
    progress(`bench: wrote ${args.json}`);
  }
  Deno.removeSignalListener("SIGINT", onSignal);
  Deno.removeSignalListener("SIGTERM", onSignal);
  const bad = samples.filter((s) => s.died || s.error || !s.result);
  return bad.length ? 1 : 0;
}

function describe(cell: Cell, s: Sample): string {
  if (s.died) return `${unavailable(summarize([s]))}${s.error ? ` — ${s.error}` : ""}`;
  if (!s.result) return `FAILED: ${s.error}`;
  const r = s.result;
  const extra = ["errors", "mismatches", "lost"].filter((f) => r[f] > 0).map((f) => `${f} ${r[f]}`);
  return `${fmtRate(cell, r[metric(cell)])}${cell.mode === "rr" ? " req/s" : ""}, p99 ${
    fmtUs(r.p99_us)
  }, rss ${fmtMiB(s.rssKiB)} MiB${extra.length ? `, ${extra.join(", ")}` : ""}`;
}

if (import.meta.main) {
  Deno.exit(await main(Deno.args));
}
