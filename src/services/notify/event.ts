/**
 * The notification event: one JSON object per event, the same for the
 * webhook and the command. Its `text` is one line for people (and the field
 * Slack-compatible incoming webhooks show).
 */
import type { NotifyEventKind } from "../../settings.js";

/** A tool call waiting for a decision, as an `approval-needed` event lists it. */
export interface PendingCallInfo {
  callId: string;
  tool: string;
  /** The arguments as the model gave them (JSON text, clipped). */
  arguments: string;
  /** The `ask` rule that matched. */
  rule: string | null;
  /** When it started waiting (ISO time). */
  since: string;
}

/** Where a heartbeat stands against a spending limit (`budget` events). */
export interface BudgetInfo {
  /**
   * What is limited: the lifetime token budget (`--max-tokens`), or a daily
   * cap (`--max-tokens-per-day`, `--max-cost-per-day`: `used` and `max` in
   * tokens or US dollars) that sends the heartbeat to sleep until the next day.
   */
  limit: "max-tokens" | "max-tokens-per-day" | "max-cost-per-day";
  /** The threshold crossed, in percent: 80 or 100. */
  threshold: 80 | 100;
  used: number;
  max: number;
}

/** One notification. */
export interface NotifyEvent {
  /** What happened (`--notify-on` picks these). */
  event: NotifyEventKind;
  heartbeatId: string;
  goal: string;
  /** Ticks finished. */
  tick: number;
  /** The heartbeat's status as its state file says (`sleeping`, `executing`, `completed`, `failed`). */
  status: string;
  /** Why it ended or waits (`goal-met`, `budget`, `too-many-failures`, …), null otherwise. */
  reason: string | null;
  /** One line for people; the field a Slack-compatible webhook shows. */
  text: string;
  /** When it happened (ISO time). */
  time: string;
  /** `attention`: what the model says a human should know now. */
  attention?: string;
  /** `failed`: the error that ended it, if one did. */
  error?: { code: string; message: string };
  /** `budget`: the limit and how much of it is spent. */
  budget?: BudgetInfo;
  /** `approval-needed`: the calls waiting, and the commands that decide them. */
  pending?: PendingCallInfo[];
  approveCommand?: string;
  denyCommand?: string;
  /**
   * Events of this kind for this heartbeat that arrived within a minute of
   * the last delivery and were merged into this one (the latest is sent,
   * with this count); absent when none.
   */
  coalesced?: number;
}

/** What every event of one heartbeat carries. */
export type EventBase = Pick<
  NotifyEvent,
  "heartbeatId" | "goal" | "tick" | "status" | "reason" | "time"
>;

const TEXT_LIMIT = 300;

/** Flattens white space and clips to one line of at most `max` characters. */
export function oneLine(text: string, max = TEXT_LIMIT): string {
  const flat = text.replace(/\s+/g, " ").trim();
  return flat.length <= max ? flat : `${flat.slice(0, max - 1)}…`;
}

const goalOf = (base: EventBase) => oneLine(base.goal, 80);

/** `completed`: the heartbeat met its goal or its max ticks. */
export function completedEvent(base: EventBase): NotifyEvent {
  return {
    ...base,
    event: "completed",
    text: oneLine(
      `ravenclaws: heartbeat ${base.heartbeatId} completed${base.reason ? ` (${base.reason})` : ""} at tick ${base.tick}: ${goalOf(base)}`,
    ),
  };
}

/** `failed`: the heartbeat ended failed. */
export function failedEvent(
  base: EventBase,
  error: { code: string; message: string } | null,
): NotifyEvent {
  return {
    ...base,
    event: "failed",
    ...(error ? { error: { code: error.code, message: oneLine(error.message, 1000) } } : {}),
    text: oneLine(
      `ravenclaws: heartbeat ${base.heartbeatId} failed${base.reason ? ` (${base.reason})` : ""} at tick ${base.tick}${error ? `: ${error.message}` : ""}`,
    ),
  };
}

/** `budget`: 80% or 100% of the token budget spent. */
export function budgetEvent(base: EventBase, budget: BudgetInfo): NotifyEvent {
  const counts = `${budget.used.toLocaleString("en-US")} of ${budget.max.toLocaleString("en-US")} tokens`;
  return {
    ...base,
    event: "budget",
    budget,
    text: oneLine(
      budget.limit !== "max-tokens"
        ? `ravenclaws: heartbeat ${base.heartbeatId} reached its daily cap (${
            budget.limit === "max-cost-per-day"
              ? `$${budget.used} of $${budget.max}`
              : `${budget.used.toLocaleString("en-US")} of ${budget.max.toLocaleString("en-US")} tokens`
          } today): sleeping until the next day`
        : budget.threshold >= 100
          ? `ravenclaws: heartbeat ${base.heartbeatId} has spent its token budget (${counts})`
          : `ravenclaws: heartbeat ${base.heartbeatId} has used ${budget.threshold}% of its token budget (${counts})`,
    ),
  };
}

/** `attention`: the model says a human should know something now. */
export function attentionEvent(base: EventBase, attention: string): NotifyEvent {
  return {
    ...base,
    event: "attention",
    attention,
    text: oneLine(`ravenclaws: heartbeat ${base.heartbeatId} needs attention: ${attention}`),
  };
}

/** `ok`: an ordinary tick (sent only with `--notify-on ok`). */
export function okEvent(base: EventBase, summary: string, tickStatus: string): NotifyEvent {
  return {
    ...base,
    event: "ok",
    text: oneLine(
      `ravenclaws: heartbeat ${base.heartbeatId} tick ${base.tick} ${tickStatus}${summary ? `: ${summary}` : ""}`,
    ),
  };
}

/**
 * `approval-needed`: tool calls wait for a decision. Carries the calls and
 * the exact commands that approve or deny them.
 */
export function approvalNeededEvent(base: EventBase, pending: PendingCallInfo[]): NotifyEvent {
  const id = base.heartbeatId;
  const first = pending[0];
  const what = first
    ? `${first.tool}(${oneLine(first.arguments, 80)})${pending.length > 1 ? ` and ${pending.length - 1} more` : ""}`
    : "a tool call";
  return {
    ...base,
    event: "approval-needed",
    pending,
    approveCommand: `ravenclaws approve ${id}`,
    denyCommand: `ravenclaws deny ${id} --reason "…"`,
    text: oneLine(
      `ravenclaws: heartbeat ${id} waits for approval of ${what}: run \`ravenclaws approve ${id}\` (or \`ravenclaws deny ${id}\`)`,
      500,
    ),
  };
}
