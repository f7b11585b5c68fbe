/**
 * When ticks run: the fixed interval or a cron expression (croner), the
 * failure backoff, and the daily active-hours window, all in the configured
 * time zone. Pure functions of the settings and a clock reading.
 */
import { Cron } from "croner";
import { UsageError } from "../errors.js";
import { tickDelaySec } from "../machines/heartbeat.machine.js";
import type { HeartbeatSettings, SkippedTick } from "../machines/heartbeat.types.js";

/** A daily window, in minutes after midnight; `end` may be before `start` (over midnight). */
interface Window {
  start: number;
  end: number;
}

function parseWindow(spec: string): Window {
  const match = /^(\d\d):(\d\d)-(\d\d):(\d\d)$/.exec(spec);
  if (!match) {
    throw new UsageError(`--active-hours ${JSON.stringify(spec)} is not HH:MM-HH:MM.`, {
      option: "--active-hours",
      hint: "For example --active-hours 08:00-22:00.",
    });
  }
  const [, h1, m1, h2, m2] = match.map(Number) as [number, number, number, number, number];
  return { start: h1 * 60 + m1, end: h2 * 60 + m2 };
}

/** Minutes after midnight of `date` on the wall clock of `timeZone` (the system's when null). */
function minuteOfDay(date: Date, timeZone: string | null): number {
  const parts = new Intl.DateTimeFormat("en-GB", {
    hour: "2-digit",
    minute: "2-digit",
    hourCycle: "h23",
    ...(timeZone ? { timeZone } : {}),
  }).formatToParts(date);
  const hour = Number(parts.find((p) => p.type === "hour")?.value ?? 0);
  const minute = Number(parts.find((p) => p.type === "minute")?.value ?? 0);
  return hour * 60 + minute;
}

/** True when `date` falls inside the active-hours window (always true without one). */
export function inActiveHours(date: Date, settings: HeartbeatSettings): boolean {
  if (!settings.activeHours) return true;
  const { start, end } = parseWindow(settings.activeHours);
  if (start === end) return true;
  const m = minuteOfDay(date, settings.timezone);
  return start < end ? m >= start && m < end : m >= start || m < end;
}

/** The next moment at or after `date` when the active-hours window is open. */
export function nextWindowOpen(date: Date, settings: HeartbeatSettings): Date {
  if (!settings.activeHours || inActiveHours(date, settings)) return date;
  const { start } = parseWindow(settings.activeHours);
  const opens = new Cron(
    `${start % 60} ${Math.floor(start / 60)} * * *`,
    settings.timezone ? { timezone: settings.timezone } : {},
  );
  return opens.nextRun(date) ?? date;
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

/** When the next tick runs, and the ticks the active hours skip on the way. */
export interface NextTick {
  at: Date;
  skipped: SkippedTick[];
}

/**
 * Plans the next tick after one finished at `now`: the next cron match (or
 * `now` + the interval), pushed back by the failure backoff after failed
 * ticks, then moved to the opening of the active-hours window if it falls
 * outside it (recorded as a skipped tick).
 */
export function planNextTick(
  settings: HeartbeatSettings,
  consecutiveFailures: number,
  now: Date,
): NextTick {
  let due: Date;
  if (settings.cron) {
    const cron = new Cron(settings.cron, {
      paused: true,
      ...(settings.timezone ? { timezone: settings.timezone } : {}),
    });
    due = cron.nextRun(now) ?? now;
    cron.stop();
    const backoff = tickDelaySec({ ...settings, tickIntervalSec: 0 }, consecutiveFailures);
    if (backoff > 0 && now.getTime() + backoff * 1000 > due.getTime()) {
      due = new Date(now.getTime() + backoff * 1000);
    }
  } else {
    due = new Date(now.getTime() + tickDelaySec(settings, consecutiveFailures) * 1000);
  }
  return deferToWindow(due, settings);
}

/** Moves `due` into the active-hours window, recording the skip. */
export function deferToWindow(due: Date, settings: HeartbeatSettings): NextTick {
  const open = nextWindowOpen(due, settings);
  if (open.getTime() === due.getTime()) return { at: due, skipped: [] };
  return {
    at: open,
    skipped: [{ due: due.toISOString(), next: open.toISOString(), reason: "outside-active-hours" }],
  };
}
