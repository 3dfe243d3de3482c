/**
 * Impairment: a policy stage that makes UDP's unreliability visible on loopback, where nothing is
 * ever lost, duplicated or reordered on its own. The echo server's receive loop hands each reply to
 * {@linkcode UdpImpairment.submit}, which drops, duplicates, holds back or delays it and calls the
 * send function it was given. It knows nothing of sockets: the address type is opaque to it.
 *
 * For TCP, where loss does not exist (the kernel retransmits), {@linkcode TcpShaper} only adds
 * delay and paces by bandwidth.
 *
 * When nothing is asked for ({@linkcode isImpairing} is false), the server creates no stage and
 * the hot path pays nothing.
 *
 * @module
 */

import {
  checkMilliseconds,
  checkNumber,
  checkOptionsObject,
  formatMs as ms,
} from "./_impair_check.ts";
import { Random, randomSeed } from "./_random.ts";
import type { ImpairOptions } from "./types.ts";
export type { ImpairOptions, TcpShaperOptions } from "./types.ts";

export { isShaping, TcpShaper, validateTcpShaperOptions } from "./_tcp_shaper.ts";

/** How many replies held back for reordering that a held reply waits for before it goes out. */
const REORDER_OVERTAKES = 3;
/** The longest a reply held back for reordering waits past its own send time, in ms. */
const REORDER_HOLD_MS = 100;
const MAX_SEED = 0xffff_ffff;

/**
 * The default cap on replies held at once (for reordering or delay) by one
 * {@linkcode UdpImpairment}; replies beyond it are dropped and counted in `overflow`.
 *
 * @example
 * ```ts
 * import { DEFAULT_MAX_HELD } from "./impair.ts";
 *
 * console.log(`holding at most ${DEFAULT_MAX_HELD} replies`);
 * ```
 */
export const DEFAULT_MAX_HELD = 4096;

/**
 * The function a {@linkcode UdpImpairment} calls to put a reply on the wire. `key` is the string
 * the caller passed to `submit` for the reply's source.
 *
 * @typeParam A The caller's address type; opaque to the stage.
 *
 * @example
 * ```ts
 * import type { ImpairSend } from "./impair.ts";
 *
 * const sent: string[] = [];
 * const send: ImpairSend<string> = (data, to, key) => sent.push(`${data.length} to ${to} (${key})`);
 * send(new Uint8Array(3), "peer", "127.0.0.1:9");
 * ```
 */
export type ImpairSend<A> = (data: Uint8Array, to: A, key: string) => void;

function checkProbability(options: Record<string, unknown>, name: string): void {
  const value = checkNumber(options, name);
  if (value !== undefined && !(value >= 0 && value <= 1)) {
    throw new RangeError(`${name} must be a probability between 0 and 1, got ${value}`);
  }
}

/**
 * Checks impairment options, so a caller can reject bad input before starting anything.
 *
 * @param options The options to check.
 * @throws {TypeError} If `options` is not an object or a field is not a number.
 * @throws {RangeError} If a field is out of range, e.g.
 * `loss must be a probability between 0 and 1, got 1.5`.
 *
 * @example
 * ```ts
 * import { validateImpairOptions } from "./impair.ts";
 *
 * validateImpairOptions({ loss: 0.2, delay: 50 });
 * try {
 *   validateImpairOptions({ loss: 1.5 });
 * } catch (error) {
 *   console.log((error as RangeError).message);
 *   // loss must be a probability between 0 and 1, got 1.5
 * }
 * ```
 */
export function validateImpairOptions(options: ImpairOptions): void {
  const o = checkOptionsObject(options);
  checkProbability(o, "loss");
  checkProbability(o, "duplicate");
  checkProbability(o, "reorder");
  checkMilliseconds(o, "delay");
  checkMilliseconds(o, "jitter");
  const seed = checkNumber(o, "seed");
  if (seed !== undefined && !(Number.isInteger(seed) && seed >= 0 && seed <= MAX_SEED)) {
    throw new RangeError(`seed must be an integer between 0 and ${MAX_SEED}, got ${seed}`);
  }
  if (o.jitterKeepOrder !== undefined && typeof o.jitterKeepOrder !== "boolean") {
    throw new TypeError(`jitterKeepOrder must be a boolean, got ${typeof o.jitterKeepOrder}`);
  }
  const maxHeld = checkNumber(o, "maxHeld");
  if (maxHeld !== undefined && !(Number.isSafeInteger(maxHeld) && maxHeld >= 1)) {
    throw new RangeError(`maxHeld must be an integer of at least 1, got ${maxHeld}`);
  }
}

