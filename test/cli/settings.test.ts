/**
 * The settings table at work in the real CLI: typos and wrong types in
 * `ravenclaws.toml` and the user config are refused naming the file, the key
 * and the nearest valid one; unknown flags and commands get "did you mean";
 * a missing goal says so; numbers and goals are bounded; `--goal-file`.
 */
import * as fs from "node:fs/promises";
import * as path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { cleanEnv, runCli, tempDir } from "../support/cli.js";
import { type FakeOpenAI, startFakeOpenAI } from "../support/fakeOpenAI.js";

let server: FakeOpenAI;
/** Requests the refused runs must not have made (the accepted ones are counted apart). */
let allowedRequests = 0;
beforeAll(async () => {
  server = await startFakeOpenAI();
});
afterAll(async () => {
  expect(server.chatRequests()).toHaveLength(allowedRequests);
  await server.close();
});

const env = (extra: Record<string, string> = {}) =>
  cleanEnv({ OPENAI_API_KEY: "sk-test-0123456789", ...extra });
/** A valid one-tick run, with `extra` after it. */
const run = (...extra: string[]) => [
  "run",
  "--base-url",
  server.baseURL,
  "--goal",
  "Keep notes",
  "--max-ticks",
  "1",
  "--no-tools",
  ...extra,
];

/** Runs `args` in a new directory holding `files`; returns the result and the directory's entries after. */
async function inDir(files: Record<string, string>, args: string[], extraEnv = {}) {
  const dir = await fs.realpath(await tempDir());
  try {
    for (const [name, text] of Object.entries(files)) {
      await fs.mkdir(path.dirname(path.join(dir, name)), { recursive: true });
      await fs.writeFile(path.join(dir, name), text);
    }
    const result = await runCli(args, { cwd: dir, env: env({ ...extraEnv }) });
    return { ...result, dir, entries: (await fs.readdir(dir)).sort() };
  } finally {
    await fs.rm(dir, { recursive: true, force: true });
  }
}

function expectUsageError(result: { code: number | null; stderr: string }, ...says: string[]) {
  expect(result.code, result.stderr).toBe(2);
  expect(result.stderr).toMatch(/^ravenclaws: error: /);
  expect(result.stderr).not.toContain("    at ");
  for (const text of says) expect(result.stderr).toContain(text);
}

describe.concurrent("ravenclaws.toml: unknown keys and sections, wrong types", () => {
  const cases: { name: string; toml: string; says: string[] }[] = [
    {
      name: "max_tick = 1",
      toml: "[heartbeat]\nmax_tick = 1\n",
      says: ["unknown key max_tick in [heartbeat]", "Did you mean max_ticks?"],
    },
    {
      name: "[hearbeat]",
      toml: "[hearbeat]\nmax_ticks = 1\n",
      says: ["unknown section [hearbeat]", "Did you mean [heartbeat]?"],
    },
    {
      name: "[llm] modle",
      toml: '[llm]\nmodle = "llama3.2"\n',
      says: ["unknown key modle in [llm]", "Did you mean model?"],
    },
    {
      name: "a key outside any section",
      toml: "max_ticks = 1\n",
      says: ["unknown key max_ticks outside any section", "max_ticks in [heartbeat]"],
    },
    {
      name: "a key in the wrong section",
      toml: '[heartbeat]\nmodel = "x"\n',
      says: ["unknown key model in [heartbeat]", "model belongs in [llm]"],
    },
    {
      name: 'max_ticks = "2"',
      toml: '[heartbeat]\nmax_ticks = "2"\n',
      says: [
        '[heartbeat] max_ticks: must be a whole number, got the string "2"',
        "Write max_ticks = 2",
      ],
    },
    {
      name: "goal = 42 (even with --goal given)",
      toml: "[heartbeat]\ngoal = 42\n",
      says: ["[heartbeat] goal: must be a string, got 42"],
    },
    {
      name: 'enable_tools = "false"',
      toml: '[heartbeat]\nenable_tools = "false"\n',
      says: ["[heartbeat] enable_tools: must be a boolean", "Write enable_tools = false"],
    },
    {
      name: 'deny = "shell(rm*)" (a string, not an array)',
      toml: '[tools]\ndeny = "shell(rm*)"\n',
      says: ["[tools] deny: must be an array of strings"],
    },
    {
      name: "tick_interval_secs beyond a year",
      toml: "[heartbeat]\ntick_interval_secs = 1e15\n",
      says: ["[heartbeat] tick_interval_secs: must be at most 31536000 seconds (one year)"],
    },
  ];
  for (const c of cases) {
    it(`${c.name}: exit 2 naming the file and the key, nothing started`, async () => {
      const result = await inDir({ "ravenclaws.toml": c.toml }, run());
      expectUsageError(result, path.join(result.dir, "ravenclaws.toml"), ...c.says);
      expect(result.entries).toEqual(["ravenclaws.toml"]);
    });
  }

  it("the read commands refuse the same typos (status would look in the wrong place)", async () => {
    const result = await inDir({ "ravenclaws.toml": '[heartbeat]\nstate_dirr = "x"\n' }, [
      "status",
    ]);
    expectUsageError(result, "unknown key state_dirr in [heartbeat]", "Did you mean state_dir?");
  });
});

