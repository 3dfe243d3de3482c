/**
 * The release pipeline, checked before the first push: both GitHub workflows pass a real workflow
 * validator (and deliberately broken copies do not), they run what the README says, the release
 * gate `.ci/check_tag` accepts only the tag for deno.json's version, and deno.json, both CLIs'
 * `--version` and CHANGELOG.md agree on the version.
 *
 * @module
 */
import assert from "node:assert/strict";
import { parse as parseYaml } from "yaml";
import { ROOT, test } from "./_helpers.ts";

const WORKFLOWS = [".github/workflows/ci.yml", ".github/workflows/publish.yml"] as const;
const VERSION = JSON.parse(await Deno.readTextFile(`${ROOT}deno.json`)).version as string;
const DENO_VERSION = "2.9.6";

/** A workflow validator: the problems it finds in a workflow's YAML text (none when valid). */
interface Validator {
  /** What ran, for the test output. */
  name: string;
  /** The problems, one line each. */
  validate(yaml: string): string[];
}

// deno-lint-ignore no-explicit-any
type Json = any;

/** action-validator's errors, leaves only, as `path: title (detail)` lines. */
function flattenErrors(errors: Json[], into: string[] = []): string[] {
  for (const error of errors) {
    if (Array.isArray(error.states) && error.states.length > 0) {
      for (const state of error.states) flattenErrors(state.errors ?? [], into);
    } else {
      into.push(`${error.path ?? ""}: ${error.title}${error.detail ? ` (${error.detail})` : ""}`);
    }
  }
  return into;
}

/**
 * The fallback when action-validator cannot run: the workflow parses, and its jobs, steps, `needs`
 * and permissions have the shape GitHub requires. Far weaker than the schema; reported as such.
 */
function structuralProblems(yaml: string): string[] {
  let doc: Json;
  try {
    doc = parseYaml(yaml);
  } catch (error) {
    return [`parse error: ${(error as Error).message.split("\n")[0]}`];
  }
  const problems: string[] = [];
  if (typeof doc !== "object" || doc === null) return ["not a mapping"];
  for (const key of Object.keys(doc)) {
    if (
      !["name", "run-name", "on", "permissions", "env", "defaults", "concurrency", "jobs"].includes(
        key,
      )
    ) {
      problems.push(`/: unknown key ${key}`);
    }
  }
  if (!("on" in doc)) problems.push("/: no 'on'");
  const jobs = doc.jobs ?? {};
  if (Object.keys(jobs).length === 0) problems.push("/jobs: none");
  const permissionsOk = (value: Json, path: string) => {
    if (value === undefined || typeof value === "string") return;
    for (const [scope, level] of Object.entries(value)) {
      if (!["read", "write", "none"].includes(level as string)) {
        problems.push(`${path}/${scope}: ${level} is not read, write or none`);
      }
    }
  };
  permissionsOk(doc.permissions, "/permissions");
  const jobKeys = [
    "name",
    "needs",
    "permissions",
    "if",
    "runs-on",
    "environment",
    "concurrency",
    "outputs",
    "env",
    "defaults",
    "steps",
    "timeout-minutes",
    "strategy",
    "continue-on-error",
    "container",
    "services",
    "uses",
    "with",
    "secrets",
  ];
  for (const [id, job] of Object.entries(jobs) as [string, Json][]) {
    for (const key of Object.keys(job)) {
      if (!jobKeys.includes(key)) problems.push(`/jobs/${id}: unknown key ${key}`);
    }
    if (!("uses" in job) && !("runs-on" in job && Array.isArray(job.steps))) {
      problems.push(`/jobs/${id}: needs runs-on and steps, or uses`);
    }
    for (const need of [job.needs ?? []].flat()) {
      if (!(need in jobs)) problems.push(`/jobs/${id}/needs: no job ${need}`);
    }
    permissionsOk(job.permissions, `/jobs/${id}/permissions`);
    for (const [i, step] of (job.steps ?? []).entries()) {
      if (!("run" in step) && !("uses" in step)) {
        problems.push(`/jobs/${id}/steps/${i}: no run or uses`);
      }
    }
  }
  return problems;
}

/** action-validator (its wasm core, `npm:@action-validator/core` as pinned in deno.json: the engine
 * that `npm:@action-validator/cli` wraps), or the fallback. */
async function loadValidator(): Promise<Validator> {
  try {
    const core = await import("@action-validator/core");
    core.validateWorkflow("on: push\njobs: {}\n"); // instantiates the wasm now, not mid-test
    return {
      name: "@action-validator/core 0.6.0 (GitHub's workflow schema)",
      validate: (yaml) => flattenErrors(core.validateWorkflow(yaml).errors),
    };
  } catch (error) {
    const reason = (error as Error).message.split("\n")[0];
    console.log(
      `action-validator could not run (${reason}); FALLBACK: only the structural checks ran`,
    );
    return FALLBACK;
  }
}

