/**
 * Wires the pure statechart to the real world: provides the real actors
 * (model, tools, store, clock), creates or restores the heartbeat actor from
 * its state file, and exposes stop/wake for signals.
 */
import {
  type Actor,
  type ActorSystem,
  type AnyActorRef,
  assign,
  createActor,
  fromPromise,
  type InspectionEvent,
  type Observer,
  type SnapshotFrom,
  toPromise,
} from "xstate";
import { BudgetError, StateFileError, toErrorInfo, UsageError } from "./errors.js";
import { heartbeatMachine } from "./machines/heartbeat.machine.js";
import type {
  AssessInput,
  AssessOutput,
  HeartbeatContext,
  HeartbeatEvent,
  HeartbeatInput,
  HeartbeatOutput,
  HeartbeatSettings,
  LifetimeBudget,
  ObserveInput,
  ObserveOutput,
  PersistInput,
  PlanInput,
  PlanOutput,
  Prices,
  ResumeRecord,
  SleepInput,
  SleepOutput,
  TokenUsage,
} from "./machines/heartbeat.types.js";
import { dailyCapReached, dayOf, startOfNextDay, usageCost } from "./machines/idle.js";
import { toolLoopMachine } from "./machines/toolLoop.machine.js";
import type {
  AwaitApprovalInput,
  AwaitApprovalOutput,
  CallModelInput,
  CallModelOutput,
  PendingApproval,
  RunToolsInput,
  RunToolsOutput,
  ScreenCallsInput,
  ScreenCallsOutput,
} from "./machines/toolLoop.types.js";
import type { RuntimeEvents } from "./runtime.types.js";
import {
  type SavedSettings,
  STATE_SCHEMA_VERSION,
  type StateFile,
  savedSettingsOfContext,
} from "./schemas/stateFile.js";
import type { DecisionSource } from "./services/approvals.js";
import { waitForDecisions } from "./services/approvalWait.js";
import type { LlmService } from "./services/llm.js";
import { SYSTEM_PROMPT } from "./services/prompts.js";
import { planNextTick } from "./services/schedule.js";
import type { HeartbeatStore, JournalEntry } from "./services/store/index.js";
import type { AskOperator, Toolbox } from "./services/tools/index.js";
import { createToolRound } from "./toolRound.js";

export type { RuntimeEvents } from "./runtime.types.js";
/** The pure heartbeat machine (commands and services reach it here, never in its file). */
export { heartbeatMachine };

/** The real services the actors use. */
export interface RuntimeDeps {
  llm: Pick<LlmService, "assess" | "plan" | "callWithTools">;
  store: HeartbeatStore;
  /** Null when tools are disabled. */
  toolbox: Toolbox | null;
  events?: RuntimeEvents;
  /** Milliseconds since the epoch; injectable for tests. */
  now?: () => number;
  /** US dollars per million input and output tokens, for the cost figure. */
  prices?: Prices;
  /** How `ask` matches are decided; default: no timeout, fallback deny, no terminal. */
  approvals?: ApprovalOptions;
  /**
   * Where the approvals wait reads the operator's decisions; default the
   * decision files beside the store's state files (a worker passes the database's).
   */
  decisions?: DecisionSource;
  /**
   * What a tick sees when it begins (the `observe` actor): the workspace
   * fingerprint (when asked) and the checklist. Default: nothing (every tick
   * asks the model, no checklist).
   */
  observe?: (input: ObserveInput, signal: AbortSignal) => Promise<ObserveOutput>;
  /** Inspection observer (`run --inspect`, `--inspect-log`); it sees the heartbeat and its children. */
  inspect?: Observer<InspectionEvent>;
  /**
   * The heartbeat-scoped run settings of this run, saved in the state file's
   * `settings` (never the API key). Default: what the context's settings imply.
   */
  savedSettings?: SavedSettings;
}

/** How calls an `ask` rule matches are decided. */
export interface ApprovalOptions {
  /** `--ask-timeout` in seconds; null: wait for ever. */
  timeoutSec: number | null;
  /** `--ask-fallback`: what a call that waited too long gets. */
  fallback: "deny" | "allow";
  /** The terminal prompt, when there is a terminal; it races the decision files. */
  ask?: AskOperator | undefined;
  /** How often the decision files are read while waiting (ms); default 250. */
  pollMs?: number;
}

export type { Prices } from "./machines/heartbeat.types.js";

// biome-ignore lint/suspicious/noExplicitAny: XState's own AnyActorSystem, which it does not export.
type AnyActorSystem = ActorSystem<any>;

/**
 * Cost in US dollars of the given usage, or undefined without prices; cached
 * prompt tokens at `--price-cached-input` when set.
 */
