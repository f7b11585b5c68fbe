/**
 * A heartbeat's lifecycle across runs, end to end (the built CLI against the
 * fake OpenAI server): honest exits, finished heartbeats, `--continue`, and
 * settings kept in the state file across SIGTERM and SIGKILL.
 */
import { describe, expect, it } from "vitest";
import { cleanEnv, runCli } from "../support/cli.js";
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
