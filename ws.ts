/**
 * WebSocket echo (RFC 6455) on `Deno.serve` and `Deno.upgradeWebSocket`: {@linkcode serveWsEcho}
 * (the server, with the live page at `GET /` and its event feed at `/events`) and
 * {@linkcode echoWs} (one message, verified).
 *
 * What the runtime does and what this module adds (Deno 2.9):
 * - Framing, masking, fragment reassembly, ping → pong and the close handshake (the client's close
 *   code and reason are sent back) are the runtime's.
 * - Invalid UTF-8 in a text message: the runtime drops the connection without a close frame, so
 *   the client sees 1006, not 1007; JavaScript only learns of it afterwards and cannot send 1007.
 * - Message size: the runtime refuses a single frame of 64 MiB or more (dropping the connection,
 *   1006) before buffering it, but reassembles fragmented messages without a cap. This module
 *   closes with 1009 any message above `maxMessage` once it has arrived; a fragmented message is
 *   therefore buffered whole before it can be refused.
 * - The runtime neither checks `Sec-WebSocket-Version` nor the key's form: this module answers 400.
 * - Backpressure: the runtime reads messages as fast as they come (a WebSocket cannot be paused)
 *   and `send()` never blocks; `bufferedAmount` counts the echoes queued. So `maxBuffered` is the
 *   window a client may have in flight: a session whose queue passes it (a client that does not
 *   read, or pipelines more than that) is closed with 1008 and counted. The close frame waits
 *   behind the queue, so such a client usually sees the connection drop (1006).
 *
 * @module
 */
import { Buffer } from "node:buffer";
import type { EchoAddress } from "./errors.ts";
import {
  EchoConnectionError,
  type EchoError,
  EchoMismatchError,
  EchoTimeoutError,
  formatAddress,
} from "./errors.ts";
import { CidrList } from "./cidr.ts";
import { callHook, reportError } from "./_hooks.ts";
import { policyOf } from "./_policy.ts";
import type {
  CloseReason,
  RejectReason,
  TlsServerOptions,
  WsHooks,
  WsListenInfo,
  WsOptions,
} from "./types.ts";
import { DEFAULT_GRACE_PERIOD, DEFAULT_HOSTNAME } from "./types.ts";
import type { EchoStats, TransportCounters, WsCounters } from "./stats.ts";
import { createStats, recordSessionDuration, transportCounters } from "./stats.ts";
import type { TlsClientOptions } from "./tcp.ts";
import type { WsUrlOptions } from "./_ws_options.ts";
import {
  firstDifference,
  isTlsMaterialError,
  listenError,
  tlsMaterialError,
  toBytes,
} from "./_util.ts";
import { checkTlsPem } from "./_validate.ts";
import { EventFeed, mayWatch } from "./_event_feed.ts";
import { WS_PAGE } from "./_ws_page.ts";
import {
  DEFAULT_WS_KEEP_ALIVE,
  DEFAULT_WS_MAX_BUFFERED,
  DEFAULT_WS_MAX_MESSAGE,
  DEFAULT_WS_PORT,
  validateWsOptions,
  wsAddress,
  wsUrl,
} from "./_ws_options.ts";

export { EventFeed } from "./_event_feed.ts";
// The info and hook types live in types.ts (serveEcho's `ws` option uses them); named here too.
export type {
  WsCloseInfo,
  WsConnectionInfo,
  WsHooks,
  WsListenInfo,
  WsMessageInfo,
  WsOptions,
  WsRejectInfo,
} from "./types.ts";
export type {
  EventFeedOptions,
  FeedEvent,
  FeedEventKind,
  FeedMessage,
  FeedTransport,
} from "./_event_feed.ts";

export {
  DEFAULT_WS_KEEP_ALIVE,
  DEFAULT_WS_MAX_BUFFERED,
  DEFAULT_WS_MAX_MESSAGE,
  DEFAULT_WS_PORT,
  validateWsOptions,
  WS_MAX_MESSAGE_LIMIT,
  wsUrl,
  type WsUrlOptions,
} from "./_ws_options.ts";

