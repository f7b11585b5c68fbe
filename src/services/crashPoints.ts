/**
 * Test-only crash points. Crash tests set `RAVENCLAWS_CRASH_AT` to a point's
 * name (`state:after-rename`) or to `name:N` (the Nth time that point is
 * reached, counting from 1); the process then SIGKILLs itself there, exactly
 * as a power cut or `kill -9` would stop it. Without the variable every call
 * returns at once: it is read once at startup and nothing else happens.
 *
 * Points: `state:after-temp-write`, `state:after-fsync`, `state:after-rename`
 * (in the atomic state write), `journal:mid-line` (half a journal line written)
 * `tool:during` (in the runtime, after a tool call's result is journaled, while
 * the round goes on) and `tool:before-result` (as a tool call finishes, before
 * its result is journaled: like a call that kills its runner).
 */

/** Crash point names, for callers and tests. */
export type CrashPointName =
  | "state:after-temp-write"
  | "state:after-fsync"
  | "state:after-rename"
  | "journal:mid-line"
  | "tool:during"
  | "tool:before-result";

interface Target {
  name: string;
  /** 1-based: which arrival at the point kills the process. */
  nth: number;
}

/** Parses `RAVENCLAWS_CRASH_AT` (`name` or `name:N`); null when unset or malformed. */
export function parseCrashTarget(value: string | undefined): Target | null {
  if (!value) return null;
  const match = /^(.+?)(?::(\d+))?$/.exec(value.trim());
  if (!match?.[1]) return null;
  const nth = match[2] === undefined ? 1 : Number(match[2]);
  return nth >= 1 ? { name: match[1], nth } : null;
}

const target = parseCrashTarget(process.env.RAVENCLAWS_CRASH_AT);
let arrivals = 0;

/**
 * Kills this process with SIGKILL when `RAVENCLAWS_CRASH_AT` names this point
 * (and this is the requested arrival). `beforeDying` runs synchronously just
 * before, e.g. to leave half a line behind. A no-op in normal use.
 */
export function crashPoint(name: CrashPointName, beforeDying?: () => void): void {
  if (target === null || target.name !== name) return;
  arrivals += 1;
  if (arrivals !== target.nth) return;
  beforeDying?.();
  // kill(2) on oneself delivers an unblockable signal before it returns.
  process.kill(process.pid, "SIGKILL");
}
