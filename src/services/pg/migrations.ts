/**
 * The database schema, versioned: our tables in the schema `ravenclaws`
 * (one numbered migration per change, recorded in `ravenclaws.migrations`),
 * pg-boss's tables in `pgboss`, and the tick queue. `migrateDatabase` brings
 * a database up to date and is safe to run from several processes at once
 * (an advisory lock serialises them); a database written by a newer
 * ravenclaws is refused, never changed.
 */
import { createRequire } from "node:module";
import { DatabaseError } from "../../errors.js";
import type { Database, Executor } from "./db.js";
import { BOSS_SCHEMA, createBoss, ensureTickQueue } from "./queue.js";

/** Our schema. */
export const SCHEMA = "ravenclaws";

/** One migration: its number and the SQL that brings version-1 to it. */
interface Migration {
  version: number;
  sql: string;
}

const MIGRATIONS: Migration[] = [
  {
    version: 1,
    sql: `
      CREATE TABLE ravenclaws.heartbeats (
        id text PRIMARY KEY,
        goal text NOT NULL,
        workdir text NOT NULL,
        settings jsonb NOT NULL DEFAULT '{}'::jsonb,
        status text NOT NULL DEFAULT 'created',
        tick int NOT NULL DEFAULT 0,
        seq int NOT NULL DEFAULT 0,
        state jsonb,
        next_tick_at timestamptz,
        stopped_at timestamptz,
        wake_requested_at timestamptz,
        journal_seq int NOT NULL DEFAULT 0,
        created_at timestamptz NOT NULL DEFAULT now(),
        updated_at timestamptz NOT NULL DEFAULT now()
      );
      CREATE TABLE ravenclaws.journal (
        id bigserial PRIMARY KEY,
        heartbeat_id text NOT NULL,
        seq int,
        type text NOT NULL,
        entry jsonb NOT NULL,
        at timestamptz NOT NULL DEFAULT now()
      );
      CREATE INDEX journal_heartbeat_id ON ravenclaws.journal (heartbeat_id, id);
      CREATE TABLE ravenclaws.leases (
        heartbeat_id text PRIMARY KEY,
        owner jsonb NOT NULL,
        token text NOT NULL,
        job_id uuid,
        expires_at timestamptz NOT NULL
      );
      CREATE TABLE ravenclaws.decisions (
        heartbeat_id text NOT NULL,
        call_id text NOT NULL,
        decision text NOT NULL CHECK (decision IN ('approve', 'deny')),
        reason text,
        decider jsonb,
        decided_at timestamptz NOT NULL DEFAULT now(),
        PRIMARY KEY (heartbeat_id, call_id)
      );
    `,
  },
  {
    // The overview's fields of the snapshot, computed by PostgreSQL on every
    // write: reading them from `state` detoasts it once per path and row.
    version: 2,
    sql: `
      ALTER TABLE ravenclaws.heartbeats
        ADD COLUMN usage jsonb GENERATED ALWAYS AS (state -> 'usage') STORED,
        ADD COLUMN reason text GENERATED ALWAYS AS (state ->> 'reason') STORED,
        ADD COLUMN state_value jsonb GENERATED ALWAYS AS (state -> 'snapshot' -> 'value') STORED,
        ADD COLUMN last_outcome text
          GENERATED ALWAYS AS (state -> 'snapshot' -> 'context' -> 'digests' -> -1 ->> 'outcome') STORED,
        ADD COLUMN pending_calls int GENERATED ALWAYS AS (
          CASE WHEN state -> 'snapshot' -> 'children' -> 'execute' -> 'snapshot' ->> 'value' = 'awaitingApproval'
               THEN coalesce(jsonb_array_length(
                      state -> 'snapshot' -> 'children' -> 'execute' -> 'snapshot' -> 'context' -> 'pending'), 0)
               ELSE 0 END) STORED;
    `,
  },
  {
    // A decision belongs to one round of one tick (call ids repeat across ticks):
    // its tick attempt and model call, as in the decision files.
    version: 3,
    sql: `
      ALTER TABLE ravenclaws.decisions
        ADD COLUMN attempt text NOT NULL DEFAULT '',
        ADD COLUMN iteration int NOT NULL DEFAULT 0;
    `,
  },
];

/** The schema version this ravenclaws writes. */
export const SCHEMA_VERSION = MIGRATIONS.at(-1)?.version ?? 0;

/** The advisory lock that serialises migrations (any fixed number; "RCmigr"). */
const MIGRATION_LOCK = 0x52_43_6d_69_67_72;

