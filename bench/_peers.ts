/**
 * Plumbing for the benchmark suite: builds the native programs, installs Bun outside the
 * repository, starts and stops echo servers (waiting for their ready lines, never sleeping and
 * hoping), reads their peak RSS, and runs a load generator that prints one JSON line.
 *
 * @module
 */

const BENCH_DIR = new URL(".", import.meta.url).pathname;
const NATIVE_DIR = `${BENCH_DIR}native`;

/** Where the native programs are built (gitignored). */
export const NATIVE_BIN_DIR = `${NATIVE_DIR}/bin`;

/** The repository root (the directory above bench/). */
export const REPO_DIR = new URL("..", import.meta.url).pathname.replace(/\/$/, "");

/** Result of {@linkcode buildNative}: paths to the binaries, or null with the reason. */
export interface NativeBuild {
  /** Path to the C echo server, or null when it could not be built. */
  echoServer: string | null;
  /** Path to the C load generator, or null when it could not be built. */
  loadgen: string | null;
  /** Why a binary is missing, when one is. */
  reason?: string;
}

/** Options for {@linkcode buildNative}. */
export interface BuildOptions {
  /** The C compiler to use (default `cc`). */
  cc?: string;
  /** Rebuild even when the binaries are newer than their sources. */
  force?: boolean;
}

/** Outcome of running a short command to completion. */
export interface CommandOutcome {
  /** Exit code, or null when the command could not be started or timed out. */
  code: number | null;
  /** Standard output as text. */
  stdout: string;
  /** Standard error as text, or the reason the command did not run. */
  stderr: string;
}

/** Options for {@linkcode runCommand}. */
export interface RunCommandOptions {
  /** Kill the command after this many milliseconds (default 60,000). */
  timeoutMs?: number;
  /** Working directory. */
  cwd?: string;
}

/**
 * Runs a command to completion with a time limit; never throws.
 *
 * @example
 * ```ts
 * import { runCommand } from "./_peers.ts";
 * const out = await runCommand(["node", "--version"]);
 * console.log(out.code, out.stdout.trim());
 * ```
 *
 * @param cmd The program and its arguments.
 * @param options Time limit and working directory.
 * @returns The exit code and output.
 */
export async function runCommand(
  cmd: string[],
  options: RunCommandOptions = {},
): Promise<CommandOutcome> {
  const timeoutMs = options.timeoutMs ?? 60_000;
  let child: Deno.ChildProcess;
  try {
    child = new Deno.Command(cmd[0], {
      args: cmd.slice(1),
      cwd: options.cwd,
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
    }).spawn();
  } catch (err) {
    return { code: null, stdout: "", stderr: `cannot run ${cmd[0]}: ${errorText(err)}` };
  }
  let timedOut = false;
  const timer = setTimeout(() => {
    timedOut = true;
    try {
      child.kill("SIGKILL");
    } catch { /* already gone */ }
  }, timeoutMs);
  try {
    const out = await child.output();
    const dec = new TextDecoder();
    return {
      code: timedOut ? null : out.code,
      stdout: dec.decode(out.stdout),
      stderr: timedOut
        ? `${cmd[0]} timed out after ${timeoutMs} ms\n${dec.decode(out.stderr)}`
        : dec.decode(out.stderr),
    };
  } finally {
    clearTimeout(timer);
  }
}

/**
 * Finds a program on PATH.
 *
 * @example
 * ```ts
 * import { which } from "./_peers.ts";
 * console.log(await which("cc"));
 * ```
 *
 * @param name The program name.
 * @returns Its absolute path, or null when it is not on PATH.
 */
export async function which(name: string): Promise<string | null> {
  for (const dir of (Deno.env.get("PATH") ?? "").split(":")) {
    if (!dir) continue;
    const path = `${dir}/${name}`;
    try {
      const info = await Deno.stat(path);
      if (info.isFile && info.mode !== null && (info.mode & 0o111) !== 0) return path;
    } catch { /* not here */ }
  }
  return null;
}

async function mtime(path: string): Promise<number | null> {
  try {
    return (await Deno.stat(path)).mtime?.getTime() ?? null;
  } catch {
    return null;
  }
}

