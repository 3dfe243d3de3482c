/**
 * The parts of JSR's package score that can be checked offline, over deno.json's exports: a module
 * doc on every entrypoint, an `@example` in each, at least 80% of the exported symbols documented,
 * and no slow types (`deno publish --dry-run`). The same checks run on a deliberately poor
 * package in a temporary directory, which they must fail.
 *
 * @module
 */
import assert from "node:assert/strict";
import { ROOT, test } from "./_helpers.ts";

const decoder = new TextDecoder();
/** JSR's threshold for "has docs for most symbols". */
const DOCUMENTED_SHARE = 0.8;

// deno-lint-ignore no-explicit-any
type Json = any;

/** The score-relevant facts about a package's entrypoints. */
interface DocScore {
  /** Entrypoints (as in deno.json's exports) without a module doc. */
  noModuleDoc: string[];
  /** Entrypoints whose module doc has no `@example`. */
  noExample: string[];
  /** Exported symbols over all entrypoints, by `entrypoint:name`. */
  symbols: string[];
  /** Those without a JSDoc description. */
  undocumented: string[];
}

function entrypoints(dir: string): string[] {
  const config = JSON.parse(Deno.readTextFileSync(`${dir}/deno.json`));
  const exports = typeof config.exports === "string" ? { ".": config.exports } : config.exports;
  return Object.values(exports) as string[];
}

async function docScore(dir: string): Promise<DocScore> {
  const files = entrypoints(dir);
  const { code, stdout, stderr } = await new Deno.Command(Deno.execPath(), {
    args: ["doc", "--json", ...files],
    cwd: dir,
    stdout: "piped",
    stderr: "piped",
  }).output();
  assert.equal(code, 0, decoder.decode(stderr));
  const nodes: Record<string, Json> = JSON.parse(decoder.decode(stdout)).nodes;
  const score: DocScore = { noModuleDoc: [], noExample: [], symbols: [], undocumented: [] };
  for (const file of files) {
    const url = new URL(file, `file://${dir.replace(/\/?$/, "/")}`).href;
    const node = nodes[url];
    assert.ok(node, `deno doc has no node for ${file} (${Object.keys(nodes).join(", ")})`);
    const moduleDoc = node.module_doc;
    if (!moduleDoc?.doc?.trim()) score.noModuleDoc.push(file);
    const tags: Json[] = moduleDoc?.tags ?? [];
    if (!tags.some((tag) => tag.kind === "example")) score.noExample.push(file);
    for (const symbol of node.symbols as Json[]) {
      const id = `${file}:${symbol.name}`;
      score.symbols.push(id);
      const documented = (symbol.declarations as Json[]).some((declaration) =>
        Boolean(declaration.jsDoc?.doc?.trim())
      );
      if (!documented) score.undocumented.push(id);
    }
  }
  return score;
}

function documentedShare(score: DocScore): number {
  if (score.symbols.length === 0) return 1;
  return 1 - score.undocumented.length / score.symbols.length;
}

/** `deno publish --dry-run` in `dir`: exit code and output without colour. */
async function publishDryRun(dir: string): Promise<{ code: number; output: string }> {
  const { code, stdout, stderr } = await new Deno.Command(Deno.execPath(), {
    args: ["publish", "--dry-run", "--allow-dirty"],
    cwd: dir,
    env: { NO_COLOR: "1" },
    stdout: "piped",
    stderr: "piped",
  }).output();
  return { code, output: decoder.decode(stdout) + decoder.decode(stderr) };
}

test("jsr score: every entrypoint has a module doc with an @example", async () => {
  const score = await docScore(ROOT);
  assert.deepEqual(entrypoints(ROOT), ["./mod.ts", "./server.ts", "./client.ts"]);
  assert.deepEqual(score.noModuleDoc, [], "entrypoints without a module doc");
  assert.deepEqual(score.noExample, [], "entrypoints without an @example in their module doc");
});

test("jsr score: at least 80% of the exported symbols are documented", async () => {
  const score = await docScore(ROOT);
  const share = documentedShare(score);
  console.log(
    `documented: ${score.symbols.length - score.undocumented.length}/${score.symbols.length} ` +
      `exported symbols (${(share * 100).toFixed(1)}%)`,
  );
  assert.ok(score.symbols.length > 0, "deno doc found no exported symbols");
  assert.ok(
    share >= DOCUMENTED_SHARE,
    `${(share * 100).toFixed(1)}% documented; undocumented: ${score.undocumented.join(", ")}`,
  );
});

test("jsr score: no slow types (deno publish --dry-run passes)", async () => {
  const { code, output } = await publishDryRun(ROOT);
  assert.equal(code, 0, output);
  assert.match(output, /Checking for slow types in the public API/);
  assert.doesNotMatch(output, /error\[/);
  assert.match(output, /Dry run complete/);
});

test("jsr score: a poor package fails every one of these checks", async () => {
  const dir = await Deno.makeTempDir({ prefix: "echo-jsr-score-" });
  try {
    await Deno.writeTextFile(
      `${dir}/deno.json`,
      JSON.stringify({
        name: "@echo/poor",
        version: "0.0.1",
        exports: { ".": "./mod.ts", "./cli": "./cli.ts" },
      }),
    );
    await Deno.writeTextFile(
      `${dir}/mod.ts`,
      [
        "/**",
        " * A module doc, but no example.",
        " *",
        " * @module",
        " */",
        "/** The only documented export. */",
        "export const ONE = 1;",
        "export const slow = [ONE].map((n) => n * 2);",
        "export function twice(n: number) {",
        "  return n * 2;",
        "}",
        "export interface Bare {",
        "  x: number;",
        "}",
        "",
      ].join("\n"),
    );
    await Deno.writeTextFile(`${dir}/cli.ts`, 'console.log("no module doc");\nexport {};\n');
    const score = await docScore(dir);
    assert.deepEqual(score.noModuleDoc, ["./cli.ts"]);
    assert.deepEqual(score.noExample, ["./mod.ts", "./cli.ts"]);
    assert.deepEqual(score.undocumented.sort(), [
      "./mod.ts:Bare",
      "./mod.ts:slow",
      "./mod.ts:twice",
    ]);
    assert.ok(documentedShare(score) < DOCUMENTED_SHARE);
    const { code, output } = await publishDryRun(dir);
    assert.notEqual(code, 0, output);
    assert.match(output, /error\[missing-explicit-type\]/);
    assert.match(output, /error\[missing-explicit-return-type\]/);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
