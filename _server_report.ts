/**
 * What the server CLI prints: an event line per hook call (text or one `--json` object), the
 * refusal lines a flood is summed up into, and the counter summaries. The writers are given, so
 * every line can be tested without a process; the library itself never prints.
 *
 * @module
 */
import { countOf, formatCount, JSON_SCHEMA, type Palette, printable, showBytes } from "./_cli.ts";
import { formatAddress } from "./errors.ts";
import type { EchoStats } from "./stats.ts";
import type {
  EchoAddr,
  EchoHooks,
  ListenInfo,
  RejectInfo,
  ServeWsOptions,
  UnixListenInfo,
} from "./types.ts";
import { describeListener } from "./serve.ts";

/** Where the lines go: `out` is stdout (events), `err` is stderr (notes, warnings). */
export interface ReportWriters {
  /** Writes one line of data (an event). */
  out(line: string): void;
  /** Writes one line of diagnostics. */
  err(line: string): void;
}

/** How the server reports. */
export interface ServerReportOptions {
  /** One JSON object per event line. */
  json?: boolean;
  /** No per-event lines (listening lines and warnings still show). */
  quiet?: boolean;
  /** A line per received chunk or datagram, with its bytes. */
  verbose?: boolean;
  /** Colours of the event lines. */
  colors: Palette;
  /** Colours of the warning lines. */
  errColors: Palette;
  /** The clock stamped on JSON lines. */
  now?: () => Date;
}

/** Refusal lines shown per second for each transport and reason; the rest are summed up. */
export const REJECT_LINES_PER_SECOND = 10;

/**
 * A client's address for messages: `host:port`, or for a Unix socket client its path if named.
 *
 * @example
 * ```ts
 * import { peer } from "./_server_report.ts";
 * console.log(peer({ transport: "tcp", hostname: "::1", port: 9 })); // "[::1]:9"
 * console.log(peer({ transport: "unix", path: "" })); // "unix client"
 * ```
 *
 * @param addr The address.
 * @returns How to show it.
 */
export function peer(addr: Deno.Addr): string {
  if (addr.transport === "tcp" || addr.transport === "udp") return formatAddress(addr);
  return "path" in addr && addr.path ? addr.path : `${addr.transport} client`;
}

/**
 * A listener for the ready line: `tcp 127.0.0.1:5006`, `tls [::1]:5006`, `unix /tmp/echo.sock`,
 * `ws 127.0.0.1:5007 (page: http://127.0.0.1:5007/)` (`wss` and `https` with TLS).
 *
 * @example
 * ```ts
 * import { describeReady } from "./_server_report.ts";
 * console.log(describeReady({ transport: "tcp", hostname: "::1", port: 7, secure: true })); // "tls [::1]:7"
 * console.log(describeReady({ transport: "ws", hostname: "127.0.0.1", port: 8 }));
 * // "ws 127.0.0.1:8 (page: http://127.0.0.1:8/)"
 * ```
 *
 * @param info The listener.
 * @returns How to show it.
 */
export function describeReady(info: ListenInfo | UnixListenInfo): string {
  if (info.transport === "ws") {
    const where = formatAddress(info);
    return info.secure
      ? `wss ${where} (page: https://${where}/)`
      : `ws ${where} (page: http://${where}/)`;
  }
  return info.transport !== "unix" && info.secure
    ? `tls ${formatAddress(info)}`
    : describeListener(info);
}

/**
 * The JSON fields of a payload: `text` when it shows as text, else `hex`.
 *
 * @example
 * ```ts
 * import { payload } from "./_server_report.ts";
 * console.log(payload(new Uint8Array([104, 105]))); // { text: "hi" }
 * ```
 *
 * @param data The bytes.
 * @returns `{ text }` or `{ hex }`.
 */
export function payload(data: Uint8Array): Record<string, string> {
  const text = printable(data);
  return text !== undefined
    ? { text }
    : { hex: Array.from(data, (b) => b.toString(16).padStart(2, "0")).join("") };
}

/**
 * The counters in one line, for `stats:` and `stopped:`.
 *
 * @example
 * ```ts
 * import { summary } from "./_server_report.ts";
 * import { createStats } from "./stats.ts";
 * console.log(summary(createStats())); // "0 TCP sessions, 0 datagrams, 0 bytes in, ..."
console.log(summary({ ...createStats(), sessionsTotal: 1 }, "Unix")); // "1 Unix session, ..."
 * ```
 *
 * @param stats The counters.
 * @param sessions What the stream sessions are: `TCP` (the default), `TLS` or `Unix`.
 * @returns The line.
 */