/** The version of our schema in the database: 0 when it was never migrated. */
export async function schemaVersionOf(db: Executor): Promise<number> {
  const { rows } = await db.query<{ exists: boolean }>(
    "SELECT to_regclass('ravenclaws.migrations') IS NOT NULL AS exists",
  );
  if (!rows[0]?.exists) return 0;
  const version = await db.query<{ version: number | null }>(
    "SELECT max(version) AS version FROM ravenclaws.migrations",
  );
  return version.rows[0]?.version ?? 0;
}

function tooNew(db: Database, version: number): DatabaseError {
  return new DatabaseError(
    "schema-too-new",
    `The database at ${db.url} has schema version ${version}, written by a newer ravenclaws; this one knows version ${SCHEMA_VERSION}. Nothing was changed.`,
    db.url,
    { hint: "Upgrade ravenclaws on this machine to use this database." },
  );
}

/**
 * Checks that the database is migrated to exactly this version (what commands
 * that only read or write heartbeats call): {@link DatabaseError}
 * `not-migrated` or `schema-too-new` otherwise.
 */
export async function checkSchema(db: Database): Promise<void> {
  const version = await schemaVersionOf(db);
  if (version > SCHEMA_VERSION) throw tooNew(db, version);
  if (version < SCHEMA_VERSION)
    throw new DatabaseError(
      "not-migrated",
      `The database at ${db.url} is at schema version ${version}; this ravenclaws needs version ${SCHEMA_VERSION}.`,
      db.url,
      { hint: "Run `ravenclaws db migrate --database-url …` first." },
    );
}

/**
 * Brings the database up to date: our migrations (each in its own
 * transaction, recorded in `ravenclaws.migrations`), pg-boss's schema, and the
 * tick queue. Returns our schema version before and after. Refuses a
 * database written by a newer ravenclaws (or a newer pg-boss) with a
 * {@link DatabaseError} `schema-too-new`, changing nothing.
 */
export async function migrateDatabase(db: Database): Promise<{ from: number; to: number }> {
  const result = await db.transaction(async (tx) => {
    // Two processes migrating at once: the second waits, then finds nothing left to do.
    await tx.query("SELECT pg_advisory_xact_lock($1)", [MIGRATION_LOCK]);
    const from = await schemaVersionOf(tx);
    if (from > SCHEMA_VERSION) throw tooNew(db, from);
    await tx.query(`CREATE SCHEMA IF NOT EXISTS ${SCHEMA}`);
    await tx.query(
      `CREATE TABLE IF NOT EXISTS ${SCHEMA}.migrations (version int PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())`,
    );
    for (const migration of MIGRATIONS) {
      if (migration.version <= from) continue;
      await tx.query(migration.sql);
      await tx.query(`INSERT INTO ${SCHEMA}.migrations (version) VALUES ($1)`, [migration.version]);
    }
    return { from, to: SCHEMA_VERSION };
  });
  await migrateBoss(db);
  return result;
}

/**
 * pg-boss's schema, created or migrated by pg-boss's own plans, and the tick
 * queue.
 */
async function migrateBoss(db: Database): Promise<void> {
  const { default: PgBoss } = await import("pg-boss");
  const boss = createBoss(PgBoss, db);
  const wanted = (createRequire(import.meta.url)("pg-boss/version.json") as { schema: number })
    .schema;
  if (await boss.isInstalled()) {
    const version = Number(await boss.schemaVersion());
    if (version > wanted)
      throw new DatabaseError(
        "schema-too-new",
        `The database at ${db.url} has pg-boss schema version ${version} in "${BOSS_SCHEMA}", newer than this ravenclaws' pg-boss (version ${wanted}). Nothing was changed.`,
        db.url,
        { hint: "Upgrade ravenclaws on this machine to use this database." },
      );
  }
  // pg-boss serialises its create with an advisory lock, but a process that
  // waited on it still holds the catalog as it was before the wait, so its
  // CREATE SCHEMA IF NOT EXISTS collides with the one just committed. Trying
  // again (a fresh statement sees the schema installed) settles it.
  for (let attempt = 1; ; attempt++) {
    // A pg-boss whose start failed stays "starting": each attempt gets a new one.
    const starting = attempt === 1 ? boss : createBoss(PgBoss, db);
    try {
      await starting.start();
    } catch (error) {
      const code = (error as { code?: unknown }).code;
      if (attempt >= 5 || !(typeof code === "string" && CONCURRENT_DDL.has(code))) throw error;
      await new Promise((resolve) => setTimeout(resolve, 100 * attempt));
      continue;
    }
    try {
      await ensureTickQueue(starting);
    } finally {
      await starting.stop({ graceful: false, close: false });
    }
    return;
  }
}

/** What a concurrent migration's DDL fails with: unique violation, duplicate schema/table/object. */
const CONCURRENT_DDL = new Set(["23505", "42P06", "42P07", "42710"]);
