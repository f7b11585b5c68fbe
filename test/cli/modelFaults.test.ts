/**
 * Model faults end to end: the built CLI, the real SDK, the fake server.
 * Transient faults (5xx, 429, timeouts, context overflow) are survived;
 * the fatal ones end the heartbeat in `failed` at once with what to fix.
 */
import * as fs from "node:fs/promises";
import { describe, expect, it } from "vitest";
import { parseJournal } from "../../src/services/store/index.js";
import { cleanEnv, runCli } from "../support/cli.js";
import { classify, errorReply, type Reply, scripted } from "../support/fakeOpenAI.js";
import { useCliHarness } from "../support/harness.js";

const GOAL = "Keep NOTES.md summarising the TODOs in this repo";

const h = useCliHarness({ maxRetries: null, flags: ["--failure-backoff", "0", "--goal", GOAL] });
const { runArgs: args, stateOf } = h;
const env = () => cleanEnv({ OPENAI_API_KEY: "sk-test-0123456789" });
const ticksOf = async (id: string) =>
  parseJournal(await fs.readFile(h.journalFile(id), "utf8")).filter((e) => e.type === "tick");

/** Replies `faults[i]` to request `i` where set (`null`: the default script answers). */
function faultsFirst(faults: Array<Reply | null>) {
  const script = scripted({});
  return (req: Parameters<typeof script>[0], index: number) => faults[index] ?? script(req, index);
}

describe("model faults (CLI)", () => {
  it("survives two 500s and two 429s (retry-after 0 and 1) without a failed tick", async () => {
    h.server.setHandler(
      // The assessment meets two 500s, the plan two 429s; the SDK's 2 retries get each through.
      faultsFirst([
        errorReply(500),
        errorReply(500),
        null,
        errorReply(429, { headers: { "retry-after": "0" } }),
        errorReply(429, { headers: { "retry-after": "1" } }),
      ]),
    );
    const result = await runCli(args("--id", "weather", "--max-ticks", "2"), { env: env() });
    expect(result.stderr).not.toContain("failed");
    expect(result.code).toBe(0);
    const ticks = await ticksOf("weather");
    expect(ticks.map((t) => [t.tick, t.status])).toEqual([
      [1, "ok"],
      [2, "ok"],
    ]);
    // 4 faults + the 6 calls of two ticks; the faults hit the first assessment and plan.
    expect(h.server.chatRequests().map(classify).slice(0, 6)).toEqual([
      "assess",
      "assess",
      "assess",
      "plan",
      "plan",
      "plan",
    ]);
    expect(h.server.chatRequests()).toHaveLength(10);
    expect(await stateOf("weather")).toMatchObject({ tick: 2, status: "completed" });
  });

  it("a permanent 401 ends failed with exit 1 within seconds, saying to fix the API key", async () => {
    h.server.setHandler(() =>
      errorReply(401, { message: "Incorrect API key provided", code: "invalid_api_key" }),
    );
    const started = Date.now();
    const result = await runCli(args("--id", "badkey"), { env: env() });
    expect(Date.now() - started).toBeLessThan(10_000);
    expect(result.code).toBe(1);
    expect(result.stderr).toMatch(/API key/);
    expect(result.stderr).toMatch(/--api-key|OPENAI_API_KEY/);
    expect(result.stderr).not.toContain("    at ");
    expect(h.server.chatRequests()).toHaveLength(1);
    expect(await stateOf("badkey")).toMatchObject({ status: "failed", reason: "llm-auth" });
  });

  it("429 insufficient_quota ends failed at once, without retries", async () => {
    h.server.setHandler(() =>
      errorReply(429, {
        message: "You exceeded your current quota.",
        type: "insufficient_quota",
        code: "insufficient_quota",
      }),
    );
    const result = await runCli(args("--id", "broke", "--max-retries", "3"), { env: env() });
    expect(result.code).toBe(1);
    expect(result.stderr).toContain("quota");
    expect(h.server.chatRequests()).toHaveLength(1);
    expect(await stateOf("broke")).toMatchObject({ status: "failed", reason: "llm-quota" });
  });

  it("a request that hangs past --request-timeout 1 fails that tick only; the next tick works", async () => {
    let hung = false;
    const script = scripted({});
    h.server.setHandler((req, index) => {
      if (!hung && classify(req) === "assess") {
        hung = true;
        return { kind: "hang" };
      }
      return script(req, index);
    });
    const result = await runCli(
      args("--id", "slow", "--max-ticks", "2", "--request-timeout", "1", "--max-retries", "0"),
      { env: env() },
    );
    expect(result.code).toBe(0);
    const ticks = await ticksOf("slow");
    expect(ticks.map((t) => [t.tick, t.status])).toEqual([
      [1, "failed"],
      [2, "ok"],
    ]);
    expect(ticks[0]?.errors).toMatchObject([{ code: "llm-timeout" }]);
  });

  it("a context_length_exceeded shrinks the prompt and retries once: the tick succeeds", async () => {
    h.server.setHandler(
      faultsFirst([
        errorReply(400, {
          message: "This model's maximum context length is 8192 tokens.",
          code: "context_length_exceeded",
        }),
      ]),
    );
    const result = await runCli(args("--id", "squeeze", "--max-ticks", "1"), { env: env() });
    expect(result.code).toBe(0);
    expect((await ticksOf("squeeze")).map((t) => t.status)).toEqual(["ok"]);
    expect(h.server.chatRequests().slice(0, 2).map(classify)).toEqual(["assess", "assess"]);
  });
});
