/**
 * The session loop of a shaped stream (TCP delay and bandwidth): one task reads ahead into a
 * compact byte queue, the other writes it back when the shaper says, in pieces of at most the
 * shaper's burst, so delay adds latency without cutting throughput and bandwidth holds from the
 * first byte.
 *
 * Memory: reads land directly in fixed-size blocks (each read fills the free end of the last
 * block), so 1-byte writes cost 1 byte each, not a read buffer each. What a session holds —
 * whole blocks plus a fixed overhead per arrival time it remembers — is capped at
 * {@linkcode SHAPED_SESSION_MEMORY}; at the cap it stops reading (back-pressure through the
 * kernel's buffers and TCP's window, as the plain path does).
 *
 * @module
 */
import { callHook } from "./_hooks.ts";
import { TcpShaper, type TcpShaperOptions } from "./_tcp_shaper.ts";
import type { CloseReason, EchoServerOptions } from "./types.ts";
import type { EchoStats, TransportCounters } from "./stats.ts";

/** Size of one block of a shaped session's byte queue (and its largest read). */
const BLOCK_SIZE = 16 * 1024;
/** What one remembered arrival time is counted as, in bytes (object, array slot, slack). */
const MARK_OVERHEAD = 64;
/** Arrivals closer together than this (ms) share one remembered time (the later one). */
const MARK_MERGE_MS = 1;
/** A cut session gets this long to write out what it has read before it is closed anyway. */
export const CUT_FLUSH_MS = 1000;

/**
 * The most memory one shaped session holds for its queue: blocks (counted whole) plus
 * `MARK_OVERHEAD` per remembered arrival time. Reading stops at this bound.
 *
 * @example
 * ```ts
 * import { SHAPED_SESSION_MEMORY } from "./_shaped_session.ts";
 *
 * console.log(`${SHAPED_SESSION_MEMORY / 1024} KiB per shaped session at most`);
 * ```
 */
export const SHAPED_SESSION_MEMORY = 1024 * 1024;

/** The parts of the server's session record that the shaped loop reads and updates. */
export interface ShapedSessionState {
  /** The connection. */
  conn: Deno.Conn;
  /** Reads so far (the idle sweeper watches it). */
  reads: number;
  /** The writer's timer while it waits (so the server can ref/unref it). */
  timer?: number;
  /** Set by the server when it ends the session. */
  closedBy?: CloseReason;
  /** Installed by the loop: the server calls it to cut the session (flush, then close). */
  cut?: () => void;
}

/** What the shaped loop needs from its server. */
export interface ShapedSessionContext {
  /** The session id (for hooks). */
  id: number;
  /** The server options (for hooks). */
  options: EchoServerOptions;
  /** Counters to add to. */
  stats: EchoStats;
  /** The same counters of this session's transport (`stats.transports`), bumped alike. */
  counters: TransportCounters;
  /** The client, as the hooks see it (with a PROXY header: the one the header names). */
  remoteAddr: Deno.NetAddr;
  /** The shaping. */
  shaper: TcpShaperOptions;
  /** Close after echoing this many bytes. */
  maxBytes: number;
  /** Whether the server is referenced (timers are unref'd when not). */
  refed: () => boolean;
}

/** A run of queued bytes that arrived at (about) one time: bytes up to `end` (queue offset). */
interface Mark {
  end: number;
  at: number;
}

/**
 * FIFO of bytes in fixed-size blocks, with the arrival time of each run. Offsets count bytes
 * ever appended (`tail`) and ever consumed (`head`); block i of `#blocks` holds offsets from
 * `#first + i × BLOCK_SIZE`.
 */
class ByteQueue {
  #blocks: Uint8Array[] = [];
  #first = 0;
  #marks: Mark[] = [];
  #markHead = 0;
  head = 0;
  tail = 0;

