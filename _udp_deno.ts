/**
 * UDP backend on `Deno.listenDatagram` (unstable net in Deno 2).
 *
 * @module
 */
import type { Datagram, UdpBackend } from "./_udp_backend.ts";
import { RECEIVE_BUFFER_SIZE } from "./_udp_backend.ts";

type ListenDatagram = (
  options: { hostname: string; port: number; transport: "udp" },
) => Deno.DatagramConn;

class DenoUdp implements UdpBackend {
  readonly kind = "deno" as const;
  readonly addr: Deno.NetAddr;
  #conn: Deno.DatagramConn;

  constructor(conn: Deno.DatagramConn) {
    this.#conn = conn;
    this.addr = conn.addr as Deno.NetAddr;
  }

  async receive(buffer: Uint8Array): Promise<Datagram> {
    if (buffer.length < RECEIVE_BUFFER_SIZE) {
      throw new RangeError(`UDP receive buffer must hold ${RECEIVE_BUFFER_SIZE} bytes`);
    }
    const [data, addr] = await this.#conn.receive(buffer);
    return { data, addr: addr as Deno.NetAddr };
  }

  async send(data: Uint8Array, to: Deno.NetAddr): Promise<void> {
    await this.#conn.send(data, to);
  }

  close(): void {
    try {
      this.#conn.close();
    } catch {
      // already closed
    }
  }

  // ref/unref exist at run time but are missing from Deno 2.9's type declarations.
  ref(): void {
    (this.#conn as unknown as Deno.Listener).ref();
  }

  unref(): void {
    (this.#conn as unknown as Deno.Listener).unref();
  }
}

/**
 * Binds a UDP socket with Deno.listenDatagram.
 *
 * @param hostname Address to bind.
 * @param port Port to bind (0 = any free port).
 * @returns The backend.
 */
export function bindDenoUdp(hostname: string, port: number): UdpBackend {
  const listen = (Deno as unknown as { listenDatagram: ListenDatagram }).listenDatagram;
  return new DenoUdp(listen({ hostname, port, transport: "udp" }));
}
