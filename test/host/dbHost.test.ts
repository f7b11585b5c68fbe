/**
 * The database host against a real PostgreSQL (embedded, one server for the
 * file, a fresh database per test): the overview from one query (status from
 * the row, the stop, the lease and the due time), a detail, the journal's
 * tail, events polled from commits made through another connection (as
 * another process's worker makes them), and wake/stop/start through the tick
 * queue.
 */
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { createDbHost, DB_POLL_BATCH, type DbHost } from "../../src/host/dbHost.js";
import type { HostEvent } from "../../src/host/types.js";
import { type Database, openDatabase } from "../../src/services/pg/db.js";
import { startHeartbeat, stopHeartbeat, wakeHeartbeat } from "../../src/services/pg/queue.js";
import { type PgStoreBackend, pgStoreBackend } from "../../src/services/store/pgStore.js";
import { snapshotOf } from "../services/store/conformance.js";
import { usePostgres } from "../support/postgres.js";

const pg = usePostgres();
let dropDb: () => Promise<void>;
let db: Database;
/** A second pool on the same database: the "other process" that commits ticks. */
let other: Database;
let backend: PgStoreBackend;
let host: DbHost;
const events: HostEvent[] = [];

const goals: Record<string, string> = { alpha: "Keep notes", beta: "Tidy up" };
const SOON = () => new Date(Date.now() + 3_600_000).toISOString();

/** Heartbeat `id` saved at `tick` (sleeping until an hour from now), with `entries` journaled. */
async function commitTick(id: string, tick: number, entries: Record<string, unknown>[] = []) {
  const store = backend.heartbeat(id);
  await store.load();
  const state = snapshotOf(id, tick, tick);
  state.goal = goals[id] ?? state.goal;
  (state.snapshot.context as { goal: string }).goal = state.goal;
  state.nextTickAt = SOON();
  // Every persisted snapshot is taken in `persisting`.
  (state.snapshot as { value: unknown }).value = "persisting";
  state.usage = {
    calls: tick,
    promptTokens: 100 * tick,
    completionTokens: 10 * tick,
    totalTokens: 110 * tick,
  };
  await store.commit(state, [
    ...entries.map((e) => ({ seq: tick, tick, ...e, type: String(e.type) })),
    { type: "tick", seq: tick, tick, status: "ok", at: new Date().toISOString() },
  ]);
}

beforeEach(async () => {
  const fresh = await pg.freshDatabase();
  dropDb = fresh.drop;
  db = await openDatabase(fresh.url);
  other = await openDatabase(fresh.url);
  backend = pgStoreBackend(other);
  events.length = 0;
  host = await createDbHost(
    { db, where: db.url, pollMs: 60_000 },
    {
      create: () => Promise.reject(new Error("not used here")),
      wake: (id) => wakeHeartbeat(db, id),
      stop: (id) => stopHeartbeat(db, id),
      start: (id) => startHeartbeat(db, id),
    },
  );
  host.subscribe((event) => events.push(event));
});

afterEach(async () => {
  await host?.close();
  await db?.close();
  await other?.close();
  await dropDb?.();
});