export function summary(stats: EchoStats, sessions = "TCP"): string {
  const dropped = [
    ...Object.entries(stats.dropped),
    ...Object.entries(stats.proxyRefused ?? {}).map(([reason, n]) =>
      [`proxy ${reason}`, n] as const
    ),
  ].filter(([, n]) => n > 0).map(([reason, n]) => `${reason} ${n}`);
  const counters = stats.impairment;
  const impaired = counters
    ? (["dropped", "duplicated", "reordered", "delayed", "overflow"] as const)
      .filter((what) => counters[what] > 0).map((what) => `${what} ${counters[what]}`)
    : [];
  const ws = stats.ws;
  // The totals count WebSocket sessions too; the TCP figure is what is left of them.
  const streamSessions = stats.sessionsTotal - (ws?.sessionsTotal ?? 0);
  return `${countOf(streamSessions, `${sessions} session`)}, ` +
    `${countOf(stats.datagramsIn, "datagram")}, ${countOf(stats.bytesIn, "byte")} in, ` +
    `${countOf(stats.bytesOut, "byte")} out, ${countOf(stats.errors, "error")}` +
    (dropped.length ? `; refused: ${dropped.join(", ")}` : "") +
    (impaired.length ? `; impairment: ${impaired.join(", ")}` : "") +
    (ws ? `; ws: ${wsSummary(ws)}` : "");
}

/** The WebSocket share of the counters: sessions and messages, then what went wrong, if anything. */
function wsSummary(ws: NonNullable<EchoStats["ws"]>): string {
  const notable = (
    [
      ["too big", ws.tooBig],
      ["not reading", ws.slow],
      ["protocol errors", ws.protocolErrors],
      ["bad handshakes", ws.badRequests],
      ["plain HTTP", ws.upgradeRequired],
      ["viewers refused", ws.viewersRefused],
    ] as const
  ).filter(([, n]) => n > 0).map(([what, n]) => `${what} ${n}`);
  return `${countOf(ws.sessionsTotal, "session")}, ${countOf(ws.messagesIn, "message")} in, ` +
    `${formatCount(ws.messagesOut)} out, ${countOf(ws.pages, "page")}` +
    (notable.length ? ` (${notable.join(", ")})` : "");
}

/**
 * Keeps a flood of refusals (a UDP source over its rate, connections over the cap) from costing a
 * line each. Printing was most of the cost of a refused datagram: a server printing each one got
 * through a quarter of the datagrams a quiet one dropped, which undoes the rate limit's point.
 *
 * @example
 * ```ts
 * import { RejectLines } from "./_server_report.ts";
 * const shown: string[] = [];
 * const lines = new RejectLines((info) => shown.push(info.reason), (_t, _r, n) => shown.push(`+${n}`));
 * for (let i = 0; i < 12; i++) {
 *   lines.add({ transport: "udp", remoteAddr: { transport: "udp", hostname: "::1", port: 9 }, reason: "rate" });
 * }
 * lines.flush();
 * console.log(shown.length); // 11: ten lines, then "+2"
 * ```
 */
export class RejectLines {
  #windows = new Map<string, RejectWindow>();
  #show: (info: RejectInfo<EchoAddr>) => void;
  #summarize: (transport: string, reason: string, count: number) => void;

  /**
   * @param show Prints one refusal.
   * @param summarize Prints how many more of one transport and reason were not shown.
   */
  constructor(
    show: (info: RejectInfo<EchoAddr>) => void,
    summarize: (transport: string, reason: string, count: number) => void,
  ) {
    this.#show = show;
    this.#summarize = summarize;
  }

