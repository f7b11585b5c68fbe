/**
 * Cost end to end (issue: cost and speed): bounded prompts over many ticks,
 * one model call per idle tick, token budgets, prices, catch-up after downtime.
 * The built CLI against the fake OpenAI server.
 */
import { describe, expect, it } from "vitest";
import { cleanEnv, runCli, startCli } from "../support/cli.js";
import {
  classify,
  jsonMessage,
  message,
  type RecordedRequest,
  scripted,
  toolCalls,
} from "../support/fakeOpenAI.js";
import { useCliHarness } from "../support/harness.js";

const GOAL = "Keep CHANGELOG.md in step with the commits";

const h = useCliHarness({ model: "test-model", flags: ["--failure-backoff", "0"] });
const { runArgs: args, stateOf, journalOf } = h;
const env = () => cleanEnv({ OPENAI_API_KEY: "sk-test" });

/** Characters of all messages of a request (what the prompt costs). */
const promptChars = (req: RecordedRequest) =>
  (req.body.messages as Array<{ content: unknown }>).reduce(
    (n, m) => n + (typeof m.content === "string" ? m.content.length : JSON.stringify(m).length),
    0,
  );

describe("prompt size and calls per tick", () => {
  it("a 60-tick busy run: the assessment prompt at tick 60 is at most 1.5x the one at tick 10", async () => {
    // A busy model: long assessments and progress summaries, a tool call every tick.
    h.server.setHandler(
      scripted({
        assess: (n) =>
          jsonMessage({
            goalComplete: false,
            actionNeeded: true,
            assessment: `Tick ${n}: ${"three commits are not in the changelog yet; ".repeat(6)}`,
            progressSummary: `After ${n} ticks: ${"changelog entries written for older commits. ".repeat(60)}`,
          }),
        plan: (n) => jsonMessage({ steps: [`Write entry ${n}`, "Check the result"] }),
        execute: (n) =>
          n % 2 === 1
            ? toolCalls([
                {
                  name: "write_file",
                  arguments: { path: `entries/${n}.md`, content: `entry ${n}\n`.repeat(20) },
                },
              ])
            : message(`Wrote entry ${n}. ${"Details of what was written. ".repeat(20)}`),
      }),
    );
    const result = await runCli(args("--id", "busy", "--goal", GOAL, "--max-ticks", "60"), {
      env: env(),
    });
    expect(result.code, result.stderr).toBe(0);

    const assessments = h.server.chatRequests().filter((r) => classify(r) === "assess");
    expect(assessments).toHaveLength(60);
    const at10 = promptChars(assessments[9] as RecordedRequest);
    const at60 = promptChars(assessments[59] as RecordedRequest);
    console.log(`assessment prompt: tick 10 ${at10} chars, tick 60 ${at60} chars`);
    expect(at60 / at10).toBeLessThanOrEqual(1.5);
    // The system prompt is the same bytes at every tick (prompt caching).
    const systems = new Set(assessments.map((r) => JSON.stringify(r.body.messages[0])));
    expect(systems.size).toBe(1);
    expect((await stateOf("busy")).tick).toBe(60);
  }, 60_000);

  it("with quiet ticks off (--idle-recheck 0), 10 idle ticks cost 10 model calls, journaled as idle", async () => {
    h.server.setHandler(
      scripted({
        assess: () =>
          jsonMessage({
            goalComplete: false,
            actionNeeded: false,
            assessment: "Nothing new since the last tick.",
            progressSummary: "Changelog is current.",
          }),
      }),
    );
    // Quiet ticks off: this is about what one idle assessment costs.
    const result = await runCli(
      args("--id", "idle", "--goal", GOAL, "--max-ticks", "10", "--idle-recheck", "0"),
      { env: env() },
    );
    expect(result.code, result.stderr).toBe(0);
    expect(h.server.chatRequests()).toHaveLength(10);
    const ticks = (await journalOf("idle")).filter((e) => e.type === "tick");
    expect(ticks.map((t) => t.status)).toEqual(Array(10).fill("idle"));
    expect(ticks.map((t) => t.modelCalls.length)).toEqual(Array(10).fill(1));
    expect(ticks[0].wakeReason).toBe("start");
    expect(ticks[1].wakeReason).toBe("timer");
  });
});

