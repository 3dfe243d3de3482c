#!/usr/bin/env -S deno run --allow-net
/**
 * The echo client CLI: sends a message to an echo server (TCP by default, or UDP), prints the reply
 * and the round-trip time, and exits 0 only if the reply equals what was sent. It also measures any
 * echo server: ping mode (a line per reply, then loss and rtt statistics) and bench mode (req/s,
 * MB/s, latency percentiles, loss, duplicates, reordering, jitter), both on the engine in probe.ts.
 *
 * @example Usage
 * ```sh
 * deno run --allow-net client.ts [options] [MESSAGE]
 * deno run --allow-net client.ts --count 5 --interval 1s [--udp]
 * deno run --allow-net client.ts --bench -c 50 -s 1024 --duration 10s [--udp] [--json]
 * deno run --allow-net client.ts --bench --report-interval 1s --workers 2 [--json]
 * deno run --allow-read client.ts merge a.json b.json [--json]
 * deno run --allow-net --allow-read client.ts --tls --ca cert.pem [options] [MESSAGE]
 * deno run --allow-read --allow-write --allow-net client.ts --unix PATH [options] [MESSAGE]
 * deno run --allow-net client.ts --ws [--host H] [--port P] | --url ws://HOST:PORT/ [MESSAGE]
 * deno run --allow-net client.ts --ws --ping | --bench [--url ws://HOST:PORT/] [options]
 * ```
 *
 * @module
 */
import {
  type CliSpec,
  EXIT_OK,
  flagTable,
  type FlagValues,
  formatCount,
  paletteFor,
  parseAddress,
  parseDurationFlag,
  parseFlags,
  parseInteger,
  parsePort,
  readPemFile,
  renderHelp,
  runCli,
  unixPermissionError,
  UsageError,
  VERSION,
} from "./_cli.ts";
import { EchoError, EchoOutputError } from "./errors.ts";
import {
  DEFAULT_TCP_TIMEOUT,
  type EchoResult,
  echoTcp,
  echoTcpStream,
  type TcpClientOptions,
} from "./tcp.ts";
import { DEFAULT_WS_PORT, echoWs, type WsClientOptions, wsUrl } from "./ws.ts";
import { DEFAULT_UDP_RETRIES, DEFAULT_UDP_TIMEOUT, echoUdp, MAX_UDP_PAYLOAD } from "./udp.ts";
import {
  echoFailureJson,
  echoJson,
  formatEchoReply,
  formatStreamResult,
} from "./_client_report.ts";
import {
  measure,
  MEASURE_OUTPUT_FLAGS,
  MEASURE_OUTPUT_NOTE,
  measureMode,
  merge,
  PROBE_FLAGS,
  PROBE_NOTE,
  proxyHeaderFlag,
} from "./_client_measure.ts";

