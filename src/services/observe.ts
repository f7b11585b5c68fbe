/**
 * The `observe` actor's work for one heartbeat (issue 16): what a tick sees
 * when it begins. The checklist (HEARTBEAT.md or `--checklist`) every time;
 * the workspace fingerprint only when quiet ticks are on, with the
 * checklist's hash folded in so an edit to a checklist outside the workdir
 * counts as a change. Shared by `run` and the host of `serve`.
 */
import { createHash } from "node:crypto";
import * as fs from "node:fs/promises";
import * as path from "node:path";
import type { ObserveInput, ObserveOutput } from "../machines/heartbeat.types.js";
import { checklistPath, readChecklist } from "./checklist.js";
import { workspaceFingerprint } from "./fingerprint.js";

/** The checklist file of a heartbeat: `--checklist` relative to the workdir, else `HEARTBEAT.md` in it. */
export function checklistFileOf(workdir: string, checklist: string | undefined | null): string {
  return checklistPath(workdir, checklist ? path.resolve(workdir, checklist) : null);
}

/** The observer of a heartbeat in `workdir` whose state dir is `stateDir`. */
export function workspaceObserver(options: {
  workdir: string;
  stateDir: string;
  checklistFile: string;
  checklistMaxBytes: number;
}): (input: ObserveInput, signal: AbortSignal) => Promise<ObserveOutput> {
  // Real paths, so the walk recognises the state dir whatever links lead to either.
  let dirs: Promise<{ workdir: string; stateDir: string }> | null = null;
  const real = (p: string) => fs.realpath(p).catch(() => path.resolve(p));
  return async (input, signal) => {
    const checklist = await readChecklist(options.checklistFile, options.checklistMaxBytes);
    if (!input.fingerprint) return { fingerprint: null, checklist };
    dirs ??= Promise.all([real(options.workdir), real(options.stateDir)]).then(
      ([workdir, stateDir]) => ({ workdir, stateDir }),
    );
    const { workdir, stateDir } = await dirs;
    const workspace = await workspaceFingerprint(workdir, { stateDir, signal });
    const fingerprint = checklist
      ? `${workspace}:${createHash("sha256").update(JSON.stringify(checklist)).digest("hex").slice(0, 16)}`
      : workspace;
    return { fingerprint, checklist };
  };
}
