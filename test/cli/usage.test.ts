/**
 * Every answered model call is counted (issue 11, point 5), end to end: the
 * built CLI against the fake OpenAI server. A reply that cannot be used is
 * charged all the same; a reply without `usage` is charged an estimate,
 * marked `estimated`, and the budgets and prices use those figures.
 */
import { describe, expect, it } from "vitest";
import { cleanEnv, runCli } from "../support/cli.js";
import { message, scripted } from "../support/fakeOpenAI.js";
import { useCliHarness } from "../support/harness.js";

const GOAL = "Keep TODO.md sorted by priority";

const h = useCliHarness({ model: "test-model", flags: ["--failure-backoff", "0", "--goal", GOAL] });
const { runArgs: args, stateOf, journalOf } = h;
const env = () => cleanEnv({ OPENAI_API_KEY: "sk-test" });

/** A reply that is never JSON, for which the server reports 1,050 tokens. */
const chatty = () =>
  message("Sure! Happy to help with that.", {
    usage: { prompt_tokens: 1000, completion_tokens: 50 },
  });

describe("usage of unusable replies", () => {
  it("a 3-tick run whose structured replies are never JSON fails, and all 3 answered calls are charged", async () => {
    h.server.setHandler(scripted({ assess: chatty, plan: chatty }));
    const result = await runCli(args("--id", "nojson", "--max-ticks", "3"), { env: env() });
    expect(result.code, result.stderr).toBe(1);
    const state = await stateOf("nojson");
    expect(state.status).toBe("failed");
    expect(h.server.chatRequests()).toHaveLength(3);
    // 3 answered calls, 3,150 tokens reported by the server: all of it charged.
    expect(state.usage).toMatchObject({ calls: 3, totalTokens: 3150, promptTokens: 3000 });
    const ticks = (await journalOf("nojson")).filter((e) => e.type === "tick");
    expect(ticks.map((t) => [t.status, t.usage.totalTokens])).toEqual([
      ["failed", 1050],
      ["failed", 1050],
      ["failed", 1050],
    ]);
    expect(ticks[0].modelCalls).toEqual([
      { phase: "assess", promptTokens: 1000, completionTokens: 50, totalTokens: 1050 },
    ]);
    expect(ticks[0].errors[0]).toMatchObject({ phase: "assess", code: "llm-bad-output" });
    expect(ticks[0].errors[0]).not.toHaveProperty("usage");
  });

  it("unusable replies are charged to --max-tokens: the budget ends the heartbeat", async () => {
    h.server.setHandler(scripted({ assess: chatty }));
    const result = await runCli(
      args(
        "--id",
        "spent",
        "--max-tokens",
        "2000",
        "--max-ticks",
        "10",
        "--max-consecutive-failures",
        "10",
      ),
      { env: env() },
    );
    expect(result.code, result.stderr).toBe(1);
    const state = await stateOf("spent");
    expect(state).toMatchObject({ status: "failed", reason: "budget" });
    expect(state.usage.totalTokens).toBeGreaterThanOrEqual(2000);
    expect(h.server.chatRequests().length).toBeLessThanOrEqual(2);
  });
});

describe("replies without usage", () => {
  it("are charged an estimate: --max-tokens 3000 ends the heartbeat with reason budget", async () => {
    h.server.setHandler(
      scripted({
        assess: () =>
          message(
            JSON.stringify({
              goalComplete: false,
              actionNeeded: true,
              assessment: "Work remains.",
              progressSummary: "Some progress.",
            }),
            { usage: null },
          ),
        plan: () => message(JSON.stringify({ steps: ["Sort the list"] }), { usage: null }),
        execute: () => message("Sorted.", { usage: null }),
      }),
    );
    const result = await runCli(
      args(
        "--id",
        "nousage",
        "--max-tokens",
        "3000",
        "--max-ticks",
        "50",
        "--price-input",
        "2",
        "--price-output",
        "8",
      ),
      { env: env() },
    );
    expect(result.code, result.stderr).toBe(1);
    const state = await stateOf("nousage");
    expect(state).toMatchObject({ status: "failed", reason: "budget" });
    const usage = state.usage;
    expect(usage.calls).toBeGreaterThan(0);
    expect(usage.calls).toBeLessThan(50 * 3);
    expect(usage.estimatedCalls).toBe(usage.calls);
    expect(usage.totalTokens).toBeGreaterThan(0);
    expect(usage.totalTokens).toBe(usage.promptTokens + usage.completionTokens);
    // Costs come from the same (estimated) figures.
    expect(usage.costUsd).toBeCloseTo(
      (usage.promptTokens * 2 + usage.completionTokens * 8) / 1e6,
      6,
    );
    expect(state.snapshot.context.usage).toMatchObject({ estimatedCalls: usage.calls });

    const ticks = (await journalOf("nousage")).filter((e) => e.type === "tick");
    expect(ticks.length).toBeGreaterThan(0);
    for (const tick of ticks) {
      expect(tick.usage.estimatedCalls).toBe(tick.usage.calls);
      for (const call of tick.modelCalls) expect(call).toMatchObject({ estimated: true });
    }
    // One notice per run, however many ticks.
    expect(result.stderr.match(/sends no token usage/g)).toHaveLength(1);
    const show = await runCli(["show", "nousage", "--workdir", h.workdir], { env: env() });
    expect(show.stdout).toContain(`; ${usage.calls} estimated (the server sent no usage)`);
  });

  it("a server that sends usage gets no estimate and no notice", async () => {
    const result = await runCli(args("--id", "withusage", "--max-ticks", "2"), { env: env() });
    expect(result.code, result.stderr).toBe(0);
    const state = await stateOf("withusage");
    expect(state.usage).not.toHaveProperty("estimatedCalls");
    expect(state.usage).toMatchObject({ calls: 6, totalTokens: 90 });
    expect(result.stderr).not.toContain("sends no token usage");
  });
});
