/**
 * A TLS echo server in a process of its own, so a test can count its descriptors: prints
 * `port N`, then `fds N` (entries of /proc/self/fd) every 100 ms until its stdin closes.
 *
 * Usage: deno run --allow-all tests/_tls_fd_child.ts (Deno asks for all access to read /proc/self/fd) OPTIONS_JSON
 */
import { serveTcpEcho } from "../tcp.ts";

const cert = await Deno.readTextFile(new URL("./fixtures/tls_cert.pem", import.meta.url));
const key = await Deno.readTextFile(new URL("./fixtures/tls_key.pem", import.meta.url));
const { handshakeTimeout, ...options } = JSON.parse(Deno.args[0] ?? "{}");
const server = serveTcpEcho({ port: 0, ...options, tls: { cert, key, handshakeTimeout } });
const fds = () => [...Deno.readDirSync("/proc/self/fd")].length;
console.log(`port ${server.addr.port}`);
const timer = setInterval(() => console.log(`fds ${fds()}`), 100);
for await (const _ of Deno.stdin.readable) {
  // runs until the test closes stdin
}
clearInterval(timer);
await server.shutdown();
