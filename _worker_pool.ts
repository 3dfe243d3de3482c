/**
 * `serveEcho({ workers })`: TCP served by the main thread and N−1 Web Workers, each accepting on
 * its own listener of the same port (`reusePort`; the kernel spreads new connections over the
 * listeners), UDP on the main thread. The connection cap counts the sessions of every thread (a
 * SharedArrayBuffer), counters are the sum of every thread's, hooks run on the main thread, and
 * shutdown stops every thread.
 *
 * @module
 */
import { callHook } from "./_hooks.ts";
import { canSharePort, listenTcp } from "./_tcp_listen.ts";
import { serveStreamListener, type StreamSharing } from "./_stream_server.ts";
import { EchoConnectionError, EchoError } from "./errors.ts";
import { listenError } from "./_util.ts";
import { policyOf, usePolicy } from "./_policy.ts";
import { optionRangeError, optionTypeError } from "./_validate.ts";
import type {
  EchoHooks,
  EchoServer,
  EchoServerOptions,
  ListenInfo,
  ServeEchoOptions,
} from "./types.ts";
import { DEFAULT_PORT } from "./types.ts";
import { createStats, type DropCounters, type EchoStats, sumStats } from "./stats.ts";
import { serveUdpEcho } from "./udp.ts";

/** A message from the main thread to a worker. */
export type WorkerRequest =
  | {
    type: "start";
    hostname: string;
    port: number;
    /** The server options that can cross threads (no hooks, signal or stats). */
    options: EchoServerOptions;
    /** The hooks the main thread wants called. */
    hooks: (keyof EchoHooks)[];
    sharing: StreamSharing;
  }
  | { type: "shutdown" };

/** A message from a worker to the main thread. */
export type WorkerReply =
  | { type: "ready" }
  | { type: "failed"; message: string }
  | { type: "hook"; hook: keyof EchoHooks; info: unknown }
  | { type: "stats"; stats: EchoStats }
  | { type: "finished"; stats?: EchoStats };

const HOOKS: readonly (keyof EchoHooks)[] = [
  "onConnection",
  "onData",
  "onClose",
  "onReject",
  "onError",
];

/** The module every worker runs. */
const WORKER_MODULE = new URL("./_worker_entry.ts", import.meta.url);

/** How many times a shared port is picked again when UDP cannot bind the port TCP got. */
const PORT_RETRIES = 20;

/**
 * Checks a `workers` value: a whole number of at least 1; above 1 it needs port sharing.
 *
 * @example
 * ```ts
 * import { validateWorkers } from "./_worker_pool.ts";
 * validateWorkers(1); // always fine
 * try {
 *   validateWorkers(0);
 * } catch (error) {
 *   console.log((error as Error).name); // "RangeError"
 * }
 * ```
 *
 * @param workers The number of threads that accept TCP connections.
 * @param options The rest of the options, for the combinations that cannot work.
 * @throws {RangeError} When it is not a whole number of at least 1.
 * @throws {TypeError} When port sharing is unavailable or the options exclude workers.
 * @throws {Deno.errors.NotCapable} Without read permission for the workers' module.
 */
export function validateWorkers(workers: number, options: ServeEchoOptions = {}): void {
  if (!Number.isInteger(workers) || workers < 1) {
    throw optionRangeError(
      "workers",
      `workers must be a whole number of at least 1, got ${workers}`,
    );
  }
  if (workers === 1) return;
  if (!canSharePort()) {
    throw optionTypeError(
      "workers",
      Deno.build.os === "linux"
        ? 'workers above 1 need unstable net (Deno.listen\'s reusePort): add "unstable": ["net"] to deno.json or run with --unstable-net'
        : `workers above 1 need Linux (the kernel spreads connections over listeners sharing a port); this is ${Deno.build.os}`,
    );
  }
  if (options.once) {
    throw optionTypeError(
      "workers",
      "workers above 1 cannot serve once: one session needs one thread",
    );
  }
  if (options.transport === "udp") {
    throw optionTypeError(
      "workers",
      "workers serve TCP: with transport udp there is nothing for them to do",
    );
  }
  if (options.transport === "unix" || options.tls !== undefined) {
    throw optionTypeError("workers", "workers serve plain TCP: not TLS, not a Unix socket");
  }
  // Deno reads a worker's module like any file: without read permission the worker cannot start.
  if (WORKER_MODULE.protocol === "file:") {
    const path = decodeURIComponent(WORKER_MODULE.pathname);
    if (Deno.permissions.querySync({ name: "read", path }).state !== "granted") {
      // A missing permission, not a bad value: the CLIs report it as such (exit 1, not 2).
      throw new Deno.errors.NotCapable(
        `workers above 1 need --allow-read for ${path} (Deno reads a worker's module)`,
      );
    }
  }
}

