/**
 * The run behind {@linkcode runProbe}: the schedule (closed, `rate`, `interval`), the `count` and
 * `duration` budget, warm-up, timers, hooks and the result. It knows nothing of sockets: the
 * lanes (`_probe_tcp.ts`, `_probe_udp.ts`, `_probe_ws.ts`) implement {@linkcode ProbeLane} and report back through
 * `admit`, `complete`, `capacity`, `settle`, `error` and `fail`.
 *
 * @module
 */
import type { EchoAddress, EchoError } from "./errors.ts";
import { Histogram } from "./histogram.ts";
import { clearImmediate, setImmediate } from "node:timers";
import type { TlsClientOptions } from "./tcp.ts";
import { IntervalReporter } from "./_probe_interval.ts";
import type { ProbeOptions, ProbeReply, ProbeResult } from "./_probe_types.ts";

/** How close to a scheduled send the engine stops sleeping on a timer and spins, in ms. */
const SPIN_WINDOW = 4;
/** Progress reports come this often, in ms. */
const PROGRESS_PERIOD = 1000;

/** The checked options of a run, defaults filled in. */
export interface Settings {
  hostname: string;
  port: number;
  transport: "tcp" | "udp" | "ws";
  /** WebSocket lanes connect to this URL (`hostname` and `port` are its). */
  url: string | undefined;
  connections: number;
  size: number;
  count: number;
  duration: number;
  pipeline: number;
  period: number;
  warmup: number;
  stream: boolean;
  timeout: number;
  /** Interval reports every this many ms; 0 when off. */
  reportInterval: number;
  /** TCP lanes speak TLS with these (WebSocket lanes: wss:, trusting `caCerts`). */
  tls: TlsClientOptions | undefined;
  /** TCP lanes connect to this Unix socket path. */
  unix: string | undefined;
  /** TCP lanes start with a PROXY header of this version. */
  proxyHeader: 1 | 2 | undefined;
}

/** A growable ring of numbers (power-of-two capacity); no allocation once it has grown. */
export class Ring {
  #buf: Float64Array;
  #mask: number;
  #head = 0;
  length = 0;

  constructor(capacity: number) {
    let cap = 8;
    while (cap < capacity) cap *= 2;
    this.#buf = new Float64Array(cap);
    this.#mask = cap - 1;
  }

  push(value: number): void {
    if (this.length > this.#mask) this.#grow();
    this.#buf[(this.#head + this.length) & this.#mask] = value;
    this.length++;
  }

  shift(): number {
    const value = this.#buf[this.#head];
    this.#head = (this.#head + 1) & this.#mask;
    this.length--;
    return value;
  }

  peek(): number {
    return this.#buf[this.#head];
  }

  at(i: number): number {
    return this.#buf[(this.#head + i) & this.#mask];
  }

  clear(): void {
    this.#head = 0;
    this.length = 0;
  }

  #grow(): void {
    const next = new Float64Array(this.#buf.length * 2);
    for (let i = 0; i < this.length; i++) next[i] = this.at(i);
    this.#buf = next;
    this.#mask = next.length - 1;
    this.#head = 0;
  }
}

/** What the run needs from a connection or socket. */
export interface ProbeLane {
  /** Requests in flight plus requests handed over but not yet sent. */
  load(): number;
  /** Whether it can take requests now (TCP: connected). */
  ready(): boolean;
  /** Takes a request due at `at` (scheduled modes). */
  enqueue(at: number): void;
  /** Sends what it can. */
  pump(): void;
  /** Periodic checks: UDP expiry, TCP timeouts. */
  tick(now: number): void;
  /** Drops requests handed over but not sent; returns how many of them were measured. */
  dropQueued(): number;
  /** Closes the connection or socket for good. */
  close(): void;
  /**
   * Resolves once what `close()` began has ended (WebSocket: the closing handshakes, bounded);
   * the run resolves after it. Lanes that close at once leave it out.
   */
  whenClosed?(): Promise<void>;
  /** Completed measured requests. */
  served: number;
  /**
   * Adds this lane's share of the result to `totals` (UDP: the measured tracker's counts, expiring
   * overdue probes first when `expire`; TCP: measured requests still in flight).
   */
  contribute(totals: LaneTotals, now: number, expire: boolean): void;
}

/** What lanes add up for the result, beyond the run's own counters. */
export interface LaneTotals {
  sent: number;
  lost: number;
  late: number;
  duplicates: number;
  reordered: number;
  strays: number;
  outstanding: number;
  jitterSum: number;
  jitterWeight: number;
}

function zeroTotals(): LaneTotals {
  return {
    sent: 0,
    lost: 0,
    late: 0,
    duplicates: 0,
    reordered: 0,
    strays: 0,
    outstanding: 0,
    jitterSum: 0,
    jitterWeight: 0,
  };
}

/** Opens a run's lanes (connections or sockets); rejects when none can be opened. */
export type LaneOpener = (run: ProbeRun) => Promise<ProbeLane[]>;

export class ProbeRun {
  readonly s: Settings;
  readonly options: ProbeOptions;
  readonly histogram = new Histogram();
  /** With interval reports: the current interval's latencies (reset after each report). */
  intervalHistogram: Histogram | undefined;
  #intervals: IntervalReporter | undefined;
  readonly address: EchoAddress;
  readonly scheduled: boolean;
  /** Aborted when the run finishes, to cancel connects in progress. */
  readonly closing = new AbortController();

