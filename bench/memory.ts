/**
 * Peak RSS of our server at 1,000 busy connections, started the ways users start it: `deno run
 * --allow-net server.ts`, `deno task start`, and a `deno install`ed copy. Each start can be given
 * V8 flags the way that start takes them (`--v8-flags=` on `deno run` and `deno install`,
 * `DENO_V8_FLAGS` for the task, whose command line lives in deno.json), so the flags that work
 * can be found per start method. The native load generator drives 64 B request/response on every
 * connection; the peak (VmHWM) is read from /proc for the whole process tree the start made (the
 * task runner and its `deno run` child are both shown). Each start is bounded (about 20 s).
 *
 * ```sh
 * deno run -A bench/memory.ts [--methods run,task,install] [--v8-flags FLAGS]... [--no-baseline]
 *   [--connections 1000] [--duration 8] [--json FILE]
 * ```
 *
 * @module
 */
import { parseArgs } from "node:util";
import {
  buildNative,
  canPin,
  currentRssKiB,
  errorText,
  peakRssKiB,
  REPO_DIR,
  runCommand,
  runGenerator,
  startServer,
} from "./_peers.ts";

/** How a user starts the server. */
export type StartMethod = "run" | "task" | "install";

/** Every start method, in report order. */
export const METHODS: readonly StartMethod[] = ["run", "task", "install"];

// As users start it (no --quiet): only the address differs, so that runs never collide.
const SERVER_ARGS = ["--host", "127.0.0.1", "--port", "0"];

/** One process of the tree a start made, at the end of the load. */
export interface TreeProcess {
  /** Process id. */
  pid: number;
  /** Its command line. */
  cmdline: string;
  /** Peak RSS (VmHWM) in KiB. */
  peakKiB: number | null;
  /** RSS now (VmRSS) in KiB. */
  rssKiB: number | null;
}

/** One start method with one set of V8 flags, measured. */
export interface MemoryResult {
  /** The start method. */
  method: StartMethod;
  /** V8 flags given, or "" for none. */
  v8Flags: string;
  /** How the flags reached the process. */
  how: string;
  /** The command that was started. */
  command: string[];
  /** The largest peak RSS in the process tree, KiB (the server itself). */
  peakKiB?: number;
  /** Every process of the tree. */
  tree?: TreeProcess[];
  /** The load generator's figures. */
  rps?: number;
  /** Connections that were served. */
  served?: number;
  /** Connection errors. */
  errors?: number;
  /** Why it could not be measured. */
  error?: string;
}

/**
 * All descendants of a process, from /proc (parent ids in /proc/PID/stat).
 *
 * @example
 * ```ts
 * import { descendants } from "./memory.ts";
 * console.log(await descendants(Deno.pid));
 * ```
 *
 * @param root The process id.
 * @returns The ids of its children, grandchildren and so on.
 */
export async function descendants(root: number): Promise<number[]> {
  const parent = new Map<number, number>();
  try {
    for await (const entry of Deno.readDir("/proc")) {
      if (!/^\d+$/.test(entry.name)) continue;
      try {
        const stat = await Deno.readTextFile(`/proc/${entry.name}/stat`);
        const ppid = Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[1]);
        parent.set(Number(entry.name), ppid);
      } catch { /* gone */ }
    }
  } catch {
    return [];
  }
  const out: number[] = [];
  const walk = (pid: number) => {
    for (const [child, p] of parent) {
      if (p === pid) {
        out.push(child);
        walk(child);
      }
    }
  };
  walk(root);
  return out;
}

async function cmdline(pid: number): Promise<string> {
  try {
    return (await Deno.readTextFile(`/proc/${pid}/cmdline`)).split("\0").join(" ").trim();
  } catch {
    return "?";
  }
}

/** Installs server.ts with `deno install -g` into a temporary root; returns the shim's path. */
async function install(root: string, v8Flags: string): Promise<string> {
  const name = "echo-server-memory";
  const out = await runCommand([
    Deno.execPath(),
    "install",
    "-g",
    "-f",
    "--root",
    root,
    "-n",
    name,
    "--allow-net",
    ...(v8Flags ? [`--v8-flags=${v8Flags}`] : []),
    `${REPO_DIR}/server.ts`,
  ], { cwd: REPO_DIR, timeoutMs: 60_000 });
  if (out.code !== 0) throw new Error(`deno install failed: ${out.stderr.trim().split("\n")[0]}`);
  return `${root}/bin/${name}`;
}

