/**
 * Turns what a running heartbeat persists into notification events, the way
 * the reporter turns it into lines: it listens to the runtime's `persisted`
 * callback (the state file and the journal lines of one persist) and emits
 * `completed`, `failed`, `budget`, `attention` and `ok`. An ordinary tick
 * emits only `ok`, which the notifier drops unless `--notify-on ok`.
 */
import type { StateFile } from "../../schemas/stateFile.js";
import type { JournalEntry } from "../store/index.js";
import {
  approvalNeededEvent,
  attentionEvent,
  budgetEvent,
  completedEvent,
  type EventBase,
  failedEvent,
  okEvent,
  oneLine,
  type PendingCallInfo,
} from "./event.js";
import type { Notifier } from "./notifier.js";

/** The budget thresholds, in percent, that notify once each. */
const THRESHOLDS = [80, 100] as const;

/** The part of the runtime's events the notifications need. */
export interface NotifyingEvents {
  persisted(file: StateFile, entries: JournalEntry[]): void;
  /**
   * Tool calls wait for a decision (the approvals work calls this when the
   * tool loop parks in its waiting state): sends `approval-needed` with the
   * calls and the `ravenclaws approve <id>` command. Within a minute of the
   * last one, the newer list replaces the held one (coalescing).
   */
  approvalNeeded(
    heartbeat: { id: string; goal: string; tick: number },
    pending: PendingCallInfo[],
  ): void;
}

const str = (v: unknown) => (typeof v === "string" ? v : "");

/**
 * The runtime events that notify. `now` gives the events' time. The first
 * persist of the run (its start) sets the budget level already reached, so a
 * resumed heartbeat does not announce a threshold it crossed before.
 */
export function notifyingEvents(
  notifier: Pick<Notifier, "emit">,
  now: () => number = Date.now,
): NotifyingEvents {
  let budgetLevel: number | null = null;
  return {
    approvalNeeded(heartbeat, pending) {
      notifier.emit(
        approvalNeededEvent(
          {
            heartbeatId: heartbeat.id,
            goal: heartbeat.goal,
            tick: heartbeat.tick,
            status: "executing",
            reason: "awaiting-approval",
            time: new Date(now()).toISOString(),
          },
          pending,
        ),
      );
    },
    persisted(file, entries) {
      const base: EventBase = {
        heartbeatId: file.id,
        goal: file.goal,
        tick: file.tick,
        status: file.status,
        reason: file.reason,
        time: new Date(now()).toISOString(),
      };
      const end = entries.find((e) => e.type === "end");

      for (const entry of entries) {
        if (entry.type !== "tick") continue;
        const attention = str(entry.attention).trim();
        if (attention) {
          notifier.emit(attentionEvent({ ...base, tick: Number(entry.tick) }, attention));
        } else if (!end && (entry.status === "ok" || entry.status === "idle")) {
          const summary = oneLine(str(entry.result) || str(entry.assessment), 200);
          notifier.emit(okEvent({ ...base, tick: Number(entry.tick) }, summary, str(entry.status)));
        }
      }

      const max = file.snapshot.context.settings.maxTokens ?? 0;
      if (max > 0) {
        const used = file.usage.totalTokens;
        // A heartbeat ended for its budget spent it, though the call that would
        // have crossed the line was never made.
        const spent = used >= max || file.reason === "budget";
        const level = spent ? 100 : (THRESHOLDS.filter((t) => used * 100 >= t * max).at(-1) ?? 0);
        if (budgetLevel !== null && level > budgetLevel) {
          notifier.emit(
            budgetEvent(base, { limit: "max-tokens", threshold: level as 80 | 100, used, max }),
          );
        }
        budgetLevel = Math.max(budgetLevel ?? 0, level);
      } else {
        budgetLevel ??= 0;
      }

      for (const entry of entries) {
        if (entry.type !== "daily-budget") continue;
        const usage = (entry.usage ?? {}) as { totalTokens?: number; costUsd?: number };
        const byCost = entry.cap === "cost";
        notifier.emit(
          budgetEvent(base, {
            limit: byCost ? "max-cost-per-day" : "max-tokens-per-day",
            threshold: 100,
            used: Number((byCost ? usage.costUsd : usage.totalTokens) ?? 0),
            max: Number((byCost ? entry.maxCostPerDay : entry.maxTokensPerDay) ?? 0),
          }),
        );
      }

      if (end?.status === "completed") notifier.emit(completedEvent(base));
      if (end?.status === "failed") notifier.emit(failedEvent(base, file.error));
    },
  };
}
