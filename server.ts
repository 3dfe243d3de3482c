#!/usr/bin/env -S deno run --allow-net
/**
 * The echo server CLI: TCP and UDP echo (RFC 862) on 127.0.0.1:5006 until Ctrl-C.
 *
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
  EXIT_FAILURE,
  EXIT_OK,
  type FlagValues,
  paletteFor,
  parseDurationFlag,
  parseFlags,
  parseInteger,
  parsePort,
  parseRate,
  readPemFile,
  renderHelp,
  runCli,
  showBytes,
  unixPermissionError,
  UsageError,
  VERSION,
} from "./_cli.ts";
import { formatAddress } from "./errors.ts";
import { isLoopback } from "./cidr.ts";
import { DEFAULT_LIMITS, effectiveMaxConnections } from "./limits.ts";
import { buildPolicy } from "./_policy.ts";
import {
  describeListener,
  type EchoImpairOptions,
  type EchoServer,
  type ListenInfo,
  type RejectInfo,
  serveEcho,
  type ServeEchoOptions,
} from "./serve.ts";
import { serveTcpEcho, type TlsServerOptions } from "./tcp.ts";
import { serveUnixEcho, type UnixEchoOptions, type UnixEchoServer } from "./unix.ts";
import { createStats, type EchoStats } from "./stats.ts";

const SPEC: CliSpec = {
  name: "server.ts",
  summary: "TCP and UDP echo server (RFC 862)",
  usage: [
    "deno run --allow-net server.ts [options]",
    "deno run --allow-net --allow-read server.ts --tls-cert FILE --tls-key FILE [options]",
    "deno run --allow-read --allow-write --allow-net server.ts --unix PATH [options]",
  ],
  flags: [
    {
      name: "host",
      aliases: ["hostname"],
      type: "string",
      arg: "ADDR",
      description: "address to bind (default 127.0.0.1; 0.0.0.0, :: or ::1 work too)",
    },
    {
      name: "port",
      short: "p",
      type: "string",
      arg: "PORT",
      description: "port to bind (default 5006; 0 picks a free one, shared by TCP and UDP)",
    },
    { name: "tcp", type: "boolean", description: "serve TCP only" },
    { name: "udp", type: "boolean", description: "serve UDP only" },
    {
      name: "once",
      type: "boolean",
      description: "serve one exchange (one TCP session or one datagram), then exit",
    },
    {
      name: "verbose",
      short: "v",
      type: "boolean",
      description: "show each received message (text, or a hex dump)",
    },
    { name: "quiet", short: "q", type: "boolean", description: "no per-event lines" },
    { name: "json", type: "boolean", description: "one JSON object per event line" },
    { name: "help", short: "h", type: "boolean", description: "show this help" },
    { name: "version", short: "V", type: "boolean", description: "show the version" },
    {
      name: "tls-cert",
      type: "string",
      arg: "FILE",
      group: "Transports (TCP only: no UDP with these)",
      description:
        "serve TLS instead of plain TCP with this PEM certificate chain (needs --tls-key)",
    },
    {
      name: "tls-key",
      type: "string",
      arg: "FILE",
      group: "Transports (TCP only: no UDP with these)",
      description: "the certificate's PEM private key (unencrypted)",
    },
    {
      name: "unix",
      type: "string",
      arg: "PATH",
      group: "Transports (TCP only: no UDP with these)",
      description: "serve on a Unix domain socket at PATH instead (stale socket replaced)",
    },
    {
      name: "workers",
      type: "string",
      arg: "N|auto",
      group: "Performance",
      description:
        "threads accepting TCP (N-1 Web Workers sharing the port; Linux, unstable net); auto = one per core",
    },
    {
      name: "max-connections",
      type: "string",
      arg: "N",
      group: "Limits",
      description: "TCP sessions open at once; more are closed at once (default 4096, fd-limited)",
    },
    {
      name: "idle-timeout",
      type: "string",
      arg: "DURATION",
      group: "Limits",
      description: "close a TCP session silent for this long (default 5m; 0 = off)",
    },
    {
      name: "max-session-bytes",
      type: "string",
      arg: "N",
      group: "Limits",
      description: "close a TCP session after echoing N bytes (default: no cap)",
    },
    {
      name: "max-session-time",
      type: "string",
      arg: "DURATION",
      group: "Limits",
      description: "close a TCP session after this long (default: no cap)",
    },
    {
      name: "udp-rate",
      type: "string",
      arg: "N",
      group: "Limits",
      description:
        "datagrams/s answered per source (default 1000 off loopback, off on it; 0 = off)",
    },
    {
      name: "allow",
      type: "string",
      multiple: true,
      arg: "CIDR",
      group: "Access",
      description: "serve only these sources (repeatable; IPv4 and IPv6), e.g. --allow 10.0.0.0/8",
    },
    {
      name: "no-loop-guard",
      type: "boolean",
      group: "Access",
      description: "answer UDP from port 0, echo/chargen/... ports, broadcast and multicast too",
    },
    {
      name: "loss",
      type: "string",
      arg: "P",
      group: "Impairment (UDP; on TCP only --delay and --bandwidth: the kernel retransmits)",
      description: "drop each UDP reply with probability P (0..1)",
    },
    {
      name: "duplicate",
      type: "string",
      arg: "P",
      group: "Impairment (UDP; on TCP only --delay and --bandwidth: the kernel retransmits)",
      description: "send a UDP reply twice with probability P",
    },
    {
      name: "reorder",
      type: "string",
      arg: "P",
      group: "Impairment (UDP; on TCP only --delay and --bandwidth: the kernel retransmits)",
      description: "hold a UDP reply until 3 later ones went out (or 100ms) with probability P",
    },
    {
      name: "delay",
      type: "string",
      arg: "DURATION",
      group: "Impairment (UDP; on TCP only --delay and --bandwidth: the kernel retransmits)",
      description: "delay each reply (UDP datagram or TCP chunk) by DURATION",
    },
    {
      name: "jitter",
      type: "string",
      arg: "DURATION",
      group: "Impairment (UDP; on TCP only --delay and --bandwidth: the kernel retransmits)",
      description: "vary each UDP delay by ± DURATION (does not reorder by itself)",
    },
    {
      name: "bandwidth",
      type: "string",
      arg: "BYTES/S",
      group: "Impairment (UDP; on TCP only --delay and --bandwidth: the kernel retransmits)",
      description: "TCP: echo at most this many bytes per second (k, M, G suffixes: 1M = 10^6)",
    },
    {
      name: "seed",
      type: "string",
      arg: "N",
      group: "Impairment (UDP; on TCP only --delay and --bandwidth: the kernel retransmits)",
      description: "seed of the impairment generator (0..4294967295), for reproducible runs",
    },
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
    "(open TCP sessions get a few seconds to finish); a second signal exits at once. SIGUSR2 prints\n" +
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

/** The schema version of `--json` event lines. */
const JSON_SCHEMA = 1;

