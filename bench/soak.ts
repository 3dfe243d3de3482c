/**
 * Soak test (not run in CI): starts server.ts as a child on 127.0.0.1, drives mixed TCP and UDP
 * load at it for a while with bounded concurrency, verifies every echoed byte, and samples the
 * server's memory (VmRSS, VmHWM from /proc/PID/status) every second.
 *
 * ```sh
 * deno run -A bench/soak.ts [--duration 30s] [--tcp 16] [--udp 4] [--seed N] [--json]
 * ```
 *
 * TCP workers loop over three kinds of session: `chat` (request/response exchanges of up to 4 KiB),
 * `bulk` (64 KiB to 8 MiB streamed with a bounded window, read while writing) and `churn` (connect,
 * send a little, close without reading). UDP workers keep a few datagrams of 0 to 1,472 bytes in
 * flight (one in fifty up to 65,507) and match replies by sequence number; an unanswered datagram
 * is lost after one second. Payloads are slices of one seeded random pattern at random offsets, so
 * verification needs no copy of what was sent.
 *
 * Per-second lines and the summary go to stdout. Exit code 0 when no TCP byte was lost and no
 * error happened, 1 otherwise (UDP loss is reported, not judged: loopback may drop under load).
 *
 * @module
 */
import { parseArgs } from "node:util";
import { parseDuration } from "../duration.ts";
import { Random, randomSeed } from "../_random.ts";

const ROOT = new URL("..", import.meta.url).pathname;
const HOST = "127.0.0.1";
const MiB = 1024 * 1024;
/** The shared payload pattern; its odd length keeps slices at different offsets distinct. */
const PATTERN_SIZE = 4 * MiB + 7;
/** Bytes in flight per bulk session at most. */
const BULK_WINDOW = MiB;
/** Datagrams in flight per UDP worker. */
const UDP_WINDOW = 4;
/** An unanswered datagram counts as lost after this long. */
const UDP_TIMEOUT_MS = 1000;
const MAX_UDP = 65_507;
const HEADER = 8; // worker id (u16), size check (u16), sequence number (u32)

const USAGE = "usage: deno run -A bench/soak.ts [--duration 30s] [--tcp 16] [--udp 4] [--seed N]" +
  " [--json]";

interface Options {
  duration: number;
  tcp: number;
  udp: number;
  seed: number;
  json: boolean;
}

function parseOptions(args: string[]): Options {
  const { values } = parseArgs({
    args,
    options: {
      duration: { type: "string", default: "30s" },
      tcp: { type: "string", default: "16" },
      udp: { type: "string", default: "4" },
      seed: { type: "string" },
      json: { type: "boolean", default: false },
      help: { type: "boolean", short: "h", default: false },
    },
    strict: true,
  });
  if (values.help) {
    console.log(USAGE);
    Deno.exit(0);
  }
  const duration = parseDuration(values.duration!);
  if (duration < 1000) {
    throw new RangeError(`--duration must be at least 1s, got ${values.duration}`);
  }
  const count = (name: "tcp" | "udp", max: number) => {
    const n = Number(values[name]);
    if (!Number.isInteger(n) || n < 0 || n > max) {
      throw new RangeError(
        `--${name} must be a whole number from 0 to ${max}, got ${values[name]}`,
      );
    }
    return n;
  };
  const seed = values.seed === undefined ? randomSeed() : Number(values.seed);
  return { duration, tcp: count("tcp", 1000), udp: count("udp", 100), seed, json: values.json! };
}

/** What the load saw, by kind. */
interface Totals {
  tcpSessions: { chat: number; bulk: number; churn: number };
  tcpBytesSent: number;
  tcpBytesVerified: number;
  /** Bytes sent on chat and bulk sessions that never came back verified. */
  tcpLostBytes: number;
  tcpMismatches: number;
  udpSent: number;
  udpReceived: number;
  udpLost: number;
  udpDuplicates: number;
  udpCorrupt: number;
  errors: Record<string, number>;
}

function newTotals(): Totals {
  return {
    tcpSessions: { chat: 0, bulk: 0, churn: 0 },
    tcpBytesSent: 0,
    tcpBytesVerified: 0,
    tcpLostBytes: 0,
    tcpMismatches: 0,
    udpSent: 0,
    udpReceived: 0,
    udpLost: 0,
    udpDuplicates: 0,
    udpCorrupt: 0,
    errors: {},
  };
}

