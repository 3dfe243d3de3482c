/**
 * The WebSocket lane of {@linkcode runProbe}: one `WebSocket` per lane (`binaryType`
 * `arraybuffer`), each request one binary message of `size` bytes cut from the TCP lane's pattern
 * at the connection's message offset, so every echoed byte is checked and a reply that was
 * altered, resized, reordered or sent as text counts as a mismatch. Messages keep their order on
 * one connection, so replies are matched to requests by position, `pipeline` of them in flight.
 * `wss:` verifies the server's certificate, trusting `tls.caCerts` besides the built-in roots
 * (through a `Deno.createHttpClient` passed as the constructor's `client`).
 *
 * A connection that closes or errs with requests in flight counts an error (its requests
 * `failed`) and is opened again, as TCP's does; a request unanswered for `timeout` ms likewise.
 *
 * @module
 */
import {
  EchoConnectionError,
  type EchoError,
  EchoMismatchError,
  EchoTimeoutError,
} from "./errors.ts";
import { differsFromPattern, makePattern, PATTERN_PERIOD } from "./_probe_tcp.ts";
import type { ProbeLane, ProbeRun } from "./_probe_run.ts";
import { ConnectionLane, connectLanes, isPermissionError } from "./_probe_connection.ts";

/** How long the end of a run waits for its closing handshakes, in ms. */
const CLOSE_WAIT = 1000;

/** The HTTP client that carries the custom CAs, shared by a run's lanes and closed after them. */
class SharedClient {
  readonly client: Deno.HttpClient | undefined;
  #users: number;

  constructor(caCerts: string[] | undefined, users: number) {
    this.client = caCerts?.length ? Deno.createHttpClient({ caCerts }) : undefined;
    this.#users = users;
  }

  release(): void {
    if (--this.#users === 0) this.client?.close();
  }
}

export async function openWsLanes(run: ProbeRun): Promise<ProbeLane[]> {
  const pattern = makePattern(run.s.size);
  const shared = new SharedClient(run.s.tls?.caCerts, run.s.connections);
  const lanes = Array.from(
    { length: run.s.connections },
    (_, i) => new WsLane(run, i, pattern, shared),
  );
  return await connectLanes(run, lanes);
}

export class WsLane extends ConnectionLane {
  readonly #pattern: Uint8Array;
  readonly #shared: SharedClient;
  readonly #size: number;
  /** The open socket requests go to; undefined while (re)connecting. */
  #socket: WebSocket | undefined;
  /** A socket whose handshake is under way. */
  #connecting: WebSocket | undefined;
  /** Bumped on every (re)connect and failure; events of an older socket are ignored. */
  #gen = 0;
  /** Sockets not yet closed (their close events), for `whenClosed`. */
  readonly #open = new Set<Promise<void>>();
  /** Pattern offsets (mod the period) of the next message sent and the next one expected. */
  #sendOffset = 0;
  #recvOffset = 0;

  constructor(run: ProbeRun, index: number, pattern: Uint8Array, shared: SharedClient) {
    super(run, index, run.s.url!);
    this.#pattern = pattern;
    this.#shared = shared;
    this.#size = run.s.size;
  }

  ready(): boolean {
    return this.#socket !== undefined;
  }

  /** A new socket, its close awaited by `whenClosed`. */
  #create(): WebSocket {
    const client = this.#shared.client;
    const socket = new WebSocket(this.run.s.url!, client ? { client } : undefined);
    socket.binaryType = "arraybuffer";
    const closed = new Promise<void>((resolve) =>
      socket.addEventListener("close", () => {
        this.#open.delete(closed);
        resolve();
      }, { once: true })
    );
    this.#open.add(closed);
    return socket;
  }