export function costOf(usage: TokenUsage, prices: Prices | undefined): number | undefined {
  return usageCost(usage, prices);
}

/** A rough token count of a prompt built from `input` (4 characters a token, plus the system prompt). */
export function estimatePromptTokens(input: unknown): number {
  return Math.ceil((SYSTEM_PROMPT.length + JSON.stringify(input).length) / 4);
}

/** What `run` asks for. */
export interface RunRequest {
  id: string;
  /** Required for a new heartbeat; must match for an existing one. */
  goal: string | undefined;
  settings: HeartbeatSettings;
}

/** A started heartbeat. */
export interface RunningHeartbeat {
  actor: Actor<typeof heartbeatMachine>;
  /** Resolves with the machine's output when it reaches a final state. */
  done: Promise<HeartbeatOutput>;
  /** True when this run resumed an existing heartbeat. */
  resumed: boolean;
  /** The state file this run started from, if any. */
  previous: StateFile | null;
  stop(): void;
  wake(): void;
}

const clipText = (text: string, max: number) =>
  text.length <= max ? text : `${text.slice(0, max)}… (${text.length - max} more characters)`;

/**
 * Sleeps until an absolute time, checking the wall clock at least every minute
 * (suspend, clock changes). Resolves with when it woke; an abort resolves too
 * (the machine has left `sleeping` by then).
 */
export function sleepUntil(
  until: string,
  signal: AbortSignal,
  now: () => number = Date.now,
): Promise<SleepOutput> {
  const deadline = Date.parse(until);
  const late = now() - deadline > 1_000;
  return new Promise((resolve) => {
    let timer: NodeJS.Timeout | undefined;
    const check = () => {
      const t = now();
      const left = deadline - t;
      if (left <= 0) {
        signal.removeEventListener("abort", onAbort);
        resolve({ late: late || -left > 5_000, at: new Date(t).toISOString() });
        return;
      }
      timer = setTimeout(check, Math.min(left, 60_000));
    };
    const onAbort = () => {
      clearTimeout(timer);
      resolve({ late, at: new Date(now()).toISOString() });
    };
    signal.addEventListener("abort", onAbort, { once: true });
    check();
  });
}

/**
 * The heartbeat's time, injected with `provide()`: `readClock` stores a
 * reading of `now` in the context, `scheduleNextTick` runs the planner of
 * src/services/schedule.ts on it. Production and the machine tests use these
 * same implementations (tests with a fake `now`).
 */
export function timeImplementations(now: () => number = Date.now) {
  return clockActions(() => now());
}

/** {@link timeImplementations} over a clock found through the actor's system (the runtime's one machine). */
function clockActions(read: (system: AnyActorSystem) => number) {
  return {
    readClock: assign<HeartbeatContext, HeartbeatEvent, unknown, HeartbeatEvent, never>({
      now: ({ system }) => new Date(read(system)).toISOString(),
    }),
    scheduleNextTick: assign<HeartbeatContext, HeartbeatEvent, unknown, HeartbeatEvent, never>(
      ({ context }) => {
        if (context.outcome?.status !== "sleeping") return {};
        // A daily cap reached: the next tick is due when the next day starts (in the heartbeat's zone).
        const due =
          context.outcome.reason === "daily-budget"
            ? startOfNextDay(Date.parse(context.now), context.settings.timezone)
            : context.nextTickAt;
        const plan = planNextTick({
          settings: context.settings,
          consecutiveFailures: context.consecutiveFailures,
          due,
          lastTickEndedAt: context.lastTickAt ?? context.digests.at(-1)?.at ?? null,
          now: context.now,
        });
        return {
          nextTickAt: plan.nextTickAt,
          skipped: [...(context.skipped ?? []), ...plan.skipped],
        };
      },
    ),
  };
}

/** Builds the state file for a persisted snapshot. */
export function stateFileOf(
  snapshot: { context: HeartbeatContext } & Record<string, unknown>,
  input: Omit<PersistInput, "status"> & { status: StateFile["status"] },
  updatedAt: string,
  prices?: Prices,
  savedSettings?: SavedSettings,
): StateFile {
  const ctx = snapshot.context;
  return {
    schemaVersion: STATE_SCHEMA_VERSION,
    id: ctx.id,
    goal: ctx.goal,
    status: input.status,
    tick: ctx.tick,
    completed: ctx.completed,
    progress: ctx.progress,
    lastAssessment: ctx.lastAssessment,
    lastPlan: ctx.lastPlan,
    lastResult: ctx.lastResult,
    createdAt: ctx.createdAt,
    updatedAt,
    nextTickAt: input.status === "sleeping" || input.status === "shutdown" ? ctx.nextTickAt : null,
    usage: withCost(ctx.usage, prices),
    reason: input.reason,
    error: ctx.error,
    seq: input.seq,
    settings: savedSettings ?? savedSettingsOfContext(ctx.settings),
    snapshot: snapshot as unknown as StateFile["snapshot"],
  };
}

