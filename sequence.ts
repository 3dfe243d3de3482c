/**
 * The UDP probe payload and the accounting of probe replies (loss, lateness, duplication,
 * reordering, jitter), for the ping and bench modes of the client.
 *
 * A probe is a datagram whose first {@linkcode PROBE_HEADER_SIZE} bytes identify it (run id,
 * sequence number, send time); larger probes are padded with a pattern derived from
 * (run id, seq), so the sender can check an echoed reply byte for byte. Any RFC 862 echo server
 * returns it unchanged. {@linkcode SequenceTracker} turns sends and replies into counters in
 * constant memory.
 *
 * @example Encode, "echo", decode and account for one probe
 * ```ts
 * import { decodeProbe, encodeProbe, SequenceTracker, verifyProbe } from "./sequence.ts";
 *
 * const tracker = new SequenceTracker({ timeout: 1000 });
 * const buf = new Uint8Array(64);
 * encodeProbe(buf, { runId: 0x1234abcd, seq: 0, sentAt: 10 });
 * tracker.sent(0, 10);
 * const echoed = buf.slice(); // what an echo server sends back
 * const probe = decodeProbe(echoed);
 * if (probe && probe.runId === 0x1234abcd && verifyProbe(echoed, probe)) {
 *   console.log(tracker.received(probe.seq, 12.5)); // "reply"
 * }
 * console.log(tracker.stats.rtt); // 2.5
 * ```
 *
 * @module
 */

/**
 * The size of the probe header in bytes; the smallest valid probe.
 *
 * Layout (big-endian, network order):
 *
 * | offset | size | field                                                          |
 * | -----: | ---: | -------------------------------------------------------------- |
 * |      0 |    1 | magic `0xEC`                                                   |
 * |      1 |    1 | format version, `1`                                            |
 * |      2 |    2 | total probe size in bytes (u16), so truncation is detected     |
 * |      4 |    4 | run id (u32)                                                   |
 * |      8 |    8 | sequence number (u64 as high u32, low u32; at most 2^53 - 1)   |
 * |     16 |    8 | send time (float64, ms on the sender's `performance.now()`)    |
 * |     24 |    … | padding: a pseudo-random byte stream seeded from (run id, seq) |
 *
 * @example
 * ```ts
 * import { PROBE_HEADER_SIZE } from "./sequence.ts";
 *
 * const buf = new Uint8Array(PROBE_HEADER_SIZE); // the smallest probe
 * console.log(buf.length); // 24
 * ```
 */
export const PROBE_HEADER_SIZE = 24;

/** The largest probe: the size field is 16 bits (a UDP payload is at most 65,507 bytes anyway). */
const PROBE_MAX_SIZE = 0xffff;
const MAGIC = 0xec;
const VERSION = 1;
const TWO_32 = 0x1_0000_0000;
/** The largest high word of a sequence number that is still a safe integer (2^53 - 1). */
const MAX_SEQ_HIGH = 0x1f_ffff;

/** The identity of one probe, as written into (and read back from) its header. */
export interface Probe {
  /** The run id: an integer in 0..2^32 - 1, chosen at random once per run. */
  runId: number;
  /** The sequence number: a safe integer >= 0. */
  seq: number;
  /** The send time in milliseconds (finite; `performance.now()` timeline). */
  sentAt: number;
}

/** Scratch space for float64 <-> bytes; module-level so the hot paths allocate nothing. */
const scratch = new DataView(new ArrayBuffer(8));

function writeU32(buf: Uint8Array, offset: number, value: number): void {
  buf[offset] = value >>> 24;
  buf[offset + 1] = value >>> 16;
  buf[offset + 2] = value >>> 8;
  buf[offset + 3] = value;
}

function readU32(buf: Uint8Array, offset: number): number {
  return ((buf[offset] << 24) | (buf[offset + 1] << 16) | (buf[offset + 2] << 8) |
    buf[offset + 3]) >>> 0;
}

