/**
 * The accept loop and the one session loop shared by every stream transport (TCP, and later TLS and
 * Unix sockets): read into a buffer, write it all back, repeat until the peer closes.
 *
 * @module
 */
import { callHook, reportError } from "./_hooks.ts";
import type { CloseReason, EchoServer, EchoServerOptions, ListenInfo } from "./serve.ts";
import { DEFAULT_GRACE_PERIOD } from "./serve.ts";
import type { EchoStats } from "./stats.ts";
import { createStats } from "./stats.ts";

/** First read buffer of a session: small, so idle sessions stay cheap. */
const INITIAL_BUFFER = 16 * 1024;
/** A session whose reads fill its buffer grows it up to this size. */
const MAX_BUFFER = 64 * 1024;
/** Pause after an accept failure such as EMFILE, so a full descriptor table is not spun on. */
const ACCEPT_BACKOFF_MS = 100;

/** Errors that mean the peer went away; they end one session and concern nobody else. */
function isPeerGone(error: unknown): boolean {
  return error instanceof Deno.errors.ConnectionReset ||
    error instanceof Deno.errors.BrokenPipe ||
    error instanceof Deno.errors.ConnectionAborted ||
    error instanceof Deno.errors.NotConnected ||
    error instanceof Deno.errors.UnexpectedEof;
}

/** Accept failures caused by one client (reset while still queued): skip it and go on accepting. */
function isTransientAcceptError(error: unknown): boolean {
  return error instanceof Deno.errors.NotConnected ||
    error instanceof Deno.errors.ConnectionAborted ||
    error instanceof Deno.errors.ConnectionReset;
}

/**
 * Serves echo on an already-bound stream listener.
 *
 * @param listener A TCP, TLS or Unix listener.
 * @param options Hooks, limits and counters.
 * @returns The server handle.
 */
export function serveStreamListener(
  listener: Deno.Listener,
  options: EchoServerOptions,
): EchoServer {
  return new StreamServer(listener, options);
}

class StreamServer implements EchoServer {
  readonly addr: Deno.NetAddr;
  readonly listeners: readonly ListenInfo[];
  readonly stats: EchoStats;
  readonly finished: Promise<void>;
  #listener: Deno.Listener;
  #options: EchoServerOptions;
  #sessions = new Set<Deno.Conn>();
  #accepting = true;
  #acceptLoopDone = false;
  #closingSessions = false;
  #shuttingDown = false;
  #graceTimer?: ReturnType<typeof setTimeout>;
  #resolve: () => void;
  #nextId = 1;
  #refed = true;

  constructor(listener: Deno.Listener, options: EchoServerOptions) {
    this.#listener = listener;
    this.#options = options;
    this.stats = options.stats ?? createStats();
    this.addr = listener.addr as Deno.NetAddr;
    this.listeners = [{ transport: "tcp", hostname: this.addr.hostname, port: this.addr.port }];
    const { promise, resolve } = Promise.withResolvers<void>();
    this.finished = promise;
    this.#resolve = resolve;
    callHook(options, options.onListen, this.listeners[0]);
    void this.#acceptLoop();
    const signal = options.signal;
    if (signal?.aborted) void this.shutdown();
    else signal?.addEventListener("abort", () => void this.shutdown(), { once: true });
  }

  async #acceptLoop(): Promise<void> {
    while (this.#accepting) {
      let conn: Deno.Conn;
      try {
        conn = await this.#listener.accept();
      } catch (error) {
        if (!this.#accepting || error instanceof Deno.errors.BadResource) break;
        if (isTransientAcceptError(error)) {
          // A client that reset while still queued (Deno's accept then fails with ENOTCONN): it
          // concerns that client only, but it is a connection that ended in an error, so count it.
          this.stats.errors++;
          continue;
        }
        reportError(this.#options, "accept failed", error, this.#where());
        await new Promise((resolve) => setTimeout(resolve, ACCEPT_BACKOFF_MS));
        continue;
      }
      if (this.#options.once) this.#stopAccepting();
      void this.#session(conn, this.#nextId++);
    }
    this.#acceptLoopDone = true;
    this.#maybeFinish();
  }

  async #session(conn: Deno.Conn, id: number): Promise<void> {
    const options = this.#options;
    const stats = this.stats;
    const remoteAddr = conn.remoteAddr as Deno.NetAddr;
    const started = performance.now();
    this.#sessions.add(conn);
    stats.sessionsOpen++;
    stats.sessionsTotal++;
    if (!this.#refed) conn.unref();
    let bytes = 0;
    let reason: CloseReason = "eof";
    try {
      (conn as Partial<Deno.TcpConn>).setNoDelay?.(true);
      if (options.onConnection) {
        callHook(options, options.onConnection, {
          id,
          remoteAddr,
          localAddr: conn.localAddr as Deno.NetAddr,
        });
      }
      let buffer = new Uint8Array(INITIAL_BUFFER);
      for (;;) {
        const n = await conn.read(buffer);
        if (n === null) break;
        stats.bytesIn += n;
        if (options.onData) {
          callHook(options, options.onData, { id, remoteAddr, data: buffer.subarray(0, n) });
        }
        let written = 0;
        while (written < n) written += await conn.write(buffer.subarray(written, n));
        stats.bytesOut += n;
        bytes += n;
        if (n === buffer.length && buffer.length < MAX_BUFFER) {
          buffer = new Uint8Array(buffer.length * 4);
        }
      }
    } catch (error) {
      if (this.#closingSessions) {
        reason = "shutdown";
      } else if (isPeerGone(error)) {
        reason = "reset";
        stats.errors++;
      } else {
        reason = "error";
        stats.errors++;
        reportError(options, "session failed", error, { ...remoteAddr, transport: "tcp" });
      }
    } finally {
      this.#sessions.delete(conn);
      stats.sessionsOpen--;
      try {
        conn.close();
      } catch {
        // already closed by shutdown
      }
      if (options.onClose) {
        const duration = performance.now() - started;
        callHook(options, options.onClose, { id, remoteAddr, bytes, duration, reason });
      }
      this.#maybeFinish();
    }
  }

  #where() {
    return { hostname: this.addr.hostname, port: this.addr.port, transport: "tcp" as const };
  }

  #stopAccepting(): void {
    if (!this.#accepting) return;
    this.#accepting = false;
    try {
      this.#listener.close();
    } catch {
      // already closed
    }
  }

  #maybeFinish(): void {
    if (this.#accepting || !this.#acceptLoopDone || this.#sessions.size > 0) return;
    clearTimeout(this.#graceTimer);
    this.#resolve();
  }

  shutdown(): Promise<void> {
    if (!this.#shuttingDown) {
      this.#shuttingDown = true;
      this.#stopAccepting();
      if (this.#sessions.size > 0) {
        this.#graceTimer = setTimeout(() => {
          this.#closingSessions = true;
          for (const conn of this.#sessions) {
            try {
              conn.close();
            } catch {
              // already closed
            }
          }
        }, this.#options.gracePeriod ?? DEFAULT_GRACE_PERIOD);
      }
      this.#maybeFinish();
    }
    return this.finished;
  }

  ref(): void {
    this.#refed = true;
    this.#listener.ref();
    for (const conn of this.#sessions) conn.ref();
  }

  unref(): void {
    this.#refed = false;
    this.#listener.unref();
    for (const conn of this.#sessions) conn.unref();
  }

  [Symbol.asyncDispose](): Promise<void> {
    return this.shutdown();
  }
}
