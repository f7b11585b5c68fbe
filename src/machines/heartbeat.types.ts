/**
 * Context, events, input and output of the heartbeat statechart, and the
 * inputs and outputs of its invoked actors. Types only: the machine stays pure.
 */
import type { ErrorInfo } from "../errors.js";
import type { ToolCallRecord, ToolLoopContext } from "./toolLoop.types.js";

/** Token usage of one or more model calls. */
export interface TokenUsage {
  /** Model calls made. */
  calls: number;
  promptTokens: number;
  completionTokens: number;
  totalTokens: number;
  /**
   * Calls among `calls` whose reply carried no `usage`: their tokens are an
   * estimate (prompt and reply characters / 4). Absent when there are none.
   */
  estimatedCalls?: number;
  /**
   * Prompt tokens among `promptTokens` that the server served from its prompt
   * cache (`prompt_tokens_details.cached_tokens`). Absent when none were reported.
   */
  cachedTokens?: number;
}

/** Prices per million tokens, in US dollars; `cachedInput` for cached prompt tokens (else `input`). */
export interface Prices {
  input?: number | undefined;
  output?: number | undefined;
  cachedInput?: number | undefined;
}

/** The assessment the model returns at the start of every tick. */
export interface Assessment {
  /** True only when the goal is fully achieved. Never derived from text. */
  goalComplete: boolean;
  /** False when nothing needs doing now: planning and executing are skipped. */
  actionNeeded: boolean;
  /** A short assessment of where things stand. */
  assessment: string;
  /** The updated rolling progress summary (bounded). */
  progressSummary: string;
  /** What a human should know now, in one sentence (sent as an `attention` notification); null on an ordinary tick. */
  attention?: string | null;
  /** Checklist changes the model asks for: tasks it did (by text) and recurring tasks it adds. */
  checklist?: ChecklistUpdate | null;
}

/** What an assessment may change in the checklist (never the file itself). */
export interface ChecklistUpdate {
  /** Tasks done this tick, by their text: their last run becomes this tick's end. */
  done: string[];
  /** Recurring tasks to add (kept in the state file). */
  add: Array<{ task: string; everySec: number }>;
}

/** A recurring checklist task (`- [every 1h] Check the plants`). */
export interface ChecklistTask {
  task: string;
  /** Its period in seconds. */
  everySec: number;
  /** From the checklist file, or added by the model (kept in the state file). */
  source: "file" | "model";
}

/** The checklist as read at the start of a tick. */
export interface ChecklistView {
  /** The file it was read from. */
  path: string;
  /** The standing instructions: the file's text without its recurring-task lines, capped. */
  text: string;
  /** The text was cut at the cap; `bytes` is its full size. */
  truncated: boolean;
  bytes: number;
  /** Its recurring tasks. */
  tasks: ChecklistTask[];
}

/** What the `observe` actor saw at the start of a tick. */
export interface Observation {
  /** The workspace fingerprint, or null when not taken (quiet ticks off) or not available. */
  fingerprint: string | null;
  /** The checklist, or null when there is none. */
  checklist: ChecklistView | null;
}

/** The checklist's state in the context: the tasks known and when each last ran. */
export interface ChecklistState {
  tasks: ChecklistTask[];
  /** Task text → when it last ran (the end of the tick that did it, ISO). */
  runs: Record<string, string>;
}

/** Tokens used on one calendar day (in the heartbeat's time zone). */
export interface DayUsage {
  /** `YYYY-MM-DD`. */
  date: string;
  usage: TokenUsage;
}

/** What lets the next tick be quiet: the last model call found nothing to do in this workspace. */
export interface QuietState {
  /** The workspace fingerprint taken when that idle tick began. */
  fingerprint: string;
  /** When the last tick with a model call began (ISO). */
  lastCallAt: string;
}

/** The plan for one tick. */
export interface Plan {
  steps: string[];
}

/** One model call and what it cost. */
export interface ModelCallRecord extends Omit<TokenUsage, "calls" | "estimatedCalls"> {
  phase: "assess" | "plan" | "execute";
  /** The tokens are an estimate: the reply carried no `usage`. */
  estimated?: true;
}

