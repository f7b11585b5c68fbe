/**
 * Tests of the execute phase's tool loop statechart with fake `callModel` and
 * `runTools` actors supplied through `provide()`.
 */
import { describe, expect, it } from "vitest";
import { createActor, toPromise, waitFor } from "xstate";
import type { TokenUsage } from "../../src/machines/heartbeat.types.js";
import { addUsage, asErrorInfo, ZERO_USAGE } from "../../src/machines/shared.js";
import { toolLoopMachine } from "../../src/machines/toolLoop.machine.js";
import type {
  AwaitApprovalInput,
  AwaitApprovalOutput,
  CallModelInput,
  CallModelOutput,
  RunToolsInput,
  RunToolsOutput,
  ScreenCallsInput,
  ScreenCallsOutput,
  ToolCallRecord,
  ToolCallRequest,
  ToolLoopInput,
} from "../../src/machines/toolLoop.types.js";
import { fake, must, pending, type Responder } from "../support/fakeActors.js";

const USAGE: TokenUsage = { calls: 1, promptTokens: 100, completionTokens: 20, totalTokens: 120 };
const times = (u: TokenUsage, n: number): TokenUsage => ({
  calls: u.calls * n,
  promptTokens: u.promptTokens * n,
  completionTokens: u.completionTokens * n,
  totalTokens: u.totalTokens * n,
});

const INPUT: ToolLoopInput = {
  goal: "Write the report",
  tick: 4,
  progress: "outline written",
  plan: { steps: ["read notes", "write report"] },
  maxIterations: 5,
  tokenBudget: 0,
  attempt: "2026-01-01T00:00:00.000Z",
};

const call = (id: string, name = "read_file", args = `{"path":"${id}.md"}`): ToolCallRequest => ({
  id,
  name,
  arguments: args,
});

const answer = (content: string | null): CallModelOutput => ({
  content,
  toolCalls: [],
  usage: USAGE,
});

const wants = (calls: ToolCallRequest[], content: string | null = null): CallModelOutput => ({
  content,
  toolCalls: calls,
  usage: USAGE,
});

const recordOf = (c: ToolCallRequest, content = `record ${c.id}`): ToolCallRecord => ({
  callId: c.id,
  name: c.name,
  arguments: c.arguments,
  status: "ok",
  content,
});

/** Default runTools: a record per call, full replies `reply <id>`. */
const okTools: Responder<RunToolsInput, RunToolsOutput> = (input) => ({
  results: input.calls.map((c) => recordOf(c)),
  replies: Object.fromEntries(input.calls.map((c) => [c.id, `reply ${c.id}`])),
});

/** Default screenCalls: no `ask` rule matches. */
const noneAsked: Responder<ScreenCallsInput, ScreenCallsOutput> = () => ({ pending: [] });

function loop(options: {
  input?: Partial<ToolLoopInput>;
  callModel: Responder<CallModelInput, CallModelOutput>;
  runTools?: Responder<RunToolsInput, RunToolsOutput>;
  screenCalls?: Responder<ScreenCallsInput, ScreenCallsOutput>;
  awaitApproval?: Responder<AwaitApprovalInput, AwaitApprovalOutput>;
}) {
  const callModel = fake<CallModelOutput, CallModelInput>(options.callModel);
  const runTools = fake<RunToolsOutput, RunToolsInput>(options.runTools ?? okTools);
  const screenCalls = fake<ScreenCallsOutput, ScreenCallsInput>(options.screenCalls ?? noneAsked);
  const awaitApproval = fake<AwaitApprovalOutput, AwaitApprovalInput>(
    options.awaitApproval ?? (() => pending()),
  );
  const machine = toolLoopMachine.provide({
    actors: {
      callModel: callModel.logic,
      runTools: runTools.logic,
      screenCalls: screenCalls.logic,
      awaitApproval: awaitApproval.logic,
    },
  });
  const actor = createActor(machine, { input: { ...INPUT, ...options.input } });
  const states: string[] = [];
  actor.subscribe({
    next: (s) => {
      const state = String(s.value);
      if (states.at(-1) !== state) states.push(state);
    },
    error: () => {},
  });
  actor.start();
  return { actor, callModel, runTools, screenCalls, awaitApproval, states };
}