  /** Opens the connection; resolves false (after counting the error) when it cannot. */
  connect(reconnect: boolean): Promise<boolean> {
    const run = this.run;
    const gen = ++this.#gen;
    const timeout = run.s.timeout;
    let socket: WebSocket;
    try {
      socket = this.#create();
    } catch (error) {
      this.lastError = isPermissionError(error) ? error : new EchoConnectionError(
        `cannot connect to ${this.where}: ${(error as Error).message}`,
        { address: run.address, cause: error },
      );
      if (reconnect) run.fail(this.lastError);
      return Promise.resolve(false);
    }
    this.#connecting = socket;
    const { promise, resolve } = Promise.withResolvers<boolean>();
    let why: string | undefined;
    /** `null`: open; `abort`: the run is closing; else why the connection failed. */
    const settle = (error: EchoError | null | "abort") => {
      clearTimeout(timer);
      run.closing.signal.removeEventListener("abort", onAbort);
      socket.onopen = socket.onerror = socket.onclose = null;
      if (this.#connecting === socket) this.#connecting = undefined;
      const stale = this.closed || run.finished || gen !== this.#gen;
      if (error === null && !stale) {
        this.#attach(socket, gen);
        if (reconnect) run.capacity(this, performance.now());
        return resolve(true);
      }
      closeSocket(socket);
      if (error === "abort") {
        this.lastError = new EchoConnectionError(`connecting to ${this.where}: aborted`, {
          address: run.address,
        });
      }
      if (stale || error === null || error === "abort") return resolve(false);
      this.lastError = error;
      if (reconnect) {
        run.error(error);
        this.scheduleReconnect();
      }
      resolve(false);
    };
    const onAbort = () => settle("abort");
    run.closing.signal.addEventListener("abort", onAbort, { once: true });
    const timer = setTimeout(
      () =>
        settle(
          new EchoTimeoutError(`no connection to ${this.where} within ${timeout}ms`, {
            address: run.address,
          }),
        ),
      timeout,
    );
    socket.onopen = () => settle(null);
    socket.onerror = (event) => void (why = (event as ErrorEvent).message);
    socket.onclose = (event) =>
      settle(
        new EchoConnectionError(
          `cannot connect to ${this.where}: ${why ?? `closed (${event.code})`}`,
          { address: run.address },
        ),
      );
    return promise;
  }

  /** Starts using an open socket: its messages are replies, its close an error. */
  #attach(socket: WebSocket, gen: number): void {
    this.#socket = socket;
    this.#sendOffset = 0;
    this.#recvOffset = 0;
    let why: string | undefined;
    socket.onmessage = (event: MessageEvent<ArrayBuffer | string>) => {
      if (gen === this.#gen) this.#onMessage(event.data);
    };
    socket.onerror = (event) => void (why = (event as ErrorEvent).message);
    socket.onclose = (event) => {
      if (gen !== this.#gen) return;
      const code = `${event.code}${event.reason ? ` ${event.reason}` : ""}`;
      this.fail(
        new EchoConnectionError(
          `${this.where} closed the connection (${code}${why ? `: ${why}` : ""})`,
          { address: this.run.address },
        ),
      );
    };
  }

  /** Sends what it may: `send()` queues without blocking, and the pipeline bounds the queue. */
  pump(): void {
    const socket = this.#socket;
    const run = this.run;
    if (socket === undefined || run.finished) return;
    const cap = run.s.pipeline;
    const inflight = this.inflight;
    try {
      if (run.scheduled) {
        const queue = this.queue;
        while (queue.length > 0 && inflight.length < cap) {
          const at = queue.shift();
          run.queued--;
          this.#send(socket, at);
        }
      } else {
        const now = performance.now();
        while (inflight.length < cap && run.admit(now)) this.#send(socket, now);
      }
    } catch (error) {
      this.fail(error);
    }
  }

  #send(socket: WebSocket, at: number): void {
    const run = this.run;
    this.inflight.push(at);
    run.inflight++;
    if (at >= run.measureStart) run.sent++;
    const offset = this.#sendOffset;
    this.#sendOffset = (offset + this.#size) % PATTERN_PERIOD;
    socket.send(this.#pattern.subarray(offset, offset + this.#size));
  }

  #onMessage(data: ArrayBuffer | string): void {
    const run = this.run;
    const now = performance.now();
    const inflight = this.inflight;
    if (inflight.length === 0) {
      run.mismatches++;
      this.fail(
        new EchoMismatchError(`${this.where} sent back a message that was not sent`, {
          address: run.address,
          offset: 0,
        }),
      );
      return;
    }
    const size = this.#size;
    const sentAt = inflight.shift();
    const seq = this.headSeq++;
    const warm = sentAt < run.measureStart;
    run.inflight--;
    const offset = this.#recvOffset;
    this.#recvOffset = (offset + size) % PATTERN_PERIOD;
    const reply = typeof data === "string" ? undefined : new Uint8Array(data);
    const intact = reply !== undefined && reply.length === size &&
      !differsFromPattern(reply, 0, size, this.#pattern, offset);
    if (intact) {
      run.complete(this, sentAt, now);
      if (run.options.onReply) run.reply(this.index, seq, size, now - sentAt, "reply", warm);
    } else {
      run.completedAll++;
      run.lastActivity = now;
      if (!warm) run.mismatches++;
      const bytes = reply?.length ?? new TextEncoder().encode(data as string).length;
      run.reply(this.index, seq, bytes, now - sentAt, "mismatch", warm);
    }
    if (run.finished) return;
    if (run.noMore) run.settle();
    if (!run.finished) run.capacity(this, now);
  }

  protected fail(error: unknown): void {
    this.#gen++;
    const socket = this.#socket;
    this.#socket = undefined;
    if (socket !== undefined) closeSocket(socket);
    this.failConnection(error, (e) => (e as Error)?.message ?? String(e));
  }

  close(): void {
    this.stopReconnecting();
    this.#gen++;
    for (const socket of [this.#socket, this.#connecting]) {
      if (socket !== undefined) closeSocket(socket);
    }
    this.#socket = this.#connecting = undefined;
  }

  /** Waits (at most CLOSE_WAIT ms) for this lane's sockets to close, then lets go of the client. */
  override async whenClosed(): Promise<void> {
    if (this.#open.size > 0) {
      let timer: ReturnType<typeof setTimeout> | undefined;
      const limit = new Promise<void>((resolve) => timer = setTimeout(resolve, CLOSE_WAIT));
      await Promise.race([Promise.all(this.#open), limit]);
      clearTimeout(timer);
    }
    this.#shared.release();
  }
}

/** Starts a socket's closing handshake (1000), whatever its state; never throws. */
function closeSocket(socket: WebSocket): void {
  socket.onmessage =
    socket.onopen =
    socket.onerror =
    socket.onclose =
      null;
  try {
    if (socket.readyState === WebSocket.OPEN || socket.readyState === WebSocket.CONNECTING) {
      socket.close(1000);
    }
  } catch {
    // already closing
  }
}
