/**
 * Ping RTT over TCP and over WebSocket on loopback, through the real CLIs: one `server.ts --port 0
 * --ws 0`, then `client.ts --ping --count 2000 --interval 1ms --json` over TCP and the same with
 * `--ws`, one after the other against that one server.
 *
 * ```sh
 * deno run -A bench/ws_vs_tcp_ping.ts [--count N] [--interval DURATION] [--out bench/results/ws_vs_tcp_ping]
 * ```
 *
 * Writes `OUT.json` (the commands and each run's `--json` output, histogram included) and `OUT.md`
 * (a table of min/p50/p90/p99/max); progress on stderr. Loopback only, every step bounded.
 *
 * @module
 */
import { REPO_DIR } from "./_peers.ts";

const args = Deno.args;
const flag = (name: string, fallback: string) => {
  const i = args.indexOf(`--${name}`);
  return i >= 0 && args[i + 1] !== undefined ? args[i + 1] : fallback;
};
const count = flag("count", "2000");
const interval = flag("interval", "1ms");
const out = flag("out", `${REPO_DIR}/bench/results/ws_vs_tcp_ping`);
const decoder = new TextDecoder();

/** Starts server.ts and reads its TCP and WebSocket ports from its ready lines. */
async function startServer(): Promise<{ child: Deno.ChildProcess; tcp: number; ws: number }> {
  const child = new Deno.Command(Deno.execPath(), {
    args: ["run", "--allow-net", "server.ts", "--port", "0", "--ws", "0", "--tcp"],
    cwd: REPO_DIR,
    stdin: "null",
    stdout: "piped",
    stderr: "inherit",
  }).spawn();
  const ports: Record<string, number> = {};
  const timer = setTimeout(() => child.kill(), 30_000);
  let text = "";
  const reader = child.stdout.getReader();
  while (ports.tcp === undefined || ports.ws === undefined) {
    const { value, done } = await reader.read();
    if (done) throw new Error(`server.ts ended before its ready lines:\n${text}`);
    text += decoder.decode(value, { stream: true });
    for (const [, transport, port] of text.matchAll(/^listening (tcp|ws) 127\.0\.0\.1:(\d+)/gm)) {
      ports[transport] = Number(port);
    }
  }
  clearTimeout(timer);
  // Keep draining its output (a session line per client) so it never blocks on a full pipe.
  void (async () => {
    while (!(await reader.read()).done) { /* drained */ }
  })();
  return { child, tcp: ports.tcp, ws: ports.ws };
}

async function ping(
  extra: string[],
): Promise<{ command: string; result: Record<string, unknown> }> {
  const argv = ["run", "--allow-net", "client.ts", "--ping", "--count", count, "--interval"];
  argv.push(interval, ...extra, "--json");
  const command = `deno ${argv.join(" ")}`;
  console.error(command);
  const output = await new Deno.Command(Deno.execPath(), {
    args: argv,
    cwd: REPO_DIR,
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).output();
  const stdout = decoder.decode(output.stdout).trim();
  if (output.code !== 0) {
    throw new Error(`${command}: exit ${output.code}: ${decoder.decode(output.stderr)}`);
  }
  return { command, result: JSON.parse(stdout.split("\n").at(-1)!) };
}

const server = await startServer();
let runs: { name: string; command: string; result: Record<string, unknown> }[];
try {
  const tcp = await ping(["--port", String(server.tcp)]);
  const ws = await ping(["--ws", "--port", String(server.ws)]);
  runs = [{ name: "tcp", ...tcp }, { name: "ws", ...ws }];
} finally {
  server.child.kill("SIGINT");
  await server.child.status;
}

const meta = {
  date: new Date().toISOString(),
  deno: Deno.version.deno,
  cores: navigator.hardwareConcurrency,
  server: "deno run --allow-net server.ts --port 0 --ws 0 --tcp (one server for both runs)",
};
await Deno.writeTextFile(`${out}.json`, JSON.stringify({ ...meta, runs }, null, 2) + "\n");

const ms = (us: unknown) => typeof us === "number" ? (us / 1000).toFixed(3) : "-";
const rows = runs.map(({ name, result: r }) =>
  `| ${name} | ${r.sent} | ${r.requests} | ${r.mismatches} | ${ms(r.min_us)} | ${ms(r.p50_us)} | ${
    ms(r.p90_us)
  } | ${ms(r.p99_us)} | ${ms(r.max_us)} |`
);
const md = [
  "# Ping RTT: TCP vs WebSocket on loopback",
  "",
  `deno ${meta.deno}, ${meta.cores} cores, ${meta.date}; made with \`deno run -A bench/ws_vs_tcp_ping.ts\`.`,
  `Server: \`${meta.server}\`. Clients, one after the other:`,
  "",
  ...runs.map((r) => `- ${r.name}: \`${r.command}\``),
  "",
  "| transport | sent | received | mismatches | min (ms) | p50 (ms) | p90 (ms) | p99 (ms) | max (ms) |",
  "| --------- | ---: | -------: | ---------: | -------: | -------: | -------: | -------: | -------: |",
  ...rows,
  "",
  "The whole `--json` output of each run (its lossless histogram included) is in",
  "`ws_vs_tcp_ping.json`.",
  "",
].join("\n");
await Deno.writeTextFile(`${out}.md`, md);
console.log(md);
