/**
 * The dashboard's journal derivations: the tick timeline and the token and
 * cost series, from journal lines as the store writes them.
 */
import { describe, expect, it } from "vitest";
import { countdown, formatCost, formatDuration } from "../../src/dashboard/format.js";
import { baselineOf, tickRows, usageSeries } from "../../src/dashboard/journal.js";
import type { JournalEntry } from "../../src/serve/api.types.js";

function tick(n: number, tokens: number, total: number, extra: Record<string, unknown> = {}) {
  return {
    type: "tick",
    seq: n + 1,
    tick: n,
    status: "ok",
    wakeReason: n === 1 ? "start" : "timer",
    startedAt: `2026-12-02T00:00:0${n}.000Z`,
    finishedAt: `2026-12-02T00:00:0${n}.500Z`,
    durationMs: 500,
    goalComplete: false,
    assessment: `assessment ${n}`,
    plan: null,
    result: `result ${n}`,
    errors: [],
    usage: { calls: 1, promptTokens: tokens - 10, completionTokens: 10, totalTokens: tokens },
    totalUsage: {
      calls: n,
      promptTokens: total - 10 * n,
      completionTokens: 10 * n,
      totalTokens: total,
    },
    modelCalls: [],
    toolCalls: [{ callId: `c${n}`, name: "read_file", status: "ok" }],
    next: "sleeping",
    nextTickAt: null,
    ...extra,
  } as JournalEntry;
}

describe("tickRows", () => {
  it("makes one row per tick from the tick lines, the last line of a repeated tick winning", () => {
    const entries: JournalEntry[] = [
      { type: "run", at: "2026-12-02T00:00:00.000Z" },
      tick(1, 100, 100),
      { type: "tool", tick: 2, name: "read_file" },
      tick(2, 50, 150, { status: "interrupted", result: null, assessment: null }),
      tick(2, 70, 170, {
        status: "failed",
        wakeReason: "resume",
        result: null,
        assessment: null,
        errors: [{ code: "timeout", message: "the model timed out" }],
        toolCalls: [],
      }),
      { type: "end", status: "failed" },
    ];
    const rows = tickRows(entries);
    expect(rows.map((r) => [r.tick, r.status, r.wakeReason, r.tokens])).toEqual([
      [1, "ok", "start", 100],
      [2, "failed", "resume", 70],
    ]);
    expect(rows[0]?.tools).toEqual([{ name: "read_file", status: "ok" }]);
    expect(rows[0]?.summary).toBe("result 1");
    expect(rows[1]?.summary).toBe("the model timed out");
    expect(rows[1]?.costUsd).toBeNull();
  });
});

describe("usageSeries", () => {
  it("gives per-tick and running totals of tokens, and of cost when every tick has one", () => {
    const cost = (usd: number, totalUsd: number) => ({
      usage: { calls: 1, promptTokens: 0, completionTokens: 0, totalTokens: 10, costUsd: usd },
      totalUsage: {
        calls: 1,
        promptTokens: 0,
        completionTokens: 0,
        totalTokens: 10,
        costUsd: totalUsd,
      },
    });
    const rows = tickRows([tick(1, 100, 100, cost(0.5, 0.5)), tick(2, 40, 140, cost(0.25, 0.75))]);
    const series = usageSeries(rows);
    expect(series.ticks).toEqual([1, 2]);
    expect(series.tokens).toEqual([10, 10]);
    expect(series.totalTokens).toEqual([10, 20]);
    expect(series.cost).toEqual([0.5, 0.25]);
    expect(series.totalCost).toEqual([0.5, 0.75]);
    expect(series.hasCost).toBe(true);
    const noPrices = usageSeries(tickRows([tick(1, 100, 100), tick(2, 40, 140)]));
    expect(noPrices.totalTokens).toEqual([100, 140]);
    expect(noPrices.hasCost).toBe(false);
  });

  it("starts a journal cut by the API's limit from the usage before its first tick", () => {
    const entries = [tick(7, 40, 1040), tick(8, 60, 1100)];
    const baseline = baselineOf(entries);
    expect(baseline.tokens).toBe(1000);
    expect(usageSeries(tickRows(entries), baseline).totalTokens).toEqual([1040, 1100]);
  });
});

describe("format", () => {
  it("counts down to the next tick from a given clock", () => {
    const now = Date.parse("2026-12-02T00:00:00.000Z");
    expect(countdown("2026-12-02T00:00:04.200Z", now)).toBe("in 5 s");
    expect(countdown("2026-12-02T00:02:03.000Z", now)).toBe("in 2 min 3 s");
    expect(countdown("2026-12-01T23:59:00.000Z", now)).toBe("due");
    expect(countdown(null, now)).toBe("–");
    expect(formatCost(null)).toBe("–");
    expect(formatCost(0.00123)).toBe("$0.0012");
    expect(formatCost(1.5)).toBe("$1.50");
    expect(formatDuration(850)).toBe("850 ms");
  });
});
