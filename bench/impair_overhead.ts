/**
 * "No slowdown when off": UDP request/response throughput and server CPU per request of our
 * server (`server.ts --udp`) with the impairment stage off, and with it on but inert, judged by
 * the native load generator.
 *
 * ```sh
 * deno run -A bench/impair_overhead.ts [--runs 5] [--duration 3] [--warmup 1] [--no-pin]
 * ```
 *
 * Three configurations of the same server program, interleaved run by run (each run starts with
 * a different one) and reported as medians:
 *
 * - `off`: no impairment flags. `serveUdpEcho` creates no stage; the receive loop tests one
 *   `undefined` per datagram and sends directly.
 * - `off, flags given`: `--loss 0 --seed 1`. Impairment options are present but ask for nothing
 *   (`isImpairing` is false), so again no stage is built: the same code path as `off`.
 * - `on, inert`: `--loss 1e-9 --seed 1`. The stage is built and every reply goes through
 *   `UdpImpairment.submit` (four generator draws, a per-reply promise list) and is almost surely
 *   never dropped (expected drops over 10^6 replies: 0.001). This is what the stage costs when on,
 *   and so an upper bound on anything `off` could cost.
 *
 * Prints a markdown table on stdout, progress on stderr.
 *
 * @module
 */
import {
  buildNative,
  canPin,
  errorText,
  pinned,
  processCpuSeconds,
  REPO_DIR,
  runGenerator,
} from "./_peers.ts";

const HOST = "127.0.0.1";

interface Config {
  name: string;
  flags: string[];
}

const CONFIGS: readonly Config[] = [
  { name: "off (no flags)", flags: [] },
  { name: "off, flags given (--loss 0 --seed 1)", flags: ["--loss", "0", "--seed", "1"] },
  { name: "on, inert (--loss 1e-9 --seed 1)", flags: ["--loss", "1e-9", "--seed", "1"] },
];

/** The traffic: 16 sockets, 2 datagrams of 64 bytes in flight on each (32 in all). */
const CELL = ["--proto", "udp", "--mode", "rr", "--connections", "16", "--size", "64"];
const PIPELINE = "2";

interface Sample {
  rps: number;
  p99: number;
  cpuUsPerRequest: number | null;
  lost: number;
  describe: string;
}

function arg(argv: string[], name: string, fallback: number): number {
  const i = argv.indexOf(`--${name}`);
  if (i < 0) return fallback;
  const value = Number(argv[i + 1]);
  if (!(value > 0)) throw new RangeError(`--${name} must be a positive number, got ${argv[i + 1]}`);
  return value;
}

/** Starts server.ts, returns its pid, UDP port and ready line (with the impairment, if any). */
async function start(flags: string[], cpu: number | undefined) {
  const cmd = pinned([
    Deno.execPath(),
    "run",
    "--allow-net",
    "server.ts",
    "--udp",
    "--host",
    HOST,
    "--port",
    "0",
    "--quiet",
    ...flags,
  ], cpu);
  const child = new Deno.Command(cmd[0], {
    args: cmd.slice(1),
    cwd: REPO_DIR,
    stdin: "null",
    stdout: "piped",
    stderr: "null",
  }).spawn();
  const reader = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
  let buffered = "";
  let line: string | undefined;
  while (line === undefined) {
    const { value, done } = await reader.read();
    if (done) throw new Error(`server.ts ${flags.join(" ")} exited before its ready line`);
    buffered += value;
    const nl = buffered.indexOf("\n");
    if (nl >= 0) line = buffered.slice(0, nl);
  }
  const match = /^listening udp [^\s]+:(\d+)(?: \(impaired: (.*)\))?$/.exec(line);
  if (!match) throw new Error(`unexpected ready line: ${line}`);
  // Keep draining stdout so the server never blocks on a full pipe.
  (async () => {
    while (!(await reader.read()).done) { /* discard */ }
  })().catch(() => {});
  return {
    pid: child.pid,
    port: Number(match[1]),
    impairment: match[2] ?? "none",
    async stop() {
      child.kill("SIGTERM");
      await child.status;
    },
  };
}