/**
 * Whether the options ask for any impairment at all (`seed` and `maxHeld` alone do not). When
 * this is false, do not create a {@linkcode UdpImpairment}: send directly.
 *
 * @param options Impairment options (not validated here).
 * @returns True if loss, duplicate, reorder, delay or jitter is above zero.
 *
 * @example
 * ```ts
 * import { isImpairing } from "./impair.ts";
 *
 * console.log(isImpairing({ seed: 7 })); // false
 * console.log(isImpairing({ loss: 0.1 })); // true
 * ```
 */
export function isImpairing(options: ImpairOptions): boolean {
  return (options.loss ?? 0) > 0 || (options.duplicate ?? 0) > 0 ||
    (options.reorder ?? 0) > 0 || (options.delay ?? 0) > 0 || (options.jitter ?? 0) > 0;
}

function percent(p: number): string {
  return `${+(p * 100).toFixed(4)}%`;
}

/** Timer length for an absolute time; the slack keeps float noise from adding a whole ms. */
function timeoutFor(at: number, now: number): number {
  return Math.max(0, Math.ceil(at - now - 1e-6));
}

type Timer = ReturnType<typeof setTimeout>;

/** A reply waiting in a source's delay queue, which is kept in send-time order. */
interface Queued<A> {
  data: Uint8Array;
  to: A;
  copies: number;
  /** Arrival index within the source, to tell later replies from earlier ones. */
  seq: number;
  /** performance.now() time at which it may go out. */
  at: number;
}

/** A reply held back for reordering. */
interface Held<A> extends Queued<A> {
  /** Replies to the same source that arrived after this one and have gone out since. */
  overtakes: number;
  /** When it goes out at the latest: its own send time plus the hold limit. */
  deadline: number;
  timer: Timer | undefined;
}

/** Per-source state; exists only while the source has replies queued or held. */
interface Source<A> {
  key: string;
  nextSeq: number;
  /** With `jitterKeepOrder`: send time of the last reply put in `queue` (later ones wait for it). */
  lastAt: number;
  queue: Queued<A>[];
  head: number;
  timer: Timer | undefined;
  /** In arrival (seq) order. */
  held: Held<A>[];
}

/**
 * The UDP impairment stage. Hand it each reply with {@linkcode UdpImpairment.submit}; it calls
 * `send` now, later, twice, or never.
 *
 * Per reply, in this order:
 * 1. loss: dropped with probability `loss`;
 * 2. duplicate: sent twice, back to back, with probability `duplicate`;
 * 3. reorder: with probability `reorder`, held back until 3 later replies to the same source
 *    (same `key`) have gone out, or 100 ms past its own send time, whichever is first (never
 *    before its own send time);
 * 4. delay: its own send time is arrival + `delay` ± `jitter` (uniform, clamped at 0), drawn for
 *    each reply independently, so replies whose delays cross go out in send-time order, not
 *    arrival order (as netem's jitter does). With `jitterKeepOrder`, a reply not held for
 *    reordering goes at the later of its own send time and that of the previous such reply to the
 *    same source instead, which keeps per-source order but pushes delays towards the maximum.
 *    Each source has its own timer, so a delayed reply never holds back replies to other sources.
 *
 * Determinism: the generator is consulted exactly four times per submitted reply, always, in this
 * order: `next()` for loss, for duplicate, for reorder, for the delay draw; even when the reply is
 * dropped or the feature is off (`u < p` decides, so p = 0 never fires and p = 1 always does).
 * So with one seed and one arrival order, the same replies are dropped, duplicated and reordered,
 * and turning on one feature does not change the decisions of another.
 *
 * Buffers: a reply sent at once is passed through as is (no copy); one that is held or delayed is
 * copied, so the caller may reuse its buffer as soon as `submit` returns.
 *
 * Limits: at most `maxHeld` replies are held (for reordering or delay) at once; a reply that would
 * exceed it is dropped and counted in `overflow`. {@linkcode UdpImpairment.close} cancels every
 * timer and discards what is held (counted in `discarded`), so the process can exit.
 *
 * Errors: a `send` that throws on the immediate path throws out of `submit`. A throw from a
 * deferred send has no caller to reach: it is counted in `sendErrors` (the reply is lost) and the
 * stage goes on.
 *
 * @typeParam A The caller's address type; opaque to the stage.
 *
 * @example Lose a fifth of the replies, reproducibly
 * ```ts
 * import { UdpImpairment } from "./impair.ts";
 *
 * const sent: number[] = [];
 * const stage = new UdpImpairment<string>((data) => sent.push(data[0]), { loss: 0.2, seed: 1 });
 * for (let i = 0; i < 100; i++) stage.submit(new Uint8Array([i]), "peer", "127.0.0.1:40000");
 * console.log(stage.describe(), sent.length, stage.dropped); // sent.length + dropped === 100
 * stage.close();
 * ```
 */
