#!/usr/bin/env -S deno run --allow-net
/**
 * The echo server CLI: TCP and UDP echo (RFC 862) on 127.0.0.1:5006 until Ctrl-C.
 *
 * @example Usage
 * ```sh
 * deno run --allow-net server.ts [--host ADDR] [--port PORT] [--tcp|--udp] [--once] [-v|-q] [--json]
 * deno run --allow-net --allow-read server.ts --tls-cert FILE --tls-key FILE [options]
 * deno run --allow-read --allow-write --allow-net server.ts --unix PATH [options]
 * deno run --allow-net server.ts --ws 8080 [options]   # and open http://127.0.0.1:8080/
 * deno run --allow-net server.ts --tcp --proxy-protocol --metrics 127.0.0.1:9101 --drain 5s
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
  parsePort,
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
  type EchoServer,
  type ServeEchoOptions,
  type TlsServerOptions,
} from "./types.ts";
import { createStats } from "./stats.ts";
import { formatDuration } from "./duration.ts";
import { ServerReport } from "./_server_report.ts";
import { onShutdownSignals } from "./_cli_signals.ts";
import { DEFAULT_WS_MAX_MESSAGE, WS_MAX_MESSAGE_LIMIT } from "./_ws_options.ts";
import type { HostPort, MetricsServer } from "./metrics.ts";
import { parseHostPort } from "./_address.ts";
import { formatAddress } from "./errors.ts";

/** How long after a shutdown signal the notice of sessions still open waits (see main). */
const SHUTDOWN_NOTICE_MS = 250;
const TRANSPORTS = "Transports (TCP only: no UDP with these)";
const BALANCERS = "Load balancers";
const SOURCES = "Sources (for a server reachable from the network)";
const IMPAIR = "Impairment (UDP; on TCP only --delay and --bandwidth: the kernel retransmits)";

const SPEC: CliSpec = {
  name: "server.ts",
  summary: "TCP and UDP echo server (RFC 862), with a WebSocket echo and a live page (--ws)",
  usage: [
    "deno run --allow-net server.ts [options]",
    "deno run --allow-net --allow-read server.ts --tls-cert FILE --tls-key FILE [options]",
    "deno run --allow-read --allow-write --allow-net server.ts --unix PATH [options]",
    "deno run --allow-net server.ts --ws PORT [options]   (then open http://127.0.0.1:PORT/)",
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
      "handshake-timeout DURATION":
        "with --tls-cert: close a connection whose handshake is not done by then (default 10s; 0 = none)",
      "unix PATH": "serve on a Unix domain socket at PATH instead (stale socket replaced)",
    }),
    ...flagTable("WebSocket and the live page", {
      "ws PORT":
        "also serve a WebSocket echo and the live page on PORT of the same --host (wss: with --tls-cert)",
      "ws-max-message BYTES": `largest WebSocket message echoed (default ${
        DEFAULT_WS_MAX_MESSAGE >> 20
      } MiB, at most ${WS_MAX_MESSAGE_LIMIT}); larger: close 1009`,
      "ws-events-from CIDR ...":
        "besides loopback, who may watch the page's live feed of every client (repeatable)",
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
      "max-session-time DURATION":
        "cut a TCP session after this long (default: no cap; what was read is echoed first)",
      "udp-rate N":
        "datagrams/s answered per source (default 1000 off loopback, off on it; 0 = off)",
    }),
    ...flagTable("Access", {
      "allow CIDR ...":
        "serve only these sources (repeatable; IPv4 and IPv6), e.g. --allow 10.0.0.0/8",
      "no-loop-guard":
        "answer UDP from port 0, echo/chargen/... ports, broadcast and multicast too",
    }),
    ...flagTable(BALANCERS, {
      "proxy-protocol":
        "every TCP/TLS connection starts with a PROXY v1/v2 header (HAProxy, nginx); its client is the client",
      "proxy-from CIDR ...":
        "balancers allowed to send the header (repeatable; default: loopback peers only)",
      "proxy-timeout DURATION": "time allowed for the whole PROXY header (default 5s)",
      "metrics HOST:PORT":
        "serve GET /metrics (Prometheus) and /healthz on HOST:PORT (a bare PORT binds 127.0.0.1)",
      "drain DURATION":
        "on SIGTERM/SIGINT: /healthz answers 503 at once, keep serving DURATION, then shut down",
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
      "jitter DURATION":
        "draw each UDP delay from DELAY ± DURATION (median DELAY; reorders, as netem does)",
      "bandwidth BYTES/S":
        "TCP: echo at most this many bytes/s from the first byte, in bursts of 10 ms worth (at most 16 KiB; 640 B at 64k); k, M, G: 1M = 10^6",
      "jitter-keep-order":
        "with --jitter: keep replies in order (delays then crowd towards DELAY + JITTER)",
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
      "deno run --allow-net server.ts --ws 8080",
      "TCP and UDP on 5006, a WebSocket echo and the live page on http://127.0.0.1:8080/",
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
    "--ws PORT serves a WebSocket echo (any path; text stays text, binary stays binary) and, at\n" +
    "GET /, a page with an echo console, a ping chart and a live feed of every transport's events.\n" +
    "The feed shows clients' addresses and payloads, so only loopback viewers get it unless\n" +
    "--ws-events-from says otherwise. --allow, --max-connections and --idle-timeout apply to it too.",
    "--proxy-protocol: behind HAProxy (send-proxy / send-proxy-v2) or nginx stream (proxy_protocol\n" +
    "on) the header's client is used for event lines, --allow, limits and counters; a missing,\n" +
    "malformed, slow or untrusted header closes the connection (refused ...: proxy (REASON)). With\n" +
    "--tls-cert the header comes in clear text before the TLS handshake (HAProxy send-proxy-v2 in\n" +
    "front of a TLS instance, mode tcp); a refused connection never reaches TLS.\n" +
    "--metrics serves the counters for Prometheus and /healthz for the balancer's checks; with\n" +
    "--drain, a shutdown signal turns /healthz to 503 first, so the balancer takes the instance out.",
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
    jitterKeepOrder: values["jitter-keep-order"] ? true : undefined,
    bandwidth: text("bandwidth") === undefined
      ? undefined
      : parseRate(text("bandwidth")!, "--bandwidth", "bytes"),
    seed: count("seed", 0),
  };
  if (impair.jitterKeepOrder && !impair.jitter) {
    throw new UsageError("--jitter-keep-order applies to --jitter (give both)");
  }
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
    ...proxyOptions(values, duration),
    ws: wsOptions(values, port),
  };
}

