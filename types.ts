/**
 * The shared vocabulary of the echo servers: option, hook, info and handle types, and the
 * defaults. It sits at the bottom of the module graph: every server file imports it, and it imports
 * nothing but types from `errors.ts` and `stats.ts`, which import nothing.
 *
 * The hook infos and the handle are generic over the address type: `Deno.NetAddr` for TCP, TLS
 * and UDP (the default), `Deno.UnixAddr` for Unix sockets.
 *
 * @example
 * ```ts
 * import { DEFAULT_HOSTNAME, DEFAULT_PORT, type EchoServer, serveEcho } from "./mod.ts";
 * await using server: EchoServer = await serveEcho({ port: 0, transport: "tcp" });
 * console.log(DEFAULT_HOSTNAME, DEFAULT_PORT, server.addr.hostname); // "127.0.0.1" 5006 "127.0.0.1"
 * ```
 *
 * @module
 */
import type { EchoError } from "./errors.ts";
import type { EchoStats } from "./stats.ts";

/** The port the tutorial's programs use, and ours by default. */
export const DEFAULT_PORT = 5006;
/** We bind loopback by default: an echo service is reachable from the network only when asked. */
export const DEFAULT_HOSTNAME = "127.0.0.1";
/** How long `shutdown()` lets open TCP sessions finish before closing them, in ms. */
export const DEFAULT_GRACE_PERIOD = 3000;

/** Which UDP implementation serves a socket. */
export type UdpBackendKind = "deno" | "node";

/** The addresses a server can listen on: network (TCP, TLS, UDP) or a Unix socket. */
export type EchoAddr = Deno.NetAddr | Deno.UnixAddr;

/** A bound network listener: which transport, where, and for UDP which backend serves it. */
export interface ListenInfo {
  /** `tcp`, `udp` or `ws` (the WebSocket echo of `serveEcho`'s `ws` option). */
  transport: "tcp" | "udp" | "ws";
  /** The address actually bound. */
  hostname: string;
  /** The port actually bound (never 0). */
  port: number;
  /** For UDP: `deno` (Deno.listenDatagram) or `node` (node:dgram fallback). */
  backend?: UdpBackendKind;
  /** For TCP and WebSocket: whether the listener speaks TLS (`wss:` for WebSocket). */
  secure?: boolean;
  /** For WebSocket: the echo's URL, `ws://127.0.0.1:5007/` (the page is at the same place). */
  url?: string;
  /** The active impairments, described (`loss 20%, delay 50ms, seed 42`), when any. */
  impairment?: string;
}

/** A bound Unix socket listener. */
export interface UnixListenInfo {
  /** Always `unix`. */
  transport: "unix";
  /** The socket file. */
  path: string;
}

/** The listener info of a server on addresses of type `A`. */
export type ListenInfoOf<A extends EchoAddr = Deno.NetAddr> = A extends Deno.UnixAddr
  ? UnixListenInfo
  : ListenInfo;

/**
 * A stream session that was just accepted. On a Unix socket, clients are usually unnamed
 * sockets, and Deno then reports their address as `{ transport: "unix", path: null }`.
 */
export interface ConnectionInfo<A extends EchoAddr = Deno.NetAddr> {
  /** Session number, counting from 1 for each server. */
  id: number;
  /** The client. */
  remoteAddr: A;
  /** Our end. */
  localAddr: A;
}

/** A chunk received on a stream session, before it is echoed. */
export interface DataInfo<A extends EchoAddr = Deno.NetAddr> {
  /** Session number. */
  id: number;
  /** The client. */
  remoteAddr: A;
  /** The bytes; valid only during the hook call (the buffer is reused). */
  data: Uint8Array;
}

/** Why a stream session ended. */
export type CloseReason = "eof" | "reset" | "shutdown" | "error" | "idle" | "limit";

/**
 * Why a connection or datagram was refused: `limit` (maxConnections), `source` (maxPerSource),
 * `fd` (no file descriptor left to accept with), `acl`, `guard` (loop and reflection guard),
 * `loop` (a datagram bounced back and forth with another echo service), `rate` (udpRate), and
 * `proxy`: a connection closed for its PROXY header (missing, malformed, too slow, from an
 * untrusted peer; `detail` says which).
 */
export type RejectReason =
  | "limit"
  | "source"
  | "fd"
  | "acl"
  | "guard"
  | "loop"
  | "rate"
  | "proxy";

