/**
 * Durable approvals: which tool calls wait for the operator (read from the
 * state files: the tool loop's `awaitingApproval` state and its pending
 * calls), and the operator's decisions, stored one file per call in
 * `heartbeat-<id>.decisions/` beside the state file. A decision is written
 * whether or not the heartbeat runs; a running heartbeat polls for it, a
 * stopped one finds it when it resumes. The runtime journals a decision
 * before it removes the file, so the journal is the record and the files only
 * an inbox.
 */
import { createHash } from "node:crypto";
import * as fs from "node:fs/promises";
import * as path from "node:path";
import { z } from "zod";
import {
  CommandFailedError,
  errnoCode,
  PersistError,
  StateFileError,
  UsageError,
} from "../errors.js";
import type { ApprovalDecision, PendingApproval } from "../machines/toolLoop.types.js";
import { waitingRoundOf } from "./awaiting.js";
import { listHeartbeatIds, loadHeartbeat, requireHeartbeat } from "./heartbeats.js";

export { waitingRoundOf } from "./awaiting.js";

import { heartbeatPaths, readRegularFile, writeFileAtomic } from "./store/index.js";

/** One call waiting for the operator, as `approvals` lists it. */
export interface PendingApprovalView extends PendingApproval {
  /** The heartbeat's id. */
  id: string;
  /** The tick the call belongs to (the tick in progress). */
  tick: number;
  /** The model call (within the tick) that asked for it. */
  iteration: number;
  /** The tick attempt (its start time). */
  attempt: string;
  /** A decision stored but not yet applied (the heartbeat is not running, or not yet polled); null when undecided. */
  decision: StoredDecision | null;
}

/** Who decides: the user name and pid of the deciding process. */
export interface Decider {
  user: string;
  pid: number;
}

/** What {@link decideApproval} is asked to do. */
export interface DecisionRequest {
  /** One call; all pending calls of the heartbeat when absent. */
  callId?: string | undefined;
  decision: "approve" | "deny";
  reason?: string | undefined;
  by: Decider;
  /** The decision's time (ISO); default now. */
  at?: string;
}

const StoredDecisionSchema = z.object({
  schemaVersion: z.literal(1),
  id: z.string(),
  attempt: z.string(),
  iteration: z.number().int(),
  callId: z.string(),
  decision: z.enum(["approve", "deny"]),
  reason: z.string().nullable(),
  by: z.object({ user: z.string(), pid: z.number().int() }),
  at: z.string(),
});

/** A decision file (`heartbeat-<id>.decisions/<key>.json`). */
export type StoredDecision = z.infer<typeof StoredDecisionSchema>;

/** The directory of heartbeat `id`'s decision files. */
export function decisionsDirOf(stateDir: string, id: string): string {
  return path.join(stateDir, `heartbeat-${id}.decisions`);
}

/** The decision file of one call of one round (call ids repeat across ticks, so the round is part of the key). */
export function decisionFileOf(
  stateDir: string,
  id: string,
  round: { attempt: string; iteration: number },
  callId: string,
): string {
  const key = createHash("sha256")
    .update(`${round.attempt}|${round.iteration}|${callId}`)
    .digest("hex")
    .slice(0, 32);
  return path.join(decisionsDirOf(stateDir, id), `${key}.json`);
}

/**
 * Reads the stored decision of one call; null when there is none.
 * @throws StateFileError when the file is there but unusable (it is left as it is).
 */
export async function readDecision(file: string): Promise<StoredDecision | null> {
  let text: string | null;
  try {
    text = await readRegularFile(file);
  } catch (error) {
    throw new StateFileError(
      `Cannot read the decision file ${file}: ${(error as Error).message}`,
      file,
      "unreadable",
      { cause: error, hint: "Move it away; the decision can then be given again." },
    );
  }
  if (text === null) return null;
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    value = undefined;
  }
  const parsed = StoredDecisionSchema.safeParse(value);
  if (!parsed.success) {
    throw new StateFileError(
      `The decision file ${file} is not a valid decision; it was left as it is.`,
      file,
      "invalid",
      { hint: "Move it away; the decision can then be given again." },
    );
  }
  return parsed.data;
}

/** Removes a decision file once its decision is journaled (a missing one is fine). */
export async function removeDecision(file: string): Promise<void> {
  await fs.rm(file, { force: true });
}