  /** Memory held: whole blocks plus the overhead of each remembered time. */
  get held(): number {
    return this.#blocks.length * BLOCK_SIZE +
      (this.#marks.length - this.#markHead) * MARK_OVERHEAD;
  }

  /** The free end of the last block to read into (at most `limit` bytes), adding a block if full. */
  space(limit: number): Uint8Array {
    const used = this.tail - this.#first - (this.#blocks.length - 1) * BLOCK_SIZE;
    if (this.#blocks.length === 0 || used === BLOCK_SIZE) {
      if (this.#blocks.length === 0) this.#first = this.tail;
      this.#blocks.push(new Uint8Array(BLOCK_SIZE));
      return this.#blocks.at(-1)!.subarray(0, Math.min(BLOCK_SIZE, limit));
    }
    return this.#blocks.at(-1)!.subarray(used, used + Math.min(BLOCK_SIZE - used, limit));
  }

  /** Records that `n` bytes were read into the last `space()`, at time `at`. */
  commit(n: number, at: number): void {
    this.tail += n;
    const last = this.#marks.length > this.#markHead ? this.#marks.at(-1)! : undefined;
    if (last && at - last.at < MARK_MERGE_MS) {
      // The later time for the whole run: no byte goes before its own time plus the delay.
      last.end = this.tail;
      last.at = at;
    } else {
      this.#marks.push({ end: this.tail, at });
    }
  }

  /** The arrival time of the first queued byte, or undefined when empty. */
  get headAt(): number | undefined {
    return this.#markHead < this.#marks.length ? this.#marks[this.#markHead].at : undefined;
  }

  /** The next contiguous piece to write: within one block and one arrival run, at most `max`. */
  peek(max: number): Uint8Array {
    const index = Math.floor((this.head - this.#first) / BLOCK_SIZE);
    const offset = this.head - this.#first - index * BLOCK_SIZE;
    const length = Math.min(max, BLOCK_SIZE - offset, this.#marks[this.#markHead].end - this.head);
    return this.#blocks[index].subarray(offset, offset + length);
  }

  /** Drops `n` written bytes from the front, freeing emptied blocks and runs. */
  consume(n: number): void {
    this.head += n;
    while (this.#markHead < this.#marks.length && this.#marks[this.#markHead].end <= this.head) {
      this.#markHead++;
    }
    if (this.#markHead === this.#marks.length) {
      this.#marks = [];
      this.#markHead = 0;
    } else if (this.#markHead > 64 && this.#markHead * 2 > this.#marks.length) {
      this.#marks = this.#marks.slice(this.#markHead);
      this.#markHead = 0;
    }
    // Free blocks wholly consumed, but never the last one: a pending read may be filling it.
    while (this.#blocks.length > 1 && this.head - this.#first >= BLOCK_SIZE) {
      this.#blocks.shift();
      this.#first += BLOCK_SIZE;
    }
  }
}

/**
 * Echoes one shaped session until the peer closes, a limit is reached or the server cuts it.
 *
 * @param session The server's record of the session.
 * @param context Id, options, counters, shaping and byte cap.
 * @returns The bytes echoed.
 * @throws The read or write error that ended the session, if one did.
 *
 * @example
 * ```ts ignore
 * const bytes = await shapedEcho(session, { id, options, stats, counters, remoteAddr, shaper, maxBytes, refed });
 * ```
 */
export async function shapedEcho(
  session: ShapedSessionState,
  context: ShapedSessionContext,
): Promise<number> {
  const { conn } = session;
  const { id, options, stats, counters, remoteAddr, maxBytes } = context;
  const shaper = new TcpShaper(context.shaper);
  const queue = new ByteQueue();
  let ended = false;
  let cutting = false;
  let read = 0;
  let bytes = 0;
  let reading = false;
  let wakeWriter: (() => void) | undefined;
  let wakeReader: (() => void) | undefined;
  /** Set when a read fails (peer reset, or the server closed the session): the writer stops. */
  let failed = false;
  let readError: unknown;
  let sleeping: { timer: number; wake: () => void } | undefined;
  let flushTimer: number | undefined;
  let closed = false;
  const close = () => {
    closed = true;
    try {
      conn.close();
    } catch {
      // already closed
    }
  };
  const interruptSleep = () => {
    if (sleeping) {
      clearTimeout(sleeping.timer);
      sleeping.wake();
    }
  };
  session.cut = () => {
    // Write out what was read, unpaced, then close: a read still pending is cancelled, so what
    // the peer sent beyond it stays unread and the kernel answers the close with a reset.
    cutting = true;
    interruptSleep();
    wakeWriter?.();
    wakeReader?.();
    flushTimer = setTimeout(close, CUT_FLUSH_MS) as unknown as number;
    if (!context.refed()) Deno.unrefTimer(flushTimer);
  };
  const reader = async () => {
    try {
      for (;;) {
        while (queue.held >= SHAPED_SESSION_MEMORY && !ended && !cutting) {
          await new Promise<void>((r) => (wakeReader = r));
        }
        if (ended || cutting) break;
        const space = queue.space(maxBytes - read);
        reading = true;
        const n = await conn.read(space);
        reading = false;
        // A read that completes after the close (the cut's flush timer, or the idle sweeper):
        // nothing more can be written back, so it is not counted as read.
        if (n === null || closed || (session.closedBy && !cutting)) break;
        queue.commit(n, performance.now());
        read += n;
        session.reads++;
        stats.bytesIn += n;
        counters.bytesIn += n;
        if (options.onData) {
          callHook(options, options.onData, { id, remoteAddr, data: space.subarray(0, n) });
        }
        wakeWriter?.();
        if (read >= maxBytes) break; // the writer closes the session once it is all echoed
      }
    } catch (error) {
      // Not rethrown here: nobody awaits the reader while the writer waits for a chunk's time,
      // and the rejection would be unhandled. Cut the writer's wait short instead.
      reading = false;
      if (!cutting) {
        failed = true;
        readError = error;
      }
      interruptSleep();
    } finally {
      ended = true;
      wakeWriter?.();
    }
  };
  const sleepUntil = async (at: number) => {
    // Timers may fire up to a millisecond early: wait until the time has come.
    for (let wait = at - performance.now(); wait > 0 && !failed && !cutting;) {
      await new Promise<void>((wake) => {
        const timer = setTimeout(wake, Math.ceil(wait)) as unknown as number;
        if (!context.refed()) Deno.unrefTimer(timer);
        session.timer = timer;
        sleeping = { timer, wake };
      });
      sleeping = session.timer = undefined;
      wait = at - performance.now();
    }
  };
  const writer = async () => {
    for (;;) {
      if (failed) return;
      const receivedAt = queue.headAt;
      if (receivedAt === undefined) {
        // Cut with everything written: close now; a pending read is cancelled (see cut).
        if (ended || cutting) return;
        await new Promise<void>((r) => (wakeWriter = r));
        continue;
      }
      const piece = queue.peek(cutting ? BLOCK_SIZE : shaper.burst);
      if (!cutting) {
        await sleepUntil(shaper.sendTime(receivedAt, piece.length));
        if (failed) return;
      }
      let written = 0;
      while (written < piece.length) written += await conn.write(piece.subarray(written));
      queue.consume(piece.length);
      wakeReader?.();
      stats.bytesOut += piece.length;
      counters.bytesOut += piece.length;
      bytes += piece.length;
      if (bytes >= maxBytes) {
        session.closedBy ??= "limit";
        return;
      }
    }
  };
  const readerDone = reader();
  try {
    await writer();
  } catch (error) {
    // The writer failed: close the connection and release the reader wherever it waits.
    ended = true;
    close();
    wakeReader?.();
    await readerDone;
    clearTimeout(flushTimer);
    throw error;
  }
  if (reading || !ended) {
    // The reader waits on a read (or for room): closing cancels it.
    ended = true;
    close();
    wakeReader?.();
  }
  await readerDone;
  clearTimeout(flushTimer);
  if (failed) throw readError;
  return bytes;
}
