/**
 * A shaped echo server in a process of its own, so a test can watch its memory: prints
 * `port N`, then `rss BYTES` every 100 ms until its stdin closes.
 *
 * Usage: deno run --allow-net tests/_shaped_memory_child.ts BANDWIDTH
 */
import { serveEcho } from "../serve.ts";

const server = await serveEcho({
  hostname: "127.0.0.1",
  port: 0,
  transport: "tcp",
  impair: { bandwidth: Number(Deno.args[0]) },
});
console.log(`port ${server.addr.port}`);
const timer = setInterval(() => console.log(`rss ${Deno.memoryUsage().rss}`), 100);
for await (const _ of Deno.stdin.readable) {
  // runs until the test closes stdin
}
clearInterval(timer);
await server.shutdown();