  startAt = 0;
  measureStart = 0;
  measureEnd = Infinity;
  /** No request is admitted any more; the run finishes once in-flight ones settle. */
  noMore = false;
  stopAt = Infinity;
  finished = false;
  lastActivity = 0;
  lastReplyAt = -Infinity;

  /** Requests sent and not settled, over all workers. */
  inflight = 0;
  /** Requests handed to workers and not sent yet. */
  queued = 0;
  /** Measured requests admitted (the `count` budget). */
  admitted = 0;
  /** Scheduled mode: index of the next request of the schedule. */
  index = 0;
  /** Scheduled mode: measured requests due before the end that were never handed out. */
  unsent = 0;

  sent = 0;
  received = 0;
  bytes = 0;
  errors = 0;
  mismatches = 0;
  failed = 0;
  /** Completed requests, warm-up included (for progress). */
  completedAll = 0;

  workers: ProbeLane[] = [];
  #rr = 0;
  #timer: ReturnType<typeof setTimeout> | undefined;
  /** Whether a wake-up for the schedule is pending (a timer or a spin message). */
  #waiting = false;
  #immediate: ReturnType<typeof setImmediate> | undefined;
  #wake = () => {
    this.#timer = undefined;
    this.#immediate = undefined;
    this.#waiting = false;
    this.dispatch(performance.now());
  };
  #tick: ReturnType<typeof setInterval> | undefined;
  #progress: ReturnType<typeof setInterval> | undefined;
  #endTimer: ReturnType<typeof setTimeout> | undefined;
  #progressDone = 0;
  #progressAt = 0;
  #resolve!: (result: ProbeResult) => void;
  #reject!: (error: unknown) => void;
  #onAbort = () => this.finish(true);
  #aborted = false;

  readonly #open: LaneOpener;

  constructor(settings: Settings, options: ProbeOptions, open: LaneOpener) {
    this.s = settings;
    this.#open = open;
    this.options = options;
    this.scheduled = settings.period > 0;
    this.address = settings.unix !== undefined
      ? { hostname: "", port: 0, transport: "unix", path: settings.unix }
      : {
        hostname: settings.hostname,
        port: settings.port,
        transport: settings.transport === "udp" ? "udp" : "tcp",
      };
  }

  async start(): Promise<ProbeResult> {
    try {
      return await this.#run();
    } finally {
      await Promise.all(this.workers.map((w) => w.whenClosed?.()));
    }
  }

