/**
 * The package version, read from deno.json: one source for both CLIs' `--version` and
 * `/metrics`' `echo_build_info` (and the release test checks CHANGELOG.md against it).
 *
 * @module
 */
import denoJson from "./deno.json" with { type: "json" };

/**
 * This module's version, from deno.json.
 *
 * @example
 * ```ts
 * import { VERSION } from "./_version.ts";
 * console.log(/^\d+\.\d+\.\d+/.test(VERSION)); // true
 * ```
 */
export const VERSION: string = denoJson.version;
