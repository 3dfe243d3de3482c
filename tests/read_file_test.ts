/**
 * Bounded reads of user-named files: readTextFileCapped() and the CLI's readPemFile(), which
 * must fail at once on `/dev/zero` or an oversized file instead of reading without bound.
 *
 * @module
 */
import assert from "node:assert/strict";
import { readPemFile, UsageError } from "../_cli.ts";
import { FileTooLargeError, readTextFileCapped } from "../_read_file.ts";
import { assertOneLine, runProgram } from "./_cli_child.ts";
import { ROOT, test, watchdog } from "./_helpers.ts";

const within = watchdog(20_000);
const linux = Deno.build.os === "linux";
if (!linux) console.log("read_file_test: /dev/zero cases skipped: not Linux");

Deno.test("readTextFileCapped: reads up to the cap, refuses one byte more", async () => {
  const path = await Deno.makeTempFile();
  try {
    await Deno.writeTextFile(path, "é".repeat(500)); // 1,000 bytes
    assert.equal(await readTextFileCapped(path, 1000), "é".repeat(500));
    const error = await readTextFileCapped(path, 999).catch((e) => e);
    assert.ok(error instanceof FileTooLargeError && error instanceof RangeError);
    assert.equal(error.message, `${path}: larger than 999 bytes`);
    assert.equal(error.limit, 999);
  } finally {
    await Deno.remove(path);
  }
});

test("readPemFile: /dev/zero and a 2 MiB file fail at once with a usage error", async () => {
  const path = await Deno.makeTempFile();
  try {
    const pem = await Deno.readTextFile(`${ROOT}tests/fixtures/tls_cert.pem`);
    await Deno.writeTextFile(path, pem + "x".repeat(2 * 1024 * 1024));
    await assert.rejects(() => readPemFile(path, "--tls-cert", "certificate"), {
      name: "UsageError",
      message: `--tls-cert ${path}: larger than 1 MiB; a PEM certificate file is a few KiB`,
    });
    if (linux) {
      const error = await within(
        readPemFile("/dev/zero", "--tls-key", "key").catch((e) => e),
        "readPemFile(/dev/zero)",
      );
      assert.ok(error instanceof UsageError);
      assert.match(error.message, /^--tls-key \/dev\/zero: larger than 1 MiB/);
    }
    // A real certificate still reads.
    assert.equal(
      await readPemFile(`${ROOT}tests/fixtures/tls_cert.pem`, "--ca", "certificate"),
      pem,
    );
  } finally {
    await Deno.remove(path);
  }
});

test("server.ts --tls-cert /dev/zero: one line, exit 2, at once", async () => {
  const { code, stderr } = await within(
    runProgram(
      "server.ts",
      ["--tls-cert", "/dev/zero", "--tls-key", "tests/fixtures/tls_key.pem", "--port", "0"],
      ["--allow-net", "--allow-read"],
    ),
    "server.ts to exit",
  );
  assert.equal(code, 2);
  assertOneLine(stderr, /--tls-cert \/dev\/zero: larger than 1 MiB/, "--tls-cert /dev/zero");
}, { ignore: !linux });