/**
 * Compiles `native/echo_server.c` and `native/loadgen.c` with `cc -O2` into `native/bin/`, when a
 * C compiler exists. Up-to-date binaries are reused.
 *
 * @example
 * ```ts
 * import { buildNative } from "./_peers.ts";
 * const built = await buildNative();
 * console.log(built.echoServer ?? `no C server: ${built.reason}`);
 * ```
 *
 * @param options Compiler and rebuild choice.
 * @returns Paths to the binaries, null where a build was not possible.
 */
export async function buildNative(options: BuildOptions = {}): Promise<NativeBuild> {
  const cc = await which(options.cc ?? "cc");
  if (!cc) {
    return { echoServer: null, loadgen: null, reason: "no C compiler (cc) on PATH" };
  }
  await Deno.mkdir(NATIVE_BIN_DIR, { recursive: true });
  const result: NativeBuild = { echoServer: null, loadgen: null };
  const reasons: string[] = [];
  for (const name of ["echo_server", "loadgen"] as const) {
    const src = `${NATIVE_DIR}/${name}.c`;
    const bin = `${NATIVE_BIN_DIR}/${name}`;
    const srcTime = await mtime(src);
    const binTime = await mtime(bin);
    if (srcTime === null) {
      reasons.push(`${src} is missing`);
      continue;
    }
    if (options.force || binTime === null || binTime < srcTime) {
      const out = await runCommand([cc, "-O2", "-Wall", "-o", bin, src], { timeoutMs: 120_000 });
      if (out.code !== 0) {
        reasons.push(`cc failed for ${name}.c: ${out.stderr.trim().split("\n")[0]}`);
        continue;
      }
    }
    if (name === "echo_server") result.echoServer = bin;
    else result.loadgen = bin;
  }
  if (reasons.length) result.reason = reasons.join("; ");
  return result;
}

/** Result of {@linkcode findBun}. */
export interface BunInstall {
  /** Path to a working Bun binary, or null. */
  path: string | null;
  /** What `bun --version` printed. */
  version?: string;
  /** Why Bun is not available, when it is not. */
  reason?: string;
  /** How it was obtained when that was out of the ordinary (e.g. unpacked by hand). */
  note?: string;
}

/** Options for {@linkcode findBun}. */
export interface FindBunOptions {
  /** npm install prefix, outside the repository (default `~/.cache/echo-bench`). */
  prefix?: string;
  /** npm package spec (default `bun@1.4.5`, the version the committed figures were taken with). */
  spec?: string;
  /** Do not install; only look for an existing binary. */
  noInstall?: boolean;
  /** Time limit for `npm install` in milliseconds (default 240,000). */
  timeoutMs?: number;
  /** The npm program (default `npm` on PATH). */
  npm?: string;
}

/** The Bun version the suite installs unless told otherwise. */
export const BUN_SPEC = "bun@1.4.5";

function defaultPrefix(): string {
  const cache = Deno.env.get("XDG_CACHE_HOME") ?? `${Deno.env.get("HOME") ?? "/tmp"}/.cache`;
  return `${cache}/echo-bench`;
}

/** npm's name for this platform's Bun binary package, e.g. `@oven/bun-linux-x64`. */
function bunPlatformPackage(): string {
  const arch = Deno.build.arch === "x86_64" ? "x64" : "aarch64";
  return `@oven/bun-${Deno.build.os}-${arch}`;
}

/** Where {@linkcode findBun} unpacks the platform package's tarball itself. */
function unpackedBun(prefix: string): string {
  return `${prefix}/unpacked/package/bin/bun`;
}

async function bunCandidates(prefix: string): Promise<string[]> {
  const list: string[] = [];
  const env = Deno.env.get("BUN_BIN");
  if (env) list.push(env);
  const modules = `${prefix}/node_modules`;
  list.push(`${modules}/bun/bin/bun.exe`);
  try {
    for await (const entry of Deno.readDir(`${modules}/@oven`)) {
      if (entry.name.startsWith(`bun-${Deno.build.os}-`)) {
        list.push(`${modules}/@oven/${entry.name}/bin/bun`);
      }
    }
  } catch { /* not installed */ }
  list.push(unpackedBun(prefix));
  const onPath = await which("bun");
  if (onPath) list.push(onPath);
  return list;
}

