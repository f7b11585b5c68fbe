/**
 * A heartbeat's lifecycle across runs, end to end (the built CLI against the
 * fake OpenAI server): honest exits, finished heartbeats, `--continue`, and
 * settings kept in the state file across SIGTERM and SIGKILL.
 */
import * as fs from "node:fs/promises";
import * as path from "node:path";
import { describe, expect, it } from "vitest";
import { cleanEnv, runCli, startCli } from "../support/cli.js";
import { message } from "../support/fakeOpenAI.js";
import { useCliHarness } from "../support/harness.js";

const GOAL = "Keep NOTES.md summarising the TODOs in this repo";
const env = () => cleanEnv({ OPENAI_API_KEY: "sk-test-lifecycle-0123456789" });

const h = useCliHarness({ model: "test-model", flags: ["--failure-backoff", "0"] });

describe("honest exits", () => {
  it("a 3-tick run whose ticks all fail (replies never JSON) exits 1, failed (last-tick-failed)", async () => {
    h.server.setHandler(() => message("Sure! Here is what I think, in prose."));
    const result = await runCli(h.runArgs("--goal", GOAL, "--max-ticks", "3", "--id", "allfail"), {
      env: env(),
    });
    expect(result.code).toBe(1);
    const state = await h.stateOf("allfail");
    expect(state).toMatchObject({ status: "failed", reason: "last-tick-failed", tick: 3 });
    // Unusable replies are charged too.
    expect(state.usage.totalTokens).toBeGreaterThan(0);
    expect(result.stdout).toContain(
      "Heartbeat failed at tick 3: max ticks reached, but the last tick failed. 3 of this run's 3 ticks failed.",
    );
    expect(result.stderr).toContain("it reached its last tick (3), and that tick failed");
    const ends = (await h.journalOf("allfail")).filter((e) => e.type === "end");
    expect(ends).toMatchObject([{ status: "failed", reason: "last-tick-failed", tick: 3 }]);
  });

  it("a 1-tick run that succeeds says 1 tick, and exits 0", async () => {
    const result = await runCli(h.runArgs("--goal", GOAL, "--max-ticks", "1", "--id", "one"), {
      env: env(),
    });
    expect(result.code).toBe(0);
    expect(result.stdout).toContain("Heartbeat completed after 1 tick (max ticks reached).");
    expect(result.stdout).not.toContain("failed");
  });
});

/** `run` against the fake server in the harness's workdir, with nothing else preset (no interval). */
const bare = (...extra: string[]) => [
  "run",
  "--base-url",
  h.server.baseURL,
  "--workdir",
  h.workdir,
  ...extra,
];

/** Starts a heartbeat, lets its first tick finish and go to sleep, then stops it with `signal`. */
async function startAndStop(signal: "SIGTERM" | "SIGKILL", ...flags: string[]) {
  const cli = startCli(bare("--goal", GOAL, ...flags), { env: env() });
  await cli.waitForOutput("next tick at");
  cli.child.kill(signal);
  const exit = await cli.exited;
  if (signal === "SIGKILL") expect(exit.signal).toBe("SIGKILL");
  else expect(exit.code).toBe(0);
}

