/**
 * Fair turns for many busy stream sessions.
 *
 * Why this exists: Deno 2.9 polls every pending op of an isolate from one tokio task, whose
 * cooperative budget is 128 ready I/O polls per run. When more reads than that are ready in one
 * run (hundreds of busy connections), the rest are postponed, and the postponed ones are woken
 * again in reverse order and behind the reads that just became ready. Under steady load the same
 * connections keep winning while others wait for seconds (measured: 1,000 connections, some
 * served 1 request and some 1,000; reads pending up to 3 s while their data sat in the socket).
 *
 * So a read completes in that task's next run, and two kinds of read can be ready there: the
 * ones started since (sessions that just echoed), and the ones still pending from earlier turns
 * because their data had not arrived ("parked"). This module keeps their sum under the budget:
 * a session asks {@linkcode ReadTurns.take} before each read and reports it done with
 * {@linkcode ReadTurns.done}; each turn lets at most READS_PER_TURN reads start, fewer while
 * reads are parked, and the sessions waiting in line go first, in arrival order. Turns are timer
 * ticks: an immediate (`setImmediate`) or an op round trip does not let the event loop poll I/O
 * in between, and measured no fairer. bench/README.md has the figures.
 *
 * @module
 */

/**
 * Reads that may start per turn: below tokio's budget of 128, with room for the accepts and
 * writes of the same run; 128 and more measured unfair again.
 */
export const READS_PER_TURN = 96;

/** Reads started this turn plus reads parked from earlier turns, at most. */
export const READS_PENDING = 120;

/** Turns after which a parked read counts as idle (its client is quiet), no longer as parked. */
const PARKED_TURNS = 64;

/**
 * Sessions that read within one window (ACTIVE_WINDOW_MS) before reads take turns; fewer cannot
 * exhaust the budget, and idle sessions do not count, so they cost the busy ones nothing.
 */
export const TURNS_FROM_SESSIONS = 100;

/** The window in which a session that read counts as active, in ms. */
const ACTIVE_WINDOW_MS = 50;

/**
 * The line of sessions waiting to read, shared by every stream server of this isolate.
 *
 * @example
 * ```ts
 * import { ReadTurns } from "./_read_turns.ts";
 * const turns = new ReadTurns(2);
 * turns.enter();
 * turns.note(0); // a session read (sessions that read recently decide whether turns are taken)
 * const first = turns.take(); // undefined: read now
 * const turn = turns.started();
 * turns.done(turn);
 * console.log(first, turns.take(), turns.take() instanceof Promise); // undefined undefined true
 * turns.leave(); // the last session leaving stops the ticking
 * ```
 */
export class ReadTurns {
  #queue: ((value: void) => void)[] = [];
  #head = 0;
  #used = 0;
  #timer: ReturnType<typeof setTimeout> | undefined;
  #perTurn: number;
  #sessions = 0;
  #turn = 0;
  /** Reads started in turn t and not done, at t % PARKED_TURNS; their sum is #pending. */
  #startedIn = new Int32Array(PARKED_TURNS);
  #pending = 0;
  #window = 1;
  #windowStart = 0;
  #active = 0;
  #activeBefore = 0;

  /**
   * @param perTurn Reads that may start per turn.
   */
  constructor(perTurn: number = READS_PER_TURN) {
    this.#perTurn = perTurn;
  }

  /** Whether enough sessions are open that reads may have to take turns (a cheap first test). */
  get crowded(): boolean {
    return this.#sessions > TURNS_FROM_SESSIONS;
  }

  /** Whether enough sessions read recently that reads take turns. */
  get busy(): boolean {
    return this.#sessions > TURNS_FROM_SESSIONS &&
      Math.max(this.#active, this.#activeBefore) > TURNS_FROM_SESSIONS;
  }

  /**
   * Counts a session that just read as active in the current window.
   *
   * @param window What this returned for the session's previous read (0 the first time).
   * @returns The current window, to pass next time.
   */
  note(window: number): number {
    const now = performance.now();
    if (now - this.#windowStart >= ACTIVE_WINDOW_MS) {
      this.#activeBefore = now - this.#windowStart < 2 * ACTIVE_WINDOW_MS ? this.#active : 0;
      this.#active = 0;
      this.#window++;
      this.#windowStart = now;
    }
    if (window !== this.#window) this.#active++;
    return this.#window;
  }

  /** Counts a session that opened. */
  enter(): void {
    this.#sessions++;
  }

  /** Counts a session that ended; the last one stops the ticking, so no timer outlives them. */
  leave(): void {
    if (--this.#sessions > 0 || this.#head < this.#queue.length) return;
    clearTimeout(this.#timer);
    this.#timer = undefined;
    this.#used = 0;
    this.#pending = 0;
    this.#startedIn.fill(0);
  }

  /**
   * Asks to read now.
   *
   * @returns `undefined` when the caller may read at once, or a promise to await first.
   */
  take(): Promise<void> | undefined {
    if (
      this.#used < this.#perTurn && this.#head === this.#queue.length &&
      this.#pending < READS_PENDING
    ) {
      this.#used++;
      this.#arm();
      return undefined;
    }
    const { promise, resolve } = Promise.withResolvers<void>();
    this.#queue.push(resolve);
    this.#arm();
    return promise;
  }

  /**
   * Counts a read that starts now (after `take`).
   *
   * @returns The turn it started in, for {@linkcode ReadTurns.done}.
   */
  started(): number {
    this.#startedIn[this.#turn % PARKED_TURNS]++;
    this.#pending++;
    return this.#turn;
  }

  /**
   * Counts a read that completed (or failed).
   *
   * @param turn What {@linkcode ReadTurns.started} returned for it.
   */
  done(turn: number): void {
    if (this.#turn - turn >= PARKED_TURNS) return; // already counted as idle
    this.#startedIn[turn % PARKED_TURNS]--;
    this.#pending--;
  }

  /** Sessions waiting for a turn. */
  get waiting(): number {
    return this.#queue.length - this.#head;
  }

  #arm(): void {
    if (this.#timer === undefined) this.#timer = setTimeout(this.#tick, 0);
  }

  #tick = (): void => {
    this.#timer = undefined;
    this.#used = 0;
    // Reads started PARKED_TURNS turns ago and still pending wait for quiet clients: no longer
    // counted, or a few hundred idle sessions would stop everyone else.
    const slot = ++this.#turn % PARKED_TURNS;
    this.#pending -= this.#startedIn[slot];
    this.#startedIn[slot] = 0;
    const queue = this.#queue;
    let head = this.#head;
    const room = Math.max(0, Math.min(this.#perTurn, READS_PENDING - this.#pending));
    const end = Math.min(queue.length, head + room);
    while (head < end) {
      const resolve = queue[head];
      queue[head++] = undefined as unknown as (value: void) => void;
      this.#used++;
      resolve();
    }
    if (head === queue.length) {
      queue.length = 0;
      head = 0;
    } else if (head > 1024 && head * 2 > queue.length) {
      queue.splice(0, head);
      head = 0;
    }
    this.#head = head;
    // Keep ticking while reads are counted or parked, so allowances reset and parked reads age;
    // stop when idle.
    if (this.#used > 0 || head < queue.length || this.#pending > 0) this.#arm();
  };
}

/** The isolate's line: every server shares the event loop, and so the budget. */
export const readTurns: ReadTurns = new ReadTurns();