/** Options of {@linkcode serveWsEcho}: the WebSocket echo's own, its hooks, and the server's. */
export interface WsEchoOptions extends WsHooks, WsOptions {
  /** Address to bind. Default `127.0.0.1`. */
  hostname?: string;
  /** Serve `wss:` (and the page over https) with this certificate and key. */
  tls?: TlsServerOptions;
  /** Aborting it shuts the server down, like calling `shutdown()`. */
  signal?: AbortSignal;
  /** How long `shutdown()` waits for clients to answer the 1001 close, in ms. Default 3000. */
  gracePeriod?: number;
  /** Counters to add to (a `ws` share is added to them); a new set by default. */
  stats?: EchoStats;
  /** Only clients in these CIDR ranges are served (page and echo); others get 403. */
  allow?: readonly string[];
  /** Most echo sessions open at once; beyond it upgrades get 503. Default as for TCP. */
  maxConnections?: number;
  /** A session with no message for this long (ms) is closed (1001). Default 5 min; 0 = off. */
  idleTimeout?: number;
  /** The feed `/events` serves; a new one by default, `false` for none. */
  feed?: EventFeed | false;
}

/** A running WebSocket echo server, shaped like the project's `EchoServer`. */
export interface WsEchoServer extends AsyncDisposable {
  /** The address actually bound. */
  readonly addr: Deno.NetAddr;
  /** The listener. */
  readonly listeners: readonly WsListenInfo[];
  /** The echo's URL. */
  readonly url: string;
  /** Live counters (`stats.ws` holds the WebSocket share). */
  readonly stats: EchoStats;
  /** The live view's feed, when there is one: push other transports' events into it. */
  readonly feed: EventFeed | undefined;
  /** Settles when the server has stopped and every session has ended. */
  readonly finished: Promise<void>;
  /** Closes every session with 1001, waits up to the grace period, then stops. */
  shutdown(): Promise<void>;
  /** Makes the server keep the process alive (the default). */
  ref(): void;
  /** Lets the process exit while the server listens (open sessions still hold it). */
  unref(): void;
}

interface Session {
  id: number;
  socket: WebSocket;
  remoteAddr: Deno.NetAddr;
  path: string;
  start: number;
  lastActive: number;
  bytes: number;
  messages: number;
  opened: boolean;
  ended: boolean;
  closedBy?: CloseReason;
  error?: string;
  closeTimer?: ReturnType<typeof setTimeout>;
  done: () => void;
}

/** A Sec-WebSocket-Key: 16 bytes, base64. */
const KEY = /^[A-Za-z0-9+/]{21}[AQgw]==$/;

/**
 * Creates zeroed WebSocket counters.
 *
 * @example
 * ```ts
 * import { createWsCounters } from "./ws.ts";
 * console.log(createWsCounters().messagesIn); // 0
 * ```
 *
 * @returns New counters.
 */
export function createWsCounters(): WsCounters {
  return {
    sessionsOpen: 0,
    sessionsTotal: 0,
    messagesIn: 0,
    messagesOut: 0,
    bytesIn: 0,
    bytesOut: 0,
    tooBig: 0,
    slow: 0,
    protocolErrors: 0,
    badRequests: 0,
    upgradeRequired: 0,
    pages: 0,
    viewersRefused: 0,
  };
}

/**
 * Starts a WebSocket echo: any path upgrades and echoes every message with its type, byte-exact;
 * `GET /` serves the live page; `/events` streams the event feed to loopback viewers (and those in
 * `eventsFrom`); other plain requests get 426.
 *
 * @example
 * ```ts
 * import { echoWs, serveWsEcho } from "./ws.ts";
 * await using server = serveWsEcho({ port: 0 });
 * const { reply } = await echoWs("Hello World", { url: server.url });
 * console.log(reply); // "Hello World"
 * ```
 *
 * @example Over TLS (wss:)
 * ```ts
 * import { echoWs, serveWsEcho } from "./ws.ts";
 * const cert = await Deno.readTextFile("./tests/fixtures/tls_cert.pem");
 * const key = await Deno.readTextFile("./tests/fixtures/tls_key.pem");
 * await using server = serveWsEcho({ port: 0, tls: { cert, key } });
 * const { reply } = await echoWs(new Uint8Array([1, 2]), {
 *   url: server.url,
 *   tls: { caCerts: [cert] },
 * });
 * console.log(server.url.startsWith("wss://"), reply); // true Uint8Array(2) [ 1, 2 ]
 * ```
 *
 * @param options Where to listen, TLS, limits, hooks and the feed.
 * @returns The running server.
 * @throws {EchoConnectionError} When the address cannot be bound.
 * @throws {RangeError} When a limit is out of range.
 * @throws {TypeError} On a bad CIDR rule or unusable TLS material.
 */