  async #run(): Promise<ProbeResult> {
    const signal = this.options.signal;
    const done = new Promise<ProbeResult>((resolve, reject) => {
      this.#resolve = resolve;
      this.#reject = reject;
    });
    // While connecting, an abort only cancels the connects; the run proper starts after.
    const cancel = () => this.closing.abort();
    signal?.addEventListener("abort", cancel, { once: true });
    try {
      if (!signal?.aborted) {
        this.workers = await this.#open(this);
      }
    } catch (error) {
      if (!signal?.aborted) throw error;
    } finally {
      signal?.removeEventListener("abort", cancel);
    }
    if (signal?.aborted) {
      this.#begin();
      this.stopAt = this.startAt;
      this.finish(true);
      return done;
    }
    signal?.addEventListener("abort", this.#onAbort, { once: true });
    this.#begin();
    const s = this.s;
    const tickMs = Math.min(
      Math.max(s.timeout / 10, s.transport === "udp" ? 1 : 10),
      s.transport === "udp" ? 50 : 250,
    );
    this.#tick = setInterval(() => this.#onTick(), tickMs);
    if (this.options.onProgress) {
      this.#progressAt = this.startAt;
      this.#progress = setInterval(() => this.#onProgress(), PROGRESS_PERIOD);
    }
    const onInterval = this.options.onInterval;
    if (s.reportInterval > 0 && onInterval) {
      this.#intervals = new IntervalReporter(this.measureStart, s.reportInterval, {
        onInterval,
        sample: () => this.#result(true),
        fail: (error) => this.fail(error),
      });
      this.intervalHistogram = this.#intervals.histogram;
      this.#intervals.start();
    }
    if (this.measureEnd !== Infinity) {
      this.#endTimer = setTimeout(() => this.#onEnd(), this.measureEnd - performance.now());
    }
    if (this.scheduled) this.dispatch(performance.now());
    else for (const w of this.workers) w.pump();
    return done;
  }

  #begin(): void {
    this.startAt = performance.now();
    this.lastActivity = this.startAt;
    this.measureStart = this.startAt + this.s.warmup;
    this.measureEnd = this.measureStart + this.s.duration;
  }

  /**
   * Whether a request with send time `at` may go out; counts it against `count` when measured.
   * Never finishes the run itself (the caller is about to add the request to `inflight`).
   */
  admit(at: number): boolean {
    if (this.noMore) return false;
    if (at >= this.measureEnd) {
      this.#stopAdmitting(at);
      return false;
    }
    if (at >= this.measureStart) {
      this.admitted++;
      if (this.admitted >= this.s.count) this.#stopAdmitting(at);
    }
    return true;
  }

  #stopAdmitting(at: number): void {
    if (this.noMore) return;
    this.noMore = true;
    this.stopAt = Math.min(at, performance.now());
    if (this.#timer !== undefined) clearTimeout(this.#timer);
    if (this.#immediate !== undefined) clearImmediate(this.#immediate);
    this.#timer = undefined;
    this.#immediate = undefined;
    this.#waiting = false;
  }

  /** Scheduled mode: hands every request that is due to a worker with room for it. */
  dispatch(now: number): void {
    if (this.noMore || this.finished) return;
    const workers = this.workers;
    const n = workers.length;
    const cap = this.s.pipeline;
    for (;;) {
      const at = this.startAt + this.index * this.s.period;
      if (at > now) {
        this.#waitUntil(at, now);
        return;
      }
      let worker: ProbeLane | undefined;
      for (let k = 0; k < n; k++) {
        const w = workers[this.#rr];
        this.#rr = this.#rr + 1 === n ? 0 : this.#rr + 1;
        if (w.ready() && w.load() < cap) {
          worker = w;
          break;
        }
      }
      if (worker === undefined) return; // a reply or a reconnect calls again
      if (!this.admit(at)) return;
      this.index++;
      this.queued++;
      worker.enqueue(at);
    }
  }

  /**
   * Wakes the schedule at `at`. Deno's timers fire no sooner than about 2 ms, too coarse for a
   * schedule whose latency runs from the intended send time, so a timer covers all but the last
   * SPIN_WINDOW ms and event-loop turns (`setImmediate`, which lets I/O run between turns) cover
   * the rest: precise to a few microseconds at the price of a busy core while requests are due
   * less than SPIN_WINDOW ms apart.
   */
  #waitUntil(at: number, now: number): void {
    if (this.#waiting) return;
    this.#waiting = true;
    const delay = at - now;
    if (delay > SPIN_WINDOW) {
      this.#timer = setTimeout(this.#wake, delay - SPIN_WINDOW);
      return;
    }
    this.#immediate = setImmediate(this.#wake);
  }

  /** A worker has room again. */
  capacity(worker: ProbeLane, now: number): void {
    if (this.scheduled) this.dispatch(now);
    else worker.pump();
  }

  /** Records a completed, intact request sent at `sentAt` and answered at `now`. */
  complete(worker: ProbeLane, sentAt: number, now: number): void {
    this.completedAll++;
    this.lastActivity = now;
    if (sentAt < this.measureStart) return;
    this.received++;
    this.bytes += this.s.size;
    worker.served++;
    this.lastReplyAt = now;
    const us = (now - sentAt) * 1000;
    this.histogram.record(us);
    if (this.intervalHistogram !== undefined) this.intervalHistogram.record(us);
  }

  reply(
    connection: number,
    seq: number,
    bytes: number,
    rtt: number,
    kind: ProbeReply["kind"],
    warmup: boolean,
  ): void {
    const hook = this.options.onReply;
    if (!hook) return;
    try {
      hook({ connection, seq, bytes, rtt, kind, warmup });
    } catch (error) {
      this.fail(error);
    }
  }

  error(error: EchoError): void {
    this.errors++;
    const hook = this.options.onError;
    if (!hook) return;
    try {
      hook(error);
    } catch (e) {
      this.fail(e);
    }
  }

  /** Finishes the run once nothing more will be sent and nothing is in flight. */
  settle(): void {
    if (this.noMore && this.inflight === 0 && this.queued === 0) this.finish(false);
  }

  #onTick(): void {
    const now = performance.now();
    for (const w of this.workers) {
      w.tick(now);
      if (this.finished) return;
    }
    if (this.noMore) {
      // Nothing settles any more (a dead server, a connection that cannot come back): give up
      // a timeout after the last sign of life.
      if (now - Math.max(this.lastActivity, this.stopAt) > this.s.timeout) this.finish(false);
      else this.settle();
    }
  }

  #onEnd(): void {
    this.#endTimer = undefined;
    const now = performance.now();
    if (now < this.measureEnd) {
      this.#endTimer = setTimeout(() => this.#onEnd(), this.measureEnd - now);
      return;
    }
    if (this.scheduled && !this.noMore) {
      this.dispatch(this.measureEnd - 1e-9);
      // Requests due in the measured window that never found room are reported, not sent.
      const due = Math.ceil((this.measureEnd - this.startAt) / this.s.period);
      const firstMeasured = Math.max(
        0,
        Math.ceil((this.measureStart - this.startAt) / this.s.period),
      );
      this.unsent += Math.max(0, due - Math.max(this.index, firstMeasured));
    }
    this.#stopAdmitting(this.measureEnd);
    if (this.scheduled) {
      // Requests handed out but not yet sent when the window closed are not sent either.
      for (const w of this.workers) this.unsent += w.dropQueued();
    }
    this.settle();
  }

  #onProgress(): void {
    const now = performance.now();
    const done = this.completedAll;
    const seconds = (now - this.#progressAt) / 1000;
    const rate = seconds > 0 ? (done - this.#progressDone) / seconds : 0;
    this.#progressDone = done;
    this.#progressAt = now;
    const hook = this.options.onProgress!;
    try {
      hook({
        elapsed: now - this.startAt,
        requests: this.received,
        rate,
        errors: this.errors,
        warmup: now < this.measureStart,
      });
    } catch (error) {
      this.fail(error);
    }
  }

  #cleanup(): void {
    this.finished = true;
    this.#intervals?.stop();
    this.options.signal?.removeEventListener("abort", this.#onAbort);
    for (const t of [this.#timer, this.#endTimer]) if (t !== undefined) clearTimeout(t);
    if (this.#immediate !== undefined) clearImmediate(this.#immediate);
    for (const t of [this.#tick, this.#progress]) if (t !== undefined) clearInterval(t);
    this.closing.abort();
    for (const w of this.workers) w.close();
  }

  finish(aborted: boolean): void {
    if (this.finished) return;
    this.#aborted = aborted;
    if (aborted && this.stopAt === Infinity) this.stopAt = performance.now();
    this.#cleanup();
    const result = this.#result(aborted);
    if (this.#intervals !== undefined) {
      // The last, partial interval, with the result's own counts, so the intervals add up to it.
      try {
        this.#intervals.finish(this.measureStart + result.elapsed, result);
      } catch (error) {
        this.#reject(error);
        return;
      }
    }
    this.#resolve(result);
  }

  fail(error: unknown): void {
    if (this.finished) return;
    this.#cleanup();
    this.#reject(error);
  }

  #result(aborted: boolean): ProbeResult {
    const s = this.s;
    const now = performance.now();
    const end = Math.max(Math.min(this.stopAt, now), this.lastReplyAt);
    const elapsed = Math.max(0, end - this.measureStart);
    const t = zeroTotals();
    let served = 0;
    for (const w of this.workers) {
      served += w.served > 0 ? 1 : 0;
      w.contribute(t, now, !aborted);
    }
    // TCP lanes count `this.sent`; UDP lanes count in their trackers (`t.sent`).
    const sent = this.sent + t.sent;
    const seconds = elapsed / 1000;
    return {
      transport: s.transport,
      address: this.address,
      connections: s.connections,
      size: s.size,
      pipeline: s.pipeline,
      stream: s.stream,
      aborted: this.#aborted || aborted,
      elapsed,
      sent,
      received: this.received,
      bytes: this.bytes,
      requestsPerSecond: seconds > 0 ? this.received / seconds : 0,
      bytesPerSecond: seconds > 0 ? this.bytes / seconds : 0,
      latency: this.histogram.summary(),
      histogram: this.histogram,
      errors: this.errors,
      mismatches: this.mismatches,
      failed: this.failed,
      lost: t.lost,
      late: t.late,
      duplicates: t.duplicates,
      reordered: t.reordered,
      jitter: t.jitterWeight > 0 ? (t.jitterSum / t.jitterWeight) * 1000 : 0,
      strays: t.strays,
      outstanding: t.outstanding,
      unsent: this.unsent,
      connectionsServed: served,
      ...(s.tls !== undefined ? { tls: true } : {}),
      ...(s.url !== undefined ? { url: s.url } : {}),
    };
  }
}

/**
 * What the TCP and UDP workers share: the run, their index, and the queue of intended send times
 * handed over in scheduled modes (taken and dropped the same way on either transport).
 */
export abstract class QueuedLane implements ProbeLane {
  readonly run: ProbeRun;
  readonly index: number;
  served = 0;
  /** Scheduled mode: intended send times handed over, not yet sent. */
  protected readonly queue: Ring;

  constructor(run: ProbeRun, index: number) {
    this.run = run;
    this.index = index;
    this.queue = new Ring(run.scheduled ? Math.min(run.s.pipeline, 1024) : 1);
  }

  abstract load(): number;
  abstract ready(): boolean;
  abstract pump(): void;
  abstract tick(now: number): void;
  abstract close(): void;
  abstract contribute(totals: LaneTotals, now: number, expire: boolean): void;

  enqueue(at: number): void {
    this.queue.push(at);
    this.pump();
  }

  dropQueued(): number {
    const run = this.run;
    let measured = 0;
    while (this.queue.length > 0) {
      if (this.queue.shift() >= run.measureStart) measured++;
      run.queued--;
    }
    return measured;
  }
}
