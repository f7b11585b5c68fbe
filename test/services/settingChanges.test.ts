/**
 * The saved-settings layer of `resolveRunSettings` (flags > environment >
 * saved > toml > user > defaults) and the changes a resume makes to it.
 */
import { describe, expect, it } from "vitest";
import { ConfigError } from "../../src/errors.js";
import {
  isHeartbeatScoped,
  resolveRunSettings,
  savedSettingsOf,
} from "../../src/services/config.js";
import { describeChange, settingChanges } from "../../src/services/settingChanges.js";
import { type RunSettingKey, SETTINGS, type SettingSpec } from "../../src/settings.js";

const flagOf = (key: RunSettingKey) => `--${(SETTINGS[key] as SettingSpec).flag ?? key}`;

const STATE = "/w/.ravenclaws/heartbeat-x.json";
const TOML = {
  path: "/w/ravenclaws.toml",
  data: { heartbeat: { tick_interval_secs: 2, cron: "* * * * *" } },
};
const USER = { path: "/home/u/config.json", data: { tickInterval: 7, model: "user-model" } };

describe("resolveRunSettings: the saved layer", () => {
  it("sits below flags and environment and above ravenclaws.toml and the user config", () => {
    const { settings, sources } = resolveRunSettings({
      flags: { maxTicks: "5" },
      env: { RAVENCLAWS_MODEL: "env-model" },
      saved: {
        path: STATE,
        data: { maxTicks: 2, model: "saved-model", tickInterval: 600, cron: null },
      },
      toml: TOML,
      user: USER,
    });
    expect(settings.maxTicks).toBe(5);
    expect(sources.maxTicks).toBe("option --max-ticks");
    expect(settings.model).toBe("env-model");
    expect(settings.tickInterval).toBe(600);
    expect(sources.tickInterval).toBe(`the settings saved in ${STATE}`);
    // Saved as unset: the toml's cron does not creep in on resume.
    expect(settings.cron).toBeUndefined();
    expect(sources.cron).toBe(`the settings saved in ${STATE}`);
  });

  it("lets lower layers fill a setting the saved ones do not hold (a version 1 file)", () => {
    const { settings } = resolveRunSettings({
      flags: {},
      env: {},
      saved: { path: STATE, data: { maxTicks: 2 } },
      user: USER,
    });
    expect(settings.model).toBe("user-model");
    expect(settings.tickInterval).toBe(7);
  });

  it("never reads the API key, id, goal or locations from the saved settings", () => {
    const { settings } = resolveRunSettings({
      flags: {},
      env: {},
      saved: {
        path: STATE,
        data: { apiKey: "sk-saved", id: "other", goal: "other goal", workdir: "/elsewhere" },
      },
    });
    expect(settings.apiKey).toBeUndefined();
    expect(settings.id).toBeUndefined();
    expect(settings.goal).toBeUndefined();
    expect(settings.workdir).toBeUndefined();
  });

  it("adds the toml's deny rules to the saved ones (rules only accumulate)", () => {
    const { settings } = resolveRunSettings({
      flags: {},
      env: {},
      saved: { path: STATE, data: { toolDeny: ["shell(rm*)"] } },
      toml: { path: TOML.path, data: { tools: { deny: ["shell(git push*)"] } } },
    });
    expect(settings.toolDeny).toEqual(["shell(rm*)", "shell(git push*)"]);
  });

  it("refuses a bad saved value, naming the state file", () => {
    let caught: unknown;
    try {
      resolveRunSettings({ flags: {}, env: {}, saved: { path: STATE, data: { maxTicks: -1 } } });
    } catch (error) {
      caught = error;
    }
    expect(caught).toBeInstanceOf(ConfigError);
    expect((caught as Error).message).toContain(`the settings saved in ${STATE}`);
  });

  it("savedSettingsOf keeps every heartbeat-scoped setting, unset ones as null, and never the API key", () => {
    const { settings } = resolveRunSettings({
      flags: { apiKey: "sk-secret", goal: "g", id: "x", maxTicks: "3" },
      env: {},
    });
    const saved = savedSettingsOf(settings);
    expect(saved).not.toHaveProperty("apiKey");
    expect(saved).not.toHaveProperty("goal");
    expect(saved).not.toHaveProperty("id");
    expect(saved).not.toHaveProperty("json");
    expect(saved).not.toHaveProperty("stateDir");
    expect(saved).not.toHaveProperty("workdir");
    expect(saved).toMatchObject({ maxTicks: 3, tickInterval: 300, cron: null, priceInput: null });
    for (const key of Object.keys(SETTINGS) as RunSettingKey[]) {
      if (isHeartbeatScoped(key)) expect(saved, key).toHaveProperty(key);
    }
    expect(JSON.stringify(saved)).not.toContain("sk-secret");
  });
});

describe("settingChanges", () => {
  it("lists only the settings whose value differs from a saved one, with their source", () => {
    const saved = { maxTicks: 2, tickInterval: 300, cron: "0 0 1 1 *", model: "m" };
    const { settings, sources } = resolveRunSettings({
      flags: { maxTicks: "5" },
      env: {},
      saved: { path: STATE, data: saved },
    });
    const changes = settingChanges(saved, savedSettingsOf(settings), sources, flagOf);
    expect(changes).toEqual([
      { setting: "maxTicks", name: "max-ticks", from: 2, to: 5, source: "option --max-ticks" },
    ]);
    expect(describeChange(changes[0] as (typeof changes)[0])).toBe(
      "max-ticks 2 → 5 (option --max-ticks)",
    );
  });

  it("shows unset and list values readably", () => {
    expect(
      describeChange({
        setting: "cron",
        name: "cron",
        from: "0 0 1 1 *",
        to: null,
        source: "environment variable RAVENCLAWS_CRON",
      }),
    ).toBe('cron "0 0 1 1 *" → unset (environment variable RAVENCLAWS_CRON)');
    expect(
      describeChange({ setting: "toolDeny", name: "deny", from: [], to: ["a", "b"], source: "x" }),
    ).toBe("deny [] → [a, b] (x)");
  });
});