/** Options for {@linkcode measureStart}. */
export interface MeasureStartOptions {
  /** Path to the native load generator. */
  loadgen: string;
  /** Connections (default 1,000). */
  connections?: number;
  /** Measured seconds (default 8). */
  duration?: number;
  /** Pin server to CPU 0, generator to CPU 1. */
  pin?: boolean;
  /** Temporary directory for the installed copy. */
  tmp: string;
}

/**
 * Starts the server one way, loads it with busy connections and reads the peak RSS of every
 * process the start made. Never throws: a failure is in `error`.
 *
 * @example
 * ```ts ignore
 * import { measureStart } from "./memory.ts";
 * const r = await measureStart("run", "--max-semi-space-size=1", { loadgen, tmp: "/tmp/x" });
 * console.log(r.peakKiB);
 * ```
 *
 * @param method How to start it.
 * @param v8Flags V8 flags ("" for none).
 * @param options Generator, load and placement.
 * @returns The measurement.
 */
export async function measureStart(
  method: StartMethod,
  v8Flags: string,
  options: MeasureStartOptions,
): Promise<MemoryResult> {
  const deno = Deno.execPath();
  let command: string[];
  let how = "";
  let env: Record<string, string> | undefined;
  const result = (extra: Partial<MemoryResult>): MemoryResult => ({
    method,
    v8Flags,
    how,
    command,
    ...extra,
  });
  command = [];
  try {
    if (method === "run") {
      how = v8Flags ? "--v8-flags= on the deno run command line" : "";
      command = [
        deno,
        "run",
        ...(v8Flags ? [`--v8-flags=${v8Flags}`] : []),
        "--allow-net",
        "server.ts",
        ...SERVER_ARGS,
      ];
    } else if (method === "task") {
      how = v8Flags ? "DENO_V8_FLAGS in the environment (the task's command is in deno.json)" : "";
      if (v8Flags) env = { DENO_V8_FLAGS: v8Flags };
      command = [deno, "task", "-q", "start", ...SERVER_ARGS];
    } else {
      how = v8Flags ? "deno install --v8-flags= (baked into the installed shim)" : "";
      command = [await install(options.tmp, v8Flags), ...SERVER_ARGS];
    }
  } catch (err) {
    return result({ error: errorText(err) });
  }
  let server;
  try {
    server = await startServer(command, {
      expect: ["tcp"],
      timeoutMs: 10_000,
      cpu: options.pin ? 0 : undefined,
      env,
    });
  } catch (err) {
    return result({ error: errorText(err) });
  }
  try {
    const connections = options.connections ?? 1000;
    const load = await runGenerator([
      options.loadgen,
      "--host",
      "127.0.0.1",
      "--port",
      String(server.tcpPort),
      "--proto",
      "tcp",
      "--mode",
      "rr",
      "--connections",
      String(connections),
      "--size",
      "64",
      "--pipeline",
      "1",
      "--duration",
      String(options.duration ?? 8),
      "--warmup",
      "1",
    ], { cpu: options.pin ? 1 : undefined, timeoutMs: ((options.duration ?? 8) + 8) * 1000 });
    const pids = [server.pid, ...await descendants(server.pid)];
    const tree: TreeProcess[] = [];
    for (const pid of pids) {
      tree.push({
        pid,
        cmdline: await cmdline(pid),
        peakKiB: await peakRssKiB(pid),
        rssKiB: await currentRssKiB(pid),
      });
    }
    const peaks = tree.map((p) => p.peakKiB ?? 0);
    const gone = server.died();
    if (gone) return result({ error: `the server died: ${JSON.stringify(gone)}` });
    return result({
      peakKiB: Math.max(...peaks),
      tree,
      rps: load.rps,
      served: load.connections_served,
      errors: load.errors,
    });
  } catch (err) {
    return result({ error: errorText(err) });
  } finally {
    await server.stop();
  }
}

/**
 * The markdown table of a set of measurements.
 *
 * @example
 * ```ts
 * import { renderMemory } from "./memory.ts";
 * console.log(renderMemory([{ method: "run", v8Flags: "", how: "", command: [], error: "x" }], 1000));
 * ```
 *
 * @param results The measurements.
 * @param connections The connections they were taken at.
 * @returns The markdown.
 */