/** A connection closed at once, or a datagram left unanswered, by a policy. */
export interface RejectInfo<A extends EchoAddr = Deno.NetAddr> {
  /** Which transport it came on. */
  transport: A extends Deno.UnixAddr ? "unix" : "tcp" | "udp" | "ws";
  /** Where it came from. */
  remoteAddr: A;
  /** Which policy refused it. */
  reason: RejectReason;
  /**
   * For the loop guard: the detail (`blocked-port`, `port-zero`, `broadcast`, ...); for `proxy`:
   * the PROXY refusal reason (`malformed`, `timeout`, `untrusted`, ...).
   */
  detail?: string;
}

/** A stream session that ended. */
export interface CloseInfo<A extends EchoAddr = Deno.NetAddr> {
  /** Session number. */
  id: number;
  /** The client. */
  remoteAddr: A;
  /** Bytes echoed back on this session. */
  bytes: number;
  /** How long the session lasted, in ms. */
  duration: number;
  /** Why it ended. */
  reason: CloseReason;
}

/** A datagram that was received, before it is echoed. */
export interface DatagramInfo {
  /** The sender. */
  remoteAddr: Deno.NetAddr;
  /** The payload; valid only during the hook call (the buffer is reused). */
  data: Uint8Array;
}

/**
 * Optional hooks, so callers can log or count without the library printing anything. They run only
 * when given: the hot path pays nothing for a hook that is absent. A hook that throws is reported to
 * `onError` and never stops the server.
 */
export interface EchoHooks<A extends EchoAddr = Deno.NetAddr> {
  /** Called once per listener, when it is bound. */
  onListen?: (info: ListenInfoOf<A>) => void;
  /** Called when a stream session is accepted. */
  onConnection?: (info: ConnectionInfo<A>) => void;
  /** Called for each chunk a stream session receives (for verbose logging). */
  onData?: (info: DataInfo<A>) => void;
  /** Called when a stream session ends. */
  onClose?: (info: CloseInfo<A>) => void;
  /** Called for each datagram received. */
  onDatagram?: (info: DatagramInfo) => void;
  /** Called when a policy refuses a connection or datagram (counted in `stats.dropped` too). */
  onReject?: (info: RejectInfo<A>) => void;
  /** Called for unexpected errors (accept failures, failed sends, throwing hooks). */
  onError?: (error: EchoError) => void;
}

/**
 * What to do to UDP replies (a `UdpImpairment` stage). Every field is optional; an absent or zero
 * field is off.
 *
 * @example Lose a fifth, delay by 50 ms ± 10 ms, reproducibly
 * ```ts
 * import type { ImpairOptions } from "./types.ts";
 *
 * const options: ImpairOptions = { loss: 0.2, delay: 50, jitter: 10, seed: 1 };
 * console.log(options);
 * ```
 */
export interface ImpairOptions {
  /** Probability in [0, 1] that a reply is dropped. */
  loss?: number;
  /** Probability in [0, 1] that a (kept) reply is sent twice, back to back. */
  duplicate?: number;
  /**
   * Probability in [0, 1] that a (kept) reply is held back until 3 later replies to the same
   * source have gone out, or 100 ms past its own send time, whichever comes first: it is
   * overtaken but never lost (unless `close()` discards it).
   */
  reorder?: number;
  /** Delay added to every reply, in milliseconds (0 to 86,400,000). */
  delay?: number;
  /**
   * Uniform spread around `delay`, in milliseconds: each reply is delayed by its own value drawn
   * from [delay − jitter, delay + jitter), clamped at 0, independently of the others — as Linux
   * netem does, so jitter reorders replies whose delays cross (the median delay stays `delay`).
   */
  jitter?: number;
  /**
   * Keep replies to one source in order despite `jitter`: a reply never goes before the previous
   * one to its source, so its delay is the largest of its own draw and those still pending before
   * it. That pushes delays towards `delay + jitter` (the median grows with the rate: once replies
   * come faster than jitter / 2 apart, most wait for a slower predecessor). Default false.
   */
  jitterKeepOrder?: boolean;
  /** Seed in [0, 2^32) for the stage's own generator; drawn from `crypto` when absent. */
  seed?: number;
  /** Cap on replies held at once for reordering or delay (default `DEFAULT_MAX_HELD`). */
  maxHeld?: number;
}

