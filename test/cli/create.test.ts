/**
 * `ravenclaws create` in a state dir, as users run it: the built CLI, the
 * fake model server, a real `serve`. A created heartbeat is on disk and has
 * not ticked (no model call); `serve` adopts it and runs it; one created
 * while `serve` runs is taken up at once; bad input exits 2 naming it.
 * (`create --database-url` is covered by test/cli/worker.test.ts.)
 */
import * as fs from "node:fs/promises";
import * as path from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { type CliProcess, cleanEnv, runCli, startCli } from "../support/cli.js";
import { useCliHarness } from "../support/harness.js";

const h = useCliHarness();
const KEY = "sk-x-create-0123456789abcdef";
let serving: CliProcess | undefined;

afterEach(async () => {
  serving?.child.kill("SIGKILL");
  await serving?.exited;
  serving = undefined;
});

async function until<T>(check: () => Promise<T | undefined>, what: string, ms = 30_000) {
  const deadline = Date.now() + ms;
  for (;;) {
    const value = await check();
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

const createArgs = (...extra: string[]) => [
  "create",
  "--workdir",
  h.workdir,
  "--base-url",
  h.server.baseURL,
  "--model",
  "fake",
  "--tick-interval",
  "0",
  "--max-ticks",
  "2",
  "--no-tools",
  ...extra,
];

type StatusRow = { id: string; status: string; tick: number };
const statusOf = async () => {
  const status = await runCli(["status", "--json", "--workdir", h.workdir], { env: cleanEnv() });
  expect(status.code, status.stderr).toBe(0);
  return JSON.parse(status.stdout) as StatusRow[];
};

describe("ravenclaws create (state dir)", () => {
  it("makes a heartbeat without running it; serve adopts it, and takes one created while it runs at once", async () => {
    const made = await runCli(createArgs("--goal", "Write notes", "--id", "first"), {
      env: cleanEnv({ OPENAI_API_KEY: KEY }),
    });
    expect(made.code, made.stderr).toBe(0);
    expect(made.stdout).toBe("first\n");
    // On disk as `run` writes it first: asleep, due now, nothing ticked, no model call.
    const file = await h.stateOf("first");
    expect(file).toMatchObject({ id: "first", goal: "Write notes", status: "sleeping", tick: 0 });
    expect(Date.parse(file.nextTickAt)).toBeLessThanOrEqual(Date.now());
    expect(file.settings).toMatchObject({ maxTicks: 2, tickInterval: 0, tools: false });
    expect(JSON.stringify(file)).not.toContain(KEY);
    expect(h.server.chatRequests()).toHaveLength(0);
    const record = JSON.parse(
      await fs.readFile(path.join(h.stateDir, "heartbeat-first.host"), "utf8"),
    );
    expect(record).toMatchObject({ workdir: await fs.realpath(h.workdir), stopped: null });

    serving = startCli(["serve", "--workdir", h.workdir, "--port", "0", "--api-key", KEY], {
      cwd: h.workdir,
      env: cleanEnv(),
    });
    await serving.waitForOutput("\n", 20_000);
    await until(async () => {
      const rows = await statusOf();
      const row = rows.find((r) => r.id === "first");
      return row?.status === "completed" ? row : undefined;
    }, "first to complete under serve");

    // Created while serve runs: `create --json` prints the record, and serve hosts it at once.
    const second = await runCli(createArgs("--goal", "Tidy", "--id", "second", "--json"), {
      env: cleanEnv(),
    });
    expect(second.code, second.stderr).toBe(0);
    expect(JSON.parse(second.stdout)).toMatchObject({
      id: "second",
      status: "sleeping",
      workdir: await fs.realpath(h.workdir),
      where: h.stateDir,
    });
    const done = await until(async () => {
      const row = (await statusOf()).find((r) => r.id === "second");
      return row?.status === "completed" ? row : undefined;
    }, "second to complete under the running serve");
    expect(done.tick).toBe(2);
    const ticks = (await h.journalOf("second")).filter((e) => e.type === "tick").map((e) => e.tick);
    expect(ticks).toEqual([1, 2]);
    serving.child.kill("SIGTERM");
    expect((await serving.exited).code).toBe(0);
  }, 60_000);

  it("refuses an existing id, a workdir that is not a directory, and a bad setting (exit 2, naming it)", async () => {
    expect((await runCli(createArgs("--goal", "x", "--id", "dup"), { env: cleanEnv() })).code).toBe(
      0,
    );
    const dup = await runCli(createArgs("--goal", "y", "--id", "dup"), { env: cleanEnv() });
    expect(dup.code).toBe(2);
    expect(dup.stderr).toContain('A heartbeat "dup" already exists');
    expect((await h.stateOf("dup")).goal).toBe("x");

    const missing = path.join(h.workdir, "nope");
    const bad = await runCli(
      ["create", "--goal", "x", "--workdir", missing, "--base-url", h.server.baseURL],
      { env: cleanEnv() },
    );
    expect(bad.code).toBe(2);
    expect(bad.stderr).toContain(`${missing} is not an existing directory`);

    const setting = await runCli(createArgs("--goal", "x", "--max-ticks", "many"), {
      env: cleanEnv(),
    });
    expect(setting.code).toBe(2);
    expect(setting.stderr).toContain("--max-ticks");

    const goal = await runCli(["create", "--workdir", h.workdir], { env: cleanEnv() });
    expect(goal.code).toBe(2);
    expect(goal.stderr).toContain("--goal is required");
  }, 30_000);
});