function countError(totals: Totals, where: string, error: unknown): void {
  const name = error instanceof Error ? `${where}: ${error.name}` : `${where}: ${String(error)}`;
  totals.errors[name] = (totals.errors[name] ?? 0) + 1;
}

/** The payload pattern and ways to slice and check it. */
class Pattern {
  readonly bytes: Uint8Array;
  constructor(random: Random) {
    this.bytes = new Uint8Array(PATTERN_SIZE);
    const view = new DataView(this.bytes.buffer);
    for (let i = 0; i + 4 <= PATTERN_SIZE; i += 4) view.setUint32(i, random.nextUint32());
  }
  /** Copies `length` bytes of the endless pattern from `offset` into `target`. */
  fill(target: Uint8Array, offset: number): void {
    let at = offset % PATTERN_SIZE;
    for (let done = 0; done < target.length;) {
      const n = Math.min(target.length - done, PATTERN_SIZE - at);
      target.set(this.bytes.subarray(at, at + n), done);
      done += n;
      at = 0;
    }
  }
  /** Index of the first byte of `data` that differs from the pattern at `offset`, or -1. */
  check(data: Uint8Array, offset: number): number {
    let at = offset % PATTERN_SIZE;
    const bytes = this.bytes;
    for (let i = 0; i < data.length; i++) {
      if (data[i] !== bytes[at]) return i;
      if (++at === PATTERN_SIZE) at = 0;
    }
    return -1;
  }
}

function randomInt(random: Random, min: number, max: number): number {
  return min + Math.floor(random.next() * (max - min + 1));
}

async function writeAll(conn: Deno.Conn, data: Uint8Array): Promise<void> {
  for (let written = 0; written < data.length;) written += await conn.write(data.subarray(written));
}

/** Request/response exchanges on one connection. */
async function chatSession(port: number, random: Random, pattern: Pattern, totals: Totals) {
  const conn = await Deno.connect({ hostname: HOST, port });
  let sent = 0;
  let verified = 0;
  try {
    conn.setNoDelay(true);
    const exchanges = randomInt(random, 1, 50);
    const reply = new Uint8Array(4096);
    const message = new Uint8Array(4096);
    for (let i = 0; i < exchanges; i++) {
      const size = randomInt(random, 1, 4096);
      const offset = randomInt(random, 0, PATTERN_SIZE - 1);
      pattern.fill(message.subarray(0, size), offset);
      await writeAll(conn, message.subarray(0, size));
      sent += size;
      totals.tcpBytesSent += size;
      for (let got = 0; got < size;) {
        const n = await conn.read(reply.subarray(got, size));
        if (n === null) throw new Error(`closed after ${got} of ${size} bytes`);
        got += n;
      }
      if (pattern.check(reply.subarray(0, size), offset) >= 0) {
        totals.tcpMismatches++;
        break;
      }
      verified += size;
      totals.tcpBytesVerified += size;
    }
  } finally {
    totals.tcpLostBytes += sent - verified;
    conn.close();
  }
}

/** A stream of bytes written and read back at once, with a bounded window. */
async function bulkSession(port: number, random: Random, pattern: Pattern, totals: Totals) {
  const size = randomInt(random, 64 * 1024, 8 * MiB);
  const start = randomInt(random, 0, PATTERN_SIZE - 1);
  const conn = await Deno.connect({ hostname: HOST, port });
  let sent = 0;
  let verified = 0;
  let wakeWriter: (() => void) | undefined;
  try {
    const writer = (async () => {
      const chunk = new Uint8Array(64 * 1024);
      while (sent < size) {
        while (sent - verified >= BULK_WINDOW) await new Promise<void>((r) => (wakeWriter = r));
        const n = Math.min(size - sent, randomInt(random, 1, chunk.length));
        pattern.fill(chunk.subarray(0, n), start + sent);
        await writeAll(conn, chunk.subarray(0, n));
        sent += n;
        totals.tcpBytesSent += n;
      }
      await conn.closeWrite();
    })();
    const reader = (async () => {
      const buffer = new Uint8Array(64 * 1024);
      for (;;) {
        const n = await conn.read(buffer);
        if (n === null) break;
        const at = pattern.check(buffer.subarray(0, n), start + verified);
        if (at >= 0) {
          totals.tcpMismatches++;
          throw new Error(`byte ${verified + at} differs`);
        }
        verified += n;
        totals.tcpBytesVerified += n;
        wakeWriter?.();
      }
    })();
    await Promise.all([writer, reader.finally(() => wakeWriter?.())]);
  } finally {
    totals.tcpLostBytes += size - verified;
    conn.close();
  }
}

