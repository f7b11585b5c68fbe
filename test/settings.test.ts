/**
 * The settings table is consistent, and everything derived from it agrees
 * with it: the zod schema's defaults, the toml sections, the user keys.
 */
import { describe, expect, it } from "vitest";
import { RunSettingsSchema } from "../src/schemas/config.js";
import {
  heartbeatSettingKeys,
  problemOf,
  type SettingSpec,
  settingEntries,
  tomlSections,
  userKeys,
} from "../src/settings.js";

const entries = settingEntries();

describe("the settings table", () => {
  it("declares each flag, alias, variable and toml key once", () => {
    const names = (pick: (spec: SettingSpec) => readonly string[]) =>
      entries.flatMap(([, spec]) => pick(spec));
    for (const list of [
      names((s) => [...(s.flag ? [s.flag] : []), ...(s.aliases ?? [])]),
      names((s) => s.env ?? []),
      names((s) => (s.toml ? [s.toml] : [])),
    ]) {
      expect(new Set(list).size, list.join(", ")).toBe(list.length);
    }
  });

  it("has defaults that pass its own bounds, and the schema fills exactly them", () => {
    const parsed = RunSettingsSchema.parse({}) as Record<string, unknown>;
    for (const [key, spec] of entries) {
      if (spec.default === undefined) {
        expect(parsed[key], key).toBeUndefined();
        continue;
      }
      expect(problemOf(spec, spec.default), key).toBeUndefined();
      expect(parsed[key], key).toEqual(spec.default);
    }
  });

  it("keeps toml keys in the Rust original's sections", () => {
    expect([...tomlSections().keys()]).toEqual(["heartbeat", "llm", "tools", "notify"]);
    expect(tomlSections().get("heartbeat")).toEqual(
      expect.arrayContaining([
        "goal",
        "tick_interval_secs",
        "max_ticks",
        "max_iterations_per_tick",
        "workdir",
        "enable_tools",
      ]),
    );
  });

  it("keeps run-scoped settings out of the user config and out of what a heartbeat keeps", () => {
    const kept = heartbeatSettingKeys();
    for (const key of [
      "goal",
      "goalFile",
      "id",
      "workdir",
      "stateDir",
      "apiKey",
      "json",
      "quiet",
    ]) {
      expect(kept).not.toContain(key);
    }
    expect(kept).toEqual(expect.arrayContaining(["tickInterval", "maxTicks", "cron", "model"]));
    for (const key of ["goal", "goalFile", "id", "workdir", "stateDir", "json", "quiet"]) {
      expect(userKeys()).not.toContain(key);
    }
  });

  it("bounds numbers: an interval of at most a year, whole numbers where counted", () => {
    const spec = (key: string) => entries.find(([k]) => k === key)?.[1] as SettingSpec;
    expect(problemOf(spec("tickInterval"), 365 * 24 * 3600)).toBeUndefined();
    expect(problemOf(spec("tickInterval"), 1e15)?.message).toContain("one year");
    expect(problemOf(spec("maxTicks"), 1.5)?.message).toBe("must be a whole number");
    expect(problemOf(spec("maxTicks"), 1e300)?.message).toContain("at most");
    expect(problemOf(spec("requestTimeout"), 0)?.message).toBe("must be more than 0 seconds");
    expect(problemOf(spec("toolDeny"), ["shell(ls)", "nonsense("])?.index).toBe(1);
    expect(problemOf(spec("sandbox"), "bwrp")?.message).toBe(
      'must be one of "auto", "bwrap", "off" (did you mean "bwrap"?)',
    );
  });
});
