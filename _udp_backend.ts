/**
 * The small interface every UDP backend implements (_udp_deno.ts, _udp_node.ts). It imports
 * nothing; the choice between backends is in _udp_bind.ts, above them. Everything above a backend
 * (counters, guards, impairment) is written once in udp.ts and works with either.
 *
 * @module
 */

/** A received datagram. */
export interface Datagram {
  /** The payload; may be a view into the buffer given to `receive`, valid until its next use. */
  data: Uint8Array;
  /** The sender. */
  addr: Deno.NetAddr;
}

/** A bound UDP socket, whichever runtime API serves it. */
export interface UdpBackend {
  /** Which implementation this is (a `UdpBackendKind`). */
  readonly kind: "deno" | "node";
  /** The address actually bound. */
  readonly addr: Deno.NetAddr;
  /**
   * Waits for the next datagram. Never truncates: `buffer` must hold 65,536 bytes. Rejects with
   * `Deno.errors.BadResource` once the socket is closed.
   */
  receive(buffer: Uint8Array): Promise<Datagram>;
  /** Sends one datagram. */
  send(data: Uint8Array, to: Deno.NetAddr): Promise<void>;
  /** Closes the socket; pending receives reject. */
  close(): void;
  /** Lets the socket keep the process alive (the default). */
  ref(): void;
  /** Stops the socket from keeping the process alive. */
  unref(): void;
}

/** Size a receive buffer must have so that no datagram is ever truncated. */
export const RECEIVE_BUFFER_SIZE = 65_536;