const FALLBACK: Validator = {
  name: "structural fallback (not the schema)",
  validate: structuralProblems,
};
const validator = await loadValidator();
/** The validator, and the fallback too so that it is known to work when it is needed. */
const VALIDATORS = validator === FALLBACK ? [FALLBACK] : [validator, FALLBACK];

function read(path: string): string {
  return Deno.readTextFileSync(`${ROOT}${path}`);
}

test("release: both workflows pass the workflow validator", () => {
  for (const { name, validate } of VALIDATORS) {
    for (const path of WORKFLOWS) {
      const problems = validate(read(path));
      assert.deepEqual(problems, [], `${path} (${name}):\n${problems.join("\n")}`);
    }
  }
});

test("release: broken copies of the workflows are rejected", () => {
  // Each mutation is a typo someone could push; the validator must catch every one.
  const mutations: [string, string, string][] = [
    [".github/workflows/ci.yml", "    runs-on: ubuntu-latest", "    runs-onn: ubuntu-latest"],
    [".github/workflows/ci.yml", "    steps:", "    step:"],
    [".github/workflows/ci.yml", "        run: .ci/run", "        runs: .ci/run"],
    [".github/workflows/publish.yml", "id-token: write", "id-token: writ"],
    [".github/workflows/publish.yml", "    needs: test", "    needs: tset"],
    [".github/workflows/publish.yml", "jobs:\n", "jobs:\n  [broken\n"],
  ];
  for (const [path, from, to] of mutations) {
    const original = read(path);
    assert.ok(original.includes(from), `${path} no longer contains ${JSON.stringify(from)}`);
    const broken = original.replace(from, to);
    for (const { name, validate } of VALIDATORS) {
      assert.ok(
        validate(broken).length > 0,
        `${name} accepted ${path} with ${JSON.stringify(from)} -> ${JSON.stringify(to)}`,
      );
    }
  }
});

test("release: ci.yml runs the README's test command, frozen, with a publish dry run", () => {
  const ci = parseYaml(read(".github/workflows/ci.yml"));
  assert.ok("push" in ci.on && "pull_request" in ci.on, "ci.yml runs on push and pull_request");
  assert.ok("workflow_call" in ci.on, "publish.yml reuses ci.yml");
  assert.equal(ci.env.DENO_VERSION, DENO_VERSION);
  const job = ci.jobs.test;
  assert.equal(job["runs-on"], "ubuntu-latest", "README says Linux is what CI tests");
  const steps: Json[] = job.steps;
  const runs = steps.map((step) => String(step.run ?? "")).join("\n");

  const cache = steps.find((step) => String(step.uses).startsWith("actions/cache@"));
  assert.ok(cache, "a cache step");
  assert.match(cache.with.path, /~\/\.cache\/deno/, "caches Deno's cache dir");
  assert.match(cache.with.key, /hashFiles\('deno\.lock'\)/, "keyed on deno.lock");

  assert.match(runs, /npm install .*"deno@\$DENO_VERSION"/, "installs Deno from npm");
  for (const pkg of ["haproxy", "nginx-light", "libnginx-mod-stream", "chromium", "prometheus"]) {
    assert.match(runs, new RegExp(`\\b${pkg}\\b`), `apt-get installs ${pkg}`);
  }
  assert.match(runs, /\bsocat\b/);
  assert.match(runs, /^deno install --frozen --entrypoint /m, "the lock is checked --frozen");
  const config = JSON.parse(read("deno.json"));
  assert.equal(config.lock?.path, "./deno.lock", "deno.json names the lock CI checks");
  assert.match(runs, /^deno publish --dry-run --frozen$/m);
  assert.match(runs, /^\.ci\/run$/m, "runs .ci/run");
  assert.match(read(".ci/run"), /^deno task test /m, ".ci/run runs the README's deno task test");
  assert.match(read("README.md"), /deno task test/);
  assert.match(runs, /git diff --exit-code -- deno\.lock/, "the run may not change deno.lock");
  // The publish dry run refuses a dirty tree, so it must come before the tests write anything.
  const order = (pattern: RegExp) => steps.findIndex((step) => pattern.test(step.run ?? ""));
  assert.ok(order(/deno publish --dry-run/) < order(/\.ci\/run/));
});

