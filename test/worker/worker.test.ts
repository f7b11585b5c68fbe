/**
 * Workers in-process against a real PostgreSQL (embedded, one per file) and
 * the fake model over HTTP: heartbeats made with `createInDatabase` run to
 * completion with each tick journaled once; a job that comes early is put
 * back at `nextTickAt`; a stopped heartbeat's job runs nothing; an
 * unreachable workdir is left for another worker, then failed with the reason
 * journaled; a dead worker's expired lease is rescued and its tick runs
 * again; `stop()` abandons a hanging tick within a second, releasing the
 * lease and scheduling the tick again.
 */
import * as fs from "node:fs/promises";
import * as path from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { HeartbeatWiring } from "../../src/host/wiring.js";
import { type Database, openDatabase } from "../../src/services/pg/db.js";
import { openBoss, stopHeartbeat, TICK_QUEUE } from "../../src/services/pg/queue.js";
import { pgStoreBackend } from "../../src/services/store/pgStore.js";
import { createInDatabase } from "../../src/worker/create.js";
import type { WorkerEvent, WorkerOptions } from "../../src/worker/types.js";
import { startWorker } from "../../src/worker/worker.js";
import { tempDir } from "../support/cli.js";
import { type FakeOpenAI, type Handler, scripted, startFakeOpenAI } from "../support/fakeOpenAI.js";
import { usePostgres } from "../support/postgres.js";

const pg = usePostgres();
const cleanups: (() => Promise<unknown>)[] = [];
afterEach(async () => {
  for (const fn of cleanups.splice(0).reverse()) await fn().catch(() => {});
});

const ENV = { OPENAI_API_KEY: "sk-worker-test-0123456789" };

async function setup(handler?: Handler) {
  const fake: FakeOpenAI = await startFakeOpenAI(handler ?? scripted({}));
  cleanups.push(() => fake.close());
  const fresh = await pg.freshDatabase();
  cleanups.push(() => fresh.drop());
  const db: Database = await openDatabase(fresh.url);
  cleanups.push(() => db.close());
  const workdir = await fs.realpath(await tempDir("ravenclaws-worker-"));
  cleanups.push(() => fs.rm(workdir, { recursive: true, force: true }));
  const wiring = new HeartbeatWiring({ env: ENV, stateDir: workdir, userConfig: null });
  const create = async (id: string, flags: Record<string, unknown> = {}, dir = workdir) => {
    const settings = await wiring.resolve({
      id,
      goal: `Goal of ${id}`,
      baseUrl: fake.baseURL,
      model: "fake",
      tickInterval: "0",
      maxTicks: "3",
      tools: false,
      ...flags,
    });
    return createInDatabase(db, { id, goal: `Goal of ${id}`, workdir: dir, settings });
  };
  const start = async (options: Partial<WorkerOptions> = {}) => {
    const worker = await startWorker(
      { db, env: ENV, concurrency: 2, ...options },
      { userConfig: null },
    );
    const events: WorkerEvent[] = [];
    worker.on((e) => events.push(e));
    cleanups.push(() => worker.stop());
    return { worker, events };
  };
  return { fake, db, fresh, workdir, create, start };
}

