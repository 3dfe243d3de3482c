/**
 * Running server.ts and client.ts as children for the transport CLI tests (TLS, Unix sockets):
 * start a server and wait for its ready line, run a client to completion, assert one-line errors.
 *
 * @module
 */
import assert from "node:assert/strict";
import { LineReader, ROOT } from "./_helpers.ts";

const decoder = new TextDecoder();

/** A server.ts child whose ready line has been read. */
export interface ServerChild {
  /** The process. */
  child: Deno.ChildProcess;
  /** Its stdout, line by line (the ready line already read). */
  stdout: LineReader;
  /** All of its stderr, once it exits. */
  stderr: Promise<string>;
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
  const child = new Deno.Command(Deno.execPath(), {
    args: ["run", ...deno, "server.ts", ...args],
    cwd: ROOT,
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const stdout = new LineReader(child.stdout);
  const stderr = new Response(child.stderr).text();
  try {
    return { child, stdout, stderr, ready: await stdout.waitFor(ready) };
  } catch (error) {
    child.kill();
    await child.status;
    throw new Error(`${error}\nstderr: ${await stderr}`);
  }
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
  const [status, lines, stderr] = await Promise.all([
    server.child.status,
    server.stdout.rest(),
    server.stderr,
  ]);
  return { code: status.code, lines, stderr };
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
}
