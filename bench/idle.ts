/**
 * Issue 16's figures: what the workspace fingerprint costs, and how many model
 * calls (and assessment prompt tokens) an idle heartbeat makes in 24 hours at
 * the default 300 s interval, against the Rust original and a LangGraph
 * heartbeat. The day is simulated with the real, pure heartbeat machine: time
 * is data (the clock jumps to each sleep's end), so 24 hours take milliseconds.
 */
import { execFileSync } from "node:child_process";
import * as fs from "node:fs/promises";
import * as path from "node:path";
import { performance } from "node:perf_hooks";
import { createActor, fromPromise, toPromise } from "xstate";
import { heartbeatMachine } from "../src/machines/heartbeat.machine.js";
import type {
  AssessInput,
  AssessOutput,
  HeartbeatSettings,
  ObserveOutput,
  SleepInput,
  SleepOutput,
} from "../src/machines/heartbeat.types.js";
import { timeImplementations } from "../src/runtime.js";
import { gitFingerprint, walkFingerprint } from "../src/services/fingerprint.js";
import { assessPrompt, SYSTEM_PROMPT } from "../src/services/prompts.js";
import { originalTick } from "./original.js";
import { type ModelApi, StubModel } from "./stubModel.js";

/** The fingerprint's cost on a tree of `files` files. */
export interface FingerprintFigures {
  files: number;
  /** Median ms of the bounded walk (no git). */
  walkMs: number;
  /** Median ms of the git fingerprint (HEAD, index, status), or null without git. */
  gitMs: number | null;
  runs: number;
}

const median = (values: number[]) => {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)] ?? 0;
};

async function timeIt(runs: number, work: () => unknown | Promise<unknown>): Promise<number> {
  await work();
  const times: number[] = [];
  for (let i = 0; i < runs; i++) {
    const t0 = performance.now();
    await work();
    times.push(performance.now() - t0);
  }
  return Math.round(median(times) * 10) / 10;
}

/** Builds a tree of `files` small files (100 per directory) under `dir` and times both fingerprints. */
export async function measureFingerprint(dir: string, files: number): Promise<FingerprintFigures> {
  const root = path.join(dir, "fingerprint-tree");
  const stateDir = path.join(root, ".ravenclaws");
  await fs.mkdir(stateDir, { recursive: true });
  for (let d = 0; d * 100 < files; d++) {
    const sub = path.join(root, `dir-${d}`);
    await fs.mkdir(sub, { recursive: true });
    const count = Math.min(100, files - d * 100);
    await Promise.all(
      Array.from({ length: count }, (_, i) =>
        fs.writeFile(path.join(sub, `file-${i}.txt`), `file ${d}/${i}\n`),
      ),
    );
  }
  const runs = 7;
  const walkMs = await timeIt(runs, () => walkFingerprint(root, stateDir));
  let gitMs: number | null = null;
  try {
    const env = {
      ...process.env,
      GIT_AUTHOR_NAME: "bench",
      GIT_AUTHOR_EMAIL: "bench@example.invalid",
      GIT_COMMITTER_NAME: "bench",
      GIT_COMMITTER_EMAIL: "bench@example.invalid",
    };
    // No background gc or maintenance: it would write into .git while the tree is removed.
    const git = (...args: string[]) =>
      execFileSync("git", ["-c", "gc.auto=0", "-c", "maintenance.auto=false", ...args], {
        cwd: root,
        env,
        stdio: "ignore",
      });
    git("init", "-q");
    git("add", "-A");
    git("commit", "-q", "-m", "tree");
    if ((await gitFingerprint(root, stateDir)) !== null) {
      gitMs = await timeIt(runs, () => gitFingerprint(root, stateDir));
    }
  } catch {
    gitMs = null;
  }
  return { files, walkMs, gitMs, runs };
}

/** One simulated idle day. */
export interface DayFigures {
  /** Ticks in 24 hours at the interval. */
  ticks: number;
  intervalSec: number;
  /** Model calls with quiet ticks (the default `--idle-recheck 1h`). */
  calls: number;
  /** Model calls with `--idle-recheck 0` (every tick assesses). */
  callsWithoutQuiet: number;
  /** Assessment prompt tokens (system + user message, chars / 4) with quiet ticks, and without. */
  promptTokens: number;
  promptTokensWithoutQuiet: number;
  /** The Rust original, the same day: its loop fed the same idle stub. */
  original: { calls: number; promptTokens: number };
  /** A LangGraph heartbeat (derived): one graph run per interval, at least one model call each. */
  langGraph: { calls: number; promptTokens: number };
  /** Wall time of the simulation, ms. */
  simulatedInMs: number;
}

