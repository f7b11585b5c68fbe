/**
 * What a running heartbeat prints: progress lines on stderr for people, and
 * with `--json` one JSON event per line on stdout for scripts. Everything
 * goes through the redactor.
 *
 * On a terminal (stderr is a TTY, no `--json`) a live status line (state,
 * tick, countdown to the next tick, tokens so far) sits under the scrolling
 * lines and is redrawn in place; it refreshes every second only while the
 * heartbeat sleeps. `--quiet` prints only errors and the end summary.
 * Colours only on a TTY and only when `NO_COLOR` is unset or empty.
 */
import type { HeartbeatContext, HeartbeatOutput } from "../machines/heartbeat.types.js";
import type {
  ApprovalDecision,
  PendingApproval,
  ToolCallRecord,
} from "../machines/toolLoop.types.js";
import type { RuntimeEvents } from "../runtime.types.js";
import type { StateFile } from "../schemas/stateFile.js";
import type { Redactor } from "./redact.js";
import type { JournalEntry } from "./store/index.js";

/** A stream as the reporter sees it: TTYs have `isTTY` and `columns`. */
export type ReporterStream = NodeJS.WritableStream & { isTTY?: boolean; columns?: number };

/** Where the reporter writes. */
export interface ReporterStreams {
  stdout: ReporterStream;
  stderr: ReporterStream;
}

/** How the reporter behaves. */
export interface ReporterOptions {
  /** JSON events on stdout (and no status line). */
  json: boolean;
  redact: Redactor;
  /** Only errors and the end summary. */
  quiet?: boolean;
  /** Read for `NO_COLOR`. */
  env?: NodeJS.ProcessEnv;
  /** Milliseconds since the epoch; injectable for tests. */
  now?: () => number;
}

type Style = "bold" | "dim" | "red" | "green" | "yellow" | "cyan";
const SGR: Record<Style, [number, number]> = {
  bold: [1, 22],
  dim: [2, 22],
  red: [31, 39],
  green: [32, 39],
  yellow: [33, 39],
  cyan: [36, 39],
};

/** True when `stream` is a terminal and `NO_COLOR` is unset or empty. */
export function colorsFor(stream: ReporterStream, env: NodeJS.ProcessEnv = {}): boolean {
  return stream.isTTY === true && !env.NO_COLOR;
}

/** A styler that wraps text in ANSI codes, or leaves it alone when colours are off. */
export function styler(enabled: boolean): (style: Style, text: string) => string {
  return (style, text) => (enabled ? `\x1b[${SGR[style][0]}m${text}\x1b[${SGR[style][1]}m` : text);
}

const oneLine = (text: string, max = 160) => {
  const flat = text.replace(/\s+/g, " ").trim();
  return flat.length <= max ? flat : `${flat.slice(0, max - 1)}…`;
};

