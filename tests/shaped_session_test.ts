/**
 * The shaped session (TCP delay and bandwidth) over real loopback sockets: memory held per
 * session is bounded by what it retains, not by how the peer slices its writes, and bandwidth
 * holds from the first byte.
 */
import assert from "node:assert/strict";
import { serveEcho } from "../serve.ts";
import { test } from "./_helpers.ts";
import { spawnStatChild } from "./_stat_child.ts";

const HOST = "127.0.0.1";

function report(line: string): void {
  console.log(`    ${line}`);
}

/** Reads exactly `total` bytes; resolves with them and when the last one came. */
async function readExactly(conn: Deno.Conn, total: number): Promise<Uint8Array> {
  const data = new Uint8Array(total);
  for (let got = 0; got < total;) {
    const n = await conn.read(data.subarray(got));
    if (n === null) throw new Error(`EOF after ${got} of ${total} bytes`);
    got += n;
  }
  return data;
}

test("shaped session: 1-byte writes (TCP_NODELAY) at 10 kB/s keep the server's memory bounded, every byte echoed in order", async () => {
  const { child, lines } = spawnStatChild("--allow-net", "tests/_shaped_memory_child.ts", [
    "10000",
  ]);
  // Old code held a fresh 64 KiB read buffer per queued 1-byte chunk: gigabytes within
  // seconds. The watchdog stops the child well before that can hurt the machine.
  const LIMIT = 300 * 1024 * 1024;
  let peak = 0;
  let base = 0;
  let killed = false;
  try {
    const first = await lines.next();
    const port = Number(/^port (\d+)$/.exec(first ?? "")?.[1]);
    assert.ok(port > 0, `child said ${first}`);
    const watching = (async () => {
      for (let line; (line = await lines.next()) !== undefined;) {
        const rss = Number(/^rss (\d+)$/.exec(line)?.[1]);
        if (!(rss > 0)) continue;
        if (base === 0) base = rss;
        peak = Math.max(peak, rss);
        if (rss > base + LIMIT && !killed) {
          killed = true;
          child.kill("SIGKILL");
        }
      }
    })();
    const conn = await Deno.connect({ hostname: HOST, port });
    conn.setNoDelay(true);
    // 1-byte writes, a pause every 40, for 2 s: the server reads them one by one
    // (a tight write loop would coalesce them in the kernel), and 10 kB/s drains them in time.
    const sent = new Uint8Array(100_000);
    for (let i = 0; i < sent.length; i++) sent[i] = (i * 7 + (i >> 8)) & 255;
    let total = 0;
    const start = performance.now();
    const echoing = (async () => {
      const echoed: number[] = [];
      const buffer = new Uint8Array(4096);
      for (;;) {
        const n = await conn.read(buffer).catch(() => null);
        if (n === null) return new Uint8Array(echoed);
        for (let i = 0; i < n; i++) echoed.push(buffer[i]);
      }
    })();
    while (performance.now() - start < 2000 && !killed && total < sent.length) {
      await conn.write(sent.subarray(total, total + 1)).catch(() => {});
      if (++total % 40 === 0) await new Promise((resolve) => setTimeout(resolve, 0));
    }
    await conn.closeWrite().catch(() => {}); // the server echoes the rest, then closes
    const sending = performance.now() - start;
    const echoed = await echoing;
    conn.close();
    assert.ok(!killed, `server grew past ${LIMIT >> 20} MiB over its baseline`);
    assert.ok(echoed instanceof Uint8Array, String(echoed));
    assert.deepEqual(echoed, sent.subarray(0, total), "every byte echoed, in order");
    child.stdin.close();
    await watching;
    const growth = peak - base;
    report(
      `${total} 1-byte writes in ${sending.toFixed(0)} ms at 10 kB/s: server rss ` +
        `${(base / 2 ** 20).toFixed(1)} -> peak ${(peak / 2 ** 20).toFixed(1)} MiB`,
    );
    // One session holds at most 1 MiB of queue; allow for the runtime's own churn.
    assert.ok(growth < 64 * 1024 * 1024, `rss grew ${(growth / 2 ** 20).toFixed(1)} MiB`);
  } finally {
    try {
      if (!killed) child.kill("SIGKILL");
    } catch {
      // it had already exited (its stdin closed at the end of a passing run)
    }
    await child.status;
  }
});

for (const total of [32_000, 192_000]) {
  test(`shaped session: bandwidth 64k (64,000 B/s) caps ${total / 1000} kB from the first byte`, async () => {
    const bandwidth = 64_000; // what server.ts --bandwidth 64k passes (decimal suffixes)
    await using server = await serveEcho({
      hostname: HOST,
      port: 0,
      transport: "tcp",
      impair: { bandwidth },
    });
    const burst = 640; // the default: 10 ms worth, at most 16 KiB
    const sent = new Uint8Array(total).map((_, i) => i * 13);
    const conn = await Deno.connect({ hostname: HOST, port: server.addr.port });
    const start = performance.now();
    const reading = readExactly(conn, total);
    for (let offset = 0; offset < total;) offset += await conn.write(sent.subarray(offset));
    const echoed = await reading;
    const elapsed = performance.now() - start;
    conn.close();
    assert.deepEqual(echoed, sent, "byte-exact");
    const floor = ((total - burst) / bandwidth) * 1000;
    report(
      `${total} B at ${bandwidth} B/s: ${elapsed.toFixed(0)} ms (floor ${floor.toFixed(0)} ms)`,
    );
    assert.ok(elapsed >= floor, `${elapsed.toFixed(1)} ms, at least ${floor.toFixed(1)} ms`);
    // Generous: only catches a shaper gone wild on a loaded machine.
    assert.ok(elapsed < floor * 3 + 5000, `${elapsed.toFixed(1)} ms`);
  });
}
