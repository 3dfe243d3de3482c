/**
 * Reading a small text file named by a user (a certificate, a list of rules) with a bound on its
 * size, so a path such as `/dev/zero` or a huge log given by mistake fails at once with a clear
 * error instead of filling memory.
 *
 * @module
 */

/** A file was larger than the caller allows. */
export class FileTooLargeError extends RangeError {
  /** The file. */
  readonly path: string;
  /** The most bytes allowed. */
  readonly limit: number;

  /**
   * Creates the error.
   *
   * @param path The file.
   * @param limit The most bytes allowed.
   */
  constructor(path: string, limit: number) {
    super(`${path}: larger than ${formatSize(limit)}`);
    this.name = "FileTooLargeError";
    this.path = path;
    this.limit = limit;
  }
}

function formatSize(bytes: number): string {
  if (bytes >= 1024 * 1024 && bytes % (1024 * 1024) === 0) return `${bytes / (1024 * 1024)} MiB`;
  if (bytes >= 1024 && bytes % 1024 === 0) return `${bytes / 1024} KiB`;
  return `${bytes} bytes`;
}

/**
 * Reads a file as UTF-8 text, reading at most `maxBytes + 1` bytes: a longer file (or an
 * endless one, such as a character device) is refused without reading further.
 *
 * @example
 * ```ts
 * import { FileTooLargeError, readTextFileCapped } from "./_read_file.ts";
 *
 * try {
 *   await readTextFileCapped("/dev/zero", 1024);
 * } catch (error) {
 *   console.log(error instanceof FileTooLargeError); // true
 * }
 * ```
 *
 * @param path The file.
 * @param maxBytes The most bytes accepted.
 * @returns The text.
 * @throws {FileTooLargeError} When the file holds more than `maxBytes` bytes.
 * @throws {Deno.errors.NotFound} (and other Deno errors) when it cannot be opened or read.
 */
export async function readTextFileCapped(path: string, maxBytes: number): Promise<string> {
  using file = await Deno.open(path, { read: true });
  const chunks: Uint8Array[] = [];
  let total = 0;
  const buffer = new Uint8Array(Math.min(maxBytes + 1, 64 * 1024));
  for (;;) {
    const n = await file.read(buffer);
    if (n === null) break;
    total += n;
    if (total > maxBytes) throw new FileTooLargeError(path, maxBytes);
    chunks.push(buffer.slice(0, n));
  }
  const all = new Uint8Array(total);
  let offset = 0;
  for (const chunk of chunks) {
    all.set(chunk, offset);
    offset += chunk.length;
  }
  return new TextDecoder().decode(all);
}
