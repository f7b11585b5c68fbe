/**
 * Tests of the heartbeat statechart (DESIGN.md sections 1 and 2) with fake
 * actors supplied through `provide()`. No real sleeps: `sleepUntil` is a fake
 * the tests settle by hand. Time is the production `readClock` and
 * `scheduleNextTick` (the real planner) with an injected clock the tests set.
 */
import { readdir, readFile } from "node:fs/promises";
import { sep } from "node:path";
import { fileURLToPath } from "node:url";
import { beforeEach, describe, expect, it } from "vitest";
import { type Actor, createActor, fromPromise, type Snapshot, toPromise, waitFor } from "xstate";
import { DIGESTS_KEPT, heartbeatMachine } from "../../src/machines/heartbeat.machine.js";
import type {
  AssessInput,
  AssessOutput,
  HeartbeatContext,
  HeartbeatInput,
  HeartbeatSettings,
  PersistInput,
  PlanInput,
  PlanOutput,
  ResumeRecord,
  SleepInput,
  SleepOutput,
  TickDigest,
  TokenUsage,
} from "../../src/machines/heartbeat.types.js";
import { addUsage, HEARTBEAT_STATES } from "../../src/machines/shared.js";
import { toolLoopMachine } from "../../src/machines/toolLoop.machine.js";
import type {
  CallModelInput,
  CallModelOutput,
  RunToolsInput,
  RunToolsOutput,
  ScreenCallsOutput,
} from "../../src/machines/toolLoop.types.js";
import { rescheduledNextTick, timeImplementations } from "../../src/runtime.js";
import { fake, must, pending, type Responder } from "../support/fakeActors.js";

// ---------------------------------------------------------------------------
// Fakes
// ---------------------------------------------------------------------------

const T0 = Date.parse("2030-01-01T00:00:00.000Z");
const iso = (ms: number) => new Date(ms).toISOString();

/** The injected clock: milliseconds since the epoch, set by the tests. */
let clockMs = T0;
/** How far the clock moves on each reading (0: it stands still). */
let clockStepMs = 0;
const setClock = (ms: number) => {
  clockMs = ms;
};
const readClock = () => {
  const t = clockMs;
  clockMs += clockStepMs;
  return t;
};
/** What the real `sleepUntil` reports when it wakes now. */
const woke = (late = false): SleepOutput => ({ late, at: iso(clockMs) });

const ASSESS_USAGE: TokenUsage = {
  calls: 1,
  promptTokens: 10,
  completionTokens: 5,
  totalTokens: 15,
};
const PLAN_USAGE: TokenUsage = {
  calls: 1,
  promptTokens: 20,
  completionTokens: 10,
  totalTokens: 30,
};
const MODEL_USAGE: TokenUsage = {
  calls: 1,
  promptTokens: 100,
  completionTokens: 50,
  totalTokens: 150,
};
/** Usage of one default tick: assess + plan + one tool-loop model call. */
const TICK_USAGE: TokenUsage = {
  calls: 3,
  promptTokens: 130,
  completionTokens: 65,
  totalTokens: 195,
};
const times = (u: TokenUsage, n: number): TokenUsage => ({
  calls: u.calls * n,
  promptTokens: u.promptTokens * n,
  completionTokens: u.completionTokens * n,
  totalTokens: u.totalTokens * n,
});

const SETTINGS: HeartbeatSettings = {
  maxTicks: 0,
  tickIntervalSec: 60,
  maxIterationsPerTick: 4,
  toolsEnabled: true,
  maxConsecutiveFailures: 3,
  maxTokens: 0,
  maxTokensPerTick: 0,
  failureBackoffSec: 0,
  cron: null,
  activeHours: null,
  timezone: null,
};

const GOAL = "Write the report";

function inputOf(settings: Partial<HeartbeatSettings> = {}, resume?: ResumeRecord): HeartbeatInput {
  return {
    id: "hb-1",
    goal: GOAL,
    createdAt: iso(T0),
    settings: { ...SETTINGS, ...settings },
    ...(resume ? { resume } : {}),
  };
}

/** The default assessment for tick `n`: work to do, not complete. */
function assessed(n: number, patch: Partial<AssessOutput["assessment"]> = {}): AssessOutput {
  return {
    assessment: {
      goalComplete: false,
      actionNeeded: true,
      assessment: `a${n}`,
      progressSummary: `p${n}`,
      ...patch,
    },
    usage: ASSESS_USAGE,
  };
}

const planned = (n: number): PlanOutput => ({
  plan: { steps: [`step ${n}`, `check ${n}`] },
  usage: PLAN_USAGE,
});

const answered = (content: string): CallModelOutput => ({
  content,
  toolCalls: [],
  usage: MODEL_USAGE,
});

const fatalAuth = { code: "llm-auth", message: "bad key", fatal: true };
const badOutput = { code: "llm-bad-output", message: "x", fatal: false };

interface HarnessOptions {
  settings?: Partial<HeartbeatSettings>;
  resume?: ResumeRecord;
  assess?: Responder<AssessInput, AssessOutput>;
  plan?: Responder<PlanInput, PlanOutput>;
  callModel?: Responder<CallModelInput, CallModelOutput>;
  runTools?: Responder<RunToolsInput, RunToolsOutput>;
  persist?: Responder<PersistInput, void>;
  /** Default: never wakes by itself (settle `sleepUntil.calls[i]` by hand). */
  sleepUntil?: Responder<SleepInput, SleepOutput>;
}

interface PersistRecord {
  input: PersistInput;
  /** The heartbeat's state and context when persist ran. */
  state: string;
  context: HeartbeatContext;
}

type HeartbeatActor = Actor<typeof heartbeatMachine>;

/**
 * Builds the heartbeat with fakes. The tool loop is the real child machine with
 * a fake `callModel` (default: answers `done <tick>` without tool calls) and `runTools`.
 */
function harness(options: HarnessOptions = {}) {
  const assess = fake<AssessOutput, AssessInput>(options.assess ?? ((i) => assessed(i.tick)));
  const plan = fake<PlanOutput, PlanInput>(options.plan ?? ((i) => planned(i.tick)));
  const callModel = fake<CallModelOutput, CallModelInput>(
    options.callModel ?? ((i) => answered(`done ${i.tick}`)),
  );
  const runTools = fake<RunToolsOutput, RunToolsInput>(
    options.runTools ??
      ((i) => ({
        results: i.calls.map((c) => ({
          callId: c.id,
          name: c.name,
          arguments: c.arguments,
          status: "ok" as const,
          content: "ok",
        })),
        replies: {},
      })),
  );
  const persisted: PersistRecord[] = [];
  const starts: PersistRecord[] = [];
  let actor: HeartbeatActor | undefined;
  /** Set by `run()`: the next persist is the start write. */
  let startPending = false;
  const persist = fake<void, PersistInput>((input, index) => {
    const snapshot = must(actor, "actor").getSnapshot();
    const record = {
      input,
      state: String(snapshot.value),
      context: structuredClone(snapshot.context),
    };
    // The write that starts a run (before its first tick) is kept apart: most
    // tests are about ticks; the start write has tests of its own.
    const isStart = startPending && snapshot.context.outcome?.status === "sleeping";
    startPending = false;
    (isStart ? starts : persisted).push(record);
    // `options.persist` answers the writes of ticks; a start write succeeds
    // (it is \`h.persist.calls[0]\` of a new heartbeat).
    if (isStart) return undefined;
    return options.persist ? options.persist(input, index) : undefined;
  });
  const sleepUntil = fake<SleepOutput, SleepInput>(options.sleepUntil ?? (() => pending()));
  const execute = toolLoopMachine.provide({
    actors: {
      callModel: callModel.logic,
      runTools: runTools.logic,
      screenCalls: fromPromise(async (): Promise<ScreenCallsOutput> => ({ pending: [] })),
    },
  });
  const machine = heartbeatMachine.provide({
    actors: {
      assess: assess.logic,
      plan: plan.logic,
      execute,
      persist: persist.logic,
      sleepUntil: sleepUntil.logic,
    },
    actions: timeImplementations(readClock),
  });
  const input = inputOf(options.settings, options.resume);
  const states: string[] = [];
  const track = (a: HeartbeatActor) => {
    a.subscribe({
      next: (s) => {
        const state = String(s.value);
        if (states.at(-1) !== state) states.push(state);
      },
      error: () => {},
    });
  };
  const start = (snapshot?: Snapshot<unknown>) => {
    actor = createActor(machine, snapshot ? { snapshot, input } : { input });
    track(actor);
    actor.start();
    return actor;
  };
  return {
    machine,
    input,
    assess,
    plan,
    callModel,
    runTools,
    persist,
    /** Every persist but the start writes. */
    persisted,
    /** The writes that started a run. */
    starts,
    sleepUntil,
    states,
    /** Creates and starts the actor (optionally from a persisted snapshot). */
    start,
    /** Creates and starts the actor, then sends `heartbeat.start`. */
    run() {
      const a = start();
      startPending = true;
      a.send({ type: "heartbeat.start" });
      return a;
    },
    get actor() {
      return must(actor, "actor");
    },
  };
}

