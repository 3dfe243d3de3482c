/**
 * The accept loop and the one session loop shared by every stream transport (TCP, TLS and Unix
 * sockets): read into a buffer, write it all back, repeat until the peer closes. The accept policy
 * (allow-list, connection cap) and the session limits (idle, bytes, time) come from _policy.ts;
 * TCP shaping (delay, bandwidth) switches a session to a delay line that keeps reading ahead.
 * With the PROXY protocol on, a session starts by reading its header (#proxyHeader): the client
 * it names is the session's address for the allow-list, the hooks and the counters. Over TLS the
 * header comes in clear text before the handshake, so it is read off the client's socket while
 * the TLS relay holds the connection, and the relay starts once the connection is admitted.
 *
 * @module
 */
import { callHook, reportError } from "./_hooks.ts";
import type { StreamPolicy } from "./_policy.ts";
import { CUT_FLUSH_MS, shapedEcho } from "./_shaped_session.ts";
import { TcpShaper } from "./impair.ts";
import { defaultMaxPerSource, SourceSlots } from "./limits.ts";
import { FdReserve, isFdExhausted, type Refusal, ReportThrottle } from "./_fd_reserve.ts";
import { readTurns as turns } from "./_read_turns.ts";
import type { CloseReason, EchoServer, EchoServerOptions, ListenInfo } from "./types.ts";
import { DEFAULT_GRACE_PERIOD } from "./types.ts";
import { proxiedAddress, ProxyProtocolError, readProxyHeader } from "./proxy_protocol.ts";
import type { ClearTextPrelude } from "./_tls_relay.ts";
import type { EchoStats, TransportCounters } from "./stats.ts";
import {
  countProxyRefusal,
  createStats,
  recordSessionDuration,
  transportCounters,
} from "./stats.ts";

/** First read buffer of a session: small, so 1,000 idle sessions hold 1 MiB of buffers. */
const INITIAL_BUFFER = 1024;
/**
 * A session whose reads fill its buffer grows it fourfold, up to this size: 256 KiB reads carry
 * a stream with half the ops of 64 KiB ones (4 streams: 1,723 → 3,031-3,278 MB/s; 1 MiB
 * measured no better).
 */
const MAX_BUFFER = 256 * 1024;
/** The cap while more than TURNS_FROM_SESSIONS sessions are open, so a crowd stays cheap. */
const CROWD_MAX_BUFFER = 64 * 1024;
/** A grown buffer shrinks fourfold after this many reads in a row that used at most 1/16 of it. */
const SHRINK_AFTER = 8;
/** Pause after an accept failure such as EMFILE, so a full descriptor table is not spun on. */
const ACCEPT_BACKOFF_MS = 100;

/** Errors that mean the peer went away; they end one session and concern nobody else. */
function isPeerGone(error: unknown): boolean {
  return error instanceof Deno.errors.ConnectionReset ||
    error instanceof Deno.errors.BrokenPipe ||
    error instanceof Deno.errors.ConnectionAborted ||
    error instanceof Deno.errors.NotConnected ||
    error instanceof Deno.errors.UnexpectedEof ||
    // TLS: the client gave up the handshake (untrusted certificate) or does not speak TLS.
    error instanceof Deno.errors.InvalidData;
}

/** Accept failures caused by one client (reset while still queued): skip it and go on accepting. */
function isTransientAcceptError(error: unknown): boolean {
  return error instanceof Deno.errors.NotConnected ||
    error instanceof Deno.errors.ConnectionAborted ||
    error instanceof Deno.errors.ConnectionReset;
}

/** What the server knows of one open session. */
interface Session {
  conn: Deno.Conn;
  /** Reads so far; the sweeper compares it between sweeps to see activity. */
  reads: number;
  /** Reads seen at the last sweep, and when they last changed. */
  seenReads: number;
  lastActive: number;
  started: number;
  /** Set when the server closes the session (idle, limit, shutdown). */
  closedBy?: CloseReason;
  /** A shaped session's writer timer while it waits for a chunk's time (for ref/unref). */
  timer?: number;
  /** While a write is under way: a cut then waits for it (up to CUT_FLUSH_MS) before closing. */
  writing?: boolean;
  /** A shaped session's own cut (flush its queue, then close); see #cut. */
  cut?: () => void;
  /** Closes a cut session whose write does not finish in time. */
  flushTimer?: ReturnType<typeof setTimeout>;
}

