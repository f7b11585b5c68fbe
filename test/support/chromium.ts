/**
 * Chromium for the tests that drive a real browser (playwright-core with the
 * system Chromium, never a downloaded one). The executable is
 * `RAVENCLAWS_CHROMIUM_PATH` when set, else the product's own lookup
 * (`/usr/bin/chromium`, `chromium`, `chromium-browser` on PATH). In CI
 * (`CI` set) a missing Chromium FAILS the tests that need it; only on a
 * developer machine without Chromium are they skipped.
 */
import { mkdtempSync, rmSync } from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { type Browser, chromium, type LaunchOptions } from "playwright-core";
import { describe, it } from "vitest";
import { CHROMIUM_BASE_ARGS, findChromium } from "../../src/services/browser/chromium.js";

const lookup = findChromium(process.env.RAVENCLAWS_CHROMIUM_PATH || undefined);

/** The Chromium executable, or undefined when there is none (see {@link chromiumProblem}). */
export const chromiumPath: string | undefined = lookup.path;

/** Why Chromium cannot be used here, or undefined when it can. */
export const chromiumProblem: string | undefined = "problem" in lookup ? lookup.problem : undefined;

/**
 * Flags for a Chromium started by a test, as root in a closed network:
 * headless, no sandbox (root), and none of Chromium's own background
 * connections (the closed network refuses them and they slow start-up).
 */
export const CHROMIUM_TEST_ARGS = [...CHROMIUM_BASE_ARGS, "--no-sandbox"];

function inCI(): boolean {
  const ci = process.env.CI;
  return ci !== undefined && ci !== "" && ci !== "0" && ci.toLowerCase() !== "false";
}

/** The executable or a thrown error saying why there is none. */
export function requireChromium(): string {
  if (!chromiumPath) throw new Error(`Chromium is required for this test: ${chromiumProblem}`);
  return chromiumPath;
}

/**
 * Command-line arguments for spawning Chromium directly (without
 * playwright): {@link CHROMIUM_TEST_ARGS} plus a fresh `--user-data-dir`.
 * Call `cleanup()` after the process has exited.
 */
export function chromiumCommandArgs(): { args: string[]; userDataDir: string; cleanup(): void } {
  const userDataDir = mkdtempSync(path.join(os.tmpdir(), "ravenclaws-chromium-"));
  return {
    args: [...CHROMIUM_TEST_ARGS, `--user-data-dir=${userDataDir}`],
    userDataDir,
    cleanup: () => rmSync(userDataDir, { recursive: true, force: true }),
  };
}

/**
 * Launches the system Chromium through playwright-core. Playwright gives
 * every launch a fresh temporary profile (`--user-data-dir`) of its own and
 * removes it on `close()`.
 */
export function launchChromium(options: LaunchOptions = {}): Promise<Browser> {
  return chromium.launch({
    executablePath: requireChromium(),
    headless: true,
    ...options,
    args: [...CHROMIUM_TEST_ARGS, ...(options.args ?? [])],
  });
}

/**
 * `describe` for tests that need Chromium. Where it is missing: in CI a
 * failing test that says why (never a skip), elsewhere the block is skipped.
 */
export function describeWithChromium(name: string, body: () => void): void {
  if (chromiumPath) {
    describe(name, body);
  } else if (inCI()) {
    describe(name, () => {
      it("needs Chromium", () => {
        throw new Error(
          `Chromium is required in CI: ${chromiumProblem} (.ci/run installs the chromium package with apt-get)`,
        );
      });
    });
  } else {
    describe.skip(`${name} (skipped: ${chromiumProblem})`, body);
  }
}

/**
 * Pids of the processes whose environment holds `NAME=value`: give a CLI run
 * a unique variable and find the Chromium it started (Chromium inherits the
 * environment, less secrets) even after the CLI has exited.
 */
export async function processesWithEnv(name: string, value: string): Promise<number[]> {
  const { readdir, readFile } = await import("node:fs/promises");
  const needle = `${name}=${value}`;
  const found: number[] = [];
  for (const entry of await readdir("/proc")) {
    if (!/^\d+$/.test(entry)) continue;
    const environ = await readFile(`/proc/${entry}/environ`, "utf8").catch(() => "");
    if (environ.split("\0").includes(needle)) found.push(Number(entry));
  }
  return found;
}