describe("toolLoop machine", () => {
  it("a reply without tool calls ends the loop: its content is the result, 1 iteration", async () => {
    const t = loop({ callModel: () => answer("All done.") });
    const output = await toPromise(t.actor);

    expect(output).toEqual({
      result: "All done.",
      usage: USAGE,
      callUsages: [USAGE],
      toolCalls: [],
      iterations: 1,
      error: null,
      stoppedBy: null,
    });
    expect(t.states).toEqual(["calling", "done"]);
    expect(t.runTools.calls.length).toBe(0);
    expect(t.callModel.calls.map((c) => c.input)).toEqual([
      {
        goal: INPUT.goal,
        tick: 4,
        progress: "outline written",
        plan: INPUT.plan,
        transcript: [],
        lastCall: false,
        spentTokens: 0,
        budget: null,
      },
    ]);
  });

  it("a reply with null content and no tool calls gives an empty result", async () => {
    const t = loop({ callModel: () => answer(null) });
    const output = await toPromise(t.actor);
    expect(output.result).toBe("");
    expect(output.iterations).toBe(1);
  });

  it("runs the requested tools, feeds the results back as role tool entries, and calls the model again", async () => {
    const c1 = call("c1");
    const t = loop({
      callModel: (_i, index) =>
        index === 0 ? wants([c1], "Reading notes.") : answer("Report written."),
    });
    const output = await toPromise(t.actor);

    expect(t.states).toEqual(["calling", "screening", "acting", "calling", "done"]);
    expect(t.runTools.calls.map((c) => c.input)).toEqual([
      { calls: [c1], tick: 4, iteration: 1, attempt: INPUT.attempt, approvals: [] },
    ]);
    expect(t.callModel.calls.length).toBe(2);
    expect(must(t.callModel.calls[1]).input.transcript).toEqual([
      { role: "assistant", content: "Reading notes.", toolCalls: [c1] },
      // The full reply (replies[callId]) goes to the model, not the (possibly truncated) record.
      { role: "tool", callId: "c1", content: "reply c1" },
    ]);
    expect(output).toEqual({
      result: "Report written.",
      usage: times(USAGE, 2),
      callUsages: [USAGE, USAGE],
      toolCalls: [recordOf(c1)],
      iterations: 2,
      error: null,
      stoppedBy: null,
    });
  });

  it("falls back to the record's content when replies has no entry for a call", async () => {
    const c1 = call("c1");
    const t = loop({
      callModel: (_i, index) => (index === 0 ? wants([c1]) : answer("ok")),
      runTools: (input) => ({ results: input.calls.map((c) => recordOf(c, "short")), replies: {} }),
    });
    await toPromise(t.actor);
    expect(must(t.callModel.calls[1]).input.transcript).toEqual([
      { role: "assistant", content: null, toolCalls: [c1] },
      { role: "tool", callId: "c1", content: "short" },
    ]);
  });

  it("accumulates the transcript over several rounds", async () => {
    const c1 = call("c1");
    const c2 = call("c2", "write_file", '{"path":"r.md","content":"x"}');
    const t = loop({
      callModel: (_i, index) =>
        index === 0 ? wants([c1]) : index === 1 ? wants([c2], "Writing.") : answer("Done."),
    });
    const output = await toPromise(t.actor);

    expect(t.callModel.calls.map((c) => c.input.transcript.length)).toEqual([0, 2, 4]);
    expect(must(t.callModel.calls[2]).input.transcript).toEqual([
      { role: "assistant", content: null, toolCalls: [c1] },
      { role: "tool", callId: "c1", content: "reply c1" },
      { role: "assistant", content: "Writing.", toolCalls: [c2] },
      { role: "tool", callId: "c2", content: "reply c2" },
    ]);
    expect(output.toolCalls).toEqual([recordOf(c1), recordOf(c2)]);
    expect(output.iterations).toBe(3);
    expect(output.result).toBe("Done.");
  });

  it("passes parallel tool calls (2 in one reply) to runTools in one invocation", async () => {
    const a = call("a");
    const b = call("b", "list_dir", '{"path":"."}');
    const t = loop({ callModel: (_i, index) => (index === 0 ? wants([a, b]) : answer("ok")) });
    const output = await toPromise(t.actor);

    expect(t.runTools.calls.length).toBe(1);
    expect(must(t.runTools.calls[0]).input).toEqual({
      calls: [a, b],
      tick: 4,
      iteration: 1,
      attempt: INPUT.attempt,
      approvals: [],
    });
    expect(must(t.callModel.calls[1]).input.transcript).toEqual([
      { role: "assistant", content: null, toolCalls: [a, b] },
      { role: "tool", callId: "a", content: "reply a" },
      { role: "tool", callId: "b", content: "reply b" },
    ]);
    expect(output.toolCalls).toEqual([recordOf(a), recordOf(b)]);
  });

  it("stops after maxIterations model calls with the (Stopped after N model calls note", async () => {
    const t = loop({
      input: { maxIterations: 3 },
      callModel: (_i, index) => wants([call(`c${index + 1}`)], `step ${index + 1}`),
    });
    const output = await toPromise(t.actor);

    expect(t.callModel.calls.length).toBe(3);
    expect(t.runTools.calls.length).toBe(3);
    expect(output.iterations).toBe(3);
    expect(output.result).toBe("step 3\n(Stopped after 3 model calls: the per-tick limit.)");
    expect(output.usage).toEqual(times(USAGE, 3));
    expect(output.toolCalls.map((r) => r.callId)).toEqual(["c1", "c2", "c3"]);
    expect(output.error).toBe(null);
    expect(t.states).toEqual([
      "calling",
      "screening",
      "acting",
      "calling",
      "screening",
      "acting",
      "calling",
      "screening",
      "acting",
      "done",
    ]);
  });

  it("the stop note stands alone when the model gave no content", async () => {
    const t = loop({
      input: { maxIterations: 2 },
      callModel: (_i, index) => wants([call(`c${index}`)]),
    });
    const output = await toPromise(t.actor);
    expect(output.result).toBe("(Stopped after 2 model calls: the per-tick limit.)");
    expect(output.iterations).toBe(2);
  });

  it("lastCall is true only on the last allowed call when maxIterations > 1", async () => {
    const t = loop({
      input: { maxIterations: 3 },
      callModel: (_i, index) => wants([call(`c${index}`)]),
    });
    await toPromise(t.actor);
    expect(t.callModel.calls.map((c) => c.input.lastCall)).toEqual([false, false, true]);
  });

  it("lastCall is false with maxIterations 1 (the only call is a normal one)", async () => {
    const t = loop({ input: { maxIterations: 1 }, callModel: () => wants([call("c1")], "try") });
    const output = await toPromise(t.actor);
    expect(t.callModel.calls.map((c) => c.input.lastCall)).toEqual([false]);
    expect(output.iterations).toBe(1);
    expect(output.result).toBe("try\n(Stopped after 1 model call: the per-tick limit.)");
  });

  it("does not set lastCall when the model finishes early", async () => {
    const t = loop({ input: { maxIterations: 3 }, callModel: () => answer("done") });
    await toPromise(t.actor);
    expect(t.callModel.calls.map((c) => c.input.lastCall)).toEqual([false]);
  });

  it.each([
    [{ code: "llm-auth", message: "bad key", fatal: true }],
    [{ code: "llm-bad-output", message: "garbled", fatal: false }],
    [{ code: "llm-rate-limit", message: "slow down", fatal: false, hint: "wait" }],
  ])("a rejected callModel ends with output.error %o (fatal flag preserved)", async (error) => {
    const t = loop({ callModel: () => Promise.reject(error) });
    const output = await toPromise(t.actor);
    expect(output).toEqual({
      result: "",
      usage: ZERO_USAGE,
      callUsages: [],
      toolCalls: [],
      iterations: 0,
      error,
      stoppedBy: null,
    });
    expect(t.states).toEqual(["calling", "done"]);
  });

  it("a callModel rejecting with a plain Error gives a non-fatal internal error", async () => {
    const t = loop({ callModel: () => Promise.reject(new Error("boom")) });
    const output = await toPromise(t.actor);
    expect(output.error).toEqual({ code: "internal", message: "boom", fatal: false });
  });

  it("a callModel failing after a tool round keeps the earlier work", async () => {
    const c1 = call("c1");
    const t = loop({
      callModel: (_i, index) =>
        index === 0
          ? wants([c1], "Reading.")
          : Promise.reject({ code: "llm-auth", message: "revoked", fatal: true }),
    });
    const output = await toPromise(t.actor);
    expect(output).toEqual({
      result: "Reading.",
      usage: USAGE,
      callUsages: [USAGE],
      toolCalls: [recordOf(c1)],
      iterations: 1,
      error: { code: "llm-auth", message: "revoked", fatal: true },
      stoppedBy: null,
    });
  });

  it("a rejected runTools ends with output.error set", async () => {
    const t = loop({
      callModel: () => wants([call("c1")]),
      runTools: () => Promise.reject({ code: "tool-crash", message: "sandbox died", fatal: false }),
    });
    const output = await toPromise(t.actor);
    expect(output.error).toEqual({ code: "tool-crash", message: "sandbox died", fatal: false });
    expect(output.iterations).toBe(1);
    expect(output.toolCalls).toEqual([]);
    expect(t.callModel.calls.length).toBe(1);
  });

  it("stopping the loop aborts the model call in flight", async () => {
    const t = loop({ callModel: () => pending() });
    await waitFor(t.actor, () => t.callModel.calls.length === 1, { timeout: 2000 });
    const signal = must(t.callModel.calls[0]).signal;
    expect(signal.aborted).toBe(false);
    t.actor.stop();
    expect(signal.aborted).toBe(true);
  });
});

