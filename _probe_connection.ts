/**
 * What the probe's connection lanes (TCP in `_probe_tcp.ts`, WebSocket in `_probe_ws.ts`) share:
 * requests answered in order on one connection (a ring of send times), the first connects of a
 * run, the request timeout, the accounting of a failed connection, and opening it again.
 *
 * @module
 */
import { EchoConnectionError, EchoError, EchoTimeoutError } from "./errors.ts";
import { type LaneTotals, type ProbeRun, QueuedLane, Ring } from "./_probe_run.ts";

/** Pause before a failed connection is opened again, in ms. */
const RECONNECT_DELAY = 100;

/** Whether an error is Deno's refusal of a permission (which ends the run: retrying cannot help). */
export function isPermissionError(error: unknown): boolean {
  return error instanceof Deno.errors.NotCapable || error instanceof Deno.errors.PermissionDenied;
}

/**
 * Opens every lane of a run. A run where none connects rejects with the first lane's error (after
 * closing them all); lanes that fail while others connect count an error and retry.
 */
export async function connectLanes<L extends ConnectionLane>(
  run: ProbeRun,
  lanes: L[],
): Promise<L[]> {
  const outcomes = await Promise.all(lanes.map((lane) => lane.connect(false)));
  const giveUp = async (error: unknown): Promise<never> => {
    for (const lane of lanes) lane.close();
    await Promise.all(lanes.map((lane) => lane.whenClosed?.()));
    throw error;
  };
  if (!outcomes.some((ok) => ok)) return await giveUp(lanes[0].lastError);
  for (const [i, ok] of outcomes.entries()) {
    if (ok) continue;
    const error = lanes[i].lastError;
    if (!(error instanceof EchoError)) return await giveUp(error);
    run.error(error);
    lanes[i].scheduleReconnect();
  }
  return lanes;
}

/** A lane on one connection whose replies come back in the order of its requests. */
export abstract class ConnectionLane extends QueuedLane {
  /** Why the last connect failed. */
  lastError: unknown;
  /** Names the target in messages: `tcp 127.0.0.1:5006`, `unix /path`, `ws://…`. */
  protected readonly where: string;
  /** Send times of the requests in flight, oldest first. */
  protected readonly inflight: Ring;
  /** Sequence number of the oldest request in flight. */
  protected headSeq = 0;
  /** Set by `close()`: nothing is opened again. */
  protected closed = false;
  #reconnectTimer: ReturnType<typeof setTimeout> | undefined;

  constructor(run: ProbeRun, index: number, where: string) {
    super(run, index);
    this.where = where;
    this.inflight = new Ring(Math.min(run.s.pipeline, 1024));
  }

  /** Opens the connection; resolves false (after counting the error on a reconnect) if it cannot. */
  abstract connect(reconnect: boolean): Promise<boolean>;
  /** Drops the connection after `error` (then `failConnection`). */
  protected abstract fail(error: unknown): void;
  whenClosed?(): Promise<void>;

  load(): number {
    return this.inflight.length + this.queue.length;
  }

  measuredInFlight(): number {
    let n = 0;
    const start = this.run.measureStart;
    for (let i = 0; i < this.inflight.length; i++) if (this.inflight.at(i) >= start) n++;
    return n;
  }

  contribute(totals: LaneTotals): void {
    totals.outstanding += this.measuredInFlight();
  }

  tick(now: number): void {
    if (!this.ready() || this.inflight.length === 0) return;
    const timeout = this.run.s.timeout;
    if (now - this.inflight.peek() >= timeout) {
      this.fail(
        new EchoTimeoutError(`no reply from ${this.where} within ${timeout}ms`, {
          address: this.run.address,
        }),
      );
    }
  }

  scheduleReconnect(): void {
    const run = this.run;
    if (this.closed || run.finished || this.#reconnectTimer !== undefined) return;
    if (run.noMore) {
      // Nothing more to send: requests handed to this connection are dropped, not retried.
      run.failed += this.dropQueued();
      run.settle();
      return;
    }
    this.#reconnectTimer = setTimeout(() => {
      this.#reconnectTimer = undefined;
      if (!this.closed && !run.finished) void this.connect(true);
    }, RECONNECT_DELAY);
  }

  /**
   * After the connection was dropped: its measured requests in flight count as failed, the error
   * is counted (a permission error ends the run), and the connection is opened again.
   *
   * @param error Why it was dropped.
   * @param describe Turns an error that is not an EchoError into one.
   */
  protected failConnection(error: unknown, describe: (error: unknown) => string): void {
    const run = this.run;
    if (this.closed || run.finished) return;
    const lost = this.inflight.length;
    for (let i = 0; i < lost; i++) if (this.inflight.at(i) >= run.measureStart) run.failed++;
    this.inflight.clear();
    this.headSeq += lost;
    run.inflight -= lost;
    if (isPermissionError(error)) {
      run.fail(error);
      return;
    }
    const e = error instanceof EchoError ? error : new EchoConnectionError(
      `${this.where}: ${describe(error)}`,
      { address: run.address, cause: error },
    );
    run.error(e);
    if (run.finished) return;
    this.scheduleReconnect();
    if (!run.finished) run.settle();
  }

  /** Stops reopening for good; the lane closes its connection itself. */
  protected stopReconnecting(): void {
    this.closed = true;
    if (this.#reconnectTimer !== undefined) clearTimeout(this.#reconnectTimer);
    this.#reconnectTimer = undefined;
  }
}