async function until<T>(check: () => Promise<T | undefined | false>, what: string, ms = 20_000) {
  const deadline = Date.now() + ms;
  for (;;) {
    const value = await check();
    if (value !== undefined && value !== false) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

const rowOf = async (db: Database, id: string) =>
  (
    await db.query<{ status: string; tick: number; seq: number }>(
      "SELECT status, tick, seq FROM ravenclaws.heartbeats WHERE id = $1",
      [id],
    )
  ).rows[0];

const ticksOf = async (db: Database, id: string) =>
  (await pgStoreBackend(db).heartbeat(id).readJournal())
    .filter((e) => e.type === "tick")
    .map((e) => e.tick);

const jobsOf = async (db: Database, id: string) =>
  (
    await db.query<{ id: string; state: string; start_after: Date }>(
      "SELECT id, state, start_after FROM pgboss.job WHERE name = $1 AND singleton_key = $2 ORDER BY created_on",
      [TICK_QUEUE, id],
    )
  ).rows;

describe("startWorker", () => {
  it("runs created heartbeats to completion: each tick journaled once, no lease or queued job left", async () => {
    const s = await setup();
    for (const id of ["a", "b", "c"]) await s.create(id);
    const { events } = await s.start();
    for (const id of ["a", "b", "c"]) {
      await until(async () => (await rowOf(s.db, id))?.status === "completed", `${id} completed`);
      expect(await rowOf(s.db, id)).toMatchObject({ status: "completed", tick: 3 });
      expect(await ticksOf(s.db, id)).toEqual([1, 2, 3]);
      // A tick due at once queues a job at each commit; the worker that takes it finds it ended.
      await until(
        async () =>
          (await jobsOf(s.db, id)).every((j) => j.state !== "created" && j.state !== "active"),
        `${id}'s jobs done`,
      );
    }
    expect((await s.db.query("SELECT * FROM ravenclaws.leases")).rows).toEqual([]);
    expect(events.filter((e) => e.type === "tick.started").length).toBeGreaterThanOrEqual(3);
    // The model was called with the worker's key, which no heartbeat stored.
    expect(
      s.fake.requests.some((r) => r.headers.authorization === `Bearer ${ENV.OPENAI_API_KEY}`),
    ).toBe(true);
    const stored = await s.db.query("SELECT state::text AS t FROM ravenclaws.heartbeats");
    for (const row of stored.rows) expect(String(row.t)).not.toContain(ENV.OPENAI_API_KEY);
  }, 30_000);

  it("sleeps between ticks: a heartbeat on an interval gets its next job at nextTickAt; an early job is put back there", async () => {
    const s = await setup();
    await s.create("slow", { tickInterval: "3600", maxTicks: "5" });
    const { events } = await s.start();
    await until(async () => (await rowOf(s.db, "slow"))?.tick === 1, "tick 1");
    await until(
      async () => events.some((e) => e.type === "job" && e.id === "slow" && e.outcome === "asleep"),
      "the job done with",
    );
    const [queued] = (await jobsOf(s.db, "slow")).filter((j) => j.state === "created");
    const state = await pgStoreBackend(s.db).heartbeat("slow").peek();
    expect(queued?.start_after.toISOString()).toBe(state?.nextTickAt);
    // A job that comes early (due now) is rescheduled to nextTickAt and runs nothing.
    await s.db.query("UPDATE pgboss.job SET start_after = now() WHERE id = $1", [queued?.id]);
    await until(
      async () =>
        events.some((e) => e.type === "job" && e.id === "slow" && e.outcome === "rescheduled"),
      "the early job rescheduled",
    );
    expect((await rowOf(s.db, "slow"))?.tick).toBe(1);
    const [again] = (await jobsOf(s.db, "slow")).filter((j) => j.state === "created");
    expect(again?.start_after.toISOString()).toBe(state?.nextTickAt);
  }, 30_000);

  it("runs nothing for a stopped heartbeat whose job is still there", async () => {
    const s = await setup();
    await s.create("halted");
    await stopHeartbeat(s.db, "halted");
    // A job left over from before the stop (stop deletes the queued one; put one back).
    const boss = await openBoss(s.db, { supervise: false });
    cleanups.push(() => boss.stop({ graceful: false, close: false }));
    await boss.send(TICK_QUEUE, { id: "halted" }, { singletonKey: "halted" });
    const { events } = await s.start();
    await until(
      async () =>
        events.some((e) => e.type === "job" && e.id === "halted" && e.outcome === "skipped"),
      "the job skipped",
    );
    expect(await rowOf(s.db, "halted")).toMatchObject({ tick: 0, status: "sleeping" });
    expect(s.fake.chatRequests()).toHaveLength(0);
  }, 30_000);

  it("leaves a job whose workdir it cannot reach to another worker, then fails it with the reason journaled", async () => {
    const s = await setup();
    const gone = path.join(s.workdir, "mounted-elsewhere");
    await fs.mkdir(gone);
    await s.create("far", {}, gone);
    await fs.rm(gone, { recursive: true });
    const { events } = await s.start({ unreachableRetryMs: 100, unreachableDeadlineMs: 600 });
    await until(
      async () =>
        events.some((e) => e.type === "job" && e.id === "far" && e.outcome === "unreachable"),
      "the job given up",
      10_000,
    );
    expect(
      events.filter((e) => e.type === "job" && e.outcome === "elsewhere").length,
    ).toBeGreaterThan(1);
    const journal = await pgStoreBackend(s.db).heartbeat("far").readJournal();
    const error = journal.find((e) => e.type === "worker-error");
    expect(error).toMatchObject({ code: "workdir-unreachable", workdir: gone });
    expect(String(error?.message)).toContain(gone);
    expect((await jobsOf(s.db, "far")).map((j) => j.state)).toContain("failed");
    expect(await rowOf(s.db, "far")).toMatchObject({ tick: 0 });
  }, 30_000);

  it("rescues a dead worker's tick: its lease expired, its job is failed and the tick runs again", async () => {
    const s = await setup();
    await s.create("orphan", { maxTicks: "1" });
    // A worker that took the job and the lease, then died: the job stays active, the lease expires.
    const boss = await openBoss(s.db, { supervise: false });
    cleanups.push(() => boss.stop({ graceful: false, close: false }));
    const [job] = await boss.fetch<{ id: string }>(TICK_QUEUE);
    expect(job?.data.id).toBe("orphan");
    const store = pgStoreBackend(s.db).heartbeat("orphan");
    const dead = await store.acquireLock({ jobId: job?.id, refreshMs: 3_600_000, ttlMs: 300 });
    dead.onCompromised(() => {});
    const { events } = await s.start({ rescueMs: 200 });
    await until(
      async () => (await rowOf(s.db, "orphan"))?.status === "completed",
      "orphan completed",
    );
    expect(events).toContainEqual(
      expect.objectContaining({
        type: "rescued",
        id: "orphan",
        jobId: job?.id,
        why: "lease-expired",
      }),
    );
    expect(await ticksOf(s.db, "orphan")).toEqual([1]);
    expect((await jobsOf(s.db, "orphan")).find((j) => j.id === job?.id)?.state).toBe("failed");
  }, 30_000);

  it("stop() abandons a hanging tick within a second: lease released, tick scheduled again, nothing committed", async () => {
    const s = await setup(() => ({ kind: "hang" }));
    await s.create("stuck");
    const { worker, events } = await s.start();
    await until(async () => s.fake.chatRequests().length > 0, "the model call");
    const before = await rowOf(s.db, "stuck");
    const started = Date.now();
    await worker.stop();
    expect(Date.now() - started).toBeLessThan(1_000);
    expect(events).toContainEqual(
      expect.objectContaining({ type: "job", id: "stuck", outcome: "abandoned" }),
    );
    expect(events.at(-1)).toMatchObject({ type: "stopped", abandoned: 1 });
    expect((await s.db.query("SELECT * FROM ravenclaws.leases")).rows).toEqual([]);
    expect(await rowOf(s.db, "stuck")).toEqual(before);
    const queued = (await jobsOf(s.db, "stuck")).filter((j) => j.state === "created");
    expect(queued).toHaveLength(1);
    expect(queued[0]?.start_after.getTime()).toBeLessThanOrEqual(Date.now());
  }, 30_000);
});
