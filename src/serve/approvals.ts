/**
 * The API's way to approvals: the approvals service (`services/approvals.ts`)
 * behind {@link ApprovalsPort}. Decisions are stored durably by the service,
 * whether or not the heartbeat is ticking; the host applies them.
 */
import * as os from "node:os";
import { UsageError } from "../errors.js";
import type { ApprovalsPlace } from "../services/approvals.js";
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
 * Approvals of the heartbeats in `where`: a state dir, or another place of
 * the approvals service (the database's). `hasPending(id)` says cheaply (from
 * the host's overview) whether a heartbeat may have calls waiting, so a
 * detail request reads no snapshot when none waits.
 */
export async function approvalsPort(
  where: string | ApprovalsPlace,
  hasPending: (id: string) => boolean | Promise<boolean>,
): Promise<ApprovalsPort> {
  const service = await import("../services/approvals.js");
  const place = typeof where === "string" ? service.fileApprovalsPlace(where) : where;
  return {
    async pending(id) {
      if (!(await hasPending(id))) return [];
      // Only this heartbeat's snapshot is read.
      const one: ApprovalsPlace = {
        views: async () => [await place.view(id)],
        view: (other) => place.view(other),
        decisions: place.decisions,
      };
      const all = await service.listPendingApprovals(one);
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
        const written = await service.decideApproval(place, id, {
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
