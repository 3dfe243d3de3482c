/**
 * The live view's event feed, owned by `ws.ts`: servers push connection, close, datagram and
 * refusal events into one {@linkcode EventFeed}; the feed sends them, batched, to every viewer (a
 * WebSocket at `/events`), with counter snapshots.
 *
 * Pushing never waits and costs the same whatever the number of viewers: an event is written into
 * one shared ring and every viewer keeps its own read position in it. A viewer that falls more than
 * a ring behind (its socket still busy with earlier batches) loses the oldest events, counted and
 * reported to it as `dropped`, so a slow viewer can neither slow the echo nor hold memory.
 *
 * @module
 */
import type { CidrList } from "./cidr.ts";
import { isLoopback } from "./cidr.ts";
import type { EchoError } from "./errors.ts";
import { formatAddress } from "./errors.ts";
import type {
  CloseInfo,
  ConnectionInfo,
  DatagramInfo,
  EchoHooks,
  ListenInfo,
  RejectInfo,
} from "./types.ts";
import type { EchoStats } from "./stats.ts";

/** Which transport an event came on. */
export type FeedTransport = "tcp" | "udp" | "ws" | "unix";

/** What happened. */
export type FeedEventKind = "listen" | "connection" | "close" | "datagram" | "reject" | "error";

/** One event of the live view. */
export interface FeedEvent {
  /** What happened. */
  kind: FeedEventKind;
  /** Which transport. */
  transport: FeedTransport;
  /** When, in ms since the epoch; set by {@linkcode EventFeed.push} when left out. */
  time?: number;
  /** The client, `host:port`. */
  remote?: string;
  /** Session number (connection, close). */
  id?: number;
  /** Payload bytes: of the datagram, or echoed on the session (close). */
  bytes?: number;
  /** Session length in ms (close). */
  duration?: number;
  /** Why: the close reason, the refusal reason, or the error text. */
  reason?: string;
  /** More about the reason (a guard rule, a close code). */
  detail?: string;
  /** The first bytes of the payload as printable text (datagrams, messages). */
  preview?: string;
}

/** Options of {@linkcode EventFeed}. */
export interface EventFeedOptions {
  /** Events kept in the ring; a viewer further behind loses the oldest. Default 512. */
  capacity?: number;
  /** Events a new viewer is sent from before it connected. Default 50. */
  history?: number;
  /** Batches are sent at most this often, in ms. Default 100. */
  batchInterval?: number;
  /** Counter snapshots are sent this often, in ms. Default 1000. */
  statsInterval?: number;
  /** The counters to snapshot. */
  stats?: EchoStats;
  /** A viewer whose socket holds more than this many bytes unsent is skipped. Default 1 MiB. */
  maxViewerBuffered?: number;
  /** Most viewers at once. Default 8. */
  maxViewers?: number;
}

/** A message the feed sends to its viewers, as JSON text. */
export type FeedMessage =
  | { type: "hello"; capacity: number; statsInterval: number }
  | { type: "events"; events: FeedEvent[]; dropped: number }
  | { type: "stats"; stats: EchoStats | undefined; viewers: number; time: number };

/** Longest payload preview, in characters. */
export const PREVIEW_LENGTH = 32;

interface Viewer {
  socket: WebSocket;
  /** How many events (counting from the first ever pushed) this viewer has been sent. */
  cursor: number;
  /** Events this viewer lost by falling behind. */
  dropped: number;
}

/**
 * Collects server events and sends them to live viewers.
 *
 * @example Feeding a TCP server's hooks into the feed
 * ```ts
 * import { EventFeed } from "./_event_feed.ts";
 * import { echoTcp, serveTcpEcho } from "./mod.ts";
 * const feed = new EventFeed();
 * await using server = serveTcpEcho({ port: 0, ...feed.hooks("tcp") });
 * await echoTcp("hi", { port: server.addr.port });
 * console.log(feed.pushed >= 1); // true
 * feed.close();
 * ```
 */
export class EventFeed {
  readonly #ring: (FeedEvent | undefined)[];
  readonly #capacity: number;
  readonly #history: number;
  readonly #batchInterval: number;
  readonly #statsInterval: number;
  readonly #maxBuffered: number;
  readonly #maxViewers: number;
  #stats?: EchoStats;
  #head = 0;
  #dropped = 0;
  #viewers = new Set<Viewer>();
  #batchTimer?: ReturnType<typeof setTimeout>;
  #statsTimer?: ReturnType<typeof setInterval>;
  #refed = true;
  #closed = false;

  /**
   * Creates a feed with no viewers.
   *
   * @param options Ring size, intervals and caps, and the counters to snapshot.
   * @throws {RangeError} When a size or interval is not a positive number.
   */
  constructor(options: EventFeedOptions = {}) {
    this.#capacity = positive(options.capacity ?? 512, "capacity");
    this.#history = Math.min(this.#capacity, positive(options.history ?? 50, "history", 0));
    this.#batchInterval = positive(options.batchInterval ?? 100, "batchInterval");
    this.#statsInterval = positive(options.statsInterval ?? 1000, "statsInterval");
    this.#maxBuffered = positive(options.maxViewerBuffered ?? 1 << 20, "maxViewerBuffered");
    this.#maxViewers = positive(options.maxViewers ?? 8, "maxViewers");
    this.#stats = options.stats;
    this.#ring = new Array(this.#capacity);
  }