const inState = (actor: HeartbeatActor, state: string) =>
  waitFor(actor, (s) => s.matches(state as "idle"), { timeout: 2000 });

/** Waits until a fake has been called `n` times. */
const calledTimes = (actor: HeartbeatActor, calls: unknown[], n: number) =>
  waitFor(actor, () => calls.length >= n, { timeout: 2000 }).catch(async () => {
    // The actor may not emit after the call was recorded: poll a few microtasks.
    for (let i = 0; i < 100 && calls.length < n; i++) await Promise.resolve();
    if (calls.length < n) throw new Error(`expected ${n} calls, got ${calls.length}`);
  });

/** Lets pending promise callbacks run (no timers involved). */
async function flush(rounds = 20) {
  for (let i = 0; i < rounds; i++) await Promise.resolve();
}

const lastPersist = (records: PersistRecord[]) => must(records.at(-1), "a persist call");

beforeEach(() => {
  setClock(T0);
  clockStepMs = 0;
});

// ---------------------------------------------------------------------------
// Happy path
// ---------------------------------------------------------------------------

describe("heartbeat: happy path", () => {
  it("runs assessing → planning → executing → persisting → sleeping, and the next tick when the sleep ends", async () => {
    const h = harness({
      sleepUntil: (_input, index) => (index === 0 ? woke() : pending()),
    });
    const actor = h.run();
    await calledTimes(actor, h.sleepUntil.calls, 2);
    await inState(actor, "sleeping");

    expect(h.states).toEqual([
      "idle",
      "persisting",
      "observing",
      "assessing",
      "planning",
      "executing",
      "persisting",
      "sleeping",
      "observing",
      "assessing",
      "planning",
      "executing",
      "persisting",
      "sleeping",
    ]);
    expect(actor.getSnapshot().context.tick).toBe(2);
    expect(h.assess.calls.map((c) => c.input)).toEqual([
      {
        budget: null,
        goal: GOAL,
        tick: 1,
        progress: "",
        digests: [],
        wakeReason: "start",
        checklist: null,
        dueTasks: [],
      },
      {
        budget: null,
        goal: GOAL,
        tick: 2,
        progress: "p1",
        digests: [{ tick: 1, at: iso(T0), outcome: "ok", summary: "a1 → done 1" }],
        wakeReason: "timer",
        checklist: null,
        dueTasks: [],
      },
    ]);
    expect(h.plan.calls.map((c) => c.input)).toEqual([
      { budget: null, goal: GOAL, tick: 1, progress: "p1", assessment: assessed(1).assessment },
      { budget: null, goal: GOAL, tick: 2, progress: "p2", assessment: assessed(2).assessment },
    ]);
    expect(h.callModel.calls.map((c) => c.input)).toEqual([
      {
        goal: GOAL,
        tick: 1,
        progress: "p1",
        plan: planned(1).plan,
        transcript: [],
        lastCall: false,
        spentTokens: 0,
        budget: null,
      },
      {
        goal: GOAL,
        tick: 2,
        progress: "p2",
        plan: planned(2).plan,
        transcript: [],
        lastCall: false,
        spentTokens: 0,
        budget: null,
      },
    ]);
    expect(h.persisted.map((p) => p.input)).toEqual([
      { seq: 2, status: "sleeping", reason: null },
      { seq: 3, status: "sleeping", reason: null },
    ]);
    expect(h.persisted.map((p) => p.state)).toEqual(["persisting", "persisting"]);
  });

  it("passes the settings' maxIterationsPerTick and the plan to the tool loop", async () => {
    const h = harness({ settings: { maxIterationsPerTick: 2 } });
    const actor = h.run();
    await inState(actor, "sleeping");
    const child = h.callModel.calls[0];
    expect(child?.input.plan).toEqual({ steps: ["step 1", "check 1"] });
    // maxIterations 2: the first call is not the last one; the model answered, so only one call.
    expect(child?.input.lastCall).toBe(false);
    expect(h.callModel.calls.length).toBe(1);
  });

  it("counts finished ticks only: context.tick increments once per tick, when it is concluded", async () => {
    const h = harness({
      assess: (i) => (i.tick === 2 ? pending() : assessed(i.tick)),
      sleepUntil: (_input, index) => (index === 0 ? woke() : pending()),
    });
    const actor = h.run();

    await calledTimes(actor, h.assess.calls, 2);
    await inState(actor, "assessing");
    const during = actor.getSnapshot().context;
    expect(during.tick).toBe(1);
    expect(must(during.current).number).toBe(2);

    must(h.assess.calls[1]).resolve(assessed(2));
    await calledTimes(actor, h.sleepUntil.calls, 2);
    expect(h.persisted.map((p) => p.context.tick)).toEqual([1, 2]);
    expect(actor.getSnapshot().context.tick).toBe(2);
  });

  it("adds usage up per tick (current.usage) and cumulatively (usage)", async () => {
    const h = harness({
      settings: { maxTicks: 2 },
      sleepUntil: () => woke(),
    });
    const actor = h.run();
    const output = await toPromise(actor);

    expect(h.persisted.map((p) => must(p.context.current).usage)).toEqual([TICK_USAGE, TICK_USAGE]);
    expect(h.persisted.map((p) => p.context.usage)).toEqual([TICK_USAGE, times(TICK_USAGE, 2)]);
    expect(output.usage).toEqual({
      calls: 6,
      promptTokens: 260,
      completionTokens: 130,
      totalTokens: 390,
    });
  });

  it("counts the usage of every tool-loop model call in the tick", async () => {
    const h = harness({
      callModel: (_i, index) =>
        index === 0
          ? {
              content: null,
              toolCalls: [{ id: "c1", name: "read_file", arguments: "{}" }],
              usage: MODEL_USAGE,
            }
          : answered("finished"),
    });
    const actor = h.run();
    await inState(actor, "sleeping");
    const ctx = actor.getSnapshot().context;
    const expected: TokenUsage = {
      calls: 4,
      promptTokens: 230,
      completionTokens: 115,
      totalTokens: 345,
    };
    expect(must(lastPersist(h.persisted).context.current).usage).toEqual(expected);
    expect(ctx.usage).toEqual(expected);
    expect(ctx.lastResult).toBe("finished");
    expect(must(lastPersist(h.persisted).context.current).toolCalls).toEqual([
      { callId: "c1", name: "read_file", arguments: "{}", status: "ok", content: "ok" },
    ]);
    // Each call is recorded with its phase and its own usage.
    const record = ({ calls: _n, ...tokens }: TokenUsage, phase: string) => ({ phase, ...tokens });
    expect(must(lastPersist(h.persisted).context.current).modelCalls).toEqual([
      record(ASSESS_USAGE, "assess"),
      record(PLAN_USAGE, "plan"),
      record(MODEL_USAGE, "execute"),
      record(MODEL_USAGE, "execute"),
    ]);
  });

  it(`keeps the last ${DIGESTS_KEPT} digests, and progress is the assessment's progressSummary`, async () => {
    const h = harness({ settings: { maxTicks: 4 }, sleepUntil: () => woke() });
    const actor = h.run();
    const output = await toPromise(actor);

    expect(DIGESTS_KEPT).toBe(3);
    const digests: TickDigest[] = [2, 3, 4].map((n) => ({
      tick: n,
      at: iso(T0),
      outcome: "ok",
      summary: `a${n} → done ${n}`,
    }));
    const ctx = actor.getSnapshot().context;
    expect(ctx.digests).toEqual(digests);
    expect(h.persisted.map((p) => p.context.digests.map((d) => d.tick))).toEqual([
      [1],
      [1, 2],
      [1, 2, 3],
      [2, 3, 4],
    ]);
    expect(h.assess.calls.map((c) => c.input.progress)).toEqual(["", "p1", "p2", "p3"]);
    expect(ctx.progress).toBe("p4");
    expect(output.progress).toBe("p4");
    expect(ctx.lastAssessment).toEqual(assessed(4).assessment);
    expect(ctx.lastPlan).toEqual(planned(4).plan);
    expect(ctx.lastResult).toBe("done 4");
  });
});