describe.concurrent("the user config: unknown keys", () => {
  it("run refuses an unknown key in the user config, naming the file, the key and the nearest", async () => {
    const configDir = await tempDir();
    try {
      await fs.writeFile(
        path.join(configDir, "config.json"),
        JSON.stringify({ model: "m", maxTick: 3 }),
      );
      const result = await inDir({}, run(), { RAVENCLAWS_CONFIG_DIR: configDir });
      expectUsageError(
        result,
        path.join(configDir, "config.json"),
        "unknown user setting maxTick",
        "Did you mean maxTicks?",
        "ravenclaws config unset maxTick",
      );
      // `config unset` can remove it, and `config list` flags it.
      const list = await runCli(["config", "list"], {
        env: env({ RAVENCLAWS_CONFIG_DIR: configDir }),
      });
      expect(list.stdout).toContain("maxTick = 3  (not a setting");
      const unset = await runCli(["config", "unset", "maxTick"], {
        env: env({ RAVENCLAWS_CONFIG_DIR: configDir }),
      });
      expect(unset.code, unset.stderr).toBe(0);
      expect(JSON.parse(await fs.readFile(path.join(configDir, "config.json"), "utf8"))).toEqual({
        model: "m",
      });
    } finally {
      await fs.rm(configDir, { recursive: true, force: true });
    }
  }, 90_000);

  it("config set of an unknown key names the nearest", async () => {
    const configDir = await tempDir();
    try {
      const result = await runCli(["config", "set", "tickIntervall", "5"], {
        env: env({ RAVENCLAWS_CONFIG_DIR: configDir }),
      });
      expectUsageError(
        result,
        '"tickIntervall" is not a user setting.',
        "Did you mean tickInterval?",
      );
    } finally {
      await fs.rm(configDir, { recursive: true, force: true });
    }
  });
});

describe.concurrent("flags and commands: did you mean", () => {
  const cases: { name: string; args: () => string[]; says: string[] }[] = [
    {
      name: "a misspelt run flag",
      args: () => run("--tick-intervall", "3"),
      says: ["Unknown argument: tick-intervall.", "Did you mean --tick-interval?"],
    },
    {
      name: "a misspelt flag with =",
      args: () => run("--max-tick=3"),
      says: ["Unknown argument: max-tick.", "Did you mean --max-ticks?"],
    },
    {
      name: "a misspelt flag in the legacy --heartbeat form",
      args: () => ["--heartbeat", "--heartbeat-goal", "x", "--heartbeat-max-tick", "1"],
      says: ["Did you mean --heartbeat-max-ticks?"],
    },
    {
      name: "a misspelt status flag",
      args: () => ["status", "--jsn"],
      says: ["Unknown argument: jsn.", "Did you mean --json?"],
    },
    {
      name: "a misspelt command",
      args: () => ["stauts"],
      says: ["stauts", "Did you mean status?"],
    },
    { name: "a short misspelt command", args: () => ["rn"], says: ["Did you mean run?"] },
    {
      name: "a misspelt config command",
      args: () => ["config", "lst"],
      says: ["Unknown command", "Did you mean list?"],
    },
  ];
  for (const c of cases) {
    it(c.name, async () => {
      const result = await inDir({}, c.args());
      expectUsageError(result, ...c.says);
      expect(result.entries).toEqual([]);
    });
  }
});

