#!/usr/bin/env -S deno run --allow-net
/**
 * The echo server CLI: TCP and UDP echo (RFC 862) on 127.0.0.1:5006 until Ctrl-C.
 *
 * @example Usage
 * ```sh
 * deno run --allow-net server.ts [--host ADDR] [--port PORT] [--tcp|--udp] [--once] [-v|-q] [--json]
 * deno run --allow-net --allow-read server.ts --tls-cert FILE --tls-key FILE [options]
 * deno run --allow-read --allow-write --allow-net server.ts --unix PATH [options]
 * ```
 *
 * @module
 */
import {
  type CliSpec,
  countOf,
  EXIT_FAILURE,
  EXIT_OK,
  flagTable,
  type FlagValues,
  paletteFor,
  parseAddress,
  parseDurationFlag,
  parseFlags,
  parseInteger,
  parseRate,
  readAllowFile,
  readPemFile,
  renderHelp,
  runCli,
  unixPermissionError,
  UsageError,
  VERSION,
} from "./_cli.ts";
import { isLoopback } from "./cidr.ts";
import { serveEcho, validateServeOptions } from "./serve.ts";
import {
  DEFAULT_GRACE_PERIOD,
  type EchoAddr,
  type EchoImpairOptions,
  type ServeEchoOptions,
  type TlsServerOptions,
} from "./types.ts";
import { createStats } from "./stats.ts";
import { formatDuration } from "./duration.ts";
import { ServerReport } from "./_server_report.ts";
import { onShutdownSignals } from "./_cli_signals.ts";

const TRANSPORTS = "Transports (TCP only: no UDP with these)";
const SOURCES = "Sources (for a server reachable from the network)";
const IMPAIR = "Impairment (UDP; on TCP only --delay and --bandwidth: the kernel retransmits)";