function median(values: number[]): number {
  const sorted = values.toSorted((a, b) => a - b);
  const mid = sorted.length >> 1;
  return sorted.length % 2 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2;
}

async function main(argv: string[]): Promise<number> {
  const runs = arg(argv, "runs", 5);
  const duration = arg(argv, "duration", 3);
  const warmup = arg(argv, "warmup", 1);
  const built = await buildNative();
  if (!built.loadgen) {
    console.error(`impair_overhead: no load generator: ${built.reason}`);
    return 1;
  }
  const pin = !argv.includes("--no-pin") && await canPin([0, 1]);
  const samples = new Map<string, Sample[]>(CONFIGS.map((c) => [c.name, []]));
  for (let run = 0; run < runs; run++) {
    for (let k = 0; k < CONFIGS.length; k++) {
      const config = CONFIGS[(run + k) % CONFIGS.length];
      console.error(`run ${run + 1}/${runs}: ${config.name}`);
      const server = await start(config.flags, pin ? 0 : undefined);
      try {
        const cpuBefore = await processCpuSeconds(server.pid);
        const result = await runGenerator([
          built.loadgen,
          "--host",
          HOST,
          "--port",
          String(server.port),
          ...CELL,
          "--pipeline",
          PIPELINE,
          "--duration",
          String(duration),
          "--warmup",
          String(warmup),
        ], { cpu: pin ? 1 : undefined });
        const cpuAfter = await processCpuSeconds(server.pid);
        // CPU over warm-up + measurement, divided by the requests of both (rps × total time).
        const requests = result.rps * (duration + warmup);
        samples.get(config.name)!.push({
          rps: result.rps,
          p99: result.p99_us,
          cpuUsPerRequest: cpuBefore === null || cpuAfter === null
            ? null
            : ((cpuAfter - cpuBefore) / requests) * 1e6,
          lost: result.lost,
          describe: server.impairment,
        });
      } catch (error) {
        console.error(`  failed: ${errorText(error)}`);
      } finally {
        await server.stop();
      }
    }
  }
  const base = median(samples.get(CONFIGS[0].name)!.map((s) => s.rps));
  console.log(
    `UDP request/response, 64 B, 16 sockets × ${PIPELINE} in flight; ${runs} interleaved runs of ` +
      `${duration} s (+${warmup} s warm-up); ${
        pin ? "server on CPU 0, loadgen on CPU 1" : "unpinned"
      }; ` +
      `deno ${Deno.version.deno}\n`,
  );
  const rows = [[
    "server.ts --udp",
    "stage",
    "req/s (median)",
    "min–max",
    "vs off",
    "p99 µs",
    "CPU µs/req",
    "lost",
  ]];
  for (const config of CONFIGS) {
    const s = samples.get(config.name)!;
    if (s.length === 0) continue;
    const rps = s.map((x) => x.rps);
    const cpu = s.map((x) => x.cpuUsPerRequest).filter((x): x is number => x !== null);
    rows.push([
      config.name,
      s[0].describe === "none" ? "not built" : "built",
      median(rps).toFixed(0),
      `${Math.min(...rps).toFixed(0)}–${Math.max(...rps).toFixed(0)}`,
      (median(rps) / base).toFixed(3),
      median(s.map((x) => x.p99)).toFixed(0),
      cpu.length ? median(cpu).toFixed(2) : "n/a",
      String(s.reduce((n, x) => n + x.lost, 0)),
    ]);
  }
  const widths = rows[0].map((_, c) => Math.max(...rows.map((r) => r[c].length)));
  const line = (r: string[]) =>
    `| ${
      r.map((cell, c) => (c < 2 ? cell.padEnd(widths[c]) : cell.padStart(widths[c]))).join(" | ")
    } |`;
  console.log(line(rows[0]));
  console.log(
    `| ${widths.map((w, c) => (c < 2 ? "-".repeat(w) : "-".repeat(w - 1) + ":")).join(" | ")} |`,
  );
  for (const r of rows.slice(1)) console.log(line(r));
  return 0;
}

if (import.meta.main) Deno.exit(await main(Deno.args));