export class UdpImpairment<A> {
  /** Replies dropped by `loss`. */
  dropped = 0;
  /** Replies sent (or to be sent) twice by `duplicate`. */
  duplicated = 0;
  /** Replies held back for reordering by `reorder`. */
  reordered = 0;
  /** Replies put in a delay queue by `delay`/`jitter` (not counting those held for reordering). */
  delayed = 0;
  /** Replies dropped because `maxHeld` replies were already held. */
  overflow = 0;
  /** Replies discarded by `close()` while held or delayed, or submitted after it. */
  discarded = 0;
  /** Deferred sends whose `send` threw (those replies are lost). */
  sendErrors = 0;
  /** The seed of this stage's generator: the one given, or one drawn from `crypto`. */
  readonly seed: number;

  readonly #send: ImpairSend<A>;
  readonly #random: Random;
  readonly #loss: number;
  readonly #duplicate: number;
  readonly #reorder: number;
  readonly #delay: number;
  readonly #jitter: number;
  readonly #keepOrder: boolean;
  readonly #maxHeld: number;
  /** Whether any reply can be deferred (reorder, delay or jitter on). */
  readonly #deferring: boolean;
  readonly #sources = new Map<string, Source<A>>();
  #held = 0;
  #closed = false;
  #refed = true;

  /**
   * Creates a stage.
   *
   * @param send Called for every reply that goes out (twice for a duplicate).
   * @param options What to do to replies; checked with {@linkcode validateImpairOptions}.
   * @throws {TypeError} If `send` is not a function or an option is not a number.
   * @throws {RangeError} If an option is out of range.
   *
   * @example
   * ```ts
   * import { UdpImpairment } from "./impair.ts";
   *
   * const stage = new UdpImpairment<string>(() => {}, { duplicate: 0.1, seed: 3 });
   * console.log(stage.describe()); // duplicate 10%, seed 3
   * stage.close();
   * ```
   */
  constructor(send: ImpairSend<A>, options: ImpairOptions) {
    if (typeof send !== "function") {
      throw new TypeError(`send must be a function, got ${typeof send}`);
    }
    validateImpairOptions(options);
    this.#send = send;
    this.#loss = options.loss ?? 0;
    this.#duplicate = options.duplicate ?? 0;
    this.#reorder = options.reorder ?? 0;
    this.#delay = options.delay ?? 0;
    this.#jitter = options.jitter ?? 0;
    this.#keepOrder = options.jitterKeepOrder ?? false;
    this.#maxHeld = options.maxHeld ?? DEFAULT_MAX_HELD;
    this.#deferring = this.#reorder > 0 || this.#delay > 0 || this.#jitter > 0;
    this.seed = options.seed ?? randomSeed();
    this.#random = new Random(this.seed);
  }

  /** How many replies are held right now, for reordering or in delay queues. */
  get held(): number {
    return this.#held;
  }

