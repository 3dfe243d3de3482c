/**
 * The accept loop and the one session loop shared by every stream transport (TCP, TLS and Unix
 * sockets): read into a buffer, write it all back, repeat until the peer closes. The accept policy
 * (allow-list, connection cap) and the session limits (idle, bytes, time) come from _policy.ts;
 * TCP shaping (delay, bandwidth) switches a session to a delay line that keeps reading ahead.
 *
 * @module
 */
import { callHook, reportError } from "./_hooks.ts";
import type { StreamPolicy } from "./_policy.ts";
import { TcpShaper } from "./impair.ts";
import { defaultMaxPerSource, SourceSlots } from "./limits.ts";
import { FdReserve, isFdExhausted, type Refusal, ReportThrottle } from "./_fd_reserve.ts";
import { readTurns as turns } from "./_read_turns.ts";
import type { CloseReason, EchoServer, EchoServerOptions, ListenInfo } from "./types.ts";
import { DEFAULT_GRACE_PERIOD } from "./types.ts";
import type { EchoStats } from "./stats.ts";
import { createStats } from "./stats.ts";

/** First read buffer of a session: small, so 1,000 idle sessions hold 1 MiB of buffers. */
const INITIAL_BUFFER = 1024;
/**
 * A session whose reads fill its buffer grows it fourfold, up to this size: 256 KiB reads carry
 * a stream with half the ops of 64 KiB ones (4 streams: 1,723 → 3,031-3,278 MB/s; 1 MiB
 * measured no better).
 */
const MAX_BUFFER = 256 * 1024;
/**
 * The cap while more than TURNS_FROM_SESSIONS sessions are open, so a crowd stays cheap; also
 * the size of a shaped session's reads, each of which is queued in a buffer of its own.
 */