// ---------------------------------------------------------------------------
// Ending: goal, max ticks, tools disabled
// ---------------------------------------------------------------------------

describe("heartbeat: completion", () => {
  it("completes when the 3rd assessment says goalComplete, without planning that tick, persisting first", async () => {
    const h = harness({
      assess: (i) => assessed(i.tick, { goalComplete: i.tick === 3 }),
      sleepUntil: () => woke(),
    });
    const actor = h.run();
    const output = await toPromise(actor);

    expect(output).toEqual({
      status: "completed",
      reason: "goal-met",
      tick: 3,
      completed: true,
      usage: {
        calls: 7,
        promptTokens: 270,
        completionTokens: 135,
        totalTokens: 405,
      },
      progress: "p3",
      error: null,
    });
    expect(actor.getSnapshot().value).toBe("completed");
    expect(h.assess.calls.length).toBe(3);
    expect(h.plan.calls.map((c) => c.input.tick)).toEqual([1, 2]);
    expect(h.callModel.calls.map((c) => c.input.tick)).toEqual([1, 2]);
    expect(h.persisted.map((p) => p.input)).toEqual([
      { seq: 2, status: "sleeping", reason: null },
      { seq: 3, status: "sleeping", reason: null },
      { seq: 4, status: "completed", reason: "goal-met" },
    ]);
    expect(lastPersist(h.persisted).state).toBe("persisting");
    expect(h.states.slice(-5)).toEqual([
      "sleeping",
      "observing",
      "assessing",
      "persisting",
      "completed",
    ]);
    expect(h.sleepUntil.calls.length).toBe(2);
  });

  it("does not complete on a reply whose texts mention GOAL_COMPLETE when goalComplete is false", async () => {
    const h = harness({
      settings: { maxTicks: 2 },
      assess: (i) =>
        assessed(i.tick, {
          goalComplete: false,
          assessment: "GOAL_COMPLETE [DONE] everything is finished",
          progressSummary: "GOAL_COMPLETE",
        }),
      callModel: () => answered("GOAL_COMPLETE"),
      sleepUntil: () => woke(),
    });
    const actor = h.run();
    const output = await toPromise(actor);

    expect(output.status).toBe("completed");
    expect(output.reason).toBe("max-ticks");
    expect(output.completed).toBe(false);
    expect(output.tick).toBe(2);
    expect(h.assess.calls.length).toBe(2);
    expect(h.plan.calls.length).toBe(2);
    expect(h.persisted.map((p) => p.input.status)).toEqual(["sleeping", "completed"]);
  });

  it("skips planning and executing when no action is needed (an idle tick), and counts it", async () => {
    const h = harness({
      assess: (i) => assessed(i.tick, { actionNeeded: false, assessment: "waiting" }),
    });
    const actor = h.run();
    await inState(actor, "sleeping");

    expect(h.states).toEqual([
      "idle",
      "persisting",
      "observing",
      "assessing",
      "persisting",
      "sleeping",
    ]);
    expect(h.assess.calls.length).toBe(1);
    expect(h.plan.calls.length).toBe(0);
    expect(h.callModel.calls.length).toBe(0);
    const ctx = actor.getSnapshot().context;
    expect(ctx.tick).toBe(1);
    expect(ctx.usage).toEqual(ASSESS_USAGE);
    expect(ctx.lastResult).toBe(null);
    expect(ctx.digests).toEqual([{ tick: 1, at: iso(T0), outcome: "idle", summary: "waiting" }]);
    expect(h.persisted.map((p) => p.input)).toEqual([{ seq: 2, status: "sleeping", reason: null }]);
  });

  it("stops at completed with reason max-ticks after exactly maxTicks ticks", async () => {
    const h = harness({ settings: { maxTicks: 3 }, sleepUntil: () => woke() });
    const actor = h.run();
    const output = await toPromise(actor);

    expect(output.status).toBe("completed");
    expect(output.reason).toBe("max-ticks");
    expect(output.tick).toBe(3);
    expect(output.completed).toBe(false);
    expect(output.error).toBe(null);
    expect(h.assess.calls.map((c) => c.input.tick)).toEqual([1, 2, 3]);
    expect(h.sleepUntil.calls.length).toBe(2);
    expect(h.persisted.map((p) => p.input)).toEqual([
      { seq: 2, status: "sleeping", reason: null },
      { seq: 3, status: "sleeping", reason: null },
      { seq: 4, status: "completed", reason: "max-ticks" },
    ]);
  });

  it("ends failed (last-tick-failed), not completed, when the tick that reaches maxTicks failed", async () => {
    const h = harness({
      settings: { maxTicks: 3, maxConsecutiveFailures: 5 },
      assess: () => Promise.reject(badOutput),
      sleepUntil: () => woke(),
    });
    const output = await toPromise(h.run());

    expect(output.status).toBe("failed");
    expect(output.reason).toBe("last-tick-failed");
    expect(output.tick).toBe(3);
    expect(h.persisted.map((p) => p.input)).toEqual([
      { seq: 2, status: "sleeping", reason: null },
      { seq: 3, status: "sleeping", reason: null },
      { seq: 4, status: "failed", reason: "last-tick-failed" },
    ]);
  });

  it("ends completed (max-ticks) when only an earlier tick failed", async () => {
    const h = harness({
      settings: { maxTicks: 2 },
      assess: (i) => (i.tick === 1 ? Promise.reject(badOutput) : assessed(i.tick)),
      sleepUntil: () => woke(),
    });
    const output = await toPromise(h.run());
    expect(output.status).toBe("completed");
    expect(output.reason).toBe("max-ticks");
  });

  it("with tools disabled never enters executing; the plan's steps are the result", async () => {
    const h = harness({ settings: { toolsEnabled: false, maxTicks: 1 } });
    const actor = h.run();
    const output = await toPromise(actor);

    expect(h.states).toEqual([
      "idle",
      "persisting",
      "observing",
      "assessing",
      "planning",
      "persisting",
      "completed",
    ]);
    expect(h.callModel.calls.length).toBe(0);
    expect(h.runTools.calls.length).toBe(0);
    const ctx = actor.getSnapshot().context;
    expect(ctx.lastResult).toBe("1. step 1\n2. check 1");
    expect(must(lastPersist(h.persisted).context.current).result).toBe("1. step 1\n2. check 1");
    expect(output.usage).toEqual({
      calls: 2,
      promptTokens: 30,
      completionTokens: 15,
      totalTokens: 45,
    });
  });
});

// ---------------------------------------------------------------------------
// Errors
// ---------------------------------------------------------------------------

