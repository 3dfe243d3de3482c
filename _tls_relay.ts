/**
 * The TLS listener of the stream server: plain TCP outside, `Deno.listenTls` inside, relayed.
 *
 * Why: a `Deno.TlsConn` closed before its handshake completes is not closed. Deno's TLS stream
 * (rustls-tokio-stream) runs the handshake in a task that holds the TCP socket, and dropping
 * the stream while it handshakes spawns a task that awaits that handshake — which ends only when
 * the peer sends or closes. A client that connects and sends nothing kept its descriptor
 * forever, whatever the server did. (A node:tls socket is freed by `destroy()`, but node:net's
 * `listen()` with a host binds a tick later, and `serveTcpEcho()` returns its bound address at
 * once; and the session loop would need an adapter over node streams.)
 *
 * So the server accepts plain TCP (which it can close at any time), relays each connection's
 * bytes over loopback to an inner TLS listener on 127.0.0.1, and serves the inner TLS
 * connection. Closing a session closes the outer socket and the relay's own end of the inner
 * one, and the inner handshake, seeing its peer gone, ends and frees its socket. Cost: two more
 * descriptors and one more copy each way per TLS session.
 *
 * Behind a balancer (`proxyProtocol`), a connection starts with a PROXY header in clear text and
 * only then the TLS handshake (HAProxy's `send-proxy-v2` in front of a TLS backend). Then the
 * relay holds each connection: nothing is relayed until the server has read the header off the
 * client's socket ({@linkcode RelayedTlsConn.prelude}) and admitted it; the bytes read past the
 * header (the start of the handshake) are relayed first. A refused connection never reaches TLS.
 *
 * @module
 */

/** Bytes the relay moves per read. */
const RELAY_BUFFER = 64 * 1024;
/**
 * How long a TLS handshake may take before the session is closed, in ms.
 *
 * @example
 * ```ts
 * import { DEFAULT_HANDSHAKE_TIMEOUT } from "./_tls_relay.ts";
 *
 * console.log(DEFAULT_HANDSHAKE_TIMEOUT); // 10000
 * ```
 */
export const DEFAULT_HANDSHAKE_TIMEOUT = 10_000;
/** How long a closed session's relay waits for the client to close after the TLS end. */
const RELAY_LINGER_MS = 1000;

/**
 * Copies `from` to `to` (after `first`, bytes already read from `from`) until `from` ends, then
 * half-closes `to`; any error closes both.
 */
async function pump(
  from: Deno.Conn,
  to: Deno.Conn,
  onError: () => void,
  first?: Uint8Array,
): Promise<void> {
  const buffer = new Uint8Array(RELAY_BUFFER);
  try {
    for (let written = 0; first && written < first.length;) {
      written += await to.write(first.subarray(written));
    }
    for (;;) {
      const n = await from.read(buffer);
      if (n === null) break;
      let written = 0;
      while (written < n) written += await to.write(buffer.subarray(written, n));
    }
    await to.closeWrite();
  } catch {
    onError();
  }
}

function closeQuietly(conn: Deno.Conn): void {
  try {
    conn.close();
  } catch {
    // already closed
  }
}

/**
 * The clear-text bytes a held connection starts with, before its TLS handshake (a balancer's
 * PROXY header), and the switch that then starts the relay.
 */
export interface ClearTextPrelude {
  /**
   * Reads the client's socket directly (only before {@linkcode ClearTextPrelude.relay}).
   *
   * @param buffer Where to read.
   * @returns The count, or null at the end of the stream.
   */
  read(buffer: Uint8Array): Promise<number | null>;
  /** The client's socket's peer (the balancer, for a PROXY header). */
  readonly remoteAddr: Deno.NetAddr;
  /**
   * Starts relaying (once; a no-op after `close()`), and the handshake deadline with it.
   *
   * @param rest Bytes read past the prelude (the start of the TLS handshake): relayed first.
   */
  relay(rest: Uint8Array): void;
}

/** How a {@linkcode RelayedTlsConn} is set up. */
export interface RelayedTlsConnOptions {
  /** The client's socket. */
  outer: Deno.TcpConn;
  /** The relay's end of the inner connection. */
  relay: Deno.TcpConn;
  /** Close the session if its handshake takes longer (ms; 0 = never). */
  handshakeTimeout: number;
  /**
   * Hold the relay until {@linkcode ClearTextPrelude.relay}, so a clear-text prelude can be read
   * off the client's socket first ({@linkcode RelayedTlsConn.prelude}). Default false.
   */
  hold?: boolean;
}

/**
 * One relayed TLS session: reads and writes go to the inner TLS connection; addresses are the
 * outer socket's; `close()` frees every socket whatever the handshake's state.
 */
