/**
 * `ravenclaws status` as a child process, and the acceptance: a
 * heartbeat configured by `ravenclaws.toml` runs to its max ticks, then
 * `status --json`, `show` and `logs` report it.
 */
import * as fs from "node:fs/promises";
import * as path from "node:path";
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { cleanEnv, runCli, tempDir } from "../support/cli.js";
import { type FakeOpenAI, startFakeOpenAI } from "../support/fakeOpenAI.js";

const GOAL = "Summarise the TODOs of this repo in NOTES.md";

let server: FakeOpenAI;
let dir: string;

beforeAll(async () => {
  server = await startFakeOpenAI();
});
afterAll(async () => {
  await server.close();
});
beforeEach(async () => {
  dir = await tempDir();
});
afterEach(async () => {
  await fs.rm(dir, { recursive: true, force: true });
});

const env = (extra: Record<string, string> = {}) =>
  cleanEnv({ OPENAI_BASE_URL: server.baseURL, OPENAI_API_KEY: "sk-test", ...extra });

async function writeToml(where: string, extra = "") {
  await fs.writeFile(
    path.join(where, "ravenclaws.toml"),
    `[heartbeat]\ngoal = "${GOAL}"\ntick_interval_secs = 0\nmax_ticks = 2\n${extra}`,
  );
}

