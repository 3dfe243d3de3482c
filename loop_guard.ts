/**
 * The UDP loop and reflection guard: decides, from a datagram's source address and port alone,
 * whether an echo reply may be sent.
 *
 * UDP sources are not verified, so anyone can send a datagram whose source is another host's
 * service port. Echoing it makes this server talk to that service; if the service answers any
 * datagram (echo, chargen, daytime...), the two answer each other forever, and if it answers
 * with more than it got (DNS, NTP, memcached...), this server becomes a step in a reflection
 * attack. BSD inetd refuses such datagrams in its built-in UDP services:
 *
 * - FreeBSD `check_loop()` refuses a source port equal to the port of any built-in datagram
 *   service that is enabled (echo, discard, daytime, chargen, time).
 * - NetBSD `port_good_dg()` refuses source ports 7, 9, 13, 19 and 37, and multicast,
 *   `0.0.0.0/8`, `127.0.0.0/8`, `255.0.0.0/8` and interface broadcast sources.
 * - OpenBSD `dg_badinput()` refuses every source port below 1024 and NFS 2049, multicast and
 *   unspecified sources, and interface broadcast addresses.
 *
 * {@linkcode LoopGuard} follows them with one deliberate difference: loopback sources are
 * answered (NetBSD refuses them), since local clients and this project's tests use them and the
 * kernel already drops loopback sources arriving from other interfaces. Only the limited
 * broadcast `255.255.255.255` is recognised: subnet-directed broadcasts depend on interface
 * netmasks, which this transport-agnostic module does not know (Linux drops datagrams with a
 * broadcast, multicast or `0.0.0.0/8` source as martians anyway: these checks are a second line).
 *
 * The guard is for datagrams only: a TCP peer has completed a handshake, so its address is real.
 *
 * @example
 * ```ts
 * import { LoopGuard } from "./loop_guard.ts";
 *
 * const guard = new LoopGuard({ localPort: 7 });
 * console.log(guard.check("192.0.2.1", 40000)); // undefined: answer it
 * console.log(guard.check("192.0.2.1", 19)); // "blocked-port": chargen would loop with us
 * console.log(guard.check("::ffff:224.0.0.1", 40000)); // "multicast"
 * ```
 *
 * @module
 */

import { classifyAddress } from "./cidr.ts";
import type { BounceDetectorOptions, LoopGuardOptions } from "./types.ts";
export type { BounceDetectorOptions, LoopGuardOptions } from "./types.ts";

/**
 * Source ports refused by default. A port is listed when the service usually found there
 * answers datagrams it did not ask for (so echoing to it loops or reflects) and no genuine
 * client would send from it. Every port is below 10000, outside the ephemeral ranges that
 * operating systems pick client ports from (Linux 32768-60999, Windows and macOS 49152-65535,
 * FreeBSD 10000-65535), except memcached 11211, whose amplification factor (10,000x and more)
 * outweighs the 1-in-55,536 chance that a FreeBSD client draws it as its source port.
 *
 * | port  | service              | why                                                            |
 * | ----- | -------------------- | -------------------------------------------------------------- |
 * | 7     | echo (RFC 862)       | echoes all: two echo servers bounce a datagram forever         |
 * | 9     | discard (RFC 863)    | answers nothing, and no client sends from it (BSD lists it)    |
 * | 11    | systat (RFC 866)     | answers any datagram with the user list                        |
 * | 13    | daytime (RFC 867)    | answers any datagram                                           |
 * | 17    | qotd (RFC 865)       | answers any datagram, up to 512 bytes (a listed amplifier)     |
 * | 19    | chargen (RFC 864)    | answers any datagram, 0-512 bytes: the classic echo loop       |
 * | 37    | time (RFC 868)       | answers any datagram                                           |
 * | 53    | DNS                  | amplifier; clients query from random ports, never from 53      |
 * | 69    | TFTP                 | answers bad requests with errors; a listed amplifier           |
 * | 111   | portmap / rpcbind    | amplifier                                                      |
 * | 123   | NTP                  | amplifier (mode 7 `monlist` up to 556x)                        |
 * | 137   | NetBIOS name         | amplifier                                                      |
 * | 161   | SNMP                 | amplifier (GetBulk)                                            |
 * | 389   | CLDAP                | amplifier (tens of times)                                      |
 * | 427   | SLP                  | amplifier (CVE-2023-29552)                                     |
 * | 520   | RIPv1                | amplifier                                                      |
 * | 1900  | SSDP                 | amplifier (M-SEARCH)                                           |
 * | 2049  | NFS                  | answers RPCs; refused by OpenBSD inetd                         |
 * | 3283  | Apple Remote Desktop | amplifier                                                      |
 * | 3702  | WS-Discovery         | amplifier                                                      |
 * | 5353  | mDNS                 | amplifier                                                      |
 * | 5683  | CoAP                 | amplifier                                                      |
 * | 11211 | memcached            | amplifier (up to tens of thousands of times)                   |
 *
 * "Amplifier" means a service named in the US-CERT alert TA14-017A on UDP-based amplification
 * or a later report of the same kind. Port 0 is always refused, as `"port-zero"`, whatever the
 * list: no reply can be addressed to it.
 *
 * @example
 * ```ts
 * import { DEFAULT_BLOCKED_PORTS, LoopGuard } from "./loop_guard.ts";
 *
 * // Add a site-specific port to the defaults.
 * const guard = new LoopGuard({ blockedPorts: [...DEFAULT_BLOCKED_PORTS, 4500] });
 * console.log(guard.check("192.0.2.1", 4500)); // "blocked-port"
 * ```
 */
