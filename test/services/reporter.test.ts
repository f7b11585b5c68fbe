/**
 * The reporter with fake streams: plain lines when not a TTY, a live status
 * line redrawn in place on a TTY, `--quiet`, `NO_COLOR`.
 */
import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import type { HeartbeatContext, HeartbeatOutput } from "../../src/machines/heartbeat.types.js";
import type { StateFile } from "../../src/schemas/stateFile.js";
import { createRedactor } from "../../src/services/redact.js";
import { colorsFor, Reporter, type ReporterStream } from "../../src/services/reporter.js";

const ESC = "\u001b";
const SGR = new RegExp(`${ESC}\\[\\d+m`);
const stripSgr = (text: string) => text.replace(new RegExp(`${ESC}\\[\\d+m`, "g"), "");
const CLEAR = "\r\x1b[2K";

function stream(isTTY: boolean, columns = 100) {
  const chunks: string[] = [];
  const s = {
    isTTY,
    columns,
    write(chunk: string | Uint8Array) {
      chunks.push(String(chunk));
      return true;
    },
  };
  return { stream: s as unknown as ReporterStream, chunks, text: () => chunks.join("") };
}

const NOW = Date.parse("2026-03-01T10:00:00.000Z");
const usage = (totalTokens: number) => ({
  calls: 1,
  promptTokens: totalTokens,
  completionTokens: 0,
  totalTokens,
});

function context(patch: Partial<HeartbeatContext> = {}): HeartbeatContext {
  return {
    id: "r1",
    goal: "Test the reporter",
    createdAt: new Date(NOW).toISOString(),
    settings: { maxTicks: 10 },
    tick: 0,
    nextTickAt: null,
    usage: usage(0),
    current: null,
    ...patch,
  } as unknown as HeartbeatContext;
}

function tickEntry(tick: number, status = "ok", errors: object[] = []) {
  return {
    type: "tick",
    seq: tick,
    tick,
    status,
    wakeReason: "timer",
    usage: { calls: 2, totalTokens: 1200 },
    errors,
    assessment: `assessment of tick ${tick}`,
  };
}

const sleepingFile = (tick: number, nextTickAt: string) =>
  ({
    status: "sleeping",
    tick,
    nextTickAt,
    usage: usage(1200 * tick),
  }) as unknown as StateFile;

const output: HeartbeatOutput = {
  status: "completed",
  reason: "max-ticks",
  tick: 2,
  completed: false,
  usage: usage(2400),
  progress: "All done",
  error: null,
};

function setup(options: {
  tty: boolean;
  quiet?: boolean;
  json?: boolean;
  env?: NodeJS.ProcessEnv;
  columns?: number;
}) {
  const stdout = stream(options.tty, options.columns);
  const stderr = stream(options.tty, options.columns);
  const reporter = new Reporter(
    { stdout: stdout.stream, stderr: stderr.stream },
    {
      json: options.json ?? false,
      redact: createRedactor(["sk-secret-123456"]),
      quiet: options.quiet ?? false,
      env: options.env ?? {},
      now: () => Date.now(),
    },
  );
  return { reporter, stdout, stderr };
}

/** Drives one tick and a sleep of 3 seconds through the reporter. */
function oneTick(reporter: Reporter) {
  reporter.start({
    id: "r1",
    goal: "Test the reporter",
    resumed: false,
    tick: 0,
    stateFile: "/tmp/x/heartbeat-r1.json",
    model: "m",
  });
  reporter.state("assessing", context({ current: { number: 1 } as HeartbeatContext["current"] }));
  reporter.state(
    "executing",
    context({ current: { number: 1 } as HeartbeatContext["current"], usage: usage(800) }),
  );
  const next = new Date(NOW + 3_000).toISOString();
  reporter.persisted(sleepingFile(1, next), [tickEntry(1)]);
  reporter.state("sleeping", context({ tick: 1, nextTickAt: next, usage: usage(1200) }));
}

beforeEach(() => {
  vi.useFakeTimers();
  vi.setSystemTime(NOW);
});
afterEach(() => {
  vi.useRealTimers();
});