function options(values: FlagValues): ServeEchoOptions {
  if (values.quiet && values.verbose) throw new UsageError("--quiet and --verbose conflict");
  if (values.quiet && values.json) throw new UsageError("--quiet and --json conflict");
  const hostname = (values.host as string | undefined) ?? "127.0.0.1";
  if (hostname === "") throw new UsageError("--host must not be empty");
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
  const result: ServeEchoOptions = {
    hostname: hostname.replace(/^\[(.*)\]$/, "$1"),
    port: values.port === undefined ? 5006 : parsePort(values.port as string),
    transport: values.tcp && !values.udp ? "tcp" : values.udp && !values.tcp ? "udp" : "both",
    once: Boolean(values.once),
    maxConnections: count("max-connections", 1),
    idleTimeout: duration("idle-timeout"),
    maxSessionBytes: count("max-session-bytes", 1),
    maxSessionTime: duration("max-session-time") || undefined,
    udpRate: count("udp-rate", 0),
    allow: values.allow as string[] | undefined,
    loopGuard: values["no-loop-guard"] ? false : undefined,
    impair: Object.values(impair).some((v) => v !== undefined) ? impair : undefined,
    workers: text("workers") === undefined ? undefined : parseWorkers(text("workers")!),
  };
  try {
    buildPolicy(result);
  } catch (error) {
    throw new UsageError((error as Error).message);
  }
  return result;
}