  /** Events pushed since the feed was made. */
  get pushed(): number {
    return this.#head;
  }

  /** Viewers connected now. */
  get viewers(): number {
    return this.#viewers.size;
  }

  /** Events lost by viewers that fell behind, summed over every viewer so far. */
  get dropped(): number {
    return this.#dropped;
  }

  /**
   * The counters the snapshots show (set by the server that owns the feed when not given).
   *
   * @param stats The counters.
   */
  set stats(stats: EchoStats | undefined) {
    this.#stats = stats;
  }

  /** The counters the snapshots show. */
  get stats(): EchoStats | undefined {
    return this.#stats;
  }

  /**
   * Records one event: constant time, never waits, whatever the viewers do.
   *
   * @param event The event (`time` is set when missing). The feed keeps the object.
   */
  push(event: FeedEvent): void {
    event.time ??= Date.now();
    this.#ring[this.#head % this.#capacity] = event;
    this.#head++;
    if (this.#viewers.size > 0 && this.#batchTimer === undefined && !this.#closed) {
      this.#batchTimer = setTimeout(() => this.#flush(), this.#batchInterval);
      if (!this.#refed) Deno.unrefTimer(this.#batchTimer);
    }
  }

  /**
   * Hooks that push a transport's events into this feed, to spread into a server's options (the
   * payload preview is copied, since the hooks' buffers are reused).
   *
   * @param transport What the events are labelled with.
   * @returns `onListen`, `onConnection`, `onClose`, `onDatagram`, `onReject` and `onError`.
   */
  hooks(transport: FeedTransport): Required<Omit<EchoHooks, "onData">> {
    return {
      onListen: (info: ListenInfo) =>
        this.push({ kind: "listen", transport: info.transport, remote: formatAddress(info) }),
      onConnection: (info: ConnectionInfo) =>
        this.push({
          kind: "connection",
          transport,
          id: info.id,
          remote: formatAddress(info.remoteAddr),
        }),
      onClose: (info: CloseInfo) =>
        this.push({
          kind: "close",
          transport,
          id: info.id,
          remote: formatAddress(info.remoteAddr),
          bytes: info.bytes,
          duration: Math.round(info.duration),
          reason: info.reason,
        }),
      onDatagram: (info: DatagramInfo) =>
        this.push({
          kind: "datagram",
          transport: "udp",
          remote: formatAddress(info.remoteAddr),
          bytes: info.data.length,
          preview: preview(info.data),
        }),
      onReject: (info: RejectInfo) =>
        this.push({
          kind: "reject",
          transport: info.transport,
          remote: formatAddress(info.remoteAddr),
          reason: info.reason,
          detail: info.detail,
        }),
      onError: (error: EchoError) =>
        this.push({ kind: "error", transport, reason: error.message.slice(0, 200) }),
    };
  }

  /**
   * Adds a viewer: an open (or opening) WebSocket the feed sends batches and snapshots to. It is
   * removed when it closes.
   *
   * @param socket The viewer's socket.
   * @returns false (and the socket closed with 1013) when the feed already has `maxViewers`.
   */
  addViewer(socket: WebSocket): boolean {
    if (this.#closed || this.#viewers.size >= this.#maxViewers) {
      const close = () => socket.close(1013, "too many live viewers; try again later");
      if (socket.readyState === WebSocket.OPEN) close();
      else socket.addEventListener("open", close, { once: true });
      return false;
    }
    const viewer: Viewer = {
      socket,
      cursor: Math.max(0, this.#head - this.#history),
      dropped: 0,
    };
    const start = () => {
      this.#viewers.add(viewer);
      send(viewer, {
        type: "hello",
        capacity: this.#capacity,
        statsInterval: this.#statsInterval,
      });
      this.#sendStats(viewer);
      this.#flush();
      if (this.#statsTimer === undefined) {
        this.#statsTimer = setInterval(() => {
          for (const v of this.#viewers) this.#sendStats(v);
        }, this.#statsInterval);
        if (!this.#refed) Deno.unrefTimer(this.#statsTimer);
      }
    };
    socket.addEventListener("close", () => {
      this.#viewers.delete(viewer);
      if (this.#viewers.size === 0) this.#stopTimers();
    });
    // A viewer only listens; what it sends is ignored.
    if (socket.readyState === WebSocket.OPEN) start();
    else socket.addEventListener("open", start, { once: true });
    return true;
  }

  /** Makes the feed's timers keep the process alive (the default). */
  ref(): void {
    this.#refed = true;
    if (this.#batchTimer !== undefined) Deno.refTimer(this.#batchTimer);
    if (this.#statsTimer !== undefined) Deno.refTimer(this.#statsTimer);
  }

  /** Lets the process exit while the feed's timers run. */
  unref(): void {
    this.#refed = false;
    if (this.#batchTimer !== undefined) Deno.unrefTimer(this.#batchTimer);
    if (this.#statsTimer !== undefined) Deno.unrefTimer(this.#statsTimer);
  }

  /**
   * Sends what is pending, closes every viewer (1001) and stops the timers. Pushes still record.
   *
   * @param reason The close reason the viewers are given.
   */
  close(reason = "server shutting down"): void {
    if (this.#closed) return;
    this.#flush();
    this.#closed = true;
    for (const viewer of this.#viewers) viewer.socket.close(1001, reason);
    this.#viewers.clear();
    this.#stopTimers();
  }

  #stopTimers(): void {
    clearTimeout(this.#batchTimer);
    clearInterval(this.#statsTimer);
    this.#batchTimer = this.#statsTimer = undefined;
  }

  #sendStats(viewer: Viewer): void {
    if (viewer.socket.bufferedAmount > this.#maxBuffered) return;
    send(viewer, {
      type: "stats",
      stats: this.#stats,
      viewers: this.#viewers.size,
      time: Date.now(),
    });
  }

  #flush(): void {
    this.#batchTimer = undefined;
    let lagging = false;
    // Viewers at the same position share one serialised batch.
    let shared: { from: number; text: string } | undefined;
    for (const viewer of this.#viewers) {
      if (viewer.cursor === this.#head || viewer.socket.readyState !== WebSocket.OPEN) continue;
      if (viewer.socket.bufferedAmount > this.#maxBuffered) {
        lagging = true;
        continue;
      }
      const oldest = this.#head - this.#capacity;
      if (viewer.cursor < oldest) {
        viewer.dropped += oldest - viewer.cursor;
        this.#dropped += oldest - viewer.cursor;
        viewer.cursor = oldest;
      }
      const shareable = viewer.dropped === 0;
      if (!shareable || shared?.from !== viewer.cursor) {
        const events: FeedEvent[] = [];
        for (let i = viewer.cursor; i < this.#head; i++) {
          events.push(this.#ring[i % this.#capacity]!);
        }
        const message: FeedMessage = { type: "events", events, dropped: viewer.dropped };
        const text = JSON.stringify(message);
        if (shareable) shared = { from: viewer.cursor, text };
        viewer.socket.send(text);
      } else {
        viewer.socket.send(shared.text);
      }
      viewer.cursor = this.#head;
    }
    // A viewer that was skipped is tried again later; it loses events only once overtaken.
    if (lagging && !this.#closed) {
      this.#batchTimer = setTimeout(() => this.#flush(), this.#batchInterval);
      if (!this.#refed) Deno.unrefTimer(this.#batchTimer);
    }
  }
}

/**
 * Whether a client may watch the feed: it shows every client's address and payloads, so only
 * loopback viewers may, and those `eventsFrom` admits.
 *
 * @example
 * ```ts
 * import { mayWatch } from "./_event_feed.ts";
 * import { CidrList } from "./cidr.ts";
 * console.log(mayWatch("127.0.0.1"), mayWatch("10.1.2.3")); // true false
 * console.log(mayWatch("10.1.2.3", new CidrList(["10.0.0.0/8"]))); // true
 * ```
 *
 * @param hostname The viewer's address.
 * @param eventsFrom Who else may watch.
 * @returns Whether it may.
 */
export function mayWatch(hostname: string, eventsFrom?: CidrList): boolean {
  return isLoopback(hostname) || Boolean(eventsFrom?.matches(hostname));
}

function send(viewer: Viewer, message: FeedMessage): void {
  if (viewer.socket.readyState === WebSocket.OPEN) viewer.socket.send(JSON.stringify(message));
}

function positive(value: number, name: string, min = 1): number {
  if (typeof value !== "number" || !Number.isFinite(value) || value < min) {
    throw new RangeError(`${name} must be a number of at least ${min}, got ${value}`);
  }
  return value;
}

/**
 * The first bytes of a payload as printable text: printable ASCII as is, anything else as `.`,
 * and `…` when cut.
 *
 * @example
 * ```ts
 * import { preview } from "./_event_feed.ts";
 * console.log(preview(new Uint8Array([104, 105, 0, 10]))); // "hi.."
 * console.log(preview("line\nbreak")); // "line.break"
 * ```
 *
 * @param data Bytes or text.
 * @returns At most {@linkcode PREVIEW_LENGTH} characters, plus `…` when cut.
 */
export function preview(data: Uint8Array | string): string {
  const n = Math.min(data.length, PREVIEW_LENGTH);
  let text = "";
  for (let i = 0; i < n; i++) {
    const c = typeof data === "string" ? data.charCodeAt(i) : data[i];
    text += c >= 0x20 && c < 0x7f ? String.fromCharCode(c) : ".";
  }
  return data.length > n ? `${text}…` : text;
}
