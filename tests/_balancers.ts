/**
 * Test harness: real HAProxy and nginx on loopback, started from the recipes in `deploy/` with
 * their ports and paths replaced, as foreground processes whose pid and log files live in a
 * temporary directory removed when they stop.
 *
 * The recipes stay the source of truth: every replacement must find the line it replaces, so a
 * recipe edited out of shape fails the tests instead of being silently bypassed.
 *
 * Listen ports cannot be 0 in either program's configuration, so a free port is found by binding
 * port 0, reading it and closing it; the moment between closing and the balancer binding it is a
 * race with any other program, so a start that fails with "address in use" is retried with fresh
 * ports.
 *
 * @module
 */
import { LineReader } from "./_helpers.ts";

/** The repository's deploy/ directory. */
export const DEPLOY: string = new URL("../deploy/", import.meta.url).pathname;

/** Where Debian and others install nginx's dynamic modules. */
const NGINX_MODULE_DIRS = [
  "/usr/lib/nginx/modules",
  "/usr/share/nginx/modules",
  "/usr/lib64/nginx/modules",
];

/** One echo instance behind the balancer. */
export interface BalancerBackend {
  /** Its echo port on 127.0.0.1. */
  port: number;
  /** HAProxy only: the port of its `/healthz` (`--metrics`); without it the check is a TCP connect. */
  checkPort?: number;
}

/** How to start a balancer. */
export interface BalancerOptions {
  /** The echo instances, in order (named echo1, echo2, ...). */
  backends: readonly BalancerBackend[];
  /**
   * Send the PROXY header (`send-proxy-v2` / `proxy_protocol on`), as the recipe does. Default
   * true; false until the echo server speaks the protocol.
   */
  proxyProtocol?: boolean;
  /** nginx only: `proxy_half_close` (default on, as the recipe has it). */
  halfClose?: boolean;
  /**
   * HAProxy only: the frontend expects a PROXY header itself (`accept-proxy`), as when chained
   * behind another balancer; for testing what a client sends.
   */
  acceptProxy?: boolean;
  /**
   * The frontend port to try first (default: a free one). For testing the retry: a port taken
   * by someone else makes the start retry on fresh free ports.
   */
  firstPort?: number;
}

/** A running balancer. */
export interface Balancer extends AsyncDisposable {
  /** Which program. */
  readonly kind: "haproxy" | "nginx";
  /** The frontend port on 127.0.0.1. */
  readonly port: number;
  /** The temporary directory holding its configuration, pid and logs. */
  readonly dir: string;
  /** The configuration it runs. */
  readonly config: string;
  /** Its stderr lines so far (HAProxy's log, nginx's error log). */
  readonly log: readonly string[];
  /** Stops it (SIGTERM, SIGKILL after 10 s) and removes its directory. */
  stop(): Promise<void>;
}

/** A running HAProxy, which can also tell its servers' states. */
export interface HaproxyBalancer extends Balancer {
  /** Each server's status from the stats socket (`UP`, `DOWN`, `no check`, ...), by name. */
  serverStates(): Promise<Record<string, string>>;
  /**
   * Waits until the servers' states satisfy `test` (polling the stats socket every 50 ms; a
   * watchdog fails after `limit` ms).
   */
  waitForStates(test: (states: Record<string, string>) => boolean, limit?: number): Promise<void>;
}

/**
 * Why a program cannot run here, or undefined when it can.
 *
 * @param program `haproxy` or `nginx`.
 * @returns The reason, for a skip line.
 */
export function missing(program: "haproxy" | "nginx"): string | undefined {
  try {
    const { success } = new Deno.Command(program, { args: ["-v"], stdout: "null", stderr: "null" })
      .outputSync();
    if (!success) return `${program} -v failed`;
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) return `${program} is not installed`;
    return `${program} cannot run: ${(error as Error).message}`;
  }
  if (program === "nginx" && !nginxStreamModule()) {
    return `nginx's stream module is not in ${
      NGINX_MODULE_DIRS.join(" or ")
    } (libnginx-mod-stream)`;
  }
  return undefined;
}

