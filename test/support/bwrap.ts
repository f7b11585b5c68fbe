/**
 * Whether bubblewrap works on this machine, for the tests that need it: they
 * run where it works, fail in CI (`CI=true`) with the reason where it does
 * not, and are skipped only on a developer machine without it.
 */
import { spawnSync } from "node:child_process";
import { describe, it } from "vitest";

function probe(): string | undefined {
  const result = spawnSync(
    process.env.RAVENCLAWS_BWRAP_PATH || "bwrap",
    [
      "--unshare-all",
      "--die-with-parent",
      "--ro-bind",
      "/",
      "/",
      "--proc",
      "/proc",
      "--dev",
      "/dev",
      "true",
    ],
    { encoding: "utf8", timeout: 10_000 },
  );
  if (result.error)
    return `bwrap could not be started (${result.error.message}); install the bubblewrap package`;
  if (result.status !== 0) return `bwrap failed (exit ${result.status}): ${result.stderr.trim()}`;
  return undefined;
}

/** Why bubblewrap cannot be used here, or undefined when it can. */
export const bwrapProblem = probe();

/**
 * `describe` for tests that need bubblewrap. Where it does not work: in CI a
 * failing test that says why, elsewhere the block is skipped.
 */
export function describeWithBwrap(name: string, body: () => void): void {
  if (!bwrapProblem) {
    describe(name, body);
  } else if (process.env.CI === "true") {
    describe(name, () => {
      it("needs bubblewrap", () => {
        throw new Error(`bubblewrap is required in CI: ${bwrapProblem}`);
      });
    });
  } else {
    describe.skip(`${name} (skipped: ${bwrapProblem})`, body);
  }
}