  /**
   * Lets the process exit while replies are held: the stage's timers (now and later ones) no
   * longer keep it alive. For a server's `unref()`.
   *
   * @example
   * ```ts
   * import { UdpImpairment } from "./impair.ts";
   *
   * const stage = new UdpImpairment<string>(() => {}, { delay: 60_000, seed: 1 });
   * stage.unref();
   * stage.submit(new Uint8Array(1), "peer", "127.0.0.1:5000"); // does not hold the process
   * stage.close();
   * ```
   */
  unref(): void {
    this.#refed = false;
    this.#eachTimer((timer) => Deno.unrefTimer(timer as unknown as number));
  }

  /**
   * Undoes {@linkcode UdpImpairment.unref}: held replies keep the process alive again (the
   * default).
   *
   * @example
   * ```ts
   * import { UdpImpairment } from "./impair.ts";
   *
   * const stage = new UdpImpairment<string>(() => {}, { delay: 10, seed: 1 });
   * stage.unref();
   * stage.ref();
   * stage.close();
   * ```
   */
  ref(): void {
    this.#refed = true;
    this.#eachTimer((timer) => Deno.refTimer(timer as unknown as number));
  }

  #eachTimer(fn: (timer: Timer) => void): void {
    for (const source of this.#sources.values()) {
      if (source.timer !== undefined) fn(source.timer);
      for (const held of source.held) if (held.timer !== undefined) fn(held.timer);
    }
  }

  /** `setTimeout` that honours {@linkcode UdpImpairment.unref}. */
  #timer(fn: () => void, ms: number): Timer {
    const timer = setTimeout(fn, ms);
    if (!this.#refed) Deno.unrefTimer(timer as unknown as number);
    return timer;
  }

  /**
   * Hands one reply to the stage. `data` may be reused by the caller once this returns.
   *
   * @param data The reply's bytes.
   * @param to Where it goes; passed through to `send` untouched.
   * @param key The source's identity for per-source ordering, e.g. `${host}:${port}`.
   *
   * @example
   * ```ts
   * import { UdpImpairment } from "./impair.ts";
   *
   * const stage = new UdpImpairment<string>((data, to) => console.log(data, to), { duplicate: 1 });
   * stage.submit(new TextEncoder().encode("hi"), "peer", "127.0.0.1:5000"); // logged twice
   * stage.close();
   * ```
   */
  submit(data: Uint8Array, to: A, key: string): void {
    if (this.#closed) {
      this.discarded++;
      return;
    }
    const random = this.#random;
    const uLoss = random.next();
    const uDuplicate = random.next();
    const uReorder = random.next();
    const uDelay = random.next();
    if (uLoss < this.#loss) {
      this.dropped++;
      return;
    }
    const copies = uDuplicate < this.#duplicate ? 2 : 1;
    if (!this.#deferring) {
      if (copies === 2) this.duplicated++;
      this.#send(data, to, key);
      if (copies === 2) this.#send(data, to, key);
      return;
    }

    const now = performance.now();
    const own = now + Math.max(0, this.#delay + this.#jitter * (2 * uDelay - 1));
    let source = this.#sources.get(key);

    if (uReorder < this.#reorder) {
      if (this.#held >= this.#maxHeld) {
        this.overflow++;
        return;
      }
      source ??= this.#addSource(key);
      const held: Held<A> = {
        data: data.slice(),
        to,
        copies,
        seq: source.nextSeq++,
        at: own,
        overtakes: 0,
        deadline: own + REORDER_HOLD_MS,
        timer: undefined,
      };
      const s = source;
      held.timer = this.#timer(
        () => this.#heldTimeout(s, held),
        timeoutFor(held.deadline, now),
      );
      source.held.push(held);
      this.#held++;
      this.reordered++;
      if (copies === 2) this.duplicated++;
      return;
    }

    const keepOrder = this.#keepOrder;
    const at = source === undefined || !keepOrder ? own : Math.max(own, source.lastAt);
    if (
      at <= now && (source === undefined || !keepOrder || source.head === source.queue.length)
    ) {
      // Immediate path: nothing of this source is queued ahead of it.
      if (copies === 2) this.duplicated++;
      if (source === undefined) {
        this.#send(data, to, key);
        if (copies === 2) this.#send(data, to, key);
        return;
      }
      const seq = source.nextSeq++;
      this.#send(data, to, key);
      if (copies === 2) this.#send(data, to, key);
      this.#wentOut(source, seq);
      this.#forgetIfIdle(source);
      return;
    }

    if (this.#held >= this.#maxHeld) {
      this.overflow++;
      return;
    }
    source ??= this.#addSource(key);
    const reply: Queued<A> = { data: data.slice(), to, copies, seq: source.nextSeq++, at };
    const queue = source.queue;
    // In send-time order; with keepOrder (or a later send time) that is the end.
    let slot = queue.length;
    if (slot > source.head && queue[slot - 1].at > at) {
      let lo = source.head;
      let hi = slot - 1;
      while (lo < hi) {
        const mid = (lo + hi) >>> 1;
        if (queue[mid].at > at) hi = mid;
        else lo = mid + 1;
      }
      slot = lo;
      queue.splice(slot, 0, reply);
    } else {
      queue.push(reply);
    }
    if (at > source.lastAt) source.lastAt = at;
    this.#held++;
    this.delayed++;
    if (copies === 2) this.duplicated++;
    if (slot === source.head && source.timer !== undefined) {
      // It goes before the reply the timer waits for.
      clearTimeout(source.timer);
      source.timer = undefined;
    }
    if (source.timer === undefined) {
      const s = source;
      source.timer = this.#timer(() => this.#flush(s), timeoutFor(at, now));
    }
  }

  /**
   * Cancels every timer and discards every held or delayed reply (counted in `discarded`), so
   * the process can exit. Later `submit` calls discard their reply. Calling it again does nothing.
   *
   * @example
   * ```ts
   * import { UdpImpairment } from "./impair.ts";
   *
   * const stage = new UdpImpairment<string>(() => {}, { delay: 1000, seed: 1 });
   * stage.submit(new Uint8Array(1), "peer", "127.0.0.1:5000");
   * stage.close();
   * console.log(stage.discarded); // 1
   * ```
   */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    for (const source of this.#sources.values()) {
      if (source.timer !== undefined) clearTimeout(source.timer);
      for (const held of source.held) clearTimeout(held.timer);
      this.discarded += source.held.length + source.queue.length - source.head;
      source.timer = undefined;
      source.held = [];
      source.queue = [];
      source.head = 0;
    }
    this.#sources.clear();
    this.#held = 0;
  }

  /**
   * A one-line summary for a ready line, e.g. `loss 20%, reorder 10%, delay 50ms±10ms, seed 42`.
   * The seed is always included so that a run can be repeated.
   *
   * @returns The summary.
   *
   * @example
   * ```ts
   * import { UdpImpairment } from "./impair.ts";
   *
   * const stage = new UdpImpairment<string>(() => {}, {
   *   loss: 0.2,
   *   reorder: 0.1,
   *   delay: 50,
   *   jitter: 10,
   *   seed: 42,
   * });
   * console.log(stage.describe()); // loss 20%, reorder 10%, delay 50ms±10ms, seed 42
   * stage.close();
   * ```
   */
  describe(): string {
    const parts: string[] = [];
    if (this.#loss > 0) parts.push(`loss ${percent(this.#loss)}`);
    if (this.#duplicate > 0) parts.push(`duplicate ${percent(this.#duplicate)}`);
    if (this.#reorder > 0) parts.push(`reorder ${percent(this.#reorder)}`);
    if (this.#delay > 0 || this.#jitter > 0) {
      parts.push(`delay ${ms(this.#delay)}${this.#jitter > 0 ? `±${ms(this.#jitter)}` : ""}`);
      if (this.#jitter > 0 && this.#keepOrder) parts.push("jitter keeps order");
    }
    if (parts.length === 0) parts.push("no impairment");
    if (this.#maxHeld !== DEFAULT_MAX_HELD) parts.push(`max held ${this.#maxHeld}`);
    parts.push(`seed ${this.seed}`);
    return parts.join(", ");
  }

  #addSource(key: string): Source<A> {
    const source: Source<A> = {
      key,
      nextSeq: 0,
      lastAt: -Infinity,
      queue: [],
      head: 0,
      timer: undefined,
      held: [],
    };
    this.#sources.set(key, source);
    return source;
  }

  #forgetIfIdle(source: Source<A>): void {
    if (
      source.head === source.queue.length && source.held.length === 0 &&
      source.timer === undefined && this.#sources.get(source.key) === source
    ) {
      this.#sources.delete(source.key);
    }
  }

  /** Sends a deferred reply; a throwing `send` is counted, not propagated (no caller to reach). */
  #deliver(source: Source<A>, reply: Queued<A>): void {
    for (let i = 0; i < reply.copies; i++) {
      try {
        this.#send(reply.data, reply.to, source.key);
      } catch {
        this.sendErrors++;
      }
    }
  }

  /** Sends the delay-queue replies of `source` that are due, then re-arms its timer. */
  #flush(source: Source<A>): void {
    source.timer = undefined;
    const now = performance.now();
    while (!this.#closed && source.head < source.queue.length) {
      const reply = source.queue[source.head];
      if (reply.at > now) {
        source.timer ??= this.#timer(() => this.#flush(source), timeoutFor(reply.at, now));
        break;
      }
      source.head++;
      this.#held--;
      this.#deliver(source, reply);
      this.#wentOut(source, reply.seq);
    }
    if (source.head === source.queue.length) {
      source.queue = [];
      source.head = 0;
    } else if (source.head > 1024 && source.head * 2 > source.queue.length) {
      source.queue = source.queue.slice(source.head);
      source.head = 0;
    }
    this.#forgetIfIdle(source);
  }

  /**
   * A held reply's timer fired: at its own send time (it was already overtaken enough), or at its
   * deadline. Timers due within the same millisecond may fire in any order, so a deadline timer
   * releases every reply of the source whose deadline is no later than its own, oldest first, as
   * exact timers would have.
   */
  #heldTimeout(source: Source<A>, held: Held<A>): void {
    held.timer = undefined;
    const now = performance.now();
    if (held.at > now) {
      held.timer = this.#timer(() => this.#heldTimeout(source, held), timeoutFor(held.at, now));
      return;
    }
    const due = held.overtakes >= REORDER_OVERTAKES
      ? [held]
      : source.held.filter((h) => h.deadline <= held.deadline && h.at <= now);
    for (const h of due) {
      if (this.#closed) return;
      if (this.#release(source, h)) this.#wentOut(source, h.seq);
    }
    this.#forgetIfIdle(source);
  }

  /** Takes a held reply out of its source and sends it; false if it was already gone. */
  #release(source: Source<A>, held: Held<A>): boolean {
    if (held.timer !== undefined) clearTimeout(held.timer);
    held.timer = undefined;
    const index = source.held.indexOf(held);
    if (index < 0) return false;
    source.held.splice(index, 1);
    this.#held--;
    this.#deliver(source, held);
    return true;
  }

  /**
   * A reply with arrival index `seq` went out: every held reply that arrived before it has been
   * overtaken once more; those overtaken enough go out (at once if their own send time has come),
   * which may in turn release earlier held replies.
   */
  #wentOut(source: Source<A>, seq: number): void {
    if (source.held.length === 0) return;
    const pending = [seq];
    while (pending.length > 0 && !this.#closed && source.held.length > 0) {
      const later = pending.shift()!;
      const due: Held<A>[] = [];
      for (const held of source.held) {
        if (held.seq < later && ++held.overtakes === REORDER_OVERTAKES) due.push(held);
      }
      if (due.length === 0) continue;
      const now = performance.now();
      for (const held of due) {
        if (this.#closed) return;
        if (held.at <= now) {
          if (this.#release(source, held)) pending.push(held.seq);
        } else {
          if (held.timer !== undefined) clearTimeout(held.timer);
          held.timer = this.#timer(
            () => this.#heldTimeout(source, held),
            timeoutFor(held.at, now),
          );
        }
      }
    }
  }
}
