/**
 * {@linkcode serveEcho} starts an echo service on any transport and returns one handle, shaped like
 * the one `Deno.serve` returns: TCP and/or UDP on one host and port, TLS (the `tls` option of TCP),
 * or a Unix socket (`transport: "unix"` and a `path`); with `ws`, a WebSocket echo and its live page
 * beside TCP and UDP. {@linkcode validateServeOptions} checks the options first, without binding
 * anything.
 *
 * @module
 */
import { EchoConnectionError, formatAddress } from "./errors.ts";
import { callHook } from "./_hooks.ts";
import { buildPolicy, policyOf, usePolicy } from "./_policy.ts";
import type { EchoStats } from "./stats.ts";
import { createStats } from "./stats.ts";
import { serveTcpEcho } from "./tcp.ts";
import { serveUdpEcho } from "./udp.ts";
import { serveUnixEcho } from "./unix.ts";
import { checkDuration, optionOf, optionTypeError } from "./_validate.ts";
import { validateWsOptions } from "./_ws_options.ts";
import { serveWithWorkers, validateWorkers } from "./_worker_pool.ts";
import type {
  ConnectionInfo,
  DatagramInfo,
  EchoAddr,
  EchoHooks,
  EchoImpairOptions,
  EchoServer,
  ListenInfo,
  ServeEchoOptions,
  ServeWsOptions,
  UnixEchoOptions,
  UnixListenInfo,
} from "./types.ts";
import { DEFAULT_PORT } from "./types.ts";

// The shared types and defaults live in types.ts; they are exported here too, where they were
// first defined, so `import type { EchoServer } from "./serve.ts"` keeps working.
export * from "./types.ts";
export {
  type HostKind,
  InvalidHostError,
  type InvalidHostReason,
  type ParsedHost,
  parseHost,
} from "./_address.ts";

/** How many times a shared port is picked again when UDP cannot bind the port TCP got. */
const PORT_RETRIES = 20;

const TRANSPORTS: readonly string[] = ["tcp", "udp", "both", "unix"];

/** What {@linkcode validateServeOptions} found: the values the server will use for defaults. */
export interface ServeOptionsCheck {
  /** The most stream sessions the server will hold open at once. */
  maxConnections: number;
  /** Whether that is the default, lowered to fit the process's open-file limit. */
  maxConnectionsLowered: boolean;
}

/**
 * Checks server options without binding anything, so a CLI can report a bad value as a usage
 * error before it listens. Every error names its option in an `option` property (a CLI maps it
 * to its flag). The policies built here (the parsed allow-list, the connection cap fitted to the
 * open-file limit) are kept for this options object: {@linkcode serveEcho} given the same object
 * builds nothing again.
 *
 * @example
 * ```ts
 * import { validateServeOptions } from "./mod.ts";
 * try {
 *   validateServeOptions({ maxConnections: 0 });
 * } catch (error) {
 *   console.log((error as RangeError & { option: string }).option); // "maxConnections"
 * }
 * ```
 *
 * @param options What {@linkcode serveEcho} will be given.
 * @returns The connection cap the server will use.
 * @throws {RangeError} When a number is out of range.
 * @throws {InvalidHostError} When `hostname` cannot be bound as given (a port in it, a zone id).
 * @throws {TypeError} When an option has the wrong type, a CIDR rule is invalid, or `workers`
 * cannot work with the other options or the runtime.
 */
export function validateServeOptions(options: ServeEchoOptions<never> = {}): ServeOptionsCheck {
  const transport = options.transport ?? "both";
  if (!TRANSPORTS.includes(transport)) {
    throw optionTypeError(
      "transport",
      `transport must be "tcp", "udp", "both" or "unix", got ${JSON.stringify(transport)}`,
    );
  }
  checkImpairFits(transport, options.impair);
  if (options.workers !== undefined) validateWorkers(options.workers, options as ServeEchoOptions);
  if (options.ws !== undefined) validateWs(options.ws, options);
  checkDuration("tls.handshakeTimeout", options.tls?.handshakeTimeout);
  const policy = buildPolicy(options);
  usePolicy(options, policy);
  return {
    maxConnections: policy.stream.maxConnections,
    maxConnectionsLowered: policy.maxConnectionsLowered,
  };
}

/** Impairments that only UDP replies have: on a stream the kernel retransmits and keeps order. */
const DATAGRAM_IMPAIRMENTS = ["loss", "duplicate", "reorder", "jitter", "jitterKeepOrder"] as const;

/**
 * Refuses an impairment the served transports would silently ignore: loss, duplication, reordering
 * and jitter without UDP, bandwidth without a stream (delay applies to both).
 *
 * @param transport The transports served.
 * @param impair The impairment options.
 * @throws {TypeError} Naming the impairment (`option` is `impair.loss`, ...).
 */