/** `--workers N` or `auto` (one thread per core). */
function parseWorkers(text: string): number {
  if (text.trim() === "auto") return Math.max(1, navigator.hardwareConcurrency || 1);
  return parseInteger(text, "--workers", { min: 1 });
}

/**
 * Checks `--workers` above 1 against the other flags and the runtime (port sharing needs Linux
 * and unstable net) before anything listens; the workers' module is loaded only then.
 */
async function checkWorkers(options: ServeEchoOptions, choice: TransportChoice): Promise<void> {
  if (options.workers === undefined || options.workers === 1) return;
  if (choice.tls) {
    throw new UsageError("--workers and --tls-cert conflict: workers serve plain TCP");
  }
  if (choice.unix !== undefined) {
    throw new UsageError("--workers and --unix conflict: workers serve plain TCP");
  }
  const { validateWorkers } = await import("./_worker_pool.ts");
  try {
    validateWorkers(options.workers, options);
  } catch (error) {
    throw new UsageError(`--workers ${options.workers}: ${(error as Error).message}`);
  }
}

/** What the transport flags ask for: TLS (with the files read) or a Unix socket, or neither. */
interface TransportChoice {
  /** Certificate and key, read from --tls-cert and --tls-key. */
  tls?: TlsServerOptions;
  /** The socket path of --unix. */
  unix?: string;
}

/**
 * Checks the transport flags against each other and reads the TLS files. A file that is missing,
 * unreadable or not PEM is a usage error; a missing --allow-read is left to Deno's NotCapable,
 * which names the flag.
 */
async function transportChoice(values: FlagValues): Promise<TransportChoice> {
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
  if (unix !== undefined) {
    if (unix === "") throw new UsageError("--unix must not be empty");
    for (const flag of ["host", "port", "allow"]) {
      if (values[flag] !== undefined) {
        throw new UsageError(`--unix and --${flag} conflict: a Unix socket has no network address`);
      }
    }
    return { unix };
  }
  if (!tls) return {};
  return {
    tls: {
      cert: await readPemFile(certFile!, "--tls-cert", "certificate"),
      key: await readPemFile(keyFile!, "--tls-key", "key"),
    },
  };
}

/**
 * Starts what the flags ask for: a Unix socket, TLS on TCP, or TCP and/or UDP. The event hooks are
 * the same for all three; they print clients with peer(), which also takes Unix addresses.
 */
async function start(
  options: ServeEchoOptions,
  choice: TransportChoice,
): Promise<EchoServer | UnixEchoServer> {
  if (choice.unix !== undefined) {
    const { hostname: _hostname, port: _port, transport: _transport, ...rest } = options;
    // The hooks receive Unix addresses here, which peer() and describeListener() print.
    const unixOptions = { ...rest, path: choice.unix } as unknown as UnixEchoOptions;
    try {
      return await serveUnixEcho(unixOptions);
    } catch (error) {
      throw unixPermissionError(error, choice.unix);
    }
  }
  if (choice.tls) {
    try {
      return serveTcpEcho({ ...options, tls: choice.tls });
    } catch (error) {
      if (error instanceof TypeError) {
        throw new UsageError(`--tls-cert/--tls-key: ${error.message}`);
      }
      throw error;
    }
  }
  return await serveEcho(options);
}

/** A client's address for messages: `host:port`, or for a Unix socket client its path if named. */
function peer(addr: Deno.Addr): string {
  if (addr.transport === "tcp" || addr.transport === "udp") return formatAddress(addr);
  return "path" in addr && addr.path ? addr.path : `${addr.transport} client`;
}

