/**
 * Refusing connections promptly at the file descriptor limit: the reserve-descriptor trick.
 *
 * When the process has no descriptor left, `accept()` fails with EMFILE (or ENFILE, the system's
 * table) and the connection stays in the kernel's queue: the client waits until it times out,
 * and an accept loop that retries spins on the error. So a server holds one spare descriptor;
 * on EMFILE it closes the spare, accepts the waiting connection with the descriptor that freed,
 * closes that connection at once (the client sees the close), and takes the spare back.
 *
 * The spare is a UDP socket on `127.0.0.1`, port 0 (`Deno.listenDatagram`, which needs unstable
 * net); without unstable net it is a TCP listener on `127.0.0.1`, port 0, never accepted from.
 * Either needs only network permission for `127.0.0.1`, which a TCP server on loopback or on
 * every interface has; without it (a Unix socket server given `--allow-net=unix:PATH`, or a
 * server allowed one other address) no spare is held, nothing is asked for, and the loop backs
 * off at the limit as before. The spare is never read.
 *
 * @module
 */

/**
 * Whether an error says the process (EMFILE) or the system (ENFILE) has no descriptor left.
 *
 * @example
 * ```ts
 * import { isFdExhausted } from "./_fd_reserve.ts";
 *
 * const error = Object.assign(new Error("Too many open files (os error 24)"), { code: "EMFILE" });
 * console.log(isFdExhausted(error), isFdExhausted(new Error("other"))); // true false
 * ```
 *
 * @param error What accept() threw.
 * @returns true for EMFILE and ENFILE.
 */
export function isFdExhausted(error: unknown): boolean {
  const code = (error as { code?: unknown })?.code;
  return code === "EMFILE" || code === "ENFILE" ||
    (error instanceof Error && /too many open files/i.test(error.message));
}

/**
 * How long a refusal waits for the connection it was meant for. The accept that failed left a
 * connection queued, so this is a bound for the odd case where it is gone (seen on Linux with
 * two listeners sharing a port): the accept is handed back to the loop as its next one.
 */
const REFUSE_WAIT_MS = 100;

/** What {@linkcode FdReserve.refuse} did. */
export interface Refusal {
  /** The refused connection's remote address, when one was accepted and closed. */
  refused?: Deno.Addr;
  /**
   * When no connection came within the wait: the accept still pending, which the caller
   * awaits as its next accept (nothing was refused; the spare is back).
   */
  pending?: Promise<Deno.Conn>;
}

/** The spare: any descriptor-holding resource. */
type Spare = { close(): void };

/**
 * Whether the spare may be opened without asking: a permission prompt (on a terminal, for a
 * Unix socket server run with `--allow-net=unix:PATH`) must never come from this.
 */
function permitted(): boolean {
  try {
    return Deno.permissions.querySync({ name: "net", host: "127.0.0.1" }).state === "granted";
  } catch {
    return false;
  }
}

function openSpare(): Spare | undefined {
  if (!permitted()) return undefined;
  try {
    const listenDatagram = (Deno as { listenDatagram?: typeof Deno.listenDatagram })
      .listenDatagram;
    if (typeof listenDatagram === "function") {
      return listenDatagram({ hostname: "127.0.0.1", port: 0, transport: "udp" });
    }
    return Deno.listen({ hostname: "127.0.0.1", port: 0, transport: "tcp" });
  } catch {
    return undefined; // no descriptor (or no permission) now; tried again after the next refusal
  }
}

/**
 * One spare descriptor, and the refusal that spends it. One per server: its accept loops take
 * turns (a refusal in progress makes the others wait for it).
 *
 * @example
 * ```ts
 * import { FdReserve } from "./_fd_reserve.ts";
 *
 * const reserve = new FdReserve();
 * console.log(reserve.held); // true: one descriptor set aside
 * reserve.close();
 * ```
 */
export class FdReserve {
  #spare?: Spare;
  #busy?: Promise<unknown>;

  /**
   * Sets the spare descriptor aside. A socket that is never read keeps no operation pending,
   * so the spare never keeps the process alive.
   */
  constructor() {
    this.#spare = openSpare();
  }

