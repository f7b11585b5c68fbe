/**
 * The host's records as the API's JSON (`api.types.ts`): only the fields the
 * API documents, so nothing else (paths of other files, anything secret) leaks
 * by accident.
 */
import type {
  HeartbeatDetail as HostDetail,
  HeartbeatSummary as HostSummary,
} from "../host/types.js";
import type {
  HeartbeatDetail,
  HeartbeatStatus,
  HeartbeatSummary,
  PendingApprovalCall,
  SavedSettingValue,
  TickOutcome,
} from "./api.types.js";

/**
 * A state value as a dotted path: `"sleeping"` → `sleeping`,
 * `{"executing":"calling"}` → `executing.calling`. The host gives it as JSON
 * text (or plain text); both are accepted.
 */
export function statePath(value: unknown): string {
  let v = value;
  if (typeof v === "string") {
    // Plain names are the common case: parse (and maybe throw) only what looks like JSON.
    if (!v.startsWith("{") && !v.startsWith('"')) return v;
    try {
      v = JSON.parse(v);
    } catch {
      return v as string;
    }
  }
  const parts: string[] = [];
  while (v && typeof v === "object") {
    const [key, inner] = Object.entries(v as Record<string, unknown>)[0] ?? [];
    if (key === undefined) break;
    parts.push(key);
    v = inner;
  }
  if (typeof v === "string") parts.push(v);
  return parts.join(".");
}

const OUTCOMES = new Set<string>(["ok", "idle", "failed", "interrupted"]);

/** The overview row of a hosted heartbeat. */
export function summaryOf(s: HostSummary): HeartbeatSummary {
  return {
    id: s.id,
    goal: s.goal,
    status: s.status as HeartbeatStatus,
    state: statePath(s.state),
    tick: s.tick,
    nextTickAt: s.nextTickAt,
    tokens: s.usage.totalTokens,
    costUsd: s.usage.costUsd ?? null,
    lastOutcome:
      s.lastOutcome !== null && OUTCOMES.has(s.lastOutcome) ? (s.lastOutcome as TickOutcome) : null,
    reason: s.reason,
    pendingApprovals: s.pendingApprovals,
    workdir: s.workdir,
    updatedAt: s.updatedAt,
    problem: s.problem,
  };
}

/** One heartbeat in full, with the calls waiting for a decision. */
export function detailOf(d: HostDetail, approvals: PendingApprovalCall[]): HeartbeatDetail {
  const settings: Record<string, SavedSettingValue> = {};
  for (const [key, value] of Object.entries(d.settings)) {
    // Saved settings never hold the key (the state file schema refuses it); belt and braces.
    if (key === "apiKey") continue;
    settings[key] = value;
  }
  const maxTicks = typeof settings.maxTicks === "number" ? settings.maxTicks : 0;
  return {
    ...summaryOf(d),
    pendingApprovals: Math.max(d.pendingApprovals, approvals.length),
    goalText: d.goalText,
    createdAt: d.createdAt,
    maxTicks,
    progress: d.progress,
    lastAssessment: d.lastAssessment
      ? {
          goalComplete: d.lastAssessment.goalComplete,
          actionNeeded: d.lastAssessment.actionNeeded,
          assessment: d.lastAssessment.assessment,
          progressSummary: d.lastAssessment.progressSummary,
        }
      : null,
    lastPlan: d.lastPlan ? { steps: [...d.lastPlan.steps] } : null,
    lastResult: d.lastResult,
    usage: { ...d.usage },
    error: d.error ? { code: d.error.code, message: d.error.message } : null,
    settings,
    approvals,
  };
}
