/**
 * Fair turns for many busy stream sessions.
 *
 * Why this exists: Deno 2.9 polls every pending op of an isolate from one tokio task, whose
 * cooperative budget is 128 ready I/O polls per run. When more reads than that become ready
 * between two polls of the event loop (hundreds of busy connections), the rest are postponed,
 * and the postponed ones are woken again in reverse order and behind the reads that just became
 * ready. Under steady load the same connections keep winning while others wait for seconds
 * (measured: 1,000 connections, some served 1 request and some 1,000; reads pending up to 3 s
 * while their data sat in the socket). Limiting how many reads start per event-loop turn, and
 * serving the waiting sessions first in arrival order, keeps every connection served; waiting a
 * timer tick also lets the next request arrive, so most reads then complete at once instead of
 * parking in that task. bench/README.md has the figures.
 *
 * A session asks {@linkcode ReadTurns.take} before each read: below the per-turn allowance and
 * with nobody waiting it reads at once; otherwise it waits in line for a later turn. Turns are
 * timer ticks (a few per millisecond at most): an immediate (`setImmediate`) or an op round
 * trip does not let the event loop poll I/O in between, and measured no fairer.
 *
 * @module
 */

/**
 * Reads that may start per turn. Below tokio's budget of 128 with room for the writes and
 * accepts of the same turn; 128 and more measured unfair again.
 */
export const READS_PER_TURN = 96;

/** Sessions open in the isolate before reads take turns; fewer cannot exhaust the budget. */
export const TURNS_FROM_SESSIONS = 100;

/** The line of sessions waiting to read, shared by every stream server of this isolate. */
export class ReadTurns {
  #queue: ((value: void) => void)[] = [];
  #head = 0;
  #used = 0;
  #timer: ReturnType<typeof setTimeout> | undefined;
  #perTurn: number;
  #sessions = 0;

  /**
   * @param perTurn Reads that may start per turn.
   */
  constructor(perTurn: number = READS_PER_TURN) {
    this.#perTurn = perTurn;
  }

  /** Whether enough sessions are open for reads to take turns. */
  get busy(): boolean {
    return this.#sessions > TURNS_FROM_SESSIONS;
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
  }

  /**
   * Asks to read now.
   *
   * @returns `undefined` when the caller may read at once, or a promise to await first.
   */
  take(): Promise<void> | undefined {
    if (this.#used < this.#perTurn && this.#head === this.#queue.length) {
      this.#used++;
      this.#arm();
      return undefined;
    }
    const { promise, resolve } = Promise.withResolvers<void>();
    this.#queue.push(resolve);
    this.#arm();
    return promise;
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
    const queue = this.#queue;
    let head = this.#head;
    const end = Math.min(queue.length, head + this.#perTurn);
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
    // Keep ticking while reads are being counted, so the allowance resets; stop when idle.
    if (this.#used > 0 || head < queue.length) this.#arm();
  };
}

/** The isolate's line: every server shares the event loop, and so the budget. */
export const readTurns: ReadTurns = new ReadTurns();
