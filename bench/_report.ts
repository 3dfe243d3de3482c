/**
 * The suite's markdown report, rendered from a results file alone (the suite prints it and saves
 * it as `bench/results/DATE.md` next to the JSON it came from).
 *
 * @module
 */
import {
  type BenchMode,
  type Cell,
  fmtMiB,
  fmtRange,
  fmtRate,
  fmtRatio,
  fmtUs,
  median,
  metric,
  MODES,
  type ResultsFile,
  samplesOf,
  summarize,
  type Summary,
  unavailable,
} from "./_results.ts";

/** What each mode means, for the report and the README. */
export const MODE_TITLES: Record<BenchMode, string> = {
  fresh: "fresh server per measurement",
  "long-lived": "long-lived servers (each started once, kept through every cell and run)",
};

/**
 * The one-line description of the run's settings.
 *
 * @example
 * ```ts
 * import { settingsLine } from "./_report.ts";
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
 * console.log(settingsLine(results)); // "5 s measured + 1 s warm-up per cell, 3 interleaved run(s), …"
 * ```
 *
 * @param r The results file.
 * @returns The text.
 */
export function settingsLine(r: ResultsFile): string {
  const s = r.settings;
  const pin = s.pin === "split"
    ? "server pinned to CPU 0, load generator to CPU 1"
    : s.pin === "same"
    ? "server and load generator both pinned to CPU 0"
    : "no CPU pinning";
  const wall = (Date.parse(r.finished) - Date.parse(r.date)) / 1000;
  return `${s.duration} s measured + ${s.warmup} s warm-up per cell, ${s.runs} interleaved ` +
    `run(s), modes: ${s.modes.join(" and ")}; ${pin}${s.busyPoll ? " (generator busy-polls)" : ""}${
      s.settle ? `; settle up to ${s.settle} s before each` : ""
    }; judge: ${r.judge}; wall time ${wall.toFixed(0)} s`;
}

/**
 * The machine and versions in one line each.
 *
 * @example
 * ```ts
 * import { machineLines } from "./_report.ts";
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
 * console.log(machineLines(results)[1]); // "versions: deno 2.9.6, node —, bun —, no cc"
 * ```
 *
 * @param r The results file.
 * @returns Two lines.
 */
export function machineLines(r: ResultsFile): string[] {
  const m = r.machine;
  const v = r.versions;
  return [
    `machine: ${m.nproc} CPUs (${m.cpu}), ${m.memoryGiB} GiB memory, ${m.os}, load ${
      m.loadavg.map((x) => x.toFixed(2)).join(" ")
    } at start`,
    `versions: deno ${v.deno}, node ${v.node ?? "—"}, bun ${v.bun ?? "—"}, ${v.cc ?? "no cc"}`,
  ];
}

/**
 * Renders the markdown report of a run: header (machine, versions, settings, skipped rows, noise),
 * then per mode the throughput, p99, RSS and CPU tables, the 1,000-connection table and the
 * client.ts row, and at the end every error, mismatch, loss and death.
 *
 * @example
 * ```ts
 * import { renderReport } from "./_report.ts";
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
 * console.log(renderReport(results).split("\n")[0]); // "## Echo benchmark — 2026-12-01T00:00:00.000Z"
 * ```
 *
 * @param r The results file.
 * @returns The markdown.
 */
