// node_echo.mjs - the echo server (RFC 862) written the idiomatic way with node:net and node:dgram.
// It is the Node and Bun peer of the benchmark suite and runs unchanged under both:
//
//   node bench/peers/node_echo.mjs --host 127.0.0.1 --port 0 [--tcp] [--udp]
//   bun  bench/peers/node_echo.mjs --host 127.0.0.1 --port 0
//
// With neither --tcp nor --udp both are served; with port 0 UDP binds the port TCP was given.
// Ready lines on stdout: "listening tcp HOST:PORT" and "listening udp HOST:PORT".
// TCP: socket.pipe(socket) (the stream machinery handles backpressure) with TCP_NODELAY.
// UDP: every datagram is sent back as-is to its sender. Exits 0 on SIGTERM or SIGINT.
import dgram from "node:dgram";
import net from "node:net";
import process from "node:process";

function fail(message) {
  process.stderr.write(`node_echo: ${message}\n`);
  process.exit(2);
}

function parseArgs(argv) {
  const opts = { host: "127.0.0.1", port: 7, tcp: false, udp: false };
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i];
    if (arg === "--host" && i + 1 < argv.length) opts.host = argv[++i];
    else if (arg === "--port" && i + 1 < argv.length) {
      const port = Number(argv[++i]);
      if (!Number.isInteger(port) || port < 0 || port > 65535) {
        fail(`--port must be an integer in 0..65535, got ${argv[i]}`);
      }
      opts.port = port;
    } else if (arg === "--tcp") opts.tcp = true;
    else if (arg === "--udp") opts.udp = true;
    else fail(`unknown argument ${arg}`);
  }
  if (!opts.tcp && !opts.udp) opts.tcp = opts.udp = true;
  return opts;
}

function listenTcp(host, port) {
  return new Promise((resolve, reject) => {
    const server = net.createServer((socket) => {
      socket.setNoDelay(true);
      socket.on("error", () => socket.destroy());
      socket.pipe(socket);
    });
    server.once("error", reject);
    server.listen({ host, port }, () => {
      server.off("error", reject);
      // accept() errors (EMFILE at many connections) are logged; they must not end the server.
      server.on("error", (err) => process.stderr.write(`node_echo: ${err.message}\n`));
      resolve(server);
    });
  });
}

function bindUdp(host, port) {
  return new Promise((resolve, reject) => {
    const type = host.includes(":") ? "udp6" : "udp4";
    const socket = dgram.createSocket({ type, recvBufferSize: 4 << 20, sendBufferSize: 4 << 20 });
    socket.once("error", reject);
    socket.on("message", (msg, rinfo) => socket.send(msg, rinfo.port, rinfo.address));
    socket.bind(port, host, () => {
      socket.off("error", reject);
      socket.on("error", () => {});
      resolve(socket);
    });
  });
}

function show(host, port) {
  return host.includes(":") ? `[${host}]:${port}` : `${host}:${port}`;
}

async function main() {
  const opts = parseArgs(process.argv.slice(2));
  let tcp = null;
  let udp = null;
  for (let attempt = 0; attempt < 50; attempt++) {
    if (opts.tcp) tcp = await listenTcp(opts.host, opts.port);
    const port = tcp ? tcp.address().port : opts.port;
    if (!opts.udp) break;
    try {
      udp = await bindUdp(opts.host, port);
      break;
    } catch (err) {
      // Port 0: the port TCP was given may be taken for UDP; try another one.
      if (tcp && opts.port === 0 && err.code === "EADDRINUSE") {
        await new Promise((resolve) => tcp.close(resolve));
        tcp = null;
        continue;
      }
      throw err;
    }
  }
  if (opts.udp && !udp) fail("could not bind one port for TCP and UDP");
  const lines = [];
  if (tcp) lines.push(`listening tcp ${show(opts.host, tcp.address().port)}\n`);
  if (udp) lines.push(`listening udp ${show(opts.host, udp.address().port)}\n`);
  process.stdout.write(lines.join(""));
  const stop = () => process.exit(0);
  process.on("SIGTERM", stop);
  process.on("SIGINT", stop);
}

main().catch((err) => fail(err && err.message ? err.message : String(err)));
