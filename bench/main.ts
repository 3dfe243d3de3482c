/**
 * The echo benchmark suite: our Deno server against Node, Bun and a C epoll ceiling, judged by a
 * native load generator so the ratios do not depend on our own client's speed.
 *
 * ```sh
 * deno run -A bench/main.ts [--quick] [--duration 5] [--warmup 1] [--runs 3]
 *   [--only tcp-64x1,...] [--servers deno,node,bun,c] [--json FILE] [--pin split|same|none]
 *   [--no-install]
 * ```
 *
 * The markdown report goes to stdout, progress to stderr. See bench/README.md.
 *
 * @module
 */
import { parseArgs } from "node:util";
import {
  buildNative,
  canPin,
  errorText,
  findBun,
  type LoadResult,
  machineCpu,
  peakRssKiB,
  REPO_DIR,
  runCommand,
  runGenerator,
  type ServerHandle,
  startServer,
  which,
} from "./_peers.ts";

/** One cell of the matrix: a traffic shape the load generator drives. */
export interface Cell {
  /** Short id used by `--only`, e.g. `tcp-64x1`. */
  id: string;
  /** Transport. */
  proto: "tcp" | "udp";
  /** `rr`: request/response; `stream`: a window of bytes in flight, MB/s. */
  mode: "rr" | "stream";
  /** Message size in bytes. */
  size: number;
  /** Concurrent connections (UDP: sockets). */
  connections: number;
  /** Messages in flight per connection (stream: window = pipeline × size). */
  pipeline: number;
  /** What the row tells. */
  about: string;
}

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
const HOST = "127.0.0.1";

/**
 * The servers. `deno` is ours and the base of every ratio; until server.ts exists the Node peer
 * stands in for it (marked in the report) so the harness can be exercised.
 *
 * @example
 * ```ts
 * import { SERVERS } from "./main.ts";
 * console.log(SERVERS.map((s) => s.name)); // ["deno", "node", "bun", "c"]
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
  /** Where to write the full results as JSON, if anywhere. */
  json: string | null;
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
 * those are given too. Durations are seconds (`5`, `0.5`) or `250ms`.
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
 * @throws {RangeError} On unknown cells, servers, or out-of-range numbers.
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
      json: { type: "string" },
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
    json: values.json ?? null,
    pin,
    noInstall: values["no-install"] === true,
    busyPoll,
    settle: values.settle ? seconds(values.settle, "--settle") : 0,
    help: values.help === true,
  };
}

/**
 * Median of the finite numbers in a list (mean of the middle two for even lengths).
 *
 * @example
 * ```ts
 * import { median } from "./main.ts";
 * console.log(median([3, 1, 2]), median([4, 1, 3, 2]), median([])); // 2 2.5 null
 * ```
 *
 * @param values The numbers.
 * @returns The median, or null for an empty list.
 */
export function median(values: number[]): number | null {
  const xs = values.filter(Number.isFinite).sort((a, b) => a - b);
  if (!xs.length) return null;
  const mid = xs.length >> 1;
  return xs.length % 2 ? xs[mid] : (xs[mid - 1] + xs[mid]) / 2;
}

/**
 * Where the CPU went during one measurement (averages over the generator's run, warm-up included).
 * Server CPU comes from /proc/PID/stat (10 ms ticks), the generator's from its own getrusage, the
 * machine's from /proc/stat; "other" is what neither used: other processes on this machine.
 */
interface CpuUse {
  serverCores?: number;
  generatorCores?: number;
  otherCores?: number;
  stealCores?: number;
  serverUsPerRequest?: number;
  busyBeforeCores?: number;
}

/** One measurement: one server, one cell, one run. */
interface Sample {
  run: number;
  result?: LoadResult;
  rssKiB?: number | null;
  cpu?: CpuUse;
  error?: string;
}

/** Aggregated figures of one (cell, server) pair. */
interface Summary {
  ok: number;
  failed: number;
  errors: string[];
  median: Record<string, number>;
  cpu: Record<string, number>;
  rssKiB: number | null;
  rssMaxKiB: number | null;
}