const SPEC: CliSpec = {
  name: "server.ts",
  summary: "TCP and UDP echo server (RFC 862)",
  usage: [
    "deno run --allow-net server.ts [options]",
    "deno run --allow-net --allow-read server.ts --tls-cert FILE --tls-key FILE [options]",
    "deno run --allow-read --allow-write --allow-net server.ts --unix PATH [options]",
  ],
  flags: [
    ...flagTable(undefined, {
      "host|hostname ADDR": "address to bind (default 127.0.0.1; 0.0.0.0, :: or ::1 work too)",
      "port -p PORT": "port to bind (default 5006; 0 picks a free one, shared by TCP and UDP)",
      "tcp": "serve TCP only",
      "udp": "serve UDP only",
      "once": "serve one exchange (one TCP session or one datagram), then exit",
      "verbose -v": "show each received message (text, or a hex dump)",
      "quiet -q": "no per-event lines (the summary at exit still prints)",
      "json": "one JSON object per event line",
      "help -h": "show this help",
      "version -V": "show the version",
    }),
    ...flagTable(TRANSPORTS, {
      "tls-cert FILE":
        "serve TLS instead of plain TCP with this PEM certificate chain (needs --tls-key)",
      "tls-key FILE": "the certificate's PEM private key (unencrypted)",
      "unix PATH": "serve on a Unix domain socket at PATH instead (stale socket replaced)",
    }),
    ...flagTable("Performance", {
      "workers N|auto":
        "threads accepting TCP (N-1 Web Workers sharing the port; Linux, unstable net); auto = one per core",
    }),
    ...flagTable("Limits", {
      "max-connections N":
        "TCP sessions open at once; more are closed at once (default 4096, fd-limited)",
      "idle-timeout DURATION": "close a TCP session silent for this long (default 5m; 0 = off)",
      "max-session-bytes N": "close a TCP session after echoing N bytes (default: no cap)",
      "max-session-time DURATION": "close a TCP session after this long (default: no cap)",
      "udp-rate N":
        "datagrams/s answered per source (default 1000 off loopback, off on it; 0 = off)",
    }),
    ...flagTable("Access", {
      "allow CIDR ...":
        "serve only these sources (repeatable; IPv4 and IPv6), e.g. --allow 10.0.0.0/8",
      "no-loop-guard":
        "answer UDP from port 0, echo/chargen/... ports, broadcast and multicast too",
    }),
    ...flagTable(SOURCES, {
      "allow-file PATH ...":
        "serve only sources in this file's CIDR rules too (one a line, # comments; with --allow-read)",
      "max-per-source N":
        "TCP sessions open at once per source; more are closed at once (default 64 off loopback, off on it; 0 = off)",
      "per-source-prefix6 BITS":
        "leading bits of an IPv6 address that name one source for --max-per-source (default 64)",
    }),
    ...flagTable(IMPAIR, {
      "loss P": "drop each UDP reply with probability P (0..1)",
      "duplicate P": "send a UDP reply twice with probability P",
      "reorder P": "hold a UDP reply until 3 later ones went out (or 100ms) with probability P",
      "delay DURATION": "delay each reply (UDP datagram or TCP chunk) by DURATION",
      "jitter DURATION": "vary each UDP delay by ± DURATION (does not reorder by itself)",
      "bandwidth BYTES/S":
        "TCP: echo at most this many bytes per second (k, M, G suffixes: 1M = 10^6)",
      "seed N": "seed of the impairment generator (0..4294967295), for reproducible runs",
    }),
  ],
  examples: [
    ["deno run --allow-net server.ts", "TCP and UDP echo on 127.0.0.1:5006 until Ctrl-C"],
    ["deno run --allow-net server.ts --udp --once -v", "the tutorial's UDP server: one datagram"],
    ["deno run --allow-net server.ts --host :: -p 7007 --json", "all IPv6/IPv4 addresses, JSON"],
    [
      "deno run --allow-net server.ts --udp --loss 0.2 --reorder 0.1 --seed 7",
      "a lossy, reordering UDP echo to test clients against",
    ],
    [
      "deno run --allow-net server.ts --host 0.0.0.0 --allow 192.168.0.0/16",
      "reachable from the network, but only the local subnet is served",
    ],
    [
      "deno run --allow-net --allow-read server.ts --tls-cert cert.pem --tls-key key.pem",
      "echo over TLS on 127.0.0.1:5006 (try: client.ts --tls --ca cert.pem)",
    ],
    [
      "deno run --allow-read --allow-write --allow-net server.ts --unix /tmp/echo.sock",
      "echo on a Unix socket, removed again on exit (try: client.ts --unix /tmp/echo.sock)",
    ],
  ],
  notes: [
    "Events go to stdout, warnings and errors to stderr. SIGINT or SIGTERM shuts down gracefully\n" +
    "(open TCP sessions get a few seconds to finish); a second signal exits at once (one Ctrl-C\n" +
    "that a task runner forwards as well counts once). SIGUSR2 prints\n" +
    "the counters (not SIGUSR1: Deno 2.9 opens a debugger on 127.0.0.1:9229 on SIGUSR1). Durations: 250ms, 10s, 2m (a bare number is milliseconds).",
    "Refusal lines (refused ...) are limited to 10 a second for each transport and reason; the\n" +
    "rest are summed up in one line a second, and the counters have every one.",
    "--tls-cert/--tls-key serve TLS on TCP only (UDP is off; --udp with them is an error) and need\n" +
    "--allow-read for the two files. --unix serves a stream socket (no UDP, no --host, --port or\n" +
    "--allow) and needs --allow-read, --allow-write and --allow-net for PATH (Deno asks for all\n" +
    "three; --allow-net=unix:PATH is enough of the last).",
    "--workers N accepts TCP on N threads sharing the port (Linux, unstable net, and --allow-read\n" +
    "for the workers' module); UDP stays on the main thread; --max-connections and the counters\n" +
    "are totals over every thread.",
  ],
};

