/**
 * What a resumed heartbeat's run changes in the settings saved in its state
 * file (a flag or an environment variable given on resume), for the line
 * printed per change and the journal's `run` record.
 */
import type { RunSettingKey } from "../schemas/config.js";
import type { SavedSettings } from "../schemas/stateFile.js";

/** One setting whose value differs from the saved one. */
export interface SettingChange {
  /** The run setting's name (`maxTicks`). */
  setting: string;
  /** Its flag without dashes (`max-ticks`), as people know it. */
  name: string;
  from: SavedSettings[string];
  to: SavedSettings[string];
  /** Where the new value came from (`option --max-ticks`). */
  source: string;
}

/**
 * The settings of `now` whose value differs from `saved`. A setting the saved
 * ones do not hold (a version 1 state file knew fewer) is not a change.
 */
export function settingChanges(
  saved: SavedSettings,
  now: SavedSettings,
  sources: Partial<Record<RunSettingKey, string>>,
  flagOf: (setting: RunSettingKey) => string,
): SettingChange[] {
  const changes: SettingChange[] = [];
  for (const [setting, to] of Object.entries(now)) {
    if (!Object.hasOwn(saved, setting)) continue;
    const from = saved[setting];
    if (JSON.stringify(from) === JSON.stringify(to)) continue;
    const key = setting as RunSettingKey;
    changes.push({
      setting,
      name: flagOf(key).replace(/^--/, ""),
      from: from ?? null,
      to: to ?? null,
      source: sources[key] ?? "the defaults",
    });
  }
  return changes;
}

const shown = (value: SavedSettings[string] | undefined): string => {
  if (value === null || value === undefined) return "unset";
  if (Array.isArray(value)) return value.length === 0 ? "[]" : `[${value.join(", ")}]`;
  return typeof value === "string" ? JSON.stringify(value) : String(value);
};

/** `max-ticks 2 → 5 (option --max-ticks)`. */
export function describeChange(change: SettingChange): string {
  return `${change.name} ${shown(change.from)} → ${shown(change.to)} (${change.source})`;
}