/** Settings of a run; they come from the command line and config each time a heartbeat runs. */
export interface HeartbeatSettings {
  /** Stop (completed) after this many ticks; 0 = unlimited. */
  maxTicks: number;
  /** Seconds between ticks; 0 = back to back. */
  tickIntervalSec: number;
  /** Model calls allowed in one execute phase. */
  maxIterationsPerTick: number;
  /** Tool calling in the execute phase. */
  toolsEnabled: boolean;
  /** End in `failed` after this many failed ticks in a row. */
  maxConsecutiveFailures: number;
  /** Lifetime token budget; 0 = unlimited. Spent: the heartbeat ends `failed` with reason `budget`. */
  maxTokens: number;
  /** Token budget of one tick; 0 = unlimited. Spent: the tick's execute loop ends early. */
  maxTokensPerTick: number;
  /** Delay after the first failed tick in a row, doubled for each further one (capped); 0 = none. */
  failureBackoffSec: number;
  /** Cron expression for tick times instead of the fixed interval (the runtime evaluates it). */
  cron: string | null;
  /** Window in which ticks may run, `HH:MM-HH:MM`; ticks due outside it are moved to its start. */
  activeHours: string | null;
  /** IANA time zone for `cron` and `activeHours`; null = the system's. */
  timezone: string | null;
  /**
   * Seconds after the last model call until an unchanged, idle workspace is
   * assessed again; quiet ticks (no model call) in between. 0 or absent = off.
   */
  idleRecheckSec?: number;
  /** Tokens per calendar day (in `timezone`); reached: sleep until the next day. 0 or absent = none. */
  maxTokensPerDay?: number;
  /** US dollars per calendar day at `prices`; reached: sleep until the next day. 0 or absent = none. */
  maxCostPerDay?: number;
  /** Prices for the daily cost cap. */
  prices?: Prices | null;
}

/** Why a tick started. */
export type WakeReason = "start" | "resume" | "timer" | "wake" | "catch-up" | "retry";

/** A phase that failed in a tick. */
export interface PhaseError extends ErrorInfo {
  phase: "assess" | "plan" | "execute";
}

/** The tick being worked on. */
export interface CurrentTick {
  /** Its number (the heartbeat's `tick` + 1 until it finishes). */
  number: number;
  startedAt: string;
  wakeReason: WakeReason;
  assessment: Assessment | null;
  plan: Plan | null;
  result: string | null;
  errors: PhaseError[];
  usage: TokenUsage;
  /** Every model call of the tick, in order, with its token usage. */
  modelCalls: ModelCallRecord[];
  toolCalls: ToolCallRecord[];
  /** Set when `heartbeat.stop` cut the tick short; such a tick is not counted. */
  interrupted: boolean;
  /** What `observe` saw when the tick began. */
  observed?: Observation | null;
  /** The checklist tasks that were due when the tick began (in its prompt). */
  due?: ChecklistTask[];
  /** Set for a quiet tick: no model call, because nothing can have changed. */
  quiet?: "unchanged";
}

/** One line of recent history, carried into the next prompts. */
export interface TickDigest {
  tick: number;
  at: string;
  outcome: "ok" | "idle" | "failed";
  summary: string;
}

/** Where a heartbeat goes after persisting. */
export type OutcomeStatus = "sleeping" | "completed" | "failed" | "shutdown";

/**
 * Why a heartbeat ended: `goal-met`, `max-ticks`, `last-tick-failed` (max ticks
 * reached, but the last tick failed), `signal`, `too-many-failures`, `budget`,
 * or a fatal error's code.
 */
export type EndReason = string;

export interface Outcome {
  status: OutcomeStatus;
  reason: EndReason | null;
}

/** The statechart's context; everything in it is JSON and goes into the state file. */
export interface HeartbeatContext {
  id: string;
  goal: string;
  createdAt: string;
  settings: HeartbeatSettings;
  /** Ticks finished. */
  tick: number;
  /** Rolling progress summary. */
  progress: string;
  lastAssessment: Assessment | null;
  lastPlan: Plan | null;
  lastResult: string | null;
  completed: boolean;
  /** When the next tick is due (ISO time), while sleeping. */
  nextTickAt: string | null;
  usage: TokenUsage;
  consecutiveFailures: number;
  digests: TickDigest[];
  current: CurrentTick | null;
  outcome: Outcome | null;
  /** The fatal error that ended the heartbeat, if any. */
  error: ErrorInfo | null;
  /** Persist sequence number; increases with every state write. */
  seq: number;
  /** True when this run resumed a heartbeat rather than starting it. */
  resumed: boolean;
  /** Ticks the schedule skipped since the last persist (outside the active hours); journaled, then cleared. */
  skipped: SkippedTick[];
  /**
   * The last clock reading (ISO time), stored by the injected `readClock`
   * action: the machine's only source of time (tick start and end, planning).
   * Absent in state files written before it existed.
   */
  now: string;
  /** Why the next tick will start, when that was decided before it (the first tick of a run); else null. */
  wake: WakeReason | null;
  /** Set after an idle tick: what the next tick compares to be quiet. Null otherwise; absent in older files. */
  quiet?: QuietState | null;
  /** When the last counted tick ended (quiet ones too): the planner's start. Absent in older files. */
  lastTickAt?: string | null;
  /** The checklist's tasks and their last runs. Absent in older files. */
  checklist?: ChecklistState;
  /** Usage of the current calendar day, for the daily caps. Absent in older files. */
  day?: DayUsage | null;
  /**
   * The tool loop while it waits in `awaitingApproval` (its whole context, as
   * `toolLoop.parked` reported it); null otherwise. A stop while it is set
   * ends the run `shutdown` keeping it and `current`, and the next run goes
   * back to waiting for the same calls. Absent in older files.
   */
  parked?: ToolLoopContext | null;
}