describe("token budgets", () => {
  it("--max-tokens ends the heartbeat failed with reason budget and a clear message", async () => {
    // Each call reports 1,000 tokens; a busy tick makes 3 calls.
    const usage = { prompt_tokens: 900, completion_tokens: 100 };
    h.server.setHandler(
      scripted({
        assess: () =>
          jsonMessage(
            {
              goalComplete: false,
              actionNeeded: true,
              assessment: "More to do.",
              progressSummary: "Some entries written.",
            },
            { usage },
          ),
        plan: () => jsonMessage({ steps: ["Write an entry"] }, { usage }),
        execute: () => message("Wrote one.", { usage }),
      }),
    );
    const result = await runCli(
      args("--id", "budget", "--goal", GOAL, "--max-ticks", "20", "--max-tokens", "5000"),
      { env: env() },
    );
    expect(result.code).toBe(1);
    expect(result.stderr).toMatch(/token budget is spent/i);
    expect(result.stderr).toMatch(/--max-tokens/);
    const state = await stateOf("budget");
    expect(state.status).toBe("failed");
    expect(state.reason).toBe("budget");
    expect(state.usage.totalTokens).toBeLessThanOrEqual(5000 + 3000);
    // Never far past the budget: at most the tick that crossed it.
    expect(state.tick).toBeLessThanOrEqual(2);
    const end = (await journalOf("budget")).find((e) => e.type === "end");
    expect(end).toMatchObject({ status: "failed", reason: "budget" });
  });

  it("a lifetime budget too small for the next call refuses it before it is made", async () => {
    h.server.setHandler(scripted({}));
    const result = await runCli(
      args("--id", "tiny", "--goal", GOAL, "--max-ticks", "3", "--max-tokens", "10"),
      { env: env() },
    );
    expect(result.code).toBe(1);
    expect(h.server.chatRequests()).toHaveLength(0);
    const state = await stateOf("tiny");
    expect(state).toMatchObject({ status: "failed", reason: "budget" });
  });

  it("--max-tokens-per-tick ends a tick's tool loop early and the heartbeat goes on", async () => {
    const usage = { prompt_tokens: 400, completion_tokens: 100 };
    h.server.setHandler(
      scripted({
        assess: () =>
          jsonMessage(
            {
              goalComplete: false,
              actionNeeded: true,
              assessment: "More to do.",
              progressSummary: "p",
            },
            { usage },
          ),
        plan: () => jsonMessage({ steps: ["List files"] }, { usage }),
        // A model that would call tools forever.
        execute: (n) =>
          toolCalls([{ name: "list_dir", arguments: { path: `.${"/.".repeat(n % 3)}` } }], {
            usage,
          }),
      }),
    );
    const result = await runCli(
      args(
        "--id",
        "pertick",
        "--goal",
        GOAL,
        "--max-ticks",
        "2",
        "--max-iterations-per-tick",
        "10",
        "--max-tokens-per-tick",
        "2000",
      ),
      { env: env() },
    );
    expect(result.code, result.stderr).toBe(0);
    const ticks = (await journalOf("pertick")).filter((e) => e.type === "tick");
    expect(ticks).toHaveLength(2);
    for (const tick of ticks) {
      expect(tick.result).toMatch(/per-tick token budget/);
      const executes = tick.modelCalls.filter((c: { phase: string }) => c.phase === "execute");
      // 2,000 tokens: assess 500 + plan 500 leave room for 2 execute calls, not 10.
      expect(executes.length).toBeLessThanOrEqual(2);
      expect(tick.usage.totalTokens).toBeLessThanOrEqual(2000);
    }
  });

  it("prices give a cost figure in the state file and the journal", async () => {
    h.server.setHandler(
      scripted({
        assess: () =>
          jsonMessage(
            {
              goalComplete: false,
              actionNeeded: false,
              assessment: "Nothing to do.",
              progressSummary: "Current.",
            },
            { usage: { prompt_tokens: 1_000_000, completion_tokens: 100_000 } },
          ),
      }),
    );
    const result = await runCli(
      args(
        "--id",
        "priced",
        "--goal",
        GOAL,
        "--max-ticks",
        "2",
        "--price-input",
        "0.15",
        "--price-output",
        "0.6",
        // Two priced calls: quiet ticks off.
        "--idle-recheck",
        "0",
      ),
      { env: env() },
    );
    expect(result.code, result.stderr).toBe(0);
    const state = await stateOf("priced");
    // 2 × (1M × $0.15 + 0.1M × $0.60) = $0.42
    expect(state.usage.costUsd).toBeCloseTo(0.42, 6);
    const ticks = (await journalOf("priced")).filter((e) => e.type === "tick");
    expect(ticks[0].usage.costUsd).toBeCloseTo(0.21, 6);
    expect(ticks[1].totalUsage.costUsd).toBeCloseTo(0.42, 6);
  });
});

describe("catch-up after downtime", () => {
  it("a heartbeat down past nextTickAt runs one tick at once with wake reason catch-up", async () => {
    h.server.setHandler(
      scripted({
        assess: () =>
          jsonMessage({
            goalComplete: false,
            actionNeeded: false,
            assessment: "Idle.",
            progressSummary: "Current.",
          }),
      }),
    );
    // Quiet ticks off: the catch-up tick is counted by its model call.
    const first = startCli(
      args(
        ...["--id", "laptop", "--goal", GOAL, "--max-ticks", "5", "--tick-interval", "1"],
        ...["--idle-recheck", "0"],
      ),
      { env: env() },
    );
    await first.waitForOutput(/next tick at/);
    first.child.kill("SIGKILL");
    await first.exited;
    // Down for several intervals.
    await new Promise((resolve) => setTimeout(resolve, 2_500));
    const calls = h.server.chatRequests().length;
    const second = startCli(args("--id", "laptop", "--max-ticks", "2", "--tick-interval", "1"), {
      env: env(),
    });
    const result = await second.exited;
    expect(result.code, result.stderr).toBe(0);
    // One tick for the missed intervals, not one per interval.
    expect(h.server.chatRequests().length - calls).toBe(1);
    const ticks = (await journalOf("laptop")).filter((e) => e.type === "tick");
    expect(ticks.map((t) => [t.tick, t.wakeReason])).toEqual([
      [1, "start"],
      [2, "catch-up"],
    ]);
  });
});
