/**
 * The TCP lane of {@linkcode runProbe}: one connection per lane, a write loop that batches the
 * requests it may send and a read loop that parses replies by length, checking every echoed byte
 * against a fixed pattern indexed by stream offset.
 *
 * @module
 */
import {
  describeNetworkError,
  EchoConnectionError,
  EchoMismatchError,
  EchoTimeoutError,
  formatAddress,
} from "./errors.ts";
import { Buffer } from "node:buffer";
import { startTlsClient } from "./_tls_client.ts";
import { proxyHeaderFor } from "./proxy_header.ts";
import type { ProbeLane, ProbeRun } from "./_probe_run.ts";
import { ConnectionLane, connectLanes, isPermissionError } from "./_probe_connection.ts";

/** The payload pattern of TCP requests repeats every PERIOD bytes (a prime, so it never aligns). */
export const PATTERN_PERIOD = 251;
const PERIOD = PATTERN_PERIOD;
/** Segments at least this long are compared natively (Buffer.compare); shorter ones in JS. */
const NATIVE_COMPARE_MIN = 256;
/** The most bytes one TCP write or read covers. */
const MAX_IO = 256 * 1024;

export async function openTcpLanes(run: ProbeRun): Promise<ProbeLane[]> {
  const pattern = makePattern();
  const lanes = Array.from({ length: run.s.connections }, (_, i) => new TcpLane(run, i, pattern));
  return await connectLanes(run, lanes);
}

/**
 * The request bytes: byte `o` of a connection's stream is `pattern[o % PERIOD]`, and the buffer
 * is long enough that any write or read of up to `span` bytes (TCP: MAX_IO; WebSocket: one
 * message) is one subarray of it.
 */
export function makePattern(span: number = MAX_IO): Uint8Array {
  const pattern = new Uint8Array(PERIOD + span);
  for (let i = 0; i < pattern.length; i++) pattern[i] = ((i % PERIOD) * 151 + 89) & 0xff;
  return pattern;
}

/**
 * Whether `data[start..end)` differs from the pattern at stream offset `offset`: natively compared
 * (memcmp, some 40 times faster than a JS loop) from NATIVE_COMPARE_MIN bytes, in JS below.
 */
export function differsFromPattern(
  data: Uint8Array,
  start: number,
  end: number,
  pattern: Uint8Array,
  offset: number,
): boolean {
  let p = offset % PERIOD;
  if (end - start >= NATIVE_COMPARE_MIN) {
    return Buffer.compare(data.subarray(start, end), pattern.subarray(p, p + end - start)) !== 0;
  }
  for (let k = start; k < end; k++, p++) if (data[k] !== pattern[p]) return true;
  return false;
}

export class TcpLane extends ConnectionLane {
  readonly #pattern: Uint8Array;
  readonly #buffer: Uint8Array;
  readonly #size: number;
  #conn: Deno.Conn | undefined;
  /** Bumped on every (re)connect and failure; loops of an older generation stop. */
  #gen = 0;
  #writing = false;
  #sendOffset = 0;
  #recvOffset = 0;
  /** Bytes of the oldest request received so far, and whether any of them differed. */
  #partial = 0;
  #bad = false;

  constructor(run: ProbeRun, index: number, pattern: Uint8Array) {
    const kind = run.s.unix !== undefined ? "unix" : run.s.tls !== undefined ? "tls" : "tcp";
    super(run, index, `${kind} ${formatAddress(run.address)}`);
    this.#pattern = pattern;
    this.#size = run.s.size;
    const window = run.s.size * Math.min(run.s.pipeline, 64);
    this.#buffer = new Uint8Array(Math.min(MAX_IO, Math.max(16 * 1024, window)));
  }

  ready(): boolean {
    return this.#conn !== undefined;
  }

  /** Opens the connection; resolves false (after counting the error) when it cannot. */
  async connect(reconnect: boolean): Promise<boolean> {
    const run = this.run;
    const gen = ++this.#gen;
    const timeout = run.s.timeout;
    const where = this.where;
    const timer = new AbortController();
    const timeoutId = setTimeout(() => timer.abort(), timeout);
    let conn: Deno.Conn;
    try {
      conn = await this.#dial(AbortSignal.any([timer.signal, run.closing.signal]));
    } catch (error) {
      if (this.closed || run.finished) return false;
      if (isPermissionError(error)) {
        this.lastError = error;
        if (reconnect) run.fail(error);
        return false;
      }
      const e = timer.signal.aborted
        ? new EchoTimeoutError(`no connection to ${where} within ${timeout}ms`, {
          address: run.address,
          cause: error,
        })
        : new EchoConnectionError(`cannot connect to ${where}: ${describeNetworkError(error)}`, {
          address: run.address,
          cause: error,
        });
      this.lastError = e;
      if (reconnect) {
        run.error(e);
        this.scheduleReconnect();
      }
      return false;
    } finally {
      clearTimeout(timeoutId);
    }
    if (this.closed || run.finished || gen !== this.#gen) {
      conn.close();
      return false;
    }
    this.#conn = conn;
    this.#sendOffset = 0;
    this.#recvOffset = 0;
    this.#partial = 0;
    this.#bad = false;
    this.#writing = false;
    void this.#readLoop(conn, gen);
    if (reconnect) run.capacity(this, performance.now());
    return true;
  }