function checkImpairFits(transport: string, impair: EchoImpairOptions | undefined): void {
  if (!impair) return;
  if (transport === "tcp" || transport === "unix") {
    const name = DATAGRAM_IMPAIRMENTS.find((key) => impair[key] !== undefined && impair[key] !== 0);
    if (name !== undefined) {
      throw optionTypeError(
        `impair.${name}`,
        `${name} applies to UDP replies only (a stream is never lossy, duplicated or ` +
          `reordered: the kernel retransmits), and this server serves ` +
          `${transport === "tcp" ? "TCP" : "a Unix socket"} only`,
      );
    }
  }
  if (transport === "udp" && impair.bandwidth !== undefined) {
    throw optionTypeError(
      "impair.bandwidth",
      "bandwidth applies to TCP only (it paces a stream), and this server serves UDP only",
    );
  }
}

/**
 * Starts an echo server: TCP and UDP by default, sharing one host and port (with port 0, TCP picks a
 * free port and UDP binds the same one, trying again with another port if UDP cannot have it). With
 * `transport: "unix"` it serves a Unix socket at `path` instead (see {@linkcode serveUnixEcho});
 * with `tls` the TCP listener speaks TLS. The handle, hooks and counters are the same for all.
 *
 * @example A test fixture that cleans up after itself
 * ```ts
 * import { echoTcp, echoUdp, serveEcho } from "./mod.ts";
 * await using server = await serveEcho({ port: 0 });
 * const { reply } = await echoTcp("Hello World", { port: server.addr.port });
 * await echoUdp(reply, { port: server.addr.port });
 * ```
 *
 * @example Four threads accepting TCP connections (Linux, unstable net)
 * ```ts
 * import { echoTcp, serveEcho } from "./mod.ts";
 * await using server = await serveEcho({ port: 0, transport: "tcp", workers: 4 });
 * await echoTcp("spread over threads", { port: server.addr.port });
 * ```
 *
 * @example A Unix socket, the same handle over a Unix address
 * ```ts
 * import { echoTcp, serveEcho } from "./mod.ts";
 * const path = `${await Deno.makeTempDir()}/echo.sock`;
 * await using server = await serveEcho({ transport: "unix", path });
 * await echoTcp("Hello World", { unix: path });
 * console.log(server.addr.path === path); // true
 * ```
 *
 * @param options Where to listen, which transports, threads, hooks and limits.
 * @returns The running server.
 * @throws {EchoConnectionError} When the address cannot be bound.
 * @throws {InvalidHostError} When `hostname` cannot be bound as given (a port in it, a zone id).
 * @throws {TypeError} When `workers` is above 1 and the port cannot be shared, or with `once`.
 * @throws {RangeError} When `workers` is not a whole number of at least 1.
 */
export function serveEcho(
  options: ServeEchoOptions<Deno.UnixAddr> & { transport: "unix"; path: string },
): Promise<EchoServer<Deno.UnixAddr>>;
/**
 * Starts an echo server: TCP and UDP by default, or one transport, on one host and port.
 *
 * @example
 * ```ts
 * import { echoTcp, serveEcho } from "./mod.ts";
 * await using server = await serveEcho({ port: 0, transport: "tcp" });
 * await echoTcp("Hello World", { port: server.addr.port });
 * ```
 *
 * @typeParam A The address type the hooks are given: `Deno.NetAddr`, or a union with
 * `Deno.UnixAddr` for hooks that serve either.
 * @param options Where to listen, which transports, threads, hooks and limits.
 * @returns The running server.
 */
export function serveEcho<A extends EchoAddr = Deno.NetAddr>(
  options?: ServeEchoOptions<A>,
): Promise<EchoServer<A>>;
export async function serveEcho(
  // `never`: every overload's options are assignable here, whatever their hooks' address type.
  options: ServeEchoOptions<never> = {},
): Promise<EchoServer<EchoAddr>> {
  const transport = options.transport ?? "both";
  checkImpairFits(transport, options.impair);
  if (options.ws !== undefined) validateWs(options.ws, options);
  if (transport === "unix") {
    // A Unix socket has no network address; the stream loop hands the hooks Unix addresses.
    const { hostname: _hostname, port: _port, transport: _transport, ...rest } = options;
    return await serveUnixEcho(usePolicy(rest as UnixEchoOptions, policyOf(options)));
  }
  // Network transports: the hooks are called with network addresses only.
  const net = options as ServeEchoOptions;
  policyOf(net);
  if (net.ws !== undefined) return await serveWithWs(net, net.ws);
  if (net.workers !== undefined && net.workers !== 1) {
    return await serveWithWorkers(net, net.workers);
  }
  if (transport === "tcp") return serveTcpEcho(net);
  if (transport === "udp") return await serveUdpEcho(net);
  return await serveBoth(net);
}

/** The `ws` option's own checks, and the options it cannot go with; errors name `ws.<option>`. */
function validateWs(ws: ServeWsOptions, options: ServeEchoOptions<never>): void {
  if (options.transport === "unix") {
    throw optionTypeError("ws", "ws cannot go with a Unix socket: it needs a network address");
  }
  if (options.once) throw optionTypeError("ws", "ws and once conflict: once serves one exchange");
  try {
    validateWsOptions(ws);
  } catch (error) {
    const option = optionOf(error);
    if (option !== undefined) Object.assign(error as Error, { option: `ws.${option}` });
    throw error;
  }
}

