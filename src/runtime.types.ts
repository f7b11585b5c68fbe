/**
 * Types the runtime shares with those who listen to it (the reporter, the
 * host): in their own module so that a listener need not import the runtime.
 */
import type { HeartbeatContext } from "./machines/heartbeat.types.js";
import type {
  ApprovalDecision,
  PendingApproval,
  ToolCallRecord,
} from "./machines/toolLoop.types.js";
import type { StateFile } from "./schemas/stateFile.js";
import type { JournalEntry } from "./services/store/index.js";

/** What the runtime tells the outside world while it runs. */
export interface RuntimeEvents {
  /** The heartbeat entered a state. */
  state?(state: string, context: HeartbeatContext): void;
  /**
   * The tool loop (the child statechart of `executing`) entered a state, as
   * the dotted path from the heartbeat's root: `executing.calling`.
   */
  toolLoopState?(path: string): void;
  /** A tick (or the run) was persisted; `entries` are the journal lines written. */
  persisted?(file: StateFile, entries: JournalEntry[]): void;
  /** A tool call finished. */
  tool?(record: ToolCallRecord, tick: number): void;
  /**
   * Tool calls matched by `ask` rules wait for the operator (the state file
   * already says so): the hook for the `approval-needed` notification.
   * `again` is true when a restored heartbeat waits for calls it already
   * announced (journaled `approval-needed`) before a crash or a stop.
   */
  approvalNeeded?(
    pending: PendingApproval[],
    tick: number,
    again: boolean,
    heartbeat: { id: string; goal: string },
  ): void;
  /** The operator (or the timeout) decided a pending call; it is journaled. */
  approvalDecided?(decision: ApprovalDecision, call: PendingApproval): void;
}
