/**
 * How the allow-list scales (issue 10 #6): what 1, 10,000 and 50,000 CIDR rules cost to build,
 * to hold and to look up in `CidrList`, and what they cost `server.ts` at start-up (time to its
 * ready line, resident memory) and per datagram (UDP ping-pong rate against the rules).
 *
 * ```sh
 * deno run -A bench/allow_scale.ts [--sizes 1,10000,50000] [--root DIR] [--label TEXT] [--json FILE]
 * ```
 *
 * `--root DIR` measures another checkout of the project (e.g. the code before the range table:
 * `git archive 28060da | tar -x -C /tmp/before`); a checkout whose `server.ts` has no
 * `--allow-file` gets its rules as repeated `--allow` flags only. The rules are the same for
 * every root (seed 1): 80% IPv4 prefixes /8-/32 and 20% IPv6 /32-/64, none of them covering
 * 127.0.0.0/8, which comes last, so the ping-pong datagrams are served only after every other
 * rule was considered (the worst case of a linear scan).
 *
 * The ping-pong rate is the median of three 1 s runs; on a shared machine it varies by tens of
 * percent from run to run, so compare rows of one report only. Each library figure comes from a
 * fresh child process (`--v8-flags=--expose-gc`, so the heap
 * is measured after a collection); `-A` is needed to read the server child's `/proc/PID/status`.
 * Prints a markdown report on stdout, progress on stderr. Loopback only, every step bounded.
 *
 * @module
 */
import { Random } from "../_random.ts";
import { currentRssKiB, errorText, REPO_DIR } from "./_peers.ts";

const HOST = "127.0.0.1";
/** Lookups per library measurement, unless the time budget runs out first. */
const LOOKUPS = 200_000;
/** Time budgets, ms: lookups, and each UDP ping-pong run (the median of PING_RUNS is kept). */
const LOOKUP_BUDGET_MS = 2_000;
const PING_MS = 1_000;
const PING_RUNS = 3;
/** A server that prints no ready line within this long is killed and recorded as failed. */
const READY_TIMEOUT_MS = 60_000;

interface LibrarySample {
  rules: number;
  buildMs: number;
  memoryMiB: number;
  lookupNs: number;
  lookups: number;
}

interface CliSample {
  rules: number;
  via: "none" | "--allow" | "--allow-file";
  readyMs: number | null;
  rssMiB: number | null;
  pingPerSecond: number | null;
  note?: string;
}

function flag(argv: string[], name: string): string | undefined {
  const i = argv.indexOf(`--${name}`);
  return i < 0 ? undefined : argv[i + 1];
}

/** The rules: `count - 1` random ones that never cover 127.0.0.0/8, then 127.0.0.0/8. */
function makeRules(count: number): string[] {
  const random = new Random(1);
  const int = (n: number) => Math.floor(random.next() * n);
  const rules: string[] = [];
  while (rules.length < count - 1) {
    if (random.next() < 0.8) {
      let first = 1 + int(223);
      if (first === 127) first = 128;
      const bits = 8 + int(25);
      rules.push(`${first}.${int(256)}.${int(256)}.${int(256)}/${bits}`);
    } else {
      const groups = Array.from({ length: 4 }, () => int(0x10000).toString(16));
      rules.push(`2001:${groups.join(":")}::/${32 + int(33)}`);
    }
  }
  if (count > 0) rules.push("127.0.0.0/8");
  return rules;
}

/** Random addresses to look up, of both families. */
function makeAddresses(count: number): string[] {
  const random = new Random(2);
  const int = (n: number) => Math.floor(random.next() * n);
  return Array.from(
    { length: count },
    (_, i) =>
      i % 5 === 4
        ? `2001:${Array.from({ length: 7 }, () => int(0x10000).toString(16)).join(":")}`
        : `${1 + int(223)}.${int(256)}.${int(256)}.${int(256)}`,
  );
}

