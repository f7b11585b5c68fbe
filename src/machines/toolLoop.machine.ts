/**
 * The execute phase as a child statechart: call the model, screen the tools
 * it asks for against the `ask` rules (waiting for the operator's decisions
 * when one matches), run them, feed the results back, until it answers
 * without tool calls or the per-tick call budget is spent. Pure: actors are
 * provided by the runtime.
 */
import { assign, enqueueActions, setup } from "xstate";
import { notProvided } from "./notProvided.js";
import { addUsage, asErrorInfo, ZERO_USAGE } from "./shared.js";
import type {
  AwaitApprovalInput,
  AwaitApprovalOutput,
  CallModelInput,
  CallModelOutput,
  RunToolsInput,
  RunToolsOutput,
  ScreenCallsInput,
  ScreenCallsOutput,
  ToolLoopContext,
  ToolLoopInput,
  ToolLoopOutput,
} from "./toolLoop.types.js";

/** Calls with identical tool and arguments that trip the breaker. */
export const BREAKER_REPEATS = 3;

const callKey = (call: { name: string; arguments: string }) =>
  `${call.name}\u0000${call.arguments.trim()}`;

/** The first call in `next` that would be the {@link BREAKER_REPEATS}th identical call of the loop. */
function repeatedCall(
  transcript: ToolLoopContext["transcript"],
  next: CallModelOutput["toolCalls"],
): CallModelOutput["toolCalls"][number] | undefined {
  const seen = new Map<string, number>();
  for (const entry of transcript) {
    if (entry.role !== "assistant") continue;
    for (const call of entry.toolCalls) seen.set(callKey(call), (seen.get(callKey(call)) ?? 0) + 1);
  }
  for (const call of next) {
    const count = (seen.get(callKey(call)) ?? 0) + 1;
    if (count >= BREAKER_REPEATS) return call;
    seen.set(callKey(call), count);
  }
  return undefined;
}

/** A rough token estimate of the next model call (4 characters a token), for the per-tick budget. */
export function estimateCallTokens(context: ToolLoopContext): number {
  const chars =
    context.goal.length +
    context.progress.length +
    JSON.stringify(context.plan).length +
    JSON.stringify(context.transcript).length;
  return Math.ceil(chars / 4);
}

/** The tool calls of the model's last reply. */
const lastCalls = (context: ToolLoopContext) => {
  const last = context.transcript.at(-1);
  return last?.role === "assistant" ? last.toolCalls : [];
};

const appendNote = (result: string | null, note: string) =>
  `${result ? `${result}\n` : ""}(${note})`;

