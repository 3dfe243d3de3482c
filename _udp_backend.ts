/**
 * The small interface every UDP backend implements, and the choice between them. Everything above a
 * backend (counters, guards, impairment) is written once in udp.ts and works with either.
 *
 * @module
 */

/** Which UDP implementation serves a socket. */
export type UdpBackendKind = "deno" | "node";

/** A received datagram. */
export interface Datagram {
  /** The payload; may be a view into the buffer given to `receive`, valid until its next use. */
  data: Uint8Array;
  /** The sender. */
  addr: Deno.NetAddr;
}

/** A bound UDP socket, whichever runtime API serves it. */
export interface UdpBackend {
  /** Which implementation this is. */
  readonly kind: UdpBackendKind;
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

/** Where and how to bind a UDP socket. */
export interface BindUdpOptions {
  /** Address to bind. */
  hostname: string;
  /** Port to bind; 0 picks a free one. */
  port: number;
  /** `deno` forces Deno.listenDatagram, `node` forces node:dgram, `auto` picks. */
  backend?: UdpBackendKind | "auto";
}

/** Size a receive buffer must have so that no datagram is ever truncated. */
export const RECEIVE_BUFFER_SIZE = 65_536;

/**
 * Whether `Deno.listenDatagram` is usable (the process runs with unstable net).
 *
 * @returns true when the Deno backend can be used.
 */
export function denoDatagramAvailable(): boolean {
  return typeof (Deno as { listenDatagram?: unknown }).listenDatagram === "function";
}

/**
 * Picks the backend: `auto` means Deno's when unstable net is on, node:dgram otherwise.
 *
 * @param wanted The requested backend.
 * @returns The backend that will serve.
 */
export function chooseUdpBackend(wanted: UdpBackendKind | "auto" = "auto"): UdpBackendKind {
  if (wanted === "deno" && !denoDatagramAvailable()) {
    throw new TypeError(
      'the "deno" UDP backend needs unstable net: add "unstable": ["net"] to deno.json or run with --unstable-net',
    );
  }
  if (wanted === "auto") return denoDatagramAvailable() ? "deno" : "node";
  return wanted;
}

/**
 * Binds a UDP socket with the chosen backend.
 *
 * @param options Address, port and backend.
 * @returns The bound socket.
 */
export async function bindUdp(options: BindUdpOptions): Promise<UdpBackend> {
  const kind = chooseUdpBackend(options.backend);
  if (kind === "deno") {
    const { bindDenoUdp } = await import("./_udp_deno.ts");
    return bindDenoUdp(options.hostname, options.port);
  }
  const { bindNodeUdp } = await import("./_udp_node.ts");
  return await bindNodeUdp(options.hostname, options.port);
}