/**
 * Starts TCP (and UDP, unless `transport` is `tcp`) on one host and port with `workers` threads
 * accepting TCP connections. serveEcho calls it when `workers` is above 1.
 *
 * @example
 * ```ts
 * import { serveWithWorkers } from "./_worker_pool.ts";
 * import { echoTcp } from "./tcp.ts";
 * await using server = await serveWithWorkers({ port: 0, transport: "tcp" }, 2);
 * await echoTcp("two threads", { port: server.addr.port });
 * ```
 *
 * @param options What serveEcho takes.
 * @param workers Threads that accept TCP connections, the main thread included (at least 2).
 * @returns The running server.
 */
export async function serveWithWorkers(
  options: ServeEchoOptions,
  workers: number,
): Promise<EchoServer> {
  validateWorkers(workers, options);
  const policy = policyOf(options);
  const hostname = policy.hostname;
  const requested = options.port ?? DEFAULT_PORT;
  const own = options.stats ?? createStats();
  const sessions = new Int32Array(new SharedArrayBuffer(4));
  // One id counter for every thread: ids are unique and in order of acceptance across threads.
  const ids = new Int32Array(new SharedArrayBuffer(4));
  const listened: ListenInfo[] = [];
  const inner: ServeEchoOptions = {
    ...options,
    stats: own,
    signal: undefined,
    onListen: (info) => listened.push(info),
  };
  let tcp: EchoServer | undefined;
  let udp: EchoServer | undefined;
  for (let attempt = 0;; attempt++) {
    let listeners: Deno.Listener[];
    try {
      // One listener per thread: the kernel spreads connections evenly over the listeners.
      listeners = listenTcp(hostname, requested, { queues: 1, shared: true });
    } catch (error) {
      throw listenError(error, { hostname, port: requested, transport: "tcp" });
    }
    tcp = serveStreamListener(listeners, inner, policy.stream, {}, { sessions, ids });
    if (options.transport === "tcp") break;
    try {
      udp = await serveUdpEcho(usePolicy({ ...inner, port: tcp.addr.port }, policy));
      break;
    } catch (error) {
      await tcp.shutdown();
      const retry = requested === 0 && attempt < PORT_RETRIES &&
        error instanceof EchoConnectionError && error.cause instanceof Deno.errors.AddrInUse;
      if (!retry) throw error;
      listened.length = 0;
    }
  }
  const port = tcp.addr.port;
  const threads = Array.from({ length: workers - 1 }, () =>
    new WorkerThread(options, {
      type: "start",
      hostname,
      port,
      // The cap is resolved here, so no worker reads the descriptor limit again.
      options: { ...crossable(options), maxConnections: policy.stream.maxConnections },
      hooks: HOOKS.filter((hook) => options[hook] !== undefined),
      sharing: { sessions, ids },
    }));
  const started = await Promise.allSettled(threads.map((thread) => thread.ready));
  const failed = started.find((result) => result.status === "rejected");
  const servers = [tcp, ...(udp ? [udp] : [])];
  if (failed) {
    await Promise.all([...servers.map((s) => s.shutdown()), ...threads.map((t) => t.stop())]);
    throw new EchoConnectionError(
      `a TCP worker could not join port ${port}: ${(failed as PromiseRejectedResult).reason}`,
      { address: { hostname, port, transport: "tcp" } },
    );
  }
  const server = new WorkersServer(servers, threads, own, options.signal);
  for (const info of listened) callHook(options, options.onListen, info);
  return server;
}

/** The options a worker gets: everything but hooks, the signal and the counters. */
function crossable(options: ServeEchoOptions): EchoServerOptions {
  const {
    signal: _signal,
    stats: _stats,
    onListen: _onListen,
    onConnection: _onConnection,
    onData: _onData,
    onClose: _onClose,
    onDatagram: _onDatagram,
    onReject: _onReject,
    onError: _onError,
    ...rest
  } = options as ServeEchoOptions & { workers?: number };
  delete (rest as { workers?: number }).workers;
  return rest;
}

/** One worker, seen from the main thread. */
class WorkerThread {
  readonly ready: Promise<void>;
  /** The worker's latest counters. */
  stats: EchoStats | undefined;
  #worker: Worker;
  #finished: Promise<void>;
  #stopped = false;

