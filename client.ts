#!/usr/bin/env -S deno run --allow-net
/**
 * The echo client CLI: sends a message to an echo server (TCP by default, or UDP), prints the reply
 * and the round-trip time, and exits 0 only if the reply equals what was sent.
 *
 * ```sh
 * deno run --allow-net client.ts [options] [MESSAGE]
 * ```
 *
 * @module
 */
import {
  type CliSpec,
  EXIT_OK,
  formatBytes,
  paletteFor,
  parseDurationFlag,
  parseFlags,
  parseInteger,
  parsePort,
  renderHelp,
  runCli,
  showBytes,
  UsageError,
  VERSION,
} from "./_cli.ts";
import { formatDuration } from "./duration.ts";
import { EchoError, formatAddress } from "./errors.ts";
import { DEFAULT_TCP_TIMEOUT, type EchoResult, echoTcp, echoTcpStream } from "./tcp.ts";
import { DEFAULT_UDP_RETRIES, DEFAULT_UDP_TIMEOUT, echoUdp, MAX_UDP_PAYLOAD } from "./udp.ts";

const SPEC: CliSpec = {
  name: "client.ts",
  summary: "echo client: send a message, check the reply, time the round trip",
  usage: [
    "deno run --allow-net client.ts [options] [MESSAGE]",
    "deno run --allow-net client.ts --stdin [options] < in > out",
  ],
  flags: [
    { name: "udp", short: "u", type: "boolean", description: "use UDP (default TCP)" },
    {
      name: "host",
      aliases: ["hostname"],
      type: "string",
      arg: "ADDR",
      description: "server host name or address (default 127.0.0.1)",
    },
    {
      name: "port",
      short: "p",
      type: "string",
      arg: "PORT",
      description: "server port (default 5006)",
    },
    {
      name: "timeout",
      type: "string",
      arg: "DURATION",
      description: `TCP: for the exchange (default ${
        DEFAULT_TCP_TIMEOUT / 1000
      }s); UDP: per attempt (default ${DEFAULT_UDP_TIMEOUT}ms)`,
    },
    {
      name: "retries",
      type: "string",
      arg: "N",
      description: `UDP: extra attempts after a timeout (default ${DEFAULT_UDP_RETRIES})`,
    },
    {
      name: "stdin",
      type: "boolean",
      description: "TCP: stream standard input through the server to standard output, verified",
    },
    { name: "json", type: "boolean", description: "print the result as one JSON object" },
    { name: "help", short: "h", type: "boolean", description: "show this help" },
    { name: "version", short: "V", type: "boolean", description: "show the version" },
  ],
  examples: [
    ["deno run --allow-net client.ts", 'sends "Hello World" over TCP to 127.0.0.1:5006'],
    ["deno run --allow-net client.ts -u 'hi there'", "the same over UDP, with retries"],
    [
      "deno run --allow-net client.ts --stdin < big.iso > copy.iso",
      "streams a file through the server; exit 0 only if every byte came back identical",
    ],
  ],
  notes: [
    "Durations: 250ms, 10s, 2m (a bare number is milliseconds). Results go to stdout, errors to\n" +
    "stderr. Works against any RFC 862 echo server.",
  ],
};

/** The schema version of `--json` output. */
const JSON_SCHEMA = 1;

async function main(): Promise<number> {
  const { values, positionals } = parseFlags(SPEC, Deno.args);
  if (values.help) {
    console.log(renderHelp(SPEC, paletteFor(Deno.stdout)));
    return EXIT_OK;
  }
  if (values.version) {
    console.log(`client.ts ${VERSION} (deno ${Deno.version.deno})`);
    return EXIT_OK;
  }
  const udp = Boolean(values.udp);
  const json = Boolean(values.json);
  const hostname = ((values.host as string | undefined) ?? "127.0.0.1").replace(/^\[(.*)\]$/, "$1");
  if (hostname === "") throw new UsageError("--host must not be empty");
  const port = values.port === undefined ? 5006 : parsePort(values.port as string);
  if (port === 0) throw new UsageError("--port must be from 1 to 65535 for a client");
  const timeout = values.timeout === undefined
    ? undefined
    : parseDurationFlag(values.timeout as string, "--timeout");
  if (timeout !== undefined && timeout <= 0) throw new UsageError("--timeout must be above 0");
  if (values.retries !== undefined && !udp) throw new UsageError("--retries applies to --udp only");
  const retries = values.retries === undefined
    ? undefined
    : parseInteger(values.retries as string, "--retries", { min: 0, max: 1000 });

  if (values.stdin) {
    if (udp) throw new UsageError("--stdin works over TCP only");
    if (positionals.length) throw new UsageError("--stdin and a MESSAGE conflict");
    const result = await echoTcpStream(Deno.stdin.readable, {
      hostname,
      port,
      timeout,
      output: Deno.stdout.writable,
    });
    const rate = result.bytes / Math.max(result.elapsed / 1000, 1e-9);
    const line = json
      ? JSON.stringify({
        schema: JSON_SCHEMA,
        ok: true,
        transport: "tcp",
        address: formatAddress(result.address),
        bytes: result.bytes,
        elapsed_ms: result.elapsed,
      })
      : `echoed ${formatBytes(result.bytes)} identical in ${formatDuration(result.elapsed)} (${
        formatBytes(rate)
      }/s) via tcp ${formatAddress(result.address)}`;
    console.error(line);
    return EXIT_OK;
  }

  const message = positionals.length ? positionals.join(" ") : "Hello World";
  const data = new TextEncoder().encode(message);
  if (udp && data.length > MAX_UDP_PAYLOAD) {
    throw new UsageError(
      `a UDP message holds at most ${MAX_UDP_PAYLOAD} bytes, got ${data.length}`,
    );
  }
  try {
    const result: EchoResult & { attempts?: number } = udp
      ? await echoUdp(data, { hostname, port, timeout, retries })
      : await echoTcp(data, { hostname, port, timeout });
    const where = `${udp ? "udp" : "tcp"} ${formatAddress(result.address)}`;
    if (json) {
      console.log(JSON.stringify({
        schema: JSON_SCHEMA,
        ok: true,
        transport: udp ? "udp" : "tcp",
        address: formatAddress(result.address),
        bytes: result.reply.length,
        reply: message,
        rtt_ms: result.rtt,
        ...(udp ? { attempts: result.attempts } : {}),
      }));
    } else {
      const colors = paletteFor(Deno.stdout);
      const attempts = (result.attempts ?? 1) > 1 ? ` after ${result.attempts} attempts` : "";
      console.log(
        `reply from ${where}: ${showBytes(result.reply)} (${result.reply.length} bytes) time=${
          colors.green(formatDuration(result.rtt))
        }${attempts}`,
      );
    }
    return EXIT_OK;
  } catch (error) {
    if (json && error instanceof EchoError) {
      console.log(JSON.stringify({
        schema: JSON_SCHEMA,
        ok: false,
        transport: udp ? "udp" : "tcp",
        error: error.name,
        message: error.message,
      }));
    }
    throw error;
  }
}

if (import.meta.main) await runCli("client.ts", main);