async function probeBun(prefix: string): Promise<BunInstall | null> {
  for (const path of await bunCandidates(prefix)) {
    try {
      await Deno.stat(path);
    } catch {
      continue;
    }
    const out = await runCommand([path, "--version"], { timeoutMs: 15_000 });
    if (out.code === 0 && /^\d+\.\d+/.test(out.stdout.trim())) {
      return { path, version: out.stdout.trim() };
    }
  }
  return null;
}

/**
 * The version npm installed (from `node_modules/bun/package.json`), else the one in the spec.
 */
async function bunVersion(prefix: string, spec: string): Promise<string | null> {
  try {
    const pkg = JSON.parse(await Deno.readTextFile(`${prefix}/node_modules/bun/package.json`));
    if (typeof pkg.version === "string") return pkg.version;
  } catch { /* not installed */ }
  return /^bun@(\d+\.\d+\.\d+)$/.exec(spec)?.[1] ?? null;
}

/**
 * npm 11 can finish `npm install bun` with `@oven/bun-linux-x64/bin/` empty and `bun/bin/bun.exe`
 * still the placeholder (the postinstall that moves the binary did not run or failed). Then the
 * binary is taken straight from the platform package: `npm pack @oven/bun-linux-x64@VERSION` and
 * `tar -xzf` into `PREFIX/unpacked/`.
 */
async function unpackBun(npm: string, prefix: string, version: string): Promise<string | null> {
  const dir = `${prefix}/unpacked`;
  await Deno.remove(dir, { recursive: true }).catch(() => {});
  await Deno.mkdir(dir, { recursive: true });
  const pkg = `${bunPlatformPackage()}@${version}`;
  const packed = await runCommand(
    [npm, "pack", "--silent", "--pack-destination", dir, pkg],
    { cwd: dir, timeoutMs: 240_000 },
  );
  const file = packed.stdout.trim().split("\n").pop()?.trim();
  if (packed.code !== 0 || !file) {
    return `npm pack ${pkg} failed: ${lastLine(packed.stderr)}`;
  }
  const tar = await runCommand(["tar", "-xzf", `${dir}/${file}`, "-C", dir], {
    timeoutMs: 120_000,
  });
  await Deno.remove(`${dir}/${file}`).catch(() => {});
  if (tar.code !== 0) return `tar -xzf ${file} failed: ${lastLine(tar.stderr)}`;
  try {
    await Deno.chmod(unpackedBun(prefix), 0o755);
  } catch {
    return `${pkg} has no bin/bun`;
  }
  return null;
}

/**
 * Finds Bun, installing it from the npm registry into a cache directory outside the repository
 * (`npm install --prefix ~/.cache/echo-bench bun@1.4.5`) when it is not there yet. When npm leaves
 * no working binary (npm 11: `@oven/bun-linux-x64/bin/` empty), the platform package's tarball is
 * unpacked by hand (`npm pack` + `tar`). Never throws: when all that fails the result says why and
 * Bun's rows are skipped with that reason.
 *
 * @example
 * ```ts
 * import { findBun } from "./_peers.ts";
 * const bun = await findBun({ noInstall: true });
 * console.log(bun.path ?? `no bun: ${bun.reason}`);
 * ```
 *
 * @param options Install prefix, package spec and time limit.
 * @returns The binary's path and version, or the reason there is none.
 */
