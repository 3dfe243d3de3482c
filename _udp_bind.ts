/**
 * The choice between the UDP backends, above them: {@linkcode bindUdp} binds a socket with
 * Deno.listenDatagram (_udp_deno.ts) when unstable net is on, node:dgram (_udp_node.ts) otherwise.
 *
 * @module
 */
import type { UdpBackend } from "./_udp_backend.ts";
import type { UdpBackendKind } from "./types.ts";

/** Where and how to bind a UDP socket. */
export interface BindUdpOptions {
  /** Address to bind. */
  hostname: string;
  /** Port to bind; 0 picks a free one. */
  port: number;
  /** `deno` forces Deno.listenDatagram, `node` forces node:dgram, `auto` picks. */
  backend?: UdpBackendKind | "auto";
}

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