/**
 * The path of nginx's stream module, or undefined.
 *
 * @returns The .so path.
 */
export function nginxStreamModule(): string | undefined {
  for (const dir of NGINX_MODULE_DIRS) {
    const path = `${dir}/ngx_stream_module.so`;
    try {
      if (Deno.statSync(path).isFile) return path;
    } catch {
      // not here
    }
  }
  return undefined;
}

/**
 * A port that was free a moment ago on 127.0.0.1 (bound with port 0, then closed).
 *
 * @returns The port.
 */
export function freePort(): number {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const { port } = listener.addr as Deno.NetAddr;
  listener.close();
  return port;
}

/** Replaces exactly one match of `pattern`, failing when the recipe has none. */
function replaceOne(text: string, pattern: RegExp, by: string, what: string): string {
  const matches = text.match(new RegExp(pattern.source, pattern.flags.replace("g", "") + "g"));
  if (!matches || matches.length !== 1) {
    throw new Error(
      `recipe changed: expected one ${what} (${pattern}), found ${matches?.length ?? 0}`,
    );
  }
  return text.replace(pattern, by);
}

/** Replaces the block of lines matching `pattern` (consecutive) with `lines`. */
function replaceBlock(text: string, pattern: RegExp, lines: string[], what: string): string {
  const all = text.split("\n");
  const first = all.findIndex((line) => pattern.test(line));
  if (first < 0) throw new Error(`recipe changed: no ${what} (${pattern})`);
  let end = first;
  while (end < all.length && pattern.test(all[end])) end++;
  all.splice(first, end - first, ...lines);
  return all.join("\n");
}

/** Where a rendered configuration listens and keeps its files. */
export interface RenderOptions extends BalancerOptions {
  /** The frontend port. */
  port: number;
  /** The directory for pid, socket and log files. */
  dir: string;
}

/**
 * deploy/haproxy.cfg with the harness's ports and paths.
 *
 * @param recipe The recipe's text.
 * @param options Ports, directory, variant.
 * @returns The configuration.
 */
export function renderHaproxyConfig(recipe: string, options: RenderOptions): string {
  let config = recipe;
  config = replaceOne(
    config,
    /bind 127\.0\.0\.1:7000\b/,
    `bind 127.0.0.1:${options.port}${options.acceptProxy ? " accept-proxy" : ""}`,
    "bind",
  );
  config = replaceOne(config, /pidfile \S+/, `pidfile ${options.dir}/haproxy.pid`, "pidfile");
  config = replaceOne(
    config,
    /stats socket \S+/,
    `stats socket ${options.dir}/haproxy.sock`,
    "stats socket",
  );
  const httpCheck = options.backends.every((b) => b.checkPort !== undefined);
  config = replaceBlock(
    config,
    /^\s*server echo\d+ 127\.0\.0\.1:\d+ check port \d+$/,
    options.backends.map((b, i) =>
      `    server echo${i + 1} 127.0.0.1:${b.port} check` +
      (httpCheck ? ` port ${b.checkPort}` : "")
    ),
    "server lines",
  );
  if (!httpCheck) {
    config = replaceOne(config, /^\s*option httpchk\n/m, "", "option httpchk");
    config = replaceBlock(config, /^\s*http-check /, [], "http-check lines");
  }
  if (options.proxyProtocol === false) {
    config = replaceOne(
      config,
      /default-server send-proxy-v2 /,
      "default-server ",
      "send-proxy-v2",
    );
  }
  return config;
}

/**
 * deploy/nginx.conf with the harness's ports, paths and module location.
 *
 * @param recipe The recipe's text.
 * @param options Ports, directory, variant.
 * @param module The stream module's path.
 * @returns The configuration.
 */
