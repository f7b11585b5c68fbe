/**
 * The API's way to approvals: the approvals service (`services/approvals.ts`)
 * behind {@link ApprovalsPort}. Decisions are stored durably by the service,
 * whether or not the heartbeat is ticking; the host applies them.
 */
import * as os from "node:os";
import { UsageError } from "../errors.js";
import type { PendingApprovalCall } from "./api.types.js";
import { ApiRequestError } from "./request.js";
import type { ApprovalsPort } from "./server.js";

/** The longest argument text an answer carries per call. */
const ARGS_LIMIT = 4_000;

/** Who the decisions are recorded as made by: this server's user, through the API. */
function decider(): { user: string; pid: number } {
  let user = "unknown";
  try {
    user = os.userInfo().username;
  } catch {
    // No passwd entry (some containers): the pid still says which process.
  }
  return { user: `${user} (API)`, pid: process.pid };
}

/**
 * Approvals of the heartbeats in `stateDir`. `hasPending(id)` says cheaply
 * (from the host's overview) whether a heartbeat may have calls waiting, so a
 * detail request does not read every state file when none waits.
 */
export async function approvalsPort(
  stateDir: string,
  hasPending: (id: string) => boolean,
): Promise<ApprovalsPort> {
  const service = await import("../services/approvals.js");
  return {
    async pending(id) {
      if (!hasPending(id)) return [];
      const all = await service.listPendingApprovals(stateDir);
      return all
        .filter((p) => p.id === id && p.decision === null)
        .map(
          (p): PendingApprovalCall => ({
            callId: p.callId,
            tool: p.tool,
            args:
              p.arguments.length > ARGS_LIMIT
                ? `${p.arguments.slice(0, ARGS_LIMIT)}…`
                : p.arguments,
            rule: p.rule ?? null,
            what: p.what,
            since: p.since,
          }),
        );
    },
    async decide(id, request) {
      try {
        const written = await service.decideApproval(stateDir, id, {
          ...(request.callId !== undefined ? { callId: request.callId } : {}),
          decision: request.decision,
          ...(request.reason !== undefined ? { reason: request.reason } : {}),
          by: decider(),
        });
        return written.map((d) => d.callId);
      } catch (error) {
        if (error instanceof UsageError && error.code === "unknown-call") {
          throw new ApiRequestError(404, "unknown-call", error.message, "callId");
        }
        throw error;
      }
    },
  };
}
