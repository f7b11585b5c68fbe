/**
 * Crash safety: the CLI is SIGKILLed at named crash points
 * (`RAVENCLAWS_CRASH_AT`, src/services/crashPoints.ts) and at 50 seeded random
 * moments of a busy run. After every kill the state file parses and
 * validates, the tick never goes backwards, and a resume completes the run.
 */
import * as fs from "node:fs/promises";
import * as path from "node:path";
import { describe, expect, it } from "vitest";
import { parseJournal, parseStateFile } from "../../src/services/store/index.js";
import { cleanEnv, runCli, startCli } from "../support/cli.js";
import { message, scripted, toolCalls } from "../support/fakeOpenAI.js";
import { useCliHarness } from "../support/harness.js";

const GOAL = "Keep NOTES.md summarising the TODOs in this repo";

const h = useCliHarness({
  handler: () =>
    scripted({
      execute: (n) =>
        n % 2 === 1
          ? toolCalls([
              {
                name: "write_file",
                arguments: { path: `notes/${n}.md`, content: `note ${n}\n`.repeat(20) },
              },
              { name: "list_dir", arguments: { path: "notes" } },
            ])
          : message("Wrote a note."),
    }),
  flags: ["--goal", GOAL],
});
const { runArgs: args } = h;
const env = (crashAt?: string) =>
  cleanEnv({ OPENAI_API_KEY: "sk-test-0123456789", RAVENCLAWS_CRASH_AT: crashAt });
const files = (id: string) => ({
  state: h.stateFile(id),
  prev: path.join(h.stateDir, `heartbeat-${id}.json.prev`),
  journal: h.journalFile(id),
});

/** The state file (and `.prev`, when there is one), parsed and validated; null when there is none yet. */
async function validState(id: string) {
  const f = files(id);
  const read = (file: string) => fs.readFile(file, "utf8").catch(() => null);
  const [text, prevText] = await Promise.all([read(f.state), read(f.prev)]);
  const prev = prevText === null ? null : parseStateFile(prevText, f.prev);
  if (text === null) {
    expect(prev, "a .prev without a state file").toBeNull();
    return null;
  }
  const state = parseStateFile(text, f.state);
  if (prev) expect(prev.seq).toBeLessThanOrEqual(state.seq);
  return state;
}

/** A journal line parsed, or null when it is not a whole JSON object. */
function entryOf(line: string): Record<string, unknown> | null {
  try {
    const value = JSON.parse(line) as unknown;
    return value && typeof value === "object" && !Array.isArray(value)
      ? (value as Record<string, unknown>)
      : null;
  } catch {
    return null;
  }
}

/**
 * The journal's tick numbers and its torn lines, after checking every line.
 * The journal ends on a whole line, and each line is a whole JSON object
 * except torn ones. A torn line is what a kill mid-append leaves: the start
 * of an entry (`{"type":"…`), followed by a whole line (the next append
 * began on a fresh line), and when it got as far as its `seq`, that entry
 * was journaled whole again later, so nothing it recorded is lost.
 */