/** A listener for the ready line: `tcp 127.0.0.1:5006`, `tls [::1]:5006`, `unix /tmp/echo.sock`. */
function describeReady(info: ListenInfo): string {
  return info.secure ? `tls ${formatAddress(info)}` : describeListener(info);
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
  const choice = await transportChoice(values);
  await checkWorkers(serveOptions, choice);
  if (choice.tls) serveOptions.transport = "tcp";
  const json = Boolean(values.json);
  const quiet = Boolean(values.quiet);
  const verbose = Boolean(values.verbose);
  const colors = paletteFor(Deno.stdout);
  const emit = (event: string, fields: Record<string, unknown>, text: string) => {
    if (json) {
      console.log(JSON.stringify({ schema: JSON_SCHEMA, event, time: new Date(), ...fields }));
    } else console.log(text);
  };
  const controller = new AbortController();
  let signals = 0;
  const onSignal = () => {
    if (++signals > 1) Deno.exit(EXIT_FAILURE);
    controller.abort();
  };
  for (const signal of ["SIGINT", "SIGTERM"] as const) {
    try {
      Deno.addSignalListener(signal, onSignal);
    } catch {
      // SIGTERM cannot be listened for on Windows
    }
  }
  const warn = (text: string) =>
    console.error(`server.ts: ${paletteFor(Deno.stderr).yellow("notice")}: ${text}`);
  if (serveOptions.maxConnections === undefined && serveOptions.transport !== "udp") {
    const { value, lowered } = effectiveMaxConnections(DEFAULT_LIMITS.maxConnections);
    if (lowered) {
      warn(`--max-connections lowered to ${value} to fit the open-file limit`);
      serveOptions.maxConnections = value;
    }
  }
  if (choice.unix === undefined && !isLoopback(serveOptions.hostname!)) {
    warn(
      `the echo service on ${serveOptions.hostname} is reachable from the network` +
        (serveOptions.allow ? "" : " (restrict it with --allow CIDR)"),
    );
  }
  // The counters exist before anything is bound, so SIGUSR2 is handled from the first ready line
  // on: its default action would kill a server signalled just after printing it.
  const stats = createStats();
  const onStatsSignal = () => emit("stats", { stats }, `stats: ${summary(stats)}`);
  try {
    Deno.addSignalListener("SIGUSR2", onStatsSignal);
  } catch {
    // no SIGUSR2 on Windows
  }
  const rejects = quiet ? undefined : new RejectLines(
    ({ transport, remoteAddr, reason, detail }) =>
      emit(
        "reject",
        { transport, remote: peer(remoteAddr), reason, ...(detail ? { detail } : {}) },
        `refused ${transport} ${peer(remoteAddr)}: ${reason}${detail ? ` (${detail})` : ""}`,
      ),
    (transport, reason, count) =>
      emit(
        "suppressed",
        { transport, reason, count },
        `refused ${count} more ${transport} ${
          transport === "udp" ? "datagrams" : "connections"
        }: ${reason} (not shown one by one; the counters have them)`,
      ),
  );
  const server = await start({
    ...serveOptions,
    stats,
    signal: controller.signal,
    onListen(info) {
      emit(
        "listening",
        { ...info },
        `listening ${describeReady(info)}${
          info.impairment ? ` (impaired: ${info.impairment})` : ""
        }`,
      );
      if (info.backend === "node") {
        console.error(
          "note: UDP runs on node:dgram; run with --unstable-net to use Deno.listenDatagram",
        );
      }
    },
    onConnection: quiet ? undefined : ({ id, remoteAddr }) =>
      emit(
        "connection",
        { id, remote: peer(remoteAddr) },
        `connection #${id} from ${colors.cyan(peer(remoteAddr))}`,
      ),
    onData: verbose
      ? ({ id, remoteAddr, data }) =>
        emit(
          "data",
          { id, remote: peer(remoteAddr), size: data.length, ...payload(data) },
          `received from ${peer(remoteAddr)} (#${id}): ${showBytes(data)}`,
        )
      : undefined,
    onClose: quiet ? undefined : ({ id, remoteAddr, bytes, duration, reason }) =>
      emit(
        "close",
        { id, remote: peer(remoteAddr), bytes, duration_ms: duration, reason },
        `closed #${id} ${peer(remoteAddr)}: ${bytes} bytes echoed in ${
          duration.toFixed(1)
        }ms (${reason})`,
      ),
    onDatagram: quiet ? undefined : ({ remoteAddr, data }) =>
      emit(
        "datagram",
        { remote: formatAddress(remoteAddr), size: data.length, ...(verbose ? payload(data) : {}) },
        verbose
          ? `received from ${formatAddress(remoteAddr)} (udp): ${showBytes(data)}`
          : `datagram from ${colors.cyan(formatAddress(remoteAddr))}: ${data.length} bytes`,
      ),
    onReject: rejects && ((info) => rejects.add(info)),
    onError(error) {
      if (json) emit("error", { message: error.message }, "");
      console.error(`server.ts: ${paletteFor(Deno.stderr).yellow("warning")}: ${error.message}`);
    },
  }, choice);
  await server.finished;
  rejects?.flush();
  try {
    Deno.removeSignalListener("SIGUSR2", onStatsSignal);
  } catch {
    // never added
  }
  if (!quiet) emit("stopped", { stats: server.stats }, `stopped: ${summary(server.stats)}`);
  return EXIT_OK;
}

