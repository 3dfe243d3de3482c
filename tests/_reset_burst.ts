/**
 * Run by tcp_test.ts in a child process while the test blocks its own event loop: opens COUNT
 * connections to 127.0.0.1:PORT and resets each one (RST, not FIN) as soon as it is established, so
 * they sit reset in the server's accept backlog before the server can accept them.
 *
 * Usage: deno run --allow-net tests/_reset_burst.ts PORT COUNT
 *
 * @module
 */
import net from "node:net";

const port = Number(Deno.args[0]);
const count = Number(Deno.args[1]);
// A watchdog, so a server that never completes handshakes cannot hang the blocked test forever.
const watchdog = setTimeout(() => {
  console.error("reset burst: timed out");
  Deno.exit(3);
}, 15_000);

await Promise.all(
  Array.from({ length: count }, () =>
    new Promise<void>((resolve, reject) => {
      const socket = net.connect(port, "127.0.0.1", () => socket.resetAndDestroy());
      socket.once("close", () => resolve());
      socket.once("error", reject);
    })),
);
clearTimeout(watchdog);
console.log(`reset ${count}`);
