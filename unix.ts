/**
 * Echo over Unix domain sockets: {@linkcode serveUnixEcho} serves the same stream echo as TCP on a
 * socket file; clients connect with `echoTcp(message, { unix: path })` or
 * `echoTcpStream(input, { unix: path })`. Deno 2.9 asks for `--allow-read`, `--allow-write` and
 * `--allow-net` for a Unix socket (the last can be narrowed to `--allow-net=unix:PATH`).
 *
 * @module
 */
import { callHook, reportError } from "./_hooks.ts";
import { policyOf } from "./_policy.ts";
import { serveStreamListener } from "./_stream_server.ts";
import { describeNetworkError, type EchoAddress, EchoConnectionError } from "./errors.ts";
import type {
  EchoHooks,
  EchoServerOptions,
  UnixEchoOptions,
  UnixEchoServer,
  UnixListenInfo,
} from "./types.ts";
export type {
  UnixCloseInfo,
  UnixConnectionInfo,
  UnixDataInfo,
  UnixEchoHooks,
  UnixEchoOptions,
  UnixEchoServer,
  UnixListenInfo,
  UnixRejectInfo,
} from "./types.ts";

/** Longest socket path the kernel takes, in bytes (`sun_path` holds 108 with the final NUL). */
export const MAX_UNIX_PATH_BYTES = 107;

/**
 * Starts an echo server on a Unix domain socket (a stream socket: every byte is echoed, in order,
 * as on TCP). Before binding, a socket file left at `path` by a server that died (nobody accepts
 * on it) is removed; a path where a server still accepts, or which is a regular file, directory or
 * anything else, is refused. On shutdown the socket file is removed.
 *
 * Checking for a live server means connecting to it once: that server sees one empty session.
 *
 * @example
 * ```ts
 * import { echoTcp } from "./mod.ts";
 * import { serveUnixEcho } from "./unix.ts";
 * const path = `${await Deno.makeTempDir()}/echo.sock`;
 * await using server = await serveUnixEcho({ path });
 * const { reply } = await echoTcp("Hello World", { unix: path });
 * console.log(server.addr.path, new TextDecoder().decode(reply)); // ".../echo.sock" "Hello World"
 * ```
 *
 * @param options The socket path, hooks, limits, signal and counters.
 * @returns The running server.
 * @throws {EchoConnectionError} When the path is taken (a live server, a non-socket file) or
 * cannot be bound (no such directory, no access).
 * @throws {TypeError} When `path` is empty or not a string.
 * @throws {RangeError} When `path` is longer than {@linkcode MAX_UNIX_PATH_BYTES} bytes.
 * @throws {Deno.errors.NotCapable} Without `--allow-read`, `--allow-write` and `--allow-net`
 * (`unix:PATH`) for the path.
 */
export async function serveUnixEcho(options: UnixEchoOptions): Promise<UnixEchoServer> {
  const path = options?.path;
  if (typeof path !== "string" || path === "") {
    throw new TypeError(`path must be a socket file path, got ${JSON.stringify(path)}`);
  }
  const bytes = new TextEncoder().encode(path).length;
  if (bytes > MAX_UNIX_PATH_BYTES) {
    throw new RangeError(
      `unix socket path is ${bytes} bytes, the limit is ${MAX_UNIX_PATH_BYTES}: ${path}`,
    );
  }
  // The hooks of the stream loop receive each connection's own addresses, which on a Unix
  // listener are Deno.UnixAddr: what the Unix hook types above promise. Only the listen and
  // reject events are built here, so they say `unix`.
  const streamOptions = options as unknown as EchoServerOptions;
  const policy = policyOf(streamOptions);
  const address: EchoAddress = { hostname: "", port: 0, transport: "unix", path };
  await claimPath(address);
  let listener: Deno.Listener;
  try {
    listener = Deno.listen({ transport: "unix", path });
  } catch (error) {
    throw bindError(error, address);
  }
  // Deno removes the file when the listener closes; the inode tells a later cleanup whether the
  // file at `path` is still ours.
  let inode: number | null = null;
  try {
    inode = (await Deno.lstat(path)).ino;
  } catch {
    // removed already: nothing to clean up later
  }
  const onReject = options.onReject;
  const inner = serveStreamListener(listener, {
    ...streamOptions,
    onListen: undefined,
    onReject: onReject
      ? (info) =>
        onReject({
          transport: "unix",
          remoteAddr: info.remoteAddr as unknown as Deno.UnixAddr,
          reason: info.reason,
        })
      : undefined,
  }, policy.stream);
  const finished = inner.finished.then(() => removeIfOurs(address, inode, streamOptions));
  const info: UnixListenInfo = { transport: "unix", path };
  const server: UnixEchoServer = {
    addr: listener.addr as Deno.UnixAddr,
    listeners: [info],
    stats: inner.stats,
    finished,
    shutdown: () => (void inner.shutdown(), finished),
    ref: () => inner.ref(),
    unref: () => inner.unref(),
    [Symbol.asyncDispose]: () => server.shutdown(),
  };
  callHook(streamOptions, options.onListen, info);
  return server;
}

