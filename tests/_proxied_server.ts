/**
 * Test helper: a PROXY-speaking echo server (`serveEcho({ proxyProtocol: true })` on TCP, or TLS
 * when `tls` is given) that records what its hooks saw.
 *
 * @module
 */
import { serveEcho } from "../serve.ts";
import type {
  CloseInfo,
  ConnectionInfo,
  EchoServer,
  RejectInfo,
  ServeEchoOptions,
} from "../types.ts";

/** The server and what its hooks saw, in order. */
export interface ProxiedServer {
  /** The running server. */
  server: EchoServer;
  /** `onConnection` calls. */
  connections: ConnectionInfo[];
  /** `onClose` calls. */
  closes: CloseInfo[];
  /** `onReject` calls. */
  rejects: RejectInfo[];
  /** Its port on 127.0.0.1. */
  port: number;
}

/**
 * Starts a PROXY-speaking echo server on 127.0.0.1, port 0.
 *
 * @param options More server options (they win over the defaults here).
 * @returns The server and its hook records.
 */
export async function proxiedServer(
  options: Partial<ServeEchoOptions> = {},
): Promise<ProxiedServer> {
  const connections: ConnectionInfo[] = [];
  const closes: CloseInfo[] = [];
  const rejects: RejectInfo[] = [];
  const server = await serveEcho({
    port: 0,
    transport: "tcp",
    proxyProtocol: true,
    onConnection: (info) => connections.push(info),
    onClose: (info) => closes.push(info),
    onReject: (info) => rejects.push(info),
    ...options,
  });
  return { server, connections, closes, rejects, port: server.addr.port };
}
