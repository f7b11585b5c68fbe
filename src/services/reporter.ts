/**
 * What a running heartbeat prints: progress lines on stderr for people, and
 * with `--json` one JSON event per line on stdout for scripts. Everything
 * goes through the redactor.
 */
import type { HeartbeatContext, HeartbeatOutput } from "../machines/heartbeat.types.js";
import type { ToolCallRecord } from "../machines/toolLoop.types.js";
import type { RuntimeEvents } from "../runtime.js";
import type { StateFile } from "../schemas/stateFile.js";
import type { Redactor } from "./redact.js";
import type { JournalEntry } from "./store.js";

/** Where the reporter writes. */
export interface ReporterStreams {
  stdout: NodeJS.WritableStream;
  stderr: NodeJS.WritableStream;
}

const oneLine = (text: string, max = 160) => {
  const flat = text.replace(/\s+/g, " ").trim();
  return flat.length <= max ? flat : `${flat.slice(0, max - 1)}…`;
};

function describeNext(file: StateFile): string {
  if (!file.nextTickAt) return "";
  const seconds = Math.max(0, Math.round((Date.parse(file.nextTickAt) - Date.now()) / 1000));
  return ` · next tick at ${file.nextTickAt} (in ${seconds}s)`;
}

/** Reports a run's progress. */
export class Reporter implements RuntimeEvents {
  constructor(
    private readonly streams: ReporterStreams,
    private readonly options: { json: boolean; redact: Redactor },
  ) {}

  private line(text: string): void {
    this.streams.stderr.write(`${this.options.redact(text)}\n`);
  }

  private event(payload: Record<string, unknown>): void {
    if (!this.options.json) return;
    this.streams.stdout.write(
      `${this.options.redact(JSON.stringify({ ...payload, time: new Date().toISOString() }))}\n`,
    );
  }

  /** The run begins. */
  start(info: {
    id: string;
    goal: string;
    resumed: boolean;
    tick: number;
    stateFile: string;
    model: string;
  }): void {
    this.line(
      `ravenclaws: heartbeat ${info.id} ${info.resumed ? `resumed at tick ${info.tick}` : "started"} · model ${info.model}\n` +
        `  goal: ${oneLine(info.goal, 200)}\n  state: ${info.stateFile}`,
    );
    this.event({ event: "start", ...info });
  }

  state(state: string, context: HeartbeatContext): void {
    const tick = context.current?.number ?? context.tick;
    // Sleeping needs no line: the tick line already says when the next tick is.
    if (state === "assessing" || state === "planning" || state === "executing") {
      this.line(`[tick ${tick}] ${state}`);
    }
    this.event({ event: "state", state, tick });
  }

  tool(record: ToolCallRecord, tick: number): void {
    this.line(`[tick ${tick}]   ${record.name} ${record.status}: ${oneLine(record.content, 120)}`);
    this.event({ event: "tool", tick, ...record });
  }

  persisted(file: StateFile, entries: JournalEntry[]): void {
    for (const entry of entries) {
      if (entry.type !== "tick") continue;
      const usage = entry.usage as { calls: number; totalTokens: number };
      const errors = (entry.errors as { phase: string; message: string }[]) ?? [];
      const status = String(entry.status);
      const detail =
        errors.length > 0
          ? errors.map((e) => `${e.phase} failed: ${oneLine(e.message, 200)}`).join("; ")
          : oneLine(String(entry.assessment ?? ""), 160);
      this.line(
        `[tick ${entry.tick}] ${status} · ${usage.calls} model calls, ${usage.totalTokens} tokens${
          file.status === "sleeping" ? describeNext(file) : ""
        }\n  ${detail}`,
      );
      this.event({
        event: "tick",
        tick: entry.tick,
        status,
        wakeReason: entry.wakeReason,
        usage: entry.usage,
        errors,
        next: file.status,
        nextTickAt: file.nextTickAt,
      });
    }
  }

  /** The run ended. */
  end(output: HeartbeatOutput, stateFile: string): void {
    const reason = output.reason ?? "";
    const what =
      output.status === "completed"
        ? reason === "goal-met"
          ? `Heartbeat completed: goal met at tick ${output.tick}.`
          : `Heartbeat completed after ${output.tick} ticks (max ticks reached).`
        : output.status === "shutdown"
          ? `Heartbeat shut down at tick ${output.tick}; state saved. Resume it with --id.`
          : `Heartbeat failed at tick ${output.tick} (${reason}).`;
    const usage = `Tokens: ${output.usage.totalTokens} in ${output.usage.calls} model calls.`;
    const progress = output.progress ? `\nFinal progress: ${output.progress}` : "";
    if (this.options.json) {
      this.event({ event: "end", ...output, stateFile });
      this.line(`${what} ${usage}`);
    } else {
      this.streams.stdout.write(`${this.options.redact(`${what} ${usage}${progress}`)}\n`);
    }
  }

  /** A note for people (stderr only). */
  note(text: string): void {
    this.line(text);
  }
}