/** Refusal lines shown per second for each transport and reason; the rest are summed up. */
const REJECT_LINES_PER_SECOND = 10;

/**
 * Keeps a flood of refusals (a UDP source over its rate, connections over the cap) from costing a
 * line each. Printing was most of the cost of a refused datagram: a server printing each one got
 * through a quarter of the datagrams a quiet one dropped, which undoes the rate limit's point.
 */
class RejectLines {
  #windows = new Map<string, RejectWindow>();
  #show: (info: RejectInfo) => void;
  #summarize: (transport: string, reason: string, count: number) => void;

  constructor(
    show: (info: RejectInfo) => void,
    summarize: (transport: string, reason: string, count: number) => void,
  ) {
    this.#show = show;
    this.#summarize = summarize;
  }

  add(info: RejectInfo): void {
    const key = `${info.transport} ${info.reason}`;
    const now = performance.now();
    let window = this.#windows.get(key);
    if (!window || now - window.start >= 1000) {
      if (window) this.#close(window);
      window = { transport: info.transport, reason: info.reason, start: now, shown: 0, hidden: 0 };
      this.#windows.set(key, window);
    }
    if (window.shown < REJECT_LINES_PER_SECOND) {
      window.shown++;
      this.#show(info);
    } else if (window.hidden++ === 0) {
      const closing = window;
      closing.timer = setTimeout(() => this.#close(closing), closing.start + 1000 - now);
    }
  }

  /** Prints what is held back; at shutdown, before the stopped line. */
  flush(): void {
    for (const window of this.#windows.values()) this.#close(window);
  }

  #close(window: RejectWindow): void {
    clearTimeout(window.timer);
    if (window.hidden > 0) this.#summarize(window.transport, window.reason, window.hidden);
    window.hidden = 0;
  }
}

interface RejectWindow {
  transport: string;
  reason: string;
  start: number;
  shown: number;
  hidden: number;
  timer?: ReturnType<typeof setTimeout>;
}

function payload(data: Uint8Array): Record<string, string> {
  const shown = showBytes(data);
  return shown.startsWith('"')
    ? { text: JSON.parse(shown) }
    : { hex: Array.from(data, (b) => b.toString(16).padStart(2, "0")).join("") };
}

function summary(stats: EchoStats): string {
  const dropped = Object.entries(stats.dropped).filter(([, n]) => n > 0)
    .map(([reason, n]) => `${reason} ${n}`);
  const counters = stats.impairment;
  const impaired = counters
    ? (["dropped", "duplicated", "reordered", "delayed", "overflow"] as const)
      .filter((what) => counters[what] > 0).map((what) => `${what} ${counters[what]}`)
    : [];
  return `${stats.sessionsTotal} TCP sessions, ${stats.datagramsIn} datagrams, ` +
    `${stats.bytesIn} bytes in, ${stats.bytesOut} bytes out, ${stats.errors} errors` +
    (dropped.length ? `; refused: ${dropped.join(", ")}` : "") +
    (impaired.length ? `; impairment: ${impaired.join(", ")}` : "");
}

if (import.meta.main) await runCli("server.ts", main);
