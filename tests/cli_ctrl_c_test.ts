/**
 * Ctrl-C as a terminal sends it: to the whole foreground process group, so under `deno task start`
 * (the README's first command) the server gets one SIGINT from the terminal and one forwarded by
 * the task runner, milliseconds apart.
 */
import assert from "node:assert/strict";
import { LineReader, ROOT, test, watchdog } from "./_helpers.ts";

const within = watchdog(20_000);
const HAS_SETSID = (() => {
  try {
    return new Deno.Command("setsid", { args: ["--version"], stdout: "null", stderr: "null" })
      .outputSync().success;
  } catch {
    return false;
  }
})();
if (!HAS_SETSID) console.log("skipped: no setsid(1) here to give the task runner its own group");

/** `deno task start -p 0 --tcp` as the leader of a process group of its own, as a shell does. */
function startTask() {
  const child = new Deno.Command("setsid", {
    args: [Deno.execPath(), "task", "start", "-p", "0", "--tcp"],
    cwd: ROOT,
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
    env: { NO_COLOR: "1" },
  }).spawn();
  return { child, stdout: new LineReader(child.stdout), stderr: new LineReader(child.stderr) };
}

/** Ctrl-C on a terminal: SIGINT to every process of the group. */
function ctrlC(pid: number): void {
  Deno.kill(-pid, "SIGINT");
}

test(
  "Ctrl-C under deno task start shuts down gracefully: the open session is served, summary, exit 0",
  async () => {
    const task = startTask();
    const port = Number(
      (await within(task.stdout.waitFor(/^listening tcp 127\.0\.0\.1:(\d+)$/), "the ready line"))[
        1
      ],
    );
    const conn = await Deno.connect({ hostname: "127.0.0.1", port });
    await within(task.stdout.waitFor(/^connection #1 from /), "the connection line");
    ctrlC(task.child.pid);
    await within(
      task.stderr.waitFor(
        /^server\.ts: notice: shutting down: 1 open session has 3\.00s to finish/,
      ),
      "the shutting-down notice",
    );
    // The session still works after the signal: nothing was cut at once.
    await conn.write(new TextEncoder().encode("still here"));
    const buffer = new Uint8Array(10);
    let got = 0;
    while (got < buffer.length) {
      const n = await within(conn.read(buffer.subarray(got)), "the echo");
      assert.notEqual(n, null, "the server cut the session at Ctrl-C");
      got += n!;
    }
    assert.equal(new TextDecoder().decode(buffer), "still here");
    conn.close();
    const [status, lines, stderr] = await within(
      Promise.all([task.child.status, task.stdout.rest(), task.stderr.rest()]),
      "the server to stop",
    );
    assert.equal(status.code, 0, stderr.join("\n"));
    assert.match(lines.at(-1)!, /^stopped: 1 TCP session, /);
  },
  { ignore: !HAS_SETSID },
);

test("Ctrl-C twice a moment apart under deno task start exits at once", async () => {
  const task = startTask();
  const port = Number(
    (await within(task.stdout.waitFor(/^listening tcp 127\.0\.0\.1:(\d+)$/), "the ready line"))[1],
  );
  const conn = await Deno.connect({ hostname: "127.0.0.1", port });
  await within(task.stdout.waitFor(/^connection #1 from /), "the connection line");
  ctrlC(task.child.pid);
  await within(task.stderr.waitFor(/shutting down: /), "the shutting-down notice");
  // A person's second Ctrl-C comes a moment later, not within the same millisecond.
  await new Promise((resolve) => setTimeout(resolve, 300));
  const start = performance.now();
  ctrlC(task.child.pid);
  const status = await within(task.child.status, "the server to exit");
  // Well before the 3 s grace period the open session would otherwise get.
  assert.ok(performance.now() - start < 2500, "did not exit at once");
  assert.equal(status.code, 1);
  await task.stdout.rest();
  await task.stderr.rest();
  conn.close();
}, { ignore: !HAS_SETSID });