  /**
   * Shows a refusal, or counts it when its window already showed enough.
   *
   * @param info The refusal.
   */
  add(info: RejectInfo<EchoAddr>): void {
    const key = `${info.transport} ${info.reason}`;
    const now = performance.now();
    let window = this.#windows.get(key);
    if (!window || now - window.start >= 1000) {
      if (window) this.#close(window);
      window = { transport: info.transport, reason: info.reason, start: now, shown: 0, hidden: 0 };
      this.#windows.set(key, window);
    }
    if (window.shown < REJECT_LINES_PER_SECOND) {
      window.shown++;
      this.#show(info);
    } else if (window.hidden++ === 0) {
      const closing = window;
      closing.timer = setTimeout(() => this.#close(closing), closing.start + 1000 - now);
    }
  }

  /** Prints what is held back; at shutdown, before the stopped line. */
  flush(): void {
    for (const window of this.#windows.values()) this.#close(window);
  }

  #close(window: RejectWindow): void {
    clearTimeout(window.timer);
    if (window.hidden > 0) this.#summarize(window.transport, window.reason, window.hidden);
    window.hidden = 0;
  }
}

interface RejectWindow {
  transport: string;
  reason: string;
  start: number;
  shown: number;
  hidden: number;
  timer?: ReturnType<typeof setTimeout>;
}

/**
 * The server's event lines: {@linkcode ServerReport.hooks} are the hooks to give `serveEcho`, and
 * the other methods print what the CLI itself has to say (counters, notices, the last line).
 *
 * @example
 * ```ts
 * import { ServerReport } from "./_server_report.ts";
 * import { paletteFor } from "./_cli.ts";
 * const lines: string[] = [];
 * const colors = paletteFor({ isTerminal: () => false });
 * const report = new ServerReport(
 *   { colors, errColors: colors },
 *   { out: (line) => lines.push(line), err: (line) => lines.push(line) },
 * );
 * report.hooks.onListen!({ transport: "udp", hostname: "127.0.0.1", port: 7 });
 * console.log(lines); // ["listening udp 127.0.0.1:7"]
 * ```
 */
export class ServerReport {
  /** The hooks that print the events (those that are off are absent, so they cost nothing). */
  readonly hooks: EchoHooks<EchoAddr>;
  /** The WebSocket sessions' hooks, for `serveEcho`'s `ws` option (absent ones cost nothing). */
  readonly wsHooks: Pick<ServeWsOptions, "onConnection" | "onMessage" | "onClose">;
  #options: ServerReportOptions;
  #writers: ReportWriters;
  #rejects?: RejectLines;
  /** What the stream sessions are, for the summary: TCP, TLS or Unix (from the listeners). */
  #sessions = "TCP";

