/**
 * At the file descriptor limit, over real sockets: server.ts runs as a child under
 * `ulimit -n 64` (hard and soft, so Deno cannot raise it) and 100 clients connect. Every client
 * that finds no descriptor left is closed at once (the reserve-descriptor trick, _fd_reserve.ts)
 * instead of waiting in the accept queue until it times out; stderr gets at most a line a
 * second; the refusals are counted (`fd` in the summary); and once the clients leave, a new
 * client is served.
 *
 * @module
 */
import assert from "node:assert/strict";
import { EchoMismatchError } from "../errors.ts";
import { echoTcp } from "../tcp.ts";
import { childEnded, readyOrKill, ROOT, spawnChild, test, watchdog } from "./_helpers.ts";

const within = watchdog(20_000);
const CLIENTS = 100;
const FD_LIMIT = 64;

const HAS_BASH = await (async () => {
  try {
    return (await new Deno.Command("bash", { args: ["-c", "ulimit -n 64"] }).output()).success;
  } catch {
    return false;
  }
})();
const ignore = Deno.build.os !== "linux" || !HAS_BASH;
if (ignore) console.log("fd_limit_test: skipped: needs Linux and bash (ulimit -n)");

/** What became of one client: echoed, or closed by the server (FIN or reset). */
async function outcome(conn: Deno.Conn): Promise<"echo" | "closed"> {
  try {
    await conn.write(new Uint8Array([1]));
    const n = await conn.read(new Uint8Array(1));
    return n === 1 ? "echo" : "closed";
  } catch (error) {
    if (error instanceof Deno.errors.ConnectionReset || error instanceof Deno.errors.BrokenPipe) {
      return "closed";
    }
    throw error;
  }
}

test(
  `at the descriptor limit (ulimit -n ${FD_LIMIT}) excess clients are closed at once, counted, and logged at most once a second`,
  async () => {
    const server = spawnChild("bash", [
      "-c",
      `ulimit -n ${FD_LIMIT} && exec "${Deno.execPath()}" run --allow-net server.ts --tcp --port 0`,
    ], ROOT);
    const conns: Deno.Conn[] = [];
    try {
      const { input: line } = await readyOrKill(
        server,
        within(server.stdout.waitFor(/listening/), "the listening line"),
      );
      const port = Number(/:(\d+)\s*$/.exec(line)![1]);
      for (let i = 0; i < CLIENTS; i++) {
        conns.push(await Deno.connect({ hostname: "127.0.0.1", port }));
      }
      const started = performance.now();
      // Before the fix, a client beyond the limit waited here in the accept queue: the watchdog.
      const outcomes = await within(Promise.all(conns.map(outcome)), "every client's outcome");
      const took = performance.now() - started;
      const served = outcomes.filter((o) => o === "echo").length;
      const refused = outcomes.length - served;
      assert.ok(refused > 0, `all ${CLIENTS} were served: the limit was not reached`);
      assert.ok(served > 10, `only ${served} served`);
      for (const conn of conns.splice(0)) conn.close();
      // Once the sessions have ended, descriptors are free again: a new client is served.
      let closed = 0;
      await within(
        server.stdout.waitFor(/^closed #/).then(function more(): Promise<void> | undefined {
          return ++closed < served ? server.stdout.waitFor(/^closed #/).then(more) : undefined;
        }),
        `${served} sessions to end`,
      );
      // Deno closes a socket's descriptor a moment after close() returns (once the ops that
      // held it are dropped), so the first attempts may still find the table full; each is
      // then refused at once, and within a few seconds one is served.
      let attempts = 0;
      for (;;) {
        attempts++;
        try {
          const { reply } = await echoTcp("after the crowd", { port, timeout: 5_000 });
          assert.equal(new TextDecoder().decode(reply), "after the crowd");
          break;
        } catch (error) {
          if (!(error instanceof EchoMismatchError) || attempts >= 100) throw error;
          await new Promise((resolve) => setTimeout(resolve, 50)); // a retry's pause, not a sync
        }
      }
      server.child.kill("SIGINT");
      const { code, lines, stderr } = await within(childEnded(server), "the server to stop");
      assert.equal(code, 0);
      const stopped = lines.find((l) => l.startsWith("stopped:"));
      assert.match(
        stopped ?? "",
        new RegExp(`refused: fd ${refused + attempts - 1}\\b`),
        lines.join("\n"),
      );
      // At most one line a second about the limit (the run took `took` ms), plus one to spare.
      const reports = stderr.split("\n").filter((l) => /descriptor|accept failed/.test(l));
      assert.ok(
        reports.length <= Math.ceil(took / 1000) + 1,
        `${reports.length} lines in ${took.toFixed(0)} ms:\n${stderr}`,
      );
    } finally {
      for (const conn of conns) conn.close();
      try {
        server.child.kill("SIGKILL");
      } catch {
        // already gone
      }
      await server.child.status;
      await server.stderr;
      await server.stdout.rest().catch(() => {});
    }
  },
  { ignore },
);