describe("the database host", () => {
  it("lists every heartbeat from one query: saved, unsaved, ticking under a lease, stopped", async () => {
    await backend.create("alpha", { workdir: "/w/a", goal: "Keep notes" });
    await backend.create("beta", { workdir: "/w/b", goal: "Tidy up" });
    await commitTick("alpha", 2);

    let rows = await host.list();
    expect(rows.map((r) => [r.id, r.status, r.tick, r.workdir])).toEqual([
      ["alpha", "sleeping", 2, "/w/a"],
      ["beta", "queued", 0, "/w/b"],
    ]);
    expect(rows[0]).toMatchObject({ goal: "Keep notes", state: "sleeping" });
    expect(rows[0]?.usage.totalTokens).toBe(220);

    const lease = await backend.heartbeat("alpha").acquireLock();
    expect((await host.list()).find((r) => r.id === "alpha")?.status).toBe("ticking");
    await lease.release();
    await stopHeartbeat(other, "beta");
    rows = await host.list();
    expect(rows.map((r) => [r.id, r.status])).toEqual([
      ["alpha", "sleeping"],
      ["beta", "stopped"],
    ]);
    expect(rows[1]?.reason).toBe("stopped");
  });

  it("gives a heartbeat in detail and the tail of its journal, newest last, by type", async () => {
    await backend.create("alpha", { workdir: "/w/a", goal: "Keep notes" });
    for (let tick = 1; tick <= 3; tick++) {
      await commitTick("alpha", tick, [
        { type: "tool", callId: `c${tick}`, name: "list_dir", status: "ok" },
      ]);
    }
    const detail = await host.get("alpha");
    expect(detail).toMatchObject({
      id: "alpha",
      tick: 3,
      goalText: "Keep notes",
      progress: "progress of alpha at seq 3",
    });
    expect(await host.get("nobody")).toBeNull();

    const all = await host.journal("alpha", { limit: 100 });
    expect(all.truncated).toBe(false);
    expect(all.entries.map((e) => `${e.type}:${e.tick}`)).toEqual([
      "tool:1",
      "tick:1",
      "tool:2",
      "tick:2",
      "tool:3",
      "tick:3",
    ]);
    const ticks = await host.journal("alpha", { limit: 2, types: ["tick"] });
    expect(ticks.entries.map((e) => e.tick)).toEqual([2, 3]);
    expect(ticks.truncated).toBe(true);
    expect(await host.has("alpha")).toBe(true);
    expect(await host.has("nobody")).toBe(false);
  });

  it("turns commits made by another connection into events: added, tool, tick with the row after it", async () => {
    await backend.create("alpha", { workdir: "/w/a", goal: "Keep notes" });
    await host.poll();
    expect(events.filter((e) => e.type === "heartbeat.added").map((e) => e.id)).toEqual(["alpha"]);

    events.length = 0;
    await commitTick("alpha", 1, [
      { type: "tool", callId: "c1", name: "write_file", status: "ok" },
    ]);
    await host.poll();
    const tool = events.find((e) => e.type === "tool");
    expect(tool).toMatchObject({
      id: "alpha",
      tick: 1,
      call: { callId: "c1", name: "write_file", status: "ok" },
    });
    const tick = events.find((e) => e.type === "tick");
    expect(tick).toMatchObject({ id: "alpha", summary: { tick: 1, status: "sleeping" } });
    expect(
      (tick as unknown as { entries: Array<{ type: string }> }).entries.map((e) => e.type),
    ).toEqual(["tick"]);

    // Nothing new: a poll says nothing (the overlap window is read again, deduplicated).
    events.length = 0;
    await host.poll();
    expect(events).toEqual([]);
  });

  it("streams a burst of journal rows over several polls, each exactly once", async () => {
    await backend.create("alpha", { workdir: "/w/a", goal: "Keep notes" });
    await host.poll();
    events.length = 0;
    await other.query(
      `INSERT INTO ravenclaws.journal (heartbeat_id, seq, type, entry)
       SELECT 'alpha', NULL, 'tool', jsonb_build_object('type', 'tool', 'tick', 1, 'callId', 'c' || n, 'name', 'list_dir', 'status', 'ok')
         FROM generate_series(1, 2500) AS n`,
    );
    const tools = () => events.filter((e) => e.type === "tool").length;
    const counts: number[] = [];
    do {
      await host.poll();
      counts.push(tools());
    } while (counts.length < 2 || (counts.at(-1) as number) > (counts.at(-2) as number));
    expect(counts.slice(0, 3)).toEqual([DB_POLL_BATCH, 2 * DB_POLL_BATCH, 2500]);
    const callIds = events.map((e) => (e.type === "tool" ? e.call.callId : null)).filter(Boolean);
    expect(new Set(callIds).size).toBe(2500);
  });

  it("shows the phase of a tick this process runs (the in-process worker's state events) until its job ends", async () => {
    await backend.create("alpha", { workdir: "/w/a", goal: "Keep notes" });
    await commitTick("alpha", 1);
    const listeners = new Set<(event: { type: string; id?: string; state?: string }) => void>();
    const ticks = {
      stop: async () => {},
      on: (listener: (event: { type: string; id?: string; state?: string }) => void) => {
        listeners.add(listener);
        return () => listeners.delete(listener);
      },
    };
    const local = await createDbHost(
      { db, where: db.url, pollMs: 60_000, ticks },
      {
        create: () => Promise.reject(new Error("not used here")),
        wake: async () => {},
        stop: async () => {},
        start: async () => {},
      },
    );
    const seen: HostEvent[] = [];
    local.subscribe((event) => seen.push(event));
    try {
      for (const listener of listeners)
        listener({ type: "state", id: "alpha", state: "assessing" });
      expect(seen.at(-1)).toMatchObject({
        type: "state",
        id: "alpha",
        summary: { status: "ticking", state: "assessing" },
      });
      expect((await local.list())[0]).toMatchObject({ status: "ticking", state: "assessing" });
      for (const listener of listeners) listener({ type: "job", id: "alpha" });
      expect((await local.list())[0]).toMatchObject({ status: "sleeping", state: "sleeping" });
    } finally {
      await local.close();
    }
  });

  it("wakes, stops and starts through the tick queue; ended or stopped ones are not woken", async () => {
    await backend.create("alpha", { workdir: "/w/a", goal: "Keep notes" });
    await commitTick("alpha", 1);
    const queued = async () =>
      (
        await db.query<{ n: string }>(
          "SELECT count(*)::text AS n FROM pgboss.job WHERE singleton_key = 'alpha' AND state = 'created' AND start_after <= now()",
        )
      ).rows[0]?.n;
    expect(await queued()).toBe("0");
    const woken = await host.wake("alpha");
    expect(woken.message).toMatch(/Woke/);
    expect(await queued()).toBe("1");

    const stopped = await host.stop("alpha");
    expect(stopped.summary.status).toBe("stopped");
    expect(await queued()).toBe("0");
    expect((await host.wake("alpha")).message).toMatch(/stopped: there is nothing to wake/);
    expect((await host.stop("alpha")).message).toMatch(/already stopped/);

    const started = await host.start("alpha");
    expect(started.summary.status).not.toBe("stopped");
    expect(await queued()).toBe("1");
    await expect(host.wake("nobody")).rejects.toMatchObject({ code: "not-found" });
  });
});