  /**
   * @param options JSON or text, how much, colours.
   * @param writers Where the lines go.
   */
  constructor(options: ServerReportOptions, writers: ReportWriters) {
    this.#options = options;
    this.#writers = writers;
    const { quiet, verbose, json, colors } = options;
    const emit = this.emit.bind(this);
    const rejects = quiet ? undefined : new RejectLines(
      ({ transport, remoteAddr, reason, detail }) =>
        emit(
          "reject",
          { transport, remote: peer(remoteAddr), reason, ...(detail ? { detail } : {}) },
          `refused ${transport} ${peer(remoteAddr)}: ${reason}${detail ? ` (${detail})` : ""}`,
        ),
      (transport, reason, count) =>
        emit(
          "suppressed",
          { transport, reason, count },
          `refused ${
            countOf(count, `more ${transport} ${transport === "udp" ? "datagram" : "connection"}`)
          }: ${reason} (not shown one by one; the counters have them)`,
        ),
    );
    this.#rejects = rejects;
    this.hooks = {
      onListen: (info) => {
        if (info.transport === "unix") this.#sessions = "Unix";
        else if (info.transport === "tcp" && info.secure) this.#sessions = "TLS";
        emit(
          "listening",
          { ...info },
          `listening ${describeReady(info)}${
            "impairment" in info && info.impairment ? ` (impaired: ${info.impairment})` : ""
          }`,
        );
        if ("backend" in info && info.backend === "node") {
          writers.err(
            "note: UDP runs on node:dgram; run with --unstable-net to use Deno.listenDatagram",
          );
        }
      },
      onConnection: quiet ? undefined : ({ id, remoteAddr }) =>
        emit(
          "connection",
          { id, remote: peer(remoteAddr) },
          `connection #${id} from ${colors.cyan(peer(remoteAddr))}`,
        ),
      onData: verbose
        ? ({ id, remoteAddr, data }) =>
          emit(
            "data",
            { id, remote: peer(remoteAddr), size: data.length, ...payload(data) },
            `received from ${peer(remoteAddr)} (#${id}): ${showBytes(data)}`,
          )
        : undefined,
      onClose: quiet ? undefined : ({ id, remoteAddr, bytes, duration, reason }) =>
        emit(
          "close",
          { id, remote: peer(remoteAddr), bytes, duration_ms: duration, reason },
          `closed #${id} ${peer(remoteAddr)}: ${countOf(bytes, "byte")} echoed in ${
            duration.toFixed(1)
          }ms (${reason})`,
        ),
      onDatagram: quiet ? undefined : ({ remoteAddr, data }) =>
        emit(
          "datagram",
          {
            remote: formatAddress(remoteAddr),
            size: data.length,
            ...(verbose ? payload(data) : {}),
          },
          verbose
            ? `received from ${formatAddress(remoteAddr)} (udp): ${showBytes(data)}`
            : `datagram from ${colors.cyan(formatAddress(remoteAddr))}: ${
              countOf(data.length, "byte")
            }`,
        ),
      onReject: rejects && ((info) => rejects.add(info)),
      onError: (error) => {
        if (json) emit("error", { message: error.message }, "");
        this.#warn("warning", error.message);
      },
    };
    this.wsHooks = {
      onConnection: quiet ? undefined : ({ id, remoteAddr, path }) =>
        emit(
          "connection",
          { transport: "ws", id, remote: peer(remoteAddr), path },
          `ws connection #${id} from ${colors.cyan(peer(remoteAddr))} (path ${path})`,
        ),
      onMessage: verbose
        ? ({ id, remoteAddr, data, bytes }) => {
          const binary = typeof data !== "string";
          const shown = binary ? new Uint8Array(data) : new TextEncoder().encode(data);
          emit(
            "data",
            {
              transport: "ws",
              id,
              remote: peer(remoteAddr),
              size: bytes,
              type: binary ? "binary" : "text",
              ...(binary ? payload(shown) : { text: data }),
            },
            `received from ${peer(remoteAddr)} (ws #${id}, ${binary ? "binary" : "text"}): ${
              showBytes(shown)
            }`,
          );
        }
        : undefined,
      onClose: quiet
        ? undefined
        : ({ id, remoteAddr, bytes, messages, duration, reason, code, detail }) =>
          emit(
            "close",
            {
              transport: "ws",
              id,
              remote: peer(remoteAddr),
              bytes,
              messages,
              duration_ms: duration,
              reason,
              code,
              ...(detail ? { detail } : {}),
            },
            `ws closed #${id} ${
              peer(remoteAddr)
            }: ${bytes} bytes in ${messages} messages echoed in ${
              duration.toFixed(1)
            }ms (${reason}, ${code}${detail ? ` ${detail}` : ""})`,
          ),
    };
  }

  /**
   * Prints one event: the text line, or with `json` one object with the schema and the time.
   *
   * @param event The event's name (`listening`, `close`, ...).
   * @param fields Its JSON fields.
   * @param text Its text line.
   */
  emit(event: string, fields: Record<string, unknown>, text: string): void {
    if (this.#options.json) {
      const time = this.#options.now?.() ?? new Date();
      this.#writers.out(JSON.stringify({ schema: JSON_SCHEMA, event, time, ...fields }));
    } else this.#writers.out(text);
  }

  /**
   * Prints a notice on stderr: `server.ts: notice: ...`.
   *
   * @param text What to say.
   */
  notice(text: string): void {
    this.#warn("notice", text);
  }

  /**
   * Prints the counters (on SIGUSR2).
   *
   * @param stats The counters.
   */
  stats(stats: EchoStats): void {
    this.emit("stats", { stats }, `stats: ${summary(stats, this.#sessions)}`);
  }

  /**
   * Prints what refusals were held back, then (unless quiet) the last line with the counters.
   *
   * @param stats The final counters.
   */
  stopped(stats: EchoStats): void {
    this.#rejects?.flush();
    // Even quiet: the summary at exit is what a quiet user still wants (as `ping -q` prints it).
    this.emit("stopped", { stats }, `stopped: ${summary(stats, this.#sessions)}`);
  }

  #warn(level: string, text: string): void {
    this.#writers.err(`server.ts: ${this.#options.errColors.yellow(level)}: ${text}`);
  }
}
