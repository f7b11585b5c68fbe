/**
 * The heartbeat statechart (DESIGN.md section 1). Pure: it imports only xstate,
 * types and pure helpers, and reads no clock. Every phase is an invoked actor
 * named in `setup()`; the runtime supplies real ones with `provide()`, tests
 * supply fakes. Time arrives as data: the injected `readClock` action stores a
 * clock reading in `context.now` on every transition that needs one, and the
 * injected `scheduleNextTick` action (the planner of src/services/schedule.ts)
 * turns it into `nextTickAt`.
 *
 * A tick is counted when it finishes: `context.tick` is the number of finished
 * ticks and `context.current` the tick in progress. `heartbeat.stop` discards
 * an unfinished tick (it is journaled as interrupted and runs again on resume).
 */
import { assign, setup } from "xstate";
import type { ErrorInfo } from "../errors.js";
import { insideActiveHours } from "./activeHours.js";
import type {
  AssessInput,
  AssessOutput,
  ChecklistState,
  ChecklistTask,
  CurrentTick,
  HeartbeatContext,
  HeartbeatEvent,
  HeartbeatInput,
  HeartbeatOutput,
  HeartbeatSettings,
  LifetimeBudget,
  ModelCallRecord,
  ObserveInput,
  ObserveOutput,
  Outcome,
  PersistInput,
  PhaseError,
  PlanInput,
  PlanOutput,
  SleepInput,
  SleepOutput,
  TickDigest,
  TokenUsage,
  WakeReason,
} from "./heartbeat.types.js";
import { dailyCapReached, dailyTokensLeft, dayOf, dueTasks } from "./idle.js";
import { notProvided } from "./notProvided.js";
import { addUsage, asErrorInfo, PROGRESS_LIMIT, ZERO_USAGE } from "./shared.js";
import { toolLoopMachine } from "./toolLoop.machine.js";
import type { ToolLoopOutput } from "./toolLoop.types.js";

/** How many recent tick digests are kept for the prompts. */
export const DIGESTS_KEPT = 3;
/** Most recurring tasks the model may add to the checklist. */
export const MODEL_TASKS_KEPT = 20;

const NO_CHECKLIST: ChecklistState = { tasks: [], runs: {} };

/** The checklist's tasks once `observed` was read: the file's (if it was read) and the model's. */
function tasksAfter(context: HeartbeatContext, observed: ObserveOutput | null): ChecklistTask[] {
  const known = context.checklist ?? NO_CHECKLIST;
  const fromModel = known.tasks.filter((t) => t.source === "model");
  if (!observed) return known.tasks;
  const fromFile = observed.checklist?.tasks ?? [];
  const texts = new Set(fromFile.map((t) => t.task));
  return [...fromFile, ...fromModel.filter((t) => !texts.has(t.task))];
}

/** The checklist after a finished tick: due and ticked-off tasks ran at `now`, the model's additions kept. */
function checklistAfter(context: HeartbeatContext, tick: CurrentTick): ChecklistState {
  const known = context.checklist ?? NO_CHECKLIST;
  const runs = { ...known.runs };
  const update = tick.assessment?.checklist;
  const names = new Set(known.tasks.map((t) => t.task));
  for (const task of tick.due ?? []) runs[task.task] = context.now;
  for (const done of update?.done ?? []) if (names.has(done)) runs[done] = context.now;
  let tasks = known.tasks;
  for (const add of update?.add ?? []) {
    const task = add.task.trim();
    if (!task || names.has(task) || add.everySec <= 0) continue;
    if (tasks.filter((t) => t.source === "model").length >= MODEL_TASKS_KEPT) break;
    names.add(task);
    tasks = [...tasks, { task, everySec: add.everySec, source: "model" }];
    // It ran as it was added: the model just thought of it.
    runs[task] = context.now;
  }
  // Runs of tasks that no longer exist are forgotten.
  for (const name of Object.keys(runs)) if (!names.has(name)) delete runs[name];
  return { tasks, runs };
}
/** The lifetime token budget is set and used up. */
export function budgetSpent(settings: HeartbeatSettings, usage: TokenUsage): boolean {
  return settings.maxTokens > 0 && usage.totalTokens >= settings.maxTokens;
}

