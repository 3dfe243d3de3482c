/**
 * {@linkcode serveEcho} starts a TCP and/or UDP echo service on one host and port and returns one
 * handle, shaped like the one `Deno.serve` returns.
 *
 * @module
 */
import type { EchoError } from "./errors.ts";
import { EchoConnectionError, formatAddress } from "./errors.ts";
import { callHook } from "./_hooks.ts";
import type { EchoStats } from "./stats.ts";
import { createStats } from "./stats.ts";
import type { UdpBackendKind } from "./_udp_backend.ts";
import type { ImpairOptions } from "./impair.ts";
import type { LoopGuardOptions } from "./loop_guard.ts";
import { serveTcpEcho } from "./tcp.ts";
import { serveUdpEcho } from "./udp.ts";

export type { UdpBackendKind } from "./_udp_backend.ts";

/** The port the tutorial's programs use, and ours by default. */
export const DEFAULT_PORT = 5006;
/** We bind loopback by default: an echo service is reachable from the network only when asked. */
export const DEFAULT_HOSTNAME = "127.0.0.1";
/** How long `shutdown()` lets open TCP sessions finish before closing them, in ms. */
export const DEFAULT_GRACE_PERIOD = 3000;

/** A bound listener: which transport, where, and for UDP which backend serves it. */
export interface ListenInfo {
  /** `tcp` or `udp`. */
  transport: "tcp" | "udp";
  /** The address actually bound. */
  hostname: string;
  /** The port actually bound (never 0). */
  port: number;
  /** For UDP: `deno` (Deno.listenDatagram) or `node` (node:dgram fallback). */
  backend?: UdpBackendKind;
  /** For TCP: whether the listener speaks TLS. */
  secure?: boolean;
  /** The active impairments, described (`loss 20%, delay 50ms, seed 42`), when any. */
  impairment?: string;
}

/** A TCP session that was just accepted. */
export interface ConnectionInfo {
  /** Session number, counting from 1 for each server. */
  id: number;
  /** The client. */
  remoteAddr: Deno.NetAddr;
  /** Our end. */
  localAddr: Deno.NetAddr;
}

/** A chunk received on a TCP session, before it is echoed. */
export interface DataInfo {
  /** Session number. */
  id: number;
  /** The client. */
  remoteAddr: Deno.NetAddr;
  /** The bytes; valid only during the hook call (the buffer is reused). */
  data: Uint8Array;
}

/** Why a TCP session ended. */
export type CloseReason = "eof" | "reset" | "shutdown" | "error" | "idle" | "limit";

/**
 * Why a connection or datagram was refused: `limit` (maxConnections), `source` (maxPerSource),
 * `fd` (no file descriptor left to accept with), `acl`, `guard` (loop and reflection guard),
 * `loop` (a datagram bounced back and forth with another echo service), `rate` (udpRate).
 */
export type RejectReason = "limit" | "source" | "fd" | "acl" | "guard" | "loop" | "rate";

/** A TCP connection closed at once, or a datagram left unanswered, by a policy. */
export interface RejectInfo {
  /** Which transport it came on. */
  transport: "tcp" | "udp";
  /** Where it came from. */
  remoteAddr: Deno.NetAddr;
  /** Which policy refused it. */
  reason: RejectReason;
  /** For the loop guard: the detail (`blocked-port`, `port-zero`, `broadcast`, ...). */
  detail?: string;
}

/** A TCP session that ended. */
export interface CloseInfo {
  /** Session number. */
  id: number;
  /** The client. */
  remoteAddr: Deno.NetAddr;
  /** Bytes echoed back on this session. */
  bytes: number;
  /** How long the session lasted, in ms. */
  duration: number;
  /** Why it ended. */
  reason: CloseReason;
}

/** A datagram that was received, before it is echoed. */
export interface DatagramInfo {
  /** The sender. */
  remoteAddr: Deno.NetAddr;
  /** The payload; valid only during the hook call (the buffer is reused). */
  data: Uint8Array;
}

/**
 * Optional hooks, so callers can log or count without the library printing anything. They run only
 * when given: the hot path pays nothing for a hook that is absent. A hook that throws is reported to
 * `onError` and never stops the server.
 */
export interface EchoHooks {
  /** Called once per listener, when it is bound. */
  onListen?: (info: ListenInfo) => void;
  /** Called when a TCP session is accepted. */
  onConnection?: (info: ConnectionInfo) => void;
  /** Called for each chunk a TCP session receives (for verbose logging). */
  onData?: (info: DataInfo) => void;
  /** Called when a TCP session ends. */
  onClose?: (info: CloseInfo) => void;
  /** Called for each datagram received. */
  onDatagram?: (info: DatagramInfo) => void;
  /** Called when a policy refuses a connection or datagram (counted in `stats.dropped` too). */
  onReject?: (info: RejectInfo) => void;
  /** Called for unexpected errors (accept failures, failed sends, throwing hooks). */
  onError?: (error: EchoError) => void;
}