export function renderNginxConfig(recipe: string, options: RenderOptions, module: string): string {
  let config = recipe;
  config = replaceOne(config, /load_module \S+;/, `load_module ${module};`, "load_module");
  config = replaceOne(config, /^pid \S+;/m, `pid ${options.dir}/nginx.pid;`, "pid");
  config = replaceOne(config, /^error_log \S+/m, "error_log stderr", "error_log");
  config = replaceOne(
    config,
    /access_log \S+ echo;/,
    `access_log ${options.dir}/access.log echo;`,
    "access_log",
  );
  config = replaceOne(
    config,
    /listen 127\.0\.0\.1:7000;/,
    `listen 127.0.0.1:${options.port};`,
    "listen",
  );
  const template = /^(\s*)server 127\.0\.0\.1:\d+( .*)?;$/;
  const line = config.split("\n").find((l) => template.test(l));
  if (!line) throw new Error("recipe changed: no upstream server lines");
  const [, indent, rest = ""] = template.exec(line)!;
  config = replaceBlock(
    config,
    template,
    options.backends.map((b) => `${indent}server 127.0.0.1:${b.port}${rest};`),
    "upstream server lines",
  );
  if (options.proxyProtocol === false) {
    config = replaceOne(config, /proxy_protocol on;/, "proxy_protocol off;", "proxy_protocol");
  }
  if (options.halfClose === false) {
    config = replaceOne(
      config,
      /proxy_half_close on;/,
      "proxy_half_close off;",
      "proxy_half_close",
    );
  }
  return config;
}

/** How long a balancer may take to start or stop before the harness gives up. */
const START_LIMIT = 20_000;
const STOP_LIMIT = 10_000;
const ATTEMPTS = 5;

interface Started {
  child: Deno.ChildProcess;
  stderr: LineReader;
}

/** Spawns, waits for `ready` on stderr; on an early exit returns the log instead. */
async function spawnUntilReady(
  command: string,
  args: string[],
  ready: RegExp,
): Promise<Started | { failed: string[] }> {
  const child = new Deno.Command(command, {
    args,
    stdin: "null",
    stdout: "null",
    stderr: "piped",
  }).spawn();
  const stderr = new LineReader(child.stderr);
  try {
    await stderr.waitFor(ready, START_LIMIT);
    return { child, stderr };
  } catch {
    try {
      child.kill("SIGKILL");
    } catch {
      // exited already
    }
    await child.status;
    await stderr.rest();
    return { failed: [...stderr.seen] };
  }
}

async function stopChild(started: Started, dir: string): Promise<void> {
  try {
    started.child.kill("SIGTERM");
  } catch {
    // exited already
  }
  const timer = setTimeout(() => {
    try {
      started.child.kill("SIGKILL");
    } catch {
      // exited meanwhile
    }
  }, STOP_LIMIT);
  try {
    await started.child.status;
    await started.stderr.rest();
  } finally {
    clearTimeout(timer);
    await Deno.remove(dir, { recursive: true }).catch(() => {});
  }
}

async function start<T extends Balancer>(
  kind: "haproxy" | "nginx",
  firstPort: number | undefined,
  launch: (port: number, dir: string) => { config: string; args: string[]; ready: RegExp },
  extend: (base: Balancer, dir: string) => T,
): Promise<T> {
  const reason = missing(kind);
  if (reason) throw new Error(reason);
  let lastLog: string[] = [];
  for (let attempt = 0; attempt < ATTEMPTS; attempt++) {
    const dir = await Deno.makeTempDir({ prefix: `echo-${kind}-` });
    const port = attempt === 0 && firstPort !== undefined ? firstPort : freePort();
    const { config, args, ready } = launch(port, dir);
    await Deno.writeTextFile(`${dir}/${kind}.conf`, config);
    const started = await spawnUntilReady(kind, args, ready);
    if ("failed" in started) {
      await Deno.remove(dir, { recursive: true }).catch(() => {});
      lastLog = started.failed;
      if (lastLog.some((line) => /address already in use|cannot bind/i.test(line))) continue;
      throw new Error(`${kind} did not start:\n${lastLog.join("\n")}`);
    }
    let stopping: Promise<void> | undefined;
    const stop = () => stopping ??= stopChild(started, dir);
    const base: Balancer = {
      kind,
      port,
      dir,
      config,
      get log() {
        return started.stderr.seen;
      },
      stop,
      [Symbol.asyncDispose]: stop,
    };
    // Keep reading stderr so the pipe never fills; the lines stay in `seen`.
    void started.stderr.rest().catch(() => {});
    return extend(base, dir);
  }
  throw new Error(
    `${kind}: ports kept being taken in ${ATTEMPTS} attempts:\n${lastLog.join("\n")}`,
  );
}