const clip = (text: string, max: number) =>
  text.length <= max ? text : `${text.slice(0, max - 1)}…`;

function newTick(context: HeartbeatContext, wakeReason: WakeReason): CurrentTick {
  return {
    number: context.tick + 1,
    startedAt: context.now,
    wakeReason,
    assessment: null,
    plan: null,
    result: null,
    errors: [],
    usage: ZERO_USAGE,
    modelCalls: [],
    toolCalls: [],
    interrupted: false,
  };
}

function withCurrent(context: HeartbeatContext, patch: Partial<CurrentTick>): CurrentTick | null {
  return context.current ? { ...context.current, ...patch } : null;
}

/** Patches the current tick and charges the usage of its model calls to it and to the heartbeat. */
function charge(
  context: HeartbeatContext,
  phase: ModelCallRecord["phase"],
  calls: TokenUsage[],
  patch: Partial<CurrentTick>,
): Pick<HeartbeatContext, "current" | "usage" | "day"> {
  const usage = calls.reduce(addUsage, ZERO_USAGE);
  const records = calls.map(
    (u): ModelCallRecord => ({
      phase,
      promptTokens: u.promptTokens,
      completionTokens: u.completionTokens,
      totalTokens: u.totalTokens,
      ...(u.cachedTokens ? { cachedTokens: u.cachedTokens } : {}),
      ...(u.estimatedCalls ? { estimated: true as const } : {}),
    }),
  );
  // Charged to the calendar day (in the heartbeat's time zone) of the last clock reading.
  const date = dayOf(Date.parse(context.now), context.settings.timezone);
  const today = context.day?.date === date ? context.day.usage : ZERO_USAGE;
  return {
    current: withCurrent(context, {
      ...patch,
      usage: addUsage(context.current?.usage ?? ZERO_USAGE, usage),
      modelCalls: [...(context.current?.modelCalls ?? []), ...records],
    }),
    usage: addUsage(context.usage, usage),
    day: { date, usage: addUsage(today, usage) },
  };
}

function digestOf(tick: CurrentTick, at: string): TickDigest {
  const failed = tick.errors.length > 0;
  const idle = !failed && tick.assessment !== null && !tick.assessment.actionNeeded;
  const summary = failed
    ? tick.errors.map((e) => `${e.phase} failed: ${e.message}`).join("; ")
    : [tick.assessment?.assessment, tick.result].filter(Boolean).join(" → ");
  return {
    tick: tick.number,
    at,
    outcome: failed ? "failed" : idle ? "idle" : "ok",
    summary: clip(summary, 300),
  };
}

/**
 * Closes the current tick: counts it, records it, and decides where the
 * heartbeat goes next (the `outcome`).
 */
