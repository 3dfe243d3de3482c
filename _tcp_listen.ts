/**
 * Binding TCP listeners that share one port (`reusePort`, Linux, unstable net): each has its own
 * accept queue, so more connections can wait to be accepted, and Web Workers can accept on the
 * port the main thread serves.
 *
 * Why: Deno.listen has no backlog option and listens with 511; a single accept() may be pending
 * per listener (a second one fails with "Busy"). When 1,000 clients connect at once, the queue
 * overflows while the server is busy serving the first ones, and the rest wait for a SYN
 * retransmission (1 s). Two listeners give 1,022 places (measured: all 1,000 connected after
 * 30-60 ms instead of 1,050 ms).
 *
 * @module
 */

/** Listeners a TCP server binds when the port can be shared. */
export const ACCEPT_QUEUES = 2;

/**
 * Whether TCP listeners can share a port here: Linux (where the kernel spreads connections over
 * the listeners) with unstable net (Deno.listen's `reusePort`).
 *
 * @example
 * ```ts
 * import { canSharePort } from "./_tcp_listen.ts";
 * console.log(canSharePort()); // true on Linux with unstable net
 * ```
 *
 * @returns true when {@linkcode listenTcp} binds several listeners.
 */
export function canSharePort(): boolean {
  return Deno.build.os === "linux" &&
    typeof (Deno as { listenDatagram?: unknown }).listenDatagram === "function";
}

/** How {@linkcode listenTcp} binds. */
export interface ListenTcpOptions {
  /** Listeners to bind (default {@linkcode ACCEPT_QUEUES}); 1 binds one plain listener. */
  queues?: number;
  /**
   * Join a port this process already serves (a worker next to the main thread): bind with
   * `reusePort` at once, without first checking that nobody holds the port.
   */
  join?: boolean;
  /** Bind with `reusePort` even for one listener, so that workers can join the port. */
  shared?: boolean;
}

/**
 * Binds TCP listeners on one address. With port sharing, a plain listener is bound first and
 * closed: it fails with AddrInUse when anyone holds the port, with or without `reusePort`, so
 * this server never silently shares a port with another program (or another copy of itself).
 *
 * @example
 * ```ts
 * import { listenTcp } from "./_tcp_listen.ts";
 * const listeners = listenTcp("127.0.0.1", 0);
 * console.log(listeners.length); // 2 where the port can be shared, else 1
 * for (const listener of listeners) listener.close();
 * ```
 *
 * @param hostname Address to bind.
 * @param port Port to bind; 0 picks a free one (the same for every listener).
 * @param options How many listeners, and whether to join a port already served.
 * @returns The listeners, at least one.
 * @throws {Deno.errors.AddrInUse} When the port is taken.
 */
export function listenTcp(
  hostname: string,
  port: number,
  options: ListenTcpOptions = {},
): Deno.Listener[] {
  const queues = canSharePort() ? options.queues ?? ACCEPT_QUEUES : 1;
  if (queues <= 1 && !options.join && !(options.shared && canSharePort())) {
    return [Deno.listen({ hostname, port, transport: "tcp" })];
  }
  if (!options.join) {
    const probe = Deno.listen({ hostname, port, transport: "tcp" });
    port = (probe.addr as Deno.NetAddr).port;
    probe.close();
  }
  const listeners: Deno.Listener[] = [];
  try {
    for (let i = 0; i < Math.max(1, queues); i++) {
      listeners.push(Deno.listen({ hostname, port, transport: "tcp", reusePort: true }));
    }
  } catch (error) {
    for (const listener of listeners) listener.close();
    throw error;
  }
  return listeners;
}
