/**
 * The tick queue and the schema on a real embedded PostgreSQL: scheduleTick
 * keeps one queued job per heartbeat (the earliest time wins), a real pg-boss
 * worker fetches it, and while it runs the next one can be queued (policy
 * `short`); wake, stop and start each change the row and the queue together;
 * migrations run concurrently from several processes' connections.
 */
import { afterEach, describe, expect, it } from "vitest";
import { CommandFailedError } from "../../../src/errors.js";
import { type Database, openDatabase } from "../../../src/services/pg/db.js";
import {
  migrateDatabase,
  SCHEMA_VERSION,
  schemaVersionOf,
} from "../../../src/services/pg/migrations.js";
import {
  openBoss,
  scheduleTick,
  startHeartbeat,
  stopHeartbeat,
  TICK_QUEUE,
  wakeHeartbeat,
} from "../../../src/services/pg/queue.js";
import { pgStoreBackend } from "../../../src/services/store/pgStore.js";
import { usePostgres } from "../../support/postgres.js";

const pg = usePostgres();

let db: Database;
let drop: () => Promise<void>;
afterEach(async () => {
  await db?.close();
  await drop?.();
});

async function open(): Promise<Database> {
  const fresh = await pg.freshDatabase();
  db = await openDatabase(fresh.url, { max: 4 });
  drop = fresh.drop;
  return db;
}

const queued = async (id: string) =>
  (
    await db.query<{ start_after: Date; state: string }>(
      "SELECT start_after, state FROM pgboss.job WHERE name = $1 AND singleton_key = $2 AND state = 'created'",
      [TICK_QUEUE, id],
    )
  ).rows;
const dbNow = async () =>
  (await db.query<{ now: Date }>("SELECT now() AS now")).rows[0]?.now.getTime() ?? 0;

describe("the tick queue", () => {
  it("one queued job per heartbeat, the earliest time wins; a worker fetches it, and the next can be queued while it runs", async () => {
    await open();
    const later = new Date("2031-01-01T00:00:00.000Z");
    const sooner = new Date("2030-01-01T00:00:00.000Z");
    expect(await scheduleTick(db, "a", later)).toMatch(/^[0-9a-f-]{36}$/);
    expect(await scheduleTick(db, "a", new Date("2032-01-01T00:00:00.000Z"))).toBeNull();
    expect((await queued("a")).map((j) => j.start_after.toISOString())).toEqual([
      later.toISOString(),
    ]);
    expect(await scheduleTick(db, "a", sooner)).toBeNull();
    expect((await queued("a")).map((j) => j.start_after.toISOString())).toEqual([
      sooner.toISOString(),
    ]);

    // Due now: a real pg-boss fetches it with its data.
    await scheduleTick(db, "b", new Date(Date.now() - 1000));
    const boss = await openBoss(db, { supervise: false });
    try {
      const [job] = await boss.fetch<{ id: string }>(TICK_QUEUE);
      expect(job?.data).toEqual({ id: "b" });
      // Active does not count: the next tick's job is queued beside it.
      expect(await scheduleTick(db, "b", later)).not.toBeNull();
      expect(await queued("b")).toHaveLength(1);
      expect(await boss.fetch(TICK_QUEUE)).toEqual([]);
    } finally {
      await boss.stop({ graceful: false, close: false });
    }
  });

  it("wake brings the queued tick forward to now (or queues one); stop removes it and refuses a wake; start queues one now", async () => {
    const backend = pgStoreBackend(await open(), { schedule: true });
    await backend.create("w", {
      workdir: "/tmp",
      goal: "g",
      firstTickAt: new Date("2030-01-01T00:00:00.000Z"),
    });
    expect(await queued("w")).toHaveLength(1);
    const before = await dbNow();
    await wakeHeartbeat(db, "w");
    const [job] = await queued("w");
    expect(job?.start_after.getTime()).toBeGreaterThanOrEqual(before - 1000);
    expect(job?.start_after.getTime()).toBeLessThanOrEqual(await dbNow());
    expect((await backend.summaries())[0]?.wakeRequestedAt).not.toBeNull();

    // No queued job (a worker holds it): wake queues one.
    await db.query("UPDATE pgboss.job SET state = 'active' WHERE singleton_key = 'w'");
    await wakeHeartbeat(db, "w");
    expect(await queued("w")).toHaveLength(1);

    await stopHeartbeat(db, "w");
    expect(await queued("w")).toEqual([]);
    expect((await backend.summaries())[0]?.stoppedAt).not.toBeNull();
    const refused = await wakeHeartbeat(db, "w").catch((error: unknown) => error);
    expect(refused).toBeInstanceOf(CommandFailedError);
    expect((refused as CommandFailedError).code).toBe("not-running");
    expect(await queued("w")).toEqual([]);

    await startHeartbeat(db, "w");
    expect((await backend.summaries())[0]?.stoppedAt).toBeNull();
    expect(await queued("w")).toHaveLength(1);

    for (const action of [wakeHeartbeat, stopHeartbeat, startHeartbeat]) {
      const missing = await action(db, "nobody").catch((error: unknown) => error);
      expect((missing as CommandFailedError).code).toBe("not-found");
    }
  });
});

describe("migrations", () => {
  it("several processes migrating one empty database at once: all succeed, each migration and the queue once", async () => {
    const fresh = await pg.freshDatabase({ migrated: false });
    drop = fresh.drop;
    const dbs = await Promise.all([1, 2, 3].map(() => openDatabase(fresh.url, { max: 2 })));
    try {
      const results = await Promise.all(dbs.map((each) => migrateDatabase(each)));
      expect(results.map((r) => r.to)).toEqual([SCHEMA_VERSION, SCHEMA_VERSION, SCHEMA_VERSION]);
      // Exactly one of them did the work.
      expect(results.filter((r) => r.from === 0)).toHaveLength(1);
      db = dbs[0] as Database;
      expect(await schemaVersionOf(db)).toBe(SCHEMA_VERSION);
      const queues = await db.query("SELECT name, policy FROM pgboss.queue");
      expect(queues.rows).toEqual([{ name: TICK_QUEUE, policy: "short" }]);
    } finally {
      for (const each of dbs.slice(1)) await each.close();
    }
  });
});
