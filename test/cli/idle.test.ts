/**
 * Idle costs nothing (issue 16), end to end: quiet ticks, the HEARTBEAT.md
 * checklist, daily caps and cached tokens. The built CLI against the fake
 * OpenAI server; the workspace changes are made by the fake server as it
 * answers, so nothing depends on timing.
 */
import * as fs from "node:fs/promises";
import * as path from "node:path";
import { describe, expect, it } from "vitest";
import { cleanEnv, runCli, startCli } from "../support/cli.js";
import { jsonMessage, type RecordedRequest, scripted } from "../support/fakeOpenAI.js";
import { useCliHarness } from "../support/harness.js";

const GOAL = "Keep CHANGELOG.md in step with the commits";
const h = useCliHarness({ model: "test-model", flags: ["--failure-backoff", "0"] });
const env = () => cleanEnv({ OPENAI_API_KEY: "sk-test" });

const idleAssessment = {
  goalComplete: false,
  actionNeeded: false,
  assessment: "Nothing new since the last tick.",
  progressSummary: "Changelog is current.",
};

const userText = (req: RecordedRequest) =>
  (req.body.messages as Array<{ role: string; content: string }>)
    .filter((m) => m.role === "user")
    .map((m) => m.content)
    .join("\n");

// biome-ignore lint/suspicious/noExplicitAny: journal lines are arbitrary JSON.
const ticksOf = (journal: any[]) => journal.filter((e) => e.type === "tick");

describe("quiet ticks", () => {
  it("an idle model, 10 back-to-back ticks: 10 ticks journaled, exactly 1 model call", async () => {
    h.server.setHandler(scripted({ assess: () => jsonMessage(idleAssessment) }));
    const result = await runCli(
      h.runArgs("--id", "q", "--goal", GOAL, "--max-ticks", "10", "--no-tools"),
      {
        env: env(),
      },
    );
    expect(result.code, result.stderr).toBe(0);
    expect(h.server.chatRequests()).toHaveLength(1);
    const ticks = ticksOf(await h.journalOf("q"));
    expect(ticks.map((t) => t.tick)).toEqual([1, 2, 3, 4, 5, 6, 7, 8, 9, 10]);
    expect(ticks[0]).toMatchObject({ status: "idle", calls: 1 });
    for (const t of ticks.slice(1)) {
      expect(t).toMatchObject({ status: "quiet", calls: 0, reason: "unchanged" });
    }
    const state = await h.stateOf("q");
    expect(state).toMatchObject({ status: "completed", reason: "max-ticks", tick: 10 });
    expect(state.usage.calls).toBe(1);
  }, 30_000);

  it("a file written into the workdir after the first tick looked: the next tick calls the model again", async () => {
    h.server.setHandler(
      scripted({
        assess: async (n) => {
          // The workspace changes while tick 1 is being assessed (after its fingerprint).
          if (n === 1) await fs.writeFile(path.join(h.workdir, "news.txt"), "something new\n");
          return jsonMessage(idleAssessment);
        },
      }),
    );
    const result = await runCli(
      h.runArgs("--id", "w", "--goal", GOAL, "--max-ticks", "10", "--no-tools"),
      {
        env: env(),
      },
    );
    expect(result.code, result.stderr).toBe(0);
    expect(h.server.chatRequests()).toHaveLength(2);
    const ticks = ticksOf(await h.journalOf("w"));
    expect(ticks).toHaveLength(10);
    expect(ticks.slice(0, 2).map((t) => t.calls)).toEqual([1, 1]);
    expect(ticks.slice(2).every((t) => t.calls === 0 && t.reason === "unchanged")).toBe(true);
  }, 30_000);
});