function withCost(usage: TokenUsage, prices: Prices | undefined) {
  const costUsd = costOf(usage, prices);
  return costUsd === undefined ? usage : { ...usage, costUsd };
}

/** Usage for the journal: with its cost, and the cached tokens' share of the prompt tokens. */
function journalUsage(usage: TokenUsage, prices: Prices | undefined) {
  const cachedShare =
    usage.cachedTokens && usage.promptTokens > 0
      ? Math.round((usage.cachedTokens / usage.promptTokens) * 1000) / 1000
      : undefined;
  return { ...withCost(usage, prices), ...(cachedShare !== undefined ? { cachedShare } : {}) };
}

/** The journal lines for one persist: the tick just finished (or cut short), skipped ticks, and the end of the run. */
export function journalEntriesOf(
  ctx: HeartbeatContext,
  input: PersistInput,
  at: string,
  prices?: Prices,
): JournalEntry[] {
  const entries: JournalEntry[] = [];
  const t = ctx.current;
  if (t && ctx.parked && input.status === "shutdown") {
    // Stopped while tool calls await approval: the tick is not over, it waits on.
    entries.push({
      type: "suspend",
      seq: input.seq,
      at,
      tick: ctx.tick,
      reason: "signal",
      pending: (ctx.parked.pending ?? []).map((p) => p.callId),
    });
  } else if (t) {
    // A tick whose assessment met the goal did its work: it is not idle.
    const idle = t.assessment !== null && !t.assessment.actionNeeded && !t.assessment.goalComplete;
    entries.push({
      type: "tick",
      seq: input.seq,
      tick: t.number,
      status: t.interrupted
        ? "interrupted"
        : t.quiet
          ? "quiet"
          : t.errors.length > 0
            ? "failed"
            : idle
              ? "idle"
              : "ok",
      calls: t.usage.calls,
      ...(t.quiet ? { reason: t.quiet } : {}),
      ...(t.due?.length ? { checklistDue: t.due.map((task) => task.task) } : {}),
      wakeReason: t.wakeReason,
      startedAt: t.startedAt,
      finishedAt: at,
      durationMs: Math.max(0, Date.parse(at) - Date.parse(t.startedAt)),
      goalComplete: t.assessment?.goalComplete ?? false,
      assessment: t.assessment?.assessment ?? null,
      ...(t.assessment?.attention ? { attention: t.assessment.attention } : {}),
      plan: t.plan?.steps ?? null,
      result: t.result,
      errors: t.errors,
      usage: journalUsage(t.usage, prices),
      totalUsage: journalUsage(ctx.usage, prices),
      modelCalls: t.modelCalls,
      toolCalls: t.toolCalls.map((c) => ({ callId: c.callId, name: c.name, status: c.status })),
      next: input.status,
      nextTickAt: input.status === "sleeping" ? ctx.nextTickAt : null,
    });
  }
  for (const skip of ctx.skipped ?? []) entries.push({ type: "skip", seq: input.seq, ...skip });
  if (input.status === "sleeping" && input.reason === "daily-budget" && ctx.current) {
    const day = ctx.day;
    entries.push({
      type: "daily-budget",
      seq: input.seq,
      at,
      day: day?.date ?? dayOf(Date.parse(at), ctx.settings.timezone),
      cap: dailyCapReached(ctx.settings, day ?? null, ctx.now),
      usage: journalUsage(
        day?.usage ?? { calls: 0, promptTokens: 0, completionTokens: 0, totalTokens: 0 },
        prices,
      ),
      maxTokensPerDay: ctx.settings.maxTokensPerDay ?? 0,
      maxCostPerDay: ctx.settings.maxCostPerDay ?? 0,
      timezone: ctx.settings.timezone ?? Intl.DateTimeFormat().resolvedOptions().timeZone,
      nextTickAt: ctx.nextTickAt,
    });
  }
  if (input.status !== "sleeping") {
    entries.push({
      type: "end",
      seq: input.seq,
      at,
      status: input.status,
      reason: input.reason,
      tick: ctx.tick,
    });
  }
  return entries;
}

/** Options of {@link bindRuntime}. */
export interface ProvideOptions {
  /**
   * Set when the actor was restored from a checkpoint taken in `executing`:
   * the first tool round reads the journal and replays the calls it finished.
   */
  restoredAttempt?: string | undefined;
}

/** The heartbeat actor's id in its actor system, where `persist` and the checkpoint find it. */
export const HEARTBEAT_SYSTEM_ID = "heartbeat";