/** Connects, sends a little and closes without reading: the server sees EOF or a reset. */
async function churnSession(port: number, random: Random, pattern: Pattern) {
  const conn = await Deno.connect({ hostname: HOST, port });
  try {
    const data = new Uint8Array(randomInt(random, 0, 2048));
    pattern.fill(data, randomInt(random, 0, PATTERN_SIZE - 1));
    await writeAll(conn, data);
  } finally {
    conn.close();
  }
}

async function tcpWorker(
  port: number,
  random: Random,
  pattern: Pattern,
  totals: Totals,
  until: number,
) {
  while (performance.now() < until) {
    const roll = random.next();
    const kind = roll < 0.6 ? "chat" : roll < 0.9 ? "bulk" : "churn";
    try {
      if (kind === "chat") await chatSession(port, random, pattern, totals);
      else if (kind === "bulk") await bulkSession(port, random, pattern, totals);
      else await churnSession(port, random, pattern);
      totals.tcpSessions[kind]++;
    } catch (error) {
      countError(totals, `tcp ${kind}`, error);
    }
  }
}

async function udpWorker(
  id: number,
  port: number,
  random: Random,
  pattern: Pattern,
  totals: Totals,
  until: number,
) {
  const socket = Deno.listenDatagram({ hostname: HOST, port: 0, transport: "udp" });
  const target: Deno.NetAddr = { transport: "udp", hostname: HOST, port };
  /** Sequence number -> [sent at, payload offset, size]. */
  const inFlight = new Map<number, [number, number, number]>();
  const answered = new Set<number>();
  let wake: (() => void) | undefined;
  let closed = false;
  const expire = () => {
    const now = performance.now();
    for (const [seq, [at]] of inFlight) {
      if (now - at < UDP_TIMEOUT_MS) break; // insertion order is sending order
      inFlight.delete(seq);
      totals.udpLost++;
    }
    wake?.();
  };
  const sweeper = setInterval(expire, 100);
  const receiver = (async () => {
    const view = (data: Uint8Array) => new DataView(data.buffer, data.byteOffset, data.byteLength);
    while (!closed) {
      let data: Uint8Array;
      try {
        [data] = await socket.receive();
      } catch (error) {
        if (closed) break;
        countError(totals, "udp receive", error);
        continue;
      }
      if (data.length < HEADER) {
        if (data.length === 0 && inFlight.has(-1)) {
          inFlight.delete(-1);
          totals.udpReceived++;
        } else totals.udpCorrupt++;
        wake?.();
        continue;
      }
      const seq = view(data).getUint32(4);
      const entry = inFlight.get(seq);
      if (!entry) {
        if (answered.has(seq)) totals.udpDuplicates++;
        else totals.udpLost--, totals.udpReceived++; // late: counted lost, then it came
        continue;
      }
      inFlight.delete(seq);
      const [, offset, size] = entry;
      if (
        view(data).getUint16(0) !== id || data.length !== size ||
        pattern.check(data.subarray(HEADER), offset) >= 0
      ) {
        totals.udpCorrupt++;
      } else {
        totals.udpReceived++;
        answered.add(seq);
        if (answered.size > 4096) answered.delete(answered.values().next().value!);
      }
      wake?.();
    }
  })();
  let seq = 0;
  try {
    while (performance.now() < until) {
      while (inFlight.size >= UDP_WINDOW) await new Promise<void>((r) => (wake = r));
      // A zero-length datagram now and then (at most one in flight, known by its key -1).
      if (random.next() < 0.01 && !inFlight.has(-1)) {
        inFlight.set(-1, [performance.now(), 0, 0]);
        await socket.send(new Uint8Array(0), target);
        totals.udpSent++;
        continue;
      }
      const size = random.next() < 0.02
        ? randomInt(random, HEADER, MAX_UDP)
        : randomInt(random, HEADER, 1472);
      const offset = randomInt(random, 0, PATTERN_SIZE - 1);
      const data = new Uint8Array(size);
      const view = new DataView(data.buffer);
      view.setUint16(0, id);
      view.setUint16(2, size & 0xffff);
      view.setUint32(4, ++seq);
      pattern.fill(data.subarray(HEADER), offset);
      inFlight.set(seq, [performance.now(), offset, size]);
      try {
        await socket.send(data, target);
        totals.udpSent++;
      } catch (error) {
        inFlight.delete(seq);
        countError(totals, "udp send", error);
      }
    }
    // Let the last ones come back or expire.
    while (inFlight.size > 0) await new Promise<void>((r) => (wake = r));
  } finally {
    clearInterval(sweeper);
    closed = true;
    socket.close();
    await receiver;
  }
}