  constructor(hooks: EchoHooks, start: WorkerRequest) {
    this.#worker = new Worker(WORKER_MODULE.href, { type: "module" });
    const ready = Promise.withResolvers<void>();
    const finished = Promise.withResolvers<void>();
    this.ready = ready.promise;
    this.#finished = finished.promise;
    this.#worker.onmessage = (event: MessageEvent<WorkerReply>) => {
      const reply = event.data;
      switch (reply.type) {
        case "ready":
          ready.resolve();
          break;
        case "failed":
          ready.reject(reply.message);
          finished.resolve();
          break;
        case "stats":
          this.stats = reply.stats;
          break;
        case "finished":
          if (reply.stats) this.stats = reply.stats;
          finished.resolve();
          this.#worker.terminate();
          break;
        case "hook": {
          const info = reply.hook === "onError"
            ? new EchoError((reply.info as { message: string }).message)
            : reply.info;
          callHook(hooks, hooks[reply.hook] as ((info: unknown) => void) | undefined, info);
          break;
        }
      }
    };
    this.#worker.onerror = (event) => {
      event.preventDefault();
      ready.reject(event.message);
      finished.resolve();
      this.#worker.terminate();
    };
    this.#worker.postMessage(start);
  }

  /** Asks the worker to shut its server down; settles when it has (or has failed). */
  stop(): Promise<void> {
    if (!this.#stopped) {
      this.#stopped = true;
      this.#worker.postMessage({ type: "shutdown" } satisfies WorkerRequest);
    }
    return this.#finished;
  }
}

const COUNTERS = [
  "sessionsOpen",
  "sessionsTotal",
  "bytesIn",
  "bytesOut",
  "datagramsIn",
  "datagramsOut",
  "errors",
] as const;
/** Every refusal reason counted, as createStats makes them. */
const DROPS = Object.keys(createStats().dropped) as (keyof DropCounters)[];

/**
 * Counters that read as the main thread's plus every worker's latest report (workers report
 * every 250 ms and when they finish, so after shutdown the sums are exact).
 */
function totalStats(own: EchoStats, threads: readonly WorkerThread[]): EchoStats {
  const dropped = {} as DropCounters;
  for (const key of DROPS) {
    Object.defineProperty(dropped, key, {
      enumerable: true,
      get: () => threads.reduce((sum, t) => sum + (t.stats?.dropped[key] ?? 0), own.dropped[key]),
    });
  }
  const total = { dropped } as EchoStats;
  for (const key of COUNTERS) {
    Object.defineProperty(total, key, {
      enumerable: true,
      get: () => threads.reduce((sum, t) => sum + (t.stats?.[key] ?? 0), own[key]),
    });
  }
  Object.defineProperty(total, "impairment", { enumerable: true, get: () => own.impairment });
  // The split by transport, the session-duration histogram and the PROXY refusals: summed at
  // each read (a /metrics scrape), from the main thread's counters and each worker's last report.
  const sum = () => sumStats([own, ...threads.flatMap((t) => t.stats ? [t.stats] : [])]);
  for (const key of ["transports", "sessionDuration", "proxyRefused"] as const) {
    Object.defineProperty(total, key, { enumerable: true, get: () => sum()[key] });
  }
  return total;
}

class WorkersServer implements EchoServer {
  readonly addr: Deno.NetAddr;
  readonly listeners: readonly ListenInfo[];
  readonly stats: EchoStats;
  readonly finished: Promise<void>;
  #servers: EchoServer[];
  #threads: WorkerThread[];
  #shutdown?: Promise<void>;

  constructor(
    servers: EchoServer[],
    threads: WorkerThread[],
    own: EchoStats,
    signal: AbortSignal | undefined,
  ) {
    this.#servers = servers;
    this.#threads = threads;
    this.addr = servers[0].addr;
    this.listeners = servers.flatMap((s) => s.listeners);
    this.stats = totalStats(own, threads);
    // The main thread's servers end on shutdown; the workers are stopped by shutdown, which is
    // also what a main server ending for any other reason (a signal) leads to.
    this.finished = Promise.all(servers.map((s) => s.finished)).then(() => this.shutdown());
    if (signal?.aborted) void this.shutdown();
    else signal?.addEventListener("abort", () => void this.shutdown(), { once: true });
  }

  shutdown(): Promise<void> {
    this.#shutdown ??= Promise.all([
      ...this.#servers.map((s) => s.shutdown()),
      ...this.#threads.map((t) => t.stop()),
    ]).then(() => {});
    return this.#shutdown;
  }

  /** The main thread's sockets only: a Deno worker cannot be unref'd. */
  ref(): void {
    for (const server of this.#servers) server.ref();
  }

  /** The main thread's sockets only: the workers keep the process alive until shutdown(). */
  unref(): void {
    for (const server of this.#servers) server.unref();
  }

  [Symbol.asyncDispose](): Promise<void> {
    return this.shutdown();
  }
}
