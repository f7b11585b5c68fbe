import fs from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { ConfigError, ExitCode } from "../../src/errors.js";
import type { RunSettingKey } from "../../src/schemas/config.js";
import {
  type ConfigSources,
  isHeartbeatScoped,
  loadTomlConfig,
  loadUserConfig,
  parseSettingText,
  readGoalFile,
  resolveRunSettings,
  savedSettingsOf,
  savedSource,
} from "../../src/services/config.js";

let base: string;

beforeEach(async () => {
  base = await fs.realpath(await fs.mkdtemp(path.join(os.tmpdir(), "rc-config-")));
});

afterEach(async () => {
  await fs.rm(base, { recursive: true, force: true });
});

const TOML_PATH = "/project/ravenclaws.toml";
const USER_PATH = "/home/u/.config/ravenclaws/config.json";

function sources(partial: Partial<ConfigSources> = {}): ConfigSources {
  return { flags: {}, env: {}, ...partial };
}

/** Runs `fn`, which must throw a ConfigError, and returns it. */
function configError(fn: () => unknown): ConfigError {
  let caught: unknown;
  try {
    fn();
  } catch (error) {
    caught = error;
  }
  expect(caught).toBeInstanceOf(ConfigError);
  const error = caught as ConfigError;
  expect(error.code).toBe("config");
  expect(error.exitCode).toBe(ExitCode.usage);
  return error;
}

async function configErrorAsync(promise: Promise<unknown>): Promise<ConfigError> {
  let caught: unknown;
  try {
    await promise;
  } catch (error) {
    caught = error;
  }
  expect(caught).toBeInstanceOf(ConfigError);
  return caught as ConfigError;
}

describe("resolveRunSettings: defaults", () => {
  it("fills every default when nothing is configured", () => {
    const { settings, sources: from } = resolveRunSettings(sources());
    expect(settings).toMatchObject({
      tickInterval: 300,
      maxTicks: 0,
      maxIterationsPerTick: 5,
      maxConsecutiveFailures: 5,
      tools: true,
      model: "gpt-4o-mini",
      baseUrl: "https://api.openai.com/v1",
      requestTimeout: 120,
      maxRetries: 2,
      json: false,
      maxTokens: 0,
      maxTokensPerTick: 0,
      failureBackoff: 5,
    });
    for (const key of [
      "goal",
      "id",
      "workdir",
      "stateDir",
      "apiKey",
      "cron",
      "activeHours",
      "timezone",
      "priceInput",
      "priceOutput",
    ] as const) {
      expect(settings).not.toHaveProperty(key);
    }
    expect(from).toEqual({});
  });
});

