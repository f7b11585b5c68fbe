/**
 * Wires the pure statechart to the real world: provides the real actors
 * (model, tools, store, clock), creates or restores the heartbeat actor from
 * its state file, and exposes stop/wake for signals.
 */
import { type Actor, createActor, fromPromise, type SnapshotFrom, toPromise } from "xstate";
import { StateFileError, toErrorInfo, UsageError } from "./errors.js";
import { heartbeatMachine } from "./machines/heartbeat.machine.js";
import type {
  AssessInput,
  AssessOutput,
  HeartbeatContext,
  HeartbeatInput,
  HeartbeatOutput,
  HeartbeatSettings,
  PersistInput,
  PlanInput,
  PlanOutput,
  ResumeRecord,
  SleepInput,
  SleepOutput,
} from "./machines/heartbeat.types.js";
import { toolLoopMachine } from "./machines/toolLoop.machine.js";
import type {
  CallModelInput,
  CallModelOutput,
  RunToolsInput,
  RunToolsOutput,
  ToolCallRecord,
} from "./machines/toolLoop.types.js";
import { STATE_SCHEMA_VERSION, type StateFile } from "./schemas/stateFile.js";
import type { LlmService } from "./services/llm.js";
import type { HeartbeatStore, JournalEntry } from "./services/store.js";
import type { Toolbox } from "./services/tools/index.js";

/** What the runtime tells the outside world while it runs. */
export interface RuntimeEvents {
  /** The heartbeat entered a state. */
  state?(state: string, context: HeartbeatContext): void;
  /** A tick (or the run) was persisted; `entries` are the journal lines written. */
  persisted?(file: StateFile, entries: JournalEntry[]): void;
  /** A tool call finished. */
  tool?(record: ToolCallRecord, tick: number): void;
}

/** The real services the actors use. */
export interface RuntimeDeps {
  llm: Pick<LlmService, "assess" | "plan" | "callWithTools">;
  store: HeartbeatStore;
  /** Null when tools are disabled. */
  toolbox: Toolbox | null;
  events?: RuntimeEvents;
  /** Milliseconds since the epoch; injectable for tests. */
  now?: () => number;
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

const TOOL_TEXT_LIMIT = 2_000;
const clipText = (text: string, max: number) =>
  text.length <= max ? text : `${text.slice(0, max)}… (${text.length - max} more characters)`;

/** Wraps tool output as untrusted data, with its origin, before the model sees it. */
export function wrapToolOutput(name: string, content: string): string {
  return `<data origin="tool:${name}">\n${content}\n</data>`;
}

/** Sleeps until an absolute time, checking the wall clock at least every minute (suspend, clock changes). */
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
      const left = deadline - now();
      if (left <= 0) {
        signal.removeEventListener("abort", onAbort);
        resolve({ late: late || -left > 5_000 });
        return;
      }
      timer = setTimeout(check, Math.min(left, 60_000));
    };
    const onAbort = () => {
      clearTimeout(timer);
      resolve({ late });
    };
    signal.addEventListener("abort", onAbort, { once: true });
    check();
  });
}

/** Builds the state file for a persisted snapshot. */
export function stateFileOf(
  snapshot: { context: HeartbeatContext } & Record<string, unknown>,
  input: PersistInput,
  updatedAt: string,
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
    usage: ctx.usage,
    reason: input.reason,
    error: ctx.error,
    seq: input.seq,
    snapshot: snapshot as StateFile["snapshot"],
  };
}