export async function findBun(options: FindBunOptions = {}): Promise<BunInstall> {
  const prefix = options.prefix ?? defaultPrefix();
  if (prefix === REPO_DIR || prefix.startsWith(`${REPO_DIR}/`)) {
    throw new RangeError(`Bun must be installed outside the repository, got prefix ${prefix}`);
  }
  const found = await probeBun(prefix);
  if (found) return found;
  if (options.noInstall) return { path: null, reason: "bun is not installed (install skipped)" };
  const npm = options.npm ?? await which("npm");
  if (!npm) return { path: null, reason: "npm is not on PATH" };
  await Deno.mkdir(prefix, { recursive: true });
  const spec = options.spec ?? BUN_SPEC;
  const out = await runCommand(
    [npm, "install", "--prefix", prefix, "--no-audit", "--no-fund", "--loglevel=error", spec],
    { cwd: prefix, timeoutMs: options.timeoutMs ?? 240_000 },
  );
  const installed = await probeBun(prefix);
  if (installed) return installed;
  const why = out.code !== 0
    ? `npm install ${spec} failed (${lastLine(out.stderr)})`
    : `npm install ${spec} left no working binary (${bunPlatformPackage()}/bin/ empty)`;
  const version = await bunVersion(prefix, spec);
  if (!version) return { path: null, reason: `${why}; no exact version to unpack by hand` };
  const failed = await unpackBun(npm, prefix, version);
  if (failed) return { path: null, reason: `${why}; unpacking by hand: ${failed}` };
  const unpacked = await probeBun(prefix);
  return unpacked
    ? { ...unpacked, note: `${why}: unpacked ${bunPlatformPackage()}@${version} by hand` }
    : { path: null, reason: `${why}; the unpacked ${unpackedBun(prefix)} does not run` };
}

/**
 * Whether `taskset` exists and may pin to the given CPUs here.
 *
 * @example
 * ```ts
 * import { canPin } from "./_peers.ts";
 * console.log(await canPin([0, 1]));
 * ```
 *
 * @param cpus The CPUs that will be used.
 * @returns True when pinning works.
 */
export async function canPin(cpus: number[]): Promise<boolean> {
  const taskset = await which("taskset");
  if (!taskset || navigator.hardwareConcurrency <= Math.max(...cpus)) return false;
  for (const cpu of cpus) {
    const out = await runCommand([taskset, "-c", String(cpu), "true"], { timeoutMs: 10_000 });
    if (out.code !== 0) return false;
  }
  return true;
}

/**
 * Prefixes a command with `taskset -c CPU` (taskset execs the program, so the PID stays the
 * program's own), or returns it unchanged when `cpu` is undefined.
 *
 * @example
 * ```ts
 * import { pinned } from "./_peers.ts";
 * console.log(pinned(["node", "server.mjs"], 0)); // ["taskset", "-c", "0", "node", "server.mjs"]
 * ```
 *
 * @param cmd The program and its arguments.
 * @param cpu The CPU to pin to, or undefined for no pinning.
 * @returns The command to run.
 */
export function pinned(cmd: string[], cpu: number | undefined): string[] {
  return cpu === undefined ? cmd : ["taskset", "-c", String(cpu), ...cmd];
}

/** A running echo server started by {@linkcode startServer}. */
export interface ServerHandle {
  /** Process id (the server itself, also when started through taskset). */
  pid: number;
  /** TCP port from the `listening tcp` line, or null when it has none. */
  tcpPort: number | null;
  /** UDP port from the `listening udp` line, or null when it has none. */
  udpPort: number | null;
  /** Peak resident set size so far (VmHWM) in KiB, or null when it cannot be read. */
  peakRssKiB(): Promise<number | null>;
  /** CPU seconds (user + system) the server has used so far, or null when unreadable. */
  cpuSeconds(): Promise<number | null>;
  /** Current resident set size (VmRSS) in KiB, or null when it cannot be read. */
  rssKiB(): Promise<number | null>;
  /** The last few KiB the server wrote to stderr. */
  stderrTail(): string;
  /**
   * How the server ended when it exited without being stopped (it died), else null. Call it after
   * a measurement: a server that is gone is reported as dead, never as 0 requests/s.
   */
  died(): ServerDeath | null;
  /** Resolves when the process has exited, for whatever reason. */
  exited: Promise<void>;
  /** Stops the server with SIGTERM (SIGKILL after 5 s); resolves to its exit code. */
  stop(): Promise<number | null>;
}

/** How a server that was not stopped by the suite ended. */
export interface ServerDeath {
  /** Exit code, or null when a signal ended it. */
  code: number | null;
  /** The signal that ended it (e.g. `SIGSEGV`), or null. */
  signal: string | null;
  /** The last non-empty line it wrote to stderr ("" when none). */
  stderr: string;
}

/**
 * One line for a dead server: `died (exit code 3, last stderr: boom)`.
 *
 * @example
 * ```ts
 * import { describeDeath } from "./_peers.ts";
 * console.log(describeDeath({ code: null, signal: "SIGKILL", stderr: "" })); // "died (signal SIGKILL)"
 * ```
 *
 * @param death How it ended.
 * @returns The text the report shows in place of its figures.
 */
