/**
 * The smallest program that shows why a cut session is not a clean reset (issue 10, #3): a
 * server that echoes the first 4 KiB of a client's 256 KiB and then gives up on it. With `Deno.listen`, `conn.close()`
 * always sends a FIN first (tokio's OwnedWriteHalf drop calls `shutdown(SHUT_WR)`, then the fd is
 * closed; with input still unread Linux then adds a RST), so the client may read a clean end of
 * stream. With `node:net`, `socket.resetAndDestroy()` sets SO_LINGER 0 and closes: a RST and no
 * FIN, so the client's read fails. Each kind is tried TRIALS times over loopback; the client
 * (which sent everything and half-closed) reports how its read of the echo ended.
 *
 * ```sh
 * deno run --allow-net bench/fin_on_close.ts [TRIALS]
 * ```
 *
 * @module
 */
import net from "node:net";

const TRIALS = Number(Deno.args[0] ?? 20);
if (import.meta.main && (!Number.isInteger(TRIALS) || TRIALS < 1 || Deno.args.length > 1)) {
  console.error(
    `fin_on_close: TRIALS must be one whole number of at least 1, got "${Deno.args.join(" ")}"`,
  );
  console.error("usage: deno run --allow-net bench/fin_on_close.ts [TRIALS]");
  Deno.exit(2);
}
const CHUNK = new Uint8Array(16 * 1024);
const SEND = 256 * 1024;

/**
 * A client that sends 256 KiB, half-closes, and reads the echo to its end: what it met there,
 * "eof" (a clean end of stream, although most of its echo is missing) or "reset" (an error).
 */
async function client(port: number): Promise<"eof" | "reset"> {
  const conn = await Deno.connect({ hostname: "127.0.0.1", port });
  const writing = (async () => {
    try {
      for (let sent = 0; sent < SEND; sent += CHUNK.length) {
        for (let off = 0; off < CHUNK.length;) off += await conn.write(CHUNK.subarray(off));
      }
      await conn.closeWrite();
    } catch { /* the server is gone */ }
  })();
  const buf = new Uint8Array(64 * 1024);
  let outcome: "eof" | "reset";
  try {
    while ((await conn.read(buf)) !== null) { /* the echo */ }
    outcome = "eof";
  } catch {
    outcome = "reset";
  }
  await writing;
  try {
    conn.close();
  } catch { /* closed */ }
  return outcome;
}

async function denoServer(): Promise<Record<string, number>> {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const counts: Record<string, number> = { eof: 0, reset: 0 };
  for (let i = 0; i < TRIALS; i++) {
    const seen = client(listener.addr.port);
    const conn = await listener.accept();
    // Read (and echo) one chunk, then give up with most of the client's bytes unread.
    const buf = new Uint8Array(4096);
    const n = await conn.read(buf);
    if (n) await conn.write(buf.subarray(0, n));
    conn.close();
    counts[await seen]++;
  }
  listener.close();
  return counts;
}

async function nodeServer(): Promise<Record<string, number>> {
  const counts: Record<string, number> = { eof: 0, reset: 0 };
  const accepted: ((s: net.Socket) => void)[] = [];
  const server = net.createServer((socket) => accepted.shift()!(socket));
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const port = (server.address() as net.AddressInfo).port;
  for (let i = 0; i < TRIALS; i++) {
    const socket = new Promise<net.Socket>((resolve) => accepted.push(resolve));
    const seen = client(port);
    const s = await socket;
    await new Promise<void>((resolve) => {
      s.once("data", (chunk: Uint8Array) => {
        s.pause();
        s.write(chunk, () => {
          s.resetAndDestroy();
          resolve();
        });
      });
    });
    s.on("error", () => {});
    counts[await seen]++;
  }
  await new Promise((resolve) => server.close(resolve));
  return counts;
}

if (import.meta.main) {
  const deno = await denoServer();
  const node = await nodeServer();
  console.log(
    `Deno ${Deno.version.deno}, ${TRIALS} trials each, how the client's read of its echo ended:`,
  );
  console.log(`Deno.listen + conn.close():         eof ${deno.eof}, reset ${deno.reset}`);
  console.log(`node:net + socket.resetAndDestroy(): eof ${node.eof}, reset ${node.reset}`);
}