/** What a server shares with servers on other threads (a main thread and its workers). */
export interface StreamSharing {
  /** Sessions open across all of them, at index 0, so `maxConnections` caps the total. */
  sessions?: Int32Array;
  /** The last session id given out, at index 0, so ids are unique and in order across threads. */
  ids?: Int32Array;
}

/**
 * Serves echo on an already-bound stream listener, or on several bound to one address (TCP
 * listeners sharing a port with `reusePort`, each with its own accept queue).
 *
 * @param listener A TCP, TLS or Unix listener, or TCP listeners on one address.
 * @param options Hooks, limits and counters.
 * @param policy The accept policy and session limits, built once from the options (_policy.ts).
 * @param info Extra facts for the listener's ListenInfo (e.g. `secure` for TLS).
 * @param sharing Counters and ids shared with servers on other threads, if any.
 * @returns The server handle.
 */
export function serveStreamListener(
  listener: Deno.Listener | readonly Deno.Listener[],
  options: EchoServerOptions,
  policy: StreamPolicy,
  info: Partial<ListenInfo> = {},
  sharing: StreamSharing = {},
): EchoServer {
  return new StreamServer(listener, options, policy, info, sharing);
}

class StreamServer implements EchoServer {
  readonly addr: Deno.NetAddr;
  readonly listeners: readonly ListenInfo[];
  readonly stats: EchoStats;
  readonly finished: Promise<void>;
  #listeners: readonly Deno.Listener[];
  #options: EchoServerOptions;
  #policy: StreamPolicy;
  #slots?: SourceSlots;
  /** Per-source slots taken by the clients PROXY headers name, by connection. */
  #proxySlots = new Map<Deno.Conn, string>();
  /** A spare descriptor, spent to refuse connections promptly at the descriptor limit. */
  #fdReserve!: FdReserve;
  /** Accept failures, and refusals at the descriptor limit, are each reported at most once a second. */
  #acceptReports = new ReportThrottle(1000);
  #fdReports = new ReportThrottle(1000);
  #sessions = new Set<Session>();
  #accepting = true;
  #acceptLoops = 0;
  #shuttingDown = false;
  #graceTimer?: ReturnType<typeof setTimeout>;
  #sweeper?: ReturnType<typeof setInterval>;
  #resolve: () => void;
  #nextId = 1;
  #ids?: Int32Array;
  #shared?: Int32Array;
  #refed = true;
  /** This listener's share of the counters (`tcp`, `tls` or `unix`). */
  #counters: TransportCounters;
  /** Connections still waiting for their PROXY header (not sessions yet). */
  #awaiting = new Set<Deno.Conn>();
  /** Aborted on shutdown: connections waiting for a header are closed. */
  #headerAbort = new AbortController();

  constructor(
    listener: Deno.Listener | readonly Deno.Listener[],
    options: EchoServerOptions,
    policy: StreamPolicy,
    info: Partial<ListenInfo>,
    sharing: StreamSharing,
  ) {
    this.#policy = policy;
    this.#shared = sharing.sessions;
    this.#ids = sharing.ids;
    this.#listeners = Array.isArray(listener) ? listener : [listener as Deno.Listener];
    this.#options = options;
    this.stats = options.stats ?? createStats();
    this.addr = this.#listeners[0].addr as Deno.NetAddr;
    this.#counters = transportCounters(
      this.stats,
      info.secure ? "tls" : this.#listeners[0].addr.transport === "unix" ? "unix" : "tcp",
    );
    // Per-source slots: on by default only when bound to a non-loopback address (decided from
    // the address bound, not the text asked for); Unix sockets have no source address.
    const perSource = policy.maxPerSource ??
      (this.addr.hostname === undefined ? undefined : defaultMaxPerSource(this.addr.hostname));
    if (perSource && perSource < Infinity) {
      this.#slots = new SourceSlots({ max: perSource, prefix6: policy.perSourcePrefix6 });
    }
    const shaper = this.#policy.shaper;
    this.listeners = [{
      transport: "tcp",
      hostname: this.addr.hostname,
      port: this.addr.port,
      ...info,
      ...(shaper ? { impairment: new TcpShaper(shaper).describe() } : {}),
    }];
    const { promise, resolve } = Promise.withResolvers<void>();
    this.finished = promise;
    this.#resolve = resolve;
    callHook(options, options.onListen, this.listeners[0]);
    const { idleTimeout, maxSessionTime } = this.#policy;
    const sweepEvery = Math.min(idleTimeout || Infinity, maxSessionTime ?? Infinity) / 4;
    if (sweepEvery < Infinity) {
      this.#sweeper = setInterval(() => this.#sweep(), Math.max(10, Math.min(1000, sweepEvery)));
    }
    this.#fdReserve = new FdReserve();
    for (const each of this.#listeners) void this.#acceptLoop(each);
    const signal = options.signal;
    if (signal?.aborted) void this.shutdown();
    else signal?.addEventListener("abort", () => void this.shutdown(), { once: true });
  }