type PersistedHeartbeat = { context: HeartbeatContext } & Record<string, unknown>;

/**
 * The heartbeat's persisted snapshot, as it is now. The state file is this
 * snapshot (it holds the `persist` child's own state, so a restore repeats the
 * write), so it cannot travel in the writer's input: the input is evaluated
 * during the transition, before the snapshot that contains the child exists.
 * The writer reads it from the actor system, where the heartbeat is
 * registered under {@link HEARTBEAT_SYSTEM_ID}, once the transition settled.
 */
function persistedSnapshotOf(system: AnyActorSystem): PersistedHeartbeat {
  const heartbeat = system.get(HEARTBEAT_SYSTEM_ID) as Actor<typeof heartbeatMachine> | undefined;
  if (!heartbeat) throw new Error(`No actor "${HEARTBEAT_SYSTEM_ID}" in the system to persist`);
  return heartbeat.getPersistedSnapshot() as unknown as PersistedHeartbeat;
}

/** What the actors of one heartbeat do, with its services (see {@link runtimeMachine}). */
interface HeartbeatWork {
  now: () => number;
  assess(input: AssessInput, signal: AbortSignal): Promise<AssessOutput>;
  plan(input: PlanInput, signal: AbortSignal): Promise<PlanOutput>;
  observe(input: ObserveInput, signal: AbortSignal): Promise<ObserveOutput>;
  persist(input: PersistInput, signal: AbortSignal, system: AnyActorSystem): Promise<void>;
  callModel(input: CallModelInput, signal: AbortSignal): Promise<CallModelOutput>;
  screenCalls(input: ScreenCallsInput): Promise<ScreenCallsOutput>;
  awaitApproval(
    input: AwaitApprovalInput,
    signal: AbortSignal,
    system: AnyActorSystem,
  ): Promise<AwaitApprovalOutput>;
  runTools(
    input: RunToolsInput,
    signal: AbortSignal,
    system: AnyActorSystem,
  ): Promise<RunToolsOutput>;
}

/** The work bound to each heartbeat's actor system (its children share the system). */
const workBySystem = new WeakMap<AnyActorSystem, HeartbeatWork>();

function workOf(system: AnyActorSystem): HeartbeatWork {
  const work = workBySystem.get(system);
  if (!work) throw new Error("No heartbeat services are bound to this actor system (bindRuntime)");
  return work;
}

/**
 * Binds a heartbeat's services to its actor (before it starts): the actors of
 * {@link runtimeMachine} find them through the actor's system.
 */
export function bindRuntime(
  actor: { system: AnyActorSystem },
  deps: RuntimeDeps,
  options: ProvideOptions = {},
): void {
  workBySystem.set(actor.system, heartbeatWork(deps, options));
}