export function serveWsEcho(options: WsEchoOptions = {}): WsEchoServer {
  return new WsServer(options);
}

class WsServer implements WsEchoServer {
  readonly addr: Deno.NetAddr;
  readonly listeners: readonly WsListenInfo[];
  readonly url: string;
  readonly stats: EchoStats;
  readonly feed: EventFeed | undefined;
  readonly finished: Promise<void>;
  readonly #options: WsEchoOptions;
  readonly #errorHooks: { onError?: (error: EchoError) => void };
  readonly #ws: WsCounters;
  /** The `ws` share of the per-transport counters (`/metrics` labels them). */
  readonly #counters: TransportCounters;
  readonly #http: Deno.HttpServer<Deno.NetAddr>;
  readonly #acl?: CidrList;
  readonly #viewersFrom?: CidrList;
  readonly #maxConnections: number;
  readonly #idleTimeout: number;
  readonly #keepAlive: number;
  readonly #maxMessage: number;
  readonly #maxBuffered: number;
  readonly #grace: number;
  readonly #sessions = new Set<Session>();
  #sweeper?: ReturnType<typeof setInterval>;
  #nextId = 1;
  #stopping?: Promise<void>;
  #refed = true;

  constructor(options: WsEchoOptions) {
    const { stream: policy } = policyOf({
      allow: options.allow,
      maxConnections: options.maxConnections,
      idleTimeout: options.idleTimeout,
      gracePeriod: options.gracePeriod,
    });
    this.#acl = policy.acl;
    this.#maxConnections = policy.maxConnections;
    this.#idleTimeout = policy.idleTimeout;
    validateWsOptions(options);
    this.#keepAlive = options.keepAlive ?? DEFAULT_WS_KEEP_ALIVE;
    this.#maxMessage = options.maxMessage ?? DEFAULT_WS_MAX_MESSAGE;
    this.#maxBuffered = options.maxBuffered ?? DEFAULT_WS_MAX_BUFFERED;
    this.#grace = options.gracePeriod ?? DEFAULT_GRACE_PERIOD;
    this.#viewersFrom = options.eventsFrom ? new CidrList(options.eventsFrom) : undefined;
    const tls = options.tls;
    checkTlsPem(tls);
    this.#options = options;
    this.#errorHooks = { onError: options.onError };
    this.stats = options.stats ?? createStats();
    this.#ws = this.stats.ws ??= createWsCounters();
    this.#counters = transportCounters(this.stats, "ws");
    this.feed = options.feed === false ? undefined : options.feed ?? new EventFeed();
    if (this.feed && !this.feed.stats) this.feed.stats = this.stats;
    const hostname = options.hostname ?? DEFAULT_HOSTNAME;
    const port = options.port ?? DEFAULT_WS_PORT;
    try {
      this.#http = Deno.serve({
        hostname,
        port,
        ...(tls ? { cert: tls.cert, key: tls.key } : {}),
        onListen: () => {},
        onError: (error) => {
          reportError(this.#errorHooks, "request failed", error);
          return new Response("internal error\n", { status: 500 });
        },
      }, (request, info) => this.#handle(request, info.remoteAddr));
    } catch (error) {
      if (tls && isTlsMaterialError(error)) throw tlsMaterialError(error);
      throw listenError(error, { hostname, port, transport: "tcp" });
    }
    this.addr = this.#http.addr;
    const scheme = tls ? "wss" : "ws";
    this.url = `${scheme}://${formatAddress(this.addr)}/`;
    const listen: WsListenInfo = {
      transport: "ws",
      hostname: this.addr.hostname,
      port: this.addr.port,
      secure: Boolean(tls),
      url: this.url,
    };
    this.listeners = [listen];
    if (this.#idleTimeout) {
      const every = Math.max(10, Math.min(1000, this.#idleTimeout / 4));
      this.#sweeper = setInterval(() => this.#sweep(), every);
    }
    this.finished = this.#http.finished.then(() => this.#drained());
    const signal = options.signal;
    if (signal?.aborted) void this.shutdown();
    else signal?.addEventListener("abort", () => void this.shutdown(), { once: true });
    this.feed?.push({ kind: "listen", transport: "ws", remote: formatAddress(this.addr) });
    callHook(this.#errorHooks, options.onListen, listen);
  }

  #handle(request: Request, remoteAddr: Deno.NetAddr): Response | Promise<Response> {
    const url = new URL(request.url);
    if (this.#acl && !this.#acl.matches(remoteAddr.hostname)) {
      this.#reject(remoteAddr, "acl");
      return text(403, "forbidden: your address is not allowed\n");
    }
    const upgrade = request.headers.get("upgrade");
    if (!upgrade || !/(^|,)\s*websocket\s*(,|$)/i.test(upgrade)) {
      if (
        this.#options.page !== false && url.pathname === "/" &&
        (request.method === "GET" || request.method === "HEAD")
      ) {
        this.#ws.pages++;
        return page(request);
      }
      this.#ws.upgradeRequired++;
      return text(
        426,
        "426 Upgrade Required: this is a WebSocket echo; connect with ws:// (or wss://)\n",
        { upgrade: "websocket", connection: "Upgrade", "sec-websocket-version": "13" },
      );
    }
    const bad = badHandshake(request);
    if (bad) {
      this.#ws.badRequests++;
      return text(400, `400 Bad Request: ${bad}\n`, { "sec-websocket-version": "13" });
    }
    if (this.#stopping) return text(503, "503 Service Unavailable: shutting down\n");
    if (url.pathname === "/events" && this.feed) return this.#viewer(request, remoteAddr);
    if (this.#sessions.size >= this.#maxConnections) {
      this.#reject(remoteAddr, "limit");
      return text(503, "503 Service Unavailable: too many sessions; try again later\n", {
        "retry-after": "1",
      });
    }
    let upgraded;
    try {
      upgraded = Deno.upgradeWebSocket(request, { idleTimeout: this.#keepAlive / 1000 });
    } catch (error) {
      this.#ws.badRequests++;
      return text(400, `400 Bad Request: ${(error as Error).message}\n`);
    }
    this.#session(upgraded.socket, remoteAddr, url.pathname);
    return upgraded.response;
  }

  #reject(remoteAddr: Deno.NetAddr, reason: RejectReason): void {
    this.stats.dropped[reason as "acl" | "limit"]++;
    this.feed?.push({
      kind: "reject",
      transport: "ws",
      remote: formatAddress(remoteAddr),
      reason,
    });
    callHook(this.#errorHooks, this.#options.onReject, { transport: "ws", remoteAddr, reason });
  }

  #viewer(request: Request, remoteAddr: Deno.NetAddr): Response {
    const { socket, response } = Deno.upgradeWebSocket(request, { idleTimeout: 0 });
    if (!mayWatch(remoteAddr.hostname, this.#viewersFrom)) {
      this.#ws.viewersRefused++;
      socket.addEventListener("open", () =>
        socket.close(
          1008,
          "the live view is for loopback viewers only (server option eventsFrom)",
        ), { once: true });
    } else if (!this.feed!.addViewer(socket)) {
      this.#ws.viewersRefused++;
    }
    return response;
  }

  #session(socket: WebSocket, remoteAddr: Deno.NetAddr, path: string): void {
    const now = performance.now();
    const session: Session = {
      id: this.#nextId++,
      socket,
      remoteAddr,
      path,
      start: now,
      lastActive: now,
      bytes: 0,
      messages: 0,
      opened: false,
      ended: false,
      done: () => {},
    };
    this.#sessions.add(session);
    const stats = this.stats;
    const ws = this.#ws;
    stats.sessionsOpen++;
    stats.sessionsTotal++;
    ws.sessionsOpen++;
    ws.sessionsTotal++;
    const counters = this.#counters;
    counters.sessionsOpen++;
    counters.sessionsTotal++;
    socket.binaryType = "arraybuffer";
    const onMessage = this.#options.onMessage;
    socket.onopen = () => {
      session.opened = true;
      this.feed?.push({
        kind: "connection",
        transport: "ws",
        id: session.id,
        remote: formatAddress(remoteAddr),
      });
      callHook(this.#errorHooks, this.#options.onConnection, {
        transport: "ws",
        id: session.id,
        remoteAddr,
        path,
      });
      if (this.#stopping) this.#close(session, 1001, "server shutting down", "shutdown");
    };
    socket.onmessage = (event: MessageEvent<string | ArrayBuffer>) => {
      const data = event.data;
      const bytes = typeof data === "string" ? Buffer.byteLength(data) : data.byteLength;
      session.lastActive = performance.now();
      stats.bytesIn += bytes;
      ws.bytesIn += bytes;
      ws.messagesIn++;
      counters.bytesIn += bytes;
      counters.datagramsIn++;
      if (session.closedBy) return;
      if (bytes > this.#maxMessage) {
        ws.tooBig++;
        this.#close(session, 1009, `message of ${bytes} bytes > ${this.#maxMessage}`, "limit");
        return;
      }
      if (onMessage) {
        callHook(this.#errorHooks, onMessage, {
          transport: "ws",
          id: session.id,
          remoteAddr,
          data,
          bytes,
        });
      }
      socket.send(data);
      session.bytes += bytes;
      session.messages++;
      stats.bytesOut += bytes;
      ws.bytesOut += bytes;
      ws.messagesOut++;
      counters.bytesOut += bytes;
      counters.datagramsOut++;
      if (socket.bufferedAmount > this.#maxBuffered) {
        ws.slow++;
        this.#close(session, 1008, "not reading: too many echoes queued", "limit");
      }
    };
    socket.onerror = (event) => {
      session.error = (event as ErrorEvent).message || "error";
      // A failed upgrade (the client went away) dispatches no close event.
      if (!session.opened) this.#end(session, 1006, session.error);
    };
    socket.onclose = (event) => this.#end(session, event.code || 1006, event.reason);
  }

  #close(session: Session, code: number, reason: string, why: CloseReason): void {
    if (session.ended) return;
    session.closedBy ??= why;
    session.socket.close(code, reason);
    // A peer that neither reads nor answers the close: the session is let go of after the grace
    // period. The runtime has no way to abort one socket, so its connection is left to the kernel.
    session.closeTimer ??= setTimeout(() => this.#end(session, 1006, reason), this.#grace);
    if (!this.#refed) Deno.unrefTimer(session.closeTimer);
  }

  #end(session: Session, code: number, detail: string): void {
    if (session.ended) return;
    session.ended = true;
    clearTimeout(session.closeTimer);
    this.#sessions.delete(session);
    this.stats.sessionsOpen--;
    this.#ws.sessionsOpen--;
    this.#counters.sessionsOpen--;
    let reason: CloseReason;
    if (session.closedBy) reason = session.closedBy;
    else if (session.error) {
      detail = session.error;
      // Lost connections (and peers that stopped answering the keep-alive ping) are resets;
      // the rest are protocol errors the runtime failed the connection for.
      reason = /EOF|reset|broken pipe|aborted|ping/i.test(detail) ? "reset" : "error";
      if (reason === "error") this.#ws.protocolErrors++;
      this.stats.errors++;
      this.#counters.errors++;
    } else reason = code === 1006 ? "reset" : "eof";
    const duration = performance.now() - session.start;
    recordSessionDuration(this.stats, duration);
    this.feed?.push({
      kind: "close",
      transport: "ws",
      id: session.id,
      remote: formatAddress(session.remoteAddr),
      bytes: session.bytes,
      duration: Math.round(duration),
      reason,
      detail: `${code}${detail ? ` ${detail}` : ""}`,
    });
    callHook(this.#errorHooks, this.#options.onClose, {
      transport: "ws",
      id: session.id,
      remoteAddr: session.remoteAddr,
      bytes: session.bytes,
      messages: session.messages,
      duration,
      reason,
      code,
      detail,
    });
    session.done();
  }

  #sweep(): void {
    const now = performance.now();
    for (const session of this.#sessions) {
      if (!session.closedBy && now - session.lastActive >= this.#idleTimeout) {
        this.stats.dropped.idle++;
        this.#close(session, 1001, "idle timeout", "idle");
      }
    }
  }

  /** Resolves once every session has ended. */
  #drained(): Promise<void> {
    const open = [...this.#sessions].map((s) =>
      new Promise<void>((resolve) => {
        if (s.ended) resolve();
        else s.done = resolve;
      })
    );
    return Promise.all(open).then(() => {});
  }

