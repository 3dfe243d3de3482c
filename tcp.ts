/**
 * TCP echo: {@linkcode serveTcpEcho} (the server), {@linkcode echoTcp} (one message, verified) and
 * {@linkcode echoTcpStream} (a whole stream through the server, verified as it goes). The server
 * speaks TLS when given a certificate (`tls`); the clients speak TLS (`tls`) or connect to a Unix
 * domain socket (`unix`) instead of TCP.
 *
 * @module
 */
import type { EchoAddress } from "./errors.ts";
import {
  describeNetworkError,
  EchoConnectionError,
  EchoError,
  EchoMismatchError,
  EchoOutputError,
  EchoTimeoutError,
  formatAddress,
} from "./errors.ts";
import type { EchoServer, TcpEchoOptions } from "./types.ts";
export type { TcpEchoOptions, TlsServerOptions } from "./types.ts";
import { DEFAULT_HOSTNAME, DEFAULT_PORT } from "./types.ts";
import { serveStreamListener } from "./_stream_server.ts";
import { listenTcp } from "./_tcp_listen.ts";
import { startTlsClient } from "./_tls_client.ts";
import { policyOf } from "./_policy.ts";
import { checkDuration, checkTlsPem } from "./_validate.ts";
import {
  firstDifference,
  isTlsMaterialError,
  listenError,
  tlsMaterialError,
  toBytes,
} from "./_util.ts";
import { connectAnyAddress } from "./_tcp_connect.ts";
import { proxyHeaderFor } from "./proxy_header.ts";
import { DEFAULT_HANDSHAKE_TIMEOUT, TlsRelayListener } from "./_tls_relay.ts";

/**
 * Starts a TCP echo server (RFC 862): every byte is echoed, in order, until the client closes; when
 * the client half-closes, what is still pending is sent back and then the session closes.
 * TCP_NODELAY is set on every session, and writes respect back-pressure, so a client that does not
 * read slows only itself. With `tls`, the same service runs over TLS; the handshake happens in
 * each session, so a client that never completes it holds up nobody else.
 *
 * @example
 * ```ts
 * import { echoTcp, serveTcpEcho } from "./mod.ts";
 * await using server = serveTcpEcho({ port: 0 });
 * const { reply } = await echoTcp("Hello World", { port: server.addr.port });
 * console.log(new TextDecoder().decode(reply)); // "Hello World"
 * ```
 *
 * @example Over TLS, trusting a self-signed certificate
 * ```ts
 * import { echoTcp, serveTcpEcho } from "./mod.ts";
 * const cert = await Deno.readTextFile("./tests/fixtures/tls_cert.pem");
 * const key = await Deno.readTextFile("./tests/fixtures/tls_key.pem");
 * await using server = serveTcpEcho({ port: 0, tls: { cert, key } });
 * const { reply } = await echoTcp("secret", { port: server.addr.port, tls: { caCerts: [cert] } });
 * console.log(server.listeners[0].secure, new TextDecoder().decode(reply)); // true "secret"
 * ```
 *
 * @param options Where to listen, TLS, hooks, signal and counters.
 * @returns The running server.
 * @throws {EchoConnectionError} When the address cannot be bound (in use, not available).
 * @throws {TypeError} When `tls` holds no usable certificate or key, or they do not match.
 */
export function serveTcpEcho(options: TcpEchoOptions = {}): EchoServer {
  const policy = policyOf(options);
  const hostname = policy.hostname;
  const port = options.port ?? DEFAULT_PORT;
  const tls = options.tls;
  checkTlsPem(tls);
  checkDuration("tls.handshakeTimeout", tls?.handshakeTimeout);
  let listener: Deno.Listener | Deno.Listener[];
  try {
    // Plain TCP binds two listeners sharing the port where it can: two accept queues (_tcp_listen.ts).
    // A `once` server needs no queue for a crowd, and must refuse the second client at once.
    listener = tls
      ? Deno.listen({ hostname, port, transport: "tcp" })
      : listenTcp(hostname, port, { queues: options.once ? 1 : undefined });
  } catch (error) {
    throw listenError(error, { hostname, port, transport: "tcp" });
  }
  if (!tls) return serveStreamListener(listener, options, policy.stream);
  // TLS is served through a relay to an inner TLS listener (see _tls_relay.ts for why).
  let inner: Deno.TlsListener;
  try {
    inner = Deno.listenTls({
      hostname: "127.0.0.1",
      port: 0,
      transport: "tcp",
      cert: tls.cert,
      key: tls.key,
    });
  } catch (error) {
    (listener as Deno.Listener).close();
    if (isTlsMaterialError(error)) throw tlsMaterialError(error);
    throw listenError(error, { hostname: "127.0.0.1", port: 0, transport: "tcp" });
  }
  // Behind a balancer the PROXY header comes in clear text before the handshake: the relay holds
  // each connection until the stream server has read it (_stream_server.ts, #proxyHeader).
  const relay = new TlsRelayListener(listener as Deno.TcpListener, inner, {
    handshakeTimeout: tls.handshakeTimeout ?? DEFAULT_HANDSHAKE_TIMEOUT,
    hold: policy.stream.proxy !== undefined,
  });
  return serveStreamListener(relay as unknown as Deno.Listener, options, policy.stream, {
    secure: true,
  });
}