const CROWD_MAX_BUFFER = 64 * 1024;
/** A grown buffer shrinks fourfold after this many reads in a row that used at most 1/16 of it. */
const SHRINK_AFTER = 8;
/** Pause after an accept failure such as EMFILE, so a full descriptor table is not spun on. */
const ACCEPT_BACKOFF_MS = 100;
/** A shaped session reads ahead at most this many bytes beyond what it has written. */
const SHAPER_QUEUE_BYTES = 1024 * 1024;

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
      if (acl && remote.hostname !== undefined && !acl.matches(remote.hostname)) {
        refused = "acl";
      } else if (slots && (slot = slots.acquire(remote.hostname)) === undefined) {
        refused = "source";
      } else if (this.#shared) {
        // The cap counts the sessions of every thread; a session counted here is uncounted when
        // it ends (#session's finally).
        if (Atomics.add(this.#shared, 0, 1) >= maxConnections) {
          Atomics.sub(this.#shared, 0, 1);
          refused = "limit";
        }
      } else if (this.#sessions.size >= maxConnections) {
        refused = "limit";
      }
      if (refused) {
        if (slot !== undefined && refused !== "source") slots!.release(slot);
        this.stats.dropped[refused]++;
        try {
          conn.close();
        } catch {
          // already gone
        }
        if (this.#options.onReject) {
          callHook(this.#options, this.#options.onReject, {
            transport: "tcp",
            remoteAddr: remote,
            reason: refused,
          });
        }
        continue;
      }
      if (this.#options.once) this.#stopAccepting();
      const session = this.#session(
        conn,
        this.#ids ? Atomics.add(this.#ids, 0, 1) + 1 : this.#nextId++,
      );
      if (slot !== undefined) void session.finally(() => slots!.release(slot!));
    }
    this.#acceptLoops--;
    this.#maybeFinish();
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

  async #session(conn: Deno.Conn, id: number): Promise<void> {
    const options = this.#options;
    const stats = this.stats;
    const remoteAddr = conn.remoteAddr as Deno.NetAddr;
    const now = performance.now();
    const session: Session = { conn, reads: 0, seenReads: 0, lastActive: now, started: now };
    this.#sessions.add(session);
    stats.sessionsOpen++;
    stats.sessionsTotal++;
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
      if (this.#policy.shaper) {
        bytes = await this.#shapedEcho(session, id);
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
          session.reads++;
          stats.bytesIn += n;
          if (n !== view.length) view = buffer.subarray(0, n);
          if (options.onData) callHook(options, options.onData, { id, remoteAddr, data: view });
          let written = await conn.write(view);
          while (written < n) written += await conn.write(buffer.subarray(written, n));
          stats.bytesOut += n;
          bytes += n;
          if (bytes >= maxBytes) {
            reason = session.closedBy = "limit";
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
      } else {
        reason = "error";
        stats.errors++;
        reportError(options, "session failed", error, { ...remoteAddr, transport: "tcp" });
      }
    } finally {
      this.#sessions.delete(session);
      stats.sessionsOpen--;
      turns.leave();
      if (this.#shared) Atomics.sub(this.#shared, 0, 1);
      if (reason === "idle") stats.dropped.idle++;
      try {
        conn.close();
      } catch {
        // already closed by the server
      }
      if (options.onClose) {
        const duration = performance.now() - session.started;
        callHook(options, options.onClose, { id, remoteAddr, bytes, duration, reason });
      }
      this.#maybeFinish();
    }
  }

  /**
   * The delay line of a shaped session: one task reads ahead (at most SHAPER_QUEUE_BYTES), the
   * other writes each chunk at the time the shaper gives it, so delay adds latency without
   * cutting throughput, and bandwidth paces the echo.
   */
  async #shapedEcho(session: Session, id: number): Promise<number> {
    const { conn } = session;
    const options = this.#options;
    const stats = this.stats;
    const shaper = new TcpShaper(this.#policy.shaper!);
    const maxBytes = this.#policy.maxSessionBytes ?? Infinity;
    const queue: { data: Uint8Array; at: number }[] = [];
    let queued = 0;
    let ended = false;
    let read = 0;
    let bytes = 0;
    let wakeWriter: (() => void) | undefined;
    let wakeReader: (() => void) | undefined;
    /** Set when a read fails (peer reset, or the server closed the session): the writer stops. */
    let failed = false;
    let readError: unknown;
    let sleeping: { timer: number; wake: () => void } | undefined;
    const reader = async () => {
      try {
        for (;;) {
          while (queued >= SHAPER_QUEUE_BYTES && !ended) {
            await new Promise<void>((r) => (wakeReader = r));
          }
          if (ended) break;
          const buffer = new Uint8Array(Math.min(CROWD_MAX_BUFFER, maxBytes - read));
          const n = await conn.read(buffer);
          if (n === null) break;
          read += n;
          session.reads++;
          stats.bytesIn += n;
          const data = buffer.subarray(0, n);
          if (options.onData) {
            callHook(options, options.onData, {
              id,
              remoteAddr: conn.remoteAddr as Deno.NetAddr,
              data,
            });
          }
          queue.push({ data, at: shaper.sendTime(performance.now(), n) });
          queued += n;
          wakeWriter?.();
          if (read >= maxBytes) break; // the writer closes the session once it is all echoed
        }
      } catch (error) {
        // Not rethrown here: nobody awaits the reader while the writer waits for a chunk's time,
        // and the rejection would be unhandled. Cut the writer's wait short instead.
        failed = true;
        readError = error;
        if (sleeping) {
          clearTimeout(sleeping.timer);
          sleeping.wake();
        }
      } finally {
        ended = true;
        wakeWriter?.();
      }
    };
    const writer = async () => {
      for (;;) {
        if (failed) return;
        const next = queue.shift();
        if (!next) {
          if (ended) return;
          await new Promise<void>((r) => (wakeWriter = r));
          continue;
        }
        // Timers may fire up to a millisecond early: wait until the shaper's time has come.
        for (let wait = next.at - performance.now(); wait > 0 && !failed;) {
          await new Promise<void>((wake) => {
            const timer = setTimeout(wake, Math.ceil(wait)) as unknown as number;
            if (!this.#refed) Deno.unrefTimer(timer);
            session.timer = timer;
            sleeping = { timer, wake };
          });
          sleeping = session.timer = undefined;
          wait = next.at - performance.now();
        }
        if (failed) return;
        let written = 0;
        while (written < next.data.length) {
          written += await conn.write(next.data.subarray(written));
        }
        queued -= next.data.length;
        wakeReader?.();
        stats.bytesOut += next.data.length;
        bytes += next.data.length;
        if (bytes >= maxBytes) {
          session.closedBy = "limit";
          conn.close();
          return;
        }
      }
    };
    const reading = reader();
    try {
      await writer();
    } catch (error) {
      // The writer failed: close the connection and release the reader wherever it waits.
      ended = true;
      try {
        conn.close();
      } catch {
        // already closed
      }
      wakeReader?.();
      await reading;
      throw error;
    }
    await reading;
    if (failed) throw readError;
    return bytes;
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
      if (reason && !session.closedBy) {
        session.closedBy = reason;
        try {
          session.conn.close();
        } catch {
          // already closed
        }
      }
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
    clearTimeout(this.#graceTimer);
    clearInterval(this.#sweeper);
    this.#fdReserve.close();
    this.#resolve();
  }

  shutdown(): Promise<void> {
    if (!this.#shuttingDown) {
      this.#shuttingDown = true;
      this.#stopAccepting();
      if (this.#sessions.size > 0) {
        this.#graceTimer = setTimeout(() => {
          for (const session of this.#sessions) {
            session.closedBy ??= "shutdown";
            try {
              session.conn.close();
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
    if (this.#sweeper !== undefined) Deno.refTimer(this.#sweeper as unknown as number);
    for (const listener of this.#listeners) listener.ref();
    for (const session of this.#sessions) {
      session.conn.ref();
      if (session.timer !== undefined) Deno.refTimer(session.timer);
    }
  }

  unref(): void {
    this.#refed = false;
    if (this.#sweeper !== undefined) Deno.unrefTimer(this.#sweeper as unknown as number);
    for (const listener of this.#listeners) listener.unref();
    for (const session of this.#sessions) {
      session.conn.unref();
      if (session.timer !== undefined) Deno.unrefTimer(session.timer);
    }
  }

  [Symbol.asyncDispose](): Promise<void> {
    return this.shutdown();
  }
}
