/**
 * Issue 16's pure pieces: the calendar day and its start in a time zone, due
 * checklist tasks, cost with cached tokens, durations, the checklist parser,
 * and the quiet-tick recheck over a simulated day (the real machine, time as data).
 */
import * as fs from "node:fs/promises";
import * as os from "node:os";
import * as path from "node:path";
import { describe, expect, it } from "vitest";
import { simulateIdleDay } from "../../bench/idle.js";
import {
  dailyCapReached,
  dayOf,
  dueTasks,
  startOfNextDay,
  usageCost,
} from "../../src/machines/idle.js";
import { parseChecklist, readChecklist } from "../../src/services/checklist.js";
import { formatDuration, parseDuration } from "../../src/services/duration.js";
import { walkFingerprint } from "../../src/services/fingerprint.js";

describe("the calendar day in a time zone", () => {
  it("names the day and finds the next one's start, DST included", () => {
    const t = Date.parse("2026-03-28T23:30:00Z");
    expect(dayOf(t, "UTC")).toBe("2026-03-28");
    expect(dayOf(t, "Asia/Tokyo")).toBe("2026-03-29");
    expect(startOfNextDay(t, "UTC")).toBe("2026-03-29T00:00:00.000Z");
    expect(startOfNextDay(t, "Asia/Tokyo")).toBe("2026-03-29T15:00:00.000Z");
    // Berlin springs forward on 2026-03-29: the 30th starts at 22:00 UTC (CEST), the 29th at 23:00 (CET).
    expect(startOfNextDay(t, "Europe/Berlin")).toBe("2026-03-29T22:00:00.000Z");
    expect(startOfNextDay(Date.parse("2026-03-28T12:00:00Z"), "Europe/Berlin")).toBe(
      "2026-03-28T23:00:00.000Z",
    );
    // America/New_York falls back on 2026-11-01.
    expect(startOfNextDay(Date.parse("2026-11-01T12:00:00Z"), "America/New_York")).toBe(
      "2026-11-02T05:00:00.000Z",
    );
  });

  it("a cap counts only today's usage", () => {
    const usage = { calls: 3, promptTokens: 1500, completionTokens: 600, totalTokens: 2100 };
    const settings = { maxTokensPerDay: 2000, maxCostPerDay: 0, prices: null, timezone: "UTC" };
    const day = { date: "2026-03-28", usage };
    expect(dailyCapReached(settings, day, "2026-03-28T20:00:00Z")).toBe("tokens");
    expect(dailyCapReached(settings, day, "2026-03-29T00:00:01Z")).toBeNull();
    expect(
      dailyCapReached(
        { ...settings, maxTokensPerDay: 0, maxCostPerDay: 0.001, prices: { input: 1 } },
        day,
        "2026-03-28T20:00:00Z",
      ),
    ).toBe("cost");
  });
});

describe("cost and durations", () => {
  it("prices cached prompt tokens at the cached price, else at the input price", () => {
    const usage = {
      calls: 1,
      promptTokens: 1_000_000,
      completionTokens: 0,
      totalTokens: 1_000_000,
      cachedTokens: 800_000,
    };
    expect(usageCost(usage, { input: 1, cachedInput: 0.1 })).toBeCloseTo(0.2 + 0.08, 9);
    expect(usageCost(usage, { input: 1 })).toBeCloseTo(1, 9);
    expect(usageCost(usage, {})).toBeUndefined();
  });

  it("reads and writes durations", () => {
    expect(parseDuration("1h")).toBe(3600);
    expect(parseDuration("1h30m")).toBe(5400);
    expect(parseDuration("2 days")).toBe(172_800);
    expect(parseDuration("90")).toBe(90);
    expect(parseDuration("0")).toBe(0);
    for (const bad of ["", "soon", "1x", "h1", "-1h"]) expect(parseDuration(bad)).toBeNull();
    expect(formatDuration(5400)).toBe("1h30m");
  });
});

describe("the checklist", () => {
  it("splits standing text from recurring tasks, and finds the due ones", () => {
    const { instructions, tasks } = parseChecklist(
      "Be brief.\n- [every 1h] Check the plants\n* [every 1d] Rotate logs\n- [every later] Not a task\n",
    );
    expect(instructions).toBe("Be brief.\n- [every later] Not a task");
    expect(tasks.map((t) => [t.task, t.everySec])).toEqual([
      ["Check the plants", 3600],
      ["Rotate logs", 86_400],
    ]);
    const runs = { "Check the plants": "2026-01-01T10:00:00Z" };
    expect(dueTasks(tasks, runs, "2026-01-01T10:59:59Z").map((t) => t.task)).toEqual([
      "Rotate logs",
    ]);
    expect(dueTasks(tasks, runs, "2026-01-01T11:00:00Z")).toHaveLength(2);
  });

  it("caps the standing text and says so; refuses a FIFO", async () => {
    const dir = await fs.mkdtemp(path.join(os.tmpdir(), "rc-checklist-"));
    try {
      const file = path.join(dir, "HEARTBEAT.md");
      await fs.writeFile(file, `${"é".repeat(3000)}\n- [every 1h] Task`);
      const view = await readChecklist(file, 4096);
      expect(view?.truncated).toBe(true);
      expect(view?.bytes).toBe(6000);
      expect(Buffer.byteLength(view?.text ?? "")).toBeLessThanOrEqual(4096);
      expect(view?.tasks).toHaveLength(1);
      expect(await readChecklist(path.join(dir, "none.md"), 4096)).toBeNull();
      const { execFileSync } = await import("node:child_process");
      const fifo = path.join(dir, "fifo.md");
      execFileSync("mkfifo", [fifo]);
      await expect(readChecklist(fifo, 4096)).rejects.toMatchObject({ code: "ENOTREG" });
    } finally {
      await fs.rm(dir, { recursive: true, force: true });
    }
  });
});

describe("the workspace fingerprint (walk)", () => {
  it("changes with a file's size or mtime, not with the state dir, .git or node_modules", async () => {
    const dir = await fs.mkdtemp(path.join(os.tmpdir(), "rc-fp-"));
    try {
      const state = path.join(dir, ".ravenclaws");
      for (const d of [
        state,
        path.join(dir, ".git"),
        path.join(dir, "node_modules"),
        path.join(dir, "src"),
      ])
        await fs.mkdir(d, { recursive: true });
      await fs.writeFile(path.join(dir, "src", "a.txt"), "a");
      const first = walkFingerprint(dir, state);
      expect(walkFingerprint(dir, state)).toBe(first);
      await fs.writeFile(path.join(state, "heartbeat-x.jsonl"), "{}\n");
      await fs.writeFile(path.join(dir, ".git", "index"), "x");
      await fs.writeFile(path.join(dir, "node_modules", "m.js"), "x");
      expect(walkFingerprint(dir, state)).toBe(first);
      await fs.writeFile(path.join(dir, "src", "a.txt"), "ab");
      expect(walkFingerprint(dir, state)).not.toBe(first);
    } finally {
      await fs.rm(dir, { recursive: true, force: true });
    }
  });
});

describe("quiet ticks over a simulated idle day (the real machine, time as data)", () => {
  it("at 300 s, a call every --idle-recheck: 24 with 1h, 12 with 2h, 288 with 0", async () => {
    const goal = "Keep NOTES.md current";
    expect((await simulateIdleDay(goal, 3600)).calls).toBe(24);
    expect((await simulateIdleDay(goal, 7200)).calls).toBe(12);
    expect((await simulateIdleDay(goal, 0)).calls).toBe(288);
  });
});