/** Child mode: builds one CidrList from a rules file under `root` and prints a JSON sample. */
async function libraryChild(root: string, file: string): Promise<void> {
  const gc = (globalThis as { gc?: () => void }).gc ?? (() => {});
  const { CidrList } = await import(`file://${root}/cidr.ts`);
  const rules = (await Deno.readTextFile(file)).split("\n").filter((line) => line !== "");
  const addresses = makeAddresses(LOOKUPS);
  // Heap and external memory (typed arrays' backing stores are external to the V8 heap).
  const held = () => {
    const { heapUsed, external } = Deno.memoryUsage();
    return heapUsed + external;
  };
  gc();
  const heapBefore = held();
  const started = performance.now();
  const list = new CidrList(rules);
  const buildMs = performance.now() - started;
  gc();
  const memoryMiB = (held() - heapBefore) / 2 ** 20;
  let matched = 0;
  let lookups = 0;
  const from = performance.now();
  for (; lookups < addresses.length; lookups++) {
    if (list.matches(addresses[lookups])) matched++;
    if ((lookups & 1023) === 1023 && performance.now() - from > LOOKUP_BUDGET_MS) break;
  }
  const lookupNs = (performance.now() - from) * 1e6 / lookups;
  const sample: LibrarySample & { matched: number } = {
    rules: rules.length,
    buildMs,
    memoryMiB,
    lookupNs,
    lookups,
    matched,
  };
  console.log(JSON.stringify(sample));
}

async function librarySample(root: string, file: string): Promise<LibrarySample> {
  const output = await new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "-A",
      "--v8-flags=--expose-gc",
      new URL(import.meta.url).pathname,
      "--lib-child",
      file,
      "--root",
      root,
    ],
    stdout: "piped",
    stderr: "piped",
  }).output();
  const text = new TextDecoder().decode(output.stdout).trim().split("\n").at(-1) ?? "";
  if (!output.success) throw new Error(new TextDecoder().decode(output.stderr));
  return JSON.parse(text);
}

/** Starts server.ts --udp under `root`, times its ready line, reads its RSS, pings it. */
async function cliSample(
  root: string,
  rules: string[],
  via: CliSample["via"],
  file: string,
): Promise<CliSample> {
  const args = ["run", "--allow-net", "--allow-read", "server.ts", "--udp", "-q", "-p", "0"];
  if (via === "--allow-file") args.push("--allow-file", file);
  // One argument a rule (`--allow=RULE`): 50,000 pairs of arguments would pass ARG_MAX.
  if (via === "--allow") { for (const rule of rules) args.push(`--allow=${rule}`); }
  const sample: CliSample = {
    rules: rules.length,
    via,
    readyMs: null,
    rssMiB: null,
    pingPerSecond: null,
  };
  const started = performance.now();
  let child: Deno.ChildProcess;
  try {
    child = new Deno.Command(Deno.execPath(), {
      args,
      cwd: root,
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
    }).spawn();
  } catch (error) {
    sample.note = errorText(error);
    return sample;
  }
  const stderr = new Response(child.stderr).text();
  const lines = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
  const timer = setTimeout(() => child.kill("SIGKILL"), READY_TIMEOUT_MS);
  let port: number | undefined;
  let buffered = "";
  try {
    while (port === undefined) {
      const { value, done } = await lines.read();
      if (done) break;
      buffered += value;
      const match = /listening udp 127\.0\.0\.1:(\d+)/.exec(buffered);
      if (match) port = Number(match[1]);
    }
  } finally {
    clearTimeout(timer);
  }
  if (port === undefined) {
    child.kill("SIGKILL");
    await child.status;
    sample.note = (await stderr).trim().split("\n")[0] || "no ready line";
    return sample;
  }
  sample.readyMs = performance.now() - started;
  const rss = await currentRssKiB(child.pid);
  sample.rssMiB = rss === null ? null : rss / 1024;
  const rates: number[] = [];
  for (let run = 0; run < PING_RUNS; run++) rates.push(await pingPong(port));
  sample.pingPerSecond = rates.sort((a, b) => a - b)[PING_RUNS >> 1];
  child.kill("SIGINT");
  const drain = (async () => {
    while (!(await lines.read()).done) { /* drain */ }
  })();
  await Promise.all([child.status, drain, stderr]);
  return sample;
}