describe("heartbeat: errors", () => {
  it("records a non-fatal assess error in the tick, journals it, notes it in progress, and sleeps on", async () => {
    const h = harness({
      assess: (i) => (i.tick === 1 ? Promise.reject(badOutput) : assessed(i.tick)),
    });
    const actor = h.run();
    await inState(actor, "sleeping");

    expect(h.states).toEqual([
      "idle",
      "persisting",
      "observing",
      "assessing",
      "persisting",
      "sleeping",
    ]);
    expect(h.plan.calls.length).toBe(0);
    const record = lastPersist(h.persisted);
    expect(record.input).toEqual({ seq: 2, status: "sleeping", reason: null });
    expect(must(record.context.current).errors).toEqual([
      { phase: "assess", code: "llm-bad-output", message: "x", fatal: false },
    ]);
    expect(record.context.tick).toBe(1);
    expect(record.context.consecutiveFailures).toBe(1);
    expect(record.context.progress).toBe("[tick 1] assess failed: x");
    expect(record.context.digests).toEqual([
      { tick: 1, at: iso(T0), outcome: "failed", summary: "assess failed: x" },
    ]);
    expect(record.context.error).toBe(null);
    expect(actor.getSnapshot().context.nextTickAt).toBe(iso(T0 + 60_000));
  });

  it("appends the failure note to the existing progress", async () => {
    const h = harness({
      assess: (i) => (i.tick === 2 ? Promise.reject(badOutput) : assessed(i.tick)),
      sleepUntil: (_i, index) => (index === 0 ? woke() : pending()),
    });
    const actor = h.run();
    await calledTimes(actor, h.sleepUntil.calls, 2);
    expect(actor.getSnapshot().context.progress).toBe("p1\n[tick 2] assess failed: x");
    expect(h.persisted.map((p) => p.context.consecutiveFailures)).toEqual([0, 1]);
  });

  it("records a non-fatal plan error and does not execute", async () => {
    const h = harness({ plan: () => Promise.reject(badOutput) });
    const actor = h.run();
    await inState(actor, "sleeping");
    expect(h.states).toEqual([
      "idle",
      "persisting",
      "observing",
      "assessing",
      "planning",
      "persisting",
      "sleeping",
    ]);
    expect(h.callModel.calls.length).toBe(0);
    const ctx = actor.getSnapshot().context;
    expect(must(lastPersist(h.persisted).context.current).errors).toEqual([
      { phase: "plan", code: "llm-bad-output", message: "x", fatal: false },
    ]);
    expect(ctx.progress).toBe("p1\n[tick 1] plan failed: x");
    expect(ctx.consecutiveFailures).toBe(1);
  });

  it("ends in failed (too-many-failures) after maxConsecutiveFailures failed ticks in a row", async () => {
    const h = harness({
      settings: { maxConsecutiveFailures: 3 },
      assess: () => Promise.reject(badOutput),
      sleepUntil: () => woke(),
    });
    const actor = h.run();
    const output = await toPromise(actor);

    expect(output).toEqual({
      status: "failed",
      reason: "too-many-failures",
      tick: 3,
      completed: false,
      usage: { calls: 0, promptTokens: 0, completionTokens: 0, totalTokens: 0 },
      progress: "[tick 1] assess failed: x\n[tick 2] assess failed: x\n[tick 3] assess failed: x",
      error: null,
    });
    expect(h.assess.calls.length).toBe(3);
    expect(h.persisted.map((p) => p.input)).toEqual([
      { seq: 2, status: "sleeping", reason: null },
      { seq: 3, status: "sleeping", reason: null },
      { seq: 4, status: "failed", reason: "too-many-failures" },
    ]);
    expect(actor.getSnapshot().value).toBe("failed");
  });

  it("resets the failure count after a successful tick", async () => {
    // ticks: fail, fail, ok, fail, fail, fail → fails at tick 6, not 3.
    const failing = new Set([1, 2, 4, 5, 6]);
    const h = harness({
      settings: { maxConsecutiveFailures: 3 },
      assess: (i) => (failing.has(i.tick) ? Promise.reject(badOutput) : assessed(i.tick)),
      sleepUntil: () => woke(),
    });
    const actor = h.run();
    const output = await toPromise(actor);

    expect(output.status).toBe("failed");
    expect(output.reason).toBe("too-many-failures");
    expect(output.tick).toBe(6);
    expect(h.persisted.map((p) => p.context.consecutiveFailures)).toEqual([1, 2, 0, 1, 2, 3]);
    expect(h.persisted.map((p) => p.input.status)).toEqual([
      "sleeping",
      "sleeping",
      "sleeping",
      "sleeping",
      "sleeping",
      "failed",
    ]);
  });

  it("a non-fatal error inside the tool loop output fails the tick but not the heartbeat", async () => {
    const h = harness({ callModel: () => Promise.reject(badOutput) });
    const actor = h.run();
    await inState(actor, "sleeping");
    const ctx = actor.getSnapshot().context;
    expect(must(lastPersist(h.persisted).context.current).errors).toEqual([
      { phase: "execute", code: "llm-bad-output", message: "x", fatal: false },
    ]);
    expect(ctx.consecutiveFailures).toBe(1);
    expect(ctx.error).toBe(null);
  });

  const fatalCases: [string, HarnessOptions, string[]][] = [
    [
      "assess",
      { assess: () => Promise.reject(fatalAuth) },
      ["idle", "persisting", "observing", "assessing", "persisting"],
    ],
    [
      "plan",
      { plan: () => Promise.reject(fatalAuth) },
      ["idle", "persisting", "observing", "assessing", "planning", "persisting"],
    ],
    [
      "the tool loop",
      { callModel: () => Promise.reject(fatalAuth) },
      ["idle", "persisting", "observing", "assessing", "planning", "executing", "persisting"],
    ],
  ];

  for (const [phase, options, path] of fatalCases) {
    it(`a fatal error in ${phase} ends in failed with the error's code, persisted first`, async () => {
      const h = harness({ ...options, settings: { maxConsecutiveFailures: 5 } });
      const actor = h.run();
      const output = await toPromise(actor);

      expect(output.status).toBe("failed");
      expect(output.reason).toBe("llm-auth");
      expect(output.error).toEqual({ code: "llm-auth", message: "bad key", fatal: true });
      expect(output.tick).toBe(1);
      expect(output.completed).toBe(false);
      expect(h.states).toEqual([...path, "failed"]);
      expect(h.persisted.map((p) => p.input)).toEqual([
        { seq: 2, status: "failed", reason: "llm-auth" },
      ]);
      expect(lastPersist(h.persisted).state).toBe("persisting");
      expect(lastPersist(h.persisted).context.error).toEqual(fatalAuth);
      expect(h.sleepUntil.calls.length).toBe(0);
    });
  }

  it("a failed persist ends in failed with the persist error's code", async () => {
    const h = harness({
      persist: () => Promise.reject({ code: "persist", message: "disk full", fatal: false }),
    });
    const actor = h.run();
    const output = await toPromise(actor);
    expect(output.status).toBe("failed");
    expect(output.reason).toBe("persist");
    expect(output.error).toEqual({ code: "persist", message: "disk full", fatal: true });
  });
});

// ---------------------------------------------------------------------------
// heartbeat.stop
// ---------------------------------------------------------------------------

