/**
 * Durations as people write them (`90s`, `15m`, `1h`, `1d`, `1h30m`, a bare
 * number of seconds), for `--idle-recheck` and the checklist's
 * `- [every <duration>]` lines. Pure: no imports.
 */

const UNIT_SECONDS: Record<string, number> = {
  s: 1,
  sec: 1,
  secs: 1,
  second: 1,
  seconds: 1,
  m: 60,
  min: 60,
  mins: 60,
  minute: 60,
  minutes: 60,
  h: 3600,
  hr: 3600,
  hrs: 3600,
  hour: 3600,
  hours: 3600,
  d: 86_400,
  day: 86_400,
  days: 86_400,
  w: 604_800,
  week: 604_800,
  weeks: 604_800,
};

const PART = /(\d+(?:\.\d+)?)\s*([a-z]+)/gy;

/**
 * Seconds in `text`, or null when it is not a duration. A bare number is
 * seconds; otherwise one or more `<number><unit>` parts (`1h30m`, `2 days`).
 */
export function parseDuration(text: string): number | null {
  const s = text.trim().toLowerCase();
  if (s === "") return null;
  if (/^\d+(\.\d+)?$/.test(s)) return Number(s);
  let total = 0;
  let end = 0;
  PART.lastIndex = 0;
  for (let m = PART.exec(s); m !== null; m = PART.exec(s)) {
    const unit = UNIT_SECONDS[m[2] as string];
    if (unit === undefined) return null;
    total += Number(m[1]) * unit;
    end = PART.lastIndex;
    while (s[PART.lastIndex] === " ") PART.lastIndex++;
    end = PART.lastIndex;
  }
  return end === s.length && end > 0 ? total : null;
}

/** True for text {@link parseDuration} reads. */
export function isDuration(text: string): boolean {
  return parseDuration(text) !== null;
}

/** A duration in seconds as short text: `45s`, `15m`, `1h`, `1h30m`, `2d`. */
export function formatDuration(seconds: number): string {
  if (seconds <= 0) return "0s";
  let rest = Math.round(seconds);
  const parts: string[] = [];
  for (const [unit, size] of [
    ["d", 86_400],
    ["h", 3600],
    ["m", 60],
    ["s", 1],
  ] as const) {
    if (rest >= size) {
      parts.push(`${Math.floor(rest / size)}${unit}`);
      rest %= size;
    }
  }
  return parts.join("");
}
