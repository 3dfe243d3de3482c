/**
 * The README's seed-7 impairment walk-through, run for real: the server's generator is seeded, so
 * with one client sending in order the same datagrams are dropped and held every run, and the
 * README's statistics line must say what a run says. Only the timings vary (the `time` and `rtt`
 * figures, which the README says are examples).
 */
import assert from "node:assert/strict";
import { ROOT, spawnServer, test, watchdog } from "./_helpers.ts";
import { runProgram } from "./_cli_child.ts";

const within = watchdog(60_000);

/** The deterministic part of a ping statistics line: everything before `, time`. */
function counts(line: string): string {
  return line.replace(/, time \S+$/, "");
}

test("README: the seed-7 impairment figures are those of a real run", async () => {
  const readme = await Deno.readTextFile(`${ROOT}README.md`);
  const shown = [...readme.matchAll(/^\s*(2,000 sent, .*)$/gm)].map((m) => m[1]);
  assert.ok(shown.length >= 1, "the README shows the seed-7 statistics line");
  // -q: the README runs it without, but 2,000 event lines would fill the pipe this test does not
  // drain after the ready line (the counts are the same either way).
  const server = spawnServer([
    "--udp",
    "-q",
    "-p",
    "0",
    "--loss",
    "0.2",
    "--reorder",
    "0.1",
    "--seed",
    "7",
  ]);
  try {
    const ready = await within(
      server.stdout.waitFor(
        /^listening udp 127\.0\.0\.1:(\d+) \(impaired: loss 20%, reorder 10%, seed 7\)$/,
      ),
      "the ready line",
    );
    const client = await within(
      runProgram("client.ts", ["-u", "-p", ready[1], "--count", "2000", "--interval", "2ms"], [
        "--allow-net",
      ]),
      "the ping",
    );
    const line = client.stdout.split("\n").find((l) => l.startsWith("2,000 sent, "));
    assert.ok(line, client.stdout.slice(-500));
    for (const text of shown) assert.equal(counts(text), counts(line), "README vs a real run");
  } finally {
    server.child.kill("SIGINT");
    await server.child.status;
    await server.stdout.rest();
    await server.stderr;
  }
});