const SPEC: CliSpec = {
  name: "client.ts",
  summary: "echo client: send a message, check the reply, time the round trip",
  usage: [
    "deno run --allow-net client.ts [options] [MESSAGE]",
    "deno run --allow-net client.ts --stdin [options] < in > out",
    "deno run --allow-net client.ts --ping [--count N] [--interval DURATION] [options]",
    "deno run --allow-net client.ts --bench [-c N] [--duration DURATION | --count N] [options]",
    "deno run --allow-read client.ts merge A.json B.json ... [--json]",
    "deno run --allow-net --allow-read client.ts --tls --ca cert.pem [options] [MESSAGE]",
    "deno run --allow-read --allow-write --allow-net client.ts --unix PATH [options] [MESSAGE]",
    "deno run --allow-net client.ts --ws [--host H] [--port P] | --url ws://HOST:PORT/ [MESSAGE]",
    "deno run --allow-net client.ts --ws --ping | --bench [--url ws://HOST:PORT/] [options]",
  ],
  flags: [
    ...flagTable(undefined, {
      "udp -u": "use UDP (default TCP)",
      "host|hostname ADDR": "server host name or address (default 127.0.0.1)",
      "port -p PORT": "server port (default 5006)",
      "timeout DURATION": `TCP: for the exchange (default ${
        DEFAULT_TCP_TIMEOUT / 1000
      }s); UDP: per attempt (default ${DEFAULT_UDP_TIMEOUT}ms)`,
      "retries N": `UDP: extra attempts after a timeout (default ${DEFAULT_UDP_RETRIES})`,
      "stdin": "TCP: stream standard input through the server to standard output, verified",
      "json": "print the result as one JSON object",
    }),
    ...flagTable("Transports (TCP only; single echo, ping and bench)", {
      "tls": "speak TLS, verifying the server's certificate",
      "ca FILE ...": "with --tls: also trust the PEM certificates in FILE (repeatable)",
      "servername NAME": "with --tls: the name the certificate must hold, when --host is not in it",
      "unix PATH": "connect to the Unix domain socket at PATH instead of --host and --port",
    }),
    ...flagTable("WebSocket (one echo, ping and bench)", {
      "ws":
        `WebSocket: one text message, or ping/bench binary messages (default port ${DEFAULT_WS_PORT}; wss: with --tls)`,
      "url URL": "the WebSocket echo's ws:// or wss:// URL (implies --ws; not with --host/--port)",
    }),
    ...flagTable("Load balancers", {
      "proxy-header v1|v2":
        "TCP: start each connection with a PROXY header naming it (echo, --stdin, ping, bench)",
    }),
    ...flagTable(undefined, {
      "help -h": "show this help",
      "version -V": "show the version",
    }),
    ...PROBE_FLAGS,
    ...MEASURE_OUTPUT_FLAGS,
  ],
  examples: [
    ["deno run --allow-net client.ts", 'sends "Hello World" over TCP to 127.0.0.1:5006'],
    ["deno run --allow-net client.ts -u 'hi there'", "the same over UDP, with retries"],
    [
      "deno run --allow-net client.ts --stdin < big.iso > copy.iso",
      "streams a file through the server; exit 0 only if every byte came back identical",
    ],
    [
      "deno run --allow-net --allow-read client.ts --tls --ca tests/fixtures/tls_cert.pem",
      "over TLS, trusting a self-signed certificate",
    ],
    [
      "deno run --allow-read --allow-write --allow-net client.ts --unix /tmp/echo.sock",
      "to a server on a Unix socket",
    ],
    [
      "deno run --allow-net client.ts --ws --port 8080 'hi there'",
      "one WebSocket message to server.ts --ws 8080, verified, with its round-trip time",
    ],
    [
      "deno run --allow-net client.ts --ws --port 8080 --bench -c 4 --pipeline 2 -d 5s",
      "loads server.ts --ws 8080 from 4 WebSockets, 2 binary messages in flight on each",
    ],
    [
      "deno run --allow-net client.ts --count 5 --interval 200ms -u",
      "pings the UDP echo service 5 times: a line per reply, then loss and rtt statistics",
    ],
    [
      "deno run --allow-net client.ts --bench -c 50 -s 1024 --duration 10s",
      "loads the server from 50 TCP connections for 10 s: req/s, MB/s, latency percentiles",
    ],
    [
      "deno run --allow-net client.ts --bench -u --rate 20000 --duration 30s --json",
      "an open-model UDP run at 20,000 datagrams/s, as one JSON object",
    ],
    [
      "deno run --allow-net client.ts --bench -d 10s --json --report-interval 1s > a.json",
      "a JSON object a second, then the result (its histogram in full, for merge)",
    ],
    [
      "deno run --allow-read client.ts merge a.json b.json",
      "one result from two runs made at the same time (percentiles of every sample)",
    ],
  ],
  notes: [
    "Durations: 250ms, 10s, 2m (a bare number is milliseconds). Results go to stdout, errors to\n" +
    "stderr. Works against any RFC 862 echo server.",
    PROBE_NOTE,
    MEASURE_OUTPUT_NOTE,
    "--tls and --ca need --allow-read for the files; --unix needs --allow-read, --allow-write and\n" +
    "--allow-net for PATH (--allow-net=unix:PATH is enough of the last).",
  ],
};

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
  if (positionals[0] === "merge") return await merge(positionals.slice(1), values);
  const { hostname, port } = parseAddress(values);
  if (port === 0) throw new UsageError("--port must be from 1 to 65535 for a client");
  const timeout = values.timeout === undefined
    ? undefined
    : parseDurationFlag(values.timeout as string, "--timeout");
  if (timeout !== undefined && timeout <= 0) throw new UsageError("--timeout must be above 0");
  if (values.retries !== undefined && !udp) throw new UsageError("--retries applies to --udp only");
  const retries = values.retries === undefined
    ? undefined
    : parseInteger(values.retries as string, "--retries", { min: 0, max: 1000 });

  const mode = measureMode(values);
  const ws = Boolean(values.ws) || values.url !== undefined;
  if (mode !== undefined) {
    if (positionals.length) {
      throw new UsageError(`${mode} mode sends its own probes: drop the MESSAGE (use --size)`);
    }
    if (values.stdin) throw new UsageError(`--stdin and ${mode} mode exclude each other`);
    if (retries !== undefined) {
      throw new UsageError("--retries applies to a single UDP echo, not to ping or bench");
    }
    const target = ws ? await wsTarget(values) : await streamTarget(values, udp, hostname, port);
    return await measure(mode, values, { udp, ws, json, target, timeout });
  }
  if (ws) return await echoOverWs(await wsTarget(values), positionals, { json, timeout });
  for (const flag of ["report-interval", "hdr-log", "workers"]) {
    if (values[flag] !== undefined) {
      throw new UsageError(`--${flag} applies to ping and bench modes (add --ping or --bench)`);
    }
  }
  const target: TcpClientOptions = {
    ...await streamTarget(values, udp, hostname, port),
    ...proxyHeaderFlag(values, udp),
  };
  const transport = udp ? "udp" : target.unix !== undefined ? "unix" : target.tls ? "tls" : "tcp";
  const explain = (error: unknown) =>
    target.unix === undefined ? error : unixPermissionError(error, target.unix);

  if (values.stdin) {
    if (udp) throw new UsageError("--stdin works over TCP only");
    if (positionals.length) throw new UsageError("--stdin and a MESSAGE conflict");
    const result = await echoTcpStream(Deno.stdin.readable, {
      ...target,
      timeout,
      output: Deno.stdout.writable,
    }).catch((error) => Promise.reject(explain(stdoutClosed(error))));
    console.error(formatStreamResult(result, transport, json));
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
      : await echoTcp(data, { ...target, timeout }).catch((error) =>
        Promise.reject(explain(error))
      );
    console.log(
      json
        ? JSON.stringify(echoJson(result, { transport, message, udp }))
        : formatEchoReply(result, transport, paletteFor(Deno.stdout)),
    );
    return EXIT_OK;
  } catch (error) {
    if (json && error instanceof EchoError) {
      console.log(JSON.stringify(echoFailureJson(error, transport)));
    }
    throw error;
  }
}

