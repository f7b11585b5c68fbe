/**
 * `npm run bench:scale` in small: the harness itself works end to end (an
 * embedded PostgreSQL, heartbeats created through the store, real `ravenclaws
 * worker` processes from dist/ against the stub model over HTTP), so it does
 * not rot between full runs. Timings are not asserted; counts are.
 */
import { describe, expect, it } from "vitest";
import { formatScaleReport, parseScaleArgs, runScale, type ScaleResult } from "../bench/scale.js";
import { startStubModelServer } from "../bench/stubModelServer.js";
import { usePostgres } from "./support/postgres.js";

// The harness makes its own databases on this file's server (CREATE DATABASE).
const pg = usePostgres();

describe("npm run bench:scale, small", () => {
  it("ticks every heartbeat twice on two real workers, journals each tick once, and reports every figure", async () => {
    const result: ScaleResult = await runScale({
      databaseUrl: pg.server.url,
      config: {
        heartbeats: 12,
        intervalSec: 2,
        workers: [2],
        rounds: 2,
        leadSec: 2,
        graceSec: 60,
      },
      out: null,
      log: () => {},
    });
    const [run] = result.runs;
    if (!run) throw new Error("no run");
    expect(run.keptUp).toBe(true);
    expect(run.covered).toBe(12);
    expect(run.ticks).toBeGreaterThanOrEqual(24);
    expect(run.duplicateTicks).toBe(0);
    expect(run.failedTicks).toBe(0);
    // Every journaled tick has a lateness (its plan was found); none was left overdue.
    expect(run.lateness.count).toBe(run.ticks);
    expect(run.overdue).toBe(0);
    expect(Number.isFinite(run.lateness.p99Ms)).toBe(true);
    // --idle-recheck 0: every tick asked the stub model (one assessment each).
    expect(run.modelRequests).toBeGreaterThanOrEqual(run.ticks);
    expect(run.dbBytes.ours).toBeGreaterThan(0);
    expect(run.dbBytes.pgboss).toBeGreaterThan(0);
    expect(run.dbBytes.journalRows).toBeGreaterThanOrEqual(run.ticks);
    expect(run.workerRssMb.peak).toBeGreaterThan(10);
    expect(run.exits).toEqual([0, 0]);
    const report = formatScaleReport(result);
    expect(report).toMatch(
      /^scale: tick lateness p99, ms \(12 heartbeats \/ 2 s, 2 workers\) +\| /m,
    );
    for (const words of [
      "ticks per second",
      "database per heartbeat",
      "worker RSS",
      "CPU per tick",
    ]) {
      expect(report).toContain(words);
    }
    expect(report).toMatch(/load average [\d.]+ at start/);
  }, 90_000);
});

describe("bench:scale helpers", () => {
  it("parses the smoke options", () => {
    const parsed = parseScaleArgs(["--heartbeats", "500", "--interval", "20", "--workers", "4,1"]);
    expect(parsed.config).toEqual({ heartbeats: 500, intervalSec: 20, workers: [4, 1] });
    expect(parsed.markdown).toBe(false);
    expect(() => parseScaleArgs(["--heartbeats", "0"])).toThrow(/--heartbeats must be/);
  });

  it("serves the stub model's idle answers in the Chat Completions format", async () => {
    const stub = await startStubModelServer();
    try {
      const response = await fetch(`${stub.baseURL}/chat/completions`, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify({
          model: "stub",
          messages: [{ role: "user", content: "Tick: 1" }],
          response_format: { type: "json_schema", json_schema: { name: "assessment" } },
        }),
      });
      const body = (await response.json()) as {
        choices: { message: { content: string } }[];
        usage: { total_tokens: number };
      };
      const assessment = JSON.parse(body.choices[0]?.message.content ?? "{}");
      expect(assessment).toMatchObject({ goalComplete: false, actionNeeded: false });
      expect(body.usage.total_tokens).toBeGreaterThan(0);
      expect(stub.counts()).toMatchObject({ assessment: 1, plan: 0, execute: 0, errors: 0 });
    } finally {
      await stub.close();
    }
  });
});
