/** Types of the execute phase's tool loop. Types only. */
import type { ErrorInfo } from "../errors.js";
import type { LifetimeBudget, Plan, TokenUsage } from "./heartbeat.types.js";

/** A tool call as the model asked for it. */
export interface ToolCallRequest {
  id: string;
  name: string;
  /** Raw JSON arguments text. */
  arguments: string;
  /** Set when the reply's arguments were not a string (an object, a number): the call is answered `invalid`. */
  argumentsError?: string;
}

/** A finished tool call, as journaled and kept in the tick record. */
export interface ToolCallRecord {
  callId: string;
  name: string;
  /** Arguments (possibly truncated). */
  arguments: string;
  /** `ok`, `refused` (sandbox), `invalid` (bad JSON, schema or unknown tool) or `error` (the tool failed). */
  status: "ok" | "refused" | "invalid" | "error";
  /** Result text (possibly truncated). */
  content: string;
  /** Names of the instruction-injection patterns found in the tool's output, when any. */
  injection?: string[];
}

/** Conversation after the opening prompt; the service adds the system and user messages. */
export type TranscriptEntry =
  | { role: "assistant"; content: string | null; toolCalls: ToolCallRequest[] }
  | { role: "tool"; callId: string; content: string };

export interface ToolLoopInput {
  goal: string;
  tick: number;
  progress: string;
  plan: Plan;
  maxIterations: number;
  /** Tokens the loop may still spend in this tick; 0 = unlimited. */
  tokenBudget: number;
  /** Identifies this attempt at the tick (its start time): keys the write-ahead tool journal. */
  attempt: string;
  /** The heartbeat's lifetime budget when the loop started (null: none); passed on to every model call. */
  budget?: LifetimeBudget | null;
}

/** Why the loop stopped before the model gave a final answer. */
export type ToolLoopStop = "iterations" | "budget" | "breaker";

export interface ToolLoopContext extends ToolLoopInput {
  transcript: TranscriptEntry[];
  /** Model calls made so far. */
  iteration: number;
  usage: TokenUsage;
  /** Usage of each model call, in order. */
  callUsages: TokenUsage[];
  toolCalls: ToolCallRecord[];
  result: string | null;
  error: ErrorInfo | null;
  stoppedBy: ToolLoopStop | null;
}

export interface ToolLoopOutput {
  result: string;
  usage: TokenUsage;
  /** Usage of each model call, in order. */
  callUsages: TokenUsage[];
  toolCalls: ToolCallRecord[];
  iterations: number;
  error: ErrorInfo | null;
  /** Set when a limit ended the loop early. */
  stoppedBy: ToolLoopStop | null;
}

export interface CallModelInput {
  goal: string;
  tick: number;
  progress: string;
  plan: Plan;
  transcript: TranscriptEntry[];
  /** True on the last allowed call: the service asks for a final answer. */
  lastCall: boolean;
  /** Tokens this loop has used so far (for the budget check before the call). */
  spentTokens: number;
  /** The heartbeat's lifetime budget when the loop started (see {@link ToolLoopInput.budget}). */
  budget?: LifetimeBudget | null;
}
export interface CallModelOutput {
  content: string | null;
  toolCalls: ToolCallRequest[];
  usage: TokenUsage;
}

export interface RunToolsInput {
  calls: ToolCallRequest[];
  tick: number;
  /** Model calls made so far in this loop (the calls belong to the last one). */
  iteration: number;
  /** The tick attempt (see {@link ToolLoopInput.attempt}). */
  attempt: string;
}
export interface RunToolsOutput {
  /** One per call, in the order of the calls. */
  results: ToolCallRecord[];
  /** Full texts returned to the model, by call id (records may be truncated). */
  replies: Record<string, string>;
}