function concludeTick(context: HeartbeatContext): Partial<HeartbeatContext> {
  const current = context.current;
  if (!current) return concludeRun(context);
  if (current.quiet) return concludeQuietTick(context, current);
  const tick = current.number;
  const failed = current.errors.length > 0;
  const fatal = current.errors.find((e) => e.fatal);
  const consecutiveFailures = failed ? context.consecutiveFailures + 1 : 0;
  const goalMet = current.assessment?.goalComplete === true && !failed;
  let progress = context.progress;
  if (failed) {
    const note = current.errors
      .map((e) => `[tick ${tick}] ${e.phase} failed: ${e.message}`)
      .join("\n");
    progress = clip(`${progress}\n${note}`.trim(), PROGRESS_LIMIT + 500);
  }
  let outcome: Outcome;
  let error: ErrorInfo | null = fatal ? stripPhase(fatal) : null;
  if (fatal) outcome = { status: "failed", reason: fatal.code };
  else if (goalMet) outcome = { status: "completed", reason: "goal-met" };
  else if (budgetSpent(context.settings, context.usage)) {
    outcome = { status: "failed", reason: "budget" };
    error = {
      code: "budget",
      message: `The token budget is spent: ${context.usage.totalTokens} of ${context.settings.maxTokens} tokens used.`,
      fatal: true,
      hint: "Raise --max-tokens (or [heartbeat] max_tokens) to continue.",
    };
  } else if (consecutiveFailures >= context.settings.maxConsecutiveFailures)
    outcome = { status: "failed", reason: "too-many-failures" };
  else if (context.settings.maxTicks > 0 && tick >= context.settings.maxTicks)
    // The last tick failed: the run did not complete its work, whatever the count says.
    outcome = failed
      ? { status: "failed", reason: "last-tick-failed" }
      : { status: "completed", reason: "max-ticks" };
  else if (dailyCapReached(context.settings, context.day ?? null, context.now))
    outcome = { status: "sleeping", reason: "daily-budget" };
  else outcome = { status: "sleeping", reason: null };
  const idle =
    !failed && current.assessment !== null && !current.assessment.actionNeeded && !goalMet;
  const fingerprint = current.observed?.fingerprint ?? null;
  return {
    tick,
    quiet: idle && fingerprint !== null ? { fingerprint, lastCallAt: current.startedAt } : null,
    lastTickAt: context.now,
    checklist: failed ? (context.checklist ?? NO_CHECKLIST) : checklistAfter(context, current),
    progress,
    consecutiveFailures,
    completed: goalMet,
    digests: [...context.digests, digestOf(current, context.now)].slice(-DIGESTS_KEPT),
    lastResult: current.result ?? context.lastResult,
    outcome,
    error,
    // Set by `scheduleNextTick` on entering `persisting`.
    nextTickAt: null,
    seq: context.seq + 1,
  };
}

/**
 * Closes a quiet tick: counted and journaled (no model call), but it adds no
 * digest and changes no progress, so the next prompt is what it would have
 * been. The quiet state stays: the workspace is still the one assessed idle.
 */
function concludeQuietTick(
  context: HeartbeatContext,
  current: CurrentTick,
): Partial<HeartbeatContext> {
  const tick = current.number;
  const outcome: Outcome =
    context.settings.maxTicks > 0 && tick >= context.settings.maxTicks
      ? { status: "completed", reason: "max-ticks" }
      : { status: "sleeping", reason: null };
  return {
    tick,
    outcome,
    error: null,
    lastTickAt: context.now,
    nextTickAt: null,
    seq: context.seq + 1,
  };
}

/**
 * Ends the run without a tick (max ticks already reached when starting or
 * waking). A heartbeat whose last tick failed is not relabelled `completed`.
 */
function concludeRun(context: HeartbeatContext): Partial<HeartbeatContext> {
  return {
    outcome: context.completed
      ? { status: "completed", reason: "goal-met" }
      : context.digests.at(-1)?.outcome === "failed"
        ? { status: "failed", reason: "last-tick-failed" }
        : { status: "completed", reason: "max-ticks" },
    nextTickAt: null,
    current: null,
    seq: context.seq + 1,
  };
}

function stripPhase(e: PhaseError): ErrorInfo {
  const { phase: _phase, ...info } = e;
  return info;
}

/**
 * Why the first tick of this run will start: a new heartbeat, a resume, or a
 * catch-up when the saved `nextTickAt` passed more than a second ago. Null
 * when a resumed heartbeat's tick is still ahead: it runs on its schedule
 * (timer, or retry after a failed tick).
 */
function startReason(context: HeartbeatContext): WakeReason | null {
  if (!context.resumed) return "start";
  if (context.nextTickAt === null) return "resume";
  const due = Date.parse(context.nextTickAt);
  const now = Date.parse(context.now);
  if (due > now) return null;
  return due < now - 1_000 ? "catch-up" : "resume";
}