export const DEFAULT_BLOCKED_PORTS: readonly number[] = Object.freeze([
  7,
  9,
  11,
  13,
  17,
  19,
  37,
  53,
  69,
  111,
  123,
  137,
  161,
  389,
  427,
  520,
  1900,
  2049,
  3283,
  3702,
  5353,
  5683,
  11211,
]);

/**
 * Why a datagram is dropped, or `undefined` when it may be answered.
 *
 * - `"port-zero"`: the source port is 0, which no reply can be sent to.
 * - `"blocked-port"`: the source port is in the blocked list, or is this server's own port.
 * - `"broadcast"`: the source is `255.255.255.255` (or its IPv4-mapped form).
 * - `"multicast"`: the source is in `224.0.0.0/4` or `ff00::/8` (or a mapped form).
 * - `"unspecified"`: the source is `0.0.0.0/8` or `::`, which no reply can reach.
 */
export type LoopGuardVerdict =
  | undefined
  | "port-zero"
  | "blocked-port"
  | "broadcast"
  | "multicast"
  | "unspecified";

function checkPort(port: number, what: string): number {
  if (typeof port !== "number" || !Number.isInteger(port) || port < 0 || port > 65535) {
    throw new RangeError(`invalid ${what} ${String(port)}: expected an integer 0-65535`);
  }
  return port;
}

/**
 * The per-datagram guard. Construct it once per UDP listener; {@linkcode LoopGuard.check}
 * allocates nothing: a 64 KiB port table lookup, then an allocation-free address scan.
 *
 * @example
 * ```ts
 * import { LoopGuard } from "./loop_guard.ts";
 *
 * const guard = new LoopGuard();
 * for (const [host, port] of [["::ffff:198.51.100.7", 51000], ["198.51.100.7", 0]] as const) {
 *   const verdict = guard.check(host, port);
 *   console.log(verdict === undefined ? "echo" : `drop (${verdict})`);
 * }
 * ```
 */
export class LoopGuard {
  /** 1 at each refused source port. */
  readonly #blocked = new Uint8Array(65536);

  /**
   * Builds the port table: the blocked list (the defaults unless given) plus the local port.
   *
   * @param options Which source ports to refuse; see {@linkcode LoopGuardOptions}.
   * @throws {RangeError} When a port is not an integer 0-65535.
   */
  constructor(options: LoopGuardOptions = {}) {
    for (const port of options.blockedPorts ?? DEFAULT_BLOCKED_PORTS) {
      this.#blocked[checkPort(port, "blocked port")] = 1;
    }
    if (options.localPort !== undefined) {
      this.#blocked[checkPort(options.localPort, "local port")] = 1;
    }
    this.#blocked[0] = 0; // reported as "port-zero" instead
  }