/**
 * Options for a `TcpShaper`: delay and bandwidth of a TCP echo. Absent fields are off.
 *
 * @example
 * ```ts
 * import type { TcpShaperOptions } from "./types.ts";
 *
 * const options: TcpShaperOptions = { delay: 20, bandwidth: 125_000 }; // 1 Mbit/s
 * console.log(options);
 * ```
 */
export interface TcpShaperOptions {
  /** Delay added to every chunk, in milliseconds (0 to 86,400,000). */
  delay?: number;
  /** Pacing rate in bytes per second (> 0); absent means unlimited. */
  bandwidth?: number;
  /**
   * Token-bucket depth in bytes (>= 1): how much may go out back to back after an idle spell.
   * Default: 10 ms worth of `bandwidth`, at most 16 KiB, at least 1 byte. The shaped session
   * writes in pieces of at most this size, so its echo never runs ahead of the rate by more.
   */
  burst?: number;
}

/** Options for the UDP loop and reflection guard (`LoopGuard`). */
export interface LoopGuardOptions {
  /**
   * Source ports to refuse, replacing `DEFAULT_BLOCKED_PORTS` (spread the defaults into the
   * list to extend them). Each must be an integer 0-65535; an empty list refuses none (port 0
   * is still refused).
   */
  blockedPorts?: Iterable<number>;
  /**
   * The port this server receives on. Datagrams from that same source port are refused as
   * `"blocked-port"`: two instances of this server on one port would otherwise echo each
   * other forever (FreeBSD's `check_loop()` likewise refuses its own built-in ports).
   */
  localPort?: number;
  /**
   * The echo-loop detector of a UDP server (`BounceDetector` in loop_guard.ts): its options, or
   * `false` to turn it off. On by default with the guard. Ignored by `LoopGuard` itself.
   */
  bounce?: BounceDetectorOptions | false;
}

/** Options of the UDP echo-loop detector (`BounceDetector` in loop_guard.ts). */
export interface BounceDetectorOptions {
  /**
   * Quick identical returns in a row from one source before its datagrams are dropped: a whole
   * number >= 1. Default 64 (`DEFAULT_BOUNCES`).
   */
  bounces?: number;
  /**
   * A datagram counts as a quick return when it comes within this many ms of the previous one
   * from the same source (address and port). Default 10 (`DEFAULT_BOUNCE_WINDOW_MS`).
   */
  window?: number;
  /** The clock, in ms; default `performance.now`. Read only when a payload repeats. */
  clock?: () => number;
}

/** A TLS server's identity: its certificate chain and private key, as PEM text (not file names). */
export interface TlsServerOptions {
  /** The certificate chain, PEM (`-----BEGIN CERTIFICATE-----`), the server's own first. */
  cert: string;
  /** The private key, PEM (`-----BEGIN PRIVATE KEY-----`, PKCS #8, RSA or EC), unencrypted. */
  key: string;
  /**
   * A session whose TLS handshake has not completed after this long (ms) is closed, idle or
   * not (with `proxyProtocol`, counted from the end of the PROXY header, which has its own
   * `proxyTimeout`). Default 10,000; 0 = no deadline of its own (the idle timeout still applies).
   */
  handshakeTimeout?: number;
}

/** A bound WebSocket listener. */
export interface WsListenInfo {
  /** Always `ws`. */
  transport: "ws";
  /** The address actually bound. */
  hostname: string;
  /** The port actually bound. */
  port: number;
  /** Whether it speaks TLS (`wss:`). */
  secure: boolean;
  /** The echo's URL, `ws://127.0.0.1:5007/`. */
  url: string;
}

/** A WebSocket session that was just opened. */
export interface WsConnectionInfo {
  /** Always `ws`. */
  transport: "ws";
  /** Session number, counting from 1 for each server. */
  id: number;
  /** The client. */
  remoteAddr: Deno.NetAddr;
  /** The path the client asked for. */
  path: string;
}

/** A message received, before it is echoed. */
export interface WsMessageInfo {
  /** Always `ws`. */
  transport: "ws";
  /** Session number. */
  id: number;
  /** The client. */
  remoteAddr: Deno.NetAddr;
  /** The message: text as a string, binary as an ArrayBuffer. */
  data: string | ArrayBuffer;
  /** Its size in bytes (text: UTF-8). */
  bytes: number;
}