/** Why a tick that was waited for starts: the reason decided at the start, or the schedule's. */
function wakeReasonOf(context: HeartbeatContext, late: boolean): WakeReason {
  if (context.wake) return context.wake;
  if (late) return "catch-up";
  return context.consecutiveFailures > 0 ? "retry" : "timer";
}

/** An action that the runtime (or a test) must provide; the machine's own one refuses to run. */
function actionNotProvided(name: string) {
  return () => {
    throw new Error(`The heartbeat's "${name}" action was not provided.`);
  };
}

/** The lifetime budget as it stands, for the actors that check it before a model call. */
function budgetOf(context: HeartbeatContext): LifetimeBudget | null {
  return context.settings.maxTokens > 0
    ? { maxTokens: context.settings.maxTokens, usedTokens: context.usage.totalTokens }
    : null;
}

/** Tokens the execute phase may spend: what the per-tick budget and today's cap leave (0 = no limit). */
function tickTokenBudget(context: HeartbeatContext): number {
  const limits: number[] = [];
  if (context.settings.maxTokensPerTick > 0)
    limits.push(context.settings.maxTokensPerTick - (context.current?.usage.totalTokens ?? 0));
  const today = dailyTokensLeft(context.settings, context.day ?? null, context.now);
  if (today !== null) limits.push(today);
  return limits.length === 0 ? 0 : Math.max(1, Math.min(...limits));
}

function phaseError(phase: PhaseError["phase"], error: unknown): PhaseError {
  return { phase, ...asErrorInfo(error) };
}