export function describeDeath(death: ServerDeath): string {
  const how = death.signal ? `signal ${death.signal}` : `exit code ${death.code}`;
  return `died (${how}${death.stderr ? `, last stderr: ${death.stderr}` : ""})`;
}

/** Options for {@linkcode startServer}. */
export interface StartServerOptions {
  /** Pin the server to this CPU with taskset. */
  cpu?: number;
  /** Which ready lines to wait for (default both). */
  expect?: ("tcp" | "udp")[];
  /** Give up when the ready lines have not come after this many ms (default 30,000). */
  timeoutMs?: number;
  /** Working directory (default the repository root, so deno.json is found). */
  cwd?: string;
  /** Extra environment variables for the server. */
  env?: Record<string, string>;
  /**
   * Called with each stdout line after the ready lines (otherwise they are discarded), until the
   * server exits; `stop()` resolves after the last one.
   */
  onLine?: (line: string) => void;
}

/** Linux reports /proc times in USER_HZ ticks, 100 per second on every architecture it runs on. */
const USER_HZ = 100;

/**
 * CPU seconds a process has used in user and in kernel mode, from /proc/PID/stat.
 *
 * @example
 * ```ts
 * import { processCpuTimes } from "./_peers.ts";
 * console.log(await processCpuTimes(Deno.pid)); // { user: …, sys: … }
 * ```
 *
 * @param pid The process id.
 * @returns User and kernel seconds, or null when they cannot be read.
 */
export async function processCpuTimes(pid: number): Promise<{ user: number; sys: number } | null> {
  try {
    const stat = await Deno.readTextFile(`/proc/${pid}/stat`);
    // Fields after the command name (which may hold spaces) start at field 3 (state).
    const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    return { user: Number(fields[11]) / USER_HZ, sys: Number(fields[12]) / USER_HZ };
  } catch {
    return null;
  }
}

/**
 * CPU seconds (user + system) a process has used, from /proc/PID/stat.
 *
 * @example
 * ```ts
 * import { processCpuSeconds } from "./_peers.ts";
 * console.log(await processCpuSeconds(Deno.pid));
 * ```
 *
 * @param pid The process id.
 * @returns Seconds of CPU, or null when they cannot be read.
 */
export async function processCpuSeconds(pid: number): Promise<number | null> {
  const times = await processCpuTimes(pid);
  return times && times.user + times.sys;
}

/** Whole-machine CPU time from /proc/stat, in seconds summed over all CPUs. */
export interface MachineCpu {
  /** Time spent running anything (user, nice, system, irq, softirq). */
  busy: number;
  /** Time the hypervisor ran something else while a CPU wanted to run. */
  steal: number;
  /** Idle and I/O wait. */
  idle: number;
}

/**
 * Reads the machine's CPU counters; the difference of two readings says how busy it was.
 *
 * @example
 * ```ts
 * import { machineCpu } from "./_peers.ts";
 * console.log(await machineCpu());
 * ```
 *
 * @returns The counters, or null when /proc/stat cannot be read.
 */
export async function machineCpu(): Promise<MachineCpu | null> {
  try {
    const line = (await Deno.readTextFile("/proc/stat")).split("\n")[0];
    const [user, nice, system, idle, iowait, irq, softirq, steal] = line.trim().split(/\s+/)
      .slice(1).map(Number);
    return {
      busy: (user + nice + system + irq + softirq) / USER_HZ,
      steal: (steal ?? 0) / USER_HZ,
      idle: (idle + iowait) / USER_HZ,
    };
  } catch {
    return null;
  }
}

const READY = /^listening (tcp|udp) (?:\[[^\]]*\]|[^\s:]+):(\d+)\s*$/;

/**
 * Reads VmHWM (peak resident set size) of a process from /proc.
 *
 * @example
 * ```ts
 * import { peakRssKiB } from "./_peers.ts";
 * console.log(await peakRssKiB(Deno.pid));
 * ```
 *
 * @param pid The process id.
 * @returns The peak RSS in KiB, or null when it cannot be read.
 */
