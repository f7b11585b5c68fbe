/**
 * Types the runtime shares with those who listen to it (the reporter, the
 * host): in their own module so that a listener need not import the runtime.
 */
import type { HeartbeatContext } from "./machines/heartbeat.types.js";
import type { ToolCallRecord } from "./machines/toolLoop.types.js";
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
}