describe("heartbeat: stop", () => {
  const shutdown = { status: "shutdown", reason: "signal" } as const;

  it("in idle: persists and ends in shutdown without a tick", async () => {
    const h = harness();
    const actor = h.start();
    actor.send({ type: "heartbeat.stop" });
    const output = await toPromise(actor);

    expect(output).toEqual({
      ...shutdown,
      tick: 0,
      completed: false,
      usage: { calls: 0, promptTokens: 0, completionTokens: 0, totalTokens: 0 },
      progress: "",
      error: null,
    });
    expect(h.states).toEqual(["idle", "persisting", "shutdown"]);
    expect(h.persisted.map((p) => p.input)).toEqual([
      { seq: 1, status: "shutdown", reason: "signal" },
    ]);
    expect(lastPersist(h.persisted).context.current).toBe(null);
    expect(h.assess.calls.length).toBe(0);
  });

  it("in assessing: aborts the assess call; the interrupted tick is not counted", async () => {
    const h = harness({ assess: () => pending() });
    const actor = h.run();
    await calledTimes(actor, h.assess.calls, 1);
    const call = must(h.assess.calls[0]);
    expect(call.signal.aborted).toBe(false);

    actor.send({ type: "heartbeat.stop" });
    const output = await toPromise(actor);

    expect(call.signal.aborted).toBe(true);
    expect(output.status).toBe("shutdown");
    expect(output.reason).toBe("signal");
    expect(output.tick).toBe(0);
    expect(h.states).toEqual([
      "idle",
      "persisting",
      "observing",
      "assessing",
      "persisting",
      "shutdown",
    ]);
    const record = lastPersist(h.persisted);
    expect(record.input).toEqual({ seq: 2, status: "shutdown", reason: "signal" });
    expect(record.context.tick).toBe(0);
    expect(must(record.context.current).number).toBe(1);
    expect(must(record.context.current).interrupted).toBe(true);
  });

  it("in assessing of the 2nd tick: the tick count stays at the finished ticks", async () => {
    const h = harness({
      assess: (i) => (i.tick === 2 ? pending() : assessed(i.tick)),
      sleepUntil: () => woke(),
    });
    const actor = h.run();
    await calledTimes(actor, h.assess.calls, 2);
    actor.send({ type: "heartbeat.stop" });
    const output = await toPromise(actor);

    expect(must(h.assess.calls[1]).signal.aborted).toBe(true);
    expect(output.tick).toBe(1);
    expect(output.status).toBe("shutdown");
    expect(h.persisted.map((p) => p.input)).toEqual([
      { seq: 2, status: "sleeping", reason: null },
      { seq: 3, status: "shutdown", reason: "signal" },
    ]);
    const current = must(lastPersist(h.persisted).context.current);
    expect(current.number).toBe(2);
    expect(current.interrupted).toBe(true);
  });

  it("in planning: aborts the plan call", async () => {
    const h = harness({ plan: () => pending() });
    const actor = h.run();
    await calledTimes(actor, h.plan.calls, 1);
    actor.send({ type: "heartbeat.stop" });
    const output = await toPromise(actor);

    expect(must(h.plan.calls[0]).signal.aborted).toBe(true);
    expect(output.status).toBe("shutdown");
    expect(output.reason).toBe("signal");
    expect(output.tick).toBe(0);
    expect(h.states).toEqual([
      "idle",
      "persisting",
      "observing",
      "assessing",
      "planning",
      "persisting",
      "shutdown",
    ]);
    expect(h.callModel.calls.length).toBe(0);
    expect(must(lastPersist(h.persisted).context.current).interrupted).toBe(true);
  });

  it("in executing: stops the tool loop child and aborts its callModel call", async () => {
    const h = harness({ callModel: () => pending() });
    const actor = h.run();
    await calledTimes(actor, h.callModel.calls, 1);
    await inState(actor, "executing");
    const child = must(actor.getSnapshot().children.execute, "the execute child");
    expect(child.getSnapshot().status).toBe("active");

    actor.send({ type: "heartbeat.stop" });
    const output = await toPromise(actor);

    expect(must(h.callModel.calls[0]).signal.aborted).toBe(true);
    expect(child.getSnapshot().status).toBe("stopped");
    expect(actor.getSnapshot().children.execute).toBe(undefined);
    expect(output.status).toBe("shutdown");
    expect(output.reason).toBe("signal");
    expect(output.tick).toBe(0);
    expect(h.states).toEqual([
      "idle",
      "persisting",
      "observing",
      "assessing",
      "planning",
      "executing",
      "persisting",
      "shutdown",
    ]);
    // The usage already spent on assess and plan stays counted.
    expect(output.usage).toEqual({
      calls: 2,
      promptTokens: 30,
      completionTokens: 15,
      totalTokens: 45,
    });
    expect(must(lastPersist(h.persisted).context.current).interrupted).toBe(true);
  });

  it("in persisting with outcome sleeping: persists again with status shutdown and ends in shutdown", async () => {
    const h = harness({ persist: () => pending() });
    const actor = h.run();
    await calledTimes(actor, h.persist.calls, 2);
    expect(must(h.persist.calls[1]).input).toEqual({ seq: 2, status: "sleeping", reason: null });

    actor.send({ type: "heartbeat.stop" });
    await calledTimes(actor, h.persist.calls, 3);
    expect(must(h.persist.calls[2]).input).toEqual({
      seq: 3,
      status: "shutdown",
      reason: "signal",
    });
    must(h.persist.calls[2]).resolve();
    const output = await toPromise(actor);

    expect(output.status).toBe("shutdown");
    expect(output.reason).toBe("signal");
    // The tick had finished before the stop: it stays counted.
    expect(output.tick).toBe(1);
    expect(h.sleepUntil.calls.length).toBe(0);
    expect(h.states).toEqual([
      "idle",
      "persisting",
      "observing",
      "assessing",
      "planning",
      "executing",
      "persisting",
      "shutdown",
    ]);
  });

  it("in persisting with outcome completed: keeps the outcome and ends completed", async () => {
    const h = harness({ settings: { maxTicks: 1 }, persist: () => pending() });
    const actor = h.run();
    await calledTimes(actor, h.persist.calls, 2);
    actor.send({ type: "heartbeat.stop" });
    await flush();
    expect(h.persist.calls.length).toBe(2);
    expect(must(h.persist.calls[1]).signal.aborted).toBe(false);

    must(h.persist.calls[1]).resolve();
    const output = await toPromise(actor);
    expect(output.status).toBe("completed");
    expect(output.reason).toBe("max-ticks");
    expect(output.tick).toBe(1);
    expect(h.persisted.map((p) => p.input)).toEqual([
      { seq: 2, status: "completed", reason: "max-ticks" },
    ]);
  });

  it("in persisting with outcome failed: keeps the outcome and ends failed", async () => {
    const h = harness({ assess: () => Promise.reject(fatalAuth), persist: () => pending() });
    const actor = h.run();
    await calledTimes(actor, h.persist.calls, 2);
    actor.send({ type: "heartbeat.stop" });
    await flush();
    expect(h.persist.calls.length).toBe(2);
    must(h.persist.calls[1]).resolve();
    const output = await toPromise(actor);
    expect(output.status).toBe("failed");
    expect(output.reason).toBe("llm-auth");
  });

  it("in sleeping: aborts the sleep, persists with status shutdown and ends in shutdown", async () => {
    const h = harness();
    const actor = h.run();
    await calledTimes(actor, h.sleepUntil.calls, 1);
    await inState(actor, "sleeping");
    actor.send({ type: "heartbeat.stop" });
    const output = await toPromise(actor);

    expect(must(h.sleepUntil.calls[0]).signal.aborted).toBe(true);
    expect(output.status).toBe("shutdown");
    expect(output.reason).toBe("signal");
    expect(output.tick).toBe(1);
    expect(h.assess.calls.length).toBe(1);
    expect(h.persisted.map((p) => p.input)).toEqual([
      { seq: 2, status: "sleeping", reason: null },
      { seq: 3, status: "shutdown", reason: "signal" },
    ]);
    expect(h.states.slice(-3)).toEqual(["sleeping", "persisting", "shutdown"]);
  });

  // CurrentTick.interrupted: "Set when `heartbeat.stop` cut the tick short; such a
  // tick is not counted." A stop while sleeping cuts no tick short.
  it("in sleeping: does not mark the already finished (counted) tick as interrupted", async () => {
    const h = harness();
    const actor = h.run();
    await calledTimes(actor, h.sleepUntil.calls, 1);
    await inState(actor, "sleeping");
    actor.send({ type: "heartbeat.stop" });
    await toPromise(actor);

    const ctx = lastPersist(h.persisted).context;
    expect(ctx.tick).toBe(1);
    expect(
      ctx.current?.interrupted === true && ctx.current.number <= ctx.tick,
      `tick ${ctx.current?.number} is counted (context.tick = ${ctx.tick}) but current.interrupted = ${ctx.current?.interrupted}`,
    ).toBe(false);
  });

  it("in persisting with outcome sleeping: does not mark the finished (counted) tick as interrupted", async () => {
    const h = harness({ persist: () => pending() });
    const actor = h.run();
    await calledTimes(actor, h.persist.calls, 2);
    actor.send({ type: "heartbeat.stop" });
    await calledTimes(actor, h.persist.calls, 3);

    const ctx = must(h.persisted[1]).context;
    expect(ctx.tick).toBe(1);
    expect(
      ctx.current?.interrupted === true && ctx.current.number <= ctx.tick,
      `tick ${ctx.current?.number} is counted (context.tick = ${ctx.tick}) but current.interrupted = ${ctx.current?.interrupted}`,
    ).toBe(false);
  });
});

// ---------------------------------------------------------------------------
// Waking
// ---------------------------------------------------------------------------

describe("heartbeat: waking", () => {
  it("heartbeat.wake in sleeping starts the next tick at once with wakeReason wake", async () => {
    const h = harness({ assess: (i) => (i.tick === 2 ? pending() : assessed(i.tick)) });
    const actor = h.run();
    await calledTimes(actor, h.sleepUntil.calls, 1);
    await inState(actor, "sleeping");

    actor.send({ type: "heartbeat.wake" });
    await calledTimes(actor, h.assess.calls, 2);

    expect(actor.getSnapshot().value).toBe("assessing");
    expect(must(h.sleepUntil.calls[0]).signal.aborted).toBe(true);
    expect(must(h.assess.calls[1]).input.wakeReason).toBe("wake");
    expect(must(h.assess.calls[1]).input.tick).toBe(2);
    const current = must(actor.getSnapshot().context.current);
    expect(current.wakeReason).toBe("wake");
    expect(current.number).toBe(2);
    expect(actor.getSnapshot().context.nextTickAt).toBe(null);
  });

  it("heartbeat.wake outside sleeping is ignored", async () => {
    const h = harness({ assess: () => pending() });
    const actor = h.run();
    await calledTimes(actor, h.assess.calls, 1);
    actor.send({ type: "heartbeat.wake" });
    await flush();
    expect(actor.getSnapshot().value).toBe("assessing");
    expect(h.assess.calls.length).toBe(1);
    expect(must(h.assess.calls[0]).signal.aborted).toBe(false);
  });

  it.each([
    [woke(), "timer"],
    [woke(true), "catch-up"],
  ] as const)("sleepUntil resolving with %o gives wakeReason %s", async (sleepOutput, reason) => {
    const h = harness({
      assess: (i) => (i.tick === 2 ? pending() : assessed(i.tick)),
      sleepUntil: () => sleepOutput,
    });
    const actor = h.run();
    await calledTimes(actor, h.assess.calls, 2);
    expect(must(h.assess.calls[1]).input.wakeReason).toBe(reason);
    expect(must(actor.getSnapshot().context.current).wakeReason).toBe(reason);
  });

  it("a rejected sleepUntil starts no tick: the heartbeat persists and ends failed with the error", async () => {
    const h = harness({
      sleepUntil: () =>
        Promise.reject({ code: "sleep-broke", message: "timer broke", fatal: false }),
    });
    const actor = h.run();
    const output = await toPromise(actor);
    expect(h.assess.calls.length).toBe(1);
    expect(output).toMatchObject({ status: "failed", reason: "sleep-broke", tick: 1 });
    expect(output.error).toMatchObject({ code: "sleep-broke", fatal: true });
    expect(lastPersist(h.persisted).input).toEqual({
      seq: 3,
      status: "failed",
      reason: "sleep-broke",
    });
    expect(h.states.slice(-3)).toEqual(["sleeping", "persisting", "failed"]);
  });
});