  /**
   * Connects over TCP (TCP_NODELAY on), TLS (handshake done) or a Unix socket, with the PROXY
   * header first when asked (before TLS, as a balancer sends it; never measured).
   */
  async #dial(signal: AbortSignal): Promise<Deno.Conn> {
    const s = this.run.s;
    const header = async (conn: Deno.Conn) => {
      if (s.proxyHeader === undefined) return;
      const bytes = proxyHeaderFor(conn, s.proxyHeader);
      try {
        for (let n = 0; n < bytes.length;) n += await conn.write(bytes.subarray(n));
      } catch (error) {
        conn.close();
        throw error;
      }
    };
    if (s.unix !== undefined) {
      const unix = await Deno.connect({ transport: "unix", path: s.unix });
      await header(unix);
      return unix;
    }
    const tcp = await Deno.connect({ hostname: s.hostname, port: s.port, signal });
    try {
      tcp.setNoDelay(true);
    } catch {
      // not fatal: latency may suffer from Nagle's algorithm
    }
    await header(tcp);
    if (s.tls === undefined) return tcp;
    return await startTlsClient(tcp, {
      hostname: s.tls.servername ?? s.hostname,
      caCerts: s.tls.caCerts,
    }, signal);
  }

  pump(): void {
    if (this.#writing || this.#conn === undefined || this.run.finished) return;
    this.#writing = true;
    void this.#writeLoop(this.#conn, this.#gen);
  }

  async #writeLoop(conn: Deno.Conn, gen: number): Promise<void> {
    const run = this.run;
    const size = this.#size;
    const cap = run.s.pipeline;
    const inflight = this.inflight;
    const pattern = this.#pattern;
    try {
      for (;;) {
        let count = 0;
        if (run.scheduled) {
          const queue = this.queue;
          while (queue.length > 0 && inflight.length < cap) {
            const at = queue.shift();
            inflight.push(at);
            if (at >= run.measureStart) run.sent++;
            count++;
          }
          run.queued -= count;
        } else {
          const now = performance.now();
          while (inflight.length < cap && run.admit(now)) {
            inflight.push(now);
            if (now >= run.measureStart) run.sent++;
            count++;
          }
        }
        if (count === 0) break;
        run.inflight += count;
        let left = count * size;
        while (left > 0) {
          const offset = this.#sendOffset % PERIOD;
          const n = await conn.write(pattern.subarray(offset, offset + Math.min(left, MAX_IO)));
          if (gen !== this.#gen) return;
          this.#sendOffset += n;
          left -= n;
        }
      }
    } catch (error) {
      if (gen === this.#gen) this.fail(error);
      return;
    }
    if (gen === this.#gen) this.#writing = false;
  }

  async #readLoop(conn: Deno.Conn, gen: number): Promise<void> {
    const buffer = this.#buffer;
    try {
      for (;;) {
        const n = await conn.read(buffer);
        if (gen !== this.#gen) return;
        if (n === null) {
          this.fail(
            new EchoConnectionError(
              `${this.where} closed the connection`,
              { address: this.run.address },
            ),
          );
          return;
        }
        this.#onData(n);
        if (gen !== this.#gen || this.run.finished) return;
      }
    } catch (error) {
      if (gen === this.#gen) this.fail(error);
    }
  }

  #onData(n: number): void {
    const run = this.run;
    const buffer = this.#buffer;
    const pattern = this.#pattern;
    const size = this.#size;
    const inflight = this.inflight;
    let completed = 0;
    let now = 0;
    for (let i = 0; i < n;) {
      if (inflight.length === 0) {
        run.mismatches++;
        this.fail(
          new EchoMismatchError(
            `${this.where} sent back more bytes than were sent`,
            { address: run.address, offset: this.#recvOffset },
          ),
        );
        return;
      }
      const take = Math.min(size - this.#partial, n - i);
      if (!this.#bad && differsFromPattern(buffer, i, i + take, pattern, this.#recvOffset)) {
        this.#bad = true;
      }
      i += take;
      this.#recvOffset += take;
      this.#partial += take;
      if (this.#partial === size) {
        if (now === 0) now = performance.now();
        const sentAt = inflight.shift();
        const seq = this.headSeq++;
        const warm = sentAt < run.measureStart;
        run.inflight--;
        completed++;
        if (this.#bad) {
          run.completedAll++;
          run.lastActivity = now;
          if (!warm) run.mismatches++;
          run.reply(this.index, seq, size, now - sentAt, "mismatch", warm);
        } else {
          run.complete(this, sentAt, now);
          if (run.options.onReply) run.reply(this.index, seq, size, now - sentAt, "reply", warm);
        }
        this.#partial = 0;
        this.#bad = false;
        if (run.finished) return;
      }
    }
    if (completed > 0) {
      if (run.noMore) run.settle();
      if (!run.finished) run.capacity(this, now);
    }
  }

  protected fail(error: unknown): void {
    this.#gen++;
    this.#writing = false;
    const conn = this.#conn;
    this.#conn = undefined;
    try {
      conn?.close();
    } catch {
      // already closed
    }
    this.#partial = 0;
    this.#bad = false;
    this.failConnection(error, describeNetworkError);
  }

  close(): void {
    this.stopReconnecting();
    this.#gen++;
    const conn = this.#conn;
    this.#conn = undefined;
    try {
      conn?.close();
    } catch {
      // already closed
    }
  }
}
