import assert from "node:assert/strict";
import { gcOf, type LimitsFile, parseLimitsArgs, parseStrace, renderLimits } from "./limits.ts";

Deno.test("limits: strace -c tables are read per system call, total left out", () => {
  const text = [
    "% time     seconds  usecs/call     calls    errors syscall",
    "------ ----------- ----------- --------- --------- ----------------",
    " 55.10    0.120000           3     40000      1200 recvfrom",
    " 44.90    0.098000           2     39990           sendto",
    "------ ----------- ----------- --------- --------- ----------------",
    "100.00    0.218000           2     79990      1200 total",
  ].join("\n");
  assert.deepEqual([...parseStrace(text)], [["recvfrom", 40000], ["sendto", 39990]]);
});

Deno.test("limits: GC lines outside the load window are not counted", () => {
  const line = (ms: number, kind: string, pause: string) =>
    `[9:0x1]   ${ms} ms: ${kind} 3.2 (4.2) -> 3.1 (5.2) MB, pooled: 0.0 MB, ${pause} / 0.00 ms ` +
    "(average mu = 1.000, current mu = 1.000) allocation failure;";
  const lines = [
    line(10, "Scavenge", "9.00"), // start-up, before the load
    line(1500, "Scavenge", "0.50"),
    line(1600, "Mark-Compact", "2.25"),
    line(1700, "Minor Mark-Sweep", "0.25"),
    line(9000, "Scavenge", "7.00"), // shutdown, after it
    "listening tcp 127.0.0.1:7",
  ];
  assert.deepEqual(gcOf(lines, 1000, 2000), { scavenges: 2, markCompacts: 1, pauseMs: 3 });
});

Deno.test("limits: the report has one table per kind and says how it was made", () => {
  const file: LimitsFile = {
    schema: "echo-limits/1",
    date: "2026-12-02T00:00:00Z",
    versions: { deno: "2.9.6" },
    settings: { runs: 3, duration: 4, traceSeconds: 3, strace: true },
    rows: [{
      kind: "server",
      name: "ours",
      cell: "udp-1kx16",
      command: ["deno"],
      rps: 97046,
      rpsRange: [90000, 99000],
      p99Us: 334,
      fairness: 1,
      userUsPerRequest: 4.49,
      sysUsPerRequest: 5.75,
      switchesPerRequest: 0.003,
      peakMiB: 82.2,
      syscallsPerRequest: 2.77,
      topSyscalls: [{ name: "recvfrom", per1k: 1370 }],
      gc: { scavenges: 1.9, markCompacts: 0, pauseMs: 0.77 },
    }],
  };
  const md = renderLimits(file);
  assert.ok(md.includes("bench/limits.ts"), "bench/limits.ts");
  assert.ok(
    md.includes("| udp-1kx16 | ours | 97046 (90000–99000) | 334 | 1 | 4.49 | 5.75 |"),
    "| udp-1kx16 | ours | 97046 (90000–99000) | 334 | 1 | 4.49 | 5.75 |",
  );
  assert.ok(md.includes("recvfrom 1370"), "recvfrom 1370");
  assert.ok(md.includes("1.9 / 0 / 0.77"), "1.9 / 0 / 0.77");
});

Deno.test("limits: bad flags are one-line errors, good ones are read", () => {
  assert.deepEqual(parseLimitsArgs(["--runs", "5", "--no-strace"]), {
    runs: 5,
    duration: 4,
    traceSeconds: 3,
    strace: false,
    help: false,
  });
  assert.throws(
    () => parseLimitsArgs(["--runs", "0"]),
    /--runs must be a whole number of at least 1, got "0"/,
  );
  assert.throws(() => parseLimitsArgs(["--duration", "2.5"]), /--duration must be a whole number/);
  assert.throws(() => parseLimitsArgs(["--bogus"]), RangeError);
});