export function renderMemory(results: MemoryResult[], connections: number): string {
  const mib = (k: number | null | undefined) => k ? (k / 1024).toFixed(1) : "—";
  const out = [
    `### Peak RSS at ${connections.toLocaleString("en-US")} busy connections, per start method`,
    "",
    "| start | V8 flags | how the flags got there | peak RSS (MiB) | processes (peak MiB) | req/s | served |",
    "| --- | --- | --- | ---: | --- | ---: | ---: |",
  ];
  for (const r of results) {
    const flags = r.v8Flags ? `\`${r.v8Flags}\`` : "none";
    if (r.error) {
      out.push(`| ${r.method} | ${flags} | ${r.how || "—"} | failed: ${r.error} | | | |`);
      continue;
    }
    const tree = (r.tree ?? []).map((p) =>
      `${p.cmdline.split(" ").slice(0, 3).map((w) => w.split("/").pop()).join(" ")}: ${
        mib(p.peakKiB)
      }`
    ).join("; ");
    out.push(
      `| ${r.method} | ${flags} | ${r.how || "—"} | ${mib(r.peakKiB)} | ${tree} | ${
        r.rps?.toFixed(0) ?? "—"
      } | ${r.served ?? "—"}/${connections} |`,
    );
  }
  return out.join("\n");
}

async function cli(argv: string[]): Promise<number> {
  let values;
  try {
    ({ values } = parseArgs({
      args: argv,
      options: {
        methods: { type: "string", default: METHODS.join(",") },
        "v8-flags": { type: "string", multiple: true, default: [] },
        "no-baseline": { type: "boolean", default: false },
        connections: { type: "string", default: "1000" },
        duration: { type: "string", default: "8" },
        json: { type: "string" },
        help: { type: "boolean", short: "h", default: false },
      },
    }));
  } catch (err) {
    console.error(`memory: ${errorText(err)}`);
    return 2;
  }
  if (values.help) {
    console.log(
      "usage: deno run -A bench/memory.ts [--methods run,task,install] [--v8-flags FLAGS]... " +
        "[--no-baseline] [--connections 1000] [--duration 8] [--json FILE]",
    );
    return 0;
  }
  const methods = values.methods!.split(",").map((m) => m.trim()) as StartMethod[];
  const bad = methods.filter((m) => !METHODS.includes(m));
  const connections = Number(values.connections);
  const duration = Number(values.duration);
  if (
    bad.length || !Number.isInteger(connections) || connections < 1 || connections > 20_000 ||
    !(duration > 0 && duration <= 12)
  ) {
    console.error(
      `memory: --methods takes ${METHODS.join(",")}; --connections 1..20000; --duration 0..12 s`,
    );
    return 2;
  }
  const flagSets = [...(values["no-baseline"] ? [] : [""]), ...values["v8-flags"]!];
  if (!flagSets.length) {
    console.error("memory: nothing to measure (--no-baseline without --v8-flags)");
    return 2;
  }
  const native = await buildNative();
  if (!native.loadgen) {
    console.error(`memory: no load generator: ${native.reason}`);
    return 1;
  }
  const pin = await canPin([0, 1]);
  const tmp = await Deno.makeTempDir({ prefix: "echo-memory-" });
  const results: MemoryResult[] = [];
  try {
    for (const flags of flagSets) {
      for (const method of methods) {
        console.error(`memory: ${method}${flags ? ` with ${flags}` : ""}…`);
        const r = await measureStart(method, flags, {
          loadgen: native.loadgen,
          connections,
          duration,
          pin,
          tmp,
        });
        console.error(
          r.error
            ? `memory:   failed: ${r.error}`
            : `memory:   peak ${(r.peakKiB! / 1024).toFixed(1)} MiB`,
        );
        results.push(r);
      }
    }
  } finally {
    await Deno.remove(tmp, { recursive: true }).catch(() => {});
  }
  console.log(
    `Deno ${Deno.version.deno}, ${navigator.hardwareConcurrency} CPUs, ${
      pin ? "server on CPU 0, generator on CPU 1" : "unpinned"
    }, 64 B request/response, 1 s warm-up + ${duration} s. Not measurable here: \`deno run jsr:…\` ` +
      "(JSR is not reachable from this machine).\n",
  );
  console.log(renderMemory(results, connections));
  if (values.json) {
    await Deno.writeTextFile(values.json, JSON.stringify(results, null, 2) + "\n");
  }
  return results.some((r) => r.error) ? 1 : 0;
}

if (import.meta.main) {
  Deno.exit(await cli(Deno.args));
}
