/**
 * Constants of the heartbeat statechart that services share, with no
 * dependency: the store, the prompts and the model adapter use them without
 * loading xstate (house style: services import no machine file).
 */

/** The state names, as they show in `status`, logs and the inspector. */
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

/**
 * Longest progress summary kept, in characters: the one part of the prompt
 * that grows with a heartbeat's history, so it bounds the prompt's growth.
 */
export const PROGRESS_LIMIT = 1000;