/** A WebSocket session that ended. */
export interface WsCloseInfo {
  /** Always `ws`. */
  transport: "ws";
  /** Session number. */
  id: number;
  /** The client. */
  remoteAddr: Deno.NetAddr;
  /** Payload bytes echoed back. */
  bytes: number;
  /** Messages echoed back. */
  messages: number;
  /** How long the session lasted, in ms. */
  duration: number;
  /**
   * Why it ended: `eof` (close handshake from the client), `reset` (connection lost),
   * `error` (protocol error, e.g. invalid UTF-8), `idle`, `limit` (message too big, client not
   * reading), `shutdown`.
   */
  reason: CloseReason;
  /** The close code (1006 when there was no close frame). */
  code: number;
  /** The close reason text, or the runtime's error. */
  detail: string;
}

/** A request refused by a policy before it became a session. */
export interface WsRejectInfo {
  /** Always `ws`. */
  transport: "ws";
  /** Where it came from. */
  remoteAddr: Deno.NetAddr;
  /** `acl` (403) or `limit` (503). */
  reason: RejectReason;
}

/** Hooks of the WebSocket echo (`serveWsEcho`); a hook that throws is reported to `onError`. */
export interface WsHooks {
  /** Called once the listener is bound. */
  onListen?: (info: WsListenInfo) => void;
  /** Called when a session opens. */
  onConnection?: (info: WsConnectionInfo) => void;
  /** Called for each message (for verbose logging). */
  onMessage?: (info: WsMessageInfo) => void;
  /** Called when a session ends. */
  onClose?: (info: WsCloseInfo) => void;
  /** Called when a policy refuses a request (also counted in `stats.dropped`). */
  onReject?: (info: WsRejectInfo) => void;
  /** Called for unexpected errors (request handler failures, throwing hooks). */
  onError?: (error: EchoError) => void;
}

/**
 * The WebSocket echo's own options: what `serveEcho`'s `ws` option takes besides its hooks (the
 * host, TLS, allow-list, limits and counters are the server's).
 */
export interface WsOptions {
  /** Port to bind. Default 5007 (`DEFAULT_WS_PORT`); 0 picks a free one. */
  port?: number;
  /**
   * The runtime's keep-alive, in ms: after half of it without a message a ping is sent, and with
   * no reply in the other half the session is closed (1001). Default 30000; 0 = off.
   */
  keepAlive?: number;
  /** Largest message echoed, in bytes; larger: close 1009. Default 16 MiB; at most 64 MiB − 1. */
  maxMessage?: number;
  /**
   * Bytes of echoes queued to a client before it is closed (1008) for not reading: the window a
   * client may pipeline without reading. Default 32 MiB.
   */
  maxBuffered?: number;
  /** Serve the live page at `GET /`. Default true. */
  page?: boolean;
  /** Besides loopback, who may watch `/events` (it shows every client's address and payloads). */
  eventsFrom?: readonly string[];
}

/**
 * `serveEcho`'s `ws` option: a WebSocket echo (and the live page) beside TCP and UDP, on the same
 * host, with the same TLS, policy and counters. Its listener and refusals reach the server's
 * `onListen` and `onReject` (transport `ws`); its sessions have hooks of their own, here.
 */
export interface ServeWsOptions
  extends WsOptions, Pick<WsHooks, "onConnection" | "onMessage" | "onClose"> {}

