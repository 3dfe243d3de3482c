/**
 * {@linkcode serveEcho} starts a TCP and/or UDP echo service on one host and port and returns one
 * handle, shaped like the one `Deno.serve` returns.
 *
 * @module
 */
import { EchoConnectionError, formatAddress } from "./errors.ts";
import { callHook } from "./_hooks.ts";
import type { EchoStats } from "./stats.ts";
import { createStats } from "./stats.ts";
import { serveTcpEcho } from "./tcp.ts";
import { serveUdpEcho } from "./udp.ts";
import type {
  ConnectionInfo,
  DatagramInfo,
  EchoServer,
  ListenInfo,
  ServeEchoOptions,
} from "./types.ts";
import { DEFAULT_PORT } from "./types.ts";

// The shared types and defaults live in types.ts; they are exported here too, where they were
// first defined, so `import type { EchoServer } from "./serve.ts"` keeps working.
export * from "./types.ts";

/** How many times a shared port is picked again when UDP cannot bind the port TCP got. */
const PORT_RETRIES = 20;

/**
 * Starts an echo server: TCP and UDP by default, sharing one host and port (with port 0, TCP picks a
 * free port and UDP binds the same one, trying again with another port if UDP cannot have it).
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
 * @param options Where to listen, which transports, threads, hooks and limits.
 * @returns The running server.
 * @throws {EchoConnectionError} When the address cannot be bound.
 * @throws {TypeError} When `workers` is above 1 and the port cannot be shared, or with `once`.
 * @throws {RangeError} When `workers` is not a whole number of at least 1.
 */
export async function serveEcho(options: ServeEchoOptions = {}): Promise<EchoServer> {
  if (options.workers !== undefined && options.workers !== 1) {
    // Loaded only when asked for: the workers' module costs a one-thread server nothing.
    const { serveWithWorkers } = await import("./_worker_pool.ts");
    return await serveWithWorkers(options, options.workers);
  }
  const transport = options.transport ?? "both";
  if (transport === "tcp") return serveTcpEcho(options);
  if (transport === "udp") return await serveUdpEcho(options);
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
    const tcp = serveTcpEcho({
      ...inner,
      port,
      onConnection: options.once
        ? (info: ConnectionInfo) => (void partner?.shutdown(), options.onConnection?.(info))
        : options.onConnection,
    });
    try {
      partner = await serveUdpEcho({
        ...inner,
        port: tcp.addr.port,
        onDatagram: options.once
          ? (info: DatagramInfo) => (void tcp.shutdown(), options.onDatagram?.(info))
          : options.onDatagram,
      });
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
 * Describes where a server listens, for messages: `tcp 127.0.0.1:5006`.
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
export function describeListener(info: ListenInfo): string {
  return `${info.transport} ${formatAddress(info)}`;
}
