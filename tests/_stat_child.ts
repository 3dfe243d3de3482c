/**
 * Starts a Deno script that reports on its own process (memory, descriptors) line by line, for
 * tests that must measure a server apart from the test's own sockets.
 */
import { LineReader, ROOT } from "./_helpers.ts";

/** A running reporting child: its process and its stdout as lines. */
export interface StatChild {
  child: Deno.ChildProcess;
  lines: LineReader;
}

/**
 * Runs `deno run PERMISSION SCRIPT ...ARGS` from the project root, stdin piped (closing it tells
 * the script to stop), stdout read as lines, stderr passed through.
 *
 * @param permission One permission flag, e.g. `--allow-net`.
 * @param script The script, relative to the project root.
 * @param args Its arguments.
 * @returns The child and its lines.
 */
export function spawnStatChild(permission: string, script: string, args: string[]): StatChild {
  const child = new Deno.Command(Deno.execPath(), {
    args: ["run", permission, script, ...args],
    cwd: ROOT,
    stdin: "piped",
    stdout: "piped",
    stderr: "inherit",
  }).spawn();
  return { child, lines: new LineReader(child.stdout) };
}