/** Options of every echo client. */
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

/** How a TLS client checks the server. */
export interface TlsClientOptions {
  /**
   * Certificates to trust (PEM), besides the built-in roots: the server's CA, or a self-signed
   * server certificate (which must be `CA:FALSE` with the address in its subjectAltName).
   */
  caCerts?: string[];
  /**
   * The name the certificate must hold (also sent as SNI), when the address dialled is not in it:
   * e.g. `localhost` when connecting to `127.0.0.1`. Default: `hostname`.
   */
  servername?: string;
}

/** Options of {@linkcode echoTcp}: where to connect, and how (TCP, TLS, or a Unix socket). */
export interface TcpClientOptions extends EchoClientOptions {
  /** Speak TLS, verifying the server's certificate. Default: plain TCP. */
  tls?: TlsClientOptions;
  /**
   * Connect to the Unix domain socket at this path instead of `hostname` and `port` (which must
   * then be left out); needs `--allow-read`, `--allow-write` and `--allow-net` (`unix:PATH`) for
   * the path. Not with `tls`.
   */
  unix?: string;
  /**
   * Start the connection with a PROXY protocol header of this version (1: text, 2: binary), as a
   * balancer would, naming this connection's own ends (a Unix socket sends `LOCAL`): for testing
   * PROXY-aware servers. It is sent before TLS and never expected back. Default: none.
   */
  proxyHeader?: 1 | 2;
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
 * @example Over a Unix domain socket
 * ```ts
 * import { echoTcp } from "./mod.ts";
 * import { serveUnixEcho } from "./unix.ts";
 * const path = `${await Deno.makeTempDir()}/echo.sock`;
 * await using _server = await serveUnixEcho({ path });
 * const { reply } = await echoTcp("local", { unix: path });
 * console.log(new TextDecoder().decode(reply)); // "local"
 * ```
 *
 * @param message What to send: text (UTF-8) or bytes.
 * @param options Server address (or `unix` path), `tls`, timeout and signal.
 * @returns The reply and the round-trip time.
 * @throws {EchoConnectionError} When the server cannot be reached or drops the connection, or
 * its TLS certificate is not trusted or not valid for the name.
 * @throws {TypeError} When `unix` is combined with `hostname`, `port` or `tls`.
 * @throws {EchoTimeoutError} When the exchange takes longer than `timeout`.
 * @throws {EchoMismatchError} When the reply differs from the message or is short.
 */
export async function echoTcp(
  message: string | Uint8Array,
  options: TcpClientOptions = {},
): Promise<EchoResult> {
  const data = toBytes(message);
  const timeout = options.timeout ?? DEFAULT_TCP_TIMEOUT;
  const address = clientAddress(options);
  const where = describeTarget(address, options);
  const timer = AbortSignal.timeout(timeout);
  const signal = options.signal ? AbortSignal.any([timer, options.signal]) : timer;
  const conn = await connectStream(address, options, signal, timeout);
  const onAbort = () => conn.close();
  signal.addEventListener("abort", onAbort, { once: true });
  try {
    const start = performance.now();
    const reply = new Uint8Array(data.length);
    // Read while writing: a message larger than the socket buffers of both ends would otherwise
    // deadlock (the server stops reading once it cannot write the echo back to us).
    const reading = (async () => {
      let received = 0;
      while (received < reply.length) {
        const n = await conn.read(reply.subarray(received));
        if (n === null) throw shortReply(where, address, data, reply.subarray(0, received));
        received += n;
      }
    })();
    await Promise.all([writeAll(conn, data), reading]);
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
    // End TLS with close_notify, so the server sees a clean end of stream (not a truncation, which
    // it counts as an error) even when this process exits right after.
    if (options.tls) await conn.closeWrite().catch(() => {});
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
    return await connectAnyAddress(address.hostname, address.port, { signal });
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

/**
 * Where a client connects, from its options.
 *
 * @param options The client options.
 * @returns The address (for Unix sockets: transport `unix` and the path).
 */
function clientAddress(options: TcpClientOptions): EchoAddress {
  if (options.unix === undefined) {
    return {
      hostname: options.hostname ?? DEFAULT_HOSTNAME,
      port: options.port ?? DEFAULT_PORT,
      transport: "tcp",
    };
  }
  if (typeof options.unix !== "string" || options.unix === "") {
    throw new TypeError(`unix must be a socket path, got ${JSON.stringify(options.unix)}`);
  }
  if (options.hostname !== undefined || options.port !== undefined) {
    throw new TypeError("unix connects to a socket path: leave out hostname and port");
  }
  if (options.tls !== undefined) throw new TypeError("tls is not supported over unix sockets");
  return { hostname: "", port: 0, transport: "unix", path: options.unix };
}

/**
 * Names a connection target in messages: `tcp 127.0.0.1:5006`, `tls [::1]:5006`,
 * `unix /tmp/echo.sock`.
 *
 * @param address The address.
 * @param options The client options (for `tls`).
 * @returns The text.
 */
function describeTarget(address: EchoAddress, options: TcpClientOptions): string {
  const transport = address.transport === "unix" ? "unix" : options.tls ? "tls" : "tcp";
  return `${transport} ${formatAddress(address)}`;
}

/**
 * The error for a reply that ended before the whole message came back. What did arrive is compared
 * first: bytes that differ are not "a short echo" (a TLS alert from a TLS port, a banner, an HTTP
 * error), and the message says where they differ, with a hint when they look like a TLS record.
 *
 * @param where The target, for the message.
 * @param address The target's address.
 * @param sent The message.
 * @param got What arrived before the end of stream.
 * @returns The error to throw.
 */
function shortReply(
  where: string,
  address: EchoAddress,
  sent: Uint8Array,
  got: Uint8Array,
): EchoMismatchError {
  const offset = firstDifference(sent.subarray(0, got.length), got);
  if (offset < 0 || offset >= got.length) {
    return new EchoMismatchError(
      `${where} closed the connection after ${got.length} of ${sent.length} bytes`,
      { address, offset: got.length },
    );
  }
  return new EchoMismatchError(
    `reply from ${where} differs from the message at byte ${offset} (${got.length} of ` +
      `${sent.length} bytes came back before it closed)${tlsHint(got)}`,
    { address, offset },
  );
}

/**
 * A hint for a reply that starts like a TLS record (content type 20-23, version 3.x): a plain
 * client talking to a TLS port gets an alert back.
 *
 * @param got The reply's first bytes.
 * @returns `; is this a TLS port? try --tls` or nothing.
 */
function tlsHint(got: Uint8Array): string {
  const looksTls = got.length >= 3 && got[0] >= 20 && got[0] <= 23 && got[1] === 3 && got[2] <= 4;
  return looksTls ? "; it looks like a TLS record: is this a TLS port? try --tls" : "";
}

/**
 * Connects over TCP, TLS (handshake completed, so certificate problems surface here) or a Unix
 * socket, turning failures into typed errors. TCP_NODELAY is set on TCP and TLS connections.
 *
 * @param address Where to connect.
 * @param options The client options (`tls`).
 * @param signal Cancels the attempt.
 * @param timeout The timeout behind `signal`, for the message.
 * @returns The connection.
 */
async function connectStream(
  address: EchoAddress,
  options: TcpClientOptions,
  signal: AbortSignal,
  timeout: number,
): Promise<Deno.Conn> {
  if (address.transport === "unix") {
    const unix = await connectUnix(address);
    if (options.proxyHeader) await sendProxyHeader(unix, options.proxyHeader, address);
    return unix;
  }
  const tcp = await connectTcp(address, signal, timeout);
  tcp.setNoDelay(true);
  if (options.proxyHeader) await sendProxyHeader(tcp, options.proxyHeader, address);
  if (!options.tls) return tcp;
  const where = describeTarget(address, options);
  try {
    return await startTlsClient(tcp, {
      hostname: options.tls.servername ?? address.hostname,
      caCerts: options.tls.caCerts,
    }, signal);
  } catch (error) {
    if (signal.aborted) {
      const reason = signal.reason;
      if (!(reason instanceof DOMException && reason.name === "TimeoutError")) throw reason;
      throw new EchoTimeoutError(`no TLS handshake with ${where} within ${timeout}ms`, {
        address,
        cause: error,
      });
    }
    throw new EchoConnectionError(`${where}: ${describeTlsError(error)}`, {
      address,
      cause: error,
    });
  }
}

/** Writes a PROXY header naming the connection's own ends (`LOCAL` on a Unix socket). */
async function sendProxyHeader(
  conn: Deno.Conn,
  version: 1 | 2,
  address: EchoAddress,
): Promise<void> {
  let header: Uint8Array;
  try {
    header = proxyHeaderFor(conn, version);
  } catch (error) {
    conn.close();
    throw error;
  }
  try {
    await writeAll(conn, header);
  } catch (error) {
    conn.close();
    throw new EchoConnectionError(
      `${describeTarget(address, {})}: sending the PROXY header failed: ${
        describeNetworkError(error)
      }`,
      { address, cause: error },
    );
  }
}

/**
 * Connects to a Unix domain socket, explaining the usual failures.
 *
 * @param address The socket's address (`path` set).
 * @returns The connection.
 */
async function connectUnix(address: EchoAddress): Promise<Deno.UnixConn> {
  const path = address.path!;
  try {
    return await Deno.connect({ transport: "unix", path });
  } catch (error) {
    if (error instanceof Deno.errors.NotCapable || error instanceof Deno.errors.PermissionDenied) {
      throw error;
    }
    const reason = error instanceof Deno.errors.NotFound
      ? "no such socket (is the server running?)"
      : error instanceof Deno.errors.ConnectionRefused
      ? "connection refused (no server listens there, or it is not a socket)"
      : describeNetworkError(error);
    throw new EchoConnectionError(`cannot connect to unix ${path}: ${reason}`, {
      address,
      cause: error,
    });
  }
}

/**
 * Explains a failed TLS handshake in one line, saying what to do about it.
 *
 * @param error What the handshake threw.
 * @returns A short phrase.
 */
function describeTlsError(error: unknown): string {
  const message = error instanceof Error ? error.message.split("\n")[0] : String(error);
  const detail = message.replace(/^invalid peer certificate: /, "");
  if (/UnknownIssuer/.test(message)) {
    return "certificate not trusted (UnknownIssuer): trust its issuer or the certificate itself " +
      "with tls.caCerts (client.ts --ca FILE)";
  }
  if (/not valid for name/i.test(message)) {
    return `certificate does not match the name: ${detail}; connect by a name it holds or set ` +
      "tls.servername (client.ts --servername NAME)";
  }
  if (/Expired|NotValidYet/.test(message)) return `certificate outside its validity: ${detail}`;
  if (/CaUsedAsEndEntity/.test(message)) {
    return "the server presents a CA certificate (CaUsedAsEndEntity); it needs a CA:FALSE one";
  }
  if (/invalid peer certificate/.test(message)) return `certificate rejected: ${detail}`;
  if (/corrupt message|unexpected handshake message|InvalidContentType/i.test(message)) {
    return `TLS handshake failed (does the server speak TLS?): ${message}`;
  }
  if (error instanceof Deno.errors.ConnectionReset || error instanceof Deno.errors.UnexpectedEof) {
    return `TLS handshake failed: ${describeNetworkError(error)} (does the server speak TLS?)`;
  }
  return `TLS handshake failed: ${describeNetworkError(error)}`;
}

async function writeAll(conn: Deno.Conn, data: Uint8Array): Promise<void> {
  let written = 0;
  while (written < data.length) written += await conn.write(data.subarray(written));
}

/** Options of {@linkcode echoTcpStream}. */
export interface EchoStreamOptions extends TcpClientOptions {
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
 * @param options Server address (or `unix` path), `tls`, window, output and timeout (without
 * progress).
 * @returns How many bytes came back identical, and how long it took.
 * @throws {EchoMismatchError} When an echoed byte differs or the stream ends short.
 * @throws {EchoOutputError} When writing to `output` fails (its reader went away).
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
  const address = clientAddress(options);
  const where = describeTarget(address, options);
  const failed = new AbortController();
  const signal = options.signal ? AbortSignal.any([failed.signal, options.signal]) : failed.signal;
  const conn = await connectStream(
    address,
    options,
    AbortSignal.any([signal, AbortSignal.timeout(timeout)]),
    timeout,
  );
  const onAbort = () => conn.close();
  signal.addEventListener("abort", onAbort, { once: true });

  const pending: Uint8Array[] = [];
  let head = 0; // bytes of pending[0] already verified
  let inFlight = 0;
  let verified = 0;
  let written = 0; // echoed bytes handed to `output`
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
          const k = firstDifference(
            chunk.subarray(head, head + take),
            buffer.subarray(i, i + take),
          );
          if (k >= 0) {
            throw new EchoMismatchError(`echo from ${where} differs at byte ${verified + i + k}`, {
              address,
              offset: verified + i + k,
            });
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
        if (writer) {
          await writer.write(buffer.slice(0, n)).catch((error) => {
            throw new EchoOutputError(
              `output closed after ${written} echoed bytes: ${describeNetworkError(error)}`,
              { address, bytes: written, cause: error },
            );
          });
          written += n;
        }
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
