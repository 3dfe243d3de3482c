/**
 * Running server.ts and client.ts as children for the transport CLI tests (TLS, Unix sockets):
 * start a server and wait for its ready line, run a client to completion, assert one-line errors.
 *
 * @module
 */
import assert from "node:assert/strict";
import { childEnded, type ReadChild, readyOrKill, ROOT, spawnServer } from "./_helpers.ts";

const decoder = new TextDecoder();

/** A server.ts child whose ready line has been read. */
export interface ServerChild extends ReadChild {
  /** The ready line's match. */
  ready: RegExpExecArray;
}

/**
 * Starts server.ts and waits for a stdout line matching `ready`.
 *
 * @param args Flags for server.ts.
 * @param deno Permission flags for `deno run`.
 * @param ready The ready line to wait for.
 * @returns The running server.
 */
export async function startServer(
  args: string[],
  deno: string[],
  ready: RegExp,
): Promise<ServerChild> {
  const server = spawnServer(args, deno);
  return { ...server, ready: await readyOrKill(server, server.stdout.waitFor(ready)) };
}

/**
 * Stops a server with SIGINT and collects how it ended.
 *
 * @param server The server.
 * @returns Its exit code, every stdout line and its stderr.
 */
export async function stopServer(
  server: ServerChild,
): Promise<{ code: number; lines: string[]; stderr: string }> {
  server.child.kill("SIGINT");
  return await childEnded(server);
}

/**
 * Runs server.ts or client.ts to completion.
 *
 * @param program Which CLI.
 * @param args Its flags.
 * @param deno Permission flags for `deno run`.
 * @param stdin Bytes for its standard input.
 * @returns Exit code and output.
 */
export async function runProgram(
  program: "server.ts" | "client.ts",
  args: string[],
  deno: string[],
  stdin?: Uint8Array,
): Promise<{ code: number; stdout: string; stdoutBytes: Uint8Array; stderr: string }> {
  const child = new Deno.Command(Deno.execPath(), {
    args: ["run", ...deno, program, ...args],
    cwd: ROOT,
    stdin: stdin ? "piped" : "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const writing = stdin
    ? (async () => {
      const writer = child.stdin.getWriter();
      await writer.write(stdin);
      await writer.close();
    })()
    : Promise.resolve();
  const [{ code, stdout, stderr }] = await Promise.all([child.output(), writing]);
  return {
    code,
    stdout: decoder.decode(stdout),
    stdoutBytes: stdout,
    stderr: decoder.decode(stderr),
  };
}

/**
 * Asserts a failure was reported in exactly one line on stderr, without a stack trace.
 *
 * @param stderr The output.
 * @param pattern What the line must match.
 * @param context Names the case in failure messages.
 */
export function assertOneLine(stderr: string, pattern: RegExp, context: string): void {
  const lines = stderr.trimEnd().split("\n");
  assert.equal(lines.length, 1, `${context}: expected one line on stderr, got:\n${stderr}`);
  assert.match(lines[0], pattern, context);
  assert.doesNotMatch(stderr, /^\s+at /m, `${context}: stack trace on stderr`);
}
