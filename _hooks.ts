/**
 * Calling user hooks safely: a hook that throws is reported to `onError` and never stops a server.
 *
 * @module
 */
import type { EchoAddress } from "./errors.ts";
import { EchoError } from "./errors.ts";
import type { EchoHooks } from "./types.ts";

/**
 * Calls a hook if present, reporting (not throwing) what it throws.
 *
 * @param hooks The hooks object (for `onError`).
 * @param hook The hook to call.
 * @param info What to pass it.
 */
export function callHook<T>(
  hooks: EchoHooks,
  hook: ((info: T) => void) | undefined,
  info: T,
): void {
  if (!hook) return;
  try {
    hook(info);
  } catch (error) {
    if (hook !== hooks.onError) reportError(hooks, "hook failed", error);
  }
}

/**
 * Reports an unexpected error to `onError`, wrapped in an {@linkcode EchoError} with its context.
 *
 * @param hooks The hooks object.
 * @param what What was being done, e.g. `accept failed`.
 * @param cause The error.
 * @param address The address concerned.
 */
export function reportError(
  hooks: EchoHooks,
  what: string,
  cause: unknown,
  address?: EchoAddress,
): void {
  if (!hooks.onError) return;
  const detail = cause instanceof Error ? cause.message.split("\n")[0] : String(cause);
  try {
    hooks.onError(new EchoError(`${what}: ${detail}`, { address, cause }));
  } catch {
    // an onError hook that throws has nowhere left to report to
  }
}