/** Options every echo server takes. */
export interface EchoServerOptions<A extends EchoAddr = Deno.NetAddr> extends EchoHooks<A> {
  /**
   * Address to bind. Default `127.0.0.1`; `0.0.0.0`, `::` and `::1` work too, as do `[::1]`,
   * `127.1` (read as `127.0.0.1`) and host names. Parsed strictly before anything binds: a port in
   * it (`127.0.0.1:5006`), a zone id, stray brackets or control characters throw an
   * `InvalidHostError` whose `option` is `hostname`.
   */
  hostname?: string;
  /** Port to bind. Default 5006; 0 picks a free one. */
  port?: number;
  /** Aborting it shuts the server down, like calling `shutdown()`. */
  signal?: AbortSignal;
  /**
   * How long `shutdown()` lets TCP sessions finish before cutting them, in ms. Default 3000. A cut
   * (also `maxSessionTime`, `maxSessionBytes`) stops reading, writes out everything already read
   * (a write under way may take up to 1 s more; a shaped session's queue goes out unpaced), then
   * closes. Deno's close sends a FIN; with input still unread Linux follows it with a reset,
   * which may also discard echo the peer had not read yet. So a peer cut short sees a FIN or a
   * reset: compare the echo with what was sent.
   */
  gracePeriod?: number;
  /** Serve a single exchange, then stop: one TCP session until the client closes, or one datagram. */
  once?: boolean;
  /** Counters to add to; a new set by default. Share one object to count several servers together. */
  stats?: EchoStats;
  /**
   * Only sources in these CIDR ranges are served (IPv4 and IPv6; IPv4 clients of a dual-stack `::`
   * bind match IPv4 rules); others are closed at once (TCP) or ignored (UDP). Default: everyone.
   */
  allow?: readonly string[];
  /**
   * Most TCP sessions open at once; beyond it new ones are closed at once and counted. Default
   * 4096, lowered to fit the file-descriptor limit when it can be read.
   */
  maxConnections?: number;
  /**
   * Most stream sessions open at once from one source: an IPv4 address, or an IPv6 /64 (see
   * `perSourcePrefix6`); beyond it new ones are closed at once and counted as `source`. Default
   * 64 when bound to a non-loopback address, off on loopback (decided from the bound address);
   * 0 = off. With `workers`, each thread counts its own sessions.
   */
  maxPerSource?: number;
  /** Leading bits of an IPv6 address that name one source for `maxPerSource`, 0-128. Default 64. */
  perSourcePrefix6?: number;
  /** A TCP session with no traffic for this long (ms) is closed. Default 5 minutes; 0 = off. */
  idleTimeout?: number;
  /**
   * A TCP session is closed once it has echoed this many bytes (never reads past them; input
   * beyond stays unread, a cut as under `gracePeriod`). Default: no cap.
   */
  maxSessionBytes?: number;
  /** A TCP session is cut after this long (ms), as under `gracePeriod`. Default: no cap. */
  maxSessionTime?: number;
  /**
   * UDP datagrams answered per second per source address (token bucket; excess dropped and
   * counted). Default 1000 on non-loopback binds, off on loopback; 0 = off.
   */
  udpRate?: number;
  /**
   * The UDP loop and reflection guard: never answer source port 0, well-known self-answering
   * service ports (echo 7, chargen 19, ...), our own port, broadcast or multicast sources. On by
   * default; `false` turns it off; an object replaces the blocked-port set.
   */
  loopGuard?: boolean | LoopGuardOptions;
  /**
   * Impairment: make UDP's unreliability visible (loss, duplication, reordering, delay and jitter
   * of replies, from a seeded generator), and on TCP delay and throttle the echo (`delay`,
   * `bandwidth` in bytes/s; loss does not exist there, the kernel retransmits). Off by default.
   */
  impair?: EchoImpairOptions;
  /**
   * Stream listeners (TCP, TLS, Unix) expect the PROXY protocol (v1 or v2, HAProxy's spec):
   * every connection must start with a header from a trusted balancer, and the client it names
   * is the session's `remoteAddr` everywhere (hooks, `allow`, limits, counters); a `LOCAL` header
   * (a health check) keeps the socket's own peer. With `tls` the header comes in clear text
   * before the TLS handshake, as HAProxy's `send-proxy-v2` sends it in front of a TLS backend
   * (`mode tcp`). A missing, malformed, slow or untrusted header closes the connection (over
   * TLS before any handshake), counted in `stats.proxyRefused` and reported to `onReject` as
   * `proxy`. Default false.
   */
  proxyProtocol?: boolean;
  /**
   * With `proxyProtocol`: the balancers' addresses, as CIDR rules, allowed to send a header.
   * Default: loopback peers only (a balancer on this host), so nobody off-host can forge a source.
   */
  proxyFrom?: readonly string[];
  /**
   * With `proxyProtocol`: time allowed for the whole header, in ms (a header dripped one byte a
   * second fails). Default `DEFAULT_PROXY_TIMEOUT` (5000).
   */
  proxyTimeout?: number;
}

/** Impairment options: the UDP ones, plus `bandwidth` (bytes/s) which applies to TCP. */
export interface EchoImpairOptions extends ImpairOptions {
  /**
   * TCP: echo at most this many bytes per second, from the first byte: the echo is written in
   * pieces of at most the burst (10 ms worth, at most 16 KiB, at least 1 byte; 640 B at
   * 64,000 B/s), so it never runs ahead of the rate by more than that.
   */
  bandwidth?: number;
}

/** Options of `serveTcpEcho`. */
export interface TcpEchoOptions extends EchoServerOptions {
  /**
   * Serve echo over TLS with this certificate and key. Default: plain TCP. Clients connect to a
   * plain TCP listener relayed to an inner `Deno.listenTls` on 127.0.0.1 (see _tls_relay.ts: a
   * `Deno.TlsConn` closed before its handshake keeps its socket), so a connection refused, idle
   * or timed out is closed whatever its handshake's state.
   */
  tls?: TlsServerOptions;
}