  /** Whether the spare is held now (it is not while a refusal runs, or when it could not be had). */
  get held(): boolean {
    return this.#spare !== undefined;
  }

  /**
   * Accepts one waiting connection with the spare descriptor and closes it at once.
   *
   * @param listener The listener whose accept failed with EMFILE or ENFILE.
   * @returns The refused connection's address; or the still-pending accept when none came
   * within a short wait; `undefined` when there was no spare to spend (back off, try later).
   * @throws What `accept()` throws (e.g. BadResource once the listener is closed).
   */
  async refuse(listener: Deno.Listener): Promise<Refusal | undefined> {
    while (this.#busy) await this.#busy.catch(() => {});
    if (!this.#spare) {
      this.#spare = openSpare(); // a descriptor may have come free since
      if (!this.#spare) return undefined;
    }
    const run = (async (): Promise<Refusal> => {
      this.#spare!.close();
      this.#spare = undefined;
      let timer: ReturnType<typeof setTimeout> | undefined;
      try {
        const accepting = listener.accept();
        const waited = new Promise<undefined>((resolve) => {
          timer = setTimeout(() => resolve(undefined), REFUSE_WAIT_MS);
        });
        let conn;
        try {
          conn = await Promise.race([accepting, waited]);
        } catch (error) {
          // Another accept loop was handed the descriptor first (and gives it back: admit()).
          if (isFdExhausted(error)) return {};
          throw error;
        }
        if (conn === undefined) return { pending: accepting };
        const refused = conn.remoteAddr;
        try {
          conn.close();
        } catch {
          // already gone
        }
        return { refused };
      } finally {
        clearTimeout(timer);
        this.#spare = openSpare();
      }
    })();
    this.#busy = run;
    try {
      return await run;
    } finally {
      this.#busy = undefined;
    }
  }

  /**
   * Checks a connection accepted the ordinary way. While a refusal runs, another accept loop
   * may be handed the descriptor the spare gave up, and a spare that could not be taken back
   * is missing. Then this connection is closed in the spare's place (the refusal, or this
   * call, takes the spare back with its descriptor): at the limit, the spare comes first.
   *
   * @param conn The connection just accepted.
   * @returns true to serve it; false when it was closed (count it as refused).
   */
  admit(conn: Deno.Conn): boolean {
    if (this.#spare) return true;
    // While a refusal runs, it takes the spare back itself once this descriptor is free.
    if (!this.#busy) this.#spare = openSpare();
    if (this.#spare) return true;
    try {
      conn.close();
    } catch {
      // already gone
    }
    if (!this.#busy) this.#spare = openSpare();
    return false;
  }

  /** Gives the spare back. */
  close(): void {
    try {
      this.#spare?.close();
    } catch {
      // already closed
    }
    this.#spare = undefined;
  }
}

/**
 * At most one report a second, counting what it held back: for messages that a flood would
 * otherwise repeat many times a second (a refusal at the descriptor limit).
 *
 * @example
 * ```ts
 * import { ReportThrottle } from "./_fd_reserve.ts";
 *
 * const throttle = new ReportThrottle(1000);
 * console.log(throttle.take(0)); // 0: report now, none held back
 * console.log(throttle.take(10), throttle.take(20)); // -1 -1: held back
 * console.log(throttle.take(1000)); // 2: report now, and say 2 were held back
 * ```
 */
export class ReportThrottle {
  readonly #interval: number;
  #last = -Infinity;
  #suppressed = 0;

  /**
   * Creates the throttle.
   *
   * @param interval Least time between reports, in ms.
   */
  constructor(interval = 1000) {
    this.#interval = interval;
  }

  /**
   * Asks whether to report now.
   *
   * @param now The current time, in ms.
   * @returns -1 to hold this one back; else how many were held back since the last report.
   */
  take(now: number = performance.now()): number {
    if (now - this.#last < this.#interval) {
      this.#suppressed++;
      return -1;
    }
    this.#last = now;
    const suppressed = this.#suppressed;
    this.#suppressed = 0;
    return suppressed;
  }
}