  shutdown(): Promise<void> {
    this.#stopping ??= (async () => {
      clearInterval(this.#sweeper);
      const drained = this.#drained();
      for (const session of this.#sessions) {
        if (session.opened) this.#close(session, 1001, "server shutting down", "shutdown");
      }
      this.feed?.close();
      let timer: ReturnType<typeof setTimeout> | undefined;
      await Promise.race([drained, new Promise((r) => (timer = setTimeout(r, this.#grace)))]);
      clearTimeout(timer);
      // The runtime sends 1001 to what is left and stops reading it.
      await this.#http.shutdown();
      for (const session of this.#sessions) this.#end(session, 1006, "server shutting down");
    })();
    return this.#stopping.then(() => this.finished);
  }

  ref(): void {
    this.#refed = true;
    this.#http.ref();
    this.feed?.ref();
    if (this.#sweeper !== undefined) Deno.refTimer(this.#sweeper);
  }

  unref(): void {
    this.#refed = false;
    this.#http.unref();
    this.feed?.unref();
    if (this.#sweeper !== undefined) Deno.unrefTimer(this.#sweeper);
    for (const s of this.#sessions) if (s.closeTimer !== undefined) Deno.unrefTimer(s.closeTimer);
  }

  [Symbol.asyncDispose](): Promise<void> {
    return this.shutdown();
  }
}

/** Why an upgrade request is not a valid RFC 6455 handshake, or undefined when it is. */
function badHandshake(request: Request): string | undefined {
  if (request.method !== "GET") return `a WebSocket handshake is a GET, not ${request.method}`;
  const version = request.headers.get("sec-websocket-version");
  if (version !== "13") return `Sec-WebSocket-Version must be 13, got ${version ?? "none"}`;
  const key = request.headers.get("sec-websocket-key");
  if (!key || !KEY.test(key.trim())) return "Sec-WebSocket-Key must be 16 bytes in base64";
  const connection = request.headers.get("connection") ?? "";
  if (!/(^|,)\s*upgrade\s*(,|$)/i.test(connection)) return "Connection must include Upgrade";
  return undefined;
}

function text(status: number, body: string, headers: Record<string, string> = {}): Response {
  return new Response(body, {
    status,
    headers: { "content-type": "text/plain; charset=utf-8", ...headers },
  });
}

let pageHeaders: Record<string, string> | undefined;

/** The page, with a Content-Security-Policy that admits only its own inline script and style. */
async function page(request: Request): Promise<Response> {
  if (!pageHeaders) {
    const { script, style } = await WS_PAGE.hashes();
    pageHeaders = {
      "content-type": "text/html; charset=utf-8",
      "cache-control": "no-store",
      "x-content-type-options": "nosniff",
      "content-security-policy": [
        "default-src 'none'",
        `script-src '${script}'`,
        `style-src '${style}'`,
        "connect-src 'self' ws: wss:",
        "img-src data:",
        "base-uri 'none'",
        "form-action 'none'",
      ].join("; "),
    };
  }
  return new Response(request.method === "HEAD" ? null : WS_PAGE.html, { headers: pageHeaders });
}

/** Options of {@linkcode echoWs}. */
export interface WsClientOptions extends WsUrlOptions {
  /** Speak TLS (`wss:`), trusting these certificates besides the built-in roots. */
  tls?: TlsClientOptions;
  /** How long the whole exchange may take, in ms. Default 5000. */
  timeout?: number;
  /** Aborting it cancels the exchange. */
  signal?: AbortSignal;
}

/** The outcome of one echoed WebSocket message. */
export interface WsEchoResult<T extends string | Uint8Array = string | Uint8Array> {
  /** The message sent back (equal to what was sent, and of the same type). */
  reply: T;
  /** Round-trip time in ms, from the send to the reply. */
  rtt: number;
  /** The URL that answered. */
  url: string;
}

/**
 * Sends one message over a new WebSocket, waits for the echo and compares it: same type (text or
 * binary) and same bytes. Closes with 1000 afterwards.
 *
 * @example
 * ```ts
 * import { echoWs, serveWsEcho } from "./ws.ts";
 * await using server = serveWsEcho({ port: 0 });
 * const { rtt } = await echoWs(new Uint8Array(1000), { port: server.addr.port });
 * console.log(rtt >= 0); // true
 * ```
 *
 * @param message Text (sent as a text message) or bytes (a binary message).
 * @param options The server (`url`, or `hostname`/`port`), TLS trust, timeout and signal.
 * @returns The reply and its round-trip time.
 * @throws {EchoConnectionError} When the connection fails or closes before the echo.
 * @throws {EchoTimeoutError} When the exchange takes longer than `timeout`.
 * @throws {EchoMismatchError} When the echo differs in type or content.
 */
export async function echoWs<T extends string | Uint8Array>(
  message: T,
  options: WsClientOptions = {},
): Promise<WsEchoResult<T>> {
  const url = wsUrl(options);
  const address: EchoAddress = wsAddress(url);
  const timeout = options.timeout ?? 5000;
  const client = options.tls?.caCerts?.length
    ? Deno.createHttpClient({ caCerts: options.tls.caCerts })
    : undefined;
  const socket = new WebSocket(url, client ? { client } : undefined);
  socket.binaryType = "arraybuffer";
  const { promise, resolve, reject } = Promise.withResolvers<WsEchoResult<T>>();
  let sent = 0;
  const timer = setTimeout(
    () => reject(new EchoTimeoutError(`no echo from ${url} within ${timeout}ms`, { address })),
    timeout,
  );
  const onAbort = () => reject(options.signal!.reason);
  options.signal?.addEventListener("abort", onAbort, { once: true });
  socket.onopen = () => {
    sent = performance.now();
    socket.send(message);
  };
  socket.onmessage = (event: MessageEvent<string | ArrayBuffer>) => {
    const rtt = performance.now() - sent;
    const data = event.data;
    if (typeof message === "string") {
      if (typeof data !== "string") {
        return reject(mismatch("a binary message came back for a text one", 0, address));
      }
      if (data !== message) {
        const at = firstDifference(toBytes(message), toBytes(data));
        return reject(mismatch(`echo differs at byte ${at}`, at, address));
      }
      return resolve({ reply: data as T, rtt, url });
    }
    if (typeof data === "string") {
      return reject(mismatch("a text message came back for a binary one", 0, address));
    }
    const reply = new Uint8Array(data);
    const at = firstDifference(message as Uint8Array, reply);
    if (at >= 0) return reject(mismatch(`echo differs at byte ${at}`, at, address));
    resolve({ reply: reply as T, rtt, url });
  };
  socket.onclose = (event) =>
    reject(
      new EchoConnectionError(
        `${url} closed before the echo (${event.code}${event.reason ? ` ${event.reason}` : ""})`,
        { address },
      ),
    );
  socket.onerror = (event) =>
    reject(
      new EchoConnectionError(
        `cannot reach ${url}: ${(event as ErrorEvent).message ?? "connection failed"}`,
        { address },
      ),
    );
  try {
    return await promise;
  } finally {
    clearTimeout(timer);
    options.signal?.removeEventListener("abort", onAbort);
    socket.onclose = socket.onerror = socket.onmessage = null;
    if (socket.readyState === WebSocket.OPEN) {
      const closed = new Promise((r) => socket.addEventListener("close", r, { once: true }));
      socket.close(1000);
      await closed;
    } else if (socket.readyState === WebSocket.CONNECTING) {
      const closed = new Promise((r) => socket.addEventListener("close", r, { once: true }));
      socket.close();
      await closed;
    }
    client?.close();
  }
}

function mismatch(message: string, offset: number, address: EchoAddress): EchoMismatchError {
  return new EchoMismatchError(message, { offset, address });
}
