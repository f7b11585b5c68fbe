/**
 * `npm run bench` in its reduced `--quick` configuration: the script runs end
 * to end and reports every figure. Timings are not asserted; call counts and
 * prompt sizes are deterministic and are.
 */

import * as fs from "node:fs/promises";
import { readFile } from "node:fs/promises";
import * as os from "node:os";
import * as path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  type BenchResult,
  type BenchRow,
  formatMarkdownTable,
  formatReport,
  formatTable,
  parseBenchArgs,
  percentile,
  runBench,
} from "../bench/bench.js";
import { originalAssessmentPrompt, originalSystemPrompt, originalTick } from "../bench/original.js";
import { StubModel } from "../bench/stubModel.js";

let dir: string;
let result: BenchResult;

beforeAll(async () => {
  dir = await fs.mkdtemp(path.join(os.tmpdir(), "rc-bench-"));
  result = await runBench({ quick: true, out: path.join(dir, "latest.json"), log: () => {} });
}, 180_000);

afterAll(async () => {
  await fs.rm(dir, { recursive: true, force: true });
});

const row = (words: string) => {
  const found = result.rows.find((r) => r.metric.includes(words));
  if (!found) throw new Error(`no row with "${words}"`);
  return found;
};

describe("npm run bench --quick", () => {
  it("reports the hosting figures: RSS of sleeping hosted heartbeats (no live actor) and tick lateness", () => {
    const hosting = result.figures.hosting as {
      rss: { count: number; hosted: number; live: number; sleeping: number }[];
      lateness: { ticks: number; maxRunning: number };
      maxConcurrentTicks: number;
    };
    for (const r of hosting.rss) {
      expect(r.hosted).toBe(r.count);
      expect(r.sleeping).toBe(r.count);
      expect(r.live).toBe(0);
    }
    expect(hosting.lateness.ticks).toBeGreaterThan(0);
    expect(hosting.lateness.maxRunning).toBeLessThanOrEqual(hosting.maxConcurrentTicks);
    expect(row("hosting: RSS with 50").target).toBe("< 300 MB");
    expect(row("hosting: tick lateness p99").target).toBe("< 1000 ms");
  });

  it("reports overhead, prompt, calls, memory and cold start lines, each with ours, baseline, ratio, target and verdict", () => {
    for (const word of [
      "overhead",
      "prompt",
      "calls",
      "memory",
      "cold start",
      "overview API",
      "hosting",
    ]) {
      expect(result.rows.some((r) => r.metric.startsWith(word))).toBe(true);
    }
    for (const r of result.rows) {
      expect(r.ours, r.metric).not.toBe("");
      expect(r.other, r.metric).not.toBe("");
      expect(["PASS", "MISS", "info", "n/a"]).toContain(r.result);
    }
    const table = formatReport(result);
    expect(table).toMatch(
      /^metric +\| ours +\| baseline\/original +\| ratio +\| target +\| result$/m,
    );
    for (const word of ["overhead", "prompt", "calls", "memory", "cold start"]) {
      expect(table).toMatch(new RegExp(`^${word}.*\\| (PASS|MISS|info|n/a)$`, "m"));
    }
  });

  it("measures overhead against the plain-loop baselines with ratios and p50/p95", () => {
    for (const p of ["p50", "p95"]) {
      for (const kind of ["busy", "idle"]) {
        const r = row(`overhead per ${kind} tick ${p}, ms (baseline: same writes`);
        expectRatioOfRounded(r.ratio, r.ours, r.other);
        expect(r.target).toBe("≤ 1.3");
        expect(row(`overhead per ${kind} tick ${p}, ms (baseline: 1 state write)`).ours).toBe(
          r.ours,
        );
      }
    }
    const figures = result.figures.overhead as {
      busy: { writesPerTick: { stateWrites: number; journalAppends: number } };
    };
    expect(figures.busy.writesPerTick.stateWrites).toBeGreaterThanOrEqual(1);
    expect(figures.busy.writesPerTick.journalAppends).toBeGreaterThanOrEqual(1);
  });

  it("counts one model call per idle tick against the original's three", () => {
    const idle = row("calls per idle tick");
    expect(idle.ours).toBe("1.00");
    expect(idle.other).toBe("3.00");
    expect(idle.result).toBe("PASS");
    // assess, plan, a call asking for list_dir, a call reporting: the same for both.
    expect(row("calls per busy tick").ours).toBe("4.00");
    expect(row("calls per busy tick").other).toBe("4.00");
  });

  it("simulates an idle 24-hour heartbeat at 300 s on the real machine: 24 model calls instead of 288", () => {
    const day = row("model calls in a 24 h idle heartbeat");
    expect(day.ours).toBe("24");
    expect(day.other).toBe("288");
    expect(day.result).toBe("PASS");
    // The original assesses, plans and executes on every tick.
    expect(row("the same day, the original").other).toBe("864");
    expect(row("a LangGraph heartbeat").other).toBe("≥ 288");
    const tokens = row("prompt tokens in that day: ours vs --idle-recheck 0");
    expect(Number(tokens.ours.replace(/,/g, ""))).toBeLessThan(
      Number(tokens.other.replace(/,/g, "")) / 10,
    );
  });

  it("times the workspace fingerprint (walk, and git when there is git)", () => {
    const walk = row("workspace fingerprint of a 500-file tree, walk");
    expect(Number(walk.ours)).toBeGreaterThan(0);
    expect(["PASS", "MISS"]).toContain(walk.result);
    expect(row("git work tree").ours).not.toBe("");
  });

  it("measures both prompts at the three ticks; the original's grows faster than ours", () => {
    const [, , last] = result.config.promptTicks;
    const sizes = row(`prompt size (assess request) at tick ${last}`);
    expect(sizes.ours).toMatch(/^[\d,]+ ch \/ [\d,]+ tok$/);
    const growth = row(`prompt growth tick ${last} /`);
    expect(Number(growth.other)).toBeGreaterThan(Number(growth.ours));
    expect(growth.target).toBe("ours ≤ 1.2");
  });

  it("reports memory growth, the concurrent actors and the cold starts", () => {
    expect(row("memory: RSS after").target).toMatch(/^growth < 10 MB/);
    expect(Number(row("memory: peak RSS").ours)).toBeGreaterThan(0);
    expect(Number(row("memory: tick throughput").ours.replace(/,/g, ""))).toBeGreaterThan(0);
    const help = row("cold start `ravenclaws --help`");
    expect(help.ratio).toMatch(/^\d+\.\d\dx$/);
    const status = row("cold start `ravenclaws status`");
    const figures = result.figures.coldStart as { statusBuilt: boolean };
    if (figures.statusBuilt) expect(status.ours).toMatch(/^\d+$/);
    else expect(status.ours).toBe("n/a (status not built)");
  });

  it("writes the JSON with the rows, the machine and the figures", async () => {
    const json = JSON.parse(await readFile(path.join(dir, "latest.json"), "utf8")) as BenchResult;
    expect(json.quick).toBe(true);
    expect(json.rows).toEqual(result.rows);
    expect(json.machine.node).toBe(process.version);
    expect(json.machine.cpus).toBeGreaterThan(0);
    expect(Object.keys(json.figures)).toEqual(
      expect.arrayContaining([
        "overhead",
        "prompts",
        "original",
        "memory",
        "actors",
        "coldStart",
        "overview",
      ]),
    );
  });
});