describe("toolLoop helpers", () => {
  it("addUsage adds every field", () => {
    expect(
      addUsage(
        { calls: 1, promptTokens: 2, completionTokens: 3, totalTokens: 5 },
        { calls: 10, promptTokens: 20, completionTokens: 30, totalTokens: 50 },
      ),
    ).toEqual({ calls: 11, promptTokens: 22, completionTokens: 33, totalTokens: 55 });
  });

  it("asErrorInfo keeps code, message, fatal and hint, and normalises anything else", () => {
    expect(asErrorInfo({ code: "llm-auth", message: "m", fatal: true, hint: "h" })).toEqual({
      code: "llm-auth",
      message: "m",
      fatal: true,
      hint: "h",
    });
    expect(asErrorInfo({ code: "x", message: "m", fatal: "yes" })).toEqual({
      code: "x",
      message: "m",
      fatal: false,
    });
    expect(asErrorInfo("text")).toEqual({ code: "internal", message: "text", fatal: false });
  });
});

describe("toolLoop machine: breaker and per-tick budget", () => {
  const same: ToolCallRequest = { id: "x", name: "list_dir", arguments: '{"path":"."}' };

  it("the third identical call is not run: the breaker ends the loop and says why", async () => {
    const t = loop({
      input: { maxIterations: 10 },
      callModel: (_, i) => wants([{ ...same, id: `c${i}` }]),
    });
    const output = await toPromise(t.actor);
    expect(t.callModel.calls).toHaveLength(3);
    expect(t.runTools.calls).toHaveLength(2);
    expect(output.stoppedBy).toBe("breaker");
    expect(output.result).toMatch(/list_dir was called 3 times with identical arguments/);
    expect(output.toolCalls.map((c) => c.status)).toEqual(["ok", "ok", "refused"]);
  });

  it("identical arguments differing only in surrounding whitespace count as the same call", async () => {
    const t = loop({
      input: { maxIterations: 10 },
      callModel: (_, i) => wants([{ ...same, id: `c${i}`, arguments: ` ${same.arguments}\n` }]),
    });
    expect((await toPromise(t.actor)).stoppedBy).toBe("breaker");
  });

  it("different arguments do not trip the breaker", async () => {
    const t = loop({
      input: { maxIterations: 4 },
      callModel: (_, i) => wants([{ ...same, id: `c${i}`, arguments: `{"path":"d${i}"}` }]),
    });
    const output = await toPromise(t.actor);
    expect(output.stoppedBy).toBe("iterations");
    expect(t.callModel.calls).toHaveLength(4);
  });

  it("does not call the model at all when the tick's token budget is already below the estimate", async () => {
    const t = loop({ input: { tokenBudget: 5 }, callModel: () => answer("never") });
    const output = await toPromise(t.actor);
    expect(t.callModel.calls).toHaveLength(0);
    expect(output.stoppedBy).toBe("budget");
    expect(output.result).toMatch(/per-tick token budget/);
  });

  it("stops between calls once the reported usage leaves no room for the next call", async () => {
    const t = loop({
      input: { tokenBudget: 150, maxIterations: 10 },
      callModel: (_, i) => wants([{ ...same, id: `c${i}`, arguments: `{"path":"d${i}"}` }]),
    });
    const output = await toPromise(t.actor);
    // Each call reports 120 tokens: after the first, 120 + the estimate exceeds 150.
    expect(t.callModel.calls).toHaveLength(1);
    expect(output.stoppedBy).toBe("budget");
    expect(output.usage.totalTokens).toBe(120);
  });

  describe("approvals", () => {
    const w = call("w1", "write_file", '{"path":"out.md","content":"hi"}');
    const parked = {
      callId: "w1",
      tool: "write_file",
      arguments: w.arguments,
      rule: "write(**)",
      what: "write out.md",
      since: "2026-01-01T00:00:05.000Z",
    };
    const approved = {
      callId: "w1",
      decision: "approve" as const,
      reason: null,
      via: "command" as const,
      by: { user: "ops", pid: 42 },
      at: "2026-01-01T00:01:00.000Z",
    };

    it("a call an ask rule matches parks the loop in awaitingApproval with the pending call, until decided", async () => {
      const t = loop({
        callModel: (_i, index) => (index === 0 ? wants([w]) : answer("written")),
        screenCalls: () => ({ pending: [parked] }),
      });
      await waitFor(t.actor, (s) => s.matches("awaitingApproval"));
      expect(t.actor.getSnapshot().context.pending).toEqual([parked]);
      expect(must(t.awaitApproval.calls[0]).input).toEqual({
        pending: [parked],
        tick: 4,
        iteration: 1,
        attempt: INPUT.attempt,
      });
      expect(t.runTools.calls.length, "nothing runs before the decision").toBe(0);

      must(t.awaitApproval.calls[0]).resolve({ decisions: [approved] });
      const output = await toPromise(t.actor);
      expect(t.states).toEqual([
        "calling",
        "screening",
        "awaitingApproval",
        "acting",
        "calling",
        "done",
      ]);
      expect(must(t.runTools.calls[0]).input.approvals).toEqual([approved]);
      expect(output.result).toBe("written");
    });

    it("a restored snapshot waits for the same pending calls", async () => {
      const t = loop({
        callModel: () => wants([w]),
        screenCalls: () => ({ pending: [parked] }),
      });
      await waitFor(t.actor, (s) => s.matches("awaitingApproval"));
      const persisted = JSON.parse(JSON.stringify(t.actor.getPersistedSnapshot()));
      t.actor.stop();

      const again = fake<AwaitApprovalOutput, AwaitApprovalInput>(() => pending());
      const restored = createActor(
        toolLoopMachine.provide({
          actors: {
            callModel: fake<CallModelOutput, CallModelInput>(() => answer("ok")).logic,
            runTools: fake<RunToolsOutput, RunToolsInput>(okTools).logic,
            screenCalls: fake<ScreenCallsOutput, ScreenCallsInput>(noneAsked).logic,
            awaitApproval: again.logic,
          },
        }),
        { snapshot: persisted, input: INPUT },
      );
      restored.start();
      expect(restored.getSnapshot().value).toBe("awaitingApproval");
      await waitFor(restored, () => again.calls.length > 0);
      expect(must(again.calls[0]).input.pending).toEqual([parked]);
      restored.stop();
    });

    it("a failed wait ends the loop with the error", async () => {
      const t = loop({
        callModel: () => wants([w]),
        screenCalls: () => ({ pending: [parked] }),
        awaitApproval: () => {
          throw { code: "io", message: "cannot read decisions", fatal: false };
        },
      });
      const output = await toPromise(t.actor);
      expect(output.error).toEqual({ code: "io", message: "cannot read decisions", fatal: false });
      expect(t.runTools.calls.length).toBe(0);
    });
  });
});
