/**
 * The deploy/ recipes run for real: HAProxy and nginx started from them (tests/_balancers.ts) in
 * front of three echo instances: the real server.ts with --proxy-protocol and --metrics (an
 * instance killed mid-run, one drained), a test-only PROXY reader (what the balancers send), and
 * plain instances behind the recipes' variant without the header (half-close, the split).
 */
import assert from "node:assert/strict";
import { Buffer } from "node:buffer";
import { HealthState, serveMetrics } from "../metrics.ts";
import { type ProxyHeader, readProxyHeader } from "../proxy_protocol.ts";
import { encodeProxyHeader, type ProxyHeaderInit } from "../proxy_header.ts";
import { serveEcho } from "../serve.ts";
import { createStats } from "../stats.ts";
import type { EchoServer } from "../serve.ts";
import { echoTcp } from "../tcp.ts";
import { Random, randomSeed } from "../_random.ts";
import {
  type Balancer,
  type BalancerBackend,
  DEPLOY,
  freePort,
  type HaproxyBalancer,
  missing,
  nginxStreamModule,
  renderHaproxyConfig,
  renderNginxConfig,
  startHaproxy,
  startNginx,
} from "./_balancers.ts";
import {
  childEnded,
  randomBytes,
  randomInt,
  type ReadChild,
  readyOrKill,
  spawnServer,
  test,
  watchdog,
} from "./_helpers.ts";

const NO_HAPROXY = missing("haproxy");
const NO_NGINX = missing("nginx");
if (NO_HAPROXY) console.log(`balancers_test: HAProxy tests skipped: ${NO_HAPROXY}`);
if (NO_NGINX) console.log(`balancers_test: nginx tests skipped: ${NO_NGINX}`);

async function threeInstances(): Promise<EchoServer[]> {
  return await Promise.all([0, 1, 2].map(() => serveEcho({ port: 0, transport: "tcp" })));
}

async function stopAll(servers: EchoServer[]): Promise<void> {
  await Promise.all(servers.map((s) => s.shutdown()));
}

/** Sends `count` random messages through the balancer, each verified byte for byte by echoTcp. */
async function exchanges(port: number, count: number, random: Random): Promise<number> {
  let bytes = 0;
  for (let i = 0; i < count; i++) {
    const message = randomBytes(randomInt(random, 1, 32 * 1024), random);
    const { reply } = await echoTcp(message, { port, timeout: 10_000 });
    assert.equal(Buffer.compare(reply, message), 0, `exchange ${i}`);
    bytes += message.length;
  }
  return bytes;
}

/**
 * Streams `size` bytes, half-closes, and reads the echo to the end; what came back must be a
 * prefix of what was sent (all of it unless `whole` is false).
 */
async function halfClosedEcho(
  port: number,
  size: number,
  random: Random,
  whole = true,
): Promise<number> {
  const data = randomBytes(size, random);
  const conn = await Deno.connect({ hostname: "127.0.0.1", port });
  try {
    const chunks: Uint8Array[] = [];
    const reading = (async () => {
      const buffer = new Uint8Array(64 * 1024);
      for (let n; (n = await conn.read(buffer)) !== null;) chunks.push(buffer.slice(0, n));
    })();
    for (let offset = 0; offset < size;) offset += await conn.write(data.subarray(offset));
    await conn.closeWrite(); // FIN after the last byte: the echo must still come back whole
    await reading.catch((error) => {
      if (whole || !(error instanceof Deno.errors.ConnectionReset)) throw error;
    });
    const received = new Uint8Array(Buffer.concat(chunks));
    if (whole) assert.equal(received.length, size, "every byte echoed after the half-close");
    assert.equal(
      Buffer.compare(received, data.subarray(0, received.length)),
      0,
      "never wrong bytes",
    );
    return received.length;
  } finally {
    conn.close();
  }
}

function bytesIn(servers: EchoServer[]): number[] {
  return servers.map((s) => s.stats.bytesIn);
}

