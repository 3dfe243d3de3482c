/**
 * The module's shape, checked from `deno info --json`: no import cycle among the project's files
 * (code or type imports), and the floor-0 files import nothing of the project but each other's
 * types, so the shared vocabulary stays at the bottom of the graph.
 *
 * @module
 */
import assert from "node:assert/strict";
import { test } from "./_helpers.ts";

const ROOT = new URL("../", import.meta.url);

interface InfoModule {
  specifier: string;
  dependencies?: {
    code?: { specifier?: string };
    type?: { specifier?: string };
  }[];
}

/** The project's import graph from an entry: file (relative to the root) -> files it imports. */
async function graph(entry: string): Promise<Map<string, Set<string>>> {
  const { code, stdout, stderr } = await new Deno.Command(Deno.execPath(), {
    args: ["info", "--json", entry],
    cwd: ROOT,
    stdout: "piped",
    stderr: "piped",
  }).output();
  assert.equal(code, 0, new TextDecoder().decode(stderr));
  const info = JSON.parse(new TextDecoder().decode(stdout)) as { modules: InfoModule[] };
  const local = (specifier: string | undefined) =>
    specifier?.startsWith(ROOT.href) ? specifier.slice(ROOT.href.length) : undefined;
  const edges = new Map<string, Set<string>>();
  for (const module of info.modules) {
    const from = local(module.specifier);
    if (from === undefined) continue;
    const to = new Set<string>();
    for (const dependency of module.dependencies ?? []) {
      for (const target of [dependency.code?.specifier, dependency.type?.specifier]) {
        const file = local(target);
        if (file !== undefined && file !== "deno.json") to.add(file);
      }
    }
    edges.set(from, to);
  }
  return edges;
}

/** The first cycle found, as a path `a -> b -> a`, or undefined. */
function findCycle(edges: Map<string, Set<string>>): string[] | undefined {
  const state = new Map<string, "open" | "done">();
  const path: string[] = [];
  const visit = (file: string): string[] | undefined => {
    if (state.get(file) === "done") return undefined;
    if (state.get(file) === "open") return [...path.slice(path.indexOf(file)), file];
    state.set(file, "open");
    path.push(file);
    for (const next of edges.get(file) ?? []) {
      const cycle = visit(next);
      if (cycle) return cycle;
    }
    path.pop();
    state.set(file, "done");
    return undefined;
  };
  for (const file of edges.keys()) {
    const cycle = visit(file);
    if (cycle) return cycle;
  }
  return undefined;
}

for (const entry of ["mod.ts", "server.ts", "client.ts"]) {
  test(`architecture: no import cycle among the project's files from ${entry}`, async () => {
    const edges = await graph(entry);
    assert.ok(edges.size > 3, `deno info found only ${[...edges.keys()]}`);
    const cycle = findCycle(edges);
    assert.equal(cycle, undefined, `import cycle: ${cycle?.join(" -> ")}`);
  });
}

test("architecture: the floor-0 files import only each other", async () => {
  const edges = await graph("mod.ts");
  const floor0: Record<string, readonly string[]> = {
    "types.ts": ["errors.ts", "stats.ts"],
    "errors.ts": [],
    "stats.ts": [],
    "_udp_backend.ts": [],
  };
  for (const [file, allowed] of Object.entries(floor0)) {
    assert.ok(edges.has(file), `${file} is not in the graph of mod.ts`);
    const extra = [...edges.get(file)!].filter((to) => !allowed.includes(to));
    assert.deepEqual(extra, [], `${file} imports ${extra.join(", ")}`);
  }
});

test("architecture: findCycle finds a cycle when there is one", () => {
  const edges = new Map([
    ["a.ts", new Set(["b.ts"])],
    ["b.ts", new Set(["c.ts"])],
    ["c.ts", new Set(["a.ts"])],
  ]);
  assert.deepEqual(findCycle(edges), ["a.ts", "b.ts", "c.ts", "a.ts"]);
  assert.equal(findCycle(new Map([["a.ts", new Set(["b.ts"])]])), undefined);
});