describe("the HEARTBEAT.md checklist", () => {
  it("a task every hour is in the first assessment, not the second; the standing text is in both", async () => {
    await fs.writeFile(
      path.join(h.workdir, "HEARTBEAT.md"),
      "Always answer in English.\n\n- [every 1h] Check the plants\n",
    );
    h.server.setHandler(scripted({ assess: () => jsonMessage(idleAssessment) }));
    const result = await runCli(
      h.runArgs(
        "--id",
        "c",
        "--goal",
        GOAL,
        "--max-ticks",
        "2",
        "--idle-recheck",
        "0",
        "--no-tools",
      ),
      { env: env() },
    );
    expect(result.code, result.stderr).toBe(0);
    const prompts = h.server.chatRequests().map(userText);
    expect(prompts).toHaveLength(2);
    expect(prompts[0]).toContain("Check the plants");
    expect(prompts[1]).not.toContain("Check the plants");
    for (const p of prompts) expect(p).toContain("Always answer in English.");
    // Stable parts first: the checklist comes before the time.
    expect((prompts[0] as string).indexOf("Always answer")).toBeLessThan(
      (prompts[0] as string).indexOf("Current time:"),
    );
    const ticks = ticksOf(await h.journalOf("c"));
    expect(ticks[0].checklistDue).toEqual(["Check the plants"]);
    expect(ticks[1].checklistDue).toBeUndefined();

    const shown = await runCli(["show", "c", "--workdir", h.workdir], { env: env() });
    expect(shown.code, shown.stderr).toBe(0);
    expect(shown.stdout).toMatch(/Check the plants.*every 1h.*next due \d{4}-\d\d-\d\dT/);
  }, 30_000);
});

describe("daily caps and cached tokens", () => {
  it("--max-tokens-per-day 2000, a busy model: stops past 2,000 tokens, sleeping until the next day starts in its zone", async () => {
    const usage = { prompt_tokens: 300, completion_tokens: 100, cached_tokens: 200 };
    h.server.setHandler(
      scripted({
        assess: (n) =>
          jsonMessage(
            { ...idleAssessment, actionNeeded: true, assessment: `Busy ${n}` },
            { usage },
          ),
        plan: () => jsonMessage({ steps: ["Write the entry"] }, { usage }),
      }),
    );
    const cli = startCli(
      h.runArgs(
        ...["--id", "d", "--goal", GOAL, "--no-tools", "--max-tokens-per-day", "2000"],
        ...["--timezone", "Asia/Tokyo", "--price-input", "1", "--price-cached-input", "0.5"],
      ),
      { env: env() },
    );
    try {
      await cli.waitForOutput(/daily budget/i, 20_000);
      const state = await h.stateOf("d");
      expect(state).toMatchObject({ status: "sleeping", reason: "daily-budget", tick: 3 });
      // 2 calls a tick, 400 tokens each: past 2,000 during tick 3, and no tick after it.
      expect(state.usage.totalTokens).toBe(2400);
      expect(h.server.chatRequests()).toHaveLength(6);
      // Tokyo has no DST: the next day starts at 15:00 UTC.
      const now = Date.parse(state.updatedAt);
      const day = 86_400_000;
      const tokyo = 9 * 3600_000;
      const expected = new Date(Math.floor((now + tokyo) / day) * day + day - tokyo).toISOString();
      expect(state.nextTickAt).toBe(expected);
      const journal = await h.journalOf("d");
      const record = journal.find((e) => e.type === "daily-budget");
      expect(record).toMatchObject({ cap: "tokens", maxTokensPerDay: 2000, nextTickAt: expected });
      // Cached tokens: recorded, priced at the cached price, their share given.
      const tick1 = ticksOf(journal)[0];
      expect(tick1.usage).toMatchObject({ cachedTokens: 400, cachedShare: 0.667 });
      expect(tick1.usage.costUsd).toBeCloseTo((200 * 1 + 400 * 0.5) / 1e6, 9);

      const status = await runCli(["status", "--workdir", h.workdir], { env: env() });
      expect(status.code, status.stderr).toBe(0);
      expect(status.stdout).toMatch(/daily budget/i);
    } finally {
      cli.child.kill("SIGTERM");
      await cli.exited;
    }
    const end = await h.stateOf("d");
    expect(end.status).toBe("shutdown");
    // show gives the cached tokens and their share: 6 calls × 200 of 300 prompt tokens.
    const shown = await runCli(["show", "d", "--workdir", h.workdir], { env: env() });
    expect(shown.stdout).toContain("1,200 prompt tokens cached (67%)");
    expect(shown.stdout).toMatch(
      /today: +2,400 tokens on \d{4}-\d\d-\d\d \(cap 2,000 tokens a day\)/,
    );
    expect(h.server.chatRequests()).toHaveLength(6);
  }, 40_000);
});
