// naive_deno.ts - the reference row: the smallest honest Deno echo server, nothing above the socket.
// One read()/write() loop per TCP connection with setNoDelay, one receive(buf)/send() loop for UDP
// with a 65,536-byte buffer (receive truncates silently into a smaller one). 127.0.0.1, port 0
// (TCP and UDP get a port each); ready lines "listening tcp|udp 127.0.0.1:PORT"; exits on SIGTERM.
// `--buffer N` sets the TCP read buffer (default 65,536; bench/limits.ts measures 1,024 too).
//
//   deno run --allow-net --unstable-net bench/peers/naive_deno.ts [--buffer N]
const at = Deno.args.indexOf("--buffer");
const tcpBuffer = at >= 0 ? Number(Deno.args[at + 1]) : 65536;
const tcp = Deno.listen({ hostname: "127.0.0.1", port: 0 });
const udp = Deno.listenDatagram({ hostname: "127.0.0.1", port: 0, transport: "udp" });
console.log(`listening tcp 127.0.0.1:${tcp.addr.port}`);
console.log(`listening udp 127.0.0.1:${(udp.addr as Deno.NetAddr).port}`);
Deno.addSignalListener("SIGTERM", () => Deno.exit(0));

async function session(conn: Deno.TcpConn): Promise<void> {
  conn.setNoDelay(true);
  const buf = new Uint8Array(tcpBuffer);
  try {
    for (let n; (n = await conn.read(buf)) !== null;) {
      for (let off = 0; off < n;) off += await conn.write(buf.subarray(off, n));
    }
  } catch { /* reset by the peer */ }
  conn.close();
}

(async () => {
  const buf = new Uint8Array(65536);
  for (;;) {
    try {
      const [data, addr] = await udp.receive(buf);
      await udp.send(data, addr);
    } catch (err) {
      if (err instanceof Deno.errors.BadResource) return; // closed
      // anything else (an ICMP "refused" from a client that left): keep serving
    }
  }
})();

for await (const conn of tcp) session(conn);
