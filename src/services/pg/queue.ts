/**
 * The tick queue on pg-boss: one job per due tick of a heartbeat. The queue
 * `heartbeat-tick` has the policy `short` with the heartbeat id as
 * `singletonKey`, so a heartbeat has at most one queued (`created`) job; the
 * next tick's job is written in the same transaction as the tick's snapshot
 * ({@link scheduleTick} with the transaction as executor). Liveness of a
 * running tick is our lease (`ravenclaws.leases`), not the job's expiry,
 * which is set long.
 *
 * pg-boss is loaded only when a queue function is first called.
 */
import type PgBoss from "pg-boss";
import { CommandFailedError } from "../../errors.js";
import type { Database, Executor } from "./db.js";

/** The pg-boss queue of heartbeat ticks. */
export const TICK_QUEUE = "heartbeat-tick";
/** pg-boss's schema. */
export const BOSS_SCHEMA = "pgboss";
/** A tick job's expiry: long, since a running tick's liveness is its lease. */
export const TICK_EXPIRE_SECONDS = 3600;

/** The data of a tick job. */
export interface TickJobData {
  id: string;
}

type PgBossClass = typeof PgBoss;

/**
 * A pg-boss instance writing through `db` (the pool, or a transaction) in the
 * schema {@link BOSS_SCHEMA}; nothing runs until it is started.
 */
export function createBoss(
  PgBossClass: PgBossClass,
  db: Executor,
  options: Omit<PgBoss.ConstructorOptions, "db"> = {},
): PgBoss {
  return new PgBossClass({
    db: { executeSql: (text: string, values: unknown[]) => db.executeSql(text, values) },
    schema: BOSS_SCHEMA,
    migrate: true,
    supervise: false,
    schedule: false,
    ...options,
  });
}

/** Creates the tick queue (policy `short`) unless it exists. */
export async function ensureTickQueue(boss: PgBoss): Promise<void> {
  if (await boss.getQueue(TICK_QUEUE)) return;
  await boss.createQueue(TICK_QUEUE, {
    name: TICK_QUEUE,
    policy: "short",
    expireInSeconds: TICK_EXPIRE_SECONDS,
  });
}

/**
 * How long pg-boss keeps finished tick jobs: the journal is a heartbeat's
 * history, so a completed job moves to the archive after an hour (a failed one
 * after a day) and leaves the archive after a day. pg-boss's defaults (12 h,
 * then 7 days) would keep ~2,000 rows per heartbeat at a 300 s interval.
 */
export const BOSS_RETENTION = {
  archiveCompletedAfterSeconds: 3600,
  archiveFailedAfterSeconds: 86_400,
  deleteAfterDays: 1,
} as const;

/**
 * A started pg-boss over the database (for workers: `work(TICK_QUEUE, …)` or
 * `fetch`), which expects the database migrated (`migrate: false` unless
 * `options` say otherwise); its maintenance (`supervise`, on by default)
 * applies {@link BOSS_RETENTION}. Stop it with `boss.stop({ close: false })`;
 * the database stays open.
 */
export async function openBoss(
  db: Database,
  options: Omit<PgBoss.ConstructorOptions, "db"> = {},
): Promise<PgBoss> {
  const { default: PgBossClass } = await import("pg-boss");
  const boss = createBoss(PgBossClass, db, {
    migrate: false,
    supervise: true,
    ...BOSS_RETENTION,
    ...options,
  });
  // pg-boss emits maintenance errors; the caller subscribes to report them.
  await boss.start();
  return boss;
}

let sender: Promise<PgBoss> | undefined;

/** One unstarted pg-boss for sends: every send names the executor it writes through. */
function senderBoss(): Promise<PgBoss> {
  sender ??= import("pg-boss").then(({ default: PgBossClass }) =>
    createBoss(PgBossClass, {
      query: () => Promise.reject(new Error("a send without its executor")),
      executeSql: () => Promise.reject(new Error("a send without its executor")),
    }),
  );
  return sender;
}