export function peakRssKiB(pid: number): Promise<number | null> {
  return statusKiB(pid, "VmHWM");
}

/**
 * Reads VmRSS (resident set size now) of a process from /proc.
 *
 * @example
 * ```ts
 * import { currentRssKiB } from "./_peers.ts";
 * console.log(await currentRssKiB(Deno.pid));
 * ```
 *
 * @param pid The process id.
 * @returns The RSS in KiB, or null when it cannot be read.
 */
export function currentRssKiB(pid: number): Promise<number | null> {
  return statusKiB(pid, "VmRSS");
}

async function statusKiB(pid: number, field: string): Promise<number | null> {
  try {
    const status = await Deno.readTextFile(`/proc/${pid}/status`);
    const match = new RegExp(`^${field}:\\s+(\\d+)\\s+kB`, "m").exec(status);
    return match ? Number(match[1]) : null;
  } catch {
    return null;
  }
}

function lastLine(text: string): string {
  return text.trim().split("\n").slice(-1)[0]?.trim() ?? "";
}

/**
 * Starts an echo server and waits for its `listening tcp HOST:PORT` / `listening udp HOST:PORT`
 * lines on stdout, parsing the ports. Rejects when the server exits or stays silent too long.
 *
 * @example
 * ```ts
 * import { startServer } from "./_peers.ts";
 * const server = await startServer(["node", "bench/peers/node_echo.mjs", "--port", "0"]);
 * console.log(server.tcpPort, await server.peakRssKiB());
 * await server.stop();
 * ```
 *
 * @param cmd The server program and its arguments.
 * @param options CPU pinning, expected ready lines, time limit.
 * @returns A handle to the running server.
 */
export async function startServer(
  cmd: string[],
  options: StartServerOptions = {},
): Promise<ServerHandle> {
  const expect = new Set(options.expect ?? ["tcp", "udp"]);
  const timeoutMs = options.timeoutMs ?? 30_000;
  const full = pinned(cmd, options.cpu);
  const child = new Deno.Command(full[0], {
    args: full.slice(1),
    cwd: options.cwd ?? REPO_DIR,
    env: options.env,
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const status = child.status;
  let stopping = false;
  let ended: Deno.CommandStatus | null = null;
  status.then((st) => ended = st, () => {});

  let tail = "";
  const stderrDone = (async () => {
    const dec = new TextDecoder();
    for await (const chunk of child.stderr) {
      tail = (tail + dec.decode(chunk, { stream: true })).slice(-4096);
    }
  })().catch(() => {});

  const ports: { tcp: number | null; udp: number | null } = { tcp: null, udp: null };
  const reader = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
  let timer: ReturnType<typeof setTimeout> | undefined;
  let stopped: Promise<number | null> | null = null;
  let drained: Promise<void> = Promise.resolve();
  const stop = (): Promise<number | null> => {
    stopping = true;
    stopped ??= (async () => {
      try {
        child.kill("SIGTERM");
      } catch { /* already gone */ }
      const killTimer = setTimeout(() => {
        try {
          child.kill("SIGKILL");
        } catch { /* already gone */ }
      }, 5000);
      const st = await status;
      clearTimeout(killTimer);
      await stderrDone;
      await drained;
      return st.signal ? null : st.code;
    })();
    return stopped;
  };

  let buf = "";
  const ready = (async () => {
    const seen = new Set<string>();
    while (seen.size < expect.size) {
      const { value, done } = await reader.read();
      if (done) {
        const st = await status;
        await stderrDone;
        throw new Error(
          `${cmd.join(" ")} exited (code ${st.code}) before printing its listening lines: ` +
            tail.trim().split("\n").slice(-3).join(" | "),
        );
      }
      buf += value;
      let nl: number;
      while ((nl = buf.indexOf("\n")) >= 0) {
        const line = buf.slice(0, nl);
        buf = buf.slice(nl + 1);
        const match = READY.exec(line.trim());
        if (match && expect.has(match[1])) {
          ports[match[1] as "tcp" | "udp"] = Number(match[2]);
          seen.add(match[1]);
        } else if (seen.size === expect.size) {
          options.onLine?.(line);
        }
      }
    }
  })();
  ready.catch(() => {}); // the race below reports it; this keeps a late rejection handled
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(
      () => reject(new Error(`${cmd.join(" ")} printed no listening lines within ${timeoutMs} ms`)),
      timeoutMs,
    );
  });
  try {
    await Promise.race([ready, timeout]);
  } catch (err) {
    await stop();
    throw err;
  } finally {
    clearTimeout(timer);
  }
  // Keep draining stdout so a chatty server never blocks on a full pipe.
  drained = (async () => {
    for (let r; !(r = await reader.read()).done;) {
      if (!options.onLine) continue;
      buf += r.value;
      let nl: number;
      while ((nl = buf.indexOf("\n")) >= 0) {
        options.onLine(buf.slice(0, nl));
        buf = buf.slice(nl + 1);
      }
    }
  })().catch(() => {});

  return {
    pid: child.pid,
    tcpPort: ports.tcp,
    udpPort: ports.udp,
    peakRssKiB: () => peakRssKiB(child.pid),
    cpuSeconds: () => processCpuSeconds(child.pid),
    rssKiB: () => currentRssKiB(child.pid),
    stderrTail: () => tail,
    died: () =>
      ended && !stopping
        ? {
          code: ended.signal ? null : ended.code,
          signal: ended.signal ?? null,
          stderr: lastLine(tail),
        }
        : null,
    exited: status.then(() => {}, () => {}),
    stop,
  };
}