describe("a heartbeat keeps its settings", () => {
  for (const signal of ["SIGTERM", "SIGKILL"] as const) {
    it(`across ${signal}: a bare resume runs with the saved settings; a flag changes just that one, printed and journaled`, async () => {
      const id = `keep-${signal.toLowerCase()}`;
      await startAndStop(
        signal,
        "--id",
        id,
        "--max-ticks",
        "3",
        "--tick-interval",
        "3600",
        "--max-iterations-per-tick",
        "2",
        "--failure-backoff",
        "7",
        "--deny",
        "shell(git push*)",
      );
      const stopped = await h.stateOf(id);
      expect(stopped.schemaVersion).toBe(3);
      expect(stopped.status).toBe(signal === "SIGTERM" ? "shutdown" : "sleeping");
      expect(stopped.settings).toMatchObject({
        maxTicks: 3,
        tickInterval: 3600,
        maxIterationsPerTick: 2,
        failureBackoff: 7,
        toolDeny: ["shell(git push*)"],
        cron: null,
      });
      expect(JSON.stringify(stopped.settings)).not.toContain("sk-test");
      expect(stopped.settings).not.toHaveProperty("apiKey");

      // Only the interval is given: max ticks (3) and the rest come from the state file.
      const resumed = await runCli(bare("--id", id, "--tick-interval", "0"), { env: env() });
      expect(resumed.code).toBe(0);
      expect(resumed.stderr).toContain(
        "ravenclaws: tick-interval 3600 → 0 (option --tick-interval)\n",
      );
      expect(resumed.stderr.match(/ravenclaws: [a-z-]+ .* → /g)).toHaveLength(1);
      const state = await h.stateOf(id);
      expect(state).toMatchObject({ tick: 3, status: "completed", reason: "max-ticks" });
      expect(state.settings).toEqual({ ...stopped.settings, tickInterval: 0 });
      const runs = (await h.journalOf(id)).filter((e) => e.type === "run");
      expect(runs).toMatchObject([
        { resumed: false, tick: 0, changes: [] },
        {
          resumed: true,
          tick: 1,
          changes: [
            { setting: "tickInterval", from: 3600, to: 0, source: "option --tick-interval" },
          ],
        },
      ]);
    });
  }

  for (const signal of ["SIGTERM", "SIGKILL"] as const) {
    it(`a --cron "0 0 1 1 *" heartbeat stopped by ${signal}, resumed bare where ravenclaws.toml says tick_interval_secs = 2, sleeps until its saved nextTickAt`, async () => {
      const id = `yearly-${signal.toLowerCase()}`;
      await startAndStop(signal, "--id", id, "--cron", "0 0 1 1 *", "--timezone", "UTC");
      const stopped = await h.stateOf(id);
      expect(stopped.settings.cron).toBe("0 0 1 1 *");
      expect(stopped.nextTickAt).toMatch(/-01-01T00:00:00\.000Z$/);
      const calls = h.server.chatRequests().length;

      const elsewhere = path.join(h.root, "elsewhere");
      await fs.mkdir(elsewhere);
      await fs.writeFile(
        path.join(elsewhere, "ravenclaws.toml"),
        "[heartbeat]\ntick_interval_secs = 2\n",
      );
      const resumed = startCli(bare("--id", id, "--json"), { env: env(), cwd: elsewhere });
      // Its own report says it is asleep; then stop it and look at what it did.
      await resumed.waitForOutput(/"event":"state","state":"sleeping"/);
      resumed.child.kill("SIGTERM");
      const exit = await resumed.exited;
      expect(exit.code).toBe(0);
      expect(exit.stderr).not.toContain("→");
      expect(h.server.chatRequests()).toHaveLength(calls);
      const state = await h.stateOf(id);
      expect(state).toMatchObject({ status: "shutdown", nextTickAt: stopped.nextTickAt, tick: 1 });
      expect(state.settings).toEqual(stopped.settings);
    });
  }
});

/** SHA-256 of a file's bytes. */
async function hashOf(file: string): Promise<string> {
  const { createHash } = await import("node:crypto");
  return createHash("sha256")
    .update(await fs.readFile(file))
    .digest("hex");
}

