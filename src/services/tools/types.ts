import type { z } from "zod";
import type { ToolCallRecord } from "../../machines/toolLoop.types.js";

/** What a tool call does, as the policy rules see it (`shell(…)`, `read(…)`, …). */
export type AccessKind = "shell" | "read" | "write" | "edit" | "fetch" | "search" | "browse";

/**
 * One access a tool is about to make: the rule kind and its target (a path as
 * the model sent it, a shell command, a URL, or a search query).
 */
export interface AccessRequest {
  kind: AccessKind;
  target: string;
}

/** Where a tool may act. Both paths are absolute and already resolved with `realpath`. */
export interface ToolContext {
  /** The workspace root; every path a tool touches must resolve inside it. */
  workdir: string;
  /** The heartbeat's state dir; tools may never read, list or write inside it. */
  stateDir: string;
  /** Aborted when the tick is stopped. */
  signal?: AbortSignal;
  /**
   * Secret values (the API key): a shell child gets no variable containing
   * one, and tool output has them replaced by `[redacted]`.
   */
  secrets?: string[];
  /**
   * Real paths tools may read but never write or edit (the config files that
   * set the tool policy, so the agent cannot loosen its own rules).
   */
  protectedPaths?: string[];
  /**
   * Lets file tools use paths outside the workdir (tool mode `full`). The
   * state dir and {@link protectedPaths} stay refused.
   */
  allowOutsideWorkdir?: boolean;
  /**
   * Checks one access against the tool policy; throws a refusal. Set by the
   * toolbox for every call; tools that make further accesses while they run
   * (web_fetch following a redirect) call it for each.
   */
  authorize?(access: AccessRequest): Promise<void>;
}

/** One tool offered to the model. */
export interface Tool<Args = unknown> {
  /** Name the model calls it by (`read_file`). */
  name: string;
  /** One or two sentences for the model. */
  description: string;
  /** Arguments; also converted to the JSON schema the model sees. */
  schema: z.ZodType<Args>;
  /**
   * The access the call makes, checked against the tool mode and rules before
   * `run`. Tools without it are not subject to the policy; tools that return
   * `null` check their accesses themselves through `ctx.authorize`.
   */
  access?(args: Args): AccessRequest | null;
  /**
   * For tools whose `access` is null because they check each access as they
   * go (web_fetch and its redirects): the first access, which the tool loop
   * screens against the `ask` rules before the round runs.
   */
  firstAccess?(args: Args): AccessRequest | null;
  /** The rule kind of this tool, for deciding whether a tool mode offers it. */
  kind?: AccessKind;
  /**
   * Runs the tool. Returns the text sent back to the model. Throws
   * PathRefusal or PolicyRefusal for refusals and ordinary
   * errors for failures; the toolbox turns them into answers to the model.
   */
  run(args: Args, ctx: ToolContext): Promise<string>;
  /** Releases what the tool holds for one tick (the browser); called at the end of every tick. */
  endTick?(): Promise<void>;
}

/**
 * The outcome of one tool call, as the model and the journal see it: the tool
 * loop's {@link ToolCallRecord}, before the runtime clips it for the journal.
 */
export type ToolOutcome = ToolCallRecord;