export function renderReport(r: ResultsFile): string {
  const out: string[] = [];
  out.push(`## Echo benchmark — ${r.date}`);
  out.push("");
  if (r.label) out.push(`- **${r.label}**`);
  for (const line of machineLines(r)) out.push(`- ${line}`);
  out.push(`- settings: ${settingsLine(r)}`);
  for (const s of r.servers) if (s.note) out.push(`- **${s.name}: ${s.note}**`);
  for (const s of r.skipped) out.push(`- skipped ${s.row}: ${s.reason}`);
  const measured = r.samples.filter((s) => s.cpu?.otherCores !== undefined);
  const otherMed = median(measured.map((s) => s.cpu!.otherCores!));
  if (otherMed !== null) {
    const otherMax = Math.max(0, ...measured.map((s) => s.cpu!.otherCores!));
    const stealMed = median(measured.map((s) => s.cpu?.stealCores ?? NaN));
    out.push(
      `- noise: other processes used ${otherMed.toFixed(2)} cores (median; max ${
        otherMax.toFixed(2)
      }) during measurements, hypervisor steal ${(stealMed ?? 0).toFixed(2)} cores${
        otherMed > 0.1
          ? " — **the machine was not quiet; treat the figures as rough**"
          : otherMax > 0.25
          ? " — some samples were disturbed (per-sample `cpu.otherCores` in the JSON)"
          : ""
      }`,
    );
  }
  out.push("");
  for (const mode of MODES) {
    if (r.settings.modes.includes(mode)) renderMode(r, mode, out);
  }
  out.push("### Errors, mismatches, losses, deaths");
  out.push("");
  const problems: string[] = [];
  for (const mode of r.settings.modes) {
    for (const cell of r.cells) {
      for (const name of [...r.servers.map((s) => s.name), "client.ts"]) {
        const samples = samplesOf(r, mode, cell.id, name);
        if (!samples.length) continue;
        const where = `${mode} ${cell.id} ${name}`;
        for (const s of samples) {
          const bad = ["errors", "mismatches", "lost"].filter((f) => (s.result?.[f] ?? 0) > 0);
          if (bad.length) {
            problems.push(
              `- ${where} run ${s.run + 1}: ${bad.map((f) => `${f} ${s.result![f]}`).join(", ")}`,
            );
          }
          if (s.died) {
            problems.push(
              `- ${where} run ${s.run + 1}: ${unavailable(summarize([s]))}${
                s.error ? ` — ${s.error}` : ""
              }`,
            );
          } else if (s.error) problems.push(`- ${where} run ${s.run + 1}: failed: ${s.error}`);
        }
      }
    }
  }
  out.push(problems.length ? problems.join("\n") : "none");
  out.push("");
  return out.join("\n");
}