/** One socket, one datagram in flight, for PING_MS: round trips per second (0: no replies). */
async function pingPong(port: number): Promise<number> {
  const socket = Deno.listenDatagram({ transport: "udp", hostname: HOST, port: 0 });
  const target: Deno.NetAddr = { transport: "udp", hostname: HOST, port };
  const payload = new Uint8Array(32);
  const view = new DataView(payload.buffer);
  let count = 0;
  const started = performance.now();
  try {
    while (performance.now() - started < PING_MS) {
      // A sequence number in each: the same bytes again and again would be taken for an echo
      // loop (loop_guard.ts's BounceDetector) and dropped.
      view.setUint32(0, count);
      await socket.send(payload, target);
      const timeout = setTimeout(() => socket.close(), 1_000);
      try {
        await socket.receive();
      } finally {
        clearTimeout(timeout);
      }
      count++;
    }
  } catch {
    return 0; // a reply that never came: the rules refused us
  } finally {
    try {
      socket.close();
    } catch {
      // closed by the timeout
    }
  }
  return count / ((performance.now() - started) / 1000);
}

async function main(argv: string[]): Promise<void> {
  const childFile = flag(argv, "lib-child");
  const root = (flag(argv, "root") ?? REPO_DIR).replace(/\/$/, "");
  if (childFile !== undefined) return await libraryChild(root, childFile);
  const sizes = (flag(argv, "sizes") ?? "1,10000,50000").split(",").map(Number);
  const label = flag(argv, "label") ?? root;
  const help = await new Deno.Command(Deno.execPath(), {
    args: ["run", "server.ts", "--help"],
    cwd: root,
    stdout: "piped",
  }).output();
  const hasFile = new TextDecoder().decode(help.stdout).includes("--allow-file");
  const dir = await Deno.makeTempDir({ prefix: "allow_scale_" });
  const library: LibrarySample[] = [];
  const cli: CliSample[] = [];
  try {
    console.error(`allow_scale: ${label}: no rules`);
    cli.push(await cliSample(root, [], "none", ""));
    for (const size of sizes) {
      const rules = makeRules(size);
      const file = `${dir}/rules_${size}.txt`;
      await Deno.writeTextFile(file, rules.join("\n") + "\n");
      console.error(`allow_scale: ${label}: ${size} rules: library`);
      library.push(await librarySample(root, file));
      for (const via of hasFile ? ["--allow-file", "--allow"] as const : ["--allow"] as const) {
        console.error(`allow_scale: ${label}: ${size} rules: server.ts ${via}`);
        cli.push(await cliSample(root, rules, via, file));
      }
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
  const fixed = (n: number | null, digits = 1) => n === null ? "-" : n.toFixed(digits);
  const out = [
    `## allow-list scale: ${label}`,
    "",
    `deno ${Deno.version.deno}, ${navigator.hardwareConcurrency} cores, ${
      new Date().toISOString()
    }`,
    "",
    "| rules | build (ms) | memory held (MiB) | lookup (ns) |",
    "| ----: | ---------: | ----------------: | ----------: |",
    ...library.map((s) =>
      `| ${s.rules} | ${fixed(s.buildMs)} | ${fixed(s.memoryMiB)} | ${fixed(s.lookupNs, 0)} |`
    ),
    "",
    "| server.ts rules | given as | ready after (ms) | RSS at ready (MiB) | UDP ping-pong (/s) |",
    "| --------------: | -------- | ---------------: | -----------------: | -----------------: |",
    ...cli.map((s) =>
      `| ${s.rules} | ${s.via} | ${fixed(s.readyMs, 0)} | ${fixed(s.rssMiB)} | ` +
      `${fixed(s.pingPerSecond, 0)}${s.note ? ` (${s.note})` : ""} |`
    ),
    "",
  ];
  console.log(out.join("\n"));
  const json = flag(argv, "json");
  if (json) {
    await Deno.writeTextFile(
      json,
      JSON.stringify({ label, deno: Deno.version.deno, library, cli }, null, 2) + "\n",
    );
  }
}

if (import.meta.main) await main(Deno.args);
