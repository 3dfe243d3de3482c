/**
 * Renders the README's performance table from one committed results file, and rewrites the
 * README section between `<!-- bench:start FILE -->` and `<!-- bench:end -->` with it. No figure
 * in that section is typed by hand; `readme_table_test.ts` checks it matches the file it names.
 *
 * ```sh
 * deno run -A bench/readme_table.ts bench/results/DATE.json   # rewrite README.md's section
 * deno run -A bench/readme_table.ts --check                   # exit 1 if the section is stale
 * deno run -A bench/readme_table.ts --print bench/results/DATE.json
 * ```
 *
 * @module
 */
import { parseArgs } from "node:util";
import { MODE_TITLES, settingsLine } from "./_report.ts";
import {
  type BenchMode,
  type Cell,
  fmtMiB,
  fmtRange,
  fmtRate,
  fmtUs,
  metric,
  MODES,
  type ResultsFile,
  type Sample,
  samplesOf,
  type Stat,
  stat,
  summarize,
  unavailable,
} from "./_results.ts";

/** The marker that opens the generated section; the results file follows it. */
export const START = "<!-- bench:start";
/** The marker that closes it. */
export const END = "<!-- bench:end -->";

const REPO_DIR = new URL("..", import.meta.url).pathname.replace(/\/$/, "");

/** Column titles for the server names, in column order after ours. */
const PEERS: readonly [string, string][] = [
  ["bun", "Bun"],
  ["node", "Node"],
  ["c", "C"],
  ["naive", "naive Deno"],
];

/**
 * The README name of a cell: `TCP 64 B × 1,000`, `TCP stream × 4`.
 *
 * @example
 * ```ts
 * import { cellLabel } from "./readme_table.ts";
 * console.log(cellLabel({ proto: "udp", mode: "rr", size: 1024, connections: 16 })); // "UDP 1 KiB × 16"
 * ```
 *
 * @param cell The cell.
 * @returns Its label.
 */
export function cellLabel(cell: Pick<Cell, "proto" | "mode" | "size" | "connections">): string {
  const size = cell.size >= 1024 && cell.size % 1024 === 0
    ? `${cell.size / 1024} KiB`
    : `${cell.size} B`;
  return `${cell.proto.toUpperCase()} ${cell.mode === "stream" ? "stream" : size} × ${
    cell.connections.toLocaleString("en-US")
  }`;
}

/**
 * The per-run ratios `ours ÷ peer` of one figure (runs where both measured a live server), as
 * median and min–max.
 */
function ratioStat(
  ours: Sample[],
  peer: Sample[],
  value: (s: Sample) => number | undefined,
): Stat | null {
  const ok = (s: Sample | undefined) => s && s.result && !s.died && !s.error ? value(s) : undefined;
  return stat(ours.map((o) => {
    const a = ok(o);
    const b = ok(peer.find((p) => p.run === o.run));
    return a !== undefined && b !== undefined && b !== 0 ? a / b : undefined;
  }));
}

const x = (v: number) => `${v.toFixed(2)}×`;

/** A markdown table from a header and rows (first column left, the rest right-aligned). */
function table(header: string[], rows: string[][]): string[] {
  return [
    `| ${header.join(" | ")} |`,
    `| ${header.map((_, i) => i === 0 ? "---" : "---:").join(" | ")} |`,
    ...rows.map((r) => `| ${r.join(" | ")} |`),
  ];
}

