/**
 * The UDP lane of {@linkcode runProbe}: one socket per lane, a send loop and a receive loop; each
 * probe carries the run id, its sequence number and its send time, and a
 * {@linkcode SequenceTracker} per socket classifies replies (loss, lateness, duplicates, order).
 *
 * @module
 */
import { describeNetworkError, EchoConnectionError, formatAddress } from "./errors.ts";
import { decodeProbe, encodeProbe, type Probe, SequenceTracker, verifyProbe } from "./sequence.ts";
import { resolveHost } from "./udp.ts";
import type { UdpBackend } from "./_udp_backend.ts";
import { RECEIVE_BUFFER_SIZE } from "./_udp_backend.ts";
import { bindUdp } from "./_udp_bind.ts";
import { type LaneTotals, type ProbeLane, type ProbeRun, QueuedLane } from "./_probe_run.ts";

export async function openUdpLanes(run: ProbeRun): Promise<ProbeLane[]> {
  let ip: string;
  try {
    ip = await resolveHost(run.s.hostname);
  } catch (error) {
    throw new EchoConnectionError(
      `cannot resolve ${run.s.hostname}: ${describeNetworkError(error)}`,
      { address: run.address, cause: error },
    );
  }
  const v6 = ip.includes(":");
  const loopback = ip === "::1" || /^127\./.test(ip);
  const bindHost = loopback ? (v6 ? "::1" : "127.0.0.1") : (v6 ? "::" : "0.0.0.0");
  const runId = new Uint32Array(1);
  crypto.getRandomValues(runId);
  const sockets: UdpBackend[] = [];
  try {
    for (let i = 0; i < run.s.connections; i++) {
      sockets.push(await bindUdp({ hostname: bindHost, port: 0, backend: run.options.backend }));
    }
  } catch (error) {
    for (const socket of sockets) socket.close();
    if (error instanceof TypeError) throw error;
    throw new EchoConnectionError(`cannot open a UDP socket: ${describeNetworkError(error)}`, {
      address: run.address,
      cause: error,
    });
  }
  const target: Deno.NetAddr = { transport: "udp", hostname: ip, port: run.s.port };
  return sockets.map((socket, i) => new UdpLane(run, i, socket, target, runId[0]));
}

export class UdpLane extends QueuedLane {
  /** Datagrams that were not replies of this run. */
  strays = 0;

  readonly #socket: UdpBackend;
  readonly #target: Deno.NetAddr;
  readonly #runId: number;
  readonly #send: Uint8Array;
  readonly #recv = new Uint8Array(RECEIVE_BUFFER_SIZE);
  readonly #probe: Probe;
  readonly #decoded: Probe = { runId: 0, seq: 0, sentAt: 0 };
  readonly #window: number;
  /** The tracker new probes go to; the warm-up one is kept apart once measuring starts. */
  #tracker: SequenceTracker;
  #warm: SequenceTracker | undefined;
  /** First sequence number of the measured part; Infinity while warming up. */
  #boundary = Infinity;
  #nextSeq = 0;
  /** Probes sent and not settled (replied, lost or late) on this socket. */
  #inflight = 0;
  #sending = false;
  #closed = false;

  constructor(
    run: ProbeRun,
    index: number,
    socket: UdpBackend,
    target: Deno.NetAddr,
    runId: number,
  ) {
    super(run, index);
    this.#socket = socket;
    this.#target = target;
    this.#runId = runId;
    this.#send = new Uint8Array(run.s.size);
    this.#probe = { runId, seq: 0, sentAt: 0 };
    const pipeline = run.s.pipeline;
    // The window must hold every probe that can be in flight, and leave room for late replies.
    this.#window = Math.min(65_536, Math.max(1024, Math.min(pipeline, 16_384) * 4));
    this.#tracker = new SequenceTracker({ timeout: run.s.timeout, window: this.#window });
    if (run.s.warmup === 0) this.#boundary = 0;
    void this.#receiveLoop();
  }

  /** The tracker of the measured part, or undefined when nothing was measured. */
  measured(): SequenceTracker | undefined {
    return this.#boundary === Infinity ? undefined : this.#tracker;
  }

  load(): number {
    return this.#inflight + this.queue.length;
  }

  ready(): boolean {
    return !this.#closed;
  }

