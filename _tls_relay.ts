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

/** Copies `from` to `to` until `from` ends, then half-closes `to`; any error closes both. */
async function pump(from: Deno.Conn, to: Deno.Conn, onError: () => void): Promise<void> {
  const buffer = new Uint8Array(RELAY_BUFFER);
  try {
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
 * One relayed TLS session: reads and writes go to the inner TLS connection; addresses are the
 * outer socket's; `close()` frees every socket whatever the handshake's state.
 */
export class RelayedTlsConn {
  readonly remoteAddr: Deno.NetAddr;
  readonly localAddr: Deno.NetAddr;
  #tls: Deno.TlsConn;
  #outer: Deno.TcpConn;
  #relay: Deno.TcpConn;
  #closed = false;
  #handshook = false;
  /** The handshake failed (the client does not speak TLS, or gave up): its alert is on its way. */
  #handshakeFailed = false;
  #deadline?: ReturnType<typeof setTimeout>;
  #refed = true;
  #pumps: Promise<void>;

  /**
   * Starts relaying.
   *
   * @param tls The inner TLS connection (the session reads and writes it).
   * @param outer The client's socket.
   * @param relay The relay's end of the inner connection.
   * @param handshakeTimeout Close the session if its handshake takes longer (ms; 0 = never).
   */
  constructor(
    tls: Deno.TlsConn,
    outer: Deno.TcpConn,
    relay: Deno.TcpConn,
    handshakeTimeout: number,
  ) {
    this.#tls = tls;
    this.#outer = outer;
    this.#relay = relay;
    this.remoteAddr = outer.remoteAddr;
    this.localAddr = outer.localAddr;
    const fail = () => this.#closeSockets();
    this.#pumps = Promise.all([pump(outer, relay, fail), pump(relay, outer, fail)]).then(() => {});
    // The handshake's own deadline: a client that never completes it is closed, idle or not.
    const deadline = this.#deadline = handshakeTimeout > 0
      ? setTimeout(() => this.#closeSockets(), handshakeTimeout)
      : undefined;
    const settled = () => clearTimeout(deadline);
    tls.handshake().then(() => {
      this.#handshook = true;
      settled();
    }, () => {
      this.#handshakeFailed = true;
      settled();
    });
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

  /** Resolves once both relay directions have stopped. */
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

/**
 * A TLS listener built from a plain TCP listener and an inner `Deno.listenTls` on loopback, with
 * the parts of {@linkcode Deno.Listener} the accept loop uses.
 */
export class TlsRelayListener {
  readonly addr: Deno.NetAddr;
  #outer: Deno.TcpListener;
  #inner: Deno.TlsListener;
  #innerPort: number;
  #handshakeTimeout: number;

  /**
   * Takes both listeners (the caller bound them).
   *
   * @param outer The public, plain TCP listener.
   * @param inner The TLS listener on 127.0.0.1 that the relay connects to.
   * @param handshakeTimeout Handshake deadline per session in ms (0 = none); default
   * {@linkcode DEFAULT_HANDSHAKE_TIMEOUT}.
   */
  constructor(
    outer: Deno.TcpListener,
    inner: Deno.TlsListener,
    handshakeTimeout: number = DEFAULT_HANDSHAKE_TIMEOUT,
  ) {
    this.#handshakeTimeout = handshakeTimeout;
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
        return new RelayedTlsConn(tls, outer, relay, this.#handshakeTimeout);
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
