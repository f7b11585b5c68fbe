/**
 * How shell_exec was confined in a run, as the journal's `run` record keeps
 * it, and its one-line description for `show` and `logs`.
 */
import type { SandboxMode } from "../../../schemas/config.js";

/** How shell_exec is confined in one run, and why. */
export interface ShellConfinement {
  /** The `--sandbox` setting. */
  mode: SandboxMode;
  /** What commands actually run in: bubblewrap, or nothing (`off`, or `auto` without a usable bwrap). */
  sandbox: "bwrap" | "none";
  /** Whether shell_exec is offered to the model at all. */
  offered: boolean;
  /** Whether commands reach the network. */
  network: boolean;
  /** One sentence: why this choice. */
  reason: string;
}

/**
 * One line for people, from a journaled record (checked loosely: journals
 * are read back as plain JSON).
 */
export function describeShellConfinement(record: unknown): string {
  if (typeof record !== "object" || record === null) return "unknown";
  const shell = record as Partial<ShellConfinement>;
  const what = !shell.offered
    ? "not offered"
    : shell.sandbox === "bwrap"
      ? `sandboxed (bubblewrap), network ${shell.network ? "on" : "off"}`
      : "unconfined";
  return `${what} (--sandbox ${shell.mode ?? "?"}: ${shell.reason ?? "no reason recorded"})`;
}
