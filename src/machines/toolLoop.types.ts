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
  /**
   * A loop parked in `awaitingApproval` by a stop (its context): the loop
   * starts from it and waits for the same calls again. Null: a new loop.
   */
  parked?: ToolLoopContext | null;
}

/** Why the loop stopped before the model gave a final answer. */
export type ToolLoopStop = "iterations" | "budget" | "breaker";

export interface ToolLoopContext extends Omit<ToolLoopInput, "parked"> {
  transcript: TranscriptEntry[];
  /** Calls of the current round that wait for the operator (`awaitingApproval`); empty otherwise. */
  pending?: PendingApproval[];
  /** The operator's decisions for the current round's calls, passed to `runTools`. */
  approvals?: ApprovalDecision[];
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
  /** Decisions on the calls an `ask` rule matched (absent in checkpoints written before approvals). */
  approvals?: ApprovalDecision[];
}
export interface RunToolsOutput {
  /** One per call, in the order of the calls. */
  results: ToolCallRecord[];
  /** Full texts returned to the model, by call id (records may be truncated). */
  replies: Record<string, string>;
}

/** One tool call an `ask` rule matched, waiting for the operator's decision. */
export interface PendingApproval {
  callId: string;
  /** The tool's name (`write_file`). */
  tool: string;
  /** The arguments as the model gave them (raw JSON text). */
  arguments: string;
  /** The `ask` rule that matched (`write(**)`). */
  rule: string;
  /** What the call would do, in words (`write notes.md`). */
  what: string;
  /** When the call started waiting (ISO time, a clock reading of the runtime). */
  since: string;
}

/** The operator's answer to one pending call. */
export interface ApprovalDecision {
  callId: string;
  decision: "approve" | "deny";
  /** Why (a denial's reason reaches the model); null when none was given. */
  reason: string | null;
  /** Where the answer came from: a command (`approve`/`deny`, the API), the terminal prompt, or the timeout's fallback. */
  via: "command" | "terminal" | "timeout";
  /** Who decided (user name and pid of the deciding process); null for a timeout. */
  by: { user: string; pid: number } | null;
  /** When it was decided (ISO time). */
  at: string;
}

/** Input of `screenCalls`: the calls the model just asked for. */
export interface ScreenCallsInput {
  calls: ToolCallRequest[];
  tick: number;
  iteration: number;
  attempt: string;
}
/** Output of `screenCalls`: the calls that need the operator's approval (none: the round runs). */
export interface ScreenCallsOutput {
  pending: PendingApproval[];
}

/** Input of `awaitApproval`: what waits, and which round it belongs to. */
export interface AwaitApprovalInput {
  pending: PendingApproval[];
  tick: number;
  iteration: number;
  attempt: string;
}
/** Output of `awaitApproval`: one decision per pending call. */
export interface AwaitApprovalOutput {
  decisions: ApprovalDecision[];
}