async function journalOf(id: string): Promise<{ ticks: number[]; torn: string[] }> {
  const text = await fs.readFile(files(id).journal, "utf8");
  expect(text.endsWith("\n"), `${id}'s journal ends in a torn line`).toBe(true);
  const lines = text.slice(0, -1).split("\n");
  const entries = lines.map(entryOf);
  const torn: string[] = [];
  for (const [i, line] of lines.entries()) {
    if (entries[i] !== null) continue;
    torn.push(line);
    const where = `${id}'s journal, line ${i + 1}: ${JSON.stringify(line.slice(0, 80))}`;
    expect(line, `${where} is neither whole nor the start of an entry`).toMatch(/^\{"type":"/);
    expect(entries[i + 1], `${where} is torn and the line after it is not whole`).toBeTruthy();
    const start = /^\{"type":"(tick|skip|end)","seq":(\d+),/.exec(line);
    if (start) {
      const [, type, seq] = start;
      const again = entries.slice(i + 1).some((e) => e?.type === type && e?.seq === Number(seq));
      expect(again, `${where}: the torn ${type} entry (seq ${seq}) was never journaled whole`).toBe(
        true,
      );
    }
  }
  const ticks = entries.filter((e) => e?.type === "tick").map((e) => e?.tick as number);
  // parseJournal (what `logs` and resume read) sees the same entries.
  expect(parseJournal(text)).toEqual(entries.filter((e) => e !== null));
  return { ticks, torn };
}

async function leftoverTemps(): Promise<string[]> {
  return (await fs.readdir(h.stateDir)).filter((n) => n.endsWith(".tmp"));
}

describe("deterministic crash points", () => {
  const points: Array<{ at: string; expectTick: number; what: string }> = [
    // The first state write is the start (before tick 1), so the third is tick 2.
    { at: "state:after-temp-write:3", expectTick: 1, what: "the previous version" },
    { at: "state:after-fsync:3", expectTick: 1, what: "the previous version" },
    { at: "state:after-rename:3", expectTick: 2, what: "the next version" },
    // The third journal append: the run record (how shell_exec is confined), tick 1, tick 2.
    { at: "journal:mid-line:3", expectTick: 2, what: "the next version" },
  ];

  for (const { at, expectTick, what } of points) {
    it(`SIGKILL at ${at}: the state file is ${what} (tick ${expectTick}); a resume reaches tick 4`, async () => {
      const id = `crash-${at.replace(/[^a-z0-9]+/g, "-")}`;
      const killed = await runCli(args("--id", id, "--max-ticks", "4", "--no-tools"), {
        env: env(at),
      });
      expect(killed.signal).toBe("SIGKILL");
      const state = await validState(id);
      expect(state?.tick).toBe(expectTick);
      const killedJournal = await fs.readFile(files(id).journal, "utf8");
      const tornByKill = at.startsWith("journal:");
      expect(killedJournal.endsWith("\n")).toBe(!tornByKill);

      const resumed = await runCli(args("--id", id, "--max-ticks", "4", "--no-tools"), {
        env: env(),
      });
      expect(resumed.stderr).toContain(`resumed at tick ${expectTick}`);
      expect(resumed.code).toBe(0);
      expect(await validState(id)).toMatchObject({ tick: 4, status: "completed" });
      const journal = await journalOf(id);
      expect(journal.ticks).toEqual([1, 2, 3, 4]);
      // Only appended to: the torn line stays where the kill left it, closed by a newline.
      const after = await fs.readFile(files(id).journal, "utf8");
      expect(after.startsWith(tornByKill ? `${killedJournal}\n` : killedJournal)).toBe(true);
      expect(journal.torn).toEqual(tornByKill ? [killedJournal.split("\n").at(-1)] : []);
      expect(await leftoverTemps()).toEqual([]);
    });
  }

  it("is inert without RAVENCLAWS_CRASH_AT, and with a point that is never reached", async () => {
    const plain = await runCli(args("--id", "inert", "--max-ticks", "2", "--no-tools"), {
      env: env(),
    });
    expect(plain.code).toBe(0);
    const unknown = await runCli(args("--id", "inert2", "--max-ticks", "2", "--no-tools"), {
      env: env("state:after-rename:99"),
    });
    expect(unknown.code).toBe(0);
    expect(await validState("inert2")).toMatchObject({ tick: 2 });
  });
});

/** mulberry32: a small seeded PRNG, so a failing run can be replayed. */
function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** What one lane of random kills saw. */
interface LaneReport {
  lastTick: number;
  advanced: number;
  startupMs: number;
  /** The longest wait after the banner; grows while kills keep landing before any tick is saved (a loaded machine). */
  workMs: number;
  log: string[];
}

/**
 * Runs heartbeat `id` again and again, SIGKILLing each process at a random
 * moment; after each kill the state file must be valid and its tick no lower.
 */
async function killLane(id: string, seed: number, kills: number): Promise<LaneReport> {
  const random = prng(seed);
  const report: LaneReport = { lastTick: 0, advanced: 0, startupMs: 400, workMs: 900, log: [] };
  for (let i = 0; i < kills; i++) {
    const spawned = Date.now();
    const cli = startCli(args("--id", id, "--max-ticks", "100000"), { env: env() });
    // Most kills land while it works; some during startup (lock, load, restore).
    const duringStartup = random() < 0.15;
    let wait: number;
    if (duringStartup) {
      wait = Math.floor(random() * report.startupMs);
    } else {
      await cli.waitForOutput(/started|resumed at tick/, 30_000).catch((error: unknown) => {
        cli.child.kill("SIGKILL");
        throw new Error(`${String(error)}\nearlier runs:\n${report.log.join("\n")}`);
      });
      // How long a process takes to print its banner (lock taken, state loaded), as it goes.
      report.startupMs = (report.startupMs + (Date.now() - spawned)) / 2;
      // A fresh process's first tick is its slowest (cold code, new connection).
      wait = Math.floor(random() * report.workMs);
    }
    await new Promise((r) => setTimeout(r, wait));
    const alive = cli.child.exitCode === null && cli.child.signalCode === null;
    cli.child.kill("SIGKILL");
    const result = await cli.exited;
    expect(alive, `${id} run ${i} ended by itself:\n${result.stderr}`).toBe(true);
    expect(result.signal).toBe("SIGKILL");

    const state = await validState(id);
    const tick = state?.tick ?? 0;
    const last = result.stderr.split("\n").filter(Boolean).at(-1) ?? "";
    report.log.push(
      `${id} ${i}: ${duringStartup ? "startup" : "working"} +${wait}ms (of ${Math.round(duringStartup ? report.startupMs : report.workMs)}) → tick ${tick} (${last})`,
    );
    expect(tick, report.log.join("\n")).toBeGreaterThanOrEqual(report.lastTick);
    if (tick > report.lastTick) report.advanced += 1;
    // Under load a tick can outlast every wait: wait longer until one is saved.
    else if (!duringStartup) report.workMs = Math.min(report.workMs * 1.25, 10_000);
    report.lastTick = tick;
  }
  return report;
}

describe("random SIGKILLs", () => {
  const SEED = Number(process.env.RAVENCLAWS_CRASH_SEED ?? 20260314);
  // Two heartbeats side by side, 25 kills in a row each: 50 kills in half the time.
  const LANES = 2;
  const KILLS_PER_LANE = 25;

  it(`survives ${LANES * KILLS_PER_LANE} SIGKILLs (${KILLS_PER_LANE} in a row per heartbeat) at seeded random moments of busy runs (seed ${SEED})`, async () => {
    const started = Date.now();
    const ids = Array.from({ length: LANES }, (_, k) => `chaos-${k + 1}`);
    const reports = await Promise.all(ids.map((id, k) => killLane(id, SEED + k, KILLS_PER_LANE)));
    const killedAt = Date.now();
    for (const [k, id] of ids.entries()) {
      const report = reports[k] as LaneReport;
      // The kills were spread over real work, not only over startups.
      expect(report.advanced, report.log.join("\n")).toBeGreaterThanOrEqual(3);
      const target = report.lastTick + 3;
      const final = await runCli(args("--id", id, "--max-ticks", String(target)), { env: env() });
      expect(final.code, final.stderr).toBe(0);
      expect(await validState(id)).toMatchObject({ tick: target, status: "completed" });
      // Every tick journaled once, in order, though 25 processes died mid-way;
      // at most one torn line per kill.
      const journal = await journalOf(id);
      expect(journal.ticks).toEqual(Array.from({ length: target }, (_, t) => t + 1));
      expect(journal.torn.length).toBeLessThanOrEqual(KILLS_PER_LANE);
    }
    expect(await leftoverTemps()).toEqual([]);
    console.log(
      `random SIGKILLs: ${LANES * KILLS_PER_LANE} kills in ${((killedAt - started) / 1000).toFixed(1)} s, ` +
        `ticks reached ${reports.map((r) => r.lastTick).join(" and ")}, ` +
        `startup ≈ ${reports.map((r) => Math.round(r.startupMs)).join("/")} ms, ` +
        `total ${((Date.now() - started) / 1000).toFixed(1)} s`,
    );
  }, 420_000);
});
