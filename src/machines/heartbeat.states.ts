/**
 * The heartbeat's state names, with no dependency: read commands (`status`,
 * the store's state-file checks) use them without loading xstate.
 */
export const HEARTBEAT_STATES = [
  "idle",
  "assessing",
  "planning",
  "executing",
  "persisting",
  "sleeping",
  "completed",
  "failed",
  "shutdown",
] as const;
