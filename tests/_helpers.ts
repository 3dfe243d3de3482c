/**
 * Helpers shared by the socket and CLI tests: seeded random bytes, digests, line readers over a
 * child's output, and a probe for IPv6 loopback.
 *
 * @module
 */
import type { Random } from "../_random.ts";

/** The repository root, where server.ts and client.ts live. */
export const ROOT: string = new URL("..", import.meta.url).pathname;

/**
 * Fills a new array with bytes drawn from a seeded generator, so a failing run can be reproduced.
 *
 * @param length How many bytes.
 * @param random The generator.
 * @returns The bytes.
 */
export function randomBytes(length: number, random: Random): Uint8Array {
  const bytes = new Uint8Array(length);
  const words = Math.floor(length / 4);
  const view = new DataView(bytes.buffer);
  for (let i = 0; i < words; i++) view.setUint32(i * 4, random.nextUint32(), true);
  for (let i = words * 4; i < length; i++) bytes[i] = random.nextUint32() & 0xff;
  return bytes;
}

/**
 * A whole number in [min, max], drawn from `random`.
 *
 * @param random The generator.
 * @param min Smallest value.
 * @param max Largest value.
 * @returns The number.
 */
export function randomInt(random: Random, min: number, max: number): number {
  return min + Math.floor(random.next() * (max - min + 1));
}

/**
 * SHA-256 of some bytes, as hex.
 *
 * @param data The bytes.
 * @returns The digest.
 */
export async function sha256(data: Uint8Array): Promise<string> {
  const digest = new Uint8Array(
    await crypto.subtle.digest("SHA-256", data as Uint8Array<ArrayBuffer>),
  );
  return Array.from(digest, (b) => b.toString(16).padStart(2, "0")).join("");
}

/**
 * Reads lines from a byte stream, one at a time, keeping every line seen for later assertions.
 */
export class LineReader {
  /** Every line read so far. */
  readonly seen: string[] = [];
  #lines: AsyncIterator<string>;

  /**
   * @param stream A child's stdout or stderr.
   */
  constructor(stream: ReadableStream<Uint8Array>) {
    this.#lines = lines(stream)[Symbol.asyncIterator]();
  }

  /**
   * The next line, or undefined at the end of the stream.
   *
   * @returns The line.
   */
  async next(): Promise<string | undefined> {
    const { value, done } = await this.#lines.next();
    if (done) return undefined;
    this.seen.push(value);
    return value;
  }

  /**
   * Reads until a line matches, failing if the stream ends first, or (a watchdog, so a wrong
   * pattern fails the test instead of hanging the suite) if nothing matches within `limit` ms.
   *
   * @param pattern What to wait for.
   * @param limit Watchdog, in ms.
   * @returns The match.
   */
  async waitFor(pattern: RegExp, limit = 30_000): Promise<RegExpExecArray> {
    let timer: ReturnType<typeof setTimeout> | undefined;
    const expired = new Promise<never>((_, reject) => {
      timer = setTimeout(
        () =>
          reject(
            new Error(
              `no line matching ${pattern} within ${limit}ms; saw:\n${this.seen.join("\n")}`,
            ),
          ),
        limit,
      );
    });
    const search = (async () => {
      for (;;) {
        const line = await this.next();
        if (line === undefined) {
          throw new Error(
            `stream ended before a line matching ${pattern}; saw:\n${this.seen.join("\n")}`,
          );
        }
        const match = pattern.exec(line);
        if (match) return match;
      }
    })();
    search.catch(() => {}); // reported through the race, or moot once the watchdog fired
    try {
      return await Promise.race([search, expired]);
    } finally {
      clearTimeout(timer);
    }
  }

  /**
   * Reads the rest of the stream.
   *
   * @returns Every line, including those read before.
   */
  async rest(): Promise<string[]> {
    while ((await this.next()) !== undefined) {
      // keep reading
    }
    return this.seen;
  }
}

async function* lines(stream: ReadableStream<Uint8Array>): AsyncGenerator<string> {
  let buffered = "";
  for await (const text of stream.pipeThrough(new TextDecoderStream())) {
    buffered += text;
    let newline;
    while ((newline = buffered.indexOf("\n")) >= 0) {
      yield buffered.slice(0, newline);
      buffered = buffered.slice(newline + 1);
    }
  }
  if (buffered) yield buffered;
}

/**
 * Reads a whole byte stream.
 *
 * @param stream The stream.
 * @returns Its bytes.
 */
export async function readAll(stream: ReadableStream<Uint8Array>): Promise<Uint8Array> {
  const chunks: Uint8Array[] = [];
  let length = 0;
  for await (const chunk of stream) {
    chunks.push(chunk);
    length += chunk.length;
  }
  const all = new Uint8Array(length);
  let offset = 0;
  for (const chunk of chunks) {
    all.set(chunk, offset);
    offset += chunk.length;
  }
  return all;
}

