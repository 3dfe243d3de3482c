// The README's performance section must be exactly what bench/readme_table.ts renders from the
// committed results file its start marker names: no figure in it is typed by hand.
import assert from "node:assert/strict";
import type { ResultsFile } from "./_results.ts";
import {
  cellLabel,
  findSection,
  renderReadmeTable,
  replaceSection,
  sameMarkdown,
} from "./readme_table.ts";

const ROOT = new URL("..", import.meta.url).pathname;

Deno.test("README performance table is what readme_table.ts renders from the results it names", async () => {
  const readme = await Deno.readTextFile(`${ROOT}README.md`);
  const section = findSection(readme);
  assert.ok(section, "README.md has a <!-- bench:start FILE --> … <!-- bench:end --> section");
  assert.match(section.file, /^bench\/results\/[^/]+\.json$/);
  const results: ResultsFile = JSON.parse(await Deno.readTextFile(`${ROOT}${section.file}`));
  assert.equal(results.format, "echo-bench-results/2");
  // The report the run printed is committed next to it.
  await Deno.stat(`${ROOT}${section.file.replace(/\.json$/, ".md")}`);
  const expected = renderReadmeTable(results, section.file);
  assert.ok(
    sameMarkdown(section.body, expected),
    `README.md is stale: run deno run -A bench/readme_table.ts ${section.file}`,
  );
});

Deno.test("sameMarkdown ignores deno fmt's padding and wrapping, not a changed figure", () => {
  assert.ok(
    sameMarkdown("a b\nc\n\n| x  | 1.2k |\n| --- | ---: |", "a\nb c\n\n| x | 1.2k |\n| - | -: |"),
  );
  assert.ok(!sameMarkdown("| x | 1.2k |", "| x | 1.3k |"));
  assert.ok(!sameMarkdown("0.91×", "0.92×"));
});

Deno.test("findSection and replaceSection round-trip and keep what is around", () => {
  const text =
    "intro\n<!-- bench:start bench/results/a.json -->\n\nold\n\n<!-- bench:end -->\nafter\n";
  const section = findSection(text)!;
  assert.equal(section.file, "bench/results/a.json");
  assert.equal(section.body, "old");
  const next = replaceSection(text, "bench/results/b.json", "new\ntable");
  assert.equal(
    next,
    "intro\n<!-- bench:start bench/results/b.json -->\n\nnew\ntable\n\n<!-- bench:end -->\nafter\n",
  );
  assert.equal(findSection(next)!.body, "new\ntable");
  assert.equal(findSection("no markers"), null);
  assert.throws(() => replaceSection("no markers", "x.json", "y"), Error);
});

Deno.test("cellLabel names cells as the README does", () => {
  assert.equal(
    cellLabel({ proto: "tcp", mode: "rr", size: 64, connections: 1000 }),
    "TCP 64 B × 1,000",
  );
  assert.equal(
    cellLabel({ proto: "tcp", mode: "rr", size: 65536, connections: 10 }),
    "TCP 64 KiB × 10",
  );
  assert.equal(
    cellLabel({ proto: "tcp", mode: "stream", size: 65536, connections: 4 }),
    "TCP stream × 4",
  );
});