/**
 * `--stdin | head -c 100`: it was standard output that closed, not the connection, so say so.
 */
function stdoutClosed(error: unknown): unknown {
  if (!(error instanceof EchoOutputError)) return error;
  const why = error.cause instanceof Deno.errors.BrokenPipe ? "closed (broken pipe)" : "failed";
  return new EchoOutputError(
    `standard output ${why} after ${formatCount(error.bytes)} echoed bytes had been written ` +
      "to it: it was the output that closed, not the connection",
    { bytes: error.bytes, cause: error.cause },
  );
}

/**
 * Where a WebSocket client connects (`--ws` with `--host`/`--port`, or `--url`), with the --ca
 * files read for `--tls`. Flags of other transports are usage errors.
 */
async function wsTarget(values: FlagValues): Promise<WsClientOptions> {
  for (const flag of ["udp", "unix", "stdin", "retries", "servername", "proxy-header"]) {
    if (values[flag] !== undefined && values[flag] !== false) {
      throw new UsageError(`--ws and --${flag} conflict`);
    }
  }
  if (!values.tls && values.ca !== undefined) throw new UsageError("--ca applies to --tls only");
  const url = values.url as string | undefined;
  let target: WsClientOptions;
  if (url !== undefined) {
    if (values.host !== undefined || values.port !== undefined) {
      throw new UsageError("--url and --host/--port conflict: the URL names the server");
    }
    if (!/^wss?:\/\//i.test(url)) {
      throw new UsageError(`--url must be a ws:// or wss:// URL, got "${url}"`);
    }
    try {
      target = { url: wsUrl({ url }) };
    } catch {
      throw new UsageError(`--url is not a valid URL: "${url}"`);
    }
  } else {
    const { hostname } = parseAddress(values);
    const port = values.port === undefined ? DEFAULT_WS_PORT : parsePort(values.port as string);
    if (port === 0) throw new UsageError("--port must be from 1 to 65535 for a client");
    target = { hostname, port };
  }
  const ca = values.ca as string[] | undefined;
  if (values.tls) {
    const caCerts = ca === undefined
      ? undefined
      : await Promise.all(ca.map((file) => readPemFile(file, "--ca", "certificate")));
    target.tls = { caCerts };
  }
  return target;
}