// ---------------------------------------------------------------------------
// Active hours
// ---------------------------------------------------------------------------

describe("heartbeat: active hours", () => {
  // The window 09:00-10:00 UTC; T0 is midnight, outside it.
  const window = { activeHours: "09:00-10:00", timezone: "UTC" };
  const opens = Date.parse("2030-01-01T09:00:00.000Z");

  it("a new heartbeat outside its window is persisted first, sleeping until the window opens, the skip recorded", async () => {
    const h = harness({ settings: window });
    const actor = h.run();
    await calledTimes(actor, h.sleepUntil.calls, 1);
    expect(h.states).toEqual(["idle", "persisting", "sleeping"]);
    const start = must(h.starts[0]);
    expect(start.input).toEqual({ seq: 1, status: "sleeping", reason: null });
    expect(start.context).toMatchObject({
      tick: 0,
      nextTickAt: iso(opens),
      wake: "start",
      skipped: [{ due: iso(T0), next: iso(opens), reason: "outside-active-hours" }],
    });
    expect(must(h.sleepUntil.calls[0]).input).toEqual({ until: iso(opens) });
    expect(h.assess.calls.length).toBe(0);

    // The window opens: the first tick, with wake reason start.
    setClock(opens);
    must(h.sleepUntil.calls[0]).resolve(woke());
    await calledTimes(actor, h.assess.calls, 1);
    expect(must(h.assess.calls[0]).input.wakeReason).toBe("start");
    expect(must(actor.getSnapshot().context.current).startedAt).toBe(iso(opens));
  });

  it("a sleep that ends outside the window (the machine was suspended) persists a deferral to the next opening instead of ticking", async () => {
    const h = harness({ settings: { ...window, tickIntervalSec: 60 } });
    setClock(opens + 10 * 60_000);
    const actor = h.run();
    await calledTimes(actor, h.sleepUntil.calls, 1);
    expect(h.assess.calls.length).toBe(1);

    // Woken at 10:30, after the window closed.
    const late = Date.parse("2030-01-01T10:30:00.000Z");
    const nextOpening = Date.parse("2030-01-02T09:00:00.000Z");
    setClock(late);
    must(h.sleepUntil.calls[0]).resolve(woke(true));
    await calledTimes(actor, h.sleepUntil.calls, 2);
    expect(h.assess.calls.length).toBe(1);
    expect(h.states.slice(-3)).toEqual(["sleeping", "persisting", "sleeping"]);
    const deferral = lastPersist(h.persisted);
    expect(deferral.input).toEqual({ seq: 3, status: "sleeping", reason: null });
    expect(deferral.context).toMatchObject({
      tick: 1,
      current: null,
      nextTickAt: iso(nextOpening),
      skipped: [{ due: iso(late), next: iso(nextOpening), reason: "outside-active-hours" }],
    });
    expect(must(h.sleepUntil.calls[1]).input).toEqual({ until: iso(nextOpening) });
  });

  it("a tick due outside the window after a tick is planned at the window's opening", async () => {
    const h = harness({ settings: { ...window, tickIntervalSec: 3600 } });
    setClock(opens + 30 * 60_000);
    const actor = h.run();
    await calledTimes(actor, h.sleepUntil.calls, 1);
    const record = lastPersist(h.persisted);
    expect(record.context.nextTickAt).toBe("2030-01-02T09:00:00.000Z");
    expect(record.context.skipped).toEqual([
      {
        due: "2030-01-01T10:30:00.000Z",
        next: "2030-01-02T09:00:00.000Z",
        reason: "outside-active-hours",
      },
    ]);
  });
});

// ---------------------------------------------------------------------------
// Clock
// ---------------------------------------------------------------------------

describe("heartbeat: nextTickAt", () => {
  it("is planned from the same clock reading as the tick's end, so a resume with the same settings keeps it exactly", async () => {
    // Every clock reading is 2 ms after the previous one.
    clockStepMs = 2;
    const h = harness({ settings: { tickIntervalSec: 2 } });
    const actor = h.run();
    await calledTimes(actor, h.sleepUntil.calls, 1);
    const ctx = lastPersist(h.persisted).context;
    const end = must(ctx.digests.at(-1)).at;
    expect(Date.parse(must(ctx.nextTickAt)) - Date.parse(end)).toBe(2_000);
    expect(rescheduledNextTick(ctx, ctx.settings)).toBe(ctx.nextTickAt);
  });

  it("is conclude time + tickIntervalSec, in the future of the clock when sleeping is entered", async () => {
    const h = harness({
      settings: { tickIntervalSec: 300 },
      callModel: () => pending(),
      sleepUntil: (_i, index) => (index === 0 ? woke() : pending()),
    });
    const actor = h.run();
    const seen: { now: number; nextTickAt: string | null }[] = [];
    actor.subscribe((s) => {
      if (s.matches("sleeping") && seen.at(-1)?.nextTickAt !== s.context.nextTickAt)
        seen.push({ now: clockMs, nextTickAt: s.context.nextTickAt });
    });

    // Tick 1 concludes at T0 + 7 s.
    await calledTimes(actor, h.callModel.calls, 1);
    const t1 = T0 + 7_000;
    setClock(t1);
    must(h.callModel.calls[0]).resolve(answered("one"));
    await calledTimes(actor, h.sleepUntil.calls, 1);

    // Tick 2 concludes at T0 + 400 s.
    await calledTimes(actor, h.callModel.calls, 2);
    const t2 = T0 + 400_000;
    setClock(t2);
    must(h.callModel.calls[1]).resolve(answered("two"));
    await calledTimes(actor, h.sleepUntil.calls, 2);
    await inState(actor, "sleeping");

    expect(seen).toEqual([
      { now: t1, nextTickAt: iso(t1 + 300_000) },
      { now: t2, nextTickAt: iso(t2 + 300_000) },
    ]);
    for (const s of seen) expect(Date.parse(must(s.nextTickAt)) > s.now).toBe(true);
    expect(h.sleepUntil.calls.map((c) => c.input)).toEqual([
      { until: iso(t1 + 300_000) },
      { until: iso(t2 + 300_000) },
    ]);
    expect(h.persisted.map((p) => p.context.nextTickAt)).toEqual([
      iso(t1 + 300_000),
      iso(t2 + 300_000),
    ]);
  });

  it("is cleared when a tick begins and when the heartbeat ends", async () => {
    const h = harness({ settings: { maxTicks: 2 }, sleepUntil: () => woke() });
    const actor = h.run();
    await toPromise(actor);
    expect(h.persisted.map((p) => p.context.nextTickAt)).toEqual([iso(T0 + 60_000), null]);
    expect(actor.getSnapshot().context.nextTickAt).toBe(null);
  });
});

// ---------------------------------------------------------------------------
// Resume
// ---------------------------------------------------------------------------

const RESUME_USAGE: TokenUsage = {
  calls: 40,
  promptTokens: 4000,
  completionTokens: 2000,
  totalTokens: 6000,
};

function resumeRecord(patch: Partial<ResumeRecord> = {}): ResumeRecord {
  return {
    tick: 5,
    progress: "halfway there",
    lastAssessment: assessed(5).assessment,
    lastPlan: planned(5).plan,
    lastResult: "done 5",
    completed: false,
    nextTickAt: null,
    usage: RESUME_USAGE,
    consecutiveFailures: 1,
    digests: [{ tick: 5, at: iso(T0 - 60_000), outcome: "ok", summary: "a5 → done 5" }],
    seq: 9,
    ...patch,
  };
}