/** `--ws PORT` and its flags -> the `ws` option (its hooks are added by main). */
function wsOptions(values: FlagValues, port: number): ServeEchoOptions["ws"] {
  const maxMessage = values["ws-max-message"] as string | undefined;
  const eventsFrom = values["ws-events-from"] as string[] | undefined;
  if (values.ws === undefined) {
    const flag = maxMessage !== undefined ? "--ws-max-message" : "--ws-events-from";
    if (maxMessage !== undefined || eventsFrom !== undefined) {
      throw new UsageError(`${flag} applies to --ws only`);
    }
    return undefined;
  }
  const wsPort = parsePort(values.ws as string, "--ws");
  if (wsPort !== 0 && wsPort === port) {
    throw new UsageError(`--ws and --port must differ: both are ${port}`);
  }
  for (const flag of ["unix", "once"]) {
    if (values[flag] !== undefined) {
      throw new UsageError(
        `--ws and --${flag} conflict: ${
          flag === "once" ? "--once serves one exchange" : "WebSocket needs a network address"
        }`,
      );
    }
  }
  return {
    port: wsPort,
    maxMessage: maxMessage === undefined
      ? undefined
      : parseInteger(maxMessage, "--ws-max-message", { min: 0, max: WS_MAX_MESSAGE_LIMIT }),
    eventsFrom,
  };
}

/** `--proxy-protocol`, `--proxy-from` and `--proxy-timeout` -> the library's PROXY options. */
function proxyOptions(
  values: FlagValues,
  duration: (name: string) => number | undefined,
): Pick<ServeEchoOptions, "proxyProtocol" | "proxyFrom" | "proxyTimeout"> {
  if (!values["proxy-protocol"]) {
    for (const flag of ["proxy-from", "proxy-timeout"]) {
      if (values[flag] !== undefined) throw new UsageError(`--${flag} needs --proxy-protocol`);
    }
    return {};
  }
  if (values.udp) {
    throw new UsageError("--udp and --proxy-protocol conflict: the PROXY header is for streams");
  }
  const timeout = duration("proxy-timeout");
  if (timeout === 0) throw new UsageError("--proxy-timeout must be above 0");
  return {
    proxyProtocol: true,
    proxyFrom: values["proxy-from"] as string[] | undefined,
    proxyTimeout: timeout,
  };
}

