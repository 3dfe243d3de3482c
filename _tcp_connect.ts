/**
 * Connecting a TCP client to a host name with every address it has (Happy Eyeballs, RFC 8305), for
 * tcp.ts's clients and the probe's TCP lane.
 *
 * @module
 */

/** Options of {@linkcode connectAnyAddress}. */
export interface ConnectAnyOptions {
  /** Cancels every attempt. */
  signal?: AbortSignal;
  /** Resolves a name to all its addresses; default the system resolver (tests pass their own). */
  lookup?: (name: string) => Promise<string[]>;
}

/** How long a connection attempt gets before the next address of the name is tried too (RFC 8305). */
const ATTEMPT_DELAY_MS = 250;

/** One connection attempt of {@linkcode connectAnyAddress}. */
interface Attempt {
  conn?: Deno.TcpConn;
  error?: unknown;
  settled: Promise<void>;
}

/**
 * Connects to a host name the way Happy Eyeballs (RFC 8305) does: the name itself first (Deno
 * connects to its first address, and `--allow-net=NAME` keeps applying), then every other address
 * of the name, each started when the previous one failed or after 250 ms without an answer; the
 * first connection wins and the others are closed. `localhost` that lists `127.0.0.1` first thus
 * still reaches a server bound only to `::1`. IP literals make a single attempt.
 *
 * @example
 * ```ts
 * import { connectAnyAddress } from "./_tcp_connect.ts";
 * const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
 * const conn = await connectAnyAddress("localhost", listener.addr.port);
 * conn.close();
 * listener.close();
 * ```
 *
 * @param hostname A name or address.
 * @param port The port.
 * @param options `signal` cancels every attempt; `lookup` replaces the system resolver.
 * @returns The first connection made.
 */
export async function connectAnyAddress(
  hostname: string,
  port: number,
  options: ConnectAnyOptions = {},
): Promise<Deno.TcpConn> {
  const signal = options.signal;
  const bare = hostname.replace(/^\[(.*)\]$/, "$1");
  const { isIP } = await import("node:net");
  if (isIP(bare) !== 0) return await Deno.connect({ hostname, port, signal });
  const start = (target: string): Attempt => {
    const attempt: Attempt = { settled: Promise.resolve() };
    attempt.settled = Deno.connect({ hostname: target, port, signal }).then(
      (conn) => void (attempt.conn = conn),
      (error) => void (attempt.error = error ?? new Error("connect failed")),
    );
    return attempt;
  };
  // The other addresses are looked up while the first attempt runs; a failed lookup adds none.
  const others = otherAddresses(bare, options.lookup ?? lookupAll);
  const attempts = [start(hostname)];
  let winner: Deno.TcpConn | undefined;
  try {
    for (let next = 0;;) {
      const rest = await others;
      const open = attempts.filter((a) => !a.conn && a.error === undefined);
      const wait = next < rest.length ? delay(ATTEMPT_DELAY_MS) : undefined;
      await Promise.race([...open.map((a) => a.settled), ...(wait ? [wait.done] : [])]);
      wait?.cancel();
      winner = attempts.find((a) => a.conn)?.conn;
      if (winner) return winner;
      const failed = attempts.every((a) => a.error !== undefined);
      if (failed && (next >= rest.length || permissionError(attempts))) throw attempts[0].error;
      if (next < rest.length) attempts.push(start(rest[next++]));
    }
  } finally {
    // Attempts that connect after the winner (or after a failure) are closed as soon as they do.
    for (const a of attempts) void a.settled.then(() => a.conn !== winner && a.conn?.close());
  }
}

/** Whether an attempt failed on a permission, which another address of the name cannot fix. */
function permissionError(attempts: readonly Attempt[]): boolean {
  return attempts.some((a) =>
    a.error instanceof Deno.errors.NotCapable || a.error instanceof Deno.errors.PermissionDenied
  );
}

/** A timer that can be cancelled, so a pending delay never keeps the process alive. */
function delay(ms: number): { done: Promise<void>; cancel(): void } {
  let id: ReturnType<typeof setTimeout> | undefined;
  const done = new Promise<void>((resolve) => (id = setTimeout(resolve, ms)));
  return { done, cancel: () => clearTimeout(id) };
}

/** Every address of a name, in the system resolver's order (/etc/hosts applies). */
async function lookupAll(name: string): Promise<string[]> {
  const { lookup } = await import("node:dns/promises");
  return (await lookup(name, { all: true })).map((a) => a.address);
}

/**
 * Every address of a name but the first (which Deno's own connect tries), in the resolver's
 * order, leaving out those `--allow-net` does not grant (no permission prompt for an address the
 * user never named); none when the lookup fails.
 *
 * @param name A host name.
 * @param lookup The resolver.
 * @returns The other addresses.
 */
async function otherAddresses(
  name: string,
  lookup: (name: string) => Promise<string[]>,
): Promise<string[]> {
  try {
    const found = (await lookup(name)).slice(1);
    return found.filter((host) =>
      Deno.permissions.querySync({ name: "net", host }).state === "granted"
    );
  } catch {
    return [];
  }
}