describe("resolveRunSettings: precedence flag > env > toml > user > default", () => {
  interface Layered {
    key: RunSettingKey;
    flag: unknown;
    env: [string, string];
    toml: [string, string, unknown];
    user: [string, unknown];
    values: [unknown, unknown, unknown, unknown, unknown];
  }
  const layered: Layered[] = [
    {
      key: "tickInterval",
      flag: 1,
      env: ["RAVENCLAWS_HEARTBEAT_TICK_INTERVAL", "2"],
      toml: ["heartbeat", "tick_interval_secs", 3],
      user: ["tickInterval", 4],
      values: [1, 2, 3, 4, 300],
    },
    {
      key: "maxTicks",
      flag: 10,
      env: ["RAVENCLAWS_HEARTBEAT_MAX_TICKS", "20"],
      toml: ["heartbeat", "max_ticks", 30],
      user: ["maxTicks", 40],
      values: [10, 20, 30, 40, 0],
    },
    {
      key: "maxIterationsPerTick",
      flag: 11,
      env: ["RAVENCLAWS_MAX_ITERATIONS_PER_TICK", "12"],
      toml: ["heartbeat", "max_iterations_per_tick", 13],
      user: ["maxIterationsPerTick", 14],
      values: [11, 12, 13, 14, 5],
    },
    {
      key: "tools",
      flag: false,
      env: ["RAVENCLAWS_TOOLS", "true"],
      toml: ["heartbeat", "enable_tools", false],
      user: ["tools", false],
      values: [false, true, false, false, true],
    },
    {
      key: "model",
      flag: "flag-model",
      env: ["RAVENCLAWS_MODEL", "env-model"],
      toml: ["llm", "model", "toml-model"],
      user: ["model", "user-model"],
      values: ["flag-model", "env-model", "toml-model", "user-model", "gpt-4o-mini"],
    },
    {
      key: "requestTimeout",
      flag: 7,
      env: ["RAVENCLAWS_REQUEST_TIMEOUT", "8"],
      toml: ["llm", "request_timeout_secs", 9],
      user: ["requestTimeout", 10],
      values: [7, 8, 9, 10, 120],
    },
  ];

  for (const l of layered) {
    it(`${l.key}: each layer wins over the ones below it`, () => {
      const all = {
        flags: { [l.key]: l.flag },
        env: { [l.env[0]]: l.env[1] },
        toml: { path: TOML_PATH, data: { [l.toml[0]]: { [l.toml[1]]: l.toml[2] } } },
        user: { path: USER_PATH, data: { [l.user[0]]: l.user[1] } },
      };
      const expectedSources = [
        `option --${l.key === "tools" ? "tools" : l.key.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`)}`,
        `environment variable ${l.env[0]}`,
        `${TOML_PATH} [${l.toml[0]}] ${l.toml[1]}`,
        `user config ${USER_PATH} (${l.user[0]})`,
        undefined,
      ];
      const layers: ConfigSources[] = [
        sources(all),
        sources({ env: all.env, toml: all.toml, user: all.user }),
        sources({ toml: all.toml, user: all.user }),
        sources({ user: all.user }),
        sources(),
      ];
      layers.forEach((layer, i) => {
        const resolved = resolveRunSettings(layer);
        expect(resolved.settings[l.key], `layer ${i}`).toBe(l.values[i]);
        expect(resolved.sources[l.key], `layer ${i}`).toBe(expectedSources[i]);
      });
    });
  }

  it("resolves keys independently (each from its own highest layer)", () => {
    const { settings, sources: from } = resolveRunSettings({
      flags: { goal: "flag goal" },
      env: { RAVENCLAWS_HEARTBEAT_MAX_TICKS: "9" },
      toml: { path: TOML_PATH, data: { heartbeat: { tick_interval_secs: 60, goal: "toml goal" } } },
      user: { path: USER_PATH, data: { maxIterationsPerTick: 2, maxTicks: 1 } },
    });
    expect(settings).toMatchObject({
      goal: "flag goal",
      maxTicks: 9,
      tickInterval: 60,
      maxIterationsPerTick: 2,
      tools: true,
    });
    expect(from).toEqual({
      goal: "option --goal",
      maxTicks: "environment variable RAVENCLAWS_HEARTBEAT_MAX_TICKS",
      tickInterval: `${TOML_PATH} [heartbeat] tick_interval_secs`,
      maxIterationsPerTick: `user config ${USER_PATH} (maxIterationsPerTick)`,
    });
  });

  it("treats an empty environment variable as unset", () => {
    const { settings, sources: from } = resolveRunSettings({
      flags: {},
      env: { RAVENCLAWS_HEARTBEAT_TICK_INTERVAL: "", RAVENCLAWS_MODEL: "" },
      toml: { path: TOML_PATH, data: { heartbeat: { tick_interval_secs: 45 } } },
    });
    expect(settings.tickInterval).toBe(45);
    expect(settings.model).toBe("gpt-4o-mini");
    expect(from.tickInterval).toBe(`${TOML_PATH} [heartbeat] tick_interval_secs`);
  });

  it("ignores an invalid value in a lower layer that is overridden", () => {
    const { settings } = resolveRunSettings({
      flags: { tickInterval: 5 },
      env: { RAVENCLAWS_HEARTBEAT_TICK_INTERVAL: "soon" },
      toml: { path: TOML_PATH, data: { heartbeat: { tick_interval_secs: -1 } } },
    });
    expect(settings.tickInterval).toBe(5);
  });
});

describe("resolveRunSettings: Rust-compatible environment and toml names", () => {
  it("reads RAVENCLAWS_HEARTBEAT_GOAL, _TICK_INTERVAL, _MAX_TICKS and _SESSION", () => {
    const { settings, sources: from } = resolveRunSettings(
      sources({
        env: {
          RAVENCLAWS_HEARTBEAT_GOAL: "Keep the changelog tidy",
          RAVENCLAWS_HEARTBEAT_TICK_INTERVAL: "90",
          RAVENCLAWS_HEARTBEAT_MAX_TICKS: "12",
          RAVENCLAWS_HEARTBEAT_SESSION: "nightly-1",
        },
      }),
    );
    expect(settings.goal).toBe("Keep the changelog tidy");
    expect(settings.tickInterval).toBe(90);
    expect(settings.maxTicks).toBe(12);
    expect(settings.id).toBe("nightly-1");
    expect(from).toEqual({
      goal: "environment variable RAVENCLAWS_HEARTBEAT_GOAL",
      tickInterval: "environment variable RAVENCLAWS_HEARTBEAT_TICK_INTERVAL",
      maxTicks: "environment variable RAVENCLAWS_HEARTBEAT_MAX_TICKS",
      id: "environment variable RAVENCLAWS_HEARTBEAT_SESSION",
    });
  });

  it("prefers the Rust names over the short aliases, and falls back to the aliases", () => {
    const both = resolveRunSettings(
      sources({
        env: {
          RAVENCLAWS_HEARTBEAT_GOAL: "rust goal",
          RAVENCLAWS_GOAL: "alias goal",
          RAVENCLAWS_HEARTBEAT_TICK_INTERVAL: "10",
          RAVENCLAWS_TICK_INTERVAL: "20",
          RAVENCLAWS_HEARTBEAT_MAX_TICKS: "1",
          RAVENCLAWS_MAX_TICKS: "2",
          RAVENCLAWS_HEARTBEAT_SESSION: "rust-id",
          RAVENCLAWS_ID: "alias-id",
        },
      }),
    ).settings;
    expect(both).toMatchObject({ goal: "rust goal", tickInterval: 10, maxTicks: 1, id: "rust-id" });

    const aliases = resolveRunSettings(
      sources({
        env: {
          RAVENCLAWS_GOAL: "alias goal",
          RAVENCLAWS_TICK_INTERVAL: "20",
          RAVENCLAWS_MAX_TICKS: "2",
          RAVENCLAWS_ID: "alias-id",
        },
      }),
    ).settings;
    expect(aliases).toMatchObject({
      goal: "alias goal",
      tickInterval: 20,
      maxTicks: 2,
      id: "alias-id",
    });
  });

  it("reads the [heartbeat] keys of ravenclaws.toml", () => {
    const { settings, sources: from } = resolveRunSettings(
      sources({
        toml: {
          path: TOML_PATH,
          data: {
            heartbeat: {
              goal: "toml goal",
              tick_interval_secs: 600,
              max_ticks: 3,
              max_iterations_per_tick: 8,
              enable_tools: false,
              workdir: "/srv/work",
            },
          },
        },
      }),
    );
    expect(settings).toMatchObject({
      goal: "toml goal",
      tickInterval: 600,
      maxTicks: 3,
      maxIterationsPerTick: 8,
      tools: false,
      workdir: "/srv/work",
    });
    expect(from.tools).toBe(`${TOML_PATH} [heartbeat] enable_tools`);
    expect(from.workdir).toBe(`${TOML_PATH} [heartbeat] workdir`);
  });

  it("parses booleans from the environment", () => {
    const on = (v: string) => resolveRunSettings(sources({ env: { RAVENCLAWS_TOOLS: v } }));
    for (const v of ["1", "true", "YES", " on "]) expect(on(v).settings.tools, v).toBe(true);
    for (const v of ["0", "false", "No", "off"]) expect(on(v).settings.tools, v).toBe(false);
    const error = configError(() => on("maybe"));
    expect(error.key).toBe("RAVENCLAWS_TOOLS");
    expect(error.message).toContain('"maybe"');
  });
});

describe("resolveRunSettings: errors", () => {
  it("rejects a negative tick interval from ravenclaws.toml, naming the key and the file", () => {
    const error = configError(() =>
      resolveRunSettings(
        sources({ toml: { path: TOML_PATH, data: { heartbeat: { tick_interval_secs: -5 } } } }),
      ),
    );
    expect(error.key).toBe("tickInterval");
    expect(error.source).toBe(`${TOML_PATH} [heartbeat] tick_interval_secs`);
    expect(error.message).toContain(TOML_PATH);
    expect(error.message).toContain("tick_interval_secs");
    expect(error.message).toContain("-5");
  });

  it("rejects a negative tick interval from a flag, naming the option", () => {
    const error = configError(() => resolveRunSettings(sources({ flags: { tickInterval: -1 } })));
    expect(error.key).toBe("tickInterval");
    expect(error.source).toBe("option --tick-interval");
    expect(error.message).toContain("--tick-interval");
    expect(error.message).toContain("must be 0 or more seconds");
  });

  it("rejects a non-numeric environment value, naming the variable", () => {
    const error = configError(() =>
      resolveRunSettings(sources({ env: { RAVENCLAWS_HEARTBEAT_TICK_INTERVAL: "five" } })),
    );
    expect(error.key).toBe("RAVENCLAWS_HEARTBEAT_TICK_INTERVAL");
    expect(error.source).toBe("environment variable RAVENCLAWS_HEARTBEAT_TICK_INTERVAL");
    expect(error.message).toContain("environment variable RAVENCLAWS_HEARTBEAT_TICK_INTERVAL");
    expect(error.message).toContain("must be a number");
    expect(error.message).toContain('"five"');
  });

  it("rejects a non-integer max ticks", () => {
    const error = configError(() =>
      resolveRunSettings(sources({ env: { RAVENCLAWS_HEARTBEAT_MAX_TICKS: "1.5" } })),
    );
    expect(error.key).toBe("maxTicks");
    expect(error.source).toBe("environment variable RAVENCLAWS_HEARTBEAT_MAX_TICKS");
  });

  it("rejects a zero max iterations per tick", () => {
    const error = configError(() =>
      resolveRunSettings(
        sources({
          toml: { path: TOML_PATH, data: { heartbeat: { max_iterations_per_tick: 0 } } },
        }),
      ),
    );
    expect(error.key).toBe("maxIterationsPerTick");
    expect(error.source).toContain("max_iterations_per_tick");
  });

  it("rejects a bad session id", () => {
    const error = configError(() =>
      resolveRunSettings(sources({ env: { RAVENCLAWS_HEARTBEAT_SESSION: "../escape" } })),
    );
    expect(error.key).toBe("id");
    expect(error.source).toBe("environment variable RAVENCLAWS_HEARTBEAT_SESSION");
  });

  it("rejects a blank goal", () => {
    const error = configError(() => resolveRunSettings(sources({ flags: { goal: "   " } })));
    expect(error.key).toBe("goal");
    expect(error.message).toContain("must not be empty");
  });

  for (const bad of ["not a url", "ftp://example.com/v1", "localhost:8080/v1"]) {
    it(`rejects the base URL ${JSON.stringify(bad)}`, () => {
      const error = configError(() =>
        resolveRunSettings(sources({ env: { OPENAI_BASE_URL: bad } })),
      );
      expect(error.key).toBe("baseUrl");
      expect(error.source).toBe("environment variable OPENAI_BASE_URL");
      expect(error.message).toContain("http:// or https://");
      expect(error.message).toContain(JSON.stringify(bad));
    });
  }

  it("accepts http and https base URLs", () => {
    expect(
      resolveRunSettings(sources({ flags: { baseUrl: "http://127.0.0.1:11434/v1" } })).settings
        .baseUrl,
    ).toBe("http://127.0.0.1:11434/v1");
  });
});

describe("resolveRunSettings: the API key stays out of error messages", () => {
  const SECRET = "sk-live-SECRET-0123456789";

  function expectHidden(error: ConfigError): void {
    const everything = [
      error.message,
      String(error),
      error.hint ?? "",
      error.key,
      error.source,
      error.stack ?? "",
      JSON.stringify(error),
    ].join("\n");
    expect(everything).not.toContain(SECRET);
    expect(everything).not.toContain("SECRET");
  }

  it("when another key is invalid", () => {
    const error = configError(() =>
      resolveRunSettings(
        sources({
          flags: { apiKey: SECRET },
          env: { OPENAI_API_KEY: SECRET, RAVENCLAWS_HEARTBEAT_TICK_INTERVAL: "x" },
        }),
      ),
    );
    expectHidden(error);
  });

  it("when the base URL is invalid", () => {
    const error = configError(() =>
      resolveRunSettings(sources({ env: { OPENAI_API_KEY: SECRET, OPENAI_BASE_URL: "nope" } })),
    );
    expectHidden(error);
  });

  it("when the api key itself fails validation (empty in the toml file)", () => {
    const error = configError(() =>
      resolveRunSettings(sources({ toml: { path: TOML_PATH, data: { llm: { api_key: "" } } } })),
    );
    expect(error.key).toBe("apiKey");
    expect(error.message).toContain("(hidden)");
  });

  it("when ravenclaws.toml holds a non-string api key", () => {
    const error = configError(() =>
      resolveRunSettings(
        sources({ toml: { path: TOML_PATH, data: { llm: { api_key: [SECRET] } } } }),
      ),
    );
    expect(error.source).toBe(`${TOML_PATH} [llm] api_key`);
    expectHidden(error);
  });

  it("when the user config holds a non-string api key", () => {
    const error = configError(() =>
      resolveRunSettings(
        sources({ user: { path: USER_PATH, data: { apiKey: { value: SECRET } } } }),
      ),
    );
    expectHidden(error);
  });
});

describe("loadTomlConfig", () => {
  const TOML = `# project config
[heartbeat]
goal = "Ship the docs"
tick_interval_secs = 120
max_ticks = 4
max_iterations_per_tick = 3
enable_tools = false
workdir = "./work"

[llm]
model = "local-model"
base_url = "http://127.0.0.1:8080/v1"
`;

  it("finds ravenclaws.toml in the directory and feeds resolveRunSettings", async () => {
    const file = path.join(base, "ravenclaws.toml");
    await fs.writeFile(file, TOML);
    const toml = await loadTomlConfig(base, undefined);
    expect(toml?.path).toBe(file);
    expect(toml?.data).toEqual({
      heartbeat: {
        goal: "Ship the docs",
        tick_interval_secs: 120,
        max_ticks: 4,
        max_iterations_per_tick: 3,
        enable_tools: false,
        workdir: "./work",
      },
      llm: { model: "local-model", base_url: "http://127.0.0.1:8080/v1" },
    });
    const { settings } = resolveRunSettings({ flags: {}, env: {}, ...(toml ? { toml } : {}) });
    expect(settings).toMatchObject({
      goal: "Ship the docs",
      tickInterval: 120,
      maxTicks: 4,
      maxIterationsPerTick: 3,
      tools: false,
      workdir: "./work",
      model: "local-model",
      baseUrl: "http://127.0.0.1:8080/v1",
    });
  });

  it("falls back to the workdir's ravenclaws.toml; the current directory's wins", async () => {
    const work = path.join(base, "work");
    await fs.mkdir(work);
    await fs.writeFile(path.join(work, "ravenclaws.toml"), "[heartbeat]\nmax_ticks = 7\n");
    const fromWorkdir = await loadTomlConfig(base, undefined, "work");
    expect(fromWorkdir?.path).toBe(path.join(work, "ravenclaws.toml"));
    expect(fromWorkdir?.data).toEqual({ heartbeat: { max_ticks: 7 } });
    await fs.writeFile(path.join(base, "ravenclaws.toml"), "[heartbeat]\nmax_ticks = 1\n");
    expect((await loadTomlConfig(base, undefined, "work"))?.path).toBe(
      path.join(base, "ravenclaws.toml"),
    );
    expect(await loadTomlConfig(base, undefined, "missing-dir")).toEqual({
      path: path.join(base, "ravenclaws.toml"),
      data: { heartbeat: { max_ticks: 1 } },
    });
  });

  it("new keys: budgets, schedule and prices come from [heartbeat] and [llm]", async () => {
    const { settings, sources } = resolveRunSettings({
      flags: {},
      env: {},
      toml: {
        path: "/p/ravenclaws.toml",
        data: {
          heartbeat: {
            max_tokens: 100000,
            max_tokens_per_tick: 5000,
            failure_backoff_secs: 30,
            cron: "*/10 * * * *",
            active_hours: "08:00-20:00",
            timezone: "Europe/Paris",
          },
          llm: { price_input_per_mtok: 0.15, price_output_per_mtok: 0.6 },
        },
      },
    });
    expect(settings).toMatchObject({
      maxTokens: 100000,
      maxTokensPerTick: 5000,
      failureBackoff: 30,
      cron: "*/10 * * * *",
      activeHours: "08:00-20:00",
      timezone: "Europe/Paris",
      priceInput: 0.15,
      priceOutput: 0.6,
    });
    expect(sources.timezone).toBe("/p/ravenclaws.toml [heartbeat] timezone");
  });

  it("an active_hours of the wrong shape names the key and the file", () => {
    expect(() =>
      resolveRunSettings({
        flags: {},
        env: {},
        toml: { path: "/p/ravenclaws.toml", data: { heartbeat: { active_hours: "9 to 5" } } },
      }),
    ).toThrow(/\/p\/ravenclaws.toml \[heartbeat\] active_hours: must be HH:MM-HH:MM/);
  });

  it("returns undefined when the directory has no ravenclaws.toml", async () => {
    expect(await loadTomlConfig(base, undefined)).toBeUndefined();
  });

  it("reads an explicit file relative to cwd", async () => {
    await fs.mkdir(path.join(base, "conf"));
    await fs.writeFile(path.join(base, "conf", "other.toml"), "[heartbeat]\nmax_ticks = 2\n");
    const toml = await loadTomlConfig(base, "conf/other.toml");
    expect(toml).toEqual({
      path: path.join(base, "conf", "other.toml"),
      data: { heartbeat: { max_ticks: 2 } },
    });
  });

  it("throws ConfigError on a missing explicit file", async () => {
    const missing = path.join(base, "nope.toml");
    const error = await configErrorAsync(loadTomlConfig(base, "nope.toml"));
    expect(error.key).toBe("--config");
    expect(error.source).toBe(missing);
    expect(error.message).toContain(missing);
    expect(error.exitCode).toBe(ExitCode.usage);
  });

  it("throws ConfigError on invalid TOML, naming the file", async () => {
    const file = path.join(base, "ravenclaws.toml");
    await fs.writeFile(file, "[heartbeat\ngoal = \n");
    const error = await configErrorAsync(loadTomlConfig(base, undefined));
    expect(error.source).toBe(file);
    expect(error.message).toContain(file);
    expect(error.message).toContain("not valid TOML");
    expect(error.hint).toBeDefined();
  });
});

describe("loadUserConfig", () => {
  it("reads config.json from RAVENCLAWS_CONFIG_DIR", async () => {
    const file = path.join(base, "config.json");
    const data = { model: "user-model", tickInterval: 30, tools: false };
    await fs.writeFile(file, JSON.stringify(data));
    const user = await loadUserConfig({ RAVENCLAWS_CONFIG_DIR: base });
    expect(user).toEqual({ path: file, data });

    const { settings, sources: from } = resolveRunSettings({
      flags: {},
      env: {},
      ...(user ? { user } : {}),
    });
    expect(settings).toMatchObject({ model: "user-model", tickInterval: 30, tools: false });
    expect(from.model).toBe(`user config ${file} (model)`);
  });

  it("reads an absent config.json as empty", async () => {
    const user = await loadUserConfig({ RAVENCLAWS_CONFIG_DIR: base });
    expect(user?.path).toBe(path.join(base, "config.json"));
    expect(user?.data).toEqual({});
  });

  it("throws ConfigError on a config.json that is not JSON", async () => {
    await fs.writeFile(path.join(base, "config.json"), "{ nope");
    const error = await configErrorAsync(loadUserConfig({ RAVENCLAWS_CONFIG_DIR: base }));
    expect(error.key).toBe("(user config)");
    expect(error.source).toBe(base);
    // The broken file is left alone.
    expect(await fs.readFile(path.join(base, "config.json"), "utf8")).toBe("{ nope");
  });
});

describe("strict config files", () => {
  it("loadTomlConfig refuses an unknown key, naming the file, the key and the nearest", async () => {
    const file = path.join(base, "ravenclaws.toml");
    await fs.writeFile(file, "[heartbeat]\nmax_tick = 1\n");
    const error = await configErrorAsync(loadTomlConfig(base, undefined));
    expect(error.message).toBe(
      `${file}: unknown key max_tick in [heartbeat]. Did you mean max_ticks?`,
    );
    expect(error.key).toBe("heartbeat.max_tick");
    expect(error.source).toBe(file);
  });

  it("loadTomlConfig refuses an unknown section, naming the nearest", async () => {
    await fs.writeFile(path.join(base, "ravenclaws.toml"), "[hearbeat]\ngoal = 'x'\n");
    const error = await configErrorAsync(loadTomlConfig(base, undefined));
    expect(error.message).toContain("unknown section [hearbeat]. Did you mean [heartbeat]?");
    expect(error.key).toBe("hearbeat");
  });

  it("loadUserConfig refuses an unknown key, naming the nearest", async () => {
    await fs.writeFile(path.join(base, "config.json"), JSON.stringify({ modle: "x" }));
    const error = await configErrorAsync(loadUserConfig({ RAVENCLAWS_CONFIG_DIR: base }));
    expect(error.message).toContain("unknown user setting modle. Did you mean model?");
    expect(error.source).toBe(path.join(base, "config.json"));
  });

  it("converts text from flags and the environment, but not from the files", () => {
    expect(
      resolveRunSettings(sources({ env: { RAVENCLAWS_MAX_TICKS: "2" } })).settings.maxTicks,
    ).toBe(2);
    expect(resolveRunSettings(sources({ flags: { maxTicks: "2" } })).settings.maxTicks).toBe(2);
    const toml = configError(() =>
      resolveRunSettings(
        sources({ toml: { path: TOML_PATH, data: { heartbeat: { max_ticks: "2" } } } }),
      ),
    );
    expect(toml.message).toBe(
      `${TOML_PATH} [heartbeat] max_ticks: must be a whole number, got the string "2".`,
    );
    expect(toml.hint).toContain("Write max_ticks = 2");
    const user = configError(() =>
      resolveRunSettings(sources({ user: { path: USER_PATH, data: { tools: "false" } } })),
    );
    expect(user.message).toContain(`user config ${USER_PATH} (tools): must be a boolean`);
  });

  it("refuses a file value of the wrong type even where a flag overrides it", () => {
    const error = configError(() =>
      resolveRunSettings(
        sources({
          flags: { goal: "From the flag" },
          toml: { path: TOML_PATH, data: { heartbeat: { goal: 42 } } },
        }),
      ),
    );
    expect(error.message).toContain("[heartbeat] goal: must be a string, got 42");
  });

  it("limits an inline goal to 16 KB and a goal file's to 256 KB", () => {
    const long = "g".repeat(17 * 1024);
    const inline = configError(() => resolveRunSettings(sources({ flags: { goal: long } })));
    expect(inline.message).toContain("at most 16 KB may be given inline");
    expect(inline.hint).toContain("--goal-file");
    const fromFile = resolveRunSettings(sources({ flags: { goal: long, goalFile: "/g.txt" } }));
    expect(fromFile.settings.goal).toBe(long);
    expect(fromFile.sources.goal).toBe("--goal-file /g.txt");
  });

  it("readGoalFile reads a file up to 256 KB and refuses a larger one or a directory", async () => {
    await fs.writeFile(path.join(base, "ok.txt"), "Ship it");
    expect(await readGoalFile("ok.txt", base)).toBe("Ship it");
    await fs.writeFile(path.join(base, "big.txt"), "g".repeat(256 * 1024 + 1));
    await expect(readGoalFile("big.txt", base)).rejects.toThrow(/larger than 256 KB/);
    await expect(readGoalFile(".", base)).rejects.toThrow(/not a regular file/);
  });

  it("parseSettingText parses config set text like a flag", () => {
    expect(parseSettingText("maxTicks", "3")).toEqual({ ok: true, value: 3 });
    expect(parseSettingText("toolDeny", "shell(rm*),read(.env)")).toEqual({
      ok: true,
      value: ["shell(rm*)", "read(.env)"],
    });
    expect(parseSettingText("tickInterval", "1e15")).toEqual({
      ok: false,
      message: "must be at most 31536000 seconds (one year)",
    });
  });
});

describe("resolveRunSettings: the saved layer of a resumed heartbeat", () => {
  const STATE = "/project/.ravenclaws/heartbeat-h.json";

  it("sits between the environment and ravenclaws.toml", () => {
    const { settings, sources: from } = resolveRunSettings({
      flags: { maxTicks: "9" },
      env: { RAVENCLAWS_MODEL: "from-env" },
      saved: {
        path: STATE,
        data: { maxTicks: 3, model: "saved-model", tickInterval: 7, cron: null },
      },
      toml: {
        path: TOML_PATH,
        data: { heartbeat: { tick_interval_secs: 60, cron: "0 * * * *", max_ticks: 1 } },
      },
    });
    expect(settings.maxTicks).toBe(9);
    expect(settings.model).toBe("from-env");
    expect(settings.tickInterval).toBe(7);
    expect(from.tickInterval).toBe(savedSource(STATE));
    // Saved as unset: the toml's cron does not fill it.
    expect(settings.cron).toBeUndefined();
    expect(from.cron).toBe(savedSource(STATE));
  });

  it("reads only heartbeat-scoped keys from it, and saves only those", () => {
    const { settings } = resolveRunSettings({
      flags: {},
      env: {},
      saved: { path: STATE, data: { workdir: "/elsewhere", json: true } },
    });
    expect(settings.workdir).toBeUndefined();
    expect(settings.json).toBe(false);
    const saved = savedSettingsOf(
      resolveRunSettings(sources({ flags: { goal: "g", apiKey: "sk-secret-1234567890" } }))
        .settings,
    );
    expect(saved).not.toHaveProperty("apiKey");
    expect(saved).not.toHaveProperty("goal");
    expect(saved.cron).toBeNull();
    expect(saved.tickInterval).toBe(300);
    expect(Object.keys(saved).every((key) => isHeartbeatScoped(key as RunSettingKey))).toBe(true);
  });
});
