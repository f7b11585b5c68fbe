/**
 * Which tool calls a state file says wait for the operator: the tool loop
 * child (`execute`) of a heartbeat checkpointed in `executing` whose state is
 * `awaitingApproval`, or the loop a stop left waiting (`shutdown` with the
 * context's `parked`). Dependency-free (no zod, no I/O), so the read commands
 * may import it at load time.
 */
import type { PendingApproval } from "../machines/toolLoop.types.js";

/** The round of tool calls that waits for approval. */
export interface WaitingRound {
  tick: number;
  iteration: number;
  attempt: string;
  pending: PendingApproval[];
}

const isRecord = (value: unknown): value is Record<string, unknown> =>
  typeof value === "object" && value !== null && !Array.isArray(value);

const PENDING_FIELDS = ["callId", "tool", "arguments", "rule", "what", "since"] as const;

const isPending = (value: unknown): value is PendingApproval =>
  isRecord(value) && PENDING_FIELDS.every((key) => typeof value[key] === "string");

/** The tool loop's context in a checkpoint taken in `executing` while it waits in `awaitingApproval`. */
function waitingLoopOf(file: {
  status: string;
  snapshot: unknown;
}): Record<string, unknown> | null {
  if (file.status !== "executing" || !isRecord(file.snapshot)) return null;
  const children = file.snapshot.children;
  const child = isRecord(children) && isRecord(children.execute) ? children.execute.snapshot : null;
  if (!isRecord(child) || child.value !== "awaitingApproval" || !isRecord(child.context)) {
    return null;
  }
  return child.context;
}

/** The tool loop a stop left waiting (the heartbeat's `parked`, status `shutdown`). */
function parkedLoopOf(snapshot: Record<string, unknown>): Record<string, unknown> | null {
  const context = snapshot.context;
  return isRecord(context) && isRecord(context.parked) ? context.parked : null;
}

/** The round waiting for approval in a state file, or null when none waits (or the snapshot does not say so clearly). */
export function waitingRoundOf(
  file: { status: string; snapshot: unknown } | null | undefined,
): WaitingRound | null {
  if (!isRecord(file?.snapshot)) return null;
  const loop = file.status === "shutdown" ? parkedLoopOf(file.snapshot) : waitingLoopOf(file);
  if (!loop) return null;
  const { tick, iteration, attempt, pending } = loop;
  if (typeof tick !== "number" || typeof iteration !== "number" || typeof attempt !== "string") {
    return null;
  }
  if (!Array.isArray(pending) || pending.length === 0 || !pending.every(isPending)) return null;
  return { tick, iteration, attempt, pending: pending.map((p) => ({ ...p })) };
}