export class RelayedTlsConn {
  readonly remoteAddr: Deno.NetAddr;
  readonly localAddr: Deno.NetAddr;
  /**
   * For a held connection: its clear-text start, read off the client's socket, and the switch
   * that starts the relay. Undefined when the relay started at once.
   */
  readonly prelude?: ClearTextPrelude;
  #tls: Deno.TlsConn;
  #outer: Deno.TcpConn;
  #relay: Deno.TcpConn;
  #handshakeTimeout: number;
  #closed = false;
  #started = false;
  #handshook = false;
  /** The handshake failed (the client does not speak TLS, or gave up): its alert is on its way. */
  #handshakeFailed = false;
  #deadline?: ReturnType<typeof setTimeout>;
  #refed = true;
  /** Both relay directions; resolved at once while the relay has not started. */
  #pumps: Promise<void> = Promise.resolve();

  /**
   * Starts relaying, or holds the relay for a prelude (`hold`).
   *
   * @param tls The inner TLS connection (the session reads and writes it).
   * @param options The client's socket, the relay's end, the handshake deadline, holding.
   */
  constructor(tls: Deno.TlsConn, options: RelayedTlsConnOptions) {
    const { outer, relay } = options;
    this.#tls = tls;
    this.#outer = outer;
    this.#relay = relay;
    this.#handshakeTimeout = options.handshakeTimeout;
    this.remoteAddr = outer.remoteAddr;
    this.localAddr = outer.localAddr;
    tls.handshake().then(() => {
      this.#handshook = true;
      clearTimeout(this.#deadline);
    }, () => {
      this.#handshakeFailed = true;
      clearTimeout(this.#deadline);
    });
    if (!options.hold) {
      this.#start();
      return;
    }
    this.prelude = {
      read: (buffer) => outer.read(buffer),
      remoteAddr: outer.remoteAddr,
      relay: (rest) => this.#start(rest),
    };
  }

  /** Starts both relay directions (`first` ahead of the client's bytes) and the deadline. */
  #start(first?: Uint8Array): void {
    if (this.#started || this.#closed) return;
    this.#started = true;
    const fail = () => this.#closeSockets();
    this.#pumps = Promise.all([
      pump(this.#outer, this.#relay, fail, first),
      pump(this.#relay, this.#outer, fail),
    ]).then(() => {});
    // The handshake's own deadline: a client that never completes it is closed, idle or not.
    if (this.#handshakeTimeout > 0 && !this.#handshook && !this.#handshakeFailed) {
      this.#deadline = setTimeout(() => this.#closeSockets(), this.#handshakeTimeout);
    }
  }

  #closeSockets(): void {
    clearTimeout(this.#deadline);
    closeQuietly(this.#outer);
    closeQuietly(this.#relay);
  }

  /**
   * Reads decrypted bytes.
   *
   * @param p The buffer.
   * @returns The count, or null at the end of the stream.
   */
  read(p: Uint8Array): Promise<number | null> {
    return this.#tls.read(p);
  }

  /**
   * Writes bytes (encrypted on the way out).
   *
   * @param p The bytes.
   * @returns How many were written.
   */
  write(p: Uint8Array): Promise<number> {
    return this.#tls.write(p);
  }

  /** Sends close_notify and half-closes. */
  closeWrite(): Promise<void> {
    return this.#tls.closeWrite();
  }

  /** The TLS handshake. */
  handshake(): Promise<Deno.TlsHandshakeInfo> {
    return this.#tls.handshake();
  }

  /**
   * Closes the session: the TLS connection, the client's socket and the relay (which also ends
   * an inner handshake still waiting). Resolves the relay's tasks soon after.
   */
  close(): void {
    if (this.#closed) throw new Deno.errors.BadResource("the connection was closed");
    this.#closed = true;
    closeQuietly(this.#tls);
    if (!this.#handshook && !this.#handshakeFailed) {
      this.#closeSockets();
      return;
    }
    // After a handshake, the inner close sends close_notify and a FIN through the relay; after a
    // failed one, the TLS alert that says why (a plain client against a TLS port sees it, and
    // can tell it apart from a short echo): let it through, then close (at the latest after
    // RELAY_LINGER_MS, if the client does not close).
    const timer = setTimeout(() => this.#closeSockets(), RELAY_LINGER_MS);
    if (!this.#refed) Deno.unrefTimer(timer);
    void this.#pumps.then(() => {
      clearTimeout(timer);
      this.#closeSockets();
    });
  }

  /** Resolves once both relay directions have stopped (at once if the relay never started). */
  get relayed(): Promise<void> {
    return this.#pumps;
  }

  /**
   * Sets TCP_NODELAY on the client's socket and the relay.
   *
   * @param noDelay On (default) or off.
   */
  setNoDelay(noDelay = true): void {
    this.#outer.setNoDelay(noDelay);
    this.#relay.setNoDelay(noDelay);
  }

  /** Keeps the event loop alive while the session is open. */
  ref(): void {
    this.#refed = true;
    this.#tls.ref();
    this.#outer.ref();
    this.#relay.ref();
  }

  /** Lets the event loop end while the session is open. */
  unref(): void {
    this.#refed = false;
    this.#tls.unref();
    this.#outer.unref();
    this.#relay.unref();
  }
}

/** Options of a {@linkcode TlsRelayListener}. */
export interface TlsRelayListenerOptions {
  /** Handshake deadline per session in ms (0 = none); default {@linkcode DEFAULT_HANDSHAKE_TIMEOUT}. */
  handshakeTimeout?: number;
  /**
   * Hold every connection's relay until its clear-text prelude (a PROXY header) was read and
   * {@linkcode ClearTextPrelude.relay} called. Default false.
   */
  hold?: boolean;
}

/**
 * A TLS listener built from a plain TCP listener and an inner `Deno.listenTls` on loopback, with
 * the parts of {@linkcode Deno.Listener} the accept loop uses.
 *
 * @example Hold a connection for its clear-text start, then relay it to TLS
 * ```ts
 * import { TlsRelayListener } from "./_tls_relay.ts";
 *
 * const cert = await Deno.readTextFile("./tests/fixtures/tls_cert.pem");
 * const key = await Deno.readTextFile("./tests/fixtures/tls_key.pem");
 * const listener = new TlsRelayListener(
 *   Deno.listen({ hostname: "127.0.0.1", port: 0 }),
 *   Deno.listenTls({ hostname: "127.0.0.1", port: 0, cert, key }),
 *   { hold: true },
 * );
 * const tcp = await Deno.connect({ hostname: "127.0.0.1", port: listener.addr.port });
 * await tcp.write(new TextEncoder().encode("HI\n")); // in clear text, before TLS
 * const client = Deno.startTls(tcp, { hostname: "127.0.0.1", caCerts: [cert] });
 * const session = await listener.accept();
 * const start = new Uint8Array(3);
 * for (let n = 0; n < 3;) n += (await session.prelude!.read(start.subarray(n))) ?? 3;
 * session.prelude!.relay(new Uint8Array(0)); // what was read past the start would go here
 * const tls = await client;
 * await tls.write(new TextEncoder().encode("secret"));
 * const echo = new Uint8Array(6);
 * await session.read(echo);
 * console.log(new TextDecoder().decode(start), new TextDecoder().decode(echo)); // "HI\n" "secret"
 * tls.close();
 * session.close();
 * listener.close();
 * ```
 */
export class TlsRelayListener {
  readonly addr: Deno.NetAddr;
  #outer: Deno.TcpListener;
  #inner: Deno.TlsListener;
  #innerPort: number;
  #handshakeTimeout: number;
  #hold: boolean;

  /**
   * Takes both listeners (the caller bound them).
   *
   * @param outer The public, plain TCP listener.
   * @param inner The TLS listener on 127.0.0.1 that the relay connects to.
   * @param options The handshake deadline, and whether connections are held for a prelude.
   */
  constructor(
    outer: Deno.TcpListener,
    inner: Deno.TlsListener,
    options: TlsRelayListenerOptions = {},
  ) {
    this.#handshakeTimeout = options.handshakeTimeout ?? DEFAULT_HANDSHAKE_TIMEOUT;
    this.#hold = options.hold ?? false;
    this.#outer = outer;
    this.#inner = inner;
    this.addr = outer.addr;
    this.#innerPort = inner.addr.port;
  }

  /**
   * Accepts the next client and connects it to the inner listener.
   *
   * @returns The relayed session.
   * @throws {Deno.errors.BadResource} Once closed.
   * @throws {Deno.errors.ConnectionAborted} When the relay could not be set up for one client.
   */
  async accept(): Promise<RelayedTlsConn> {
    const outer = await this.#outer.accept();
    let relay: Deno.TcpConn;
    try {
      relay = await Deno.connect({ hostname: "127.0.0.1", port: this.#innerPort });
    } catch (error) {
      closeQuietly(outer);
      if (error instanceof Deno.errors.BadResource) throw error;
      throw new Deno.errors.ConnectionAborted(`TLS relay: ${(error as Error).message}`);
    }
    for (;;) {
      // Only our relay should connect to the inner port; anything else on loopback is refused.
      let tls: Deno.TlsConn;
      try {
        tls = await this.#inner.accept();
      } catch (error) {
        closeQuietly(outer);
        closeQuietly(relay);
        throw error;
      }
      if (tls.remoteAddr.port === relay.localAddr.port) {
        return new RelayedTlsConn(tls, {
          outer,
          relay,
          handshakeTimeout: this.#handshakeTimeout,
          hold: this.#hold,
        });
      }
      closeQuietly(tls);
    }
  }

  /** Stops listening (both listeners). */
  close(): void {
    try {
      this.#outer.close();
    } finally {
      try {
        this.#inner.close();
      } catch {
        // already closed
      }
    }
  }

  /** Keeps the event loop alive while listening. */
  ref(): void {
    this.#outer.ref();
    this.#inner.ref();
  }

  /** Lets the event loop end while listening. */
  unref(): void {
    this.#outer.unref();
    this.#inner.unref();
  }
}