/**
 * Starts HAProxy from deploy/haproxy.cfg in master-worker mode, in the foreground (`-W -db`),
 * ready once it logs "Loading success".
 *
 * @param options The echo instances and the variant.
 * @returns The running balancer.
 */
export async function startHaproxy(options: BalancerOptions): Promise<HaproxyBalancer> {
  const recipe = await Deno.readTextFile(`${DEPLOY}haproxy.cfg`);
  return await start("haproxy", options.firstPort, (port, dir) => ({
    config: renderHaproxyConfig(recipe, { ...options, port, dir }),
    args: ["-W", "-db", "-f", `${dir}/haproxy.conf`],
    ready: /Loading success/,
  }), (base, dir) => {
    const serverStates = () => haproxyServerStates(`${dir}/haproxy.sock`);
    return {
      ...base,
      get log() {
        return base.log;
      },
      serverStates,
      async waitForStates(test, limit = 30_000) {
        const deadline = Date.now() + limit;
        let states: Record<string, string> = {};
        while (Date.now() < deadline) {
          states = await serverStates();
          if (test(states)) return;
          await new Promise((resolve) => setTimeout(resolve, 50)); // polling HAProxy's state
        }
        throw new Error(
          `HAProxy servers never reached the state wanted: ${JSON.stringify(states)}`,
        );
      },
    };
  });
}

/**
 * Reads `show stat` from HAProxy's stats socket.
 *
 * @param path The socket.
 * @returns Each backend server's status by name.
 */
export async function haproxyServerStates(path: string): Promise<Record<string, string>> {
  const conn = await Deno.connect({ transport: "unix", path });
  try {
    await conn.write(new TextEncoder().encode("show stat\n"));
    const text = await new Response(conn.readable).text();
    const [head, ...rows] = text.trim().split("\n");
    const columns = head.replace(/^# /, "").split(",");
    const name = columns.indexOf("svname");
    const status = columns.indexOf("status");
    const states: Record<string, string> = {};
    for (const row of rows) {
      const cells = row.split(",");
      if (cells[name] !== "FRONTEND" && cells[name] !== "BACKEND") {
        states[cells[name]] = cells[status];
      }
    }
    return states;
  } catch (error) {
    try {
      conn.close();
    } catch {
      // closed by the readable
    }
    throw error;
  }
}

/**
 * Starts nginx from deploy/nginx.conf in the foreground (`daemon off`), ready once its error log
 * (stderr) says a worker process started.
 *
 * @param options The echo instances and the variant.
 * @returns The running balancer.
 */
export async function startNginx(options: BalancerOptions): Promise<Balancer> {
  const recipe = await Deno.readTextFile(`${DEPLOY}nginx.conf`);
  const module = nginxStreamModule()!;
  return await start("nginx", options.firstPort, (port, dir) => ({
    config: renderNginxConfig(recipe, { ...options, port, dir }, module),
    args: ["-c", `${dir}/nginx.conf`, "-p", dir, "-e", "stderr", "-g", "daemon off;"],
    ready: /start worker process/,
  }), (base) => base);
}