  async #acceptLoop(listener: Deno.Listener): Promise<void> {
    this.#acceptLoops++;
    const { acl, maxConnections } = this.#policy;
    const slots = this.#slots;
    /** An accept handed back by a refusal at the descriptor limit, awaited as the next one. */
    let next: Promise<Deno.Conn> | undefined;
    while (this.#accepting) {
      let conn: Deno.Conn;
      try {
        conn = await (next ?? listener.accept());
        next = undefined;
      } catch (error) {
        next = undefined;
        if (!this.#accepting || error instanceof Deno.errors.BadResource) break;
        if (isTransientAcceptError(error)) {
          // A client that reset while still queued (Deno's accept then fails with ENOTCONN): it
          // concerns that client only, but it is a connection that ended in an error, so count it.
          this.stats.errors++;
          this.#counters.errors++;
          continue;
        }
        if (isFdExhausted(error)) {
          const refusal = await this.#refuseAtFdLimit(listener, error);
          if (refusal) {
            next = refusal.pending;
            continue;
          }
        }
        const suppressed = this.#acceptReports.take();
        if (suppressed >= 0) {
          const more = suppressed ? ` (${suppressed} more in the last second)` : "";
          reportError(this.#options, `accept failed${more}`, error, this.#where());
        }
        await new Promise((resolve) => setTimeout(resolve, ACCEPT_BACKOFF_MS));
        continue;
      }
      const remote = conn.remoteAddr as Deno.NetAddr;
      if (!this.#fdReserve.admit(conn)) {
        this.#countFdRefusal(remote, undefined);
        continue;
      }
      let refused: "acl" | "source" | "limit" | undefined;
      /** The slot this session holds in its source's count, given back when it ends. */
      let slot: string | undefined;
      // Behind a balancer the allow-list and the per-source count apply to the header's client
      // (#proxyHeader), not to the balancer's address.
      const proxied = this.#policy.proxy !== undefined;
      if (!proxied && acl && remote.hostname !== undefined && !acl.matches(remote.hostname)) {
        refused = "acl";
      } else if (!proxied && slots && (slot = slots.acquire(remote.hostname)) === undefined) {
        refused = "source";
      } else if (this.#shared) {
        // The cap counts the sessions of every thread; a session counted here is uncounted when
        // it ends (#session's finally).
        if (Atomics.add(this.#shared, 0, 1) >= maxConnections) {
          Atomics.sub(this.#shared, 0, 1);
          refused = "limit";
        }
      } else if (this.#sessions.size + this.#awaiting.size >= maxConnections) {
        refused = "limit";
      }
      if (refused) {
        if (slot !== undefined && refused !== "source") slots!.release(slot);
        this.#refuse(conn, remote, refused);
        continue;
      }
      if (this.#options.once) this.#stopAccepting();
      const session = this.#session(
        conn,
        this.#ids ? Atomics.add(this.#ids, 0, 1) + 1 : this.#nextId++,
      );
      if (slot !== undefined) void session.finally(() => slots!.release(slot!));
      else if (proxied && slots) {
        // The header's client holds a slot from #proxyHeader on: given back when the session ends.
        void session.finally(() => {
          const held = this.#proxySlots.get(conn);
          if (held !== undefined) slots.release(held);
          this.#proxySlots.delete(conn);
        });
      }
    }
    this.#acceptLoops--;
    this.#maybeFinish();
  }

  /** Closes a connection a policy refused, counting it and telling `onReject`. */
  #refuse(
    conn: Deno.Conn,
    remoteAddr: Deno.NetAddr,
    reason: "acl" | "source" | "limit" | "proxy",
    detail?: string,
  ): void {
    if (reason !== "proxy") this.stats.dropped[reason]++;
    try {
      conn.close();
    } catch {
      // already gone
    }
    if (this.#options.onReject) {
      callHook(this.#options, this.#options.onReject, {
        transport: "tcp",
        remoteAddr,
        reason,
        ...(detail ? { detail } : {}),
      });
    }
  }

  /**
   * At the descriptor limit: accepts the waiting connection with the spare descriptor, closes it
   * at once and counts it (`fd`), reporting at most once a second. Undefined when no spare was
   * had (back off).
   */
  async #refuseAtFdLimit(listener: Deno.Listener, error: unknown): Promise<Refusal | undefined> {
    let refusal;
    try {
      refusal = await this.#fdReserve.refuse(listener);
    } catch {
      return undefined; // the listener closed, or the accept failed again: back off as before
    }
    if (refusal?.refused) this.#countFdRefusal(refusal.refused as Deno.NetAddr, error);
    return refusal;
  }

