/**
 * The execute phase as a child statechart: call the model, run the tools it
 * asks for, feed the results back, until it answers without tool calls or the
 * per-tick call budget is spent. Pure: actors are provided by the runtime.
 */
import { assign, fromPromise, setup } from "xstate";
import type { ErrorInfo } from "../errors.js";
import type { TokenUsage } from "./heartbeat.types.js";
import type {
  CallModelInput,
  CallModelOutput,
  RunToolsInput,
  RunToolsOutput,
  ToolLoopContext,
  ToolLoopInput,
  ToolLoopOutput,
} from "./toolLoop.types.js";

/** Placeholder for an actor the runtime (or a test) must provide. */
export function notProvided<TOutput, TInput>(name: string) {
  return fromPromise<TOutput, TInput>(async () => {
    throw new Error(`actor "${name}" was not provided: supply it with machine.provide()`);
  });
}

/** Adds two usage records. */
export function addUsage(a: TokenUsage, b: TokenUsage): TokenUsage {
  return {
    calls: a.calls + b.calls,
    promptTokens: a.promptTokens + b.promptTokens,
    completionTokens: a.completionTokens + b.completionTokens,
    totalTokens: a.totalTokens + b.totalTokens,
  };
}

/** Usage of nothing. */
export const ZERO_USAGE: TokenUsage = {
  calls: 0,
  promptTokens: 0,
  completionTokens: 0,
  totalTokens: 0,
};

/** Normalises whatever an actor rejected with into {@link ErrorInfo}. */
export function asErrorInfo(error: unknown): ErrorInfo {
  if (typeof error === "object" && error !== null && "code" in error && "message" in error) {
    const e = error as Partial<ErrorInfo>;
    return {
      code: String(e.code),
      message: String(e.message),
      fatal: e.fatal === true,
      ...(typeof e.hint === "string" ? { hint: e.hint } : {}),
    };
  }
  return {
    code: "internal",
    message: error instanceof Error ? error.message : String(error),
    fatal: false,
  };
}

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
  },
  actions: {
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
  },
  guards: {
    wantsTools: (_, params: { output: CallModelOutput }) => params.output.toolCalls.length > 0,
    callsLeft: ({ context }) => context.iteration < context.maxIterations,
  },
}).createMachine({
  id: "toolLoop",
  context: ({ input }) => ({
    ...input,
    transcript: [],
    iteration: 0,
    usage: ZERO_USAGE,
    callUsages: [],
    toolCalls: [],
    result: null,
    error: null,
  }),
  initial: "calling",
  states: {
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
        }),
        onDone: [
          {
            guard: { type: "wantsTools", params: ({ event }) => ({ output: event.output }) },
            target: "acting",
            actions: assign(({ context, event }) => ({
              iteration: context.iteration + 1,
              usage: addUsage(context.usage, event.output.usage),
              callUsages: [...context.callUsages, event.output.usage],
              transcript: [
                ...context.transcript,
                {
                  role: "assistant" as const,
                  content: event.output.content,
                  toolCalls: event.output.toolCalls,
                },
              ],
              result: event.output.content ?? context.result,
            })),
          },
          {
            target: "done",
            actions: assign(({ context, event }) => ({
              iteration: context.iteration + 1,
              usage: addUsage(context.usage, event.output.usage),
              callUsages: [...context.callUsages, event.output.usage],
              result: event.output.content ?? "",
            })),
          },
        ],
        onError: {
          target: "done",
          actions: assign(({ event }) => ({ error: asErrorInfo(event.error) })),
        },
      },
    },
    acting: {
      invoke: {
        id: "runTools",
        src: "runTools",
        input: ({ context }) => {
          const last = context.transcript.at(-1);
          return { calls: last?.role === "assistant" ? last.toolCalls : [] };
        },
        onDone: [
          {
            guard: "callsLeft",
            target: "calling",
            actions: {
              type: "recordToolResults",
              params: ({ event }) => ({ output: event.output }),
            },
          },
          {
            target: "done",
            actions: [
              { type: "recordToolResults", params: ({ event }) => ({ output: event.output }) },
              assign(({ context }) => ({
                result: `${context.result ? `${context.result}\n` : ""}(Stopped after ${context.iteration} model calls: the per-tick limit.)`,
              })),
            ],
          },
        ],
        onError: {
          target: "done",
          actions: assign(({ event }) => ({ error: asErrorInfo(event.error) })),
        },
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
  }),
});
