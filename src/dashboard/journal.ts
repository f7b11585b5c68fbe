/**
 * Pure derivations from a heartbeat's journal: the tick timeline rows and
 * the token and cost series the plots draw. No DOM.
 */
import type { ApiUsage, JournalEntry, TickJournalEntry } from "../serve/api.types.js";

/** One row of the tick timeline. */
export interface TickRow {
  tick: number;
  /** `ok`, `idle`, `failed`, `interrupted`. */
  status: string;
  wakeReason: string;
  startedAt: string;
  durationMs: number;
  /** Tokens of this tick. */
  tokens: number;
  /** Dollars of this tick; null without prices. */
  costUsd: number | null;
  /** Tool calls of this tick, in order (`name` and `status`). */
  tools: Array<{ name: string; status: string }>;
  /** The result, else the assessment, else the first error's message. */
  summary: string;
  /** Where the heartbeat went next (`sleeping`, `completed`, …). */
  next: string;
}

/** Whether a journal line is a tick line (a finished or interrupted tick). */
export function isTickEntry(entry: JournalEntry): entry is TickJournalEntry {
  return entry.type === "tick" && typeof (entry as { tick?: unknown }).tick === "number";
}

function usageOf(value: unknown): ApiUsage {
  const u = (value ?? {}) as Partial<ApiUsage>;
  return {
    calls: u.calls ?? 0,
    promptTokens: u.promptTokens ?? 0,
    completionTokens: u.completionTokens ?? 0,
    totalTokens: u.totalTokens ?? 0,
    ...(typeof u.costUsd === "number" ? { costUsd: u.costUsd } : {}),
  };
}

/**
 * The ticks of a journal, oldest first. A tick journaled twice (an
 * interrupted attempt, then the finished one) keeps its last line.
 */
export function tickRows(entries: readonly JournalEntry[]): TickRow[] {
  const byTick = new Map<number, TickRow>();
  for (const entry of entries) {
    if (!isTickEntry(entry)) continue;
    const usage = usageOf(entry.usage);
    const firstError = Array.isArray(entry.errors) ? entry.errors[0]?.message : undefined;
    byTick.set(entry.tick, {
      tick: entry.tick,
      status: String(entry.status),
      wakeReason: String(entry.wakeReason ?? ""),
      startedAt: String(entry.startedAt ?? ""),
      durationMs: typeof entry.durationMs === "number" ? entry.durationMs : 0,
      tokens: usage.totalTokens,
      costUsd: usage.costUsd ?? null,
      tools: (Array.isArray(entry.toolCalls) ? entry.toolCalls : []).map((c) => ({
        name: String(c.name),
        status: String(c.status),
      })),
      summary: entry.result ?? entry.assessment ?? firstError ?? "",
      next: String(entry.next ?? ""),
    });
  }
  return [...byTick.values()].sort((a, b) => a.tick - b.tick);
}

/** The plots' data: one point per tick, x = tick number. */
export interface UsageSeries {
  ticks: number[];
  /** Tokens of each tick. */
  tokens: number[];
  /** Tokens used up to and including each tick. */
  totalTokens: number[];
  /** Dollars of each tick; null where unknown. */
  cost: Array<number | null>;
  /** Dollars up to and including each tick; null where unknown. */
  totalCost: Array<number | null>;
  /** Whether any tick has a cost (prices set). */
  hasCost: boolean;
}

/**
 * Per-tick and running totals of tokens and cost from the tick rows. The
 * running totals are summed from the rows, so a journal cut by `limit`
 * starts from its first row; `baseline` (the usage before that row) shifts
 * them to lifetime figures.
 */
export function usageSeries(
  rows: readonly TickRow[],
  baseline: { tokens: number; costUsd: number | null } = { tokens: 0, costUsd: 0 },
): UsageSeries {
  const out: UsageSeries = {
    ticks: [],
    tokens: [],
    totalTokens: [],
    cost: [],
    totalCost: [],
    hasCost: false,
  };
  let tokens = baseline.tokens;
  let cost: number | null = baseline.costUsd;
  for (const row of rows) {
    tokens += row.tokens;
    out.ticks.push(row.tick);
    out.tokens.push(row.tokens);
    out.totalTokens.push(tokens);
    out.cost.push(row.costUsd);
    if (row.costUsd !== null) out.hasCost = true;
    cost = cost === null || row.costUsd === null ? null : cost + row.costUsd;
    out.totalCost.push(cost);
  }
  return out;
}

/**
 * The usage before the first row of a cut journal: the first tick line's
 * `totalUsage` minus its own `usage` (zero for a whole journal).
 */
export function baselineOf(entries: readonly JournalEntry[]): {
  tokens: number;
  costUsd: number | null;
} {
  const first = entries.find(isTickEntry);
  if (!first) return { tokens: 0, costUsd: 0 };
  const total = usageOf(first.totalUsage);
  const own = usageOf(first.usage);
  const costUsd =
    total.costUsd !== undefined && own.costUsd !== undefined ? total.costUsd - own.costUsd : 0;
  return { tokens: Math.max(0, total.totalTokens - own.totalTokens), costUsd };
}