describe("ravenclaws status", () => {
  it("acceptance: run --id t1 with ravenclaws.toml stops at tick 2; status --json lists it; show and logs work", async () => {
    await writeToml(dir);
    const run = await runCli(["run", "--id", "t1", "--max-retries", "0"], { cwd: dir, env: env() });
    expect(run.code, run.stderr).toBe(0);
    expect(run.stderr).toContain(`goal: ${GOAL}`);
    expect(run.stdout).toContain("completed after 2 ticks");

    const status = await runCli(["status", "--json"], { cwd: dir, env: env() });
    expect(status.code, status.stderr).toBe(0);
    const rows = JSON.parse(status.stdout);
    expect(rows).toHaveLength(1);
    expect(rows[0]).toMatchObject({
      id: "t1",
      status: "completed",
      state: "completed (max ticks)",
      running: false,
      pid: null,
      tick: 2,
      maxTicks: 2,
      goal: GOAL,
      reason: "max-ticks",
      stateFile: path.join(await fs.realpath(dir), ".ravenclaws", "heartbeat-t1.json"),
    });
    expect(rows[0].tokens).toBeGreaterThan(0);

    const table = await runCli(["status"], { cwd: dir, env: env() });
    expect(table.code).toBe(0);
    const [header, row] = table.stdout.trim().split("\n");
    expect(header).toMatch(/^ID\s+STATE\s+TICK\s+NEXT TICK\s+TOKENS\s+GOAL$/);
    expect(row).toMatch(/^t1\s+completed \(max ticks\)\s+2\/2\s+-\s+[\d,]+\s+Summarise the TODOs/);

    const show = await runCli(["show", "t1"], { cwd: dir, env: env() });
    expect(show.code, show.stderr).toBe(0);
    expect(show.stdout).toContain("state:      completed (max ticks)");
    expect(show.stdout).toContain("tick:       2 of at most 2");
    expect(show.stdout).toContain(`goal:       ${GOAL}`);

    const logs = await runCli(["logs", "t1"], { cwd: dir, env: env() });
    expect(logs.code, logs.stderr).toBe(0);
    const lines = logs.stdout.trim().split("\n");
    expect(lines.filter((l) => /^#\d/.test(l)).map((l) => l.split(/\s+/)[0])).toEqual(["#1", "#2"]);
    expect(lines.at(-1)).toMatch(/^end\s.*completed \(max-ticks\) at tick 2$/);
  });

  it("says so in a friendly line when there are no heartbeats (exit 0), and --json prints []", async () => {
    const plain = await runCli(["status"], { cwd: dir, env: env() });
    expect(plain.code).toBe(0);
    expect(plain.stdout).toContain(`No heartbeats in ${await fs.realpath(dir)}/.ravenclaws.`);
    const json = await runCli(["status", "--json"], { cwd: dir, env: env() });
    expect(json.code).toBe(0);
    expect(JSON.parse(json.stdout)).toEqual([]);
  });

  it("reads only the location settings: a bad value for another one does not stop it", async () => {
    await fs.writeFile(path.join(dir, "ravenclaws.toml"), '[heartbeat]\nmax_ticks = "many"\n');
    try {
      const result = await runCli(["status", "--json"], {
        cwd: dir,
        env: { ...env(), RAVENCLAWS_MAX_TICKS: "abc" },
      });
      expect(result.code, result.stderr).toBe(0);
      expect(JSON.parse(result.stdout)).toEqual([]);
    } finally {
      await fs.rm(path.join(dir, "ravenclaws.toml"));
    }
  });

  it("finds the state dir as run does: --workdir, --state-dir, RAVENCLAWS_STATE_DIR, and ravenclaws.toml", async () => {
    const work = path.join(dir, "work");
    const custom = path.join(dir, "custom-state");
    await fs.mkdir(work);
    const first = await runCli(
      [
        "run",
        "--goal",
        GOAL,
        "--id",
        "a1",
        "--workdir",
        work,
        "--tick-interval",
        "0",
        "--max-ticks",
        "1",
      ],
      { cwd: dir, env: env() },
    );
    expect(first.code, first.stderr).toBe(0);
    const second = await runCli(
      [
        "run",
        "--goal",
        GOAL,
        "--id",
        "b1",
        "--state-dir",
        custom,
        "--tick-interval",
        "0",
        "--max-ticks",
        "1",
      ],
      { cwd: dir, env: env() },
    );
    expect(second.code, second.stderr).toBe(0);

    const ids = async (args: string[], extraEnv: Record<string, string> = {}, cwd = dir) => {
      const r = await runCli(["status", "--json", ...args], { cwd, env: env(extraEnv) });
      expect(r.code, r.stderr).toBe(0);
      return JSON.parse(r.stdout).map((row: { id: string }) => row.id);
    };
    expect(
      await Promise.all([
        ids(["--workdir", work]),
        ids(["--state-dir", custom]),
        ids([], { RAVENCLAWS_STATE_DIR: custom }),
        ids([], { RAVENCLAWS_WORKDIR: work }),
      ]),
    ).toEqual([["a1"], ["b1"], ["b1"], ["a1"]]);
    await fs.writeFile(path.join(dir, "ravenclaws.toml"), `[heartbeat]\nstate_dir = "${custom}"\n`);
    expect(await ids([])).toEqual(["b1"]);

    const missing = await runCli(["status", "--workdir", path.join(dir, "nope")], {
      cwd: dir,
      env: env(),
    });
    expect(missing.code).toBe(2);
    expect(missing.stderr).toContain("--workdir");
  });

  it("lists the healthy heartbeats and exits 3 naming a state file it cannot use", async () => {
    const run = await runCli(
      ["run", "--goal", GOAL, "--id", "good", "--tick-interval", "0", "--max-ticks", "1"],
      { cwd: dir, env: env() },
    );
    expect(run.code, run.stderr).toBe(0);
    const bad = path.join(dir, ".ravenclaws", "heartbeat-bad.json");
    await fs.writeFile(bad, '{"schemaVersion": 1, "id": "bad", "tick": ');

    const result = await runCli(["status"], { cwd: dir, env: env() });
    expect(result.code).toBe(3);
    expect(result.stdout).toMatch(/^good\s+completed \(max ticks\)/m);
    expect(result.stdout).toMatch(/^bad\s+unreadable/m);
    expect(result.stderr).toContain(
      `${await fs.realpath(path.dirname(bad))}/heartbeat-bad.json is not valid JSON`,
    );

    const json = await runCli(["status", "--json"], { cwd: dir, env: env() });
    expect(json.code).toBe(3);
    const rows = JSON.parse(json.stdout);
    expect(rows.map((r: { id: string; state: string }) => [r.id, r.state])).toEqual([
      ["good", "completed (max ticks)"],
      ["bad", "unreadable"],
    ]);
    expect(rows[1].error.code).toBe("state-not-json");
    // Left alone.
    expect(await fs.readFile(bad, "utf8")).toBe('{"schemaVersion": 1, "id": "bad", "tick": ');
  });
});
