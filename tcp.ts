/**
 * TCP echo: {@linkcode serveTcpEcho} (the server), {@linkcode echoTcp} (one message, verified) and
 * {@linkcode echoTcpStream} (a whole stream through the server, verified as it goes).
 *
 * @module
 */
import type { EchoAddress } from "./errors.ts";
import {
  describeNetworkError,
  EchoConnectionError,
  EchoError,
  EchoMismatchError,
  EchoTimeoutError,
  formatAddress,
} from "./errors.ts";
import type { EchoServer, EchoServerOptions } from "./serve.ts";
import { DEFAULT_HOSTNAME, DEFAULT_PORT } from "./serve.ts";
import { serveStreamListener } from "./_stream_server.ts";
import { validatePolicy } from "./_policy.ts";
import { firstDifference, listenError, toBytes } from "./_util.ts";

/**
 * Starts a TCP echo server (RFC 862): every byte is echoed, in order, until the client closes; when
 * the client half-closes, what is still pending is sent back and then the session closes.
 * TCP_NODELAY is set on every session, and writes respect back-pressure, so a client that does not
 * read slows only itself.
 *
 * @example
 * ```ts
 * import { echoTcp, serveTcpEcho } from "./mod.ts";
 * await using server = serveTcpEcho({ port: 0 });
 * const { reply } = await echoTcp("Hello World", { port: server.addr.port });
 * console.log(new TextDecoder().decode(reply)); // "Hello World"
 * ```
 *
 * @param options Where to listen, hooks, signal and counters.
 * @returns The running server.
 * @throws {EchoConnectionError} When the address cannot be bound (in use, not available).
 */
export function serveTcpEcho(options: EchoServerOptions = {}): EchoServer {
  const hostname = options.hostname ?? DEFAULT_HOSTNAME;
  const port = options.port ?? DEFAULT_PORT;
  validatePolicy(options);
  let listener: Deno.Listener;
  try {
    listener = Deno.listen({ hostname, port, transport: "tcp" });
  } catch (error) {
    throw listenError(error, { hostname, port, transport: "tcp" });
  }
  return serveStreamListener(listener, options);
}

/** Options of the echo clients. */
export interface EchoClientOptions {
  /** Server host name or address. Default `127.0.0.1`. */
  hostname?: string;
  /** Server port. Default 5006. */
  port?: number;
  /** How long to wait, in ms (TCP: for the whole exchange; UDP: for each attempt). */
  timeout?: number;
  /** Aborting it cancels the exchange (the promise rejects with the signal's reason). */
  signal?: AbortSignal;
}

/** The outcome of one echoed message. */
export interface EchoResult {
  /** The bytes the server sent back (equal to what was sent). */
  reply: Uint8Array;
  /** Round-trip time in ms, from the first byte sent to the last byte received. */
  rtt: number;
  /** The server's address. */
  address: EchoAddress;
}

/** Default time a TCP exchange may take, in ms. */
export const DEFAULT_TCP_TIMEOUT = 5000;

/**
 * Sends one message over TCP and reads back exactly as many bytes, then compares them.
 *
 * @example
 * ```ts
 * import { echoTcp, serveTcpEcho } from "./mod.ts";
 * await using server = serveTcpEcho({ port: 0 });
 * const { rtt } = await echoTcp(new Uint8Array([1, 2, 3]), { port: server.addr.port });
 * console.log(rtt >= 0); // true
 * ```
 *
 * @param message What to send: text (UTF-8) or bytes.
 * @param options Server address, timeout and signal.
 * @returns The reply and the round-trip time.
 * @throws {EchoConnectionError} When the server cannot be reached or drops the connection.
 * @throws {EchoTimeoutError} When the exchange takes longer than `timeout`.
 * @throws {EchoMismatchError} When the reply differs from the message or is short.
 */
