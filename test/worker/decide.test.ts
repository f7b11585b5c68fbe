import { describe, expect, it } from "vitest";
import { decideTick, type TickRow } from "../../src/worker/decide.js";

const NOW = Date.parse("2026-12-02T03:00:00Z");
const options = { now: NOW, unreachableDeadlineMs: 60_000, unreachableRetryMs: 5_000 };
const here = { reachable: true };
const row = (over: Partial<TickRow> = {}): TickRow => ({
  status: "sleeping",
  nextTickAt: NOW - 1,
  stopped: false,
  wakeRequested: false,
  ...over,
});

describe("decideTick: what a worker does with a heartbeat-tick job", () => {
  it("runs a sleeping heartbeat whose tick is due", () => {
    expect(decideTick(row(), here, options)).toEqual({ kind: "run" });
    expect(decideTick(row({ nextTickAt: NOW }), here, options)).toEqual({ kind: "run" });
  });

  it("completes the job of a missing, ended or stopped heartbeat without running anything", () => {
    expect(decideTick(null, here, options)).toEqual({ kind: "skip", reason: "missing" });
    expect(decideTick(row({ status: "completed" }), here, options)).toEqual({
      kind: "skip",
      reason: "ended",
    });
    expect(decideTick(row({ status: "failed" }), here, options)).toEqual({
      kind: "skip",
      reason: "ended",
    });
    // A stop wins over a wake and over a due tick.
    expect(decideTick(row({ stopped: true, wakeRequested: true }), here, options)).toEqual({
      kind: "skip",
      reason: "stopped",
    });
  });

  it("reschedules a job that came before the heartbeat's nextTickAt", () => {
    expect(decideTick(row({ nextTickAt: NOW + 30_000 }), here, options)).toEqual({
      kind: "reschedule",
      at: NOW + 30_000,
    });
  });

  it("runs a tick ahead of time when a wake was asked", () => {
    expect(
      decideTick(row({ nextTickAt: NOW + 30_000, wakeRequested: true }), here, options),
    ).toEqual({ kind: "run" });
  });

  it("resumes at once a heartbeat left mid-tick, shut down, or never saved", () => {
    for (const status of ["executing", "shutdown", null]) {
      expect(decideTick(row({ status, nextTickAt: NOW + 30_000 }), here, options)).toEqual({
        kind: "run",
      });
    }
  });

  it("leaves a job whose workdir it cannot reach to another worker, then gives up after the deadline", () => {
    const first = decideTick(row(), { reachable: false }, options);
    expect(first).toEqual({ kind: "elsewhere", retryAt: NOW + 5_000, since: NOW });
    expect(
      decideTick(row(), { reachable: false, unreachableSince: NOW - 59_999 }, options),
    ).toEqual({ kind: "elsewhere", retryAt: NOW + 5_000, since: NOW - 59_999 });
    expect(
      decideTick(row(), { reachable: false, unreachableSince: NOW - 60_000 }, options),
    ).toEqual({ kind: "give-up", since: NOW - 60_000 });
    // Not due: rescheduled whatever the workdir (no need to reach it yet).
    expect(decideTick(row({ nextTickAt: NOW + 1 }), { reachable: false }, options).kind).toBe(
      "reschedule",
    );
  });

  it("does nothing for a sleeping heartbeat with no tick planned", () => {
    expect(decideTick(row({ nextTickAt: null }), here, options)).toEqual({
      kind: "skip",
      reason: "not-planned",
    });
  });
});