/** Whether this machine has IPv6 loopback (tests for ::1 are skipped cleanly otherwise). */
export const HAS_IPV6: boolean = (() => {
  try {
    Deno.listen({ hostname: "::1", port: 0 }).close();
    return true;
  } catch {
    return false;
  }
})();

/**
 * A promise with its resolver, for turning a hook call into something a test can await.
 *
 * @returns The promise and its resolver.
 */
export function signalled<T = void>(): { promise: Promise<T>; resolve: (value: T) => void } {
  const { promise, resolve } = Promise.withResolvers<T>();
  return { promise, resolve };
}

/**
 * Collects hook calls and lets a test wait until a condition on them holds.
 */
export class Recorder<T> {
  /** Every item recorded. */
  readonly items: T[] = [];
  #waiters: { test: (items: T[]) => boolean; resolve: () => void }[] = [];

  /**
   * Records one item.
   *
   * @param item The item.
   */
  push = (item: T): void => {
    this.items.push(item);
    this.#waiters = this.#waiters.filter((w) => (w.test(this.items) ? (w.resolve(), false) : true));
  };

  /**
   * Resolves once `test` holds on the recorded items.
   *
   * @param test The condition.
   * @returns When it holds.
   */
  until(test: (items: T[]) => boolean): Promise<void> {
    if (test(this.items)) return Promise.resolve();
    const { promise, resolve } = Promise.withResolvers<void>();
    this.#waiters.push({ test, resolve });
    return promise;
  }
}

/**
 * Deno.test with the op and resource sanitizers on (Deno 2.9 turns them off by default), so a test
 * fails when a socket, a child process or a timer outlives it.
 *
 * @param name The test name.
 * @param fn The test.
 * @param options Extra Deno.test options, e.g. `ignore`.
 */
export function test(
  name: string,
  fn: (t: Deno.TestContext) => void | Promise<void>,
  options: Omit<Deno.TestDefinition, "name" | "fn"> = {},
): void {
  Deno.test({ name, sanitizeOps: true, sanitizeResources: true, ...options, fn });
}

/**
 * Holds a UDP port whose TCP twin was free a moment ago, for "UDP port in use" tests: an arbitrary
 * UDP port's TCP twin may be some busy machine's ephemeral client port.
 *
 * @returns The bound UDP socket; close it when done.
 */
export function takeUdpPortWithFreeTcp(): Deno.DatagramConn {
  for (let attempt = 0; attempt < 50; attempt++) {
    const tcp = Deno.listen({ hostname: "127.0.0.1", port: 0 });
    const port = (tcp.addr as Deno.NetAddr).port;
    try {
      return Deno.listenDatagram({ hostname: "127.0.0.1", port, transport: "udp" });
    } catch (error) {
      if (!(error instanceof Deno.errors.AddrInUse)) throw error;
    } finally {
      tcp.close();
    }
  }
  throw new Error("no port free for both TCP and UDP in 50 attempts");
}

/**
 * A watchdog for awaiting events that should come at once: the returned function rejects when its
 * promise takes longer than `limit` ms (default `ms`). Never a synchronisation.
 *
 * @param ms The default limit, in ms.
 * @returns `within(promise, what, limit?)`.
 */
export function watchdog(
  ms: number,
): <T>(promise: Promise<T>, what: string, limit?: number) => Promise<T> {
  return async <T>(promise: Promise<T>, what: string, limit = ms): Promise<T> => {
    let timer: ReturnType<typeof setTimeout> | undefined;
    const expired = new Promise<never>((_, reject) => {
      timer = setTimeout(
        () => reject(new Error(`timed out after ${limit}ms waiting for ${what}`)),
        limit,
      );
    });
    try {
      return await Promise.race([promise, expired]);
    } finally {
      clearTimeout(timer);
    }
  };
}

/** A child process whose stdout is read line by line and whose stderr is collected whole. */
export interface ReadChild {
  /** The process. */
  child: Deno.ChildProcess;
  /** Its stdout, line by line. */
  stdout: LineReader;
  /** All of its stderr, once it exits. */
  stderr: Promise<string>;
}

/**
 * Spawns `command` with no stdin and piped output.
 *
 * @param command The program.
 * @param args Its arguments.
 * @param cwd Its working directory (default: this process's).
 * @returns The child and its readers.
 */