/** The flags -> the options of serveEcho (hooks, counters and signal are added by main). */
function options(values: FlagValues): ServeEchoOptions<EchoAddr> {
  if (values.quiet && values.verbose) throw new UsageError("--quiet and --verbose conflict");
  if (values.quiet && values.json) throw new UsageError("--quiet and --json conflict");
  const { hostname, port } = parseAddress(values);
  const text = (name: string) => values[name] as string | undefined;
  const duration = (name: string) => {
    const value = text(name);
    return value === undefined ? undefined : parseDurationFlag(value, `--${name}`);
  };
  const count = (name: string, min: number) => {
    const value = text(name);
    return value === undefined ? undefined : parseInteger(value, `--${name}`, { min });
  };
  const probability = (name: string) => {
    const value = text(name);
    if (value === undefined) return undefined;
    const p = Number(value);
    if (value.trim() === "" || !(p >= 0 && p <= 1)) {
      throw new UsageError(`--${name} must be a probability from 0 to 1, got "${value}"`);
    }
    return p;
  };
  const impair: EchoImpairOptions = {
    loss: probability("loss"),
    duplicate: probability("duplicate"),
    reorder: probability("reorder"),
    delay: duration("delay"),
    jitter: duration("jitter"),
    bandwidth: text("bandwidth") === undefined
      ? undefined
      : parseRate(text("bandwidth")!, "--bandwidth", "bytes"),
    seed: count("seed", 0),
  };
  if (impair.seed !== undefined && impair.seed > 0xffff_ffff) {
    throw new UsageError(`--seed must be from 0 to 4294967295, got "${text("seed")}"`);
  }
  return {
    hostname,
    port,
    transport: values.tcp && !values.udp ? "tcp" : values.udp && !values.tcp ? "udp" : "both",
    once: Boolean(values.once),
    maxConnections: count("max-connections", 1),
    maxPerSource: count("max-per-source", 0),
    perSourcePrefix6: text("per-source-prefix6") === undefined
      ? undefined
      : parseInteger(text("per-source-prefix6")!, "--per-source-prefix6", { max: 128 }),
    idleTimeout: duration("idle-timeout"),
    maxSessionBytes: count("max-session-bytes", 1),
    maxSessionTime: duration("max-session-time") || undefined,
    udpRate: count("udp-rate", 0),
    allow: values.allow as string[] | undefined,
    loopGuard: values["no-loop-guard"] ? false : undefined,
    impair: Object.values(impair).some((v) => v !== undefined) ? impair : undefined,
    workers: text("workers") === undefined ? undefined : parseWorkers(text("workers")!),
  };
}

/** `--workers N` or `auto` (one thread per core). */
function parseWorkers(text: string): number {
  if (text.trim() === "auto") return Math.max(1, navigator.hardwareConcurrency || 1);
  return parseInteger(text, "--workers", { min: 1 });
}

/**
 * The transport flags -> `transport`, `path` and `tls` (the files read). Conflicting flags are
 * usage errors; a file that is missing, unreadable or not PEM is a usage error; a missing
 * --allow-read is left to Deno's NotCapable, which names the flag.
 */
async function transportOptions(
  values: FlagValues,
  options: ServeEchoOptions<EchoAddr>,
): Promise<void> {
  const certFile = values["tls-cert"] as string | undefined;
  const keyFile = values["tls-key"] as string | undefined;
  const unix = values.unix as string | undefined;
  if ((certFile === undefined) !== (keyFile === undefined)) {
    throw new UsageError("--tls-cert and --tls-key go together: give both");
  }
  const tls = certFile !== undefined;
  if (values.udp && tls) throw new UsageError("--udp and --tls-cert conflict: TLS serves TCP only");
  if (values.udp && unix !== undefined) {
    throw new UsageError("--udp and --unix conflict: a Unix socket serves streams only");
  }
  if (tls && unix !== undefined) {
    throw new UsageError("--tls-cert and --unix conflict: TLS is served over TCP only");
  }
  const workers = options.workers !== undefined && options.workers !== 1;
  if (workers && (tls || unix !== undefined)) {
    const flag = tls ? "--tls-cert" : "--unix";
    throw new UsageError(`--workers and ${flag} conflict: workers serve plain TCP`);
  }
  if (unix !== undefined) {
    if (unix === "") throw new UsageError("--unix must not be empty");
    for (const flag of ["host", "port", "allow", "allow-file"]) {
      if (values[flag] !== undefined) {
        throw new UsageError(`--unix and --${flag} conflict: a Unix socket has no network address`);
      }
    }
    options.transport = "unix";
    options.path = unix;
  } else if (tls) {
    const cert = await readPemFile(certFile!, "--tls-cert", "certificate");
    const key = await readPemFile(keyFile!, "--tls-key", "key");
    options.tls = { cert, key } satisfies TlsServerOptions;
    options.transport = "tcp";
  }
}

/**
 * `--allow-file PATH` (repeatable): the files' rules, after any `--allow` rules, become `allow`.
 * A bad rule or an unreadable file is a usage error naming the flag, the file and the line.
 */
async function allowFileOptions(
  values: FlagValues,
  options: ServeEchoOptions<EchoAddr>,
): Promise<void> {
  const files = values["allow-file"] as string[] | undefined;
  if (!files?.length) return;
  const rules = [...(options.allow ?? [])];
  for (const file of files) {
    for (const rule of await readAllowFile(file, "--allow-file")) rules.push(rule);
  }
  options.allow = rules;
}