/** A 32-bit seed for the padding stream, mixing run id and both halves of seq (murmur3 fmix). */
function paddingSeed(runId: number, seqHigh: number, seqLow: number): number {
  let h = Math.imul(runId ^ 0x9e3779b9, 0x85ebca6b);
  h = Math.imul(h ^ (h >>> 13) ^ seqLow, 0xc2b2ae35);
  h = Math.imul(h ^ (h >>> 16) ^ seqHigh, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  return (h ^ (h >>> 16)) >>> 0;
}

/** One step of mulberry32: the next 32-bit word of the padding stream after `state`. */
function mulberry(state: number): number {
  let t = Math.imul(state ^ (state >>> 15), 1 | state);
  t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
  return (t ^ (t >>> 14)) >>> 0;
}

/** Fill bytes 24..end with the mulberry32 stream seeded from (runId, seq), big-endian words. */
function writePadding(buf: Uint8Array, seed: number): void {
  let state = seed;
  const end = buf.length;
  const whole = end - ((end - PROBE_HEADER_SIZE) & 3);
  let i = PROBE_HEADER_SIZE;
  for (; i < whole; i += 4) {
    state = (state + 0x6d2b79f5) | 0;
    const word = mulberry(state);
    buf[i] = word >>> 24;
    buf[i + 1] = word >>> 16;
    buf[i + 2] = word >>> 8;
    buf[i + 3] = word;
  }
  if (i < end) {
    state = (state + 0x6d2b79f5) | 0;
    const word = mulberry(state);
    for (let k = 0; i < end; i++, k++) buf[i] = word >>> (24 - 8 * k);
  }
}

/** Whether bytes 24..end hold exactly the stream {@linkcode writePadding} writes. */
function checkPadding(buf: Uint8Array, seed: number): boolean {
  let state = seed;
  const end = buf.length;
  const whole = end - ((end - PROBE_HEADER_SIZE) & 3);
  let i = PROBE_HEADER_SIZE;
  for (; i < whole; i += 4) {
    state = (state + 0x6d2b79f5) | 0;
    if (readU32(buf, i) !== mulberry(state)) return false;
  }
  if (i < end) {
    state = (state + 0x6d2b79f5) | 0;
    const word = mulberry(state);
    for (let k = 0; i < end; i++, k++) {
      if (buf[i] !== ((word >>> (24 - 8 * k)) & 0xff)) return false;
    }
  }
  return true;
}

/**
 * Write a probe into `buf`: the 24-byte header, then the deterministic padding up to
 * `buf.length`, which is the probe size. Allocates nothing.
 *
 * @param buf The datagram to fill; its length (24..65535) is the probe size.
 * @param probe The run id, sequence number and send time to write.
 * @throws {RangeError} When `buf` is shorter than 24 or longer than 65535 bytes, or a probe field
 * is out of range (runId not a u32, seq not a safe integer >= 0, sentAt not finite).
 *
 * @example
 * ```ts
 * import { encodeProbe } from "./sequence.ts";
 *
 * const buf = new Uint8Array(100);
 * encodeProbe(buf, { runId: 7, seq: 1, sentAt: performance.now() });
 * console.log(buf[0].toString(16)); // "ec"
 * ```
 */
export function encodeProbe(buf: Uint8Array, probe: Probe): void {
  if (buf.length < PROBE_HEADER_SIZE || buf.length > PROBE_MAX_SIZE) {
    throw new RangeError(
      `Probe buffer must be ${PROBE_HEADER_SIZE}..${PROBE_MAX_SIZE} bytes, got ${buf.length}`,
    );
  }
  const { runId, seq, sentAt } = probe;
  if (!Number.isInteger(runId) || runId < 0 || runId >= TWO_32) {
    throw new RangeError(`Probe runId must be an integer in 0..2^32-1, got ${runId}`);
  }
  if (!Number.isSafeInteger(seq) || seq < 0) {
    throw new RangeError(`Probe seq must be a safe integer >= 0, got ${seq}`);
  }
  if (typeof sentAt !== "number" || !Number.isFinite(sentAt)) {
    throw new RangeError(`Probe sentAt must be a finite number, got ${sentAt}`);
  }
  const seqHigh = Math.floor(seq / TWO_32);
  const seqLow = seq >>> 0;
  const size = buf.length;
  buf[0] = MAGIC;
  buf[1] = VERSION;
  buf[2] = size >>> 8;
  buf[3] = size;
  writeU32(buf, 4, runId);
  writeU32(buf, 8, seqHigh);
  writeU32(buf, 12, seqLow);
  scratch.setFloat64(0, sentAt);
  for (let i = 0; i < 8; i++) buf[16 + i] = scratch.getUint8(i);
  writePadding(buf, paddingSeed(runId, seqHigh, seqLow));
}

/**
 * Read the header of a probe. Returns `undefined` when `buf` is shorter than 24 bytes or is not a
 * probe of this format (wrong magic or version, sequence number beyond 2^53 - 1, send time not
 * finite). It does not check the size field or the padding: use {@linkcode verifyProbe} for that.
 *
 * @param buf A received datagram.
 * @param into An object to fill and return instead of allocating one (for the receive loop).
 *
 * @example Reuse one object in a receive loop
 * ```ts
 * import { decodeProbe, encodeProbe, type Probe } from "./sequence.ts";
 *
 * const buf = new Uint8Array(32);
 * encodeProbe(buf, { runId: 9, seq: 41, sentAt: 1.5 });
 * const probe: Probe = { runId: 0, seq: 0, sentAt: 0 };
 * console.log(decodeProbe(buf, probe) === probe, probe.seq); // true 41
 * console.log(decodeProbe(new Uint8Array(10))); // undefined
 * ```
 */
export function decodeProbe(buf: Uint8Array, into?: Probe): Probe | undefined {
  if (buf.length < PROBE_HEADER_SIZE || buf[0] !== MAGIC || buf[1] !== VERSION) return undefined;
  const seqHigh = readU32(buf, 8);
  if (seqHigh > MAX_SEQ_HIGH) return undefined;
  for (let i = 0; i < 8; i++) scratch.setUint8(i, buf[16 + i]);
  const sentAt = scratch.getFloat64(0);
  if (!Number.isFinite(sentAt)) return undefined;
  const runId = readU32(buf, 4);
  const seq = seqHigh * TWO_32 + readU32(buf, 12);
  if (into === undefined) return { runId, seq, sentAt };
  into.runId = runId;
  into.seq = seq;
  into.sentAt = sentAt;
  return into;
}

/**
 * Check that `buf` is exactly the probe `probe` would encode to at this length: header fields
 * equal `probe`, the size field equals `buf.length` (a truncated echo fails), and every padding
 * byte is intact. Allocates nothing.
 *
 * @param buf A received datagram.
 * @param probe The probe it should be (e.g. from {@linkcode decodeProbe}, or the one sent).
 *
 * @example A flipped padding byte is caught
 * ```ts
 * import { encodeProbe, verifyProbe } from "./sequence.ts";
 *
 * const probe = { runId: 1, seq: 2, sentAt: 3 };
 * const buf = new Uint8Array(48);
 * encodeProbe(buf, probe);
 * console.log(verifyProbe(buf, probe)); // true
 * buf[40] ^= 1;
 * console.log(verifyProbe(buf, probe)); // false
 * ```
 */
export function verifyProbe(buf: Uint8Array, probe: Probe): boolean {
  const size = buf.length;
  if (size < PROBE_HEADER_SIZE || size > PROBE_MAX_SIZE) return false;
  if (buf[0] !== MAGIC || buf[1] !== VERSION) return false;
  if (((buf[2] << 8) | buf[3]) !== size) return false;
  const { runId, seq, sentAt } = probe;
  if (!Number.isSafeInteger(seq) || seq < 0) return false;
  const seqHigh = Math.floor(seq / TWO_32);
  const seqLow = seq >>> 0;
  if (readU32(buf, 4) !== runId || readU32(buf, 8) !== seqHigh || readU32(buf, 12) !== seqLow) {
    return false;
  }
  for (let i = 0; i < 8; i++) scratch.setUint8(i, buf[16 + i]);
  if (scratch.getFloat64(0) !== sentAt) return false;
  return checkPadding(buf, paddingSeed(runId, seqHigh, seqLow));
}

/**
 * How {@linkcode SequenceTracker.prototype.received} classified a reply:
 * - `"reply"`: the first reply to an outstanding probe, within the timeout;
 * - `"late"`: the first reply to a probe, at or after its timeout (whether or not it had
 *   already been expired as lost);
 * - `"duplicate"`: a second or later reply to one sequence number;
 * - `"unknown"`: a sequence number never sent, or older than the tracking window.
 */
export type ReplyKind = "reply" | "late" | "duplicate" | "unknown";

/** Options for {@linkcode SequenceTracker}. */
export interface SequenceTrackerOptions {
  /** How long to wait for a reply, in ms (finite, > 0). A reply at or after it is late. */
  timeout: number;
  /**
   * How many of the most recent sequence numbers are remembered (integer, 1..2^24; default
   * 65,536). Memory is fixed at about 17 bytes per slot. Replies to older sequence numbers are
   * `"unknown"`, and a probe pushed out of the window while still outstanding is counted lost.
   */
  window?: number;
}

/** The counters of a {@linkcode SequenceTracker}; `sent == received + lost + late + outstanding`. */
export interface SequenceStats {
  /** Probes sent. */
  sent: number;
  /** Probes answered within the timeout (first replies only). */
  received: number;
  /** Probes with no reply within the timeout, and no reply since. */
  lost: number;
  /** Probes whose first reply came at or after the timeout (not counted as lost). */
  late: number;
  /** Probes sent whose fate is not known yet: no reply, timeout not yet expired. */
  outstanding: number;
  /** Second and later replies to one sequence number. */
  duplicates: number;
  /**
   * First replies (in time or late) whose sequence number is below the highest sequence number
   * already seen in a reply (RFC 4737 Type-P-Reordered). Duplicates are not considered.
   */
  reordered: number;
  /** Replies to sequence numbers never sent or older than the window. */
  unknown: number;
  /**
   * RFC 3550 interarrival-jitter estimator over successive in-time replies, in ms:
   * J += (|D| - J) / 16, where D is this reply's RTT minus the previous reply's RTT.
   */
  jitter: number;
  /** RTT of the last in-time reply, in ms; `NaN` before the first. */
  rtt: number;
}

const EMPTY = 0;
const OUTSTANDING = 1;
const REPLIED = 2;
const LOST = 3;
const LATE = 4;
const DEFAULT_WINDOW = 65_536;
const MAX_WINDOW = 1 << 24;

/**
 * Accounting of probes sent and replies received, in constant memory: a ring of the last
 * `window` sequence numbers remembers each probe's send time and fate.
 *
 * The probe engine calls `sent()` for each probe (sequence numbers strictly increasing, send
 * times non-decreasing), `received()` for each reply, and `expire()` from its timer. The
 * invariant `sent == received + lost + late + outstanding` holds after every call.
 *
 * @example A probe lost, then answered late
 * ```ts
 * import { SequenceTracker } from "./sequence.ts";
 *
 * const t = new SequenceTracker({ timeout: 100 });
 * t.sent(0, 0);
 * t.sent(1, 10);
 * console.log(t.received(1, 15)); // "reply"
 * t.expire(100); // probe 0 is now lost
 * console.log(t.stats.lost); // 1
 * console.log(t.received(0, 130)); // "late" (and reordered: 0 < 1)
 * const s = t.stats;
 * console.log(s.lost, s.late, s.reordered); // 0 1 1
 * ```
 */
export class SequenceTracker {
  /** The reply timeout, in ms. */
  readonly timeout: number;
  /** How many recent sequence numbers are remembered. */
  readonly window: number;

  #slotSeq: Float64Array;
  #slotSentAt: Float64Array;
  #slotState: Uint8Array;
  /** Highest sequence number sent, or -1. */
  #highestSent = -1;
  #lastSentAt = -Infinity;
  /** Every sequence number below this has left the window. */
  #low = 0;
  /** Every outstanding sequence number is >= this (the expiry scan resumes here). */
  #cursor = 0;
  /** Highest sequence number seen in a first reply, or -1 (RFC 4737's NextExp - 1). */
  #highestReplied = -1;
  #prevRtt = NaN;

  #sent = 0;
  #received = 0;
  #lost = 0;
  #late = 0;
  #outstanding = 0;
  #duplicates = 0;
  #reordered = 0;
  #unknown = 0;
  #jitter = 0;

  /**
   * Create a tracker.
   *
   * @param options The reply timeout and the window size.
   * @throws {RangeError} When `timeout` is not a finite number > 0 or `window` not an integer in
   * 1..2^24.
   *
   * @example
   * ```ts
   * import { SequenceTracker } from "./sequence.ts";
   *
   * const t = new SequenceTracker({ timeout: 1000, window: 1024 });
   * console.log(t.window); // 1024
   * ```
   */
  constructor(options: SequenceTrackerOptions) {
    const timeout = options?.timeout;
    const window = options?.window ?? DEFAULT_WINDOW;
    if (typeof timeout !== "number" || !(timeout > 0) || !Number.isFinite(timeout)) {
      throw new RangeError(`SequenceTracker timeout must be a finite number > 0, got ${timeout}`);
    }
    if (!Number.isInteger(window) || window < 1 || window > MAX_WINDOW) {
      throw new RangeError(
        `SequenceTracker window must be an integer in 1..${MAX_WINDOW}, got ${window}`,
      );
    }
    this.timeout = timeout;
    this.window = window;
    this.#slotSeq = new Float64Array(window).fill(-1);
    this.#slotSentAt = new Float64Array(window);
    this.#slotState = new Uint8Array(window);
  }

  /**
   * Note that probe `seq` was sent at time `at`. Allocates nothing.
   *
   * @param seq The probe's sequence number: a safe integer >= 0, greater than every one sent
   * before (gaps are allowed).
   * @param at The send time in ms, not earlier than the previous send time.
   * @throws {RangeError} When `seq` does not increase or `at` is not finite or goes backwards.
   *
   * @example
   * ```ts
   * import { SequenceTracker } from "./sequence.ts";
   *
   * const t = new SequenceTracker({ timeout: 1000 });
   * t.sent(0, performance.now());
   * console.log(t.stats.outstanding); // 1
   * ```
   */
  sent(seq: number, at: number): void {
    if (!Number.isSafeInteger(seq) || seq <= this.#highestSent) {
      throw new RangeError(
        `SequenceTracker.sent: seq must be a safe integer > ${this.#highestSent}, got ${seq}`,
      );
    }
    if (typeof at !== "number" || !Number.isFinite(at) || at < this.#lastSentAt) {
      throw new RangeError(
        `SequenceTracker.sent: time must be finite and >= ${this.#lastSentAt}, got ${at}`,
      );
    }
    this.#evictBelow(seq - this.window + 1);
    const i = seq % this.window;
    this.#slotSeq[i] = seq;
    this.#slotSentAt[i] = at;
    this.#slotState[i] = OUTSTANDING;
    this.#highestSent = seq;
    this.#lastSentAt = at;
    this.#sent++;
    this.#outstanding++;
  }

  /**
   * Classify a reply to probe `seq` received at time `at`, and count it. Allocates nothing.
   *
   * @param seq The sequence number read from the reply.
   * @param at The receive time in ms (same clock as `sent`).
   * @returns `"reply"`, `"late"`, `"duplicate"` or `"unknown"`; see {@linkcode ReplyKind}.
   * @throws {RangeError} When `at` is not finite, or earlier than the probe's send time.
   *
   * @example
   * ```ts
   * import { SequenceTracker } from "./sequence.ts";
   *
   * const t = new SequenceTracker({ timeout: 1000 });
   * t.sent(0, 0);
   * console.log(t.received(0, 5), t.received(0, 6), t.received(9, 7));
   * // "reply" "duplicate" "unknown"
   * ```
   */
  received(seq: number, at: number): ReplyKind {
    if (typeof at !== "number" || !Number.isFinite(at)) {
      throw new RangeError(`SequenceTracker.received: time must be finite, got ${at}`);
    }
    if (!Number.isSafeInteger(seq) || seq < this.#low || seq > this.#highestSent) {
      this.#unknown++;
      return "unknown";
    }
    const i = seq % this.window;
    if (this.#slotSeq[i] !== seq) {
      this.#unknown++;
      return "unknown";
    }
    const state = this.#slotState[i];
    if (state === REPLIED || state === LATE) {
      this.#duplicates++;
      return "duplicate";
    }
    const rtt = at - this.#slotSentAt[i];
    if (rtt < 0) {
      throw new RangeError(
        `SequenceTracker.received: reply time ${at} is before seq ${seq}'s send time ${
          this.#slotSentAt[i]
        }`,
      );
    }
    if (seq < this.#highestReplied) this.#reordered++;
    else this.#highestReplied = seq;
    if (state === LOST) {
      this.#lost--;
      this.#late++;
      this.#slotState[i] = LATE;
      return "late";
    }
    // OUTSTANDING
    this.#outstanding--;
    if (rtt >= this.timeout) {
      this.#late++;
      this.#slotState[i] = LATE;
      return "late";
    }
    this.#received++;
    this.#slotState[i] = REPLIED;
    if (!Number.isNaN(this.#prevRtt)) {
      const d = rtt - this.#prevRtt;
      this.#jitter += ((d < 0 ? -d : d) - this.#jitter) / 16;
    }
    this.#prevRtt = rtt;
    return "reply";
  }

  /**
   * Declare lost every outstanding probe whose send time + timeout <= `now`.
   *
   * @param now The current time in ms (same clock as `sent`).
   * @returns How many probes were declared lost by this call.
   * @throws {RangeError} When `now` is not a number (NaN).
   *
   * @example
   * ```ts
   * import { SequenceTracker } from "./sequence.ts";
   *
   * const t = new SequenceTracker({ timeout: 100 });
   * t.sent(0, 0);
   * t.sent(1, 50);
   * console.log(t.expire(100), t.expire(149), t.expire(150)); // 1 0 1
   * ```
   */
  expire(now: number): number {
    if (typeof now !== "number" || Number.isNaN(now)) {
      throw new RangeError(`SequenceTracker.expire: now must be a number, got ${now}`);
    }
    const w = this.window;
    let expired = 0;
    let s = this.#cursor < this.#low ? this.#low : this.#cursor;
    for (; s <= this.#highestSent; s++) {
      const i = s % w;
      if (this.#slotSeq[i] !== s || this.#slotState[i] !== OUTSTANDING) continue;
      if (this.#slotSentAt[i] + this.timeout > now) break;
      this.#slotState[i] = LOST;
      expired++;
    }
    this.#cursor = s;
    this.#outstanding -= expired;
    this.#lost += expired;
    return expired;
  }

  /**
   * A snapshot of the counters (a new object on each read).
   *
   * @example
   * ```ts
   * import { SequenceTracker } from "./sequence.ts";
   *
   * const t = new SequenceTracker({ timeout: 1000 });
   * t.sent(0, 0);
   * t.received(0, 3);
   * const { sent, received, rtt } = t.stats;
   * console.log(sent, received, rtt); // 1 1 3
   * ```
   */
  get stats(): SequenceStats {
    return {
      sent: this.#sent,
      received: this.#received,
      lost: this.#lost,
      late: this.#late,
      outstanding: this.#outstanding,
      duplicates: this.#duplicates,
      reordered: this.#reordered,
      unknown: this.#unknown,
      jitter: this.#jitter,
      rtt: this.#prevRtt,
    };
  }

  /** Forget sequence numbers below `newLow`; outstanding ones among them are counted lost. */
  #evictBelow(newLow: number): void {
    const from = this.#low;
    if (newLow <= from) return;
    const w = this.window;
    const slotSeq = this.#slotSeq;
    const state = this.#slotState;
    let evicted = 0;
    if (newLow - from >= w) {
      for (let i = 0; i < w; i++) {
        if (slotSeq[i] >= 0 && slotSeq[i] < newLow) {
          if (state[i] === OUTSTANDING) evicted++;
          slotSeq[i] = -1;
          state[i] = EMPTY;
        }
      }
    } else {
      for (let s = from; s < newLow; s++) {
        const i = s % w;
        if (slotSeq[i] === s) {
          if (state[i] === OUTSTANDING) evicted++;
          slotSeq[i] = -1;
          state[i] = EMPTY;
        }
      }
    }
    this.#low = newLow;
    this.#outstanding -= evicted;
    this.#lost += evicted;
  }
}