  #countFdRefusal(remote: Deno.NetAddr, error: unknown): void {
    this.stats.dropped.fd++;
    const suppressed = this.#fdReports.take();
    if (suppressed >= 0) {
      const more = suppressed ? ` (and ${suppressed} more in the last second)` : "";
      reportError(
        this.#options,
        `no file descriptor left: a connection was refused${more}`,
        error ?? new Error("too many open files"),
        this.#where(),
      );
    }
    if (this.#options.onReject) {
      callHook(this.#options, this.#options.onReject, {
        transport: "tcp",
        remoteAddr: remote as Deno.NetAddr,
        reason: "fd",
      });
    }
  }

  /**
   * Reads a connection's PROXY header (bounded in time and size, trusted peers only) and checks
   * the client it names against the allow-list. Returns that client and the bytes that came
   * with the header, or undefined when the connection was refused (and closed).
   *
   * One rule for every stream: the header is read from the connection's clear-text start. That
   * is the connection itself, or, for a TLS connection the relay holds (_tls_relay.ts), the
   * client's socket before the handshake; there the bytes after the header open the handshake,
   * so they are relayed to TLS (once admitted), not echoed.
   */
  async #proxyHeader(
    conn: Deno.Conn,
  ): Promise<{ remoteAddr: Deno.NetAddr; first: Uint8Array } | undefined> {
    const proxy = this.#policy.proxy!;
    const peer = conn.remoteAddr as Deno.NetAddr;
    const prelude = (conn as { prelude?: ClearTextPrelude }).prelude;
    this.#awaiting.add(conn);
    if (!this.#refed) conn.unref();
    try {
      const { header, rest } = await readProxyHeader(prelude ?? conn, {
        timeout: proxy.timeout,
        trusted: proxy.trusted,
        signal: this.#headerAbort.signal,
      });
      const remoteAddr = proxiedAddress(peer, header) as Deno.NetAddr;
      const acl = this.#policy.acl;
      if (acl && remoteAddr.hostname !== undefined && !acl.matches(remoteAddr.hostname)) {
        this.#refuse(conn, remoteAddr, "acl");
        return undefined;
      }
      if (this.#slots && remoteAddr.hostname !== undefined) {
        const slot = this.#slots.acquire(remoteAddr.hostname);
        if (slot === undefined) {
          this.#refuse(conn, remoteAddr, "source");
          return undefined;
        }
        this.#proxySlots.set(conn, slot);
      }
      if (!prelude) return { remoteAddr, first: rest };
      prelude.relay(rest);
      return { remoteAddr, first: new Uint8Array(0) };
    } catch (error) {
      if (error instanceof ProxyProtocolError) {
        countProxyRefusal(this.stats, error.reason);
        this.#refuse(conn, peer, "proxy", error.reason);
      } else {
        this.stats.errors++;
        this.#counters.errors++;
        reportError(this.#options, "PROXY header read failed", error, {
          ...peer,
          transport: "tcp",
        });
        try {
          conn.close();
        } catch {
          // already closed
        }
      }
      return undefined;
    } finally {
      this.#awaiting.delete(conn);
    }
  }

  async #session(conn: Deno.Conn, id: number): Promise<void> {
    const options = this.#options;
    const stats = this.stats;
    const counters = this.#counters;
    let remoteAddr = conn.remoteAddr as Deno.NetAddr;
    /** Client bytes that came with the PROXY header: echoed first. */
    let first: Uint8Array | undefined;
    if (this.#policy.proxy) {
      const proxied = await this.#proxyHeader(conn);
      if (!proxied) {
        if (this.#shared) Atomics.sub(this.#shared, 0, 1);
        this.#maybeFinish();
        return;
      }
      ({ remoteAddr, first } = proxied);
    }
    const now = performance.now();
    const session: Session = { conn, reads: 0, seenReads: 0, lastActive: now, started: now };
    this.#sessions.add(session);
    stats.sessionsOpen++;
    stats.sessionsTotal++;
    counters.sessionsOpen++;
    counters.sessionsTotal++;
    turns.enter();
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
      if (first?.length) {
        const cap = this.#policy.maxSessionBytes ?? Infinity;
        const data = first.length > cap ? first.subarray(0, cap) : first;
        session.reads++;
        stats.bytesIn += data.length;
        counters.bytesIn += data.length;
        if (options.onData) callHook(options, options.onData, { id, remoteAddr, data });
        for (let written = 0; written < data.length;) {
          written += await conn.write(data.subarray(written));
        }
        stats.bytesOut += data.length;
        counters.bytesOut += data.length;
        bytes += data.length;
        if (bytes >= cap) reason = session.closedBy = "limit";
      }
      if (session.closedBy) {
        // the bytes that came with the PROXY header reached the byte cap
      } else if (this.#policy.shaper) {
        bytes += await shapedEcho(session, {
          id,
          options,
          stats,
          counters,
          remoteAddr,
          shaper: this.#policy.shaper,
          // Bytes already echoed (those that came with a PROXY header) count towards the cap.
          maxBytes: (this.#policy.maxSessionBytes ?? Infinity) - bytes,
          refed: () => this.#refed,
        });
        if (session.closedBy) reason = session.closedBy;
      } else {
        const maxBytes = this.#policy.maxSessionBytes ?? Infinity;
        let buffer = new Uint8Array(INITIAL_BUFFER);
        // The view last written; request/response traffic repeats one size, so it is reused.
        let view = buffer;
        let smallReads = 0;
        /** The turn this session's read started in, while it takes turns (see _read_turns.ts). */
        let turn = -1;
        /** The window in which this session last counted as active (see _read_turns.ts). */
        let activeIn = 0;
        for (;;) {
          // Never read past the byte cap, so exactly maxSessionBytes are echoed.
          const left = maxBytes - bytes;
          const n = await conn.read(left < buffer.length ? buffer.subarray(0, left) : buffer);
          if (turn >= 0) {
            turns.done(turn);
            turn = -1;
          }
          if (n === null) break;
          // A read that completes after a cut closed the connection: nothing can be written
          // back, so it is not counted as read (like the input still queued in the kernel).
          if (session.closedBy) break;
          session.reads++;
          stats.bytesIn += n;
          counters.bytesIn += n;
          if (n !== view.length) view = buffer.subarray(0, n);
          if (options.onData) callHook(options, options.onData, { id, remoteAddr, data: view });
          session.writing = true;
          let written = await conn.write(view);
          while (written < n) written += await conn.write(buffer.subarray(written, n));
          session.writing = false;
          stats.bytesOut += n;
          counters.bytesOut += n;
          bytes += n;
          if (bytes >= maxBytes) {
            reason = session.closedBy = "limit";
            break;
          }
          // Cut while writing (see #cut): what was read is out; close before reading more.
          if (session.closedBy) {
            reason = session.closedBy;
            break;
          }
          // Grow while reads fill the buffer; shrink after a run of small reads, so a session
          // that carried bulk data and went back to small messages gives the memory back.
          if (n === buffer.length) {
            smallReads = 0;
            if (buffer.length < (turns.crowded ? CROWD_MAX_BUFFER : MAX_BUFFER)) {
              view = buffer = new Uint8Array(buffer.length * 4);
            }
          } else if (buffer.length > INITIAL_BUFFER && n <= buffer.length >> 4) {
            if (++smallReads === SHRINK_AFTER) {
              smallReads = 0;
              view = buffer = new Uint8Array(buffer.length >> 2);
            }
          } else {
            smallReads = 0;
          }
          if (turns.crowded) {
            activeIn = turns.note(activeIn);
            if (turns.busy) {
              // Hundreds of busy sessions: take turns (see _read_turns.ts), or some would starve.
              const wait = turns.take();
              if (wait) await wait;
              turn = turns.started();
            }
          }
        }
      }
    } catch (error) {
      if (session.closedBy) {
        reason = session.closedBy;
      } else if (isPeerGone(error)) {
        reason = "reset";
        stats.errors++;
        counters.errors++;
      } else {
        reason = "error";
        stats.errors++;
        counters.errors++;
        reportError(options, "session failed", error, { ...remoteAddr, transport: "tcp" });
      }
    } finally {
      this.#sessions.delete(session);
      stats.sessionsOpen--;
      counters.sessionsOpen--;
      turns.leave();
      if (this.#shared) Atomics.sub(this.#shared, 0, 1);
      if (reason === "idle") stats.dropped.idle++;
      clearTimeout(session.flushTimer);
      try {
        conn.close();
      } catch {
        // already closed by the server
      }
      const duration = performance.now() - session.started;
      recordSessionDuration(stats, duration);
      if (options.onClose) {
        callHook(options, options.onClose, { id, remoteAddr, bytes, duration, reason });
      }
      this.#maybeFinish();
    }
  }

  /** Closes sessions idle or open too long. Runs only when such a limit is set. */
  #sweep(): void {
    const now = performance.now();
    const { idleTimeout, maxSessionTime } = this.#policy;
    for (const session of this.#sessions) {
      if (session.reads !== session.seenReads) {
        session.seenReads = session.reads;
        session.lastActive = now;
      }
      const reason: CloseReason | undefined = idleTimeout && now - session.lastActive >= idleTimeout
        ? "idle"
        : maxSessionTime && now - session.started >= maxSessionTime
        ? "limit"
        : undefined;
      if (reason) this.#cut(session, reason);
    }
  }

  /**
   * Ends a session the server gives up on (idle, time limit, end of the grace period) without
   * dropping what it has read: a write under way may finish (for up to CUT_FLUSH_MS; a shaped
   * session flushes its queue unpaced), then the connection is closed while a read is pending (a
   * read that completes after that is discarded, uncounted, like input still in the kernel).
   *
   * Not a reset: Deno's close shuts the write half down first (tokio's OwnedWriteHalf drop:
   * `shutdown(SHUT_WR)`, then `close`), so the peer gets a FIN; with input still unread, Linux
   * then sends a RST, which makes the peer's later reads or writes fail and may discard echo it
   * had not read yet. Deno.Conn has no SO_LINGER, so a RST-only abort is not available here.
   */
  #cut(session: Session, reason: CloseReason): void {
    if (session.closedBy) return;
    session.closedBy = reason;
    const close = () => {
      try {
        session.conn.close();
      } catch {
        // already closed
      }
    };
    if (session.cut && reason !== "idle") {
      session.cut();
    } else if (session.writing && reason !== "idle") {
      session.flushTimer = setTimeout(close, CUT_FLUSH_MS);
      if (!this.#refed) Deno.unrefTimer(session.flushTimer as unknown as number);
    } else {
      close();
    }
  }

  #where() {
    return { hostname: this.addr.hostname, port: this.addr.port, transport: "tcp" as const };
  }

  #stopAccepting(): void {
    if (!this.#accepting) return;
    this.#accepting = false;
    for (const listener of this.#listeners) {
      try {
        listener.close();
      } catch {
        // already closed
      }
    }
  }

  #maybeFinish(): void {
    if (this.#accepting || this.#acceptLoops > 0 || this.#sessions.size > 0) return;
    if (this.#awaiting.size > 0) return;
    clearTimeout(this.#graceTimer);
    clearInterval(this.#sweeper);
    this.#fdReserve.close();
    this.#resolve();
  }

  shutdown(): Promise<void> {
    if (!this.#shuttingDown) {
      this.#shuttingDown = true;
      this.#stopAccepting();
      this.#headerAbort.abort(); // connections still waiting for a PROXY header are closed
      if (this.#sessions.size > 0) {
        this.#graceTimer = setTimeout(() => {
          for (const session of this.#sessions) this.#cut(session, "shutdown");
        }, this.#options.gracePeriod ?? DEFAULT_GRACE_PERIOD);
      }
      this.#maybeFinish();
    }
    return this.finished;
  }

  ref(): void {
    this.#refed = true;
    if (this.#sweeper !== undefined) Deno.refTimer(this.#sweeper as unknown as number);
    for (const listener of this.#listeners) listener.ref();
    for (const conn of this.#awaiting) conn.ref();
    for (const session of this.#sessions) {
      session.conn.ref();
      if (session.timer !== undefined) Deno.refTimer(session.timer);
    }
  }

  unref(): void {
    this.#refed = false;
    if (this.#sweeper !== undefined) Deno.unrefTimer(this.#sweeper as unknown as number);
    for (const listener of this.#listeners) listener.unref();
    for (const conn of this.#awaiting) conn.unref();
    for (const session of this.#sessions) {
      session.conn.unref();
      if (session.timer !== undefined) Deno.unrefTimer(session.timer);
    }
  }

  [Symbol.asyncDispose](): Promise<void> {
    return this.shutdown();
  }
}