/**
 * The network server the options ask for, plus the WebSocket echo on the same host, with the same
 * TLS, policy and counters: the page's feed is fed by the other transports' hooks, added only here
 * (without `ws`, the hot path has none). One handle; shutdown closes the WebSocket sessions with 1001.
 */
async function serveWithWs(options: ServeEchoOptions, ws: ServeWsOptions): Promise<EchoServer> {
  // Loaded only when asked for: a server without `ws` never loads the WebSocket server and page.
  const { EventFeed, serveWsEcho } = await import("./ws.ts");
  const stats = options.stats ?? createStats();
  const feed = new EventFeed({ stats });
  // The WebSocket listener's ready line waits until every listener is bound.
  const listened: ListenInfo[] = [];
  const wsServer = serveWsEcho({
    ...ws,
    hostname: options.hostname,
    tls: options.tls,
    gracePeriod: options.gracePeriod,
    stats,
    allow: options.allow,
    maxConnections: options.maxConnections,
    idleTimeout: options.idleTimeout,
    feed,
    onListen: (info) => listened.push(info),
    onReject: options.onReject,
    onError: options.onError,
  });
  let base: EchoServer;
  try {
    const { ws: _ws, signal: _signal, ...rest } = options;
    const transport = options.transport === "udp" ? "udp" : "tcp";
    const inner = { ...withFeed(rest, feed.hooks(transport)), stats };
    base = await serveEcho(usePolicy(inner, policyOf(options)));
  } catch (error) {
    await wsServer.shutdown();
    throw error;
  }
  const server = combine(base, wsServer, stats, options.signal);
  for (const info of listened) callHook(options, options.onListen, info);
  return server;
}

/** The user's hooks, each preceded by the feed's (which never throws). */
function withFeed(user: EchoHooks, feed: EchoHooks): EchoHooks {
  const out: Record<string, unknown> = {};
  for (const [name, hook] of Object.entries(feed) as [keyof EchoHooks, (i: unknown) => void][]) {
    const theirs = user[name] as ((i: unknown) => void) | undefined;
    out[name] = theirs ? (info: unknown) => (hook(info), theirs(info)) : hook;
  }
  return { ...user, ...out };
}

/** TCP and UDP on one host and port. */
async function serveBoth(options: ServeEchoOptions): Promise<EchoServer> {
  const policy = policyOf(options);
  const stats = options.stats ?? createStats();
  const port = options.port ?? DEFAULT_PORT;
  // Hooks that fire on listen are held back until both transports are bound, so a retried port
  // never shows up as a ready line.
  const listened: ListenInfo[] = [];
  const inner = {
    ...options,
    stats,
    signal: undefined,
    onListen: (i: ListenInfo) => listened.push(i),
  };
  for (let attempt = 0;; attempt++) {
    let partner: EchoServer | undefined;
    const tcp = serveTcpEcho(usePolicy({
      ...inner,
      port,
      onConnection: options.once
        ? (info: ConnectionInfo) => (void partner?.shutdown(), options.onConnection?.(info))
        : options.onConnection,
    }, policy));
    try {
      partner = await serveUdpEcho(usePolicy({
        ...inner,
        port: tcp.addr.port,
        onDatagram: options.once
          ? (info: DatagramInfo) => (void tcp.shutdown(), options.onDatagram?.(info))
          : options.onDatagram,
      }, policy));
    } catch (error) {
      await tcp.shutdown();
      const retry = port === 0 && attempt < PORT_RETRIES &&
        error instanceof EchoConnectionError && error.cause instanceof Deno.errors.AddrInUse;
      if (!retry) throw error;
      listened.length = 0;
      continue;
    }
    const server = combine(tcp, partner!, stats, options.signal);
    for (const info of listened) callHook(options, options.onListen, info);
    return server;
  }
}

function combine(
  a: EchoServer,
  b: EchoServer,
  stats: EchoStats,
  signal: AbortSignal | undefined,
): EchoServer {
  const finished = Promise.all([a.finished, b.finished]).then(() => {});
  const shutdown = () => Promise.all([a.shutdown(), b.shutdown()]).then(() => {});
  if (signal?.aborted) void shutdown();
  else signal?.addEventListener("abort", () => void shutdown(), { once: true });
  return {
    addr: a.addr,
    listeners: [...a.listeners, ...b.listeners],
    stats,
    finished,
    shutdown,
    ref: () => (a.ref(), b.ref()),
    unref: () => (a.unref(), b.unref()),
    [Symbol.asyncDispose]: shutdown,
  };
}

/**
 * Describes where a server listens, for messages: `tcp 127.0.0.1:5006`, `unix /tmp/echo.sock`.
 *
 * @example
 * ```ts
 * import { describeListener } from "./mod.ts";
 * console.log(describeListener({ transport: "udp", hostname: "::1", port: 7 })); // "udp [::1]:7"
 * ```
 *
 * @param info A listener.
 * @returns `transport host:port`.
 */
export function describeListener(info: ListenInfo | UnixListenInfo): string {
  return info.transport === "unix"
    ? `unix ${info.path}`
    : `${info.transport} ${formatAddress(info)}`;
}