describe("the Rust original's prompts", () => {
  it("are rebuilt from the format strings of heartbeat.rs", () => {
    const state = { goal: "G", tick: 1, progress: "" };
    expect(originalAssessmentPrompt(state)).toBe(
      "Assess your progress toward the goal.\n\nGoal: G\n\nCurrent progress so far:\nNo progress yet — this is the first tick.\n\nTick number: 1\n\nAnswer the following:\n1. What progress has been made?\n2. What obstacles remain?\n3. Is the goal complete? (If yes, say 'GOAL_COMPLETE')\n4. What should be done next?",
    );
    expect(originalSystemPrompt(state)).toMatch(
      /^You are RavenClaws Heartbeat — an autonomous agent operating in a persistent loop\.\n\nYour overarching goal: G\n\n[\s\S]*\n\nCurrent tick: 1$/,
    );
  });

  it("resend a progress that grows by one section every tick", async () => {
    const state = { goal: "G", tick: 0, progress: "" };
    const model = new StubModel({ busy: () => true });
    const tools = [{ type: "function" as const, function: { name: "list_dir", parameters: {} } }];
    const first = await originalTick(state, model, tools);
    const second = await originalTick(state, model, tools);
    const third = await originalTick(state, model, tools);
    expect(state.tick).toBe(3);
    expect(state.progress.match(/^## Tick \d+$/gm)).toEqual([
      "## Tick 1",
      "## Tick 2",
      "## Tick 3",
    ]);
    expect(first.calls).toBe(4);
    const section = third.assessPromptChars - second.assessPromptChars;
    expect(second.assessPromptChars).toBeGreaterThan(first.assessPromptChars);
    expect(section).toBeGreaterThan(100);
  });
});