describe.concurrent("goal and bounds", () => {
  it("run with no goal and no --id says --goal is required", async () => {
    const result = await inDir({}, ["run", "--base-url", server.baseURL, "--max-ticks", "1"]);
    expectUsageError(result, "--goal is required to start a heartbeat");
    expect(result.stderr).not.toContain("There is no heartbeat");
    expect(result.entries).toEqual([]);
  });

  const bounds: { name: string; extra: string[]; says: string[] }[] = [
    {
      name: "--tick-interval 1e15",
      extra: ["--tick-interval", "1e15"],
      says: ["option --tick-interval: must be at most 31536000 seconds (one year)"],
    },
    {
      name: "--request-timeout beyond an hour",
      extra: ["--request-timeout", "3601"],
      says: ["option --request-timeout: must be at most 3600 seconds"],
    },
    {
      name: "--shell-timeout beyond a day",
      extra: ["--shell-timeout", "1e9"],
      says: ["option --shell-timeout: must be at most 86400 seconds"],
    },
    {
      name: "--failure-backoff beyond an hour",
      extra: ["--failure-backoff", "1e6"],
      says: ["option --failure-backoff: must be at most 3600 seconds"],
    },
    {
      name: "--max-iterations-per-tick beyond 1000",
      extra: ["--max-iterations-per-tick", "1e6"],
      says: ["option --max-iterations-per-tick: must be at most 1000"],
    },
    {
      name: "--max-ticks beyond a safe integer",
      extra: ["--max-ticks", "1e300"],
      says: ["option --max-ticks: must be at most"],
    },
    {
      name: "a 20 KB --goal",
      extra: ["--goal", "g".repeat(20 * 1024)],
      says: ["option --goal: the goal is 20 KB; at most 16 KB may be given inline", "--goal-file"],
    },
    {
      name: "--goal and --goal-file together",
      extra: ["--goal-file", "goal.txt"],
      says: ["--goal or with --goal-file, not both"],
    },
  ];
  for (const c of bounds) {
    it(`${c.name}: exit 2, nothing started`, async () => {
      const result = await inDir({}, run(...c.extra));
      expectUsageError(result, ...c.says);
      expect(result.entries).toEqual([]);
    });
  }

  it("the same 20 KB goal via --goal-file is accepted and kept whole", async () => {
    allowedRequests += 2; // assess + plan of its one tick, when the goal is not met
    const goal = `Keep notes. ${"g".repeat(20 * 1024)}`;
    const result = await inDir({ "goal.txt": goal }, [
      "run",
      "--base-url",
      server.baseURL,
      "--goal-file",
      "goal.txt",
      "--id",
      "gf",
      "--max-ticks",
      "1",
      "--no-tools",
      "--json",
    ]);
    expect(result.code, result.stderr).toBe(0);
    const start = result.stdout
      .split("\n")
      .filter(Boolean)
      .map((line) => JSON.parse(line) as { type?: string; event?: string; goal?: string })
      .find((e) => e.goal !== undefined);
    expect(start?.goal).toBe(goal);
  });

  it("a --goal-file larger than 256 KB is refused", async () => {
    const result = await inDir({ "goal.txt": "g".repeat(256 * 1024 + 1) }, [
      "run",
      "--base-url",
      server.baseURL,
      "--goal-file",
      "goal.txt",
    ]);
    expectUsageError(result, "--goal-file", "goal.txt", "is larger than 256 KB");
    expect(result.entries).toEqual(["goal.txt"]);
  });

  it("a --goal-file that does not exist is refused naming it", async () => {
    const result = await inDir({}, [
      "run",
      "--base-url",
      server.baseURL,
      "--goal-file",
      "nope.txt",
    ]);
    expectUsageError(result, "--goal-file", "nope.txt", "cannot be read");
  });
});