describe("heartbeat: resume", () => {
  it("carries tick, progress, digests, usage and seq over; the first tick's wakeReason is resume", async () => {
    const resume = resumeRecord();
    const h = harness({ resume });
    const actor = h.start();
    expect(actor.getSnapshot().context.resumed).toBe(true);
    actor.send({ type: "heartbeat.start" });
    await inState(actor, "sleeping");

    expect(h.assess.calls.map((c) => c.input)).toEqual([
      {
        budget: null,
        goal: GOAL,
        tick: 6,
        progress: "halfway there",
        digests: resume.digests,
        wakeReason: "resume",
        checklist: null,
        dueTasks: [],
      },
    ]);
    const ctx = actor.getSnapshot().context;
    expect(ctx.tick).toBe(6);
    expect(ctx.usage).toEqual({
      calls: 43,
      promptTokens: 4130,
      completionTokens: 2065,
      totalTokens: 6195,
    });
    expect(ctx.consecutiveFailures).toBe(0);
    expect(ctx.digests.map((d) => d.tick)).toEqual([5, 6]);
    // Written first (seq 10), then the tick (seq 11).
    expect(h.persisted.map((p) => p.input)).toEqual([
      { seq: 10, status: "sleeping", reason: null },
      { seq: 11, status: "sleeping", reason: null },
    ]);
  });

  it("with maxTicks already reached goes straight to completed via persisting, without assessing", async () => {
    const h = harness({ settings: { maxTicks: 5 }, resume: resumeRecord() });
    const actor = h.run();
    const output = await toPromise(actor);

    expect(h.states).toEqual(["idle", "persisting", "completed"]);
    expect(h.assess.calls.length).toBe(0);
    expect(h.persisted.map((p) => p.input)).toEqual([
      { seq: 10, status: "completed", reason: "max-ticks" },
    ]);
    expect(output).toEqual({
      status: "completed",
      reason: "max-ticks",
      tick: 5,
      completed: false,
      usage: RESUME_USAGE,
      progress: "halfway there",
      error: null,
    });
  });

  it("with maxTicks already reached after a failed last tick ends failed (last-tick-failed), never relabelled completed", async () => {
    const h = harness({
      settings: { maxTicks: 5 },
      resume: resumeRecord({
        digests: [
          { tick: 5, at: iso(T0 - 60_000), outcome: "failed", summary: "assess failed: x" },
        ],
      }),
    });
    const output = await toPromise(h.run());
    expect(h.assess.calls.length).toBe(0);
    expect(output.status).toBe("failed");
    expect(output.reason).toBe("last-tick-failed");
    expect(h.persisted.map((p) => p.input)).toEqual([
      { seq: 10, status: "failed", reason: "last-tick-failed" },
    ]);
  });

  it("with the goal already complete goes straight to completed (goal-met)", async () => {
    const h = harness({ resume: resumeRecord({ completed: true }) });
    const actor = h.run();
    const output = await toPromise(actor);
    expect(h.assess.calls.length).toBe(0);
    expect(output.status).toBe("completed");
    expect(output.reason).toBe("goal-met");
    expect(output.completed).toBe(true);
    expect(h.persisted.map((p) => p.input)).toEqual([
      { seq: 10, status: "completed", reason: "goal-met" },
    ]);
  });

  it("with nextTickAt in the future goes to sleeping without assessing", async () => {
    const until = iso(T0 + 120_000);
    const h = harness({
      resume: resumeRecord({ nextTickAt: until }),
      assess: (i) => (i.tick === 6 ? pending() : assessed(i.tick)),
    });
    const actor = h.run();
    await calledTimes(actor, h.sleepUntil.calls, 1);

    expect(actor.getSnapshot().value).toBe("sleeping");
    expect(h.states).toEqual(["idle", "persisting", "sleeping"]);
    expect(h.assess.calls.length).toBe(0);
    // Only the start write, with the saved nextTickAt.
    expect(h.persist.calls.length).toBe(1);
    expect(must(h.starts[0]).context.nextTickAt).toBe(until);
    expect(must(h.sleepUntil.calls[0]).input).toEqual({ until });

    must(h.sleepUntil.calls[0]).resolve(woke());
    await calledTimes(actor, h.assess.calls, 1);
    expect(must(h.assess.calls[0]).input.tick).toBe(6);
    // The resumed heartbeat's last tick failed (consecutiveFailures 1): this one is a retry.
    expect(must(h.assess.calls[0]).input.wakeReason).toBe("retry");
  });

  it("with nextTickAt in the past starts a tick at once (wakeReason resume)", async () => {
    const h = harness({
      resume: resumeRecord({ nextTickAt: iso(T0 - 1_000) }),
      assess: () => pending(),
    });
    const actor = h.run();
    await calledTimes(actor, h.assess.calls, 1);
    expect(h.sleepUntil.calls.length).toBe(0);
    expect(must(h.assess.calls[0]).input.wakeReason).toBe("resume");
    expect(actor.getSnapshot().context.nextTickAt).toBe(null);
  });
});

// ---------------------------------------------------------------------------
// Persisted snapshot
// ---------------------------------------------------------------------------

describe("heartbeat: persisted snapshot", () => {
  it("restored from a JSON snapshot taken in persisting, persists again with the same input and sleeps until the same nextTickAt", async () => {
    const first = harness({ persist: () => pending() });
    const actor = first.run();
    // The start write, then tick 1's write, which stays pending.
    await calledTimes(actor, first.persist.calls, 2);
    await inState(actor, "persisting");

    const json = JSON.stringify(actor.getPersistedSnapshot());
    const original = actor.getSnapshot().context;
    actor.stop();
    const snapshot = JSON.parse(json) as Snapshot<unknown>;

    // Time passes before the restart.
    setClock(T0 + 5_000);
    const second = harness({});
    const restored = second.start(snapshot);
    expect(restored.getSnapshot().status).toBe("active");
    expect(restored.getSnapshot().value).toBe("persisting");
    await calledTimes(restored, second.persist.calls, 1);
    expect(must(second.persist.calls[0]).input).toEqual(must(first.persist.calls[1]).input);
    expect(must(second.persist.calls[0]).input).toEqual({
      seq: 2,
      status: "sleeping",
      reason: null,
    });

    await calledTimes(restored, second.sleepUntil.calls, 1);
    await inState(restored, "sleeping");
    const ctx = restored.getSnapshot().context;
    expect(ctx.nextTickAt).toBe(iso(T0 + 60_000));
    expect(ctx.nextTickAt).toBe(original.nextTickAt);
    expect(ctx.tick).toBe(1);
    expect(ctx.usage).toEqual(TICK_USAGE);
    expect(must(second.sleepUntil.calls[0]).input).toEqual({ until: iso(T0 + 60_000) });
    expect(second.assess.calls.length).toBe(0);
  });
});

/**
 * The modules a source file imports: static imports, `export … from` and
 * dynamic `import("…")`, with whether the import is for types only.
 */
function importsOf(text: string): { typeOnly: boolean; from: string }[] {
  const found: { typeOnly: boolean; from: string }[] = [];
  for (const m of text.matchAll(/^(?:import|export)\s+(type\s+)?[\s\S]*?from\s+"([^"]+)";/gm)) {
    found.push({ typeOnly: Boolean(m[1]), from: m[2] ?? "" });
  }
  for (const m of text.matchAll(/\bimport\(\s*"([^"]+)"\s*\)/g)) {
    found.push({ typeOnly: false, from: m[1] ?? "" });
  }
  return found;
}