const IDLE: AssessOutput["assessment"] = {
  goalComplete: false,
  actionNeeded: false,
  assessment: "Nothing changed; nothing to do.",
  progressSummary: "The notes are current.",
};

/**
 * Runs the real heartbeat machine for 24 hours of simulated time: the clock
 * is a variable that each sleep advances to its deadline; the workspace
 * fingerprint never changes; the model always says nothing needs doing.
 */
export async function simulateIdleDay(
  goal: string,
  idleRecheckSec: number,
  intervalSec = 300,
): Promise<{ ticks: number; calls: number; promptTokens: number; ms: number }> {
  const T0 = Date.parse("2026-01-15T00:00:00Z");
  let clock = T0;
  let calls = 0;
  let promptChars = 0;
  const ticks = Math.floor((24 * 3600) / intervalSec);
  const settings: HeartbeatSettings = {
    maxTicks: ticks,
    tickIntervalSec: intervalSec,
    maxIterationsPerTick: 5,
    toolsEnabled: true,
    maxConsecutiveFailures: 5,
    maxTokens: 0,
    maxTokensPerTick: 0,
    failureBackoffSec: 0,
    cron: null,
    activeHours: null,
    timezone: "UTC",
    idleRecheckSec,
  };
  const machine = heartbeatMachine.provide({
    actors: {
      observe: fromPromise<ObserveOutput>(async () => ({
        fingerprint: "walk:unchanged",
        checklist: null,
      })),
      assess: fromPromise<AssessOutput, AssessInput>(async ({ input }) => {
        calls++;
        promptChars += SYSTEM_PROMPT.length + assessPrompt(input, new Date(clock)).length;
        return {
          assessment: IDLE,
          usage: { calls: 1, promptTokens: 0, completionTokens: 0, totalTokens: 0 },
        };
      }),
      persist: fromPromise<void>(async () => {}),
      sleepUntil: fromPromise<SleepOutput, SleepInput>(async ({ input }) => {
        clock = Math.max(clock, Date.parse(input.until));
        return { late: false, at: new Date(clock).toISOString() };
      }),
    } as never,
    actions: timeImplementations(() => clock),
  });
  const t0 = performance.now();
  const actor = createActor(machine, {
    input: { id: "day", goal, createdAt: new Date(T0).toISOString(), settings },
  });
  actor.start();
  actor.send({ type: "heartbeat.start" });
  const out = await toPromise(actor);
  if (out.status !== "completed" || out.tick !== ticks) {
    throw new Error(`the simulated day ended ${out.status} (${out.reason}) at tick ${out.tick}`);
  }
  return { ticks, calls, promptTokens: Math.ceil(promptChars / 4), ms: performance.now() - t0 };
}

/** The day, ours with and without quiet ticks, the original's, and a LangGraph heartbeat's. */
export async function measureIdleDay(
  goal: string,
  tools: Parameters<ModelApi["callWithTools"]>[1],
): Promise<DayFigures> {
  const quiet = await simulateIdleDay(goal, 3600);
  const every = await simulateIdleDay(goal, 0);
  // The original: its loop, one tick per interval, against the same idle stub.
  const model = new StubModel({ busy: () => false });
  const state = { goal, tick: 0, progress: "" };
  let originalChars = 0;
  for (let t = 0; t < quiet.ticks; t++) {
    originalChars += (await originalTick(state, model, tools)).assessPromptChars;
  }
  return {
    ticks: quiet.ticks,
    intervalSec: 300,
    calls: quiet.calls,
    callsWithoutQuiet: every.calls,
    promptTokens: quiet.promptTokens,
    promptTokensWithoutQuiet: every.promptTokens,
    original: { calls: model.total, promptTokens: Math.ceil(originalChars / 4) },
    // Derived, not measured: a graph run per cron interval has no idle gate; its
    // prompt is taken to be as small as ours (a lower bound on its tokens).
    langGraph: { calls: quiet.ticks, promptTokens: every.promptTokens },
    simulatedInMs: Math.round((quiet.ms + every.ms) * 10) / 10,
  };
}
