/**
 * The PostgreSQL store passes the HeartbeatStore conformance suite, on a real
 * embedded server (a fresh migrated database per test); then what only a
 * database store promises: one transaction per tick (compare-and-set on seq,
 * the journal, the next tick's job), leases, and no password in any row.
 */
import { afterEach, describe, expect, it, vi } from "vitest";
import { LockCompromisedError, LockedError } from "../../../src/errors.js";
import { type Database, openDatabase } from "../../../src/services/pg/db.js";
import { TICK_QUEUE } from "../../../src/services/pg/queue.js";
import { pgStoreBackend } from "../../../src/services/store/pgStore.js";
import { usePostgres } from "../../support/postgres.js";
import { describeStoreConformance, snapshotOf } from "./conformance.js";

const pg = usePostgres();

describeStoreConformance("postgres", async () => {
  const fresh = await pg.freshDatabase();
  const db = await openDatabase(fresh.url, { max: 4 });
  return {
    backend: pgStoreBackend(db),
    async close() {
      await db.close();
      await fresh.drop();
    },
  };
});

describe("PgHeartbeatStore: one transaction per tick", () => {
  let db: Database;
  let drop: () => Promise<void>;

  async function open(): Promise<Database> {
    const fresh = await pg.freshDatabase();
    db = await openDatabase(fresh.url, { max: 6 });
    drop = fresh.drop;
    return db;
  }

  afterEach(async () => {
    await db?.close();
    await drop?.();
  });

  const tick = (seq: number, by: string) => ({ type: "tick", seq, tick: seq, by });
  const sleeping = (id: string, seq: number, at: string) => {
    const state = snapshotOf(id, seq);
    state.status = "sleeping";
    state.nextTickAt = at;
    return state;
  };
  const createdJobs = async (id: string) =>
    (
      await db.query<{ start_after: Date }>(
        "SELECT start_after FROM pgboss.job WHERE name = $1 AND singleton_key = $2 AND state = 'created'",
        [TICK_QUEUE, id],
      )
    ).rows;

  it("two concurrent commits of the same seq: exactly one wins, the other is refused, the tick is journaled once", async () => {
    const backend = pgStoreBackend(await open());
    const setup = backend.heartbeat("race");
    await setup.load();
    await setup.commit(snapshotOf("race", 1), [tick(1, "setup")]);
    const a = backend.heartbeat("race");
    const b = backend.heartbeat("race");
    await Promise.all([a.load(), b.load()]);
    const results = await Promise.allSettled([
      a.commit(snapshotOf("race", 2, 2, "by a"), [tick(2, "a")]),
      b.commit(snapshotOf("race", 2, 2, "by b"), [tick(2, "b")]),
    ]);
    const won = results.filter((r) => r.status === "fulfilled");
    const lost = results.filter((r) => r.status === "rejected");
    expect(won).toHaveLength(1);
    expect(lost).toHaveLength(1);
    expect((lost[0] as PromiseRejectedResult).reason).toBeInstanceOf(LockCompromisedError);
    const winner = results[0]?.status === "fulfilled" ? "a" : "b";
    expect((await backend.heartbeat("race").peek())?.progress).toBe(
      `progress of race at seq 2 (by ${winner})`,
    );
    const journal = await backend.heartbeat("race").readJournal();
    expect(journal.filter((e) => e.seq === 2)).toEqual([tick(2, winner)]);
  });

  it("queues the next tick in the same transaction: both land, or neither", async () => {
    const backend = pgStoreBackend(await open(), { schedule: true });
    const store = backend.heartbeat("sched");
    await store.load();
    const t1 = "2030-01-01T00:00:00.000Z";
    await store.commit(sleeping("sched", 1, t1), [tick(1, "w")]);
    expect((await createdJobs("sched")).map((j) => j.start_after.toISOString())).toEqual([t1]);
    // A worker fetched that job; the next commit fails at COMMIT (a deferred trigger), after the job was sent.
    await db.query("UPDATE pgboss.job SET state = 'active' WHERE singleton_key = 'sched'");
    await db.query(`
      CREATE FUNCTION refuse() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN RAISE EXCEPTION 'refused at commit'; END $$;
      CREATE CONSTRAINT TRIGGER refuse AFTER UPDATE ON ravenclaws.heartbeats
        DEFERRABLE INITIALLY DEFERRED FOR EACH ROW WHEN (NEW.tick = 2) EXECUTE FUNCTION refuse();`);
    const t2 = "2030-01-01T00:05:00.000Z";
    await expect(store.commit(sleeping("sched", 2, t2), [tick(2, "w")])).rejects.toThrow(
      /refused at commit/,
    );
    expect(await createdJobs("sched")).toEqual([]);
    expect((await backend.heartbeat("sched").peek())?.seq).toBe(1);
    expect((await store.readJournal()).map((e) => e.seq)).toEqual([1]);
    // Once it can commit, the snapshot, its journal entry and the job land together.
    await db.query("DROP TRIGGER refuse ON ravenclaws.heartbeats");
    await store.commit(sleeping("sched", 2, t2), [tick(2, "w")]);
    expect((await createdJobs("sched")).map((j) => j.start_after.toISOString())).toEqual([t2]);
    expect((await store.readJournal()).map((e) => e.seq)).toEqual([1, 2]);
    // A stopped heartbeat's commit queues nothing.
    await db.query("UPDATE pgboss.job SET state = 'active' WHERE singleton_key = 'sched'");
    await db.query("UPDATE ravenclaws.heartbeats SET stopped_at = now() WHERE id = 'sched'");
    await store.commit(sleeping("sched", 3, t2), [tick(3, "w")]);
    expect(await createdJobs("sched")).toEqual([]);
  });

  it("a lease is refreshed while held, refused to others naming its holder, and taken over once it expired", async () => {
    const backend = pgStoreBackend(await open());
    const a = backend.heartbeat("lease");
    const b = backend.heartbeat("lease");
    await Promise.all([a.load(), b.load()]);
    // A holder that refreshes: its lease's expiry moves on.
    const live = await a.acquireLock({ refreshMs: 50, ttlMs: 200 });
    const expiry = async () =>
      (
        await db.query<{ at: Date }>(
          "SELECT expires_at AS at FROM ravenclaws.leases WHERE heartbeat_id = 'lease'",
        )
      ).rows[0]?.at.getTime() ?? 0;
    const first = await expiry();
    await vi.waitFor(async () => expect(await expiry()).toBeGreaterThan(first), { timeout: 5000 });
    await live.release();
    // A holder that stopped refreshing (frozen, or dead on another machine).
    const frozen = await a.acquireLock({ refreshMs: 60_000, ttlMs: 400, host: "elsewhere" });
    await a.commit(snapshotOf("lease", 1), []);
    const refused = await b.acquireLock().then(
      () => null,
      (error: unknown) => error,
    );
    expect(refused).toBeInstanceOf(LockedError);
    expect((refused as LockedError).holder).toMatchObject({ host: "elsewhere", pid: process.pid });
    expect((refused as LockedError).message).toContain("pid");
    const taken = await vi.waitFor(() => b.acquireLock({ refreshMs: 60_000 }), {
      timeout: 5000,
      interval: 100,
    });
    expect(taken.token).not.toBe(frozen.token);
    // The old holder is fenced off: its lease is gone, its writes are refused inside the transaction.
    await expect(frozen.verify()).rejects.toBeInstanceOf(LockCompromisedError);
    await expect(a.commit(snapshotOf("lease", 1, 1, "stale"), [])).rejects.toBeInstanceOf(
      LockCompromisedError,
    );
    await b.load();
    await b.commit(snapshotOf("lease", 2), []);
    expect((await b.peek())?.seq).toBe(2);
    await taken.release();
  });

  it("a lease of a process that is gone from this host is taken over at once", async () => {
    const backend = pgStoreBackend(await open());
    await db.query(
      `INSERT INTO ravenclaws.leases (heartbeat_id, owner, token, expires_at)
       VALUES ('dead', $1::jsonb, 'old', now() + interval '1 hour')`,
      [
        JSON.stringify({
          pid: 2 ** 22 + 17,
          host: (await import("node:os")).hostname(),
          since: "x",
        }),
      ],
    );
    const lock = await backend.heartbeat("dead").acquireLock({ refreshMs: 60_000 });
    expect(lock.token).not.toBe("old");
    await lock.release();
  });

  it("the URL's password never reaches a row: snapshots, journal, created rows, jobs, messages", async () => {
    const fresh = await pg.freshDatabase();
    const password = pg.server.password;
    db = await openDatabase(fresh.url, { max: 4 });
    drop = fresh.drop;
    expect(db.url).not.toContain(password);
    const backend = pgStoreBackend(db, { schedule: true });
    expect(
      await backend.create("pw", {
        workdir: "/tmp/w",
        goal: `use ${password}`,
        settings: { note: password },
      }),
    ).toBe(true);
    expect(await backend.create("pw", { workdir: "/tmp/w", goal: "again" })).toBe(false);
    const store = backend.heartbeat("pw");
    await store.load();
    const state = sleeping("pw", 1, "2030-01-01T00:00:00.000Z");
    state.progress = `the password is ${password}`;
    await store.commit(state, [{ type: "tick", seq: 1, said: password }]);
    await store.append([{ type: "tool", output: `echo ${password}` }]);
    const lock = await store.acquireLock({ refreshMs: 60_000 });
    const refused = await backend
      .heartbeat("pw")
      .acquireLock()
      .catch((error: Error) => error);
    expect(String((refused as Error).message)).not.toContain(password);
    await lock.release();
    const dump = (
      await db.query<{ row: string }>(`
        SELECT row_to_json(h)::text AS row FROM ravenclaws.heartbeats h
        UNION ALL SELECT row_to_json(j)::text FROM ravenclaws.journal j
        UNION ALL SELECT row_to_json(l)::text FROM ravenclaws.leases l
        UNION ALL SELECT row_to_json(q)::text FROM pgboss.job q`)
    ).rows
      .map((r) => r.row)
      .join("\n");
    expect(dump).toContain("[redacted]");
    expect(dump).toContain("the password is [redacted]");
    expect(dump).not.toContain(password);
    const [summary] = await backend.summaries();
    expect(summary).toMatchObject({ id: "pw", status: "sleeping", tick: 1, holder: null });
    expect(JSON.stringify(summary)).not.toContain(password);
  });
});