describe("heartbeat: contract", () => {
  it("has exactly the states of the design, with the final ones final", () => {
    const states = heartbeatMachine.root.states;
    expect(Object.keys(states)).toEqual([...HEARTBEAT_STATES]);
    expect(
      Object.entries(states)
        .filter(([, node]) => node.type === "final")
        .map(([name]) => name),
    ).toEqual(["completed", "failed", "shutdown"]);
  });

  it("machine files import only xstate, types and the pure helpers", async () => {
    const dir = fileURLToPath(new URL("../../src/machines/", import.meta.url));
    for (const file of ["heartbeat.machine.ts", "toolLoop.machine.ts", "notProvided.ts"]) {
      for (const { typeOnly, from } of importsOf(await readFile(`${dir}${file}`, "utf8"))) {
        const allowed =
          from === "xstate" ||
          typeOnly ||
          /^\.\/([\w.]+\.machine|activeHours|idle|shared|notProvided)\.js$/.test(from);
        expect(allowed, `${file} imports ${from}`).toBe(true);
      }
    }
    // The shared helpers load nothing: services use them without xstate.
    for (const file of ["shared.ts", "activeHours.ts"]) {
      const runtime = importsOf(await readFile(`${dir}${file}`, "utf8")).filter((i) => !i.typeOnly);
      expect(runtime, `${file} has runtime imports`).toEqual([]);
    }
  });

  it("services and commands import no machine file, and services not the runtime", async () => {
    const src = fileURLToPath(new URL("../../src/", import.meta.url));
    const files = (await readdir(src, { recursive: true }))
      .filter((f) => /^(services|commands)\/.*\.ts$/.test(f.split(sep).join("/")))
      .map((f) => f.split(sep).join("/"));
    expect(files).toContain("services/store/fileStore.ts");
    expect(files).toContain("commands/diagram.ts");
    const offences: string[] = [];
    for (const file of files) {
      for (const { from } of importsOf(await readFile(`${src}${file}`, "utf8"))) {
        if (/\.machine\.js$/.test(from)) offences.push(`${file} imports ${from}`);
        if (file.startsWith("services/") && /(^|\/)runtime\.js$/.test(from)) {
          offences.push(`${file} imports ${from}`);
        }
      }
    }
    expect(offences).toEqual([]);
  });
});

// ---------------------------------------------------------------------------
// Budgets, backoff, breaker
// ---------------------------------------------------------------------------

describe("heartbeat: budgets and backoff", () => {
  it("ends failed with reason budget once the lifetime token budget is used up", async () => {
    // One default tick uses 195 tokens; a 300-token budget is spent after the second.
    const h = harness({
      settings: { maxTokens: 300, tickIntervalSec: 0 },
      sleepUntil: () => woke(),
    });
    const actor = h.run();
    const output = await toPromise(actor);
    expect(output.status).toBe("failed");
    expect(output.reason).toBe("budget");
    expect(output.tick).toBe(2);
    expect(output.error).toMatchObject({ code: "budget", fatal: true });
    expect(output.error?.message).toMatch(/390 of 300 tokens/);
    expect(lastPersist(h.persisted).input).toMatchObject({ status: "failed", reason: "budget" });
    // The actors get the budget as it stands in their input (the runtime checks it before each call).
    expect(h.assess.calls.map((c) => c.input.budget)).toEqual([
      { maxTokens: 300, usedTokens: 0 },
      { maxTokens: 300, usedTokens: 195 },
    ]);
    expect(must(h.plan.calls[1]).input.budget).toEqual({ maxTokens: 300, usedTokens: 210 });
    expect(must(h.callModel.calls[1]).input.budget).toEqual({ maxTokens: 300, usedTokens: 240 });
  });

  it("a goal met on the tick that spends the budget still completes", async () => {
    const h = harness({
      settings: { maxTokens: 10 },
      assess: (i) => assessed(i.tick, { goalComplete: true }),
    });
    const output = await toPromise(h.run());
    expect(output).toMatchObject({ status: "completed", reason: "goal-met" });
  });

  it("after failed ticks the next tick waits with exponential backoff, capped", async () => {
    const h = harness({
      settings: { tickIntervalSec: 0, failureBackoffSec: 10, maxConsecutiveFailures: 10 },
      assess: () => Promise.reject(badOutput),
    });
    const actor = h.run();
    const delays: number[] = [];
    for (let n = 1; n <= 3; n++) {
      await calledTimes(actor, h.sleepUntil.calls, n);
      delays.push(Date.parse(must(h.sleepUntil.calls[n - 1]).input.until) - T0);
      must(h.sleepUntil.calls[n - 1]).resolve(woke());
    }
    expect(delays).toEqual([10_000, 20_000, 40_000]);
    await calledTimes(actor, h.assess.calls, 4);
    expect(must(h.assess.calls[3]).input.wakeReason).toBe("retry");
  });

  it("backoff never shortens the interval and is capped at an hour", async () => {
    const { tickDelaySec, MAX_BACKOFF_SEC } = await import("../../src/services/schedule.js");
    const s = { ...SETTINGS, tickIntervalSec: 300, failureBackoffSec: 5 };
    expect(tickDelaySec(s, 0)).toBe(300);
    expect(tickDelaySec(s, 1)).toBe(300);
    expect(tickDelaySec(s, 2)).toBe(600);
    expect(tickDelaySec(s, 20)).toBe(MAX_BACKOFF_SEC);
    expect(tickDelaySec({ ...s, failureBackoffSec: 0 }, 5)).toBe(300);
    expect(tickDelaySec({ ...s, tickIntervalSec: 7200 }, 3)).toBe(7200);
  });

  it("passes the per-tick token budget left after assess and plan to the tool loop", async () => {
    const h = harness({ settings: { maxTokensPerTick: 1000 } });
    const actor = h.run();
    await inState(actor, "sleeping");
    // Assess 15 + plan 30 tokens leave 955; the loop ran its one call within it.
    const execute = must(h.callModel.calls[0]);
    expect(execute.input.spentTokens).toBe(0);
    const child = lastPersist(h.persisted).context.current;
    expect(child?.usage.totalTokens).toBe(195);
  });

  it("the tool loop stops before a call once the per-tick budget is spent", async () => {
    const h = harness({
      settings: { maxTokensPerTick: 200, maxIterationsPerTick: 10 },
      callModel: () => ({
        content: null,
        toolCalls: [
          { id: `c${Math.random()}`, name: "list_dir", arguments: `{"path":"${Math.random()}"}` },
        ],
        usage: MODEL_USAGE,
      }),
    });
    const actor = h.run();
    await inState(actor, "sleeping");
    // 45 tokens after assess and plan; one 150-token call leaves the loop past its 155.
    expect(h.callModel.calls).toHaveLength(1);
    expect(lastPersist(h.persisted).context.current?.result).toMatch(/per-tick token budget/);
  });
});

// ---------------------------------------------------------------------------
// Answered but unusable calls are charged
// ---------------------------------------------------------------------------

describe("heartbeat: usage of failed calls", () => {
  const spent: TokenUsage = {
    calls: 1,
    promptTokens: 1000,
    completionTokens: 50,
    totalTokens: 1050,
  };
  const unusable = { ...badOutput, usage: spent };

  for (const phase of ["assess", "plan"] as const) {
    it(`charges a ${phase} call whose reply was unusable, and keeps the usage out of the error`, async () => {
      const h = harness(
        phase === "assess"
          ? { assess: () => Promise.reject(unusable) }
          : { plan: () => Promise.reject(unusable) },
      );
      const actor = h.run();
      await inState(actor, "sleeping");
      const before = phase === "plan" ? ASSESS_USAGE : undefined;
      const expected = before ? addUsage(before, spent) : spent;
      const ctx = lastPersist(h.persisted).context;
      expect(ctx.usage).toEqual(expected);
      expect(must(ctx.current).usage).toEqual(expected);
      expect(must(ctx.current).modelCalls.at(-1)).toEqual({
        phase,
        promptTokens: 1000,
        completionTokens: 50,
        totalTokens: 1050,
      });
      expect(must(ctx.current).errors).toEqual([
        { phase, code: "llm-bad-output", message: "x", fatal: false },
      ]);
    });
  }

  it("charges a tool-loop call whose reply was unusable", async () => {
    const h = harness({ callModel: () => Promise.reject(unusable) });
    const actor = h.run();
    await inState(actor, "sleeping");
    const ctx = lastPersist(h.persisted).context;
    expect(ctx.usage).toEqual(addUsage(addUsage(ASSESS_USAGE, PLAN_USAGE), spent));
    expect(must(ctx.current).errors).toEqual([
      { phase: "execute", code: "llm-bad-output", message: "x", fatal: false },
    ]);
  });

  it("counts estimated calls and marks their records", async () => {
    const estimated: TokenUsage = { ...spent, estimatedCalls: 1 };
    const h = harness({
      assess: (i) => ({ ...assessed(i.tick), usage: estimated }),
    });
    const actor = h.run();
    await inState(actor, "sleeping");
    const ctx = lastPersist(h.persisted).context;
    expect(ctx.usage.estimatedCalls).toBe(1);
    expect(must(ctx.current).modelCalls[0]).toEqual({
      phase: "assess",
      promptTokens: 1000,
      completionTokens: 50,
      totalTokens: 1050,
      estimated: true,
    });
  });
});