export async function echoTcp(
  message: string | Uint8Array,
  options: EchoClientOptions = {},
): Promise<EchoResult> {
  const data = toBytes(message);
  const timeout = options.timeout ?? DEFAULT_TCP_TIMEOUT;
  const address: EchoAddress = {
    hostname: options.hostname ?? DEFAULT_HOSTNAME,
    port: options.port ?? DEFAULT_PORT,
    transport: "tcp",
  };
  const where = `tcp ${formatAddress(address)}`;
  const timer = AbortSignal.timeout(timeout);
  const signal = options.signal ? AbortSignal.any([timer, options.signal]) : timer;
  const conn = await connectTcp(address, signal, timeout);
  const onAbort = () => conn.close();
  signal.addEventListener("abort", onAbort, { once: true });
  try {
    conn.setNoDelay(true);
    const start = performance.now();
    await writeAll(conn, data);
    const reply = new Uint8Array(data.length);
    let received = 0;
    while (received < reply.length) {
      const n = await conn.read(reply.subarray(received));
      if (n === null) {
        throw new EchoMismatchError(
          `${where} closed the connection after ${received} of ${data.length} bytes`,
          { address, offset: received },
        );
      }
      received += n;
    }
    const rtt = performance.now() - start;
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
    return { reply, rtt, address };
  } catch (error) {
    if (options.signal?.aborted) throw options.signal.reason;
    if (timer.aborted) {
      throw new EchoTimeoutError(`no complete reply from ${where} within ${timeout}ms`, {
        address,
        cause: error,
      });
    }
    if (error instanceof EchoError) throw error;
    throw new EchoConnectionError(`${where}: ${describeNetworkError(error)}`, {
      address,
      cause: error,
    });
  } finally {
    signal.removeEventListener("abort", onAbort);
    try {
      conn.close();
    } catch {
      // closed by the abort
    }
  }
}

/**
 * Connects, turning failures into typed errors.
 *
 * @param address Where to connect.
 * @param signal Cancels the attempt.
 * @param timeout The timeout behind `signal`, for the message.
 * @returns The connection.
 */
async function connectTcp(
  address: EchoAddress,
  signal: AbortSignal,
  timeout: number,
): Promise<Deno.TcpConn> {
  const where = `tcp ${formatAddress(address)}`;
  try {
    return await Deno.connect({ hostname: address.hostname, port: address.port, signal });
  } catch (error) {
    if (error instanceof Deno.errors.NotCapable || error instanceof Deno.errors.PermissionDenied) {
      throw error;
    }
    if (
      signal.aborted &&
      !(signal.reason instanceof DOMException && signal.reason.name === "TimeoutError")
    ) {
      throw signal.reason;
    }
    if (signal.aborted) {
      throw new EchoTimeoutError(`no connection to ${where} within ${timeout}ms`, {
        address,
        cause: error,
      });
    }
    throw new EchoConnectionError(`cannot connect to ${where}: ${describeNetworkError(error)}`, {
      address,
      cause: error,
    });
  }
}

async function writeAll(conn: Deno.Conn, data: Uint8Array): Promise<void> {
  let written = 0;
  while (written < data.length) written += await conn.write(data.subarray(written));
}

/** Options of {@linkcode echoTcpStream}. */
export interface EchoStreamOptions extends EchoClientOptions {
  /** Where the echoed bytes go, raw; they are only verified when absent. */
  output?: WritableStream<Uint8Array>;
  /** Bytes in flight (sent, not yet echoed back) at most; reading input pauses when full. Default 1 MiB. */
  window?: number;
}

/** The outcome of a streamed echo. */
export interface EchoStreamResult {
  /** Bytes sent and received back identical. */
  bytes: number;
  /** How long the whole stream took, in ms. */
  elapsed: number;
  /** The server's address. */
  address: EchoAddress;
}

/** Default in-flight window of {@linkcode echoTcpStream}. */
export const DEFAULT_STREAM_WINDOW = 1024 * 1024;
/** Default time without progress before {@linkcode echoTcpStream} gives up, in ms. */
export const DEFAULT_STREAM_TIMEOUT = 10_000;

/**
 * Streams `input` through a TCP echo server, verifying every echoed byte against a bounded window of
 * in-flight bytes (never a copy of the whole stream), and writes the echoed bytes to `output`. When
 * the input ends, the write side is shut (half-close) and the rest of the echo is awaited.
 *
 * @example
 * ```ts
 * import { echoTcpStream, serveTcpEcho } from "./mod.ts";
 * await using server = serveTcpEcho({ port: 0 });
 * const input = ReadableStream.from([new TextEncoder().encode("many bytes")]);
 * const { bytes } = await echoTcpStream(input, { port: server.addr.port });
 * console.log(bytes); // 10
 * ```
 *
 * @param input The bytes to send.
 * @param options Server address, window, output and timeout (without progress).
 * @returns How many bytes came back identical, and how long it took.
 * @throws {EchoMismatchError} When an echoed byte differs or the stream ends short.
 * @throws {EchoTimeoutError} When nothing comes back for `timeout` while bytes are in flight.
 * @throws {EchoConnectionError} When the server cannot be reached or drops the connection.
 */