const USAGE = `usage: deno run -A bench/main.ts [options]
  --quick                1 s per cell, 0.25 s warm-up, 1 run (unless given explicitly)
  --duration SECONDS     measured time per cell (default 5; 250ms also accepted)
  --warmup SECONDS       unmeasured warm-up per cell (default 1)
  --runs N               interleaved runs; medians across them (default 3)
  --only IDS             comma-separated cells: ${CELLS.map((c) => c.id).join(",")}
  --servers NAMES        comma-separated servers: ${SERVERS.map((s) => s.name).join(",")}
  --json FILE            also write the full results as JSON
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

function metric(cell: Cell): "mbps" | "rps" {
  return cell.mode === "stream" ? "mbps" : "rps";
}

function summarize(samples: Sample[]): Summary {
  const ok = samples.filter((s) => s.result);
  const fields = new Set<string>();
  for (const s of ok) for (const k of Object.keys(s.result!)) fields.add(k);
  const med: Record<string, number> = {};
  for (const field of fields) {
    const m = median(ok.map((s) => Number(s.result![field])));
    if (m !== null) med[field] = m;
  }
  const cpu: Record<string, number> = {};
  for (const field of ["serverCores", "generatorCores", "otherCores", "stealCores"] as const) {
    const m = median(ok.map((s) => s.cpu?.[field] ?? NaN));
    if (m !== null) cpu[field] = m;
  }
  const perReq = median(ok.map((s) => s.cpu?.serverUsPerRequest ?? NaN));
  if (perReq !== null) cpu.serverUsPerRequest = perReq;
  const others = ok.map((s) => s.cpu?.otherCores ?? NaN).filter(Number.isFinite);
  if (others.length) cpu.otherCoresMax = Math.max(...others);
  const rss = ok.map((s) => s.rssKiB).filter((x): x is number => typeof x === "number");
  return {
    ok: ok.length,
    failed: samples.length - ok.length,
    errors: samples.filter((s) => s.error).map((s) => s.error!),
    median: med,
    cpu,
    rssKiB: median(rss),
    rssMaxKiB: rss.length ? Math.max(...rss) : null,
  };
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

async function measure(
  serverCmd: string[],
  cell: Cell,
  gen: { entry: GeneratorEntry; ctx: Context },
  opts: { settings: Settings; pin: PinMode; run: number },
): Promise<Sample> {
  const { settings, pin, run } = opts;
  let handle: ServerHandle | null = null;
  try {
    handle = await startServer(serverCmd, {
      cpu: pin === "none" ? undefined : 0,
      timeoutMs: 30_000,
    });
    live.add(handle);
    const port = cell.proto === "tcp" ? handle.tcpPort : handle.udpPort;
    if (port === null) throw new Error(`server printed no ${cell.proto} port`);
    const quiet = settings.settle > 0 ? await settle(settings.settle) : null;
    const server0 = await handle.cpuSeconds();
    const machine0 = await machineCpu();
    const t0 = performance.now();
    const result = await runGenerator(gen.entry.command(gen.ctx, cell, port, settings), {
      cpu: pin === "none" ? undefined : pin === "same" ? 0 : 1,
      timeoutMs: (settings.warmup + settings.duration) * 1000 + 30_000,
    });
    const wall = (performance.now() - t0) / 1000;
    const server1 = await handle.cpuSeconds();
    const machine1 = await machineCpu();
    const rssKiB = await handle.peakRssKiB();
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
    return { run, result, rssKiB, cpu };
  } catch (err) {
    const tail = handle?.stderrTail().trim().split("\n").slice(-1)[0];
    return { run, error: errorText(err) + (tail ? ` (server stderr: ${tail})` : "") };
  } finally {
    if (handle) {
      await handle.stop();
      live.delete(handle);
    }
  }
}

function fmtRate(cell: Cell, v: number | undefined): string {
  if (v === undefined) return "—";
  if (cell.mode === "stream") return `${v.toFixed(v < 100 ? 1 : 0)} MB/s`;
  return v >= 1000 ? `${(v / 1000).toFixed(1)}k` : v.toFixed(0);
}

function fmtUs(v: number | undefined): string {
  if (v === undefined) return "—";
  if (v >= 10_000) return `${(v / 1000).toFixed(1)} ms`;
  return `${v.toFixed(v < 100 ? 1 : 0)} µs`;
}

function fmtRatio(peer: number | undefined | null, ours: number | undefined | null): string {
  if (peer === undefined || peer === null || ours === undefined || ours === null || ours === 0) {
    return "—";
  }
  return `${(peer / ours).toFixed(2)}×`;
}

function fmtMiB(kib: number | null | undefined): string {
  return kib === null || kib === undefined ? "—" : `${(kib / 1024).toFixed(1)}`;
}

async function machine(): Promise<Record<string, unknown>> {
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
 * Runs the suite with the given command-line arguments and prints the report.
 *
 * @example
 * ```ts ignore
 * import { main } from "./main.ts";
 * await main(["--quick", "--only", "tcp-64x1", "--servers", "node,c"]);
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
  const bun = args.servers.includes("bun")
    ? await findBun({ noInstall: args.noInstall })
    : { path: null, reason: "not selected" };
  if (!bun.path) progress(`bench: bun: ${bun.reason}`);
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
  const judge = LOADGEN.available(ctx);
  if (judge !== true) {
    skipped.push({ row: "all server rows", reason: judge });
    servers.length = 0;
  }
  const client = CLIENT_BENCH.available(ctx);
  const runClient = client === true && ctx.cEcho !== null;
  if (client !== true) skipped.push({ row: "client.ts vs C server", reason: client });
  else if (!ctx.cEcho) skipped.push({ row: "client.ts vs C server", reason: "no C server" });

  const perCell = args.warmup + args.duration + 0.8;
  const count = args.runs * args.cells.length * (servers.length + (runClient ? 1 : 0));
  progress(
    `bench: ${count} measurements × ~${perCell.toFixed(1)} s ≈ ${
      Math.ceil((count * perCell) / 60)
    } min (servers: ${servers.map((s) => s.name).join(", ") || "none"}; pinned: ${pin})`,
  );

  const samples = new Map<string, Sample[]>(); // key: cell|server
  const key = (cell: Cell, name: string) => `${cell.id}|${name}`;
  for (let run = 0; run < args.runs; run++) {
    for (const [ci, cell] of args.cells.entries()) {
      // Round-robin: each run (and cell) starts with a different server.
      const order = servers.map((_, i) => servers[(i + run + ci) % servers.length]);
      for (const server of order) {
        const sample = await measure(server.cmd, cell, { entry: LOADGEN, ctx }, {
          settings: args,
          pin,
          run,
        });
        samples.set(key(cell, server.name), [
          ...(samples.get(key(cell, server.name)) ?? []),
          sample,
        ]);
        progress(
          `[run ${run + 1}/${args.runs}] ${cell.id} ${server.name}: ${describe(cell, sample)}`,
        );
      }
      if (runClient) {
        const cCmd = [ctx.cEcho!, "--host", HOST, "--port", "0"];
        const sample = await measure(cCmd, cell, { entry: CLIENT_BENCH, ctx }, {
          settings: args,
          pin,
          run,
        });
        samples.set(key(cell, "client.ts"), [
          ...(samples.get(key(cell, "client.ts")) ?? []),
          sample,
        ]);
        progress(`[run ${run + 1}/${args.runs}] ${cell.id} client.ts→c: ${describe(cell, sample)}`);
      }
    }
  }
  const finished = new Date();

  const summaries = new Map<string, Summary>();
  for (const [k, list] of samples) summaries.set(k, summarize(list));
  const get = (cell: Cell, name: string) => summaries.get(key(cell, name));

  // ---- report ----
  const names = servers.map((s) => s.name);
  const base = names.includes("deno") ? "deno" : null;
  const peers = names.filter((n) => n !== base);
  const out: string[] = [];
  const m = await machine();
  out.push(`## Echo benchmark — ${started.toISOString()}`);
  out.push("");
  out.push(
    `- machine: ${m.nproc} CPUs (${m.cpu}), ${m.memoryGiB} GiB memory, ${m.os}, load ${
      (m.loadavg as number[]).map((x) => x.toFixed(2)).join(" ")
    } at start`,
  );
  out.push(
    `- versions: deno ${versions.deno}, node ${versions.node ?? "—"}, bun ${versions.bun ?? "—"}, ${
      versions.cc ?? "no cc"
    }`,
  );
  out.push(
    `- settings: ${args.duration} s measured + ${args.warmup} s warm-up per cell, ${args.runs} ` +
      `interleaved run(s), medians; ${
        pin === "split"
          ? "server pinned to CPU 0, load generator to CPU 1"
          : pin === "same"
          ? "server and load generator both pinned to CPU 0"
          : "no CPU pinning"
      }${args.busyPoll ? " (generator busy-polls)" : ""}${
        args.settle ? `; settle up to ${args.settle} s before each` : ""
      }; judge: ${LOADGEN.name}; wall time ${
        ((finished.getTime() - started.getTime()) / 1000).toFixed(0)
      } s`,
  );
  for (const s of servers) if (s.note) out.push(`- **${s.name}: ${s.note}**`);
  for (const s of skipped) out.push(`- skipped ${s.row}: ${s.reason}`);
  const noise = [...summaries.values()];
  const otherMed = median(noise.map((s) => s.cpu.otherCores ?? NaN));
  const otherMax = Math.max(0, ...noise.map((s) => s.cpu.otherCoresMax ?? 0));
  const stealMed = median(noise.map((s) => s.cpu.stealCores ?? NaN));
  if (otherMed !== null) {
    out.push(
      `- noise: other processes used ${otherMed.toFixed(2)} cores (median; max ${
        otherMax.toFixed(2)
      }) during measurements, hypervisor steal ${(stealMed ?? 0).toFixed(2)} cores${
        otherMed > 0.1
          ? " — **the machine was not quiet; treat the figures as rough**"
          : otherMax > 0.25
          ? " — some samples were disturbed (per-sample `cpu.otherCores` in the JSON)"
          : ""
      }`,
    );
  }
  out.push("");

  if (servers.length) {
    const ratioHead = base ? peers.map((p) => `${p}/${base}`) : [];
    const header = ["cell", ...names, ...ratioHead];
    const table = (
      title: string,
      note: string,
      cellValue: (cell: Cell, s: Summary | undefined) => string,
      raw: (cell: Cell, s: Summary | undefined) => number | null | undefined,
    ) => {
      out.push(`### ${title}`);
      out.push("");
      out.push(note);
      out.push("");
      out.push(`| ${header.join(" | ")} |`);
      out.push(`| ${header.map((_, i) => i === 0 ? "---" : "---:").join(" | ")} |`);
      for (const cell of args.cells) {
        const row = [cell.id];
        for (const n of names) {
          const s = get(cell, n);
          row.push(s && s.ok ? cellValue(cell, s) : s?.failed ? "fail" : "—");
        }
        if (base) {
          for (const p of peers) {
            row.push(fmtRatio(raw(cell, get(cell, p)), raw(cell, get(cell, base))));
          }
        }
        out.push(`| ${row.join(" | ")} |`);
      }
      out.push("");
    };
    table(
      "Throughput (median requests/s; MB/s for stream)",
      `Ratio = peer ÷ ${base ?? "ours"}: above 1 the peer is faster.`,
      (cell, s) => fmtRate(cell, s?.median[metric(cell)]),
      (cell, s) => s?.median[metric(cell)],
    );
    table(
      "p99 latency (median across runs)",
      `Ratio = peer ÷ ${base ?? "ours"}: below 1 the peer's tail is shorter.`,
      (_cell, s) => fmtUs(s?.median.p99_us),
      (_cell, s) => s?.median.p99_us,
    );
    table(
      "Peak server RSS (MiB, VmHWM, median across runs)",
      `Ratio = peer ÷ ${base ?? "ours"}: below 1 the peer uses less memory.`,
      (_cell, s) => fmtMiB(s?.rssKiB),
      (_cell, s) => s?.rssKiB,
    );
    table(
      "Server CPU per request (µs; stream: per 64 KiB chunk)",
      `Server CPU seconds ÷ requests: the cost that holds when wake-ups are slow or the machine is ` +
        `shared. Ratio = peer ÷ ${base ?? "ours"}: below 1 the peer is cheaper.`,
      (_cell, s) => fmtUs(s?.cpu.serverUsPerRequest),
      (_cell, s) => s?.cpu.serverUsPerRequest,
    );

    const many = args.cells.find((c) => c.connections >= 1000);
    if (many) {
      out.push(`### ${many.connections} connections (${many.id})`);
      out.push("");
      out.push(
        "Served = connections with at least one reply in the measured window (fairness). " +
          "“All connected after” near 1,000 ms means the accept queue overflowed and " +
          "clients waited for a SYN retransmission.",
      );
      out.push("");
      out.push(
        "| server | req/s | p50 | p99 | p99.9 | max | connections served | connected | " +
          "all connected after | min–max req per conn |",
      );
      out.push("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |");
      for (const n of names) {
        const s = get(many, n);
        if (!s || !s.ok) {
          out.push(`| ${n} | ${s?.failed ? "fail" : "—"} | | | | | | | | |`);
          continue;
        }
        const md = s.median;
        out.push(
          `| ${n} | ${fmtRate(many, md.rps)} | ${fmtUs(md.p50_us)} | ${fmtUs(md.p99_us)} | ${
            fmtUs(md.p999_us)
          } | ${fmtUs(md.max_us)} | ${md.connections_served ?? "—"}/${many.connections} | ${
            md.connected ?? "—"
          } | ${md.connect_ms === undefined ? "—" : `${md.connect_ms.toFixed(0)} ms`} | ${
            md.min_conn_requests ?? "—"
          }–${md.max_conn_requests ?? "—"} |`,
        );
      }
      out.push("");
    }
  }

  if (runClient) {
    out.push("### client.ts (our generator) vs C server");
    out.push("");
    out.push("Ratio = client.ts ÷ loadgen against the same C server: how much our client limits.");
    out.push("");
    out.push("| cell | loadgen → c | client.ts → c | p99 client.ts | client.ts/loadgen |");
    out.push("| --- | ---: | ---: | ---: | ---: |");
    for (const cell of args.cells) {
      const c = get(cell, "c");
      const cl = get(cell, "client.ts");
      const mk = metric(cell);
      out.push(
        `| ${cell.id} | ${fmtRate(cell, c?.median[mk])} | ${
          cl?.ok ? fmtRate(cell, cl.median[mk]) : "fail"
        } | ${fmtUs(cl?.median.p99_us)} | ${fmtRatio(cl?.median[mk], c?.median[mk])} |`,
      );
    }
    out.push("");
  }

  const problems: string[] = [];
  for (const [k, s] of summaries) {
    const md = s.median;
    const bad = ["errors", "mismatches", "lost"].filter((f) => (md[f] ?? 0) > 0);
    if (bad.length) {
      problems.push(`- ${k.replace("|", " ")}: ${bad.map((f) => `${f} ${md[f]}`).join(", ")}`);
    }
    for (const e of new Set(s.errors)) problems.push(`- ${k.replace("|", " ")}: failed: ${e}`);
  }
  out.push("### Errors, mismatches, losses");
  out.push("");
  out.push(problems.length ? problems.join("\n") : "none");
  out.push("");
  console.log(out.join("\n"));

  if (args.json) {
    const json = {
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
      },
      judge: LOADGEN.name,
      servers: servers.map((s) => ({ name: s.name, command: s.cmd, note: s.note ?? null })),
      skipped,
      cells: args.cells.map((cell) => ({
        ...cell,
        results: Object.fromEntries(
          [...names, ...(runClient ? ["client.ts"] : [])].map((n) => [n, {
            summary: get(cell, n) ?? null,
            samples: samples.get(key(cell, n)) ?? [],
          }]),
        ),
      })),
    };
    await Deno.writeTextFile(args.json, JSON.stringify(json, null, 2) + "\n");
    progress(`bench: wrote ${args.json}`);
  }
  Deno.removeSignalListener("SIGINT", onSignal);
  Deno.removeSignalListener("SIGTERM", onSignal);
  const failures = [...summaries.values()].reduce((n, s) => n + s.failed, 0);
  return failures ? 1 : 0;
}

function describe(cell: Cell, s: Sample): string {
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