/** One load generator result: the fields of loadgen's JSON line. */
export interface LoadResult {
  /** Requests completed in the measured window. */
  requests: number;
  /** Length of the measured window in seconds. */
  seconds: number;
  /** Requests per second. */
  rps: number;
  /** Echoed payload, 10^6 bytes per second, one direction. */
  mbps: number;
  /** Connection and socket errors. */
  errors: number;
  /** Requests whose echoed bytes differed from what was sent. */
  mismatches: number;
  /** UDP datagrams not answered within the time-out. */
  lost: number;
  /** Median latency in µs. */
  p50_us: number;
  /** 90th percentile latency in µs. */
  p90_us: number;
  /** 99th percentile latency in µs. */
  p99_us: number;
  /** 99.9th percentile latency in µs. */
  p999_us: number;
  /** Largest latency in µs. */
  max_us: number;
  /** Connections that completed at least one request in the measured window. */
  connections_served: number;
  /** Any further fields the generator printed. */
  [extra: string]: number;
}

/** Options for {@linkcode runGenerator}. */
export interface RunGeneratorOptions {
  /** Pin the generator to this CPU with taskset. */
  cpu?: number;
  /** Kill the generator after this many ms (default 60,000). */
  timeoutMs?: number;
}

/**
 * Runs a load generator that prints one JSON line on stdout and parses that line.
 *
 * @example
 * ```ts
 * import { runGenerator } from "./_peers.ts";
 * const res = await runGenerator(["bench/native/bin/loadgen", "--port", "7", "--duration", "1"]);
 * console.log(res.rps);
 * ```
 *
 * @param cmd The generator and its arguments.
 * @param options CPU pinning and time limit.
 * @returns The parsed result.
 */
export async function runGenerator(
  cmd: string[],
  options: RunGeneratorOptions = {},
): Promise<LoadResult> {
  const out = await runCommand(pinned(cmd, options.cpu), {
    timeoutMs: options.timeoutMs ?? 60_000,
    cwd: REPO_DIR,
  });
  const line = out.stdout.trim().split("\n").filter((l) => l.startsWith("{")).pop();
  if (out.code !== 0 || !line) {
    throw new Error(
      `${cmd[0]} failed (code ${out.code}): ${out.stderr.trim().split("\n").slice(-2).join(" | ")}`,
    );
  }
  return JSON.parse(line) as LoadResult;
}

/**
 * Turns anything thrown into one line of text.
 *
 * @example
 * ```ts
 * import { errorText } from "./_peers.ts";
 * console.log(errorText(new Error("boom"))); // "boom"
 * ```
 *
 * @param err What was thrown.
 * @returns Its message.
 */
export function errorText(err: unknown): string {
  return (err instanceof Error ? err.message : String(err)).split("\n")[0];
}