  /** The refused source ports (blocked list plus the local port), ascending; 0 is implied. */
  get blockedPorts(): readonly number[] {
    const ports: number[] = [];
    for (let port = 1; port < 65536; port++) if (this.#blocked[port] === 1) ports.push(port);
    return ports;
  }

  /**
   * Decides whether a datagram from `hostname`:`port` may be answered.
   *
   * @param hostname The source address as the socket reports it (`192.0.2.1`,
   * `::ffff:192.0.2.1`, `2001:db8::1`, optionally with a `%zone`).
   * @param port The source port.
   * @returns `undefined` to answer, or the reason to drop it silently.
   * @throws {RangeError} When `port` is not an integer 0-65535.
   * @throws {TypeError} When `hostname` is not an IP literal (sockets never report one).
   */
  check(hostname: string, port: number): LoopGuardVerdict {
    if ((port & 0xffff) !== port) checkPort(port, "source port");
    if (port === 0) return "port-zero";
    if (this.#blocked[port] === 1) return "blocked-port";
    switch (classifyAddress(hostname)) {
      case "unicast":
      case "loopback":
        return undefined;
      case "broadcast":
        return "broadcast";
      case "multicast":
        return "multicast";
      case "unspecified":
        return "unspecified";
      default:
        throw new TypeError(
          `invalid source address ${JSON.stringify(hostname)}: not an IPv4 or IPv6 address`,
        );
    }
  }
}

// ---------------------------------------------------------------------------------------------

/**
 * Default {@linkcode BounceDetectorOptions.bounces}: 64. Two echo services bouncing one
 * datagram on loopback reach it in under 2 ms; a genuine client would have to send the very same
 * bytes 64 times in a row, each within the window of the last, from the same port.
 *
 * @example
 * ```ts
 * import { DEFAULT_BOUNCES } from "./loop_guard.ts";
 *
 * console.log(DEFAULT_BOUNCES); // 64
 * ```
 */
export const DEFAULT_BOUNCES = 64;

/**
 * Default {@linkcode BounceDetectorOptions.window}: 10 ms, so only a high rate (above 100 a
 * second from one source) can count as a loop; a client that repeats a heartbeat or retries
 * after a timeout never does.
 *
 * @example
 * ```ts
 * import { DEFAULT_BOUNCE_WINDOW_MS } from "./loop_guard.ts";
 *
 * console.log(DEFAULT_BOUNCE_WINDOW_MS); // 10
 * ```
 */
export const DEFAULT_BOUNCE_WINDOW_MS = 10;

/** Table slots: a power of two; sources beyond it share slots (detection then errs lenient). */
const BOUNCE_SLOTS = 1024;

/**
 * Detects the echo-of-an-echo loop: a datagram that comes back, byte for byte, from the source
 * this server just answered with it, again and again at a high rate. That is what two echo (or
 * other self-answering) services do once a spoofed datagram sets them talking, on ports the
 * {@linkcode LoopGuard} cannot know (two echo servers on ports 5006 and 5007, say).
 *
 * Cheap on every datagram: a fixed table of 1,024 slots indexed by a hash of the source, each
 * holding a fingerprint of the last payload (its length and up to 32 sampled bytes, never the
 * whole payload), when it came and how many quick identical returns came in a row. The clock is
 * read only when a payload repeats (reading it costs more than the rest: about 90 ns here), so
 * traffic whose datagrams differ pays about 60 ns a datagram. Nothing is allocated, and the
 * table's memory is fixed whatever the sources.
 *
 * What remains: a client that itself sends the same bytes over and over, each within the
 * window of the last, from one port (a constant-payload load generator in a closed loop) looks
 * the same and is dropped after `bounces` datagrams until it pauses for a window; this
 * project's probes and `bench/native/loadgen.c` put a sequence number in every datagram and are
 * never counted. A loop that runs slower than one return per window (a long path, or a peer
 * that delays its answers) is not detected: the rate limit (`udpRate`, on by default off
 * loopback) bounds what it costs. Two sources colliding in one slot only reset each other's
 * counts.
 *
 * @example
 * ```ts
 * import { BounceDetector } from "./loop_guard.ts";
 *
 * let now = 0;
 * const detector = new BounceDetector({ bounces: 3, window: 10, clock: () => now });
 * const data = new TextEncoder().encode("spoofed");
 * const verdicts = [0, 1, 2, 3, 4, 5].map((t) => (now = t, detector.check("127.0.0.1", 5007, data)));
 * console.log(verdicts); // [false, false, false, false, true, true]
 * now = 100;
 * console.log(detector.check("127.0.0.1", 5007, data)); // false: a pause ends it
 * ```
 */
export class BounceDetector {
  readonly #bounces: number;
  readonly #window: number;
  readonly #clock: () => number;
  readonly #tags = new Uint32Array(BOUNCE_SLOTS);
  readonly #prints = new Uint32Array(BOUNCE_SLOTS);
  readonly #times = new Float64Array(BOUNCE_SLOTS).fill(NaN);
  readonly #counts = new Uint32Array(BOUNCE_SLOTS);

  /**
   * Validates the options.
   *
   * @param options How many returns, within what window.
   * @throws {RangeError} When `bounces` is not a whole number >= 1 or `window` not a finite
   * number >= 0.
   */
  constructor(options: BounceDetectorOptions = {}) {
    const {
      bounces = DEFAULT_BOUNCES,
      window = DEFAULT_BOUNCE_WINDOW_MS,
      clock = () => performance.now(),
    } = options;
    if (typeof bounces !== "number" || !Number.isInteger(bounces) || bounces < 1) {
      throw new RangeError(`bounces must be a whole number of at least 1, got ${bounces}`);
    }
    if (typeof window !== "number" || !Number.isFinite(window) || window < 0) {
      throw new RangeError(`window must be 0 ms or more, got ${window}`);
    }
    this.#bounces = bounces;
    this.#window = window;
    this.#clock = clock;
  }

  /**
   * Notes a datagram about to be answered and says whether it is part of a loop.
   *
   * @param hostname The source address.
   * @param port The source port.
   * @param data The payload (read, never kept).
   * @returns true to drop it: after a first repeat, the same bytes came back from this source
   * `bounces` times in a row, each within the window of the one before.
   */
  check(hostname: string, port: number, data: Uint8Array): boolean {
    // FNV-1a over the source, then over the payload's length and up to 32 sampled bytes.
    let tag = 0x811c9dc5 ^ port;
    for (let i = 0; i < hostname.length; i++) {
      tag = Math.imul(tag ^ hostname.charCodeAt(i), 0x1000193);
    }
    tag >>>= 0;
    const length = data.length;
    let print = Math.imul(0x811c9dc5 ^ length, 0x1000193);
    if (length <= 32) {
      for (let i = 0; i < length; i++) print = Math.imul(print ^ data[i], 0x1000193);
    } else {
      for (let i = 0; i < 16; i++) print = Math.imul(print ^ data[i], 0x1000193);
      const step = Math.floor((length - 16) / 16);
      for (let i = 16 + step - 1; i < length; i += step) {
        print = Math.imul(print ^ data[i], 0x1000193);
      }
    }
    print >>>= 0;
    const slot = tag & (BOUNCE_SLOTS - 1);
    if (this.#tags[slot] !== tag || this.#prints[slot] !== print) {
      // Something new from this source (or another source in this slot): no clock needed.
      this.#tags[slot] = tag;
      this.#prints[slot] = print;
      this.#counts[slot] = 0;
      this.#times[slot] = NaN;
      return false;
    }
    const now = this.#clock();
    if (now - this.#times[slot] <= this.#window) {
      if (this.#counts[slot] < this.#bounces) this.#counts[slot]++;
    } else {
      this.#counts[slot] = 0; // the first repeat, or one after a pause
    }
    this.#times[slot] = now;
    return this.#counts[slot] >= this.#bounces;
  }
}
