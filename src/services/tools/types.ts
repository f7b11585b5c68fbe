import type { z } from "zod";
import type { ToolCallRecord } from "../../machines/toolLoop.types.js";

/** Where a tool may act. Both paths are absolute and already resolved with `realpath`. */
export interface ToolContext {
  /** The workspace root; every path a tool touches must resolve inside it. */
  workdir: string;
  /** The heartbeat's state dir; tools may never read, list or write inside it. */
  stateDir: string;
  /** Aborted when the tick is stopped. */
  signal?: AbortSignal;
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
   * Runs the tool. Returns the text sent back to the model. Throws
   * {@link SandboxError} for confinement refusals and ordinary errors for
   * failures; the toolbox turns both into answers to the model.
   */
  run(args: Args, ctx: ToolContext): Promise<string>;
}

/**
 * The outcome of one tool call, as the model and the journal see it: the tool
 * loop's {@link ToolCallRecord}, before the runtime clips it for the journal.
 */
export type ToolOutcome = ToolCallRecord;
