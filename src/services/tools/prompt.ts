/**
 * The operator prompt for `ask` rules: a yes/no question on a terminal.
 */
import { createInterface } from "node:readline/promises";

/** Asks the operator a yes/no question; resolves false on "no", on abort and on end of input. */
export type AskOperator = (question: string, signal?: AbortSignal) => Promise<boolean>;

/** Streams of the terminal to ask on. */
export interface PromptStreams {
  input: NodeJS.ReadableStream;
  output: NodeJS.WritableStream;
  /** Whether `input` is an interactive terminal (readline's line editing and Ctrl+C). */
  terminal?: boolean;
  /** Called when the operator presses Ctrl+C at the prompt (the run stops as on SIGINT). */
  onInterrupt?(): void;
}

/**
 * Builds an {@link AskOperator} that writes the question to `output` and
 * reads one line from `input`: `y` or `yes` (any case) is yes, anything else
 * is no. A readline interface is opened per question and closed after, so the
 * input does not keep the process alive between questions.
 */
export function createTerminalPrompter(streams: PromptStreams): AskOperator {
  return async (question, signal) => {
    if (signal?.aborted) return false;
    const rl = createInterface({
      input: streams.input,
      output: streams.output,
      terminal: streams.terminal ?? false,
    });
    // readline swallows Ctrl+C on a terminal: answer no and pass it on.
    const controller = new AbortController();
    rl.on("SIGINT", () => {
      controller.abort();
      streams.onInterrupt?.();
    });
    const closed = new Promise<false>((resolve) => rl.once("close", () => resolve(false)));
    const abort = signal ? AbortSignal.any([signal, controller.signal]) : controller.signal;
    try {
      const answer = await Promise.race([
        rl.question(`\nravenclaws: ${question} [y/N] `, { signal: abort }),
        closed,
      ]);
      return typeof answer === "string" && /^\s*y(es)?\s*$/i.test(answer);
    } catch {
      return false;
    } finally {
      rl.close();
    }
  };
}