function modeTables(r: ResultsFile, mode: BenchMode, out: string[]): void {
  const names = r.servers.map((s) => s.name);
  const peers = PEERS.filter(([n]) => names.includes(n) && n !== "deno");
  const hasOurs = names.includes("deno");
  const cols: [string, string][] = [
    ...(hasOurs ? [["deno", "ours"] as [string, string]] : []),
    ...peers,
  ];
  const fig = (cell: Cell, name: string, f: (s: ReturnType<typeof summarize>) => string) => {
    const samples = samplesOf(r, mode, cell.id, name);
    const s = samples.length ? summarize(samples) : undefined;
    return unavailable(s) ?? f(s!);
  };

  out.push(`#### Throughput — ${MODE_TITLES[mode]}`);
  out.push("");
  const rows = r.cells.map((cell) => {
    const mk = metric(cell);
    const row = [cellLabel(cell)];
    for (const [n] of cols) {
      row.push(fig(cell, n, (s) => fmtRange(s.fields[mk], (v) => fmtRate(cell, v))));
    }
    if (hasOurs) {
      const ours = samplesOf(r, mode, cell.id, "deno");
      for (const [n] of peers) {
        const ratio = ratioStat(ours, samplesOf(r, mode, cell.id, n), (s) => s.result![mk]);
        row.push(fmtRange(ratio, x));
      }
    }
    return row;
  });
  out.push(
    ...table([
      "cell",
      ...cols.map(([, t]) => t),
      ...(hasOurs ? peers.map(([, t]) => `ours / ${t}`) : []),
    ], rows),
  );
  out.push("");

  const many = r.cells.find((c) => c.connections >= 1000);
  if (many) {
    out.push(
      `#### ${many.connections.toLocaleString("en-US")} connections (${cellLabel(many)}) — ${
        MODE_TITLES[mode]
      }`,
    );
    out.push("");
    const perRun = (name: string, f: (s: Sample) => number | undefined) =>
      stat(
        samplesOf(r, mode, many.id, name).filter((s) => s.result && !s.died && !s.error).map(f),
      );
    const line = (title: string, f: (name: string) => string) => [
      title,
      ...cols.map(([n]) => fig(many, n, () => f(n))),
    ];
    const fairness = (s: Sample) =>
      s.result!.max_conn_requests ? s.result!.min_conn_requests / s.result!.max_conn_requests : 0;
    out.push(...table(["figure", ...cols.map(([, t]) => t)], [
      line("p99 latency", (n) => fmtRange(perRun(n, (s) => s.result!.p99_us), fmtUs)),
      line(
        "peak RSS (MiB)",
        (n) => fmtRange(perRun(n, (s) => s.rssKiB ?? undefined), fmtMiB),
      ),
      line(
        "connections served",
        (n) => fmtRange(perRun(n, (s) => s.result!.connections_served), (v) => `${v}`),
      ),
      line(
        "min ÷ max requests per connection",
        (n) => fmtRange(perRun(n, fairness), (v) => v.toFixed(2)),
      ),
    ]));
    out.push("");
  }

  if (r.clientRow) {
    out.push(`#### Our client against the native generator (both on the C server) — ${mode}`);
    out.push("");
    const crow = r.cells.map((cell) => {
      const mk = metric(cell);
      const ratio = ratioStat(
        samplesOf(r, mode, cell.id, "client.ts"),
        samplesOf(r, mode, cell.id, "c"),
        (s) => s.result![mk],
      );
      return [
        cellLabel(cell),
        fig(cell, "c", (s) => fmtRange(s.fields[mk], (v) => fmtRate(cell, v))),
        fig(cell, "client.ts", (s) => fmtRange(s.fields[mk], (v) => fmtRate(cell, v))),
        fmtRange(ratio, x),
      ];
    });
    out.push(...table(["cell", "loadgen → C", "client.ts → C", "client.ts / loadgen"], crow));
    out.push("");
  }
}

/**
 * Renders the README section (without its markers) from a results file.
 *
 * @example
 * ```ts
 * import { renderReadmeTable } from "./readme_table.ts";
 * import type { ResultsFile } from "./_results.ts";
 * const results: ResultsFile = {
 *   format: "echo-bench-results/2",
 *   label: null,
 *   date: "2026-12-01T00:00:00.000Z",
 *   finished: "2026-12-01T00:01:00.000Z",
 *   machine: { nproc: 2, memoryGiB: 4, cpu: "x", os: "linux", loadavg: [0, 0, 0] },
 *   versions: { deno: "2.9.6", node: null, bun: null, cc: null },
 *   settings: { duration: 5, warmup: 1, runs: 3, pin: "none", busyPoll: false, settle: 0, modes: ["fresh"] },
 *   judge: "loadgen (C)",
 *   cells: [],
 *   servers: [],
 *   skipped: [],
 *   clientRow: false,
 *   samples: [],
 * };
 * console.log(renderReadmeTable(results, "bench/results/x.json").split("\n")[0]);
 * ```
 *
 * @param r The results file's contents.
 * @param file Its path relative to the repository root (linked from the section).
 * @returns The markdown.
 */
export function renderReadmeTable(r: ResultsFile, file: string): string {
  const out: string[] = [];
  const md = file.replace(/\.json$/, ".md");
  out.push(
    `Generated by \`bench/readme_table.ts\` from [\`${file}\`](${file}) (its report: ` +
      `[\`${md}\`](${md})); do not edit by hand.`,
  );
  out.push("");
  if (r.label) out.push(`**${r.label}**`, "");
  const s = r.settings;
  if (s.runs < 3 || s.duration < 5) {
    out.push(
      `**Short run (${s.runs} run(s) of ${s.duration} s): it shows the harness works; its ` +
        `figures are not a measurement to quote.**`,
      "",
    );
  }
  const m = r.machine;
  const v = r.versions;
  out.push(
    `Run of ${r.date.slice(0, 10)}: Deno ${v.deno}, Node ${v.node ?? "—"}, Bun ${
      v.bun ?? "—"
    }; ${m.nproc} CPUs (${m.cpu}), ${m.memoryGiB} GiB, ${m.os}. ${settingsLine(r)}.`,
  );
  out.push("");
  out.push(
    "Each figure is the median across runs with its min–max in brackets. A ratio is ours ÷ " +
      "the peer's figure in the same run, median (min–max) across runs: above 1 ours is " +
      "faster. _naive Deno_ is `bench/peers/naive_deno.ts`: one read/write loop per " +
      "connection and one receive/send loop for UDP on the same Deno, the floor any design " +
      "must clear. A server that died shows how it died, never a rate.",
  );
  out.push("");
  for (const sk of r.skipped) out.push(`- skipped ${sk.row}: ${sk.reason}`);
  if (r.skipped.length) out.push("");
  for (const mode of MODES) if (s.modes.includes(mode)) modeTables(r, mode, out);
  return out.join("\n").trimEnd();
}