describe("finished means finished", () => {
  it("run --id on a completed heartbeat: no model call, exit 0, the file byte for byte; --max-ticks at or below its tick: exit 2", async () => {
    const first = await runCli(h.runArgs("--goal", GOAL, "--max-ticks", "2", "--id", "fin"), {
      env: env(),
    });
    expect(first.code).toBe(0);
    const file = h.stateFile("fin");
    const hash = await hashOf(file);
    const journal = await fs.readFile(h.journalFile("fin"), "utf8");
    const calls = h.server.chatRequests().length;

    const again = await runCli(bare("--id", "fin"), { env: env() });
    expect(again.code).toBe(0);
    expect(again.stdout).toMatch(
      /^Heartbeat fin completed after 2 ticks \(max ticks reached, on \d{4}-\d\d-\d\dT[\d:.]+Z\)\. Tokens: \d+ in \d+ model calls\.\n$/,
    );
    expect(again.stderr).toContain("nothing was run");
    expect(again.stderr).toContain("ravenclaws run --id fin --continue --max-ticks 3");

    for (const below of ["1", "2"]) {
      const refused = await runCli(bare("--id", "fin", "--max-ticks", below), { env: env() });
      expect(refused.code).toBe(2);
      expect(refused.stderr).toContain(
        `--max-ticks ${below} is not above heartbeat fin's current tick (2)`,
      );
    }
    const refusedContinue = await runCli(bare("--id", "fin", "--continue", "--max-ticks", "2"), {
      env: env(),
    });
    expect(refusedContinue.code).toBe(2);
    // --continue without a new limit: its saved max ticks (2) is reached.
    const noLimit = await runCli(bare("--id", "fin", "--continue"), { env: env() });
    expect(noLimit.code).toBe(2);
    expect(noLimit.stderr).toContain(
      "--continue needs a --max-ticks above heartbeat fin's current tick (2)",
    );

    expect(h.server.chatRequests()).toHaveLength(calls);
    expect(await hashOf(file)).toBe(hash);
    expect(await fs.readFile(h.journalFile("fin"), "utf8")).toBe(journal);
  });

  it("--continue with --max-ticks above the tick runs on, journaled as a continuation", async () => {
    await runCli(h.runArgs("--goal", GOAL, "--max-ticks", "1", "--id", "more"), { env: env() });
    const more = await runCli(
      bare("--id", "more", "--continue", "--max-ticks", "3", "--tick-interval", "0"),
      {
        env: env(),
      },
    );
    expect(more.code).toBe(0);
    expect(more.stderr).toContain(
      "continuing heartbeat more, which ended completed (max-ticks) at tick 1",
    );
    expect(more.stderr).toContain("ravenclaws: max-ticks 1 → 3 (option --max-ticks)");
    expect(await h.stateOf("more")).toMatchObject({
      tick: 3,
      status: "completed",
      reason: "max-ticks",
    });
    const runs = (await h.journalOf("more")).filter((e) => e.type === "run");
    expect(runs[1]).toMatchObject({
      resumed: true,
      tick: 1,
      continued: { status: "completed", reason: "max-ticks", tick: 1 },
    });
  });

  it("a failed heartbeat: exit 1 and nothing run without --continue; never relabelled completed", async () => {
    h.server.setHandler(() => message("not JSON at all"));
    const failed = await runCli(
      h.runArgs(
        "--goal",
        GOAL,
        "--max-ticks",
        "2",
        "--max-consecutive-failures",
        "2",
        "--id",
        "bad",
      ),
      { env: env() },
    );
    expect(failed.code).toBe(1);
    expect(failed.stderr).toContain("--id bad --continue");
    const file = h.stateFile("bad");
    const hash = await hashOf(file);
    const calls = h.server.chatRequests().length;

    const again = await runCli(bare("--id", "bad"), { env: env() });
    expect(again.code).toBe(1);
    expect(again.stdout).toContain("Heartbeat bad failed at tick 2 (too-many-failures, on ");
    expect(again.stderr).toContain("Nothing was run");
    const below = await runCli(bare("--id", "bad", "--max-ticks", "1"), { env: env() });
    expect(below.code).toBe(2);
    expect(h.server.chatRequests()).toHaveLength(calls);
    expect(await hashOf(file)).toBe(hash);
    expect((await h.stateOf("bad")).status).toBe("failed");
  });
});
