/**
 * `ravenclaws db migrate`: brings the database of `--database-url` (or
 * `--embedded-db`) up to this version's schema: ours (numbered migrations in
 * the schema `ravenclaws`), pg-boss's, and the tick queue. Safe to run again
 * and from several machines at once; a database written by a newer ravenclaws
 * is refused and left unchanged (exit 3).
 */
import type { ArgumentsCamelCase, Argv } from "yargs";
import { UsageError } from "../errors.js";
import { type DatabaseArgs, databaseOptions } from "../services/pg/connect.js";
import type { RunEnvironment } from "./run.js";

/** Options of `db migrate`. */
export interface DbMigrateArgs extends DatabaseArgs {
  json?: boolean;
}

/** Runs `db migrate` (the handler's work, for tests of the wiring). */
export async function dbMigrate(argv: DbMigrateArgs, io: RunEnvironment): Promise<void> {
  const { databaseTargetOf, databaseFromArgs } = await import("../services/pg/connect.js");
  if (!databaseTargetOf(argv, io.env))
    throw new UsageError("No database given.", {
      option: "--database-url",
      code: "database-required",
      hint: "Give --database-url postgres://USER:PASSWORD@HOST:PORT/DATABASE (or RAVENCLAWS_DATABASE_URL), or --embedded-db DIR.",
    });
  // Checked, not migrated, on opening: the migration below reports what it did.
  const db = await databaseFromArgs(argv, io, { schema: "none", max: 2 });
  if (!db) return;
  try {
    const { migrateDatabase } = await import("../services/pg/migrations.js");
    const { from, to } = await migrateDatabase(db);
    if (argv.json) {
      io.stdout.write(`${JSON.stringify({ database: db.url, from, to })}\n`);
    } else if (from === to) {
      io.stdout.write(`The database at ${db.url} is up to date (schema version ${to}).\n`);
    } else {
      io.stdout.write(
        `Migrated the database at ${db.url}: schema version ${from} → ${to} (with pg-boss's schema and the heartbeat-tick queue).\n`,
      );
    }
  } finally {
    await db.close();
  }
}

/** `db`'s yargs module (its subcommand `migrate`), bound to the process it runs in. */
export function dbCommand(environment: () => RunEnvironment) {
  return {
    command: "db <command>",
    describe: "Manage the PostgreSQL database of heartbeats (db migrate)",
    builder: (yargs: Argv) =>
      yargs
        .command({
          command: "migrate",
          describe:
            "Create or upgrade the database's schema (ours, pg-boss's, the tick queue); safe to run again",
          builder: (y: Argv) =>
            databaseOptions(y)
              .option("json", {
                type: "boolean",
                describe: "Print {database, from, to} as JSON",
              })
              .example("$0 db migrate --database-url postgres://rc:…@db.internal/ravenclaws", "")
              .example("RAVENCLAWS_DATABASE_URL=… $0 db migrate", "the URL from the environment")
              .example("$0 db migrate --embedded-db ./rc-db", "an embedded server here"),
          handler: (argv: ArgumentsCamelCase<DbMigrateArgs>) => dbMigrate(argv, environment()),
        })
        .demandCommand(1, "Name a db command: migrate."),
    handler: () => {},
  };
}