/** The tool loop statechart. */
export const toolLoopMachine = setup({
  types: {
    context: {} as ToolLoopContext,
    input: {} as ToolLoopInput,
    output: {} as ToolLoopOutput,
  },
  actors: {
    callModel: notProvided<CallModelOutput, CallModelInput>("callModel"),
    runTools: notProvided<RunToolsOutput, RunToolsInput>("runTools"),
    screenCalls: notProvided<ScreenCallsOutput, ScreenCallsInput>("screenCalls"),
    awaitApproval: notProvided<AwaitApprovalOutput, AwaitApprovalInput>("awaitApproval"),
  },
  actions: {
    recordModelCall: assign(({ context }, params: { output: CallModelOutput }) => ({
      iteration: context.iteration + 1,
      usage: addUsage(context.usage, params.output.usage),
      callUsages: [...context.callUsages, params.output.usage],
      transcript: [
        ...context.transcript,
        {
          role: "assistant" as const,
          content: params.output.content,
          toolCalls: params.output.toolCalls,
        },
      ],
      result: params.output.content ?? context.result,
    })),
    recordAnswer: assign(({ context }, params: { output: CallModelOutput }) => ({
      iteration: context.iteration + 1,
      usage: addUsage(context.usage, params.output.usage),
      callUsages: [...context.callUsages, params.output.usage],
      result: params.output.content ?? "",
    })),
    recordToolResults: assign(({ context }, params: { output: RunToolsOutput }) => ({
      toolCalls: [...context.toolCalls, ...params.output.results],
      transcript: [
        ...context.transcript,
        ...params.output.results.map((r) => ({
          role: "tool" as const,
          callId: r.callId,
          content: params.output.replies[r.callId] ?? r.content,
        })),
      ],
    })),
    tripBreaker: assign(({ context }, params: { output: CallModelOutput }) => {
      const call = repeatedCall(context.transcript, params.output.toolCalls);
      const name = call?.name ?? "a tool";
      return {
        toolCalls: [
          ...context.toolCalls,
          ...params.output.toolCalls.map((c) => ({
            callId: c.id,
            name: c.name,
            arguments: c.arguments,
            status: "refused" as const,
            content: `Not run: ${name} was called ${BREAKER_REPEATS} times with identical arguments in this tick (breaker).`,
          })),
        ],
        stoppedBy: "breaker" as const,
        result: appendNote(
          context.result,
          `Stopped: ${name} was called ${BREAKER_REPEATS} times with identical arguments; the breaker ended this tick's tool loop.`,
        ),
      };
    }),
    /** Calls an `ask` rule matched: the round waits for the operator. */
    parkCalls: assign((_, params: { output: ScreenCallsOutput }) => ({
      pending: params.output.pending,
      approvals: [],
    })),
    /**
     * Tells the heartbeat the loop waits for approval, with the whole context:
     * a stop now ends the run keeping it, and the next run waits again.
     */
    reportParked: enqueueActions(({ context, self, enqueue }) => {
      if (self._parent) enqueue.sendParent({ type: "toolLoop.parked", loop: context });
    }),
    /** The wait is over (decided, or failed). */
    reportUnparked: enqueueActions(({ self, enqueue }) => {
      if (self._parent) enqueue.sendParent({ type: "toolLoop.unparked" });
    }),
    /** Nothing to ask: the round runs as it is. */
    clearApprovals: assign(() => ({ pending: [], approvals: [] })),
    /** The operator (or the timeout) decided every pending call. */
    recordDecisions: assign((_, params: { output: AwaitApprovalOutput }) => ({
      pending: [],
      approvals: params.output.decisions,
    })),
    noteBudgetSpent: assign(({ context }) => ({
      stoppedBy: "budget" as const,
      result: appendNote(
        context.result,
        `Stopped after ${context.iteration} model call${context.iteration === 1 ? "" : "s"}: the per-tick token budget is spent.`,
      ),
    })),
    noteIterationsSpent: assign(({ context }) => ({
      stoppedBy: "iterations" as const,
      result: appendNote(
        context.result,
        `Stopped after ${context.iteration} model call${context.iteration === 1 ? "" : "s"}: the per-tick limit.`,
      ),
    })),
    /** Records the failure; a model call that was answered but unusable is charged all the same. */
    recordError: assign(({ context, event }) => {
      const { usage, ...error } = asErrorInfo((event as { error?: unknown }).error);
      if (!usage) return { error };
      return {
        error,
        usage: addUsage(context.usage, usage),
        callUsages: [...context.callUsages, usage],
      };
    }),
  },
  guards: {
    needsApproval: (_, params: { output: ScreenCallsOutput }) => params.output.pending.length > 0,
    /** The loop was restored from a stop while it waited: it waits again. */
    parkedCalls: ({ context }) => (context.pending?.length ?? 0) > 0,
    wantsTools: (_, params: { output: CallModelOutput }) => params.output.toolCalls.length > 0,
    repeatsToolCall: ({ context }, params: { output: CallModelOutput }) =>
      repeatedCall(context.transcript, params.output.toolCalls) !== undefined,
    callsLeft: ({ context }) => context.iteration < context.maxIterations,
    withinTickBudget: ({ context }) =>
      context.tokenBudget <= 0 ||
      context.usage.totalTokens + estimateCallTokens(context) <= context.tokenBudget,
  },
}).createMachine({
  id: "toolLoop",
  context: ({ input: { parked, ...input } }) =>
    parked ?? {
      ...input,
      transcript: [],
      iteration: 0,
      usage: ZERO_USAGE,
      callUsages: [],
      toolCalls: [],
      pending: [],
      approvals: [],
      result: null,
      error: null,
      stoppedBy: null,
    },
  initial: "checking",
  states: {
    checking: {
      always: [
        { guard: "parkedCalls", target: "awaitingApproval" },
        { guard: "withinTickBudget", target: "calling" },
        { target: "done", actions: "noteBudgetSpent" },
      ],
    },
    calling: {
      invoke: {
        id: "callModel",
        src: "callModel",
        input: ({ context }) => ({
          goal: context.goal,
          tick: context.tick,
          progress: context.progress,
          plan: context.plan,
          transcript: context.transcript,
          lastCall: context.maxIterations > 1 && context.iteration + 1 >= context.maxIterations,
          spentTokens: context.usage.totalTokens,
          budget: context.budget ?? null,
        }),
        onDone: [
          {
            guard: { type: "repeatsToolCall", params: ({ event }) => ({ output: event.output }) },
            target: "done",
            actions: [
              { type: "recordModelCall", params: ({ event }) => ({ output: event.output }) },
              { type: "tripBreaker", params: ({ event }) => ({ output: event.output }) },
            ],
          },
          {
            guard: { type: "wantsTools", params: ({ event }) => ({ output: event.output }) },
            target: "screening",
            actions: { type: "recordModelCall", params: ({ event }) => ({ output: event.output }) },
          },
          {
            target: "done",
            actions: { type: "recordAnswer", params: ({ event }) => ({ output: event.output }) },
          },
        ],
        onError: { target: "done", actions: "recordError" },
      },
    },
    screening: {
      invoke: {
        id: "screenCalls",
        src: "screenCalls",
        input: ({ context }) => ({
          calls: lastCalls(context),
          tick: context.tick,
          iteration: context.iteration,
          attempt: context.attempt,
        }),
        onDone: [
          {
            guard: { type: "needsApproval", params: ({ event }) => ({ output: event.output }) },
            target: "awaitingApproval",
            actions: { type: "parkCalls", params: ({ event }) => ({ output: event.output }) },
          },
          { target: "acting", actions: "clearApprovals" },
        ],
        onError: { target: "done", actions: "recordError" },
      },
    },
    // Persisted like any other state: the runtime's actor checkpoints the
    // heartbeat on entry, so a restore waits for the same calls.
    awaitingApproval: {
      entry: "reportParked",
      invoke: {
        id: "awaitApproval",
        src: "awaitApproval",
        input: ({ context }) => ({
          pending: context.pending ?? [],
          tick: context.tick,
          iteration: context.iteration,
          attempt: context.attempt,
        }),
        onDone: {
          target: "acting",
          actions: [
            { type: "recordDecisions", params: ({ event }) => ({ output: event.output }) },
            "reportUnparked",
          ],
        },
        onError: { target: "done", actions: ["recordError", "clearApprovals", "reportUnparked"] },
      },
    },
    acting: {
      invoke: {
        id: "runTools",
        src: "runTools",
        input: ({ context }) => ({
          calls: lastCalls(context),
          tick: context.tick,
          iteration: context.iteration,
          attempt: context.attempt,
          approvals: context.approvals ?? [],
        }),
        onDone: [
          {
            guard: "callsLeft",
            target: "checking",
            actions: {
              type: "recordToolResults",
              params: ({ event }) => ({ output: event.output }),
            },
          },
          {
            target: "done",
            actions: [
              { type: "recordToolResults", params: ({ event }) => ({ output: event.output }) },
              "noteIterationsSpent",
            ],
          },
        ],
        onError: { target: "done", actions: "recordError" },
      },
    },
    done: { type: "final" },
  },
  output: ({ context }) => ({
    result: context.result ?? "",
    usage: context.usage,
    toolCalls: context.toolCalls,
    iterations: context.iteration,
    callUsages: context.callUsages,
    error: context.error,
    stoppedBy: context.stoppedBy,
  }),
});