/**
 * Makes sure heartbeat `id` has a queued tick job due no later than
 * `startAfter`, written through `executor` (pass a transaction to make it
 * part of it): a new job, or the queued one brought forward. Returns the new
 * job's id, or null when a queued job was kept.
 */
export async function scheduleTick(
  executor: Executor,
  id: string,
  startAfter: Date,
): Promise<string | null> {
  const boss = await senderBoss();
  const jobId = await boss.send(TICK_QUEUE, { id } satisfies TickJobData, {
    db: { executeSql: (text: string, values: unknown[]) => executor.executeSql(text, values) },
    singletonKey: id,
    startAfter,
    expireInSeconds: TICK_EXPIRE_SECONDS,
  });
  if (jobId) return jobId;
  await executor.query(
    `UPDATE ${BOSS_SCHEMA}.job SET start_after = $3
      WHERE name = $1 AND singleton_key = $2 AND state = 'created' AND start_after > $3`,
    [TICK_QUEUE, id, startAfter],
  );
  return null;
}

function notFound(db: Database, id: string): CommandFailedError {
  return new CommandFailedError(
    "not-found",
    `There is no heartbeat "${id}" in the database at ${db.url}.`,
    { hint: "List the heartbeats with `ravenclaws status --database-url …`." },
  );
}

/**
 * Wakes heartbeat `id` now, in one transaction: records the request
 * (`wake_requested_at`) and brings its queued tick job forward to now (or
 * queues one). A stopped heartbeat is not woken: {@link CommandFailedError}
 * `not-running`; an unknown id: `not-found`.
 */
export async function wakeHeartbeat(db: Database, id: string): Promise<void> {
  await db.transaction(async (tx) => {
    const { rows } = await tx.query<{ stopped: boolean }>(
      `UPDATE ravenclaws.heartbeats SET wake_requested_at = now()
        WHERE id = $1 RETURNING stopped_at IS NOT NULL AS stopped`,
      [id],
    );
    const row = rows[0];
    if (!row) throw notFound(db, id);
    if (row.stopped)
      throw new CommandFailedError(
        "not-running",
        `Heartbeat "${id}" is stopped; nothing to wake.`,
        {
          hint: `Start it with \`ravenclaws start ${id} --database-url …\`.`,
        },
      );
    const { rows: now } = await tx.query<{ now: Date }>("SELECT now() AS now");
    await scheduleTick(tx, id, now[0]?.now ?? new Date());
  });
}

/**
 * Stops heartbeat `id` on purpose: sets `stopped_at` and removes its queued
 * tick job, in one transaction (a running tick ends with its commit, which
 * queues nothing for a stopped heartbeat). `not-found` for an unknown id.
 */
export async function stopHeartbeat(db: Database, id: string): Promise<void> {
  await db.transaction(async (tx) => {
    const { rowCount } = await tx.query(
      `UPDATE ravenclaws.heartbeats SET stopped_at = COALESCE(stopped_at, now()), updated_at = now()
        WHERE id = $1`,
      [id],
    );
    if (rowCount === 0) throw notFound(db, id);
    await tx.query(
      `DELETE FROM ${BOSS_SCHEMA}.job WHERE name = $1 AND singleton_key = $2 AND state = 'created'`,
      [TICK_QUEUE, id],
    );
  });
}

/**
 * Starts heartbeat `id` again: clears `stopped_at` and queues a tick now, in
 * one transaction. `not-found` for an unknown id.
 */
export async function startHeartbeat(db: Database, id: string): Promise<void> {
  await db.transaction(async (tx) => {
    const { rowCount } = await tx.query(
      "UPDATE ravenclaws.heartbeats SET stopped_at = NULL, updated_at = now() WHERE id = $1",
      [id],
    );
    if (rowCount === 0) throw notFound(db, id);
    const { rows: now } = await tx.query<{ now: Date }>("SELECT now() AS now");
    await scheduleTick(tx, id, now[0]?.now ?? new Date());
  });
}
