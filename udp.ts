/**
 * UDP echo: {@linkcode serveUdpEcho} (the server) and {@linkcode echoUdp} (one datagram, with
 * timeout and retries). The pipeline above the backend is written once and serves both backends:
 * Deno.listenDatagram (unstable net) and the node:dgram fallback.
 *
 * @module
 */
import type { EchoAddress } from "./errors.ts";
import {
  describeNetworkError,
  EchoConnectionError,
  EchoMismatchError,
  EchoTimeoutError,
  formatAddress,
} from "./errors.ts";
import { callHook, reportError } from "./_hooks.ts";
import { DatagramPolicy, policyOf } from "./_policy.ts";
import { isImpairing, UdpImpairment } from "./impair.ts";
import type { CidrList } from "./cidr.ts";
import type { EchoServer, ListenInfo, UdpEchoOptions } from "./types.ts";
import { DEFAULT_HOSTNAME, DEFAULT_PORT } from "./types.ts";
import type { EchoStats, TransportCounters } from "./stats.ts";
import { createStats, transportCounters } from "./stats.ts";
import type { EchoClientOptions, EchoResult } from "./tcp.ts";
import { firstDifference, listenError, toBytes } from "./_util.ts";
import type { UdpBackend } from "./_udp_backend.ts";
import { RECEIVE_BUFFER_SIZE } from "./_udp_backend.ts";
import { bindUdp } from "./_udp_bind.ts";
import type { UdpBackendKind } from "./types.ts";

/** The largest UDP payload over IPv4 (65,535 − 20 IP − 8 UDP header bytes). */
export const MAX_UDP_PAYLOAD = 65_507;

/**
 * Starts a UDP echo server (RFC 862): each datagram goes back to its sender as-is, from 0 up to
 * 65,507 bytes, never truncated. Uses Deno.listenDatagram when unstable net is on and node:dgram
 * otherwise (or as `backend` says); `listeners[0].backend` tells which.
 *
 * @example
 * ```ts
 * import { echoUdp, serveUdpEcho } from "./mod.ts";
 * await using server = await serveUdpEcho({ port: 0 });
 * const { reply } = await echoUdp("Hello World", { port: server.addr.port });
 * console.log(reply.length); // 11
 * ```
 *
 * @param options Where to listen, backend, hooks, signal and counters.
 * @returns The running server.
 * @throws {EchoConnectionError} When the address cannot be bound.
 */
export async function serveUdpEcho(options: UdpEchoOptions = {}): Promise<EchoServer> {
  const { acl, hostname } = policyOf(options);
  const port = options.port ?? DEFAULT_PORT;
  let backend: UdpBackend;
  try {
    backend = await bindUdp({ hostname, port, backend: options.backend });
  } catch (error) {
    if (error instanceof TypeError) throw error;
    throw listenError(error, { hostname, port, transport: "udp" });
  }
  return new UdpServer(backend, options, acl);
}

class UdpServer implements EchoServer {
  readonly addr: Deno.NetAddr;
  readonly listeners: readonly ListenInfo[];
  readonly stats: EchoStats;
  readonly finished: Promise<void>;
  #backend: UdpBackend;
  #options: UdpEchoOptions;
  #policy: DatagramPolicy;
  #impairment?: UdpImpairment<Deno.NetAddr>;
  #sending: Promise<void>[] = [];
  /** The `udp` share of the counters. */
  #counters: TransportCounters;
  /** Set while `once` waits for the stage to send what it holds; called when nothing is held. */
  #drained?: () => void;
  #closed = false;

