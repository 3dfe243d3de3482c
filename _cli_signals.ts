/**
 * Shutdown signals for the CLIs: the first Ctrl-C (SIGINT) or SIGTERM asks for a graceful stop, a
 * second one exits at once. A terminal's Ctrl-C signals the whole foreground process group, and a
 * task runner (`deno task`, npm scripts) forwards it to its child too, so one keypress can arrive
 * twice within a millisecond or two: signals that follow the first within
 * {@linkcode SIGNAL_REPEAT_MS} count as the same keypress.
 *
 * @module
 */

/** Signals this close together (ms) are one Ctrl-C delivered twice (by the terminal and a task runner). */
export const SIGNAL_REPEAT_MS = 250;

/** What {@linkcode onShutdownSignals} calls. */
export interface ShutdownSignalHandlers {
  /** The first signal: stop gracefully. */
  graceful(signal: Deno.Signal): void;
  /** A second signal, at least {@linkcode SIGNAL_REPEAT_MS} after the first: exit now. */
  immediate(signal: Deno.Signal): void;
}

/**
 * Listens for SIGINT and SIGTERM (those the platform has) until disposed.
 *
 * @example
 * ```ts
 * import { onShutdownSignals } from "./_cli_signals.ts";
 * const controller = new AbortController();
 * using _signals = onShutdownSignals({
 *   graceful: () => controller.abort(),
 *   immediate: () => Deno.exit(130),
 * });
 * ```
 *
 * @param handlers What to do on the first and on a later signal.
 * @param signals The signals to listen for. Default SIGINT and SIGTERM.
 * @returns A handle whose disposal removes the listeners.
 */
export function onShutdownSignals(
  handlers: ShutdownSignalHandlers,
  signals: readonly Deno.Signal[] = ["SIGINT", "SIGTERM"],
): Disposable {
  let first: number | undefined;
  const listeners = signals.map((signal) => {
    const listener = () => {
      const now = performance.now();
      if (first === undefined) {
        first = now;
        handlers.graceful(signal);
      } else if (now - first >= SIGNAL_REPEAT_MS) {
        handlers.immediate(signal);
      }
    };
    try {
      Deno.addSignalListener(signal, listener);
      return { signal, listener };
    } catch {
      return undefined; // SIGTERM cannot be listened for on Windows
    }
  });
  return {
    [Symbol.dispose]() {
      for (const entry of listeners) {
        if (entry) Deno.removeSignalListener(entry.signal, entry.listener);
      }
    },
  };
}