/** One WebSocket echo: the message as a text message, the reply line or JSON as for TCP. */
async function echoOverWs(
  target: WsClientOptions,
  positionals: string[],
  common: { json: boolean; timeout?: number },
): Promise<number> {
  const href = new URL(wsUrl(target));
  const transport = href.protocol === "wss:" ? "wss" : "ws";
  const message = positionals.length ? positionals.join(" ") : "Hello World";
  const address = {
    hostname: href.hostname.replace(/^\[|\]$/g, ""),
    port: Number(href.port) || (transport === "wss" ? 443 : 80),
    transport: "tcp" as const,
  };
  try {
    const { rtt } = await echoWs(message, { ...target, timeout: common.timeout });
    const result = { reply: new TextEncoder().encode(message), rtt, address };
    console.log(
      common.json
        ? JSON.stringify(echoJson(result, { transport, message, udp: false }))
        : formatEchoReply(result, transport, paletteFor(Deno.stdout)),
    );
    return EXIT_OK;
  } catch (error) {
    if (common.json && error instanceof EchoError) {
      console.log(JSON.stringify(echoFailureJson(error, transport)));
    }
    throw error;
  }
}

/**
 * Where a stream client connects, from the transport flags: a Unix socket, TLS (with the --ca
 * files read), or plain TCP. Conflicting flags are usage errors.
 */
async function streamTarget(
  values: FlagValues,
  udp: boolean,
  hostname: string,
  port: number,
): Promise<TcpClientOptions> {
  const unix = values.unix as string | undefined;
  const ca = values.ca as string[] | undefined;
  const servername = values.servername as string | undefined;
  if (!values.tls) {
    if (ca !== undefined) throw new UsageError("--ca applies to --tls only");
    if (servername !== undefined) throw new UsageError("--servername applies to --tls only");
  }
  if (udp && values.tls) throw new UsageError("--udp and --tls conflict: TLS runs over TCP");
  if (unix !== undefined) {
    if (udp) throw new UsageError("--udp and --unix conflict: a Unix socket carries streams");
    if (values.tls) throw new UsageError("--tls and --unix conflict: TLS runs over TCP");
    if (unix === "") throw new UsageError("--unix must not be empty");
    for (const flag of ["host", "port"]) {
      if (values[flag] !== undefined) {
        throw new UsageError(`--unix and --${flag} conflict: a Unix socket has no network address`);
      }
    }
    return { unix };
  }
  if (!values.tls) return { hostname, port };
  if (servername === "") throw new UsageError("--servername must not be empty");
  const caCerts = ca === undefined
    ? undefined
    : await Promise.all(ca.map((file) => readPemFile(file, "--ca", "certificate")));
  return { hostname, port, tls: { caCerts, servername } };
}

if (import.meta.main) await runCli("client.ts", main);
