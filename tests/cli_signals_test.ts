import assert from "node:assert/strict";
import { onShutdownSignals, SIGNAL_REPEAT_MS } from "../_cli_signals.ts";

/**
 * Resolves on the next delivery of `signal` to this process (after the handlers under test). A
 * signal listener does not keep the event loop alive, so a timer does until the signal comes.
 */
function nextSignal(signal: Deno.Signal): Promise<void> {
  return new Promise((resolve) => {
    const alive = setTimeout(() => {}, 10_000);
    const listener = () => {
      Deno.removeSignalListener(signal, listener);
      clearTimeout(alive);
      resolve();
    };
    Deno.addSignalListener(signal, listener);
  });
}

// deno test handles SIGINT itself, so SIGTERM (the same listener) stands in for it here.
Deno.test("onShutdownSignals: a repeat within the window is the same Ctrl-C; a later one is a second", async () => {
  const seen: string[] = [];
  using _signals = onShutdownSignals({
    graceful: (s) => seen.push(`graceful ${s}`),
    immediate: (s) => seen.push(`immediate ${s}`),
  }, ["SIGTERM"]);
  const start = performance.now();
  for (let i = 0; i < 2; i++) {
    const delivered = nextSignal("SIGTERM");
    Deno.kill(Deno.pid, "SIGTERM");
    await delivered;
  }
  // Both deliveries within the window (as a terminal plus `deno task` send them) count once.
  if (performance.now() - start < SIGNAL_REPEAT_MS) assert.deepEqual(seen, ["graceful SIGTERM"]);
  // One past the window is a second Ctrl-C.
  await new Promise((resolve) => setTimeout(resolve, SIGNAL_REPEAT_MS + 50));
  const delivered = nextSignal("SIGTERM");
  Deno.kill(Deno.pid, "SIGTERM");
  await delivered;
  assert.equal(seen.at(-1), "immediate SIGTERM");
  assert.equal(seen.filter((s) => s.startsWith("graceful")).length, 1);
});
