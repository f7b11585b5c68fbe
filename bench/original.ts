/**
 * The Rust original's prompt construction and tick loop, rebuilt from the
 * format strings and control flow of `heartbeat.rs` (HeartbeatAgent::run,
 * build_system_prompt, build_assessment_prompt). Used to measure its prompt
 * size and model calls with the same model outputs as ours. Its agent loop
 * (`run_agent_loop`) is modelled as calls until a reply without tool calls,
 * at most `max_iterations_per_tick` (5).
 */
import type { Plan } from "../src/machines/heartbeat.types.js";
import type { TranscriptEntry } from "../src/machines/toolLoop.types.js";
import type { ModelApi } from "./stubModel.js";

/** `HeartbeatState` fields the prompts use. */
export interface OriginalState {
  goal: string;
  tick: number;
  /** Grows by one section per tick and is resent in every prompt. */
  progress: string;
}

/** `build_system_prompt`. */
export function originalSystemPrompt(state: OriginalState): string {
  return `You are RavenClaws Heartbeat — an autonomous agent operating in a persistent loop.

Your overarching goal: ${state.goal}

You operate in ticks. Each tick you:
1. ASSESS your progress toward the goal
2. PLAN the next actions to take
3. EXECUTE those actions using available tools
4. REPORT what was accomplished

Be concise and focused. Always work toward the goal efficiently.
When the goal is complete, respond with 'GOAL_COMPLETE' and a summary.

Current tick: ${state.tick}`;
}

/** `build_assessment_prompt`. */
export function originalAssessmentPrompt(state: OriginalState): string {
  const progress =
    state.progress === "" ? "No progress yet — this is the first tick." : state.progress;
  return `Assess your progress toward the goal.

Goal: ${state.goal}

Current progress so far:
${progress}

Tick number: ${state.tick}

Answer the following:
1. What progress has been made?
2. What obstacles remain?
3. Is the goal complete? (If yes, say 'GOAL_COMPLETE')
4. What should be done next?`;
}

/** The section appended to `progress` after a tick whose actions ran (tools enabled). */
export function originalProgressSection(
  tick: number,
  assessment: string,
  plan: string,
  result: string,
): string {
  return `\n\n## Tick ${tick}\n**Assessment:** ${assessment}\n**Plan:** ${plan}\n**Result:** ${result}`;
}

/** What one tick of the original did. */
export interface OriginalTick {
  /** Model calls made. */
  calls: number;
  /** Characters of the assessment request (system + user message). */
  assessPromptChars: number;
  /** The goal was declared complete by substring match. */
  completed: boolean;
}

const planText = (plan: Plan) => plan.steps.map((s, i) => `${i + 1}. ${s}`).join("\n");

/**
 * Runs one tick of the original loop (tools enabled) against `model`, feeding
 * it the same inputs our phases get, and updates `state` as the original does.
 */
export async function originalTick(
  state: OriginalState,
  model: ModelApi,
  tools: Parameters<ModelApi["callWithTools"]>[1],
  maxIterations = 5,
): Promise<OriginalTick> {
  state.tick += 1;
  const assessPromptChars =
    originalSystemPrompt(state).length + originalAssessmentPrompt(state).length;
  let calls = 1;
  const a = await model.assess({
    goal: state.goal,
    tick: state.tick,
    progress: state.progress,
    digests: [],
    wakeReason: "timer",
  });
  const assessment = a.assessment.assessment;
  const upper = assessment.toUpperCase();
  if (upper.includes("GOAL_COMPLETE") || upper.includes("[DONE]")) {
    state.progress = `Goal completed at tick ${state.tick}.\nAssessment: ${assessment}`;
    return { calls, assessPromptChars, completed: true };
  }
  // The original always plans and executes: it has no "nothing to do" path.
  calls++;
  const p = await model.plan({
    goal: state.goal,
    tick: state.tick,
    progress: state.progress,
    assessment: a.assessment,
  });
  const transcript: TranscriptEntry[] = [];
  let result = "";
  let spentTokens = 0;
  for (let i = 0; i < maxIterations; i++) {
    calls++;
    const r = await model.callWithTools(
      {
        goal: state.goal,
        tick: state.tick,
        progress: state.progress,
        plan: p.plan,
        transcript,
        lastCall: false,
        spentTokens,
      },
      tools,
    );
    spentTokens += r.usage.totalTokens;
    result = r.content ?? "";
    if (r.toolCalls.length === 0) break;
    transcript.push({ role: "assistant", content: r.content, toolCalls: r.toolCalls });
    for (const c of r.toolCalls) transcript.push({ role: "tool", callId: c.id, content: "" });
  }
  state.progress += originalProgressSection(state.tick, assessment, planText(p.plan), result);
  return { calls, assessPromptChars, completed: false };
}
