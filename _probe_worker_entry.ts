/**
 * The Web Worker side of {@linkcode runProbeWorkers}: runs one share of the lanes with
 * {@linkcode runProbe} and posts back its interval reports and its result as lossless records
 * (histogram snapshots), or the error it failed with.
 *
 * @module
 */
/// <reference lib="deno.worker" />
import { runProbe } from "./probe.ts";
import { probeResultToRecord } from "./probe_result.ts";
import type { ProbeWorkerRequest } from "./_probe_types.ts";

const controller = new AbortController();

self.onmessage = async (event: MessageEvent<ProbeWorkerRequest>) => {
  const message = event.data;
  if (message.type === "abort") {
    controller.abort();
    return;
  }
  try {
    const result = await runProbe({
      ...message.options,
      signal: controller.signal,
      ...(message.intervals
        ? {
          onInterval: (report) =>
            self.postMessage({
              type: "interval",
              report: { ...report, histogram: report.histogram.toSnapshot() },
            }),
        }
        : {}),
    });
    self.postMessage({ type: "result", record: probeResultToRecord(result) });
  } catch (error) {
    const e = error as { name?: string; message?: string; address?: unknown };
    self.postMessage({
      type: "error",
      name: e?.name ?? "Error",
      message: String(e?.message ?? error),
      address: e?.address,
    });
  }
};