/** A tick the schedule did not run. */
export interface SkippedTick {
  /** When it was due. */
  due: string;
  /** When the next tick runs instead. */
  next: string;
  reason: "outside-active-hours";
}

/** What a resumed heartbeat carries over from its state file. */
export type ResumeRecord = Pick<
  HeartbeatContext,
  | "tick"
  | "progress"
  | "lastAssessment"
  | "lastPlan"
  | "lastResult"
  | "completed"
  | "nextTickAt"
  | "usage"
  | "consecutiveFailures"
  | "digests"
  | "seq"
  | "quiet"
  | "lastTickAt"
  | "checklist"
  | "day"
> &
  /** A run stopped while tool calls awaited approval: the tick in progress and its parked tool loop. */
  Partial<Pick<HeartbeatContext, "current" | "parked">>;

export interface HeartbeatInput {
  id: string;
  goal: string;
  createdAt: string;
  settings: HeartbeatSettings;
  /** Present when resuming from a state file whose snapshot has ended. */
  resume?: ResumeRecord;
}

/** Events sent to the heartbeat from outside (signals, `ravenclaws wake`, the runtime). */
export type HeartbeatEvent =
  | { type: "heartbeat.start" }
  | { type: "heartbeat.stop" }
  | { type: "heartbeat.wake" }
  /** From the tool loop (`execute`): it waits for approval now (its context), or no longer. */
  | { type: "toolLoop.parked"; loop: ToolLoopContext }
  | { type: "toolLoop.unparked" };

export interface HeartbeatOutput {
  status: OutcomeStatus;
  reason: EndReason | null;
  tick: number;
  completed: boolean;
  usage: TokenUsage;
  progress: string;
  error: ErrorInfo | null;
}

/** The lifetime token budget as it stands when an actor starts: null when there is none. */
export interface LifetimeBudget {
  /** `--max-tokens`. */
  maxTokens: number;
  /** Tokens the heartbeat has used so far. */
  usedTokens: number;
}

export interface AssessInput {
  /** For the runtime's check before the model call; not part of the prompt. */
  budget?: LifetimeBudget | null;
  goal: string;
  tick: number;
  progress: string;
  digests: TickDigest[];
  wakeReason: WakeReason;
  /** The checklist's standing instructions, when there is one. */
  checklist?: Pick<ChecklistView, "path" | "text" | "truncated" | "bytes"> | null;
  /** Recurring tasks due now. */
  dueTasks?: ChecklistTask[];
}
export interface AssessOutput {
  assessment: Assessment;
  usage: TokenUsage;
}

export interface PlanInput {
  /** For the runtime's check before the model call; not part of the prompt. */
  budget?: LifetimeBudget | null;
  goal: string;
  tick: number;
  progress: string;
  assessment: Assessment;
}
export interface PlanOutput {
  plan: Plan;
  usage: TokenUsage;
}

export interface PersistInput {
  seq: number;
  status: OutcomeStatus;
  reason: EndReason | null;
}

export interface SleepInput {
  until: string;
}
export interface SleepOutput {
  /** The deadline had already passed when the sleep began (downtime, suspend). */
  late: boolean;
  /** When the sleep ended (ISO time): the machine checks it against the active hours. */
  at: string;
}

export interface ObserveInput {
  /** Take the workspace fingerprint (quiet ticks are on). */
  fingerprint: boolean;
}
export type ObserveOutput = Observation;
