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
import {
  type HeartbeatView,
  listHeartbeatIds,
  loadHeartbeat,
  requireHeartbeat,
} from "./heartbeats.js";

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

/** Which stored decision: one call of one round (call ids repeat across ticks). */
export type DecisionKey = Pick<StoredDecision, "attempt" | "iteration" | "callId">;

/**
 * Where the approvals wait reads the operator's decisions: the decision files
 * of a state dir ({@link fileDecisions}), or the database's `decisions` table
 * (`pgDecisions` in `services/pg/decisions.ts`).
 */
export interface DecisionSource {
  /** Every decision stored for heartbeat `id`, whatever its round (the wait keeps its own round's). */
  read(id: string): Promise<StoredDecision[]>;
  /** Removes one call's stored decision of one round once it is journaled (a missing one is fine). */
  remove(id: string, key: DecisionKey): Promise<void>;
}

/** A {@link DecisionSource} that also stores decisions (`approve`, `deny`, serve's API). */
export interface DecisionInbox extends DecisionSource {
  /**
   * Stores decisions. One for a call of that round already stored is not
   * overwritten; returns the decisions stored.
   */
  write(decisions: StoredDecision[]): Promise<StoredDecision[]>;
}

/** The decision files of `stateDir` (`heartbeat-<id>.decisions/<key>.json`) as a {@link DecisionInbox}. */
export function fileDecisions(stateDir: string): DecisionInbox {
  return {
    async read(id) {
      let names: string[];
      try {
        names = await fs.readdir(decisionsDirOf(stateDir, id));
      } catch (error) {
        if (errnoCode(error) === "ENOENT" || errnoCode(error) === "ENOTDIR") return [];
        throw error;
      }
      const stored = await Promise.all(
        names
          .filter((name) => name.endsWith(".json") && !name.startsWith("."))
          .map((name) =>
            readDecision(path.join(decisionsDirOf(stateDir, id), name)).catch(() => null),
          ),
      );
      return stored.filter((d): d is StoredDecision => d !== null && d.id === id);
    },
    remove: (id, key) => removeDecision(decisionFileOf(stateDir, id, key, key.callId)),
    async write(decisions) {
      const written: StoredDecision[] = [];
      for (const decision of decisions) {
        await fs.mkdir(decisionsDirOf(stateDir, decision.id), { recursive: true, mode: 0o700 });
        const file = decisionFileOf(stateDir, decision.id, decision, decision.callId);
        // Decided meanwhile by someone else: the first decision stands.
        if (await readDecision(file).catch(() => null)) continue;
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
    },
  };
}

/**
 * Where approvals are listed and decided: the heartbeats of a state dir (a
 * path) or of a database (`databasePlace`), each with its decisions.
 */
export interface ApprovalsPlace {
  /** Every heartbeat whose snapshot can be read (a place may leave out those it knows wait for nothing). */
  views(): Promise<HeartbeatView[]>;
  /** One heartbeat, which must exist (a {@link UsageError} naming the id otherwise). */
  view(id: string): Promise<HeartbeatView>;
  /** The decisions of these heartbeats. */
  decisions: DecisionInbox;
}

/** The heartbeats of a state dir as an {@link ApprovalsPlace}. */
export function fileApprovalsPlace(stateDir: string): ApprovalsPlace {
  return {
    async views() {
      const ids = await listHeartbeatIds(stateDir);
      const views = await Promise.all(
        ids.map((id) =>
          loadHeartbeat(heartbeatPaths(stateDir, id), id).catch((error) => skipUnusable(error)),
        ),
      );
      return views.filter((v): v is HeartbeatView => v !== null);
    },
    async view(id) {
      return loadHeartbeat(await requireHeartbeat(stateDir, id), id);
    },
    decisions: fileDecisions(stateDir),
  };
}

const placeOf = (where: string | ApprovalsPlace) =>
  typeof where === "string" ? fileApprovalsPlace(where) : where;

const sameKey = (a: DecisionKey, b: DecisionKey) =>
  a.attempt === b.attempt && a.iteration === b.iteration && a.callId === b.callId;

/** The pending calls of one heartbeat, with any decision already stored for them. */
async function pendingOf(
  view: HeartbeatView,
  decisions: DecisionSource,
): Promise<PendingApprovalView[]> {
  const round = waitingRoundOf(view.file);
  if (!round) return [];
  const stored = await decisions.read(view.id).catch(() => []);
  return round.pending.map((call) => ({
    ...call,
    id: view.id,
    tick: round.tick,
    iteration: round.iteration,
    attempt: round.attempt,
    decision:
      stored.find((d) =>
        sameKey(d, { attempt: round.attempt, iteration: round.iteration, callId: call.callId }),
      ) ?? null,
  }));
}

/**
 * Every tool call that waits for the operator, oldest first, in a state dir
 * (a path) or another {@link ApprovalsPlace}. A heartbeat whose state cannot
 * be read is skipped (`status` reports it).
 */
export async function listPendingApprovals(
  where: string | ApprovalsPlace,
): Promise<PendingApprovalView[]> {
  const place = placeOf(where);
  const views = await place.views();
  const lists = await Promise.all(views.map((view) => pendingOf(view, place.decisions)));
  return lists.flat().sort((a, b) => a.since.localeCompare(b.since) || a.id.localeCompare(b.id));
}

function skipUnusable(error: unknown): null {
  if (error instanceof StateFileError) return null;
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
  where: string | ApprovalsPlace,
  id: string,
  request: DecisionRequest,
): Promise<StoredDecision[]> {
  const place = placeOf(where);
  const pending = await pendingOf(await place.view(id), place.decisions);
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
  return place.decisions.write(
    undecided.map(
      (call): StoredDecision => ({
        schemaVersion: 1,
        id,
        attempt: call.attempt,
        iteration: call.iteration,
        callId: call.callId,
        decision: request.decision,
        reason,
        by: request.by,
        at,
      }),
    ),
  );
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
