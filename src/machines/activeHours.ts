/**
 * The daily active-hours window (`HH:MM-HH:MM` in a time zone), as pure
 * functions: shared by the heartbeat statechart (is a wake-up inside the
 * window?) and the scheduler in `src/services/schedule.ts` (when does it open?).
 * Uses only `Intl`; no clock is read.
 */

/** A daily window, in minutes after midnight; `end` may be before `start` (over midnight). */
export interface DailyWindow {
  start: number;
  end: number;
}

/** Parses `HH:MM-HH:MM`; null when the text is not one (the settings schema refuses those earlier). */
export function parseWindow(spec: string): DailyWindow | null {
  const match = /^(\d\d):(\d\d)-(\d\d):(\d\d)$/.exec(spec);
  if (!match) return null;
  const [h1, m1, h2, m2] = match.slice(1).map(Number) as [number, number, number, number];
  if (h1 > 23 || h2 > 23 || m1 > 59 || m2 > 59) return null;
  return { start: h1 * 60 + m1, end: h2 * 60 + m2 };
}

/** Minutes after midnight of `ms` on the wall clock of `timeZone` (the system's when null). */
export function minuteOfDay(ms: number, timeZone: string | null): number {
  const parts = new Intl.DateTimeFormat("en-GB", {
    hour: "2-digit",
    minute: "2-digit",
    hourCycle: "h23",
    ...(timeZone ? { timeZone } : {}),
  }).formatToParts(new Date(ms));
  const hour = Number(parts.find((p) => p.type === "hour")?.value ?? 0);
  const minute = Number(parts.find((p) => p.type === "minute")?.value ?? 0);
  return hour * 60 + minute;
}

/**
 * True when the time `ms` falls inside the window `activeHours` (always true
 * without one, or with an empty one such as `08:00-08:00`).
 */
export function insideActiveHours(
  ms: number,
  activeHours: string | null,
  timeZone: string | null,
): boolean {
  if (!activeHours) return true;
  const window = parseWindow(activeHours);
  if (!window || window.start === window.end) return true;
  const m = minuteOfDay(ms, timeZone);
  return window.start < window.end
    ? m >= window.start && m < window.end
    : m >= window.start || m < window.end;
}
