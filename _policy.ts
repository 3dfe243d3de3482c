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
  DEFAULT_PER_SOURCE_PREFIX6,
  defaultUdpRate,
  effectiveMaxConnections,
  RateLimiter,
} from "./limits.ts";
import { BounceDetector, LoopGuard } from "./loop_guard.ts";
import { DEFAULT_PROXY_TIMEOUT } from "./proxy_protocol.ts";
import type { EchoHooks, EchoServerOptions, RejectReason } from "./types.ts";
import { DEFAULT_HOSTNAME } from "./types.ts";
import { parseHost } from "./_address.ts";

/** The options the policies are built from: the server options but the hooks, of any address. */
export type PolicyOptions = Omit<EchoServerOptions, keyof EchoHooks>;
import {
  checkDuration,
  checkRate,
  checkWhole,
  optionRangeError,
  optionTypeError,
} from "./_validate.ts";

/** The PROXY protocol stage of a stream server: who may send a header, and how fast. */
export interface ProxyPolicy {
  /** The balancers allowed to send a header (`proxyFrom`); undefined: loopback peers only. */
  trusted?: CidrList;
  /** Time allowed for the whole header, in ms. */
  timeout: number;
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
  /** The PROXY header every connection must start with, when `proxyProtocol` is on. */
  proxy?: ProxyPolicy;
  /**
   * Most sessions open at once per source as asked for (Infinity = off, from 0); undefined = the
   * default, which the server decides from the address it bound (`defaultMaxPerSource`).
   */
  maxPerSource?: number;
  /** Leading bits of an IPv6 address that name one source. */
  perSourcePrefix6: number;
}

/** Every policy of a server, built once at start-up from its options and passed down. */
export interface ServerPolicy {
  /**
   * The address to bind, parsed once (`parseHost` in _address.ts): an IP literal in canonical
   * form (`127.1` is `127.0.0.1`, `[::1]` is `::1`) or a host name in lower case.
   */
  hostname: string;
  /** The stream (TCP, TLS, Unix) side. */
  stream: StreamPolicy;
  /** The allow-list, parsed once, for the datagram side too. */
  acl?: CidrList;
  /** Whether the file-descriptor limit lowered the default connection cap. */
  maxConnectionsLowered: boolean;
}

/**
 * Validates the policy options and builds the policies, once: the CIDR rules are parsed and the
 * file-descriptor limit is read here and nowhere else. The datagram side is completed by
 * {@linkcode DatagramPolicy} once a socket is bound (its port is guarded, its host picks the
 * default rate).
 *
 * @example
 * ```ts
 * import { buildPolicy } from "./_policy.ts";
 * const policy = buildPolicy({ allow: ["127.0.0.0/8"], idleTimeout: 1000 });
 * console.log(policy.stream.idleTimeout, policy.acl?.matches("127.0.0.1")); // 1000 true
 * ```
 *
 * @param options The server options.
 * @returns The policies.
 * @throws {RangeError} On a limit out of range (its `option` property names it).
 * @throws {TypeError} On an invalid CIDR rule.
 * @throws {InvalidHostError} On a `hostname` that cannot be bound as given (`option` is
 * `hostname`): a port in it, a zone id, stray brackets, control characters.
 */
export function buildPolicy(options: PolicyOptions): ServerPolicy {
  const hostname = options.hostname === undefined
    ? DEFAULT_HOSTNAME
    : parseHost(options.hostname).hostname;
  checkWhole("maxConnections", options.maxConnections, 1, { infinite: true });
  checkWhole("maxPerSource", options.maxPerSource, 0, { infinite: true });
  checkWhole("perSourcePrefix6", options.perSourcePrefix6, 0, { max: 128 });
  checkDuration("idleTimeout", options.idleTimeout);
  checkWhole("maxSessionBytes", options.maxSessionBytes, 1, { infinite: true });
  checkDuration("maxSessionTime", options.maxSessionTime);
  checkDuration("gracePeriod", options.gracePeriod);
  checkRate("udpRate", options.udpRate, "datagrams");
  const shaper = { delay: options.impair?.delay, bandwidth: options.impair?.bandwidth };
  validateTcpShaperOptions(shaper);
  if (options.impair) validateImpairOptions(options.impair);
  const guard = options.loopGuard;
  // The blocked ports are checked here, before anything binds; the guard itself needs the port.
  if (guard !== undefined && guard !== true && guard !== false) {
    new LoopGuard(guard);
    if (guard.bounce) {
      checkWhole("loopGuard.bounce.bounces", guard.bounce.bounces, 1);
      checkDuration("loopGuard.bounce.window", guard.bounce.window);
    }
  }
  const acl = options.allow ? new CidrList(options.allow) : undefined;
  const proxy = buildProxyPolicy(options);
  const fitted = options.maxConnections === undefined
    ? effectiveMaxConnections(DEFAULT_LIMITS.maxConnections)
    : { value: options.maxConnections, lowered: false };
  return {
    hostname,
    stream: {
      acl,
      maxConnections: fitted.value,
      idleTimeout: options.idleTimeout ?? DEFAULT_LIMITS.idleTimeout,
      maxSessionBytes: options.maxSessionBytes,
      maxSessionTime: options.maxSessionTime || undefined,
      shaper: isShaping(shaper) ? shaper : undefined,
      proxy,
      maxPerSource: options.maxPerSource === 0 ? Infinity : options.maxPerSource,
      perSourcePrefix6: options.perSourcePrefix6 ?? DEFAULT_PER_SOURCE_PREFIX6,
    },
    acl,
    maxConnectionsLowered: fitted.lowered,
  };
}

