#!/usr/bin/env -S deno run --allow-net
/**
 * The echo server CLI: TCP and UDP echo (RFC 862) on 127.0.0.1:5006 until Ctrl-C.
 *
 * ```sh
 * deno run --allow-net server.ts [--host ADDR] [--port PORT] [--tcp|--udp] [--once] [-v|-q] [--json]
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
  parseFlags,
  parsePort,
  renderHelp,
  runCli,
  showBytes,
  UsageError,
  VERSION,
} from "./_cli.ts";
import { formatAddress } from "./errors.ts";
import { describeListener, serveEcho, type ServeEchoOptions } from "./serve.ts";
import type { EchoStats } from "./stats.ts";

const SPEC: CliSpec = {
  name: "server.ts",
  summary: "TCP and UDP echo server (RFC 862)",
  usage: ["deno run --allow-net server.ts [options]"],
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
  ],
  examples: [
    ["deno run --allow-net server.ts", "TCP and UDP echo on 127.0.0.1:5006 until Ctrl-C"],
    ["deno run --allow-net server.ts --udp --once -v", "the tutorial's UDP server: one datagram"],
    ["deno run --allow-net server.ts --host :: -p 7007 --json", "all IPv6/IPv4 addresses, JSON"],
  ],
  notes: [
    "Events go to stdout, warnings and errors to stderr. SIGINT or SIGTERM shuts down gracefully\n" +
    "(open TCP sessions get a few seconds to finish); a second signal exits at once.",
  ],
};

/** The schema version of `--json` event lines. */
const JSON_SCHEMA = 1;

function options(values: FlagValues): ServeEchoOptions {
  if (values.quiet && values.verbose) throw new UsageError("--quiet and --verbose conflict");
  if (values.quiet && values.json) throw new UsageError("--quiet and --json conflict");
  const hostname = (values.host as string | undefined) ?? "127.0.0.1";
  if (hostname === "") throw new UsageError("--host must not be empty");
  return {
    hostname: hostname.replace(/^\[(.*)\]$/, "$1"),
    port: values.port === undefined ? 5006 : parsePort(values.port as string),
    transport: values.tcp && !values.udp ? "tcp" : values.udp && !values.tcp ? "udp" : "both",
    once: Boolean(values.once),
  };
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
  const server = await serveEcho({
    ...serveOptions,
    signal: controller.signal,
    onListen(info) {
      emit("listening", { ...info }, `listening ${describeListener(info)}`);
      if (info.backend === "node") {
        console.error(
          "note: UDP runs on node:dgram; run with --unstable-net to use Deno.listenDatagram",
        );
      }
    },
    onConnection: quiet ? undefined : ({ id, remoteAddr }) =>
      emit(
        "connection",
        { id, remote: formatAddress(remoteAddr) },
        `connection #${id} from ${colors.cyan(formatAddress(remoteAddr))}`,
      ),
    onData: verbose
      ? ({ id, remoteAddr, data }) =>
        emit(
          "data",
          { id, remote: formatAddress(remoteAddr), size: data.length, ...payload(data) },
          `received from ${formatAddress(remoteAddr)} (#${id}): ${showBytes(data)}`,
        )
      : undefined,
    onClose: quiet ? undefined : ({ id, remoteAddr, bytes, duration, reason }) =>
      emit(
        "close",
        { id, remote: formatAddress(remoteAddr), bytes, duration_ms: duration, reason },
        `closed #${id} ${formatAddress(remoteAddr)}: ${bytes} bytes echoed in ${
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
    onError(error) {
      if (json) emit("error", { message: error.message }, "");
      console.error(`server.ts: ${paletteFor(Deno.stderr).yellow("warning")}: ${error.message}`);
    },
  });
  await server.finished;
  if (!quiet) emit("stopped", { stats: server.stats }, `stopped: ${summary(server.stats)}`);
  return EXIT_OK;
}

function payload(data: Uint8Array): Record<string, string> {
  const shown = showBytes(data);
  return shown.startsWith('"')
    ? { text: JSON.parse(shown) }
    : { hex: Array.from(data, (b) => b.toString(16).padStart(2, "0")).join("") };
}

function summary(stats: EchoStats): string {
  return `${stats.sessionsTotal} TCP sessions, ${stats.datagramsIn} datagrams, ` +
    `${stats.bytesIn} bytes in, ${stats.bytesOut} bytes out, ${stats.errors} errors`;
}

if (import.meta.main) await runCli("server.ts", main);