/** VmRSS and VmHWM of a process, in MiB. */
async function memoryOf(pid: number): Promise<{ rss: number; hwm: number } | undefined> {
  try {
    const text = await Deno.readTextFile(`/proc/${pid}/status`);
    const kib = (field: string) =>
      Number(new RegExp(`^${field}:\\s+(\\d+) kB`, "m").exec(text)![1]);
    return { rss: kib("VmRSS") / 1024, hwm: kib("VmHWM") / 1024 };
  } catch {
    return undefined;
  }
}

/** Reads lines from a child's stdout as they come. */
class Lines {
  #reader: ReadableStreamDefaultReader<string>;
  #buffer = "";
  constructor(stream: ReadableStream<Uint8Array>) {
    this.#reader = stream.pipeThrough(new TextDecoderStream()).getReader();
  }
  async waitFor(pattern: RegExp): Promise<string> {
    for (;;) {
      let newline;
      while ((newline = this.#buffer.indexOf("\n")) >= 0) {
        const line = this.#buffer.slice(0, newline);
        this.#buffer = this.#buffer.slice(newline + 1);
        if (pattern.test(line)) return line;
      }
      const { value, done } = await this.#reader.read();
      if (done) throw new Error(`server output ended before ${pattern}`);
      this.#buffer += value;
    }
  }
  async cancel(): Promise<void> {
    await this.#reader.cancel();
  }
}

async function main(): Promise<number> {
  let options: Options;
  try {
    options = parseOptions(Deno.args);
  } catch (error) {
    console.error(`soak.ts: ${(error as Error).message}\n${USAGE}`);
    return 2;
  }
  const random = new Random(options.seed);
  const pattern = new Pattern(random);
  const server = new Deno.Command(Deno.execPath(), {
    args: ["run", "--allow-net", "server.ts", "-p", "0", "-q"],
    cwd: ROOT,
    stdin: "null",
    stdout: "piped",
    stderr: "inherit",
  }).spawn();
  const lines = new Lines(server.stdout);
  const ready = await lines.waitFor(/^listening udp /);
  const port = Number(/:(\d+)$/.exec(ready)![1]);
  const startMemory = await memoryOf(server.pid);
  const log = (text: string) => options.json || console.log(text);
  log(
    `soak: ${options.tcp} TCP and ${options.udp} UDP workers against server.ts (pid ${server.pid}) ` +
      `on ${HOST}:${port} for ${options.duration / 1000}s, seed ${options.seed}`,
  );

  const totals = newTotals();
  const started = performance.now();
  const until = started + options.duration;
  const samples: { t: number; rss: number; hwm: number }[] = [];
  let last = { bytes: 0, datagrams: 0 };
  const sample = async () => {
    const memory = await memoryOf(server.pid);
    const t = Math.round((performance.now() - started) / 1000);
    if (memory) samples.push({ t, ...memory });
    const bytes = totals.tcpBytesVerified - last.bytes;
    const datagrams = totals.udpReceived - last.datagrams;
    last = { bytes: totals.tcpBytesVerified, datagrams: totals.udpReceived };
    const errors = Object.values(totals.errors).reduce((a, b) => a + b, 0);
    log(
      `${String(t).padStart(4)}s  RSS ${memory ? memory.rss.toFixed(1) : "?"} MiB ` +
        `(peak ${memory ? memory.hwm.toFixed(1) : "?"})  tcp ${(bytes / MiB).toFixed(1)} MiB/s ` +
        `udp ${datagrams} datagrams/s  lost ${totals.tcpLostBytes} B tcp, ${totals.udpLost} udp  ` +
        `errors ${errors}`,
    );
  };
  const sampler = setInterval(() => void sample(), 1000);
  const workers = [
    ...Array.from(
      { length: options.tcp },
      (_, i) => tcpWorker(port, new Random((options.seed + 1 + i) >>> 0), pattern, totals, until),
    ),
    ...Array.from(
      { length: options.udp },
      (_, i) =>
        udpWorker(
          i,
          port,
          new Random((options.seed + 1001 + i) >>> 0),
          pattern,
          totals,
          until,
        ),
    ),
  ];
  await Promise.all(workers);
  clearInterval(sampler);
  const elapsed = (performance.now() - started) / 1000;
  const endMemory = await memoryOf(server.pid);

  // The server's own counters, then a graceful stop.
  server.kill("SIGUSR2");
  const serverStats = await lines.waitFor(/^stats: /);
  server.kill("SIGINT");
  const status = await server.status;
  await lines.cancel().catch(() => {});

  const errors = Object.values(totals.errors).reduce((a, b) => a + b, 0);
  const rss = samples.map((s) => s.rss);
  const summary = {
    seconds: Number(elapsed.toFixed(1)),
    seed: options.seed,
    workers: { tcp: options.tcp, udp: options.udp },
    tcp: {
      sessions: totals.tcpSessions,
      bytesSent: totals.tcpBytesSent,
      bytesVerified: totals.tcpBytesVerified,
      lostBytes: totals.tcpLostBytes,
      mismatches: totals.tcpMismatches,
    },
    udp: {
      sent: totals.udpSent,
      received: totals.udpReceived,
      lost: totals.udpLost,
      lossPercent: totals.udpSent ? Number((100 * totals.udpLost / totals.udpSent).toFixed(4)) : 0,
      duplicates: totals.udpDuplicates,
      corrupt: totals.udpCorrupt,
    },
    errors: totals.errors,
    serverRssMiB: {
      start: startMemory?.rss,
      min: rss.length ? Math.min(...rss) : undefined,
      max: rss.length ? Math.max(...rss) : undefined,
      end: endMemory?.rss,
      peak: endMemory?.hwm,
      samples: samples.map((s) => [s.t, Number(s.rss.toFixed(1))]),
    },
    serverStats,
    serverExit: status.code,
  };
  const ok = totals.tcpLostBytes === 0 && totals.tcpMismatches === 0 && errors === 0 &&
    totals.udpCorrupt === 0 && status.code === 0;
  if (options.json) {
    console.log(JSON.stringify({ ok, ...summary }));
  } else {
    const s = totals.tcpSessions;
    console.log(
      [
        "",
        `soak ${ok ? "passed" : "FAILED"} after ${summary.seconds}s (seed ${options.seed})`,
        `  tcp: ${
          s.chat + s.bulk + s.churn
        } sessions (${s.chat} chat, ${s.bulk} bulk, ${s.churn} churn), ` +
        `${(totals.tcpBytesVerified / MiB).toFixed(1)} MiB echoed and verified, ` +
        `lost bytes ${totals.tcpLostBytes}, mismatches ${totals.tcpMismatches}`,
        `  udp: ${totals.udpSent} sent, ${totals.udpReceived} received, ${totals.udpLost} lost ` +
        `(${summary.udp.lossPercent}%), ${totals.udpDuplicates} duplicates, ${totals.udpCorrupt} corrupt`,
        `  errors: ${errors ? JSON.stringify(totals.errors) : "none"}`,
        `  server RSS MiB: start ${startMemory?.rss.toFixed(1)}, min ${
          summary.serverRssMiB.min
            ?.toFixed(1)
        }, max ${summary.serverRssMiB.max?.toFixed(1)}, end ${
          endMemory?.rss
            .toFixed(1)
        }, peak (VmHWM) ${endMemory?.hwm.toFixed(1)}`,
        `  server ${serverStats}`,
        `  server exit code ${status.code}`,
      ].join("\n"),
    );
  }
  return ok ? 0 : 1;
}

if (import.meta.main) Deno.exit(await main());