/** `--metrics HOST:PORT` and `--drain DURATION`. */
function balancerFlags(values: FlagValues): { metrics?: HostPort; drain?: number } {
  const metricsText = values.metrics as string | undefined;
  let metrics: HostPort | undefined;
  if (metricsText !== undefined) {
    try {
      metrics = parseHostPort(metricsText);
    } catch (error) {
      throw new UsageError(`--metrics: ${(error as Error).message}`);
    }
  }
  const drainText = values.drain as string | undefined;
  const drain = drainText === undefined ? undefined : parseDurationFlag(drainText, "--drain");
  return { metrics, drain };
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
    const handshake = values["handshake-timeout"] as string | undefined;
    const handshakeTimeout = handshake === undefined
      ? undefined
      : parseDurationFlag(handshake, "--handshake-timeout");
    options.tls = { cert, key, handshakeTimeout } satisfies TlsServerOptions;
    options.transport = "tcp";
  }
  if (!tls && values["handshake-timeout"] !== undefined) {
    throw new UsageError("--handshake-timeout applies to --tls-cert only");
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
    // The library's errors name their option: --workers and --ws-events-from are named before
    // the message; an impairment's message starts with its name, which becomes the flag.
    const option = (error as { option?: string }).option;
    if (option === "workers") {
      throw new UsageError(`--workers ${options.workers}: ${error.message}`);
    }
    if (option === "ws.eventsFrom") throw new UsageError(`--ws-events-from: ${error.message}`);
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
  const balancer = balancerFlags(values);
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
    ws: serveOptions.ws && { ...serveOptions.ws, ...report.wsHooks },
    stats,
    signal: controller.signal,
    ...report.hooks,
  };
  const check = validate(full);
  // Ctrl-C and SIGTERM shut down gracefully; a second one (not the same Ctrl-C forwarded by a
  // task runner) exits at once.
  // Loaded only when asked for: a server without --metrics or --drain never loads metrics.ts.
  const metricsModule = balancer.metrics || balancer.drain
    ? await import("./metrics.ts")
    : undefined;
  const health = metricsModule ? new metricsModule.HealthState() : undefined;
  let server: EchoServer<EchoAddr> | undefined;
  const shutdown = () => {
    controller.abort();
    // Said only when the grace period is really being waited out: a session that was ending as
    // the signal came (a client that just got its echo) ends within a moment, and then no notice.
    const notice = setTimeout(() => {
      const open = (server?.stats ?? stats).sessionsOpen;
      if (open === 0) return;
      report.notice(
        `shutting down: ${countOf(open, "open session")} ${open === 1 ? "has" : "have"} ` +
          `${formatDuration(DEFAULT_GRACE_PERIOD)} to finish (Ctrl-C again to exit now)`,
      );
    }, SHUTDOWN_NOTICE_MS);
    Deno.unrefTimer(notice);
  };
  onShutdownSignals({
    graceful: () => {
      if (balancer.drain) {
        report.notice(
          `draining: /healthz answers 503; still serving for ${formatDuration(balancer.drain)}, ` +
            "then shutting down (Ctrl-C again to exit now)",
        );
        void health!.drainFor(balancer.drain, { signal: controller.signal }).then(shutdown);
        return;
      }
      health?.drain();
      shutdown();
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
  let metrics: MetricsServer | undefined;
  if (balancer.metrics) {
    // Bound before the echo service, so a taken port fails the start before anyone is served.
    metrics = metricsModule!.serveMetrics({
      ...balancer.metrics,
      stats: () => server?.stats ?? stats,
      health: health!,
      transports: transport === "unix" ? ["unix"] : transport === "udp" ? ["udp"] : [
        ...(full.tls ? ["tls" as const] : ["tcp" as const]),
        ...(transport === "both" ? ["udp" as const] : []),
      ],
    });
    report.notice(
      `metrics on http://${formatAddress(metrics.addr)}/metrics, health on /healthz`,
    );
  }
  try {
    server = await serveEcho<EchoAddr>(full);
  } catch (error) {
    await metrics?.shutdown();
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
  await metrics?.shutdown();
  try {
    Deno.removeSignalListener("SIGUSR2", onStatsSignal);
  } catch {
    // never added
  }
  report.stopped(server.stats);
  return EXIT_OK;
}

if (import.meta.main) await runCli("server.ts", main);