describe("Reporter", () => {
  it("prints plain lines when stderr is not a TTY: no status line, no colours, no carriage returns", () => {
    const { reporter, stdout, stderr } = setup({ tty: false });
    oneTick(reporter);
    vi.advanceTimersByTime(5_000);
    reporter.end(output, "/tmp/x/heartbeat-r1.json");
    const err = stderr.text();
    expect(err).toContain("ravenclaws: heartbeat r1 started");
    expect(err).toContain("[tick 1] assessing\n");
    expect(err).toContain("[tick 1] ok · 2 model calls, 1200 tokens · next tick at");
    expect(err).not.toContain("\r");
    expect(err).not.toMatch(SGR);
    expect(stdout.text()).toBe(
      "Heartbeat completed after 2 ticks (max ticks reached). Tokens: 2400 in 1 model call.\nFinal progress: All done\n",
    );
    expect(vi.getTimerCount()).toBe(0);
  });

  it("says how many of the run's ticks failed, with singular and plural wording", () => {
    const { reporter, stdout } = setup({ tty: false });
    oneTick(reporter);
    reporter.persisted(sleepingFile(2, new Date(NOW + 3_000).toISOString()), [
      { ...tickEntry(2, "failed", [{ phase: "assess", message: "no" }]), usage: usage(15) },
    ]);
    reporter.end(
      { ...output, status: "failed", reason: "last-tick-failed", tick: 2, usage: usage(15) },
      "/tmp/x/heartbeat-r1.json",
    );
    expect(stdout.text()).toContain(
      "Heartbeat failed at tick 2: max ticks reached, but the last tick failed. 1 of this run's 2 ticks failed. Tokens: 15 in 1 model call.",
    );

    const one = setup({ tty: false });
    one.reporter.end({ ...output, tick: 1 }, "/tmp/x/heartbeat-r1.json");
    expect(one.stdout.text()).toContain("Heartbeat completed after 1 tick (max ticks reached).");
    expect(one.stdout.text()).not.toContain("failed");
  });

  it("on a TTY keeps a status line under the scrolling lines and counts down every second while sleeping", () => {
    const { reporter, stderr } = setup({ tty: true });
    oneTick(reporter);
    const afterSleep = stderr.text();
    // The last thing on screen is the status line, without a newline, after a clear.
    const last = afterSleep.slice(afterSleep.lastIndexOf(CLEAR) + CLEAR.length);
    expect(last).toContain("sleeping · 1/10 ticks done · next tick in 3s · 1,200 tokens");
    expect(last).not.toContain("\n");
    // Every scrolled line first clears the status line, then redraws it below.
    expect(afterSleep).toContain(
      `${CLEAR}\x1b[2m● tick 1 · assessing · 0 tokens\x1b[22m${CLEAR}\x1b[36m[tick 1]\x1b[39m executing\n`,
    );
    expect(afterSleep).toMatch(/tick 1 · executing · 800 tokens/);

    const before = stderr.chunks.length;
    vi.advanceTimersByTime(1_000);
    expect(stderr.chunks.length).toBe(before + 1);
    expect(stderr.chunks.at(-1)).toContain("next tick in 2s");
    vi.advanceTimersByTime(1_000);
    expect(stderr.chunks.at(-1)).toContain("next tick in 1s");

    // Ticking again: no refresh timer outside sleeping.
    reporter.state(
      "assessing",
      context({ tick: 1, current: { number: 2 } as HeartbeatContext["current"] }),
    );
    expect(vi.getTimerCount()).toBe(0);
    reporter.state(
      "sleeping",
      context({ tick: 2, nextTickAt: new Date(NOW + 60_000).toISOString() }),
    );
    expect(vi.getTimerCount()).toBe(1);

    reporter.end(output, "/tmp/x/heartbeat-r1.json");
    expect(vi.getTimerCount()).toBe(0);
    expect(stderr.text().endsWith(CLEAR)).toBe(true);
    const written = stderr.chunks.length;
    vi.advanceTimersByTime(5_000);
    expect(stderr.chunks.length).toBe(written);
  });

  it("uses colours on a TTY only while NO_COLOR is unset or empty", () => {
    expect(colorsFor(stream(true).stream, {})).toBe(true);
    expect(colorsFor(stream(true).stream, { NO_COLOR: "" })).toBe(true);
    expect(colorsFor(stream(true).stream, { NO_COLOR: "1" })).toBe(false);
    expect(colorsFor(stream(false).stream, {})).toBe(false);

    const { reporter, stdout, stderr } = setup({ tty: true, env: { NO_COLOR: "1" } });
    oneTick(reporter);
    reporter.end(output, "/tmp/x/heartbeat-r1.json");
    expect(stderr.text()).toContain("sleeping · 1/10 ticks done");
    expect(stderr.text()).not.toMatch(SGR);
    expect(stdout.text()).not.toMatch(SGR);

    const coloured = setup({ tty: true });
    coloured.reporter.end(output, "/tmp/x/heartbeat-r1.json");
    expect(coloured.stdout.text()).toContain("\x1b[32mHeartbeat completed");
  });

  it("clips the status line to the terminal width so it never wraps", () => {
    const { reporter, stderr } = setup({ tty: true, columns: 30 });
    oneTick(reporter);
    const text = stderr.text();
    const last = stripSgr(text.slice(text.lastIndexOf(CLEAR) + CLEAR.length));
    expect(last.length).toBeLessThanOrEqual(29);
    expect(last.endsWith("…")).toBe(true);
  });

  it("with --quiet prints only errors and the end summary, even on a TTY", () => {
    const { reporter, stdout, stderr } = setup({ tty: true, quiet: true });
    oneTick(reporter);
    reporter.note("ravenclaws: SIGTERM received");
    reporter.persisted(sleepingFile(2, new Date(NOW + 3_000).toISOString()), [
      tickEntry(2, "failed", [{ phase: "assess", message: "server said sk-secret-123456 is bad" }]),
    ]);
    reporter.end(output, "/tmp/x/heartbeat-r1.json");
    const err = stripSgr(stderr.text());
    expect(err).toBe(
      "[tick 2] failed · 2 model calls, 1200 tokens · next tick at 2026-03-01T10:00:03.000Z (in 3s)\n  assess failed: server said [redacted] is bad\n",
    );
    expect(stdout.text()).toContain("Heartbeat completed after 2 ticks");
    expect(vi.getTimerCount()).toBe(0);
  });

  it("with --json writes events on stdout and draws no status line", () => {
    const { reporter, stdout, stderr } = setup({ tty: true, json: true });
    oneTick(reporter);
    reporter.end(output, "/tmp/x/heartbeat-r1.json");
    expect(stderr.text()).not.toContain("\r");
    expect(vi.getTimerCount()).toBe(0);
    const events = stdout
      .text()
      .trim()
      .split("\n")
      .map((l) => JSON.parse(l).event);
    expect(events).toEqual(["start", "state", "state", "tick", "state", "end"]);
  });
});
