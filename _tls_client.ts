/**
 * The client side of TLS over an open TCP connection, for `echoTcp` and the probe's TCP lane:
 * `Deno.startTls`, then the handshake, so certificate problems surface here; an abort of
 * `signal` closes the connection (and so ends a handshake that hangs).
 *
 * @module
 */

/**
 * Upgrades `tcp` to TLS and completes the handshake. On failure the connection is closed and the
 * runtime's error thrown as is (the caller words it).
 *
 * @example
 * ```ts ignore
 * const tcp = await Deno.connect({ hostname: "127.0.0.1", port });
 * const tls = await startTlsClient(tcp, { hostname: "localhost", caCerts: [cert] }, signal);
 * ```
 *
 * @param tcp The connection; from the call on, only the TLS one can be closed.
 * @param options The name the certificate must hold (`hostname`, also SNI) and extra trust roots.
 * @param signal Aborting it closes the connection.
 * @returns The TLS connection, handshake done.
 */
export async function startTlsClient(
  tcp: Deno.TcpConn,
  options: { hostname: string; caCerts?: string[] },
  signal: AbortSignal,
): Promise<Deno.TlsConn> {
  let conn: Deno.Conn = tcp;
  const close = () => {
    try {
      conn.close();
    } catch {
      // already closed
    }
  };
  signal.addEventListener("abort", close, { once: true });
  try {
    const tls = await Deno.startTls(tcp, options);
    conn = tls;
    if (signal.aborted) close();
    await tls.handshake();
    return tls;
  } catch (error) {
    close();
    throw error;
  } finally {
    signal.removeEventListener("abort", close);
  }
}