/** The README section: the results file it names and where it sits. */
export interface ReadmeSection {
  /** The results file named in the start marker, relative to the repository root. */
  file: string;
  /** The text between the markers, without the blank lines next to them. */
  body: string;
  /** Offset of the start marker. */
  start: number;
  /** Offset just past the end marker. */
  end: number;
}

/**
 * Finds the generated section in a README.
 *
 * @example
 * ```ts
 * import { findSection } from "./readme_table.ts";
 * const text = "a\n<!-- bench:start bench/results/x.json -->\nT\n<!-- bench:end -->\n";
 * console.log(findSection(text)?.file, findSection(text)?.body); // "bench/results/x.json" "T"
 * ```
 *
 * @param readme The README text.
 * @returns The section, or null when the markers are missing.
 */
export function findSection(readme: string): ReadmeSection | null {
  const open = /<!-- bench:start (\S+) -->/.exec(readme);
  if (!open) return null;
  const close = readme.indexOf(END, open.index + open[0].length);
  if (close < 0) return null;
  return {
    file: open[1],
    body: readme.slice(open.index + open[0].length, close).trim(),
    start: open.index,
    end: close + END.length,
  };
}

/**
 * Compares two renderings as markdown, ignoring what `deno fmt` changes: line wrapping of
 * paragraphs, the padding of table cells and the length of separator dashes.
 *
 * @example
 * ```ts
 * import { sameMarkdown } from "./readme_table.ts";
 * console.log(sameMarkdown("| a  | b |\n| --- | ---: |", "| a | b |\n| - | -: |")); // true
 * console.log(sameMarkdown("| a | 1.2k |", "| a | 1.3k |")); // false
 * ```
 *
 * @param a One text.
 * @param b The other.
 * @returns Whether they are the same markdown.
 */
export function sameMarkdown(a: string, b: string): boolean {
  const norm = (t: string) => t.replace(/-{2,}/g, "-").replace(/\s+/g, " ").trim();
  return norm(a) === norm(b);
}

/**
 * Replaces the section (markers included) with a rendering of `file`.
 *
 * @example
 * ```ts
 * import { replaceSection } from "./readme_table.ts";
 * const text = "a\n<!-- bench:start old.json -->\nT\n<!-- bench:end -->\nb\n";
 * console.log(replaceSection(text, "new.json", "U"));
 * ```
 *
 * @param readme The README text.
 * @param file The results file the new body comes from.
 * @param body The new body.
 * @returns The new README text.
 * @throws {Error} When the markers are missing.
 */
export function replaceSection(readme: string, file: string, body: string): string {
  const section = findSection(readme);
  if (!section) throw new Error(`README has no "${START} FILE -->" … "${END}" section`);
  return `${readme.slice(0, section.start)}${START} ${file} -->\n\n${body}\n\n${END}${
    readme.slice(section.end)
  }`;
}

async function cli(argv: string[]): Promise<number> {
  const { values, positionals } = parseArgs({
    args: argv,
    options: {
      check: { type: "boolean", default: false },
      print: { type: "boolean", default: false },
      readme: { type: "string", default: `${REPO_DIR}/README.md` },
      help: { type: "boolean", short: "h", default: false },
    },
    allowPositionals: true,
  });
  if (values.help || positionals.length > 1) {
    console.log(
      "usage: deno run -A bench/readme_table.ts [--check | --print] [--readme README.md] " +
        "[bench/results/DATE.json]",
    );
    return values.help ? 0 : 2;
  }
  const readme = await Deno.readTextFile(values.readme!);
  const section = findSection(readme);
  const file = positionals[0]?.replace(`${REPO_DIR}/`, "") ?? section?.file;
  if (!file) {
    console.error(`readme_table: no results file given and ${values.readme} names none`);
    return 2;
  }
  const results: ResultsFile = JSON.parse(await Deno.readTextFile(`${REPO_DIR}/${file}`));
  const body = renderReadmeTable(results, file);
  if (values.print) {
    console.log(body);
    return 0;
  }
  if (values.check) {
    const ok = section !== null && section.file === file && sameMarkdown(section.body, body);
    console.error(ok ? "readme_table: README matches" : `readme_table: README is stale (${file})`);
    return ok ? 0 : 1;
  }
  await Deno.writeTextFile(values.readme!, replaceSection(readme, file, body));
  const fmt = await new Deno.Command(Deno.execPath(), { args: ["fmt", values.readme!] }).output();
  console.error(`readme_table: wrote ${values.readme} from ${file}`);
  return fmt.code;
}

if (import.meta.main) {
  Deno.exit(await cli(Deno.args));
}
