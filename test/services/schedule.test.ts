/**
 * Tick scheduling: interval, cron (croner), failure backoff, active hours in
 * a time zone. Pure functions with explicit clock readings.
 */
import { describe, expect, it } from "vitest";
import { UsageError } from "../../src/errors.js";
import type { HeartbeatSettings } from "../../src/machines/heartbeat.types.js";
import {
  deferToWindow,
  inActiveHours,
  nextWindowOpen,
  planNextTick,
  validateCron,
} from "../../src/services/schedule.js";

const SETTINGS: HeartbeatSettings = {
  maxTicks: 0,
  tickIntervalSec: 300,
  maxIterationsPerTick: 5,
  toolsEnabled: true,
  maxConsecutiveFailures: 5,
  maxTokens: 0,
  maxTokensPerTick: 0,
  failureBackoffSec: 5,
  cron: null,
  activeHours: null,
  timezone: null,
};
const at = (iso: string) => new Date(iso);
const s = (patch: Partial<HeartbeatSettings>) => ({ ...SETTINGS, ...patch });
/** The plan after a tick that ended at `now` (the clock reading the machine stored). */
const planAfter = (settings: HeartbeatSettings, failures: number, now: Date) => {
  const plan = planNextTick({
    settings,
    consecutiveFailures: failures,
    due: null,
    lastTickEndedAt: now.toISOString(),
    now: now.toISOString(),
  });
  return { at: new Date(plan.nextTickAt), skipped: plan.skipped };
};

describe("planNextTick", () => {
  it("a due time runs then, or now when it has passed, and moves into the active hours", () => {
    const now = "2026-03-01T10:00:00.000Z";
    const plan = (due: string, patch: Partial<HeartbeatSettings> = {}) =>
      planNextTick({ settings: s(patch), consecutiveFailures: 3, due, lastTickEndedAt: null, now });
    // The interval and the failures do not matter for a due time.
    expect(plan("2026-03-01T10:00:30.000Z")).toEqual({
      nextTickAt: "2026-03-01T10:00:30.000Z",
      skipped: [],
    });
    expect(plan("2026-03-01T09:00:00.000Z").nextTickAt).toBe(now);
    expect(plan(now, { activeHours: "12:00-13:00", timezone: "UTC" })).toEqual({
      nextTickAt: "2026-03-01T12:00:00.000Z",
      skipped: [{ due: now, next: "2026-03-01T12:00:00.000Z", reason: "outside-active-hours" }],
    });
  });

  it("plans from the end of the last tick, not from the clock reading", () => {
    expect(
      planNextTick({
        settings: SETTINGS,
        consecutiveFailures: 0,
        due: null,
        lastTickEndedAt: "2026-03-01T10:00:00.000Z",
        now: "2026-03-01T10:00:00.002Z",
      }).nextTickAt,
    ).toBe("2026-03-01T10:05:00.000Z");
  });

  it("adds the interval to the end of the tick", () => {
    expect(planAfter(SETTINGS, 0, at("2026-03-01T10:00:00Z"))).toEqual({
      at: at("2026-03-01T10:05:00Z"),
      skipped: [],
    });
  });

  it("backs off after failed ticks (interval 0: 5 s, 10 s, 20 s)", () => {
    const now = at("2026-03-01T10:00:00Z");
    const delays = [1, 2, 3].map(
      (n) => (planAfter(s({ tickIntervalSec: 0 }), n, now).at.getTime() - now.getTime()) / 1000,
    );
    expect(delays).toEqual([5, 10, 20]);
  });

  it("follows a cron expression in the given time zone", () => {
    const next = planAfter(
      s({ cron: "0 9 * * *", timezone: "America/New_York" }),
      0,
      at("2026-03-01T10:00:00Z"),
    );
    // 09:00 in New York (UTC-5 in March before DST) is 14:00 UTC.
    expect(next.at.toISOString()).toBe("2026-03-01T14:00:00.000Z");
  });

  it("with cron, backoff only delays a cron match that comes too soon", () => {
    const now = at("2026-03-01T10:00:00Z");
    const cron = s({ cron: "* * * * *", failureBackoffSec: 120, timezone: "UTC" });
    expect(planAfter(cron, 0, now).at.toISOString()).toBe("2026-03-01T10:01:00.000Z");
    expect(planAfter(cron, 1, now).at.toISOString()).toBe("2026-03-01T10:02:00.000Z");
  });

  it("moves a tick due outside the active hours to the window's opening and records the skip", () => {
    const next = planAfter(
      s({ activeHours: "08:00-22:00", timezone: "Europe/Berlin" }),
      0,
      // 21:58 UTC = 22:58 in Berlin (UTC+1 in November): due 22:03 UTC, outside.
      at("2026-11-25T21:58:00Z"),
    );
    expect(next.at.toISOString()).toBe("2026-11-26T07:00:00.000Z");
    expect(next.skipped).toEqual([
      {
        due: "2026-11-25T22:03:00.000Z",
        next: "2026-11-26T07:00:00.000Z",
        reason: "outside-active-hours",
      },
    ]);
  });
});

describe("active hours", () => {
  const night = s({ activeHours: "22:00-06:00", timezone: "UTC" });

  it("supports windows over midnight", () => {
    expect(inActiveHours(at("2026-03-01T23:30:00Z"), night)).toBe(true);
    expect(inActiveHours(at("2026-03-01T05:59:00Z"), night)).toBe(true);
    expect(inActiveHours(at("2026-03-01T06:00:00Z"), night)).toBe(false);
    expect(nextWindowOpen(at("2026-03-01T12:00:00Z"), night).toISOString()).toBe(
      "2026-03-01T22:00:00.000Z",
    );
  });

  it("is always open without a window", () => {
    expect(inActiveHours(at("2026-03-01T03:00:00Z"), SETTINGS)).toBe(true);
    expect(deferToWindow(at("2026-03-01T03:00:00Z"), SETTINGS).skipped).toEqual([]);
  });

  it("follows the time zone across a DST change", () => {
    const berlin = s({ activeHours: "08:00-09:00", timezone: "Europe/Berlin" });
    // 29 March 2026: Berlin moves to UTC+2, so 08:00 local is 06:00 UTC.
    expect(nextWindowOpen(at("2026-03-29T03:00:00Z"), berlin).toISOString()).toBe(
      "2026-03-29T06:00:00.000Z",
    );
    expect(nextWindowOpen(at("2026-03-28T03:00:00Z"), berlin).toISOString()).toBe(
      "2026-03-28T07:00:00.000Z",
    );
  });
});

describe("validateCron", () => {
  it("accepts a valid expression and names --cron for a bad one", () => {
    expect(() => validateCron("*/15 * * * *", null)).not.toThrow();
    try {
      validateCron("every minute", null);
      expect.unreachable();
    } catch (error) {
      expect(error).toBeInstanceOf(UsageError);
      expect((error as UsageError).message).toMatch(/--cron "every minute" is not a valid cron/);
    }
  });
});