test("release: publish.yml publishes tags with provenance after the tests and the tag gate", () => {
  const publish = parseYaml(read(".github/workflows/publish.yml"));
  assert.deepEqual(publish.on, { push: { tags: ["v*"] } });
  assert.equal(publish.jobs.test.uses, "./.github/workflows/ci.yml", "the CI workflow runs first");
  const job = publish.jobs.publish;
  assert.equal(job.needs, "test");
  assert.deepEqual(job.permissions, { contents: "read", "id-token": "write" });
  assert.equal(job.env.DENO_VERSION, DENO_VERSION);
  const runs: string[] = job.steps.map((step: Json) => String(step.run ?? ""));
  const gate = runs.findIndex((run) => run.includes('.ci/check_tag "$GITHUB_REF_NAME"'));
  const release = runs.findIndex((run) => /^deno publish --frozen$/m.test(run));
  assert.ok(gate >= 0 && release > gate, "the tag gate runs before deno publish");
  assert.ok(!runs.some((run) => run.includes("--token")), "OIDC, no stored token");
});

/** Runs `.ci/check_tag` from `root`, with this Deno first on PATH. */
async function checkTag(root: string, args: string[]): Promise<{ code: number; text: string }> {
  const bin = Deno.execPath().replace(/\/[^/]+$/, "");
  const { code, stdout, stderr } = await new Deno.Command(`${root}/.ci/check_tag`, {
    args,
    env: { PATH: `${bin}:${Deno.env.get("PATH") ?? ""}` },
    stdout: "piped",
    stderr: "piped",
  }).output();
  const decoder = new TextDecoder();
  return { code, text: decoder.decode(stdout) + decoder.decode(stderr) };
}

test("release: .ci/check_tag accepts v<deno.json version> only", async () => {
  const ok = await checkTag(ROOT, [`v${VERSION}`]);
  assert.equal(ok.code, 0, ok.text);
  for (const tag of ["v9.9.9", VERSION, `v${VERSION}.1`, `v${VERSION}-rc.1`]) {
    const bad = await checkTag(ROOT, [tag]);
    assert.equal(bad.code, 1, `${tag}: ${bad.text}`);
    assert.match(bad.text, /does not (match|start)/);
  }
  assert.equal((await checkTag(ROOT, [])).code, 2);
});

test("release: .ci/check_tag refuses a version CHANGELOG.md has no section for", async () => {
  const dir = await Deno.makeTempDir({ prefix: "echo-check-tag-" });
  try {
    await Deno.mkdir(`${dir}/.ci`);
    await Deno.copyFile(`${ROOT}.ci/check_tag`, `${dir}/.ci/check_tag`);
    await Deno.chmod(`${dir}/.ci/check_tag`, 0o755);
    await Deno.writeTextFile(`${dir}/deno.json`, JSON.stringify({ version: "9.8.7" }));
    await Deno.copyFile(`${ROOT}CHANGELOG.md`, `${dir}/CHANGELOG.md`);
    const missing = await checkTag(dir, ["v9.8.7"]);
    assert.equal(missing.code, 1, missing.text);
    assert.match(missing.text, /CHANGELOG\.md has no section ## \[9\.8\.7\]/);
    await Deno.writeTextFile(`${dir}/CHANGELOG.md`, "# Changelog\n\n## [9.8.7] - 2027-01-01\n");
    assert.equal((await checkTag(dir, ["v9.8.7"])).code, 0);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

test("release: deno.json, both CLIs' --version and CHANGELOG.md agree", async () => {
  assert.match(VERSION, /^\d+\.\d+\.\d+(-[0-9A-Za-z.-]+)?$/, "deno.json version is semver");
  for (const program of ["server.ts", "client.ts"]) {
    const { code, stdout } = await new Deno.Command(Deno.execPath(), {
      args: ["run", program, "--version"],
      cwd: ROOT,
      stdout: "piped",
      stderr: "null",
    }).output();
    assert.equal(code, 0);
    const line = new TextDecoder().decode(stdout).trim();
    assert.equal(line, `${program} ${VERSION} (deno ${Deno.version.deno})`);
  }
  const changelog = read("CHANGELOG.md");
  const escaped = VERSION.replaceAll(".", "\\.");
  assert.match(changelog, new RegExp(`^## \\[${escaped}\\] - \\d{4}-\\d{2}-\\d{2}$`, "m"));
  assert.match(changelog, /^## \[Unreleased\]$/m, "Keep a Changelog's Unreleased section");
  const sections = [...changelog.matchAll(/^## \[([^\]]+)\]/gm)].map((match) => match[1]);
  assert.equal(sections[0], "Unreleased", "Unreleased comes first");
  assert.equal(sections[1], VERSION, "the newest released section is deno.json's version");
});