/** The library's options check, its errors as usage errors (naming the flag where they can). */
function validate(options: ServeEchoOptions<EchoAddr>): ReturnType<typeof validateServeOptions> {
  try {
    return validateServeOptions(options);
  } catch (error) {
    if (!(error instanceof RangeError || error instanceof TypeError)) throw error;
    // The library's errors name their option: --workers is named before the message; an
    // impairment's message starts with its name, which becomes the flag.
    const option = (error as { option?: string }).option;
    if (option === "workers") {
      throw new UsageError(`--workers ${options.workers}: ${error.message}`);
    }
    const impairment = option?.match(/^impair\.(\w+)$/)?.[1];
    if (impairment && error.message.startsWith(impairment)) {
      const flag = `--${impairment.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`)}`;
      throw new UsageError(`${flag}${error.message.slice(impairment.length)}`);
    }
    throw new UsageError(error.message);
  }
}

async function main(): Promise<number> {
  const { values, positionals } = parseFlags(SPEC, Deno.args);
  if (values.help) {
    console.log(renderHelp(SPEC, paletteFor(Deno.stdout)));
    return EXIT_OK;
  }
  if (values.version) {
    console.log(`server.ts ${VERSION} (deno ${Deno.version.deno})`);
    return EXIT_OK;
  }
  if (positionals.length) throw new UsageError(`unexpected argument "${positionals[0]}"`);
  const serveOptions = options(values);
  await transportOptions(values, serveOptions);
  await allowFileOptions(values, serveOptions);
  const report = new ServerReport({
    json: Boolean(values.json),
    quiet: Boolean(values.quiet),
    verbose: Boolean(values.verbose),
    colors: paletteFor(Deno.stdout),
    errColors: paletteFor(Deno.stderr),
  }, { out: (line) => console.log(line), err: (line) => console.error(line) });
  const controller = new AbortController();
  // The counters exist before anything is bound, so SIGUSR2 is handled from the first ready line
  // on: its default action would kill a server signalled just after printing it.
  const stats = createStats();
  const full: ServeEchoOptions<EchoAddr> = {
    ...serveOptions,
    stats,
    signal: controller.signal,
    ...report.hooks,
  };
  const check = validate(full);
  // Ctrl-C and SIGTERM shut down gracefully; a second one (not the same Ctrl-C forwarded by a
  // task runner) exits at once.
  onShutdownSignals({
    graceful: () => {
      const open = stats.sessionsOpen;
      if (open > 0) {
        report.notice(
          `shutting down: ${countOf(open, "open session")} ${open === 1 ? "has" : "have"} ` +
            `${formatDuration(DEFAULT_GRACE_PERIOD)} to finish (Ctrl-C again to exit now)`,
        );
      }
      controller.abort();
    },
    immediate: () => Deno.exit(EXIT_FAILURE),
  });
  const { transport, path } = full;
  if (serveOptions.maxConnections === undefined && transport !== "udp") {
    if (check.maxConnectionsLowered) {
      report.notice(
        `--max-connections lowered to ${check.maxConnections} to fit the open-file limit`,
      );
    }
  }
  const onStatsSignal = () => report.stats(stats);
  try {
    Deno.addSignalListener("SIGUSR2", onStatsSignal);
  } catch {
    // no SIGUSR2 on Windows
  }
  let server;
  try {
    server = await serveEcho<EchoAddr>(full);
  } catch (error) {
    if (path !== undefined) throw unixPermissionError(error, path);
    if (full.tls && error instanceof TypeError) {
      throw new UsageError(`--tls-cert/--tls-key: ${error.message}`);
    }
    throw error;
  }
  // Decided from the address bound, once it is bound: 127.1 and localhost are loopback, and an
  // address that cannot be bound (8.8.8.8) fails before any notice.
  for (const info of server.listeners) {
    if (info.transport === "unix" || isLoopback(info.hostname)) continue;
    report.notice(
      `the echo service on ${info.hostname} is reachable from the network` +
        (full.allow ? "" : " (restrict it with --allow CIDR or --allow-file PATH)"),
    );
    break;
  }
  await server.finished;
  try {
    Deno.removeSignalListener("SIGUSR2", onStatsSignal);
  } catch {
    // never added
  }
  report.stopped(server.stats);
  return EXIT_OK;
}

if (import.meta.main) await runCli("server.ts", main);