export async function echoTcpStream(
  input: ReadableStream<Uint8Array>,
  options: EchoStreamOptions = {},
): Promise<EchoStreamResult> {
  const window = options.window ?? DEFAULT_STREAM_WINDOW;
  if (!(window >= 1)) throw new RangeError(`window must be at least 1 byte, got ${window}`);
  const timeout = options.timeout ?? DEFAULT_STREAM_TIMEOUT;
  const address: EchoAddress = {
    hostname: options.hostname ?? DEFAULT_HOSTNAME,
    port: options.port ?? DEFAULT_PORT,
    transport: "tcp",
  };
  const where = `tcp ${formatAddress(address)}`;
  const failed = new AbortController();
  const signal = options.signal ? AbortSignal.any([failed.signal, options.signal]) : failed.signal;
  const conn = await connectTcp(
    address,
    AbortSignal.any([signal, AbortSignal.timeout(timeout)]),
    timeout,
  );
  conn.setNoDelay(true);
  const onAbort = () => conn.close();
  signal.addEventListener("abort", onAbort, { once: true });

  const pending: Uint8Array[] = [];
  let head = 0; // bytes of pending[0] already verified
  let inFlight = 0;
  let verified = 0;
  let inputDone = false;
  let lastProgress = performance.now();
  let timedOut = false;
  let wake: (() => void) | undefined;
  const start = performance.now();

  const watchdog = setInterval(() => {
    if (inFlight > 0 && performance.now() - lastProgress > timeout) {
      timedOut = true;
      failed.abort();
    }
  }, Math.max(10, Math.min(1000, timeout / 4)));

  const send = async () => {
    const reader = input.getReader();
    try {
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        for (let offset = 0; offset < value.length;) {
          const piece = value.subarray(offset, offset + window);
          offset += piece.length;
          while (inFlight + piece.length > window) {
            await new Promise<void>((resolve) => (wake = resolve));
            if (signal.aborted) return;
          }
          if (inFlight === 0) lastProgress = performance.now();
          pending.push(piece);
          inFlight += piece.length;
          await writeAll(conn, piece);
        }
      }
      inputDone = true;
      await conn.closeWrite();
    } finally {
      reader.releaseLock();
    }
  };

  const receive = async () => {
    const writer = options.output?.getWriter();
    const buffer = new Uint8Array(64 * 1024);
    try {
      for (;;) {
        const n = await conn.read(buffer);
        if (n === null) break;
        for (let i = 0; i < n;) {
          const chunk = pending[0];
          if (chunk === undefined) {
            throw new EchoMismatchError(`${where} sent back more bytes than were sent`, {
              address,
              offset: verified + i,
            });
          }
          const take = Math.min(chunk.length - head, n - i);
          for (let k = 0; k < take; k++) {
            if (chunk[head + k] !== buffer[i + k]) {
              throw new EchoMismatchError(
                `echo from ${where} differs at byte ${verified + i + k}`,
                { address, offset: verified + i + k },
              );
            }
          }
          i += take;
          head += take;
          if (head === chunk.length) {
            pending.shift();
            head = 0;
          }
        }
        verified += n;
        inFlight -= n;
        lastProgress = performance.now();
        wake?.();
        wake = undefined;
        if (writer) await writer.write(buffer.slice(0, n));
      }
      if (!inputDone || inFlight > 0) {
        throw new EchoMismatchError(
          `${where} closed the connection after echoing ${verified} of ${
            verified + inFlight
          } bytes`,
          { address, offset: verified },
        );
      }
    } finally {
      writer?.releaseLock();
    }
  };

  try {
    await Promise.all([
      send().catch((e) => (failed.abort(), Promise.reject(e))),
      receive().catch((e) => (failed.abort(), wake?.(), Promise.reject(e))),
    ]);
    return { bytes: verified, elapsed: performance.now() - start, address };
  } catch (error) {
    if (options.signal?.aborted) throw options.signal.reason;
    if (timedOut) {
      throw new EchoTimeoutError(
        `no echo from ${where} for ${timeout}ms with ${inFlight} bytes in flight`,
        { address, cause: error },
      );
    }
    if (error instanceof EchoError) throw error;
    throw new EchoConnectionError(`${where}: ${describeNetworkError(error)}`, {
      address,
      cause: error,
    });
  } finally {
    clearInterval(watchdog);
    signal.removeEventListener("abort", onAbort);
    try {
      conn.close();
    } catch {
      // already closed
    }
  }
}