function heartbeatWork(deps: RuntimeDeps, options: ProvideOptions): HeartbeatWork {
  const now = deps.now ?? Date.now;

  /**
   * Refuses a model call that the lifetime token budget cannot pay for
   * (estimated); the budget comes in the actor's input.
   */
  const checkBudget = (
    { budget, ...input }: { budget?: LifetimeBudget | null | undefined },
    spentInLoop = 0,
  ) => {
    if (!budget || budget.maxTokens <= 0) return;
    const used = budget.usedTokens + spentInLoop;
    const estimate = estimatePromptTokens(input);
    if (used + estimate > budget.maxTokens) {
      throw new BudgetError(used, estimate, budget.maxTokens);
    }
  };

  /**
   * Saves the heartbeat as it is now, mid-tick, so a crash resumes here
   * (status `executing`); not once `signal` says the machine left the state.
   */
  const checkpoint = async (system: AnyActorSystem, signal?: AbortSignal) => {
    await Promise.resolve();
    if (signal?.aborted) return;
    const snapshot = persistedSnapshotOf(system);
    const file = stateFileOf(
      snapshot,
      { seq: snapshot.context.seq, status: "executing", reason: null },
      new Date(now()).toISOString(),
      deps.prices,
      deps.savedSettings,
    );
    await deps.store.save(file);
  };

  const toolbox = deps.toolbox;
  const toolRound = toolbox
    ? createToolRound({
        store: deps.store,
        toolbox,
        restoredAttempt: options.restoredAttempt,
        onTool: (record, tick) => deps.events?.tool?.(record, tick),
      })
    : null;

  const approvalOptions: ApprovalOptions = deps.approvals ?? { timeoutSec: null, fallback: "deny" };

  const screenCalls = async (input: ScreenCallsInput): Promise<ScreenCallsOutput> => {
    if (!toolbox) return { pending: [] };
    const since = new Date(now()).toISOString();
    const pending: PendingApproval[] = [];
    for (const call of input.calls) {
      const match = await toolbox.screen(call);
      if (match) {
        pending.push({
          callId: call.id,
          tool: call.name,
          arguments: call.arguments,
          rule: match.rule,
          what: match.what,
          since,
        });
      }
    }
    return { pending };
  };

  const awaitApproval = async (
    input: AwaitApprovalInput,
    signal: AbortSignal,
    system: AnyActorSystem,
  ): Promise<AwaitApprovalOutput> => {
    // The state file says `executing` with the loop in `awaitingApproval` at
    // once: a crash or a reboot from here on restores the same calls (a stop
    // is the machine's `parkForStop`, which has left the state by now).
    await checkpoint(system, signal);
    const { id, goal } = persistedSnapshotOf(system).context;
    return waitForDecisions({
      input,
      id,
      goal,
      signal,
      store: deps.store,
      decisions: deps.decisions,
      now,
      options: approvalOptions,
      events: deps.events,
    });
  };

  return {
    now,
    screenCalls,
    awaitApproval,
    callModel: (input, signal) => {
      checkBudget(input, input.spentTokens);
      return deps.llm.callWithTools(input, toolbox?.definitions ?? [], signal);
    },
    runTools: async (input, signal, system) => {
      // With tools disabled the machine never enters `executing`.
      if (!toolRound) throw new Error("runTools ran although tools are disabled");
      return toolRound.run(input, signal, () => checkpoint(system));
    },
    assess: (input, signal) => {
      checkBudget(input);
      return deps.llm.assess(input, signal);
    },
    plan: (input, signal) => {
      checkBudget(input);
      return deps.llm.plan(input, signal);
    },
    persist: async (input, _signal, system) => {
      // Let the transition into `persisting` settle so the snapshot includes it.
      await Promise.resolve();
      const snapshot = persistedSnapshotOf(system);
      const at = new Date(now()).toISOString();
      const file = stateFileOf(snapshot, input, at, deps.prices, deps.savedSettings);
      const entries = journalEntriesOf(snapshot.context, input, at, deps.prices);
      await deps.store.commit(file, entries);
      deps.events?.persisted?.(file, entries);
      // Every tick ends here: tools let go of what they hold for a tick (the browser).
      await toolbox?.endTick();
    },
    observe: (input, signal) =>
      deps.observe
        ? deps.observe(input, signal)
        : Promise.resolve({ fingerprint: null, checklist: null }),
  };
}

/**
 * A promise actor doing `work` of the heartbeat whose system it runs in; it
 * rejects with plain data the machine can store, never class instances.
 */
function heartbeatActor<I, O>(
  work: (w: HeartbeatWork, input: I, signal: AbortSignal, system: AnyActorSystem) => Promise<O>,
) {
  return fromPromise<O, I>(async ({ input, signal, system }) => {
    try {
      return await work(workOf(system), input, signal, system);
    } catch (error) {
      throw toErrorInfo(error);
    }
  });
}

function provideRuntime() {
  const execute = toolLoopMachine.provide({
    actors: {
      screenCalls: heartbeatActor<ScreenCallsInput, ScreenCallsOutput>((w, input) =>
        w.screenCalls(input),
      ),
      awaitApproval: heartbeatActor<AwaitApprovalInput, AwaitApprovalOutput>(
        (w, input, signal, system) => w.awaitApproval(input, signal, system),
      ),
      callModel: heartbeatActor<CallModelInput, CallModelOutput>((w, input, signal) =>
        w.callModel(input, signal),
      ),
      runTools: heartbeatActor<RunToolsInput, RunToolsOutput>((w, input, signal, system) =>
        w.runTools(input, signal, system),
      ),
    },
  });
  return heartbeatMachine.provide({
    actors: {
      assess: heartbeatActor<AssessInput, AssessOutput>((w, input, signal) =>
        w.assess(input, signal),
      ),
      plan: heartbeatActor<PlanInput, PlanOutput>((w, input, signal) => w.plan(input, signal)),
      execute,
      persist: heartbeatActor<PersistInput, void>((w, input, signal, system) =>
        w.persist(input, signal, system),
      ),
      observe: heartbeatActor<ObserveInput, ObserveOutput>((w, input, signal) =>
        w.observe(input, signal),
      ),
      // Never rejects.
      sleepUntil: fromPromise<SleepOutput, SleepInput>(({ input, signal, system }) =>
        sleepUntil(input.until, signal, workOf(system).now),
      ),
    },
    actions: clockActions((system) => workOf(system).now()),
  });
}

let provided: ReturnType<typeof provideRuntime> | undefined;

/**
 * The heartbeat machine with the real actors provided: one per process, shared
 * by every heartbeat actor (a provided machine holds its own copy of both
 * statecharts' definitions, about 40 KB; one per heartbeat was 40 MB of live
 * heap with 1,000 actors). Each actor's services are bound to its system with
 * {@link bindRuntime} before it starts.
 */
