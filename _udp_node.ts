/**
 * UDP backend on `node:dgram`: stable in Deno, needs only --allow-net. Used when unstable net is off
 * (for example when run straight from JSR).
 *
 * @module
 */
import dgram from "node:dgram";
import type { Buffer } from "node:buffer";
import type { Datagram, UdpBackend } from "./_udp_backend.ts";

/** Datagrams queued while nobody is receiving; beyond this they are dropped, as a kernel would. */
const QUEUE_LIMIT = 4096;

class NodeUdp implements UdpBackend {
  readonly kind = "node" as const;
  readonly addr: Deno.NetAddr;
  #socket: dgram.Socket;
  #queue: Datagram[] = [];
  #waiters: { resolve: (d: Datagram) => void; reject: (e: unknown) => void }[] = [];
  #closed = false;

  constructor(socket: dgram.Socket) {
    this.#socket = socket;
    const a = socket.address();
    this.addr = { transport: "udp", hostname: a.address, port: a.port };
    socket.on("message", (msg: Buffer, rinfo: dgram.RemoteInfo) => {
      const datagram: Datagram = {
        data: new Uint8Array(msg.buffer, msg.byteOffset, msg.byteLength),
        addr: { transport: "udp", hostname: rinfo.address, port: rinfo.port },
      };
      const waiter = this.#waiters.shift();
      if (waiter) waiter.resolve(datagram);
      else if (this.#queue.length < QUEUE_LIMIT) this.#queue.push(datagram);
    });
    // Errors surface through send callbacks; an unhandled 'error' event would kill the process.
    socket.on("error", () => {});
  }

  receive(_buffer: Uint8Array): Promise<Datagram> {
    const queued = this.#queue.shift();
    if (queued) return Promise.resolve(queued);
    if (this.#closed) return Promise.reject(new Deno.errors.BadResource("UDP socket is closed"));
    return new Promise((resolve, reject) => this.#waiters.push({ resolve, reject }));
  }

  send(data: Uint8Array, to: Deno.NetAddr): Promise<void> {
    return new Promise((resolve, reject) => {
      this.#socket.send(data, to.port, to.hostname, (error) => error ? reject(error) : resolve());
    });
  }

  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#socket.close();
    const error = new Deno.errors.BadResource("UDP socket is closed");
    for (const waiter of this.#waiters.splice(0)) waiter.reject(error);
  }

  ref(): void {
    this.#socket.ref();
  }

  unref(): void {
    this.#socket.unref();
  }
}

/** node:dgram bind failures by errno code, as the Deno errors the Deno backend throws. */
const DENO_ERRORS: Record<string, new (message: string, options?: ErrorOptions) => Error> = {
  EADDRINUSE: Deno.errors.AddrInUse,
  EADDRNOTAVAIL: Deno.errors.AddrNotAvailable,
};

/**
 * Turns a node:dgram bind error into the Deno error class the Deno backend would throw, so callers
 * (messages, serveEcho's port retry) treat both backends alike.
 *
 * @param error What node:dgram reported.
 * @returns The equivalent Deno error, or the error itself.
 */
function asDenoError(error: Error & { code?: string }): Error {
  const DenoError = error.code === undefined ? undefined : DENO_ERRORS[error.code];
  return DenoError ? new DenoError(error.message, { cause: error }) : error;
}

/**
 * Binds a UDP socket with node:dgram; `::` binds dual-stack, like Deno's backend.
 *
 * @param hostname Address to bind.
 * @param port Port to bind (0 = any free port).
 * @returns The backend, once bound.
 */
export function bindNodeUdp(hostname: string, port: number): Promise<UdpBackend> {
  const type = hostname.includes(":") ? "udp6" : "udp4";
  const socket = dgram.createSocket({ type, reuseAddr: false });
  return new Promise((resolve, reject) => {
    const onError = (error: Error) => {
      socket.close();
      reject(asDenoError(error));
    };
    socket.once("error", onError);
    socket.bind(port, hostname.replace(/^\[(.*)\]$/, "$1"), () => {
      socket.off("error", onError);
      resolve(new NodeUdp(socket));
    });
  });
}