export function spawnChild(command: string, args: string[], cwd?: string): ReadChild {
  const child = new Deno.Command(command, {
    args,
    cwd,
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  return { child, stdout: new LineReader(child.stdout), stderr: new Response(child.stderr).text() };
}

/**
 * Spawns `deno run <deno> server.ts <args>` in the repository root.
 *
 * @param args Flags for server.ts.
 * @param deno Flags for `deno run`.
 * @returns The child and its readers.
 */
export function spawnServer(args: string[], deno: string[] = ["--allow-net"]): ReadChild {
  return spawnChild(Deno.execPath(), ["run", ...deno, "server.ts", ...args], ROOT);
}

/**
 * Awaits `ready` (reading a child's ready lines); if it fails, kills the child, waits for it and
 * throws the error with the child's stderr.
 *
 * @param child The child.
 * @param ready What to wait for.
 * @returns What `ready` resolved to.
 */
export async function readyOrKill<T>(child: ReadChild, ready: Promise<T>): Promise<T> {
  try {
    return await ready;
  } catch (error) {
    child.child.kill();
    await child.child.status;
    throw new Error(`${error}\nstderr: ${await child.stderr}`);
  }
}

/**
 * Waits for a child to end and collects how: its exit code, every stdout line, its stderr.
 *
 * @param child The child.
 * @returns The exit code and output.
 */
export async function childEnded(
  child: ReadChild,
): Promise<{ code: number; lines: string[]; stderr: string }> {
  const [status, lines, stderr] = await Promise.all([
    child.child.status,
    child.stdout.rest(),
    child.stderr,
  ]);
  return { code: status.code, lines, stderr };
}

/**
 * Runs `deno eval <code>` in the repository root to completion. A watchdog, not a
 * synchronisation: the child is killed with SIGKILL if it outlives `limit` ms, which shows as a
 * non-null `signal` in the output.
 *
 * @param code The script.
 * @param limit Watchdog, in ms.
 * @returns Its exit code, signal and output.
 */
export async function runEval(code: string, limit: number): Promise<Deno.CommandOutput> {
  const child = new Deno.Command(Deno.execPath(), {
    args: ["eval", code],
    cwd: ROOT,
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const timer = setTimeout(() => child.kill("SIGKILL"), limit);
  try {
    return await child.output();
  } finally {
    clearTimeout(timer);
  }
}

/** How a connection ended from the client's side, and what came before. */
export interface Ending {
  /** `eof`: the server closed (FIN); `reset`: it reset the connection (RST). */
  end: "eof" | "reset";
  /** Everything received before the end. */
  received: Uint8Array;
}

/**
 * Reads until the server ends the connection, by FIN or by RST.
 *
 * @param conn The connection.
 * @returns How it ended and what came before.
 */
export async function readUntilClosed(conn: Deno.Conn): Promise<Ending> {
  const chunks: Uint8Array[] = [];
  const buffer = new Uint8Array(64 * 1024);
  let end: Ending["end"] = "eof";
  try {
    for (;;) {
      const n = await conn.read(buffer);
      if (n === null) break;
      chunks.push(buffer.slice(0, n));
    }
  } catch (error) {
    if (!(error instanceof Deno.errors.ConnectionReset)) throw error;
    end = "reset";
  }
  const received = new Uint8Array(chunks.reduce((sum, c) => sum + c.length, 0));
  let offset = 0;
  for (const chunk of chunks) received.set(chunk, (offset += chunk.length) - chunk.length);
  return { end, received };
}

/**
 * The tutorial's TCP client, by hand: connect, send, read as many bytes back, close.
 *
 * @param port The server's port on 127.0.0.1.
 * @param message What to send.
 * @returns What came back (shorter if the server closed early).
 */
export async function tutorialTcpClient(port: number, message: string): Promise<string> {
  const conn = await Deno.connect({ hostname: "127.0.0.1", port });
  const data = new TextEncoder().encode(message);
  await conn.write(data);
  const reply = new Uint8Array(data.length);
  let got = 0;
  while (got < reply.length) {
    const n = await conn.read(reply.subarray(got));
    if (n === null) break;
    got += n;
  }
  conn.close();
  return new TextDecoder().decode(reply.subarray(0, got));
}

/**
 * Sends `data` and reads exactly as many bytes back, which must be the same bytes.
 *
 * @param conn The connection.
 * @param data What to send.
 */
export async function roundTrip(conn: Deno.Conn, data: Uint8Array): Promise<void> {
  for (let written = 0; written < data.length;) written += await conn.write(data.subarray(written));
  const reply = new Uint8Array(data.length);
  for (let got = 0; got < reply.length;) {
    const n = await conn.read(reply.subarray(got));
    if (n === null) throw new Error(`closed after ${got} of ${data.length} echoed bytes`);
    got += n;
  }
  if (reply.some((byte, i) => byte !== data[i])) throw new Error("the echo differs from the data");
}