export function runtimeMachine(): ReturnType<typeof provideRuntime> {
  provided ??= provideRuntime();
  return provided;
}

/**
 * When the next tick is due under this run's settings: the saved time, or
 * earlier if these settings plan it earlier after the last tick (a shorter
 * interval), as the planner plans it after a tick (so the same settings give
 * back exactly the saved time).
 */
export function rescheduledNextTick(
  ctx: Pick<HeartbeatContext, "nextTickAt" | "digests" | "consecutiveFailures" | "lastTickAt">,
  settings: HeartbeatSettings,
): string | null {
  if (!ctx.nextTickAt) return null;
  const lastTickAt = ctx.lastTickAt ?? ctx.digests.at(-1)?.at;
  if (!lastTickAt) return ctx.nextTickAt;
  const planned = planNextTick({
    settings,
    consecutiveFailures: ctx.consecutiveFailures,
    due: null,
    lastTickEndedAt: lastTickAt,
    now: lastTickAt,
  }).nextTickAt;
  return Date.parse(planned) < Date.parse(ctx.nextTickAt) ? planned : ctx.nextTickAt;
}

/**
 * True when this run schedules ticks differently from the saved settings
 * (interval, backoff, cron, active hours, time zone). Only then is the saved
 * `nextTickAt` planned again; otherwise it is kept as it is.
 */
function scheduleChanged(saved: Partial<HeartbeatSettings>, settings: HeartbeatSettings): boolean {
  return (
    saved.tickIntervalSec !== settings.tickIntervalSec ||
    (saved.failureBackoffSec ?? settings.failureBackoffSec) !== settings.failureBackoffSec ||
    (saved.cron ?? null) !== settings.cron ||
    (saved.activeHours ?? null) !== settings.activeHours ||
    (saved.timezone ?? null) !== settings.timezone
  );
}

/** The saved `nextTickAt`, or replanned when this run's schedule differs from the saved one. */
function resumedNextTick(
  ctx: Pick<HeartbeatContext, "nextTickAt" | "digests" | "consecutiveFailures" | "lastTickAt"> & {
    settings: Partial<HeartbeatSettings>;
  },
  settings: HeartbeatSettings,
): string | null {
  return scheduleChanged(ctx.settings, settings)
    ? rescheduledNextTick(ctx, settings)
    : ctx.nextTickAt;
}

function resumeRecordOf(file: StateFile, settings: HeartbeatSettings): ResumeRecord {
  const ctx = file.snapshot.context;
  return {
    tick: ctx.tick,
    progress: ctx.progress,
    lastAssessment: ctx.lastAssessment,
    lastPlan: ctx.lastPlan,
    lastResult: ctx.lastResult,
    completed: ctx.completed,
    nextTickAt: file.status === "failed" ? null : resumedNextTick(ctx, settings),
    usage: ctx.usage,
    // A heartbeat resumed after it failed gets a fresh failure budget.
    consecutiveFailures: file.status === "failed" ? 0 : ctx.consecutiveFailures,
    digests: ctx.digests,
    seq: Math.max(ctx.seq, file.seq),
    quiet: (ctx.quiet as ResumeRecord["quiet"]) ?? null,
    lastTickAt: (ctx.lastTickAt as string | null | undefined) ?? null,
    ...(ctx.checklist ? { checklist: ctx.checklist as ResumeRecord["checklist"] } : {}),
    day: (ctx.day as ResumeRecord["day"]) ?? null,
    // Stopped while tool calls awaited approval: the tick goes on waiting for them.
    ...(file.status === "shutdown" && ctx.parked && ctx.current
      ? {
          current: ctx.current as unknown as ResumeRecord["current"],
          parked: ctx.parked as unknown as ResumeRecord["parked"],
        }
      : {}),
  };
}

/** Refuses a goal given on resume that is not the heartbeat's own (exit 2). */
function checkGoal(previous: StateFile, goal: string | undefined): void {
  const given = goal?.trim();
  if (!given || given === previous.goal) return;
  throw new UsageError(
    `Heartbeat "${previous.id}" already exists with a different goal: "${clipText(previous.goal, 200)}".`,
    {
      option: "--goal",
      code: "goal-mismatch",
      hint: "Resume it without --goal (or with the same goal), or start a new heartbeat with another --id (or none).",
    },
  );
}

