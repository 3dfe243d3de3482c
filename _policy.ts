/**
 * The policy stages above the transports, written once: which connections and datagrams are
 * served (allow-list, connection cap, loop guard, rate limit) and the session limits. Built from
 * the server options; a stage that is off is not built, so the hot path pays nothing for it.
 *
 * @module
 */
import { CidrList } from "./cidr.ts";
import {
  isShaping,
  type TcpShaperOptions,
  validateImpairOptions,
  validateTcpShaperOptions,
} from "./impair.ts";
import {
  DEFAULT_LIMITS,
  defaultUdpRate,
  effectiveMaxConnections,
  RateLimiter,
  SourceSlots,
} from "./limits.ts";
import { BounceDetector, LoopGuard } from "./loop_guard.ts";
import type { EchoServerOptions, RejectReason } from "./serve.ts";

function checkCount(value: number | undefined, name: string, min: number): void {
  if (value === undefined) return;
  if (
    typeof value !== "number" || !(Number.isInteger(value) || value === Infinity) || value < min
  ) {
    throw new RangeError(`${name} must be a whole number of at least ${min}, got ${value}`);
  }
}

function checkMs(value: number | undefined, name: string): void {
  if (value === undefined) return;
  if (typeof value !== "number" || !(value >= 0) || !Number.isFinite(value)) {
    throw new RangeError(`${name} must be a duration of 0 ms or more, got ${value}`);
  }
}

/** Session limits and the accept policy of a stream (TCP, TLS, Unix) server. */
export interface StreamPolicy {
  /** Allowed sources, when restricted. */
  acl?: CidrList;
  /** Most sessions open at once. */
  maxConnections: number;
  /** Close sessions silent for this long (ms); 0 = off. */
  idleTimeout: number;
  /** Close a session after echoing this many bytes. */
  maxSessionBytes?: number;
  /** Close a session after this long (ms). */
  maxSessionTime?: number;
  /** TCP delay and bandwidth, when shaping. */
  shaper?: TcpShaperOptions;
}

/**
 * Builds the stream policy, validating the options.
 *
 * @param options The server options.
 * @returns The policy.
 * @throws {RangeError} On a limit out of range.
 * @throws {TypeError} On an invalid CIDR rule.
 */
export function streamPolicy(options: EchoServerOptions): StreamPolicy {
  checkCount(options.maxConnections, "maxConnections", 1);
  checkCount(options.maxPerSource, "maxPerSource", 0);
  if (options.perSourcePrefix6 !== undefined) {
    new SourceSlots({ max: 1, prefix6: options.perSourcePrefix6 });
  }
  checkMs(options.idleTimeout, "idleTimeout");
  checkCount(options.maxSessionBytes, "maxSessionBytes", 1);
  checkMs(options.maxSessionTime, "maxSessionTime");
  const shaper = { delay: options.impair?.delay, bandwidth: options.impair?.bandwidth };
  validateTcpShaperOptions(shaper);
  return {
    acl: options.allow ? new CidrList(options.allow) : undefined,
    maxConnections: options.maxConnections ??
      effectiveMaxConnections(DEFAULT_LIMITS.maxConnections).value,
    idleTimeout: options.idleTimeout ?? DEFAULT_LIMITS.idleTimeout,
    maxSessionBytes: options.maxSessionBytes,
    maxSessionTime: options.maxSessionTime || undefined,
    shaper: isShaping(shaper) ? shaper : undefined,
  };
}

/**
 * Decides, per datagram, whether it is answered: loop guard, then allow-list, then the echo-loop
 * detector, then rate.
 */
export class DatagramPolicy {
  /** For a `guard` refusal: which rule (`blocked-port`, `port-zero`, `broadcast`, ...). */
  detail: string | undefined;
  #guard?: LoopGuard;
  #acl?: CidrList;
  #bounce?: BounceDetector;
  #rate?: RateLimiter;

  /**
   * Builds the stages that are on.
   *
   * @param options The server options.
   * @param local The bound address (its port is guarded; its host picks the default rate).
   */
  constructor(options: EchoServerOptions, local: Deno.NetAddr) {
    const guard = options.loopGuard ?? true;
    if (guard !== false) {
      this.#guard = new LoopGuard({
        ...(guard === true ? {} : guard),
        localPort: local.port,
      });
      const bounce = guard === true ? undefined : guard.bounce;
      if (bounce !== false) this.#bounce = new BounceDetector(bounce);
    }
    if (options.allow) this.#acl = new CidrList(options.allow);
    const rate = options.udpRate ?? defaultUdpRate(local.hostname);
    if (rate) this.#rate = new RateLimiter({ rate });
  }

  /** Whether any stage is on. */
  get active(): boolean {
    return Boolean(this.#guard || this.#acl || this.#bounce || this.#rate);
  }

  /**
   * Checks one datagram's source.
   *
   * @param hostname The source address.
   * @param port The source port.
   * @param data The payload, for the echo-loop detector (which reads a few bytes of it).
   * @returns Why it is refused, or undefined to answer it.
   */
  check(hostname: string, port: number, data?: Uint8Array): RejectReason | undefined {
    if (this.#guard) {
      this.detail = this.#guard.check(hostname, port);
      if (this.detail) return "guard";
    }
    if (this.#acl && !this.#acl.matches(hostname)) return "acl";
    if (this.#bounce && data && this.#bounce.check(hostname, port, data)) {
      return "loop";
    }
    if (this.#rate && !this.#rate.take(hostname, performance.now())) return "rate";
    return undefined;
  }
}

/**
 * Validates the policy options without binding anything, so a CLI can report a bad value as a
 * usage error before it listens.
 *
 * @param options The server options.
 */
export function validatePolicy(options: EchoServerOptions): void {
  if (options.udpRate !== undefined && !(options.udpRate >= 0 && options.udpRate < Infinity)) {
    throw new RangeError(`udpRate must be 0 or more datagrams per second, got ${options.udpRate}`);
  }
  streamPolicy(options);
  new DatagramPolicy(options, { transport: "udp", hostname: "127.0.0.1", port: 1 });
  if (options.impair) validateImpairOptions(options.impair);
}