Deno.test("recipes render with the harness's ports, and keep their shape", () => {
  const haproxy = Deno.readTextFileSync(`${DEPLOY}haproxy.cfg`);
  const nginx = Deno.readTextFileSync(`${DEPLOY}nginx.conf`);
  const backends = [{ port: 40001, checkPort: 40011 }, { port: 40002, checkPort: 40012 }];
  const h = renderHaproxyConfig(haproxy, { backends, port: 40000, dir: "/tmp/x" });
  assert.match(h, /bind 127\.0\.0\.1:40000\n/);
  assert.match(h, /server echo1 127\.0\.0\.1:40001 check port 40011\n/);
  assert.match(h, /server echo2 127\.0\.0\.1:40002 check port 40012\n/);
  assert.doesNotMatch(h, /echo3|:700\d|\/run\//);
  assert.match(h, /default-server send-proxy-v2 check/);
  assert.match(h, /option httpchk/);
  const plain = renderHaproxyConfig(haproxy, {
    backends: [{ port: 1 }],
    port: 2,
    dir: "/tmp/x",
    proxyProtocol: false,
  });
  const directives = plain.split("\n").filter((line) => !/^\s*#/.test(line)).join("\n");
  assert.doesNotMatch(directives, /send-proxy|httpchk|http-check/);
  assert.match(plain, /server echo1 127\.0\.0\.1:1 check\n/);
  const n = renderNginxConfig(nginx, { backends, port: 40000, dir: "/tmp/x" }, "/m/s.so");
  assert.match(n, /load_module \/m\/s\.so;/);
  assert.match(n, /listen 127\.0\.0\.1:40000;/);
  assert.match(n, /server 127\.0\.0\.1:40001 max_fails=1 fail_timeout=10s;/);
  assert.doesNotMatch(n, /:700\d|\/run\/|\/var\/log/);
  assert.match(n, /proxy_protocol on;/);
  assert.match(n, /proxy_half_close on;/);
  const nPlain = renderNginxConfig(nginx, {
    backends,
    port: 1,
    dir: "/tmp/x",
    proxyProtocol: false,
    halfClose: false,
  }, "/m/s.so");
  assert.match(nPlain, /proxy_protocol off;/);
  assert.match(nPlain, /proxy_half_close off;/);
  // A recipe that lost a line it must have is an error, not a silent skip.
  assert.throws(
    () =>
      renderHaproxyConfig(haproxy.replace("bind 127.0.0.1:7000", "bind :7000"), {
        backends,
        port: 1,
        dir: "/tmp/x",
      }),
    /recipe changed: expected one bind/,
  );
  assert.ok(freePort() > 0);
});

test("deploy/haproxy.cfg and deploy/nginx.conf pass their programs' own checks", async () => {
  const dir = await Deno.makeTempDir({ prefix: "echo-recipes-" });
  try {
    const backends = [1, 2, 3].map((i) => ({ port: 47000 + i, checkPort: 47010 + i }));
    for (const proxyProtocol of [true, false]) {
      if (!NO_HAPROXY) {
        const config = `${dir}/haproxy.cfg`;
        await Deno.writeTextFile(
          config,
          renderHaproxyConfig(await Deno.readTextFile(`${DEPLOY}haproxy.cfg`), {
            backends,
            port: 47000,
            dir,
            proxyProtocol,
          }),
        );
        const out = await new Deno.Command("haproxy", { args: ["-c", "-f", config] }).output();
        assert.ok(
          out.success,
          new TextDecoder().decode(out.stderr) + new TextDecoder().decode(out.stdout),
        );
      }
      if (!NO_NGINX) {
        const config = `${dir}/nginx.conf`;
        await Deno.writeTextFile(
          config,
          renderNginxConfig(await Deno.readTextFile(`${DEPLOY}nginx.conf`), {
            backends,
            port: 47000,
            dir,
            proxyProtocol,
          }, nginxStreamModule()!),
        );
        const out = await new Deno.Command("nginx", {
          args: ["-t", "-c", config, "-p", dir, "-e", "stderr"],
        }).output();
        assert.ok(out.success, new TextDecoder().decode(out.stderr));
      }
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}, { ignore: Boolean(NO_HAPROXY && NO_NGINX) });

/**
 * Three plain echo instances behind a balancer: verified traffic reaches every instance, each
 * byte exactly once; a long half-closed stream comes back whole; then instance `killed` stops
 * and (once `gone` says the balancer knows) the other two carry every exchange.
 */
async function spreadAndSurvive(
  start: (backends: BalancerBackend[]) => Promise<Balancer>,
  killed: number,
  gone: (balancer: Balancer) => Promise<void>,
): Promise<void> {
  const seed = randomSeed();
  const random = new Random(seed);
  const servers = await threeInstances();
  let balancer: Balancer | undefined;
  try {
    balancer = await start(servers.map((s) => ({ port: s.addr.port })));
    const sent = await exchanges(balancer.port, 30, random);
    const split = bytesIn(servers);
    assert.ok(split.every((n) => n > 0), `every instance used (seed ${seed}): ${split}`);
    assert.equal(split.reduce((a, b) => a + b), sent, "each byte through exactly one instance");
    await halfClosedEcho(balancer.port, 512 * 1024, random);
    await servers[killed].shutdown();
    await gone(balancer);
    const before = bytesIn(servers);
    const after = await exchanges(balancer.port, 10, random);
    const now = bytesIn(servers);
    assert.equal(now[killed], before[killed], "nothing reaches the stopped instance");
    assert.equal(now.reduce((a, b) => a + b) - before.reduce((a, b) => a + b), after);
  } finally {
    await balancer?.stop();
    await stopAll(servers);
  }
}

test(
  "HAProxy (recipe without the PROXY header): traffic over three instances, one stopped",
  async () => {
    await spreadAndSurvive(
      async (backends) => {
        const haproxy = await startHaproxy({ backends, proxyProtocol: false });
        await haproxy.waitForStates((s) => ["echo1", "echo2", "echo3"].every((n) => s[n] === "UP"));
        return haproxy;
      },
      1,
      async (balancer) => {
        // HAProxy's checks take the stopped instance out.
        await (balancer as HaproxyBalancer).waitForStates((s) =>
          s.echo2 === "DOWN" && s.echo1 === "UP" && s.echo3 === "UP"
        );
      },
    );
  },
  { ignore: Boolean(NO_HAPROXY) },
);

test(
  "nginx stream (recipe without the PROXY header): traffic, half-close, one stopped",
  async () => {
    // A stopped instance refuses the connection; nginx passes it to the next one, so no client
    // sees the failure: nothing to wait for.
    await spreadAndSurvive(
      (backends) => startNginx({ backends, proxyProtocol: false }),
      0,
      () => Promise.resolve(),
    );
  },
  { ignore: Boolean(NO_NGINX) },
);

test(
  "nginx without proxy_half_close drops the echo of a half-closed stream (why the recipe has it)",
  async () => {
    const servers = await threeInstances();
    let balancer: Balancer | undefined;
    try {
      balancer = await startNginx({
        backends: servers.map((s) => ({ port: s.addr.port })),
        proxyProtocol: false,
        halfClose: false,
      });
      // nginx closes the upstream as soon as the client's FIN arrives, before the echo of the last
      // bytes it forwarded can come back: the client gets a prefix, never all.
      const size = 512 * 1024;
      const received = await halfClosedEcho(balancer.port, size, new Random(1), false);
      assert.ok(received < size, `received ${received} of ${size}`);
    } finally {
      await balancer?.stop();
      await stopAll(servers);
    }
  },
  { ignore: Boolean(NO_NGINX) },
);

// ---------------------------------------------------------------------------------------------
// The recipes exactly as written (PROXY header on, HAProxy checking /healthz), in front of a
// minimal test-only echo that reads the header with proxy_protocol.ts: proves the parser against
// what the real balancers send, independently of the server (whose own tests follow below).

/** A test-only PROXY-aware echo instance with a /healthz of its own. */
class ProxiedEcho {
  readonly headers: ProxyHeader[] = [];
  readonly refusals: string[] = [];
  bytes = 0;
  readonly health = new HealthState();
  readonly listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  readonly metrics = serveMetrics({ port: 0, stats: createStats(), health: this.health });
  readonly #sessions = new Set<Promise<void>>();
  readonly #conns = new Set<Deno.Conn>();
  readonly #loop: Promise<void>;

  constructor() {
    this.#loop = this.#accept();
  }

  get port(): number {
    return (this.listener.addr as Deno.NetAddr).port;
  }

  async #accept(): Promise<void> {
    for await (const conn of this.listener) {
      const session = this.#session(conn).finally(() => this.#sessions.delete(session));
      this.#sessions.add(session);
    }
  }

  async #session(conn: Deno.Conn): Promise<void> {
    this.#conns.add(conn);
    try {
      const { header, rest } = await readProxyHeader(conn, { timeout: 5000 });
      this.headers.push(header);
      const echo = async (data: Uint8Array) => {
        for (let offset = 0; offset < data.length;) {
          offset += await conn.write(data.subarray(offset));
        }
        this.bytes += data.length;
      };
      await echo(rest);
      const buffer = new Uint8Array(64 * 1024);
      for (let n; (n = await conn.read(buffer)) !== null;) await echo(buffer.subarray(0, n));
    } catch (error) {
      this.refusals.push(String(error));
    } finally {
      this.#conns.delete(conn);
      try {
        conn.close();
      } catch {
        // closed at stop
      }
    }
  }

  async stop(): Promise<void> {
    this.listener.close();
    for (const conn of this.#conns) conn.close();
    await this.#loop.catch(() => {});
    await Promise.all(this.#sessions);
    await this.metrics.shutdown();
  }
}

/** One verified exchange on a fresh connection; returns the client's own port. */
async function exchangeFrom(port: number, message: Uint8Array): Promise<number> {
  const conn = await Deno.connect({ hostname: "127.0.0.1", port });
  try {
    for (let offset = 0; offset < message.length;) {
      offset += await conn.write(message.subarray(offset));
    }
    const received = new Uint8Array(message.length);
    for (let got = 0; got < message.length;) {
      const n = await conn.read(received.subarray(got));
      assert.ok(n !== null, "echo cut short");
      got += n;
    }
    assert.equal(Buffer.compare(received, message), 0);
    return (conn.localAddr as Deno.NetAddr).port;
  } finally {
    conn.close();
  }
}

function proxiedInstances(): ProxiedEcho[] {
  return [new ProxiedEcho(), new ProxiedEcho(), new ProxiedEcho()];
}

test(
  "HAProxy as written (send-proxy-v2, /healthz checks): headers parse, real client seen, drain",
  async () => {
    const random = new Random(randomSeed());
    const instances = proxiedInstances();
    let balancer: Balancer | undefined;
    try {
      const haproxy = await startHaproxy({
        backends: instances.map((i) => ({ port: i.port, checkPort: i.metrics.addr.port })),
      });
      balancer = haproxy;
      await haproxy.waitForStates((s) => ["echo1", "echo2", "echo3"].every((n) => s[n] === "UP"));
      const clientPorts = new Set<number>();
      for (let i = 0; i < 12; i++) {
        clientPorts.add(
          await exchangeFrom(haproxy.port, randomBytes(randomInt(random, 1, 20000), random)),
        );
      }
      const headers = instances.flatMap((i) => i.headers);
      assert.equal(headers.length, 12, `refusals: ${instances.flatMap((i) => i.refusals)}`);
      assert.ok(instances.every((i) => i.headers.length > 0), "every instance used");
      for (const header of headers) {
        assert.equal(header.version, 2);
        assert.equal(header.command, "PROXY");
        assert.equal(header.source?.hostname, "127.0.0.1");
        assert.equal(header.destination?.port, haproxy.port, "the frontend the client reached");
      }
      assert.deepEqual(
        new Set(headers.map((h) => h.source!.port)),
        clientPorts,
        "the real clients",
      );
      // Drain one: its /healthz turns 503, HAProxy takes it out, the others carry every exchange.
      instances[2].health.drain();
      await haproxy.waitForStates((s) =>
        s.echo3 === "DOWN" && s.echo1 === "UP" && s.echo2 === "UP"
      );
      const before = instances[2].headers.length;
      for (let i = 0; i < 6; i++) await exchangeFrom(haproxy.port, randomBytes(100, random));
      assert.equal(instances[2].headers.length, before, "no new session on the draining instance");
      assert.deepEqual(instances.flatMap((i) => i.refusals), []);
    } finally {
      await balancer?.stop();
      await Promise.all(instances.map((i) => i.stop()));
    }
  },
  { ignore: Boolean(NO_HAPROXY) },
);

test("nginx as written (proxy_protocol on): v1 headers parse, real client seen", async () => {
  const random = new Random(randomSeed());
  const instances = proxiedInstances();
  let balancer: Balancer | undefined;
  try {
    balancer = await startNginx({ backends: instances.map((i) => ({ port: i.port })) });
    const clientPorts = new Set<number>();
    for (let i = 0; i < 9; i++) {
      clientPorts.add(
        await exchangeFrom(balancer.port, randomBytes(randomInt(random, 1, 20000), random)),
      );
    }
    const headers = instances.flatMap((i) => i.headers);
    assert.equal(headers.length, 9, `refusals: ${instances.flatMap((i) => i.refusals)}`);
    assert.ok(instances.every((i) => i.headers.length > 0), "every instance used");
    for (const header of headers) {
      assert.equal(header.version, 1);
      assert.equal(header.source?.hostname, "127.0.0.1");
      assert.equal(header.destination?.port, balancer.port);
    }
    assert.deepEqual(new Set(headers.map((h) => h.source!.port)), clientPorts);
  } finally {
    await balancer?.stop();
    await Promise.all(instances.map((i) => i.stop()));
  }
}, { ignore: Boolean(NO_NGINX) });

test(
  "HAProxy accept-proxy takes our encoder's v1 and v2 headers and relays the client they name",
  async () => {
    const instances = proxiedInstances();
    let balancer: Balancer | undefined;
    try {
      const haproxy = await startHaproxy({
        backends: instances.map((i) => ({ port: i.port, checkPort: i.metrics.addr.port })),
        acceptProxy: true,
      });
      balancer = haproxy;
      await haproxy.waitForStates((s) => ["echo1", "echo2", "echo3"].every((n) => s[n] === "UP"));
      const random = new Random(randomSeed());
      const sent: ProxyHeaderInit[] = [
        {
          version: 1,
          source: { hostname: "203.0.113.7", port: 40001 },
          destination: { hostname: "198.51.100.1", port: 7 },
        },
        {
          version: 1,
          source: { hostname: "2001:db8::7", port: 40002 },
          destination: { hostname: "2001:db8::1", port: 7 },
        },
        {
          version: 2,
          source: { hostname: "203.0.113.8", port: 40003 },
          destination: { hostname: "198.51.100.1", port: 7 },
        },
        {
          version: 2,
          source: { hostname: "2001:db8::8", port: 40004 },
          destination: { hostname: "2001:db8::1", port: 7 },
          tlvs: [{ type: 0x05, value: new TextEncoder().encode("id-1") }],
          crc32c: true,
        },
      ];
      for (const init of sent) {
        const data = randomBytes(randomInt(random, 1, 4000), random);
        const conn = await Deno.connect({ hostname: "127.0.0.1", port: haproxy.port });
        try {
          // Header and data in one write, as a balancer sends them.
          await conn.write(new Uint8Array(Buffer.concat([encodeProxyHeader(init), data])));
          const received = new Uint8Array(data.length);
          for (let got = 0; got < data.length;) {
            const n = await conn.read(received.subarray(got));
            assert.ok(n !== null, `${JSON.stringify(init)}: HAProxy closed the connection`);
            got += n;
          }
          assert.equal(Buffer.compare(received, data), 0);
        } finally {
          conn.close();
        }
      }
      // HAProxy relayed (send-proxy-v2) exactly the clients our headers named.
      const relayed = instances.flatMap((i) => i.headers).map((h) => h.source);
      assert.deepEqual(
        new Set(relayed.map((s) => `${s?.hostname} ${s?.port}`)),
        new Set(sent.map((i) => `${i.source!.hostname} ${i.source!.port}`)),
      );
      // A broken header: HAProxy drops the connection, nothing reaches an instance.
      const before = instances.reduce((n, i) => n + i.headers.length, 0);
      const conn = await Deno.connect({ hostname: "127.0.0.1", port: haproxy.port });
      try {
        await conn.write(new TextEncoder().encode("PROXY TCP4 1.2.3.4 5.6.7.8 1\r\nhello"));
        const n = await conn.read(new Uint8Array(16)).catch(() => null);
        assert.equal(n, null, "no echo for a malformed header");
      } finally {
        conn.close();
      }
      assert.equal(instances.reduce((n, i) => n + i.headers.length, 0), before);
    } finally {
      await balancer?.stop();
      await Promise.all(instances.map((i) => i.stop()));
    }
  },
  { ignore: Boolean(NO_HAPROXY) },
);

test("a balancer whose port was taken meanwhile starts again on a fresh one", async () => {
  using taken = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const firstPort = (taken.addr as Deno.NetAddr).port;
  const servers = await threeInstances();
  try {
    for (
      const start of [NO_HAPROXY ? undefined : startHaproxy, NO_NGINX ? undefined : startNginx]
    ) {
      if (!start) continue;
      await using balancer = await start({
        backends: servers.map((s) => ({ port: s.addr.port })),
        proxyProtocol: false,
        firstPort,
      });
      assert.notEqual(balancer.port, firstPort);
      const { reply } = await echoTcp("through", { port: balancer.port, timeout: 10_000 });
      assert.equal(new TextDecoder().decode(reply), "through");
    }
  } finally {
    await stopAll(servers);
  }
}, { ignore: Boolean(NO_HAPROXY && NO_NGINX) });

// ---------------------------------------------------------------------------------------------
// The real server.ts (--proxy-protocol, --metrics) behind the recipes as written: continuous
// verified traffic, every instance used, one instance killed (SIGKILL) mid-run.

/** A server.ts child behind the balancer, its stdout (JSON events) read as it comes. */
interface ServerInstance {
  child: ReadChild;
  port: number;
  metricsPort: number;
  /** Every stdout line, read continuously (so the pipe never fills). */
  lines: Promise<string[]>;
}

async function startServerInstance(extra: string[] = []): Promise<ServerInstance> {
  const metricsPort = freePort();
  const child = spawnServer(
    [
      "--tcp",
      "--port",
      "0",
      "--json",
      "--proxy-protocol",
      "--metrics",
      `127.0.0.1:${metricsPort}`,
      ...extra,
    ],
  );
  const ready = await readyOrKill(child, child.stdout.waitFor(/"port":(\d+)/));
  return { child, port: Number(ready[1]), metricsPort, lines: child.stdout.rest() };
}

/** The JSON events of an instance so far (or all of them once it ended). */
function events(instance: ServerInstance): Record<string, unknown>[] {
  return instance.child.stdout.seen.flatMap((line) => {
    try {
      return [JSON.parse(line)];
    } catch {
      return [];
    }
  });
}

type Outcome = "ok" | "cut" | "wrong" | "refused";

/**
 * One verified exchange on a fresh connection: `ok` when every byte came back, `cut` when the
 * connection ended (EOF or reset) early with a correct prefix, `wrong` when any byte differs.
 */
async function exchangeOutcome(port: number, message: Uint8Array): Promise<{
  outcome: Outcome;
  clientPort?: number;
}> {
  let conn: Deno.TcpConn;
  try {
    conn = await Deno.connect({ hostname: "127.0.0.1", port });
  } catch {
    return { outcome: "refused" };
  }
  const clientPort = (conn.localAddr as Deno.NetAddr).port;
  const received = new Uint8Array(message.length);
  let got = 0;
  try {
    const reading = (async () => {
      while (got < message.length) {
        const n = await conn.read(received.subarray(got));
        if (n === null) return;
        got += n;
      }
    })();
    const writing = (async () => {
      for (let offset = 0; offset < message.length;) {
        offset += await conn.write(message.subarray(offset));
      }
    })();
    await Promise.all([reading, writing.catch(() => reading)]);
  } catch {
    // reset: judged by what came before
  } finally {
    conn.close();
  }
  const prefix = Buffer.compare(received.subarray(0, got), message.subarray(0, got)) === 0;
  return { outcome: !prefix ? "wrong" : got === message.length ? "ok" : "cut", clientPort };
}

interface Run {
  total: Record<Outcome, number>;
  /** Outcomes of exchanges started after the killed instance had exited. */
  afterKill: Record<Outcome, number>;
  clientPorts: Set<number>;
  killedAt: number;
}

/**
 * `lanes` clients exchange continuously through `port`; after `before` good exchanges `stop`
 * takes an instance away (a SIGKILL, a drain), then `after` more good exchanges are made.
 */
async function continuousTraffic(
  port: number,
  takeAway: () => Promise<void>,
  random: Random,
  { lanes = 4, before = 60, after = 60 } = {},
): Promise<Run> {
  const zero = () => ({ ok: 0, cut: 0, wrong: 0, refused: 0 });
  const run: Run = { total: zero(), afterKill: zero(), clientPorts: new Set(), killedAt: Infinity };
  let stop = false;
  let goodSinceKill = 0;
  const enough = Promise.withResolvers<void>();
  const lane = async () => {
    while (!stop) {
      const started = performance.now();
      const message = randomBytes(randomInt(random, 1, 16 * 1024), random);
      const { outcome, clientPort } = await exchangeOutcome(port, message);
      run.total[outcome]++;
      if (outcome === "ok" && clientPort) run.clientPorts.add(clientPort);
      if (run.total.ok >= before) enough.resolve();
      if (started > run.killedAt) {
        run.afterKill[outcome]++;
        if (outcome === "ok" && ++goodSinceKill >= after) stop = true;
      }
      assert.notEqual(outcome, "wrong", "a client got different bytes");
    }
  };
  const running = Array.from({ length: lanes }, lane);
  const kill = (async () => {
    await watchdog(60_000)(enough.promise, "traffic before the kill");
    await takeAway();
    run.killedAt = performance.now();
  })();
  try {
    await kill;
    await Promise.all(running);
  } finally {
    stop = true;
    await Promise.allSettled(running);
  }
  return run;
}

async function threeServers(): Promise<ServerInstance[]> {
  return await Promise.all([0, 1, 2].map(() => startServerInstance()));
}

async function stopServers(instances: ServerInstance[]): Promise<void> {
  for (const instance of instances) {
    try {
      instance.child.child.kill("SIGINT");
    } catch {
      // killed already
    }
  }
  await Promise.all(instances.map((i) => childEnded(i.child)));
}

/** What each instance's event lines show: sessions, and which clients they named. */
function split(instances: ServerInstance[]): { sessions: number[]; remotes: Set<number> } {
  const remotes = new Set<number>();
  const sessions = instances.map((instance) => {
    const connections = events(instance).filter((e) => e.event === "connection");
    for (const c of connections) remotes.add(Number(String(c.remote).split(":").pop()));
    return connections.length;
  });
  return { sessions, remotes };
}

async function balancedRun(
  name: string,
  start: (backends: BalancerBackend[]) => Promise<Balancer>,
  gone: (balancer: Balancer) => Promise<void>,
): Promise<void> {
  const seed = randomSeed();
  const random = new Random(seed);
  const instances = await threeServers();
  let balancer: Balancer | undefined;
  let run: Run;
  try {
    balancer = await start(instances.map((i) => ({ port: i.port, checkPort: i.metricsPort })));
    const b = balancer;
    run = await continuousTraffic(b.port, async () => {
      instances[1].child.child.kill("SIGKILL");
      await instances[1].child.child.status;
      await gone(b);
    }, random);
  } finally {
    await balancer?.stop();
    // Their event lines are all read once they have exited.
    await stopServers(instances);
  }
  const { sessions, remotes } = split(instances);
  console.log(
    `${name} (seed ${seed}): ${JSON.stringify(run.total)}; after the kill ${
      JSON.stringify(run.afterKill)
    }; sessions per instance ${sessions.join("/")}`,
  );
  assert.equal(run.total.wrong, 0, "never wrong bytes");
  assert.ok(sessions.every((n) => n > 0), `every instance used: ${sessions}`);
  assert.equal(run.afterKill.cut + run.afterKill.refused, 0, "routed around the dead instance");
  assert.ok(run.afterKill.ok >= 60);
  // Every client that got its echo was seen by an instance as itself (the PROXY header).
  const missing = [...run.clientPorts].filter((p) => !remotes.has(p));
  assert.deepEqual(missing, [], "the instances name the real clients");
}

test(
  "HAProxy as written + three server.ts --proxy-protocol: continuous traffic, one killed",
  async () => {
    await balancedRun(
      "HAProxy",
      async (backends) => {
        const haproxy = await startHaproxy({ backends });
        await haproxy.waitForStates((s) => ["echo1", "echo2", "echo3"].every((n) => s[n] === "UP"));
        return haproxy;
      },
      async (balancer) => {
        await (balancer as HaproxyBalancer).waitForStates((s) => s.echo2 === "DOWN");
      },
    );
  },
  { ignore: Boolean(NO_HAPROXY) },
);

test(
  "nginx as written + three server.ts --proxy-protocol: continuous traffic, one killed",
  async () => {
    await balancedRun(
      "nginx",
      (backends) => startNginx({ backends: backends.map(({ port }) => ({ port })) }),
      // nginx learns of the dead instance from the refused connect and passes it on.
      () => Promise.resolve(),
    );
  },
  { ignore: Boolean(NO_NGINX) },
);

test(
  "HAProxy as written + server.ts --drain: SIGTERM takes an instance out before it stops, unseen",
  async () => {
    const seed = randomSeed();
    const instances = await Promise.all(
      [0, 1, 2].map(() => startServerInstance(["--drain", "5s"])),
    );
    let balancer: HaproxyBalancer | undefined;
    try {
      balancer = await startHaproxy({
        backends: instances.map((i) => ({ port: i.port, checkPort: i.metricsPort })),
      });
      const haproxy = balancer;
      await haproxy.waitForStates((s) => ["echo1", "echo2", "echo3"].every((n) => s[n] === "UP"));
      let exit: Deno.CommandStatus | undefined;
      let downBeforeExit = false;
      const run = await continuousTraffic(haproxy.port, async () => {
        instances[1].child.child.kill("SIGTERM");
        const exited = instances[1].child.child.status.then((status) => (exit = status));
        // /healthz answers 503 at once; HAProxy's checks (inter 1s fall 2) take echo2 out while
        // it still serves, well before the 5 s drain ends.
        await haproxy.waitForStates((s) => s.echo2 === "DOWN", 20_000);
        downBeforeExit = exit === undefined;
        await exited;
      }, new Random(seed));
      console.log(
        `HAProxy drain (seed ${seed}): ${JSON.stringify(run.total)}; sessions per instance ${
          split(instances).sessions.join("/")
        }`,
      );
      assert.ok(downBeforeExit, "out of rotation before it stopped");
      assert.equal(exit?.code, 0, "the drained instance exits 0");
      assert.deepEqual(
        [run.total.cut, run.total.refused, run.total.wrong],
        [0, 0, 0],
        "no client saw the instance go",
      );
    } finally {
      await balancer?.stop();
      await stopServers(instances);
    }
  },
  { ignore: Boolean(NO_HAPROXY) },
);
