/**
 * Metrics and health for an echo server behind a balancer: the counters in the Prometheus text
 * exposition format (version 0.0.4), a `/healthz` that turns 503 while the server drains, both
 * served on `Deno.serve` (loopback unless told otherwise).
 *
 * The series, in base units (seconds, bytes), named after HAProxy's and Envoy's where they have
 * one:
 *
 * | name | type | labels | what |
 * | --- | --- | --- | --- |
 * | `echo_build_info` | gauge | `version`, `deno` | always 1; the module's and Deno's versions |
 * | `process_start_time_seconds` | gauge | | Unix time the process started |
 * | `echo_draining` | gauge | | 1 while draining (`/healthz` answers 503), else 0 |
 * | `echo_connections_total` | counter | `transport` | stream sessions accepted |
 * | `echo_current_sessions` | gauge | `transport` | stream sessions open now |
 * | `echo_bytes_in_total` | counter | `transport` | payload bytes received |
 * | `echo_bytes_out_total` | counter | `transport` | payload bytes echoed |
 * | `echo_datagrams_in_total` | counter | `transport` | datagrams (WebSocket messages) received |
 * | `echo_datagrams_out_total` | counter | `transport` | datagrams (WebSocket messages) echoed |
 * | `echo_errors_total` | counter | `transport` | sessions and datagrams that ended in an error |
 * | `echo_refused_total` | counter | `reason` | refused or cut by a policy: `limit`, `idle`, `acl`, `guard`, `rate`, and `proxy_<reason>` for a PROXY header refused (see `ProxyRefusalReason`) |
 * | `echo_session_duration_seconds` | histogram | `le` | how long stream sessions lasted |
 * | `echo_impairment_total` | counter | `action` | what the UDP impairment stage did, when one runs |
 *
 * `transport` is `tcp`, `tls`, `unix`, `udp` or `ws`; a transport appears once it has counted
 * something or when it is listed in `transports`, in the families that apply to it (no
 * `echo_connections_total` for UDP, no datagrams for TCP; WebSocket has both). Counters made
 * without the per-transport split are shown with `transport="all"`. A family with no series to
 * show is left out.
 *
 * @example Serve the counters of a server
 * ```ts
 * import { createStats } from "./stats.ts";
 * import { serveMetrics } from "./metrics.ts";
 *
 * const stats = createStats();
 * await using metrics = serveMetrics({ port: 0, stats });
 * const response = await fetch(`http://127.0.0.1:${metrics.addr.port}/metrics`);
 * console.log(response.headers.get("content-type")); // "text/plain; version=0.0.4; charset=utf-8"
 * console.log((await response.text()).includes("echo_connections_total")); // true
 * ```
 *
 * @module
 */
import { VERSION } from "./_version.ts";
import { PROXY_REFUSAL_REASONS } from "./proxy_protocol.ts";
import {
  ECHO_TRANSPORTS,
  type EchoStats,
  type EchoTransportName,
  SESSION_DURATION_BUCKETS,
  type TransportCounters,
} from "./stats.ts";
import { listenError } from "./_util.ts";

export { VERSION };

/** The content type of `/metrics`: the Prometheus text format, version 0.0.4. */
export const METRICS_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8";

/** Where a server is in its life, for `/healthz`: `serving` (200), then `draining` (503). */
export type HealthStateName = "serving" | "draining";

/**
 * The health a balancer's checks see. It starts `serving`; {@linkcode HealthState.drain} turns it
 * `draining` for good, which `/healthz` answers with 503 so the balancer takes this instance out
 * of rotation while it still serves the connections that arrive meanwhile.
 *
 * @example
 * ```ts
 * import { HealthState } from "./metrics.ts";
 * const health = new HealthState();
 * console.log(health.state); // "serving"
 * health.drain();
 * console.log(health.state, health.draining); // "draining" true
 * ```
 */
export class HealthState {
  #state: HealthStateName = "serving";
  #drainingSince?: number;

  /** The current state. */
  get state(): HealthStateName {
    return this.#state;
  }

  /** Whether the server is draining. */
  get draining(): boolean {
    return this.#state === "draining";
  }

  /** When draining began (`Date.now()` ms), or undefined while serving. */
  get drainingSince(): number | undefined {
    return this.#drainingSince;
  }