/** The pending calls of one heartbeat, with any decision already stored for them. */
async function pendingOf(stateDir: string, id: string): Promise<PendingApprovalView[]> {
  const view = await loadHeartbeat(heartbeatPaths(stateDir, id), id);
  const round = waitingRoundOf(view.file);
  if (!round) return [];
  return Promise.all(
    round.pending.map(async (call) => ({
      ...call,
      id,
      tick: round.tick,
      iteration: round.iteration,
      attempt: round.attempt,
      decision: await readDecision(decisionFileOf(stateDir, id, round, call.callId)).catch(
        () => null,
      ),
    })),
  );
}

/**
 * Every tool call in `stateDir` that waits for the operator, oldest first.
 * A heartbeat whose state file cannot be read is skipped (`status` reports it).
 */
export async function listPendingApprovals(stateDir: string): Promise<PendingApprovalView[]> {
  const ids = await listHeartbeatIds(stateDir);
  const lists = await Promise.all(
    ids.map((id) => pendingOf(stateDir, id).catch((error) => skipUnusable(error))),
  );
  return lists.flat().sort((a, b) => a.since.localeCompare(b.since) || a.id.localeCompare(b.id));
}

function skipUnusable(error: unknown): PendingApprovalView[] {
  if (error instanceof StateFileError) return [];
  throw error;
}

/**
 * Decides one pending call of heartbeat `id` (or all of them without
 * `callId`): the decision is written atomically to its file, where the
 * heartbeat picks it up (within a second while it runs; when it resumes
 * otherwise). Returns the decisions written.
 *
 * @throws UsageError for an unknown id or call id (exit 2);
 *   CommandFailedError when nothing waits or the call is already decided (exit 1).
 */
export async function decideApproval(
  stateDir: string,
  id: string,
  request: DecisionRequest,
): Promise<StoredDecision[]> {
  await requireHeartbeat(stateDir, id);
  const pending = await pendingOf(stateDir, id);
  if (pending.length === 0) {
    throw new CommandFailedError(
      "nothing-pending",
      `Heartbeat ${id} has no tool call waiting for approval.`,
      { hint: "`ravenclaws approvals` lists the calls that wait." },
    );
  }
  let chosen = pending;
  if (request.callId !== undefined) {
    chosen = pending.filter((p) => p.callId === request.callId);
    if (chosen.length === 0) {
      throw new UsageError(
        `Heartbeat ${id} has no pending call "${request.callId}". Pending: ${pending
          .map((p) => `${p.callId} (${p.tool} ${p.what})`)
          .join(", ")}.`,
        {
          option: "--call",
          code: "unknown-call",
          hint: "Pass one of the pending call ids, or no --call to decide them all.",
        },
      );
    }
  }
  const undecided = chosen.filter((p) => p.decision === null);
  if (undecided.length === 0) {
    const first = chosen[0] as PendingApprovalView;
    const d = first.decision as StoredDecision;
    throw new CommandFailedError(
      "already-decided",
      `${chosen.length === 1 ? `Call ${first.callId} of heartbeat ${id} is` : `The pending calls of heartbeat ${id} are`} already decided (${d.decision} by ${d.by.user} at ${d.at}); the heartbeat applies it when it polls or resumes.`,
      { hint: `Run \`ravenclaws run --id ${id}\` if it is not running.` },
    );
  }
  const at = request.at ?? new Date().toISOString();
  const reason = request.reason?.trim() ? request.reason.trim() : null;
  await fs.mkdir(decisionsDirOf(stateDir, id), { recursive: true, mode: 0o700 });
  const written: StoredDecision[] = [];
  for (const call of undecided) {
    const decision: StoredDecision = {
      schemaVersion: 1,
      id,
      attempt: call.attempt,
      iteration: call.iteration,
      callId: call.callId,
      decision: request.decision,
      reason,
      by: request.by,
      at,
    };
    const file = decisionFileOf(stateDir, id, call, call.callId);
    try {
      await writeFileAtomic(file, `${JSON.stringify(decision, null, 2)}\n`);
    } catch (error) {
      throw new PersistError(
        `Cannot write the decision file ${file}: ${(error as Error).message}`,
        file,
        {
          cause: error,
          hint: `Check the state dir's permissions and free space (${errnoCode(error) ?? "error"}).`,
        },
      );
    }
    written.push(decision);
  }
  return written;
}

/** The decision the tool loop receives for a stored one. */
export function toApprovalDecision(stored: StoredDecision): ApprovalDecision {
  return {
    callId: stored.callId,
    decision: stored.decision,
    reason: stored.reason,
    via: "command",
    by: stored.by,
    at: stored.at,
  };
}
