/**
 * TCP and UDP echo servers and clients for Deno, exact to RFC 862: every byte echoed in order on TCP,
 * every datagram returned as-is on UDP (0 to 65,507 bytes, never truncated).
 *
 * - {@linkcode serveEcho} starts TCP and UDP on one host and port (127.0.0.1:5006 by default) and
 *   returns a handle shaped like `Deno.serve`'s: `addr`, `finished`, `shutdown()`, `ref()`/`unref()`
 *   and `[Symbol.asyncDispose]`, so `await using server = await serveEcho({ port: 0 })` works in tests.
 * - {@linkcode echoTcp} and {@linkcode echoUdp} echo one message and verify the reply;
 *   {@linkcode echoTcpStream} streams any amount of data through a server, verifying as it goes.
 * - UDP runs on `Deno.listenDatagram` when unstable net is on, and on `node:dgram` otherwise.
 * - TLS (`serveTcpEcho({ tls })`, clients' `tls` option) and Unix domain sockets
 *   ({@linkcode serveUnixEcho}, clients' `unix` option) share the TCP session loop.
 * - {@linkcode serveWsEcho} is the WebSocket echo (RFC 6455, on `Deno.serve`) with a live page at
 *   `GET /` (echo console, ping chart, the server's counters and events); {@linkcode echoWs}
 *   echoes one message over it.
 * - {@linkcode runProbe} is the engine behind the client's ping and bench modes: latency histograms,
 *   loss, late replies, duplicates, reordering and jitter, against any echo server, over TCP, TLS,
 *   Unix sockets, UDP or WebSocket (`transport: "ws"`).
 * - Policies for exposed servers (allow-list, connection cap, idle timeout, UDP loop guard and rate
 *   limit) and an impairment mode (UDP loss, duplication, reordering, delay) are server options.
 * - Behind a load balancer: `proxyProtocol` reads a PROXY v1/v2 header ({@linkcode readProxyHeader})
 *   on every stream connection (over TLS: in clear text before the handshake) and takes its
 *   client as the client; {@linkcode serveMetrics} serves the counters as Prometheus `/metrics`
 *   and a `/healthz` that turns 503 while draining.
 *
 * @example
 * ```ts
 * import { echoTcp, echoUdp, serveEcho } from "./mod.ts";
 *
 * await using server = await serveEcho({ port: 0 });
 * const tcp = await echoTcp("Hello World", { port: server.addr.port });
 * const udp = await echoUdp("Hello World", { port: server.addr.port });
 * console.log(tcp.rtt, udp.rtt, server.stats.bytesIn);
 * ```
 *
 * @module
 */
export * from "./cidr.ts";
export * from "./cidr_file.ts";
export * from "./duration.ts";
export * from "./errors.ts";
export * from "./hdr_log.ts";
export * from "./histogram.ts";
export * from "./impair.ts";
export * from "./limits.ts";
export * from "./loop_guard.ts";
export * from "./metrics.ts";
export * from "./probe.ts";
export * from "./proxy_header.ts";
export * from "./proxy_protocol.ts";
export * from "./probe_result.ts";
export * from "./probe_workers.ts";
export * from "./proxy_header.ts";
export * from "./proxy_protocol.ts";
export * from "./sequence.ts";
export * from "./serve.ts";
export * from "./stats.ts";
export * from "./types.ts";
export * from "./tcp.ts";
export * from "./udp.ts";
export * from "./unix.ts";
export * from "./ws.ts";