/** Options of `serveUdpEcho`. */
export interface UdpEchoOptions extends EchoServerOptions {
  /** Force a UDP backend; `auto` (default) uses Deno.listenDatagram when unstable net is on. */
  backend?: UdpBackendKind | "auto";
}

/** The transports `serveEcho` serves: `both` is TCP and UDP on one host and port. */
export type EchoTransport = "tcp" | "udp" | "both" | "unix";

/** Options of `serveEcho`: every transport, one set of hooks and counters. */
export interface ServeEchoOptions<A extends EchoAddr = Deno.NetAddr>
  extends EchoServerOptions<A>, Pick<UdpEchoOptions, "backend">, Pick<TcpEchoOptions, "tls"> {
  /** Which transports to serve. Default `both`; `unix` serves a Unix socket at `path`. */
  transport?: EchoTransport;
  /**
   * With `transport: "unix"`: the socket file to create. A stale one left by a dead server is
   * replaced; a live server's socket, or any other kind of file, is refused. The file is removed
   * on shutdown.
   */
  path?: string;
  /**
   * Threads that accept TCP connections: the main thread and `workers - 1` Web Workers, each
   * with its own listener on the same port (`reusePort`, which needs Linux and unstable net).
   * UDP stays on the main thread; `maxConnections` and the counters are totals over all threads;
   * hooks run on the main thread; `shutdown()` stops every thread; `unref()` cannot let the
   * workers go (only `shutdown()` does). Session ids are unique and in order of acceptance across threads (one shared counter).
   * Default 1.
   */
  workers?: number;
  /**
   * Also serve a WebSocket echo and the live page on another port of the same host (with `tls`,
   * `wss:`). Its page's feed shows this server's TCP and UDP events too. Not with `unix` or `once`.
   */
  ws?: ServeWsOptions;
}

/**
 * Options of `serveUnixEcho`: the stream server's options (limits, grace period, once, counters,
 * TCP shaping) without the network ones (host, port, allow-list, UDP policies).
 */
export interface UnixEchoOptions extends
  Omit<
    EchoServerOptions<Deno.UnixAddr>,
    | "hostname"
    | "port"
    | "allow"
    | "maxPerSource"
    | "perSourcePrefix6"
    | "udpRate"
    | "loopGuard"
    | "onDatagram"
  > {
  /**
   * The socket file to create. A stale one left by a dead server is replaced; a live server's
   * socket, or any other kind of file, is refused. The file is removed on shutdown.
   */
  path: string;
}

/** A running echo server, shaped like the handle `Deno.serve` returns. */
export interface EchoServer<A extends EchoAddr = Deno.NetAddr> extends AsyncDisposable {
  /** The address actually bound (the TCP one when both transports run; they share host and port). */
  readonly addr: A;
  /** Every bound listener. */
  readonly listeners: readonly ListenInfoOf<A>[];
  /** Live counters. */
  readonly stats: EchoStats;
  /** Settles when the server has stopped and every session has ended. */
  readonly finished: Promise<void>;
  /**
   * Stops accepting, lets open TCP sessions finish within the grace period, then closes them.
   * Resolves with `finished`.
   */
  shutdown(): Promise<void>;
  /** Makes the server keep the process alive (the default). */
  ref(): void;
  /** Lets the process exit even while the server runs. */
  unref(): void;
}

/** A session on a Unix socket that was just accepted. */
export type UnixConnectionInfo = ConnectionInfo<Deno.UnixAddr>;
/** A chunk received on a Unix socket session, before it is echoed. */
export type UnixDataInfo = DataInfo<Deno.UnixAddr>;
/** A Unix socket session that ended. */
export type UnixCloseInfo = CloseInfo<Deno.UnixAddr>;
/** A Unix socket connection closed at once by a policy (the connection cap). */
export type UnixRejectInfo = RejectInfo<Deno.UnixAddr>;
/** The hooks of a Unix socket server: those of {@linkcode EchoHooks}, with Unix addresses. */
export type UnixEchoHooks = Omit<EchoHooks<Deno.UnixAddr>, "onDatagram">;
/** A running Unix socket echo server: the {@linkcode EchoServer} handle with a Unix address. */
export type UnixEchoServer = EchoServer<Deno.UnixAddr>;