/** What `run --id` does with the heartbeat it found (see {@link resumeVerdict}). */
export type ResumeVerdict =
  /** No state file: a new heartbeat. */
  | { kind: "new" }
  /** Stopped or killed before it ended: it goes on. */
  | { kind: "resume" }
  /** It ended (`completed` or `failed`) and was not asked to continue: nothing runs. */
  | { kind: "finished"; file: StateFile }
  /** It ended, and `--continue` lifts what ended it. */
  | { kind: "continue"; file: StateFile };

/** What the user asked for on this run, beyond the settings. */
export interface ResumeRequest {
  /** `--continue` was given. */
  continue: boolean;
  /** `--max-ticks` (or its environment variable) was given on this run. */
  maxTicksGiven: boolean;
  /** The goal given on this run, if any: it must be the heartbeat's own. */
  goal?: string | undefined;
}

/**
 * Decides what a run does with the state file it found. Finished means
 * finished: a `completed` or `failed` heartbeat runs again only with
 * `--continue`, and only when the limits let it tick (`--max-ticks` above its
 * tick or 0, a token budget not spent). A `--max-ticks` given at or below the
 * current tick is refused. Throws {@link UsageError} (exit 2).
 */
export function resumeVerdict(
  previous: StateFile | null,
  settings: Pick<HeartbeatSettings, "maxTicks" | "maxTokens">,
  request: ResumeRequest,
): ResumeVerdict {
  if (!previous) {
    if (request.continue) {
      throw new UsageError("--continue resumes a heartbeat that ended, but there is none yet.", {
        option: "--continue",
        code: "continue-nothing",
        hint: "Pass the --id of an existing heartbeat (see `ravenclaws status`), or drop --continue to start one.",
      });
    }
    return { kind: "new" };
  }
  checkGoal(previous, request.goal);
  const { id, tick } = previous;
  if (request.maxTicksGiven && settings.maxTicks > 0 && settings.maxTicks <= tick) {
    throw new UsageError(
      `--max-ticks ${settings.maxTicks} is not above heartbeat ${id}'s current tick (${tick}).`,
      {
        option: "--max-ticks",
        code: "max-ticks-reached",
        hint: `Give a --max-ticks above ${tick} (or 0 for no limit).`,
      },
    );
  }
  if (previous.status !== "completed" && previous.status !== "failed") return { kind: "resume" };
  if (!request.continue) return { kind: "finished", file: previous };
  if (previous.completed) {
    throw new UsageError(
      `Heartbeat ${id} met its goal at tick ${tick}: there is nothing to continue.`,
      {
        option: "--continue",
        code: "continue-goal-met",
        hint: "Start a new heartbeat (another --id, or none) for more work.",
      },
    );
  }
  if (settings.maxTicks > 0 && settings.maxTicks <= tick) {
    throw new UsageError(
      `--continue needs a --max-ticks above heartbeat ${id}'s current tick (${tick}); its limit is ${settings.maxTicks}.`,
      {
        option: "--max-ticks",
        code: "continue-needs-ticks",
        hint: `Add --max-ticks ${tick + 1} or more (or 0 for no limit).`,
      },
    );
  }
  const used = previous.usage.totalTokens;
  if (settings.maxTokens > 0 && used >= settings.maxTokens) {
    throw new UsageError(
      `--continue needs a token budget above the ${used} tokens heartbeat ${id} has used; its budget is ${settings.maxTokens}.`,
      {
        option: "--max-tokens",
        code: "continue-needs-budget",
        hint: `Add a --max-tokens above ${used} (or 0 for no budget).`,
      },
    );
  }
  return { kind: "continue", file: previous };
}

/**
 * Creates the heartbeat actor for a run: a new heartbeat, a restored snapshot
 * (after a crash or kill while it slept), or a resumed one (after it ended).
 * Does not start it.
 */
