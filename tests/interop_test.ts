/**
 * Interop with the tutorial's Python programs (the seed text's four listings, with their typos
 * fixed — `buf size`, `data bytes`, `skt.close` without parentheses — and the port taken from the
 * command line instead of 5006; the servers print the port they bound, so 0 can be passed). Our
 * client talks to their servers, their clients talk to our server. Skipped when python3 is absent.
 *
 * @module
 */
import assert from "node:assert/strict";
import { childEnded, readyOrKill, ROOT, spawnChild, spawnServer, test } from "./_helpers.ts";

const decoder = new TextDecoder();

const UDP_SERVER = `
import socket
import sys
ip = '127.0.0.1'
porta = int(sys.argv[1])
endpoint = (ip, porta)
buf_size = 1024
try:
    # creo socket UDP
    skt = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    skt.bind(endpoint)
    print("Server in ascolto...", skt.getsockname()[1], flush=True)
    data_bytes, addr = skt.recvfrom(buf_size)
    print("Connessione da: ", addr)
    data_str = data_bytes.decode("utf-8")  # converto byte in stringa
    print("Ricevuto dal client: ", data_str)
    skt.sendto(data_bytes, addr)
    skt.close()
except socket.error as e:
    print("Si è verificato un errore: ", e)
`;

const UDP_CLIENT = `
import socket
import sys
ip = '127.0.0.1'
porta = int(sys.argv[1])
endpoint = (ip, porta)
buf_size = 1024
msg = bytes("Hello World", "utf-8")  # converte stringa in byte
try:
    # creo socket UDP
    skt = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    skt.settimeout(10)  # not in the tutorial: a lost datagram must not hang the test
    skt.connect(endpoint)
    skt.sendto(msg, endpoint)
    # attendo risposta dal server
    data_bytes, addr = skt.recvfrom(buf_size)
    data_str = data_bytes.decode("utf-8")  # converto byte in stringa
    print("Risposta: ", data_str)
    skt.close()
except socket.error as e:
    print("Si è verificato un errore: ", e)
`;

const TCP_SERVER = `
import socket
import sys
ip = '127.0.0.1'
porta = int(sys.argv[1])
endpoint = (ip, porta)
buf_size = 1024
try:
    # creo socket TCP
    skt = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    skt.bind(endpoint)
    skt.listen()
    print("Server in ascolto...", skt.getsockname()[1], flush=True)
    con, addr = skt.accept()
    print("Connessione da: ", addr)
    data_bytes = con.recv(buf_size)
    data_str = data_bytes.decode("utf-8")  # converto byte in stringa
    print("Ricevuto dal client: ", data_str)
    con.send(data_bytes)
    con.close()
except socket.error as e:
    print("Si è verificato un errore: ", e)
`;

const TCP_CLIENT = `
import socket
import sys
ip = '127.0.0.1'
porta = int(sys.argv[1])
endpoint = (ip, porta)
buf_size = 1024
msg = bytes("Hello World", "utf-8")  # converte stringa in byte
try:
    # creo socket TCP
    skt = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    skt.settimeout(10)  # not in the tutorial: a silent server must not hang the test
    skt.connect(endpoint)
    skt.send(msg)
    # attendo risposta dal server
    data_bytes = skt.recv(buf_size)
    data_str = data_bytes.decode("utf-8")  # converto byte in stringa
    print("Risposta: ", data_str)
    skt.close()
except socket.error as e:
    print("Si è verificato un errore: ", e)
`;

const PYTHON = (() => {
  try {
    const { success } = new Deno.Command("python3", { args: ["--version"] }).outputSync();
    return success ? "python3" : undefined;
  } catch {
    return undefined;
  }
})();

/** Starts one of the tutorial's servers on a free port and waits for its ready line. */
async function startPythonServer(
  source: string,
): Promise<{ port: number; done: Promise<{ code: number; lines: string[] }> }> {
  const server = spawnChild(PYTHON!, ["-u", "-c", source, "0"]);
  const ready = server.stdout.waitFor(/^Server in ascolto\.\.\. (\d+)$/);
  const port = Number((await readyOrKill(server, ready))[1]);
  const done = childEnded(server).then(({ code, lines, stderr }) => {
    assert.equal(stderr, "");
    return { code, lines };
  });
  return { port, done };
}

async function run(
  command: string,
  args: string[],
): Promise<{ code: number; stdout: string; stderr: string }> {
  const { code, stdout, stderr } = await new Deno.Command(command, {
    args,
    cwd: ROOT,
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).output();
  return { code, stdout: decoder.decode(stdout), stderr: decoder.decode(stderr) };
}

/** Starts our server.ts and waits for its ready lines. */
async function startOurServer(args: string[], listeners: number) {
  const server = spawnServer(["-p", "0", ...args]);
  let port = 0;
  for (let i = 0; i < listeners; i++) {
    const ready = server.stdout.waitFor(/^listening (?:tcp|udp) 127\.0\.0\.1:(\d+)$/);
    port = Number((await ready)[1]);
  }
  return { port, done: childEnded(server) };
}

const ignore = PYTHON === undefined;

for (const transport of ["tcp", "udp"] as const) {
  test(`interop (${transport}): our client against the tutorial's Python server`, async () => {
    const server = await startPythonServer(transport === "tcp" ? TCP_SERVER : UDP_SERVER);
    const args = ["run", "--allow-net", "client.ts", "-p", String(server.port)];
    if (transport === "udp") args.push("-u");
    const client = await run(Deno.execPath(), args);
    assert.equal(client.code, 0, client.stderr);
    assert.match(
      client.stdout,
      new RegExp(
        `^reply from ${transport} 127\\.0\\.0\\.1:${server.port}: "Hello World" \\(11 bytes\\)`,
      ),
    );
    const { code, lines } = await server.done;
    assert.equal(code, 0);
    assert.match(lines[1], /^Connessione da: {2}\('127\.0\.0\.1', \d+\)$/);
    assert.equal(lines[2], "Ricevuto dal client:  Hello World");
  }, { ignore });

  test(`interop (${transport}): the tutorial's Python client against our server`, async () => {
    const server = await startOurServer(
      ["--once", transport === "tcp" ? "--tcp" : "--udp"],
      1,
    );
    const client = await run(PYTHON!, [
      "-c",
      transport === "tcp" ? TCP_CLIENT : UDP_CLIENT,
      String(server.port),
    ]);
    assert.equal(client.code, 0, client.stderr);
    assert.equal(client.stdout, "Risposta:  Hello World\n");
    const { code, lines, stderr } = await server.done;
    assert.equal(code, 0, stderr);
    assert.match(
      lines.at(-1)!,
      transport === "tcp"
        ? /^stopped: 1 TCP session, 0 datagrams, 11 bytes in, 11 bytes out, 0 errors$/
        : /^stopped: 0 TCP sessions, 1 datagram, 11 bytes in, 11 bytes out, 0 errors$/,
    );
  }, { ignore });
}
