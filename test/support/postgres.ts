/**
 * Real PostgreSQL for tests: one embedded server per test FILE (a free port,
 * a temp data dir, removed afterwards), and a fresh database per test,
 * cloned from a template migrated once (CREATE DATABASE … TEMPLATE).
 *
 * Call {@link usePostgres} at the top of a test file. When the embedded
 * binaries are missing the file FAILS (beforeAll throws): a PostgreSQL test
 * is never skipped silently.
 */
import * as fs from "node:fs/promises";
import * as os from "node:os";
import * as path from "node:path";
import { afterAll, beforeAll } from "vitest";
import { openDatabase } from "../../src/services/pg/db.js";
import { type EmbeddedServer, startEmbeddedPostgres } from "../../src/services/pg/embedded.js";
import { migrateDatabase } from "../../src/services/pg/migrations.js";

/** A database of its own for one test. */
export interface FreshDatabase {
  /** Its URL (with the server's password). */
  url: string;
  /** Its name. */
  name: string;
  /** Drops it (connections still open are closed by force). */
  drop(): Promise<void>;
}

/** The server of this test file. */
export interface TestPostgres {
  readonly server: EmbeddedServer;
  /**
   * A new database for one test: migrated (ours, pg-boss's, the tick queue)
   * unless `migrated: false` (then empty).
   */
  freshDatabase(options?: { migrated?: boolean }): Promise<FreshDatabase>;
  /** How long the server took to start, and the last database creation (ms), for the record. */
  readonly timings: { startMs: number; lastCreateMs: number };
}

const TEMPLATE = "rc_template";

/** Starts a server (and its migrated template database). */
export async function startTestPostgres(): Promise<TestPostgres & { stop(): Promise<void> }> {
  const started = performance.now();
  const base = await fs.mkdtemp(path.join(os.tmpdir(), "rc-pg-"));
  // As root the server runs as the user postgres, which must reach its data dir.
  await fs.chmod(base, 0o755);
  let server: EmbeddedServer;
  try {
    server = await startEmbeddedPostgres({ dataDir: path.join(base, "data"), ephemeral: true });
  } catch (error) {
    await fs.rm(base, { recursive: true, force: true });
    throw error;
  }
  const admin = await openDatabase(server.url, { max: 2 });
  let counter = 0;
  const timings = { startMs: 0, lastCreateMs: 0 };
  try {
    await admin.query(`CREATE DATABASE ${TEMPLATE}`);
    const template = await openDatabase(server.urlOf(TEMPLATE), { max: 1 });
    try {
      await migrateDatabase(template);
    } finally {
      await template.close();
    }
  } catch (error) {
    await admin.close();
    await server.stop();
    await fs.rm(base, { recursive: true, force: true });
    throw error;
  }
  timings.startMs = performance.now() - started;
  return {
    server,
    timings,
    async freshDatabase(options = {}) {
      const t0 = performance.now();
      const name = `t${++counter}`;
      await admin.query(
        `CREATE DATABASE ${name} TEMPLATE ${options.migrated === false ? "template0" : TEMPLATE}`,
      );
      timings.lastCreateMs = performance.now() - t0;
      return {
        name,
        url: server.urlOf(name),
        drop: () => admin.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`).then(() => {}),
      };
    },
    async stop() {
      await admin.close().catch(() => {});
      await server.stop();
      await fs.rm(base, { recursive: true, force: true });
    },
  };
}

/**
 * Registers this file's server: started in `beforeAll`, stopped and removed in
 * `afterAll`. Use the returned object's `freshDatabase()` in each test.
 */
export function usePostgres(): TestPostgres {
  let current: (TestPostgres & { stop(): Promise<void> }) | undefined;
  beforeAll(async () => {
    current = await startTestPostgres();
  }, 60_000);
  afterAll(async () => {
    await current?.stop();
  });
  const get = () => {
    if (!current)
      throw new Error("usePostgres(): the server did not start (see beforeAll's error).");
    return current;
  };
  return {
    get server() {
      return get().server;
    },
    get timings() {
      return get().timings;
    },
    freshDatabase: (options) => get().freshDatabase(options),
  };
}