export async function prepareHeartbeat(
  request: RunRequest,
  deps: RuntimeDeps,
): Promise<RunningHeartbeat> {
  await deps.store.ensureDir();
  const previous = await deps.store.load();
  const now = deps.now ?? Date.now;
  const actorOptions = {
    id: `heartbeat-${request.id}`,
    systemId: HEARTBEAT_SYSTEM_ID,
    inspect: deps.inspect,
  };
  const checkpointed = previous?.status === "executing" && previous.snapshot.status === "active";
  const machine = runtimeMachine();
  const provideOptions: ProvideOptions = {
    restoredAttempt: checkpointed
      ? (previous.snapshot.context.current as { startedAt?: string } | null)?.startedAt
      : undefined,
  };
  /** The actor, with this heartbeat's services bound to it before anything runs. */
  const create = (options: { input: HeartbeatInput; snapshot?: SnapshotFrom<typeof machine> }) => {
    const actor = createActor(machine, { ...options, ...actorOptions });
    bindRuntime(actor, deps, provideOptions);
    return actor;
  };
  const goal = request.goal?.trim();

  if (!previous) {
    if (!goal) {
      throw new UsageError(
        `--goal is required to start a heartbeat: there is no heartbeat "${request.id}" in ${deps.store.paths.stateDir} to resume.`,
        {
          option: "--goal",
          code: "goal-required",
          hint: `Start a new heartbeat with --goal "…", or pass the id of an existing one (\`ravenclaws status\` lists them).`,
        },
      );
    }
    // Not started yet: `heartbeat.start` persists it before anything else happens.
    const input: HeartbeatInput = {
      id: request.id,
      goal,
      createdAt: new Date(now()).toISOString(),
      settings: request.settings,
    };
    return wrap(create({ input }), false, null);
  }

  checkGoal(previous, goal);

  const snapshot = previous.snapshot as unknown as SnapshotFrom<typeof heartbeatMachine>;
  const ctx = previous.snapshot.context;
  const stillDue = !(request.settings.maxTicks > 0 && ctx.tick >= request.settings.maxTicks);
  if (
    (previous.status === "sleeping" || checkpointed) &&
    previous.snapshot.status === "active" &&
    stillDue
  ) {
    // Killed while persisting or asleep: restore the snapshot itself; the
    // persist runs again (idempotently) and the sleep resumes at nextTickAt.
    // Killed in the middle of the tool loop (a checkpoint in `executing`): the
    // tool round runs again and replays the calls the journal has results for.
    const patched = {
      ...snapshot,
      context: {
        ...snapshot.context,
        settings: request.settings,
        nextTickAt: resumedNextTick(snapshot.context, request.settings),
        resumed: true,
      },
    } as typeof snapshot;
    const input: HeartbeatInput = {
      id: previous.id,
      goal: previous.goal,
      createdAt: previous.createdAt,
      settings: request.settings,
    };
    const actor = create({ snapshot: patched, input });
    const restored = actor.getSnapshot();
    if (restored.status === "error") {
      throw new StateFileError(
        `The snapshot in ${deps.store.paths.stateFile} cannot be restored (state ${JSON.stringify(snapshot.value)}): ${
          restored.error instanceof Error ? restored.error.message : String(restored.error)
        }`,
        deps.store.paths.stateFile,
        "invalid",
        { hint: "It was written by an incompatible version. The file was left as it is." },
      );
    }
    return wrap(actor, true, previous);
  }

  const resume = resumeRecordOf(previous, request.settings);
  const input: HeartbeatInput = {
    id: previous.id,
    goal: previous.goal,
    createdAt: previous.createdAt,
    settings: request.settings,
    resume,
  };
  return wrap(create({ input }), true, previous);

  function wrap(
    a: Actor<typeof heartbeatMachine>,
    resumed: boolean,
    prev: StateFile | null,
  ): RunningHeartbeat {
    let lastState: string | undefined;
    // The tool loop's own states, for listeners that draw it (the dashboard).
    let toolLoop: { ref: unknown; stop(): void } | undefined;
    const watchToolLoop = (child: AnyActorRef | undefined) => {
      if (child === toolLoop?.ref) return;
      toolLoop?.stop();
      toolLoop = undefined;
      const listener = deps.events?.toolLoopState;
      if (!child || !listener) return;
      let last: string | undefined;
      const report = (value: unknown) => {
        const text = typeof value === "string" ? value : JSON.stringify(value);
        if (text === last) return;
        last = text;
        listener(`executing.${text}`);
      };
      const sub = child.subscribe({ next: (s) => report(s.value), error: () => {} });
      toolLoop = { ref: child, stop: () => sub.unsubscribe() };
      report(child.getSnapshot().value);
    };
    a.subscribe({
      next: (snap) => {
        const value = typeof snap.value === "string" ? snap.value : JSON.stringify(snap.value);
        if (value !== lastState) {
          lastState = value;
          deps.events?.state?.(value, snap.context);
        }
        watchToolLoop((snap.children as Record<string, AnyActorRef | undefined>).execute);
      },
      error: () => {},
    });
    return {
      actor: a,
      done: toPromise(a) as Promise<HeartbeatOutput>,
      resumed,
      previous: prev,
      // A stop while tool calls await approval is the machine's too: it ends
      // `shutdown` keeping the wait (see `parkForStop`).
      stop: () => a.send({ type: "heartbeat.stop" }),
      wake: () => a.send({ type: "heartbeat.wake" }),
    };
  }
}

/** Starts a prepared heartbeat: a restored snapshot resumes by itself, a new actor gets `heartbeat.start`. */
export function startHeartbeat(running: RunningHeartbeat): void {
  running.actor.start();
  const snap = running.actor.getSnapshot();
  if (snap.status === "error") return;
  if (snap.value === "idle") running.actor.send({ type: "heartbeat.start" });
}