  constructor(backend: UdpBackend, options: UdpEchoOptions, acl: CidrList | undefined) {
    this.#backend = backend;
    this.#options = options;
    this.stats = options.stats ?? createStats();
    this.#counters = transportCounters(this.stats, "udp");
    this.addr = backend.addr;
    this.#policy = new DatagramPolicy(options, backend.addr, acl);
    if (options.impair && isImpairing(options.impair)) {
      this.#impairment = new UdpImpairment<Deno.NetAddr>(
        (data, to) => {
          this.#sending.push(this.#send(data, to));
          if (this.#drained && this.#impairment!.held === 0) this.#drained();
        },
        options.impair,
      );
      this.stats.impairment = this.#impairment;
    }
    this.listeners = [{
      transport: "udp",
      hostname: backend.addr.hostname,
      port: backend.addr.port,
      backend: backend.kind,
      ...(this.#impairment ? { impairment: this.#impairment.describe() } : {}),
    }];
    callHook(options, options.onListen, this.listeners[0]);
    this.finished = this.#loop();
    const signal = options.signal;
    if (signal?.aborted) void this.shutdown();
    else signal?.addEventListener("abort", () => void this.shutdown(), { once: true });
  }

  async #loop(): Promise<void> {
    const backend = this.#backend;
    const options = this.#options;
    const stats = this.stats;
    const policy = this.#policy.active ? this.#policy : undefined;
    const impairment = this.#impairment;
    const buffer = new Uint8Array(RECEIVE_BUFFER_SIZE);
    const counters = this.#counters;
    while (!this.#closed) {
      let datagram;
      try {
        datagram = await backend.receive(buffer);
      } catch (error) {
        if (this.#closed || error instanceof Deno.errors.BadResource) break;
        // An ICMP error for an earlier reply may surface here; it concerns one peer only.
        stats.errors++;
        this.#counters.errors++;
        reportError(options, "receive failed", error, this.#where());
        continue;
      }
      const { data, addr } = datagram;
      stats.datagramsIn++;
      stats.bytesIn += data.length;
      counters.datagramsIn++;
      counters.bytesIn += data.length;
      const refused = policy?.check(addr.hostname, addr.port, data);
      if (refused) {
        stats.dropped[refused]++;
        if (options.onReject) {
          callHook(options, options.onReject, {
            transport: "udp",
            remoteAddr: addr,
            reason: refused,
            detail: refused === "guard" ? policy!.detail : undefined,
          });
        }
        continue;
      }
      if (options.onDatagram) callHook(options, options.onDatagram, { remoteAddr: addr, data });
      if (impairment) {
        // The stage copies what it holds back; what it sends now goes out before the buffer is
        // reused, because the sends it starts are awaited here.
        impairment.submit(data, addr, `${addr.hostname}:${addr.port}`);
        await Promise.all(this.#sending.splice(0));
      } else {
        await this.#send(data, addr);
      }
      if (options.once) {
        // The one reply may still be held or delayed by the stage: let it go out first.
        if (impairment && impairment.held > 0) {
          const { promise, resolve } = Promise.withResolvers<void>();
          this.#drained = resolve;
          await promise;
          this.#drained = undefined;
          await Promise.all(this.#sending.splice(0));
        }
        this.#close();
      }
    }
    this.#close();
    // Deferred sends started by the stage's timers settle before `finished` does.
    await Promise.all(this.#sending.splice(0));
  }

  /** Sends one reply, counting it; a failed send concerns that peer only. */
  async #send(data: Uint8Array, to: Deno.NetAddr): Promise<void> {
    try {
      await this.#backend.send(data, to);
      this.stats.datagramsOut++;
      this.stats.bytesOut += data.length;
      this.#counters.datagramsOut++;
      this.#counters.bytesOut += data.length;
    } catch (error) {
      if (this.#closed) return;
      this.stats.errors++;
      this.#counters.errors++;
      reportError(this.#options, "send failed", error, { ...to, transport: "udp" });
    }
  }

  #where(): EchoAddress {
    return { hostname: this.addr.hostname, port: this.addr.port, transport: "udp" };
  }

  #close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#impairment?.close();
    this.#drained?.();
    this.#backend.close();
  }

  shutdown(): Promise<void> {
    this.#close();
    return this.finished;
  }

  ref(): void {
    this.#backend.ref();
    this.#impairment?.ref();
  }

  unref(): void {
    this.#backend.unref();
    // Held or delayed replies must not keep the process alive either.
    this.#impairment?.unref();
  }

  [Symbol.asyncDispose](): Promise<void> {
    return this.shutdown();
  }
}

/** Options of {@linkcode echoUdp}. */
export interface UdpClientOptions extends EchoClientOptions {
  /** Extra attempts after the first one times out. Default 2. */
  retries?: number;
  /** Force a UDP backend for the client socket. */
  backend?: UdpBackendKind | "auto";
}

/** The outcome of one echoed datagram. */
export interface UdpEchoResult extends EchoResult {
  /** Which attempt was answered (1 = the first). */
  attempts: number;
}

/**
 * node:net, loaded on first use: only clients resolve names, and loading it costs a server about
 * 3 MiB of memory (measured: idle server.ts 43.4 → 40.2 MiB RSS).
 */
let nodeNet: Promise<typeof import("node:net")> | undefined;

/** Default wait for each UDP attempt, in ms. */
export const DEFAULT_UDP_TIMEOUT = 1000;
/** Default number of UDP retries. */
export const DEFAULT_UDP_RETRIES = 2;

/**
 * Resolves a host name to one IP address (IP literals are returned as they are, IPv6 in canonical
 * form), using the system resolver so /etc/hosts applies; a name with both IPv4 and IPv6 addresses
 * resolves to IPv4.
 *
 * @example
 * ```ts
 * import { resolveHost } from "./mod.ts";
 * console.log(await resolveHost("0:0:0:0:0:0:0:1")); // "::1"
 * ```
 *
 * @param hostname A name or address.
 * @returns An IP address.
 */
export async function resolveHost(hostname: string): Promise<string> {
  const bare = hostname.replace(/^\[(.*)\]$/, "$1");
  const { isIP } = await (nodeNet ??= import("node:net"));
  const family = isIP(bare);
  if (family === 6) return new URL(`http://[${bare}]/`).hostname.slice(1, -1);
  if (family === 4) return bare;
  // Prefer IPv4 when a name has both (localhost is often ::1 first): our servers bind 127.0.0.1 by
  // default, and a UDP client cannot fall back the way a TCP connect does.
  const { lookup } = await import("node:dns/promises");
  const addresses = await lookup(bare, { all: true });
  return (addresses.find((a) => a.family === 4) ?? addresses[0]).address;
}

function isLoopbackIp(ip: string): boolean {
  return ip === "::1" || /^127\./.test(ip);
}

/**
 * Sends one datagram and waits for the answering datagram from that address only (others are
 * ignored), sending again up to `retries` times when an attempt times out. The client socket is bound
 * in the target's address family, on loopback when the target is loopback.
 *
 * @example
 * ```ts
 * import { echoUdp, serveUdpEcho } from "./mod.ts";
 * await using server = await serveUdpEcho({ port: 0 });
 * const { attempts } = await echoUdp("ping", { port: server.addr.port, timeout: 500, retries: 3 });
 * console.log(attempts); // 1
 * ```
 *
 * @param message What to send: text (UTF-8) or bytes, at most 65,507 bytes.
 * @param options Server address, timeout per attempt, retries, signal and backend.
 * @returns The reply, the round-trip time of the answered attempt, and the attempt number.
 * @throws {EchoTimeoutError} When no attempt is answered.
 * @throws {EchoMismatchError} When the reply differs from the message.
 * @throws {EchoConnectionError} When the socket cannot be bound or the datagram not sent.
 */
export async function echoUdp(
  message: string | Uint8Array,
  options: UdpClientOptions = {},
): Promise<UdpEchoResult> {
  const data = toBytes(message);
  if (data.length > MAX_UDP_PAYLOAD) {
    throw new RangeError(
      `a UDP message holds at most ${MAX_UDP_PAYLOAD} bytes, got ${data.length}`,
    );
  }
  const timeout = options.timeout ?? DEFAULT_UDP_TIMEOUT;
  const retries = options.retries ?? DEFAULT_UDP_RETRIES;
  const hostname = options.hostname ?? DEFAULT_HOSTNAME;
  const port = options.port ?? DEFAULT_PORT;
  const address: EchoAddress = { hostname, port, transport: "udp" };
  const where = `udp ${formatAddress(address)}`;
  let ip: string;
  try {
    ip = await resolveHost(hostname);
  } catch (error) {
    throw new EchoConnectionError(`cannot resolve ${hostname}: ${describeNetworkError(error)}`, {
      address,
      cause: error,
    });
  }
  const v6 = ip.includes(":");
  const bindHost = isLoopbackIp(ip) ? (v6 ? "::1" : "127.0.0.1") : (v6 ? "::" : "0.0.0.0");
  let socket: UdpBackend;
  try {
    socket = await bindUdp({ hostname: bindHost, port: 0, backend: options.backend });
  } catch (error) {
    if (error instanceof TypeError) throw error;
    throw new EchoConnectionError(`cannot open a UDP socket: ${describeNetworkError(error)}`, {
      address,
      cause: error,
    });
  }
  const target: Deno.NetAddr = { transport: "udp", hostname: ip, port };
  const buffer = new Uint8Array(RECEIVE_BUFFER_SIZE);
  let pending: ReturnType<UdpBackend["receive"]> | undefined;
  const aborted = options.signal
    ? new Promise<never>((_, reject) => {
      const signal = options.signal!;
      if (signal.aborted) reject(signal.reason);
      signal.addEventListener("abort", () => reject(signal.reason), { once: true });
    })
    : undefined;
  aborted?.catch(() => {});
  try {
    for (let attempt = 1; attempt <= retries + 1; attempt++) {
      const start = performance.now();
      try {
        await socket.send(data, target);
      } catch (error) {
        throw new EchoConnectionError(`cannot send to ${where}: ${describeNetworkError(error)}`, {
          address,
          cause: error,
        });
      }
      const deadline = start + timeout;
      for (;;) {
        const left = deadline - performance.now();
        if (left <= 0) break;
        pending ??= socket.receive(buffer);
        let timer: ReturnType<typeof setTimeout> | undefined;
        const expired = new Promise<undefined>((
          resolve,
        ) => (timer = setTimeout(() => resolve(undefined), left)));
        const got = await Promise.race(aborted ? [pending, expired, aborted] : [pending, expired])
          .finally(() => clearTimeout(timer));
        if (got === undefined) break;
        pending = undefined;
        if (got.addr.port !== port || (await resolveHost(got.addr.hostname)) !== ip) continue;
        const rtt = performance.now() - start;
        const reply = got.data.slice();
        const offset = firstDifference(data, reply);
        if (offset >= 0) {
          throw new EchoMismatchError(
            `reply from ${where} differs from the message at byte ${offset}`,
            {
              address,
              offset,
            },
          );
        }
        return { reply, rtt, address, attempts: attempt };
      }
    }
    throw new EchoTimeoutError(
      `no reply from ${where} after ${retries + 1} attempt${retries ? "s" : ""} of ${timeout}ms`,
      { address },
    );
  } finally {
    socket.close();
    pending?.catch(() => {});
  }
}