  pump(): void {
    if (this.#sending || this.#closed || this.run.finished) return;
    this.#sending = true;
    void this.#sendLoop();
  }

  async #sendLoop(): Promise<void> {
    const run = this.run;
    const cap = run.s.pipeline;
    const probe = this.#probe;
    const buffer = this.#send;
    for (;;) {
      if (this.#closed || run.finished || this.#inflight >= cap) break;
      let at: number;
      if (run.scheduled) {
        if (this.queue.length === 0) break;
        at = this.queue.shift();
        run.queued--;
      } else {
        at = performance.now();
        if (!run.admit(at)) break;
      }
      const seq = this.#nextSeq++;
      if (this.#boundary === Infinity && at >= run.measureStart) {
        // The measured part starts: warm-up probes keep their own tracker.
        this.#boundary = seq;
        if (seq > 0) {
          this.#warm = this.#tracker;
          this.#tracker = new SequenceTracker({ timeout: run.s.timeout, window: this.#window });
        }
      }
      probe.seq = seq;
      probe.sentAt = at;
      encodeProbe(buffer, probe);
      this.#tracker.sent(seq, at);
      this.#inflight++;
      run.inflight++;
      try {
        await this.#socket.send(buffer, this.#target);
      } catch (error) {
        if (this.#closed || run.finished) break;
        run.error(
          new EchoConnectionError(
            `cannot send to udp ${formatAddress(run.address)}: ${describeNetworkError(error)}`,
            { address: run.address, cause: error },
          ),
        );
      }
    }
    this.#sending = false;
  }

  async #receiveLoop(): Promise<void> {
    const buffer = this.#recv;
    for (;;) {
      let datagram;
      try {
        datagram = await this.#socket.receive(buffer);
      } catch (error) {
        if (this.#closed || this.run.finished) return;
        if (error instanceof Deno.errors.BadResource || error instanceof Deno.errors.Interrupted) {
          return;
        }
        this.run.error(
          new EchoConnectionError(
            `receive from udp ${formatAddress(this.run.address)} failed: ${
              describeNetworkError(error)
            }`,
            { address: this.run.address, cause: error },
          ),
        );
        continue;
      }
      if (this.#closed || this.run.finished) return;
      try {
        this.#onDatagram(datagram.data, datagram.addr);
      } catch (error) {
        this.run.fail(error);
        return;
      }
    }
  }

  #onDatagram(data: Uint8Array, from: Deno.NetAddr): void {
    const run = this.run;
    const target = this.#target;
    if (from.port !== target.port || from.hostname !== target.hostname) {
      this.strays++;
      return;
    }
    const now = performance.now();
    const probe = decodeProbe(data, this.#decoded);
    if (probe !== undefined && probe.runId !== this.#runId) {
      this.strays++;
      return;
    }
    if (probe === undefined || data.length !== run.s.size || !verifyProbe(data, probe)) {
      // From the server but not intact: which probe it was cannot be trusted, so that probe
      // runs into its timeout (lost) unless an intact reply follows.
      const seq = probe?.seq ?? -1;
      const warm = seq >= 0 && seq < this.#boundary;
      if (!warm) run.mismatches++;
      run.lastActivity = now;
      run.reply(this.index, seq, data.length, probe ? now - probe.sentAt : NaN, "mismatch", warm);
      return;
    }
    const seq = probe.seq;
    const warm = seq < this.#boundary;
    const tracker = warm ? this.#warm ?? this.#tracker : this.#tracker;
    const expired = tracker.expire(now);
    if (expired > 0) this.#settled(expired);
    const sentAt = probe.sentAt;
    if (now < sentAt) {
      if (!warm) run.mismatches++;
      run.reply(this.index, seq, data.length, NaN, "mismatch", warm);
      return;
    }
    const kind = tracker.received(seq, now);
    if (kind === "unknown") {
      this.strays++;
    } else if (kind === "reply") {
      this.#settled(1);
      run.complete(this, sentAt, now);
      if (run.options.onReply) run.reply(this.index, seq, data.length, now - sentAt, kind, warm);
    } else {
      run.lastActivity = now;
      run.reply(this.index, seq, data.length, now - sentAt, kind, warm);
    }
    if (run.finished) return;
    if (kind === "reply" || expired > 0) {
      if (run.noMore) run.settle();
      if (!run.finished) run.capacity(this, now);
    }
  }

  #settled(n: number): void {
    this.#inflight -= n;
    this.run.inflight -= n;
  }

  tick(now: number): void {
    let expired = this.#tracker.expire(now);
    if (this.#warm) expired += this.#warm.expire(now);
    if (expired > 0) {
      this.#settled(expired);
      this.run.lastActivity = now;
      if (this.run.noMore) this.run.settle();
      if (!this.run.finished) this.run.capacity(this, now);
    }
  }

  contribute(totals: LaneTotals, now: number, expire: boolean): void {
    totals.strays += this.strays;
    const t = this.measured();
    if (!t) return;
    if (expire) t.expire(now);
    const st = t.stats;
    totals.sent += st.sent;
    totals.lost += st.lost;
    totals.late += st.late;
    totals.duplicates += st.duplicates;
    totals.reordered += st.reordered;
    totals.strays += st.unknown;
    totals.outstanding += st.outstanding;
    if (st.received > 1) {
      totals.jitterSum += st.jitter * st.received;
      totals.jitterWeight += st.received;
    }
  }

  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#socket.close();
  }
}
