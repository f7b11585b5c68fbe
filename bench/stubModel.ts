/**
 * A zero-latency, in-process model for the bench: it implements the three
 * methods of `LlmService` the heartbeat uses and answers each call at once
 * with canned, deterministic outputs. It counts the calls it gets.
 */

import type {
  AssessInput,
  AssessOutput,
  PlanInput,
  PlanOutput,
  TokenUsage,
} from "../src/machines/heartbeat.types.js";
import { PROGRESS_LIMIT } from "../src/machines/shared.js";
import type { CallModelInput, CallModelOutput } from "../src/machines/toolLoop.types.js";
import type { LlmService } from "../src/services/llm.js";

/** The part of the model service the heartbeat calls. */
export type ModelApi = Pick<LlmService, "assess" | "plan" | "callWithTools">;

/** Longest progress summary the stub writes: what the assess prompt asks the model for. */
export const STUB_SUMMARY_LIMIT = PROGRESS_LIMIT;

/** Model calls received, by phase. */
export interface CallCounts {
  assess: number;
  plan: number;
  execute: number;
}

const usage = (prompt: number, completion: number): TokenUsage => ({
  calls: 1,
  promptTokens: prompt,
  completionTokens: completion,
  totalTokens: prompt + completion,
});

/** Options of {@link StubModel}. */
export interface StubModelOptions {
  /** Whether tick `n` needs action (busy) or not (idle). */
  busy: (tick: number) => boolean;
  /** Called with every assess input, before the answer (to capture prompts). */
  onAssess?: (input: AssessInput) => void;
}

/**
 * Canned outputs of a model working on "keep NOTES.md summarising the TODOs".
 * A busy tick: the assessment asks for action, the plan has three steps, the
 * first execute call asks for one `list_dir` tool call, the second reports.
 * An idle tick: the assessment says no action is needed. The progress summary
 * is rewritten each busy tick to cover all progress, at most
 * {@link STUB_SUMMARY_LIMIT} characters (the oldest lines give way), as the
 * assess prompt instructs.
 */
export class StubModel implements ModelApi {
  readonly calls: CallCounts = { assess: 0, plan: 0, execute: 0 };

  constructor(private readonly options: StubModelOptions) {}

  /** All calls received. */
  get total(): number {
    return this.calls.assess + this.calls.plan + this.calls.execute;
  }

  async assess(input: AssessInput): Promise<AssessOutput> {
    this.calls.assess++;
    this.options.onAssess?.(input);
    const busy = this.options.busy(input.tick);
    return {
      assessment: {
        goalComplete: false,
        actionNeeded: busy,
        assessment: assessmentText(input.tick, busy),
        progressSummary: busy ? nextSummary(input.progress, input.tick) : input.progress,
      },
      usage: usage(700, 160),
    };
  }

  async plan(input: PlanInput): Promise<PlanOutput> {
    this.calls.plan++;
    return {
      plan: { steps: input.assessment.actionNeeded ? [...PLAN_STEPS] : [] },
      usage: usage(450, 60),
    };
  }

  async callWithTools(
    input: CallModelInput,
    tools: readonly unknown[],
    _signal?: AbortSignal,
  ): Promise<CallModelOutput> {
    this.calls.execute++;
    const toolsDone = input.transcript.some((e) => e.role === "tool");
    if (tools.length > 0 && input.plan.steps.length > 0 && !toolsDone && !input.lastCall) {
      return {
        content: null,
        toolCalls: [
          {
            id: `call_${input.tick}_1`,
            name: "list_dir",
            arguments: JSON.stringify({ path: "." }),
          },
        ],
        usage: usage(600, 20),
      };
    }
    return {
      content:
        input.plan.steps.length > 0
          ? `Listed the workspace root and re-read the files that changed; NOTES.md now lists the ${TODOS(input.tick)} TODO markers found so far.`
          : "Nothing to do this tick.",
      toolCalls: [],
      usage: usage(900, 80),
    };
  }
}

const TODOS = (tick: number) => 12 + (tick % 7);

const PLAN_STEPS = [
  "List the files in the workspace root",
  "Read the source files that changed since the last tick",
  "Update NOTES.md with the TODO markers found",
] as const;

function assessmentText(tick: number, busy: boolean): string {
  return busy
    ? `NOTES.md lists ${TODOS(tick)} TODO markers; files under src/ changed since the last tick and need a scan. The goal is ongoing.`
    : "NOTES.md is up to date with the TODO markers in the workspace; nothing changed since the last tick.";
}

function nextSummary(previous: string, tick: number): string {
  const line = `Tick ${tick}: scanned the changed files and updated NOTES.md (${TODOS(tick)} TODO markers).`;
  // Only the tail can survive the limit; slicing first keeps this cheap for huge inputs.
  const lines = previous ? previous.slice(-STUB_SUMMARY_LIMIT).split("\n") : [];
  if (previous.length > STUB_SUMMARY_LIMIT) lines.shift();
  lines.push(line);
  while (lines.join("\n").length > STUB_SUMMARY_LIMIT && lines.length > 1) lines.shift();
  return lines.join("\n");
}
