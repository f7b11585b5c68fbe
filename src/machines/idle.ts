/**
 * Pure helpers of the idle-cost features (issue 16), shared by the heartbeat
 * statechart and the services: checklist tasks that come due, the calendar
 * day in the heartbeat's time zone (daily caps), and the cost of a usage.
 * Uses only `Intl`; reads no clock: every time arrives as an argument.
 */
import type {
  ChecklistTask,
  DayUsage,
  HeartbeatSettings,
  Prices,
  TokenUsage,
} from "./heartbeat.types.js";

/** When `task` is next due (ISO time): its last run + its period, or `null` = now (never run). */
export function nextDueAt(task: ChecklistTask, runs: Record<string, string>): string | null {
  const last = runs[task.task];
  if (!last) return null;
  return new Date(Date.parse(last) + task.everySec * 1000).toISOString();
}

/** The tasks due at `now` (ISO): never run, or their period has passed since the last run. */
export function dueTasks(
  tasks: readonly ChecklistTask[],
  runs: Record<string, string>,
  now: string,
): ChecklistTask[] {
  const t = Date.parse(now);
  return tasks.filter((task) => {
    const at = nextDueAt(task, runs);
    return at === null || Date.parse(at) <= t;
  });
}

// Building an Intl.DateTimeFormat costs far more than using one: one per zone.
const formats = new Map<string | null, Intl.DateTimeFormat>();

function formatOf(timeZone: string | null): Intl.DateTimeFormat {
  let format = formats.get(timeZone);
  if (!format) {
    format = new Intl.DateTimeFormat("en-GB", {
      year: "numeric",
      month: "2-digit",
      day: "2-digit",
      hour: "2-digit",
      minute: "2-digit",
      second: "2-digit",
      hourCycle: "h23",
      ...(timeZone ? { timeZone } : {}),
    });
    formats.set(timeZone, format);
  }
  return format;
}

function zoneParts(ms: number, timeZone: string | null) {
  const parts = formatOf(timeZone).formatToParts(new Date(ms));
  const get = (type: string) => Number(parts.find((p) => p.type === type)?.value ?? 0);
  return {
    year: get("year"),
    month: get("month"),
    day: get("day"),
    hour: get("hour"),
    minute: get("minute"),
    second: get("second"),
  };
}

/** The calendar day of `ms` in `timeZone` (the system's when null), as `YYYY-MM-DD`. */
export function dayOf(ms: number, timeZone: string | null): string {
  const p = zoneParts(ms, timeZone);
  const pad = (n: number, w = 2) => String(n).padStart(w, "0");
  return `${pad(p.year, 4)}-${pad(p.month)}-${pad(p.day)}`;
}

/** Milliseconds the wall clock of `timeZone` is ahead of UTC at `ms`. */
function offsetAt(ms: number, timeZone: string | null): number {
  const p = zoneParts(ms, timeZone);
  const asUtc = Date.UTC(p.year, p.month - 1, p.day, p.hour, p.minute, p.second);
  return asUtc - Math.floor(ms / 1000) * 1000;
}

/**
 * The start of the calendar day after the one holding `ms`, in `timeZone`
 * (ISO time): local midnight, or the first instant of that day where a DST
 * change skips midnight.
 */
export function startOfNextDay(ms: number, timeZone: string | null): string {
  const p = zoneParts(ms, timeZone);
  const midnight = Date.UTC(p.year, p.month - 1, p.day + 1);
  let guess = midnight - offsetAt(midnight, timeZone);
  guess = midnight - offsetAt(guess, timeZone);
  // A zone whose clocks skip midnight: the day starts at the first instant it has.
  if (dayOf(guess, timeZone) !== dayOf(midnight, "UTC")) guess += 3600_000;
  return new Date(guess).toISOString();
}

/** Cost in US dollars of `usage` at `prices`; undefined without prices. Cached prompt tokens at the cached price when set. */
export function usageCost(
  usage: TokenUsage,
  prices: Prices | null | undefined,
): number | undefined {
  if (
    prices?.input === undefined &&
    prices?.output === undefined &&
    prices?.cachedInput === undefined
  )
    return undefined;
  const cached = Math.min(usage.cachedTokens ?? 0, usage.promptTokens);
  const cachedPrice = prices.cachedInput ?? prices.input ?? 0;
  const dollars =
    ((usage.promptTokens - cached) * (prices.input ?? 0) +
      cached * cachedPrice +
      usage.completionTokens * (prices.output ?? 0)) /
    1_000_000;
  return Math.round(dollars * 1e6) / 1e6;
}

/**
 * Which daily cap the usage of `day` reaches at `now`, if any. A day other
 * than today's (in the heartbeat's time zone) has used nothing today.
 */
export function dailyCapReached(
  settings: Pick<HeartbeatSettings, "maxTokensPerDay" | "maxCostPerDay" | "prices" | "timezone">,
  day: DayUsage | null,
  now: string,
): "tokens" | "cost" | null {
  if (!day || day.date !== dayOf(Date.parse(now), settings.timezone)) return null;
  const maxTokens = settings.maxTokensPerDay ?? 0;
  if (maxTokens > 0 && day.usage.totalTokens >= maxTokens) return "tokens";
  const maxCost = settings.maxCostPerDay ?? 0;
  if (maxCost > 0 && (usageCost(day.usage, settings.prices) ?? 0) >= maxCost) return "cost";
  return null;
}

/** Tokens left today under `--max-tokens-per-day`; null without a cap. */
export function dailyTokensLeft(
  settings: Pick<HeartbeatSettings, "maxTokensPerDay" | "timezone">,
  day: DayUsage | null,
  now: string,
): number | null {
  const max = settings.maxTokensPerDay ?? 0;
  if (max <= 0) return null;
  const used =
    day && day.date === dayOf(Date.parse(now), settings.timezone) ? day.usage.totalTokens : 0;
  return Math.max(0, max - used);
}
