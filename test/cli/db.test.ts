/**
 * `ravenclaws db migrate`, the built CLI against a real embedded PostgreSQL:
 * it creates the schema once and is a no-op the second time; a database of a
 * newer ravenclaws, a closed port, a wrong password and no database at all
 * each end with a clear message (what, where, what to do), their exit code,
 * and no password in the output. `--embedded-db DIR` starts its own server.
 */
import * as fs from "node:fs/promises";
import * as path from "node:path";
import { describe, expect, it } from "vitest";
import { openDatabase } from "../../src/services/pg/db.js";
import { freePort } from "../../src/services/pg/embedded.js";
import { SCHEMA_VERSION } from "../../src/services/pg/migrations.js";
import { cleanEnv, runCli, tempDir } from "../support/cli.js";
import { usePostgres } from "../support/postgres.js";

const pg = usePostgres();

describe("ravenclaws db migrate", () => {
  it("migrates a new database, then finds it up to date (idempotent), and refuses a newer schema", async () => {
    const fresh = await pg.freshDatabase({ migrated: false });
    const password = pg.server.password;
    const first = await runCli(["db", "migrate", "--database-url", fresh.url]);
    expect(first.stderr).toBe("");
    expect(first.code).toBe(0);
    expect(first.stdout).toMatch(
      new RegExp(
        `Migrated the database at postgres://postgres:\\*\\*\\*@127\\.0\\.0\\.1:\\d+/t\\d+: schema version 0 → ${SCHEMA_VERSION}`,
      ),
    );
    const db = await openDatabase(fresh.url);
    try {
      const tables = await db.query<{ name: string }>(
        `SELECT table_schema || '.' || table_name AS name FROM information_schema.tables
          WHERE table_schema = 'ravenclaws' ORDER BY 1`,
      );
      expect(tables.rows.map((r) => r.name)).toEqual([
        "ravenclaws.decisions",
        "ravenclaws.heartbeats",
        "ravenclaws.journal",
        "ravenclaws.leases",
        "ravenclaws.migrations",
      ]);
      const queue = await db.query<{ policy: string }>(
        "SELECT policy FROM pgboss.queue WHERE name = 'heartbeat-tick'",
      );
      expect(queue.rows).toEqual([{ policy: "short" }]);

      // Again, with the URL from the environment: nothing to do.
      const again = await runCli(["db", "migrate", "--json"], {
        env: cleanEnv({ RAVENCLAWS_DATABASE_URL: fresh.url }),
      });
      expect(again.code).toBe(0);
      expect(JSON.parse(again.stdout)).toEqual({
        database: expect.stringContaining("postgres://postgres:***@127.0.0.1:"),
        from: SCHEMA_VERSION,
        to: SCHEMA_VERSION,
      });
      expect(
        (await db.query("SELECT version FROM ravenclaws.migrations ORDER BY version")).rows,
      ).toEqual(Array.from({ length: SCHEMA_VERSION }, (_, i) => ({ version: i + 1 })));

      // A database a newer ravenclaws migrated: refused, untouched, exit 3.
      await db.query("INSERT INTO ravenclaws.migrations (version) VALUES (99)");
      const newer = await runCli(["db", "migrate", "--database-url", fresh.url]);
      expect(newer.code).toBe(3);
      expect(newer.stderr).toContain("has schema version 99, written by a newer ravenclaws");
      expect(newer.stderr).toContain("Upgrade ravenclaws");
      expect(newer.stderr).not.toContain(password);
    } finally {
      await db.close();
      await fresh.drop();
    }
  });

  it("says what is wrong, where, and what to do: closed port, wrong password, no database, not a URL", async () => {
    const port = await freePort();
    const closed = await runCli([
      "db",
      "migrate",
      "--database-url",
      `postgres://rc:s3cret-closed-pw@127.0.0.1:${port}/ravenclaws`,
    ]);
    expect(closed.code).toBe(1);
    expect(closed.stderr).toContain(`Cannot reach the database at 127.0.0.1:${port}`);
    expect(closed.stderr).toContain("Check that PostgreSQL runs there");
    expect(closed.stderr).not.toContain("s3cret-closed-pw");

    const wrong = pg.server
      .urlOf("postgres")
      .replace(encodeURIComponent(pg.server.password), "not-the-password");
    const refused = await runCli(["db", "migrate"], {
      env: cleanEnv({ RAVENCLAWS_DATABASE_URL: wrong }),
    });
    expect(refused.code).toBe(1);
    expect(refused.stderr).toContain("refused the login");
    expect(refused.stderr).toContain("Check the user and password");
    expect(refused.stderr).not.toContain("not-the-password");

    const none = await runCli(["db", "migrate"]);
    expect(none.code).toBe(2);
    expect(none.stderr).toContain("No database given");
    expect(none.stderr).toContain("--embedded-db DIR");

    const notUrl = await runCli(["db", "migrate", "--database-url", "mysql://x"]);
    expect(notUrl.code).toBe(2);
    expect(notUrl.stderr).toContain("is not a PostgreSQL URL");
  });

  it("--embedded-db DIR starts its own server on first use, keeps its data, and stops it again", async () => {
    const base = await tempDir("rc-embedded-");
    // As root the server runs as postgres, which must pass through the temp dir.
    await fs.chmod(base, 0o755);
    const dir = path.join(base, "db");
    try {
      const first = await runCli(["db", "migrate", "--embedded-db", dir]);
      expect(first.stderr).toBe("");
      expect(first.code).toBe(0);
      expect(first.stdout).toContain(`schema version 0 → ${SCHEMA_VERSION}`);
      expect(first.stdout).toContain("postgres://postgres:***@127.0.0.1:");
      const record = JSON.parse(await fs.readFile(path.join(dir, "embedded.json"), "utf8"));
      expect(first.stdout).not.toContain(record.password);
      // The server stopped with the command (no postmaster.pid), and its data stayed.
      await expect(fs.access(path.join(dir, "data", "postmaster.pid"))).rejects.toThrow();
      const second = await runCli(["db", "migrate", "--embedded-db", dir]);
      expect(second.code).toBe(0);
      expect(second.stdout).toContain(`is up to date (schema version ${SCHEMA_VERSION})`);
    } finally {
      await fs.rm(base, { recursive: true, force: true });
    }
  });
});