function renderMode(r: ResultsFile, mode: BenchMode, out: string[]): void {
  const names = r.servers.map((s) => s.name);
  const base = names.includes("deno") ? "deno" : null;
  const peers = names.filter((n) => n !== base);
  const summaries = new Map<string, Summary>();
  const get = (cell: Cell, name: string): Summary | undefined => {
    const k = `${cell.id}|${name}`;
    if (!summaries.has(k)) {
      const samples = samplesOf(r, mode, cell.id, name);
      if (samples.length) summaries.set(k, summarize(samples));
    }
    return summaries.get(k);
  };
  out.push(`## ${MODE_TITLES[mode][0].toUpperCase()}${MODE_TITLES[mode].slice(1)}`);
  out.push("");
  const header = ["cell", ...names, ...(base ? peers.map((p) => `${p}/${base}`) : [])];
  const table = (
    title: string,
    note: string,
    value: (cell: Cell, s: Summary) => string,
    raw: (cell: Cell, s: Summary | undefined) => number | null | undefined,
  ) => {
    out.push(`### ${title} — ${mode}`);
    out.push("");
    out.push(note);
    out.push("");
    out.push(`| ${header.join(" | ")} |`);
    out.push(`| ${header.map((_, i) => i === 0 ? "---" : "---:").join(" | ")} |`);
    for (const cell of r.cells) {
      const row = [cell.id];
      for (const n of names) {
        const s = get(cell, n);
        row.push(unavailable(s) ?? value(cell, s!));
      }
      if (base) {
        for (const p of peers) {
          const ok = (s: Summary | undefined) => unavailable(s) === null ? raw(cell, s) : null;
          row.push(fmtRatio(ok(get(cell, p)), ok(get(cell, base))));
        }
      }
      out.push(`| ${row.join(" | ")} |`);
    }
    out.push("");
  };
  const ratio = `Ratio = peer ÷ ${base ?? "ours"}`;
  table(
    "Throughput (median requests/s, min–max across runs; MB/s for stream)",
    `${ratio} (medians): above 1 the peer is faster.`,
    (cell, s) => fmtRange(s.fields[metric(cell)], (v) => fmtRate(cell, v)),
    (cell, s) => s?.fields[metric(cell)]?.median,
  );
  table(
    "p99 latency (median across runs)",
    `${ratio}: below 1 the peer's tail is shorter.`,
    (_cell, s) => fmtUs(s.fields.p99_us?.median),
    (_cell, s) => s?.fields.p99_us?.median,
  );
  table(
    mode === "fresh"
      ? "Peak server RSS (MiB, VmHWM, median across runs)"
      : "Peak server RSS since it started (MiB, VmHWM, median across runs; earlier cells included)",
    `${ratio}: below 1 the peer uses less memory.`,
    (_cell, s) => fmtMiB(s.rssKiB?.median),
    (_cell, s) => s?.rssKiB?.median,
  );
  table(
    "Server CPU per request (µs; stream: per 64 KiB chunk)",
    `Server CPU seconds ÷ requests: the cost that holds when wake-ups are slow or the machine is ` +
      `shared. ${ratio}: below 1 the peer is cheaper.`,
    (_cell, s) => fmtUs(s.cpu.serverUsPerRequest?.median),
    (_cell, s) => s?.cpu.serverUsPerRequest?.median,
  );

  const many = r.cells.find((c) => c.connections >= 1000);
  if (many) {
    out.push(`### ${many.connections} connections (${many.id}) — ${mode}`);
    out.push("");
    out.push(
      "Served = connections with at least one reply in the measured window (fairness). " +
        "“All connected after” near 1,000 ms means the accept queue overflowed and " +
        "clients waited for a SYN retransmission.",
    );
    out.push("");
    out.push(
      "| server | req/s | p50 | p99 | p99.9 | max | connections served | connected | " +
        "all connected after | min–max req per conn |",
    );
    out.push("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |");
    for (const n of names) {
      const s = get(many, n);
      const why = unavailable(s);
      if (why !== null) {
        out.push(`| ${n} | ${why} | | | | | | | | |`);
        continue;
      }
      const f = s!.fields;
      const md = (k: string) => f[k]?.median;
      out.push(
        `| ${n} | ${fmtRate(many, md("rps"))} | ${fmtUs(md("p50_us"))} | ${fmtUs(md("p99_us"))} | ${
          fmtUs(md("p999_us"))
        } | ${fmtUs(md("max_us"))} | ${md("connections_served") ?? "—"}/${many.connections} | ${
          md("connected") ?? "—"
        } | ${md("connect_ms") === undefined ? "—" : `${md("connect_ms")!.toFixed(0)} ms`} | ${
          md("min_conn_requests") ?? "—"
        }–${md("max_conn_requests") ?? "—"} |`,
      );
    }
    out.push("");
  }

  if (r.clientRow) {
    out.push(`### client.ts (our generator) vs C server — ${mode}`);
    out.push("");
    out.push("Ratio = client.ts ÷ loadgen against the same C server: how much our client limits.");
    out.push("");
    out.push("| cell | loadgen → c | client.ts → c | p99 client.ts | client.ts/loadgen |");
    out.push("| --- | ---: | ---: | ---: | ---: |");
    for (const cell of r.cells) {
      const c = get(cell, "c");
      const cl = get(cell, "client.ts");
      const mk = metric(cell);
      const clWhy = unavailable(cl);
      out.push(
        `| ${cell.id} | ${unavailable(c) ?? fmtRange(c!.fields[mk], (v) => fmtRate(cell, v))} | ${
          clWhy ?? fmtRange(cl!.fields[mk], (v) => fmtRate(cell, v))
        } | ${clWhy ? "—" : fmtUs(cl!.fields.p99_us?.median)} | ${
          fmtRatio(
            clWhy ? null : cl!.fields[mk]?.median,
            unavailable(c) ? null : c!.fields[mk]?.median,
          )
        } |`,
      );
    }
    out.push("");
  }
}