/** The PROXY stage from `proxyProtocol`, `proxyFrom` and `proxyTimeout`, or undefined when off. */
function buildProxyPolicy(options: PolicyOptions): ProxyPolicy | undefined {
  const { proxyProtocol, proxyFrom, proxyTimeout } = options;
  if (proxyProtocol !== undefined && typeof proxyProtocol !== "boolean") {
    throw optionTypeError("proxyProtocol", `proxyProtocol must be a boolean, got ${proxyProtocol}`);
  }
  if (proxyFrom !== undefined && !Array.isArray(proxyFrom)) {
    throw optionTypeError("proxyFrom", "proxyFrom must be an array of CIDR rules");
  }
  checkDuration("proxyTimeout", proxyTimeout);
  if (proxyTimeout === 0) {
    throw optionRangeError("proxyTimeout", "proxyTimeout must be above 0 ms (a header must come)");
  }
  if (!proxyProtocol) {
    const stray = proxyFrom !== undefined
      ? "proxyFrom"
      : proxyTimeout !== undefined
      ? "proxyTimeout"
      : undefined;
    if (stray) throw optionTypeError(stray, `${stray} needs proxyProtocol`);
    return undefined;
  }
  let trusted: CidrList | undefined;
  try {
    trusted = proxyFrom ? new CidrList(proxyFrom) : undefined;
  } catch (error) {
    throw optionTypeError("proxyFrom", `proxyFrom: ${(error as Error).message}`);
  }
  return { trusted, timeout: proxyTimeout ?? DEFAULT_PROXY_TIMEOUT };
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
   * @param acl The allow-list already parsed by {@linkcode buildPolicy}; parsed here otherwise.
   */
  constructor(
    options: EchoServerOptions,
    local: Deno.NetAddr,
    acl: CidrList | undefined = options.allow ? new CidrList(options.allow) : undefined,
  ) {
    const guard = options.loopGuard ?? true;
    if (guard !== false) {
      this.#guard = new LoopGuard({
        ...(guard === true ? {} : guard),
        localPort: local.port,
      });
      const bounce = guard === true ? undefined : guard.bounce;
      if (bounce !== false) this.#bounce = new BounceDetector(bounce);
    }
    this.#acl = acl;
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
  check(
    hostname: string,
    port: number,
    data?: Uint8Array,
  ): Exclude<RejectReason, "limit" | "proxy" | "source" | "fd"> | undefined {
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

/** Policies already built for an options object, so each is built once however it is served. */
const built = new WeakMap<object, ServerPolicy>();

/**
 * Records the policies built for an options object; {@linkcode policyOf} then returns them.
 *
 * @example
 * ```ts
 * import { buildPolicy, policyOf, usePolicy } from "./_policy.ts";
 * const policy = buildPolicy({ idleTimeout: 10 });
 * const options = usePolicy({ idleTimeout: 10, port: 0 }, policy);
 * console.log(policyOf(options) === policy); // true
 * ```
 *
 * @param options The options object the servers will be given.
 * @param policy Its policies.
 * @returns `options`.
 */
export function usePolicy<T extends object>(options: T, policy: ServerPolicy): T {
  built.set(options, policy);
  return options;
}

/**
 * The policies of an options object: those recorded with {@linkcode usePolicy}, or new ones
 * built (and recorded) now.
 *
 * @example
 * ```ts
 * import { policyOf } from "./_policy.ts";
 * console.log(policyOf({ maxConnections: 10 }).stream.maxConnections); // 10
 * ```
 *
 * @param options The server options.
 * @returns Its policies.
 */
export function policyOf(options: PolicyOptions): ServerPolicy {
  let policy = built.get(options);
  if (!policy) usePolicy(options, policy = buildPolicy(options));
  return policy;
}
