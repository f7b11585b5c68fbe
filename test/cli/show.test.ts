/**
 * `ravenclaws show <id>` as a child process, against a heartbeat made by a
 * real run (fake model server, real files).
 */
import * as fs from "node:fs/promises";
import * as path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { cleanEnv, runCli, tempDir } from "../support/cli.js";
import {
  type FakeOpenAI,
  jsonMessage,
  message,
  scripted,
  startFakeOpenAI,
  toolCalls,
} from "../support/fakeOpenAI.js";

const GOAL = "Keep NOTES.md up to date";

let server: FakeOpenAI;
let dir: string;
let stateDir: string;

beforeAll(async () => {
  server = await startFakeOpenAI(
    scripted({
      assess: (n) =>
        jsonMessage({
          goalComplete: false,
          actionNeeded: true,
          assessment: `Assessment number ${n}.`,
          progressSummary: `Progress after ${n} assessments.`,
        }),
      plan: (n) => jsonMessage({ steps: [`Write note ${n}`, "Check it"] }),
      execute: (n) =>
        n % 2 === 1
          ? toolCalls([
              { name: "write_file", arguments: { path: "NOTES.md", content: `note ${n}` } },
            ])
          : message(`Wrote note ${n / 2}.`),
    }),
  );
  dir = await tempDir();
  const run = await runCli(
    [
      "run",
      "--goal",
      GOAL,
      "--id",
      "s1",
      "--tick-interval",
      "0",
      "--max-ticks",
      "2",
      "--max-retries",
      "0",
    ],
    { cwd: dir, env: env() },
  );
  expect(run.code, run.stderr).toBe(0);
  stateDir = path.join(await fs.realpath(dir), ".ravenclaws");
});
afterAll(async () => {
  await server.close();
  await fs.rm(dir, { recursive: true, force: true });
});

function env() {
  return cleanEnv({ OPENAI_BASE_URL: server.baseURL });
}

describe("ravenclaws show", () => {
  it("prints state, progress, the last assessment, plan and result, usage and times", async () => {
    const result = await runCli(["show", "s1"], { cwd: dir, env: env() });
    expect(result.code, result.stderr).toBe(0);
    const out = result.stdout;
    expect(out).toContain("heartbeat:  s1\n");
    expect(out).toContain("state:      completed (max ticks)\n");
    expect(out).toContain(`goal:       ${GOAL}\n`);
    expect(out).toContain("tick:       2 of at most 2\n");
    const { usage } = JSON.parse(
      await fs.readFile(path.join(stateDir, "heartbeat-s1.json"), "utf8"),
    );
    // 2 ticks × (assess, plan, two execute calls), 10 + 5 tokens each from the fake server.
    expect(usage).toEqual({ calls: 8, promptTokens: 80, completionTokens: 40, totalTokens: 120 });
    expect(out).toContain("tokens:     120 in 8 model calls (prompt 80, completion 40)\n");
    expect(out).toMatch(/created:\s+\d{4}-\d\d-\d\d \d\d:\d\d:\d\d/);
    expect(out).toMatch(/updated:\s+\d{4}-\d\d-\d\d \d\d:\d\d:\d\d/);
    expect(out).toContain("reason:     max-ticks\n");
    expect(out).toContain(`state file: ${stateDir}/heartbeat-s1.json`);
    expect(out).toContain("Progress:\n  Progress after 2 assessments.");
    expect(out).toContain(
      "Last assessment (goal complete: no, action needed: yes):\n  Assessment number 2.",
    );
    expect(out).toContain("Last plan:\n  1. Write note 2\n  2. Check it");
    expect(out).toContain("Last result:\n  Wrote note 2.");
    // What a bare `run --id` resumes with: the saved settings that differ from the defaults.
    const saved = /^saved: +(.*)$/m.exec(out)?.[1] ?? "";
    expect(saved).toContain("--tick-interval 0");
    expect(saved).toContain("--max-ticks 2");
    expect(saved).not.toContain("--max-iterations-per-tick");
  });

  it("--json prints the state file's fields without the snapshot, plus settings, process and files", async () => {
    const result = await runCli(["show", "s1", "--json"], { cwd: dir, env: env() });
    expect(result.code, result.stderr).toBe(0);
    const data = JSON.parse(result.stdout);
    const file = JSON.parse(await fs.readFile(path.join(stateDir, "heartbeat-s1.json"), "utf8"));
    expect(data).not.toHaveProperty("snapshot");
    expect(data).toMatchObject({
      id: "s1",
      state: "completed (max ticks)",
      status: "completed",
      tick: 2,
      goal: GOAL,
      lastPlan: { steps: ["Write note 2", "Check it"] },
      lastResult: "Wrote note 2.",
      usage: file.usage,
      createdAt: file.createdAt,
      settings: { maxTicks: 2, tickIntervalSec: 0 },
      savedSettings: { maxTicks: 2, tickInterval: 0, maxIterationsPerTick: 5 },
      process: { running: false },
      files: {
        stateFile: path.join(stateDir, "heartbeat-s1.json"),
        journal: path.join(stateDir, "heartbeat-s1.jsonl"),
        lock: path.join(stateDir, "heartbeat-s1.lock"),
      },
    });
  });

  it("exits 2 for an unknown id, naming it and the state dir and listing the known ids", async () => {
    const result = await runCli(["show", "nope"], { cwd: dir, env: env() });
    expect(result.code).toBe(2);
    expect(result.stderr).toContain(`There is no heartbeat "nope" in ${stateDir}.`);
    expect(result.stderr).toContain("Known ids there: s1.");
    expect(result.stdout).toBe("");
  });

  it("exits 2 for an id that cannot be one (a path, say)", async () => {
    const result = await runCli(["show", "../etc"], { cwd: dir, env: env() });
    expect(result.code).toBe(2);
    expect(result.stderr).toContain('"../etc" is not a heartbeat id');
  });

  it("exits 3 naming a state file that cannot be used, and leaves it as it was", async () => {
    const bad = path.join(stateDir, "heartbeat-broken.json");
    await fs.writeFile(bad, "");
    try {
      const result = await runCli(["show", "broken"], { cwd: dir, env: env() });
      expect(result.code).toBe(3);
      expect(result.stderr).toContain(`The state file ${bad} is empty.`);
      expect(await fs.readFile(bad, "utf8")).toBe("");
    } finally {
      await fs.rm(bad);
    }
  });
});