  /** Starts draining: `/healthz` answers 503 from now on. Calling it again changes nothing. */
  drain(): void {
    if (this.#state === "draining") return;
    this.#state = "draining";
    this.#drainingSince = Date.now();
  }

  /**
   * Starts draining and waits `ms` (the balancer's checks need that long to take the instance
   * out), then resolves: the moment for the usual graceful shutdown. An abort (a second signal)
   * resolves it at once.
   *
   * @example On SIGTERM: drain for 5 s, then shut down
   * ```ts
   * import { HealthState } from "./metrics.ts";
   * const health = new HealthState();
   * const started = Date.now();
   * await health.drainFor(50);
   * console.log(health.draining, Date.now() - started >= 50); // true true
   * ```
   *
   * @param ms How long to keep serving while draining, in ms (0: not at all).
   * @param options `signal` ends the wait early.
   * @returns When the drain period is over.
   * @throws {RangeError} When `ms` is negative or not finite.
   */
  drainFor(ms: number, options: { signal?: AbortSignal } = {}): Promise<void> {
    if (!(ms >= 0) || !Number.isFinite(ms)) {
      throw new RangeError(`drain duration must be a finite number of ms >= 0, got ${ms}`);
    }
    this.drain();
    const { signal } = options;
    if (ms === 0 || signal?.aborted) return Promise.resolve();
    return new Promise((resolve) => {
      const done = () => {
        clearTimeout(timer);
        signal?.removeEventListener("abort", done);
        resolve();
      };
      const timer = setTimeout(done, ms);
      signal?.addEventListener("abort", done, { once: true });
    });
  }
}

export { type HostPort, parseHostPort } from "./_address.ts";

/** Options of {@linkcode renderMetrics}. */
export interface RenderMetricsOptions {
  /** The health state, for `echo_draining` (left out without one). */
  health?: HealthState;
  /** Transports shown even while their counters are zero (the ones being served). */
  transports?: readonly EchoTransportName[];
  /** `echo_build_info`'s version label; default {@linkcode VERSION}. */
  version?: string;
  /** `process_start_time_seconds`, in seconds since the epoch; default the process's start. */
  startTime?: number;
}

/** Escapes a label value (backslash, double quote, line feed), as the text format asks. */
function labelValue(value: string): string {
  return value.replace(/\\/g, "\\\\").replace(/"/g, '\\"').replace(/\n/g, "\\n");
}

/** A sample value in the text format: integers plainly, `+Inf`, `-Inf`, `NaN`. */
function sampleValue(value: number): string {
  if (value === Infinity) return "+Inf";
  if (value === -Infinity) return "-Inf";
  if (Number.isNaN(value)) return "NaN";
  return String(value);
}

class Exposition {
  #lines: string[] = [];

  family(name: string, type: "counter" | "gauge" | "histogram", help: string): void {
    this.#lines.push(`# HELP ${name} ${help.replace(/\\/g, "\\\\").replace(/\n/g, "\\n")}`);
    this.#lines.push(`# TYPE ${name} ${type}`);
  }

  sample(name: string, value: number, labels: Record<string, string> = {}): void {
    const pairs = Object.entries(labels).map(([k, v]) => `${k}="${labelValue(v)}"`);
    this.#lines.push(`${name}${pairs.length ? `{${pairs.join(",")}}` : ""} ${sampleValue(value)}`);
  }

  text(): string {
    return this.#lines.join("\n") + "\n";
  }
}

/** Which transports a family applies to: stream sessions, datagrams (and messages), or both. */
type Kind = "stream" | "datagram" | "any";

const KIND_OF: Record<EchoTransportName | "all", Kind> = {
  tcp: "stream",
  tls: "stream",
  unix: "stream",
  udp: "datagram",
  ws: "any", // sessions that carry messages
  all: "any",
};

const PER_TRANSPORT: readonly {
  name: string;
  key: keyof TransportCounters;
  type: "counter" | "gauge";
  kind: Kind;
  help: string;
}[] = [
  {
    name: "echo_connections_total",
    key: "sessionsTotal",
    type: "counter",
    kind: "stream",
    help: "Stream sessions accepted.",
  },
  {
    name: "echo_current_sessions",
    key: "sessionsOpen",
    type: "gauge",
    kind: "stream",
    help: "Stream sessions open now.",
  },
  {
    name: "echo_bytes_in_total",
    key: "bytesIn",
    type: "counter",
    kind: "any",
    help: "Payload bytes received.",
  },
  {
    name: "echo_bytes_out_total",
    key: "bytesOut",
    type: "counter",
    kind: "any",
    help: "Payload bytes echoed back.",
  },
  {
    name: "echo_datagrams_in_total",
    key: "datagramsIn",
    type: "counter",
    kind: "datagram",
    help: "Datagrams (WebSocket messages) received.",
  },
  {
    name: "echo_datagrams_out_total",
    key: "datagramsOut",
    type: "counter",
    kind: "datagram",
    help: "Datagrams (WebSocket messages) echoed back.",
  },
  {
    name: "echo_errors_total",
    key: "errors",
    type: "counter",
    kind: "any",
    help: "Sessions and datagrams that ended in an error.",
  },
];

function applies(family: Kind, transport: Kind): boolean {
  return family === "any" || transport === "any" || family === transport;
}

/**
 * Renders counters in the Prometheus text exposition format 0.0.4 (the series are listed in the
 * module documentation). Every family has its `# HELP` and `# TYPE` lines; counters end in
 * `_total`; the histogram's buckets are cumulative and end with `le="+Inf"`.
 *
 * @example
 * ```ts
 * import { createStats, recordSessionDuration } from "./stats.ts";
 * import { renderMetrics } from "./metrics.ts";
 *
 * const stats = createStats();
 * stats.sessionsTotal++;
 * stats.transports!.tcp.sessionsTotal++;
 * recordSessionDuration(stats, 20);
 * const text = renderMetrics(stats, { transports: ["tcp", "udp"] });
 * console.log(text.includes('echo_connections_total{transport="tcp"} 1')); // true
 * console.log(text.includes('echo_session_duration_seconds_bucket{le="0.025"} 1')); // true
 * ```
 *
 * @param stats The counters (a snapshot or the live object).
 * @param options Health, transports always shown, build version, start time.
 * @returns The exposition text, ending in a newline.
 */
export function renderMetrics(stats: EchoStats, options: RenderMetricsOptions = {}): string {
  const out = new Exposition();
  out.family("echo_build_info", "gauge", "Always 1: the echo module's version and Deno's.");
  out.sample("echo_build_info", 1, {
    version: options.version ?? VERSION,
    deno: Deno.version.deno,
  });
  out.family("process_start_time_seconds", "gauge", "Start time of the process, in Unix seconds.");
  out.sample(
    "process_start_time_seconds",
    options.startTime ?? Math.floor(performance.timeOrigin / 10) / 100,
  );
  if (options.health) {
    out.family("echo_draining", "gauge", "1 while the server drains (/healthz answers 503).");
    out.sample("echo_draining", options.health.draining ? 1 : 0);
  }

  const split = stats.transports;
  const rows: [EchoTransportName | "all", TransportCounters][] = [];
  if (split) {
    const wanted = new Set(options.transports ?? []);
    for (const name of ECHO_TRANSPORTS) {
      const counters = split[name];
      if (!counters) continue;
      const used = PER_TRANSPORT.some(({ key }) => counters[key] !== 0);
      if (used || wanted.has(name)) rows.push([name, counters]);
    }
  } else {
    rows.push(["all", stats]);
  }
  for (const { name, key, type, kind, help } of PER_TRANSPORT) {
    const shown = rows.filter(([transport]) => applies(kind, KIND_OF[transport]));
    if (shown.length === 0) continue;
    out.family(name, type, help);
    for (const [transport, counters] of shown) out.sample(name, counters[key], { transport });
  }

  out.family(
    "echo_refused_total",
    "counter",
    "Connections and datagrams refused or cut, by reason.",
  );
  for (const [reason, count] of Object.entries(stats.dropped)) {
    out.sample("echo_refused_total", count, { reason });
  }
  const proxy = stats.proxyRefused;
  for (const reason of PROXY_REFUSAL_REASONS) {
    out.sample("echo_refused_total", proxy?.[reason] ?? 0, { reason: `proxy_${reason}` });
  }

  const histogram = stats.sessionDuration;
  const name = "echo_session_duration_seconds";
  out.family(name, "histogram", "How long stream sessions lasted, in seconds.");
  let cumulative = 0;
  SESSION_DURATION_BUCKETS.forEach((bound, i) => {
    cumulative += histogram?.counts[i] ?? 0;
    out.sample(`${name}_bucket`, cumulative, { le: String(bound) });
  });
  out.sample(`${name}_bucket`, histogram?.count ?? 0, { le: "+Inf" });
  out.sample(`${name}_sum`, histogram?.sum ?? 0);
  out.sample(`${name}_count`, histogram?.count ?? 0);

  if (stats.impairment) {
    out.family("echo_impairment_total", "counter", "UDP replies the impairment stage changed.");
    for (const [action, count] of Object.entries(stats.impairment)) {
      out.sample("echo_impairment_total", count, { action });
    }
  }
  return out.text();
}

/** Options of {@linkcode serveMetrics}. */
export interface ServeMetricsOptions {
  /** Address to bind; default `127.0.0.1` (scrapers reach it locally or through a tunnel). */
  hostname?: string;
  /** Port to bind; 0 picks a free one. */
  port: number;
  /** The counters to expose, or a function that returns them at each scrape (e.g. totals). */
  stats: EchoStats | (() => EchoStats);
  /** The health state `/healthz` reports; default a new one, exposed as the handle's `health`. */
  health?: HealthState;
  /** Transports shown even while their counters are zero. */
  transports?: readonly EchoTransportName[];
  /** `echo_build_info`'s version; default {@linkcode VERSION}. */
  version?: string;
  /** Stops the server when aborted. */
  signal?: AbortSignal;
}

/** The handle {@linkcode serveMetrics} returns, shaped like `Deno.serve`'s. */
export interface MetricsServer extends AsyncDisposable {
  /** The address bound. */
  readonly addr: Deno.NetAddr;
  /** The health state `/healthz` reports: call `health.drain()` to start draining. */
  readonly health: HealthState;
  /** Settles when the server has stopped. */
  readonly finished: Promise<void>;
  /** Stops accepting, ends open requests, and settles when done. */
  shutdown(): Promise<void>;
  /** Lets the process exit while the server runs. */
  unref(): void;
  /** Undoes {@linkcode MetricsServer.unref}. */
  ref(): void;
}

function text(body: string, status: number, headers: Record<string, string> = {}): Response {
  return new Response(body, {
    status,
    headers: {
      "content-type": "text/plain; charset=utf-8",
      "cache-control": "no-store",
      ...headers,
    },
  });
}

/**
 * Serves `GET /metrics` ({@linkcode renderMetrics}, content type {@linkcode METRICS_CONTENT_TYPE})
 * and `GET /healthz` (200 `serving` / 503 `draining`) on `Deno.serve`. `HEAD` works as `GET`;
 * another method on those paths is 405, any other path 404.
 *
 * @example Health turns 503 when draining
 * ```ts
 * import { createStats } from "./stats.ts";
 * import { serveMetrics } from "./metrics.ts";
 *
 * await using metrics = serveMetrics({ port: 0, stats: createStats() });
 * const url = `http://127.0.0.1:${metrics.addr.port}/healthz`;
 * const before = await fetch(url);
 * console.log(before.status, await before.text()); // 200 "serving\n"
 * metrics.health.drain();
 * const after = await fetch(url);
 * console.log(after.status, await after.text()); // 503 "draining\n"
 * ```
 *
 * @param options Where to listen, the counters and the health state.
 * @returns The running server.
 * @throws {RangeError} When `port` is not a whole number 0-65535.
 * @throws {TypeError} When `hostname` is not a non-empty string.
 * @throws {EchoConnectionError} When the address cannot be bound (in use, not local, not an
 * address), with a one-line message.
 */
export function serveMetrics(options: ServeMetricsOptions): MetricsServer {
  const hostname = options.hostname ?? "127.0.0.1";
  const { port } = options;
  if (typeof hostname !== "string" || hostname === "") {
    throw new TypeError(
      `metrics hostname must be a host name or address, got ${JSON.stringify(hostname)}`,
    );
  }
  if (!Number.isInteger(port) || port < 0 || port > 65535) {
    throw new RangeError(`metrics port must be a whole number 0-65535, got ${port}`);
  }
  const health = options.health ?? new HealthState();
  const statsOf = typeof options.stats === "function"
    ? options.stats
    : () => options.stats as EchoStats;
  const render = { health, transports: options.transports, version: options.version };
  const handler = (request: Request): Response => {
    const path = new URL(request.url).pathname;
    if (path !== "/metrics" && path !== "/healthz") return text("not found\n", 404);
    if (request.method !== "GET" && request.method !== "HEAD") {
      return text("method not allowed\n", 405, { allow: "GET, HEAD" });
    }
    if (path === "/healthz") {
      return health.draining ? text("draining\n", 503) : text("serving\n", 200);
    }
    return text(renderMetrics(statsOf(), render), 200, { "content-type": METRICS_CONTENT_TYPE });
  };
  let server: Deno.HttpServer<Deno.NetAddr>;
  try {
    server = Deno.serve({ hostname, port, signal: options.signal, onListen() {} }, handler);
  } catch (error) {
    throw listenError(error, { hostname, port, transport: "tcp" });
  }
  return {
    addr: server.addr,
    health,
    finished: server.finished,
    shutdown: () => server.shutdown(),
    ref: () => server.ref(),
    unref: () => server.unref(),
    [Symbol.asyncDispose]: () => server.shutdown(),
  };
}
