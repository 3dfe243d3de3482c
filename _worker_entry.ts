/**
 * The entry of a TCP echo worker (see _worker_pool.ts): joins the port the main thread serves with a
 * listener of its own (`reusePort`), serves sessions with the same loop and policy as the main
 * thread, forwards the hook calls the main thread asked for, and reports its counters.
 *
 * @module
 */
import { EchoError } from "./errors.ts";
import { listenTcp } from "./_tcp_listen.ts";
import { serveStreamListener } from "./_stream_server.ts";
import { buildPolicy } from "./_policy.ts";
import type { EchoHooks, EchoServer, EchoServerOptions } from "./types.ts";
import type { WorkerReply, WorkerRequest } from "./_worker_pool.ts";

/** How often a worker reports its counters while it runs, in ms. */
const STATS_EVERY_MS = 250;

const scope = globalThis as unknown as {
  postMessage(message: WorkerReply): void;
  onmessage: ((event: MessageEvent<WorkerRequest>) => void) | null;
  close(): void;
};
let server: EchoServer | undefined;
let statsTimer: ReturnType<typeof setInterval> | undefined;

scope.onmessage = (event) => {
  const request = event.data;
  if (request.type === "start") {
    start(request);
  } else if (request.type === "shutdown") {
    void stop();
  }
};

function start(request: Extract<WorkerRequest, { type: "start" }>): void {
  const forward = (hook: keyof EchoHooks) => (info: unknown) =>
    scope.postMessage({ type: "hook", hook, info });
  const hooks: EchoHooks = {};
  for (const hook of request.hooks) {
    if (hook === "onError") {
      hooks.onError = (error) => scope.postMessage({ type: "hook", hook, info: errorInfo(error) });
    } else {
      (hooks as Record<string, unknown>)[hook] = forward(hook);
    }
  }
  const options: EchoServerOptions = { ...request.options, ...hooks };
  try {
    const listeners = listenTcp(request.hostname, request.port, { join: true, queues: 1 });
    // Each thread builds its policy once: a parsed allow-list cannot cross threads.
    server = serveStreamListener(
      listeners,
      options,
      buildPolicy(options).stream,
      {},
      request.sharing,
    );
  } catch (error) {
    scope.postMessage({ type: "failed", message: errorInfo(error).message });
    return;
  }
  statsTimer = setInterval(
    () => scope.postMessage({ type: "stats", stats: server!.stats }),
    STATS_EVERY_MS,
  );
  scope.postMessage({ type: "ready" });
}

async function stop(): Promise<void> {
  clearInterval(statsTimer);
  if (server) await server.shutdown();
  scope.postMessage({ type: "finished", stats: server?.stats });
  scope.close();
}

function errorInfo(error: unknown): { message: string; name: string } {
  if (error instanceof EchoError || error instanceof Error) {
    return { message: error.message.split("\n")[0], name: error.name };
  }
  return { message: String(error), name: "Error" };
}