describe("bench helpers", () => {
  it("parses --quick, --out and --markdown", () => {
    expect(parseBenchArgs([])).toEqual({ quick: false, markdown: false });
    expect(parseBenchArgs(["--quick", "--out", "x.json", "--markdown"])).toEqual({
      quick: true,
      markdown: true,
      out: path.resolve("x.json"),
    });
  });

  it("--only selects the parts to run, and names an unknown one", () => {
    expect(parseBenchArgs(["--only", "memory,actors"])).toEqual({
      quick: false,
      markdown: false,
      only: ["memory", "actors"],
    });
    expect(() => parseBenchArgs(["--only", "memroy"])).toThrow(/unknown part "memroy"/);
  });

  it("--only runs only those parts and gives only their rows", async () => {
    const only = await runBench({
      quick: true,
      only: ["memory"],
      out: path.join(dir, "only.json"),
      log: () => {},
    });
    expect(only.only).toEqual(["memory"]);
    expect(only.rows.length).toBeGreaterThan(0);
    expect(
      only.rows.every((r) => r.metric.startsWith("memory") || r.metric.startsWith("prompt")),
    ).toBe(true);
    expect(only.rows.some((r) => r.metric.includes("where the RSS is"))).toBe(true);
    expect(Object.keys(only.sectionSeconds)).toEqual(["prompt original", "prompt and memory"]);
  }, 60_000);

  it("takes nearest-rank percentiles", () => {
    const values = [5, 1, 4, 2, 3, 10, 9, 8, 7, 6];
    expect(percentile(values, 50)).toBe(5);
    expect(percentile(values, 95)).toBe(10);
    expect(percentile([], 50)).toBeNaN();
  });

  it("aligns the table columns", () => {
    const rows: BenchRow[] = [
      { metric: "calls x", ours: "1", other: "3", ratio: "0.33", target: "= 1", result: "PASS" },
    ];
    const lines = formatTable(rows).split("\n");
    expect(lines).toHaveLength(3);
    expect(lines[2]).toBe("calls x | 1    | 3                 | 0.33  | = 1    | PASS");
    expect(lines[0]?.indexOf("| ours")).toBe(lines[2]?.indexOf("| 1"));
    expect(
      formatMarkdownTable([{ ...(rows[0] as BenchRow), metric: "a | b" }]).split("\n")[2],
    ).toBe("| a \\| b | 1 | 3 | 0.33 | = 1 | PASS |");
  });
});

/**
 * The printed ratio is computed from the unrounded figures, so it is checked
 * against the range the rounded figures allow (half a unit of their last
 * printed digit each way, and of the ratio's own).
 */
function expectRatioOfRounded(ratio: string, ours: string, other: string): void {
  const half = (text: string) => 0.5 * 10 ** -(text.split(".")[1]?.length ?? 0);
  const [a, b, r] = [Number(ours), Number(other), Number(ratio)];
  const low = (a - half(ours)) / (b + half(other)) - half(ratio);
  const high = b - half(other) > 0 ? (a + half(ours)) / (b - half(other)) + half(ratio) : Infinity;
  expect(r).toBeGreaterThanOrEqual(low);
  expect(r).toBeLessThanOrEqual(high);
}
