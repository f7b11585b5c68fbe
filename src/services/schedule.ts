/**
 * When ticks run, as data: one pure planner ({@link planNextTick}) turns the
 * settings (interval or cron, failure backoff, active hours, time zone), the
 * end of the last tick and a clock reading into the next tick's time and the
 * ticks the active hours skip. The statechart gets it as its injected
 * `scheduleNextTick` action (see `timeImplementations` in src/runtime.ts);
 * a resume uses it through `rescheduledNextTick`. Cron and the window's
 * opening are evaluated with croner; nothing here reads the clock.
 */
import { Cron } from "croner";
import { UsageError } from "../errors.js";
import { insideActiveHours, parseWindow } from "../machines/activeHours.js";
import type { HeartbeatSettings, SkippedTick } from "../machines/heartbeat.types.js";

/** Longest delay between ticks after failures, in seconds. */
export const MAX_BACKOFF_SEC = 3600;

/**
 * Seconds to wait before the next tick: the interval, or after failed ticks in
 * a row an exponential backoff (base × 2^(failures − 1), capped at
 * {@link MAX_BACKOFF_SEC}) when that is longer.
 */
export function tickDelaySec(
  settings: Pick<HeartbeatSettings, "tickIntervalSec" | "failureBackoffSec">,
  consecutiveFailures: number,
): number {
  const interval = settings.tickIntervalSec;
  if (consecutiveFailures <= 0 || settings.failureBackoffSec <= 0) return interval;
  const base = Math.max(interval, settings.failureBackoffSec);
  const backoff = Math.min(base * 2 ** (consecutiveFailures - 1), MAX_BACKOFF_SEC);
  return Math.max(interval, backoff);
}

/** True when `date` falls inside the active-hours window (always true without one). */
export function inActiveHours(date: Date, settings: HeartbeatSettings): boolean {
  return insideActiveHours(date.getTime(), settings.activeHours, settings.timezone);
}

/** The next moment at or after `date` when the active-hours window is open. */
export function nextWindowOpen(date: Date, settings: HeartbeatSettings): Date {
  if (!settings.activeHours || inActiveHours(date, settings)) return date;
  const window = parseWindow(settings.activeHours);
  if (!window) return date;
  const opens = new Cron(
    `${window.start % 60} ${Math.floor(window.start / 60)} * * *`,
    settings.timezone ? { timezone: settings.timezone, paused: true } : { paused: true },
  );
  const next = opens.nextRun(date) ?? date;
  opens.stop();
  return next;
}

/** Checks `--cron`; throws a usage error naming the option when croner refuses it. */
export function validateCron(expression: string, timezone: string | null): void {
  try {
    new Cron(expression, { paused: true, ...(timezone ? { timezone } : {}) }).stop();
  } catch (error) {
    throw new UsageError(
      `--cron ${JSON.stringify(expression)} is not a valid cron expression: ${(error as Error).message}`,
      { option: "--cron", hint: 'For example --cron "*/15 * * * *" (every 15 minutes).' },
    );
  }
}

/** What the planner needs: all of it data. */
export interface TickPlanRequest {
  settings: HeartbeatSettings;
  consecutiveFailures: number;
  /**
   * A time the next tick is already due (the first tick of a run, a resumed
   * heartbeat's saved `nextTickAt`, a wake-up that found the window closed);
   * it runs then, or now if that has passed, moved into the active hours.
   * Null: plan the tick after the last one.
   */
  due: string | null;
  /** When the last tick ended (ISO time); null when none did (then `now`). */
  lastTickEndedAt: string | null;
  /** The clock reading to plan from (ISO time). */
  now: string;
}

/** The next tick's time, and the ticks the active hours skip on the way. */
export interface TickPlan {
  nextTickAt: string;
  skipped: SkippedTick[];
}

/**
 * Plans the next tick: a due time if given (not before `now`), else the next
 * cron match after the last tick's end (or that end + the interval), pushed
 * back by the failure backoff after failed ticks; then moved to the opening
 * of the active-hours window if it falls outside it (recorded as a skip).
 */
export function planNextTick(request: TickPlanRequest): TickPlan {
  const now = Date.parse(request.now);
  const due =
    request.due !== null
      ? Math.max(Date.parse(request.due), now)
      : scheduledAfter(
          request.settings,
          request.consecutiveFailures,
          request.lastTickEndedAt === null ? now : Date.parse(request.lastTickEndedAt),
        );
  return deferToWindow(new Date(due), request.settings);
}

/** The tick after one that ended at `from` (ms): the cron match or the interval, and the backoff. */
function scheduledAfter(
  settings: HeartbeatSettings,
  consecutiveFailures: number,
  from: number,
): number {
  if (!settings.cron) return from + tickDelaySec(settings, consecutiveFailures) * 1000;
  const cron = new Cron(settings.cron, {
    paused: true,
    ...(settings.timezone ? { timezone: settings.timezone } : {}),
  });
  const match = cron.nextRun(new Date(from))?.getTime() ?? from;
  cron.stop();
  const backoff = tickDelaySec({ ...settings, tickIntervalSec: 0 }, consecutiveFailures);
  return Math.max(match, from + backoff * 1000);
}

/** Moves `due` into the active-hours window, recording the skip. */
export function deferToWindow(due: Date, settings: HeartbeatSettings): TickPlan {
  const open = nextWindowOpen(due, settings);
  if (open.getTime() === due.getTime()) return { nextTickAt: due.toISOString(), skipped: [] };
  return {
    nextTickAt: open.toISOString(),
    skipped: [{ due: due.toISOString(), next: open.toISOString(), reason: "outside-active-hours" }],
  };
}