/**
 * Makes `path` free to bind: absent is fine; a socket nobody accepts on (stale) is removed;
 * anything else is refused.
 *
 * @param address The socket's address.
 */
async function claimPath(address: EchoAddress): Promise<void> {
  const path = address.path!;
  const refuse = (why: string, cause?: unknown) =>
    new EchoConnectionError(`cannot listen on unix ${path}: ${why}`, { address, cause });
  let info: Deno.FileInfo;
  try {
    info = await Deno.lstat(path);
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) return;
    throw bindError(error, address);
  }
  if (!info.isSocket) {
    throw refuse(`${describeKind(info)} is in the way (only a stale socket is replaced)`);
  }
  let conn: Deno.Conn | undefined;
  try {
    conn = await Deno.connect({ transport: "unix", path });
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) return; // removed meanwhile
    if (!(error instanceof Deno.errors.ConnectionRefused)) {
      throw error instanceof Deno.errors.NotCapable
        ? error
        : refuse(`cannot tell whether a server owns it: ${describeNetworkError(error)}`, error);
    }
  }
  if (conn) {
    conn.close();
    throw refuse("a server is listening there (stop it first, or choose another path)");
  }
  // Nobody accepts on it: a socket left by a server that died. Replace it.
  try {
    await Deno.remove(path);
  } catch (error) {
    if (!(error instanceof Deno.errors.NotFound)) {
      throw error instanceof Deno.errors.NotCapable
        ? error
        : refuse(`cannot remove the stale socket: ${describeNetworkError(error)}`, error);
    }
  }
}

/** What kind of file a FileInfo describes, for messages: `a regular file`, `a directory`. */
function describeKind(info: Deno.FileInfo): string {
  if (info.isFile) return "a regular file";
  if (info.isDirectory) return "a directory";
  if (info.isSymlink) return "a symbolic link";
  if (info.isFifo) return "a FIFO";
  if (info.isCharDevice || info.isBlockDevice) return "a device";
  return "a file that is not a socket";
}

/** A one-line error for a failed bind; permission errors pass through untouched. */
function bindError(error: unknown, address: EchoAddress): unknown {
  if (error instanceof Deno.errors.NotCapable) return error;
  const reason = error instanceof Deno.errors.NotFound
    ? "its directory does not exist"
    : error instanceof Deno.errors.PermissionDenied
    ? "permission denied by the file system"
    : describeNetworkError(error);
  return new EchoConnectionError(`cannot listen on unix ${address.path}: ${reason}`, {
    address,
    cause: error,
  });
}

/**
 * Removes the socket file after shutdown when it is still the one this server bound (Deno
 * usually removed it already when the listener closed); never another server's file.
 */
async function removeIfOurs(
  address: EchoAddress,
  inode: number | null,
  hooks: EchoHooks,
): Promise<void> {
  if (inode === null) return;
  try {
    const info = await Deno.lstat(address.path!);
    if (info.isSocket && info.ino === inode) await Deno.remove(address.path!);
  } catch (error) {
    if (!(error instanceof Deno.errors.NotFound)) {
      reportError(hooks, `cannot remove unix socket ${address.path}`, error, address);
    }
  }
}