/** The journal lines for one persist: the tick just finished (or cut short), and the end of the run. */
export function journalEntriesOf(
  ctx: HeartbeatContext,
  input: PersistInput,
  at: string,
): JournalEntry[] {
  const entries: JournalEntry[] = [];
  const t = ctx.current;
  if (t) {
    const idle = t.assessment !== null && !t.assessment.actionNeeded;
    entries.push({
      type: "tick",
      seq: input.seq,
      tick: t.number,
      status: t.interrupted ? "interrupted" : t.errors.length > 0 ? "failed" : idle ? "idle" : "ok",
      wakeReason: t.wakeReason,
      startedAt: t.startedAt,
      finishedAt: at,
      durationMs: Math.max(0, Date.parse(at) - Date.parse(t.startedAt)),
      goalComplete: t.assessment?.goalComplete ?? false,
      assessment: t.assessment?.assessment ?? null,
      plan: t.plan?.steps ?? null,
      result: t.result,
      errors: t.errors,
      usage: t.usage,
      modelCalls: t.modelCalls,
      toolCalls: t.toolCalls.map((c) => ({ callId: c.callId, name: c.name, status: c.status })),
      next: input.status,
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

/** The heartbeat machine with the real actors provided. */
export function provideActors(
  deps: RuntimeDeps,
  getActor: () => Actor<typeof heartbeatMachine> | undefined,
) {
  const now = deps.now ?? Date.now;
  const guard =
    <I, O>(work: (input: I, signal: AbortSignal) => Promise<O>) =>
    async ({ input, signal }: { input: I; signal: AbortSignal }): Promise<O> => {
      try {
        return await work(input, signal);
      } catch (error) {
        // The machine receives plain data it can store, never class instances.
        throw toErrorInfo(error);
      }
    };

  const toolbox = deps.toolbox;
  const execute = toolLoopMachine.provide({
    actors: {
      callModel: fromPromise<CallModelOutput, CallModelInput>(
        guard((input, signal) => deps.llm.callWithTools(input, toolbox?.definitions ?? [], signal)),
      ),
      runTools: fromPromise<RunToolsOutput, RunToolsInput>(
        guard(async (input) => {
          const replies: Record<string, string> = {};
          const results = await Promise.all(
            input.calls.map(async (call) => {
              // With tools disabled the machine never enters `executing`.
              if (!toolbox) throw new Error("runTools ran although tools are disabled");
              const outcome = await toolbox.call(call);
              replies[call.id] = wrapToolOutput(call.name, outcome.content);
              const record: ToolCallRecord = {
                callId: call.id,
                name: call.name,
                arguments: clipText(call.arguments, TOOL_TEXT_LIMIT),
                status: outcome.status,
                content: clipText(outcome.content, TOOL_TEXT_LIMIT),
              };
              return record;
            }),
          );
          const tick = (getActor()?.getSnapshot().context.tick ?? 0) + 1;
          await deps.store.append(results.map((r) => ({ type: "tool", tick, ...r })));
          for (const r of results) deps.events?.tool?.(r, tick);
          return { results, replies };
        }),
      ),
    },
  });

  return heartbeatMachine.provide({
    actors: {
      assess: fromPromise<AssessOutput, AssessInput>(
        guard((input, signal) => deps.llm.assess(input, signal)),
      ),
      plan: fromPromise<PlanOutput, PlanInput>(
        guard((input, signal) => deps.llm.plan(input, signal)),
      ),
      execute,
      persist: fromPromise<void, PersistInput>(
        guard(async (input) => {
          // Let the transition into `persisting` settle so the snapshot includes it.
          await Promise.resolve();
          const actor = getActor();
          if (!actor) throw new Error("persist ran before the heartbeat actor existed");
          const snapshot = actor.getPersistedSnapshot() as unknown as {
            context: HeartbeatContext;
          } & Record<string, unknown>;
          const at = new Date(now()).toISOString();
          const file = stateFileOf(snapshot, input, at);
          await deps.store.save(file);
          const entries = journalEntriesOf(snapshot.context, input, at);
          await deps.store.append(entries);
          deps.events?.persisted?.(file, entries);
        }),
      ),
      sleepUntil: fromPromise<SleepOutput, SleepInput>(({ input, signal }) =>
        sleepUntil(input.until, signal, now),
      ),
    },
  });
}

/**
 * When the next tick is due under this run's settings: the saved time, or
 * earlier if the interval was shortened (last tick's end + the new interval).
 */
export function rescheduledNextTick(
  ctx: Pick<HeartbeatContext, "nextTickAt" | "digests">,
  settings: HeartbeatSettings,
): string | null {
  if (!ctx.nextTickAt) return null;
  const lastTickAt = ctx.digests.at(-1)?.at;
  if (!lastTickAt) return ctx.nextTickAt;
  const byNewInterval = Date.parse(lastTickAt) + settings.tickIntervalSec * 1000;
  return byNewInterval < Date.parse(ctx.nextTickAt)
    ? new Date(byNewInterval).toISOString()
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
    nextTickAt: file.status === "failed" ? null : rescheduledNextTick(ctx, settings),
    usage: ctx.usage,
    // A heartbeat resumed after it failed gets a fresh failure budget.
    consecutiveFailures: file.status === "failed" ? 0 : ctx.consecutiveFailures,
    digests: ctx.digests,
    seq: Math.max(ctx.seq, file.seq),
  };
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
  let actor: Actor<typeof heartbeatMachine> | undefined;
  const machine = provideActors(deps, () => actor);
  const goal = request.goal?.trim();

  if (!previous) {
    if (!goal) {
      throw new UsageError(
        `There is no heartbeat "${request.id}" in ${deps.store.paths.stateDir}, and no goal was given.`,
        {
          option: "--goal",
          code: "goal-required",
          hint: `Start a new heartbeat with --goal "…", or pass the id of an existing one (ls ${deps.store.paths.stateDir}).`,
        },
      );
    }
    const input: HeartbeatInput = {
      id: request.id,
      goal,
      createdAt: new Date(now()).toISOString(),
      settings: request.settings,
    };
    actor = createActor(machine, { input, id: `heartbeat-${request.id}` });
    return wrap(actor, false, null);
  }

  if (goal && goal !== previous.goal) {
    throw new UsageError(
      `Heartbeat "${request.id}" already exists with a different goal: "${clipText(previous.goal, 200)}".`,
      {
        option: "--goal",
        code: "goal-mismatch",
        hint: "Resume it without --goal (or with the same goal), or start a new heartbeat with another --id (or none).",
      },
    );
  }

  const snapshot = previous.snapshot as unknown as SnapshotFrom<typeof heartbeatMachine>;
  const ctx = previous.snapshot.context;
  const stillDue = !(request.settings.maxTicks > 0 && ctx.tick >= request.settings.maxTicks);
  if (previous.status === "sleeping" && previous.snapshot.status === "active" && stillDue) {
    // Killed while persisting or asleep: restore the snapshot itself; the
    // persist runs again (idempotently) and the sleep resumes at nextTickAt.
    const patched = {
      ...snapshot,
      context: {
        ...snapshot.context,
        settings: request.settings,
        nextTickAt: rescheduledNextTick(snapshot.context, request.settings),
        resumed: true,
      },
    } as typeof snapshot;
    const input: HeartbeatInput = {
      id: previous.id,
      goal: previous.goal,
      createdAt: previous.createdAt,
      settings: request.settings,
    };
    actor = createActor(machine, { snapshot: patched, input, id: `heartbeat-${request.id}` });
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

  const input: HeartbeatInput = {
    id: previous.id,
    goal: previous.goal,
    createdAt: previous.createdAt,
    settings: request.settings,
    resume: resumeRecordOf(previous, request.settings),
  };
  actor = createActor(machine, { input, id: `heartbeat-${request.id}` });
  return wrap(actor, true, previous);

  function wrap(
    a: Actor<typeof heartbeatMachine>,
    resumed: boolean,
    prev: StateFile | null,
  ): RunningHeartbeat {
    let lastState: string | undefined;
    a.subscribe({
      next: (snap) => {
        const value = typeof snap.value === "string" ? snap.value : JSON.stringify(snap.value);
        if (value !== lastState) {
          lastState = value;
          deps.events?.state?.(value, snap.context);
        }
      },
      error: () => {},
    });
    const done = toPromise(a) as Promise<HeartbeatOutput>;
    return {
      actor: a,
      done,
      resumed,
      previous: prev,
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