/** Options every echo server takes. */
export interface EchoServerOptions extends EchoHooks {
  /** Address to bind. Default `127.0.0.1`; `0.0.0.0`, `::` and `::1` work too. */
  hostname?: string;
  /** Port to bind. Default 5006; 0 picks a free one. */
  port?: number;
  /** Aborting it shuts the server down, like calling `shutdown()`. */
  signal?: AbortSignal;
  /** How long `shutdown()` lets TCP sessions finish before closing them, in ms. Default 3000. */
  gracePeriod?: number;
  /** Serve a single exchange, then stop: one TCP session until the client closes, or one datagram. */
  once?: boolean;
  /** Counters to add to; a new set by default. Share one object to count several servers together. */
  stats?: EchoStats;
  /**
   * Only sources in these CIDR ranges are served (IPv4 and IPv6; IPv4 clients of a dual-stack `::`
   * bind match IPv4 rules); others are closed at once (TCP) or ignored (UDP). Default: everyone.
   */
  allow?: readonly string[];
  /**
   * Most TCP sessions open at once; beyond it new ones are closed at once and counted. Default
   * 4096, lowered to fit the file-descriptor limit when it can be read.
   */
  maxConnections?: number;
  /**
   * Most TCP sessions open at once from one source: an IPv4 address, or an IPv6 /64 (see
   * `perSourcePrefix6`); beyond it new ones are closed at once and counted as `source`. Default
   * 64 when bound to a non-loopback address, off on loopback (decided from the bound address);
   * 0 = off. With `workers`, each thread counts its own sessions.
   */
  maxPerSource?: number;
  /** Leading bits of an IPv6 address that name one source for `maxPerSource`, 0-128. Default 64. */
  perSourcePrefix6?: number;
  /** A TCP session with no traffic for this long (ms) is closed. Default 5 minutes; 0 = off. */
  idleTimeout?: number;
  /** A TCP session is closed once it has echoed this many bytes. Default: no cap. */
  maxSessionBytes?: number;
  /** A TCP session is closed after this long (ms). Default: no cap. */
  maxSessionTime?: number;
  /**
   * UDP datagrams answered per second per source address (token bucket; excess dropped and
   * counted). Default 1000 on non-loopback binds, off on loopback; 0 = off.
   */
  udpRate?: number;
  /**
   * The UDP loop and reflection guard: never answer source port 0, well-known self-answering
   * service ports (echo 7, chargen 19, ...), our own port, broadcast or multicast sources. On by
   * default; `false` turns it off; an object replaces the blocked-port set.
   */
  loopGuard?: boolean | LoopGuardOptions;
  /**
   * Impairment: make UDP's unreliability visible (loss, duplication, reordering, delay and jitter
   * of replies, from a seeded generator), and on TCP delay and throttle the echo (`delay`,
   * `bandwidth` in bytes/s; loss does not exist there, the kernel retransmits). Off by default.
   */
  impair?: EchoImpairOptions;
}

/** Impairment options: the UDP ones, plus `bandwidth` (bytes/s) which applies to TCP. */
export interface EchoImpairOptions extends ImpairOptions {
  /** TCP: echo at most this many bytes per second. */
  bandwidth?: number;
}

/** Options of {@linkcode serveUdpEcho}. */
export interface UdpEchoOptions extends EchoServerOptions {
  /** Force a UDP backend; `auto` (default) uses Deno.listenDatagram when unstable net is on. */
  backend?: UdpBackendKind | "auto";
}

/** Options of {@linkcode serveEcho}. */
export interface ServeEchoOptions extends UdpEchoOptions {
  /** Which transports to serve. Default `both`. */
  transport?: "tcp" | "udp" | "both";
  /**
   * Threads that accept TCP connections: the main thread and `workers - 1` Web Workers, each
   * with its own listener on the same port (`reusePort`, which needs Linux and unstable net).
   * UDP stays on the main thread; `maxConnections` and the counters are totals over all threads;
   * hooks run on the main thread; `shutdown()` stops every thread; `unref()` cannot let the
   * workers go (only `shutdown()` does). Session ids stay unique but are not consecutive.
   * Default 1.
   */
  workers?: number;
}

/** A running echo server, shaped like the handle `Deno.serve` returns. */
export interface EchoServer extends AsyncDisposable {
  /** The address actually bound (the TCP one when both transports run; they share host and port). */
  readonly addr: Deno.NetAddr;
  /** Every bound listener. */
  readonly listeners: readonly ListenInfo[];
  /** Live counters. */
  readonly stats: EchoStats;
  /** Settles when the server has stopped and every session has ended. */
  readonly finished: Promise<void>;
  /**
   * Stops accepting, lets open TCP sessions finish within the grace period, then closes them.
   * Resolves with `finished`.
   */
  shutdown(): Promise<void>;
  /** Makes the server keep the process alive (the default). */
  ref(): void;
  /** Lets the process exit even while the server runs. */
  unref(): void;
}

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
    const { serveWithWorkers } = await import("./_workers.ts");
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