/** `4m 10s`, `1h 5m`. */
function duration(ms: number): string {
  const s = Math.max(0, Math.ceil(ms / 1000));
  if (s < 60) return `${s}s`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m}m ${String(s % 60).padStart(2, "0")}s`;
  const h = Math.floor(m / 60);
  return h < 24 ? `${h}h ${String(m % 60).padStart(2, "0")}m` : `${Math.floor(h / 24)}d ${h % 24}h`;
}

/** `1 tick`, `2 ticks`. */
export function plural(n: number, one: string, many = `${one}s`): string {
  return `${n} ${n === 1 ? one : many}`;
}

const CLEAR_LINE = "\r\x1b[2K";
const PHASES = new Set(["assessing", "planning", "executing"]);

/** What the status line shows. */
interface Live {
  state: string;
  /** Ticks finished. */
  tick: number;
  /** The tick in progress, if any. */
  current: number | null;
  maxTicks: number;
  tokens: number;
  nextTickAt: string | null;
}

/** Reports a run's progress. */
export class Reporter implements RuntimeEvents {
  private readonly quiet: boolean;
  private readonly live: boolean;
  private readonly style: (style: Style, text: string) => string;
  private readonly outStyle: (style: Style, text: string) => string;
  private readonly now: () => number;
  private status: Live | null = null;
  private id: string | undefined;
  /** Whether the status line is on screen now. */
  private drawn = false;
  private timer: NodeJS.Timeout | undefined;
  /** Ticks this run finished, and how many of them failed (for the end summary). */
  private ticksRun = 0;
  private ticksFailed = 0;
  private estimateNoticed = false;

  constructor(
    private readonly streams: ReporterStreams,
    private readonly options: ReporterOptions,
  ) {
    this.quiet = options.quiet ?? false;
    this.live = streams.stderr.isTTY === true && !options.json && !this.quiet;
    this.style = styler(colorsFor(streams.stderr, options.env));
    this.outStyle = styler(colorsFor(streams.stdout, options.env));
    this.now = options.now ?? Date.now;
  }

  /** Writes whole lines to stderr, above the status line. */
  private line(text: string): void {
    const clear = this.drawn ? CLEAR_LINE : "";
    this.drawn = false;
    this.streams.stderr.write(`${clear}${this.options.redact(text)}\n`);
    this.draw();
  }

  private event(payload: Record<string, unknown>): void {
    if (!this.options.json) return;
    this.streams.stdout.write(
      `${this.options.redact(JSON.stringify({ ...payload, time: new Date(this.now()).toISOString() }))}\n`,
    );
  }

  /** The status line's text, without styling or clipping. */
  statusText(): string | null {
    const s = this.status;
    if (!s) return null;
    const tick = s.maxTicks > 0 ? `${s.tick}/${s.maxTicks}` : `${s.tick}`;
    const tokens = `${s.tokens.toLocaleString("en-US")} tokens`;
    if (s.state === "sleeping") {
      const next = s.nextTickAt
        ? `next tick in ${duration(Date.parse(s.nextTickAt) - this.now())}`
        : "next tick soon";
      return `sleeping · ${tick} ticks done · ${next} · ${tokens} · Ctrl-C saves and stops`;
    }
    const label = s.state === "persisting" ? "saving" : s.state === "idle" ? "starting" : s.state;
    return `tick ${s.current ?? s.tick} · ${label} · ${tokens}`;
  }

  /** Draws (or redraws) the status line in place, clipped to the terminal width so it never wraps. */
  private draw(): void {
    if (!this.live) return;
    const text = this.statusText();
    if (text === null) return;
    const width = Math.max(10, (this.streams.stderr.columns || 80) - 1);
    const full = `● ${text}`;
    const clipped = full.length > width ? `${full.slice(0, width - 1)}…` : full;
    this.streams.stderr.write(`${CLEAR_LINE}${this.style("dim", clipped)}`);
    this.drawn = true;
  }

  /** Removes the status line and stops its timer. Safe to call more than once. */
  close(): void {
    clearInterval(this.timer);
    this.timer = undefined;
    if (this.drawn) this.streams.stderr.write(CLEAR_LINE);
    this.drawn = false;
    this.status = null;
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
    this.id = info.id;
    if (!this.quiet) {
      this.line(
        `${this.style("bold", `ravenclaws: heartbeat ${info.id}`)} ${info.resumed ? `resumed at tick ${info.tick}` : "started"} · model ${info.model}\n` +
          `  goal: ${oneLine(info.goal, 200)}\n  state: ${info.stateFile}`,
      );
    }
    this.event({ event: "start", ...info });
  }

  state(state: string, context: HeartbeatContext): void {
    const tick = context.current?.number ?? context.tick;
    this.status = {
      state,
      tick: context.tick,
      current: context.current?.number ?? null,
      maxTicks: context.settings.maxTicks,
      tokens: context.usage.totalTokens,
      nextTickAt: context.nextTickAt,
    };
    if (this.live) {
      if (state === "sleeping" && !this.timer) {
        this.timer = setInterval(() => this.draw(), 1_000);
        this.timer.unref();
      } else if (state !== "sleeping" && this.timer) {
        clearInterval(this.timer);
        this.timer = undefined;
      }
    }
    // Sleeping needs no line: the tick line already says when the next tick is.
    if (PHASES.has(state) && !this.quiet) {
      this.line(`${this.style("cyan", `[tick ${tick}]`)} ${state}`);
    } else {
      this.draw();
    }
    this.event({ event: "state", state, tick });
  }

  /** Tool calls wait for the operator: said even with --quiet, since the run waits on somebody. */
  approvalNeeded(pending: PendingApproval[], tick: number, again = false): void {
    const id = this.id ?? "<id>";
    for (const call of pending) {
      this.line(
        `${this.style("cyan", `[tick ${tick}]`)}   ${this.style("yellow", "awaiting approval")}: ${call.tool} wants to ${oneLine(call.what, 100)} (ask rule "${call.rule}", call ${call.callId})`,
      );
    }
    this.line(
      `ravenclaws: decide from any terminal: ravenclaws approve ${id}  or  ravenclaws deny ${id} --reason "…"`,
    );
    this.event({ event: "approval-needed", tick, id, pending, again });
  }

  /** A pending call was decided. */
  approvalDecided(decision: ApprovalDecision, call: PendingApproval): void {
    if (!this.quiet) {
      const who =
        decision.via === "timeout"
          ? "the --ask-timeout fallback"
          : `${decision.by?.user ?? "?"} (pid ${decision.by?.pid ?? "?"})${decision.via === "terminal" ? " at the terminal" : ""}`;
      this.line(
        `ravenclaws: ${call.tool} ${call.callId} ${decision.decision === "approve" ? "approved" : "denied"} by ${who}${decision.reason ? `: ${oneLine(decision.reason, 120)}` : ""}`,
      );
    }
    this.event({ event: "approval", ...decision });
  }

  tool(record: ToolCallRecord, tick: number): void {
    if (!this.quiet) {
      const status = record.status === "ok" ? record.status : this.style("yellow", record.status);
      this.line(
        `${this.style("cyan", `[tick ${tick}]`)}   ${record.name} ${status}: ${oneLine(record.content, 120)}`,
      );
    }
    this.event({ event: "tool", tick, ...record });
  }

  persisted(file: StateFile, entries: JournalEntry[]): void {
    for (const entry of entries) {
      if (entry.type === "daily-budget") {
        const usage = entry.usage as { totalTokens: number; costUsd?: number };
        const text = `ravenclaws: daily budget reached on ${entry.day} (${usage.totalTokens} tokens${
          usage.costUsd !== undefined ? `, $${usage.costUsd}` : ""
        } today): sleeping until the next day starts, ${String(entry.nextTickAt)} (${String(entry.timezone)}).`;
        if (!this.quiet) this.line(this.style("yellow", text));
        this.event({ event: "daily-budget", ...entry });
        continue;
      }
      if (entry.type !== "tick") continue;
      this.noticeEstimate(entry);
      const usage = entry.usage as { calls: number; totalTokens: number };
      const errors = (entry.errors as { phase: string; message: string }[]) ?? [];
      const status = String(entry.status);
      if (status !== "interrupted") this.ticksRun += 1;
      if (status === "failed") this.ticksFailed += 1;
      if (this.status) this.status.tokens = file.usage.totalTokens;
      if (!this.quiet || errors.length > 0) {
        const detail =
          errors.length > 0
            ? this.style(
                "red",
                errors.map((e) => `${e.phase} failed: ${oneLine(e.message, 200)}`).join("; "),
              )
            : status === "quiet"
              ? "the workspace is unchanged since the last idle tick: no model call"
              : oneLine(String(entry.assessment ?? ""), 160);
        const shown =
          status === "failed"
            ? this.style("red", status)
            : status === "ok"
              ? this.style("green", status)
              : status;
        this.line(
          `${this.style("cyan", `[tick ${entry.tick}]`)} ${shown} · ${plural(usage.calls, "model call")}, ${usage.totalTokens} tokens${
            file.status === "sleeping" ? this.describeNext(file) : ""
          }\n  ${detail}`,
        );
      }
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

  /** Once per run: the server sends no `usage`, so tokens (budgets, costs) are estimated. */
  private noticeEstimate(entry: JournalEntry): void {
    const estimated = (entry.usage as { estimatedCalls?: number } | undefined)?.estimatedCalls ?? 0;
    if (estimated <= 0 || this.estimateNoticed) return;
    this.estimateNoticed = true;
    const text =
      "ravenclaws: the model server sends no token usage; tokens are estimated (characters / 4) for the budgets and costs, and marked estimated in the journal and state.";
    if (!this.quiet) this.line(this.style("yellow", text));
    this.event({ event: "notice", code: "usage-estimated", message: text });
  }

  private describeNext(file: StateFile): string {
    if (!file.nextTickAt) return "";
    const seconds = Math.max(0, Math.round((Date.parse(file.nextTickAt) - this.now()) / 1000));
    return ` · next tick at ${file.nextTickAt} (in ${seconds}s)`;
  }

  /** The run ended. */
  end(output: HeartbeatOutput, stateFile: string): void {
    this.close();
    const reason = output.reason ?? "";
    const failedTicks =
      this.ticksFailed > 0
        ? ` ${this.ticksFailed} of this run's ${plural(this.ticksRun, "tick")} failed.`
        : "";
    const what =
      output.status === "completed"
        ? reason === "goal-met"
          ? `Heartbeat completed: goal met at tick ${output.tick}.${failedTicks}`
          : `Heartbeat completed after ${plural(output.tick, "tick")} (max ticks reached).${failedTicks}`
        : output.status === "shutdown" && reason === "awaiting-approval"
          ? `Heartbeat stopped at tick ${output.tick} while tool calls await approval; they stay pending (\`ravenclaws approvals\`). Resume it with --id.`
          : output.status === "shutdown"
            ? `Heartbeat shut down at tick ${output.tick}; state saved. Resume it with --id.${failedTicks}`
            : reason === "last-tick-failed"
              ? `Heartbeat failed at tick ${output.tick}: max ticks reached, but the last tick failed.${failedTicks}`
              : `Heartbeat failed at tick ${output.tick} (${reason}).${failedTicks}`;
    const usage = `Tokens: ${output.usage.totalTokens} in ${plural(output.usage.calls, "model call")}.`;
    const progress = output.progress ? `\nFinal progress: ${output.progress}` : "";
    if (this.options.json) {
      this.event({ event: "end", ...output, stateFile });
      this.line(`${what} ${usage}`);
    } else {
      const colour =
        output.status === "failed" ? "red" : output.status === "completed" ? "green" : "bold";
      this.streams.stdout.write(
        `${this.options.redact(`${this.outStyle(colour, what)} ${usage}${progress}`)}\n`,
      );
    }
  }

  /**
   * `run --id` found the heartbeat ended and ran nothing: how and when it
   * ended, and (`further`) the command that would continue it.
   */
  finished(id: string, file: StateFile, further: string | null): void {
    const reason = file.reason ?? "";
    const when = `on ${file.updatedAt}`;
    const what =
      file.status === "completed"
        ? reason === "goal-met"
          ? `Heartbeat ${id} completed: goal met at tick ${file.tick} (${when}).`
          : `Heartbeat ${id} completed after ${plural(file.tick, "tick")} (max ticks reached, ${when}).`
        : reason === "last-tick-failed"
          ? `Heartbeat ${id} failed at tick ${file.tick}: max ticks reached, but the last tick failed (${when}).`
          : `Heartbeat ${id} failed at tick ${file.tick} (${reason}, ${when}).`;
    const usage = `Tokens: ${file.usage.totalTokens} in ${plural(file.usage.calls, "model call")}.`;
    this.note(
      file.completed
        ? `ravenclaws: heartbeat ${id} already met its goal at tick ${file.tick}; nothing to do.`
        : `ravenclaws: heartbeat ${id} has ended; nothing was run.${further ? ` To run it further: ${further}` : ""}`,
    );
    if (this.options.json) {
      this.event({
        event: "end",
        finished: true,
        status: file.status,
        reason: file.reason,
        tick: file.tick,
        completed: file.completed,
        usage: file.usage,
        endedAt: file.updatedAt,
      });
      this.line(`${what} ${usage}`);
    } else {
      const colour = file.status === "failed" ? "red" : "green";
      this.streams.stdout.write(
        `${this.options.redact(`${this.outStyle(colour, what)} ${usage}`)}\n`,
      );
    }
  }

  /** A note for people (stderr only; not with `--quiet`). */
  note(text: string): void {
    if (!this.quiet) this.line(text);
  }
}
