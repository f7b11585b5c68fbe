/**
 * Pure formatting for the dashboard: numbers, money, durations, countdowns.
 * No DOM, no clock (the time to count from arrives as an argument).
 */

/** `12,345` tokens. */
export function formatTokens(n: number): string {
  return Math.round(n).toLocaleString("en-US");
}

/** `$0.0123`, `$1.23`; `–` without a price. */
export function formatCost(usd: number | null | undefined): string {
  if (usd === null || usd === undefined || !Number.isFinite(usd)) return "–";
  if (usd === 0) return "$0";
  if (usd < 0.01) return `$${usd.toFixed(4)}`;
  if (usd < 100) return `$${usd.toFixed(2)}`;
  return `$${Math.round(usd).toLocaleString("en-US")}`;
}

/** `850 ms`, `4.2 s`, `3 min 5 s`, `2 h 10 min`. */
export function formatDuration(ms: number): string {
  if (!Number.isFinite(ms) || ms < 0) return "–";
  if (ms < 1000) return `${Math.round(ms)} ms`;
  if (ms < 60_000) return `${(ms / 1000).toFixed(ms < 10_000 ? 1 : 0)} s`;
  const s = Math.round(ms / 1000);
  if (s < 3600) return `${Math.floor(s / 60)} min ${s % 60} s`;
  const m = Math.round(s / 60);
  if (m < 48 * 60) return `${Math.floor(m / 60)} h ${m % 60} min`;
  return `${Math.round(m / 60 / 24)} d`;
}

/**
 * Time left until `at` seen from `nowMs`: `in 4 s`, `in 2 min 3 s`, `due`
 * (passed or now), `–` without a time.
 */
export function countdown(at: string | null | undefined, nowMs: number): string {
  if (!at) return "–";
  const t = Date.parse(at);
  if (Number.isNaN(t)) return "–";
  const left = t - nowMs;
  if (left <= 500) return "due";
  const s = Math.ceil(left / 1000);
  return s < 60 ? `in ${s} s` : `in ${formatDuration(s * 1000)}`;
}

/** `14:03:07` (local time) of an ISO time; `–` when missing. */
export function clockTime(at: string | null | undefined): string {
  if (!at) return "–";
  const d = new Date(at);
  if (Number.isNaN(d.getTime())) return "–";
  return d.toLocaleTimeString("en-GB", { hour12: false });
}
