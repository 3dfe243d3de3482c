import assert from "node:assert/strict";
import { formatDuration, parseDuration } from "../duration.ts";

Deno.test("parseDuration reads every unit, decimals, and bare milliseconds", () => {
  const cases: [string, number][] = [
    ["0", 0],
    ["40", 40],
    ["250ms", 250],
    ["1s", 1000],
    ["1.5s", 1500],
    [".5s", 500],
    ["10s", 10_000],
    ["2m", 120_000],
    ["1h", 3_600_000],
    [" 10s ", 10_000],
    ["0.25ms", 0.25],
  ];
  for (const [text, ms] of cases) assert.equal(parseDuration(text), ms, text);
});

Deno.test("parseDuration rejects what is not a duration with a one-line TypeError", () => {
  for (
    const text of ["", "x", "5x", "-1", "-1s", "1.", "1e3", "10 s", "10S", "1m30s", "Infinity"]
  ) {
    assert.throws(
      () => parseDuration(text),
      (error: unknown) => {
        assert.ok(error instanceof TypeError, `${text}: ${error}`);
        assert.match(error.message, /^invalid duration "/);
        assert.ok(error.message.includes(JSON.stringify(text)), error.message);
        assert.ok(!error.message.includes("\n"));
        return true;
      },
      text,
    );
  }
});

Deno.test("formatDuration picks a unit for people", () => {
  assert.equal(formatDuration(0), "0µs");
  assert.equal(formatDuration(0.85), "850µs");
  assert.equal(formatDuration(1), "1.00ms");
  assert.equal(formatDuration(12.34), "12.3ms");
  assert.equal(formatDuration(250), "250ms");
  assert.equal(formatDuration(4200), "4.20s");
  assert.equal(formatDuration(60_000), "1m00s");
  assert.equal(formatDuration(125_000), "2m05s");
  assert.equal(formatDuration(Infinity), "Infinity");
  assert.equal(formatDuration(NaN), "NaN");
});

Deno.test("formatDuration carries rounding into the next unit instead of printing 1m60s", () => {
  assert.equal(formatDuration(0.9996), "1.00ms");
  assert.equal(formatDuration(9.999), "10.0ms");
  assert.equal(formatDuration(99.97), "100ms");
  assert.equal(formatDuration(999.6), "1.00s");
  assert.equal(formatDuration(59_999), "1m00s");
  assert.equal(formatDuration(119_700), "2m00s");
  assert.equal(formatDuration(3_599_999), "60m00s");
});
