/**
 * Output streams whose reader went away. A closed stdout or stderr
 * (`ravenclaws logs x | head -1`, `run … 2>&1 | head -5`, a terminal that
 * went away) must not kill the process, and a heartbeat must go on ticking
 * and persisting. Node throws a stream's unhandled `error` event (EPIPE);
 * {@link surviveClosedOutput} installs one listener per stream, once, where
 * the CLI starts, so no command needs a try/catch around its writes. Node
 * never destroys `process.stdout`/`stderr`, so later writes fail again and
 * are dropped by the same listener; {@link outputClosed} tells a command
 * that nobody reads any more, so it can stop producing output.
 */

const failed = new WeakSet<NodeJS.WritableStream>();

function markClosed(this: NodeJS.WritableStream): void {
  failed.add(this);
}

/** Makes a write error on each of `streams` end that stream's output instead of the process. Idempotent. */
export function surviveClosedOutput(streams: readonly NodeJS.WritableStream[]): void {
  for (const stream of streams) {
    if (!stream.listeners("error").includes(markClosed)) stream.on("error", markClosed);
  }
}

/** Whether a write to `stream` has failed (its reader closed the pipe): nothing written to it arrives any more. */
export function outputClosed(stream: NodeJS.WritableStream): boolean {
  return failed.has(stream);
}

/**
 * Resolves once everything written to `stream` so far has been handed to the
 * OS, or the stream failed. Node queues a write to a pipe that is full (a
 * slow reader: `logs x | less`), and `process.exit` drops that queue.
 */
export function flushed(stream: NodeJS.WritableStream): Promise<void> {
  return new Promise((resolve) => {
    // Writes complete in order: this one's callback comes after all before it.
    stream.write("", () => resolve());
  });
}