/** The heartbeat statechart. */
export const heartbeatMachine = setup({
  types: {
    context: {} as HeartbeatContext,
    events: {} as HeartbeatEvent,
    input: {} as HeartbeatInput,
    output: {} as HeartbeatOutput,
  },
  actors: {
    observe: notProvided<ObserveOutput, ObserveInput>("observe"),
    assess: notProvided<AssessOutput, AssessInput>("assess"),
    plan: notProvided<PlanOutput, PlanInput>("plan"),
    execute: toolLoopMachine,
    persist: notProvided<void, PersistInput>("persist"),
    sleepUntil: notProvided<SleepOutput, SleepInput>("sleepUntil"),
  },
  guards: {
    maxTicksReached: ({ context }) =>
      context.completed ||
      (context.settings.maxTicks > 0 && context.tick >= context.settings.maxTicks),
    /** The next tick is due at the last clock reading: start it without sleeping. */
    tickDue: ({ context }) =>
      context.outcome?.status === "sleeping" &&
      context.nextTickAt !== null &&
      Date.parse(context.nextTickAt) <= Date.parse(context.now),
    /** The sleep ended (at `at`) outside the active hours: the machine was suspended past the window. */
    outsideActiveHours: ({ context }, params: { at: string }) =>
      !insideActiveHours(
        Date.parse(params.at),
        context.settings.activeHours,
        context.settings.timezone,
      ),
    /**
     * Nothing can have changed since an idle tick: quiet ticks are on, the
     * workspace fingerprint is the one that tick saw, no checklist task is
     * due, the tick was not asked for (`wake`), and the last model call is
     * more recent than `idleRecheckSec`.
     */
    unchangedSinceIdle: ({ context }, params: { output: ObserveOutput }) => {
      const recheck = context.settings.idleRecheckSec ?? 0;
      const quiet = context.quiet;
      if (recheck <= 0 || !quiet || params.output.fingerprint === null) return false;
      if (params.output.fingerprint !== quiet.fingerprint) return false;
      if (context.current?.wakeReason === "wake") return false;
      const known = context.checklist ?? NO_CHECKLIST;
      if (dueTasks(tasksAfter(context, params.output), known.runs, context.now).length > 0)
        return false;
      return Date.parse(context.now) - Date.parse(quiet.lastCallAt) < recheck * 1000;
    },
    goalComplete: (_, params: { output: AssessOutput }) => params.output.assessment.goalComplete,
    noActionNeeded: (_, params: { output: AssessOutput }) => !params.output.assessment.actionNeeded,
    toolsDisabled: ({ context }) => !context.settings.toolsEnabled,
    sleepScheduled: ({ context }) => context.outcome?.status === "sleeping",
    goalMet: ({ context }) =>
      context.outcome?.status === "completed" && context.outcome.reason === "goal-met",
    maxTicksDone: ({ context }) => context.outcome?.status === "completed",
    mustFail: ({ context }) => context.outcome?.status === "failed",
    stopRequested: ({ context }) => context.outcome?.status === "shutdown",
    /** The tool loop waits for approval (or waited, when a stop ended the last run there). */
    parked: ({ context }) => (context.parked ?? null) !== null,
  },
  actions: {
    /**
     * Stores a clock reading in `context.now` (ISO time). Injected: the
     * runtime reads its clock, tests a fake one. Every transition that needs
     * the time runs it first; nothing else in the machine knows the time.
     */
    readClock: actionNotProvided("readClock"),
    /**
     * Sets `nextTickAt` (and records skipped ticks in `skipped`) when the
     * outcome is `sleeping`: from `nextTickAt` if one is already due (start,
     * resume, a wake-up outside the window), else from the schedule after the
     * tick that ended at `now`. Injected: it is `planNextTick` of
     * src/services/schedule.ts (cron needs croner).
     */
    scheduleNextTick: actionNotProvided("scheduleNextTick"),
    beginTick: assign(({ context }, params: { wakeReason: WakeReason }) => ({
      current: newTick(context, params.wakeReason),
      nextTickAt: null,
      outcome: null,
      wake: null,
      skipped: [],
    })),
    /** Starts the run by persisting it: the first tick is due now (or at the saved `nextTickAt`). */
    beginRun: assign(({ context }) => ({
      outcome: { status: "sleeping" as const, reason: null },
      wake: startReason(context),
      nextTickAt: context.nextTickAt ?? context.now,
      current: null,
      seq: context.seq + 1,
    })),
    /** The sleep ended outside the active hours: the tick it waited for is due now, and the planner defers it. */
    deferTick: assign(({ context }, params: { at: string }) => ({
      outcome: { status: "sleeping" as const, reason: null },
      nextTickAt: params.at,
      current: null,
      seq: context.seq + 1,
    })),
    /** Keeps what `observe` saw (null: it failed) and the checklist tasks due now. */
    recordObservation: assign(({ context }, params: { output: ObserveOutput | null }) => {
      const known = context.checklist ?? NO_CHECKLIST;
      const tasks = tasksAfter(context, params.output);
      return {
        checklist: { ...known, tasks },
        current: withCurrent(context, {
          observed: params.output,
          due: dueTasks(tasks, known.runs, context.now),
        }),
      };
    }),
    markQuiet: assign(({ context }) => ({ current: withCurrent(context, { quiet: "unchanged" }) })),
    recordAssessment: assign(({ context }, params: { output: AssessOutput }) => ({
      ...charge(context, "assess", [params.output.usage], { assessment: params.output.assessment }),
      lastAssessment: params.output.assessment,
      progress: clip(params.output.assessment.progressSummary, PROGRESS_LIMIT),
    })),
    recordPlan: assign(({ context }, params: { output: PlanOutput }) => ({
      ...charge(context, "plan", [params.output.usage], { plan: params.output.plan }),
      lastPlan: params.output.plan,
    })),
    takePlanAsResult: assign(({ context }) => ({
      current: withCurrent(context, {
        result: (context.current?.plan?.steps ?? []).map((s, i) => `${i + 1}. ${s}`).join("\n"),
      }),
    })),
    recordExecution: assign(({ context }, params: { output: ToolLoopOutput }) => {
      const errors = context.current?.errors ?? [];
      const error = params.output.error;
      return charge(context, "execute", params.output.callUsages, {
        result: params.output.result,
        toolCalls: params.output.toolCalls,
        errors: error ? [...errors, { phase: "execute" as const, ...error }] : errors,
      });
    }),
    /** Records the failure of the phase whose actor rejected (the event is its `xstate.error.actor`). */
    recordPhaseError: assign(({ context, event }, params: { phase: PhaseError["phase"] }) => {
      // An answered but unusable call is charged like any other.
      const { usage, ...error } = phaseError(params.phase, (event as { error?: unknown }).error);
      return charge(context, params.phase, usage ? [usage] : [], {
        errors: [...(context.current?.errors ?? []), error],
      });
    }),
    concludeTick: assign(({ context }) => ({ ...concludeTick(context), parked: null })),
    /** The tool loop reported it waits for approval: its context, kept for a stop. */
    recordParked: assign(({ event }) => ({
      parked: event.type === "toolLoop.parked" ? event.loop : null,
    })),
    clearParked: assign({ parked: null }),
    /**
     * A stop while tool calls await approval: the run ends `shutdown`, but the
     * tick is not interrupted: it keeps `current` and the parked loop, and the
     * next run waits for the same calls (decisions given meanwhile apply then).
     */
    parkForStop: assign(({ context }) => ({
      outcome: { status: "shutdown" as const, reason: "awaiting-approval" },
      seq: context.seq + 1,
    })),
    clearCurrent: assign({ current: null, skipped: [] }),
    concludeRun: assign(({ context }) => concludeRun(context)),
    requestStop: assign(({ context }) => ({
      // Only an unfinished tick is cut short; a finished one was already journaled.
      current:
        context.current && context.current.number > context.tick
          ? { ...context.current, interrupted: true }
          : null,
      outcome: { status: "shutdown" as const, reason: "signal" },
      seq: context.seq + 1,
      parked: null,
    })),
    /** The sleep itself failed: end `failed` rather than tick at a time nobody planned (maybe outside the window). */
    recordSleepError: assign(({ context, event }) => {
      const error = asErrorInfo((event as { error?: unknown }).error);
      return {
        outcome: { status: "failed" as const, reason: error.code },
        error: { ...error, fatal: true },
        seq: context.seq + 1,
      };
    }),
    recordPersistError: assign(({ event }) => {
      const error = asErrorInfo((event as { error?: unknown }).error);
      return {
        outcome: { status: "failed" as const, reason: error.code },
        error: { ...error, fatal: true },
        nextTickAt: null,
        // Failed: nothing waits any more.
        parked: null,
      };
    }),
  },
}).createMachine({
  id: "heartbeat",
  context: ({ input }) => ({
    id: input.id,
    goal: input.goal,
    createdAt: input.createdAt,
    settings: input.settings,
    tick: input.resume?.tick ?? 0,
    progress: input.resume?.progress ?? "",
    lastAssessment: input.resume?.lastAssessment ?? null,
    lastPlan: input.resume?.lastPlan ?? null,
    lastResult: input.resume?.lastResult ?? null,
    completed: input.resume?.completed ?? false,
    nextTickAt: input.resume?.nextTickAt ?? null,
    usage: input.resume?.usage ?? ZERO_USAGE,
    consecutiveFailures: input.resume?.consecutiveFailures ?? 0,
    digests: input.resume?.digests ?? [],
    current: input.resume?.current ?? null,
    outcome: null,
    error: null,
    seq: input.resume?.seq ?? 0,
    resumed: input.resume !== undefined,
    skipped: [],
    now: input.createdAt,
    wake: null,
    quiet: input.resume?.quiet ?? null,
    lastTickAt: input.resume?.lastTickAt ?? null,
    checklist: input.resume?.checklist ?? NO_CHECKLIST,
    day: input.resume?.day ?? null,
    parked: input.resume?.parked ?? null,
  }),
  initial: "idle",
  on: {
    "heartbeat.stop": { target: ".persisting", actions: "requestStop" },
  },
  states: {
    idle: {
      on: {
        // The run's first step is a write: the heartbeat is on disk before any model call or wait.
        "heartbeat.start": [
          {
            guard: "maxTicksReached",
            target: "persisting",
            actions: ["readClock", "concludeRun"],
          },
          // Stopped while tool calls awaited approval: straight back to waiting for them.
          { guard: "parked", target: "executing", actions: "readClock" },
          { target: "persisting", actions: ["readClock", "beginRun"] },
        ],
      },
    },
    // Every tick begins here: the workspace fingerprint and the checklist decide whether it needs the model.
    observing: {
      invoke: {
        id: "observe",
        src: "observe",
        input: ({ context }) => ({ fingerprint: (context.settings.idleRecheckSec ?? 0) > 0 }),
        onDone: [
          {
            guard: {
              type: "unchangedSinceIdle",
              params: ({ event }) => ({ output: event.output }),
            },
            target: "persisting",
            actions: [
              { type: "recordObservation", params: ({ event }) => ({ output: event.output }) },
              "markQuiet",
              "readClock",
              "concludeTick",
            ],
          },
          {
            target: "assessing",
            actions: {
              type: "recordObservation",
              params: ({ event }) => ({ output: event.output }),
            },
          },
        ],
        // Nothing seen (no fingerprint, no checklist): the tick asks the model.
        onError: {
          target: "assessing",
          actions: { type: "recordObservation", params: { output: null } },
        },
      },
    },
    assessing: {
      invoke: {
        id: "assess",
        src: "assess",
        input: ({ context }) => {
          const checklist = context.current?.observed?.checklist;
          return {
            budget: budgetOf(context),
            goal: context.goal,
            tick: context.tick + 1,
            progress: context.progress,
            digests: context.digests,
            wakeReason: context.current?.wakeReason ?? "start",
            checklist: checklist
              ? {
                  path: checklist.path,
                  text: checklist.text,
                  truncated: checklist.truncated,
                  bytes: checklist.bytes,
                }
              : null,
            dueTasks: context.current?.due ?? [],
          };
        },
        onDone: [
          {
            guard: { type: "goalComplete", params: ({ event }) => ({ output: event.output }) },
            target: "persisting",
            actions: [
              { type: "recordAssessment", params: ({ event }) => ({ output: event.output }) },
              "readClock",
              "concludeTick",
            ],
          },
          {
            guard: { type: "noActionNeeded", params: ({ event }) => ({ output: event.output }) },
            target: "persisting",
            actions: [
              { type: "recordAssessment", params: ({ event }) => ({ output: event.output }) },
              "readClock",
              "concludeTick",
            ],
          },
          {
            target: "planning",
            actions: {
              type: "recordAssessment",
              params: ({ event }) => ({ output: event.output }),
            },
          },
        ],
        onError: {
          target: "persisting",
          actions: [
            { type: "recordPhaseError", params: { phase: "assess" } },
            "readClock",
            "concludeTick",
          ],
        },
      },
    },
    planning: {
      invoke: {
        id: "plan",
        src: "plan",
        input: ({ context }) => ({
          budget: budgetOf(context),
          goal: context.goal,
          tick: context.tick + 1,
          progress: context.progress,
          // biome-ignore lint/style/noNonNullAssertion: planning is entered only after an assessment
          assessment: context.current!.assessment!,
        }),
        onDone: [
          {
            guard: "toolsDisabled",
            target: "persisting",
            actions: [
              { type: "recordPlan", params: ({ event }) => ({ output: event.output }) },
              "takePlanAsResult",
              "readClock",
              "concludeTick",
            ],
          },
          {
            target: "executing",
            actions: { type: "recordPlan", params: ({ event }) => ({ output: event.output }) },
          },
        ],
        onError: {
          target: "persisting",
          actions: [
            { type: "recordPhaseError", params: { phase: "plan" } },
            "readClock",
            "concludeTick",
          ],
        },
      },
    },
    executing: {
      on: {
        "toolLoop.parked": { actions: "recordParked" },
        "toolLoop.unparked": { actions: "clearParked" },
        // Otherwise the stop of any state (below) applies: the tick is interrupted.
        "heartbeat.stop": { guard: "parked", target: "persisting", actions: "parkForStop" },
      },
      invoke: {
        id: "execute",
        src: "execute",
        input: ({ context }) => ({
          goal: context.goal,
          tick: context.tick + 1,
          progress: context.progress,
          plan: context.current?.plan ?? { steps: [] },
          maxIterations: context.settings.maxIterationsPerTick,
          tokenBudget: tickTokenBudget(context),
          attempt: context.current?.startedAt ?? "",
          budget: budgetOf(context),
          parked: context.parked ?? null,
        }),
        onDone: {
          target: "persisting",
          actions: [
            { type: "recordExecution", params: ({ event }) => ({ output: event.output }) },
            "readClock",
            "concludeTick",
          ],
        },
        onError: {
          target: "persisting",
          actions: [
            { type: "recordPhaseError", params: { phase: "execute" } },
            "readClock",
            "concludeTick",
          ],
        },
      },
    },
    persisting: {
      entry: "scheduleNextTick",
      on: {
        // A heartbeat that is about to end anyway keeps its outcome.
        "heartbeat.stop": [
          { guard: "sleepScheduled", target: "persisting", reenter: true, actions: "requestStop" },
          {},
        ],
      },
      invoke: {
        id: "persist",
        src: "persist",
        input: ({ context }) => ({
          seq: context.seq,
          status: context.outcome?.status ?? "sleeping",
          reason: context.outcome?.reason ?? null,
        }),
        onDone: [
          { guard: "stopRequested", target: "shutdown" },
          { guard: "mustFail", target: "failed" },
          { guard: "goalMet", target: "completed" },
          { guard: "maxTicksDone", target: "completed" },
          {
            guard: "tickDue",
            target: "observing",
            actions: [
              "readClock",
              {
                type: "beginTick",
                params: ({ context }) => ({ wakeReason: wakeReasonOf(context, false) }),
              },
            ],
          },
          { target: "sleeping", actions: "clearCurrent" },
        ],
        onError: { target: "failed", actions: "recordPersistError" },
      },
    },
    sleeping: {
      on: {
        "heartbeat.wake": [
          {
            guard: "maxTicksReached",
            target: "persisting",
            actions: ["readClock", "concludeRun"],
          },
          {
            target: "observing",
            actions: ["readClock", { type: "beginTick", params: { wakeReason: "wake" } }],
          },
        ],
      },
      invoke: {
        id: "sleepUntil",
        src: "sleepUntil",
        // Sleeping is entered only with a planned `nextTickAt`.
        input: ({ context }) => ({ until: context.nextTickAt ?? context.now }),
        onDone: [
          {
            guard: "maxTicksReached",
            target: "persisting",
            actions: ["readClock", "concludeRun"],
          },
          {
            guard: {
              type: "outsideActiveHours",
              params: ({ event }) => ({ at: event.output.at }),
            },
            target: "persisting",
            actions: [
              "readClock",
              { type: "deferTick", params: ({ event }) => ({ at: event.output.at }) },
            ],
          },
          {
            target: "observing",
            actions: [
              "readClock",
              {
                type: "beginTick",
                params: ({ context, event }) => ({
                  wakeReason: wakeReasonOf(context, event.output.late),
                }),
              },
            ],
          },
        ],
        onError: { target: "persisting", actions: ["readClock", "recordSleepError"] },
      },
    },
    completed: { type: "final" },
    failed: { type: "final" },
    shutdown: { type: "final" },
  },
  output: ({ context }) => ({
    status: context.outcome?.status ?? "shutdown",
    reason: context.outcome?.reason ?? null,
    tick: context.tick,
    completed: context.completed,
    usage: context.usage,
    progress: context.progress,
    error: context.error,
  }),
});
