/**
 * The database side of `npm run bench:scale`: a PostgreSQL server (embedded,
 * or one given by URL), a fresh migrated database per run, and the
 * heartbeats created through the PG store's backend (`create` with the first
 * tick's time, which queues its `heartbeat-tick` job in the same transaction).
 */
import { readFile } from "node:fs/promises";
import * as path from "node:path";
import type { SavedSettings } from "../src/schemas/stateFile.js";
import { type Database, openDatabase } from "../src/services/pg/db.js";
import { startEmbeddedPostgres } from "../src/services/pg/embedded.js";
import { migrateDatabase } from "../src/services/pg/migrations.js";
import { BOSS_SCHEMA, TICK_QUEUE } from "../src/services/pg/queue.js";
import { pgStoreBackend } from "../src/services/store/pgStore.js";

/** One database of the bench: a migrated, empty database. */
export interface ScaleDatabase {
  /** Its URL with the password (what the workers get). */
  url: string;
  query: Database["query"];
  /**
   * Creates the heartbeats through the store, their first ticks queued a day
   * ahead (each job in the same transaction as its row), so the creating is
   * over before anything is due.
   */
  createHeartbeats(
    heartbeats: { id: string; workdir: string; goal: string }[],
    settings: SavedSettings,
  ): Promise<void>;
  /**
   * Brings every first tick forward to its time, in one statement (what
   * `scheduleTick` does to a queued job due later), and records the times in
   * `bench_scale.first_due` (the lateness of a first tick).
   */
  setFirstTicks(due: { id: string; due: Date }[]): Promise<void>;
  close(): Promise<void>;
}

/** The server the runs' databases live on. */
export interface ScaleServer {
  /** What it is, for the report (no password). */
  description: string;
  /** The postmaster's pid when it runs on this machine (embedded), for its CPU time. */
  postmasterPid: number | null;
  /** A new database `name`, migrated (ours, pg-boss's schema, the tick queue). */
  freshDatabase(name: string): Promise<ScaleDatabase>;
  stop(): Promise<void>;
}

/** How many creates run at once. */
const CREATE_CONCURRENCY = 8;

async function prepare(url: string): Promise<ScaleDatabase> {
  const db = await openDatabase(url, {
    max: CREATE_CONCURRENCY + 2,
    applicationName: "bench-scale",
  });
  await migrateDatabase(db);
  await db.query(
    "CREATE SCHEMA bench_scale; CREATE TABLE bench_scale.first_due (id text PRIMARY KEY, due timestamptz NOT NULL)",
  );
  const backend = pgStoreBackend(db, { schedule: true });
  return {
    url,
    query: (text, values) => db.query(text, values),
    async createHeartbeats(heartbeats, settings) {
      const later = new Date(Date.now() + 24 * 3600_000);
      let next = 0;
      const failures: unknown[] = [];
      const lane = async () => {
        for (;;) {
          const h = heartbeats[next++];
          if (!h || failures.length > 0) return;
          try {
            const made = await backend.create(h.id, {
              workdir: h.workdir,
              goal: h.goal,
              settings,
              firstTickAt: later,
            });
            if (!made) throw new Error(`heartbeat ${h.id} exists already`);
          } catch (error) {
            failures.push(error);
          }
        }
      };
      await Promise.all(Array.from({ length: CREATE_CONCURRENCY }, lane));
      if (failures.length > 0) throw failures[0];
    },
    async setFirstTicks(due) {
      await db.transaction(async (tx) => {
        await tx.query(
          "INSERT INTO bench_scale.first_due (id, due) SELECT * FROM unnest($1::text[], $2::timestamptz[])",
          [due.map((d) => d.id), due.map((d) => d.due.toISOString())],
        );
        const jobs = await tx.query(
          `UPDATE ${BOSS_SCHEMA}.job j SET start_after = f.due FROM bench_scale.first_due f
            WHERE j.name = $1 AND j.singleton_key = f.id AND j.state = 'created'`,
          [TICK_QUEUE],
        );
        await tx.query(
          `UPDATE ravenclaws.heartbeats h SET next_tick_at = f.due FROM bench_scale.first_due f
            WHERE h.id = f.id`,
        );
        if (jobs.rowCount !== due.length)
          throw new Error(`${jobs.rowCount} queued first ticks found, not ${due.length}`);
      });
    },
    close: () => db.close(),
  };
}

/**
 * An embedded PostgreSQL in `dataDir` (durable: fsync on, as a real server),
 * or the server of `url` (its user must be allowed to create databases).
 */
export async function startScaleServer(dataDir: string, url: string | null): Promise<ScaleServer> {
  if (url) {
    const admin = await openDatabase(url, { max: 2, applicationName: "bench-scale" });
    const created: string[] = [];
    return {
      description: `PostgreSQL at ${admin.url}`,
      postmasterPid: null,
      async freshDatabase(name) {
        await admin.query(`CREATE DATABASE ${name}`);
        created.push(name);
        const target = new URL(url);
        target.pathname = `/${name}`;
        return prepare(target.toString());
      },
      async stop() {
        for (const name of created)
          await admin.query(`DROP DATABASE IF EXISTS ${name}`).catch(() => {});
        await admin.close();
      },
    };
  }
  const server = await startEmbeddedPostgres({ dataDir });
  const admin = await openDatabase(server.url, { max: 2, applicationName: "bench-scale" });
  const { rows } = await admin.query<{ server_version: string }>("SHOW server_version");
  const pidText = await readFile(path.join(dataDir, "postmaster.pid"), "utf8").catch(() => "");
  const pid = Number(pidText.split("\n")[0]);
  return {
    description: `embedded PostgreSQL ${rows[0]?.server_version ?? "?"} (fsync on, data on ${path.dirname(dataDir)})`,
    postmasterPid: Number.isInteger(pid) && pid > 0 ? pid : null,
    async freshDatabase(name) {
      await admin.query(`CREATE DATABASE ${name}`);
      return prepare(server.urlOf(name));
    },
    async stop() {
      await admin.close();
      await server.stop({ remove: true });
    },
  };
}
